"""LinxRciPrinter against LinxRciSim over a real loopback socket and over a pseudo-terminal pair."""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING

import pydantic
import pytest

from drivers.base import DeviceInfo, DriverOptions
from drivers.framing.linx_rci import RciFramer, Reply, encode_command
from drivers.printer.base import (
    EvidenceKind,
    FaultReason,
    LoadStyle,
    Printer,
    PrinterCapabilities,
    PrinterState,
    PrintEvidence,
    PrintOutcome,
    PrintRecord,
)
from drivers.printer.linx_rci import (
    JET_TIMEOUT_S,
    MODEL,
    CmdId,
    CStatus,
    LinxRciPrinter,
    PrintCount,
    RciStatus,
)
from drivers.transport.spec import TransportSpec
from edge.errors import DeviceRejectedError, TransientDeviceError
from edge.registry import driver_class
from simulators.faults import Corrupt, Disconnect, Garbage
from simulators.linx_rci import LinxRciSim, from_options
from simulators.printer import ReplyFault
from tests.drivers.printer_harness import (
    GS,
    HANG_GUARD_S,
    SHORT_TIMEOUT_S,
    Harness,
    connected_driver,
    garbage,
    ignore,
    make_context,
    outcomes,
    printed_ids,
    spec_for,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from drivers.base import EventSink


def options(**kwargs) -> LinxRciPrinter.Options:
    values = {"job": "SERIAL", "poll_interval_s": 0.002, "status_interval_s": 0.01, **kwargs}
    return LinxRciPrinter.Options.model_validate(values)


def record(record_id: int, code: str | None = None) -> PrintRecord:
    return PrintRecord(record_id, (("CODE", code or f"010950110153000321SN{record_id:04d}"),))


@contextlib.asynccontextmanager
async def connected(
    sim: LinxRciSim,
    opts: LinxRciPrinter.Options | None = None,
    *,
    run: bool = False,
    response_timeout_s: float = 2.0,
) -> AsyncIterator[Harness[LinxRciPrinter]]:
    def build(events: EventSink) -> LinxRciPrinter:
        context = make_context(spec_for(sim), events, response_timeout_s=response_timeout_s, sleep=asyncio.sleep)
        return LinxRciPrinter(context, opts or options())

    async with connected_driver(build, run=run) as harness:
        assert harness.info == DeviceInfo(model=MODEL)
        yield harness


# -- connect, job, load, print ------------------------------------------------------------------


async def test_connect_handshakes_and_selects_the_configured_job(transport):
    async with LinxRciSim(transport=transport) as sim, connected(sim):
        assert [c.cmd for c in sim.commands] == [
            CmdId.STATUS, CmdId.MESSAGE_PRINT_COUNT, CmdId.MESSAGE_PRINT_COUNT, CmdId.LOAD_MESSAGE,
            CmdId.MESSAGE_PRINT_COUNT,
        ]
        assert sim.commands[3].data == b"SERIAL".ljust(16, b"\0") + b"\0\0"
        assert sim.engine.job == "SERIAL"


async def test_connect_to_something_that_does_not_answer_fails():
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    try:
        port = server.sockets[0].getsockname()[1]
        spec = TransportSpec(url=f"socket://127.0.0.1:{port}")
        context = make_context(spec, ignore, response_timeout_s=SHORT_TIMEOUT_S, sleep=asyncio.sleep)
        driver = LinxRciPrinter(context, options())
        with pytest.raises(TransientDeviceError, match="status request"):
            await driver.connect()
        await driver.close()
    finally:
        server.close()
        await server.wait_closed()


async def test_select_job_and_unknown_job(transport):
    jobs = {"SERIAL": ("CODE",), "OTHER": ("CODE",)}
    async with LinxRciSim(transport=transport, jobs=jobs) as sim, connected(sim) as h:
        await h.driver.select_job("OTHER")
        assert sim.engine.job == "OTHER"
        with pytest.raises(DeviceRejectedError, match="NOPE"):
            await h.driver.select_job("NOPE")
        with pytest.raises(DeviceRejectedError, match="X" * 17):
            await h.driver.select_job("X" * 17)  # wider than the message name field
        assert sim.engine.job == "OTHER"


async def test_connect_with_an_unknown_configured_job_is_rejected():
    async with LinxRciSim() as sim:
        driver = LinxRciPrinter(make_context(spec_for(sim), ignore, sleep=asyncio.sleep), options(job="MISSING"))
        with pytest.raises(DeviceRejectedError, match="MISSING"):
            await driver.connect()
        await driver.close()


async def test_records_print_in_order_with_their_ids(transport):
    records = [record(100 + i) for i in range(5)]
    async with LinxRciSim(transport=transport) as sim, connected(sim, run=True) as h:
        await h.driver.load(records)
        assert outcomes(h.drain()) == [(r.record_id, PrintOutcome.SENT) for r in records]
        await h.driver.start()
        for _ in records:
            assert sim.product_detect() is not None
        assert await h.printed(5) == [r.record_id for r in records]
    assert [p.fields for p in sim.engine.printed] == [r.fields for r in records]
    assert [c.data[2:].decode() for c in sim.commands if c.cmd == CmdId.DOWNLOAD_REMOTE_DATA] == [
        r.value("CODE") for r in records
    ]


async def test_gs_and_esc_in_values_reach_the_printer_unchanged(transport):
    value = "0109501101530003" + "10AB\x1b1" + GS + "21XYZ"
    async with LinxRciSim(transport=transport) as sim, connected(sim, run=True) as h:
        await h.driver.load([record(1, value)])
        await h.driver.start()
        sim.product_detect()
        assert await h.printed(1) == [1]
    assert sim.engine.printed[0].value("CODE") == value


async def test_multi_field_records_use_the_separator():
    jobs = {"LOT": ("SN", "LOT")}
    opts = options(job="LOT", fields={"SN": "serial", "LOT": "10"}, field_separator="|")
    async with LinxRciSim(jobs=jobs, field_separator="|") as sim, connected(sim, opts, run=True) as h:
        await h.driver.load(
            [PrintRecord(7, (("SN", "A1"), ("LOT", "L9"))), PrintRecord(8, (("SN", "A|2"), ("LOT", "x")))]
        )
        assert outcomes(h.drain()) == [(7, PrintOutcome.SENT), (8, PrintOutcome.FAILED)]
        await h.driver.start()
        sim.product_detect()
        assert await h.printed(1) == [7]
    assert sim.engine.printed[0].fields == (("SN", "A1"), ("LOT", "L9"))


async def test_capabilities():
    async with LinxRciSim() as sim:
        async with connected(sim) as h:
            assert h.driver.capabilities == PrinterCapabilities(
                LoadStyle.BUFFERED, 16, EvidenceKind.PRINT_COUNTER, host_trigger=False
            )
        async with connected(sim, options(depth=8, remote_buffer_size=32)) as h:
            assert h.driver.capabilities.buffer_depth == 8
    with pytest.raises(pydantic.ValidationError, match="remote buffer"):
        options(depth=17)


async def test_clear_then_product_detect_prints_nothing_from_before(transport):
    async with LinxRciSim(transport=transport) as sim, connected(sim, run=True) as h:
        await h.driver.load([record(1), record(2), record(3)])
        await h.driver.start()
        sim.product_detect()
        assert await h.printed(1) == [1]
        await h.driver.clear()
        assert sim.engine.buffered == 0
        assert sim.product_detect() is None
        await h.driver.load([record(4)])
        sim.product_detect()
        assert await h.printed(2) == [1, 4]
    assert [p.value("CODE") for p in sim.engine.printed] == [record(1).value("CODE"), record(4).value("CODE")]


async def test_a_print_just_before_clear_is_still_reported():
    async with LinxRciSim() as sim, connected(sim) as h:  # no run(): nothing polls before clear()
        await h.driver.load([record(1), record(2)])
        await h.driver.start()
        sim.product_detect()
        await h.driver.clear()
        assert printed_ids(h.drain()) == [1]


async def test_status_mapping_fault_and_recovery(transport):
    async with LinxRciSim(transport=transport) as sim, connected(sim, run=True) as h:
        first = await h.status(PrinterState.READY)
        assert first.status.faults == frozenset()
        mark = h.mark()
        await h.driver.start()
        await h.status(PrinterState.PRINTING, mark)
        mark = h.mark()
        sim.engine.set_fault(FaultReason.INK_OUT)
        fault = await h.status(PrinterState.FAULT, mark)
        assert fault.status.faults == frozenset({FaultReason.INK_OUT})
        assert "errors=0x00000001" in fault.status.detail
        mark = h.mark()
        sim.engine.clear_fault()
        assert (await h.status(PrinterState.PRINTING, mark)).status.faults == frozenset()
        mark = h.mark()
        sim.engine.faults |= {FaultReason.DOOR_OPEN, FaultReason.RIBBON_OUT}  # no ribbon on a CIJ: OTHER
        fault = await h.status(PrinterState.FAULT, mark)
        assert fault.status.faults == frozenset({FaultReason.DOOR_OPEN, FaultReason.OTHER})


async def test_underrun_is_a_warning():
    async with LinxRciSim() as sim, connected(sim, run=True) as h:
        await h.driver.start()
        mark = h.mark()
        sim.product_detect()  # nothing loaded
        warning = await h.status(PrinterState.WARNING, mark)
        assert warning.status.faults == frozenset({FaultReason.BUFFER_UNDERRUN})
        assert "buffer-underrun" in warning.status.detail


def test_status_decoding_table():
    assert RciStatus.parse(bytes.fromhex("0004") + bytes(8)).to_printer_status().state is PrinterState.PRINTING
    assert RciStatus.parse(bytes.fromhex("0002") + bytes(8)).to_printer_status().state is PrinterState.READY
    assert RciStatus.parse(bytes.fromhex("0304") + bytes(8)).to_printer_status().state is PrinterState.STOPPED
    unknown = RciStatus(0, 4, errors=1 << 20).to_printer_status()
    assert unknown.state is PrinterState.FAULT
    assert unknown.faults == frozenset({FaultReason.OTHER})
    assert RciStatus.parse(RciStatus(0, 4, 5, 6).encode()) == RciStatus(0, 4, 5, 6)
    with pytest.raises(ValueError, match="status"):
        RciStatus.parse(b"\x00\x04")
    assert PrintCount.parse(PrintCount(2**31 + 5, "SERIAL").encode()) == PrintCount(2**31 + 5, "SERIAL")


async def test_counters(transport):
    async with LinxRciSim(transport=transport) as sim, connected(sim) as h:
        await h.driver.load([record(1), record(2)])
        await h.driver.start()
        sim.product_detect()
        sim.product_detect()
        counters = await h.driver.counters()
        assert counters.printed == 2
        assert counters.buffered is None


async def test_jet_start_and_stop_wait_for_the_slow_answer():
    slept: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        slept.append(seconds)
        await asyncio.sleep(0)

    async with LinxRciSim(jet_time_s=45.0, sleep=fake_sleep) as sim, connected(sim) as h:
        await h.driver.stop_jet()
        assert not sim.jet_running
        assert (await h.driver.status()).state is PrinterState.STOPPED
        await h.driver.start_jet()
        assert sim.jet_running
    assert slept == [45.0, 45.0]
    assert JET_TIMEOUT_S >= 60


async def test_start_without_a_message_is_refused():
    async with LinxRciSim() as sim, connected(sim, options(job=None)) as h:
        with pytest.raises(DeviceRejectedError, match="not ready"):
            await h.driver.start()


# -- faults --------------------------------------------------------------------------------------


async def test_garbage_before_an_answer_is_reported_and_the_driver_goes_on(transport):
    async with LinxRciSim(transport=transport) as sim, connected(sim) as h:
        sim.faults.inject(Garbage(b"\x00noise\xff"))
        assert (await h.driver.status()).state is PrinterState.READY
        await h.driver.load([record(1)])
        events = h.drain()
    (noise,) = garbage(events)
    assert noise.data == b"\x00noise\xff"
    assert outcomes(events) == [(1, PrintOutcome.SENT)]


async def test_a_corrupted_answer_is_garbage_and_the_call_fails(transport):
    async with LinxRciSim(transport=transport) as sim, connected(sim, response_timeout_s=SHORT_TIMEOUT_S) as h:
        sim.faults.inject(Corrupt(offset=-1, mask=0x01))
        with pytest.raises(TransientDeviceError, match="status request"):
            await h.driver.status()
        assert [g.reason for g in garbage(h.drain())] == ["bad checksum"]


async def test_nak_on_a_load_fails_that_record_only(transport):
    async with LinxRciSim(transport=transport) as sim, connected(sim, run=True) as h:
        sim.engine.inject_reply(ReplyFault.NAK)
        await h.driver.load([record(1), record(2)])
        events = h.drain()
        assert outcomes(events) == [(1, PrintOutcome.FAILED), (2, PrintOutcome.SENT)]
        assert "command refused" in next(e for e in events if isinstance(e, PrintEvidence)).detail
        await h.driver.start()
        sim.product_detect()
        assert await h.printed(1) == [2]
    assert [p.value("CODE") for p in sim.engine.printed] == [record(2).value("CODE")]


async def test_buffer_full_fails_the_record_with_the_reason():
    async with LinxRciSim(depth=2) as sim, connected(sim, options(remote_buffer_size=2)) as h:
        await h.driver.load([record(1), record(2), record(3)])
        events = h.drain()
    assert outcomes(events) == [(1, PrintOutcome.SENT), (2, PrintOutcome.SENT), (3, PrintOutcome.FAILED)]
    assert "buffer full" in [e for e in events if isinstance(e, PrintEvidence)][-1].detail


async def test_a_missing_answer_fails_the_call_within_the_timeout(transport):
    async with LinxRciSim(transport=transport) as sim, connected(sim, response_timeout_s=SHORT_TIMEOUT_S) as h:
        sim.engine.inject_reply(ReplyFault.MISSING)
        loop = asyncio.get_running_loop()
        began = loop.time()
        with pytest.raises(TransientDeviceError, match="remote field data of record 1"):
            await h.driver.load([record(1)])
        assert loop.time() - began < SHORT_TIMEOUT_S + 1.0
        assert outcomes(h.drain()) == []  # neither SENT nor FAILED: the record's fate is unknown


async def test_a_duplicated_answer_gives_no_duplicate_or_wrong_print(transport):
    async with LinxRciSim(transport=transport) as sim, connected(sim, run=True) as h:
        sim.engine.inject_reply(ReplyFault.DUPLICATE)  # on whatever the driver sends next
        await h.driver.load([record(1), record(2)])
        mark = h.mark()
        await h.driver.start()
        await h.status(PrinterState.PRINTING, mark)
        sim.engine.inject_reply(ReplyFault.DUPLICATE, count=3)
        sim.product_detect()
        assert await h.printed(1) == [1]
        sim.product_detect()
        assert await h.printed(2) == [1, 2]
        await h.driver.load([record(3)])
        sim.product_detect()
        assert await h.printed(3) == [1, 2, 3]
        # Let more polls go by: still exactly one PRINTED per record.
        for _ in range(3):  # each stop and start is a status change, several polls apart
            mark = h.mark()
            await h.driver.stop()
            await h.status(PrinterState.READY, mark)
            mark = h.mark()
            await h.driver.start()
            await h.status(PrinterState.PRINTING, mark)
        assert printed_ids(h.drain()) == [1, 2, 3]
        assert all(g.reason == "answer nobody asked for" for g in garbage(h.seen))


async def test_a_delayed_answer_within_the_timeout_works(transport):
    async with LinxRciSim(transport=transport) as sim, connected(sim) as h:
        sim.engine.inject_reply(ReplyFault.DELAYED, delay_s=0.05)
        await h.driver.load([record(1)])
        assert outcomes(h.drain()) == [(1, PrintOutcome.SENT)]


async def test_disconnect_mid_frame_fails_the_pending_call(transport):
    async with LinxRciSim(transport=transport) as sim, connected(sim) as h:
        sim.faults.inject(Disconnect(after_bytes=3))
        with pytest.raises(TransientDeviceError):
            await h.driver.status()


async def test_disconnect_mid_frame_ends_run(transport):
    async with LinxRciSim(transport=transport) as sim, connected(sim, run=True) as h:
        await h.status(PrinterState.READY)
        sim.faults.inject(Disconnect(after_bytes=4))
        with pytest.raises(TransientDeviceError):
            await h.ended()


async def test_power_cycle_drops_the_link_and_a_new_driver_starts_clean(transport):
    async with LinxRciSim(transport=transport) as sim:
        async with connected(sim, run=True) as h:
            await h.driver.load([record(1), record(2)])
            sim.power_cycle()
            with pytest.raises(TransientDeviceError):
                await h.ended()
        sim.engine.select("SERIAL")
        sim.engine.enqueue((("CODE", "LEFTOVER"),))  # whatever the device holds after it comes back
        async with connected(sim, options(job=None), run=True) as h:  # no job select: only clear() empties it
            await h.driver.clear()
            assert sim.engine.buffered == 0
            await h.driver.start()
            assert sim.product_detect() is None
            await h.driver.load([record(3)])
            sim.product_detect()
            assert await h.printed(1) == [3]
        assert [p.value("CODE") for p in sim.engine.printed] == [record(3).value("CODE")]


async def test_a_counter_going_backwards_is_reported_and_prints_nothing():
    async with LinxRciSim() as sim, connected(sim, run=True) as h:
        await h.driver.load([record(1), record(2)])
        await h.driver.start()
        sim.product_detect()
        assert await h.printed(1) == [1]
        sim.engine.counter = 0  # an operator reset the count: which records printed since is unknown
        await h.until(garbage)
        assert "backwards" in garbage(h.seen)[0].reason
        assert sim.engine.buffered == 0  # record 2 was cleared: it can never be taken for a later record
        await h.driver.load([record(3)])
        sim.product_detect()
        assert await h.printed(2) == [1, 3]
        assert len(garbage(h.drain())) == 1


async def test_a_counter_jumping_beyond_the_buffer_is_reported_and_prints_nothing():
    async with LinxRciSim() as sim, connected(sim, run=True) as h:
        await h.driver.load([record(1)])
        await h.driver.start()
        sim.engine.counter += 5  # prints the driver never handed over (printed from the panel, say)
        await h.until(garbage)
        assert "rose by 5" in garbage(h.seen)[0].reason
        assert sim.product_detect() is None  # record 1 was cleared with the anomaly
        await h.driver.load([record(2)])
        sim.product_detect()
        assert await h.printed(1) == [2]
        assert printed_ids(h.drain()) == [2]


async def test_the_simulator_naks_a_command_with_a_bad_checksum():
    async with LinxRciSim() as sim:
        reader, writer = await asyncio.open_connection(*sim.transport_spec().host_port)
        try:
            bad = bytearray(encode_command(CmdId.STATUS))
            bad[-1] ^= 0xFF
            writer.write(b"junk" + bytes(bad) + encode_command(0x77))
            framer = RciFramer()
            replies: list[Reply] = []
            async with asyncio.timeout(HANG_GUARD_S):
                while len(replies) < 2:
                    replies += [f for f in framer.feed(await reader.read(1024)) if isinstance(f, Reply)]
        finally:
            writer.close()
            await writer.wait_closed()
    assert replies == [
        Reply(False, 0, CStatus.CHECKSUM_ERROR, CmdId.STATUS),
        Reply(False, 0, CStatus.UNKNOWN_COMMAND, 0x77),
    ]


async def test_a_checksum_nak_is_transient(monkeypatch):
    async with LinxRciSim() as sim, connected(sim) as h:

        async def garbled_on_the_way(command):
            return CStatus.CHECKSUM_ERROR, b""

        monkeypatch.setattr(sim, "_carry_out", garbled_on_the_way)
        with pytest.raises(TransientDeviceError, match="checksum"):
            await h.driver.stop()


# -- configuration and lifecycle -------------------------------------------------------------------


async def test_from_options_builds_a_matching_simulator():
    opts = options(job="LOTJOB", remote_buffer_size=4, message_name_width=8, fields={"SN": "serial"})
    sim = from_options(opts)
    assert sim.engine.depth == 4
    assert sim.engine.jobs == {"LOTJOB": ("SN",)}
    async with sim, connected(sim, opts, run=True) as h:
        assert sim.engine.job == "LOTJOB"
        await h.driver.load([PrintRecord(1, (("SN", "S1"),))])
        await h.driver.start()
        sim.product_detect()
        assert await h.printed(1) == [1]


async def test_the_driver_is_single_use():
    async with LinxRciSim() as sim:
        driver = LinxRciPrinter(make_context(spec_for(sim), ignore, sleep=asyncio.sleep), options())
        with pytest.raises(RuntimeError, match="connect"):
            await driver.run()
        await driver.connect()
        try:
            with pytest.raises(RuntimeError, match="single-use"):
                await driver.connect()
        finally:
            await driver.close()
            await driver.close()


def test_options_refuse_unknown_keys():
    with pytest.raises(pydantic.ValidationError):
        LinxRciPrinter.Options.model_validate({"buffer_size": 10})
    with pytest.raises(pydantic.ValidationError):
        LinxRciPrinter.Options.model_validate({"message_name_width": 0})


def test_other_options_are_refused():
    with pytest.raises(TypeError):
        LinxRciPrinter(make_context(TransportSpec(url="socket://127.0.0.1:1"), ignore), DriverOptions())


def test_registered_as_a_printer():
    assert driver_class("printer.linx-rci") is LinxRciPrinter
    assert LinxRciPrinter.role == "printer"
    assert issubclass(LinxRciPrinter, Printer)


async def test_the_host_cannot_trigger_a_print():
    async with LinxRciSim() as sim, connected(sim) as h:
        with pytest.raises(DeviceRejectedError):
            await h.driver.trigger()
