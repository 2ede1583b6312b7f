"""The real GenTL path: harvesters + the genicam wheel's virtual camera (viky.cti).

Frames are kept small (160×120) so the whole file runs in seconds on a shared 2-core machine.
"""
import shutil
import time

import numpy as np
import pytest

from engine.camera import genicam
from engine.camera.acquisition import Acquisition, AcquisitionConfig, State
from engine.camera.base import SourceUnavailable
from engine.camera.genicam import VIKY_CTI, list_devices
from engine.camera.spec import make_source
from engine.errors import InspectError

pytestmark = pytest.mark.skipif(not VIKY_CTI.exists(), reason="genicam wheel without viky.cti")
SMALL = "width=160&height=120"
QUICK = AcquisitionConfig(read_timeout_s=0.1, reconnect_first_s=0.1, reconnect_max_s=0.8,
                          status_every_s=0.2)


def frames_for(acq, n, seconds):
    out, end = [], time.monotonic() + seconds
    while len(out) < n and time.monotonic() < end:
        f = acq.wait_frame(timeout=0.5)
        if f is not None:
            out.append(f)
    return out


def wait_for(seen, state, seconds, after=0):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        hits = [i for i, s in enumerate(seen) if i >= after and s.state == state]
        if hits:
            return hits[0]
        time.sleep(0.02)
    raise AssertionError(f"no {state} within {seconds} s: {[(s.state, s.message) for s in seen]}")


@pytest.fixture
def running():
    """Start acquisitions through this and they are stopped even when a test fails."""
    started = []

    def start(spec, config=QUICK):
        seen = []
        src = make_source(spec)
        acq = Acquisition(src, on_status=seen.append, config=config).start()
        started.append(acq)
        return src, acq, seen

    yield start
    for acq in started:
        assert acq.stop(timeout=1.0)


def test_lists_the_three_virtual_cameras():
    devices, problems = list_devices()
    assert not problems
    assert [(d.model, d.serial) for d in devices] == [("Viky", "0"), ("Viky", "1"), ("Viky", "2")]
    assert devices[0].spec == "genicam:0" and devices[0].access == "readwrite"
    assert devices[0].producer == str(VIKY_CTI)


def test_streams_over_100_frames_copied_out_of_the_gentl_buffers(running):
    src, acq, seen = running(f"genicam:0?{SMALL}&fps=200")
    frames = frames_for(acq, 120, seconds=8)
    assert len(frames) >= 100
    first, first_copy = frames[0], frames[0].rgb.copy()
    assert all(f.rgb.shape == (120, 160, 3) and f.rgb.dtype == np.uint8 for f in frames)
    assert all(f.source == "Viky:SN0" for f in frames)
    ids = [f.id for f in frames]
    assert ids == sorted(set(ids)) and ids[0] < 5    # the slot may already hold a newer one
    assert all(b.t >= a.t for a, b in zip(frames, frames[1:]))
    camera_ids = [f.meta["camera_frame_id"] for f in frames]
    assert camera_ids == sorted(camera_ids)
    assert not all(np.array_equal(first_copy, f.rgb) for f in frames[1:])   # the ball moves
    # the 4 GenTL buffers were refilled ~30 times since: the first frame must not have changed
    np.testing.assert_array_equal(first.rgb, first_copy)
    status = acq.status()
    # a rate is measured (its size is the bench's business: no timing bound in a test)
    assert status.state == State.STREAMING and status.received >= 100 and status.rate_hz > 0
    assert status.received == status.delivered + status.dropped + (acq.latest() is not None)


