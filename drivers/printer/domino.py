"""Domino printers over the QuickDesign-era text protocol: one serial-variable FIFO per field, queue level polled.

Why this dialect: Domino also speaks Codenet (``ESC ... EOT`` with ACK/NAK, protocols.md §1.4 a), but Codenet's
command letters, the external serial-number ones above all, are [?]: only a document's table of contents is
public. The QuickDesign text protocol (§1.4 b) is the one whose serialization commands (``FillSerialVar``,
``PollSerialVar``) are observed [C] in public integration code, so it is the one this driver speaks.

Layers: `Link` (bytes) → `drivers.framing.domino` (requests and answer lines) → the commands below (data and
answer parsers) → `DominoPrinter` (the `Printer` role).

What is known, and how well (tags as in protocols.md):

- [C] framing: ``SOH <Command> ['=' STX arg ETX {, ...}] ETB`` out, one ``Answer<Command>=...`` line back;
  ``PrintDesign= STX <name>.Design ETX ,0,0`` answered ``AnswerPrintDesign=<name>.Design,1,0,0,0,PromptInfo,0,``
  (meaning of the other values [?]); ``FillSerialVar= STX <var> ETX , STX <value> ETX`` appends one value to
  that variable's FIFO and has NO answer; ``PollSerialVar= STX <var> ETX`` answers
  ``AnswerSerialVar=<var>,<x>,<count>`` with count = values still queued (<x> [?], ignored); ``PausePrint`` and
  ``ResumePrint`` exist. The public integration keeps at most 20 records queued. TCP port: [?] (7000 is what a
  Codenet integration uses [C]); the protocol also runs over RS-232.
- ASSUMED, to confirm with Domino before production:
  the failure answer of PrintDesign (``AnswerPrintDesign=<name>,0,...``); the answers of PausePrint/ResumePrint
  (``AnswerPausePrint=1`` / ``AnswerResumePrint=1``, anything else refused); ``ClearSerialVar= STX <var> ETX`` →
  ``AnswerClearSerialVar=<var>,1``; ``GetStatus`` → ``AnswerStatus=<state>,<codes>`` with `STATE_CODES`,
  `FAULT_CODES` and `WARNING_PREFIX` below; refusals as ``AnswerError=<command>,<reason>`` (this dialect has
  no NAK); values sent as UTF-8; a design change discards the queued values.

How evidence works: every accepted record is kept, in order, in a mirror. The device's count for the first
field's variable is polled; records loaded since the last clear minus that count have printed, so that many
of the oldest mirrored records are reported PRINTED. A count above the mirror (records the driver never gave,
or a count going backwards) is reported as `DeviceGarbage`, never as prints.

Answers carry no request id, so a duplicated answer could pass for the answer to the next request (a stale
queue level after a load would report a record printed that is not). Every operation therefore starts with a
fence: a GetStatus request, whose answer is of another kind than any the operation then waits for and than
any operation ends with. Whatever an earlier exchange left over arrives before the fence's answer and is
skipped as garbage, so the answers read after the fence are the device's answers to this operation. Each
record's fills go out in one write with a PollSerialVar: any refusal of them (``AnswerError=FillSerialVar``)
arrives before the count, so it is known to be this record's.

Known weaknesses of the dialect: without an answer to FillSerialVar and without a checksum, a value the device
silently drops (queue overflow) or a corrupted count digit looks like a print; the camera after the printer
catches it. The driver keeps the device queue within ``queue_limit`` (it refuses a record when the last count
plus the records loaded since could reach it), so overflow cannot happen in normal use. GetStatus is assumed
to exist: the driver sends it, as the fence, before every operation. A refusal is also reported as
`DeviceGarbage` by `Exchange`, which takes one answer per request.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections import deque
from typing import TYPE_CHECKING, Final, Self

from pydantic import Field, model_validator

from drivers.base import DeviceEvent, DeviceGarbage, DeviceInfo, DriverContext, DriverOptions
from drivers.framing.domino import CONTROL, Answer, AnswerFramer, Request, bare, quoted
from drivers.printer.base import (
    EvidenceKind,
    FaultReason,
    LoadStyle,
    Printer,
    PrinterCapabilities,
    PrinterCounters,
    PrinterOptions,
    PrinterState,
    PrinterStatus,
    PrinterStatusChanged,
    PrintEvidence,
    PrintOutcome,
    PrintRecord,
)
from drivers.printer.exchange import Exchange
from drivers.transport.link import Link, open_link
from edge.errors import DeviceRejectedError, ProtocolError

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence

MODEL: Final = "Domino printer (QuickDesign text protocol)"

DEFAULT_QUEUE_LIMIT: Final = 20
"""Records kept queued at most by default: what the public integration does [C]; the real queue size is [?]."""

SELECT_TIMEOUT_S: Final = 5.0
"""Longest a design change may take to be answered. ASSUMED: the printer reads the .Design file from its own
storage and lays it out before answering, which takes far longer than an ordinary answer."""

ENCODING: Final = "utf-8"
"""How values go on the wire (ASSUMED; GS1 element strings are ASCII plus GS, the same in every encoding)."""

DEFAULT_DESIGN_EXTENSION: Final = ".Design"

# -- commands, as data ------------------------------------------------------------------------------

PRINT_DESIGN: Final = "PrintDesign"
FILL_SERIAL_VAR: Final = "FillSerialVar"
POLL_SERIAL_VAR: Final = "PollSerialVar"
CLEAR_SERIAL_VAR: Final = "ClearSerialVar"  # ASSUMED
PAUSE_PRINT: Final = "PausePrint"
RESUME_PRINT: Final = "ResumePrint"
GET_STATUS: Final = "GetStatus"  # ASSUMED
ERROR: Final = "Error"  # ASSUMED: AnswerError=<command>,<reason>

ANSWER_NAMES: Final[Mapping[str, str]] = {POLL_SERIAL_VAR: "SerialVar", GET_STATUS: "Status"}
"""Answer name of each command whose answer is not named after it (``Answer<name>=``)."""

PRINT_DESIGN_TRAILING: Final = (b"0", b"0")
"""The bare arguments after the design name, as the public integration sends them [C]; meaning [?]."""

OK: Final = b"1"
"""The success flag in PrintDesign (observed), ClearSerialVar, PausePrint and ResumePrint (ASSUMED) answers."""

STATE_CODES: Final[Mapping[str, PrinterState]] = {
    "0": PrinterState.STOPPED,
    "1": PrinterState.READY,
    "2": PrinterState.PRINTING,
    "3": PrinterState.WARNING,
    "4": PrinterState.FAULT,
}
"""ASSUMED: first value of ``AnswerStatus``; an unknown code is read as a fault."""

FAULT_CODES: Final[Mapping[str, FaultReason]] = {
    "InkOut": FaultReason.INK_OUT,
    "RibbonOut": FaultReason.RIBBON_OUT,
    "LabelsOut": FaultReason.LABELS_OUT,
    "HeadFault": FaultReason.HEAD_FAULT,
    "BufferUnderrun": FaultReason.BUFFER_UNDERRUN,
    "BufferOverflow": FaultReason.BUFFER_OVERFLOW,
    "DoorOpen": FaultReason.DOOR_OPEN,
    "Fault": FaultReason.OTHER,
}
"""ASSUMED: fault codes after the state in ``AnswerStatus``; an unknown code is `FaultReason.OTHER`."""

FAULT_TOKENS: Final[Mapping[FaultReason, str]] = {reason: code for code, reason in FAULT_CODES.items()}
STATE_TOKENS: Final[Mapping[PrinterState, str]] = {state: code for code, state in STATE_CODES.items()}

WARNING_PREFIX: Final = "Warn:"
"""ASSUMED: a status value starting with this is a warning (ink low...), not a fault."""


def command(name: str, *args: bytes) -> Request:
    """Return the request name with quoted arguments."""
    return Request(name, tuple(quoted(arg) for arg in args))


def print_design(design: str) -> Request:
    """Return the request selecting design (a file name such as ``LOT.Design``)."""
    return Request(PRINT_DESIGN, (quoted(design.encode(ENCODING)), *(bare(v) for v in PRINT_DESIGN_TRAILING)))


def fill_serial_var(variable: str, value: str) -> Request:
    """Return the request appending value to variable's FIFO (no answer)."""
    return command(FILL_SERIAL_VAR, variable.encode(ENCODING), value.encode(ENCODING))


