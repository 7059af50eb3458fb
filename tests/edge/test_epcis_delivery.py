"""Upstream delivery against the simulated EPCIS repository: every fault ends with each event stored exactly once."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime, timedelta

import pytest
import structlog.testing

from edge.aggregation import ops as agg
from edge.config.models import UpstreamTarget
from edge.epcis.events import EventContext, batch_events
from edge.epcis.profiles import PartnerProfile
from edge.epcis.validate import EpcisSchemas
from edge.serials import ops as serial_ops
from edge.serials.ops import AllocationPlan, Move, NewBatch, Origin
from edge.serials.states import BatchState, SerialState
from edge.store import Store
from edge.sync import outbox
from edge.sync.capture import CaptureClient, CaptureTimeouts
from edge.sync.delivery import CaptureSender, FileDropSender, LineFacts, TargetDelivery, event_context
from edge.sync.filedrop import FileDropTarget
from simulators.epcis_upstream import (
    DropConnection,
    EpcisUpstream,
    ErrorStatus,
    GarbageAnswer,
    Hang,
    JobFails,
    JobKeepsRunning,
    RefuseCredentials,
    RejectDocument,
    SlowAnswer,
    Unavailable,
)

S = SerialState
T0 = datetime(2026, 11, 25, 10, tzinfo=UTC)
READ_POINT = "urn:epc:id:sgln:4012345.00003.0"
BIZ_LOCATION = "urn:epc:id:sgln:4012345.00000.0"
FACTS = LineFacts("line-1", READ_POINT, BIZ_LOCATION, "Europe/Berlin", "4012345000009")
PRODUCT = {
    "id": "p", "name": "Aspirin 500 mg", "company_prefix_length": 7, "sscc_extension_digit": 0,
    "hierarchy": [{"level": "case", "contains": 4}, {"level": "pallet", "contains": 3}],
}
PROFILE = PartnerProfile(id="test", name="test", version="2.0", syntax="json-ld", identifiers="urn",
                         work_order_transaction=True, master_data=True)
TINY = 0.5  # the only real waits: request timeouts a hang must run into (long enough to validate a document)


class Clock:
    """A clock the test moves; each reading advances it a millisecond so every store change has its own time."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        self.now += timedelta(milliseconds=1)
        return self.now


async def no_wait(_seconds: float) -> None:
    await asyncio.sleep(0)


async def make_batch(store: Store, clock: Clock, *, work_order: str = "WO-1", units: int = 12,
                     rejected: int = 1, close: bool = True) -> int:
    """Run a batch through print, verdicts, cases and a pallet, then close it; return its id."""
    def now() -> str:
        return clock().isoformat().replace("+00:00", "Z")

    new = NewBatch(line_id="line-1", work_order=work_order, product_id="p", gtin="04012345000016", lot="L1",
                   expiry="281031", quantity=units, market="eu-fmd", serial_source="local", product=PRODUCT,
                   order={})
    batch_id = await store.write(lambda c: serial_ops.create_batch(c, new, now=now(), operator="mes"))
    plan = AllocationPlan(units, Origin.SEQUENTIAL, sequential_width=12)
    while await store.write(lambda c: serial_ops.release_batch(c, batch_id, plan, now=now(), operator="sv")):
        pass
    await store.write(lambda c: serial_ops.move_batch(c, batch_id, BatchState.RUNNING, now=now(), operator="op",
                                                       reason="start"))
    rows = await store.write(lambda c: serial_ops.next_to_print(c, batch_id, units, device="printer-1", now=now()))
    ids = [row[0] for row in rows]
    good = ids[: units - rejected]
    await store.write(lambda c: serial_ops.apply_moves(c, [Move(ids, S.PRINTED, "printed")], now()))
    for unit in good:  # one verdict at a time, as the camera gives them
        await store.write(lambda c, u=unit: serial_ops.apply_moves(c, [Move([u], S.COMMISSIONED, "verified")], now()))
    if rejected:
        await store.write(lambda c: serial_ops.apply_moves(c, [Move(ids[units - rejected:], S.REJECTED, "grade D")],
                                                           now()))
    pallet, on_pallet = None, 0
    for start in range(0, len(good), 4):
        chunk = good[start:start + 4]
        case = await store.write(lambda c: agg.open_container(c, batch_id, "case", now=now()))
        await store.write(lambda c, ch=chunk, k=case: agg.pack(c, k, serial_ids=ch, now=now()))
        short = "end of batch" if len(chunk) < 4 else None
        await store.write(lambda c, k=case, r=short: agg.close_container(c, k, now=now(), operator="op",
                                                                           partial_reason=r))
        if pallet is None:
            pallet = await store.write(lambda c: agg.open_container(c, batch_id, "pallet", now=now()))
        await store.write(lambda c, k=case, p=pallet: agg.pack(c, p, containers=[k], now=now()))
        on_pallet += 1
        if on_pallet == 3:
            await store.write(lambda c, p=pallet: agg.close_container(c, p, now=now()))
            pallet, on_pallet = None, 0
    if pallet is not None:
        await store.write(lambda c, p=pallet: agg.close_container(c, p, now=now(), operator="op",
                                                                    partial_reason="end of batch"))
    if close:
        await close_batch(store, clock, batch_id)
    return batch_id


