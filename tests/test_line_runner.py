"""`python main.py line` drives the simulated line with a real asyncua client and a real
pymodbus client attached: every part the PLC triggers (by OPC UA method and by Modbus
coil, in turn) reaches both clients with its verdict and id, in order, and matches the
inspection log; SIGTERM stops the runner cleanly."""
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine.model import EfficientAD, ModelConfig, save_checkpoint
from engine.outputs.modbus_server import (DI_ERROR, DI_READY, IR_PART_ID, IR_SEQ, IR_VERDICT,
                                          PART_ID_REGS, VERDICT_CODES, regs_to_text, text_to_regs)

ROOT = Path(__file__).resolve().parent.parent
PARTS = 6


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def data_dir(tmp_path):
    save_checkpoint(EfficientAD(ModelConfig(image_size=64)), tmp_path / "tiny.pt",
                    {"threshold": 0.5, "model_id": "tiny"})
    (tmp_path / "settings.json").write_text(json.dumps({
        "schema_version": 0, "station": "st1", "device": "cpu", "current_product": "widget",
        "products": {"widget": {"model_file": str(tmp_path / "tiny.pt")}, "gear": {}}}))
    return tmp_path


def start_runner(data_dir: Path, opc: int, mb: int, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, str(ROOT / "main.py"), "line", "--data-dir", str(data_dir),
         "--product", "widget", "--source", "sim:fps=20,width=96,height=64",
         "--opcua-port", str(opc), "--modbus-port", str(mb), *extra],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


async def connect_opcua(url: str, deadline: float):
    from asyncua import Client
    while True:
        client = Client(url, timeout=5)
        try:
            await client.connect()
            return client
        except (OSError, asyncio.TimeoutError):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.3)


class Seen:
    """The OPC UA client's subscription: every Result.Sequence change, with the part's
    fields read in the same notification batch."""

    def __init__(self):
        self.changes = []
        self.event = asyncio.Event()

    def datachange_notification(self, node, val, data):
        self.changes.append((str(node.nodeid.Identifier), val))
        self.event.set()


async def drive(opc: int, mb: int):
    from asyncua import ua
    from pymodbus.client import AsyncModbusTcpClient
    deadline = time.monotonic() + 90
    ua_client = await connect_opcua(f"opc.tcp://127.0.0.1:{opc}/inspect/", deadline)
    mb_client = AsyncModbusTcpClient("127.0.0.1", port=mb)
    assert await mb_client.connect()
    ns = await ua_client.get_namespace_index("urn:inspect:line")
    node = lambda s: ua_client.get_node(f"ns={ns};s=Station.{s}")  # noqa: E731
    seen = Seen()
    sub = await ua_client.create_subscription(20, seen)
    await sub.subscribe_data_change([node("Result.Sequence"), node("Result.PartId"),
                                     node("Result.Verdict")], queuesize=50)
    while await node("State").read_value() != "Ready":       # the model is loaded
        assert time.monotonic() < deadline, "the station never became Ready"
        await asyncio.sleep(0.2)
    via_ua, via_mb = [], []
    for i in range(PARTS):
        seq_before = await node("Result.Sequence").read_value()
        if i % 2 == 0:                               # the PLC triggers by the OPC UA method
            ok, pid, why = await ua_client.get_node(f"ns={ns};s=Station").call_method(
                f"{ns}:StartSingleJob", f"PLC-{i}")
            assert ok and pid == f"PLC-{i}", why
        else:                                        # ... and by the Modbus coil, id in registers
            pid = f"MB-{i}"
            await mb_client.write_registers(1, text_to_regs(pid), device_id=1)
            await mb_client.write_coil(0, True, device_id=1)
        while await node("Result.Sequence").read_value() == seq_before:
            assert time.monotonic() < deadline, f"no result for part {pid}"
            await asyncio.sleep(0.02)
        regs = (await mb_client.read_input_registers(0, count=IR_PART_ID + PART_ID_REGS,
                                                     device_id=1)).registers
        via_mb.append((regs[IR_SEQ] << 16 | regs[IR_SEQ + 1], regs_to_text(regs[IR_PART_ID:]),
                       regs[IR_VERDICT]))
        via_ua.append((await node("Result.Sequence").read_value(),
                       await node("Result.PartId").read_value(),
                       await node("Result.Verdict").read_value()))
        assert via_ua[-1][1] == pid
    bits = (await mb_client.read_discrete_inputs(0, count=8, device_id=1)).bits
    await asyncio.sleep(0.3)                         # the last notifications
    mb_client.close()
    await ua_client.disconnect()
    return via_ua, via_mb, seen.changes, bits


