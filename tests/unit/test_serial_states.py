"""The serial and batch state machines: every pair of states, then a model-based run against the real store."""

from __future__ import annotations

import asyncio
import itertools
import json
import sqlite3
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from edge.errors import (
    BatchError,
    IllegalTransitionError,
    PoolExhaustedError,
    ReconciliationError,
    SerialError,
    SerialImportError,
)
from edge.serials import ops
from edge.serials.generate import RandomSerials
from edge.serials.ledger import SerialLedger
from edge.serials.ops import AllocationPlan, NewBatch, Origin
from edge.serials.states import (
    ACTIVE_BATCH_STATES,
    BATCH_TRANSITIONS,
    DECOMMISSIONED,
    IN_FLIGHT,
    OPEN_SCS_STATE,
    SERIAL_TRANSITIONS,
    SETTLED,
    BatchState,
    SerialState,
    can_move,
    check_batch_move,
    check_move,
    serial_state,
)
from edge.store import Store

S = SerialState
B = BatchState

# -- the serial state machine, pair by pair ---------------------------------------------------------

EXPECTED = {
    S.AVAILABLE: {S.ALLOCATED},
    S.ALLOCATED: {S.SENT, S.RETURNED},
    S.SENT: {S.PRINTED, S.REJECTED, S.IN_DOUBT},
    S.PRINTED: {S.COMMISSIONED, S.REJECTED, S.SAMPLED, S.IN_DOUBT},
    S.COMMISSIONED: {S.SAMPLED, S.DESTROYED},
    S.REJECTED: {S.DESTROYED},
    S.DESTROYED: set(),
    S.SAMPLED: {S.DESTROYED},
    S.IN_DOUBT: {S.COMMISSIONED, S.REJECTED, S.DESTROYED, S.SAMPLED},
    S.RETURNED: {S.AVAILABLE},
}


def test_stored_values_never_change():
    assert {state.name: int(state) for state in SerialState} == {
        "AVAILABLE": 0, "ALLOCATED": 1, "SENT": 2, "PRINTED": 3, "COMMISSIONED": 4, "REJECTED": 5,
        "DESTROYED": 6, "SAMPLED": 7, "IN_DOUBT": 8, "RETURNED": 9,
    }
    assert [state.value for state in BatchState] == [
        "created", "released", "running", "paused", "completing", "closed", "cancelled",
    ]


@pytest.mark.parametrize("src", list(SerialState), ids=lambda state: state.label)
def test_each_state_moves_exactly_where_expected(src):
    assert set(SERIAL_TRANSITIONS[src]) == EXPECTED[src]
    assert src not in SERIAL_TRANSITIONS[src], "no state moves to itself"


def test_terminal_settled_and_in_flight_sets():
    terminal = {state for state, targets in SERIAL_TRANSITIONS.items() if not targets}
    assert terminal == {S.DESTROYED}
    assert {S.REJECTED, S.DESTROYED, S.SAMPLED} == DECOMMISSIONED
    assert {S.COMMISSIONED, S.REJECTED, S.DESTROYED, S.SAMPLED, S.RETURNED} == SETTLED
    assert {S.SENT, S.PRINTED} == IN_FLIGHT
    # A settled serial never goes back to an unsettled state, except a returned one to the pool.
    for state in SETTLED - {S.RETURNED}:
        assert SERIAL_TRANSITIONS[state] <= SETTLED
    # Nothing that may have reached a printer ever goes back to the pool or to a batch's unused serials.
    printable = {S.SENT, S.PRINTED, S.COMMISSIONED, S.REJECTED, S.DESTROYED, S.SAMPLED, S.IN_DOUBT}
    reachable = set(printable)
    while True:
        more = {dst for src in reachable for dst in SERIAL_TRANSITIONS[src]} - reachable
        if not more:
            break
        reachable |= more
    assert reachable == printable
    assert set(OPEN_SCS_STATE) == set(SerialState)


