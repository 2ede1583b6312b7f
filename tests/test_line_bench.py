"""`python main.py bench line`: every verdict handed over is seen by the OPC UA subscription
and by the Modbus reads, with a latency measured for each (a short run)."""
import argparse

from engine.bench import line


def test_bench_line_sees_every_verdict_at_both_clients():
    r = line.run(argparse.Namespace(parts=30, interval_ms=20.0, publish_ms=10.0))
    for key in ("opcua", "modbus"):
        s = r[key]
        assert s["seen"] == 30 and s["missed"] == 0, r
        assert 0 < s["median_ms"] <= s["p99_ms"] <= s["max_ms"], r
