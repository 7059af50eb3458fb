"""The HTTP API: JSON in, JSON out, under /api/v1; expected errors become 4xx/503 with a JSON body.

Every route is in one table (edge.api.routes) with who may call it; the session middleware (edge.api.auth) applies
that before the handler runs, and every change records the logged-in user. Signed actions (edge.api.signing) take
the user's password again and commit with their signature. The same application serves the web HMI (edge.hmi) at
/hmi and its OpenAPI description at /api/v1/openapi.json.
"""

from __future__ import annotations

import asyncio
import html
import json
from functools import partial
from typing import TYPE_CHECKING, Any, get_args
from urllib.parse import quote

import structlog
from aiohttp import web

from edge.api import auth as auth_api
from edge.api import routes, signing
from edge.api.actions import perform
from edge.api.auth import AuthRequiredError, auth_error_body, operator_of
from edge.api.errors import error_body, http_status
from edge.api.signing import SignatureRequiredError
from edge.control.accounts import AuthError
from edge.control.permissions import NotAllowedError, Permission
from edge.metrics import add_metrics_route
from edge.plant.acks import create_acknowledged
from edge.serials.imports import Kind
from edge.serials.report import render_html
from edge.serials.workorder import REQUEST_BODY

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from pathlib import Path

    from edge.aggregation.service import Aggregation
    from edge.api.aggregation import CloseShort, ScanCase
    from edge.api.auth import Auth
    from edge.control.line import LineControl
    from edge.metrics import LineMetrics
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
# Keys an action's optional JSON body may have: operator only if it is the logged-in user (older clients send it).
ACTION_KEYS = ("operator", "reason", "password")
# Longest reason taken: a sentence or two for the records, not a report.
MAX_REASON_CHARS = 500
P = Permission

BATCHES: web.AppKey[BatchService] = web.AppKey("batches")
LINE_STATUS: web.AppKey[Callable[[], dict[str, Any]]] = web.AppKey("line-status")

_dumps = partial(json.dumps, ensure_ascii=False)


