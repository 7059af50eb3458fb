"""The line control routes: the PackML status and commands, unit mode, alarms, live events, and reject images.

GET  /api/v1/control                               the line's status (state, commands possible, batch, counters)
POST /api/v1/control/commands/{start|stop|...}     {"reason"?}: a PackML command, answered once the line settles
POST /api/v1/control/mode                          {"mode": "production"|"maintenance"|"manual"}
POST /api/v1/control/alarms/{id}/acknowledge
GET  /api/v1/control/events                        server-sent events: the status on every change, heartbeats
GET  /api/v1/rejects, /api/v1/rejects/{name}       the latest reject images and each image

Each command needs its own permission (edge.control.line.PERMISSIONS), checked by the route table like every
route. The events stream is bounded: the line control caps the live views, a client that stops reading is
dropped after SEND_TIMEOUT_S, every stream ends after STREAM_MAX_S (the browser reconnects) and all end when the
server shuts down or the session logs out.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from functools import partial
from typing import TYPE_CHECKING, Any, Final

import structlog
from aiohttp import web

from edge.api import routes
from edge.api.app import _BadRequestError, _body, _json, _options, _text_option
from edge.api.auth import TOKEN, actor_of, live_streams, operator_of
from edge.api.errors import error_body, http_status
from edge.control.line import PERMISSIONS, LineControlError, UnknownAlarmError
from edge.control.packml import Command, UnitMode
from edge.control.permissions import NotAllowedError, Permission
from edge.errors import EdgeError

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, AsyncIterator, Callable
    from pathlib import Path

    from edge.control.line import LineControl

_LOG = structlog.get_logger("lineside.api")

CONTROL: web.AppKey[Callable[[], LineControl | None]] = web.AppKey("control")
REJECTS: web.AppKey[Path | None] = web.AppKey("rejects")

HEARTBEAT_S: Final = 15.0
"""A comment line this often keeps proxies and the browser from calling a quiet stream dead."""
SEND_TIMEOUT_S: Final = 10.0
"""A client that takes longer than this to accept one event has stopped reading: its stream ends."""
STREAM_MAX_S: Final = 600.0
"""Longest one stream lasts; the browser's EventSource reconnects at once, through the session check again."""
RETRY_MS: Final = 2000
"""How long a browser waits before reconnecting a stream that ended."""
REJECTS_SHOWN: Final = 12
MAX_REJECTS_SHOWN: Final = 100
REJECT_NAME: Final = re.compile(r"(?P<at>\d{8}T\d{6})-(?P<product>\d{1,12})-(?P<reason>[A-Za-z0-9_.-]{1,64})\.png")
"""How RejectImages names a frame: when, the pack's sequence number, the reject reason."""
MODE_KEYS: Final = ("mode",)
MAX_REASON_CHARS: Final = 500
_COMMANDS: Final = {command.title.lower(): command for command in Command}


def add_routes(app: web.Application, api: str, control: Callable[[], LineControl | None], rejects: Path | None) -> None:
    """Serve the control and reject routes under api, over the line control (None while it does not run)."""
    app[CONTROL] = control
    app[REJECTS] = rejects
    add = partial(routes.add, app, tag="control")
    root = f"{api}/control"
    add("GET", root, _status, Permission.VIEW, "The line's PackML state, the commands possible now, batch and counters")
    body = {"type": "object", "additionalProperties": False,
            "properties": {"reason": {"type": "string", "maxLength": MAX_REASON_CHARS},
                           "operator": {"type": "string", "description": "if sent, the logged-in user's name"}}}
    for name, command in _COMMANDS.items():
        add("POST", f"{root}/commands/{name}", partial(_command, command), PERMISSIONS[command],
            f"PackML {command.title}: answered with the state the line reached", body=body)
    add("POST", f"{root}/mode", _mode, Permission.UNIT_MODE,
        "Change the unit mode (only in Stopped, Idle or Aborted)",
        body={"type": "object", "additionalProperties": False, "required": ["mode"],
              "properties": {"mode": {"enum": [m.name.lower() for m in UnitMode]}}})
    add("POST", f"{root}/alarms/{{alarm}}/acknowledge", _acknowledge, Permission.ALARM_ACK, "Acknowledge an alarm",
        extra={"alarm": "alarm id"})
    add("GET", f"{root}/events", _events, Permission.VIEW,
        "Server-sent events: the status (event: status) now and on every change, with heartbeats",
        answer="text/event-stream")
    add("GET", f"{api}/rejects", _rejects, Permission.VIEW, "The latest reject images, newest first",
        query=(("limit", f"how many (default {REJECTS_SHOWN}, at most {MAX_REJECTS_SHOWN})"),))
    add("GET", f"{api}/rejects/{{name}}", _reject_image, Permission.VIEW, "One reject image (PNG)",
        answer="image/png", extra={"name": "the image's name from /rejects"})


