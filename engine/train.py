"""Training EfficientAD on good images, as in the paper (Batzner et al., Alg. 1 and §3).

train(cfg, images, progress, should_stop) -> TrainResult
  1. split the good images: 10% held out (map quantiles, threshold), the rest trains
  2. teacher frozen; per-channel mean/std of its outputs over the training images
  3. each step: L_ST (hard-feature loss, p_hard=0.999, + penalty on natural images)
                + L_AE (A vs T on a colour-jittered image) + L_STAE (S's 2nd half vs A)
     Adam lr 1e-4, wd 1e-5, lr ×0.1 at 95% of the steps
  4. q_a=0.9 / q_b=0.995 quantiles of M_ST and M_AE on the held-out images
  5. default threshold aimed at a false-reject rate, from the held-out image scores
     (engine/calibration.py), and checked against synthetic defects pasted into the
     held-out parts (engine/synthetic.py)
A resume file is written every `checkpoint_every` steps and on cancel; a killed run resumes.
"""
from __future__ import annotations

import hashlib
import math
import random
import time
import uuid
import warnings
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torchvision.transforms.v2 import functional as TF

from engine.calibration import (DEFAULT_TARGET_FRR, ThresholdEstimate, estimate_threshold,
                                rule_text, valid_target)
from engine.data import list_images, load_images
from engine.device import resolve_device
from engine.errors import InspectError
from engine.model import (TEACHER_CHANNELS, EfficientAD, ModelConfig, load_teacher_state,
                          map_to_image)
from engine.preprocess import frame_to_tensor01, frames_to_tensor
from engine.vocabulary import TRAIN_PRECISIONS, spoken

RESOURCES = Path(__file__).resolve().parent.parent / "resources"
MIN_GOOD_IMAGES = 5
RESUME_FORMAT = "inspect-line/efficientad-resume"
MIN_TRAIN_SIDE = 32                   # pixels: a PDN feature sees 33×33, one-pixel borders aside

Progress = Callable[[float, str], None]
ShouldStop = Callable[[], bool]
Clock = Callable[[], float]           # seconds, monotonic: what a time budget is counted in
# One reduced-precision path's calibration (build it, score the held-out parts and the
# synthetic defects) as a share of the exact model's pass over the same parts. Measured on
# the 2-core EPYC, 761 magnetic_tile images, 256 px: 4 paths took 88 s, the exact pass 86 s
# (torch-bf16 19 s, openvino-bf16 18 s, openvino-int8 with the quantisation 31 s,
# onnxruntime-int8 20 s): 0.26 of it each on average, 0.36 the slowest; a quarter more than
# the slowest, for CPUs that differ.
PATH_CALIBRATION_SHARE = 0.45


class TrainingCancelled(Exception):
    """Raised when should_stop() turned true; the resume file (if any) is up to date."""


@dataclass(frozen=True)
class TrainConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    steps: int = 70_000
    batch_size: int = 1                 # the paper trains with one image per step
    lr: float = 1e-4
    weight_decay: float = 1e-5
    lr_drop_at: float = 0.95            # lr ×0.1 after this fraction of the steps
    p_hard: float = 0.999
    holdout_fraction: float = 0.1       # of the GOOD images, for map quantiles and threshold
    q_a: float = 0.9
    q_b: float = 0.995
    # Each half of the map weighted by how steady its maximum is on held-out good parts
    # (map_normalisation); False: the paper's equal pixel-quantile weights.
    balance_halves: bool = False
    teacher: str = "default"            # "default" (shipped file), a path, or "random"
    penalty: str = "default"            # "default" (shipped folder), a folder, or "none"
    seed: int = 0
    device: str = "auto"
    # "auto": bf16 mixed precision where the hardware has it (CUDA, or a CPU with AVX-512 BF16 /
    # AMX: about 2x faster here), fp32 elsewhere. Weights, optimizer and losses stay fp32.
    precision: str = "auto"             # one of TRAIN_PRECISIONS
    checkpoint_every: int = 500         # steps between resume files
    # A time budget for the whole Learn (setup, steps, calibration); `steps` then only caps
    # it. The learning-rate drop moves with it (at lr_drop_at of the budget).
    minutes: float | None = None
    # The default threshold aims at this share of good parts rejected (engine/calibration.py).
    target_frr: float = DEFAULT_TARGET_FRR
    synthetic_per_kind: int = 16        # synthetic defects of each kind for the check (0: none)
    # Keep the best state of a few held-out checks, not the last (engine/selection.py).
    select_best: bool = True
    # Calibrate the reduced-precision scoring paths this machine runs (engine/precision.py).
    reduced_paths: bool = True

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise InspectError(f"Training needs at least 1 step, not {self.steps}.")
        if self.precision not in TRAIN_PRECISIONS:
            raise InspectError(f"Precision must be {spoken(TRAIN_PRECISIONS)}, not {self.precision!r}.")
        if self.minutes is not None and not (0.0 < self.minutes < 1e6):   # also refuses NaN
            raise InspectError(f"The training time must be a positive number of minutes, not {self.minutes}.")
        if not valid_target(self.target_frr):
            raise InspectError(f"The target false-reject rate must be between 0 and 0.5 (e.g. "
                               f"0.01 for 1%), not {self.target_frr}.")
        if not 0.0 < self.holdout_fraction < 0.5:
            raise InspectError("The held-out fraction of good images must be between 0 and 0.5.")


@dataclass
class TrainResult:
    model: EfficientAD                  # eval mode, on the CPU
    meta: dict                          # threshold, held-out scores, losses, timings, ...


def default_teacher_path(size: str) -> Path:
    return RESOURCES / "teachers" / f"teacher_{size}.pth"


def default_penalty_dir() -> Path:
    return RESOURCES / "penalty"


def default_threshold(holdout_scores: np.ndarray, target_frr: float = DEFAULT_TARGET_FRR) -> float:
    """The threshold aimed at `target_frr` of good parts (see engine/calibration.py)."""
    return estimate_threshold(holdout_scores, target_frr).threshold


def quantile(values: np.ndarray | torch.Tensor, q: float) -> float:
    """Linear-interpolated quantile of any number of elements (torch.quantile stops at 2^24)."""
    if isinstance(values, torch.Tensor):
        values = values.detach().float().cpu().numpy()
    flat = np.asarray(values, dtype=np.float32).ravel()
    if flat.size == 0:
        raise ValueError("quantile of an empty set")
    return float(np.quantile(flat, q))


@torch.no_grad()
def set_map_quantiles(model: EfficientAD, m_st: np.ndarray, m_ae: np.ndarray,
                      q_a: float = 0.9, q_b: float = 0.995, balance: bool = False) -> None:
    """Store the normalisation of held-out raw M_ST and M_AE (N,1,s,s) in the model: the
    q_a / q_b quantiles, with `balance` the q_b moved as `map_normalisation` says."""
    for (a_, b_), (qa, qb) in zip(((model.q_st_a, model.q_st_b), (model.q_ae_a, model.q_ae_b)),
                                  map_normalisation(m_st, m_ae, q_a, q_b, balance)):
        a_.fill_(qa)
        b_.fill_(qb)