def make_app(
    batches: BatchService,
    *,
    auth: Auth,
    client_max_size: int = MAX_BODY_BYTES,
    line_status: Callable[[], dict[str, Any]] | None = None,
    aggregation: Aggregation | None = None,
    close_short: CloseShort | None = None,
    scan_case: ScanCase | None = None,
    store: Callable[[], Store | None] | None = None,
    wake_delivery: Callable[[str], bool] | None = None,
    control: Callable[[], LineControl | None] | None = None,
    rejects: Path | None = None,
    metrics: LineMetrics | None = None,
) -> web.Application:
    """Return the API application (and the HMI) over the line's batch service, authenticating with auth.

    line_status answers /api/v1/line; aggregation serves /api/v1/aggregation (503 there without it); close_short
    closes a container short through the station filling it (without it, directly); scan_case triggers the
    case-scan station; store and wake_delivery serve /api/v1/epcis (upstream delivery status and re-send), store
    also serves /api/v1/plant (MES/ERP messages: status and re-send); control
    (the line's PackML unit, None while it does not run) serves /api/v1/control; rejects is the directory of the
    inspection's reject images (/api/v1/rejects); metrics serves Prometheus at /metrics (no session: scrapers have
    none; loopback unless api.host says otherwise).
    """
    from edge import hmi  # noqa: PLC0415 - the HMI's files build on the route table set up here
    from edge.api import aggregation as aggregation_api  # noqa: PLC0415 - it builds on this module's helpers
    from edge.api import control as control_api  # noqa: PLC0415
    from edge.api import epcis as epcis_api  # noqa: PLC0415
    from edge.api import openapi  # noqa: PLC0415
    from edge.api import plant as plant_api  # noqa: PLC0415

    app = web.Application(client_max_size=client_max_size, middlewares=[_errors, auth_api.authenticate])
    app.on_response_prepare.append(_headers)
    app[BATCHES] = batches
    app[LINE_STATUS] = line_status or dict
    api = API_PREFIX
    routes.table(app)
    auth_api.setup(app, auth, api)
    add = partial(routes.add, app, tag="batches")
    ref = {"ref": "batch id or work order"}
    routes.add(app, "GET", f"{api}/health", _health, routes.PUBLIC, "Whether the line controller and its store answer",
               tag="line")
    routes.add(app, "GET", f"{api}/line", _line, P.VIEW,
               "The line as it runs: device links, printers, inspection, aggregation, in-doubt serials", tag="line")
    add("GET", f"{api}/batches", _list_batches, P.VIEW, "Every batch of the line with its serials by state")
    add("POST", f"{api}/work-orders", _create, P.BATCH_CREATE, "Create a batch from a work order (YAML or JSON)",
        body_type="application/yaml", status=201)
    add("GET", f"{api}/batches/{{ref}}", _status, P.VIEW, "A batch, its serials by state and its reconciliation",
        extra=ref)
    add("GET", f"{api}/batches/{{ref}}/report", _report, P.VIEW,
        "The reconciliation report (frozen at close) with the signatures given on the batch", extra=ref)
    add("GET", f"{api}/batches/{{ref}}/report.html", _report_html, P.VIEW,
        "The reconciliation report as a printable page, with its signatures", answer="text/html", extra=ref)
    for action, permission, summary in _BATCH_ACTIONS:
        signed = permission if permission in (P.BATCH_RELEASE, P.BATCH_CLOSE, P.DECOMMISSION) else None
        add("POST", f"{api}/batches/{{ref}}/{action}", partial(_action, action), permission, summary,
            body=_action_body(action, signed), signed=signed, extra=ref)
    add("POST", f"{api}/batches/{{ref}}/{{action}}", _unknown_action, P.VIEW,
        "Any other action: refused (400) naming the actions there are", extra={**ref, "action": "not an action"})
    add("POST", f"{api}/serials", _import_serials, P.BATCH_CREATE,
        "Import serials or complete codes from upstream into a product's pool", body_type="text/plain", status=201,
        query=(("product", "the product the serials are for"), ("gtin", "or its GTIN"),
               ("kind", "auto, yaml, json or text")))
    add("GET", f"{api}/pool/{{product}}", _pool, P.VIEW, "Serials and codes waiting in a product's pool",
        extra={"product": "product id"})
    aggregation_api.add_routes(app, api, aggregation, close_short=close_short, scan_case=scan_case)
    epcis_api.add_routes(app, api, store or (lambda: None), wake_delivery or (lambda _target: False))
    plant_api.add_routes(app, api, store or (lambda: None))
    control_api.add_routes(app, api, control or (lambda: None), rejects)
    openapi.add_routes(app, api)
    hmi.add_routes(app)
    if metrics is not None:
        add_metrics_route(app, metrics)
    return app


_BATCH_ACTIONS = (
    ("release", P.BATCH_RELEASE, "Release: allocate the batch's serials by its market's rules (signed: released)"),
    ("start", P.BATCH_RUN, "Put a released batch on the line (or resume a paused one)"),
    ("pause", P.BATCH_RUN, "Pause the running batch"),
    ("resume", P.BATCH_RUN, "Resume a paused batch"),
    ("complete", P.BATCH_RUN, "Stop drawing serials; serials in flight become in doubt"),
    ("decommission-in-doubt", P.DECOMMISSION,
     "Decommission the batch's in-doubt serials once their units are off the line (signed: reviewed)"),
    ("close", P.BATCH_CLOSE, "Reconcile and close (signed: approved); refused while it does not balance"),
    ("cancel", P.BATCH_CANCEL, "Cancel a batch that never ran (reason needed)"),
)
"""Every batch action with the permission it needs; ACTIONS (edge.api.actions) names the same ones."""


def _action_body(action: str, signed: Permission | None) -> dict[str, Any]:
    properties: dict[str, Any] = {
        "reason": {"type": "string", "maxLength": MAX_REASON_CHARS},
        "operator": {"type": "string", "description": "if sent, the logged-in user's name (anyone else: 400)"},
    }
    if signed is not None:
        properties["password"] = {"type": "string", "description": "the user's password again: the e-signature"}
    required = ["reason"] if action in ("cancel", "decommission-in-doubt") else []
    return {"type": "object", "additionalProperties": False, "properties": properties, "required": required}