async def close_batch(store: Store, clock: Clock, batch_id: int) -> None:
    stamp = clock().isoformat().replace("+00:00", "Z")
    await store.write(lambda c: serial_ops.complete_batch(c, batch_id, now=stamp, operator="op"))
    await store.write(lambda c: serial_ops.close_batch(c, batch_id, now=stamp, operator="op", return_to_pool=False))


def target(**changes) -> UpstreamTarget:
    fields = {"id": "l4", "kind": "capture", "url": "http://127.0.0.1:1", "request_timeout_s": TINY,
              "job_timeout_s": 1.0, "retry_initial_s": 0.01, "retry_max_s": 0.02}
    return UpstreamTarget.model_validate(fields | changes)


@pytest.fixture
def schemas(corpora):
    found = EpcisSchemas.locate(corpora / "gs1-EPCIS")
    assert found is not None
    return found


@pytest.fixture
async def upstream(corpora, monkeypatch):
    # The simulated repository validates against the official schemas, found through this variable.
    monkeypatch.setenv("LINESIDE_EPCIS_SCHEMAS", str(corpora / "gs1-EPCIS"))
    async with EpcisUpstream() as up:
        yield up


@pytest.fixture
async def store(tmp_path):
    async with Store.open(tmp_path / "state") as opened:
        # The target existed before the batches: a batch closed before a target was first seen is not sent.
        await opened.write(lambda c: outbox.register_target(c, "l4", "2026-11-25T00:00:00.000000Z"))
        yield opened


