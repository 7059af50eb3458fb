"""Generic store benchmark: one-row durable changes/s through the Store, against one commit per change.

Reported in the details of `lineside bench store` (edge.serials.bench), whose headline is serial transitions.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

from edge.store.connection import BUSY_TIMEOUT_S
from edge.store.store import DEFAULT_GROUP_WINDOW_S, MAX_BATCH_CHANGES, Store

if TYPE_CHECKING:
    from pathlib import Path

TARGET_CHANGES_PER_S = 100_000

# One commit per change runs at a few thousand per second; this many gives a stable rate in about
# a second without making the benchmark wait on its baseline.
BASELINE_CHANGES = 5_000

_CREATE_TABLE = (
    "CREATE TABLE IF NOT EXISTS bench_serial ("
    " id INTEGER PRIMARY KEY, state INTEGER NOT NULL, changed INTEGER NOT NULL DEFAULT 0)"
)
_UPDATE = "UPDATE bench_serial SET state = ?, changed = changed + 1 WHERE id = ?"
_STATE_PRINTED = 2


async def bench_store(state_dir: Path, *, changes: int, batch_concurrency: int) -> dict[str, Any]:
    """Measure durable changes/s through the store with batch_concurrency callers in flight.

    Each change updates one row of a bench_serial table and is awaited until durable: the
    headline through Store.execute, a second pass through Store.write(fn) in the details. The
    baseline, in the same run, updates rows of a plain WAL + synchronous=FULL database with one
    COMMIT each. state_dir should be empty: the benchmark creates its databases there.
    """
    if changes < 1 or batch_concurrency < 1:
        raise ValueError("changes and batch_concurrency must be at least 1")
    store = Store.open(state_dir / "store")
    try:
        async with asyncio.TaskGroup() as group:
            writer = group.create_task(store.run(), name="bench store writer")
            await store.write(lambda conn: _create_rows(conn, changes))
            by_statement = await _measure(store, _statement_caller, changes, batch_concurrency)
            by_function = await _measure(store, _function_caller, changes, batch_concurrency)
            on_disk = await store.read(_sum_changed)
            await store.aclose()
            await writer
    finally:
        store.close()
    baseline_changes = min(changes, BASELINE_CHANGES)
    baseline_s = await asyncio.to_thread(_one_commit_per_change, state_dir, baseline_changes)
    rate = by_statement.rate
    baseline_rate = baseline_changes / baseline_s
    return {
        "headline": {
            "metric": "durable_state_changes_per_s",
            "value": round(rate),
            "unit": "changes/s",
            "target": TARGET_CHANGES_PER_S,
        },
        "baseline": {
            "name": "one commit per change",
            "value": round(baseline_rate),
            "unit": "changes/s",
        },
        "details": {
            "changes": changes,
            "batch_concurrency": batch_concurrency,
            "execute": by_statement.as_dict(),
            "write_fn": by_function.as_dict(),
            "changes_on_disk": on_disk,
            "changes_expected_on_disk": 2 * changes,
            "group_window_s": DEFAULT_GROUP_WINDOW_S,
            "max_batch_changes": MAX_BATCH_CHANGES,
            "baseline_changes": baseline_changes,
            "baseline_elapsed_s": round(baseline_s, 4),
            "speedup_over_baseline": round(rate / baseline_rate, 1),
            "sqlite_version": sqlite3.sqlite_version,
            "cpus": os.cpu_count(),
        },
    }


@dataclass(frozen=True, slots=True)
class _Pass:
    """One measured pass: changes made, seconds taken, transactions committed."""

    changes: int
    elapsed_s: float
    commits: int

    @property
    def rate(self) -> float:
        return self.changes / self.elapsed_s

    def as_dict(self) -> dict[str, float]:
        return {
            "changes_per_s": round(self.rate),
            "elapsed_s": round(self.elapsed_s, 4),
            "commits": self.commits,
            "mean_changes_per_commit": round(self.changes / max(self.commits, 1), 1),
        }


Caller = Callable[[Store, int, int, int], Coroutine[Any, Any, None]]


async def _measure(store: Store, caller: Caller, changes: int, concurrency: int) -> _Pass:
    """Run changes writes from concurrency callers, each awaiting its writes one after another."""
    commits_before = store.stats.commits
    started = time.perf_counter()
    async with asyncio.TaskGroup() as group:
        for first in range(1, min(concurrency, changes) + 1):
            group.create_task(caller(store, first, changes, concurrency))
    elapsed = time.perf_counter() - started
    return _Pass(changes, elapsed, store.stats.commits - commits_before)


async def _statement_caller(store: Store, first: int, changes: int, step: int) -> None:
    execute = store.execute
    for row in range(first, changes + 1, step):
        await execute(_UPDATE, (_STATE_PRINTED, row))


async def _function_caller(store: Store, first: int, changes: int, step: int) -> None:
    write = store.write
    for row in range(first, changes + 1, step):
        await write(partial(_update_row, row))


def _update_row(row: int, conn: sqlite3.Connection) -> int:
    return conn.execute(_UPDATE, (_STATE_PRINTED, row)).rowcount


def _create_rows(conn: sqlite3.Connection, count: int) -> None:
    conn.execute(_CREATE_TABLE)
    conn.executemany(
        "INSERT OR IGNORE INTO bench_serial (id, state) VALUES (?, 1)",
        ((row,) for row in range(1, count + 1)),
    )


def _sum_changed(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT total(changed) FROM bench_serial").fetchone()[0])


def _one_commit_per_change(state_dir: Path, changes: int) -> float:
    """Update changes rows with one durable COMMIT each; return the seconds it took."""
    path = state_dir / "baseline.db"
    conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("BEGIN")
        _create_rows(conn, changes)
        conn.execute("COMMIT")
        started = time.perf_counter()
        for row in range(1, changes + 1):
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(_UPDATE, (_STATE_PRINTED, row))
            conn.execute("COMMIT")
        return time.perf_counter() - started
    finally:
        conn.close()
