"""A write whose await returned survives SIGKILL of the process right after (invariant 4)."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import sys
from pathlib import Path

import pytest

from edge.store import DB_NAME, Store

ROOT = Path(__file__).resolve().parents[2]
CHILD = Path(__file__).with_name("store_child.py")

# The child starts Python, imports the store and opens a database: well under a second here.
# 30 s only turns a hang into a failure instead of a stuck suite.
CHILD_LINE_TIMEOUT_S = 30.0


async def start_child(state_dir: Path, writes: int, callers: int) -> asyncio.subprocess.Process:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    return await asyncio.create_subprocess_exec(
        sys.executable, str(CHILD), str(state_dir), str(writes), str(callers),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
    )


async def read_line(process: asyncio.subprocess.Process) -> str:
    assert process.stdout is not None
    line = await asyncio.wait_for(process.stdout.readline(), CHILD_LINE_TIMEOUT_S)
    if not line:
        assert process.stderr is not None
        error = await asyncio.wait_for(process.stderr.read(), CHILD_LINE_TIMEOUT_S)
        pytest.fail(f"store child ended early: {error.decode(errors='replace')}")
    return line.decode().strip()


async def crash_after_durable_writes(
    state_dir: Path, *, writes: int, callers: int, kill_after: int
) -> set[int]:
    """Run the child, SIGKILL it as soon as kill_after writes are durable; return every id reported."""
    process = await start_child(state_dir, writes, callers)
    killed = False
    try:
        assert await read_line(process) == "READY"
        seen = [await read_line(process) for _ in range(kill_after)]
        os.kill(process.pid, signal.SIGKILL)
        killed = True
        assert process.stdout is not None
        rest = await asyncio.wait_for(process.stdout.read(), CHILD_LINE_TIMEOUT_S)
    finally:
        # Process.kill() polls (and so reaps) the child first, stealing its exit status from
        # asyncio's watcher: call it only when the SIGKILL above was never sent.
        if not killed:
            process.kill()
        await asyncio.wait_for(process.wait(), CHILD_LINE_TIMEOUT_S)
    assert process.returncode == -signal.SIGKILL
    reported = set()
    for line in [*seen, *rest.decode().splitlines()]:
        word, _, number = line.partition(" ")
        if word == "DURABLE" and number.isdigit():  # a line cut by the kill is not a report
            reported.add(int(number))
    assert len(reported) >= kill_after
    return reported


async def stored_ids(state_dir: Path) -> set[int]:
    """Reopen the store as the restarted daemon would (lock, check, recovery) and list the rows."""
    store = Store.open(state_dir)
    try:
        rows = await store.read(lambda conn: conn.execute("SELECT id FROM durable").fetchall())
    finally:
        await store.aclose()
    return {row_id for (row_id,) in rows}


async def test_a_single_reported_write_survives_sigkill(tmp_path):
    reported = await crash_after_durable_writes(tmp_path, writes=1, callers=1, kill_after=1)
    assert reported <= await stored_ids(tmp_path)


async def test_every_reported_write_of_a_burst_survives_sigkill(tmp_path):
    for _ in range(3):  # each round also recovers the WAL the previous kill left behind
        # 200 callers each writing in turn: the kill lands while later commits are in flight.
        reported = await crash_after_durable_writes(
            tmp_path, writes=5000, callers=200, kill_after=300
        )
        stored = await stored_ids(tmp_path)
        missing = reported - stored
        assert not missing, f"writes reported durable but lost: {sorted(missing)}"


async def test_database_is_sound_after_sigkill(tmp_path):
    await crash_after_durable_writes(tmp_path, writes=5000, callers=50, kill_after=100)
    conn = sqlite3.connect(tmp_path / DB_NAME)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    finally:
        conn.close()
