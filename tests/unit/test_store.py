"""The store's writer: group commit, per-change failures, SQLite errors, lifecycle and cancellation."""

from __future__ import annotations

import asyncio
import math
import sqlite3
import threading
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

import pytest

from edge.errors import (
    StoreCorruptError,
    StoreError,
    StoreFullError,
    StoreLockedError,
    StoreReadOnlyError,
)
from edge.store import DB_NAME, DaemonRun, Store
from edge.store.connection import translate_error
from edge.store.store import MAX_BATCH_CHANGES

# A blocked writer-thread step in these tests is released by the test itself within milliseconds;
# 10 s only turns a broken test into a failure instead of a hang.
THREAD_WAIT_S = 10.0

# Tasks queue their writes within a few loop iterations; thousands only bound a broken test.
YIELDS_BEFORE_GIVING_UP = 10_000

CREATE_T = "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL) STRICT"


@pytest.fixture
def store(tmp_path):
    opened = Store.open(tmp_path, group_window_s=0)
    yield opened
    opened.close()


@asynccontextmanager
async def running(store):
    """Run the writer in a TaskGroup the way the daemon does, and aclose() on the way out."""
    async with asyncio.TaskGroup() as group:
        group.create_task(store.run())
        try:
            yield store
        finally:
            await store.aclose()


async def queued(store, count):
    """Yield to the loop until exactly count writes are queued; fail if that never happens."""
    for _ in range(YIELDS_BEFORE_GIVING_UP):
        if store.pending == count:
            return
        await asyncio.sleep(0)
    pytest.fail(f"{store.pending} writes queued, expected {count}")


def rows(store):
    conn = sqlite3.connect(store.path)
    try:
        return conn.execute("SELECT id, v FROM t ORDER BY id").fetchall()
    finally:
        conn.close()


def insert(row_id, value="x"):
    def change(conn):
        conn.execute("INSERT INTO t (id, v) VALUES (?, ?)", (row_id, value))
        return row_id

    return change


async def test_write_returns_once_committed_and_visible_to_other_connections(store):
    async with running(store):
        await store.write(lambda c: c.execute(CREATE_T))
        assert await store.execute("INSERT INTO t (v) VALUES (?)", ("a",)) == 1
        other = sqlite3.connect(store.path)
        try:
            assert other.execute("SELECT id, v FROM t").fetchall() == [(1, "a")]
        finally:
            other.close()
        assert await store.read(lambda c: c.execute("SELECT v FROM t").fetchall()) == [("a",)]
        assert await store.executemany("INSERT INTO t (v) VALUES (?)", [("b",), ("c",)]) == 2


async def test_concurrent_writes_share_commits(store):
    writes = 1000
    async with running(store):
        await store.write(lambda c: c.execute(CREATE_T))
        before = store.stats.commits
        ids = await asyncio.gather(*(store.write(insert(i)) for i in range(1, writes + 1)))
        assert ids == list(range(1, writes + 1))
        commits = store.stats.commits - before
    assert 1 <= commits < writes
    assert len(rows(store)) == writes


async def test_queued_writes_commit_in_batches_of_the_maximum(store):
    writes = 1000
    async with asyncio.TaskGroup() as group:
        create = group.create_task(store.write(lambda c: c.execute(CREATE_T)))
        tasks = [group.create_task(store.write(insert(i))) for i in range(1, writes + 1)]
        await queued(store, writes + 1)
        group.create_task(store.run())
        await asyncio.gather(create, *tasks)
        await store.aclose()
    assert store.stats.commits == math.ceil((writes + 1) / MAX_BATCH_CHANGES)
    assert store.stats.changes == writes + 1
    assert store.stats.largest_batch == MAX_BATCH_CHANGES


async def test_constraint_violation_fails_only_its_caller(store):
    async with running(store):
        await store.write(lambda c: c.execute(CREATE_T))
        before = store.stats.commits
        results = await asyncio.gather(
            store.write(insert(1, "first")),
            store.write(insert(1, "duplicate")),
            store.execute("INSERT INTO t (id, v) VALUES (2, 'by statement')"),
            store.execute("INSERT INTO t (id, v) VALUES (2, 'duplicate statement')"),
            store.write(insert(3, "third")),
            return_exceptions=True,
        )
        assert store.stats.commits - before == 1
    assert results[0] == 1
    assert type(results[1]) is sqlite3.IntegrityError  # unchanged, for domain code to catch
    assert results[2] == 2
    assert type(results[3]) is sqlite3.IntegrityError
    assert results[4] == 3
    assert rows(store) == [(1, "first"), (2, "by statement"), (3, "third")]
    assert store.stats.failed_changes == 2


