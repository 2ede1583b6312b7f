"""Anomaly-detection metrics as the MVTec AD benchmark defines them.

image_auroc  - ROC AUC of image scores (defective = positive), ties counted half.
pixel_auroc  - the same over every pixel of every test image (mask = positive).
au_pro       - area under the per-region-overlap curve up to FPR 0.3, divided by 0.3.
               PRO at a threshold is the mean, over every connected ground-truth region
               (8-connected, per image), of the fraction of that region above the threshold;
               FPR is over all defect-free pixels of all images.

Both pixel metrics are exact (every distinct score is a threshold) up to EXACT_LIMIT pixels.
Beyond that (e.g. 500 test images of 1130×460) sorting every pixel needs tens of GB, so the
scores are binned into 2^20 levels between their minimum and maximum, image by image, with
O(bins + one image) memory; scores in one bin count as a tie. The difference to the exact
value is below 1e-4 on the sets in tests/test_metrics.py.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage


def auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Mann-Whitney form of the ROC AUC; exact with ties (average ranks)."""
    scores = np.asarray(scores, dtype=np.float64).ravel()
    labels = np.asarray(labels).astype(bool).ravel()
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError("AUROC needs both positive and negative samples")
    order = np.argsort(scores, kind="mergesort")
    sorted_scores = scores[order]
    # Average rank of each group of equal scores (1-based).
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_scores)) + 1]
    ends = np.r_[starts[1:], len(scores)]
    avg_rank = (starts + ends + 1) / 2.0
    ranks = np.empty(len(scores), dtype=np.float64)
    ranks[order] = np.repeat(avg_rank, ends - starts)
    rank_sum_pos = ranks[labels].sum()
    return float((rank_sum_pos - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def image_auroc(scores, labels) -> float:
    return auroc(scores, labels)


EXACT_LIMIT = 20_000_000        # pixels; above: binned (see the module docstring)
BINS = 1 << 20


def _n_pixels(maps) -> int:
    return sum(int(m.size) for m in maps)


def _binner(maps: list[np.ndarray], bins: int):
    """-> function: map -> int64 bin index in [0, bins), monotone in the score."""
    lo = min(float(np.min(m)) for m in maps)
    hi = max(float(np.max(m)) for m in maps)
    scale = (bins - 1) / (hi - lo) if hi > lo else 0.0
    return lambda m: np.clip(((m.astype(np.float64).ravel() - lo) * scale).astype(np.int64), 0, bins - 1)


def pixel_auroc(maps: list[np.ndarray], masks: list[np.ndarray],
                exact_limit: int = EXACT_LIMIT) -> float:
    if _n_pixels(maps) <= exact_limit:
        return auroc(np.concatenate([m.ravel() for m in maps]),
                     np.concatenate([k.ravel() for k in masks]))
    to_bin = _binner(maps, BINS)
    pos = np.zeros(BINS)
    neg = np.zeros(BINS)
    for m, k in zip(maps, masks):
        idx, lab = to_bin(m), k.astype(bool).ravel()
        pos += np.bincount(idx[lab], minlength=BINS)
        neg += np.bincount(idx[~lab], minlength=BINS)
    n_pos, n_neg = pos.sum(), neg.sum()
    if n_pos == 0 or n_neg == 0:
        raise ValueError("AUROC needs both positive and negative samples")
    neg_below = np.cumsum(neg) - neg
    return float((pos * (neg_below + 0.5 * neg)).sum() / (n_pos * n_neg))


def _trapezoid_to(x: np.ndarray, y: np.ndarray, x_max: float) -> float:
    """Area under y(x) from x[0] to x_max, interpolating y linearly at x_max."""
    keep = x <= x_max
    xs, ys = x[keep], y[keep]
    if len(xs) < len(x) and len(xs) > 0:
        i = len(xs)                                    # first point beyond x_max
        y_at = ys[-1] + (y[i] - ys[-1]) * (x_max - xs[-1]) / (x[i] - xs[-1])
        xs, ys = np.r_[xs, x_max], np.r_[ys, y_at]
    return float(np.trapezoid(ys, xs)) if len(xs) > 1 else 0.0


def pro_curve(maps: list[np.ndarray], masks: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(fpr, pro) at every distinct score, from the highest threshold to the lowest.

    Each pixel carries a weight: a defect-free pixel adds 1/N_ok to the FPR once the
    threshold falls to its score; a pixel of region r adds 1/(|r|·R) to the PRO.
    Sorting all pixels once gives the whole curve.
    """
    structure = np.ones((3, 3), dtype=int)                      # 8-connectivity
    fpr_w, pro_w, scores = [], [], []
    n_regions = 0
    regions_per_image = []
    for m, k in zip(maps, masks):
        labeled, n = ndimage.label(k.astype(bool), structure=structure)
        regions_per_image.append((labeled, n))
        n_regions += n
    n_ok = sum(int((~k.astype(bool)).sum()) for k in masks)
    if n_regions == 0 or n_ok == 0:
        raise ValueError("AU-PRO needs defect regions and defect-free pixels")
    for m, (labeled, n) in zip(maps, regions_per_image):
        sizes = np.bincount(labeled.ravel(), minlength=n + 1).astype(np.float64)
        w_pro = np.zeros(n + 1)
        w_pro[1:] = 1.0 / (sizes[1:] * n_regions)
        lab = labeled.ravel()
        pro_w.append(w_pro[lab])
        fpr_w.append(np.where(lab == 0, 1.0 / n_ok, 0.0))
        scores.append(m.ravel().astype(np.float64))
    scores_all = np.concatenate(scores)
    order = np.argsort(-scores_all, kind="mergesort")
    s_sorted = scores_all[order]
    fpr = np.cumsum(np.concatenate(fpr_w)[order])
    pro = np.cumsum(np.concatenate(pro_w)[order])
    # With equal scores only the point after the last of them is reachable by a threshold.
    last_of_group = np.r_[np.flatnonzero(np.diff(s_sorted)), len(s_sorted) - 1]
    fpr, pro = fpr[last_of_group], pro[last_of_group]
    return np.r_[0.0, fpr], np.r_[0.0, pro]


def _binned_pro_curve(maps, masks) -> tuple[np.ndarray, np.ndarray]:
    """pro_curve with the scores binned (thresholds at the BINS levels), image by image."""
    structure = np.ones((3, 3), dtype=int)
    n_regions = n_ok = 0
    for k in masks:                                          # pass 1: the normalisers
        n_regions += ndimage.label(k.astype(bool), structure=structure)[1]
        n_ok += int((~k.astype(bool)).sum())
    if n_regions == 0 or n_ok == 0:
        raise ValueError("AU-PRO needs defect regions and defect-free pixels")
    to_bin = _binner(maps, BINS)
    fpr_h = np.zeros(BINS)
    pro_h = np.zeros(BINS)
    for m, k in zip(maps, masks):                            # pass 2: weights per bin
        labeled, n = ndimage.label(k.astype(bool), structure=structure)
        lab = labeled.ravel()
        idx = to_bin(m)
        fpr_h += np.bincount(idx[lab == 0], minlength=BINS) / n_ok
        if n:
            sizes = np.bincount(lab, minlength=n + 1).astype(np.float64)
            w = np.zeros(n + 1)
            w[1:] = 1.0 / (sizes[1:] * n_regions)
            inside = lab > 0
            pro_h += np.bincount(idx[inside], weights=w[lab[inside]], minlength=BINS)
    used = (fpr_h + pro_h)[::-1] > 0                         # highest threshold first
    return np.r_[0.0, np.cumsum(fpr_h[::-1])[used]], np.r_[0.0, np.cumsum(pro_h[::-1])[used]]


def au_pro(maps: list[np.ndarray], masks: list[np.ndarray], fpr_limit: float = 0.3,
           exact_limit: int = EXACT_LIMIT) -> float:
    fpr, pro = (pro_curve(maps, masks) if _n_pixels(maps) <= exact_limit
                else _binned_pro_curve(maps, masks))
    return _trapezoid_to(fpr, pro, fpr_limit) / fpr_limit
