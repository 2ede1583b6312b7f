"""The app's settings: ONE validated model, saved as a JSON file with a schema version.

    s = load_settings(path)          # missing file -> defaults; bad file -> InspectError
    s, problems = load_settings_repaired(path)   # the app: each bad field -> its default
    s = replace(s, device="cpu")     # frozen dataclasses: change by replacing
    s.validate()                     # raises InspectError naming the field and what to do
    save_settings(s, path)           # atomic write

No Qt here: the GUI only edits these values. A file from an older schema is upgraded
(missing fields take their defaults); a file from a newer app is refused with a clear
message rather than silently dropping what this version does not know.

A wrong value never stops the app: `load_settings_repaired` puts the default in place of
each bad field (wrong type, NaN, a value its rules refuse, an unknown field) and returns one
Problem per field, naming it; the app keeps the original file aside and tells the user.
Only a file that cannot be used at all (unreadable, not JSON, not an object, a newer
schema) falls back to defaults as a whole.
"""
from __future__ import annotations

import json
import math
import os
import re
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

from engine.camera.kinds import KINDS as SOURCE_KINDS
from engine.camera.kinds import kind_of
from engine.calibration import valid_target
from engine.errors import InspectError
from engine.vocabulary import DEVICES, LEARN_PLANS, MODEL_SIZES, spoken

SCHEMA_VERSION = 2                   # 2: the region of interest moved from camera to layout
TRIGGERS = ("free", "software", "Line0", "Line1", "Line1:rising", "Line1:falling")  # suggestions
DEFAULT_PRODUCT = "demo part"
PRODUCT_NAME = r"[\w .\-+()]{1,64}"  # what a product may be called
# Training length an operator can wait for on a CPU. Measured on the 2-core dev PC while
# other jobs kept it busy: ~4.6 s per step at 256 px with bf16, so 300 steps take about
# 20 minutes there (less on a free CPU, seconds-per-hundred on a GPU). The paper's 70,000
# steps are for a GPU; raise the steps in Settings when one is present.
DEFAULT_TRAINING_STEPS = 300


@dataclass(frozen=True)
class CameraSettings:
    source: str = "sim"              # one of SOURCE_KINDS (engine/camera/kinds.py); "sim" needs no hardware
    producer_file: str = ""          # GenTL producer (.cti) for "genicam"
    device: str = ""                 # GenICam serial/id (empty: the first camera found); OpenCV index (empty: 0)
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
        if self.source == "opencv" and self.device and not self.device.isdigit():
            out.append(f"An OpenCV camera is chosen by its index (0, 1, ...), not {self.device!r}.")
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

    def source_spec(self) -> dict:
        """The engine/camera source spec these settings describe: the one way from settings
        to a source is engine.camera.make_source(settings.camera.source_spec())."""
        if self.source == "genicam":        # settings applied at every (re)connect, in order
            spec = {"kind": "genicam", "target": self.device,
                    "cti": [self.producer_file] if self.producer_file else [],
                    "trigger": self.trigger}
            spec.update({k: v for k, v in (("exposure_us", self.exposure_us),
                                           ("gain_db", self.gain_db)) if v is not None})
            return spec
        if self.source == "opencv":
            return {"kind": "opencv", "target": self.device or "0"}    # the camera's own rate
        if self.source in ("folder", "video"):
            return {"kind": self.source, "target": self.path, "fps": self.fps, "loop": "1"}
        return {"kind": self.source, "fps": self.fps}


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
    # When the log's database fails: "stop" judging until it is writable again, or "spool":
    # judge on, every verdict waiting in the local journal until the database answers.
    when_log_fails: str = "stop"

    def problems(self) -> list[str]:
        out = []
        if self.database_url and "://" not in self.database_url:
            out.append(f"Database URL {self.database_url!r} is not a URL (e.g. "
                       "postgresql://user@server/db), or leave it empty for the local file.")
        if self.when_log_fails not in ("stop", "spool"):
            out.append(f"When the log fails must be stop or spool, not {self.when_log_fails!r}.")
        return out


