"""`python main.py bench camera`: frames received, dropped and rate for each kind of source.

Each source runs unthrottled (replays at full speed, the virtual camera at its top frame
rate) through the real Acquisition thread, with a consumer that takes the newest frame and
optionally works on it for --work-ms (a stand-in for scoring), so drops show what a slow
consumer costs. Folder and video inputs are made from the simulated line in a temp folder.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import cv2

from engine.errors import InspectError, run_command

ALL = ("sim", "folder", "video", "genicam")


def _make_inputs(tmp: Path, width: int, height: int, frames: int) -> tuple[Path, Path]:
    from engine.camera.simulated import SimulatedLine, SimulatedLineConfig
    line = SimulatedLine(SimulatedLineConfig(seed=7, width=width, height=height))
    folder = tmp / "images"
    folder.mkdir()
    video = tmp / "line.avi"
    # MJPG in AVI: an encoder every OpenCV build has, unlike H.264
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 25.0, (width, height))
    for i in range(frames):
        bgr = cv2.cvtColor(line.frame_arrays(i)[0], cv2.COLOR_RGB2BGR)
        cv2.imwrite(str(folder / f"part_{i:04d}.png"), bgr)
        writer.write(bgr)
    writer.release()
    return folder, video


def run_one(spec: str, seconds: float, work_ms: float) -> dict:
    from engine.camera.acquisition import Acquisition, State
    from engine.camera.spec import make_source

    source = make_source(spec)
    source.open()                      # opening is not part of the measured time
    acq = Acquisition(source).start()
    consumed, started = 0, time.monotonic()
    while time.monotonic() - started < seconds:
        frame = acq.wait_frame(timeout=0.5)
        if frame is not None:
            consumed += 1
            if work_ms > 0:
                time.sleep(work_ms / 1000)
        elif acq.status().state in (State.FAILED, State.FINISHED):
            break
    elapsed = time.monotonic() - started
    status = acq.status()
    acq.stop()
    shape = frame.rgb.shape if frame is not None else None
    return {"source": source.name, "spec": spec, "seconds": round(elapsed, 2),
            "received": status.received, "consumed": consumed, "dropped": status.dropped,
            "missed": status.missed, "reconnects": status.reconnects,
            "rate_hz": round(status.received / elapsed, 1) if elapsed > 0 else 0.0,
            "frame": f"{shape[1]}x{shape[0]}" if shape else "-", "state": status.state.value}


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="main.py bench camera", description=__doc__.splitlines()[0])
    p.add_argument("--sources", default=",".join(ALL), help=f"comma list of {', '.join(ALL)}")
    p.add_argument("--seconds", type=float, default=3.0, help="per source")
    p.add_argument("--work-ms", type=float, default=0.0, help="consumer work per frame (simulated scoring)")
    p.add_argument("--width", type=int, default=320)
    p.add_argument("--height", type=int, default=240)
    p.add_argument("--json", action="store_true")
    return run_command(_bench, p.parse_args(argv))


def _bench(args: argparse.Namespace) -> int:
    kinds = [k.strip() for k in args.sources.split(",") if k.strip()]
    bad = [k for k in kinds if k not in ALL]
    if bad:
        raise InspectError(f"unknown source kind {', '.join(bad)}; choose from {', '.join(ALL)}")
    w, h = args.width, args.height
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-camera-") as tmp:
        needs_files = {"folder", "video"} & set(kinds)
        folder, video = _make_inputs(Path(tmp), w, h, 60) if needs_files else (None, None)
        specs = {"sim": f"sim?fps=0&width={w}&height={h}",
                 "folder": f"folder:{folder}?fps=0",
                 "video": f"video:{video}?fps=0",
                 "genicam": f"genicam?width={w}&height={h}&fps=200"}
        for kind in kinds:
            try:
                results.append(run_one(specs[kind], args.seconds, args.work_ms))
            except InspectError as e:
                results.append({"source": kind, "spec": specs[kind], "error": str(e)})
    if args.json:
        print(json.dumps({"work_ms": args.work_ms, "results": results}, indent=2))
    else:
        print(f"camera bench: {args.seconds:g} s per source, consumer work {args.work_ms:g} ms/frame")
        print(f"{'source':<34} {'frame':>8} {'received':>9} {'consumed':>9} {'dropped':>8} "
              f"{'missed':>7} {'rate Hz':>8}")
        for r in results:
            if "error" in r:
                print(f"{r['source']:<34} error: {r['error']}")
                continue
            name = r["source"] if len(r["source"]) <= 34 else "…" + r["source"][-33:]
            print(f"{name:<34} {r['frame']:>8} {r['received']:>9} {r['consumed']:>9} "
                  f"{r['dropped']:>8} {r['missed']:>7} {r['rate_hz']:>8}")
    return 1 if any("error" in r for r in results) else 0
