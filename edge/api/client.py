"""A small client of the HTTP API, for the command line talking to a running daemon: sessions and signatures.

A command logs in in one of two ways. With a user name (``--user NAME``) it logs in for that command only, with
the password asked on the terminal (or read from standard input, one line, when that is not a terminal), and
logs out at the end. Without one it uses the session `lineside ctl login` kept for that API: a token in a file
only its owner can read (``$XDG_RUNTIME_DIR/lineside/sessions.json``, else ``~/.config/lineside/sessions.json``),
valid until it idles out on the daemon (15 minutes by default) or `lineside ctl logout`.

A signed action (a batch release or close, rework) answers 401 naming the signature it needs; the client then
asks for the password (the one typed for this command's login, when there was one) and sends the request again
with it. The first request changed nothing, so sending it again is safe.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self
from urllib.parse import quote

import aiohttp
from yarl import URL

from edge.api.app import API_PREFIX
from edge.errors import EdgeError

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from types import TracebackType

# Connecting to a daemon on this machine is instant; a longer wait means nothing listens usefully.
CONNECT_TIMEOUT_S = 5.0
# Releasing a batch of a million serials takes tens of seconds on a slow disk; nothing we ask takes longer.
REQUEST_TIMEOUT_S = 300.0
SESSIONS_FILE = "sessions.json"
MAX_SESSIONS_FILE_BYTES = 64 * 1024
"""A sessions file is a few tokens; a larger one is not ours and is not read."""

class ApiUnreachableError(EdgeError):
    """The daemon's API cannot be reached (not running, wrong address, no answer in time)."""


class ApiLoginError(EdgeError):
    """The API refused the login, or the command has no session to use; the message says what to do."""


def base_url(given: str) -> str:
    """Return the API root for a URL as an operator types it: http://host:port, with or without /api/v1."""
    url = given.strip().rstrip("/")
    if "://" not in url:
        url = f"http://{url}"
    return url.removesuffix(API_PREFIX)


def path(*parts: str) -> str:
    """Return the API path of parts, each quoted whole (a work order may contain a slash)."""
    return "/".join([API_PREFIX, *(quote(part, safe="") for part in parts)])


def ask_password(prompt: str) -> str:
    """Return a password typed on the terminal, or one line of standard input when that is not a terminal."""
    if sys.stdin.isatty():
        return getpass.getpass(prompt)
    line = sys.stdin.readline()
    if not line:
        raise ApiLoginError(f"standard input ended before the password ({prompt.strip().rstrip(':')})")
    return line.removesuffix("\n").removesuffix("\r")


class SessionStore:
    """Session tokens kept between commands, per API root, in a file only its owner can read or write."""

    def __init__(self, directory: Path | None = None) -> None:
        self.directory = directory or default_session_dir()

    @property
    def file(self) -> Path:
        """The sessions file."""
        return self.directory / SESSIONS_FILE

    def get(self, base: str) -> dict[str, Any] | None:
        """Return the session kept for the API at base ({token, name, role, expires_at}), if any."""
        entry = self._read().get(base_url(base))
        return entry if isinstance(entry, dict) and isinstance(entry.get("token"), str) else None

    def put(self, base: str, session: Mapping[str, Any]) -> None:
        """Keep session for the API at base, replacing any kept before."""
        sessions = self._read()
        sessions[base_url(base)] = {key: session[key] for key in ("token", "name", "role", "expires_at")
                                    if key in session}
        self._write(sessions)

    def forget(self, base: str) -> dict[str, Any] | None:
        """Drop the session kept for the API at base; return it."""
        sessions = self._read()
        entry = sessions.pop(base_url(base), None)
        if entry is not None:
            self._write(sessions)
        return entry if isinstance(entry, dict) else None

    def _read(self) -> dict[str, Any]:
        try:
            with self.file.open("rb") as handle:
                if os.fstat(handle.fileno()).st_mode & 0o077:
                    return {}  # readable by others: a token there may be someone else's, and is not used
                data = json.loads(handle.read(MAX_SESSIONS_FILE_BYTES))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _write(self, sessions: dict[str, Any]) -> None:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        partial = self.file.with_name(f".{SESSIONS_FILE}.partial")
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(sessions, out, indent=1)
        partial.replace(self.file)