def test_settings_change_mid_stream_and_read_back(running):
    src, acq, seen = running(f"genicam:1?{SMALL}&fps=100&keep_raw=1")
    assert frames_for(acq, 3, 5)
    back = acq.apply_settings({"width": 200, "height": 100, "fps": 50, "BouncingBallSize": 7,
                               "pixel_format": "Mono8"})
    assert back["width"] == 200 and back["height"] == 100 and back["frame_rate"] == 50.0
    assert back["BouncingBallSize"] == 7 and back["pixel_format"] == "Mono8"
    assert src.settings() == back
    nodes = src.acquirer.remote_device.node_map                # straight from the device
    assert (nodes.Width.value, nodes.Height.value, nodes.PixelFormat.value) == (200, 100, "Mono8")
    acq.latest()
    frame = frames_for(acq, 1, 5)[0]
    assert frame.rgb.shape == (100, 200, 3) and frame.meta["pixel_format"] == "Mono8"
    assert np.array_equal(frame.rgb[:, :, 0], frame.rgb[:, :, 2])           # grey
    assert frame.raw.shape == (100, 200) and frame.raw.dtype == np.uint8


@pytest.mark.parametrize("changes, message", [
    ({"exposure_us": 1000}, r"Viky SN 2 has no exposure_us setting \(GenICam node ExposureTime"),
    ({"gain_db": 3}, r"no gain_db setting"),
    ({"trigger": "Line1:rising"}, r"no trigger setting .*TriggerMode"),
    ({"width": 5000}, r"width 5000 is outside 100\.\.800"),
    ({"pixel_format": "BayerRG8"}, r"'BayerRG8' is not offered; choose one of RGBa8, Mono8"),
    ({"pixel_format": "Mono12p"}, r"'Mono12p' is not supported"),
    ({"NoSuchNode": 1}, r"has no setting 'NoSuchNode'"),
    ({"PayloadSize": 5}, r"PayloadSize\) is read-only"),
])
def test_unsupported_settings_are_named_and_the_stream_goes_on(running, changes, message):
    src, acq, seen = running(f"genicam:2?{SMALL}&fps=100")
    assert frames_for(acq, 2, 5)
    with pytest.raises(InspectError, match=message):
        acq.apply_settings(changes)
    acq.latest()
    assert frames_for(acq, 3, 5)                     # still streaming, unchanged
    assert src.settings()["width"] == 160


def test_free_run_is_accepted_on_a_camera_without_triggers(running):
    src, acq, seen = running(f"genicam:0?{SMALL}&trigger=free")
    assert frames_for(acq, 2, 5)
    assert acq.apply_settings({"trigger": "free"})["width"] == 160
    with pytest.raises(InspectError, match="no trigger setting"):
        acq.apply_settings({"trigger": "software"})


def test_a_bad_setting_at_open_fails_the_source_with_its_message(running):
    src, acq, seen = running(f"genicam:0?{SMALL}&exposure=500")
    assert acq.wait_frame(timeout=3) is None
    assert seen[-1].state == State.FAILED and "no exposure_us setting" in seen[-1].message


def test_tear_down_mid_stream_then_reconnect_with_settings_restored(running):
    src, acq, seen = running(f"genicam:0?{SMALL}&fps=100&BouncingBallSize=9")
    before = frames_for(acq, 20, 5)
    src.acquirer.device.module.close()               # the device goes away under the stream
    lost = wait_for(seen, State.RECONNECTING, 3)
    wait_for(seen, State.STREAMING, 5, after=lost)
    acq.latest()
    after = frames_for(acq, 20, 5)
    assert len(after) == 20 and after[0].id > before[-1].id          # ids carry on
    assert all(f.rgb.shape == (120, 160, 3) for f in after)          # the ROI came back
    assert src.settings()["BouncingBallSize"] == 9
    assert acq.status().reconnects == 1
    assert "stopped delivering frames" in seen[lost].message


def test_camera_absent_for_a_while_is_retried_with_backoff_until_it_returns(running, tmp_path):
    cti = tmp_path / "line_camera.cti"               # a private copy we can make disappear
    shutil.copy(VIKY_CTI, cti)
    src, acq, seen = running(f"genicam:1?cti={cti}&{SMALL}&fps=100")
    assert frames_for(acq, 5, 5)
    hidden = tmp_path / "unplugged"
    cti.rename(hidden)
    src.acquirer.device.module.close()
    lost = wait_for(seen, State.RECONNECTING, 3)
    time.sleep(1.2)                                  # several retries while it is away
    retries = [s.message for s in seen[lost:] if "Retrying in" in s.message]
    assert len(retries) >= 2 and "line_camera.cti" in retries[0]
    delays = [float(m.rsplit("Retrying in ", 1)[1].split(" s")[0]) for m in retries]
    assert delays[:3] == sorted(delays[:3]) and delays[1] > delays[0]
    hidden.rename(cti)                               # plugged back in
    wait_for(seen, State.STREAMING, 4, after=lost)
    acq.latest()
    assert frames_for(acq, 5, 5)
    assert acq.status().reconnects == 1


