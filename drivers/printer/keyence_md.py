"""Keyence MD-series laser markers (MD-X, MD-F, MD-U, ML-Z) over TCP or RS-232: single-shot, counter-proven.

Layers: `Link` (bytes) → `drivers.framing.keyence_md` (``WX``/``RX`` lines ↔ `Request`/`Answer`) → the
commands below (requests and their answer parsers, as data) → `KeyenceMdPrinter` (the printer role).

What is known (tags as in protocols.md §1.8):

- [C] seen in several public integrations: the line format ``WX,<param>=<value>...`` / ``RX,<param>[=<args>]``
  with answers ``WX,OK``, ``WX,NG,<code>``, ``RX,OK,<value...>``, ``RX,NG,<code>``, CR-terminated (some hosts
  send CRLF); ``RX,Ready`` → 0/1/2 with 0 = ready; ``WX,ProgramNo=0000`` and ``RX,ProgramNo``;
  ``WX,PRG=<p>,BLK=<b>,CharacterString=<text>`` chained for several blocks; ``WX,StartMarking`` answered once
  marking is over; ``WX,StopMarking``; ``WX,ErrorClear``; ``RX,MarkedCharacter=<p>,<b>``;
  ``RX,PRG=<p>,CTR=A,Counter``.
- [K] TCP port 50002 is the common setting (`DEFAULT_TCP_PORT`); the marker's own setting decides.
- ASSUMED, to confirm with Keyence before production:
  - Ready 1 means "not ready to mark" (starting up, remote or key switch off) and 2 "in error";
  - program numbers are 4 digits and block numbers are sent as 4 digits (``BLK=0014``);
  - the NG error codes in `NgCode` (the real codes are in the Communication Interface manual);
  - ``RX,Error`` → ``RX,OK,<count>[,<code>...]`` and the whole `ERRORS` table: the error-status command is
    not public, so this one is defined here and shared with the simulator;
  - the counter of ``CTR=A`` counts every marking of the program, whatever triggered it;
  - no identity command: connect() proves the device by its answer to ``RX,Ready``; firmware is unknown;
  - strings are sent one byte per character (latin-1), GS (0x1D) unchanged;
  - answers carry no echo of the request, so an answer is matched to its request by kind (``WX``/``RX``)
    and shape only; a duplicated answer of the same kind and shape can stand in for the next one (the
    next request of the other kind skips it as a stray). There is no checksum either: a corrupted WX/RX or
    OK/NG word makes the line garbage (then the answer is missing), a corrupted value goes unnoticed. Print
    identity therefore never rests on an answer's position or on the counter alone: see evidence below.

Evidence: the marker marks its current strings on every trigger (its photo-eye input, or `trigger()` =
``WX,StartMarking``). The driver polls the marking counter; on the first step after a load it reads back
``MarkedCharacter`` for the record's blocks and reports PRINTED only when the text equals what it loaded
(identity proven by content, so serials must differ from one record to the next). Different text: no
PRINTED, a warning and a `DeviceGarbage`; the strings that were in the blocks before the load (the previous
record, or blanks after clear()) are recognised as marked again, with a warning only. Further steps without a
new load are the same string marked again: a warning, never a second PRINTED. A record loaded while the
previous one has no evidence yet is refused (FAILED, buffer full): overwriting it would lose its evidence.
run() polls through `poll()`, which a caller may also use to take one step of evidence itself.

The marker has no public "enable printing" command: start() only checks that it is Ready (0), stop() sends
``WX,StopMarking`` (ends a marking under way); a line stops the marker by holding back its trigger.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
from collections import deque
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Final, Generic, Literal, Self, TypeVar

from pydantic import Field, model_validator

from drivers.base import DeviceGarbage, DeviceInfo, DriverContext, DriverOptions
from drivers.framing.keyence_md import (
    TERMINATORS,
    Answer,
    AnswerFramer,
    Request,
    check_value,
    encode_request,
    read,
    write,
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
    PrintRecord,
)
from drivers.printer.exchange import Exchange
from drivers.transport.link import Link, open_link
from edge.errors import DeviceRejectedError, TransientDeviceError

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    from drivers.base import DeviceEvent

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)

MODEL: Final = "Keyence MD-series laser marker"

DEFAULT_TCP_PORT: Final = 50002
"""The marker's Ethernet command port as commonly set [K]; use the one on the marker's communication page."""

DEFAULT_PROGRAM: Final = "0000"

MARKING_TIMEOUT_S: Final = 10.0
"""Longest ``WX,StartMarking`` may take to answer. It answers only once marking is over: a serial plus a 2D code
marks in well under 3 s (public sample simulators wait about 3 s), so 10 s covers large programs without
taking a dead link for a long marking."""

MAX_NUMBER: Final = 9999
"""Largest program or block number that fits the 4 digits sent (ASSUMED)."""

_DIGITS: Final = re.compile(r"[0-9]+")

# Parameter names, shared with the simulator.
READY: Final = "Ready"
PROGRAM_NO: Final = "ProgramNo"
PRG: Final = "PRG"
BLK: Final = "BLK"
CHARACTER_STRING: Final = "CharacterString"
START_MARKING: Final = "StartMarking"
STOP_MARKING: Final = "StopMarking"
ERROR_CLEAR: Final = "ErrorClear"
MARKED_CHARACTER: Final = "MarkedCharacter"
CTR: Final = "CTR"
COUNTER: Final = "Counter"
ERROR: Final = "Error"


class ReadyState:
    """Values of ``RX,Ready`` (0 is [C]; the meaning of 1 and 2 is ASSUMED)."""

    READY: Final = 0
    NOT_READY: Final = 1
    ERROR: Final = 2


class NgCode(StrEnum):
    """Error codes of ``WX,NG``/``RX,NG`` answers (ASSUMED: the real ones are in the Keyence manual)."""

    UNKNOWN_COMMAND = "01"
    OUT_OF_RANGE = "02"
    """No such program or block, or a value out of range."""
    NOT_EXECUTABLE = "03"
    """The marker is in error, not ready, or refused the data now."""


NG_TEXT: Final[Mapping[str, str]] = {
    NgCode.UNKNOWN_COMMAND: "command or parameter not recognised",
    NgCode.OUT_OF_RANGE: "no such program or block, or value out of range",
    NgCode.NOT_EXECUTABLE: "not executable now (marker in error or not ready)",
}


@dataclass(frozen=True, slots=True)
class MarkerError:
    """One entry of the marker's error status (``RX,Error``), ASSUMED table."""

    code: int
    text: str
    reason: FaultReason | None
    """The fault it is; None for a warning (the marker still marks)."""


