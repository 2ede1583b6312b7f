"""`python main.py train | score | eval`: the engine from the command line.

The same engine functions the GUI calls; this file only parses arguments, shows progress
bars and prints results. User errors (InspectError) become one line and exit status 2.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np
from tqdm import tqdm

from engine.data import IMAGE_SUFFIXES, expand_inputs, list_images, load_images, load_rgb
from engine.calibration import valid_target
from engine.card import write_card
from engine.errors import InspectError, run_command
from engine.model import PDN_RECEPTIVE_FIELD, ModelConfig, save_checkpoint
from engine.train import TrainConfig, TrainingCancelled, train
from engine.vocabulary import MODEL_KINDS, MODEL_SIZES, TRAIN_PRECISIONS


class ProgressBar:
    """A tqdm bar fed by progress(fraction, message) callbacks; messages that start with
    'WARNING' or 'skipped' are printed above the bar instead of replacing its text."""

    def __init__(self, desc: str, quiet: bool = False):
        self.bar = tqdm(total=1000, desc=desc, unit="‰", disable=quiet, file=sys.stderr,
                        bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed}<{remaining} {postfix}")
        self.quiet = quiet

    def __call__(self, fraction: float, message: str) -> None:
        if message.startswith(("WARNING", "skipped")):
            tqdm.write(message, file=sys.stderr)
        else:
            self.bar.set_postfix_str(message, refresh=False)
        target = int(max(0.0, min(1.0, fraction)) * 1000)
        if target > self.bar.n:
            self.bar.update(target - self.bar.n)
        else:
            self.bar.refresh()

    def close(self) -> None:
        self.bar.close()


def _add_train_options(p: argparse.ArgumentParser, default_steps: int) -> None:
    p.add_argument("--kind", choices=MODEL_KINDS, default="efficientad",
                   help="efficientad (trained networks, fastest on a GPU) or quick (nearest "
                        "neighbours on ImageNet features: ready in about a minute, no training)")
    p.add_argument("--bank-size", type=int, default=ModelConfig.bank_size,
                   help="quick model: patches kept in its memory bank")
    p.add_argument("--size", choices=MODEL_SIZES, default="small", help="PDN variant")
    p.add_argument("--image-size", type=int, default=256, help="network input side (multiple of 32)")
    p.add_argument("--steps", type=int, default=default_steps,
                   help="training steps (with --minutes: the most it may take)")
    p.add_argument("--minutes", type=finite_float, default=None,
                   help="learn for this long in all (setup, steps, threshold); the learning-rate "
                        "drop comes at 95%% of it")
    p.add_argument("--teacher", default="default",
                   help="teacher file, 'default' (shipped) or 'random' (far below the paper's results)")
    p.add_argument("--penalty", default="default",
                   help="folder of natural images for the penalty term, 'default' or 'none'")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("--precision", default="auto", choices=TRAIN_PRECISIONS,
                   help="training arithmetic; auto = bf16 mixed precision where supported")
    p.add_argument("--target-frr", type=_fraction, default=0.01,
                   help="share of good parts the default threshold may reject (0.01 or 1%%)")
    p.add_argument("--halves", choices=("balanced", "equal"),
                   default="balanced" if TrainConfig.balance_halves else "equal",
                   help="weights of the map's two halves: balanced by how steady each one's "
                        "maximum is on the held-out good parts, or the paper's equal weights")
    g = p.add_argument_group("small defects on large frames (see README: choosing size and tiling)")
    g.add_argument("--tiling", action="store_true",
                   help="cut frames into overlapping image-size tiles (autoencoder sees the whole frame)")
    g.add_argument("--tile-scale", type=float, default=1.0, help="resize frames by this before tiling")
    g.add_argument("--tile-overlap", type=float, default=0.25, help="minimum tile overlap (fraction)")
    g.add_argument("--roi", help="region of interest X,Y,W,H in frame pixels")
    g.add_argument("--roi-polygon", help="optional polygon inside the ROI: X1,Y1;X2,Y2;X3,Y3...")


def _model_config(a: argparse.Namespace) -> ModelConfig:
    from engine.settings import parse_polygon, parse_roi
    return ModelConfig(kind=a.kind, bank_size=a.bank_size, size=a.size,
                       image_size=a.image_size, tiling=a.tiling,
                       tile_scale=a.tile_scale, tile_overlap=a.tile_overlap,
                       roi=parse_roi(a.roi or ""), roi_polygon=parse_polygon(a.roi_polygon or ""))


def _train_config(a: argparse.Namespace) -> TrainConfig:
    return TrainConfig(model=_model_config(a), steps=a.steps,
                       teacher=a.teacher, penalty=a.penalty, seed=a.seed, device=a.device,
                       precision=a.precision, target_frr=a.target_frr, minutes=a.minutes,
                       balance_halves=a.halves == "balanced")


def _skip(path: Path, message: str) -> None:
    tqdm.write(f"skipped: {message}", file=sys.stderr)


# -- train ------------------------------------------------------------------------------
def train_main(argv: list[str]) -> int:
    return run_command(_train_cmd, argv)


def _train_cmd(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="main.py train", description="Learn good parts from a folder.")
    p.add_argument("--good", required=True, help="folder of good images (its *_mask.png files are "
                   "left out)")
    p.add_argument("--out", required=True, help="model file to write (replaced if it exists); a "
                   "stopped run leaves OUT.partial.pt and resumes from it")
    _add_train_options(p, default_steps=70_000)
    a = p.parse_args(argv)
    cfg = _train_config(a)
    out = Path(a.out)
    check_output_file(out, "--out")           # before the images are read and the hours spent
    paths = list_images(a.good, _skip)
    images, kept = load_images(paths, _skip)
    resume = out.with_name(out.name + ".partial.pt")
    bar = ProgressBar("train")
    try:
        result = train(cfg, images, bar, resume_path=resume, names=[str(k) for k in kept])
    except KeyboardInterrupt:
        raise TrainingCancelled("interrupted") from None
    finally:
        bar.close()
    try:
        save_checkpoint(result.model, out, result.meta)
        card = write_card(out, result.meta)
    except OSError as e:                      # checked above; a full disk can still refuse it
        raise InspectError(f"Cannot write the model to {out} ({e.strerror or e}); free disk "
                           "space and run the same command again (it resumes from "
                           f"{resume.name}).") from e
    resume.unlink(missing_ok=True)            # only now: the model is safe on disk
    print(f"model card: {card}")
    m = result.meta
    print(f"saved {out}: threshold {m['threshold']:.4f} ({m['n_train']} training images, "
          f"{m['n_holdout']} held out, {m['steps']} steps, {m['train_seconds']:.0f} s)")
    return 0


def check_output_file(path: Path, option: str) -> None:
    """`path` can be written as a file: not a folder, its folder exists (made if missing), and
    a file can be created there. Checked at the start, so a long run cannot fail at its end."""
    if path.is_dir():
        raise InspectError(f"{option} {path} is a folder; give a file path such as "
                           f"{path / 'model.pt'}.")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", suffix=".probe"):
            pass                              # the model is written as a temp file + rename too
    except OSError as e:
        raise InspectError(f"{option} {path} cannot be written ({e.strerror or e}); choose a "
                           "file in a folder you can write to.") from e


# -- score ------------------------------------------------------------------------------
def finite_float(text: str) -> float:
    """argparse type: a finite number. float() also reads "nan" and "inf", and a NaN
    threshold would pass every part (NaN >= t is False)."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number; give e.g. 0.5")
    return v


