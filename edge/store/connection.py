"""Opening SQLite connections the way the store needs them, and turning SQLite errors into Store errors."""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING
from urllib.parse import quote

from edge.errors import (
    StoreCorruptError,
    StoreError,
    StoreFullError,
    StoreLockedError,
    StoreReadOnlyError,
)

if TYPE_CHECKING:
    from pathlib import Path

# Our writer is the only writer (the state-directory lock sees to that), so a wait on SQLite's lock
# means another program (a backup, the sqlite3 shell) holds it. 5 s outlasts such a short hold; a
# longer one is reported as StoreLockedError rather than stalling the line without a word.
BUSY_TIMEOUT_S = 5.0

# The WAL is folded back into the database every 4,000 pages (16 MiB at 4 KiB pages) rather than
# SQLite's 1,000: at tens of thousands of changes per second the default checkpoints (and fsyncs the
# database) several times a second, while 16 MiB still replays in well under a second after a crash.
WAL_AUTOCHECKPOINT_PAGES = 4000

# After a checkpoint the WAL file is cut back to this size, so one burst does not keep its disk space.
JOURNAL_SIZE_LIMIT_BYTES = 64 * 1024 * 1024

# Page cache per connection, in KiB (SQLite takes a negative number as KiB): big enough for the hot
# serial and unit tables of a running batch, small next to the memory of a line PC.
CACHE_SIZE_KIB = 16 * 1024

# SQLite 3.37 introduced STRICT tables; older libraries reject the keyword.
STRICT_TABLES = sqlite3.sqlite_version_info >= (3, 37, 0)

_LOCKED_CODES = frozenset({sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED})
_READONLY_CODES = frozenset({sqlite3.SQLITE_READONLY, sqlite3.SQLITE_CANTOPEN})
_CORRUPT_CODES = frozenset({sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB})


def connect(db: Path, *, readonly: bool) -> sqlite3.Connection:
    """Open db in autocommit mode (the store issues BEGIN/COMMIT itself); usable from one thread at a time.

    Opening reads nothing: run quick_check next, then configure_writer or configure_reader.
    """
    # check_same_thread=False: a connection is opened on the caller's thread, then used only by
    # the store's own single writer or reader thread, never by two threads at once.
    try:
        if readonly:
            uri = f"file:{quote(str(db.resolve()))}?mode=ro"
            conn = sqlite3.connect(
                uri, uri=True, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
            )
        else:
            conn = sqlite3.connect(
                db, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
            )
    except sqlite3.Error as err:
        raise translate_error(err, db, doing="open") from err
    return conn


def quick_check(conn: sqlite3.Connection, db: Path) -> None:
    """Raise StoreCorruptError naming db and the first problem unless PRAGMA quick_check says ok."""
    try:
        rows = conn.execute("PRAGMA quick_check(1)").fetchall()
    except sqlite3.DatabaseError as err:
        if _primary_code(err) in _CORRUPT_CODES:
            raise StoreCorruptError(
                f"{db} is not a usable SQLite database ({err}); {_CORRUPT_HINT}"
            ) from err
        raise translate_error(err, db, doing="check") from err
    if rows != [("ok",)]:
        # SQLite's report may span lines ("*** in database main ***\nPage 7: ..."); keep it on one.
        first = " ".join(str(rows[0][0]).split()) if rows else "no result from PRAGMA quick_check"
        raise StoreCorruptError(f"{db} failed its integrity check: {first}; {_CORRUPT_HINT}")


def configure_writer(conn: sqlite3.Connection, db: Path) -> None:
    """Put the writer connection in WAL mode with synchronous=FULL, the durability the store promises."""
    try:
        _set_common_pragmas(conn)
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute(f"PRAGMA wal_autocheckpoint = {WAL_AUTOCHECKPOINT_PAGES}")
        conn.execute(f"PRAGMA journal_size_limit = {JOURNAL_SIZE_LIMIT_BYTES}")
    except sqlite3.Error as err:
        raise translate_error(err, db, doing="configure") from err
    if str(mode).lower() != "wal":
        raise StoreError(
            f"cannot put {db} in WAL journal mode (SQLite kept {mode!r}); "
            "the state directory must be on a local filesystem"
        )


def configure_reader(conn: sqlite3.Connection, db: Path) -> None:
    """Make a read connection refuse writes, so a read() function cannot change anything by mistake."""
    try:
        _set_common_pragmas(conn)
        conn.execute("PRAGMA query_only = ON")
    except sqlite3.Error as err:
        raise translate_error(err, db, doing="configure") from err


def translate_error(err: sqlite3.Error, db: Path, *, doing: str) -> Exception:
    """Map a SQLite error to the Store error for its result code, naming db and what to do about it.

    Constraint violations (sqlite3.IntegrityError) come back unchanged: domain code catches them to
    enforce uniqueness (a serial is used at most once).
    """
    if isinstance(err, sqlite3.IntegrityError):
        return err
    code = _primary_code(err)
    name = getattr(err, "sqlite_errorname", None) or type(err).__name__
    what = f"cannot {doing} {db}: {err} ({name})"
    new: Exception
    if code in _LOCKED_CODES:
        new = StoreLockedError(
            f"{what}; another program holds the database's lock: stop it "
            "(a sqlite3 shell, a backup tool) and try again"
        )
    elif code == sqlite3.SQLITE_FULL:
        new = StoreFullError(
            f"{what}; the filesystem holding it is full: free space and try again "
            "(nothing of the failed change was written)"
        )
    elif code in _READONLY_CODES:
        new = StoreReadOnlyError(
            f"{what}; check that the file and its directory are writable and the filesystem "
            "is mounted read-write"
        )
    elif code in _CORRUPT_CODES:
        new = StoreCorruptError(f"{what}; {_CORRUPT_HINT}")
    elif code == sqlite3.SQLITE_IOERR:
        new = StoreError(f"{what}; the disk reported an I/O error: check it and the kernel log")
    else:
        new = StoreError(what)
    new.__cause__ = err
    return new


_CORRUPT_HINT = (
    "stop Lineside and restore the database from a backup, or move the file aside to start empty"
)


def _set_common_pragmas(conn: sqlite3.Connection) -> None:
    conn.execute(f"PRAGMA cache_size = -{CACHE_SIZE_KIB}")
    conn.execute("PRAGMA foreign_keys = ON")


def _primary_code(err: sqlite3.Error) -> int | None:
    code = getattr(err, "sqlite_errorcode", None)
    # Extended result codes carry the primary code in their low byte (SQLITE_READONLY_DBMOVED -> READONLY).
    return code & 0xFF if isinstance(code, int) else None
