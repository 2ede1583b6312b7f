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

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from engine.errors import InspectError
from engine.vocabulary import MODEL_KINDS, MODEL_SIZES, spoken

CHECKPOINT_FORMAT = "inspect-line/efficientad"
QUICK_FORMAT = "inspect-line/quick"     # the quick model's files (engine/quick.py); same layout
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
    # "efficientad" (the paper's networks, trained) or "quick" (nearest neighbours on
    # ImageNet features, built in one pass: engine/quick.py); `size` is EfficientAD's only.
    kind: str = "efficientad"
    bank_size: int = 10_000         # quick model: patches kept in its memory bank

    @property
    def uses_layout(self) -> bool:
        return self.tiling or self.roi is not None or self.roi_polygon is not None

    def __post_init__(self) -> None:
        if self.size not in MODEL_SIZES:
            raise InspectError(f"Model size must be {spoken(MODEL_SIZES, quoted=True)}, not {self.size!r}.")
        if self.kind not in MODEL_KINDS:
            raise InspectError(f"Model kind must be {spoken(MODEL_KINDS, quoted=True)}, not {self.kind!r}.")
        if not _whole(self.bank_size, 16, 10_000_000):
            raise InspectError(f"The memory bank size must be a whole number of patches from 16 "
                               f"to 10,000,000, not {self.bank_size!r}.")
        if self.image_size < 64 or self.image_size % 32:
            raise InspectError(
                f"Model input size must be a multiple of 32 and at least 64, not {self.image_size}.")

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        """From a checkpoint's "config": every value's type and range checked first, so a
        damaged or hand-edited file is one InspectError naming the field (unknown keys, from
        a later app, are ignored), and never a huge network built from a wild number."""
        if not isinstance(d, dict):
            raise InspectError(f"the model settings are {type(d).__name__}, not a dict")
        known = {f.name for f in fields(cls)}
        d = {k: v for k, v in d.items() if k in known}
        for key, check in _CONFIG_CHECKS.items():
            if key in d and not check(d[key]):
                raise InspectError(f"the model setting {key} is not valid ({_short(d[key])})")
        for key in ("roi", "frame_size"):
            if d.get(key) is not None:
                d[key] = tuple(d[key])
        if d.get("roi_polygon") is not None:
            d["roi_polygon"] = tuple(tuple(p) for p in d["roi_polygon"])
        return cls(**d)


def _whole(v, lo: int, hi: int) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi


def _real(v, lo: float, hi: float) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and lo <= v <= hi  # NaN: False


def _points(v, n: int | None, lo: int) -> bool:
    return (isinstance(v, (list, tuple)) and (n is None or len(v) == n)
            and all(_whole(x, lo, 1 << 20) for x in v))


def _short(v) -> str:
    """A value for a message: one line, at most 60 characters."""
    text = " ".join(repr(v).split())
    return text if len(text) <= 60 else text[:57] + "..."


def _shown(p) -> str:
    """A path for a message: as is when printable, else quoted with escapes (one line)."""
    text = str(p)
    text = text if text.isprintable() else repr(text)
    return text if len(text) <= 300 else text[:297] + "..."


def _one_line(e: BaseException, n: int) -> str:
    """An exception's text on one line (torch's are often several), at most n characters."""
    text = " ".join(re.sub(r"\x1b\[[0-9;]*m", "", str(e)).split())    # no terminal colours
    return text if len(text) <= n else text[:n - 3] + "..."


# Ranges wider than anything training writes, narrow enough that building the networks
# stays cheap (the file's weights must still fit the config exactly).
_CONFIG_CHECKS = {
    "size": lambda v: v in MODEL_SIZES,
    "image_size": lambda v: _whole(v, 64, 2048),
    "out_channels": lambda v: _whole(v, 1, 1024),
    "tiling": lambda v: isinstance(v, bool),
    "tile_scale": lambda v: _real(v, 1e-3, 4.0),
    "tile_overlap": lambda v: _real(v, 0.0, 0.75),
    "roi": lambda v: v is None or _points(v, 4, 0),
    "roi_polygon": lambda v: v is None or (isinstance(v, (list, tuple)) and len(v) <= 10_000
                                           and all(_points(p, 2, 0) for p in v)),
    "frame_size": lambda v: v is None or _points(v, 2, 1),
    "kind": lambda v: v in MODEL_KINDS,
    "bank_size": lambda v: _whole(v, 16, 10_000_000),
}


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


