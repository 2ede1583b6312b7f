"""The one place where camera pixel data becomes a C-contiguous H×W×3 uint8 RGB array.

Input is the bytes of one image as the camera sent them (a GenTL buffer, a test vector),
with optional padding bytes at the end of every row. Output never shares memory with the
input: GenTL buffers are handed back to the producer and overwritten by later frames.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from engine.errors import InspectError


@dataclass(frozen=True)
class PixelLayout:
    name: str
    bytes_per_pixel: int
    channels: int          # samples per pixel as stored (Bayer mosaics are 1)
    bit_depth: int         # significant bits per sample (Mono12 stored in 16 bits -> 12)


_LAYOUTS = {p.name: p for p in [
    PixelLayout("Mono8", 1, 1, 8),
    PixelLayout("Mono10", 2, 1, 10),
    PixelLayout("Mono12", 2, 1, 12),
    PixelLayout("Mono16", 2, 1, 16),
    PixelLayout("RGB8", 3, 3, 8),
    PixelLayout("BGR8", 3, 3, 8),
    PixelLayout("RGBa8", 4, 4, 8),
    PixelLayout("BGRa8", 4, 4, 8),
    PixelLayout("BayerRG8", 1, 1, 8),
    PixelLayout("BayerGR8", 1, 1, 8),
    PixelLayout("BayerGB8", 1, 1, 8),
    PixelLayout("BayerBG8", 1, 1, 8),
]}
SUPPORTED_FORMATS: tuple[str, ...] = tuple(_LAYOUTS)
_BY_LOWER = {name.lower(): lay for name, lay in _LAYOUTS.items()}   # users type "mono8"

# PFNC names Bayer patterns by their top-left 2×2 cell. OpenCV ≥ 4.x also has codes named
# that way (COLOR_BayerRGGB2RGB); its older short codes are named by the cell one pixel in,
# so the fallback pairs look swapped on purpose.
_BAYER_CODES = {
    "BayerRG8": ("COLOR_BayerRGGB2RGB", "COLOR_BayerBG2RGB"),
    "BayerGR8": ("COLOR_BayerGRBG2RGB", "COLOR_BayerGB2RGB"),
    "BayerGB8": ("COLOR_BayerGBRG2RGB", "COLOR_BayerGR2RGB"),
    "BayerBG8": ("COLOR_BayerBGGR2RGB", "COLOR_BayerRG2RGB"),
}


def layout(pixel_format: str) -> PixelLayout:
    """The storage layout of a format, or InspectError naming the format and the choices."""
    try:
        return _BY_LOWER[str(pixel_format).lower()]
    except KeyError:
        raise InspectError(
            f"Pixel format {pixel_format!r} is not supported; choose one of "
            f"{', '.join(SUPPORTED_FORMATS)} on the camera.") from None


def is_supported(pixel_format: str) -> bool:
    return str(pixel_format).lower() in _BY_LOWER


def _rows(data: bytes | bytearray | memoryview | np.ndarray, width: int, height: int,
          lay: PixelLayout, row_padding: int) -> np.ndarray:
    """A H×(W·bytes) uint8 view of the image bytes with the row padding cut off."""
    flat = np.frombuffer(data, dtype=np.uint8) if not isinstance(data, np.ndarray) \
        else data.reshape(-1).view(np.uint8)
    if width <= 0 or height <= 0 or row_padding < 0:
        raise InspectError(f"Image size {width}×{height} (row padding {row_padding}) is invalid.")
    line = width * lay.bytes_per_pixel
    stride = line + row_padding
    # The last row needs no padding after it: some producers cut the buffer there.
    needed = stride * (height - 1) + line
    if flat.size < needed:
        raise InspectError(
            f"{lay.name} image {width}×{height} needs {needed} bytes but the buffer holds "
            f"{flat.size}; the camera's Width/Height/PixelFormat and the data disagree.")
    return np.lib.stride_tricks.as_strided(flat, shape=(height, line), strides=(stride, 1),
                                           writeable=False)


def _bayer_code(pixel_format: str) -> int:
    modern, legacy = _BAYER_CODES[pixel_format]
    return getattr(cv2, modern, None) or getattr(cv2, legacy)


def to_rgb(data: bytes | bytearray | memoryview | np.ndarray, width: int, height: int,
           pixel_format: str, *, row_padding: int = 0, keep_raw: bool = False
           ) -> tuple[np.ndarray, np.ndarray | None]:
    """Convert one image -> (rgb H×W×3 uint8, raw or None).

    `row_padding` is the number of bytes after each row (GenTL's BUFFER_INFO_PADDING_X).
    `raw`, when asked for, keeps the camera's samples at their own depth: H×W uint16 for
    Mono10/12/16, H×W uint8 for Mono8 and Bayer mosaics, H×W×C uint8 for colour formats.
    Multi-byte samples are little-endian, as GenICam's unpacked formats are.
    """
    lay = layout(pixel_format)
    rows = _rows(data, width, height, lay, row_padding)
    raw: np.ndarray | None = None
    if lay.name == "Mono8" or lay.name.startswith("Bayer"):
        mosaic = rows.copy()       # a copy, never a view: `data` goes back to the producer
        if lay.name == "Mono8":
            rgb = np.repeat(mosaic[:, :, None], 3, axis=2)
        else:
            rgb = cv2.cvtColor(mosaic, _bayer_code(lay.name))
        raw = mosaic if keep_raw else None
    elif lay.bytes_per_pixel == 2:
        samples = rows.copy().view("<u2").astype(np.uint16)   # native order, own memory
        # Keep the top 8 significant bits; stray bits above the depth saturate, not wrap.
        shift = lay.bit_depth - 8
        grey = np.minimum(samples >> shift, 255).astype(np.uint8)
        rgb = np.repeat(grey[:, :, None], 3, axis=2)
        raw = samples if keep_raw else None
    else:
        pixels = rows.reshape(height, width, lay.channels)
        order = [0, 1, 2] if lay.name.startswith("RGB") else [2, 1, 0]
        rgb = pixels[:, :, order].copy()               # fancy indexing: a fresh array
        raw = pixels.copy() if keep_raw else None
    return np.ascontiguousarray(rgb), raw

