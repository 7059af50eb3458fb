"""Aggregation rules on a real SQLite store: every violation refused with its reason, SSCCs never reused."""

from __future__ import annotations

import contextlib
import re
import sqlite3

import pytest

from edge.aggregation import AggregationError, ContainerNotFoundError, SsccExhaustedError, ops
from edge.errors import SerialError
from edge.gs1.identifiers import gs1_check_digit, has_valid_check_digit
from edge.serials import ops as serial_ops
from edge.serials.ops import AllocationPlan, Move, NewBatch, Origin
from edge.serials.states import BatchState, SerialState
from edge.store import Store
from edge.store.store import DB_NAME

S = SerialState
NOW = "2026-11-25T10:00:00.000000Z"
GTIN = "04012345000016"
PREFIX = "4012345"  # GTIN digits 2 to 8: a 7-digit company prefix
PRODUCT = {
    "id": "agg-test",
    "company_prefix_length": 7,
    "sscc_extension_digit": 5,
    "hierarchy": [
        {"level": "bundle", "contains": 2},
        {"level": "case", "contains": 3},
        {"level": "pallet", "contains": 2},
    ],
}
SIMPLE = {
    **PRODUCT,
    "id": "agg-simple",
    "hierarchy": [{"level": "case", "contains": 4}, {"level": "pallet", "contains": 2}],
}


def open_db(directory) -> sqlite3.Connection:
    """A migrated Lineside database and a plain connection to it; each change() is one transaction."""
    Store.open(directory).close()
    conn = sqlite3.connect(directory / DB_NAME, isolation_level=None)
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("PRAGMA synchronous = OFF")  # tests do not survive power loss; the store's own tests cover that
    return conn


