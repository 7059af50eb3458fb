"""The durable store: one SQLite database per state directory, one writer thread with group commit.

Callers ``await store.write(fn)``; ``fn(conn)`` runs in the writer thread inside a transaction shared
with every other write that arrived while the previous commit was in progress (or within the group
window), under its own savepoint, and the await returns only once that transaction is committed with
``synchronous=FULL``. Errors a caller gets:

* ``sqlite3.IntegrityError`` raised by its own statements, unchanged (domain code catches it to
  enforce uniqueness, e.g. a serial used at most once); only that change is undone;
* a ``StoreError`` subclass for SQLite failures (locked, full, read-only, corrupt), naming the file;
* whatever else ``fn`` raised, unchanged; only that change is undone.

A write whose caller is cancelled before the writer takes it is dropped; once taken it may still
commit. Everything here runs on the owner's event loop; SQLite work runs in the store's own threads.
"""

from __future__ import annotations

import asyncio
import logging
import re
import sqlite3
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Self, TypeVar

from edge.errors import StoreError, StoreReadOnlyError
from edge.store import connection, runs, schema
from edge.store.lock import DirectoryLock
from edge.store.writer import BatchResult, BatchWriter, Statement

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping, Sequence
    from pathlib import Path
    from types import TracebackType

    from edge.store.runs import DaemonRun

_LOGGER = logging.getLogger(__name__)

_TRANSACTION_CONTROL = re.compile(
    r"\s*(BEGIN|COMMIT|END|ROLLBACK|SAVEPOINT|RELEASE)\b", re.IGNORECASE
)

T = TypeVar("T")

DB_NAME = "lineside.db"

# Writes arriving within this long of a first one after a quiet spell (the writer idle at least
# this long) share its commit; writes arriving while a commit is in progress share the next one
# anyway. A commit costs about 0.1 ms here, so 2 ms gathers a burst from separate events (a
# verdict, its reject record, its audit entry) into one commit, far inside the 20 ms verdict budget.
DEFAULT_GROUP_WINDOW_S = 0.002

# Queued writes before write() makes callers wait: about one second of the 100,000 changes/s the
# store is built for, a few MiB of queued closures; more would only hide a stalled disk.
DEFAULT_MAX_PENDING = 100_000

# One transaction takes at most this many queued changes, so that under load the next batch is
# being queued on the event loop while the writer thread commits the previous one (measured here:
# about 1.5 times the throughput of one transaction per whole queue), and a commit holds the
# writer for a few milliseconds at most.
MAX_BATCH_CHANGES = 512

# When run() is cancelled mid-commit, the commit already handed to SQLite finishes in milliseconds;
# waiting up to 5 s for it lets its callers hear the truth. Past that the disk is stalled and they
# are told the outcome is unknown instead of being kept waiting.
CANCEL_DRAIN_TIMEOUT_S = 5.0


def utc_now() -> datetime:
    """Return the current time, aware, in UTC (the default store clock)."""
    return datetime.now(UTC)


@dataclass(slots=True)
class StoreStats:
    """Counters of the writer since open: transactions committed and changes committed or failed."""

    commits: int = 0
    changes: int = 0
    failed_changes: int = 0
    failed_transactions: int = 0
    batches: int = 0
    largest_batch: int = 0


