"""The system libraries Qt's xcb platform plugin needs, checked before Qt is started.

Qt itself only says "could not load the Qt platform plugin xcb" when one is missing; this
module names the missing ones and the one `apt-get install` line that adds them.

The list was taken from the PySide6 wheel (6.12) itself: `readelf -d` (NEEDED) of
`PySide6/Qt/plugins/platforms/libqxcb.so`, `Qt/lib/libQt6XcbQpa.so.6`, `libQt6Gui.so.6`,
`libQt6Core.so.6`, `libQt6DBus.so.6` and `plugins/xcbglintegrations/*.so`, minus what the
wheel bundles (Qt, ICU) and what every Python has (libc, libstdc++, libm, libgcc_s); each
library's Debian package by `dpkg -S` on Debian 12. It matches Qt 6's "X11 requirements"
page (libxcb-cursor0 is needed since Qt 6.5). Only direct needs are checked: apt brings
each package's own dependencies (libXau, libpcre2, ...).

Stdlib only, so it runs before the app's packages exist (`python3 engine/syslibs.py`
from the installer, `make run`) and from main.py before any Qt import.
"""
from __future__ import annotations

import os
import platform
import re
import subprocess
import sys
from collections.abc import Callable, Iterable

# soname -> Debian/Ubuntu package that ships it
XCB_LIBRARIES: dict[str, str] = {
    "libxcb.so.1": "libxcb1",
    "libX11.so.6": "libx11-6",
    "libX11-xcb.so.1": "libx11-xcb1",
    "libxcb-cursor.so.0": "libxcb-cursor0",
    "libxcb-icccm.so.4": "libxcb-icccm4",
    "libxcb-image.so.0": "libxcb-image0",
    "libxcb-keysyms.so.1": "libxcb-keysyms1",
    "libxcb-randr.so.0": "libxcb-randr0",
    "libxcb-render.so.0": "libxcb-render0",
    "libxcb-render-util.so.0": "libxcb-render-util0",
    "libxcb-shape.so.0": "libxcb-shape0",
    "libxcb-shm.so.0": "libxcb-shm0",
    "libxcb-sync.so.1": "libxcb-sync1",
    "libxcb-util.so.1": "libxcb-util1",
    "libxcb-xfixes.so.0": "libxcb-xfixes0",
    "libxcb-xkb.so.1": "libxcb-xkb1",
    "libxcb-glx.so.0": "libxcb-glx0",
    "libxkbcommon.so.0": "libxkbcommon0",
    "libxkbcommon-x11.so.0": "libxkbcommon-x11-0",
    "libGL.so.1": "libgl1",
    "libEGL.so.1": "libegl1",
    "libfontconfig.so.1": "libfontconfig1",
    "libfreetype.so.6": "libfreetype6",
    "libglib-2.0.so.0": "libglib2.0-0",
    "libgthread-2.0.so.0": "libglib2.0-0",
    "libdbus-1.so.3": "libdbus-1-3",
    "libz.so.1": "zlib1g",
    "libzstd.so.1": "libzstd1",
}


def ldconfig_libraries() -> set[str]:
    """The sonames the dynamic linker's cache knows (`ldconfig -p`), plus those found in
    LD_LIBRARY_PATH folders. Empty when ldconfig cannot be run (then nothing is claimed
    missing: see missing_libraries)."""
    found: set[str] = set()
    for exe in ("ldconfig", "/sbin/ldconfig", "/usr/sbin/ldconfig"):
        try:
            out = subprocess.run([exe, "-p"], capture_output=True, text=True, timeout=10,
                                 env={**os.environ, "LC_ALL": "C"}).stdout
        except (OSError, subprocess.SubprocessError):
            continue
        # lines look like: "\tlibxcb.so.1 (libc6,x86-64) => /lib/x86_64-linux-gnu/libxcb.so.1";
        # on x86-64 an i386-only copy (no "x86-64" tag) would not load, so it does not count.
        for m in re.finditer(r"^\s*(\S+) \(([^)]*)\) =>", out, re.M):
            if platform.machine() != "x86_64" or "x86-64" in m.group(2):
                found.add(m.group(1))
        if found:
            break
    for folder in os.environ.get("LD_LIBRARY_PATH", "").split(os.pathsep):
        if folder and os.path.isdir(folder):
            found |= set(os.listdir(folder))
    return found


def missing_libraries(lookup: Callable[[], Iterable[str]] | None = None,
                      needed: dict[str, str] = XCB_LIBRARIES) -> list[str]:
    """Sonames of `needed` the lookup does not report. A lookup that reports nothing at all
    (no ldconfig: a musl or odd system) proves nothing, so nothing is reported missing and
    Qt's own message stays the word."""
    known = set((lookup or ldconfig_libraries)())
    if not known:
        return []
    return [name for name in needed if name not in known]


def install_command(missing: Iterable[str], needed: dict[str, str] = XCB_LIBRARIES) -> str:
    packages = sorted({needed[name] for name in missing})
    sudo = "" if hasattr(os, "geteuid") and os.geteuid() == 0 else "sudo "
    return f"{sudo}apt-get install -y " + " ".join(packages)


def message(missing: list[str], needed: dict[str, str] = XCB_LIBRARIES) -> str:
    """One sentence naming what is missing, then the one command that adds it."""
    return ("The desktop app cannot open a window: the system libraries Qt needs for X11 "
            f"are missing ({', '.join(missing)}). Install them with:\n\n"
            f"    {install_command(missing, needed)}\n")


def wants_xcb(env: dict[str, str] | None = None) -> bool:
    """True when Qt would start its xcb plugin: Linux, and QT_QPA_PLATFORM unset or xcb.
    offscreen, wayland, eglfs, vnc, ... need none of these libraries."""
    env = os.environ if env is None else env
    if not sys.platform.startswith("linux"):
        return False
    chosen = env.get("QT_QPA_PLATFORM", "").split(":")[0].split(";")[0].strip()
    if chosen == "" and env.get("WAYLAND_DISPLAY") and env.get("XDG_SESSION_TYPE") == "wayland":
        return False            # Qt 6 picks its wayland plugin first in a Wayland session
    return chosen in ("", "xcb")


def check(env: dict[str, str] | None = None,
          lookup: Callable[[], Iterable[str]] | None = None) -> str | None:
    """The message to print instead of starting Qt, or None when the GUI may start."""
    if not wants_xcb(env):
        return None
    missing = missing_libraries(lookup)
    return message(missing) if missing else None


def main(argv: list[str] | None = None) -> int:
    """`python3 engine/syslibs.py [--all]`: exit 1 with the install command when libraries
    are missing; `--all` prints the full list (for a line PC prepared in advance)."""
    argv = sys.argv[1:] if argv is None else argv
    if "--all" in argv:
        print(install_command(XCB_LIBRARIES))
        return 0
    text = check()          # as the app would start here: offscreen/wayland need none
    if text:
        print(text, file=sys.stderr)
        return 1
    print("The system libraries Qt needs for X11 are all present.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
