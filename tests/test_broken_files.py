"""Nothing lost, nothing silent: the four cases a tester found on main, each as a test.

1. a product's model file missing / a text file / a newer format / a dict without config:
   the app opens and shows NO MODEL with the reason (it used to exit with status 1);
2. "camera": "sim" or "products": [...] in settings.json: the app opens on the file's other
   settings, names the field and keeps the file (it used to stop with a traceback);
3. NaN weights, and `score --threshold nan`: refused; a NaN score is a FAIL, never a PASS;
4. GENICAM_GENTL64_PATH naming a missing folder: said, not the virtual camera instead.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from app_fixtures import make_window, tiny_settings, wait_until
from engine.errors import InspectError
from engine.model import CHECKPOINT_VERSION, EfficientAD, ModelConfig, load_checkpoint, save_checkpoint
from engine.settings import ProductSettings, save_settings, settings_to_dict

ROOT = Path(__file__).resolve().parent.parent


# ---- 1. a model file the app cannot use --------------------------------------------------
def _bad_model(kind: str, path: Path) -> None:
    if kind == "missing":
        return
    if kind == "text":
        path.write_text("this is not a model\n")
        return
    save_checkpoint(EfficientAD(ModelConfig(image_size=64, out_channels=8)), path,
                    {"threshold": 0.5, "model_id": "m"})
    ck = torch.load(path, weights_only=True)
    if kind == "newer":
        ck["version"] = CHECKPOINT_VERSION + 1
    else:                                         # "no-config"
        del ck["config"]
    torch.save(ck, path)


def _data_dir_with_model(tmp_path: Path, kind: str) -> Path:
    d = tmp_path / "data"
    path = d / "models" / "p.pt"
    path.parent.mkdir(parents=True)
    _bad_model(kind, path)
    save_settings(tiny_settings(products={"p": ProductSettings(model_file=str(path))},
                                current_product="p"), d / "settings.json")
    return d


@pytest.mark.parametrize("kind, words", [("missing", "missing"), ("text", "not a model file"),
                                         ("newer", "newer version"), ("no-config", "config")])
def test_a_model_that_cannot_be_loaded_shows_no_model_and_the_app_stays_up(qtbot, tmp_path,
                                                                           kind, words):
    data_dir = _data_dir_with_model(tmp_path, kind)
    shown = []
    w = make_window(qtbot, data_dir, autostart=False)         # used to raise here
    try:
        w.services.errors.shown.connect(lambda where, msg, serious: shown.append(msg))
        wait_until(qtbot, lambda: "NO MODEL" in w.live.banner.text(), 10, "the NO MODEL banner")
        banner = w.live.banner.text()
        assert words in banner and "'p'" in banner and "Learn good parts" in banner
        assert w.isVisible() and not w.services.pipeline.has_model
        info = w.services.model_info
        assert info.error and not info.model_id and info.meta is None
        assert w.tabs.tabText(1) == "Learn good parts"        # the way out is there
    finally:
        w.close()


def test_the_app_process_with_a_broken_model_runs_and_exits_0(tmp_path):
    """The tester's case as a process: it used to exit with status 1 before any window."""
    data_dir = _data_dir_with_model(tmp_path, "text")
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    p = subprocess.run([sys.executable, "main.py", "--quit-after", "2", "--no-autostart",
                        "--data-dir", str(data_dir)], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr[-2000:]
    log_text = (data_dir / "logs" / "app.log").read_text()
    assert "Cannot use the model of 'p'" in log_text and "app exited with 0" in log_text


# ---- 2. settings values of the wrong shape --------------------------------------------------
@pytest.mark.parametrize("field, value, words", [
    ("camera", "sim", "camera must be a JSON object"),
    ("camera", {"source": "webcam", "fps": 12.0}, "Camera source must be one of"),
    ("products", [{"model_file": "x.pt"}], "products must be a JSON object"),
])
def test_wrong_settings_values_fall_back_field_by_field_and_the_file_is_kept(
        qtbot, tmp_path, field, value, words):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    d = {**settings_to_dict(tiny_settings(station="line7")), field: value}
    if field == "products":
        d["current_product"] = "demo part"
    original = json.dumps(d)
    (data_dir / "settings.json").write_text(original)
    w = make_window(qtbot, data_dir, autostart=False)        # used to raise here
    try:
        s = w.services.settings
        assert s.station == "line7" and s.image_size == 64    # the rest of the file is kept
        assert s.camera.source == "sim"
        if field == "camera" and isinstance(value, dict):
            assert s.camera.fps == 12.0                       # only the bad field fell back
        kept = list(data_dir.glob("settings.invalid-*.json"))
        assert len(kept) == 1 and kept[0].read_text() == original
        text = w.statusBar().currentMessage()
        assert words in text and kept[0].name in text
        # the repaired file is what the next start reads: no message the second time
        again = json.loads((data_dir / "settings.json").read_text())
        assert again["station"] == "line7" and isinstance(again["camera"], dict)
    finally:
        w.close()


# ---- 3. numbers that are not numbers --------------------------------------------------------
def test_a_model_with_nan_weights_or_threshold_is_refused_at_load(tmp_path):
    m = EfficientAD(ModelConfig(image_size=64, out_channels=8))
    with torch.no_grad():
        m.student[0].weight[0, 0, 0, 0] = float("nan")
    path = tmp_path / "nan.pt"
    save_checkpoint(m, path, {"threshold": 0.5})
    with pytest.raises(InspectError, match="student.0.weight.*not finite"):
        load_checkpoint(path)
    ok = EfficientAD(ModelConfig(image_size=64, out_channels=8))
    save_checkpoint(ok, path, {"threshold": float("nan")})
    with pytest.raises(InspectError, match="threshold"):
        load_checkpoint(path)
    with torch.no_grad():
        ok.teacher_std.fill_(float("inf"))
    save_checkpoint(ok, path, {"threshold": 0.5})
    with pytest.raises(InspectError, match="teacher_std"):
        load_checkpoint(path)


def test_a_nan_score_is_a_fail_with_its_reason_never_a_pass():
    from engine.types import Decision, Verdict, decide
    nan = float("nan")
    assert decide(nan, 0.5) == Decision.FAIL and decide(float("inf"), 0.5) == Decision.FAIL
    assert decide(0.1, nan) == Decision.FAIL
    assert decide(0.1, 0.5, review_below=nan) == Decision.REVIEW
    v = Verdict(frame_id=1, score=nan, decision=decide(nan, 0.5), threshold=0.5)
    assert v.decision == Decision.FAIL and "not a number (NaN)" in v.reason
    assert Verdict(2, 0.1, Decision.PASS, 0.5).reason == ""


def test_the_live_pipeline_fails_a_part_whose_score_is_nan():
    """Finite weights so large that the features overflow: the score is NaN. The live
    pipeline makes that part a FAIL, with the reason (it used to PASS)."""
    from engine.line import Pipeline
    from engine.scoring import Scorer
    from engine.types import Decision, Frame
    m = EfficientAD(ModelConfig(image_size=64, out_channels=8))
    with torch.no_grad():
        m.student[-1].weight.fill_(3e38)
    got = []
    p = Pipeline(feed=None, station="s", device="cpu", on_result=got.append)
    p._scorer = Scorer(m, {"threshold": 0.5}, device="cpu", backend="eager")
    p._threshold = 0.5
    rgb = np.full((64, 64, 3), 128, np.uint8)
    p._handle(Frame(id=0, t=0.0, wall_time=0.0, source="t", rgb=rgb))
    v = got[0].verdict
    assert not np.isfinite(v.score)
    assert v.decision == Decision.FAIL and "broken" in v.reason and p.fails == 1


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_score_threshold_must_be_a_finite_number(tmp_path, capsys, value):
    import main
    path = tmp_path / "m.pt"
    save_checkpoint(EfficientAD(ModelConfig(image_size=64, out_channels=8)), path, {"threshold": 0.5})
    img = tmp_path / "a.png"
    import cv2
    cv2.imwrite(str(img), np.zeros((64, 64, 3), np.uint8))
    with pytest.raises(SystemExit) as e:
        main.main(["score", "--model", str(path), str(img), f"--threshold={value}"])
    assert e.value.code == 2 and "--threshold" in capsys.readouterr().err


# ---- 4. the GenTL path names a folder that is not there ------------------------------------
def test_a_missing_gentl_path_folder_is_said_not_replaced_by_the_virtual_camera(monkeypatch, tmp_path):
    from engine.camera import genicam
    from engine.camera.spec import make_source
    if not genicam.VIKY_CTI.exists():
        pytest.skip("genicam wheel without viky.cti")
    missing = tmp_path / "vendor-sdk" / "cti"
    monkeypatch.setenv("GENICAM_GENTL64_PATH", str(missing))
    assert genicam.VIKY_CTI not in genicam.default_producers()
    with pytest.raises(InspectError, match=r"GENICAM_GENTL64_PATH lists .*vendor-sdk.*does not exist"):
        make_source("genicam?width=160&height=120").open()
    devices, problems = genicam.list_devices()
    assert devices == [] and any("does not exist" in p for p in problems)
    # a stale entry beside a working one: the working one is used, the stale one still said
    monkeypatch.setenv("GENICAM_GENTL64_PATH", os.pathsep.join([str(missing), str(genicam.VIKY_CTI)]))
    devices, problems = genicam.list_devices()
    assert devices and any("vendor-sdk" in p for p in problems)
