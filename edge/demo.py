"""The embedded demo: the line controller and a simulator of every device, in one process."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import secrets
import signal
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from edge.config import DeviceConfig, StorageConfig, load_config
from edge.daemon import Daemon, printable
from edge.errors import ConfigError, EdgeError
from edge.gs1.element import parse
from edge.log import configure
from simulators.catalog import simulator_for
from simulators.printer import PrinterSimulator
from simulators.scanner_wedge import WedgeScannerSim

if TYPE_CHECKING:
    from edge.config import LineConfig
    from edge.serials.batches import BatchService
    from simulators.base import Simulator

_LOG = structlog.get_logger("lineside.demo")

DEMO_CONFIG = Path(__file__).resolve().parent.parent / "config" / "demo.yaml"
DEFAULT_UNITS = 200
DEFAULT_PPM = 600.0
"""Packs a minute past the simulated printer: a fast line of today."""
SCAN_QUEUE = 1024
PROGRESS_POLL_S = 0.5
"""How often the demo looks at its progress when the printer is quiet."""
DEMO_ORDER = """work_order: {work_order}
product: aspirin-500-eu
lot: "DEMO01"
expiry: 2028-10-31
quantity: {quantity}
line: {line}
"""
# How long the demo waits for the daemon to connect to a simulator before it reports a failure.
CONNECT_WAIT_S = 10.0


@dataclass(frozen=True, slots=True)
class DemoRun:
    """What one demo run makes."""

    units: int = DEFAULT_UNITS
    ppm: float = DEFAULT_PPM
    duration_s: float | None = None


def run_demo(
    *,
    config_path: Path | None,
    state_dir: Path | None,
    run: DemoRun,
    log_level: str | None = None,
    log_format: str | None = None,
) -> int:
    """Run the demo until Ctrl-C or the duration; return the exit code."""
    path = config_path or DEMO_CONFIG
    try:
        config = load_config(path)
    except ConfigError as err:
        for issue in err.issues:
            print(issue)  # noqa: T201 - the command's output
        return 2
    configure(
        level=log_level or config.logging.level,
        fmt=log_format or config.logging.format,  # type: ignore[arg-type] # validated by the config model
        redact=config.logging.redact,
    )
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    with tempfile.TemporaryDirectory(prefix="lineside-demo-") as tmp:
        where = state_dir or Path(tmp)
        config = config.model_copy(update={"storage": StorageConfig(state_dir=where)})
        try:
            return asyncio.run(_demo(config, digest, run))
        except EdgeError as err:
            _LOG.error("demo cannot start", error=str(err))
            return 1


async def _demo(config: LineConfig, config_sha256: str, run: DemoRun) -> int:
    sims = {dev.id: simulator_for(dev.driver, dev.parsed_options) for dev in config.devices if dev.enabled}
    for sim in sims.values():
        await sim.bind()
    config = _pointed_at(config, sims)
    printers = {device_id: sim for device_id, sim in sims.items() if isinstance(sim, PrinterSimulator)}
    scanners = [sim for sim in sims.values() if isinstance(sim, WedgeScannerSim)]
    outcome: dict[str, Any] = {}
    daemon: Daemon

    async def production() -> None:
        await daemon.ready.wait()
        async with asyncio.timeout(CONNECT_WAIT_S):
            for sim in sims.values():
                await sim.wait_for_connection()
        batches = daemon.batches
        if batches is None or not printers:
            _LOG.warning("nothing to print: the demo line has no printer")
            return
        order = DEMO_ORDER.format(work_order=f"DEMO-{secrets.token_hex(3).upper()}", line=config.line.id,
                                  quantity=run.units)
        batch = await batches.import_work_order(order, "demo work order", operator="demo")
        await batches.release(batch.id, operator="demo")
        await batches.start(batch.id, operator="demo")
        _LOG.info("batch running", batch=batch.id, work_order=batch.work_order, units=run.units, ppm=run.ppm)
        device_id, printer = next(iter(printers.items()))
        reads: asyncio.Queue[bytes] = asyncio.Queue(maxsize=SCAN_QUEUE)
        # The hand scanner at the packing station reads back what the printer printed.
        printer.engine.on_print.append(lambda printed: _offer(reads, printed.fields[0][1].encode("latin-1")))
        async with asyncio.TaskGroup() as tasks:
            products = tasks.create_task(printer.engine.run_product_detect(run.ppm), name="demo products")
            scanning = tasks.create_task(_scan(reads, scanners), name="demo scanner")
            await _until_printed(daemon, device_id, printer, run.units)
            products.cancel()
            scanning.cancel()
        await batches.pause(batch.id, operator="demo")
        outcome.update(await _summary(batches, batch.id, printer))
        daemon.request_shutdown()

    async def stop_after() -> None:
        if run.duration_s is None:
            return
        await asyncio.sleep(run.duration_s)
        _LOG.warning("demo stopped by --duration before the batch was printed", duration_s=run.duration_s)
        daemon.request_shutdown()

    services = [sim.serve for sim in sims.values()]
    daemon = Daemon(config, config_sha256=config_sha256, services=[*services, production, stop_after])
    _LOG.info("demo starting", devices=len(sims), state_dir=str(config.storage.state_dir))
    code = await daemon.run()
    if not outcome:
        return code or 1
    _print_summary(outcome)
    return code if outcome["printed_by_device"] == run.units and not outcome["problems"] else 1


async def _until_printed(daemon: Daemon, device_id: str, printer: PrinterSimulator, units: int) -> None:
    """Return once the printer printed units and the store recorded each of them printed."""
    feeder = daemon.feeders[device_id]
    while len(printer.engine.printed) < units or feeder.counts.printed < units:
        if len(printer.engine.printed) >= units:
            printer.engine.printing = False  # enough packs: the line stops while the store catches up
        changed = printer.engine.wait_changed()
        changed.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(PROGRESS_POLL_S):
                await changed.wait()


async def _scan(reads: asyncio.Queue[bytes], scanners: list[WedgeScannerSim]) -> None:
    while True:
        code = await reads.get()
        for scanner in scanners:
            if scanner.connections:
                await scanner.scan(code)


def _offer(reads: asyncio.Queue[bytes], code: bytes) -> None:
    with contextlib.suppress(asyncio.QueueFull):  # the scanner is a bystander: a dropped read costs nothing
        reads.put_nowait(code)


async def _summary(batches: BatchService, batch_id: int, printer: PrinterSimulator) -> dict[str, Any]:
    states = await batches.ledger.counts(batch_id)
    printed = [p.fields[0][1] for p in printer.engine.printed]
    serials = [_serial_of(code) for code in printed]
    problems = []
    if len(set(serials)) != len(serials):
        problems.append("a serial was printed twice")
    store_printed = states.get("printed", 0)
    if store_printed != len(printed):
        problems.append(f"the printer printed {len(printed)}, the store says {store_printed} printed")
    return {
        "batch": batch_id,
        "printed_by_device": len(printed),
        "states": {state: count for state, count in states.items() if count},
        "first": printed[:3],
        "last": printed[-3:],
        "problems": problems,
    }


def _print_summary(outcome: dict[str, Any]) -> None:
    lines = [
        f"batch {outcome['batch']}: the printer printed {outcome['printed_by_device']} serials",
        "serials by state: " + ", ".join(f"{state} {count}" for state, count in outcome["states"].items()),
        "first printed: " + ", ".join(printable(code.encode("latin-1")) for code in outcome["first"]),
        "last printed:  " + ", ".join(printable(code.encode("latin-1")) for code in outcome["last"]),
        "problems: " + ("; ".join(outcome["problems"]) or "none"),
    ]
    print("\n".join(lines))  # noqa: T201 - the command's output


def _serial_of(code: str) -> str:
    for element in parse(code.encode("latin-1")).elements:
        if element.ai == "21":
            return element.value
    return code


async def run_simulators(config: LineConfig, *, duration_s: float | None, ppm: float = 0.0) -> int:
    """Serve a simulator for every device of a configuration until stopped.

    A socket:// device is simulated at its configured port; a serial device on a pseudo-terminal whose path
    is logged (point the device's url there). With ppm, products pass each printer's head at that rate.
    """
    sims: list[Simulator] = []
    for dev in config.devices:
        if dev.transport.is_tcp:
            sims.append(simulator_for(dev.driver, dev.parsed_options, port=dev.transport.host_port[1]))
        else:
            sims.append(simulator_for(dev.driver, dev.parsed_options, transport="pty"))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        async with asyncio.TaskGroup() as tg:
            serving = []
            for dev, sim in zip(config.devices, sims, strict=True):
                _LOG.info("simulator listening", device=dev.id, url=await sim.bind(), simulator=type(sim).__name__)
                serving.append(tg.create_task(sim.serve()))
                if ppm > 0 and isinstance(sim, PrinterSimulator):
                    serving.append(tg.create_task(sim.engine.run_product_detect(ppm)))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(duration_s):
                    await stop.wait()
            for task in serving:
                task.cancel()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
    return 0


def _pointed_at(config: LineConfig, sims: dict[str, Simulator]) -> LineConfig:
    devices = []
    for dev in config.devices:
        sim = sims.get(dev.id)
        if sim is None:
            devices.append(dev)
            continue
        data = dev.model_dump(exclude_unset=True) | {"url": sim.url}
        data.pop("serial", None)
        devices.append(DeviceConfig.model_validate(data))
    return config.model_copy(update={"devices": tuple(devices)})
