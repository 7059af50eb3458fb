"""A Domino printer speaking the QuickDesign-era text protocol, framed by the driver's own framer.

One FIFO per serial variable of the current design: ``FillSerialVar`` appends a value to one of them, and once
every variable of the design holds a value, one record (a value from each) moves into the engine's buffer,
where each product detect prints the oldest. ``PollSerialVar`` counts the records queued plus that variable's
values still waiting for the other variables. A full queue silently drops the record, as a real queue
overflow would: FillSerialVar has no answer.

Answers that are not in the public material are the driver's ASSUMED ones (see `drivers.printer.domino`):
GetStatus, ClearSerialVar, the PausePrint/ResumePrint answers, the PrintDesign failure form, and
``AnswerError=<command>,<reason>`` for a refused command (the NAK answer fault, an unknown command or
variable). Bytes that frame no request are ignored, as the real device is assumed to do.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import TYPE_CHECKING, Final

from drivers.framing.base import Garbage
from drivers.framing.domino import RequestFramer, encode_answer
from drivers.framing.line import CRLF
from drivers.printer.base import PrinterState
from drivers.printer.domino import (
    ANSWER_NAMES,
    CLEAR_SERIAL_VAR,
    DEFAULT_DESIGN_EXTENSION,
    DEFAULT_QUEUE_LIMIT,
    ENCODING,
    ERROR,
    FILL_SERIAL_VAR,
    GET_STATUS,
    OK,
    PAUSE_PRINT,
    POLL_SERIAL_VAR,
    PRINT_DESIGN,
    RESUME_PRINT,
    DominoPrinter,
    status_values,
)
from simulators.base import LOOPBACK
from simulators.printer import PrinterEngine, PrinterSimulator, ReplyFault

if TYPE_CHECKING:
    from collections.abc import Callable

    from drivers.framing.domino import Request
    from simulators.base import SimConnection, SimTransport, Sleep

REFUSED: Final = b"Refused"
UNKNOWN_COMMAND: Final = b"UnknownCommand"
UNKNOWN_VARIABLE: Final = b"UnknownVariable"
NO_VALUE: Final = b"MissingValue"


class DominoSim(PrinterSimulator):
    """A simulated Domino QuickDesign printer over TCP or a pseudo-terminal."""

    def __init__(
        self,
        engine: PrinterEngine | None = None,
        *,
        queue_limit: int = DEFAULT_QUEUE_LIMIT,
        jobs: dict[str, tuple[str, ...]] | None = None,
        job: str | None = None,
        design_extension: str = DEFAULT_DESIGN_EXTENSION,
        terminator: bytes = CRLF,
        transport: SimTransport = "tcp",
        host: str = LOOPBACK,
        port: int = 0,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        if engine is None:
            engine = PrinterEngine(depth=queue_limit)
            if jobs is not None:
                engine.jobs = dict(jobs)
        super().__init__(engine, transport=transport, host=host, port=port, sleep=sleep)
        self.design_extension: Final = design_extension
        self.terminator: Final = terminator
        # A printer always has some design loaded: the one asked for, else the first it knows.
        first = job if job is not None else next(iter(engine.jobs), None)
        if engine.job is None and first is not None:
            engine.select(first)
        self._staged: dict[str, deque[str]] = {}
        """Values of each variable waiting for the other variables of their record."""
        self.garbage: list[bytes] = []
        """Bytes received that framed no request, in order (the device ignores them)."""

    def power_cycle(self) -> None:
        """Cut the power: every link drops, queues and staged values are lost."""
        self._staged.clear()
        super().power_cycle()

    def staged(self, variable: str) -> int:
        """Return how many values of variable wait for the rest of their record."""
        return len(self._staged.get(variable, ()))

    async def handle(self, conn: SimConnection) -> None:
        """Answer each request as the printer would; ignore bytes that frame none."""
        framer = RequestFramer()
        while True:
            for item in framer.feed(await conn.read()):
                if isinstance(item, Garbage):
                    self.log.info("ignored bytes", reason=item.reason, data=item.data[:64])
                    self.garbage.append(item.data)
                else:
                    await self._on_request(conn, item)

    # -- inside ----------------------------------------------------------------------------------

    async def _on_request(self, conn: SimConnection, request: Request) -> None:
        planned = self.refused()
        if planned is not None and planned[0] is ReplyFault.NAK:
            await conn.write(self._error(request.command, REFUSED))
            return
        handler = self._handlers.get(request.command, self._unknown)
        values = [value.decode(ENCODING, errors="replace") for value in request.values]
        reply = handler(request.command, values)
        if reply is not None:
            await self.answer(conn, reply, planned)
        # A non-NAK answer fault on FillSerialVar is used up without effect: the command has no answer.

    @property
    def _handlers(self) -> dict[str, Callable[[str, list[str]], bytes | None]]:
        return {
            FILL_SERIAL_VAR: self._fill,
            POLL_SERIAL_VAR: self._poll,
            CLEAR_SERIAL_VAR: self._clear,
            PRINT_DESIGN: self._select,
            PAUSE_PRINT: self._pause,
            RESUME_PRINT: self._resume,
            GET_STATUS: self._status,
        }

    def _unknown(self, name: str, _values: list[str]) -> bytes:
        return self._error(name, UNKNOWN_COMMAND)

    def _poll(self, name: str, values: list[str]) -> bytes:
        if not values or values[0] not in self.engine.field_names():
            return self._error(name, UNKNOWN_VARIABLE)
        count = self.engine.buffered + self.staged(values[0])
        return self._answer(name, values[0].encode(ENCODING), b"0", str(count).encode())

    def _clear(self, name: str, values: list[str]) -> bytes:
        if not values or values[0] not in self.engine.field_names():
            return self._error(name, UNKNOWN_VARIABLE)
        # The engine's buffer holds whole records: clearing one variable drops them (ASSUMED semantics).
        self._staged.pop(values[0], None)
        self.engine.clear()
        return self._answer(name, values[0].encode(ENCODING), OK)

    def _pause(self, name: str, _values: list[str]) -> bytes:
        self.engine.printing = False
        return self._answer(name, OK)

    def _resume(self, name: str, _values: list[str]) -> bytes:
        if self.engine.job is None:
            return self._answer(name, b"0")
        self.engine.printing = True
        return self._answer(name, OK)

    def _status(self, name: str, _values: list[str]) -> bytes:
        engine = self.engine
        faults = engine.faults if engine.state is PrinterState.FAULT else set()
        return self._answer(name, *status_values(engine.state, faults, engine.warnings))

    def _fill(self, name: str, values: list[str]) -> bytes | None:
        if len(values) != 2:
            return self._error(name, NO_VALUE)
        variable, value = values
        fields = self.engine.field_names()
        if variable not in fields:
            return self._error(name, UNKNOWN_VARIABLE)
        staged = self._staged.setdefault(variable, deque())
        if len(staged) >= self.engine.depth:
            self.log.warning("serial variable overflow: value dropped", variable=variable)
            return None
        staged.append(value)
        if all(self._staged.get(field) for field in fields):
            record = tuple((field, self._staged[field].popleft()) for field in fields)
            if self.engine.enqueue(record) is None:
                # No answer to say so: the record is lost, as in a real queue overflow.
                self.log.warning("printer queue full: record dropped", record=record)
        return None

    def _select(self, name: str, values: list[str]) -> bytes:
        design = values[0] if values else ""
        job = design.removesuffix(self.design_extension)
        selected = bool(job) and self.engine.select(job)
        if selected:
            self._staged.clear()
        # Observed success form; the failure form (0 in place of 1) is ASSUMED.
        flag = OK if selected else b"0"
        return self._answer(name, design.encode(ENCODING), flag, b"0", b"0", b"0", b"PromptInfo", b"0", b"")

    def _answer(self, command: str, *values: bytes) -> bytes:
        return encode_answer(ANSWER_NAMES.get(command, command), values, terminator=self.terminator)

    def _error(self, command: str, reason: bytes) -> bytes:
        return encode_answer(ERROR, (command.encode(), reason), terminator=self.terminator)


def from_options(options: DominoPrinter.Options, *, port: int = 0, transport: SimTransport = "tcp") -> DominoSim:
    """Return a simulator of the printer options describe: its job with those serial variables, its queue size."""
    job = options.job.removesuffix(options.design_extension) if options.job else "SERIAL"
    return DominoSim(
        queue_limit=options.queue_limit,
        jobs={job: tuple(options.fields)},
        job=job,
        design_extension=options.design_extension,
        transport=transport,
        port=port,
    )
