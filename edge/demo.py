"""The embedded demo: the line controller and a simulator of every device, in one process."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import secrets
import signal
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from edge.config import StorageConfig, load_config
from edge.control.packml import Command, State
from edge.control.permissions import Actor, Role
from edge.daemon import Daemon, printable
from edge.errors import ConfigError, EdgeError
from edge.gs1.element import parse
from edge.line.simulated import COSMETIC_DEFECTS, SimulatedLine, mixed_plan
from edge.log import configure
from edge.supervisor import LinkState
from simulators.catalog import SIMULATORS, simulator_for
from simulators.epcis_upstream import EpcisUpstream
from simulators.packaging import LabelFault
from simulators.printer import PrinterSimulator
from simulators.scanner_wedge import WedgeScannerSim

if TYPE_CHECKING:
    from edge.aggregation.ops import ContainerRow
    from edge.config import LineConfig
    from edge.control.line import LineControl
    from edge.serials.batches import BatchService
    from edge.serials.ops import BatchRow
    from simulators.base import Simulator

_LOG = structlog.get_logger("lineside.demo")

DEMO_CONFIG = Path(__file__).resolve().parent.parent / "config" / "demo.yaml"
DEFAULT_UNITS = 200
DEFAULT_PPM = 600.0
DEFAULT_DEFECT_EVERY = 10
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
LABEL_FAULT_EVERY = 4
"""Every this many case labels one is unreadable (when the demo injects defects)."""
# How long the last labels (case, pallet) may take at the batch's end before the demo reports a failure.
END_OF_BATCH_WAIT_S = 30.0
# How long the closed batch may take to reach the simulated upstream before the demo reports a failure: the
# delivery polls every 2 s, is woken at close, and a document of a few hundred events validates in well under 1 s.
DELIVERY_WAIT_S = 60.0
DEMO_ACTOR = Actor("demo", Role.SUPERVISOR)
"""The demo runs the line as its shift supervisor does: reset, start, complete."""


class LineLeftExecuteError(EdgeError):
    """The line stopped producing before the demo's packs were through (an alarm or a hold)."""


@dataclass(frozen=True, slots=True)
class DemoRun:
    """What one demo run makes."""

    units: int = DEFAULT_UNITS
    """Packs through the line (printed, inspected, shipped or rejected)."""
    ppm: float = DEFAULT_PPM
    defect_every: int = DEFAULT_DEFECT_EVERY
    """A reject-worthy defect on every nth pack (0: none), cosmetic ones in between."""
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
    plan = mixed_plan(run.defect_every, cosmetic_every=run.defect_every * 2 + 1) if run.defect_every else None
    async with contextlib.AsyncExitStack() as stack:
        upstream = None
        if config.upstream.targets:
            # The site's EPCIS repository, simulated: every capture target of the demo config points at it.
            upstream = await stack.enter_async_context(EpcisUpstream())
            targets = tuple(t.model_copy(update={"url": upstream.url}) if t.kind == "capture" else t
                            for t in config.upstream.targets)
            config = config.model_copy(update={"upstream": config.upstream.model_copy(update={"targets": targets})})
        line = await stack.enter_async_context(SimulatedLine(config, defects=plan))
        return await _run_line(line, config_sha256, run, upstream)


