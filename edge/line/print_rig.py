"""One printer, its simulator and the real feeding path on a real store: for the benchmark, fault tests and demo.

The rig opens a store, releases and starts a batch of a shipped product, connects a driver to a simulator
of its device through a `DeviceSupervisor` (so links that drop are reconnected exactly as in the daemon),
feeds it with a `PrintFeeder`, and sends products past the simulated print head. `check()` then compares
what the simulator printed with what the store says, serial by serial.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Self

import structlog

from drivers.base import DeviceEvent, DriverContext
from drivers.printer.base import Printer, PrinterOptions
from edge.backoff import Backoff
from edge.config.models import CatalogConfig
from edge.gs1.element import parse
from edge.line.events import LineHoldRequest
from edge.line.feeder import PrintFeeder
from edge.products.load import load_catalog
from edge.registry import driver_class
from edge.serials.batches import BatchService
from edge.serials.ledger import SerialLedger
from edge.serials.states import SerialState
from edge.store import Store
from edge.supervisor import DeviceSupervisor
from simulators.catalog import simulator_for

if TYPE_CHECKING:
    from types import TracebackType

    from simulators.base import SimTransport
    from simulators.printer import PrinterSimulator

ROOT: Final = Path(__file__).resolve().parent.parent.parent
DEVICE: Final = "printer-1"
"""The device id the shipped products have a unit template for."""
PRODUCT: Final = "aspirin-500-eu"
LINE: Final = "rig"
TODAY: Final = date(2026, 11, 25)

RIG_OPTIONS: Final[dict[str, dict[str, Any]]] = {
    # A label printer recalls a stored format for every label: the rig's simulator stores this one.
    "printer.zpl": {"job": "E:UNIT.ZPL"},
}
"""Options a dialect needs on the rig beyond its defaults."""

PRODUCT_WAIT_S: Final = 10.0
"""Longest the rig waits for the feeder to load a record before a product passes: a guard against a hang
(a healthy feeder loads within a poll), not a measurement."""

RECONNECT_S: Final = 0.01
"""Backoff between reconnects in the rig: the simulator is back at once, so waiting longer only slows tests."""


@dataclass(slots=True)
class RigCheck:
    """What the store and the simulator say after a run, and every way they disagree."""

    printed_by_device: int
    states: dict[str, int]
    problems: list[str] = field(default_factory=list)


class PrintRig:
    """A printer driver fed from a real batch, against its simulator; use ``async with`` and `products`."""

    def __init__(
        self,
        driver: str,
        state_dir: Path,
        *,
        units: int,
        transport: SimTransport = "tcp",
        options: dict[str, Any] | None = None,
        response_timeout_s: float = 2.0,
        catalog: CatalogConfig | None = None,
    ) -> None:
        self.driver_name = driver
        self.units = units
        self.holds: list[LineHoldRequest] = []
        self._cls = driver_class(driver)
        if not issubclass(self._cls, Printer):
            raise TypeError(f"{driver} is not a printer driver")
        parsed = self._cls.Options.model_validate(RIG_OPTIONS.get(driver, {}) | (options or {}))
        if not isinstance(parsed, PrinterOptions):
            raise TypeError(f"{driver} options are not printer options")
        self.options: Final = parsed
        sim = simulator_for(driver, parsed, transport=transport)
        self.sim: Final[PrinterSimulator] = sim  # type: ignore[assignment] # printers have printer simulators
        self._state_dir = state_dir
        self._response_timeout_s = response_timeout_s
        self._catalog = catalog or CatalogConfig(products=ROOT / "config" / "products",
                                                 markets=ROOT / "config" / "markets")
        self._stack = contextlib.AsyncExitStack()
        self._tasks: list[asyncio.Task[None]] = []
        self.store: Store | None = None
        self.ledger: SerialLedger | None = None
        self.feeder: PrintFeeder | None = None
        self.supervisor: DeviceSupervisor | None = None
        self.batch_id = 0
        self._hold_event = asyncio.Event()

    async def __aenter__(self) -> Self:
        try:
            await self._start()
        except BaseException:
            await self._stop()
            raise
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._stop()

    async def _start(self) -> None:
        catalog = await asyncio.to_thread(load_catalog, self._catalog)
        store = self.store = await asyncio.to_thread(Store.open, self._state_dir)
        await self._stack.enter_async_context(store)
        ledger = self.ledger = SerialLedger(store, line_id=LINE)
        self._tasks.append(asyncio.create_task(ledger.run(), name="rig ledger"))
        batches = BatchService(ledger, catalog, today=lambda: TODAY)
        order = (f"work_order: RIG-{self.driver_name}\nproduct: {PRODUCT}\nlot: \"RIG1\"\nexpiry: 2028-10-31\n"
                 f"quantity: {self.units}\nline: {LINE}\n")
        batch = await batches.import_work_order(order, "rig.yaml", operator="rig")
        await batches.release(batch.id, operator="rig")
        await batches.start(batch.id, operator="rig")
        self.batch_id = batch.id
        await self.sim.start()
        options = self.options
        feeder = self.feeder = PrintFeeder(
            DEVICE, ledger, fields=options.fields, job=options.job, notify=self._notify, depth=options.depth
        )
        log = structlog.get_logger("lineside.rig").bind(device=DEVICE)
        context = DriverContext(
            device_id=DEVICE,
            transport=self.sim.transport_spec(),
            events=feeder.on_event,
            log=log,
            clock=lambda: datetime.now(UTC),
            connect_timeout_s=5.0,
            response_timeout_s=self._response_timeout_s,
        )
        cls = self._cls
        self.supervisor = DeviceSupervisor(
            DEVICE,
            lambda: cls(context, options),
            backoff=Backoff(initial_s=RECONNECT_S, max_s=RECONNECT_S, jitter=0.0),
            connect_timeout_s=5.0,
            log=log,
            session=feeder,
        )
        self._tasks.append(asyncio.create_task(self.supervisor.run(), name="rig printer"))

    async def _stop(self) -> None:
        for task in self._tasks[1:]:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._tasks and self.ledger is not None:
            await self.ledger.aclose()  # applies what is queued, then run() returns
            await self._tasks[0]
        self._tasks.clear()
        await self.sim.stop()
        await self._stack.aclose()

    async def _notify(self, event: DeviceEvent) -> None:
        if isinstance(event, LineHoldRequest):
            self.holds.append(event)
            self._hold_event.set()

    async def wait_hold(self, timeout_s: float = PRODUCT_WAIT_S) -> LineHoldRequest:
        """Return the next hold request the feeder raises (a guard timeout only)."""
        seen = len(self.holds)
        async with asyncio.timeout(timeout_s):
            while len(self.holds) == seen:
                self._hold_event.clear()
                await self._hold_event.wait()
        return self.holds[seen]

    async def products(self, count: int) -> int:
        """Pass count products under the head, each once a fresh record waits; return how many printed."""
        engine = self.sim.engine
        made = 0
        for _ in range(count):
            async with asyncio.timeout(PRODUCT_WAIT_S):
                await engine.wait_loaded()
            if engine.product_detect() is not None:
                made += 1
        return made

    async def settled(self, timeout_s: float = PRODUCT_WAIT_S) -> None:
        """Wait until the store has a verdict from the printer for everything the simulator printed."""
        async with asyncio.timeout(timeout_s):
            for attempt in itertools.count():
                check = await self.check()
                if not any(p.startswith("not settled") for p in check.problems):
                    return
                await asyncio.sleep(0.001 * min(attempt + 1, 20))

    async def check(self) -> RigCheck:
        """Compare the simulator's prints with the store, serial by serial (DESIGN invariants 1 and 2)."""
        if self.ledger is None or self.store is None:
            raise RuntimeError("the rig is not running")
        # A laser marking on its own trigger with its strings blanked marks nothing of the batch: not a serial.
        printed = [self.printed_serial(p.fields) for p in self.sim.engine.printed if p.fields[0][1]]
        rows = await self.store.read(
            lambda conn: conn.execute(
                "SELECT serial, state FROM serial WHERE batch_id = ?", (self.batch_id,)
            ).fetchall()
        )
        sends = await self.store.read(
            lambda conn: conn.execute(
                "SELECT h.serial_id, count(*) FROM serial_history h JOIN transition t ON t.id = h.transition_id"
                " WHERE t.batch_id = ? AND t.to_state = ? GROUP BY h.serial_id HAVING count(*) > 1",
                (self.batch_id, int(SerialState.SENT)),
            ).fetchall()
        )
        state_of = {serial: SerialState(value) for serial, value in rows}
        states: dict[str, int] = {}
        for current in state_of.values():
            states[current.label] = states.get(current.label, 0) + 1
        check = RigCheck(len(printed), states)
        seen: set[str] = set()
        for serial in printed:
            if serial in seen:
                check.problems.append(f"serial {serial} printed twice")
            seen.add(serial)
            state = state_of.get(serial)
            if state is None:
                check.problems.append(f"printed {serial}, which is not a serial of the batch")
            elif state is SerialState.SENT:
                check.problems.append(f"not settled: {serial} printed, still {state.label}")
            elif state not in (SerialState.PRINTED, SerialState.IN_DOUBT):
                check.problems.append(f"{serial} printed but {state.label}")
        for serial, state in state_of.items():
            if state is SerialState.PRINTED and serial not in seen:
                check.problems.append(f"{serial} recorded printed but the printer never printed it")
        check.problems.extend(f"serial #{serial_id} sent {n} times" for serial_id, n in sends)
        total = sum(states.values())
        if total != len(rows):
            check.problems.append(f"{total} serials by state, {len(rows)} in the batch")
        return check

    @staticmethod
    def printed_serial(fields: tuple[tuple[str, str], ...]) -> str:
        """Return the serial (AI 21) in a print's first field, the GS1 element string the rig prints."""
        code = fields[0][1]
        for element in parse(code.encode("latin-1")).elements:
            if element.ai == "21":
                return element.value
        raise ValueError(f"print {code!r} carries no serial")
