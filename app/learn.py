"""Learn good parts: capture N good frames from the live camera (or import a folder), drop bad
captures by unticking their thumbnails, train with progress / time left / Cancel, look at the
held-out good scores with the proposed threshold, and save under a product name.

Training runs through the task bridge on a worker with the product's settings; the worker
writes the model file itself, so only its path and plain metadata come back to the GUI."""
from __future__ import annotations

import re
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QSize, Qt, QTimer, Signal
from PySide6.QtGui import QIcon
from PySide6.QtWidgets import (QCheckBox, QComboBox, QDoubleSpinBox, QFileDialog, QFormLayout,
                               QGroupBox, QHBoxLayout, QLabel, QLineEdit, QListWidget,
                               QListWidgetItem, QProgressBar, QPushButton, QSpinBox,
                               QVBoxLayout, QWidget)

from app.roi_editor import RoiEditor
from app.tasks import Relay
from app.widgets import histogram, score_edges, to_pixmap
from engine.errors import InspectError
from engine.meta import ModelMeta
from engine.settings import LayoutSettings, ProductSettings, parse_polygon, parse_roi


def safe_file_name(name: str) -> str:
    return re.sub(r"[^\w.\-]+", "_", name).strip("._") or "product"



@dataclass(frozen=True)
class LearnedModel:
    """What a finished training hands the GUI thread: the pending model file and its meta."""
    path: str
    meta: ModelMeta
    ms_per_part: float = 0.0          # scoring time on this PC (held-out parts), for staging


# What Learn builds (Settings.learn_plan): the kinds, in the order they are built.
PLAN_KINDS = {"staged": ("quick", "efficientad"), "quick": ("quick",),
              "efficientad": ("efficientad",)}
PLAN_NAMES = {"staged": "Quick model now, EfficientAD behind it (the better one judges)",
              "quick": "Quick model only (about a minute, no training)",
              "efficientad": "EfficientAD only"}
PINS = (("", "the better one"), ("quick", "the quick model"), ("efficientad", "EfficientAD"))

