"""The aggregation API and `lineside aggregation` on loopback sockets over a real store: views, signed rework,
refusals."""

import asyncio
import io
import json
import re
import sys
from contextlib import asynccontextmanager
from datetime import date
from urllib.parse import quote

import aiohttp
import pytest

from edge.aggregation import cli as aggregation_cli
from edge.aggregation.packer import SequentialPacker
from edge.aggregation.service import Aggregation
from edge.api import ApiServer, make_app
from edge.api import aggregation as aggregation_api
from edge.api.client import SessionStore
from edge.cli import main
from edge.config.models import CatalogConfig
from edge.products.load import load_catalog
from edge.products.models import LEVELS
from edge.serials.batches import BatchService
from edge.serials.ledger import SerialLedger
from edge.serials.states import SerialState
from edge.store import Store
from tests.conftest import ROOT
from tests.edge.logins import add_users, login, make_auth, password

LINE = "line-1"
GTIN = "04012345000016"
TODAY = date(2026, 11, 25)
GS = "\x1d"
# Only bounds a failure; nothing here measures time.
HANG_GUARD_S = 10.0
ORDER = (
    "work_order: WO-1\nproduct: aspirin-500-eu\nlot: \"L2611A\"\nexpiry: 2028-10-31\nquantity: 40\nline: line-1\n"
)


def hri(serial):
    return f"(01){GTIN}(21){serial}"


def scan(serial):
    """A unit code as a camera sends it: symbology identifier, FNC1 element string, GS before the lot."""
    return f"]d201{GTIN}21{serial}{GS}10L2611A"


def box(identifier):
    return f"/containers/{quote(str(identifier), safe='')}"


@asynccontextmanager
async def serving(app):
    """Serve app on a free loopback port; yield its URL; stop and clean up after."""
    server = ApiServer(app, "127.0.0.1", 0)
    task = asyncio.create_task(server.run(), name="api under test")
    try:
        async with asyncio.timeout(HANG_GUARD_S):
            await server.attempted.wait()
        assert server.url, "the server should listen on a port of its own"
        yield server.url
    finally:
        task.cancel()
        await asyncio.wait({task})


REWORK = re.compile(r"/(unpack|replace|destroy|void-label)$")
"""The rework routes: signed, so the tests send the password of the user logged in."""


class Line:
    """A running batch of aspirin-500-eu (cases of 10, pallets of 40) with commissioned units, and the API over it.

    Called as sam, a supervisor (reworks and closes short), logged in.
    """

    def __init__(self, session, url, batches, aggregation, auth, *, batch_id, units):
        self.session = session
        self.url = url
        self.batches = batches
        self.agg = aggregation
        self.auth = auth
        self.batch = batch_id
        self.units = units  # [(serial id, serial)] in line order
        self.user = "sam"
        self.headers = {}

    async def call(self, method, where, expect=None, **kwargs):
        headers = self.headers
        async with self.session.request(method, f"/api/v1/aggregation{where}", headers=headers, **kwargs) as response:
            body = await response.json() if response.content_type == "application/json" else await response.text()
            if expect is not None:
                assert response.status == expect, body
            return response.status, body

    async def get(self, where, expect=200, **kwargs):
        return (await self.call("GET", where, expect, **kwargs))[1]

    async def post(self, where, expect=200, sign=True, **body):
        """Post body to where; a rework is signed with the user's password unless sign is False."""
        if sign and REWORK.search(where):
            body.setdefault("password", password(self.user))
        return (await self.call("POST", where, expect, json=body))[1]

    async def case(self, units):
        """Open a case, pack these units (indexes into self.units), close it when full; return it."""
        case = await self.agg.open_container(self.batch, "case", station="case-packer")
        case = await self.agg.pack(case.id, serial_ids=[self.units[i][0] for i in units], station="case-packer")
        if case.count == case.capacity:
            case = await self.agg.close_container(case.id)
        return case


@pytest.fixture(scope="module")
def catalog():
    return load_catalog(CatalogConfig(products=ROOT / "config" / "products", markets=ROOT / "config" / "markets"))


