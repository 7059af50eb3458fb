"""The API's one table of routes: what each route is, who may call it and what it takes.

Routing, authorization (edge.api.auth) and the OpenAPI description (edge.api.openapi) all read this table, so a
route cannot be served without an access rule, nor described differently from how it is served.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from aiohttp import web

from edge.control.permissions import SIGNED, Permission

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Access = Permission | Literal["public", "session"]
"""A permission the user's role must have; "session": any logged-in user; "public": no login at all."""

PUBLIC: Final = "public"
SESSION: Final = "session"


@dataclass(frozen=True, slots=True)
class Route:
    """One route as served and described."""

    method: str
    path: str
    handler: Handler
    access: Access
    summary: str
    tag: str
    body: dict[str, Any] | None = None
    """JSON Schema of the request body (None: no JSON body)."""
    body_type: str = "application/json"
    signed: Permission | None = None
    """The signed action this route performs: its body carries the password that signs it (SIGNED)."""
    answer: str = "application/json"
    """Media type of a successful answer."""
    status: int = 200
    query: tuple[tuple[str, str], ...] = ()
    """Query parameters taken: (name, description)."""
    notes: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def meaning(self) -> str | None:
        """The meaning the signature of this route's action carries, if it is signed."""
        return None if self.signed is None else SIGNED[self.signed]


ROUTES: web.AppKey[dict[tuple[str, str], Route]] = web.AppKey("routes", dict)


def table(app: web.Application) -> dict[tuple[str, str], Route]:
    """Return app's route table, creating it empty on first use."""
    if ROUTES not in app:
        app[ROUTES] = {}
    return app[ROUTES]


def add(  # noqa: PLR0917 - a route reads as one line: method, path, handler, who, what
    app: web.Application,
    method: str,
    path: str,
    handler: Handler,
    access: Access,
    summary: str,
    *,
    tag: str,
    **details: Any,  # noqa: ANN401 - the optional Route fields, by name
) -> Route:
    """Serve handler at method path with the access rule given, and enter it in the table; return the entry."""
    route = Route(method, path, handler, access, summary, tag, **details)
    routes = table(app)
    if (method, path) in routes:
        raise ValueError(f"{method} {path} is in the route table twice")
    if route.signed is not None and route.signed not in SIGNED:
        raise ValueError(f"{method} {path}: {route.signed.value} is not a signed action")
    routes[method, path] = route
    if method == "GET":
        app.router.add_get(path, handler)  # HEAD as well: it is checked as the GET
    else:
        app.router.add_route(method, path, handler)
    return route


def lookup(request: web.Request) -> Route | None:
    """Return the table's entry for the route request matched (None for no match or a route not in the table)."""
    resource = request.match_info.route.resource
    if resource is None:
        return None
    method = "GET" if request.method == "HEAD" else request.method
    return request.app[ROUTES].get((method, resource.canonical))
