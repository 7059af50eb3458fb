"""The HTTP API on real loopback sockets: logins and permissions, work orders in, the batch life cycle with its
signatures, refusals as JSON, the serial pool, and the OpenAPI description of every route."""

import asyncio
import json
import re
import socket
from contextlib import asynccontextmanager
from datetime import date
from urllib.parse import quote

import aiohttp
import pytest
from aiohttp import web
from structlog.testing import capture_logs

from edge.api import ApiServer, make_app
from edge.api.openapi import document
from edge.api.routes import table
from edge.config import CatalogConfig, load_config_text
from edge.daemon import Daemon
from edge.gs1.element import build
from edge.products.load import load_catalog
from edge.serials.batches import BatchService
from edge.serials.ledger import SerialLedger
from edge.serials.states import SerialState
from edge.store import Store
from edge.systemd import Notifier
from tests.conftest import ROOT
from tests.edge.logins import add_users, login, make_auth, password, seed_users

LINE = "line-3"
TODAY = date(2026, 11, 1)
RU_GTIN = "04601234567893"
# Only bounds a failure; nothing here measures time.
HANG_GUARD_S = 10.0

ASPIRIN = """\
work_order: {work_order}
product: aspirin-500-eu
lot: "{lot}"
expiry: 2028-10-31
quantity: {quantity}
line: line-3
"""


def aspirin(work_order="WO-1", lot="L1", quantity=100):
    return ASPIRIN.format(work_order=work_order, lot=lot, quantity=quantity)


def amoxicillin(work_order="WO-RU-1", quantity=10):
    return json.dumps({
        "work_order": work_order, "product": "amoxicillin-250-ru", "lot": "A1", "expiry": "2027-06-30",
        "quantity": quantity, "line": LINE,
    })


def ru_codes(count, start=0):
    """Complete Russian codes as the operator issues them: 01, 21 (13 characters), 91 (4), 92 (44), GS between."""
    return [
        build([("01", RU_GTIN), ("21", f"S{i:012d}"), ("91", f"K{i % 1000:03d}"), ("92", f"{i:04d}" + "Qx/+" * 10)])
        for i in range(start, start + count)
    ]


@pytest.fixture(scope="module")
def catalog():
    return load_catalog(CatalogConfig(products=ROOT / "config" / "products", markets=ROOT / "config" / "markets"))


@asynccontextmanager
async def serving(app):
    """Serve app on a free loopback port; yield a client session to it; stop and clean up after."""
    server = ApiServer(app, "127.0.0.1", 0)
    task = asyncio.create_task(server.run(), name="api under test")
    try:
        async with asyncio.timeout(HANG_GUARD_S):
            await server.attempted.wait()
        assert server.port, "the server should listen on a port of its own"
        async with aiohttp.ClientSession(base_url=server.url) as session:
            yield session
    finally:
        task.cancel()
        await asyncio.wait({task})
        assert server.port is None


SIGNED_BY = {"release": "quinn", "close": "quinn", "decommission-in-doubt": "quinn"}
"""Who signs each signed action in these tests: QA releases and closes."""


class Line:
    """The API over a line, called as one of the test users (sam, the supervisor, unless said otherwise)."""

    def __init__(self, session, batches, auth):
        self.session = session
        self.batches = batches
        self.ledger = batches.ledger
        self.auth = auth
        self.headers = {}
        self.user = None

    async def as_user(self, name):
        if name not in self.headers:
            self.headers[name] = await login(self.session, name)
        self.user = name
        return self

    async def call(self, method, path, user=None, **kwargs):
        headers = {**self.headers.get(user or self.user, {}), **kwargs.pop("headers", {})}
        async with self.session.request(method, f"/api/v1{path}", headers=headers, **kwargs) as response:
            if response.content_type == "application/json":
                return response.status, await response.json()
            return response.status, await response.text()

    async def create(self, text):
        status, body = await self.call("POST", "/work-orders", data=text.encode())
        assert status == 201, body
        return body

    async def act(self, ref, action, expect=200, user=None, **body):
        """Do action to the batch; a signed one is signed by SIGNED_BY's user with their password."""
        signer = SIGNED_BY.get(action)
        if signer is not None and user is None:
            user = signer
            body.setdefault("password", password(signer))
        if user is not None and user not in self.headers:
            self.headers[user] = await login(self.session, user)
        where = f"/batches/{quote(str(ref), safe='')}/{action}"
        status, answer = await self.call("POST", where, user=user, json=body or None)
        assert status == expect, answer
        return answer


