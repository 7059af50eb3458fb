"""Videojet 1000-line CIJ printers (1220/1520/1620/1710/1860...) over the "WSI" protocol, TCP 3100 or RS-232.

Layers: `Link` (bytes) → `drivers.framing.wsi` (frames) → the commands below (data) → `WsiPrinter` (the
printer role). Facts and their standing (tags as in protocols.md §1.1):

- Frame, checksum (sum of command + data mod 256) and ACK ``$XX`` carrying the checksum of the command
  received: [C], proved by ``$7F`` for ``O0`` and ``$80`` for ``O1``. Commands without a checksum are
  accepted by 1620/1710 printers [C]; option ``checksum``.
- Command letters M, U, D, O, E, Q, G, R, H, K: [C] (third-party integration code, not the vendor PDF).
- ASSUMED: a NAK ``!XX`` carries the checksum of the refused command, like the ACK (only the ACK is proved);
  a NAK whose checksum is not the pending command's is treated as a stray, so a firmware that puts an error
  code there shows as a missing answer (TransientDeviceError), never as a refusal of the wrong command.
- ASSUMED: ``G`` answers ``STX <decimal count> ETX``; ``GA``/``GB`` are seen in the wild (option
  ``counter``); one public emulator treats ``G<name>`` as a user-field read-back instead.
- ASSUMED: ``H`` answers ``STX <part number> ETX``; ``D <field>`` empties one user field.
- ``E`` answers seven hex digits, six fault nibbles then one alarm nibble [C]; the bit names are those of
  GlenCashen ``server/wsi-status.js`` [C]; which bits stop printing (fault) and which only warn, and how
  they map onto `FaultReason`, is ours (ASSUMED). The alarm nibble (1 green, 2 amber, 4 red, 8 alarm
  active) is [?]: the same repository's emulator disagrees with its decoder.
- WSI has no FIFO and no print-complete message: one record at a time (single-shot), print evidence from
  polling the print counter. A product passing while no new record was loaded prints the message again
  (a real duplicate, logged as "printed again", never reported as a second print of the record).

Limits an integrator must know: data replies carry no checksum and no request id, so a corrupted or
duplicated reply is only caught when it does not look like the answer asked for (a 7-digit counter reads
like a status); a product detect between the counter read that starts a load and the acknowledgement of
its last field may count as the new record's print (interlock the line so that no product passes while a
record is being loaded); after the counter goes backwards (reset on the panel) no print is reported until
it is past its last good value again (`WsiPrinter.reset_counter` keeps evidence right). Serial settings
are the printer's (9600 8N1 usual [K]).
"""

from __future__ import annotations

import asyncio
import math
import re
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Literal

from drivers.base import DeviceEvent, DeviceGarbage, DeviceInfo, DriverContext, DriverOptions
from drivers.framing.wsi import Ack, Answer, Nak, Reply, WsiReplyFramer, checksum, encode_request
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
    from collections.abc import Callable, Sequence

MODEL: Final = "Videojet 1000-line CIJ (WSI)"
DEFAULT_PORT: Final = 3100
"""TCP port WSI printers listen on [C]."""

# All timeouts are in seconds.

MESSAGE_SELECT_TIMEOUT_S: Final = 5.0
"""Longest a message select may take: the printer loads the message from its store and rebuilds the print
raster before it acknowledges; long messages take seconds on 1000-line firmware (ASSUMED, confirm)."""


# -- commands as data -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Command:
    """One WSI command: its letter and data fields."""

    letter: str
    fields: tuple[str, ...] = ()

    @property
    def checksum(self) -> int:
        """The checksum the printer's ACK or NAK of this command carries."""
        return checksum(encode_request(self.letter, *self.fields, with_checksum=False)[1:-1])

    def encode(self, *, with_checksum: bool) -> bytes:
        """Return the command frame; ValueError for data WSI cannot carry."""
        return encode_request(self.letter, *self.fields, with_checksum=with_checksum)

    def __str__(self) -> str:
        return f"{self.letter} {' '.join(self.fields)}".rstrip()


