"""One half-duplex conversation with a device: one request at a time, the matching answer within a timeout.

Printers and most serial devices answer each command before they take the next. `Exchange` holds the one
lock of the link, writes a request, and reads frames until one the caller accepts arrives. Anything else
that arrives meanwhile (a late or duplicated answer, an unsolicited message the driver did not ask for,
bytes the framer could not parse) is reported as `DeviceGarbage` once the lock is released, and skipped.
No answer within the timeout means the device's state is unknown: that is a lost link, not a retry.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import TYPE_CHECKING, Generic, TypeVar

from drivers.base import DeviceGarbage
from drivers.framing.base import Framer, Garbage
from edge.errors import TransientDeviceError

if TYPE_CHECKING:
    from collections.abc import Callable

    from drivers.base import DriverContext
    from drivers.transport.link import Link

FrameT = TypeVar("FrameT")

STRAY = "answer nobody asked for"


class Exchange(Generic[FrameT]):
    """Requests and their answers over one link, one at a time."""

    def __init__(self, link: Link, framer: Framer[FrameT], context: DriverContext) -> None:
        self.link = link
        self._framer = framer
        self._context = context
        self._lock = asyncio.Lock()
        self._received: deque[FrameT | Garbage] = deque()
        self._unreported: list[Garbage] = []

    async def request(
        self,
        data: bytes,
        accept: Callable[[FrameT], bool],
        *,
        timeout_s: float,
        what: str,
        expected: Callable[[FrameT], bool] | None = None,
    ) -> FrameT:
        """Send data and return the first frame accept() takes; TransientDeviceError if none comes in time.

        Frames expected() takes on the way (answers to one-way commands sent just before) are the caller's
        to note, not strays.
        """
        try:
            async with self._lock:
                # Whatever arrived since the last answer (a duplicate, a late answer) answers nothing asked now.
                while self._received:
                    item = self._received.popleft()
                    self._unreported.append(item if isinstance(item, Garbage) else Garbage(_describe(item), STRAY))
                await self.link.write(data)
                return await self._answer(accept, expected, timeout_s, what)
        finally:
            await self._report()

    async def send(self, data: bytes) -> None:
        """Send data that has no answer (one-way commands), in turn with the requests."""
        async with self._lock:
            await self.link.write(data)

    async def _answer(
        self,
        accept: Callable[[FrameT], bool],
        expected: Callable[[FrameT], bool] | None,
        timeout_s: float,
        what: str,
    ) -> FrameT:
        try:
            async with asyncio.timeout(timeout_s):
                while True:
                    while self._received:
                        item = self._received.popleft()
                        if isinstance(item, Garbage):
                            self._unreported.append(item)
                        elif accept(item):
                            return item
                        elif expected is not None and expected(item):
                            continue
                        else:
                            self._unreported.append(Garbage(_describe(item), STRAY))
                    self._received.extend(self._framer.feed(await self.link.read()))
        except TimeoutError as err:
            raise TransientDeviceError(
                f"{what}: no answer from {self.link.peer} within {timeout_s:g} s; its state is unknown"
            ) from err

    async def _report(self) -> None:
        garbage, self._unreported = self._unreported, []
        for item in garbage:
            self._context.log.warning("device sent bytes out of turn", reason=item.reason, data=item.data[:64])
            await self._context.events(
                DeviceGarbage(device_id=self._context.device_id, at=self._context.clock(), data=item.data,
                              reason=item.reason)
            )


def _describe(frame: object) -> bytes:
    """Return a frame as bytes for a garbage report (its payload or raw bytes when it has them)."""
    for name in ("raw", "payload", "data"):
        value = getattr(frame, name, None)
        if isinstance(value, bytes):
            return value
    return repr(frame).encode()
