"""The command line end to end on tiny synthetic data (random teacher, few steps)."""
import json

import cv2
import numpy as np
import pytest

import main
from synthetic import make_part, write_mvtec


@pytest.fixture()
def good_dir(tmp_path):
    rng = np.random.default_rng(0)
    d = tmp_path / "good"
    d.mkdir()
    for i in range(10):
        cv2.imwrite(str(d / f"{i:02d}.png"), make_part(rng)[0][:, :, ::-1])
    (d / "zz_corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    return d


TINY = ["--steps", "30", "--image-size", "64", "--teacher", "random", "--penalty", "none",
        "--device", "cpu"]


def test_train_then_score(good_dir, tmp_path, capsys):
    model = tmp_path / "m.pt"
    assert main.main(["train", "--good", str(good_dir), "--out", str(model)] + TINY) == 0
    out, err = capsys.readouterr()
    assert "zz_corrupt.png" in err and "cannot be read" in err        # reported by name, skipped
    assert "random teacher" in err
    assert model.is_file() and "threshold" in out
    assert not (tmp_path / "m.pt.partial.pt").exists()       # removed once the model is saved
    rng = np.random.default_rng(5)
    test = tmp_path / "test"
    test.mkdir()
    cv2.imwrite(str(test / "bad.png"), make_part(rng, defect=True)[0][:, :, ::-1])
    cv2.imwrite(str(test / "good.png"), make_part(rng)[0][:, :, ::-1])
    ov = tmp_path / "ov"
    assert main.main(["score", "--model", str(model), str(test), "--overlays", str(ov), "--json"]) == 0
    lines = [json.loads(l) for l in capsys.readouterr().out.splitlines()]
    assert {l["path"].split("/")[-1] for l in lines} == {"bad.png", "good.png"}
    assert all(l["verdict"] in ("PASS", "FAIL") for l in lines)
    assert (ov / "bad_overlay.png").is_file()


def test_user_errors_are_one_clear_line(tmp_path, capsys):
    assert main.main(["score", "--model", str(tmp_path / "none.pt"), str(tmp_path)]) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "few").mkdir()
    assert main.main(["train", "--good", str(tmp_path / "few"), "--out", str(tmp_path / "m.pt")] + TINY) == 2
    assert "at least 5 good images" in capsys.readouterr().err
    assert main.main(["eval", "--data", str(tmp_path), "--category", "nothing"] + TINY) == 2
    assert "MVTec layout" in capsys.readouterr().err


def test_eval_json(tmp_path, capsys):
    write_mvtec(tmp_path, "widget")
    assert main.main(["eval", "--data", str(tmp_path), "--category", "widget", "--json"] + TINY) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for key in ("image_auroc", "pixel_auroc", "au_pro", "train_seconds", "ms_per_image"):
        assert key in res
    assert set(res["per_type"]) == {"blob"}
    assert 0.0 <= res["au_pro"] <= 1.0
    # the same trained model evaluated again from its file gives the same numbers
    model = tmp_path / "m.pt"
    assert main.main(["eval", "--data", str(tmp_path), "--category", "widget", "--json",
                      "--save-model", str(model)] + TINY) == 0
    first = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert main.main(["eval", "--data", str(tmp_path), "--category", "widget", "--json",
                      "--model", str(model)]) == 0
    again = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert again["train_seconds"] is None and again["steps"] == 30 and again["image_size"] == 64
    for key in ("image_auroc", "pixel_auroc", "au_pro", "threshold"):
        assert again[key] == pytest.approx(first[key], abs=1e-6)


def test_eval_missing_mask_is_explained(tmp_path, capsys):
    base = write_mvtec(tmp_path, "widget")
    next((base / "ground_truth" / "blob").iterdir()).unlink()
    assert main.main(["eval", "--data", str(tmp_path), "--category", "widget"] + TINY) == 2
    assert "mask" in capsys.readouterr().err