@pytest.fixture
async def line(tmp_path, catalog):
    store = Store.open(tmp_path / "state", group_window_s=0)
    ledger = SerialLedger(store, line_id=LINE)
    batches = BatchService(ledger, catalog, today=lambda: TODAY)
    writer = asyncio.create_task(store.run(), name="store writer")
    rounds = asyncio.create_task(ledger.run(), name="ledger rounds")
    auth = make_auth(store)
    try:
        await add_users(auth.accounts)
        async with serving(make_app(batches, auth=auth)) as session:
            yield await Line(session, batches, auth).as_user("sam")
    finally:
        await ledger.aclose()
        await rounds
        await store.aclose()
        await writer
        store.close()


async def test_health_and_an_empty_line(line):
    assert await line.call("GET", "/health") == (200, {"line": LINE, "status": "ok"})
    assert await line.call("GET", "/batches") == (200, {"batches": []})


async def test_work_orders_from_yaml_and_json_bodies(line):
    status, body = await line.call("POST", "/work-orders", data=aspirin().encode(), params={"operator": "sam"})
    assert status == 201
    assert body["batch"]["work_order"] == "WO-1"
    assert body["batch"]["state"] == "created"
    assert body["batch"]["expiry"] == "281031"
    created = await line.create(amoxicillin())
    assert created["batch"]["product"] == "amoxicillin-250-ru"
    assert created["batch"]["serial_source"] == "external_complete_codes"

    status, listing = await line.call("GET", "/batches")
    assert status == 200
    assert [(b["work_order"], b["state"]) for b in listing["batches"]] == [("WO-RU-1", "created"), ("WO-1", "created")]
    first = listing["batches"][1]
    assert {"id", "work_order", "product", "lot", "state", "counts"} <= first.keys()
    assert first["counts"]["allocated"] == 0

    status, again = await line.call("POST", "/work-orders", data=aspirin().encode())
    assert status == 409
    assert "WO-1 was imported already" in again["error"]


async def test_a_bad_work_order_is_a_400_with_positions_in_the_request_body(line):
    text = aspirin(work_order="WO-9", quantity=-5) + "colour: red\n"
    status, body = await line.call("POST", "/work-orders", data=text.encode())
    assert status == 400
    assert len(body["issues"]) == 2
    assert all(re.match(r"^<request body>:\d+:\d+: ", issue) for issue in body["issues"])
    assert body["issues"][0] == "<request body>:5:11: quantity: -5 must be at least 1"
    assert body["issues"][1].startswith("<request body>:7:1: ")
    assert body["error"] == f"{body['issues'][0]} (and 1 more, see issues)"

    unknown = aspirin().replace("aspirin-500-eu", "nonesuch")
    status, body = await line.call("POST", "/work-orders", data=unknown.encode())
    assert status == 400
    assert body["issues"][0].startswith('<request body>:2:10: product: unknown product "nonesuch"')

    status, body = await line.call("POST", "/work-orders", data=b'{"work_order": "WO-9",')
    assert status == 400
    assert body["issues"][0].startswith("<request body>:1:")
    status, body = await line.call("POST", "/work-orders", data=b"work_order: \xff\n")
    assert status == 400
    assert "not UTF-8" in body["error"]


