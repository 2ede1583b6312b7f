"""Off localhost the OPC UA server takes only Basic256Sha256 SignAndEncrypt with the
station's user account: an unauthenticated client is refused (with or without security),
a wrong password is refused, the account with an encrypted channel gets in. Without an
account the server does not start off localhost, in one sentence."""
import asyncio
import socket

import pytest

from engine.line.trigger import TriggerGate
from engine.outputs import LineOutputs, OutputsConfig, build_outputs
from engine.outputs.security import make_certificate


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def secure_client(url, folder, user=None, password=None):
    from asyncua import Client, ua
    from asyncua.crypto.security_policies import SecurityPolicyBasic256Sha256
    cert, key = folder / "client.der", folder / "client.pem"
    if not cert.exists():
        make_certificate(cert, key, "test PLC", "urn:test:plc", ["localhost"])
    c = Client(url, timeout=5)
    c.application_uri = "urn:test:plc"
    await c.set_security(SecurityPolicyBasic256Sha256, str(cert), str(key),
                         mode=ua.MessageSecurityMode.SignAndEncrypt)
    if user:
        c.set_user(user)
        c.set_password(password)
    return c


async def attempts(url, folder):
    from asyncua import Client
    out = {}
    plain = Client(url, timeout=5)                       # no security, anonymous
    try:
        await plain.connect()
        out["plain"] = "connected"
        await plain.disconnect()
    except Exception as exc:                             # noqa: BLE001 - what the client says
        out["plain"] = type(exc).__name__
    for name, user, pw in (("anonymous", None, None), ("wrong", "plc", "guess"),
                           ("account", "plc", "s3cret")):
        c = await secure_client(url, folder, user, pw)
        try:
            await c.connect()
            ns = await c.get_namespace_index("urn:inspect:line")
            out[name] = await c.get_node(f"ns={ns};s=Station.State").read_value()
            await c.disconnect()
        except Exception as exc:                         # noqa: BLE001
            out[name] = type(exc).__name__
    return out


def test_off_localhost_an_unauthenticated_client_is_refused(tmp_path):
    port = free_port()
    cfg = OutputsConfig(host="0.0.0.0", opcua_port=port, modbus=False,
                        opcua_user="plc", opcua_password="s3cret")
    hub = LineOutputs(cfg, TriggerGate("st1"), build_outputs(cfg, "st1", tmp_path / "certs"))
    hub.start()
    try:
        assert hub.wait_open(30) and hub.views()[0].running, hub.views()
        out = asyncio.run(attempts(f"opc.tcp://127.0.0.1:{port}/inspect/", tmp_path))
    finally:
        hub.stop()
    assert out["plain"] != "connected"                   # no endpoint without security
    assert out["anonymous"] == "BadIdentityTokenRejected"
    assert out["wrong"] == "BadUserAccessDenied"
    assert out["account"] == "Ready"
    assert (tmp_path / "certs" / "opcua_server_cert.der").is_file()     # made here, kept


def test_off_localhost_without_an_account_the_server_says_so(tmp_path):
    cfg = OutputsConfig(host="0.0.0.0", opcua_port=free_port(), modbus=False)
    hub = LineOutputs(cfg, TriggerGate("st1"), build_outputs(cfg, "st1", tmp_path))
    hub.start()
    try:
        assert hub.wait_open(15)
        v = hub.views()[0]
        assert not v.running and v.error.startswith("OPC UA off localhost needs a user account")
        assert hub.counts() == {"port": 1}
    finally:
        hub.stop()
