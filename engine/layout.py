"""Where the networks look inside a frame: region of interest and tiling.

Without tiling the whole frame (or its ROI) is squeezed to image_size² — fine for large
defects, fatal for a 30-px scratch on a 5 MP frame. With tiling the ROI is resized by
`tile_scale`, cut into overlapping image_size² tiles, and:
  * M_ST comes from every tile, stitched on a canvas at 1/4 of the scaled resolution (the
    PDN's stride) with tent-shaped blending weights, so tile borders leave no seams;
  * M_AE comes from the whole ROI squeezed to image_size² (the autoencoder's global view),
    so logical anomalies (a missing part, a wrong arrangement) are still seen.
Pixels outside the ROI rectangle are never looked at; pixels outside the optional polygon
are painted mid-grey before the networks see them (in training and scoring alike) and can
never raise a defect.

Geometry, for one frame:  frame H×W → ROI crop h×w → (tiling) scaled hs×ws → tiles at
multiples of 4 px → canvas ceil(hs/4)×ceil(ws/4) cells → map back at h×w → frame H×W.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import cv2
import numpy as np
import torch
from torch.nn import functional as F

from engine.errors import InspectError
from engine.model import PDN_STRIDE, EfficientAD, ModelConfig, map_to_image, pdn_output_size

GREY = 0.5          # fill outside the polygon (in [0,1] pixel units)


@dataclass(frozen=True)
class Layout:
    """The frame geometry a model was trained for; stored in ModelConfig."""
    frame_hw: tuple[int, int]
    roi: tuple[int, int, int, int] | None          # x, y, w, h in frame pixels
    polygon: tuple[tuple[int, int], ...] | None    # frame pixels, inside the ROI
    tiling: bool
    tile_scale: float
    tile_overlap: float
    image_size: int

    @classmethod
    def of(cls, cfg: ModelConfig, frame_hw: tuple[int, int]) -> "Layout":
        """The layout of one frame. An ROI is drawn in the pixels of one frame size, so a model
        with an ROI refuses other sizes; tiling alone adapts (a bigger frame, more tiles)."""
        frame_hw = tuple(int(v) for v in frame_hw)
        has_roi = cfg.roi is not None or cfg.roi_polygon is not None
        if has_roi and cfg.frame_size is not None and frame_hw != tuple(cfg.frame_size):
            fh, fw = cfg.frame_size
            raise InspectError(
                f"This model's region of interest was drawn on {fw}×{fh} frames; this frame is "
                f"{frame_hw[1]}×{frame_hw[0]}. Redraw the region and retrain for this camera setup "
                "(a silent resize would move the region and hide small defects).")
        layout = cls(frame_hw, tuple(cfg.roi) if cfg.roi else None,
                     tuple(tuple(p) for p in cfg.roi_polygon) if cfg.roi_polygon else None,
                     cfg.tiling, cfg.tile_scale, cfg.tile_overlap, cfg.image_size)
        layout.validate()
        return layout

    # -- validation -----------------------------------------------------------------------

    def validate(self) -> None:
        h, w = self.frame_hw
        if self.roi is not None:
            x, y, rw, rh = self.roi
            if rw < 32 or rh < 32 or x < 0 or y < 0 or x + rw > w or y + rh > h:
                raise InspectError(
                    f"Region of interest x={x} y={y} {rw}×{rh} does not fit inside the "
                    f"{w}×{h} frame (and must be at least 32×32).")
        if self.polygon is not None:
            x0, y0, rw, rh = self.roi or (0, 0, w, h)
            if len(self.polygon) < 3:
                raise InspectError("A region-of-interest polygon needs at least 3 points.")
            for px, py in self.polygon:
                if not (x0 <= px <= x0 + rw and y0 <= py <= y0 + rh):
                    raise InspectError(f"Polygon point ({px}, {py}) lies outside the region "
                                       f"of interest x={x0} y={y0} {rw}×{rh}.")
        if self.tiling:
            if not 0.0 < self.tile_scale <= 4.0:
                raise InspectError(f"Tile scale must be in (0, 4], not {self.tile_scale}.")
            if not 0.0 <= self.tile_overlap < 0.75:
                raise InspectError(f"Tile overlap must be in [0, 0.75), not {self.tile_overlap}.")
            hs, ws = self.scaled_hw
            if self.image_size > hs or self.image_size > ws:
                raise InspectError(
                    f"Tiles of {self.image_size}×{self.image_size} px do not fit in the "
                    f"{ws}×{hs} region (ROI {self.crop_hw[1]}×{self.crop_hw[0]} at scale "
                    f"{self.tile_scale}). Use a smaller model input size, a larger scale, or no tiling.")

    # -- geometry -------------------------------------------------------------------------
    @property
    def crop_hw(self) -> tuple[int, int]:
        return (self.roi[3], self.roi[2]) if self.roi else tuple(self.frame_hw)

    @property
    def scaled_hw(self) -> tuple[int, int]:
        """The crop at tile scale, rounded to whole PDN cells (4 px) so every tile and the
        stitching canvas sit exactly on the PDN grid."""
        h, w = self.crop_hw
        r = lambda v: max(PDN_STRIDE, round(v * self.tile_scale / PDN_STRIDE) * PDN_STRIDE)
        return (r(h), r(w)) if self.tiling else (h, w)

    def tile_starts(self) -> tuple[list[int], list[int]]:
        """Top-left corners (multiples of 4 px) covering the scaled crop with ≥ the overlap."""
        return _starts(self.scaled_hw[0], self.image_size, self.tile_overlap), \
            _starts(self.scaled_hw[1], self.image_size, self.tile_overlap)

    @property
    def canvas_hw(self) -> tuple[int, int]:
        hs, ws = self.scaled_hw
        return math.ceil(hs / PDN_STRIDE), math.ceil(ws / PDN_STRIDE)

    @functools.cached_property
    def _polygon_mask(self) -> np.ndarray | None:
        return self._rasterise_polygon()

    def polygon_mask(self) -> np.ndarray | None:
        """crop_h × crop_w bool, True inside the polygon (rasterised once per layout)."""
        return self._polygon_mask

    def _rasterise_polygon(self) -> np.ndarray | None:
        if self.polygon is None:
            return None
        x0, y0 = (self.roi[0], self.roi[1]) if self.roi else (0, 0)
        h, w = self.crop_hw
        mask = np.zeros((h, w), np.uint8)
        pts = np.array([(px - x0, py - y0) for px, py in self.polygon], np.int32)
        cv2.fillPoly(mask, [pts], 1)
        return mask.astype(bool)

    # -- pixels ---------------------------------------------------------------------------
    def crop(self, frame01: torch.Tensor) -> torch.Tensor:
        """(3,H,W) in [0,1] -> the ROI (3,h,w), polygon outside painted grey."""
        if self.roi:
            x, y, w, h = self.roi
            frame01 = frame01[:, y:y + h, x:x + w]
        mask = self.polygon_mask()
        if mask is not None:
            m = torch.from_numpy(mask).to(frame01.device)
            frame01 = torch.where(m, frame01, torch.full_like(frame01, GREY))
        return frame01

    def scaled(self, crop01: torch.Tensor) -> torch.Tensor:
        """(3,h,w) -> (3,hs,ws): the resolution the tiles are cut from."""
        if self.scaled_hw == tuple(crop01.shape[-2:]):
            return crop01
        return F.interpolate(crop01[None], size=self.scaled_hw, mode="bilinear",
                             antialias=True, align_corners=False)[0]

    def global_view(self, crop01: torch.Tensor) -> torch.Tensor:
        """(3,h,w) -> (3,S,S): the whole ROI as the autoencoder (and a non-tiled model) sees it."""
        s = self.image_size
        return F.interpolate(crop01[None], size=(s, s), mode="bilinear", antialias=True,
                             align_corners=False)[0]

    def tiles(self, scaled01: torch.Tensor) -> torch.Tensor:
        """(3,hs,ws) -> (N,3,S,S) in row-major order of tile_starts()."""
        s = self.image_size
        ys, xs = self.tile_starts()
        return torch.stack([scaled01[:, y:y + s, x:x + s] for y in ys for x in xs])


def _starts(length: int, tile: int, overlap: float) -> list[int]:
    # Only the centre pdn_output_size cells of a tile are seen by whole patches (the rest is
    # padding), so neighbours must overlap by that border plus two cells at the least.
    valid_px = PDN_STRIDE * (pdn_output_size(tile) - 2)
    return _even_starts(length, tile, min(int(tile * (1.0 - overlap)), valid_px))


def _even_starts(length: int, tile: int, max_step: int) -> list[int]:
    """Evenly spread tile starts in [0, length - tile] on the 4-px grid (length is a multiple
    of 4, see Layout.scaled_hw), neighbours at most (1-overlap)·tile apart."""
    if length <= tile:
        return [0]
    last = (length - tile) // PDN_STRIDE * PDN_STRIDE
    max_step = max(PDN_STRIDE, max_step)
    n = math.ceil(last / max_step) + 1
    starts = [0] if n == 1 else \
        [round(i * last / (n - 1) / PDN_STRIDE) * PDN_STRIDE for i in range(n)]
    return sorted(set(starts))


def tent_weights(cells: int, valid: int, device) -> torch.Tensor:
    """(cells, cells) blending weights: a tent over the `valid` centre cells that whole patches
    saw, peaking in the middle; almost nothing on the replicated padding around them."""
    pad = (cells - valid) // 2
    i = torch.arange(cells, device=device, dtype=torch.float32) - pad + 0.5
    ramp = torch.minimum(i, valid - i) / (valid / 2)                   # 0..1 inside, <0 out
    w1 = ramp.clamp_min(1e-4)
    return w1[:, None] * w1[None, :]


def stitch(tile_maps: torch.Tensor, layout: Layout, blend: bool = True) -> torch.Tensor:
    """(N,1,s,s) tile grid maps -> (1,1,Hc,Wc) canvas; overlaps blended (weighted mean).
    blend=False pastes tiles over each other instead (the naive way; tests compare)."""
    s_cells = layout.image_size // PDN_STRIDE
    s = tile_maps.shape[-1]
    pad = (s_cells - s) // 2
    padded = F.pad(tile_maps, (pad, pad, pad, pad), mode="replicate")   # (N,1,S/4,S/4)
    hc, wc = layout.canvas_hw
    ys, xs = layout.tile_starts()
    canvas = torch.zeros(1, 1, hc + s_cells, wc + s_cells, device=tile_maps.device)
    weight = torch.zeros_like(canvas)
    w = tent_weights(s_cells, s, tile_maps.device)
    k = 0
    for y in ys:
        for x in xs:
            cy, cx = y // PDN_STRIDE, x // PDN_STRIDE                  # starts are on the grid
            if blend:
                canvas[0, 0, cy:cy + s_cells, cx:cx + s_cells] += padded[k, 0] * w
                weight[0, 0, cy:cy + s_cells, cx:cx + s_cells] += w
            else:
                canvas[0, 0, cy:cy + s_cells, cx:cx + s_cells] = padded[k, 0]
                weight[0, 0, cy:cy + s_cells, cx:cx + s_cells] = 1.0
            k += 1
    return (canvas / weight.clamp_min(1e-12))[:, :, :hc, :wc]


# -- maps of one frame ------------------------------------------------------------------------
def raw_frame_maps(model: EfficientAD, layout: Layout, frame01: torch.Tensor
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Unnormalised (M_ST, M_AE) of one (3,H,W) frame, both (1,1,·,·) on a common grid:
    the stitched canvas with tiling, the PDN grid of the global view without."""
    crop = layout.crop(frame01)
    glob = model.normalize_image(layout.global_view(crop)[None])        # (1,3,S,S)
    if not layout.tiling:
        return model.raw_maps(glob)
    tiles = model.normalize_image(layout.tiles(layout.scaled(crop)))     # (N,3,S,S)
    st = torch.cat([model.st_map(tiles[i:i + 16]) for i in range(0, len(tiles), 16)])
    st_canvas = stitch(st, layout)                                       # (1,1,Hc,Wc)
    ae = model.ae_map(glob)                                              # (1,1,s,s)
    s_cells = layout.image_size // PDN_STRIDE
    pad = (s_cells - ae.shape[-1]) // 2
    ae_canvas = F.interpolate(F.pad(ae, (pad,) * 4, mode="replicate"), size=st_canvas.shape[-2:],
                              mode="bilinear", align_corners=False)
    return st_canvas, ae_canvas