async def test_a_failing_function_is_undone_alone_and_its_error_passes_through(store):
    class DomainError(Exception):
        pass

    def half_done(conn):
        conn.execute("INSERT INTO t (id, v) VALUES (10, 'half')")
        raise DomainError("serial already commissioned")

    async with running(store):
        await store.write(lambda c: c.execute(CREATE_T))
        results = await asyncio.gather(
            store.write(insert(9)), store.write(half_done), store.write(insert(11)),
            return_exceptions=True,
        )
    assert results[0] == 9
    assert isinstance(results[1], DomainError)
    assert results[2] == 11
    assert rows(store) == [(9, "x"), (11, "x")]


async def test_a_statement_run_is_replayed_one_by_one_after_a_failure(store):
    statements = [
        ("INSERT INTO t (id, v) VALUES (5, 'a')", 5),
        ("INSERT INTO t (id, v) VALUES (6, 'b')", 6),
        ("INSERT INTO t (id, v) VALUES (5, 'dup')", sqlite3.IntegrityError),
        ("INSERT INTO t (id, v) VALUES (7, 'c')", 7),
        ("SELEC nonsense", StoreError),
    ]
    async with running(store):
        await store.write(lambda c: c.execute(CREATE_T))
        results = await asyncio.gather(
            *(store.execute(sql) for sql, _ in statements), return_exceptions=True
        )
    for result, (_, expected) in zip(results, statements, strict=True):
        if isinstance(expected, type):
            assert type(result) is expected
        else:
            assert result == expected
    assert "syntax error" in str(results[4])
    assert str(store.path) in str(results[4])
    assert rows(store) == [(5, "a"), (6, "b"), (7, "c")]


async def test_disk_full_fails_the_transaction_and_the_store_recovers(store):
    def fill_limit(conn):
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        conn.execute(f"PRAGMA max_page_count = {pages}")

    def lift_limit(conn):
        conn.execute("PRAGMA max_page_count = 1073741823")

    big = "INSERT INTO t (id, v) VALUES (?, hex(randomblob(200000)))"
    async with running(store):
        await store.write(lambda c: c.execute(CREATE_T))
        await store.write(fill_limit)
        results = await asyncio.gather(
            store.execute("INSERT INTO t (id, v) VALUES (1, 'small')"),
            store.execute(big, (2,)),
            store.write(lift_limit),  # "space is freed"; runs in a fresh transaction
            store.execute(big, (3,)),
            return_exceptions=True,
        )
    # SQLite rolls back the whole transaction on SQLITE_FULL: the change before it is lost too.
    assert isinstance(results[0], StoreFullError)
    assert isinstance(results[1], StoreFullError)
    assert str(store.path) in str(results[1])
    assert "free space" in str(results[1])
    assert results[2] is None
    assert results[3] == 3
    assert [row[0] for row in rows(store)] == [3]
    assert store.stats.failed_transactions == 1


async def test_commit_failure_fails_every_caller_in_the_batch(store):
    async with running(store):
        await store.execute("CREATE TABLE parent (id INTEGER PRIMARY KEY)")
        await store.execute(
            "CREATE TABLE child (id INTEGER PRIMARY KEY,"
            " parent INTEGER REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED)"
        )
        results = await asyncio.gather(
            store.execute("INSERT INTO parent (id) VALUES (1)"),
            store.execute("INSERT INTO child (id, parent) VALUES (1, 99)"),  # checked at COMMIT
            store.write(lambda c: c.execute("INSERT INTO parent (id) VALUES (2)")),
            return_exceptions=True,
        )
        assert await store.execute("INSERT INTO parent (id) VALUES (3)") == 3
    for result in results:
        assert type(result) is StoreError  # not IntegrityError: that caller's change may be fine
        assert "FOREIGN KEY constraint failed" in str(result)
        assert "nothing of this change was written" in str(result)
    assert store.stats.failed_transactions == 1
    conn = sqlite3.connect(store.path)
    try:
        assert conn.execute("SELECT id FROM parent").fetchall() == [(3,)]
        assert conn.execute("SELECT count(*) FROM child").fetchone()[0] == 0
    finally:
        conn.close()