@pytest.mark.parametrize(
    ("src", "dst"), list(itertools.product(SerialState, SerialState)), ids=lambda state: state.label
)
def test_check_move_for_every_pair(src, dst):
    assert can_move(src, dst) is (dst in EXPECTED[src])
    if dst in EXPECTED[src]:
        check_move(src, dst)
        return
    with pytest.raises(IllegalTransitionError) as caught:
        check_move(src, dst, what=f"serial #{int(src)}")
    message = str(caught.value)
    assert message.startswith(f"serial #{int(src)} cannot move from {src.label} to {dst.label}; ")
    allowed = ", ".join(sorted(state.label for state in EXPECTED[src])) or "nothing (final)"
    assert message.endswith(f"from {src.label} it may move to {allowed}")


def test_state_names_parse_forgivingly_and_list_the_states_otherwise():
    assert serial_state("in_doubt") is S.IN_DOUBT
    assert serial_state(" IN-DOUBT ") is S.IN_DOUBT
    with pytest.raises(ValueError, match=r'"lost" is not a serial state; the states are available, allocated'):
        serial_state("lost")


BATCH_EXPECTED = {
    B.CREATED: {B.RELEASED, B.CANCELLED},
    B.RELEASED: {B.RUNNING, B.CANCELLED},
    B.RUNNING: {B.PAUSED, B.COMPLETING},
    B.PAUSED: {B.RUNNING, B.COMPLETING},
    B.COMPLETING: {B.CLOSED},
    B.CLOSED: set(),
    B.CANCELLED: set(),
}


@pytest.mark.parametrize(("src", "dst"), list(itertools.product(BatchState, BatchState)), ids=str)
def test_check_batch_move_for_every_pair(src, dst):
    assert set(BATCH_TRANSITIONS[src]) == BATCH_EXPECTED[src]
    if dst in BATCH_EXPECTED[src]:
        check_batch_move(src, dst, "batch 7")
        return
    with pytest.raises(BatchError) as caught:
        check_batch_move(src, dst, "batch 7")
    message = str(caught.value)
    if src in (B.CLOSED, B.CANCELLED):
        assert message == f"batch 7 is {src.value}; a {src.value} batch never changes again"
    elif dst is B.CANCELLED:
        assert message == (
            f"batch 7 is {src.value} and has put serials on the line; complete and close it instead of cancelling"
        )
    else:
        allowed = ", ".join(sorted(state.value for state in BATCH_EXPECTED[src]))
        assert message == (
            f"batch 7 cannot go from {src.value} to {dst.value}; from {src.value} it may go to {allowed}"
        )


def test_only_batches_on_the_line_are_active():
    assert {B.RUNNING, B.PAUSED, B.COMPLETING} == ACTIVE_BATCH_STATES


# -- the ledger against a model -------------------------------------------------------------------

LINE = "line-1"
GTIN = "04012345000016"
ALPHABET = "0123456789ABCDEFGHJKLMNPQRSTUVWXYZ"
LINE_TARGETS = [S.PRINTED, S.COMMISSIONED, S.REJECTED, S.DESTROYED, S.SAMPLED, S.IN_DOUBT]
"""Targets a line or an operator moves serials to with move(); the pool and batch moves have their own calls."""


