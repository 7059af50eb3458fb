"""The aggregation routes of the HTTP API: containers and their contents, rework, and the aggregation event log.

Under /api/v1/aggregation. Containers are named in the path by their identifier (SSCC or SGTIN), a scanned
label (``(00)...`` or an element string), or ``#<id>``. Units are named as a scanner or a person gives them:
an FNC1 element string (GS as FNC1, optional ``]d2``) or bracketed HRI ``(01)...(21)...``. Every change is
recorded under the logged-in user and needs a reason (400 naming the missing key). Rework (unpack, replace,
destroy, void a label) is signed: the body carries the user's password again, and the change commits with its
signature (edge.api.signing). Refusals by the aggregation rules are 409, a container that does not exist 404, a
scan that cannot be used 422. Without an Aggregation (make_app's ``aggregation``) the routes exist and answer
503, so a client learns the line has no aggregation rather than a wrong URL.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from functools import partial
from typing import TYPE_CHECKING, Any, Final

from aiohttp import web

from edge.aggregation import ops
from edge.aggregation.ops import ContainerRow
from edge.aggregation.stations import resolve_unit, sscc_of
from edge.api import routes, signing
from edge.api.app import (
    BATCHES,
    _BadRequestError,
    _body,
    _json,
    _text_option,
)
from edge.api.auth import operator_of
from edge.control.permissions import Permission
from edge.errors import AggregationError, ScanError
from edge.products.models import LEVELS
from edge.serials.states import SerialState
from edge.store.runs import iso_utc
from edge.store.store import utc_now

if TYPE_CHECKING:
    import sqlite3
    from collections.abc import Sequence

    from edge.aggregation.service import Aggregation
    from edge.control.signatures import Signature
    from edge.serials.ledger import SerialLedger
    from edge.serials.ops import BatchRow

__all__ = ["AGGREGATION", "CLOSE_SHORT", "CloseShort", "add_routes"]

CloseShort = Callable[[ContainerRow, str, str], Awaitable[ContainerRow]]
"""Closes a container short through the station filling it (which prints its label first):
(container, operator, reason) → the container as handed over."""

AGGREGATION: web.AppKey[Aggregation | None] = web.AppKey("aggregation")
CLOSE_SHORT: web.AppKey[CloseShort | None] = web.AppKey("close-short")
ScanCase = Callable[..., Awaitable[Any]]
"""Scans the case at the case-scan station: (expected=, operator=, reason=) → an outcome with as_dict()."""
SCAN_CASE: web.AppKey[ScanCase | None] = web.AppKey("scan-case")

PREFIX: Final = "/aggregation"
STATES: Final = ("open", "closed", "destroyed")
# Longest reason taken: a sentence or two for the audit trail, not a report.
MAX_REASON_CHARS: Final = 500
# Events answered per request by default and at most: a million-unit batch logs a million packs, so the log
# is read in pages (?after=N, the last id of the page before).
EVENTS_PAGE: Final = 1000
MAX_EVENTS_PAGE: Final = 10_000
# Characters of a code quoted back in a message: enough to recognise it.
SHOWN_CHARS: Final = 48
LABEL_PENDING: Final = "handed to its label station: it closes once its label is printed and verified"
_REWORK_KEYS: Final = ("operator", "reason", "password")
_CHANGE_KEYS: Final = ("operator", "reason")



def add_routes(
    app: web.Application, api: str, aggregation: Aggregation | None, *, close_short: CloseShort | None = None,
    scan_case: ScanCase | None = None,
) -> None:
    """Register the aggregation routes under api (like /api/v1) on app, served by aggregation when given."""
    app[AGGREGATION] = aggregation
    app[CLOSE_SHORT] = close_short
    app[SCAN_CASE] = scan_case
    root = f"{api}{PREFIX}"
    box = f"{root}/containers/{{identifier}}"
    named = {"identifier": "the container: SSCC or SGTIN, a scan of its label, or #<id>"}
    add = partial(routes.add, app, tag="aggregation")
    add("GET", f"{root}/containers", _list, Permission.VIEW, "The containers of a batch (default: the active one)",
        query=(("batch", "batch id or work order"), ("level", "case, pallet, ..."),
               ("state", "open, closed, destroyed")))
    add("GET", box, _show, Permission.VIEW, "A container with its units, child containers and parent", extra=named)
    for verb, handler, summary, keys in (
        ("unpack", _unpack, "Take named units and containers (none named: everything) out of a container",
         {"units": _CODES, "containers": _CODES}),
        ("replace", _replace, "Swap one unit of a container for another", {"old": _CODE, "new": _CODE}),
        ("destroy", _destroy, "Destroy a container and everything in it", {}),
        ("void-label", _void_label, "Void the container's SSCC for good and give it a new one", {}),
    ):
        add("POST", f"{box}/{verb}", handler, Permission.REWORK, f"{summary} (rework, signed: reviewed)", extra=named,
            signed=Permission.REWORK, body=_change_body(keys, signed=True))
    add("POST", f"{box}/close", _close, Permission.BATCH_RUN,
        "Close a container short, through the station filling it (its label first)", extra=named,
        body=_change_body({}, signed=False))
    add("POST", f"{root}/units/destroy", _destroy_unit, Permission.REWORK,
        "Destroy one unit (rework, signed: reviewed)", signed=Permission.REWORK,
        body=_change_body({"unit": _CODE}, signed=True, required=("unit",)))
    add("GET", f"{root}/batches/{{ref}}/events", _events, Permission.VIEW,
        "The aggregation event log of a batch, in pages", extra={"ref": "batch id or work order"},
        query=(("after", "the last event id of the page before"), ("limit", f"at most {MAX_EVENTS_PAGE:,}")))
    add("POST", f"{root}/case-scan", _scan_case, Permission.BATCH_RUN,
        "Scan the case at the case-scan station now (a short case names its count and a reason)",
        body={"type": "object", "additionalProperties": False,
              "properties": {"expected": {"type": "integer", "minimum": 1}, "reason": {"type": "string"},
                             "operator": {"type": "string"}}})


_CODE: Final = {"type": "string", "description": "a unit code: FNC1 element string or bracketed HRI"}
_CODES: Final = {"type": "array", "items": {"type": "string"}, "maxItems": ops.MAX_CHILDREN}


def _change_body(keys: dict[str, Any], *, signed: bool, required: tuple[str, ...] = ()) -> dict[str, Any]:
    properties: dict[str, Any] = {
        "reason": {"type": "string", "maxLength": MAX_REASON_CHARS},
        "operator": {"type": "string", "description": "if sent, the logged-in user's name (anyone else: 400)"},
        **keys,
    }
    if signed:
        properties["password"] = {"type": "string", "description": "the user's password again: the e-signature"}
    return {"type": "object", "additionalProperties": False, "properties": properties,
            "required": ["reason", *required]}


def _aggregation(request: web.Request) -> Aggregation:
    aggregation = request.app[AGGREGATION]
    if aggregation is None:
        raise web.HTTPServiceUnavailable(
            text="aggregation is not configured on this line: the daemon was started without it"
        )
    return aggregation


def _ledger(request: web.Request) -> SerialLedger:
    return request.app[BATCHES].ledger


async def _object(request: web.Request, keys: Sequence[str]) -> dict[str, Any]:
    """Return the JSON object body, which may have only keys; 400 when it is not one."""
    raw = await _body(request)
    example = "{" + ", ".join(f'"{key}": ...' for key in keys) + "}"
    if not raw.strip():
        raise _BadRequestError(f"the body is empty; send a JSON object like {example}")
    try:
        data = json.loads(raw)
    except ValueError as err:
        raise _BadRequestError(f"the body is not JSON: {err}") from err
    if not isinstance(data, dict):
        raise _BadRequestError(f"the body must be a JSON object, like {example}")
    unknown = sorted(set(data) - set(keys))
    if unknown:
        raise _BadRequestError(f"unknown key(s) {', '.join(unknown)}; the body takes {', '.join(keys)}")
    return data


def _rework(request: web.Request, body: dict[str, Any]) -> tuple[str, str]:
    """Return (operator, reason) of a change: the logged-in user, and the reason (400 when it is missing)."""
    operator = operator_of(request, body.get("operator"))
    reason = _text_option(request, body, "reason", MAX_REASON_CHARS)
    if reason is None:
        raise _BadRequestError('reason is missing: every aggregation change says why; send {"reason": "...", ...}')
    return operator, reason


def _signer(request: web.Request, body: dict[str, Any], what: str) -> signing.Signer:
    return signing.signer(request, body, Permission.REWORK, what)


async def _sign_rework(
    request: web.Request, body: dict[str, Any], box: ContainerRow | None, record: dict[str, Any], *, what: str,
    change: Callable[[sqlite3.Connection, str], object],
) -> tuple[Signature, Any]:
    """Sign a rework of box (None: a unit on its own) and make the change in the signature's transaction.

    change(conn, now) is the aggregation op; the container must be as it was when the rework was asked for.
    Return the signature and what change returned.
    """
    signer = _signer(request, body, what)
    done: list[object] = []

    def then(conn: sqlite3.Connection, signature: Signature) -> None:
        del signature
        if box is not None and ops.container(conn, box.id) != box:
            raise AggregationError(f"{box.name}: {signing.CHANGED}")
        done.append(change(conn, iso_utc(utc_now())))

    subject = f"container:{box.identifier}" if box is not None else f"unit:{record.get('unit', '?')}"
    signature = await signer.sign({"container": None if box is None else box.as_dict(), **record}, subject[:200], then)
    return signature, done[0]


def _text(body: dict[str, Any], key: str) -> str:
    """Return the text under key of the body; 400 when it is missing or not text."""
    value = body.get(key)
    if value is None:
        raise _BadRequestError(f"{key} is missing from the body")
    if not isinstance(value, str) or not value.strip():
        raise _BadRequestError(f"{key} must be non-empty text, not {json.dumps(value)[:SHOWN_CHARS]}")
    return value


def _texts(body: dict[str, Any], key: str) -> list[str] | None:
    """Return the list of texts under key of the body, or None when absent; 400 when it is not one."""
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise _BadRequestError(f"{key} must be a list of text, like [\"(01)...(21)...\"]")
    if len(value) > ops.MAX_CHILDREN:
        raise _BadRequestError(f"{key} names {len(value):,}; at most {ops.MAX_CHILDREN:,} are taken at once")
    return value


def _scan_bytes(text: str, what: str) -> bytes:
    """Return a code as the bytes a scanner would send; ScanError when it has characters no GS1 code has."""
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError as err:
        shown = text[:SHOWN_CHARS]
        raise ScanError(
            f"{what} {shown!r} is not a GS1 code: character {text[err.start]!r} at {err.start} is not in any GS1 "
            "character set"
        ) from err


async def _container(aggregation: Aggregation, identifier: str) -> ContainerRow:
    """Return the container named by #<id>, a scanned label or its identifier; 404 when there is none."""
    text = identifier.strip()
    if text.startswith("#"):
        number = text[1:]
        if not (number.isascii() and number.isdigit()):
            raise _BadRequestError(f'container "{identifier}": after # comes the container number, like #12')
        return await aggregation.container(int(number))
    if text.startswith(("(", "]")) or "\x1d" in text:
        return await aggregation.find(sscc_of(_scan_bytes(text, "container label")))
    if not text:
        raise _BadRequestError("name a container: its SSCC, a scan of its label, or #<id>")
    return await aggregation.find(text)


