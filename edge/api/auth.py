"""Who is calling: sessions (a cookie or a bearer token), the one access check per route, and log in and out.

Every route's access rule is in the route table (edge.api.routes); the middleware here applies it before any
handler runs: no session is a 401, a role without the route's permission a 403 naming the permission (audited as
access.refused). Only the routes marked public (health, metrics, the HMI's files, logging in) go without a session.

The browser HMI uses the HttpOnly, SameSite=Strict cookie set at login, which its scripts cannot read; scripts and
the command line send ``Authorization: Bearer <token>``. A change sent with the cookie from a page of another
origin is refused besides (its Origin header names that page), for browsers that do not honour SameSite.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Final

import structlog
from aiohttp import web

from edge.api import routes
from edge.control.accounts import MAX_PASSWORD_LENGTH, AuthError
from edge.control.permissions import ROLE_PERMISSIONS, SIGNED, Actor, NotAllowedError, authorize
from edge.store.runs import iso_utc
from edge.store.store import utc_now

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from edge.control.accounts import Accounts, Sessions
    from edge.control.audit import AuditTrail
    from edge.control.signatures import Signatures

_LOG = structlog.get_logger("lineside.api")

COOKIE: Final = "lineside_session"
MAX_NAME_CHARS: Final = 64
"""A user name is at most 64 characters (edge.control.accounts.NAME)."""
LOGIN_BODY_BYTES: Final = 4096
"""A login is a name and a password: a larger body is not one."""
CONCURRENT_LOGINS: Final = 2
"""Password checks running at once: each is ~50 ms of argon2id on one core, and the line PC has two."""
LOGIN_KEYS: Final = ("name", "password", "via")
LOGIN_READ_TIMEOUT_S: Final = 10.0
"""A client gets this long to send a login: a stalled one must not hold a handler."""
SAFE_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})

ACTOR: web.RequestKey[Actor] = web.RequestKey("actor", Actor)
TOKEN: web.RequestKey[str] = web.RequestKey("token", str)


@dataclass(frozen=True, slots=True)
class Auth:
    """The accounts, sessions, signatures and audit trail the API authenticates and signs with."""

    accounts: Accounts
    sessions: Sessions
    signatures: Signatures
    audit: AuditTrail


AUTH: web.AppKey[Auth] = web.AppKey("auth", Auth)


class AuthRequiredError(Exception):
    """The request has no valid session (a 401 with this message)."""


def setup(app: web.Application, auth: Auth, api: str) -> None:
    """Keep auth on app and serve the session routes under api (like /api/v1)."""
    app[AUTH] = auth
    app[_LOGINS] = asyncio.Semaphore(CONCURRENT_LOGINS)
    streams = app[_STREAMS] = LiveStreams()
    app.on_shutdown.append(streams.end_all)
    body = {
        "type": "object", "additionalProperties": False, "required": ["name", "password"],
        "properties": {"name": {"type": "string", "maxLength": MAX_NAME_CHARS},
                       "password": {"type": "string", "maxLength": MAX_PASSWORD_LENGTH},
                       "via": {"enum": ["hmi", "api"], "description": "where the user logs in (default api)"}},
    }
    routes.add(app, "POST", f"{api}/session", _login, routes.PUBLIC, "Log in: a session token and its cookie",
               tag="session", body=body, notes="401 with the reason (wrong name or password, locked, disabled).")
    routes.add(app, "GET", f"{api}/session", _whoami, routes.SESSION,
               "The session's user, role, permissions and expiry", tag="session")
    routes.add(app, "DELETE", f"{api}/session", _logout, routes.SESSION, "Log out (audited)", tag="session")


class LiveStreams:
    """The event streams open per session, so that a logout or the server's shutdown ends them at once."""

    def __init__(self) -> None:
        self._streams: dict[str, set[asyncio.Event]] = {}
        self._closing = False

    def open(self, token: str) -> asyncio.Event:
        """Register a stream of the session token; return the event set when it must end."""
        ended = asyncio.Event()
        if self._closing:
            ended.set()
        self._streams.setdefault(token, set()).add(ended)
        return ended

    def close(self, token: str, ended: asyncio.Event) -> None:
        """Forget a stream that ended."""
        streams = self._streams.get(token)
        if streams is not None:
            streams.discard(ended)
            if not streams:
                del self._streams[token]

    def end(self, token: str) -> None:
        """End every stream of the session token (it logged out)."""
        for ended in self._streams.pop(token, set()):
            ended.set()

    async def end_all(self, app: web.Application) -> None:
        """End every stream (the server shuts down); an on_shutdown handler."""
        del app
        self._closing = True
        for token in list(self._streams):
            self.end(token)


