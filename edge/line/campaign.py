"""The fault campaign: whole batches end to end, one fault injected mid-batch in each, every invariant checked after.

`run_scenario` runs the real daemon against a simulated line (`SimulatedLine`: printer, camera, PLC, labellers and
scanners over loopback) and a simulated EPCIS repository. The campaign moves the belt itself, a quarter pitch at a
time, and after each step waits until the line controller has caught up (every pack past the camera judged, every
pack past the reject station reported), so no outcome depends on timing. As an operator would, it starts the batch,
lets the scenario inject its fault after a third of the packs, watches the line hold or stop, recovers (acknowledge,
then Unhold, or Reset and Start), makes the rest of the packs, completes the batch, closes the last case and pallet
short, decommissions the serials left in doubt with the reason, closes the batch, and waits for its EPCIS upstream.

`CampaignLine.check` then holds the line controller's records against the simulated world's truth (DESIGN
invariants 1 to 7): no serial printed twice, sent twice or left unsettled; every pack that reached the case packer
judged good, commissioned with the code it carries and in exactly one case; no rejected pack counted good;
reconciliation balanced, in-doubt serials decommissioned by an operator with a reason; each event stored upstream
exactly once; the audit trail intact. The line's reaction is checked against the configuration: a station's hold
request holds the line (or stops it, ``control.on_hold_request``), an alarm stops it (or aborts it).

Used by the tests (tests/edge/test_fault_campaign.py, one scenario each) and by ``lineside bench faults``, which runs
every scenario on longer batches, repeatedly, beside the same batch without a fault.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import shutil
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal

import structlog

from drivers.printer.base import FaultReason, PrinterState
from edge.config import load_config
from edge.control.audit import AuditTrail
from edge.control.packml import Command, State
from edge.control.permissions import Actor, Role
from edge.daemon import Daemon
from edge.errors import EdgeError
from edge.gs1.element import parse
from edge.line.simulated import EveryNth, SimulatedLine
from edge.serials.states import SETTLED, SerialState
from edge.supervisor import LinkState
from simulators.epcis_upstream import EpcisUpstream, GarbageAnswer, Unavailable
from simulators.faults import Disconnect, Garbage
from simulators.scanner_wedge import WedgeScannerSim

if TYPE_CHECKING:
    import sqlite3
    from collections.abc import AsyncIterator

    from edge.aggregation.ops import ContainerRow
    from edge.config import LineConfig
    from edge.control.line import Alarm, LineControl
    from edge.line.inspection import InspectionService
    from edge.serials.batches import BatchService
    from edge.store import Store
    from simulators.printer import PrinterSimulator
    from simulators.world import LineWorld

_LOG = structlog.get_logger("lineside.campaign")

ROOT: Final = Path(__file__).resolve().parent.parent.parent
CAMPAIGN_CONFIG: Final = ROOT / "config" / "demo.yaml"
"""The demo line: a TIJ printer, the simulated camera, the PLC, case and pallet labellers with their scanners."""
PRODUCT: Final = "aspirin-500-eu"
ORDER: Final = """work_order: {work_order}
product: {product}
lot: "FAULT01"
expiry: 2028-10-31
quantity: {quantity}
line: {line}
"""
OPERATOR: Final = Actor("campaign-operator", Role.OPERATOR)
SUPERVISOR: Final = Actor("campaign-supervisor", Role.SUPERVISOR)

DEFAULT_UNITS: Final = 30
"""Packs per batch in the tests: three cases, a fault after ten (the belt holds twelve)."""
DEFECT_EVERY: Final = 7
"""A reject-worthy defect on every 7th pack (from the 5th): the reject path runs in every scenario."""
SPARE_BUFFERS: Final = 4
"""Serials allocated beyond the packs, in printer buffers: each clearing of the buffer puts one buffer in doubt."""
HANG_GUARD_S: Final = 30.0
"""Longest any one wait of the campaign may take: a guard against a hang, never a measurement."""
CATCH_UP_POLL_S: Final = 0.002
"""How often the campaign looks whether the line caught up: the line signals nothing; a fraction of a step's work."""
REACTION_PACKS: Final = 16
"""Packs the belt may move after a fault before the line must have held or stopped."""
DELIVERY_WAIT_S: Final = 60.0
"""Longest a closed batch may take to be stored upstream once the repository answers."""
UPSTREAM_ATTEMPTS_WHILE_DOWN: Final = 2
"""Delivery attempts the repository refuses (each way it is down) before it is restored."""
PLC_BLIND_PITCHES: Final = 2
"""Pitches the belt runs on after the PLC link is cut, before the PLC's watchdog stops it, the line not hearing."""
INK_RUN_ON_PITCHES: Final = 4
"""Pitches the belt moves after the ink runs out (two prints on) before the campaign waits for the hold."""
SMALL_DISK_BYTES: Final = 64 * 1024 * 1024
"""Size of the tmpfs the disk-full scenario fills: room for a short batch's store, small enough to fill at once."""

Request = Literal["hold", "stop"]


class CampaignError(EdgeError):
    """The campaign itself could not go on (the line never came back); the scenario failed."""