async def test_a_change_must_not_end_the_transaction(store):
    async with running(store):
        await store.write(lambda c: c.execute(CREATE_T))
        results = await asyncio.gather(
            store.write(insert(1)),
            store.write(lambda c: c.execute("ROLLBACK")),
            store.write(insert(2)),
            return_exceptions=True,
        )
    assert isinstance(results[0], StoreError)
    assert "whether this change was written is unknown" in str(results[0])
    assert isinstance(results[1], StoreError)
    assert "must not run BEGIN, COMMIT or ROLLBACK" in str(results[1])
    assert results[2] == 2
    assert rows(store) == [(2, "x")]  # this time it was rolled back


@pytest.mark.parametrize("sql", ["COMMIT", "  rollback", "BEGIN IMMEDIATE", "end", "SAVEPOINT x"])
async def test_execute_refuses_transaction_control(store, sql):
    with pytest.raises(ValueError, match="the store runs the transactions"):
        await store.execute(sql)


async def test_busy_database_is_reported_locked(store):
    async with running(store):
        await store.write(lambda c: c.execute(CREATE_T))
        # Another program holding the write lock; no busy wait, so the test needs no real time.
        await store.write(lambda c: c.execute("PRAGMA busy_timeout = 0"))
        intruder = sqlite3.connect(store.path, isolation_level=None)
        intruder.execute("BEGIN IMMEDIATE")
        try:
            with pytest.raises(StoreLockedError, match="another program holds the database's lock"):
                await store.write(insert(1))
        finally:
            intruder.execute("ROLLBACK")
            intruder.close()
        assert await store.write(insert(2)) == 2
    assert rows(store) == [(2, "x")]


async def test_readonly_access_refuses_writes(store):
    async with running(store):
        await store.write(lambda c: c.execute(CREATE_T))
        await store.write(insert(1))
        with pytest.raises(StoreReadOnlyError, match="attempt to write a readonly database"):
            await store.read(lambda c: c.execute("INSERT INTO t (id, v) VALUES (2, 'r')"))
        reader = Store.open_readonly(store.path.parent)  # no lock needed beside the daemon
        try:
            assert await reader.read(lambda c: c.execute("SELECT id FROM t").fetchall()) == [(1,)]
            with pytest.raises(StoreReadOnlyError) as caught:
                await reader.read(lambda c: c.execute("INSERT INTO t (id, v) VALUES (3, 'r')"))
            assert str(store.path) in str(caught.value)
            assert caught.value.__cause__.sqlite_errorname == "SQLITE_READONLY"
            with pytest.raises(StoreReadOnlyError, match="opened read-only"):
                await reader.write(insert(4))
            with pytest.raises(StoreReadOnlyError):
                await reader.run()
            assert reader.store_id == store.store_id
        finally:
            await reader.aclose()
        with pytest.raises(StoreError, match="store is closed"):
            await reader.read(lambda c: None)
    assert rows(store) == [(1, "x")]


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (sqlite3.SQLITE_BUSY, StoreLockedError),
        (sqlite3.SQLITE_LOCKED, StoreLockedError),
        (sqlite3.SQLITE_FULL, StoreFullError),
        (sqlite3.SQLITE_READONLY, StoreReadOnlyError),
        (sqlite3.SQLITE_READONLY_DBMOVED, StoreReadOnlyError),
        (sqlite3.SQLITE_CANTOPEN, StoreReadOnlyError),
        (sqlite3.SQLITE_CORRUPT, StoreCorruptError),
        (sqlite3.SQLITE_NOTADB, StoreCorruptError),
        (sqlite3.SQLITE_IOERR_FSYNC, StoreError),
        (sqlite3.SQLITE_ERROR, StoreError),
    ],
)
def test_sqlite_errors_translate_by_result_code(tmp_path, code, expected):
    err = sqlite3.OperationalError("something went wrong")
    err.sqlite_errorcode = code
    err.sqlite_errorname = "SQLITE_SOMETHING"
    translated = translate_error(err, tmp_path / DB_NAME, doing="write to")
    assert type(translated) is expected
    assert str(tmp_path / DB_NAME) in str(translated)
    assert translated.__cause__ is err


def test_integrity_errors_are_not_translated(tmp_path):
    err = sqlite3.IntegrityError("UNIQUE constraint failed: serial.code")
    assert translate_error(err, tmp_path / DB_NAME, doing="write to") is err


async def test_aclose_commits_queued_writes_then_stops_run(store):
    async with asyncio.TaskGroup() as group:
        writer = group.create_task(store.run())
        await store.write(lambda c: c.execute(CREATE_T))
        tasks = [group.create_task(store.write(insert(i))) for i in range(1, 101)]
        await queued(store, 100)  # queued, and the writer has not taken them yet
        await store.aclose()
        assert writer.done()
        assert [task.result() for task in tasks] == list(range(1, 101))
        with pytest.raises(StoreError, match="store is closed"):
            await store.write(insert(500))
    assert len(rows(store)) == 100
    assert store.closed
    assert not (store.path.parent / f"{DB_NAME}-wal").exists() or (
        (store.path.parent / f"{DB_NAME}-wal").stat().st_size == 0
    )


