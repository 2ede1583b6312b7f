"""The log's own PNG writer: lossless for any size, readable by cv2 and Pillow, metadata back."""
import io

import cv2
import numpy as np
import pytest
from PIL import Image

from engine.log.png import encode_png, read_png_metadata

try:
    from pg_server import picture
except ImportError:                      # tests/ became a package
    from tests.pg_server import picture  # noqa: F401


@pytest.mark.parametrize("compress", [True, False])
@pytest.mark.parametrize("shape", [(1, 1), (3, 5), (48, 64), (257, 130)])
def test_png_is_lossless_and_readable_everywhere(compress, shape):
    rgb = picture(shape[0] * 7 + shape[1], *shape)
    rgb[0, 0] = (0, 255, 7)              # extremes survive the Up filter's modulo arithmetic
    data = encode_png(rgb, compress=compress, metadata={"verdict": "FAIL"})
    via_cv2 = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)[..., ::-1]
    via_pil = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    assert np.array_equal(via_cv2, rgb)
    assert np.array_equal(via_pil, rgb)


def test_compressed_png_is_smaller_than_stored():
    rgb = picture(1, 256, 256)
    assert len(encode_png(rgb, compress=True)) < 0.8 * len(encode_png(rgb, compress=False))


def test_metadata_reads_back_and_damage_is_detected(tmp_path):
    meta = {"t_us": 1, "station": "Linie 3 / Öfen", "score": 0.5, "verdict": "FAIL"}
    path = tmp_path / "a.png"
    path.write_bytes(encode_png(picture(2), metadata=meta))
    assert read_png_metadata(path) == meta
    plain = tmp_path / "b.png"
    plain.write_bytes(encode_png(picture(2)))
    assert read_png_metadata(plain) is None
    damaged = bytearray(path.read_bytes())
    damaged[60] ^= 0xFF                   # inside the text chunk: its CRC no longer matches
    path.write_bytes(bytes(damaged))
    assert read_png_metadata(path) is None
    (tmp_path / "c.png").write_bytes(b"not a png")
    assert read_png_metadata(tmp_path / "c.png") is None
    assert read_png_metadata(tmp_path / "absent.png") is None


def test_rejects_non_rgb():
    with pytest.raises(ValueError):
        encode_png(np.zeros((4, 4), np.uint8))
    with pytest.raises(ValueError):
        encode_png(np.zeros((4, 4, 3), np.float32))
