"""EPCIS capture client against the simulated repository over real loopback: every outcome, every fault, TLS,
auth, duplicates; and the file-drop target."""

import asyncio
import datetime as dt
import errno
import hashlib
import ipaddress
import json
import os
import socket
import ssl
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge.errors import EdgeError
from edge.sync import filedrop
from edge.sync.capture import (
    BasicCredentials,
    BearerToken,
    CaptureClient,
    CaptureFailed,
    CaptureResult,
    CaptureTimeouts,
    TlsSetupError,
    _Answer,
    make_ssl_context,
)
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
    basic_event_ids,
    server_ssl_context,
    structural_problems,
)

JSONLD = "application/ld+json"
# Guards a test against hanging; no passing test comes near it, nothing here measures time.
GUARD_S = 10.0
# The client's patience where a test makes the simulator hang: tiny, it is waited out for real.
HANG_TIMEOUT_S = 0.05


def eid(n):
    return f"ni:///sha-256;{hashlib.sha256(str(n).encode()).hexdigest()}?ver=CBV2.0"


def ids(*numbers):
    return [eid(n) for n in numbers]


def event(event_id, serial=1):
    out = {
        "type": "ObjectEvent",
        "eventTime": "2026-11-01T08:00:00.000Z",
        "eventTimeZoneOffset": "+00:00",
        "epcList": [f"urn:epc:id:sgtin:0614141.107346.{serial}"],
        "action": "ADD",
        "bizStep": "commissioning",
        "disposition": "active",
    }
    if event_id is not None:
        out["eventID"] = event_id
    return out


def jsonld(event_ids):
    return json.dumps({
        "@context": ["https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld"],
        "type": "EPCISDocument",
        "schemaVersion": "2.0",
        "creationDate": "2026-11-01T08:00:00.000Z",
        "epcisBody": {"eventList": [event(e, i) for i, e in enumerate(event_ids)]},
    }).encode()


def xml(event_ids, version):
    ns = "urn:epcglobal:epcis:xsd:2" if version == "2.0" else "urn:epcglobal:epcis:xsd:1"
    events = "".join(
        "<ObjectEvent><eventTime>2026-11-01T08:00:00Z</eventTime><eventTimeZoneOffset>+00:00</eventTimeZoneOffset>"
        + (f"<eventID>{e}</eventID>" if version == "2.0" else f"<baseExtension><eventID>{e}</eventID></baseExtension>")
        + f"<epcList><epc>urn:epc:id:sgtin:0614141.107346.{i}</epc></epcList><action>ADD</action>"
        "<bizStep>urn:epcglobal:cbv:bizstep:commissioning</bizStep>"
        "<disposition>urn:epcglobal:cbv:disp:active</disposition></ObjectEvent>"
        for i, e in enumerate(event_ids)
    )
    return (
        f'<?xml version="1.0" encoding="UTF-8"?><epcis:EPCISDocument xmlns:epcis="{ns}" schemaVersion="{version}" '
        f'creationDate="2026-11-01T08:00:00Z"><EPCISBody><EventList>{events}</EventList></EPCISBody>'
        "</epcis:EPCISDocument>"
    ).encode()


class FakeTime:
    """The client's clock and sleep: a sleep advances the clock at once."""

    def __init__(self):
        self.now = 0.0
        self.sleeps = []

    def clock(self):
        return self.now

    async def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


@pytest.fixture
async def upstream():
    async with EpcisUpstream() as up:
        yield up


@pytest.fixture
async def make_client():
    made = []

    def make(url, ssl_context=None, *, request_s=GUARD_S, poll_s=GUARD_S, job_deadline_s=30.0, time=None, **kwargs):
        time = time or FakeTime()
        client = CaptureClient(
            url,
            ssl_context,
            timeouts=CaptureTimeouts(connect_s=GUARD_S, request_s=request_s, poll_s=poll_s, poll_interval_s=1.0,
                                     job_deadline_s=job_deadline_s),
            sleep=time.sleep,
            clock=time.clock,
            **kwargs,
        )
        made.append(client)
        return client

    yield make
    for client in made:
        await client.aclose()


@pytest.fixture
async def client(upstream, make_client):
    return make_client(upstream.url)


def stored_ids(up):
    return [e.event_id for e in up.stored_events]


async def capture(client, event_ids, *, document=None, content_type=JSONLD):
    async with asyncio.timeout(GUARD_S):
        return await client.capture(document or jsonld(event_ids), content_type, event_ids=event_ids)


async def failure(client, event_ids, **kwargs):
    with pytest.raises(CaptureFailed) as caught:
        await capture(client, event_ids, **kwargs)
    return caught.value


# --- stored, duplicate, partial duplicate ------------------------------------------------------------------


async def test_a_document_is_stored_through_its_capture_job(upstream, client):
    result = await capture(client, ids(1, 2, 3))

    assert result.outcome == "stored"
    assert result.capture_id == upstream.captures[0].capture_id
    assert stored_ids(upstream) == ids(1, 2, 3)
    assert upstream.captures[0].polls == 1
    sent = {k.lower(): v for k, v in upstream.captures[0].headers.items()}
    assert sent["gs1-capture-error-behaviour"] == "rollback"
    assert sent["gs1-epcis-version"] == "2.0.0"
    assert sent["gs1-cbv-version"] == "2.0.0"


