"""Videojet CLARiTY coders (Dataflex TTO 6320/6330/6530 and kin) over the Zipher Text Communications Protocol.

Layers: `Link` (TCP, sample port 3010, or serial) → `ZipherFramer` (``CMD|a|b|`` + CR) → the commands
below (each a `Query`: request bytes and how its positive answer reads) → `ZipherPrinter` (the printer role).

Feeding path (buffered serialization): at connect ``GST`` (handshake), ``DAN`` (no asynchronous
notifications, so every frame is an answer), ``SEL`` (the configured job), ``SMR|depth|``, ``SCB`` (a
reconnected printer's buffer is unknown: it is emptied, protocols.md §0) and ``SNI`` (the index the next
record gets). Then ``SHO|names|`` once, and ``SDO|values|`` per record → ``SFS|free|`` (accepted) or ``ERR``
(refused). Each accepted record gets the next index; run() polls ``SLR`` (last printed index) and reports
PRINTED for every handed-over index up to it, in order, once; ``GST``/``GFT``/``GWN`` give the status.

What is known, per protocols.md §1.2:
- [C] (VolkovVik/Videojet6330App, citing "CLARiTY-Zipher Text Communications Protocol V1.28"): the frame
  format; ``ACK``/``ERR``; command and answer codes and argument order; ``STS|overall|error|job|batch|total|``
  and the state numbers; ``FLT``/``WRN`` as a count then (code, clearable, text) triples; ``SDO`` → ``SFS``;
  ``PRN`` answers after printing and ``SST`` after the transition; a job must be selected before Running.
- [K] serial transport; [V] nothing (no device was available).
- ASSUMED, confirm with Videojet before production: the numeric fault and warning codes (`FAULT_CODES`, our
  own table, shared with the simulator); that ``SNI`` names the index the next loaded record gets when the
  buffer is empty (after ``SCB``), so that SNI + SRC is the next index to be assigned; that indices are
  consecutive per accepted record; that ``SEL`` answers ``ERR`` for an unknown job; that ``SMR`` above the
  device's limit and ``PRN`` with nothing to print answer ``ERR``; that empty lines are ignored by the printer;
  Latin-1 text.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass
from enum import IntEnum
from types import MappingProxyType
from typing import TYPE_CHECKING, Final, Generic, Self, TypeVar

from pydantic import Field, model_validator

from drivers.base import DeviceEvent, DeviceGarbage, DeviceInfo, DriverContext, DriverOptions
from drivers.framing.zipher import (
    CR,
    DEFAULT_MAX_LENGTH,
    ZipherFrame,
    ZipherFramer,
    check_value,
    encode_command,
)
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
)
from drivers.printer.exchange import Exchange
from drivers.transport.link import open_link
from edge.errors import DeviceRejectedError, TransientDeviceError

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    from drivers.printer.base import PrintRecord

T = TypeVar("T")

MODEL: Final = "Videojet CLARiTY (Zipher text protocol)"

DEFAULT_DEPTH: Final = 32
"""Records kept in the printer by default: about half a second of a fast line, well inside the buffer."""
MAX_DEPTH: Final = 150
"""The largest SMR one public integration sets on a Dataflex 6330 [C]; the default device limit."""

# All timeouts are in seconds; ordinary answers use the context's response timeout.

PRINT_TIMEOUT_S: Final = 5.0
"""PRN answers only after printing: a TTO print takes well under a second, with the printhead moving into
position first; five seconds is a printer that will not print."""
STATE_CHANGE_TIMEOUT_S: Final = 30.0
"""SST answers only after the transition: going Running moves the printhead into position (one public
integration waits 3 s after it), shutting down parks it; thirty seconds covers both."""
JOB_SELECT_TIMEOUT_S: Final = 10.0
"""SEL loads a job (fonts, graphics) into the print engine before it answers (ASSUMED: seconds, not minutes)."""

VERIFY_ATTEMPTS: Final = 3
"""Tries at reading SNI, SRC, SNI without a print in between before a load is left unverified (logged)."""

ERR_CODE: Final = "ERR"
ACK_CODE: Final = "ACK"


class OverallState(IntEnum):
    """The printer's overall state (SST/GST)."""

    SHUT_DOWN = 0
    STARTING_UP = 1
    SHUTTING_DOWN = 2
    RUNNING = 3
    OFFLINE = 4


