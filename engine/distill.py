"""Distil the teacher PDN from an ImageNet backbone (EfficientAD's pretraining, on a CPU budget).

Target: PatchCore-aggregated stride-8 + stride-16 backbone features of a 512×512 view,
(384,64,64), normalised per channel. Student of that target: the PDN on the 256×256 view.

Each PDN output sees only 33×33 px, so instead of whole images we train the UNPADDED PDN on
crops of 4n+29 px: a crop starting at pixel (4·r0, 4·c0) of the 256-px view gives an n×n map
whose cell (i,j) is the padded 64×64 map's cell (i+4+r0, j+4+c0) (see `crop_pair`, checked in
tests/test_distill.py). Crops from many views per step give more varied gradients per FLOP
than whole images, and the unpadded interior is exactly what scoring uses.

Backbone targets are the other big cost, so views live in a pool: each step replaces a few
views (augment -> backbone -> target) and draws its crops from the whole pool.
"""
from __future__ import annotations

import argparse
import math
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch.nn import functional as F
from torchvision.transforms import v2

from engine.backbones import BACKBONE_INPUT, PatchTarget, make_backbone
from engine.data import list_images, load_rgb
from engine.errors import InspectError, run_command
from engine.model import IMAGENET_MEAN, IMAGENET_STD, TEACHER_CHANNELS, pdn
from engine.vocabulary import MODEL_SIZES, spoken

PDN_INPUT = 256
GRID = 64                    # padded PDN map side for 256 px = backbone stride-8 grid at 512 px
BORDER = 4                   # padded cells whose receptive field reaches outside the image


@dataclass(frozen=True)
class DistillConfig:
    images: str                          # folder of natural images
    work_dir: str = "runs/distill-small"  # checkpoint.pt, log, teacher exports
    out: str = ""                        # teacher file; "" = <work_dir>/teacher_<size>.pth
    size: str = "small"
    backbone: str = "efficientnet-lite0"
    backbone_weights: str | None = None
    steps: int = 100_000
    minutes: float = 0.0                 # stop after this much training time (0 = no limit)
    crop_out: int = 16                   # n: each crop gives an n×n output map
    batch: int = 16                      # crops per step
    pool_views: int = 64                 # augmented views held in memory
    refresh: int = 1                     # views replaced per step
    stat_views: int = 1000               # views for the target's per-channel mean/std
    holdout_every: int = 20              # every k-th image (sorted) is never trained on
    lr: float = 1e-4                     # the paper's constant rate; the peak for "cosine"
    # "constant" (the paper's) or "cosine": linear warm-up over `warmup` steps, then a cosine
    # decay to lr·lr_floor at the end of the budget (steps, or --minutes if that ends first),
    # so a run of any length ends on small steps instead of the last noisy ones.
    schedule: str = "constant"
    warmup: int = 0
    lr_floor: float = 0.01
    weight_decay: float = 1e-5
    bf16: bool = True                    # autocast (backbone + PDN); loss and Adam in fp32
    # "auto" = CUDA where present (the paper's whole budget is minutes on one GPU), else CPU.
    # Augmentation stays on the CPU; the pool of views and targets lives on the device.
    device: str = "cpu"
    # Decoded photos kept in memory (on the device): on a GPU, decoding and augmenting a photo
    # on the CPU for every step would take longer than the step. None = on a GPU only.
    cache_images: bool | None = None
    checkpoint_minutes: float = 10.0
    seed: int = 0
    # A teacher file whose weights a new run starts from (e.g. the shipped one, to distil it
    # further: the checkpoint of the run that made it is not kept in git). "" = random.
    init: str = ""

    def teacher_path(self) -> Path:
        return Path(self.out) if self.out else Path(self.work_dir) / f"teacher_{self.size}.pth"


class DistillStopped(Exception):
    pass


SCHEDULES = ("constant", "cosine")


