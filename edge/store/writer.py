"""The writer thread's work: a batch of changes in one transaction, each change's failure its own.

A change is any callable taking the connection. Each runs under its own savepoint, so a change
that raises is undone alone. Runs of consecutive ``Statement`` changes (plain SQL, no Python side
effects) first run together under one savepoint, which saves two statements per change; if one of
them fails, the run is rolled back and replayed one statement per savepoint, which is safe exactly
because a statement has no effect outside the rolled-back transaction.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from edge.errors import StoreError
from edge.store.connection import translate_error

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence
    from pathlib import Path

_LOGGER = logging.getLogger(__name__)

# An outcome is (True, value) for a committed change, (False, exception) for a failed one.
Outcome = tuple[bool, Any]


class Statement:
    """One SQL statement as a change; calling it runs it and returns the cursor's lastrowid (0 if none)."""

    __slots__ = ("params", "sql")

    def __init__(self, sql: str, params: Sequence[Any] | Mapping[str, Any]) -> None:
        self.sql = sql
        self.params = params

    def __call__(self, conn: sqlite3.Connection) -> int:
        return conn.execute(self.sql, self.params).lastrowid or 0

    def __repr__(self) -> str:
        return f"Statement({self.sql!r}, {self.params!r})"


@dataclass(frozen=True, slots=True)
class BatchResult:
    """What happened to a batch: one outcome per change, in order, and the transactions it took."""

    outcomes: list[Outcome]
    commits: int
    failed_transactions: int


class _TransactionLostError(Exception):
    """The transaction ended while running the change at index.

    Either SQLite rolled it back, or the change ended it itself (ended_by_change), in which case
    whether the changes before it were written is unknown.
    """

    def __init__(self, index: int, cause: BaseException, *, ended_by_change: bool = False) -> None:
        super().__init__(index, cause)
        self.index = index
        self.cause = cause
        self.ended_by_change = ended_by_change


