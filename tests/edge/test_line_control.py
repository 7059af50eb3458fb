"""The line's PackML unit against the real daemon and a simulated belt, printer, camera and PLC.

The belt moves only when the test steps it and only while the PLC's run output is on (the simulated PLC follows
its run coil), so "the belt stops" is checked by stepping it and seeing the encoder stand still. Every wait is
for a state the line reaches, bounded only against a hang; nothing asserts on timing.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import aiohttp
import pytest

from drivers.plc.base import StackLight
from drivers.printer.base import FaultReason, PrinterState
from edge.config import load_config
from edge.control.audit import AuditTrail
from edge.control.line import SUBSCRIBER_QUEUE, LineControl, RateWindow, UnknownAlarmError
from edge.control.packml import Command, IllegalCommandError, State, UnitMode
from edge.control.permissions import Actor, NotAllowedError, Role
from edge.daemon import Daemon
from edge.errors import EdgeError
from edge.line.events import LineStopRequest
from edge.line.simulated import SimulatedLine
from edge.serials.states import BatchState
from edge.supervisor import LinkState
from simulators.defects import Defect, DefectKind
from tests.conftest import ROOT
from tests.edge.logins import daemon_login

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

    from simulators.world import DefectPlan

HANG_GUARD_S = 20.0
ORDER = "work_order: WO-1\nproduct: aspirin-500-eu\nlot: \"L1\"\nexpiry: 2028-10-31\nquantity: 500\nline: demo\n"
ANNA = Actor("anna", Role.OPERATOR)
SAM = Actor("sam", Role.SUPERVISOR)
QUINN = Actor("quinn", Role.QA)
ADA = Actor("ada", Role.ADMINISTRATOR)

AuditRow = tuple[str | None, str, str, dict[str, object]]


class Line:
    """The running daemon, its line control and the simulated line, stepped by the test."""

    def __init__(self, sim: SimulatedLine, daemon: Daemon, audit: list[AuditRow]) -> None:
        self.sim = sim
        self.daemon = daemon
        self.audit = audit
        self.world = sim.world
        assert daemon.control is not None
        self.control: LineControl = daemon.control

    async def until(self, predicate: Callable[[], bool]) -> None:
        """Return once predicate holds (the line signals only through its state)."""
        async with asyncio.timeout(HANG_GUARD_S):
            while not predicate():  # noqa: ASYNC110
                await asyncio.sleep(0.005)

    async def start(self) -> None:
        """Reset and start the line as a supervisor and an operator do."""
        assert await self.control.command(Command.RESET, SAM) is State.IDLE
        assert await self.control.command(Command.START, ANNA, reason="shift start") is State.EXECUTE

    async def caught_up(self) -> None:
        """Wait until every pack past the camera is judged and every pack past the reject station reported."""
        inspection = self.daemon.inspection
        assert inspection is not None
        world = self.world
        async with asyncio.timeout(HANG_GUARD_S):
            while True:
                past_camera = sum(1 for p in [*world.products, *world.shipped, *world.reject_bin] if p.inspected)
                past_reject = len(world.shipped) + len(world.reject_bin) + sum(
                    1 for p in world.products if p.rejected is not None)
                if inspection.counts.inspected >= past_camera and inspection.counts.settled >= past_reject:
                    await inspection.idle()
                    return
                await asyncio.sleep(0.002)

    async def packs(self, count: int) -> None:
        """Move count packs onto the running belt, each onto a printer that has its record loaded."""
        printer = self.sim.printer
        assert printer is not None
        for _ in range(count):
            async with asyncio.timeout(HANG_GUARD_S):
                await printer.engine.wait_loaded()
            await self.step(4)

    async def step(self, quarters: int) -> None:
        """Move the belt by quarters of a pitch, catching up after each."""
        for _ in range(quarters):
            self.world.advance(self.world.geometry.pitch // 4)
            await self.caught_up()

    def belt_stands_still(self) -> bool:
        """Try to move the belt a whole pitch; tell whether it stayed where it was."""
        before = self.world.encoder
        self.world.advance(self.world.geometry.pitch)
        return self.world.encoder == before

    async def batch_state(self) -> BatchState:
        batches = self.daemon.batches
        assert batches is not None
        return (await batches.ledger.batch(1)).state

    def actions(self) -> list[str]:
        return [action for _, action, _, _ in self.audit]


@contextlib.asynccontextmanager
async def running_line(
    tmp_path: Path, *, control: dict[str, Any] | None = None, plan: DefectPlan | None = None, trail: bool = False
) -> AsyncIterator[Line]:
    config = load_config(ROOT / "config" / "demo.yaml")
    config = config.model_copy(update={
        "storage": config.storage.model_copy(update={"state_dir": tmp_path / "state"}),
        "api": config.api.model_copy(update={"port": 0}),
        "control": config.control.model_copy(update=control or {}),
    })
    audit: list[AuditRow] = []

    async def record(actor: str | None, action: str, subject: str, details: Any) -> int:
        audit.append((actor, action, subject, dict(details)))
        return len(audit)

    async with SimulatedLine(config, defects=plan) as sim:
        # trail: the daemon's own audit trail in the store, else a list the test reads directly.
        daemon = Daemon(sim.config, audit=None if trail else lambda _store: record)
        task = asyncio.create_task(daemon.run(handle_signals=False))
        try:
            async with asyncio.timeout(HANG_GUARD_S):
                await daemon.ready.wait()
                for simulator in sim.sims.values():
                    await simulator.wait_for_connection()
                assert sim.plc is not None
                await sim.plc.wait_for_connection()
                while any(s.status.state is not LinkState.ONLINE for s in daemon.supervisors):  # noqa: ASYNC110
                    await asyncio.sleep(0.005)
            batches = daemon.batches
            assert batches is not None
            batch = await batches.import_work_order(ORDER, "test", operator="test")
            await batches.release(batch.id, operator="test")
            labelling = asyncio.create_task(sim.run_packaging())
            try:
                yield Line(sim, daemon, audit)
            finally:
                labelling.cancel()
                await asyncio.gather(labelling, return_exceptions=True)
        finally:
            daemon.request_shutdown()
            async with asyncio.timeout(HANG_GUARD_S):
                await task


def defect_on(seq: int) -> DefectPlan:
    def plan(n: int) -> tuple[Defect, ...]:
        return (Defect(DefectKind.MISSING),) if n == seq else ()

    return plan


async def test_the_belt_runs_only_in_execute_and_the_status_shows_the_line(tmp_path: Path) -> None:
    async with running_line(tmp_path) as line:
        control, plc = line.control, line.sim.plc
        assert plc is not None
        assert control.state is State.STOPPED
        assert await control.command(Command.RESET, SAM, reason="new shift") is State.IDLE
        # From the first command on the outputs follow the state: off outside Execute.
        assert line.world.running is False
        assert line.belt_stands_still()
        assert plc.stack_light is StackLight.AMBER
        assert plc.packtags == (State.IDLE, UnitMode.PRODUCTION)  # PackTags numbering: 4, 1

        assert await control.command(Command.START, ANNA) is State.EXECUTE
        assert line.world.running is True
        assert (plc.ready, plc.stack_light) == (True, StackLight.GREEN)
        assert plc.packtags == (State.EXECUTE, UnitMode.PRODUCTION)
        assert await line.batch_state() is BatchState.RUNNING
        await line.packs(12)

        status = control.status()
        assert status["state"] == "Execute"
        assert status["state_number"] == 6
        assert datetime.fromisoformat(status["state_entered_at"]) <= datetime.now(UTC)
        assert status["mode"] == "Production"
        assert status["commands"] == ["Stop", "Hold", "Suspend", "Abort", "Complete"]
        assert status["batch"] == {"id": 1, "work_order": "WO-1", "lot": "L1", "state": "running"}
        counters = status["counters"]
        assert counters["produced"] >= 7  # packs past the camera so far, all judged
        assert counters["good"] == counters["produced"]
        assert counters["rejected"] == {}
        assert counters["rate_per_minute"] > 0
        devices = {d["id"]: d for d in status["devices"]}
        assert {d for d, v in devices.items() if v["needed"]} == {"printer-1", "camera-1", "plc-1"}
        assert all(d["state"] == "online" for d in devices.values())
        assert status["alarms"] == []
        async with aiohttp.ClientSession() as session:
            url = f"http://127.0.0.1:{line.daemon.api_port}/api/v1/line"
            headers = await daemon_login(line.daemon, session, base=f"http://127.0.0.1:{line.daemon.api_port}")
            async with session.get(url, headers=headers) as response:
                assert (await response.json())["control"]["state"] == "Execute"

        assert await control.command(Command.COMPLETE, SAM, reason="order done") is State.COMPLETE
        assert line.world.running is False
        assert line.belt_stands_still()
        assert await line.batch_state() is BatchState.COMPLETING
        assert control.status()["batch"]["state"] == "completing"

        commands = [(actor, action, details["from"], details["to"], details["reason"])
                    for actor, action, _, details in line.audit if action.startswith("line.")]
        assert commands == [
            ("sam", "line.reset", "Stopped", "Idle", "new shift"),
            ("anna", "line.start", "Idle", "Execute", None),
            ("sam", "line.complete", "Execute", "Complete", "order done"),
        ]
        assert all(subject == "demo" for _, action, subject, _ in line.audit if action.startswith("line."))


async def test_start_needs_the_devices_online_and_says_which_is_not(tmp_path: Path) -> None:
    async with running_line(tmp_path) as line:
        control = line.control
        printer = line.sim.printer
        assert printer is not None
        await printer.stop()
        [supervisor] = [s for s in line.daemon.supervisors if s.status.device_id == "printer-1"]
        await line.until(lambda: supervisor.status.state is not LinkState.ONLINE)

        assert await control.command(Command.RESET, SAM) is State.IDLE
        assert await control.command(Command.START, ANNA) is State.STOPPED
        reason = control.status()["reason"]
        assert reason.startswith("printer-1 is ")
        [failed] = [a for a in control.alarms if a.kind == "start-failed"]
        assert (failed.device, failed.text) == ("printer-1", reason)
        # Nothing was started: the batch waits, released, and the belt stands still.
        assert await line.batch_state() is BatchState.RELEASED
        assert line.world.running is False
        start = next(details for _, action, _, details in line.audit if action == "line.start")
        assert (start["from"], start["to"], start["outcome"], start["error"]) == ("Idle", "Stopped", "failed", reason)


async def test_stop_cuts_a_waiting_start_short(tmp_path: Path) -> None:
    # Far beyond the hang guard: only the Stop can end this Start in time.
    async with running_line(tmp_path, control={"start_timeout_s": 300.0}) as line:
        control, printer = line.control, line.sim.printer
        assert printer is not None
        printer.engine.set_fault(FaultReason.INK_OUT)
        feeder = line.daemon.feeders["printer-1"]
        await line.until(lambda: feeder.holding is not None)  # the line has seen the fault: Start cannot finish
        await control.command(Command.RESET, SAM)
        starting = asyncio.create_task(control.command(Command.START, ANNA))
        await line.until(lambda: control.state is State.STARTING)
        assert await control.command(Command.STOP, SAM, reason="wrong ink loaded") is State.STOPPED
        assert await starting is State.STARTING  # where the Start was when the Stop took over
        assert line.world.running is False
        assert await line.batch_state() is BatchState.PAUSED
        assert control.status()["reason"] == "wrong ink loaded"
        outcomes = [(d["to"], d["outcome"]) for _, action, _, d in line.audit if action in ("line.start", "line.stop")]
        assert outcomes == [("Starting", "interrupted"), ("Stopped", "done")]


async def test_out_of_ink_holds_the_line_and_unhold_resumes_once_refilled(tmp_path: Path) -> None:
    async with running_line(tmp_path, control={"start_timeout_s": 1.5}) as line:
        control, plc, printer = line.control, line.sim.plc, line.sim.printer
        assert plc is not None
        assert printer is not None
        await line.start()
        await line.packs(3)

        printer.engine.set_fault(FaultReason.INK_OUT)
        await line.until(lambda: control.state is State.HELD)
        assert line.world.running is False
        assert line.belt_stands_still()
        assert await line.batch_state() is BatchState.PAUSED
        [hold] = [a for a in control.alarms if a.kind == "hold-request"]
        assert hold.device == "printer-1"
        assert "ink-out" in hold.text
        assert control.status()["reason"] == hold.text
        assert plc.stack_light is StackLight.RED  # an alarm nobody acknowledged yet

        # Still out of ink: Unhold cannot get the printer ready and the line goes back to Held, belt off.
        assert await control.command(Command.UNHOLD, ANNA) is State.HELD
        [failed] = [a for a in control.alarms if a.kind == "unhold-failed"]
        assert failed.device == "printer-1"
        assert "ink-out" in failed.text
        assert line.belt_stands_still()

        printer.engine.clear_fault()
        # The operator unholds once the printer shows green again (its status is polled every half second).
        feeder = line.daemon.feeders["printer-1"]
        await line.until(lambda: feeder._status is not None and feeder._status.state is not PrinterState.FAULT)
        assert await control.command(Command.UNHOLD, ANNA) is State.EXECUTE
        assert line.world.running is True
        assert await line.batch_state() is BatchState.RUNNING
        await line.packs(8)
        inspection = line.daemon.inspection
        assert inspection is not None
        world = line.world
        past_camera = sum(1 for p in [*world.products, *world.shipped, *world.reject_bin] if p.inspected)
        assert inspection.counts.good == control.status()["counters"]["produced"] == past_camera >= 6
        assert line.world.reject_bin == []

        for alarm in control.alarms:
            await control.acknowledge(alarm.id, ANNA)
        await line.until(lambda: plc.stack_light is StackLight.GREEN)
        holds = [(d["from"], d["to"], d["outcome"]) for _, action, _, d in line.audit if action == "line.hold"]
        assert holds == [("Execute", "Held", "done")]
        unholds = [(a, d["to"], d["outcome"]) for a, action, _, d in line.audit if action == "line.unhold"]
        assert unholds == [("anna", "Held", "failed"), ("anna", "Execute", "done")]


async def test_an_unconfirmed_reject_stops_the_line(tmp_path: Path) -> None:
    async with running_line(tmp_path, plan=defect_on(2)) as line:
        control = line.control
        line.world.confirm_rejects = False
        await line.start()
        await line.packs(2)
        while control.state is State.EXECUTE and line.world.product(2) in line.world.products:
            await line.step(1)
        await line.until(lambda: control.state is State.STOPPED)
        [alarm] = [a for a in control.alarms if a.kind == "reject-not-confirmed"]
        assert "pack 2" in alarm.text
        assert control.status()["reason"].startswith("reject-not-confirmed: ")
        assert line.world.running is False
        assert line.belt_stands_still()
        assert await line.batch_state() is BatchState.PAUSED
        # The trail is written once the state is reached and the outputs are set.
        await line.until(lambda: {"line.stop", "alarm.raised"} <= set(line.actions()))
        assert ("line.stop", None) in [(action, actor) for actor, action, _, _ in line.audit]
        raised = [d for _, action, _, d in line.audit if action == "alarm.raised"]
        assert {"kind": "reject-not-confirmed", "device": "camera-1"}.items() <= raised[0].items()


async def test_an_unconfirmed_reject_aborts_the_line_when_configured_and_clear_and_reset_bring_it_back(
    tmp_path: Path,
) -> None:
    async with running_line(tmp_path, control={"on_stop_request": "abort"}, plan=defect_on(2)) as line:
        control, plc = line.control, line.sim.plc
        assert plc is not None
        line.world.confirm_rejects = False
        await line.start()
        await line.packs(2)
        while control.state is State.EXECUTE and line.world.product(2) in line.world.products:
            await line.step(1)
        await line.until(lambda: control.state is State.ABORTED)
        assert line.world.running is False
        assert (plc.ready, plc.stack_light) == (False, StackLight.RED)
        assert line.belt_stands_still()

        with pytest.raises(NotAllowedError, match=r"anna \(operator\) may not line.clear"):
            await control.command(Command.CLEAR, ANNA)
        with pytest.raises(IllegalCommandError, match=r"Reset is not possible in Aborted \(possible: Clear\)"):
            await control.command(Command.RESET, SAM)
        assert await control.command(Command.CLEAR, SAM) is State.STOPPED
        assert plc.ready is True

        unconfirmed = next(a for a in control.alarms if a.kind == "reject-not-confirmed")
        await control.acknowledge(unconfirmed.id, ANNA)
        others = [a.id for a in control.alarms if a.id != unconfirmed.id]
        assert await control.command(Command.RESET, SAM) is State.IDLE
        assert [a.id for a in control.alarms] == others  # only the acknowledged alarm is cleared
        with pytest.raises(UnknownAlarmError, match=f"no alarm {unconfirmed.id} is kept"):
            await control.acknowledge(unconfirmed.id, ANNA)
        assert ("line.abort", None) in [(action, actor) for actor, action, _, _ in line.audit]  # before Clear ran


async def test_roles_modes_and_alarm_acknowledgement(tmp_path: Path) -> None:
    async with running_line(tmp_path) as line:
        control = line.control
        with pytest.raises(NotAllowedError, match=r"anna \(operator\) may not line.reset"):
            await control.command(Command.RESET, ANNA)
        with pytest.raises(IllegalCommandError, match=r"Unhold is not possible in Stopped \(possible: Reset, Abort\)"):
            await control.command(Command.UNHOLD, SAM)
        assert await control.command(Command.RESET, ADA) is State.IDLE  # the integrator resets, never starts
        with pytest.raises(NotAllowedError, match=r"quinn \(qa\) may not line.start"):
            await control.command(Command.START, QUINN)
        with pytest.raises(NotAllowedError, match=r"ada \(administrator\) may not line.start"):
            await control.command(Command.START, ADA)
        assert control.state is State.IDLE

        with pytest.raises(NotAllowedError, match=r"sam \(supervisor\) may not line\.unit-mode"):
            await control.set_mode(UnitMode.MAINTENANCE, SAM)
        assert await control.set_mode(UnitMode.MAINTENANCE, ADA) is UnitMode.MAINTENANCE
        with pytest.raises(EdgeError, match="Start runs batches only in Production mode"):
            await control.command(Command.START, ANNA)
        assert control.state is State.IDLE
        assert await control.set_mode(UnitMode.PRODUCTION, ADA) is UnitMode.PRODUCTION
        await control.command(Command.START, ANNA)
        with pytest.raises(EdgeError, match="only in Stopped, Idle or Aborted, not in Execute"):
            await control.set_mode(UnitMode.MANUAL, ADA)

        # An alarm the line raised by itself (as the inspection does) stops it; anyone on the floor acknowledges.
        await control.on_event(LineStopRequest(device_id="camera-1", at=datetime.now(UTC), alarm="tracking-mismatch",
                                               reason="packs 7 to 9 passed unseen"))
        await line.until(lambda: control.state is State.STOPPED)
        [alarm] = control.alarms
        assert (alarm.kind, alarm.device, alarm.acknowledged_by) == ("tracking-mismatch", "camera-1", None)
        acknowledged = await control.acknowledge(alarm.id, QUINN)
        assert acknowledged.acknowledged_by == "quinn"
        assert (await control.acknowledge(alarm.id, ANNA)).acknowledged_by == "quinn"  # the first one stands
        with pytest.raises(UnknownAlarmError):
            await control.acknowledge(999, ANNA)
        assert control.status()["alarms"][0]["acknowledged_by"] == "quinn"

        refused = [(actor, action, d["outcome"]) for actor, action, _, d in line.audit if d.get("outcome") == "refused"]
        assert refused == [
            ("anna", "line.reset", "refused"),
            ("sam", "line.unhold", "refused"),
            ("quinn", "line.start", "refused"),
            ("ada", "line.start", "refused"),
            ("sam", "line.unit-mode", "refused"),
            ("anna", "line.start", "refused"),
            ("ada", "line.unit-mode", "refused"),
        ]
        modes = [(actor, d["from"], d["to"]) for actor, action, _, d in line.audit
                 if action == "line.unit-mode" and "to" in d]
        assert modes == [("ada", "Production", "Maintenance"), ("ada", "Maintenance", "Production")]
        await line.until(lambda: "alarm.raised" in line.actions())
        acks = [(actor, subject) for actor, action, subject, _ in line.audit if action == "alarm.acknowledged"]
        assert acks == [("quinn", f"alarm {alarm.id}")]


async def test_subscribers_see_every_change_and_a_slow_one_keeps_the_newest(tmp_path: Path) -> None:
    async with running_line(tmp_path) as line:
        control = line.control
        async with contextlib.aclosing(control.subscribe()) as live, contextlib.aclosing(control.subscribe()) as slow:
            first = await anext(live)
            assert (first["line"], first["state"], first["batch"]) == ("demo", "Stopped", None)
            assert (await anext(slow))["state"] == "Stopped"

            await control.command(Command.RESET, SAM)
            seen = []
            async with asyncio.timeout(HANG_GUARD_S):
                while not seen or seen[-1] != "Idle":
                    seen.append((await anext(live))["state"])
            assert seen == ["Resetting", "Idle"]

            modes = [UnitMode.MAINTENANCE, UnitMode.MANUAL] * 6
            for mode in modes:
                await control.set_mode(mode, ADA)
            # The slow view missed most of it: it gets the newest snapshots only, the last one the line as it is.
            got = [(await anext(slow))["mode"] for _ in range(SUBSCRIBER_QUEUE)]
            assert got[-1] == "Manual"
            assert got == [m.name.capitalize() for m in modes][-SUBSCRIBER_QUEUE:]
        assert control._subscribers == []


async def test_commands_and_alarms_go_to_the_daemons_hash_chained_audit_trail(tmp_path: Path) -> None:
    async with running_line(tmp_path, trail=True) as line:
        control, store = line.control, line.daemon.store
        assert store is not None
        await line.start()
        await control.on_event(LineStopRequest(device_id="camera-1", at=datetime.now(UTC), alarm="too-many-rejects",
                                               reason="5 rejects in a row"))
        await line.until(lambda: control.state is State.STOPPED)
        [alarm] = control.alarms
        await control.acknowledge(alarm.id, ANNA)
        trail = AuditTrail(store)
        wanted = {"line.reset", "line.start", "line.stop", "alarm.raised", "alarm.acknowledged"}
        async with asyncio.timeout(HANG_GUARD_S):
            # The control task writes the alarm's entry after the stop's: wait for both.
            while True:
                entries = await trail.entries(limit=1000)
                if wanted <= {e.action for e in entries}:
                    break
                await asyncio.sleep(0.005)
        rows = [(e.actor, e.action, e.subject) for e in entries if e.action in wanted]
        assert sorted(rows, key=str) == sorted([
            ("sam", "line.reset", "demo"),
            ("anna", "line.start", "demo"),
            (None, "line.stop", "demo"),
            (None, "alarm.raised", f"alarm {alarm.id}"),
            ("anna", "alarm.acknowledged", f"alarm {alarm.id}"),
        ], key=str)
        assert [action for _, action, _ in rows if action.startswith("line.")] == [
            "line.reset", "line.start", "line.stop"]
        stop = next(e for e in entries if e.action == "line.stop")
        assert stop.details == {"from": "Execute", "to": "Stopped", "outcome": "done",
                                "reason": "too-many-rejects: 5 rejects in a row"}
        assert (await trail.check()).ok


def test_the_rate_is_a_sliding_window_over_the_injected_clock() -> None:
    rate = RateWindow(window_s=60.0, bucket_s=1.0)
    assert rate.per_minute(0.0) == 0.0
    for n in range(600):  # 10 packs a second for a minute
        rate.add(n / 10)
    assert rate.per_minute(60.0) == pytest.approx(600.0, rel=0.02)
    assert rate.per_minute(90.0) == pytest.approx(300.0, rel=0.05)  # the belt stopped half a minute ago
    assert rate.per_minute(200.0) == 0.0
