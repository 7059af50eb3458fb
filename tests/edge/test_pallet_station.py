"""The pallet station on a real store: closed cases onto the current pallet, every wrong scan refused by name."""

from __future__ import annotations

from typing import TYPE_CHECKING

from edge.aggregation.pallets import PalletStation
from edge.aggregation.service import Aggregation
from edge.store import Store
from tests.edge import test_aggregation_service as service_tests
from tests.edge.test_aggregation_service import clock, running_batch

if TYPE_CHECKING:
    from edge.aggregation.ops import ContainerRow


class Labeller:
    """Stands in for the pallet label station's queue: records what was handed over (a `Completed`)."""

    def __init__(self) -> None:
        self.handed: list[tuple[ContainerRow, str | None, str | None]] = []

    async def __call__(self, box: ContainerRow, operator: str | None, reason: str | None) -> None:
        self.handed.append((box, operator, reason))


async def closed_cases(agg: Aggregation, batch: int, units: list[int], cases: int) -> list[ContainerRow]:
    made = []
    for n in range(cases):
        case = await agg.open_container(batch, "case")
        await agg.pack(case.id, serial_ids=units[n * 10 : n * 10 + 10])
        made.append(await agg.close_container(case.id))
    return made


def label(sscc: str) -> bytes:
    """A case label's GS1-128 as a wedge scanner sends it, with its symbology identifier."""
    return b"]C100" + sscc.encode()


async def test_closed_cases_go_onto_one_pallet_and_each_wrong_scan_is_refused(tmp_path):
    store = Store.open(tmp_path / "state", clock=clock)
    async with store:
        batch, units, _ = await running_batch(store, 30)
        agg = Aggregation(store, clock=clock)
        labeller = Labeller()
        station = PalletStation(agg, completed=labeller)
        first, second = await closed_cases(agg, batch, units, 2)
        open_case = await agg.open_container(batch, "case")
        await agg.pack(open_case.id, serial_ids=units[20:25])

        accepted = await station.scan(label(first.identifier))
        assert accepted.outcome == "accepted"
        pallet = station.current
        assert pallet is not None
        assert (pallet.level, pallet.count, pallet.capacity) == ("pallet", 1, 40)

        refusals = {
            "again": await station.scan(label(first.identifier)),
            "open": await station.scan(label(open_case.identifier)),
            "pallet": await station.scan(label(pallet.identifier)),
            "unit": await station.scan(b"]d2010401234500001621ABC"),
            "garbage": await station.scan(b"\x00\xffnoise"),
            "unknown": await station.scan(label("040123459999999996")),
        }
        assert {k: m.outcome for k, m in refusals.items()} == dict.fromkeys(refusals, "refused")
        assert "already on this pallet" in refusals["again"].text
        assert "its label is not verified yet" in refusals["open"].text
        assert "is not a case" in refusals["pallet"].text
        assert "carries no SSCC" in refusals["unit"].text
        assert "not a GS1 code" in refusals["garbage"].text
        assert "no container is identified by 040123459999999996" in refusals["unknown"].text

        # A voided SSCC (a label that failed verification) says so: the case carries a newer label.
        relabelled = await agg.void_label(second.id, reason="smudged", operator="anna")
        voided = await station.scan(label(relabelled.voided))
        assert "voided" in voided.text
        assert (await station.scan(label(relabelled.container.identifier))).outcome == "accepted"
        assert station.current is not None
        assert station.current.count == 2

        # Nothing was packed by the refused scans: the pallet holds exactly the two cases.
        contents = await agg.contents(pallet.id)
        assert contents.container_ids == (first.id, second.id)
        assert labeller.handed == []

        closed = await station.close_short(operator="anna", reason="end of batch")
        assert [(b.id, o, r) for b, o, r in labeller.handed] == [(closed.id, "anna", "end of batch")]
        assert station.current is None
        assert list(station.messages)[-1].outcome == "info"


async def test_a_full_pallet_goes_to_its_labeller_and_the_next_case_opens_a_new_one(tmp_path, monkeypatch):
    # aspirin-500-eu: 40 cases of 10 per pallet; a batch of 410 fills one and starts the next.
    monkeypatch.setattr(service_tests, "ORDER", service_tests.ORDER.replace("quantity: 30", "quantity: 410"))
    store = Store.open(tmp_path / "state", clock=clock)
    async with store:
        batch, units, _ = await running_batch(store, 410)
        agg = Aggregation(store, clock=clock)
        labeller = Labeller()
        station = PalletStation(agg, completed=labeller)
        cases = await closed_cases(agg, batch, units, 41)
        for case in cases[:39]:
            assert (await station.scan(label(case.identifier))).outcome == "accepted"
        assert labeller.handed == []
        message = await station.scan(label(cases[39].identifier))
        assert "pallet full" in message.text
        [(full, operator, reason)] = labeller.handed
        assert (full.count, full.capacity, operator, reason) == (40, 40, None, None)
        assert station.current is None
        await station.scan(label(cases[40].identifier))
        assert station.current is not None
        assert (station.current.id != full.id, station.current.count) == (True, 1)
