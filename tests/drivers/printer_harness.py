"""What the printer driver tests share: a fixed driver context, and a harness that records a driver's events.

A `Harness` is the event sink of the driver it holds. It keeps every event in `seen`, in order, and offers two ways
to wait for them:

- one by one, as from a queue: `next`, `take`, `next_status` and `next_printed` return events after a cursor and
  move it past them; `drain` and `mark` move it past everything delivered so far;
- by a condition over everything seen: `until`, `printed` and `status`; they leave the cursor where it is.

Every wait is bounded by `HANG_GUARD_S` and, while run() is running, notices it ending and raises what ended it.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Generic, TypeVar

import structlog

from drivers.base import DeviceEvent, DeviceGarbage, DeviceInfo, Driver, DriverContext
from drivers.printer.base import PrinterState, PrinterStatusChanged, PrintEvidence, PrintOutcome
from drivers.transport.spec import SerialSettings

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from drivers.base import EventSink, Sleep
    from drivers.transport.spec import TransportSpec
    from simulators.base import Simulator

AT = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
DEVICE = "printer-1"
GS = "\x1d"

# Only a guard against a hang turning into a 60 s pytest-timeout; nothing here measures time with it.
HANG_GUARD_S = 10.0
SHORT_TIMEOUT_S = 0.3
"""Response timeout for the tests where a missing answer is what is tested."""

E = TypeVar("E", bound=DeviceEvent)
D = TypeVar("D", bound=Driver)


async def no_wait(seconds: float) -> None:
    await asyncio.sleep(0)  # the driver's polls then run back to back, as fast as the link answers


async def ignore(event: DeviceEvent) -> None:
    pass


def make_context(
    spec: TransportSpec, events: EventSink, *, response_timeout_s: float = 2.0, sleep: Sleep = no_wait
) -> DriverContext:
    return DriverContext(
        device_id=DEVICE,
        transport=spec,
        events=events,
        log=structlog.get_logger().bind(device=DEVICE),
        clock=lambda: AT,
        sleep=sleep,
        connect_timeout_s=5.0,
        response_timeout_s=response_timeout_s,
    )


def spec_for(sim: Simulator, baudrate: int = 115200) -> TransportSpec:
    return sim.transport_spec(SerialSettings(baudrate=baudrate))


def printed_ids(events: list[DeviceEvent]) -> list[int]:
    return [e.record_id for e in events if isinstance(e, PrintEvidence) and e.outcome is PrintOutcome.PRINTED]


def outcomes(events: list[DeviceEvent]) -> list[tuple[int, PrintOutcome]]:
    return [(e.record_id, e.outcome) for e in events if isinstance(e, PrintEvidence)]


def garbage(events: list[DeviceEvent]) -> list[DeviceGarbage]:
    return [e for e in events if isinstance(e, DeviceGarbage)]


def statuses(events: list[DeviceEvent]) -> list[PrinterStatusChanged]:
    return [e for e in events if isinstance(e, PrinterStatusChanged)]


def is_printed(event: DeviceEvent) -> bool:
    return isinstance(event, PrintEvidence) and event.outcome is PrintOutcome.PRINTED


class Harness(Generic[D]):
    """A connected driver, its run() task when started, and every event it emitted (it is the driver's sink)."""

    driver: D
    """Set by `connected_driver` as soon as the driver is built."""

    def __init__(self) -> None:
        self.seen: list[DeviceEvent] = []
        self.task: asyncio.Task[None] | None = None
        self.info: DeviceInfo | None = None
        self._cursor = 0
        self._changed = asyncio.Event()

    async def __call__(self, event: DeviceEvent) -> None:
        self.seen.append(event)
        self._changed.set()

    # -- run() ------------------------------------------------------------------------------------------

    def run(self) -> None:
        self.task = asyncio.create_task(self.driver.run())

    async def ended(self) -> None:
        """Wait for run() to end and re-raise what ended it."""
        assert self.task is not None
        async with asyncio.timeout(HANG_GUARD_S):
            await self.task

    # -- waiting ----------------------------------------------------------------------------------------

    async def _wait(self, ready: Callable[[], bool]) -> None:
        async with asyncio.timeout(HANG_GUARD_S):
            while not ready():
                self._changed.clear()
                await self._changed_or_ended()

    async def _changed_or_ended(self) -> None:
        task = self.task
        if task is None:
            await self._changed.wait()
            return
        if not task.done():
            changed = asyncio.create_task(self._changed.wait())
            try:
                await asyncio.wait([changed, task], return_when=asyncio.FIRST_COMPLETED)
            finally:
                changed.cancel()
                await asyncio.wait([changed])
            if not changed.cancelled():
                return
        if task.cancelled():
            raise AssertionError("run() was cancelled: the awaited event never comes")
        await task  # run() ended: its error says why the awaited event never comes
        raise AssertionError("run() returned: the awaited event never comes")

    async def next(self, kind: type[E], where: Callable[[E], bool] | None = None) -> E:
        """Return the next event of kind matching where after the cursor, and move the cursor past it."""
        found: list[E] = []

        def arrived() -> bool:
            while self._cursor < len(self.seen):
                event = self.seen[self._cursor]
                self._cursor += 1
                if isinstance(event, kind) and (where is None or where(event)):
                    found.append(event)
                    return True
            return False

        await self._wait(arrived)
        return found[0]

    async def take(self, accept: Callable[[DeviceEvent], bool], count: int = 1) -> list[DeviceEvent]:
        """Return the next count events accept() takes."""
        return [await self.next(DeviceEvent, accept) for _ in range(count)]

    async def next_status(self, state: PrinterState) -> PrinterStatusChanged:
        """Return the next change to state."""
        return await self.next(PrinterStatusChanged, lambda e: e.status.state is state)

    async def next_printed(self, count: int) -> list[int]:
        """Wait for count more PRINTED events; return their record ids."""
        return [(await self.next(PrintEvidence, is_printed)).record_id for _ in range(count)]

    def drain(self) -> list[DeviceEvent]:
        """Move the cursor past every event delivered so far; return them all."""
        self._cursor = len(self.seen)
        return self.seen

    def mark(self) -> int:
        """Return a position in the events: everything delivered so far is before it."""
        return len(self.drain())

    async def until(self, done: Callable[[list[DeviceEvent]], bool]) -> list[DeviceEvent]:
        """Wait until done(seen) holds; return everything seen so far."""
        await self._wait(lambda: done(self.seen))
        return self.seen

    async def printed(self, count: int) -> list[int]:
        """Wait until count records in all were reported PRINTED; return the ids of all of them."""
        await self.until(lambda seen: len(printed_ids(seen)) >= count)
        return printed_ids(self.seen)

    async def status(self, state: PrinterState, since: int = 0) -> PrinterStatusChanged:
        """Wait for a status change to state after position since; return the latest such change."""

        def reached() -> PrinterStatusChanged | None:
            changes = [e for e in statuses(self.seen[since:]) if e.status.state is state]
            return changes[-1] if changes else None

        await self._wait(lambda: reached() is not None)
        found = reached()
        assert found is not None
        return found

    # -- what was seen ----------------------------------------------------------------------------------

    def evidence(self, outcome: PrintOutcome | None = None) -> list[PrintEvidence]:
        return [e for e in self.seen if isinstance(e, PrintEvidence) and outcome in (None, e.outcome)]

    def reported(self, outcome: PrintOutcome) -> list[int]:
        """Return the ids of the records reported with outcome, in order."""
        return [e.record_id for e in self.evidence(outcome)]

    def garbage(self) -> list[DeviceGarbage]:
        return garbage(self.seen)

    def statuses(self) -> list[PrinterStatusChanged]:
        return statuses(self.seen)


@contextlib.asynccontextmanager
async def connected_driver(build: Callable[[EventSink], D], *, run: bool = False) -> AsyncIterator[Harness[D]]:
    """Build a driver reporting to a new harness and connect it; start run() if asked.

    On the way out run() is cancelled (what ended it, if anything, is already checked by the test or irrelevant to
    it) and the driver closed.
    """
    harness: Harness[D] = Harness()
    harness.driver = build(harness)
    try:
        harness.info = await harness.driver.connect()
        if run:
            harness.run()
        yield harness
    finally:
        if harness.task is not None:
            harness.task.cancel()
            await asyncio.wait([harness.task])
            if not harness.task.cancelled():
                harness.task.exception()
        await harness.driver.close()
