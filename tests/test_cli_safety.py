"""Nothing lost, nothing silent: the command-line tools never touch real data by surprise,
refuse bad output places before the work, and say what they skipped or doubt.
Each test is a case a tester reproduced (issue "Nothing lost, nothing silent")."""
import csv
import json

import cv2
import numpy as np
import pytest
import torch

import main
from engine.train import RESUME_FORMAT
from synthetic import make_part

TINY = ["--steps", "30", "--image-size", "64", "--teacher", "random", "--penalty", "none",
        "--device", "cpu"]


def write_parts(folder, n=10, seed=0, size=96):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        cv2.imwrite(str(folder / f"{i:02d}.png"), make_part(rng, size=size)[0][:, :, ::-1])
    return folder


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """One tiny trained model for the score tests."""
    tmp = tmp_path_factory.mktemp("model")
    path = tmp / "m.pt"
    assert main.main(["train", "--good", str(write_parts(tmp / "good")), "--out", str(path)] + TINY) == 0
    return path


# -- case 1: bench log --url on a real log --------------------------------------------------
def test_bench_log_refuses_a_database_that_holds_rows(tmp_path, capsys):
    from sqlalchemy import insert

    from engine.log import InspectionLog
    from engine.log.schema import inspections

    real = tmp_path / "real.sqlite3"
    with InspectionLog.open(real) as log, log.write_connection() as conn, conn.begin():
        conn.execute(insert(inspections), [
            {"t_us": 10 ** 15 + i, "station": "line-1", "camera": "cam-1", "product": "part-A",
             "model_id": "real-model", "score": 0.1, "threshold": 0.5, "verdict": "PASS"}
            for i in range(7)])
    small = ["--rows", "40", "--verdicts", "10", "--fails", "2", "--size", "32", "--json"]
    assert main.main(["bench", "log", "--url", f"sqlite:///{real}"] + small) == 2
    err = capsys.readouterr().err
    assert "already holds rows (inspections: 7)" in err and "--overwrite-scratch" in err
    assert err.count("\n") == 1 and "Traceback" not in err
    with InspectionLog.open(real) as log:
        assert log.count() == 7                                  # untouched
    # an empty scratch database is used without asking, again after the bench's own rows;
    # a full one when told it may go
    scratch = f"sqlite:///{tmp_path / 'scratch.sqlite3'}"
    assert main.main(["bench", "log", "--url", scratch] + small) == 0
    assert main.main(["bench", "log", "--url", scratch] + small) == 0
    assert main.main(["bench", "log", "--url", f"sqlite:///{real}", "--overwrite-scratch"] + small) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["rows"] == 40


# -- case 2: train --out and its resume file, checked before any training --------------------
def _train_err(good, out, capsys) -> str:
    assert main.main(["train", "--good", str(good), "--out", str(out)] + TINY) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert "random teacher" not in err          # refused before training started
    return err


def test_train_refuses_a_folder_or_unwritable_out_before_training(tmp_path, capsys):
    good = write_parts(tmp_path / "good")
    (tmp_path / "models").mkdir()
    assert "is a folder; give a file path" in _train_err(good, tmp_path / "models", capsys)
    (tmp_path / "afile").write_text("not a folder")
    assert "cannot be written" in _train_err(good, tmp_path / "afile" / "m.pt", capsys)


@pytest.mark.parametrize("content", [
    b"garbage, not a torch file",
    b"PK\x03\x04 truncated zip",
    "dict",                                     # a resume dict whose values have wrong types
])
def test_train_refuses_a_garbage_resume_file_before_training(tmp_path, capsys, content):
    good = write_parts(tmp_path / "good")
    resume = tmp_path / "m.pt.partial.pt"
    if content == "dict":
        torch.save({"format": RESUME_FORMAT, "step": "three", "config": {}}, resume)
    else:
        resume.write_bytes(content)
    err = _train_err(good, tmp_path / "m.pt", capsys)
    assert f"{resume} is not a resume file this app can use" in err and "delete it" in err
    assert len([line for line in err.splitlines() if line.startswith("error:")]) == 1
    assert resume.exists() and not (tmp_path / "m.pt").exists()       # nothing deleted, nothing written