_LOGINS: web.AppKey[asyncio.Semaphore] = web.AppKey("logins", asyncio.Semaphore)
_STREAMS: web.AppKey[LiveStreams] = web.AppKey("streams", LiveStreams)


def live_streams(app: web.Application) -> LiveStreams:
    """Return the registry of app's open event streams."""
    return app[_STREAMS]


def actor_of(request: web.Request) -> Actor:
    """Return the logged-in user of a request the middleware let through with a session."""
    return request[ACTOR]


def operator_of(request: web.Request, claimed: object) -> str:
    """Return the logged-in user's name, recorded with the change; 400 when the client named someone else.

    A client may still send an operator (older scripts do): the same name is taken, another is refused rather
    than recorded under the wrong person or silently replaced.
    """
    actor = actor_of(request)
    if claimed is not None and (not isinstance(claimed, str) or claimed.strip().casefold() != actor.name.casefold()):
        shown = claimed if isinstance(claimed, str) else json.dumps(claimed)
        raise web.HTTPBadRequest(text=(
            f"you are logged in as {actor.name}, and a change is recorded under the user who makes it; operator "
            f"{shown[:MAX_NAME_CHARS]!r} is not you: leave operator out"))
    return actor.name


def session_answer(auth: Auth, actor: Actor, *, token: str | None = None) -> dict[str, Any]:
    """Return what a client learns of a session: user, role, permissions, signed actions and expiry."""
    policy = auth.accounts.policy
    now = utc_now()
    answer: dict[str, Any] = {
        "name": actor.name,
        "role": actor.role.value,
        # Idle expiry, moved on by every request; the session also ends session_max_hours after the login.
        "expires_at": iso_utc(now + timedelta(minutes=policy.session_idle_minutes)),
        "idle_minutes": policy.session_idle_minutes,
        "permissions": sorted(p.value for p in ROLE_PERMISSIONS[actor.role]),
        "signed": {p.value: meaning for p, meaning in SIGNED.items()},
    }
    if token is not None:
        answer = {"token": token, **answer}
    return answer


