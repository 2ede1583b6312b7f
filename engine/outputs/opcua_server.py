"""OPC UA server (asyncua) for the station: one object with the last result, counters,
state and product, and the methods a PLC calls. Names follow OPC 40100 (Machine Vision)
where it has a word for the thing (State Ready/Busy/Error, StartSingleJob, SelectRecipe,
ResultReady); node ids are strings in the namespace NAMESPACE (index in the server's
namespace array, 2 on a fresh server), listed in the README:

    ns=2;s=Station                      object (browse name: the station's name)
    ns=2;s=Station.State                String  Ready | Busy | Error
    ns=2;s=Station.StateText            String  the sentence behind Error
    ns=2;s=Station.Ready / .Busy / .Error         Boolean
    ns=2;s=Station.ResultReady          Boolean the result-valid pulse
    ns=2;s=Station.Result.Sequence      UInt32  +1 per result, written last
    ns=2;s=Station.Result.PartId        String
    ns=2;s=Station.Result.Verdict       String  PASS | FAIL | REVIEW
    ns=2;s=Station.Result.Score / .Threshold     Double
    ns=2;s=Station.Result.Timestamp     DateTime when the part's frame arrived
    ns=2;s=Station.Result.ModelId / .Product / .Reason   String
    ns=2;s=Station.Counters.Parts / .Fails / .Reviews / .Problems   UInt32
    ns=2;s=Station.Product              String  writable: the PLC switches product
    ns=2;s=Station.ProductNumber        UInt16  writable: the same by number
    ns=2;s=Station.StartSingleJob(PartId String) -> (Accepted Boolean, PartId String, Message String)
    ns=2;s=Station.SelectRecipe(Product String) -> (Accepted Boolean, Message String)

Security: on localhost anonymous clients without security are served. Off localhost the
only endpoint is Basic256Sha256 SignAndEncrypt, anonymous logins are refused and the
configured user account is required (engine/outputs/security.py makes the certificate).
"""
from __future__ import annotations

import asyncio
import datetime as dt
import logging
from pathlib import Path

from engine.errors import InspectError
from engine.outputs.base import Link, ResultOutput
from engine.outputs.netcheck import check_bind
from engine.outputs.values import LineResult, LineState, OutputsConfig

NAMESPACE = "urn:inspect:line"
PATH = "/inspect/"
log = logging.getLogger("inspect.outputs")

_VARS = (  # (node id suffix, browse name, initial value, variant type name)
    ("State", "State", "Ready", "String"), ("StateText", "StateText", "", "String"),
    ("Ready", "Ready", True, "Boolean"), ("Busy", "Busy", False, "Boolean"),
    ("Error", "Error", False, "Boolean"), ("ResultReady", "ResultReady", False, "Boolean"),
    ("Result.Sequence", "Sequence", 0, "UInt32"), ("Result.PartId", "PartId", "", "String"),
    ("Result.Verdict", "Verdict", "", "String"), ("Result.Score", "Score", 0.0, "Double"),
    ("Result.Threshold", "Threshold", 0.0, "Double"),
    ("Result.Timestamp", "Timestamp", None, "DateTime"),
    ("Result.ModelId", "ModelId", "", "String"), ("Result.Product", "Product", "", "String"),
    ("Result.Reason", "Reason", "", "String"),
    ("Counters.Parts", "Parts", 0, "UInt32"), ("Counters.Fails", "Fails", 0, "UInt32"),
    ("Counters.Reviews", "Reviews", 0, "UInt32"), ("Counters.Problems", "Problems", 0, "UInt32"),
    ("Product", "Product", "", "String"), ("ProductNumber", "ProductNumber", 0, "UInt16"),
)
_WRITABLE = ("Product", "ProductNumber")


class _Users:
    """The one account of the station (asyncua UserManager): anyone else is refused."""

    def __init__(self, user: str, password: str):
        self.user, self.password = user, password

    def get_user(self, iserver, username=None, password=None, certificate=None):
        from asyncua.crypto.permission_rules import User, UserRole
        import hmac
        if (username and hmac.compare_digest(str(username).encode(), self.user.encode())
                and hmac.compare_digest(str(password or "").encode(), self.password.encode())):
            return User(role=UserRole.User, name=username)
        return None