class Line:
    """A delivery task for one target over the store, with the fault-free parts of the world injected."""

    def __init__(self, store: Store, tgt: UpstreamTarget, sender, schemas, clock: Clock, *,
                 profile: PartnerProfile = PROFILE) -> None:
        self.delivery = TargetDelivery(store, tgt, sender=sender, facts=FACTS, profile_for=lambda _b, _m: profile,
                                       schemas=schemas, clock=clock, sleep=no_wait, poll_s=0.01)
        self.store = store
        self.task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Line:
        self.task = asyncio.create_task(self.delivery.run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.task is not None
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task

    async def status(self, batch_id: int) -> dict:
        rows = await self.store.read(lambda c: outbox.batch_status(c, self.delivery.target.id, batch_id))
        return rows[0] if rows else {"state": "not started"}

    async def until(self, batch_id: int, *states: str, limit_s: float = 20.0) -> dict:
        async with asyncio.timeout(limit_s):
            while True:
                status = await self.status(batch_id)
                if status["state"] in states:
                    return status
                await asyncio.sleep(0.01)


async def eventually(condition, limit_s: float = 10.0) -> None:
    async with asyncio.timeout(limit_s):
        while True:
            if condition():
                return
            await asyncio.sleep(0.01)


def capture_sender(url: str, *, request_s: float = 5.0, job_deadline_s: float = 0.2) -> CaptureSender:
    timeouts = CaptureTimeouts(connect_s=1.0, request_s=request_s, poll_s=1.0, poll_interval_s=0.001,
                               job_deadline_s=job_deadline_s)
    return CaptureSender(CaptureClient(url, timeouts=timeouts, sleep=no_wait))


async def expected_ids(store: Store, batch_id: int, profile: PartnerProfile = PROFILE) -> list[str]:
    def read(conn):
        context = outbox.stored_context(conn, batch_id)
        assert context is not None
        return [e.event_id for e in batch_events(conn, batch_id, event_context(context, profile))]
    return await store.read(read)


def stored_ids(up: EpcisUpstream) -> list[str]:
    return [e.event_id for e in up.stored_events]


async def test_a_closed_batch_arrives_valid_in_order_with_every_event_once(store, upstream, schemas):
    clock = Clock()
    batch_id = await make_batch(store, clock)
    async with Line(store, target(url=upstream.url), capture_sender(upstream.url), schemas, clock) as line:
        status = await line.until(batch_id, "delivered")
    ids = await expected_ids(store, batch_id)
    assert stored_ids(upstream) == ids  # exactly once, in outbox order
    assert len(set(ids)) == len(ids)
    assert status["events"] == len(ids) == 11 + 1 + 3 + 3  # 11 commissionings, a reject, 3 cases packed, 3 palletised
    assert status["messages"] == status["delivered_messages"] == 1
    assert all(job.document()["success"] for job in upstream.captures)


@pytest.mark.parametrize("fault", [
    pytest.param(ErrorStatus(500), id="500"),
    pytest.param(Unavailable(0.01), id="503-retry-after"),
    pytest.param(Hang(), id="hang"),
    pytest.param(SlowAnswer(3.0), id="slow"),
    pytest.param(DropConnection(), id="dropped"),
    pytest.param(GarbageAnswer(status=502), id="garbage-502"),
    pytest.param(JobKeepsRunning(polls=10_000), id="job-never-ends"),
])
async def test_retryable_faults_end_delivered_exactly_once(store, upstream, schemas, fault):
    clock = Clock()
    batch_id = await make_batch(store, clock)
    upstream.faults.add(fault, count=3)
    # A hang or a slow answer must run into the request timeout; everything else gets time to validate.
    sender = capture_sender(upstream.url, request_s=TINY if isinstance(fault, Hang | SlowAnswer) else 5.0)
    async with Line(store, target(url=upstream.url), sender, schemas, clock) as line:
        status = await line.until(batch_id, "delivered", "failed")
    assert status["state"] == "delivered", status["reason"]
    assert status["attempts"] >= 2
    ids = await expected_ids(store, batch_id)
    assert sorted(stored_ids(upstream)) == sorted(ids)
    assert len(stored_ids(upstream)) == len(ids)


@pytest.mark.parametrize(("fault", "words"), [
    pytest.param(RefuseCredentials(), "credentials refused", id="401"),
    pytest.param(RejectDocument(), "400", id="400"),
    pytest.param(JobFails(), "job", id="job-failed"),
])
async def test_a_permanent_failure_waits_for_a_resend_then_arrives_once(store, upstream, schemas, fault, words):
    clock = Clock()
    first = await make_batch(store, clock, work_order="WO-1")
    second = await make_batch(store, clock, work_order="WO-2")
    upstream.faults.add(fault, count=1)
    async with Line(store, target(url=upstream.url), capture_sender(upstream.url), schemas, clock) as line:
        failed = await line.until(first, "failed")
        assert words in failed["reason"]
        await asyncio.sleep(0.05)
        # Never reordered: the second batch waits behind the failed first one.
        assert (await line.status(second))["delivered_messages"] == 0
        assert not upstream.stored_events
        count = await store.write(lambda c: outbox.resend(c, "l4", first, operator="ana", reason="fixed upstream",
                                                          now="2026-11-25T11:00:00.000000Z"))
        assert count == 1
        line.delivery.wake()
        await line.until(first, "delivered")
        await line.until(second, "delivered")
    expected = [*await expected_ids(store, first), *await expected_ids(store, second)]
    assert stored_ids(upstream) == expected


async def test_a_crash_after_upstream_stored_is_a_duplicate_on_restart_not_a_second_copy(store, upstream, schemas):
    clock = Clock()
    batch_id = await make_batch(store, clock)
    # Upstream stores the document, but its capture job never says so: the line cannot know it arrived.
    upstream.faults.add(JobKeepsRunning(polls=1_000_000), count=1)
    patient = capture_sender(upstream.url, job_deadline_s=600.0)
    async with Line(store, target(url=upstream.url, job_timeout_s=600.0), patient, schemas, clock) as line:
        await eventually(lambda: upstream.stored_events)
        assert (await line.status(batch_id))["state"] == "delivering"
    # The daemon died here; a new one finds the message delivering and sends it again.
    async with Line(store, target(url=upstream.url), capture_sender(upstream.url), schemas, clock) as line:
        await line.until(batch_id, "delivered")
    ids = await expected_ids(store, batch_id)
    assert stored_ids(upstream) == ids
    history = await store.read(lambda c: outbox.attempts_of(c, outbox.messages_of(c, "l4", batch_id)[0].id))
    assert history[-1]["outcome"] == "duplicate"


async def test_a_long_batch_goes_in_several_documents_in_order(store, upstream, schemas):
    clock = Clock()
    batch_id = await make_batch(store, clock, units=30, rejected=2)
    small = PROFILE.model_copy(update={"max_events_per_document": 6})
    upstream.faults.add(ErrorStatus(503), count=2)
    async with Line(store, target(url=upstream.url), capture_sender(upstream.url), schemas, clock,
                    profile=small) as line:
        status = await line.until(batch_id, "delivered")
    assert status["messages"] > 5
    assert stored_ids(upstream) == await expected_ids(store, batch_id, small)


async def test_streaming_sends_events_while_the_batch_runs_then_the_rest_at_close(store, upstream, schemas):
    clock = Clock()
    stream = target(url=upstream.url, mode="stream", stream_every_s=0.001)
    batch_id = await make_batch(store, clock, close=False)
    async with Line(store, stream, capture_sender(upstream.url), schemas, clock) as line:
        await eventually(lambda: len(upstream.stored_events) >= 16)
        assert (await line.status(batch_id))["complete"] is False
        await close_batch(store, clock, batch_id)
        line.delivery.wake()
        await line.until(batch_id, "delivered")
    assert stored_ids(upstream) == await expected_ids(store, batch_id)


async def test_the_line_refuses_before_upload_what_upstream_would_reject(store, upstream, schemas):
    clock = Clock()
    batch_id = await make_batch(store, clock)
    no_place = LineFacts("line-1", READ_POINT, None, "UTC", None)
    async with Line(store, target(url=upstream.url), capture_sender(upstream.url), schemas, clock) as line:
        line.delivery._facts = no_place
        failed = await line.until(batch_id, "failed")
    assert "MISSINGBIZLOCATION" in failed["reason"]
    assert not upstream.stored_events


async def test_file_drop_writes_each_document_once_by_name(store, tmp_path, schemas):
    clock = Clock()
    batch_id = await make_batch(store, clock)
    drop = tmp_path / "drop"
    drop.mkdir()
    tgt = target(kind="file_drop", url=None, directory=drop)
    profile = PROFILE.model_copy(update={"file_name": "{work_order}_{seq:03d}.{ext}"})
    async with Line(store, tgt, FileDropSender(FileDropTarget(drop)), schemas, clock, profile=profile) as line:
        await line.until(batch_id, "delivered")
        await store.write(lambda c: outbox.resend(c, "l4", batch_id, operator="ana", reason="partner lost it",
                                                  now="2026-11-25T11:00:00.000000Z"))
        line.delivery.wake()
        status = await line.until(batch_id, "delivered")
    assert [p.name for p in drop.iterdir()] == ["WO-1_001.jsonld"]
    assert status["attempts"] == 2
    from edge.epcis.validate import validate_document

    assert validate_document((drop / "WO-1_001.jsonld").read_bytes(), schemas) == []


async def test_a_document_whose_schema_is_not_installed_is_sent_on_the_lines_own_checks(store, tmp_path):
    clock = Clock()
    batch_id = await make_batch(store, clock)
    drop = tmp_path / "drop"
    drop.mkdir()
    tgt = target(kind="file_drop", url=None, directory=drop)
    # Only the 1.2 XSDs (as packaged): nothing to check the JSON-LD document against.
    only_xml12 = EpcisSchemas(xsd12=tmp_path / "xsd-1.2")
    with structlog.testing.capture_logs() as logs:
        async with Line(store, tgt, FileDropSender(FileDropTarget(drop)), only_xml12, clock) as line:
            status = await line.until(batch_id, "delivered", "refused")
    assert status["state"] == "delivered"
    assert len(list(drop.iterdir())) == 1
    assert any(log["event"].startswith("official EPCIS schema not found") and "EPCIS JSON" in log["reason"]
               for log in logs)


async def test_context_is_fixed_at_first_render_so_ids_never_change(store, upstream, schemas):
    clock = Clock()
    batch_id = await make_batch(store, clock)
    async with Line(store, target(url=upstream.url), capture_sender(upstream.url), schemas, clock) as line:
        await line.until(batch_id, "delivered")
        before = await expected_ids(store, batch_id)
        line.delivery._facts = LineFacts("line-1", READ_POINT, "urn:epc:id:sgln:4012345.00009.0", "UTC", None)
        await store.write(lambda c: outbox.resend(c, "l4", batch_id, operator="ana", reason="again",
                                                  now="2026-11-25T11:00:00.000000Z"))
        line.delivery.wake()
        status = await line.until(batch_id, "delivered")
    assert await expected_ids(store, batch_id) == before
    assert status["attempts"] == 2
    assert len(upstream.stored_events) == len(before)


def test_event_context_follows_the_profile():
    ctx = event_context({"read_point": READ_POINT, "biz_location": BIZ_LOCATION, "timezone": "Europe/Berlin",
                         "biz_transaction": "urn:epcglobal:cbv:bt:4012345000009:WO-1"},
                        PROFILE.model_copy(update={"work_order_transaction": False, "rejects": "omit"}))
    assert isinstance(ctx, EventContext)
    assert ctx.biz_transaction is None
    assert ctx.rejects == "omit"

