"""Sources from one settings string or dict, and the list of what can be opened.

    sim[?seed=0&width=320&height=240&fps=10&defect_rate=0.3&count=0]
    folder:PATH[?fps=5&loop=1]
    video:FILE[?fps=...&loop=1]         video:0 or opencv:0   (an OpenCV camera index)
    genicam[:SERIAL][?cti=FILE&model=...&width=160&height=120&fps=30&exposure=5000
                     &gain=2&trigger=free|software|Line1:rising&pixel_format=Mono8&NODE=VALUE]

A dict takes the same keys plus "kind" (and "target" for what follows the colon). Unknown
GenICam keys are camera node names (BouncingBallSize=10), so any feature can be set.
"""
from __future__ import annotations

import glob
import sys
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from engine.camera.base import FrameSource
from engine.camera.folder import FolderConfig, FolderSource
from engine.camera.genicam import (GenICamConfig, GenICamSource, configured_producers,
                                   list_devices)
from engine.camera.kinds import KINDS, kind_of
from engine.camera.nodes import canonical
from engine.camera.simulated import SimulatedLineConfig, SimulatedLineSource
from engine.camera.video import VideoConfig, VideoSource
from engine.errors import InspectError

def parse_spec(spec: str | dict) -> dict[str, Any]:
    """'genicam:0?cti=a.cti&width=160' -> {'kind': 'genicam', 'target': '0', 'cti': 'a.cti', ...}"""
    if isinstance(spec, dict):
        out = dict(spec)
    else:
        head, _, query = str(spec).strip().partition("?")
        kind, _, target = head.partition(":")
        out = {"kind": kind, "target": target}
        for key, value in parse_qsl(query, keep_blank_values=True):
            if key == "cti":              # the only key that may repeat
                out.setdefault("cti", []).append(value)
            else:
                out[key] = value
    kind = kind_of(str(out.get("kind", "")).strip().lower())
    if kind not in KINDS:
        raise InspectError(f"Unknown source {spec!r}: start it with one of {', '.join(KINDS)} "
                           f"(e.g. sim, folder:/images, video:clip.mp4, genicam:SERIAL).")
    out["kind"] = kind
    out["target"] = str(out.get("target") or "")
    return out


def _number(opts: dict, key: str, default: float, kind: str, cast=float):
    if key not in opts:
        return default
    try:
        return cast(float(opts.pop(key)))
    except (TypeError, ValueError):
        raise InspectError(f"Source {kind}: option {key} needs a number.") from None


def _flag(opts: dict, key: str, default: bool, kind: str) -> bool:
    if key not in opts:
        return default
    value = str(opts.pop(key)).strip().lower()
    if value in ("1", "true", "yes", "on", ""):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise InspectError(f"Source {kind}: option {key} needs yes/no, not {value!r}.")


def _no_leftovers(opts: dict, kind: str, allowed: str) -> None:
    if opts:
        raise InspectError(f"Source {kind} has no option {', '.join(sorted(opts))} "
                           f"(options: {allowed}).")


def make_source(spec: str | dict) -> FrameSource:
    """Build (not open) the source a settings string or dict describes."""
    opts = parse_spec(spec)
    kind, target = opts.pop("kind"), opts.pop("target")
    if kind == "sim":
        kinds = opts.pop("defect_kinds", None)
        cfg = SimulatedLineConfig(
            seed=_number(opts, "seed", 0, kind, int), width=_number(opts, "width", 320, kind, int),
            height=_number(opts, "height", 240, kind, int), fps=_number(opts, "fps", 10.0, kind),
            defect_rate=_number(opts, "defect_rate", 0.3, kind), noise=_number(opts, "noise", 2.0, kind),
            count=_number(opts, "count", 0, kind, int),
            **({"defect_kinds": tuple(k.strip() for k in str(kinds).split(",") if k.strip())}
               if kinds is not None else {}))
        _no_leftovers(opts, kind, "seed, width, height, fps, defect_rate, defect_kinds, noise, count")
        try:
            return SimulatedLineSource(cfg)
        except ValueError as e:
            raise InspectError(str(e)) from None
    if kind == "folder":
        if not target:
            raise InspectError("Source folder needs a path: folder:/path/to/images.")
        cfg = FolderConfig(target, fps=_number(opts, "fps", 5.0, kind), loop=_flag(opts, "loop", True, kind))
        _no_leftovers(opts, kind, "fps, loop")
        return FolderSource(cfg)
    if kind in ("video", "opencv"):
        if not target:
            raise InspectError(f"Source {kind} needs a file or a camera index: video:clip.mp4, opencv:0.")
        fps = _number(opts, "fps", None, kind) if "fps" in opts else None
        cfg = VideoConfig(path=None if target.isdigit() else target,
                          index=int(target) if target.isdigit() else None,
                          fps=fps, loop=_flag(opts, "loop", True, kind))
        _no_leftovers(opts, kind, "fps, loop")
        return VideoSource(cfg)
    # genicam: the rest are camera settings
    ctis = opts.pop("cti", [])
    ctis = [ctis] if isinstance(ctis, str) else list(ctis)
    choice = {k: (str(opts.pop(k)) if k in opts else None) for k in ("serial", "model", "id")}
    config = GenICamConfig(
        producers=tuple(ctis), serial=target or choice["serial"], model=choice["model"],
        device_id=choice["id"], keep_raw=_flag(opts, "keep_raw", False, kind),
        num_buffers=_number(opts, "num_buffers", 4, kind, int),
        stall_after_s=_number(opts, "stall_after_s", 3.0, kind),
        settings=camera_settings(opts))
    return GenICamSource(config)


def camera_settings(opts: dict[str, Any]) -> dict[str, Any]:
    """Aliases resolved and roi=x,y,w,h split; order kept (the camera applies it in order)."""
    out: dict[str, Any] = {}
    for key, value in opts.items():
        if key == "roi":
            try:
                x, y, w, h = (int(float(v)) for v in str(value).split(","))
            except ValueError:
                raise InspectError(f"roi needs x,y,width,height, not {value!r}.") from None
            out.update(width=w, height=h, offset_x=x, offset_y=y)
        else:
            out[key] = value
    return canonical(out)


@dataclass(frozen=True)
class SourceInfo:
    kind: str
    spec: str               # what make_source() takes to open it
    label: str              # for a menu
    detail: dict = field(default_factory=dict)


def list_sources(producers: list[str] | None = None) -> tuple[list[SourceInfo], list[str]]:
    """What can be opened now, and one message per GenTL producer that could not be used."""
    devices, problems = list_devices(producers)
    out = [SourceInfo("genicam", d.spec, f"{d.vendor} {d.label}".strip(),
                      {"producer": d.producer, "access": d.access, "device_id": d.device_id})
           for d in devices]
    if sys.platform.startswith("linux"):
        for dev in sorted(glob.glob("/dev/video*")):
            index = dev.removeprefix("/dev/video")
            if index.isdigit():
                out.append(SourceInfo("opencv", f"opencv:{index}", f"OpenCV camera {index} ({dev})"))
    out.append(SourceInfo("sim", "sim", "Simulated production line (ground truth attached)"))
    return out, problems


def default_source_spec() -> str:
    """A real camera when a configured producer has one; otherwise the simulated line (the
    virtual viky camera only draws bouncing balls, useless for inspection)."""
    if configured_producers():
        devices, _ = list_devices()
        if devices:
            return devices[0].spec
    return "sim"
