"""Entry of the desktop app: `python main.py [--quit-after SECONDS] [--data-dir DIR] [--fullscreen]`."""
from __future__ import annotations

import argparse
import logging
import logging.handlers
import os
import sys
from pathlib import Path


def default_data_dir() -> Path:
    """Where settings, the log, pictures and models live unless told otherwise."""
    env = os.environ.get("INSPECT_LINE_HOME")
    if env:
        return Path(env)
    base = os.environ.get("XDG_DATA_HOME") or (Path.home() / ".local" / "share")
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA", str(Path.home()))
    return Path(base) / "inspect-line"


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python main.py", description="The inspection app.")
    p.add_argument("--quit-after", type=float, metavar="SECONDS",
                   help="run live for this long, then quit cleanly (a smoke test)")
    p.add_argument("--data-dir", type=Path, default=None,
                   help=f"settings, log, pictures and models (default {default_data_dir()})")
    p.add_argument("--backend", default="auto",
                   help="scoring backend: auto (fastest validated), eager, or one of engine.scoring.BACKENDS")
    p.add_argument("--no-autostart", action="store_true", help="do not start the camera at launch")
    p.add_argument("--fullscreen", action="store_true",
                   help="full screen, for a line PC's kiosk (packaging/linux/inspect-line.service)")
    from engine.version import version_text
    p.add_argument("--version", action="version", version=version_text())
    return p.parse_args(argv)


def setup_logging(data_dir: Path) -> Path:
    """Everything the app logs goes to DATA_DIR/logs/app.log (rotated) and to stderr."""
    logs = data_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    path = logs / "app.log"
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    for h in list(root.handlers):
        if getattr(h, "_inspect_app", False):
            root.removeHandler(h)
    fh = logging.handlers.RotatingFileHandler(path, maxBytes=5_000_000, backupCount=3, encoding="utf-8")
    fh.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(threadName)s] %(message)s"))
    sh = logging.StreamHandler(sys.stderr)
    sh.setLevel(logging.WARNING)
    sh.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    for h in (fh, sh):
        h._inspect_app = True
        root.addHandler(h)
    return path


def main(argv: list[str] | None = None) -> int:
    args = parse_args(list(sys.argv[1:] if argv is None else argv))
    data_dir = args.data_dir or default_data_dir()
    setup_logging(data_dir)
    from engine import syslibs
    missing = syslibs.check()    # before Qt: its own words would only be "could not load xcb"
    if missing and not os.environ.get("INSPECT_LINE_SKIP_LIBCHECK"):
        print(missing, file=sys.stderr)
        logging.getLogger("inspect.app").error("%s", missing)
        return 1
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    import pyqtgraph as pg
    pg.setConfigOptions(antialias=False, background="w", foreground="k")

    from app.main_window import MainWindow
    from engine.line.priority import preload_heavy_modules, responsive_gil
    from app.services import Services
    from app.tasks import ErrorHandler

    responsive_gil()
    app = QApplication.instance() or QApplication(sys.argv[:1])
    preload_heavy_modules()
    app.setApplicationName("inspect-line")
    app.setOrganizationName("inspect-line")
    errors = ErrorHandler()
    errors.install_hooks()
    try:
        services = Services(data_dir, errors, backend=args.backend)
        window = MainWindow(services)
    except Exception as exc:   # noqa: BLE001 - nothing to run without them: say so in a window
        from PySide6.QtWidgets import QMessageBox

        from app.tasks import plain_words
        errors.report("Start-up", exc)
        QMessageBox.critical(None, "The inspection app cannot start", plain_words(exc))
        return 1
    window.showFullScreen() if args.fullscreen else window.show()
    window.start_up(autostart=not args.no_autostart)
    if args.quit_after is not None:
        QTimer.singleShot(int(args.quit_after * 1000), window.close)
    code = app.exec()
    logging.getLogger("inspect.app").info("app exited with %s", code)
    return int(code)