def map_normalisation(m_st, m_ae, q_a: float, q_b: float, balance: bool
                      ) -> tuple[tuple[float, float], tuple[float, float]]:
    """-> ((a, b) for M_ST, (a, b) for M_AE): each half maps as 0.1·(M − a)/(b − a).

    The paper's a, b are the q_a, q_b quantiles of the half's held-out pixels. That weighs
    the halves alike pixel by pixel, but the image score is the map's maximum: a half whose
    maximum scatters over good parts (an autoencoder that has not settled in a CPU budget,
    README: "What more training buys") then decides the ranking. `balance` rescales each
    half so that its image maxima over the held-out good parts spread alike (weights
    1/spread, mean 1, folded into b): a steady half counts more, a scattered one less, and
    two halves that scatter alike keep the paper's map."""
    bounds = []
    for m in (m_st, m_ae):
        a, b = quantile(m, q_a), quantile(m, q_b)
        bounds.append((a, b if b - a >= 1e-9 else a + 1e-6))  # a constant map divides by zero
    if not balance or len(m_st) < 3:
        return bounds[0], bounds[1]
    peaks = [0.1 * (np.asarray(m, np.float64).reshape(len(m), -1).max(1) - a) / (b - a)
             for m, (a, b) in zip((m_st, m_ae), bounds)]
    w_st, w_ae = half_weights(peaks[0], peaks[1])
    (a0, b0), (a1, b1) = bounds
    return (a0, a0 + (b0 - a0) / w_st), (a1, a1 + (b1 - a1) / w_ae)


def half_weights(peaks_st: np.ndarray, peaks_ae: np.ndarray) -> tuple[float, float]:
    """Each half's image maxima over the held-out good parts (N,) -> its weight: the inverse
    of their spread (standard deviation), the two weights' mean 1."""
    inverse = np.array([1.0 / max(float(np.std(p, ddof=1)), 1e-9) for p in (peaks_st, peaks_ae)])
    w = inverse / inverse.mean()
    return float(w[0]), float(w[1])


def hard_feature_loss(distance: torch.Tensor, p_hard: float) -> torch.Tensor:
    """Mean of the distances at or above their p_hard quantile (top (1-p_hard) share).

    topk instead of torch.quantile: exact same set up to rounding of the count, and it
    works above torch.quantile's 2^24-element limit (large input sizes).
    """
    flat = distance.flatten()
    k = max(1, int(math.ceil((1.0 - p_hard) * flat.numel())))
    return flat.topk(k, sorted=False).values.mean()


def color_jitter(x: torch.Tensor, gen: random.Random) -> torch.Tensor:
    """One of brightness / contrast / saturation, factor in [0.8, 1.2], as the authors do."""
    factor = gen.uniform(0.8, 1.2)
    kind = gen.randrange(3)
    if kind == 0:
        return TF.adjust_brightness(x, factor)
    if kind == 1:
        return TF.adjust_contrast(x, factor)
    return TF.adjust_saturation(x, factor)


def use_bf16(precision: str, device: torch.device) -> bool:
    if precision == "fp32":
        return False
    if device.type == "cuda":
        ok = torch.cuda.is_bf16_supported()
    else:
        ok = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    if precision == "bf16" and not ok:
        raise InspectError(f"bf16 was asked for but {device} does not support it; use fp32.")
    return ok


MIN_HOLDOUT = 20      # held-out parts wanted for the threshold's tail, when a quarter allows


