"""engine/settings.py: one validated model, JSON with a schema version."""
import json
from dataclasses import replace

import pytest

from engine.errors import InspectError
from engine.settings import (SCHEMA_VERSION, CameraSettings, LayoutSettings, ProductSettings,
                             Settings, load_settings, parse_polygon, parse_roi, save_settings,
                             settings_from_dict, settings_to_dict)


def test_defaults_are_valid_and_round_trip(tmp_path):
    s = replace(Settings(), camera=CameraSettings(exposure_us=5000.0),
                layout=LayoutSettings(tiling=True, tile_scale=0.5, roi=(10, 20, 100, 80),
                                      roi_polygon=((10, 20), (100, 20), (50, 90))),
                products={"a": ProductSettings(model_file="m.pt", threshold=0.3, review_below=0.2)},
                current_product="a")
    path = tmp_path / "s.json"
    save_settings(s, path)
    assert load_settings(path) == s
    assert json.loads(path.read_text())["schema_version"] == SCHEMA_VERSION


def test_missing_file_gives_defaults(tmp_path):
    assert load_settings(tmp_path / "none.json") == Settings()


@pytest.mark.parametrize("change, words", [
    (dict(device="gpu"), "Device must be one of"),
    (dict(image_size=100), "multiple of 32"),
    (dict(training_steps=0), "Training steps"),
    (dict(current_product="nope"), "not in the product list"),
    (dict(camera=CameraSettings(source="folder")), "needs a path"),
    (dict(camera=CameraSettings(trigger="sometimes")), "Trigger must be"),
    (dict(layout=LayoutSettings(roi=(0, 0, 10, 10))), "at least 32×32"),
    (dict(layout=LayoutSettings(tile_scale=9.0)), "Tile scale must be"),
    (dict(layout=LayoutSettings(roi_polygon=((1, 2), (3, 4)))), "at least 3 points"),
    (dict(products={"p": ProductSettings(threshold=0.2, review_below=0.3)}, current_product="p"),
     "must be below the fail threshold"),
    (dict(storage=replace(Settings().storage, database_url="my-server")), "is not a URL"),
])
def test_invalid_values_are_named_in_plain_words(change, words):
    with pytest.raises(InspectError, match=words):
        replace(Settings(), **change).validate()


def test_newer_schema_is_refused_with_a_clear_message(tmp_path):
    path = tmp_path / "s.json"
    path.write_text(json.dumps({**settings_to_dict(Settings()), "schema_version": SCHEMA_VERSION + 1}))
    with pytest.raises(InspectError, match="newer version of this app"):
        load_settings(path)


def test_older_file_without_version_or_new_fields_is_upgraded():
    old = {"station": "line7", "camera": {"source": "simulated"}, "device": "cpu"}
    s = settings_from_dict(old)
    assert s.schema_version == SCHEMA_VERSION and s.station == "line7" and s.device == "cpu"
    assert s.training_steps == Settings().training_steps
    assert s.camera.source == "sim"          # the old name, read as the camera spec's kind


def test_version_1_region_of_interest_moves_to_the_layout():
    v1 = {"schema_version": 1, "camera": {"source": "simulated", "roi": [5, 6, 100, 120]}}
    s = settings_from_dict(v1)
    assert s.layout.roi == (5, 6, 100, 120) and s.schema_version == SCHEMA_VERSION
    assert not hasattr(s.camera, "roi")


def test_roi_and_polygon_text_is_parsed_or_explained():
    assert parse_roi(" 1, 2,300 ,400 ") == (1, 2, 300, 400) and parse_roi("") is None
    assert parse_polygon("1,2; 30,2;30,40") == ((1, 2), (30, 2), (30, 40))
    assert parse_polygon("  ") is None
    with pytest.raises(InspectError, match="four whole numbers"):
        parse_roi("1,2,3")
    with pytest.raises(InspectError, match="at least 3 points"):
        parse_polygon("1,2;3")