@dataclass(frozen=True)
class ProductSettings:
    model_file: str = ""             # empty: not learned yet
    threshold: float | None = None   # None: the model's own default threshold
    review_below: float | None = None  # REVIEW band [review_below, threshold); None: no band
    # The next Learn's default threshold aims at rejecting this share of good parts
    # (engine/calibration.py); a costly part tolerates more false rejects than a cheap one.
    target_false_reject: float = 0.01

    def problems(self, name: str) -> list[str]:
        out = []
        # Finite too: an infinite threshold (or NaN) would pass every part.
        if self.threshold is not None and not (self.threshold > 0 and math.isfinite(self.threshold)):
            out.append(f"Product {name!r}: the threshold must be a finite number above 0, "
                       f"not {self.threshold}.")
        if not valid_target(self.target_false_reject):
            out.append(f"Product {name!r}: the target false-reject rate must be between 0 and "
                       f"0.5 (e.g. 0.01 for 1%), not {self.target_false_reject}.")
        if self.review_below is not None:
            if not (self.review_below > 0 and math.isfinite(self.review_below)):
                out.append(f"Product {name!r}: the review level must be a finite number above 0.")
            elif self.threshold is not None and self.review_below >= self.threshold:
                out.append(f"Product {name!r}: the review level ({self.review_below:.4g}) must be "
                           f"below the fail threshold ({self.threshold:.4g}).")
        return out


@dataclass(frozen=True)
class LineSettings:
    """The station's outputs to the line (engine/outputs): OPC UA, Modbus TCP, REST API.
    Off by default: no port is opened until someone turns the outputs on."""
    enabled: bool = False
    host: str = "127.0.0.1"          # the interface every server binds to (localhost: this PC only)
    opcua: bool = True
    opcua_port: int = 4840
    opcua_user: str = ""             # required off localhost (Basic256Sha256 SignAndEncrypt)
    opcua_password: str = ""
    modbus: bool = True
    modbus_port: int = 5020
    trigger: str = "free"            # free | plc
    result_valid_ms: int = 200
    timeout_ms: int = 2000
    timeout_verdict: str = "FAIL"    # FAIL | REVIEW: the safe answer when no verdict came in time
    rest: bool = False
    rest_port: int = 8000
    rest_token: str = ""             # required off localhost
    product_numbers: tuple[str, ...] = ()   # PLC product number n = the n-th name (empty: sorted names)
    camera_line: str = ""            # GenICam camera output line raised on FAIL ("": none), e.g. Line1
    camera_user_output: str = "UserOutput0"
    mqtt_url: str = ""               # an MQTT broker to publish to ("": none), e.g. mqtt://broker:1883
    mqtt_topic: str = ""             # "": inspect/STATION
    mqtt_user: str = ""
    mqtt_password: str = ""

    def problems(self) -> list[str]:
        out = []
        if self.camera_line and not re.fullmatch(r"Line\d+", self.camera_line):
            out.append(f"Line: the camera output line must be a line name such as Line1, not "
                       f"{self.camera_line!r}.")
        if not re.fullmatch(r"UserOutput\d+", self.camera_user_output):
            out.append(f"Line: the camera user output must be such as UserOutput0, not "
                       f"{self.camera_user_output!r}.")
        for name in ("opcua_port", "modbus_port", "rest_port"):
            if not 1 <= getattr(self, name) <= 65535:
                out.append(f"Line: {name.replace('_', ' ')} must be a TCP port from 1 to 65535, "
                           f"not {getattr(self, name)}.")
        if self.trigger not in ("free", "plc"):
            out.append(f"Line: trigger must be free or plc, not {self.trigger!r}.")
        if not 10 <= self.result_valid_ms <= 10_000:
            out.append(f"Line: the result-valid pulse must be 10 to 10,000 ms, not {self.result_valid_ms}.")
        if not 50 <= self.timeout_ms <= 600_000:
            out.append(f"Line: the result timeout must be 50 to 600,000 ms, not {self.timeout_ms}.")
        if self.timeout_verdict not in ("FAIL", "REVIEW"):
            out.append(f"Line: the safe answer must be FAIL or REVIEW, not {self.timeout_verdict!r}.")
        if self.mqtt_url and not re.fullmatch(r"(mqtt://|tcp://)?[\w.\-\[\]:]+(:\d+)?/?", self.mqtt_url):
            out.append(f"Line: the MQTT broker must be an address such as mqtt://broker:1883, not "
                       f"{self.mqtt_url!r}.")
        if not self.host.strip():
            out.append("Line: the interface (host) must not be empty; 127.0.0.1 is this PC only.")
        return out

    def outputs_config(self):
        """The engine/outputs configuration these settings describe."""
        from engine.outputs.values import OutputsConfig
        return OutputsConfig(**{f.name: getattr(self, f.name) for f in fields(self)
                                if f.name != "enabled"})


