"""The batch writer on its own: any mix of good and failing changes commits exactly the good ones."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from edge.errors import StoreError
from edge.store.writer import BatchWriter, Statement

DB = Path("memory.db")  # only named in messages

KINDS = ["fn", "fn_duplicate", "fn_raises", "statement", "statement_duplicate", "statement_bad"]


class ChangeFailedError(Exception):
    pass


def fresh_writer():
    conn = sqlite3.connect(":memory:", isolation_level=None)
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY)")
    conn.execute("INSERT INTO t (id) VALUES (1)")
    return conn, BatchWriter(conn, DB)


def make_change(kind, row_id):
    if kind == "statement":
        return Statement("INSERT INTO t (id) VALUES (?)", (row_id,))
    if kind == "statement_duplicate":
        return Statement("INSERT INTO t (id) VALUES (1)", ())
    if kind == "statement_bad":
        return Statement("INSERT INTO nowhere (id) VALUES (?)", (row_id,))

    def change(conn):
        conn.execute("INSERT INTO t (id) VALUES (?)", (row_id,))
        if kind == "fn_duplicate":
            conn.execute("INSERT INTO t (id) VALUES (1)")
        if kind == "fn_raises":
            raise ChangeFailedError(row_id)
        return row_id

    return change


EXPECTED_ERROR = {
    "fn_duplicate": sqlite3.IntegrityError,
    "fn_raises": ChangeFailedError,
    "statement_duplicate": sqlite3.IntegrityError,
    "statement_bad": StoreError,
}


@given(st.lists(st.sampled_from(KINDS), max_size=40))
def test_exactly_the_good_changes_commit(kinds):
    conn, writer = fresh_writer()
    try:
        changes = [make_change(kind, 100 + index) for index, kind in enumerate(kinds)]
        result = writer.run_batch(changes)
        stored = {row for (row,) in conn.execute("SELECT id FROM t WHERE id != 1")}
        assert not conn.in_transaction
    finally:
        conn.close()
    assert len(result.outcomes) == len(kinds)
    assert result.failed_transactions == 0
    assert result.commits == (1 if kinds else 0)
    good = set()
    for index, (kind, (ok, value)) in enumerate(zip(kinds, result.outcomes, strict=True)):
        if kind in EXPECTED_ERROR:
            assert not ok
            assert type(value) is EXPECTED_ERROR[kind]
        else:
            assert ok
            assert value == 100 + index
            good.add(100 + index)
    assert stored == good


def test_statement_repr_names_sql_and_parameters():
    assert repr(Statement("SELECT ?", (1,))) == "Statement('SELECT ?', (1,))"


def test_checkpoint_reports_sqlite_counters(tmp_path):
    conn = sqlite3.connect(tmp_path / "w.db", isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("CREATE TABLE t (x)")
        busy, log, done = BatchWriter(conn, tmp_path / "w.db").checkpoint()
    finally:
        conn.close()
    assert busy == 0
    assert log == done


def test_a_failing_begin_fails_every_change(tmp_path):
    conn, writer = fresh_writer()
    try:
        conn.execute("BEGIN")  # the writer's BEGIN IMMEDIATE now fails: nested transaction
        result = writer.run_batch([make_change("fn", 5), make_change("statement", 6)])
    finally:
        conn.close()
    assert result.commits == 0
    assert result.failed_transactions == 1
    for ok, error in result.outcomes:
        assert not ok
        assert isinstance(error, StoreError)
        assert "cannot begin a transaction on memory.db" in str(error)


def test_a_statement_ending_the_transaction_makes_its_batch_unknown():
    conn, writer = fresh_writer()
    try:
        result = writer.run_batch([
            make_change("statement", 5),
            Statement("COMMIT", ()),  # Store.execute refuses this; the writer still copes
            make_change("fn", 6),
        ])
        stored = {row for (row,) in conn.execute("SELECT id FROM t WHERE id != 1")}
    finally:
        conn.close()
    first, second, third = result.outcomes
    assert not first[0]
    assert "whether this change was written is unknown" in str(first[1])
    assert not second[0]
    assert "must not run BEGIN, COMMIT or ROLLBACK" in str(second[1])
    assert third == (True, 6)
    assert stored == {5, 6}  # the COMMIT did write the first: hence "unknown", not "rolled back"