@pytest.mark.parametrize(
    ("content_type", "version"), [("application/xml", "2.0"), ("application/xml", "1.2"), ("text/xml", "1.2")]
)
async def test_xml_documents_of_epcis_2_0_and_1_2_are_stored(upstream, client, content_type, version):
    result = await capture(client, ids(1, 2), document=xml(ids(1, 2), version), content_type=content_type)

    assert result.outcome == "stored"
    assert stored_ids(upstream) == ids(1, 2)
    assert {e.media_type for e in upstream.stored_events} == {content_type}


async def test_plain_json_is_taken_like_json_ld(upstream, client):
    assert (await capture(client, ids(1), content_type="application/json")).outcome == "stored"


async def test_a_document_sent_again_is_a_duplicate_and_stored_once(upstream, client):
    await capture(client, ids(1, 2))
    again = await capture(client, ids(1, 2))

    assert again == CaptureResult("duplicate", None, again.detail)
    assert "all 2 events" in again.detail
    assert stored_ids(upstream) == ids(1, 2)


async def test_a_partial_duplicate_is_not_delivered(upstream, client):
    await capture(client, ids(1, 2))
    failed = await failure(client, ids(2, 3))

    assert (failed.retryable, failed.auth, failed.status) == (False, False, 409)
    assert "already holds 1 of this document's 2 events" in failed.reason
    assert eid(3) in failed.reason
    assert stored_ids(upstream) == ids(1, 2), "all or nothing: event 3 must not be stored"


async def test_a_409_naming_events_outside_the_document_is_not_delivered(upstream, client):
    await capture(client, ids(1))
    # The caller names other IDs than the document holds: upstream's duplicates are not ours.
    failed = await failure(client, ids(7), document=jsonld(ids(1)))

    assert not failed.retryable
    assert failed.status == 409
    assert "not in this document" in failed.reason
    assert eid(1) in failed.reason


async def test_a_409_that_names_no_event_ids_is_not_taken_as_delivered(upstream, client):
    upstream.faults.add(ErrorStatus(409))
    failed = await failure(client, ids(1))

    assert not failed.retryable
    assert failed.status == 409
    assert "without listing the event IDs" in failed.reason


async def test_duplicates_reported_by_the_capture_job_are_judged_the_same_way(make_client):
    async with EpcisUpstream(duplicates="job") as up:
        client = make_client(up.url)
        await capture(client, ids(1, 2))

        again = await capture(client, ids(1, 2))
        assert again.outcome == "duplicate"
        assert again.capture_id == up.captures[-1].capture_id

        failed = await failure(client, ids(2, 3))
        assert not failed.retryable
        assert failed.capture_id == up.captures[-1].capture_id
        assert "already holds 1 of this document's 2 events" in failed.reason
        assert stored_ids(up) == ids(1, 2)


async def test_events_without_an_event_id_are_held_under_their_hash(make_client):
    document = jsonld([None, None])
    hashes_ = [h for _, h in basic_event_ids(document)]
    assert len(set(hashes_)) == 2

    async with EpcisUpstream(extractor=basic_event_ids) as up:
        result = await capture(make_client(up.url), hashes_, document=document)

    assert result.outcome == "stored"
    assert [e.stated_id for e in up.stored_events] == [None, None]
    assert [e.event_id for e in up.stored_events] == hashes_


async def test_the_event_hash_is_edge_epcis_hashing_when_it_is_there(upstream, client):
    hashing = pytest.importorskip("edge.epcis.hashing")
    document = jsonld([None, eid(2)])
    expected = hashing.document_events_with_ids(document)
    hashed = expected[0][1]

    await capture(client, [hashed, eid(2)], document=document)

    assert [(e.stated_id, e.event_hash) for e in upstream.stored_events] == expected
    assert stored_ids(upstream) == [hashed, eid(2)]


# --- faults: retryable, permanent, auth -------------------------------------------------------------------

RETRYABLE = [
    pytest.param(ErrorStatus(500), 500, "answered 500", id="500"),
    pytest.param(ErrorStatus(502), 502, "answered 502", id="502"),
    pytest.param(ErrorStatus(429), 429, "answered 429", id="429"),
    pytest.param(ErrorStatus(408), 408, "answered 408", id="408"),
    pytest.param(Unavailable(retry_after_s=7), 503, "answered 503", id="503"),
    pytest.param(DropConnection(), None, "connection to", id="drop"),
]


@pytest.mark.parametrize(("fault", "status", "words"), RETRYABLE)
async def test_faults_worth_retrying(upstream, client, fault, status, words):
    upstream.faults.add(fault)
    failed = await failure(client, ids(1))

    assert (failed.retryable, failed.auth, failed.status) == (True, False, status)
    assert words in failed.reason
    assert stored_ids(upstream) == []
    assert upstream.faults.pending == ()
    if isinstance(fault, Unavailable):
        assert failed.retry_after_s == 7


