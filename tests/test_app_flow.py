"""The operator's flows on the real window (offscreen), with the simulated line and a tiny
model: no model -> Learn good parts -> FAILs for defective parts -> move the threshold and
see verdicts change -> find the defects in History, label one, export."""
import csv

import numpy as np

from app_fixtures import collect_results, data_dir, train_product, wait_until, window  # noqa: F401
from engine.types import Decision


def test_starts_live_without_a_model_and_says_what_to_do(window, qtbot):
    got = collect_results(window.services, qtbot, 5)
    assert all(r.verdict is None for r in got)              # frames shown, nothing judged
    wait_until(qtbot, lambda: window.live.verdict.text() == "NO MODEL", 5, "the NO MODEL sign")
    assert "click Learn good parts" in window.live.banner.text()
    assert window.live.banner.isVisible()
    assert window.services.pipeline.running and window.start_action.text() == "Stop"


def test_learn_judge_threshold_history(window, qtbot, tmp_path):
    services = window.services
    # --- Learn good parts: capture, drop the parts the line says are defective, train, save
    train_product(window, qtbot, "bracket")
    learn = window.learn
    assert "Learned in" in learn.progress_text.text() or "Saved" in learn.progress_text.text()
    chosen = learn.chosen_images()
    assert 5 <= len(chosen) < learn.thumbs.count()        # defective captures were unticked
    assert services.settings.product.model_file.endswith(".pt")
    assert services.settings.current_product == "bracket"
    assert "No model" not in window.live.banner.text()
    # the Learn result and Settings say which scoring path judges and why (the tests' eager)
    assert "Scoring on this PC: eager fp32" in learn.result_text.text()
    wait_until(qtbot, lambda: window.settings_screen.scoring_path.text().startswith("bracket: eager"),
               10, "Settings naming the scoring path")

    # --- live: every frame judged; FAILs appear, and they are the defective parts
    got = collect_results(services, qtbot, 40, timeout_s=60)
    judged = [r for r in got if r.verdict is not None]
    assert len(judged) >= 30
    fails = [r for r in judged if r.verdict.decision == Decision.FAIL]
    assert fails, "no FAIL among %d parts" % len(judged)
    assert any(r.frame.label != "good" for r in fails)
    # The tiny test model's own threshold rests on 2 held-out images, so some good parts
    # may FAIL too; what must hold is that defective parts score clearly higher.
    good = np.array([r.verdict.score for r in judged if r.frame.label == "good"])
    bad = np.array([r.verdict.score for r in judged if r.frame.label != "good"])
    assert len(good) and len(bad)
    ranked = np.mean(bad[:, None] > good[None, :])           # AUROC of the live scores
    assert ranked >= 0.75, (ranked, good, bad)
    qtbot.wait(300)
    assert window.live.verdict.text() in ("PASS", "FAIL")
    assert window.live.curve.xData is not None and len(window.live.curve.xData) > 0

    # --- Threshold: moving it re-judges recent frames at once; Apply is live and logged
    th = window.threshold
    window.tabs.setCurrentWidget(th)
    recent = np.fromiter(window.live.recent_scores, float)
    th.number.setValue(float(recent.max()) * 1.5)
    assert "0 FAIL" in th.rejudged.text()
    th.number.setValue(float(np.median(recent)))
    n_fail = sum(d == Decision.FAIL for d in th.recent_decisions)
    assert n_fail >= len(recent) // 3 and f"{n_fail} FAIL" in th.rejudged.text()
    assert "Expected false rejects on good parts" in th.expect.text()
    th.review_on.setChecked(True)
    th.review.setValue(float(np.quantile(recent, 0.2)))
    assert sum(d == Decision.REVIEW for d in th.recent_decisions) > 0
    high = float(recent.max()) * 1.5
    th.review_on.setChecked(False)
    th.number.setValue(high)
    high = th.number.value()                                  # as the operator sees it
    th.apply()
    assert services.settings.product.threshold == high
    wait_until(qtbot, lambda: th.changes.rowCount() >= 1, 20, "the logged threshold change")
    assert th.changes.item(0, 1).text() == services.settings.operator_name()
    assert th.changes.item(0, 3).text() == f"{high:.4f}"
    later = collect_results(services, qtbot, 10)
    newest = later[-4:]                     # results already on their way may be older
    assert all(r.verdict.threshold == high for r in newest)
    assert all(r.verdict.decision == Decision.PASS for r in newest if r.verdict.score < high)

    # --- History: the defects are there; label one; filter by label; export
    hist = window.history
    window.tabs.setCurrentWidget(hist)
    services.log.writer.flush(timeout=20)
    hist.refresh()
    wait_until(qtbot, lambda: hist.model.rowCount() > 0, 20, "defects in History")
    assert all(r.verdict.value in ("FAIL", "REVIEW") for r in hist.model.rows)
    assert "of" in hist.count_label.text()
    qtbot.wait(500)                # let the page load started by showing the tab land too
    hist.table.selectRow(0)
    first = hist.model.rows[0]
    assert hist.selected.id == first.id
    wait_until(qtbot, lambda: hist.zoom.item.image is not None, 20, "the detail picture")
    window.mark("confirmed_defect")                          # the Ctrl+D action on History
    def shown_label():
        return next((r.label for r in hist.model.rows if r.id == first.id), None)
    wait_until(qtbot, lambda: shown_label() is not None, 20, "the label in the table")
    assert services.log.get(first.id).label.value == "confirmed_defect"
    assert services.log.get(first.id).labeled_by == services.settings.operator_name()
    hist.label_box.setCurrentIndex(2)                         # "confirmed defect"
    hist.refresh()
    wait_until(qtbot, lambda: hist.model.rowCount() == 1, 20, "the label filter")
    out = tmp_path / "export.csv"
    hist.export_to("csv", str(out))
    wait_until(qtbot, lambda: out.exists() and out.stat().st_size > 0, 20, "the export")
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 1

    # --- products: switching products switches models
    window._switch_product("other part")
    wait_until(qtbot, lambda: services.model_info.product == "other part", 20, "the switch")
    assert not services.model_info.model_id and not services.model_info.error
    wait_until(qtbot, lambda: "No model for this product (other part)" in window.live.banner.text(),
               5, "the no-model banner")
    window._switch_product("bracket")
    wait_until(qtbot, lambda: services.model_info.model_id, 30, "the bracket model")