class LedgerMachine(RuleBasedStateMachine):
    """A dict of serial id → (state, batch) mirrors the ledger; every step checks the store agrees."""

    def __init__(self) -> None:
        super().__init__()
        self.tmp = tempfile.TemporaryDirectory()
        self.loop = asyncio.new_event_loop()
        self.store = Store.open(Path(self.tmp.name), group_window_s=0)
        self.writer = self.loop.create_task(self.store.run())
        self.ledger = SerialLedger(self.store, line_id=LINE)
        self.rounds: asyncio.Task[None] | None = None
        self.serials: dict[int, tuple[SerialState, int | None]] = {}
        self.batches: dict[int, BatchState] = {}
        self.origin: dict[int, Origin] = {}
        self.wanted: dict[int, int] = {}
        self.made = 0
        self.imported = 0

    def run(self, coro):
        return self.loop.run_until_complete(coro)

    def teardown(self) -> None:
        try:
            if self.rounds is not None:
                self.run(self.ledger.aclose())
                self.run(self.rounds)
            self.run(self.store.aclose())
            self.run(self.writer)
        finally:
            self.store.close()
            self.loop.close()
            self.tmp.cleanup()

    # -- helpers --

    def ids_in(self, *states: SerialState) -> list[int]:
        return sorted(i for i, (state, _) in self.serials.items() if state in states)

    def of_batch(self, batch: int, *states: SerialState) -> list[int]:
        return sorted(i for i, (state, owner) in self.serials.items() if owner == batch and state in states)

    def active(self) -> int | None:
        found = [b for b, state in self.batches.items() if state in ACTIVE_BATCH_STATES]
        assert len(found) <= 1
        return found[0] if found else None

    def open_batches(self) -> list[int]:
        return sorted(b for b, state in self.batches.items() if state not in (B.CLOSED, B.CANCELLED))

    def set_state(self, ids, to: SerialState) -> None:
        for i in ids:
            self.serials[i] = (to, self.serials[i][1])

    def apply_to_model(self, ids, to: SerialState) -> bool:
        """Move ids in the model if every one may move; return whether they did."""
        if len(set(ids)) != len(ids) or not all(can_move(self.serials[i][0], to) for i in ids):
            return False
        self.set_state(ids, to)
        return True

    # -- rules --

    @initialize(grouped=st.booleans())
    def choose_rounds(self, grouped):
        """Half the runs gather moves into rounds; the others write each move as its own change."""
        if grouped:
            self.rounds = self.loop.create_task(self.ledger.run())

    @rule(count=st.integers(1, 8), upstream=st.booleans(), start=st.booleans())
    @precondition(lambda self: len(self.batches) < 8 and len(self.open_batches()) < 3)
    def create_and_release(self, count, upstream, start):
        self.made += 1
        source = "upstream_list" if upstream else "local"
        new = NewBatch(
            line_id=LINE, work_order=f"WO-{self.made}", product_id="p", gtin=GTIN, lot=f"L{self.made}",
            expiry="271231", quantity=count, market="eu-fmd", serial_source=source, product={}, order={},
        )
        batch = self.run(self.ledger.create_batch(new))
        self.batches[batch] = B.CREATED
        self.origin[batch] = Origin.UPSTREAM if upstream else Origin.RANDOM
        self.wanted[batch] = count
        self.release(batch)
        if start and self.batches[batch] is B.RELEASED and self.active() is None:
            self.run(self.ledger.set_state(batch, B.RUNNING, reason="start"))
            self.batches[batch] = B.RUNNING

    def plan(self, batch: int) -> AllocationPlan:
        if self.origin[batch] is Origin.UPSTREAM:
            return AllocationPlan(self.wanted[batch], Origin.UPSTREAM)
        return AllocationPlan(self.wanted[batch], Origin.RANDOM, RandomSerials.seeded(ALPHABET, 10, batch))

    def release(self, batch: int) -> None:
        count = self.wanted[batch]
        pool = self.ids_in(S.AVAILABLE)
        if self.origin[batch] is Origin.UPSTREAM and len(pool) < count:
            with pytest.raises(PoolExhaustedError, match=f"import {count - len(pool)} more, then release again"):
                self.run(self.ledger.release(batch, self.plan(batch)))
            return
        self.run(self.ledger.release(batch, self.plan(batch)))
        self.batches[batch] = B.RELEASED
        if self.origin[batch] is Origin.UPSTREAM:
            for i in pool[:count]:  # the oldest first
                self.serials[i] = (S.ALLOCATED, batch)
        else:
            known = set(self.serials)
            fresh = self.run(self.store.read(lambda conn: [
                row[0] for row in conn.execute("SELECT id FROM serial WHERE batch_id = ?", (batch,))
            ]))
            assert len(fresh) == count
            for i in fresh:
                assert i not in known
                self.serials[i] = (S.ALLOCATED, batch)

    @rule(data=st.data())
    @precondition(lambda self: any(state is B.CREATED for state in self.batches.values()))
    def release_again(self, data):
        batch = data.draw(st.sampled_from(sorted(b for b, s in self.batches.items() if s is B.CREATED)))
        self.release(batch)

    @rule(count=st.integers(1, 10))
    @precondition(lambda self: len(self.ids_in(S.AVAILABLE)) < 12)
    def import_pool(self, count):
        serials = [f"UP{self.imported + n:06d}" for n in range(count)]
        self.imported += count
        assert self.run(self.ledger.import_pool(gtin=GTIN, serials=serials, source="l3.yaml")) == count
        ids = self.run(self.ledger.serial_ids(GTIN, serials))
        for serial in serials:
            self.serials[ids[serial]] = (S.AVAILABLE, None)

    @rule(count=st.integers(1, 3))
    @precondition(lambda self: self.imported > 0)
    def import_known_serials(self, count):
        serials = [f"UP{self.imported + n:06d}" for n in range(count)] + ["UP000000"]
        with pytest.raises(SerialImportError, match=r"already known for GTIN .*\(UP000000\); .*nothing was imported"):
            self.run(self.ledger.import_pool(gtin=GTIN, serials=serials, source="again.yaml"))

    @rule(data=st.data())
    @precondition(lambda self: any(state is B.RELEASED for state in self.batches.values()))
    def start(self, data):
        batch = data.draw(st.sampled_from(sorted(b for b, s in self.batches.items() if s is B.RELEASED)))
        running = self.active()
        if running is not None:
            refusal = f"cannot start batch {batch} .*: batch {running} .*complete and close it first"
            with pytest.raises(BatchError, match=refusal):
                self.run(self.ledger.set_state(batch, B.RUNNING, reason="start"))
            return
        self.run(self.ledger.set_state(batch, B.RUNNING, reason="start"))
        self.batches[batch] = B.RUNNING

    @rule()
    @precondition(lambda self: any(state in (B.RUNNING, B.PAUSED) for state in self.batches.values()))
    def pause_or_resume(self):
        batch = self.active()
        assert batch is not None
        to = B.PAUSED if self.batches[batch] is B.RUNNING else B.RUNNING
        self.run(self.ledger.set_state(batch, to, reason="operator"))
        self.batches[batch] = to

    @rule(count=st.integers(1, 4))
    @precondition(lambda self: any(state is B.RUNNING for state in self.batches.values()))
    def next_to_print(self, count):
        batch = self.active()
        assert batch is not None
        got = self.run(self.ledger.next_to_print(batch, count, device="tij-1"))
        expected = self.of_batch(batch, S.ALLOCATED)[:count]
        assert [row[0] for row in got] == expected
        self.set_state(expected, S.SENT)

    @rule()
    @precondition(lambda self: any(state in (B.PAUSED, B.COMPLETING) for state in self.batches.values()))
    def next_to_print_refused(self):
        batch = self.active()
        assert batch is not None
        with pytest.raises(BatchError, match="serials go to printers only while it runs"):
            self.run(self.ledger.next_to_print(batch, 1, device="tij-1"))

    @rule(data=st.data())
    @precondition(lambda self: any(SERIAL_TRANSITIONS[s] & set(LINE_TARGETS) for s, _ in self.serials.values()))
    def legal_move(self, data):
        movable = sorted(i for i, (s, _) in self.serials.items() if SERIAL_TRANSITIONS[s] & set(LINE_TARGETS))
        serial = data.draw(st.sampled_from(movable))
        to = data.draw(st.sampled_from(sorted(SERIAL_TRANSITIONS[self.serials[serial][0]] & set(LINE_TARGETS))))
        assert self.run(self.ledger.move([serial], to, reason="line", device="cam-1")) == 1
        self.set_state([serial], to)

    @rule(data=st.data())
    @precondition(lambda self: bool(self.serials))
    def illegal_move(self, data):
        serial = data.draw(st.sampled_from(sorted(self.serials)))
        state = self.serials[serial][0]
        to = data.draw(st.sampled_from([t for t in SerialState if t not in SERIAL_TRANSITIONS[state]]))
        with pytest.raises(IllegalTransitionError) as caught:
            self.run(self.ledger.move([serial], to, reason="wrong"))
        if to in (SerialState.AVAILABLE, SerialState.ALLOCATED):
            # Only release, close and cancel put serials there, keeping serial and batch in step.
            assert f"serials are not moved to {to.label} one by one" in str(caught.value)
        else:
            assert f"to {to.label}" in str(caught.value)
            assert f"serial #{serial} is {state.label}" in str(caught.value)

    @rule(data=st.data())
    @precondition(lambda self: bool(self.serials))
    def pool_move_refused_even_where_the_table_allows_it(self, data):
        serial = data.draw(st.sampled_from(sorted(self.serials)))
        to = data.draw(st.sampled_from([SerialState.AVAILABLE, SerialState.ALLOCATED]))
        with pytest.raises(IllegalTransitionError, match=f"serials are not moved to {to.label} one by one"):
            self.run(self.ledger.move([serial], to, reason="by hand"))

    @rule(data=st.data(), to=st.sampled_from(LINE_TARGETS))
    @precondition(lambda self: len(self.serials) >= 2)
    def multi_move(self, data, to):
        ids = data.draw(st.lists(st.sampled_from(sorted(self.serials)), min_size=2, max_size=5))
        before = {i: self.serials[i] for i in ids}
        legal = len(set(ids)) == len(ids) and all(can_move(self.serials[i][0], to) for i in ids)
        if legal:
            assert self.run(self.ledger.move(ids, to, reason="rework", operator="op-jan")) == len(ids)
            self.set_state(ids, to)
        else:
            with pytest.raises(SerialError):
                self.run(self.ledger.move(ids, to, reason="rework", operator="op-jan"))
            assert {i: self.serials[i] for i in ids} == before

    @rule(data=st.data())
    @precondition(lambda self: bool(self.serials))
    def concurrent_moves(self, data):
        """Several callers at once (one round when rounds run): each is judged after those before it."""
        moves = data.draw(st.lists(
            st.tuples(st.sampled_from(sorted(self.serials)), st.sampled_from(LINE_TARGETS)), min_size=2, max_size=6,
        ))

        async def all_at_once():
            return await asyncio.gather(
                *(self.ledger.move([i], to, reason="verdict", device="cam-1") for i, to in moves),
                return_exceptions=True,
            )

        outcomes = self.run(all_at_once())
        for (i, to), outcome in zip(moves, outcomes, strict=True):
            if self.apply_to_model([i], to):
                assert outcome == 1
            else:
                assert isinstance(outcome, IllegalTransitionError)

    @rule()
    @precondition(lambda self: self.active() is not None)
    def recover_in_flight(self):
        batch = self.active()
        in_flight = self.of_batch(batch, *IN_FLIGHT)
        assert self.run(self.ledger.recover_in_flight("daemon restarted")) == len(in_flight)
        self.set_state(in_flight, S.IN_DOUBT)

    @rule()
    @precondition(lambda self: any(state in (B.RUNNING, B.PAUSED) for state in self.batches.values()))
    def complete(self):
        batch = self.active()
        assert batch is not None
        in_flight = self.of_batch(batch, *IN_FLIGHT)
        assert self.run(self.ledger.complete(batch)) == len(in_flight)
        self.set_state(in_flight, S.IN_DOUBT)
        self.batches[batch] = B.COMPLETING

    @rule(data=st.data())
    @precondition(lambda self: any(state is not B.COMPLETING for state in self.batches.values()))
    def close_refused(self, data):
        batch = data.draw(st.sampled_from(sorted(b for b, s in self.batches.items() if s is not B.COMPLETING)))
        with pytest.raises(BatchError, match=f"batch {batch} .*(cannot go from|never changes again)"):
            self.run(self.ledger.close(batch, operator="sup-eva", return_to_pool=False))

    @rule()
    @precondition(lambda self: any(state is B.COMPLETING for state in self.batches.values()))
    def close(self):
        batch = self.active()
        assert batch is not None
        to_pool = self.origin[batch] is Origin.UPSTREAM
        unsettled = self.of_batch(batch, *(set(SerialState) - SETTLED - {S.ALLOCATED}))
        if unsettled:
            with pytest.raises(ReconciliationError, match=f"cannot close batch {batch} "):
                self.run(self.ledger.close(batch, operator="sup-eva", return_to_pool=to_pool))
            return
        report = self.run(self.ledger.close(batch, operator="sup-eva", return_to_pool=to_pool))
        unused = self.of_batch(batch, S.ALLOCATED)
        assert report["balanced"]
        assert report["blocking"] == []
        assert report["returned_at_close"] == len(unused)
        assert report["allocated"] == (
            report["commissioned"] + sum(report["decommissioned"].values()) + report["returned"]
        )
        for i in unused:
            self.serials[i] = (S.AVAILABLE, None) if to_pool else (S.RETURNED, batch)
        self.batches[batch] = B.CLOSED
        assert self.run(self.ledger.reconciliation(batch)) == report

    @rule(data=st.data())
    @precondition(lambda self: any(state in (B.CREATED, B.RELEASED) for state in self.batches.values()))
    def cancel(self, data):
        batch = data.draw(st.sampled_from(sorted(b for b, s in self.batches.items() if s in (B.CREATED, B.RELEASED))))
        to_pool = self.origin[batch] is Origin.UPSTREAM
        unused = self.of_batch(batch, S.ALLOCATED)
        assert self.run(
            self.ledger.cancel(batch, reason="withdrawn", operator="sup-eva", return_to_pool=to_pool)
        ) == len(unused)
        for i in unused:
            self.serials[i] = (S.AVAILABLE, None) if to_pool else (S.RETURNED, batch)
        self.batches[batch] = B.CANCELLED

    @rule(data=st.data())
    @precondition(lambda self: any(state not in (B.CREATED, B.RELEASED) for state in self.batches.values()))
    def cancel_refused(self, data):
        batch = data.draw(st.sampled_from(sorted(
            b for b, s in self.batches.items() if s not in (B.CREATED, B.RELEASED)
        )))
        with pytest.raises(BatchError, match=f"batch {batch} .*(instead of cancelling|never changes again)"):
            self.run(self.ledger.cancel(batch, reason="withdrawn", operator="sup-eva", return_to_pool=False))

    # -- invariants --

    @invariant()
    def store_matches_model(self):
        def read(conn: sqlite3.Connection):
            rows = conn.execute("SELECT id, state, batch_id FROM serial")
            serials = {i: (S(state), batch) for i, state, batch in rows}
            batches = {i: B(state) for i, state in conn.execute("SELECT id, state FROM batch")}
            totals = {
                b: (sum(ops.counts(conn, b).values()), ops.returned_to_pool(conn, b), ops.allocated_total(conn, b))
                for b in batches
            }
            duplicates = conn.execute(
                "SELECT gtin, serial FROM serial GROUP BY gtin, serial HAVING count(*) > 1"
            ).fetchall()
            active = conn.execute(
                "SELECT count(*) FROM batch WHERE line_id = ? AND state IN ('running', 'paused', 'completing')",
                (LINE,),
            ).fetchone()[0]
            reports = {b: json.loads(text) for b, text in conn.execute("SELECT batch_id, report FROM batch_report")}
            steps = conn.execute(
                "SELECT h.serial_id, h.from_state, t.to_state FROM serial_history AS h"
                " JOIN transition AS t ON t.id = h.transition_id ORDER BY h.serial_id, h.transition_id"
            ).fetchall()
            return serials, batches, totals, duplicates, active, reports, steps

        serials, batches, totals, duplicates, active, reports, steps = self.run(self.store.read(read))
        assert serials == self.serials
        assert batches == self.batches
        for batch, (counted, pooled, allocated) in totals.items():
            assert counted + pooled == allocated, f"batch {batch}: {counted} + {pooled} pooled != {allocated}"
        assert duplicates == []
        assert active <= 1
        assert set(reports) == {b for b, state in batches.items() if state is B.CLOSED}
        last: dict[int, SerialState] = {}
        for serial, src, dst in steps:
            assert S(src) is last.get(serial, S.AVAILABLE), f"serial #{serial}: history jumps"
            assert can_move(S(src), S(dst)), f"serial #{serial}: illegal step in history"
            last[serial] = S(dst)
        assert last == {i: state for i, (state, _) in serials.items() if state is not S.AVAILABLE or i in last}
        for report in reports.values():
            assert report["balanced"], report["blocking"]


def test_the_ledger_agrees_with_a_model_of_it():
    run_state_machine_as_test(
        LedgerMachine,
        settings=settings(
            max_examples=60, stateful_step_count=40, deadline=None, suppress_health_check=[HealthCheck.too_slow],
        ),
    )
