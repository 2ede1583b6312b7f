"""A throwaway PostgreSQL server for the log tests, and the `log_place` fixture that runs
a test once on SQLite and once on PostgreSQL.

The server comes from Debian's `postgresql` package (.ci/run installs it): initdb into a
temporary folder, pg_ctl start on a free port, stopped and deleted at the end of the run.
PostgreSQL refuses to run as root, so under root (CI) both run as the `postgres` user.
Where no server can start, the PostgreSQL half of each test is skipped with the reason.

Test modules import the fixtures: `from pg_server import log_place, pg_server`.
"""
from __future__ import annotations

import atexit
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from engine.log import InspectionLog, LogConfig


def _pg_bin() -> Path | None:
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                      key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0)
    if versions:
        return Path(versions[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PgServer:
    def __init__(self) -> None:
        self.url: str | None = None
        self.skip_reason = ""
        self._dir: Path | None = None
        self._as: list[str] = []
        self._bin: Path | None = None

    def start(self) -> None:
        self._bin = _pg_bin()
        if self._bin is None:
            self.skip_reason = "PostgreSQL is not installed (apt-get install postgresql)"
            return
        if os.geteuid() == 0:
            try:
                pw = pwd.getpwnam("postgres")
            except KeyError:
                self.skip_reason = "running as root and there is no 'postgres' user to run the server"
                return
            self._as = ["runuser", "-u", "postgres", "--"]
        self._dir = Path(tempfile.mkdtemp(prefix="log-tests-pg-"))
        if self._as:
            os.chown(self._dir, pw.pw_uid, pw.pw_gid)
        os.chmod(self._dir, 0o700)
        data = self._dir / "data"
        try:
            self._run("initdb", "-D", str(data), "-A", "trust", "-U", "postgres", "-E", "UTF8",
                      "--no-sync", "--no-instructions")
            for _ in range(3):                        # a free port can be taken meanwhile
                port = _free_port()
                options = (f"-p {port} -k {self._dir} -c listen_addresses=127.0.0.1 "
                           "-c fsync=off -c synchronous_commit=off -c full_page_writes=off")
                done = self._run("pg_ctl", "-D", str(data), "-o", options, "-l",
                                 str(self._dir / "server.log"), "-w", "-t", "30", "start", check=False)
                if done.returncode == 0:
                    self.url = f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
                    return
            log = (self._dir / "server.log").read_text(errors="replace")[-500:]
            self.skip_reason = f"pg_ctl could not start PostgreSQL: {log.strip()}"
        except (OSError, subprocess.CalledProcessError) as exc:
            detail = getattr(exc, "stderr", "") or ""
            self.skip_reason = f"PostgreSQL could not be set up: {exc} {detail}".strip()

    def _run(self, tool: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run([*self._as, str(self._bin / tool), *args], check=check,
                              capture_output=True, text=True, timeout=60)

    def new_database(self) -> str:
        """URL of a fresh, empty database on the server."""
        import psycopg
        name = "log_" + uuid.uuid4().hex[:12]
        with psycopg.connect(self.url.replace("+psycopg", ""), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url.rsplit("/", 1)[0] + "/" + name

    def stop(self) -> None:
        if self._dir is None:
            return
        if self.url:
            self._run("pg_ctl", "-D", str(self._dir / "data"), "-m", "immediate", "-w", "stop",
                      check=False)
            self.url = None
        shutil.rmtree(self._dir, ignore_errors=True)
        self._dir = None


_server: PgServer | None = None


def get_server() -> PgServer:
    """One server per test run, however many modules import the fixtures."""
    global _server
    if _server is None:
        _server = PgServer()
        _server.start()
        atexit.register(_server.stop)
    return _server


@pytest.fixture(scope="session")
def pg_server():
    server = get_server()
    if not server.url:
        pytest.skip(f"no PostgreSQL server for the log tests: {server.skip_reason}")
    yield server
    server.stop()


@dataclass(frozen=True)
class LogPlace:
    """Where a test's log lives; open() may be called again to "restart the app"."""
    backend: str
    location: str
    pictures_dir: Path | None

    def config(self, **overrides) -> LogConfig:
        return replace(LogConfig(pictures_dir=self.pictures_dir, warn_free_mb=1, reserve_free_mb=0),
                       **overrides)

    def open(self, config: LogConfig | None = None, on_event=None) -> InspectionLog:
        return InspectionLog.open(self.location, config or self.config(), on_event)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def log_place(request, tmp_path) -> LogPlace:
    if request.param == "sqlite":
        return LogPlace("sqlite", str(tmp_path / "log"), None)
    server = request.getfixturevalue("pg_server")
    return LogPlace("postgresql", server.new_database(), tmp_path / "pictures")


# ---- records for the log tests ---------------------------------------------------------

def make_record(i: int, decision: str = "PASS", t: float | None = None, station: str = "st1",
                camera: str = "cam1", product: str = "A", score: float | None = None,
                image=None, overlay=None, model_id: str = "m1"):
    """A small InspectionRecord; frame id i, time t (default: now + i ms)."""
    import time

    from engine.log import InspectionRecord
    from engine.types import Decision, Verdict
    d = Decision(decision)
    if score is None:
        score = {"PASS": 0.2, "REVIEW": 0.7, "FAIL": 0.95}[d.value] + (i % 10) / 1000
    verdict = Verdict(frame_id=i, score=score, decision=d, threshold=0.8, model_id=model_id,
                      latency_ms=3.5)
    return InspectionRecord(verdict=verdict, wall_time=time.time() + i / 1000 if t is None else t,
                            station=station, camera=camera, product=product, image=image,
                            overlay=overlay)


def picture(seed: int, h: int = 48, w: int = 64):
    """A small RGB test picture (smooth plus noise, like a camera's)."""
    import numpy as np
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = 120 + 50 * np.sin(xx / 9 + seed) + 30 * np.cos(yy / 7)
    rgb = np.stack([base, base * 0.8, 255 - base], -1) + rng.normal(0, 6, (h, w, 3))
    return np.clip(rgb, 0, 255).astype(np.uint8)


class RestartableServer(PgServer):
    """A server of one test's own, stopped and started again mid-test (stopping the
    shared one would disturb other tests)."""

    def _options(self) -> str:
        port = int(self.url.rsplit(":", 1)[1].split("/")[0])
        return (f"-p {port} -k {self._dir} -c listen_addresses=127.0.0.1 "
                "-c fsync=off -c synchronous_commit=off -c full_page_writes=off")

    def pause(self) -> None:
        self._run("pg_ctl", "-D", str(self._dir / "data"), "-m", "fast", "-w", "stop")

    def resume(self) -> None:
        self._run("pg_ctl", "-D", str(self._dir / "data"), "-o", self._options(), "-l",
                  str(self._dir / "server.log"), "-w", "-t", "30", "start")