async def test_the_whole_life_cycle_with_report(line):
    ref = "WO/2026/0001"  # a slash in a work order travels quoted in the path
    created = await line.create(aspirin(work_order=ref))
    batch_id = created["batch"]["id"]
    released = await line.act(ref, "release", operator="quinn")
    assert released["batch"]["state"] == "released"
    assert released["allocated"] == 102  # 100 and 2 % overage
    assert released["signature"]["meaning"] == "released"
    assert released["signature"]["manifest"].startswith("Electronically signed by Quinn Quality (quinn, qa) on ")
    assert (await line.act(batch_id, "start"))["batch"]["state"] == "running"
    assert (await line.act(ref, "pause"))["batch"]["state"] == "paused"
    assert (await line.act(ref, "resume"))["batch"]["state"] == "running"

    sent = await line.ledger.next_to_print(batch_id, 5, device="printer-1")
    ids = [serial_id for serial_id, _, _ in sent]
    await line.ledger.move(ids, SerialState.PRINTED, reason="printed", device="printer-1")
    await line.ledger.move(ids, SerialState.COMMISSIONED, reason="graded good", device="camera-1")

    completed = await line.act(ref, "complete")
    assert completed["batch"]["state"] == "completing"
    assert completed["counts"]["commissioned"] == 5
    closed = await line.act(ref, "close")
    assert closed["batch"]["state"] == "closed"
    assert closed["balanced"] is True
    assert closed["closed_by"] == "quinn"
    assert closed["equation"] == "allocated 102 = commissioned 5 + decommissioned 0 + returned 97"
    signature = closed.pop("signature")
    assert (signature["user"], signature["meaning"], signature["permission"]) == ("quinn", "approved", "batch.close")
    assert signature["subject"] == "batch:WO/2026/0001"

    status, report = await line.call("GET", f"/batches/{quote(ref, safe='')}/report")
    assert status == 200
    assert [s["meaning"] for s in report.pop("signatures")] == ["released", "approved"]
    assert report == closed
    assert (await line.call("GET", f"/batches/{batch_id}"))[1] == closed
    async with line.session.get(f"/api/v1/batches/{batch_id}/report.html", headers=line.headers["sam"]) as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == "text/html; charset=utf-8"
        html = await response.text()
    assert html.startswith("<!DOCTYPE html>")
    assert "WO/2026/0001" in html
    assert "Balanced" in html
    assert "Electronic signatures" in html
    assert signature["manifest"] in html

    status, body = await line.call("POST", f"/batches/{batch_id}/start")
    assert status == 409
    assert "closed" in body["error"]


async def test_refusals_are_409(line):
    first = (await line.create(aspirin("WO-1", "L1")))["batch"]["id"]
    second = (await line.create(aspirin("WO-2", "L2")))["batch"]["id"]
    await line.act(first, "release")
    await line.act(second, "release")
    await line.act(first, "start")

    body = await line.act(second, "start", expect=409)
    assert "a line makes one batch at a time" in body["error"]
    assert body["issues"] == []
    body = await line.act(first, "cancel", expect=409, reason="wrong lot")
    assert "complete and close it instead of cancelling" in body["error"]
    body = await line.act(second, "resume", expect=409)
    assert "only a paused batch resumes" in body["error"]

    await line.ledger.next_to_print(first, 3, device="printer-1")
    completed = await line.act(first, "complete")
    assert completed["counts"]["in_doubt"] == 3
    body = await line.act(first, "close", expect=409)
    assert "3 serials are in doubt" in body["error"]
    assert (await line.call("GET", f"/batches/{first}"))[1]["batch"]["state"] == "completing"

    cancelled = await line.act(second, "cancel", reason="lot withdrawn", operator="sam")
    assert cancelled["batch"]["state"] == "cancelled"
    assert cancelled["counts"]["returned"] == 102


