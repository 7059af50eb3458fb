"""The HTTP API's routes: JSON in, JSON out, under /api/v1; expected errors become 4xx/503 with a JSON body.

It has no authentication yet (users and roles come later): it listens on loopback unless configured
otherwise (config api.host), and every change it records names the operator the client gave.
"""

from __future__ import annotations

import asyncio
import json
from functools import partial
from typing import TYPE_CHECKING, Any, get_args
from urllib.parse import quote

import structlog
from aiohttp import web

from edge.api.actions import ACTIONS, perform
from edge.api.errors import error_body, http_status
from edge.serials.imports import Kind
from edge.serials.report import render_html
from edge.serials.workorder import REQUEST_BODY

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from edge.aggregation.service import Aggregation
    from edge.api.aggregation import CloseShort, ScanCase
    from edge.products.models import Product
    from edge.serials.batches import BatchService
    from edge.store import Store

_LOG = structlog.get_logger("lineside.api")

API_PREFIX = "/api/v1"
# Serial lists are the largest bodies: 64 MiB holds about 2.5 million 20-character serials as a JSON list,
# or some 600,000 Russian complete codes. The body is held in memory while it is checked, so larger
# deliveries are sent as several imports (each is all or nothing on its own).
MAX_BODY_BYTES = 64 * 1024 * 1024
# A client gets this long to send its body: a stalled one must not hold a handler and its buffer forever.
BODY_READ_TIMEOUT_S = 60.0
# Longest operator name taken: a name, not a document.
MAX_OPERATOR_CHARS = 128
# Keys an action's optional JSON body may have.
ACTION_KEYS = ("operator", "reason")

BATCHES: web.AppKey[BatchService] = web.AppKey("batches")
LINE_STATUS: web.AppKey[Callable[[], dict[str, Any]]] = web.AppKey("line-status")

_dumps = partial(json.dumps, ensure_ascii=False)


def make_app(
    batches: BatchService,
    *,
    client_max_size: int = MAX_BODY_BYTES,
    line_status: Callable[[], dict[str, Any]] | None = None,
    aggregation: Aggregation | None = None,
    close_short: CloseShort | None = None,
    scan_case: ScanCase | None = None,
    store: Callable[[], Store | None] | None = None,
    wake_delivery: Callable[[str], bool] | None = None,
) -> web.Application:
    """Return the API application over the line's batch service (and the line's live status, when given).

    aggregation serves /api/v1/aggregation (503 there without it); close_short closes a container short
    through the station filling it (without it, directly); scan_case triggers the case-scan station; store and
    wake_delivery serve /api/v1/epcis (upstream delivery status and re-send).
    """
    from edge.api import aggregation as aggregation_api  # noqa: PLC0415 - it builds on this module's helpers
    from edge.api import epcis as epcis_api  # noqa: PLC0415

    app = web.Application(client_max_size=client_max_size, middlewares=[_errors])
    app[BATCHES] = batches
    app[LINE_STATUS] = line_status or dict
    api = API_PREFIX
    app.router.add_get(f"{api}/health", _health)
    app.router.add_get(f"{api}/line", _line)
    app.router.add_get(f"{api}/batches", _list_batches)
    app.router.add_post(f"{api}/work-orders", _create)
    app.router.add_get(f"{api}/batches/{{ref}}", _status)
    app.router.add_get(f"{api}/batches/{{ref}}/report", _status)
    app.router.add_get(f"{api}/batches/{{ref}}/report.html", _report_html)
    app.router.add_post(f"{api}/batches/{{ref}}/{{action}}", _action)
    app.router.add_post(f"{api}/serials", _import_serials)
    app.router.add_get(f"{api}/pool/{{product}}", _pool)
    aggregation_api.add_routes(app, api, aggregation, close_short=close_short, scan_case=scan_case)
    epcis_api.add_routes(app, api, store or (lambda: None), wake_delivery or (lambda _target: False))
    return app


