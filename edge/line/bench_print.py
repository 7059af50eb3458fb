"""Benchmark of `lineside bench print`: serials per second printed with per-serial evidence, per printer dialect.

For each driver and its simulator over loopback TCP, a `PrintRig` runs the real path: a released batch on a
durable store, serials drawn ``sent`` before they leave, the driver's evidence settled ``printed`` by record
id, a supervisor around the link. Products pass the simulated head as soon as a record waits, so the rate is
what the protocol round trips, the feeder and the store allow. Every run ends with `PrintRig.check`: a rate
with a wrong or missing serial counts as 0.

The baseline, in the same run, drives the same driver and simulator with no store and no feeder: records
made in memory, loaded as room allows, evidence counted as it comes. Their difference is the cost of
durability and identity matching.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

import structlog

from drivers.base import DeviceEvent, DriverContext
from drivers.printer.base import Printer, PrinterOptions, PrintEvidence, PrintOutcome, PrintRecord
from edge.gs1.element import build
from edge.line.print_rig import RIG_OPTIONS, PrintRig
from edge.registry import driver_class
from simulators.catalog import simulator_for

if TYPE_CHECKING:
    from pathlib import Path

    from simulators.printer import PrinterSimulator

DIALECTS: Final = (
    "printer.zipher",
    "printer.linx-rci",
    "printer.wsi",
    "printer.domino",
    "printer.keyence-md",
    "printer.zpl",
)
TARGET_PER_S: Final = 50.0
"""3,000 units a minute per printer, with per-serial evidence (the line-rate target of DESIGN)."""
DEFAULT_UNITS: Final = 1000
EVIDENCE_WAIT_S: Final = 10.0
"""Longest the baseline waits for one piece of evidence: a guard against a hang, not a measurement."""


async def bench_print(tmp: Path, *, units: int = DEFAULT_UNITS, drivers: tuple[str, ...] = DIALECTS) -> dict[str, Any]:
    """Run every driver through the rig and the baseline; return the benchmark's JSON object."""
    details: dict[str, Any] = {}
    for name in drivers:
        ours = await _through_rig(name, tmp / name.replace(".", "-"), units)
        base = await _baseline(name, units)
        details[name] = {**ours, "baseline_per_s": round(base, 1)}
    slowest = min(details, key=lambda n: details[n]["per_s"])
    slowest_base = min(details.values(), key=lambda d: d["baseline_per_s"])["baseline_per_s"]
    return {
        "benchmark": "print",
        "units": units,
        "headline": {
            "metric": f"slowest printer ({slowest}): serials printed per second with per-serial evidence, durable",
            "value": details[slowest]["per_s"],
            "unit": "serials/s",
            "target": TARGET_PER_S,
        },
        "baseline": {
            "name": "the same drivers and simulators with no store and no feeder (slowest)",
            "value": slowest_base,
            "unit": "serials/s",
        },
        "drivers": details,
    }


async def _through_rig(name: str, state_dir: Path, units: int) -> dict[str, Any]:
    async with PrintRig(name, state_dir, units=units) as rig:
        started = time.perf_counter()
        await rig.products(units)
        await rig.settled()
        elapsed = time.perf_counter() - started
        check = await rig.check()
    rate = units / elapsed if not check.problems and check.printed_by_device == units else 0.0
    return {
        "per_s": round(rate, 1),
        "seconds": round(elapsed, 3),
        "printed": check.printed_by_device,
        "states": check.states,
        "problems": check.problems[:10],
    }


async def _baseline(name: str, units: int) -> float:
    cls = driver_class(name)
    options = cls.Options.model_validate(RIG_OPTIONS.get(name, {}))
    if not issubclass(cls, Printer) or not isinstance(options, PrinterOptions):
        raise TypeError(f"{name} is not a printer driver")
    sim: PrinterSimulator = simulator_for(name, options)  # type: ignore[assignment] # printers have printer sims
    events: asyncio.Queue[DeviceEvent] = asyncio.Queue()
    async with sim:
        context = DriverContext(
            device_id="baseline",
            transport=sim.transport_spec(),
            events=events.put,
            log=structlog.get_logger("lineside.bench"),
            clock=lambda: datetime.now(UTC),
        )
        driver = cls(context, options)
        await driver.connect()
        running = asyncio.create_task(driver.run(), name="baseline driver")
        try:
            return await _pump(driver, sim, events, options, units)
        finally:
            running.cancel()
            await asyncio.wait([running])
            await driver.close()


async def _pump(
    driver: Printer, sim: PrinterSimulator, events: asyncio.Queue[DeviceEvent], options: PrinterOptions, units: int
) -> float:
    await driver.stop()
    await driver.clear()
    if options.job is not None:
        await driver.select_job(options.job)
    await driver.start()
    depth = driver.capabilities.buffer_depth
    name = next(iter(options.fields))
    loaded = printed = in_device = 0
    started = progress = time.perf_counter()
    while printed < units:
        room = min(depth - in_device, units - loaded)
        if room > 0:
            records = [PrintRecord(n, ((name, _code(n)),)) for n in range(loaded, loaded + room)]
            await driver.load(records)
            loaded += room
            in_device += room
        while sim.engine.buffered:  # a product under the head whenever a record waits, as in the rig
            sim.engine.product_detect()
        try:
            # Short: a load with no answer (ZPL) reaches the device after load() returned; look again soon.
            async with asyncio.timeout(options.poll_interval_s):
                event = await events.get()
        except TimeoutError:
            if time.perf_counter() - progress > EVIDENCE_WAIT_S:
                raise TimeoutError(f"no evidence from {type(driver).__name__} for {EVIDENCE_WAIT_S:g} s") from None
            continue
        progress = time.perf_counter()
        while True:
            if isinstance(event, PrintEvidence) and event.outcome is PrintOutcome.PRINTED:
                printed += 1
                in_device -= 1
            if events.empty():
                break
            event = events.get_nowait()
    return units / (time.perf_counter() - started)


def _code(n: int) -> str:
    return build([("01", "04012345000016"), ("21", f"B{n:011d}"), ("10", "BENCH"), ("17", "281031")], check=False)