async def test_aclose_commits_queued_writes_when_run_never_started(store):
    async with asyncio.TaskGroup() as group:
        create = group.create_task(store.write(lambda c: c.execute(CREATE_T)))
        one = group.create_task(store.write(insert(1)))
        await queued(store, 2)
        await store.aclose()
        await store.run()  # returns at once on a closed store
    assert create.done()
    assert one.result() == 1
    assert rows(store) == [(1, "x")]
    await store.aclose()  # idempotent


async def test_cancelling_run_lets_the_commit_in_progress_finish_and_fails_the_rest(store):
    entered, release = threading.Event(), threading.Event()

    def slow(conn):
        entered.set()
        release.wait(THREAD_WAIT_S)
        conn.execute(CREATE_T)
        return "committed"

    writer = asyncio.create_task(store.run())
    first = asyncio.create_task(store.write(slow))
    await asyncio.to_thread(entered.wait, THREAD_WAIT_S)
    second = asyncio.create_task(store.write(insert(1)))
    await queued(store, 1)
    writer.cancel()
    await asyncio.sleep(0)  # the cancellation reaches run() while the batch is in the thread
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await writer
    assert await first == "committed"
    with pytest.raises(StoreError, match="stopped before taking this write"):
        await second
    with pytest.raises(StoreError, match="store is closed"):
        await store.write(insert(2))
    await store.aclose()


async def test_cancelling_run_twice_mid_commit_tells_callers_the_outcome_is_unknown(store):
    entered, release = threading.Event(), threading.Event()

    def slow(conn):
        entered.set()
        release.wait(THREAD_WAIT_S)
        conn.execute(CREATE_T)

    writer = asyncio.create_task(store.run())
    first = asyncio.create_task(store.write(slow))
    await asyncio.to_thread(entered.wait, THREAD_WAIT_S)
    writer.cancel()
    await asyncio.sleep(0)  # run() now waits for the commit in progress
    writer.cancel()  # and is told to stop waiting
    with pytest.raises(asyncio.CancelledError):
        await writer
    with pytest.raises(StoreError, match="may or may not have been written"):
        await first
    release.set()
    await store.aclose()  # waits for the writer thread to finish that commit
    assert rows(store) == []  # the commit went through: the table exists, empty


async def test_executemany_takes_its_rows_on_the_callers_side(store):
    async with running(store):
        await store.write(lambda c: c.execute(CREATE_T))
        changed = await store.executemany(
            "INSERT INTO t (id, v) VALUES (?, ?)", ((i, str(i)) for i in range(3))
        )
    assert changed == 3
    assert rows(store) == [(0, "0"), (1, "1"), (2, "2")]


async def test_cancelling_an_idle_run_leaves_no_caller_waiting(store):
    writer = asyncio.create_task(store.run())
    await asyncio.sleep(0)
    writer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await writer
    with pytest.raises(StoreError, match="store is closed"):
        await store.write(insert(1))


async def test_close_fails_queued_writes(store):
    pending = asyncio.create_task(store.write(insert(1)))
    await queued(store, 1)
    store.close()
    with pytest.raises(StoreError, match="store is closed"):
        await pending
    with pytest.raises(StoreError, match="store is closed"):
        await store.read(lambda c: None)


async def test_a_write_cancelled_before_it_is_taken_is_dropped(store):
    async with asyncio.TaskGroup() as group:
        create = group.create_task(store.write(lambda c: c.execute(CREATE_T)))
        dropped = group.create_task(store.write(insert(1)))
        kept = group.create_task(store.write(insert(2)))
        await queued(store, 3)
        dropped.cancel()
        group.create_task(store.run())
        await create
        assert await kept == 2
        await store.aclose()
    assert rows(store) == [(2, "x")]


async def test_full_queue_makes_writers_wait_without_dropping(tmp_path):
    store = Store.open(tmp_path, group_window_s=0, max_pending=3)
    try:
        async with asyncio.TaskGroup() as group:
            create = group.create_task(store.write(lambda c: c.execute(CREATE_T)))
            tasks = [group.create_task(store.write(insert(i))) for i in range(1, 11)]
            for _ in range(20):
                await asyncio.sleep(0)
            assert store.pending == 3
            assert not any(task.done() for task in tasks)
            group.create_task(store.run())
            await create
            assert [await task for task in tasks] == list(range(1, 11))
            await store.aclose()
    finally:
        store.close()
    assert len(rows(store)) == 10