def score_main(argv: list[str]) -> int:
    return run_command(_score_cmd, argv)


def _score_cmd(argv: list[str]) -> int:
    from engine.scoring import Scorer

    p = argparse.ArgumentParser(prog="main.py score", description="Score images with a model. "
                                "Exit status 2 when no image could be scored.")
    p.add_argument("--model", required=True)
    p.add_argument("inputs", nargs="+", help="images or folders (a folder's *_mask.png files are "
                   "left out)")
    p.add_argument("--overlays", help="folder to write image+map overlays to: NAME_overlay.png, "
                   "FOLDER_NAME_overlay.png for inputs that share a name; never overwrites a file "
                   "(a taken name gets _2, _3, ...)")
    p.add_argument("--threshold", type=finite_float, help="override the model's threshold")
    p.add_argument("--device", default="auto")
    p.add_argument("--backend", default="auto", help="scoring path: auto (fastest exact) or "
                   "one of engine.scoring.BACKENDS, e.g. eager")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    a = p.parse_args(argv)
    scorer = Scorer.from_file(a.model, a.device, a.backend)
    threshold = scorer.threshold if a.threshold is None else a.threshold
    paths = expand_inputs(a.inputs, _skip)
    if not paths:
        raise InspectError(f"No images to score in {', '.join(a.inputs)}; give image files or "
                           f"folders holding {', '.join(sorted(IMAGE_SUFFIXES))} files.")
    overlays = _overlay_paths(paths, Path(a.overlays)) if a.overlays else None
    min_side = min_side_to_judge(scorer.image_size)
    n_fail = n_bad = 0
    for i, path in enumerate(tqdm(paths, desc="score", file=sys.stderr, disable=len(paths) < 10)):
        try:
            rgb = load_rgb(path)
        except InspectError as e:
            n_bad += 1
            tqdm.write(f"skipped: {e}", file=sys.stderr)
            continue
        if min(rgb.shape[:2]) < min_side:
            tqdm.write(f"WARNING: {path} is only {rgb.shape[1]}×{rgb.shape[0]} pixels, too small to "
                       f"judge reliably (under {min_side} px for this {scorer.image_size} px "
                       "model); its verdict says little.", file=sys.stderr)
        r = scorer.score([rgb], with_maps=overlays is not None)
        score = float(r.scores[0])
        verdict = scorer.decide(score, threshold).value
        n_fail += verdict == "FAIL"
        ov_path = _write_overlay(rgb, r.maps[0], threshold, overlays[i]) if overlays else None
        if a.json:
            print(json.dumps({"path": str(path), "score": score, "verdict": verdict}
                             | ({"overlay": str(ov_path)} if ov_path else {})))
        else:
            print(f"{path}\t{score:.4f}\t{verdict}" + (f"\t{ov_path}" if ov_path else ""))
    print(f"{len(paths) - n_bad} scored, {n_fail} FAIL at threshold {threshold:.4f}"
          + (f", {n_bad} unreadable" if n_bad else ""), file=sys.stderr)
    if n_bad == len(paths):
        raise InspectError(f"None of the {len(paths)} images could be read, so nothing was "
                           "scored; check the files named above.")
    return 0


