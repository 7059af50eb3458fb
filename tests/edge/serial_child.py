"""Crash-test child: drives one batch's serials through their life and reports each move once it is durable.

Usage: serial_child.py STATE_DIR SEED COUNT CHUNK WORKERS

Opens the store in STATE_DIR and a SerialLedger for line-1 with run() in a TaskGroup, then, as a
restarted daemon would, picks up the batch of work order WO-CRASH where the last run left it:

* none yet: creates it (prints ``BATCH <id>``);
* created: allocates COUNT random serials (seeded with SEED) CHUNK at a time, printing
  ``ALLOCATED <total>`` after each chunk is committed, then ``RELEASED``;
* released: starts it (``RUNNING``);
* running: marks what was in flight in doubt (``RECOVERED <n>``), then WORKERS printers draw serials
  in small groups and take each through print, verdict, sampling and destruction, while one
  re-inspector settles the serials in doubt.

After each awaited move it prints ``DURABLE <serial id> <state>`` (flushed). With nothing left to
draw it prints ``DONE`` and waits; the parent ends it with SIGKILL, usually much earlier.
"""

from __future__ import annotations

import asyncio
import random
import sys
from functools import partial
from pathlib import Path
from typing import Any

from edge.errors import BatchNotFoundError
from edge.serials import ops
from edge.serials.generate import RandomSerials
from edge.serials.ledger import SerialLedger
from edge.serials.ops import AllocationPlan, NewBatch, Origin
from edge.serials.states import BatchState, SerialState
from edge.store import Store
from edge.store.runs import iso_utc
from edge.store.store import utc_now

S = SerialState
LINE = "line-1"
WORK_ORDER = "WO-CRASH"
GTIN = "04012345000016"
ALPHABET = "0123456789ABCDEFGHJKLMNPQRSTUVWXYZ"
SERIAL_LENGTH = 12
IN_DOUBT_LIMIT = 1_000_000


def say(line: str) -> None:
    """Write one whole line and flush it, so the parent sees it before anything that follows."""
    sys.stdout.write(f"{line}\n")
    sys.stdout.flush()


def new_batch(count: int) -> NewBatch:
    return NewBatch(
        line_id=LINE, work_order=WORK_ORDER, product_id="aspirin-500", gtin=GTIN, lot="LCRASH", expiry="271231",
        quantity=count, market="eu-fmd", serial_source="local", product={}, order={},
    )


def plan(count: int, seed: int) -> AllocationPlan:
    return AllocationPlan(count, Origin.RANDOM, RandomSerials.seeded(ALPHABET, SERIAL_LENGTH, seed))


class Line:
    """The printers, camera, QA and re-inspection of one line, as moves on the ledger."""

    def __init__(self, ledger: SerialLedger, batch: int, seed: int) -> None:
        self.ledger = ledger
        self.batch = batch
        self.seed = seed

    async def move(self, ids: list[int], to: SerialState, **how: Any) -> None:
        await self.ledger.move(ids, to, **how)
        for serial_id in ids:
            say(f"DURABLE {serial_id} {to.label}")

    async def printer(self, number: int) -> None:
        rng = random.Random(self.seed * 100 + number)
        device = f"tij-{number}"
        while True:
            group = await self.ledger.next_to_print(self.batch, rng.randint(1, 6), device=device)
            if not group:
                return
            for serial_id, _, _ in group:
                say(f"DURABLE {serial_id} sent")
            rejects = await asyncio.gather(*(self.unit(serial_id, device, rng) for serial_id, _, _ in group))
            scrap = [serial_id for serial_id in rejects if serial_id is not None]
            if scrap and rng.random() < 0.5:  # the reject bin is emptied into the shredder, several at once
                await self.move(scrap, S.DESTROYED, reason="reject bin destroyed", operator="op-jan")

    async def unit(self, serial_id: int, device: str, rng: random.Random) -> int | None:
        """Take one sent serial to its verdict; return its id when it ends rejected."""
        batch = self.batch if rng.random() < 0.5 else None
        if rng.random() < 0.04:
            await self.move([serial_id], S.REJECTED, reason="printer reported a fault", device=device, batch_id=batch)
            return serial_id
        await self.move(
            [serial_id], S.PRINTED, reason="printer acknowledged", device=device, batch_id=batch,
            expect=frozenset({S.SENT}),
        )
        verdict = rng.random()
        if verdict < 0.03:
            return None  # the camera never saw it: still in flight when the line stops
        if verdict < 0.85:
            await self.move([serial_id], S.COMMISSIONED, reason="graded good", device="cam-1", batch_id=batch)
            if rng.random() < 0.05:
                await self.move([serial_id], S.SAMPLED, reason="qa sample", operator="qa-anna")
            return None
        await self.move([serial_id], S.REJECTED, reason="grade below C", device="cam-1")
        return serial_id

    async def reinspect(self) -> None:
        """Settle the serials left in doubt by earlier crashes: good ones are commissioned, the rest destroyed."""
        rng = random.Random(self.seed * 100 + 99)
        doubtful = await self.ledger.store.read(
            partial(ops.serials_in, batch_id=self.batch, state=S.IN_DOUBT, limit=IN_DOUBT_LIMIT)
        )
        for serial_id, _ in doubtful:
            if rng.random() < 0.6:
                await self.move([serial_id], S.COMMISSIONED, reason="re-inspected good", operator="qa-anna")
            else:
                await self.move([serial_id], S.DESTROYED, reason="decommissioned after a crash", operator="qa-anna")


async def main(state_dir: Path, seed: int, count: int, chunk: int, workers: int) -> None:
    store = Store.open(state_dir)
    ledger = SerialLedger(store, line_id=LINE)
    async with asyncio.TaskGroup() as group:
        group.create_task(store.run())
        group.create_task(ledger.run())
        try:
            batch = (await ledger.batch(WORK_ORDER)).id
        except BatchNotFoundError:
            batch = await ledger.create_batch(new_batch(count), operator="child")
        say(f"BATCH {batch}")
        if (await ledger.batch(batch)).state is BatchState.CREATED:
            allocation = plan(count, seed)
            while True:
                missing = await store.write(partial(
                    ops.release_batch, batch_id=batch, plan=allocation, now=iso_utc(utc_now()), operator="child",
                    chunk=chunk,
                ))
                say(f"ALLOCATED {count - missing}")
                if missing == 0:
                    break
            say("RELEASED")
        if (await ledger.batch(batch)).state is BatchState.RELEASED:
            await ledger.set_state(batch, BatchState.RUNNING, reason="start", operator="child")
            say("RUNNING")
        recovered = await ledger.recover_in_flight("the line controller restarted")
        say(f"RECOVERED {recovered}")
        line = Line(ledger, batch, seed)
        async with asyncio.TaskGroup() as work:
            work.create_task(line.reinspect())
            for number in range(workers):
                work.create_task(line.printer(number))
        say("DONE")
        await asyncio.Event().wait()  # until SIGKILL


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])))
