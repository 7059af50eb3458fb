"""A simulated MES/ERP endpoint: records the plant messages it receives, stores each once, fails on command.

What it serves (an aiohttp application, on loopback or any address, TLS when given a server context):

- ``POST /messages`` takes one representation of a plant message (JSON, CSV or HTML) with its message id in
  ``Idempotency-Key`` and the representation in ``Lineside-Representation``. The first time a (message id,
  representation) arrives it is stored and answered ``201``; again with the same bytes, ``200`` (already held,
  stored nothing); again with other bytes, ``409`` (a message id is never reused for other content).
- For tests, the demo and people: ``GET /messages`` (what was stored, in order), ``GET|POST|DELETE /faults``
  and ``GET /stats``; never faulted nor authenticated.

Faults are the EPCIS simulator's (`simulators.epcis_upstream.UpstreamFaults`: status, unavailable, hang, slow,
drop, unauthorized, bad_request, garbage), queued and used up by the next POSTs, plus `lose_answers`: the next
POSTs are stored and then the connection is cut before the answer, as when a network fails at the worst moment.

Standalone: ``python -m simulators.plant_endpoint --port 8091 [--token T]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hmac
import json
import signal
from collections import Counter
from dataclasses import dataclass
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, Final, Self

import structlog
from aiohttp import web

from simulators.base import LOOPBACK
from simulators.epcis_upstream import (
    CONNECTION_FAULTS,
    ErrorStatus,
    FaultSpecError,
    RefuseCredentials,
    RejectDocument,
    Unavailable,
    UpstreamFaults,
    connection_fault,
    cut_connection,
    fault_from_json,
)

if TYPE_CHECKING:
    import ssl
    from collections.abc import Awaitable, Callable

__all__ = ["PlantEndpoint", "Received"]

START_TIMEOUT_S: Final = 10.0
"""Binding a loopback port takes milliseconds; ten seconds means something is wrong with the host."""
SHUTDOWN_GRACE_S: Final = 1.0
"""Requests still running at close get this long: the simulator's own requests finish in milliseconds."""
MAX_BODY_BYTES: Final = 64 << 20
"""A batch manifest of a large batch with every case listed stays well under this."""

_LOG = structlog.get_logger("lineside.simulator", simulator="PlantEndpoint")


@dataclass(frozen=True, slots=True)
class Received:
    """One representation of a message as the endpoint stored it."""

    message_id: str
    representation: str
    kind: str
    content_type: str
    body: bytes

    def json(self) -> dict[str, Any]:
        """Return the body as JSON data (of a JSON representation only)."""
        return dict(json.loads(self.body))