PERMANENT = [
    pytest.param(RejectDocument(), 400, "malformed", id="400"),
    pytest.param(ErrorStatus(404), 404, "refused the capture with 404", id="404"),
    pytest.param(ErrorStatus(422), 422, "refused the capture with 422", id="422"),
    pytest.param(GarbageAnswer(), 202, "202 without a Location", id="garbage-202"),
    pytest.param(GarbageAnswer(status=400), 400, "not json", id="garbage-400"),
    pytest.param(GarbageAnswer(status=200), 200, "not 202", id="garbage-200"),
]


@pytest.mark.parametrize(("fault", "status", "words"), PERMANENT)
async def test_faults_that_are_permanent(upstream, client, fault, status, words):
    upstream.faults.add(fault)
    failed = await failure(client, ids(1))

    assert (failed.retryable, failed.auth, failed.status) == (False, False, status)
    assert words in failed.reason
    assert stored_ids(upstream) == []


@pytest.mark.parametrize(("fault", "status"), [(RefuseCredentials(), 401), (ErrorStatus(403), 403)])
async def test_refused_credentials_are_told_apart(upstream, client, fault, status):
    upstream.faults.add(fault)
    failed = await failure(client, ids(1))

    assert (failed.retryable, failed.auth, failed.status) == (False, True, status)
    assert "credentials" in failed.reason


async def test_a_hanging_upstream_times_out_and_is_retryable(upstream, make_client):
    client = make_client(upstream.url, request_s=HANG_TIMEOUT_S)
    upstream.faults.add(Hang())
    failed = await failure(client, ids(1))

    assert failed.retryable
    assert failed.status is None
    assert f"no answer from 127.0.0.1:{upstream.url.rsplit(':', 1)[1]} within" in failed.reason


async def test_a_slow_answer_within_the_timeout_is_fine(upstream, client):
    upstream.faults.add(SlowAnswer(delay_s=0.01))
    assert (await capture(client, ids(1))).outcome == "stored"


async def test_a_job_that_fails_is_permanent_and_stores_nothing(upstream, client):
    upstream.faults.add(JobFails())
    failed = await failure(client, ids(1))

    assert not failed.retryable
    assert not failed.auth
    assert failed.capture_id == upstream.captures[0].capture_id
    assert "finished without storing" in failed.reason
    assert "injected fault" in failed.reason
    assert stored_ids(upstream) == []


async def test_a_job_running_for_a_few_polls_is_followed_to_its_end(upstream, make_client):
    time = FakeTime()
    client = make_client(upstream.url, time=time)
    upstream.faults.add(JobKeepsRunning(polls=3))

    result = await capture(client, ids(1))

    assert result.outcome == "stored"
    assert upstream.captures[0].polls == 4
    assert time.sleeps == [1.0, 1.0, 1.0]


async def test_a_job_still_running_at_its_deadline_is_retryable_and_a_resend_is_a_duplicate(upstream, make_client):
    time = FakeTime()
    client = make_client(upstream.url, time=time, job_deadline_s=5.0)
    upstream.faults.add(JobKeepsRunning(polls=100))

    failed = await failure(client, ids(1, 2))
    assert failed.retryable
    assert "still running after 5 s" in failed.reason
    assert failed.capture_id == upstream.captures[0].capture_id
    assert upstream.captures[0].polls == 6

    again = await capture(client, ids(1, 2))
    assert again.outcome == "duplicate"
    assert stored_ids(upstream) == ids(1, 2)


@pytest.mark.parametrize(
    ("fault", "retryable", "words"),
    [
        (ErrorStatus(500), True, "answered 500 to a poll"),
        (ErrorStatus(404), True, "answered 404 to a poll"),
        (Unavailable(), True, "answered 503 to a poll"),
        # aiohttp re-sends an idempotent GET once on a fresh connection by itself: drop both.
        (DropConnection(), True, "connection to"),
        (GarbageAnswer(), False, "not JSON"),
        (ErrorStatus(400), False, "answered 400 to a poll"),
        (RefuseCredentials(), False, "credentials refused"),
    ],
)
async def test_faults_on_the_job_poll(upstream, client, fault, retryable, words):
    upstream.faults.add(fault, on="poll", count=2 if isinstance(fault, DropConnection) else 1)
    failed = await failure(client, ids(1))

    assert failed.retryable is retryable
    assert failed.auth is isinstance(fault, RefuseCredentials)
    assert words in failed.reason
    assert failed.capture_id == upstream.captures[0].capture_id


async def test_a_poll_that_hangs_times_out(upstream, make_client):
    client = make_client(upstream.url, poll_s=HANG_TIMEOUT_S)
    upstream.faults.add(Hang(), on="poll")
    failed = await failure(client, ids(1))

    assert failed.retryable
    assert "capture job job-1: no answer" in failed.reason


async def test_nothing_listening_is_retryable(make_client):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = make_client(f"http://127.0.0.1:{port}")
    failed = await failure(client, ids(1))

    assert failed.retryable
    assert failed.status is None
    assert "cannot connect" in failed.reason


