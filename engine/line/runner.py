"""`python main.py line --product NAME [--source SPEC] [--seconds N]`: the line without a GUI
(a line PC run as a service). The same engine objects as the GUI (engine/line CameraFeed +
Pipeline, engine/log, engine/outputs LineOutputs): acquisition -> scoring -> log ->
outputs. A status line every second; SIGTERM (or Ctrl-C) stops it cleanly: the camera
and scoring stop, every verdict made is written to the log, the outputs close.
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import signal
import sys
import threading
import time
from pathlib import Path

from engine.errors import InspectError, run_command
from engine.line.trigger import TRIGGER_MODES

log = logging.getLogger("inspect.line")


def _data_dir(path: Path | None) -> Path:
    if path is not None:
        return path
    from app.main import default_data_dir      # the one rule for where the app's data live
    return default_data_dir()


class LineStation:
    """One station: settings -> camera feed, scoring pipeline, inspection log and the line
    outputs, wired as the GUI wires them (app/services.py). start/stop; nothing here waits
    on the network."""

    def __init__(self, data_dir: Path, product: str, outputs_config, source: str = "",
                 model: str = "", device: str = "", on_error=None):
        from engine.settings import load_settings_repaired
        self.data_dir = Path(data_dir)
        settings, problems = load_settings_repaired(self.data_dir / "settings.json")
        for p in problems:
            log.warning("%s", p)
        self.settings = settings
        self.product = product or settings.current_product
        self.model = model
        self.config = outputs_config
        self.errors: list[str] = []
        self._on_error = on_error
        self.source = source
        self.device = device or settings.device
        self.lg = None
        self.pipeline = None
        self.outputs = None
        self.rest = None
        self._last_model = None

    # ---- building ----------------------------------------------------------------------
    def _model_spec(self, name: str):
        from engine.line import ModelSpec
        p = self.settings.products.get(name)
        path = self.model if (self.model and name == self.product) else (p.model_file if p else "")
        return ModelSpec(product=name, path=path or None,
                         threshold=p.threshold if p else None, review_below=p.review_below if p else None)

    def _error(self, where: str, exc: BaseException) -> None:
        text = f"{where}: {exc}"
        self.errors.append(text)
        log.error("%s", text)
        if self._on_error is not None:
            self._on_error(where, exc)

    def open(self) -> "LineStation":
        from engine.line import CameraFeed, Pipeline
        from engine.line.trigger import TriggerGate
        from engine.log import InspectionLog, LogConfig
        from engine.outputs import LineOutputs, build_outputs
        s = self.settings
        if self.product not in s.products and not self.model:
            raise InspectError(f"Product {self.product!r} is not in the settings of {self.data_dir} "
                               f"(products: {', '.join(sorted(s.products))}); pass --model FILE to "
                               "judge it with a model file.")
        folder = Path(s.storage.folder) if s.storage.folder else self.data_dir
        self.lg = InspectionLog.open(s.storage.database_url or (folder / "log"),
                                     LogConfig(on_db_failure=s.storage.when_log_fails))
        self.lg.start_writer()
        factory = {}
        if self.source:
            from engine.camera import make_source
            factory = {"source_factory": lambda cam, spec=self.source: make_source(spec)}
        feed = CameraFeed(s.camera, on_status=self._camera_status, **factory)
        self.pipeline = Pipeline(feed, station=s.station, device=self.device,
                                 on_model=self._model_status, on_error=self._error,
                                 log_submit=self.lg.submit, log_guard=self.lg.writer.problem)
        names = self.config.product_numbers or tuple(sorted(s.products))
        self.config = dataclasses.replace(self.config, product_numbers=names)
        gate = TriggerGate(s.station, self.config.trigger)
        self.outputs = LineOutputs(self.config, gate,
                                   build_outputs(self.config, s.station, self.data_dir / "certificates",
                                                 feed=feed),
                                   switch_product=self.switch_product, on_error=self._error)
        self.outputs.attach(self.pipeline)
        return self

    def start(self) -> None:
        self.outputs.start()
        self.pipeline.set_model(self._model_spec(self.product))
        self.outputs.set_product(self.product)
        self.pipeline.start()

    def switch_product(self, name: str) -> str:
        """The PLC (or the REST API) asks for another product: "" when switched."""
        if name not in self.settings.products and not (self.model and name == self.product):
            return (f"it is not a product of this station (products: "
                    f"{', '.join(sorted(self.settings.products))}).")
        self.product = name
        self.pipeline.set_model(self._model_spec(name))     # loaded between frames
        return ""

    def _camera_status(self, st) -> None:
        if st.state in ("error", "lost"):
            log.warning("camera: %s", st.message)

    def _model_status(self, status) -> None:
        self._last_model = status
        if status.error:
            log.error("%s", status.error)

    def stop(self, timeout: float = 10.0) -> None:
        """Camera and scoring stop, the log writes every record made, the outputs close."""
        if self.pipeline is not None:
            self.pipeline.stop()
            if not self.pipeline.join(timeout):
                log.warning("the scoring thread did not stop within %.0f s", timeout)
        if self.rest is not None:
            self.rest.stop()
        if self.outputs is not None:
            self.outputs.stop()
        if self.lg is not None:
            self.pipeline.log_submit = None
            stats = self.lg.stop_writer(timeout=30)
            if stats is not None and stats.lost:
                log.error("%d records were refused by the database", stats.lost)
            self.lg.close()
            self.lg = None

    def status_line(self, t0: float) -> str:
        p, o = self.pipeline, self.outputs
        st = o.state
        serving = " ".join(f"{v.name.replace(' ', '')}={'up' if v.running else 'DOWN'}"
                           for v in o.views())
        problems = sum(o.counts().values())
        why = f" ({st.text})" if st.text else ""
        return (f"{time.monotonic() - t0:6.0f} s  {self.product}  {st.state}{why}  parts {p.parts}"
                f"  fails {p.fails}  reviews {p.reviews}  camera {p.feed.rate_hz():.1f}/s"
                f"  {serving}  problems {problems}")


def outputs_config_from_args(a, base=None) -> object:
    """Settings > Line (base), with what the command line gives in its place."""
    from engine.outputs import OutputsConfig
    cfg = base or OutputsConfig()
    given = {k: getattr(a, k) for k in ("host", "opcua_port", "modbus_port", "trigger",
                                         "result_valid_ms", "timeout_ms", "opcua_user",
                                         "opcua_password", "rest_token", "camera_line",
                                         "mqtt_url", "mqtt_topic")
             if getattr(a, k) is not None}
    if a.no_opcua:
        given["opcua"] = False
    if a.no_modbus:
        given["modbus"] = False
    if a.rest_port is not None:
        given.update(rest=a.rest_port > 0, rest_port=max(a.rest_port, 1))
    return dataclasses.replace(cfg, **given)


def add_output_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default=None,
                   help="interface the OPC UA, Modbus and REST servers bind to (default 127.0.0.1: "
                        "this PC only; off localhost OPC UA requires its security and a user). "
                        "Every output option defaults to Settings > Line")
    p.add_argument("--opcua-port", type=int, default=None, help="default 4840")
    p.add_argument("--modbus-port", type=int, default=None, help="default 5020")
    p.add_argument("--no-opcua", action="store_true")
    p.add_argument("--no-modbus", action="store_true")
    p.add_argument("--trigger", choices=TRIGGER_MODES, default=None,
                   help="free: every frame is a part; plc: judge a part when the PLC triggers")
    p.add_argument("--result-valid-ms", type=int, default=None, help="width of the result-valid pulse")
    p.add_argument("--timeout-ms", type=int, default=None,
                   help="a triggered part with no verdict by then gets FAIL (the safe answer)")
    p.add_argument("--opcua-user", default=None, help="the OPC UA account (required off localhost)")
    p.add_argument("--opcua-password", default=None)
    p.add_argument("--camera-line", default=None,
                   help="a GenICam camera output line (e.g. Line1) raised on FAIL for the pulse width")
    p.add_argument("--mqtt-url", default=None,
                   help="publish results and state to this MQTT broker, e.g. mqtt://broker:1883")
    p.add_argument("--mqtt-topic", default=None, help="topic prefix (default inspect/STATION)")
    p.add_argument("--rest-port", type=int, default=None, help="serve the REST API on this port (0: off)")
    p.add_argument("--rest-token", default=None, help="the REST API's token (required off localhost)")


def _args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python main.py line", description=__doc__.split("\n")[0])
    p.add_argument("--product", default="", help="the product to judge (default: the current one)")
    p.add_argument("--source", default="",
                   help="camera source spec, e.g. sim:fps=20 or folder:/images (default: Settings)")
    p.add_argument("--seconds", type=float, default=0.0, help="stop after this long (0: until SIGTERM)")
    p.add_argument("--data-dir", type=Path, default=None, help="settings, log and models")
    p.add_argument("--model", default="", help="model file (default: the product's in Settings)")
    p.add_argument("--device", default="", help="scoring device (default: Settings)")
    add_output_args(p)
    return p.parse_args(argv)


def _serve(a: argparse.Namespace) -> int:
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    from engine.settings import load_settings_repaired
    data_dir = _data_dir(a.data_dir)
    line_settings = load_settings_repaired(data_dir / "settings.json")[0].line
    station = LineStation(data_dir, a.product,
                          outputs_config_from_args(a, line_settings.outputs_config()),
                          source=a.source, model=a.model, device=a.device).open()
    try:
        station.start()
        if station.config.rest:
            from engine.outputs.rest import RestServer
            station.rest = RestServer(station).start()
        station.outputs.wait_open(10.0)
        for v in station.outputs.views():
            print(f"{v.name}: {v.address}" + (f"  NOT SERVING: {v.error}" if v.error else ""), flush=True)
        t0 = time.monotonic()
        while not stop.wait(1.0):
            print(station.status_line(t0), flush=True)
            if a.seconds and time.monotonic() - t0 >= a.seconds:
                break
    finally:
        station.stop()
    print(f"stopped: {station.pipeline.parts} parts judged, all handed to the log", flush=True)
    return 0


def line_main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return run_command(_serve, _args(argv))