async def _run_line(line: SimulatedLine, config_sha256: str, run: DemoRun, upstream: EpcisUpstream | None) -> int:
    config = line.config
    printer = line.printer
    stations = _aggregation_devices(config)
    # The hand scanner at the packing station reads unit codes; the label and pallet scanners read labels.
    scanners = [sim for dev_id, sim in line.sims.items() if isinstance(sim, WedgeScannerSim) and dev_id not in stations]
    outcome: dict[str, Any] = {}
    daemon: Daemon

    async def production() -> None:
        await daemon.ready.wait()
        async with asyncio.timeout(CONNECT_WAIT_S):
            for sim in line.sims.values():
                await sim.wait_for_connection()
            if line.plc is not None:
                await line.plc.wait_for_connection()
            # Every device online (the simulated camera has no link to wait on) before packs arrive.
            while any(s.status.state is not LinkState.ONLINE for s in daemon.supervisors):  # noqa: ASYNC110
                await asyncio.sleep(PROGRESS_POLL_S / 50)
        batches, control = daemon.batches, daemon.control
        if batches is None or control is None or printer is None:
            _LOG.warning("nothing to print: the demo line has no printer")
            return
        # The feeder keeps the printer's buffer filled ahead of the packs: a batch of exactly `units` would run
        # dry (and hold the line) before the last pack came. What the buffer holds at the end is decommissioned,
        # the serials never sent are returned.
        order = DEMO_ORDER.format(work_order=f"DEMO-{secrets.token_hex(3).upper()}", line=config.line.id,
                                  quantity=run.units + printer.engine.depth)
        batch = await batches.import_work_order(order, "demo work order", operator="demo")
        await batches.release(batch.id, operator="demo")
        if not await _start(control, batch):
            daemon.request_shutdown()
            return
        reads: asyncio.Queue[bytes] = asyncio.Queue(maxsize=SCAN_QUEUE)
        # The hand scanner at the packing station reads back what the printer printed.
        printer.engine.on_print.append(lambda printed: _offer(reads, printed.fields[0][1].encode("latin-1")))
        _packaging(line, daemon, run)
        async with asyncio.TaskGroup() as tasks:
            belt = tasks.create_task(line.world.run(run.ppm), name="demo belt")
            scanning = tasks.create_task(_scan(reads, scanners), name="demo scanner")
            labelling = tasks.create_task(line.run_packaging(), name="demo labellers")
            if not await _run_out(line, run.units, control):
                daemon.request_shutdown()
                for task in (belt, scanning, labelling):
                    task.cancel()
                return
            belt.cancel()
            scanning.cancel()
            await _settled(line, daemon)
            await _end_of_batch(daemon, batch.id)
            labelling.cancel()
        outcome.update(await _summary(batches, batch.id, line, daemon))
        outcome.update(await _close_and_deliver(batches, batch.id, daemon, upstream, outcome["problems"]))
        daemon.request_shutdown()

    async def stop_after() -> None:
        if run.duration_s is None:
            return
        await asyncio.sleep(run.duration_s)
        _LOG.warning("demo stopped by --duration before the batch was done", duration_s=run.duration_s)
        daemon.request_shutdown()

    daemon = Daemon(config, config_sha256=config_sha256, services=[production, stop_after])
    _LOG.info("demo starting", devices=len(config.devices), state_dir=str(config.storage.state_dir), units=run.units,
              ppm=run.ppm)
    code = await daemon.run()
    if not outcome:
        return code or 1
    _print_summary(outcome)
    return code if not outcome["problems"] else 1


async def _settled(line: SimulatedLine, daemon: Daemon) -> None:
    """Return once every pack the belt took past the reject station was reported and judged (and packed)."""
    inspection, world = daemon.inspection, line.world
    if inspection is None:
        return
    async with asyncio.timeout(CONNECT_WAIT_S):
        while True:
            past = len(world.shipped) + len(world.reject_bin) + sum(p.rejected is not None for p in world.products)
            if inspection.counts.settled >= past:
                await inspection.idle()
                return
            await asyncio.sleep(PROGRESS_POLL_S / 50)  # the PLC's reports arrive by its polling


def _aggregation_devices(config: LineConfig) -> set[str]:
    """Return the ids of the devices the aggregation stations use."""
    agg = config.aggregation
    if agg is None:
        return set()
    ids = {agg.cases.label.printer, agg.cases.label.verifier, agg.cases.scanner, agg.cases.camera}
    if agg.pallets is not None:
        ids |= {agg.pallets.scanner, agg.pallets.label.printer, agg.pallets.label.verifier}
    return {device_id for device_id in ids if device_id is not None}


