"""engine/outputs against the real libraries' real clients over loopback: bad input from the
line (bad register address, unknown node id, unknown product number, a trigger while busy,
a client gone mid-subscription, a port in use) is one sentence, counted, and the station
keeps its safe state; a triggered part without a verdict in time gets the safe answer on
the outputs and a row in the log; the result-valid pulse has its width."""
import asyncio
import socket
import subprocess
import sys
import textwrap
import time

import pytest

from engine.line import ModelSpec, Pipeline
from engine.line.trigger import TriggerGate
from engine.model import EfficientAD, ModelConfig, save_checkpoint
from engine.outputs import LineOutputs, OutputsConfig, build_outputs
from engine.outputs.modbus_server import (DI_ERROR, DI_FAIL, DI_READY, DI_REFUSED, DI_VALID,
                                          IR_SEQ, IR_VERDICT, VERDICT_CODES, text_to_regs)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(cond, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.01)


def make_hub(tmp_path, trigger="plc", **kw):
    cfg = OutputsConfig(opcua_port=free_port(), modbus_port=free_port(), trigger=trigger,
                        product_numbers=("widget", "gear"), **kw)
    switched = []

    def switch(name):
        switched.append(name)
        return "" if name in ("widget", "gear") else "not a product here."
    hub = LineOutputs(cfg, TriggerGate("st1", trigger), build_outputs(cfg, "st1", tmp_path / "certs"),
                      switch_product=switch)
    hub.start()
    assert hub.wait_open(15)
    return hub, cfg, switched


def modbus(cfg):
    from pymodbus.client import ModbusTcpClient
    c = ModbusTcpClient("127.0.0.1", port=cfg.modbus_port)
    assert c.connect()
    return c


def test_bad_modbus_input_is_said_counted_and_the_station_stays_safe(tmp_path, caplog):
    hub, cfg, switched = make_hub(tmp_path)
    c = modbus(cfg)
    try:
        assert c.read_discrete_inputs(0, count=8, device_id=1).bits[DI_READY]
        assert c.read_input_registers(200, count=2, device_id=1).isError()   # not in the map
        wait_for(lambda: hub.counts().get("register") == 1, 5, "the bad address counted")
        assert "input registers 200..201" in hub.problems()[-1].message
        assert c.read_input_registers(200, count=2, device_id=1).isError()   # the PLC repeats it
        wait_for(lambda: hub.counts().get("register") == 2, 5, "the repeat counted")
        said = [r for r in caplog.records if "input registers 200..201" in r.getMessage()]
        assert len(said) == 1                          # the log file has it once a minute
        # an unknown product number: refused to the PLC, Error with the reason, counted
        assert c.write_register(0, 7, device_id=1).isError()
        wait_for(lambda: c.read_discrete_inputs(0, count=8, device_id=1).bits[DI_ERROR], 5, "Error")
        assert hub.counts()["product"] == 1 and "Unknown product number 7" in hub.state.text
        assert "1=widget, 2=gear" in hub.state.text
        c.write_coil(0, True, device_id=1)             # no part is judged in error
        wait_for(lambda: c.read_discrete_inputs(0, count=8, device_id=1).bits[DI_REFUSED], 5, "refused")
        assert not hub.gate.armed and hub.counts()["busy"] == 1
        # a known number clears it; the PLC reads the number back
        assert not c.write_register(0, 2, device_id=1).isError()
        wait_for(lambda: c.read_discrete_inputs(0, count=8, device_id=1).bits[DI_READY], 5, "Ready")
        assert switched == ["gear"] and c.read_holding_registers(0, count=1, device_id=1).registers == [2]
        # a trigger while a part is pending: refused, counted, the first part stays
        c.write_registers(1, text_to_regs("A-1"), device_id=1)
        c.write_coil(0, True, device_id=1)
        wait_for(lambda: hub.gate.armed, 5, "the trigger")
        assert not c.read_coils(0, count=1, device_id=1).bits[0]     # the coil reads 0 again
        c.write_coil(0, True, device_id=1)
        wait_for(lambda: hub.counts()["busy"] == 2, 5, "the second trigger refused")
        assert "busy with part A-1" in hub.problems()[-1].message
    finally:
        c.close()
        hub.stop()


async def _opcua_bad_input(cfg, hub):
    from asyncua import Client, ua
    async with Client(f"opc.tcp://127.0.0.1:{cfg.opcua_port}/inspect/") as c:
        ns = await c.get_namespace_index("urn:inspect:line")
        with pytest.raises(ua.UaStatusCodeError):
            await c.get_node(f"ns={ns};s=Station.NoSuchThing").read_value()
        station = c.get_node(f"ns={ns};s=Station")
        ok, pid, why = await station.call_method(f"{ns}:StartSingleJob", "")
        assert ok and pid.startswith("st1-") and not why           # a generated id
        ok, _, why = await station.call_method(f"{ns}:StartSingleJob", "X")
        assert not ok and f"busy with part {pid}" in why
        await c.get_node(f"ns={ns};s=Station.Product").write_value("nonsense")
        for _ in range(200):
            if await c.get_node(f"ns={ns};s=Station.State").read_value() == "Error":
                break
            await asyncio.sleep(0.01)
        assert await c.get_node(f"ns={ns};s=Station.State").read_value() == "Error"
        assert "not a product here" in await c.get_node(f"ns={ns};s=Station.StateText").read_value()
        ok, why = await station.call_method(f"{ns}:SelectRecipe", "widget")
        assert ok and not why
        for _ in range(200):
            if await c.get_node(f"ns={ns};s=Station.Product").read_value() == "widget":
                break
            await asyncio.sleep(0.01)
        assert await c.get_node(f"ns={ns};s=Station.ProductNumber").read_value() == 1


