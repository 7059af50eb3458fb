"""Supervisor behaviour with scripted drivers and an injected sleep: no real waiting anywhere."""

import asyncio
import random

import pytest
import structlog
from structlog.testing import capture_logs

from drivers.base import DeviceInfo, Driver, DriverContext, DriverOptions
from drivers.transport.spec import TransportSpec
from edge.backoff import Backoff
from edge.errors import DeviceRejectedError, TransientDeviceError
from edge.supervisor import DeviceSupervisor, LinkState


class ScriptedDriver(Driver):
    """Plays one step of a script: connect outcome, then run outcome."""

    role = "test"

    def __init__(self, step, log):
        ctx = DriverContext(
            device_id="dev-1",
            transport=TransportSpec(url="socket://127.0.0.1:9"),
            events=_no_events,
            log=structlog.get_logger().bind(device="dev-1"),
        )
        super().__init__(ctx, DriverOptions())
        self.step = step
        self.log = log
        self.closed = 0

    async def connect(self):
        self.log.append("connect")
        outcome = self.step[0]
        if isinstance(outcome, BaseException):
            raise outcome
        if outcome == "hang":
            await asyncio.Event().wait()
        return DeviceInfo(model="scripted")

    async def run(self):
        self.log.append("run")
        outcome = self.step[1]
        if isinstance(outcome, BaseException):
            raise outcome

    async def close(self):
        self.closed += 1
        self.log.append("close")


async def _no_events(_event):
    return None


class FakeSleep:
    """Records requested delays; blocks forever once `stop_after` delays were asked for."""

    def __init__(self, stop_after):
        self.delays = []
        self.stop_after = stop_after
        self.done = asyncio.Event()

    async def __call__(self, seconds):
        self.delays.append(seconds)
        if len(self.delays) >= self.stop_after:
            self.done.set()
            await asyncio.Event().wait()


async def _drive(script, *, stop_after, connect_timeout_s=5.0):
    calls = []
    drivers = []

    def factory():
        d = ScriptedDriver(script[len(drivers)], calls)
        drivers.append(d)
        return d

    sleep = FakeSleep(stop_after)
    sup = DeviceSupervisor(
        "dev-1",
        factory,
        backoff=Backoff(initial_s=1.0, max_s=8.0, jitter=0.0, rng=random.Random(1)),
        connect_timeout_s=connect_timeout_s,
        log=structlog.get_logger().bind(device="dev-1"),
        sleep=sleep,
    )
    task = asyncio.create_task(sup.run())
    await asyncio.wait_for(sleep.done.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    return sup, sleep, calls, drivers


async def test_transient_failures_back_off_exponentially_to_the_cap():
    refused = TransientDeviceError("connection refused")
    sup, sleep, _, drivers = await _drive([(refused, None)] * 6, stop_after=6)
    assert sleep.delays == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    assert all(d.closed == 1 for d in drivers)  # every attempt's driver was closed
    assert sup.status.state is LinkState.OFFLINE
    assert sup.status.failures == 6
    assert sup.status.last_error == "connection refused"


async def test_success_resets_the_backoff():
    refused = TransientDeviceError("refused")
    dropped = TransientDeviceError("connection closed by device")
    script = [(refused, None), (refused, None), (refused, None), ("ok", dropped), (refused, None)]
    sup, sleep, calls, _ = await _drive(script, stop_after=5)
    # 1, 2, 4 while failing; the link came up (reset), dropped: 1 again, then 2.
    assert sleep.delays == [1.0, 2.0, 4.0, 1.0, 2.0]
    assert calls.count("run") == 1
    assert sup.status.connects == 1


async def test_a_rejection_backs_off_to_the_cap_at_once():
    wrong = DeviceRejectedError("printer answered as model X, configured as Y")
    sup, sleep, _, _ = await _drive([(wrong, None)] * 2, stop_after=2)
    assert sleep.delays == [8.0, 8.0]
    assert sup.status.state is LinkState.REJECTED


async def test_a_driver_bug_is_contained_and_retried():
    bug = KeyError("oops")
    sup, sleep, _, drivers = await _drive([("ok", bug), ("ok", bug)], stop_after=2)
    assert sleep.delays == [8.0, 8.0]
    assert sup.status.last_error == "KeyError: 'oops'"
    assert all(d.closed == 1 for d in drivers)


async def test_connect_that_hangs_times_out():
    sup, sleep, _, _ = await _drive([("hang", None)] * 2, stop_after=2, connect_timeout_s=0.01)
    assert sleep.delays == [1.0, 2.0]
    assert sup.status.last_error == "timed out"


async def test_logs_unavailable_once_then_debug_then_recovery_at_info():
    refused = TransientDeviceError("refused")
    dropped = TransientDeviceError("dropped")
    script = [("ok", dropped), (refused, None), (refused, None), ("ok", dropped), (refused, None)]
    with capture_logs() as logs:
        await _drive(script, stop_after=5)
    summary = [(e["log_level"], e["event"]) for e in logs if e["event"] != "reconnecting later"]
    assert summary == [
        ("info", "device online"),
        ("warning", "device unavailable"),
        ("debug", "device still unavailable"),
        ("debug", "device still unavailable"),
        ("info", "device back online"),
        ("warning", "device unavailable"),
        ("debug", "device still unavailable"),
    ]


async def test_cancellation_during_run_closes_the_driver():
    calls = []
    started = asyncio.Event()

    class Forever(ScriptedDriver):
        async def run(self):
            started.set()
            await asyncio.Event().wait()

    driver = Forever(("ok", None), calls)
    sup = DeviceSupervisor(
        "dev-1",
        lambda: driver,
        backoff=Backoff(initial_s=1.0, max_s=2.0),
        connect_timeout_s=1.0,
        log=structlog.get_logger(),
        sleep=FakeSleep(1),
    )
    task = asyncio.create_task(sup.run())
    await asyncio.wait_for(started.wait(), 5)
    assert sup.status.state is LinkState.ONLINE
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert driver.closed == 1
