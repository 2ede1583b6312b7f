"""`main.py cameras`, `main.py grab` and `main.py bench camera` as a user runs them."""
import csv
import json

import cv2
import numpy as np
import pytest

import main
from engine.camera.genicam import VIKY_CTI


def test_cameras_lists_producer_devices_settings_and_other_sources(capsys):
    assert main.main(["cameras"]) == 0
    out = capsys.readouterr().out
    assert str(VIKY_CTI) in out and "virtual camera" in out
    for serial in "012":
        assert f"Viky SN {serial}" in out and f"--source genicam:{serial}" in out
    assert "width 400 (100..800)" in out and "pixel format RGBa8 [RGBa8, Mono8]" in out
    assert "not on this camera: offset x, offset y, exposure µs, gain dB" in out
    assert "sim " in out and "folder:PATH" in out


def test_cameras_json_and_a_missing_producer(capsys, tmp_path):
    missing = tmp_path / "vendor.cti"
    assert main.main(["cameras", "--json", "--cti", str(missing), "--cti", str(VIKY_CTI)]) == 2
    report = json.loads(capsys.readouterr().out)
    assert any("vendor.cti does not exist" in p for p in report["problems"])
    assert len(report["devices"]) == 3
    assert report["devices"][0]["settings"]["frame_rate"]["max"] == 200.0


def test_grab_saves_frames_from_the_virtual_camera(tmp_path, capsys):
    out = tmp_path / "grab"
    rc = main.main(["grab", "--source", "genicam:1?width=160&height=120&pixel_format=Mono8&fps=100",
                    "--count", "5", "--out", str(out), "--raw"])
    assert rc == 0, capsys.readouterr().err
    rows = list(csv.DictReader(open(out / "frames.csv")))
    assert len(rows) == 5 and all(r["source"] == "Viky:SN1" for r in rows)
    ids = [int(r["id"]) for r in rows]
    assert ids == sorted(set(ids))
    img = cv2.imread(str(out / rows[0]["file"]))
    assert img.shape == (120, 160, 3)
    raw = np.load(out / rows[0]["raw"])
    assert raw.shape == (120, 160) and np.array_equal(raw, img[:, :, 0])
    assert "saved 5 frames" in capsys.readouterr().out


def test_grab_from_the_simulated_line_keeps_labels_and_masks(tmp_path):
    out = tmp_path / "sim"
    assert main.main(["grab", "--source", "sim?fps=0&defect_rate=1&width=128&height=96&seed=2",
                      "--count", "4", "--out", str(out)]) == 0
    rows = list(csv.DictReader(open(out / "frames.csv")))
    assert all(r["label"] in ("scratch", "stain", "missing", "extra", "misplaced") for r in rows)
    mask = cv2.imread(str(out / rows[0]["mask"]), cv2.IMREAD_GRAYSCALE)
    assert mask.shape == (96, 128) and mask.max() == 255


@pytest.mark.parametrize("args, message", [
    (["--source", "genicam:0", "--set", "exposure=500"], "no exposure_us setting"),
    (["--source", "genicam?cti=/nowhere/x.cti"], "/nowhere/x.cti does not exist"),
    (["--source", "folder:/nowhere"], "Folder /nowhere does not exist"),
    (["--source", "genicam:0", "--set", "width"], "--set needs KEY=VALUE"),
])
def test_grab_bad_input_is_one_clear_line(tmp_path, capsys, args, message):
    assert main.main(["grab", "--count", "1", "--out", str(tmp_path / "o"), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_bench_reports_each_source(capsys):
    assert main.main(["bench", "camera", "--seconds", "0.4", "--width", "128", "--height", "100",
                      "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    results = {r["spec"].split(":")[0].split("?")[0]: r for r in report["results"]}
    assert set(results) == {"sim", "folder", "video", "genicam"}
    for r in results.values():
        assert r["received"] > 5 and r["rate_hz"] > 0 and r["frame"] == "128x100"   # no timing bound
        assert r["received"] >= r["consumed"] and r["dropped"] >= 0
