"""The audit trail: who changed what, when, old -> new (no Qt here).

Every change of settings, products, models, thresholds, ROI/layout, camera parameters,
labels and users becomes one row of the log's append-only `audit` table (engine/log,
schema v4: `InspectionLog.append_audit`, `InspectionLog.audit`). Nothing here, nor
anywhere else, updates or deletes an audit row.

For code that makes a change (the one call to make, from any thread):

    from engine.audit import record
    record(log, actor, "model", "bracket", old="m-2026-11", new="m-2026-12",
           detail="activated version 3")        # actor: engine.users.Actor(name, role)

In the app, use the station's trail instead, which knows who is logged in and keeps a
change made while the log is not open until it is:

    services.audit.record("model", "bracket", old, new, detail="activated version 3")

Settings pass through `Services.save`, which records each changed field itself (a product's
model_file as kind "model", its threshold as "threshold", the layout as "layout", camera
fields as "camera", ...): do not record those a second time.
"""
from __future__ import annotations

import csv
import json
import logging
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable, Iterable

from engine.errors import InspectError
from engine.users import Actor

log = logging.getLogger("inspect.audit")

KINDS = ("settings", "product", "model", "threshold", "layout", "camera", "label", "user",
         "outputs", "login")        # as engine/log/schema.AUDIT_KINDS
# Settings fields Learn changes for the next training: an engineer's, not only the admin's.
LEARN_FIELDS = ("image_size", "model_size", "training_steps", "training_minutes",
                "good_frames", "teacher", "penalty")


def as_text(value) -> str | None:
    """A value for the old/new columns: text as is, None as NULL, anything else as JSON."""
    if value is None or isinstance(value, str):
        return value
    try:
        return json.dumps(value, sort_keys=True, ensure_ascii=False)
    except (TypeError, ValueError):
        return repr(value)


def entry(actor: Actor, kind: str, target: str, old=None, new=None, detail: str = "",
          t_us: int | None = None):
    from engine.log import AuditEntry
    return AuditEntry(who=actor.name[:64] or "?", role=actor.role[:16], kind=kind,
                      target=str(target)[:128], old=as_text(old), new=as_text(new),
                      detail=detail or None,
                      t_us=t_us if t_us is not None else int(time.time() * 1e6))


def record(log_, actor: Actor, kind: str, target: str, old=None, new=None,
           detail: str = "") -> None:
    """Append one audit row now (engine.log.InspectionLog.append_audit): journaled and
    written by the log's writer when it runs, else committed here. InspectError when the
    log cannot take it (read-only, database down with no writer): the change is then not
    recorded, and the caller must say so."""
    log_.append_audit(entry(actor, kind, target, old, new, detail))


# ---- what changed between two Settings ---------------------------------------------------

@dataclass(frozen=True)
class Change:
    kind: str            # one of KINDS
    target: str          # what changed, e.g. "bracket: threshold", "camera: exposure_us"
    old: object
    new: object
    action: str          # what engine.users must allow for it (engine/users.ACTIONS)


SECRET_WORDS = ("password", "token", "secret")      # such settings are said as set, never written


def _hidden(value) -> str | None:
    return "(set)" if value else None


def _flat(d: dict, prefix: str = "") -> dict[str, object]:
    out: dict[str, object] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flat(v, key + "."))
        else:
            out[key] = v
    return out


def _product_change(name: str, fld: str, old, new) -> Change:
    if fld in ("threshold", "review_below"):
        what = "threshold" if fld == "threshold" else "review level"
        return Change("threshold", f"{name}: {what}", old, new, "threshold")
    if fld == "model_file":
        return Change("model", f"{name}: model", old or None, new or None, "model")
    return Change("product", f"{name}: {fld}", old, new, "products")


def settings_changes(old, new) -> list[Change]:
    """One Change per changed field of engine.settings.Settings (a product added or removed
    is one change with all its fields), in a stable order."""
    from engine.settings import settings_to_dict
    a, b = settings_to_dict(old), settings_to_dict(new)
    out: list[Change] = []
    pa, pb = a.pop("products"), b.pop("products")
    fa, fb = _flat(a), _flat(b)
    for key in [k for k in fa if k in fb] + [k for k in fb if k not in fa]:
        if fa.get(key) == fb.get(key) or key == "schema_version":
            continue
        before, after = fa.get(key), fb.get(key)
        if any(word in key for word in SECRET_WORDS):    # never a password in the trail
            before, after = _hidden(before), _hidden(after)
            after = "(changed)" if before and after else after
        section, _, fld = key.partition(".")
        if section == "camera":
            out.append(Change("camera", f"camera: {fld}", before, after, "camera"))
        elif section in ("outputs", "line"):        # the line's outputs (issue 17)
            out.append(Change("outputs", key, before, after, "outputs"))
        elif section == "layout":
            out.append(Change("layout", f"layout: {fld}", before, after, "roi"))
        elif key == "current_product":
            out.append(Change("product", "current product", before, after, "switch product"))
        elif key in LEARN_FIELDS:
            out.append(Change("settings", key, before, after, "learn"))
        else:
            out.append(Change("settings", key, before, after, "settings"))
    for name in sorted(set(pa) | set(pb)):
        if name not in pb:
            out.append(Change("product", name, pa[name], None, "products"))
        elif name not in pa:
            out.append(Change("product", name, None, pb[name], "products"))
        else:
            out += [_product_change(name, f, pa[name][f], pb[name][f])
                    for f in pb[name] if pa[name].get(f) != pb[name][f]]
    return out


