"""Settings of the inspection log. Frozen: a running writer never sees them change."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

PNG_MODES = ("adaptive", "compressed", "stored")
DB_FAILURE_MODES = ("stop", "spool")


@dataclass(frozen=True)
class RetentionPolicy:
    """How long pictures stay. Rows are always kept: auditors count parts for years."""
    keep_days: float | None = None     # delete pictures of inspections older than this
    keep_gb: float | None = None       # keep at most this much picture data, oldest goes first
    interval_s: float = 600.0          # how often the background worker applies the rules
    chunk: int = 500                   # pictures handled per transaction


@dataclass(frozen=True)
class LogConfig:
    # Where pictures go. Default for SQLite: a `pictures` folder next to the database.
    # A server URL (PostgreSQL) needs it given: the server's disk is not ours.
    pictures_dir: Path | None = None

    # Writer queue: the scoring thread never waits; beyond these limits it counts instead.
    queue_size: int = 4096                 # records waiting for the writer
    max_queued_picture_mb: float = 1024.0  # picture memory waiting; beyond it rows go without
    batch_size: int = 500                  # rows per commit at most
    max_batch_delay_s: float = 0.2         # a lone record waits at most this long for company

    # Pictures. Encoders wait on the disk (fdatasync) as much as they compute, so more
    # threads than cores pay off; 4 measured best on a 2-core PC.
    encoder_threads: int = 4
    png_mode: str = "adaptive"             # adaptive: compressed, stored while a backlog builds
    adaptive_backlog: int = 12             # picture records waiting before PNGs go stored
    overlay_max_side: int = 512
    overlay_jpeg_quality: int = 80
    keep_pass_every: int = 0               # keep the picture of every Nth PASS per station (0: none)
    fsync_pictures: bool = True            # pictures reach the disk before their row commits

    # Disk space (of the pictures folder, and of the database folder for SQLite).
    warn_free_mb: float = 5000.0           # warn below this
    reserve_free_mb: float = 500.0         # below this, stop writing pictures (rows go on)
    disk_check_interval_s: float = 5.0

    retention: RetentionPolicy = field(default_factory=RetentionPolicy)

    # The stations whose pictures live in pictures_dir. Several line PCs sharing one
    # server log each keep their own pictures: the picture check and retention then judge
    # only these stations' rows. Empty: every row (a log of its own, the SQLite default).
    stations: tuple[str, ...] = ()

    # Startup check of pictures against rows: only the last N hours (a crash can only
    # orphan recent pictures); None checks everything.
    startup_check_hours: float | None = 48.0
    sqlite_busy_timeout_s: float = 10.0
    db_retry_max_s: float = 5.0            # longest pause between retries of a failed commit

    # When the database fails while the line runs. "stop": after db_stop_after_s without a
    # commit the writer says the line must stop (LogWriter.problem), and the rows wait in
    # the journal. "spool": the line runs on; every verdict waits in the local journal
    # (pictures in the pictures folder) and is written when the database answers again;
    # a server unreachable when the log opens is tried again the same way.
    on_db_failure: str = "stop"
    db_stop_after_s: float = 3.0
    # The journal (pictures_dir/.journal): every verdict is written there before it is
    # queued, so a killed app loses none; fdatasync'ed every journal_sync_s for a power cut.
    journal_sync_s: float = 0.2
    journal_segment_mb: float = 32.0

    def __post_init__(self) -> None:
        if self.png_mode not in PNG_MODES:
            raise ValueError(f"png_mode must be one of {PNG_MODES}, got {self.png_mode!r}")
        if self.queue_size < 1 or self.batch_size < 1 or self.encoder_threads < 1:
            raise ValueError("queue_size, batch_size and encoder_threads must be at least 1")
        if self.on_db_failure not in DB_FAILURE_MODES:
            raise ValueError(f"on_db_failure must be one of {DB_FAILURE_MODES}, got {self.on_db_failure!r}")
        if not 0 < self.journal_sync_s <= 0.2:
            raise ValueError("journal_sync_s must be above 0 and at most 0.2 s (the promised bound)")