def learning_rate(cfg: DistillConfig, step: int, fraction: float) -> float:
    """The rate for optimiser step `step` (0-based); `fraction`: how much of the budget is
    spent (steps or minutes, whichever is further), which places the cosine decay."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    if cfg.schedule == "constant":
        return cfg.lr
    floor = cfg.lr * cfg.lr_floor
    return floor + (cfg.lr - floor) * 0.5 * (1.0 + math.cos(math.pi * min(1.0, fraction)))


# -- data ---------------------------------------------------------------------------------
def split_images(folder: str | Path, holdout_every: int) -> tuple[list[Path], list[Path]]:
    """-> (train, held out): every holdout_every-th image in name order is held out."""
    paths = list_images(folder)
    if not paths:
        raise InspectError(f"The image folder {folder} has no images; point --images to natural photos.")
    if holdout_every <= 1:
        return paths, []
    held = paths[holdout_every - 1::holdout_every]
    train = [p for p in paths if p not in set(held)]
    return train, held


def make_augment() -> v2.Compose:
    """uint8 (3,H,W) -> float (3,512,512) in [0,1]: what the paper's pretraining varies."""
    return v2.Compose([
        v2.RandomResizedCrop(BACKBONE_INPUT, scale=(0.2, 1.0), antialias=True),
        v2.RandomHorizontalFlip(),
        v2.RandomVerticalFlip(p=0.1),
        v2.ColorJitter(brightness=0.3, contrast=0.3, saturation=0.3, hue=0.05),
        v2.RandomGrayscale(p=0.1),
        v2.ToDtype(torch.float32, scale=True),
    ])


def load_chw(path: Path) -> torch.Tensor:
    return torch.from_numpy(load_rgb(path).copy()).permute(2, 0, 1)       # (3,H,W) uint8


class PhotoSource:
    """path -> (3,H,W) uint8 on `device`: decoded once and kept when `cache`, else each time."""

    def __init__(self, device: torch.device, cache: bool):
        self.device, self.cache = device, cache
        self._kept: dict[Path, torch.Tensor] = {}

    def __call__(self, path: Path) -> torch.Tensor:
        if path in self._kept:
            return self._kept[path]
        photo = load_chw(path).to(self.device)
        if self.cache:
            self._kept[path] = photo
        return photo


def pdn_input(rgb512: torch.Tensor) -> torch.Tensor:
    """(B,3,512,512) in [0,1] -> (B,3,256,256) ImageNet-normalised, as engine.model expects."""
    x = F.interpolate(rgb512, size=PDN_INPUT, mode="bilinear", antialias=True, align_corners=False)
    mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


class TargetMaker:
    """Backbone + PatchCore aggregation: (B,3,512,512) in [0,1] -> (B,384,64,64) fp32."""

    def __init__(self, cfg: DistillConfig, device: torch.device | None = None):
        self.device = device or torch.device("cpu")
        self.backbone = make_backbone(cfg.backbone, cfg.backbone_weights).to(self.device)
        self.aggregate = PatchTarget.for_backbone(self.backbone, TEACHER_CHANNELS).to(self.device)
        self.bf16 = cfg.bf16

    @torch.no_grad()
    def __call__(self, rgb512: torch.Tensor) -> torch.Tensor:
        """-> the target on the maker's device."""
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            maps = self.backbone(rgb512.to(self.device))
        return self.aggregate([m.float() for m in maps])        # aggregation in fp32


