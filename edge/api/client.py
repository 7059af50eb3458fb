"""A small client of the HTTP API, for the command line talking to a running daemon."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Self
from urllib.parse import quote

import aiohttp
from yarl import URL

from edge.api.app import API_PREFIX
from edge.errors import EdgeError

if TYPE_CHECKING:
    from collections.abc import Mapping
    from types import TracebackType

# Connecting to a daemon on this machine is instant; a longer wait means nothing listens usefully.
CONNECT_TIMEOUT_S = 5.0
# Releasing a batch of a million serials takes tens of seconds on a slow disk; nothing we ask takes longer.
REQUEST_TIMEOUT_S = 300.0


class ApiUnreachableError(EdgeError):
    """The daemon's API cannot be reached (not running, wrong address, no answer in time)."""


def base_url(given: str) -> str:
    """Return the API root for a URL as an operator types it: http://host:port, with or without /api/v1."""
    url = given.strip().rstrip("/")
    if "://" not in url:
        url = f"http://{url}"
    return url.removesuffix(API_PREFIX)


def path(*parts: str) -> str:
    """Return the API path of parts, each quoted whole (a work order may contain a slash)."""
    return "/".join([API_PREFIX, *(quote(part, safe="") for part in parts)])


class ApiClient:
    """One session to the API at base (http://host:port); use as an async context manager."""

    def __init__(self, base: str, *, timeout_s: float = REQUEST_TIMEOUT_S) -> None:
        self.base = base_url(base)
        self._timeout = aiohttp.ClientTimeout(total=timeout_s, sock_connect=CONNECT_TIMEOUT_S)
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Self:
        self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def request(
        self,
        method: str,
        where: str,
        *,
        params: Mapping[str, str] | None = None,
        json_body: object = None,
        data: bytes | None = None,
    ) -> tuple[int, Any]:
        """Send one request; return (status, decoded JSON or text). ApiUnreachableError when there is no answer."""
        if self._session is None:
            raise RuntimeError("use ApiClient as an async context manager")
        url = URL(f"{self.base}{where}", encoded=True)
        if params:
            url = url.with_query(dict(params))
        try:
            async with self._session.request(method, url, json=json_body, data=data) as response:
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
