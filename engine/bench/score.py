"""`python main.py bench score`: every scoring path side by side, in one run, same inputs.

The baseline is the plain eager fp32 forward (Scorer backend "eager"). Every path is timed
end to end as the app uses it (uint8 frames -> resize -> networks -> map at frame size ->
score -> maps copied to the host), interleaved round-robin so that load from other
programs hits all paths alike. Agreement: the largest score and map difference against the
baseline on real images, and how many PASS/FAIL verdicts change, each path at its own
threshold. A reduced-precision path is a model calibrated on its own outputs
(engine/precision.py), so its numbers differ from fp32's by design; what it must match is
detection: with --data CATEGORY every path scores that set's whole test split and reports
image AUROC, pixel AUROC, AU-PRO and the false-reject and miss rates at its own default
threshold, beside its held-out check (synthetic defects against held-out good parts).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from engine.data import list_images, load_rgb
from engine.errors import InspectError, run_command
from engine.vocabulary import DEVICES, MODEL_SIZES

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"      # beside the checkout
CPU_PATHS = ["eager", "torch-fp32", "torch-fp32-nnpack", "onnxruntime", "openvino-fp32",
             "torch-bf16", "openvino-bf16", "openvino-int8", "onnxruntime-int8"]
CUDA_PATHS = ["eager", "torch-fp32", "torch-fp32-graph", "torch-bf16", "torch-bf16-graph",
              "torch-fp16-graph"]


def real_test_images(limit: int | None, root: Path | None = None) -> list[Path]:
    """Test images of every MVTec-layout set under ../shared/data (or of the category or
    root folder `root`), spread over the sets."""
    if root is None:
        kinds = SHARED.glob("*/*/test/*")
    else:
        kinds = list(root.glob("test/*")) or root.glob("*/test/*")
    paths = [p for d in sorted(kinds) if d.is_dir() for p in list_images(d)]
    if limit and len(paths) > limit:
        paths = [paths[i] for i in np.linspace(0, len(paths) - 1, limit).astype(int)]
    return paths


def calibrated_model(size: str, image_size: int, good: list[np.ndarray]):
    """No model given: shipped teacher (random if none), untrained student, and teacher
    statistics and map quantiles measured on real good images, so that maps and scores have
    realistic magnitudes for the accuracy comparison."""
    from engine.model import EfficientAD, ModelConfig, load_teacher_state
    from engine.preprocess import frames_to_tensor
    from engine.train import (_teacher_stats, default_teacher_path, default_threshold,
                              raw_holdout_maps, set_map_quantiles)

    torch.manual_seed(0)
    model = EfficientAD(ModelConfig(size=size, image_size=image_size)).eval()
    teacher = default_teacher_path(size)
    if teacher.is_file():
        load_teacher_state(model.teacher, teacher)
    x = torch.cat([(frames_to_tensor([g], image_size, torch.device("cpu")) * 255).to(torch.uint8) for g in good])
    _teacher_stats(model, x, torch.device("cpu"))
    st, ae = raw_holdout_maps(model, x, torch.device("cpu"))
    set_map_quantiles(model, st, ae)
    from engine import precision
    from engine.scoring import Scorer
    scores = Scorer(model, {}, "cpu").score(good, with_maps=False).scores
    check = precision.check_set_from_frames(model, good, per_kind=4)
    ref = precision.fp32_reference(model, check)
    paths = precision.calibrate_paths(model, torch.device("cpu"), check, ref.heldout_auroc,
                                      fp32_missed=ref.synthetic_missed)
    return model, {"threshold": default_threshold(scores), **paths,
                   "teacher": str(teacher) if teacher.is_file() else "random"}


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="main.py bench score", description=__doc__.split("\n")[0])
    p.add_argument("--model", help="trained model file (default: calibrated untrained model)")
    p.add_argument("--size", choices=MODEL_SIZES, default="small")
    p.add_argument("--image-size", type=int, default=256)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--device", default="cpu", choices=[d for d in DEVICES if d != "auto"])
    p.add_argument("--iters", type=int, default=20, help="timed batches per path")
    p.add_argument("--paths", help="comma-separated subset of paths")
    p.add_argument("--images", type=int, default=64, help="real test images for the accuracy check "
                   "(0 = every test image in ../shared/data)")
    p.add_argument("--data", help="take the test images from this MVTec-layout category (or "
                   "root) folder instead of every set under ../shared/data")
    p.add_argument("--quick", default="build",
                   help="the quick model timed beside the EfficientAD paths (a different model: "
                        "no score comparison): a quick model file, 'build' (from 50 good images "
                        "of the sets, timed too) or 'none'")
    p.add_argument("--detect-images", type=int, default=0,
                   help="with --data: test images for the detection table (0 = all)")
    p.add_argument("--json", action="store_true")
    return run_command(_bench, p.parse_args(argv))


def _bench(a: argparse.Namespace) -> int:
    if a.device == "cuda" and not torch.cuda.is_available():
        raise InspectError("--device cuda: no CUDA GPU here.")
    frames = _accuracy_frames(a)
    model, meta = _model(a)
    scorers = _scorers(model, meta, a)
    threshold = scorers["eager"].threshold
    acc = _accuracy(scorers, frames, threshold)
    quick, build_s = _quick_scorer(a)
    if quick is not None:
        scorers["quick"] = quick
        acc["quick"] = (float("nan"),) * 3 + (None,)       # another model: nothing to compare
    rows = _rows(scorers, _timings(scorers, frames, a), acc, a.batch)
    detection = _detection(scorers, meta, a)
    info = {"device": a.device if a.device == "cpu" else torch.cuda.get_device_name(),
            "batch": a.batch, "image_size": model.config.image_size, "size": model.config.size,
            "accuracy_images": len(frames), "threshold": threshold,
            "model": a.model or f"calibrated untrained ({meta.get('teacher')} teacher)",
            "torch_threads": torch.get_num_threads(), "quick_build_s": build_s}
    if a.json:
        print(json.dumps({"info": info, "paths": rows, "detection": detection}))
    else:
        _print_table(info, rows)
        if detection:
            _print_detection(detection)
    return 0


def _quick_scorer(a: argparse.Namespace):
    """-> (Scorer of the quick model or None, seconds it took to build or None)."""
    from engine.model import ModelConfig, load_checkpoint
    from engine.scoring import Scorer
    from engine.train import TrainConfig, train
    if a.quick == "none":
        return None, None
    if a.quick != "build":
        model, meta = load_checkpoint(a.quick)
        return Scorer(model, meta, a.device, backend="auto"), None
    good = [load_rgb(p) for p in sorted(SHARED.glob("*/*/train/good/*"))[::20][:50]]
    if len(good) < 5:
        print("skipping quick: fewer than 5 good images under ../shared/data", file=sys.stderr)
        return None, None
    t0 = time.perf_counter()
    res = train(TrainConfig(model=ModelConfig(kind="quick", image_size=a.image_size),
                            device=a.device, synthetic_per_kind=0), good)
    return Scorer(res.model, res.meta, a.device, backend="auto"), time.perf_counter() - t0


def _accuracy_frames(a: argparse.Namespace) -> list[np.ndarray]:
    root = Path(a.data) if a.data else None
    paths = real_test_images(a.images or None, root)
    if not paths:
        raise InspectError(f"No test images (test/<kind>/*) found under {root or SHARED}.")
    return [load_rgb(p) for p in paths]


def _model(a: argparse.Namespace):
    from engine.model import load_checkpoint
    if a.model:
        return load_checkpoint(a.model)
    good = [load_rgb(p) for p in sorted(SHARED.glob("*/*/train/good/*"))[::50][:16]]
    return calibrated_model(a.size, a.image_size, good)


def _scorers(model, meta: dict, a: argparse.Namespace) -> dict:
    from engine.scoring import Scorer
    names = a.paths.split(",") if a.paths else (CUDA_PATHS if a.device == "cuda" else CPU_PATHS)
    scorers = {}
    for name in names:
        try:
            scorers[name] = Scorer(model, meta, a.device, backend=name)
        except Exception as e:                     # a runtime that is not installed here
            print(f"skipping {name}: {type(e).__name__}: {e}", file=sys.stderr)
    if "eager" not in scorers:
        raise InspectError("the eager baseline could not be built")
    return scorers


def _accuracy(scorers: dict, frames: list[np.ndarray], threshold: float) -> dict:
    """Against the eager baseline on every chosen real image, frame by frame at its own
    resolution: (largest score difference, relative, largest map difference, verdict flips)."""
    ref = [scorers["eager"].score([f]) for f in frames]
    acc = {"eager": (0.0, 0.0, 0.0, 0)}          # the baseline against itself, not rescored
    for name, sc in scorers.items():
        if name == "eager":
            continue
        worst_rel = worst_abs = worst_map = 0.0
        flips = 0
        for f, r in zip(frames, ref):
            out = sc.score([f])
            d = abs(float(out.scores[0]) - float(r.scores[0]))
            worst_abs = max(worst_abs, d)
            worst_rel = max(worst_rel, d / max(abs(float(r.scores[0])), 1e-9))
            worst_map = max(worst_map, float(np.abs(out.maps[0] - r.maps[0]).max()))
            flips += (out.scores[0] >= sc.threshold) != (r.scores[0] >= threshold)
        acc[name] = (worst_abs, worst_rel, worst_map, flips)
    return acc


def _detection(scorers: dict, meta: dict, a: argparse.Namespace) -> list[dict] | None:
    """Every path on the --data set's test split at its own default threshold."""
    if not a.data:
        return None
    from engine import precision
    from engine.evaluate import _metrics, _score_items, check_category
    check = check_category(a.data, Path(a.data).name)
    if a.detect_images and len(check.items) > a.detect_images:
        keep = np.linspace(0, len(check.items) - 1, a.detect_images).astype(int)
        check = replace(check, items=tuple(check.items[i] for i in keep))
    cals, rows, ref = precision.calibrations(meta), [], None
    skip = lambda path, why: print(f"skipped {path}: {why}", file=sys.stderr)   # noqa: E731
    for name, sc in scorers.items():
        if name == "quick":
            continue
        scored = _score_items(sc, check, lambda f, m: None, skip)
        m = _metrics(scored, None, sc.threshold)
        fails = np.array(scored.scores) >= sc.threshold
        ref = fails if ref is None else ref
        cal = cals.get(name)
        rows.append({"name": name, "threshold": sc.threshold, **m,
                     "verdict_changes": int((fails != ref).sum()),
                     "heldout_auroc": cal.heldout_auroc if cal else precision.reference_auroc(meta),
                     "heldout_frr": cal.holdout_frr if cal else meta.get("holdout_false_reject_rate")})
    return rows


