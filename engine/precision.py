"""Reduced-precision scoring paths, each calibrated on its own outputs.

A bf16 (or fp16) path does not reproduce the fp32 model's numbers: its scores move by a few
per cent. Judged against fp32's scores it fails; judged as what it is, a model in its own
right, it can detect as well. So each reduced path is calibrated like a new model, with the
path that will score: its own map quantiles on the held-out good parts, its own default
threshold from its own held-out scores, its own synthetic-defect check. A model file
records which paths it was calibrated for (meta["paths"]); the scorer refuses a reduced
path the file has no calibration for, and `auto` (engine/autopath.py) only considers paths
whose held-out check (synthetic defects against the held-out good parts, image AUROC) is
within AUROC_MARGIN of fp32's on the same parts.

The exact fp32 paths (eager, folded torch, NNPACK, ONNX Runtime, OpenVINO fp32) agree with
the eager model to ~1e-5 and share the model's own calibration.

How a reduced path maps: the folded networks give the two halves of the map, each scaled by
the fp32 calibration (FoldedEfficientAD.parts: d_st, d_ae). The path's own quantiles of
each half on the held-out parts map them again exactly as training maps M_ST and M_AE:
    map = 0.05·(d_st - qa)/(qb - qa) + 0.05·(d_ae - qa')/(qb' - qa')  =  w_st·d_st + w_ae·d_ae + c
"""
from __future__ import annotations

import functools
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from engine.errors import InspectError

EXACT_PATHS = ("eager", "torch-fp32", "torch-fp32-nnpack", "torch-fp32-graph", "onnxruntime",
               "openvino-fp32")
CPU_REDUCED = ("torch-bf16", "openvino-bf16", "openvino-int8", "onnxruntime-int8")
INT8_PATHS = ("openvino-int8", "onnxruntime-int8")
INT8_CALIBRATION_PARTS = 32      # held-out good parts that set the int8 activation ranges
CUDA_REDUCED = ("torch-bf16", "torch-bf16-graph", "torch-fp16-graph")
REDUCED_PATHS = tuple(dict.fromkeys(CPU_REDUCED + CUDA_REDUCED))
AUROC_MARGIN = 0.005             # a reduced path may lose at most this much held-out AUROC
MIN_CHECK = 10                   # fewer synthetic defects than this: too unsure to choose one


@dataclass(frozen=True)
class PathCalibration:
    """What one reduced path's calibration found on the model's held-out parts."""
    path: str
    device: str                                 # "cpu" / "cuda": where it was calibrated
    weights: tuple[float, float, float]         # map = w_st·d_st + w_ae·d_ae + c
    threshold: float                            # this path's default threshold
    heldout_auroc: float                        # synthetic defects vs held-out good parts
    synthetic_n: int
    synthetic_missed: int                       # at this path's threshold
    holdout_frr: float                          # held-out good parts above it
    graph: bytes | None = None                  # int8: the quantised ONNX graph (its ranges)

    def to_dict(self) -> dict:
        d = {"path": self.path, "device": self.device, "weights": list(self.weights),
             "threshold": self.threshold, "heldout_auroc": self.heldout_auroc,
             "synthetic_n": self.synthetic_n, "synthetic_missed": self.synthetic_missed,
             "holdout_frr": self.holdout_frr}
        if self.graph is not None:
            d["onnx"] = self.graph
        return d

    @classmethod
    def from_dict(cls, d) -> "PathCalibration | None":
        """None for anything that is not a whole, finite calibration (an old or damaged file)."""
        try:
            w = tuple(float(x) for x in d["weights"])
            graph = d.get("onnx")
            cal = cls(str(d["path"]), str(d.get("device", "cpu")), w, float(d["threshold"]),
                      float(d["heldout_auroc"]), int(d["synthetic_n"]), int(d["synthetic_missed"]),
                      float(d["holdout_frr"]), graph if isinstance(graph, bytes) else None)
        except (KeyError, TypeError, ValueError):
            return None
        finite = np.isfinite([*cal.weights, cal.threshold])
        whole = cal.path not in INT8_PATHS or cal.graph is not None
        return cal if len(w) == 3 and finite.all() and whole else None