async def _headers(request: web.Request, response: web.StreamResponse) -> None:
    """Keep answers out of caches and frames, and their types as declared (a panel shared by several users)."""
    del request
    response.headers.setdefault("Cache-Control", "no-store")
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("Referrer-Policy", "no-referrer")


def _json(data: object, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response(data, status=status, headers=headers, dumps=_dumps)


def _problem(status: int, error: str, issues: list[str] | None = None) -> web.Response:
    return _json({"error": error, "issues": issues or []}, status)


class _BadRequestError(Exception):
    """The request itself is malformed (a 400 with this message)."""


class _NotFoundError(Exception):
    """The request names something that does not exist besides a batch (a 404 with this message)."""


@web.middleware
async def _errors(  # noqa: PLR0911 - one answer per kind of error, read top to bottom
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return _problem(exc.status, _http_message(request, exc))
    except (AuthRequiredError, AuthError) as err:
        return _json(auth_error_body(err), 401, headers={"WWW-Authenticate": 'Bearer realm="lineside"'})
    except SignatureRequiredError as err:
        return _json(err.body(), 401)
    except NotAllowedError as err:
        return _problem(403, str(err))
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
        if status >= 500:  # the store or the L3 pool server failed: the operator sees it, the log keeps it
            _LOG.error("API request failed", status=status, method=request.method, path=request.path,
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


def _operator(request: web.Request, body: dict[str, Any] | None = None) -> str:
    """Return the logged-in user, who is recorded with the change; 400 when the client named someone else."""
    return operator_of(request, (body or {}).get("operator", request.query.get("operator")))


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
    batch = await create_acknowledged(batches, text, REQUEST_BODY, operator)  # the MES hears either way
    location = f"{API_PREFIX}/batches/{batch.id}"
    return _json(await batches.status(batch.id), 201, headers={"Location": location})


async def _status(request: web.Request) -> web.Response:
    return _json(await _batches(request).status(request.match_info["ref"]))


async def _report(request: web.Request) -> web.Response:
    batches = _batches(request)
    batch = await batches.ledger.batch(request.match_info["ref"])
    report = await batches.status(batch.id)
    return _json({**report, "signatures": await signing.signatures_of(request, batch)})


async def _report_html(request: web.Request) -> web.Response:
    batches = _batches(request)
    batch = await batches.ledger.batch(request.match_info["ref"])
    page = render_html(await batches.status(batch.id))
    manifests = [s["manifest"] for s in await signing.signatures_of(request, batch)]
    if manifests:
        items = "".join(f"<li>{html.escape(text)}</li>" for text in manifests)
        page = page.replace("</body>", f"<h2>Electronic signatures</h2><ul>{items}</ul></body>", 1)
    return web.Response(text=page, content_type="text/html", charset="utf-8")


async def _action(action: str, request: web.Request) -> web.Response:
    body = await _options(request)
    operator = _operator(request, body)
    reason = _text_option(request, body, "reason", MAX_REASON_CHARS)
    if action == "cancel" and reason is None:
        raise _BadRequestError('cancelling a batch needs a reason: send {"reason": "..."}')
    if action == "decommission-in-doubt" and reason is None:
        raise _BadRequestError('decommissioning in-doubt serials needs a reason (what happened to their units): '
                               'send {"reason": "...", "password": "..."}')
    batches, ref = _batches(request), request.match_info["ref"]
    if action == "release":
        return _json(await signing.release(batches, ref, signing.signer(request, body, P.BATCH_RELEASE,
                                                                        "releasing a batch")))
    if action == "close":
        return _json(await signing.close(batches, ref, signing.signer(request, body, P.BATCH_CLOSE,
                                                                      "closing a batch")))
    if action == "decommission-in-doubt" and reason is not None:
        signer = signing.signer(request, body, P.DECOMMISSION, "decommissioning in-doubt serials")
        return _json(await signing.decommission_in_doubt(batches, ref, reason, signer))
    if body.get("password") is not None:
        raise _BadRequestError(f"{action} is not signed: send no password")
    return _json(await perform(batches, ref, action, operator=operator, reason=reason))


async def _unknown_action(request: web.Request) -> web.Response:
    action = request.match_info["action"]
    names = ", ".join(name for name, _, _ in _BATCH_ACTIONS)
    raise _BadRequestError(f'unknown action "{action}"; the actions are {names}')


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
