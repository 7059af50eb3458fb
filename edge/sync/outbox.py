"""The durable side of upstream delivery: batches per target, their messages, attempts and status (SQLite).

Every function takes a connection and runs inside the caller's transaction (the store's writer, or a read).
A batch is cut into messages of at most ``max_rows`` outbox rows; the rows of a message never change, so
every attempt sends the same events with the same IDs, and messages of one target go in id order.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from edge.errors import EdgeError

if TYPE_CHECKING:
    import sqlite3

MessageState = Literal["pending", "delivering", "delivered", "failed"]
AttemptOutcome = Literal["stored", "duplicate", "retry", "failed", "refused", "resend"]


class DeliveryError(EdgeError):
    """An operator's request about delivery cannot be done: names the target, batch and why."""


@dataclass(frozen=True, slots=True)
class MessageRow:
    """One message: a fixed range of a batch's outbox rows on its way to one target."""

    id: int
    target: str
    batch_id: int
    seq: int
    first_outbox: int
    last_outbox: int
    state: MessageState
    attempts: int
    reason: str | None
    events: int | None
    name: str | None
    sha256: str | None
    capture_id: str | None
    created_at: str
    updated_at: str
    delivered_at: str | None


_MESSAGE_COLUMNS = (
    "id, target, batch_id, seq, first_outbox, last_outbox, state, attempts, reason, events, name, sha256,"
    " capture_id, created_at, updated_at, delivered_at"
)


def _message(row: sqlite3.Row | tuple[Any, ...]) -> MessageRow:
    return MessageRow(*row)


# -- context and targets --------------------------------------------------------------------------


def fixed_context(conn: sqlite3.Connection, batch_id: int, proposed: dict[str, Any], now: str) -> dict[str, Any]:
    """Return the batch's EPCIS context, fixing proposed as it the first time (so events never change later)."""
    row = conn.execute("SELECT context_json FROM epcis_context WHERE batch_id = ?", (batch_id,)).fetchone()
    if row is not None:
        return dict(json.loads(row[0]))
    conn.execute(
        "INSERT INTO epcis_context (batch_id, context_json, at) VALUES (?, ?, ?)",
        (batch_id, json.dumps(proposed, sort_keys=True), now),
    )
    return proposed


def stored_context(conn: sqlite3.Connection, batch_id: int) -> dict[str, Any] | None:
    """Return the batch's fixed EPCIS context, or None when its events were never rendered."""
    row = conn.execute("SELECT context_json FROM epcis_context WHERE batch_id = ?", (batch_id,)).fetchone()
    return None if row is None else dict(json.loads(row[0]))


def register_target(conn: sqlite3.Connection, target: str, now: str) -> str:
    """Remember when the line first saw target; return that time (batches closed before are not sent)."""
    conn.execute("INSERT OR IGNORE INTO epcis_target (target, since) VALUES (?, ?)", (target, now))
    return str(conn.execute("SELECT since FROM epcis_target WHERE target = ?", (target,)).fetchone()[0])


def batches_to_start(conn: sqlite3.Connection, target: str, *, stream: bool) -> list[int]:
    """Return the batches target should start sending, in the order they closed (then started, when streaming)."""
    since = conn.execute("SELECT since FROM epcis_target WHERE target = ?", (target,)).fetchone()
    if since is None:
        return []
    states = ("closed", "running", "paused", "completing") if stream else ("closed",)
    marks = ", ".join("?" for _ in states)
    # A batch counts from the moment it reached the state that makes it sendable: its batch_event row.
    rows = conn.execute(
        "SELECT b.id, min(e.id) FROM batch AS b JOIN batch_event AS e ON e.batch_id = b.id"  # noqa: S608 - only ? marks
        f" WHERE b.state IN ({marks}) AND e.to_state IN ({marks}) AND e.at >= ?"
        " AND NOT EXISTS (SELECT 1 FROM epcis_batch AS d WHERE d.target = ? AND d.batch_id = b.id)"
        " GROUP BY b.id ORDER BY min(e.id)",
        (*states, *states, since[0], target),
    ).fetchall()
    return [int(row[0]) for row in rows]


def start_batch(conn: sqlite3.Connection, target: str, batch_id: int, profile: dict[str, Any], now: str) -> None:
    """Put batch_id on its way to target with profile (fixed from now on); nothing when it is on its way already."""
    conn.execute(
        "INSERT OR IGNORE INTO epcis_batch (target, batch_id, profile_json, complete, created_at)"
        " VALUES (?, ?, ?, 0, ?)",
        (target, batch_id, json.dumps(profile, sort_keys=True), now),
    )


def batch_profile(conn: sqlite3.Connection, target: str, batch_id: int) -> dict[str, Any]:
    """Return the profile snapshot batch_id is sent to target with; DeliveryError when it is not on its way."""
    row = conn.execute(
        "SELECT profile_json FROM epcis_batch WHERE target = ? AND batch_id = ?", (target, batch_id)
    ).fetchone()
    if row is None:
        raise DeliveryError(f"batch {batch_id} is not on its way to {target}")
    return dict(json.loads(row[0]))