@dataclass(frozen=True, slots=True)
class CampaignRun:
    """What one scenario's batch makes."""

    units: int = DEFAULT_UNITS
    """Packs onto the belt (printed, inspected, shipped or rejected)."""
    fault_at: int | None = None
    """The pack after which the fault is injected (default: a third of the way)."""
    defect_every: int = DEFECT_EVERY

    @property
    def fault_pack(self) -> int:
        """The pack after which the fault is injected."""
        return self.fault_at if self.fault_at is not None else max(1, self.units // 3)


@dataclass(slots=True)
class Reaction:
    """How the line answered the fault: the state it went to, the alarms it raised, how long it was out."""

    state: str | None = None
    """The first state the line left Execute for (None: it never left)."""
    alarms: list[tuple[str, str | None]] = field(default_factory=list)
    """(kind, device) of every alarm raised after the fault, in order."""
    out_of_execute_s: float = 0.0
    """Seconds from leaving Execute to being back in it."""
    operator_commands: list[str] = field(default_factory=list)


@dataclass(slots=True)
class ScenarioResult:
    """One scenario's batch: whether every invariant held, what broke, and what it cost."""

    name: str
    title: str
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0
    packs: int = 0
    shipped: int = 0
    rejected: int = 0
    commissioned: int = 0
    in_doubt_decommissioned: int = 0
    reaction: Reaction = field(default_factory=Reaction)
    upstream: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    """What the line did with the fault's consequences (in-doubt serials, escaped packs), for the report."""

    @property
    def passed(self) -> bool:
        """True when every invariant and every expectation held."""
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        """Return the result as JSON-able data."""
        return {
            "name": self.name, "title": self.title, "passed": self.passed, "problems": self.problems,
            "seconds": round(self.seconds, 3), "packs": self.packs, "shipped": self.shipped,
            "rejected": self.rejected, "commissioned": self.commissioned,
            "in_doubt_decommissioned": self.in_doubt_decommissioned,
            "state_after_fault": self.reaction.state, "alarms": [f"{kind}@{device}" for kind, device in
                                                                 self.reaction.alarms],
            "out_of_execute_s": round(self.reaction.out_of_execute_s, 3),
            "operator_commands": self.reaction.operator_commands, "upstream": self.upstream, "notes": self.notes,
        }


class CampaignLine:
    """The running daemon, its simulated line and upstream, moved and operated by the campaign."""

    def __init__(self, sim: SimulatedLine, daemon: Daemon, upstream: EpcisUpstream, run: CampaignRun,
                 result: ScenarioResult) -> None:
        self.sim = sim
        self.daemon = daemon
        self.upstream = upstream
        self.run = run
        self.result = result
        self.world: LineWorld = sim.world
        self.batch_id = 0
        self.blind: set[int] = set()
        """Packs that crossed a station while the PLC link was down: the line hears of them late, if at all."""
        self.disk: SmallDisk | None = None
        self.upstream_port = 0
        self.daemon_task: asyncio.Task[int] | None = None
        self._alarms: dict[int, Alarm] = {}
        self._left_execute_at: float | None = None

    # -- what the scenarios use ------------------------------------------------------------------------

    @property
    def control(self) -> LineControl:
        """The line's PackML unit."""
        if self.daemon.control is None:
            raise CampaignError("the daemon has no line control")
        return self.daemon.control

    @property
    def inspection(self) -> InspectionService:
        """The inspection service."""
        if self.daemon.inspection is None:
            raise CampaignError("the daemon has no inspection")
        return self.daemon.inspection

    @property
    def batches(self) -> BatchService:
        """The batch service."""
        if self.daemon.batches is None:
            raise CampaignError("the daemon has no batch service")
        return self.daemon.batches

    @property
    def store(self) -> Store:
        """The daemon's store."""
        if self.daemon.store is None:
            raise CampaignError("the daemon has no store")
        return self.daemon.store

    @property
    def printer(self) -> PrinterSimulator:
        """The simulator of the printer marking the units."""
        if self.sim.printer is None:
            raise CampaignError("the simulated line has no unit printer")
        return self.sim.printer

    def problem(self, text: str) -> None:
        """Record a broken invariant or expectation."""
        _LOG.error("campaign problem", scenario=self.result.name, problem=text)
        self.result.problems.append(text)

    def note(self, text: str) -> None:
        """Record what the line did, for the report."""
        self.result.notes.append(text)

    async def until(self, predicate: Callable[[], bool], what: str, *, timeout_s: float = HANG_GUARD_S) -> None:
        """Return once predicate holds; CampaignError naming what after timeout_s (the line signals nothing)."""
        try:
            async with asyncio.timeout(timeout_s):
                while not predicate():
                    self._alive()
                    await asyncio.sleep(CATCH_UP_POLL_S * 5)
        except TimeoutError:
            raise CampaignError(f"waited {timeout_s:g} s for {what}") from None

    def _alive(self) -> None:
        """Raise CampaignError when the line controller has stopped (it would never catch up)."""
        task = self.daemon_task
        if task is not None and task.done():
            error = None if task.cancelled() else task.exception()
            raise CampaignError(f"the line controller stopped: {error!r}" if error else
                                "the line controller stopped")

    async def caught_up(self) -> None:
        """Wait until every pack the line can know of is judged at the camera and reported at the reject station."""
        world, inspection = self.world, self.inspection
        past_camera = past_reject = 0
        try:
            async with asyncio.timeout(HANG_GUARD_S):
                while True:
                    packs = [*world.products, *world.shipped, *world.reject_bin]
                    past_camera = sum(1 for p in packs if p.inspected and p.seq not in self.blind)
                    past_reject = sum(1 for p in packs if p.rejected is not None and p.seq not in self.blind)
                    if inspection.counts.inspected >= past_camera and inspection.counts.settled >= past_reject:
                        await inspection.idle()
                        break
                    self._alive()
                    await asyncio.sleep(CATCH_UP_POLL_S)
        except TimeoutError:
            raise CampaignError(f"the line did not catch up with the belt: {inspection.counts.inspected} of "
                                f"{past_camera} packs past the camera judged, {inspection.counts.settled} of "
                                f"{past_reject} past the reject station reported") from None
        self.observe()

    async def step(self, quarters: int = 1) -> None:
        """Move the belt by quarters of a pitch (nothing moves outside Execute), catching up after each."""
        for _ in range(quarters):
            self.world.advance(self.world.geometry.pitch // 4)
            await self.caught_up()

    async def produce(self, entered: int) -> None:
        """Run the belt until entered packs came onto it, each onto a printer with its record loaded."""
        while self.world.entered < entered:
            await self._executing()
            await self.until(lambda: bool(self.printer.engine.buffered) or self.control.state is not State.EXECUTE,
                             "a record loaded in the printer")
            await self.step(4)

    async def react(self, request: Request | None, alarms: set[str], *, packs: int = REACTION_PACKS,
                    move: bool = True, link_loss_allowed: bool = False) -> None:
        """Let the line answer the fault; record a problem unless it leaves Execute as configured, with alarms.

        request: what the fault makes a station ask (None: the line must keep producing). move: step the belt
        while waiting (a fault that needs packs to show), else only wait for the line. link_loss_allowed: a device
        link the fault cut (its hold, then the operator's recovery) is an outcome, not a problem.
        """
        start = len(self._alarms)
        expected = self._expected_state(request)
        moved = 0
        deadline = time.monotonic() + HANG_GUARD_S
        while self.control.state is State.EXECUTE and moved < packs * 4 and time.monotonic() < deadline:
            self._alive()
            # A belt already switched off (the control task is on its way out of Execute) moves nothing.
            if move and self.world.running:
                await self.step(1)
                moved += 1
            else:
                await asyncio.sleep(CATCH_UP_POLL_S * 5)
        await self._settled_state()
        self.observe()
        state = self.control.state
        reaction = self.result.reaction
        if reaction.state is None:  # the first reaction is the fault's; later ones are its aftermath
            reaction.state = None if state is State.EXECUTE else state.title
        raised = list(self._alarms.values())[start:]
        reaction.alarms.extend((a.kind, a.device) for a in raised)
        if expected is None:
            reason = str(self.control.status()["reason"])
            if state is not State.EXECUTE and link_loss_allowed and "link lost" in reason:
                self.result.notes.append(f"a device link was lost to the noise; the line went to {state.title} "
                                         f"({reason}) and the operator resumed it")
                await self.resume()
            elif state is not State.EXECUTE:
                self.problem(f"the line went to {state.title} ({reason}); it should have kept producing")
            return
        if state is not expected:
            self.problem(f"the line is in {state.title} after the fault, not {expected.title} as configured "
                         f"({self.control.status()['reason']})")
        missing = alarms - {a.kind for a in raised}
        if missing:
            self.problem(f"alarm(s) {', '.join(sorted(missing))} not raised; raised: "
                         f"{', '.join(a.kind for a in raised) or 'none'}")

    async def resume(self) -> None:
        """Acknowledge every alarm and bring the line back to Execute as the operator would."""
        await self._settled_state()
        for alarm in self.control.alarms:
            if alarm.acknowledged_by is None:
                await self.control.acknowledge(alarm.id, OPERATOR)
        await self._settled_state()
        self.observe()
        state = self.control.state
        if state is State.EXECUTE:
            return
        if state is State.HELD:
            await self.ready_to_run()
            await self._command(Command.UNHOLD, OPERATOR, State.EXECUTE)
        elif state in (State.STOPPED, State.ABORTED):
            if state is State.ABORTED:
                await self._command(Command.CLEAR, SUPERVISOR, State.STOPPED)
            await self._command(Command.RESET, SUPERVISOR, State.IDLE)
            await self.ready_to_run()
            await self._command(Command.START, OPERATOR, State.EXECUTE)
        else:
            raise CampaignError(f"the campaign does not know how to resume from {state.title}")
        if self._left_execute_at is not None:
            self.result.reaction.out_of_execute_s += time.monotonic() - self._left_execute_at
            self._left_execute_at = None

    def observe(self) -> None:
        """Remember the alarms the line keeps now (Reset clears them) and when it left Execute."""
        for alarm in self.control.alarms:
            self._alarms.setdefault(alarm.id, alarm)
        if self.control.state is not State.EXECUTE and self._left_execute_at is None:
            self._left_execute_at = time.monotonic()

    # -- the batch ---------------------------------------------------------------------------------------

    async def begin(self) -> None:
        """Import and release the batch, reset the line and start it, as the shift supervisor and operator do."""
        depth = self.printer.engine.depth
        text = ORDER.format(work_order=f"FAULT-{self.result.name}", product=PRODUCT, line=self.sim.config.line.id,
                            quantity=self.run.units + SPARE_BUFFERS * depth)
        batch = await self.batches.import_work_order(text, "fault campaign", operator=SUPERVISOR.name)
        await self.batches.release(batch.id, operator=SUPERVISOR.name)
        self.batch_id = batch.id
        await self._command(Command.RESET, SUPERVISOR, State.IDLE)
        await self._command(Command.START, OPERATOR, State.EXECUTE, batch=batch.id)

    async def drain(self) -> None:
        """Stop the infeed and run the belt until every pack on it has left (rejected or to the case packer)."""
        self.world.infeed = False
        while self.world.products:
            await self._executing()
            await self.step(1)

    async def finish(self, after_close: Callable[[CampaignLine], Awaitable[None]] | None = None) -> None:
        """Complete, close the last case and pallet short, decommission what is in doubt, close, wait for EPCIS."""
        await self._command(Command.COMPLETE, SUPERVISOR, State.COMPLETE, reason="the campaign's packs are through")
        await self._end_of_batch()
        report = await self.batches.status(self.batch_id)
        doubt = int(report["counts"]["in_doubt"])
        if doubt:
            why = await self.store.read(lambda conn: in_doubt_causes(conn, self.batch_id))
            await self.batches.decommission_in_doubt(self.batch_id, operator=SUPERVISOR.name, reason=why)
            self.result.in_doubt_decommissioned = doubt
        closed = await self.batches.close(self.batch_id, operator=SUPERVISOR.name)
        equation = closed.get("equation")
        self.note(f"closed: {equation}")
        if after_close is not None:
            await after_close(self)
        await self._delivered()

    # -- checking ---------------------------------------------------------------------------------------

    async def check(self) -> None:
        """Hold the store against the world's truth; record every invariant that does not hold."""
        printed = [p.fields[0][1] for p in self.printer.engine.printed if p.fields and p.fields[0][1]]
        serial_of_code = {code: serial_in(code) for code in printed}
        counted = Counter(serial_of_code[code] for code in printed)
        self.result.problems.extend(f"serial {s} printed {n} times" for s, n in counted.items() if n > 1)
        rows = await self.store.read(lambda conn: _serial_rows(conn, self.batch_id))
        await self._check_packs(serial_of_code, rows)
        for serial_id, count in await self.store.read(lambda conn: _sent_twice(conn, self.batch_id)):
            self.problem(f"serial #{serial_id} sent to a printer {count} times")
        wrong = await self.store.read(lambda conn: _aggregated_not_commissioned(conn, self.batch_id))
        self.result.problems.extend(f"serial #{s} is in a case but {_label(SerialState(v))}" for s, v in wrong)
        await self._check_reconciliation()
        await self._check_containers()
        self._check_upstream()
        audit = await AuditTrail(self.store).check()
        if not audit.ok:
            self.problem(f"the audit trail does not verify: {audit}")
        world = self.world
        self.result.packs = len(world.shipped) + len(world.reject_bin)
        self.result.shipped = len(world.shipped)
        self.result.rejected = len(world.reject_bin)
        self.result.commissioned = sum(1 for _, state in rows.values() if state is SerialState.COMMISSIONED)

    async def check_after_crash(self, state_dir: Path) -> None:
        """After the line controller died: hold what its store kept against the world's packs (read-only).

        Nothing else can be checked then, but the first promise still must hold: every pack that reached the case
        packer was verified good and its serial durably commissioned before the PLC let it pass (invariant 4).
        """
        from edge.store import Store  # noqa: PLC0415 - only a crashed line needs a second look at its store

        store = await asyncio.to_thread(Store.open_readonly, state_dir)
        try:
            rows = await store.read(lambda conn: _serial_rows(conn, self.batch_id))
        finally:
            store.close()
        printed = {code: serial_in(code) for p in self.printer.engine.printed if p.fields and (code := p.fields[0][1])}
        unbacked = 0
        for pack in self.world.shipped:
            serial = printed.get(pack.code or "")
            state = rows.get(serial or "", (0, None))[1]
            if state is not SerialState.COMMISSIONED:
                unbacked += 1
                self.problem(f"pack {pack.seq} reached the case packer, its serial {serial} {_label(state)} in the "
                             "store the dead line controller left")
        self.note(f"the line controller died; its store, read back: {len(self.world.shipped) - unbacked} of "
                  f"{len(self.world.shipped)} packs that reached the case packer commissioned")
        self.result.packs = len(self.world.shipped) + len(self.world.reject_bin)
        self.result.shipped = len(self.world.shipped)
        self.result.rejected = len(self.world.reject_bin)

    # -- inside -----------------------------------------------------------------------------------------

    def _expected_state(self, request: Request | None) -> State | None:
        config = self.control.config
        if request == "hold":
            return State.HELD if config.on_hold_request == "hold" else State.STOPPED
        if request == "stop":
            return State.STOPPED if config.on_stop_request == "stop" else State.ABORTED
        return None

    async def _settled_state(self) -> None:
        """Wait until the line rests in a state (not an acting one such as Holding)."""
        resting = {State.EXECUTE, State.HELD, State.STOPPED, State.ABORTED, State.IDLE, State.COMPLETE,
                   State.SUSPENDED}
        await self.until(lambda: self.control.state in resting, "the line to settle in a state")

    async def _executing(self) -> None:
        if self.control.state is not State.EXECUTE:
            raise CampaignError(f"the line left Execute: {self.control.state.title}, "
                                f"{self.control.status()['reason']}")

    async def ready_to_run(self) -> None:
        """Wait until every device is online again, as the operator does before Unhold or Start.

        Unholding and Starting themselves wait (``control.start_timeout_s``) for the printers to be loaded: a
        printer's feeder loads only once the batch runs again.
        """
        await self.until(lambda: all(s.status.state is LinkState.ONLINE for s in self.daemon.supervisors),
                         "every device to be online again")

    async def _command(self, command: Command, actor: Actor, expected: State, *, reason: str | None = None,
                       batch: int | None = None) -> None:
        self.observe()
        self.result.reaction.operator_commands.append(command.title)
        reached = await self.control.command(command, actor, reason=reason or "fault campaign", batch=batch)
        self.observe()
        if reached is not expected:
            raise CampaignError(f"{command.title} left the line in {reached.title}, not {expected.title}: "
                                f"{self.control.status()['reason']}")

    async def _end_of_batch(self) -> None:
        """Close the last case and pallet short, as an operator does at the batch's end; wait for their labels."""
        agg = self.daemon.aggregation
        if agg is None:
            return
        async with asyncio.timeout(HANG_GUARD_S):
            for level, station in agg.stations:
                if level == "pallet":
                    await agg.case_labels.wait_idle()
                    # Every closed case scanned at the palletiser is on the pallet before the pallet is closed.
                    while any(c.parent_id is None for c in await agg.aggregation.containers_of_batch(  # noqa: ASYNC110
                            self.batch_id, level="case", state="closed")):  # the store signals nothing on a change
                        await asyncio.sleep(CATCH_UP_POLL_S * 5)
                current = station.current
                if current is not None:
                    await agg.close_short(current, SUPERVISOR.name, "end of batch")
            await agg.wait_labelled()

    async def _delivered(self) -> None:
        from edge.sync import outbox  # noqa: PLC0415 - delivery state only matters at the end

        def rows() -> Awaitable[list[dict[str, Any]]]:
            return self.store.read(lambda conn: outbox.batch_status(conn, batch_id=self.batch_id))

        try:
            async with asyncio.timeout(DELIVERY_WAIT_S):
                while True:
                    found = await rows()
                    if found and all(r["state"] in ("delivered", "failed") for r in found) and len(found) == len(
                            self.daemon.deliveries):
                        break
                    await asyncio.sleep(CATCH_UP_POLL_S * 25)
        except TimeoutError:
            self.problem(f"the batch was not stored upstream within {DELIVERY_WAIT_S:g} s")
        for row in await rows():
            self.result.upstream = {"state": row["state"], "messages": row["messages"], "events": row["events"],
                                    "attempts": row["attempts"]}
            if row["state"] != "delivered":
                self.problem(f"delivery to {row['target']} is {row['state']}: {row['reason']}")

    async def _check_packs(self, serial_of_code: dict[str, str], rows: dict[str, tuple[int, SerialState]]) -> None:
        """Every pack at the case packer judged good, commissioned and in one case; none in the bin counted good."""
        packed = await self.store.read(lambda conn: _cases_of_units(conn, self.batch_id))
        verdicts = self.inspection.verdicts
        shipped: set[str] = set()
        for pack in self.world.shipped:
            verdict = verdicts.get(pack.seq)
            serial = serial_of_code.get(pack.code or "")
            if verdict is None or not verdict.good:
                why = "no verdict" if verdict is None else f"verdict {verdict.reason}"
                self.problem(f"pack {pack.seq} reached the case packer without a good verdict ({why})")
            elif serial is None or verdict.serial != serial:
                self.problem(f"pack {pack.seq} carries {serial}, judged good as {verdict.serial}")
            if serial is None:
                continue
            shipped.add(serial)
            serial_id, state = rows.get(serial, (-1, None))
            if state is not SerialState.COMMISSIONED:
                self.problem(f"pack {pack.seq} reached the case packer with serial {serial} {_label(state)}, "
                             "not commissioned")
            cases = packed.get(serial_id, 0)
            if cases != 1:
                self.problem(f"pack {pack.seq} (serial {serial}) reached the case packer and is in {cases} cases")
        for pack in self.world.reject_bin:
            serial = serial_of_code.get(pack.code or "")
            if serial is not None and rows.get(serial, (0, None))[1] is SerialState.COMMISSIONED:
                self.problem(f"pack {pack.seq} is in the reject bin, its serial {serial} commissioned")
        for serial, (_, state) in rows.items():
            if state not in SETTLED:
                self.problem(f"serial {serial} left {state.label} at close")
            elif state is SerialState.COMMISSIONED and serial not in shipped:
                self.problem(f"serial {serial} commissioned without a pack that reached the case packer")

    async def _check_reconciliation(self) -> None:
        report = await self.batches.status(self.batch_id)
        if report["batch"]["state"] != "closed":
            self.problem(f"the batch is {report['batch']['state']}, not closed")
        counts = report["counts"]
        decommissioned = sum(int(counts[s]) for s in ("rejected", "destroyed", "sampled"))
        returned = int(counts["returned"])
        if int(report["allocated"]) != int(counts["commissioned"]) + decommissioned + returned:
            self.problem(f"reconciliation does not balance: allocated {report['allocated']} = commissioned "
                         f"{counts['commissioned']} + decommissioned {decommissioned} + returned {returned}")
        undone = await self.store.read(lambda conn: _in_doubt_decommissions(conn, self.batch_id))
        for operator, reason, count in undone:
            if not operator or not (reason or "").strip():
                self.problem(f"{count} in-doubt serials decommissioned without an operator and a reason")
        total = sum(count for _, _, count in undone)
        if total != self.result.in_doubt_decommissioned:
            self.problem(f"{total} in-doubt serials decommissioned, {self.result.in_doubt_decommissioned} "
                         "were in doubt at close")

    async def _check_containers(self) -> None:
        agg = self.daemon.aggregation
        if agg is None:
            return
        cases = await agg.aggregation.containers_of_batch(self.batch_id, level="case")
        pallets = await agg.aggregation.containers_of_batch(self.batch_id, level="pallet")
        for box in [*cases, *pallets]:
            if box.state not in ("closed", "destroyed"):
                self.problem(f"{box.name} is still {box.state}")
        if pallets:
            self.result.problems.extend(f"{c.name} is on no pallet" for c in cases
                                        if c.state == "closed" and c.parent_id is None)

    def _check_upstream(self) -> None:
        stored = self.upstream.stored_events
        ids = [e.event_id for e in stored]
        if len(set(ids)) != len(ids):
            self.problem(f"upstream holds {len(ids) - len(set(ids))} event(s) twice")
        events = int(self.result.upstream.get("events", 0))
        if len(stored) != events:
            self.problem(f"upstream holds {len(stored)} events, the batch's messages have {events}")
        self.result.upstream["stored"] = len(stored)
        self.result.upstream["duplicates_answered"] = self.upstream.repository.counts["duplicates"]


# -- scenarios --------------------------------------------------------------------------------------------

Fault = Callable[["CampaignLine"], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Scenario:
    """One fault, injected mid-batch, with what the line must do about it and how the operator recovers."""

    name: str
    title: str
    fault: Fault
    """Inject the fault after a third of the packs, check the line's reaction, recover (as the operator)."""
    before: Fault | None = None
    """Run before the batch starts (a fault lasting the whole batch)."""
    after_close: Fault | None = None
    """Run once the batch is closed, before its delivery is awaited."""
    small_disk: bool = False
    """Run with the state directory on a filesystem the scenario can fill (`SmallDisk`)."""


async def _no_fault(line: CampaignLine) -> None:
    """Inject nothing: the baseline."""
    del line


async def _printer_disconnect(line: CampaignLine) -> None:
    """Drop the printer's link (cable pulled); it is back once the line held, and the operator unholds."""
    printer = line.printer
    printer.faults.inject(Disconnect(after_bytes=0))
    printer.disconnect()
    await line.react("hold", {"hold-request"})
    await line.resume()


async def _printer_out_of_ink(line: CampaignLine) -> None:
    """Run the printer out of ink two prints on, the belt on until the line holds; refill it, Unhold."""
    engine = line.printer.engine
    engine.out_of_ink_after(2)
    # The line learns of it from the printer's status, polled: the belt runs on a few packs meanwhile, some bare.
    await line.step(INK_RUN_ON_PITCHES * 4)
    await line.react("hold", {"hold-request"}, move=False)
    if not any("ink" in (a.text or "") for a in line.control.alarms):
        line.problem("no alarm names the ink")
    engine.clear_fault(FaultReason.INK_OUT)
    await line.until(lambda: engine.state is not PrinterState.FAULT, "the printer to clear its fault")
    await line.resume()


async def _camera_stall(line: CampaignLine) -> None:
    """Stall the camera: each capture times out, every pack is rejected, the tracking alarm stops the line."""
    world = line.world
    world.camera_frames = False
    before = line.inspection.counts.rejected.copy()
    await line.react("stop", {"consecutive-rejects"})
    stalled = line.inspection.counts.rejected - before
    line.note(f"packs rejected without a frame while the camera stalled: {sum(stalled.values())} "
              f"({', '.join(f'{k} {v}' for k, v in sorted(stalled.items()))})")
    world.camera_frames = True
    await line.resume()


async def _plc_connection_loss(line: CampaignLine) -> None:
    """Cut the PLC's link: the belt runs on until the PLC's watchdog stops it; put the link back, Unhold, go on."""
    plc = line.sim.plc
    if plc is None:
        raise CampaignError("the simulated line has no PLC")
    plc.unplug()
    await line.until(lambda: line.control.state is not State.EXECUTE or not line.world.running,
                     "the line or the PLC to notice the lost link")
    # The belt is the PLC's: it runs on, blind to the line, until the watchdog misses the heartbeat.
    before = {p.seq: (p.inspected, p.rejected is not None) for p in line.world.products}
    for _ in range(PLC_BLIND_PITCHES * 4):
        line.world.advance(line.world.geometry.pitch // 4)
    for pack in [*line.world.products, *line.world.shipped, *line.world.reject_bin]:
        was = before.get(pack.seq)
        if was is not None and (was != (pack.inspected, pack.rejected is not None)):
            line.blind.add(pack.seq)
    await line.until(lambda: not line.world.running, "the PLC's watchdog to stop the belt")
    await line.react("hold", {"device-offline"}, move=False)
    plc.plug()
    line.note(f"packs that crossed a station while the PLC link was down, reported once it was back: "
              f"{sorted(line.blind)}")
    await line.resume()
    # The new link reports from where the lost one stopped (the PLC's rings still hold those packs): the packs
    # judged before the cut pass and are packed, the ones at the camera meanwhile are judged late, before they
    # reach the reject station. Nothing more stops the line.
    await line.react(None, set(), packs=PLC_BLIND_PITCHES + 4)


async def _reject_not_confirmed(line: CampaignLine) -> None:
    """Blind the reject confirmation sensor: the next reject stops the line; the operator takes the pack off."""
    world = line.world
    world.confirm_rejects = False
    await line.react("stop", {"reject-not-confirmed"})
    escaped = list(world.escaped)
    world.confirm_rejects = True
    for pack in escaped:
        verdict = line.inspection.verdicts.get(pack.seq)
        line.note(f"pack {pack.seq} rejected unconfirmed ({verdict.reason if verdict else 'no verdict'}): never "
                  "commissioned, not packed; the operator takes it off before the case packer; its serial is "
                  "decommissioned at close")
    if not escaped:
        line.problem("no reject went unconfirmed: the scenario tested nothing")
    await line.resume()


async def _upstream_down(line: CampaignLine) -> None:
    """Take the repository down for the whole batch: connections refused (see `_upstream_back`)."""
    await line.upstream.aclose()


async def _upstream_back(line: CampaignLine) -> None:
    """Bring the repository back after close: refused connections first, then 503 answers, then stored."""
    from edge.sync import outbox  # noqa: PLC0415 - delivery state only matters at the end

    async def attempts() -> int:
        rows = await line.store.read(lambda conn: outbox.batch_status(conn, batch_id=line.batch_id))
        return sum(int(r["attempts"]) for r in rows)

    async def until_attempts(count: int) -> None:
        async with asyncio.timeout(HANG_GUARD_S):
            while await attempts() < count:  # noqa: ASYNC110 - the outbox signals nothing on an attempt
                await asyncio.sleep(CATCH_UP_POLL_S * 25)

    await until_attempts(UPSTREAM_ATTEMPTS_WHILE_DOWN)
    refused = await attempts()
    line.upstream.faults.add(Unavailable(retry_after_s=0), count=10**6)
    await line.upstream.start(port=line.upstream_port)
    await until_attempts(refused + UPSTREAM_ATTEMPTS_WHILE_DOWN)
    line.upstream.faults.clear()
    line.note(f"delivery attempts: {refused} refused connections, then "
              f"{await attempts() - refused} answered 503, then the repository answered again")


async def _disk_full(line: CampaignLine) -> None:
    """Fill the state directory's filesystem: the line must stop safely, and go on once space is freed."""
    disk = line.disk
    if disk is None:
        raise CampaignError("the disk-full scenario needs a SmallDisk")
    await disk.fill(line)
    await line.react("stop", set())
    await disk.free(line)
    line.note(f"disk filled with {disk.how}")
    await line.resume()


async def _garbage_everywhere(line: CampaignLine) -> None:
    """Put line noise ahead of every device link's next message; the line must go on as if nothing happened."""
    noise = b"\x00\xff\x1b\x1bjunk\r\n"
    for sim in line.sim.sims.values():
        sim.faults.inject(Garbage(noise))
    plc = line.sim.plc
    if plc is not None:
        plc.send_garbage(noise)
    # Junk from a proxy in the way (502): retried. A 202 without a job is refused for good by design (capture.py).
    line.upstream.faults.add(GarbageAnswer(status=502))
    # Modbus TCP has no resynchronisation: noise landing inside an answer costs that answer, and the PLC driver
    # takes a missing answer for a lost link (the state of the outputs is unknown), so the line may hold.
    await line.react(None, set(), packs=6, link_loss_allowed=True)


SCENARIOS: Final[dict[str, Scenario]] = {s.name: s for s in (
    Scenario("printer-disconnect", "printer link dropped mid-batch, back after the hold, Unhold",
             _printer_disconnect),
    Scenario("printer-out-of-ink", "printer out of ink mid-batch, refilled, Unhold", _printer_out_of_ink),
    Scenario("camera-stall", "camera stops delivering frames: packs rejected, the alarm stops the line",
             _camera_stall),
    Scenario("plc-connection-loss", "PLC link cut, the belt stopped by its watchdog, link back, Unhold",
             _plc_connection_loss),
    Scenario("reject-not-confirmed", "reject confirmation missing: the line stops, the operator clears the pack",
             _reject_not_confirmed),
    Scenario("upstream-down", "EPCIS repository down for the whole batch (refused, then 503), then back",
             _no_fault, before=_upstream_down, after_close=_upstream_back),
    Scenario("disk-full", "the state directory's disk fills up mid-batch, then space is freed", _disk_full,
             small_disk=True),
    Scenario("garbage", "line noise on every device link and upstream", _garbage_everywhere),
)}
"""Every fault of the campaign, by name."""

BASELINE: Final = Scenario("baseline", "the same batch with no fault", _no_fault)


# -- the disk that fills up ---------------------------------------------------------------------------------


class SmallDisk:
    """A state directory on a filesystem the campaign can fill and free again.

    Where this process may mount (root), the directory is a tmpfs of its own (`SMALL_DISK_BYTES`) and filling it
    writes a ballast file until the kernel answers ENOSPC: every writer of the line meets a really full disk. Else
    the store's writer connection gets a page limit at its current size (``PRAGMA max_page_count``): SQLite then
    answers SQLITE_FULL exactly as on a full disk, but only the database is full.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.mounted = False
        self._ballast = directory / "ballast"

    @property
    def how(self) -> str:
        """How the disk is filled, for the report."""
        if self.mounted:
            return f"a {SMALL_DISK_BYTES // (1024 * 1024)} MiB tmpfs filled up by a ballast file (ENOSPC)"
        return "the store's page limit (SQLite answers SQLITE_FULL; no filesystem could be mounted here)"

    async def __aenter__(self) -> SmallDisk:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.mounted = await asyncio.to_thread(_mount_tmpfs, self.directory, SMALL_DISK_BYTES)
        return self

    async def __aexit__(self, *_exc: object) -> None:
        if self.mounted:
            await asyncio.to_thread(_unmount, self.directory)
            self.mounted = False

    async def fill(self, line: CampaignLine) -> None:
        """Leave no room for another write."""
        if self.mounted:
            await asyncio.to_thread(_fill, self._ballast)
            return
        await line.store.write(_page_limit)

    async def free(self, line: CampaignLine) -> None:
        """Give the room back, as an operator clearing old files does."""
        if self.mounted:
            await asyncio.to_thread(self._ballast.unlink, missing_ok=True)
            return
        await line.store.write(_no_page_limit)


def _mount_tmpfs(directory: Path, size: int) -> bool:
    """Mount a tmpfs of size bytes on directory; False when this process may not (not root, no mount)."""
    mount = shutil.which("mount")
    if os.geteuid() != 0 or mount is None:
        return False
    done = subprocess.run([mount, "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(directory)],
                          capture_output=True, check=False, timeout=10)
    return done.returncode == 0


def _unmount(directory: Path) -> None:
    umount = shutil.which("umount") or "umount"
    done = subprocess.run([umount, str(directory)], capture_output=True, check=False, timeout=10)
    if done.returncode != 0:
        # Still busy (a file a dead process left open): detach it now, the kernel frees it once closed.
        subprocess.run([umount, "-l", str(directory)], capture_output=True, check=True, timeout=10)


def _fill(path: Path) -> None:
    """Write path until the filesystem has no byte left (ENOSPC), in big then small pieces."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
    try:
        for size in (1 << 20, 1 << 12, 1):
            chunk = b"\0" * size
            while True:
                try:
                    os.write(fd, chunk)
                except OSError as err:
                    if err.errno != errno.ENOSPC:
                        raise
                    break
    finally:
        os.close(fd)


def _page_limit(conn: sqlite3.Connection) -> None:
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.execute(f"PRAGMA max_page_count = {int(pages)}")


def _no_page_limit(conn: sqlite3.Connection) -> None:
    conn.execute("PRAGMA max_page_count = 4294967294")


# -- running a scenario -------------------------------------------------------------------------------------


def campaign_config(state_dir: Path, upstream_url: str, control: dict[str, Any] | None = None) -> LineConfig:
    """Return the demo line's configuration for the campaign: its own state, free ports, quick upstream retries."""
    config = load_config(CAMPAIGN_CONFIG)
    targets = tuple(t.model_copy(update={"url": upstream_url, "retry_initial_s": 0.05, "retry_max_s": 0.2,
                                         "request_timeout_s": 10.0})
                    for t in config.upstream.targets if t.kind == "capture")
    return config.model_copy(update={
        "storage": config.storage.model_copy(update={"state_dir": state_dir}),
        "api": config.api.model_copy(update={"port": 0}),
        "hmi": config.hmi.model_copy(update={"port": 0}),
        "control": config.control.model_copy(update=control or {}),
        "upstream": config.upstream.model_copy(update={"targets": targets}),
    })


async def run_scenario(scenario: Scenario, run: CampaignRun, workdir: Path, *,
                       control: dict[str, Any] | None = None) -> ScenarioResult:
    """Run one batch end to end with the scenario's fault, check every invariant; return what happened."""
    result = ScenarioResult(scenario.name, scenario.title)
    started = time.monotonic()
    async with contextlib.AsyncExitStack() as stack:
        state_dir = workdir / "state"
        disk = await stack.enter_async_context(SmallDisk(state_dir)) if scenario.small_disk else None
        upstream = await stack.enter_async_context(EpcisUpstream())
        port = int(upstream.url.rsplit(":", 1)[1])
        config = campaign_config(state_dir, upstream.url, control)
        plan = EveryNth(run.defect_every) if run.defect_every else None
        sim = await stack.enter_async_context(SimulatedLine(config, defects=plan))
        async with _running(sim) as (daemon, task):
            line = CampaignLine(sim, daemon, upstream, run, result)
            line.disk, line.upstream_port, line.daemon_task = disk, port, task
            await _play(line, scenario)
        if task.done() and not task.cancelled() and task.exception() is not None and line.batch_id:
            await line.check_after_crash(state_dir)
    result.seconds = time.monotonic() - started
    return result


async def _play(line: CampaignLine, scenario: Scenario) -> None:
    """Make the batch with the scenario's fault, then check; a campaign that cannot go on is a problem."""
    labelling = asyncio.create_task(line.sim.run_packaging(), name="campaign labellers")
    _palletise(line)
    try:
        if scenario.before is not None:
            await scenario.before(line)
        await line.begin()
        await line.produce(line.run.fault_pack)
        await scenario.fault(line)
        await line.produce(line.run.units)
        await line.drain()
        await line.finish(scenario.after_close)
        await line.check()
    except (CampaignError, EdgeError) as err:
        line.problem(f"{type(err).__name__}: {err}")
    finally:
        labelling.cancel()
        await asyncio.gather(labelling, return_exceptions=True)


def _palletise(line: CampaignLine) -> None:
    """Have the palletiser scan each case once it is closed, as the demo's does."""
    agg, config = line.daemon.aggregation, line.sim.config.aggregation
    if agg is None or config is None or config.pallets is None:
        return
    scanner = line.sim.sims.get(config.pallets.scanner)
    if not isinstance(scanner, WedgeScannerSim):
        return

    async def scan_onto_pallet(case: ContainerRow) -> None:
        await scanner.scan(b"00" + case.identifier.encode("ascii"))

    agg.case_labels.on_closed.append(scan_onto_pallet)


@contextlib.asynccontextmanager
async def _running(sim: SimulatedLine) -> AsyncIterator[tuple[Daemon, asyncio.Task[int]]]:
    """Run the daemon on the simulated line, every device online; shut it down on the way out."""
    daemon = Daemon(sim.config)
    task = asyncio.create_task(daemon.run(handle_signals=False), name="campaign daemon")
    try:
        async with asyncio.timeout(HANG_GUARD_S):
            await daemon.ready.wait()
            for simulator in sim.sims.values():
                await simulator.wait_for_connection()
            if sim.plc is not None:
                await sim.plc.wait_for_connection()
            while any(s.status.state is not LinkState.ONLINE for s in daemon.supervisors):  # noqa: ASYNC110
                await asyncio.sleep(CATCH_UP_POLL_S * 5)  # supervisors signal nothing when they come online
        yield daemon, task
    finally:
        daemon.request_shutdown()
        async with asyncio.timeout(HANG_GUARD_S):
            await asyncio.wait([task])
        if not task.cancelled() and task.exception() is not None:
            # Reported by the campaign (the scenario's problem), not re-raised: the world still has its say.
            _LOG.error("the line controller died", error=repr(task.exception()))


# -- reading the store --------------------------------------------------------------------------------------


def serial_in(code: str) -> str:
    """Return the serial (AI 21) of a GS1 element string as printed; the whole code when it has none."""
    for element in parse(code.encode("latin-1")).elements:
        if element.ai == "21":
            return element.value
    return code


def in_doubt_causes(conn: sqlite3.Connection, batch_id: int) -> str:
    """Say why the batch's in-doubt serials are in doubt, with how many for each cause (the decommission reason)."""
    rows = conn.execute(
        "SELECT t.reason, count(*) FROM serial AS s JOIN serial_history AS h ON h.serial_id = s.id"
        " JOIN transition AS t ON t.id = h.transition_id WHERE s.batch_id = ? AND s.state = ? AND t.to_state = ?"
        " GROUP BY t.reason ORDER BY t.reason",
        (batch_id, int(SerialState.IN_DOUBT), int(SerialState.IN_DOUBT)),
    ).fetchall()
    causes = "; ".join(f"{count} {reason}" for reason, count in rows)
    return f"units set aside by the operator: {causes}"


def _serial_rows(conn: sqlite3.Connection, batch_id: int) -> dict[str, tuple[int, SerialState]]:
    return {serial: (serial_id, SerialState(state)) for serial_id, serial, state in conn.execute(
        "SELECT id, serial, state FROM serial WHERE batch_id = ?", (batch_id,))}


def _cases_of_units(conn: sqlite3.Connection, batch_id: int) -> dict[int, int]:
    """Return, per serial of the batch packed somewhere, how many cases hold it now."""
    return {int(serial_id): int(count) for serial_id, count in conn.execute(
        "SELECT m.serial_id, count(*) FROM aggregation_member AS m JOIN container AS c ON c.id = m.parent_id"
        " WHERE c.batch_id = ? AND c.level = 'case' AND m.serial_id IS NOT NULL AND m.unpacked_event IS NULL"
        " GROUP BY m.serial_id", (batch_id,))}


def _sent_twice(conn: sqlite3.Connection, batch_id: int) -> list[tuple[int, int]]:
    return [(int(a), int(b)) for a, b in conn.execute(
        "SELECT h.serial_id, count(*) FROM serial_history AS h JOIN transition AS t ON t.id = h.transition_id"
        " WHERE t.batch_id = ? AND t.to_state = ? GROUP BY h.serial_id HAVING count(*) > 1",
        (batch_id, int(SerialState.SENT)))]


def _aggregated_not_commissioned(conn: sqlite3.Connection, batch_id: int) -> list[tuple[int, int]]:
    return [(int(a), int(b)) for a, b in conn.execute(
        "SELECT s.id, s.state FROM aggregation_member AS m JOIN serial AS s ON s.id = m.serial_id"
        " WHERE s.batch_id = ? AND m.unpacked_event IS NULL AND s.state <> ?",
        (batch_id, int(SerialState.COMMISSIONED)))]


def _in_doubt_decommissions(conn: sqlite3.Connection, batch_id: int) -> list[tuple[str | None, str, int]]:
    """Return (operator, reason, serials) of every move out of doubt that took serials out of circulation."""
    decommissioned = (int(SerialState.REJECTED), int(SerialState.DESTROYED), int(SerialState.SAMPLED))
    return [(operator, str(reason), int(count)) for operator, reason, count in conn.execute(
        "SELECT t.operator, t.reason, count(*) FROM serial_history AS h JOIN transition AS t ON t.id = h.transition_id"
        " WHERE t.batch_id = ? AND h.from_state = ? AND t.to_state IN (?, ?, ?) GROUP BY t.id",
        (batch_id, int(SerialState.IN_DOUBT), *decommissioned))]


def _label(state: SerialState | None) -> str:
    return "unknown" if state is None else state.label


# -- the benchmark ------------------------------------------------------------------------------------------

BENCH_UNITS: Final = 90
"""Packs per batch in the benchmark: nine cases, a fault after thirty."""


async def campaign(*, units: int, repeat: int, names: list[str] | None = None,
                   progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run the baseline and every scenario (or those named) repeat times; return the benchmark's JSON object."""
    chosen = [SCENARIOS[name] for name in names] if names else list(SCENARIOS.values())
    run = CampaignRun(units=units)
    # A first batch pays for what the process does once (imports, the decoder's and the renderer's set-up): not
    # counted, so the baseline is as warm as the scenarios it is compared with.
    with tempfile.TemporaryDirectory(prefix="lineside-faults-") as tmp:
        warm_up = await run_scenario(BASELINE, run, Path(tmp))
    if progress is not None:
        progress(f"warm-up batch: {warm_up.seconds:.1f} s (not counted)")
    baselines: list[ScenarioResult] = []
    runs: dict[str, list[ScenarioResult]] = {s.name: [] for s in chosen}
    for attempt in range(repeat):
        for scenario in [BASELINE, *chosen]:
            with tempfile.TemporaryDirectory(prefix="lineside-faults-") as tmp:
                result = await run_scenario(scenario, run, Path(tmp))
            (baselines if scenario is BASELINE else runs[scenario.name]).append(result)
            if progress is not None:
                verdict = "ok" if result.passed else "FAILED: " + "; ".join(result.problems[:3])
                progress(f"{attempt + 1}/{repeat} {scenario.name}: {result.seconds:.1f} s, {verdict}")
    figures = _bench_result(run, baselines, runs)
    figures["details"]["warm_up_s"] = round(warm_up.seconds, 3)
    return figures


def _bench_result(run: CampaignRun, baselines: list[ScenarioResult], runs: dict[str, list[ScenarioResult]]
                  ) -> dict[str, Any]:
    base_s = _median([b.seconds for b in baselines])
    total = sum(len(r) for r in runs.values())
    passed = sum(1 for results in runs.values() for r in results if r.passed)
    details: dict[str, Any] = {}
    for name, results in runs.items():
        seconds = _median([r.seconds for r in results])
        details[name] = {
            "title": results[0].title if results else name,
            "runs": len(results),
            "passed": sum(1 for r in results if r.passed),
            "seconds": round(seconds, 3),
            "time_lost_s": round(seconds - base_s, 3),
            "out_of_execute_s": round(_median([r.reaction.out_of_execute_s for r in results]), 3),
            "state_after_fault": sorted({r.reaction.state or "Execute" for r in results}),
            "alarms": sorted({f"{kind}@{device}" for r in results for kind, device in r.reaction.alarms}),
            "in_doubt_decommissioned": [r.in_doubt_decommissioned for r in results],
            "rejected": [r.rejected for r in results],
            "upstream_attempts": [r.upstream.get("attempts") for r in results],
            "problems": sorted({p for r in results for p in r.problems}),
            "notes": results[-1].notes if results else [],
        }
    baseline = baselines[-1] if baselines else ScenarioResult("baseline", BASELINE.title)
    return {
        "benchmark": "faults",
        "headline": {"metric": "fault scenarios run with every invariant holding", "value": passed,
                     "unit": "runs", "target": total},
        "baseline": {"name": BASELINE.title, "value": round(base_s, 3), "unit": "s", "runs": len(baselines),
                     "passed": sum(1 for b in baselines if b.passed), "packs": baseline.packs,
                     "shipped": baseline.shipped, "rejected": baseline.rejected,
                     "in_doubt_decommissioned": baseline.in_doubt_decommissioned,
                     "upstream_attempts": baseline.upstream.get("attempts"),
                     "problems": sorted({p for b in baselines for p in b.problems})},
        "details": {"units": run.units, "fault_after_pack": run.fault_pack, "scenarios": details,
                    "ok": passed == total and all(b.passed for b in baselines)},
    }


def _median(values: list[float]) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def bench_faults(*, units: int = BENCH_UNITS, repeat: int = 1, names: list[str] | None = None,
                 progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run the fault campaign as a benchmark (see `campaign`); blocking."""
    return asyncio.run(campaign(units=units, repeat=repeat, names=names, progress=progress))


def format_text(result: dict[str, Any]) -> str:
    """Return the benchmark's figures as text: one line per scenario beside the baseline."""
    head, base, details = result["headline"], result["baseline"], result["details"]
    lines = [(f"{'scenario':<22}{'runs':>5}{'ok':>4}{'s':>8}{'lost s':>8}{'held s':>8}{'in doubt':>10}"
              f"{'upstream':>9}  after the fault / alarms")]
    for name, row in details["scenarios"].items():
        doubt = "/".join(str(n) for n in row["in_doubt_decommissioned"])
        attempts = "/".join(str(n) for n in row["upstream_attempts"])
        lines.append(f"{name:<22}{row['runs']:>5}{row['passed']:>4}{row['seconds']:>8.1f}{row['time_lost_s']:>8.1f}"
                     f"{row['out_of_execute_s']:>8.1f}{doubt:>10}{attempts:>9}  "
                     f"{', '.join(row['state_after_fault'])}; {', '.join(row['alarms']) or 'no alarm'}")
        lines.extend(f"{'':<22}problem: {p}" for p in row["problems"][:5])
    lines.append(f"{head['metric']}: {head['value']} of {head['target']}")
    lines.append(f"baseline, {base['name']}: {base['value']:.1f} {base['unit']}, {base['packs']} packs "
                 f"({base['shipped']} good, {base['rejected']} rejected), {base['in_doubt_decommissioned']} in doubt "
                 f"at close, {base['upstream_attempts']} upstream attempt(s)")
    return "\n".join(lines)
