"""GenTL producers (.cti files) and the devices they list, through harvesters.

One Harvester per producer file per process (`ProducerHub`): a producer loaded twice in one
process sees no devices the second time, and closing either copy closes both. Harvester
.update() destroys every acquirer of that Harvester, so a hub only rescans while none of its
cameras is streaming.
"""
from __future__ import annotations

import logging
import os
import signal
import struct
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import genicam
from genicam import genapi, gentl
from harvesters.core import Harvester, ParameterKey, ParameterSet

from engine.camera.base import SourceUnavailable
from engine.camera.nodes import STANDARD_NODES, CameraNodes, first_line
from engine.errors import InspectError

# harvesters prints every fetch error with a traceback at ERROR level; the camera layer
# reports them as status messages instead. HARVESTERS_LOGGING_CONFIG still turns it on.
if "HARVESTERS_LOGGING_CONFIG" not in os.environ:
    logging.getLogger("harvesters.core").setLevel(logging.CRITICAL)

VIKY_CTI = Path(genicam.__file__).resolve().parent / "viky.cti"
GENTL_PATH_VARIABLE = "GENICAM_GENTL64_PATH"     # the GenTL standard's list of producer folders
GENTL_ERRORS = (gentl.GenericException, genapi.GenericException)
_ACCESS = {s.value: s.name.replace("DEVICE_ACCESS_STATUS_", "").lower()
           for s in gentl.DEVICE_ACCESS_STATUS_LIST}


def gentl_path_entries() -> tuple[list[Path], list[Path]]:
    """(.cti files found, entries that name nothing usable) in GENICAM_GENTL64_PATH.

    An entry is a folder of producers or a .cti file. One that does not exist (a vendor SDK
    removed, a typo) or is some other file is kept as named, so that whoever uses it says
    so, instead of the camera quietly being another one."""
    found: list[Path] = []
    broken: list[Path] = []
    for entry in os.environ.get(GENTL_PATH_VARIABLE, "").split(os.pathsep):
        if not entry.strip():
            continue
        p = Path(entry.strip())
        try:
            if p.is_dir():
                found += sorted(q for q in p.iterdir() if q.suffix.lower() == ".cti")
            elif p.is_file() and p.suffix.lower() == ".cti":
                found.append(p)
            else:
                broken.append(p)
        except OSError:                  # a folder we may not list
            broken.append(p)
    return found, broken


def configured_producers() -> list[Path]:
    """.cti files in the folders (or files) listed by GENICAM_GENTL64_PATH."""
    return gentl_path_entries()[0]


def default_producers() -> list[Path]:
    """The configured producers; when the variable lists only entries that do not exist,
    those entries (opening them says what is wrong: never the virtual camera in place of
    the one the variable meant); the genicam wheel's virtual camera when it lists none."""
    found, broken = gentl_path_entries()
    if found or broken:
        return found or broken
    return [VIKY_CTI] if VIKY_CTI.exists() else []


def _shown(p) -> str:
    """A path for a message: as is when printable, else quoted with escapes (one line)."""
    text = str(p)
    text = text if text.isprintable() else repr(text)
    return text if len(text) <= 300 else text[:297] + "..."


def _named_by_variable(p: Path) -> bool:
    """Whether p is an entry of GENICAM_GENTL64_PATH that names nothing usable."""
    broken = gentl_path_entries()[1]
    return any(p == b or os.path.abspath(p) == os.path.abspath(b) for b in broken)


def _path_problem(p: Path) -> str:
    try:
        what = "does not exist" if not p.exists() else "is neither a folder nor a .cti file"
    except OSError as e:
        what = f"cannot be used ({e.strerror})"
    return (f"{GENTL_PATH_VARIABLE} lists {_shown(p)}, which {what}: correct the variable, or install "
            "the camera maker's GenTL producer.")