@asynccontextmanager
async def running_line(tmp_path, catalog, *, with_aggregation=True, close_short=None, commissioned=30):
    store = Store.open(tmp_path / "state", group_window_s=0)
    ledger = SerialLedger(store, line_id=LINE)
    batches = BatchService(ledger, catalog, today=lambda: TODAY)
    aggregation = Aggregation(store)
    writer = asyncio.create_task(store.run(), name="store writer")
    auth = make_auth(store)
    try:
        await add_users(auth.accounts)
        batch = await batches.import_work_order(ORDER, "wo.yaml", operator="mes")
        await batches.release(batch.id, operator="sam")
        await batches.start(batch.id, operator="sam")
        sent = await ledger.next_to_print(batch.id, commissioned, device="printer-1")
        ids = [serial_id for serial_id, _, _ in sent]
        await ledger.move(ids, SerialState.PRINTED, reason="printed", device="printer-1")
        await ledger.move(ids, SerialState.COMMISSIONED, reason="verified", device="camera-1")
        app = make_app(batches, auth=auth, aggregation=aggregation if with_aggregation else None,
                       close_short=close_short(aggregation, ledger) if close_short else None)
        async with serving(app) as url, aiohttp.ClientSession(base_url=url) as session:
            line = Line(session, url, batches, aggregation, auth, batch_id=batch.id,
                        units=[(i, serial) for i, serial, _ in sent])
            line.headers = await login(session, "sam")
            yield line
    finally:
        await store.aclose()
        await writer
        store.close()


@pytest.fixture
async def line(tmp_path, catalog):
    async with running_line(tmp_path, catalog) as running:
        yield running


async def test_containers_listed_by_batch_level_and_state(line):
    first = await line.case(range(10))
    second = await line.case(range(10, 13))
    pallet = await line.agg.open_container(line.batch, "pallet")
    await line.agg.pack(pallet.id, containers=[first.id])

    listing = await line.get("/containers", params={"batch": "WO-1"})
    assert listing["batch"]["work_order"] == "WO-1"
    assert [(c["id"], c["level"], c["state"], c["count"]) for c in listing["containers"]] == [
        (first.id, "case", "closed", 10), (second.id, "case", "open", 3), (pallet.id, "pallet", "open", 1),
    ]
    assert listing["containers"][0]["parent"] == pallet.id
    assert listing["containers"][0]["identifier"] == first.identifier
    # Without ?batch the running batch is meant; by id as well as by work order.
    assert await line.get("/containers") == listing
    assert await line.get("/containers", params={"batch": str(line.batch)}) == listing
    only = await line.get("/containers", params={"level": "case", "state": "open"})
    assert [c["id"] for c in only["containers"]] == [second.id]

    body = await line.get("/containers", 400, params={"level": "crate"})
    assert body["error"] == 'unknown level "crate"; the levels are bundle, case, pallet'
    body = await line.get("/containers", 400, params={"state": "full"})
    assert "unknown state" in body["error"]
    body = await line.get("/containers", 404, params={"batch": "WO-404"})
    assert 'no batch has the id or work order "WO-404"' in body["error"]


async def test_one_container_with_units_children_and_parent(line):
    case = await line.case(range(10))
    pallet = await line.agg.open_container(line.batch, "pallet")
    await line.agg.pack(pallet.id, containers=[case.id])

    view = await line.get(box(case.identifier))
    assert view["container"]["id"] == case.id
    shown = view["container"]
    assert (shown["level"], shown["state"], shown["count"]) == ("case", "closed", 10)
    assert view["parent"]["id"] == pallet.id
    assert view["containers"] == []
    serial_id, serial = line.units[0]
    assert view["units"][0] == {
        "serial_id": serial_id, "gtin": GTIN, "serial": serial, "hri": hri(serial), "state": "commissioned",
    }
    assert [u["serial_id"] for u in view["units"]] == [i for i, _ in line.units[:10]]
    # The same container by #id, by a scan of its label as HRI, and as an element string.
    assert await line.get(box(f"#{case.id}")) == view
    assert await line.get(box(f"(00){case.identifier}")) == view
    assert await line.get(box(f"]C100{case.identifier}")) == view

    outer = await line.get(box(pallet.identifier))
    assert outer["parent"] is None
    assert outer["units"] == []
    assert [(c["id"], c["state"]) for c in outer["containers"]] == [(case.id, "closed")]

    body = await line.get(box("#999"), 404)
    assert body == {"error": "there is no container #999", "issues": []}
    body = await line.get(box("000000000000000000"), 404)
    assert "no container is identified by 000000000000000000" in body["error"]
    body = await line.get(box("#twelve"), 400)
    assert "after # comes the container number" in body["error"]
    body = await line.get(box(f"(01){GTIN}"), 422)
    assert "carries no SSCC (AI 00)" in body["error"]