def poll_serial_var(variable: str) -> Request:
    """Return the request asking how many values of variable are still queued."""
    return command(POLL_SERIAL_VAR, variable.encode(ENCODING))


def clear_serial_var(variable: str) -> Request:
    """Return the request emptying variable's FIFO (ASSUMED command)."""
    return command(CLEAR_SERIAL_VAR, variable.encode(ENCODING))


def answer_name(request: Request) -> str:
    """Return the name of the answer to request (``SerialVar`` for ``PollSerialVar``...)."""
    return ANSWER_NAMES.get(request.command, request.command)


def is_refusal(answer: Answer, request: Request) -> bool:
    """Return whether answer is the printer's refusal of a command like request."""
    return answer.command == ERROR and answer.value(0) == request.command.encode()


def answers(request: Request) -> Callable[[Answer], bool]:
    """Return a test for the answer (or refusal) of request; for commands naming something, it must match."""
    name = answer_name(request)
    key = request.values[0] if request.command != GET_STATUS and request.args else None

    def accept(answer: Answer) -> bool:
        if is_refusal(answer, request):
            return True
        return answer.command == name and (key is None or answer.value(0) == key)

    return accept


def text(answer: Answer) -> str:
    """Return the answer line as text, for details and logs."""
    return answer.raw.decode(ENCODING, errors="replace")