async def test_bad_requests_and_unknown_things(line):
    await line.create(aspirin())
    status, body = await line.call("GET", "/batches/WO-404")
    assert status == 404
    assert "no batch has the id or work order" in body["error"]
    await line.act(77, "release", expect=404)
    assert (await line.call("GET", "/batches/77/report.html"))[0] == 404

    body = await line.act("WO-1", "explode", expect=400)
    assert "release, start, pause, resume, complete, decommission-in-doubt, close, cancel" in body["error"]
    assert body["error"].startswith('unknown action "explode"')
    body = await line.act("WO-1", "cancel", expect=400)
    assert "needs a reason" in body["error"]
    status, body = await line.call("POST", "/batches/WO-1/pause", data=b"{not json")
    assert status == 400
    assert body["error"].startswith("the body is not JSON")
    status, body = await line.call("POST", "/batches/WO-1/pause", json={"operator": "sam", "why": "y"})
    assert status == 400
    assert "unknown key(s) why" in body["error"]
    status, body = await line.call("POST", "/batches/WO-1/pause", json={"operator": 7})
    assert status == 400

    status, body = await line.call("GET", "/pool/nonesuch")
    assert status == 404
    assert 'unknown product "nonesuch"' in body["error"]
    status, body = await line.call("POST", "/serials", params={"product": "nonesuch"}, data=b"x")
    assert status == 404
    status, body = await line.call("POST", "/serials", params={"product": "aspirin-500-eu", "kind": "xml"}, data=b"x")
    assert status == 400
    status, body = await line.call("GET", "/nothing-here")
    assert status == 404
    assert body["error"].startswith("no such endpoint: GET /api/v1/nothing-here")
    status, body = await line.call("DELETE", "/batches")
    assert status == 405
    assert body["issues"] == []


async def test_russian_codes_imported_then_drawn_at_release(line):
    codes = ru_codes(12)
    assert "\x1d" in codes[0]
    text = "\n".join(codes) + "\n"
    status, body = await line.call(
        "POST", "/serials", params={"product": "amoxicillin-250-ru", "kind": "text"},
        data=text.encode(),
    )
    assert status == 201, body
    assert body["gtin"] == RU_GTIN
    assert body["imported"] == 12
    assert body["available"] == {"serials": 0, "codes": 12}
    assert (await line.call("GET", "/pool/amoxicillin-250-ru"))[1] == {
        "product": "amoxicillin-250-ru", "gtin": RU_GTIN, "available": {"serials": 0, "codes": 12}, "low_water": 20000,
    }

    status, body = await line.call(
        "POST", "/serials", params={"product": "amoxicillin-250-ru"},
        data=json.dumps({"gtin": RU_GTIN, "codes": ru_codes(1)}).encode(),
    )
    assert status == 400
    assert "already known" in body["error"]
    status, body = await line.call(
        "POST", "/serials", params={"product": "amoxicillin-250-ru"},
        data=json.dumps({"gtin": RU_GTIN, "codes": ["0104601234567893"]}).encode(),
    )
    assert status == 400
    assert all(issue.startswith("<request body>:") for issue in body["issues"])

    await line.create(amoxicillin("WO-RU-1", quantity=10))
    with capture_logs() as logs:
        released = await line.act("WO-RU-1", "release")
    assert released["allocated"] == 11  # 10 and 2 % overage, rounded up
    assert any(entry["event"] == "serial pool low" for entry in logs)
    assert (await line.call("GET", "/pool/amoxicillin-250-ru"))[1]["available"] == {"serials": 0, "codes": 1}

    await line.create(amoxicillin("WO-RU-2", quantity=10))
    body = await line.act("WO-RU-2", "release", expect=409)
    assert "import 10 more" in body["error"]


async def test_an_oversized_body_is_a_413(line):
    async with (
        serving(make_app(line.batches, auth=line.auth, client_max_size=1024)) as session,
        session.post("/api/v1/serials?product=aspirin-500-eu", data=b"x" * 2048,
                     headers=line.headers["sam"]) as response,
    ):
        assert response.status == 413
        body = await response.json()
    assert "1024" in body["error"]


