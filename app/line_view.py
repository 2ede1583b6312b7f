"""Settings > Line: the station's outputs to the PLC (engine/outputs) and a live view of what
the PLC sees: each output's address, state and last written values, the problems counted.
The form edits Settings.line (engine/settings.py: LineSettings); Apply on the Settings
screen saves it and Services reopens the outputs. The live view only reads frozen values
(LineOutputs.views(), problems()) on a timer: it never waits on the network."""
from __future__ import annotations

from dataclasses import replace

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import (QCheckBox, QComboBox, QFormLayout, QGroupBox, QLabel, QLineEdit,
                               QPlainTextEdit, QSpinBox, QVBoxLayout)


def _port() -> QSpinBox:
    s = QSpinBox()
    s.setRange(1, 65535)
    return s


class LineView(QGroupBox):
    def __init__(self, services):
        super().__init__("Line (outputs to the PLC and MES: OPC UA, Modbus TCP, REST, MQTT, camera line)")
        self.services = services
        f = QFormLayout()
        self.enabled = QCheckBox("Serve the line outputs while the app runs")
        self.host = QLineEdit()
        self.host.setToolTip("127.0.0.1: this PC only. Any other address: OPC UA requires "
                             "Basic256Sha256 SignAndEncrypt and the account below; Modbus TCP "
                             "has no security of its own.")
        self.opcua = QCheckBox("OPC UA")
        self.opcua_port = _port()
        self.opcua_user = QLineEdit()
        self.opcua_password = QLineEdit()
        self.opcua_password.setEchoMode(QLineEdit.EchoMode.Password)
        self.modbus = QCheckBox("Modbus TCP (no security: bind it to the line's network only)")
        self.modbus_port = _port()
        self.trigger = QComboBox()
        self.trigger.addItem("Free run (every frame is a part)", "free")
        self.trigger.addItem("PLC trigger (OPC UA StartSingleJob, Modbus coil 0)", "plc")
        self.pulse = QSpinBox()
        self.pulse.setRange(10, 10_000)
        self.pulse.setSuffix(" ms")
        self.timeout = QSpinBox()
        self.timeout.setRange(50, 600_000)
        self.timeout.setSuffix(" ms")
        self.safe = QComboBox()
        self.safe.addItems(["FAIL", "REVIEW"])
        self.rest = QCheckBox("REST API for the MES (a token is required off localhost)")
        self.rest_port = _port()
        self.rest_token = QLineEdit()
        self.rest_token.setEchoMode(QLineEdit.EchoMode.Password)
        self.camera_line = QLineEdit()
        self.camera_line.setPlaceholderText("a GenICam camera output line raised on FAIL, e.g. Line1 "
                                            "(empty: none)")
        self.mqtt = QLineEdit()
        self.mqtt.setPlaceholderText("MQTT broker to publish results to, e.g. mqtt://broker:1883 "
                                     "(empty: none)")
        self.numbers = QLineEdit()
        self.numbers.setPlaceholderText("product names in PLC number order, comma separated "
                                        "(empty: the products sorted by name)")
        for label, w in (("", self.enabled), ("Interface", self.host), ("", self.opcua),
                         ("OPC UA port", self.opcua_port), ("OPC UA user", self.opcua_user),
                         ("OPC UA password", self.opcua_password), ("", self.modbus),
                         ("Modbus port", self.modbus_port), ("Trigger", self.trigger),
                         ("Result-valid pulse", self.pulse), ("Result timeout", self.timeout),
                         ("Safe answer on timeout", self.safe), ("Product numbers", self.numbers),
                         ("", self.rest), ("REST port", self.rest_port), ("REST token", self.rest_token),
                         ("Camera output line", self.camera_line), ("MQTT broker", self.mqtt)):
            f.addRow(label, w)
        self.live = QPlainTextEdit()
        self.live.setReadOnly(True)
        self.live.setMinimumHeight(140)
        v = QVBoxLayout(self)
        v.addLayout(f)
        v.addWidget(QLabel("What the PLC sees now:"))
        v.addWidget(self.live)
        # Refreshed only while shown: a hidden page costs the GUI thread nothing (the
        # event-loop stall test measures every callback it runs while the line scores).
        self._timer = QTimer(self)
        self._timer.setInterval(500)
        self._timer.timeout.connect(self.refresh)

    def showEvent(self, event) -> None:
        self.refresh()
        self._timer.start()
        super().showEvent(event)

    def hideEvent(self, event) -> None:
        self._timer.stop()
        super().hideEvent(event)

    def load(self, line) -> None:
        self.enabled.setChecked(line.enabled)
        self.host.setText(line.host)
        self.opcua.setChecked(line.opcua)
        self.opcua_port.setValue(line.opcua_port)
        self.opcua_user.setText(line.opcua_user)
        self.opcua_password.setText(line.opcua_password)
        self.modbus.setChecked(line.modbus)
        self.modbus_port.setValue(line.modbus_port)
        self.trigger.setCurrentIndex(max(0, self.trigger.findData(line.trigger)))
        self.pulse.setValue(line.result_valid_ms)
        self.timeout.setValue(line.timeout_ms)
        self.safe.setCurrentText(line.timeout_verdict)
        self.numbers.setText(", ".join(line.product_numbers))
        self.rest.setChecked(line.rest)
        self.rest_port.setValue(line.rest_port)
        self.rest_token.setText(line.rest_token)
        self.camera_line.setText(line.camera_line)
        self.mqtt.setText(line.mqtt_url)

    def line_settings(self, line):
        names = tuple(n.strip() for n in self.numbers.text().split(",") if n.strip())
        return replace(line, enabled=self.enabled.isChecked(), host=self.host.text().strip(),
                       opcua=self.opcua.isChecked(), opcua_port=self.opcua_port.value(),
                       opcua_user=self.opcua_user.text().strip(),
                       opcua_password=self.opcua_password.text(),
                       modbus=self.modbus.isChecked(), modbus_port=self.modbus_port.value(),
                       trigger=self.trigger.currentData(), result_valid_ms=self.pulse.value(),
                       timeout_ms=self.timeout.value(), timeout_verdict=self.safe.currentText(),
                       product_numbers=names, rest=self.rest.isChecked(),
                       rest_port=self.rest_port.value(), rest_token=self.rest_token.text(),
                       camera_line=self.camera_line.text().strip(), mqtt_url=self.mqtt.text().strip())

    def refresh(self) -> None:
        outs = self.services.line_outputs
        if outs is None:
            text = "The line outputs are off (tick 'Serve the line outputs' and Apply)."
        else:
            st = outs.state
            lines = [f"Station: {st.state.upper()}" + (f" — {st.text}" if st.text else "")
                     + f"   product {st.product or '-'} (number {st.product_number})"]
            for v in outs.views():
                lines.append(f"{v.name} {v.address}: " + ("serving" if v.running else
                                                          f"NOT SERVING — {v.error or 'starting'}"))
                lines += [f"    {k} = {val}" for k, val in v.values if k != "address"]
            rest = self.services.rest
            if rest is not None:
                lines.append(f"REST API {rest.address}: serving")
            counts = outs.counts()
            if counts:
                lines.append("Problems: " + ", ".join(f"{k} {n}" for k, n in sorted(counts.items())))
                lines += [f"    {p.message}" for p in outs.problems()[-3:]]
            text = "\n".join(lines)
        if text != self.live.toPlainText():
            self.live.setPlainText(text)