def _json(data: object, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response(data, status=status, headers=headers, dumps=_dumps)


def _problem(status: int, error: str, issues: list[str] | None = None) -> web.Response:
    return _json({"error": error, "issues": issues or []}, status)


class _BadRequestError(Exception):
    """The request itself is malformed (a 400 with this message)."""


class _NotFoundError(Exception):
    """The request names something that does not exist besides a batch (a 404 with this message)."""


@web.middleware
async def _errors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return _problem(exc.status, _http_message(request, exc))
    except _BadRequestError as err:
        return _problem(400, str(err))
    except _NotFoundError as err:
        return _problem(404, str(err))
    except Exception as err:  # noqa: BLE001 - every error becomes an answer; unexpected ones are logged whole
        status = http_status(err)
        if status is None:
            _LOG.exception("API request failed", method=request.method, path=request.path)
            return _problem(500, "internal error, see the log")
        body = error_body(err)
        if status >= 500:
            _LOG.error("API request failed: the store is unavailable", method=request.method, path=request.path,
                       error=body["error"])
        return _problem(status, body["error"], body["issues"])


def _http_message(request: web.Request, exc: web.HTTPException) -> str:
    if exc.status == 404 and exc.text == "404: Not Found":
        return f"no such endpoint: {request.method} {request.path}; the API is under {API_PREFIX}"
    if exc.status == 405:
        return f"{request.method} is not allowed on {request.path}"
    return exc.text or exc.reason


# -- reading the request ------------------------------------------------------------------------


async def _body(request: web.Request) -> bytes:
    """Return the whole body; 413 past client_max_size, 408 when it does not arrive in time."""
    try:
        async with asyncio.timeout(BODY_READ_TIMEOUT_S):
            return await request.read()
    except TimeoutError as err:
        raise web.HTTPRequestTimeout(text=f"the request body did not arrive within {BODY_READ_TIMEOUT_S:g} s") from err


async def _options(request: web.Request) -> dict[str, Any]:
    """Return an action's optional JSON object body ({} when empty); 400 when it is not one."""
    raw = await _body(request)
    if not raw.strip():
        return {}
    try:
        data = json.loads(raw)
    except ValueError as err:
        raise _BadRequestError(f"the body is not JSON: {err}") from err
    if not isinstance(data, dict):
        raise _BadRequestError('the body must be a JSON object, like {"operator": "jdoe", "reason": "..."}')
    unknown = sorted(set(data) - set(ACTION_KEYS))
    if unknown:
        raise _BadRequestError(f"unknown key(s) {', '.join(unknown)}; the body takes {', '.join(ACTION_KEYS)}")
    return data


def _text_option(request: web.Request, body: dict[str, Any], name: str, limit: int | None = None) -> str | None:
    """Return a text option from the JSON body, else the query string; None when absent or blank."""
    value = body.get(name, request.query.get(name))
    if value is None:
        return None
    if not isinstance(value, str):
        raise _BadRequestError(f"{name} must be text, not {type(value).__name__}")
    value = value.strip()
    if limit is not None and len(value) > limit:
        raise _BadRequestError(f"{name} is {len(value)} characters long; at most {limit} are taken")
    return value or None


def _operator(request: web.Request, body: dict[str, Any] | None = None) -> str | None:
    return _text_option(request, body or {}, "operator", MAX_OPERATOR_CHARS)


def _batches(request: web.Request) -> BatchService:
    return request.app[BATCHES]


def _product(batches: BatchService, product_id: str) -> Product:
    product = batches.catalog.products.get(product_id)
    if product is None:
        known = ", ".join(sorted(batches.catalog.products)) or "none"
        raise _NotFoundError(f'unknown product "{product_id}"; this line knows: {known}')
    return product


# -- handlers -----------------------------------------------------------------------------------


async def _line(request: web.Request) -> web.Response:
    """Answer the line as it runs: each device's link, each printer's feeding, inspection counts."""
    return _json({"line": _batches(request).ledger.line_id, **request.app[LINE_STATUS]()})


async def _health(request: web.Request) -> web.Response:
    batches = _batches(request)
    await batches.ledger.store.read(lambda conn: conn.execute("SELECT 1").fetchone())
    return _json({"line": batches.ledger.line_id, "status": "ok"})


async def _list_batches(request: web.Request) -> web.Response:
    return _json({"batches": await _batches(request).summaries()})


async def _create(request: web.Request) -> web.Response:
    batches = _batches(request)
    operator = _operator(request)
    raw = await _body(request)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise _BadRequestError(f"{REQUEST_BODY}: not UTF-8 text (byte {err.start})") from err
    order = batches.parse_work_order(text, REQUEST_BODY)
    batch = await batches.create(order, operator=operator)
    location = f"{API_PREFIX}/batches/{batch.id}"
    return _json(await batches.status(batch.id), 201, headers={"Location": location})


async def _status(request: web.Request) -> web.Response:
    return _json(await _batches(request).status(request.match_info["ref"]))


async def _report_html(request: web.Request) -> web.Response:
    report = await _batches(request).status(request.match_info["ref"])
    return web.Response(text=render_html(report), content_type="text/html", charset="utf-8")


async def _action(request: web.Request) -> web.Response:
    action = request.match_info["action"]
    if action not in ACTIONS:
        raise _BadRequestError(f'unknown action "{action}"; the actions are {", ".join(ACTIONS)}')
    body = await _options(request)
    operator = _operator(request, body)
    reason = _text_option(request, body, "reason")
    if action == "cancel" and reason is None:
        raise _BadRequestError('cancelling a batch needs a reason: send {"reason": "..."}')
    result = await perform(_batches(request), request.match_info["ref"], action, operator=operator, reason=reason)
    return _json(result)


async def _import_serials(request: web.Request) -> web.Response:
    batches = _batches(request)
    product = request.query.get("product")
    if product is not None:
        _product(batches, product)
    kind = request.query.get("kind", "auto")
    kinds: tuple[Kind, ...] = get_args(Kind)
    if kind not in kinds:
        raise _BadRequestError(f'unknown kind "{kind}"; the kinds are {", ".join(kinds)}')
    operator = _operator(request)
    data = await _body(request)
    result = await batches.import_serials(
        data, REQUEST_BODY, product=product, gtin=request.query.get("gtin"), kind=kind, operator=operator
    )
    return _json(result, 201, headers={"Location": f"{API_PREFIX}/pool/{quote(result['product'], safe='')}"})


async def _pool(request: web.Request) -> web.Response:
    batches = _batches(request)
    product = _product(batches, request.match_info["product"])
    available = await batches.ledger.pool_available(product.gtin)
    return _json({
        "product": product.id,
        "gtin": product.gtin,
        "available": available,
        "low_water": product.serials.low_water,
    })