class BatchWriter:
    """Runs batches of changes on the write connection; to be used from one thread only."""

    __slots__ = ("_conn", "_db")

    def __init__(self, conn: sqlite3.Connection, db: Path) -> None:
        self._conn = conn
        self._db = db

    def run_batch(self, changes: Sequence[Callable[[sqlite3.Connection], Any]]) -> BatchResult:
        """Run every change and commit them, each change's failure undoing only that change.

        When SQLite aborts the whole transaction (disk full, I/O error) or COMMIT fails, the changes
        that had succeeded in it fail too; the rest of the batch goes on in a new transaction.
        """
        outcomes: list[Outcome] = []
        commits = failed = 0
        index, count = 0, len(changes)
        while index < count:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as err:
                failed += 1
                outcomes.extend(
                    (False, translate_error(err, self._db, doing="begin a transaction on"))
                    for _ in range(index, count)
                )
                break
            first = index
            try:
                index = self._run_changes(changes, index, outcomes)
            except _TransactionLostError as lost:
                failed += 1
                self._rollback_quietly()
                # The change that failed keeps its own error; those before it lose their effects.
                if lost.ended_by_change:
                    self._fail_unknown(outcomes, first, lost.index)
                else:
                    self._fail_batch(outcomes, first, lost.index, lost.cause, doing="write to")
                index = lost.index + 1
                continue
            try:
                self._conn.execute("COMMIT")
            except sqlite3.Error as err:
                failed += 1
                self._rollback_quietly()
                self._fail_batch(outcomes, first, index, err, doing="commit a transaction to")
            else:
                commits += 1
        return BatchResult(outcomes, commits, failed)

    def checkpoint(self) -> tuple[int, int, int]:
        """Copy the WAL into the database and truncate it; return SQLite's (busy, log, checkpointed)."""
        try:
            row = self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        except sqlite3.Error as err:
            raise translate_error(err, self._db, doing="checkpoint") from err
        return int(row[0]), int(row[1]), int(row[2])

    def _run_changes(
        self,
        changes: Sequence[Callable[[sqlite3.Connection], Any]],
        index: int,
        outcomes: list[Outcome],
    ) -> int:
        """Run changes[index:] in the open transaction, appending outcomes; return the end index."""
        count = len(changes)
        while index < count:
            if type(changes[index]) is Statement:
                end = index + 1
                while end < count and type(changes[end]) is Statement:
                    end += 1
                self._run_statements(changes, index, end, outcomes)
                index = end
            else:
                self._run_one(changes[index], index, outcomes)
                index += 1
        return index

    def _run_statements(
        self,
        changes: Sequence[Callable[[sqlite3.Connection], Any]],
        start: int,
        end: int,
        outcomes: list[Outcome],
    ) -> None:
        """Run the statements changes[start:end] under one savepoint, replaying them one by one on error."""
        conn = self._conn
        conn.execute("SAVEPOINT statements")
        values: list[Any] = []
        try:
            # extend() keeps the values produced before a failure, so len(values) locates it.
            values.extend(changes[position](conn) for position in range(start, end))
        except Exception as err:  # a statement's error goes to its caller, below
            failing = start + len(values)
            if not (conn.in_transaction and self._rollback_to("statements")):
                # Nothing to replay into: report the run up to the failure as SQLite left it.
                outcomes.extend((True, value) for value in values)
                outcomes.append((False, self._caller_error(err)))
                raise _TransactionLostError(failing, err) from err
            for position in range(start, end):
                self._run_one(changes[position], position, outcomes)
            return
        outcomes.extend((True, value) for value in values)
        if not conn.in_transaction:  # a statement was COMMIT or ROLLBACK after all
            last = end - 1
            outcomes[last] = (False, self._ended_error())
            raise _TransactionLostError(last, outcomes[last][1], ended_by_change=True)
        conn.execute("RELEASE statements")

    def _run_one(
        self, change: Callable[[sqlite3.Connection], Any], index: int, outcomes: list[Outcome]
    ) -> None:
        """Run one change under its own savepoint, appending its outcome."""
        conn = self._conn
        conn.execute("SAVEPOINT change")
        try:
            value = change(conn)
        except Exception as err:  # any error of a change is its caller's, not the writer's
            outcomes.append((False, self._caller_error(err)))
            if not (conn.in_transaction and self._rollback_to("change")):
                raise _TransactionLostError(index, err) from err
            return
        if not conn.in_transaction:
            error = self._ended_error()
            outcomes.append((False, error))
            raise _TransactionLostError(index, error, ended_by_change=True)
        conn.execute("RELEASE change")
        outcomes.append((True, value))

    def _rollback_to(self, savepoint: str) -> bool:
        """Undo up to savepoint and drop it; tell whether the transaction is still open."""
        try:
            self._conn.execute(f"ROLLBACK TO {savepoint}")
            self._conn.execute(f"RELEASE {savepoint}")
        except sqlite3.Error:
            _LOGGER.exception("cannot roll back a failed change on %s; dropping its batch", self._db)
            return False
        return True

    def _caller_error(self, err: Exception) -> Exception:
        """Return the error for a failed change's caller: SQLite's translated, its own as raised."""
        if isinstance(err, sqlite3.Error):
            return translate_error(err, self._db, doing="write to")
        return err

    def _ended_error(self) -> StoreError:
        return StoreError(
            f"a change ended the writer's transaction on {self._db} itself; changes must not "
            "run BEGIN, COMMIT or ROLLBACK (whether this one was written is unknown)"
        )

    def _fail_unknown(self, outcomes: list[Outcome], start: int, stop: int) -> None:
        """Fail the changes in outcomes[start:stop] that had succeeded, as of unknown outcome."""
        for position in range(start, stop):
            if outcomes[position][0]:
                outcomes[position] = (False, StoreError(
                    f"another change ended the writer's transaction on {self._db}; whether "
                    "this change was written is unknown"
                ))

    def _fail_batch(
        self, outcomes: list[Outcome], start: int, stop: int, cause: BaseException, *, doing: str
    ) -> None:
        """Fail the changes in outcomes[start:stop] that had succeeded: their transaction is gone."""
        for position in range(start, stop):
            if outcomes[position][0]:
                outcomes[position] = (False, self._batch_error(cause, doing=doing))

    def _batch_error(self, cause: BaseException, *, doing: str) -> Exception:
        """Return a fresh error for a change lost with its transaction, keeping the Store class."""
        if isinstance(cause, sqlite3.Error):
            translated = translate_error(cause, self._db, doing=doing)
            if isinstance(translated, StoreError):
                return translated
        # Not the caller's own IntegrityError: its change may be fine, the transaction is what failed.
        error = StoreError(
            f"cannot {doing} {self._db}: the transaction holding this change was rolled back "
            f"({cause}); nothing of this change was written"
        )
        error.__cause__ = cause
        return error

    def _rollback_quietly(self) -> None:
        if self._conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                self._conn.execute("ROLLBACK")
