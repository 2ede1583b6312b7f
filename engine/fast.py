"""The fast scoring path: EfficientAD with every constant folded into the weights.

Eager scoring (engine.model.EfficientAD.forward) does, per frame:
    x = (u - m_img)/s_img;  t = (T(x) - μ)/σ;  M_ST = mean_c (t - S_st)²;  M_AE = mean_c (A - S_ae)²
    map = 0.05·(M_ST - qa)/(qb - qa) + 0.05·(M_AE - qa')/(qb' - qa')
All of that is linear bookkeeping around the convolutions, so it folds away exactly:
  * image normalisation into the first conv of T and S (they have no padding there, so the
    fold is exact; A's first conv pads with zeros, so A keeps an explicit normalisation);
  * the teacher's μ/σ into T's last conv;
  * the quantile scaling α = 0.05/((qb-qa)·C) as √α into T's last conv and S's first C
    outputs, β likewise into A's last conv and S's last C outputs, so that
        map = Σ_c (T' - S'_st)² + Σ_c (A' - S'_ae)² + γ,   γ = -0.05·(qa/(qb-qa) + qa'/(qb'-qa'))
The folded module takes u in [0, 1] and returns the final map: no per-frame constants left.
It is exported to ONNX as one graph (map + score) for ONNX Runtime / OpenVINO.
"""
from __future__ import annotations

import copy
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from engine.model import PDN_STRIDE, EfficientAD


def _convs(seq: nn.Module) -> list[nn.Conv2d]:
    return [m for m in seq.modules() if isinstance(m, nn.Conv2d)]


class FoldedEfficientAD(nn.Module):
    def __init__(self, model: EfficientAD):
        super().__init__()
        model = model.eval()
        c = model.config.out_channels
        self.image_size = model.config.image_size
        self.teacher = copy.deepcopy(model.teacher).float()
        self.student = copy.deepcopy(model.student).float()
        self.autoencoder = copy.deepcopy(model.autoencoder).float()
        self.register_buffer("image_mean", model.image_mean.clone())
        self.register_buffer("image_std", model.image_std.clone())
        qa, qb = float(model.q_st_a), float(model.q_st_b)
        qa2, qb2 = float(model.q_ae_a), float(model.q_ae_b)
        alpha = 0.05 / ((qb - qa) * c)
        beta = 0.05 / ((qb2 - qa2) * c)
        self.register_buffer("gamma", torch.tensor(-0.05 * (qa / (qb - qa) + qa2 / (qb2 - qa2))))
        mean = model.image_mean.view(3)
        std = model.image_std.view(3)
        with torch.no_grad():
            for net in (self.teacher, self.student):            # fold (u - m)/s into conv 1
                first = _convs(net)[0]
                assert first.padding == (0, 0), "folding needs an unpadded first conv"
                w = first.weight                                 # (O,3,k,k)
                first.bias -= (w * (mean / std).view(1, 3, 1, 1)).sum(dim=(1, 2, 3))
                first.weight.copy_(w / std.view(1, 3, 1, 1))
            t_last = _convs(self.teacher)[-1]                    # fold (t - μ)/σ and √α
            mu = model.teacher_mean.view(c)
            sigma = model.teacher_std.view(c)
            scale_t = alpha ** 0.5 / sigma
            t_last.bias.copy_((t_last.bias - mu) * scale_t)
            t_last.weight.mul_(scale_t.view(c, 1, 1, 1))
            s_last = _convs(self.student)[-1]                    # (2C, ...): √α | √β
            scale_s = torch.cat([torch.full((c,), alpha ** 0.5), torch.full((c,), beta ** 0.5)])
            s_last.weight.mul_(scale_s.view(2 * c, 1, 1, 1))
            s_last.bias.mul_(scale_s)
            a_last = _convs(self.autoencoder)[-1]
            a_last.weight.mul_(beta ** 0.5)
            a_last.bias.mul_(beta ** 0.5)
        self.c = c
        self.requires_grad_(False)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        """(B,3,S,S) in [0,1] -> final anomaly map (B,1,s,s) on the PDN grid."""
        return self.parts(u).sum(1, keepdim=True) + self.gamma

    def parts(self, u: torch.Tensor) -> torch.Tensor:
        """(B,3,S,S) in [0,1] -> (B,2,s,s) float: the ST and AE halves of the map, each
        scaled by the fp32 calibration and without the offset γ (a reduced-precision path
        maps them again with its own quantiles: engine/precision.py)."""
        c = self.c
        t = self.teacher(u)                                      # (B,C,s,s), scaled
        s = self.student(u)                                      # (B,2C,s,s), scaled
        a = self.autoencoder((u - self.image_mean) / self.image_std)
        return torch.cat([(t - s[:, :c]).float().pow(2).sum(1, keepdim=True),
                          (a - s[:, c:]).float().pow(2).sum(1, keepdim=True)], dim=1)


