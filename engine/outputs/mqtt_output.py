"""MQTT (paho-mqtt) for MES systems and dashboards: the station publishes to a broker.

    TOPIC/result   JSON per part (QoS 1, not retained): seq, part_id, verdict, score,
                   threshold, model_id, product, time (UTC epoch s), parts, fails, reviews, reason
    TOPIC/state    JSON (retained): state, text, product, product_number; the broker sends
                   {"state": "offline"} there when the station is gone (last will)

TOPIC defaults to inspect/STATION. Publishing only (the PLC's trigger and product switch
stay on OPC UA / Modbus). paho runs its own network thread: publish() only queues, so the
outputs' loop never waits on the broker; a broker that is down is said once and counted,
and paho reconnects by itself.
"""
from __future__ import annotations

import json
import math
from urllib.parse import urlparse

from engine.errors import InspectError
from engine.outputs.base import Link, ResultOutput
from engine.outputs.values import LineResult, LineState


def parse_broker(url: str) -> tuple[str, int]:
    u = urlparse(url if "://" in url else f"mqtt://{url}")
    if u.scheme not in ("mqtt", "tcp") or not u.hostname:
        raise InspectError(f"MQTT broker {url!r} is not an address such as mqtt://host:1883.")
    try:
        port = u.port or 1883
    except ValueError:
        raise InspectError(f"MQTT broker {url!r} has a port that is not a number.") from None
    return u.hostname, port


class MqttOutput(ResultOutput):
    name = "MQTT"

    def __init__(self, url: str, topic: str, user: str = "", password: str = ""):
        super().__init__()
        self.url, self.topic = url, topic.rstrip("/")
        self.user, self.password = user, password
        self.client = None
        self.link: Link | None = None
        self.connected = False
        self._said = ""

    @property
    def address(self) -> str:
        return f"{self.url} topic {self.topic}/#"

    async def open(self, link: Link) -> None:
        import paho.mqtt.client as mqtt
        self.link = link
        host, port = parse_broker(self.url)
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="", clean_session=True)
        if self.user:
            c.username_pw_set(self.user, self.password)
        c.will_set(f"{self.topic}/state", json.dumps({"state": "offline"}), qos=1, retain=True)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_connect_fail = lambda client, userdata: self._down("the broker cannot be reached")
        c.reconnect_delay_set(1, 10)
        try:
            c.connect_async(host, port, keepalive=30)
        except (OSError, ValueError) as exc:
            raise InspectError(f"MQTT: cannot connect to {self.url} ({exc}).") from exc
        c.loop_start()                         # paho's network thread: connects, reconnects
        self.client = c
        self.remember(broker=self.url, topic=self.topic)

    async def close(self) -> None:
        c, self.client = self.client, None
        if c is not None:
            c.publish(f"{self.topic}/state", json.dumps({"state": "offline"}), qos=1, retain=True)
            c.disconnect()
            c.loop_stop()

    # ---- paho's thread --------------------------------------------------------------------
    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            self._down(f"the broker refused the connection ({reason_code})")
            return
        self.connected, self.error, self._said = True, "", ""
        self.remember(connected=True)

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        if self.client is not None:            # not our own close
            self._down(f"the connection to the broker dropped ({reason_code})")

    def _down(self, why: str) -> None:
        self.connected = False
        self.error = f"MQTT {self.url}: {why}; results are not published until it answers."
        self.remember(connected=False)
        if why != self._said and self.link is not None:
            self._said = why
            self.link.problem("broker", self.error)

    # ---- station -> broker (the outputs' loop; publish only queues) -----------------------
    def _publish(self, sub: str, payload: dict, retain: bool) -> None:
        if self.client is not None:
            self.client.publish(f"{self.topic}/{sub}", json.dumps(payload), qos=1, retain=retain)

    async def write_result(self, r: LineResult) -> None:
        score = r.score if math.isfinite(r.score) else None     # JSON has no infinity
        self._publish("result", {"seq": r.seq, "part_id": r.part_id, "verdict": r.decision,
                                 "score": score, "threshold": r.threshold, "model_id": r.model_id,
                                 "product": r.product, "time": r.wall_time, "parts": r.parts,
                                 "fails": r.fails, "reviews": r.reviews, "reason": r.reason},
                      retain=False)
        self.remember(sequence=r.seq, part_id=r.part_id, verdict=r.decision)

    async def write_state(self, s: LineState) -> None:
        self._publish("state", {"state": s.state, "text": s.text, "product": s.product,
                                "product_number": s.product_number}, retain=True)
        self.remember(state=s.state)

    async def write_valid(self, on: bool) -> None:
        pass                                   # a message is its own "result valid"