class OpcUaOutput(ResultOutput):
    name = "OPC UA"

    def __init__(self, config: OutputsConfig, station: str, cert_dir: Path | str | None = None):
        super().__init__()
        self.config = config
        self.station = station or "Station"
        self.cert_dir = Path(cert_dir) if cert_dir else None
        self.server = None
        self.link: Link | None = None
        self.ns = 2
        self.nodes: dict = {}
        self._clients = 0
        self._subs = 0
        self._watch: asyncio.Task | None = None

    @property
    def address(self) -> str:
        host = f"[{self.config.host}]" if ":" in self.config.host else self.config.host
        return f"opc.tcp://{host}:{self.config.opcua_port}{PATH}"

    async def open(self, link: Link) -> None:
        from asyncua import Server
        self.link = link
        check_bind(self.config.host, self.config.opcua_port, "OPC UA")
        secure = not self.config.local
        if secure and not (self.config.opcua_user and self.config.opcua_password):
            raise InspectError("OPC UA off localhost needs a user account: set the OPC UA user "
                               "and password in Settings > Line (or bind to 127.0.0.1).")
        server = Server(user_manager=_Users(self.config.opcua_user, self.config.opcua_password)
                        if secure else None)
        await server.init()
        server.set_endpoint(self.address)
        server.set_server_name(f"Inspection station {self.station}")
        if secure:
            await self._secure(server)
        else:
            from asyncua import ua
            server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
            server.set_identity_tokens([ua.AnonymousIdentityToken])
        self.ns = await server.register_namespace(NAMESPACE)
        await self._build(server)
        self._callbacks(server)
        try:
            await server.start()
        except OSError as exc:
            raise InspectError(f"OPC UA could not listen on {self.address} ({exc}).") from exc
        self.server = server
        self._watch = asyncio.ensure_future(self._watch_clients())
        self.remember(address=self.address, security="Basic256Sha256 SignAndEncrypt, user login"
                      if secure else "none (localhost only)")

    async def _secure(self, server) -> None:
        from asyncua import ua
        from engine.outputs.security import server_certificate
        if self.cert_dir is None:
            raise InspectError("OPC UA off localhost needs a folder for its certificate.")
        cert, key = server_certificate(self.cert_dir, self.config.host, "urn:inspect:line:server")
        await server.set_application_uri("urn:inspect:line:server")
        await server.load_certificate(str(cert))
        await server.load_private_key(str(key))
        server.set_security_policy([ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt])
        server.set_identity_tokens([ua.UserNameIdentityToken])

    async def _build(self, server) -> None:
        from asyncua import ua
        ns = self.ns
        nid = lambda s: ua.NodeId(f"Station{'.' + s if s else ''}", ns)  # noqa: E731
        station = await server.nodes.objects.add_object(nid(""), ua.QualifiedName(self.station, ns))
        groups = {"Result": await station.add_object(nid("Result"), ua.QualifiedName("Result", ns)),
                  "Counters": await station.add_object(nid("Counters"), ua.QualifiedName("Counters", ns))}
        for suffix, bname, value, vtype in _VARS:
            parent = groups.get(suffix.split(".")[0], station) if "." in suffix else station
            node = await parent.add_variable(nid(suffix), ua.QualifiedName(bname, ns), value,
                                             varianttype=getattr(ua.VariantType, vtype))
            if suffix in _WRITABLE:
                await node.set_writable()
            self.nodes[suffix] = node
        S, B = ua.VariantType.String, ua.VariantType.Boolean
        await station.add_method(nid("StartSingleJob"), ua.QualifiedName("StartSingleJob", ns),
                                 self._start_job, [S], [B, S, S])
        await station.add_method(nid("SelectRecipe"), ua.QualifiedName("SelectRecipe", ns),
                                 self._select_recipe, [S], [B, S])

    def _callbacks(self, server) -> None:
        from asyncua.common.callback import CallbackType
        server.subscribe_server_callback(CallbackType.PostWrite, self._post_write)
        server.subscribe_server_callback(CallbackType.PostRead, self._post_read)

    async def close(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
        if self.server is not None:
            await self.server.stop()
            self.server = None

    # ---- station -> PLC ------------------------------------------------------------------
    async def _write(self, suffix: str, value, vtype: str | None = None) -> None:
        from asyncua import ua
        vt = getattr(ua.VariantType, vtype or dict((v[0], v[3]) for v in _VARS)[suffix])
        await self.server.write_attribute_value(
            self.nodes[suffix].nodeid, ua.DataValue(ua.Variant(value, vt)))

    async def write_result(self, r: LineResult) -> None:
        ts = dt.datetime.fromtimestamp(r.wall_time, tz=dt.timezone.utc)
        for suffix, value in (("Result.PartId", r.part_id), ("Result.Verdict", r.decision),
                              ("Result.Score", r.score), ("Result.Threshold", r.threshold),
                              ("Result.Timestamp", ts), ("Result.ModelId", r.model_id),
                              ("Result.Product", r.product), ("Result.Reason", r.reason),
                              ("Counters.Parts", r.parts), ("Counters.Fails", r.fails),
                              ("Counters.Reviews", r.reviews),
                              ("Counters.Problems", sum(self.link.counts().values()))):
            await self._write(suffix, value)
        await self._write("Result.Sequence", r.seq)     # last: a new number = a complete result
        self.remember(sequence=r.seq, part_id=r.part_id, verdict=r.decision,
                      score=f"{r.score:.4f}", parts=r.parts, fails=r.fails, reviews=r.reviews)

    async def write_state(self, s: LineState) -> None:
        for suffix, value in (("State", s.state.capitalize()), ("StateText", s.text),
                              ("Ready", s.state == "ready"), ("Busy", s.state == "busy"),
                              ("Error", s.state == "error"), ("Product", s.product),
                              ("ProductNumber", s.product_number)):
            await self._write(suffix, value)
        self.remember(state=s.state.capitalize(), state_text=s.text, product=s.product,
                      product_number=s.product_number)

    async def write_valid(self, on: bool) -> None:
        await self._write("ResultReady", bool(on))
        self.remember(result_ready=bool(on))

    # ---- PLC -> station ------------------------------------------------------------------
    async def _start_job(self, parent, part_id):
        from asyncua import ua
        pid, why = self.link.request_trigger(part_id.Value or None, "OPC UA")
        return [ua.Variant(not why, ua.VariantType.Boolean), ua.Variant(pid, ua.VariantType.String),
                ua.Variant(why, ua.VariantType.String)]

    async def _select_recipe(self, parent, product):
        from asyncua import ua
        why = self.link.request_product(product.Value or "", None, "OPC UA")
        return [ua.Variant(not why, ua.VariantType.Boolean), ua.Variant(why, ua.VariantType.String)]

    async def _post_write(self, event, dispatcher) -> None:
        """A client wrote Product or ProductNumber: switch, or say why not and write back
        the product the station still has."""
        if not event.is_external:
            return
        for wv, status in zip(event.request_params.NodesToWrite, event.response_params or []):
            if not status.is_good():
                self._bad_node(wv.NodeId, status, "write")
                continue
            which = self._which(wv.NodeId)
            if which not in _WRITABLE:
                continue
            value = wv.Value.Value.Value if wv.Value and wv.Value.Value else None
            if which == "Product":
                why = self.link.request_product(str(value or ""), None, "OPC UA")
            else:
                why = self.link.request_product(None, int(value or 0), "OPC UA")
            if why:                           # the variable shows what the station has
                state = self.link.state
                await self._write("Product", state.product)
                await self._write("ProductNumber", state.product_number)

    async def _post_read(self, event, dispatcher) -> None:
        if not event.is_external:
            return
        for rv, dv in zip(event.request_params.NodesToRead, event.response_params or []):
            if dv.StatusCode is not None and not dv.StatusCode.is_good():
                self._bad_node(rv.NodeId, dv.StatusCode, "read")

    def _bad_node(self, node_id, status, what: str) -> None:
        from asyncua import ua
        if status.value in (ua.StatusCodes.BadNodeIdUnknown, ua.StatusCodes.BadNodeIdInvalid):
            self.link.problem("node_id", f"An OPC UA client tried to {what} node {node_id.to_string()}, "
                                         "which the station does not have (the node ids are in "
                                         "the README).")

    def _which(self, node_id) -> str | None:
        for suffix, node in self.nodes.items():
            if node.nodeid == node_id:
                return suffix
        return None

    async def _watch_clients(self) -> None:
        """A client whose connection dropped while it had subscriptions: said and counted
        (the server keeps serving; the session ends after its timeout)."""
        while True:
            await asyncio.sleep(0.25)
            bserver = getattr(self.server, "bserver", None)
            if bserver is None:
                continue
            clients = len(getattr(bserver, "clients", []))
            subs = len(self.server.iserver.subscription_service.subscriptions)
            if clients < self._clients and subs >= self._subs and self._subs > 0:
                self.link.problem("disconnect", f"An OPC UA client disconnected without ending its "
                                                f"subscription ({self._clients - clients} connection(s) "
                                                "dropped); the station serves on.")
            self._clients, self._subs = clients, subs
