"""The Aggregation service on a real store and the shipped catalog: cases, a pallet, rework, labels, restarts."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from edge.aggregation import AggregationError
from edge.aggregation.service import Aggregation
from edge.config.models import CatalogConfig
from edge.gs1.identifiers import has_valid_check_digit, parse_sscc
from edge.products.load import load_catalog
from edge.serials.batches import BatchService
from edge.serials.ledger import SerialLedger
from edge.serials.states import SerialState
from edge.store import Store
from tests.conftest import ROOT

TODAY = date(2026, 11, 25)
ORDER = (
    "work_order: WO-1\nproduct: aspirin-500-eu\nlot: \"L2611A\"\nexpiry: 2028-10-31\nquantity: 30\nline: line-1\n"
)


def clock() -> datetime:
    return datetime(2026, 11, 25, 10, 0, tzinfo=UTC)


async def running_batch(store: Store, commissioned: int) -> tuple[int, list[int], BatchService]:
    """An aspirin-500-eu batch (cases of 10, pallets of 40) running, with `commissioned` good units."""
    catalog = load_catalog(CatalogConfig(products=ROOT / "config" / "products", markets=ROOT / "config" / "markets"))
    batches = BatchService(SerialLedger(store, line_id="line-1"), catalog, today=lambda: TODAY)
    batch = await batches.import_work_order(ORDER, "wo.yaml", operator="mes")
    await batches.release(batch.id, operator="supervisor")
    await batches.start(batch.id, operator="op")
    ids = [row[0] for row in await batches.ledger.next_to_print(batch.id, commissioned, device="printer-1")]
    await batches.ledger.move(ids, SerialState.PRINTED, reason="printed", device="printer-1")
    await batches.ledger.move(ids, SerialState.COMMISSIONED, reason="verified", device="camera-1")
    return batch.id, ids, batches


async def test_cases_onto_a_pallet_with_rework_and_relabelling(tmp_path):
    store = Store.open(tmp_path / "state", clock=clock)
    async with store:
        batch, ids, batches = await running_batch(store, 25)
        agg = Aggregation(store, clock=clock)
        cases = []
        for start in (0, 10):
            case = await agg.open_container(batch, "case", station="case-packer")
            assert (case.capacity, case.kind) == (10, "sscc")
            # The product's company prefix (7 digits of the GTIN after its indicator) and extension digit 0.
            assert parse_sscc(case.identifier, 7).company_prefix == "4012345"
            assert case.identifier[0] == "0"
            for serial_id in ids[start : start + 10]:  # sequential packing: one unit at a time, in line order
                case = await agg.pack(case.id, serial_ids=[serial_id], station="case-packer")
            case = await agg.close_container(case.id)
            assert (case.state, case.count) == ("closed", 10)
            cases.append(case)

        # The label of the second case fails verification: voided, relabelled, never reused.
        relabelled = await agg.void_label(cases[1].id, reason="label failed verification", operator="op")
        assert relabelled.voided == cases[1].identifier
        assert relabelled.container.identifier != relabelled.voided
        assert (await agg.find(relabelled.container.identifier)).id == cases[1].id

        # A damaged unit is replaced; another is destroyed (its case reopens and takes a spare).
        await agg.replace(cases[0].id, ids[3], ids[20], operator="op", reason="carton scuffed")
        assert (await agg.parent_of_serial(ids[3])) is None
        destroyed = await agg.destroy_unit(ids[4], operator="qa", reason="crushed")
        assert destroyed.serial_ids == (ids[4],)
        assert (await agg.container(cases[0].id)).state == "open"
        with pytest.raises(AggregationError, match="holds 9 of 10"):
            await agg.close_container(cases[0].id)
        await agg.pack(cases[0].id, serial_ids=[ids[21]])
        await agg.close_container(cases[0].id)

        # Batch end: a short pallet, closed explicitly by an operator.
        pallet = await agg.open_container(batch, "pallet")
        pallet = await agg.pack(pallet.id, containers=[c.id for c in cases])
        with pytest.raises(AggregationError, match="only an operator closes a pallet short"):
            await agg.close_container(pallet.id)
        pallet = await agg.close_container(pallet.id, operator="supervisor", partial_reason="end of batch")
        assert (pallet.state, pallet.count, pallet.partial_reason) == ("closed", 2, "end of batch")

        # Disaggregating the whole pallet reopens it; the cases stay closed and intact.
        pallet = await agg.unpack(pallet.id, operator="op", reason="pallet rebuilt")
        assert (pallet.state, pallet.count) == ("open", 0)
        assert [(await agg.container(c.id)).state for c in cases] == ["closed", "closed"]
        assert (await agg.contents(cases[0].id)).serial_ids == (*ids[:3], *ids[5:10], ids[20], ids[21])

        events = await agg.events(batch)
        assert [e.action for e in events].count("pack") == 22
        assert {e.at for e in events} == {"2026-11-25T10:00:00.000000Z"}
        counts = await batches.ledger.counts(batch)
        assert (counts["commissioned"], counts["destroyed"]) == (24, 1)
        voided = relabelled.voided
        seen = {voided, *(c.identifier for c in await agg.containers_of_batch(batch))}

    # After a restart the counter continues: no SSCC is handed out twice, the voided one included.
    store = Store.open(tmp_path / "state", clock=clock)
    async with store:
        agg = Aggregation(store, clock=clock)
        fresh = [(await agg.open_container(batch, "case")).identifier for _ in range(3)]
        assert not set(fresh) & seen
        assert len(set(fresh)) == 3
        assert all(has_valid_check_digit(sscc) for sscc in fresh)
        with pytest.raises(AggregationError, match=r"voided on container .* never reused"):
            await agg.open_container(batch, "case", identifier=voided)


async def test_a_refused_change_leaves_the_store_unchanged(tmp_path):
    store = Store.open(tmp_path / "state", clock=clock)
    async with store:
        batch, ids, _ = await running_batch(store, 12)
        agg = Aggregation(store, clock=clock)
        case = await agg.open_container(batch, "case")
        await agg.pack(case.id, serial_ids=ids[:9])
        before = await agg.events(batch)
        with pytest.raises(AggregationError, match=r"cannot pack 3 more into case .*: it holds 9 of 10"):
            await agg.pack(case.id, serial_ids=ids[9:12])
        pallet = await agg.open_container(batch, "pallet")
        with pytest.raises(AggregationError, match=r"cannot pack units into pallet .*: a pallet holds cases"):
            await agg.pack(pallet.id, serial_ids=ids[9:10])
        after = await agg.events(batch)
        assert after[: len(before)] == before
        assert [e.action for e in after[len(before) :]] == ["open"]
        assert (await agg.container(case.id)).count == 9


async def test_a_packed_unit_cannot_leave_commissioned_through_the_serial_ledger(tmp_path):
    """QA sampling or destroying a packed unit must go through rework; the other moves in the round still apply."""
    store = Store.open(tmp_path / "state", clock=clock)
    async with store:
        batch, ids, batches = await running_batch(store, 12)
        agg = Aggregation(store, clock=clock)
        case = await agg.open_container(batch, "case", station="case-packer")
        await agg.pack(case.id, serial_ids=ids[:10], station="case-packer")
        with pytest.raises(Exception, match="packed in a container"):
            await batches.ledger.move([ids[0]], SerialState.SAMPLED, reason="QA sample", operator="qa")
        assert await batches.ledger.move([ids[11]], SerialState.SAMPLED, reason="QA sample", operator="qa") == 1
        assert (await agg.parent_of_serial(ids[0])) is not None