async def _unit(ledger: SerialLedger, code: str) -> int:
    """Return the serial row id of the unit a scan or HRI names; ScanError when it names none of ours."""
    return await resolve_unit(ledger, _scan_bytes(code, "unit code"))


async def _batch(request: web.Request, ref: str) -> BatchRow:
    return await _ledger(request).batch(ref)


# -- answers ------------------------------------------------------------------------------------


def _unit_rows(conn: sqlite3.Connection, serial_ids: Sequence[int]) -> list[dict[str, Any]]:
    """Return each unit as JSON-able data (id, GTIN, serial, HRI, state), in the order given."""
    rows = {
        serial_id: (gtin, serial, state)
        for serial_id, gtin, serial, state in conn.execute(
            "SELECT id, gtin, serial, state FROM serial WHERE id IN (SELECT value FROM json_each(?))",
            (json.dumps(list(serial_ids)),),
        )
    }
    units = []
    for serial_id in serial_ids:
        gtin, serial, state = rows[serial_id]
        units.append({
            "serial_id": serial_id, "gtin": gtin, "serial": serial, "hri": f"(01){gtin}(21){serial}",
            "state": SerialState(state).label,
        })
    return units


def _view(conn: sqlite3.Connection, container_id: int) -> dict[str, Any]:
    """Return a container with its units, its child containers and its parent, from one snapshot."""
    box = ops.container(conn, container_id)
    held = ops.contents(conn, container_id)
    parent = None if box.parent_id is None else ops.container(conn, box.parent_id)
    return {
        "container": box.as_dict(),
        "parent": None if parent is None else parent.as_dict(),
        "units": _unit_rows(conn, held.serial_ids),
        "containers": [ops.container(conn, child).as_dict() for child in held.container_ids],
    }