def test_unknown_fields_wrong_types_and_broken_json_are_explained(tmp_path):
    with pytest.raises(InspectError, match="unknown field.*colour"):
        settings_from_dict({"colour": "red"})
    with pytest.raises(InspectError, match="training_steps must be a whole number"):
        settings_from_dict({"training_steps": "many"})
    path = tmp_path / "s.json"
    path.write_text("{not json")
    with pytest.raises(InspectError, match="cannot be read"):
        load_settings(path)


def test_save_is_atomic_and_refuses_invalid(tmp_path):
    path = tmp_path / "s.json"
    save_settings(Settings(), path)
    before = path.read_text()
    with pytest.raises(InspectError):
        save_settings(replace(Settings(), device="gpu"), path)
    assert path.read_text() == before
    assert not list(tmp_path.glob("*.tmp"))


def test_the_app_starts_on_defaults_when_the_settings_file_is_bad(qtbot, tmp_path):
    """A settings file from a newer app (or broken) never stops the app: it is kept aside,
    the user is told, and the app runs on defaults."""
    from app.services import Services
    from app.tasks import ErrorHandler
    path = tmp_path / "settings.json"
    path.write_text(json.dumps({**settings_to_dict(Settings()), "schema_version": SCHEMA_VERSION + 1}))
    errors = ErrorHandler()
    shown = []
    errors.shown.connect(lambda where, msg, serious: shown.append(msg))
    services = Services(tmp_path, errors, backend="eager")
    assert services.settings == Settings()
    kept = list(tmp_path.glob("settings.invalid-*.json"))
    assert len(kept) == 1 and "schema_version" in kept[0].read_text()
    qtbot.waitUntil(lambda: len(shown) >= 2, timeout=5000)
    assert any("newer version" in m for m in shown) and any(kept[0].name in m for m in shown)
    services.shutdown()


def test_training_minutes_round_trip_and_reach_learn(qtbot, tmp_path):
    from app_fixtures import make_window, tiny_settings
    from engine.settings import load_settings, save_settings
    d = tmp_path / "data"
    save_settings(tiny_settings(training_minutes=2.5), d / "settings.json")
    assert load_settings(d / "settings.json").training_minutes == 2.5
    w = make_window(qtbot, d, autostart=False)
    try:
        w.settings_screen.load(w.services.settings)
        assert w.settings_screen.minutes.value() == 2.5
        w.learn.on_shown()
        assert "2.5 minutes (at most 10 steps)" in w.learn.plan.text()
    finally:
        w.close()
    bad = tiny_settings(training_minutes=float("nan"))
    assert any("Training minutes" in p for p in bad.problems())


def test_settings_and_live_screens_offer_every_source_kind_and_an_opencv_camera_saves(qtbot, tmp_path):
    from app_fixtures import make_window, tiny_settings
    from engine.camera.kinds import KINDS
    from engine.settings import load_settings, save_settings
    d = tmp_path / "data"
    save_settings(tiny_settings(), d / "settings.json")
    w = make_window(qtbot, d, autostart=False)
    try:
        box = w.settings_screen.source
        assert [box.itemData(i) for i in range(box.count())] == list(KINDS)
        live = w.live.camera_box
        assert [live.itemData(i) for i in range(live.count())] == list(KINDS)
        assert live.currentData() == "sim"
        box.setCurrentIndex(box.findData("opencv"))
        w.settings_screen.device_id.setText("1")
        w.services.save(w.settings_screen.form_settings())
        assert load_settings(d / "settings.json").camera.source == "opencv"
        assert w.services.feed.cam.source_spec() == {"kind": "opencv", "target": "1"}
    finally:
        w.close()


def test_what_to_do_when_the_log_fails_is_a_setting_on_screen(qtbot, tmp_path):
    from app_fixtures import make_window, tiny_settings
    from engine.settings import save_settings
    d = tmp_path / "data"
    save_settings(tiny_settings(), d / "settings.json")
    w = make_window(qtbot, d, autostart=False)
    try:
        screen = w.settings_screen
        screen.load(w.services.settings)
        assert screen.when_log_fails.currentData() == "stop"
        screen.when_log_fails.setCurrentIndex(screen.when_log_fails.findData("spool"))
        screen.apply()
        assert w.services.settings.storage.when_log_fails == "spool"
    finally:
        w.close()
