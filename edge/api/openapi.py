"""The API's OpenAPI 3.1 description, generated from the route table, so that it names every route as served.

Each operation says who may call it (``x-permission``: a permission of the caller's role, or none for public
routes) and, for signed actions, the signature it takes (``x-signature``: permission and meaning).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Final

from aiohttp import web

from edge import __version__
from edge.api import routes
from edge.control.permissions import SIGNED, Permission

if TYPE_CHECKING:
    from edge.api.routes import Route

OPENAPI_VERSION: Final = "3.1.0"
_PARAM = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(?::[^}]*)?\}")
_ERROR = {"$ref": "#/components/schemas/Error"}
OUTSIDE: Final = {
    ("GET", "/metrics"): {"summary": "Prometheus metrics (text exposition format)", "tags": ["line"],
                          "security": [], "responses": {"200": {"description": "the metrics",
                                                                "content": {"text/plain": {}}}}},
}
"""Routes served outside the route table that the description names all the same."""


def add_routes(app: web.Application, api: str) -> None:
    """Serve the description at api/openapi.json."""
    routes.add(app, "GET", f"{api}/openapi.json", _serve, Permission.VIEW, "This description (OpenAPI 3.1)",
               tag="line")


async def _serve(request: web.Request) -> web.Response:
    return web.json_response(document(request.app))


def document(app: web.Application) -> dict[str, Any]:
    """Return the OpenAPI description of every route app serves."""
    paths: dict[str, dict[str, Any]] = {}
    table = routes.table(app)
    for route in table.values():
        paths.setdefault(_openapi_path(route.path), {})[route.method.lower()] = _operation(route)
    for resource in app.router.resources():
        for served in resource:
            key = (served.method, resource.canonical)
            if key in OUTSIDE and key not in table:
                paths.setdefault(resource.canonical, {})[served.method.lower()] = OUTSIDE[key]
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "Lineside line controller API",
            "version": __version__,
            "description": (
                "Log in with POST /api/v1/session, then send the token as `Authorization: Bearer <token>` (or "
                "let a browser keep the session cookie). Each operation names the permission it needs "
                "(x-permission); signed actions (x-signature) take the user's password again in the body as "
                "`password` and answer with the signature and its manifest. Errors are "
                '`{"error": "...", "issues": [...]}`.'),
        },
        "security": [{"bearer": []}, {"cookie": []}],
        "paths": dict(sorted(paths.items())),
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "cookie": {"type": "apiKey", "in": "cookie", "name": "lineside_session"},
            },
            "schemas": {
                "Error": {"type": "object", "required": ["error", "issues"], "properties": {
                    "error": {"type": "string"}, "issues": {"type": "array", "items": {"type": "string"}},
                    "permission": {"type": "string", "description": "403: the permission the role lacks"},
                    "signature": {"type": "object", "description": "401 of a signed action: the signature wanted",
                                  "properties": {"permission": {"type": "string"}, "meaning": {"type": "string"}}},
                }},
            },
        },
    }


def _openapi_path(path: str) -> str:
    return _PARAM.sub(lambda m: "{" + m.group(1) + "}", path)


def _operation(route: Route) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "summary": route.summary,
        "tags": [route.tag],
        "operationId": _operation_id(route),
        "responses": {str(route.status): {"description": "done", "content": {route.answer: {}}}},
    }
    if route.notes:
        operation["description"] = route.notes
    parameters = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"},
         "description": route.extra.get(name, name)}
        for name in _PARAM.findall(route.path)
    ]
    parameters += [{"name": name, "in": "query", "required": False, "schema": {"type": "string"},
                    "description": text} for name, text in route.query]
    if parameters:
        operation["parameters"] = parameters
    if route.body is not None:
        operation["requestBody"] = {"required": bool(route.body.get("required")),
                                    "content": {route.body_type: {"schema": route.body}}}
    elif route.body_type != "application/json":
        operation["requestBody"] = {"required": True, "content": {route.body_type: {}}}
    errors = {"400": "bad request", "404": "not found", "409": "refused by the line's rules", "503": "unavailable"}
    if route.access == routes.PUBLIC:
        operation["security"] = []
    else:
        errors["401"] = "no session, or (x-signature) the signature's password is missing or refused"
        if isinstance(route.access, Permission):
            operation["x-permission"] = route.access.value
            errors["403"] = "the role lacks x-permission"
    if route.signed is not None:
        operation["x-signature"] = {"permission": route.signed.value, "meaning": SIGNED[route.signed]}
    for status, text in errors.items():
        operation["responses"].setdefault(status, {"description": text,
                                                   "content": {"application/json": {"schema": _ERROR}}})
    return operation


def _operation_id(route: Route) -> str:
    words = re.findall(r"[A-Za-z0-9]+", _PARAM.sub(lambda m: "by-" + m.group(1), route.path.removeprefix("/api/v1")))
    return "_".join([route.method.lower(), *words]) or route.method.lower()
