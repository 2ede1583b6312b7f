"""`python main.py bench gpu`: every CUDA scoring path, training speed, detection against
eager fp32 and the live pipeline, in one run of under 8 minutes.

Sections, each printed as it finishes and each with its own time budget:
  latency    the networks alone (input already on the device): batch-1 latency p50/p95
             (synchronised, after warm-up) and images/s at batch 8, 32, 64, for every
             path, EfficientAD-S and -M at 256 and 512 px. Untrained weights: speed does not
             depend on their values.
  training   steps per second of the paper's training step (engine.train.train_step, one
             image, penalty image included), fp32 and bf16 autocast, small and medium.
  detection  a model trained on the device on a dev set (`--data`, else the subset made by
             `--make-subset`, else ../shared/data, else generated parts with engine.synthetic
             defects), its test images scored end to end with every path: image AUROC, pixel
             AUROC, AU-PRO, verdicts changed at the model's threshold and the largest relative
             score difference against eager fp32, ms per image (frame in, map on the host).
  pipeline   app/bench_pipeline.py's live line (simulated camera at 100 frames/s -> scoring
             thread -> log) on the device, with the model trained above.

Paths: eager (the reference forward), torch-fp32 (constants folded), torch-fp32-graph,
torch-fp16-graph, torch-bf16, torch-bf16-graph (engine.fast.TorchRunner), tensorrt-fp16
(torch_tensorrt of the folded model, when it is importable). `--smoke --device cpu` runs
every section tiny on the CPU so CI exercises the code; CUDA paths then say "needs CUDA".
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shutil
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from engine.errors import InspectError, run_command

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared" / "data"          # beside the checkout; not on a GPU machine
SUBSET = REPO / "out" / "gpu_check" / "data"     # --make-subset's default (ignored by git;
#                                                   packaging/gpu_check.sh carries out/gpu_check)
PATHS = ("eager", "torch-fp32", "torch-fp32-graph", "torch-fp16-graph", "torch-bf16",
         "torch-bf16-graph", "tensorrt-fp16")
CUDA_ONLY = ("torch-fp32-graph", "torch-fp16-graph", "torch-bf16-graph", "tensorrt-fp16")
SECTIONS = ("latency", "training", "detection", "pipeline")


@dataclass(frozen=True)
class Plan:
    """How much each section does and may spend. The full plan sums to about 7 minutes on a
    GPU (start-up, compiles and training included); the smoke plan runs in seconds on a CPU."""
    sizes: tuple = ("small", "medium")
    image_sizes: tuple = (256, 512)
    batches: tuple = (8, 32, 64)
    warmup: int = 3
    latency_runs: int = 50          # at least, batch 1
    throughput_runs: int = 10       # batches per throughput figure, at least
    min_timing_s: float = 0.3       # keep timing a figure at least this long (more samples)
    train_steps: int = 30           # timed training steps per figure
    detect_size: int = 256
    detect_steps: int = 3000
    detect_minutes: float = 0.75    # per category: train() stops at this (setup + calibration)
    train_images: int = 80          # good images per category
    test_images: int = 60           # test images per category (half good, half defective)
    synthetic_per_kind: int = 16
    pipeline: tuple = ("--fps", "100", "--seconds", "8", "--warmup", "3")   # per loop
    budgets: dict = field(default_factory=lambda: {
        "latency": 130.0, "tensorrt": 100.0, "training": 30.0, "detection": 120.0})


SMOKE = Plan(sizes=("small", "medium"), image_sizes=(64,), batches=(2,), warmup=1,
             latency_runs=2, throughput_runs=2, min_timing_s=0.0, train_steps=3, detect_size=64,
             detect_steps=3, detect_minutes=0.5, train_images=10, test_images=6,
             synthetic_per_kind=1,
             pipeline=("--fps", "20", "--count", "8", "--frame", "160x120"),
             budgets={"latency": 60.0, "tensorrt": 0.0, "training": 30.0, "detection": 60.0})


class Budget:
    """Seconds a section may spend; only the time spent inside `spend()` is counted."""

    def __init__(self, seconds: float):
        self.seconds, self.used = seconds, 0.0

    def left(self) -> float:
        return self.seconds - self.used

    @contextlib.contextmanager
    def spend(self):
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.used += time.perf_counter() - t0


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="main.py bench gpu", description=__doc__.split("\n")[0])
    p.add_argument("--device", default="auto", choices=("auto", "cuda", "cpu"),
                   help="auto: CUDA (the check is for a GPU); cpu only with --smoke")
    p.add_argument("--smoke", action="store_true",
                   help="every section tiny (64 px, 2 timing runs, 3 training steps, a handful "
                        "of images): exercises the code, measures nothing worth quoting")
    p.add_argument("--sections", default=",".join(SECTIONS),
                   help=f"comma-separated subset of {','.join(SECTIONS)}")
    p.add_argument("--data", help="MVTec-layout root or category folder for the detection "
                   "section (default: the --make-subset folder, else ../shared/data, else "
                   "generated parts)")
    p.add_argument("--json", metavar="FILE", help="write every result to this JSON file "
                   "(rewritten after each section, so a stopped run keeps what it measured)")
    p.add_argument("--make-subset", nargs="?", const=str(SUBSET), metavar="DIR",
                   help=f"copy a small subset of the dev sets (< 20 MiB) into DIR (default "
                        f"{SUBSET.relative_to(REPO)}) to carry to a GPU machine, and exit")
    return run_command(_bench, p.parse_args(argv))


def _bench(a: argparse.Namespace) -> int:
    if a.make_subset:
        return make_subset(Path(a.data) if a.data else SHARED, Path(a.make_subset))
    sections = [s for s in a.sections.split(",") if s]
    unknown = [s for s in sections if s not in SECTIONS]
    if unknown:
        raise InspectError(f"Unknown section {unknown[0]!r}; choose from {', '.join(SECTIONS)}.")
    if a.device == "cpu" and not a.smoke:
        raise InspectError("--device cpu runs only with --smoke: the full check is sized for a "
                           "GPU (`python main.py bench score` measures the CPU paths).")
    if a.device != "cpu" and not torch.cuda.is_available():
        if not (a.smoke and a.device == "auto"):
            print(f"No CUDA GPU here: this PyTorch ({torch.__version__}) "
                  f"{'sees no CUDA device' if torch.version.cuda else 'is built without CUDA'}, "
                  "so there is nothing to measure; run it on a PC with an NVIDIA GPU (or "
                  "`--smoke --device cpu` to exercise the code).", file=sys.stderr)
            return 2
    if a.data and not _categories(Path(a.data)):         # said before minutes are spent
        raise InspectError(f"{a.data} holds no MVTec-layout category (train/good, test/...).")
    device = torch.device("cuda" if a.device != "cpu" and torch.cuda.is_available() else "cpu")
    report = run(a, device, SMOKE if a.smoke else Plan(), sections)
    print(f"done in {report['info']['seconds']:.0f} s on {report['info']['device']}")
    return 0


def run(a: argparse.Namespace, device: torch.device, plan: Plan, sections: list[str]) -> dict:
    """Every asked-for section in turn -> the whole report (also written to --json)."""
    t0 = time.perf_counter()
    report = {"info": _info(device, a.smoke)}
    _print_info(report["info"])
    trt = Budget(plan.budgets["tensorrt"])
    model_file = None
    with tempfile.TemporaryDirectory(prefix="bench-gpu-") as tmp:
        for name in SECTIONS:
            if name not in sections:
                continue
            t_section = time.perf_counter()
            try:
                if name == "latency":
                    report[name] = latency_section(device, plan, Budget(plan.budgets[name]), trt)
                elif name == "training":
                    report[name] = training_section(device, plan, Budget(plan.budgets[name]))
                elif name == "detection":
                    report[name], model_file = detection_section(
                        a.data, device, plan, Budget(plan.budgets[name]), trt, Path(tmp))
                else:
                    report[name] = pipeline_section(device, plan, model_file, Path(tmp))
            except Exception as e:      # one run on a borrowed GPU: the other sections still run
                traceback.print_exc()
                report[name] = {"status": _error(e)}
                print(f"  {name} failed: {report[name]['status']}", flush=True)
            report["info"]["section_seconds"][name] = time.perf_counter() - t_section
            report["info"]["seconds"] = time.perf_counter() - t0
            _write_json(a.json, report)
    report["info"]["seconds"] = time.perf_counter() - t0
    _write_json(a.json, report)
    return report


def _write_json(path: str | None, report: dict) -> None:
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(report, indent=1, default=_plain))


def _plain(v):
    return v.item() if isinstance(v, np.generic) else str(v)


def _tensorrt():
    """torch_tensorrt, or None when it is not installed (or does not load with this torch)."""
    from engine.extras import require
    try:
        return require("torch_tensorrt", "The TensorRT path")
    except Exception:                  # not installed, or a build for another torch/CUDA
        return None


def _info(device: torch.device, smoke: bool) -> dict:
    trt = _tensorrt()
    cuda = device.type == "cuda"
    return {"device": torch.cuda.get_device_name(device) if cuda else "cpu",
            "device_type": device.type, "smoke": smoke, "torch": torch.__version__,
            "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version() if cuda else None,
            # cuDNN convolutions in "fp32" use TF32 on Ampere and later unless this is off
            "cudnn_allow_tf32": bool(torch.backends.cudnn.allow_tf32) if cuda else None,
            "tensorrt": getattr(trt, "__version__", "installed") if trt else "not installed",
            "torch_threads": torch.get_num_threads(), "python": sys.version.split()[0],
            "seconds": 0.0, "section_seconds": {}}


def _print_info(info: dict) -> None:
    what = "SMOKE RUN (tiny sizes; figures are not measurements)" if info["smoke"] else "GPU check"
    gpu = (f", cuDNN {info['cudnn']}, TF32 in fp32 convolutions {info['cudnn_allow_tf32']}"
           if info["device_type"] == "cuda" else "")
    print(f"bench gpu: {what} on {info['device']} ({info['device_type']}); torch {info['torch']} "
          f"(built for CUDA {info['cuda']}){gpu}, TensorRT {info['tensorrt']}", flush=True)


# -- runners: u (B,3,S,S) float32 in [0,1] on the device -> PDN-grid map (B,1,s,s) float32 --
def unavailable(path: str, device: torch.device) -> str | None:
    """Why `path` cannot run on `device`, or None."""
    if path in CUDA_ONLY and device.type != "cuda":
        return "needs CUDA"
    if path == "tensorrt-fp16" and _tensorrt() is None:
        return "not installed"
    if path.startswith("torch-bf16") and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        return "no bf16 on this GPU"
    if path == "torch-bf16" and device.type == "cpu":
        from engine.precision import bf16_on_cpu
        if not bf16_on_cpu():                    # emulated: slow, and Learn calibrates none
            return "no bf16 on this CPU"
    return None


def make_runner(path: str, model, device: torch.device, max_batch: int):
    from engine.fast import TorchRunner
    if path == "eager":
        net = model.to(device).eval()

        @torch.inference_mode()
        def eager(u: torch.Tensor) -> torch.Tensor:
            return net(net.normalize_image(u)).float()
        return eager
    if path == "tensorrt-fp16":
        return TensorRtRunner(model, device, max_batch)
    precision = path.split("-")[1]                              # torch-PRECISION[-graph]
    return TorchRunner(model, device, precision, cuda_graph=path.endswith("-graph"))


class TensorRtRunner:
    """The folded model compiled by Torch-TensorRT (dynamo frontend), fp16 kernels allowed,
    one engine for batch 1..max_batch."""

    def __init__(self, model, device: torch.device, max_batch: int):
        from engine.fast import FoldedEfficientAD
        trt = _tensorrt()
        s = model.config.image_size
        net = FoldedEfficientAD(model).to(device).eval()
        shape = dict(min_shape=(1, 3, s, s), opt_shape=(min(32, max_batch), 3, s, s),
                     max_shape=(max_batch, 3, s, s))
        inputs = [trt.Input(**shape, dtype=torch.float32)] if max_batch > 1 else \
            [trt.Input(shape=(1, 3, s, s), dtype=torch.float32)]
        t0 = time.perf_counter()
        self.net = trt.compile(net, ir="dynamo", inputs=inputs,
                               enabled_precisions={torch.float16, torch.float32})
        self.compile_s = time.perf_counter() - t0

    @torch.inference_mode()
    def __call__(self, u: torch.Tensor) -> torch.Tensor:
        return self.net(u.contiguous()).float()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _free(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()


def _error(e: BaseException) -> str:
    return f"error: {type(e).__name__}: {' '.join(str(e).split())[:200]}"


def _timing_model(size: str, image_size: int):
    """Untrained EfficientAD with the shipped teacher when there is one (speed does not
    depend on the weights; finite maps do, for fp16)."""
    from engine.model import EfficientAD, ModelConfig, load_teacher_state
    from engine.train import default_teacher_path
    torch.manual_seed(0)
    model = EfficientAD(ModelConfig(size=size, image_size=image_size)).eval()
    teacher = default_teacher_path(size)
    if teacher.is_file():
        load_teacher_state(model.teacher, teacher)
    return model


# -- section (a): latency and throughput --------------------------------------------------
def latency_section(device: torch.device, plan: Plan, budget: Budget, trt: Budget) -> list[dict]:
    print("\n[latency] networks alone, input on the device; batch-1 p50/p95 ms, images/s "
          "at batch " + "/".join(map(str, plan.batches)), flush=True)
    rows = []
    for image_size in plan.image_sizes:
        for size in plan.sizes:
            model = _timing_model(size, image_size)
            for path in PATHS:
                row = {"size": size, "image_size": image_size, "path": path}
                row.update(_time_path(path, model, device, plan,
                                      trt if path == "tensorrt-fp16" else budget))
                rows.append(row)
                print(_latency_line(row), flush=True)
            del model
            _free(device)
    return rows


def _time_path(path: str, model, device: torch.device, plan: Plan, budget: Budget) -> dict:
    why = unavailable(path, device)
    if why:
        return {"status": why}
    if budget.left() <= 0:
        return {"status": "skipped: time budget"}
    s = model.config.image_size
    out: dict = {"status": "ok"}
    with budget.spend():
        try:
            runner = make_runner(path, model, device, max(plan.batches))
            out["compile_s"] = getattr(runner, "compile_s", None)
            u = torch.rand(1, 3, s, s, device=device)
            ms = _latency_ms(runner, u, device, plan, budget)
            out.update(batch1_ms_p50=float(np.percentile(ms, 50)),
                       batch1_ms_p95=float(np.percentile(ms, 95)), runs=len(ms))
            out["images_per_s"] = {str(b): _throughput(runner, b, s, device, plan, budget)
                                   for b in plan.batches}
        except Exception as e:            # a path that fails here must not stop the others
            out = {"status": _error(e)}
        finally:
            runner = None
            _free(device)
    return out


def _latency_ms(runner, u, device, plan: Plan, budget: Budget) -> np.ndarray:
    """Batch-1 milliseconds per run, each run synchronised: at least latency_runs (and
    min_timing_s of runs) after warm-up, fewer only when the budget runs out."""
    for _ in range(plan.warmup):                       # graph capture, cuDNN autotune
        runner(u)
    _sync(device)
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < 2 or (len(times) < 2000 and budget.left() - (time.perf_counter() - start) > 0
                             and (len(times) < plan.latency_runs
                                  or time.perf_counter() - start < plan.min_timing_s)):
        t0 = time.perf_counter()
        runner(u)
        _sync(device)
        times.append((time.perf_counter() - t0) * 1000.0)
    return np.array(times)


def _throughput(runner, batch: int, s: int, device, plan: Plan, budget: Budget) -> float | str:
    """Images per second at `batch`, batches back to back, one synchronisation per round."""
    try:
        u = torch.rand(batch, 3, s, s, device=device)
        for _ in range(plan.warmup):
            runner(u)
        _sync(device)
        n, start = 0, time.perf_counter()
        while n < plan.throughput_runs or time.perf_counter() - start < plan.min_timing_s:
            runner(u)
            n += 1
            if n >= plan.throughput_runs:
                _sync(device)
            if n >= 2 and time.perf_counter() - start > budget.left():
                break
        _sync(device)
        return batch * n / (time.perf_counter() - start)
    except torch.OutOfMemoryError:
        _free(device)
        return "out of memory"


def _latency_line(r: dict) -> str:
    head = f"  {r['size']:<7}{r['image_size']:>4} px  {r['path']:<17}"
    if r["status"] != "ok":
        return head + r["status"]
    ips = "  ".join(f"b{b} {v:,.0f}/s" if isinstance(v, float) else f"b{b} {v}"
                    for b, v in r["images_per_s"].items())
    compiled = f"  (compile {r['compile_s']:.0f} s)" if r.get("compile_s") else ""
    return (head + f"{r['batch1_ms_p50']:8.3f} ms p50 {r['batch1_ms_p95']:8.3f} p95 "
            f"({r['runs']} runs)  {ips}{compiled}")


# -- section (b): training steps per second ------------------------------------------------
def training_section(device: torch.device, plan: Plan, budget: Budget) -> list[dict]:
    from engine.train import use_bf16
    size = plan.detect_size
    print(f"\n[training] steps/s of the training step at {size} px (one image and one penalty "
          "image per step, as the paper trains)", flush=True)
    rows = []
    for model_size in plan.sizes:
        for precision in ("fp32", "bf16"):
            row = {"size": model_size, "image_size": size, "precision": precision}
            if precision == "bf16" and not use_bf16("auto", device):
                row["status"] = f"no bf16 on {device.type}"
            elif budget.left() <= 0:
                row["status"] = "skipped: time budget"
            else:
                with budget.spend():
                    try:
                        row.update(_train_rate(model_size, size, precision == "bf16", device, plan))
                    except Exception as e:
                        row["status"] = _error(e)
                    _free(device)
            rows.append(row)
            print(f"  {model_size:<7}{precision:<5}" + (
                f"{row['steps_per_s']:8.1f} steps/s ({row['steps']} steps)"
                if row.get("status") == "ok" else row["status"]), flush=True)
    return rows


def _train_rate(size: str, s: int, bf16: bool, device: torch.device, plan: Plan) -> dict:
    from engine.model import ModelConfig
    from engine.train import TrainConfig, make_optimizer, train_step
    model = _timing_model(size, s).to(device).to(memory_format=torch.channels_last)
    opt, sched = make_optimizer(model, TrainConfig(model=ModelConfig(size=size, image_size=s),
                                                   steps=10 ** 6))
    model.student.train()
    model.autoencoder.train()
    gen = torch.Generator(device="cpu").manual_seed(0)
    batch = tuple(model.normalize_image(torch.rand(1, 3, s, s, generator=gen).to(device))
                  for _ in range(3))                          # x_st, x_ae, x_penalty
    for _ in range(2):                                        # cuDNN autotune, allocator
        train_step(model, opt, sched, batch, 0.999, bf16)
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(plan.train_steps):
        train_step(model, opt, sched, batch, 0.999, bf16)    # .item() of the losses syncs
    _sync(device)
    rate = plan.train_steps / (time.perf_counter() - t0)
    return {"status": "ok", "steps": plan.train_steps, "steps_per_s": rate}


# -- section (c): detection of every path against eager fp32 -------------------------------
@dataclass(frozen=True, eq=False)
class TestSet:
    name: str
    good: list                      # H×W×3 uint8 training images
    images: list                    # test images
    defective: np.ndarray           # (N,) bool
    masks: list                     # H×W bool per test image, or None (image labels only)


def detection_section(data: str | None, device: torch.device, plan: Plan, budget: Budget,
                      trt: Budget, tmp: Path) -> tuple[dict, str | None]:
    source, sets = _test_sets(data, plan)
    print(f"\n[detection] EfficientAD-S {plan.detect_size} px trained on {device.type} on "
          f"{source}; every path as the app scores it (a reduced path with its own calibration "
          "and threshold), its verdicts against eager fp32's", flush=True)
    out, model_file = {"data": source, "categories": []}, None
    for ts in sets:
        if budget.left() <= 0:
            out["categories"].append({"category": ts.name, "status": "skipped: time budget"})
            continue
        try:
            with budget.spend():
                model, meta, cat = _train_on(ts, device, plan)
        except Exception as e:          # e.g. out of memory: the next category may still run
            traceback.print_exc()
            out["categories"].append({"category": ts.name, "status": _error(e)})
            continue
        if model_file is None:                        # the pipeline section judges with it
            from engine.model import save_checkpoint
            model_file = str(tmp / "model.pt")
            save_checkpoint(model, model_file, meta)
        with budget.spend():
            cat["paths"] = _score_paths(model, meta, ts, device, trt)
        out["categories"].append(cat)
    return out, model_file


def _train_on(ts: TestSet, device: torch.device, plan: Plan):
    from engine.model import ModelConfig
    from engine.train import TrainConfig, train
    cfg = TrainConfig(model=ModelConfig(size="small", image_size=plan.detect_size),
                      steps=plan.detect_steps, minutes=plan.detect_minutes, device=device.type,
                      synthetic_per_kind=plan.synthetic_per_kind)
    t0 = time.perf_counter()
    res = train(cfg, ts.good)
    took = time.perf_counter() - t0
    meta = res.meta
    cat = {"category": ts.name, "status": "ok", "train_images": len(ts.good),
           "test_images": len(ts.images), "defective": int(ts.defective.sum()),
           "steps": meta["steps"], "train_s": took, "precision": meta["precision"],
           "threshold": meta["threshold"]}
    print(f"  {ts.name}: trained {meta['steps']} steps ({meta['precision']}) on "
          f"{len(ts.good)} good images in {took:.1f} s (setup and calibration included); "
          f"threshold {meta['threshold']:.4f}; {len(ts.images)} test images, "
          f"{int(ts.defective.sum())} defective", flush=True)
    return res.model, meta, cat


def _score_paths(model, meta: dict, ts: TestSet, device: torch.device, trt: Budget) -> list[dict]:
    """Each path end to end as the app scores (frames in, maps on the host), with its own
    calibration where it has one, and its detection beside eager fp32's."""
    rows, ref = [], None
    for path in PATHS:
        row = {"path": path}
        why = unavailable(path, device)
        if why is None and path == "tensorrt-fp16" and trt.left() <= 0:
            why = "skipped: time budget"
        if why:
            row["status"] = why
        else:
            with trt.spend() if path == "tensorrt-fp16" else contextlib.nullcontext():
                row.update(_score_one(path, model, meta, ts, device, ref))
            if path == "eager" and row["status"] == "ok":
                ref = row["_scores"], row["threshold"]
            row.pop("_scores", None)
        rows.append(row)
        print(_detection_line(row), flush=True)
    return rows


