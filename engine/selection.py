"""Keep the best EfficientAD checkpoint of a training, by a held-out signal, not the last.

More steps do not always help the image ranking (FINDINGS: 1,000 steps ranked KolektorSDD's
images worse than 300 while the pixel metrics held): the image score is a map's maximum,
and a few noisy cells on good parts decide it. So at a few points of the training
(CHECK_AT of the steps or of the time budget) the student and autoencoder are scored on
the held-out good parts and on synthetic defects pasted into them (another seed than the
final check's, so the reported check is not the one that chose), with the map quantiles of
that moment; the separation (AUROC of defects against good parts, then the mean margin)
names the best state, which training restores before calibration.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

CHECK_AT = (0.5, 0.7, 0.9, 1.0)      # fractions of the run; the last is after the lr drop
PER_KIND = 8                         # synthetic defects of each kind for the signal


@dataclass(eq=False)
class Selector:
    good_x: torch.Tensor                     # (N,3,S,S) uint8 held-out good views
    bad_x: torch.Tensor                      # (M,3,S,S) uint8 synthetic defects' views
    q_a: float = 0.9
    q_b: float = 0.995
    balance: bool = False                    # the halves' weights as calibration sets them
    bf16: bool = False                       # the checks in training's bf16 autocast
    history: list = field(default_factory=list)    # [step, separation, margin]
    best: tuple[float, float] | None = None
    best_step: int = -1
    best_state: dict | None = None
    _next: int = 0

    def due(self, fraction: float) -> bool:
        """True once per CHECK_AT point passed."""
        if self._next < len(CHECK_AT) and fraction >= CHECK_AT[self._next] - 1e-9:
            while self._next < len(CHECK_AT) and fraction >= CHECK_AT[self._next] - 1e-9:
                self._next += 1
            return True
        return False

    @torch.no_grad()
    def check(self, model, step: int, device) -> float:
        """Score the held-out signal now; remember the state if it is the best so far."""
        from engine.train import raw_holdout_maps, scores_from_maps, set_map_quantiles
        was = model.student.training
        model.eval()
        saved = {k: getattr(model, k).clone() for k in ("q_st_a", "q_st_b", "q_ae_a", "q_ae_b")}
        # The checks count against a time budget: one pass of each image through the
        # networks (the good parts' raw maps give their quantiles and their scores alike),
        # in training's precision.
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=self.bf16):
            m_st, m_ae = raw_holdout_maps(model, self.good_x, device)
            set_map_quantiles(model, m_st, m_ae, self.q_a, self.q_b, self.balance)
            good = scores_from_maps(model, m_st, m_ae)
            bad = scores_from_maps(model, *raw_holdout_maps(model, self.bad_x, device))
        for k, v in saved.items():                    # calibration sets them for real later
            getattr(model, k).copy_(v)
        if was:
            model.student.train()
            model.autoencoder.train()
        key = separation(good, bad)
        self.history.append([step, key[0], key[1]])
        if self.best is None or key > self.best:
            self.best, self.best_step = key, step
            self.best_state = {n: t.detach().cpu().clone() for n, t in model.state_dict().items()
                               if n.startswith(("student.", "autoencoder."))}
        return key[0]

    # -- resume files: a resumed training must choose as an uninterrupted one would ----------
    def to_state(self) -> dict:
        return {"history": [list(map(float, h)) for h in self.history],
                "best": None if self.best is None else list(self.best),
                "best_step": int(self.best_step), "next": int(self._next),
                "best_state": self.best_state or {}}

    def load_state(self, d, model) -> str | None:
        """Take a resume file's selection back -> None, or what is wrong with it."""
        if not isinstance(d, dict):
            return "its best-state record is not a dict"
        hist, best, state = d.get("history"), d.get("best"), d.get("best_state")
        step, nxt = d.get("best_step"), d.get("next")
        ok_num = lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v)
        if not (isinstance(hist, list) and all(isinstance(h, list) and len(h) == 3 and
                                               all(ok_num(v) for v in h) for h in hist)):
            return "its best-state history is not rows of numbers"
        if not (best is None or (isinstance(best, list) and len(best) == 2 and all(map(ok_num, best)))):
            return "its best-state score is not two numbers"
        if not (isinstance(step, int) and isinstance(nxt, int) and 0 <= nxt <= len(CHECK_AT)):
            return "its best-state step is not a whole number"
        own = model.state_dict()
        if not isinstance(state, dict) or any(
                not isinstance(k, str) or k not in own or not isinstance(v, torch.Tensor)
                or v.shape != own[k].shape or not bool(torch.isfinite(v).all())
                for k, v in state.items()):
            return "its best state does not fit the model"
        self.history, self.best_step, self._next = [list(h) for h in hist], step, nxt
        self.best = None if best is None else (float(best[0]), float(best[1]))
        self.best_state = dict(state) or None
        return None

    def restore_best(self, model, last_step: int) -> int:
        """Load the best state into the model (if it is not the last one) -> its step."""
        if self.best_state is None or self.best_step == last_step:
            return last_step
        model.load_state_dict(self.best_state, strict=False)
        return self.best_step


def separation(good: np.ndarray, bad: np.ndarray) -> tuple[float, float]:
    """(AUROC of bad against good scores, mean margin of bad over good's maximum)."""
    from engine.metrics import auroc
    good, bad = np.asarray(good, np.float64), np.asarray(bad, np.float64)
    if good.size == 0 or bad.size == 0:
        return (0.0, 0.0)
    labels = np.r_[np.zeros(good.size, bool), np.ones(bad.size, bool)]
    scale = max(float(np.ptp(good)), 1e-9)
    return (auroc(np.r_[good, bad], labels), float(np.mean(bad - good.max()) / scale))


def make_selector(cfg, hold_frames: list[np.ndarray], hold_x: torch.Tensor, textures,
                  views, min_side_px: float = 0.0, bf16: bool = False) -> Selector | None:
    """A selector for a run without a layout (tiles/ROI: the last state is kept), or None.
    `views(frame) -> (3,S,S) uint8` is training's own view of a frame."""
    from engine.synthetic import make_defects
    if cfg.model.uses_layout or not cfg.select_best or len(hold_frames) < 2:
        return None
    defects = make_defects(hold_frames, PER_KIND, cfg.seed + 1, textures, min_side_px=min_side_px)
    bad_x = torch.stack([views(d.image) for d in defects])
    return Selector(hold_x, bad_x, cfg.q_a, cfg.q_b, cfg.balance_halves, bf16)
