"""`python main.py bench line [--parts 1000] [--json]`: how long from a verdict to the PLC.

The station's own outputs (engine/outputs LineOutputs: OPC UA server, Modbus TCP server on
their event-loop thread) on localhost; the "PLC" is two other processes with the real
libraries' clients: an asyncua client subscribed to Result.Sequence (publishing interval
--publish-ms, queue big enough to keep every change) and a pymodbus client reading the
input registers back to back. For each of --parts verdicts, handed over as the scoring
thread hands them (LineOutputs.on_live), the bench takes the time from the hand-over to
the moment each client sees that part's sequence number (CLOCK_MONOTONIC, the same clock
in every process of the PC) and reports the median and the 99th percentile.
"""
from __future__ import annotations

import argparse
import json
import socket
import statistics
import subprocess
import sys
import textwrap
import time

import numpy as np

from engine.errors import InspectError, run_command

# Each client prints "ready", then "SEQ T" per sequence number it sees, until stdin closes.
_OPCUA_CLIENT = """
import asyncio, logging, sys, time
from asyncua import Client
logging.basicConfig(level=logging.ERROR)
class H:
    def datachange_notification(self, node, val, data):
        print(val, time.monotonic(), flush=True)
async def main():
    async with Client(sys.argv[1]) as c:
        ns = await c.get_namespace_index("urn:inspect:line")
        sub = await c.create_subscription(float(sys.argv[2]), H())
        await sub.subscribe_data_change(c.get_node(f"ns={ns};s=Station.Result.Sequence"),
                                        queuesize=10000)
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
asyncio.run(main())
"""
_MODBUS_CLIENT = """
import sys, threading, time
from pymodbus.client import ModbusTcpClient
c = ModbusTcpClient("127.0.0.1", port=int(sys.argv[1])); c.connect()
done = threading.Event()
threading.Thread(target=lambda: (sys.stdin.read(), done.set()), daemon=True).start()
print("ready", flush=True)
last = None
while not done.is_set():
    r = c.read_input_registers(2, count=2, device_id=1).registers
    seq = r[0] << 16 | r[1]
    if seq != last:
        print(seq, time.monotonic(), flush=True)
        last = seq
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _client(code: str, *args: str) -> subprocess.Popen:
    p = subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), *args], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True)
    if p.stdout.readline().strip() != "ready":
        p.kill()
        raise InspectError("a bench client could not connect to the station's outputs")
    return p


def _seen(p: subprocess.Popen) -> dict[int, float]:
    out, _ = p.communicate("", timeout=60)       # stdin closes: the client ends
    seen = {}
    for line in out.split("\n"):
        parts = line.split()
        if len(parts) == 2:
            seen.setdefault(int(parts[0]), float(parts[1]))
    return seen


def _live(i: int):
    """One verdict as the scoring thread hands it over (a real LiveResult)."""
    from engine.line.values import LiveResult
    from engine.types import Decision, Frame, Verdict
    frame = Frame(i, time.monotonic(), time.time(), "bench", np.zeros((2, 2, 3), np.uint8),
                  part_id=f"bench-{i}")
    d = Decision.FAIL if i % 10 == 0 else Decision.PASS
    v = Verdict(i, 0.7 if d == Decision.FAIL else 0.2, d, 0.5, part_id=f"bench-{i}")
    return LiveResult(frame, v, frame.rgb, "bench", 0.0, i + 1, 0, 0, True)


def _stats(handed: dict[int, float], seen: dict[int, float]) -> dict:
    lat = [1000.0 * (seen[s] - t) for s, t in handed.items() if s in seen]
    if not lat:
        return {"seen": 0}
    q = np.percentile(lat, [50, 99])
    return {"seen": len(lat), "missed": len(handed) - len(lat), "median_ms": float(q[0]),
            "p99_ms": float(q[1]), "max_ms": max(lat), "mean_ms": statistics.fmean(lat)}


def run(a: argparse.Namespace) -> dict:
    from engine.line.trigger import TriggerGate
    from engine.outputs import LineOutputs, OutputsConfig, build_outputs
    cfg = OutputsConfig(opcua_port=_free_port(), modbus_port=_free_port())
    hub = LineOutputs(cfg, TriggerGate("bench"), build_outputs(cfg, "bench", None))
    hub.start()
    try:
        if not hub.wait_open(30) or not all(v.running for v in hub.views()):
            raise InspectError("the outputs did not start: " + "; ".join(v.error for v in hub.views()))
        ua = _client(_OPCUA_CLIENT, f"opc.tcp://127.0.0.1:{cfg.opcua_port}/inspect/", str(a.publish_ms))
        mb = _client(_MODBUS_CLIENT, str(cfg.modbus_port))
        handed = {}
        next_t = time.monotonic()
        for i in range(a.parts):
            next_t += a.interval_ms / 1000.0
            time.sleep(max(0.0, next_t - time.monotonic()))
            handed[i + 1] = time.monotonic()
            hub.on_live(_live(i))
        time.sleep(0.5)                                  # the last notifications
        seen_ua, seen_mb = _seen(ua), _seen(mb)
    finally:
        hub.stop()
    return {"parts": a.parts, "interval_ms": a.interval_ms, "opcua_publish_ms": a.publish_ms,
            "opcua": _stats(handed, seen_ua), "modbus": _stats(handed, seen_mb)}


def _bench(a: argparse.Namespace) -> int:
    r = run(a)
    if a.json:
        print(json.dumps(r))
        return 0
    print(f"{r['parts']} verdicts, one every {a.interval_ms} ms; OPC UA publishing interval "
          f"{a.publish_ms} ms; clients in their own processes on this PC")
    for name, key in (("OPC UA subscription", "opcua"), ("Modbus TCP read", "modbus")):
        s = r[key]
        if not s.get("seen"):
            print(f"{name:>20}: nothing seen")
            continue
        print(f"{name:>20}: median {s['median_ms']:.2f} ms, p99 {s['p99_ms']:.2f} ms, "
              f"max {s['max_ms']:.2f} ms ({s['seen']} seen, {s['missed']} missed)")
    return 0


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python main.py bench line", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--parts", type=int, default=1000)
    p.add_argument("--interval-ms", type=float, default=20.0, help="time between verdicts")
    p.add_argument("--publish-ms", type=float, default=10.0,
                   help="the OPC UA client's requested publishing interval")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    return run_command(_bench, p.parse_args(argv))
