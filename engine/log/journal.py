"""The journal: every verdict handed to the writer is written to a local append-only file
first (one os.write, before it is queued), so a killed app loses nothing the OS has.

    <pictures>/.journal/id                 {"id": random, "location": the log it belongs to}
    <pictures>/.journal/<first seq>.jnl    JSON lines, one per entry

Entries carry a sequence number `s`, given in the order the writer's queue sees them:
  {"s": 12, "u": uid, "p": 1, "r": {row}}              a verdict (p: it has pictures queued)
  {"s": 13, "u": uid, "c": "queue_full", "r": {row}}   a verdict only counted (queue full)
  {"s": 12, "pic": {picture columns}}                  what became of a spooled row's pictures
  {"s": 14, "a": {audit row}}                          an audit row (who changed what), v4

The database keeps, in the same transaction as each batch of rows, the highest sequence
number up to which every entry is in it (`log_meta`, key `journal:<id>`: the checkpoint).
Replaying what lies above the checkpoint therefore writes each verdict exactly once, after
a kill, after the database was down when the app stopped, or when a server comes back
while the writer was spooling. Segments wholly below the checkpoint are deleted.
"""
from __future__ import annotations

import json
import os
import secrets
import threading
from pathlib import Path
from typing import Iterator

JOURNAL_DIR = ".journal"
_SUFFIX = ".jnl"


def _segment_name(first_seq: int) -> str:
    return f"{first_seq:016d}{_SUFFIX}"