async def test_an_unexpected_error_is_logged_and_a_plain_500(line, monkeypatch):
    async def broken():
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(line.batches, "summaries", broken)
    with capture_logs() as logs:
        status, body = await line.call("GET", "/batches")
    assert (status, body) == (500, {"error": "internal error, see the log", "issues": []})
    assert any(entry["event"] == "API request failed" and entry["log_level"] == "error" for entry in logs)


async def test_a_busy_port_is_retried_while_the_line_runs_on(catalog):
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    retried = asyncio.Event()

    async def sleep(_delay):
        retried.set()
        await asyncio.Event().wait()

    server = ApiServer(web.Application(), "127.0.0.1", taken.getsockname()[1], sleep=sleep)
    try:
        with capture_logs() as logs:
            task = asyncio.create_task(server.run())
            async with asyncio.timeout(HANG_GUARD_S):
                await retried.wait()
            assert server.attempted.is_set()
            assert server.port is None
            task.cancel()
            await asyncio.wait({task})
    finally:
        taken.close()
    assert [entry["event"] for entry in logs] == ["HTTP API cannot listen; the line runs on without it, retrying"]


async def test_the_daemon_serves_the_api(tmp_path):
    await seed_users(tmp_path / "state")
    text = (
        "line: {id: line-3, name: Test line}\n"
        f"storage: {{state_dir: {tmp_path / 'state'}}}\n"
        "api: {host: 127.0.0.1, port: 0}\n"
        f"catalog: {{products: {ROOT / 'config' / 'products'}}}\n"
    )
    daemon = Daemon(load_config_text(text, str(tmp_path / "line.yaml")), notifier=Notifier(environ={}))
    task = asyncio.create_task(daemon.run(handle_signals=False))
    try:
        async with asyncio.timeout(HANG_GUARD_S):
            await daemon.ready.wait()
        assert daemon.api_port
        async with aiohttp.ClientSession(base_url=f"http://127.0.0.1:{daemon.api_port}") as session:
            async with session.get("/api/v1/health") as response:
                assert (response.status, await response.json()) == (200, {"line": "line-3", "status": "ok"})
            async with session.get("/api/v1/batches") as response:
                assert response.status == 401
            headers = await login(session, "olga")
            async with session.get("/api/v1/batches", headers=headers) as response:
                assert (response.status, await response.json()) == (200, {"batches": []})
    finally:
        daemon.request_shutdown()
        assert await asyncio.wait_for(task, HANG_GUARD_S) == 0
    assert daemon.api_port is None


# -- sessions, permissions and signatures -----------------------------------------------------------------


async def test_every_route_but_health_needs_a_session_and_a_login_gives_token_cookie_and_permissions(line):
    assert (await line.call("GET", "/health", user="nobody"))[0] == 200
    status, body = await line.call("GET", "/batches", user="nobody")
    assert status == 401
    assert body["error"].startswith("log in first")
    status, body = await line.call("GET", "/batches", user="nobody", headers={"Authorization": "Bearer forged"})
    assert status == 401
    assert "the session has ended" in body["error"]

    async with line.session.post("/api/v1/session", json={"name": "olga", "password": "wrong-password"}) as response:
        assert response.status == 401
        refused = await response.json()
    assert (refused["error"], refused["kind"]) == ("unknown user or wrong password", "credentials")
    async with line.session.post("/api/v1/session", json={"name": "olga", "password": password("olga")}) as response:
        assert response.status == 200
        answer = await response.json()
        cookie = response.cookies["lineside_session"]
    assert (answer["name"], answer["role"]) == ("olga", "operator")
    assert {"view", "line.start", "line.hold", "line.unhold", "alarm.acknowledge"} <= set(answer["permissions"])
    assert "line.stop" not in answer["permissions"]
    assert answer["signed"]["batch.close"] == "approved"
    assert cookie.value == answer["token"]
    assert cookie["httponly"] is True
    assert cookie["samesite"] == "Strict"
    assert cookie["path"] == "/"

    # The cookie alone is a session, as the browser HMI uses it; a change from another origin's page is refused.
    jar = {"Cookie": f"lineside_session={answer['token']}"}
    status, me = await line.call("GET", "/session", user="nobody", headers=jar)
    assert (status, me["name"]) == (200, "olga")
    await line.create(aspirin())
    status, body = await line.call("POST", "/batches/WO-1/cancel", user="nobody", json={"reason": "x"},
                                   headers={**jar, "Origin": "http://evil.example"})
    assert status == 403
    assert "another origin" in body["error"]

    status, body = await line.call("DELETE", "/session", user="nobody", headers=jar)
    assert (status, body) == (200, {"name": "olga", "logged_out": True})
    assert (await line.call("GET", "/session", user="nobody", headers=jar))[0] == 401
    trail = [(e.actor, e.action) for e in await line.auth.audit.entries(limit=1000)]
    assert ("olga", "user.login") in trail
    assert ("olga", "user.logout") in trail


