"""SIGKILL the serial ledger mid-batch, again and again: nothing acknowledged is lost, nothing is used twice.

The child (serial_child.py) allocates a batch in chunks and drives its serials through the life cycle from
several concurrent printers, printing ``DURABLE <id> <state>`` after each move's await returns. The parent
kills it after a seeded random number of reports, then reopens the store as the restarted daemon would and
checks DESIGN invariants 1, 2 and 4 straight from the tables.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sys
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from edge.errors import ReconciliationError
from edge.serials import ops
from edge.serials.generate import RandomSerials
from edge.serials.ledger import SerialLedger
from edge.serials.ops import AllocationPlan, Origin
from edge.serials.states import SERIAL_TRANSITIONS, BatchState, SerialState
from edge.store import Store
from tests.edge.serial_child import ALPHABET, LINE, SERIAL_LENGTH, WORK_ORDER

S = SerialState
ROOT = Path(__file__).resolve().parents[2]
CHILD = Path(__file__).with_name("serial_child.py")

# The child starts Python and opens the store in a tenth of a second here; 30 s only turns a hang
# into a failure instead of a stuck suite.
CHILD_LINE_TIMEOUT_S = 30.0
LABELS = {state.label: state for state in SerialState}


def reachable_from(state: SerialState) -> frozenset[SerialState]:
    """Every state a serial in state may be in later, state included."""
    seen = {state}
    todo = [state]
    while todo:
        for nxt in SERIAL_TRANSITIONS[todo.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return frozenset(seen)


REACHABLE = {state: reachable_from(state) for state in SerialState}


@dataclass
class Run:
    """What one child said before it was killed."""

    lines: list[str] = field(default_factory=list)
    durable: list[tuple[int, SerialState]] = field(default_factory=list)
    allocated: list[int] = field(default_factory=list)
    recovered: int = 0
    done: bool = False


async def run_child(
    state_dir: Path, *, seed: int, count: int, chunk: int, workers: int, kill_after: int, counting: tuple[str, ...]
) -> Run:
    """Run the child; SIGKILL it once kill_after lines starting with one of counting are read (or it says DONE)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(CHILD), str(state_dir), str(seed), str(count), str(chunk), str(workers),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env, cwd=ROOT,
    )
    assert process.stdout is not None
    assert process.stderr is not None
    raw: list[bytes] = []
    killed = False
    try:
        counted = 0
        while counted < kill_after:
            line = await asyncio.wait_for(process.stdout.readline(), CHILD_LINE_TIMEOUT_S)
            if not line:
                error = await asyncio.wait_for(process.stderr.read(), CHILD_LINE_TIMEOUT_S)
                pytest.fail(f"serial child ended early: {error.decode(errors='replace')}")
            raw.append(line)
            if line.startswith(b"DONE"):
                break
            if line.split(b" ", 1)[0].strip().decode() in counting:
                counted += 1
        os.kill(process.pid, signal.SIGKILL)
        killed = True
        rest = await asyncio.wait_for(process.stdout.read(), CHILD_LINE_TIMEOUT_S)
        raw.extend(rest.splitlines(keepends=True))
        await asyncio.wait_for(process.stderr.read(), CHILD_LINE_TIMEOUT_S)
    finally:
        # Process.kill() reaps the child first, stealing its exit status from asyncio's watcher:
        # call it only when the SIGKILL above was never sent.
        if not killed:
            process.kill()
        await asyncio.wait_for(process.wait(), CHILD_LINE_TIMEOUT_S)
    assert process.returncode == -signal.SIGKILL
    run = Run()
    for line in raw:
        if not line.endswith(b"\n"):
            continue  # cut by the kill: not a report
        words = line.decode().split()
        run.lines.append(" ".join(words))
        if len(words) == 3 and words[0] == "DURABLE" and words[1].isdigit() and words[2] in LABELS:
            run.durable.append((int(words[1]), LABELS[words[2]]))
        elif len(words) == 2 and words[0] == "ALLOCATED":
            run.allocated.append(int(words[1]))
        elif len(words) == 2 and words[0] == "RECOVERED":
            run.recovered += int(words[1])
        elif words == ["DONE"]:
            run.done = True
    return run


@asynccontextmanager
async def reopened(state_dir: Path):
    """Reopen the state directory as the restarted daemon does: the store's writer and the ledger's rounds."""
    store = Store.open(state_dir)
    ledger = SerialLedger(store, line_id=LINE)
    try:
        async with asyncio.TaskGroup() as group:
            group.create_task(store.run())
            rounds = group.create_task(ledger.run())
            try:
                yield ledger
            finally:
                await ledger.aclose()
                await rounds
                await store.aclose()
    finally:
        store.close()


