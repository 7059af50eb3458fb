"""The serial ledger on the event loop: moves gathered into group commits, batch life cycle, pool imports.

Moves from many callers (print acknowledgements, verdicts, rework) are queued and applied together,
one store change per round, each caller hearing only about its own move once the round is durable.
Run ``run()`` in the owner's TaskGroup beside the store's writer.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, Self

from edge.errors import SerialError, StoreError
from edge.serials import ops
from edge.serials.ops import Move
from edge.serials.states import BatchState, SerialState
from edge.store.runs import iso_utc
from edge.store.store import utc_now

if TYPE_CHECKING:
    import sqlite3
    from collections.abc import Callable, Sequence
    from datetime import datetime
    from types import TracebackType

    from edge.serials.ops import AllocationPlan, BatchRow, NewBatch
    from edge.store import Store

# Serials applied in one round. About 50 ms of writer time here: big enough that a flood of single
# moves costs one commit per thousands, small enough that the line's other writes are not held up.
MAX_ROUND_SERIALS = 20_000
# Rounds handed to the store and not yet committed: two keep the writer busy while the next is gathered.
MAX_ROUNDS_IN_FLIGHT = 2
# Queued moves before move() makes callers wait: a few rounds' worth, so a stalled disk pushes back
# on the line instead of growing memory.
MAX_QUEUED_MOVES = 100_000


@dataclass(slots=True)
class _Queued:
    move: Move
    future: asyncio.Future[int]
    urgent: bool = False


class SerialLedger:
    """Durable serial and batch state for one line; every method returns once its change is committed."""

    def __init__(self, store: Store, *, line_id: str, clock: Callable[[], datetime] = utc_now) -> None:
        self.store = store
        self.line_id = line_id
        self._clock = clock
        self._queue: deque[_Queued] = deque()
        self._wakeup = asyncio.Event()
        self._space = asyncio.Event()
        self._running = False
        self._closing = False
        self._in_flight = 0

    def _now(self) -> str:
        return iso_utc(self._clock())

    # -- moves ----------------------------------------------------------------------------------

    async def move(
        self,
        ids: Sequence[int],
        to: SerialState,
        *,
        reason: str,
        device: str | None = None,
        operator: str | None = None,
        batch_id: int | None = None,
        expect: frozenset[SerialState] | None = None,
        urgent: bool = False,
    ) -> int:
        """Move the serials with these row ids to state to, all or none; return how many moved.

        Raises IllegalTransitionError (naming the serials that cannot move) without moving any. A caller
        cancelled after queueing its move may still see it applied. urgent: the caller acts on the commit at
        once (a good verdict the PLC waits for), so its round skips the store's group window (`Store.submit`).
        """
        if not ids:
            return 0
        if self._closing:
            raise SerialError("the serial ledger is closed")
        while len(self._queue) >= MAX_QUEUED_MOVES:
            self._space.clear()
            await self._space.wait()
        move = Move(tuple(ids), to, reason, device, operator, batch_id, expect)
        if not self._running:
            # No round runner (offline tools, tests): apply it as a change of its own.
            outcome = (await self.store.write(partial(_apply, [move], self._now()), urgent=urgent))[0]
            if isinstance(outcome, Exception):
                raise outcome
            return outcome
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._queue.append(_Queued(move, future, urgent))
        self._wakeup.set()
        return await future

    async def run(self) -> None:
        """Apply queued moves in rounds until aclose(); run it in the owner's TaskGroup.

        Up to MAX_ROUNDS_IN_FLIGHT rounds wait in the store at once, so the next round is gathered
        while the writer applies the last; the store applies them in order.
        """
        if self._running:
            raise RuntimeError("SerialLedger.run() is already running")
        self._running = True
        try:
            while True:
                if self._in_flight >= MAX_ROUNDS_IN_FLIGHT or not self._queue:
                    if not self._queue and self._closing and self._in_flight == 0:
                        return
                    self._wakeup.clear()
                    await self._wakeup.wait()
                    continue
                self._start_round()
        finally:
            self._running = False
            while self._queue:
                queued = self._queue.popleft()
                if not queued.future.done():
                    queued.future.set_exception(SerialError("the serial ledger stopped before applying this move"))

    async def aclose(self) -> None:
        """Apply the moves already queued, then stop run()."""
        self._closing = True
        self._wakeup.set()

    def _start_round(self) -> None:
        taken: list[_Queued] = []
        serials = 0
        queue = self._queue
        while queue and (not taken or serials + len(queue[0].move.ids) <= MAX_ROUND_SERIALS):
            queued = queue.popleft()
            taken.append(queued)
            serials += len(queued.move.ids)
        self._space.set()
        try:
            done = self.store.submit(partial(_apply, [queued.move for queued in taken], self._now()),
                                     urgent=any(queued.urgent for queued in taken))
        except StoreError as err:  # the store is closing: these moves were never written
            _deliver(taken, err)
            return
        self._in_flight += 1
        done.add_done_callback(partial(self._round_done, taken))

    def _round_done(self, taken: list[_Queued], done: asyncio.Future[list[int | SerialError]]) -> None:
        self._in_flight -= 1
        self._wakeup.set()
        if done.cancelled():
            _deliver(taken, SerialError("the store dropped this round of moves; nothing of it was written"))
            return
        error = done.exception()
        if error is not None:
            _deliver(taken, error)
            return
        for queued, outcome in zip(taken, done.result(), strict=True):
            if queued.future.done():
                continue
            if isinstance(outcome, Exception):
                queued.future.set_exception(outcome)
            else:
                queued.future.set_result(outcome)

    async def __aenter__(self) -> Self:
        """Nothing to start: use run() in a TaskGroup for rounds, or call methods directly (one change each)."""
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    # -- printing and recovery ------------------------------------------------------------------

    async def next_to_print(self, batch_id: int, count: int, *, device: str) -> list[tuple[int, str, bytes | None]]:
        """Durably mark up to count allocated serials of the running batch as sent to device; return them."""
        return await self.store.write(
            partial(ops.next_to_print, batch_id=batch_id, count=count, device=device, now=self._now())
        )

    async def recover_in_flight(self, reason: str) -> int:
        """Mark in doubt what was sent or printed but not judged in the line's active batch; return how many."""
        return await self.store.write(
            partial(ops.recover_in_flight, line_id=self.line_id, now=self._now(), reason=reason)
        )

    # -- batches --------------------------------------------------------------------------------

    async def create_batch(self, new: NewBatch, *, operator: str | None = None) -> int:
        """Create a batch in state created; return its id."""
        return await self.store.write(partial(ops.create_batch, new=new, now=self._now(), operator=operator))

    async def release(self, batch_id: int, plan: AllocationPlan, *, operator: str | None = None) -> None:
        """Allocate the batch's serials (in chunks, resumable after a crash) and mark it released."""
        while await self.store.write(
            partial(ops.release_batch, batch_id=batch_id, plan=plan, now=self._now(), operator=operator)
        ):
            pass

    async def set_state(
        self, batch_id: int, to: BatchState, *, reason: str, operator: str | None = None
    ) -> BatchRow:
        """Start, pause or resume a batch (the moves that touch no serial); return it as it was."""
        if to not in (BatchState.RUNNING, BatchState.PAUSED):
            raise ValueError(f"set_state moves to running or paused only, not {to.value}")
        return await self.store.write(
            partial(ops.move_batch, batch_id=batch_id, to=to, now=self._now(), operator=operator, reason=reason)
        )

    async def complete(self, batch_id: int, *, operator: str | None = None) -> int:
        """Move the batch to completing; return how many serials in flight became in doubt."""
        return await self.store.write(
            partial(ops.complete_batch, batch_id=batch_id, now=self._now(), operator=operator)
        )

    async def decommission_in_doubt(self, batch_id: int, *, operator: str | None, reason: str | None) -> int:
        """Decommission the batch's in-doubt serials (rejected, never reused); return how many."""
        return await self.store.write(
            partial(ops.decommission_in_doubt, batch_id=batch_id, now=self._now(), operator=operator, reason=reason)
        )

    async def close(self, batch_id: int, *, operator: str | None, return_to_pool: bool) -> dict[str, Any]:
        """Reconcile and close the batch; return the frozen report (ReconciliationError if it does not balance)."""
        return await self.store.write(
            partial(ops.close_batch, batch_id=batch_id, now=self._now(), operator=operator,
                    return_to_pool=return_to_pool)
        )

    async def cancel(self, batch_id: int, *, reason: str, operator: str | None, return_to_pool: bool) -> int:
        """Cancel a batch that never ran; return how many serials it handed back."""
        return await self.store.write(
            partial(ops.cancel_batch, batch_id=batch_id, now=self._now(), operator=operator, reason=reason,
                    return_to_pool=return_to_pool)
        )

    # -- the pool -------------------------------------------------------------------------------

    async def import_pool(
        self,
        *,
        gtin: str,
        serials: Sequence[str] = (),
        codes: Sequence[tuple[str, bytes]] = (),
        source: str,
        request_token: str | None = None,
        operator: str | None = None,
    ) -> int:
        """Add serials or complete codes received from upstream to the pool, all or nothing; return how many."""
        return await self.store.write(
            partial(ops.import_pool, gtin=gtin, serials=serials, codes=codes, source=source,
                    request_token=request_token, operator=operator, now=self._now())
        )

    # -- reading --------------------------------------------------------------------------------

    async def batch(self, ref: int | str) -> BatchRow:
        """Return the batch with this id or work order (BatchNotFoundError otherwise)."""
        if isinstance(ref, int):
            return await self.store.read(partial(ops.get_batch, batch_id=ref))
        return await self.store.read(partial(ops.find_batch, ref=ref))

    async def batches(self) -> list[BatchRow]:
        """Return every batch of this line, newest first."""
        return await self.store.read(partial(ops.list_batches, line_id=self.line_id))

    async def active_batch(self) -> BatchRow | None:
        """Return the batch running, paused or completing on this line, if any."""
        return await self.store.read(partial(ops.active_batch, line_id=self.line_id))

    async def counts(self, batch_id: int) -> dict[str, int]:
        """Return the batch's serials by state."""
        return await self.store.read(partial(ops.counts, batch_id=batch_id))

    async def reconciliation(self, batch_id: int) -> dict[str, Any]:
        """Return the frozen close report of a closed batch, else the reconciliation as it stands now."""

        def read(conn: sqlite3.Connection) -> dict[str, Any]:
            return ops.frozen_report(conn, batch_id) or ops.reconciliation(conn, batch_id)

        return await self.store.read(read)

    async def pool_available(self, gtin: str) -> dict[str, int]:
        """Return how many serials and complete codes of gtin wait in the pool."""
        return await self.store.read(partial(ops.pool_available, gtin=gtin))

    async def serial_ids(self, gtin: str, serials: Sequence[str]) -> dict[str, int]:
        """Return the row id of each of serials known for gtin."""
        return await self.store.read(partial(ops.serial_ids, gtin=gtin, serials=serials))

    async def history(self, serial_id: int) -> list[dict[str, Any]]:
        """Return every move of one serial, oldest first."""
        return await self.store.read(partial(ops.history, serial_id=serial_id))


def _deliver(taken: list[_Queued], error: BaseException) -> None:
    """Fail every move of a round with error (the round as a whole failed)."""
    for queued in taken:
        if not queued.future.done():
            queued.future.set_exception(error)


def _apply(moves: list[Move], now: str, conn: sqlite3.Connection) -> list[int | SerialError]:
    return ops.apply_moves(conn, moves, now)
