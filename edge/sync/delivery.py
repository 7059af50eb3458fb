"""Upstream delivery: each target's durable queue of EPCIS messages, sent in order, at least once, never reordered.

One task per target (owned by the daemon's root TaskGroup):

1. start: batches that closed (in stream mode, also running ones) are put on their way with the partner
   profile they will be written with, fixed from then on;
2. cut: their outbox rows are cut into messages (at close, everything left; while streaming, every
   ``stream_every_s``);
3. send: the oldest message not delivered is rendered from the store, checked (the line's own checks, then the
   official schema when installed), marked delivering and sent. Stored or duplicate: delivered. A failure worth
   retrying: back to pending, retried after a capped, growing pause. Anything else (a refusal, an invalid
   document, credentials refused, upstream refusing the content): failed with the reason, and the queue of that
   target waits for an operator to fix the cause and re-send, because sending later messages first would reorder
   the batch history upstream.

A re-send renders the same rows with the same profile and context, so the events and their IDs are the same and
upstream recognises what it has already stored.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol
from zoneinfo import ZoneInfo

import structlog

from edge.backoff import Backoff
from edge.epcis import events as epcis_events
from edge.epcis.checks import Checker
from edge.epcis.documents import content_type, write_document
from edge.epcis.model import DocumentHeader, MasterData
from edge.epcis.profiles import PartnerProfile
from edge.errors import EdgeError
from edge.store.runs import iso_utc
from edge.sync import outbox
from edge.sync.capture import CaptureFailed, CaptureResult

if TYPE_CHECKING:
    import sqlite3
    from collections.abc import Awaitable, Callable, Sequence

    from edge.config.models import UpstreamTarget
    from edge.epcis.validate import EpcisSchemas
    from edge.store import Store


POLL_S = 2.0
"""How often an idle target looks for closed batches and new rows: a batch close also wakes it at once."""
FAILED_RECHECK_S = 30.0
"""How often a target blocked by a failed message looks whether an operator re-sent it (the API also wakes it)."""
ATTEMPT_MARGIN_S = 30.0
"""Added to the sender's own timeouts for the whole attempt: a last guard, should a sender not honour its own."""


class Sender(Protocol):
    """Where documents go: an EPCIS capture endpoint or a file-drop directory."""

    async def send(self, document: bytes, *, content_type: str, name: str, event_ids: Sequence[str]) -> CaptureResult:
        """Deliver one document; CaptureFailed says whether to retry."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...


@dataclass(frozen=True, slots=True)
class Rendered:
    """A message as a document, with what was found wrong with it (nothing: it may be sent)."""

    document: bytes
    events: int
    event_ids: tuple[str, ...]
    name: str
    problems: tuple[str, ...]
    """Refusals of the line's checks and schema problems; any of them fails the message."""
    unchecked: str | None = None
    """Why the document was not held against its official schema (not on this machine), or None."""

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.document).hexdigest()


@dataclass(frozen=True, slots=True)
class LineFacts:
    """What the line proposes as a batch's EPCIS context the first time its events are rendered."""

    line_id: str
    read_point: str | None
    biz_location: str | None
    timezone: str
    site_gln: str | None

    def proposal(self, work_order: str) -> dict[str, Any]:
        """Return the context to fix for a batch of work_order (read point, place, zone, transaction)."""
        transaction = None
        if self.site_gln is not None:
            transaction = f"urn:epcglobal:cbv:bt:{self.site_gln}:{_uri_text(work_order)}"
        return {"line": self.line_id, "read_point": self.read_point, "biz_location": self.biz_location,
                "timezone": self.timezone, "biz_transaction": transaction, "site_gln": self.site_gln}


def _uri_text(text: str) -> str:
    return "".join(c if c.isascii() and (c.isalnum() or c in "-._~") else f"%{ord(c):02X}" for c in text)


def event_context(context: dict[str, Any], profile: PartnerProfile) -> epcis_events.EventContext:
    """Return the event context of a batch's fixed context written with profile."""
    return epcis_events.EventContext(
        read_point=context.get("read_point"),
        biz_location=context.get("biz_location"),
        zone=ZoneInfo(str(context.get("timezone") or "UTC")),
        extensions=profile.extensions,
        rejects=profile.rejects,
        biz_transaction=context.get("biz_transaction") if profile.work_order_transaction else None,
        event_ids=profile.event_ids,
    )


