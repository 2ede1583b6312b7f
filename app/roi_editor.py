"""The Learn screen's layout picture, where the region of interest and its polygon are
drawn by dragging on the picture. The number boxes (Learn's "Region of interest" and
"Polygon" fields) stay, for precision, and stay in sync both ways: a drag writes them when
the mouse is released, and typing in them redraws the picture.

Region mode: drag outside the region draws a new one; drag inside moves it; drag a corner
resizes it. Polygon mode: a click adds a point, dragging a point moves it, a right-click
removes the nearest one. All positions are frame pixels (engine/layout.py)."""
from __future__ import annotations

import numpy as np
from PySide6.QtCore import QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QColor, QPainter, QPen
from PySide6.QtWidgets import (QButtonGroup, QHBoxLayout, QLabel, QLineEdit, QPushButton,
                               QRadioButton, QSizePolicy, QVBoxLayout, QWidget)

from app.widgets import to_qimage
from engine.errors import InspectError
from engine.settings import parse_polygon, parse_roi

GRAB_PX = 10          # how near (screen pixels) a corner or a point must be to be taken
MIN_ROI = 32          # as engine/settings.LayoutSettings: smaller is refused there


def roi_text(roi) -> str:
    return ", ".join(str(int(v)) for v in roi) if roi else ""


def polygon_text(points) -> str:
    return "; ".join(f"{int(x)},{int(y)}" for x, y in points) if points else ""


class RoiCanvas(QWidget):
    """Draws the picture (Learn's draw_layout output) and takes the drags."""
    edited = Signal()                       # the ROI or polygon changed by the mouse

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setMinimumSize(240, 170)      # the Learn page fits 1280×800
        self.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Expanding)
        self.setMouseTracking(False)
        self.image = None                   # QImage of the picture
        self.frame_hw: tuple[int, int] | None = None
        self.roi: tuple[int, int, int, int] | None = None
        self.polygon: list[tuple[int, int]] = []
        self.mode = "roi"                   # or "polygon"
        self._drag: tuple | None = None     # (what, start frame point, roi at start / point index)
        self._band: tuple[int, int, int, int] | None = None   # the ROI while dragging

    # ---- frame <-> widget ---------------------------------------------------------------
    def _geometry(self) -> tuple[float, float, float]:
        h, w = self.frame_hw
        s = min(self.width() / w, self.height() / h)
        return s, (self.width() - w * s) / 2, (self.height() - h * s) / 2

    def to_frame(self, p: QPointF) -> tuple[int, int]:
        s, ox, oy = self._geometry()
        h, w = self.frame_hw
        return (int(round(min(max((p.x() - ox) / s, 0), w))),
                int(round(min(max((p.y() - oy) / s, 0), h))))

    def to_widget(self, x: float, y: float) -> QPointF:
        s, ox, oy = self._geometry()
        return QPointF(ox + x * s, oy + y * s)

    # ---- mouse ----------------------------------------------------------------------------
    def mousePressEvent(self, ev) -> None:
        if self.frame_hw is None:
            return
        p, pos = self.to_frame(ev.position()), ev.position()
        if self.mode == "polygon":
            i = self._nearest_point(pos)
            if ev.button() == Qt.RightButton:
                if i is not None:
                    del self.polygon[i]
                    self.edited.emit()
                return
            if i is None:                           # a click adds a point, dragged at once
                self.polygon.append(p)
                i = len(self.polygon) - 1
            self._drag = ("point", p, i)
            self.update()
            return
        if ev.button() != Qt.LeftButton:
            return
        corner = self._nearest_corner(pos)
        if corner is not None:
            self._drag = ("corner", p, corner)
        elif self.roi and self._inside(p):
            self._drag = ("move", p, self.roi)
        else:
            self._drag = ("new", p, None)
        self._band = self.roi

    def mouseMoveEvent(self, ev) -> None:
        if self._drag is None:
            return
        what, start, ref = self._drag
        p = self.to_frame(ev.position())
        if what == "point":
            self.polygon[ref] = p
        elif what == "new":
            self._band = _rect(start, p)
        elif what == "move":
            x, y, w, h = ref
            fh, fw = self.frame_hw
            nx = min(max(x + p[0] - start[0], 0), fw - w)
            ny = min(max(y + p[1] - start[1], 0), fh - h)
            self._band = (nx, ny, w, h)
        else:                                       # a corner: the opposite one stays
            self._band = _rect(ref, p)
        self.update()

    def mouseReleaseEvent(self, ev) -> None:
        if self._drag is None:
            return
        self.mouseMoveEvent(ev)
        what = self._drag[0]
        self._drag = None
        if what != "point":
            band, self._band = self._band, None
            if band is None or band[2] < MIN_ROI or band[3] < MIN_ROI:
                self.update()                       # a click or a tiny drag changes nothing
                return
            self.roi = band
        self.edited.emit()
        self.update()

    def _nearest_point(self, pos: QPointF) -> int | None:
        best = None
        for i, (x, y) in enumerate(self.polygon):
            d = (self.to_widget(x, y) - pos).manhattanLength()
            if d <= GRAB_PX and (best is None or d < best[0]):
                best = (d, i)
        return None if best is None else best[1]

    def _nearest_corner(self, pos: QPointF) -> tuple[int, int] | None:
        """The corner opposite to the one grabbed (it stays put while resizing)."""
        if not self.roi:
            return None
        x, y, w, h = self.roi
        for cx, cy, ox, oy in ((x, y, x + w, y + h), (x + w, y, x, y + h),
                               (x, y + h, x + w, y), (x + w, y + h, x, y)):
            if (self.to_widget(cx, cy) - pos).manhattanLength() <= GRAB_PX:
                return ox, oy
        return None

    def _inside(self, p) -> bool:
        x, y, w, h = self.roi
        return x <= p[0] < x + w and y <= p[1] < y + h

    # ---- drawing --------------------------------------------------------------------------
    def paintEvent(self, _ev) -> None:
        qp = QPainter(self)
        qp.fillRect(self.rect(), QColor("#222"))
        if self.image is None or self.frame_hw is None:
            qp.setPen(QColor("#ccc"))
            qp.drawText(self.rect(), Qt.AlignCenter | Qt.TextWordWrap,
                        "Capture or import good parts,\nthen drag the region on the picture.")
            return
        s, ox, oy = self._geometry()
        h, w = self.frame_hw
        qp.setRenderHint(QPainter.SmoothPixmapTransform)
        qp.drawImage(QRectF(ox, oy, w * s, h * s), self.image)
        if self._band is not None and self._drag is not None:
            x, y, bw, bh = self._band
            qp.setPen(QPen(QColor("#40c83c"), 2, Qt.DashLine))
            qp.drawRect(QRectF(self.to_widget(x, y), self.to_widget(x + bw, y + bh)))
        if self.mode == "roi" and self.roi and self._drag is None:
            x, y, bw, bh = self.roi
            qp.setPen(QPen(QColor("#40c83c"), 2))
            qp.setBrush(QColor("#40c83c"))
            for cx, cy in ((x, y), (x + bw, y), (x, y + bh), (x + bw, y + bh)):
                qp.drawRect(QRectF(self.to_widget(cx, cy) - QPointF(4, 4), QRectF(0, 0, 8, 8).size()))
        if self.mode == "polygon" and self.polygon:
            pts = [self.to_widget(x, y) for x, y in self.polygon]
            qp.setPen(QPen(QColor("#fadc00"), 2))
            for a, b in zip(pts, pts[1:] + pts[:1]):
                qp.drawLine(a, b)
            qp.setBrush(QColor("#fadc00"))
            for p in pts:
                qp.drawEllipse(p, 5, 5)


