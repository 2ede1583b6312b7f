"""Model versions, the threshold from known defects and relearning, on the real window
(offscreen) with a real log: roll back to the version before; Propose meets the target on
the known parts; a product whose parts were marked false rejects relearns and those parts
then pass, while confirmed defects still fail."""
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from app_fixtures import collect_results, make_window, tiny_settings, wait_until
from engine import versions
from engine.known_defects import propose
from engine.log import InspectionRecord, Label
from engine.meta import ModelMeta
from engine.model import ModelConfig, save_checkpoint
from engine.settings import ProductSettings, save_settings
from engine.train import TrainConfig, train
from engine.types import Decision, Verdict
from synthetic import make_part

CFG = TrainConfig(model=ModelConfig(image_size=64), steps=100, teacher="random", penalty="none",
                  device="cpu", synthetic_per_kind=0)


def sticker(rng):
    """A good part with a green label the first version never saw: it is rejected."""
    im = make_part(rng)[0].astype(np.int16)
    im[10:30, 60:85] = (40, 160, 60)
    return np.clip(im, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Two versions of product P trained once for the module: (good, [(result, created)])."""
    rng = np.random.default_rng(0)
    good = [make_part(rng)[0] for _ in range(20)]
    first = train(CFG, good)
    second = train(replace(CFG, seed=1), good)
    return good, first, second


def _setup(tmp_path, trained, qtbot):
    good, first, second = trained
    data = tmp_path / "data"
    models = data / "models"
    paths = []
    for i, r in enumerate((first, second)):
        meta = {**r.meta, "created_utc": f"2026-0{i + 1}-01T00:00:00Z"}
        p = models / f"P-{meta['model_id']}.pt"
        save_checkpoint(r.model, p, meta)
        paths.append((p, meta))
    s = replace(tiny_settings(training_steps=100), products={"P": ProductSettings(model_file=str(paths[1][0]))},
                current_product="P", operator="anna")
    save_settings(s, data / "settings.json")
    w = make_window(qtbot, data, autostart=False)
    wait_until(qtbot, lambda: w.services.log is not None, 30, "the log")
    lg = w.services.log
    v1 = versions.register_learned(lg, paths[0][0], ModelMeta.from_dict(paths[0][1]), "P", "anna", good)
    v2 = versions.register_learned(lg, paths[1][0], ModelMeta.from_dict(paths[1][1]), "P", "ben", good)
    wait_until(qtbot, lambda: w.services.model_info is not None
               and w.services.model_info.model_id == v2.model_id, 30, "the second version in use")
    return w, v1, v2


def _log(lg, images, scores, model_id, threshold, labels):
    t0 = time.time()
    for i, (im, sc) in enumerate(zip(images, scores)):
        d = Decision.FAIL if sc >= threshold else Decision.PASS
        v = Verdict(frame_id=i, score=float(sc), decision=d, threshold=threshold, model_id=model_id)
        lg.submit(InspectionRecord(v, t0 + i / 1000, "st", "cam", "P", image=im))
    assert lg.writer.flush(20)
    rows = sorted(lg.page(limit=500).rows, key=lambda r: r.frame_id)
    for r, label in zip(rows, labels):
        if label:
            lg.set_label(r.id, label, who="op")
    return rows


def test_versions_screen_rolls_back_and_history_links_to_the_version(tmp_path, trained, qtbot):
    w, v1, v2 = _setup(tmp_path, trained, qtbot)
    try:
        screen = w.versions_screen
        w.tabs.setCurrentWidget(screen)
        wait_until(qtbot, lambda: screen.table.rowCount() == 2, 20, "two versions listed")
        assert screen.active.model_id == v2.model_id
        assert "IN USE" in screen.table.item(0, 8).text()
        assert screen.table.item(1, 2).text() == "anna"
        assert screen.rollback_button.isEnabled() and not screen.activate_button.isEnabled()
        screen.select(v1.model_id)
        rows = {screen.compare.item(i, 0).text(): (screen.compare.item(i, 1).text(),
                                                   screen.compare.item(i, 2).text())
                for i in range(screen.compare.rowCount())}
        assert rows["version"] == (v1.model_id, v2.model_id)
        assert rows["trained by"] == ("anna", "ben")

        screen.roll_back()
        wait_until(qtbot, lambda: w.services.model_info.model_id == v1.model_id, 30,
                   "the line to use the version before")
        assert versions.same_file(w.services.settings.product.model_file, v1.path)
        wait_until(qtbot, lambda: screen.active is not None and screen.active.model_id == v1.model_id,
                   20, "the screen to show it in use")
        def model_rows():
            w.services.log.writer.flush(10)          # audit rows go through the writer
            return w.services.log.audit(kind="model")
        wait_until(qtbot, model_rows, 20, "the audit row of the rollback")
        trail = model_rows()
        assert "rolled back" in (trail[-1].detail or "")
        assert v1.model_id in trail[-1].new and v2.model_id in trail[-1].old

        # History's row names the version that judged it; the link opens it here
        _log(w.services.log, [make_part(np.random.default_rng(5), True)[0]], [0.99], v2.model_id,
             0.5, [None])
        hist = w.history
        w.tabs.setCurrentWidget(hist)
        hist.refresh()
        wait_until(qtbot, lambda: hist.model.rowCount() == 1, 20, "the row in History")
        hist.table.selectRow(0)
        assert w.version_link.isVisibleTo(w) and v2.model_id in w.version_link.text()
        w.version_link.click()
        assert w.tabs.currentWidget() is screen
        wait_until(qtbot, lambda: screen.selected is not None
                   and screen.selected.model_id == v2.model_id, 20, "the linked version selected")
    finally:
        w.close()


def test_threshold_proposed_from_known_defects(tmp_path, trained, qtbot):
    w, _v1, v2 = _setup(tmp_path, trained, qtbot)
    try:
        rng = np.random.default_rng(7)
        good_scores = np.r_[rng.normal(0.3, 0.03, 40), 0.55, 0.6]   # two false rejects
        defect_scores = np.r_[rng.normal(0.5, 0.05, 10), 0.33]      # one hard to catch
        pic = make_part(rng)[0]
        labels = [None] * 40 + [Label.FALSE_REJECT] * 2 + [Label.CONFIRMED_DEFECT] * 11
        _log(w.services.log, [pic] * 53, np.r_[good_scores, defect_scores], v2.model_id, 0.5, labels)
        th = w.threshold
        w.tabs.setCurrentWidget(th)
        wait_until(qtbot, lambda: th.known is not None and th.known.defects.size == 11, 20,
                   "the known defects read")
        assert th.defect_bars.isVisible() and th.propose_button.isEnabled()
        assert "confirmed defects missed" in th.known_text.text()
        assert len(th.miss_curve.xData) > 10
        th.target.setValue(5.0)
        th.propose()
        good = np.r_[th.holdout, good_scores]
        want = propose(good, defect_scores, 0.05)
        assert th.number.value() == pytest.approx(want.threshold, abs=1e-4)
        assert want.false_reject_rate <= 0.05 and want.met
        assert "Proposed threshold" in th.known_text.text()
        # a stricter target never misses fewer defects
        assert propose(good, defect_scores, 0.0).misses >= want.misses
        th.apply()
        wait_until(qtbot, lambda: th.changes.rowCount() >= 1, 20, "the logged change")
        change = w.services.log.threshold_changes("P")[0]
        assert "proposed from 11 confirmed defects" in change.reason
    finally:
        w.close()


def test_relearn_makes_marked_false_rejects_pass(tmp_path, trained, qtbot):
    from engine.model import load_checkpoint
    from engine.scoring import Scorer
    w, _v1, v2 = _setup(tmp_path, trained, qtbot)
    try:
        rng = np.random.default_rng(11)
        frs = [sticker(rng) for _ in range(3)]
        defects = [make_part(rng, defect=True)[0] for _ in range(2)]
        model, meta = load_checkpoint(v2.path)
        scorer = Scorer(model, meta, device="cpu", backend="eager")
        scores = scorer.score(frs + defects, with_maps=False).scores
        assert np.all(scores >= v2.threshold), "the sticker and the defects fail version 2"
        rows = _log(w.services.log, frs + defects, scores, v2.model_id, v2.threshold,
                    [Label.FALSE_REJECT] * 3 + [Label.CONFIRMED_DEFECT] * 2)

        learn = w.learn
        w.tabs.setCurrentWidget(learn)
        assert learn.relearn_button.isEnabled()
        learn.relearn_button.click()
        dialog = learn.relearn_dialog
        assert dialog is not None and dialog.isVisible()
        # the line keeps judging with the current version while the new one trains
        w.services.start_live()
        judged = [r for r in collect_results(w.services, qtbot, 8, 60) if r.verdict is not None]
        assert dialog.job.running and judged
        assert {r.verdict.model_id for r in judged} == {v2.model_id}
        w.services.stop_live()
        wait_until(qtbot, lambda: dialog.outcome is not None, 900, "the relearned version")
        c = dialog.outcome.compared
        assert c.false_rejects_passing(new=False) == 0
        assert c.false_rejects_passing(new=True) == 3
        assert c.defects_failing(new=True) == 2
        assert dialog.table.rowCount() == 5
        assert [dialog.table.item(i, 4).text() for i in range(5)] == ["yes"] * 5
        # the job's end (which enables Accept) is signalled just after its result
        wait_until(qtbot, dialog.accept_button.isEnabled, 30, "Accept to be enabled")
        dialog.accept_button.click()
        wait_until(qtbot, lambda: w.services.model_info.model_id not in ("", v2.model_id), 60,
                   "the new version in use")
        new_id = w.services.model_info.model_id
        version = versions.from_info(w.services.log.model(new_id))
        assert sorted(version.labels_used) == sorted(r.id for r in rows[:3])
        assert version.parent == v2.model_id and version.trained_by == "anna"
        assert Path(version.good_set).is_dir()
        # the marked parts now pass with the product's model in use, the defects still fail
        model, meta = load_checkpoint(w.services.settings.product.model_file)
        s = Scorer(model, meta, device="cpu", backend="eager")
        t = w.services.model_info.threshold
        assert np.all(s.score(frs, with_maps=False).scores < t)
        assert np.all(s.score(defects, with_maps=False).scores >= t)
    finally:
        w.close()
