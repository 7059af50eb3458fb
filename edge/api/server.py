"""Serving the HTTP API as one task of its owner's TaskGroup: listen, serve until cancelled, clean up."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
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


@dataclass(slots=True)
class _Listener:
    """One address the application is served on, with its own retry backoff."""

    host: str
    requested_port: int
    backoff: Backoff
    port: int | None = None
    tried: bool = False


class ApiServer:
    """The API application on host:port (port 0: any free port), for as long as run() runs.

    hmi, when given and another address, serves the same application there too: the web HMI's address, so a panel
    on the line network reaches the HMI while the API's own address may stay on loopback.
    """

    def __init__(
        self,
        app: web.Application,
        host: str,
        port: int,
        *,
        hmi: tuple[str, int] | None = None,
        sleep: Sleep = asyncio.sleep,
        backoff: Backoff | None = None,
    ) -> None:
        self._app = app
        self.host = host
        self.requested_port = port
        self._sleep = sleep
        self._api = _Listener(host, port, backoff or default_backoff(BIND_RETRY_INITIAL_S, BIND_RETRY_MAX_S))
        self._hmi: _Listener | None = None
        if hmi is not None and (hmi != (host, port) or port == 0):
            self._hmi = _Listener(hmi[0], hmi[1], default_backoff(BIND_RETRY_INITIAL_S, BIND_RETRY_MAX_S))
        self.attempted = asyncio.Event()
        """Set after the first attempt to listen on every address, whether it succeeded (port set) or not."""

    @property
    def port(self) -> int | None:
        """The port the API listens on while serving; None before and after."""
        return self._api.port

    @property
    def hmi_port(self) -> int | None:
        """The port the web HMI is served on (the API's own when no other address is configured)."""
        return self._api.port if self._hmi is None else self._hmi.port

    @property
    def url(self) -> str | None:
        """The API's base URL while it listens, like http://127.0.0.1:8470."""
        return _url(self._api)

    @property
    def hmi_url(self) -> str | None:
        """The web HMI's page while it is served, like http://127.0.0.1:8480/hmi/."""
        base = _url(self._api if self._hmi is None else self._hmi)
        return None if base is None else f"{base}/hmi/"

    async def run(self) -> None:
        """Listen (retrying while an address cannot be bound) and serve until cancelled; then close every socket."""
        runner = web.AppRunner(self._app, access_log=None, shutdown_timeout=SHUTDOWN_GRACE_S)
        listeners = [self._api] if self._hmi is None else [self._api, self._hmi]
        try:
            await runner.setup()
            # Each address binds on its own: one held by another program does not keep the other from serving.
            async with asyncio.TaskGroup() as group:
                for listener in listeners:
                    group.create_task(self._listen(runner, listener, listeners))
            await asyncio.Event().wait()  # serve until cancelled
        finally:
            for listener in listeners:
                listener.port = None
            await runner.cleanup()
            self.attempted.set()

    async def _listen(self, runner: web.AppRunner, listener: _Listener, listeners: list[_Listener]) -> None:
        what = "HTTP API" if listener is self._api else "web HMI"
        cannot, listening = f"{what} cannot listen; the line runs on without it, retrying", f"{what} listening"
        while True:
            site = web.TCPSite(runner, listener.host, listener.requested_port)
            try:
                async with asyncio.timeout(BIND_TIMEOUT_S):
                    await site.start()
            except (OSError, TimeoutError) as err:
                if site in runner.sites:
                    await site.stop()
                delay = listener.backoff.next_delay()
                _LOG.error(cannot,
                           host=listener.host, port=listener.requested_port, error=str(err) or type(err).__name__,
                           retry_in_s=round(delay, 1))
                self._tried(listener, listeners)
                await self._sleep(delay)
                continue
            listener.port = site.port
            listener.backoff.reset()
            _LOG.info(listening, url=_url(listener))
            self._tried(listener, listeners)
            return

    def _tried(self, listener: _Listener, listeners: list[_Listener]) -> None:
        listener.tried = True
        if all(other.tried for other in listeners):
            self.attempted.set()


def _url(listener: _Listener) -> str | None:
    if listener.port is None:
        return None
    host = f"[{listener.host}]" if ":" in listener.host else listener.host
    return f"http://{host}:{listener.port}"
