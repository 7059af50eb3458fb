"""Sequential case packing: verified units enter the current case in line order until it is full.

The inspection service tells the packer of each good pack once it has passed the reject station (the last
point where it could leave the line). The packer puts that pack's serial into the batch's current open case,
opening one (with a fresh SSCC) when there is none. A full case goes to its label station (`completed`): it
counts as closed only once its label is printed and verified by a scanner. At the batch's end an operator
closes the last case short (`close_short`). A product without a case level in its hierarchy is not packed here.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any, Final

import structlog

from edge.aggregation import AggregationError
from edge.aggregation.pallets import StationMessage

if TYPE_CHECKING:
    from edge.aggregation.ops import ContainerRow
    from edge.aggregation.service import Aggregation
    from edge.aggregation.stations import Completed
    from edge.line.verdict import Verdict
    from edge.serials.ledger import SerialLedger

STATION: Final = "case-packer"
UNPACKED_KEPT: Final = 1000
"""Good packs that could not be packed, kept for the operator; more than this and the line has a bigger problem."""


class SequentialPacker:
    """Packs each good pack's serial into the current case of the running batch, in line order."""

    def __init__(
        self, aggregation: Aggregation, ledger: SerialLedger, *, completed: Completed, station: str = STATION
    ) -> None:
        self.aggregation = aggregation
        self.station = station
        self.unpacked: deque[tuple[int, str]] = deque(maxlen=UNPACKED_KEPT)
        """Good packs that could not be packed: (serial id, why), for the operator."""
        self.messages: deque[StationMessage] = deque(maxlen=50)
        """What the packer told the operator (refusals, cases closed short)."""
        self._completed = completed
        self._ledger = ledger
        self._case: ContainerRow | None = None
        self._not_packed: set[int] = set()
        self._log = structlog.get_logger("lineside.packing").bind(station=station)

    async def on_passed(self, product: int, verdict: Verdict) -> None:
        """Put the serial of a good pack that passed the reject station into the current case."""
        if verdict.serial_id is None:
            return
        batch = await self._ledger.active_batch()
        if batch is None:
            self.unpacked.append((verdict.serial_id, "no batch is running"))
            return
        if batch.id in self._not_packed:
            return
        try:
            case = self._case
            if case is None or case.batch_id != batch.id:
                try:
                    case = await self.aggregation.open_container(batch.id, "case", station=self.station)
                except AggregationError as err:
                    # Said once per batch: a product packed without cases (or a recipe problem) is not an alarm
                    # on every pack.
                    self._not_packed.add(batch.id)
                    self._log.warning("batch not packed into cases", batch=batch.id, reason=str(err))
                    return
                self._log.info("case opened", case=case.identifier, capacity=case.capacity)
                # Kept at once: a pack the store then refuses is packed again into this case, not a second one.
                self._case = case
            case = await self.aggregation.pack(case.id, serial_ids=[verdict.serial_id], station=self.station)
        except AggregationError as err:
            # The pack is on its way to the case packer either way: an operator must put it right (rework).
            self._log.error("good pack not packed", product=product, serial_id=verdict.serial_id, error=str(err))
            self.unpacked.append((verdict.serial_id, str(err)))
            self.messages.append(StationMessage("refused", f"pack {product} not packed: {err}"))
            return
        if case.count >= case.capacity:
            self._log.info("case full; to the labeller", case=case.identifier, count=case.count)
            self._case = None
            await self._completed(case, None, None)
        else:
            self._case = case

    def resume(self, case: ContainerRow) -> None:
        """Go on filling an open case (after a restart)."""
        self._case = case

    async def close_short(self, *, operator: str, reason: str) -> ContainerRow:
        """Hand the current case, short of capacity, to its label station with the operator's reason."""
        case = self._case
        if case is None:
            raise AggregationError(f"{self.station} has no case open")
        if not operator.strip() or not reason.strip():
            raise AggregationError(f"closing {case.name} short needs an operator and a reason")
        self._case = None
        await self._completed(case, operator, reason)
        self.messages.append(StationMessage("info", f"{case.name} closed short by {operator}: {reason}"))
        self._log.info("case closed short", case=case.name, count=case.count, operator=operator, reason=reason)
        return case

    def describe(self) -> dict[str, Any]:
        """Return the packer's state for the line status."""
        case = self._case
        return {
            "station": self.station,
            "mode": "sequential",
            "case": None if case is None else {"sscc": case.identifier, "count": case.count,
                                               "capacity": case.capacity},
            "unpacked": len(self.unpacked),
            "last": [{"outcome": m.outcome, "text": m.text} for m in list(self.messages)[-5:]],
        }

    @property
    def current(self) -> ContainerRow | None:
        """The case being filled, if any."""
        return self._case