def change(conn, fn, *args, **kwargs):
    """Run fn(conn, ...) in one transaction, undone whole when it raises (as Store.write does per change)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        result = fn(conn, *args, **kwargs)
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return result


def running_batch(conn, work_order="WO-1", *, line="line-1", units=12, rejected=0, product=PRODUCT):
    """Create, release and start a batch; print `units`, commission all but the last `rejected`; return (id, ids)."""
    new = NewBatch(
        line_id=line, work_order=work_order, product_id=str(product["id"]), gtin=GTIN, lot="L1", expiry="281031",
        quantity=units, market="eu-fmd", serial_source="local", product=product, order={},
    )
    batch_id = change(conn, serial_ops.create_batch, new, now=NOW, operator="mes")
    plan = AllocationPlan(units, Origin.SEQUENTIAL, sequential_width=12)
    while change(conn, serial_ops.release_batch, batch_id, plan, now=NOW, operator="supervisor"):
        pass
    change(conn, serial_ops.move_batch, batch_id, BatchState.RUNNING, now=NOW, operator="op", reason="start")
    ids = [row[0] for row in change(conn, serial_ops.next_to_print, batch_id, units, device="printer-1", now=NOW)]
    good, bad = ids[: units - rejected], ids[units - rejected :]
    moves = [Move(ids, S.PRINTED, "printed"), Move(good, S.COMMISSIONED, "verified")]
    if bad:
        moves.append(Move(bad, S.REJECTED, "grade D"))
    outcomes = change(conn, serial_ops.apply_moves, moves, NOW)
    assert not [o for o in outcomes if isinstance(o, Exception)]
    return batch_id, ids


@pytest.fixture
def db(tmp_path):
    conn = open_db(tmp_path)
    yield conn
    conn.close()


def do(conn, fn, *args, **kwargs):
    """Run one aggregation op as a change, with the test clock."""
    return change(conn, fn, *args, now=NOW, **kwargs)


def opened(conn, batch_id, level, **kwargs) -> int:
    return do(conn, ops.open_container, batch_id, level, **kwargs)


def events(conn, batch_id):
    return [(e.action, e.container_id, e.serial_ids, e.container_ids) for e in ops.aggregation_events(conn, batch_id)]


def full_bundle(conn, batch_id, units) -> int:
    bundle = opened(conn, batch_id, "bundle")
    do(conn, ops.pack, bundle, serial_ids=units)
    do(conn, ops.close_container, bundle)
    return bundle


# -- SSCCs ----------------------------------------------------------------------------------------


def test_ssccs_count_up_with_valid_check_digits_and_survive_a_restart(tmp_path):
    conn = open_db(tmp_path)
    with contextlib.closing(conn):
        first = [change(conn, ops.allocate_sscc, PREFIX, 5) for _ in range(3)]
    assert first == [sscc(n) for n in range(3)]
    assert all(len(s) == 18 and has_valid_check_digit(s) for s in first)
    conn = open_db(tmp_path)  # a restart: the counter is durable
    with contextlib.closing(conn):
        after = change(conn, ops.allocate_sscc, PREFIX, 5)
        other_digit = change(conn, ops.allocate_sscc, PREFIX, 6)
    assert after == sscc(3)
    assert other_digit.startswith("64012345000000000")


def sscc(reference: int) -> str:
    """The SSCC of the test product with this serial reference."""
    body = f"54012345{reference:09d}"
    return body + str(gs1_check_digit(body))


def test_the_sscc_counter_refuses_when_exhausted_and_never_goes_back(db):
    prefix = "401234500001"  # 12 digits: 4-digit serial references, 10,000 SSCCs
    change(db, ops.set_sscc_counter, prefix, 0, 9999)
    last = change(db, ops.allocate_sscc, prefix, 0)
    assert last[13:17] == "9999"
    with pytest.raises(SsccExhaustedError, match=r"every SSCC of company prefix 401234500001 .* \(10,000 serial"):
        change(db, ops.allocate_sscc, prefix, 0)
    with pytest.raises(AggregationError, match="never goes back"):
        change(db, ops.set_sscc_counter, prefix, 0, 5)


def test_allocation_skips_an_sscc_supplied_from_outside(db):
    batch, _ = running_batch(db)
    opened(db, batch, "case", identifier=sscc(0))
    assert ops.container(db, opened(db, batch, "case")).identifier == sscc(1)


# -- opening --------------------------------------------------------------------------------------


def test_open_container_takes_capacity_and_sscc_from_the_recipe(db):
    batch, _ = running_batch(db)
    case = ops.container(db, opened(db, batch, "case", operator="op", station="case-packer"))
    assert (case.level, case.kind, case.capacity, case.state, case.count) == ("case", "sscc", 3, "open", 0)
    assert case.identifier.startswith("54012345")
    assert has_valid_check_digit(case.identifier)
    assert events(db, batch) == [("open", case.id, (), ())]


@pytest.mark.parametrize(
    ("level", "kwargs", "message"),
    [
        ("pallet", {"capacity": 5}, "a pallet holds 2 per the recipe, not 5"),
        ("case", {"identifier": "540123450000000000"}, "540123450000000000 is not a valid SSCC"),
        ("case", {"identifier": " "}, "cannot be empty"),
    ],
)
def test_open_container_refusals(db, level, kwargs, message):
    batch, _ = running_batch(db)
    with pytest.raises(AggregationError, match=message):
        opened(db, batch, level, **kwargs)
    assert events(db, batch) == []


def test_a_level_the_product_lacks_is_refused(db):
    batch, _ = running_batch(db, product=SIMPLE)
    message = "there is no bundle level: product agg-simple packs unit → case → pallet"
    with pytest.raises(AggregationError, match=message):
        opened(db, batch, "bundle")


def test_an_identifier_in_use_is_refused_and_an_sgtin_case_is_kept_as_such(db):
    batch, _ = running_batch(db)
    sgtin = "(01)14012345000013(21)CASE1"
    case = ops.container(db, opened(db, batch, "case", identifier=sgtin))
    assert case.kind == "sgtin"
    with pytest.raises(AggregationError, match=rf"as \(01\).*it identifies case #{case.id}"):
        opened(db, batch, "case", identifier=sgtin)
    assert ops.find_container(db, sgtin).id == case.id
    with pytest.raises(AggregationError, match="identified by an SGTIN"):
        do(db, ops.void_label, case.id, reason="smudged", operator="op")


def test_containers_change_only_while_the_batch_is_on_the_line(db):
    batch, ids = running_batch(db, product=SIMPLE)
    case = opened(db, batch, "case")
    change(db, serial_ops.complete_batch, batch, now=NOW, operator="op")
    do(db, ops.pack, case, serial_ids=ids[:1])  # completing: the last cases are still packed
    change(db, serial_ops.close_batch, batch, now=NOW, operator="qa", return_to_pool=False)
    with pytest.raises(AggregationError, match=r"batch 1 \(work order WO-1, lot L1\) is closed"):
        do(db, ops.pack, case, serial_ids=ids[1:2])
    with pytest.raises(AggregationError, match="is closed"):
        opened(db, batch, "case")


# -- packing rules --------------------------------------------------------------------------------


def test_only_commissioned_units_are_packed(db):
    batch, ids = running_batch(db, units=4, rejected=1, product=SIMPLE)
    case = opened(db, batch, "case")
    with pytest.raises(AggregationError) as caught:
        do(db, ops.pack, case, serial_ids=[ids[0], ids[3]])
    assert f"unit #{ids[3]} (01){GTIN}(21)000000000003 is rejected: only commissioned units are aggregated" in str(
        caught.value
    )
    assert "nothing was packed" in str(caught.value)
    assert ops.contents(db, case).serial_ids == ()  # the good one was not packed either
    with pytest.raises(AggregationError, match="unit #999 does not exist"):
        do(db, ops.pack, case, serial_ids=[999])


def test_a_unit_is_in_at_most_one_container(db):
    batch, ids = running_batch(db, product=SIMPLE)
    first, second = opened(db, batch, "case"), opened(db, batch, "case")
    do(db, ops.pack, first, serial_ids=ids[:2])
    name = ops.container(db, first).name
    with pytest.raises(AggregationError, match=rf"unit #{ids[1]} .* is already in {re.escape(name)}"):
        do(db, ops.pack, second, serial_ids=[ids[1]])
    with pytest.raises(AggregationError, match="the same unit is named twice"):
        do(db, ops.pack, second, serial_ids=[ids[5], ids[5]])
    # The database refuses it too, whatever code writes.
    with pytest.raises(sqlite3.IntegrityError):
        db.execute("INSERT INTO aggregation_member (parent_id, serial_id, packed_event) VALUES (?, ?, 1)",
                   (second, ids[0]))


def test_capacity_is_never_exceeded(db):
    batch, ids = running_batch(db, product=SIMPLE)
    case = opened(db, batch, "case")
    do(db, ops.pack, case, serial_ids=ids[:3])
    with pytest.raises(AggregationError, match=r"cannot pack 2 more into case .*: it holds 3 of 4"):
        do(db, ops.pack, case, serial_ids=ids[3:5])
    assert ops.container(db, case).count == 3


def test_nothing_goes_into_a_closed_or_destroyed_container(db):
    batch, ids = running_batch(db, product=SIMPLE)
    case = opened(db, batch, "case")
    do(db, ops.pack, case, serial_ids=ids[:4])
    do(db, ops.close_container, case)
    with pytest.raises(AggregationError, match="it is closed; nothing is packed into a closed container"):
        do(db, ops.pack, case, serial_ids=ids[4:5])
    empty = opened(db, batch, "case")
    do(db, ops.destroy_container, empty, operator="op", reason="label torn")
    with pytest.raises(AggregationError, match="it is destroyed"):
        do(db, ops.pack, empty, serial_ids=ids[4:5])
    with pytest.raises(AggregationError, match="nothing to pack"):
        do(db, ops.pack, case)


def test_levels_follow_the_product_hierarchy(db):
    batch, ids = running_batch(db)
    case, pallet = opened(db, batch, "case"), opened(db, batch, "pallet")
    with pytest.raises(AggregationError, match=r"a case holds bundles \(product agg-test packs unit → bundle → case"):
        do(db, ops.pack, case, serial_ids=ids[:1])
    bundle = full_bundle(db, batch, ids[:2])
    with pytest.raises(AggregationError, match=r"bundle .* is a bundle; a pallet holds cases"):
        do(db, ops.pack, pallet, containers=[bundle])
    with pytest.raises(AggregationError, match="cannot go into itself"):
        do(db, ops.pack, pallet, containers=[pallet])
    do(db, ops.pack, case, containers=[bundle])
    assert ops.parent_of_container(db, bundle).id == case


def test_a_child_container_is_packed_closed_and_into_one_parent(db):
    batch, ids = running_batch(db, product=SIMPLE)
    case = opened(db, batch, "case")
    do(db, ops.pack, case, serial_ids=ids[:4])
    first, second = opened(db, batch, "pallet"), opened(db, batch, "pallet")
    with pytest.raises(AggregationError, match=r"is open: only a closed case is packed"):
        do(db, ops.pack, first, containers=[case])
    do(db, ops.close_container, case)
    do(db, ops.pack, first, containers=[case])
    with pytest.raises(AggregationError, match=r"is already in pallet .*: a case is in one container at most"):
        do(db, ops.pack, second, containers=[case])
    with pytest.raises(AggregationError, match="container #99 does not exist"):
        do(db, ops.pack, second, containers=[99])


def test_batches_are_not_mixed_unless_allowed(db):
    batch, ids = running_batch(db, product=SIMPLE)
    other, other_ids = running_batch(db, "WO-2", line="line-2", units=4, product=SIMPLE)
    case = opened(db, batch, "case")
    with pytest.raises(AggregationError, match=rf"belongs to batch {other}, not batch {batch}: batches are not mixed"):
        do(db, ops.pack, case, serial_ids=[ids[0], other_ids[0]])
    do(db, ops.pack, case, serial_ids=[ids[0], other_ids[0]], allow_mixed_batches=True)
    other_case = opened(db, other, "case")
    do(db, ops.pack, other_case, serial_ids=other_ids[1:])
    do(db, ops.close_container, other_case, operator="op", partial_reason="batch end")
    pallet = opened(db, batch, "pallet")
    with pytest.raises(AggregationError, match="batches are not mixed"):
        do(db, ops.pack, pallet, containers=[other_case])
    # Destroying a mixed case moves each unit under its own batch, so both batches reconcile.
    do(db, ops.destroy_container, case, operator="op", reason="crushed")
    assert serial_ops.counts(db, batch)["destroyed"] == serial_ops.counts(db, other)["destroyed"] == 1


def test_a_recipe_that_allows_mixed_pallets_takes_cases_of_another_batch(db):
    mixed = {**SIMPLE, "id": "agg-mixed", "hierarchy": [{"level": "case", "contains": 4},
                                                         {"level": "pallet", "contains": 2, "mixed_batches": True}]}
    batch, ids = running_batch(db, product=mixed, units=4)
    other, other_ids = running_batch(db, "WO-2", line="line-2", units=5, product=mixed)
    cases = []
    for batch_id, units in ((batch, ids), (other, other_ids[:4])):
        case = opened(db, batch_id, "case")
        do(db, ops.pack, case, serial_ids=units)
        do(db, ops.close_container, case)
        cases.append(case)
    pallet = opened(db, batch, "pallet")
    do(db, ops.pack, pallet, containers=cases)  # the pallet level allows it
    case = opened(db, batch, "case")
    with pytest.raises(AggregationError, match="batches are not mixed"):  # the case level does not
        do(db, ops.pack, case, serial_ids=[other_ids[4]])


# -- closing --------------------------------------------------------------------------------------


def test_a_short_container_closes_only_with_an_operator_and_a_reason(db):
    batch, ids = running_batch(db, product=SIMPLE)
    case = opened(db, batch, "case")
    with pytest.raises(AggregationError, match="it is empty"):
        do(db, ops.close_container, case, operator="op", partial_reason="batch end")
    do(db, ops.pack, case, serial_ids=ids[:3])
    with pytest.raises(AggregationError, match=r"it holds 3 of 4; only an operator closes a case short, with a reason"):
        do(db, ops.close_container, case, partial_reason="batch end")
    with pytest.raises(AggregationError, match="holds 3 of 4"):
        do(db, ops.close_container, case, operator="op")
    closed = do(db, ops.close_container, case, operator="op", partial_reason="batch end")
    assert (closed.state, closed.partial_reason, closed.closed_by) == ("closed", "batch end", "op")
    assert closed.closed_at == NOW
    with pytest.raises(AggregationError, match="it is closed"):
        do(db, ops.close_container, case)
    full = opened(db, batch, "case")
    do(db, ops.pack, full, serial_ids=ids[3:7])
    assert do(db, ops.close_container, full).partial_reason is None
    assert [e.reason for e in ops.aggregation_events(db, batch) if e.action == "close"] == [
        "closed short: batch end", "full"
    ]


# -- rework ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("operator", "reason"), [(None, "damaged"), ("op", None), ("op", " "), ("", "damaged")])
def test_rework_needs_an_operator_and_a_reason(db, operator, reason):
    batch, ids = running_batch(db, product=SIMPLE)
    case = opened(db, batch, "case")
    do(db, ops.pack, case, serial_ids=ids[:2])
    who = {"operator": operator, "reason": reason}
    for fn, args in [
        (ops.unpack, (case,)), (ops.replace, (case, ids[0], ids[5])), (ops.destroy_unit, (ids[0],)),
        (ops.destroy_container, (case,)), (ops.void_label, (case,)),
    ]:
        with pytest.raises(AggregationError, match="needs an operator and a reason"):
            do(db, fn, *args, **who)
    assert ops.contents(db, case).serial_ids == tuple(ids[:2])


def test_unpacking_one_unit_reopens_a_closed_case(db):
    batch, ids = running_batch(db, product=SIMPLE)
    case = opened(db, batch, "case")
    do(db, ops.pack, case, serial_ids=ids[:4])
    do(db, ops.close_container, case)
    after = do(db, ops.unpack, case, serial_ids=[ids[1]], operator="op", reason="code unreadable")
    assert (after.state, after.count, after.closed_at) == ("open", 3, None)
    assert ops.parent_of_serial(db, ids[1]) is None
    assert events(db, batch)[-2:] == [("open", case, (), ()), ("unpack", case, (ids[1],), ())]
    with pytest.raises(AggregationError, match=rf"unit #{ids[1]} is not in case"):
        do(db, ops.unpack, case, serial_ids=[ids[1]], operator="op", reason="again")
    everything = do(db, ops.unpack, case, operator="op", reason="disaggregate")
    assert everything.count == 0
    with pytest.raises(AggregationError, match="is empty: nothing to unpack"):
        do(db, ops.unpack, case, operator="op", reason="again")


def test_a_case_on_a_pallet_is_taken_off_before_its_units(db):
    batch, ids = running_batch(db, product=SIMPLE)
    case = opened(db, batch, "case")
    do(db, ops.pack, case, serial_ids=ids[:4])
    do(db, ops.close_container, case)
    pallet = opened(db, batch, "pallet")
    do(db, ops.pack, pallet, containers=[case])
    do(db, ops.close_container, pallet, operator="op", partial_reason="last pallet")
    with pytest.raises(AggregationError, match=r"it is in pallet .*; take the case out of it first"):
        do(db, ops.unpack, case, serial_ids=[ids[0]], operator="op", reason="damaged")
    with pytest.raises(AggregationError, match="take the case out of it first"):
        do(db, ops.destroy_unit, ids[0], operator="op", reason="damaged")
    off = do(db, ops.unpack, pallet, containers=[case], operator="op", reason="case damaged")
    assert (off.state, off.count) == ("open", 0)
    assert ops.container(db, case).state == "closed"  # the case itself was not opened
    do(db, ops.unpack, case, serial_ids=[ids[0]], operator="op", reason="damaged")


def test_replace_swaps_a_unit_and_keeps_the_case_closed(db):
    batch, ids = running_batch(db, units=8, rejected=1, product=SIMPLE)
    case = opened(db, batch, "case")
    do(db, ops.pack, case, serial_ids=ids[:4])
    do(db, ops.close_container, case)
    after = do(db, ops.replace, case, ids[2], ids[5], operator="op", reason="scuffed carton")
    assert after.state == "closed"
    assert ops.contents(db, case).serial_ids == (ids[0], ids[1], ids[3], ids[5])
    assert events(db, batch)[-1] == ("replace", case, (ids[2], ids[5]), ())
    with pytest.raises(AggregationError, match=rf"unit #{ids[7]} .* is rejected"):
        do(db, ops.replace, case, ids[0], ids[7], operator="op", reason="x")
    with pytest.raises(AggregationError, match=rf"unit #{ids[5]} .* is already in case"):
        do(db, ops.replace, case, ids[0], ids[5], operator="op", reason="x")
    with pytest.raises(AggregationError, match=rf"cannot replace unit #{ids[2]}: it is not in case"):
        do(db, ops.replace, case, ids[2], ids[6], operator="op", reason="x")


def test_destroying_a_packed_unit_unpacks_it_through_the_serial_ledger(db):
    batch, ids = running_batch(db, product=SIMPLE)
    case = opened(db, batch, "case")
    do(db, ops.pack, case, serial_ids=ids[:4])
    do(db, ops.close_container, case)
    done = do(db, ops.destroy_unit, ids[0], operator="qa-anna", reason="crushed", station="rework-1")
    assert done == ops.Destroyed((ids[0],), ())
    assert ops.container(db, case).state == "open"
    assert serial_ops.history(db, ids[0])[-1] == {
        "at": NOW, "from": "commissioned", "to": "destroyed", "device": "rework-1",
        "reason": "destroyed in rework: crushed", "operator": "qa-anna", "batch": batch,
    }
    assert events(db, batch)[-3:] == [
        ("open", case, (), ()), ("unpack", case, (ids[0],), ()), ("destroy", None, (ids[0],), ()),
    ]
    with pytest.raises(AggregationError, match="it is destroyed; only commissioned units are"):
        do(db, ops.destroy_unit, ids[0], operator="qa", reason="again")


def test_destroying_a_pallet_destroys_everything_on_it(db):
    batch, ids = running_batch(db)
    bundles = [full_bundle(db, batch, ids[i : i + 2]) for i in range(0, 12, 2)]
    cases = []
    for start in (0, 3):
        case = opened(db, batch, "case")
        do(db, ops.pack, case, containers=bundles[start : start + 3])
        do(db, ops.close_container, case)
        cases.append(case)
    pallet = opened(db, batch, "pallet")
    do(db, ops.pack, pallet, containers=cases)
    do(db, ops.close_container, pallet)
    done = do(db, ops.destroy_container, pallet, operator="op", reason="forklift accident")
    assert sorted(done.serial_ids) == sorted(ids)
    assert sorted(done.container_ids) == sorted([*bundles, *cases, pallet])
    assert {c.state for c in ops.containers_of_batch(db, batch)} == {"destroyed"}
    assert all(len(ops.contents(db, c)) == 0 for c in [*bundles, *cases, pallet])
    assert serial_ops.counts(db, batch)["destroyed"] == 12
    with pytest.raises(AggregationError, match="is destroyed already"):
        do(db, ops.destroy_container, pallet, operator="op", reason="again")


def test_the_serial_ledger_cannot_decommission_a_packed_unit(db):
    batch, ids = running_batch(db, product=SIMPLE)
    case = opened(db, batch, "case")
    do(db, ops.pack, case, serial_ids=ids[:1])
    # The ledger refuses the move itself, or failing that the database does.
    try:
        outcome = change(db, serial_ops.apply_moves, [Move(ids[:1], S.SAMPLED, "QA sample")], NOW)[0]
    except sqlite3.IntegrityError as err:
        outcome = err
    assert isinstance(outcome, SerialError | sqlite3.IntegrityError)
    assert "unpack" in str(outcome)
    assert serial_ops.counts(db, batch)["sampled"] == 0


# -- labels ---------------------------------------------------------------------------------------


def test_a_voided_sscc_is_recorded_and_never_reused(tmp_path):
    conn = open_db(tmp_path)
    with contextlib.closing(conn):
        batch, _ = running_batch(conn)
        case = opened(conn, batch, "case")
        old = ops.container(conn, case).identifier
        new = do(conn, ops.void_label, case, reason="label failed verification", operator="op")
        assert new != old
        assert has_valid_check_digit(new)
        assert ops.container(conn, case).identifier == new
        assert conn.execute("SELECT sscc, container_id, reason, operator FROM sscc_voided").fetchall() == [
            (old, case, "label failed verification", "op")
        ]
        assert events(conn, batch)[-1] == ("void_label", case, (), ())
        event = ops.aggregation_events(conn, batch)[-1]
        assert (event.identifier, event.new_identifier) == (old, new)
        with pytest.raises(AggregationError, match=r"was voided on container .* and is never reused"):
            opened(conn, batch, "case", identifier=old)
        with pytest.raises(ContainerNotFoundError, match="was voided"):
            ops.find_container(conn, old)
    conn = open_db(tmp_path)  # after a restart too
    with contextlib.closing(conn):
        seen = {old, new}
        for _ in range(5):
            sscc = ops.container(conn, opened(conn, batch, "case")).identifier
            assert sscc not in seen
            seen.add(sscc)
        with pytest.raises(sqlite3.IntegrityError, match="never reused"):
            conn.execute("UPDATE container SET identifier = ? WHERE id = ?", (old, case))


# -- the log --------------------------------------------------------------------------------------


def test_the_event_log_is_append_only_and_replays_to_the_membership(db):
    batch, ids = running_batch(db, product=SIMPLE)
    case = opened(db, batch, "case")
    do(db, ops.pack, case, serial_ids=ids[:4], operator="op", station="packer")
    do(db, ops.close_container, case)
    do(db, ops.replace, case, ids[0], ids[4], operator="op", reason="r")
    pallet = opened(db, batch, "pallet")
    do(db, ops.pack, pallet, containers=[case])
    do(db, ops.unpack, pallet, operator="op", reason="r")
    do(db, ops.unpack, case, serial_ids=[ids[1]], operator="op", reason="r")
    assert [e[0] for e in events(db, batch)] == [
        "open", "pack", "close", "replace", "open", "pack", "unpack", "open", "unpack"
    ]
    units, boxes = ops.replay(ops.aggregation_events(db, batch))
    assert units == dict.fromkeys(ops.contents(db, case).serial_ids, case)
    assert boxes == {}
    pack_event = ops.aggregation_events(db, batch)[1]
    assert (pack_event.operator, pack_event.station, pack_event.at) == ("op", "packer", NOW)
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        db.execute("UPDATE aggregation_event SET reason = 'edited'")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        db.execute("DELETE FROM aggregation_event")
    with pytest.raises(sqlite3.IntegrityError, match="never deleted"):
        db.execute("DELETE FROM aggregation_member")