# -- case 3: score with nothing readable ---------------------------------------------------
def test_score_with_nothing_readable_fails(model, tmp_path, capsys):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "a.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    assert main.main(["score", "--model", str(model), str(bad)]) == 2
    err = capsys.readouterr().err
    assert "a.png" in err and "None of the 1 images could be read" in err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main.main(["score", "--model", str(model), str(empty)]) == 2
    assert "No images to score" in capsys.readouterr().err


# -- case 4: overlays of inputs that share a name ---------------------------------------------
def test_overlays_never_overwrite_each_other(model, tmp_path, capsys):
    write_parts(tmp_path / "a", n=1, seed=1)
    write_parts(tmp_path / "b", n=1, seed=2)               # both hold 00.png
    ov = tmp_path / "ov"
    args = ["score", "--model", str(model), str(tmp_path / "a"), str(tmp_path / "b"),
            "--overlays", str(ov), "--json"]
    assert main.main(args) == 0
    assert sorted(p.name for p in ov.iterdir()) == ["a_00_overlay.png", "b_00_overlay.png"]
    lines = [json.loads(l) for l in capsys.readouterr().out.splitlines()]
    assert sorted(l["overlay"] for l in lines) == [str(ov / "a_00_overlay.png"), str(ov / "b_00_overlay.png")]
    before = {p.name: p.read_bytes() for p in ov.iterdir()}
    assert main.main(args) == 0                             # again into the same folder
    assert len(list(ov.iterdir())) == 4
    assert all((ov / name).read_bytes() == data for name, data in before.items())


# -- case 5: grab twice into one folder; masks in their own folder ---------------------------
def test_grab_refuses_a_folder_with_files_and_keeps_masks_apart(tmp_path, capsys):
    out = tmp_path / "sim"
    grab = ["grab", "--source", "sim?fps=0&defect_rate=1&width=96&height=64&seed=2",
            "--count", "3", "--out", str(out)]
    assert main.main(grab) == 0
    with open(out / "frames.csv") as f:
        rows = list(csv.DictReader(f))
    assert all(r["mask"].startswith("masks/") and (out / r["mask"]).is_file() for r in rows)
    assert not list(out.glob("*_mask.png"))                  # none beside the frames
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    capsys.readouterr()
    assert main.main(grab) == 2
    err = capsys.readouterr().err
    assert "already holds files" in err and "new or empty folder" in err
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before


# -- case 6: masks beside good images are not learnt -----------------------------------------
def test_train_skips_mask_files_and_says_so(tmp_path, capsys):
    good = write_parts(tmp_path / "good")
    for i in range(5):
        cv2.imwrite(str(good / f"{i:02d}_mask.png"), np.zeros((96, 96), np.uint8))
    assert main.main(["train", "--good", str(good), "--out", str(tmp_path / "m.pt")] + TINY) == 0
    out, err = capsys.readouterr()
    assert "5 mask file(s)" in err
    meta = torch.load(tmp_path / "m.pt", weights_only=True)["meta"]
    assert meta["n_train"] + meta["n_holdout"] == 10


# -- case 7: images too small -----------------------------------------------------------------
def test_train_names_a_too_small_image(tmp_path, capsys):
    good = write_parts(tmp_path / "good")
    cv2.imwrite(str(good / "tiny.png"), np.full((10, 10, 3), 128, np.uint8))
    err = _train_err(good, tmp_path / "m.pt", capsys)
    assert f"{good / 'tiny.png'} is only 10×10 pixels" in err


def test_score_warns_about_a_too_small_image(model, tmp_path, capsys):
    d = write_parts(tmp_path / "in", n=1)
    cv2.imwrite(str(d / "tiny.png"), np.full((10, 10, 3), 128, np.uint8))
    assert main.main(["score", "--model", str(model), str(d)]) == 0
    err = capsys.readouterr().err
    assert f"WARNING: {d / 'tiny.png'} is only 10×10 pixels, too small to judge reliably" in err
    assert "00.png" not in err                               # the 96 px part is judged without a word