async def test_unpack_named_units_and_containers_then_everything(line):
    case = await line.case(range(10))
    (a, serial_a), (b, serial_b) = line.units[0], line.units[1]

    view = await line.post(f"{box(case.identifier)}/unpack", operator="sam", reason="carton scuffed",
                           units=[hri(serial_a), scan(serial_b)])
    assert (view["container"]["state"], view["container"]["count"]) == ("open", 8)
    assert a not in [u["serial_id"] for u in view["units"]]
    assert b not in [u["serial_id"] for u in view["units"]]

    await line.agg.pack(case.id, serial_ids=[a, b])
    case = await line.agg.close_container(case.id)
    pallet = await line.agg.open_container(line.batch, "pallet")
    await line.agg.pack(pallet.id, containers=[case.id])
    view = await line.post(f"{box(pallet.identifier)}/unpack", operator="sam", reason="pallet rebuilt",
                           containers=[case.identifier])
    assert (view["container"]["count"], view["containers"]) == (0, [])
    assert (await line.get(box(case.identifier)))["parent"] is None

    view = await line.post(f"{box(f'#{case.id}')}/unpack", operator="sam", reason="case repacked")
    assert (view["container"]["state"], view["container"]["count"], view["units"]) == ("open", 0, [])

    events = (await line.get("/batches/WO-1/events"))["events"]
    unpacks = [e for e in events if e["action"] == "unpack"]
    assert [(e["serial_ids"], e["operator"], e["reason"]) for e in unpacks[:1]] == [([a, b], "sam", "carton scuffed")]
    assert unpacks[1]["container_ids"] == [case.id]
    assert len(unpacks[2]["serial_ids"]) == 10


async def test_replace_destroy_void_and_close(line):
    case = await line.case(range(10))
    old, new = line.units[3], line.units[20]
    view = await line.post(f"{box(case.identifier)}/replace", operator="sam", reason="carton scuffed",
                           old=hri(old[1]), new=scan(new[1]))
    assert view["container"]["state"] == "closed"  # the count did not change
    assert [u["serial_id"] for u in view["units"]][-1] == new[0]
    assert old[0] not in [u["serial_id"] for u in view["units"]]

    relabelled = await line.post(f"{box(case.identifier)}/void-label", operator="sam", reason="label unreadable")
    assert relabelled["voided"] == case.identifier
    assert relabelled["sscc"] == relabelled["container"]["identifier"] != case.identifier
    body = await line.get(box(case.identifier), 404)
    assert "voided on container" in body["error"]

    destroyed = await line.post("/units/destroy", unit=hri(line.units[4][1]), operator="sam", reason="crushed",
                                password=password("sam"))
    assert destroyed.pop("signature")["meaning"] == "reviewed"
    assert destroyed == {"destroyed": {"units": [{
        "serial_id": line.units[4][0], "gtin": GTIN, "serial": line.units[4][1], "hri": hri(line.units[4][1]),
        "state": "destroyed"}], "containers": []}}

    short = await line.post(f"{box(relabelled['sscc'])}/close", operator="sam", reason="end of batch")
    assert (short["container"]["state"], short["container"]["count"]) == ("closed", 9)
    assert (short["container"]["partial_reason"], short["container"]["closed_by"]) == ("end of batch", "sam")
    assert "note" not in short

    gone = await line.post(f"{box(relabelled['sscc'])}/destroy", operator="sam", reason="dropped")
    assert gone["container"]["state"] == "destroyed"
    assert gone["destroyed"]["containers"] == [case.id]
    assert len(gone["destroyed"]["units"]) == 9
    assert {u["state"] for u in gone["destroyed"]["units"]} == {"destroyed"}
    counts = await line.batches.ledger.counts(line.batch)
    assert counts["destroyed"] == 10


