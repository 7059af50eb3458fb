"""The local web HMI: a page, its script and its style, served from this package at /hmi by the API application.

It is served by the same application as the API, so the page and the API share one origin: the session cookie
(HttpOnly, SameSite=Strict) and the live event stream work without CORS, and the daemon opens no second web
stack. The daemon listens for it on hmi.host:hmi.port as well as on the API's address (edge.api.server), so a
panel on the line network reaches it while scripts keep the API on loopback. No build step, no CDN: the files
here are what the browser gets, and the Content-Security-Policy lets the page load nothing else.
"""

from __future__ import annotations

from importlib import resources
from typing import Final

from aiohttp import web

from edge.api import routes

FILES: Final = {
    "index.html": "text/html",
    "hmi.js": "text/javascript",
    "hmi.css": "text/css",
}
"""Every file the HMI serves, with its type; nothing else under /hmi is served."""

ROOT: Final = "/hmi"
CSP: Final = ("default-src 'self'; img-src 'self'; style-src 'self'; script-src 'self'; connect-src 'self'; "
              "frame-ancestors 'none'; form-action 'self'; base-uri 'none'; object-src 'none'")


def add_routes(app: web.Application) -> None:
    """Serve the HMI's files under /hmi (public: the page logs in through the API), and / to it."""
    add = routes.add
    add(app, "GET", "/", _to_hmi, routes.PUBLIC, "The web HMI's address: redirects to /hmi/", tag="hmi",
        answer="text/html", status=302)
    add(app, "GET", ROOT, _to_hmi, routes.PUBLIC, "Redirects to /hmi/", tag="hmi", answer="text/html", status=302)
    add(app, "GET", f"{ROOT}/", _file, routes.PUBLIC, "The web HMI (login, line state, batches, alarms)", tag="hmi",
        answer="text/html")
    add(app, "GET", f"{ROOT}/{{name}}", _file, routes.PUBLIC, "The HMI's script and style", tag="hmi",
        answer="text/plain", extra={"name": ", ".join(FILES)})


async def _to_hmi(request: web.Request) -> web.Response:
    del request
    raise web.HTTPFound(f"{ROOT}/")


async def _file(request: web.Request) -> web.Response:
    name = request.match_info.get("name", "index.html")
    content_type = FILES.get(name)
    if content_type is None:
        raise web.HTTPNotFound(text=f"the HMI has no file {name[:60]!r}")
    body = resources.files(__package__).joinpath(name).read_bytes()
    return web.Response(body=body, content_type=content_type, charset="utf-8",
                        headers={"Content-Security-Policy": CSP, "Cache-Control": "no-cache"})