class LearnScreen(QWidget):
    saved = Signal(str)                   # product name, after the model is in use

    def __init__(self, services):
        super().__init__()
        self.services = services
        self.images: list[np.ndarray] = []     # captured / imported good images (RGB uint8)
        self.job = None
        self.result: LearnedModel | None = None     # the last trained model, not saved yet
        self._trained_images: list[np.ndarray] = []  # what it learned from, and who trained it
        self._trainer = ""
        self._t0 = 0.0
        self._capture_relay = Relay(self._captured, self)
        self._last: tuple | None = None
        self._clock = QTimer(self)
        self._clock.timeout.connect(self._show_progress)
        self._clock.start(1000)
        self._build()
        self._update_buttons()

    # ---- layout ------------------------------------------------------------------------
    def _build(self) -> None:
        s = self.services.settings
        step1 = QGroupBox("1. Good parts")
        self.count = QSpinBox()
        self.count.setRange(5, 5000)
        self.count.setValue(s.good_frames)
        self.capture_button = QPushButton("Capture from live camera")
        self.capture_button.clicked.connect(self.capture)
        self.import_button = QPushButton("Import a folder…")
        self.import_button.clicked.connect(self.import_folder)
        self.clear_button = QPushButton("Clear")
        self.clear_button.clicked.connect(self.clear)
        row = QHBoxLayout()
        row.addWidget(QLabel("Frames:"))
        row.addWidget(self.count)
        for b in (self.capture_button, self.import_button, self.clear_button):
            row.addWidget(b)
        row.addStretch(1)
        self.thumbs = QListWidget()
        self.thumbs.setViewMode(QListWidget.IconMode)
        self.thumbs.setIconSize(QSize(96, 96))
        self.thumbs.setResizeMode(QListWidget.Adjust)
        self.thumbs.setMinimumHeight(84)           # most of a row of thumbnails: fits 1280×800
        self.thumbs.itemChanged.connect(lambda _i: self._update_buttons())
        self.thumb_info = QLabel("Untick any picture that is not a good part: it will not be learned.")
        v = QVBoxLayout(step1)
        v.addLayout(row)
        v.addWidget(self.thumbs, 1)
        v.addWidget(self.thumb_info)

        step2 = QGroupBox("2. Learn")
        # What the networks look at (engine/layout.py): size, tiles, region of interest.
        self.image_size = QSpinBox()
        self.image_size.setRange(64, 2048)
        self.image_size.setSingleStep(32)
        self.tiling = QCheckBox("cut frames into tiles (small defects on large frames)")
        self.tile_scale = QDoubleSpinBox()
        self.tile_scale.setRange(0.05, 4.0)
        self.tile_scale.setSingleStep(0.05)
        self.tile_scale.setDecimals(2)
        self.roi = QLineEdit()
        self.roi.setPlaceholderText("x, y, width, height in frame pixels; empty: the whole frame")
        self.polygon = QLineEdit()
        self.polygon.setPlaceholderText("optional: x1,y1; x2,y2; x3,y3 … inside the region")
        # The default threshold's aim (engine/calibration.py), kept per product.
        self.target_frr = QDoubleSpinBox()
        self.target_frr.setRange(0.1, 20.0)
        self.target_frr.setSingleStep(0.5)
        self.target_frr.setDecimals(1)
        self.target_frr.setSuffix(" % of good parts")
        self.plan_choice = QComboBox()
        for key, text in PLAN_NAMES.items():
            self.plan_choice.addItem(text, key)
        self.layout_preview = RoiEditor(self.roi, self.polygon)   # drag the region on it
        self.layout_text = QLabel("")
        self.layout_text.setWordWrap(True)
        form = QFormLayout()
        form.addRow("Input size (px)", self.image_size)
        form.addRow("Tiling", self.tiling)
        form.addRow("Tile scale (frame resized by)", self.tile_scale)
        form.addRow("Region of interest", self.roi)
        form.addRow("Polygon", self.polygon)
        form.addRow("Threshold may reject", self.target_frr)
        form.addRow("Build", self.plan_choice)
        looks = QHBoxLayout()
        left = QVBoxLayout()                  # the form, then its sentences: beside the picture
        left.addLayout(form)
        looks.addLayout(left, 3)
        looks.addWidget(self.layout_preview, 2)
        for w in (self.image_size, self.tile_scale):
            w.valueChanged.connect(lambda _v: self._show_layout())
        self.tiling.toggled.connect(lambda _v: self._show_layout())
        for w in (self.roi, self.polygon):
            w.textChanged.connect(lambda _t: self._show_layout())
        self.plan = QLabel()
        self.plan.setWordWrap(True)
        self.train_button = QPushButton("Learn good parts")
        self.train_button.setStyleSheet("font-size:15px; padding:6px;")
        self.train_button.clicked.connect(self.train)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(self.cancel)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.progress_text = QLabel("")
        row = QHBoxLayout()
        row.addWidget(self.train_button)
        row.addWidget(self.cancel_button)
        row.addWidget(self.progress, 1)
        v = QVBoxLayout(step2)
        v.addLayout(looks)
        left.addWidget(self.layout_text)      # never under the picture
        left.addWidget(self.plan)
        left.addStretch(1)
        v.addLayout(row)
        v.addWidget(self.progress_text)

        step3 = QGroupBox("3. Check and save")
        self.hist = pg.PlotWidget()
        self.hist.setMinimumHeight(84)
        self.hist.setLabel("bottom", "score (blue: held-out good parts; orange: synthetic defects)")
        self.hist.setLabel("left", "share of each set")
        self.hist.setMouseEnabled(x=False, y=False)
        self.bars = pg.PlotDataItem(stepMode="center", fillLevel=0, brush=(31, 119, 180, 120))
        self.hist.addItem(self.bars)
        # synthetic defects pasted into the held-out parts: where the threshold has to catch
        self.synthetic_bars = pg.PlotDataItem(stepMode="center", fillLevel=0, brush=(230, 120, 20, 110))
        self.hist.addItem(self.synthetic_bars)
        self.proposed = pg.InfiniteLine(angle=90, pen=pg.mkPen("#c62828", width=2))
        self.hist.addItem(self.proposed)
        self.proposed.hide()
        self.result_text = QLabel("")
        self.result_text.setWordWrap(True)
        self.product_name = QComboBox()
        self.product_name.setEditable(True)
        self.product_name.setMinimumWidth(200)
        self.save_button = QPushButton("Save and use for this product")
        self.save_button.clicked.connect(self.save)
        row = QHBoxLayout()
        row.addWidget(QLabel("Product name:"))
        row.addWidget(self.product_name)
        row.addWidget(self.save_button)
        row.addStretch(1)
        # Relearn from labels (app/versions.py): good set + marked false rejects -> a new version
        self.relearn_button = QPushButton("Relearn from labels…")
        self.relearn_button.setToolTip("Train a new version of the product's model from its good "
                                       "set and every part marked as false reject, then compare")
        self.relearn_button.clicked.connect(self.relearn)
        row.addWidget(self.relearn_button)
        # staged Learn: which of the two models judges (engine/staged.py); either can be pinned
        self.pin = QComboBox()
        for key, text in PINS:
            self.pin.addItem(text, key)
        self.pin.setToolTip("After a staged Learn: keep the better model live, or pin one kind")
        self.pin.currentIndexChanged.connect(lambda _i: self._apply_staged_choice())
        row.addWidget(QLabel("Live:"))
        row.addWidget(self.pin)
        v = QVBoxLayout(step3)
        v.addWidget(self.hist, 1)
        v.addWidget(self.result_text)
        v.addLayout(row)

        lay = QVBoxLayout(self)
        lay.addWidget(step1, 3)
        lay.addWidget(step2)
        lay.addWidget(step3, 2)
        self.on_shown()

    def on_shown(self) -> None:
        s = self.services.settings
        self.product_name.clear()
        self.product_name.addItems(sorted(s.products))
        self.product_name.setCurrentText(s.current_product)
        self._loading = True                  # fill the layout fields without re-saving them
        self.image_size.setValue(s.image_size)
        self.target_frr.setValue(100 * s.product.target_false_reject)
        self.plan_choice.setCurrentIndex(max(0, self.plan_choice.findData(s.learn_plan)))
        self.tiling.setChecked(s.layout.tiling)
        self.tile_scale.setValue(s.layout.tile_scale)
        self.roi.setText(", ".join(str(v) for v in s.layout.roi) if s.layout.roi else "")
        self.polygon.setText("; ".join(f"{x},{y}" for x, y in s.layout.roi_polygon)
                             if s.layout.roi_polygon else "")
        self._loading = False
        self._show_layout()
        cpu = self.services.pipeline.device != "cuda"
        budget = (f"{s.training_minutes:g} minutes (at most {s.training_steps:,} steps)"
                  if s.training_minutes else f"{s.training_steps:,} steps")
        self.plan.setText(
            f"Training uses this product's settings: {budget}, {s.model_size} model, "
            f"device {'CPU' if s.device == 'cpu' else s.device.upper()} "
            f"(bf16 where the hardware has it). {'On a CPU this takes minutes to tens of minutes; ' if cpu else ''}"
            "the paper's 70,000 steps are for a GPU. Change the steps or a time budget in Settings.")

    # ---- what the networks look at ------------------------------------------------------
    def layout_settings(self) -> LayoutSettings:
        """The fields as settings; InspectError naming what is wrong in the text."""
        return LayoutSettings(tiling=self.tiling.isChecked(), tile_scale=self.tile_scale.value(),
                              roi=parse_roi(self.roi.text()),
                              roi_polygon=parse_polygon(self.polygon.text()))

    def model_config(self):
        from engine.model import ModelConfig
        lay = self.layout_settings()
        problems = lay.problems()
        if problems:
            raise InspectError(" ".join(problems))
        return ModelConfig(size=self.services.settings.model_size,
                           image_size=self.image_size.value(), tiling=lay.tiling,
                           tile_scale=lay.tile_scale, roi=lay.roi, roi_polygon=lay.roi_polygon)

    def _show_layout(self) -> None:
        """Draw the layout on the first chosen picture and say what a small defect becomes;
        a layout that cannot work is explained here, before anyone waits for training."""
        if getattr(self, "_loading", False):
            return
        self.tile_scale.setEnabled(self.tiling.isChecked())
        images = self.chosen_images()
        try:
            cfg = self.model_config()
            if not images:
                self.layout_preview.clear()
                self.layout_text.setStyleSheet("")
                self.layout_text.setText("Capture or import good parts to see what the networks look at.")
                return
            from engine.layout import Layout, describe, draw_layout
            layout = Layout.of(cfg, images[0].shape[:2])
            text = describe(layout)
            self.layout_preview.set_picture(draw_layout(images[0], layout))
        except InspectError as exc:
            self.layout_text.setStyleSheet("color:#b00020;")
            self.layout_text.setText(str(exc))
            return
        self.layout_text.setStyleSheet("")
        self.layout_text.setText(text)

    # ---- step 1: good parts ------------------------------------------------------------
    def capture(self) -> None:
        p = self.services.pipeline
        if not self.services.live_requested:   # capturing needs the live camera
            self.services.start_live()
        self.capture_button.setEnabled(False)
        self.progress_text.setText(f"Capturing {self.count.value()} frames from the live camera …")
        p.capture(self.count.value(), self._capture_relay.send)

    def _captured(self, frames) -> None:
        """On the GUI thread: thumbnails; parts the simulated line says are defective start unticked."""
        for f in frames:
            known_bad = f.label not in (None, "good")
            self._add_image(f.rgb, f"frame {f.id}", checked=not known_bad,
                            tip=f"The camera says this part is defective ({f.label})" if known_bad else "")
        self.progress_text.setText(f"Captured {len(frames)} frames.")
        self.capture_button.setEnabled(True)
        self._update_buttons()

    def import_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Folder of good parts")
        if folder:
            self.load_folder(Path(folder))

    def load_folder(self, folder: Path) -> None:
        from engine.data import list_images, load_images

        def load():
            skipped: list[str] = []                   # said on screen, never dropped silently
            paths = list_images(folder, lambda _p, msg: skipped.append(msg))
            if not paths:
                raise InspectError(f"No images (png, jpg, bmp, tif) in {folder}.")
            images, kept = load_images(paths, lambda _p, msg: skipped.append(msg))
            if not images:
                raise InspectError(f"None of the {len(paths)} images in {folder} could be read.")
            return [(p.name, im) for p, im in zip(kept, images)], tuple(skipped)

        def done(loaded) -> None:
            items, skipped = loaded
            for name, im in items:
                self._add_image(im, name)
            text = f"Imported {len(items)} images from {folder}."
            if skipped:
                text += f" Skipped: {'; '.join(skipped[:3])}" + (f" (and {len(skipped) - 3} more)."
                                                                 if len(skipped) > 3 else ".")
            self.progress_text.setText(text)
            self._update_buttons()

        self.services.tasks.call("Importing good parts", load, on_done=done)

    def _add_image(self, rgb: np.ndarray, name: str, checked: bool = True, tip: str = "") -> None:
        item = QListWidgetItem(QIcon(to_pixmap(rgb, 96)), name)
        item.setFlags(item.flags() | Qt.ItemIsUserCheckable)
        item.setCheckState(Qt.Checked if checked else Qt.Unchecked)
        item.setData(Qt.UserRole, len(self.images))
        if tip:
            item.setToolTip(tip)
        self.images.append(rgb)
        self.thumbs.addItem(item)

    def clear(self) -> None:
        self.thumbs.clear()
        self.images.clear()
        self._update_buttons()

    def chosen_images(self) -> list[np.ndarray]:
        out = []
        for i in range(self.thumbs.count()):
            item = self.thumbs.item(i)
            if item.checkState() == Qt.Checked:
                out.append(self.images[item.data(Qt.UserRole)])
        return out

    # ---- step 2: train -------------------------------------------------------------------
    def train(self) -> None:
        """Learn good parts: the plan's kinds one after the other (staged: the quick model,
        made live at once, then EfficientAD behind it; the better one then judges)."""
        images = self.chosen_images()
        try:
            self.services.require("learn")         # the engine-side check behind the button
            cfg, s = self._train_config(images)
        except InspectError as exc:
            self.services.errors.report("Learning", exc)
            return
        # what the stages make live when they end is the starter's change, even after the
        # station went back to operator meanwhile (engine/users.py: idle return)
        self._by = self.services.access.actor
        if s != self.services.settings:            # the next Learn starts from these
            self.services.save(s)
        self._cfg = cfg
        self._stages = PLAN_KINDS[s.learn_plan]
        self._staged: dict[str, LearnedModel] = {}      # kind -> model (its file once saved)
        self._saved: dict[str, str] = {}                 # kind -> saved model file
        self._staged_product = self.product_name.currentText().strip()
        self.result = None
        self._trained_images = images            # kept with the version on Save (relearn)
        from app.versions import who
        self._trainer = who(self.services)
        self._start_stage()

    def _train_config(self, images):
        """-> (TrainConfig, Settings with this screen's layout and plan); InspectError if not."""
        from engine.train import TrainConfig
        model_cfg = self.model_config()
        s = replace(self.services.settings, image_size=model_cfg.image_size,
                    layout=self.layout_settings(), learn_plan=self.plan_choice.currentData())
        s.validate()
        if model_cfg.uses_layout:              # every picture must fit the layout
            from engine.layout import Layout
            for hw in {im.shape[:2] for im in images}:
                Layout.of(model_cfg, hw)
        cfg = TrainConfig(model=model_cfg, steps=s.training_steps, teacher=s.teacher,
                          minutes=s.training_minutes or None, penalty=s.penalty, device=s.device,
                          target_frr=self.target_frr.value() / 100)
        return cfg, s

    def _start_stage(self) -> None:
        from engine.staged import KIND_NAMES
        kind = self._stages[len(self._staged)]
        cfg = replace(self._cfg, model=replace(self._cfg.model, kind=kind))
        images, backend = self._trained_images, self.services.backend
        models_dir = self.services.models_dir

        def work(progress, should_stop):           # on a worker thread
            return learn_and_write(cfg, images, models_dir, backend, progress, should_stop)

        self._last = None
        self._t0 = time.monotonic()
        self.progress.setValue(0)
        behind = " behind the quick model, which judges the line meanwhile" if self._staged else ""
        self.progress_text.setText(f"Learning ({KIND_NAMES[kind]}) from {len(images)} good parts{behind} …")
        self.job = self.services.tasks.run(f"Learning good parts ({KIND_NAMES[kind]})", work,
                                           on_done=self._trained, on_progress=self._progress,
                                           on_failed=self._train_failed,
                                           on_finished=self._update_buttons)
        self._update_buttons()

    def _progress(self, fraction: float, message: str) -> None:
        self.progress.setValue(int(fraction * 1000))
        self._last = (fraction, message, time.monotonic())
        self._show_progress()

    def _show_progress(self) -> None:
        """Also ticks every second: the engine reports every 50 steps, which on a CPU can be
        minutes apart; the operator sees the clock move and the estimate count down."""
        if self.job is None or not self.job.running or not self._last:
            return
        fraction, message, at = self._last
        now = time.monotonic()
        elapsed = now - self._t0
        left = ""
        if fraction > 0.02:
            secs = max(0.0, (at - self._t0) * (1 - fraction) / fraction - (now - at))
            left = f", about {secs / 60:.0f} min left" if secs >= 90 else f", about {secs:.0f} s left"
        self.progress_text.setText(f"{message} — {int(elapsed) // 60}:{int(elapsed) % 60:02d} "
                                   f"elapsed{left}")

    def cancel(self) -> None:
        if self.job is not None:
            self.job.cancel()
            self.progress_text.setText("Cancelling …")

    def _train_failed(self, exc) -> None:
        text = "Learning cancelled." if self.job and self.job.cancelled else f"Learning failed: {exc}"
        if getattr(self, "_saved", None):          # staged: the quick model judges on
            text += " The quick model stays in use."
        self.progress_text.setText(text)

    def _draw_scores(self, meta: ModelMeta) -> None:
        """The histogram of a model's held-out good parts and synthetic defects, its threshold."""
        scores = np.asarray(meta.holdout_scores, dtype=np.float64)
        t = meta.threshold
        syn_scores = np.asarray(meta.synthetic.scores if meta.synthetic else [], dtype=np.float64)
        syn_scores = syn_scores[np.isfinite(syn_scores)]
        edges = score_edges(scores, syn_scores, extra=(t,), bins=30)
        # shares, not counts: 6 held-out parts must not vanish beside 48 synthetic defects
        self.bars.setData(edges, histogram(scores, edges) / max(len(scores), 1))
        self.synthetic_bars.setData(edges, histogram(syn_scores, edges) / max(len(syn_scores), 1))
        self.synthetic_bars.setVisible(bool(syn_scores.size))
        self.proposed.setPos(t)
        self.proposed.show()

    def _trained(self, result: LearnedModel) -> None:
        self.result = result
        meta = result.meta
        self._draw_scores(meta)
        self.progress.setValue(1000)
        took = time.monotonic() - self._t0
        self.progress_text.setText(f"Learned in {took:.0f} s.")
        self.result_text.setText(learn_result_text(meta))
        if len(getattr(self, "_stages", ())) > 1:
            self._staged[meta.kind] = result
            if len(self._staged) == 1:             # the quick model: live now, then EfficientAD
                self.progress_text.setText(f"Quick model learned in {took:.0f} s; saving it for "
                                           f"{self._staged_product} …")
                self.save(result, self._staged_product, then=self._start_stage)
            else:
                self._apply_staged_choice()

    # ---- staged Learn: the better of the two models judges --------------------------------
    def _apply_staged_choice(self) -> None:
        """Both kinds learned: choose (or follow the pin), say why, and make it live."""
        staged = getattr(self, "_staged", {})
        if len(staged) < 2 or len(self._stages) < 2:
            return
        from engine.staged import Candidate, choose
        cands = [Candidate(k, staged[k].meta, staged[k].ms_per_part) for k in self._stages]
        gpu = self.services.pipeline.device == "cuda"
        choice = choose(*cands, pin=self.pin.currentData() or None,
                        prefer_on_tie="efficientad" if gpu else None)
        chosen = staged[choice.kind]
        self.result = None                         # both are handled here, not by Save
        self._draw_scores(chosen.meta)             # the histogram of the one that judges
        self.result_text.setText(learn_result_text(chosen.meta) + "\nStaged Learn — " + choice.text())
        if choice.kind in self._saved:
            self._use_saved(self._saved[choice.kind], chosen.meta)
        else:
            self.save(chosen, self._staged_product)
        self._update_buttons()

    def _use_saved(self, path: str, meta: ModelMeta) -> None:
        s = self.services.settings
        name = self._staged_product
        if s.products.get(name) is not None and s.products[name].model_file == path:
            return                                 # already the one judging
        product = replace(s.products.get(name, ProductSettings()), model_file=path)
        self.services.save(replace(s.with_product(name, product), current_product=name),
                           by=getattr(self, "_by", None))
        self.progress_text.setText(f"{name} now uses the {meta.title} ({Path(path).name}).")


    # ---- step 3: save --------------------------------------------------------------------
    def save(self, result: LearnedModel | None = None, name: str | None = None, then=None) -> None:
        """Save a learned model (the last one, by default) for a product and make it live;
        `then()` runs on the GUI thread once it is in use (staged Learn goes on from there)."""
        by = getattr(self, "_by", None) if name is not None else None   # staged: the starter's
        name = (self.product_name.currentText() if name is None else name).strip()
        result = result or self.result
        if result is None:
            return
        s = self.services.settings
        try:                                             # name check before any file moves
            s.with_product(name, ProductSettings()).validate()
        except InspectError as exc:
            self.services.errors.report("Saving the model", exc)
            return
        lg = self.services.log
        good, trained_by = self._trained_images, self._trainer
        m = result.meta
        final = self.services.models_dir / f"{safe_file_name(name)}-{m.model_id}.pt"

        def move_and_register():
            from engine.card import card_path
            Path(result.path).replace(final)
            card = card_path(result.path)
            if card.is_file():
                card.replace(card_path(final))
            from engine.versions import register_learned    # a version, its good set kept
            register_learned(lg, final, m, name, trained_by, good)
            return str(final)

        def done(path: str) -> None:
            st = self.services.settings
            target = m.estimate.target_frr if m.estimate else ProductSettings().target_false_reject
            product = ProductSettings(model_file=path, target_false_reject=target)
            self.services.save(replace(st.with_product(name, product),
                                       current_product=name), by=by)
            if self.result is result:
                self.result = None
            if hasattr(self, "_saved"):
                self._saved[m.kind] = path
            self._update_buttons()
            self.progress_text.setText(f"Saved: {name} now uses the new model ({m.title}).")
            self.saved.emit(name)
            if then is not None:
                then()

        self.services.tasks.call("Saving the model", move_and_register, on_done=done)

    def relearn(self) -> None:
        from app.versions import open_relearn
        self.relearn_dialog = open_relearn(self.services, self)

    def _update_buttons(self) -> None:
        self._show_layout()
        training = self.job is not None and self.job.running
        n = len(self.chosen_images())
        self.train_button.setEnabled(not training and n >= 5)
        self.train_button.setText(f"Learn good parts ({n} pictures)" if n else "Learn good parts")
        self.cancel_button.setEnabled(training)
        self.capture_button.setEnabled(not training)
        self.import_button.setEnabled(not training)
        self.save_button.setEnabled(self.result is not None and not training)

    def shutdown(self) -> None:
        """Closing the app: stop training (its resume file is written on cancel)."""
        if self.job is not None:
            self.job.cancel()
        self.services.pipeline.cancel_capture()


