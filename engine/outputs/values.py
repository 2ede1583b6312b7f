"""The frozen values of the station's outputs: what is configured, what the PLC sees,
what went wrong. They cross threads (scoring thread -> outputs' loop -> GUI)."""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

DECISIONS = ("PASS", "FAIL", "REVIEW")
STATES = ("ready", "busy", "error")
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


def is_local(host: str) -> bool:
    """Only this PC can reach a server bound to host."""
    if host in LOCAL_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class OutputsConfig:
    """The station's outputs, from Settings (section `line`) or the command line."""
    host: str = "127.0.0.1"          # the interface every server binds to (localhost by default)
    opcua: bool = True
    opcua_port: int = 4840
    modbus: bool = True
    modbus_port: int = 5020          # 502 is the Modbus port, but needs root on Linux
    trigger: str = "free"            # "free": every frame is a part; "plc": on the PLC's trigger
    result_valid_ms: int = 200       # width of the result-valid pulse
    timeout_ms: int = 2000           # a triggered part without a verdict by then: timeout_verdict
    timeout_verdict: str = "FAIL"    # the safe answer on timeout ("FAIL" or "REVIEW")
    opcua_user: str = ""             # off localhost: the account a client must log in with
    opcua_password: str = ""
    cert_dir: str = ""               # the OPC UA server's certificate ("" = <data folder>/certificates)
    product_numbers: tuple[str, ...] = ()   # product number n (PLC) = product_numbers[n-1]
    rest: bool = False
    rest_port: int = 8000
    rest_token: str = ""             # required when the REST API is bound off localhost
    camera_line: str = ""            # a GenICam camera output line driven on FAIL ("" = none), e.g. Line1
    camera_user_output: str = "UserOutput0"
    mqtt_url: str = ""               # a broker to publish to ("" = none), e.g. mqtt://broker:1883
    mqtt_topic: str = ""             # "" = inspect/STATION
    mqtt_user: str = ""
    mqtt_password: str = ""

    @property
    def local(self) -> bool:
        return is_local(self.host)


@dataclass(frozen=True)
class LineResult:
    """One part's answer as the PLC sees it."""
    seq: int                         # 1, 2, ... per run: a new result is a new sequence number
    part_id: str
    decision: str                    # PASS | FAIL | REVIEW
    score: float
    threshold: float
    model_id: str
    product: str
    wall_time: float                 # UTC epoch seconds when the frame arrived
    parts: int
    fails: int
    reviews: int
    reason: str = ""                 # why it is not the plain comparison (timeout, not judging)
    t_handed: float = 0.0            # time.perf_counter() when the scoring thread handed it over


@dataclass(frozen=True)
class LineState:
    state: str                       # ready | busy | error
    text: str = ""                   # the sentence behind an error
    product: str = ""
    product_number: int = 0          # 0: the product has no number


@dataclass(frozen=True)
class LineProblem:
    """Bad input from the line or the network: one sentence, counted by kind."""
    kind: str       # port | address | node_id | register | disconnect | busy | product | timeout | part_id | late | output
    message: str
    count: int      # how many of this kind so far


@dataclass(frozen=True)
class OutputView:
    """One output as the Settings "Line" page shows it: what the PLC reads now."""
    name: str                          # "OPC UA" | "Modbus TCP" | "REST"
    address: str                       # e.g. opc.tcp://127.0.0.1:4840/inspect/
    running: bool
    error: str = ""
    values: tuple[tuple[str, str], ...] = field(default=())   # (what, last written value)
