"""The PLC role: the line's I/O as the line controller sees it (photo-eyes, encoder, reject station, run output).

Products are tracked by the PLC's own product sequence numbers, assigned when a product passes the printer's
photo-eye, and by encoder counts. The line controller never counts products to know which is which: every
message names the product's sequence number, so a late or lost message can never shift the tracking.

Verdicts travel to the PLC the same way: the line writes "good" for a sequence number; the reject station
rejects every product that has no good verdict for its own sequence number when it arrives (reject unless
proven good), and reports each product it let pass or rejected, with the reject confirmation sensor's answer.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from enum import StrEnum
from typing import ClassVar

from drivers.base import DeviceEvent, Driver


class Station(StrEnum):
    PRINTER = "printer"
    CAMERA = "camera"
    REJECT = "reject"


@dataclass(frozen=True, slots=True, kw_only=True)
class ProductAt(DeviceEvent):
    """A product reached a station (its photo-eye), with the encoder count there."""

    station: Station
    product: int
    """The PLC's sequence number of the product (assigned at the printer's photo-eye)."""
    encoder: int


@dataclass(frozen=True, slots=True, kw_only=True)
class RejectOutcome(DeviceEvent):
    """What the reject station did with one product."""

    product: int
    rejected: bool
    """True when the reject fired (no good verdict for this product in time, or a verdict of reject)."""
    confirmed: bool
    """For a fired reject: the confirmation sensor saw the product leave the line (False: it may have gone on)."""
    encoder: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ProductsMissed(DeviceEvent):
    """Products first..last passed a station while the driver could not see them (ring overrun or a seq skip).

    The PLC rejected them by default; the line cannot account for them and must treat them as unknown.
    """

    station: Station
    first: int
    last: int


@dataclass(frozen=True, slots=True, kw_only=True)
class LineIoStatus(DeviceEvent):
    """The line's inputs that are states, not edges: conveyor running, PLC watchdog happy."""

    running: bool
    encoder: int
    watchdog_ok: bool = True


class StackLight(StrEnum):
    GREEN = "green"
    AMBER = "amber"
    RED = "red"
    OFF = "off"


class LineIo(Driver, abc.ABC):
    """The line PLC. Contract for every implementation.

    - run() polls (or listens to) the PLC and emits `ProductAt` for each product at each station exactly once,
      in sequence order per station, `RejectOutcome` once per product at the reject station, and
      `LineIoStatus` whenever running or the encoder's direction of travel changes; it toggles the heartbeat the
      PLC's watchdog expects. A product sequence number that skips is reported (the skipped products are unknown
      to the line and were rejected by the PLC by default).
    - good() must complete before the product reaches the reject station to let it pass; it is idempotent.
    """

    role: ClassVar[str] = "plc"

    @abc.abstractmethod
    async def good(self, product: int) -> None:
        """Tell the reject station that product passed inspection (absent that, it is rejected)."""

    @abc.abstractmethod
    async def set_running(self, run: bool) -> None:
        """Set the line run output (the conveyor stops when False)."""

    @abc.abstractmethod
    async def set_ready(self, ready: bool) -> None:
        """Set the controller-ready output the PLC interlocks the line on."""

    @abc.abstractmethod
    async def set_stack_light(self, light: StackLight) -> None:
        """Show the line state on the stack light."""

    @abc.abstractmethod
    async def show_state(self, state: int, unit_mode: int) -> None:
        """Show the line's PackTags StateCurrent and UnitModeCurrent to the PLC (nothing when it has no place)."""

    def resume_after(self, previous: LineIo) -> None:
        """Before connect(): report from where previous (this device's last link) stopped, not from the present.

        Products the PLC still holds that the lost link had not reported then come late instead of never. The
        default keeps nothing: a new link starts from the PLC's present (skipped products are reported missed).
        """
        del previous
