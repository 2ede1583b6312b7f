"""Metrics against independent computations: sklearn's ROC AUC, and a brute-force PRO curve
that thresholds at every score and measures each region's overlap directly."""
import numpy as np
import pytest
from scipy import ndimage
from sklearn.metrics import roc_auc_score

from engine.metrics import au_pro, image_auroc, pixel_auroc


def test_auroc_matches_sklearn_with_ties():
    rng = np.random.default_rng(0)
    for _ in range(20):
        n = rng.integers(5, 60)
        labels = rng.integers(0, 2, n)
        labels[0], labels[1] = 0, 1
        scores = rng.integers(0, 6, n).astype(float)        # many ties
        assert image_auroc(scores, labels) == pytest.approx(roc_auc_score(labels, scores))


def test_auroc_extremes():
    assert image_auroc([0.1, 0.2, 0.9, 0.8], [0, 0, 1, 1]) == 1.0
    assert image_auroc([0.9, 0.8, 0.1, 0.2], [0, 0, 1, 1]) == 0.0
    assert image_auroc([0.5, 0.5, 0.5, 0.5], [0, 0, 1, 1]) == 0.5


def test_pixel_auroc_matches_sklearn():
    rng = np.random.default_rng(1)
    maps = [rng.random((8, 9)) for _ in range(3)]
    masks = [rng.random((8, 9)) > 0.8 for _ in range(3)]
    ref = roc_auc_score(np.concatenate([m.ravel() for m in masks]),
                        np.concatenate([m.ravel() for m in maps]))
    assert pixel_auroc(maps, masks) == pytest.approx(ref)


def brute_force_au_pro(maps, masks, limit=0.3):
    """Threshold at every distinct score, measure FPR and mean region overlap directly."""
    structure = np.ones((3, 3))
    region_info = []
    for img_i, k in enumerate(masks):
        lab, n = ndimage.label(k, structure=structure)
        region_info += [(img_i, lab == r) for r in range(1, n + 1)]
    ok = sum((~k).sum() for k in masks)
    thresholds = np.unique(np.concatenate([m.ravel() for m in maps]))[::-1]
    fprs, pros = [0.0], [0.0]
    for t in thresholds:
        fp = sum(((m >= t) & ~k).sum() for m, k in zip(maps, masks))
        pro = np.mean([((maps[i] >= t) & reg).sum() / reg.sum() for i, reg in region_info])
        fprs.append(fp / ok)
        pros.append(pro)
    fprs, pros = np.array(fprs), np.array(pros)
    # integrate to `limit` with linear interpolation at the limit
    xs = np.linspace(0, limit, 20001)
    return np.trapezoid(np.interp(xs, fprs, pros), xs) / limit


@pytest.mark.parametrize("seed", range(6))
def test_au_pro_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    maps, masks = [], []
    for _ in range(3):
        k = np.zeros((12, 12), bool)
        for _ in range(rng.integers(0, 3)):
            y, x = rng.integers(0, 9, 2)
            k[y:y + rng.integers(1, 4), x:x + rng.integers(1, 4)] = True
        m = rng.random((12, 12)) + 0.7 * k
        maps.append(np.round(m, 2))        # rounding creates ties
        masks.append(k)
    masks[0][2:4, 2:4] = True               # at least one region
    assert au_pro(maps, masks) == pytest.approx(brute_force_au_pro(maps, masks), abs=2e-4)


def test_au_pro_perfect_and_good_images():
    k = np.zeros((10, 10), bool)
    k[3:6, 3:6] = True
    good = np.zeros((10, 10), bool)
    assert au_pro([k.astype(float), np.zeros((10, 10))], [k, good]) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        au_pro([np.zeros((4, 4))], [np.zeros((4, 4), bool)])


def _defect_maps(seed, n=6, hw=(60, 80)):
    rng = np.random.default_rng(seed)
    maps, masks = [], []
    for i in range(n):
        k = np.zeros(hw, bool)
        if i % 3:
            y, x = rng.integers(0, hw[0] - 12), rng.integers(0, hw[1] - 12)
            k[y:y + rng.integers(2, 12), x:x + rng.integers(2, 12)] = True
        maps.append((rng.random(hw) + 0.8 * k * rng.random(hw)).astype(np.float32))
        masks.append(k)
    masks[1][5:9, 5:9] = True
    return maps, masks


@pytest.mark.parametrize("seed", range(3))
def test_binned_pixel_metrics_match_exact_ones(seed):
    """Above EXACT_LIMIT pixels the metrics are binned (memory); they must agree."""
    maps, masks = _defect_maps(seed)
    assert pixel_auroc(maps, masks, exact_limit=0) == pytest.approx(pixel_auroc(maps, masks), abs=1e-4)
    assert au_pro(maps, masks, exact_limit=0) == pytest.approx(au_pro(maps, masks), abs=1e-4)
    k = np.zeros((10, 10), bool)
    k[3:6, 3:6] = True
    assert au_pro([k.astype(np.float32), np.zeros((10, 10), np.float32)], [k, np.zeros_like(k)],
                  exact_limit=0) == pytest.approx(1.0)