def crop_pair(image256: torch.Tensor, target64: torch.Tensor, r0: int, c0: int, n: int
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """(3,256,256), (C,64,64) -> crop (3,4n+29,4n+29) and its target (C,n,n).

    Unpadded PDN output i of the crop sees crop pixels [4i, 4i+33), i.e. image pixels
    [4(i+r0), 4(i+r0)+33), which is the padded map's cell i+r0+4.
    """
    side = 4 * n + 29
    x = image256[:, 4 * r0:4 * r0 + side, 4 * c0:4 * c0 + side]
    y = target64[:, BORDER + r0:BORDER + r0 + n, BORDER + c0:BORDER + c0 + n]
    return x, y


def max_offset(n: int) -> int:
    """Largest r0 with the crop inside the 256-px image and its cells inside the interior."""
    return min((PDN_INPUT - 4 * n - 29) // 4, GRID - 2 * BORDER - n)


# -- statistics ---------------------------------------------------------------------------
def target_stats(make: TargetMaker, paths: list[Path], views: int, augment, batch: int = 4,
                 progress=None, should_stop=None, load=load_chw) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean/std (384,) of the interior targets over `views` augmented views."""
    s1 = torch.zeros(TEACHER_CHANNELS, dtype=torch.float64)
    s2 = torch.zeros_like(s1)
    count = 0
    done = 0
    while done < views:
        k = min(batch, views - done)
        rgb = torch.stack([augment(load(paths[(done + j) % len(paths)])) for j in range(k)])
        t = make(rgb)[:, :, BORDER:-BORDER, BORDER:-BORDER].double()      # (k,384,56,56)
        s1 += t.sum((0, 2, 3)).cpu()
        s2 += (t * t).sum((0, 2, 3)).cpu()
        count += t.shape[0] * t.shape[2] * t.shape[3]
        done += k
        if progress:
            progress(0.0, f"target statistics {done}/{views} views")
        if should_stop and should_stop():
            raise DistillStopped("stopped while computing statistics")
    mean = s1 / count
    std = (s2 / count - mean * mean).clamp_min(1e-12).sqrt()
    return mean.float(), std.float()


# -- checkpoints --------------------------------------------------------------------------
def teacher_state(net: torch.nn.Sequential) -> dict[str, torch.Tensor]:
    """fp16 state_dict in the authors' nn.Sequential layout ("0.weight", "3.weight", ...)."""
    return {k: v.detach().half().cpu().clone() for k, v in net.state_dict().items()}


def _atomic_save(obj, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    tmp.replace(path)


def export_teacher(checkpoint: str | Path, out: str | Path) -> Path:
    """Write the teacher file from a distillation checkpoint (usable while a run goes on)."""
    ck = _read_checkpoint(Path(checkpoint))
    _atomic_save({k: v.half() for k, v in ck["pdn"].items()}, Path(out))
    return Path(out)


@torch.no_grad()
def heldout_mse(net, make: TargetMaker, mean, std, paths: list[Path], seed: int = 123,
                bf16: bool = False) -> float:
    """MSE of the unpadded PDN on whole 256-px held-out views vs the normalised interior target."""
    if not paths:
        return float("nan")
    g = torch.get_rng_state()
    torch.manual_seed(seed)                       # the same views every time
    aug = make_augment()
    rgb = torch.stack([aug(load_chw(p)) for p in paths]).to(make.device)
    torch.set_rng_state(g)
    total = 0.0
    for i in range(0, len(paths), 4):
        t = (make(rgb[i:i + 4]) - mean.view(1, -1, 1, 1)) / std.view(1, -1, 1, 1)
        with torch.autocast(make.device.type, dtype=torch.bfloat16, enabled=bf16):
            out = net(pdn_input(rgb[i:i + 4])).float()                    # (b,384,56,56)
        total += float(((out - t[:, :, BORDER:-BORDER, BORDER:-BORDER]) ** 2).mean()) * len(out)
    return total / len(paths)


# -- training -----------------------------------------------------------------------------
def distill(cfg: DistillConfig, progress: Callable[[float, str], None] = lambda f, m: None,
            should_stop: Callable[[], bool] = lambda: False) -> Path:
    """Run (or resume) a distillation; checkpoints and exports the teacher periodically.

    Returns the teacher file path. Resumes from <work_dir>/checkpoint.pt when it exists.
    """
    if cfg.size not in MODEL_SIZES:
        raise InspectError(f"PDN size must be {spoken(MODEL_SIZES, quoted=True)}, not {cfg.size!r}.")
    if cfg.schedule not in SCHEDULES:
        raise InspectError(f"The learning-rate schedule must be {spoken(SCHEDULES, quoted=True)}, "
                           f"not {cfg.schedule!r}.")
    if not 1 <= cfg.refresh <= cfg.pool_views:
        raise InspectError(f"--refresh must be between 1 and --pool-views ({cfg.pool_views}), "
                           f"not {cfg.refresh}.")
    if max_offset(cfg.crop_out) < 0:
        raise InspectError(f"--crop-out {cfg.crop_out} is too large for a 256-px view (at most 48).")
    train_paths, held = split_images(cfg.images, cfg.holdout_every)
    if not train_paths:
        raise InspectError(f"The image folder {cfg.images} has no training images left after holdout.")
    random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    run = _Distillation.start(cfg, train_paths, held[:16], progress, should_stop)
    run.train(progress, should_stop)
    run.net.eval()
    run.save()
    return cfg.teacher_path()


@dataclass(eq=False)
class _Distillation:
    """One run's networks, target statistics and resumable state (used by one thread)."""
    cfg: DistillConfig
    train_paths: list[Path]
    held_eval: list[Path]
    make: TargetMaker
    augment: v2.Compose
    net: torch.nn.Sequential
    opt: torch.optim.Optimizer
    photos: PhotoSource
    mean: torch.Tensor | None = None
    std: torch.Tensor | None = None
    state: dict = field(default_factory=lambda: {"step": 0, "seconds": 0.0, "history": [],
                                                 "heldout": []})

    @property
    def ck_path(self) -> Path:
        return Path(self.cfg.work_dir) / "checkpoint.pt"

    @classmethod
    def start(cls, cfg: DistillConfig, train_paths: list[Path], held_eval: list[Path],
              progress, should_stop) -> "_Distillation":
        """New networks (in the seeded order a resume relies on), then the checkpoint's state
        or, for a first run, the target statistics."""
        from engine.device import resolve_device
        device = resolve_device(cfg.device)
        make = TargetMaker(cfg, device)
        augment = make_augment()
        net = pdn(cfg.size, TEACHER_CHANNELS, padding=False).to(device)
        opt = torch.optim.Adam(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        cache = device.type == "cuda" if cfg.cache_images is None else cfg.cache_images
        run = cls(cfg, train_paths, held_eval, make, augment, net, opt, PhotoSource(device, cache))
        if run.ck_path.exists():
            ck = _read_checkpoint(run.ck_path)
            net.load_state_dict(ck["pdn"])
            opt.load_state_dict(ck["opt"])             # its state follows the weights' device
            run.mean, run.std = ck["mean"].to(device), ck["std"].to(device)
            run.state = ck["state"]
            torch.set_rng_state(ck["torch_rng"])
            random.setstate(ck["py_rng"])
            progress(run.state["step"] / cfg.steps, f"resumed at step {run.state['step']}")
        else:
            if cfg.init:                      # checked before the slow statistics
                from engine.model import load_teacher_state
                load_teacher_state(net, cfg.init)
                progress(0.0, f"starting from the weights of {cfg.init}")
            t0 = time.time()
            mean, std = target_stats(make, train_paths, cfg.stat_views, augment,
                                     progress=progress, should_stop=should_stop, load=run.photos)
            run.mean, run.std = mean.to(device), std.to(device)
            run.state["stats_seconds"] = time.time() - t0
        return run

    def save(self) -> None:
        self.state["heldout"].append((self.state["step"], heldout_mse(
            self.net, self.make, self.mean, self.std, self.held_eval)))
        _atomic_save({"pdn": self.net.state_dict(), "opt": self.opt.state_dict(),
                      "mean": self.mean.cpu(), "std": self.std.cpu(), "state": self.state,
                      "config": asdict(self.cfg), "torch_rng": torch.get_rng_state(),
                      "py_rng": random.getstate()}, self.ck_path)
        _atomic_save(teacher_state(self.net), self.cfg.teacher_path())

    def new_views(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """k pool entries: normalised 256-px inputs (k,3,256,256), normalised targets
        (k,384,64,64) in fp16."""
        rgb = torch.stack([self.augment(self.photos(random.choice(self.train_paths)))
                           for _ in range(k)])
        t = (self.make(rgb) - self.mean.view(1, -1, 1, 1)) / self.std.view(1, -1, 1, 1)
        return pdn_input(rgb.to(self.make.device)), t.half()

    def train(self, progress, should_stop) -> None:
        cfg, state = self.cfg, self.state
        images, targets = self.new_views(cfg.pool_views)
        last_save = time.time()
        window: list[float] = []
        started = time.time() - state["seconds"]
        self.net.train()
        while state["step"] < cfg.steps:
            if should_stop():
                self.save()
                raise DistillStopped(f"stopped at step {state['step']}")
            idx = random.sample(range(cfg.pool_views), cfg.refresh)
            images[idx], targets[idx] = self.new_views(cfg.refresh)
            self._set_lr(learning_rate(cfg, state["step"], self._spent()))
            window.append(self._step(images, targets))
            state["step"] += 1
            state["seconds"] = time.time() - started
            if len(window) == 100 or state["step"] == cfg.steps:
                state["history"].append((state["step"], state["seconds"], sum(window) / len(window)))
                window = []
            progress(self._spent(), f"step {state['step']} loss "
                           f"{window[-1] if window else state['history'][-1][2]:.4f}")
            if time.time() - last_save > 60 * cfg.checkpoint_minutes:
                self.save()
                last_save = time.time()
            if cfg.minutes and state["seconds"] >= 60 * cfg.minutes:
                break
        if window:
            state["history"].append((state["step"], state["seconds"], sum(window) / len(window)))

    def _spent(self) -> float:
        """Fraction of the budget used: steps, or training time when --minutes is set."""
        frac = self.state["step"] / self.cfg.steps
        if self.cfg.minutes:
            frac = max(frac, self.state["seconds"] / (60 * self.cfg.minutes))
        return frac

    def _set_lr(self, lr: float) -> None:
        for group in self.opt.param_groups:
            group["lr"] = lr
        self.state["lr"] = lr

    def _step(self, images: torch.Tensor, targets: torch.Tensor) -> float:
        """One optimiser step on a batch of crops drawn from the whole pool; its loss."""
        cfg = self.cfg
        n, top = cfg.crop_out, max_offset(cfg.crop_out)
        xs, ys = [], []
        for _ in range(cfg.batch):
            v = random.randrange(cfg.pool_views)
            x, y = crop_pair(images[v], targets[v], random.randint(0, top), random.randint(0, top), n)
            xs.append(x)
            ys.append(y)
        x, y = torch.stack(xs), torch.stack(ys).float()     # (B,3,4n+29,4n+29), (B,384,n,n)
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=cfg.bf16):
            out = self.net(x)
        loss = F.mse_loss(out.float(), y)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return loss.item()


# -- measuring a teacher ------------------------------------------------------------------
def _read_checkpoint(path: Path) -> dict:
    """The run's own checkpoint, read with weights_only (it holds tensors and plain values
    only); anything else is one sentence saying how to start afresh."""
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(ck, dict) or not {"pdn", "opt", "mean", "std", "state"} <= set(ck):
            raise ValueError("not a distillation checkpoint")
        return ck
    except Exception as e:        # torch raises many kinds for a damaged file
        raise InspectError(f"{path} is not a distillation checkpoint this app can resume from "
                           f"({type(e).__name__}); move it away to start afresh.") from e


def _squash(path: Path, side: int) -> torch.Tensor:
    """Whole image resized (no augmentation) -> (3,side,side) in [0,1]."""
    t = load_chw(path).float()[None] / 255.0
    return F.interpolate(t, size=(side, side), mode="bilinear", antialias=True, align_corners=False)[0]


@torch.no_grad()
def probe_auroc(features: Callable[[torch.Tensor], torch.Tensor], category: Path, k: int = 20) -> float:
    """Image AUROC of nearest-neighbour patch distance: k train/good images as the memory
    bank, k test/good vs k defects (spread over defect types). `features`: (B,3,256,256) in
    [0,1] -> (B,C,h,w). Channels are standardised with the bank's mean/std, as EfficientAD
    standardises teacher outputs with its training images."""
    from engine.extras import require
    roc_auc_score = require("sklearn.metrics", "distill-teacher's backbone probe").roc_auc_score
    bank_paths = list_images(category / "train" / "good")
    good = list_images(category / "test" / "good")
    kinds = sorted(d for d in (category / "test").iterdir() if d.is_dir() and d.name != "good")
    per = max(1, k // len(kinds))
    bad = [p for d in kinds for p in list_images(d)[::7][:per]]
    pick = lambda ps, m: [ps[round(i * (len(ps) - 1) / max(1, m - 1))] for i in range(min(m, len(ps)))]

    def feats(paths):
        return torch.cat([features(torch.stack([_squash(p, 256) for p in paths[i:i + 4]]))
                          for i in range(0, len(paths), 4)])                   # (N,C,h,w)
    bank = feats(pick(bank_paths, k))
    c = bank.shape[1]
    mean, std = bank.mean((0, 2, 3), keepdim=True), bank.std((0, 2, 3), keepdim=True) + 1e-6
    mem = ((bank - mean) / std).permute(0, 2, 3, 1).reshape(-1, c)
    mem = mem[::max(1, len(mem) // 8192)]          # ~8k bank patches keep cdist cheap on a CPU
    test = pick(good, k) + bad
    scores = [float(torch.cdist(((f[None] - mean) / std)[0].permute(1, 2, 0).reshape(-1, c), mem)
                    .min(1).values.max()) for f in feats(test)]
    labels = [0] * min(k, len(good)) + [1] * len(bad)
    return float(roc_auc_score(labels, scores))


@torch.no_grad()
def evaluate_teacher(teacher: str, images: str, checkpoint: str | Path, data: str | Path,
                     categories: tuple[str, ...] = ("magnetic_tile/magnetic_tile", "bsdata/bsd_type2"),
                     holdout_every: int = 20, backbone: str = "efficientnet-lite0") -> dict:
    """Held-out MSE to the normalised backbone target on never-trained images (whole images,
    no augmentation) and the probe AUROC per category; teacher = file or "random", or
    "backbone": the probe on `backbone`'s target itself (no checkpoint needed)."""
    if teacher == "backbone":      # the distillation target itself: the ceiling for the probe
        make = TargetMaker(DistillConfig(images=images, backbone=backbone, bf16=False))
        feats = lambda x: make(F.interpolate(x, size=BACKBONE_INPUT, mode="bilinear"))
        return {"teacher": teacher, "backbone": backbone,
                **{f"auroc {c}": probe_auroc(feats, Path(data) / c) for c in categories}}
    ck = torch.load(checkpoint, map_location="cpu", weights_only=False)
    cfg = DistillConfig(**{**ck["config"], "bf16": False})
    torch.manual_seed(0)                       # "random": PyTorch's default init, seed 0
    net = pdn(cfg.size, TEACHER_CHANNELS).eval()
    make = TargetMaker(cfg)
    if teacher != "random":
        from engine.model import load_teacher_state
        load_teacher_state(net, teacher)
    _, held = split_images(images, holdout_every)
    mean, std = ck["mean"].view(1, -1, 1, 1), ck["std"].view(1, -1, 1, 1)
    se, zero = 0.0, 0.0
    for i in range(0, len(held), 4):
        rgb = torch.stack([_squash(p, 512) for p in held[i:i + 4]])
        t = ((make(rgb) - mean) / std)[:, :, BORDER:-BORDER, BORDER:-BORDER]
        se += float(((net(pdn_input(rgb)) - t) ** 2).mean()) * len(rgb)
        zero += float((t ** 2).mean()) * len(rgb)
    im_mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    im_std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    result = {"teacher": teacher, "heldout_images": len(held), "heldout_mse": se / len(held),
              "heldout_mse_of_zero": zero / len(held)}
    for cat in categories:
        result[f"auroc {cat}"] = probe_auroc(lambda x: net((x - im_mean) / im_std), Path(data) / cat)
    return result


# -- command line -------------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
    """distill-teacher's options (main runs them)."""
    p = argparse.ArgumentParser(prog="python main.py distill-teacher", description=__doc__.split("\n")[0])
    p.add_argument("--images", help="folder of natural images (e.g. ImageNet photos)")
    p.add_argument("--work-dir", default=None, help="checkpoints and exports (default runs/distill-SIZE)")
    p.add_argument("--out", default="", help="teacher file (default WORK_DIR/teacher_SIZE.pth)")
    p.add_argument("--size", choices=MODEL_SIZES, default="small")
    p.add_argument("--backbone", choices=["efficientnet-lite0", "efficientnet-lite2", "wide_resnet101_2"],
                   default="efficientnet-lite0")
    p.add_argument("--backbone-weights", default=None, help="ImageNet weights file for the backbone")
    p.add_argument("--steps", type=int, default=DistillConfig.steps)
    p.add_argument("--minutes", type=float, default=0.0, help="stop after this much training time")
    p.add_argument("--lr", type=float, default=DistillConfig.lr,
                   help="learning rate (the peak for --schedule cosine)")
    p.add_argument("--schedule", choices=SCHEDULES, default=DistillConfig.schedule)
    p.add_argument("--warmup", type=int, default=DistillConfig.warmup,
                   help="steps of linear warm-up to --lr")
    p.add_argument("--crop-out", type=int, default=DistillConfig.crop_out)
    p.add_argument("--batch", type=int, default=DistillConfig.batch)
    p.add_argument("--pool-views", type=int, default=DistillConfig.pool_views)
    p.add_argument("--refresh", type=int, default=DistillConfig.refresh,
                   help="views of the pool replaced per step (the backbone runs on them)")
    p.add_argument("--stat-views", type=int, default=DistillConfig.stat_views)
    p.add_argument("--checkpoint-minutes", type=float, default=DistillConfig.checkpoint_minutes)
    p.add_argument("--fp32", action="store_true", help="no bf16 autocast")
    p.add_argument("--device", default="auto", help="auto (CUDA where present) | cpu | cuda")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's choice)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--init", default="", metavar="TEACHER",
                   help="start a new run from this teacher file's weights (e.g. "
                        "resources/teachers/teacher_small.pth, to distil it further)")
    p.add_argument("--evaluate", metavar="TEACHER", default=None,
                   help="measure a teacher file (or 'random') against WORK_DIR/checkpoint.pt's "
                        "target and the --probe-data categories, print JSON, exit")
    p.add_argument("--probe-data", default="../shared/data")
    p.add_argument("--export", action="store_true",
                   help="only write the teacher file from WORK_DIR/checkpoint.pt and exit")
    return p


def main(argv: list[str]) -> int:
    from engine.cli import ProgressBar

    def run(argv: list[str]) -> int:
        a = _parser().parse_args(argv)
        if a.threads:
            torch.set_num_threads(a.threads)
        work = a.work_dir or f"runs/distill-{a.size}"
        if a.export:
            out = Path(a.out) if a.out else Path(work) / f"teacher_{a.size}.pth"
            print(export_teacher(Path(work) / "checkpoint.pt", out))
            return 0
        if a.evaluate:
            import json
            if not a.images:
                raise InspectError("--evaluate needs --images (the folder distilled from) for held-out MSE.")
            print(json.dumps(evaluate_teacher(a.evaluate, a.images, Path(work) / "checkpoint.pt",
                                              a.probe_data, backbone=a.backbone)))
            return 0
        if not a.images:
            raise InspectError("Pass --images FOLDER with natural photos to distil from.")
        cfg = DistillConfig(images=a.images, work_dir=work, out=a.out, size=a.size, backbone=a.backbone,
                            backbone_weights=a.backbone_weights, steps=a.steps, minutes=a.minutes,
                            lr=a.lr, schedule=a.schedule, warmup=a.warmup,
                            crop_out=a.crop_out, batch=a.batch, pool_views=a.pool_views,
                            refresh=a.refresh,
                            stat_views=a.stat_views, checkpoint_minutes=a.checkpoint_minutes,
                            bf16=not a.fp32, seed=a.seed, init=a.init, device=a.device)
        bar = ProgressBar("distill")
        try:
            path = distill(cfg, bar)
        except DistillStopped as e:
            bar.close()
            print(f"stopped: {e}; run the same command again to resume")
            return 130
        except InspectError:
            bar.close()             # so the one-line error does not share the bar's line
            raise
        except KeyboardInterrupt:
            bar.close()
            print("interrupted; the last checkpoint is in", work)
            return 130
        bar.close()
        print(path)
        return 0

    return run_command(run, argv)