@web.middleware
async def authenticate(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Apply the route table's access rule: public, any session, or a permission of the user's role."""
    route = routes.lookup(request)
    if route is None:
        resource = request.match_info.route.resource
        if resource is None or resource.canonical in routes_public_paths():
            return await handler(request)  # no such route (404, 405), or one served outside the table
        _LOG.error("route without an access rule refused", method=request.method, path=request.path)
        raise web.HTTPForbidden(text=f"{request.method} {resource.canonical} has no access rule: refused")
    if route.access == routes.PUBLIC:
        return await handler(request)
    auth = request.app[AUTH]
    token, from_cookie = _token(request)
    actor = None if token is None else auth.sessions.actor(token)
    if token is None or actor is None:
        why = "log in first" if token is None else "the session has ended (logged out, expired or replaced)"
        raise AuthRequiredError(f"{why}: POST /api/v1/session with your name and password")
    if from_cookie and request.method not in SAFE_METHODS and not _same_origin(request):
        raise web.HTTPForbidden(text="a change sent from a page of another origin is refused")
    request[ACTOR] = actor
    request[TOKEN] = token
    if route.access != routes.SESSION:
        try:
            authorize(actor, route.access)
        except NotAllowedError as err:
            await auth.audit.record(actor.name, "access.refused", request.path[:200], {
                "wanted": f"{route.method} {route.path}", "permission": route.access.value, "role": actor.role.value})
            return web.json_response({"error": str(err), "issues": [], "permission": route.access.value}, status=403)
    return await handler(request)


def routes_public_paths() -> frozenset[str]:
    """Paths served outside the route table that need no session (the metrics scrape)."""
    return frozenset({"/metrics"})


def _token(request: web.Request) -> tuple[str | None, bool]:
    """Return the session token (bearer header first, then the cookie) and whether it came from the cookie."""
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip(), False
    cookie = request.cookies.get(COOKIE)
    return (cookie, True) if cookie else (None, False)


def _same_origin(request: web.Request) -> bool:
    origin = request.headers.get("Origin")
    return origin is None or origin == f"{request.scheme}://{request.host}"


async def _login(request: web.Request) -> web.Response:
    auth = request.app[AUTH]
    size = request.content_length
    if size is not None and size > LOGIN_BODY_BYTES:
        raise web.HTTPRequestEntityTooLarge(max_size=LOGIN_BODY_BYTES, actual_size=size)
    try:
        async with asyncio.timeout(LOGIN_READ_TIMEOUT_S):
            raw = await request.read()
    except TimeoutError as err:
        raise web.HTTPRequestTimeout(text="the login did not arrive in time") from err
    if len(raw) > LOGIN_BODY_BYTES:
        raise web.HTTPRequestEntityTooLarge(max_size=LOGIN_BODY_BYTES, actual_size=len(raw))
    try:
        body = json.loads(raw or b"null")
    except ValueError as err:
        raise web.HTTPBadRequest(text=f"the body is not JSON: {err}") from err
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text='send {"name": "...", "password": "..."}')
    unknown = sorted(set(body) - set(LOGIN_KEYS))
    if unknown:
        raise web.HTTPBadRequest(text=f"unknown key(s) {', '.join(unknown)}; the body takes {', '.join(LOGIN_KEYS)}")
    name, password, via = body.get("name"), body.get("password"), body.get("via", "api")
    if not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME_CHARS:
        raise web.HTTPBadRequest(text="give your user name as name")
    if not isinstance(password, str) or not password or len(password) > MAX_PASSWORD_LENGTH:
        raise web.HTTPBadRequest(text="give your password as password")
    if via not in ("hmi", "api"):
        raise web.HTTPBadRequest(text='via is "hmi" or "api"')
    async with request.app[_LOGINS]:
        actor = await auth.accounts.authenticate(name.strip(), password, via=via)
    token = auth.sessions.open(actor)
    _LOG.info("logged in", user=actor.name, role=actor.role.value, via=via)
    response = web.json_response(session_answer(auth, actor, token=token))
    response.set_cookie(COOKIE, token, httponly=True, samesite="Strict", path="/", secure=request.secure,
                        max_age=auth.accounts.policy.session_max_hours * 3600)
    return response


async def _whoami(request: web.Request) -> web.Response:
    return web.json_response(session_answer(request.app[AUTH], actor_of(request)))


async def _logout(request: web.Request) -> web.Response:
    auth, actor = request.app[AUTH], actor_of(request)
    auth.sessions.close(request[TOKEN])
    live_streams(request.app).end(request[TOKEN])
    await auth.audit.record(actor.name, "user.logout", actor.name, {"via": "api"})
    _LOG.info("logged out", user=actor.name)
    response = web.json_response({"name": actor.name, "logged_out": True})
    response.del_cookie(COOKIE, path="/")
    return response


def auth_error_body(err: AuthError | AuthRequiredError) -> dict[str, Any]:
    """Return the 401 body of a refused login or a missing session."""
    kind = err.kind if isinstance(err, AuthError) else "session"
    return {"error": str(err), "issues": [], "kind": kind}