async def _view_of(aggregation: Aggregation, container_id: int, **extra: Any) -> web.Response:  # noqa: ANN401 - JSON
    view = await aggregation.store.read(lambda conn: _view(conn, container_id))
    return _json({**extra, **view})


def _event(event: ops.AggregationEvent) -> dict[str, Any]:
    return {
        "id": event.id, "at": event.at, "action": event.action, "container": event.container_id,
        "identifier": event.identifier, "new_identifier": event.new_identifier,
        "serial_ids": list(event.serial_ids), "container_ids": list(event.container_ids),
        "operator": event.operator, "reason": event.reason, "station": event.station,
    }


def _whole(request: web.Request, name: str, default: int, *, least: int, most: int | None = None) -> int:
    """Return a whole-number query option; 400 when it is not one or out of range."""
    text = request.query.get(name)
    if text is None:
        return default
    if not (text.isascii() and text.isdigit()):
        raise _BadRequestError(f"{name} must be a whole number, not {text[:SHOWN_CHARS]!r}")
    value = int(text)
    if value < least or (most is not None and value > most):
        bounds = f"{least} to {most:,}" if most is not None else f"{least} or more"
        raise _BadRequestError(f"{name} is {value:,}; it must be {bounds}")
    return value


# -- handlers -----------------------------------------------------------------------------------