def _split(n: int, fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """-> (training, held-out) indices. `fraction` of the parts are held out, but at least
    MIN_HOLDOUT while that is under a quarter of them: with the 4 parts that 10% of a
    40-frame Learn gives, a 1% threshold rejected 5-9% of good parts on the dev sets (20
    held out: 2-3%); EfficientAD learns from 30 parts nearly as well as from 36."""
    order = np.random.default_rng(seed).permutation(n).tolist()
    n_hold = max(2, int(round(n * fraction)), min(MIN_HOLDOUT, n // 4))   # 2: one is no statistic
    return sorted(order[n_hold:]), sorted(order[:n_hold])


def _fingerprint(images: list[np.ndarray]) -> str:
    h = hashlib.sha256()
    for im in images:
        h.update(str(im.shape).encode())
        h.update(im[:: max(1, im.shape[0] // 16), :: max(1, im.shape[1] // 16)].tobytes())
    return h.hexdigest()[:16]


def _load_penalty(cfg: TrainConfig, progress: Progress) -> list[np.ndarray]:
    if cfg.penalty == "none":
        return []
    folder = default_penalty_dir() if cfg.penalty == "default" else Path(cfg.penalty)
    paths = list_images(folder) if folder.is_dir() else []
    images, _ = load_images(paths, lambda p, msg: progress(0.0, f"skipped penalty image: {msg}"))
    if not images:
        raise InspectError(
            f"No natural images for the student's penalty term in {folder}. Point --penalty to a "
            "folder of ordinary photos, or pass --penalty none (less robust to unusual parts).")
    return images


def _penalty_batch(images: list[np.ndarray], s: int, gen: random.Random, device) -> torch.Tensor:
    """Authors' penalty transform: resize to 2S, random grayscale (p=0.3), centre crop S."""
    im = images[gen.randrange(len(images))]
    x = frames_to_tensor([im], 2 * s, device)[:, :, s // 2: s // 2 + s, s // 2: s // 2 + s]
    if gen.random() < 0.3:
        x = TF.rgb_to_grayscale(x, num_output_channels=3)
    return x


def _setup_teacher(model: EfficientAD, cfg: TrainConfig, progress: Progress) -> str:
    if cfg.teacher == "random":
        progress(0.0, "WARNING: random teacher: results will be far below the paper's. "
                      "Use the shipped teacher or --teacher FILE for real inspection.")
        return "random"
    path = default_teacher_path(cfg.model.size) if cfg.teacher == "default" else Path(cfg.teacher)
    if not path.is_file():
        raise InspectError(
            f"Teacher file {path} not found. Pass --teacher FILE (e.g. the authors' "
            f"teacher_{cfg.model.size}.pth), or --teacher random to train without a pretrained "
            "teacher (results will be far below the paper's).")
    load_teacher_state(model.teacher, path)
    return str(path)


@torch.no_grad()
def _teacher_stats(model: EfficientAD, train_x: torch.Tensor, device, bf16: bool = False) -> None:
    """Per-channel mean/std of T's raw outputs over the training images.

    One pass with float64 sums of x and x²: T's outputs are O(1), so float64 loses nothing
    against a two-pass variance and the teacher runs once per image instead of twice.
    """
    c = model.config.out_channels
    total = torch.zeros(c, dtype=torch.float64, device=device)
    sq = torch.zeros(c, dtype=torch.float64, device=device)
    count = 0
    for i in range(0, len(train_x), 8):
        x = model.normalize_image(train_x[i:i + 8].to(device).float() / 255)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            t = model.teacher(x)                                        # (b,384,s,s)
        t = t.double()
        total += t.sum(dim=(0, 2, 3))
        sq += (t * t).sum(dim=(0, 2, 3))
        count += t.shape[0] * t.shape[2] * t.shape[3]
    mean = total / count
    std = (sq / count - mean * mean).clamp_min(0).sqrt().clamp_min(1e-6)
    model.teacher_mean.copy_(mean.float().view(1, c, 1, 1))
    model.teacher_std.copy_(std.float().view(1, c, 1, 1))


@torch.no_grad()
def raw_holdout_maps(model: EfficientAD, hold_x: torch.Tensor, device) -> tuple[np.ndarray, np.ndarray]:
    st, ae = [], []
    for i in range(0, len(hold_x), 8):
        x = model.normalize_image(hold_x[i:i + 8].to(device).float() / 255)
        m_st, m_ae = model.raw_maps(x)
        st.append(m_st.float().cpu().numpy())
        ae.append(m_ae.float().cpu().numpy())
    return np.concatenate(st), np.concatenate(ae)


def scores_from_maps(model: EfficientAD, m_st: np.ndarray, m_ae: np.ndarray) -> np.ndarray:
    """Image scores from raw map halves (N,1,s,s) as the scorer makes them (combined with the
    model's quantiles, resized to the input, maximum): the images that gave the quantiles
    need no second pass through the networks."""
    s = model.config.image_size
    dev = model.q_st_a.device
    combined = model.combine(torch.from_numpy(m_st).to(dev), torch.from_numpy(m_ae).to(dev))
    return map_to_image(combined, s, (s, s)).amax(dim=(1, 2, 3)).double().cpu().numpy()


@torch.no_grad()
def _holdout_scores(model: EfficientAD, hold_x: torch.Tensor, device) -> np.ndarray:
    scores = []
    s = model.config.image_size
    for i in range(0, len(hold_x), 8):
        x = model.normalize_image(hold_x[i:i + 8].to(device).float() / 255)
        m = map_to_image(model(x), s, (s, s))
        scores.append(m.amax(dim=(1, 2, 3)).cpu().numpy())
    return np.concatenate(scores).astype(np.float64)


def _save_resume(path: Path, step: int, model, opt, sched, gen, cfg, fingerprint, losses,
                 budget: "_Budget | None" = None, selector=None) -> None:
    state = {
        "budget_s": budget.seconds if budget and budget.seconds is not None else 0.0,
        "elapsed_s": budget.used() if budget else 0.0,
        "format": RESUME_FORMAT, "step": step, "config": asdict(cfg), "fingerprint": fingerprint,
        "student": model.student.state_dict(), "autoencoder": model.autoencoder.state_dict(),
        "teacher": model.teacher.state_dict(),
        "teacher_mean": model.teacher_mean, "teacher_std": model.teacher_std,
        "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
        "torch_rng": torch.get_rng_state(), "py_rng": gen.getstate(), "losses": losses,
    }
    if selector is not None:                  # the best state so far (engine/selection.py)
        state["selection"] = selector.to_state()
    tmp = path.with_name(path.name + ".tmp")
    try:
        torch.save(state, tmp)
        tmp.replace(path)
    except OSError as e:                      # disk full, folder removed or read-only
        raise InspectError(f"Cannot write the resume file {path} ({e.strerror or e}); free disk "
                           "space or train to a folder that can be written.") from e


# -- reading a resume file: anything on disk may be garbage (truncated, bit-flipped, another
# program's file); every problem becomes one InspectError before the first training step.
_PLAIN = (str, int, float, bool, type(None))
_RESUME_TYPES = {"step": int, "config": dict, "fingerprint": str, "student": dict,
                 "autoencoder": dict, "teacher": dict, "teacher_mean": torch.Tensor,
                 "teacher_std": torch.Tensor, "optimizer": dict, "scheduler": dict,
                 "torch_rng": torch.Tensor, "py_rng": tuple, "losses": list,
                 "budget_s": float, "elapsed_s": float}


def _resume_error(path: Path, problem: str) -> InspectError:
    return InspectError(f"{path} is not a resume file this app can use ({problem}); delete it "
                        "to start training afresh, or choose another output file.")


def _one_line(e: BaseException) -> str:
    """An exception as a short single line (torch's messages span lines)."""
    return f"{type(e).__name__}: {' '.join(str(e).split())[:160]}"


def _is_plain(value) -> bool:
    """Only str/number/None in (nested) lists, tuples and dicts: safe to compare with ==."""
    if isinstance(value, (list, tuple)):
        return all(_is_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _is_plain(v) for k, v in value.items())
    return isinstance(value, _PLAIN)


def _outline_problem(state) -> str | None:
    """What is wrong with the top level of a loaded resume dict, or None."""
    if not isinstance(state, dict):
        return f"it holds a {type(state).__name__}, not a resume dict"
    if not isinstance(state.get("format"), str) or state["format"] != RESUME_FORMAT:
        return "it is not a resume file of this app"
    for key, kind in _RESUME_TYPES.items():
        if key not in state:
            return f"'{key}' is missing"
        if not isinstance(state[key], kind) or (kind is int and isinstance(state[key], bool)):
            return f"'{key}' is a {type(state[key]).__name__}, not a {kind.__name__}"
    if not all(0.0 <= state[k] < 1e9 for k in ("budget_s", "elapsed_s")):   # NaN fails too
        return "its time budget is not a number of seconds"
    if not _is_plain(state["config"]):
        return "its training settings are not plain values"
    losses = state["losses"]
    if not all(isinstance(row, list) and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                             for v in row) for row in losses):
        return "its loss history is not rows of numbers"
    return None


def read_resume(path: Path, cfg: TrainConfig, fingerprint: str) -> dict:
    """The resume file of this run (these settings, these images), checked at its top level;
    InspectError for anything else. Loaded with weights_only: a file never runs code."""
    try:
        with warnings.catch_warnings():   # torch warns about odd pickles it then refuses anyway
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:    # torch raises many kinds for garbage (pickle, zip, EOF, unicode...)
        raise _resume_error(path, f"it cannot be read: {_one_line(e)}") from e
    return check_resume(path, state, cfg, fingerprint)


def check_resume(path: Path, state, cfg: TrainConfig, fingerprint: str) -> dict:
    """`state` (loaded from `path`) if it is a resume dict of this run, else InspectError."""
    problem = _outline_problem(state)
    if problem:
        raise _resume_error(path, problem)
    if _comparable(state["config"]) != _comparable(cfg) or state["fingerprint"] != fingerprint:
        raise InspectError(
            f"{path} belongs to a training run with other settings or images; delete "
            "it to start afresh.")
    # step == steps: training had finished but the model was not saved yet (the file stays
    # until the caller has saved it); resuming then only calibrates again
    if not 0 <= state["step"] <= cfg.steps:
        raise _resume_error(path, f"step {state['step']} is outside 0..{cfg.steps}")
    return state


def _tensors_problem(name: str, got: dict, want: dict) -> str | None:
    """`got` must hold exactly `want`'s tensors, same shapes and dtypes, all finite."""
    if set(got) != set(want):
        return f"'{name}' holds other weights than this model's"
    for key, ref in want.items():
        t = got[key]
        if not isinstance(t, torch.Tensor) or t.layout != torch.strided or t.shape != ref.shape \
                or t.dtype != ref.dtype:
            return f"'{name}.{key}' has the wrong type or shape"
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            return f"'{name}.{key}' holds values that are not finite"
    return None


def _same_settings(got, want: dict, free: tuple[str, ...] = ()) -> bool:
    """`got` has `want`'s keys, plain values of the same types, equal except the `free` keys
    (which change while training: the learning rate after its drop, the step counters)."""
    return (isinstance(got, dict) and set(got) == set(want)
            and all(_is_plain(got[k]) and type(got[k]) is type(v) and (k in free or got[k] == v)
                    for k, v in want.items()))


def _optimizer_problem(got: dict, opt: torch.optim.Optimizer, step: int) -> str | None:
    """Adam's saved state against this optimizer: same groups and settings, moments shaped
    like the parameters (a wrong shape would only fail inside the first step, a negative
    second moment or step count would turn the loss into NaN)."""
    want = opt.state_dict()
    groups, state = got.get("param_groups"), got.get("state")
    if not isinstance(groups, list) or not isinstance(state, dict) or len(groups) != len(want["param_groups"]):
        return "'optimizer' is not this optimizer's state"
    for g, w in zip(groups, want["param_groups"]):
        if not _same_settings(g, w, free=("lr",)) or not 0 < g["lr"] < math.inf:
            return "'optimizer' has other parameter groups or settings"
    params = [p for group in opt.param_groups for p in group["params"]]
    for pid, entry in state.items():
        if not isinstance(pid, int) or not 0 <= pid < len(params) or not isinstance(entry, dict) \
                or set(entry) != {"step", "exp_avg", "exp_avg_sq"}:
            return "'optimizer' holds state for unknown parameters"
        ref = params[pid]
        ref_state = {"step": torch.zeros(()), "exp_avg": ref, "exp_avg_sq": ref}   # shape, dtype
        problem = _tensors_problem(f"optimizer.{pid}", entry, ref_state)
        if problem:
            return problem
        if float(entry["step"]) != step or not bool((entry["exp_avg_sq"] >= 0).all()):
            return f"'optimizer.{pid}' does not fit step {step}"
    return None


def _scheduler_problem(got: dict, sched, step: int) -> str | None:
    if not _same_settings(got, sched.state_dict(), free=("last_epoch", "_step_count", "_last_lr")) \
            or got["last_epoch"] != step:
        return "'scheduler' is not this scheduler's state"
    return None


def _rng_problem(torch_rng: torch.Tensor, py_rng: tuple) -> str | None:
    """Both generator states tried on throwaway generators (torch's own state put back):
    their validity rules are the generators' business, not ours to copy."""
    ref = torch.get_rng_state()
    if torch_rng.shape != ref.shape or torch_rng.dtype != ref.dtype:
        return "'torch_rng' is not a random generator state"
    try:
        torch.set_rng_state(torch_rng)
    except RuntimeError:
        return "'torch_rng' is not a random generator state"
    finally:
        torch.set_rng_state(ref)
    try:
        random.Random().setstate(py_rng)
    except (TypeError, ValueError, OverflowError):
        return "'py_rng' is not a random generator state"
    if not (py_rng[-1] is None or isinstance(py_rng[-1], float)):   # setstate lets any gauss_next in
        return "'py_rng' is not a random generator state"
    return None


def make_optimizer(model: EfficientAD, cfg: TrainConfig):
    """-> (Adam over S and A, lr ×0.1 at lr_drop_at of the steps): what a resume file restores."""
    opt = torch.optim.Adam(list(model.student.parameters()) + list(model.autoencoder.parameters()),
                           lr=cfg.lr, weight_decay=cfg.weight_decay)
    # Under a time budget the drop is made by _Budget when its time comes, not by steps.
    drop_step = 2 ** 62 if cfg.minutes is not None else max(1, int(cfg.lr_drop_at * cfg.steps))
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=drop_step, gamma=0.1)
    return opt, sched


def restore_resume(path: Path, state: dict, model: EfficientAD, opt, sched, gen: random.Random
                   ) -> tuple[int, list]:
    """Check `state` (from read_resume) against this model and optimizer, then load it into
    them -> (step, losses). Everything is checked before anything is loaded."""
    problem = (_tensors_problem("student", state["student"], model.student.state_dict())
               or _tensors_problem("autoencoder", state["autoencoder"], model.autoencoder.state_dict())
               or _tensors_problem("teacher", state["teacher"], model.teacher.state_dict())
               or _tensors_problem("teacher statistics", {"mean": state["teacher_mean"], "std": state["teacher_std"]},
                                   {"mean": model.teacher_mean, "std": model.teacher_std})
               or _optimizer_problem(state["optimizer"], opt, state["step"])
               or _scheduler_problem(state["scheduler"], sched, state["step"])
               or _rng_problem(state["torch_rng"], state["py_rng"]))
    if not problem and not bool((state["teacher_std"] > 0).all()):
        problem = "'teacher_std' is not positive"
    if problem:
        raise _resume_error(path, problem)
    try:
        model.student.load_state_dict(state["student"])
        model.autoencoder.load_state_dict(state["autoencoder"])
        model.teacher.load_state_dict(state["teacher"])
        model.teacher_mean.copy_(state["teacher_mean"])
        model.teacher_std.copy_(state["teacher_std"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["torch_rng"])
        gen.setstate(state["py_rng"])
    except (RuntimeError, ValueError, TypeError, KeyError, IndexError, OverflowError) as e:
        # the checks above should leave nothing for these; should one slip through, the
        # user still gets the sentence (and the cause is chained for a bug report)
        raise _resume_error(path, _one_line(e)) from e
    return state["step"], list(state["losses"])


def _comparable(cfg: TrainConfig | dict) -> dict:
    """A config as a dict without what may change between a run and its resume."""
    d = dict(asdict(cfg) if isinstance(cfg, TrainConfig) else cfg)
    for k in ("device", "checkpoint_every", "target_frr", "synthetic_per_kind",   # calibration only
              "select_best", "reduced_paths"):
        d.pop(k, None)
    if isinstance(d.get("model"), dict):      # a file of an earlier version: its defaults filled in
        try:
            d["model"] = asdict(ModelConfig.from_dict(d["model"]))
        except InspectError:
            pass
    return d


def train(cfg: TrainConfig, images: list[np.ndarray], progress: Progress = lambda f, m: None,
          should_stop: ShouldStop = lambda: False, resume_path: str | Path | None = None,
          names: list[str] | None = None, clock: Clock = time.monotonic) -> TrainResult:
    """Learn good parts. `images` are H×W×3 uint8 RGB good images (any sizes); `names`
    (e.g. their files), when given, name an image the user must fix in error messages.
    `clock` counts a time budget (cfg.minutes); tests give one they move themselves."""
    if names is not None and len(names) != len(images):
        raise ValueError(f"{len(names)} names for {len(images)} images")
    if cfg.model.kind == "quick":             # one pass over the images, no steps to resume
        from engine.quick import learn
        return learn(cfg, images, progress, should_stop, names)
    try:
        return _train(cfg, images, progress, should_stop, Path(resume_path) if resume_path else None,
                      names, clock)
    except torch.OutOfMemoryError as e:
        raise InspectError(
            f"Training ran out of memory on {cfg.device} ({str(e).splitlines()[0][:120]}). Use a "
            "smaller model input size or the CPU, or close other programs using the GPU.") from e
    except MemoryError as e:
        raise InspectError("Training ran out of memory. Use fewer or smaller images, or a "
                           "smaller model input size.") from e


def _check_images(images: list[np.ndarray], names: list[str] | None) -> None:
    if len(images) < MIN_GOOD_IMAGES:
        raise InspectError(
            f"Learning needs at least {MIN_GOOD_IMAGES} good images (10% are held out to set the "
            f"threshold); got {len(images)}. Capture or import more good parts.")
    for i, im in enumerate(images):
        name = f"Good image {names[i]}" if names else f"Good image {i}"
        if not isinstance(im, np.ndarray) or im.dtype != np.uint8 or im.ndim != 3 or im.shape[2] != 3:
            raise InspectError(f"{name} is not H×W×3 uint8 RGB ({getattr(im, 'dtype', type(im))}, "
                               f"{getattr(im, 'shape', '?')}).")
        if min(im.shape[:2]) < MIN_TRAIN_SIDE:
            raise InspectError(f"{name} is only {im.shape[1]}×{im.shape[0]} pixels; at least "
                               f"{MIN_TRAIN_SIDE}×{MIN_TRAIN_SIDE} is needed: remove it or use a larger picture.")


def _train(cfg, images, progress, should_stop, resume_path, names=None,
           clock: Clock = time.monotonic) -> TrainResult:
    """validate and prepare -> restore or initialise -> steps -> calibrate -> metadata."""
    started, budget_started = time.time(), clock()
    run, state = _prepare(cfg, images, names, resume_path, progress)
    from engine.selection import make_selector
    s = run.cfg.model.image_size
    hold_frames = [images[i] for i in run.hold_idx]
    run.selector = make_selector(run.cfg, hold_frames, run.hold_x, run.penalty_images,
                                 lambda im: _views(im, None, s)[0],
                                 _min_defect_px(run.cfg.model, hold_frames[0]), run.bf16)
    _restore_or_init(run, state, progress)
    run.budget = _make_budget(run, state, budget_started, clock, hold_frames, progress)
    del state                                 # a second copy of every weight
    _steps(run, should_stop, progress)
    selected = run.done if run.selector is None else run.selector.restore_best(run.model, run.done)
    if selected != run.done:
        progress(0.97, f"kept the state of step {selected}: it set synthetic defects furthest "
                       "apart from the held-out good parts")
    progress(0.97, "map normalisation on held-out good images")
    run.model.eval()
    hold = _HeldOut([images[i] for i in run.hold_idx], run.hold_x,
                    [run.layouts[i] for i in run.hold_idx] if run.layouts else None)
    hold_scores, estimate, synthetic, paths = _calibrate(run.model, run.cfg, hold, run.penalty_images,
                                                         run.device, progress)
    run.model.cpu()
    meta = _metadata(run, hold_scores, estimate, synthetic, paths, started)
    meta["selected_step"] = selected
    meta["selection"] = run.selector.history if run.selector is not None else []
    progress(1.0, f"done: threshold {estimate.threshold:.4f}")
    return TrainResult(run.model, meta)


@dataclass(eq=False)
class _Run:
    """What one training run works on: the training thread's own state, never shared."""
    cfg: TrainConfig
    device: torch.device
    gen: random.Random                 # every random choice of the steps (resumable)
    layouts: list | None               # per image, with tiling or an ROI
    fingerprint: str
    model: EfficientAD
    teacher_source: str
    penalty_images: list[np.ndarray]
    train_idx: list[int]
    hold_idx: list[int]
    train_x: torch.Tensor              # (N,3,S,S) uint8 global views, on the CPU
    hold_x: torch.Tensor
    train_scaled: list | None          # with tiling: each training ROI at tile scale
    bf16: bool
    opt: torch.optim.Optimizer
    sched: object
    resume_path: Path | None
    start_step: int = 0
    done: int = 0
    losses: list = field(default_factory=list)
    budget: "_Budget | None" = None
    resumed: bool = False
    selector: object = None            # engine.selection.Selector, or None


def _prepare(cfg: TrainConfig, images, names, resume_path, progress) -> tuple[_Run, dict | None]:
    """Check the inputs and the resume file (before anything slow), build the model, the
    split and every image's views once -> (run, resume state or None)."""
    _check_images(images, names)
    if resume_path is not None and resume_path.exists() and not resume_path.is_file():
        raise InspectError(f"The resume file {resume_path} is a folder; move it away or choose "
                           "another output file.")
    device = resolve_device(cfg.device)
    torch.manual_seed(cfg.seed)
    layouts = None
    if cfg.model.uses_layout:
        cfg, layouts = _with_layout(cfg, images)
    fingerprint = _fingerprint(images)
    resumed = resume_path is not None and resume_path.is_file()
    state = read_resume(resume_path, cfg, fingerprint) if resumed else None

    model = EfficientAD(cfg.model)
    teacher_source = _setup_teacher(model, cfg, progress)
    penalty_images = _load_penalty(cfg, progress)
    train_idx, hold_idx = _split(len(images), cfg.holdout_fraction, cfg.seed)
    progress(0.0, f"{len(train_idx)} training images, {len(hold_idx)} held out")
    # Each image's global view (the whole frame or ROI at S×S), once, as uint8 on the CPU;
    # with tiling also the ROI at tile scale, from which random tiles are cut each step.
    views = [_views(im, layouts[i] if layouts else None, cfg.model.image_size)
             for i, im in enumerate(images)]
    all_x = torch.stack([v[0] for v in views])
    model.to(device).to(memory_format=torch.channels_last)
    opt, sched = make_optimizer(model, cfg)
    run = _Run(cfg, device, random.Random(cfg.seed), layouts, fingerprint, model, teacher_source,
               penalty_images, train_idx, hold_idx, all_x[train_idx], all_x[hold_idx],
               [views[i][1] for i in train_idx] if cfg.model.tiling else None,
               use_bf16(cfg.precision, device), opt, sched, resume_path, resumed=resumed)
    return run, state


def _restore_or_init(run: _Run, state: dict | None, progress) -> None:
    """A resumed run gets its weights, optimizer, random state and selection checks back; a
    new one measures the teacher's channel statistics."""
    if state is not None:
        run.start_step, run.losses = restore_resume(run.resume_path, state, run.model, run.opt,
                                                    run.sched, run.gen)
        if run.selector is not None and "selection" in state:   # files before it have none
            problem = run.selector.load_state(state["selection"], run.model)
            if problem:
                raise _resume_error(run.resume_path, problem)
        progress(run.start_step / run.cfg.steps, f"resumed at step {run.start_step}")
        return
    progress(0.0, "teacher statistics")
    stats_x = run.train_x
    if run.train_scaled is not None:          # tiles are what the ST half sees most
        s = run.cfg.model.image_size
        tiles = [_random_tile(run.train_scaled[i % len(run.train_scaled)], s, run.gen)
                 for i in range(4 * len(run.train_scaled))]
        stats_x = torch.cat([run.train_x, torch.stack(tiles)])
    _teacher_stats(run.model, stats_x, run.device, run.bf16)


def _make_budget(run: _Run, state: dict | None, started: float, clock: Clock,
                 hold_frames: list[np.ndarray], progress) -> "_Budget":
    """A resumed run's budget as its file left it; a new one's: the minutes less what came
    before the steps (`started`: clock() when Learn began) and what follows them, with a
    warning in words when that leaves under a quarter of the minutes to train."""
    cfg = run.cfg
    if state is not None:
        return _Budget(cfg, state["budget_s"] or None, state["elapsed_s"], clock)
    if cfg.minutes is None:
        return _Budget(cfg, None, clock=clock)
    after_s = _calibration_seconds(run, hold_frames, clock)
    budget = _Budget(cfg, max(1.0, cfg.minutes * 60.0 - (clock() - started) - after_s), clock=clock)
    if budget.seconds < 0.25 * 60.0 * cfg.minutes:
        progress(0.0, f"WARNING: checking the model after training takes about "
                      f"{after_s / 60:.1f} of the {cfg.minutes:g} minutes here, which "
                      f"leaves {budget.seconds / 60:.1f} min for training: give Learn more time.")
    return budget


def _calibrates_paths(cfg: TrainConfig, layouts) -> bool:
    """Whether calibration also calibrates the reduced-precision paths (engine/precision.py):
    they are checked on synthetic defects, and score whole frames only."""
    return cfg.reduced_paths and cfg.synthetic_per_kind > 0 and layouts is None


def _calibration_seconds(run: _Run, hold_frames: list[np.ndarray], clock: Clock) -> float:
    """What comes after the budget's end, in `clock` seconds: the exact model's maps of a few
    held-out parts timed now (after one untimed part, which pays for the kernels' set-up),
    times the parts scored then (the last selection check, which falls due at the end, then
    calibration's held-out parts and synthetic defects), plus each reduced-precision path's
    share of calibration (PATH_CALIBRATION_SHARE)."""
    cfg, k = run.cfg, min(4, len(run.hold_idx))

    def probe(n: int) -> None:
        if run.layouts is None:
            raw_holdout_maps(run.model, run.hold_x[:n], run.device)
        else:
            layouts = [run.layouts[i] for i in run.hold_idx[:n]]
            _layout_holdout_maps(run.model, layouts, hold_frames[:n], run.device)
    probe(1)
    t = clock()
    probe(k)
    per_part = (clock() - t) / k
    from engine.synthetic import KINDS
    n_parts = len(run.hold_idx) + len(KINDS) * cfg.synthetic_per_kind
    last_check = 0 if run.selector is None else len(run.selector.good_x) + len(run.selector.bad_x)
    n_paths = 0
    if _calibrates_paths(cfg, run.layouts):
        from engine.precision import reduced_paths_here
        n_paths = len(reduced_paths_here(run.device))
    return per_part * (last_check + n_parts * (1.0 + PATH_CALIBRATION_SHARE * n_paths))


def train_step(model: EfficientAD, opt, sched, batch, p_hard: float, bf16: bool) -> list[float]:
    """One optimisation step on batch = (x_st, x_ae, x_pen or None) -> the four loss terms
    [L_hard, L_penalty, L_AE, L_STAE]. FloatingPointError, before any weight changes, when
    the loss is not finite."""
    parts = _losses(model, *batch, p_hard, bf16)
    loss = sum(parts)
    if not torch.isfinite(loss):
        raise FloatingPointError(f"loss {loss.item()}")
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    sched.step()
    return [p.item() for p in parts]


def _steps(run: _Run, should_stop, progress) -> None:
    """The training steps until the step count or the time budget is spent; a resume file
    every checkpoint_every steps, on cancel, and at the end."""
    cfg, model, budget = run.cfg, run.model, run.budget
    model.teacher.eval()
    model.student.train()
    model.autoencoder.train()
    t0, window, run.done = time.time(), [], run.start_step
    for step in range(run.start_step, cfg.steps):
        # Before the stop test too: a selection check can carry the time from under the
        # drop past the end, and the run must still end at the lowered rate it has reached.
        budget.drop_lr(run.opt)
        if budget.over():
            break
        if should_stop():
            _checkpoint(run, step)
            raise TrainingCancelled(f"training stopped at step {step} of {cfg.steps}")
        batch = _batch(model, run.train_x, run.train_scaled, run.penalty_images,
                       cfg.model.image_size, run.gen, run.device, cfg.batch_size)
        try:
            window.append(train_step(model, run.opt, run.sched, batch, cfg.p_hard, run.bf16))
        except FloatingPointError as e:
            raise InspectError(f"Training diverged at step {step} ({e}). Check the good images "
                               "(all black or blank?) or lower the step count.") from None
        budget.drop_lr(run.opt)
        run.done = done = step + 1
        if run.selector is not None and run.selector.due(budget.fraction(done, cfg.steps)):
            run.selector.check(model, done, run.device)
        if done % 50 == 0 or done == cfg.steps or budget.over():
            mean = np.mean(window, axis=0).tolist()          # hard, penalty, ae, stae
            run.losses.append([done] + mean)
            window = []
            rate = (done - run.start_step) / max(time.time() - t0, 1e-9)
            progress(budget.fraction(done, cfg.steps) * 0.97,
                     f"step {done}/{budget.plan(cfg.steps)} loss {sum(mean):.4f} ({rate:.1f} steps/s)")
        if done % cfg.checkpoint_every == 0:
            _checkpoint(run, done)
    if run.selector is not None and (not run.selector.history or
                                     run.selector.history[-1][0] != run.done):
        run.selector.check(model, run.done, run.device)     # the last state is a candidate too
    # The last step is saved too: the resume file stays until the caller has saved the
    # model, so a failure in calibration or saving never costs the training.
    _checkpoint(run, run.done)


def _checkpoint(run: _Run, step: int) -> None:
    if run.resume_path is not None:
        _save_resume(run.resume_path, step, run.model, run.opt, run.sched, run.gen, run.cfg,
                     run.fingerprint, run.losses, run.budget, run.selector)


def _metadata(run: _Run, hold_scores, estimate: ThresholdEstimate, synthetic, paths: dict,
              started: float) -> dict:
    """What the model file says about how it was made (a plain dict: the checkpoint rule)."""
    cfg = run.cfg
    return {
        "model_id": uuid.uuid4().hex[:12],
        "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **_threshold_meta(cfg, hold_scores, estimate, synthetic, paths),
        "n_train": len(run.train_idx), "n_holdout": len(run.hold_idx),
        "holdout_index": list(run.hold_idx),
        "teacher": run.teacher_source, "penalty": cfg.penalty,
        "penalty_images": len(run.penalty_images),
        "steps": run.done, "steps_planned": cfg.steps, "minutes": cfg.minutes,
        "stopped_by": "time" if run.done < cfg.steps else "steps",
        "resumed": run.resumed, "precision": "bf16" if run.bf16 else "fp32",
        "losses": run.losses, "train_seconds": time.time() - started, "device": str(run.device),
    }


@dataclass
class _Budget:
    """When the steps stop under a time budget, and when the learning rate drops."""
    cfg: TrainConfig
    seconds: float | None          # for the steps alone; None: no time budget
    elapsed: float = 0.0           # step seconds of earlier runs (a resumed training)
    clock: Clock = time.monotonic
    t0: float | None = None        # clock() when this run's steps began

    def __post_init__(self) -> None:
        if self.t0 is None:
            self.t0 = self.clock()

    def used(self) -> float:
        return self.elapsed + self.clock() - self.t0

    def over(self) -> bool:
        return self.seconds is not None and self.used() >= self.seconds

    def fraction(self, done: int, steps: int) -> float:
        by_steps = done / steps
        return by_steps if self.seconds is None else min(1.0, max(by_steps, self.used() / self.seconds))

    def plan(self, steps: int) -> str:
        if self.seconds is None:
            return f"{steps}"
        return f"{steps} at most, {self.used() / 60:.1f} of {self.seconds / 60:.1f} min"

    def drop_lr(self, opt) -> None:
        """lr ×0.1 once lr_drop_at of the budget has passed (the step schedule's rule, in time)."""
        if self.seconds is not None and self.used() >= self.cfg.lr_drop_at * self.seconds:
            for g in opt.param_groups:
                g["lr"] = min(g["lr"], 0.1 * self.cfg.lr)


def _batch(model, train_x, train_scaled, penalty_images, s: int, gen: random.Random, device,
           batch_size: int):
    """One step's inputs -> (x_st, x_ae, x_pen or None), normalised, (B,3,S,S) each.
    The autoencoder always learns from the global view, colour-jittered; the student's ST
    half from the same view, or with tiling from a random tile of the same frame."""
    idx = [gen.randrange(len(train_x)) for _ in range(batch_size)]
    x01 = train_x[idx].to(device).float() / 255
    x_ae = model.normalize_image(torch.stack([color_jitter(x, gen) for x in x01]))
    if train_scaled is not None:
        x01 = torch.stack([_random_tile(train_scaled[i], s, gen) for i in idx]).to(device).float() / 255
    x_st = model.normalize_image(x01)
    x_pen = None
    if penalty_images:
        x_pen = model.normalize_image(_penalty_batch(penalty_images, s, gen, device))
    return x_st, x_ae, x_pen


def _losses(model: EfficientAD, x_st, x_ae, x_pen, p_hard: float, bf16: bool):
    """-> (L_hard, L_penalty, L_AE, L_STAE), the paper's loss terms for one batch."""
    c = TEACHER_CHANNELS
    device_type = x_st.device.type
    with torch.autocast(device_type, dtype=torch.bfloat16, enabled=bf16):
        b = x_st.shape[0]
        with torch.no_grad():
            t_both = model.teacher_features(torch.cat([x_st, x_ae]))          # (2B,384,s,s)
        t_st, t_ae = t_both[:b], t_both[b:]
        # One student pass over [ST image, jittered AE image, penalty image]: same maths as
        # three passes (no batch norm in a PDN), less overhead.
        s_all = model.student(torch.cat([x_st, x_ae] + ([x_pen] if x_pen is not None else [])))
        s_st, s_ae = s_all[:b, :c], s_all[b:2 * b, c:]                        # (B,384,s,s) each
        loss_penalty = (s_all[2 * b:, :c].float() ** 2).mean() if x_pen is not None \
            else torch.zeros((), device=x_st.device)
        loss_hard = hard_feature_loss((t_st.float() - s_st.float()) ** 2, p_hard)
        a = model.autoencoder(x_ae)                                             # (B,384,s,s)
        loss_ae = ((t_ae.float() - a.float()) ** 2).mean()
        loss_stae = ((a.float() - s_ae.float()) ** 2).mean()
    return loss_hard, loss_penalty, loss_ae, loss_stae


def _threshold_meta(cfg: TrainConfig, hold_scores: np.ndarray, estimate: ThresholdEstimate,
                    synthetic, paths: dict | None = None) -> dict:
    """What a model file says about its threshold (training and `calibrate` alike); `paths`:
    the reduced-precision paths' entries (engine/precision.py)."""
    return {
        **(paths or {}),
        "threshold": estimate.threshold,
        "threshold_rule": rule_text(cfg.target_frr),
        "threshold_estimate": estimate.to_dict(),
        "synthetic_check": synthetic.to_dict() if synthetic is not None else None,
        "holdout_scores": hold_scores.tolist(), "holdout_false_reject_rate": estimate.holdout_frr,
        "train_config": asdict(cfg),
    }


# -- calibration: map quantiles, threshold, synthetic check ---------------------------------
@dataclass(frozen=True, eq=False)
class _HeldOut:
    frames: list[np.ndarray]            # the held-out good frames as given
    views: torch.Tensor                 # (N,3,S,S) uint8 global views
    layouts: list | None                # per frame, with tiling or an ROI


@torch.no_grad()
def _calibrate(model: EfficientAD, cfg: TrainConfig, hold: _HeldOut, textures, device,
               progress: Progress):
    """Map quantiles and the threshold from the held-out good parts, then the synthetic
    defect check, and the reduced-precision paths calibrated on the same parts ->
    (held-out scores, ThresholdEstimate, SyntheticCheck or None, meta entries of the paths)."""
    if hold.layouts is None:
        m_st, m_ae = raw_holdout_maps(model, hold.views, device)
        set_map_quantiles(model, m_st, m_ae, cfg.q_a, cfg.q_b, cfg.balance_halves)
        score = lambda frames, views, layouts: _holdout_scores(model, views, device)
    else:                   # every tile of every held-out frame: the scorer's fast convs
        from engine.fast import scoring_copy
        fast = scoring_copy(model, device)
        m_st, m_ae = _layout_holdout_maps(fast, hold.layouts, hold.frames, device)
        for m in (model, fast):         # the copy scores with them too (may be model itself)
            set_map_quantiles(m, m_st, m_ae, cfg.q_a, cfg.q_b, cfg.balance_halves)
        score = lambda frames, views, layouts: _layout_holdout_scores(fast, layouts, frames, device)
    hold_scores = (scores_from_maps(model, m_st, m_ae) if hold.layouts is None
                   else score(hold.frames, hold.views, hold.layouts))
    estimate = estimate_threshold(hold_scores, cfg.target_frr, cfg.seed)
    if cfg.synthetic_per_kind <= 0:
        return hold_scores, estimate, None, {}
    progress(0.98, "checking the threshold on synthetic defects")
    from engine.synthetic import check_threshold, make_defects
    defects = make_defects(hold.frames, cfg.synthetic_per_kind, cfg.seed, textures,
                           region=cfg.model.roi, min_side_px=_min_defect_px(cfg.model, hold.frames[0]))
    frames = [d.image for d in defects]
    if hold.layouts is None:
        views, layouts = torch.stack([_views(f, None, cfg.model.image_size)[0] for f in frames]), None
    else:
        views, layouts = None, [hold.layouts[d.source] for d in defects]
    scores = score(frames, views, layouts)
    kinds = [d.kind for d in defects]
    synthetic = check_threshold(scores, kinds, estimate.threshold)
    paths = {}
    if _calibrates_paths(cfg, hold.layouts) and isinstance(model, EfficientAD):
        paths = _calibrate_paths(synthetic, model, cfg, hold.views, views, kinds, hold_scores,
                                 scores, device, progress)
    return hold_scores, estimate, synthetic, paths


def _calibrate_paths(synthetic, model, cfg: TrainConfig, hold_views, defect_views, kinds,
                     hold_scores, defect_scores, device, progress) -> dict:
    """The reduced-precision paths calibrated on the same held-out parts and synthetic
    defects (engine/precision.py) -> the meta entries "paths", "paths_reference"."""
    from engine import precision
    check = precision.CheckSet(hold_views.float() / 255, defect_views.float() / 255, tuple(kinds),
                               cfg.q_a, cfg.q_b, cfg.target_frr, cfg.seed, cfg.balance_halves)
    fp32_auroc = precision.heldout_auroc(np.asarray(hold_scores), np.asarray(defect_scores))
    return precision.calibrate_paths(model.eval(), device, check, fp32_auroc, progress,
                                     fp32_missed=synthetic.missed)


def recalibrate(model: EfficientAD, meta: dict, images: list[np.ndarray],
                target_frr: float | None = None, progress: Progress = lambda f, m: None,
                balance_halves: bool | None = None) -> dict:
    """A trained model's map quantiles, threshold and synthetic check done again with the
    rule of this version (and, if given, another target false-reject rate or weighting of
    the map's halves), on the same held-out parts: `images` are the good images it was
    trained from, in the same order. -> the new meta (the model's quantiles are updated in
    place)."""
    cfg = train_config_from_dict(meta.get("train_config", {}))
    if target_frr is not None:
        cfg = replace(cfg, target_frr=target_frr)
    same_rule = balance_halves is None or balance_halves == cfg.balance_halves
    if balance_halves is not None:
        cfg = replace(cfg, balance_halves=balance_halves)
    layouts = _with_layout(cfg, images)[1] if cfg.model.uses_layout else None
    hold_idx = _recorded_holdout(meta, len(images)) or _split(len(images), cfg.holdout_fraction, cfg.seed)[1]
    s = cfg.model.image_size
    hold = _HeldOut([images[i] for i in hold_idx],
                    torch.stack([_views(images[i], None, s)[0] for i in hold_idx]) if layouts is None else None,
                    [layouts[i] for i in hold_idx] if layouts else None)
    if len(hold_idx) != meta.get("n_holdout", len(hold_idx)):
        raise InspectError(f"The model held out {meta['n_holdout']} of its good images; these "
                           f"{len(images)} images give {len(hold_idx)}: pass the folder it was trained from.")
    device = torch.device("cpu")
    hold_scores, estimate, synthetic, paths = _calibrate(model.eval(), cfg, hold,
                                                         _load_penalty(cfg, progress), device, progress)
    old = np.asarray(meta.get("holdout_scores", []), dtype=np.float64)
    if same_rule and old.shape == hold_scores.shape and not np.allclose(old, hold_scores, rtol=0.02,
                                                                        atol=1e-3):
        progress(1.0, "WARNING: the held-out parts score differently than when the model was "
                      "trained: are these the images it was trained from?")
    return {**meta, **_threshold_meta(cfg, hold_scores, estimate, synthetic, paths),
            "train_config": {**meta.get("train_config", {}), "balance_halves": cfg.balance_halves},
            "recalibrated_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def _recorded_holdout(meta: dict, n: int) -> list[int] | None:
    """The held-out indices a model file names (files of earlier versions name none)."""
    idx = meta.get("holdout_index")
    if isinstance(idx, list) and idx and all(isinstance(i, int) and 0 <= i < n for i in idx):
        return sorted(set(idx))
    return None


def _min_defect_px(m: ModelConfig, frame: np.ndarray) -> float:
    """Frame pixels that become 8 px at the networks' input: smaller defects are below what
    a model of this layout can be asked to find (README: small defects on large frames)."""
    if m.tiling:
        return 8.0 / m.tile_scale
    h, w = frame.shape[:2] if m.roi is None else (m.roi[3], m.roi[2])
    return 8.0 * max(h, w) / m.image_size


# -- frame layout (ROI, tiling): engine/layout.py --------------------------------------------
def _with_layout(cfg: TrainConfig, images: list[np.ndarray]):
    """Record the frame size an ROI was drawn for (all good images must share it); build
    and validate each image's layout (tiling alone accepts mixed sizes)."""
    from engine.layout import Layout
    m = cfg.model
    if m.roi is not None or m.roi_polygon is not None:
        sizes = {im.shape[:2] for im in images}
        if len(sizes) > 1:
            raise InspectError(
                "A region of interest needs all good images at one frame size; got "
                + ", ".join(f"{w}×{h}" for h, w in sorted(sizes)[:4]) + ".")
        hw = next(iter(sizes))
        if m.frame_size is None:
            cfg = replace(cfg, model=replace(m, frame_size=hw))
    layouts = [Layout.of(cfg.model, im.shape[:2]) for im in images]
    return cfg, layouts


def _views(im: np.ndarray, layout, s: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """-> (global view (3,S,S) uint8, scaled ROI (3,hs,ws) uint8 or None)."""
    cpu = torch.device("cpu")
    if layout is None:
        return (frames_to_tensor([im], s, cpu)[0] * 255).round().to(torch.uint8), None
    crop = layout.crop(frame_to_tensor01(im))
    to_u8 = lambda t: (t * 255).round().clamp(0, 255).to(torch.uint8)
    scaled = to_u8(layout.scaled(crop)) if layout.tiling else None
    return to_u8(layout.global_view(crop)), scaled


def _random_tile(scaled: torch.Tensor, s: int, gen: random.Random) -> torch.Tensor:
    h, w = scaled.shape[-2:]
    y, x = gen.randint(0, h - s), gen.randint(0, w - s)
    return scaled[:, y:y + s, x:x + s]


@torch.no_grad()
def _layout_holdout_maps(model, layouts, frames, device) -> tuple[np.ndarray, np.ndarray]:
    from engine.layout import raw_frame_maps
    st, ae = [], []
    for layout, im in zip(layouts, frames):
        m_st, m_ae = raw_frame_maps(model, layout, frame_to_tensor01(im, device))
        st.append(m_st.float().cpu().numpy().ravel())
        ae.append(m_ae.float().cpu().numpy().ravel())
    return np.concatenate(st), np.concatenate(ae)


@torch.no_grad()
def _layout_holdout_scores(model, layouts, frames, device) -> np.ndarray:
    from engine.layout import frame_map
    return np.array([float(frame_map(model, layout, frame_to_tensor01(im, device)).max())
                     for layout, im in zip(layouts, frames)])


def train_config_from_dict(d: dict) -> TrainConfig:
    d = dict(d)
    d["model"] = ModelConfig.from_dict(d.get("model", {}))
    return replace(TrainConfig(), **{k: v for k, v in d.items() if k in TrainConfig.__dataclass_fields__})