def min_side_to_judge(image_size: int) -> int:
    """Shorter frame side (px) below which a score means little. Every frame is resized to
    the model input (image_size²). One PDN feature sees 33×33 input pixels
    (PDN_RECEPTIVE_FIELD): a frame under 33 px is smaller than a single feature of the
    training images, and one under image_size/8 is blown up more than 8×, so a feature covers
    at most ~4 of its own pixels: interpolation blur, not the part the model learned."""
    return max(PDN_RECEPTIVE_FIELD, image_size // 8)


def _overlay_paths(paths: list[Path], out_dir: Path) -> list[Path]:
    """One overlay file per input, none over another or over an existing file: NAME_overlay.png;
    inputs that share a name (a/x.png, b/x.png) get their folder's name in front; a name
    still taken (in this run or already on disk) gets _2, _3, ..."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InspectError(f"--overlays {out_dir} cannot be made ({e.strerror or e}); choose a "
                           "folder you can write to.") from e
    stems = Counter(p.stem for p in paths)
    taken: set[str] = set()
    out = []
    for p in paths:
        base = p.stem if stems[p.stem] == 1 else f"{p.resolve().parent.name or 'root'}_{p.stem}"
        name, n = f"{base}_overlay.png", 2
        while name in taken or (out_dir / name).exists():
            name, n = f"{base}_overlay_{n}.png", n + 1
        taken.add(name)
        out.append(out_dir / name)
    return out


def _write_overlay(rgb: np.ndarray, amap, threshold: float, path: Path) -> Path:
    import cv2
    from engine.scoring import overlay
    if not cv2.imwrite(str(path), overlay(rgb, amap, threshold)[:, :, ::-1]):
        raise InspectError(f"Cannot write the overlay {path}; check the --overlays folder "
                           "(free space, permissions).")
    return path


# -- eval -------------------------------------------------------------------------------
def eval_main(argv: list[str]) -> int:
    return run_command(_eval_cmd, argv)


def _eval_cmd(argv: list[str]) -> int:
    from engine.evaluate import check_category, evaluate
    p = argparse.ArgumentParser(prog="main.py eval",
                                description="Train and evaluate on an MVTec-layout category "
                                            "(masks optional: image-level labels are enough).")
    p.add_argument("--data", required=True, help="root folder (ROOT/CATEGORY/train/good, ...)")
    p.add_argument("--category", required=True)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--save-model", help="also write the trained model to this file")
    p.add_argument("--model", help="evaluate this trained model file instead of training one "
                   "(the training options are then ignored)")
    _add_train_options(p, default_steps=70_000)
    a = p.parse_args(argv)
    check = check_category(a.data, a.category)      # seconds: before any training
    print(check.summary(), file=sys.stderr)
    bar = ProgressBar("eval", quiet=False)
    try:
        res = evaluate(check, _train_config(a), bar, _skip, a.save_model, a.model)
    finally:
        bar.close()
    if a.json:
        print(json.dumps(res, indent=None))
    else:
        _print_eval(res)
    return 0


def _print_eval(res: dict) -> None:
    fmt = lambda v: "  n/a" if v is None else f"{v:.4f}"
    pct = lambda v: "  n/a" if v is None else f"{v:.1%}"
    tiling = f", tiles at scale {res['tile_scale']}" if res["tiling"] else ""
    made = (f"{res['steps']} steps, teacher {res['teacher']}" if res.get("kind") != "quick"
            else "no training")
    print(f"{res['category']}: {res['model']}{tiling}, {made}, {res['device']}")
    print(f"threshold {res['threshold']:.4f}: false rejects {pct(res['false_reject_rate'])} of good parts")
    print(f"{'type':<16}{'images':>7}{'img AUROC':>11}{'px AUROC':>10}{'AU-PRO':>9}{'misses':>8}")
    for name, r in [("ALL", res)] + list(res["per_type"].items()):
        print(f"{name:<16}{r['n_images']:>7}{fmt(r['image_auroc']):>11}{fmt(r['pixel_auroc']):>10}"
              f"{fmt(r['au_pro']):>9}{pct(r['miss_rate']):>8}")
    if res["types_without_masks"]:
        print(f"no masks (pixel metrics n/a): {', '.join(res['types_without_masks'])}")
    syn = res.get("synthetic_check")
    if syn:
        print(f"synthetic defects predicted misses {syn['miss_rate']:.1%} "
              f"(real: {pct(res['miss_rate'])})")
    trained = "model loaded" if res["train_seconds"] is None else f"train {res['train_seconds']:.0f} s"
    print(f"{trained}, score {res['ms_per_image']:.1f} ms/image")


# -- calibrate --------------------------------------------------------------------------
def calibrate_main(argv: list[str]) -> int:
    return run_command(_calibrate_cmd, argv)


def _calibrate_cmd(argv: list[str]) -> int:
    """A trained model's threshold set again, e.g. for another false-reject target, without
    training: the same held-out good parts, this version's rule, a new synthetic check."""
    import uuid
    from engine.model import load_checkpoint
    from engine.train import recalibrate

    p = argparse.ArgumentParser(prog="main.py calibrate", description=_calibrate_cmd.__doc__.split("\n")[0])
    p.add_argument("--model", required=True, help="trained model file")
    p.add_argument("--good", required=True, help="the folder of good images it was trained from")
    p.add_argument("--target-frr", type=_fraction, help="share of good parts the threshold may "
                   "reject (default: the model's own, 0.01 when it has none)")
    p.add_argument("--halves", choices=("balanced", "equal"),
                   help="weights of the map's two halves (default: the model's own)")
    p.add_argument("--out", help="model file to write (default: replace --model)")
    a = p.parse_args(argv)
    model, meta = load_checkpoint(a.model)
    images, _ = load_images(list_images(a.good), _skip)
    bar = ProgressBar("calibrate")
    try:
        new = recalibrate(model, meta, images, a.target_frr, bar,
                          None if a.halves is None else a.halves == "balanced")
    finally:
        bar.close()
    new["recalibrated_from"], new["model_id"] = meta.get("model_id"), uuid.uuid4().hex[:12]
    out = Path(a.out or a.model)
    save_checkpoint(model, out, new)
    write_card(out, new)
    print(f"saved {out}: threshold {meta.get('threshold', float('nan')):.4f} -> {new['threshold']:.4f}")
    from engine.card import expectations
    from engine.meta import ModelMeta
    print("\n".join(expectations(ModelMeta.from_dict(new))))
    from engine.precision import calibrations, reference_auroc
    for name, cal in calibrations(new).items():
        print(f"scoring path {name}: threshold {cal.threshold:.4f}, held-out check AUROC "
              f"{cal.heldout_auroc:.3f} (fp32 {reference_auroc(new) or float('nan'):.3f}), "
              f"{cal.synthetic_missed} of {cal.synthetic_n} synthetic defects missed")
    return 0


def _fraction(text: str) -> float:
    """A false-reject target: '0.01' or '1%'."""
    try:
        v = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number (e.g. 0.01 or 1%)") from None
    if not valid_target(v):
        raise argparse.ArgumentTypeError(f"{text!r} must be between 0 and 0.5 (50%)")
    return v
