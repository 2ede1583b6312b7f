"""Pixel-format conversion against buffers whose correct RGB result is known by construction."""
import numpy as np
import pytest

from engine.camera.pixels import SUPPORTED_FORMATS, layout, to_rgb
from engine.errors import InspectError


def grey(values, h, w):
    g = np.asarray(values, np.uint8).reshape(h, w)
    return np.repeat(g[:, :, None], 3, axis=2)


def le16(samples):
    return np.asarray(samples, dtype="<u2").tobytes()


@pytest.mark.parametrize("fmt, samples, expected", [
    ("Mono10", [0, 4, 1023, 512, 3, 1020], [0, 1, 255, 128, 0, 255]),
    ("Mono12", [0, 16, 4095, 2048, 15, 4080], [0, 1, 255, 128, 0, 255]),
    ("Mono16", [0, 256, 65535, 32768, 255, 65280], [0, 1, 255, 128, 0, 255]),
])
def test_mono_high_bit_depths_keep_top_8_bits_and_raw(fmt, samples, expected):
    rgb, raw = to_rgb(le16(samples), 3, 2, fmt, keep_raw=True)
    assert rgb.dtype == np.uint8 and rgb.shape == (2, 3, 3) and rgb.flags.c_contiguous
    np.testing.assert_array_equal(rgb, grey(expected, 2, 3))
    assert raw.dtype == np.uint16
    np.testing.assert_array_equal(raw, np.asarray(samples).reshape(2, 3))
    assert layout(fmt).bit_depth == int(fmt[4:])


def test_stray_bits_above_the_depth_saturate_instead_of_wrapping():
    rgb, _ = to_rgb(le16([0xFFFF, 0x1000]), 2, 1, "Mono12")
    assert rgb[0, :, 0].tolist() == [255, 255]


def test_mono8():
    rgb, raw = to_rgb(bytes([0, 1, 2, 3, 4, 255]), 3, 2, "Mono8", keep_raw=True)
    np.testing.assert_array_equal(rgb, grey([0, 1, 2, 3, 4, 255], 2, 3))
    np.testing.assert_array_equal(raw, [[0, 1, 2], [3, 4, 255]])


@pytest.mark.parametrize("fmt, pixel", [
    ("RGB8", [10, 20, 30]), ("BGR8", [30, 20, 10]),
    ("RGBa8", [10, 20, 30, 99]), ("BGRa8", [30, 20, 10, 99]),
])
def test_colour_formats(fmt, pixel):
    second = [v + 100 for v in pixel]
    rgb, raw = to_rgb(bytes(pixel + second), 2, 1, fmt, keep_raw=True)
    np.testing.assert_array_equal(rgb, [[[10, 20, 30], [110, 120, 130]]])
    assert raw.shape == (1, 2, len(pixel))


CELLS = {"BayerRG8": "RGGB", "BayerGR8": "GRBG", "BayerGB8": "GBRG", "BayerBG8": "BGGR"}


def mosaic(colour, cells, h=10, w=12):
    """A Bayer mosaic of a uniform colour: each site holds that colour's sample for its filter."""
    m = np.empty((h, w), np.uint8)
    for k, ch in enumerate(cells):
        dy, dx = divmod(k, 2)
        m[dy::2, dx::2] = colour["RGB".index(ch)]
    return m


@pytest.mark.parametrize("fmt", sorted(CELLS))
def test_bayer_patterns_demosaic_to_the_true_colour(fmt):
    colour = (200, 100, 40)          # all three differ: a wrong pattern permutes them
    m = mosaic(colour, CELLS[fmt])
    rgb, raw = to_rgb(m.tobytes(), m.shape[1], m.shape[0], fmt, keep_raw=True)
    assert rgb.shape == (10, 12, 3)
    # bilinear demosaicing reproduces a uniform colour exactly away from the border
    np.testing.assert_array_equal(rgb[2:-2, 2:-2], np.broadcast_to(colour, (6, 8, 3)))
    np.testing.assert_array_equal(raw, m)


@pytest.mark.parametrize("fmt", SUPPORTED_FORMATS)
def test_row_padding_is_skipped(fmt):
    lay = layout(fmt)
    h, w, pad = 4, 6, 5
    rng = np.random.default_rng(0)
    body = rng.integers(0, 256, (h, w * lay.bytes_per_pixel), dtype=np.uint8)
    padded = np.concatenate([body, np.full((h, pad), 0xEE, np.uint8)], axis=1)
    plain, _ = to_rgb(body.tobytes(), w, h, fmt)
    with_pad, _ = to_rgb(padded.tobytes(), w, h, fmt, row_padding=pad)
    np.testing.assert_array_equal(with_pad, plain)
    # some producers end the buffer right after the last row's pixels
    cut, _ = to_rgb(padded.tobytes()[:-pad], w, h, fmt, row_padding=pad)
    np.testing.assert_array_equal(cut, plain)


@pytest.mark.parametrize("fmt", SUPPORTED_FORMATS)
def test_result_never_shares_memory_with_the_camera_buffer(fmt):
    lay = layout(fmt)
    data = bytearray(np.arange(4 * 4 * lay.bytes_per_pixel, dtype=np.uint8).tobytes())
    rgb, raw = to_rgb(data, 4, 4, fmt, keep_raw=True)
    before = rgb.copy(), raw.copy()
    data[:] = bytes(len(data))              # the producer reuses its buffer for the next frame
    np.testing.assert_array_equal(rgb, before[0])
    np.testing.assert_array_equal(raw, before[1])
    assert rgb.flags.c_contiguous and rgb.flags.writeable


def test_longer_buffers_are_fine_and_short_ones_are_named():
    rgb, _ = to_rgb(bytes(100), 3, 2, "Mono8")        # GenTL buffers are often larger
    assert rgb.shape == (2, 3, 3)
    with pytest.raises(InspectError, match=r"Mono16 image 3×2 needs 12 bytes .* holds 10"):
        to_rgb(bytes(10), 3, 2, "Mono16")


def test_unsupported_format_is_named_with_the_choices():
    with pytest.raises(InspectError, match=r"'Mono12p' is not supported.*Mono8.*BayerBG8"):
        to_rgb(bytes(16), 2, 2, "Mono12p")


def test_format_names_are_case_insensitive():
    rgb, _ = to_rgb(bytes([7, 8]), 2, 1, "mono8")
    assert rgb[0, 1].tolist() == [8, 8, 8]