def master_data(conn: sqlite3.Connection, batch_id: int) -> tuple[MasterData, ...]:
    """Return the product master data of a batch (its class pattern and regulated product name)."""
    facts = epcis_events.batch_facts(conn, batch_id)
    name_row = conn.execute("SELECT json_extract(product_json, '$.name') FROM batch WHERE id = ?",
                            (batch_id,)).fetchone()
    pattern = facts.sgtin_prefix.replace("urn:epc:id:sgtin:", "urn:epc:idpat:sgtin:") + "*"
    attributes = []
    if name_row is not None and name_row[0]:
        attributes.append(("urn:epcglobal:cbv:mda#regulatedProductName", str(name_row[0])))
    return (MasterData(epc_class=pattern, attributes=tuple(attributes)),)


@dataclass(slots=True)
class _CheckState:
    batch_id: int
    checked_to: int
    checker: Checker = field(repr=False)


def render(
    conn: sqlite3.Connection,
    msg: outbox.MessageRow,
    *,
    profile: PartnerProfile,
    context: dict[str, Any],
    schemas: EpcisSchemas | None,
    now: datetime,
    checks: _CheckState | None,
) -> tuple[Rendered, _CheckState]:
    """Render one message as its document and check it (the line's checks with the batch's history, the schema)."""
    ctx = event_context(context, profile)
    if checks is None or checks.batch_id != msg.batch_id or checks.checked_to != msg.first_outbox - 1:
        # Bring a checker up to the message's first row: the events of the batch before it, without IDs.
        checks = _CheckState(msg.batch_id, msg.first_outbox - 1, Checker(now))
        if msg.first_outbox > 1:
            earlier = epcis_events.batch_events(conn, msg.batch_id, _no_ids(ctx), last_outbox=msg.first_outbox - 1)
            checks.checker.check(earlier)
        checks.checker.checked = 0
    checks.checker.now = now
    events = list(epcis_events.batch_events(conn, msg.batch_id, ctx, first_outbox=msg.first_outbox,
                                            last_outbox=msg.last_outbox))
    refusals = checks.checker.check(events)
    checks.checker.checked = 0
    checks.checked_to = msg.last_outbox
    header = DocumentHeader(
        creation_date=datetime.fromisoformat(msg.created_at),
        sender_gln=context.get("site_gln"),
        receiver_gln=profile.receiver_gln,
        instance_id=f"{context.get('line', 'line')}.{msg.target}.{msg.batch_id}.{msg.seq}",
        master_data=master_data(conn, msg.batch_id) if profile.master_data else (),
    )
    buffer = io.BytesIO()
    written = write_document(buffer, header, events, profile)
    document = buffer.getvalue()
    problems = [f"{r}" for r in refusals]
    if written != len(events):
        problems.append(f"the profile takes {written} events per document, the message has {len(events)}")
    unchecked = None
    if schemas is not None and not problems:
        # lxml and jsonschema load only to send.
        from edge.epcis.validate import SchemaUnavailableError, validate_document  # noqa: PLC0415

        try:
            problems += [f"schema: {p}" for p in validate_document(document, schemas)]
        except SchemaUnavailableError as exc:
            # Some schemas were found (the packaged 1.2 XSDs), not this document's: as with none at all, the
            # line's own checks stand alone; failing the message would stop every delivery for a missing file.
            unchecked = str(exc)
    batch = conn.execute("SELECT work_order, lot, gtin FROM batch WHERE id = ?", (msg.batch_id,)).fetchone()
    name = profile.document_file_name(seq=msg.seq, line=str(context.get("line", "")), work_order=str(batch[0]),
                                      batch=str(msg.batch_id), lot=str(batch[1]), gtin=str(batch[2]))
    ids = tuple(e.event_id for e in events if e.event_id is not None)
    return Rendered(document, len(events), ids, name, tuple(problems), unchecked), checks


def _no_ids(ctx: epcis_events.EventContext) -> epcis_events.EventContext:
    return epcis_events.EventContext(
        read_point=ctx.read_point, biz_location=ctx.biz_location, zone=ctx.zone, extensions=ctx.extensions,
        rejects=ctx.rejects, biz_transaction=ctx.biz_transaction, event_ids=False,
    )