def _packaging(line: SimulatedLine, daemon: Daemon, run: DemoRun) -> None:
    """Make a case label unreadable now and then; have the palletiser scan each case once it is closed."""
    case_labels = line.applicators.get("case")
    if case_labels is not None and run.defect_every:
        # A label the verifier cannot read now and then: voided, and the case relabelled with a new SSCC.
        case_labels.fault_every, case_labels.fault = LABEL_FAULT_EVERY, LabelFault.NO_READ_TEXT
    agg, config = daemon.aggregation, line.config.aggregation
    if agg is None or config is None or config.pallets is None:
        return
    scanner = line.sims.get(config.pallets.scanner)
    if not isinstance(scanner, WedgeScannerSim):
        return

    async def scan_onto_pallet(case: ContainerRow) -> None:
        # The case label's GS1-128 as a scanner without symbology identifiers sends it: 00 + SSCC.
        await scanner.scan(b"00" + case.identifier.encode("ascii"))

    agg.case_labels.on_closed.append(scan_onto_pallet)


async def _end_of_batch(daemon: Daemon, batch_id: int) -> None:
    """Close the last, short case and pallet as an operator does at the batch's end; wait for their labels."""
    agg = daemon.aggregation
    if agg is None:
        return
    async with asyncio.timeout(END_OF_BATCH_WAIT_S):
        for level, station in agg.stations:
            if level == "pallet":
                await agg.case_labels.wait_idle()
                # Every closed case scanned at the palletiser is on the pallet before the pallet is closed.
                while any(c.parent_id is None for c in await agg.aggregation.containers_of_batch(  # noqa: ASYNC110
                        batch_id, level="case", state="closed")):  # the store signals nothing on a change
                    await asyncio.sleep(PROGRESS_POLL_S / 50)
            current = station.current
            if current is not None:
                await agg.close_short(current, "demo", "end of batch")
        await agg.wait_labelled()


async def _close_and_deliver(batches: BatchService, batch_id: int, daemon: Daemon, upstream: EpcisUpstream | None,
                             problems: list[str]) -> dict[str, Any]:
    """Complete, reconcile and close the batch as an operator does, then wait for its EPCIS to arrive upstream."""
    control = daemon.control
    if control is not None and await control.command(Command.COMPLETE, DEMO_ACTOR,
                                                     reason="the demo's packs are through") is not State.COMPLETE:
        problems.append(f"the line did not complete: {control.status()['reason']}")
    report = await batches.status(batch_id)
    doubt = report["counts"]["in_doubt"]
    if doubt:
        # The infeed stopped, so what the printer still held was never on a pack; the feeder cleared it.
        await batches.decommission_in_doubt(batch_id, operator="demo",
                                            reason="left in the printer's buffer at batch end and cleared")
    try:
        closed = await batches.close(batch_id, operator="demo")
    except EdgeError as err:
        problems.append(f"the batch did not close: {err}")
        return {"closed": None, "delivery": []}
    delivery = await _delivered(daemon, batch_id, problems)
    if upstream is not None and delivery:
        stored = len(upstream.stored_events)
        events = sum(row["events"] for row in delivery)
        if stored != events:
            problems.append(f"upstream holds {stored} events, the batch has {events}")
    return {"closed": closed["equation"], "in_doubt_decommissioned": doubt, "delivery": delivery,
            "upstream_validated": upstream.validated_by if upstream is not None else None}


async def _delivered(daemon: Daemon, batch_id: int, problems: list[str]) -> list[dict[str, Any]]:
    """Return the batch's delivery status per target once every target has it delivered (or has failed)."""
    store = daemon.store
    if store is None or not daemon.deliveries:
        return []
    from edge.sync import outbox  # noqa: PLC0415 - delivery state only matters at the end

    try:
        async with asyncio.timeout(DELIVERY_WAIT_S):
            while True:
                rows = await store.read(lambda conn: outbox.batch_status(conn, batch_id=batch_id))
                done = [r for r in rows if r["state"] in ("delivered", "failed")]
                if rows and len(done) == len(daemon.deliveries):
                    break
                await asyncio.sleep(PROGRESS_POLL_S / 10)
    except TimeoutError:
        problems.append(f"the batch was not delivered upstream within {DELIVERY_WAIT_S:.0f} s")
    rows = await store.read(lambda conn: outbox.batch_status(conn, batch_id=batch_id))
    problems.extend(f"delivery to {r['target']} failed: {r['reason']}" for r in rows if r["state"] == "failed")
    return rows


