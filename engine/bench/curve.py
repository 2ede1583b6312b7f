"""`python main.py bench curve`: detection as one training goes on, and why it moves.

One EfficientAD training on a category's train/good at the paper's constant learning rate
(its drop at 95% of the steps never comes: the run has no planned end). At each of
`--minutes` (training time: setup and steps; the snapshots' own scoring is not counted)
the state is calibrated as Learn calibrates it (held-out map quantiles, default threshold,
synthetic check) and the whole test split is scored with the app's folded networks
(engine.fast.FoldedEfficientAD). Calibration and scoring run in the training's precision:
bf16 autocast where the CPU has it (the bf16 path detects within 0.003 image AUROC of fp32:
README, "Scoring speed"), `--fp32` for the exact path. Each snapshot reports:

  image AUROC    the app's image score (the map's maximum)
  diagnostics    image AUROC of the ST half alone and of the AE half alone (each as
                 calibrated), and of the maximum of the map smoothed by a Gaussian of one
                 grid cell (4 px at the model's input: a score a few isolated cells cannot
                 decide); pixel AUROC and AU-PRO (maps and masks at most 512 px on their
                 long side); mean image score of training, held-out, good test and defective
                 test images (how far the student has learnt its own training images
                 beyond the good parts it has not seen); the state is calibrated with the
                 paper's equal weights, and "balanced" is the image AUROC with
                 each half weighted by the inverse spread of its image maximum over the
                 held-out good parts (`balanced_weights`), and that weight ratio
  rates          false rejects and misses at the default threshold, next to the synthetic
                 defects it misses

`--teacher backbone:efficientnet-lite0` (or -lite2) trains against the backbone's own
aggregated features instead of a distilled PDN (engine.backbones.BackboneTeacher): the
issue's question whether the student learns them well enough. Such a state is scored with
the model's own maps (EfficientAD.raw_maps), the same numbers the folding computes.

Learn for N minutes is not a snapshot of a longer run (its learning rate drops at 95% of its
budget and it keeps the best of four checks): `python main.py eval --minutes N` measures that.
"""
from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from engine.errors import InspectError, run_command
from engine.vocabulary import MODEL_SIZES

PIXEL_SIDE = 512          # pixel metrics on maps and masks at most this long side
TRAIN_SAMPLE = 32         # training images scored at each snapshot


@dataclass(frozen=True)
class TestSet:
    views: torch.Tensor              # (N,3,S,S) uint8 network inputs
    types: tuple[str, ...]           # "good" or the defect type, per image
    shapes: tuple[tuple[int, int], ...]   # (H,W) at which pixel metrics are computed
    masks: tuple[np.ndarray | None, ...]  # bool (H,W) for good and masked types, else None


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="main.py bench curve", description=__doc__.split("\n")[0])
    p.add_argument("--data", required=True, help="MVTec-layout root (or the category folder)")
    p.add_argument("--category", default="", help="category under --data")
    p.add_argument("--minutes", type=float, nargs="+", default=[2, 5, 10, 20, 40],
                   help="training minutes at which the state is measured")
    p.add_argument("--size", choices=MODEL_SIZES, default="small")
    p.add_argument("--image-size", type=int, default=256)
    p.add_argument("--teacher", default="default",
                   help="'default', a teacher file, 'random', or backbone:efficientnet-lite0|-lite2")
    p.add_argument("--penalty", default="default")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--lr", type=float, default=1e-4, help="Adam's learning rate (the paper's 1e-4)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--fp32", action="store_true", help="train, calibrate and score in fp32")
    p.add_argument("--json", help="also write the rows to this file (JSON lines)")
    p.add_argument("--save-dir", help="also write each snapshot as a model file here "
                   "(M.pt per mark, calibrated: `eval --model` reads it)")
    return run_command(_bench, p.parse_args(argv))


def _bench(a: argparse.Namespace) -> int:
    from engine.data import list_images, load_images
    from engine.evaluate import check_category
    from engine.model import ModelConfig
    from engine.train import TrainConfig

    if a.threads:
        torch.set_num_threads(a.threads)
    marks = sorted(set(a.minutes))
    if not marks or marks[0] <= 0:
        raise InspectError("--minutes must be positive numbers of minutes.")
    check = check_category(a.data, a.category)
    backbone = a.teacher.split(":", 1)[1] if a.teacher.startswith("backbone:") else None
    cfg = TrainConfig(model=ModelConfig(size=a.size, image_size=a.image_size), steps=10 ** 9,
                      teacher="random" if backbone else a.teacher, penalty=a.penalty,
                      seed=a.seed, device="cpu", lr=a.lr,
                      select_best=False, reduced_paths=False, balance_halves=False,
                      precision="fp32" if a.fp32 else "auto")
    skip = lambda path, msg: print(f"skipped {path}: {msg}", flush=True)
    good, _ = load_images(list_images(check.good_dir), skip)
    test = load_test(check, a.image_size, skip)
    print(f"{check.summary()} {len(good)} good training images; torch threads "
          f"{torch.get_num_threads()}", flush=True)
    print(_header(), flush=True)
    for row in run_curve(cfg, good, test, marks, backbone, a.save_dir):
        print(_line(row), flush=True)
        if a.json:
            with open(a.json, "a") as f:
                f.write(json.dumps({"category": check.base.name, "teacher": a.teacher,
                                    "seed": a.seed, "lr": a.lr, **row}) + "\n")
    return 0