ERRORS: Final[tuple[MarkerError, ...]] = (
    MarkerError(100, "laser source or scan head fault", FaultReason.HEAD_FAULT),
    MarkerError(110, "scanner (galvanometer) fault", FaultReason.HEAD_FAULT),
    MarkerError(200, "interlock open (door, shutter or remote interlock)", FaultReason.DOOR_OPEN),
    # A laser has no ink, ribbon or labels; these codes exist so every fault of the generic printer model
    # round-trips through the simulator. Replace them with the manual's table when it is available.
    MarkerError(300, "marking consumable out", FaultReason.INK_OUT),
    MarkerError(310, "ribbon out", FaultReason.RIBBON_OUT),
    MarkerError(320, "labels out", FaultReason.LABELS_OUT),
    MarkerError(400, "trigger with no string to mark", FaultReason.BUFFER_UNDERRUN),
    MarkerError(410, "string data overflow", FaultReason.BUFFER_OVERFLOW),
    MarkerError(900, "system error", FaultReason.OTHER),
    MarkerError(500, "trigger with no new string (previous string marked again)", None),
    MarkerError(590, "warning", None),
)
ERROR_BY_CODE: Final[Mapping[int, MarkerError]] = {error.code: error for error in ERRORS}
FAULT_CODES: Final[Mapping[FaultReason, int]] = {
    reason: next(e.code for e in ERRORS if e.reason is reason) for reason in FaultReason
}
"""The code the simulator reports for each fault (the first in `ERRORS` with that reason)."""
WARNING_CODES: Final[Mapping[str, int]] = {FaultReason.BUFFER_UNDERRUN.value: 500}
"""The code the simulator reports for each engine warning it knows; any other warning is `OTHER_WARNING_CODE`."""
OTHER_WARNING_CODE: Final = 590