def learn_and_write(cfg, images, models_dir: Path, backend: str, progress, should_stop) -> LearnedModel:
    """On a worker: train, write the pending model file and its card, time its scoring on a
    few held-out parts (staged Learn compares speed on this PC) -> LearnedModel."""
    from engine.card import write_card
    from engine.model import save_checkpoint
    from engine.scoring import Scorer
    from engine.train import train
    models_dir.mkdir(parents=True, exist_ok=True)
    resume = models_dir / "training.partial.pt"
    if resume.exists():                        # a resume file of other images is refused
        resume.unlink()
    result = train(cfg, images, progress, should_stop, resume_path=resume)
    path = models_dir / f"pending-{result.meta['model_id']}.pt"
    save_checkpoint(result.model, path, result.meta)
    write_card(path, result.meta)              # MODEL.card.txt beside it, in words
    resume.unlink(missing_ok=True)             # only once the model is safe on disk
    frames = [images[i] for i in result.meta.get("holdout_index", [])[:4]] or images[:2]
    scorer = Scorer(result.model, result.meta, cfg.device, backend=backend)
    scorer.score(frames[:1], with_maps=False)                   # warm-up
    t0 = time.perf_counter()
    for f in frames:
        scorer.score([f], with_maps=False)
    ms = (time.perf_counter() - t0) * 1000.0 / len(frames)
    # scorer.info: the file's meta and the scoring path `auto` took here, with why
    return LearnedModel(str(path), scorer.info, ms)


