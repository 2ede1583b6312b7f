"""The halves of the map balanced by how steady their maxima are on held-out good parts."""
import numpy as np
import pytest
import torch

from engine.train import map_normalisation, quantile


def _maps(peaks: list[float], n_cells: int = 64, seed: int = 0) -> np.ndarray:
    """(N,1,8,8) maps: small noise, and one cell per image at its given peak value."""
    rng = np.random.default_rng(seed)
    m = rng.uniform(0.0, 0.1, (len(peaks), 1, 8, 8)).astype(np.float32)
    m.reshape(len(peaks), -1)[:, 0] = peaks
    return m


def test_without_balance_the_bounds_are_the_papers_quantiles():
    st, ae = _maps([1.0, 1.1, 0.9, 1.0]), _maps([2.0, 3.0, 1.0, 2.0], seed=1)
    (a0, b0), (a1, b1) = map_normalisation(st, ae, 0.9, 0.995, balance=False)
    assert (a0, b0) == (quantile(st, 0.9), quantile(st, 0.995))
    assert (a1, b1) == (quantile(ae, 0.9), quantile(ae, 0.995))


def test_the_half_that_scatters_more_on_good_parts_counts_less():
    """Normalised peaks: the AE's spread 4x the ST's -> the AE's weight a quarter of the ST's,
    mean weight 1; the maps' offsets a stay; balancing a balanced pair changes nothing."""
    st = _maps([1.0, 1.1, 0.9, 1.0, 1.1, 0.9])
    ae = _maps([1.0, 1.4, 0.6, 1.0, 1.4, 0.6])
    paper = map_normalisation(st, ae, 0.9, 0.995, balance=False)
    balanced = map_normalisation(st, ae, 0.9, 0.995, balance=True)
    weights = []
    for (a, b), (a2, b2), m in zip(paper, balanced, (st, ae)):
        assert a2 == a
        weights.append((b - a) / (b2 - a2))          # the map's gain relative to the paper's
    spread = [np.std(0.1 * (m.reshape(6, -1).max(1) - a) / (b - a), ddof=1)
              for m, (a, b) in zip((st, ae), paper)]
    assert weights[1] / weights[0] == pytest.approx(spread[0] / spread[1], rel=1e-6)
    assert np.mean(weights) == pytest.approx(1.0)
    same = map_normalisation(st, st.copy(), 0.9, 0.995, balance=True)
    assert same[0] == pytest.approx(same[1])
    assert same[0] == pytest.approx(paper[0])


def test_a_balanced_model_folds_and_scores_like_its_maps():
    """The weights live in the model's quantile buffers, so every scoring path that folds
    the model (engine.fast) scores the balanced map without knowing about it."""
    from engine.fast import FoldedEfficientAD
    from engine.model import EfficientAD, ModelConfig
    from engine.train import raw_holdout_maps, scores_from_maps, set_map_quantiles
    torch.manual_seed(0)
    model = EfficientAD(ModelConfig(image_size=64)).eval()
    hold = (torch.rand(6, 3, 64, 64) * 255).to(torch.uint8)
    with torch.no_grad():
        m_st, m_ae = raw_holdout_maps(model, hold, torch.device("cpu"))
        set_map_quantiles(model, m_st, m_ae, 0.9, 0.995, balance=True)
        (a0, b0), (a1, b1) = map_normalisation(m_st, m_ae, 0.9, 0.995, True)
        assert float(model.q_st_b) == pytest.approx(b0) and float(model.q_ae_b) == pytest.approx(b1)
        u = hold.float() / 255
        own = model(model.normalize_image(u))                         # (6,1,s,s)
        torch.testing.assert_close(FoldedEfficientAD(model)(u), own, rtol=1e-4, atol=1e-5)
        from engine.model import map_to_image
        direct = map_to_image(own, 64, (64, 64)).amax(dim=(1, 2, 3)).double().numpy()
    np.testing.assert_allclose(scores_from_maps(model, m_st, m_ae), direct, rtol=1e-5, atol=1e-6)
