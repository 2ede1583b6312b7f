"""Synthetic defects pasted into good parts: can the model catch anything, before the
first real defect comes along?

Three kinds, after the self-supervised anomaly literature (CutPaste, Li et al. CVPR 2021;
DRAEM, Zavrtanik et al. ICCV 2021), sized so that each stays a defect the networks can see
(at least ~8 px at the model's input, see README: small defects on large frames):

  cutpaste  a rectangle cut from elsewhere in the part, jittered in colour, pasted back
  stain     a blob shaped by thresholded Perlin noise, blended with a foreign texture
            (a natural photo) or a darker/lighter tone
  scratch   a thin curved line, darker or lighter than the part

None of them is a real defect of any product: the miss rate they give is a floor check
("this model misses blatant flaws"), not a promise about the real ones. Each call is
deterministic for its seed.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

KINDS = ("cutpaste", "stain", "scratch")


@dataclass(frozen=True, eq=False)
class SyntheticDefect:
    kind: str
    image: np.ndarray            # H×W×3 uint8 RGB, the good part with the defect
    mask: np.ndarray             # H×W bool, where the defect is
    source: int                  # index of the good image it was made from


def make_defects(goods: list[np.ndarray], n_per_kind: int, seed: int = 0,
                 textures: list[np.ndarray] | None = None,
                 region: tuple[int, int, int, int] | None = None,
                 min_side_px: float = 0.0) -> list[SyntheticDefect]:
    """n_per_kind defects of every kind, cycling through the good images.

    region: (x, y, w, h) where defects may go (a model's ROI); the whole frame when None.
    min_side_px: the smallest defect side in frame pixels (e.g. what becomes 8 px at the
    model's input); defects are drawn between that and about a fifth of the region.
    """
    if not goods:
        raise ValueError("synthetic defects need at least one good image")
    rng = np.random.default_rng(seed)
    out = []
    for kind in KINDS:
        for i in range(n_per_kind):
            src = (i + KINDS.index(kind)) % len(goods)
            im = goods[src]
            box = region or (0, 0, im.shape[1], im.shape[0])
            size = _defect_size(rng, box, min_side_px)
            make = {"cutpaste": _cutpaste, "stain": _stain, "scratch": _scratch}[kind]
            image, mask = make(im, box, size, rng, textures)
            out.append(SyntheticDefect(kind, image, mask, src))
    return out


def _defect_size(rng, box, min_side_px: float) -> int:
    short = min(box[2], box[3])
    lo = max(min_side_px, 0.04 * short, 3.0)
    hi = max(lo + 1.0, 0.2 * short)
    return int(round(math.exp(rng.uniform(math.log(lo), math.log(hi)))))   # log-uniform


def _place(rng, box, h: int, w: int) -> tuple[int, int]:
    x0, y0, bw, bh = box
    return (int(y0 + rng.integers(0, max(1, bh - h + 1))),
            int(x0 + rng.integers(0, max(1, bw - w + 1))))


def _cutpaste(im, box, size, rng, textures):
    """A patch of the part itself (aspect 1:3..3:1), flipped/rotated and colour-shifted,
    pasted at another place: a misplaced or foreign piece that looks locally plausible."""
    h_img, w_img = im.shape[:2]
    aspect = math.exp(rng.uniform(-math.log(3), math.log(3)))
    h = int(np.clip(round(size * math.sqrt(aspect)), 2, min(box[3], h_img)))
    w = int(np.clip(round(size / math.sqrt(aspect)), 2, min(box[2], w_img)))
    sy, sx = _place(rng, box, h, w)
    patch = im[sy:sy + h, sx:sx + w].astype(np.float32)
    if rng.random() < 0.5:
        patch = patch[:, ::-1]
    if rng.random() < 0.5:
        patch = patch[::-1]
    gain, shift = rng.uniform(0.6, 1.4), rng.uniform(-40, 40)
    patch = np.clip(patch * gain + shift, 0, 255)
    ty, tx = _place(rng, box, h, w)
    out = im.copy()
    out[ty:ty + h, tx:tx + w] = patch.astype(np.uint8)
    mask = np.zeros(im.shape[:2], bool)
    mask[ty:ty + h, tx:tx + w] = True
    return out, mask


def perlin(shape: tuple[int, int], cells: int, rng) -> np.ndarray:
    """2-D Perlin gradient noise in about [-0.7, 0.7], `cells` lattice cells per side."""
    h, w = shape
    angles = rng.uniform(0, 2 * math.pi, (cells + 1, cells + 1))
    grad = np.stack([np.cos(angles), np.sin(angles)], -1)               # (c+1,c+1,2)
    y = np.linspace(0, cells, h, endpoint=False)[:, None] * np.ones((1, w))
    x = np.linspace(0, cells, w, endpoint=False)[None, :] * np.ones((h, 1))
    yi, xi = y.astype(int), x.astype(int)
    fy, fx = y - yi, x - xi

    def corner(dy, dx):
        g = grad[yi + dy, xi + dx]
        return g[..., 0] * (fx - dx) + g[..., 1] * (fy - dy)

    fade = lambda t: t * t * t * (t * (t * 6 - 15) + 10)
    u, v = fade(fx), fade(fy)
    top = corner(0, 0) * (1 - u) + corner(0, 1) * u
    bottom = corner(1, 0) * (1 - u) + corner(1, 1) * u
    return top * (1 - v) + bottom * v


def _stain(im, box, size, rng, textures):
    """DRAEM-style: Perlin noise thresholded inside an ellipse gives an irregular blob; it is
    blended (opacity 0.5-1) with a foreign texture, or with a darker/lighter tone."""
    side = max(int(size * 1.5), 6)      # a blob fills about half of its square
    noise = perlin((side, side), int(rng.integers(2, 5)), rng)
    yy, xx = np.mgrid[0:side, 0:side]
    r = np.hypot((yy - side / 2) / (side / 2), (xx - side / 2) / (side / 2))
    blob = (noise + 0.6 * (1 - r)) > 0.2
    if blob.sum() < 4:
        blob = r < 0.7
    ty, tx = _place(rng, box, side, side)
    ty, tx = min(ty, im.shape[0] - side), min(tx, im.shape[1] - side)
    region = im[ty:ty + side, tx:tx + side].astype(np.float32)
    if textures and rng.random() < 0.5:
        tex = textures[int(rng.integers(len(textures)))]
        foreign = cv2.resize(tex, (side, side), interpolation=cv2.INTER_AREA).astype(np.float32)
    else:
        tone = region.mean() + rng.choice([-1.0, 1.0]) * rng.uniform(50, 110)
        foreign = np.full_like(region, np.clip(tone, 0, 255))
    soft = cv2.GaussianBlur(blob.astype(np.float32), (3, 3), 0)     # a soft rim, not a cut-out
    blob = soft > 0.02                                                # the mask covers the rim
    alpha = (rng.uniform(0.5, 1.0) * soft * blob)[..., None]
    out = im.copy()
    out[ty:ty + side, tx:tx + side] = np.clip(region * (1 - alpha) + foreign * alpha, 0, 255).astype(np.uint8)
    mask = np.zeros(im.shape[:2], bool)
    mask[ty:ty + side, tx:tx + side] = blob
    return out, mask


def _scratch(im, box, size, rng, textures):
    """A quadratic Bezier curve 2-4x the defect size long, 1-3 ‰ of the frame wide (at
    least 2 px), darker or lighter than the part around it."""
    x0, y0, bw, bh = box
    length = min(size * rng.uniform(2, 4), 0.9 * min(bw, bh))
    cy, cx = _place(rng, box, 1, 1)
    a = rng.uniform(0, math.pi)
    p0 = np.array([cx - math.cos(a) * length / 2, cy - math.sin(a) * length / 2])
    p2 = np.array([cx + math.cos(a) * length / 2, cy + math.sin(a) * length / 2])
    p1 = (p0 + p2) / 2 + rng.normal(0, length / 4, 2)
    t = np.linspace(0, 1, 64)[:, None]
    pts = ((1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t ** 2 * p2)
    lo, hi = np.array([x0, y0]), np.array([x0 + bw - 1, y0 + bh - 1])
    pts = np.clip(pts, lo, hi).round().astype(np.int32).reshape(-1, 1, 2)
    width = max(2, int(round(min(im.shape[:2]) * rng.uniform(0.004, 0.012))))
    mask_u8 = np.zeros(im.shape[:2], np.uint8)
    cv2.polylines(mask_u8, [pts], False, 255, width, cv2.LINE_AA)
    inside = np.zeros_like(mask_u8)
    inside[y0:y0 + bh, x0:x0 + bw] = 1
    mask_u8 *= inside                     # a thick line must not reach past the region
    alpha = (mask_u8.astype(np.float32) / 255)[..., None]
    local = float(im[mask_u8 > 0].mean()) if (mask_u8 > 0).any() else 128.0
    tone = np.clip(local + rng.choice([-1.0, 1.0]) * rng.uniform(60, 120), 0, 255)
    out = np.clip(im.astype(np.float32) * (1 - alpha) + tone * alpha, 0, 255).astype(np.uint8)
    return out, mask_u8 > 127


@dataclass(frozen=True)
class SyntheticCheck:
    """How the threshold fares on synthetic defects (a floor check, see the module text)."""
    threshold: float
    n: int
    missed: int
    by_kind: tuple[tuple[str, int, int], ...]     # (kind, n, missed)
    scores: tuple[float, ...]
    kinds: tuple[str, ...]

    @property
    def miss_rate(self) -> float:
        return self.missed / self.n if self.n else float("nan")

    def to_dict(self) -> dict:
        return {"threshold": self.threshold, "n": self.n, "missed": self.missed,
                "miss_rate": self.miss_rate,
                "by_kind": {k: {"n": n, "missed": m, "miss_rate": m / n if n else None}
                            for k, n, m in self.by_kind},
                "scores": list(self.scores), "kinds": list(self.kinds)}

    @classmethod
    def from_dict(cls, d: dict) -> "SyntheticCheck":
        return cls(threshold=float(d["threshold"]), n=int(d["n"]), missed=int(d["missed"]),
                   by_kind=tuple((k, int(v["n"]), int(v["missed"])) for k, v in d["by_kind"].items()),
                   scores=tuple(float(s) for s in d["scores"]), kinds=tuple(d["kinds"]))

    def sentence(self) -> str:
        parts = ", ".join(f"{k} {m}/{n}" for k, n, m in self.by_kind)
        return (f"Synthetic defects: the threshold misses {self.missed} of {self.n} "
                f"({self.miss_rate:.0%}; missed per kind: {parts}).")


def check_threshold(scores: np.ndarray, kinds: list[str], threshold: float) -> SyntheticCheck:
    """Which synthetic defects score below the threshold (a non-finite score is caught)."""
    s = np.asarray(scores, dtype=np.float64)
    missed = np.isfinite(s) & (s < threshold)
    by_kind = tuple((k, int(sum(1 for x in kinds if x == k)),
                     int(sum(m for m, x in zip(missed, kinds) if x == k)))
                    for k in KINDS if k in kinds)
    return SyntheticCheck(float(threshold), int(s.size), int(missed.sum()), by_kind,
                          tuple(float(x) for x in s), tuple(kinds))