@dataclass(frozen=True)
class Settings:
    schema_version: int = SCHEMA_VERSION
    station: str = "line1"
    operator: str = ""               # who changes thresholds and labels; empty: the login name
    camera: CameraSettings = field(default_factory=CameraSettings)
    storage: StorageSettings = field(default_factory=StorageSettings)
    device: str = "auto"             # one of DEVICES
    model_size: str = "small"        # one of MODEL_SIZES
    # What Learn builds (engine/staged.py): "staged" = the quick model at once, EfficientAD
    # trained behind it, the better one live; or only one of the two kinds.
    learn_plan: str = "staged"       # one of LEARN_PLANS
    image_size: int = 256            # network input side (and tile side)
    layout: LayoutSettings = field(default_factory=LayoutSettings)
    training_steps: int = DEFAULT_TRAINING_STEPS
    # Learn for this long in all (0: by steps alone; the steps then only cap it).
    training_minutes: float = 0.0
    good_frames: int = 40            # frames the Learn flow captures by default
    teacher: str = "default"         # "default" (shipped file), a path, or "random"
    penalty: str = "default"         # "default" (shipped folder), a folder, or "none"
    products: dict[str, ProductSettings] = field(
        default_factory=lambda: {DEFAULT_PRODUCT: ProductSettings()})
    current_product: str = DEFAULT_PRODUCT
    line: LineSettings = field(default_factory=LineSettings)

    def problems(self) -> list[str]:
        out = list(self.camera.problems()) + list(self.storage.problems()) + self.layout.problems()
        out += self.line.problems()
        if self.device not in DEVICES:
            out.append(f"Device must be one of {', '.join(DEVICES)}, not {self.device!r}.")
        if self.model_size not in MODEL_SIZES:
            out.append(f"Model size must be {spoken(MODEL_SIZES)}, not {self.model_size!r}.")
        if self.learn_plan not in LEARN_PLANS:
            out.append(f"What Learn builds must be {spoken(LEARN_PLANS)}, not {self.learn_plan!r}.")
        if self.image_size < 64 or self.image_size % 32 or self.image_size > 2048:
            out.append(f"Model input size must be a multiple of 32 from 64 to 2048, not {self.image_size}.")
        if not 0 <= self.training_minutes <= 10_000:          # also refuses NaN
            out.append(f"Training minutes must be between 0 (train by steps) and 10,000, not "
                       f"{self.training_minutes}.")
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
            elif not re.fullmatch(PRODUCT_NAME, name):
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


# What each field of the file must be. JSON has no types of its own, so '"fps": "fast"',
# 'NaN' (Python's json reads it) or '"products": [...]' are caught here with a sentence
# naming the field, before any rule compares them.
_KINDS: dict[type, dict[str, str]] = {
    CameraSettings: {"source": "text", "producer_file": "text", "device": "text", "path": "text",
                     "fps": "number", "exposure_us": "number?", "gain_db": "number?",
                     "trigger": "text"},
    LayoutSettings: {"tiling": "bool", "tile_scale": "number", "roi": "roi",
                     "roi_polygon": "polygon"},
    StorageSettings: {"folder": "text", "database_url": "text", "when_log_fails": "text"},
    LineSettings: {"enabled": "bool", "host": "text", "opcua": "bool", "opcua_port": "whole",
                   "opcua_user": "text", "opcua_password": "text", "modbus": "bool",
                   "modbus_port": "whole", "trigger": "text", "result_valid_ms": "whole",
                   "timeout_ms": "whole", "timeout_verdict": "text", "rest": "bool",
                   "rest_port": "whole", "rest_token": "text", "product_numbers": "texts",
                   "camera_line": "text", "camera_user_output": "text", "mqtt_url": "text",
                   "mqtt_topic": "text", "mqtt_user": "text", "mqtt_password": "text"},
    ProductSettings: {"model_file": "text", "threshold": "number?", "review_below": "number?",
                      "target_false_reject": "number"},
    Settings: {"schema_version": "whole", "station": "text", "operator": "text",
               "device": "text", "model_size": "text", "learn_plan": "text", "image_size": "whole",
               "training_steps": "whole", "training_minutes": "number", "good_frames": "whole", "teacher": "text",
               "penalty": "text", "current_product": "text"},
}
_SECTIONS = ("camera", "storage", "layout", "products", "line")
_KIND_WORDS = {"text": "text", "number": "a finite number", "number?": "a finite number or null",
               "whole": "a whole number", "bool": "true or false",
               "texts": "a list of texts",
               "roi": "null or a list of numbers x, y, width, height",
               "polygon": "null or a list of points [x, y]"}


def _finite(v) -> bool:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return False
    try:
        return math.isfinite(float(v))
    except OverflowError:                 # an integer beyond any float
        return False


