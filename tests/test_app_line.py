"""Settings > Line in the GUI: turning the outputs on opens them with the pipeline's engine
(one set per process), the live view shows what a real Modbus client reads, stopping the
line tells the PLC (Error: the line is stopped), a PLC product switch reaches Settings."""
import socket
import time

from PySide6.QtWidgets import QApplication

from app.services import Services
from app.settings_view import SettingsScreen
from app.tasks import ErrorHandler
from engine.outputs.modbus_server import DI_ERROR


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_line_page_turns_the_outputs_on_and_shows_what_the_plc_reads(qtbot, tmp_path):
    from pymodbus.client import ModbusTcpClient
    services = Services(tmp_path, ErrorHandler())
    screen = SettingsScreen(services)
    qtbot.addWidget(screen)
    try:
        assert services.line_outputs is None and "off" in (screen.line_view.refresh() or
                                                         screen.line_view.live.toPlainText())
        port = free_port()
        screen.line_view.enabled.setChecked(True)
        screen.line_view.opcua.setChecked(False)
        screen.line_view.modbus_port.setValue(port)
        rest_port = free_port()
        screen.line_view.rest.setChecked(True)
        screen.line_view.rest_port.setValue(rest_port)
        screen.products.setText("demo part, gear")
        screen.apply()
        assert "Saved" in screen.message.text(), screen.message.text()
        outs = services.line_outputs
        assert outs is not None and outs.wait_open(15) and services.pipeline.outputs is outs
        c = ModbusTcpClient("127.0.0.1", port=port)
        assert c.connect()
        qtbot.waitUntil(lambda: c.read_discrete_inputs(0, count=8, device_id=1).bits[DI_ERROR], timeout=5000)

        def shown():
            screen.line_view.refresh()
            return screen.line_view.live.toPlainText()
        qtbot.waitUntil(lambda: "the line is stopped" in shown(), timeout=5000)
        assert f"Modbus TCP modbus-tcp://127.0.0.1:{port}: serving" in shown()
        assert "Station: ERROR — the line is stopped   product demo part (number 1)" in shown()
        c.write_register(0, 2, device_id=1)          # "gear" is number 2 (sorted names)
        qtbot.waitUntil(lambda: services.settings.current_product == "gear", timeout=5000)
        c.close()
        # the REST API of the GUI's station: a real uvicorn server, an HTTP client
        import httpx
        qtbot.waitUntil(lambda: services.rest is not None, timeout=15000)
        st = httpx.get(f"http://127.0.0.1:{rest_port}/status", timeout=10).json()
        assert st["product"] == "gear" and st["state"]["text"] == "the line is stopped"
        assert f"REST API http://127.0.0.1:{rest_port}/: serving" in shown()
    finally:
        services.shutdown()
