"""The HTTP API on real loopback sockets: work orders in, the batch life cycle, refusals as JSON, the serial pool."""

import asyncio
import json
import re
import socket
from contextlib import asynccontextmanager
from datetime import date
from urllib.parse import quote

import aiohttp
import pytest
from structlog.testing import capture_logs

from edge.api import ApiServer, make_app
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


class Line:
    def __init__(self, session, batches):
        self.session = session
        self.batches = batches
        self.ledger = batches.ledger

    async def call(self, method, path, **kwargs):
        async with self.session.request(method, f"/api/v1{path}", **kwargs) as response:
            if response.content_type == "application/json":
                return response.status, await response.json()
            return response.status, await response.text()

    async def create(self, text):
        status, body = await self.call("POST", "/work-orders", data=text.encode())
        assert status == 201, body
        return body

    async def act(self, ref, action, expect=200, **body):
        status, answer = await self.call("POST", f"/batches/{quote(str(ref), safe='')}/{action}", json=body or None)
        assert status == expect, answer
        return answer


@pytest.fixture
async def line(tmp_path, catalog):
    store = Store.open(tmp_path / "state", group_window_s=0)
    ledger = SerialLedger(store, line_id=LINE)
    batches = BatchService(ledger, catalog, today=lambda: TODAY)
    writer = asyncio.create_task(store.run(), name="store writer")
    rounds = asyncio.create_task(ledger.run(), name="ledger rounds")
    try:
        async with serving(make_app(batches)) as session:
            yield Line(session, batches)
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
    status, body = await line.call("POST", "/work-orders", data=aspirin().encode(), params={"operator": "jdoe"})
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
    released = await line.act(ref, "release", operator="qa-anna")
    assert released["batch"]["state"] == "released"
    assert released["allocated"] == 102  # 100 and 2 % overage
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
    closed = await line.act(ref, "close", operator="qa-anna")
    assert closed["batch"]["state"] == "closed"
    assert closed["balanced"] is True
    assert closed["closed_by"] == "qa-anna"
    assert closed["equation"] == "allocated 102 = commissioned 5 + decommissioned 0 + returned 97"

    status, report = await line.call("GET", f"/batches/{quote(ref, safe='')}/report")
    assert status == 200
    assert report == closed
    assert (await line.call("GET", f"/batches/{batch_id}"))[1] == closed
    async with line.session.get(f"/api/v1/batches/{batch_id}/report.html") as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == "text/html; charset=utf-8"
        html = await response.text()
    assert html.startswith("<!DOCTYPE html>")
    assert "WO/2026/0001" in html
    assert "Balanced" in html

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

    cancelled = await line.act(second, "cancel", reason="lot withdrawn", operator="jdoe")
    assert cancelled["batch"]["state"] == "cancelled"
    assert cancelled["counts"]["returned"] == 102


async def test_bad_requests_and_unknown_things(line):
    await line.create(aspirin())
    status, body = await line.call("GET", "/batches/WO-404")
    assert status == 404
    assert "no batch has the id or work order" in body["error"]
    assert (await line.call("POST", "/batches/77/release"))[0] == 404
    assert (await line.call("GET", "/batches/77/report.html"))[0] == 404

    body = await line.act("WO-1", "explode", expect=400)
    assert body["error"].startswith('unknown action "explode"')
    body = await line.act("WO-1", "cancel", expect=400)
    assert "needs a reason" in body["error"]
    status, body = await line.call("POST", "/batches/WO-1/pause", data=b"{not json")
    assert status == 400
    assert body["error"].startswith("the body is not JSON")
    status, body = await line.call("POST", "/batches/WO-1/pause", json={"operator": "x", "why": "y"})
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
        "POST", "/serials", params={"product": "amoxicillin-250-ru", "kind": "text", "operator": "jdoe"},
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
        serving(make_app(line.batches, client_max_size=1024)) as session,
        session.post("/api/v1/serials?product=aspirin-500-eu", data=b"x" * 2048) as response,
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

    server = ApiServer(make_app(None), "127.0.0.1", taken.getsockname()[1], sleep=sleep)
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
                assert (response.status, await response.json()) == (200, {"batches": []})
    finally:
        daemon.request_shutdown()
        assert await asyncio.wait_for(task, HANG_GUARD_S) == 0
    assert daemon.api_port is None