async def test_fault_retry_success_stores_each_event_exactly_once(upstream, make_client):
    time = FakeTime()
    client = make_client(upstream.url, time=time, job_deadline_s=3.0)
    upstream.faults.add(ErrorStatus(500))
    upstream.faults.add(Unavailable(retry_after_s=2))
    upstream.faults.add(DropConnection())
    upstream.faults.add(ErrorStatus(502), on="poll")
    documents = {"batch-a": ids(1, 2, 3), "batch-b": ids(4, 5)}
    outcomes = {name: [] for name in documents}

    async def deliver(name):
        for _ in range(10):  # the delivery loop's retries, its backoff left out
            try:
                result = await capture(client, documents[name])
            except CaptureFailed as failed:
                outcomes[name].append("retry" if failed.retryable else failed.reason)
                continue
            outcomes[name].append(result.outcome)
            return
        pytest.fail(f"{name} never delivered: {outcomes[name]}")

    await deliver("batch-a")
    upstream.faults.add(JobKeepsRunning(polls=50))
    await deliver("batch-b")

    # 500, 503, dropped: nothing stored; then stored but its poll failed; the re-send finds it all held.
    assert outcomes == {"batch-a": ["retry"] * 4 + ["duplicate"], "batch-b": ["retry", "duplicate"]}
    assert stored_ids(upstream) == ids(1, 2, 3, 4, 5)
    assert upstream.faults.pending == ()


async def test_cancelling_a_capture_cancels_it(make_client):
    arrived, release = asyncio.Event(), asyncio.Event()

    async def held(_seconds):
        arrived.set()
        await release.wait()

    async with EpcisUpstream(sleep=held) as up:
        up.faults.add(SlowAnswer(delay_s=1.0))
        client = make_client(up.url)
        task = asyncio.create_task(client.capture(jsonld(ids(1)), JSONLD, event_ids=ids(1)))
        async with asyncio.timeout(GUARD_S):
            await arrived.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        release.set()


async def test_the_client_is_single_use_after_aclose(upstream, client):
    await capture(client, ids(1))
    await client.aclose()
    await client.aclose()
    with pytest.raises(RuntimeError):
        await client.capture(jsonld(ids(2)), JSONLD, event_ids=ids(2))


# --- what the simulated repository refuses -----------------------------------------------------------------


async def test_an_invalid_document_is_refused_with_the_problems_named(make_client):
    async with EpcisUpstream(validator=structural_problems) as up:
        client = make_client(up.url)
        broken = json.dumps({"@context": [], "type": "EPCISDocument", "epcisBody": {}}).encode()
        failed = await failure(client, ids(1), document=broken)

    assert not failed.retryable
    assert failed.status == 400
    assert "no epcisBody eventList" in failed.reason


async def test_a_document_whose_body_is_not_its_declared_type_is_refused(upstream, client):
    failed = await failure(client, ids(1), document=xml(ids(1), "2.0"), content_type=JSONLD)
    assert failed.status == 400
    assert "declared application/ld+json but the body is xml" in failed.reason


async def test_an_unsupported_media_type_is_refused(upstream, client):
    failed = await failure(client, ids(1), content_type="text/csv")
    assert not failed.retryable
    assert failed.status == 415
    assert "text/csv" in failed.reason


async def test_too_many_events_for_one_capture_is_refused_with_the_limit(make_client):
    async with EpcisUpstream(capture_limit=2) as up:
        client = make_client(up.url)
        failed = await failure(client, ids(1, 2, 3))
        options = await _raw(up, "OPTIONS", "/capture")

    assert not failed.retryable
    assert failed.status == 413
    assert "GS1-EPCIS-Capture-Limit: 2" in failed.reason
    assert options[1]["GS1-EPCIS-Capture-Limit"] == "2"


async def test_a_document_over_the_size_limit_is_refused(make_client):
    async with EpcisUpstream(max_document_bytes=200) as up:
        client = make_client(up.url)
        failed = await failure(client, ids(1, 2, 3))

    assert failed.status == 413
    assert "GS1-EPCIS-Capture-File-Size-Limit: 200" in failed.reason


async def test_a_validator_that_breaks_answers_500(make_client):
    def broken(data):
        raise KeyError("boom")

    async with EpcisUpstream(validator=broken) as up:
        failed = await failure(make_client(up.url), ids(1))

    assert failed.retryable
    assert failed.status == 500
    assert "KeyError" in failed.reason


async def test_greedy_capture_stores_the_new_events_and_reports_the_duplicates(upstream, client):
    await capture(client, ids(1))
    status, headers, _ = await _raw(
        upstream, "POST", "/capture", data=jsonld(ids(1, 2)),
        headers={"Content-Type": JSONLD, "GS1-Capture-Error-Behaviour": "proceed"},
    )
    assert status == 202
    _, _, job = await _raw(upstream, "GET", headers["Location"])

    assert job["success"] is False
    assert job["captureErrorBehaviour"] == "proceed"
    assert job["errors"][0]["eventIDs"] == ids(1)
    assert stored_ids(upstream) == ids(1, 2)


