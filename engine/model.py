"""EfficientAD networks (Batzner et al., WACV 2024) and their checkpoint format.

`EfficientAD` is the one module that owns everything scoring needs: teacher T, student S,
autoencoder A, the teacher's per-channel mean/std and the four map quantiles. A checkpoint
is a plain dict (never a pickled module):

    {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION,
     "config": asdict(ModelConfig), "state_dict": {...}, "meta": {threshold, metrics, ...}}

Teacher files from elsewhere load through `load_teacher_state`: the authors' published
`teacher_small.pth` / `teacher_medium.pth` (state_dict of an nn.Sequential: "0.weight", ...)
and anomalib's renamed layout ("conv1.weight", ... possibly under a "teacher." prefix).
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from engine.errors import InspectError

CHECKPOINT_FORMAT = "inspect-line/efficientad"
CHECKPOINT_VERSION = 1
TEACHER_CHANNELS = 384          # T's output channels; S has twice as many (ST half + AE half)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
PDN_STRIDE = 4                  # one output per 4 input pixels
PDN_RECEPTIVE_FIELD = 33        # each output sees a 33×33 patch


@dataclass(frozen=True)
class ModelConfig:
    size: str = "small"             # "small" | "medium" (PDN variant)
    image_size: int = 256           # network input (and tile) is image_size × image_size
    out_channels: int = TEACHER_CHANNELS
    # Frame layout (engine/layout.py). frame_size is recorded whenever tiling or an ROI is
    # used: such a model only scores frames of that size.
    tiling: bool = False
    tile_scale: float = 1.0         # the ROI is resized by this before it is cut into tiles
    tile_overlap: float = 0.25      # minimum overlap of neighbouring tiles (fraction of a tile)
    roi: tuple[int, int, int, int] | None = None           # x, y, w, h in frame pixels
    roi_polygon: tuple[tuple[int, int], ...] | None = None  # optional, frame pixels
    frame_size: tuple[int, int] | None = None               # (H, W) the layout was made for

    @property
    def uses_layout(self) -> bool:
        return self.tiling or self.roi is not None or self.roi_polygon is not None

    def __post_init__(self) -> None:
        if self.size not in ("small", "medium"):
            raise InspectError(f"Model size must be 'small' or 'medium', not {self.size!r}.")
        if self.image_size < 64 or self.image_size % 32:
            raise InspectError(
                f"Model input size must be a multiple of 32 and at least 64, not {self.image_size}.")

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        known = {f.name for f in fields(cls)}
        d = {k: v for k, v in d.items() if k in known}
        for key in ("roi", "frame_size"):
            if d.get(key) is not None:
                d[key] = tuple(int(v) for v in d[key])
        if d.get("roi_polygon") is not None:
            d["roi_polygon"] = tuple(tuple(int(v) for v in p) for p in d["roi_polygon"])
        return cls(**d)


def pdn(size: str, out_channels: int, padding: bool = False) -> nn.Sequential:
    """Patch description network. Index layout equals the authors' teacher files.

    Without padding (scoring), a 256×256 input gives a 56×56 map; each output sees 33×33 px.
    With padding (teacher distillation), 256×256 gives 64×64.
    """
    p = 1 if padding else 0
    if size == "small":
        return nn.Sequential(
            nn.Conv2d(3, 128, 4, padding=3 * p), nn.ReLU(inplace=True),
            nn.AvgPool2d(2, 2, padding=1 * p),
            nn.Conv2d(128, 256, 4, padding=3 * p), nn.ReLU(inplace=True),
            nn.AvgPool2d(2, 2, padding=1 * p),
            nn.Conv2d(256, 256, 3, padding=1 * p), nn.ReLU(inplace=True),
            nn.Conv2d(256, out_channels, 4),
        )
    if size == "medium":
        return nn.Sequential(
            nn.Conv2d(3, 256, 4, padding=3 * p), nn.ReLU(inplace=True),
            nn.AvgPool2d(2, 2, padding=1 * p),
            nn.Conv2d(256, 512, 4, padding=3 * p), nn.ReLU(inplace=True),
            nn.AvgPool2d(2, 2, padding=1 * p),
            nn.Conv2d(512, 512, 1), nn.ReLU(inplace=True),
            nn.Conv2d(512, 512, 3, padding=1 * p), nn.ReLU(inplace=True),
            nn.Conv2d(512, out_channels, 4), nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, 1),
        )
    raise InspectError(f"Model size must be 'small' or 'medium', not {size!r}.")


def pdn_output_size(image_size: int) -> int:
    """Side of the unpadded PDN map for a square input (256 -> 56). Same for small and medium."""
    s = image_size - 3          # conv 4×4
    s = s // 2                  # avgpool 2
    s = s - 3                   # conv 4×4
    s = s // 2                  # avgpool 2
    s = s - 2                   # conv 3×3
    return s - 3                # conv 4×4


class AutoEncoder(nn.Module):
    """A: image -> 64-dim bottleneck -> T-like features (logical anomalies).

    The encoder halves the input five times, then one conv collapses the rest to 1×1×64.
    The decoder upsamples through the authors' sizes (3, 8, 15, 32, 63, 127 at 256 px),
    scaled to the input size, and ends at the PDN's map size.
    """

    def __init__(self, image_size: int = 256, out_channels: int = TEACHER_CHANNELS):
        super().__init__()
        def enc(cin, cout):
            return [nn.Conv2d(cin, cout, 4, stride=2, padding=1), nn.ReLU(inplace=True)]
        self.encoder = nn.Sequential(
            *enc(3, 32), *enc(32, 32), *enc(32, 64), *enc(64, 64), *enc(64, 64),
            nn.Conv2d(64, 64, image_size // 32),          # (B,64,1,1)
        )
        scale = image_size / 256
        self.upsample_sizes = [max(1, round(s * scale)) for s in (3, 8, 15, 32, 63, 127)]
        self.output_size = pdn_output_size(image_size)
        self.decoder_convs = nn.ModuleList(
            [nn.Conv2d(64, 64, 4, stride=1, padding=2) for _ in self.upsample_sizes])
        self.dropout = nn.Dropout(0.2)
        self.head = nn.Sequential(
            nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(64, out_channels, 3, padding=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:   # (B,3,S,S) -> (B,384,s,s)
        x = self.encoder(x)
        for size, conv in zip(self.upsample_sizes, self.decoder_convs):
            x = F.interpolate(x, size=size, mode="bilinear")
            x = self.dropout(F.relu(conv(x)))
        x = F.interpolate(x, size=self.output_size, mode="bilinear")
        return self.head(x)


class EfficientAD(nn.Module):
    """Teacher + student + autoencoder, with every constant scoring needs as buffers."""

    def __init__(self, config: ModelConfig = ModelConfig()):
        super().__init__()
        self.config = config
        c = config.out_channels
        self.teacher = pdn(config.size, c)
        self.student = pdn(config.size, 2 * c)
        self.autoencoder = AutoEncoder(config.image_size, c)
        self.register_buffer("image_mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("image_std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))
        self.register_buffer("teacher_mean", torch.zeros(1, c, 1, 1))
        self.register_buffer("teacher_std", torch.ones(1, c, 1, 1))
        # Map normalisation: q_a (0.9) and q_b (0.995) quantiles on held-out good images.
        self.register_buffer("q_st_a", torch.tensor(0.0))
        self.register_buffer("q_st_b", torch.tensor(0.1))
        self.register_buffer("q_ae_a", torch.tensor(0.0))
        self.register_buffer("q_ae_b", torch.tensor(0.1))
        self.teacher.requires_grad_(False)

    # -- pieces used by training and scoring ---------------------------------------------
    def normalize_image(self, rgb01: torch.Tensor) -> torch.Tensor:
        """(B,3,S,S) floats in [0,1] -> ImageNet-normalised network input."""
        return (rgb01 - self.image_mean) / self.image_std

    def teacher_features(self, x: torch.Tensor) -> torch.Tensor:   # (B,3,S,S) -> (B,384,s,s)
        return (self.teacher(x) - self.teacher_mean) / self.teacher_std

    def raw_maps(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Unnormalised M_ST and M_AE, each (B,1,s,s), from a normalised input batch."""
        c = self.config.out_channels
        t = self.teacher_features(x)
        s = self.student(x)
        a = self.autoencoder(x)
        map_st = ((t - s[:, :c]) ** 2).mean(dim=1, keepdim=True)
        map_ae = ((a - s[:, c:]) ** 2).mean(dim=1, keepdim=True)
        return map_st, map_ae

    def st_map(self, x: torch.Tensor) -> torch.Tensor:
        """Unnormalised M_ST (B,1,s,s) alone (tiles, when tiling)."""
        c = self.config.out_channels
        return ((self.teacher_features(x) - self.student(x)[:, :c]) ** 2).mean(dim=1, keepdim=True)

    def ae_map(self, x: torch.Tensor) -> torch.Tensor:
        """Unnormalised M_AE (B,1,s,s) alone (the global view, when tiling)."""
        c = self.config.out_channels
        return ((self.autoencoder(x) - self.student(x)[:, c:]) ** 2).mean(dim=1, keepdim=True)

    def combine(self, map_st: torch.Tensor, map_ae: torch.Tensor) -> torch.Tensor:
        """Each map is mapped so that its q_a quantile goes to 0 and q_b to 0.1, then averaged."""
        map_st = 0.1 * (map_st - self.q_st_a) / (self.q_st_b - self.q_st_a)
        map_ae = 0.1 * (map_ae - self.q_ae_a) / (self.q_ae_b - self.q_ae_a)
        return 0.5 * map_st + 0.5 * map_ae

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised input (B,3,S,S) -> combined anomaly map (B,1,s,s) on the PDN grid."""
        return self.combine(*self.raw_maps(x))


def map_to_image(map_small: torch.Tensor, image_size: int, out_hw: tuple[int, int]) -> torch.Tensor:
    """(B,1,s,s) PDN-grid map -> (B,1,H,W) at the frame's resolution.

    The unpadded PDN output i sees input pixels [4i, 4i+33): padding the map by
    (S/4 - s)/2 cells (4 at 256 px) puts each value over the centre of its patch before the
    bilinear resize, as the authors do. We pad by replicating the edge instead of the
    authors' zeros, so a defect in the outer 16 px is not faded towards zero and the image
    score (the maximum) equals the maximum over the PDN grid.
    """
    s = map_small.shape[-1]
    pad = (image_size // PDN_STRIDE - s) // 2
    padded = F.pad(map_small, (pad, pad, pad, pad), mode="replicate")
    return F.interpolate(padded, size=out_hw, mode="bilinear")


# -- checkpoints ------------------------------------------------------------------------
def save_checkpoint(model: EfficientAD, path: str | Path, meta: dict | None = None) -> None:
    """Write atomically (temp name + rename) so a crash never leaves half a model file."""
    path = Path(path)
    ckpt = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "config": asdict(model.config),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "meta": meta or {},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(ckpt, tmp)
    tmp.replace(path)


def _read_torch_file(path: str | Path) -> object:
    path = Path(path)
    if not path.is_file():
        raise InspectError(f"Model file {path} does not exist.")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:    # pickle of a whole module, truncated file, not a torch file...
        raise InspectError(
            f"{path} is not a model file this app can read ({type(e).__name__}: {str(e)[:200]}). "
            "Use a file saved by 'python main.py train' or a teacher state_dict.") from e


def load_checkpoint(path: str | Path) -> tuple[EfficientAD, dict]:
    """-> (model in eval mode on the CPU, meta). Clear errors for other formats/versions."""
    ckpt = _read_torch_file(path)
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        hint = ""
        if isinstance(ckpt, dict) and _looks_like_teacher(ckpt):
            hint = " It looks like a teacher file: pass it with --teacher when training."
        raise InspectError(f"{path} is not an inspection model file.{hint}")
    version = ckpt.get("version")
    if not isinstance(version, int) or version > CHECKPOINT_VERSION:
        raise InspectError(
            f"{path} was written by a newer version of this app (model format {version}, "
            f"this app reads up to {CHECKPOINT_VERSION}). Update the app to use it.")
    model = EfficientAD(ModelConfig.from_dict(ckpt["config"]))
    try:
        model.load_state_dict(ckpt["state_dict"])
    except RuntimeError as e:
        raise InspectError(f"{path} is damaged: its weights do not fit its own config ({e}).") from e
    model.eval()
    return model, dict(ckpt.get("meta", {}))


# -- teacher files ----------------------------------------------------------------------
_PREFIXES = ("model.teacher.", "teacher.", "module.", "model.")


def _looks_like_teacher(sd: dict) -> bool:
    return any(isinstance(v, torch.Tensor) and v.ndim == 4 for v in sd.values()) and \
        all(isinstance(v, torch.Tensor) for v in sd.values())


def _conv_order_key(name: str) -> tuple:
    """Sort "0", "3", "8" numerically and "conv1".."conv6" by their number."""
    m = re.fullmatch(r"(?:conv)?(\d+)", name)
    return (int(m.group(1)),) if m else (10**6, name)


def teacher_convs_from_state(sd: dict) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Conv (weight, bias) pairs in network order from any known teacher key layout."""
    if "state_dict" in sd and isinstance(sd["state_dict"], dict):   # our checkpoint or a wrapper
        inner = sd["state_dict"]
        if any(k.startswith("teacher.") for k in inner):
            sd = {k[len("teacher."):]: v for k, v in inner.items() if k.startswith("teacher.")}
        else:
            sd = inner
    layers: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in sd.items():
        k = key
        for p in _PREFIXES:
            if k.startswith(p):
                k = k[len(p):]
                break
        layer, _, kind = k.rpartition(".")
        if kind in ("weight", "bias") and isinstance(value, torch.Tensor):
            layers.setdefault(layer, {})[kind] = value
    convs = [(name, d) for name, d in layers.items() if "weight" in d and d["weight"].ndim == 4]
    convs.sort(key=lambda item: _conv_order_key(item[0]))
    return [(d["weight"], d.get("bias")) for _, d in convs]


def load_teacher_state(model_teacher: nn.Sequential, source: dict | str | Path) -> None:
    """Copy a teacher file's conv weights into our PDN, checking every shape."""
    label = str(source) if not isinstance(source, dict) else "the teacher state"
    sd = _read_torch_file(source) if not isinstance(source, dict) else source
    if not isinstance(sd, dict):
        raise InspectError(f"{label} is not a teacher file (expected a state_dict).")
    convs = teacher_convs_from_state(sd)
    ours = [m for m in model_teacher if isinstance(m, nn.Conv2d)]
    if len(convs) != len(ours):
        raise InspectError(
            f"{label} has {len(convs)} convolution layers; a {len(ours)}-layer teacher is needed "
            f"({'small' if len(ours) == 4 else 'medium'}). Check --size matches the teacher file.")
    with torch.no_grad():
        for i, ((w, b), conv) in enumerate(zip(convs, ours)):
            if tuple(w.shape) != tuple(conv.weight.shape):
                raise InspectError(
                    f"{label}: layer {i + 1} has shape {tuple(w.shape)}, expected "
                    f"{tuple(conv.weight.shape)}. The file is for another PDN size or channel count.")
            conv.weight.copy_(w.float())
            if b is not None:
                conv.bias.copy_(b.float())
