"""Every fast scoring path against the eager fp32 baseline, on real images from ../shared/data."""
import numpy as np
import pytest
import torch

from conftest import SHARED_DATA
from engine.data import load_rgb
from engine.fast import FoldedEfficientAD, export_onnx
from engine.model import EfficientAD, ModelConfig
from engine.scoring import Scorer

REAL = sorted(SHARED_DATA.glob("*/*/test/*/*.png"))[::97][:6] + \
    sorted(SHARED_DATA.glob("*/*/test/*/*.jpg"))[::97][:2]


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = EfficientAD(ModelConfig(image_size=128)).eval()
    with torch.no_grad():                        # non-trivial constants to fold
        m.teacher_mean.normal_(0, 0.1)
        m.teacher_std.uniform_(0.5, 2.0)
        u = torch.rand(4, 3, 128, 128)
        st, ae = m.raw_maps(m.normalize_image(u))
        m.q_st_a.fill_(float(st.quantile(0.9))); m.q_st_b.fill_(float(st.quantile(0.995)))
        m.q_ae_a.fill_(float(ae.quantile(0.9))); m.q_ae_b.fill_(float(ae.quantile(0.995)))
    return m


@pytest.fixture(scope="module")
def frames():
    if not REAL:
        pytest.skip(f"no real images under {SHARED_DATA}")
    return [load_rgb(p) for p in REAL]


def test_folding_is_exact(model):
    u = torch.rand(2, 3, 128, 128)
    with torch.no_grad():
        assert torch.allclose(FoldedEfficientAD(model)(u), model(model.normalize_image(u)),
                              rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("backend,rel_tol", [
    ("torch-fp32", 1e-4), ("torch-fp32-nnpack", 1e-4), ("onnxruntime", 1e-4), ("openvino-fp32", 1e-4)])
def test_backend_matches_eager_on_real_images(model, frames, backend, rel_tol):
    """The exact paths; the reduced-precision ones are calibrated models: test_precision.py."""
    eager = Scorer(model, {"threshold": 0.0}, "cpu", backend="eager")
    fast = Scorer(model, {"threshold": 0.0}, "cpu", backend=backend)
    ref, out = eager.score(frames), fast.score(frames)
    scale = np.abs(ref.scores).max()
    assert np.abs(out.scores - ref.scores).max() <= rel_tol * scale
    for a, b in zip(out.maps, ref.maps):
        assert a.shape == b.shape
        assert np.abs(a - b).max() <= rel_tol * scale * 2


@pytest.mark.parametrize("cin,cout,k,pad,hw", [
    (3, 16, 4, 3, 40), (16, 32, 4, 3, 21), (32, 32, 3, 1, 12), (32, 48, 4, 0, 12), (8, 8, 4, 2, 9)])
def test_nnpack_conv_matches_conv(cin, cout, k, pad, hw):
    from engine.fast import NnpackConv2d, nnpack_available
    if not nnpack_available():
        pytest.skip("no NNPACK on this CPU")
    torch.manual_seed(1)
    conv = torch.nn.Conv2d(cin, cout, k, padding=pad)
    x = torch.rand(2, cin, hw, hw)
    with torch.no_grad():
        ref, out = conv(x), NnpackConv2d(conv)(x)
    assert out.shape == ref.shape
    assert (out - ref).abs().max() <= 1e-4 * ref.abs().max()


def test_auto_backend_on_cpu_is_exact_fast_path(model):
    from engine.autopath import exact_paths
    sc = Scorer(model, {}, "cpu", backend="auto")      # no reduced calibration: exact, timed
    assert sc.backend in exact_paths(torch.device("cpu"))
    assert set(dict(sc.path_choice.timings)) == set(exact_paths(torch.device("cpu")))


def test_onnx_graph_outputs(model, tmp_path):
    import onnxruntime as ort
    path = export_onnx(model, tmp_path / "m.onnx")
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    u = torch.rand(3, 3, 128, 128)
    full, score, grid = sess.run(None, {"image": u.numpy()})
    assert full.shape == (3, 1, 128, 128) and score.shape == (3,)
    with torch.no_grad():
        ref = model(model.normalize_image(u))
    assert np.allclose(score, ref.amax(dim=(1, 2, 3)).numpy(), rtol=1e-4, atol=1e-6)
    assert np.allclose(grid, ref.numpy(), rtol=1e-4, atol=1e-6)


def test_cuda_backend_refused_without_gpu(model):
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    from engine.errors import InspectError
    with pytest.raises(InspectError):
        Scorer(model, {}, "cpu", backend="torch-fp16-graph")
