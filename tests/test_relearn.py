"""Relearn from labels and model versions, engine side, on a real log: parts marked false
rejects pass after relearning, confirmed defects still fail, the version records what it
learned from; versions list, compare, activate and roll back (engine/relearn.py,
engine/versions.py)."""
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from engine import relearn, versions
from engine.log import InspectionLog, InspectionRecord, Label
from engine.meta import ModelMeta
from engine.model import ModelConfig, load_checkpoint, save_checkpoint
from engine.settings import Settings
from engine.train import TrainConfig, train
from engine.types import Decision, Verdict

try:
    from synthetic import make_part
except ImportError:
    from tests.synthetic import make_part

CFG = TrainConfig(model=ModelConfig(image_size=64), steps=100, teacher="random", penalty="none",
                  device="cpu", synthetic_per_kind=0)


def sticker(rng):
    """A good part with a green label the first version never saw: a false reject."""
    im = make_part(rng)[0].astype(np.int16)
    im[10:30, 60:85] = (40, 160, 60)
    return np.clip(im, 0, 255).astype(np.uint8)


def _log_part(log, i, image, score, threshold, model_id, product="P"):
    d = Decision.FAIL if score >= threshold else Decision.PASS
    v = Verdict(frame_id=i, score=score, decision=d, threshold=threshold, model_id=model_id)
    log.submit(InspectionRecord(v, time.time() + i / 1000, "st", "cam", product, image=image))


QUICK = replace(CFG, model=replace(CFG.model, kind="quick"))


@pytest.fixture(scope="module")
def line(tmp_path_factory):
    yield from _line(tmp_path_factory, CFG)


@pytest.fixture(scope="module")
def quick_line(tmp_path_factory):
    yield from _line(tmp_path_factory, QUICK)


def _line(tmp_path_factory, cfg):
    """A product whose first version rejects parts with a sticker; 3 marked false rejects,
    2 confirmed defects, in a real log."""
    root = tmp_path_factory.mktemp("relearn")
    rng = np.random.default_rng(0)
    good = [make_part(rng)[0] for _ in range(20)]
    first = train(cfg, good)
    path = root / "models" / "P-first.pt"
    save_checkpoint(first.model, path, first.meta)
    meta = ModelMeta.from_dict(first.meta)
    from engine.scoring import Scorer
    scorer = Scorer(first.model, first.meta, device="cpu")
    frs = [sticker(rng) for _ in range(3)]
    defects = [make_part(rng, defect=True)[0] for _ in range(2)]
    log = InspectionLog.open(root / "log")
    v1 = versions.version_of(meta, path, "P", "anna", good_set="")
    versions.save_good_set(versions.good_set_dir(path), good)
    v1 = replace(v1, good_set=str(versions.good_set_dir(path)))
    versions.register(log, v1)
    log.start_writer()
    for i, im in enumerate(frs + defects + [good[0]]):
        _log_part(log, i, im, float(scorer.score([im], with_maps=False).scores[0]),
                  meta.threshold, meta.model_id)
    assert log.writer.flush(20)
    rows = sorted(log.page().rows, key=lambda r: r.frame_id)
    for r in rows[:3]:
        assert r.verdict == Decision.FAIL                  # the sticker fails the first version
        log.set_label(r.id, Label.FALSE_REJECT, who="op")
    for r in rows[3:5]:
        log.set_label(r.id, Label.CONFIRMED_DEFECT, who="op")
    yield log, v1, root, [r.id for r in rows[:3]]
    log.close()


