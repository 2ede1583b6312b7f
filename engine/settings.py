"""The app's settings: ONE validated model, saved as a JSON file with a schema version.

    s = load_settings(path)          # missing file -> defaults; bad file -> InspectError
    s = replace(s, device="cpu")     # frozen dataclasses: change by replacing
    s.validate()                     # raises InspectError naming the field and what to do
    save_settings(s, path)           # atomic write

No Qt here: the GUI only edits these values. A file from an older schema is upgraded
(missing fields take their defaults); a file from a newer app is refused with a clear
message rather than silently dropping what this version does not know.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

from engine.errors import InspectError

SCHEMA_VERSION = 2                   # 2: the region of interest moved from camera to layout
SOURCE_KINDS = ("simulated", "genicam", "folder", "video")
TRIGGERS = ("free", "software", "Line0", "Line1", "Line1:rising", "Line1:falling")  # suggestions
DEVICES = ("auto", "cuda", "cpu")
MODEL_SIZES = ("small", "medium")
DEFAULT_PRODUCT = "demo part"
# Training length an operator can wait for on a CPU. Measured on the 2-core dev PC while
# other jobs kept it busy: ~4.6 s per step at 256 px with bf16, so 300 steps take about
# 20 minutes there (less on a free CPU, seconds-per-hundred on a GPU). The paper's 70,000
# steps are for a GPU; raise the steps in Settings when one is present.
DEFAULT_TRAINING_STEPS = 300


@dataclass(frozen=True)
class CameraSettings:
    source: str = "simulated"        # one of SOURCE_KINDS; "simulated" needs no hardware
    producer_file: str = ""          # GenTL producer (.cti) for "genicam"
    device: str = ""                 # GenICam serial/id; empty: the first camera found
    path: str = ""                   # folder of images ("folder") or video file ("video")
    fps: float = 10.0                # simulated line / folder / video playback rate
    exposure_us: float | None = None  # None: leave the camera's own value
    gain_db: float | None = None
    trigger: str = "free"            # "free", "software" or a camera line "Line1[:rising|falling|any]"

    def problems(self) -> list[str]:
        out = []
        if self.source not in SOURCE_KINDS:
            out.append(f"Camera source must be one of {', '.join(SOURCE_KINDS)}, not {self.source!r}.")
        if self.source == "genicam" and self.producer_file and not self.producer_file.endswith(".cti"):
            out.append(f"The GenTL producer file should end in .cti ({self.producer_file!r}).")
        if self.source in ("folder", "video") and not self.path:
            out.append(f"A {self.source} source needs a path: choose the {self.source}.")
        if not 0.1 <= self.fps <= 1000:
            out.append(f"Frame rate must be between 0.1 and 1000 per second, not {self.fps}.")
        if self.exposure_us is not None and not 1 <= self.exposure_us <= 10_000_000:
            out.append(f"Exposure must be between 1 µs and 10 s, not {self.exposure_us} µs.")
        if self.gain_db is not None and not -20 <= self.gain_db <= 60:
            out.append(f"Gain must be between -20 and 60 dB, not {self.gain_db}.")
        if not re.fullmatch(r"free|software|Line\d+(:(rising|falling|any))?", self.trigger):
            out.append(f"Trigger must be free, software or a camera line such as Line1 or "
                       f"Line1:rising, not {self.trigger!r}.")
        return out


@dataclass(frozen=True)
class LayoutSettings:
    """Where the networks look in a frame, for the next Learn (engine/layout.py). A trained
    model keeps its own copy, so changing these never changes a model already in use."""
    tiling: bool = False             # cut frames into image_size tiles (small defects, big frames)
    tile_scale: float = 1.0          # frames are resized by this before tiling
    roi: tuple[int, int, int, int] | None = None   # x, y, w, h in frame pixels; None: whole frame
    roi_polygon: tuple[tuple[int, int], ...] | None = None  # optional, inside the ROI

    def problems(self) -> list[str]:
        out = []
        if not 0.05 <= self.tile_scale <= 4.0:
            out.append(f"Tile scale must be between 0.05 and 4, not {self.tile_scale}.")
        if self.roi is not None:
            if len(self.roi) != 4 or any(int(v) != v for v in self.roi):
                out.append("Region of interest must be four whole numbers: x, y, width, height.")
            elif self.roi[0] < 0 or self.roi[1] < 0 or self.roi[2] < 32 or self.roi[3] < 32:
                out.append("Region of interest must start inside the frame and be at least "
                           f"32×32 pixels, not {self.roi}.")
        if self.roi_polygon is not None:
            if len(self.roi_polygon) < 3 or any(len(p) != 2 for p in self.roi_polygon):
                out.append("A region-of-interest polygon needs at least 3 points x,y.")
            elif any(int(v) != v or v < 0 for p in self.roi_polygon for v in p):
                out.append("Polygon points must be whole, non-negative pixel positions.")
        return out


def _pixels(text: str) -> tuple[int, ...]:
    """"1, 2.4,3" -> (1, 2, 3): numbers rounded to whole pixels; ValueError otherwise."""
    return tuple(int(round(float(v))) for v in text.replace(" ", "").split(","))


def parse_roi(text: str) -> tuple[int, int, int, int] | None:
    """"x, y, w, h" -> tuple; empty -> None; anything else -> InspectError with the format.
    The one parser for the Learn screen and the command line's --roi."""
    text = text.strip()
    if not text:
        return None
    try:
        roi = _pixels(text)
    except ValueError:
        roi = ()
    if len(roi) != 4:
        raise InspectError(f"Region of interest takes four numbers: x, y, width, height "
                           f"(four whole numbers, e.g. 0,0,640,480; not {text!r}).")
    return roi


