"""Versioned schema migrations (edge/store/migrations/NNNN_name.sql), checked and applied at open."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import re
import sqlite3
import uuid
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING

from edge.errors import StoreError, StoreSchemaError
from edge.store.connection import STRICT_TABLES, translate_error

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

_LOGGER = logging.getLogger(__name__)

MIGRATIONS_PACKAGE = "edge.store.migrations"

_FILE_NAME = re.compile(r"^(?P<version>\d{4})_(?P<name>[a-z0-9_]+)\.sql$")

# The migration runner's own bookkeeping; created before the first migration, in its transaction.
_SCHEMA_MIGRATIONS_SQL = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    INTEGER PRIMARY KEY,
    name       TEXT NOT NULL,
    applied_at TEXT NOT NULL,
    sha256     TEXT NOT NULL
) STRICT
"""


@dataclass(frozen=True, slots=True)
class Migration:
    """One migration file: its version, short name, SQL text and the sha256 of that text."""

    version: int
    name: str
    sql: str
    sha256: str

    @property
    def filename(self) -> str:
        return f"{self.version:04d}_{self.name}.sql"


def load_migrations(package: str = MIGRATIONS_PACKAGE) -> tuple[Migration, ...]:
    """Return the package's migrations in version order; raise StoreSchemaError on a gap or a bad name."""
    found: list[Migration] = []
    for entry in resources.files(package).iterdir():
        if not entry.name.endswith(".sql"):
            continue
        match = _FILE_NAME.match(entry.name)
        if match is None:
            raise StoreSchemaError(
                f"migration file {entry.name!r} in {package} is not named NNNN_short_name.sql"
            )
        data = entry.read_bytes()
        found.append(
            Migration(
                version=int(match["version"]),
                name=match["name"],
                sql=data.decode("utf-8"),
                sha256=hashlib.sha256(data).hexdigest(),
            )
        )
    found.sort(key=lambda m: m.version)
    for expected, migration in enumerate(found, start=1):
        if migration.version != expected:
            raise StoreSchemaError(
                f"migrations in {package} must be numbered 1, 2, 3… without gaps; "
                f"expected version {expected}, found {migration.filename}"
            )
    return tuple(found)


def check_schema(conn: sqlite3.Connection, db: Path, migrations: Sequence[Migration]) -> int:
    """Return the database's schema version after checking it against migrations; write nothing.

    Raises StoreSchemaError when the database is newer than the newest migration, or when an
    applied migration is missing from schema_migrations or was edited since it was applied.
    """
    newest = migrations[-1].version if migrations else 0
    try:
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    except sqlite3.Error as err:
        raise translate_error(err, db, doing="read the schema version of") from err
    if version > newest:
        raise StoreSchemaError(
            f"database schema version {version} is newer than this program understands "
            f"({newest}); upgrade Lineside or restore a matching backup ({db})"
        )
    if version == 0:
        return 0
    try:
        rows = conn.execute(
            "SELECT version, name, sha256 FROM schema_migrations WHERE version <= ?", (version,)
        ).fetchall()
    except sqlite3.OperationalError as err:
        raise StoreSchemaError(
            f"{db} has schema version {version} but no readable schema_migrations table ({err}); "
            "it is not a Lineside database, or it is damaged"
        ) from err
    recorded = {int(v): (str(name), str(sha)) for v, name, sha in rows}
    for migration in migrations[:version]:
        entry = recorded.get(migration.version)
        if entry is None:
            raise StoreSchemaError(
                f"{db} is at schema version {version} but has no record of migration "
                f"{migration.filename}; restore a backup made by Lineside"
            )
        if entry[1] != migration.sha256:
            raise StoreSchemaError(
                f"migration {migration.filename} was changed after it was applied to {db} "
                f"(applied sha256 {entry[1][:12]}…, file now {migration.sha256[:12]}…); "
                "restore the released migration file and put schema changes in a new migration"
            )
    return version


def check_current(conn: sqlite3.Connection, db: Path, migrations: Sequence[Migration]) -> None:
    """Raise StoreSchemaError unless the database is at exactly the newest migration, unedited."""
    current = check_schema(conn, db, migrations)
    newest = migrations[-1].version if migrations else 0
    if current != newest:
        raise StoreSchemaError(
            f"{db} is at schema version {current}, older than this program's {newest}; "
            "start the daemon on it once to migrate it, then read it"
        )