async def test_waiting_writers_are_refused_when_the_store_closes(tmp_path):
    store = Store.open(tmp_path, group_window_s=0, max_pending=1)
    first = asyncio.create_task(store.write(lambda c: c.execute(CREATE_T)))
    blocked = asyncio.create_task(store.write(insert(1)))
    await queued(store, 1)
    await asyncio.sleep(0)
    await store.aclose()
    assert first.done()
    assert first.exception() is None
    with pytest.raises(StoreError, match="store is closed"):
        await blocked


async def test_daemon_runs_tell_an_unclean_previous_stop(tmp_path):
    moments = iter(datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=m) for m in range(10))
    store = Store.open(tmp_path, group_window_s=0, clock=lambda: next(moments))
    async with store:
        first, previous = await store.begin_run("0.1.0", "ab" * 32)
        assert previous is None
        second, previous = await store.begin_run("0.1.1", None)  # first never ended: it died
        assert previous == DaemonRun(
            id=first,
            started_at=datetime(2026, 1, 1, 0, 1, tzinfo=UTC),  # minute 0 went to the migration
            stopped_at=None,
            clean=False,
            version="0.1.0",
            config_sha256="ab" * 32,
        )
        await store.end_run(second)
        with pytest.raises(StoreError, match=f"no open daemon run {second}"):
            await store.end_run(second)
        third, previous = await store.begin_run("0.1.1", None)
        assert previous is None
        assert third > second > first


async def test_async_with_runs_the_writer(tmp_path):
    async with Store.open(tmp_path, group_window_s=0) as store:
        await store.write(lambda c: c.execute(CREATE_T))
        await store.checkpoint()
        assert await store.execute("INSERT INTO t (v) VALUES ('w')") == 1
    assert store.closed
    with pytest.raises(StoreError, match="store is closed"):
        await store.checkpoint()


async def test_window_gathers_writes_from_separate_events_after_a_quiet_spell(tmp_path):
    window = 0.1  # long next to a few loop iterations, so the two writes surely fall inside it
    async with Store.open(tmp_path, group_window_s=window) as store:
        await store.write(lambda c: c.execute(CREATE_T))
        await asyncio.sleep(window)  # the writer has been quiet for a whole window
        before = store.stats.commits
        first = asyncio.create_task(store.write(insert(1)))
        for _ in range(5):  # a later event, in a later loop iteration
            await asyncio.sleep(0)
        second = asyncio.create_task(store.write(insert(2)))
        assert await asyncio.gather(first, second) == [1, 2]
        assert store.stats.commits - before == 1


async def test_an_urgent_write_cuts_the_window_short_and_takes_the_waiting_writes_along(tmp_path):
    window = 1.0  # long next to a commit, so a write that waited it out would time out below
    async with Store.open(tmp_path, group_window_s=window) as store:
        await store.write(lambda c: c.execute(CREATE_T), urgent=True)
        await asyncio.sleep(window)  # the writer has been quiet for a whole window: the next write starts one
        before = store.stats.commits
        first = asyncio.create_task(store.write(insert(1)))
        for _ in range(5):  # the writer is asleep in its window now
            await asyncio.sleep(0)
        async with asyncio.timeout(window * 0.8):
            assert await asyncio.gather(first, store.write(insert(2), urgent=True)) == [1, 2]
        assert store.stats.commits - before == 1


async def test_default_window_still_commits(tmp_path):
    async with Store.open(tmp_path) as store:
        await store.write(lambda c: c.execute(CREATE_T))
        results = await asyncio.gather(*(store.write(insert(i)) for i in range(1, 51)))
    assert results == list(range(1, 51))


async def test_run_cannot_run_twice(store):
    async with running(store):
        await store.write(lambda c: None)  # the writer task is running now
        with pytest.raises(RuntimeError, match="already running"):
            await store.run()


def test_open_rejects_bad_settings(tmp_path):
    with pytest.raises(ValueError, match="group_window_s"):
        Store.open(tmp_path, group_window_s=-1)
    with pytest.raises(ValueError, match="max_pending"):
        Store.open(tmp_path, max_pending=0)
    Store.open(tmp_path).close()  # the refused opens released the lock


def test_naive_clock_is_refused(tmp_path):
    with pytest.raises(ValueError, match="naive datetime"):
        Store.open(tmp_path, clock=datetime.now)
