"""Crash-test child: writes through the store and prints DURABLE <id> as each write's await returns.

Usage: store_child.py STATE_DIR WRITES CALLERS. Prints READY once the table exists, then CALLERS
concurrent callers insert WRITES rows between them, each awaiting its inserts one after another
(so commits follow each other until the end), and blocks forever; the parent kills it with SIGKILL.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from edge.store import Store

CREATE = (
    "CREATE TABLE IF NOT EXISTS durable ("
    " id INTEGER PRIMARY KEY, payload TEXT NOT NULL, child_pid INTEGER NOT NULL) STRICT"
)


def say(line: str) -> None:
    """Write one whole line and flush it, so the parent sees it before anything that follows."""
    sys.stdout.write(f"{line}\n")
    sys.stdout.flush()


async def main(state_dir: Path, writes: int, callers: int) -> None:
    store = Store.open(state_dir)
    pid = os.getpid()

    async def caller(first: int) -> None:
        for number in range(first, writes, callers):
            row_id = await store.execute(
                "INSERT INTO durable (payload, child_pid) VALUES (?, ?)", (f"write {number}", pid)
            )
            say(f"DURABLE {row_id}")

    async with asyncio.TaskGroup() as group:
        group.create_task(store.run())
        await store.write(lambda conn: conn.execute(CREATE))
        say("READY")
        for first in range(callers):
            group.create_task(caller(first))
        await asyncio.Event().wait()  # until SIGKILL


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])))