async def test_every_change_is_the_logged_in_users_with_a_reason_and_rework_is_signed(line):
    case = await line.case(range(10))
    where = box(case.identifier)
    for action, extra in (("unpack", {}), ("replace", {"old": hri("X"), "new": hri("Y")}), ("destroy", {}),
                          ("void-label", {}), ("close", {})):
        body = await line.post(f"{where}/{action}", 400, operator="op", reason="why", **extra)
        assert body["error"].startswith("you are logged in as sam"), action
        body = await line.post(f"{where}/{action}", 400, reason="  ", **extra)
        assert body["error"].startswith("reason is missing"), action
    body = await line.post("/units/destroy", 400, unit=hri(line.units[0][1]))
    assert body["error"].startswith("reason is missing")
    # Rework without the password again, or with a wrong one: 401 naming the signature it needs.
    body = await line.post(f"{where}/destroy", 401, sign=False, reason="dropped")
    assert body["signature"] == {"permission": "aggregation.rework", "meaning": "reviewed"}
    body = await line.post(f"{where}/destroy", 401, reason="dropped", password="not-it-at-all")
    assert body["error"] == "signature refused: unknown user or wrong password"
    assert (await line.get(where))["container"]["count"] == 10  # nothing happened

    status, body = await line.call("POST", f"{where}/destroy")
    assert status == 400
    assert body["error"].startswith("the body is empty")
    status, body = await line.call("POST", f"{where}/destroy", data=b"{oops")
    assert (status, body["error"].startswith("the body is not JSON")) == (400, True)
    body = await line.post(f"{where}/destroy", 400, reason="r", force=True)
    assert body["error"] == "unknown key(s) force; the body takes operator, reason, password"
    body = await line.post(f"{where}/unpack", 400, reason="r", units=hri("X"))
    assert "units must be a list of text" in body["error"]
    body = await line.post(f"{where}/replace", 400, reason="r", old=hri("X"))
    assert body["error"] == "new is missing from the body"

    # Rework is signed: the change and its signature, bound to the container as it was, commit together.
    view = await line.post(f"{where}/unpack", reason="carton scuffed", units=[hri(line.units[0][1])])
    assert view["signature"]["meaning"] == "reviewed"
    assert view["signature"]["subject"] == f"container:{case.identifier}"
    [signature] = await line.auth.signatures.of_subject(f"container:{case.identifier}")
    assert view["signature"]["manifest"] == signature.manifest()
    # An operator may not rework at all.
    line.headers = await login(line.session, "olga")
    line.user = "olga"
    body = await line.post(f"{where}/destroy", 403, reason="dropped")
    assert body["permission"] == "aggregation.rework"


async def test_refusals_name_the_rule_and_change_nothing(line):
    case = await line.case(range(10))
    other = await line.case(range(10, 15))
    pallet = await line.agg.open_container(line.batch, "pallet")
    await line.agg.pack(pallet.id, containers=[case.id])
    rework = {"operator": "sam", "reason": "test"}

    # Unusable scans are 422 and say what is wrong with them.
    body = await line.post(f"{box(other.identifier)}/unpack", 422, units=[hri("NOSUCHSERIAL")], **rework)
    assert body["error"] == f"unit (01){GTIN}(21)NOSUCHSERIAL is not known to this line: it was never issued here"
    body = await line.post(f"{box(other.identifier)}/unpack", 422, units=["hello"], **rework)
    assert "is not a GS1 code" in body["error"]
    body = await line.post(f"{box(other.identifier)}/unpack", 422, units=["(01)04012345000016(21)ЖЖ"], **rework)
    assert "is not in any GS1 character set" in body["error"]
    body = await line.post("/units/destroy", 422, unit=f"(01){GTIN}", **rework)
    assert "it needs a GTIN (01) and a serial (21)" in body["error"]

    # The rules are 409 with the domain's own message.
    body = await line.post(f"{box(case.identifier)}/unpack", 409, **rework)
    assert f"it is in pallet {pallet.identifier}" in body["error"]
    assert "take the case out of it first" in body["error"]
    body = await line.post(f"{box(other.identifier)}/unpack", 409, units=[hri(line.units[0][1])], **rework)
    assert f"unit #{line.units[0][0]} is not in case {other.identifier}" in body["error"]
    body = await line.post(f"{box(other.identifier)}/replace", 409, old=hri(line.units[10][1]),
                           new=hri(line.units[0][1]), **rework)
    assert "is already in case" in body["error"]
    assert "a unit is in one container at most" in body["error"]
    body = await line.post(f"{box(case.identifier)}/close", 409, **rework)
    assert body["error"] == f"cannot close case {case.identifier} (#{case.id}): it is closed"
    empty = await line.agg.open_container(line.batch, "case")
    body = await line.post(f"{box(empty.identifier)}/close", 409, **rework)
    assert "it is empty; destroy it instead" in body["error"]
    await line.post(f"{box(empty.identifier)}/destroy", 200, **rework)
    body = await line.post(f"{box(empty.identifier)}/destroy", 409, **rework)
    assert "is destroyed already" in body["error"]
    body = await line.post(f"{box('#4242')}/destroy", 404, **rework)
    assert body["error"] == "there is no container #4242"

    assert (await line.get(box(f"#{other.id}")))["container"]["count"] == 5
    assert (await line.get(box(f"#{case.id}")))["parent"]["id"] == pallet.id