async def _start(control: LineControl, batch: BatchRow) -> bool:
    """Reset the line and start it on the batch; False (logged) when it did not get to Execute."""
    await control.command(Command.RESET, DEMO_ACTOR, reason="demo")
    if await control.command(Command.START, DEMO_ACTOR, reason="demo", batch=batch.id) is State.EXECUTE:
        _LOG.info("batch running", batch=batch.id, work_order=batch.work_order)
        return True
    _LOG.error("the line did not start", reason=control.status()["reason"])
    return False


async def _run_out(line: SimulatedLine, units: int, control: LineControl) -> bool:
    """Let units packs onto the belt, stop the infeed, and wait until it is empty; False (logged) if not.

    The line leaving Execute before (an alarm stopped it, a station held it) leaves its belt standing for good.
    """
    try:
        await _until_entered(line, units, control)
        line.world.infeed = False
        await _until_off_the_belt(line, units, control)
    except LineLeftExecuteError as err:
        _LOG.error("the line stopped before the demo was through", reason=str(err))
        return False
    return True


def _executing(control: LineControl) -> None:
    """Raise LineLeftExecuteError unless the line executes: its belt would stand still for good."""
    if control.state is not State.EXECUTE:
        raise LineLeftExecuteError(f"{control.state.title}: {control.status()['reason']}")


async def _until_entered(line: SimulatedLine, units: int, control: LineControl) -> None:
    """Return once units packs came onto the belt."""
    world = line.world
    while world.entered < units:
        _executing(control)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(PROGRESS_POLL_S):
                await world.wait_changed()


async def _until_off_the_belt(line: SimulatedLine, units: int, control: LineControl) -> None:
    """Return once units packs left the belt (to the case packer or the reject bin) and it is empty."""
    world = line.world
    while len(world.shipped) + len(world.reject_bin) < units or world.products:
        _executing(control)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(PROGRESS_POLL_S):
                await world.wait_changed()


async def _scan(reads: asyncio.Queue[bytes], scanners: list[WedgeScannerSim]) -> None:
    while True:
        code = await reads.get()
        for scanner in scanners:
            if scanner.connections:
                await scanner.scan(code)


def _offer(reads: asyncio.Queue[bytes], code: bytes) -> None:
    with contextlib.suppress(asyncio.QueueFull):  # the scanner is a bystander: a dropped read costs nothing
        reads.put_nowait(code)


async def _summary(batches: BatchService, batch_id: int, line: SimulatedLine, daemon: Daemon) -> dict[str, Any]:
    world = line.world
    states = await batches.ledger.counts(batch_id)
    printer = line.printer
    printed = [p.fields[0][1] for p in printer.engine.printed if p.fields[0][1]] if printer is not None else []
    serials = [_serial_of(code) for code in printed]
    problems = []
    if len(set(serials)) != len(serials):
        problems.append("a serial was printed twice")
    defects: dict[str, list[int]] = {}
    left = [*world.shipped, *world.reject_bin]
    for pack in left:
        for defect in pack.defects:
            row = defects.setdefault(defect.kind.value, [0, 0])
            row[0] += 1
            row[1] += int(bool(pack.rejected))
            cosmetic = defect.kind in COSMETIC_DEFECTS
            if not cosmetic and not pack.rejected:
                problems.append(f"pack {pack.seq} with {defect.kind.value} was not rejected")
    inspection = daemon.inspection
    verdicts = inspection.verdicts if inspection is not None else {}
    for pack in world.shipped:
        verdict = verdicts.get(pack.seq)
        if verdict is None or not verdict.good:
            problems.append(f"pack {pack.seq} left the line without a good verdict")
    if world.escaped:
        problems.append(f"{len(world.escaped)} rejected pack(s) without confirmation")
    shipped = [verdicts[p.seq].serial_id for p in world.shipped if p.seq in verdicts]
    packed = await _packed(daemon, batch_id, [s for s in shipped if s is not None], problems)
    return {
        "batch": batch_id,
        **packed,
        "packs": len(left),
        "shipped": len(world.shipped),
        "rejected": len(world.reject_bin),
        # Reasons of the packs in the bin (the service's own counts also hold packs still on the belt).
        "reasons": dict(Counter(
            (verdicts[p.seq].reason or "late") if p.seq in verdicts else "no verdict" for p in world.reject_bin
        )),
        "alarms": dict(inspection.counts.alarms) if inspection is not None else {},
        "defects": defects,
        "printed_by_device": len(printed),
        "states": {state: count for state, count in states.items() if count},
        "first": printed[:2],
        "problems": problems,
    }


