"""Daemon runs: a row per start, closed on a clean stop, so the next start knows the last one died."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from edge.errors import StoreError

if TYPE_CHECKING:
    import sqlite3


@dataclass(frozen=True, slots=True)
class DaemonRun:
    """One daemon run as recorded: when it started and stopped, whether cleanly, with which program."""

    id: int
    started_at: datetime
    stopped_at: datetime | None
    clean: bool
    version: str
    config_sha256: str | None


def iso_utc(moment: datetime) -> str:
    """Format an aware datetime as the store's timestamp text: ISO 8601 UTC with microseconds and Z."""
    if moment.tzinfo is None:
        raise ValueError(f"the store clock returned a naive datetime ({moment!r}); it must be aware")
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def begin_run(
    conn: sqlite3.Connection, *, now: datetime, version: str, config_sha256: str | None
) -> tuple[int, DaemonRun | None]:
    """Record a new run; return its id and the previous run when that one did not stop cleanly."""
    row = conn.execute(
        "SELECT id, started_at, stopped_at, clean, version, config_sha256"
        " FROM daemon_run ORDER BY id DESC LIMIT 1"
    ).fetchone()
    previous = None
    if row is not None and not row[3]:
        previous = DaemonRun(
            id=int(row[0]),
            started_at=datetime.fromisoformat(row[1]),
            stopped_at=datetime.fromisoformat(row[2]) if row[2] is not None else None,
            clean=False,
            version=str(row[4]),
            config_sha256=row[5],
        )
    cursor = conn.execute(
        "INSERT INTO daemon_run (started_at, version, config_sha256) VALUES (?, ?, ?)",
        (iso_utc(now), version, config_sha256),
    )
    if cursor.lastrowid is None:
        raise StoreError("SQLite returned no id for the new daemon_run row")
    return cursor.lastrowid, previous


def end_run(conn: sqlite3.Connection, *, now: datetime, run_id: int) -> None:
    """Mark run_id as stopped cleanly at now; raise StoreError when there is no such open run."""
    cursor = conn.execute(
        "UPDATE daemon_run SET stopped_at = ?, clean = 1 WHERE id = ? AND clean = 0",
        (iso_utc(now), run_id),
    )
    if cursor.rowcount != 1:
        raise StoreError(f"no open daemon run {run_id} to end (already ended, or never begun)")
