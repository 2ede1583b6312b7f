"""Where the log lives, and an SQLAlchemy engine set up for it.

SQLite (the embedded default) runs in WAL mode so the history view reads while the writer
writes. The sqlite3 driver's own transaction handling is switched off and BEGIN is emitted
by us, as SQLAlchemy's SQLite documentation recommends: that gives transactional DDL for
migrations, and lets writers ask for BEGIN IMMEDIATE (take the write lock up front, so a
read-then-write transaction never dies on a lock upgrade).
"""
from __future__ import annotations

from pathlib import Path

from sqlalchemy import Connection, Engine, URL, create_engine, event, make_url

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
    # connect_timeout: a server that does not answer must fail in seconds, not minutes, so
    # the writer stops the line (or spools) in a bounded time.
    args = {"connect_timeout": 5} if url.get_backend_name() == "postgresql" else {}
    if url.get_driver_name() == "psycopg":      # optional: the [postgres] extra
        from engine.extras import require
        require("psycopg", "An inspection log on PostgreSQL")
    return create_engine(url, pool_pre_ping=True, connect_args=args)


def write_connection(engine: Engine) -> Connection:
    """A connection whose transactions take SQLite's write lock up front (BEGIN IMMEDIATE)."""
    return engine.connect().execution_options(sqlite_begin="IMMEDIATE")


def is_server(location: str | Path) -> bool:
    """A database URL other than an SQLite file: pictures then need a folder of their own."""
    text = str(location)
    return "://" in text and not text.startswith("sqlite")


def check_place(location: str | Path, pictures_dir: Path | None) -> None:
    """Raise InspectError (one sentence) if the log could never open there: an unreadable
    URL, a driver this app lacks, a pictures folder that cannot be written. The server
    itself is not asked (it may be down now and up at the next start)."""
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError
    try:
        url, pictures = resolve_url_only(location, pictures_dir)
        if url.get_backend_name() != "sqlite":
            url.get_dialect().import_dbapi()
    except (ArgumentError, NoSuchModuleError, ValueError) as exc:
        raise InspectError(f"The database URL {str(location)!r} cannot be used ({exc}); "
                           "write it like postgresql://user@server/database.") from exc
    except ImportError as exc:
        if url.get_backend_name() == "postgresql" and url.get_driver_name() == "psycopg":
            from engine.extras import missing_message
            raise InspectError(missing_message("psycopg", "An inspection log on PostgreSQL")) from exc
        raise InspectError(f"This app has no driver for {url.drivername} ({exc}); use PostgreSQL "
                           "(postgresql://...) or leave the URL empty for the local file.") from exc
    try:
        pictures.mkdir(parents=True, exist_ok=True)
        probe = pictures / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise InspectError(f"The pictures folder {pictures} cannot be written "
                           f"({exc.strerror or exc}); choose a data folder this app may write.") from exc


def resolve_url_only(location: str | Path, pictures_dir: Path | None) -> tuple[URL, Path]:
    """resolve() without creating the SQLite folder."""
    text = str(location)
    if "://" not in text:
        path = Path(text).expanduser()
        db_file = path if path.suffix in (".sqlite3", ".sqlite", ".db") else path / DB_FILE_NAME
        return URL.create("sqlite", database=str(db_file)), Path(pictures_dir or db_file.parent / PICTURES_DIR_NAME)
    return resolve(location, pictures_dir)


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