async def _list(request: web.Request) -> web.Response:
    aggregation = _aggregation(request)
    level, state = request.query.get("level"), request.query.get("state")
    if level is not None and level not in LEVELS:
        raise _BadRequestError(f'unknown level "{level}"; the levels are {", ".join(LEVELS)}')
    if state is not None and state not in STATES:
        raise _BadRequestError(f'unknown state "{state}"; the states are {", ".join(STATES)}')
    ref = request.query.get("batch")
    if ref is None:
        batch = await _ledger(request).active_batch()
        if batch is None:
            raise _BadRequestError("no batch is running: name one with ?batch=ID or work order")
    else:
        batch = await _batch(request, ref)
    rows = await aggregation.containers_of_batch(batch.id, level=level, state=state)
    return _json({"batch": batch.as_dict(), "containers": [row.as_dict() for row in rows]})


async def _show(request: web.Request) -> web.Response:
    aggregation = _aggregation(request)
    box = await _container(aggregation, request.match_info["identifier"])
    return await _view_of(aggregation, box.id)


async def _unpack(request: web.Request) -> web.Response:
    aggregation = _aggregation(request)
    box = await _container(aggregation, request.match_info["identifier"])
    body = await _object(request, (*_REWORK_KEYS, "units", "containers"))
    operator, reason = _rework(request, body)
    codes, labels = _texts(body, "units"), _texts(body, "containers")
    serial_ids = None if codes is None else [await _unit(_ledger(request), code) for code in codes]
    children = None if labels is None else [(await _container(aggregation, label)).id for label in labels]
    record = {"action": "aggregation.unpack", "units": serial_ids, "containers": children, "reason": reason}
    signature, _ = await _sign_rework(
        request, body, box, record, what=f"unpacking {box.name}", change=lambda conn, now: ops.unpack(
            conn, box.id, serial_ids=serial_ids, containers=children, now=now, operator=operator, reason=reason))
    return await _view_of(aggregation, box.id, signature=signing.signature_json(signature))


async def _replace(request: web.Request) -> web.Response:
    aggregation = _aggregation(request)
    box = await _container(aggregation, request.match_info["identifier"])
    body = await _object(request, (*_REWORK_KEYS, "old", "new"))
    operator, reason = _rework(request, body)
    old, new = _text(body, "old"), _text(body, "new")
    ledger = _ledger(request)
    old_id, new_id = await _unit(ledger, old), await _unit(ledger, new)
    record = {"action": "aggregation.replace", "old": old_id, "new": new_id, "reason": reason}
    signature, _ = await _sign_rework(
        request, body, box, record, what=f"replacing a unit of {box.name}",
        change=lambda conn, now: ops.replace(conn, box.id, old_id, new_id, now=now, operator=operator, reason=reason))
    return await _view_of(aggregation, box.id, signature=signing.signature_json(signature))