def _control(request: web.Request) -> LineControl:
    control = request.app[CONTROL]()
    if control is None:
        raise web.HTTPServiceUnavailable(text="the line control is not running (the daemon is starting or stopping)")
    return control


async def _status(request: web.Request) -> web.Response:
    return _json(_control(request).status())


async def _command(command: Command, request: web.Request) -> web.Response:
    control = _control(request)
    body = await _options(request)
    if body.get("password") is not None:
        raise _BadRequestError("line commands are not signed: send no password")
    operator_of(request, body.get("operator"))
    reason = _text_option(request, body, "reason", MAX_REASON_CHARS)
    try:
        state = await control.command(command, actor_of(request), reason=reason)
    except EdgeError as err:
        return _refused(err, control)
    return _json({"command": command.title, "state": state.title, "status": control.status()})


def _refused(err: EdgeError, control: LineControl) -> web.Response:
    """Answer a refused command or mode change: 409 with the state the line is in (503 when it does not run)."""
    if isinstance(err, LineControlError) and not isinstance(err, UnknownAlarmError):
        raise web.HTTPServiceUnavailable(text=str(err)) from err
    if isinstance(err, NotAllowedError) or http_status(err) is not None:
        raise err  # the error middleware's answer: 403, or the domain's own status
    # IllegalCommandError, and the interlocks (a Start outside Production mode, a mode change while producing).
    return _json({**error_body(err), "state": control.state.title}, 409)


async def _mode(request: web.Request) -> web.Response:
    control = _control(request)
    raw = await _body(request)
    try:
        body = json.loads(raw or b"null")
    except ValueError as err:
        raise _BadRequestError(f"the body is not JSON: {err}") from err
    modes = [m.name.lower() for m in UnitMode]
    if not isinstance(body, dict) or set(body) - set(MODE_KEYS) or str(body.get("mode", "")).lower() not in modes:
        raise _BadRequestError(f'send {{"mode": "..."}} with one of {", ".join(modes)}')
    mode = UnitMode[str(body["mode"]).upper()]
    try:
        changed = await control.set_mode(mode, actor_of(request))
    except EdgeError as err:
        return _refused(err, control)
    return _json({"mode": changed.name.capitalize(), "status": control.status()})


async def _acknowledge(request: web.Request) -> web.Response:
    control = _control(request)
    text = request.match_info["alarm"]
    if not (text.isascii() and text.isdigit()) or len(text) > 12:
        raise _BadRequestError(f"an alarm is named by its number, not {text[:20]!r}")
    try:
        alarm = await control.acknowledge(int(text), actor_of(request))
    except UnknownAlarmError as err:
        raise web.HTTPNotFound(text=str(err)) from err
    return _json({"alarm": alarm.as_dict()})


async def _events(request: web.Request) -> web.StreamResponse:
    """Stream the status as server-sent events until the client goes, the stream's time is up or the server stops."""
    control = _control(request)
    updates: AsyncGenerator[dict[str, Any], None] = control.subscribe()  # type: ignore[assignment]
    async with contextlib.aclosing(updates):
        try:
            first = await anext(updates)
        except LineControlError as err:
            raise web.HTTPServiceUnavailable(text=str(err)) from err
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "X-Accel-Buffering": "no"})
        await response.prepare(request)
        streams = live_streams(request.app)
        ended = streams.open(request[TOKEN])
        try:
            await _send(response, f"retry: {RETRY_MS}\n\n")
            await _send(response, _event(first))
            async with asyncio.timeout(STREAM_MAX_S), contextlib.aclosing(_chunks(updates, ended)) as chunks:
                async for chunk in chunks:
                    await _send(response, chunk)
        except (TimeoutError, ConnectionResetError):
            pass  # the stream's time is up (the browser reconnects), or the client stopped reading or left
        finally:
            streams.close(request[TOKEN], ended)
    return response


