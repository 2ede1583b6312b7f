"""Scoring frames with a trained model: uint8 RGB in, scores and anomaly maps out.

    scorer = Scorer.from_file("model.pt")          # CUDA if present, else CPU
    result = scorer.score([frame_a, frame_b])        # frames of any sizes
    result.scores  -> (B,) float64;  result.maps[i] -> H_i×W_i float32 at frame i's size
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np
import torch

from engine import precision
from engine.autopath import PathChoice
from engine.device import resolve_device
from engine.errors import InspectError
from engine.model import EfficientAD, check_finite_model, load_checkpoint, map_to_image
from engine.preprocess import frame_to_tensor01, frames_to_tensor
from engine.types import Decision, decide


@dataclass(frozen=True, eq=False)
class Prepared:
    """Frames made network input by Scorer.prepare (the tensors are on the scoring device)."""
    inputs: object                  # (B,3,S,S) float 0..1, or per frame (1,3,H,W) for layouts
    shapes: tuple                   # each frame's (H, W)
    t0: float                       # perf_counter at prepare(): latency counts from here


@dataclass(frozen=True, eq=False)
class ScoreResult:
    scores: np.ndarray              # (B,) float64 image scores: each map's maximum
    maps: list[np.ndarray] | None   # B maps, H×W float32 at each frame's resolution
    latency_ms: float               # wall time of the whole batch


BACKENDS = ("eager", "torch-fp32", "torch-fp32-nnpack", "torch-fp32-graph", "torch-bf16",
            "torch-bf16-graph", "torch-fp16-graph", "onnxruntime", "openvino-fp32", "openvino-bf16",
            "openvino-int8", "onnxruntime-int8")


def _finite_number(v) -> bool:
    """A real number (numpy's too) that is not NaN or infinite; False for text, bools, None."""
    if isinstance(v, (bool, str, bytes)) or v is None:
        return False
    try:
        return math.isfinite(float(v))
    except (TypeError, ValueError, OverflowError):
        return False


def _asked_reason(kind: str, backend: str) -> str:
    """Why the path is what it is when `auto` did not choose it."""
    if kind == "quick":
        return "fp32: a quick model scores with its own backbone and distance search"
    return "eager fp32 (the reference forward)" if backend == "eager" else f"{backend}, as asked"


class Scorer:
    """`backend`: "eager" is the plain reference forward; "auto" picks the fastest validated
    fast path (folded constants; see engine/fast.py); or name one of BACKENDS."""

    def __init__(self, model: EfficientAD, meta: dict | None = None, device: str = "auto",
                 backend: str = "eager"):
        # Checked before anything runs: a NaN weight or threshold would pass every part.
        try:
            check_finite_model(model)
        except InspectError as e:
            raise InspectError(f"This model is broken: {e}. Learn good parts again.") from None
        self.meta = dict(meta or {})
        threshold = self.meta.get("threshold", 0.5)
        if not _finite_number(threshold):
            raise InspectError(f"The model's threshold is {threshold!r}, not a finite number. "
                               "Learn good parts again, or set a threshold on the Threshold screen.")
        self.device = resolve_device(device)
        self.model = model.eval().to(self.device)
        self.image_size = model.config.image_size
        self.threshold = float(threshold)
        from engine.meta import ModelMeta
        self.info = ModelMeta.from_dict(self.meta)      # what the model says about itself
        self.model_id = self.info.model_id
        self._calibrations = precision.calibrations(self.meta)   # reduced paths (engine/precision.py)
        # ROI / tiling models run the model's own networks per frame (engine/layout.py; on the
        # CPU with NNPACK convolutions unless "eager" is asked for), with one layout per frame
        # size, built on first sight (validation, polygon raster).
        self._layouts: dict[tuple[int, int], object] | None = None
        self._layout_model = self.model
        self.kind = getattr(model, "kind", "efficientad")
        if self.kind == "quick" and backend not in ("auto", "eager"):
            # its networks are a backbone and a distance search, not the folded PDNs
            raise InspectError(f"Scoring backend {backend} is for EfficientAD models; a quick "
                               "model scores with 'auto' (or 'eager').")
        if self.kind == "quick":
            backend = "eager"
        self.path_choice = PathChoice(backend, _asked_reason(self.kind, backend), ())
        if model.config.uses_layout:
            if backend not in ("auto", "eager", "torch-fp32-nnpack"):
                raise InspectError(f"Scoring backend {backend} does not support tiling or a "
                                   "region of interest yet; use 'auto' or 'eager'.")
            from engine.fast import scoring_copy
            self._layouts = {}
            if backend != "eager":              # same networks, fast convolutions (~1e-6)
                self._layout_model = scoring_copy(self.model, self.device)
            self.backend = "eager" if self._layout_model is self.model else "torch-fp32-nnpack"
            self._run_small = None
            self.path_choice = PathChoice(self.backend, f"fp32 ({self.backend}): a model with "
                                          "tiling or a region of interest scores in fp32", ())
            self.info = replace(self.info, scoring_path=self.path_choice.reason)
            return
        if backend == "auto" and self.kind != "quick":
            from engine.autopath import choose
            self.path_choice = choose(self.model, self.meta, self.device, self._make_runner)
            backend = self.path_choice.backend
        self.backend = backend
        self._run_small = self._make_runner(self.backend)
        cal = self._calibrations.get(self.backend)
        if cal is not None:                   # a reduced path judges with its own threshold
            self.threshold = cal.threshold
        self.info = replace(self.info, scoring_path=self.path_choice.reason)

    def _make_runner(self, backend: str):
        """-> function: u (B,3,S,S) in [0,1] on the device -> map (B,1,s,s) on the device."""
        from engine import fast
        if backend == "eager":
            return lambda u: self.model(self.model.normalize_image(u))
        if backend == "torch-fp32-nnpack":
            if self.device.type != "cpu":
                raise InspectError("Scoring backend torch-fp32-nnpack runs on the CPU only.")
            try:
                return fast.NnpackRunner(self.model)
            except RuntimeError as exc:
                raise InspectError(f"Scoring backend torch-fp32-nnpack is not available: {exc}.") from None
        if backend in precision.REDUCED_PATHS:
            return self._reduced_runner(backend)
        if backend.startswith("torch-"):
            prec = backend.split("-")[1]
            if backend not in BACKENDS:
                raise InspectError(f"Unknown scoring backend {backend!r}; choose from {', '.join(BACKENDS)}.")
            if prec == "fp16" and self.device.type != "cuda":
                raise InspectError(f"Scoring backend {backend} needs a CUDA GPU.")
            return fast.TorchRunner(self.model, self.device, prec,
                                    cuda_graph=backend.endswith("-graph"))
        if backend in ("onnxruntime", "openvino-fp32"):
            if self.device.type != "cpu":
                raise InspectError(f"Scoring backend {backend} runs on the CPU only.")
            import tempfile
            # Both runtimes read the graph into memory, so the file lives only this long.
            with tempfile.TemporaryDirectory(prefix="inspect-onnx-") as tmp:
                onnx_path = Path(tmp) / "model.onnx"
                fast.export_onnx(self.model.cpu(), onnx_path)
                runner = (fast.OnnxRuntimeRunner(onnx_path) if backend == "onnxruntime" else
                          fast.OpenVinoRunner(onnx_path, backend.split("-")[1]))
            # the exported graph also upsamples; keep the grid map only: the grid is its input
            return lambda u: runner.small(u)
        raise InspectError(f"Unknown scoring backend {backend!r}; choose from {', '.join(BACKENDS)}.")

    def _reduced_runner(self, backend: str):
        """A reduced-precision path, only with the model's calibration for it (its own map
        weights and threshold): uncalibrated, its scores would be off by a few per cent."""
        cal = self._calibrations.get(backend)
        if cal is None:
            raise InspectError(
                f"This model was not calibrated for the {backend} scoring path, so its scores "
                "there would be off by a few per cent: score it with 'auto' or an fp32 path, or "
                "calibrate it again (python main.py calibrate --model MODEL --good GOOD_FOLDER).")
        if cal.device != self.device.type:
            raise InspectError(f"This model's {backend} calibration was made on the {cal.device}; "
                               f"it cannot judge on the {self.device.type}. Calibrate it here again.")
        if backend not in precision.reduced_paths_here(self.device):
            raise InspectError(f"Scoring path {backend} cannot run on this machine "
                               "(no bf16 arithmetic, or its library is not installed).")
        run = precision.parts_runner(self.model, backend, self.device, cal.graph)
        return lambda u: precision.path_map(run(u), cal.weights)

    @classmethod
    def from_file(cls, path: str | Path, device: str = "auto", backend: str = "eager") -> "Scorer":
        model, meta = load_checkpoint(path)
        return cls(model, meta, device, backend)

    @torch.inference_mode()
    def score(self, frames: list[np.ndarray] | np.ndarray, with_maps: bool = True) -> ScoreResult:
        """Score a batch. Frames: H×W×3 uint8 RGB (a list of any sizes, or a (B,H,W,3) array)."""
        batch = self.prepare(frames)
        return self.finish(batch, self.infer(batch), with_maps)

    # The three stages of score(), for a live loop that runs them on different threads
    # (engine/line/pipeline.py): only infer() runs the networks.
    @torch.inference_mode()
    def prepare(self, frames: list[np.ndarray] | np.ndarray) -> "Prepared":
        """Check the frames and make the network input (resized on the scoring device)."""
        t0 = time.perf_counter()
        if isinstance(frames, np.ndarray):
            frames = [frames] if frames.ndim == 3 else list(frames)
        for i, f in enumerate(frames):
            if f.dtype != np.uint8 or f.ndim != 3 or f.shape[2] != 3:
                raise InspectError(f"Frame {i} must be H×W×3 uint8 RGB, got {f.dtype} {f.shape}.")
        shapes = tuple(f.shape[:2] for f in frames)
        if not frames:
            inputs: object = None
        elif self._layouts is not None:                  # whole frames: the layout crops/tiles
            inputs = tuple(frame_to_tensor01(f, self.device) for f in frames)
        else:
            inputs = frames_to_tensor(frames, self.image_size, self.device)  # (B,3,S,S) 0..1
        return Prepared(inputs, shapes, t0)

    @torch.inference_mode()
    def infer(self, batch: "Prepared"):
        """The networks: the PDN-grid maps (B,1,s,s), or for a layout model each frame's map."""
        if batch.inputs is None:
            return None
        if self._layouts is not None:
            from engine.layout import Layout, frame_map
            out = []
            for hw, f01 in zip(batch.shapes, batch.inputs):
                if hw not in self._layouts:                  # clear error if it can't
                    self._layouts[hw] = Layout.of(self.model.config, hw)
                out.append(frame_map(self._layout_model, self._layouts[hw], f01))   # (H,W)
            return out
        return self._run_small(batch.inputs)

    @torch.inference_mode()
    def finish(self, batch: "Prepared", small, with_maps: bool = True) -> ScoreResult:
        """Maps at each frame's resolution and their maxima, from infer()'s output."""
        if batch.inputs is None:
            return ScoreResult(np.zeros(0), [] if with_maps else None, 0.0)
        scores, maps = [], []
        for i, hw in enumerate(batch.shapes):
            if self._layouts is not None:
                full = small[i]                                                  # (H,W)
            else:   # upsample on the device and take the maximum there
                full = map_to_image(small[i:i + 1], self.image_size, hw)[0, 0]   # (H,W)
            scores.append(full.max())
            if with_maps:
                maps.append(full.float().cpu().numpy())
        score_arr = torch.stack(scores).double().cpu().numpy()
        return ScoreResult(score_arr, maps if with_maps else None,
                           (time.perf_counter() - batch.t0) * 1000.0)

    def decide(self, score: float, threshold: float | None = None,
               review_below: float | None = None) -> Decision:
        return decide(score, self.threshold if threshold is None else threshold, review_below)


def overlay(rgb: np.ndarray, anomaly_map: np.ndarray, threshold: float, opacity: float = 0.5
            ) -> np.ndarray:
    """Frame with the map drawn over it (JET colours; the threshold sits at 2/3 of the scale).

    Only regions approaching the threshold are tinted, so a good part still looks like itself.
    """
    scale = max(float(threshold), 1e-6) * 1.5 if math.isfinite(threshold) else 1.0
    # A broken (non-finite) map is drawn at full heat: it is a FAIL, not a clean part.
    v = np.nan_to_num(np.clip(anomaly_map * (1.0 / scale), 0.0, 1.0), nan=1.0
                      ).astype(np.float32, copy=False)                      # (H,W) 0..1
    heat = cv2.cvtColor(cv2.applyColorMap((v * 255).astype(np.uint8), cv2.COLORMAP_JET),
                        cv2.COLOR_BGR2RGB)
    alpha = np.minimum(v * (1.5 * opacity), opacity)                         # opacity·clip(1.5v)
    # OpenCV's per-pixel blend: 1.2 ms for 640×480 where numpy's float blend took 6.5 ms,
    # on every judged frame of the live loop (results equal to ±1 grey level)
    return np.ascontiguousarray(cv2.blendLinear(np.ascontiguousarray(rgb), heat, 1.0 - alpha, alpha))