def parse_status(answer: Answer) -> PrinterStatus:
    """Return the status an ``AnswerStatus`` reports (ASSUMED encoding: state code, then fault/warning codes)."""
    code, *tokens = (value.decode(ENCODING, errors="replace") for value in answer.values)
    state = STATE_CODES.get(code)
    faults = {
        FAULT_CODES.get(token, FaultReason.OTHER) for token in tokens if token and not token.startswith(WARNING_PREFIX)
    }
    if state is None:  # a state we cannot read is one we cannot print in, as far as we know
        state = PrinterState.FAULT
    if state is PrinterState.FAULT and not faults:
        faults.add(FaultReason.OTHER)
    return PrinterStatus(state, frozenset(faults), b",".join(answer.values).decode(ENCODING, errors="replace"))


def status_values(state: PrinterState, faults: Iterable[FaultReason], warnings: Iterable[str]) -> tuple[bytes, ...]:
    """Return the ``AnswerStatus`` values for a device in this state (the simulator's side of `parse_status`)."""
    tokens = [STATE_TOKENS[state], *sorted(FAULT_TOKENS[fault] for fault in faults)]
    tokens += sorted(WARNING_PREFIX + _printable(warning) for warning in warnings)
    return tuple(token.encode(ENCODING) for token in tokens)


def parse_level(answer: Answer, variable: str) -> int:
    """Return the queued count of ``AnswerSerialVar=<var>,<x>,<count>``; ProtocolError when unreadable."""
    count = answer.value(2)
    if answer.value(0) != variable.encode(ENCODING) or count is None or not count.isdigit():
        raise ProtocolError(f"unreadable queue level {text(answer)!r}")
    return int(count)


def _printable(value: str) -> str:
    return "".join(c for c in value if c not in ",\r\n" and ord(c) not in CONTROL)


# -- the printer role --------------------------------------------------------------------------------