async def test_the_real_schemas_validate_when_they_are_on_the_machine(corpora, monkeypatch, make_client):
    pytest.importorskip("edge.epcis.validate")
    monkeypatch.setenv("LINESIDE_EPCIS_SCHEMAS", str(corpora / "gs1-EPCIS"))
    async with EpcisUpstream() as up:
        client = make_client(up.url)
        assert (await capture(client, ids(1))).outcome == "stored"
        assert (await capture(client, ids(2), document=xml(ids(2), "2.0"), content_type="application/xml")).outcome == (
            "stored"
        )
        wrong = json.loads(jsonld(ids(3)))
        wrong["epcisBody"]["eventList"][0]["action"] = "SHIP"
        failed = await failure(client, ids(3), document=json.dumps(wrong).encode())

    assert failed.status == 400
    assert "event 0" in failed.reason


@pytest.mark.corpora
def test_the_stand_in_check_takes_every_example_event_document(corpora):
    root = corpora / "gs1-EPCIS"
    documents = sorted([*root.glob("JSON/**/*.json*"), *root.glob("XML/**/*.xml")])
    events = 0
    for path in documents:
        data = path.read_bytes()
        if b"EPCISCaptureJob" in data[:400] or b"EPCISMasterDataDocument" in data[:400]:
            continue  # not event documents
        assert structural_problems(data) == [], path
        events += len(basic_event_ids(data))
    assert events > 50


# --- inspection endpoints and faults over HTTP ------------------------------------------------------------


async def _raw(up, method, path, **kwargs):
    async with (
        aiohttp.ClientSession() as session,
        asyncio.timeout(GUARD_S),
        session.request(method, up.url + path, **kwargs) as resp,
    ):
        body = await resp.read()
        return resp.status, resp.headers, json.loads(body) if body else None


async def test_faults_events_jobs_and_stats_over_http(upstream, client):
    status, _, pending = await _raw(
        upstream, "POST", "/faults",
        json=[{"kind": "status", "status": 500, "count": 2}, {"kind": "job_running", "polls": 1}],
    )
    assert status == 200
    assert [f["kind"] for f in pending["pending"]] == ["status", "job_running"]
    assert (await _raw(upstream, "POST", "/faults", json={"kind": "meltdown"}))[0] == 400
    assert (await _raw(upstream, "POST", "/faults", json={"kind": "status", "status": 200}))[0] == 400

    for _ in range(2):
        assert (await failure(client, ids(1))).status == 500
    await capture(client, ids(1, 2))
    await capture(client, ids(3))

    _, _, events = await _raw(upstream, "GET", "/events")
    assert [e["eventID"] for e in events["events"]] == ids(1, 2, 3)
    assert events["total"] == 3
    _, _, page = await _raw(upstream, "GET", "/events?offset=1&limit=1")
    assert [e["eventID"] for e in page["events"]] == ids(2)

    status, headers, jobs = await _raw(upstream, "GET", "/capture?perPage=1")
    assert status == 200
    assert [j["captureID"] for j in jobs] == ["job-1"]
    assert 'rel="next"' in headers["Link"]
    _, _, jobs = await _raw(upstream, "GET", "/capture?perPage=1&nextPageToken=1")
    assert [j["captureID"] for j in jobs] == ["job-2"]

    _, _, stats = await _raw(upstream, "GET", "/stats")
    assert stats["storedEvents"] == 3
    assert stats["faultsFired"] == {"status": 2, "job_running": 1}
    assert stats["answers"]["500"] == 2

    for bad in ({"kind": "hang", "count": 0}, {"kind": "job_failed", "on": "poll"}, [{"kind": "hang"}, {"kind": "x"}]):
        assert (await _raw(upstream, "POST", "/faults", json=bad))[0] == 400
    assert upstream.faults.pending == ()

    await _raw(upstream, "POST", "/faults", json={"kind": "hang"})
    assert (await _raw(upstream, "DELETE", "/faults"))[0] == 204
    assert (await _raw(upstream, "GET", "/faults"))[2] == {"pending": []}


def test_faults_are_checked_when_queued():
    up = EpcisUpstream()
    with pytest.raises(ValueError, match=r"400\.\.599"):
        ErrorStatus(200)
    with pytest.raises(ValueError, match="on must be 'capture'"):
        up.faults.add(JobFails(), on="poll")
    with pytest.raises(ValueError, match="at least once"):
        up.faults.add(Hang(), count=0)


# --- auth ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("server", "given", "ok"),
    [
        ({"token": "s3cret-token"}, BearerToken("s3cret-token"), True),
        ({"token": "s3cret-token"}, BearerToken("wrong-token"), False),
        ({"token": "s3cret-token"}, None, False),
        ({"basic": ("line3", "pa55word")}, BasicCredentials("line3", "pa55word"), True),
        ({"basic": ("line3", "pa55word")}, BasicCredentials("line3", "wrong-pass"), False),
        ({"basic": ("line3", "pa55word")}, BearerToken("pa55word"), False),
    ],
)
async def test_credentials(make_client, server, given, ok):
    async with EpcisUpstream(**server) as up:
        client = make_client(up.url, auth=given)
        if ok:
            assert (await capture(client, ids(1))).outcome == "stored"
            return
        failed = await failure(client, ids(1))

    assert (failed.retryable, failed.auth, failed.status) == (False, True, 401)
    for secret in ("s3cret-token", "wrong-token", "pa55word", "wrong-pass"):
        assert secret not in failed.reason
        assert secret not in repr(failed)
    assert stored_ids(up) == []


