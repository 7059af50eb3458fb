"""WedgeScanner against WedgeScannerSim over a real loopback socket and over a pseudo-terminal pair."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import pydantic
import pytest
import structlog

from drivers.base import CodeRead, DeviceEvent, DeviceGarbage, DeviceInfo, DriverContext, DriverOptions
from drivers.scanner.base import CodeReader
from drivers.scanner.wedge import WedgeScanner
from drivers.transport.spec import SerialSettings, TransportSpec
from edge.errors import TransientDeviceError
from edge.registry import driver_class
from simulators.faults import Corrupt, Delay, Disconnect, Garbage, Split, Stall
from simulators.scanner_wedge import WedgeScannerSim

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

GS = b"\x1d"
CODE = b"0109501101530003" + b"17270630" + b"10AB-123" + GS + b"21XYZ0001"
AT = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
DEVICE = "scanner-1"

# Only a guard against a hang turning into a 60 s pytest-timeout; nothing here measures time.
HANG_GUARD_S = 10.0


def make_context(spec: TransportSpec, events) -> DriverContext:
    return DriverContext(
        device_id=DEVICE,
        transport=spec,
        events=events,
        log=structlog.get_logger().bind(device=DEVICE),
        clock=lambda: AT,
        connect_timeout_s=5.0,
    )


def spec_for(sim: WedgeScannerSim) -> TransportSpec:
    return sim.transport_spec(SerialSettings(baudrate=115200))


@dataclass
class Running:
    driver: WedgeScanner
    events: asyncio.Queue[DeviceEvent]
    task: asyncio.Task[None]

    async def next_event(self) -> DeviceEvent:
        async with asyncio.timeout(HANG_GUARD_S):
            return await self.events.get()

    async def ended(self) -> None:
        """Wait for run() to end and re-raise what ended it."""
        async with asyncio.timeout(HANG_GUARD_S):
            await self.task


@contextlib.asynccontextmanager
async def running(
    sim: WedgeScannerSim, options: WedgeScanner.Options | None = None, *, queue_size: int = 0
) -> AsyncIterator[Running]:
    events: asyncio.Queue[DeviceEvent] = asyncio.Queue(maxsize=queue_size)
    driver = WedgeScanner(make_context(spec_for(sim), events.put), options or WedgeScanner.Options())
    try:
        assert await driver.connect() == DeviceInfo(model="keyboard-wedge scanner")
        async with asyncio.timeout(HANG_GUARD_S):
            await sim.wait_for_connection()
        task = asyncio.create_task(driver.run())
        try:
            yield Running(driver, events, task)
        finally:
            task.cancel()
            await asyncio.wait([task])
            if not task.cancelled():
                task.exception()  # already checked by the test, or irrelevant to it
    finally:
        await driver.close()


async def test_reads_arrive_exact_and_in_order(transport):
    codes = [CODE, b"]d2" + CODE, b"A", b"\x00\x7f\xff binary \x1d\x1d"]
    async with WedgeScannerSim(transport=transport) as sim, running(sim) as run:
        for code in codes:
            await sim.scan(code)
        received = [await run.next_event() for _ in codes]
    assert received == [CodeRead(device_id=DEVICE, at=AT, data=code) for code in codes]
    assert sim.scanned == codes


async def test_garbage_between_reads_is_reported_and_the_next_read_arrives(transport):
    options = WedgeScanner.Options(max_length=64)
    async with WedgeScannerSim(transport=transport) as sim, running(sim, options) as run:
        sim.faults.inject(Garbage(b"N" * 80 + b"\r\n"))
        await sim.scan(CODE)
        garbage = await run.next_event()
        read = await run.next_event()
        assert not run.task.done()  # garbage does not end the link
    assert garbage == DeviceGarbage(device_id=DEVICE, at=AT, data=b"N" * 80, reason="line longer than 64 bytes")
    assert read == CodeRead(device_id=DEVICE, at=AT, data=CODE)


async def test_a_line_without_the_programmed_prefix_and_suffix_is_garbage():
    options = WedgeScanner.Options(prefix=b"\x02", suffix=b"\x03")
    async with WedgeScannerSim(prefix=b"\x02", suffix=b"\x03") as sim, running(sim, options) as run:
        sim.faults.inject(Garbage(b"noise\r\n"))
        await sim.scan(CODE)
        garbage = await run.next_event()
        read = await run.next_event()
    assert isinstance(garbage, DeviceGarbage)
    assert garbage.data == b"noise"
    assert read == CodeRead(device_id=DEVICE, at=AT, data=CODE)


async def test_symbology_identifier_is_kept_unless_stripping_is_asked_for():
    async with WedgeScannerSim(symbology_id=b"]d2") as sim:
        async with running(sim) as run:
            await sim.scan(CODE)
            kept = await run.next_event()
        async with running(sim, WedgeScanner.Options(strip_symbology_id=True)) as run:
            await sim.scan(CODE)
            stripped = await run.next_event()
    assert isinstance(kept, CodeRead)
    assert kept.data == b"]d2" + CODE
    assert isinstance(stripped, CodeRead)
    assert stripped.data == CODE


@pytest.mark.parametrize(
    ("sent", "configured"),
    [(b"\r", "CR"), (b"\n", "LF"), (b"\r\n", "CRLF"), (b"\r", "any"), (b"\n", "any"), (b"\r\n", "any")],
)
async def test_terminators(sent, configured):
    options = WedgeScanner.Options(terminator=configured)
    async with WedgeScannerSim(terminator=sent) as sim, running(sim, options) as run:
        await sim.scan(b"FIRST")
        await sim.scan(b"SECOND")
        received = [await run.next_event(), await run.next_event()]
    assert [e.data for e in received if isinstance(e, CodeRead)] == [b"FIRST", b"SECOND"]


async def test_empty_lines_are_not_reads():
    async with WedgeScannerSim() as sim, running(sim) as run:
        sim.faults.inject(Garbage(b"\r\n\r\n"))
        await sim.scan(b"AFTER")
        assert await run.next_event() == CodeRead(device_id=DEVICE, at=AT, data=b"AFTER")


async def test_split_writes_and_delays_still_deliver_whole_reads(transport):
    slept: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        slept.append(seconds)
        await asyncio.sleep(0)

    async with WedgeScannerSim(transport=transport, sleep=fake_sleep) as sim, running(sim) as run:
        sim.faults.inject(Split(chunk_size=1, gap_s=0.01))
        sim.faults.inject(Delay(0.5))
        await sim.scan(CODE)
        assert await run.next_event() == CodeRead(device_id=DEVICE, at=AT, data=CODE)
    assert slept == [0.5] + [0.01] * (len(CODE) + 1)


async def test_a_stalled_scanner_sends_nothing_until_the_stall_is_lifted():
    async with WedgeScannerSim() as sim, running(sim) as run:
        stall = sim.faults.inject(Stall())
        await sim.scan(b"SWALLOWED")
        sim.faults.remove(stall)
        await sim.scan(b"SENT")
        assert await run.next_event() == CodeRead(device_id=DEVICE, at=AT, data=b"SENT")
        assert sim.connections[0].bytes_sent == len(b"SENT\r\n")
    assert sim.scanned == [b"SWALLOWED", b"SENT"]


async def test_a_corrupted_byte_reaches_the_driver_as_sent():
    async with WedgeScannerSim() as sim, running(sim) as run:
        sim.faults.inject(Corrupt(offset=0, mask=0x20))
        await sim.scan(b"abc")
        await sim.scan(b"abc")
        first, second = await run.next_event(), await run.next_event()
    assert [first, second] == [CodeRead(device_id=DEVICE, at=AT, data=d) for d in (b"Abc", b"abc")]


async def test_reads_are_never_dropped_when_the_line_is_slow():
    async with WedgeScannerSim() as sim, running(sim, queue_size=1) as run:
        codes = [b"%03d" % i for i in range(20)]
        for code in codes:
            await sim.scan(code)
        received = [await run.next_event() for _ in codes]
    assert [e.data for e in received if isinstance(e, CodeRead)] == codes


async def test_disconnect_mid_frame_ends_run_and_the_half_line_is_not_a_read(transport):
    async with WedgeScannerSim(transport=transport) as sim, running(sim) as run:
        await sim.scan(b"WHOLE")
        assert await run.next_event() == CodeRead(device_id=DEVICE, at=AT, data=b"WHOLE")
        sim.faults.inject(Disconnect(after_bytes=3))
        await sim.scan(CODE)
        with pytest.raises(TransientDeviceError):
            await run.ended()
        assert run.events.empty()
        assert sim.faults.active == ()


async def test_simulator_hang_up_ends_run(transport):
    async with WedgeScannerSim(transport=transport) as sim, running(sim) as run:
        sim.disconnect()
        with pytest.raises(TransientDeviceError):
            await run.ended()


async def test_a_new_driver_reconnects_after_a_disconnect(transport):
    # A pseudo-terminal comes back under the same path, like a USB adapter plugged in again.
    async with WedgeScannerSim(transport=transport) as sim:
        async with running(sim) as run:
            sim.disconnect()
            with pytest.raises(TransientDeviceError):
                await run.ended()
        async with running(sim) as run:
            await sim.scan(b"AGAIN")
            assert await run.next_event() == CodeRead(device_id=DEVICE, at=AT, data=b"AGAIN")


async def test_connect_to_a_closed_port_is_transient():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    spec = TransportSpec(url=f"socket://127.0.0.1:{port}")
    driver = WedgeScanner(make_context(spec, _ignore), WedgeScanner.Options())
    with pytest.raises(TransientDeviceError) as caught:
        await driver.connect()
    assert isinstance(caught.value.__cause__, ConnectionRefusedError)
    await driver.close()


async def test_connect_to_a_missing_serial_device_is_transient(tmp_path: Path):
    driver = WedgeScanner(make_context(TransportSpec(url=str(tmp_path / "ttyUSB7")), _ignore), WedgeScanner.Options())
    with pytest.raises(TransientDeviceError, match="ttyUSB7"):
        await driver.connect()
    await driver.close()


async def test_close_is_idempotent_before_during_and_after(transport):
    async with WedgeScannerSim(transport=transport) as sim:
        driver = WedgeScanner(make_context(spec_for(sim), _ignore), WedgeScanner.Options())
        await driver.close()
        await driver.connect()
        await asyncio.gather(driver.close(), driver.close())
        await driver.close()
        with pytest.raises(TransientDeviceError):
            await driver.run()


async def test_cancelling_run_propagates_cancellation(transport):
    async with WedgeScannerSim(transport=transport) as sim, running(sim) as run:
        await sim.scan(b"X")
        await run.next_event()
        run.task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await run.task


async def test_the_driver_is_single_use():
    async with WedgeScannerSim() as sim:
        driver = WedgeScanner(make_context(spec_for(sim), _ignore), WedgeScanner.Options())
        with pytest.raises(RuntimeError, match="connect"):
            await driver.run()
        await driver.connect()
        try:
            with pytest.raises(RuntimeError, match="single-use"):
                await driver.connect()
        finally:
            await driver.close()


def test_options_forbid_unknown_keys_and_bad_values():
    with pytest.raises(pydantic.ValidationError):
        WedgeScanner.Options.model_validate({"terminator": "CRCR"})
    with pytest.raises(pydantic.ValidationError):
        WedgeScanner.Options.model_validate({"max_len": 10})
    assert WedgeScanner.Options.model_validate({"prefix": "\x02"}).prefix == b"\x02"


def test_other_options_are_refused():
    with pytest.raises(TypeError):
        WedgeScanner(make_context(TransportSpec(url="socket://127.0.0.1:1"), _ignore), DriverOptions())


def test_registered_as_a_reader():
    assert driver_class("scanner.wedge") is WedgeScanner
    assert WedgeScanner.role == "reader"
    assert issubclass(WedgeScanner, CodeReader)


def test_the_reader_role_is_abstract():
    with pytest.raises(TypeError, match="abstract"):
        CodeReader(make_context(TransportSpec(url="socket://127.0.0.1:1"), _ignore), DriverOptions())  # type: ignore[abstract]


async def _ignore(event: DeviceEvent) -> None:
    pass