def _path_scorer(path: str, model, meta: dict, device: torch.device):
    """-> (score(frames) -> ScoreResult, threshold, which calibration judges). Every path the
    app knows is its own Scorer: a reduced path maps and thresholds with the calibration the
    model file holds for it (engine/precision.py). TensorRT is not an app path: the eager
    scorer's resize and map stages around the compiled networks, at fp32's calibration."""
    from engine.precision import calibrations
    from engine.scoring import BACKENDS, Scorer
    if path in BACKENDS:
        sc = Scorer(model, meta, device.type, backend=path)
        own = path in calibrations(meta)
        return sc.score, sc.threshold, "its own" if own else "fp32's"
    frame = Scorer(model, meta, device.type, backend="eager")
    runner = make_runner(path, model, device, 1)

    def score(frames):
        batch = frame.prepare(frames)
        return frame.finish(batch, runner(batch.inputs))
    return score, frame.threshold, "fp32's (not calibrated for this path)"


def _score_one(path: str, model, meta: dict, ts: TestSet, device: torch.device, ref) -> dict:
    from engine.metrics import au_pro, image_auroc, pixel_auroc
    try:
        score, threshold, calibration = _path_scorer(path, model, meta, device)
        score(ts.images[:1])                                        # warm-up / graph capture
        scores, maps, t0 = [], [], time.perf_counter()
        for im in ts.images:
            r = score([im])                                         # map copied to the host
            scores.append(float(r.scores[0]))
            maps.append(r.maps[0])
        ms = (time.perf_counter() - t0) * 1000.0 / len(ts.images)
    except Exception as e:
        return {"status": _error(e)}
    finally:
        score = None
        _free(device)
    scores_arr = np.array(scores)
    with_mask = [i for i, m in enumerate(ts.masks) if m is not None]
    pix = [maps[i] for i in with_mask], [ts.masks[i] for i in with_mask]
    has_pix = any(ts.masks[i].any() for i in with_mask)
    row = {"status": "ok", "ms_per_image": ms, "threshold": threshold, "calibration": calibration,
           "image_auroc": image_auroc(scores_arr, ts.defective),
           "pixel_auroc": pixel_auroc(*pix) if has_pix else None,
           "au_pro": au_pro(*pix) if has_pix else None, "_scores": scores_arr,
           "false_reject_rate": float(np.mean(scores_arr[~ts.defective] >= threshold)),
           "miss_rate": float(np.mean(scores_arr[ts.defective] < threshold))}
    if ref is not None:               # each path's verdicts at its threshold against fp32's
        ref_scores, ref_threshold = ref
        row["verdict_changes"] = int(((scores_arr >= threshold) != (ref_scores >= ref_threshold)).sum())
        row["max_rel_score_diff"] = float(np.max(np.abs(scores_arr - ref_scores)
                                                 / np.maximum(np.abs(ref_scores), 1e-9)))
    return row