class PartsGraph(nn.Module):
    """u (B,3,S,S) in [0,1] -> parts (B,2,s,s): what a reduced-precision ONNX path runs."""

    def __init__(self, folded: FoldedEfficientAD):
        super().__init__()
        self.folded = folded

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        return self.folded.parts(u)


class ExportGraph(nn.Module):
    """One graph for deployment: u (B,3,S,S) in [0,1] -> map (B,1,S,S), score (B,), and the
    PDN-grid map (B,1,s,s) for callers that resize to another frame size themselves."""

    def __init__(self, folded: FoldedEfficientAD):
        super().__init__()
        self.folded = folded

    def forward(self, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        small = self.folded(u)
        s = small.shape[-1]
        size = self.folded.image_size
        pad = (size // PDN_STRIDE - s) // 2
        full = F.interpolate(F.pad(small, (pad, pad, pad, pad), mode="replicate"),
                             size=(size, size), mode="bilinear")
        return full, small.amax(dim=(1, 2, 3)), small


def export_onnx(model: EfficientAD, path: str | Path, batch: int | None = None,
                parts: bool = False) -> Path:
    """Write the folded model as one ONNX graph (dynamic batch unless `batch` is given):
    outputs map, score, grid; or with `parts` the one output "parts" (B,2,s,s)."""
    from engine.extras import require
    require("onnx", "The ONNX export")          # torch's exporter needs it (the [export] extra)
    path = Path(path)
    folded = FoldedEfficientAD(model)
    graph = (PartsGraph(folded) if parts else ExportGraph(folded)).eval()
    names = ["parts"] if parts else ["map", "score", "grid"]
    s = model.config.image_size
    dummy = torch.rand(batch or 1, 3, s, s)
    dyn = None if batch else {n: {0: "batch"} for n in ["image", *names]}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.onnx.export(graph, (dummy,), str(path), input_names=["image"],
                      output_names=names, dynamic_axes=dyn, opset_version=17, dynamo=False)
    return path


# -- runners: u (B,3,S,S) float32 in [0,1] on the device -> small map (B,1,s,s) float32 ------
class TorchRunner:
    """Folded model in torch; channels-last; optional bf16/fp16 autocast; optional CUDA graph."""

    def __init__(self, model: EfficientAD, device: torch.device, precision: str = "fp32",
                 cuda_graph: bool = False, parts: bool = False):
        self.device = device
        folded = FoldedEfficientAD(model)
        net = PartsGraph(folded) if parts else folded          # parts: (B,2,s,s), else the map
        self.net = net.to(device).to(memory_format=torch.channels_last).eval()
        self.dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
        if self.dtype is torch.float16 and device.type != "cuda":
            raise ValueError("fp16 runs on CUDA only")
        self.use_graph = cuda_graph and device.type == "cuda"
        self._graphs: dict[tuple, tuple] = {}

    def _forward(self, u: torch.Tensor) -> torch.Tensor:
        u = u.contiguous(memory_format=torch.channels_last)
        with torch.autocast(self.device.type, dtype=self.dtype or torch.float32,
                            enabled=self.dtype is not None):
            return self.net(u).float()

    @torch.inference_mode()
    def __call__(self, u: torch.Tensor) -> torch.Tensor:
        if not self.use_graph:
            return self._forward(u)
        key = tuple(u.shape)
        if key not in self._graphs:                  # capture once per batch shape
            static_in = u.clone()
            stream = torch.cuda.Stream()
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream):
                for _ in range(3):
                    self._forward(static_in)
            torch.cuda.current_stream().wait_stream(stream)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                static_out = self._forward(static_in)
            self._graphs[key] = (graph, static_in, static_out)
        graph, static_in, static_out = self._graphs[key]
        static_in.copy_(u)
        graph.replay()
        return static_out.clone()


class OnnxRuntimeRunner:
    def __init__(self, onnx_path: Path, threads: int | None = None):
        from engine.extras import require
        ort = require("onnxruntime", "The ONNX Runtime scoring backend")
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            opts.intra_op_num_threads = threads
        self.sess = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])

    def run(self, u: torch.Tensor) -> list[torch.Tensor]:
        """-> [map (B,1,S,S), score (B,), grid (B,1,s,s)]"""
        return [torch.from_numpy(a) for a in self.sess.run(None, {"image": u.cpu().numpy()})]

    def small(self, u: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self.sess.run(["grid"], {"image": u.cpu().numpy()})[0])

    def first(self, u: torch.Tensor) -> torch.Tensor:
        """The graph's first output (a parts graph has only that one)."""
        return torch.from_numpy(self.sess.run(None, {"image": u.cpu().numpy()})[0])