def select_message(name: str) -> Command:
    """``M``: make message name current; ACK, or NAK when the printer has no such message."""
    return Command("M", (name,))


def update_field(name: str, value: str) -> Command:
    """``U``: set user field name of the current message to value; NAK when the message has no such field."""
    return Command("U", (name, value))


def delete_field(name: str) -> Command:
    """``D``: empty user field name of the current message."""
    return Command("D", (name,))


def print_on() -> Command:
    """``O1``: enable printing on product detect."""
    return Command("O", ("1",))


def print_off() -> Command:
    """``O0``: disable printing."""
    return Command("O", ("0",))


def error_status() -> Command:
    """``E``: ask for the seven-hex-digit fault and alarm status."""
    return Command("E")


def current_message() -> Command:
    """``Q``: ask for the name of the current message."""
    return Command("Q")


def print_counter(select: str = "") -> Command:
    """``G``: ask for the print counter (``GA``/``GB`` with select)."""
    return Command("G", (select,) if select else ())


def reset_counter(select: str = "") -> Command:
    """``R``: reset the print counter."""
    return Command("R", (select,) if select else ())


def part_number() -> Command:
    """``H``: ask for the software part number."""
    return Command("H")


_COUNTER: Final = re.compile(rb"\s*(\d{1,12})\s*")
_STATUS: Final = re.compile(rb"[0-9A-Fa-f]{7}")


def parse_counter(text: bytes) -> int:
    """Return the count in a ``G`` reply; ValueError when it is not decimal digits."""
    match = _COUNTER.fullmatch(text)
    if match is None:
        raise ValueError(f"not a print counter: {text!r}")
    return int(match.group(1))


def is_counter(text: bytes) -> bool:
    """Tell whether text reads as a ``G`` reply."""
    return _COUNTER.fullmatch(text) is not None


def is_status(text: bytes) -> bool:
    """Tell whether text reads as an ``E`` reply."""
    return _STATUS.fullmatch(text) is not None


# -- the E status -----------------------------------------------------------------------------------

ALARM_GREEN: Final = 1
ALARM_AMBER: Final = 2
ALARM_RED: Final = 4
ALARM_ACTIVE: Final = 8


@dataclass(frozen=True, slots=True)
class FaultBit:
    """One bit of the six fault nibbles of an ``E`` reply, and what it means for the line."""

    nibble: int
    """1 for the first hex digit of the reply, 6 for the last fault digit."""
    bit: int
    code: str
    label: str
    reason: FaultReason | None
    """The fault it is, or None when it only warns (printing goes on) — our classification, ASSUMED."""


def _bits(nibble: int, *entries: tuple[str, str, FaultReason | None]) -> tuple[FaultBit, ...]:
    return tuple(FaultBit(nibble, 1 << i, code, label, reason) for i, (code, label, reason) in enumerate(entries))


_HEAD, _INK, _OTHER = FaultReason.HEAD_FAULT, FaultReason.INK_OUT, FaultReason.OTHER

