"""A Videojet 1000-line CIJ printer speaking WSI, over loopback TCP or a pseudo-terminal (protocols.md §1.1, §7).

It parses commands with the driver's own framer (`WsiRequestFramer`), answers with its encoders and the
driver's status encoding (`ErrorStatus`), and drives a single-shot `PrinterEngine`: each ``U`` sets one
user field, and once every field of the current message has a new value the message holds a fresh record;
a product detect prints the message as it is (again, when nothing new came). What the real printer does
with a frame whose checksum is wrong or missing is not public: this one answers NAK (ASSUMED).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Final

from drivers.framing.base import Garbage
from drivers.framing.wsi import (
    BAD_CHECKSUM,
    DEFAULT_MAX_LENGTH,
    MISSING_CHECKSUM,
    Request,
    WsiRequestFramer,
    checksum,
    encode_ack,
    encode_nak,
    encode_reply,
)
from drivers.printer.base import FaultReason, PrinterState
from drivers.printer.wsi import (
    ALARM_ACTIVE,
    ALARM_AMBER,
    ALARM_GREEN,
    ALARM_RED,
    FAULT_BITS,
    ErrorStatus,
    FaultBit,
    WsiPrinter,
)
from simulators.base import LOOPBACK
from simulators.printer import PrinterEngine, PrinterSimulator, ReplyFault

if TYPE_CHECKING:
    from collections.abc import Callable

    from simulators.base import SimConnection, SimTransport, Sleep

DEFAULT_PART_NUMBER: Final = "WSI-SIM 1.0"

_BIT_BY_CODE: Final = {bit.code: bit for bit in FAULT_BITS}
SIM_FAULT_BITS: Final[dict[FaultReason, FaultBit]] = {
    FaultReason.INK_OUT: _BIT_BY_CODE["INK_CORE_EMPTY"],
    FaultReason.HEAD_FAULT: _BIT_BY_CODE["CHARGE_ERROR"],
    FaultReason.OTHER: _BIT_BY_CODE["PUMP_FAULT"],
}
"""The bit the simulator sets for an engine fault; faults a CIJ printer has no bit for show as red only."""

ACCEPTED_ONLY: Final = frozenset("CTPLBZ")
"""Commands taken (ACK) without effect on the simulated device: message text, logos, parameters, clock."""


class WsiSim(PrinterSimulator):
    """A WSI printer: M, U, D, O, K, E, Q, G, R, H, acknowledged by checksum; NAK for what it refuses."""

    def __init__(
        self,
        engine: PrinterEngine | None = None,
        *,
        require_checksum: bool = False,
        part_number: str = DEFAULT_PART_NUMBER,
        transport: SimTransport = "tcp",
        host: str = LOOPBACK,
        port: int = 0,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        engine = engine if engine is not None else PrinterEngine(depth=1, single_shot=True)
        if not engine.single_shot:
            raise ValueError("a WSI printer holds one message: the engine must be single_shot")
        if engine.job is None and engine.jobs:
            engine.select(next(iter(engine.jobs)))  # a printer always has a current message
        super().__init__(engine, transport=transport, host=host, port=port, sleep=sleep)
        self.require_checksum: Final = require_checksum
        """Refuse (NAK) commands sent without a checksum; otherwise take both."""
        self.part_number: Final = part_number
        self.values: dict[str, str] = {}
        """The current message's user fields as last set by U or D."""
        self.commands: list[Request] = []
        """Every well-formed command received, in order (for tests)."""
        self._updated: set[str] = set()

    def power_cycle(self) -> None:
        """Cut the power: every link drops and the user-field data is lost."""
        self.values.clear()
        self._updated.clear()
        super().power_cycle()

    def error_status(self) -> ErrorStatus:
        """Return the ``E`` status this printer reports now, from the engine's state and faults."""
        engine = self.engine
        faults = tuple(SIM_FAULT_BITS[r] for r in sorted(engine.faults) if r in SIM_FAULT_BITS)
        state = engine.state
        if state is PrinterState.FAULT:
            alarm = ALARM_RED | ALARM_ACTIVE
        elif state is PrinterState.WARNING:
            alarm = ALARM_GREEN | ALARM_AMBER
        elif state is PrinterState.PRINTING:
            alarm = ALARM_GREEN
        else:
            alarm = 0
        return ErrorStatus(faults, alarm)

    async def handle(self, conn: SimConnection) -> None:
        """Serve one link: each command gets its ACK, NAK or data reply; stray bytes are ignored."""
        framer = WsiRequestFramer("required" if self.require_checksum else "optional")
        while True:
            for item in framer.feed(await conn.read()):
                if isinstance(item, Garbage):
                    await self._garbage(conn, item)
                else:
                    self.commands.append(item)
                    await self._command(conn, item)

    async def _garbage(self, conn: SimConnection, item: Garbage) -> None:
        self.log.debug("garbage from host", reason=item.reason, data=item.data[:64])
        if item.reason in (BAD_CHECKSUM, MISSING_CHECKSUM):
            await self.answer(conn, encode_nak(checksum(item.data)), self.refused())

    async def _command(self, conn: SimConnection, request: Request) -> None:
        check = checksum(request.body)
        planned = self.refused()
        if planned is not None and planned[0] is ReplyFault.NAK:
            await self.answer(conn, encode_nak(check), planned)
            return
        reply = self._carry_out(request)
        if reply is False:
            await self.answer(conn, encode_nak(check), planned)
        elif reply is True:
            await self.answer(conn, encode_ack(check), planned)
        else:
            # Text the frame cannot carry (a configured name with ETX, say) goes out as "?": never crash.
            text = reply.encode("ascii", "replace").replace(b"\x02", b"?").replace(b"\x03", b"?")
            await self.answer(conn, encode_reply(text[:DEFAULT_MAX_LENGTH]), planned)

    def _carry_out(self, request: Request) -> str | bool:
        """Do what request asks: True to ACK, text for a data reply, False to NAK."""
        fields = [f.decode("latin-1") for f in request.fields]
        handler = self._handlers.get(request.command)
        if handler is None:
            return request.command in ACCEPTED_ONLY
        return handler(fields)

    @property
    def _handlers(self) -> dict[str, Callable[[list[str]], str | bool]]:
        engine = self.engine
        return {
            "M": lambda f: len(f) == 1 and self._select(f[0]),
            "U": lambda f: len(f) == 2 and self._update(f[0], f[1]),
            "D": lambda f: len(f) == 1 and self._delete(f[0]),
            "O": self._print_on_off,
            "K": lambda _: self._print_on_off(["0"]),
            "E": lambda _: self.error_status().encode().decode("ascii"),
            "Q": lambda _: engine.job or "",
            "G": lambda _: str(engine.counter),
            "R": self._reset_counter,
            "H": lambda _: self.part_number,
        }

    def _print_on_off(self, fields: list[str]) -> bool:
        if fields not in (["0"], ["1"]):
            return False
        self.engine.printing = fields == ["1"]
        return True

    def _reset_counter(self, _: list[str]) -> bool:
        self.engine.counter = 0
        return True

    def _select(self, job: str) -> bool:
        if not self.engine.select(job):
            return False
        self.values.clear()
        self._updated.clear()
        return True

    def _update(self, name: str, value: str) -> bool:
        names = self.engine.field_names()
        if name not in names:
            return False  # the real printer refuses a field its current message does not have (§7)
        self.values[name] = value
        self._updated.add(name)
        if self._updated >= set(names):
            self._updated.clear()
            if self.engine.enqueue([(n, self.values[n]) for n in names]) is None:
                return False
        return True

    def _delete(self, name: str) -> bool:
        names = self.engine.field_names()
        if name not in names:
            return False
        self.values[name] = ""
        self._updated.discard(name)
        # The message now prints with this field empty: what it holds is no longer the record loaded.
        self.engine.enqueue([(n, self.values.get(n, "")) for n in names])
        self.engine.clear()
        return True


def from_options(options: WsiPrinter.Options, *, port: int = 0, transport: SimTransport = "tcp") -> WsiSim:
    """Return a simulator of the printer options describe: its message and fields, checksums as configured."""
    job = options.job or "SERIAL"
    engine = PrinterEngine(depth=1, single_shot=True, jobs={job: tuple(options.fields)})
    return WsiSim(engine, require_checksum=options.checksum, port=port, transport=transport)
