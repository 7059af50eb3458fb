"""The simulator foundation: fault plans (pure) and the lifecycle over TCP and pseudo-terminals."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from drivers.transport.link import open_link
from drivers.transport.spec import TransportSpec
from edge.errors import TransientDeviceError
from simulators.base import SimConnection, Simulator
from simulators.faults import Corrupt, Delay, Disconnect, Faults, Garbage, HangUp, Pause, Send, Split, Stall
from simulators.scanner_wedge import WedgeScannerSim

HANG_GUARD_S = 10.0





def is_symlink(path: str) -> bool:
    return Path(path).is_symlink()


def parent_exists(path: str) -> bool:
    return Path(path).parent.exists()


# Fault plans


def test_no_faults_send_the_bytes_unchanged():
    assert Faults().shape(b"ABC") == [Send(b"ABC")]


def test_disconnect_after_bytes_counts_across_writes_and_fires_once():
    faults = Faults()
    faults.inject(Disconnect(after_bytes=5))
    assert faults.shape(b"ABC") == [Send(b"ABC")]
    assert faults.shape(b"DEFG") == [Send(b"DE"), HangUp()]
    assert faults.active == ()
    assert faults.shape(b"HI") == [Send(b"HI")]


def test_disconnect_now_hangs_up_before_any_byte():
    faults = Faults()
    faults.inject(Disconnect())
    assert faults.shape(b"ABC") == [HangUp()]


def test_garbage_goes_ahead_of_the_next_write_only():
    faults = Faults()
    faults.inject(Garbage(b"\x00\xff"))
    assert faults.shape(b"A") == [Send(b"\x00\xffA")]
    assert faults.shape(b"B") == [Send(b"B")]


def test_corrupt_flips_one_byte_of_the_next_write_long_enough():
    faults = Faults()
    faults.inject(Corrupt(offset=-2, mask=0x01))
    assert faults.shape(b"A") == [Send(b"A")]  # too short: still pending
    assert faults.shape(b"ABC") == [Send(b"ACC")]
    assert faults.shape(b"ABC") == [Send(b"ABC")]


def test_lasting_faults_hold_until_removed():
    faults = Faults()
    delay = faults.inject(Delay(0.5))
    split = faults.inject(Split(chunk_size=2, gap_s=0.1))
    planned = [Pause(0.5), Send(b"AB"), Pause(0.1), Send(b"CD"), Pause(0.1), Send(b"E")]
    assert faults.shape(b"ABCDE") == planned
    assert faults.shape(b"ABCDE") == planned
    faults.remove(delay)
    faults.remove(split)
    assert faults.shape(b"ABCDE") == [Send(b"ABCDE")]


def test_stall_swallows_writes_and_keeps_one_shot_faults_pending():
    faults = Faults()
    faults.inject(Garbage(b"!"))
    faults.inject(Stall())
    assert faults.shape(b"A") == []
    faults.remove(Stall())
    assert faults.shape(b"B") == [Send(b"!B")]


def test_faults_compose_in_one_plan():
    faults = Faults()
    faults.inject(Garbage(b"xx"))
    faults.inject(Corrupt(offset=0))
    faults.inject(Split(chunk_size=3))
    faults.inject(Disconnect(after_bytes=4))
    assert faults.shape(b"abcd") == [Send(b"xx\x9e"), Send(b"b"), HangUp()]
    assert faults.active == (Split(chunk_size=3),)


def test_clear_removes_everything():
    faults = Faults()
    faults.inject(Stall())
    faults.inject(Delay(1))
    faults.clear()
    assert faults.active == ()


@pytest.mark.parametrize(
    "make",
    [
        lambda: Disconnect(after_bytes=-1),
        lambda: Garbage(b""),
        lambda: Corrupt(mask=0),
        lambda: Corrupt(mask=0x100),
        lambda: Delay(-1),
        lambda: Split(chunk_size=0),
        lambda: Split(gap_s=-1),
    ],
)
def test_nonsense_faults_are_refused(make):
    with pytest.raises(ValueError, match=r"."):
        make()


# Lifecycle


class FailingSim(Simulator):
    async def handle(self, conn: SimConnection) -> None:
        await conn.read()
        raise RuntimeError("handler bug")


async def test_serve_runs_inside_an_owners_task_group():
    sim = WedgeScannerSim(transport="pty")
    url = await sim.bind()
    assert is_symlink(url)
    async with asyncio.TaskGroup() as tasks:
        serving = tasks.create_task(sim.serve())
        link = await open_link(TransportSpec(url=url), connect_timeout_s=5)
        try:
            await sim.scan(b"CODE")
            async with asyncio.timeout(HANG_GUARD_S):
                assert await link.read() == b"CODE\r\n"
        finally:
            await link.close()
        serving.cancel()
    assert not parent_exists(url)


async def test_a_bound_tcp_simulator_queues_drivers_until_it_serves():
    sim = WedgeScannerSim()
    await sim.bind()
    link = await open_link(sim.transport_spec(), connect_timeout_s=5)
    try:
        async with sim:
            async with asyncio.timeout(HANG_GUARD_S):
                await sim.wait_for_connection()
            await sim.scan(b"LATE")
            async with asyncio.timeout(HANG_GUARD_S):
                assert await link.read() == b"LATE\r\n"
    finally:
        await link.close()


async def test_stop_releases_a_simulator_that_never_served():
    for transport in ("tcp", "pty"):
        sim = WedgeScannerSim(transport=transport)
        url = await sim.bind()
        await sim.stop()
        if transport == "pty":
            assert not parent_exists(url)
        else:
            with pytest.raises(TransientDeviceError):
                await open_link(TransportSpec(url=url), connect_timeout_s=5)


async def test_stop_re_raises_a_handler_bug():
    sim = FailingSim()
    await sim.start()
    link = await open_link(sim.transport_spec(), connect_timeout_s=5)
    try:
        await link.write(b"poke")
        with pytest.raises(TransientDeviceError):
            async with asyncio.timeout(HANG_GUARD_S):
                await link.read()
    finally:
        await link.close()
    with pytest.raises(ExceptionGroup) as caught:
        await sim.stop()
    assert caught.group_contains(RuntimeError, match="handler bug")


async def test_scanning_with_no_driver_connected_is_an_error():
    async with WedgeScannerSim() as sim:
        with pytest.raises(RuntimeError, match="no driver"):
            await sim.scan(b"X")


async def test_url_before_bind_is_an_error():
    with pytest.raises(RuntimeError, match="not bound"):
        _ = WedgeScannerSim().url


async def test_a_simulator_serves_once():
    async with WedgeScannerSim() as sim:
        with pytest.raises(RuntimeError, match="once"):
            await sim.serve()


async def test_the_driver_closing_its_port_leaves_the_pty_attached():
    async with WedgeScannerSim(transport="pty") as sim:
        first = await open_link(sim.transport_spec(), connect_timeout_s=5)
        await first.close()
        second = await open_link(sim.transport_spec(), connect_timeout_s=5)
        try:
            await sim.scan(b"STILL HERE")
            async with asyncio.timeout(HANG_GUARD_S):
                assert await second.read() == b"STILL HERE\r\n"
        finally:
            await second.close()
        assert len(sim.connections) == 1


async def test_the_simulator_reads_what_the_driver_sends():
    received: asyncio.Queue[bytes] = asyncio.Queue()

    class Recorder(Simulator):
        async def handle(self, conn: SimConnection) -> None:
            while True:
                await received.put(await conn.read())

    for transport in ("tcp", "pty"):
        async with Recorder(transport=transport) as sim:
            link = await open_link(sim.transport_spec(), connect_timeout_s=5)
            try:
                await link.write(b"TRIGGER\r\n")
                data = b""
                async with asyncio.timeout(HANG_GUARD_S):
                    while data != b"TRIGGER\r\n":
                        data += await received.get()
            finally:
                await link.close()
