"""The line's PackML unit: the state machine driving the batch, the printers' feeding and the PLC's run output.

`LineControl` holds the line's `PackMLMachine` and runs each acting state's logic around it:

- Starting: only with the devices the line needs online (the printers marking units, the inspection camera and
  the PLC) and a batch released, paused or running; the batch is started (or resumed), the printers are given
  their first records, then the run output goes on and the PLC must report the belt running. Whatever fails
  within ``control.start_timeout_s`` stops the line with the reason, naming the device.
- Holding, Suspending, Stopping: run output off, batch paused (the feeders keep their buffers while paused).
- Unholding, Unsuspending: batch resumed and the same readiness as Starting; failing it the line goes back to
  Held (Suspended) with the reason, through Execute as PackML requires (not published; run output off again).
- Aborting: run output and controller-ready off at once, then the batch paused.
- Completing: run output off, the batch completed (`BatchService.complete`).
- Resetting, Clearing: the acknowledged alarms are cleared; Resetting also restarts the count of rejects in a
  row (`Tracker.reset_rejects`).

The run output is on only while the line is in Execute (and while Starting or Unholding switch it on): every
state outside those switches it off on entry. Until the first command after the daemon starts, the line
controller leaves the PLC's outputs as it finds them: after a restart the PLC's watchdog has already stopped
the belt, and a belt moved by hand (commissioning) is not stopped under the technician.

Stations ask through events (`on_event`): a hold request (printer fault, link lost, no serials) holds a producing
line (or stops it, ``control.on_hold_request``); an alarm's stop request stops the line (or aborts it,
``control.on_stop_request``). Each raises an `Alarm`, kept until acknowledged and cleared by Reset or Clear.

Every command and every change of state runs in one task (`run`, in the daemon's root TaskGroup), so an HMI
request cancelled half-way never leaves the line in an acting state; Stop and Abort cut a Starting or Unholding
short. Every command, alarm, acknowledgement and mode change goes to the audit trail.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import structlog

from drivers.base import Clock, DeviceEvent, Sleep, utc_now
from drivers.plc.base import LineIo, LineIoStatus, ProductAt, StackLight, Station
from edge.control.packml import (
    ACTING_STATES,
    TRANSITIONS,
    Command,
    PackMLMachine,
    State,
    UnitMode,
    available_commands,
)
from edge.control.permissions import Actor, NotAllowedError, Permission, authorize
from edge.errors import DeviceError, EdgeError
from edge.line.events import LineHoldRequest, LineResumable, LineStopRequest
from edge.serials.states import BatchState
from edge.supervisor import LinkState

if TYPE_CHECKING:
    from datetime import datetime

    from edge.config.models import ControlConfig
    from edge.line.feeder import PrintFeeder
    from edge.line.inspection import InspectionService
    from edge.serials.batches import BatchService
    from edge.serials.ops import BatchRow
    from edge.supervisor import DeviceSupervisor

Audit = Callable[[str | None, str, str, Mapping[str, object]], Awaitable[int]]
"""Append one audit-trail entry (actor, action, subject, details); return its id once durable."""

S, C = State, Command

PLC_WRITE_TIMEOUT_S: Final = 2.0
"""Longest one output write to the PLC may take: a single Modbus request the driver already bounds by the
device's response timeout (0.5 to 2 s); this only backstops a driver that does not."""
READY_POLL_S: Final = 0.02
"""How often Starting and Unholding look at the printers and the PLC while they wait: the feeders and the PLC
signal nothing but their state, and 20 ms is a fraction of a pack at 600 a minute."""
TICK_S: Final = 0.25
"""How often the control looks at the batch and the device links and publishes changed counters: within a pack
or two at line speed, and one cheap store read."""
ALARM_LIMIT: Final = 200
"""Alarms kept for the HMI until Reset or Clear removes the acknowledged ones. More means a flood nobody handles:
the oldest acknowledged go first, then the oldest, each dropping logged (the audit trail keeps every one)."""
SUBSCRIBER_QUEUE: Final = 8
"""Snapshots waiting for one subscriber; a slower one loses the oldest and always gets the newest."""
MAX_SUBSCRIBERS: Final = 64
"""Live views at once (HMI pages, the OPC UA server); beyond that a browser left open somewhere is leaking."""
COMMAND_QUEUE: Final = 16
"""Commands waiting for the control task; more waiting means the line is stuck in an acting state."""
RATE_WINDOW_S: Final = 60.0
RATE_BUCKET_S: Final = 1.0

PERMISSIONS: Final[dict[Command, Permission]] = {
    C.RESET: Permission.LINE_RESET,
    C.START: Permission.LINE_START,
    C.STOP: Permission.LINE_STOP,
    C.HOLD: Permission.LINE_HOLD,
    C.UNHOLD: Permission.LINE_UNHOLD,
    # One permission covers the suspend cycle, as LINE_HOLD and LINE_UNHOLD together cover the hold cycle.
    C.SUSPEND: Permission.LINE_SUSPEND,
    C.UNSUSPEND: Permission.LINE_SUSPEND,
    C.ABORT: Permission.LINE_ABORT,
    C.CLEAR: Permission.LINE_CLEAR,
    C.COMPLETE: Permission.LINE_COMPLETE,
}
"""The permission each command needs from a user; the line itself (actor None) needs none."""