FAULT_BITS: Final[tuple[FaultBit, ...]] = (
    *_bits(
        1,
        ("CHARGE_ERROR", "Charge error", _HEAD),
        ("EHT_TRIP", "EHT trip", _HEAD),
        ("GUTTER_FAULT", "Gutter fault", _HEAD),
        ("INK_CORE_EMPTY", "Ink core empty", _INK),
    ),
    *_bits(
        2,
        ("PUMP_FAULT", "Pump fault", _OTHER),
        ("CABINET_TOO_HOT", "Cabinet too hot", _OTHER),
        ("INK_CORE_SERVICE_OVERDUE", "Ink core service overdue", None),
        ("VISCOSITY_CONTROL_FAILED", "Unable to control viscosity", _OTHER),
    ),
    *_bits(
        3,
        ("BAD_NOZZLE", "Bad nozzle", _HEAD),
        ("MOD_DRIVER_OVER_TEMPERATURE", "Mod driver chip over temperature", _HEAD),
        ("NO_PHASE_RESPONSE", "No phase response from firmware", _HEAD),
        ("PHASING_THRESHOLD_MINIMUM", "Phasing threshold at minimum", _HEAD),
    ),
    *_bits(
        4,
        ("PHASING_THRESHOLD_MAXIMUM", "Phasing threshold at maximum", _HEAD),
        ("AUTO_MODULATION_FAILED", "Auto modulation failed", _HEAD),
        ("INITIAL_PHASING_TRIM_FAILED", "Initial phasing trim failed", _HEAD),
        ("MODULATION_READBACK_FAILED", "Modulation readback failed", _HEAD),
    ),
    *_bits(
        5,
        ("RASTER_MEMORY_OVERFLOW", "Raster memory overflow", _OTHER),
        ("VALVE_ERROR", "Valve error", _OTHER),
        ("CORE_NOT_FILLING", "Core not filling", _OTHER),
        ("INSUFFICIENT_INK_TO_FILL_CORE", "Insufficient ink to fill core", _INK),
    ),
    *_bits(
        6,
        ("DATE_TIME_NOT_SET", "Date/time not set", None),
        ("INK_REFERENCE_MISMATCH", "New ink core has a different ink reference", None),
        ("EHT_CALIBRATION_REQUIRED", "EHT calibration required", None),
        ("RESERVED_FAULT_BIT", "Unassigned fault bit", _OTHER),
    ),
)
"""Every fault bit, names and positions from GlenCashen ``server/wsi-status.js`` [C]."""


@dataclass(frozen=True, slots=True)
class ErrorStatus:
    """An ``E`` reply: the fault bits set and the alarm nibble."""

    faults: tuple[FaultBit, ...] = ()
    alarm: int = 0

    @classmethod
    def parse(cls, text: bytes) -> ErrorStatus:
        """Decode seven hex digits; ValueError for anything else."""
        if not is_status(text):
            raise ValueError(f"not a WSI error status: {text!r}")
        nibbles = [int(c, 16) for c in text.decode("ascii")]
        faults = tuple(f for f in FAULT_BITS if nibbles[f.nibble - 1] & f.bit)
        return cls(faults, nibbles[6])

    def encode(self) -> bytes:
        """Return the seven hex digits the printer sends for this status."""
        nibbles = [0] * 7
        for fault in self.faults:
            nibbles[fault.nibble - 1] |= fault.bit
        nibbles[6] = self.alarm & 0xF
        return "".join(f"{n:X}" for n in nibbles).encode("ascii")

    def status(self) -> PrinterStatus:
        """Map onto the printer role's traffic light (mapping ASSUMED, see the module docstring)."""
        words = [f"E {self.encode().decode()}"] + [f.label for f in self.faults]
        detail = ": ".join((words[0], ", ".join(words[1:]))) if len(words) > 1 else words[0]
        reasons = frozenset(f.reason for f in self.faults if f.reason is not None)
        if reasons or self.alarm & ALARM_RED:
            return PrinterStatus(PrinterState.FAULT, reasons or frozenset({FaultReason.OTHER}), detail)
        if self.faults or self.alarm & ALARM_AMBER:
            return PrinterStatus(PrinterState.WARNING, detail=detail)
        if self.alarm & ALARM_GREEN:
            return PrinterStatus(PrinterState.PRINTING, detail=detail)
        # No light and no fault: WSI has no query telling "jet off" from "printing off"; O1 may be sent.
        return PrinterStatus(PrinterState.READY, detail=detail)


# -- the role adapter -------------------------------------------------------------------------------