async def _chunks(updates: AsyncIterator[dict[str, Any]], ended: asyncio.Event) -> AsyncGenerator[str, None]:
    """Yield an event per status, a heartbeat when none came for HEARTBEAT_S; stop once ended is set."""
    async def next_update() -> dict[str, Any]:
        return await anext(updates)

    # The update being waited for is kept across heartbeats: cancelling it would end the subscription.
    waiting: asyncio.Task[dict[str, Any]] | None = None
    stop = asyncio.ensure_future(ended.wait())
    try:
        while True:
            if waiting is None:
                waiting = asyncio.ensure_future(next_update())
            done, _ = await asyncio.wait({waiting, stop}, timeout=HEARTBEAT_S, return_when=asyncio.FIRST_COMPLETED)
            if stop in done:
                return
            if waiting in done:
                status, waiting = waiting.result(), None
                yield _event(status)
            else:
                yield ": heartbeat\n\n"
    finally:
        for task in (waiting, stop):
            if task is not None:
                task.cancel()
        await asyncio.gather(*(t for t in (waiting, stop) if t is not None), return_exceptions=True)


def _event(status: dict[str, Any]) -> str:
    return f"event: status\ndata: {json.dumps(status, ensure_ascii=False, separators=(',', ':'))}\n\n"


async def _send(response: web.StreamResponse, text: str) -> None:
    try:
        async with asyncio.timeout(SEND_TIMEOUT_S):
            await response.write(text.encode("utf-8"))
    except TimeoutError as err:
        raise ConnectionResetError("the client stopped reading the stream") from err


# -- reject images ---------------------------------------------------------------------------------------


async def _rejects(request: web.Request) -> web.Response:
    text = request.query.get("limit", str(REJECTS_SHOWN))
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= MAX_REJECTS_SHOWN:
        raise _BadRequestError(f"limit is a whole number from 1 to {MAX_REJECTS_SHOWN}")
    directory = request.app[REJECTS]
    found = [] if directory is None else await asyncio.to_thread(_latest, directory, int(text))
    return _json({"rejects": found})


def _latest(directory: Path, limit: int) -> list[dict[str, Any]]:
    """In a thread: the newest reject images' metadata (the directory is bounded by the inspection's byte budget)."""
    images = []
    with contextlib.suppress(FileNotFoundError):
        for path in directory.iterdir():
            match = REJECT_NAME.fullmatch(path.name)
            if match is None:
                continue
            try:
                stat = path.stat()
            except FileNotFoundError:
                continue  # pruned meanwhile
            images.append((stat.st_mtime, path.name, stat.st_size, match))
    images.sort(reverse=True)
    return [{
        "name": name, "url": f"rejects/{name}", "product": int(match["product"]), "reason": match["reason"],
        "at": f"{match['at'][:4]}-{match['at'][4:6]}-{match['at'][6:8]}T{match['at'][9:11]}:{match['at'][11:13]}:"
              f"{match['at'][13:15]}", "bytes": size,
    } for _, name, size, match in images[:limit]]


async def _reject_image(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    directory = request.app[REJECTS]
    # Only names the inspection gives its images: never a path, so nothing outside the directory is served.
    if directory is None or REJECT_NAME.fullmatch(name) is None:
        raise web.HTTPNotFound(text=f"no reject image {name[:80]!r}")
    path = directory / name
    if not await asyncio.to_thread(path.is_file):
        raise web.HTTPNotFound(text=f"no reject image {name!r} (it may have made room for newer ones)")
    return web.FileResponse(path, headers={"Content-Type": "image/png", "Cache-Control": "private, max-age=3600"})
