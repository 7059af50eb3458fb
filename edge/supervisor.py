"""One supervisor per device: connect, run, close, back off, reconnect; one device's failure stays its own."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Protocol

from edge.backoff import Backoff
from edge.errors import DeviceRejectedError, TransientDeviceError

if TYPE_CHECKING:
    import structlog

    from drivers.base import DeviceInfo, Driver

Sleep = Callable[[float], Awaitable[None]]
DriverFactory = Callable[[], "Driver"]

# A driver's close() releases sockets and ports; it must not hold up shutdown or the next attempt
# for longer than a serial port takes to settle after close.
CLOSE_TIMEOUT_S = 5.0


class DeviceSession(Protocol):
    """The line's work with one connected device (a printer's feeder, say), beside the driver's own run()."""

    async def serve(self, driver: Driver) -> None:
        """Work with the connected device until cancelled; raise to drop the link (the device misbehaved)."""
        ...

    async def offline(self, reason: str) -> None:
        """Settle what the lost link left uncertain; called once per lost link, before reconnecting."""
        ...


class LinkState(StrEnum):
    CONNECTING = "connecting"
    ONLINE = "online"
    OFFLINE = "offline"
    REJECTED = "rejected"
    """The device refused us for a reason retrying will not cure soon (settings, model); still retried at the cap."""


@dataclass(slots=True)
class DeviceStatus:
    """What the HMI, the status line and the metrics show for one device."""

    device_id: str
    state: LinkState = LinkState.CONNECTING
    info: DeviceInfo | None = None
    last_error: str | None = None
    connects: int = 0
    failures: int = 0


class DeviceSupervisor:
    """Keeps one device connected for as long as the daemon runs; only cancellation or a bug ends run()."""

    def __init__(
        self,
        device_id: str,
        factory: DriverFactory,
        *,
        backoff: Backoff,
        connect_timeout_s: float,
        log: structlog.stdlib.BoundLogger,
        sleep: Sleep = asyncio.sleep,
        session: DeviceSession | None = None,
    ) -> None:
        self.status = DeviceStatus(device_id)
        self._session = session
        self._factory = factory
        self._backoff = backoff
        self._connect_timeout_s = connect_timeout_s
        self._log = log
        self._sleep = sleep
        self._unavailable_logged = False

    async def run(self) -> None:
        """Connect, serve and reconnect forever; returns only by cancellation."""
        while True:
            driver = self._factory()
            online = False
            try:
                self.status.state = LinkState.CONNECTING
                async with asyncio.timeout(self._connect_timeout_s):
                    info = await driver.connect()
                self._mark_online(info)
                online = True
                await self._serve(driver)
                self._mark_offline(TransientDeviceError("driver stopped serving without an error"), LinkState.OFFLINE)
            except DeviceRejectedError as err:
                self._mark_offline(err, LinkState.REJECTED)
                self._backoff.max_out()
            except (TransientDeviceError, TimeoutError, OSError) as err:
                self._mark_offline(err, LinkState.OFFLINE)
            except Exception as err:  # noqa: BLE001 - a driver bug must not stop the other devices or the line controller
                self._log.exception("driver failed unexpectedly", error=repr(err))
                self._mark_offline(err, LinkState.OFFLINE)
                self._backoff.max_out()
            finally:
                await self._close(driver)
            if online and self._session is not None:
                await self._session.offline(self.status.last_error or "link lost")
            delay = self._backoff.next_delay()
            self._log.debug("reconnecting later", delay_s=round(delay, 3), attempt=self._backoff.failures)
            await self._sleep(delay)

    async def _serve(self, driver: Driver) -> None:
        """Run the driver and the session side by side; the first to end ends the other, its error re-raised."""
        if self._session is None:
            await driver.run()
            return
        tasks = [
            asyncio.create_task(driver.run(), name=f"{self.status.device_id} driver"),
            asyncio.create_task(self._session.serve(driver), name=f"{self.status.device_id} session"),
        ]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            # Both tasks are ours and end here, whatever ended the wait (cancellation included).
            for task in tasks:
                task.cancel()
            await asyncio.wait(tasks)
        for task in tasks:  # the driver first: its link error explains a session that failed with it
            if task in done and not task.cancelled() and (error := task.exception()) is not None:
                raise error
        ended = next(task for task in tasks if task in done)
        if ended is tasks[1]:
            raise TransientDeviceError("the line's session with the device ended; reconnecting")

    def _mark_online(self, info: DeviceInfo) -> None:
        self.status.state = LinkState.ONLINE
        self.status.info = info
        self.status.connects += 1
        self.status.last_error = None
        self._backoff.reset()
        if self._unavailable_logged:
            self._log.info("device back online", model=info.model, firmware=info.firmware)
        elif self.status.connects == 1:
            self._log.info("device online", model=info.model, firmware=info.firmware)
        self._unavailable_logged = False

    def _mark_offline(self, err: BaseException, state: LinkState) -> None:
        self.status.state = state
        self.status.failures += 1
        self.status.last_error = _describe(err)
        # Log when a device becomes unavailable once, at WARNING; every retry after that at DEBUG.
        if not self._unavailable_logged:
            self._log.warning("device unavailable", state=str(state), error=self.status.last_error)
            self._unavailable_logged = True
        else:
            self._log.debug("device still unavailable", error=self.status.last_error)

    async def _close(self, driver: Driver) -> None:
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT_S):
                await driver.close()
        except TimeoutError:
            self._log.warning("driver close timed out", timeout_s=CLOSE_TIMEOUT_S)


def _describe(err: BaseException) -> str:
    if isinstance(err, TimeoutError) and not str(err):
        return "timed out"
    text = str(err) or type(err).__name__
    return text if isinstance(err, (TransientDeviceError, DeviceRejectedError)) else f"{type(err).__name__}: {text}"


def default_backoff(initial_s: float, max_s: float) -> Backoff:
    """Return the production backoff policy with a process-local random jitter source."""
    return Backoff(initial_s=initial_s, max_s=max_s, rng=random.Random())  # noqa: S311 - jitter spreads reconnects; it guards no secret