class MarkerRefusedError(DeviceRejectedError):
    """The marker answered NG; the command was not carried out."""

    def __init__(self, what: str, code: str) -> None:
        self.code = code
        super().__init__(f"marker refused {what}: NG {code} ({NG_TEXT.get(code, 'unknown error code')})")


# -- commands as data -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Command(Generic[T_co]):
    """One marker command: what to call it in errors, its request, and how its OK answer is read."""

    what: str
    request: Request
    parse: Callable[[Answer], T_co]
    """Return the value of an OK answer; ValueError when the answer has another shape."""

    def accepts(self, answer: Answer) -> bool:
        """Return True when answer can be this command's: same kind, and NG or an OK of the right shape."""
        if answer.kind != self.request.kind:
            return False
        if not answer.ok:
            return True
        try:
            self.parse(answer)
        except ValueError:
            return False
        return True


def parse_done(answer: Answer) -> None:
    """Read a plain ``WX,OK``; ValueError when it carries values."""
    if answer.values:
        raise ValueError(f"WX,OK carries no values, got {answer.values!r}")


def parse_text(answer: Answer) -> str:
    """Return the single value of an ``RX,OK`` answer."""
    if len(answer.values) != 1:
        raise ValueError(f"expected one value, got {answer.values!r}")
    return answer.values[0]


def parse_count(answer: Answer) -> int:
    """Return the single non-negative decimal value of an ``RX,OK`` answer."""
    return _number(parse_text(answer))


def parse_ready(answer: Answer) -> int:
    """Return the Ready state (0, 1 or 2)."""
    state = parse_count(answer)
    if state not in (ReadyState.READY, ReadyState.NOT_READY, ReadyState.ERROR):
        raise ValueError(f"Ready is 0, 1 or 2, not {state}")
    return state


def parse_program(answer: Answer) -> str:
    """Return the 4-digit program number of an ``RX,ProgramNo`` answer."""
    value = parse_text(answer)
    if len(value) != 4 or not _DIGITS.fullmatch(value):
        raise ValueError(f"a program number has 4 digits, not {value!r}")
    return value


def parse_errors(answer: Answer) -> tuple[int, ...]:
    """Return the error codes of an ``RX,Error`` answer (``<count>[,<code>...]``, ASSUMED format)."""
    if not answer.values:
        raise ValueError("an error status starts with its count")
    count, *codes = answer.values
    if _number(count) != len(codes):
        raise ValueError(f"error count {count} does not match the {len(codes)} codes sent")
    return tuple(_number(code) for code in codes)


def program_number(job: str) -> str:
    """Return job as the marker's 4-digit program number; ValueError when it is not one."""
    text = job.strip()
    if not _DIGITS.fullmatch(text) or int(text) > MAX_NUMBER:
        raise ValueError(f"job {job!r} is not a program number from 0 to {MAX_NUMBER}")
    return f"{int(text):04d}"


def block_number(block: int) -> str:
    """Return block as sent on the wire (4 digits, ASSUMED)."""
    if not 0 <= block <= MAX_NUMBER:
        raise ValueError(f"block {block} is not from 0 to {MAX_NUMBER}")
    return f"{block:04d}"


READY_QUERY: Final = Command("read Ready", read(READY), parse_ready)
PROGRAM_QUERY: Final = Command("read ProgramNo", read(PROGRAM_NO), parse_program)
ERROR_QUERY: Final = Command("read Error", read(ERROR), parse_errors)
START: Final = Command("StartMarking", write((START_MARKING, None)), parse_done)
STOP: Final = Command("StopMarking", write((STOP_MARKING, None)), parse_done)
CLEAR_ERRORS: Final = Command("ErrorClear", write((ERROR_CLEAR, None)), parse_done)


def select_program(program: str) -> Command[None]:
    """Return ``WX,ProgramNo=<program>``."""
    return Command(f"select program {program}", write((PROGRAM_NO, program)), parse_done)


