"""The embedded demo: the line controller and a simulator of every device, in one process.

With ``resume`` the demo carries on the batch it left unfinished in its state directory (after a crash, a
kill, a power cut) instead of starting another: the daemon's recovery has put the units that were in flight in
doubt, and the demo goes on from what the store says is done. It makes the packs still missing, completes the
batch, decommissions what is in doubt, closes the last case and pallet short, closes the batch and waits for
its EPCIS to arrive upstream; the simulated repository keeps its events in the state directory too.

With ``serial_upstream`` "open-scs" the batch draws its serials over OPEN-SCS (OPC 30260) from a simulated Level-3
pool server in the same process (`edge.openscs.demo`), and the summary says how many came that way, what was
reported of them and what was returned, and whether the L3 and the line agree on every serial's state.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import secrets
import signal
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import structlog

from edge.config import StorageConfig, load_config
from edge.control.accounts import Accounts
from edge.control.audit import AuditTrail
from edge.control.packml import Command, State
from edge.control.permissions import Actor, Role
from edge.daemon import Daemon, printable
from edge.errors import BatchNotFoundError, ConfigError, EdgeError
from edge.gs1.element import parse
from edge.line.simulated import COSMETIC_DEFECTS, SimulatedLine, mixed_plan
from edge.log import configure
from edge.plant.demo import delivered_lines, with_endpoint
from edge.serials.states import BatchState, SerialState
from edge.supervisor import LinkState
from simulators.catalog import SIMULATORS, simulator_for
from simulators.epcis_upstream import EpcisUpstream
from simulators.packaging import LabelFault
from simulators.plant_endpoint import PlantEndpoint
from simulators.printer import PrinterSimulator
from simulators.scanner_wedge import WedgeScannerSim

if TYPE_CHECKING:
    import sqlite3

    from edge.aggregation.ops import ContainerRow
    from edge.config import LineConfig
    from edge.control.line import LineControl
    from edge.serials.batches import BatchService
    from edge.serials.ops import BatchRow
    from simulators.base import Simulator
    from simulators.openscs_pool import OpenScsPool

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
DEMO_BATCH_FILE = "demo-batch.json"
"""In the state directory: the work order of the demo's batch and the packs it makes, for resume to carry on."""
UPSTREAM_DIR = "upstream"
"""In the state directory, when resuming: the simulated repository's stored events, kept across restarts."""
MADE = (SerialState.COMMISSIONED, SerialState.REJECTED, SerialState.SAMPLED, SerialState.DESTROYED)
"""States of serials whose pack was judged, unless they got there from in doubt (decommissioned, re-inspected)."""
PRODUCING = frozenset({BatchState.RELEASED, BatchState.RUNNING, BatchState.PAUSED})
"""Batch states in which the demo still has packs to make."""
DEMO_USERS = (("admin", Role.ADMINISTRATOR), ("supervisor", Role.SUPERVISOR), ("operator", Role.OPERATOR),
              ("qa", Role.QA))
"""Accounts the demo makes in a new state directory, one per role, so the HMI can be tried at once."""
PROGRESS_EVERY_S = 0.25
"""How often the progress bar is redrawn on a terminal."""
PROGRESS_WIDTH = 30


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
    resume: bool = False
    """Carry on the batch left unfinished in the state directory (start one when there is none)."""
    spare: int = 0
    """Serials allocated beyond the packs and the printer's buffer: a restart puts what was in flight in doubt."""
    serial_upstream: Literal["open-scs"] | None = None
    """open-scs: the batch's serials come from a simulated L3 pool server over OPEN-SCS; None: the market's source."""