class ErrorState(IntEnum):
    """The printer's error state (GST)."""

    NONE = 0
    WARNINGS = 1
    FAULTS = 2


FAULT_CODES: Final[Mapping[FaultReason, int]] = MappingProxyType(
    {
        FaultReason.RIBBON_OUT: 101,
        FaultReason.INK_OUT: 102,
        FaultReason.LABELS_OUT: 103,
        FaultReason.HEAD_FAULT: 104,
        FaultReason.BUFFER_UNDERRUN: 105,
        FaultReason.BUFFER_OVERFLOW: 106,
        FaultReason.DOOR_OPEN: 107,
        FaultReason.OTHER: 199,
    }
)
"""ASSUMED fault/warning codes (not public): ours, shared by this driver and the simulator; replace with the
printer's own list from Videojet. Unknown codes are FaultReason.OTHER."""

FAULT_TEXTS: Final[Mapping[FaultReason, str]] = MappingProxyType(
    {
        FaultReason.RIBBON_OUT: "Ribbon out",
        FaultReason.INK_OUT: "Ink out",
        FaultReason.LABELS_OUT: "Labels out",
        FaultReason.HEAD_FAULT: "Printhead fault",
        FaultReason.BUFFER_UNDERRUN: "Serialization buffer empty",
        FaultReason.BUFFER_OVERFLOW: "Serialization buffer full",
        FaultReason.DOOR_OPEN: "Cover open",
        FaultReason.OTHER: "Fault",
    }
)
"""The text the simulator sends with each code (the driver keeps whatever text the printer sends)."""

REASONS_BY_CODE: Final[Mapping[int, FaultReason]] = MappingProxyType({c: r for r, c in FAULT_CODES.items()})


class RefusedError(DeviceRejectedError):
    """The printer answered ERR: it refused the command and changed nothing."""


# -- commands as data -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StateReport:
    """What GST reports: ``STS|overall|error|job|batchCount|totalCount|``."""

    overall: OverallState
    error: ErrorState
    job: str
    batch_count: int
    total_count: int


@dataclass(frozen=True, slots=True)
class FaultEntry:
    """One fault or warning from GFT/GWN: the printer's code, whether it can be cleared, its text."""

    code: int
    clearable: bool
    text: str

    @property
    def reason(self) -> FaultReason:
        """The role's reason for this code (OTHER when the code is not in `FAULT_CODES`)."""
        return REASONS_BY_CODE.get(self.code, FaultReason.OTHER)


@dataclass(frozen=True, slots=True)
class Query(Generic[T]):
    """One command, the code of its positive answer, and how that answer's arguments read (ValueError if not)."""

    code: str
    args: tuple[str, ...]
    answer: str
    parse: Callable[[tuple[str, ...]], T]

    def encode(self, max_length: int = DEFAULT_MAX_LENGTH) -> bytes:
        """Return the command's bytes; ValueError for an argument the protocol cannot carry."""
        return encode_command(self.code, *self.args, max_length=max_length)

    def accepts(self, frame: ZipherFrame) -> bool:
        """Return whether frame answers this command: ERR, or the positive answer well formed."""
        if frame.code == ERR_CODE:
            return not frame.args
        if frame.code != self.answer:
            return False
        try:
            self.parse(frame.args)
        except ValueError:
            return False
        return True


def parse_none(args: tuple[str, ...]) -> None:
    """Read a bare ACK."""
    if args:
        raise ValueError(f"ACK takes no arguments, got {args}")


def parse_int(args: tuple[str, ...]) -> int:
    """Read ``XXX|n|``: one decimal integer (SFS, SRC, SNI, SLR, SGM)."""
    if len(args) != 1:
        raise ValueError(f"expected one number, got {args}")
    return _integer(args[0])


def parse_state(args: tuple[str, ...]) -> StateReport:
    """Read ``STS|overall|error|job|batchCount|totalCount|``."""
    if len(args) != 5:
        raise ValueError(f"STS has five values, got {args}")
    return StateReport(
        OverallState(_integer(args[0])), ErrorState(_integer(args[1])), args[2], _integer(args[3]), _integer(args[4])
    )


