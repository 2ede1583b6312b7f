"""Settings screen: edits engine/settings.Settings. Apply validates (clear messages from the
engine, shown under the form), saves the JSON file and applies what changed."""
from __future__ import annotations

from dataclasses import replace

from PySide6.QtWidgets import (QCheckBox, QComboBox, QDoubleSpinBox, QFileDialog, QFormLayout,
                               QGroupBox, QHBoxLayout, QLabel, QLineEdit, QPushButton,
                               QScrollArea, QSpinBox, QVBoxLayout, QWidget)

from engine.camera.kinds import LABELS
from engine.errors import InspectError
from engine.settings import DEVICES, MODEL_SIZES, SOURCE_KINDS, TRIGGERS, ProductSettings


def _path_row(edit: QLineEdit, pick) -> QWidget:
    w = QWidget()
    row = QHBoxLayout(w)
    row.setContentsMargins(0, 0, 0, 0)
    row.addWidget(edit, 1)
    b = QPushButton("Browse…")
    b.clicked.connect(pick)
    row.addWidget(b)
    return w


def _optional(spin: QDoubleSpinBox, label: str) -> tuple[QWidget, QCheckBox]:
    """A number that may be left to the camera ('camera's own')."""
    box = QCheckBox(label)
    box.toggled.connect(spin.setEnabled)
    w = QWidget()
    row = QHBoxLayout(w)
    row.setContentsMargins(0, 0, 0, 0)
    row.addWidget(box)
    row.addWidget(spin, 1)
    return w, box


