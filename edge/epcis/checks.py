"""Checks before upload: refuse, event by event with the reason, what upstream repositories reject.

The classes of error follow those upstream systems publish (TraceLink's aggregation errors in
``reference/domain.md`` §2.8), each with its code:

| code | refused when |
|---|---|
| NOTCOMMISSIONED | a unit is packed (or sampled, destroyed, decommissioned) without being commissioned and active |
| ALREADYAGGREGATED | a child is packed while it is in a parent already |
| DUPLICATEEPC | an EPC is listed twice in one event, or commissioned twice |
| BADAGGREGATEDATE | an event about a unit is earlier than the unit's commissioning |
| EVENTTIMEAFTERNOW | an event's time is later than now (beyond a small clock tolerance) |
| MISSINGBIZLOCATION | an event has no bizLocation |
| NOTPACKED | a child is unpacked from a parent it is not in |
| WRONGBIZSTEP | packing without bizStep packing and disposition in_progress, unpacking without bizStep unpacking |

The checker is fed a batch's events in order and keeps what it learns between calls, so a batch sent in
several messages is checked as one history.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterable

    from edge.epcis.model import EpcisEvent

CLOCK_TOLERANCE = timedelta(minutes=5)
"""How far in the future an event time may be before it is refused: line PCs and upstream servers drift."""

_SGTIN = "urn:epc:id:sgtin:"


@dataclass(frozen=True, slots=True)
class Refusal:
    """One event refused: its position in the checked sequence, its ID, the error code and the reason."""

    index: int
    event_id: str | None
    code: str
    message: str

    def __str__(self) -> str:
        return f"event {self.index} ({self.code}): {self.message}"


@dataclass(slots=True)
class _Unit:
    commissioned_at: datetime
    active: bool = True


@dataclass(slots=True)
class Checker:
    """The history seen so far (commissioned units, who holds what) and the refusals found in it."""

    now: datetime
    units: dict[str, _Unit] = field(default_factory=dict)
    parent_of: dict[str, str] = field(default_factory=dict)
    checked: int = 0

    def check(self, events: Iterable[EpcisEvent]) -> list[Refusal]:
        """Check events in order after those checked before; return the refusals (an empty list: all good)."""
        refusals: list[Refusal] = []
        for event in events:
            index = self.checked
            self.checked += 1
            for code, message in self._problems(event):
                refusals.append(Refusal(index, event.event_id, code, message))
        return refusals

    def _problems(self, event: EpcisEvent) -> list[tuple[str, str]]:
        problems: list[tuple[str, str]] = []
        if event.event_time > self.now + CLOCK_TOLERANCE:
            problems.append(("EVENTTIMEAFTERNOW", (f"event time {event.event_time.isoformat()} is after now "
                                                  f"({self.now.isoformat()})")))
        if not event.biz_location:
            problems.append(("MISSINGBIZLOCATION", "the event has no bizLocation: configure epcis.biz_location"))
        listed = event.epc_list if event.type == "ObjectEvent" else event.child_epcs
        seen: set[str] = set()
        for epc in listed:
            if epc in seen:
                problems.append(("DUPLICATEEPC", f"{epc} is listed more than once"))
            seen.add(epc)
        if event.type == "ObjectEvent":
            problems += self._object(event)
        else:
            problems += self._aggregation(event)
        return problems

    def _object(self, event: EpcisEvent) -> list[tuple[str, str]]:
        problems: list[tuple[str, str]] = []
        if event.action == "ADD" and event.biz_step == "commissioning":
            for epc in event.epc_list:
                if epc in self.units:
                    problems.append(("DUPLICATEEPC", f"{epc} is commissioned a second time"))
                else:
                    self.units[epc] = _Unit(event.event_time)
            return problems
        ends = event.action == "DELETE"
        for epc in event.epc_list:
            unit = self.units.get(epc)
            if unit is None:
                # A serial printed but never commissioned is decommissioned so upstream knows it is used; a
                # container's SSCC is never commissioned, its packing stands for it.
                if epc.startswith(_SGTIN) and event.biz_step != "decommissioning":
                    problems.append(("NOTCOMMISSIONED", f"{epc} was never commissioned ({event.biz_step})"))
                continue
            if not unit.active:
                problems.append(("NOTCOMMISSIONED", f"{epc} is no longer active ({event.biz_step})"))
            elif event.event_time < unit.commissioned_at:
                problems.append(("BADAGGREGATEDATE", (f"{epc}: {event.biz_step} at {event.event_time.isoformat()} "
                                                     f"is before its commissioning at "
                                                     f"{unit.commissioned_at.isoformat()}")))
            if ends:
                unit.active = False
                self.parent_of.pop(epc, None)
        return problems

    def _aggregation(self, event: EpcisEvent) -> list[tuple[str, str]]:
        problems: list[tuple[str, str]] = []
        parent = event.parent_id or ""
        if event.action == "ADD":
            if event.biz_step != "packing" or event.disposition != "in_progress":
                problems.append(("WRONGBIZSTEP", ("aggregation needs bizStep packing and disposition in_progress, "
                                                 f"not {event.biz_step} / {event.disposition}")))
            for epc in event.child_epcs:
                problems += self._child_ready(epc, event)
                holder = self.parent_of.get(epc)
                if holder is not None:
                    problems.append(("ALREADYAGGREGATED", f"{epc} is in {holder} already"))
                else:
                    self.parent_of[epc] = parent
        elif event.action == "DELETE":
            if event.biz_step != "unpacking":
                problems.append(("WRONGBIZSTEP", f"disaggregation needs bizStep unpacking, not {event.biz_step}"))
            for epc in event.child_epcs:
                holder = self.parent_of.get(epc)
                if holder != parent:
                    where = f"it is in {holder}" if holder else "it is in no parent"
                    problems.append(("NOTPACKED", f"{epc} is unpacked from {parent}, but {where}"))
                else:
                    del self.parent_of[epc]
        return problems

    def _child_ready(self, epc: str, event: EpcisEvent) -> list[tuple[str, str]]:
        if not epc.startswith(_SGTIN):
            return []  # a case on a pallet: its SSCC is not commissioned, its packing stands for it
        unit = self.units.get(epc)
        if unit is None or not unit.active:
            state = "was never commissioned" if unit is None else "is no longer active"
            return [("NOTCOMMISSIONED", f"{epc} {state} and cannot be packed into {event.parent_id}")]
        if event.event_time < unit.commissioned_at:
            return [("BADAGGREGATEDATE", (f"{epc} is packed at {event.event_time.isoformat()}, before its "
                                         f"commissioning at {unit.commissioned_at.isoformat()}"))]
        return []


def check_events(events: Iterable[EpcisEvent], *, now: datetime) -> list[Refusal]:
    """Check one self-contained sequence of events (a whole batch, a document); return the refusals."""
    return Checker(now).check(events)