# --- one Harvester per producer file ------------------------------------------------------
class ProducerHub:
    def __init__(self, path: Path):
        self.path = path
        self.lock = threading.RLock()
        self.harvester: Harvester | None = None

    def _start(self) -> Harvester:
        if self.harvester is None:
            _probe_producer(self.path)
            h = Harvester()
            h.add_file(str(self.path))
            h.update()
            self.harvester = h
        return self.harvester

    def live(self) -> list:
        h = self.harvester
        return [ia for ia in h.image_acquirers if ia.is_valid()] if h else []

    def devices(self, rescan: bool = False) -> list:
        """The device list; rescans the bus only when no camera of this producer streams."""
        with self.lock:
            h = self._start()
            if rescan and not self.live():
                h.update()
            if not self.path.exists():
                raise SourceUnavailable(f"GenTL producer {self.path} has disappeared.")
            return list(h.device_info_list)

    def create(self, info, num_buffers: int):
        with self.lock:
            h = self._start()
            in_main = threading.current_thread() is threading.main_thread()
            # harvesters installs its own SIGINT handler when created on the main thread,
            # which would swallow Ctrl+C in the command line; put ours back.
            old_handler = signal.getsignal(signal.SIGINT) if in_main else None
            try:
                return h.create(info, config=ParameterSet(
                    {ParameterKey.NUM_BUFFERS_FOR_FETCH_CALL: num_buffers}))
            finally:
                if in_main:
                    signal.signal(signal.SIGINT, old_handler)

    def discard(self, ia) -> None:
        """Stop and release an acquirer; after a camera loss this may fail, which is fine."""
        with self.lock:
            try:
                ia.destroy()
            except Exception:      # handles already gone: nothing more to release here
                pass
            h = self.harvester
            if h is not None and ia in h.image_acquirers:
                # A failed destroy leaves it listed, and the next update() would raise on it.
                h.image_acquirers.remove(ia)


_HUBS: dict[Path, ProducerHub] = {}
_HUBS_LOCK = threading.Lock()


def _check_elf(path: Path) -> None:
    """Refuse an ELF library whose header or loadable segments reach past the end of the
    file. The dynamic loader maps those segments and touching the missing pages kills the
    whole process with SIGBUS (a producer copied or downloaded only in part does this).
    Other files are left to the loader, which refuses them cleanly."""
    try:
        with open(path, "rb") as f:
            head = f.read(64)
            if head[:4] != b"\x7fELF":
                return
            size = os.fstat(f.fileno()).st_size
            needed = _elf_extent(f, head, size)
    except OSError as e:
        raise InspectError(f"GenTL producer {_shown(path)} cannot be read ({e.strerror}).") from e
    if needed is None:
        raise InspectError(f"GenTL producer {_shown(path)} cannot be loaded: its ELF header is "
                           "cut short or invalid. Install the producer again.")
    if needed > size:
        raise InspectError(f"GenTL producer {_shown(path)} cannot be loaded: the file is cut short "
                           f"({size:,} bytes, it needs {needed:,}). Install the producer again.")


def _elf_extent(f, head: bytes, size: int) -> int | None:
    """How many bytes the ELF file's headers and PT_LOAD segments need; None: bad header."""
    if len(head) < 52 or head[4] not in (1, 2) or head[5] not in (1, 2):
        return None
    wide, order = head[4] == 2, "<" if head[5] == 1 else ">"      # 64-bit, little-endian
    if wide and len(head) < 64:
        return None
    phoff, shoff = struct.unpack_from(order + ("QQ" if wide else "II"), head, 32 if wide else 28)
    phentsize, phnum, shentsize, shnum = struct.unpack_from(order + "HHHH", head,
                                                            54 if wide else 42)
    table_end = phoff + phentsize * phnum
    ends = [table_end, shoff + shentsize * shnum if shnum else 0]
    if phnum and table_end <= size and phentsize >= (56 if wide else 32):
        f.seek(phoff)
        table = f.read(phentsize * phnum)
        for i in range(phnum):
            kind, offset, filesz = _segment(table, i * phentsize, order, wide)
            if kind == 1:                       # PT_LOAD: mapped by the loader
                ends.append(offset + filesz)
    return max(ends)


def _segment(table: bytes, at: int, order: str, wide: bool) -> tuple[int, int, int]:
    """(p_type, p_offset, p_filesz) of one ELF program header."""
    if wide:
        kind, _flags, offset, _va, _pa, filesz = struct.unpack_from(order + "IIQQQQ", table, at)
    else:
        kind, offset, _va, _pa, filesz = struct.unpack_from(order + "IIIII", table, at)
    return kind, offset, filesz


