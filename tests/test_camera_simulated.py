"""The simulated line: deterministic, labelled, and its masks mark exactly what the defect changed."""
import time

import numpy as np
import pytest

from engine.camera.base import EndOfStream
from engine.camera.simulated import (DEFECT_KINDS, SimulatedLine, SimulatedLineConfig,
                                     SimulatedLineSource)
from engine.errors import InspectError

SMALL = dict(width=160, height=120)


def first_plan_of_kind(line, kind):
    for i in range(500):
        plan = line.plan(i)
        if plan.kind == kind:
            return plan
    raise AssertionError(f"no {kind} part in 500 frames")


def test_same_seed_same_frames_other_seed_other_frames():
    a = SimulatedLine(SimulatedLineConfig(seed=3, **SMALL))
    b = SimulatedLine(SimulatedLineConfig(seed=3, **SMALL))
    c = SimulatedLine(SimulatedLineConfig(seed=4, **SMALL))
    for i in (0, 5, 17):
        ra, ma, ka, _ = a.frame_arrays(i)
        rb, mb, kb, _ = b.frame_arrays(i)
        assert ka == kb and np.array_equal(ra, rb) and np.array_equal(ma, mb)
    assert not np.array_equal(a.frame_arrays(0)[0], c.frame_arrays(0)[0])
    # frame k does not depend on which frames were drawn before it
    assert np.array_equal(SimulatedLine(a.config).frame_arrays(17)[0], a.frame_arrays(17)[0])


def test_labels_follow_the_defect_rate_and_cover_every_kind():
    line = SimulatedLine(SimulatedLineConfig(seed=1, defect_rate=0.4, **SMALL))
    kinds = [line.plan(i).kind for i in range(600)]
    defective = sum(k != "good" for k in kinds) / len(kinds)
    assert 0.33 < defective < 0.47
    assert set(kinds) == {"good", *DEFECT_KINDS}


def test_good_parts_have_empty_masks_and_vary_slightly():
    line = SimulatedLine(SimulatedLineConfig(seed=2, defect_rate=0.0, **SMALL))
    frames = [line.frame_arrays(i) for i in range(5)]
    assert all(label == "good" and not mask.any() for _, mask, label, _ in frames)
    assert all(rgb.shape == (120, 160, 3) and rgb.dtype == np.uint8 for rgb, *_ in frames)
    assert not np.array_equal(frames[0][0], frames[1][0])      # pose, light and noise vary


@pytest.mark.parametrize("kind", DEFECT_KINDS)
def test_mask_marks_what_the_defect_changed(kind):
    """Render the same part with and without its defect (no noise): the pixels that differ
    must lie in the mask, and most of the mask must have changed."""
    line = SimulatedLine(SimulatedLineConfig(seed=5, defect_rate=1.0, width=320, height=240))
    plan = first_plan_of_kind(line, kind)
    with_defect, mask = line.render(plan, noise=False)
    without, empty = line.render(plan, with_defect=False, noise=False)
    assert not empty.any() and mask.any()
    changed = np.abs(with_defect.astype(int) - without.astype(int)).max(axis=2) > 12
    assert changed.sum() > 20
    assert (changed & mask).sum() / changed.sum() > 0.9        # changes lie in the mask
    assert (changed & mask).sum() / mask.sum() > 0.5           # the mask is not inflated


def test_source_attaches_label_mask_and_ids_and_paces():
    src = SimulatedLineSource(SimulatedLineConfig(seed=9, fps=40, count=6, defect_rate=0.5, **SMALL))
    src.open()
    frames, started = [], time.monotonic()
    with pytest.raises(EndOfStream):
        while True:
            f = src.read(timeout=0.2)
            if f is not None:
                frames.append(f)
    elapsed = time.monotonic() - started
    assert [f.id for f in frames] == list(range(6))
    assert 5 / 40 * 0.8 < elapsed < 1.0                         # ~40 parts per second
    line = SimulatedLine(src.config)
    for f in frames:
        rgb, mask, label, _ = line.frame_arrays(f.id)
        assert f.label == label and np.array_equal(f.mask, mask) and np.array_equal(f.rgb, rgb)
        assert f.mask.dtype == bool and f.mask.shape == (120, 160)
        assert f.source == "sim:seed=9"


def test_bad_configuration_is_refused():
    with pytest.raises(ValueError, match="defect kinds"):
        SimulatedLine(SimulatedLineConfig(defect_kinds=("dent",)))


def test_live_settings_change_and_others_are_refused_by_name():
    src = SimulatedLineSource(SimulatedLineConfig(seed=1, fps=0, defect_rate=0.0, **SMALL))
    src.open()
    assert src.read(0.1).label == "good"
    assert src.apply_settings({"defect_rate": 1})["defect_rate"] == 1.0
    assert src.read(0.1).label != "good"
    with pytest.raises(InspectError, match="width cannot change while it runs"):
        src.apply_settings({"width": 64})
    with pytest.raises(InspectError, match="defect_rate in 0..1"):
        src.apply_settings({"defect_rate": 3})
    assert src.settings()["defect_rate"] == 1.0
