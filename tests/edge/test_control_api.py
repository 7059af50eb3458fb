"""Line control over HTTP and `lineside ctl`, against a running daemon (a line with no devices): status, commands
by permission, unit mode, alarms, the live event stream and its ends; reject images; the kept session file."""

import asyncio
import contextlib
import io
import json
import re
import stat
import sys
from datetime import UTC, datetime

import aiohttp
import pytest

from edge.api import ApiServer, make_app
from edge.api.client import SessionStore
from edge.cli import main
from edge.config import load_config_text
from edge.daemon import Daemon
from edge.line.events import LineStopRequest
from edge.serials.batches import BatchService
from edge.serials.ledger import SerialLedger
from edge.store import Store
from edge.systemd import Notifier
from tests.conftest import ROOT
from tests.edge.logins import add_users, login, make_auth, password, seed_users

HANG_GUARD_S = 15.0
ORDER = "work_order: WO-1\nproduct: aspirin-500-eu\nlot: \"L1\"\nexpiry: 2035-12-31\nquantity: 20\nline: line-3\n"


@contextlib.asynccontextmanager
async def running_daemon(tmp_path):
    await seed_users(tmp_path / "state")
    text = (
        "line: {id: line-3, name: Test line}\n"
        f"storage: {{state_dir: {tmp_path / 'state'}}}\n"
        "api: {host: 127.0.0.1, port: 0}\n"
        "hmi: {host: 127.0.0.1, port: 0}\n"
        f"catalog: {{products: {ROOT / 'config' / 'products'}}}\n"
    )
    daemon = Daemon(load_config_text(text, str(tmp_path / "line.yaml")), notifier=Notifier(environ={}))
    task = asyncio.create_task(daemon.run(handle_signals=False))
    try:
        async with asyncio.timeout(HANG_GUARD_S):
            await daemon.ready.wait()
        batches = daemon.batches
        assert batches is not None
        batch = await batches.import_work_order(ORDER, "test", operator="planner")
        await batches.release(batch.id, operator="planner")
        async with aiohttp.ClientSession(base_url=f"http://127.0.0.1:{daemon.api_port}") as session:
            yield daemon, session
    finally:
        daemon.request_shutdown()
        assert await asyncio.wait_for(task, HANG_GUARD_S) == 0


async def call(session, method, path, headers, **kwargs):
    async with session.request(method, f"/api/v1{path}", headers=headers, **kwargs) as response:
        return response.status, await response.json()


async def test_commands_by_permission_with_the_state_reached_and_refusals_in_words(tmp_path):
    async with running_daemon(tmp_path) as (daemon, session):
        olga, sam, ada = [await login(session, name) for name in ("olga", "sam", "ada")]
        assert (await call(session, "GET", "/control", {}))[0] == 401
        status, body = await call(session, "GET", "/control", olga)
        assert (status, body["state"], body["commands"]) == (200, "Stopped", ["Reset", "Abort"])

        status, body = await call(session, "POST", "/control/commands/reset", olga)
        assert (status, body["permission"]) == (403, "line.reset")
        assert body["error"] == "olga (operator) may not line.reset: that needs the role supervisor, administrator"
        status, body = await call(session, "POST", "/control/commands/unhold", sam)
        assert status == 409
        assert body["error"] == "Unhold is not possible in Stopped (possible: Reset, Abort)"
        assert body["state"] == "Stopped"

        status, body = await call(session, "POST", "/control/commands/reset", sam, json={"reason": "new shift"})
        assert (status, body["command"], body["state"]) == (200, "Reset", "Idle")
        status, body = await call(session, "POST", "/control/commands/start", olga)
        assert (status, body["state"], body["status"]["batch"]["work_order"]) == (200, "Execute", "WO-1")
        status, body = await call(session, "POST", "/control/commands/hold", olga, json={"reason": "jam"})
        assert (status, body["state"], body["status"]["reason"]) == (200, "Held", "jam")
        status, body = await call(session, "POST", "/control/mode", ada, json={"mode": "manual"})
        assert status == 409
        assert "only in Stopped, Idle or Aborted, not in Held" in body["error"]
        status, body = await call(session, "POST", "/control/mode", sam, json={"mode": "manual"})
        assert (status, body["permission"]) == (403, "line.unit-mode")
        status, body = await call(session, "POST", "/control/mode", ada, json={"mode": "fast"})
        assert status == 400
        assert "production, maintenance, manual" in body["error"]
        status, body = await call(session, "POST", "/control/commands/unhold", olga, json={"operator": "sam"})
        assert status == 400  # another user's name
        assert (await call(session, "POST", "/control/commands/unhold", olga))[1]["state"] == "Execute"

        control = daemon.control
        await control.on_event(LineStopRequest(device_id="camera-1", at=datetime.now(UTC), alarm="tracking-mismatch",
                                               reason="packs 7 to 9 passed unseen"))
        async with asyncio.timeout(HANG_GUARD_S):
            while control.state.title != "Stopped":  # noqa: ASYNC110
                await asyncio.sleep(0.01)
        [alarm] = (await call(session, "GET", "/control", olga))[1]["alarms"]
        status, body = await call(session, "POST", f"/control/alarms/{alarm['id']}/acknowledge", olga)
        assert (status, body["alarm"]["acknowledged_by"]) == (200, "olga")
        status, body = await call(session, "POST", "/control/alarms/999/acknowledge", olga)
        assert status == 404
        assert "no alarm 999 is kept" in body["error"]
        status, body = await call(session, "POST", "/control/alarms/x1/acknowledge", olga)
        assert status == 400


