"""The durable side of plant messages: their fixed bodies, each target's queue, attempts and status (SQLite).

Every function takes a connection and runs inside the caller's transaction. The outbox rows themselves are
written by triggers (migration 0007) in the transaction of the batch or pallet close they report.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Literal

from edge.errors import EdgeError
from edge.plant import acks
from edge.plant.manifest import batch_manifest, pallet_manifest
from edge.plant.records import batch_record

if TYPE_CHECKING:
    import sqlite3
    from collections.abc import Iterable

Kind = Literal["work_order_ack", "batch_record", "batch_manifest", "pallet_manifest"]
KINDS: Final[tuple[Kind, ...]] = ("work_order_ack", "batch_record", "batch_manifest", "pallet_manifest")
DeliveryState = Literal["pending", "delivering", "delivered", "failed"]
Outcome = Literal["stored", "duplicate", "retry", "failed"]

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


class PlantDeliveryError(EdgeError):
    """An operator's request about plant delivery cannot be done: names the target, message and why."""


@dataclass(frozen=True, slots=True)
class Message:
    """One plant message with its body fixed: what every attempt to every target sends."""

    outbox_id: int
    kind: Kind
    batch_id: int | None
    """None for the acknowledgement of a refused work order."""
    message_id: str
    body: str
    sha256: str

    @property
    def data(self) -> dict[str, Any]:
        """The body as JSON data."""
        return dict(json.loads(self.body))

    @property
    def name(self) -> str:
        """File name stem: kind, work order, the pallet's SSCC for a pallet manifest, and the outbox id."""
        data = self.data
        work_order = data["batch"]["work_order"] if isinstance(data.get("batch"), dict) else data.get("work_order")
        parts = [self.kind, str(work_order or "unnamed")]
        if self.kind == "pallet_manifest":
            parts.append(data["pallets"][0]["sscc"])
        parts.append(str(self.outbox_id))
        return _UNSAFE.sub("_", "-".join(parts)).lstrip(".")


@dataclass(frozen=True, slots=True)
class Delivery:
    """One message on its way to one target."""

    target: str
    outbox_id: int
    state: DeliveryState
    attempts: int
    reason: str | None


def message_id(store_id: str, outbox_id: int) -> str:
    """Return the message's stable id: the same on every attempt, and never reused by another store."""
    return f"urn:uuid:{uuid.uuid5(uuid.UUID(store_id), f'lineside.plant-message/{outbox_id}')}"


def register_target(conn: sqlite3.Connection, target: str, now: str) -> int:
    """Remember target from now on; return the last outbox id before it (those messages are not sent to it)."""
    conn.execute(
        "INSERT OR IGNORE INTO plant_target (target, since_outbox, at)"
        " SELECT ?, coalesce(max(id), 0), ? FROM plant_outbox", (target, now))
    return int(conn.execute("SELECT since_outbox FROM plant_target WHERE target = ?", (target,)).fetchone()[0])


def enqueue(conn: sqlite3.Connection, target: str, kinds: Iterable[Kind], now: str) -> int:
    """Queue for target every outbox row of kinds since it was registered and not queued yet; return how many."""
    wanted = tuple(kinds)
    if not wanted:
        return 0
    marks = ", ".join("?" * len(wanted))
    return conn.execute(
        "INSERT INTO plant_delivery (target, outbox_id, state, created_at, updated_at)"  # noqa: S608 - ? marks only
        " SELECT t.target, o.id, 'pending', ?, ? FROM plant_outbox AS o JOIN plant_target AS t ON t.target = ?"
        f" WHERE o.id > t.since_outbox AND o.kind IN ({marks}) AND NOT EXISTS ("
        "  SELECT 1 FROM plant_delivery AS d WHERE d.target = t.target AND d.outbox_id = o.id) ORDER BY o.id",
        (now, now, target, *wanted),
    ).rowcount


