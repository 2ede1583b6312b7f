"""What every screen shares: settings, the data folder, the task bridge, the inspection log
and the live engine (engine/line). Plain attributes; the screens read them and call the
methods here, so the rules (where models live, how a product switches its model) are
written once. The live engine is a client's affair here: start, stop, set the model and
thresholds; what it says comes back through Relays as frozen values."""
from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

from PySide6.QtCore import QObject, Signal

from app.tasks import ErrorHandler, Relay, Tasks, plain_words
from engine.audit import AuditTrail, settings_changes
from engine.errors import InspectError
from engine.line import CameraFeed, ModelSpec, ModelStatus, Pipeline
from engine.settings import (ProductSettings, Settings, keep_aside, load_settings_repaired,
                             save_settings)

log = logging.getLogger("inspect.app")


class Services(QObject):
    settings_changed = Signal(object)        # Settings
    log_ready = Signal(object)               # InspectionLog or None
    log_event = Signal(object)               # engine.log.LogEvent (from the writer thread)
    camera_status = Signal(object)           # engine.line.FeedStatus
    live_result = Signal(object)             # engine.line.LiveResult
    model_changed = Signal(object)           # engine.line.ModelStatus

    def __init__(self, data_dir: Path, errors: ErrorHandler, backend: str = "auto"):
        super().__init__()
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.settings_path = self.data_dir / "settings.json"
        self.errors = errors
        self.tasks = Tasks(errors, parent=self)
        self.backend = backend
        self.log = None                      # engine.log.InspectionLog once opened
        self._opened_log = None
        self._shut_down = False
        self.log_state = "closed"            # "opening" | "open" | "read_only" | "failed" | "closed"
        self._log_problem = ""               # why this app cannot record verdicts (one sentence)
        self._start_when_log_ready = False
        self.model_info: ModelStatus | None = None   # the last model status the line said
        # Said before any window listens: the main window shows these once it is up.
        self.startup_messages: list[str] = []
        self.settings: Settings = self._load_settings()
        self._setup_access()
        # Relays carry values from worker threads to the GUI thread (see tasks.Relay).
        self._result_relay = Relay(self.live_result.emit, self)
        self._model_relay = Relay(self.model_changed.emit, self)
        self._status_relay = Relay(self.camera_status.emit, self)
        self._log_relay = Relay(self.log_event.emit, self)
        self.model_changed.connect(self._remember_model)
        self.feed = CameraFeed(self.settings.camera, on_status=self._status_relay.send)
        self.pipeline = Pipeline(self.feed, station=self.settings.station,
                                 device=self.settings.device, backend=backend,
                                 on_result=self._result_relay.send,
                                 on_model=self._model_relay.send,
                                 on_error=lambda where, e: errors.report(where, e, serious=False),
                                 log_guard=self.log_problem)
        self.line_outputs = None             # engine.outputs.LineOutputs when Settings > Line is on
        self.rest = None                     # engine.outputs.rest.RestServer when Settings > Line serves it
        self._switch_relay = Relay(self.switch_product, self)   # the PLC's product switch
        self.restart_outputs()               # nothing unless Settings > Line turns them on

    def _load_settings(self) -> Settings:
        """Whatever the file holds, the app starts: a bad field takes its default, a file
        that cannot be used at all means defaults throughout. Either way the user's file is
        kept aside under a new name (never lost) and each problem is shown in one sentence."""
        try:
            settings, problems = load_settings_repaired(self.settings_path)
        except Exception as exc:             # unusable as a whole (or a bug): run on defaults
            self._tell(exc)
            self._keep_settings_aside("Started with default settings")
            return Settings()
        if not problems:
            return settings
        for p in problems:
            self._tell(str(p))
        if self._keep_settings_aside("Started with those settings at their defaults and the "
                                     "rest as in the file"):
            try:                             # the next start is clean, the fields repaired
                save_settings(settings, self.settings_path)
            except (OSError, InspectError) as exc:
                self._tell(exc)
        return settings

    def _setup_access(self) -> None:
        """Roles (engine/users.py, users.json beside settings.json) and the audit trail
        (engine/audit.py): every change applied here is checked against the role and
        recorded with who, when, old -> new."""
        from engine.users import Access, UserStore
        self.users_path = self.data_dir / "users.json"
        store = UserStore.load(self.users_path)
        if store.problem:
            self._tell(store.problem)
        self.audit = AuditTrail(lambda: self.access.actor,
                                on_error=lambda m: self.errors.report("Audit trail", m, serious=False))
        self.access = Access(store, default_name=lambda: self.settings.operator_name(),
                             on_change=lambda who, kind, target, old, new, detail:
                             self.audit.record(kind, target, old, new, detail, actor=who))

    def require(self, action: str) -> None:
        """The engine-side check behind every disabled button: NotAllowed, one sentence."""
        self.access.require(action)

    def set_label(self, inspection_id: int, label: str | None, note: str | None = None) -> bool:
        """Mark a logged part (any thread; the screens call it on a worker): checked
        against the role, recorded in the audit trail with the label before and after."""
        self.access.require("label")
        lg = self.log
        if lg is None:
            raise InspectError("The inspection log is not open: nothing can be marked.")
        before = lg.get(inspection_id)
        who = self.access.actor
        if before is None or not lg.set_label(inspection_id, label, note, who=who.name):
            return False
        old = before.label.value if before.label else None
        if old != label or (before.note or None) != (note or None):
            self.audit.record("label", f"inspection {inspection_id}", old, label,
                              detail=note or "", actor=who)
        return True

    def _keep_settings_aside(self, started: str) -> bool:
        try:
            bad = keep_aside(self.settings_path)
        except OSError as exc:
            self._tell(f"{started}, but the file {self.settings_path} could not be kept aside "
                       f"({exc}); copy it before saving settings.")
            return False
        self._tell(f"{started}; the old file is kept as {bad.name}.")
        return True

    def _tell(self, problem: BaseException | str) -> None:
        self.errors.report("Settings file", problem)     # the log file, and any listener
        self.startup_messages.append(problem if isinstance(problem, str) else plain_words(problem))

    # ---- places ------------------------------------------------------------------------
    @property
    def storage_dir(self) -> Path:
        return Path(self.settings.storage.folder) if self.settings.storage.folder else self.data_dir

    @property
    def models_dir(self) -> Path:
        return self.storage_dir / "models"

    def log_location(self, settings: Settings | None = None) -> str | Path:
        s = settings or self.settings
        folder = Path(s.storage.folder) if s.storage.folder else self.data_dir
        return s.storage.database_url or (folder / "log")

    def pictures_dir(self, settings: Settings | None = None) -> Path | None:
        """A server log's pictures stay on this PC: <data folder>/pictures. None for the
        local SQLite log (its pictures go beside the database file)."""
        from engine.log.database import is_server
        s = settings or self.settings
        folder = Path(s.storage.folder) if s.storage.folder else self.data_dir
        return folder / "pictures" if is_server(self.log_location(s)) else None

    def log_config(self):
        from engine.log import LogConfig
        return LogConfig(pictures_dir=self.pictures_dir(),
                         on_db_failure=self.settings.storage.when_log_fails)

    # ---- settings ----------------------------------------------------------------------
    def save(self, new: Settings, detail: str = "", by=None) -> None:
        """Validate and save; apply what changed (camera restarts, product switches model).
        Each change must be allowed to the role in force (NotAllowed otherwise, nothing
        saved) and is recorded once in the audit trail (`detail`: why, if said).
        `by`: the engine.users.Actor who started a long job (training, relearn) whose end
        applies this change: their role then, not whoever is at the station now, is
        checked and recorded (the station may have returned to operator meanwhile)."""
        old = self.settings
        changes = settings_changes(old, new)
        for action in dict.fromkeys(c.action for c in changes):
            self.access.require(action, by)
        if new.storage != old.storage:                   # the URL with its pictures folder
            from engine.log.database import check_place
            new.validate()
            check_place(self.log_location(new), self.pictures_dir(new))
        save_settings(new, self.settings_path)          # raises InspectError if invalid
        self.settings = new
        self.audit.record_changes(changes, detail, by)
        self.pipeline.station = new.station
        if new.camera != old.camera:
            self.set_camera(new)
        if (new.device != old.device or new.current_product != old.current_product
                or new.product.model_file != old.product.model_file):
            self.pipeline.device = new.device
            self.load_product_model()
        elif new.product != old.product:
            p = new.product
            if p.threshold is not None:
                self.pipeline.set_threshold(p.threshold, p.review_below)
        if new.line != old.line:
            self.restart_outputs()
        elif self.line_outputs is not None and new.current_product != old.current_product:
            self.line_outputs.set_product(new.current_product)
        if new.storage != old.storage:
            self.errors.report("Settings", "The new storage settings (place, and what to do when "
                                           "the log fails) are used from the next start of the "
                                           "app (records keep going to the current log).",
                               serious=False)
        self.settings_changed.emit(new)

    def set_camera(self, new: Settings) -> None:
        was_running = self.live_requested
        self.pipeline.stop()
        self.feed.configure(new.camera)        # used when the feed next starts
        if was_running:
            self.start_live()                  # the line starts over once the camera stopped

    def switch_product(self, name: str) -> None:
        if name == self.settings.current_product:
            return
        products = dict(self.settings.products)
        products.setdefault(name, ProductSettings())
        self.save(replace(self.settings, products=products, current_product=name))

    def load_product_model(self) -> None:
        p = self.settings.product
        self.pipeline.set_model(ModelSpec(product=self.settings.current_product,
                                          path=p.model_file or None, threshold=p.threshold,
                                          review_below=p.review_below))

    def _remember_model(self, status: ModelStatus) -> None:
        self.model_info = status

    # ---- the inspection log ------------------------------------------------------------
    def open_log(self) -> None:
        """On a worker: migrations, the journal and the startup picture check may take a
        while. A log another app writes opens read-only (History works, nothing is judged);
        a log that cannot open at all stops judging with the reason on the Live screen."""
        from engine.log import InspectionLog, LogInUse

        def open_it():
            try:
                lg = InspectionLog.open(self.log_location(), self.log_config(),
                                        on_event=self._log_relay.send)
            except LogInUse as exc:
                lg = InspectionLog.open(self.log_location(), self.log_config(),
                                        on_event=self._log_relay.send, read_only=True)
                self._opened_log = lg
                return lg, (f"{exc} This window opened the log read-only: History works, "
                            "parts are not judged here.")
            self._opened_log = lg            # closed by shutdown() even if `done` never runs
            lg.start_writer()
            return lg, ""

        def done(result) -> None:
            lg, why = result
            if self._shut_down:
                return
            self.log = lg
            if why:
                self.log_state, self._log_problem = "read_only", why
                self.errors.report("Inspection log", why)
            else:
                self.log_state, self._log_problem = "open", ""
                self.pipeline.log_submit = lg.submit
            if lg.abrupt_stop:
                self.errors.report("Inspection log", lg.abrupt_stop, serious=False)
            self.audit.attach(lg)            # changes made before it opened are written now
            self.log_ready.emit(lg)
            self._start_if_asked()

        def failed(exc) -> None:
            self.log_state = "failed"
            self._log_problem = (f"The inspection log could not be opened ({plain_words(exc)}); "
                                 "parts are not judged until it can (see Settings: storage).")
            self.log_ready.emit(None)
            self._start_if_asked()

        self.log_state, self._log_problem = "opening", ""
        self.tasks.call("Opening the inspection log", open_it, on_done=done, on_failed=failed)

    def log_problem(self) -> str | None:
        """Why verdicts cannot be recorded now (one sentence), or None. The scoring thread
        asks before each part: no part is judged that the log would not record."""
        if self._log_problem:
            return self._log_problem
        if self.log_state == "opening":
            return "The inspection log is still opening."
        writer = self.log.writer if self.log is not None else None
        if writer is None:
            return "The inspection log is not open: parts are not judged."
        return writer.problem()

    # ---- live ----------------------------------------------------------------------------
    # ---- the line's outputs (engine/outputs; one set per process) ----------------------
    def restart_outputs(self) -> None:
        """Close the running outputs (on a worker: closing waits on the network) and open
        the ones Settings > Line asks for; a port in use is said by the error handler."""
        old, self.line_outputs = self.line_outputs, None
        old_rest, self.rest = self.rest, None
        line = self.settings.line

        def close_old() -> None:
            if old_rest is not None:
                old_rest.stop()
            if old is not None:
                old.stop()
        if not line.enabled:
            if old is not None or old_rest is not None:
                self.tasks.call("Closing the line outputs", close_old)
            return
        from engine.line.trigger import TriggerGate
        from engine.outputs import LineOutputs, build_outputs
        cfg = line.outputs_config()
        cfg = replace(cfg, product_numbers=cfg.product_numbers or tuple(sorted(self.settings.products)))
        outs = LineOutputs(cfg, TriggerGate(self.settings.station, cfg.trigger),
                           build_outputs(cfg, self.settings.station, self.data_dir / "certificates",
                                         feed=self.feed),
                           switch_product=self._plc_switch,
                           on_error=lambda where, e: self.errors.report(where, e, serious=False))
        outs.attach(self.pipeline)
        self.line_outputs = outs
        product, running, model = self.settings.current_product, self.pipeline.requested, self.model_info

        def swap() -> None:                    # the old ones free their ports first
            close_old()
            outs.start()
            outs.set_product(product)
            outs.line_running(running)
            if model is not None:              # the model is loaded already: say so
                outs.loop.call(outs._enqueue, ("model", model))
            if cfg.rest:                       # a failure (no token off localhost) is said
                from engine.outputs.rest import RestServer, ServicesView
                self.rest = RestServer(ServicesView(self, outs)).start()
        self.tasks.call("Opening the line outputs", swap)

    def _plc_switch(self, name: str) -> str:
        """On the outputs' thread: a known product is switched on the GUI thread."""
        if name not in self.settings.products:
            return f"it is not a product of this station ({', '.join(sorted(self.settings.products))})."
        self._switch_relay.send(name)
        return ""

    def start_live(self) -> None:
        """Start the camera and scoring; while the log is still opening, start once it is
        open, so that no verdict is made that the log never sees."""
        if self.log_state == "opening":
            self._start_when_log_ready = True
            return
        self.pipeline.start()
        if self.line_outputs is not None:
            self.line_outputs.line_running(True)

    def stop_live(self) -> None:
        self._start_when_log_ready = False
        self.pipeline.stop()                    # returns at once: the line stops itself
        if self.line_outputs is not None:
            self.line_outputs.line_running(False)   # the PLC sees Error: the line is stopped

    @property
    def live_requested(self) -> bool:
        return self.pipeline.requested or self._start_when_log_ready

    def _start_if_asked(self) -> None:
        if self._start_when_log_ready and not self._shut_down:
            self._start_when_log_ready = False
            self.pipeline.start()
            if self.line_outputs is not None:
                self.line_outputs.line_running(True)

    # ---- closing -----------------------------------------------------------------------
    def shutdown(self) -> None:
        """Stop acquisition and scoring, cancel training, then let the writer write every
        queued record before the log closes: nothing made so far is lost."""
        self._shut_down = True
        self._start_when_log_ready = False
        self.pipeline.stop()
        if not self.pipeline.join(10.0):       # closing: the one place that waits for the line
            log.warning("the scoring thread did not stop within 10 s")
        if self.rest is not None:
            self.rest.stop()
            self.rest = None
        if self.line_outputs is not None:      # closing: the one place that waits for them
            self.line_outputs.stop()
            self.line_outputs = None
        self.tasks.shutdown(timeout_s=60)
        lg = self.log or self._opened_log
        self.pipeline.log_submit = None
        if lg is not None:
            self.audit.flush()
            stats = lg.stop_writer(timeout=30)
            if stats is not None and stats.lost:
                log.error("%d records were refused by the database", stats.lost)
            if stats is not None and stats.deferred:
                log.warning("%d records wait in the journal for the next start", stats.deferred)
            lg.close()
        self.log = self._opened_log = None