class WsiPrinter(Printer):
    """A Videojet 1000-line CIJ printer: one record at a time in user fields, evidence from its print counter."""

    class Options(PrinterOptions):
        """How the printer's WSI port is set up; match its communication settings."""

        checksum: bool = True
        """Append the two-hex-digit checksum to every command (the printer takes commands with or without)."""
        counter: Literal["", "A", "B"] = ""
        """Which counter G reads and R resets: "" plain G, "A"/"B" as some integrations send (ASSUMED)."""

    def __init__(self, context: DriverContext, options: DriverOptions) -> None:
        if not isinstance(options, WsiPrinter.Options):
            raise TypeError(f"WsiPrinter takes WsiPrinter.Options, not {type(options).__name__}")
        super().__init__(context, options)
        self._options = options
        self._framer = WsiReplyFramer()
        self._link: Link | None = None
        self._exchange: Exchange[Answer] | None = None
        self._used = False
        self._loading = False
        self._outbox: deque[DeviceEvent] = deque()
        self._last_status: PrinterStatus | None = None
        # Print evidence. Every request gets a number in the order it goes on the wire (the exchange's lock
        # is first come, first served): a counter reading is compared with the last one accounted, and the
        # loaded record can only be the print a reading shows if its last field was taken before that read.
        self._seq = 0
        self._pending: PrintRecord | None = None
        self._pending_seq = 0
        self._counter: int | None = None
        self._counter_seq = -1
        self._backwards = False
        if options.depth not in (None, 1):
            context.log.warning("a WSI printer holds one record; depth ignored", depth=options.depth)

    @property
    def capabilities(self) -> PrinterCapabilities:
        """Single-shot, one record, evidence from the polled print counter, no host print command."""
        return PrinterCapabilities(LoadStyle.SINGLE_SHOT, 1, EvidenceKind.PRINT_COUNTER, host_trigger=False)

    async def connect(self) -> DeviceInfo:
        """Open the link, ask for the part number and the counter, select the configured job."""
        if self._used:
            raise RuntimeError("a driver is single-use: make a new one to reconnect")
        self._used = True
        self._link = await open_link(
            self.context.transport, connect_timeout_s=self.context.connect_timeout_s, log=self.context.log
        )
        try:
            self._exchange = Exchange(self._link, self._framer, self.context)
            part = await self._query(part_number(), "part number", lambda text: bool(text.strip()))
            await self._poll_evidence()
            if self._options.job is not None:
                await self.select_job(self._options.job)
        except (Exception, asyncio.CancelledError):
            await self._link.close()
            raise
        info = DeviceInfo(model=MODEL, firmware=part.decode("latin-1").strip())
        self.context.log.info("printer connected", peer=self._link.peer, part_number=info.firmware)
        return info

    async def run(self) -> None:
        """Poll the counter and the status until the link is lost (TransientDeviceError) or cancelled."""
        self._require()
        options = self._options
        since_status = math.inf
        while True:
            if since_status >= options.status_interval_s:
                since_status = 0.0
                await self._poll_status()
            await self._poll_evidence()
            await self._flush()
            await self.context.sleep(options.poll_interval_s)
            since_status += options.poll_interval_s

    async def close(self) -> None:
        """Close the link; idempotent and never raises."""
        if self._link is not None:
            await self._link.close()

    async def select_job(self, job: str) -> None:
        """Make message job current; DeviceRejectedError naming it when the printer has none such."""
        self._require()
        try:
            await self._poll_evidence()
            timeout_s = max(self.context.response_timeout_s, MESSAGE_SELECT_TIMEOUT_S)
            accepted = await self._ack(select_message(job), f"select message {job!r}", timeout_s=timeout_s)
            if not accepted:
                raise DeviceRejectedError(f"printer has no message {job!r} (M refused)")
            self._forget_pending("message selected")
        finally:
            await self._flush()

    async def load(self, records: Sequence[PrintRecord]) -> None:
        """Put one record in the message's user fields (U per field); SENT, or FAILED when any field is refused.

        WSI holds one record: more than one is a ValueError, and loading while the last record has no print
        evidence yet is a RuntimeError (clear() first). An empty sequence does nothing.
        """
        self._require()
        if not records:
            return
        if len(records) > 1:
            raise ValueError(f"a WSI printer takes one record at a time, not {len(records)}")
        if self._loading:
            raise RuntimeError("another load() is in progress")
        if self._pending is not None:
            raise RuntimeError(
                f"record {self._pending.record_id} is loaded and not yet printed; a WSI printer holds one record"
            )
        self._loading = True
        try:
            # Prints before this read cannot be the new record's: they are accounted now, not after the load.
            await self._poll_evidence()
            await self._send(records[0])
        finally:
            self._loading = False
            await self._flush()

    async def clear(self) -> None:
        """Empty every configured user field (D per field); the loaded record is never reported printed after."""
        self._require()
        try:
            await self._poll_evidence()  # prints that already happened are still reported
            self._forget_pending("cleared")
            for name in self._options.fields:
                if not await self._ack(delete_field(name), f"delete field {name!r}"):
                    raise DeviceRejectedError(f"printer refused to empty field {name!r} (D refused)")
        finally:
            await self._flush()

    async def start(self) -> None:
        """Enable printing (O1)."""
        if not await self._ack(print_on(), "print on"):
            raise DeviceRejectedError("printer refused print on (O1)")

    async def stop(self) -> None:
        """Disable printing (O0); the loaded record stays in the message."""
        if not await self._ack(print_off(), "print off"):
            raise DeviceRejectedError("printer refused print off (O0)")

    async def status(self) -> PrinterStatus:
        """Ask the printer for its error status (E) now."""
        text = await self._query(error_status(), "error status", is_status)
        return ErrorStatus.parse(text).status()

    async def counters(self) -> PrinterCounters:
        """Ask the printer for its print counter (G) now; WSI says nothing of a buffer."""
        text = await self._query(print_counter(self._options.counter), "print counter", is_counter)
        return PrinterCounters(printed=parse_counter(text))

    async def current_message(self) -> str:
        """Ask the printer which message is current (Q)."""
        return (await self._query(current_message(), "current message", lambda _: True)).decode("latin-1")

    async def reset_counter(self) -> None:
        """Reset the print counter (R); evidence goes on from the new value."""
        self._require()
        try:
            await self._poll_evidence()
            command = reset_counter(self._options.counter)
            answer, seq = await self._request(command, self._ack_of(command), "reset counter")
            if isinstance(answer, Nak):
                raise DeviceRejectedError("printer refused to reset its counter (R)")
            self._counter, self._counter_seq, self._backwards = 0, seq, False
        finally:
            await self._flush()

    # -- inside ---------------------------------------------------------------------------------

    async def _send(self, record: PrintRecord) -> None:
        try:
            commands = [(name, update_field(name, value)) for name, value in record.fields]
            for _, command in commands:
                command.encode(with_checksum=False)
        except ValueError as err:
            self._evidence(record, PrintOutcome.FAILED, f"cannot be sent over WSI: {err}")
            return
        if not commands:
            self._evidence(record, PrintOutcome.FAILED, "record has no fields")
            return
        taken: list[str] = []
        seq = 0
        for name, command in commands:
            answer, seq = await self._request(command, self._ack_of(command), f"update field {name!r}")
            if isinstance(answer, Nak):
                self._evidence(record, PrintOutcome.FAILED, f"printer refused field {name!r} (U NAK)")
                await self._undo(taken)
                return
            taken.append(name)
        self._pending, self._pending_seq = record, seq
        self._evidence(record, PrintOutcome.SENT)

    async def _undo(self, names: list[str]) -> None:
        """Empty fields already updated for a refused record, so the message does not print half of it."""
        for name in names:
            if not await self._ack(delete_field(name), f"delete field {name!r}"):
                self.context.log.warning("printer refused to empty a field after a refused record", field=name)

    async def _poll_evidence(self) -> None:
        command = print_counter(self._options.counter)
        answer, seq = await self._request(command, self._reply_of(command, is_counter), "print counter")
        self._account(parse_counter(self._text(answer, command, "print counter")), seq)

    def _account(self, counter: int, seq: int) -> None:
        """Turn one counter reading into evidence; a reading older than one already accounted is ignored."""
        if seq < self._counter_seq:
            return
        last, self._counter, self._counter_seq = self._counter, counter, seq
        if last is None:
            return
        steps = counter - last
        if steps < 0:
            # A stale or corrupted reply, or a reset on the panel: either way no reading can be trusted to
            # name a print until the counter is past the last good value again, so the baseline stays.
            self._counter = last
            if not self._backwards:
                self._backwards = True
                reason = f"print counter went backwards from {last} to {counter}"
                self.context.log.warning("print counter went backwards; ignored", last=last, now=counter)
                self._emit(DeviceGarbage(device_id=self.context.device_id, at=self.context.clock(),
                                         data=str(counter).encode(), reason=reason))
            return
        self._backwards = False
        pending = self._pending
        if steps and pending is not None and seq > self._pending_seq:
            self._pending = None
            self._evidence(pending, PrintOutcome.PRINTED)
            steps -= 1
        if steps:
            # No new record reached the message: the printer printed what it already had (a real duplicate).
            self.context.log.warning("message printed again with no new record", prints=steps, counter=counter)

    async def _poll_status(self) -> None:
        status = await self.status()
        if status != self._last_status:
            self._last_status = status
            self._emit(PrinterStatusChanged(device_id=self.context.device_id, at=self.context.clock(), status=status))

    def _forget_pending(self, why: str) -> None:
        if self._pending is not None:
            self.context.log.info("loaded record dropped without print evidence",
                                  record_id=self._pending.record_id, why=why)
        self._pending = None

    async def _ack(self, command: Command, what: str, *, timeout_s: float | None = None) -> bool:
        """Send a command answered by ACK or NAK; True when acknowledged."""
        answer, _ = await self._request(command, self._ack_of(command), what, timeout_s)
        return isinstance(answer, Ack)

    async def _query(self, command: Command, what: str, valid: Callable[[bytes], bool]) -> bytes:
        """Send a command answered by a data reply; ProtocolError when the printer refuses it."""
        answer, _ = await self._request(command, self._reply_of(command, valid), what)
        return self._text(answer, command, what)

    @staticmethod
    def _ack_of(command: Command) -> Callable[[Answer], bool]:
        """Accept the ACK or NAK of command only: one carrying another checksum is a late or duplicated one."""
        expected = command.checksum
        return lambda f: isinstance(f, Ack | Nak) and f.checksum == expected

    @staticmethod
    def _reply_of(command: Command, valid: Callable[[bytes], bool]) -> Callable[[Answer], bool]:
        """Accept a data reply that reads as the answer asked for, or the NAK of command."""
        expected = command.checksum
        return lambda f: (isinstance(f, Reply) and valid(f.text)) or (isinstance(f, Nak) and f.checksum == expected)

    @staticmethod
    def _text(answer: Answer, command: Command, what: str) -> bytes:
        if not isinstance(answer, Reply):
            raise ProtocolError(f"printer refused {what} ({command.letter} NAK)")
        return answer.text

    async def _request(
        self, command: Command, accept: Callable[[Answer], bool], what: str, timeout_s: float | None = None
    ) -> tuple[Answer, int]:
        """Send command and return its answer with the request's place in wire order."""
        exchange = self._require()
        data = command.encode(with_checksum=self._options.checksum)
        # Numbered with no await before the exchange's lock, which serves waiters in order: seq is wire order.
        seq = self._next_seq()
        answer = await exchange.request(
            data, accept, timeout_s=self.context.response_timeout_s if timeout_s is None else timeout_s, what=what
        )
        return answer, seq

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _require(self) -> Exchange[Answer]:
        if self._exchange is None:
            raise RuntimeError("connect() first")
        return self._exchange

    def _evidence(self, record: PrintRecord, outcome: PrintOutcome, detail: str = "") -> None:
        self._emit(PrintEvidence(device_id=self.context.device_id, at=self.context.clock(),
                                 record_id=record.record_id, outcome=outcome, detail=detail))

    def _emit(self, event: DeviceEvent) -> None:
        self._outbox.append(event)

    async def _flush(self) -> None:
        """Hand queued events to the sink, oldest first; called with no request of ours outstanding."""
        while self._outbox:
            await self.context.events(self._outbox.popleft())