def test_a_camera_that_goes_silent_is_detected_and_restarted(running):
    src, acq, seen = running(f"genicam:2?{SMALL}&fps=100&stall_after_s=0.5")
    assert frames_for(acq, 5, 5)
    src.acquirer.remote_device.node_map.AcquisitionStop.execute()   # stops sending, no error
    lost = wait_for(seen, State.RECONNECTING, 3)
    assert "sent no frame" in seen[lost].message
    wait_for(seen, State.STREAMING, 4, after=lost)
    acq.latest()
    assert frames_for(acq, 5, 5)


def test_stop_returns_within_a_second_while_fetch_waits(running):
    src, acq, seen = running(f"genicam:0?{SMALL}&fps=1")       # a frame only every second
    assert frames_for(acq, 1, 5)
    time.sleep(0.1)
    started = time.monotonic()
    assert acq.stop(timeout=1.0)
    assert time.monotonic() - started < 1.0
    assert not src.is_open


def test_busy_device_is_named():
    first = make_source(f"genicam:2?{SMALL}")
    first.open()
    try:
        devices, _ = list_devices()
        assert {d.serial: d.access for d in devices}["2"].startswith("open")
        with pytest.raises(SourceUnavailable, match=r"Viky SN 2 is busy"):
            make_source("genicam:2").open()
        assert first.read(2.0) is not None           # the first owner is undisturbed
    finally:
        first.close()


def test_devices_open_by_serial_device_id_or_model():
    for spec, name in [("genicam:VikyTL_DEV_green", "Viky:SN1"), ("genicam?model=Viky", "Viky:SN0")]:
        src = make_source(spec)
        src.open()
        try:
            assert src.name == name and src.read(2.0).source == name
        finally:
            src.close()


def test_unknown_device_is_named_with_what_was_found():
    with pytest.raises(SourceUnavailable, match=r"serial 77.*not found.*Viky SN 0, Viky SN 1"):
        make_source("genicam:77").open()


def test_missing_broken_and_wrong_producer_files_are_named(tmp_path):
    missing = tmp_path / "vendor.cti"
    with pytest.raises(InspectError, match=r"vendor.cti does not exist"):
        make_source(f"genicam?cti={missing}").open()
    broken = tmp_path / "broken.cti"
    broken.write_bytes(b"\x7fELF but not really a library")
    with pytest.raises(InspectError, match=r"broken.cti cannot be loaded"):
        make_source(f"genicam?cti={broken}").open()
    with pytest.raises(InspectError, match=r"is not a file"):
        make_source(f"genicam?cti={tmp_path}").open()
    devices, problems = list_devices([missing, VIKY_CTI])
    assert len(devices) == 3 and len(problems) == 1 and "vendor.cti" in problems[0]


def test_broken_producer_in_the_acquisition_thread_is_reported_not_raised(running, tmp_path):
    broken = tmp_path / "broken.cti"
    broken.write_bytes(b"garbage")
    src, acq, seen = running(f"genicam?cti={broken}")
    assert acq.wait_frame(timeout=2) is None
    assert seen[-1].state == State.FAILED and "broken.cti" in seen[-1].message


def test_producer_list_honours_the_gentl_path_variable(monkeypatch, tmp_path):
    monkeypatch.setenv("GENICAM_GENTL64_PATH", str(tmp_path))
    assert genicam.default_producers() == [VIKY_CTI]            # folder without producers
    shutil.copy(VIKY_CTI, tmp_path / "vendor.cti")
    assert genicam.default_producers() == [tmp_path / "vendor.cti"]