async def _packed(daemon: Daemon, batch_id: int, shipped: list[int], problems: list[str]) -> dict[str, Any]:
    """Return the batch's cases and pallets for the summary; add what is wrong with them to problems."""
    agg = daemon.aggregation
    if agg is None:
        return {"cases": [], "pallets": [], "voided": 0}
    service = agg.aggregation
    cases = await service.containers_of_batch(batch_id, level="case")
    pallets = await service.containers_of_batch(batch_id, level="pallet")
    loose = [serial_id for serial_id in shipped if await service.parent_of_serial(serial_id) is None]
    if loose:
        problems.append(f"{len(loose)} good pack(s) left the line in no case")
    problems.extend(f"{c.name} is still {c.state}" for c in [*cases, *pallets] if c.state != "closed")
    if pallets:
        problems.extend(f"{c.name} is on no pallet" for c in cases if c.parent_id is None)
    voided = [e for e in await service.events(batch_id) if e.action == "void_label"]

    def short(c: ContainerRow) -> str:
        return f" short: {c.partial_reason}" if c.partial_reason else ""

    return {
        "cases": [f"{c.identifier} {c.count}/{c.capacity}{short(c)}" for c in cases],
        "pallets": [f"{p.identifier} {p.count}/{p.capacity} cases{short(p)}" for p in pallets],
        "voided": len(voided),
    }


def _print_summary(outcome: dict[str, Any]) -> None:
    lines = [
        f"batch {outcome['batch']}: {outcome['packs']} packs off the belt, {outcome['printed_by_device']} printed",
        f"good, to the case packer: {outcome['shipped']}",
        f"rejected: {outcome['rejected']}"
        + ("  (" + ", ".join(f"{r} {n}" for r, n in sorted(outcome["reasons"].items())) + ")"
           if outcome["reasons"] else ""),
        "defects injected (rejected/injected): "
        + (", ".join(f"{kind} {row[1]}/{row[0]}" for kind, row in sorted(outcome["defects"].items())) or "none"),
        f"cases (SSCC, units), each label verified: {len(outcome['cases'])}: "
        + (", ".join(outcome["cases"]) or "none"),
        f"pallets (SSCC, cases): {len(outcome['pallets'])}: " + (", ".join(outcome["pallets"]) or "none"),
        f"labels voided and reprinted: {outcome['voided']}",
        "serials by state: " + ", ".join(f"{state} {count}" for state, count in outcome["states"].items()),
        "alarms: " + (", ".join(f"{a} {n}" for a, n in outcome["alarms"].items()) or "none"),
        "first printed: " + ", ".join(printable(code.encode("latin-1")) for code in outcome["first"]),
        f"batch closed: {outcome.get('closed') or 'no'}"
        + (f" ({outcome['in_doubt_decommissioned']} in-doubt serials decommissioned)"
           if outcome.get("in_doubt_decommissioned") else ""),
        *(f"EPCIS to {row['target']}: {row['state']}, {row['events']} events in {row['messages']} document(s), "
          f"{row['attempts']} attempt(s)" for row in outcome.get("delivery", [])),
        *([f"upstream validated with {outcome['upstream_validated']}"] if outcome.get("upstream_validated") else []),
        "problems: " + ("; ".join(outcome["problems"][:10]) or "none"),
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
    simulated = []
    for dev in config.devices:
        if dev.driver not in SIMULATORS:
            _LOG.warning("not simulated on its own (it needs the demo's simulated line)", device=dev.id,
                         driver=dev.driver)
            continue
        if dev.transport.is_tcp:
            sims.append(simulator_for(dev.driver, dev.parsed_options, port=dev.transport.host_port[1]))
        else:
            sims.append(simulator_for(dev.driver, dev.parsed_options, transport="pty"))
        simulated.append(dev)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        async with asyncio.TaskGroup() as tg:
            serving = []
            for dev, sim in zip(simulated, sims, strict=True):
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
