"""Small widgets the screens share: a fast picture view, numpy -> QImage, histograms."""
from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF, Qt
from PySide6.QtGui import QImage, QPainter, QPixmap
from PySide6.QtWidgets import QSizePolicy, QWidget


def to_qimage(rgb: np.ndarray) -> QImage:
    """H×W×3 uint8 RGB -> QImage that owns a copy (the array may be reused afterwards)."""
    rgb = np.ascontiguousarray(rgb)
    h, w = rgb.shape[:2]
    return QImage(rgb.data, w, h, 3 * w, QImage.Format_RGB888).copy()


def to_pixmap(rgb: np.ndarray, max_side: int | None = None) -> QPixmap:
    pm = QPixmap.fromImage(to_qimage(rgb))
    if max_side:
        pm = pm.scaled(max_side, max_side, Qt.KeepAspectRatio, Qt.SmoothTransformation)
    return pm


class PictureView(QWidget):
    """Draws one picture scaled to fit, keeping its aspect; drawing is all it does."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self._image: QImage | None = None
        self.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Expanding)
        self.setMinimumSize(240, 180)
        self.setAttribute(Qt.WA_OpaquePaintEvent)

    def set_rgb(self, rgb: np.ndarray | None) -> None:
        self._image = None if rgb is None else to_qimage(rgb)
        self.update()

    def paintEvent(self, event) -> None:
        p = QPainter(self)
        p.fillRect(self.rect(), Qt.black)
        if self._image is not None:
            iw, ih = self._image.width(), self._image.height()
            scale = min(self.width() / iw, self.height() / ih)
            w, h = iw * scale, ih * scale
            target = QRectF((self.width() - w) / 2, (self.height() - h) / 2, w, h)
            p.setRenderHint(QPainter.SmoothPixmapTransform, scale < 1)
            p.drawImage(target, self._image)
        p.end()


class ZoomView(pg.GraphicsLayoutWidget):
    """A picture you can zoom (wheel) and pan (drag); double-click fits it again."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.box = self.addViewBox(lockAspect=True, invertY=True)
        self.box.setMenuEnabled(False)
        self.item = pg.ImageItem(axisOrder="row-major")
        self.box.addItem(self.item)

    def set_rgb(self, rgb: np.ndarray | None) -> None:
        if rgb is None:
            self.item.clear()
            return
        self.item.setImage(rgb, levels=(0, 255))
        self.box.autoRange(padding=0.0)

    def mouseDoubleClickEvent(self, ev) -> None:
        self.box.autoRange(padding=0.0)


def histogram(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    v = np.asarray(values, dtype=np.float64)
    v = np.clip(v, edges[0], edges[-1])
    return np.histogram(v, bins=edges)[0]


def score_edges(*arrays: np.ndarray, extra: tuple[float, ...] = (), bins: int = 40) -> np.ndarray:
    """Common bin edges for several score sets (and lines that must stay visible)."""
    vals = [np.asarray(a, dtype=np.float64).ravel() for a in arrays if a is not None and len(a)]
    vals.append(np.asarray([x for x in extra if x is not None], dtype=np.float64))
    allv = np.concatenate(vals) if vals else np.zeros(0)
    hi = float(np.quantile(allv, 0.995)) * 1.15 if allv.size else 1.0
    hi = max(hi, max([x for x in extra if x is not None], default=0.0) * 1.3, 1e-3)
    return np.linspace(0.0, hi, bins + 1)


# The one name of each label action, on every screen (toolbar, History, Live's messages).
LABEL_WORDS = {"confirmed_defect": "confirmed defect", "false_reject": "false reject"}
LABEL_KEYS = {"confirmed_defect": "Ctrl+D", "false_reject": "Ctrl+R"}


def label_words(label) -> str:
    """'confirmed defect' / 'false reject' for a Label, its value or None ('')."""
    if label is None:
        return ""
    value = getattr(label, "value", label)
    return LABEL_WORDS.get(value, str(value).replace("_", " "))


def label_button_text(label: str) -> str:
    """'Confirmed defect (Ctrl+D)': the same words on the toolbar and in History."""
    return f"{LABEL_WORDS[label].capitalize()} ({LABEL_KEYS[label]})"