def model_title(config: dict) -> str:
    """A model's kind and size from its config dict: 'EfficientAD-S 256 px', 'quick model
    (nearest neighbours, 10000 patches) 256 px'."""
    size = config.get("image_size", "?")
    if config.get("kind") == "quick":
        return f"quick model (nearest neighbours, bank of {config.get('bank_size', '?')} patches) {size} px"
    return f"EfficientAD-{str(config.get('size', 'small'))[0].upper()} {size} px"


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
def plain_values(v):
    """numpy scalars and arrays in a model's meta -> Python numbers and lists: the file is
    read back with weights_only, which refuses any other object (and the model with it)."""
    if isinstance(v, dict):
        return {str(k): plain_values(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [plain_values(x) for x in v]
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, np.generic):
        return v.item()
    return v


def save_checkpoint(model: EfficientAD, path: str | Path, meta: dict | None = None) -> None:
    """Write atomically (temp name + rename) so a crash never leaves half a model file."""
    path = Path(path)
    ckpt = {
        "format": QUICK_FORMAT if model.config.kind == "quick" else CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "config": asdict(model.config),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "meta": plain_values(meta or {}),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(ckpt, tmp)
    tmp.replace(path)


def _read_torch_file(path: str | Path, what: str = "Model file") -> object:
    """torch.load with weights_only=True: a hostile file can hold tensors and plain values
    but never code. Anything it cannot read is one InspectError naming the file."""
    path = Path(path)
    try:
        exists, is_file = path.exists(), path.is_file()
    except OSError as e:                  # e.g. a name too long for the file system
        raise InspectError(f"{what} {_short(str(path))} cannot be used ({e.strerror}); "
                           "check the path.") from e
    if not exists:
        raise InspectError(f"{what} {_shown(path)} does not exist; check the path.")
    if not is_file:
        raise InspectError(f"{what} {_shown(path)} is a folder, not a file; choose the file itself.")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:    # pickle of a whole module, truncated file, not a torch file...
        use = ("a file saved by this app (Learn good parts, or 'python main.py train')"
               if what == "Model file" else
               "the shipped teacher, the authors' teacher_small.pth / teacher_medium.pth or "
               "an anomalib EfficientAD checkpoint")
        # torch's own advice ("can still be loaded if you trust the source") is not ours.
        # torch says "Weights only load failed" for any unpickling error in this mode;
        # only "Unsupported global" means a real pickle of Python objects.
        text = str(e)
        if "Unsupported global" in text or "Unsupported class" in text:
            why = ("it holds Python objects besides weights and plain values; this app never "
                   "loads those, as they could run code")
        elif "Weights only load failed" in text or "invalid load key" in text:
            why = "it is damaged, cut short, or not a file saved by PyTorch at all"
        else:
            why = f"{type(e).__name__}: {_one_line(e, 200)}"
        raise InspectError(
            f"{_shown(path)} is not a {what.lower()} this app can read ({why}). Use {use}.") from e


def load_checkpoint(path: str | Path) -> tuple[nn.Module, dict]:
    """-> (model in eval mode on the CPU, meta). Every part of the file is checked before it
    is used: format, version, config, weights (shapes, and all of them finite numbers: a
    NaN weight would make every score NaN) and the threshold. Problems: one InspectError."""
    ckpt = _read_torch_file(path)
    if not isinstance(ckpt, dict) or ckpt.get("format") not in (CHECKPOINT_FORMAT, QUICK_FORMAT):
        hint = ""
        if isinstance(ckpt, dict) and _looks_like_teacher(ckpt):
            hint = " It looks like a teacher file: pass it with --teacher when training."
        raise InspectError(f"{_shown(path)} is not an inspection model file.{hint}")
    version = ckpt.get("version")
    if isinstance(version, int) and not isinstance(version, bool) and version > CHECKPOINT_VERSION:
        raise InspectError(
            f"{_shown(path)} was written by a newer version of this app (model format {version}, "
            f"this app reads up to {CHECKPOINT_VERSION}). Update the app to use it.")
    try:
        if not _whole(version, 1, CHECKPOINT_VERSION):
            raise InspectError(f"its format version is {_short(version)}")
        if "config" not in ckpt:
            raise InspectError("it has no model settings (config)")
        config = ModelConfig.from_dict(ckpt["config"])
        if (config.kind == "quick") != (ckpt["format"] == QUICK_FORMAT):
            raise InspectError(f"its settings say {config.kind} but its format is {ckpt['format']}")
        model = _empty_model(config, ckpt.get("state_dict"))
        _load_weights(model, ckpt.get("state_dict"))
        meta = _checked_meta(ckpt.get("meta", {}))
    except InspectError as e:
        raise InspectError(f"{_shown(path)} is damaged: {e}. Learn good parts again, or use another "
                           "model file.") from e
    model.eval()
    return model, meta


def _empty_model(config: ModelConfig, sd: object) -> nn.Module:
    """The networks a file's config asks for, weights still to load."""
    if config.kind != "quick":
        return EfficientAD(config)
    from engine.quick import from_state
    if not isinstance(sd, dict):
        raise InspectError("it holds no weights")
    return from_state(config, sd)


def _load_weights(model: nn.Module, sd: object) -> None:
    if not isinstance(sd, dict) or not sd:
        raise InspectError("it holds no weights")
    for key, value in sd.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise InspectError(f"its weights hold {_short(key)}, which is not a tensor")
        if key.endswith(".num_batches_tracked") and value.dtype == torch.int64 and value.numel() == 1:
            continue                    # a batch-norm counter (the quick model's backbone)
        if value.layout != torch.strided or not value.is_floating_point():
            raise InspectError(f"its weight {key} is a {value.dtype} tensor, not real numbers")
    try:
        model.load_state_dict(sd)
    except (RuntimeError, ValueError, TypeError) as e:
        raise InspectError(f"its weights do not fit its own config ({_one_line(e, 300)})") from e
    check_finite_model(model)


def check_finite_model(model: nn.Module) -> None:
    """Weights and constants must be finite numbers, the teacher's std and the map scales
    above zero (training guarantees both): otherwise every score is NaN or infinite."""
    if getattr(model, "kind", "efficientad") == "quick":
        model.check()
        return
    for name, t in model.state_dict().items():
        if not bool(torch.isfinite(t).all()):
            raise InspectError(f"{name} holds values that are not finite numbers (NaN or infinite)")
    if not bool((model.teacher_std > 0).all()):
        raise InspectError("teacher_std holds values at or below zero")
    for a, b in (("q_st_a", "q_st_b"), ("q_ae_a", "q_ae_b")):
        if not float(getattr(model, b)) > float(getattr(model, a)):
            raise InspectError(f"its map scale {b} is not above {a}")


def _checked_meta(meta: object) -> dict:
    if not isinstance(meta, dict):
        raise InspectError(f"its meta data is {type(meta).__name__}, not a dict")
    thr = meta.get("threshold")
    if thr is not None and not _real(thr, -1e30, 1e30):
        raise InspectError(f"its threshold is {_short(thr)}, not a finite number")
    if not isinstance(meta.get("model_id", ""), str):
        raise InspectError(f"its model id is {_short(meta.get('model_id'))}, not text")
    return dict(meta)


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
        inner = {k: v for k, v in sd["state_dict"].items() if isinstance(k, str)}
        if any(k.startswith("teacher.") for k in inner):
            sd = {k[len("teacher."):]: v for k, v in inner.items() if k.startswith("teacher.")}
        else:
            sd = inner
    layers: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in sd.items():
        if not isinstance(key, str):          # not a layer name of any known layout
            continue
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
    """Copy a teacher file's conv weights into our PDN. Every layer is checked (shape, bias,
    real finite numbers) before any is copied, so a bad file leaves the teacher untouched."""
    label = str(source) if not isinstance(source, dict) else "the teacher state"
    sd = _read_torch_file(source, "Teacher file") if not isinstance(source, dict) else source
    if not isinstance(sd, dict):
        raise InspectError(f"{label} is not a teacher file (expected a state_dict).")
    convs = teacher_convs_from_state(sd)
    ours = [m for m in model_teacher if isinstance(m, nn.Conv2d)]
    if len(convs) != len(ours):
        raise InspectError(
            f"{label} has {len(convs)} convolution layers; a {len(ours)}-layer teacher is needed "
            f"({'small' if len(ours) == 4 else 'medium'}). Check --size matches the teacher file.")
    for i, ((w, b), conv) in enumerate(zip(convs, ours)):
        if tuple(w.shape) != tuple(conv.weight.shape):
            raise InspectError(
                f"{label}: layer {i + 1} has shape {tuple(w.shape)}, expected "
                f"{tuple(conv.weight.shape)}. The file is for another PDN size or channel count.")
        if b is None or tuple(b.shape) != tuple(conv.bias.shape):
            raise InspectError(f"{label}: layer {i + 1} has no bias of {conv.bias.shape[0]} values; "
                               "the file is damaged or not a PDN teacher. Use another teacher file.")
        for t in (w, b):
            if t.layout != torch.strided or not t.is_floating_point() or not bool(torch.isfinite(t).all()):
                raise InspectError(f"{label}: layer {i + 1} holds values that are not finite real "
                                   "numbers; the file is damaged. Use another teacher file.")
    with torch.no_grad():
        for (w, b), conv in zip(convs, ours):
            conv.weight.copy_(w.float())
            conv.bias.copy_(b.float())
