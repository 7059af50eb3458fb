"""KeyenceSrReader against KeyenceSrSim over a real loopback socket and over a pseudo-terminal pair."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import pydantic
import pytest
import structlog

from drivers.base import CodeRead, DeviceEvent, DeviceGarbage, DeviceInfo, DriverContext, DriverOptions
from drivers.framing.keyence_sr import ESC, Command
from drivers.printer.exchange import STRAY
from drivers.scanner.base import CodeReader
from drivers.scanner.keyence_sr import KeyenceSrError, KeyenceSrReader
from drivers.transport.spec import SerialSettings, TransportSpec
from edge.errors import DeviceRejectedError, TransientDeviceError
from edge.registry import driver_class
from simulators.faults import Disconnect, Garbage, Split, Stall
from simulators.keyence_sr import KeyenceSrSim, from_options
from simulators.reader import ReaderFault

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

GS = b"\x1d"
CODE = b"0109501101530003" + b"17270630" + b"10AB-123" + GS + b"21XYZ0001"
AT = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
DEVICE = "reader-2"

# Only a guard against a hang turning into a pytest-timeout; nothing here measures time with it.
HANG_GUARD_S = 10.0
SHORT_TIMEOUT_S = 0.3
"""Response timeout where a missing answer is what is tested."""

FRAMINGS = ["CR", "STX/ETX"]


async def virtual_sleep(seconds: float) -> None:
    await asyncio.sleep(0)


def make_context(spec: TransportSpec, events, *, response_timeout_s: float = 2.0) -> DriverContext:
    return DriverContext(
        device_id=DEVICE,
        transport=spec,
        events=events,
        log=structlog.get_logger().bind(device=DEVICE),
        clock=lambda: AT,
        connect_timeout_s=5.0,
        response_timeout_s=response_timeout_s,
    )


@dataclass
class Running:
    driver: KeyenceSrReader
    info: DeviceInfo
    events: asyncio.Queue[DeviceEvent]
    task: asyncio.Task[None]

    async def next_event(self) -> DeviceEvent:
        async with asyncio.timeout(HANG_GUARD_S):
            return await self.events.get()

    async def trigger(self) -> CodeRead | None:
        async with asyncio.timeout(HANG_GUARD_S):
            return await self.driver.trigger()

    async def ended(self) -> None:
        async with asyncio.timeout(HANG_GUARD_S):
            await self.task


@contextlib.asynccontextmanager
async def running(
    sim: KeyenceSrSim, options: KeyenceSrReader.Options | None = None, *, response_timeout_s: float = 2.0
) -> AsyncIterator[Running]:
    events: asyncio.Queue[DeviceEvent] = asyncio.Queue()
    spec = sim.transport_spec(SerialSettings(baudrate=115200))
    options = options or KeyenceSrReader.Options(framing=sim.framing)
    driver = KeyenceSrReader(make_context(spec, events.put, response_timeout_s=response_timeout_s), options)
    try:
        async with asyncio.timeout(HANG_GUARD_S):
            info = await driver.connect()
        task = asyncio.create_task(driver.run())
        try:
            yield Running(driver, info, events, task)
        finally:
            task.cancel()
            await asyncio.wait([task])
            if not task.cancelled():
                task.exception()
    finally:
        await driver.close()


@pytest.mark.parametrize("framing", FRAMINGS)
@pytest.mark.parametrize("esc", [False, True])
async def test_triggered_reads_and_no_reads(transport, framing, esc):
    options = KeyenceSrReader.Options(framing=framing, leading_esc=esc)
    async with KeyenceSrSim(framing=framing, transport=transport) as sim, running(sim, options) as run:
        assert run.info == DeviceInfo(model="SR-X300 (simulated)", firmware="1.00-sim")
        sim.present(CODE)
        sim.present(None)
        sim.present(b"]d2" + CODE)
        reads = [await run.trigger() for _ in range(4)]
        assert run.events.empty()  # OK,LON acknowledgements are expected, not strays
    assert reads == [CodeRead(device_id=DEVICE, at=AT, data=CODE), None,
                     CodeRead(device_id=DEVICE, at=AT, data=b"]d2" + CODE), None]
    assert [c.name for c in sim.commands] == ["KEYENCE", "LON", "LON", "LON", "LON"]


@pytest.mark.parametrize("framing", FRAMINGS)
async def test_reads_on_the_readers_own_trigger_arrive_through_run(transport, framing):
    async with KeyenceSrSim(framing=framing, transport=transport) as sim, running(sim) as run:
        for code in (CODE, None, b"SECOND"):
            sim.present(code)
            await sim.read_on_own_trigger()
        first, second = await run.next_event(), await run.next_event()
        assert run.events.empty()
    assert [first, second] == [CodeRead(device_id=DEVICE, at=AT, data=d) for d in (CODE, b"SECOND")]


async def test_a_read_arriving_while_another_command_waits_is_delivered():
    async with KeyenceSrSim() as sim, running(sim) as run:
        sim.faults.inject(Garbage(b"OWN\r"))
        assert await run.driver.command("NUM") == ("0", "0", "0", "0", "0")
        assert await run.next_event() == CodeRead(device_id=DEVICE, at=AT, data=b"OWN")


async def test_a_custom_no_read_string_and_a_grade_suffix():
    options = KeyenceSrReader.Options(no_read="NOREAD")
    async with KeyenceSrSim(no_read=b"NOREAD", grade_suffix=b":B") as sim, running(sim, options) as run:
        sim.present(CODE)
        assert await run.trigger() == CodeRead(device_id=DEVICE, at=AT, data=CODE + b":B")
        assert await run.trigger() is None


async def test_er_replies_are_refusals_with_the_code_text():
    async with KeyenceSrSim() as sim, running(sim) as run:
        sim.inject_reply(ReaderFault.REFUSED)
        with pytest.raises(KeyenceSrError, match=r"ER 20 \(not executable in the current state\)") as caught:
            await run.trigger()
        assert caught.value.code == "20"
        assert isinstance(caught.value, DeviceRejectedError)
        with pytest.raises(KeyenceSrError, match="undefined command"):
            await run.driver.command("BOGUS")
        await run.driver.stop_reading()
        assert sim.read_off == 1
        sim.present(CODE)
        assert await run.trigger() == CodeRead(device_id=DEVICE, at=AT, data=CODE)


async def test_a_delayed_read_is_taken_and_a_missing_one_is_a_lost_link(transport):
    options = KeyenceSrReader.Options(trigger_timeout_s=SHORT_TIMEOUT_S)
    async with KeyenceSrSim(transport=transport, sleep=virtual_sleep) as sim, running(sim, options) as run:
        sim.inject_reply(ReaderFault.DELAYED, 0.5)
        sim.present(CODE)
        assert await run.trigger() == CodeRead(device_id=DEVICE, at=AT, data=CODE)
        sim.inject_reply(ReaderFault.MISSING)
        with pytest.raises(TransientDeviceError, match="LON: no answer"):
            await run.trigger()


async def test_stray_replies_and_line_noise_are_reported():
    async with KeyenceSrSim(framing="STX/ETX") as sim, running(sim) as run:
        sim.faults.inject(Garbage(b"zz\x02OK,LOFF\x03"))
        sim.present(CODE)
        assert await run.trigger() == CodeRead(device_id=DEVICE, at=AT, data=CODE)
        noise, stray = await run.next_event(), await run.next_event()
    assert noise == DeviceGarbage(device_id=DEVICE, at=AT, data=b"zz", reason="bytes outside STX/ETX")
    assert stray == DeviceGarbage(device_id=DEVICE, at=AT, data=b"OK,LOFF", reason=STRAY)


async def test_replies_split_byte_by_byte_still_arrive_whole(transport):
    async with KeyenceSrSim(transport=transport) as sim, running(sim) as run:
        sim.faults.inject(Split(chunk_size=1))
        sim.present(CODE)
        assert await run.trigger() == CodeRead(device_id=DEVICE, at=AT, data=CODE)


async def test_the_simulator_discards_a_half_command_on_esc():
    async with KeyenceSrSim() as sim:
        host, port = sim.transport_spec().host_port
        reader, writer = await asyncio.open_connection(host, port)
        try:
            writer.write(b"LOF" + ESC + b"KEYENCE\r")
            async with asyncio.timeout(HANG_GUARD_S):
                answer = await reader.readuntil(b"\r")
        finally:
            writer.close()
            await writer.wait_closed()
    assert answer == b"OK,KEYENCE,SR-X300 (simulated),1.00-sim\r"
    assert sim.commands == [Command("KEYENCE")]


async def test_a_reader_that_never_answers_fails_connect():
    async with KeyenceSrSim() as sim:
        sim.faults.inject(Stall())
        driver = KeyenceSrReader(make_context(sim.transport_spec(), _ignore, response_timeout_s=SHORT_TIMEOUT_S),
                                 KeyenceSrReader.Options())
        with pytest.raises(TransientDeviceError, match="KEYENCE: no answer"):
            await driver.connect()
        await driver.close()


async def test_disconnect_ends_run_and_a_new_driver_reconnects(transport):
    async with KeyenceSrSim(transport=transport) as sim:
        async with running(sim) as run:
            sim.faults.inject(Disconnect(after_bytes=4))
            sim.present(CODE)
            await sim.read_on_own_trigger()
            with pytest.raises(TransientDeviceError):
                await run.ended()
            assert run.events.empty()
        async with running(sim) as run:
            sim.present(b"AGAIN")
            assert await run.trigger() == CodeRead(device_id=DEVICE, at=AT, data=b"AGAIN")


async def test_cancelling_run_propagates_and_the_driver_is_single_use(transport):
    async with KeyenceSrSim(transport=transport) as sim, running(sim) as run:
        run.task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await run.task
        with pytest.raises(RuntimeError, match="single-use"):
            await run.driver.connect()
        await asyncio.gather(run.driver.close(), run.driver.close())
        with pytest.raises(TransientDeviceError):
            await run.driver.trigger()


async def test_from_options_builds_a_simulator_the_driver_talks_to():
    options = KeyenceSrReader.Options(framing="STX/ETX", no_read="NG")
    async with from_options(options) as sim, running(sim, options) as run:
        assert (sim.framing, sim.no_read) == ("STX/ETX", b"NG")
        assert await run.trigger() is None


def test_options_forbid_unknown_keys_and_bad_values():
    with pytest.raises(pydantic.ValidationError):
        KeyenceSrReader.Options.model_validate({"framing": "LF"})
    with pytest.raises(pydantic.ValidationError):
        KeyenceSrReader.Options.model_validate({"esc": True})
    with pytest.raises(TypeError):
        KeyenceSrReader(make_context(TransportSpec(url="socket://127.0.0.1:1"), _ignore), DriverOptions())


def test_is_a_reader():
    assert KeyenceSrReader.role == "reader"
    assert issubclass(KeyenceSrReader, CodeReader)


def test_registered():
    assert driver_class("reader.keyence-sr") is KeyenceSrReader


async def _ignore(event: DeviceEvent) -> None:
    pass
