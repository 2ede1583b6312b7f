"""Pictures as files under a dated folder tree: <root>/YYYY/MM/DD/HH/<name>.png|.jpg (UTC).

A picture is written under a temporary name, flushed to disk, then renamed; only after
that does its row commit. So a committed row always points at a complete file, and a crash
leaves at worst a temporary file (deleted at startup) or a finished picture without a row
(its PNG carries the metadata to rebuild the row).
"""
from __future__ import annotations

import errno
import json
import os
import re
import shutil
import socket
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import cv2
import numpy as np

from engine.log.png import encode_png

TMP_SUFFIX = ".tmp"
IMAGE_SUFFIX = ".png"
OVERLAY_SUFFIX = "_overlay.jpg"
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")
DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)


@dataclass(frozen=True)
class SavedPictures:
    image_rel: str
    overlay_rel: str | None
    nbytes: int
    compressed: bool


def hour_folder(t_us: int) -> str:
    return datetime.fromtimestamp(t_us / 1e6, tz=timezone.utc).strftime("%Y/%m/%d/%H")


def picture_names(t_us: int, station: str, uid: str) -> tuple[str, str]:
    """Relative POSIX paths (image, overlay) for one inspection."""
    stamp = datetime.fromtimestamp(t_us / 1e6, tz=timezone.utc).strftime("%H%M%S")
    stem = f"{hour_folder(t_us)}/{stamp}_{_UNSAFE.sub('_', station)[:32]}_{uid}"
    return stem + IMAGE_SUFFIX, stem + OVERLAY_SUFFIX


def shrink(rgb: np.ndarray, max_side: int) -> np.ndarray:
    h, w = rgb.shape[:2]
    scale = max_side / max(h, w)
    if scale >= 1:
        return rgb
    return cv2.resize(rgb, (max(1, round(w * scale)), max(1, round(h * scale))),
                      interpolation=cv2.INTER_AREA)


def encode_overlay(rgb: np.ndarray, max_side: int, quality: int) -> bytes:
    small = np.ascontiguousarray(shrink(rgb, max_side)[..., ::-1])   # cv2 wants BGR
    ok, buf = cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ValueError("JPEG encoding of the overlay failed")
    return buf.tobytes()


LOCK_NAME = ".writer.lock"


class StoreLock:
    """One writer per pictures folder, across processes. The log holds it from open to
    close when it writes. The operating system drops the lock when its process dies (even
    by SIGKILL); the file keeps who held it (pid, host, since) until a clean close empties
    it, so the next holder knows whether the last run ended abruptly."""

    def __init__(self, root: Path):
        self.path = Path(root) / LOCK_NAME
        self._file = None
        self.previous: dict | None = None      # holder info a run that did not close left

    def acquire(self) -> bool:
        f = open(self.path, "a+b")
        try:
            if os.name == "nt":
                import msvcrt
                f.seek(0)
                msvcrt.locking(f.fileno(), msvcrt.LK_NBLCK, 1)
            else:
                import fcntl
                fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.close()
            return False
        self._file = f
        self.previous = self._parse(f)
        me = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}
        f.seek(0)
        f.truncate()
        f.write(json.dumps(me).encode())
        f.flush()
        return True

    def holder(self) -> dict | None:
        """Who holds the lock now (read while another process has it)."""
        try:
            with open(self.path, "rb") as f:
                return self._parse(f)
        except OSError:
            return None

    @staticmethod
    def _parse(f) -> dict | None:
        try:
            f.seek(0)
            data = f.read()
            return json.loads(data) if data.strip() else None
        except (OSError, ValueError):
            return None

    def release(self) -> None:
        """A clean release: the file is emptied (no run left unfinished)."""
        if self._file is not None:
            try:
                self._file.seek(0)
                self._file.truncate()
                self._file.flush()
            finally:
                self._file.close()      # closing drops the lock on every platform
                self._file = None


class PictureStore:
    def __init__(self, root: Path, fsync: bool = True):
        self.root = Path(root)
        self.fsync = fsync
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, rel: str) -> Path:
        return self.root / rel

    def save(self, image: np.ndarray, overlay: np.ndarray | None, names: tuple[str, str],
             metadata: dict, compress: bool, overlay_max_side: int, overlay_quality: int
             ) -> SavedPictures:
        """Encode and write both pictures; raises OSError (e.g. ENOSPC) with nothing left behind."""
        image_rel, overlay_rel = names
        meta = dict(metadata, overlay=overlay_rel if overlay is not None else None)
        png = encode_png(image, compress=compress, metadata=meta)
        jpg = encode_overlay(overlay, overlay_max_side, overlay_quality) if overlay is not None else None
        folder = self.path(image_rel).parent
        folder.mkdir(parents=True, exist_ok=True)
        written: list[Path] = []
        try:
            # The overlay goes first so a finished PNG (which carries the metadata that
            # rebuilds a lost row) always has its overlay beside it.
            if jpg is not None:
                written.append(self._write_atomic(overlay_rel, jpg))
            written.append(self._write_atomic(image_rel, png))
        except BaseException:
            for p in written:
                p.unlink(missing_ok=True)
            raise
        return SavedPictures(image_rel, overlay_rel if jpg is not None else None,
                             len(png) + (len(jpg) if jpg is not None else 0), compress)

    def _write_atomic(self, rel: str, data: bytes) -> Path:
        final = self.path(rel)
        tmp = final.with_name(final.name + TMP_SUFFIX)
        try:
            with open(tmp, "wb") as f:
                f.write(data)
                if self.fsync:
                    f.flush()
                    os.fdatasync(f.fileno())
            os.replace(tmp, final)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return final

    def delete(self, rel: str | None) -> int:
        """Remove one picture and any folders it leaves empty; returns the bytes freed."""
        if not rel:
            return 0
        p = self.path(rel)
        try:
            size = p.stat().st_size
            p.unlink()
        except FileNotFoundError:
            return 0
        self._prune_empty(p.parent)
        return size

    def _prune_empty(self, folder: Path) -> None:
        while folder != self.root and self.root in folder.parents:
            try:
                folder.rmdir()                  # fails (harmlessly) while anything is inside
            except OSError:
                return
            folder = folder.parent

    def size_of(self, *rels: str | None) -> int | None:
        """Total size of these files, or None if any is missing."""
        total = 0
        for rel in rels:
            if rel:
                try:
                    total += self.path(rel).stat().st_size
                except FileNotFoundError:
                    return None
        return total

    def free_bytes(self) -> int:
        return shutil.disk_usage(self.root).free

    def walk(self, since_hour: str | None = None):
        """Yield (relative path, is_temporary) of every file in hour folders >= since_hour."""
        for dirpath, dirnames, filenames in os.walk(self.root):
            rel_dir = Path(dirpath).relative_to(self.root).as_posix()
            if since_hour and rel_dir != ".":
                depth = rel_dir.count("/") + 1
                # Prune whole years/months/days/hours older than the window.
                if rel_dir < since_hour[:len(rel_dir)] and depth <= 4:
                    dirnames[:] = []
                    continue
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))   # .journal
            for name in filenames:
                if name.startswith("."):      # the writer lock, editor/OS droppings
                    continue
                rel = name if rel_dir == "." else f"{rel_dir}/{name}"
                yield rel, name.endswith(TMP_SUFFIX)