class DominoPrinter(Printer):
    """A Domino printer (Gx-series TIJ, V-series TTO...) fed through its serial-variable queues."""

    class Options(PrinterOptions):
        """How the printer and its design are set up; field names are the design's serial variable names."""

        queue_limit: int = Field(DEFAULT_QUEUE_LIMIT, ge=1, le=10_000)
        """Most records the driver lets the printer queue per variable; a record that could pass it is refused."""
        design_extension: str = DEFAULT_DESIGN_EXTENSION
        """Appended to the job name unless it already ends with it: PrintDesign takes the design's file name."""

        @model_validator(mode="after")
        def _check(self) -> Self:
            if self.depth is not None and self.depth > self.queue_limit:
                raise ValueError(f"depth {self.depth} is more than the printer queues (queue_limit {self.queue_limit})")
            for name in self.fields:
                if not name or name != _printable(name):
                    raise ValueError(f"serial variable name {name!r} cannot go on the wire")
            return self

    def __init__(self, context: DriverContext, options: DriverOptions) -> None:
        if not isinstance(options, DominoPrinter.Options):
            raise TypeError(f"DominoPrinter takes DominoPrinter.Options, not {type(options).__name__}")
        super().__init__(context, options)
        self._options = options
        self._variables: Final = tuple(options.fields)
        # The count is per variable; every record fills each variable once, so the first one stands for all.
        self._counted: Final = self._variables[0]
        self._link: Link | None = None
        self._exchange: Exchange[Answer] | None = None
        self._used = False
        self._lock = asyncio.Lock()
        """One operation (a few requests and their answers) at a time; held across the answers it reads."""
        self._held: list[DeviceEvent] = []
        """Events of the running operation, emitted once it released the lock."""
        self._mirror: deque[PrintRecord] = deque()
        """Records accepted since the last clear and not reported printed, oldest first."""
        self._level = 0
        """Most values the printer may hold: its last count plus records loaded since."""
        self._reported = 0
        self._last_status: PrinterStatus | None = None
        self._anomaly: tuple[int, int] | None = None

    @property
    def capabilities(self) -> PrinterCapabilities:
        """A buffered printer proving prints by its queue level; only its own product detect prints."""
        depth = self._options.depth or self._options.queue_limit
        return PrinterCapabilities(LoadStyle.BUFFERED, depth, EvidenceKind.QUEUE_LEVEL, host_trigger=False)

    async def connect(self) -> DeviceInfo:
        """Open the link, poll status and queue level as the handshake, select the configured job."""
        if self._used:
            raise RuntimeError("a driver is single-use: make a new one to reconnect")
        self._used = True
        link = await open_link(
            self.context.transport, connect_timeout_s=self.context.connect_timeout_s, log=self.context.log
        )
        self._link = link
        # Exchange reports go through the operation's event list, so they too wait until the lock is free.
        self._exchange = Exchange(link, AnswerFramer(), dataclasses.replace(self.context, events=self._hold))
        try:
            async with self._operation() as exchange:
                await self._poll(exchange)
            if self._options.job is not None:
                await self.select_job(self._options.job)
        except (Exception, asyncio.CancelledError):
            await link.close()
            raise
        self.context.log.info("printer connected", peer=link.peer, queued=self._level)
        return DeviceInfo(model=MODEL)

    async def run(self) -> None:
        """Poll status and queue level until the link is lost (TransientDeviceError) or cancelled."""
        if self._exchange is None:
            raise RuntimeError("run() needs a connected driver: call connect() first")
        # Status rides along every poll (it is the fence), so polling at the shorter interval serves both.
        interval = min(self._options.poll_interval_s, self._options.status_interval_s)
        while True:
            async with self._operation() as exchange:
                status, count, answer = await self._poll(exchange)
                self._account(count, answer)
                if status is not None and status != self._last_status:
                    self._last_status = status
                    self._held.append(self._event_status(status))
            await self.context.sleep(interval)

    async def close(self) -> None:
        """Close the link; idempotent and never raises."""
        if self._link is not None:
            await self._link.close()

    async def select_job(self, job: str) -> None:
        """Load design job (``.Design`` appended); DeviceRejectedError naming it when the printer has none."""
        extension = self._options.design_extension
        design = job if job.endswith(extension) else job + extension
        request = print_design(design)
        async with self._operation() as exchange:
            await self._fence(exchange)
            answer = await self._ask(exchange, request, timeout_s=max(SELECT_TIMEOUT_S, self._timeout))
            if is_refusal(answer, request) or answer.value(1) != OK:
                raise DeviceRejectedError(f'printer has no job "{job}" (design {design}: {text(answer)})')
            # ASSUMED: a design change discards the queued values; none of them may be reported printed now.
            self._drop("design changed")
            self._level = 0
        self.context.log.info("design selected", design=design)

    async def load(self, records: Sequence[PrintRecord]) -> None:
        """Queue each record (one FillSerialVar per field); emit SENT, or FAILED with the printer's reason."""
        for record in records:
            async with self._operation() as exchange:
                await self._load_one(exchange, record)

    async def clear(self) -> None:
        """Empty every variable's queue; records in the mirror are dropped first, so none is reported printed."""
        requests = [clear_serial_var(variable) for variable in self._variables]
        async with self._operation() as exchange:
            # Dropped before sending: whatever the answer, nothing loaded before may be reported printed.
            self._drop("cleared")
            await self._fence(exchange)
            refused = [
                text(answer)
                for answer in [await self._ask(exchange, request) for request in requests]
                if answer.command == ERROR or answer.value(1) != OK
            ]
            if refused:
                raise DeviceRejectedError(f"printer did not clear its queues: {'; '.join(refused)}")
            self._level = 0

    async def start(self) -> None:
        """Resume printing on product detect."""
        await self._simple(Request(RESUME_PRINT))

    async def stop(self) -> None:
        """Pause printing; queued records stay."""
        await self._simple(Request(PAUSE_PRINT))

    async def status(self) -> PrinterStatus:
        """Ask the printer for its status now (ASSUMED GetStatus); DeviceRejectedError if it refuses."""
        async with self._operation() as exchange:
            status, _, _ = await self._poll(exchange)
        if status is None:
            raise DeviceRejectedError("printer refused GetStatus")
        return status

    async def counters(self) -> PrinterCounters:
        """Return prints worked out from the queue level since connect (no print counter is known) and the level."""
        async with self._operation() as exchange:
            _, count, _ = await self._poll(exchange)
            printed = self._reported + max(0, len(self._mirror) - count)
        return PrinterCounters(printed=printed, buffered=count)

    # -- inside ----------------------------------------------------------------------------------

    @property
    def _timeout(self) -> float:
        return self.context.response_timeout_s

    @contextlib.asynccontextmanager
    async def _operation(self) -> AsyncIterator[Exchange[Answer]]:
        """Hold the lock for one operation; emit its events (and garbage) after releasing it."""
        if self._exchange is None:
            raise RuntimeError("connect() first")
        events: list[DeviceEvent] = []
        try:
            async with self._lock:
                try:
                    yield self._exchange
                finally:
                    events, self._held = self._held, []
        except Exception:
            await self._emit(events)
            raise
        await self._emit(events)

    async def _emit(self, events: list[DeviceEvent]) -> None:
        for event in events:
            await self.context.events(event)

    async def _hold(self, event: DeviceEvent) -> None:
        self._held.append(event)

    async def _ask(
        self,
        exchange: Exchange[Answer],
        request: Request,
        *,
        send: bytes | None = None,
        accept: Callable[[Answer], bool] | None = None,
        expected: Callable[[Answer], bool] | None = None,
        timeout_s: float | None = None,
    ) -> Answer:
        """Send request (or send) and return its answer or refusal (or what accept takes)."""
        return await exchange.request(
            request.raw if send is None else send,
            answers(request) if accept is None else accept,
            timeout_s=self._timeout if timeout_s is None else timeout_s,
            what=request.command,
            expected=expected,
        )

    async def _fence(self, exchange: Exchange[Answer]) -> Answer:
        """Ask GetStatus; return its answer, once what earlier exchanges left over (duplicates) was skipped."""
        return await self._ask(exchange, Request(GET_STATUS))

    async def _poll(self, exchange: Exchange[Answer]) -> tuple[PrinterStatus | None, int, Answer]:
        """Ask status and queue level; return the status (None if refused), the count and its answer."""
        request = poll_serial_var(self._counted)
        fence = await self._fence(exchange)
        answer = await self._ask(exchange, request)
        if is_refusal(answer, request):
            raise DeviceRejectedError(f"printer refused to tell the queue of {self._counted}: {text(answer)}")
        count = parse_level(answer, self._counted)
        self._level = count
        status = None if fence.command == ERROR else parse_status(fence)
        return status, count, answer

    async def _load_one(self, exchange: Exchange[Answer], record: PrintRecord) -> None:
        names = tuple(name for name, _ in record.fields)
        if names != self._variables:
            # Every variable's FIFO must advance in step, or one print would mix values of two records.
            self._outcome(record, PrintOutcome.FAILED, f"record fields {names} are not the printer's {self._variables}")
            return
        if self._level >= self._options.queue_limit:
            self._outcome(record, PrintOutcome.FAILED,
                          f"printer queue may be full ({self._level} of {self._options.queue_limit})")
            return
        try:
            fills = b"".join(fill_serial_var(name, value).raw for name, value in record.fields)
        except (ValueError, UnicodeError) as err:
            self._outcome(record, PrintOutcome.FAILED, str(err))
            return
        poll = poll_serial_var(self._counted)
        fill = Request(FILL_SERIAL_VAR)
        refusals: list[Answer] = []

        def refused(answer: Answer) -> bool:
            # The poll after the fills answers after any refusal of them: collect those on the way.
            if is_refusal(answer, fill):
                refusals.append(answer)
                return True
            return False

        await self._fence(exchange)
        level = await self._ask(exchange, poll, send=fills + poll.raw, expected=refused)
        if len(refusals) >= len(record.fields):
            self._outcome(record, PrintOutcome.FAILED, "; ".join(text(a) for a in refusals))
        elif refusals:
            self._outcome(record, PrintOutcome.FAILED, "; ".join(text(a) for a in refusals))
            raise ProtocolError(
                f"printer took only some fields of record {record.record_id}: its variable queues are out of step"
            )
        else:
            self._mirror.append(record)
            self._outcome(record, PrintOutcome.SENT)
        if is_refusal(level, poll):
            self._level += 0 if refusals else 1
        else:
            self._level = parse_level(level, self._counted)

    def _account(self, count: int, answer: Answer) -> None:
        """Report as printed the oldest records the queue level says are gone; never guess past the mirror."""
        outstanding = len(self._mirror)
        if count > outstanding:
            anomaly = (count, outstanding)
            if anomaly != self._anomaly:
                reason = f"queue level {count} is above the {outstanding} record(s) the driver has in the printer"
                self.context.log.warning("printer queue holds records the driver did not give it", count=count,
                                         mirrored=outstanding)
                self._held.append(
                    DeviceGarbage(device_id=self.context.device_id, at=self.context.clock(), data=answer.raw,
                                  reason=reason)
                )
            self._anomaly = anomaly
            return
        self._anomaly = None
        for _ in range(outstanding - count):
            self._reported += 1
            self._outcome(self._mirror.popleft(), PrintOutcome.PRINTED)

    def _drop(self, why: str) -> None:
        if self._mirror:
            self.context.log.warning(
                "records dropped without print evidence", why=why, record_ids=[r.record_id for r in self._mirror]
            )
        self._mirror.clear()
        self._anomaly = None

    async def _simple(self, request: Request) -> None:
        async with self._operation() as exchange:
            await self._fence(exchange)
            answer = await self._ask(exchange, request)
        if is_refusal(answer, request) or answer.value(0) != OK:
            raise DeviceRejectedError(f"printer refused {request.command}: {text(answer)}")

    def _outcome(self, record: PrintRecord, outcome: PrintOutcome, detail: str = "") -> None:
        self._held.append(
            PrintEvidence(device_id=self.context.device_id, at=self.context.clock(), record_id=record.record_id,
                          outcome=outcome, detail=detail)
        )

    def _event_status(self, status: PrinterStatus) -> PrinterStatusChanged:
        return PrinterStatusChanged(device_id=self.context.device_id, at=self.context.clock(), status=status)
