"""The export's fast path writes, byte for byte, the documents the general path writes, in every profile."""

from __future__ import annotations

import hashlib
import io
import itertools
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from edge.aggregation import ops
from edge.epcis import jsonld, xmldoc
from edge.epcis.documents import Rendering, write_document
from edge.epcis.events import EventContext, batch_events
from edge.epcis.hashing import event_hash
from edge.epcis.model import DocumentHeader, MasterData, RenderedEvent
from edge.epcis.profiles import PartnerProfile
from edge.serials import ops as serial_ops
from edge.serials.ops import AllocationPlan, Move, NewBatch, Origin
from edge.serials.states import BatchState, SerialState
from tests.unit.test_aggregation_ops import GTIN, NOW, PRODUCT, SIMPLE, change, open_db, running_batch

S = SerialState
READ_POINT = "urn:epc:id:sgln:4012345.00003.0"
BIZ_LOCATION = "urn:epc:id:sgln:4012345.00000.0"
WORK_ORDER = "urn:epcglobal:cbv:bt:4012345000009:WO-1"
HEADER = DocumentHeader(
    creation_date=datetime(2026, 12, 4, 17, 12, 15, 70000, tzinfo=UTC), sender_gln="4012345000009",
    receiver_gln="4012345000016", instance_id="line-1.export.1",
    master_data=(MasterData(epc_class="urn:epc:idpat:sgtin:4012345.000001.*",
                            attributes=(("urn:epcglobal:cbv:mda#regulatedProductName", "A & B <10 mg>"),)),),
)
# Around Berlin's, New York's and Lord Howe's (half-hour) summer time changes, Berlin's repeated hour, a year's
# end; with milliseconds cut from microseconds.
TIMES = [
    "2026-03-29T00:59:59.999999Z", "2026-03-29T01:00:00.000000Z", "2026-10-25T00:30:00.500000Z",
    "2026-10-25T01:30:00.500000Z", "2026-10-25T00:59:59.999000Z", "2026-10-25T01:00:00.000999Z",
    "2026-11-01T05:30:00.123456Z", "2026-11-01T06:30:00.654321Z", "2026-04-04T15:00:00.001000Z",
    "2026-10-03T15:30:00.010000Z", "2026-12-31T23:59:59.999999Z", "2027-01-01T00:00:00.000000Z",
]
ZONES = ["Europe/Berlin", "UTC", "America/New_York", "Asia/Kolkata", "Australia/Lord_Howe"]
SYNTAXES = {
    "json-ld 2.0": ("2.0", "json-ld", "urn"),
    "json-ld 2.0 digital link": ("2.0", "json-ld", "digital_link"),
    "xml 2.0": ("2.0", "xml", "urn"),
    "xml 2.0 digital link": ("2.0", "xml", "digital_link"),
    "xml 1.2": ("1.2", "xml", "urn"),
}
# SHA-256 of each syntax's documents (as documents() lists them) written by the implementation before the fast
# path: the general path must stay what it was, not only agree with the fast one.
BEFORE = {
    "json-ld 2.0": "a16b6934cedaa8b533fd2016c87234dda0692d076687817262f41b3b153102f8",
    "json-ld 2.0 digital link": "2b9e7e130f889b93d8cdc7c49f5810a322fafc75bdeae70c7d4fed4776d2aae6",
    "xml 2.0": "df8cd34c544c25d647a5618fd0bea646d8cd61c36c301177b084d9544a8cb65f",
    "xml 2.0 digital link": "fcee2ea75728c6339baaee3617261a901d8c5ad70ad606c099c394cedf833c29",
    "xml 1.2": "824ac8a4ad7d564205f0bc8033077f596f6e525ba5ac024983992a933651372a",
}


