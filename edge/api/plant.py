"""The API's plant delivery routes (MES/ERP messages): status per target and message, attempts, re-send.

GET  /api/v1/plant/deliveries                              every message queued per target with its state
GET  /api/v1/plant/deliveries/{target}/{message}           one, with its body's id and every attempt
POST /api/v1/plant/deliveries/{target}/{message}/resend    {"reason"}: queue it again (as the logged-in user)

A target blocked by a failed message looks again within edge.plant.delivery.FAILED_RECHECK_S of a re-send.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

from edge.api import routes
from edge.api.auth import operator_of
from edge.control.permissions import Permission
from edge.plant import outbox
from edge.store.runs import iso_utc
from edge.store.store import utc_now

if TYPE_CHECKING:
    import sqlite3
    from collections.abc import Callable

    from edge.store import Store

STORE: web.AppKey[Callable[[], Store | None]] = web.AppKey("plant-store")
MAX_TEXT = 500
"""Longest reason taken: words, not documents."""


def add_routes(app: web.Application, prefix: str, store: Callable[[], Store | None]) -> None:
    """Serve the plant delivery routes over the store (None while the daemon starts)."""
    app[STORE] = store
    one = f"{prefix}/plant/deliveries/{{target}}/{{message}}"
    named = {"target": "plant target id", "message": "the message's outbox id"}
    routes.add(app, "GET", f"{prefix}/plant/deliveries", _list, Permission.VIEW,
               "Every MES/ERP message queued per target with its state", tag="plant",
               query=(("target", "only this target"),))
    routes.add(app, "GET", one, _show, Permission.VIEW, "One MES/ERP message on its way, with every attempt",
               tag="plant", extra=named)
    # Re-sending to the plant systems is the same trust as re-sending EPCIS upstream: one permission for both.
    routes.add(app, "POST", f"{one}/resend", _resend, Permission.EPCIS_RESEND,
               "Queue an MES/ERP message again (after a refusal was dealt with)", tag="plant", extra=named,
               body={"type": "object", "required": ["reason"], "additionalProperties": False,
                     "properties": {"reason": {"type": "string", "maxLength": MAX_TEXT}}})


def _store(request: web.Request) -> Store:
    store = request.app[STORE]()
    if store is None:
        raise web.HTTPServiceUnavailable(text="the line controller is starting: try again")
    return store


def _message_id(request: web.Request) -> int:
    text = request.match_info["message"]
    if not text.isdigit():
        raise web.HTTPNotFound(text=f"no plant message {text!r} (give its outbox id)")
    return int(text)


async def _list(request: web.Request) -> web.Response:
    target = request.query.get("target")
    rows = await _store(request).read(lambda conn: outbox.status(conn, target))
    return web.json_response({"deliveries": rows})


async def _show(request: web.Request) -> web.Response:
    target, message = request.match_info["target"], _message_id(request)

    def read(conn: sqlite3.Connection) -> dict[str, Any]:
        rows = [r for r in outbox.status(conn, target) if r["outbox_id"] == message]
        if not rows:
            raise web.HTTPNotFound(text=f"plant message {message} is not queued for {target}")
        sha = conn.execute("SELECT sha256 FROM plant_outbox WHERE id = ?", (message,)).fetchone()[0]
        return {**rows[0], "sha256": sha, "attempts": outbox.attempts_of(conn, target, message)}

    return web.json_response(await _store(request).read(read))


async def _resend(request: web.Request) -> web.Response:
    target, message = request.match_info["target"], _message_id(request)
    try:
        body = await request.json()
    except ValueError:
        raise web.HTTPBadRequest(text='send a JSON object {"reason": ...}') from None
    if not isinstance(body, dict) or set(body) - {"reason"}:
        raise web.HTTPBadRequest(text='send a JSON object {"reason": ...}')
    reason = body.get("reason")
    if not isinstance(reason, str) or not reason.strip() or len(reason) > MAX_TEXT:
        raise web.HTTPBadRequest(text=f"reason: give it as text of 1 to {MAX_TEXT} characters")
    operator = operator_of(request, None)
    now = iso_utc(utc_now())
    try:
        await _store(request).write(lambda conn: outbox.resend(conn, target, message, operator=operator,
                                                               reason=reason, now=now))
    except outbox.PlantDeliveryError as err:
        raise web.HTTPConflict(text=str(err)) from None
    return web.json_response({"target": target, "message": message, "state": "pending"})