def set_strings(program: str, blocks: Sequence[tuple[int, str]]) -> Command[None]:
    """Return ``WX,PRG=<p>,BLK=<b>,CharacterString=<text>...`` for every (block, text); ValueError names a bad text."""
    items: list[tuple[str, str | None]] = [(PRG, program)]
    for block, text in blocks:
        items += [(BLK, block_number(block)), (CHARACTER_STRING, text)]
    return Command(f"set strings of program {program}", write(*items), parse_done)


def marked_character(program: str, block: int) -> Command[str]:
    """Return ``RX,MarkedCharacter=<p>,<b>``: the text block b was last marked with."""
    return Command(
        f"read MarkedCharacter of block {block}", read(MARKED_CHARACTER, program, block_number(block)), parse_text
    )


def counter_query(program: str) -> Command[int]:
    """Return ``RX,PRG=<p>,CTR=A,Counter``: the marking counter of program p."""
    return Command(f"read counter of program {program}", Request("RX", (f"{PRG}={program}", f"{CTR}=A", COUNTER)),
                   parse_count)


def status_from(ready: int, codes: Sequence[int]) -> PrinterStatus:
    """Return the printer status a Ready state and the error codes make (unknown codes are faults, OTHER)."""
    entries = [ERROR_BY_CODE.get(code, MarkerError(code, "unknown error code", FaultReason.OTHER)) for code in codes]
    faults = frozenset(e.reason for e in entries if e.reason is not None)
    detail = "; ".join([f"Ready={ready}", *(f"{e.code:03d} {e.text}" for e in entries)])
    if faults or ready == ReadyState.ERROR:
        return PrinterStatus(PrinterState.FAULT, faults or frozenset({FaultReason.OTHER}), detail)
    if ready == ReadyState.NOT_READY:
        return PrinterStatus(PrinterState.STOPPED, detail=detail)
    if entries:
        return PrinterStatus(PrinterState.WARNING, detail=detail)
    return PrinterStatus(PrinterState.PRINTING, detail=detail)


def _number(value: str) -> int:
    if not _DIGITS.fullmatch(value):
        raise ValueError(f"expected a decimal number, got {value!r}")
    return int(value)


# -- the printer role -------------------------------------------------------------------------------