def load_test(check, image_size: int, skip) -> TestSet:
    from engine.data import load_rgb
    from engine.evaluate import load_mask_any
    from engine.train import _views
    pixel = set(check.types_with_masks) | {"good"}
    views, types, shapes, masks = [], [], [], []
    for item in check.items:
        try:
            rgb = load_rgb(item.path)
        except InspectError as e:
            skip(item.path, str(e))
            continue
        views.append(_views(rgb, None, image_size)[0])                  # training's own view
        types.append(item.defect_type)
        hw = _pixel_shape(rgb.shape[:2])
        shapes.append(hw)
        if item.defect_type not in pixel:
            masks.append(None)
            continue
        full = (np.zeros(rgb.shape[:2], bool) if item.mask is None
                else load_mask_any(item.mask, rgb.shape[:2]))
        masks.append(cv2.resize(full.astype(np.uint8), hw[::-1], interpolation=cv2.INTER_NEAREST) > 0)
    return TestSet(torch.stack(views), tuple(types), tuple(shapes), tuple(masks))


def _pixel_shape(hw: tuple[int, int]) -> tuple[int, int]:
    f = min(1.0, PIXEL_SIDE / max(hw))
    return max(1, round(hw[0] * f)), max(1, round(hw[1] * f))


def run_curve(cfg, good: list[np.ndarray], test: TestSet, marks: list[float],
              backbone: str | None = None, save_dir: str | None = None):
    """Train, and at each mark (minutes of training time) yield that state's row;
    `backbone`: that backbone's features are the teacher; `save_dir`: each snapshot's
    model file goes there (a PDN teacher's only: the checkpoint format knows no other)."""
    from engine.train import _batch, _prepare, _restore_or_init, train_step
    started = time.time()
    run, _ = _prepare(cfg, good, None, None, lambda f, m: None)
    if backbone:
        from engine.backbones import BackboneTeacher
        run.model.teacher = BackboneTeacher(backbone, cfg.model.out_channels).to(run.device)
    _restore_or_init(run, None, lambda f, m: None)
    trained_s, step, marks = time.time() - started, 0, list(marks)
    _training_mode(run.model)
    while marks:
        t0 = time.time()
        batch = _batch(run.model, run.train_x, run.train_scaled, run.penalty_images,
                       cfg.model.image_size, run.gen, run.device, cfg.batch_size)
        train_step(run.model, run.opt, run.sched, batch, cfg.p_hard, run.bf16)
        step += 1
        trained_s += time.time() - t0
        if trained_s >= marks[0] * 60:
            row = {"minutes": round(trained_s / 60, 2), "steps": step, **snapshot(run, cfg, good, test)}
            if save_dir and not backbone:
                _save(run, cfg, row, Path(save_dir) / f"{marks[0]:g}min.pt")
            marks.pop(0)
            _training_mode(run.model)                  # snapshot() left it in eval mode
            yield row


def _training_mode(model) -> None:
    model.teacher.eval()
    model.student.train()
    model.autoencoder.train()


def _save(run, cfg, row: dict, path: Path) -> None:
    """The snapshot as a model file: the weights and the calibration `snapshot` set."""
    from dataclasses import asdict
    from engine.model import save_checkpoint
    meta = {"threshold": row["threshold"], "steps": row["steps"], "minutes": row["minutes"],
            "holdout_index": list(run.hold_idx), "n_holdout": len(run.hold_idx),
            "train_config": asdict(cfg), "teacher": cfg.teacher, "bench_curve": row}
    save_checkpoint(run.model, path, meta)