def test_bench_score_on_a_category(good_dir, tmp_path, capsys):
    """`bench score --model M --data CATEGORY`: every chosen path timed and compared with the
    eager baseline on every test image of that category."""
    model = tmp_path / "m.pt"
    assert main.main(["train", "--good", str(good_dir), "--out", str(model)] + TINY) == 0
    base = write_mvtec(tmp_path / "sets", "widget")
    n_test = len(list(base.glob("test/*/*")))
    capsys.readouterr()
    quick = tmp_path / "q.pt"
    assert main.main(["train", "--kind", "quick", "--good", str(good_dir), "--out", str(quick),
                      "--image-size", "64", "--penalty", "none", "--device", "cpu"]) == 0
    capsys.readouterr()
    from engine.precision import bf16_on_cpu
    paths = ["eager", "torch-fp32-nnpack"] + (["torch-bf16"] if bf16_on_cpu() else [])
    assert main.main(["bench", "score", "--model", str(model), "--data", str(base), "--images", "0",
                      "--iters", "2", "--paths", ",".join(paths), "--quick", str(quick),
                      "--json"]) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert res["info"]["accuracy_images"] == n_test > 0
    names = [p["name"] for p in res["paths"]]
    assert names == paths + ["quick"]
    assert res["paths"][0]["speedup"] == pytest.approx(1.0)
    for p in res["paths"][:2]:
        assert p["verdict_changes"] == 0 and p["max_score_rel_diff"] < 1e-3
    assert res["paths"][-1]["verdict_changes"] is None and res["paths"][-1]["ms_median"] > 0
    # detection of every path (the quick model is another model) on the whole test split
    det = {r["name"]: r for r in res["detection"]}
    assert list(det) == paths
    for r in det.values():
        assert r["n_images"] == n_test and 0.0 <= r["image_auroc"] <= 1.0
        assert 0.0 <= r["au_pro"] <= 1.0 and 0.0 <= r["false_reject_rate"] <= 1.0
    assert det["torch-fp32-nnpack"]["verdict_changes"] == 0
    assert det["torch-fp32-nnpack"]["image_auroc"] == pytest.approx(det["eager"]["image_auroc"], abs=1e-6)
    if "torch-bf16" in det:                 # its own threshold: the calibration's, not fp32's
        assert det["torch-bf16"]["threshold"] != det["eager"]["threshold"]
    assert main.main(["bench", "score", "--model", str(model), "--data", str(base), "--iters", "1",
                      "--paths", "eager", "--quick", str(quick)]) == 0      # the printed table
    assert "another model (no score comparison)" in capsys.readouterr().out
    assert main.main(["bench", "score", "--model", str(model), "--data", str(tmp_path / "good"),
                      "--iters", "1", "--quick", "none"]) == 2
    assert "No test images" in capsys.readouterr().err


def test_quick_kind_trains_and_evaluates_from_the_command_line(good_dir, tmp_path, capsys):
    """`train --kind quick` and `eval --kind quick`: no steps, the same threshold rule and
    report, and the model file says what it is."""
    quick = ["--kind", "quick", "--image-size", "64", "--penalty", "none", "--device", "cpu"]
    model = tmp_path / "q.pt"
    assert main.main(["train", "--good", str(good_dir), "--out", str(model)] + quick) == 0
    out = capsys.readouterr().out
    assert "0 steps" in out and "threshold" in out
    card = (tmp_path / "q.card.txt").read_text()
    assert "quick model" in card and "memory bank of" in card and "no teacher" in card
    write_mvtec(tmp_path / "sets", "widget")
    assert main.main(["eval", "--data", str(tmp_path / "sets"), "--category", "widget", "--json"]
                     + quick) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert res["kind"] == "quick" and res["steps"] == 0 and res["model"].startswith("quick model")
    assert res["image_auroc"] > 0.9 and res["model_file_mb"] > 0