def parse_entries(args: tuple[str, ...]) -> tuple[FaultEntry, ...]:
    """Read ``FLT|n|code|clearable|text|...`` (and WRN alike): a count, then that many triples."""
    if not args:
        raise ValueError("a fault list starts with its count")
    count = _integer(args[0])
    if len(args) != 1 + 3 * count:
        raise ValueError(f"{count} entries need {3 * count} values, got {len(args) - 1}")
    return tuple(
        FaultEntry(_integer(args[i]), args[i + 1] == "1", args[i + 2]) for i in range(1, len(args), 3)
    )


def parse_names(args: tuple[str, ...]) -> tuple[str, ...]:
    """Read ``JBL|n|name|...`` (and JFL alike): a count, then that many names."""
    if not args or _integer(args[0]) != len(args) - 1:
        raise ValueError(f"a name list is its count then that many names, got {args}")
    return args[1:]


def parse_job(args: tuple[str, ...]) -> str:
    """Read ``JOB|name|line|``: the selected job's name (empty when none)."""
    if len(args) != 2:
        raise ValueError(f"JOB has a name and a line, got {args}")
    return args[0]


def ack(code: str, *args: str) -> Query[None]:
    """Return a command answered by a bare ACK."""
    return Query(code, args, ACK_CODE, parse_none)


def number(code: str) -> Query[int]:
    """Return a query answered by its own code and one number (SRC, SFS, SNI, SLR, SGM)."""
    return Query(code, (), code, parse_int)


GET_STATE: Final = Query("GST", (), "STS", parse_state)
GET_FAULTS: Final = Query("GFT", (), "FLT", parse_entries)
GET_WARNINGS: Final = Query("GWN", (), "WRN", parse_entries)
GET_JOBS: Final = Query("GJL", (), "JBL", parse_names)
GET_JOB: Final = Query("GJN", (), "JOB", parse_job)
DISABLE_NOTIFICATIONS: Final = ack("DAN")
CLEAR_BUFFER: Final = ack("SCB")
PRINT: Final = ack("PRN")
RECORD_COUNT: Final = number("SRC")
NEXT_INDEX: Final = number("SNI")
LAST_PRINTED: Final = number("SLR")


def select(job: str) -> Query[None]:
    """``SEL|job|``: make job current."""
    return ack("SEL", job)


def set_state(state: OverallState) -> Query[None]:
    """``SST|n|``: move to state; answered once the transition is done."""
    return ack("SST", str(int(state)))


def set_max_records(count: int) -> Query[None]:
    """``SMR|n|``: the most records the serialization buffer may hold."""
    return ack("SMR", str(count))


def header(names: Sequence[str]) -> Query[None]:
    """``SHO|f1|f2|``: the field names the following SDO records fill, in order."""
    return ack("SHO", *names)


def record_data(record: PrintRecord) -> Query[int]:
    """``SDO|v1|v2|`` → ``SFS|free|``; ValueError naming the field whose value the protocol cannot carry."""
    for name, value in record.fields:
        check_value(value, f"field {name!r} of record {record.record_id}")
    return Query("SDO", tuple(value for _, value in record.fields), "SFS", parse_int)


def status_from(state: StateReport, faults: Sequence[FaultEntry], warnings: Sequence[FaultEntry]) -> PrinterStatus:
    """Map GST (+ GFT, GWN) onto the role's traffic light, keeping the printer's own words in detail."""
    reasons = frozenset(e.reason for e in (*faults, *warnings))
    words = [state.overall.name.replace("_", " ").title().replace(" ", "")]
    words += [f"fault {e.code} {e.text}" for e in faults] + [f"warning {e.code} {e.text}" for e in warnings]
    detail = "; ".join(words)
    if state.error is ErrorState.FAULTS or faults:
        return PrinterStatus(PrinterState.FAULT, reasons or frozenset({FaultReason.OTHER}), detail)
    if state.overall is OverallState.RUNNING:
        printing = PrinterState.WARNING if state.error is ErrorState.WARNINGS or warnings else PrinterState.PRINTING
        return PrinterStatus(printing, reasons, detail)
    if state.overall is OverallState.OFFLINE and state.job:
        return PrinterStatus(PrinterState.READY, reasons, detail)
    return PrinterStatus(PrinterState.STOPPED, reasons, detail)


def _integer(text: str) -> int:
    # int() also takes "+1", " 1" and "1_000": the printer sends plain digits, anything else is malformed.
    body = text.removeprefix("-")
    if not (body.isascii() and body.isdigit()):
        raise ValueError(f"not a number: {text!r}")
    return int(text)


# -- the printer role -----------------------------------------------------------------------------------