def _rect(a, b) -> tuple[int, int, int, int]:
    x0, x1 = sorted((a[0], b[0]))
    y0, y1 = sorted((a[1], b[1]))
    return x0, y0, x1 - x0, y1 - y0


class RoiEditor(QWidget):
    """The canvas with its mode switch, bound to Learn's two text fields."""

    def __init__(self, roi_edit: QLineEdit, polygon_edit: QLineEdit, parent=None):
        super().__init__(parent)
        self.roi_edit, self.polygon_edit = roi_edit, polygon_edit
        self.canvas = RoiCanvas()
        self.region_mode = QRadioButton("drag a region")
        self.polygon_mode = QRadioButton("polygon points")
        self.region_mode.setChecked(True)
        group = QButtonGroup(self)
        for b in (self.region_mode, self.polygon_mode):
            group.addButton(b)
            b.toggled.connect(self._mode_changed)
        self.clear_button = QPushButton("Whole frame")
        self.clear_button.setToolTip("Remove the region and the polygon")
        self.clear_button.clicked.connect(self.clear_shapes)
        row = QHBoxLayout()
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(QLabel("Mouse:"))
        row.addWidget(self.region_mode)
        row.addWidget(self.polygon_mode)
        row.addStretch(1)
        row.addWidget(self.clear_button)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addLayout(row)
        lay.addWidget(self.canvas, 1)
        self.canvas.setToolTip("Drag outside the region to draw a new one, inside it to move "
                               "it, a corner to resize it; polygon points: click to add, drag "
                               "to move, right-click to remove")
        self.canvas.edited.connect(self._write_fields)
        roi_edit.textChanged.connect(self._read_fields)
        polygon_edit.textChanged.connect(self._read_fields)
        self._read_fields()

    # Learn's _show_layout calls these two, as it did on the QLabel before.
    def set_picture(self, rgb: np.ndarray) -> None:
        self.canvas.image = to_qimage(rgb)
        self.canvas.frame_hw = tuple(rgb.shape[:2])
        self.canvas.update()

    def clear(self) -> None:
        self.canvas.image = None
        self.canvas.frame_hw = None
        self.canvas.update()

    def _mode_changed(self, _on: bool) -> None:
        self.canvas.mode = "polygon" if self.polygon_mode.isChecked() else "roi"
        self.canvas.update()

    def clear_shapes(self) -> None:
        self.canvas.roi, self.canvas.polygon = None, []
        self._write_fields()

    def _read_fields(self, *_) -> None:
        """Typing in the boxes moves the shapes (text that does not parse yet is left to
        Learn's own message)."""
        try:
            self.canvas.roi = parse_roi(self.roi_edit.text())
        except InspectError:
            pass
        try:
            self.canvas.polygon = list(parse_polygon(self.polygon_edit.text()) or ())
        except InspectError:
            if not self.polygon_edit.text().strip():
                self.canvas.polygon = []
        self.canvas.update()

    def _write_fields(self) -> None:
        c = self.canvas
        self.roi_edit.setText(roi_text(c.roi))
        # fewer than 3 points is not a polygon yet: Learn says so until the third click
        self.polygon_edit.setText(polygon_text(c.polygon))