async def test_the_event_log_in_pages(line):
    await line.case(range(10))
    log = await line.get("/batches/WO-1/events")
    assert log["batch"]["id"] == line.batch
    assert [e["action"] for e in log["events"]] == ["open", "pack", "close"]
    assert log["events"][1]["serial_ids"] == [i for i, _ in line.units[:10]]
    assert log["events"][1]["station"] == "case-packer"
    assert (log["next_after"], log["more"]) == (log["events"][-1]["id"], False)

    first = log["events"][0]["id"]
    page = await line.get(f"/batches/{line.batch}/events", params={"after": str(first), "limit": "1"})
    assert [e["action"] for e in page["events"]] == ["pack"]
    assert (page["next_after"], page["more"]) == (first + 1, True)
    rest = await line.get("/batches/WO-1/events", params={"after": str(page["next_after"])})
    assert ([e["action"] for e in rest["events"]], rest["more"]) == (["close"], False)

    body = await line.get("/batches/WO-1/events", 400, params={"after": "-1"})
    assert body["error"] == "after must be a whole number, not '-1'"
    body = await line.get("/batches/WO-1/events", 400, params={"limit": "100000"})
    assert body["error"] == "limit is 100,000; it must be 1 to 10,000"
    assert "WO-9" in (await line.get("/batches/WO-9/events", 404))["error"]


async def test_closing_short_goes_through_the_station_filling_the_container(tmp_path, catalog):
    handed = []
    packers = []

    def through_the_packer(aggregation, ledger):
        async def label_station(container, operator, reason):  # stands in for the case label station's queue
            handed.append((container.id, operator, reason))

        packer = SequentialPacker(aggregation, ledger, completed=label_station)
        packers.append(packer)

        async def close_short(container, operator, reason):
            if packer.current is None or packer.current.id != container.id:
                return await aggregation.close_container(container.id, operator=operator, partial_reason=reason)
            return await packer.close_short(operator=operator, reason=reason)

        return close_short

    async with running_line(tmp_path, catalog, close_short=through_the_packer) as line:
        filling = await line.case(range(4))
        packers[0].resume(filling)
        answer = await line.post(f"{box(filling.identifier)}/close", operator="sam", reason="end of batch")
        assert handed == [(filling.id, "sam", "end of batch")]
        assert answer["container"]["state"] == "open"  # closed by its label station once the label is verified
        assert answer["note"] == aggregation_api.LABEL_PENDING

        idle = await line.case(range(4, 6))  # not the packer's: closed directly
        answer = await line.post(f"{box(idle.identifier)}/close", operator="sam", reason="line cleared")
        assert (answer["container"]["state"], "note" in answer) == ("closed", False)
        assert len(handed) == 1


async def test_without_aggregation_the_routes_answer_503(tmp_path, catalog):
    async with running_line(tmp_path, catalog, with_aggregation=False) as line:
        for method, where in (("GET", "/containers"), ("GET", box("#1")), ("POST", f"{box('#1')}/destroy"),
                              ("POST", "/units/destroy"), ("GET", "/batches/WO-1/events")):
            status, body = await line.call(method, where)
            assert status == 503, where
            assert body["error"].startswith("aggregation is not configured on this line")


