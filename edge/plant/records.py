"""The electronic batch record of a closed batch, read from the store's append-only history (schema in docs).

Everything here is read from rows that never change once the batch is closed (batch events, serial transitions,
the frozen reconciliation, signatures, the audit trail, daemon runs), so rendering it later gives what rendering
it at the close would have given.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Final

from edge.serials.states import SerialState

if TYPE_CHECKING:
    import sqlite3

BATCH_RECORD_SCHEMA: Final = "lineside.batch-record"
BATCH_RECORD_VERSION: Final = 1

# Transitions made by a printer (sent to it, confirmed printed) and by a camera (judged good or bad).
_PRINTER_STATES: Final = (int(SerialState.SENT), int(SerialState.PRINTED))
_CAMERA_STATES: Final = (int(SerialState.COMMISSIONED), int(SerialState.REJECTED))
_DECOMMISSIONED: Final = {
    int(SerialState.REJECTED): "rejected", int(SerialState.DESTROYED): "destroyed",
    int(SerialState.SAMPLED): "sampled",
}
# Commands that stop or hold the line (PackML), shown beside the batch's own pauses.
_LINE_STOPS: Final = ("line.hold", "line.stop", "line.suspend", "line.abort")


def batch_record(conn: sqlite3.Connection, batch_id: int, close_event: int) -> dict[str, Any]:
    """Return the batch record of batch_id as of its close (batch_event close_event)."""
    batch = _batch(conn, batch_id)
    events = [
        {"at": at, "from": src, "to": dst, "operator": operator, "reason": reason}
        for at, src, dst, operator, reason in conn.execute(
            "SELECT at, from_state, to_state, operator, reason FROM batch_event WHERE batch_id = ? AND id <= ?"
            " ORDER BY id", (batch_id, close_event))
    ]
    closed_at = events[-1]["at"] if events else None
    started_at = next((e["at"] for e in events if e["to"] == "running"), None)
    since = started_at or batch["created_at"]
    report_row = conn.execute("SELECT report, sha256 FROM batch_report WHERE batch_id = ?", (batch_id,)).fetchone()
    reconciliation = None if report_row is None else {"report": json.loads(report_row[0]), "sha256": report_row[1]}
    return {
        "schema": BATCH_RECORD_SCHEMA,
        "version": BATCH_RECORD_VERSION,
        "batch": batch,
        "started_at": started_at,
        "closed_at": closed_at,
        "state_changes": events,
        "pauses": _pauses(events),
        "line_stops": _audit(conn, since, closed_at, "action IN (?, ?, ?, ?)", _LINE_STOPS),
        "alarms": _audit(conn, since, closed_at, "action = ?", ("alarm.raised",)),
        "counts": _counts(conn, batch_id),
        "decommissioned_by_reason": _reasons(conn, batch_id),
        "serial_times": _serial_times(conn, batch_id),
        "devices": {
            "printers": _devices(conn, batch_id, _PRINTER_STATES),
            "cameras": _devices(conn, batch_id, _CAMERA_STATES),
        },
        "configuration": _configurations(conn, batch["created_at"], closed_at),
        "reconciliation": reconciliation,
        "signatures": _signatures(conn, f"batch:{batch['work_order']}"),
    }


def _batch(conn: sqlite3.Connection, batch_id: int) -> dict[str, Any]:
    row = conn.execute(
        "SELECT id, line_id, work_order, product_id, json_extract(product_json, '$.name'), gtin, lot, expiry,"
        " quantity, market, created_at FROM batch WHERE id = ?", (batch_id,)).fetchone()
    keys = ("id", "line", "work_order", "product", "product_name", "gtin", "lot", "expiry", "quantity", "market",
            "created_at")
    return dict(zip(keys, row, strict=True))


def _pauses(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Return each time the batch was paused, with who and why, and when it resumed (None: never resumed)."""
    pauses: list[dict[str, Any]] = []
    for event in events:
        if event["to"] == "paused":
            pauses.append({"at": event["at"], "operator": event["operator"], "reason": event["reason"],
                           "resumed_at": None})
        elif pauses and pauses[-1]["resumed_at"] is None and event["from"] == "paused":
            pauses[-1]["resumed_at"] = event["at"]
    return pauses


