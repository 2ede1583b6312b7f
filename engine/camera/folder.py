"""Replay a folder of images as if a camera took them: name order, a chosen rate, loop or once."""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from engine.camera.base import EndOfStream, FrameSource, Pacer
from engine.data import IMAGE_SUFFIXES, load_rgb
from engine.errors import InspectError
from engine.types import Frame


@dataclass(frozen=True)
class FolderConfig:
    path: str
    fps: float = 5.0            # 0 = as fast as the files can be read
    loop: bool = True


def natural_key(path: Path) -> list:
    """'img_2.png' before 'img_10.png', as a person reading the names would order them."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", path.name)]


class FolderSource(FrameSource):
    kind = "folder"

    def __init__(self, config: FolderConfig):
        super().__init__(name=f"folder:{config.path}")
        self.config = config
        self.files: list[Path] = []
        self.skipped: dict[str, str] = {}       # file name -> why it is not replayed
        self._pos = 0
        self._pacer: Pacer | None = None

    @property
    def is_open(self) -> bool:
        return self._pacer is not None

    def open(self) -> None:
        folder = Path(self.config.path).expanduser()
        if not folder.is_dir():
            raise InspectError(f"Folder {folder} does not exist." if not folder.exists()
                               else f"{folder} is not a folder.")
        entries = sorted((p for p in folder.iterdir() if p.is_file()), key=natural_key)
        self.files = [p for p in entries if p.suffix.lower() in IMAGE_SUFFIXES]
        for p in entries:
            # hidden files (.DS_Store, editor backups) are nobody's images: skipped quietly
            if p.suffix.lower() not in IMAGE_SUFFIXES and not p.name.startswith("."):
                self._skip(p, f"not an image ({p.suffix or 'no extension'})")
        if not self.files:
            others = ", ".join(list(self.skipped)[:5])
            raise InspectError(f"Folder {folder} has no images ({', '.join(sorted(IMAGE_SUFFIXES))})"
                               + (f"; it holds {others}." if others else "; it is empty."))
        self._pos = 0
        self._pacer = Pacer(self.config.fps)

    def _skip(self, path: Path, why: str) -> None:
        if path.name not in self.skipped:
            self.skipped[path.name] = why
            self.on_warning(f"skipped {path}: {why}")

    def read(self, timeout: float) -> Frame | None:
        if self._pacer is None:
            self.open()
        if not self._pacer.wait(timeout):
            return None
        # Try each file at most once per call: a folder of only broken images must end.
        for _ in range(len(self.files)):
            if self._pos >= len(self.files):
                if not self.config.loop:
                    raise EndOfStream(f"{self.name}: all {len(self.files)} images replayed.")
                self._pos = 0
            path = self.files[self._pos]
            self._pos += 1
            if path.name in self.skipped:
                continue
            try:
                rgb = load_rgb(path)
            except InspectError as e:
                self._skip(path, str(e))
                continue
            return self._make_frame(rgb, meta={"file": path.name})
        if not self.config.loop and self._pos >= len(self.files):
            raise EndOfStream(f"{self.name}: all images replayed.")
        raise InspectError(f"Folder {self.config.path}: none of its {len(self.files)} images can "
                           f"be read (first: {next(iter(self.skipped.items()))[1]}).")

    def close(self) -> None:
        self._pacer = None

    def settings(self) -> dict:
        return {"path": self.config.path, "fps": self.config.fps, "loop": self.config.loop,
                "images": len(self.files), "skipped": dict(self.skipped)}