def test_secrets_stay_out_of_reprs_and_urls():
    assert "tok" not in repr(BearerToken("tok-123"))
    assert "pw-123" not in repr(BasicCredentials("user", "pw-123"))
    with pytest.raises(ValueError, match="belong in auth"):
        CaptureClient("https://user:pw@example.com/epcis")
    with pytest.raises(ValueError, match="http"):
        CaptureClient("ftp://example.com")
    with pytest.raises(ValueError, match="line breaks"):
        BearerToken("abc\r\nX-Evil: 1")


# --- TLS ----------------------------------------------------------------------------------------------------


def _key():
    return ec.generate_private_key(ec.SECP256R1())


def _cert(subject, key, issuer, issuer_key, *, ca=False, usage=None, sans=()):
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False
        )
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
    if usage is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(sans)), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _write(path, *items):
    data = b""
    for item in items:
        if isinstance(item, x509.Certificate):
            data += item.public_bytes(serialization.Encoding.PEM)
        else:
            data += item.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
    path.write_bytes(data)
    return path


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """A throwaway CA, a server certificate for 127.0.0.1 and a client certificate, as PEM files."""
    root = tmp_path_factory.mktemp("pki")
    ca_key, server_key, client_key, other_key = _key(), _key(), _key(), _key()
    ca = _cert("Test CA", ca_key, "Test CA", ca_key, ca=True)
    other_ca = _cert("Other CA", other_key, "Other CA", other_key, ca=True)
    server = _cert(
        "upstream", server_key, "Test CA", ca_key, usage=ExtendedKeyUsageOID.SERVER_AUTH,
        sans=[x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")],
    )
    client = _cert("line-3", client_key, "Test CA", ca_key, usage=ExtendedKeyUsageOID.CLIENT_AUTH)
    encrypted = client_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret"),
    )
    (root / "client-encrypted.key").write_bytes(encrypted)
    return {
        "ca": _write(root / "ca.pem", ca),
        "other_ca": _write(root / "other-ca.pem", other_ca),
        "server_cert": _write(root / "server.pem", server),
        "server_key": _write(root / "server.key", server_key),
        "client_cert": _write(root / "client.pem", client),
        "client_key": _write(root / "client.key", client_key),
        "client_combined": _write(root / "client-combined.pem", client, client_key),
        "other_key": _write(root / "other.key", other_key),
        "client_key_encrypted": root / "client-encrypted.key",
        "root": root,
    }


@asynccontextmanager
async def tls_upstream(pki, *, client_ca=True):
    context = server_ssl_context(pki["server_cert"], pki["server_key"], pki["ca"] if client_ca else None)
    async with EpcisUpstream(tls=context) as up:
        yield up


async def test_tls_with_a_ca_bundle_and_a_client_certificate(pki, make_client):
    async with tls_upstream(pki) as up:
        assert up.url.startswith("https://127.0.0.1:")
        context = make_ssl_context(pki["ca"], pki["client_cert"], pki["client_key"])
        client = make_client(up.url, context)
        assert (await capture(client, ids(1))).outcome == "stored"
        combined = make_client(up.url, make_ssl_context(pki["ca"], pki["client_combined"], None))
        assert (await capture(combined, ids(1))).outcome == "duplicate"


async def test_tls_with_an_untrusted_server_is_permanent(pki, make_client):
    async with tls_upstream(pki, client_ca=False) as up:
        client = make_client(up.url, make_ssl_context(pki["other_ca"], None, None))
        failed = await failure(client, ids(1))

    assert not failed.retryable
    assert not failed.auth
    assert "certificate is not trusted" in failed.reason


async def test_tls_without_our_client_certificate_fails_and_says_why(pki, make_client):
    async with tls_upstream(pki) as up:
        client = make_client(up.url, make_ssl_context(pki["ca"], None, None))
        failed = await failure(client, ids(1))

    # The server resets the connection (its TLS alert is lost with it): from here a network fault, retried,
    # with the likely cause named. When the alert does arrive, the failure is an auth failure instead.
    if failed.auth:
        assert not failed.retryable
        assert "refused our TLS client certificate" in failed.reason
    else:
        assert failed.retryable
        assert "may be refusing our TLS client certificate" in failed.reason
    assert stored_ids(up) == []


def test_ssl_context_is_tls_1_2_or_newer_and_verifies(pki):
    context = make_ssl_context(pki["ca"], None, None)
    assert context.minimum_version >= ssl.TLSVersion.TLSv1_2
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname


@pytest.mark.parametrize(
    ("files", "words"),
    [
        ({"ca_file": "missing.pem"}, "CA bundle {root}/missing.pem: cannot read it"),
        ({"ca_file": "client.key"}, "CA bundle {root}/client.key: not PEM certificates"),
        ({"client_cert": "missing.pem"}, "client certificate {root}/missing.pem: cannot read it"),
        ({"client_cert": "client.pem", "client_key": "missing.key"}, "client key {root}/missing.key: cannot read"),
        ({"client_cert": "client.pem", "client_key": "other.key"}, "not a PEM certificate and its matching"),
        ({"client_cert": "client.pem", "client_key": "client-encrypted.key"}, "encrypted"),
        ({"client_key": "client.key"}, "without a client certificate"),
    ],
)
def test_ssl_context_errors_name_the_file(pki, files, words):
    root = pki["root"]
    args = {"ca_file": None, "client_cert": None, "client_key": None}
    args.update({k: root / v for k, v in files.items()})
    with pytest.raises(TlsSetupError) as caught:
        make_ssl_context(**args)
    assert words.format(root=root) in str(caught.value)
    assert isinstance(caught.value, EdgeError)