def open_batches(conn: sqlite3.Connection, target: str) -> list[tuple[int, str]]:
    """Return (batch id, batch state) of the batches on their way to target whose outbox is not all cut yet."""
    return [
        (int(row[0]), str(row[1]))
        for row in conn.execute(
            "SELECT d.batch_id, b.state FROM epcis_batch AS d JOIN batch AS b ON b.id = d.batch_id"
            " WHERE d.target = ? AND d.complete = 0 ORDER BY d.rowid",
            (target,),
        )
    ]


# -- cutting --------------------------------------------------------------------------------------


def cut(conn: sqlite3.Connection, target: str, batch_id: int, *, max_rows: int, complete: bool, now: str) -> int:
    """Cut batch_id's outbox rows not yet in a message into messages of at most max_rows; return how many.

    complete: the batch is closed, so this is the last cut and the batch is marked complete.
    """
    if max_rows < 1:
        raise ValueError("a message holds at least one outbox row")
    last_cut, seq = conn.execute(
        "SELECT coalesce(max(last_outbox), 0), coalesce(max(seq), 0) FROM epcis_message"
        " WHERE target = ? AND batch_id = ?",
        (target, batch_id),
    ).fetchone()
    made = 0
    while True:
        ids = [
            int(row[0])
            for row in conn.execute(
                "SELECT id FROM epcis_outbox WHERE batch_id = ? AND id > ? ORDER BY id LIMIT ?",
                (batch_id, last_cut, max_rows),
            )
        ]
        if not ids:
            break
        seq += 1
        conn.execute(
            "INSERT INTO epcis_message (target, batch_id, seq, first_outbox, last_outbox, state, created_at,"
            " updated_at) VALUES (?, ?, ?, ?, ?, 'pending', ?, ?)",
            (target, batch_id, seq, ids[0], ids[-1], now, now),
        )
        last_cut = ids[-1]
        made += 1
    if complete:
        conn.execute(
            "UPDATE epcis_batch SET complete = 1, completed_at = ? WHERE target = ? AND batch_id = ?",
            (now, target, batch_id),
        )
    return made


# -- the queue ------------------------------------------------------------------------------------


def next_message(conn: sqlite3.Connection, target: str) -> MessageRow | None:
    """Return target's oldest message not delivered (pending, delivering after a crash, or failed), or None."""
    row = conn.execute(
        f"SELECT {_MESSAGE_COLUMNS} FROM epcis_message"  # noqa: S608 - a constant column list
        " WHERE target = ? AND state <> 'delivered' ORDER BY id LIMIT 1",
        (target,),
    ).fetchone()
    return None if row is None else _message(row)


def message(conn: sqlite3.Connection, message_id: int) -> MessageRow:
    """Return one message; DeliveryError when there is none with that id."""
    row = conn.execute(
        f"SELECT {_MESSAGE_COLUMNS} FROM epcis_message WHERE id = ?",  # noqa: S608 - a constant column list
        (message_id,),
    ).fetchone()
    if row is None:
        raise DeliveryError(f"there is no EPCIS message {message_id}")
    return _message(row)


def begin_attempt(
    conn: sqlite3.Connection, message_id: int, *, events: int, name: str, sha256: str, now: str
) -> MessageRow:
    """Mark the message delivering and count the attempt, before a byte leaves; return it after."""
    conn.execute(
        "UPDATE epcis_message SET state = 'delivering', attempts = attempts + 1, events = ?, name = ?,"
        " sha256 = coalesce(sha256, ?), updated_at = ? WHERE id = ? AND state <> 'delivered'",
        (events, name, sha256, now, message_id),
    )
    return message(conn, message_id)


def end_attempt(
    conn: sqlite3.Connection,
    message_id: int,
    outcome: AttemptOutcome,
    detail: str,
    *,
    now: str,
    status: int | None = None,
    capture_id: str | None = None,
) -> MessageRow:
    """Record how an attempt ended and move the message: delivered, back to pending (retry), or failed."""
    state: MessageState = {"stored": "delivered", "duplicate": "delivered", "retry": "pending"}.get(
        outcome, "failed"
    )  # type: ignore[assignment]
    conn.execute(
        "INSERT INTO epcis_attempt (message_id, at, outcome, status, detail) VALUES (?, ?, ?, ?, ?)",
        (message_id, now, outcome, status, detail),
    )
    delivered = now if state == "delivered" else None
    conn.execute(
        "UPDATE epcis_message SET state = ?, reason = ?, capture_id = coalesce(?, capture_id), updated_at = ?,"
        " delivered_at = coalesce(?, delivered_at) WHERE id = ?",
        (state, None if state == "delivered" else detail, capture_id, now, delivered, message_id),
    )
    return message(conn, message_id)


