"""DmccReader against DmccSim over a real loopback socket and over a pseudo-terminal pair."""

from __future__ import annotations

import asyncio
import base64
import contextlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import pydantic
import pytest
import structlog

from drivers.base import CodeRead, DeviceEvent, DeviceGarbage, DeviceInfo, DriverContext, DriverOptions
from drivers.framing.dmcc import Status, encode_command, encode_read, encode_response
from drivers.printer.exchange import STRAY
from drivers.scanner.base import CodeReader
from drivers.scanner.dmcc import DmccError, DmccReader
from drivers.transport.spec import SerialSettings, TransportSpec
from edge.errors import DeviceRejectedError, TransientDeviceError
from edge.registry import driver_class
from simulators.dmcc import DmccSim, from_options
from simulators.faults import Corrupt, Disconnect, Garbage, Stall
from simulators.reader import ReaderFault

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from simulators.base import SimConnection

GS = b"\x1d"
CODE = b"0109501101530003" + b"17270630" + b"10AB-123" + GS + b"21XYZ0001"
AT = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
DEVICE = "reader-1"

# Only a guard against a hang turning into a pytest-timeout; nothing here measures time with it.
HANG_GUARD_S = 10.0
SHORT_TIMEOUT_S = 0.3
"""Response timeout where a missing answer is what is tested."""


async def virtual_sleep(seconds: float) -> None:
    await asyncio.sleep(0)  # a delayed answer is delayed in order, not in wall-clock time


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
    driver: DmccReader
    info: DeviceInfo
    events: asyncio.Queue[DeviceEvent]
    task: asyncio.Task[None]
    seen: list[DeviceEvent] = field(default_factory=list)

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
    sim: DmccSim, options: DmccReader.Options | None = None, *, response_timeout_s: float = 2.0
) -> AsyncIterator[Running]:
    events: asyncio.Queue[DeviceEvent] = asyncio.Queue()
    spec = sim.transport_spec(SerialSettings(baudrate=115200))
    driver = DmccReader(make_context(spec, events.put, response_timeout_s=response_timeout_s),
                        options or DmccReader.Options())
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
                task.exception()  # checked by the test, or irrelevant to it
    finally:
        await driver.close()


MODES = [
    pytest.param("extended", False, id="extended"),
    pytest.param("extended", True, id="extended-checksum"),
    pytest.param("silent", False, id="silent"),
    pytest.param("silent", True, id="silent-checksum"),
]


@pytest.mark.parametrize(("mode", "checksum"), MODES)
async def test_triggered_reads_and_no_reads(transport, mode, checksum):
    options = DmccReader.Options(response_mode=mode, checksum=checksum)
    async with DmccSim(transport=transport) as sim, running(sim, options) as run:
        assert run.info == DeviceInfo(model="DataMan 475V (simulated)", firmware="6.1.0-sim")
        assert sim.mode == mode
        sim.present(CODE)
        sim.present(None)
        sim.present(b"]d2" + CODE)
        reads = [await run.trigger() for _ in range(4)]  # the last finds nothing in front of the reader
    assert reads == [CodeRead(device_id=DEVICE, at=AT, data=CODE), None,
                     CodeRead(device_id=DEVICE, at=AT, data=b"]d2" + CODE), None]
    assert sim.reads == [CODE, None, b"]d2" + CODE, None]
    assert all(c.checksum == checksum and c.checksum_ok for c in sim.commands)
    ids = [c.command_id for c in sim.commands]
    assert ids == (list(range(1, len(ids) + 1)) if mode == "extended" else [None] * len(ids))


@pytest.mark.parametrize(("mode", "checksum"), MODES)
async def test_reads_on_the_readers_own_trigger_arrive_through_run(transport, mode, checksum):
    options = DmccReader.Options(response_mode=mode, checksum=checksum)
    async with DmccSim(transport=transport) as sim, running(sim, options) as run:
        for code in (CODE, None, b"SECOND"):
            sim.present(code)
            await sim.read_on_own_trigger()
        first, second = await run.next_event(), await run.next_event()
        assert run.events.empty()  # the no-read between them is not a read
    assert [first, second] == [CodeRead(device_id=DEVICE, at=AT, data=d) for d in (CODE, b"SECOND")]


async def test_a_grade_suffix_is_delivered_as_the_reader_sent_it():
    async with DmccSim(grade_suffix=b",A") as sim, running(sim) as run:
        sim.present(CODE)
        read = await run.trigger()
    assert read == CodeRead(device_id=DEVICE, at=AT, data=CODE + b",A")


async def test_an_unsolicited_read_arriving_before_the_answer_is_delivered_not_taken_for_it():
    async with DmccSim() as sim, running(sim) as run:
        sim.faults.inject(Garbage(encode_response(encode_read(b"OWN", mode="extended"), mode="extended",
                                                  status=Status.READ)))
        sim.present(CODE)
        read = await run.trigger()
        assert await run.next_event() == CodeRead(device_id=DEVICE, at=AT, data=b"OWN")
    assert read == CodeRead(device_id=DEVICE, at=AT, data=CODE)


