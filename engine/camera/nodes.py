"""GenICam feature nodes: the app's setting names -> SFNC node names, checked writes, read-back.

Cameras name the same thing differently (SFNC 2 `ExposureTime`, older `ExposureTimeAbs`), and
a node can be missing, read-only or unavailable in the current mode. Every problem becomes an
InspectError that names the camera, the setting and the node, before anything is written.
"""
from __future__ import annotations

from typing import Any

from genicam import genapi

from engine.errors import InspectError

# app setting -> candidate SFNC nodes, the first one the camera has wins
STANDARD_NODES: dict[str, tuple[str, ...]] = {
    "exposure_us": ("ExposureTime", "ExposureTimeAbs"),
    "gain_db": ("Gain", "GainAbs"),
    "frame_rate": ("AcquisitionFrameRate", "AcquisitionFrameRateAbs"),
    "width": ("Width",),
    "height": ("Height",),
    "offset_x": ("OffsetX",),
    "offset_y": ("OffsetY",),
    "pixel_format": ("PixelFormat",),
}
# short names people type -> the setting names above
ALIASES = {"exposure": "exposure_us", "gain": "gain_db", "fps": "frame_rate",
           "frame_rate_hz": "frame_rate", "x": "offset_x", "y": "offset_y"}


def canonical(changes: dict[str, Any]) -> dict[str, Any]:
    """Aliases replaced by the setting names; order kept (the camera applies it in order)."""
    return {ALIASES.get(k, k): v for k, v in changes.items()}


# A value is only taken once automatic control is off or the limiter is enabled.
_SWITCH_FIRST: dict[str, tuple[tuple[str, Any], ...]] = {
    "exposure_us": (("ExposureAuto", "Off"),),
    "gain_db": (("GainAuto", "Off"),),
    "frame_rate": (("AcquisitionFrameRateEnable", True), ("AcquisitionFrameRateEnabled", True)),
}
# Settings that change the payload size or the acquisition's meaning: harvesters sizes its
# buffers when acquisition starts, so these are written with acquisition stopped.
RESTART_KEYS = frozenset({"width", "height", "offset_x", "offset_y", "pixel_format", "trigger"})
# Written in this order so that, e.g., a wider ROI fits before its offset moves.
_ORDER = ["trigger", "pixel_format", "width", "height", "offset_x", "offset_y",
          "frame_rate", "exposure_us", "gain_db"]

_IT = genapi.EInterfaceType
_AM = genapi.EAccessMode
_EDGES = {"rising": "RisingEdge", "falling": "FallingEdge", "any": "AnyEdge"}


def _mode(node) -> int:
    return node.node.get_access_mode()


