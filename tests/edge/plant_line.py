"""A small packed batch on a real store, for the plant-message tests: cases, a pallet, rejects, a pause, close."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from edge.aggregation.service import Aggregation
from edge.config.models import CatalogConfig
from edge.products.load import load_catalog
from edge.serials.batches import BatchService
from edge.serials.ledger import SerialLedger
from edge.serials.states import SerialState
from edge.store import Store
from tests.conftest import ROOT

TODAY = date(2026, 11, 25)
ORDER = (
    "work_order: WO-7\nproduct: aspirin-500-eu\nlot: \"L2611B\"\nexpiry: 2028-10-31\nquantity: 40\nline: line-1\n"
)


@dataclass
class Ticker:
    """A store clock that moves one second per reading, so every row has its own time."""

    now: datetime = field(default_factory=lambda: datetime(2026, 11, 25, 8, 0, tzinfo=UTC))

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


@dataclass
class PackedBatch:
    """What the line did, as the tests check it against the messages."""

    batch_id: int
    batches: BatchService
    agg: Aggregation
    cases: list[int]
    pallet: int
    good: list[int]
    rejected: list[int]


async def pack_batch(store: Store, clock: Ticker) -> PackedBatch:
    """Run WO-7 to its pallet: 25 good (two full cases on a pallet, a short loose case), 3 rejected, 2 left sent."""
    catalog = load_catalog(CatalogConfig(products=ROOT / "config" / "products", markets=ROOT / "config" / "markets"))
    batches = BatchService(SerialLedger(store, line_id="line-1"), catalog, today=lambda: TODAY)
    batch = await batches.import_work_order(ORDER, "wo.yaml", operator="mes")
    await batches.release(batch.id, operator="supervisor")
    await batches.start(batch.id, operator="op")
    sent = [row[0] for row in await batches.ledger.next_to_print(batch.id, 30, device="printer-1")]
    ids = sent[:28]  # two stay in the printer's buffer: in doubt at completion, decommissioned at close
    await batches.ledger.move(ids, SerialState.PRINTED, reason="printed", device="printer-1")
    good, rejected = ids[:25], ids[25:]
    await batches.ledger.move(good, SerialState.COMMISSIONED, reason="verified", device="camera-1")
    await batches.ledger.move(rejected[:2], SerialState.REJECTED, reason="grade below C", device="camera-1")
    await batches.ledger.move(rejected[2:], SerialState.REJECTED, reason="wrong code", device="camera-1")
    await batches.pause(batch.id, operator="op")
    await batches.start(batch.id, operator="op")
    agg = Aggregation(store, clock=clock)
    cases = []
    for start in (0, 10, 20):
        case = await agg.open_container(batch.id, "case", station="case-packer")
        await agg.pack(case.id, serial_ids=good[start : start + 10])
        short = start == 20
        await agg.close_container(case.id, operator="op" if short else None,
                                  partial_reason="end of batch" if short else None)
        cases.append(case.id)
    pallet = await agg.open_container(batch.id, "pallet")
    await agg.pack(pallet.id, containers=cases[:2])
    await agg.close_container(pallet.id, operator="supervisor", partial_reason="end of batch")
    return PackedBatch(batch.id, batches, agg, cases, pallet.id, good, rejected)


async def close_batch(packed: PackedBatch) -> None:
    """Complete and close the batch (the two in doubt decommissioned, the serials never sent returned)."""
    await packed.batches.complete(packed.batch_id, operator="supervisor")
    await packed.batches.decommission_in_doubt(packed.batch_id, reason="left in the printer", operator="qa")
    await packed.batches.close(packed.batch_id, operator="supervisor")
