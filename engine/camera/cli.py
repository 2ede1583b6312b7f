"""`python main.py cameras` and `python main.py grab`: the camera layer from the command line.

Same engine calls the GUI makes (list_sources, make_source, Acquisition). A user error
(InspectError: missing .cti, unknown setting, empty folder) is one line and exit status 2.
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from engine.errors import InspectError, run_command


def _fmt_setting(d: dict | None) -> str:
    if not d:
        return "-"
    value = d.get("value", "?")
    if isinstance(value, float):
        value = f"{value:g}"
    if "choices" in d:
        return f"{value} [{', '.join(d['choices'])}]"
    if "min" in d:
        return f"{value} ({d['min']:g}..{d['max']:g})"
    return str(value)


def cameras_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="main.py cameras", description=
                                "List GenTL producers (.cti), their devices with their main settings, "
                                "and the other sources the app can open.")
    p.add_argument("--cti", action="append", default=[], metavar="FILE",
                   help="GenTL producer to use (repeat for several); default: the .cti files in "
                        "GENICAM_GENTL64_PATH, or the genicam wheel's virtual camera when none")
    p.add_argument("--no-settings", action="store_true", help="do not open devices to read settings")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    from engine.camera.genicam import (GENTL_PATH_VARIABLE, VIKY_CTI, configured_producers,
                                       default_producers, describe_device, list_devices)
    from engine.camera.spec import list_sources

    producers = [Path(c) for c in args.cti] or default_producers()
    devices, problems = list_devices(producers)
    settings = {} if args.no_settings else {d.spec: describe_device(d) for d in devices}
    others = [s for s in list_sources(producers)[0] if s.kind != "genicam"]
    if args.json:
        print(json.dumps({
            "producers": [str(p) for p in producers], "problems": problems,
            "devices": [{**d.__dict__, "settings": settings.get(d.spec)} for d in devices],
            "other_sources": [s.__dict__ for s in others]}, indent=2, default=str))
        return 0 if not problems else 2
    print("GenTL producers:")
    for path in producers:
        note = ""
        if Path(path).resolve() == VIKY_CTI and not args.cti:
            note = (f"  (virtual camera from the genicam wheel; {GENTL_PATH_VARIABLE} lists no producer)"
                    if not configured_producers() else "")
        print(f"  {path}{note}")
    for problem in problems:
        print(f"  ! {problem}")
    print("Devices:" if devices else "Devices: none found")
    for d in devices:
        print(f"  {d.label}  {d.vendor}, id {d.device_id}, access {d.access}")
        print(f"      open with: --source {d.spec}")
        s = settings.get(d.spec)
        if s and "error" in s:
            print(f"      settings: {s['error']}")
        elif s:
            names = {"width": "width", "height": "height", "offset_x": "offset x", "offset_y": "offset y",
                     "pixel_format": "pixel format", "frame_rate": "frame rate Hz",
                     "exposure_us": "exposure µs", "gain_db": "gain dB"}
            parts = [f"{label} {_fmt_setting(s.get(key))}" for key, label in names.items() if s.get(key)]
            missing = [label for key, label in names.items() if not s.get(key)]
            print("      " + "; ".join(parts))
            print(f"      trigger: {s.get('trigger') or 'none (free-running only)'}"
                  + (f"; not on this camera: {', '.join(missing)}" if missing else ""))
    print("Other sources:")
    for s in others:
        print(f"  {s.spec:<24} {s.label}")
    print("  folder:PATH              replay images in name order (?fps=5&loop=1)")
    print("  video:FILE               replay a video file (?fps=...&loop=1)")
    return 0 if not problems else 2


def _parse_sets(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise InspectError(f"--set needs KEY=VALUE, not {item!r}.")
        out[key.strip()] = value.strip()
    return out


def grab_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="main.py grab", description="Save frames from a source as image files.")
    p.add_argument("--source", default=None,
                   help="sim | folder:DIR | video:FILE | opencv:N | genicam[:SERIAL][?cti=FILE&width=..]; "
                        "default: a configured camera, else the simulated line")
    p.add_argument("--count", type=int, default=10, help="frames to save")
    p.add_argument("--out", required=True, help="folder for the images and frames.csv: new or "
                   "empty (grab never overwrites: a folder with files in it is refused); masks of "
                   "the simulated line go to OUT/masks/")
    p.add_argument("--format", choices=["png", "bmp", "jpg"], default="png")
    p.add_argument("--raw", action="store_true", help="also save Frame.raw (camera bit depth) as .npy")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="camera setting applied after opening, e.g. exposure=5000, trigger=software")
    p.add_argument("--software-trigger", action="store_true", help="fire a software trigger for every frame")
    p.add_argument("--timeout", type=float, default=30.0, help="give up after this many seconds")
    return run_command(_grab, p.parse_args(argv))


def _grab(args: argparse.Namespace) -> int:
    from engine.camera.spec import default_source_spec, make_source, parse_spec

    _check_out_folder(Path(args.out))           # before a camera is opened
    spec = args.source or default_source_spec()
    if args.raw and parse_spec(spec)["kind"] == "genicam" and "keep_raw" not in spec:
        spec += ("&" if "?" in spec else "?") + "keep_raw=1"
    changes = _parse_sets(args.set)
    source = make_source(spec)
    source.on_warning = lambda text: print(f"warning: {text}", file=sys.stderr)
    source.open()                      # here, so a bad source fails with its message, exit 2
    try:
        if changes:
            print(f"settings: {source.apply_settings(changes)}")
        return _grab_frames(source, args)
    finally:
        source.close()                 # also when a setting was refused: the camera is freed


def _check_out_folder(out: Path) -> None:
    """A new or empty folder: earlier frames and their frames.csv are never overwritten."""
    if out.exists() and not out.is_dir():
        raise InspectError(f"--out {out} is a file; give a new or empty folder.")
    first = next(out.iterdir(), None) if out.is_dir() else None
    if first is not None:
        raise InspectError(f"--out {out} already holds files (e.g. {first.name}) and grab never "
                           "overwrites frames; give a new or empty folder.")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InspectError(f"--out {out} cannot be made ({e.strerror or e}); choose a folder "
                           "you can write to.") from e


def _grab_frames(source, args: argparse.Namespace) -> int:
    from engine.camera.acquisition import Acquisition, State

    out = Path(args.out)
    rows, started = [], time.monotonic()
    acq = Acquisition(source, on_status=lambda s: s.state in (State.RECONNECTING, State.FAILED)
                      and print(f"{s.state.value}: {s.message}", file=sys.stderr))
    with acq:
        while len(rows) < args.count and time.monotonic() - started < args.timeout:
            if args.software_trigger:
                acq.trigger()
            frame = acq.wait_frame(timeout=1.0)
            if frame is None:
                if not acq.running:
                    break
                continue
            rows.append(_save(frame, out, len(rows), args))
    status = acq.status()
    with open(out / "frames.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["file", "id", "t", "wall_time", "source", "label",
                                               "mask", "raw", "meta"])
        writer.writeheader()
        writer.writerows(rows)
    elapsed = time.monotonic() - started
    print(f"saved {len(rows)} frames from {source.name} to {out} in {elapsed:.1f} s; "
          f"received {status.received}, dropped {status.dropped}, missed {status.missed}, "
          f"reconnects {status.reconnects}")
    if len(rows) < args.count:
        print(f"error: only {len(rows)} of {args.count} frames ({status.state.value}: {status.message})",
              file=sys.stderr)
        return 1
    return 0


def _save(frame, out: Path, n: int, args: argparse.Namespace) -> dict:
    stem = f"{n:06d}"
    name = f"{stem}.{args.format}"
    if not cv2.imwrite(str(out / name), cv2.cvtColor(frame.rgb, cv2.COLOR_RGB2BGR)):
        raise InspectError(f"Cannot write {out / name}.")
    row = {"file": name, "id": frame.id, "t": f"{frame.t:.6f}", "wall_time": f"{frame.wall_time:.6f}",
           "source": frame.source, "label": frame.label or "", "mask": "", "raw": "",
           "meta": json.dumps(frame.meta, default=str)}
    if frame.mask is not None:            # own folder: beside the frames it would be learnt as one
        (out / "masks").mkdir(exist_ok=True)
        row["mask"] = f"masks/{stem}_mask.png"
        if not cv2.imwrite(str(out / row["mask"]), frame.mask.astype(np.uint8) * 255):
            raise InspectError(f"Cannot write {out / row['mask']}.")
    if args.raw and frame.raw is not None:
        row["raw"] = f"{stem}_raw.npy"
        np.save(out / row["raw"], frame.raw)
    return row