def calibrations(meta: dict | None) -> dict[str, PathCalibration]:
    """The reduced paths a model file was calibrated for (bad entries left out)."""
    raw = (meta or {}).get("paths")
    if not isinstance(raw, dict):
        return {}
    out = {}
    for name, d in raw.items():
        cal = PathCalibration.from_dict(d) if isinstance(d, dict) else None
        if cal is not None and cal.path == name:
            out[name] = cal
    return out


def reference_auroc(meta: dict | None) -> float | None:
    """fp32's held-out check AUROC, recorded beside the paths' (None if not recorded)."""
    v = (meta or {}).get("paths_reference", {})
    try:
        x = float(v.get("heldout_auroc")) if isinstance(v, dict) else float("nan")
    except (TypeError, ValueError):
        return None
    return x if np.isfinite(x) else None


def bf16_on_cpu() -> bool:
    """The CPU has bf16 arithmetic oneDNN uses (AVX-512 BF16 or AMX); emulated bf16 is slow."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def reduced_paths_here(device: torch.device) -> tuple[str, ...]:
    """The reduced paths this machine can run (what a Learn here calibrates)."""
    if device.type == "cuda":
        bf16 = torch.cuda.is_bf16_supported()
        return tuple(p for p in CUDA_REDUCED if bf16 or not p.startswith("torch-bf16"))
    have = {m: _importable(m) for m in ("openvino", "onnxruntime.quantization")}
    paths = []
    if bf16_on_cpu():
        paths.append("torch-bf16")
        if have["openvino"]:                     # the [export] extra
            paths.append("openvino-bf16")
    if have["onnxruntime.quantization"]:         # int8 is timed where VNNI is missing too
        paths += [p for p in INT8_PATHS if have["openvino"] or p == "onnxruntime-int8"]
    return tuple(paths)


@functools.lru_cache(maxsize=None)
def _importable(module: str) -> bool:
    """Asked for every path on every model load; an install does not change while we run."""
    import importlib.util
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


# -- runners: u (B,3,S,S) float32 in [0,1] on the device -> parts (B,2,s,s) float32 -----------
def parts_runner(model, path: str, device: torch.device,
                 graph: bytes | None = None) -> Callable[[torch.Tensor], torch.Tensor]:
    """`graph`: an int8 path's quantised ONNX graph (made by quantise_int8)."""
    from engine import fast
    if path.startswith("torch-"):
        precision = path.split("-")[1]
        return fast.TorchRunner(model, device, precision, cuda_graph=path.endswith("-graph"),
                                parts=True)
    if path == "openvino-bf16":
        if device.type != "cpu":
            raise InspectError("Scoring path openvino-bf16 runs on the CPU only.")
        # OpenVINO reads the graph into memory, so the file lives only this long.
        with tempfile.TemporaryDirectory(prefix="inspect-onnx-") as tmp:
            onnx_path = fast.export_onnx(model.cpu(), Path(tmp) / "parts.onnx", parts=True)
            runner = fast.OpenVinoRunner(onnx_path, "bf16")
        return runner.first
    if path in INT8_PATHS:
        if device.type != "cpu" or graph is None:
            raise InspectError(f"Scoring path {path} runs on the CPU with its calibrated graph only.")
        with tempfile.TemporaryDirectory(prefix="inspect-onnx-") as tmp:
            onnx_path = Path(tmp) / "int8.onnx"
            onnx_path.write_bytes(graph)
            # OpenVINO runs the quantised (QDQ) graph with its own int8 kernels
            runner = (fast.OpenVinoRunner(onnx_path, "fp32") if path == "openvino-int8"
                      else fast.OnnxRuntimeRunner(onnx_path))
        return runner.first
    raise InspectError(f"{path} is not a reduced-precision scoring path ({', '.join(REDUCED_PATHS)}).")


def path_map(parts: torch.Tensor, weights: tuple[float, float, float]) -> torch.Tensor:
    """(B,2,s,s) parts -> (B,1,s,s) the path's own normalised map."""
    w_st, w_ae, c = weights
    return parts[:, 0:1] * w_st + parts[:, 1:2] * w_ae + c


def weights_from_parts(parts: np.ndarray, q_a: float, q_b: float,
                       balance: bool = False) -> tuple[float, float, float]:
    """The map weights from the held-out parts (N,2,s,s), as training maps M_ST and M_AE."""
    from engine.train import map_normalisation
    ws, c = [], 0.0
    for qa, qb in map_normalisation(parts[:, 0:1], parts[:, 1:2], q_a, q_b, balance):
        span = qb - qa
        ws.append(0.05 / span)
        c -= 0.05 * qa / span
    return ws[0], ws[1], c