def apply_migrations(
    conn: sqlite3.Connection,
    db: Path,
    migrations: Sequence[Migration],
    *,
    current: int,
    now: str,
) -> list[Migration]:
    """Apply the migrations above version current, each in its own transaction; return those applied."""
    applied: list[Migration] = []
    for migration in migrations[current:]:
        _apply_one(conn, db, migration, now=now)
        applied.append(migration)
        _LOGGER.info("applied schema migration %s to %s", migration.filename, db)
    return applied


def split_statements(sql: str) -> list[str]:
    """Split SQL text into complete statements, respecting quotes, comments and trigger bodies."""
    statements: list[str] = []
    start = 0
    for end in (m.end() for m in re.finditer(";", sql)):
        candidate = sql[start:end]
        if sqlite3.complete_statement(candidate):
            statements.append(candidate.strip())
            start = end
    if sql[start:].strip() and _has_code(sql[start:]):
        raise StoreSchemaError(f"migration ends with an incomplete statement: {sql[start:].strip()!r}")
    return [s for s in statements if _has_code(s)]


def adapt_to_sqlite(sql: str, *, strict_tables: bool = STRICT_TABLES) -> str:
    """Return sql unchanged, or without the STRICT table option when the SQLite library predates it."""
    if strict_tables:
        return sql
    sql = re.sub(r"\bSTRICT\s*,\s*(?=WITHOUT\s+ROWID)", "", sql, flags=re.IGNORECASE)
    sql = re.sub(r"(WITHOUT\s+ROWID)\s*,\s*STRICT\b", r"\1", sql, flags=re.IGNORECASE)
    return re.sub(r"\)\s*STRICT\b", ")", sql, flags=re.IGNORECASE)


def _apply_one(conn: sqlite3.Connection, db: Path, migration: Migration, *, now: str) -> None:
    params = {"now": now, "random_uuid": str(uuid.uuid4())}
    statements = split_statements(adapt_to_sqlite(migration.sql))
    # Foreign keys are off while a migration runs, so it can rebuild a table the SQLite way
    # (create new, copy, drop old, rename); the check below restores the guarantee before COMMIT.
    conn.execute("PRAGMA foreign_keys = OFF")
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(adapt_to_sqlite(_SCHEMA_MIGRATIONS_SQL))
        for statement in statements:
            conn.execute(statement, params)
        _check_foreign_keys(conn, db, migration)
        conn.execute(
            "INSERT INTO schema_migrations (version, name, applied_at, sha256) VALUES (?, ?, ?, ?)",
            (migration.version, migration.name, now, migration.sha256),
        )
        # PRAGMA takes no bound parameters; the version is an int parsed from the file name.
        conn.execute(f"PRAGMA user_version = {int(migration.version)}")
        conn.execute("COMMIT")
    except BaseException as err:
        if conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
        if isinstance(err, sqlite3.Error):
            translated = translate_error(err, db, doing=f"apply migration {migration.filename} to")
            if type(translated) in {StoreError, sqlite3.IntegrityError}:
                # A fault of the migration itself; a full or read-only disk keeps its own error.
                raise StoreSchemaError(
                    f"migration {migration.filename} failed on {db}: {err}; "
                    "nothing of it was applied"
                ) from err
            raise translated from err
        raise
    finally:
        conn.execute("PRAGMA foreign_keys = ON")


def _check_foreign_keys(conn: sqlite3.Connection, db: Path, migration: Migration) -> None:
    broken = conn.execute("PRAGMA foreign_key_check").fetchone()
    if broken is not None:
        raise StoreSchemaError(
            f"migration {migration.filename} leaves a broken foreign key in table "
            f"{broken[0]!r} (row {broken[1]}); nothing of it was applied to {db}"
        )


def _has_code(sql: str) -> bool:
    """Tell whether sql holds more than whitespace and comments."""
    without_block = re.sub(r"/\*.*?\*/", "", sql, flags=re.DOTALL)
    return any(line.split("--", 1)[0].strip() for line in without_block.splitlines())