class KeyenceMdPrinter(Printer):
    """A Keyence MD laser marker: one record at a time in its program's blocks, proven by counter and read-back."""

    class Options(PrinterOptions):
        """How the marker is set up; match its communication settings and program."""

        terminator: Literal["CR", "CRLF"] = "CR"
        """Line end the marker is set to; answers ending in CR, LF or CRLF are accepted either way."""
        blocks: dict[str, int] | None = None
        """Record field name → block number of the program (default: the fields in order → blocks 0, 1, 2...)."""
        marking_timeout_s: float = Field(MARKING_TIMEOUT_S, gt=0, le=600)
        """Longest trigger() waits for StartMarking to answer (it answers once marking is over)."""

        @model_validator(mode="after")
        def _check_blocks(self) -> Self:
            if self.depth not in (None, 1):
                raise ValueError(f"a laser marker holds one record at a time: depth must be 1, not {self.depth}")
            if self.blocks is not None:
                if set(self.blocks) != set(self.fields):
                    raise ValueError(
                        f"blocks must give a block for each field and nothing else: fields {sorted(self.fields)}, "
                        f"blocks {sorted(self.blocks)}"
                    )
                numbers = list(self.blocks.values())
                if len(set(numbers)) != len(numbers) or not all(0 <= n <= MAX_NUMBER for n in numbers):
                    raise ValueError(f"block numbers must differ and be from 0 to {MAX_NUMBER}: {self.blocks}")
            return self

        def block_numbers(self) -> dict[str, int]:
            """Return field name → block number, as configured or by field order."""
            if self.blocks is not None:
                return dict(self.blocks)
            return {name: index for index, name in enumerate(self.fields)}

    def __init__(self, context: DriverContext, options: DriverOptions) -> None:
        if not isinstance(options, KeyenceMdPrinter.Options):
            raise TypeError(f"KeyenceMdPrinter takes KeyenceMdPrinter.Options, not {type(options).__name__}")
        super().__init__(context, options)
        self._options = options
        self._blocks = options.block_numbers()
        self._terminator = TERMINATORS[options.terminator]
        self._capabilities = PrinterCapabilities(
            load=LoadStyle.SINGLE_SHOT, buffer_depth=1, evidence=EvidenceKind.PRINT_COUNTER, host_trigger=True
        )
        self._used = False
        self._link: Link | None = None
        self._exchange: Exchange[Answer] | None = None
        self._program = DEFAULT_PROGRAM
        self._counter: int | None = None
        """The marking counter as last read; None until the baseline is taken."""
        self._loaded: PrintRecord | None = None
        """The record in the marker's blocks that has no print evidence yet."""
        self._written: dict[str, str] | None = None
        """Field → text the driver last wrote into the blocks (None: unknown, as after connect)."""
        self._before: dict[str, str] | None = None
        """What the blocks held before the loaded record: marking that again is a repeat, not a foreign string."""
        self._last_status: PrinterStatus | None = None
        # Driver state (counter, loaded record, program) changes under this lock; events are never emitted
        # while it is held (the sink may call back into the driver), they wait in _pending until _flush().
        self._state = asyncio.Lock()
        self._pending: deque[DeviceEvent] = deque()

    @property
    def capabilities(self) -> PrinterCapabilities:
        """Single-shot, one record, evidence by the marking counter, host trigger by StartMarking."""
        return self._capabilities

    async def connect(self) -> DeviceInfo:
        """Open the link and prove a marker answers Ready; select the configured program; take the counter."""
        if self._used:
            raise RuntimeError("a driver is single-use: make a new one to reconnect")
        self._used = True
        link = await open_link(
            self.context.transport, connect_timeout_s=self.context.connect_timeout_s, log=self.context.log
        )
        self._link = link
        # Strays found by the exchange wait in _pending like our own events, so none is emitted under a lock.
        self._exchange = Exchange(link, AnswerFramer(), dataclasses.replace(self.context, events=self._defer))
        try:
            async with asyncio.timeout(self.context.connect_timeout_s):
                await self._handshake()
        except TimeoutError as err:
            await link.close()
            self._pending.clear()
            raise TransientDeviceError(
                f"marker at {link.peer} did not finish the handshake within {self.context.connect_timeout_s:g} s"
            ) from err
        except (Exception, asyncio.CancelledError):
            await link.close()
            self._pending.clear()
            raise
        self.context.log.info("marker connected", peer=link.peer, program=self._program, counter=self._counter)
        await self._flush()
        return DeviceInfo(model=MODEL)

    async def run(self) -> None:
        """Poll the counter (and the status) until the link is lost (TransientDeviceError) or cancelled."""
        if self._exchange is None:
            raise RuntimeError("run() needs a connected driver: call connect() first")
        options = self._options
        # Counted in polls, not clock time: the sleep is injected and may not pass wall-clock time at all.
        status_every = max(1, round(options.status_interval_s / options.poll_interval_s))
        polls = 0
        while True:
            if polls % status_every == 0:
                await self._poll_status()
            await self.poll()
            polls += 1
            await self.context.sleep(options.poll_interval_s)

    async def poll(self) -> None:
        """Read the counter once and report what it proves (what run() does every poll interval)."""
        try:
            async with self._state:
                await self._check_evidence()
        finally:
            await self._flush()

    async def close(self) -> None:
        """Close the link; idempotent and never raises."""
        if self._link is not None:
            await self._link.close()

    async def select_job(self, job: str) -> None:
        """Select program job (a number); DeviceRejectedError naming it when the marker has no such program."""
        try:
            program = program_number(job)
        except ValueError as err:
            raise DeviceRejectedError(str(err)) from err
        try:
            async with self._state:
                await self._check_evidence()  # a marking of the loaded record gets its evidence first
                await self._select(program, job)
        finally:
            await self._flush()

    async def load(self, records: Sequence[PrintRecord]) -> None:
        """Write each record into the program's blocks; SENT when the marker took it, FAILED otherwise."""
        try:
            for record in records:
                async with self._state:
                    await self._load_one(record)
                await self._flush()
        finally:
            await self._flush()

    async def clear(self) -> None:
        """Report a marking already made, then blank every configured block; the loaded record is dropped."""
        try:
            async with self._state:
                await self._check_evidence()
                blank = [(block, "") for block in sorted(self._blocks.values())]
                await self._ask(set_strings(self._program, blank))
                if self._loaded is not None:
                    self.context.log.info("record cleared before it was marked", record_id=self._loaded.record_id)
                self._loaded, self._written = None, dict.fromkeys(self._blocks, "")
        finally:
            await self._flush()

    async def start(self) -> None:
        """Check the marker is Ready (0); it has no public enable command. DeviceRejectedError when not ready."""
        try:
            ready = await self._ask(READY_QUERY)
            if ready != ReadyState.READY:
                status = status_from(ready, await self._ask(ERROR_QUERY))
                raise DeviceRejectedError(f"marker is not ready to mark: {status.detail}")
        finally:
            await self._flush()

    async def stop(self) -> None:
        """Send StopMarking (ends a marking under way); the marker still marks on its own trigger input."""
        try:
            await self._ask(STOP)
        finally:
            await self._flush()

    async def status(self) -> PrinterStatus:
        """Ask Ready and the error status now."""
        try:
            return await self._read_status()
        finally:
            await self._flush()

    async def counters(self) -> PrinterCounters:
        """Ask the marking counter of the current program."""
        try:
            return PrinterCounters(printed=await self._ask(counter_query(self._program)))
        finally:
            await self._flush()

    async def trigger(self) -> None:
        """Mark the loaded strings now (StartMarking) and return once marked, with the evidence reported."""
        try:
            async with self._state:
                await self._ask(START, timeout_s=self._options.marking_timeout_s)
                await self._check_evidence()
        finally:
            await self._flush()

    async def error_clear(self) -> None:
        """Reset the marker's latched errors (ErrorClear)."""
        try:
            await self._ask(CLEAR_ERRORS)
        finally:
            await self._flush()

    # -- inside -------------------------------------------------------------------------------------

    async def _handshake(self) -> None:
        # Ready first: a device that is not a marker fails here, before anything is changed on it.
        await self._ask(READY_QUERY)
        if self._options.job is not None:
            try:
                program = program_number(self._options.job)
            except ValueError as err:
                raise DeviceRejectedError(str(err)) from err
            await self._select(program, self._options.job)
        else:
            self._program = await self._ask(PROGRAM_QUERY)
            self._counter = await self._ask(counter_query(self._program))

    async def _select(self, program: str, job: str) -> None:
        """Select program (state lock held) and take its counter as the new baseline."""
        try:
            await self._ask(select_program(program))
        except MarkerRefusedError as err:
            raise DeviceRejectedError(f"the marker has no program {job!r} ({err})") from err
        if self._loaded is not None:
            self.context.log.warning("program changed before the loaded record was marked",
                                     record_id=self._loaded.record_id, program=program)
        self._program, self._loaded, self._written = program, None, None
        self._counter = await self._ask(counter_query(program))

    async def _load_one(self, record: PrintRecord) -> None:
        """Hand one record over (state lock held); queue SENT or FAILED."""
        try:
            command = set_strings(self._program, self._blocks_of(record))
            data = encode_request(command.request, terminator=self._terminator)
        except ValueError as err:
            self._outcome(record, PrintOutcome.FAILED, str(err))
            return
        if self._loaded is not None:
            await self._check_evidence()  # it may be marked already, and the poll not have seen it yet
        if self._loaded is not None:
            self._outcome(
                record,
                PrintOutcome.FAILED,
                f"buffer full: record {self._loaded.record_id} is loaded and not marked yet (the marker holds one)",
            )
            return
        try:
            await self._request(command, data, self.context.response_timeout_s)
        except MarkerRefusedError as err:
            self._outcome(record, PrintOutcome.FAILED, str(err))
            return
        self._loaded, self._before, self._written = record, self._written, dict(record.fields)
        self._outcome(record, PrintOutcome.SENT)

    def _blocks_of(self, record: PrintRecord) -> list[tuple[int, str]]:
        names = [name for name, _ in record.fields]
        if sorted(names) != sorted(self._blocks):
            raise ValueError(f"record {record.record_id} has fields {names}, the marker's blocks are {self._blocks}")
        blocks = []
        for name, value in record.fields:
            check_value(value, f"field {name!r} of record {record.record_id}")
            blocks.append((self._blocks[name], value))
        return blocks

    async def _check_evidence(self) -> None:
        """Read the counter; on a step, prove by read-back which record was marked (state lock held)."""
        count = await self._ask(counter_query(self._program))
        previous, self._counter = self._counter, count
        if previous is None or count == previous:
            return
        log = self.context.log
        if count < previous:
            # Reset on the panel or by a power cycle: nothing can be proven about what was marked meanwhile.
            if self._loaded is None:
                log.warning("marking counter went backwards; counting on from its new value", was=previous, now=count)
                return
            # A record waits for evidence that can no longer be told apart: the line treats the link as lost.
            raise TransientDeviceError(f"marking counter went backwards from {previous} to {count}; state unknown")
        steps = count - previous
        record = self._loaded
        if record is None:
            log.warning("marked with no new record loaded: the previous string again", marks=steps)
            return
        marked = [
            await self._ask(marked_character(self._program, block)) for block, _ in self._blocks_of(record)
        ]
        names = [name for name, _ in record.fields]
        if dict(zip(names, marked, strict=True)) == self._before:
            # The previous strings marked again after the last poll but before this record was written.
            log.warning("the previous strings were marked again; still waiting for this record",
                        record_id=record.record_id, marks=steps)
            return
        if marked != [value for _, value in record.fields]:
            log.warning("the marked string is not the loaded record; no evidence for it",
                        record_id=record.record_id, marked=marked, marks=steps)
            self._pending.append(DeviceGarbage(
                device_id=self.context.device_id,
                at=self.context.clock(),
                data=",".join(marked).encode("latin-1", "replace"),
                reason=f"marked string is not the loaded record {record.record_id}",
            ))
            # Something else was marked (a panel edit, an answer out of turn): what the marker holds is unknown.
            # Waiting would block feeding for good; a lost link puts the record in doubt and clears the marker.
            raise TransientDeviceError(f"marked string is not the loaded record {record.record_id}; state unknown")
        if steps > 1:
            log.warning("several markings since the last poll: the rest repeated the record",
                        record_id=record.record_id, marks=steps)
        self._loaded = None
        self._outcome(record, PrintOutcome.PRINTED)

    async def _poll_status(self) -> None:
        try:
            status = await self._read_status()
            if status != self._last_status:
                self._last_status = status
                self._pending.append(
                    PrinterStatusChanged(device_id=self.context.device_id, at=self.context.clock(), status=status)
                )
        finally:
            await self._flush()

    async def _read_status(self) -> PrinterStatus:
        ready = await self._ask(READY_QUERY)
        return status_from(ready, await self._ask(ERROR_QUERY))

    async def _ask(self, command: Command[T], *, timeout_s: float | None = None) -> T:
        """Send command and return its parsed answer; MarkerRefusedError on NG, TransientDeviceError on none."""
        data = encode_request(command.request, terminator=self._terminator)
        return await self._request(command, data, self.context.response_timeout_s if timeout_s is None else timeout_s)

    async def _request(self, command: Command[T], data: bytes, timeout_s: float) -> T:
        if self._exchange is None:
            raise RuntimeError("the driver is not connected: call connect() first")
        answer = await self._exchange.request(data, command.accepts, timeout_s=timeout_s, what=command.what)
        if answer.error is not None:
            raise MarkerRefusedError(command.what, answer.error)
        return command.parse(answer)

    def _outcome(self, record: PrintRecord, outcome: PrintOutcome, detail: str = "") -> None:
        self._pending.append(PrintEvidence(
            device_id=self.context.device_id,
            at=self.context.clock(),
            record_id=record.record_id,
            outcome=outcome,
            detail=detail,
        ))

    async def _defer(self, event: DeviceEvent) -> None:
        self._pending.append(event)

    async def _flush(self) -> None:
        """Emit every queued event in order; called with no lock held."""
        while self._pending:
            await self.context.events(self._pending.popleft())