def _rework_batch(conn) -> int:
    """A batch commissioned at once, then packed, relabelled, reworked, sampled and destroyed at various times."""
    batch_id, ids = running_batch(conn, units=40, rejected=3, product=SIMPLE)
    times = itertools.cycle(TIMES)
    do = lambda fn, *a, **k: change(conn, fn, *a, now=next(times), **k)  # noqa: E731
    case1, case2, case3 = (do(ops.open_container, batch_id, "case") for _ in range(3))
    pallet = do(ops.open_container, batch_id, "pallet")
    do(ops.pack, case1, serial_ids=ids[0:4])
    do(ops.pack, case2, serial_ids=ids[4:8])
    do(ops.pack, case3, serial_ids=ids[12:16])
    do(ops.void_label, case1, reason="label unreadable", operator="ana")
    do(ops.replace, case1, ids[0], ids[8], operator="ana", reason="damaged carton")
    do(ops.close_container, case1)
    do(ops.unpack, case2, serial_ids=[ids[7]], operator="ana", reason="QA pull")
    do(ops.pack, case2, serial_ids=[ids[9]])
    do(ops.close_container, case2)
    do(ops.pack, pallet, containers=[case1, case2])
    do(ops.close_container, pallet)
    do(ops.destroy_unit, ids[10], operator="ana", reason="dropped")
    do(ops.destroy_container, case3, operator="ana", reason="crushed <&>")
    for unit in ids[17:30]:
        do(serial_ops.apply_moves, [Move([unit], S.SAMPLED, "QA")])
    do(serial_ops.apply_moves, [Move([ids[17], ids[18], ids[38]], S.DESTROYED, "incinerated")])
    do(serial_ops.apply_moves, [Move(ids[30:34], S.SAMPLED, "retain sample")])
    return batch_id


def _line_batch(conn) -> int:
    """A batch judged unit by unit (as a line does), some with serials to escape, bundled, cased and palletised."""
    new = NewBatch(line_id="line-2", work_order="WO-2", product_id=str(PRODUCT["id"]), gtin=GTIN, lot="L2 & <x>",
                   expiry="281000", quantity=40, market="eu-fmd", serial_source="local", product=PRODUCT, order={})
    batch_id = change(conn, serial_ops.create_batch, new, now=NOW, operator="mes")
    while change(conn, serial_ops.release_batch, batch_id, AllocationPlan(40, Origin.SEQUENTIAL, sequential_width=12),
                 now=NOW, operator="supervisor"):
        pass
    change(conn, serial_ops.move_batch, batch_id, BatchState.RUNNING, now=NOW, operator="op", reason="start")
    ids = [row[0] for row in change(conn, serial_ops.next_to_print, batch_id, 40, device="printer-1", now=NOW)]
    # Serials a URN and a Digital Link escape, XML escapes, or the longest plain one: the general path writes them.
    for serial_id, serial in zip(ids[1:4], ["A/b%1&<'\">", "x!y(z)*+,-.:;=?_", "ABCDEFGHIJKLMNOPQRST"], strict=True):
        change(conn, lambda c, i=serial_id, s=serial: c.execute("UPDATE serial SET serial = ? WHERE id = ?", (s, i)))
    change(conn, serial_ops.apply_moves, [Move(ids, S.PRINTED, "printed")], NOW)
    times = itertools.cycle(TIMES)
    good = []
    for i, unit in enumerate(ids):
        rejected = i % 7 == 6
        change(conn, serial_ops.apply_moves, [Move([unit], S.REJECTED if rejected else S.COMMISSIONED,
                                                   "grade D" if rejected else "verified", device="cam-1")],
               next(times))
        if not rejected:
            good.append(unit)
    do = lambda fn, *a, **k: change(conn, fn, *a, now=next(times), **k)  # noqa: E731
    bundles = []
    for pair in (good[0:2], good[2:4], good[4:6], good[6:8], good[8:10], good[10:12]):
        bundle = do(ops.open_container, batch_id, "bundle")
        do(ops.pack, bundle, serial_ids=pair)
        do(ops.close_container, bundle)
        bundles.append(bundle)
    cases = []
    for three in (bundles[0:3], bundles[3:6]):
        case = do(ops.open_container, batch_id, "case")
        do(ops.pack, case, containers=three)
        cases.append(case)
    do(ops.void_label, cases[1], reason="smudged", operator="bo")
    for case in cases:
        do(ops.close_container, case)
    pallet = do(ops.open_container, batch_id, "pallet")
    do(ops.pack, pallet, containers=cases)
    do(ops.close_container, pallet)
    do(serial_ops.apply_moves, [Move(good[20:22], S.SAMPLED, "QA")])
    do(serial_ops.apply_moves, [Move(good[20:21], S.DESTROYED, "QA")])
    return batch_id


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    conn = open_db(tmp_path_factory.mktemp("fastpath"))
    batches = (_rework_batch(conn), _line_batch(conn))
    yield conn, batches
    conn.close()