@dataclass(frozen=True, slots=True)
class DemoOrder:
    """The demo's batch as written down before it was imported: what a resumed demo carries on."""

    work_order: str
    units: int
    """Packs the batch makes (judged, good or rejected)."""
    quantity: int
    """Serials the work order asks for: the packs, the printer's buffer and the spare."""


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
        # On a terminal the progress bar shows the run; --log-level info shows every event besides.
        level=log_level or ("warning" if sys.stderr.isatty() else config.logging.level),
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
            # The site's EPCIS repository, simulated: every capture target of the demo config points at it. A
            # resumed demo's repository remembers what it stored before, as a real one does.
            storage = config.storage.state_dir / UPSTREAM_DIR if run.resume else None
            upstream = await stack.enter_async_context(EpcisUpstream(storage=storage))
            targets = tuple(t.model_copy(update={"url": upstream.url}) if t.kind == "capture" else t
                            for t in config.upstream.targets)
            config = config.model_copy(update={"upstream": config.upstream.model_copy(update={"targets": targets})})
        l3 = None
        if run.serial_upstream == "open-scs":
            # asyncua loads only when the demo draws its serials over OPEN-SCS.
            from edge.openscs.demo import simulated_l3  # noqa: PLC0415

            config, l3 = await stack.enter_async_context(simulated_l3(config))
        # The site's MES/ERP, simulated: every HTTP plant target points at it.
        plant = await stack.enter_async_context(PlantEndpoint()) if config.plant.targets else None
        config = with_endpoint(config, plant.url) if plant is not None else config
        line = await stack.enter_async_context(SimulatedLine(config, defects=plan))
        return await _run_line(line, config_sha256, run, upstream, l3=l3, plant=plant)


async def _run_line(line: SimulatedLine, config_sha256: str, run: DemoRun, upstream: EpcisUpstream | None, *,
                    l3: OpenScsPool | None = None, plant: PlantEndpoint | None = None) -> int:
    config = line.config
    printer = line.printer
    outcome: dict[str, Any] = {}
    daemon: Daemon

    async def production() -> None:
        await daemon.ready.wait()
        await _connected(line, daemon)
        await _welcome(daemon)
        batches = daemon.batches
        if batches is None or daemon.control is None or printer is None:
            _LOG.warning("nothing to print: the demo line has no printer")
            return
        # The feeder keeps the printer's buffer filled ahead of the packs: a batch of exactly `units` would run
        # dry (and hold the line) before the last pack came. What the buffer holds at the end is decommissioned,
        # the serials never sent are returned.
        order = await _demo_order(config.storage.state_dir, run, printer.engine.depth)
        batch, resumed = await _demo_batch(batches, order, config.line.id)
        _packaging(line, daemon, run)
        async with asyncio.TaskGroup() as tasks:
            labelling = tasks.create_task(line.run_packaging(), name="demo labellers")
            try:
                if run.resume:
                    await _destroy_lost_good_packs(daemon, batch)
                    await _palletise_closed_cases(line, daemon, batch.id)
                if batch.state in PRODUCING and not await _produce(line, daemon, run, batch, order, resumed=resumed):
                    daemon.request_shutdown()
                    return
                if (await batches.ledger.batch(batch.id)).state is BatchState.COMPLETING:
                    # Completed before a restart: everything was closed then, unless a label was in doubt.
                    await _end_of_batch(daemon, batch.id, labels_in_doubt=True)
            finally:
                labelling.cancel()
        outcome.update(await _summary(batches, batch.id, line, daemon, order))
        outcome.update(await _close_and_deliver(batches, batch.id, daemon, upstream, outcome["problems"],
                                                durable_upstream=run.resume))
        if l3 is not None:
            from edge.openscs.demo import l3_view  # noqa: PLC0415 - loaded with the simulated L3 already

            outcome.update(await l3_view(daemon, batch.id, l3, outcome["problems"]))
        outcome["plant"] = await delivered_lines(daemon.plant, daemon.store, batch.id, plant, outcome["problems"],
                                                 durable=run.resume)
        daemon.request_shutdown()

    async def stop_after() -> None:
        if run.duration_s is None:
            return
        await asyncio.sleep(run.duration_s)
        _LOG.warning("demo stopped by --duration before the batch was done", duration_s=run.duration_s)
        daemon.request_shutdown()

    async def progress() -> None:
        if not sys.stderr.isatty():
            return  # the log lines are the progress of a run that is not watched on a terminal
        await daemon.ready.wait()
        await _progress_bar(line, run)

    daemon = Daemon(config, config_sha256=config_sha256, services=[production, stop_after, progress])
    _LOG.info("demo starting", devices=len(config.devices), state_dir=str(config.storage.state_dir), units=run.units,
              ppm=run.ppm, resume=run.resume)
    code = await daemon.run()
    if not outcome:
        return code or 1
    _print_summary(outcome)
    return code if not outcome["problems"] else 1