def learn_result_text(meta: ModelMeta) -> str:
    """What the engineer reads under the histogram: the threshold, the false-reject rate it
    aims at and how sure that is, and what the synthetic defects say it catches."""
    from engine.calibration import FEW_GOOD
    scores = np.asarray(meta.holdout_scores, dtype=np.float64)
    n = scores.size
    text = f"Proposed threshold {meta.threshold:.4f} (red line); "
    if n == 0:
        text += "no held-out good parts: nothing checked the threshold — learn from more parts. "
    else:                                # few parts: the figures below say little
        text += (f"{n} held-out good parts (blue) scored {scores.min():.4f} to "
                 f"{scores.max():.4f}" + (f" — only {n}: too few for these figures to mean "
                                          "much" if n < FEW_GOOD else "") + ". ")
    from engine.card import expectations
    text += "".join(sentence + " " for sentence in expectations(meta))
    if meta.synthetic is not None:
        text += "(Orange: synthetic defects; a real defect may be subtler.) "
    if meta.scoring_path:
        text += f"Scoring on this PC: {meta.scoring_path}. "
    if meta.kind == "quick":
        return text + "Quick model: nearest neighbours on ImageNet features, no teacher."
    return text + "Teacher: " + ("RANDOM (testing only)" if meta.random_teacher
                                 else Path(meta.teacher).name) + "."
