"""The million-serial batch of `lineside bench store`, run as a child process so its peak memory is its own.

``python -m edge.serials.bench_million --state-dir DIR --serials N`` creates and releases a batch of N
random EU FMD-style serials (12 upper-case alphanumeric characters), settles it the way a line ends a
batch (sent → printed → commissioned in grouped moves, a few rejected, the unprinted rest returned at
close), completes and closes it with reconciliation, and prints one JSON object: the seconds of each
phase, the peak resident memory (VmHWM) after each, the database size and whether the reconciliation balanced.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import string
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edge.serials.generate import RandomSerials
from edge.serials.ledger import SerialLedger
from edge.serials.ops import AllocationPlan, NewBatch, Origin
from edge.serials.states import BatchState, SerialState
from edge.store.store import DB_NAME, Store

if TYPE_CHECKING:
    from collections.abc import Sequence

BENCH_LINE = "bench-line"
BENCH_GTIN = "09506000134352"
BENCH_PRINTER = "printer-1"
BENCH_CAMERA = "camera-1"
# EU FMD-style serials: many marketing authorisation holders print 12 digits and capitals.
SERIAL_CHARACTERS = string.digits + string.ascii_uppercase
SERIAL_LENGTH = 12
# One unit in this many is rejected by the camera (0.5 %), as on a line in good shape.
REJECT_EVERY = 200
# One serial in this many is never printed and comes back at close (the order's overage).
UNUSED_EVERY = 1_000
# Serials drawn for the printers per change, and serials per move when settling them.
SETTLE_CHUNK = 10_000
SETTLE_MOVE = 1_000
# Settling tasks in flight, so the next chunk is being moved while the writer commits the last.
SETTLE_WORKERS = 4


def bench_batch(work_order: str, quantity: int) -> NewBatch:
    """Return a benchmark batch of quantity units of the test GTIN for the EU market."""
    return NewBatch(
        line_id=BENCH_LINE, work_order=work_order, product_id="bench-product", gtin=BENCH_GTIN, lot="BENCH",
        expiry="301231", quantity=quantity, market="eu-fmd", serial_source="local", product={}, order={},
    )


def random_plan(count: int) -> AllocationPlan:
    """Return the plan allocating count fresh random serials in the EU FMD-style format."""
    return AllocationPlan(count=count, origin=Origin.RANDOM, source=RandomSerials(SERIAL_CHARACTERS, SERIAL_LENGTH))


def peak_rss_mb() -> float:
    """Return this process's peak resident memory so far, in MB.

    Linux's VmHWM belongs to the process image, so a child started by a big parent reports its own
    work only; ru_maxrss (the fallback, KiB on Linux) also counts the parent's memory the child had
    between fork and exec.
    """
    try:
        with Path("/proc/self/status").open(encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return ru_maxrss_mb()


def ru_maxrss_mb() -> float:
    """Return resource.getrusage(RUSAGE_SELF).ru_maxrss in MB (it is in KiB on Linux)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


async def run_million(state_dir: Path, serials: int) -> dict[str, Any]:
    """Allocate, settle, complete and close a batch of serials units in a new store under state_dir."""
    if serials < 1:
        raise ValueError("serials must be at least 1")
    store = Store.open(state_dir)
    ledger = SerialLedger(store, line_id=BENCH_LINE)
    try:
        async with asyncio.TaskGroup() as group:
            writer = group.create_task(store.run(), name="bench store writer")
            rounds = group.create_task(ledger.run(), name="bench ledger rounds")
            result = await _phases(ledger, serials)
            await ledger.aclose()
            await rounds
            await store.aclose()
            await writer
    finally:
        store.close()
    db = state_dir / DB_NAME
    files = [db, db.with_name(DB_NAME + "-wal")]
    result["db_mb"] = round(sum(path.stat().st_size for path in files if path.exists()) / 1e6, 1)
    result["peak_rss_mb"] = max(peak_rss_mb(), *result["peak_rss_mb_by_phase"].values())
    result["ru_maxrss_mb"] = ru_maxrss_mb()
    return result


