"""Sequential case packing: verified units enter the current case in line order until it is full.

The inspection service tells the packer of each good pack once it has passed the reject station (the last
point where it could leave the line). The packer puts that pack's serial into the batch's current open case,
opening one (with a fresh SSCC) when there is none. A full case waits for its label: it counts as closed only
once the label is printed and verified by a scanner (`awaiting_label`), which the label station closes.
A product without a case level in its hierarchy is not packed here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

import structlog

from edge.aggregation import AggregationError

if TYPE_CHECKING:
    from edge.aggregation.ops import ContainerRow
    from edge.aggregation.service import Aggregation
    from edge.line.verdict import Verdict
    from edge.serials.ledger import SerialLedger

STATION: Final = "case-packer"


class SequentialPacker:
    """Packs each good pack's serial into the current case of the running batch, in line order."""

    def __init__(self, aggregation: Aggregation, ledger: SerialLedger, *, station: str = STATION) -> None:
        self.aggregation = aggregation
        self.station = station
        self.awaiting_label: list[ContainerRow] = []
        """Full cases waiting for their label to be printed and verified, oldest first."""
        self.unpacked: list[tuple[int, str]] = []
        """Good packs that could not be packed: (serial id, why), for the operator."""
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
            case = await self.aggregation.pack(case.id, serial_ids=[verdict.serial_id], station=self.station)
        except AggregationError as err:
            # The pack is on its way to the case packer either way: an operator must put it right (rework).
            self._log.error("good pack not packed", product=product, serial_id=verdict.serial_id, error=str(err))
            self.unpacked.append((verdict.serial_id, str(err)))
            return
        if case.count >= case.capacity:
            self._log.info("case full; awaiting its label", case=case.identifier, count=case.count)
            self.awaiting_label.append(case)
            self._case = None
        else:
            self._case = case

    @property
    def current(self) -> ContainerRow | None:
        """The case being filled, if any."""
        return self._case