def _print_detection(rows: list[dict]) -> None:
    n = rows[0]["n_images"]
    print(f"\ndetection on the test split ({n} images, {rows[0]['n_defective']} defective), each "
          "path at its own default threshold:")
    print(f"{'path':<18}{'img AUROC':>10}{'px AUROC':>9}{'AU-PRO':>8}{'FRR':>7}{'miss':>7}"
          f"{'flips':>6}{'held-out AUROC':>16}{'held-out FRR':>13}")
    f = lambda v, spec: "n/a" if v is None else format(v, spec)      # noqa: E731
    for r in rows:
        print(f"{r['name']:<18}{f(r['image_auroc'], '.4f'):>10}{f(r['pixel_auroc'], '.4f'):>9}"
              f"{f(r['au_pro'], '.4f'):>8}{f(r['false_reject_rate'], '.1%'):>7}"
              f"{f(r['miss_rate'], '.1%'):>7}{r['verdict_changes']:>6}"
              f"{f(r['heldout_auroc'], '.4f'):>16}{f(r['heldout_frr'], '.1%'):>13}")


def _timings(scorers: dict, frames: list[np.ndarray], a: argparse.Namespace) -> dict:
    """Milliseconds per batch of the first images (resized by the scorer), interleaved
    round-robin so that load from other programs hits all paths alike."""
    batch = [frames[i % len(frames)] for i in range(a.batch)]
    for sc in scorers.values():                    # warm-up (graph capture, compile, caches)
        for _ in range(3):
            sc.score(batch)
    times = {n: [] for n in scorers}
    for _ in range(a.iters):
        for name, sc in scorers.items():
            if a.device == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            sc.score(batch)                        # includes the copy of maps to the host
            times[name].append((time.perf_counter() - t0) * 1000.0)
    return times


