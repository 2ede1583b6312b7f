"""Modbus TCP server (pymodbus) for the station: the register map of the README.

Addresses are the protocol's, from 0. Station -> PLC in discrete inputs (FC2) and input
registers (FC4), which a client cannot write; PLC -> station in coils (FC1/5/15) and holding
registers (FC3/6/16).

    coil 0               trigger: write 1 to judge the next part (the station sets it back
                         to 0 at once; accepted or refused, see discrete input 7)
    holding 0            product number: write n to switch to product n (reads the current)
    holding 1..32        part id for the next trigger, ASCII, 2 characters a register
                         (high byte first), NUL padded; all 0 = the station generates one
    discrete inputs 0..7 ready, busy, error, result valid, PASS, FAIL, REVIEW, last trigger refused
    input 0              status word: the discrete inputs 0..6 as bits 0..6
    input 1              verdict: 0 none, 1 PASS, 2 FAIL, 3 REVIEW
    input 2-3            result sequence number (uint32, high word first): +1 per result
    input 4-5, 6-7, 8-9  parts, fails, reviews (uint32, high word first)
    input 10, 11         score x 1000, threshold x 1000 (uint16, 65535 = above / infinite)
    input 12             product number now (0: the product has no number)
    input 13             problems counted (bad input from the line, uint16)
    input 20..51         part id of the result (ASCII as above)

Modbus TCP has no security of its own: the server binds only to the configured interface
(localhost by default).
"""
from __future__ import annotations

import asyncio
import math

from engine.errors import InspectError
from engine.outputs.base import Link, ResultOutput
from engine.outputs.netcheck import check_bind
from engine.outputs.values import LineResult, LineState, OutputsConfig

DI_READY, DI_BUSY, DI_ERROR, DI_VALID, DI_PASS, DI_FAIL, DI_REVIEW, DI_REFUSED = range(8)
IR_STATUS, IR_VERDICT, IR_SEQ, IR_PARTS, IR_FAILS, IR_REVIEWS = 0, 1, 2, 4, 6, 8
IR_SCORE, IR_THRESHOLD, IR_PRODUCT, IR_PROBLEMS, IR_PART_ID = 10, 11, 12, 13, 20
HR_PRODUCT, HR_PART_ID = 0, 1
PART_ID_REGS = 32
VERDICT_CODES = {"PASS": 1, "FAIL": 2, "REVIEW": 3}
_COIL_WRITES, _REG_WRITES = (5, 15), (6, 16)
_FC_NAMES = {1: "coils", 2: "discrete inputs", 3: "holding registers", 4: "input registers",
             5: "coil", 6: "holding register", 15: "coils", 16: "holding registers"}


def text_to_regs(text: str, n: int = PART_ID_REGS) -> list[int]:
    raw = text.encode("ascii", "replace")[: 2 * n].ljust(2 * n, b"\0")
    return [(raw[i] << 8) | raw[i + 1] for i in range(0, 2 * n, 2)]


def regs_to_text(regs) -> str:
    raw = b"".join(bytes(((r >> 8) & 0xFF, r & 0xFF)) for r in regs)
    return raw.split(b"\0", 1)[0].decode("ascii", "replace")


def u32(value: int) -> list[int]:
    value = max(0, int(value)) & 0xFFFFFFFF
    return [value >> 16, value & 0xFFFF]


def milli(value: float) -> int:
    if not math.isfinite(value):
        return 65535
    return max(0, min(65535, int(round(value * 1000))))