class OpenVinoRunner:
    def __init__(self, onnx_path: Path, precision: str = "fp32", threads: int | None = None):
        from engine.extras import require
        ov = require("openvino", "The OpenVINO scoring backend")
        core = ov.Core()
        cfg = {"INFERENCE_PRECISION_HINT": "f32" if precision == "fp32" else "bf16",
               "PERFORMANCE_HINT": "LATENCY"}
        if threads:
            cfg["INFERENCE_NUM_THREADS"] = threads
        self.compiled = core.compile_model(core.read_model(str(onnx_path)), "CPU", cfg)
        self.request = self.compiled.create_infer_request()

    def run(self, u: torch.Tensor) -> list[torch.Tensor]:
        """-> [map (B,1,S,S), score (B,), grid (B,1,s,s)]"""
        res = self.request.infer({0: u.cpu().numpy()})
        return [torch.from_numpy(res[self.compiled.output(i)].copy()) for i in range(3)]

    def small(self, u: torch.Tensor) -> torch.Tensor:
        return self.run(u)[2]

    def first(self, u: torch.Tensor) -> torch.Tensor:
        """The graph's first output (a parts graph has only that one)."""
        res = self.request.infer({0: u.cpu().numpy()})
        return torch.from_numpy(res[self.compiled.output(0)].copy())


# -- NNPACK: fast-convolution algorithms for the CPU ---------------------------------------
# On the dev CPU, oneDNN's direct convolutions already run near the fp32 peak, so only
# fewer multiplications can make fp32 scoring much faster. NNPACK (built into PyTorch's CPU
# wheels) computes stride-1 convolutions with Winograd (3×3) and FFT tiles (4×4): measured
# 2.1-3.1x faster on the PDN's big layers, with a relative error of about 1e-6 (4×4) and
# 1e-5 (3×3) — far inside the 1% score budget. Strided convs (the AE encoder) stay on oneDNN.
def nnpack_available() -> bool:
    # torch's NNPACK calls fail until this has been asked once (it initialises the library).
    return bool(torch.backends.nnpack.is_available())


class NnpackConv2d(nn.Module):
    """Same result as `conv` (stride 1, dilation 1, one group) via torch's NNPACK kernel."""

    def __init__(self, conv: nn.Conv2d):
        super().__init__()
        assert conv.stride == (1, 1) and conv.dilation == (1, 1) and conv.groups == 1
        self.weight = nn.Parameter(conv.weight.detach().float().contiguous(), requires_grad=False)
        bias = conv.bias if conv.bias is not None else torch.zeros(conv.out_channels)
        self.bias = nn.Parameter(bias.detach().float().contiguous(), requires_grad=False)
        self.padding = list(conv.padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:       # (B,Ci,H,W) -> (B,Co,H',W')
        return torch._nnpack_spatial_convolution(x.contiguous(), self.weight, self.bias,
                                                 self.padding)


def _swap_to_nnpack(net: nn.Module) -> None:
    for name, child in net.named_children():
        if (isinstance(child, nn.Conv2d) and child.stride == (1, 1) and child.dilation == (1, 1)
                and child.groups == 1 and isinstance(child.padding, tuple)):
            setattr(net, name, NnpackConv2d(child))
        else:
            _swap_to_nnpack(child)


def on_nnpack(net: nn.Module) -> nn.Module:
    """`net` with its stride-1 convs swapped to NNPACK in place (RuntimeError without NNPACK)."""
    if not nnpack_available():
        raise RuntimeError("this PyTorch build has no NNPACK for this CPU")
    _swap_to_nnpack(net)
    return net


def scoring_copy(model: EfficientAD, device: torch.device) -> EfficientAD:
    """The model as the scorer runs it per tile / ROI (engine/layout.py): on a CPU with NNPACK
    a copy with NNPACK convolutions (same maps to ~1e-6), otherwise the model itself."""
    if device.type != "cpu" or not nnpack_available() or not isinstance(model, EfficientAD):
        return model
    return on_nnpack(copy.deepcopy(model).float().eval().requires_grad_(False))


class NnpackRunner:
    """Folded model with every stride-1 convolution on NNPACK; fp32, CPU, NCHW."""

    def __init__(self, model: EfficientAD):
        self.net = on_nnpack(FoldedEfficientAD(model).eval())

    @torch.inference_mode()
    def __call__(self, u: torch.Tensor) -> torch.Tensor:
        return self.net(u.contiguous()).float()
