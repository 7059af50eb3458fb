"""Serving the HTTP API as one task of its owner's TaskGroup: listen, serve until cancelled, clean up."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import structlog
from aiohttp import web

from edge.supervisor import Sleep, default_backoff

if TYPE_CHECKING:
    from edge.backoff import Backoff

_LOG = structlog.get_logger("lineside.api")

# Binding a socket takes microseconds; this only bounds a host name whose lookup hangs.
BIND_TIMEOUT_S = 10.0
# Requests still being handled at shutdown get this long to finish before aiohttp cancels them;
# the daemon's drain timeout caps the whole shutdown anyway.
SHUTDOWN_GRACE_S = 3.0
# A port that cannot be bound (held by another program, an address not on this machine) is retried:
# the line keeps running without its API meanwhile, and the error is logged at every attempt.
BIND_RETRY_INITIAL_S = 1.0
BIND_RETRY_MAX_S = 30.0


class ApiServer:
    """The API application on host:port (port 0: any free port), for as long as run() runs."""

    def __init__(
        self,
        app: web.Application,
        host: str,
        port: int,
        *,
        sleep: Sleep = asyncio.sleep,
        backoff: Backoff | None = None,
    ) -> None:
        self._app = app
        self.host = host
        self.requested_port = port
        self._sleep = sleep
        self._backoff = backoff or default_backoff(BIND_RETRY_INITIAL_S, BIND_RETRY_MAX_S)
        self.port: int | None = None
        """The port listened on while serving; None before and after."""
        self.attempted = asyncio.Event()
        """Set after the first attempt to listen, whether it succeeded (port set) or not (retrying)."""

    @property
    def url(self) -> str | None:
        """The API's base URL while it listens, like http://127.0.0.1:8470."""
        if self.port is None:
            return None
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def run(self) -> None:
        """Listen (retrying while the address cannot be bound) and serve until cancelled; then close every socket."""
        runner = web.AppRunner(self._app, access_log=None, shutdown_timeout=SHUTDOWN_GRACE_S)
        try:
            await runner.setup()
            await self._listen(runner)
            await asyncio.Event().wait()  # serve until cancelled
        finally:
            self.port = None
            await runner.cleanup()
            self.attempted.set()

    async def _listen(self, runner: web.AppRunner) -> None:
        while True:
            site = web.TCPSite(runner, self.host, self.requested_port)
            try:
                async with asyncio.timeout(BIND_TIMEOUT_S):
                    await site.start()
            except (OSError, TimeoutError) as err:
                if site in runner.sites:
                    await site.stop()
                delay = self._backoff.next_delay()
                _LOG.error("HTTP API cannot listen; the line runs on without it, retrying",
                           host=self.host, port=self.requested_port, error=str(err) or type(err).__name__,
                           retry_in_s=round(delay, 1))
                self.attempted.set()
                await self._sleep(delay)
                continue
            self.port = site.port
            self._backoff.reset()
            _LOG.info("HTTP API listening", url=self.url)
            self.attempted.set()
            return