def _audit(conn: sqlite3.Connection, since: str, until: str | None, where: str,
           params: tuple[str, ...]) -> list[dict[str, Any]]:
    """Return the audit entries matching where between since and until (the batch's production window)."""
    rows = conn.execute(
        f"SELECT id, at, actor, action, subject, details_json FROM audit_log WHERE {where}"  # noqa: S608 - fixed clauses
        " AND at >= ? AND at <= ? ORDER BY id",
        (*params, since, until or "9999"),
    )
    return [{"audit_id": i, "at": at, "actor": actor, "action": action, "subject": subject,
             "details": json.loads(details)} for i, at, actor, action, subject, details in rows]


def _counts(conn: sqlite3.Connection, batch_id: int) -> dict[str, int]:
    """Return the batch's serials by state now (closed: final), every state named."""
    found = dict(conn.execute("SELECT state, count(*) FROM serial WHERE batch_id = ? GROUP BY state", (batch_id,))
                 .fetchall())
    return {state.label: int(found.get(int(state), 0)) for state in SerialState if state is not SerialState.AVAILABLE}


def _reasons(conn: sqlite3.Connection, batch_id: int) -> dict[str, dict[str, int]]:
    """Return, per decommissioned state, how many serials went there for each reason."""
    out: dict[str, dict[str, int]] = {name: {} for name in _DECOMMISSIONED.values()}
    for state, reason, count in conn.execute(
        "SELECT to_state, reason, sum(count) FROM transition WHERE batch_id = ? AND to_state IN (?, ?, ?)"
        " GROUP BY to_state, reason ORDER BY to_state, reason", (batch_id, *_DECOMMISSIONED)):
        out[_DECOMMISSIONED[int(state)]][str(reason)] = int(count)
    return out


def _serial_times(conn: sqlite3.Connection, batch_id: int) -> dict[str, str | None]:
    """Return the first and last time a serial was printed and commissioned."""
    out: dict[str, str | None] = {}
    for name, state in (("printed", SerialState.PRINTED), ("commissioned", SerialState.COMMISSIONED)):
        first, last = conn.execute("SELECT min(at), max(at) FROM transition WHERE batch_id = ? AND to_state = ?",
                                   (batch_id, int(state))).fetchone()
        out[f"first_{name}_at"], out[f"last_{name}_at"] = first, last
    return out


def _devices(conn: sqlite3.Connection, batch_id: int, states: tuple[int, int]) -> list[dict[str, Any]]:
    """Return the devices that moved the batch's serials into states, with how many into each and when."""
    found: dict[str, dict[str, Any]] = {}
    for device, state, count, first, last in conn.execute(
            "SELECT device, to_state, sum(count), min(at), max(at) FROM transition WHERE batch_id = ?"
            " AND to_state IN (?, ?) AND device IS NOT NULL GROUP BY device, to_state ORDER BY device, to_state",
            (batch_id, *states)):
        entry = found.setdefault(device, {"id": device, **{SerialState(s).label: 0 for s in states},
                                          "first_at": first, "last_at": last})
        entry[SerialState(state).label] = int(count)
        entry["first_at"], entry["last_at"] = min(entry["first_at"], first), max(entry["last_at"], last)
    return list(found.values())


def _configurations(conn: sqlite3.Connection, since: str, until: str | None) -> list[dict[str, Any]]:
    """Return the daemon runs during the batch with their configuration hashes (more than one: it changed)."""
    return [
        {"run": run, "started_at": started, "version": version, "config_sha256": sha}
        for run, started, version, sha in conn.execute(
            "SELECT id, started_at, version, config_sha256 FROM daemon_run WHERE started_at <= ?"
            " AND (stopped_at IS NULL OR stopped_at >= ?) ORDER BY id", (until or "9999", since))
    ]


def _signatures(conn: sqlite3.Connection, subject: str) -> list[dict[str, Any]]:
    """Return the e-signatures given on the batch (release, close, decommissioning), oldest first."""
    return [
        {"id": i, "at": at, "user": user, "full_name": full_name, "role": role, "meaning": meaning,
         "permission": permission, "sha256": sha}
        for i, at, user, full_name, role, meaning, permission, sha in conn.execute(
            "SELECT id, at, user, full_name, role, meaning, permission, sha256 FROM signature WHERE subject = ?"
            " ORDER BY id", (subject,))
    ]
