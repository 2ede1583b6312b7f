"""Folder and video replay, source strings, and their bad-input messages."""
import time

import cv2
import numpy as np
import pytest

from engine.camera.base import EndOfStream, Pacer
from engine.camera.folder import FolderConfig, FolderSource
from engine.camera.spec import make_source, parse_spec
from engine.camera.video import VideoConfig, VideoSource
from engine.errors import InspectError


def write_png(path, value, shape=(24, 32)):
    img = np.zeros((*shape, 3), np.uint8)
    img[:, :] = (value, 255 - value, 7)          # RGB, so the channel order is checked too
    cv2.imwrite(str(path), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))


def drain(src, limit=50):
    frames = []
    with pytest.raises(EndOfStream):
        for _ in range(limit):
            f = src.read(timeout=0.5)
            if f is not None:
                frames.append(f)
    return frames


def test_folder_replays_in_name_order_once_and_names_what_it_skips(tmp_path):
    for name, value in [("img_10.png", 30), ("img_2.png", 20), ("img_1.png", 10)]:
        write_png(tmp_path / name, value)
    (tmp_path / "notes.txt").write_text("not a picture")
    (tmp_path / "img_5.png").write_bytes(b"\x89PNG broken")      # an image name, broken data
    (tmp_path / ".DS_Store").write_bytes(b"junk")
    warnings = []
    src = FolderSource(FolderConfig(str(tmp_path), fps=0, loop=False))
    src.on_warning = warnings.append
    src.open()
    frames = drain(src)
    assert [f.meta["file"] for f in frames] == ["img_1.png", "img_2.png", "img_10.png"]
    assert [int(f.rgb[0, 0, 0]) for f in frames] == [10, 20, 30]
    assert frames[0].rgb[0, 0].tolist() == [10, 245, 7]
    assert [f.id for f in frames] == [0, 1, 2]
    assert any("notes.txt" in w and "not an image" in w for w in warnings)
    assert any("img_5.png" in w for w in warnings)
    assert not any(".DS_Store" in w for w in warnings)
    assert set(src.settings()["skipped"]) == {"notes.txt", "img_5.png"}


def test_folder_loops_and_keeps_ids_monotonic(tmp_path):
    for i in range(3):
        write_png(tmp_path / f"{i}.png", i * 50)
    src = FolderSource(FolderConfig(str(tmp_path), fps=0, loop=True))
    src.open()
    frames = [src.read(0.5) for _ in range(7)]
    assert [f.meta["file"] for f in frames] == ["0.png", "1.png", "2.png"] * 2 + ["0.png"]
    assert [f.id for f in frames] == list(range(7))


def test_folder_paces_at_the_chosen_rate(tmp_path):
    write_png(tmp_path / "a.png", 1)
    src = FolderSource(FolderConfig(str(tmp_path), fps=20))
    src.open()
    started = time.monotonic()
    got = 0
    while got < 6:
        got += src.read(0.2) is not None
    assert 5 / 20 * 0.8 < time.monotonic() - started < 0.6


def test_folder_without_images_names_its_files(tmp_path):
    (tmp_path / "readme.md").write_text("x")
    (tmp_path / "data.csv").write_text("x")
    with pytest.raises(InspectError, match=r"has no images.*data\.csv.*readme\.md"):
        FolderSource(FolderConfig(str(tmp_path))).open()
    with pytest.raises(InspectError, match="does not exist"):
        FolderSource(FolderConfig(str(tmp_path / "nope"))).open()


def test_folder_of_only_broken_images_fails_with_the_file_name(tmp_path):
    (tmp_path / "bad.png").write_bytes(b"nope")
    src = FolderSource(FolderConfig(str(tmp_path), fps=0))
    src.open()
    with pytest.raises(InspectError, match="bad.png"):
        src.read(0.5)


def make_video(path, n=8, size=(48, 32)):
    w, h = size
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 50.0, (w, h))
    for i in range(n):
        img = np.full((h, w, 3), (20 * i, 0, 200), np.uint8)       # BGR: red channel 200
        writer.write(img)
    writer.release()


def test_video_file_replays_rgb_frames_then_ends(tmp_path):
    make_video(tmp_path / "clip.avi")
    src = VideoSource(VideoConfig(path=str(tmp_path / "clip.avi"), fps=0, loop=False))
    src.open()
    assert src.file_fps == pytest.approx(50.0)
    frames = drain(src)
    assert len(frames) == 8 and [f.id for f in frames] == list(range(8))
    r, g, b = frames[3].rgb[10, 10].astype(int)
    assert abs(r - 200) < 12 and abs(b - 60) < 12                   # BGR came back as RGB
    assert frames[3].rgb.shape == (32, 48, 3)


def test_video_loops(tmp_path):
    make_video(tmp_path / "clip.avi", n=3)
    src = VideoSource(VideoConfig(path=str(tmp_path / "clip.avi"), fps=0, loop=True))
    src.open()
    frames = [src.read(0.5) for _ in range(7)]
    assert [f.meta["video_frame"] for f in frames] == [0, 1, 2, 0, 1, 2, 0]


def test_video_bad_inputs_are_named(tmp_path):
    with pytest.raises(InspectError, match="missing.avi does not exist"):
        VideoSource(VideoConfig(path=str(tmp_path / "missing.avi"))).open()
    (tmp_path / "fake.mp4").write_bytes(b"this is no video")
    with pytest.raises(InspectError, match="fake.mp4"):
        src = VideoSource(VideoConfig(path=str(tmp_path / "fake.mp4")))
        src.open()
        src.read(0.5)


def test_source_strings_and_dicts():
    assert parse_spec("genicam:0?cti=a.cti&cti=b.cti&width=160") == {
        "kind": "genicam", "target": "0", "cti": ["a.cti", "b.cti"], "width": "160"}
    assert parse_spec("folder:C:\\images?fps=2")["target"] == "C:\\images"
    sim = make_source({"kind": "sim", "seed": 4, "width": 96, "height": 64, "fps": 0})
    assert sim.config.seed == 4 and sim.read(0.1).rgb.shape == (64, 96, 3)
    cam = make_source("genicam?model=Viky&exposure=100&roi=0,0,64,48&BouncingBallSize=3")
    assert cam.config.model == "Viky" and cam.config.serial is None
    assert cam.config.settings == {"exposure_us": "100", "width": 64, "height": 48,
                                   "offset_x": 0, "offset_y": 0, "BouncingBallSize": "3"}
    assert make_source("video:3").config.index == 3


@pytest.mark.parametrize("spec, message", [
    ("webcam", "Unknown source 'webcam'"),
    ("sim?sede=3", "no option sede"),
    ("sim?fps=fast", "fps needs a number"),
    ("folder", "needs a path"),
    ("folder:/x?loop=maybe", "loop needs yes/no"),
    ("genicam?roi=1,2,3", "roi needs x,y,width,height"),
])
def test_bad_source_strings_say_what_is_wrong(spec, message):
    with pytest.raises(InspectError, match=message):
        make_source(spec)


def test_pacer_never_sleeps_past_the_timeout():
    pacer = Pacer(2.0)               # one frame every 0.5 s
    assert pacer.wait(0.1)           # the first is due at once
    started = time.monotonic()
    assert not pacer.wait(0.1)       # the next is 0.5 s away: give up after 0.1 s
    assert time.monotonic() - started < 0.3