RUN_STATES: Final = frozenset({S.STARTING, S.UNHOLDING, S.UNSUSPENDING, S.EXECUTE})
"""States that may have the run output on; entering any other switches it off."""
PRODUCING: Final = frozenset({S.EXECUTE, S.SUSPENDED})
"""States a station's hold request acts in: the line is making (or about to go on making) units."""
_PREEMPTING: Final = (C.ABORT, C.STOP)
"""Commands that cut a waiting Starting or Unholding short, the stronger first."""


class LineControlError(EdgeError):
    """The line control cannot take the request now (not running, too many commands waiting, too many views)."""


class UnknownAlarmError(LineControlError):
    """No alarm with that id is kept (never raised, or cleared by Reset or Clear)."""


@dataclass(slots=True)
class Alarm:
    """One alarm: what happened, where and when, and who acknowledged it."""

    id: int
    at: datetime
    device: str | None
    kind: str
    """What kind of alarm, like reject-not-confirmed, hold-request or start-failed."""
    text: str
    acknowledged_by: str | None = None
    acknowledged_at: datetime | None = None

    def as_dict(self) -> dict[str, Any]:
        """Return the alarm as JSON-able data."""
        return {
            "id": self.id,
            "at": self.at.isoformat(),
            "device": self.device,
            "kind": self.kind,
            "text": self.text,
            "acknowledged_by": self.acknowledged_by,
            "acknowledged_at": None if self.acknowledged_at is None else self.acknowledged_at.isoformat(),
        }


class RateWindow:
    """Events per minute over a sliding window, counted in buckets so memory stays fixed at any line speed."""

    def __init__(self, window_s: float = RATE_WINDOW_S, bucket_s: float = RATE_BUCKET_S) -> None:
        self.window_s = window_s
        self.bucket_s = bucket_s
        self._buckets: deque[list[float]] = deque()
        """[bucket start, count], oldest first."""
        self._first: float | None = None

    def add(self, now: float, count: int = 1) -> None:
        """Count count events at monotonic time now."""
        if self._first is None:
            self._first = now
        start = now - (now - self._first) % self.bucket_s
        if self._buckets and self._buckets[-1][0] == start:
            self._buckets[-1][1] += count
        else:
            self._buckets.append([start, float(count)])
        self._expire(now)

    def per_minute(self, now: float) -> float:
        """Return the rate over the window ending now (over the time seen so far, when that is shorter)."""
        self._expire(now)
        if self._first is None:
            return 0.0
        # At least one bucket: a first pack a moment ago is not a rate of thousands a minute.
        span = max(self.bucket_s, min(self.window_s, now - self._first))
        return sum(count for _, count in self._buckets) * 60.0 / span

    def _expire(self, now: float) -> None:
        while self._buckets and self._buckets[0][0] + self.bucket_s <= now - self.window_s:
            self._buckets.popleft()


@dataclass(frozen=True, slots=True)
class _Failure:
    """Why an acting state could not do its work, and the device at fault when one is."""

    device: str | None
    text: str


class _PreemptedError(Exception):
    """Stop or Abort is waiting: the acting state in progress ends without completing."""


@dataclass(slots=True)
class _Request:
    """A station's request, applied when the control task gets to it (its alarm is already raised)."""

    reason: str
    device: str | None
    hold: bool = False
    """From a hold request (acts only while the line produces), rather than an alarm."""


@dataclass(slots=True)
class _Job:
    """A user's command or mode change, carried out in the control task; its result goes to future."""

    future: asyncio.Future[int]
    """Resolves to the State a command reached, or the UnitMode a mode change set."""
    actor: Actor | None
    command: Command | None = None
    mode: UnitMode | None = None
    reason: str | None = None
    batch: int | str | None = None


@dataclass(slots=True)
class _Plc:
    """What the PLC last reported about the belt, counted so a report can be told from one before a write."""

    running: bool | None = None
    watchdog_ok: bool = True
    reports: int = 0
    off_mark: int | None = None
    """reports when the run output was last written off: a running report not newer than that is stale."""
    rewrite: bool = False
    """The PLC reports the belt running while the line wants it off: write the output off again."""


