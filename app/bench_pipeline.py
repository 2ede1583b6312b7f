"""`python main.py bench pipeline`: does the live path keep up with the camera?

The app's own parts, no GUI: the simulated line at a set frame rate (default 100 frames/s)
-> engine/camera acquisition thread (latest-frame slot) -> engine.line scoring thread
(Scorer, decide, overlay) -> engine/log writer (SQLite in a temporary folder). Reports the
rate the camera delivered, the rate frames were judged, how many were skipped because
scoring was busy (the pipeline always takes the newest frame, so it never falls behind,
it skips), scoring and camera-to-verdict latency, and whether every verdict reached the log,
for the serial loop (everything on the scoring thread) and the pipelined one (intake,
networks and finishing on their own threads: engine/line/stages.py) in one run.
With --count N the line makes N parts and the bench runs until every one is judged or
skipped (no time window: what the tests use).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from engine.vocabulary import MODEL_SIZES


def _model_file(a, folder: Path) -> str:
    if a.model:
        return a.model
    from engine.bench.score import SHARED, calibrated_model
    from engine.data import load_rgb
    from engine.model import save_checkpoint
    good = [load_rgb(p) for p in sorted(SHARED.glob("*/*/train/good/*"))[::50][:8]]
    if not good:
        raise SystemExit(f"no good images under {SHARED} to calibrate a model; pass --model")
    model, meta = calibrated_model(a.size, a.image_size, good)
    path = folder / "model.pt"
    save_checkpoint(model, path, {**meta, "model_id": "bench"})
    return str(path)


def _prerendered_source(config, n: int = 40):
    """The simulated line with its first n parts drawn up front and replayed: a real camera
    delivers frames by DMA at almost no CPU cost, while drawing 100 parts/s would take a
    core of this machine away from scoring and skew the measurement."""
    from engine.camera.base import EndOfStream
    from engine.camera.simulated import SimulatedLineSource

    class Prerendered(SimulatedLineSource):
        def __init__(self, cfg):
            super().__init__(cfg)
            self._cache = [self.line.frame_arrays(i) for i in range(n)]

        def read(self, timeout):
            if self._pacer is None:
                self.open()
            if self.config.count and self._next_id >= self.config.count:
                raise EndOfStream(f"{self.name}: {self.config.count} parts done.")
            if not self._pacer.wait(timeout):
                return None
            rgb, mask, label, plan = self._cache[self._next_id % n]
            return self._make_frame(rgb, label=label, mask=mask, meta={"part_index": plan.index})

    return Prerendered(config)


def _window(a, pipe, feed, results, lock):
    """Warm up (model on the device, first frames, caches), then measure a.seconds."""
    time.sleep(a.warmup)
    with lock:
        results.clear()
        skipped0 = pipe.skipped
    acq0 = feed.acquisition.status() if feed.acquisition else None
    t0 = time.monotonic()
    time.sleep(a.seconds)
    t1 = time.monotonic()
    acq1 = feed.acquisition.status() if feed.acquisition else None
    return t0, t1, acq0, acq1, skipped0


def _until_every_part(pipe, feed, results, lock, timeout_s: float = 300.0):
    """A finite line: wait until the camera has finished and every frame it delivered was
    either judged or skipped (replaced in the camera's slot before the line took it, or,
    pipelined, a prepared frame replaced before the networks took it)."""
    from engine.camera import State
    t0 = time.monotonic()
    deadline = t0 + timeout_s
    while time.monotonic() < deadline:
        acq = feed.acquisition
        st = acq.status() if acq is not None else None
        with lock:
            n = len(results)
        if (st is not None and st.state == State.FINISHED
                and st.delivered + st.dropped == st.received and n + pipe.skipped == st.delivered):
            return t0, time.monotonic(), None, st, 0
        time.sleep(0.05)
    raise RuntimeError(f"the line did not judge or skip every part within {timeout_s:.0f} s")


def _quantile(values: np.ndarray, q: float) -> float:
    return round(float(np.quantile(values, q)), 2) if values.size else float("nan")


def run_loop(a, model_path: str, pipelined: bool, backend: str) -> dict:
    """One loop on a fresh simulated line and a fresh log: what it judged, how fast, how late."""
    from engine.camera.simulated import SimulatedLineConfig, SimulatedLineSource
    from engine.line import CameraFeed, ModelSpec, Pipeline
    from engine.log import InspectionLog, LogConfig
    from engine.settings import CameraSettings

    with tempfile.TemporaryDirectory(prefix="bench-pipeline-log-") as tmp:
        w, h = (int(v) for v in a.frame.lower().split("x"))
        line = SimulatedLineConfig(fps=a.fps, width=w, height=h, defect_rate=0.3,
                                   count=getattr(a, "count", 0))
        source = _prerendered_source(line) if a.prerendered else SimulatedLineSource(line)
        feed = CameraFeed(CameraSettings(), source_factory=lambda cam: source)
        lg = InspectionLog.open(Path(tmp) / "log", LogConfig())
        lg.start_writer()
        results, errors, models = [], [], []
        lock = threading.Lock()

        def on_result(r):
            with lock:
                results.append((time.monotonic(), r))

        pipe = Pipeline(feed, station="bench", device=a.device, backend=backend,
                        on_result=on_result, on_model=models.append,
                        on_error=lambda where, e: errors.append(f"{where}: {e}"),
                        log_submit=lg.submit, pipelined=pipelined)
        pipe.set_model(ModelSpec(product="bench", path=model_path))
        if not pipe.wait_model(120.0):           # loaded before the camera starts
            errors.append("the model did not load within 120 s")
        scorer = pipe._scorer
        if scorer is None:                       # e.g. a path the model is not calibrated for
            lg.close()
            return {"backend": backend, "errors": errors or [m.error for m in models if m.error]}
        pipe.start()
        if getattr(a, "count", 0):
            t0, t1, acq0, acq1, skipped0 = _until_every_part(pipe, feed, results, lock)
        else:
            t0, t1, acq0, acq1, skipped0 = _window(a, pipe, feed, results, lock)
        skipped_in_line = pipe.skipped - skipped0
        pipe.stop()
        if not pipe.join(30.0):
            errors.append("the line's threads did not stop within 30 s")
        verdicts_total = pipe.parts
        flushed = lg.start_writer().flush(30.0)  # the running writer (start is idempotent)
        with lock:
            got = [(t, r) for t, r in results if t <= t1]
        logged_rows = lg.count()
        stats = lg.stop_writer()
        lg.close()
    judged = [(t, r) for t, r in got if r.verdict is not None]
    received = (acq1.received - (acq0.received if acq0 else 0)) if acq1 else None
    score_ms = np.array([r.verdict.latency_ms for _, r in judged])
    e2e_ms = np.array([(t - r.frame.t) * 1000 for t, r in judged])
    ids = [r.frame.id for _, r in judged]
    return {
        "loop": "pipelined" if pipelined else "serial", "backend": scorer.backend,
        "seconds": round(t1 - t0, 2),
        "camera_fps": round(received / (t1 - t0), 1) if received is not None else float("nan"),
        "judged_fps": round(len(judged) / (t1 - t0), 2),
        "skipped_frames": (received - len(judged)) if received is not None else None,
        "skipped_in_line": skipped_in_line,
        "keeps_up": bool(received is not None and len(judged) >= 0.97 * received),
        "in_frame_order": ids == sorted(ids),
        "score_ms_median": _quantile(score_ms, 0.5), "score_ms_p99": _quantile(score_ms, 0.99),
        "camera_to_verdict_ms_median": _quantile(e2e_ms, 0.5),
        "camera_to_verdict_ms_p95": _quantile(e2e_ms, 0.95),
        "camera_to_verdict_ms_p99": _quantile(e2e_ms, 0.99),
        "verdicts": len(judged), "log_flushed": bool(flushed), "log_rows_total": logged_rows,
        "verdicts_total": verdicts_total, "every_verdict_logged": logged_rows == verdicts_total,
        "log_unlogged": stats.unlogged if stats else None, "log_lost": stats.lost if stats else None,
        "errors": errors[:5],
    }


LOOPS = {"both": (False, True), "serial": (False,), "pipelined": (True,)}


def run(a) -> dict:
    """The loops asked for, one after the other, with one model file, one backend and the
    same simulated line; `speedup`: the pipelined loop's parts/s over the serial loop's."""
    import torch
    if a.threads:
        torch.set_num_threads(a.threads)
    with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as tmp:
        model_path = _model_file(a, Path(tmp))
        backend, loops = a.backend, {}
        for pipelined in LOOPS[getattr(a, "loop", "both")]:
            r = run_loop(a, model_path, pipelined, backend)
            loops["pipelined" if pipelined else "serial"] = r
            if "loop" not in r:                  # the model did not load: nothing to compare
                break
            backend = r["backend"]               # 'auto' chose it once: both use the same
    out = {"device": a.device, "backend": backend, "frame": a.frame, "image_size": a.image_size,
           "source_fps": a.fps, "loops": loops,
           "errors": [e for r in loops.values() for e in r["errors"]]}
    old, new = loops.get("serial", {}), loops.get("pipelined", {})
    if old.get("judged_fps") and new.get("judged_fps") is not None:
        out["speedup"] = round(new["judged_fps"] / old["judged_fps"], 2)
    return out


def _print(a, r: dict) -> None:
    print(f"live pipeline, simulated camera {a.frame} at {a.fps:g} frames/s, device {r['device']}, "
          f"backend {r['backend']}, model input {a.image_size} px")
    for name, x in r["loops"].items():
        if "loop" not in x:
            print(f"  {name}: not run ({'; '.join(x['errors']) or 'the model did not load'})")
            continue
        print(f"  {name:9s} {x['judged_fps']:6.2f} parts/s judged in {x['seconds']} s "
              f"(camera {x['camera_fps']} frames/s; {x['verdicts']} verdicts, "
              f"{x['skipped_frames']} frames skipped, {x['skipped_in_line']} of them taken from the "
              f"camera and then left for a newer one)")
        print(f"            camera to verdict {x['camera_to_verdict_ms_median']} ms p50 / "
              f"{x['camera_to_verdict_ms_p95']} ms p95; scoring {x['score_ms_median']} ms p50; "
              f"frame order kept: {x['in_frame_order']}")
        print(f"            log: flushed {x['log_flushed']}, rows {x['log_rows_total']} for "
              f"{x['verdicts_total']} verdicts since start (every verdict logged: "
              f"{'YES' if x['every_verdict_logged'] else 'NO'}), counted-not-logged "
              f"{x['log_unlogged']}, lost {x['log_lost']}")
    if "speedup" in r:
        print(f"  pipelined / serial: {r['speedup']:.2f}x parts/s")
    for e in r["errors"]:
        print(f"  error: {e}")


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="main.py bench pipeline", description=__doc__.split("\n")[0])
    p.add_argument("--fps", type=float, default=100.0, help="simulated camera frame rate")
    p.add_argument("--seconds", type=float, default=15.0, help="measured window per loop")
    p.add_argument("--warmup", type=float, default=5.0)
    p.add_argument("--count", type=int, default=0,
                   help="make this many parts and run until each is judged or skipped")
    p.add_argument("--loop", choices=sorted(LOOPS), default="both",
                   help="the serial loop, the pipelined one, or both one after the other")
    p.add_argument("--frame", default="640x480", help="camera frame size WxH")
    p.add_argument("--model", help="trained model file (default: calibrated untrained model)")
    p.add_argument("--size", choices=MODEL_SIZES, default="small")
    p.add_argument("--image-size", type=int, default=256)
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("--backend", default="auto", help="scoring path, e.g. torch-bf16 (the model "
                   "must be calibrated for it); auto: timed once, then used by both loops")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    p.add_argument("--draw-live", dest="prerendered", action="store_false",
                   help="draw every simulated part live (costs CPU) instead of replaying 40")
    p.add_argument("--json", action="store_true")
    a = p.parse_args(argv)
    r = run(a)
    if a.json:
        print(json.dumps(r))
    else:
        _print(a, r)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