def parse_polygon(text: str) -> tuple[tuple[int, int], ...] | None:
    """"x1,y1; x2,y2; x3,y3" -> points; empty -> None (Learn screen and --roi-polygon)."""
    text = text.strip()
    if not text:
        return None
    try:
        pts = tuple(_pixels(p) for p in text.replace(" ", "").split(";") if p)
    except ValueError:
        pts = ()
    if len(pts) < 3 or any(len(p) != 2 for p in pts):
        raise InspectError(f"A polygon is at least 3 points x,y separated by ';' (not {text!r}).")
    return pts


@dataclass(frozen=True)
class StorageSettings:
    folder: str = ""                 # data folder: log, pictures, models. Empty: the app's default
    database_url: str = ""           # empty: SQLite in the folder; else e.g. postgresql://...

    def problems(self) -> list[str]:
        if self.database_url and "://" not in self.database_url:
            return [f"Database URL {self.database_url!r} is not a URL (e.g. "
                    "postgresql://user@server/db), or leave it empty for the local file."]
        return []


@dataclass(frozen=True)
class ProductSettings:
    model_file: str = ""             # empty: not learned yet
    threshold: float | None = None   # None: the model's own default threshold
    review_below: float | None = None  # REVIEW band [review_below, threshold); None: no band

    def problems(self, name: str) -> list[str]:
        out = []
        if self.threshold is not None and not self.threshold > 0:
            out.append(f"Product {name!r}: the threshold must be above 0, not {self.threshold}.")
        if self.review_below is not None:
            if not self.review_below > 0:
                out.append(f"Product {name!r}: the review level must be above 0.")
            elif self.threshold is not None and self.review_below >= self.threshold:
                out.append(f"Product {name!r}: the review level ({self.review_below:.4g}) must be "
                           f"below the fail threshold ({self.threshold:.4g}).")
        return out


