"""Benchmark of `lineside bench store`: durable serial state transitions per second, and a million-serial batch.

Transitions go through the real SerialLedger and Store (WAL, synchronous=FULL, group commit) on a released,
running batch, in three passes, each with its own rate:

* ``line`` (the headline): the line's own pattern. Feeders draw serials for the printer 50 at a time
  (allocated → sent, one change each), the printer acknowledges each unit (sent → printed, one serial
  per move) and the camera judges it (printed → commissioned, one in 200 rejected), with ``callers``
  units in flight between the feed and the verdict.
* ``single``: every move one serial (sent → printed → commissioned), ``callers`` callers at once.
* ``grouped``: every move 16 serials, ``callers`` callers at once.

A transition is one serial changing state, recorded with its serial_history row. The baseline, in the
same run, makes the line's transitions on a plain sqlite3 connection to a database with the same schema
(WAL, synchronous=FULL), one COMMIT per transition. The million-serial batch runs in a child process
(edge.serials.bench_million) so that its peak memory is that of the work alone.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from edge.serials import ops
from edge.serials.bench_million import (
    BENCH_CAMERA,
    BENCH_PRINTER,
    REJECT_EVERY,
    bench_batch,
    peak_rss_mb,
    random_plan,
)
from edge.serials.ledger import SerialLedger
from edge.serials.states import BatchState, SerialState
from edge.store.bench import bench_store
from edge.store.connection import BUSY_TIMEOUT_S
from edge.store.runs import iso_utc
from edge.store.store import DB_NAME, Store, utc_now

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

S = SerialState

TARGET_TRANSITIONS_PER_S = 100_000
TARGET_MILLION_PEAK_RSS_MB = 300
DEFAULT_TRANSITIONS = 300_000
DEFAULT_CALLERS = 512
DEFAULT_MILLION_SERIALS = 1_000_000
# Serials the print feeder draws per change, and serials per move in the grouped pass.
FEED_GROUP = 50
GROUPED_MOVE = 16
# Units taken through the line's three transitions with one COMMIT each: a few thousand transitions
# at a few thousand commits per second.
BASELINE_UNITS = 1_000
# Changes of the generic store pass (edge.store.bench), reported in the details: well under a second.
GENERIC_CHANGES = 50_000
# Serials drawn per change when preparing the single and grouped passes (not timed).
PREPARE_CHUNK = 20_000
# The million-serial child may take this long (about a minute at full size here) before it is given up.
MILLION_TIMEOUT_S = 1_800.0


async def bench_serials(
    state_dir: Path,
    *,
    transitions: int = DEFAULT_TRANSITIONS,
    callers: int = DEFAULT_CALLERS,
    million_serials: int | None = DEFAULT_MILLION_SERIALS,
    generic_changes: int = GENERIC_CHANGES,
    baseline_units: int = BASELINE_UNITS,
) -> dict[str, Any]:
    """Run every pass in databases under state_dir (which should be empty) and return the JSON result.

    transitions is about how many each of the three passes makes; million_serials None skips the
    million-serial batch, generic_changes 0 the generic store pass. The baseline takes baseline_units
    units through the line's three transitions.
    """
    if transitions < 1 or callers < 1 or baseline_units < 1:
        raise ValueError("transitions, callers and baseline_units must be at least 1")
    if million_serials is not None and million_serials < 1:
        raise ValueError("million_serials must be at least 1 (or None to skip the batch)")
    passes, on_disk = await _ledger_passes(state_dir / "ledger", transitions, callers)
    baseline = await _baseline(state_dir / "baseline", baseline_units)
    details: dict[str, Any] = {
        "callers": callers,
        "feed_group": FEED_GROUP,
        "reject_every": REJECT_EVERY,
        **{name: result.as_dict() for name, result in passes.items()},
        "on_disk": on_disk,
        "baseline": baseline.as_dict(),
        "speedup_over_baseline": round(passes["line"].rate / baseline.rate, 1),
    }
    if generic_changes > 0:
        generic = await bench_store(state_dir / "generic", changes=generic_changes, batch_concurrency=1024)
        details["generic_store"] = {
            "what": "one-row UPDATEs through Store.execute, no ledger",
            "changes_per_s": generic["headline"]["value"],
            **{key: generic["details"][key] for key in ("changes", "batch_concurrency", "execute", "write_fn")},
        }
    if million_serials is not None:
        details["million_batch"] = await million_batch(state_dir / "million", million_serials)
    details["sqlite_version"] = sqlite3.sqlite_version
    details["python"] = sys.version.split()[0]
    details["cpus"] = os.cpu_count()
    details["peak_rss_mb_parent"] = peak_rss_mb()
    return {
        "headline": {
            "metric": "durable_transitions_per_s",
            "value": round(passes["line"].rate),
            "unit": "transitions/s",
            "target": TARGET_TRANSITIONS_PER_S,
        },
        "baseline": {
            "name": "one commit per transition (plain sqlite3, WAL, synchronous=FULL)",
            "value": round(baseline.rate),
            "unit": "transitions/s",
        },
        "details": details,
    }


@dataclass(frozen=True, slots=True)
class _Pass:
    """One measured pass: serials moved (transitions), moves asked for, seconds, commits."""

    what: str
    transitions: int
    moves: int
    elapsed_s: float
    commits: int

    @property
    def rate(self) -> float:
        return self.transitions / self.elapsed_s

    def as_dict(self) -> dict[str, Any]:
        commits = max(self.commits, 1)
        return {
            "what": self.what,
            "transitions_per_s": round(self.rate),
            "transitions": self.transitions,
            "moves": self.moves,
            "elapsed_s": round(self.elapsed_s, 4),
            "commits": self.commits,
            "mean_moves_per_commit": round(self.moves / commits, 1),
            "mean_transitions_per_commit": round(self.transitions / commits, 1),
        }


async def _ledger_passes(state_dir: Path, transitions: int, callers: int) -> tuple[dict[str, _Pass], dict[str, Any]]:
    """Run the line, single and grouped passes on one running batch; return them and the check on disk."""
    line_units = max(transitions // 3, 1)
    single_units = max(transitions // 2, 1)
    grouped_units = max(transitions // 2 // GROUPED_MOVE, 1) * GROUPED_MOVE
    total = line_units + single_units + grouped_units
    store = Store.open(state_dir)
    ledger = SerialLedger(store, line_id=bench_batch("", 1).line_id)
    try:
        async with asyncio.TaskGroup() as group:
            writer = group.create_task(store.run(), name="bench store writer")
            rounds = group.create_task(ledger.run(), name="bench ledger rounds")
            batch_id = await ledger.create_batch(bench_batch("BENCH-TRANSITIONS", total))
            await ledger.release(batch_id, random_plan(total))
            await ledger.set_state(batch_id, BatchState.RUNNING, reason="benchmark")
            # Serials for the single and grouped passes go to the printer first (not timed), so the
            # line pass draws the rest.
            sent = await _prepare(ledger, batch_id, single_units + grouped_units)
            passes = {
                "line": await _line_pass(ledger, batch_id, line_units, callers),
                "single": await _moves_pass(ledger, batch_id, sent[:single_units], 1, callers),
                "grouped": await _moves_pass(ledger, batch_id, sent[single_units:], GROUPED_MOVE, callers),
            }
            expected = single_units + grouped_units + sum(result.transitions for result in passes.values())
            on_disk = await store.read(lambda conn: _on_disk(conn, batch_id))
            on_disk["expected_history_rows"] = expected
            await ledger.aclose()
            await rounds
            await store.aclose()
            await writer
    finally:
        store.close()
    return passes, on_disk


async def _prepare(ledger: SerialLedger, batch_id: int, count: int) -> list[int]:
    """Draw count serials of the batch for the printer; return their ids in order."""
    ids: list[int] = []
    while len(ids) < count:
        rows = await ledger.next_to_print(batch_id, min(PREPARE_CHUNK, count - len(ids)), device=BENCH_PRINTER)
        if not rows:
            raise RuntimeError(f"the batch ran out of serials after {len(ids)} of {count}")
        ids.extend(row[0] for row in rows)
    return ids


async def _line_pass(ledger: SerialLedger, batch_id: int, units: int, callers: int) -> _Pass:
    """Feed, print and judge units one at a time each, callers units in flight; every move durable."""
    ready: asyncio.Queue[int] = asyncio.Queue()
    space = asyncio.Event()
    # Units the feeders may still draw, and units that may still enter the line (callers in flight at most).
    left = [units, callers]
    tally = [0, 0, 0]  # transitions, moves, rows fed
    move = ledger.move
    feed = min(FEED_GROUP, callers)

    async def feeder() -> None:
        while left[0] > 0:
            want = min(feed, left[0])
            while left[1] < want:
                space.clear()
                await space.wait()
            if left[0] <= 0:
                return
            want = min(want, left[0])
            left[0] -= want
            left[1] -= want
            rows = await ledger.next_to_print(batch_id, want, device=BENCH_PRINTER)
            if len(rows) != want:
                raise RuntimeError(f"asked the batch for {want} serials to print, got {len(rows)}")
            tally[0] += want
            tally[1] += 1
            for row in rows:
                ready.put_nowait(row[0])

    async def unit() -> None:
        while (serial_id := await ready.get()) != 0:
            moved = await move((serial_id,), S.PRINTED, reason="printed", device=BENCH_PRINTER, batch_id=batch_id)
            if serial_id % REJECT_EVERY:
                moved += await move((serial_id,), S.COMMISSIONED, reason="verified good", device=BENCH_CAMERA,
                                    batch_id=batch_id)
            else:
                moved += await move((serial_id,), S.REJECTED, reason="no read", device=BENCH_CAMERA,
                                    batch_id=batch_id)
            tally[0] += moved
            tally[1] += 2
            left[1] += 1
            if left[1] >= feed:
                space.set()

    commits = ledger.store.stats.commits
    started = time.perf_counter()
    async with asyncio.TaskGroup() as group:
        for _ in range(callers):
            group.create_task(unit())
        async with asyncio.TaskGroup() as feeders:
            for _ in range(max(1, callers // feed)):
                feeders.create_task(feeder())
        for _ in range(callers):
            ready.put_nowait(0)  # row ids start at 1: 0 tells a unit task the batch is done
    elapsed = time.perf_counter() - started
    what = f"feed {FEED_GROUP} per change, then print and judge one serial per move, {callers} units in flight"
    return _Pass(what, tally[0], tally[1], elapsed, ledger.store.stats.commits - commits)


async def _moves_pass(ledger: SerialLedger, batch_id: int, ids: Sequence[int], size: int, callers: int) -> _Pass:
    """Move sent serials to printed then commissioned, size serials per move, callers callers at once."""
    groups = [ids[start : start + size] for start in range(0, len(ids), size)]
    tally = [0, 0]
    move = ledger.move

    async def caller(first: int) -> None:
        for index in range(first, len(groups), callers):
            serials = groups[index]
            moved = await move(serials, S.PRINTED, reason="printed", device=BENCH_PRINTER, batch_id=batch_id)
            moved += await move(serials, S.COMMISSIONED, reason="verified good", device=BENCH_CAMERA,
                                batch_id=batch_id)
            tally[0] += moved
            tally[1] += 2

    commits = ledger.store.stats.commits
    started = time.perf_counter()
    async with asyncio.TaskGroup() as group:
        for first in range(min(callers, len(groups))):
            group.create_task(caller(first))
    elapsed = time.perf_counter() - started
    what = f"sent → printed → commissioned, {size} serial(s) per move, {callers} callers"
    return _Pass(what, tally[0], tally[1], elapsed, ledger.store.stats.commits - commits)


def _on_disk(conn: sqlite3.Connection, batch_id: int) -> dict[str, Any]:
    """Return what the database holds of the batch's moves after allocation: history rows and states."""
    history_rows = conn.execute(
        "SELECT count(*) FROM serial_history WHERE transition_id IN"
        " (SELECT id FROM transition WHERE batch_id = ? AND to_state <> ?)",
        (batch_id, int(S.ALLOCATED)),
    ).fetchone()[0]
    recorded = conn.execute(
        "SELECT total(count) FROM transition WHERE batch_id = ? AND to_state <> ?", (batch_id, int(S.ALLOCATED))
    ).fetchone()[0]
    transition_rows = conn.execute(
        "SELECT count(*) FROM transition WHERE batch_id = ? AND to_state <> ?", (batch_id, int(S.ALLOCATED))
    ).fetchone()[0]
    by_state = {name: count for name, count in ops.counts(conn, batch_id).items() if count}
    return {
        "history_rows": int(history_rows),
        "transition_rows": int(transition_rows),
        "serials_in_transition_rows": int(recorded),
        "serials_by_state": by_state,
    }


