"""A simulated production line: one part per frame, as a triggered camera sees it.

Parts are metal plates on a dark belt: four mounting holes, a central boss and a printed
label. Good parts vary a little in pose and lighting; defective ones carry one defect:
a scratch, a stain, a missing or an extra feature, or a misplacement beyond tolerance. Each
Frame gets its true label and a bool mask of the defect. Frame k depends only on (seed, k),
so any frame can be re-rendered, with or without its defect, for tests and demos.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import cv2
import numpy as np

from engine.camera.base import EndOfStream, FrameSource, Pacer
from engine.errors import InspectError
from engine.types import Frame

DEFECT_KINDS = ("scratch", "stain", "missing", "extra", "misplaced")

_BELT, _PLATE, _HOLE = (58, 60, 64), (168, 174, 184), (34, 35, 38)
_BOSS, _RING, _LABEL = (205, 206, 210), (112, 114, 120), (38, 62, 122)
# nominal features in part coordinates (units of the frame's shorter side, y down)
_PLATE_HALF = (0.45, 0.30)
_HOLES = ((-0.33, -0.19), (0.33, -0.19), (-0.33, 0.19), (0.33, 0.19))
_HOLE_R, _BOSS_R = 0.045, 0.11
_LABEL_BOX = (-0.13, 0.15, 0.13, 0.23)             # x0, y0, x1, y1


@dataclass(frozen=True)
class SimulatedLineConfig:
    seed: int = 0
    width: int = 320
    height: int = 240
    fps: float = 10.0               # parts per second; 0 = as fast as they can be drawn
    defect_rate: float = 0.3
    defect_kinds: tuple[str, ...] = DEFECT_KINDS
    noise: float = 2.0              # sensor noise, standard deviation in grey levels
    count: int = 0                  # 0 = endless, otherwise the line stops after `count` parts


@dataclass(frozen=True)
class PartPlan:
    """Everything random about one frame, drawn from (seed, index) up front."""
    index: int
    kind: str                       # "good" or one of DEFECT_KINDS
    pose: tuple[float, float, float]            # centre x, y in pixels, angle in degrees
    defect_pose: tuple[float, float, float]     # differs from pose only when misplaced
    light: float                    # global illumination gain
    params: dict = field(default_factory=dict)  # defect geometry
    noise_seed: int = 0


class SimulatedLine:
    """Plans and draws frames; no threads, no timing (SimulatedLineSource adds those)."""

    def __init__(self, config: SimulatedLineConfig = SimulatedLineConfig()):
        bad = [k for k in config.defect_kinds if k not in DEFECT_KINDS]
        if bad or not 0 <= config.defect_rate <= 1 or config.width < 64 or config.height < 48:
            raise ValueError(f"Simulated line: defect kinds must be among {DEFECT_KINDS}, "
                             f"defect_rate in 0..1 and the frame at least 64×48 (got {config}).")
        self.config = config
        self.unit = float(min(config.width, config.height))
        belt_rng = np.random.default_rng([config.seed, 1 << 30])
        # belt texture: streaks along the direction of travel plus fine grain
        texture = (belt_rng.normal(0, 3.0, (config.height, 1))
                   + belt_rng.normal(0, 1.5, (config.height, config.width)))
        self._belt = np.clip(np.array(_BELT, np.float32) + texture[:, :, None] + 0.5, 0, 255).astype(np.uint8)

    # --- planning ----------------------------------------------------------------------
    def plan(self, index: int) -> PartPlan:
        c, u = self.config, self.unit
        rng = np.random.default_rng([c.seed, index])
        defective = bool(c.defect_kinds) and rng.random() < c.defect_rate
        kind = str(rng.choice(c.defect_kinds)) if defective else "good"
        # good parts sit within ±1.5 % of the frame and ±1.5° of the nominal pose
        pose = (c.width / 2 + rng.uniform(-0.015, 0.015) * u,
                c.height / 2 + rng.uniform(-0.015, 0.015) * u, rng.uniform(-1.5, 1.5))
        light = rng.uniform(0.96, 1.04)
        params: dict = {}
        defect_pose = pose
        if kind == "scratch":
            centre = (rng.uniform(-0.25, 0.25), rng.uniform(-0.12, 0.12))
            length, angle = rng.uniform(0.15, 0.3), rng.uniform(0, np.pi)
            params = {"a": (centre[0] - np.cos(angle) * length / 2, centre[1] - np.sin(angle) * length / 2),
                      "b": (centre[0] + np.cos(angle) * length / 2, centre[1] + np.sin(angle) * length / 2),
                      "bright": bool(rng.random() < 0.5)}
        elif kind == "stain":
            params = {"centre": (rng.uniform(-0.25, 0.25), rng.uniform(-0.15, 0.1)),
                      "axes": (rng.uniform(0.04, 0.08), rng.uniform(0.03, 0.06)),
                      "angle": rng.uniform(0, 180)}
        elif kind == "missing":
            params = {"feature": str(rng.choice(["hole0", "hole1", "hole2", "hole3", "boss", "label"]))}
        elif kind == "extra":
            side = rng.choice([-1.0, 1.0])
            params = {"centre": (side * rng.uniform(0.17, 0.24), rng.uniform(-0.2, 0.05)),
                      "radius": rng.uniform(0.03, 0.045)}
        elif kind == "misplaced":
            shift, direction = rng.uniform(0.08, 0.14) * u, rng.uniform(0, 2 * np.pi)
            turn = rng.choice([-1.0, 1.0]) * rng.uniform(8, 18) * (rng.random() < 0.5)
            defect_pose = (pose[0] + shift * np.cos(direction), pose[1] + shift * np.sin(direction),
                           pose[2] + turn)
        return PartPlan(index, kind, pose, defect_pose, light, params,
                        int(rng.integers(0, 2**31 - 1)))

    # --- drawing -----------------------------------------------------------------------
    def _to_px(self, pose, pts) -> np.ndarray:
        cx, cy, deg = pose
        a = np.deg2rad(deg)
        rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
        return (np.asarray(pts, float) * self.unit) @ rot.T + (cx, cy)

    def _plate_polygon(self, pose) -> np.ndarray:
        hx, hy, r = _PLATE_HALF[0], _PLATE_HALF[1], 0.05
        pts = []
        for (sx, sy), start in (((1, 1), 0), ((-1, 1), 90), ((-1, -1), 180), ((1, -1), 270)):
            for t in np.deg2rad(np.arange(start, start + 91, 10)):
                pts.append((sx * (hx - r) + r * np.cos(t), sy * (hy - r) + r * np.sin(t)))
        return np.round(self._to_px(pose, pts) * 16).astype(np.int32)   # 4 fractional bits

    def _circle(self, img, pose, centre, radius, colour, thickness=-1) -> None:
        (x, y), = self._to_px(pose, [centre])
        cv2.circle(img, (int(round(x * 16)), int(round(y * 16))), int(round(radius * self.unit * 16)),
                   colour, thickness, cv2.LINE_AA, 4)

    def _draw_part(self, img, pose, skip: str = "") -> None:
        cv2.fillPoly(img, [self._plate_polygon(pose)], _PLATE, cv2.LINE_AA, 4)
        for k, centre in enumerate(_HOLES):
            if skip != f"hole{k}":
                self._circle(img, pose, centre, _HOLE_R, _HOLE)
        if skip != "boss":
            self._circle(img, pose, (0, 0), _BOSS_R, _BOSS)
            self._circle(img, pose, (0, 0), _BOSS_R * 0.55, _RING, max(1, int(self.unit / 120)))
        if skip != "label":
            x0, y0, x1, y1 = _LABEL_BOX
            poly = self._to_px(pose, [(x0, y0), (x1, y0), (x1, y1), (x0, y1)])
            cv2.fillPoly(img, [np.round(poly * 16).astype(np.int32)], _LABEL, cv2.LINE_AA, 4)

    def render(self, plan: PartPlan, with_defect: bool = True, noise: bool = True
               ) -> tuple[np.ndarray, np.ndarray]:
        """(rgb H×W×3 uint8, mask H×W bool) for a plan; with_defect=False draws the same part
        at its good pose without the defect (the reference the mask is checked against)."""
        c = self.config
        kind = plan.kind if with_defect else "good"
        pose = plan.defect_pose if kind == "misplaced" else plan.pose
        img = self._belt.copy()              # drawn onto the belt: anti-aliased edges blend in
        self._draw_part(img, pose, skip=plan.params.get("feature", "") if kind == "missing" else "")
        mask = np.zeros((c.height, c.width), np.uint8)
        p = plan.params
        if kind == "scratch":
            a, b = self._to_px(pose, [p["a"], p["b"]])
            colour = (236, 238, 240) if p["bright"] else (96, 98, 104)
            width = max(1, int(round(self.unit / 160)))
            cv2.line(img, tuple(np.round(a * 16).astype(int)), tuple(np.round(b * 16).astype(int)),
                     colour, width, cv2.LINE_AA, 4)
            cv2.line(mask, tuple(np.round(a).astype(int)), tuple(np.round(b).astype(int)), 255, width + 2)
        elif kind == "stain":
            (x, y), = self._to_px(pose, [p["centre"]])
            alpha = np.zeros((c.height, c.width), np.float32)
            axes = (int(p["axes"][0] * self.unit), int(p["axes"][1] * self.unit))
            cv2.ellipse(alpha, (int(x), int(y)), axes, p["angle"] + pose[2], 0, 360, 0.65, -1)
            alpha = cv2.GaussianBlur(alpha, (0, 0), max(1.0, self.unit / 120))
            tint = np.array((112, 86, 52), np.float32)
            img = (img * (1 - alpha[:, :, None]) + tint * alpha[:, :, None]).astype(np.uint8)
            mask[alpha > 0.06] = 255     # where it shifts a channel by more than ~8 levels
        elif kind == "missing":
            name = p["feature"]
            if name.startswith("hole"):
                self._circle(mask, pose, _HOLES[int(name[4])], _HOLE_R * 1.15, 255)
            elif name == "boss":
                self._circle(mask, pose, (0, 0), _BOSS_R * 1.15, 255)
            else:
                x0, y0, x1, y1 = _LABEL_BOX
                poly = self._to_px(pose, [(x0, y0), (x1, y0), (x1, y1), (x0, y1)])
                cv2.fillPoly(mask, [np.round(poly).astype(np.int32)], 255)
                mask = cv2.dilate(mask, np.ones((3, 3), np.uint8))
        elif kind == "extra":
            self._circle(img, pose, p["centre"], p["radius"], _HOLE)
            self._circle(mask, pose, p["centre"], p["radius"] * 1.15, 255)
        elif kind == "misplaced":
            # every pixel that visibly differs from the part at its right place: the plate's
            # outline where it should be and is not (or is and should not be), and the moved
            # holes, boss and label
            right = self._belt.copy()
            self._draw_part(right, plan.pose)
            mask[cv2.absdiff(img, right).max(axis=2) > 24] = 255
        # lighting and sensor noise
        out = img.astype(np.float32)
        out *= np.float32(plan.light)
        if noise and c.noise > 0:
            rng = np.random.default_rng(plan.noise_seed)
            out += rng.standard_normal(out.shape, dtype=np.float32) * np.float32(c.noise)
        rgb = np.ascontiguousarray(np.clip(out + 0.5, 0, 255).astype(np.uint8))
        return rgb, mask > 0

    def frame_arrays(self, index: int) -> tuple[np.ndarray, np.ndarray, str, PartPlan]:
        plan = self.plan(index)
        rgb, mask = self.render(plan)
        return rgb, mask, plan.kind, plan


class SimulatedLineSource(FrameSource):
    """The app's default source when no camera exists: paced, endless (or `count` parts)."""
    kind = "sim"

    def __init__(self, config: SimulatedLineConfig = SimulatedLineConfig()):
        super().__init__(name=f"sim:seed={config.seed}")
        self.line = SimulatedLine(config)
        self.config = config
        self._pacer: Pacer | None = None

    @property
    def is_open(self) -> bool:
        return self._pacer is not None

    def open(self) -> None:
        if self._pacer is None:
            self._pacer = Pacer(self.config.fps)

    def read(self, timeout: float) -> Frame | None:
        if self._pacer is None:
            self.open()
        if self.config.count and self._next_id >= self.config.count:
            raise EndOfStream(f"{self.name}: {self.config.count} parts done.")
        if not self._pacer.wait(timeout):
            return None
        rgb, mask, label, plan = self.line.frame_arrays(self._next_id)
        return self._make_frame(rgb, label=label, mask=mask,
                                meta={"part_index": plan.index, "pose": tuple(map(float, plan.pose))})

    def close(self) -> None:
        self._pacer = None

    def settings(self) -> dict:
        c = self.config
        return {"seed": c.seed, "width": c.width, "height": c.height, "fps": c.fps,
                "defect_rate": c.defect_rate, "defect_kinds": list(c.defect_kinds)}

    def apply_settings(self, changes: dict) -> dict:
        """fps and defect_rate change live; the rest needs a new source (the frames would
        no longer match their seed)."""
        live = {"fps", "defect_rate"}
        unknown = sorted(set(changes) - live)
        if unknown:
            raise InspectError(f"Simulated line: {', '.join(unknown)} cannot change while it runs "
                               f"(only {', '.join(sorted(live))}); create a new source instead.")
        try:
            config = replace(self.config, **{k: float(v) for k, v in changes.items()})
            line = SimulatedLine(config)
        except ValueError as e:
            raise InspectError(f"Simulated line: {e}") from None
        self.config, self.line = config, line     # swapped together, between two frames
        if "fps" in changes:
            self._pacer = Pacer(self.config.fps)
        return self.settings()