@dataclass(frozen=True)
class Settings:
    schema_version: int = SCHEMA_VERSION
    station: str = "line1"
    operator: str = ""               # who changes thresholds and labels; empty: the login name
    camera: CameraSettings = field(default_factory=CameraSettings)
    storage: StorageSettings = field(default_factory=StorageSettings)
    device: str = "auto"             # one of DEVICES
    model_size: str = "small"        # one of MODEL_SIZES
    image_size: int = 256            # network input side (and tile side)
    layout: LayoutSettings = field(default_factory=LayoutSettings)
    training_steps: int = DEFAULT_TRAINING_STEPS
    good_frames: int = 40            # frames the Learn flow captures by default
    teacher: str = "default"         # "default" (shipped file), a path, or "random"
    penalty: str = "default"         # "default" (shipped folder), a folder, or "none"
    products: dict[str, ProductSettings] = field(
        default_factory=lambda: {DEFAULT_PRODUCT: ProductSettings()})
    current_product: str = DEFAULT_PRODUCT

    def problems(self) -> list[str]:
        out = list(self.camera.problems()) + list(self.storage.problems()) + self.layout.problems()
        if self.device not in DEVICES:
            out.append(f"Device must be one of {', '.join(DEVICES)}, not {self.device!r}.")
        if self.model_size not in MODEL_SIZES:
            out.append(f"Model size must be small or medium, not {self.model_size!r}.")
        if self.image_size < 64 or self.image_size % 32 or self.image_size > 2048:
            out.append(f"Model input size must be a multiple of 32 from 64 to 2048, not {self.image_size}.")
        if not 1 <= self.training_steps <= 1_000_000:
            out.append(f"Training steps must be between 1 and 1,000,000, not {self.training_steps}.")
        if not 5 <= self.good_frames <= 5000:
            out.append(f"Good frames to capture must be between 5 and 5000, not {self.good_frames}.")
        if not self.station.strip():
            out.append("The station name must not be empty.")
        if not self.products:
            out.append("There must be at least one product.")
        for name, p in self.products.items():
            if not name.strip():
                out.append("A product name must not be empty.")
            elif not re.fullmatch(r"[\w .\-+()]{1,64}", name):
                out.append(f"Product name {name!r} may only use letters, digits, spaces and . - + ( ) _.")
            out += p.problems(name)
        if self.current_product not in self.products:
            out.append(f"The current product {self.current_product!r} is not in the product list.")
        return out

    def validate(self) -> "Settings":
        problems = self.problems()
        if problems:
            raise InspectError("Settings are not valid: " + " ".join(problems))
        return self

    @property
    def product(self) -> ProductSettings:
        return self.products.get(self.current_product, ProductSettings())

    def with_product(self, name: str, product: ProductSettings) -> "Settings":
        return replace(self, products={**self.products, name: product})

    def operator_name(self) -> str:
        if self.operator.strip():
            return self.operator.strip()
        try:
            return os.getlogin()
        except OSError:
            return os.environ.get("USER") or os.environ.get("USERNAME") or "operator"


# ---- JSON ------------------------------------------------------------------------------

def settings_to_dict(s: Settings) -> dict:
    d = asdict(s)
    lay = s.layout
    d["layout"]["roi"] = list(lay.roi) if lay.roi is not None else None
    d["layout"]["roi_polygon"] = [list(p) for p in lay.roi_polygon] if lay.roi_polygon else None
    return d


def _build(cls, d: dict, where: str):
    """Dataclass from a dict: unknown keys refused by name, missing keys take defaults."""
    if not isinstance(d, dict):
        raise InspectError(f"Settings: {where} must be a JSON object.")
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(d) - known)
    if unknown:
        raise InspectError(f"Settings: unknown field(s) {', '.join(unknown)} in {where}; "
                           "remove them or use the app version that wrote this file.")
    try:
        return cls(**d)
    except TypeError as e:
        raise InspectError(f"Settings: {where} is not valid ({e}).") from e