async def read_events(response, count):
    """Return the next count server-sent events of the stream as (event, data), heartbeats left out."""
    events, event, data = [], None, []
    async with asyncio.timeout(HANG_GUARD_S):
        while len(events) < count:
            line = (await response.content.readline()).decode().rstrip("\n")
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: "):
                data.append(line[6:])
            elif not line and event:
                events.append((event, json.loads("\n".join(data))))
                event, data = None, []
    return events


async def test_the_event_stream_sends_every_change_and_ends_at_logout_and_at_shutdown(tmp_path):
    async with running_daemon(tmp_path) as (daemon, session):
        olga, sam = await login(session, "olga"), await login(session, "sam")
        async with session.get("/api/v1/control/events", headers=olga) as stream:
            assert stream.status == 200
            assert stream.headers["Content-Type"] == "text/event-stream"
            [(kind, first)] = await read_events(stream, 1)
            assert (kind, first["state"]) == ("status", "Stopped")
            await call(session, "POST", "/control/commands/reset", sam)
            seen = [status["state"] for _, status in await read_events(stream, 2)]
            assert seen == ["Resetting", "Idle"]
            await call(session, "DELETE", "/session", olga)
            async with asyncio.timeout(HANG_GUARD_S):
                assert await stream.content.read() == b""  # the stream ended with the session
        async with session.get("/api/v1/control/events", headers=sam) as stream:
            await read_events(stream, 1)
            daemon.request_shutdown()
            async with asyncio.timeout(HANG_GUARD_S):
                await stream.content.read()  # ended by the shutdown, not by the drain's timeout


async def test_reject_images_are_listed_newest_first_and_served_by_name_only(tmp_path):
    rejects = tmp_path / "rejects"
    rejects.mkdir()
    png = b"\x89PNG\r\n\x1a\n" + b"\0" * 32
    for name in ("20261125T090000-0000000007-no-read.png", "20261125T090100-0000000009-wrong-code.png"):
        (rejects / name).write_bytes(png)
    (rejects / "notes.txt").write_text("not an image of ours")
    store = Store.open(tmp_path / "state", group_window_s=0)
    async with store:
        auth = make_auth(store)
        await add_users(auth.accounts, ("olga",))
        from edge.config.models import CatalogConfig
        from edge.products.load import load_catalog

        catalog = load_catalog(CatalogConfig(products=ROOT / "config" / "products"))
        app = make_app(BatchService(SerialLedger(store, line_id="line-3"), catalog), auth=auth, rejects=rejects)
        server = ApiServer(app, "127.0.0.1", 0)
        task = asyncio.create_task(server.run())
        try:
            async with asyncio.timeout(HANG_GUARD_S):
                await server.attempted.wait()
            async with aiohttp.ClientSession(base_url=server.url) as session:
                olga = await login(session, "olga")
                status, body = await call(session, "GET", "/rejects", olga)
                assert status == 200
                assert [(r["product"], r["reason"]) for r in body["rejects"]] in (
                    [(9, "wrong-code"), (7, "no-read")], [(7, "no-read"), (9, "wrong-code")])
                first = body["rejects"][0]
                assert first["at"].startswith("2026-11-25T09:0")
                async with session.get(f"/api/v1/{first['url']}", headers=olga) as response:
                    assert (response.status, response.content_type) == (200, "image/png")
                    assert await response.read() == png
                for bad in ("notes.txt", "..%2Fstate%2Flineside.db", "20261125T090000-0000000007-gone.png"):
                    async with session.get(f"/api/v1/rejects/{bad}", headers=olga) as response:
                        assert response.status == 404, bad
                async with session.get(f"/api/v1/{first['url']}") as response:
                    assert response.status == 401
                status, body = await call(session, "GET", "/control", olga)
                assert status == 503
                assert "the line control is not running" in body["error"]
        finally:
            task.cancel()
            await asyncio.wait({task})


