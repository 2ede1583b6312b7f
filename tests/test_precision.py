"""Reduced-precision scoring paths as calibrated models of their own (engine/precision.py)
and `auto` choosing among them by measuring (engine/autopath.py)."""
import copy
import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from engine import autopath, precision
from engine.errors import InspectError
from engine.model import EfficientAD, ModelConfig, load_checkpoint, save_checkpoint
from engine.scoring import Scorer
from engine.train import TrainConfig, train
from synthetic import make_part

BF16 = precision.bf16_on_cpu()
needs_bf16 = pytest.mark.skipif(not BF16, reason="this CPU has no bf16 arithmetic")


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("INSPECT_LINE_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A small model trained on synthetic parts: calibrated for the paths this CPU runs."""
    rng = np.random.default_rng(3)
    good = [make_part(rng, size=64)[0] for _ in range(24)]
    cfg = TrainConfig(model=ModelConfig(image_size=64), steps=20, teacher="random",
                      penalty="none", device="cpu", synthetic_per_kind=6, select_best=False)
    res = train(cfg, good)
    path = tmp_path_factory.mktemp("m") / "model.pt"
    save_checkpoint(res.model, path, res.meta)
    return path, good


@needs_bf16
def test_learn_calibrates_each_reduced_path_on_its_own_outputs(trained):
    path, good = trained
    model, meta = load_checkpoint(path)
    cals = precision.calibrations(meta)
    assert "torch-bf16" in cals and set(cals) <= set(precision.reduced_paths_here(torch.device("cpu")))
    ref = precision.reference_auroc(meta)
    assert ref is not None and 0.0 <= ref <= 1.0
    assert precision.reference_missed(meta) == meta["synthetic_check"]["missed"]
    for name, cal in cals.items():
        assert cal.synthetic_n == 18 and 0 <= cal.synthetic_missed <= 18
        assert 0.0 <= cal.heldout_auroc <= 1.0 and np.isfinite(cal.threshold)
        # the path's own threshold, near (not equal to) fp32's: same map scale, own numbers
        assert cal.threshold != meta["threshold"]
        assert abs(cal.threshold - meta["threshold"]) <= 0.2 * abs(meta["threshold"]) + 0.05
        sc = Scorer(model, meta, "cpu", backend=name)
        assert sc.backend == name and sc.threshold == cal.threshold
        # its held-out scores are what the calibration saw: same rule, same path
        fp32 = Scorer(model, meta, "cpu", backend="eager")
        a, b = sc.score(good[:6]).scores, fp32.score(good[:6]).scores
        assert np.abs(a - b).max() <= 0.1 * np.abs(b).max()


    from engine.card import model_card
    card = model_card(meta)
    assert "Calibrated scoring paths" in card
    assert all(f"  {name} on the cpu: threshold {cal.threshold:.4f}" in card for name, cal in cals.items())


@needs_bf16
def test_a_reduced_path_the_model_was_not_calibrated_for_is_refused_in_words(trained):
    path, _ = trained
    model, meta = load_checkpoint(path)
    bare = {k: v for k, v in meta.items() if k not in ("paths", "paths_reference")}
    with pytest.raises(InspectError, match="not calibrated for the torch-bf16"):
        Scorer(model, bare, "cpu", backend="torch-bf16")
    moved = copy.deepcopy(meta)
    moved["paths"]["torch-bf16"]["device"] = "cuda"
    with pytest.raises(InspectError, match="made on the cuda"):
        Scorer(model, moved, "cpu", backend="torch-bf16")
    # a damaged entry reads as no calibration: refused, never half-used
    broken = copy.deepcopy(meta)
    broken["paths"]["torch-bf16"]["weights"] = ["x", 1, 2]
    with pytest.raises(InspectError, match="not calibrated"):
        Scorer(model, broken, "cpu", backend="torch-bf16")
    # auto on an uncalibrated model: the exact path, and it says why
    sc = Scorer(model, bare, "cpu", backend="auto")
    assert sc.backend in autopath.exact_paths(torch.device("cpu"))
    assert "no reduced-precision calibration" in sc.info.scoring_path


def _with_auroc(meta, path, auroc, ref=0.9):
    m = copy.deepcopy(meta)
    m["paths"][path]["heldout_auroc"] = auroc
    m["paths_reference"]["heldout_auroc"] = ref
    return m


@needs_bf16
def test_only_paths_within_the_auroc_margin_of_fp32_are_eligible(trained):
    _, meta = load_checkpoint(trained[0])
    cpu = torch.device("cpu")
    ok, why = precision.eligible(_with_auroc(meta, "torch-bf16", 0.9 - 0.004), cpu)
    assert "torch-bf16" in ok
    ok, why = precision.eligible(_with_auroc(meta, "torch-bf16", 0.9 - 0.006), cpu)
    assert "torch-bf16" not in ok and any("0.894 against fp32's 0.900" in w for w in why)
    # same ranking, but more defects passed at its own threshold (saturated maps): not eligible
    m = _with_auroc(meta, "torch-bf16", 0.9)
    m["paths_reference"]["synthetic_missed"] = 3
    m["paths"]["torch-bf16"]["synthetic_n"], m["paths"]["torch-bf16"]["synthetic_missed"] = 18, 4
    assert "torch-bf16" in precision.eligible(m, cpu)[0]                  # one more: the slack
    m["paths"]["torch-bf16"]["synthetic_missed"] = 5
    ok, why = precision.eligible(m, cpu)
    assert "torch-bf16" not in ok and any("misses 5 of 18" in w and "fp32's 3" in w for w in why)
    few = copy.deepcopy(meta)
    few["paths"]["torch-bf16"]["synthetic_n"] = precision.MIN_CHECK - 1
    ok, why = precision.eligible(few, cpu)
    assert "torch-bf16" not in ok and any("too few" in w for w in why)


@needs_bf16
def test_auto_times_the_candidates_takes_the_fastest_and_caches_per_machine(trained, tmp_path):
    path, _ = trained
    model, meta = load_checkpoint(path)
    meta = _with_auroc(meta, "torch-bf16", 0.9)        # eligible whatever the tiny model scored
    meta["paths"] = {"torch-bf16": meta["paths"]["torch-bf16"]}     # one candidate beside fp32
    cache = autopath.cache_file()
    first = Scorer(model, meta, "cpu", backend="auto")
    choice = first.path_choice
    timed = dict(choice.timings)
    assert set(timed) == {*autopath.exact_paths(torch.device("cpu")), "torch-bf16"}
    assert all(ms > 0 for ms in timed.values()) and not choice.from_cache
    assert choice.backend == min(timed, key=timed.get) == first.backend
    assert choice.backend in first.info.scoring_path
    entry = json.loads(cache.read_text())
    assert len(entry) == 1 and "torch" in next(iter(entry))
    # the same machine and model shape: read, not measured again
    again = Scorer(model, meta, "cpu", backend="auto").path_choice
    assert again.from_cache and dict(again.timings) == timed
    # the cache decides: if it says bf16 is slower, fp32 is taken, and the reason says so
    key = next(iter(entry))
    exact = autopath.exact_paths(torch.device("cpu"))
    entry[key]["ms"] = {**{p: 30.0 for p in exact}, exact[-1]: 10.0, "torch-bf16": 20.0}
    cache.write_text(json.dumps(entry))
    slow = Scorer(model, meta, "cpu", backend="auto")
    assert slow.backend == exact[-1] and "fastest here" in slow.info.scoring_path
    entry[key]["ms"] = {**{p: 30.0 for p in exact}, exact[0]: 20.0, "torch-bf16": 10.0}
    cache.write_text(json.dumps(entry))
    fast = Scorer(model, meta, "cpu", backend="auto")
    assert fast.backend == "torch-bf16" and fast.threshold == meta["paths"]["torch-bf16"]["threshold"]
    assert "2.00x faster" in fast.info.scoring_path
    # a model of another shape is measured again (a new key)
    other = EfficientAD(ModelConfig(image_size=96)).eval()
    m2 = copy.deepcopy(meta)
    Scorer(other, m2, "cpu", backend="auto")
    assert len(json.loads(cache.read_text())) == 2


def test_an_unwritable_cache_only_means_measuring_again(trained, tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("INSPECT_LINE_CACHE", str(blocker / "cache"))
    model, meta = load_checkpoint(trained[0])
    if not BF16:
        pytest.skip("no reduced path to time on this CPU")
    meta = _with_auroc(meta, "torch-bf16", 0.9)
    sc = Scorer(model, meta, "cpu", backend="auto")
    assert sc.path_choice.timings and not sc.path_choice.from_cache


@pytest.mark.skipif("openvino-int8" not in precision.reduced_paths_here(torch.device("cpu")),
                    reason="no ONNX Runtime quantisation or OpenVINO here")
def test_the_int8_paths_carry_their_quantised_graph_in_the_model_file(trained):
    path, good = trained
    model, meta = load_checkpoint(path)
    cals = precision.calibrations(meta)
    for name in precision.INT8_PATHS:
        cal = cals[name]
        assert isinstance(cal.graph, bytes) and len(cal.graph) > 10_000
        sc = Scorer(model, meta, "cpu", backend=name)
        out = sc.score(good[:4])
        assert np.isfinite(out.scores).all() and out.maps[0].shape == good[0].shape[:2]
    # a file whose int8 entry lost its graph has no int8 calibration
    lost = copy.deepcopy(meta)
    del lost["paths"]["openvino-int8"]["onnx"]
    with pytest.raises(InspectError, match="not calibrated for the openvino-int8"):
        Scorer(model, lost, "cpu", backend="openvino-int8")


def test_weights_from_parts_map_each_half_as_training_maps_m_st_and_m_ae():
    rng = np.random.default_rng(0)
    parts = rng.gamma(2.0, 1.0, size=(5, 2, 8, 8)).astype(np.float32)
    parts[:, 1] *= 7.0                                   # the halves on different scales
    w = precision.weights_from_parts(parts, 0.9, 0.995)
    mapped = precision.path_map(torch.from_numpy(parts), w).numpy()
    for k in (0, 1):
        qa, qb = np.quantile(parts[:, k], 0.9), np.quantile(parts[:, k], 0.995)
        assert np.isclose(w[k], 0.05 / (qb - qa), rtol=1e-4)
    expect = sum(0.05 * (parts[:, k] - np.quantile(parts[:, k], 0.9)) /
                 (np.quantile(parts[:, k], 0.995) - np.quantile(parts[:, k], 0.9)) for k in (0, 1))
    assert np.allclose(mapped[:, 0], expect, rtol=1e-4, atol=1e-6)
