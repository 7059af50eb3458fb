"""The API's upstream delivery routes: status per target and batch, messages with their attempts, re-send.

GET  /api/v1/epcis/deliveries                          every (target, batch) with its state and counts
GET  /api/v1/epcis/deliveries/{target}/{batch}         one, with its messages and every attempt
POST /api/v1/epcis/deliveries/{target}/{batch}/resend  {"reason"}: queue its messages again (as the logged-in user)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

from edge.api import routes
from edge.api.auth import operator_of
from edge.control.permissions import Permission
from edge.sync import outbox

if TYPE_CHECKING:
    import sqlite3
    from collections.abc import Callable

    from edge.store import Store

STORE: web.AppKey[Callable[[], Store | None]] = web.AppKey("epcis-store")
WAKE: web.AppKey[Callable[[str], bool]] = web.AppKey("epcis-wake")
MAX_TEXT = 500
"""Longest operator name or reason taken: words, not documents."""


def add_routes(app: web.Application, prefix: str, store: Callable[[], Store | None],
               wake: Callable[[str], bool]) -> None:
    """Serve the delivery routes over the store (None while the daemon starts); wake(target) is False if unknown."""
    app[STORE] = store
    app[WAKE] = wake
    one = f"{prefix}/epcis/deliveries/{{target}}/{{batch}}"
    named = {"target": "upstream target id", "batch": "batch id or work order"}
    routes.add(app, "GET", f"{prefix}/epcis/deliveries", _list, Permission.VIEW,
               "Every (target, batch) on its way upstream with its state and counts", tag="epcis",
               query=(("target", "only this target"),))
    routes.add(app, "GET", one, _show, Permission.VIEW, "One delivery with its messages and every attempt",
               tag="epcis", extra=named)
    routes.add(app, "POST", f"{one}/resend", _resend, Permission.EPCIS_RESEND,
               "Queue a delivery's messages again (after a permanent refusal was dealt with)", tag="epcis",
               extra=named, body={"type": "object", "required": ["reason"], "additionalProperties": False,
                                  "properties": {"reason": {"type": "string", "maxLength": MAX_TEXT},
                                                 "operator": {"type": "string"}}})


def _store(request: web.Request) -> Store:
    store = request.app[STORE]()
    if store is None:
        raise web.HTTPServiceUnavailable(text="the line controller is starting: try again")
    return store


def _batch_id(conn: sqlite3.Connection, ref: str) -> int:
    column = "id" if ref.isdigit() else "work_order"
    row = conn.execute(f"SELECT id FROM batch WHERE {column} = ?", (int(ref) if ref.isdigit() else ref,)).fetchone()  # noqa: S608
    if row is None:
        raise web.HTTPNotFound(text=f"no batch {ref!r} (give its id or its work order)")
    return int(row[0])


async def _list(request: web.Request) -> web.Response:
    target = request.query.get("target")
    rows = await _store(request).read(lambda conn: outbox.batch_status(conn, target))
    return web.json_response({"deliveries": rows})


async def _show(request: web.Request) -> web.Response:
    target, ref = request.match_info["target"], request.match_info["batch"]

    def read(conn: sqlite3.Connection) -> dict[str, Any]:
        batch = _batch_id(conn, ref)
        rows = outbox.batch_status(conn, target, batch)
        if not rows:
            raise web.HTTPNotFound(text=f"batch {ref} is not on its way to {target}")
        messages = [
            {"seq": m.seq, "state": m.state, "events": m.events, "attempts": m.attempts, "reason": m.reason,
             "name": m.name, "sha256": m.sha256, "capture_id": m.capture_id, "delivered_at": m.delivered_at,
             "history": outbox.attempts_of(conn, m.id)}
            for m in outbox.messages_of(conn, target, batch)
        ]
        return {**rows[0], "message_list": messages}

    return web.json_response(await _store(request).read(read))


async def _resend(request: web.Request) -> web.Response:
    target, ref = request.match_info["target"], request.match_info["batch"]
    try:
        body = await request.json()
    except ValueError:
        raise web.HTTPBadRequest(text='send a JSON object {"reason": ...}') from None
    if not isinstance(body, dict) or set(body) - {"operator", "reason"}:
        raise web.HTTPBadRequest(text='send a JSON object {"reason": ...}')
    operator, reason = operator_of(request, body.get("operator")), body.get("reason")
    if not isinstance(reason, str) or not reason.strip() or len(reason) > MAX_TEXT:
        raise web.HTTPBadRequest(text=f"reason: give it as text of 1 to {MAX_TEXT} characters")
    stamp = outbox_now()

    def change(conn: sqlite3.Connection) -> int:
        batch = _batch_id(conn, ref)
        try:
            return outbox.resend(conn, target, batch, operator=str(operator), reason=str(reason), now=stamp)
        except outbox.DeliveryError as exc:
            raise web.HTTPConflict(text=str(exc)) from exc

    count = await _store(request).write(change)
    request.app[WAKE](target)
    return web.json_response({"target": target, "batch": ref, "messages": count})


def outbox_now() -> str:
    """Return now as the store's timestamp text."""
    from edge.store.runs import iso_utc  # noqa: PLC0415
    from edge.store.store import utc_now  # noqa: PLC0415

    return iso_utc(utc_now())