async def test_lineside_ctl_logs_in_once_keeps_the_session_private_and_commands_the_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))

    async def ctl(*argv, stdin=""):
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
        code = await asyncio.to_thread(main, ["ctl", *map(str, argv)])
        out, err = capsys.readouterr()
        # The daemon runs in this process: its log lines share standard output and error.
        return code, _without_log(out), _without_log(err)

    async with running_daemon(tmp_path) as (daemon, _session):
        api = ("--api", f"http://127.0.0.1:{daemon.api_port}")
        capsys.readouterr()
        code, _, err = await ctl("status", *api)
        assert code == 2
        assert "log in first" in err
        code, out, err = await ctl("login", "--user", "sam", *api, stdin="wrong-password\n")
        assert code == 2
        assert "login as sam refused: unknown user or wrong password" in err
        code, out, err = await ctl("login", "--user", "sam", *api, stdin=password("sam") + "\n")
        assert code == 0, err
        assert out.startswith("logged in as sam (supervisor) at http://127.0.0.1:")
        kept = SessionStore().file
        assert kept == tmp_path / "lineside" / "sessions.json"
        assert stat.S_IMODE(kept.stat().st_mode) == 0o600
        assert stat.S_IMODE(kept.parent.stat().st_mode) == 0o700

        code, out, _ = await ctl("status", *api)
        assert code == 0
        assert out.splitlines()[0] == "line line-3: Stopped (Production mode)"
        assert "commands possible: Reset, Abort" in out
        code, out, _ = await ctl("reset", "--reason", "shift start", *api)
        assert (code, out) == (0, "Reset: the line is Idle (shift start)\n")
        code, out, err = await ctl("start", "--json", *api)
        assert code == 0, err
        assert json.loads(out)["state"] == "Execute"
        code, out, err = await ctl("unhold", *api)
        assert code == 1
        assert "Unhold is not possible in Execute" in err
        assert "(the line is Execute)" in err
        # Another user for one command: logged in and out around it; the kept session stays sam's.
        code, out, err = await ctl("hold", "--user", "olga", "--reason", "jam", *api, stdin=password("olga") + "\n")
        assert (code, out) == (0, "Hold: the line is Held (jam)\n"), err
        code, out, err = await ctl("stop", "--user", "olga", *api, stdin=password("olga") + "\n")
        assert code == 1
        assert "olga (operator) may not line.stop" in err
        code, out, _ = await ctl("stop", *api)
        assert (code, out) == (0, "Stop: the line is Stopped (Stop by sam)\n")
        code, out, err = await ctl("mode", "maintenance", *api)
        assert code == 1
        assert "may not line.unit-mode" in err
        code, _, err = await ctl("ack", "7", *api)
        assert code == 2
        assert "no alarm 7 is kept" in err

        code, out, _ = await ctl("logout", *api)
        assert (code, out) == (0, "logged out sam\n")
        code, _, err = await ctl("status", *api)
        assert code == 2
        assert "log in first" in err
        trail = await daemon.store.read(
            lambda conn: conn.execute("SELECT actor, action FROM audit_log ORDER BY id").fetchall())
        assert ("sam", "user.logout") in trail
        assert ("olga", "line.hold") in trail
        assert ("olga", "user.logout") in trail


def _without_log(text):
    return "".join(line for line in text.splitlines(keepends=True) if not re.match(r"\d{4}-\d\d-\d\d \d\d:", line))


def test_lineside_ctl_needs_to_know_where_the_daemon_is(capsys):
    assert main(["ctl", "status"]) == 2
    assert "say where the daemon is" in capsys.readouterr().err
    assert main(["ctl", "status", "--api", "http://127.0.0.1:1"]) == 2
    assert "cannot reach the Lineside API at http://127.0.0.1:1" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["ctl", "jump", "--api", "http://127.0.0.1:1"])
