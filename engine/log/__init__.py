"""The inspection log: every verdict recorded, every defect kept with its picture.

SQLite (WAL) by default, any SQLAlchemy URL (PostgreSQL) for a plant; pictures as files in
a dated tree; a writer thread that never makes scoring wait. Start at `InspectionLog.open`.
No Qt here: status goes to plain callbacks (LogEvent).
"""
from engine.log.config import LogConfig, RetentionPolicy
from engine.log.integrity import PictureCheck
from engine.log.inspection_log import ABRUPT_BOUND, InspectionLog, LogInUse
from engine.log.queries import (UNLABELED, InspectionFilter, Page, PageCursor, ShiftPlan,
                                SortKey, SummaryRow)
from engine.log.records import (AuditEntry, InspectionRecord, InspectionRow, Label, LogEvent,
                                ModelInfo, PictureState, ThresholdChange)
from engine.log.retention import RetentionResult
from engine.log.schema import SCHEMA_VERSION
from engine.log.writer import LogWriter, WriterStats

__all__ = [
    "InspectionLog", "LogInUse", "ABRUPT_BOUND", "LogConfig", "RetentionPolicy", "InspectionRecord", "InspectionRow",
    "InspectionFilter", "Page", "PageCursor", "SortKey", "ShiftPlan", "SummaryRow", "UNLABELED",
    "Label", "PictureState", "LogEvent", "ModelInfo", "ThresholdChange", "LogWriter",
    "WriterStats", "PictureCheck", "RetentionResult", "SCHEMA_VERSION", "AuditEntry",
]
