"""The default threshold: aimed at a stated false-reject rate, from good parts only.

An image's score is the maximum of its anomaly map, a maximum over thousands of cells, so
the scores of good parts follow an extreme-value law. The generalised extreme-value law
(GEV; Hosking's parametrisation, shape k: k < 0 a heavy tail, k = 0 the Gumbel law) is
fitted to the held-out good scores by L-moments (robust with a handful of values, no
iteration), and the threshold is its (1 - target) quantile:

    x(F) = loc + scale / k * (1 - (-ln F)^k)            (k -> 0: loc - scale * ln(-ln F))

Good parts do have heavy tails (measured on both development sets: k about -0.3 and -0.6,
where a Gumbel fit rejected 3% instead of 1%). The shape rests on the third L-moment, which
a handful of scores barely pins down, so it is shrunk towards the Gumbel law with the
weight of SHAPE_PRIOR_N scores: few parts give a Gumbel fit, many let the tail show.

How sure the threshold is depends on how many held-out parts there are, so two figures go
with it: a bootstrap interval of the false-reject rate it would give, and the
distribution-free upper bound 1 - 0.05^(1/n) that n good parts, all passing, can vouch for
on their own. With 5 held-out parts that bound is 45%: the fitted figure is then a model's
guess, and the sentence says so.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

EULER_GAMMA = 0.5772156649015329
DEFAULT_TARGET_FRR = 0.01
_BOOTSTRAP = 2000
FEW_GOOD = 20            # below this many held-out parts the sentence asks for more
SHAPE_PRIOR_N = 10       # the Gumbel shape counts as this many scores (see the module text)


@dataclass(frozen=True)
class ThresholdEstimate:
    threshold: float
    target_frr: float            # what the threshold aims at (fraction of good parts)
    frr_low: float               # 90% bootstrap interval of the false-reject rate it gives
    frr_high: float
    frr_bound: float             # 95% distribution-free upper bound from the passing parts
    holdout_frr: float           # share of the held-out parts themselves at or above it
    n_good: int
    location: float              # the GEV fit (Hosking's k: < 0 a heavy tail)
    scale: float
    shape: float = 0.0
    method: str = "gev-lmoments"

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


def valid_target(target_frr: float) -> bool:
    """A false-reject target the rule can aim at: a share strictly between 0 and a half
    (NaN is refused too). The one place this range is written."""
    return 0.0 < target_frr < 0.5


def rule_text(target_frr: float) -> str:
    """How the threshold was set, for the model file."""
    return (f"GEV fit (L-moments) of held-out good scores; expected false-reject rate "
            f"{target_frr:.3g} over a parametric bootstrap (engine/calibration.py)")


def _pct(x: float) -> str:
    x *= 100
    return f"{x:.1f}%" if x < 10 else f"{x:.0f}%"


def _lmoments(x: np.ndarray) -> tuple[float, float, float]:
    """First three sample L-moments (unbiased probability-weighted moments) of sorted x."""
    n = x.size
    i = np.arange(n)
    b0 = float(x.mean())                    # plain floats: they end up in model files
    b1 = float(np.sum(i / (n - 1) * x) / n)
    b2 = float(np.sum(i * (i - 1) / ((n - 1) * max(n - 2, 1)) * x) / n) if n > 2 else b1
    return b0, 2.0 * b1 - b0, 6.0 * b2 - 6.0 * b1 + b0


def fit_gev(scores: np.ndarray) -> tuple[float, float, float]:
    """(loc, scale, k) by L-moments (Hosking 1985), k shrunk towards 0 for few scores.
    A zero spread (identical scores) gets a tiny positive scale so the threshold sits just
    above them instead of on them."""
    x = np.sort(np.asarray(scores, dtype=np.float64).ravel())
    n = x.size
    if n < 2:
        raise ValueError("a threshold needs at least two good scores")
    l1, l2, l3 = _lmoments(x)
    l2 = max(l2, 1e-6 * max(abs(l1), 1.0) * math.log(2.0))
    k = 0.0
    if n >= 3:
        c = 2.0 / (3.0 + l3 / l2) - math.log(2.0) / math.log(3.0)
        k = (7.8590 * c + 2.9554 * c * c) * n / (n + SHAPE_PRIOR_N)
        k = min(max(k, -0.9), 0.5)          # L-moment estimates hold for k > -1
    if abs(k) < 1e-4:                       # the Gumbel limit
        scale = l2 / math.log(2.0)
        return l1 - EULER_GAMMA * scale, scale, 0.0
    g = math.gamma(1.0 + k)
    scale = l2 * k / ((1.0 - 2.0 ** -k) * g)
    return l1 + scale * (g - 1.0) / k, scale, k


def gev_quantile(loc: float, scale: float, k: float, p: float) -> float:
    y = -math.log(p)
    return loc - scale * math.log(y) if k == 0.0 else loc + scale / k * (1.0 - y ** k)


def gev_exceedance(loc, scale, k, t):
    """P(score >= t) under the fit; numpy-vectorised over loc, scale, k."""
    loc, scale, k = np.broadcast_arrays(*(np.asarray(v, dtype=np.float64) for v in (loc, scale, k)))
    z = (t - loc) / scale
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        y = 1.0 - k * z                          # > 0 inside the law's support
        safe_k = np.where(k == 0.0, 1.0, k)
        inner = np.where(k == 0.0, np.exp(-z), np.where(y > 0, y, 1.0) ** (1.0 / safe_k))
        out = -np.expm1(-inner)
    # outside the support: below a heavy tail's lower end every part is above t, past a
    # light tail's upper end none is
    return np.where(y > 0, out, np.where(k < 0, 1.0, 0.0))


def estimate_threshold(scores: np.ndarray, target_frr: float = DEFAULT_TARGET_FRR,
                       seed: int = 0) -> ThresholdEstimate:
    """The threshold whose expected false-reject rate is `target_frr`, with how sure that
    is (see the module text).

    "Expected" over what the held-out parts leave uncertain: the laws fitted to n scores
    drawn from the fit (a parametric bootstrap) stand for the laws the parts could have
    come from, and t solves mean_b P_b(score >= t) = target. The plug-in quantile of the one
    fit would be the target only if the fit were exact; with 10 parts it rejected 2.5-5% on
    the dev sets, this rule 2.5-4.7%, converging to the plug-in as parts grow."""
    if not valid_target(target_frr):
        raise ValueError(f"target false-reject rate must be in (0, 0.5), got {target_frr}")
    s = np.asarray(scores, dtype=np.float64).ravel()
    if not np.all(np.isfinite(s)):
        raise ValueError("held-out good scores must be finite")
    rng = np.random.default_rng(seed)
    fit = fit_gev(s)
    refits = _parametric_refits(fit, s.size, rng)
    t = _predictive_threshold(refits, target_frr, gev_quantile(*fit, 1.0 - target_frr))
    low, high = _frr_interval(s, refits, t, rng)
    loc, scale, k = fit
    return ThresholdEstimate(
        threshold=float(t), target_frr=float(target_frr), frr_low=low, frr_high=high,
        frr_bound=float(1.0 - 0.05 ** (1.0 / s.size)),
        holdout_frr=float(np.mean(s >= t)), n_good=int(s.size), location=float(loc),
        scale=float(scale), shape=float(k))


def _parametric_refits(fit: tuple[float, float, float], n: int, rng) -> np.ndarray:
    """(B, 3): the GEV fitted again to each of B samples of n scores drawn from `fit`."""
    loc, scale, k = fit
    y = -np.log(rng.uniform(1e-12, 1.0, size=(_BOOTSTRAP, n)))
    draws = loc - scale * np.log(y) if k == 0.0 else loc + scale / k * (1.0 - y ** k)
    return np.array([fit_gev(d) for d in draws])


def _predictive_threshold(refits: np.ndarray, target_frr: float, start: float) -> float:
    """t with mean_b P_b(score >= t) = target, by bisection (the mean falls as t rises)."""
    rate = lambda t: float(np.mean(gev_exceedance(refits[:, 0], refits[:, 1], refits[:, 2], t)))
    width = max(float(np.median(refits[:, 1])), 1e-9)
    lo, hi = start - width, start + width
    while rate(lo) < target_frr:
        lo -= 2 * (hi - lo)
    while rate(hi) > target_frr:
        hi += 2 * (hi - lo)
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if rate(mid) > target_frr else (lo, mid)
    return hi


def _frr_interval(s: np.ndarray, refits: np.ndarray, t: float, rng) -> tuple[float, float]:
    """90% range of the false-reject rate the threshold t gives, the union of two views of
    the law: the parametric refits (honest with a handful of parts) and fits to resampled
    scores (which follow the data where the law fits them badly, but degenerate with a
    handful: resamples of 2 values are often one value)."""
    boot = s[rng.integers(0, s.size, size=(_BOOTSTRAP, s.size))]
    fits = np.array([fit_gev(b) for b in boot])
    frr_np = gev_exceedance(fits[:, 0], fits[:, 1], fits[:, 2], t)
    frr_p = gev_exceedance(refits[:, 0], refits[:, 1], refits[:, 2], t)
    return (float(min(np.quantile(frr_np, 0.05), np.quantile(frr_p, 0.05))),
            float(max(np.quantile(frr_np, 0.95), np.quantile(frr_p, 0.95))))