class CameraNodes:
    """Typed, checked access to one camera's node map. `device` names the camera in messages."""

    def __init__(self, node_map, device: str):
        self.node_map = node_map
        self.device = device

    # --- lookup ------------------------------------------------------------------------
    def has(self, name: str) -> bool:
        try:
            return bool(self.node_map.has_node(name)) and _mode(self.node_map.get_node(name)) != _AM.NI
        except genapi.GenericException:
            return False

    def node_name(self, key: str) -> str:
        """The node behind an app setting (or a raw node name), or InspectError."""
        candidates = STANDARD_NODES.get(key, (key,))
        for name in candidates:
            if self.has(name):
                return name
        looked = ", ".join(candidates)
        what = f"{key} setting" if key in STANDARD_NODES else f"setting {key!r}"
        raise InspectError(f"Camera {self.device} has no {what} (GenICam node {looked} not found).")

    def read(self, name: str) -> Any:
        node = self.node_map.get_node(name)
        kind = node.node.principal_interface_type
        if kind == _IT.intfIEnumeration:
            return str(node.value)
        if kind == _IT.intfICommand:
            return None
        return node.value

    def describe(self, name: str) -> dict[str, Any]:
        """Value, limits and choices of a node as plain values (for listings and the GUI)."""
        node = self.node_map.get_node(name)
        kind = node.node.principal_interface_type
        out: dict[str, Any] = {"node": name, "access": _AM(_mode(node)).name}
        if _mode(node) in (_AM.RO, _AM.RW):
            out["value"] = self.read(name)
        if kind in (_IT.intfIInteger, _IT.intfIFloat):
            out.update(min=node.min, max=node.max)
            if kind == _IT.intfIInteger:
                out["inc"] = node.inc
        elif kind == _IT.intfIEnumeration:
            out["choices"] = list(node.symbolics)
        return out

    # --- checked writes ----------------------------------------------------------------
    def check_writable(self, name: str, label: str) -> None:
        mode = _mode(self.node_map.get_node(name))
        if mode == _AM.RO:
            raise InspectError(f"Camera {self.device}: {label} (node {name}) is read-only.")
        if mode == _AM.NA:
            raise InspectError(f"Camera {self.device}: {label} (node {name}) is not available in "
                               f"the camera's current mode (another setting locks it).")

    def coerce(self, name: str, value: Any, label: str) -> Any:
        """The value converted to the node's type and checked against its limits."""
        node = self.node_map.get_node(name)
        kind = node.node.principal_interface_type
        try:
            if kind == _IT.intfIInteger:
                v = int(float(value))
                if float(value) != v:
                    raise ValueError
                lo, hi, inc = node.min, node.max, max(1, node.inc)
                if not lo <= v <= hi:
                    raise InspectError(f"Camera {self.device}: {label} {v} is outside {lo}..{hi}.")
                return lo + (v - lo) // inc * inc          # cameras only take steps of `inc`
            if kind == _IT.intfIFloat:
                v = float(value)
                if not node.min <= v <= node.max:
                    raise InspectError(f"Camera {self.device}: {label} {v:g} is outside "
                                       f"{node.min:g}..{node.max:g}.")
                return v
            if kind == _IT.intfIEnumeration:
                choices = list(node.symbolics)
                match = [c for c in choices if c.lower() == str(value).lower()]
                if not match:
                    raise InspectError(f"Camera {self.device}: {label} {value!r} is not offered; "
                                       f"choose one of {', '.join(choices)}.")
                return match[0]
            if kind == _IT.intfIBoolean:
                if isinstance(value, str):
                    if value.lower() not in ("1", "0", "true", "false", "on", "off", "yes", "no"):
                        raise ValueError
                    return value.lower() in ("1", "true", "on", "yes")
                return bool(value)
            if kind == _IT.intfIString:
                return str(value)
            if kind == _IT.intfICommand:
                return True
        except (TypeError, ValueError):
            raise InspectError(f"Camera {self.device}: {label} needs a "
                               f"{_IT(kind).name[5:]} value, not {value!r}.") from None
        raise InspectError(f"Camera {self.device}: {label} (node {name}) cannot be set from here.")

    def write(self, name: str, value: Any, label: str | None = None) -> None:
        label = label or name
        self.check_writable(name, label)
        value = self.coerce(name, value, label)
        node = self.node_map.get_node(name)
        try:
            if node.node.principal_interface_type == _IT.intfICommand:
                node.execute()
            else:
                node.value = value
        except genapi.GenericException as e:
            raise InspectError(f"Camera {self.device} refused {label} = {value!r} "
                               f"(node {name}): {first_line(e)}") from e

    def _switch_first(self, key: str) -> None:
        for name, value in _SWITCH_FIRST.get(key, ()):
            if self.has(name) and _mode(self.node_map.get_node(name)) == _AM.RW:
                self.write(name, value)

    # --- the app's settings --------------------------------------------------------------
    def validate(self, changes: dict[str, Any]) -> None:
        """Raise before anything is written if one of the settings cannot be applied."""
        for key, value in changes.items():
            if key == "trigger":
                self._trigger_plan(value)
                continue
            name = self.node_name(key)
            if key not in _SWITCH_FIRST:        # an auto/enable switch may unlock it later
                self.check_writable(name, key)
            if key in ("width", "height") and self.has("OffsetX"):
                continue     # its limit depends on the offset, which apply() resets first
            self.coerce(name, value, key)

    def apply(self, changes: dict[str, Any]) -> None:
        keys = sorted(changes, key=lambda k: _ORDER.index(k) if k in _ORDER else len(_ORDER))
        for key in keys:
            value = changes[key]
            if key == "trigger":
                for name, v in self._trigger_plan(value):
                    self.write(name, v, f"trigger ({name})")
            elif key in ("width", "height") and self.has("Offset" + ("X" if key == "width" else "Y")):
                # A larger ROI only fits once the offset is back at 0; the offset is restored
                # (or set to the requested one) right after.
                off = "OffsetX" if key == "width" else "OffsetY"
                old = self.read(off)
                if _mode(self.node_map.get_node(off)) == _AM.RW:
                    self.write(off, 0)
                self.write(self.node_name(key), value, key)
                okey = "offset_x" if key == "width" else "offset_y"
                if okey not in changes and _mode(self.node_map.get_node(off)) == _AM.RW:
                    self.write(off, min(old, self.node_map.get_node(off).max), okey)
            else:
                self._switch_first(key)
                self.write(self.node_name(key), value, key)

    def read_settings(self, extra: tuple[str, ...] = ()) -> dict[str, Any]:
        """Every standard setting the camera has, plus the named extra nodes, read back."""
        out: dict[str, Any] = {}
        for key in STANDARD_NODES:
            try:
                name = self.node_name(key)
                if _mode(self.node_map.get_node(name)) in (_AM.RO, _AM.RW):
                    out[key] = self.read(name)
            except InspectError:
                continue
        trig = self.read_trigger()
        if trig is not None:
            out["trigger"] = trig
        for name in extra:
            if name not in out and self.has(name):
                out[name] = self.read(name)
        return out

    # --- trigger -------------------------------------------------------------------------
    def _trigger_plan(self, spec: Any) -> list[tuple[str, Any]]:
        """'free' | 'software' | 'LINE[:rising|falling|any]' -> checked node writes."""
        text = str(spec).strip()
        free = text.lower() in ("free", "off", "freerun", "free-run")
        if free and not self.has("TriggerMode"):
            return []               # a camera without triggers always runs free: nothing to do
        if not self.has("TriggerMode"):
            raise InspectError(f"Camera {self.device} has no trigger setting "
                               f"(GenICam node TriggerMode not found); it can only run free.")
        plan: list[tuple[str, Any]] = []
        if self.has("TriggerSelector"):
            sel = self.node_map.get_node("TriggerSelector")
            if "FrameStart" in sel.symbolics:
                plan.append(("TriggerSelector", "FrameStart"))
        if free:
            return plan + [("TriggerMode", "Off")]
        source, _, edge = text.partition(":")
        source = "Software" if source.lower() == "software" else source
        if not self.has("TriggerSource"):
            raise InspectError(f"Camera {self.device} has no TriggerSource node; "
                               f"trigger {text!r} cannot be set.")
        plan.append(("TriggerSource", self.coerce("TriggerSource", source, "trigger source")))
        if edge:
            if edge.lower() not in _EDGES:
                raise InspectError(f"Trigger edge {edge!r} is unknown; use rising, falling or any.")
            if not self.has("TriggerActivation"):
                raise InspectError(f"Camera {self.device} has no TriggerActivation node; "
                                   f"the {edge} edge cannot be chosen.")
            plan.append(("TriggerActivation",
                         self.coerce("TriggerActivation", _EDGES[edge.lower()], "trigger edge")))
        return plan + [("TriggerMode", "On")]

    def read_trigger(self) -> str | None:
        if not self.has("TriggerMode"):
            return None
        if self.read("TriggerMode") == "Off":
            return "free"
        source = self.read("TriggerSource") if self.has("TriggerSource") else "?"
        if source == "Software":
            return "software"
        if self.has("TriggerActivation"):
            edge = {v: k for k, v in _EDGES.items()}.get(self.read("TriggerActivation"), "")
            return f"{source}:{edge}" if edge else source
        return source

    def fire_software_trigger(self) -> None:
        if not self.has("TriggerSoftware"):
            raise InspectError(f"Camera {self.device} has no software trigger (TriggerSoftware).")
        self.write("TriggerSoftware", True, "software trigger")


def first_line(e: BaseException) -> str:
    return str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
