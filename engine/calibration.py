"""The default threshold: aimed at a stated false-reject rate, from good parts only.

An image's score is the maximum of its anomaly map, a maximum over thousands of cells, so
the scores of good parts follow an extreme-value law; the Gumbel law (the limit for maxima
of light-tailed cells) is fitted to the held-out good scores by L-moments (robust with a
handful of values, no iteration), and the threshold is its (1 - target) quantile:

    beta = l2 / ln 2,   mu = l1 - 0.5772 * beta          (l1, l2: first two L-moments)
    threshold = mu - beta * ln(-ln(1 - target))

How sure that is depends on how many held-out parts there are, so two figures go with it:
a bootstrap interval of the false-reject rate the threshold would give (refit on resampled
scores), and the distribution-free upper bound 1 - 0.05^(1/n) that n good parts, all
passing, can vouch for on their own. With 5 held-out parts that bound is 45%: the figure
the fit gives is then a model's guess, and the sentence says so.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

EULER_GAMMA = 0.5772156649015329
DEFAULT_TARGET_FRR = 0.01
_BOOTSTRAP = 2000
FEW_GOOD = 20            # below this many held-out parts the sentence asks for more


@dataclass(frozen=True)
class ThresholdEstimate:
    threshold: float
    target_frr: float            # what the threshold aims at (fraction of good parts)
    frr_low: float               # 90% bootstrap interval of the false-reject rate it gives
    frr_high: float
    frr_bound: float             # 95% distribution-free upper bound from the passing parts
    holdout_frr: float           # share of the held-out parts themselves at or above it
    n_good: int
    location: float              # Gumbel mu, beta of the fit
    scale: float
    method: str = "gumbel-lmoments"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ThresholdEstimate":
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})

    def sentence(self) -> str:
        """What an engineer reads on the Learn screen and the model card."""
        text = (f"Expected false rejects: {_pct(self.target_frr)} of good parts "
                f"(likely {_pct(self.frr_low)}–{_pct(self.frr_high)}), "
                f"from {self.n_good} held-out good parts")
        if self.n_good < FEW_GOOD:
            text += (f"; so few parts can only vouch for under {_pct(self.frr_bound)} on their own"
                     " — learn from more good parts for a surer figure")
        return text + "."


def _pct(x: float) -> str:
    x *= 100
    return f"{x:.1f}%" if x < 10 else f"{x:.0f}%"


def fit_gumbel(scores: np.ndarray) -> tuple[float, float]:
    """(mu, beta) by L-moments. A zero spread (identical scores) gets a tiny positive scale
    so the threshold sits just above them instead of on them."""
    x = np.sort(np.asarray(scores, dtype=np.float64).ravel())
    n = x.size
    if n < 2:
        raise ValueError("a threshold needs at least two good scores")
    b0 = x.mean()
    b1 = float(np.sum(np.arange(n) / (n - 1) * x) / n)
    l2 = 2.0 * b1 - b0
    beta = max(l2 / math.log(2.0), 1e-6 * max(abs(b0), 1.0))
    return float(b0 - EULER_GAMMA * beta), float(beta)


def gumbel_quantile(mu: float, beta: float, p: float) -> float:
    return mu - beta * math.log(-math.log(p))


def gumbel_exceedance(mu, beta, t):
    """P(score >= t) under the fit; numpy-vectorised over mu, beta."""
    return -np.expm1(-np.exp(-(t - np.asarray(mu)) / np.asarray(beta)))


def estimate_threshold(scores: np.ndarray, target_frr: float = DEFAULT_TARGET_FRR,
                       seed: int = 0) -> ThresholdEstimate:
    """The threshold aimed at `target_frr`, with how sure it is (see the module text)."""
    if not 0.0 < target_frr < 0.5:
        raise ValueError(f"target false-reject rate must be in (0, 0.5), got {target_frr}")
    s = np.asarray(scores, dtype=np.float64).ravel()
    if not np.all(np.isfinite(s)):
        raise ValueError("held-out good scores must be finite")
    mu, beta = fit_gumbel(s)
    t = gumbel_quantile(mu, beta, 1.0 - target_frr)
    low, high = _frr_interval(s, mu, beta, t, target_frr, np.random.default_rng(seed))
    return ThresholdEstimate(
        threshold=float(t), target_frr=float(target_frr), frr_low=low, frr_high=high,
        frr_bound=float(1.0 - 0.05 ** (1.0 / s.size)),
        holdout_frr=float(np.mean(s >= t)), n_good=int(s.size), location=mu, scale=beta)


def _frr_interval(s: np.ndarray, mu: float, beta: float, t: float, target_frr: float, rng
                  ) -> tuple[float, float]:
    """90% range of the false-reject rate the threshold t gives: the union of two bootstraps.
    Resampling the scores (non-parametric) follows the data where the law fits them badly;
    with a handful of scores it degenerates (resamples of 2 values are often one value), so
    the parametric one (draw n scores from the fit, threshold them again, read that
    threshold's rate under the fit) keeps the small-sample spread honest."""
    boot = s[rng.integers(0, s.size, size=(_BOOTSTRAP, s.size))]
    mus, betas = map(np.array, zip(*(fit_gumbel(b) for b in boot)))
    frr_np = gumbel_exceedance(mus, betas, t)
    draws = rng.gumbel(mu, beta, size=(_BOOTSTRAP, s.size))
    t_p = np.array([gumbel_quantile(*fit_gumbel(d), 1.0 - target_frr) for d in draws])
    frr_p = gumbel_exceedance(mu, beta, t_p)
    return (float(min(np.quantile(frr_np, 0.05), np.quantile(frr_p, 0.05))),
            float(max(np.quantile(frr_np, 0.95), np.quantile(frr_p, 0.95))))
