"""Free space where the log writes: warn early, stop pictures at the reserve, and after a
disk-full error wait for real room before trying pictures again."""
from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Callable

from sqlalchemy import Engine

from engine.log.config import LogConfig
from engine.log.events import Throttle
from engine.log.pictures import PictureStore

_ROOM_AFTER_FULL = 8e6     # bytes more than at the failure before pictures are tried again


def free_bytes(engine: Engine, pictures: PictureStore) -> list[int]:
    """Free space where pictures go and, for SQLite, where the database grows."""
    free = [pictures.free_bytes()]
    if engine.url.get_backend_name() == "sqlite":
        free.append(shutil.disk_usage(Path(engine.url.database).parent).free)
    return free


class DiskWatch:
    def __init__(self, free_bytes: Callable[[], list[int]], cfg: LogConfig, throttle: Throttle,
                 emit: Callable[..., None]):
        self._free_bytes, self._cfg, self._throttle, self._emit = free_bytes, cfg, throttle, emit
        self.free: int | None = None
        self._checked_at = 0.0
        self._below_reserve = False
        self._full_at: int | None = None      # free bytes when a picture hit "disk full"

    @property
    def pictures_paused(self) -> bool:
        return self._below_reserve or self._full_at is not None

    def disk_full(self) -> None:
        """A picture write failed with ENOSPC: pause pictures until room appears."""
        self.check(force=True)
        self._full_at = self.free if self.free is not None else 0

    def check(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._checked_at < self._cfg.disk_check_interval_s:
            return
        self._checked_at = now
        try:
            free = min(self._free_bytes())
        except OSError:
            return
        self.free = free
        was_paused = self.pictures_paused
        reserve = self._cfg.reserve_free_mb * 1e6
        self._below_reserve = free < reserve
        if self._full_at is not None and free >= self._full_at + _ROOM_AFTER_FULL:
            self._full_at = None
        if self._below_reserve:
            self._throttle.emit("disk_low", "error",
                                f"Disk almost full ({free / 1e6:.0f} MB free, reserve "
                                f"{reserve / 1e6:.0f} MB): pictures are not saved, verdicts are. "
                                "Free space or lower the retention limits.", every_s=60)
        elif free < self._cfg.warn_free_mb * 1e6:
            self._throttle.emit("disk_low", "warning",
                                f"Disk space is running low: {free / 1e6:.0f} MB free for the "
                                "inspection log.", every_s=600)
        if was_paused and not self.pictures_paused:
            self._emit("disk_low", "info", "Disk space is back: pictures are saved again.")
