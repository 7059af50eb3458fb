"""Work-order acknowledgements for the MES: accepted (with the batch it became) or refused (with the reason).

An accepted work order is acknowledged by the store itself (a trigger on the batch's creation); a refused one
leaves no batch, so the intake records the refusal here, and its trigger queues the acknowledgement.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

import yaml

from edge.errors import BatchError, ConfigError
from edge.store.runs import iso_utc

if TYPE_CHECKING:
    import sqlite3

    from edge.serials.batches import BatchService
    from edge.serials.ops import BatchRow
    from edge.store import Store

ACK_SCHEMA: Final = "lineside.work-order-ack"
ACK_VERSION: Final = 1
MAX_KEPT_TEXT: Final = 1 << 20
"""The most of a refused work order's text kept with its refusal: a work order is a few hundred bytes, and a
megabyte of anything else is evidence enough (its SHA-256 is of the whole text)."""


def accepted(conn: sqlite3.Connection, batch_id: int) -> dict[str, Any]:
    """Return the acknowledgement of the work order that became batch_id."""
    row = conn.execute(
        "SELECT work_order, id, product_id, gtin, lot, expiry, quantity, market, created_at FROM batch WHERE id = ?",
        (batch_id,)).fetchone()
    keys = ("work_order", "batch", "product", "gtin", "lot", "expiry", "quantity", "market", "at")
    return {"schema": ACK_SCHEMA, "version": ACK_VERSION, "accepted": True, "reason": None,
            **dict(zip(keys, row, strict=True))}


def refused(conn: sqlite3.Connection, refusal_id: int) -> dict[str, Any]:
    """Return the acknowledgement of a refused work order."""
    work_order, at, source, reason, sha256 = conn.execute(
        "SELECT work_order, at, source, reason, sha256 FROM work_order_refusal WHERE id = ?", (refusal_id,)).fetchone()
    return {"schema": ACK_SCHEMA, "version": ACK_VERSION, "accepted": False, "reason": reason,
            "work_order": work_order, "batch": None, "at": at, "source": source, "sha256": sha256}


def work_order_of(text: str) -> str | None:
    """Return the work_order a submitted text names, when it can be read at all (YAML or JSON), else None."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        return None
    value = data.get("work_order") if isinstance(data, dict) else None
    return str(value)[:200] if isinstance(value, str | int) else None


def record_refusal(conn: sqlite3.Connection, text: str, *, line: str, source: str, reason: str,
                   operator: str | None, now: str) -> int:
    """Record a refused work order (its trigger queues the acknowledgement); return the refusal's id."""
    digest = hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()
    cursor = conn.execute(
        "INSERT INTO work_order_refusal (at, line_id, work_order, source, operator, reason, text, sha256)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (now, line, work_order_of(text), source, operator, reason, text[:MAX_KEPT_TEXT], digest))
    return int(cursor.lastrowid or 0)


async def refuse(store: Store, text: str, *, line: str, source: str, reason: str, operator: str | None) -> int:
    """Record a refused work order in its own transaction; return the refusal's id."""
    now = iso_utc(datetime.now(UTC))
    return await store.write(lambda conn: record_refusal(conn, text, line=line, source=source, reason=reason,
                                                         operator=operator, now=now))



async def create_acknowledged(batches: BatchService, text: str, source: str, operator: str | None) -> BatchRow:
    """Create the batch of a work order's text (acknowledged by the store); record a refusal, then re-raise it."""
    try:
        return await batches.create(batches.parse_work_order(text, source), operator=operator)
    except (ConfigError, BatchError) as err:
        await refuse(batches.ledger.store, text, line=batches.ledger.line_id, source=source, reason=str(err),
                     operator=operator)
        raise
