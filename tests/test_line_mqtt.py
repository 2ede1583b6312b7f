"""MQTT against a real mosquitto broker (Debian's) and a real paho subscriber: every result
is published in order with its part id, the state is retained for a late subscriber, and
a broker that goes away is said once and counted while the line runs on."""
import json
import os
import shutil
import socket
import subprocess
import time

import numpy as np
import pytest

from engine.line.trigger import TriggerGate
from engine.line.values import LiveResult
from engine.outputs import LineOutputs, OutputsConfig, build_outputs
from engine.types import Decision, Frame, Verdict

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
pytestmark = pytest.mark.skipif(not os.path.exists(MOSQUITTO),
                                reason="no mosquitto broker (apt-get install mosquitto)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(cond, timeout_s, what):
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def broker(tmp_path, port):
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
    p = subprocess.Popen([MOSQUITTO, "-c", str(conf)], stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    wait_for(lambda: socket.socket().connect_ex(("127.0.0.1", port)) == 0, 10, "the broker")
    return p


def subscriber(port, topic):
    import paho.mqtt.client as mqtt
    got = []
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    c.on_message = lambda client, userdata, msg: got.append((msg.topic, json.loads(msg.payload), msg.retain))
    c.on_connect = lambda client, userdata, flags, rc, props: client.subscribe(topic, qos=1)
    c.connect("127.0.0.1", port)
    c.loop_start()
    return c, got


def live(i, decision):
    f = Frame(i, time.monotonic(), time.time(), "cam", np.zeros((2, 2, 3), np.uint8), part_id=f"P{i}")
    v = Verdict(i, 0.9 if decision == Decision.FAIL else 0.1, decision, 0.5, part_id=f"P{i}")
    return LiveResult(f, v, f.rgb, "widget", 0.0, i + 1, int(decision == Decision.FAIL), 0, True)


def test_results_reach_the_broker_in_order_and_a_lost_broker_is_counted(tmp_path):
    port = free_port()
    proc = broker(tmp_path, port)
    sub, got = subscriber(port, "inspect/st1/#")
    cfg = OutputsConfig(opcua=False, modbus=False, mqtt_url=f"mqtt://127.0.0.1:{port}")
    hub = LineOutputs(cfg, TriggerGate("st1"), build_outputs(cfg, "st1", tmp_path))
    hub.start()
    try:
        assert hub.wait_open(10)
        out = hub.outputs[0]
        wait_for(lambda: out.connected, 10, "the station connected")
        hub.set_product("widget")
        decisions = [Decision.PASS, Decision.FAIL, Decision.PASS, Decision.REVIEW, Decision.PASS]
        for i, d in enumerate(decisions):
            hub.on_live(live(i, d))
        results = lambda: [m for t, m, _ in got if t == "inspect/st1/result"]   # noqa: E731
        wait_for(lambda: len(results()) == len(decisions), 10, "every result")
        assert [(m["seq"], m["part_id"], m["verdict"]) for m in results()] == [
            (i + 1, f"P{i}", d.value) for i, d in enumerate(decisions)]
        # a late subscriber gets the station's state at once (retained)
        late, late_got = subscriber(port, "inspect/st1/state")
        wait_for(lambda: late_got, 10, "the retained state")
        assert late_got[-1][1]["product"] == "widget" and late_got[-1][2] is True
        late.loop_stop()
        late.disconnect()
        proc.terminate()                               # the broker goes away
        proc.wait(10)
        wait_for(lambda: hub.counts().get("broker") == 1, 15, "the lost broker counted")
        assert "results are not published until it answers" in hub.problems()[-1].message
        hub.on_live(live(9, Decision.PASS))            # the line runs on
        wait_for(lambda: hub.last is not None and hub.last.part_id == "P9", 5, "the next part")
    finally:
        hub.stop()
        sub.loop_stop()
        proc.kill()


def test_a_malformed_broker_address_is_one_sentence(tmp_path):
    cfg = OutputsConfig(opcua=False, modbus=False, mqtt_url="http://broker")
    hub = LineOutputs(cfg, TriggerGate("st1"), build_outputs(cfg, "st1", tmp_path))
    hub.start()
    try:
        assert hub.wait_open(10)
        assert hub.views()[0].error == ("MQTT broker 'http://broker' is not an address such as "
                                        "mqtt://host:1883.")
    finally:
        hub.stop()
