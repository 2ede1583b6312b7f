"""Tiny synthetic parts for engine tests: a blue square on grey with sensor noise;
defects are bright yellow blobs. Deterministic for a seed."""
from __future__ import annotations

import numpy as np


def make_part(rng: np.random.Generator, defect: bool = False, size: int = 96) -> tuple[np.ndarray, np.ndarray]:
    """-> (H×W×3 uint8 RGB image, H×W bool defect mask)."""
    im = np.full((size, size, 3), 200, np.int16)
    a, b = size // 5, size - size // 5
    im[a:b, a:b] = (60, 90, 160)
    im += rng.integers(-8, 9, im.shape, dtype=np.int16)
    mask = np.zeros((size, size), bool)
    if defect:
        s = size // 9
        y, x = rng.integers(a + 2, b - s - 2, 2)
        im[y:y + s, x:x + s] = (250, 250, 30)
        mask[y:y + s, x:x + s] = True
    return np.clip(im, 0, 255).astype(np.uint8), mask


def write_mvtec(root, category: str, n_train: int = 16, n_good: int = 4, n_bad: int = 4, seed: int = 0):
    """An MVTec-layout folder with one defect type 'blob'."""
    import cv2
    from pathlib import Path

    rng = np.random.default_rng(seed)
    base = Path(root) / category
    for d in ("train/good", "test/good", "test/blob", "ground_truth/blob"):
        (base / d).mkdir(parents=True, exist_ok=True)
    for i in range(n_train):
        cv2.imwrite(str(base / "train/good" / f"{i:03d}.png"), make_part(rng)[0][:, :, ::-1])
    for i in range(n_good):
        cv2.imwrite(str(base / "test/good" / f"{i:03d}.png"), make_part(rng)[0][:, :, ::-1])
    for i in range(n_bad):
        im, m = make_part(rng, defect=True)
        cv2.imwrite(str(base / "test/blob" / f"{i:03d}.png"), im[:, :, ::-1])
        cv2.imwrite(str(base / "ground_truth/blob" / f"{i:03d}_mask.png"), (m * 255).astype(np.uint8))
    return base