def next_delivery(conn: sqlite3.Connection, target: str) -> Delivery | None:
    """Return target's oldest message not delivered (pending, delivering after a crash, or failed), or None."""
    row = conn.execute(
        "SELECT target, outbox_id, state, attempts, reason FROM plant_delivery WHERE target = ?"
        " AND state <> 'delivered' ORDER BY outbox_id LIMIT 1", (target,)).fetchone()
    return None if row is None else Delivery(*row)


def fixed_message(conn: sqlite3.Connection, outbox_id: int, now: str) -> Message:
    """Return the message of an outbox row, rendering and fixing its body the first time (a write)."""
    return fix(conn, prepared(conn, outbox_id), now)


def prepared(conn: sqlite3.Connection, outbox_id: int) -> Message:
    """Return the message of an outbox row: its fixed body, or rendered now when it has none yet (a read).

    Rendering reads only history that no longer changes, so it runs on a read connection, off the store's single
    writer: a batch manifest of a large batch takes seconds the line must not wait for.
    """
    row = conn.execute(
        "SELECT kind, batch_id, refusal_id, container_id, event_id, as_of, at, body, sha256 FROM plant_outbox"
        " WHERE id = ?", (outbox_id,)).fetchone()
    if row is None:
        raise PlantDeliveryError(f"there is no plant message {outbox_id}")
    kind, batch_id, refusal_id, container_id, event_id, as_of, at, body, sha256 = row
    store_id = str(conn.execute("SELECT value FROM meta WHERE key = 'store_id'").fetchone()[0])
    mid = message_id(store_id, outbox_id)
    if body is None:
        body = render(conn, kind, batch_id=batch_id, refusal_id=refusal_id, container_id=container_id,
                      event_id=event_id, as_of=as_of, at=at, message=mid)
        sha256 = hashlib.sha256(body.encode()).hexdigest()
    return Message(outbox_id, kind, None if batch_id is None else int(batch_id), mid, str(body), str(sha256))


def fix(conn: sqlite3.Connection, message: Message, now: str) -> Message:
    """Store message's body unless one is stored already; return the message with the stored body (a write)."""
    conn.execute("UPDATE plant_outbox SET body = ?, sha256 = ?, rendered_at = ? WHERE id = ? AND body IS NULL",
                 (message.body, message.sha256, now, message.outbox_id))
    body, sha256 = conn.execute("SELECT body, sha256 FROM plant_outbox WHERE id = ?",
                                (message.outbox_id,)).fetchone()
    return Message(message.outbox_id, message.kind, message.batch_id, message.message_id, str(body), str(sha256))


def render(conn: sqlite3.Connection, kind: Kind, *, batch_id: int | None, refusal_id: int | None,
           container_id: int | None, event_id: int, as_of: int, at: str, message: str) -> str:
    """Return the JSON body of a message: its envelope (id, kind, line, time) and what the kind reports."""
    if kind == "work_order_ack":
        content = acks.accepted(conn, batch_id) if batch_id is not None else acks.refused(conn, refusal_id or 0)
    elif batch_id is None:
        raise PlantDeliveryError(f"plant message {message}: a {kind} without its batch")
    elif kind == "batch_record":
        content = batch_record(conn, batch_id, event_id)
    elif kind == "batch_manifest":
        content = batch_manifest(conn, batch_id, as_of)
    elif container_id is not None:
        content = pallet_manifest(conn, batch_id, container_id, as_of)
    else:
        raise PlantDeliveryError(f"plant message {message}: a pallet manifest without its pallet")
    line = conn.execute("SELECT coalesce((SELECT line_id FROM batch WHERE id = ?),"
                        " (SELECT line_id FROM work_order_refusal WHERE id = ?))", (batch_id, refusal_id)).fetchone()[0]
    envelope = {"schema": content.pop("schema"), "version": content.pop("version"), "message_id": message,
                "kind": kind, "line": line, "created_at": at}
    return json.dumps({**envelope, **content}, ensure_ascii=False, indent=2) + "\n"