def test_bad_opcua_input_is_said_counted_and_the_station_stays_safe(tmp_path):
    hub, cfg, _ = make_hub(tmp_path)
    try:
        asyncio.run(_opcua_bad_input(cfg, hub))
        wait_for(lambda: hub.counts().get("node_id") == 1, 5, "the unknown node id counted")
        assert "Station.NoSuchThing" in [p for p in hub.problems() if p.kind == "node_id"][0].message
        assert hub.counts()["busy"] == 1 and hub.counts()["product"] == 1
    finally:
        hub.stop()


SUBSCRIBER = """
import asyncio, sys
from asyncua import Client
async def main():
    c = Client(sys.argv[1]); await c.connect()
    ns = await c.get_namespace_index("urn:inspect:line")
    sub = await c.create_subscription(50, None)
    await sub.subscribe_data_change(c.get_node(f"ns={ns};s=Station.Result.Sequence"))
    print("subscribed", flush=True)
    await asyncio.sleep(60)
asyncio.run(main())
"""


def test_a_client_gone_mid_subscription_is_counted_and_the_outputs_serve_on(tmp_path):
    hub, cfg, _ = make_hub(tmp_path)
    url = f"opc.tcp://127.0.0.1:{cfg.opcua_port}/inspect/"
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(SUBSCRIBER), url],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "subscribed"
        time.sleep(0.5)                               # the watcher sees the subscription
        proc.kill()                                   # gone without closing anything
        proc.wait(10)
        wait_for(lambda: hub.counts().get("disconnect") == 1, 10, "the drop counted")
        c = modbus(cfg)                               # and the station serves on
        c.write_coil(0, True, device_id=1)
        wait_for(lambda: hub.gate.armed, 5, "a trigger after the drop")
        c.close()
    finally:
        proc.kill()
        hub.stop()


def test_a_port_in_use_is_one_sentence_and_the_other_output_runs(tmp_path):
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    port = busy.getsockname()[1]
    cfg = OutputsConfig(opcua_port=free_port(), modbus_port=port)
    hub = LineOutputs(cfg, TriggerGate("st1"), build_outputs(cfg, "st1", tmp_path))
    try:
        hub.start()
        assert hub.wait_open(15)
        views = {v.name: v for v in hub.views()}
        assert not views["Modbus TCP"].running
        assert views["Modbus TCP"].error == (f"Modbus TCP: port {port} on 127.0.0.1 is in use by "
                                             "another program; choose another port in Settings > Line.")
        assert views["OPC UA"].running and hub.counts() == {"port": 1}
    finally:
        hub.stop()
        busy.close()


class NoFrames:
    """A camera that never delivers: every triggered part times out."""

    def start(self):
        pass

    def stop(self):
        pass

    def rate_hz(self):
        return 0.0

    def next_frame(self, timeout):
        time.sleep(min(timeout, 0.02))
        return None


def test_a_part_without_a_verdict_in_time_gets_the_safe_answer_and_a_log_row(tmp_path):
    from engine.log import InspectionLog
    save_checkpoint(EfficientAD(ModelConfig(image_size=64)), tmp_path / "m.pt",
                    {"threshold": 0.5, "model_id": "tiny"})
    lg = InspectionLog.open(tmp_path / "log")
    lg.start_writer()
    pipe = Pipeline(NoFrames(), "st1", device="cpu", log_submit=lg.submit)
    hub, cfg, _ = make_hub(tmp_path, timeout_ms=300, result_valid_ms=400)
    hub.attach(pipe)
    pipe.set_model(ModelSpec("widget", str(tmp_path / "m.pt")))
    pipe.start()
    c = modbus(cfg)
    try:
        wait_for(lambda: c.read_discrete_inputs(0, count=8, device_id=1).bits[DI_READY], 30, "Ready")
        c.write_registers(1, text_to_regs("LATE-1"), device_id=1)
        t0 = time.monotonic()
        c.write_coil(0, True, device_id=1)
        wait_for(lambda: c.read_input_registers(IR_SEQ, count=2, device_id=1).registers[1] == 1,
                 5, "the safe answer")
        elapsed = time.monotonic() - t0
        bits = c.read_discrete_inputs(0, count=8, device_id=1).bits
        assert bits[DI_FAIL] and bits[DI_VALID] and elapsed >= 0.3
        assert c.read_input_registers(IR_VERDICT, count=1, device_id=1).registers == [VERDICT_CODES["FAIL"]]
        wait_for(lambda: not c.read_discrete_inputs(0, count=8, device_id=1).bits[DI_VALID], 5,
                 "the end of the result-valid pulse")
        assert time.monotonic() - t0 >= 0.3 + 0.4 - 0.05      # the pulse's width
        assert hub.counts()["timeout"] == 1 and "LATE-1" in hub.problems()[-1].message
    finally:
        c.close()
        pipe.stop()
        pipe.join(10)
        hub.stop()
        lg.stop_writer(10)
    rows = list(lg.iter_rows())
    lg.close()
    assert [(r.part_id, r.verdict.value) for r in rows] == [("LATE-1", "FAIL")]
    assert "no verdict within 300 ms" in rows[0].reason