def frame_map(model: EfficientAD, layout: Layout, frame01: torch.Tensor) -> torch.Tensor:
    """Normalised anomaly map of one frame at the frame's resolution (H,W); pixels outside
    the ROI (and polygon) hold the lowest value inside, so they never raise a defect."""
    st, ae = raw_frame_maps(model, layout, frame01)
    grid = model.combine(st, ae)                                         # (1,1,·,·)
    h, w = layout.crop_hw
    if layout.tiling:
        # the canvas spans exactly the scaled crop (scaled_hw is whole cells): one resize
        crop_map = F.interpolate(grid, size=(h, w), mode="bilinear", align_corners=False)[0, 0]
    else:
        crop_map = map_to_image(grid, layout.image_size, (h, w))[0, 0]
    mask = layout.polygon_mask()
    if mask is not None:
        m = torch.from_numpy(mask).to(crop_map.device)
        crop_map = torch.where(m, crop_map, crop_map[m].min())
    if layout.roi is None:
        return crop_map
    H, W = layout.frame_hw
    full = torch.full((H, W), float(crop_map.min()), device=crop_map.device)
    x, y, _, _ = layout.roi
    full[y:y + h, x:x + w] = crop_map
    return full


# -- for people choosing a layout (the Learn screen, `eval` output) --------------------------
def network_scale(layout: Layout) -> tuple[float, float]:
    """Network pixels per frame pixel (y, x): how much a defect shrinks before the PDN sees it."""
    h, w = layout.crop_hw
    if layout.tiling:
        hs, ws = layout.scaled_hw
        return hs / h, ws / w
    return layout.image_size / h, layout.image_size / w