def resend(conn: sqlite3.Connection, target: str, batch_id: int, *, operator: str, reason: str, now: str) -> int:
    """Queue every message of batch_id for target again (failed or delivered); return how many.

    Upstream recognises events it already stored by their IDs, so a re-send never duplicates them.
    """
    if not operator.strip() or not reason.strip():
        raise DeliveryError("a re-send needs an operator and a reason")
    ids = [
        int(row[0])
        for row in conn.execute(
            "SELECT id FROM epcis_message WHERE target = ? AND batch_id = ? AND state IN ('failed', 'delivered')"
            " ORDER BY id",
            (target, batch_id),
        )
    ]
    if not ids:
        known = conn.execute(
            "SELECT count(*) FROM epcis_message WHERE target = ? AND batch_id = ?", (target, batch_id)
        ).fetchone()[0]
        if not known:
            raise DeliveryError(f"batch {batch_id} has no messages for {target}")
        raise DeliveryError(f"batch {batch_id} is being delivered to {target}: nothing failed or delivered to re-send")
    for message_id in ids:
        conn.execute(
            "INSERT INTO epcis_attempt (message_id, at, outcome, detail, operator) VALUES (?, ?, 'resend', ?, ?)",
            (message_id, now, reason, operator),
        )
        conn.execute(
            "UPDATE epcis_message SET state = 'pending', reason = NULL, updated_at = ? WHERE id = ?",
            (now, message_id),
        )
    return len(ids)


def resend_history(conn: sqlite3.Connection, target: str, batch_id: int, *, profile: dict[str, Any], now: str) -> None:
    """Put a batch closed before target was configured on its way (an operator's explicit request)."""
    start_batch(conn, target, batch_id, profile, now)


# -- status ---------------------------------------------------------------------------------------


def batch_status(
    conn: sqlite3.Connection, target: str | None = None, batch_id: int | None = None
) -> list[dict[str, Any]]:
    """Return per (target, batch): pending, delivering, delivered or failed (with the reason), and the counts."""
    where: list[str] = ["1 = 1"]
    params: list[object] = []
    if target is not None:
        where.append("d.target = ?")
        params.append(target)
    if batch_id is not None:
        where.append("d.batch_id = ?")
        params.append(batch_id)
    out: list[dict[str, Any]] = []
    for row in conn.execute(
        "SELECT d.target, d.batch_id, b.work_order, d.complete,"  # noqa: S608 - only fixed clauses and ? marks
        " count(m.id), sum(m.state = 'delivered'), sum(m.state = 'failed'), sum(m.state = 'delivering'),"
        " sum(coalesce(m.events, 0)), sum(m.attempts), max(m.delivered_at),"
        " (SELECT reason FROM epcis_message AS f WHERE f.target = d.target AND f.batch_id = d.batch_id"
        "   AND f.reason IS NOT NULL AND f.state <> 'delivered' ORDER BY f.id LIMIT 1)"
        " FROM epcis_batch AS d JOIN batch AS b ON b.id = d.batch_id"
        " LEFT JOIN epcis_message AS m ON m.target = d.target AND m.batch_id = d.batch_id"
        f" WHERE {' AND '.join(where)} GROUP BY d.target, d.batch_id ORDER BY d.target, d.rowid",
        params,
    ):
        tgt, bid, work_order, complete, total, delivered, failed, delivering, events, attempts, last, reason = row
        delivered, failed, delivering = int(delivered or 0), int(failed or 0), int(delivering or 0)
        if failed:
            state = "failed"
        elif complete and delivered == total:
            state = "delivered"
        elif delivering or attempts:
            state = "delivering"
        else:
            state = "pending"
        out.append({
            "target": tgt, "batch": bid, "work_order": work_order, "state": state, "complete": bool(complete),
            "messages": int(total), "delivered_messages": delivered, "events": int(events or 0),
            "attempts": int(attempts or 0), "delivered_at": last if state == "delivered" else None,
            "reason": reason,
        })
    return out


def messages_of(conn: sqlite3.Connection, target: str, batch_id: int) -> list[MessageRow]:
    """Return the messages of batch_id for target, in order."""
    return [
        _message(row)
        for row in conn.execute(
            f"SELECT {_MESSAGE_COLUMNS} FROM epcis_message"  # noqa: S608 - a constant column list
            " WHERE target = ? AND batch_id = ? ORDER BY id",
            (target, batch_id),
        )
    ]


def attempts_of(conn: sqlite3.Connection, message_id: int) -> list[dict[str, Any]]:
    """Return every attempt of a message, oldest first."""
    return [
        {"at": row[0], "outcome": row[1], "status": row[2], "detail": row[3], "operator": row[4]}
        for row in conn.execute(
            "SELECT at, outcome, status, detail, operator FROM epcis_attempt WHERE message_id = ? ORDER BY id",
            (message_id,),
        )
    ]