def documents(syntax: str):
    """Yield (profile, event context) for syntax: the options alone and together, in each zone."""
    version, kind, identifiers = SYNTAXES[syntax]
    for extensions, event_ids, work_order, omit, header in itertools.product((False, True), repeat=5):
        rare = work_order or omit or header
        if rare and not (extensions and event_ids):
            continue
        profile = PartnerProfile(
            id="p", name="p", version=version, syntax=kind, identifiers=identifiers, extensions=extensions,
            event_ids=event_ids, work_order_transaction=work_order, rejects="omit" if omit else "decommission",
            master_data=header, sbdh=header, receiver_gln="4012345000016" if header else None,
            max_events_per_document=10_000,
        )
        for zone in ZONES[:1] if rare else ZONES:
            yield profile, EventContext(read_point=READ_POINT, biz_location=BIZ_LOCATION, zone=ZoneInfo(zone),
                                        extensions=extensions, rejects=profile.rejects,
                                        biz_transaction=WORK_ORDER if work_order else None, event_ids=event_ids)


def written(conn, batch_id: int, profile: PartnerProfile, ctx: EventContext, *, fast: bool, **kwargs) -> bytes:
    """Return the batch's document; fast False hands its events over one by one, the general path's way."""
    events = batch_events(conn, batch_id, ctx, **kwargs)
    out = io.BytesIO()
    write_document(out, HEADER, events if fast else (event for event in events), profile)
    return out.getvalue()


@pytest.mark.parametrize("syntax", SYNTAXES)
def test_the_fast_path_writes_what_the_general_path_writes(store, syntax):
    conn, batches = store
    digest = hashlib.sha256()
    for profile, ctx in documents(syntax):
        for batch_id in batches:
            fast = written(conn, batch_id, profile, ctx, fast=True)
            assert fast == written(conn, batch_id, profile, ctx, fast=False), (syntax, profile, ctx, batch_id)
            digest.update(fast)
    assert digest.hexdigest() == BEFORE[syntax]


@pytest.mark.parametrize("syntax", SYNTAXES)
def test_the_fast_path_writes_every_event_of_these_batches(store, syntax):
    conn, batches = store
    version, kind, identifiers = SYNTAXES[syntax]
    profile = PartnerProfile(id="p", name="p", version=version, syntax=kind, identifiers=identifiers,
                             extensions=True)
    ctx = EventContext(read_point=READ_POINT, biz_location=BIZ_LOCATION, zone=ZoneInfo("Europe/Berlin"),
                       extensions=True)
    counts = []
    for batch_id in batches:
        fragments = (jsonld.Fragments if kind == "json-ld" else xmldoc.Fragments)(Rendering(profile, HEADER))
        with batch_events(conn, batch_id, ctx).prerendered(fragments) as items:
            kinds = [isinstance(item, RenderedEvent) for item in items]
        counts.append((kinds.count(True), kinds.count(False)))
    assert counts == [(31, 0), (53, 0)]  # (written by the fast path, left to the general one)


def test_another_hasher_leaves_every_event_to_the_general_path(store):
    conn, (batch_id, _) = store
    profile = PartnerProfile(id="p", name="p", version="2.0", syntax="json-ld", identifiers="urn")
    ctx = EventContext(read_point=READ_POINT, biz_location=BIZ_LOCATION, zone=ZoneInfo("Europe/Berlin"))

    def hasher(event):
        return event_hash(event).replace("sha-256", "sha-256x")

    fast = written(conn, batch_id, profile, ctx, fast=True, hasher=hasher)
    assert fast == written(conn, batch_id, profile, ctx, fast=False, hasher=hasher)
    assert b"sha-256x" in fast
