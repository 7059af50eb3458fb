"""Plant delivery: each target's durable queue of batch records and manifests, sent in order, exactly once.

One task per target (owned by the daemon's root TaskGroup), the same shape as EPCIS delivery (edge.sync):

1. queue: outbox rows written since the target was first seen, of the kinds it takes, join its queue;
2. send: the oldest message not delivered has its body rendered and fixed (the first time, by whichever target
   gets there first), is marked delivering and sent. Stored or duplicate: delivered. A failure worth retrying
   (the endpoint down, 5xx, a timeout): back to pending, retried after a capped, growing pause. Anything else
   (refused, credentials): failed with the reason, and the queue waits for an operator to re-send it.

Exactly once: every attempt sends the same bytes under the same message id, and the endpoint stores a message
id once, answering a repeat as already held; a message whose answer was lost is simply sent again.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Final

import structlog

from edge.backoff import Backoff
from edge.plant import outbox
from edge.plant.senders import FileDropPlantSender, HttpSender, PlantClient
from edge.store.runs import iso_utc
from edge.sync.capture import CaptureFailed, CaptureResult, CaptureTimeouts, make_ssl_context
from edge.sync.filedrop import FileDropTarget
from edge.sync.upstream import _auth  # the EPCIS targets' secret files, read the same way

if TYPE_CHECKING:
    import sqlite3
    from collections.abc import Awaitable, Callable

    from edge.config.models import LineConfig, PlantTarget
    from edge.plant.senders import PlantSender
    from edge.store import Store

POLL_S: Final = 2.0
"""How often an idle target looks for new messages: a batch or pallet close also wakes it at once."""
FAILED_RECHECK_S: Final = 30.0
"""How often a target blocked by a failed message looks whether an operator re-sent it."""


class PlantDelivery:
    """The queue of one plant target: queues, renders and sends its messages in order."""

    def __init__(
        self,
        store: Store,
        target: PlantTarget,
        *,
        sender: PlantSender,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        poll_s: float = POLL_S,
    ) -> None:
        self.target = target
        self._store = store
        self._sender = sender
        self._clock = clock
        self._sleep = sleep
        self._poll_s = poll_s
        self._wake = asyncio.Event()
        self._backoff = Backoff(initial_s=target.retry_initial_s, max_s=target.retry_max_s)
        self._log = structlog.get_logger("lineside.plant").bind(target=target.id)
        self.blocked: str | None = None
        """Why the queue waits for an operator (a failed message), or None."""
        self.delivered = 0
        """Messages delivered since start."""
        self.idle = asyncio.Event()
        """Set while the queue has nothing it can send: empty, or held by a failed message (tests and the demo)."""

    def wake(self) -> None:
        """Look for work now (a batch or pallet closed, an operator re-sent)."""
        self._wake.set()

    def _now(self) -> str:
        return iso_utc(self._clock())

    async def run(self) -> None:
        """Deliver until cancelled; never returns otherwise."""
        await self._store.write(lambda conn: outbox.register_target(conn, self.target.id, self._now()))
        try:
            while True:
                await self._store.write(
                    lambda conn: outbox.enqueue(conn, self.target.id, self.target.messages, self._now()))
                if not self.target.enabled:
                    await self._idle(self._poll_s)
                    continue
                found = await self._store.read(lambda conn: outbox.next_delivery(conn, self.target.id))
                if found is None:
                    self.blocked = None
                    self.idle.set()
                    await self._idle(self._poll_s)
                    continue
                self.idle.clear()
                if found.state == "failed":
                    self.idle.set()
                    if self.blocked is None:
                        self._log.error("plant delivery waits for an operator: a message failed",
                                        message=found.outbox_id, reason=found.reason)
                    self.blocked = found.reason or "failed"
                    await self._idle(FAILED_RECHECK_S)
                    continue
                self.blocked = None
                retry_in = await self._attempt(found.outbox_id)
                if retry_in is not None:
                    await self._idle(retry_in)
        finally:
            await self._sender.aclose()

    async def _idle(self, seconds: float) -> None:
        """Wait seconds, or less when woken (also by a wake that came while this task was busy)."""
        waiter = asyncio.ensure_future(self._wake.wait())
        sleeper = asyncio.ensure_future(self._sleep(seconds))
        try:
            await asyncio.wait({waiter, sleeper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
            sleeper.cancel()
            # asyncio.wait raises nothing of theirs, and lets a cancellation of this task through.
            await asyncio.wait({waiter, sleeper})
        # Cleared once awake, not before sleeping: a close that woke us while we were sending is not lost.
        self._wake.clear()

    async def _attempt(self, outbox_id: int) -> float | None:
        """Fix, mark and send one message once; return the pause before the next attempt, or None to go on."""
        target = self.target.id

        def begin(conn: sqlite3.Connection, rendered: outbox.Message) -> outbox.Message:
            message = outbox.fix(conn, rendered, self._now())
            outbox.begin_attempt(conn, target, outbox_id, self._now())
            return message

        try:
            rendered = await self._store.read(lambda conn: outbox.prepared(conn, outbox_id))
            message = await self._store.write(lambda conn: begin(conn, rendered))
        except outbox.PlantDeliveryError as exc:
            # A message that cannot be rendered fails on its own: the queue waits for an operator, the line runs on.
            await self._end(outbox_id, "failed", f"cannot render the message: {exc}", None)
            self._log.error("plant message cannot be rendered", message=outbox_id, reason=str(exc))
            return None
        try:
            result: CaptureResult = await self._sender.send(message)
        except CaptureFailed as failed:
            outcome: outbox.Outcome = "retry" if failed.retryable else "failed"
            await self._end(outbox_id, outcome, failed.reason, failed.status)
            if not failed.retryable:
                self._log.error("plant message failed", message=message.message_id, kind=message.kind,
                                reason=failed.reason)
                return None
            delay = self._backoff.next_delay()
            if failed.retry_after_s is not None:
                delay = max(delay, min(failed.retry_after_s, self.target.retry_max_s))
            level = self._log.warning if self._backoff.failures == 1 else self._log.debug
            level("plant message not delivered; will retry", message=message.message_id, reason=failed.reason,
                  retry_in_s=round(delay, 3))
            return delay
        await self._end(outbox_id, result.outcome, result.detail, None)
        if self._backoff.failures:
            self._log.info("plant target reachable again", after_failures=self._backoff.failures)
        self._backoff.reset()
        self.delivered += 1
        self._log.info("plant message delivered", message=message.message_id, kind=message.kind,
                       outcome=result.outcome)
        return None

    async def _end(self, outbox_id: int, outcome: outbox.Outcome, detail: str, status: int | None) -> None:
        stamp = self._now()
        await self._store.write(lambda conn: outbox.end_attempt(conn, self.target.id, outbox_id, outcome, detail,
                                                                now=stamp, status=status))


def make_sender(target: PlantTarget) -> PlantSender:
    """Return the sender of one target (HTTP client or file drop); ConfigError for unreadable secrets."""
    if target.kind == "file_drop":
        if target.directory is None:  # the config model refuses this; for the type checker
            raise ValueError(f"plant target {target.id} needs a directory")
        return FileDropPlantSender(FileDropTarget(target.directory), target.formats)
    if target.url is None:  # the config model refuses this; for the type checker
        raise ValueError(f"plant target {target.id} needs a url")
    tls = target.tls
    ssl = make_ssl_context(tls.ca_file, tls.client_cert, tls.client_key) if tls is not None else None
    client = PlantClient(target.url, ssl, auth=_auth(target.auth),
                         timeouts=CaptureTimeouts(request_s=target.request_timeout_s),
                         epcis_version=None, cbv_version=None)
    return HttpSender(client, target.formats)


def build_plant_deliveries(
    config: LineConfig,
    store: Store,
    *,
    clock: Callable[[], datetime] | None = None,
    sleep: Callable[[float], Awaitable[None]] | None = None,
) -> list[PlantDelivery]:
    """Return a delivery per plant target in the config; ConfigError for unreadable secrets."""
    return [
        PlantDelivery(store, target, sender=make_sender(target), clock=clock or (lambda: datetime.now(UTC)),
                      sleep=sleep or asyncio.sleep)
        for target in config.plant.targets
    ]


async def plant_deliveries(
    config: LineConfig,
    store: Store,
    closed_listeners: list[Callable[[int], None]],
    *,
    sleep: Callable[[float], Awaitable[None]] | None = None,
) -> list[PlantDelivery]:
    """Build the daemon's plant deliveries (secrets read off the loop), woken whenever a batch closes."""
    if not config.plant.targets:
        return []
    deliveries = await asyncio.to_thread(build_plant_deliveries, config, store, sleep=sleep)

    def wake(batch_id: int) -> None:
        del batch_id  # every target looks for whatever the close queued
        for delivery in deliveries:
            delivery.wake()

    closed_listeners.append(wake)
    return deliveries