def _probe_producer(path: Path) -> None:
    """Load the producer once on its own to turn a broken file into a clear message
    (harvesters only logs it and shows no devices)."""
    _check_elf(path)
    producer = gentl.GenTLProducer.create_producer()
    try:
        producer.open(str(path))
    except GENTL_ERRORS as e:
        raise InspectError(f"GenTL producer {_shown(path)} cannot be loaded: {first_line(e)}") from e
    producer.close()


def check_producer(path: str | Path) -> Path:
    """An existing, loadable .cti as an absolute path, or InspectError naming the file."""
    p = Path(path)
    try:
        p = p.expanduser()
    except RuntimeError:                 # "~someone" who has no home here: use it as written
        pass
    if _named_by_variable(p):
        raise InspectError(_path_problem(p))
    try:
        exists, is_file = p.exists(), p.is_file()
        if is_file:
            p = p.resolve()
    except (OSError, RuntimeError) as e:  # a name too long, a symlink loop
        raise InspectError(f"GenTL producer {_shown(p)} cannot be used ({e}); check the path.") from e
    if not exists:
        raise InspectError(f"GenTL producer {_shown(p)} does not exist.")
    if not is_file:
        raise InspectError(f"GenTL producer {_shown(p)} is not a file.")
    hub(p)._start()
    return p


def hub_started(path: Path) -> bool:
    """Whether this process already loaded the producer (then its file is not re-checked)."""
    with _HUBS_LOCK:
        return path in _HUBS and _HUBS[path].harvester is not None


def hub(path: Path) -> ProducerHub:
    with _HUBS_LOCK:
        if path not in _HUBS:
            _HUBS[path] = ProducerHub(path)
        return _HUBS[path]


# --- device listing -------------------------------------------------------------------------
def info_field(info, attr: str) -> str:
    try:
        value = getattr(info, attr)
    except GENTL_ERRORS:
        return ""
    return "" if value is None else str(value)


@dataclass(frozen=True)
class DeviceEntry:
    producer: str
    vendor: str
    model: str
    serial: str
    device_id: str
    access: str                 # readwrite, readonly, busy, open_readwrite, ...
    spec: str                   # the source string that opens it

    @property
    def label(self) -> str:
        return f"{self.model} SN {self.serial}"


def device_entry(path: Path, info) -> DeviceEntry:
    try:
        access = _ACCESS.get(int(info.access_status), str(info.access_status))
    except GENTL_ERRORS:
        access = "unknown"
    serial = info_field(info, "serial_number")
    spec = f"genicam:{serial}" + ("" if path == VIKY_CTI else f"?cti={path}")
    return DeviceEntry(str(path), info_field(info, "vendor"), info_field(info, "model"), serial,
                       info_field(info, "id_"), access, spec)


def list_devices(producers: list[str | Path] | None = None
                 ) -> tuple[list[DeviceEntry], list[str]]:
    """Devices of every producer, and one message per producer that could not be used."""
    entries: list[DeviceEntry] = []
    problems: list[str] = []
    if not producers:           # stale entries beside working ones are still worth saying
        found, broken = gentl_path_entries()
        if found:
            problems += [_path_problem(p) for p in broken]
    for p in (producers if producers else default_producers()):
        try:
            path = check_producer(p)
            entries += [device_entry(path, i) for i in hub(path).devices(rescan=True)]
        except InspectError as e:
            problems.append(str(e))
    return entries, problems


def describe_device(entry: DeviceEntry) -> dict[str, Any]:
    """Open a listed device briefly (no streaming) and read its main settings with their
    limits. A device that is busy or in use by this app is reported as such, not opened."""
    path = Path(entry.producer)
    h = hub(path)
    info = next((i for i in h.devices() if info_field(i, "serial_number") == entry.serial
                 and info_field(i, "id_") == entry.device_id), None)
    if info is None:
        return {"error": "no longer listed"}
    try:
        ia = h.create(info, num_buffers=1)
    except GENTL_ERRORS as e:
        return {"error": f"busy or not accessible ({first_line(e)})"}
    try:
        nodes = CameraNodes(ia.remote_device.node_map, entry.label)
        out: dict[str, Any] = {}
        for key in STANDARD_NODES:
            try:
                out[key] = nodes.describe(nodes.node_name(key))
            except (InspectError, *GENTL_ERRORS):
                out[key] = None
        out["trigger"] = nodes.read_trigger()
        return out
    finally:
        h.discard(ia)