@torch.no_grad()
def snapshot(run, cfg, good: list[np.ndarray], test: TestSet) -> dict:
    """Calibrate the current state as Learn does, then score the test split -> one row."""
    from engine.fast import FoldedEfficientAD
    from engine.train import _calibrate, _HeldOut
    model = run.model.eval()
    hold = _HeldOut([good[i] for i in run.hold_idx], run.hold_x, None)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=run.bf16):
        hold_scores, estimate, synthetic, _ = _calibrate(model, cfg, hold, run.penalty_images,
                                                         run.device, lambda f, m: None)
        if isinstance(model.teacher, torch.nn.Sequential):       # a PDN: the app's folding
            folded = FoldedEfficientAD(model).eval().to(memory_format=torch.channels_last)
            halves, gamma = folded.parts, float(folded.gamma)
        else:
            halves, gamma = _model_halves(model)
        parts = _parts(halves, test.views)                    # (N,2,s,s)
        pick = np.linspace(0, len(run.train_x) - 1, min(TRAIN_SAMPLE, len(run.train_x))).astype(int)
        train_scores = (_parts(halves, run.train_x[pick]).sum(1) + gamma).amax(dim=(1, 2))
        hold_parts = _parts(halves, run.hold_x)               # (H,2,s,s)
        weights = balanced_weights(hold_parts)
        held_out = _held_out_separation(halves, run, cfg, hold.frames, hold_scores, synthetic,
                                        hold_parts, weights)
    row = measure(parts, gamma, test, cfg.model.image_size, estimate.threshold,
                  np.asarray(hold_scores), train_scores.double().numpy(), synthetic, weights)
    return {**row, **balanced_rates(parts, hold_parts, weights, test, cfg), **held_out}


def balanced_rates(parts, hold_parts, weights, test: TestSet, cfg) -> dict:
    """False rejects and misses of the balanced score at the threshold the app's rule sets
    from the held-out good parts' balanced scores (the same target false-reject rate)."""
    from engine.calibration import estimate_threshold
    threshold = estimate_threshold(_weighted_max(hold_parts, weights), cfg.target_frr,
                                   cfg.seed).threshold
    labels = np.array([t != "good" for t in test.types])
    score = _weighted_max(parts, weights)
    return {"balanced_false_reject_rate": float(np.mean(score[~labels] >= threshold)),
            "balanced_miss_rate": float(np.mean(score[labels] < threshold))}


def balanced_weights(hold_parts: torch.Tensor) -> tuple[float, float]:
    """Weights for the ST and AE halves (mean 1) that give each the same spread of its image
    maximum over the held-out good parts (engine.train.map_normalisation's balanced rule,
    applied to a state calibrated with equal weights): measured beside the app's score."""
    from engine.train import half_weights
    peaks = hold_parts.amax(dim=(2, 3)).double().numpy()                  # (H,2)
    return half_weights(peaks[:, 0], peaks[:, 1])


def _held_out_separation(halves, run, cfg, hold_frames, hold_scores, synthetic,
                         good_p: torch.Tensor, weights: tuple[float, float]) -> dict:
    """What good parts alone could tell: AUROC of the synthetic check's defects against the
    held-out good parts, for the whole map (the calibration's own scores) and for each half
    (the check's defects made again: calibration keeps their scores, not their pictures)."""
    from engine.precision import heldout_auroc
    from engine.synthetic import make_defects
    from engine.train import _min_defect_px, _views
    if synthetic is None:
        return {}
    defects = make_defects(hold_frames, cfg.synthetic_per_kind, cfg.seed, run.penalty_images,
                           min_side_px=_min_defect_px(cfg.model, hold_frames[0]))
    bad = torch.stack([_views(d.image, None, cfg.model.image_size)[0] for d in defects])
    bad_p = _parts(halves, bad)
    half = lambda p, k: p[:, k].amax(dim=(1, 2)).double().numpy()
    return {"heldout_auroc": heldout_auroc(np.asarray(hold_scores), np.asarray(synthetic.scores)),
            "heldout_auroc_st": heldout_auroc(half(good_p, 0), half(bad_p, 0)),
            "heldout_auroc_ae": heldout_auroc(half(good_p, 1), half(bad_p, 1)),
            "heldout_auroc_balanced": heldout_auroc(_weighted_max(good_p, weights),
                                                    _weighted_max(bad_p, weights))}


def _weighted_max(parts: torch.Tensor, weights: tuple[float, float]) -> np.ndarray:
    """(N,2,s,s) -> (N,) the maximum of w_st·ST + w_ae·AE (the offset γ changes no ranking)."""
    w = torch.tensor(weights, dtype=parts.dtype).view(1, 2, 1, 1)
    return (parts * w).sum(1).amax(dim=(1, 2)).double().numpy()


def _model_halves(model):
    """-> (u in [0,1] -> (B,2,s,s) the ST and AE halves as FoldedEfficientAD.parts scales
    them, the offset γ), from the model's own maps: for a teacher that does not fold."""
    a_st = 0.05 / float(model.q_st_b - model.q_st_a)
    a_ae = 0.05 / float(model.q_ae_b - model.q_ae_a)
    gamma = -(a_st * float(model.q_st_a) + a_ae * float(model.q_ae_a))

    def halves(u: torch.Tensor) -> torch.Tensor:
        m_st, m_ae = model.raw_maps(model.normalize_image(u))
        return torch.cat([a_st * m_st.float(), a_ae * m_ae.float()], dim=1)
    return halves, gamma