async def _welcome(daemon: Daemon) -> None:
    """Print where the HMI and the API are, with a login per role (made now in a new state directory)."""
    store, host = daemon.store, daemon.config.hmi.host
    if store is None:  # pragma: no cover - the daemon is ready
        return
    accounts = Accounts(store, audit=AuditTrail(store))
    made: list[tuple[str, Role, str]] = []
    if not await accounts.users():
        admin = None
        for name, role in DEMO_USERS:
            password = secrets.token_urlsafe(12)
            await accounts.add(name, role, password, by=admin, full_name=f"Demo {role.value}")
            admin = admin or Actor(name, role)
            made.append((name, role, password))
    lines = [f"HMI:  http://{host}:{daemon.hmi_port}/hmi/", f"API:  http://{daemon.config.api.host}:{daemon.api_port}/"]
    if made:
        lines.append("logins (made for this demo; `lineside user` manages them):")
        lines += [f"  {role.value:<14} {name:<11} password {password}" for name, role, password in made]
    else:
        lines.append("logins: the users already in this state directory")
    print("\n".join(lines), flush=True)  # noqa: T201 - the command's output


async def _progress_bar(line: SimulatedLine, run: DemoRun) -> None:
    """Redraw one line on the terminal: packs off the belt of those asked, printed, good, rejected, the rate."""
    world, started = line.world, time.monotonic()
    try:
        while True:
            done = len(world.shipped) + len(world.reject_bin)
            share = min(1.0, done / run.units) if run.units else 1.0
            filled = round(share * PROGRESS_WIDTH)
            minutes = max(time.monotonic() - started, 1e-9) / 60
            printed = len(line.printer.engine.printed) if line.printer is not None else 0
            sys.stderr.write(f"\r[{'#' * filled}{'.' * (PROGRESS_WIDTH - filled)}] {done}/{run.units} packs  "
                             f"printed {printed}  good {len(world.shipped)}  rejected {len(world.reject_bin)}  "
                             f"{done / minutes:,.0f}/min ")
            sys.stderr.flush()
            await asyncio.sleep(PROGRESS_EVERY_S)
    finally:
        sys.stderr.write("\n")
        sys.stderr.flush()


async def _connected(line: SimulatedLine, daemon: Daemon) -> None:
    """Return once every simulator has the daemon connected and every device is online."""
    async with asyncio.timeout(CONNECT_WAIT_S):
        for sim in line.sims.values():
            await sim.wait_for_connection()
        if line.plc is not None:
            await line.plc.wait_for_connection()
        # Every device online (the simulated camera has no link to wait on) before packs arrive.
        while any(s.status.state is not LinkState.ONLINE for s in daemon.supervisors):  # noqa: ASYNC110
            await asyncio.sleep(PROGRESS_POLL_S / 50)


async def _demo_order(state_dir: Path, run: DemoRun, depth: int) -> DemoOrder:
    """Return the demo's batch left in state_dir when resuming, else a new one, written down before it exists."""
    path = state_dir / DEMO_BATCH_FILE
    if run.resume:
        try:
            data = json.loads(await asyncio.to_thread(path.read_text, encoding="utf-8"))
        except FileNotFoundError:
            pass
        else:
            return DemoOrder(str(data["work_order"]), int(data["units"]), int(data["quantity"]))
    order = DemoOrder(f"DEMO-{secrets.token_hex(3).upper()}", run.units, run.units + depth + max(0, run.spare))
    # Durable before the batch is imported: a demo killed in between imports this same order when resumed.
    await asyncio.to_thread(_write_durably, path, json.dumps(
        {"work_order": order.work_order, "units": order.units, "quantity": order.quantity}))
    return order


def _write_durably(path: Path, text: str) -> None:
    """Replace path with text atomically and durably (a kill leaves the old file or the new, never half of one)."""
    part = path.with_name(path.name + ".part")
    with part.open("w", encoding="utf-8") as out:
        out.write(text)
        out.flush()
        os.fsync(out.fileno())
    part.replace(path)
    directory = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


async def _demo_batch(batches: BatchService, order: DemoOrder, line_id: str) -> tuple[BatchRow, bool]:
    """Return the order's batch released (or further on), importing and releasing it as far as it has not been.

    The flag tells whether the batch existed before this run (it is carried on).
    """
    resumed = True
    try:
        batch = await batches.ledger.batch(order.work_order)
    except BatchNotFoundError:
        resumed = False
        text = DEMO_ORDER.format(work_order=order.work_order, line=line_id, quantity=order.quantity)
        batch = await batches.import_work_order(text, "demo work order", operator="demo")
    else:
        counts = await batches.ledger.counts(batch.id)
        made = await batches.ledger.store.read(lambda conn: packs_made(conn, batch.id))
        _LOG.info("demo resuming its batch", batch=batch.id, work_order=batch.work_order, state=batch.state.value,
                  made=made, units=order.units, in_doubt=counts["in_doubt"])
    if batch.state is BatchState.CREATED:
        batch = await batches.release(batch.id, operator="demo")  # allocation resumes where a kill left it
    return batch, resumed


