"""Linx RCI printers (CIJ 5900/7300/7900/8800/8900, CJ400, Linx 10): remote buffer loads, print counter evidence.

Layers: `Link` (RS-232 or TCP, port 9100 on the sample client) → `RciFramer` → the commands below (data
and parsers, shared with the simulator) → `LinxRciPrinter`, the printer role.

What is known, per protocols.md §1.5 (tags as there):

- [V]/[C] frame layout, ESC stuffing and the two's-complement checksum (see `drivers.framing.linx_rci`);
  half-duplex, one outstanding command; replies in about 3 s, jet start/stop up to 60 s.
- [C] command ids 0x0F/0x10 jet start/stop, 0x11/0x12 print start/stop, 0x14 status, 0x1D download remote
  field data (``len:2 LE`` + data), 0x1E load print message (name NUL padded + print count ``2 LE``),
  0x8D message print count (16-byte name, zeros = current → ``count:4 LE`` + name:16).
- [C] status reply data starts with the jet state (0x00 running) and the print state (0x04 printing,
  0x02 idle), then a 4-byte error mask and a 4-byte warning mask.

ASSUMED (confirm with Linx before production; protocols.md §9):

- 0x1F clears the remote buffer: the public material names no such command.
- Every C-status code (`CStatus`), the P-status byte (ignored here), jet states other than 0x00, print
  state 0x00 (no message loaded), and every bit of the error and warning masks (`ERROR_BITS`,
  `WARNING_BITS`); masks are read little-endian like the other multi-byte fields.
- A record with several fields goes down as one 0x1D download, the values joined by ``field_separator``
  (default: concatenated). The print count sent with 0x1E is 0 (no limit).
- The message print counter counts every print of the current message and nothing else; it does not
  step on a product detect with an empty buffer. Its 32-bit wrap is not handled.
- Remote buffer depth is model dependent (``remote_buffer_size``, default 16); a full buffer is a NAK.
- Field values go down as Latin-1 bytes; the CS byte is never stuffed (see the framer); a NAK names the
  refused command's id (a checksum-error NAK too) and comes from a device that carried nothing out.

Replies carry no sequence number: answers already received when a command goes out are discarded as
strays, but a duplicated answer arriving after the next command of the same id went out would be taken
for that command's answer. Only a same-id duplicate with a different outcome could mislead (a load ACK
standing in for a NAK).

Evidence: the print counter, read at connect and after every clear or job change as the base; each step
is the oldest record handed over and not yet reported. A counter that goes backwards (reset, power cycle)
or rises further than there are records outstanding is reported as `DeviceGarbage`, the outstanding
records get no PRINTED (which of them printed cannot be known: they go to reconciliation), and the driver
clears the remote buffer, so that no later step is taken for a record loaded behind them.

RS-232: frames carry 0x11 and 0x13 as data (start print is 0x11), so XON/XOFF must be off on the port
(the `TransportSpec` default, ``flow_control: none``).
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass
from enum import IntEnum
from typing import TYPE_CHECKING, ClassVar, Final, Self

from pydantic import Field, model_validator

from drivers.base import DeviceEvent, DeviceGarbage, DeviceInfo, DriverContext, DriverOptions
from drivers.framing.linx_rci import DEFAULT_MAX_LENGTH, Frame, RciFramer, Reply, encode_command
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
from drivers.transport.link import open_link
from edge.errors import DeviceRejectedError, ProtocolError, TransientDeviceError

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from drivers.transport.link import Link

MODEL: Final = "Linx RCI printer"

JET_TIMEOUT_S: Final = 60.0
"""Longest a jet start or stop may take to be answered: a CIJ head runs its start-up or flush sequence
before replying, up to 60 s per the public sample client [C]."""

DEFAULT_REMOTE_BUFFER: Final = 16
"""Remote buffer depth assumed when the options do not say (model and configuration dependent [?])."""

COUNT_NAME_WIDTH: Final = 16
"""Bytes of the message name in the 0x8D request and answer (all zero: the current message)."""

SELECT_PRINT_COUNT: Final = 0
"""Print count sent with load print message: 0 for no limit (ASSUMED)."""


class CmdId(IntEnum):
    START_JET = 0x0F
    STOP_JET = 0x10
    START_PRINT = 0x11
    STOP_PRINT = 0x12
    STATUS = 0x14
    DOWNLOAD_REMOTE_DATA = 0x1D
    LOAD_MESSAGE = 0x1E
    CLEAR_REMOTE_BUFFER = 0x1F
    """ASSUMED: not in the public material."""
    MESSAGE_PRINT_COUNT = 0x8D


class CStatus(IntEnum):
    """Command status byte of a reply (ASSUMED values: the manual's table is not public)."""

    OK = 0x00
    CHECKSUM_ERROR = 0x01
    UNKNOWN_COMMAND = 0x02
    BAD_DATA = 0x03
    UNKNOWN_MESSAGE = 0x04
    BUFFER_FULL = 0x05
    NOT_READY = 0x06
    REFUSED = 0x07


C_STATUS_TEXT: Final[Mapping[int, str]] = {
    CStatus.OK: "ok",
    CStatus.CHECKSUM_ERROR: "checksum error",
    CStatus.UNKNOWN_COMMAND: "unknown command",
    CStatus.BAD_DATA: "bad command data",
    CStatus.UNKNOWN_MESSAGE: "no such message",
    CStatus.BUFFER_FULL: "buffer full",
    CStatus.NOT_READY: "not ready (no message loaded)",
    CStatus.REFUSED: "command refused",
}


class JetState(IntEnum):
    RUNNING = 0x00
    STARTING = 0x01
    """ASSUMED."""
    STOPPING = 0x02
    """ASSUMED."""
    STOPPED = 0x03
    """ASSUMED."""


class PrintState(IntEnum):
    NOT_READY = 0x00
    """ASSUMED: no message loaded."""
    IDLE = 0x02
    PRINTING = 0x04


ERROR_BITS: Final[Mapping[FaultReason, int]] = {
    FaultReason.INK_OUT: 0,
    FaultReason.HEAD_FAULT: 1,
    FaultReason.DOOR_OPEN: 2,
    FaultReason.BUFFER_UNDERRUN: 3,
    FaultReason.BUFFER_OVERFLOW: 4,
    FaultReason.OTHER: 31,
}
"""Bit of the status error mask per fault (ASSUMED); the driver and the simulator share this one table.
Faults a CIJ does not have (ribbon, labels) show as OTHER."""

OTHER_WARNING: Final = "other"
_FAULT_NAMES: Final = frozenset(reason.value for reason in FaultReason)

WARNING_BITS: Final[Mapping[str, int]] = {
    FaultReason.BUFFER_UNDERRUN.value: 0,
    "ink-low": 1,
    "solvent-low": 2,
    "service-due": 3,
    OTHER_WARNING: 31,
}
"""Bit of the status warning mask per warning name (ASSUMED); a name that is a `FaultReason` value is
reported among the status's faults too."""


@dataclass(frozen=True, slots=True)
class RciStatus:
    """The data of a 0x14 status reply."""

    jet: int
    print_state: int
    errors: int = 0
    warnings: int = 0

    SIZE: ClassVar[int] = 10

    @classmethod
    def parse(cls, data: bytes) -> RciStatus:
        """Decode status reply data; ValueError when it is too short (later firmware appends more)."""
        if len(data) < cls.SIZE:
            raise ValueError(f"status reply data has {len(data)} bytes, expected at least {cls.SIZE}")
        return cls(data[0], data[1], int.from_bytes(data[2:6], "little"), int.from_bytes(data[6:10], "little"))

    def encode(self) -> bytes:
        """Return the status reply data."""
        return bytes([self.jet, self.print_state]) + self.errors.to_bytes(4, "little") + self.warnings.to_bytes(
            4, "little"
        )

    @property
    def faults(self) -> frozenset[FaultReason]:
        """Faults named by the error mask; bits not in the table count as OTHER."""
        named = {reason for reason, bit in ERROR_BITS.items() if self.errors >> bit & 1}
        known = sum(1 << bit for bit in ERROR_BITS.values())
        if self.errors & ~known:
            named.add(FaultReason.OTHER)
        return frozenset(named)

    @property
    def warning_names(self) -> list[str]:
        """Warnings named by the warning mask, unknown bits as ``bit<n>``."""
        names = {bit: name for name, bit in WARNING_BITS.items()}
        return [names.get(bit, f"bit{bit}") for bit in range(32) if self.warnings >> bit & 1]

    def to_printer_status(self) -> PrinterStatus:
        """Map onto the printer role's traffic light, keeping the device's words in detail."""
        detail = (
            f"jet=0x{self.jet:02X} print=0x{self.print_state:02X} errors=0x{self.errors:08X} "
            f"warnings=0x{self.warnings:08X}"
        )
        if self.errors:
            return PrinterStatus(PrinterState.FAULT, self.faults, detail + " " + ",".join(sorted(self.faults)))
        warned = frozenset(FaultReason(n) for n in self.warning_names if n in _FAULT_NAMES)
        if self.warnings:
            detail += " " + ",".join(self.warning_names)
        if self.jet != JetState.RUNNING:
            return PrinterStatus(PrinterState.STOPPED, warned, detail)
        if self.print_state == PrintState.PRINTING:
            return PrinterStatus(PrinterState.WARNING if self.warnings else PrinterState.PRINTING, warned, detail)
        if self.print_state == PrintState.IDLE:
            return PrinterStatus(PrinterState.READY, warned, detail)
        return PrinterStatus(PrinterState.STOPPED, warned, detail)


@dataclass(frozen=True, slots=True)
class PrintCount:
    """The data of a 0x8D reply: the message's print count and its name."""

    count: int
    message: str = ""

    SIZE: ClassVar[int] = 4 + COUNT_NAME_WIDTH

    @classmethod
    def parse(cls, data: bytes) -> PrintCount:
        """Decode print count reply data; ValueError when it is too short."""
        if len(data) < cls.SIZE:
            raise ValueError(f"print count reply data has {len(data)} bytes, expected {cls.SIZE}")
        name = data[4 : cls.SIZE].split(b"\0", 1)[0].decode("latin-1")
        return cls(int.from_bytes(data[:4], "little"), name)

    def encode(self) -> bytes:
        """Return the print count reply data."""
        return (self.count & 0xFFFFFFFF).to_bytes(4, "little") + message_name(self.message, COUNT_NAME_WIDTH)


def message_name(name: str, width: int) -> bytes:
    """Return name NUL padded to width bytes; ValueError when it does not fit or is not ASCII."""
    encoded = name.encode("ascii")
    if len(encoded) > width:
        raise ValueError(f"message name {name!r} is longer than {width} bytes")
    return encoded.ljust(width, b"\0")


def load_message_data(name: str, width: int, print_count: int = SELECT_PRINT_COUNT) -> bytes:
    """Return the data of a 0x1E load print message command."""
    return message_name(name, width) + print_count.to_bytes(2, "little")


def parse_load_message(data: bytes, width: int) -> tuple[str, int]:
    """Decode 0x1E data into (message name, print count); ValueError when the length is wrong."""
    if len(data) != width + 2:
        raise ValueError(f"load message data has {len(data)} bytes, expected {width + 2}")
    return data[:width].split(b"\0", 1)[0].decode("latin-1"), int.from_bytes(data[width:], "little")


def remote_field_data(value: bytes) -> bytes:
    """Return the data of a 0x1D download: ``len:2 LE`` then the bytes."""
    if len(value) > 0xFFFF:
        raise ValueError(f"remote field data of {len(value)} bytes does not fit a 2-byte length")
    return len(value).to_bytes(2, "little") + value


def parse_remote_field_data(data: bytes) -> bytes:
    """Decode 0x1D data into the field bytes; ValueError when the length does not match."""
    if len(data) < 2 or int.from_bytes(data[:2], "little") != len(data) - 2:
        raise ValueError("remote field data length does not match its bytes")
    return data[2:]


def describe_c_status(code: int) -> str:
    """Return the meaning of a C-status byte, with the byte itself."""
    return f"{C_STATUS_TEXT.get(code, 'error')} (C-status 0x{code:02X})"


class LinxRciPrinter(Printer):
    """A Linx CIJ printer over RCI: records go into its remote buffer, its print counter proves prints."""

    class Options(PrinterOptions):
        """How the printer is configured; match its RCI settings."""

        remote_buffer_size: int = Field(DEFAULT_REMOTE_BUFFER, ge=1, le=10_000)
        """Records the printer's remote buffer holds (model and configuration dependent: ask Linx)."""
        message_name_width: int = Field(16, ge=1, le=64)
        """Bytes of the message name in load print message, NUL padded (16 on the 8900, 8 on older clients)."""
        field_separator: str = ""
        """Put between the values of a record with several fields in its one remote field download."""

        @model_validator(mode="after")
        def _depth_fits_the_buffer(self) -> Self:
            if self.depth is not None and self.depth > self.remote_buffer_size:
                raise ValueError(f"depth {self.depth} exceeds the remote buffer of {self.remote_buffer_size}")
            return self

    def __init__(self, context: DriverContext, options: DriverOptions) -> None:
        if not isinstance(options, LinxRciPrinter.Options):
            raise TypeError(f"LinxRciPrinter takes LinxRciPrinter.Options, not {type(options).__name__}")
        super().__init__(context, options)
        self._options = options
        self._link: Link | None = None
        self._exchange: Exchange[Frame] | None = None
        self._used = False
        # Guards the mirror and the counter base together with the device commands that move them.
        self._state_lock = asyncio.Lock()
        self._mirror: deque[int] = deque()
        """record_ids accepted by the device and not yet reported printed, oldest first."""
        self._base = 0
        """The print counter value every record before the mirror's head accounts for."""
        self._last_status: PrinterStatus | None = None

    @property
    def capabilities(self) -> PrinterCapabilities:
        """Buffered loads into the remote buffer, print counter evidence, no host trigger."""
        depth = self._options.depth or self._options.remote_buffer_size
        return PrinterCapabilities(LoadStyle.BUFFERED, depth, EvidenceKind.PRINT_COUNTER, host_trigger=False)

    async def connect(self) -> DeviceInfo:
        """Open the link, ask status and print counter (a wrong device fails here), select the configured job."""
        if self._used:
            raise RuntimeError("a driver is single-use: make a new one to reconnect")
        self._used = True
        link = await open_link(
            self.context.transport, connect_timeout_s=self.context.connect_timeout_s, log=self.context.log
        )
        self._link = link
        self._exchange = Exchange(link, RciFramer(), self.context)
        try:
            status = await self.status()
            async with self._state_lock:
                self._base = await self._read_counter()
            if self._options.job is not None:
                await self.select_job(self._options.job)
        except (Exception, asyncio.CancelledError):
            await link.close()
            raise
        self.context.log.info("printer connected", peer=link.peer, state=status.state, counter=self._base)
        return DeviceInfo(model=MODEL)

    async def run(self) -> None:
        """Poll the counter and the status until the link drops (TransientDeviceError) or cancelled."""
        self._require()
        options = self._options
        status_every = max(1, round(options.status_interval_s / options.poll_interval_s))
        polls = 0
        while True:
            if polls % status_every == 0:
                await self._poll_status()
            await self._poll_evidence()
            polls += 1
            await self.context.sleep(options.poll_interval_s)

    async def close(self) -> None:
        """Close the link; idempotent and never raises."""
        if self._link is not None:
            await self._link.close()

    async def select_job(self, job: str) -> None:
        """Load message job; DeviceRejectedError naming it when the printer has no such message."""
        try:
            data = load_message_data(job, self._options.message_name_width)
        except ValueError as err:
            raise DeviceRejectedError(f"job {job!r} cannot be a message on this printer: {err}") from err
        async with self._state_lock:
            # Catch up on prints first: the counter is per message, so the base is lost with the switch.
            events = self._account(await self._read_counter())
            reply = await self._request(CmdId.LOAD_MESSAGE, data, what=f"load message {job!r}")
            dropped = self._drop_mirror() if reply.ack else []
            if reply.ack:
                self._base = await self._read_counter()
        await self._emit_all(events)
        if not reply.ack:
            _raise_if_transient(reply, f"load message {job!r}")
            raise DeviceRejectedError(f"printer refused job {job!r}: {describe_c_status(reply.c_status)}")
        if dropped:
            self.context.log.warning("job change dropped records from the buffer", job=job, record_ids=dropped)
        self.context.log.info("job selected", job=job)

    async def load(self, records: Sequence[PrintRecord]) -> None:
        """Download each record into the remote buffer in order; emit SENT or FAILED for each."""
        for record in records:
            await self._emit(await self._load_one(record))

    async def clear(self) -> None:
        """Empty the remote buffer; prints counted before the clear are reported, the rest never."""
        async with self._state_lock:
            await self._command(CmdId.CLEAR_REMOTE_BUFFER, what="clear remote buffer")
            # With the buffer empty the counter cannot step any more, so every step up to now is a record
            # printed before the clear took effect.
            events = self._account(await self._read_counter())
            dropped = self._drop_mirror()
        await self._emit_all(events)
        if dropped:
            self.context.log.info("records cleared from the buffer unprinted", record_ids=dropped)

    async def start(self) -> None:
        """Start printing on product detect (the jet must be running)."""
        await self._command(CmdId.START_PRINT, what="start print")

    async def stop(self) -> None:
        """Stop printing; the remote buffer keeps its records."""
        await self._command(CmdId.STOP_PRINT, what="stop print")

    async def start_jet(self) -> None:
        """Start the ink jet and return once the printer reports it done (up to JET_TIMEOUT_S)."""
        await self._command(CmdId.START_JET, what="start jet", timeout_s=JET_TIMEOUT_S)

    async def stop_jet(self) -> None:
        """Stop the ink jet and return once the printer reports it done (up to JET_TIMEOUT_S)."""
        await self._command(CmdId.STOP_JET, what="stop jet", timeout_s=JET_TIMEOUT_S)

    async def status(self) -> PrinterStatus:
        """Ask the printer for its status now."""
        reply = await self._command(CmdId.STATUS, what="status request")
        try:
            return RciStatus.parse(reply.data).to_printer_status()
        except ValueError as err:
            raise ProtocolError(f"status reply: {err}") from err

    async def counters(self) -> PrinterCounters:
        """Ask the printer for the current message's print count (it does not report its buffer level)."""
        return PrinterCounters(printed=await self._read_counter())

    # -- inside ---------------------------------------------------------------------------------

    def _require(self) -> Exchange[Frame]:
        if self._exchange is None:
            raise RuntimeError("the driver is not connected: call connect() first")
        return self._exchange

    async def _request(self, cmd: CmdId, data: bytes = b"", *, what: str, timeout_s: float | None = None) -> Reply:
        reply = await self._require().request(
            encode_command(cmd, data),
            lambda frame: isinstance(frame, Reply) and frame.cmd == cmd,
            timeout_s=self.context.response_timeout_s if timeout_s is None else timeout_s,
            what=what,
        )
        if not isinstance(reply, Reply):  # accept() takes replies only
            raise ProtocolError(f"{what}: not a reply: {reply!r}")
        return reply

    async def _command(self, cmd: CmdId, data: bytes = b"", *, what: str, timeout_s: float | None = None) -> Reply:
        reply = await self._request(cmd, data, what=what, timeout_s=timeout_s)
        if not reply.ack:
            _raise_if_transient(reply, what)
            raise DeviceRejectedError(f"{what}: printer refused it: {describe_c_status(reply.c_status)}")
        return reply

    async def _read_counter(self) -> int:
        reply = await self._command(
            CmdId.MESSAGE_PRINT_COUNT, bytes(COUNT_NAME_WIDTH), what="message print count request"
        )
        try:
            return PrintCount.parse(reply.data).count
        except ValueError as err:
            raise ProtocolError(f"print count reply: {err}") from err

    async def _load_one(self, record: PrintRecord) -> PrintEvidence:
        try:
            data = remote_field_data(self._record_bytes(record))
        except ValueError as err:
            return self._evidence(record.record_id, PrintOutcome.FAILED, str(err))
        async with self._state_lock:
            reply = await self._request(
                CmdId.DOWNLOAD_REMOTE_DATA, data, what=f"remote field data of record {record.record_id}"
            )
            if reply.ack:
                self._mirror.append(record.record_id)
                return self._evidence(record.record_id, PrintOutcome.SENT)
        return self._evidence(record.record_id, PrintOutcome.FAILED, describe_c_status(reply.c_status))

    def _record_bytes(self, record: PrintRecord) -> bytes:
        separator = self._options.field_separator
        values = [value for _, value in record.fields]
        if separator and any(separator in value for value in values):
            raise ValueError(f"a field value contains the field separator {separator!r}")
        try:
            encoded = separator.join(values).encode("latin-1")
        except UnicodeEncodeError as err:
            raise ValueError(f"a field value has a character the printer cannot take: {err.reason}") from err
        # Command id and the 2-byte length share the frame with the data.
        if len(encoded) + 3 > DEFAULT_MAX_LENGTH:
            raise ValueError(f"record of {len(encoded)} bytes is too long for one RCI frame")
        return encoded

    async def _poll_evidence(self) -> None:
        async with self._state_lock:
            events = self._account(await self._read_counter())
            if any(isinstance(event, DeviceGarbage) for event in events):
                # The buffer holds records the counter no longer maps to: empty it, or their prints would
                # be taken for records loaded after them.
                await self._command(CmdId.CLEAR_REMOTE_BUFFER, what="clear remote buffer after a counter anomaly")
                self._base = await self._read_counter()
        await self._emit_all(events)

    async def _poll_status(self) -> None:
        status = await self.status()
        if status != self._last_status:
            self._last_status = status
            self.context.log.info("printer status", state=status.state, detail=status.detail)
            await self._emit(PrinterStatusChanged(device_id=self.context.device_id, at=self.context.clock(),
                                                  status=status))

    def _account(self, count: int) -> list[DeviceEvent]:
        """Turn a new counter reading into PRINTED for mirrored records, or an anomaly report; call under the lock."""
        base, self._base = self._base, count
        steps = count - base
        if steps == 0:
            return []
        if 0 < steps <= len(self._mirror):
            return [self._evidence(self._mirror.popleft(), PrintOutcome.PRINTED) for _ in range(steps)]
        if steps < 0:
            reason = "print counter went backwards (reset or power cycle)"
        else:
            reason = f"print counter rose by {steps} with {len(self._mirror)} records in the buffer"
        dropped = self._drop_mirror()
        self.context.log.warning(
            "print counter anomaly; buffered records left for reconciliation",
            reason=reason, before=base, now=count, record_ids=dropped,
        )
        return [DeviceGarbage(device_id=self.context.device_id, at=self.context.clock(),
                              data=f"print count {base} -> {count}".encode(), reason=reason)]

    def _drop_mirror(self) -> list[int]:
        dropped = list(self._mirror)
        self._mirror.clear()
        return dropped

    def _evidence(self, record_id: int, outcome: PrintOutcome, detail: str = "") -> PrintEvidence:
        return PrintEvidence(device_id=self.context.device_id, at=self.context.clock(), record_id=record_id,
                             outcome=outcome, detail=detail)

    async def _emit(self, event: DeviceEvent) -> None:
        await self.context.events(event)

    async def _emit_all(self, events: Sequence[DeviceEvent]) -> None:
        for event in events:
            await self._emit(event)


def _raise_if_transient(reply: Reply, what: str) -> None:
    if reply.c_status == CStatus.CHECKSUM_ERROR:
        # The command was garbled on the way: the device did nothing, the link is suspect.
        raise TransientDeviceError(f"{what}: printer got a bad checksum: {describe_c_status(reply.c_status)}")
