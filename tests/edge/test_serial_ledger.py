"""The serial ledger on the event loop: moves gathered into rounds, per-caller outcomes, batch refusals."""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

import pytest

from edge.errors import (
    BatchError,
    IllegalTransitionError,
    PoolExhaustedError,
    ReconciliationError,
    SerialError,
)
from edge.serials.generate import RandomSerials
from edge.serials.ledger import SerialLedger
from edge.serials.ops import AllocationPlan, NewBatch, Origin
from edge.serials.states import BatchState, SerialState

S = SerialState
LINE = "line-1"
GTIN = "04012345000016"
ALPHABET = "0123456789ABCDEFGHJKLMNPQRSTUVWXYZ"


def new_batch(work_order: str, *, lot: str = "L1", source: str = "local", quantity: int = 100) -> NewBatch:
    return NewBatch(
        line_id=LINE, work_order=work_order, product_id="aspirin-500", gtin=GTIN, lot=lot, expiry="271231",
        quantity=quantity, market="eu-fmd", serial_source=source, product={}, order={},
    )


def random_plan(count: int, seed: int = 1) -> AllocationPlan:
    return AllocationPlan(count, Origin.RANDOM, RandomSerials.seeded(ALPHABET, 12, seed))


class Clock:
    """A store clock that moves one second per reading, so every change has its own known time."""

    def __init__(self) -> None:
        self.now = datetime(2027, 3, 1, 8, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


@pytest.fixture
def store(tmp_path):
    from edge.store import Store

    opened = Store.open(tmp_path, group_window_s=0)
    yield opened
    opened.close()


@asynccontextmanager
async def running(store, *, clock=None):
    """Run the store's writer and the ledger's rounds in a TaskGroup, as the daemon does; close both after."""
    ledger = SerialLedger(store, line_id=LINE, **({} if clock is None else {"clock": clock}))
    async with asyncio.TaskGroup() as group:
        group.create_task(store.run())
        rounds = group.create_task(ledger.run())
        await asyncio.sleep(0)  # run() is waiting for moves from here on
        try:
            yield ledger
        finally:
            await ledger.aclose()
            await rounds
            await store.aclose()


async def running_batch(ledger, count, *, work_order="WO-1", lot="L1", seed=1):
    batch = await ledger.create_batch(new_batch(work_order, lot=lot))
    await ledger.release(batch, random_plan(count, seed))
    await ledger.set_state(batch, BatchState.RUNNING, reason="start")
    return batch


async def states_of(ledger, ids):
    def read(conn):
        return dict(conn.execute(
            "SELECT id, state FROM serial WHERE id IN (SELECT value FROM json_each(?))", (str(list(ids)),)
        ).fetchall())

    return {serial_id: S(state) for serial_id, state in (await ledger.store.read(read)).items()}


# -- rounds -----------------------------------------------------------------------------------


async def test_many_concurrent_single_moves_share_a_few_commits(store):
    async with running(store) as ledger:
        batch = await running_batch(ledger, 2000)
        ids = [serial_id for serial_id, _, _ in await ledger.next_to_print(batch, 2000, device="tij-1")]
        commits, changes = store.stats.commits, store.stats.changes
        moved = await asyncio.gather(
            *(ledger.move([i], S.PRINTED, reason="printed", device="tij-1", batch_id=batch) for i in ids)
        )
        assert moved == [1] * 2000
        assert store.stats.commits - commits <= 5, "2,000 moves should take a handful of commits"
        assert store.stats.changes - changes <= 5, "each round is one store change"
        assert (await ledger.counts(batch))["printed"] == 2000


async def test_without_run_each_move_is_its_own_store_change(store):
    ledger = SerialLedger(store, line_id=LINE)
    async with asyncio.TaskGroup() as group:
        group.create_task(store.run())
        batch = await running_batch(ledger, 50)
        ids = [serial_id for serial_id, _, _ in await ledger.next_to_print(batch, 50, device="tij-1")]
        changes = store.stats.changes
        assert await asyncio.gather(*(ledger.move([i], S.PRINTED, reason="printed") for i in ids)) == [1] * 50
        assert store.stats.changes - changes == 50
        assert (await ledger.counts(batch))["printed"] == 50
        await store.aclose()


async def test_one_illegal_move_in_a_round_fails_only_its_caller(store):
    async with running(store) as ledger:
        batch = await running_batch(ledger, 10)
        ids = [serial_id for serial_id, _, _ in await ledger.next_to_print(batch, 10, device="tij-1")]
        commits = store.stats.commits
        targets = [S.PRINTED] * 10
        targets[4] = S.COMMISSIONED  # sent → commissioned skips the print acknowledgement
        outcomes = await asyncio.gather(
            *(ledger.move([i], to, reason="verdict") for i, to in zip(ids, targets, strict=True)),
            return_exceptions=True,
        )
        assert store.stats.commits - commits == 1, "the ten moves should have shared one round"
        assert [o for i, o in enumerate(outcomes) if i != 4] == [1] * 9
        error = outcomes[4]
        assert isinstance(error, IllegalTransitionError)
        assert f"serial #{ids[4]} is sent" in str(error)
        assert "commissioned" in str(error)
        assert "nothing was moved" in str(error)
        states = await states_of(ledger, ids)
        assert states == {i: (S.SENT if n == 4 else S.PRINTED) for n, i in enumerate(ids)}


async def test_a_multi_serial_move_is_all_or_nothing(store):
    async with running(store) as ledger:
        batch = await running_batch(ledger, 6)
        ids = [serial_id for serial_id, _, _ in await ledger.next_to_print(batch, 6, device="tij-1")]
        await ledger.move(ids[:3], S.PRINTED, reason="printed")
        refused, accepted = await asyncio.gather(
            ledger.move(ids[1:5], S.COMMISSIONED, reason="graded good"),  # ids[3] and ids[4] are only sent
            ledger.move(ids[:2], S.COMMISSIONED, reason="graded good"),
            return_exceptions=True,
        )
        assert isinstance(refused, IllegalTransitionError)
        assert str(refused) == (
            f"cannot move 4 serial(s) to commissioned (only from in_doubt or printed): serial #{ids[3]} is sent; "
            f"serial #{ids[4]} is sent; nothing was moved"
        )
        assert accepted == 2
        states = await states_of(ledger, ids)
        assert [states[i] for i in ids] == [S.COMMISSIONED] * 2 + [S.PRINTED] + [S.SENT] * 3
        with pytest.raises(SerialError, match="the same serial is named twice"):
            await ledger.move([ids[2], ids[2]], S.COMMISSIONED, reason="graded good")
        with pytest.raises(IllegalTransitionError, match=rf"belongs to batch {batch}, not batch {batch + 1}"):
            await ledger.move([ids[2]], S.COMMISSIONED, reason="graded good", batch_id=batch + 1)
        assert (await states_of(ledger, [ids[2]]))[ids[2]] is S.PRINTED


async def test_moves_of_one_serial_in_one_round_apply_in_order(store):
    async with running(store) as ledger:
        batch = await running_batch(ledger, 2)
        (a, _, _), (b, _, _) = await ledger.next_to_print(batch, 2, device="tij-1")
        commits = store.stats.commits
        in_order = await asyncio.gather(
            ledger.move([a], S.PRINTED, reason="printed", device="tij-1"),
            ledger.move([a], S.COMMISSIONED, reason="graded good", device="cam-1"),
            ledger.move([a], S.SAMPLED, reason="qa sample", operator="qa-anna"),
            # Out of order: b is still sent when its verdict arrives, so the verdict is refused and
            # the acknowledgement after it goes through.
            ledger.move([b], S.COMMISSIONED, reason="graded good", device="cam-1"),
            ledger.move([b], S.PRINTED, reason="printed", device="tij-1"),
            return_exceptions=True,
        )
        assert store.stats.commits - commits == 1
        assert in_order[:3] == [1, 1, 1]
        assert isinstance(in_order[3], IllegalTransitionError)
        assert in_order[4] == 1
        steps = [(row["from"], row["to"]) for row in await ledger.history(a)]
        assert steps == [
            ("available", "allocated"), ("allocated", "sent"), ("sent", "printed"), ("printed", "commissioned"),
            ("commissioned", "sampled"),
        ]
        assert await states_of(ledger, [a, b]) == {a: S.SAMPLED, b: S.PRINTED}


async def test_aclose_applies_queued_moves_then_run_returns_and_later_moves_are_refused(store):
    ledger = SerialLedger(store, line_id=LINE)
    async with asyncio.TaskGroup() as group:
        group.create_task(store.run())
        rounds = group.create_task(ledger.run())
        await asyncio.sleep(0)
        batch = await running_batch(ledger, 300)
        ids = [serial_id for serial_id, _, _ in await ledger.next_to_print(batch, 300, device="tij-1")]
        moves = [group.create_task(ledger.move([i], S.PRINTED, reason="printed")) for i in ids]
        await asyncio.sleep(0)  # every move is queued, none applied yet
        assert len(ledger._queue) == 300
        await ledger.aclose()
        await rounds  # returns once the queued moves are committed
        assert [move.result() for move in moves] == [1] * 300
        with pytest.raises(SerialError, match="the serial ledger is closed"):
            await ledger.move([ids[0]], S.COMMISSIONED, reason="graded good")
        assert (await ledger.counts(batch))["printed"] == 300
        await store.aclose()


async def test_history_records_time_device_reason_operator_and_batch(store):
    clock = Clock()
    async with running(store, clock=clock) as ledger:
        batch = await running_batch(ledger, 3)
        (serial_id, _, _), *_ = await ledger.next_to_print(batch, 3, device="tij-1")
        sent_at = clock.now
        await ledger.move([serial_id], S.PRINTED, reason="printer acknowledged", device="tij-1", batch_id=batch)
        printed_at = clock.now
        await ledger.move([serial_id], S.REJECTED, reason="grade D", device="cam-1")
        await ledger.move([serial_id], S.DESTROYED, reason="rework bin emptied", operator="op-jan")
        history = await ledger.history(serial_id)
    assert [(h["from"], h["to"], h["device"], h["reason"], h["operator"]) for h in history] == [
        ("available", "allocated", None, "generated random serials", None),
        ("allocated", "sent", "tij-1", "sent to printer", None),
        ("sent", "printed", "tij-1", "printer acknowledged", None),
        ("printed", "rejected", "cam-1", "grade D", None),
        ("rejected", "destroyed", None, "rework bin emptied", "op-jan"),
    ]
    stamps = [datetime.fromisoformat(h["at"]) for h in history]
    assert stamps == sorted(stamps)
    assert stamps[1] == sent_at
    assert stamps[2] == printed_at
    assert history[1]["batch"] == batch
    assert history[2]["batch"] == batch


# -- batch refusals -----------------------------------------------------------------------------


async def test_starting_a_second_batch_while_one_runs_names_the_running_batch(store):
    async with running(store) as ledger:
        first = await running_batch(ledger, 5, work_order="WO-1", lot="L1")
        second = await ledger.create_batch(new_batch("WO-2", lot="L2"))
        await ledger.release(second, random_plan(5, seed=2))
        with pytest.raises(BatchError) as caught:
            await ledger.set_state(second, BatchState.RUNNING, reason="start")
        message = str(caught.value)
        assert f"cannot start batch {second} (work order WO-2, lot L2)" in message
        assert f"batch {first} (work order WO-1, lot L1), product aspirin-500, is running on {LINE}" in message
        assert "complete and close it first" in message
        assert (await ledger.batch(second)).state is BatchState.RELEASED
        # Paused or completing still holds the line.
        await ledger.set_state(first, BatchState.PAUSED, reason="break")
        with pytest.raises(BatchError, match="is paused on line-1; complete and close it first"):
            await ledger.set_state(second, BatchState.RUNNING, reason="start")
        await ledger.complete(first)
        with pytest.raises(BatchError, match="is completing on line-1"):
            await ledger.set_state(second, BatchState.RUNNING, reason="start")
        await ledger.close(first, operator="sup-eva", return_to_pool=False)
        await ledger.set_state(second, BatchState.RUNNING, reason="start")
        assert (await ledger.active_batch()).id == second


async def test_a_batch_that_ran_is_never_cancelled(store):
    async with running(store) as ledger:
        batch = await running_batch(ledger, 5)
        with pytest.raises(BatchError) as caught:
            await ledger.cancel(batch, reason="wrong lot", operator="sup-eva", return_to_pool=False)
        assert str(caught.value) == (
            f"batch {batch} (work order WO-1, lot L1) is running and has put serials on the line; "
            "complete and close it instead of cancelling"
        )
        await ledger.complete(batch)
        with pytest.raises(BatchError, match="is completing and has put serials on the line"):
            await ledger.cancel(batch, reason="wrong lot", operator="sup-eva", return_to_pool=False)
        await ledger.close(batch, operator="sup-eva", return_to_pool=False)
        with pytest.raises(BatchError, match="is closed; a closed batch never changes again"):
            await ledger.cancel(batch, reason="wrong lot", operator="sup-eva", return_to_pool=False)


async def test_a_batch_that_never_ran_is_cancelled_and_hands_its_serials_back(store):
    async with running(store) as ledger:
        batch = await ledger.create_batch(new_batch("WO-1"))
        await ledger.release(batch, random_plan(7))
        assert await ledger.cancel(batch, reason="order withdrawn", operator="sup-eva", return_to_pool=False) == 7
        assert (await ledger.counts(batch))["returned"] == 7
        assert (await ledger.batch(batch)).state is BatchState.CANCELLED


async def test_a_work_order_makes_one_batch(store):
    async with running(store) as ledger:
        batch = await ledger.create_batch(new_batch("WO-1"))
        with pytest.raises(BatchError) as caught:
            await ledger.create_batch(new_batch("WO-1", lot="L9"))
        assert str(caught.value) == (
            f"work order WO-1 was imported already as batch {batch} (created); a work order makes one batch"
        )
        assert len(await ledger.batches()) == 1


async def test_closing_with_serials_in_doubt_says_how_many_and_what_to_do(store):
    async with running(store) as ledger:
        batch = await running_batch(ledger, 10)
        sent = [serial_id for serial_id, _, _ in await ledger.next_to_print(batch, 4, device="tij-1")]
        await ledger.move(sent[:1], S.PRINTED, reason="printed")
        assert await ledger.recover_in_flight("daemon restarted") == 4
        await ledger.complete(batch)
        with pytest.raises(ReconciliationError) as caught:
            await ledger.close(batch, operator="sup-eva", return_to_pool=False)
        assert str(caught.value) == (
            f"cannot close batch {batch} (work order WO-1, lot L1): "
            "4 serials are in doubt: re-inspect them (commissioned) or decommission them"
        )
        # The refused close changed nothing: the never-printed serials are still allocated.
        counts = await ledger.counts(batch)
        assert (counts["allocated"], counts["in_doubt"], counts["returned"]) == (6, 4, 0)
        await ledger.move(sent[:2], S.COMMISSIONED, reason="re-inspected good", operator="qa-anna")
        await ledger.move(sent[2:], S.DESTROYED, reason="decommissioned", operator="qa-anna")
        report = await ledger.close(batch, operator="sup-eva", return_to_pool=False)
        assert report["balanced"]
        assert report["equation"] == "allocated 10 = commissioned 2 + decommissioned 2 + returned 6"
        assert await ledger.reconciliation(batch) == report


async def test_release_from_an_empty_pool_says_how_many_to_import(store):
    async with running(store) as ledger:
        batch = await ledger.create_batch(new_batch("WO-1", source="upstream_list"))
        await ledger.import_pool(gtin=GTIN, serials=[f"UP{n:06d}" for n in range(4)], source="l3.yaml")
        plan = AllocationPlan(10, Origin.UPSTREAM)
        with pytest.raises(PoolExhaustedError) as caught:
            await ledger.release(batch, plan)
        assert str(caught.value) == (
            f"batch {batch} (work order WO-1, lot L1) needs 10 serials for GTIN {GTIN} but the pool holds 4 "
            "(allocated and available): import 6 more, then release again"
        )
        assert (await ledger.batch(batch)).state is BatchState.CREATED
        assert await ledger.pool_available(GTIN) == {"serials": 4, "codes": 0}
        await ledger.import_pool(gtin=GTIN, serials=[f"UP{n:06d}" for n in range(4, 10)], source="l3-more.yaml")
        await ledger.release(batch, plan)
        assert (await ledger.counts(batch))["allocated"] == 10
        assert await ledger.pool_available(GTIN) == {"serials": 0, "codes": 0}


async def test_pool_exhausted_message_counts_the_whole_shortfall_of_a_large_batch(store):
    async with running(store) as ledger:
        batch = await ledger.create_batch(new_batch("WO-1", source="upstream_list"))
        await ledger.import_pool(gtin=GTIN, serials=[f"UP{n:06d}" for n in range(5000)], source="l3.yaml")
        with pytest.raises(PoolExhaustedError) as caught:
            await ledger.release(batch, AllocationPlan(25_000, Origin.UPSTREAM))
        assert "the pool holds 5,000" in str(caught.value)
        assert "import 20,000 more" in str(caught.value)


async def test_a_cancelled_batch_whose_serials_went_back_to_the_pool_still_balances(store):
    async with running(store) as ledger:
        batch = await ledger.create_batch(new_batch("WO-1", source="upstream_list"))
        await ledger.import_pool(gtin=GTIN, serials=[f"UP{n:06d}" for n in range(5)], source="l3.yaml")
        await ledger.release(batch, AllocationPlan(5, Origin.UPSTREAM))
        assert await ledger.cancel(batch, reason="order withdrawn", operator="sup-eva", return_to_pool=True) == 5
        assert await ledger.pool_available(GTIN) == {"serials": 5, "codes": 0}
        report = await ledger.reconciliation(batch)
        assert report["blocking"] == []
        assert report["returned"] == 5
        assert report["balanced"]
