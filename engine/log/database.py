"""Where the log lives, and an SQLAlchemy engine set up for it.

SQLite (the embedded default) runs in WAL mode so the history view reads while the writer
writes. The sqlite3 driver's own transaction handling is switched off and BEGIN is emitted
by us, as SQLAlchemy's SQLite documentation recommends: that gives transactional DDL for
migrations, and lets writers ask for BEGIN IMMEDIATE (take the write lock up front, so a
read-then-write transaction never dies on a lock upgrade).
"""
from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine, URL, create_engine, event, make_url

from engine.errors import InspectError

DB_FILE_NAME = "inspections.sqlite3"
PICTURES_DIR_NAME = "pictures"


def resolve(location: str | Path, pictures_dir: Path | None) -> tuple[URL, Path]:
    """(database URL, pictures folder) for a folder, an SQLite file path or any SQLAlchemy URL."""
    text = str(location)
    if "://" not in text:
        path = Path(text).expanduser()
        if path.suffix in (".sqlite3", ".sqlite", ".db"):
            db_file = path
        else:
            db_file = path / DB_FILE_NAME
        db_file.parent.mkdir(parents=True, exist_ok=True)
        url = URL.create("sqlite", database=str(db_file.resolve()))
    else:
        url = make_url(text)
        if url.drivername == "postgresql":      # plain URL: use psycopg 3, the driver we ship
            url = url.set(drivername="postgresql+psycopg")
    if url.get_backend_name() == "sqlite":
        if not url.database or url.database == ":memory:" or url.database.startswith("file:"):
            raise InspectError("An in-memory SQLite log would vanish; give a folder or a file path.")
        default_pictures = Path(url.database).resolve().parent / PICTURES_DIR_NAME
        return url, Path(pictures_dir) if pictures_dir else default_pictures
    if pictures_dir is None:
        raise InspectError("A server log needs a pictures folder (LogConfig.pictures_dir): "
                           "the database server does not store pictures.")
    return url, Path(pictures_dir)


def make_engine(url: URL, busy_timeout_s: float = 10.0) -> Engine:
    if url.get_backend_name() == "sqlite":
        engine = create_engine(url, connect_args={"timeout": busy_timeout_s})
        _install_sqlite_hooks(engine, busy_timeout_s)
        return engine
    # pre_ping: a plant server restarts; a stale pooled connection should not fail a query.
    return create_engine(url, pool_pre_ping=True)


def _install_sqlite_hooks(engine: Engine, busy_timeout_s: float) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:
        dbapi_connection.isolation_level = None          # we emit BEGIN ourselves
        cursor = dbapi_connection.cursor()
        mode = cursor.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise InspectError(f"SQLite could not switch the log to WAL mode (got {mode}); "
                               "is the folder on a network share? Use a local disk.")
        # NORMAL in WAL: a crash of the app never loses a commit; a power cut may lose the
        # last ones but never corrupts the file.
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_s * 1000)}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn) -> None:
        mode = conn.get_execution_options().get("sqlite_begin", "")
        conn.exec_driver_sql(f"BEGIN {mode}".strip())