def describe(layout: Layout, defect_px: int = 20) -> str:
    """One plain sentence: what the networks see of a frame, and what a small defect becomes."""
    h, w = layout.frame_hw
    ch, cw = layout.crop_hw
    where = f"region {cw}×{ch} of the {w}×{h} frame" if layout.roi else f"whole {w}×{h} frame"
    sy, sx = network_scale(layout)
    size = f"{defect_px * min(sx, sy):.0f}" if abs(sx - sy) < 0.02 * max(sx, sy) else \
        f"{defect_px * sx:.0f}×{defect_px * sy:.0f}"
    if layout.tiling:
        ys, xs = layout.tile_starts()
        hs, ws = layout.scaled_hw
        how = (f"{len(ys) * len(xs)} tiles of {layout.image_size} px cut from the {where} at "
               f"scale {layout.tile_scale:g} ({ws}×{hs})")
    else:
        how = f"the {where} squeezed to {layout.image_size}×{layout.image_size}"
    hint = " — too small to find reliably; use tiling or a larger size" \
        if defect_px * min(sx, sy) < 8 else ""
    return f"The networks see {how}: a {defect_px}-px defect becomes {size} px{hint}."


def draw_layout(rgb: np.ndarray, layout: Layout) -> np.ndarray:
    """A copy of the frame with the layout drawn on it: outside the region dimmed, the ROI in
    green, the polygon in yellow, tile outlines in cyan (every tile, in frame pixels)."""
    out = rgb.astype(np.float32)
    h, w = layout.frame_hw
    inside = np.zeros((h, w), bool)
    x0, y0, cw, ch = layout.roi or (0, 0, w, h)
    mask = layout.polygon_mask()
    inside[y0:y0 + ch, x0:x0 + cw] = True if mask is None else mask
    out[~inside] *= 0.35
    out = np.ascontiguousarray(out.astype(np.uint8))
    thick = max(1, round(max(h, w) / 400))
    if layout.tiling:
        hs, ws = layout.scaled_hw
        fy, fx = ch / hs, cw / ws
        s = layout.image_size
        ys, xs = layout.tile_starts()
        for ty in ys:
            for tx in xs:
                p0 = (x0 + round(tx * fx), y0 + round(ty * fy))
                p1 = (x0 + round((tx + s) * fx) - 1, y0 + round((ty + s) * fy) - 1)
                cv2.rectangle(out, p0, p1, (0, 200, 230), thick)
    if layout.roi:
        cv2.rectangle(out, (x0, y0), (x0 + cw - 1, y0 + ch - 1), (40, 200, 60), thick + 1)
    if layout.polygon:
        cv2.polylines(out, [np.array(layout.polygon, np.int32)], True, (250, 220, 0), thick + 1)
    return out