def _detection_line(r: dict) -> str:
    head = f"    {r['path']:<17}"
    if r["status"] != "ok":
        return head + r["status"]
    f = lambda v: "  n/a " if v is None else f"{v:.4f}"
    line = (head + f"image AUROC {f(r['image_auroc'])}  pixel AUROC {f(r['pixel_auroc'])}  "
            f"AU-PRO {f(r['au_pro'])}  FRR {r['false_reject_rate']:.1%} miss {r['miss_rate']:.1%}"
            f"  {r['ms_per_image']:7.2f} ms/image")
    if "verdict_changes" in r:
        line += (f"  verdicts changed {r['verdict_changes']} (threshold {r['threshold']:.4f}, "
                 f"{r['calibration']} calibration), scores up to {r['max_rel_score_diff']:.2%}")
    return line


def _test_sets(data: str | None, plan: Plan) -> tuple[str, list[TestSet]]:
    """-> (where the images came from, the sets): --data, else the carried subset, else
    ../shared/data (not in a smoke run: generated parts keep CI quick), else generated."""
    if data:
        roots = [Path(data)]
    elif plan is SMOKE:
        roots = []
    else:
        roots = [r for r in (SUBSET, SHARED) if r.is_dir()]
    for root in roots:
        cats = _categories(root)
        if cats:
            return str(root), [_load_set(c, plan) for c in cats]
        if data:
            raise InspectError(f"{root} holds no MVTec-layout category (train/good, test/...).")
    return "generated parts (no dev data here)", [_generated_set(plan)]