def snapshot(conn):
    """Everything the checks need, read in one transaction."""
    batch = ops.find_batch(conn, WORK_ORDER)
    serials = {row[0]: (S(row[1]), row[2]) for row in conn.execute("SELECT id, state, batch_id FROM serial")}
    steps = conn.execute(
        "SELECT h.serial_id, h.from_state, t.to_state, t.batch_id FROM serial_history AS h"
        " JOIN transition AS t ON t.id = h.transition_id ORDER BY h.serial_id, h.transition_id"
    ).fetchall()
    duplicates = conn.execute(
        "SELECT gtin, serial, count(*) FROM serial GROUP BY gtin, serial HAVING count(*) > 1"
    ).fetchall()
    rows_of_batch = conn.execute("SELECT count(*) FROM serial WHERE batch_id = ?", (batch.id,)).fetchone()[0]
    integrity = conn.execute("PRAGMA quick_check").fetchall()
    return {
        "batch": batch,
        "serials": serials,
        "steps": steps,
        "duplicates": duplicates,
        "rows_of_batch": rows_of_batch,
        "allocated_total": ops.allocated_total(conn, batch.id),
        "counts": ops.counts(conn, batch.id),
        "integrity": integrity,
    }


async def check_after_kill(state_dir: Path, claims: dict[int, set[SerialState]]) -> dict:
    """Reopen the store and check invariants 1 and 4 and the batch's accounting; return the snapshot."""
    async with reopened(state_dir) as ledger:
        seen = await ledger.store.read(snapshot)
    assert seen["integrity"] == [("ok",)]
    batch = seen["batch"]
    serials = seen["serials"]
    # Invariant 1: a serial exists once per GTIN ...
    assert seen["duplicates"] == []
    # ... and each serial's history is one legal chain, in one batch, ending where the serial is now.
    last: dict[int, SerialState] = {}
    batches: dict[int, set[int]] = {}
    for serial_id, src, dst, batch_id in seen["steps"]:
        expected = last.get(serial_id, S.AVAILABLE)
        assert S(src) is expected, f"serial #{serial_id}: history goes on from {S(src).label}, not {expected.label}"
        assert S(dst) in SERIAL_TRANSITIONS[S(src)], f"serial #{serial_id}: {S(src).label} → {S(dst).label}"
        last[serial_id] = S(dst)
        if batch_id is not None:
            batches.setdefault(serial_id, set()).add(batch_id)
    assert last == {serial_id: state for serial_id, (state, _) in serials.items()}
    for serial_id, (_, batch_id) in serials.items():
        assert batches[serial_id] == {batch_id}, f"serial #{serial_id} was in batches {batches[serial_id]}"
    # Invariant 4: every move reported durable is still there, or the serial has moved on from it legally.
    lost = {
        serial_id: f"{'/'.join(sorted(state.label for state in states))} → {serials[serial_id][0].label}"
        for serial_id, states in claims.items()
        if serial_id not in serials or any(serials[serial_id][0] not in REACHABLE[state] for state in states)
    }
    assert not lost, f"moves reported durable but lost (reported → now): {lost}"
    # Allocation is all or nothing per chunk: the log and the rows agree.
    assert seen["allocated_total"] == seen["rows_of_batch"] == sum(seen["counts"].values())
    assert batch.state in (BatchState.CREATED, BatchState.RELEASED, BatchState.RUNNING)
    return seen


def remember(claims: dict[int, set[SerialState]], run: Run) -> None:
    for serial_id, state in run.durable:
        claims.setdefault(serial_id, set()).add(state)