class ChattySim(DmccSim):
    """Sends a read of its own trigger in the same write as every answer, right after it."""

    async def answer(self, conn: SimConnection, data: bytes, planned: tuple[ReaderFault, float] | None) -> None:
        await conn.write(data + self.unsolicited(b"AFTER"))


async def test_a_read_after_the_answer_in_the_same_chunk_is_delivered_too():
    async with ChattySim() as sim, running(sim) as run:
        sim.present(CODE)
        read = await run.trigger()
        events = [await run.next_event() for _ in range(3)]  # two from the handshake answers, one from TRIGGER
    assert read == CodeRead(device_id=DEVICE, at=AT, data=CODE)
    assert events == [CodeRead(device_id=DEVICE, at=AT, data=b"AFTER")] * 3


async def test_answers_are_matched_by_id_and_strays_reported():
    async with DmccSim() as sim, running(sim) as run:
        stray = encode_response(b"ON", mode="extended", command_id=999)
        sim.faults.inject(Garbage(stray))
        sim.present(CODE)
        read = await run.trigger()
        garbage = await run.next_event()
    assert read == CodeRead(device_id=DEVICE, at=AT, data=CODE)
    assert garbage == DeviceGarbage(device_id=DEVICE, at=AT, data=b"ON", reason=STRAY)


async def test_a_corrupted_answer_is_garbage_and_the_missing_answer_a_lost_link():
    options = DmccReader.Options(checksum=True, trigger_timeout_s=SHORT_TIMEOUT_S)
    async with DmccSim() as sim, running(sim, options) as run:
        sim.faults.inject(Corrupt(offset=9, mask=0x01))
        with pytest.raises(TransientDeviceError, match="no answer"):
            await run.trigger()
        garbage = await run.next_event()
    assert isinstance(garbage, DeviceGarbage)
    assert garbage.reason == "checksum mismatch"


@pytest.mark.parametrize(
    ("fault", "status", "text"),
    [(ReaderFault.REFUSED, Status.UNAVAILABLE, "reader unavailable")],
)
async def test_error_statuses_are_refusals_with_the_status_text(fault, status, text):
    async with DmccSim() as sim, running(sim) as run:
        sim.inject_reply(fault)
        with pytest.raises(DmccError, match=text) as caught:
            await run.trigger()
        assert caught.value.status == status
        assert isinstance(caught.value, DeviceRejectedError)
        sim.present(CODE)
        assert await run.trigger() == CodeRead(device_id=DEVICE, at=AT, data=CODE)  # the link is still fine


async def test_get_and_set_parameters_and_their_errors():
    async with DmccSim() as sim, running(sim) as run:
        assert await run.driver.get("symbol.datamatrix") == "ON"
        await run.driver.set("SYMBOL.DATAMATRIX", "OFF")
        assert sim.parameters["SYMBOL.DATAMATRIX"] == "OFF"
        with pytest.raises(DmccError, match="parameter invalid") as caught:
            await run.driver.get("NO.SUCH-PARAMETER")
        assert caught.value.status == Status.INVALID_PARAMETER
        with pytest.raises(DmccError, match="parameter invalid"):
            await run.driver.set("COM.DMCC-RESPONSE", "7")


async def test_silent_mode_set_needs_no_answer_and_invalid_commands_are_ignored():
    options = DmccReader.Options(response_mode="silent")
    async with DmccSim() as sim, running(sim, options, response_timeout_s=SHORT_TIMEOUT_S) as run:
        await run.driver.set("SYMBOL.DATAMATRIX", "OFF")
        assert await run.driver.get("SYMBOL.DATAMATRIX") == "OFF"
        with pytest.raises(TransientDeviceError, match="no answer"):  # silent mode: no feedback at all
            await run.driver.get("NO.SUCH-PARAMETER")


@pytest.mark.parametrize(
    ("start", "wanted"), [("extended", "silent"), ("silent", "extended"), ("extended", "extended")]
)
async def test_connect_switches_the_response_mode_whatever_the_reader_was_in(start, wanted):
    async with DmccSim(mode=start) as sim, running(sim, DmccReader.Options(response_mode=wanted)) as run:
        assert sim.mode == wanted
        sim.present(CODE)
        assert await run.trigger() == CodeRead(device_id=DEVICE, at=AT, data=CODE)
        assert run.events.empty()  # the answer to the mode switch, if any, is no stray


async def test_a_reader_left_in_its_mode_is_not_switched():
    options = DmccReader.Options(response_mode="extended", set_response_mode=False)
    async with DmccSim(mode="extended") as sim, running(sim, options):
        assert [c.text.split(" ")[0] for c in sim.commands] == ["GET", "GET"]


async def test_a_one_way_set_while_run_listens_takes_the_link_from_it():
    options = DmccReader.Options(response_mode="silent")
    async with DmccSim() as sim, running(sim, options) as run:
        sim.present(b"OWN")
        await sim.read_on_own_trigger()
        assert await run.next_event() == CodeRead(device_id=DEVICE, at=AT, data=b"OWN")  # run() is listening now
        async with asyncio.timeout(HANG_GUARD_S):
            await run.driver.set("SYMBOL.DATAMATRIX", "OFF")
            assert await run.driver.get("SYMBOL.DATAMATRIX") == "OFF"
        sim.present(b"OWN2")
        await sim.read_on_own_trigger()
        assert await run.next_event() == CodeRead(device_id=DEVICE, at=AT, data=b"OWN2")