def _categories(root: Path) -> list[Path]:
    if (root / "train" / "good").is_dir():
        return [root]
    found = list(root.glob("*/train/good")) + list(root.glob("*/*/train/good"))
    return sorted({p.parent.parent for p in found})


def _spread(items: list, n: int) -> list:
    if n <= 0 or len(items) <= n:
        return list(items)
    return [items[i] for i in np.linspace(0, len(items) - 1, n).astype(int)]


def _load_set(base: Path, plan: Plan) -> TestSet:
    from engine.data import list_images, load_rgb
    from engine.evaluate import check_category, load_mask_any
    check = check_category(base.parent, base.name)
    good_items = [i for i in check.items if i.defect_type == "good"]
    bad_items = [i for i in check.items if i.defect_type != "good"]
    items = _spread(good_items, plan.test_images // 2) + _spread(bad_items, plan.test_images - plan.test_images // 2)
    images = [load_rgb(i.path) for i in items]
    masked = set(check.types_with_masks) | {"good"}
    masks = [(load_mask_any(i.mask, im.shape[:2]) if i.mask is not None else np.zeros(im.shape[:2], bool))
             if i.defect_type in masked else None for i, im in zip(items, images)]
    good = [load_rgb(p) for p in _spread(list_images(check.good_dir), plan.train_images)]
    return TestSet(base.name, good, images, np.array([i.defect_type != "good" for i in items]), masks)


def _part(rng: np.random.Generator, size: int) -> np.ndarray:
    """A generated good part: a blue disc with a ring on grey, shifted a little, sensor noise."""
    yy, xx = np.mgrid[:size, :size].astype(np.float32)
    cy, cx = size / 2 + rng.uniform(-size / 40, size / 40, 2)
    r = np.hypot(yy - cy, xx - cx)
    im = np.full((size, size, 3), 185.0, np.float32)
    im[r < size * 0.32] = (60, 90, 160)
    im[(r > size * 0.18) & (r < size * 0.21)] = (200, 200, 210)
    im += rng.normal(0, 5, im.shape)
    return np.clip(im, 0, 255).astype(np.uint8)


def _generated_set(plan: Plan) -> TestSet:
    """Generated parts; defects from engine.synthetic (cut-paste, stains, scratches, masks)."""
    from engine.synthetic import make_defects
    size = max(96, plan.detect_size)
    rng = np.random.default_rng(0)
    good = [_part(rng, size) for _ in range(plan.train_images)]
    n_good = plan.test_images // 2
    test_good = [_part(rng, size) for _ in range(n_good)]
    per_kind = max(1, -(-(plan.test_images - n_good) // 3))
    defects = make_defects([_part(rng, size) for _ in range(per_kind)], per_kind, seed=1,
                           min_side_px=size / 16)[:plan.test_images - n_good]
    images = test_good + [d.image for d in defects]
    masks = [np.zeros((size, size), bool)] * n_good + [d.mask for d in defects]
    return TestSet("generated", good, images, np.array([False] * n_good + [True] * len(defects)), masks)


# -- section (d): the live pipeline --------------------------------------------------------
def pipeline_section(device: torch.device, plan: Plan, model_file: str | None, tmp: Path) -> dict:
    from app import bench_pipeline
    print(f"\n[pipeline] app/bench_pipeline.py on {device.type}: simulated camera "
          f"{' '.join(plan.pipeline)}", flush=True)
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    if model_file is None:               # detection not run: a model of the generated parts
        from engine.model import save_checkpoint
        model, meta, _ = _train_on(_generated_set(plan), device, plan)
        model_file = str(tmp / "model.pt")
        save_checkpoint(model, model_file, meta)
    argv = ["--device", device.type, "--backend", "auto", "--model", model_file, "--json",
            *plan.pipeline]
    buf = io.StringIO()
    try:
        with contextlib.redirect_stdout(buf):
            bench_pipeline.main(argv)
        lines = [ln for ln in buf.getvalue().splitlines() if ln.startswith("{")]
        r = {"status": "ok", **json.loads(lines[-1])}
    except Exception as e:
        r = {"status": _error(e), "output": buf.getvalue()[-500:]}
    r["argv"] = argv[:4] + argv[6:]
    if r["status"] != "ok":
        print("  " + r["status"], flush=True)
    for name, loop in pipeline_loops(r).items():
        print(f"  {name + ' loop, ' if name else ''}backend {loop.get('backend')}: camera "
              f"{loop.get('camera_fps')} frames/s, judged {loop.get('judged_fps')} frames/s, "
              f"scoring {loop.get('score_ms_median')} ms median, camera to verdict "
              f"{loop.get('camera_to_verdict_ms_median')} ms median / "
              f"{loop.get('camera_to_verdict_ms_p99')} p99, keeps up: {loop.get('keeps_up')}, "
              f"every verdict logged: {loop.get('every_verdict_logged')}", flush=True)
    return r


def pipeline_loops(r: dict) -> dict:
    """bench pipeline's result per loop: {"serial": ..., "pipelined": ...} when it ran both
    loops, else {"": the one result}; {} when it failed."""
    if r.get("status") != "ok":
        return {}
    return dict(r["loops"]) if isinstance(r.get("loops"), dict) else {"": r}


# -- --make-subset: a few dev images to carry to a GPU machine (never committed) -----------
def make_subset(src: Path, dst: Path, n_train: int = 60, n_test: int = 40) -> int:
    """Copy, per category under `src`, n_train good training images and n_test test images
    (half good, half defective, with their masks) into dst/<category>/ in MVTec layout."""
    from engine.data import list_images
    from engine.evaluate import check_category
    cats = _categories(src) if src.is_dir() else []
    if not cats:
        raise InspectError(f"No MVTec-layout category under {src} to take a subset from.")
    for base in cats:
        check = check_category(base.parent, base.name)
        out = dst / base.name
        if out.exists():
            shutil.rmtree(out)
        for p in _spread(list_images(check.good_dir), n_train):
            _copy(p, out / "train" / "good" / p.name)
        good = [i for i in check.items if i.defect_type == "good"]
        bad = [i for i in check.items if i.defect_type != "good"]
        for item in _spread(good, n_test // 2) + _spread(bad, n_test - n_test // 2):
            _copy(item.path, out / "test" / item.defect_type / item.path.name)
            if item.mask is not None:
                rel = item.mask.relative_to(base / "ground_truth")
                target = out / "ground_truth" / rel
                (shutil.copytree(item.mask, target) if item.mask.is_dir() else _copy(item.mask, target))
    mib = sum(f.stat().st_size for f in dst.rglob("*") if f.is_file()) / 2 ** 20
    print(f"{dst}: {', '.join(c.name for c in cats)}; {mib:.1f} MiB (carry it to the GPU "
          f"machine; its licences allow no shipping: never commit it)")
    return 0


def _copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(src, dst)