@torch.inference_mode()
def _parts_of(run, u01: torch.Tensor, device, batch: int = 8) -> np.ndarray:
    out = [run(u01[i:i + batch].to(device)).float().cpu() for i in range(0, len(u01), batch)]
    return torch.cat(out).numpy()


def _scores(parts: np.ndarray, weights, image_size: int) -> np.ndarray:
    """Image scores as the scorer makes them: the map at input size, its maximum."""
    from engine.model import map_to_image
    m = path_map(torch.from_numpy(parts), weights)
    return map_to_image(m, image_size, (image_size, image_size)).amax(dim=(1, 2, 3)).double().numpy()


def heldout_auroc(good: np.ndarray, defects: np.ndarray) -> float:
    from engine.metrics import image_auroc
    labels = np.r_[np.zeros(len(good)), np.ones(len(defects))]
    return float(image_auroc(np.r_[good, defects], labels))


@dataclass(frozen=True, eq=False)
class CheckSet:
    """The held-out parts a calibration uses: network inputs in [0,1] on the CPU."""
    good: torch.Tensor                  # (N,3,S,S)
    defects: torch.Tensor               # (M,3,S,S) synthetic defects pasted into held-out parts
    kinds: tuple[str, ...]              # each defect's kind
    q_a: float
    q_b: float
    target_frr: float
    seed: int
    balance: bool = False               # the halves weighted as Learn's calibration weighs them


def quantise_int8(model, good: torch.Tensor) -> bytes:
    """The folded parts graph's convolutions quantised to int8 (weights per channel, their
    inputs by min/max over held-out good parts) -> the ONNX file's bytes."""
    from engine import fast
    from engine.extras import require
    q = require("onnxruntime.quantization", "The int8 scoring path")
    samples = [good[i:i + 1].numpy() for i in range(min(len(good), INT8_CALIBRATION_PARTS))]

    class Reader(q.CalibrationDataReader):
        def __init__(self):
            self.it = iter(samples)

        def get_next(self):
            x = next(self.it, None)
            return None if x is None else {"image": x}
    with tempfile.TemporaryDirectory(prefix="inspect-int8-") as tmp:
        fp32 = fast.export_onnx(model.cpu(), Path(tmp) / "parts.onnx", parts=True)
        prepared = Path(tmp) / "prepared.onnx"
        q.shape_inference.quant_pre_process(str(fp32), str(prepared))
        out = Path(tmp) / "int8.onnx"
        # Convolutions only: the distances (T - S)² after them stay in float. Quantised with
        # ranges from good parts, they were clipped exactly where a defect makes them large
        # (measured: 47 of 48 synthetic defects missed against fp32's 27 on magnetic_tile).
        q.quantize_static(str(prepared), str(out), Reader(), quant_format=q.QuantFormat.QDQ,
                          activation_type=q.QuantType.QUInt8, weight_type=q.QuantType.QInt8,
                          per_channel=True, op_types_to_quantize=["Conv"])
        return out.read_bytes()


def check_set_from_frames(model, good_frames: list[np.ndarray], per_kind: int = 16,
                          seed: int = 0, q_a: float = 0.9, q_b: float = 0.995,
                          target_frr: float | None = None) -> CheckSet:
    """A CheckSet from good frames outside Learn (benchmarks, a model calibrated later):
    synthetic defects pasted into them, both resized as the scorer resizes frames."""
    from engine.calibration import DEFAULT_TARGET_FRR
    from engine.preprocess import frames_to_tensor
    from engine.synthetic import make_defects
    s, cpu = model.config.image_size, torch.device("cpu")
    defects = make_defects(good_frames, per_kind, seed) if per_kind > 0 else []
    as_u = lambda fs: torch.cat([frames_to_tensor([f], s, cpu) for f in fs]) if fs else \
        torch.zeros(0, 3, s, s)                                      # noqa: E731
    return CheckSet(as_u(good_frames), as_u([d.image for d in defects]),
                    tuple(d.kind for d in defects), q_a, q_b,
                    DEFAULT_TARGET_FRR if target_frr is None else target_frr, seed)


def fp32_reference(model, check: CheckSet, device: torch.device | None = None) -> PathCalibration:
    """The exact model's held-out check on the same parts, by the same rule (the reference
    `eligible` compares with, for a model calibrated outside Learn)."""
    return calibrate_path(model, "torch-fp32", device or torch.device("cpu"), check)