class Journal:
    """Append-only, thread-safe. `append` is called by the scoring thread (verdicts) and the
    writer thread (picture outcomes of spooled rows); both are one os.write each."""

    def __init__(self, folder: Path, journal_id: str, segment_bytes: int):
        self.folder = Path(folder)
        self.id = journal_id
        self.segment_bytes = segment_bytes
        self.torn_lines = 0              # unreadable lines found (a write cut by a power cut)
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._size = 0
        self._dirty = False
        self.last_t_us: int | None = None  # time of the newest verdict in the journal
        segments = self.segments()
        # The newest segment's name is the first seq it holds, so an emptied journal still
        # knows where numbering goes on: new entries never reuse a checkpointed number.
        self.last_seq = (segments[-1][0] - 1) if segments else 0
        for _, path in reversed(segments[-2:]):   # the last one may be freshly started
            # Verdicts ("r") and audit rows ("a") take numbers; picture outcomes reuse theirs.
            tail = [e for e in self._tail(path) if "r" in e or "a" in e]
            if tail:
                self.last_seq = max(self.last_seq, int(tail[-1]["s"]))
                verdicts = [e for e in tail if "r" in e]
                if verdicts:
                    self.last_t_us = int(verdicts[-1]["r"]["t_us"])
                break

    @classmethod
    def open(cls, pictures_root: Path, location: str, segment_bytes: int = 8 << 20
             ) -> tuple["Journal", list[Path]]:
        """The journal of this pictures folder, bound to the log at `location`. A journal
        left by a log elsewhere (the settings changed after a crash) is moved aside, never
        replayed into the wrong log: returns the folders moved aside."""
        folder = Path(pictures_root) / JOURNAL_DIR
        folder.mkdir(parents=True, exist_ok=True)
        id_file = folder / "id"
        moved: list[Path] = []
        try:
            ident = json.loads(id_file.read_text())
        except (FileNotFoundError, ValueError):
            ident = None
        if ident is not None and ident.get("location") != location:
            for p in folder.glob("*" + _SUFFIX):
                if not p.stat().st_size:           # a cleanly closed journal: nothing to keep
                    p.unlink()
            if any(folder.glob("*" + _SUFFIX)):
                aside = folder / f"other-{ident.get('id', 'unknown')}"
                aside.mkdir(exist_ok=True)
                for p in folder.glob("*" + _SUFFIX):
                    p.replace(aside / p.name)
                (aside / "id").write_text(json.dumps(ident))
                moved.append(aside)
            ident = None
        if ident is None:
            ident = {"id": secrets.token_hex(8), "location": location}
            tmp = id_file.with_suffix(".tmp")
            tmp.write_text(json.dumps(ident))
            os.replace(tmp, id_file)
        return cls(folder, ident["id"], segment_bytes), moved

    @property
    def checkpoint_key(self) -> str:
        return f"journal:{self.id}"

    # ---- writing ---------------------------------------------------------------------

    def append(self, entry: dict) -> None:
        """One line, one os.write: once it returns, a kill of the app cannot lose it."""
        self.append_many([entry])

    def append_many(self, entries: list[dict]) -> None:
        if not entries:
            return
        data = "".join(json.dumps(e, separators=(",", ":")) + "\n" for e in entries).encode()
        with self._lock:
            if self._fd is None:
                self._open_segment(min(int(e["s"]) for e in entries))
            os.write(self._fd, data)
            self._size += len(data)
            self._dirty = True

    def next_seq(self) -> int:
        """The caller holds the writer's order lock: numbers follow the queue's order."""
        self.last_seq += 1
        return self.last_seq

    def sync(self) -> None:
        """To the disk itself (a power cut), called by the writer every ≤ 0.2 s."""
        with self._lock:
            if self._fd is not None and self._dirty:
                os.fdatasync(self._fd)
                self._dirty = False

    def _open_segment(self, first_seq: int) -> None:
        if self._fd is not None:
            os.fdatasync(self._fd)
            os.close(self._fd)
        path = self.folder / _segment_name(first_seq)
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self._size = os.fstat(self._fd).st_size

    def trim(self, checkpoint: int) -> None:
        """Start a new segment when this one is big; delete segments wholly checkpointed."""
        with self._lock:
            if self._fd is not None and self._size >= self.segment_bytes:
                self._open_segment(self.last_seq + 1)
            segments = self.segments()
            for (first, path), (next_first, _) in zip(segments, segments[1:]):
                if next_first - 1 <= checkpoint:
                    path.unlink(missing_ok=True)

    def close(self, checkpoint: int) -> None:
        """Closing cleanly with everything checkpointed leaves one empty segment, whose
        name keeps the numbering."""
        with self._lock:
            if self._fd is not None:
                os.fdatasync(self._fd)
                os.close(self._fd)
                self._fd = None
            if checkpoint >= self.last_seq:
                keep = self.folder / _segment_name(self.last_seq + 1)
                keep.touch()
                for _, path in self.segments():
                    if path != keep:
                        path.unlink(missing_ok=True)

    # ---- reading ---------------------------------------------------------------------

    def segments(self) -> list[tuple[int, Path]]:
        out = []
        for p in self.folder.glob("*" + _SUFFIX):
            try:
                out.append((int(p.stem), p))
            except ValueError:
                continue
        return sorted(out)

    def entries(self, after: int, upto: int | None = None) -> Iterator[dict]:
        """Entries with after < s <= upto, in file order (complete lines only). With `upto`
        the journal may be being written: an unfinished last line is not counted as torn."""
        segments = self.segments()
        for i, (first, path) in enumerate(segments):
            if i + 1 < len(segments) and segments[i + 1][0] - 1 <= after:
                continue                          # wholly checkpointed
            if upto is not None and first > upto:
                break
            for entry in self._read(path, live=upto is not None):
                s = int(entry["s"])
                if s > after and (upto is None or s <= upto):
                    yield entry

    def _tail(self, path: Path, nbytes: int = 1 << 16) -> list[dict]:
        """The last complete entries of a segment (verdict entries are in seq order)."""
        with open(path, "rb") as f:
            size = f.seek(0, os.SEEK_END)
            f.seek(max(0, size - nbytes))
            lines = f.read().split(b"\n")
        if size > nbytes:
            lines = lines[1:]                      # the first may be cut
        out = []
        for line in lines[:-1]:                    # the last is "" or unfinished
            try:
                entry = json.loads(line)
                int(entry["s"])
            except (ValueError, KeyError, TypeError):
                continue
            out.append(entry)
        return out

    def _read(self, path: Path, live: bool = False) -> Iterator[dict]:
        with open(path, "rb") as f:
            for line in f:
                if not line.endswith(b"\n"):
                    self.torn_lines += not live   # being written, or cut by a power cut
                    return
                try:
                    entry = json.loads(line)
                    int(entry["s"])
                except (ValueError, KeyError, TypeError):
                    self.torn_lines += 1
                    continue
                yield entry
