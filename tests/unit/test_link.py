"""The transport link over loopback TCP and pseudo-terminals (simulator peers and bare pty pairs)."""

from __future__ import annotations

import asyncio
import os
import socket
import tty
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import serial

from drivers.transport.link import WRITE_TIMEOUT_S, Link, _open_serial_port, open_link
from drivers.transport.spec import FlowControl, Parity, SerialSettings, TransportSpec
from edge.errors import DeviceRejectedError, TransientDeviceError
from simulators.base import SimConnection, Simulator

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator

HANG_GUARD_S = 10.0


class EchoSim(Simulator):
    async def handle(self, conn: SimConnection) -> None:
        while True:
            await conn.write(await conn.read())


@pytest.fixture(params=["tcp", "pty"])
async def echo(request) -> AsyncIterator[EchoSim]:
    async with EchoSim(transport=request.param) as sim:
        yield sim


@pytest.fixture
async def tcp_echo() -> AsyncIterator[EchoSim]:
    async with EchoSim(transport="tcp") as sim:
        yield sim





@pytest.fixture
def pty_pair() -> Iterator[tuple[int, str]]:
    """A bare pseudo-terminal: (master fd nobody reads unless the test does, slave path)."""
    master, slave = os.openpty()
    tty.setraw(master)
    tty.setraw(slave)
    try:
        yield master, os.ttyname(slave)
    finally:
        os.close(master)
        os.close(slave)


async def read_exactly(link: Link, size: int) -> bytes:
    data = b""
    async with asyncio.timeout(HANG_GUARD_S):
        while len(data) < size:
            data += await link.read()
    return data


async def test_round_trip(echo):
    link = await open_link(echo.transport_spec(), connect_timeout_s=5)
    try:
        await link.write(b"ping\x1d\x00\xff")
        assert await read_exactly(link, 7) == b"ping\x1d\x00\xff"
        assert link.peer in echo.url
    finally:
        await link.close()


async def test_device_hang_up_is_transient_with_the_cause_chained(echo):
    link = await open_link(echo.transport_spec(), connect_timeout_s=5)
    try:
        async with asyncio.timeout(HANG_GUARD_S):
            await echo.wait_for_connection()
        echo.disconnect()
        with pytest.raises(TransientDeviceError) as caught:
            async with asyncio.timeout(HANG_GUARD_S):
                await link.read()
        assert str(caught.value) == "connection closed by device" or isinstance(caught.value.__cause__, OSError)
    finally:
        await link.close()


async def test_close_is_idempotent_concurrent_and_final(echo):
    link = await open_link(echo.transport_spec(), connect_timeout_s=5)
    await asyncio.gather(link.close(), link.close())
    await link.close()
    assert link.is_closing
    with pytest.raises(TransientDeviceError, match="closed"):
        await link.read()
    with pytest.raises(TransientDeviceError, match="closed"):
        await link.write(b"x")


async def test_serial_port_is_really_closed_when_close_returns(pty_pair):
    _, path = pty_pair
    link = await open_link(TransportSpec(url=path), connect_timeout_s=5)
    port = link._port
    await link.close()
    assert not port.is_open
    # The exclusive lock is gone with it: the same port opens again at once.
    again = await open_link(TransportSpec(url=path), connect_timeout_s=5)
    await again.close()


async def test_a_second_opener_of_a_serial_port_is_turned_away(pty_pair):
    _, path = pty_pair
    link = await open_link(TransportSpec(url=path), connect_timeout_s=5)
    try:
        with pytest.raises(TransientDeviceError, match="lock"):
            await open_link(TransportSpec(url=path), connect_timeout_s=5)
    finally:
        await link.close()


async def test_serial_settings_reach_the_port(pty_pair):
    _, path = pty_pair
    settings = SerialSettings(baudrate=19200, stopbits=2, flow_control=FlowControl.XONXOFF)
    link = await open_link(TransportSpec(url=path, serial=settings), connect_timeout_s=5)
    try:
        port = link._port
        assert (port.baudrate, port.bytesize, port.parity, port.stopbits) == (19200, 8, serial.PARITY_NONE, 2)
        assert (port.xonxoff, port.rtscts, port.dsrdtr) == (True, False, False)
    finally:
        await link.close()