class TargetDelivery:
    """The queue of one upstream target: starts, cuts, renders, checks and sends its batches' messages in order."""

    def __init__(
        self,
        store: Store,
        target: UpstreamTarget,
        *,
        sender: Sender,
        facts: LineFacts,
        profile_for: Callable[[int, str], PartnerProfile],
        schemas: EpcisSchemas | None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        poll_s: float = POLL_S,
    ) -> None:
        self.target = target
        self._store = store
        self._sender = sender
        self._facts = facts
        self._profile_for = profile_for
        self._schemas = schemas
        self._clock = clock
        self._sleep = sleep
        self._poll_s = poll_s
        self._wake = asyncio.Event()
        self._checks: _CheckState | None = None
        self._told_unchecked = False
        self._last_stream_cut = 0.0
        self._backoff = Backoff(initial_s=target.retry_initial_s, max_s=target.retry_max_s)
        self._log = structlog.get_logger("lineside.upstream").bind(target=target.id)
        self.blocked: str | None = None
        """Why the queue waits for an operator (a failed message), or None."""
        self.delivered = 0
        """Messages delivered since start."""

    def wake(self) -> None:
        """Look for work now (a batch closed, an operator re-sent)."""
        self._wake.set()

    def _now(self) -> str:
        return iso_utc(self._clock())

    async def run(self) -> None:
        """Deliver until cancelled; never returns otherwise."""
        await self._store.write(lambda conn: outbox.register_target(conn, self.target.id, self._now()))
        try:
            while True:
                await self._cut()
                if not self.target.enabled:
                    await self._idle(self._poll_s)
                    continue
                msg = await self._store.read(lambda conn: outbox.next_message(conn, self.target.id))
                if msg is None:
                    self.blocked = None
                    await self._idle(self._poll_s)
                    continue
                if msg.state == "failed":
                    if self.blocked is None:
                        self._log.error("delivery waits for an operator: a message failed", batch=msg.batch_id,
                                        seq=msg.seq, reason=msg.reason)
                    self.blocked = msg.reason or "failed"
                    await self._idle(FAILED_RECHECK_S)
                    continue
                self.blocked = None
                retry_in = await self._attempt(msg)
                if retry_in is not None:
                    await self._idle(retry_in)
        finally:
            await self._sender.aclose()

    async def _idle(self, seconds: float) -> None:
        """Wait seconds, or less when woken."""
        self._wake.clear()
        waiter = asyncio.ensure_future(self._wake.wait())
        sleeper = asyncio.ensure_future(self._sleep(seconds))
        try:
            await asyncio.wait({waiter, sleeper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
            sleeper.cancel()
            # asyncio.wait raises nothing of theirs, and lets a cancellation of this task through.
            await asyncio.wait({waiter, sleeper})

    async def _cut(self) -> None:
        """Start the batches due and cut their new outbox rows into messages."""
        stream = self.target.mode == "stream"
        now = self._now()
        moment = self._clock().timestamp()
        due_stream = stream and moment - self._last_stream_cut >= self.target.stream_every_s

        def change(conn: sqlite3.Connection) -> int:
            for batch_id in outbox.batches_to_start(conn, self.target.id, stream=stream):
                market = conn.execute("SELECT market FROM batch WHERE id = ?", (batch_id,)).fetchone()[0]
                profile = self._profile_for(batch_id, str(market))
                outbox.start_batch(conn, self.target.id, batch_id, profile.model_dump(mode="json"), now)
            made = 0
            for batch_id, state in outbox.open_batches(conn, self.target.id):
                closed = state == "closed"
                if not (closed or due_stream):
                    continue
                profile = PartnerProfile.model_validate(outbox.batch_profile(conn, self.target.id, batch_id))
                facts = epcis_events.batch_facts(conn, batch_id)
                outbox.fixed_context(conn, batch_id, self._facts.proposal(facts.work_order), now)
                # A row gives at most two events (a replace, a void label), so the document stays within the limit.
                rows = max(1, profile.max_events_per_document // 2)
                made += outbox.cut(conn, self.target.id, batch_id, max_rows=rows, complete=closed, now=now)
            return made

        made = await self._store.write(change)
        if due_stream:
            self._last_stream_cut = moment
        if made:
            self._log.info("EPCIS messages queued", messages=made)

    async def _attempt(self, msg: outbox.MessageRow) -> float | None:
        """Render, check and send msg once; return the pause before the next attempt, or None to go on."""
        now = self._clock()

        def read(conn: sqlite3.Connection) -> tuple[Rendered, _CheckState]:
            profile = PartnerProfile.model_validate(outbox.batch_profile(conn, msg.target, msg.batch_id))
            context = outbox.stored_context(conn, msg.batch_id) or {}
            return render(conn, msg, profile=profile, context=context, schemas=self._schemas, now=now,
                          checks=self._checks)

        try:
            rendered, self._checks = await self._store.read(read)
        except EdgeError as exc:
            await self._end(msg, "refused", f"cannot render the message: {exc}")
            return None
        if rendered.unchecked is not None and not self._told_unchecked:
            self._told_unchecked = True
            self._log.warning("official EPCIS schema not found: documents get the line's own checks only",
                              reason=rendered.unchecked)
        if rendered.problems:
            shown = "; ".join(rendered.problems[:5])
            more = f" (and {len(rendered.problems) - 5} more)" if len(rendered.problems) > 5 else ""
            await self._end(msg, "refused", f"refused before upload: {shown}{more}")
            return None
        profile_type = content_type(await self._store.read(
            lambda conn: PartnerProfile.model_validate(outbox.batch_profile(conn, msg.target, msg.batch_id))))
        stamp = self._now()
        current = await self._store.write(lambda conn: outbox.begin_attempt(
            conn, msg.id, events=rendered.events, name=rendered.name, sha256=rendered.sha256, now=stamp))
        if current.sha256 != rendered.sha256:
            self._log.warning("message renders differently than when first sent; its event IDs decide upstream",
                              batch=msg.batch_id, seq=msg.seq)
        limit = self.target.request_timeout_s * 2 + self.target.job_timeout_s + ATTEMPT_MARGIN_S
        try:
            async with asyncio.timeout(limit):
                result = await self._sender.send(rendered.document, content_type=profile_type, name=rendered.name,
                                                 event_ids=rendered.event_ids)
        except CaptureFailed as exc:
            if exc.retryable:
                delay = self._backoff.next_delay()
                if exc.retry_after_s is not None:
                    delay = min(max(delay, exc.retry_after_s), self.target.retry_max_s)
                await self._end(msg, "retry", exc.reason, status=exc.status, capture_id=exc.capture_id)
                self._log.warning("delivery failed; retrying", batch=msg.batch_id, seq=msg.seq, reason=exc.reason,
                                  retry_in_s=round(delay, 3))
                return delay
            await self._end(msg, "failed", ("credentials refused: " if exc.auth else "") + exc.reason,
                            status=exc.status, capture_id=exc.capture_id)
            return None
        except TimeoutError:
            delay = self._backoff.next_delay()
            await self._end(msg, "retry", f"no outcome within {limit:.0f} s")
            return delay
        self._backoff.reset()
        await self._end(msg, result.outcome, result.detail, capture_id=result.capture_id)
        self.delivered += 1
        self._log.info("EPCIS message delivered", batch=msg.batch_id, seq=msg.seq, events=rendered.events,
                       outcome=result.outcome)
        return None

    async def _end(self, msg: outbox.MessageRow, outcome: outbox.AttemptOutcome, detail: str, *,
                   status: int | None = None, capture_id: str | None = None) -> None:
        stamp = self._now()
        await self._store.write(lambda conn: outbox.end_attempt(conn, msg.id, outcome, detail, now=stamp,
                                                                 status=status, capture_id=capture_id))
        if outcome in ("failed", "refused"):
            self._log.error("EPCIS message failed", batch=msg.batch_id, seq=msg.seq, reason=detail)


class CaptureSender:
    """A Sender over the EPCIS 2.0 capture client."""

    def __init__(self, client: Any) -> None:  # noqa: ANN401 - edge.sync.capture.CaptureClient, imported by the caller
        self._client = client

    async def send(self, document: bytes, *, content_type: str, name: str, event_ids: Sequence[str]) -> CaptureResult:
        del name  # a capture endpoint names nothing
        result: CaptureResult = await self._client.capture(document, content_type, event_ids=event_ids)
        return result

    async def aclose(self) -> None:
        await self._client.aclose()


class FileDropSender:
    """A Sender over a file-drop directory."""

    def __init__(self, target: Any) -> None:  # noqa: ANN401 - edge.sync.filedrop.FileDropTarget
        self._target = target

    async def send(self, document: bytes, *, content_type: str, name: str, event_ids: Sequence[str]) -> CaptureResult:
        del content_type, event_ids
        result: CaptureResult = await self._target.deliver(name, document)
        return result

    async def aclose(self) -> None:
        return None
