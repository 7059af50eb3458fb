"""The audit trail (21 CFR Part 11 §11.10(e); DESIGN invariant 7): append-only, hash-chained, verifiable.

Every entry is a row of ``audit_log``: when (store clock, UTC), who (a user name, or None for the system and
for attempts by an unknown name), what (``action``, lower-case ``area.verb`` such as ``user.login``,
``line.start``, ``batch.release``, ``config.loaded``, ``alarm.raised``), on what (``subject``) and the details
as canonical JSON. Each entry's ``hash`` is ``sha256(prev_hash + canonical JSON of [id, at, actor, action,
subject, details_json])``, ``prev_hash`` being the previous entry's hash (the first entry's is derived from the
store id, so a trail cannot be moved to another store unnoticed). Triggers refuse UPDATE and DELETE and an
INSERT that does not follow the last entry; ``verify`` finds what was done with the triggers out of the way.

Anyone able to write the database file can still rewrite the whole chain from some entry on: publish
``verify``'s last hash somewhere else (the journal, a printed batch report) to make that detectable too.
"""

from __future__ import annotations

import csv
import dataclasses
import enum
import hashlib
import json
import re
from dataclasses import dataclass
from datetime import date, datetime
from typing import TYPE_CHECKING, Any, TextIO

from edge.store.runs import iso_utc
from edge.store.store import utc_now

if TYPE_CHECKING:
    import sqlite3
    from collections.abc import Callable, Iterator, Mapping

    from edge.store import Store

ACTION = re.compile(r"[a-z0-9][a-z0-9_-]*(\.[a-z0-9][a-z0-9_-]*)+")
"""An action is ``area.verb`` (more dots allowed), lower case: ``user.login``, ``batch.release``."""

MAX_SUBJECT = 512
"""Longest subject kept; a subject is a name or an id, so more means a caller put a record there by mistake."""

TRIGGERS = ("audit_log_append_only_update", "audit_log_append_only_delete", "audit_log_chained")
"""The triggers that keep audit_log append-only; verify reports any that is missing."""

COLUMNS = ("id", "at", "actor", "action", "subject", "details_json", "prev_hash", "hash")

_GENESIS_PREFIX = "lineside audit trail of store "


def canonical_json(value: object) -> str:
    """Return value as canonical JSON (sorted keys, no spaces, UTF-8 text); TypeError for what JSON cannot hold.

    Datetimes become ISO 8601 (UTC with Z when aware), enums their value, dataclasses their fields.
    """
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False,
                      default=_jsonable)


def sha256_of(value: object) -> str:
    """Return the hex sha256 of value's canonical JSON, the digest signatures and entries are bound to."""
    return hashlib.sha256(canonical_json(value).encode("utf-8")).hexdigest()


def genesis_hash(store_id: str) -> str:
    """Return the prev_hash of a store's first entry."""
    return hashlib.sha256((_GENESIS_PREFIX + store_id).encode("utf-8")).hexdigest()