async def _destroy(request: web.Request) -> web.Response:
    aggregation = _aggregation(request)
    box = await _container(aggregation, request.match_info["identifier"])
    body = await _object(request, _REWORK_KEYS)
    operator, reason = _rework(request, body)
    record = {"action": "aggregation.destroy", "reason": reason}
    signature, destroyed = await _sign_rework(
        request, body, box, record, what=f"destroying {box.name}",
        change=lambda conn, now: ops.destroy_container(conn, box.id, now=now, operator=operator, reason=reason))
    units = await aggregation.store.read(lambda conn: _unit_rows(conn, destroyed.serial_ids))
    return await _view_of(aggregation, box.id, destroyed={"units": units, "containers": list(destroyed.container_ids)},
                          signature=signing.signature_json(signature))


async def _void_label(request: web.Request) -> web.Response:
    aggregation = _aggregation(request)
    box = await _container(aggregation, request.match_info["identifier"])
    body = await _object(request, _REWORK_KEYS)
    operator, reason = _rework(request, body)
    record = {"action": "aggregation.void-label", "reason": reason}
    signature, sscc = await _sign_rework(
        request, body, box, record, what=f"voiding the label of {box.name}",
        change=lambda conn, now: ops.void_label(conn, box.id, now=now, reason=reason, operator=operator))
    return await _view_of(aggregation, box.id, voided=box.identifier, sscc=sscc,
                          signature=signing.signature_json(signature))


async def _close(request: web.Request) -> web.Response:
    aggregation = _aggregation(request)
    box = await _container(aggregation, request.match_info["identifier"])
    operator, reason = _rework(request, await _object(request, _CHANGE_KEYS))
    close_short = request.app[CLOSE_SHORT]
    if close_short is None:
        await aggregation.close_container(box.id, operator=operator, partial_reason=reason)
        return await _view_of(aggregation, box.id)
    # The station filling it prints and verifies its label first; the container closes once the label is good.
    handed = await close_short(box, operator, reason)
    if handed.state == "closed":
        return await _view_of(aggregation, box.id)
    return await _view_of(aggregation, box.id, note=LABEL_PENDING)


async def _scan_case(request: web.Request) -> web.Response:
    """Scan the case at the case-scan station now; a short case names its count, operator and reason."""
    _aggregation(request)
    scan_case = request.app[SCAN_CASE]
    if scan_case is None:
        raise _BadRequestError("this line does not pack cases by case scan")
    raw = await _body(request)
    body = await _object(request, ("expected", "operator", "reason")) if raw.strip() else {}
    expected = body.get("expected")
    if expected is not None and (not isinstance(expected, int) or isinstance(expected, bool) or expected < 1):
        raise _BadRequestError(f"expected must be a whole number of units, not {json.dumps(expected)}")
    operator: str | None = operator_of(request, body.get("operator"))
    reason = None
    if expected is not None:
        operator, reason = _rework(request, body)  # a short case is closed by an operator, with a reason
    outcome = await scan_case(expected=expected, operator=operator, reason=reason)
    return _json(outcome.as_dict())


async def _destroy_unit(request: web.Request) -> web.Response:
    aggregation = _aggregation(request)
    body = await _object(request, (*_REWORK_KEYS, "unit"))
    operator, reason = _rework(request, body)
    serial_id = await _unit(_ledger(request), _text(body, "unit"))
    record = {"action": "aggregation.destroy-unit", "unit": serial_id, "reason": reason}
    signature, destroyed = await _sign_rework(
        request, body, None, record, what="destroying a unit",
        change=lambda conn, now: ops.destroy_unit(conn, serial_id, now=now, operator=operator, reason=reason))
    units = await aggregation.store.read(lambda conn: _unit_rows(conn, destroyed.serial_ids))
    return _json({"destroyed": {"units": units, "containers": list(destroyed.container_ids)},
                  "signature": signing.signature_json(signature)})


async def _events(request: web.Request) -> web.Response:
    aggregation = _aggregation(request)
    after = _whole(request, "after", 0, least=0)
    limit = _whole(request, "limit", EVENTS_PAGE, least=1, most=MAX_EVENTS_PAGE)
    batch = await _batch(request, request.match_info["ref"])
    events = await aggregation.events(batch.id, after=after)
    page = events[:limit]
    return _json({
        "batch": batch.as_dict(),
        "events": [_event(event) for event in page],
        "next_after": page[-1].id if page else after,
        "more": len(events) > limit,
    })