async def test_a_role_without_the_permission_gets_a_403_naming_it_and_the_refusal_is_audited(line):
    await line.create(aspirin())
    await line.as_user("olga")
    status, body = await line.call("POST", "/batches/WO-1/cancel", json={"reason": "no"})
    assert status == 403
    assert body["permission"] == "batch.cancel"
    assert body["error"] == "olga (operator) may not batch.cancel: that needs the role supervisor"
    status, body = await line.call("POST", "/work-orders", data=aspirin("WO-2").encode())
    assert (status, body["permission"]) == (403, "batch.create")
    refused = [e for e in await line.auth.audit.entries(limit=1000) if e.action == "access.refused"]
    assert [(e.actor, e.details["permission"]) for e in refused] == [("olga", "batch.cancel"), ("olga", "batch.create")]
    assert refused[0].details["wanted"] == "POST /api/v1/batches/{ref}/cancel"
    # Reading is for everyone who is logged in.
    assert (await line.call("GET", "/batches"))[0] == 200


async def test_the_operator_recorded_is_the_logged_in_user_and_another_name_is_refused(line):
    await line.create(aspirin())
    status, body = await line.call("POST", "/batches/WO-1/cancel", json={"reason": "wrong lot", "operator": "jdoe"})
    assert status == 400
    assert body["error"].startswith("you are logged in as sam")
    cancelled = await line.act("WO-1", "cancel", reason="wrong lot", operator="SAM")  # the same user, any case
    assert cancelled["batch"]["state"] == "cancelled"
    history = await line.batches.ledger.store.read(
        lambda conn: conn.execute("SELECT operator, reason FROM batch_event WHERE to_state = 'cancelled'").fetchall())
    assert history == [("sam", "wrong lot")]


