"""The contract every device driver fulfils, whatever its role or wire dialect."""

from __future__ import annotations

import abc
import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, ClassVar

from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:
    import structlog

    from drivers.transport.spec import TransportSpec


class DriverOptions(BaseModel):
    """Base of every driver's own options model: unknown keys are errors, values immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    """What a device told us about itself when the link came up."""

    model: str
    firmware: str | None = None
    serial_number: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class DeviceEvent:
    """Something a device reported; subclasses carry the role-specific payload."""

    device_id: str
    at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class CodeRead(DeviceEvent):
    """A reader delivered one decoded code, bytes exactly as sent (GS separators kept)."""

    data: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class DeviceGarbage(DeviceEvent):
    """The device sent bytes its protocol cannot parse; they were skipped to resynchronise."""

    data: bytes
    reason: str


EventSink = Callable[[DeviceEvent], Awaitable[None]]
"""Where a driver hands its events; awaiting it applies back-pressure instead of dropping."""

Clock = Callable[[], datetime]
Sleep = Callable[[float], Awaitable[None]]


def utc_now() -> datetime:
    """Return the current time as an aware UTC datetime."""
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True, kw_only=True)
class DriverContext:
    """Everything a driver is given by the daemon: identity, link, events, log, clock."""

    device_id: str
    transport: TransportSpec
    events: EventSink
    log: structlog.stdlib.BoundLogger
    clock: Clock = field(default=utc_now)
    sleep: Sleep = field(default=asyncio.sleep)
    """How the driver waits between polls; tests pass one that does not wait on the wall clock."""
    connect_timeout_s: float = 5.0
    response_timeout_s: float = 2.0


class Driver(abc.ABC):
    """One device link. Single-use: connect() at most once, close() any number of times."""

    role: ClassVar[str]
    """The device role this driver fills (``reader``, ``printer``, ``camera``, ``plc``)."""

    Options: ClassVar[type[DriverOptions]] = DriverOptions
    """The driver's own options model; the ``options:`` mapping of a device is validated by it."""

    def __init__(self, context: DriverContext, options: DriverOptions) -> None:
        self.context = context
        self.options = options

    @abc.abstractmethod
    async def connect(self) -> DeviceInfo:
        """Open the link and handshake within the connect timeout; on failure leave no state behind."""

    @abc.abstractmethod
    async def run(self) -> None:
        """Serve the connected device until the link is lost (raise the cause) or cancelled."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release the link; idempotent and never raises."""