# --- malformed answers from a repository that is not our simulator --------------------------------------------


@asynccontextmanager
async def stub(post, job=None):
    """A one-route repository answering POST /capture with post() and GET /capture/x with job()."""
    app = web.Application()

    async def on_post(request):
        await request.read()
        return post(request)

    async def on_job(request):
        return job(request)

    app.router.add_post("/epcis/capture", on_post)
    if job is not None:
        app.router.add_get("/epcis/capture/x", on_job)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        yield f"http://127.0.0.1:{runner.addresses[0][1]}/epcis/"
    finally:
        await runner.cleanup()


def accepted(_request):
    return web.Response(status=202, headers={"Location": "capture/x"})


@pytest.mark.parametrize(
    ("job", "words"),
    [
        ([1, 2], "a JSON list, not an object"),
        ({"running": "no"}, "'running' is missing or not true/false"),
        ({"running": False}, "'success' is missing"),
        ({"running": False, "success": False, "errors": "bad"}, "'errors' is not a list"),
        ({"captureID": "y", "running": False, "success": True}, "of capture 'y'"),
    ],
)
async def test_malformed_job_documents_are_reported_not_crashed_on(make_client, job, words):
    async with stub(accepted, lambda _r: web.json_response(job)) as url:
        failed = await failure(make_client(url), ids(1))
    assert not failed.retryable
    assert failed.reason.startswith("malformed answer from upstream: capture job x:")
    assert words in failed.reason


async def test_job_errors_are_summarised(make_client):
    errors = [{"type": "t", "title": f"problem {i}", "detail": "d"} for i in range(5)]
    finished = {"running": False, "success": False, "errors": errors}
    async with stub(accepted, lambda _r: web.json_response(finished)) as url:
        failed = await failure(make_client(url), ids(1))
    assert "problem 0: d; problem 1: d; problem 2: d (and 2 more errors)" in failed.reason


@pytest.mark.parametrize(
    ("answer", "words"),
    [
        (lambda: web.Response(status=202, headers={"Location": "http://elsewhere.example/x"}), "another server"),
        (lambda: web.Response(status=302, headers={"Location": "/login"}), "redirected the capture (302)"),
        (lambda: web.Response(status=200, text="<html>login</html>"), "not 202 with a capture job"),
        (lambda: web.Response(status=409, text="dup"), "without listing the event IDs"),
        (lambda: web.Response(status=400, body=b"\xff" * 5000), "refused the capture with 400"),
        (lambda: web.Response(status=202, headers={"Location": "mailto:ops@example.com"}), "unusable Location"),
        (lambda: web.Response(status=202, headers={"Location": "?page=2"}), "names no capture job"),
    ],
)
async def test_odd_capture_answers(make_client, answer, words):
    async with stub(lambda _r: answer()) as url:
        failed = await failure(make_client(url), ids(1))
    assert not failed.retryable
    assert words in failed.reason
    assert len(failed.reason) < 1000