def _rows(scorers: dict, times: dict, acc: dict, batch: int) -> list[dict]:
    rows = []
    base_ips = None
    for name in scorers:
        t = np.array(times[name])
        ips = batch * 1000.0 / float(np.mean(t))
        base_ips = base_ips or ips
        worst_abs, worst_rel, worst_map, flips = acc[name]
        rows.append({"name": name, "ms_median": float(np.median(t)) / batch,
                     "ms_p99": float(np.percentile(t, 99)) / batch, "images_per_s": ips,
                     "speedup": ips / base_ips, "max_score_diff": worst_abs,
                     "max_score_rel_diff": worst_rel, "max_map_diff": worst_map,
                     "verdict_changes": None if flips is None else int(flips)})
    return rows


def _print_table(info: dict, rows: list[dict]) -> None:
    print(f"EfficientAD-{info['size'][0].upper()} {info['image_size']} px, batch {info['batch']}, "
          f"{info['device']}, {info['torch_threads']} threads; accuracy on "
          f"{info['accuracy_images']} real test images; model: {info['model']}")
    print(f"{'path':<18}{'ms/img med':>11}{'p99':>9}{'img/s':>9}{'speedup':>9}"
          f"{'score Δ':>10}{'rel Δ':>9}{'map Δ':>10}{'flips':>6}")
    for r in rows:
        print(f"{r['name']:<18}{r['ms_median']:>11.2f}{r['ms_p99']:>9.2f}{r['images_per_s']:>9.1f}"
              f"{r['speedup']:>8.2f}x{r['max_score_diff']:>10.2e}{r['max_score_rel_diff']:>9.2%}"
              f"{r['max_map_diff']:>10.2e}{_flips(r['verdict_changes']):>6}")
    if info.get("quick_build_s") is not None:
        print(f"quick: another model (no score comparison), built from 50 good images in "
              f"{info['quick_build_s']:.1f} s")
    elif any(r["name"] == "quick" for r in rows):
        print("quick: another model (no score comparison)")


def _flips(n) -> str:
    return "n/a" if n is None else str(n)