# -- the baseline ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Baseline:
    transitions: int
    elapsed_s: float

    @property
    def rate(self) -> float:
        return self.transitions / self.elapsed_s

    def as_dict(self) -> dict[str, Any]:
        return {
            "what": "UPDATE serial + INSERT transition + INSERT serial_history, one COMMIT per transition",
            "transitions_per_s": round(self.rate),
            "transitions": self.transitions,
            "elapsed_s": round(self.elapsed_s, 4),
        }


async def _baseline(state_dir: Path, units: int) -> _Baseline:
    """Create a running batch of units serials through the store (the real schema), then move them by hand."""
    async with Store.open(state_dir) as store:
        ledger = SerialLedger(store, line_id=bench_batch("", 1).line_id)
        batch_id = await ledger.create_batch(bench_batch("BENCH-BASELINE", units))
        await ledger.release(batch_id, random_plan(units))
        await ledger.set_state(batch_id, BatchState.RUNNING, reason="benchmark")
    return await asyncio.to_thread(_one_commit_per_transition, state_dir / DB_NAME, batch_id)


def _one_commit_per_transition(db: Path, batch_id: int) -> _Baseline:
    """Take each serial of the batch through sent, printed and commissioned (or rejected), one COMMIT each."""
    conn = sqlite3.connect(db, timeout=BUSY_TIMEOUT_S, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")
        ids = [row[0] for row in conn.execute("SELECT id FROM serial WHERE batch_id = ? ORDER BY id", (batch_id,))]
        steps = 0
        started = time.perf_counter()
        for serial_id in ids:
            judged = (S.PRINTED, S.COMMISSIONED if serial_id % REJECT_EVERY else S.REJECTED)
            for src, dst, device in ((S.ALLOCATED, S.SENT, BENCH_PRINTER), (S.SENT, S.PRINTED, BENCH_PRINTER),
                                     (*judged, BENCH_CAMERA)):
                conn.execute("BEGIN IMMEDIATE")
                transition_id = conn.execute(
                    "INSERT INTO transition (at, batch_id, to_state, count, device, reason, operator)"
                    " VALUES (?, ?, ?, 1, ?, ?, NULL)",
                    (iso_utc(utc_now()), batch_id, int(dst), device, dst.label),
                ).lastrowid
                conn.execute("UPDATE serial SET state = ? WHERE id = ?", (int(dst), serial_id))
                conn.execute(
                    "INSERT INTO serial_history (serial_id, transition_id, from_state) VALUES (?, ?, ?)",
                    (serial_id, transition_id, int(src)),
                )
                conn.execute("COMMIT")
                steps += 1
        return _Baseline(steps, time.perf_counter() - started)
    finally:
        conn.close()


# -- the million-serial batch ---------------------------------------------------------------------


async def million_batch(state_dir: Path, serials: int) -> dict[str, Any]:
    """Run the million-serial batch in a fresh child process; return its figures and the memory verdict."""
    command = [sys.executable, "-m", "edge.serials.bench_million", "--state-dir", str(state_dir),
               "--serials", str(serials)]
    done = await asyncio.to_thread(
        subprocess.run, command, capture_output=True, text=True, timeout=MILLION_TIMEOUT_S, check=False
    )
    if done.returncode != 0:
        tail = "\n".join(done.stderr.strip().splitlines()[-5:])
        raise RuntimeError(f"the million-serial batch failed (exit {done.returncode}): {tail}")
    result: dict[str, Any] = json.loads(done.stdout)
    result["target_peak_rss_mb"] = TARGET_MILLION_PEAK_RSS_MB
    result["within_memory_target"] = result["peak_rss_mb"] < TARGET_MILLION_PEAK_RSS_MB
    return result
