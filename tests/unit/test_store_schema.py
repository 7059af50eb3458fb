"""Opening the store: locking, integrity check, migrations and their refusals."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import textwrap
import uuid
from datetime import UTC, datetime

import pytest

from edge.errors import (
    StoreCorruptError,
    StoreError,
    StoreLockedError,
    StoreSchemaError,
)
from edge.store import DB_NAME, Store
from edge.store.connection import STRICT_TABLES
from edge.store.lock import LOCK_NAME, DirectoryLock
from edge.store.schema import (
    Migration,
    adapt_to_sqlite,
    apply_migrations,
    load_migrations,
    split_statements,
)

FIXED_NOW = datetime(2026, 3, 1, 12, 30, 0, 123456, tzinfo=UTC)


def fixed_clock() -> datetime:
    return FIXED_NOW


def raw(path):
    """A plain sqlite3 connection, as a tool outside Lineside would have."""
    return sqlite3.connect(path, isolation_level=None)


def migration(version: int, sql: str, name: str = "test") -> Migration:
    return Migration(version, name, sql, hashlib.sha256(sql.encode()).hexdigest())


def test_open_creates_directory_and_applies_every_migration(tmp_path):
    state = tmp_path / "state" / "nested"
    store = Store.open(state, clock=fixed_clock)
    store.close()
    known = load_migrations()
    conn = raw(state / DB_NAME)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == known[-1].version
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        rows = conn.execute(
            "SELECT version, name, applied_at, sha256 FROM schema_migrations ORDER BY version"
        ).fetchall()
        assert rows == [
            (m.version, m.name, "2026-03-01T12:30:00.123456Z", m.sha256) for m in known
        ]
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_schema WHERE type='table'")}
        assert {"meta", "daemon_run", "schema_migrations"} <= tables
        meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
    finally:
        conn.close()
    assert uuid.UUID(meta["store_id"]).version == 4
    assert meta["store_id"] == store.store_id
    assert meta["created_at"] == "2026-03-01T12:30:00.123456Z"


@pytest.mark.skipif(not STRICT_TABLES, reason="this SQLite predates STRICT tables")
def test_tables_are_strict(tmp_path):
    Store.open(tmp_path).close()
    conn = raw(tmp_path / DB_NAME)
    try:
        strict = dict(conn.execute("SELECT name, strict FROM pragma_table_list").fetchall())
    finally:
        conn.close()
    assert strict["meta"] == strict["daemon_run"] == strict["schema_migrations"] == 1


def test_reopen_is_idempotent(tmp_path):
    first = Store.open(tmp_path)
    first.close()
    second = Store.open(tmp_path)
    second.close()
    assert second.store_id == first.store_id
    conn = raw(tmp_path / DB_NAME)
    try:
        count = conn.execute("SELECT count(*) FROM schema_migrations").fetchone()[0]
    finally:
        conn.close()
    assert count == len(load_migrations())


def test_newer_schema_is_refused_and_left_untouched(tmp_path):
    db = tmp_path / DB_NAME
    newest = load_migrations()[-1].version
    future = newest + 1  # one past the newest migration, however many there are
    conn = raw(db)
    conn.execute("CREATE TABLE future (x)")
    conn.execute(f"PRAGMA user_version = {future}")
    conn.close()
    before = db.read_bytes()
    with pytest.raises(StoreSchemaError) as caught:
        Store.open(tmp_path)
    assert (
        f"database schema version {future} is newer than this program understands ({newest}); "
        "upgrade Lineside or restore a matching backup"
    ) in str(caught.value)
    assert db.read_bytes() == before
    assert not (tmp_path / f"{DB_NAME}-wal").exists()
    DirectoryLock.acquire(tmp_path).release()  # the failed open let go of the lock


def test_edited_applied_migration_is_refused(tmp_path):
    Store.open(tmp_path).close()
    conn = raw(tmp_path / DB_NAME)
    conn.execute("UPDATE schema_migrations SET sha256 = ? WHERE version = 1", ("0" * 64,))
    conn.close()
    with pytest.raises(StoreSchemaError, match=r"0001_initial\.sql was changed after it was applied"):
        Store.open(tmp_path)


def test_missing_migration_record_is_refused(tmp_path):
    Store.open(tmp_path).close()
    conn = raw(tmp_path / DB_NAME)
    conn.execute("DELETE FROM schema_migrations")
    conn.close()
    with pytest.raises(StoreSchemaError, match=r"has no record of migration 0001_initial\.sql"):
        Store.open(tmp_path)


def test_foreign_database_without_bookkeeping_is_refused(tmp_path):
    conn = raw(tmp_path / DB_NAME)
    conn.execute("PRAGMA user_version = 1")
    conn.close()
    with pytest.raises(StoreSchemaError, match="no readable schema_migrations table"):
        Store.open(tmp_path)


def test_garbage_file_is_reported_corrupt_naming_the_file(tmp_path):
    db = tmp_path / DB_NAME
    db.write_bytes(b"this is not a database, just text and then some\x00\x01" * 200)
    with pytest.raises(StoreCorruptError) as caught:
        Store.open(tmp_path)
    assert str(db) in str(caught.value)
    assert "not a usable SQLite database" in str(caught.value)
    with pytest.raises(StoreCorruptError, match="not a usable SQLite database"):
        Store.open_readonly(tmp_path)


async def test_damaged_page_is_reported_corrupt_with_the_first_problem(tmp_path):
    async with Store.open(tmp_path) as store:
        await store.write(lambda c: c.execute("CREATE TABLE filler (id INTEGER PRIMARY KEY, b BLOB)"))
        await store.executemany("INSERT INTO filler (b) VALUES (randomblob(300))", [()] * 3000)
    db = tmp_path / DB_NAME
    page_size = 4096
    pages = db.stat().st_size // page_size
    assert pages > 100  # the filler table fills most of the file
    with db.open("r+b") as file:
        file.seek(pages // 2 * page_size)
        file.write(b"\xff" * page_size)
    with pytest.raises(StoreCorruptError) as caught:
        Store.open(tmp_path)
    message = str(caught.value)
    assert f"{db} failed its integrity check: " in message
    assert "Page " in message
    assert "\n" not in message


def test_second_writer_is_refused_naming_the_pid(tmp_path):
    store = Store.open(tmp_path)
    try:
        with pytest.raises(StoreLockedError) as caught:
            Store.open(tmp_path)
        assert f"process {os.getpid()}" in str(caught.value)
        assert LOCK_NAME in str(caught.value)
    finally:
        store.close()
    Store.open(tmp_path).close()  # released on close


def test_lock_file_names_the_holder(tmp_path):
    lock = DirectoryLock.acquire(tmp_path)
    try:
        assert (tmp_path / LOCK_NAME).read_text() == f"{os.getpid()}\n"
    finally:
        lock.release()
        lock.release()  # idempotent


def test_readonly_open_needs_an_existing_current_database(tmp_path):
    with pytest.raises(StoreError, match="no Lineside database"):
        Store.open_readonly(tmp_path)
    Store.open(tmp_path).close()
    conn = raw(tmp_path / DB_NAME)
    conn.execute("PRAGMA user_version = 0")
    conn.close()
    with pytest.raises(StoreSchemaError, match="older than this program"):
        Store.open_readonly(tmp_path / DB_NAME)


def test_failed_migration_leaves_nothing_applied(tmp_path):
    conn = raw(tmp_path / "x.db")
    steps = [
        migration(1, "CREATE TABLE a (x INTEGER) STRICT;", "first"),
        migration(2, "CREATE TABLE b (x INTEGER) STRICT;\nCREATE TABLE a (y INTEGER);", "second"),
    ]
    try:
        with pytest.raises(StoreSchemaError, match=r"migration 0002_second\.sql failed") as caught:
            apply_migrations(conn, tmp_path / "x.db", steps, current=0, now="t")
        assert "table a already exists" in str(caught.value)
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 1
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_schema WHERE type='table'")}
        assert "b" not in tables
        assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    finally:
        conn.close()


def test_migration_breaking_a_foreign_key_is_refused(tmp_path):
    conn = raw(tmp_path / "x.db")
    steps = [
        migration(1, textwrap.dedent("""
            CREATE TABLE parent (id INTEGER PRIMARY KEY);
            CREATE TABLE child (id INTEGER PRIMARY KEY, parent INTEGER REFERENCES parent (id));
            INSERT INTO child VALUES (1, 42);
        """)),
    ]
    try:
        with pytest.raises(StoreSchemaError, match="broken foreign key in table 'child'"):
            apply_migrations(conn, tmp_path / "x.db", steps, current=0, now="t")
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 0
    finally:
        conn.close()


def test_migration_parameters_are_bound(tmp_path):
    conn = raw(tmp_path / "x.db")
    sql = "CREATE TABLE m (k TEXT, v TEXT);\nINSERT INTO m VALUES ('now', :now), ('id', :random_uuid);"
    try:
        apply_migrations(conn, tmp_path / "x.db", [migration(1, sql)], current=0, now="T0")
        values = dict(conn.execute("SELECT k, v FROM m").fetchall())
    finally:
        conn.close()
    assert values["now"] == "T0"
    assert uuid.UUID(values["id"]).version == 4


def test_split_statements_respects_quotes_comments_and_triggers():
    sql = textwrap.dedent("""
        -- a comment; with a semicolon
        CREATE TABLE t (x TEXT);  /* block; comment */
        INSERT INTO t VALUES ('a;b'); INSERT INTO t VALUES ("c;d");
        CREATE TRIGGER tr AFTER INSERT ON t BEGIN
            UPDATE t SET x = x || ';';
        END;
        -- trailing comment
    """)
    statements = split_statements(sql)
    assert len(statements) == 4
    assert statements[1] == "/* block; comment */\nINSERT INTO t VALUES ('a;b');"
    assert statements[3].startswith("CREATE TRIGGER")
    assert statements[3].endswith("END;")


def test_split_statements_refuses_an_unfinished_statement():
    with pytest.raises(StoreSchemaError, match="incomplete statement"):
        split_statements("CREATE TABLE t (x); INSERT INTO t VALUES ('open")


def test_strict_is_dropped_only_for_old_sqlite():
    sql = (
        "CREATE TABLE a (x) STRICT;\nCREATE TABLE b (x PRIMARY KEY) WITHOUT ROWID, STRICT;\n"
        "CREATE TABLE c (x PRIMARY KEY) strict, WITHOUT ROWID;"
    )
    assert adapt_to_sqlite(sql, strict_tables=True) == sql
    assert adapt_to_sqlite(sql, strict_tables=False) == (
        "CREATE TABLE a (x);\nCREATE TABLE b (x PRIMARY KEY) WITHOUT ROWID;\n"
        "CREATE TABLE c (x PRIMARY KEY) WITHOUT ROWID;"
    )


def write_package(root, name, files):
    package = root / name
    package.mkdir()
    (package / "__init__.py").write_text("")
    for file_name, text in files.items():
        (package / file_name).write_text(text)


def test_migration_files_must_be_numbered_without_gaps(tmp_path, monkeypatch):
    write_package(tmp_path, "gap_migrations", {"0001_a.sql": "SELECT 1;", "0003_c.sql": "SELECT 1;"})
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(StoreSchemaError, match=r"expected version 2, found 0003_c\.sql"):
        load_migrations("gap_migrations")


def test_migration_files_must_be_well_named(tmp_path, monkeypatch):
    write_package(tmp_path, "badname_migrations", {"0001_a.sql": "SELECT 1;", "2_B.sql": "x"})
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(StoreSchemaError, match=r"'2_B\.sql' .* is not named NNNN_short_name\.sql"):
        load_migrations("badname_migrations")


def test_shipped_migrations_load_in_order():
    known = load_migrations()
    assert [m.version for m in known] == list(range(1, len(known) + 1))
    assert known[0].filename == "0001_initial.sql"
