"""OPEN-SCS bookkeeping as functions of a SQLite connection, run by the store (no other I/O).

Requests: each SNRequest is recorded with its RequestToken before it is sent (`begin_request`), and closed once its
serials are in the pool (`finish_request`); the import keeps the token, so `imported_count` tells a request whose
serials arrived before a crash from one whose answer never came.

Reports: `collect_reports` turns what the serial ledger did to the serials of OPEN-SCS batches into OPEN-SCS calls
(rows of openscs_report, sent in id order). What it reads, so that no hot path of the line pays for OPEN-SCS:

- commissioning and decommissioning (commissioned, rejected, destroyed, sampled) from the EPCIS outbox, which holds
  every such transition with the serials it moved, in the order they happened;
- serials given to printers, by each batch's highest serial id reported encoded: printers are fed in serial id
  order, so what left the allocated state is always the batch's lowest ids (and a serial a later event names is
  reported encoded first anyway, whatever its id);
- the serials of a batch, once it is released (reported allocated when they were requested unallocated or
  unassigned) and once it is closed or cancelled (its unused serials returned).

openscs_serial keeps, per serial, the OPEN-SCS state the reports queued so far leave it in at the server, so each
report is preceded by the calls its serials still need (an SNtoEncoded before a commissioning), and nothing is
reported twice.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Literal

from edge.openscs.types import SerialNumberState
from edge.serials import ops as serial_ops
from edge.serials.states import SerialState

if TYPE_CHECKING:
    import sqlite3
    from collections.abc import Callable, Sequence

L = SerialState
N = SerialNumberState

RequestKind = Literal["allocated", "unallocated", "unassigned"]

TO_ALLOCATED: Final = "SNtoAllocated"
TO_ENCODED: Final = "SNtoEncoded"
RETURN_ALLOCATED: Final = "SNReturnAllocated"
COMMISSIONING: Final = "SIDCommissioningEvent"
SCRAPPING: Final = "LabelsScrappingEvent"
SAMPLING: Final = "LabelsSamplingEvent"
DESTROYING: Final = "SIDDestroyingEvent"
POOL_METHODS: Final = frozenset({TO_ALLOCATED, TO_ENCODED, RETURN_ALLOCATED})
"""Methods of the pool manager (they take an SNCollection); the others belong to the event manager."""
METHOD_STATE: Final = {TO_ALLOCATED: N.ALLOCATED, TO_ENCODED: N.ENCODED, RETURN_ALLOCATED: N.UNALLOCATED}
"""The state each pool method puts its serials in (the SNCollection's State)."""

MAX_SERIALS_PER_REPORT: Final = 5_000
"""Serials in one OPEN-SCS call: about 100 kB on the wire, within what servers take in one message (asyncua's
default limit is far above), small enough that a retry resends little."""
COLLECT_LIMIT: Final = 1_000
"""Outbox rows, and thousands of serials per batch, looked at in one round of `collect_reports`: one round holds the
store's writer for milliseconds; the rest waits for the next round."""

_SENT_SQL: Final = (
    "SELECT s.id, s.serial, t.told FROM serial AS s LEFT JOIN openscs_serial AS t ON t.serial_id = s.id"
    # Sent, printed, commissioned, rejected, destroyed, sampled, in doubt: every state after a printer got the serial.
    " WHERE s.batch_id = ? AND s.state IN (2, 3, 4, 5, 6, 7, 8) AND s.id > ? ORDER BY s.id LIMIT ?"
)
"""The batch's serials given to a printer past a serial id, with what the server was told of each, in id order."""
_BEFORE_ALLOCATED: Final = frozenset({N.UNASSIGNED, N.UNALLOCATED})
_BEFORE_ENCODED: Final = _BEFORE_ALLOCATED | {N.ALLOCATED}


def received_state(kind: RequestKind) -> SerialNumberState:
    """Return the state the server holds serials in once they were requested with SNRequest<kind>."""
    return {"allocated": N.ALLOCATED, "unallocated": N.UNALLOCATED, "unassigned": N.UNASSIGNED}[kind]


def _commissioned_or_label(told: SerialNumberState) -> SerialNumberState:
    # A commissioned pack taken as a sample is a sampled SID; a label never commissioned is a sampled label.
    return N.SAMPLED if told is N.COMMISSIONED else N.LABEL_SAMPLED


_EVENTS: Final[dict[int, tuple[str, Callable[[SerialNumberState], SerialNumberState]]]] = {
    int(L.COMMISSIONED): (COMMISSIONING, lambda _: N.COMMISSIONED),
    int(L.REJECTED): (SCRAPPING, lambda _: N.LABEL_SCRAPPED),
    int(L.DESTROYED): (DESTROYING, lambda _: N.DESTROYED),
    int(L.SAMPLED): (SAMPLING, _commissioned_or_label),
}
"""Per ledger state reached in the outbox: the event reporting it, and the server state it leaves (by the state
before)."""


# -- requests -------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RequestRow:
    """One SNRequest as recorded."""

    id: int
    token: str
    kind: RequestKind
    gtin: str
    product_id: str
    collection_id: str
    count: int
    state: str
    received: int


_REQUEST_COLUMNS = "id, token, kind, gtin, product_id, collection_id, count, state, received"


def _request(row: sqlite3.Row | tuple[object, ...]) -> RequestRow:
    return RequestRow(*row)


def begin_request(conn: sqlite3.Connection, *, token: str, kind: RequestKind, gtin: str, product_id: str,
                  collection_id: str, count: int, now: str) -> RequestRow:
    """Record a request about to be sent (pending); return it."""
    conn.execute(
        "INSERT INTO openscs_request (token, kind, gtin, product_id, collection_id, count, state, created_at,"
        " updated_at) VALUES (?, ?, ?, ?, ?, ?, 'pending', ?, ?)",
        (token, kind, gtin, product_id, collection_id, count, now, now),
    )
    row = conn.execute(f"SELECT {_REQUEST_COLUMNS} FROM openscs_request WHERE token = ?", (token,)).fetchone()  # noqa: S608
    return _request(row)


def pending_requests(conn: sqlite3.Connection, gtin: str | None = None) -> list[RequestRow]:
    """Return the requests sent (or about to be) whose serials are not in the pool yet, oldest first."""
    where = "state = 'pending'" + ("" if gtin is None else " AND gtin = ?")
    rows = conn.execute(f"SELECT {_REQUEST_COLUMNS} FROM openscs_request WHERE {where} ORDER BY id",  # noqa: S608
                        () if gtin is None else (gtin,))
    return [_request(row) for row in rows]


def imported_count(conn: sqlite3.Connection, token: str) -> int | None:
    """Return how many serials the import answering token brought, or None when none did."""
    row = conn.execute("SELECT sum(count) FROM serial_import WHERE request_token = ?", (token,)).fetchone()
    return None if row[0] is None else int(row[0])


def finish_request(conn: sqlite3.Connection, request_id: int, *, state: Literal["imported", "failed", "pending"],
                   received: int, status: str, now: str) -> None:
    """Record how a request ended (imported, failed), or why it is still pending."""
    conn.execute("UPDATE openscs_request SET state = ?, received = ?, status = ?, updated_at = ? WHERE id = ?",
                 (state, received, status, now, request_id))


def shortfall(conn: sqlite3.Connection, batch_id: int, count: int) -> int:
    """Return how many serials the batch still lacks for count that its GTIN's pool does not hold."""
    batch = serial_ops.get_batch(conn, batch_id)
    have = serial_ops.allocated_total(conn, batch_id)
    pooled = serial_ops.pool_available(conn, batch.gtin)["serials"]
    return max(0, count - have - pooled)


def pool_size(conn: sqlite3.Connection, gtin: str) -> int:
    """Return how many serials of gtin wait in the pool."""
    return serial_ops.pool_available(conn, gtin)["serials"]


# -- reports --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReportRow:
    """One OPEN-SCS call to make, with what its context names."""

    id: int
    batch_id: int
    gtin: str
    method: str
    serials: tuple[str, ...]
    attempts: int
    lot: str
    work_order: str


class _Queue:
    """Reports queued in this round, and what they tell the server of each serial."""

    def __init__(self, conn: sqlite3.Connection, kind: RequestKind, now: str) -> None:
        self.conn = conn
        self.received = received_state(kind)
        self.now = now
        self.reports = 0

    def advance(self, batch_id: int, gtin: str, serials: Sequence[tuple[int, str, int | None]],
                method: str | None, final: Callable[[SerialNumberState], SerialNumberState] | None = None) -> None:
        """Queue what serials (id, serial, told) still need before method, then method; record what each is told."""
        told = {sid: self.received if state is None else N(state) for sid, _, state in serials}
        names = {sid: serial for sid, serial, _ in serials}
        needs_encoded = method is not None and method not in (TO_ALLOCATED, RETURN_ALLOCATED)
        # An SNtoAllocated for serials requested unallocated or unassigned, then an SNtoEncoded for those not yet
        # printed as far as the server knows: each step for all of them at once, in this order.
        steps: list[tuple[str, frozenset[SerialNumberState]]] = [(TO_ALLOCATED, _BEFORE_ALLOCATED)]
        if needs_encoded:
            steps.append((TO_ENCODED, _BEFORE_ENCODED))
        for step, before in steps:
            if step == method:
                break
            ids = [sid for sid in told if told[sid] in before]
            self._queue(batch_id, gtin, step, ids, names=names, told=told, state=METHOD_STATE[step])
        if method is None:
            return
        if method in METHOD_STATE:
            wanted = {TO_ALLOCATED: _BEFORE_ALLOCATED, TO_ENCODED: _BEFORE_ENCODED,
                      RETURN_ALLOCATED: frozenset({N.ALLOCATED})}[method]
            ids = [sid for sid in told if told[sid] in wanted]
            self._queue(batch_id, gtin, method, ids, names=names, told=told, state=METHOD_STATE[method])
            return
        if final is None:
            raise ValueError(f"{method} needs the state it leaves its serials in")
        self._queue_each(batch_id, gtin, method, list(told), names=names, told=told, final=final)

    def _queue(self, batch_id: int, gtin: str, method: str, ids: list[int], *, names: dict[int, str],
               told: dict[int, SerialNumberState], state: SerialNumberState) -> None:
        self._queue_each(batch_id, gtin, method, ids, names=names, told=told, final=lambda _: state)

    def _queue_each(self, batch_id: int, gtin: str, method: str, ids: list[int], *, names: dict[int, str],
                    told: dict[int, SerialNumberState],
                    final: Callable[[SerialNumberState], SerialNumberState]) -> None:
        if not ids:
            return
        for start in range(0, len(ids), MAX_SERIALS_PER_REPORT):
            part = ids[start : start + MAX_SERIALS_PER_REPORT]
            self.conn.execute(
                "INSERT INTO openscs_report (batch_id, gtin, method, serials, created_at) VALUES (?, ?, ?, ?, ?)",
                (batch_id, gtin, method, json.dumps([names[sid] for sid in part]), self.now),
            )
            self.reports += 1
        for sid in ids:
            told[sid] = final(told[sid])
        self.conn.executemany(
            "INSERT INTO openscs_serial (serial_id, told) VALUES (?, ?)"
            " ON CONFLICT (serial_id) DO UPDATE SET told = excluded.told",
            ((sid, int(told[sid])) for sid in ids),
        )


def collect_reports(conn: sqlite3.Connection, *, kind: RequestKind, now: str,
                    limit: int = COLLECT_LIMIT) -> tuple[int, bool]:
    """Queue reports of what OPEN-SCS serials went through since the last round; return (queued, stopped at limit)."""
    queue = _Queue(conn, kind, now)
    batches = conn.execute(
        "SELECT b.id, b.gtin, b.state, coalesce(o.encoded_through, 0), coalesce(o.allocated_told, 0)"
        " FROM batch AS b LEFT JOIN openscs_batch AS o ON o.batch_id = b.id"
        " WHERE b.serial_source = 'open_scs' AND b.state <> 'created' AND coalesce(o.done, 0) = 0 ORDER BY b.id"
    ).fetchall()
    caught_up = True
    # Serials given to printers first: those an event of this round names are then reported encoded together.
    for batch_id, gtin, _, through, allocated_told in batches:
        conn.execute("INSERT OR IGNORE INTO openscs_batch (batch_id) VALUES (?)", (batch_id,))
        if not allocated_told:
            if queue.received is not N.ALLOCATED:
                queue.advance(batch_id, gtin, _unreported(conn, batch_id), TO_ALLOCATED)
            conn.execute("UPDATE openscs_batch SET allocated_told = 1 WHERE batch_id = ?", (batch_id,))
        sent = conn.execute(_SENT_SQL, (batch_id, through, limit * 10)).fetchall()
        if sent:
            queue.advance(batch_id, gtin, sent, TO_ENCODED)
            conn.execute("UPDATE openscs_batch SET encoded_through = ? WHERE batch_id = ?", (sent[-1][0], batch_id))
            caught_up = caught_up and len(sent) < limit * 10
    caught_up = _collect_outbox(conn, queue, limit) and caught_up
    # A closed batch's unused serials go back once every event before its close is queued.
    for batch_id, gtin, state, _, _ in batches:
        if state in ("closed", "cancelled") and caught_up:
            returned = conn.execute(
                "SELECT s.id, s.serial, t.told FROM serial AS s LEFT JOIN openscs_serial AS t ON t.serial_id = s.id"
                " WHERE s.batch_id = ? AND s.state = ? ORDER BY s.id",
                (batch_id, int(L.RETURNED)),
            ).fetchall()
            queue.advance(batch_id, gtin, returned, RETURN_ALLOCATED)
            conn.execute("UPDATE openscs_batch SET done = 1 WHERE batch_id = ?", (batch_id,))
    return queue.reports, not caught_up


def _collect_outbox(conn: sqlite3.Connection, queue: _Queue, limit: int) -> bool:
    """Queue the events for the outbox's serial transitions of OPEN-SCS batches; tell whether all were taken."""
    cursor = int(conn.execute("SELECT value FROM openscs_cursor WHERE name = 'outbox'").fetchone()[0])
    top = int(conn.execute("SELECT coalesce(max(id), 0) FROM epcis_outbox").fetchone()[0])
    if top <= cursor:
        return True
    rows = conn.execute(
        "SELECT o.id, o.batch_id, b.gtin, o.serials, t.to_state FROM epcis_outbox AS o"
        " JOIN transition AS t ON t.id = o.transition_id JOIN batch AS b ON b.id = o.batch_id"
        " WHERE o.id > ? AND o.id <= ? AND b.serial_source = 'open_scs' ORDER BY o.id LIMIT ?",
        (cursor, top, limit),
    ).fetchall()
    for _, batch_id, gtin, moved, to_state in rows:
        event = _EVENTS.get(int(to_state))
        if event is None:
            continue
        serials = conn.execute(
            "SELECT s.id, s.serial, t.told FROM json_each(?) AS j"
            " JOIN serial AS s ON s.id = json_extract(j.value, '$[0]')"
            " LEFT JOIN openscs_serial AS t ON t.serial_id = s.id ORDER BY j.key",
            (moved,),
        ).fetchall()
        queue.advance(batch_id, gtin, serials, event[0], event[1])
    full = len(rows) == limit
    conn.execute("UPDATE openscs_cursor SET value = ? WHERE name = 'outbox'", (rows[-1][0] if full else top,))
    return not full


def _unreported(conn: sqlite3.Connection, batch_id: int) -> list[tuple[int, str, int | None]]:
    """Return (id, serial, None) for the batch's serials nothing was reported of yet."""
    return [
        (row[0], row[1], None)
        for row in conn.execute(
            "SELECT s.id, s.serial FROM serial AS s LEFT JOIN openscs_serial AS t ON t.serial_id = s.id"
            " WHERE s.batch_id = ? AND t.serial_id IS NULL ORDER BY s.id",
            (batch_id,),
        )
    ]


def next_reports(conn: sqlite3.Connection, limit: int) -> list[ReportRow]:
    """Return up to limit reports not yet accepted by the server, oldest first."""
    return [
        ReportRow(rid, batch_id, gtin, method, tuple(json.loads(serials)), attempts, lot, work_order)
        for rid, batch_id, gtin, method, serials, attempts, lot, work_order in conn.execute(
            "SELECT r.id, r.batch_id, r.gtin, r.method, r.serials, r.attempts, b.lot, b.work_order"
            " FROM openscs_report AS r JOIN batch AS b ON b.id = r.batch_id"
            " WHERE r.sent_at IS NULL ORDER BY r.id LIMIT ?",
            (limit,),
        )
    ]


def report_sent(conn: sqlite3.Connection, report_id: int, now: str) -> None:
    """Record that the server accepted the report."""
    conn.execute("UPDATE openscs_report SET sent_at = ?, attempts = attempts + 1, last_error = NULL WHERE id = ?",
                 (now, report_id))


def report_failed(conn: sqlite3.Connection, report_id: int, error: str) -> None:
    """Record a failed attempt at the report and why."""
    conn.execute("UPDATE openscs_report SET attempts = attempts + 1, last_error = ? WHERE id = ?",
                 (error[:500], report_id))


def backlog(conn: sqlite3.Connection) -> dict[str, int]:
    """Return the reports not yet accepted and the requests still pending."""
    unsent = conn.execute("SELECT count(*) FROM openscs_report WHERE sent_at IS NULL").fetchone()[0]
    pending = conn.execute("SELECT count(*) FROM openscs_request WHERE state = 'pending'").fetchone()[0]
    return {"reports": int(unsent), "requests": int(pending)}


def delivered(conn: sqlite3.Connection, batch_id: int) -> dict[str, int]:
    """Return, per OPEN-SCS method, how many serials of the batch the server accepted reports of."""
    rows = conn.execute(
        "SELECT method, sum(json_array_length(serials)) FROM openscs_report"
        " WHERE batch_id = ? AND sent_at IS NOT NULL GROUP BY method ORDER BY min(id)",
        (batch_id,),
    )
    return {str(method): int(count) for method, count in rows}


def received_total(conn: sqlite3.Connection, gtin: str) -> int:
    """Return how many serials of gtin came over OPEN-SCS requests, in all."""
    row = conn.execute("SELECT coalesce(sum(received), 0) FROM openscs_request WHERE gtin = ?", (gtin,)).fetchone()
    return int(row[0])


# -- views ----------------------------------------------------------------------------------------------------

_LINE_TO_SERVER: Final = {
    L.ALLOCATED: N.ALLOCATED,
    L.SENT: N.ENCODED,
    L.PRINTED: N.ENCODED,
    L.IN_DOUBT: N.ENCODED,
    L.COMMISSIONED: N.COMMISSIONED,
    L.REJECTED: N.LABEL_SCRAPPED,
    L.DESTROYED: N.DESTROYED,
    L.RETURNED: N.UNALLOCATED,
}
"""The server state each ledger state stands for once reported (pool and sampled serials depend on more)."""


def expected_state(state: SerialState, *, kind: RequestKind, commissioned: bool) -> SerialNumberState:
    """Return the state the server holds a serial in once every report is delivered, by the line's state of it."""
    # commissioned: whether it ever was; a sampled pack is then a sampled SID, else a sampled label.
    if state is L.AVAILABLE:
        return received_state(kind)
    if state is L.SAMPLED:
        return N.SAMPLED if commissioned else N.LABEL_SAMPLED
    return _LINE_TO_SERVER[state]


def line_view(conn: sqlite3.Connection, batch_id: int, kind: RequestKind) -> dict[str, SerialNumberState]:
    """Return, per serial of the batch, the state the server should hold it in by the line's own records."""
    rows = conn.execute(
        "SELECT s.serial, s.state, EXISTS (SELECT 1 FROM serial_history AS h JOIN transition AS t"
        " ON t.id = h.transition_id WHERE h.serial_id = s.id AND t.to_state = ?) FROM serial AS s"
        " WHERE s.batch_id = ? ORDER BY s.id",
        (int(L.COMMISSIONED), batch_id),
    )
    return {serial: expected_state(L(state), kind=kind, commissioned=bool(done)) for serial, state, done in rows}
