"""EPCIS events rendered from a real store: every kind of change, in order, checked before upload."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from edge.aggregation import ops
from edge.epcis.checks import Checker, check_events
from edge.epcis.events import EpcisError, EventContext, batch_events, outbox_range
from edge.epcis.model import EpcisEvent
from edge.errors import BatchError, ReconciliationError
from edge.serials import ops as serial_ops
from edge.serials.ops import Move
from edge.serials.states import BatchState, SerialState
from tests.unit.test_aggregation_ops import SIMPLE, change, open_db, running_batch

S = SerialState
NOW = "2026-11-25T10:00:00.000000Z"
LATER = "2026-11-25T10:05:00.123456Z"
READ_POINT = "urn:epc:id:sgln:4012345.00003.0"
BIZ_LOCATION = "urn:epc:id:sgln:4012345.00000.0"
CTX = EventContext(read_point=READ_POINT, biz_location=BIZ_LOCATION, zone=ZoneInfo("Europe/Berlin"),
                   event_ids=False)
CHECK_NOW = datetime(2026, 11, 25, 12, tzinfo=UTC)


@pytest.fixture
def db(tmp_path):
    conn = open_db(tmp_path)
    yield conn
    conn.close()


def shape(events):
    return [(e.type, e.action, e.biz_step, e.disposition) for e in events]


def serial_of(conn, serial_id):
    return conn.execute("SELECT serial FROM serial WHERE id = ?", (serial_id,)).fetchone()[0]


def sgtin(conn, serial_id):
    return f"urn:epc:id:sgtin:4012345.000001.{serial_of(conn, serial_id)}"


def test_commissioning_and_rejects_carry_lot_expiry_place_and_local_time(db):
    batch_id, ids = running_batch(db, units=6, rejected=2)
    events = list(batch_events(db, batch_id, CTX))
    assert shape(events) == [
        ("ObjectEvent", "ADD", "commissioning", "active"),
        ("ObjectEvent", "DELETE", "decommissioning", "inactive"),
    ]
    commissioning, rejects = events
    assert commissioning.epc_list == tuple(sgtin(db, i) for i in ids[:4])
    assert rejects.epc_list == tuple(sgtin(db, i) for i in ids[4:])
    assert commissioning.ilmd is not None
    assert commissioning.ilmd.lot_number == "L1"
    assert commissioning.ilmd.item_expiration_date == "2028-10-31"
    assert commissioning.read_point == READ_POINT
    assert commissioning.biz_location == BIZ_LOCATION
    assert commissioning.event_time_zone_offset == "+01:00"  # Berlin in November
    assert commissioning.event_time == datetime(2026, 11, 25, 10, tzinfo=UTC)
    assert commissioning.event_time.utcoffset() == timedelta(hours=1)
    assert commissioning.event_id is None
    assert not check_events(events, now=CHECK_NOW)


def test_rejects_can_be_left_out_by_profile(db):
    batch_id, _ = running_batch(db, units=4, rejected=1)
    ctx = EventContext(read_point=READ_POINT, biz_location=BIZ_LOCATION, zone=UTC, rejects="omit", event_ids=False)
    assert shape(batch_events(db, batch_id, ctx)) == [("ObjectEvent", "ADD", "commissioning", "active")]


def test_summer_time_offset_and_milliseconds_truncated(db):
    batch_id, ids = running_batch(db, units=2)
    change(db, serial_ops.apply_moves, [Move([ids[0]], S.SAMPLED, "QA sample")], "2026-07-01T08:00:00.999999Z")
    events = list(batch_events(db, batch_id, CTX))
    sample = events[-1]
    assert sample.event_time_zone_offset == "+02:00"
    assert sample.event_time == datetime(2026, 7, 1, 8, 0, 0, 999000, tzinfo=UTC)


def test_every_aggregation_change_in_order_and_the_history_checks_clean(db):
    batch_id, ids = running_batch(db, units=12, product=SIMPLE)
    do = lambda fn, *a, **k: change(db, fn, *a, now=LATER, **k)  # noqa: E731
    case1 = do(ops.open_container, batch_id, "case")
    case2 = do(ops.open_container, batch_id, "case")
    pallet = do(ops.open_container, batch_id, "pallet")
    do(ops.pack, case1, serial_ids=ids[0:4])
    do(ops.pack, case2, serial_ids=ids[4:8])
    old_sscc = ops.container(db, case1).identifier
    new_sscc = do(ops.void_label, case1, reason="label unreadable", operator="ana")
    do(ops.replace, case1, ids[0], ids[8], operator="ana", reason="damaged carton")
    do(ops.close_container, case1)
    do(ops.unpack, case2, serial_ids=[ids[7]], operator="ana", reason="QA pull")
    do(ops.pack, case2, serial_ids=[ids[9]])
    do(ops.close_container, case2)
    do(ops.pack, pallet, containers=[case1, case2])
    do(ops.close_container, pallet)
    do(ops.destroy_unit, ids[10], operator="ana", reason="dropped")
    change(db, serial_ops.apply_moves, [Move([ids[11]], S.SAMPLED, "retain sample")], LATER)

    events = list(batch_events(db, batch_id, CTX))
    assert shape(events) == [
        ("ObjectEvent", "ADD", "commissioning", "active"),
        ("AggregationEvent", "ADD", "packing", "in_progress"),  # case 1, old SSCC
        ("AggregationEvent", "ADD", "packing", "in_progress"),  # case 2
        ("AggregationEvent", "DELETE", "unpacking", None),  # void: out of the old SSCC
        ("AggregationEvent", "ADD", "packing", "in_progress"),  # ... into the new one
        ("AggregationEvent", "DELETE", "unpacking", None),  # replace: the damaged unit out
        ("AggregationEvent", "ADD", "packing", "in_progress"),  # ... its replacement in
        ("AggregationEvent", "DELETE", "unpacking", None),  # QA pull from case 2
        ("AggregationEvent", "ADD", "packing", "in_progress"),  # refill case 2
        ("AggregationEvent", "ADD", "packing", "in_progress"),  # both cases on the pallet
        ("ObjectEvent", "DELETE", "destroying", "destroyed"),
        ("ObjectEvent", "OBSERVE", "sampling", "non_sellable_other"),
    ]
    old_urn = f"urn:epc:id:sscc:4012345.{old_sscc[0]}{old_sscc[8:17]}"
    new_urn = f"urn:epc:id:sscc:4012345.{new_sscc[0]}{new_sscc[8:17]}"
    assert events[1].parent_id == old_urn
    assert events[1].child_epcs == tuple(sgtin(db, i) for i in ids[0:4])
    assert (events[3].parent_id, events[4].parent_id) == (old_urn, new_urn)
    assert events[3].child_epcs == events[4].child_epcs == tuple(sgtin(db, i) for i in ids[0:4])
    assert events[5].child_epcs == (sgtin(db, ids[0]),)
    assert events[6].child_epcs == (sgtin(db, ids[8]),)
    assert events[5].parent_id == new_urn
    pallet_urn = events[9].parent_id
    assert pallet_urn is not None
    assert pallet_urn.startswith("urn:epc:id:sscc:4012345.5")
    case2_sscc = ops.container(db, case2).identifier
    assert events[9].child_epcs == (new_urn, f"urn:epc:id:sscc:4012345.{case2_sscc[0]}{case2_sscc[8:17]}")
    assert events[10].epc_list == (sgtin(db, ids[10]),)
    assert not check_events(events, now=CHECK_NOW)


def test_a_destroyed_case_is_unpacked_then_destroyed_units_and_sscc(db):
    batch_id, ids = running_batch(db, units=4, product=SIMPLE)
    case = change(db, ops.open_container, batch_id, "case", now=LATER)
    change(db, ops.pack, case, serial_ids=ids, now=LATER)
    change(db, ops.destroy_container, case, now=LATER, operator="ana", reason="crushed")
    events = list(batch_events(db, batch_id, CTX))
    assert shape(events) == [
        ("ObjectEvent", "ADD", "commissioning", "active"),
        ("AggregationEvent", "ADD", "packing", "in_progress"),
        ("AggregationEvent", "DELETE", "unpacking", None),
        ("ObjectEvent", "DELETE", "destroying", "destroyed"),  # the units
        ("ObjectEvent", "DELETE", "destroying", "destroyed"),  # the case's SSCC
    ]
    assert events[4].epc_list == (events[1].parent_id,)
    assert not check_events(events, now=CHECK_NOW)


def test_a_sample_destroyed_later_is_destroyed_once_a_reject_destroyed_is_not_reported_again(db):
    batch_id, ids = running_batch(db, units=3, rejected=1)
    change(db, serial_ops.apply_moves, [Move([ids[0]], S.SAMPLED, "QA")], LATER)
    change(db, serial_ops.apply_moves, [Move([ids[0], ids[2]], S.DESTROYED, "incinerated")], LATER)
    events = list(batch_events(db, batch_id, CTX))
    assert shape(events) == [
        ("ObjectEvent", "ADD", "commissioning", "active"),
        ("ObjectEvent", "DELETE", "decommissioning", "inactive"),
        ("ObjectEvent", "OBSERVE", "sampling", "non_sellable_other"),
        ("ObjectEvent", "DELETE", "destroying", "destroyed"),
    ]
    assert events[3].epc_list == (sgtin(db, ids[0]),)
    assert not check_events(events, now=CHECK_NOW)


def test_extensions_and_work_order_transaction_when_the_profile_allows(db):
    batch_id, _ = running_batch(db, units=1)
    ctx = EventContext(read_point=READ_POINT, biz_location=BIZ_LOCATION, zone=UTC, extensions=True,
                       biz_transaction="urn:epcglobal:cbv:bt:4012345000009:WO-1", event_ids=False)
    (event,) = batch_events(db, batch_id, ctx)
    assert ("workOrder", "WO-1") in event.extensions
    assert ("reason", "verified") in event.extensions
    assert event.biz_transactions == (("prodorder", "urn:epcglobal:cbv:bt:4012345000009:WO-1"),)


def test_a_range_of_the_outbox_and_pages_give_the_same_events(db, monkeypatch):
    batch_id, ids = running_batch(db, units=8, product=SIMPLE)
    for unit in ids:
        change(db, serial_ops.apply_moves, [Move([unit], S.SAMPLED, "QA")], LATER)
    whole = list(batch_events(db, batch_id, CTX))
    first, last = outbox_range(db, batch_id) or (0, 0)
    monkeypatch.setattr("edge.epcis.events.PAGE_ROWS", 3)
    middle = (first + last) // 2
    parts = [*batch_events(db, batch_id, CTX, last_outbox=middle),
             *batch_events(db, batch_id, CTX, first_outbox=middle + 1)]
    assert parts == whole
    checker = Checker(CHECK_NOW)
    assert not checker.check(parts[:3])
    assert not checker.check(parts[3:])


def test_event_ids_come_from_the_hasher(db):
    batch_id, _ = running_batch(db, units=2)
    ctx = EventContext(read_point=READ_POINT, biz_location=BIZ_LOCATION, zone=UTC)
    (event,) = batch_events(db, batch_id, ctx, hasher=lambda e: f"ni:///sha-256;{len(e.epc_list)}?ver=CBV2.0")
    assert event.event_id == "ni:///sha-256;2?ver=CBV2.0"


def test_close_refuses_a_batch_whose_moves_bypassed_the_outbox(db):
    batch_id, _ids = running_batch(db, units=2)
    # A change made outside the line controller: a move with no outbox row.
    change(db, lambda c: c.execute(
        "INSERT INTO transition (at, batch_id, to_state, count, reason) VALUES (?, ?, 6, 1, 'by hand')",
        (NOW, batch_id)))
    change(db, serial_ops.complete_batch, batch_id, now=NOW, operator="op")
    with pytest.raises(ReconciliationError, match="entered the EPCIS outbox"):
        change(db, serial_ops.close_batch, batch_id, now=NOW, operator="op", return_to_pool=False)
    with contextlib.suppress(Exception):
        assert serial_ops.get_batch(db, batch_id).state is BatchState.COMPLETING


def test_the_outbox_is_append_only(db):
    batch_id, _ = running_batch(db, units=1)
    with pytest.raises(Exception, match="append-only"):
        change(db, lambda c: c.execute("DELETE FROM epcis_outbox"))
    with pytest.raises(Exception, match="append-only"):
        change(db, lambda c: c.execute("UPDATE epcis_outbox SET batch_id = 9"))
    assert outbox_range(db, batch_id) is not None


def test_a_container_named_by_garbage_is_an_error_naming_it(db):
    batch_id, ids = running_batch(db, units=1, product=SIMPLE)
    case = change(db, ops.open_container, batch_id, "case", identifier="not-an-sgtin", now=LATER)
    change(db, ops.pack, case, serial_ids=ids, now=LATER)
    with pytest.raises(EpcisError, match="not-an-sgtin"):
        list(batch_events(db, batch_id, CTX))


# -- the checks, on hand-made histories -----------------------------------------------------------

T0 = datetime(2026, 11, 25, 10, tzinfo=UTC)
UNIT = "urn:epc:id:sgtin:4012345.000001.A1"
UNIT2 = "urn:epc:id:sgtin:4012345.000001.A2"
CASE = "urn:epc:id:sscc:4012345.0000000001"
CASE2 = "urn:epc:id:sscc:4012345.0000000002"


def ev(kind, action, step, *, at=T0, epcs=(), parent=None, disposition=None, where=BIZ_LOCATION):
    if disposition is None:
        disposition = {"commissioning": "active", "packing": "in_progress"}.get(step)
    return EpcisEvent(type=kind, action=action, event_time=at, event_time_zone_offset="+00:00", biz_step=step,
                      disposition=disposition, biz_location=where,
                      epc_list=tuple(epcs) if kind == "ObjectEvent" else (),
                      parent_id=parent, child_epcs=tuple(epcs) if kind == "AggregationEvent" else ())


def commission(*epcs, at=T0):
    return ev("ObjectEvent", "ADD", "commissioning", epcs=epcs, at=at)


def pack(parent, *epcs, at=T0 + timedelta(seconds=1)):
    return ev("AggregationEvent", "ADD", "packing", parent=parent, epcs=epcs, at=at)


def codes(events):
    return [(r.index, r.code) for r in check_events(events, now=CHECK_NOW)]


@pytest.mark.parametrize(("events", "expected"), [
    pytest.param([pack(CASE, UNIT)], [(0, "NOTCOMMISSIONED")], id="child not commissioned"),
    pytest.param([commission(UNIT), pack(CASE, UNIT), pack(CASE2, UNIT)], [(2, "ALREADYAGGREGATED")],
                 id="child already aggregated"),
    pytest.param([commission(UNIT, UNIT)], [(0, "DUPLICATEEPC"), (0, "DUPLICATEEPC")], id="listed twice"),
    pytest.param([commission(UNIT), commission(UNIT)], [(1, "DUPLICATEEPC")], id="commissioned twice"),
    pytest.param([commission(UNIT), pack(CASE, UNIT, at=T0 - timedelta(seconds=1))], [(1, "BADAGGREGATEDATE")],
                 id="packed before commissioned"),
    pytest.param([commission(UNIT, at=CHECK_NOW + timedelta(minutes=6))], [(0, "EVENTTIMEAFTERNOW")],
                 id="in the future"),
    pytest.param([ev("ObjectEvent", "ADD", "commissioning", epcs=[UNIT], where=None)], [(0, "MISSINGBIZLOCATION")],
                 id="no bizLocation"),
    pytest.param([commission(UNIT), ev("AggregationEvent", "DELETE", "unpacking", parent=CASE, epcs=[UNIT])],
                 [(1, "NOTPACKED")], id="unpacking a child not packed"),
    pytest.param([commission(UNIT), ev("AggregationEvent", "ADD", "packing", parent=CASE, epcs=[UNIT],
                                       disposition="active")], [(1, "WRONGBIZSTEP")], id="packing not in_progress"),
    pytest.param([commission(UNIT), ev("ObjectEvent", "DELETE", "destroying", epcs=[UNIT], disposition="destroyed"),
                  pack(CASE, UNIT)], [(2, "NOTCOMMISSIONED")], id="packing a destroyed unit"),
    pytest.param([commission(UNIT, UNIT2), pack(CASE, UNIT), pack(CASE2, UNIT2), pack("urn:x:pallet", CASE, CASE2)],
                 [], id="a clean history"),
])
def test_each_check_refuses_what_upstream_rejects(events, expected):
    assert codes(events) == expected


def test_a_refusal_names_event_code_and_reason():
    (refusal,) = check_events([pack(CASE, UNIT)], now=CHECK_NOW)
    assert str(refusal) == (f"event 0 (NOTCOMMISSIONED): {UNIT} was never commissioned and cannot be packed into "
                            f"{CASE}")


def test_in_doubt_serials_decommissioned_by_an_operator_are_reported_and_the_batch_closes(db):
    new = serial_ops.NewBatch(line_id="line-1", work_order="WO-D", product_id="p", gtin="04012345000016", lot="L1",
                              expiry="281031", quantity=3, market="eu-fmd", serial_source="local",
                              product={"id": "p", "company_prefix_length": 7, "hierarchy": []}, order={})
    batch_id = change(db, serial_ops.create_batch, new, now=NOW, operator="mes")
    change(db, serial_ops.release_batch, batch_id, serial_ops.AllocationPlan(3, serial_ops.Origin.SEQUENTIAL,
                                                                              sequential_width=12),
           now=NOW, operator="sv")
    change(db, serial_ops.move_batch, batch_id, BatchState.RUNNING, now=NOW, operator="op", reason="start")
    ids = [row[0] for row in change(db, serial_ops.next_to_print, batch_id, 3, device="printer-1", now=NOW)]
    change(db, serial_ops.apply_moves, [Move(ids, S.PRINTED, "printed"), Move(ids[:2], S.COMMISSIONED, "ok")], NOW)
    with pytest.raises(BatchError, match="is running"):
        change(db, serial_ops.decommission_in_doubt, batch_id, now=NOW, operator="op", reason="set aside")
    assert change(db, serial_ops.complete_batch, batch_id, now=NOW, operator="op") == 1  # the unjudged one
    with pytest.raises(ReconciliationError, match="in doubt"):
        change(db, serial_ops.close_batch, batch_id, now=NOW, operator="op", return_to_pool=False)
    with pytest.raises(BatchError, match="an operator and a reason"):
        change(db, serial_ops.decommission_in_doubt, batch_id, now=NOW, operator="op", reason=" ")
    assert change(db, serial_ops.decommission_in_doubt, batch_id, now=NOW, operator="op", reason="set aside") == 1
    change(db, serial_ops.close_batch, batch_id, now=NOW, operator="op", return_to_pool=False)
    events = list(batch_events(db, batch_id, CTX))
    assert shape(events) == [("ObjectEvent", "ADD", "commissioning", "active"),
                             ("ObjectEvent", "DELETE", "decommissioning", "inactive")]
    assert events[1].epc_list == (sgtin(db, ids[2]),)
