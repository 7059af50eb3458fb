"""The pallet station: each closed case whose label is scanned goes onto the current pallet until it is full.

At the palletiser a fixed or hand scanner reads every case label (the GS1-128 or the DataMatrix: either
carries the SSCC, AI 00). A case is taken only when it is closed (its label was printed and verified) and
on no pallet yet; the first case of a batch opens a pallet with a fresh SSCC. A full pallet goes to the
pallet label station; a partial pallet at the batch's end is closed by an operator with a reason
(`close_short`). Every scan gets an answer for the operator (`messages`), and a refused scan never stops
the scanner.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Literal

import structlog

from drivers.base import CodeRead, DeviceEvent
from edge.aggregation import AggregationError
from edge.aggregation.stations import sscc_of

if TYPE_CHECKING:
    from edge.aggregation.ops import ContainerRow
    from edge.aggregation.service import Aggregation
    from edge.aggregation.stations import Completed

__all__ = ["PalletStation", "StationMessage"]

STATION: Final = "palletiser"
MESSAGES: Final = 50
"""Answers to scans kept for the HMI."""


@dataclass(frozen=True, slots=True)
class StationMessage:
    """What a station told its operator about one scan or command."""

    outcome: Literal["accepted", "refused", "info"]
    text: str


class PalletStation:
    """Puts scanned, closed cases onto the current pallet and hands full pallets to their label station."""

    def __init__(self, aggregation: Aggregation, *, completed: Completed, station: str = STATION) -> None:
        self.aggregation = aggregation
        self.station = station
        self.messages: deque[StationMessage] = deque(maxlen=MESSAGES)
        """The latest answers to scans, oldest first."""
        self._completed = completed
        self._pallet: ContainerRow | None = None
        self._log = structlog.get_logger("lineside.packing").bind(station=station)

    @property
    def current(self) -> ContainerRow | None:
        """The pallet being built, if any."""
        return self._pallet

    def resume(self, pallet: ContainerRow) -> None:
        """Go on building an open pallet (after a restart)."""
        self._pallet = pallet

    async def on_event(self, event: DeviceEvent) -> None:
        """Take one scan of the pallet scanner; other events are not for this station."""
        if isinstance(event, CodeRead):
            await self.scan(event.data)

    async def scan(self, data: bytes) -> StationMessage:
        """Put the scanned case onto the current pallet, or say why not."""
        try:
            message = await self._scan(data)
        except AggregationError as err:
            message = StationMessage("refused", str(err))
            self._log.warning("case scan refused", reason=str(err))
        self.messages.append(message)
        return message

    async def close_short(self, *, operator: str, reason: str) -> ContainerRow:
        """Hand the current pallet, short of capacity, to its label station with the operator's reason."""
        pallet = self._pallet
        if pallet is None:
            raise AggregationError(f"{self.station} has no pallet open")
        if not operator.strip() or not reason.strip():
            raise AggregationError(f"closing {pallet.name} short needs an operator and a reason")
        pallet = await self.aggregation.container(pallet.id)
        if pallet.count == 0:
            raise AggregationError(f"cannot close {pallet.name}: it is empty")
        self._pallet = None
        await self._completed(pallet, operator, reason)
        self.messages.append(StationMessage("info", f"{pallet.name} closed short by {operator}: {reason}"))
        self._log.info("pallet closed short", pallet=pallet.name, count=pallet.count, operator=operator, reason=reason)
        return pallet

    def describe(self) -> dict[str, Any]:
        """Return the station's state for the line status."""
        pallet = self._pallet
        return {
            "station": self.station,
            "pallet": None if pallet is None else {"sscc": pallet.identifier, "count": pallet.count,
                                                   "capacity": pallet.capacity},
            "last": [{"outcome": m.outcome, "text": m.text} for m in list(self.messages)[-5:]],
        }

    async def _scan(self, data: bytes) -> StationMessage:
        case = await self.aggregation.find(sscc_of(data))
        if case.level != "case":
            raise AggregationError(f"{case.name} is not a case: scan case labels at {self.station}")
        if case.state != "closed":
            why = "its label is not verified yet" if case.state == "open" else f"it is {case.state}"
            raise AggregationError(f"{case.name} cannot go on a pallet: {why}")
        pallet = self._pallet
        if case.parent_id is not None:
            where = "this pallet" if pallet is not None and case.parent_id == pallet.id else f"#{case.parent_id}"
            raise AggregationError(f"{case.name} is already on {where}")
        if pallet is None or pallet.batch_id != case.batch_id:
            if pallet is not None:
                raise AggregationError(
                    f"{case.name} is of another batch than {pallet.name}: close that pallet first"
                )
            pallet = await self.aggregation.open_container(case.batch_id, "pallet", station=self.station)
            self._log.info("pallet opened", pallet=pallet.name, capacity=pallet.capacity)
        pallet = await self.aggregation.pack(pallet.id, containers=[case.id], station=self.station)
        self._log.info("case on pallet", case=case.identifier, pallet=pallet.identifier, count=pallet.count)
        if pallet.count >= pallet.capacity:
            self._pallet = None
            await self._completed(pallet, None, None)
            return StationMessage("accepted", f"{case.name} on {pallet.name}: pallet full, to the labeller")
        self._pallet = pallet
        return StationMessage("accepted", f"{case.name} on {pallet.name} ({pallet.count} of {pallet.capacity})")