def calibrate_path(model, path: str, device: torch.device, check: CheckSet,
                   graph: bytes | None = None) -> PathCalibration:
    """One reduced path calibrated on its own outputs (see the module text)."""
    from engine.calibration import estimate_threshold
    from engine.synthetic import check_threshold
    if path in INT8_PATHS and graph is None:
        graph = quantise_int8(model, check.good)
    run = parts_runner(model, path, device, graph)
    good_parts = _parts_of(run, check.good, device)
    weights = weights_from_parts(good_parts, check.q_a, check.q_b, check.balance)
    s = model.config.image_size
    good = _scores(good_parts, weights, s)
    estimate = estimate_threshold(good, check.target_frr, check.seed)
    defects = _scores(_parts_of(run, check.defects, device), weights, s) if len(check.defects) \
        else np.zeros(0)
    synthetic = check_threshold(defects, list(check.kinds), estimate.threshold)
    auroc = heldout_auroc(good, defects) if len(defects) else float("nan")
    return PathCalibration(path, device.type, weights, float(estimate.threshold), auroc,
                           int(synthetic.n), int(synthetic.missed), float(estimate.holdout_frr),
                           graph if path in INT8_PATHS else None)


def calibrate_paths(model, device: torch.device, check: CheckSet, fp32_auroc: float,
                    progress: Callable[[float, str], None] = lambda f, m: None,
                    paths: tuple[str, ...] | None = None,
                    fp32_missed: int | None = None) -> dict:
    """Every reduced path this machine runs, calibrated -> the meta entries "paths" and
    "paths_reference". A path that fails to build is left out and said in progress."""
    found, graph = {}, None
    for path in (reduced_paths_here(device) if paths is None else paths):
        progress(0.99, f"calibrating the {path} scoring path on the held-out parts")
        try:
            cal = calibrate_path(model, path, device, check, graph)
            graph = cal.graph or graph          # one quantised graph for both int8 runtimes
            found[path] = cal.to_dict()
        except (InspectError, RuntimeError, ImportError) as exc:
            progress(0.99, f"the {path} scoring path cannot be used here: {exc}")
    ref = {"heldout_auroc": fp32_auroc, "device": device.type}
    if fp32_missed is not None:
        ref["synthetic_missed"] = int(fp32_missed)
    return {"paths": found, "paths_reference": ref}


def eligible(meta: dict | None, device: torch.device) -> tuple[list[str], list[str]]:
    """Reduced paths `auto` may consider on this device -> (paths, why each other was not)."""
    cals, ref, ref_missed = calibrations(meta), reference_auroc(meta), reference_missed(meta)
    runnable = reduced_paths_here(device)
    ok, why = [], []
    for path, cal in cals.items():
        if cal.device != device.type:
            why.append(f"{path}: calibrated on the {cal.device}, not here")
        elif path not in runnable:
            why.append(f"{path}: this machine cannot run it")
        elif ref is None or cal.synthetic_n < MIN_CHECK or not np.isfinite(cal.heldout_auroc):
            why.append(f"{path}: too few held-out checks to be sure")
        elif cal.heldout_auroc < ref - AUROC_MARGIN:
            why.append(f"{path}: held-out AUROC {cal.heldout_auroc:.3f} against fp32's {ref:.3f}")
        elif ref_missed is not None and cal.synthetic_missed > ref_missed + _miss_slack(cal.synthetic_n):
            # same ranking, but its threshold would pass more defects (e.g. saturated maps)
            why.append(f"{path}: misses {cal.synthetic_missed} of {cal.synthetic_n} synthetic "
                       f"defects at its threshold against fp32's {ref_missed}")
        else:
            ok.append(path)
    return ok, why


def _miss_slack(n: int) -> int:
    """Synthetic defects a path may miss beyond fp32's: 1, or 5% of a larger check."""
    return max(1, int(np.ceil(0.05 * n)))


def reference_missed(meta: dict | None) -> int | None:
    """fp32's synthetic defects missed at its threshold, recorded beside the paths'."""
    v = (meta or {}).get("paths_reference", {})
    x = v.get("synthetic_missed") if isinstance(v, dict) else None
    return int(x) if isinstance(x, int) and not isinstance(x, bool) and x >= 0 else None