@pytest.mark.parametrize(
    ("parity", "expected"),
    [
        (Parity.NONE, serial.PARITY_NONE),
        (Parity.EVEN, serial.PARITY_EVEN),
        (Parity.ODD, serial.PARITY_ODD),
        (Parity.MARK, serial.PARITY_MARK),
        (Parity.SPACE, serial.PARITY_SPACE),
    ],
)
@pytest.mark.parametrize(
    "flow",
    [
        (FlowControl.NONE, (False, False, False)),
        (FlowControl.XONXOFF, (True, False, False)),
        (FlowControl.RTSCTS, (False, True, False)),
        (FlowControl.DSRDTR, (False, False, True)),
    ],
)
def test_serial_settings_map_to_pyserial(monkeypatch, pty_pair, parity, expected, flow):
    flow_control, flags = flow
    _, path = pty_pair
    seen = {}
    monkeypatch.setattr(serial, "serial_for_url", lambda url, **kwargs: seen.update(kwargs, url=url))
    settings = SerialSettings(baudrate=38400, bytesize=7, parity=parity, stopbits=1.5, flow_control=flow_control)
    _open_serial_port(path, settings)
    assert seen == {
        "url": path,
        "baudrate": 38400,
        "bytesize": 7,
        "parity": expected,
        "stopbits": 1.5,
        "xonxoff": flags[0],
        "rtscts": flags[1],
        "dsrdtr": flags[2],
        "exclusive": True,
    }


async def test_settings_the_port_refuses_are_rejected(pty_pair):
    _, path = pty_pair  # a pseudo-terminal has no parity bit to set
    with pytest.raises(DeviceRejectedError, match="Invalid argument"):
        await open_link(TransportSpec(url=path, serial=SerialSettings(parity=Parity.EVEN)), connect_timeout_s=5)


async def test_serial_write_timeout_allows_for_the_time_on_the_wire(pty_pair):
    _, path = pty_pair
    link = await open_link(TransportSpec(url=path), connect_timeout_s=5)  # 9600 8N1: 10 bits a byte
    try:
        assert link._write_timeout_for(960) == pytest.approx(WRITE_TIMEOUT_S + 2 * 960 * 10 / 9600)
    finally:
        await link.close()


async def test_a_device_that_stops_reading_is_a_write_timeout_not_a_hang(pty_pair):
    _, path = pty_pair  # nobody reads the master: the pty buffer fills, then ours does
    link = await open_link(TransportSpec(url=path, serial=SerialSettings(baudrate=4_000_000)), connect_timeout_s=5)
    try:
        with pytest.raises(TransientDeviceError, match="did not take") as caught:
            await link.write(b"x" * (1 << 20), timeout_s=0.05)
        assert isinstance(caught.value.__cause__, TimeoutError)
    finally:
        await link.close()


async def test_tcp_links_send_keepalives(tcp_echo):
    link = await open_link(tcp_echo.transport_spec(), connect_timeout_s=5)
    try:
        sock = link._writer.get_extra_info("socket")
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
    finally:
        await link.close()


async def test_refused_is_transient():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(TransientDeviceError, match="failed") as caught:
        await open_link(TransportSpec(url=f"socket://127.0.0.1:{port}"), connect_timeout_s=5)
    assert isinstance(caught.value.__cause__, ConnectionRefusedError)


async def test_connect_timeout_is_transient(tcp_echo):
    with pytest.raises(TransientDeviceError, match="timed out"):
        await open_link(tcp_echo.transport_spec(), connect_timeout_s=0)


async def test_missing_serial_device_is_transient(tmp_path: Path):
    # An unplugged USB adapter looks exactly like this, so retrying must stay possible.
    with pytest.raises(TransientDeviceError, match="No such file"):
        await open_link(TransportSpec(url=str(tmp_path / "ttyUSB0")), connect_timeout_s=5)


async def test_a_path_that_is_no_serial_device_is_rejected(tmp_path: Path):
    plain = tmp_path / "not-a-tty"
    plain.write_bytes(b"")
    for path in (plain, tmp_path):
        with pytest.raises(DeviceRejectedError, match="not a serial device"):
            await open_link(TransportSpec(url=str(path)), connect_timeout_s=5)