def default_session_dir() -> Path:
    """Return where sessions are kept: $XDG_RUNTIME_DIR/lineside (gone at logout), else ~/.config/lineside."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and Path(runtime).is_dir():
        return Path(runtime) / "lineside"
    return Path.home() / ".config" / "lineside"


class ApiClient:
    """One session to the API at base (http://host:port); use as an async context manager.

    user given: log in as user for this client's lifetime (password from password()), log out at the end.
    Otherwise the token given, else the one kept for base in sessions (none: requests go without a session).
    """

    def __init__(
        self,
        base: str,
        *,
        timeout_s: float = REQUEST_TIMEOUT_S,
        user: str | None = None,
        token: str | None = None,
        password: Callable[[str], str] = ask_password,
        sessions: SessionStore | None = None,
    ) -> None:
        self.base = base_url(base)
        self._timeout = aiohttp.ClientTimeout(total=timeout_s, sock_connect=CONNECT_TIMEOUT_S)
        self._session: aiohttp.ClientSession | None = None
        self.user = user
        self.token = token
        self._ask = password
        self._password: str | None = None
        self._sessions = sessions
        self._logged_in = False

    async def __aenter__(self) -> Self:
        self._session = aiohttp.ClientSession(timeout=self._timeout)
        try:
            if self.user is not None:
                await self.login(self.user)
                self._logged_in = True
            elif self.token is None:
                kept = (self._sessions or SessionStore()).get(self.base)
                self.token = None if kept is None else str(kept["token"])
        except BaseException:
            await self._session.close()
            self._session = None
            raise
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        session, self._session = self._session, None
        if session is None:
            return
        try:
            if self._logged_in:
                with contextlib.suppress(ApiUnreachableError):
                    await self._send(session, "DELETE", path("session"), None, None)
        finally:
            await session.close()

    async def login(self, user: str) -> dict[str, Any]:
        """Log in as user (the password asked for); keep the token for this client; return the session."""
        if self._session is None:
            raise RuntimeError("use ApiClient as an async context manager")
        self._password = self._ask(f"Password of {user}: ")
        status, answer = await self._send(self._session, "POST", path("session"), None,
                                          {"name": user, "password": self._password, "via": "api"})
        if status != 200 or not isinstance(answer, dict) or "token" not in answer:
            error = answer.get("error") if isinstance(answer, dict) else str(answer)[:200]
            raise ApiLoginError(f"login as {user} refused: {error}")
        self.user = str(answer["name"])
        self.token = str(answer["token"])
        return answer

    async def request(
        self,
        method: str,
        where: str,
        *,
        params: Mapping[str, str] | None = None,
        json_body: object = None,
        data: bytes | None = None,
    ) -> tuple[int, Any]:
        """Send one request; return (status, decoded JSON or text). ApiUnreachableError when there is no answer.

        A signed action is sent again with the password when the API asks for its signature.
        """
        if self._session is None:
            raise RuntimeError("use ApiClient as an async context manager")
        url = URL(f"{self.base}{where}", encoded=True)
        if params:
            url = url.with_query(dict(params))
        status, answer = await self._send(self._session, method, url, data, json_body)
        wanted = answer.get("signature") if status == 401 and isinstance(answer, dict) else None
        if isinstance(wanted, dict) and (json_body is None or isinstance(json_body, dict)) and data is None:
            body = dict(json_body or {})
            if "password" not in body:
                meaning = wanted.get("meaning", "")
                who = self.user or "your user"
                password = self._password or self._ask(f"Signature ({meaning}) of {who}: password again: ")
                status, answer = await self._send(self._session, method, url, None, {**body, "password": password})
        elif status == 401 and isinstance(answer, dict) and isinstance(answer.get("error"), str):
            answer = {**answer, "error": f"{answer['error']}; from the command line: lineside ctl login --user NAME "
                                         "(or --user NAME on the command)"}
        return status, answer

    async def _send(
        self, session: aiohttp.ClientSession, method: str, url: URL | str, data: bytes | None, json_body: object
    ) -> tuple[int, Any]:
        target = URL(f"{self.base}{url}", encoded=True) if isinstance(url, str) else url
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        try:
            async with session.request(method, target, json=json_body, data=data, headers=headers) as response:
                body = await response.read()
                status, content_type, charset = response.status, response.content_type, response.charset
        except (aiohttp.ClientError, TimeoutError, ValueError) as err:
            why = str(err) or f"no answer within {self._timeout.total:g} s"
            raise ApiUnreachableError(f"cannot reach the Lineside API at {self.base}: {why}") from err
        text = body.decode(charset or "utf-8", errors="replace")
        if content_type == "application/json":
            try:
                return status, json.loads(text)
            except ValueError:
                pass
        return status, text