def begin_attempt(conn: sqlite3.Connection, target: str, outbox_id: int, now: str) -> None:
    """Mark the delivery delivering and count the attempt, before a byte leaves."""
    conn.execute(
        "UPDATE plant_delivery SET state = 'delivering', attempts = attempts + 1, updated_at = ?"
        " WHERE target = ? AND outbox_id = ? AND state <> 'delivered'", (now, target, outbox_id))


def end_attempt(conn: sqlite3.Connection, target: str, outbox_id: int, outcome: Outcome, detail: str, *, now: str,
                status: int | None = None) -> None:
    """Record how an attempt ended and move the delivery: delivered, back to pending (retry), or failed."""
    state = {"stored": "delivered", "duplicate": "delivered", "retry": "pending"}.get(outcome, "failed")
    conn.execute(
        "INSERT INTO plant_attempt (target, outbox_id, at, outcome, status, detail) VALUES (?, ?, ?, ?, ?, ?)",
        (target, outbox_id, now, outcome, status, detail))
    conn.execute(
        "UPDATE plant_delivery SET state = ?, reason = ?, updated_at = ?,"
        " delivered_at = CASE WHEN ? = 'delivered' THEN ? ELSE delivered_at END WHERE target = ? AND outbox_id = ?",
        (state, None if state == "delivered" else detail, now, state, now, target, outbox_id))


def resend(conn: sqlite3.Connection, target: str, outbox_id: int, *, operator: str, reason: str, now: str) -> None:
    """Queue a failed or delivered message for target again; the endpoint recognises it by its message id."""
    if not operator.strip() or not reason.strip():
        raise PlantDeliveryError("a re-send needs an operator and a reason")
    row = conn.execute("SELECT state FROM plant_delivery WHERE target = ? AND outbox_id = ?",
                       (target, outbox_id)).fetchone()
    if row is None:
        raise PlantDeliveryError(f"plant message {outbox_id} is not queued for {target}")
    if row[0] not in ("failed", "delivered"):
        raise PlantDeliveryError(f"plant message {outbox_id} is being delivered to {target}: nothing to re-send")
    conn.execute("INSERT INTO plant_attempt (target, outbox_id, at, outcome, detail, operator)"
                 " VALUES (?, ?, ?, 'resend', ?, ?)", (target, outbox_id, now, reason, operator))
    conn.execute("UPDATE plant_delivery SET state = 'pending', reason = NULL, updated_at = ?"
                 " WHERE target = ? AND outbox_id = ?", (now, target, outbox_id))


def status(conn: sqlite3.Connection, target: str | None = None) -> list[dict[str, Any]]:
    """Return every queued message per target with its state, attempts and reason, oldest first."""
    rows = conn.execute(
        "SELECT d.target, d.outbox_id, o.kind, coalesce(b.work_order, r.work_order), d.state, d.attempts, d.reason,"
        " d.delivered_at FROM plant_delivery AS d JOIN plant_outbox AS o ON o.id = d.outbox_id"
        " LEFT JOIN batch AS b ON b.id = o.batch_id LEFT JOIN work_order_refusal AS r ON r.id = o.refusal_id"
        " WHERE ? IS NULL OR d.target = ? ORDER BY d.target, d.outbox_id", (target, target))
    keys = ("target", "outbox_id", "kind", "work_order", "state", "attempts", "reason", "delivered_at")
    return [dict(zip(keys, row, strict=True)) for row in rows]


def attempts_of(conn: sqlite3.Connection, target: str, outbox_id: int) -> list[dict[str, Any]]:
    """Return every attempt of one delivery, oldest first."""
    return [
        {"at": at, "outcome": outcome, "status": code, "detail": detail, "operator": operator}
        for at, outcome, code, detail, operator in conn.execute(
            "SELECT at, outcome, status, detail, operator FROM plant_attempt WHERE target = ? AND outbox_id = ?"
            " ORDER BY id", (target, outbox_id))
    ]
