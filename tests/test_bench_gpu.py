"""`python main.py bench gpu`: the no-GPU answer, and every section run tiny on the CPU
(--smoke) so the code a GPU session will run has run here first."""
import json

import numpy as np
import pytest
import torch

from engine.bench import gpu
from synthetic import write_mvtec


def test_without_cuda_one_sentence_and_exit_2(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpu.main([]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("No CUDA GPU here: ") and err.count("\n") == 1, err
    assert gpu.main(["--device", "cuda", "--smoke"]) == 2       # asked for CUDA: no fallback
    # the full check is never run on the CPU by mistake
    assert gpu.main(["--device", "cpu"]) == 2
    assert "only with --smoke" in capsys.readouterr().err
    # a --data folder without images is said before anything is timed or trained
    assert gpu.main(["--smoke", "--device", "cpu", "--data", str(tmp_path)]) == 2
    assert "no MVTec-layout category" in capsys.readouterr().err


def test_generated_parts_have_defects_where_their_masks_say():
    ts = gpu._generated_set(gpu.SMOKE)
    assert len(ts.good) == gpu.SMOKE.train_images and len(ts.images) == gpu.SMOKE.test_images
    assert ts.defective.sum() == gpu.SMOKE.test_images // 2
    for im, bad, mask in zip(ts.images, ts.defective, ts.masks):
        assert im.dtype == np.uint8 and im.shape[2] == 3 and mask.shape == im.shape[:2]
        assert bool(mask.any()) == bool(bad)


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """One smoke run of every section on a subset made by --make-subset (read back from
    its JSON file, as a GPU session's $OUT/gpu.json would be)."""
    tmp = tmp_path_factory.mktemp("bench-gpu")
    write_mvtec(tmp / "src", "parts", n_train=16, n_good=4, n_bad=4)
    assert gpu.main(["--make-subset", str(tmp / "subset"), "--data", str(tmp / "src")]) == 0
    assert sorted(p.name for p in (tmp / "subset" / "parts" / "test").iterdir()) == ["blob", "good"]
    assert len(list((tmp / "subset" / "parts" / "ground_truth" / "blob").iterdir())) == 4
    report = tmp / "gpu.json"
    assert gpu.main(["--smoke", "--device", "cpu", "--data", str(tmp / "subset"),
                     "--json", str(report)]) == 0
    return json.loads(report.read_text())


def test_smoke_says_where_it_ran(smoke):
    info = smoke["info"]
    assert info["device"] == "cpu" and info["device_type"] == "cpu" and info["smoke"] is True
    assert info["seconds"] > 0 and info["tensorrt"]
    assert set(smoke) == {"info", "latency", "training", "detection", "pipeline"}


def test_smoke_latency_every_path_model_and_size(smoke):
    rows = smoke["latency"]
    assert {(r["size"], r["image_size"], r["path"]) for r in rows} == {
        (s, 64, p) for s in gpu.SMOKE.sizes for p in gpu.PATHS}
    for r in rows:
        if r["path"] in gpu.CUDA_ONLY:
            assert r["status"] == "needs CUDA", r
            continue
        assert r["status"] == "ok", r
        assert 0 < r["batch1_ms_p50"] <= r["batch1_ms_p95"] and r["runs"] >= 2
        assert set(r["images_per_s"]) == {"2"} and r["images_per_s"]["2"] > 0


def test_smoke_training_rates(smoke):
    rows = smoke["training"]
    assert {(r["size"], r["precision"]) for r in rows} == {
        (s, p) for s in gpu.SMOKE.sizes for p in ("fp32", "bf16")}
    fp32 = [r for r in rows if r["precision"] == "fp32"]
    assert all(r["status"] == "ok" and r["steps"] == 3 and r["steps_per_s"] > 0 for r in fp32), fp32
    for r in rows:                  # bf16: measured where the CPU has it, else said why not
        assert r["status"] == "ok" or r["status"].startswith("no bf16"), r


def test_smoke_detection_compares_every_path_with_eager(smoke):
    det = smoke["detection"]
    (cat,) = det["categories"]
    assert cat["category"] == "parts" and cat["status"] == "ok" and cat["steps"] == 3
    assert cat["test_images"] == 6 and cat["defective"] == 3 and cat["train_s"] > 0
    rows = {r["path"]: r for r in cat["paths"]}
    assert list(rows) == list(gpu.PATHS)
    assert all(rows[p]["status"] == "needs CUDA" for p in gpu.CUDA_ONLY)
    bf16 = rows["torch-bf16"]["status"] == "ok"        # where the CPU has bf16 arithmetic
    assert bf16 or rows["torch-bf16"]["status"] == "no bf16 on this CPU", rows["torch-bf16"]
    for name in ("eager", "torch-fp32") + (("torch-bf16",) if bf16 else ()):
        r = rows[name]
        assert r["status"] == "ok", r
        assert 0 <= r["false_reject_rate"] <= 1 and 0 <= r["miss_rate"] <= 1
        for key in ("image_auroc", "pixel_auroc", "au_pro"):
            assert 0.0 <= r[key] <= 1.0, (name, key, r[key])
        assert r["ms_per_image"] > 0
    assert "verdict_changes" not in rows["eager"]             # the reference itself
    fp32 = rows["torch-fp32"]                                  # the same arithmetic, folded
    assert fp32["verdict_changes"] == 0 and fp32["max_rel_score_diff"] < 1e-3
    assert fp32["threshold"] == rows["eager"]["threshold"] and fp32["calibration"] == "fp32's"
    assert fp32["image_auroc"] == pytest.approx(rows["eager"]["image_auroc"])
    if bf16:                       # a model in its own right: its own map weights and threshold
        r = rows["torch-bf16"]
        assert r["calibration"] == "its own" and r["threshold"] != fp32["threshold"]
        assert 0 <= r["verdict_changes"] <= 6 and r["max_rel_score_diff"] >= 0


def test_smoke_pipeline_judged_and_logged_every_part(smoke):
    p = smoke["pipeline"]
    assert p["status"] == "ok", p
    assert p["device"] == "cpu" and p["errors"] == []
    loops = gpu.pipeline_loops(p)
    assert loops, p
    for loop in loops.values():          # each loop bench pipeline ran (serial, pipelined)
        assert loop["errors"] == [] and loop["verdicts"] > 0, loop
        assert loop["verdicts"] + loop["skipped_frames"] == 8, loop
        assert loop["every_verdict_logged"] and loop["score_ms_median"] > 0, loop