def test_relearning_makes_the_false_rejects_pass_and_records_what_it_used(line):
    log, v1, root, fr_ids = line
    rs = relearn.collect(log, "P", v1)
    assert rs.problem() is None and len(rs.good) == 20 and rs.new_false_rejects == 3
    assert sorted(p.inspection_id for p in rs.false_rejects) == sorted(fr_ids)
    assert len(rs.defects) == 2
    job = relearn.RelearnJob(CFG, rs, v1.path, v1.threshold, str(root / "models" / "pending.pt"))
    progress = []
    out = relearn.run(job, lambda f, m: progress.append(f))
    c = out.compared
    assert c.false_rejects_passing(new=False) == 0 and c.false_rejects_passing(new=True) == 3
    assert c.defects_failing(new=False) == 2 and c.defects_failing(new=True) == 2
    assert "3 of 3 false rejects pass" in c.sentence()
    assert progress[-1] == 1.0 and Path(out.pending_path).is_file()

    v2 = relearn.accept(log, out, root / "models" / "P-second.pt", "ben")
    assert not Path(out.pending_path).exists() and Path(v2.path).is_file()
    assert sorted(v2.labels_used) == sorted(fr_ids) and v2.parent == v1.model_id
    assert len(relearn.load_good_set(v2.good_set)) == 23          # 20 good + 3 false rejects
    stored = log.model(v2.model_id)
    assert versions.from_info(stored).labels_used == v2.labels_used
    _model, meta = load_checkpoint(v2.path)
    assert sorted(meta["labels_used"]) == sorted(fr_ids) and meta["relearned_from"] == v1.model_id
    # a second relearn knows these labels are learned
    assert relearn.collect(log, "P", v2).new_false_rejects == 0


def test_relearning_a_quick_model(quick_line):
    """The default Learn may leave a quick model live: relearning it adds the false rejects'
    patches to its bank, and the defects still fail."""
    log, v1, root, fr_ids = quick_line
    rs = relearn.collect(log, "P", v1)
    assert rs.new_false_rejects == 3 and len(rs.defects) == 2
    job = relearn.RelearnJob(QUICK, rs, v1.path, v1.threshold, str(root / "models" / "pending.pt"))
    c = relearn.run(job, lambda f, m: None).compared
    assert c.false_rejects_passing(new=False) == 0 and c.false_rejects_passing(new=True) == 3
    assert c.defects_failing(new=True) == 2
    model, _ = load_checkpoint(job.pending_path)
    assert model.config.kind == "quick"


def test_versions_list_compare_activate_and_roll_back(line):
    log, v1, root, _ = line
    second = root / "models" / "P-third.pt"
    m, meta = load_checkpoint(v1.path)
    meta = {**meta, "model_id": "third", "created_utc": "2030-01-01T00:00:00Z"}
    save_checkpoint(m, second, meta)
    v3 = versions.register_file(log, second, "P", trained_by="carl")
    listed = versions.versions_of(log, "P")
    assert listed[0].model_id == "third" and v1.model_id in [v.model_id for v in listed]
    rows = dict((what, (a, b)) for what, a, b in versions.compare(v1, v3))
    assert rows["trained by"] == ("anna", "carl") and rows["version"] == (v1.model_id, "third")

    s = versions.activation(Settings(), v3)
    assert s.current_product == "P" and versions.same_file(s.product.model_file, second)
    assert s.product.threshold is None                     # its own default threshold
    active = versions.active_of(listed, s.product.model_file)
    assert active.model_id == "third"
    back = versions.previous_of(listed, active)
    assert back is not None and back.created_us < active.created_us
    log.record_threshold_change("P", None, 0.123, "anna", model_id=back.model_id)
    s2 = versions.activation(s, back, versions.last_threshold(log, "P", back.model_id))
    assert versions.same_file(s2.product.model_file, back.path) and s2.product.threshold == 0.123
    Path(second).unlink()
    with pytest.raises(Exception, match="gone"):
        versions.activation(s2, v3)


def test_a_model_registered_before_versions_reads_as_a_version():
    from engine.log import ModelInfo
    old = ModelInfo("abc", "P 2026-01-01", "P", "/x/P-abc.pt", 0.4,
                    {"holdout_false_reject_rate": 0.02, "steps": 300, "n_train": 36},
                    created_us=5)
    v = versions.from_info(old)
    assert (v.model_id, v.steps, v.n_train, v.holdout_frr, v.threshold) == ("abc", 300, 36, 0.02, 0.4)
    assert v.labels_used == () and v.trained_by == "" and not v.file_exists
    assert versions.from_info(versions.to_info(v)) == v          # round trip through the table
    odd = ModelInfo("z", "", "P", "p", 0.1, {"steps": "many", "labels_used": "?"})
    assert versions.from_info(odd).steps == 0 and versions.from_info(odd).labels_used == ()