# -- the command line, end to end against the live API ------------------------------------------


async def cli(capsys, *argv):
    code = await asyncio.to_thread(main, ["aggregation", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


async def test_the_command_line_through_the_api(line, capsys, tmp_path, monkeypatch):
    api = ("--api", line.url)
    # The session `lineside ctl login` keeps, and sam's password on standard input for each signed rework.
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    SessionStore().put(line.url, {"token": line.headers["Authorization"].removeprefix("Bearer "), "name": "sam"})
    monkeypatch.setattr(sys, "stdin", io.StringIO(f"{password('sam')}\n" * 3))
    case = await line.case(range(10))
    code, out, err = await cli(capsys, "list", *api)
    assert (code, err) == (0, "")
    head, row = out.splitlines()[1:3]
    assert head.split() == ["ID", "LEVEL", "IDENTIFIER", "STATE", "COUNT", "IN", "NOTE"]
    assert row.split() == [f"#{case.id}", "case", case.identifier, "closed", "10/10", "-"]

    code, out, _ = await cli(capsys, "show", case.identifier, *api, "--json")
    assert code == 0
    assert json.loads(out) == await line.get(box(case.identifier))
    code, out, _ = await cli(capsys, "show", f"#{case.id}", *api)
    assert code == 0
    assert out.splitlines()[0] == f"case {case.identifier} (#{case.id}) closed, 10 of 10"
    assert f"  unit #{line.units[0][0]} {hri(line.units[0][1])} commissioned" in out

    # A unit typed with {GS} as the scanner would send it, and one as HRI.
    typed = scan(line.units[1][1]).replace(GS, "{GS}")
    code, out, err = await cli(capsys, "unpack", case.identifier, "--unit", typed, "--unit", hri(line.units[2][1]),
                               "--operator", "sam", "--reason", "carton scuffed", *api)
    assert (code, err) == (0, "")
    assert out.splitlines()[0] == f"case {case.identifier} (#{case.id}) open, 8 of 10"

    code, out, err = await cli(capsys, "close", case.identifier, "--operator", "sam", "--reason", "end of batch", *api)
    assert code == 0, err
    assert "closed, 8 of 10, closed short by sam: end of batch" in out

    code, out, err = await cli(capsys, "destroy-unit", hri(line.units[1][1]), "--operator", "sam", "--reason", "bent",
                               *api)
    assert code == 0, err
    assert f"destroyed unit #{line.units[1][0]}" in out

    code, out, _ = await cli(capsys, "events", "WO-1", *api)
    assert code == 0
    assert "unpack" in out
    assert "by sam" in out
    assert "(carton scuffed)" in out

    # Refused by a rule: exit 1; unknown things and bad input: exit 2, the API's message on stderr.
    code, out, err = await cli(capsys, "close", case.identifier, "--operator", "sam", "--reason", "again", *api)
    assert (code, out) == (1, "")
    assert err == f"cannot close case {case.identifier} (#{case.id}): it is closed\n"
    code, out, err = await cli(capsys, "show", "#999", *api, "--json")
    assert code == 2
    assert json.loads(out) == {"error": "there is no container #999", "issues": []}
    code, _, err = await cli(capsys, "destroy-unit", "(01)04012345000016(21)NOPE", "--operator", "sam", "--reason",
                             "x", *api)
    assert code == 2
    assert "is not known to this line" in err


def test_the_command_line_needs_the_daemon_and_who_and_why(capsys):
    assert main(["aggregation", "list"]) == 2
    assert "say where the daemon is: --api URL" in capsys.readouterr().err
    assert main(["aggregation", "list", "--api", "http://127.0.0.1:1"]) == 2
    assert "cannot reach the Lineside API at http://127.0.0.1:1" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exited:  # a change says why; who is the logged-in user
        main(["aggregation", "destroy", "#1", "--api", "http://127.0.0.1:1"])
    assert exited.value.code == 2
    assert "--reason" in capsys.readouterr().err


def test_the_command_line_names_what_the_api_names():
    # Kept apart so that `lineside --help` does not load the web stack; they must not drift.
    assert aggregation_cli.LEVELS == LEVELS
    assert aggregation_cli.STATES == aggregation_api.STATES