async def _produce(line: SimulatedLine, daemon: Daemon, run: DemoRun, batch: BatchRow, order: DemoOrder, *,
                   resumed: bool) -> bool:
    """Start the line on the batch and make the packs the store does not have yet; False (logged) if it stopped."""
    batches, control, printer = daemon.batches, daemon.control, line.printer
    if batches is None or control is None or printer is None:  # pragma: no cover - checked by the caller
        raise RuntimeError("the demo produces only with a printer, batches and a line control")
    config = line.config
    stations = _aggregation_devices(config)
    # The hand scanner at the packing station reads unit codes; the label and pallet scanners read labels.
    scanners = [sim for dev_id, sim in line.sims.items() if isinstance(sim, WedgeScannerSim) and dev_id not in stations]
    # Counted in the store, not by this process: packs judged before a restart are made, the ones in flight are
    # lost (in doubt) and made again.
    packs = order.units - await batches.ledger.store.read(lambda conn: packs_made(conn, batch.id))
    left = (await batches.ledger.counts(batch.id))["allocated"]
    if packs > left:
        _LOG.warning("the batch has too few serials left for its packs; making what they allow",
                     packs=packs, serials_left=left, hint="give --spare for restarts")
        packs = left
    if not await _start(control, batch):
        return False
    reads: asyncio.Queue[bytes] = asyncio.Queue(maxsize=SCAN_QUEUE)
    # The hand scanner at the packing station reads back what the printer printed.
    printer.engine.on_print.append(lambda printed: _offer(reads, printed.fields[0][1].encode("latin-1")))
    async with asyncio.TaskGroup() as tasks:
        scanning = tasks.create_task(_scan(reads, scanners), name="demo scanner")
        belt = tasks.create_task(line.world.run(run.ppm), name="demo belt") if packs > 0 else None
        if belt is not None and not await _run_out(line, packs, control):
            for task in (belt, scanning):
                task.cancel()
            return False
        if belt is not None:
            belt.cancel()
        scanning.cancel()
        await _settled(line, daemon)
        # Nothing left to make after a restart: the last case and pallet may have been closed short before it,
        # their labels sent and never verified.
        await _end_of_batch(daemon, batch.id, labels_in_doubt=resumed and packs <= 0)
    return True


async def _destroy_lost_good_packs(daemon: Daemon, batch: BatchRow) -> None:
    """Destroy the units commissioned before a restart that reached no case: their packs were lost with the process.

    A good pack is packed once it has passed the reject station; one between the camera and the case packer when
    the process died is no longer on the (simulated) belt, and an operator clearing a real belt would not know
    which case it belongs to. Only a line that packs every good pack in sequence has such packs.
    """
    agg, batches = daemon.aggregation, daemon.batches
    if agg is None or agg.packer is None or batches is None or batch.state not in (*PRODUCING, BatchState.COMPLETING):
        return
    lost = await batches.ledger.store.read(lambda conn: _unpacked_good(conn, batch.id))
    if lost:
        _LOG.warning("good packs lost with the process before the case packer: their units are destroyed",
                     batch=batch.id, units=len(lost))
        await batches.ledger.move(lost, SerialState.DESTROYED, operator="demo", batch_id=batch.id,
                                  reason="good pack between the camera and the case packer when the line controller "
                                         "was killed: lost with the process")


def _unpacked_good(conn: sqlite3.Connection, batch_id: int) -> list[int]:
    """Return the batch's commissioned units in no container."""
    return [int(row[0]) for row in conn.execute(
        "SELECT s.id FROM serial AS s WHERE s.batch_id = ? AND s.state = ? AND NOT EXISTS"
        " (SELECT 1 FROM aggregation_member AS m WHERE m.serial_id = s.id AND m.unpacked_event IS NULL)"
        " ORDER BY s.id", (batch_id, int(SerialState.COMMISSIONED)))]


