"""The device behind every simulated printer: jobs, variable data, a buffer, printing, counters and faults.

`PrinterEngine` is what a coding or label printer does, with no wire protocol in it; each dialect's
simulator (`PrinterSimulator` subclass) parses its own frames with the driver's framer and drives the
engine. Faults come in three kinds:

- byte faults on the link (garbage, corruption, disconnect mid-frame, delays): `Simulator.faults`;
- answer faults, one-shot, for the next answer the device gives: NAK, missing, duplicated or late
  (`PrinterEngine.inject_reply`, applied by `PrinterSimulator.answer`);
- device faults: out of ink (now, or after N more prints), ribbon or labels out, head fault, door open,
  buffer full, power cycle with the buffer lost.

Everything printed is recorded in order (`PrinterEngine.printed`) with the field values as the device
composed them, so the camera simulator can render exactly what is on each pack.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Final

from drivers.printer.base import FaultReason, PrinterState
from simulators.base import LOOPBACK, SimTransport, Simulator, Sleep

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    from simulators.base import SimConnection

DEFAULT_JOBS: Final[Mapping[str, tuple[str, ...]]] = {"SERIAL": ("CODE",)}
"""Jobs a simulated printer knows unless told otherwise: one message with one variable field, CODE."""


class ReplyFault(StrEnum):
    NAK = "nak"
    """Refuse the next command (the dialect's negative answer); the command is not carried out."""
    MISSING = "missing"
    """Carry out the next command but never answer it."""
    DUPLICATE = "duplicate"
    """Answer the next command twice."""
    DELAYED = "delayed"
    """Answer the next command after a delay."""


@dataclass(frozen=True, slots=True)
class Printed:
    """One print as it came out of the device."""

    seq: int
    """1 for the first print since the simulator started, counting on across power cycles."""
    job: str | None
    fields: tuple[tuple[str, str], ...]
    index: int | None = None
    """The device's record index, for dialects that number buffered records."""

    def value(self, name: str) -> str:
        """Return the printed value of field name."""
        return dict(self.fields)[name]


@dataclass(slots=True)
class _Record:
    index: int
    fields: tuple[tuple[str, str], ...]


@dataclass(slots=True)
class _PendingReply:
    fault: ReplyFault
    delay_s: float


@dataclass(slots=True)
class PrinterEngine:
    """A printer without a protocol: job, one message or a FIFO of records, product detect, faults."""

    depth: int = 50
    """Records the buffer holds; a record beyond that is refused as buffer full."""
    single_shot: bool = False
    """One current message overwritten by each load (WSI, Keyence) instead of a FIFO."""
    jobs: dict[str, tuple[str, ...]] = field(default_factory=lambda: dict(DEFAULT_JOBS))
    """Job name → its variable field names."""
    job: str | None = None
    printing: bool = False
    """Printing enabled (started) by the host."""
    faults: set[FaultReason] = field(default_factory=set)
    warnings: set[str] = field(default_factory=set)
    buffer_full: bool = False
    """Refuse every record as if the buffer were full, until cleared."""
    ink_left: int | None = None
    """Prints left before ink runs out (None: plenty)."""
    counter: int = 0
    """The device's print counter (reset by the host or a power cycle, per dialect)."""
    printed: list[Printed] = field(default_factory=list)
    missed: int = 0
    """Product detects with nothing to print (buffer underrun) or while not able to print."""
    power_cycles: int = 0
    on_print: list[Callable[[Printed], None]] = field(default_factory=list)
    """Called with every print as it happens (the camera simulator listens here)."""
    _buffer: deque[_Record] = field(default_factory=deque)
    _current: _Record | None = None
    _fresh: bool = False
    _next_index: int = 0
    _last_index: int = -1
    _replies: deque[_PendingReply] = field(default_factory=deque)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    # -- host side ------------------------------------------------------------------------------

    def select(self, job: str) -> bool:
        """Make job current (clearing variable data); False when the device has no such job."""
        if job not in self.jobs:
            return False
        self.job = job
        self.clear()
        return True

    def field_names(self) -> tuple[str, ...]:
        """Return the variable fields of the current job (none when no job is selected)."""
        return self.jobs.get(self.job or "", ())

    def enqueue(self, fields: Sequence[tuple[str, str]]) -> int | None:
        """Add one record (or overwrite the message, single-shot); return its index, None when full."""
        if self.buffer_full or (not self.single_shot and len(self._buffer) >= self.depth):
            return None
        record = _Record(self._next_index, tuple(fields))
        self._next_index += 1
        if self.single_shot:
            self._current, self._fresh = record, True
        else:
            self._buffer.append(record)
        self._touch()
        return record.index

    def clear(self) -> None:
        """Empty the buffer (and the single-shot message's freshness)."""
        self._buffer.clear()
        self._fresh = False
        self._touch()

    @property
    def buffered(self) -> int:
        """Records waiting to print (0 or 1 for a single-shot message)."""
        if self.single_shot:
            return int(self._fresh)
        return len(self._buffer)

    @property
    def next_index(self) -> int:
        """Index the next record loaded will get."""
        return self._next_index

    @property
    def next_to_print_index(self) -> int:
        """Index of the record the next product detect prints (the next to be loaded when empty)."""
        if self.single_shot:
            return self._current.index if self._current is not None and self._fresh else self._next_index
        return self._buffer[0].index if self._buffer else self._next_index

    @property
    def last_printed_index(self) -> int:
        """Index of the last record printed, -1 before the first."""
        return self._last_index

    @property
    def state(self) -> PrinterState:
        """The traffic light the device would show."""
        if self.faults:
            return PrinterState.FAULT
        if not self.printing:
            return PrinterState.READY if self.job is not None else PrinterState.STOPPED
        return PrinterState.WARNING if self.warnings else PrinterState.PRINTING

    # -- the line side --------------------------------------------------------------------------

    def product_detect(self) -> Printed | None:
        """Pass a product under the print head: print the next record, or count a miss; return the print."""
        if self.faults or not self.printing:
            self.missed += 1
            self._touch()
            return None
        if self.single_shot:
            record = self._current
            # A single-shot device prints its message again when nothing new came: the duplicate is real.
            self._fresh = False
        else:
            record = self._buffer.popleft() if self._buffer else None
        if record is None:
            self.missed += 1
            self.warnings.add(FaultReason.BUFFER_UNDERRUN.value)
            self._touch()
            return None
        return self._print(record)

    def print_current(self) -> Printed | None:
        """Print as the host asked (PRN, StartMarking): the next record, or None when not able."""
        return self.product_detect()

    def wait_changed(self) -> asyncio.Event:
        """Return an event set at the next change of buffer, prints or faults (clear it before waiting)."""
        return self._changed

    async def wait_printed(self, count: int) -> None:
        """Return once at least count prints were made since the simulator started."""
        while len(self.printed) < count:
            self._changed.clear()
            await self._changed.wait()

    async def wait_loaded(self) -> None:
        """Return once a record is waiting to print."""
        while not self.buffered:
            self._changed.clear()
            await self._changed.wait()

    async def run_product_detect(self, per_minute: float, *, sleep: Sleep = asyncio.sleep) -> None:
        """Send a product past the head per_minute times a minute until cancelled."""
        if per_minute <= 0:
            raise ValueError(f"a product rate must be positive, not {per_minute}")
        while True:
            await sleep(60.0 / per_minute)
            self.product_detect()

    # -- faults ---------------------------------------------------------------------------------

    def set_fault(self, reason: FaultReason) -> None:
        """Raise a device fault now: printing stops until it is cleared."""
        self.faults.add(reason)
        self._touch()

    def clear_fault(self, reason: FaultReason | None = None) -> None:
        """Clear one fault, or all of them (and the warnings) when reason is None."""
        if reason is None:
            self.faults.clear()
            self.warnings.clear()
        else:
            self.faults.discard(reason)
        if reason in (None, FaultReason.INK_OUT):
            self.ink_left = None
        self._touch()

    def out_of_ink_after(self, prints: int) -> None:
        """Run out of ink after this many more prints (0: now)."""
        self.ink_left = prints
        if prints == 0:
            self.set_fault(FaultReason.INK_OUT)

    def power_cycle(self) -> None:
        """Lose power and come back: buffer and message lost, printing disabled, counter kept by the device."""
        self.power_cycles += 1
        self._buffer.clear()
        self._current, self._fresh = None, False
        self.printing = False
        self.buffer_full = False
        self._replies.clear()
        self._touch()

    def inject_reply(self, fault: ReplyFault, *, delay_s: float = 0.0, count: int = 1) -> None:
        """Spoil the next count answers this way (delay_s for DELAYED)."""
        for _ in range(count):
            self._replies.append(_PendingReply(fault, delay_s))

    def take_reply_fault(self) -> tuple[ReplyFault, float] | None:
        """Use up the next answer fault, if any: (fault, delay_s)."""
        if not self._replies:
            return None
        pending = self._replies.popleft()
        return pending.fault, pending.delay_s

    # -- inside ---------------------------------------------------------------------------------

    def _print(self, record: _Record) -> Printed:
        printed = Printed(len(self.printed) + 1, self.job, record.fields, record.index)
        self.printed.append(printed)
        self.counter += 1
        self._last_index = record.index
        self.warnings.discard(FaultReason.BUFFER_UNDERRUN.value)
        if self.ink_left is not None:
            self.ink_left -= 1
            if self.ink_left <= 0:
                self.faults.add(FaultReason.INK_OUT)
        for listener in self.on_print:
            listener(printed)
        self._touch()
        return printed

    def _touch(self) -> None:
        self._changed.set()


class PrinterSimulator(Simulator):
    """A simulated printer: a `PrinterEngine` behind one dialect's wire protocol.

    Subclasses implement `handle` with the driver's framer and drive `engine`. Per command: ``planned =
    self.refused()``; on ``ReplyFault.NAK`` send the dialect's negative answer and change nothing; otherwise
    carry the command out and send the answer through ``self.answer(conn, data, planned)``.
    """

    def __init__(
        self,
        engine: PrinterEngine,
        *,
        transport: SimTransport = "tcp",
        host: str = LOOPBACK,
        port: int = 0,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        super().__init__(transport=transport, host=host, port=port, sleep=sleep)
        self.engine: Final = engine
        self.sleep: Final = sleep

    def product_detect(self) -> Printed | None:
        """Pass a product under the head (the photo-eye input of the real device); return the print, if any."""
        return self.engine.product_detect()

    def power_cycle(self) -> None:
        """Cut the power: every link drops and the buffer is lost."""
        self.engine.power_cycle()
        self.disconnect()

    def refused(self) -> tuple[ReplyFault, float] | None:
        """Use up the next answer fault before carrying out a command; a NAK means: refuse it, do nothing.

        Pass what this returns to `answer` after carrying out the command (when it was not a NAK).
        """
        return self.engine.take_reply_fault()

    async def answer(self, conn: SimConnection, data: bytes, planned: tuple[ReplyFault, float] | None) -> None:
        """Send one answer as the planned fault says: as it is, never (MISSING), twice, or late."""
        if planned is None:
            await conn.write(data)
            return
        fault, delay_s = planned
        if fault is ReplyFault.MISSING:
            return
        if fault is ReplyFault.DELAYED:
            await self.sleep(delay_s)
        await conn.write(data)
        if fault is ReplyFault.DUPLICATE:
            await conn.write(data)
