"""The daemon in-process against a real scanner simulator on loopback: reads flow, links recover, drain is clean."""

import asyncio
import contextlib
import sqlite3

import pytest
from structlog.testing import capture_logs

from edge.config import load_config_text
from edge.daemon import Daemon
from edge.serials.batches import CommandRequest
from edge.systemd import Notifier
from simulators.scanner_wedge import WedgeScannerSim

GS = b"\x1d"
CODE = b"0109506000134352" + b"17281231" + b"10LOT7" + GS + b"21SER0001"
# Only bounds a failure; nothing here measures time.
HANG_GUARD_S = 10.0


def _config(tmp_path, url, extra=""):
    text = (
        "line: {id: L1, name: Test line}\n"
        "devices:\n"
        "  - id: scanner-1\n"
        "    driver: scanner.wedge\n"
        f"    url: {url}\n"
        "    reconnect: {initial_s: 0.01, max_s: 0.05}\n"
        f"storage: {{state_dir: {tmp_path / 'state'}}}\n"
        "api: {port: 0}\n" + extra
    )
    return load_config_text(text, str(tmp_path / "line.yaml"))


async def _until(predicate):
    async with asyncio.timeout(HANG_GUARD_S):
        while not predicate():  # noqa: ASYNC110 - the daemon's effects are seen only in its logs and status
            await asyncio.sleep(0.005)


@pytest.fixture
async def sim():
    async with WedgeScannerSim() as s:
        yield s


async def test_reads_flow_and_the_link_recovers_after_a_drop(tmp_path, sim):
    daemon = Daemon(_config(tmp_path, sim.url), notifier=Notifier(environ={}))
    with capture_logs() as logs:
        task = asyncio.create_task(daemon.run(handle_signals=False))
        async with asyncio.timeout(HANG_GUARD_S):
            await daemon.ready.wait()
            await sim.wait_for_connection()
        await sim.scan(CODE)
        await _until(lambda: any(e["event"] == "code read" for e in logs))

        sim.disconnect()
        supervisor = daemon.supervisors[0]
        await _until(lambda: supervisor.status.connects == 2 and sim.connections)
        await sim.scan(CODE.replace(b"SER0001", b"SER0002"))
        await _until(lambda: sum(e["event"] == "code read" for e in logs) == 2)

        daemon.request_shutdown()
        assert await asyncio.wait_for(task, HANG_GUARD_S) == 0

    reads = [e for e in logs if e["event"] == "code read"]
    assert [r["data"] for r in reads] == [
        "01095060001343521728123110LOT7<GS>21SER0001",
        "01095060001343521728123110LOT7<GS>21SER0002",
    ]
    assert all(r["device"] == "scanner-1" for r in reads)
    assert supervisor.status.connects == 2
    events = [e["event"] for e in logs]
    assert "device unavailable" in events
    assert "device back online" in events

    with contextlib.closing(sqlite3.connect(tmp_path / "state" / "lineside.db")) as db:
        runs = db.execute("SELECT clean, stopped_at IS NOT NULL FROM daemon_run").fetchall()
    assert runs == [(1, 1)]


async def test_an_unreachable_device_does_not_hold_up_the_line(tmp_path):
    # Port 9 (discard) has no listener here: the supervisor backs off while the daemon is ready and stops cleanly.
    daemon = Daemon(_config(tmp_path, "socket://127.0.0.1:9"), notifier=Notifier(environ={}))
    task = asyncio.create_task(daemon.run(handle_signals=False))
    async with asyncio.timeout(HANG_GUARD_S):
        await daemon.ready.wait()
    await _until(lambda: daemon.supervisors[0].status.failures >= 2)
    daemon.request_shutdown()
    assert await asyncio.wait_for(task, HANG_GUARD_S) == 0


async def test_a_configured_request_command_becomes_the_pool_low_water_hook(tmp_path):
    extra = "serial_pool: {request_command: [/usr/local/bin/request-serials, --site, p2], request_timeout_s: 5}\n"
    daemon = Daemon(_config(tmp_path, "socket://127.0.0.1:9", extra), notifier=Notifier(environ={}))
    task = asyncio.create_task(daemon.run(handle_signals=False))
    async with asyncio.timeout(HANG_GUARD_S):
        await daemon.ready.wait()
    assert daemon.batches is not None
    assert daemon.batches._low_water == CommandRequest(("/usr/local/bin/request-serials", "--site", "p2"), 5.0)
    daemon.request_shutdown()
    assert await asyncio.wait_for(task, HANG_GUARD_S) == 0


async def test_a_stuck_store_writer_withholds_the_watchdog_ping(tmp_path):
    import socket
    import threading

    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.setblocking(False)
    # A 20 ms watchdog makes the daemon check its writer every 10 ms.
    notifier = Notifier(environ={"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "20000"})
    daemon = Daemon(_config(tmp_path, "socket://127.0.0.1:9"), notifier=notifier)
    release = threading.Event()
    try:
        with capture_logs() as logs:
            task = asyncio.create_task(daemon.run(handle_signals=False))
            async with asyncio.timeout(HANG_GUARD_S):
                await daemon.ready.wait()
            store = daemon.store
            blocked = asyncio.create_task(store.write(lambda _conn: release.wait(HANG_GUARD_S)))
            queued = asyncio.create_task(store.execute("INSERT INTO meta(key, value) VALUES ('k', 'v')"))
            def stuck_ticks():
                return sum(e["event"].startswith("store writer is stuck") for e in logs)

            await _until(lambda: stuck_ticks() >= 1)
            _drain(sock)
            seen = stuck_ticks()
            await _until(lambda: stuck_ticks() >= seen + 3)  # three more heartbeats while the writer is stuck
            assert b"WATCHDOG=1" not in _drain(sock)
            release.set()
            await asyncio.wait_for(asyncio.gather(blocked, queued), HANG_GUARD_S)
            await _until(lambda: b"WATCHDOG=1" in _drain(sock))
            daemon.request_shutdown()
            assert await asyncio.wait_for(task, HANG_GUARD_S) == 0
    finally:
        release.set()
        sock.close()


def _drain(sock):
    got = b""
    while True:
        try:
            got += sock.recv(4096) + b"\n"
        except BlockingIOError:
            return got