class PlantEndpoint:
    """The simulated MES/ERP: start() on a port, aclose() to stop; faults in `faults` and `lose_answers`."""

    def __init__(self, *, token: str | None = None, tls: ssl.SSLContext | None = None,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self.faults: Final = UpstreamFaults()
        self.lose_answers = 0
        """How many of the next POSTs are stored and then answered by cutting the connection."""
        self.received: Final[list[Received]] = []
        """Every representation stored, once each, in the order it arrived."""
        self.requests: Counter[str] = Counter()
        """Requests per "METHOD route"."""
        self.answers: Counter[int] = Counter()
        """Answers to POST /messages per status (faults included; cut connections are not answers)."""
        self._held: dict[tuple[str, str], bytes] = {}
        self._token = token
        self._tls = tls
        self._sleep = sleep
        self._released = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._url: str | None = None
        self.app: Final = self._make_app()

    @property
    def url(self) -> str:
        """The endpoint messages are POSTed to (``http(s)://host:port/messages``)."""
        if self._url is None:
            raise RuntimeError("the plant endpoint simulator is not started")
        return f"{self._url}/messages"

    def messages(self, representation: str = "json") -> list[Received]:
        """Return what was stored in one representation, in order."""
        return [r for r in self.received if r.representation == representation]

    async def start(self, host: str = LOOPBACK, port: int = 0) -> str:
        """Listen on host:port (0: a free port) and return the messages URL."""
        if self._runner is not None:
            raise RuntimeError("the plant endpoint simulator is already started")
        self._released.clear()
        runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=SHUTDOWN_GRACE_S)
        await runner.setup()
        self._runner = runner
        try:
            site = web.TCPSite(runner, host, port, ssl_context=self._tls)
            async with asyncio.timeout(START_TIMEOUT_S):
                await site.start()
        except BaseException:
            await self.aclose()
            raise
        bound_host, bound_port = runner.addresses[0][:2]
        shown = f"[{bound_host}]" if ":" in bound_host else bound_host
        self._url = f"{'https' if self._tls else 'http'}://{shown}:{bound_port}"
        return self.url

    async def aclose(self) -> None:
        """Release hanging requests, stop listening and close every connection; idempotent."""
        self._released.set()
        runner, self._runner = self._runner, None
        self._url = None
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def stats(self) -> dict[str, Any]:
        """Return counters for GET /stats."""
        return {
            "stored": len(self.received),
            "requests": dict(self.requests),
            "answers": {str(k): v for k, v in sorted(self.answers.items())},
            "faultsFired": dict(self.faults.fired),
            "loseAnswers": self.lose_answers,
        }

    def _make_app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY_BYTES)
        app.router.add_post("/messages", self._post_message)
        app.router.add_get("/messages", self._get_messages)
        app.router.add_get("/faults", self._get_faults)
        app.router.add_post("/faults", self._post_faults)
        app.router.add_delete("/faults", self._delete_faults)
        app.router.add_get("/stats", self._get_stats)
        return app

    async def _post_message(self, request: web.Request) -> web.StreamResponse:  # noqa: PLR0911 - one per answer
        self.requests["POST /messages"] += 1
        faulted = await self._fault(request)
        if faulted is not None:
            return faulted
        if self._token is not None:
            scheme, _, value = request.headers.get("Authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(value.strip().encode(), self._token.encode()):
                return self._problem(401, "credentials refused")
        message_id = request.headers.get("Idempotency-Key", "").strip()
        representation = request.headers.get("Lineside-Representation", "json").strip()
        if not message_id:
            return self._problem(400, "Idempotency-Key (the message id) is missing")
        body = await request.read()
        key = (message_id, representation)
        held = self._held.get(key)
        if held is not None:
            if held != body:
                return self._problem(409, f"message {message_id} ({representation}) is held with other content")
            status = 200
        else:
            if representation == "json":
                try:
                    json.loads(body)
                except ValueError:
                    return self._problem(400, "the JSON representation is not JSON")
            self._held[key] = body
            self.received.append(Received(message_id, representation, request.headers.get("Lineside-Message-Kind", ""),
                                          request.headers.get("Content-Type", ""), body))
            status = 201
            _LOG.debug("message stored", message_id=message_id, representation=representation)
        if self.lose_answers:
            self.lose_answers -= 1
            return cut_connection(request)
        self.answers[status] += 1
        return web.json_response({"message_id": message_id, "representation": representation,
                                  "stored": status == 201}, status=status)

    async def _fault(self, request: web.Request) -> web.StreamResponse | None:  # noqa: PLR0911 - one answer per fault
        fault = self.faults.take_http("capture")
        if fault is None:
            return None
        if isinstance(fault, CONNECTION_FAULTS):
            return await connection_fault(fault, request, sleep=self._sleep, released=self._released)
        if isinstance(fault, ErrorStatus):
            return self._problem(fault.status, "injected fault")
        if isinstance(fault, Unavailable):
            return self._problem(503, "injected fault", headers={"Retry-After": str(fault.retry_after_s)})
        if isinstance(fault, RefuseCredentials):
            return self._problem(401, "injected fault: credentials refused")
        if isinstance(fault, RejectDocument):
            return self._problem(400, "injected fault: the message is malformed")
        status = fault.status or 200  # GarbageAnswer, the last kind an HTTP fault can be
        self.answers[status] += 1
        return web.Response(status=status, body=b"<html>\x00not json{{", content_type="text/html")

    def _problem(self, status: int, detail: str, *, headers: dict[str, str] | None = None) -> web.Response:
        self.answers[status] += 1
        return web.json_response({"title": HTTPStatus(status).phrase,
                                  "status": status, "detail": detail}, status=status, headers=headers,
                                 content_type="application/problem+json")

    async def _get_messages(self, _request: web.Request) -> web.StreamResponse:
        self.requests["GET /messages"] += 1
        return web.json_response([
            {"message_id": r.message_id, "representation": r.representation, "kind": r.kind,
             "content_type": r.content_type, "bytes": len(r.body)} for r in self.received])

    async def _get_faults(self, _request: web.Request) -> web.StreamResponse:
        self.requests["GET /faults"] += 1
        return web.json_response({"pending": len(self.faults.pending), "loseAnswers": self.lose_answers})

    async def _post_faults(self, request: web.Request) -> web.StreamResponse:
        self.requests["POST /faults"] += 1
        try:
            spec = await request.json()
            if isinstance(spec, dict) and spec.get("kind") == "lose_answer":
                self.lose_answers += int(spec.get("count", 1))
            else:
                fault, count, _on = fault_from_json(spec)
                self.faults.add(fault, count=count)
        except (ValueError, FaultSpecError) as err:
            return web.json_response({"error": str(err)}, status=400)
        return web.json_response({"pending": len(self.faults.pending), "loseAnswers": self.lose_answers})

    async def _delete_faults(self, _request: web.Request) -> web.StreamResponse:
        self.requests["DELETE /faults"] += 1
        self.faults.clear()
        self.lose_answers = 0
        return web.json_response({"pending": 0})

    async def _get_stats(self, _request: web.Request) -> web.StreamResponse:
        self.requests["GET /stats"] += 1
        return web.json_response(self.stats())


async def _serve(host: str, port: int, token: str | None) -> None:
    endpoint = PlantEndpoint(token=token)
    url = await endpoint.start(host, port)
    print(f"plant endpoint at {url}", flush=True)  # noqa: T201 - the standalone tool's one line of output
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await endpoint.aclose()


def main(argv: list[str] | None = None) -> int:
    """Run the simulated endpoint until interrupted."""
    parser = argparse.ArgumentParser(prog="python -m simulators.plant_endpoint", description=__doc__.split("\n")[0])
    parser.add_argument("--host", default=LOOPBACK)
    parser.add_argument("--port", type=int, default=8091)
    parser.add_argument("--token", help="bearer token the endpoint requires")
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args.host, args.port, args.token))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
