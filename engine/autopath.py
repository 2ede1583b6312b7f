"""`auto`: the scoring path chosen by measuring it on the machine that scores.

The fastest path differs between machines (measured: on an AMD CPU without AMX NNPACK was
the fastest exact path and bf16 2.4x; on an Intel CPU with AMX bf16 was 4.3x), so no fixed
list is right on both. `choose` times the exact fp32 paths of this device and every reduced
path the model is calibrated for and may use (engine/precision.py: its held-out check within
0.005 AUROC of fp32's), batch 1 at the model's input size, and takes the fastest. The
figures are cached per machine and model shape (a file under the user's cache folder), so a
model swap on the line costs a file read; a new CPU, a new torch or a model of another
shape is measured again.
"""
from __future__ import annotations

import json
import logging
import os
import platform
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from engine import precision

log = logging.getLogger("inspect.scoring")
CACHE_NAME = "scoring_paths.json"
TIMED_RUNS = 5
TIME_BUDGET_S = 4.0                  # per path: a slow machine times fewer runs, not longer


@dataclass(frozen=True)
class PathChoice:
    backend: str
    reason: str                                  # one sentence, for Settings, Learn and the log
    timings: tuple[tuple[str, float], ...]       # (path, ms per part at batch 1), as measured
    measured_utc: str = ""
    from_cache: bool = False

    def ms(self, path: str) -> float | None:
        return dict(self.timings).get(path)


def exact_paths(device: torch.device) -> list[str]:
    """The exact fp32 paths of a device (scores equal to the eager model's to ~1e-5), timed
    against each other too: NNPACK's Winograd/FFT kernels beat oneDNN's direct convolutions
    on an idle AMD dev CPU (1.55x against 1.14x eager) and lost to them under load."""
    if device.type == "cuda":
        return ["torch-fp32-graph"]
    from engine.fast import nnpack_available
    paths = ["torch-fp32-nnpack"] if nnpack_available() else []
    paths.append("torch-fp32")
    if precision._importable("openvino"):
        paths.append("openvino-fp32")
    return paths


def cache_file() -> Path:
    base = os.environ.get("INSPECT_LINE_CACHE") or os.environ.get("XDG_CACHE_HOME")
    root = Path(base) if base else Path.home() / ".cache"
    return (root if os.environ.get("INSPECT_LINE_CACHE") else root / "inspect-line") / CACHE_NAME


def machine_key(model, device: torch.device, paths: list[str]) -> str:
    """What the timings depend on: processor, torch, threads, device, the model's shape."""
    if device.type == "cuda":
        chip = torch.cuda.get_device_name(device)
    else:
        chip = _cpu_name()
    c = model.config
    return "|".join([chip, f"torch {torch.__version__}", f"{torch.get_num_threads()} threads",
                     device.type, f"{c.size}-{c.image_size}-{c.out_channels}", ",".join(sorted(paths))])


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _read_cache(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _write_cache(path: Path, key: str, entry: dict) -> None:
    """Atomically; a cache that cannot be written only means measuring again next time."""
    data = _read_cache(path)
    data[key] = entry
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(data, indent=1))
        tmp.replace(path)
    except OSError as exc:
        log.warning("scoring path timings not cached (%s): they are measured again next time", exc)


@torch.inference_mode()
def time_path(run: Callable[[torch.Tensor], torch.Tensor], image_size: int,
              device: torch.device) -> float:
    """Median ms of one part (batch 1) after two warm-up runs."""
    u = torch.rand(1, 3, image_size, image_size, device=device)

    def once() -> float:
        t0 = time.perf_counter()
        run(u)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return (time.perf_counter() - t0) * 1000.0
    once(), once()
    times, start = [], time.perf_counter()
    while len(times) < TIMED_RUNS and (len(times) < 2 or time.perf_counter() - start < TIME_BUDGET_S):
        times.append(once())
    return float(statistics.median(times))


def choose(model, meta: dict | None, device: torch.device,
           make_runner: Callable[[str], Callable], cache: Path | None = None) -> PathChoice:
    """The fastest path among the exact one and the eligible reduced ones (see module text)."""
    exact = exact_paths(device)
    candidates, why_not = precision.eligible(meta, device)
    if not precision.calibrations(meta):
        why_not = ["the model has no reduced-precision calibration"]
    paths = [*exact, *candidates]
    if len(paths) == 1:
        return PathChoice(paths[0], f"fp32 ({paths[0]}): {'; '.join(why_not)}", ())
    cache = cache or cache_file()
    key = machine_key(model, device, paths)
    entry = _read_cache(cache).get(key)
    from_cache = isinstance(entry, dict) and all(
        isinstance(entry.get("ms", {}).get(p), (int, float)) for p in paths)
    if from_cache:
        ms = {p: float(entry["ms"][p]) for p in paths}
        when = str(entry.get("utc", ""))
    else:
        ms = {p: time_path(make_runner(p), model.config.image_size, device) for p in paths}
        when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        _write_cache(cache, key, {"ms": ms, "utc": when})
    best = min(paths, key=lambda p: ms[p])
    base = min(exact, key=lambda p: ms[p])
    choice = PathChoice(best, _reason(best, base, ms, meta, why_not), tuple(ms.items()), when,
                        from_cache)
    log.info("scoring path %s (%s; %s)", best, choice.reason,
             "cached timings" if from_cache else "measured now")
    return choice


def _reason(best: str, base: str, ms: dict, meta, why_not: list[str]) -> str:
    if best == base:
        return (f"fp32 ({base}) is the fastest here: {ms[base]:.0f} ms per part"
                + "".join(f"; {w}" for w in why_not))
    cal = precision.calibrations(meta)[best]
    ref = precision.reference_auroc(meta)
    return (f"{best}: {ms[best]:.0f} ms per part against {ms[base]:.0f} ms for fp32 "
            f"({ms[base] / ms[best]:.2f}x faster); its held-out check AUROC "
            f"{cal.heldout_auroc:.3f} against fp32's {ref:.3f}")