async def test_a_delayed_answer_within_the_timeout_is_taken():
    async with DmccSim(sleep=virtual_sleep) as sim, running(sim) as run:
        sim.inject_reply(ReaderFault.DELAYED, 0.5)
        sim.present(CODE)
        assert await run.trigger() == CodeRead(device_id=DEVICE, at=AT, data=CODE)


async def test_a_missing_answer_means_the_state_is_unknown(transport):
    options = DmccReader.Options(trigger_timeout_s=SHORT_TIMEOUT_S)
    async with DmccSim(transport=transport) as sim, running(sim, options) as run:
        sim.inject_reply(ReaderFault.MISSING)
        sim.present(CODE)
        with pytest.raises(TransientDeviceError, match="TRIGGER ON: no answer"):
            await run.trigger()
    assert sim.reads == [CODE]  # the reader did read it: what it did is unknown to the host


async def test_a_reader_that_never_answers_fails_connect():
    async with DmccSim() as sim:
        sim.faults.inject(Stall())
        driver = DmccReader(make_context(sim.transport_spec(), _ignore, response_timeout_s=SHORT_TIMEOUT_S),
                            DmccReader.Options())
        with pytest.raises(TransientDeviceError, match="no answer"):
            await driver.connect()
        await driver.close()


async def test_disconnect_ends_run_and_a_new_driver_reconnects(transport):
    async with DmccSim(transport=transport) as sim:
        async with running(sim) as run:
            sim.faults.inject(Disconnect(after_bytes=5))
            sim.present(CODE)
            await sim.read_on_own_trigger()
            with pytest.raises(TransientDeviceError):
                await run.ended()
            assert run.events.empty()  # half a read is never delivered
        async with running(sim) as run:
            sim.present(b"AGAIN")
            assert await run.trigger() == CodeRead(device_id=DEVICE, at=AT, data=b"AGAIN")


async def test_trigger_while_run_listens_and_many_reads_in_a_row():
    async with DmccSim() as sim, running(sim) as run:
        codes = [b"%04d" % i for i in range(50)]
        for code in codes:
            sim.present(code)
        reads = [await run.trigger() for _ in codes]
    assert [r.data for r in reads if r is not None] == codes


async def test_simulator_answers_a_bad_checksum_with_status_103():
    async with DmccSim(mode="extended") as sim:
        host, port = sim.transport_spec().host_port
        reader, writer = await asyncio.open_connection(host, port)
        try:
            line = bytearray(encode_command("TRIGGER ON", checksum=True, command_id=5))
            line[-3] ^= 0xFF
            writer.write(bytes(line))
            async with asyncio.timeout(HANG_GUARD_S):
                answer = await reader.readuntil(b"\r\n")
        finally:
            writer.close()
            await writer.wait_closed()
    assert answer.startswith(b"||1:5[103]")
    assert sim.reads == []


async def test_cancelling_run_propagates_and_close_is_idempotent(transport):
    async with DmccSim(transport=transport) as sim, running(sim) as run:
        run.task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await run.task
        await asyncio.gather(run.driver.close(), run.driver.close())
        with pytest.raises(TransientDeviceError):
            await run.driver.trigger()


async def test_the_driver_is_single_use():
    async with DmccSim() as sim:
        driver = DmccReader(make_context(sim.transport_spec(), _ignore), DmccReader.Options())
        with pytest.raises(RuntimeError, match="connect"):
            await driver.run()
        with pytest.raises(RuntimeError, match="connect"):
            await driver.trigger()
        await driver.connect()
        try:
            with pytest.raises(RuntimeError, match="single-use"):
                await driver.connect()
        finally:
            await driver.close()


async def test_from_options_builds_a_simulator_the_driver_talks_to():
    options = DmccReader.Options(no_read="NR", checksum=True)
    async with from_options(options) as sim, running(sim, options) as run:
        assert sim.no_read == b"NR"
        assert await run.trigger() is None
        sim.present(CODE)
        assert await run.trigger() == CodeRead(device_id=DEVICE, at=AT, data=CODE)


def test_options_forbid_unknown_keys_and_bad_values():
    with pytest.raises(pydantic.ValidationError):
        DmccReader.Options.model_validate({"response_mode": "loud"})
    with pytest.raises(pydantic.ValidationError):
        DmccReader.Options.model_validate({"trigger_timeout": 1})
    with pytest.raises(TypeError):
        DmccReader(make_context(TransportSpec(url="socket://127.0.0.1:1"), _ignore), DriverOptions())


def test_is_a_reader():
    assert DmccReader.role == "reader"
    assert issubclass(DmccReader, CodeReader)
    assert base64.b64decode(encode_read(CODE, mode="extended")) == CODE


def test_registered():
    assert driver_class("reader.dmcc") is DmccReader


async def _ignore(event: DeviceEvent) -> None:
    pass