async def _phases(ledger: SerialLedger, serials: int) -> dict[str, Any]:
    rss: dict[str, float] = {"start": peak_rss_mb()}
    started = time.perf_counter()
    batch_id = await ledger.create_batch(bench_batch("BENCH-MILLION", serials))
    await ledger.release(batch_id, random_plan(serials))
    allocate_s = time.perf_counter() - started
    rss["allocated"] = peak_rss_mb()

    started = time.perf_counter()
    await ledger.set_state(batch_id, BatchState.RUNNING, reason="benchmark")
    to_make = serials - serials // UNUSED_EVERY
    remaining = [to_make]
    judged = [0, 0]  # commissioned, rejected
    async with asyncio.TaskGroup() as group:
        for _ in range(SETTLE_WORKERS):
            group.create_task(_settle(ledger, batch_id, remaining, judged))
    settle_s = time.perf_counter() - started
    rss["settled"] = peak_rss_mb()

    started = time.perf_counter()
    in_doubt = await ledger.complete(batch_id, operator="bench")
    complete_s = time.perf_counter() - started
    started = time.perf_counter()
    report = await ledger.close(batch_id, operator="bench", return_to_pool=False)
    close_s = time.perf_counter() - started
    rss["closed"] = peak_rss_mb()
    return {
        "serials": serials,
        "serial_format": f"{SERIAL_LENGTH} characters of {SERIAL_CHARACTERS}",
        "allocate_s": round(allocate_s, 3),
        "settle_s": round(settle_s, 3),
        "settle_transitions": 3 * to_make,
        "settle_transitions_per_s": round(3 * to_make / settle_s),
        "complete_s": round(complete_s, 3),
        "close_s": round(close_s, 3),
        "commissioned": judged[0],
        "rejected": judged[1],
        "in_doubt_at_complete": in_doubt,
        "returned_at_close": report["returned_at_close"],
        "balanced": report["balanced"],
        "equation": report["equation"],
        "peak_rss_mb_by_phase": rss,
    }


async def _settle(ledger: SerialLedger, batch_id: int, remaining: list[int], judged: list[int]) -> None:
    """Draw chunks for the printer and move them on until remaining[0] units are made."""
    while remaining[0] > 0:
        want = min(SETTLE_CHUNK, remaining[0])
        remaining[0] -= want
        rows = await ledger.next_to_print(batch_id, want, device=BENCH_PRINTER)
        if len(rows) != want:
            raise RuntimeError(f"asked the batch for {want} serials to print, got {len(rows)}")
        ids = [row[0] for row in rows]
        del rows
        await _moves(ledger, batch_id, ids, SerialState.PRINTED, reason="printed", device=BENCH_PRINTER)
        bad = ids[::REJECT_EVERY]
        good = [serial_id for index, serial_id in enumerate(ids) if index % REJECT_EVERY]
        await asyncio.gather(
            _moves(ledger, batch_id, good, SerialState.COMMISSIONED, reason="verified good", device=BENCH_CAMERA),
            _moves(ledger, batch_id, bad, SerialState.REJECTED, reason="no read", device=BENCH_CAMERA),
        )
        judged[0] += len(good)
        judged[1] += len(bad)


async def _moves(
    ledger: SerialLedger, batch_id: int, ids: Sequence[int], to: SerialState, *, reason: str, device: str
) -> None:
    """Move ids to state to in moves of SETTLE_MOVE serials, all in flight at once."""
    await asyncio.gather(*(
        ledger.move(ids[start : start + SETTLE_MOVE], to, reason=reason, device=device, batch_id=batch_id)
        for start in range(0, len(ids), SETTLE_MOVE)
    ))


def main(argv: Sequence[str] | None = None) -> int:
    """Run the million-serial batch in a fresh state directory and print its figures as one JSON object."""
    parser = argparse.ArgumentParser(prog="python -m edge.serials.bench_million", description=__doc__)
    parser.add_argument("--state-dir", type=Path, required=True, help="an empty or new directory for the store")
    parser.add_argument("--serials", type=int, default=1_000_000, help="serials in the batch")
    args = parser.parse_args(argv)
    result = asyncio.run(run_million(args.state_dir, args.serials))
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