class SettingsScreen(QWidget):
    def __init__(self, services):
        super().__init__()
        self.services = services
        self._build()
        self.load(services.settings)
        services.settings_changed.connect(self.load)

    def _build(self) -> None:
        cam = QGroupBox("Camera")
        f = QFormLayout(cam)
        self.source = QComboBox()
        for kind in SOURCE_KINDS:                 # every kind the camera spec knows
            self.source.addItem(LABELS[kind], kind)
        self.producer = QLineEdit()
        self.producer.setPlaceholderText("GenTL producer file (.cti), for GenICam cameras")
        self.device_id = QLineEdit()
        self.device_id.setPlaceholderText("GenICam serial number (empty: the first camera found); "
                                          "OpenCV camera index (empty: 0)")
        self.path = QLineEdit()
        self.path.setPlaceholderText("folder of images or a video file")
        self.fps = QDoubleSpinBox()
        self.fps.setRange(0.1, 1000)
        self.exposure = QDoubleSpinBox()
        self.exposure.setRange(1, 10_000_000)
        self.exposure.setSuffix(" µs")
        self.gain = QDoubleSpinBox()
        self.gain.setRange(-20, 60)
        self.gain.setSuffix(" dB")
        self.trigger = QComboBox()
        self.trigger.addItems(TRIGGERS)
        self.trigger.setEditable(True)          # any camera line: Line2:falling ...
        exp_w, self.exposure_on = _optional(self.exposure, "set")
        gain_w, self.gain_on = _optional(self.gain, "set")
        f.addRow("Source", self.source)
        f.addRow("GenTL producer", _path_row(self.producer, self._pick_producer))
        f.addRow("Camera (device)", self.device_id)
        f.addRow("Folder / video", _path_row(self.path, self._pick_path))
        f.addRow("Frame rate (simulated, folder, video)", self.fps)
        f.addRow("Exposure", exp_w)
        f.addRow("Gain", gain_w)
        f.addRow("Trigger", self.trigger)

        store = QGroupBox("Storage")
        f = QFormLayout(store)
        self.folder = QLineEdit()
        self.folder.setPlaceholderText(f"empty: {self.services.data_dir}")
        self.db_url = QLineEdit()
        self.db_url.setPlaceholderText("empty: a local SQLite file in the folder; or postgresql://user@host/db")
        # What the line does when the log cannot record (engine/log: stop or spool).
        self.when_log_fails = QComboBox()
        self.when_log_fails.addItem("stop judging, say why (default)", "stop")
        self.when_log_fails.addItem("judge on, keep verdicts locally until the log is back", "spool")
        self.station = QLineEdit()
        self.operator = QLineEdit()
        self.operator.setPlaceholderText("empty: the computer's login name")
        f.addRow("Data folder", _path_row(self.folder, self._pick_folder))
        f.addRow("Database URL", self.db_url)
        f.addRow("When the log fails", self.when_log_fails)
        f.addRow("Station name", self.station)
        f.addRow("Operator (for labels and thresholds)", self.operator)

        model = QGroupBox("Model and learning")
        f = QFormLayout(model)
        self.device = QComboBox()
        self.device.addItems(DEVICES)
        self.size = QComboBox()
        self.size.addItems(MODEL_SIZES)
        self.image_size = QSpinBox()
        self.image_size.setRange(64, 2048)
        self.image_size.setSingleStep(32)
        self.steps = QSpinBox()
        self.steps.setRange(1, 1_000_000)
        self.steps.setSingleStep(100)
        self.good_frames = QSpinBox()
        self.good_frames.setRange(5, 5000)
        self.teacher = QLineEdit()
        self.products = QLineEdit()
        self.products.setPlaceholderText("comma-separated; each product has its own model")
        f.addRow("Scoring and training on", self.device)
        f.addRow("Model size", self.size)
        f.addRow("Input size (px; also on Learn)", self.image_size)
        f.addRow("Training steps", self.steps)
        self.minutes = QDoubleSpinBox()
        self.minutes.setRange(0, 10_000)
        self.minutes.setDecimals(1)
        self.minutes.setSpecialValueText("by steps")        # 0: no time budget
        self.minutes.setSuffix(" min")
        f.addRow("Learn for (steps then only cap it)", self.minutes)
        f.addRow("Good frames to capture", self.good_frames)
        f.addRow("Teacher (default / file / random)", self.teacher)
        f.addRow("Products", self.products)
        # which scoring path `auto` took for the model in use, and its figures (engine/autopath.py)
        self.scoring_path = QLabel("no model in use yet")
        self.scoring_path.setWordWrap(True)
        f.addRow("Scoring path on this PC", self.scoring_path)
        self.services.model_changed.connect(self._show_scoring_path)
        if self.services.model_info is not None:
            self._show_scoring_path(self.services.model_info)

        self.message = QLabel("")
        self.message.setWordWrap(True)
        self.apply_button = QPushButton("Apply and save")
        self.apply_button.setStyleSheet("font-size:15px; padding:6px;")
        self.apply_button.clicked.connect(self.apply)
        revert = QPushButton("Undo changes")
        revert.clicked.connect(lambda: self.load(self.services.settings))
        buttons = QHBoxLayout()
        buttons.addWidget(self.apply_button)
        buttons.addWidget(revert)
        buttons.addStretch(1)

        inner = QWidget()
        v = QVBoxLayout(inner)
        row = QHBoxLayout()
        row.addWidget(cam, 1)
        col = QVBoxLayout()
        col.addWidget(store)
        col.addWidget(model)
        row.addLayout(col, 1)
        v.addLayout(row)
        from app.line_view import LineView     # Settings > Line (engine/outputs)
        self.line_view = LineView(self.services)
        v.addWidget(self.line_view)
        v.addWidget(self.message)
        v.addLayout(buttons)
        v.addWidget(QLabel(f"Settings file: {self.services.settings_path}"))
        v.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(inner)
        lay = QVBoxLayout(self)
        lay.addWidget(scroll)

    def _show_scoring_path(self, status) -> None:        # engine.line.ModelStatus
        meta = getattr(status, "meta", None)
        if status.error:
            text = "no model in use (it could not be loaded)"
        elif meta is None or not meta.scoring_path:
            text = "no model in use yet"
        else:
            text = f"{status.product}: {meta.scoring_path}"
        self.scoring_path.setText(text)

    def _pick_producer(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "GenTL producer", "", "GenTL producer (*.cti)")
        if path:
            self.producer.setText(path)

    def _pick_path(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Folder of images") if self.source.currentData() == "folder" \
            else QFileDialog.getOpenFileName(self, "Video file")[0]
        if path:
            self.path.setText(path)

    def _pick_folder(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Data folder")
        if path:
            self.folder.setText(path)

    # ---- form <-> Settings -----------------------------------------------------------------
    def load(self, s) -> None:
        c = s.camera
        self.source.setCurrentIndex(self.source.findData(c.source))
        self.producer.setText(c.producer_file)
        self.device_id.setText(c.device)
        self.path.setText(c.path)
        self.fps.setValue(c.fps)
        self.exposure_on.setChecked(c.exposure_us is not None)
        self.exposure.setEnabled(c.exposure_us is not None)
        self.exposure.setValue(c.exposure_us or 10000)
        self.gain_on.setChecked(c.gain_db is not None)
        self.gain.setEnabled(c.gain_db is not None)
        self.gain.setValue(c.gain_db or 0)
        self.trigger.setCurrentText(c.trigger)
        self.folder.setText(s.storage.folder)
        self.db_url.setText(s.storage.database_url)
        self.when_log_fails.setCurrentIndex(max(0, self.when_log_fails.findData(s.storage.when_log_fails)))
        self.station.setText(s.station)
        self.operator.setText(s.operator)
        self.device.setCurrentText(s.device)
        self.size.setCurrentText(s.model_size)
        self.image_size.setValue(s.image_size)
        self.steps.setValue(s.training_steps)
        self.minutes.setValue(s.training_minutes)
        self.good_frames.setValue(s.good_frames)
        self.teacher.setText(s.teacher)
        self.products.setText(", ".join(s.products))
        self.line_view.load(s.line)
        self.message.setText("")

    def form_settings(self):
        s = self.services.settings
        names = [n.strip() for n in self.products.text().split(",") if n.strip()]
        products = {n: s.products.get(n, ProductSettings()) for n in names}
        current = s.current_product if s.current_product in products else (names[0] if names else "")
        return replace(
            s, station=self.station.text().strip(), operator=self.operator.text().strip(),
            camera=replace(s.camera, source=self.source.currentData(),
                           producer_file=self.producer.text().strip(),
                           device=self.device_id.text().strip(), path=self.path.text().strip(),
                           fps=self.fps.value(),
                           exposure_us=self.exposure.value() if self.exposure_on.isChecked() else None,
                           gain_db=self.gain.value() if self.gain_on.isChecked() else None,
                           trigger=self.trigger.currentText()),
            storage=replace(s.storage, folder=self.folder.text().strip(),
                            database_url=self.db_url.text().strip(),
                            when_log_fails=self.when_log_fails.currentData()),
            device=self.device.currentText(), model_size=self.size.currentText(),
            image_size=self.image_size.value(), training_steps=self.steps.value(),
            training_minutes=self.minutes.value(),
            good_frames=self.good_frames.value(), teacher=self.teacher.text().strip() or "default",
            products=products, current_product=current,
            line=self.line_view.line_settings(s.line))

    def apply(self) -> None:
        try:
            new = self.form_settings()
            new.validate()
            self.services.save(new)
        except InspectError as exc:
            self.message.setStyleSheet("color:#b00020; font-size:14px;")
            self.message.setText(str(exc))
            return
        except Exception as exc:  # noqa: BLE001
            self.services.errors.report("Settings", exc)
            return
        self.message.setStyleSheet("color:#1b7f3b; font-size:14px;")
        self.message.setText("Saved and applied.")
