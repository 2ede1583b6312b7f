"""Operator labels, trained models and threshold changes: the small, human-made records."""
from __future__ import annotations

import json
import time

from sqlalchemy import Connection, select

from engine.log.records import AuditEntry, Label, ModelInfo, ThresholdChange
from engine.log.schema import audit, inspections, models, threshold_changes


def now_us() -> int:
    return int(time.time() * 1e6)


def set_label(conn: Connection, inspection_id: int, label: Label | str | None,
              note: str | None = None, who: str = "") -> bool:
    """Set (or with None clear) the operator's judgement; False when the row does not exist."""
    value = Label(label).value if label is not None else None
    done = conn.execute(inspections.update().where(inspections.c.id == inspection_id).values(
        label=value, note=note, labeled_by=who[:64] or None,
        labeled_at_us=now_us() if value or note else None))
    return done.rowcount == 1


def register_model(conn: Connection, info: ModelInfo) -> None:
    """Add a trained model, or update it when its id is already registered (retrained)."""
    values = {"name": info.name[:128], "product": info.product[:64], "path": info.path,
              "threshold": float(info.threshold), "metrics": json.dumps(info.metrics),
              "notes": info.notes, "created_us": info.created_us or now_us()}
    exists = conn.execute(select(models.c.model_id).where(models.c.model_id == info.model_id)).first()
    if exists:
        conn.execute(models.update().where(models.c.model_id == info.model_id).values(**values))
    else:
        conn.execute(models.insert().values(model_id=info.model_id[:64], **values))


def _model(m) -> ModelInfo:
    return ModelInfo(model_id=m["model_id"], name=m["name"], product=m["product"], path=m["path"],
                     threshold=m["threshold"], metrics=json.loads(m["metrics"]),
                     created_us=m["created_us"], notes=m["notes"])


def list_models(conn: Connection, product: str | None = None) -> list[ModelInfo]:
    """Newest first."""
    q = select(models).order_by(models.c.created_us.desc())
    if product is not None:
        q = q.where(models.c.product == product)
    return [_model(m) for m in conn.execute(q).mappings()]


def get_model(conn: Connection, model_id: str) -> ModelInfo | None:
    m = conn.execute(select(models).where(models.c.model_id == model_id)).mappings().first()
    return _model(m) if m else None


def record_threshold_change(conn: Connection, product: str, old: float | None, new: float,
                            who: str, model_id: str = "", reason: str = "") -> int:
    result = conn.execute(threshold_changes.insert().values(
        t_us=now_us(), who=who[:64], product=product[:64], model_id=model_id[:64],
        old_threshold=None if old is None else float(old), new_threshold=float(new), reason=reason))
    return int(result.inserted_primary_key[0])


def list_threshold_changes(conn: Connection, product: str | None = None,
                           limit: int = 200) -> list[ThresholdChange]:
    """Newest first."""
    t = threshold_changes
    q = select(t).order_by(t.c.t_us.desc(), t.c.id.desc()).limit(limit)
    if product is not None:
        q = q.where(t.c.product == product)
    return [ThresholdChange(id=m["id"], t_us=m["t_us"], who=m["who"], product=m["product"],
                            model_id=m["model_id"], old_threshold=m["old_threshold"],
                            new_threshold=m["new_threshold"], reason=m["reason"])
            for m in conn.execute(q).mappings()]


def audit_row(entry: AuditEntry) -> dict:
    """The audit table's row for an entry, clipped to the column lengths (a long target
    must not lose the row on PostgreSQL)."""
    return {"t_us": entry.t_us if entry.t_us is not None else now_us(),
            "who": entry.who[:64], "role": entry.role[:16], "kind": entry.kind[:32],
            "target": entry.target[:128], "old": entry.old, "new": entry.new,
            "detail": entry.detail}


def insert_audit(conn: Connection, entry: AuditEntry) -> int:
    """Append one audit row (the only write the audit table ever gets)."""
    result = conn.execute(audit.insert().values(**audit_row(entry)))
    return int(result.inserted_primary_key[0])


def list_audit(conn: Connection, since_us: int | None = None, until_us: int | None = None,
               kind: str | None = None, who: str | None = None,
               limit: int | None = 1000) -> list[AuditEntry]:
    """Oldest first, between since_us (included) and until_us (excluded)."""
    a = audit
    q = select(a).order_by(a.c.t_us, a.c.id)
    if since_us is not None:
        q = q.where(a.c.t_us >= since_us)
    if until_us is not None:
        q = q.where(a.c.t_us < until_us)
    if kind is not None:
        q = q.where(a.c.kind == kind)
    if who is not None:
        q = q.where(a.c.who == who)
    if limit is not None:
        q = q.limit(limit)
    return [AuditEntry(who=m["who"], role=m["role"], kind=m["kind"], target=m["target"],
                       old=m["old"], new=m["new"], detail=m["detail"], t_us=m["t_us"], id=m["id"])
            for m in conn.execute(q).mappings()]