class LineControl:
    """The line's PackML unit: commands, acting-state logic, alarms, counters and live status."""

    def __init__(
        self,
        config: ControlConfig,
        batches: BatchService,
        *,
        line_id: str,
        supervisors: Sequence[DeviceSupervisor],
        needed: Sequence[str],
        feeders: Mapping[str, PrintFeeder],
        plc_id: str | None = None,
        plc: Callable[[], LineIo | None] = lambda: None,
        inspection: InspectionService | None = None,
        audit: Audit | None = None,
        clock: Clock = utc_now,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.config: Final = config
        self.line_id: Final = line_id
        self._batches = batches
        self._supervisors = supervisors
        self._needed = tuple(needed)
        self._feeders = feeders
        self._plc_id = plc_id
        self._plc_driver = plc
        self._inspection = inspection
        self._audit = audit
        self._clock = clock
        self._monotonic = monotonic
        self._sleep = sleep
        self._log = structlog.get_logger("lineside.control").bind(line=line_id)
        self._machine = PackMLMachine()
        self._entered_at = clock()
        self._reason: str | None = None
        self._alarms: list[Alarm] = []
        self._next_alarm = 1
        self._alarms_dropped = 0
        self._unaudited: deque[Alarm] = deque()
        """Alarms raised and not yet in the audit trail (the control task writes them), at most ALARM_LIMIT."""
        self._offline_alarmed: set[str] = set()
        self._requests: dict[Command, _Request] = {}
        self._jobs: asyncio.Queue[_Job] = asyncio.Queue(COMMAND_QUEUE)
        self._preempting = 0
        self._wake = asyncio.Event()
        self._running = False
        self._driving = False
        """True from the first command on: from then the outputs follow the state."""
        self._run_output: bool | None = None
        self._outputs_dirty = False
        self._plc = _Plc()
        self._batch: BatchRow | None = None
        self._rate = RateWindow()
        self._subscribers: list[asyncio.Queue[dict[str, Any]]] = []
        self._published: tuple[Any, ...] | None = None
        self._counted_station = Station.CAMERA if inspection is not None else Station.PRINTER

    # -- what the HMI, the API and OPC UA call ----------------------------------------------------------

    @property
    def state(self) -> State:
        """The line's PackML state now."""
        return self._machine.state

    @property
    def mode(self) -> UnitMode:
        """The line's unit mode now."""
        return self._machine.mode

    @property
    def alarms(self) -> tuple[Alarm, ...]:
        """The alarms kept (not yet cleared by Reset or Clear), oldest first."""
        return tuple(self._alarms)

    async def command(
        self, command: Command, actor: Actor | None, *, reason: str | None = None, batch: int | str | None = None
    ) -> State:
        """Carry out a PackML command for actor (None: the line itself); return the state the line ends in.

        The acting state's logic runs to its end: Start returns Execute, or Stopped when the line could not start
        (the reason in `status()` and an alarm). NotAllowedError when actor's role lacks the command's
        permission, IllegalCommandError when PackML does not allow it now; an acting state cut short by Stop or
        Abort returns that acting state. batch names the batch Start takes (default: the paused or running one,
        else the oldest released one).
        """
        await self._authorize(actor, PERMISSIONS[command], f"line.{command.name.lower()}",
                              {"command": command.title, "state": self.state.title})
        return State(await self._submit(_Job(self._future(), actor, command=command, reason=reason, batch=batch)))

    async def set_mode(self, mode: UnitMode, actor: Actor | None) -> UnitMode:
        """Change the unit mode (only in Stopped, Idle or Aborted: EdgeError otherwise); return the mode."""
        await self._authorize(actor, Permission.UNIT_MODE, "line.unit-mode", {"mode": mode.name.capitalize()})
        return UnitMode(await self._submit(_Job(self._future(), actor, mode=mode)))

    async def acknowledge(self, alarm_id: int, actor: Actor) -> Alarm:
        """Acknowledge an alarm as actor; return it (acknowledging twice keeps the first acknowledgement)."""
        await self._authorize(actor, Permission.ALARM_ACK, "alarm.acknowledged", {"alarm": alarm_id})
        alarm = next((a for a in self._alarms if a.id == alarm_id), None)
        if alarm is None:
            kept = ", ".join(str(a.id) for a in self._alarms) or "none"
            raise UnknownAlarmError(f"no alarm {alarm_id} is kept (kept: {kept})")
        if alarm.acknowledged_by is not None:
            return alarm
        alarm.acknowledged_by, alarm.acknowledged_at = actor.name, self._clock()
        self._log.info("alarm acknowledged", alarm=alarm.id, kind=alarm.kind, by=actor.name)
        self._outputs_dirty = True  # the stack light may go from red to amber
        self._wake.set()
        self._publish()
        await self._record(actor.name, "alarm.acknowledged", f"alarm {alarm.id}",
                           {"kind": alarm.kind, "device": alarm.device, "text": alarm.text})
        return alarm

    def status(self) -> dict[str, Any]:
        """Return the line as it stands: state, mode, batch, counters, devices and alarms (JSON-able)."""
        machine = self._machine
        batch = self._batch
        return {
            "line": self.line_id,
            "state": machine.state.title,
            "state_number": int(machine.state),
            "state_entered_at": self._entered_at.isoformat(),
            "mode": machine.mode.name.capitalize(),
            "mode_number": int(machine.mode),
            "commands": [c.title for c in available_commands(machine.state)],
            "reason": self._reason,
            "run_output": self._run_output,
            "batch": None if batch is None else {
                "id": batch.id, "work_order": batch.work_order, "lot": batch.lot, "state": batch.state.value,
            },
            "counters": self._counters(),
            "devices": [
                {"id": s.status.device_id, "state": s.status.state.value, "last_error": s.status.last_error,
                 "needed": s.status.device_id in self._needed}
                for s in self._supervisors
            ],
            "alarms": [alarm.as_dict() for alarm in self._alarms],
            "unacknowledged_alarms": sum(1 for a in self._alarms if a.acknowledged_by is None),
            "alarms_dropped": self._alarms_dropped,
        }

    async def subscribe(self) -> AsyncIterator[dict[str, Any]]:
        """Yield the status now, then on every change; close the iterator (aclosing) when done with it."""
        if len(self._subscribers) >= MAX_SUBSCRIBERS:
            raise LineControlError(f"{MAX_SUBSCRIBERS} live views are open already; close one first")
        self._publish_if_changed()  # the views already open see the line as it is now, as the new one will
        snapshot = self.status()
        self._published = self._signature(snapshot)
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(SUBSCRIBER_QUEUE)
        queue.put_nowait(snapshot)
        self._subscribers.append(queue)
        try:
            while True:
                yield await queue.get()
        finally:
            self._subscribers.remove(queue)

    async def on_event(self, event: DeviceEvent) -> None:
        """Take a station's request or the PLC's report; never waits (the control task acts on it)."""
        if isinstance(event, LineHoldRequest):
            self._raise(event.device_id, "hold-request", event.reason, at=event.at)
            command = C.HOLD if self.config.on_hold_request == "hold" else C.STOP
            self._request(command, _Request(event.reason, event.device_id, hold=True))
        elif isinstance(event, LineStopRequest):
            self._raise(event.device_id, event.alarm, event.reason, at=event.at)
            command = C.STOP if self.config.on_stop_request == "stop" else C.ABORT
            self._request(command, _Request(f"{event.alarm}: {event.reason}", event.device_id))
        elif isinstance(event, LineResumable):
            # The operator decides to unhold; a hold this station asked for and not yet carried out is moot.
            for command, request in list(self._requests.items()):
                if request.hold and request.device == event.device_id:
                    del self._requests[command]
            self._log.info("station can go on", device=event.device_id, reason=event.reason)
        elif isinstance(event, LineIoStatus) and event.device_id == self._plc_id:
            self._plc_report(event)
        elif (isinstance(event, ProductAt) and event.device_id == self._plc_id
              and event.station is self._counted_station):
            self._rate.add(self._monotonic())

    async def run(self) -> None:
        """Carry out commands and requests, watch the batch and the devices, publish changes; until cancelled."""
        self._running = True
        try:
            while True:
                self._wake.clear()
                await self._step()
                if self._wake.is_set():
                    continue
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(TICK_S):
                        await self._wake.wait()
        finally:
            self._running = False
            while not self._jobs.empty():
                job = self._jobs.get_nowait()
                if not job.future.done():
                    job.future.set_exception(LineControlError("the line control stopped before the command ran"))

    # -- the control task ---------------------------------------------------------------------------------

    async def _step(self) -> None:
        for command in _PREEMPTING:
            await self._carry_out(command)
        if not self._jobs.empty():
            job = self._jobs.get_nowait()
            if job.command in _PREEMPTING:
                self._preempting -= 1
            if not job.future.done():  # a caller that gave up before it ran: nothing to do
                await self._run_job(job)
            self._wake.set()  # look again at once: more may be waiting
            return
        try:
            if self.state in ACTING_STATES:
                # A stop cut this state short and then did not happen (its caller gave up): finish what was begun.
                await self._act(None, None)
            for command in (C.HOLD, C.COMPLETE):
                await self._carry_out(command)
            await self._watch()
        except EdgeError as err:
            # The store failing a read: tried again at the next tick; the store's own alarms say why.
            self._log.error("line control could not look at the line", error=str(err))
        await self._sync_outputs()
        await self._audit_alarms()
        self._publish_if_changed()

    async def _run_job(self, job: _Job) -> None:
        try:
            result = await self._do(job)
        except EdgeError as err:
            if not job.future.done():
                job.future.set_exception(err)
            return
        except asyncio.CancelledError:
            if not job.future.done():
                job.future.set_exception(LineControlError("the line control stopped while the command ran"))
            raise
        except Exception as err:
            if not job.future.done():
                job.future.set_exception(err)
            raise  # a bug: the daemon stops rather than run the line in a state nobody understands
        if not job.future.done():
            job.future.set_result(result)

    async def _do(self, job: _Job) -> int:
        if job.command is not None:
            return await self._execute(job.command, job.actor, job.reason, job.batch)
        if job.mode is not None:
            return await self._change_mode(job.mode, job.actor)
        raise TypeError("a job is a command or a mode change")

    async def _carry_out(self, command: Command) -> None:
        request = self._requests.pop(command, None)
        if request is None:
            return
        state = self.state
        if request.hold and state not in PRODUCING:
            self._log.debug("hold request while the line does not produce", state=state.title, reason=request.reason)
            return
        if (state, command) not in TRANSITIONS:
            self._log.debug("request not applicable", command=command.title, state=state.title)
            return
        try:
            await self._execute(command, None, request.reason, None)
        except EdgeError as err:
            self._log.error("request could not be carried out", command=command.title, error=str(err))

    async def _execute(self, command: Command, actor: Actor | None, reason: str | None, batch: int | str | None
                       ) -> State:
        """Apply command, run the acting states it leads through, and record it; return the state reached."""
        who = actor.name if actor is not None else None
        before = self.state
        action = f"line.{command.name.lower()}"
        try:
            self._interlock(command)
            await self._go(reason or f"{command.title} by {who or 'the line'}", command)
        except EdgeError as err:
            await self._record(who, action, self.line_id, {"from": before.title, "outcome": "refused",
                                                           "reason": reason, "error": str(err)})
            raise
        failure = await self._act(actor, batch)
        outcome = "interrupted" if self.state in ACTING_STATES else "failed" if failure is not None else "done"
        details: dict[str, object] = {"from": before.title, "to": self.state.title, "reason": reason,
                                      "outcome": outcome}
        if failure is not None:
            details["error"] = failure.text
        await self._record(who, action, self.line_id, details)
        return self.state

    def _interlock(self, command: Command) -> None:
        """Refuse a command the line must not take now, though PackML allows it."""
        if command is C.START and self.mode is not UnitMode.PRODUCTION:
            raise EdgeError(f"Start runs batches only in Production mode; the line is in "
                            f"{self.mode.name.capitalize()} mode")

    async def _change_mode(self, mode: UnitMode, actor: Actor | None) -> UnitMode:
        before, who = self.mode, None if actor is None else actor.name
        try:
            self._machine.set_mode(mode)
        except EdgeError as err:
            await self._record(who, "line.unit-mode", self.line_id, {
                "from": before.name.capitalize(), "mode": mode.name.capitalize(), "state": self.state.title,
                "outcome": "refused", "error": str(err)})
            raise
        self._log.info("unit mode", mode=mode.name.capitalize(), was=before.name.capitalize(), by=who)
        self._outputs_dirty = True  # the PLC's PackTags block shows the mode too
        self._publish()
        await self._record(who, "line.unit-mode", self.line_id,
                           {"from": before.name.capitalize(), "to": mode.name.capitalize(), "outcome": "done"})
        return mode

    async def _act(self, actor: Actor | None, batch: int | str | None) -> _Failure | None:
        """Run acting states until a wait state or Execute; on a failure go where PackML allows, with the reason."""
        operator = actor.name if actor is not None else None
        failed: _Failure | None = None
        while (state := self.state) in ACTING_STATES:
            try:
                failure = await self._acting(state, operator, batch)
            except _PreemptedError:
                self._log.info("cut short by a stop", state=state.title)
                return failed
            if failure is None:
                await self._go("state complete")
                continue
            failed = failure
            kind = {S.STARTING: "start-failed", S.UNHOLDING: "unhold-failed", S.UNSUSPENDING: "unsuspend-failed"}
            self._raise(failure.device, kind.get(state, f"{state.name.lower()}-failed"), failure.text)
            self._log.error("line could not go on", state=state.title, device=failure.device, reason=failure.text)
            if state is S.UNHOLDING or state is S.UNSUSPENDING:
                # Back to where the line was: PackML leads there only through Execute, passed here without
                # publishing it; Holding (Suspending) switches the run output off again if it came on.
                await self._go(failure.text, quiet=True)
                await self._go(failure.text, C.HOLD if state is S.UNHOLDING else C.SUSPEND)
            else:
                await self._go(failure.text, C.STOP)
        return failed

    async def _acting(self, state: State, operator: str | None, ref: int | str | None) -> _Failure | None:
        if state is S.STARTING:
            return await self._starting(operator, ref)
        if state in (S.UNHOLDING, S.UNSUSPENDING):
            return await self._resuming(operator)
        if state in (S.HOLDING, S.SUSPENDING, S.STOPPING, S.ABORTING):
            await self._pause(operator)
        elif state is S.COMPLETING:
            return await self._completing(operator)
        elif state in (S.RESETTING, S.CLEARING):
            self._clear_acknowledged()
            if state is S.RESETTING and self._inspection is not None:
                # The operator has dealt with what made packs bad: a streak of rejects counts afresh.
                self._inspection.tracker.reset_rejects()
        return None

    async def _starting(self, operator: str | None, ref: int | str | None) -> _Failure | None:
        offline = self._offline()
        if offline is not None:
            return offline
        try:
            batch = await self._batch_to_start(ref)
            if batch.state is not BatchState.RUNNING:
                await self._batches.start(batch.id, operator=operator)
        except EdgeError as err:
            return _Failure(None, f"the batch cannot start: {err}")
        await self._refresh_batch()
        return await self._until_running()

    async def _resuming(self, operator: str | None) -> _Failure | None:
        offline = self._offline()
        if offline is not None:
            return offline
        batch = await self._refresh_batch()
        if batch is None or batch.state not in (BatchState.PAUSED, BatchState.RUNNING):
            what = "no batch is active" if batch is None else f"{batch.name} is {batch.state.value}"
            return _Failure(None, f"the line produces only with a running batch, and {what}")
        if batch.state is BatchState.PAUSED:
            try:
                await self._batches.start(batch.id, operator=operator)
            except EdgeError as err:
                return _Failure(None, f"{batch.name} cannot resume: {err}")
            await self._refresh_batch()
        return await self._until_running()

    async def _until_running(self) -> _Failure | None:
        """Wait for loaded printers, switch the run output on, wait for the PLC to report the belt running."""
        deadline = self._monotonic() + self.config.start_timeout_s
        # Printers first: a pack reaching the head before its record is loaded leaves unprinted (and rejected).
        failure = await self._wait(self._printers_not_ready, deadline)
        if failure is not None:
            return failure
        failure = await self._set_run(on=True)
        if failure is not None and (self.config.require_devices or self._plc_driver() is not None):
            return failure
        return await self._wait(self._plc_not_running, deadline)

    async def _wait(self, not_ready: Callable[[], _Failure | None], deadline: float) -> _Failure | None:
        while (failure := not_ready()) is not None:
            if self._preempting or any(not r.hold for c, r in self._requests.items() if c in _PREEMPTING):
                raise _PreemptedError
            if self._monotonic() >= deadline:
                return _Failure(failure.device, f"{failure.text} (waited {self.config.start_timeout_s:g} s)")
            await self._sleep(READY_POLL_S)
        return None

    async def _completing(self, operator: str | None) -> _Failure | None:
        batch = await self._refresh_batch()
        if batch is None:
            return _Failure(None, "no batch is active to complete")
        if batch.state in (BatchState.RUNNING, BatchState.PAUSED):
            try:
                report = await self._batches.complete(batch.id, operator=operator)
            except EdgeError as err:
                return _Failure(None, f"{batch.name} cannot complete: {err}")
            self._log.info("batch completed", batch=batch.id, in_doubt=report.get("counts", {}).get("in_doubt"))
            await self._refresh_batch()
        return None

    async def _pause(self, operator: str | None) -> None:
        batch = await self._refresh_batch()
        if batch is None or batch.state is not BatchState.RUNNING:
            return
        try:
            await self._batches.pause(batch.id, operator=operator)
        except EdgeError as err:
            # The belt is off already; a batch left running only means the feeders keep their buffers topped.
            self._log.error("batch not paused", batch=batch.id, error=str(err))
        await self._refresh_batch()

    def _clear_acknowledged(self) -> None:
        kept = [a for a in self._alarms if a.acknowledged_by is None]
        if len(kept) != len(self._alarms):
            self._log.info("acknowledged alarms cleared", cleared=len(self._alarms) - len(kept), kept=len(kept))
        self._alarms = kept

    async def _batch_to_start(self, ref: int | str | None) -> BatchRow:
        ledger = self._batches.ledger
        if ref is not None:
            return await ledger.batch(ref)
        active = await ledger.active_batch()
        if active is not None:
            return active
        released = [b for b in await ledger.batches() if b.state is BatchState.RELEASED]
        if not released:
            raise EdgeError("no batch is released, paused or running on this line: release one first")
        return min(released, key=lambda b: b.id)  # the oldest order first, as it was planned

    async def _go(self, why: str, command: Command | None = None, *, quiet: bool = False) -> None:
        """Apply command (None: complete the acting state) once the outputs show the new state; publish it.

        quiet passes a state on the way somewhere else without showing it (no stack light, no notification).
        """
        before = self.state
        # A throwaway machine says where this leads, or raises the error that says why it does not.
        probe = PackMLMachine(state=before, mode=self.mode)
        target = probe.state_complete(why) if command is None else probe.command(command, why)
        if command is not None:
            self._driving = True
        # The outputs first: whoever sees the new state sees the belt and the lights as it says.
        if target not in RUN_STATES and self._run_output is not False:
            failure = await self._set_run(on=False)
            if failure is not None:
                self._raise(self._plc_id, "run-output-failed", failure.text)
        if not quiet:
            await self._signal(target)
        if command is None:
            self._machine.state_complete(why)
        else:
            self._machine.command(command, why)
            self._reason = why
        self._entered_at = self._clock()
        self._log.info("line state", state=target.title, was=before.title, why=why)
        if not quiet:
            self._publish()

    # -- requests, alarms and the watch -----------------------------------------------------------------

    def _request(self, command: Command, request: _Request) -> None:
        self._requests.setdefault(command, request)
        self._wake.set()

    def _raise(self, device: str | None, kind: str, text: str, *, at: datetime | None = None) -> Alarm:
        alarm = Alarm(self._next_alarm, at or self._clock(), device, kind, text)
        self._next_alarm += 1
        self._alarms.append(alarm)
        if len(self._alarms) > ALARM_LIMIT:
            dropped = next((a for a in self._alarms if a.acknowledged_by is not None), self._alarms[0])
            self._alarms.remove(dropped)
            self._alarms_dropped += 1
            self._log.error("alarm list full: oldest dropped", dropped=dropped.id, kind=dropped.kind,
                            limit=ALARM_LIMIT)
        if len(self._unaudited) >= ALARM_LIMIT:
            lost = self._unaudited.popleft()
            self._log.error("alarm not recorded in the audit trail: too many waiting", alarm=lost.id, kind=lost.kind)
        self._unaudited.append(alarm)
        self._log.warning("alarm", alarm=alarm.id, kind=kind, device=device, text=text)
        self._outputs_dirty = True
        self._wake.set()
        self._publish()
        return alarm

    async def _watch(self) -> None:
        """Hold a producing line whose camera or PLC link is lost; keep Execute only with a running batch."""
        batch = await self._refresh_batch()
        states = self._link_states()
        for device_id in self._needed:
            if device_id in self._feeders:
                continue  # a printer's feeder asks for its own hold when its link drops
            if states.get(device_id) is LinkState.ONLINE:
                self._offline_alarmed.discard(device_id)
            elif self.state in PRODUCING and device_id not in self._offline_alarmed:
                self._offline_alarmed.add(device_id)
                text = f"{device_id} link lost: {self._last_error(device_id) or 'offline'}"
                self._raise(device_id, "device-offline", text)
                self._request(C.HOLD if self.config.on_hold_request == "hold" else C.STOP,
                              _Request(text, device_id, hold=True))
        if self.state is not S.EXECUTE or C.HOLD in self._requests or C.STOP in self._requests:
            return
        # Someone paused, completed or closed the batch elsewhere (the API): the line follows the batch.
        if batch is None:
            self._request(C.STOP, _Request("no batch is active", None))
        elif batch.state is BatchState.PAUSED:
            self._request(C.HOLD, _Request(f"{batch.name} was paused", None))
        elif batch.state is BatchState.COMPLETING:
            self._request(C.COMPLETE, _Request(f"{batch.name} was completed", None))

    def _plc_report(self, event: LineIoStatus) -> None:
        plc = self._plc
        plc.reports += 1
        plc.running, plc.watchdog_ok = event.running, event.watchdog_ok
        if not self._driving:
            return
        if event.running and self._run_output is False:
            plc.rewrite = True  # a PLC restarted with the output latched, or another master wrote it
            self._wake.set()
        elif not event.running and self._run_output and self.state is S.EXECUTE:
            why = "its watchdog tripped" if not event.watchdog_ok else "an interlock or emergency stop"
            text = f"the PLC stopped the belt while the line executes ({why})"
            self._raise(event.device_id, "line-stopped-by-plc", text, at=event.at)
            self._request(C.STOP if self.config.on_stop_request == "stop" else C.ABORT,
                          _Request(text, event.device_id))

    async def _audit_alarms(self) -> None:
        while self._unaudited:
            alarm = self._unaudited[0]
            await self._record(None, "alarm.raised", f"alarm {alarm.id}",
                               {"kind": alarm.kind, "device": alarm.device, "text": alarm.text,
                                "at": alarm.at.isoformat()})
            self._unaudited.popleft()

    # -- devices ----------------------------------------------------------------------------------------

    def _link_states(self) -> dict[str, LinkState]:
        return {s.status.device_id: s.status.state for s in self._supervisors}

    def _last_error(self, device_id: str) -> str | None:
        for s in self._supervisors:
            if s.status.device_id == device_id:
                return s.status.last_error
        return None

    def _offline(self) -> _Failure | None:
        """Name the first needed device that is not online (None when all are, or when none are required)."""
        if not self.config.require_devices:
            return None
        states = self._link_states()
        for device_id in self._needed:
            state = states.get(device_id)
            if state is None:
                return _Failure(device_id, f"{device_id} is not enabled in the configuration")
            if state is not LinkState.ONLINE:
                error = self._last_error(device_id)
                return _Failure(device_id, f"{device_id} is {state.value}" + (f": {error}" if error else ""))
        return None

    def _printers_not_ready(self) -> _Failure | None:
        offline = self._offline()
        if offline is not None:
            return offline
        states = self._link_states()
        for device_id, feeder in self._feeders.items():
            if states.get(device_id) is not LinkState.ONLINE:
                continue  # not required (require_devices false): the line runs without it
            if feeder.holding is not None:
                return _Failure(device_id, feeder.holding)
            if not feeder.outstanding:
                return _Failure(device_id, f"printer {device_id} has no records loaded yet")
        return None

    def _plc_not_running(self) -> _Failure | None:
        offline = self._offline()
        if offline is not None:
            return offline
        if self._plc_id is None or self._plc_driver() is None:
            return None
        plc = self._plc
        fresh = plc.off_mark is None or plc.reports > plc.off_mark
        if plc.running and fresh:
            return None
        why = "" if plc.watchdog_ok else ": its watchdog tripped"
        return _Failure(self._plc_id, f"PLC {self._plc_id} does not report the belt running{why}")

    # Only the control task writes the PLC's outputs, so they never interleave.

    async def _set_run(self, *, on: bool) -> _Failure | None:
        """Write the run output; a failure when the PLC could not be told (None also without a PLC)."""
        self._run_output = on
        if not on:
            self._plc.off_mark = self._plc.reports
            self._plc.rewrite = False
        return await self._plc_write("run " + ("on" if on else "off"), lambda plc: plc.set_running(on))

    async def _signal(self, state: State) -> None:
        """Show state on the stack light, the controller-ready output and the PackTags block (once driven)."""
        if not self._driving:
            return
        self._outputs_dirty = False
        aborted = state in (S.ABORTING, S.ABORTED)
        if aborted or any(a.acknowledged_by is None for a in self._alarms):
            light = StackLight.RED
        else:
            light = StackLight.GREEN if state is S.EXECUTE else StackLight.AMBER
        failure = await self._plc_write("ready", lambda plc: plc.set_ready(not aborted))
        if failure is None:
            failure = await self._plc_write("stack light", lambda plc: plc.set_stack_light(light))
        if failure is None:
            mode = int(self.mode)
            failure = await self._plc_write("PackTags state", lambda plc: plc.show_state(int(state), mode))
        if failure is not None:
            self._log.warning("PLC outputs not shown", reason=failure.text)

    async def _sync_outputs(self) -> None:
        if self._plc.rewrite and self._run_output is False and self.state not in RUN_STATES:
            self._log.warning("the PLC runs the belt while the line is not executing: run output off again")
            failure = await self._set_run(on=False)
            if failure is not None:
                self._raise(self._plc_id, "run-output-failed", failure.text)
        if self._outputs_dirty:
            await self._signal(self.state)

    async def _plc_write(self, what: str, write: Callable[[LineIo], Awaitable[None]]) -> _Failure | None:
        if self._plc_id is None:
            return None
        plc = self._plc_driver()
        if plc is None:
            # Its watchdog stops the belt without our heartbeat; the link state is on the HMI already.
            self._log.warning("PLC offline: output not written", output=what, device=self._plc_id)
            return _Failure(self._plc_id, f"PLC {self._plc_id} is offline: {what} not written")
        try:
            async with asyncio.timeout(PLC_WRITE_TIMEOUT_S):
                await write(plc)
        except (DeviceError, TimeoutError, OSError) as err:
            return _Failure(self._plc_id, f"PLC {self._plc_id}: {what} failed: {str(err) or 'no answer'}")
        return None

    # -- status -----------------------------------------------------------------------------------------

    async def _refresh_batch(self) -> BatchRow | None:
        self._batch = await self._batches.ledger.active_batch()
        return self._batch

    def _counters(self) -> dict[str, Any]:
        rate = round(self._rate.per_minute(self._monotonic()), 1)
        if self._inspection is not None:
            counts = self._inspection.counts
            return {"produced": counts.inspected, "good": counts.good, "rejected": dict(counts.rejected),
                    "rate_per_minute": rate}
        printed = sum(feeder.counts.printed for feeder in self._feeders.values())
        return {"produced": printed, "good": None, "rejected": {}, "rate_per_minute": rate}

    def _publish(self) -> None:
        if not self._subscribers:
            return
        snapshot = self.status()
        self._published = self._signature(snapshot)
        for queue in self._subscribers:
            if queue.full():
                queue.get_nowait()  # a slow view loses the oldest snapshot; the newest always gets through
            queue.put_nowait(snapshot)

    def _publish_if_changed(self) -> None:
        if self._subscribers and self._signature(self.status()) != self._published:
            self._publish()

    @staticmethod
    def _signature(snapshot: dict[str, Any]) -> tuple[Any, ...]:
        counters = snapshot["counters"]
        return (snapshot["state"], snapshot["mode"], snapshot["batch"], counters["produced"], counters["good"],
                tuple(sorted(counters["rejected"].items())), counters["rate_per_minute"],
                tuple((d["id"], d["state"]) for d in snapshot["devices"]), snapshot["unacknowledged_alarms"],
                len(snapshot["alarms"]))

    # -- plumbing ---------------------------------------------------------------------------------------

    def _future(self) -> asyncio.Future[int]:
        return asyncio.get_running_loop().create_future()

    async def _submit(self, job: _Job) -> int:
        if not self._running:
            raise LineControlError("the line control is not running")
        if self._jobs.full():
            raise LineControlError(f"{COMMAND_QUEUE} commands are waiting already; try again when the line is done")
        if job.command in _PREEMPTING:
            self._preempting += 1
        self._jobs.put_nowait(job)
        self._wake.set()
        return await job.future

    async def _authorize(self, actor: Actor | None, permission: Permission, action: str,
                         details: Mapping[str, object]) -> None:
        if actor is None:
            return
        try:
            authorize(actor, permission)
        except NotAllowedError as err:
            self._log.warning("refused", actor=actor.name, role=actor.role.value, permission=permission.value)
            await self._record(actor.name, action, self.line_id, {**details, "outcome": "refused", "error": str(err)})
            raise

    async def _record(self, actor: str | None, action: str, subject: str, details: Mapping[str, object]) -> None:
        if self._audit is None:
            return
        try:
            await self._audit(actor, action, subject, details)
        except EdgeError as err:
            # The store failing is its own alarm (the watchdog, the writer); the line does not stop for the trail.
            self._log.error("audit entry not written", action=action, subject=subject, error=str(err))