async def _palletise_closed_cases(line: SimulatedLine, daemon: Daemon, batch_id: int) -> None:
    """Scan the cases closed before a restart that reached no pallet: their scans were lost with the process."""
    agg, config = daemon.aggregation, line.config.aggregation
    if agg is None or config is None or config.pallets is None:
        return
    scanner = line.sims.get(config.pallets.scanner)
    if not isinstance(scanner, WedgeScannerSim):
        return
    for case in await agg.aggregation.containers_of_batch(batch_id, level="case", state="closed"):
        if case.parent_id is None:
            _LOG.info("case closed before the restart scanned onto the pallet", case=case.name)
            await scanner.scan(b"00" + case.identifier.encode("ascii"))


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


async def _end_of_batch(daemon: Daemon, batch_id: int, *, labels_in_doubt: bool = False) -> None:
    """Close the last, short case and pallet as an operator does at the batch's end; wait for their labels.

    labels_in_doubt: a label may have been sent for them before a restart (the line controller cannot tell, see
    `AggregationLine.recover`), so the operator voids their SSCCs first and no two labels ever carry one.
    """
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
                if labels_in_doubt:
                    await agg.aggregation.void_label(
                        current.id, operator="demo", station=f"{level}-labeller",
                        reason="label in doubt: the line controller was killed while the container may have waited "
                               "for its short label")
                await agg.close_short(current, "demo", "end of batch")
        await agg.wait_labelled()


async def _close_and_deliver(batches: BatchService, batch_id: int, daemon: Daemon, upstream: EpcisUpstream | None,
                             problems: list[str], *, durable_upstream: bool = False) -> dict[str, Any]:
    """Complete, reconcile and close the batch as an operator does, then wait for its EPCIS to arrive upstream.

    Each step is skipped when the store says it was done before a restart. durable_upstream: the repository
    holds what it stored before this process (every batch delivered from this state directory).
    """
    control = daemon.control
    state = (await batches.ledger.batch(batch_id)).state
    if state in (BatchState.RUNNING, BatchState.PAUSED) and control is not None and await control.command(
            Command.COMPLETE, DEMO_ACTOR, reason="the demo's packs are through") is not State.COMPLETE:
        problems.append(f"the line did not complete: {control.status()['reason']}")
    report = await batches.status(batch_id)
    doubt = report["counts"]["in_doubt"]
    if doubt:
        why = await batches.ledger.store.read(lambda conn: _in_doubt_causes(conn, batch_id))
        await batches.decommission_in_doubt(batch_id, operator="demo", reason=why)
    if report["batch"]["state"] == BatchState.CLOSED.value:
        closed = await batches.ledger.reconciliation(batch_id)
    else:
        try:
            closed = await batches.close(batch_id, operator="demo")
        except EdgeError as err:
            problems.append(f"the batch did not close: {err}")
            return {"closed": None, "delivery": []}
    delivery = await _delivered(daemon, batch_id, problems)
    if upstream is not None and delivery:
        stored = len(upstream.stored_events)
        events = 0
        for ref in await batches.ledger.batches() if durable_upstream else [await batches.ledger.batch(batch_id)]:
            if ref.state is BatchState.CLOSED:
                events += sum(int(row["events"] or 0) for row in await _delivery_rows(daemon, ref.id)
                              if row["state"] == "delivered")
        if stored != events:
            problems.append(f"upstream holds {stored} events, the delivered batches have {events}")
    final = {state: count for state, count in (await batches.ledger.counts(batch_id)).items() if count}
    return {"closed": closed["equation"], "in_doubt_decommissioned": doubt, "delivery": delivery,
            "upstream_validated": upstream.validated_by if upstream is not None else None, "final_states": final}


def packs_made(conn: sqlite3.Connection, batch_id: int) -> int:
    """Return how many of the batch's packs were judged, in every run (not those in doubt, decommissioned later)."""
    marks = ", ".join("?" * len(MADE))
    row = conn.execute(
        f"SELECT count(*) FROM serial AS s WHERE s.batch_id = ? AND s.state IN ({marks})"  # noqa: S608 - only ? marks
        " AND NOT EXISTS (SELECT 1 FROM serial_history AS h WHERE h.serial_id = s.id AND h.from_state = ?)",
        (batch_id, *(int(state) for state in MADE), int(SerialState.IN_DOUBT)),
    ).fetchone()
    return int(row[0])