async def test_an_answer_that_is_not_http_is_malformed_and_keeps_our_headers_out(make_client):
    async def not_http(reader, writer):
        await reader.read(100)
        writer.write(b"SSH-2.0-OpenSSH_9.2\r\n\r\n")
        await writer.drain()
        writer.close()
        await writer.wait_closed()

    server = await asyncio.start_server(not_http, "127.0.0.1", 0)
    try:
        port = server.sockets[0].getsockname()[1]
        client = make_client(f"http://127.0.0.1:{port}", auth=BearerToken("tok-abc"))
        failed = await failure(client, ids(1))
    finally:
        server.close()
        await server.wait_closed()

    assert not failed.retryable
    assert "did not answer in HTTP" in failed.reason
    # The request (and its token) must not ride along in the chain.
    assert failed.__cause__ is None
    assert failed.__suppress_context__


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
job_like = st.fixed_dictionaries(
    {},
    optional={
        "captureID": st.sampled_from(["x", "y"]) | json_values,
        "running": st.booleans() | json_values,
        "success": st.booleans() | json_values,
        "errors": st.lists(st.fixed_dictionaries({}, optional={
            "type": st.just("epcisException:ResourceAlreadyExistsException") | json_values,
            "status": st.just(409) | json_values,
            "eventIDs": st.lists(st.sampled_from(ids(1, 2, 3)), max_size=4) | json_values,
        }), max_size=3) | json_values,
    },
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(job=job_like | json_values, status=st.sampled_from([200, 200, 200, 404, 409, 500, 302, 401]))
def test_any_job_answer_is_a_job_or_a_capture_failed(job, status):
    client = CaptureClient("http://127.0.0.1:1")
    answer = _Answer(status, {"Content-Type": "application/json"}, json.dumps(job).encode(), True)
    try:
        parsed = client._job(answer, "x")
    except CaptureFailed as failed:
        refused = failed
    else:
        assert isinstance(parsed.running, bool)
        assert parsed.running or isinstance(parsed.success, bool)
        return
    assert refused.reason
    assert refused.capture_id == "x"


@settings(max_examples=300, deadline=None)
@given(body=json_values | job_like, named=st.lists(st.sampled_from(ids(1, 2, 3, 4)), max_size=5))
def test_any_409_answer_is_delivered_only_when_it_names_exactly_the_documents_events(body, named):
    from edge.sync.capture import _judge_409

    ours = tuple(ids(1, 2, 3))
    if isinstance(body, dict) and named:
        body = {**body, "eventIDs": named}
    answer = _Answer(409, {}, json.dumps(body).encode(), True)
    try:
        detail = _judge_409(answer, ours)
    except CaptureFailed as failed:
        refused = failed
    else:
        assert set(body["eventIDs"]) == set(ours), detail
        return
    assert not refused.retryable
    assert refused.status == 409


async def test_a_relative_location_under_a_base_path_is_followed(make_client):
    async with stub(accepted, lambda _r: web.json_response({"running": False, "success": True})) as url:
        result = await capture(make_client(url), ids(1))
    assert result == CaptureResult("stored", "x", result.detail)


# --- file drop ------------------------------------------------------------------------------------------------


async def test_file_drop_writes_atomically(tmp_path, monkeypatch):
    target = FileDropTarget(tmp_path)
    seen_while_writing = []
    fsynced = []
    real_write, real_fsync = os.write, os.fsync

    def spy_write(fd, data):
        seen_while_writing.append(sorted(p.name for p in tmp_path.iterdir()))
        return real_write(fd, data)

    def spy_fsync(fd):
        fsynced.append(Path(f"/proc/self/fd/{fd}").readlink())
        return real_fsync(fd)

    monkeypatch.setattr(filedrop.os, "write", spy_write)
    monkeypatch.setattr(filedrop.os, "fsync", spy_fsync)

    result = await target.deliver("batch-1.jsonld", b"{}" * 1000)

    assert result.outcome == "stored"
    assert result.capture_id is None
    assert (tmp_path / "batch-1.jsonld").read_bytes() == b"{}" * 1000
    assert [p.name for p in tmp_path.iterdir()] == ["batch-1.jsonld"]
    assert all(len(names) == 1 and names[0].startswith(".batch-1.jsonld.") for names in seen_while_writing)
    assert fsynced[-1] == tmp_path, "the folder is flushed after the rename"
    assert len(fsynced) == 2
    assert (tmp_path / "batch-1.jsonld").stat().st_mode & 0o777 == 0o644


async def test_file_drop_is_idempotent_by_name_and_content(tmp_path):
    target = FileDropTarget(tmp_path)
    await target.deliver("a.xml", b"<a/>")

    again = await target.deliver("a.xml", b"<a/>")
    assert again.outcome == "duplicate"

    with pytest.raises(CaptureFailed) as caught:
        await target.deliver("a.xml", b"<b/>")
    assert not caught.value.retryable
    assert str(tmp_path / "a.xml") in caught.value.reason
    assert "other content" in caught.value.reason
    with pytest.raises(CaptureFailed, match="other content"):
        await target.deliver("a.xml", b"<a/>" * 2)
    assert (tmp_path / "a.xml").read_bytes() == b"<a/>"


async def test_file_drop_into_a_missing_folder_is_permanent(tmp_path):
    with pytest.raises(CaptureFailed) as caught:
        await FileDropTarget(tmp_path / "gone").deliver("a.xml", b"<a/>")
    assert not caught.value.retryable
    assert "does not exist" in caught.value.reason


async def test_file_drop_into_a_readonly_folder_is_permanent(tmp_path, monkeypatch):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    if os.access(folder, os.W_OK):  # root writes anyway: fail the way a read-only mount does
        def readonly(*_args, **_kwargs):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS))

        monkeypatch.setattr(filedrop.tempfile, "mkstemp", readonly)
    try:
        with pytest.raises(CaptureFailed) as caught:
            await FileDropTarget(folder).deliver("a.xml", b"<a/>")
    finally:
        folder.chmod(0o755)
    assert not caught.value.retryable
    assert f"cannot write {folder / 'a.xml'}" in caught.value.reason
    assert "writable" in caught.value.reason


async def test_file_drop_on_a_full_disk_is_retryable_and_leaves_nothing(tmp_path, monkeypatch):
    def full(_fd, _data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(filedrop.os, "write", full)
    with pytest.raises(CaptureFailed) as caught:
        await FileDropTarget(tmp_path).deliver("a.xml", b"<a/>")

    assert caught.value.retryable
    assert "disk full" in caught.value.reason
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", ["", ".", "..", ".hidden", "a/b", "x" * 256, "a\0b"])
async def test_file_drop_takes_plain_names_only(tmp_path, name):
    with pytest.raises(CaptureFailed, match="not a plain file name"):
        await FileDropTarget(tmp_path).deliver(name, b"x")
    assert list(tmp_path.iterdir()) == []