class ZipherPrinter(Printer):
    """A CLARiTY coder fed through its serialization buffer; print evidence from its record indices."""

    class Options(PrinterOptions):
        """How the printer is set up; match its communications settings."""

        device_max_records: int = Field(MAX_DEPTH, ge=1, le=10_000)
        """Most records the printer's serialization buffer takes (its SMR limit); depth may not exceed it."""
        leading_cr: bool = False
        """Send a CR ahead of every command so the printer drops a partial line first (as one integration does)."""
        max_frame_length: int = Field(DEFAULT_MAX_LENGTH, ge=64, le=1 << 20)
        """Longest line taken from the printer; a longer one is reported as garbage and skipped."""
        verify_load: bool = True
        """After each load, check with SNI and SRC that the printer holds exactly the records it accepted."""

        @model_validator(mode="after")
        def _depth_within_device(self) -> Self:
            if self.depth is not None and self.depth > self.device_max_records:
                raise ValueError(f"depth {self.depth} exceeds the printer's {self.device_max_records}-record buffer")
            return self

    def __init__(self, context: DriverContext, options: DriverOptions) -> None:
        if not isinstance(options, ZipherPrinter.Options):
            raise TypeError(f"ZipherPrinter takes ZipherPrinter.Options, not {type(options).__name__}")
        super().__init__(context, options)
        self._options = options
        self._capabilities = PrinterCapabilities(
            load=LoadStyle.BUFFERED,
            buffer_depth=options.depth or min(DEFAULT_DEPTH, options.device_max_records),
            evidence=EvidenceKind.RECORD_INDEX,
            host_trigger=True,
        )
        self._exchange: Exchange[ZipherFrame] | None = None
        self._used = False
        self._feed_lock = asyncio.Lock()
        """One of load/clear/select_job at a time: they move the index bookkeeping together."""
        self._header: tuple[str, ...] | None = None
        self._next_index = 0
        """The index the printer gives the next record it accepts."""
        self._mirror: deque[tuple[int, int]] = deque()
        """(device index, record_id) of records accepted and not yet reported printed, oldest first."""
        self._last_printed: int | None = None
        self._reported_bad: int | None = None

    @property
    def capabilities(self) -> PrinterCapabilities:
        """Buffered, depth from the options (default 32), evidence by record index, PRN as host trigger."""
        return self._capabilities

    async def connect(self) -> DeviceInfo:
        """Open the link, check it is a ready Zipher printer, set it up for feeding with an empty buffer."""
        if self._used:
            raise RuntimeError("a driver is single-use: make a new one to reconnect")
        self._used = True
        link = await open_link(
            self.context.transport, connect_timeout_s=self.context.connect_timeout_s, log=self.context.log
        )
        self._exchange = Exchange(link, ZipherFramer(self._options.max_frame_length), self.context)
        try:
            state = await self._handshake(link.peer)
            await self._ask(DISABLE_NOTIFICATIONS)
            if self._options.job is not None:
                await self._select(self._options.job)
            try:
                await self._ask(set_max_records(self._capabilities.buffer_depth))
            except RefusedError as err:
                raise DeviceRejectedError(
                    f"printer refused a buffer of {self._capabilities.buffer_depth} records (SMR); lower depth"
                ) from err
            await self._restart_buffer()
        except (Exception, asyncio.CancelledError):
            await link.close()
            raise
        self.context.log.info("printer connected", peer=link.peer, state=state.overall.name, job=state.job)
        return DeviceInfo(model=MODEL)

    async def run(self) -> None:
        """Poll SLR for evidence and GST for status until the link is lost (TransientDeviceError) or cancelled."""
        self._connected()
        options = self._options
        status_every = max(1, round(options.status_interval_s / options.poll_interval_s))
        last: PrinterStatus | None = None
        polls = 0
        while True:
            await self._poll_evidence()
            if polls % status_every == 0:
                current = await self._read_status()
                if current is not None and current != last:
                    last = current
                    await self._emit(PrinterStatusChanged(device_id=self.context.device_id, at=self.context.clock(),
                                                          status=current))
            polls += 1
            await self.context.sleep(options.poll_interval_s)

    async def close(self) -> None:
        """Close the link; idempotent and never raises."""
        if self._exchange is not None:
            await self._exchange.link.close()

    async def select_job(self, job: str) -> None:
        """SEL the job and empty the buffer (its records never reported printed); unknown → DeviceRejectedError."""
        self._connected()
        async with self._feed_lock:
            await self._select(job)
            await self._restart_buffer()

    async def load(self, records: Sequence[PrintRecord]) -> None:
        """SDO each record in order; SENT when the printer answers SFS, FAILED (with why) when it refuses."""
        self._connected()
        events: list[DeviceEvent] = []
        try:
            async with self._feed_lock:
                await self._feed(records, events)
        except Exception:
            await self._emit_all(events)  # what was decided before the failure still holds
            raise
        await self._emit_all(events)

    async def clear(self) -> None:
        """SCB: empty the printer's buffer; records still in it are never reported printed afterwards."""
        self._connected()
        async with self._feed_lock:
            await self._restart_buffer()

    async def start(self) -> None:
        """SST|3| (Running), answered once the printer is ready; DeviceRejectedError if it refuses (no job, fault)."""
        try:
            await self._ask(set_state(OverallState.RUNNING), timeout_s=STATE_CHANGE_TIMEOUT_S)
        except RefusedError as err:
            raise DeviceRejectedError(
                "printer refused to go Running (no job selected, a fault, or not started up)"
            ) from err

    async def stop(self) -> None:
        """SST|4| (Offline): printing stops, the buffer keeps its records."""
        try:
            await self._ask(set_state(OverallState.OFFLINE), timeout_s=STATE_CHANGE_TIMEOUT_S)
        except RefusedError as err:
            raise DeviceRejectedError("printer refused to go Offline (shut down or starting up)") from err

    async def status(self) -> PrinterStatus:
        """GST, with GFT/GWN when the printer reports faults or warnings."""
        current = await self._read_status()
        if current is None:
            raise RefusedError("printer answered ERR to a status request")
        return current

    async def counters(self) -> PrinterCounters:
        """Total count from GST, records in the buffer from SRC."""
        state = await self._ask(GET_STATE)
        buffered = await self._ask(RECORD_COUNT)
        return PrinterCounters(printed=state.total_count, buffered=buffered)

    async def trigger(self) -> None:
        """PRN: print the next record now; returns once printed. Evidence still comes from SLR, never this ACK."""
        try:
            await self._ask(PRINT, timeout_s=PRINT_TIMEOUT_S)
        except RefusedError as err:
            raise DeviceRejectedError("printer refused PRN (not Running, or nothing to print)") from err

    async def jobs(self) -> tuple[str, ...]:
        """GJL: the jobs stored in the printer."""
        return await self._ask(GET_JOBS)

    # -- inside ---------------------------------------------------------------------------------------

    async def _handshake(self, peer: str) -> StateReport:
        """GST: proves a Zipher printer answers, and that it has started up."""
        state = await self._ask(GET_STATE)
        if state.overall not in (OverallState.OFFLINE, OverallState.RUNNING):
            raise TransientDeviceError(
                f"printer at {peer} is {state.overall.name} (not yet Offline or Running); try again later"
            )
        return state

    def _connected(self) -> Exchange[ZipherFrame]:
        if self._exchange is None:
            raise RuntimeError("connect() first")
        return self._exchange

    async def _ask(self, query: Query[T], *, timeout_s: float | None = None) -> T:
        """Send query, return its parsed answer; RefusedError on ERR, TransientDeviceError when none comes in time."""
        exchange = self._connected()
        data = query.encode(self._options.max_frame_length)
        if self._options.leading_cr:
            data = CR + data
        frame = await exchange.request(
            data,
            query.accepts,
            timeout_s=self.context.response_timeout_s if timeout_s is None else timeout_s,
            what=query.code,
        )
        if frame.code == ERR_CODE:
            raise RefusedError(f"printer answered ERR to {query.code}")
        return query.parse(frame.args)

    async def _select(self, job: str) -> None:
        try:
            await self._ask(select(job), timeout_s=JOB_SELECT_TIMEOUT_S)
        except RefusedError as err:
            raise DeviceRejectedError(f"printer has no job {job!r} (SEL answered ERR)") from err

    async def _restart_buffer(self) -> None:
        """Empty the printer's buffer and the mirror, and learn the index the next record gets."""
        try:
            await self._ask(CLEAR_BUFFER)
        except RefusedError as err:
            raise DeviceRejectedError("printer refused to clear its serialization buffer (SCB)") from err
        dropped = [record_id for _, record_id in self._mirror]
        if dropped:
            self.context.log.info("buffer cleared; these records will never be reported printed", records=dropped)
        self._mirror.clear()
        self._header = None
        self._next_index = await self._ask(NEXT_INDEX)

    async def _feed(self, records: Sequence[PrintRecord], events: list[DeviceEvent]) -> None:
        accepted = 0
        for record in records:
            outcome, detail = await self._load_one(record)
            accepted += outcome is PrintOutcome.SENT
            events.append(self._evidence(record.record_id, outcome, detail))
        if accepted and self._options.verify_load:
            await self._verify()

    async def _load_one(self, record: PrintRecord) -> tuple[PrintOutcome, str]:
        try:
            query = record_data(record)
            query.encode(self._options.max_frame_length)
        except ValueError as err:
            return PrintOutcome.FAILED, str(err)
        names = tuple(name for name, _ in record.fields)
        if self._header is None:
            try:
                await self._ask(header(names))
            except ValueError as err:  # a field name the protocol cannot carry
                return PrintOutcome.FAILED, str(err)
            except RefusedError:
                return PrintOutcome.FAILED, f"printer refused the field names {list(names)} (SHO answered ERR)"
            self._header = names
        elif names != self._header:
            return PrintOutcome.FAILED, f"fields {list(names)} are not the buffer's {list(self._header)}; clear first"
        try:
            free = await self._ask(query)
        except RefusedError:
            return PrintOutcome.FAILED, "printer refused the record (SDO answered ERR: buffer full or data refused)"
        self._mirror.append((self._next_index, record.record_id))
        self._next_index += 1
        self.context.log.debug("record loaded", record_id=record.record_id, free_bytes=free)
        return PrintOutcome.SENT, ""

    async def _verify(self) -> None:
        """Check the printer's next index (SNI + SRC, read with no print between) is the one the mirror expects."""
        for _ in range(VERIFY_ATTEMPTS):
            first = await self._ask(NEXT_INDEX)
            count = await self._ask(RECORD_COUNT)
            if await self._ask(NEXT_INDEX) == first:
                if first + count != self._next_index:
                    raise TransientDeviceError(
                        f"printer's next record index is {first + count}, expected {self._next_index}: its buffer "
                        "no longer matches the records handed over; reconnect and clear"
                    )
                return
        self.context.log.info("printing too fast to verify the load; left unverified", attempts=VERIFY_ATTEMPTS)

    async def _poll_evidence(self) -> None:
        try:
            last = await self._ask(LAST_PRINTED)
        except RefusedError:
            self.context.log.warning("printer answered ERR to SLR; no evidence this poll")
            return
        events: list[DeviceEvent] = []
        if self._last_printed is not None and last < self._last_printed:
            problem = f"last printed index went back from {self._last_printed} to {last}"
        elif last >= self._next_index:
            problem = f"last printed index {last} names no record handed to the printer (next is {self._next_index})"
        else:
            problem = ""
            self._last_printed = last
            while self._mirror and self._mirror[0][0] <= last:
                _, record_id = self._mirror.popleft()
                events.append(self._evidence(record_id, PrintOutcome.PRINTED))
        if problem and last != self._reported_bad:
            self._reported_bad = last
            self.context.log.warning("print evidence ignored", problem=problem)
            events.append(DeviceGarbage(device_id=self.context.device_id, at=self.context.clock(),
                                        data=ZipherFrame("SLR", (str(last),)).raw, reason=problem))
        await self._emit_all(events)

    async def _read_status(self) -> PrinterStatus | None:
        try:
            state = await self._ask(GET_STATE)
            faults = await self._ask(GET_FAULTS) if state.error is ErrorState.FAULTS else ()
            warnings = await self._ask(GET_WARNINGS) if state.error is not ErrorState.NONE else ()
        except RefusedError:
            self.context.log.warning("printer answered ERR to a status request")
            return None
        return status_from(state, faults, warnings)

    def _evidence(self, record_id: int, outcome: PrintOutcome, detail: str = "") -> PrintEvidence:
        return PrintEvidence(
            device_id=self.context.device_id, at=self.context.clock(), record_id=record_id, outcome=outcome,
            detail=detail,
        )

    async def _emit(self, event: DeviceEvent) -> None:
        await self.context.events(event)

    async def _emit_all(self, events: Sequence[DeviceEvent]) -> None:
        for event in events:
            await self.context.events(event)