async def test_signed_actions_need_the_password_again_and_commit_with_their_signature(line):
    await line.create(aspirin())
    # No password: 401 naming the signature wanted; nothing released.
    body = await line.act("WO-1", "release", expect=401, user="quinn")
    assert body["signature"] == {"permission": "batch.release", "meaning": "released"}
    assert "send your password again" in body["error"]
    body = await line.act("WO-1", "release", expect=401, user="quinn", password="not-my-password")
    assert body["error"] == "signature refused: unknown user or wrong password"
    assert (await line.call("GET", "/batches/WO-1"))[1]["batch"]["state"] == "created"
    # A supervisor may not release, signature or not.
    body = await line.act("WO-1", "release", expect=403, user="sam", password=password("sam"))
    assert body["permission"] == "batch.release"

    released = await line.act("WO-1", "release")
    [signature] = await line.auth.signatures.of_subject("batch:WO-1")
    assert released["signature"]["id"] == signature.id
    assert released["signature"]["manifest"] == signature.manifest()
    trail = [(e.actor, e.action, e.subject) for e in await line.auth.audit.entries(limit=1000)]
    assert ("quinn", "user.confirm-failed", "quinn") in trail
    assert ("quinn", "signature.signed", "batch:WO-1") in trail

    # A close the domain refuses anyway is refused without asking for the password.
    body = await line.act("WO-1", "close", expect=409, user="quinn")
    assert "cannot go from released to closed" in body["error"]
    await line.act("WO-1", "start")
    await line.ledger.next_to_print(1, 2, device="printer-1")
    await line.act("WO-1", "complete")
    body = await line.act("WO-1", "close", expect=409)
    assert "2 serials are in doubt" in body["error"]
    body = await line.act("WO-1", "decommission-in-doubt", expect=400)
    assert "needs a reason" in body["error"]
    doubt = await line.act("WO-1", "decommission-in-doubt", reason="units set aside after the jam")
    assert doubt["counts"]["rejected"] == 2
    assert doubt["signature"]["meaning"] == "reviewed"
    closed = await line.act("WO-1", "close")
    assert closed["balanced"] is True
    meanings = [s.meaning for s in await line.auth.signatures.of_subject("batch:WO-1")]
    assert meanings == ["released", "reviewed", "approved"]
    assert all([await line.auth.signatures.verify(s.id, None) is False
                for s in await line.auth.signatures.of_subject("batch:WO-1")])


async def test_a_batch_changed_while_it_was_signed_is_not_closed(line, monkeypatch):
    await line.create(aspirin())
    await line.act("WO-1", "release")
    await line.act("WO-1", "start")
    await line.act("WO-1", "complete")
    real = line.auth.signatures.sign

    async def sign_after_a_change(*args, **kwargs):
        # Another user's change lands between reading the reconciliation and signing it.
        await line.ledger.store.write(lambda conn: conn.execute(
            "UPDATE batch SET lot = 'L9' WHERE work_order = 'WO-1'"))
        return await real(*args, **kwargs)

    monkeypatch.setattr(line.auth.signatures, "sign", sign_after_a_change)
    body = await line.act("WO-1", "close", expect=409)
    assert "changed while it was being signed" in body["error"]
    assert (await line.call("GET", "/batches/WO-1"))[1]["batch"]["state"] == "completing"
    assert [s.meaning for s in await line.auth.signatures.of_subject("batch:WO-1")] == ["released"]


def test_the_api_serves_every_batch_action_there_is():
    from edge.api import actions, app

    assert tuple(name for name, _, _ in app._BATCH_ACTIONS) == actions.ACTIONS


async def test_the_openapi_description_covers_every_route_with_its_permission(line):
    status, described = await line.call("GET", "/openapi.json")
    assert status == 200
    assert described["openapi"].startswith("3.")
    app = make_app(line.batches, auth=line.auth)
    assert document(app) == described
    routes = table(app)
    for resource in app.router.resources():
        for route in resource:
            if route.method == "HEAD":
                continue
            path = re.sub(r"\{(\w+)(:[^}]*)?\}", r"{\1}", resource.canonical)
            assert route.method.lower() in described["paths"].get(path, {}), f"{route.method} {path} not described"
            assert (route.method, resource.canonical) in routes, f"{route.method} {path} has no access rule"
    close = described["paths"]["/api/v1/batches/{ref}/close"]["post"]
    assert close["x-permission"] == "batch.close"
    assert close["x-signature"] == {"permission": "batch.close", "meaning": "approved"}
    assert "password" in close["requestBody"]["content"]["application/json"]["schema"]["properties"]
    assert described["paths"]["/api/v1/health"]["get"]["security"] == []
    assert described["paths"]["/api/v1/control/commands/stop"]["post"]["x-permission"] == "line.stop"
    assert described["paths"]["/api/v1/control/events"]["get"]["responses"]["200"]["content"] == {
        "text/event-stream": {}}