class Store:
    """The state directory's database; open with Store.open (daemon) or Store.open_readonly (tools)."""

    def __init__(
        self,
        *,
        db: Path,
        write_conn: sqlite3.Connection | None,
        read_conn: sqlite3.Connection,
        lock: DirectoryLock | None,
        store_id: str,
        group_window_s: float = DEFAULT_GROUP_WINDOW_S,
        max_pending: int = DEFAULT_MAX_PENDING,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        _check_settings(group_window_s, max_pending)
        self.path = db
        self.store_id = store_id
        self.stats = StoreStats()
        self._clock = clock
        self._window = group_window_s
        self._max_pending = max_pending
        self._write_conn = write_conn
        self._read_conn = read_conn
        self._lock = lock
        self._batch_writer = BatchWriter(write_conn, db) if write_conn is not None else None
        self._writer_pool = (
            ThreadPoolExecutor(1, thread_name_prefix="lineside-store-writer")
            if write_conn is not None
            else None
        )
        self._reader_pool = ThreadPoolExecutor(1, thread_name_prefix="lineside-store-reader")
        self._queue: deque[tuple[Callable[[sqlite3.Connection], Any], asyncio.Future[Any]]] = (
            deque()
        )
        self._wakeup: asyncio.Future[None] | None = None
        self._window_cut: asyncio.Future[None] | None = None
        self._urgent = False  # a queued write's caller waits on it before acting (`submit`): no window
        self._batch_started: float | None = None
        self._space_waiters: deque[asyncio.Future[None]] = deque()
        self._stopped = asyncio.Event()
        self._writing = False  # run() (or aclose() standing in for it) is committing
        self._closing = False  # no new writes accepted
        self._closed = False  # threads stopped, connections closed, lock released
        self._checkpointed = False
        self._own_writer: asyncio.Task[None] | None = None

    # -- opening --------------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        state_dir: Path,
        *,
        group_window_s: float = DEFAULT_GROUP_WINDOW_S,
        max_pending: int = DEFAULT_MAX_PENDING,
        clock: Callable[[], datetime] = utc_now,
    ) -> Store:
        """Lock state_dir (creating it), open and check lineside.db, migrate it; raise Store* errors.

        Blocks for the checks and migrations, so call it before the event loop's work starts.
        """
        _check_settings(group_window_s, max_pending)
        try:
            state_dir.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise StoreReadOnlyError(
                f"cannot create the state directory {state_dir}: {err.strerror}"
            ) from err
        lock = DirectoryLock.acquire(state_dir)
        db = state_dir / DB_NAME
        write_conn = read_conn = None
        try:
            write_conn = connection.connect(db, readonly=False)
            connection.quick_check(write_conn, db)
            known = schema.load_migrations()
            # Version and migration hashes are checked before anything is written to the file.
            current = schema.check_schema(write_conn, db, known)
            connection.configure_writer(write_conn, db)
            schema.apply_migrations(
                write_conn, db, known, current=current, now=runs.iso_utc(clock())
            )
            read_conn = connection.connect(db, readonly=False)
            connection.configure_reader(read_conn, db)
            store_id = _read_store_id(read_conn, db)
            return cls(
                db=db,
                write_conn=write_conn,
                read_conn=read_conn,
                lock=lock,
                store_id=store_id,
                group_window_s=group_window_s,
                max_pending=max_pending,
                clock=clock,
            )
        except BaseException:
            for conn in (read_conn, write_conn):
                if conn is not None:
                    conn.close()
            lock.release()
            raise

    @classmethod
    def open_readonly(cls, path: Path) -> Store:
        """Open a state directory's database (or the database file itself) for reading, without the lock.

        Raises StoreError when there is no database, StoreCorruptError when it fails its check and
        StoreSchemaError when its schema is not exactly the one this program knows.
        """
        db = path / DB_NAME if path.is_dir() else path
        if not db.is_file():
            raise StoreError(f"no Lineside database at {db}")
        conn = connection.connect(db, readonly=True)
        try:
            connection.quick_check(conn, db)
            connection.configure_reader(conn, db)
            schema.check_current(conn, db, schema.load_migrations())
            store_id = _read_store_id(conn, db)
            return cls(db=db, write_conn=None, read_conn=conn, lock=None, store_id=store_id)
        except BaseException:
            conn.close()
            raise

    # -- writing --------------------------------------------------------------------------------

    async def write(self, fn: Callable[[sqlite3.Connection], T], *, urgent: bool = False) -> T:
        """Run fn(conn) in the writer's transaction; return its result once that is durably committed.

        fn runs in the writer thread under its own savepoint, so it must not run BEGIN, COMMIT or
        ROLLBACK; its errors reach only this caller (see the module docstring). Waits while
        max_pending writes are queued. urgent: see submit().
        """
        if self._closing or self._writer_pool is None:
            raise self._refusal()
        while len(self._queue) >= self._max_pending:
            await self._wait_for_space()
            if self._closing:
                raise self._refusal()
        return await self.submit(fn, urgent=urgent)

    def submit(self, fn: Callable[[sqlite3.Connection], T], *, urgent: bool = False) -> asyncio.Future[T]:
        """Queue fn as write() does, without waiting for space; return the future of its outcome.

        For callers that keep a few changes in flight and bound their own queue (the serial ledger).
        urgent: the caller waits on this commit before acting (a good verdict for the PLC), so it is
        committed without the group window (writes already queued share its commit all the same).
        """
        if self._closing or self._writer_pool is None:
            raise self._refusal()
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._queue.append((fn, future))
        if urgent:
            self._urgent = True
            cut = self._window_cut
            if cut is not None and not cut.done():
                cut.set_result(None)
        wakeup = self._wakeup
        if wakeup is not None and not wakeup.done():
            wakeup.set_result(None)
        return future

    async def execute(self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> int:
        """Run one statement as one change; return the cursor's lastrowid (0 if none) once committed.

        Cheaper than write() for the writer: consecutive statements share one savepoint until one
        of them fails (see edge.store.writer).
        """
        if _TRANSACTION_CONTROL.match(sql):
            raise ValueError(f"the store runs the transactions; do not execute {sql!r}")
        return await self.write(Statement(sql, params))

    async def executemany(
        self, sql: str, seq: Iterable[Sequence[Any] | Mapping[str, Any]]
    ) -> int:
        """Run one statement per parameter set, all as one change; return the rows it changed."""
        # Taken now, on the caller's side: a generator over live state must not run in the writer thread.
        rows = list(seq)

        def change(conn: sqlite3.Connection) -> int:
            return conn.executemany(sql, rows).rowcount

        return await self.write(change)

    async def begin_run(
        self, version: str, config_sha256: str | None
    ) -> tuple[int, DaemonRun | None]:
        """Record that the daemon started; return the run id and the previous run if it died."""
        now = self._clock()
        return await self.write(
            lambda conn: runs.begin_run(conn, now=now, version=version, config_sha256=config_sha256)
        )

    async def end_run(self, run_id: int) -> None:
        """Record that run run_id stopped cleanly."""
        now = self._clock()
        await self.write(lambda conn: runs.end_run(conn, now=now, run_id=run_id))

    # -- reading --------------------------------------------------------------------------------

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run fn(conn) on the read connection in one read transaction (one snapshot); return its result.

        Reads run in their own thread and proceed while the writer commits. The connection refuses
        writes (StoreReadOnlyError). SQLite errors are translated as for write().
        """
        if self._closed:
            raise self._refusal()
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._reader_pool, self._read_in_thread, fn)

    # -- lifecycle ------------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """Whether the store's threads and connections are closed."""
        return self._closed

    def batch_age_s(self) -> float:
        """Seconds the transaction being committed right now has taken so far; 0 when the writer is idle."""
        started = self._batch_started
        return 0.0 if started is None else asyncio.get_running_loop().time() - started

    def _batch_finished(self, _done: asyncio.Future[Any]) -> None:
        self._batch_started = None

    @property
    def pending(self) -> int:
        """Writes queued and not yet taken by the writer."""
        return len(self._queue)

    async def run(self) -> None:
        """Commit queued writes in groups until aclose(); run it in the owner's TaskGroup.

        On cancellation the commit in progress is let finish (its callers get its outcome), every
        write still queued fails with StoreError, and CancelledError propagates.
        """
        if self._writer_pool is None:
            raise StoreReadOnlyError(f"{self.path} was opened read-only; it has no writer to run")
        if self._closing:
            return
        if self._writing:
            raise RuntimeError("Store.run() is already running")
        self._writing = True
        self._stopped.clear()
        try:
            await self._commit_until_closing()
        finally:
            self._closing = True
            self._writing = False
            self._fail_queued(
                StoreError(f"the writer of {self.path} stopped before taking this write; "
                           "nothing of it was written")
            )
            self._stopped.set()

    async def aclose(self) -> None:
        """Refuse new writes, commit the queued ones, end run(), checkpoint, close, release the lock."""
        if self._closed:
            return
        self._closing = True
        self._wake_writer()
        self._wake_space_waiters()
        if self._writing:
            await self._stopped.wait()
        elif self._queue and self._writer_pool is not None:
            # run() never started (or not yet): commit the queued writes here instead.
            self._writing = True
            try:
                await self._commit_until_closing()
            finally:
                self._writing = False
        if self.closed:
            return  # close() ran while the last writes were committing
        if self._writer_pool is not None and self._batch_writer is not None:
            loop = asyncio.get_running_loop()
            try:
                await loop.run_in_executor(self._writer_pool, self._batch_writer.checkpoint)
                self._checkpointed = True
            except StoreError:
                _LOGGER.warning("checkpoint of %s at close failed", self.path, exc_info=True)
        self.close()

    def close(self) -> None:
        """Close now (for error paths): fail queued writes, let a commit in progress end, close files.

        Call it on the event loop's thread, or with no loop running. Idempotent.
        """
        if self._closed:
            return
        self._closing = True
        self._closed = True
        self._fail_queued(StoreError("store is closed"))
        self._wake_writer()
        self._wake_space_waiters()
        if self._writer_pool is not None:
            # Waits for a batch already in the writer thread: closing its connection under it
            # would turn a commit its callers are about to hear of into an unknown.
            self._writer_pool.shutdown(wait=True)
        self._reader_pool.shutdown(wait=True)
        self._read_conn.close()
        if self._batch_writer is not None and not self._checkpointed:
            try:
                self._batch_writer.checkpoint()
            except StoreError:
                _LOGGER.warning("checkpoint of %s at close failed", self.path, exc_info=True)
        if self._write_conn is not None:
            self._write_conn.close()
        if self._lock is not None:
            self._lock.release()

    async def checkpoint(self) -> None:
        """Fold the WAL into the database file now and truncate it (in the writer thread)."""
        if self._writer_pool is None or self._batch_writer is None:
            raise StoreReadOnlyError(f"{self.path} was opened read-only; it cannot be checkpointed")
        if self._closed:
            raise self._refusal()
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._writer_pool, self._batch_writer.checkpoint)

    async def __aenter__(self) -> Self:
        """Start run() in a task the store owns; prefer running run() in the owner's TaskGroup."""
        if self._writer_pool is not None:
            self._own_writer = asyncio.create_task(self.run(), name=f"store writer {self.path}")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        task, self._own_writer = self._own_writer, None
        try:
            await self.aclose()
        except BaseException:
            if task is not None:
                task.cancel()
                await asyncio.wait({task})
            self.close()
            raise
        if task is not None:
            await task  # re-raises whatever stopped run() early

    # -- internals ------------------------------------------------------------------------------

    async def _commit_until_closing(self) -> None:
        loop = asyncio.get_running_loop()
        while not self._closed:
            if not self._queue:
                if self._closing:
                    return
                self._wakeup = loop.create_future()
                idle_since = loop.time()
                try:
                    await self._wakeup
                finally:
                    self._wakeup = None
                # The window is for a first write after a quiet spell, whose related writes come
                # from the next few events. Right after a commit the callers are already queueing
                # for the next one: waiting would only add latency (and cut throughput with 256
                # callers in flight to a third, measured).
                quiet = loop.time() - idle_since >= self._window
                if self._window > 0 and quiet and self.pending < MAX_BATCH_CHANGES and not self._urgent:
                    await self._sleep_window(loop)
                continue
            queue = self._queue
            popleft = queue.popleft
            self._urgent = False  # the urgent write is in this batch, or in a batch behind it already
            taken = (popleft() for _ in range(min(len(queue), MAX_BATCH_CHANGES)))
            # A write whose caller stopped waiting before it was taken is dropped, not written.
            batch = [item for item in taken if not item[1].done()]
            self._wake_space_waiters()
            if batch:
                await self._commit(loop, batch)

    async def _sleep_window(self, loop: asyncio.AbstractEventLoop) -> None:
        """Wait the group window, or less when an urgent write comes meanwhile."""
        self._window_cut = loop.create_future()
        try:
            await asyncio.wait({self._window_cut}, timeout=self._window)
        finally:
            self._window_cut = None

    async def _commit(
        self,
        loop: asyncio.AbstractEventLoop,
        batch: list[tuple[Callable[[sqlite3.Connection], Any], asyncio.Future[Any]]],
    ) -> None:
        if self._writer_pool is None or self._batch_writer is None:
            raise StoreReadOnlyError(f"{self.path} was opened read-only")
        in_thread = loop.run_in_executor(
            self._writer_pool, self._batch_writer.run_batch, [fn for fn, _ in batch]
        )
        self._batch_started = loop.time()
        in_thread.add_done_callback(self._batch_finished)
        try:
            # Shielded: cancelling run() must not orphan a commit SQLite is already doing.
            result = await asyncio.shield(in_thread)
        except asyncio.CancelledError:
            try:
                await asyncio.wait({in_thread}, timeout=CANCEL_DRAIN_TIMEOUT_S)
            finally:  # also when cancelled again while waiting: no caller may be left hanging
                if in_thread.done() and not in_thread.cancelled() and not in_thread.exception():
                    self._deliver(batch, in_thread.result())
                else:
                    self._fail_batch(batch, StoreError(
                        f"the writer of {self.path} was cancelled while committing this write; "
                        "it may or may not have been written"
                    ))
            raise
        except BaseException as err:
            self._fail_batch(batch, StoreError(f"the writer of {self.path} failed: {err!r}"))
            raise
        self._deliver(batch, result)

    def _deliver(
        self,
        batch: list[tuple[Callable[[sqlite3.Connection], Any], asyncio.Future[Any]]],
        result: BatchResult,
    ) -> None:
        stats = self.stats
        stats.batches += 1
        stats.commits += result.commits
        stats.failed_transactions += result.failed_transactions
        stats.largest_batch = max(stats.largest_batch, len(batch))
        failed = 0
        for (_, future), (ok, value) in zip(batch, result.outcomes, strict=True):
            if not ok:
                failed += 1
            if future.done():
                continue  # its caller stopped waiting
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)
        stats.changes += len(batch) - failed
        stats.failed_changes += failed

    def _fail_batch(
        self,
        batch: list[tuple[Callable[[sqlite3.Connection], Any], asyncio.Future[Any]]],
        error: StoreError,
    ) -> None:
        self.stats.failed_changes += len(batch)
        for _, future in batch:
            if not future.done():
                future.set_exception(StoreError(str(error)))

    def _fail_queued(self, error: StoreError) -> None:
        queued = list(self._queue)
        self._queue.clear()
        self._fail_batch(queued, error)

    async def _wait_for_space(self) -> None:
        waiter = asyncio.get_running_loop().create_future()
        # A waiter cancelled with its caller stays queued until the next wake, which skips it.
        self._space_waiters.append(waiter)
        await waiter

    def _wake_space_waiters(self) -> None:
        waiters = self._space_waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)

    def _wake_writer(self) -> None:
        wakeup = self._wakeup
        if wakeup is not None and not wakeup.done():
            wakeup.set_result(None)

    def _refusal(self) -> StoreError:
        if self._closing or self._writer_pool is not None:
            return StoreError("store is closed")
        return StoreReadOnlyError(f"{self.path} was opened read-only")

    def _read_in_thread(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        conn = self._read_conn
        try:
            conn.execute("BEGIN")
            try:
                return fn(conn)
            finally:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
        except sqlite3.Error as err:
            translated = connection.translate_error(err, self.path, doing="read")
            if translated is err:
                raise
            raise translated from err


def _check_settings(group_window_s: float, max_pending: int) -> None:
    if group_window_s < 0:
        raise ValueError(f"group_window_s must be >= 0, not {group_window_s}")
    if max_pending < 1:
        raise ValueError(f"max_pending must be >= 1, not {max_pending}")


def _read_store_id(conn: sqlite3.Connection, db: Path) -> str:
    try:
        row = conn.execute("SELECT value FROM meta WHERE key = 'store_id'").fetchone()
    except sqlite3.Error as err:
        raise connection.translate_error(err, db, doing="read the store id of") from err
    if row is None:
        raise StoreError(f"{db} has no store_id in its meta table; it is damaged")
    return str(row[0])
