"""A small, fast, lossless PNG writer with embedded text, and a reader for that text.

Why not cv2/Pillow: libpng tries every row filter and full LZ77 matching, which costs
85-180 ms for a 1024x1024 RGB picture on a 2-core line PC; the log must keep 100 FAIL
pictures/s. Here one numpy "Up" filter plus zlib's Huffman-only strategy gives ~57 % of the
raw size in a fraction of the time, and `compress=False` (stored deflate blocks) is a
memcpy for bursts. Both are ordinary PNGs any viewer reads.

The text chunk carries the inspection's metadata, so a picture whose row never committed
(crash between rename and commit) can be turned back into its row at startup.
"""
from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import numpy as np

SIGNATURE = b"\x89PNG\r\n\x1a\n"
METADATA_KEY = "inspection"          # tEXt keyword holding the record's JSON
_FILTER_UP = 2


def _chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(data, zlib.crc32(kind))
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def encode_png(rgb: np.ndarray, compress: bool = True, metadata: dict | None = None) -> bytes:
    """PNG bytes of an H×W×3 uint8 RGB array; `metadata` (plain JSON values) goes in a tEXt chunk."""
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"encode_png needs H×W×3 uint8, got {rgb.dtype} {rgb.shape}")
    h, w, _ = rgb.shape
    flat = np.ascontiguousarray(rgb).reshape(h, w * 3)
    rows = np.empty((h, w * 3 + 1), np.uint8)
    if compress:
        # "Up" filter: each byte minus the byte above (mod 256); rows of a camera picture
        # are alike, so the residuals cluster near 0 and Huffman coding alone shrinks them.
        rows[:, 0] = _FILTER_UP
        rows[0, 1:] = flat[0]
        np.subtract(flat[1:], flat[:-1], out=rows[1:, 1:])
        packer = zlib.compressobj(1, zlib.DEFLATED, 15, 9, zlib.Z_HUFFMAN_ONLY)
        idat = packer.compress(rows) + packer.flush()
    else:
        rows[:, 0] = 0
        rows[:, 1:] = flat
        idat = zlib.compress(rows, 0)        # one pass: half the cost of a compressobj
    parts = [SIGNATURE, _chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))]
    if metadata is not None:
        # tEXt is Latin-1 only; ensure_ascii keeps any station name safe inside it.
        text = json.dumps(metadata, ensure_ascii=True, separators=(",", ":"))
        parts.append(_chunk(b"tEXt", METADATA_KEY.encode("latin-1") + b"\0" + text.encode("ascii")))
    parts += [_chunk(b"IDAT", idat), _chunk(b"IEND", b"")]
    return b"".join(parts)


def read_png_metadata(path: Path) -> dict | None:
    """The inspection metadata of a PNG written by `encode_png`, or None when it has none
    or the file is not a readable PNG. Reads only the chunks before the picture data."""
    try:
        with open(path, "rb") as f:
            if f.read(8) != SIGNATURE:
                return None
            while True:
                head = f.read(8)
                if len(head) < 8:
                    return None
                length, kind = struct.unpack(">I4s", head)
                if kind in (b"IDAT", b"IEND"):
                    return None              # the text chunk always precedes the pixels
                data = f.read(length)
                crc = f.read(4)
                if len(data) < length or len(crc) < 4:
                    return None
                if struct.unpack(">I", crc)[0] != zlib.crc32(data, zlib.crc32(kind)):
                    return None
                if kind == b"tEXt":
                    key, _, value = data.partition(b"\0")
                    if key.decode("latin-1") == METADATA_KEY:
                        meta = json.loads(value.decode("ascii"))
                        return meta if isinstance(meta, dict) else None
    except (OSError, ValueError):
        return None