async def settle_and_close(state_dir: Path, count: int) -> None:
    """After the last kill: recover what was in flight, settle the doubt, complete, close, reconcile."""
    async with reopened(state_dir) as ledger:
        batch = (await ledger.batch(WORK_ORDER)).id
        before = await ledger.counts(batch)
        assert await ledger.recover_in_flight("restarted after the last crash") == before["sent"] + before["printed"]
        after = await ledger.counts(batch)
        assert after["sent"] == after["printed"] == 0
        assert after["in_doubt"] == before["in_doubt"] + before["sent"] + before["printed"]
        assert await ledger.complete(batch, operator="sup-eva") == 0
        doubtful = [
            serial_id for serial_id, _ in
            await ledger.store.read(lambda conn: ops.serials_in(conn, batch, S.IN_DOUBT, count))
        ]
        if doubtful:
            with pytest.raises(ReconciliationError, match=rf"{len(doubtful):,} serials are in doubt"):
                await ledger.close(batch, operator="sup-eva", return_to_pool=False)
            good, bad = doubtful[::2], doubtful[1::2]
            await ledger.move(good, S.COMMISSIONED, reason="re-inspected good", operator="qa-anna")
            if bad:
                await ledger.move(bad, S.DESTROYED, reason="decommissioned after a crash", operator="qa-anna")
        settled = await ledger.counts(batch)
        report = await ledger.close(batch, operator="sup-eva", return_to_pool=False)
        assert report["balanced"], report["blocking"]
        assert report["allocated"] == count
        decommissioned = sum(report["decommissioned"].values())
        assert report["allocated"] == report["commissioned"] + decommissioned + report["returned"]
        assert report["returned"] == report["returned_at_close"] == settled["allocated"]
        assert report["commissioned"] == settled["commissioned"]
        assert await ledger.reconciliation(batch) == report  # the frozen report
        frozen = await ledger.store.read(lambda conn: ops.frozen_report(conn, batch))
        assert frozen == report
        assert (await ledger.batch(batch)).state is BatchState.CLOSED
        assert await ledger.active_batch() is None


@pytest.mark.timeout(240)
async def test_moves_reported_durable_survive_sigkill_and_the_batch_still_reconciles(tmp_path):
    rng = random.Random(20270301)
    claims: dict[int, set[SerialState]] = {}
    count = 3000
    recovered = 0
    for iteration in range(14):
        run = await run_child(
            tmp_path, seed=1000 + iteration, count=count, chunk=ops.CHUNK, workers=4,
            kill_after=rng.randint(1, 500), counting=("DURABLE",),
        )
        remember(claims, run)
        recovered += run.recovered
        seen = await check_after_kill(tmp_path, claims)
        assert seen["allocated_total"] == count
        assert not run.done, "the batch ran out of serials before the last kill; make it larger"
    assert recovered > 0, "no restart found serials in flight to put in doubt"
    assert len(claims) > 500
    await settle_and_close(tmp_path, count)


@pytest.mark.timeout(240)
async def test_a_release_killed_between_chunks_resumes_without_duplicates(tmp_path):
    rng = random.Random(20270302)
    claims: dict[int, set[SerialState]] = {}
    count, chunk = 30_000, 1_000
    chunks = count // chunk
    done_chunks = 0
    # Kill while the batch's serials are being allocated, a few chunks further each time.
    for iteration in range(4):
        # Killed after BATCH and 0 to 4 chunks: while the next chunk is being generated or committed.
        run = await run_child(
            tmp_path, seed=2000 + iteration, count=count, chunk=chunk, workers=4, kill_after=1 + rng.randint(0, 4),
            counting=("BATCH", "ALLOCATED"),
        )
        assert run.allocated == [chunk * (done_chunks + n + 1) for n in range(len(run.allocated))]
        seen = await check_after_kill(tmp_path, claims)
        done_chunks = seen["allocated_total"] // chunk
        assert seen["allocated_total"] % chunk == 0, "a chunk is allocated whole or not at all"
        assert seen["allocated_total"] >= (run.allocated[-1] if run.allocated else 0)
        assert seen["batch"].state is BatchState.CREATED
        assert done_chunks < chunks
    assert done_chunks > 0
    # The parent finishes the release itself, with a generator of its own: exactly count serials, none twice.
    async with reopened(tmp_path) as ledger:
        batch = (await ledger.batch(WORK_ORDER)).id
        generator = RandomSerials.seeded(ALPHABET, SERIAL_LENGTH, 7)
        await ledger.release(batch, AllocationPlan(count, Origin.RANDOM, generator))
        assert (await ledger.batch(batch)).state is BatchState.RELEASED
    seen = await check_after_kill(tmp_path, claims)
    assert seen["rows_of_batch"] == seen["allocated_total"] == count
    assert seen["counts"]["allocated"] == count
    # Then the line runs it, and is killed while printing.
    for iteration in range(4):
        run = await run_child(
            tmp_path, seed=3000 + iteration, count=count, chunk=chunk, workers=3,
            kill_after=rng.randint(1, 400), counting=("DURABLE",),
        )
        remember(claims, run)
        await check_after_kill(tmp_path, claims)
    await settle_and_close(tmp_path, count)