def settings_from_dict(d: dict) -> Settings:
    if not isinstance(d, dict):
        raise InspectError("The settings file must hold a JSON object.")
    d = dict(d)
    version = d.get("schema_version", 0)
    if not isinstance(version, int):
        raise InspectError(f"Settings: schema_version must be a whole number, not {version!r}.")
    if version > SCHEMA_VERSION:
        raise InspectError(
            f"The settings file was written by a newer version of this app (settings version "
            f"{version}; this app reads up to {SCHEMA_VERSION}). Update the app, or delete or "
            "rename the file to start from defaults.")
    d = _upgrade(d, version)
    cam = dict(d.pop("camera", {}) or {})
    lay = dict(d.pop("layout", {}) or {})
    try:
        if lay.get("roi") is not None:
            lay["roi"] = tuple(lay["roi"])
        if lay.get("roi_polygon") is not None:
            lay["roi_polygon"] = tuple(tuple(p) for p in lay["roi_polygon"])
    except TypeError:
        raise InspectError("Settings: the region of interest must be lists of numbers.") from None
    products = {str(k): _build(ProductSettings, v, f"product {k!r}")
                for k, v in (d.pop("products", None) or {}).items()} or None
    s = _build(Settings, {**d, "camera": _build(CameraSettings, cam, "camera"),
                          "layout": _build(LayoutSettings, lay, "layout"),
                          "storage": _build(StorageSettings, d.pop("storage", {}) or {}, "storage"),
                          **({"products": products} if products else {})}, "settings")
    _check_types(s)
    return s.validate()


def _upgrade(d: dict, version: int) -> dict:
    """Older schemas -> this one, one step per schema change.
    0: files written before the version field existed (same fields as 1).
    1 -> 2: the region of interest moved from the camera to the layout (tiling, polygon)."""
    if version < 2:
        cam = d.get("camera")
        if isinstance(cam, dict) and "roi" in cam:
            cam = dict(cam)
            roi = cam.pop("roi")
            d["camera"] = cam
            d["layout"] = {**(d.get("layout") or {}), "roi": roi}
    d["schema_version"] = SCHEMA_VERSION
    return d


def _check_types(s: Settings) -> None:
    """JSON has no types of its own: catch '"steps": "many"' with a sentence, not a crash."""
    def num(v, name, optional=False):
        if v is None and optional:
            return
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise InspectError(f"Settings: {name} must be a number, not {v!r}.")
    for name in ("image_size", "training_steps", "good_frames"):
        v = getattr(s, name)
        if isinstance(v, bool) or not isinstance(v, int):
            raise InspectError(f"Settings: {name} must be a whole number, not {v!r}.")
    num(s.camera.fps, "camera fps")
    num(s.camera.exposure_us, "camera exposure", True)
    num(s.camera.gain_db, "camera gain", True)
    num(s.layout.tile_scale, "layout tile scale")
    if not isinstance(s.layout.tiling, bool):
        raise InspectError(f"Settings: layout tiling must be true or false, not {s.layout.tiling!r}.")
    for pname, p in s.products.items():
        num(p.threshold, f"product {pname!r} threshold", True)
        num(p.review_below, f"product {pname!r} review level", True)
        if not isinstance(p.model_file, str):
            raise InspectError(f"Settings: product {pname!r} model_file must be a path.")
    for name in ("station", "operator", "device", "model_size", "teacher", "penalty", "current_product"):
        if not isinstance(getattr(s, name), str):
            raise InspectError(f"Settings: {name} must be text.")


def load_settings(path: str | Path) -> Settings:
    """Missing file: defaults. Unreadable or invalid: InspectError saying what and where."""
    path = Path(path)
    if not path.is_file():
        return Settings()
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InspectError(f"The settings file {path} cannot be read ({e}). Fix it, or delete or "
                           "rename it to start from defaults.") from e
    try:
        return settings_from_dict(d)
    except InspectError as e:
        raise InspectError(f"{e} (file: {path})") from e


def save_settings(s: Settings, path: str | Path) -> None:
    """Validate, then write atomically (temp file + rename): a crash never leaves half a file."""
    s.validate()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(settings_to_dict(s), indent=2, sort_keys=False) + "\n", encoding="utf-8")
    tmp.replace(path)
