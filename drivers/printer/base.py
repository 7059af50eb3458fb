"""The printer role: coding printers (TIJ, CIJ, TTO, laser) and label printers, whatever their wire dialect.

Every serialization printer does the same five things (reference: protocols.md §0): select a job, take
variable data (one record at a time, or into a buffer it pops one record from per product detect), start
and stop printing, give some evidence that a record was printed, and report its status. `Printer` is that
model; each dialect maps its commands onto it and declares what it can do in `PrinterCapabilities`, so the
line never guesses a device's buffer depth or how it proves a print.

Identity: the line gives each record a `record_id` (the serial's row id). Every `PrintEvidence` a driver
emits names the record by that id, worked out from what the device itself reports (its record index, its
counter or queue level against the records the driver handed it, in order), never by the line counting
products.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, ClassVar, Final, Literal

from pydantic import Field, field_validator

from drivers.base import DeviceEvent, Driver, DriverOptions
from edge.errors import DeviceRejectedError

if TYPE_CHECKING:
    from collections.abc import Sequence

DEFAULT_POLL_INTERVAL_S: Final = 0.01
"""How often a driver asks a polled printer for evidence by default: at 3,000 packs a minute one pack passes
every 20 ms, so polling twice as often keeps evidence within one pack of the print."""


FIELD_SOURCES: Final = frozenset({"code", "serial", "hri"})
"""What a printer field can carry besides one AI's value: the whole element string, the serial, the HRI text."""


class LoadStyle(StrEnum):
    """How variable data reaches the device."""

    SINGLE_SHOT = "single-shot"
    """One record in the current message; the next may be loaded only after evidence that this one printed."""
    BUFFERED = "buffered"
    """A FIFO in the device; each product detect pops and prints the oldest record."""


class EvidenceKind(StrEnum):
    """What proves, on this device, that a record was printed."""

    ACK_AFTER_PRINT = "ack-after-print"
    """The device answers a print command only once it has printed (Zipher PRN, Keyence StartMarking)."""
    RECORD_INDEX = "record-index"
    """The device reports the index of the last record it printed (Zipher SLR)."""
    PRINT_COUNTER = "print-counter"
    """The device's print counter, polled; each step is the next record handed over (Linx 8Dh, WSI G)."""
    QUEUE_LEVEL = "queue-level"
    """Records still queued in the device, polled; each one gone is printed (Domino PollSerialVar)."""
    LABEL_STATUS = "label-status"
    """Formats waiting and labels remaining in the host status (Zebra ~HS)."""


@dataclass(frozen=True, slots=True)
class PrinterCapabilities:
    """What one printer can do, declared by its driver from the device's protocol and options."""

    load: LoadStyle
    buffer_depth: int
    """Most records the line may have in the device at once that it has no print evidence for (1 single-shot)."""
    evidence: EvidenceKind
    host_trigger: bool = False
    """The host can make the device print the loaded record now (`Printer.trigger`); otherwise only the
    device's own product detect (photo-eye, encoder) prints."""

    def __post_init__(self) -> None:
        if self.buffer_depth < 1:
            raise ValueError(f"a printer holds at least one record, not {self.buffer_depth}")
        if self.load is LoadStyle.SINGLE_SHOT and self.buffer_depth != 1:
            raise ValueError("a single-shot printer holds exactly one record")


@dataclass(frozen=True, slots=True)
class PrintRecord:
    """One print: the line's identity for it, and the value of each variable field of the device's message."""

    record_id: int
    """The line's identity for this print (the serial's row id); every evidence names it."""
    fields: tuple[tuple[str, str], ...]
    """Variable field name → value, in the order the printer options list them."""

    def value(self, name: str) -> str:
        """Return the value of field name; KeyError names the fields there are."""
        for field_name, value in self.fields:
            if field_name == name:
                return value
        raise KeyError(f"record {self.record_id} has no field {name!r} (fields: {[n for n, _ in self.fields]})")


class PrintOutcome(StrEnum):
    SENT = "sent"
    """The device accepted the record into its buffer or message."""
    PRINTED = "printed"
    """The device reports it printed the record."""
    FAILED = "failed"
    """The device refused the record (NAK, buffer full, field unknown); it was not accepted."""


@dataclass(frozen=True, slots=True, kw_only=True)
class PrintEvidence(DeviceEvent):
    """What the device said about one record, named by the line's record id."""

    record_id: int
    outcome: PrintOutcome
    detail: str = ""


class PrinterState(StrEnum):
    STOPPED = "stopped"
    """Not able to print now: shut down, starting up, jet off, printing disabled by the device."""
    READY = "ready"
    """Able to print once printing is started."""
    PRINTING = "printing"
    """Printing on every product detect."""
    WARNING = "warning"
    """Printing, with a warning an operator should see (ink low, ribbon low, service due)."""
    FAULT = "fault"
    """Not printing because of a fault (see `PrinterStatus.faults`)."""