def _kind_ok(kind: str, v) -> bool:
    if kind == "text":
        return isinstance(v, str)
    if kind == "number":
        return _finite(v)
    if kind == "number?":
        return v is None or _finite(v)
    if kind == "whole":
        return isinstance(v, int) and not isinstance(v, bool)
    if kind == "bool":
        return isinstance(v, bool)
    if kind == "texts":
        return isinstance(v, (list, tuple)) and len(v) <= 1000 and all(isinstance(t, str) for t in v)
    if kind == "roi":
        return v is None or isinstance(v, (list, tuple)) and len(v) <= 16 and all(map(_finite, v))
    return v is None or isinstance(v, (list, tuple)) and len(v) <= 100_000 and all(
        isinstance(p, (list, tuple)) and len(p) <= 16 and all(map(_finite, p)) for p in v)


def _short(v) -> str:
    """A value for a message: one line, at most 60 characters."""
    text = " ".join(repr(v).split())
    return text if len(text) <= 60 else text[:57] + "..."


@dataclass(frozen=True)
class Problem:
    """One thing wrong in a settings file, and what the app does about it."""
    text: str                        # what is wrong, naming the field
    fallback: str                    # what was used instead

    def __str__(self) -> str:
        return f"{self.text} {self.fallback}"


def _section(cls, raw, where: str, out: list[Problem], problems_of=None):
    """A dataclass from one JSON object: each field of the wrong type, each unknown field
    and (with `problems_of`, the section's rules) each value the rules refuse is reported
    and takes its default; the rest is kept."""
    default = cls()
    if raw is None:
        return default
    if not isinstance(raw, dict):
        out.append(Problem(f"Settings: {where} must be a JSON object, not {_short(raw)}.",
                           f"Using the defaults for {where}."))
        return default
    unknown = sorted(_short(k) for k in set(raw) - set(_KINDS[cls]))
    if unknown:
        names = ", ".join(unknown[:5]) + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else "")
        out.append(Problem(f"Settings: unknown field(s) {names} in {where}; remove them or use "
                           "the app version that wrote this file.", "They are ignored."))
    good = {}
    for name, kind in _KINDS[cls].items():
        if name not in raw:
            continue
        v = raw[name]
        if not _kind_ok(kind, v):
            out.append(Problem(f"Settings: {_path(where, name)} must be {_KIND_WORDS[kind]}, "
                               f"not {_short(v)}.", _using(getattr(default, name))))
            continue
        if kind in ("roi", "texts") and v is not None:
            v = tuple(v)
        elif kind == "polygon" and v is not None:
            v = tuple(tuple(p) for p in v)
        good[name] = v
    obj = cls(**good)
    return obj if problems_of is None else _repair(obj, problems_of, where, out)


def _path(where: str, name: str) -> str:
    return name if where == "settings" else f"{where}: {name}"


def _using(default) -> str:
    return "It is left unset (the default)." if default is None else \
        f"Using the default, {_short(default)}."


def _repair(obj, problems_of, where: str, out: list[Problem], skip=()):
    """Reset one field at a time to its default, last field first (later fields depend on
    earlier ones: the review level on the threshold), while that removes a problem."""
    default = type(obj)()
    now = problems_of(obj)
    while now:
        for f in reversed(fields(obj)):
            value = getattr(default, f.name)
            if f.name in skip or getattr(obj, f.name) == value:
                continue
            candidate = replace(obj, **{f.name: value})
            left = problems_of(candidate)
            if len(left) < len(now):
                gone = [p for p in now if p not in left] or now[:1]
                out.append(Problem(f"Settings: {' '.join(gone)}", _using(value)))
                obj, now = candidate, left
                break
        else:                             # no single field explains it: the whole section
            out.append(Problem(f"Settings: {' '.join(now)}", f"Using the defaults for {where}."))
            return default
    return obj


def _products(raw, out: list[Problem]) -> dict[str, ProductSettings]:
    default = Settings().products
    if raw is None:
        return default
    if not isinstance(raw, dict):
        out.append(Problem("Settings: products must be a JSON object of product name -> "
                           f"settings, not {_short(raw)}.", "Using the default product list."))
        return default
    products = {}
    for name, value in raw.items():
        if not isinstance(name, str) or not name.strip() or not re.fullmatch(PRODUCT_NAME, name):
            out.append(Problem(f"Settings: product name {_short(name)} is not valid (letters, "
                               "digits, spaces and . - + ( ) _, at most 64).",
                               "That product is left out."))
            continue
        products[name] = _section(ProductSettings, value, f"product {name!r}", out,
                                  lambda o, name=name: o.problems(name))
    if not products:
        out.append(Problem("Settings: there must be at least one product.",
                           "Using the default product list."))
        return default
    return products