def _parts(halves, views: torch.Tensor, batch: int = 8) -> torch.Tensor:
    out = [halves((views[i:i + batch].float() / 255).contiguous(memory_format=torch.channels_last))
           for i in range(0, len(views), batch)]
    return torch.cat(out).float()


def measure(parts: torch.Tensor, gamma: float, test: TestSet, image_size: int, threshold: float,
            hold_scores: np.ndarray, train_scores: np.ndarray, synthetic,
            weights: tuple[float, float] = (1.0, 1.0)) -> dict:
    """One snapshot's row from the test split's map halves (N,2,s,s), as calibrated."""
    from engine.metrics import au_pro, image_auroc, pixel_auroc
    from engine.model import map_to_image
    from torchvision.transforms.v2 import functional as TF
    combined = parts.sum(1, keepdim=True) + gamma                      # (N,1,s,s): the app's map
    labels = np.array([t != "good" for t in test.types])
    score = combined.amax(dim=(1, 2, 3)).double().numpy()
    smooth = TF.gaussian_blur(combined, kernel_size=5, sigma=1.0).amax(dim=(1, 2, 3)).double().numpy()
    maps, masks = [], []
    for i, mask in enumerate(test.masks):
        if mask is not None:
            maps.append(map_to_image(combined[i:i + 1], image_size, test.shapes[i])[0, 0].numpy())
            masks.append(mask)
    has_pixels = any(m.any() for m in masks)
    return {
        "image_auroc": image_auroc(score, labels),
        "auroc_st_half": image_auroc(parts[:, 0].amax(dim=(1, 2)).double().numpy(), labels),
        "auroc_ae_half": image_auroc(parts[:, 1].amax(dim=(1, 2)).double().numpy(), labels),
        "auroc_smoothed_max": image_auroc(smooth, labels),
        "auroc_balanced": image_auroc(_weighted_max(parts, weights), labels),
        "balanced_weight_ae": weights[1] / weights[0],
        "pixel_auroc": pixel_auroc(maps, masks) if has_pixels else None,
        "au_pro": au_pro(maps, masks) if has_pixels else None,
        "threshold": threshold,
        "false_reject_rate": float(np.mean(score[~labels] >= threshold)),
        "miss_rate": float(np.mean(score[labels] < threshold)),
        "synthetic_miss_rate": synthetic.miss_rate if synthetic is not None else None,
        "mean_score_train": float(train_scores.mean()),
        "mean_score_holdout": float(hold_scores.mean()),
        "mean_score_test_good": float(score[~labels].mean()),
        "mean_score_test_defective": float(score[labels].mean()),
    }


_COLUMNS = (("minutes", "min", "{:.1f}"), ("steps", "steps", "{}"), ("image_auroc", "AUROC", "{:.3f}"),
            ("auroc_st_half", "ST", "{:.3f}"), ("auroc_ae_half", "AE", "{:.3f}"),
            ("auroc_smoothed_max", "smooth", "{:.3f}"), ("auroc_balanced", "balanced", "{:.3f}"),
            ("balanced_weight_ae", "wAE/wST", "{:.2f}"), ("pixel_auroc", "pixAUROC", "{:.3f}"),
            ("au_pro", "AU-PRO", "{:.3f}"), ("false_reject_rate", "FRR", "{:.1%}"),
            ("miss_rate", "miss", "{:.1%}"), ("balanced_false_reject_rate", "bal.FRR", "{:.1%}"),
            ("balanced_miss_rate", "bal.miss", "{:.1%}"), ("synthetic_miss_rate", "synth.miss", "{:.1%}"),
            ("mean_score_train", "train", "{:.3f}"), ("mean_score_holdout", "held", "{:.3f}"),
            ("mean_score_test_good", "good", "{:.3f}"),
            ("mean_score_test_defective", "defect", "{:.3f}"), ("heldout_auroc", "h.AUROC", "{:.3f}"),
            ("heldout_auroc_st", "h.ST", "{:.3f}"), ("heldout_auroc_ae", "h.AE", "{:.3f}"),
            ("heldout_auroc_balanced", "h.bal", "{:.3f}"))


def _header() -> str:
    return " ".join(f"{title:>9}" for _, title, _ in _COLUMNS)


def _line(row: dict) -> str:
    return " ".join(f"{'n/a' if row.get(k) is None else fmt.format(row[k]):>9}" for k, _, fmt in _COLUMNS)