class FaultReason(StrEnum):
    INK_OUT = "ink-out"
    RIBBON_OUT = "ribbon-out"
    LABELS_OUT = "labels-out"
    HEAD_FAULT = "head-fault"
    BUFFER_UNDERRUN = "buffer-underrun"
    """A product passed with no record left to print."""
    BUFFER_OVERFLOW = "buffer-overflow"
    DOOR_OPEN = "door-open"
    OTHER = "other"
    """A fault the driver cannot name more precisely; `PrinterStatus.detail` has the device's words."""


@dataclass(frozen=True, slots=True)
class PrinterStatus:
    """The device's traffic light, with the reasons for amber and red."""

    state: PrinterState
    faults: frozenset[FaultReason] = frozenset()
    detail: str = ""
    """The device's own codes or text, for the operator and the log."""

    @property
    def can_print(self) -> bool:
        """True when the device prints (or will once started): ready, printing or warning."""
        return self.state in (PrinterState.READY, PrinterState.PRINTING, PrinterState.WARNING)


@dataclass(frozen=True, slots=True, kw_only=True)
class PrinterStatusChanged(DeviceEvent):
    """The device's status is no longer what it last was."""

    status: PrinterStatus


@dataclass(frozen=True, slots=True)
class PrinterCounters:
    """The device's counters as it reports them."""

    printed: int
    """Prints (or products) counted by the device since its counter was last reset."""
    buffered: int | None = None
    """Records waiting in the device's buffer, when the device says."""


class PrinterOptions(DriverOptions):
    """Options every printer driver takes; a dialect adds its own."""

    feeds: Literal["units", "labels"] = "units"
    """units: the print feeder keeps it filled with the running batch's serials (unit codes); labels: it prints
    case and pallet labels when aggregation closes a container."""
    job: str | None = None
    """Job, message, program or stored format selected at connect (None: keep what the device has)."""
    fields: dict[str, str] = Field(default_factory=lambda: {"CODE": "code"}, min_length=1)
    """The message's variable fields and what each carries: "code" (the GS1 element string, GS as 0x1D),
    "serial", "hri" (the human-readable text), or an AI like "21" or "10"."""
    depth: int | None = Field(None, ge=1, le=10_000)
    """Records kept in the device ahead of the line (default: the driver's own, within the device's limit)."""
    poll_interval_s: float = Field(DEFAULT_POLL_INTERVAL_S, gt=0, le=10)
    """How often evidence is polled on devices that do not announce prints."""
    status_interval_s: float = Field(0.5, gt=0, le=60)
    """How often the device status is polled."""

    @field_validator("fields")
    @classmethod
    def _sources(cls, fields: dict[str, str]) -> dict[str, str]:
        for name, source in fields.items():
            if source not in FIELD_SOURCES and not (source.isdigit() and 2 <= len(source) <= 4):
                raise ValueError(
                    f'field {name!r} carries {source!r}: say "code", "serial", "hri" or an AI like "21"'
                )
        return fields


class Printer(Driver, abc.ABC):
    """A printer. Contract for every implementation.

    - `capabilities` is fixed once connect() returned; the line keeps at most ``buffer_depth`` records
      without evidence in the device.
    - load() hands records over in order and emits `PrintEvidence` SENT (accepted) or FAILED (refused) for
      each before it returns; a refused record is never retried by the driver.
    - run() serves the link: it polls (or listens for) print evidence and emits PRINTED once per record, in
      the order printed, and emits `PrinterStatusChanged` whenever the status differs from the last one.
    - A missing or late answer is a lost link (`TransientDeviceError`): the device's state is then unknown.
    - Events are emitted with no request outstanding, so a sink may call back into the driver.
    """

    role: ClassVar[str] = "printer"
    Options: ClassVar[type[DriverOptions]] = PrinterOptions

    @property
    @abc.abstractmethod
    def capabilities(self) -> PrinterCapabilities:
        """What this device can do, from its protocol and options."""

    @abc.abstractmethod
    async def select_job(self, job: str) -> None:
        """Make job the current message; DeviceRejectedError when the device has no such job."""

    @abc.abstractmethod
    async def load(self, records: Sequence[PrintRecord]) -> None:
        """Hand records to the device in order; emit SENT or FAILED for each before returning."""

    @abc.abstractmethod
    async def clear(self) -> None:
        """Empty the device's buffer; records still in it are never reported printed afterwards."""

    @abc.abstractmethod
    async def start(self) -> None:
        """Enable printing on product detect."""

    @abc.abstractmethod
    async def stop(self) -> None:
        """Disable printing; records stay in the buffer."""

    @abc.abstractmethod
    async def status(self) -> PrinterStatus:
        """Ask the device for its status now."""

    @abc.abstractmethod
    async def counters(self) -> PrinterCounters:
        """Ask the device for its counters now."""

    async def trigger(self) -> None:
        """Print the loaded record now and return once it is printed (host_trigger devices only)."""
        raise DeviceRejectedError(f"{type(self).__name__} prints on its own product detect; the host cannot trigger it")
