"""Safe image loading, image folders and the MVTec AD layout.

Every image leaves here as a C-contiguous H×W×3 uint8 RGB array. An unreadable file is
reported by name (through `on_skip`) and skipped; it never reaches torch.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image, UnidentifiedImageError

from engine.errors import InspectError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}
Image.MAX_IMAGE_PIXELS = 200_000_000   # 14k × 14k; larger is more likely an attack than a camera


def load_rgb(path: str | Path) -> np.ndarray:
    """Read any 8/16-bit, grey, palette or RGBA image -> H×W×3 uint8 RGB. InspectError if broken."""
    path = Path(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(path) as im:
                im.load()
                if im.mode in ("I;16", "I;16B", "I;16L", "I"):
                    a = np.asarray(im, dtype=np.float32)
                    peak = max(float(a.max()), 1.0)
                    a = (a / (65535.0 if peak > 4095 else 4095.0 if peak > 255 else 255.0)) * 255
                    grey = np.clip(a, 0, 255).astype(np.uint8)
                    return np.ascontiguousarray(np.repeat(grey[:, :, None], 3, axis=2))
                rgb = im.convert("RGB")
                return np.ascontiguousarray(np.asarray(rgb, dtype=np.uint8))
    except FileNotFoundError as e:
        raise InspectError(f"Image {path} does not exist.") from e
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise InspectError(f"Image {path} cannot be read ({type(e).__name__}: {e}).") from e


MASK_SUFFIX = "_mask.png"     # ground-truth / simulated-defect masks (MVTec, `grab --source sim`)


def is_mask_file(path: Path) -> bool:
    return path.name.lower().endswith(MASK_SUFFIX)


def list_images(folder: str | Path, on_skip: Callable[[Path, str], None] | None = None) -> list[Path]:
    """Image files in a folder (not recursive), in name order.

    `*_mask.png` files are left out: they are defect masks, not pictures of parts, and
    learning them as good parts would teach the model that black-and-white blobs are fine.
    `on_skip(folder, message)` is told once how many were left out.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InspectError(f"Folder {folder} does not exist.")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    masks = [p for p in files if is_mask_file(p)]
    if masks and on_skip is not None:
        on_skip(folder, f"{len(masks)} mask file(s) (*{MASK_SUFFIX}, e.g. {masks[0].name}) in "
                        f"{folder}: masks are not pictures of parts")
    return [p for p in files if not is_mask_file(p)]


def expand_inputs(items: list[str | Path], on_skip: Callable[[Path, str], None] | None = None
                  ) -> list[Path]:
    """Files and folders from a command line -> image files (folders in name order, without
    their `*_mask.png` files; a file named on the command line is always kept)."""
    out: list[Path] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            out.extend(list_images(p, on_skip))
        elif p.exists():
            out.append(p)
        else:
            raise InspectError(f"{p} does not exist.")
    return out


def load_images(paths: list[Path], on_skip: Callable[[Path, str], None] | None = None
                ) -> tuple[list[np.ndarray], list[Path]]:
    """Load what can be read; report each unreadable file by name and skip it."""
    images, kept = [], []
    for p in paths:
        try:
            images.append(load_rgb(p))
            kept.append(p)
        except InspectError as e:
            if on_skip is not None:
                on_skip(p, str(e))
    return images, kept


def load_mask(path: Path, shape: tuple[int, int]) -> np.ndarray:
    """Binary ground-truth mask (H×W bool); clear error if missing or the wrong size."""
    if not path.is_file():
        raise InspectError(f"Ground-truth mask {path} is missing; every defective test image needs one.")
    try:
        with Image.open(path) as im:
            m = np.asarray(im.convert("L")) > 127
    except (UnidentifiedImageError, OSError) as e:
        raise InspectError(f"Ground-truth mask {path} cannot be read ({e}).") from e
    if m.shape != shape:
        raise InspectError(f"Ground-truth mask {path} is {m.shape[1]}×{m.shape[0]}, "
                           f"its image is {shape[1]}×{shape[0]}.")
    return m