def settings_with_problems(d) -> tuple[Settings, list[Problem]]:
    """Settings from a JSON value, every bad field replaced by its default and named in one
    Problem each. Only what makes the whole file unusable raises InspectError: not an
    object, a schema_version that is not a whole number, or a newer schema."""
    if not isinstance(d, dict):
        raise InspectError("The settings file must hold a JSON object.")
    d = dict(d)
    version = d.get("schema_version", 0)
    if isinstance(version, bool) or not isinstance(version, int):
        raise InspectError(f"Settings: schema_version must be a whole number, not {_short(version)}.")
    if version > SCHEMA_VERSION:
        raise InspectError(
            f"The settings file was written by a newer version of this app (settings version "
            f"{version}; this app reads up to {SCHEMA_VERSION}). Update the app, or delete or "
            "rename the file to start from defaults.")
    d = _upgrade(d, version)
    out: list[Problem] = []
    sections = {name: _section(cls, d.pop(name, None), name, out, cls.problems)
                for name, cls in (("camera", CameraSettings), ("storage", StorageSettings),
                                  ("layout", LayoutSettings), ("line", LineSettings))}
    sections["products"] = _products(d.pop("products", None), out)
    top = _section(Settings, {k: v for k, v in d.items() if k not in _SECTIONS}, "settings", out)
    s = replace(top, **sections)
    if s.current_product not in s.products:
        first = sorted(s.products)[0]
        out.append(Problem(f"Settings: the current product {_short(s.current_product)} is not in "
                           "the product list.", f"Using {first!r}."))
        s = replace(s, current_product=first)
    s = _repair(s, lambda o: o.problems(), "settings", out, skip=_SECTIONS + ("current_product",))
    return s, out


def settings_from_dict(d) -> Settings:
    """Strict: the first problem of the file is an InspectError (the command line, tests)."""
    s, problems = settings_with_problems(d)
    if problems:
        raise InspectError(" ".join(p.text for p in problems))
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
            layout = d.get("layout")
            d["layout"] = {**(layout if isinstance(layout, dict) else {}), "roi": roi}
    cam = d.get("camera")
    if isinstance(cam, dict) and isinstance(cam.get("source"), str):
        # source names before the camera spec's vocabulary ("simulated" is "sim")
        d["camera"] = {**cam, "source": kind_of(cam["source"])}
    d["schema_version"] = SCHEMA_VERSION
    return d


def _read_json(path: Path):
    """The file's JSON value, or None when there is no file; InspectError when unreadable."""
    try:
        if not path.exists():
            return None
        if not path.is_file():
            raise InspectError(f"The settings file {path} is a folder, not a file. Move it away "
                               "to start from defaults.")
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as e:
        # ValueError: broken JSON, and numbers too long to read; RecursionError: [[[[...]]]]
        why = " ".join(str(e).split())[:200]
        raise InspectError(f"The settings file {path} cannot be read ({why}). Fix it, or delete "
                           "or rename it to start from defaults.") from e


def load_settings(path: str | Path) -> Settings:
    """Missing file: defaults. Unreadable or invalid: InspectError saying what and where."""
    path = Path(path)
    d = _read_json(path)
    if d is None:
        return Settings()
    try:
        return settings_from_dict(d)
    except InspectError as e:
        raise InspectError(f"{e} (file: {path})") from e


def load_settings_repaired(path: str | Path) -> tuple[Settings, list[Problem]]:
    """What the app starts with: missing file -> defaults; each bad field -> its default and
    one Problem naming it. InspectError only when the file cannot be used at all (not
    readable, not JSON, not an object, a newer schema): the caller then starts on defaults."""
    path = Path(path)
    d = _read_json(path)
    if d is None:
        return Settings(), []
    return settings_with_problems(d)


def keep_aside(path: str | Path) -> Path:
    """Rename a settings file the app cannot use to settings.invalid-TIME[-N].json beside it
    (a new name each time: an earlier kept file is never overwritten) and return that name."""
    path = Path(path)
    stamp = int(time.time())
    bad = path.with_name(f"{path.stem}.invalid-{stamp}.json")
    n = 1
    while bad.exists():
        n += 1
        bad = path.with_name(f"{path.stem}.invalid-{stamp}-{n}.json")
    path.replace(bad)
    return bad


def save_settings(s: Settings, path: str | Path) -> None:
    """Validate, then write atomically (temp file + rename): a crash never leaves half a file."""
    s.validate()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(settings_to_dict(s), indent=2, sort_keys=False) + "\n", encoding="utf-8")
    tmp.replace(path)