# ---- the station's trail -------------------------------------------------------------------

class AuditTrail:
    """Where the app records changes: who is taken from `actor()` (engine.users.Access);
    a change made before the log is open (or while it cannot take it) waits here in order
    and is written when `attach` gets a writable log. `problem()` says what waits."""

    def __init__(self, actor: Callable[[], Actor],
                 on_error: Callable[[str], None] | None = None):
        self.actor = actor
        self.on_error = on_error
        self._log = None
        self._pending: list = []            # AuditEntry values not yet handed to the log
        self._lock = threading.Lock()
        self._said = False

    def attach(self, log_) -> None:
        """The log is open (None: closed): hand it what waits."""
        with self._lock:
            self._log = log_
        self.flush()

    def record(self, kind: str, target: str, old=None, new=None, detail: str = "",
               actor: Actor | None = None) -> None:
        e = entry(actor or self.actor(), kind, target, old, new, detail)
        with self._lock:
            self._pending.append(e)
        self.flush()

    def record_changes(self, changes: Iterable[Change], detail: str = "",
                       actor: Actor | None = None) -> None:
        who = actor or self.actor()
        for c in changes:
            self.record(c.kind, c.target, c.old, c.new, detail, actor=who)

    def flush(self) -> bool:
        """Hand every waiting entry to the log, oldest first; False when some still wait."""
        with self._lock:
            lg = self._log
            while self._pending and lg is not None and not lg.read_only:
                try:
                    lg.append_audit(self._pending[0])
                except (InspectError, RuntimeError) as exc:
                    self._tell(f"{len(self._pending)} change(s) wait to be recorded in the "
                               f"audit trail ({exc}).")
                    return False
                self._pending.pop(0)
                self._said = False
            if self._pending:
                self._tell(f"{len(self._pending)} change(s) wait to be recorded in the audit "
                           "trail until the inspection log can be written.")
                return False
            return True

    def pending(self) -> int:
        return len(self._pending)

    def _tell(self, message: str) -> None:
        if not self._said:
            self._said = True
            log.warning("%s", message)
            if self.on_error is not None:
                self.on_error(message)


# ---- reading it back ----------------------------------------------------------------------

COLUMNS = ("time (UTC)", "who", "role", "kind", "target", "old", "new", "detail")


def row_values(e) -> tuple[str, ...]:
    when = datetime.fromtimestamp(e.t_us / 1e6, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
    return (when, e.who, e.role, e.kind, e.target, e.old if e.old is not None else "",
            e.new if e.new is not None else "", e.detail or "")


def write_csv(entries: Iterable, out) -> int:
    w = csv.writer(out)
    w.writerow(COLUMNS)
    n = 0
    for e in entries:
        w.writerow(row_values(e))
        n += 1
    return n


def to_text(entries: Iterable) -> str:
    """A readable listing: time, who (role), kind, target: old -> new (detail)."""
    lines = []
    for e in entries:
        when, who, role, kind, target, old, new, detail = row_values(e)
        lines.append(f"{when}  {who} ({role})  {kind:<9} {target}: {old or '—'} → {new or '—'}"
                     + (f"  [{detail}]" if detail else ""))
    return "\n".join(lines)


def parse_day(text: str) -> int:
    """'2026-12-01' or '2026-12-01T08:30' (UTC) -> microseconds; InspectError otherwise."""
    try:
        dt = datetime.fromisoformat(text.strip())
    except ValueError:
        raise InspectError(f"A date is YYYY-MM-DD or YYYY-MM-DDTHH:MM (UTC), not {text!r}.") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return int(dt.timestamp() * 1e6)


def print_audit(location, since_us: int, until_us: int | None = None, kind: str | None = None,
                who: str | None = None, as_csv: bool = False, out=None) -> int:
    """`python main.py audit`: open the log read-only (beside a running app) and print its
    audit rows, oldest first; the number printed."""
    import sys
    from engine.log import InspectionLog
    out = out or sys.stdout
    lg = InspectionLog.open(location, read_only=True)
    try:
        rows = lg.audit(since_us, until_us, kind=kind, who=who, limit=None)
    finally:
        lg.close()
    if as_csv:
        return write_csv(rows, out)
    print(to_text(rows) if rows else "No changes recorded in that time.", file=out)
    return len(rows)
