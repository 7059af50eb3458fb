"""Events the line's own services raise for the control layer (PackML acts on them; the log shows them)."""

from __future__ import annotations

from dataclasses import dataclass

from drivers.base import DeviceEvent


@dataclass(frozen=True, slots=True, kw_only=True)
class LineHoldRequest(DeviceEvent):
    """A station asks the line to hold: it cannot go on safely (printer fault, link lost, no serials)."""

    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class LineResumable(DeviceEvent):
    """The station that asked for a hold can go on again (the operator still decides to unhold)."""

    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class LineStopRequest(DeviceEvent):
    """A station asks the line to stop: an alarm (unconfirmed reject, tracking broken, too many rejects)."""

    alarm: str
    """The alarm's kind, like reject-not-confirmed."""
    reason: str