def entry_hash(prev_hash: str, content: tuple[int, str, str | None, str, str, str]) -> str:
    """Return an entry's hash from the previous one's and its (id, at, actor, action, subject, details_json)."""
    text = json.dumps(list(content), separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256((prev_hash + text).encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One entry of the audit trail as stored."""

    id: int
    at: datetime
    actor: str | None
    action: str
    subject: str
    details: dict[str, Any]
    hash: str


@dataclass(frozen=True, slots=True)
class AuditVerdict:
    """What verify found: ok, how many entries it checked, the first broken one (if any) and why, the head."""

    ok: bool
    entries: int
    first_broken_id: int | None = None
    reason: str | None = None
    last_id: int | None = None
    last_hash: str | None = None
    """The hash of the last entry: note it elsewhere, and a later rewrite of the chain shows."""


class AuditTrail:
    """Records entries in the store's audit_log and reads, verifies and exports them."""

    def __init__(self, store: Store, clock: Callable[[], datetime] = utc_now) -> None:
        self._store = store
        self._clock = clock

    async def record(self, actor: str | None, action: str, subject: str,
                     details: Mapping[str, object] | None = None) -> int:
        """Append one entry in its own change; return its id once it is durably committed."""
        at = self._clock()
        return await self._store.write(lambda conn: self.record_in(conn, actor, action, subject, details, at=at))

    def record_in(self, conn: sqlite3.Connection, actor: str | None, action: str, subject: str,
                  details: Mapping[str, object] | None = None, *, at: datetime | None = None) -> int:
        """Append one entry inside the caller's write (store.write's fn), so it commits with that change; return its id.

        ValueError for a malformed action or subject, TypeError for details JSON cannot hold; at defaults to now.
        """
        if not ACTION.fullmatch(action):
            raise ValueError(f"audit action {action!r} is not lower-case area.verb, like 'batch.release'")
        if not subject or len(subject) > MAX_SUBJECT:
            raise ValueError(f"an audit subject is 1 to {MAX_SUBJECT} characters, got {len(subject)}")
        details_json = canonical_json(dict(details or {}))
        stamp = iso_utc(self._clock() if at is None else at)
        last = conn.execute("SELECT hash FROM audit_log ORDER BY id DESC LIMIT 1").fetchone()
        prev_hash = str(last[0]) if last is not None else genesis_hash(_store_id(conn))
        # The highest id ever issued, not max(id): after entries were cut off the end, the next one leaves a
        # gap for verify to see instead of taking their place.
        issued = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'audit_log'").fetchone()
        entry_id = (int(issued[0]) if issued is not None else 0) + 1
        digest = entry_hash(prev_hash, (entry_id, stamp, actor, action, subject, details_json))
        conn.execute(
            "INSERT INTO audit_log (id, at, actor, action, subject, details_json, prev_hash, hash)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (entry_id, stamp, actor, action, subject, details_json, prev_hash, digest),
        )
        return entry_id

    async def entries(self, *, after: int = 0, limit: int = 100, subject: str | None = None) -> list[AuditEntry]:
        """Return up to limit entries with ids above after, oldest first, optionally of one subject only."""
        return await self._store.read(lambda conn: read_entries(conn, after=after, limit=limit, subject=subject))

    async def check(self) -> AuditVerdict:
        """Verify the whole trail on the store's read connection."""
        return await self._store.read(verify)

    # The module's functions, reachable from an AuditTrail too (a method body sees the module, not the class).
    @staticmethod
    def verify(conn: sqlite3.Connection) -> AuditVerdict:
        """Check the trail on conn: see the module function verify."""
        return verify(conn)

    @staticmethod
    def export_csv(conn: sqlite3.Connection, out: TextIO) -> int:
        """Write the trail on conn to out as CSV: see the module function export_csv."""
        return export_csv(conn, out)

    @staticmethod
    def export_json(conn: sqlite3.Connection, out: TextIO) -> int:
        """Write the trail on conn to out as JSON: see the module function export_json."""
        return export_json(conn, out)


def read_entries(conn: sqlite3.Connection, *, after: int = 0, limit: int = 100,
                 subject: str | None = None) -> list[AuditEntry]:
    """Return up to limit entries with ids above after, oldest first, optionally of one subject only."""
    sql = "SELECT id, at, actor, action, subject, details_json, hash FROM audit_log WHERE id > ?"
    params: list[object] = [after]
    if subject is not None:
        sql += " AND subject = ?"
        params.append(subject)
    sql += " ORDER BY id LIMIT ?"
    params.append(limit)
    return [
        AuditEntry(id=int(row[0]), at=datetime.fromisoformat(row[1]), actor=row[2], action=str(row[3]),
                   subject=str(row[4]), details=json.loads(row[5]), hash=str(row[6]))
        for row in conn.execute(sql, params)
    ]


def verify(conn: sqlite3.Connection) -> AuditVerdict:
    """Check every entry's hash, the chain, the ids and the triggers; report the first entry found broken."""
    expected_prev = genesis_hash(_store_id(conn))
    previous_id = 0
    entries = 0
    broken: tuple[int, str] | None = None
    for row in _rows(conn):
        entries += 1
        reason = _broken(row, previous_id, expected_prev)
        if reason is not None:
            broken = (row[0], reason)
            break
        previous_id, expected_prev = row[0], row[7]
    last_hash = expected_prev if previous_id else None
    if broken is None:
        issued = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'audit_log'").fetchone()
        if issued is not None and int(issued[0]) > previous_id:
            cut = f"#{previous_id + 1} to #{int(issued[0])}"
            broken = (previous_id + 1, f"entries {cut} were cut off the end of the trail (deleted)")
    dropped = _missing_triggers(conn)
    if broken is None and not dropped:
        return AuditVerdict(ok=True, entries=entries, last_id=previous_id or None, last_hash=last_hash)
    reasons = [broken[1]] if broken is not None else []
    if dropped:
        reasons.append(f"the triggers that keep audit_log append-only were dropped ({', '.join(dropped)}): the "
                       "trail may have been rewritten")
    return AuditVerdict(ok=False, entries=entries, first_broken_id=broken[0] if broken is not None else None,
                        reason="; ".join(reasons), last_id=previous_id or None, last_hash=last_hash)


def _broken(row: tuple[int, str, str | None, str, str, str, str, str], previous_id: int,
            expected_prev: str) -> str | None:
    """Say what is wrong with an entry given the one before it (its id and hash), or None."""
    entry_id, prev_hash, digest = row[0], row[6], row[7]
    if entry_hash(prev_hash, row[:6]) != digest:
        return f"entry #{entry_id} was changed after it was written (its hash does not match its content)"
    if entry_id != previous_id + 1:
        gap = f"#{previous_id + 1}" if entry_id == previous_id + 2 else f"#{previous_id + 1} to #{entry_id - 1}"
        return f"entries {gap} are missing before entry #{entry_id} (deleted)"
    if prev_hash != expected_prev:
        before = "the start of the trail" if previous_id == 0 else f"entry #{previous_id}"
        return f"entry #{entry_id} does not follow {before} (an entry was deleted, inserted or reordered there)"
    return None


def export_csv(conn: sqlite3.Connection, out: TextIO) -> int:
    """Write every entry to out as CSV (RFC 4180, a header row, the stored columns); return the count."""
    writer = csv.writer(out)
    writer.writerow(COLUMNS)
    count = 0
    for row in _rows(conn):
        writer.writerow(["" if value is None else value for value in row])
        count += 1
    return count


def export_json(conn: sqlite3.Connection, out: TextIO) -> int:
    """Write every entry to out as one JSON document, an entry at a time; return the count.

    The document is {"store_id", "entries": [...]}; each entry has the stored columns, details_json kept as
    the exact text its hash covers.
    """
    out.write('{"store_id":' + json.dumps(_store_id(conn)) + ',"entries":[')
    count = 0
    for row in _rows(conn):
        out.write(("\n" if count == 0 else ",\n") + json.dumps(dict(zip(COLUMNS, row, strict=True)),
                                                               ensure_ascii=False))
        count += 1
    out.write("\n]}\n")
    return count


def _rows(conn: sqlite3.Connection) -> Iterator[tuple[int, str, str | None, str, str, str, str, str]]:
    """Every entry in id order, streamed from the cursor."""
    yield from conn.execute(
        "SELECT id, at, actor, action, subject, details_json, prev_hash, hash FROM audit_log ORDER BY id"
    )


def _missing_triggers(conn: sqlite3.Connection) -> list[str]:
    present = {str(row[0]) for row in conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'audit_log'"
    )}
    return [name for name in TRIGGERS if name not in present]


def _store_id(conn: sqlite3.Connection) -> str:
    row = conn.execute("SELECT value FROM meta WHERE key = 'store_id'").fetchone()
    if row is None:
        raise ValueError("the store has no store_id in its meta table; it is damaged")
    return str(row[0])


def _jsonable(value: object) -> object:
    if isinstance(value, datetime):
        return iso_utc(value) if value.tzinfo is not None else value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return value.value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {field.name: getattr(value, field.name) for field in dataclasses.fields(value)}
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=canonical_json)
    raise TypeError(f"{type(value).__name__} cannot be written as JSON: {value!r}")