def read_log(data_dir: Path):
    from engine.log import InspectionLog
    lg = InspectionLog.open(data_dir / "log", read_only=True)
    try:
        rows = list(lg.iter_rows())
    finally:
        lg.close()
    return sorted(rows, key=lambda r: (r.t_us, r.id))


def test_every_triggered_part_reaches_opcua_and_modbus_in_order_and_matches_the_log(data_dir):
    opc, mb = free_port(), free_port()
    proc = start_runner(data_dir, opc, mb, "--trigger", "plc", "--timeout-ms", "20000")
    try:
        via_ua, via_mb, changes, bits = asyncio.run(drive(opc, mb))
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    assert "stopped:" in out and "problems 0" in out.splitlines()[-2], out
    ids = [f"PLC-{i}" if i % 2 == 0 else f"MB-{i}" for i in range(PARTS)]
    assert [u[1] for u in via_ua] == ids
    assert [u[0] for u in via_ua] == list(range(1, PARTS + 1))      # one result each, in order
    assert [(m[0], m[1]) for m in via_mb] == [(u[0], u[1]) for u in via_ua]
    assert [m[2] for m in via_mb] == [VERDICT_CODES[u[2]] for u in via_ua]
    # the subscription saw every part id, in order
    assert [v for n, v in changes if n.endswith("PartId") and v] == ids
    assert bits[DI_READY] and not bits[DI_ERROR]
    rows = read_log(data_dir)
    assert [(r.part_id, r.verdict.value) for r in rows] == [(u[1], u[2]) for u in via_ua]


async def watch_free_run(opc: int, mb: int, parts: int):
    """Free run: the clients only watch. OPC UA: a subscription keeping every change;
    Modbus: back-to-back reads, a new sequence number = a new part."""
    from pymodbus.client import AsyncModbusTcpClient
    deadline = time.monotonic() + 90
    ua_client = await connect_opcua(f"opc.tcp://127.0.0.1:{opc}/inspect/", deadline)
    mb_client = AsyncModbusTcpClient("127.0.0.1", port=mb)
    assert await mb_client.connect()
    ns = await ua_client.get_namespace_index("urn:inspect:line")
    seen = Seen()
    sub = await ua_client.create_subscription(20, seen)
    await sub.subscribe_data_change([ua_client.get_node(f"ns={ns};s=Station.Result.PartId")],
                                    queuesize=1000)
    via_mb, last = [], None
    while len(via_mb) < parts:
        assert time.monotonic() < deadline, f"only {len(via_mb)} parts seen"
        regs = (await mb_client.read_input_registers(0, count=IR_PART_ID + PART_ID_REGS,
                                                     device_id=1)).registers
        seq = regs[IR_SEQ] << 16 | regs[IR_SEQ + 1]
        if seq != last and seq:
            via_mb.append((seq, regs_to_text(regs[IR_PART_ID:]), regs[IR_VERDICT]))
            last = seq
        await asyncio.sleep(0.002)
    await asyncio.sleep(0.3)
    mb_client.close()
    await ua_client.disconnect()
    return via_mb, [v for _, v in seen.changes if v]


def test_free_run_every_part_reaches_both_clients_in_order_and_matches_the_log(data_dir):
    opc, mb = free_port(), free_port()
    proc = start_runner(data_dir, opc, mb)
    try:
        via_mb, via_ua = asyncio.run(watch_free_run(opc, mb, PARTS))
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    seqs = [m[0] for m in via_mb]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), seqs      # none skipped
    rows = read_log(data_dir)
    ids = [r.part_id for r in rows]
    first = ids.index(via_mb[0][1])
    window = rows[first:first + len(via_mb)]
    assert [(m[1], m[2]) for m in via_mb] == [(r.part_id, VERDICT_CODES[r.verdict.value]) for r in window]
    # the subscription saw the same parts in the same order (it may have seen a few more)
    start = via_ua.index(via_mb[0][1])
    assert via_ua[start:start + len(via_mb)] == [m[1] for m in via_mb]
    assert all(r.part_id and r.part_id.startswith("st1-") for r in rows)