class ModbusOutput(ResultOutput):
    name = "Modbus TCP"

    def __init__(self, config: OutputsConfig):
        super().__init__()
        self.config = config
        self.server = None
        self.link: Link | None = None
        self._internal = False
        self._bits = [False] * 8
        self._last_request = None

    @property
    def address(self) -> str:
        return f"modbus-tcp://{self.config.host}:{self.config.modbus_port}"

    async def open(self, link: Link) -> None:
        from pymodbus.server import ModbusTcpServer
        from pymodbus.simulator import DataType, SimData, SimDevice
        self.link = link
        check_bind(self.config.host, self.config.modbus_port, "Modbus TCP")
        bits = lambda n: [SimData(0, count=n, values=False, datatype=DataType.BITS)]  # noqa: E731
        regs = lambda n: [SimData(0, count=n, values=0, datatype=DataType.REGISTERS)]  # noqa: E731
        device = SimDevice(id=0, simdata=(bits(16), bits(16), regs(1 + PART_ID_REGS),
                                          regs(IR_PART_ID + PART_ID_REGS)), action=self._action)
        self.server = ModbusTcpServer(device, address=(self.config.host, self.config.modbus_port),
                                      trace_pdu=self._trace_pdu)
        try:
            await self.server.serve_forever(background=True)
        except RuntimeError as exc:          # pymodbus: "Could not start listen"
            raise InspectError(f"Modbus TCP could not listen on {self.config.host}:"
                               f"{self.config.modbus_port} ({exc}).") from exc
        self.remember(address=self.address)

    async def close(self) -> None:
        if self.server is not None:
            await self.server.shutdown()
            self.server = None

    # ---- station -> PLC ------------------------------------------------------------------
    async def _set(self, fc: int, address: int, values: list) -> None:
        self._internal = True
        try:
            await self.server.async_setValues(0, fc, address, values)
        finally:
            self._internal = False

    async def _bits_out(self) -> None:
        await self._set(2, 0, list(self._bits))
        word = sum(1 << i for i, b in enumerate(self._bits[:7]) if b)
        await self._set(4, IR_STATUS, [word])

    async def write_result(self, r: LineResult) -> None:
        code = VERDICT_CODES.get(r.decision, 0)
        self._bits[DI_PASS:DI_REVIEW + 1] = [code == 1, code == 2, code == 3]
        await self._set(4, IR_PART_ID, text_to_regs(r.part_id))
        await self._set(4, IR_PARTS, u32(r.parts) + u32(r.fails) + u32(r.reviews)
                        + [milli(r.score), milli(r.threshold)])
        await self._set(4, IR_VERDICT, [code])
        await self._set(4, IR_SEQ, u32(r.seq))           # last: a new number = a complete result
        await self._bits_out()
        self.remember(sequence=r.seq, part_id=r.part_id, verdict=r.decision,
                      score_x1000=milli(r.score), parts=r.parts, fails=r.fails, reviews=r.reviews)

    async def write_state(self, s: LineState) -> None:
        self._bits[DI_READY:DI_ERROR + 1] = [s.state == "ready", s.state == "busy", s.state == "error"]
        await self._bits_out()
        await self._set(4, IR_PRODUCT, [s.product_number])
        await self._set(3, HR_PRODUCT, [s.product_number])
        self.remember(state=s.state, state_text=s.text, product=s.product,
                      product_number=s.product_number)

    async def write_valid(self, on: bool) -> None:
        self._bits[DI_VALID] = bool(on)
        await self._bits_out()
        self.remember(result_valid=int(bool(on)))

    # ---- PLC -> station ------------------------------------------------------------------
    async def _action(self, fc, start, address, count, registers, values):
        """Called by pymodbus for every access; a write of the PLC is acted on here."""
        if self._internal or values is None:
            return None
        from pymodbus.constants import ExcCodes
        if fc in _COIL_WRITES and address <= 0 < address + count:
            if values[0 - address]:
                await self._trigger()
                values[0 - address] = False          # the trigger coil reads 0 again at once
        elif fc in _REG_WRITES and address <= HR_PRODUCT < address + count:
            number = int(values[HR_PRODUCT - address])
            if self.link.request_product(None, number, "Modbus"):
                return ExcCodes.ILLEGAL_VALUE        # the PLC sees its write refused
        return None

    async def _trigger(self) -> None:
        regs = await self.server.async_getValues(0, 3, HR_PART_ID, PART_ID_REGS)
        part_id = regs_to_text(regs) or None
        pid, why = self.link.request_trigger(part_id, "Modbus")
        self._bits[DI_REFUSED] = bool(why)
        await self._bits_out()
        await self._set(4, IR_PROBLEMS, [min(65535, sum(self.link.counts().values()))])

    def _trace_pdu(self, sending: bool, pdu):
        """A request for an address outside the map is answered by pymodbus with an
        exception; here it is also said and counted."""
        if not sending:
            self._last_request = pdu
        elif getattr(pdu, "exception_code", 0) == 2 and self.link is not None:   # illegal address
            req = self._last_request
            fc = getattr(req, "function_code", 0)
            addr = getattr(req, "address", "?")
            n = getattr(req, "count", 1) or 1
            asyncio.get_running_loop().call_soon(
                self.link.problem, "register",
                f"A Modbus client asked for {_FC_NAMES.get(fc, f'function {fc}')} {addr}"
                f"{f'..{addr + n - 1}' if isinstance(addr, int) and n > 1 else ''}, which are "
                "not in the station's register map (see the README); it got an "
                "'illegal address' answer.")
        return pdu