def _in_doubt_causes(conn: sqlite3.Connection, batch_id: int) -> str:
    """Say why the batch's in-doubt serials are in doubt, with how many for each cause (the decommission reason)."""
    rows = conn.execute(
        "SELECT t.reason, count(*) FROM serial AS s JOIN serial_history AS h ON h.serial_id = s.id"
        " JOIN transition AS t ON t.id = h.transition_id WHERE s.batch_id = ? AND s.state = ? AND t.to_state = ?"
        " GROUP BY t.reason ORDER BY t.reason",
        (batch_id, int(SerialState.IN_DOUBT), int(SerialState.IN_DOUBT)),
    ).fetchall()
    causes: Counter[str] = Counter()
    for reason, count in rows:
        if "after a crash" in reason:
            # The daemon's recovery: between printer and reject station when the process died.
            causes["in flight when the line controller was killed: their packs were lost with the process"] += count
        elif "batch was completed" in reason:
            # The infeed stopped, so what the printer still held was never on a pack; the feeder cleared it.
            causes["left in the printer's buffer at batch end and cleared"] += count
        else:
            causes[reason] += count
    return "; ".join(f"{count} {cause}" for cause, count in causes.items())


async def _delivery_rows(daemon: Daemon, batch_id: int) -> list[dict[str, Any]]:
    """Return the batch's delivery status per target."""
    store = daemon.store
    if store is None:
        return []
    from edge.sync import outbox  # noqa: PLC0415 - delivery state only matters at the end

    return await store.read(lambda conn: outbox.batch_status(conn, batch_id=batch_id))


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


async def _summary(batches: BatchService, batch_id: int, line: SimulatedLine, daemon: Daemon, order: DemoOrder
                   ) -> dict[str, Any]:
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
        "made": await batches.ledger.store.read(lambda conn: packs_made(conn, batch_id)),
        "units": order.units,
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


def summary_table(outcome: dict[str, Any]) -> list[str]:
    """Return the summary's table: units by state, rejects by reason, cases and pallets, delivery."""
    states = outcome.get("final_states") or outcome["states"]
    title = "serials by state" + (" at close" if "final_states" in outcome else "")
    rows: list[tuple[str, str, str]] = [(title, "", "")]
    rows += [("", state, str(count)) for state, count in states.items()]
    rows.append(("rejects by reason", "", ""))
    rows += [("", reason, str(count)) for reason, count in sorted(outcome["reasons"].items())] or [("", "none", "0")]
    short = [c for c in outcome["cases"] if " short: " in c]
    rows += [("containers", "", ""), ("", "cases closed", str(len(outcome["cases"]))),
             ("", "of them short", str(len(short))), ("", "pallets closed", str(len(outcome["pallets"]))),
             ("", "labels voided and reprinted", str(outcome["voided"]))]
    rows.append(("delivery", "", ""))
    rows += [("", f"{row['target']}: {row['state']}", f"{row['events']} events") for row in outcome.get("delivery", [])
             ] or [("", "none configured", "")]
    width = max(len(name) for _, name, _ in rows)
    lines = [f"{'=' * 12} batch {outcome['batch']} {'=' * (width - 2)}"]
    for section, name, value in rows:
        lines.append(section or f"  {name:<{width}} {value:>8}")
    lines.append("=" * (width + 26))
    return lines


def _print_summary(outcome: dict[str, Any]) -> None:
    print("\n".join(summary_table(outcome)))  # noqa: T201 - the command's output
    lines = [
        f"batch {outcome['batch']}: {outcome['packs']} packs off the belt, {outcome['printed_by_device']} printed",
        (f"packs settled by serial in the store, every run: {outcome['made']} of {outcome['units']} asked "
         "(a reject whose code could not be read settles at close)"),
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
        *_open_scs_lines(outcome),
        *outcome.get("plant", []),
        "problems: " + ("; ".join(outcome["problems"][:10]) or "none"),
    ]
    print("\n".join(lines))  # noqa: T201 - the command's output


def _open_scs_lines(outcome: dict[str, Any]) -> list[str]:
    """Return the summary's OPEN-SCS lines (none when the demo drew no serials over OPEN-SCS)."""
    if "open_scs" not in outcome:
        return []
    from edge.openscs.demo import summary_lines  # noqa: PLC0415 - loaded with the simulated L3 already

    return summary_lines(outcome)


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
