"""ZipherPrinter against ZipherSim over a real loopback socket and over a pseudo-terminal pair."""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING

import pydantic
import pytest

from drivers.base import DeviceInfo, DriverOptions
from drivers.framing.zipher import ZipherFrame
from drivers.printer.base import (
    EvidenceKind,
    FaultReason,
    LoadStyle,
    PrinterCapabilities,
    PrinterState,
    PrintEvidence,
    PrintOutcome,
    PrintRecord,
)
from drivers.printer.zipher import MODEL, ZipherPrinter
from drivers.transport.spec import TransportSpec
from edge.errors import DeviceRejectedError, TransientDeviceError
from edge.registry import driver_class
from simulators.faults import Corrupt, Disconnect, Garbage
from simulators.printer import ReplyFault
from simulators.zipher import ZipherSim, from_options
from tests.drivers.printer_harness import (
    GS,
    HANG_GUARD_S,
    SHORT_TIMEOUT_S,
    Harness,
    connected_driver,
    ignore,
    make_context,
    spec_for,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from drivers.base import EventSink

JOBS = {"SERIAL": ("CODE",), "CARTON": ("CODE", "LOT")}
OPTIONS = ZipherPrinter.Options(job="SERIAL", status_interval_s=0.01)


def record(n: int) -> PrintRecord:
    return PrintRecord(100 + n, (("CODE", f"0109501101530003{GS}21SN{n:04d}"),))


@contextlib.asynccontextmanager
async def connected(
    sim: ZipherSim,
    options: ZipherPrinter.Options = OPTIONS,
    *,
    run: bool = False,
    response_timeout_s: float = 2.0,
) -> AsyncIterator[Harness[ZipherPrinter]]:
    def build(events: EventSink) -> ZipherPrinter:
        return ZipherPrinter(make_context(spec_for(sim), events, response_timeout_s=response_timeout_s), options)

    async with connected_driver(build, run=run) as conn:
        assert conn.info == DeviceInfo(model=MODEL)
        yield conn


async def polls(sim: ZipherSim, count: int) -> None:
    """Wait until the driver has sent count more SLR polls."""
    async with asyncio.timeout(HANG_GUARD_S):
        await sim.wait_for_commands("SLR", codes(sim).count("SLR") + count)


def codes(sim: ZipherSim) -> list[str]:
    return [f.code for f in sim.commands]


# Connect, handshake, capabilities


async def test_connect_sets_the_printer_up_for_feeding(transport):
    async with ZipherSim(jobs=JOBS, transport=transport) as sim, connected(sim):
        assert codes(sim) == ["GST", "DAN", "SEL", "SMR", "SCB", "SNI"]
        assert sim.commands[2] == ZipherFrame("SEL", ("SERIAL",))
        assert sim.commands[3] == ZipherFrame("SMR", ("32",))
        assert not sim.notifications
        assert sim.engine.job == "SERIAL"


async def test_capabilities_as_declared():
    async with ZipherSim() as sim:
        async with connected(sim) as conn:
            assert conn.driver.capabilities == PrinterCapabilities(
                LoadStyle.BUFFERED, 32, EvidenceKind.RECORD_INDEX, host_trigger=True
            )
        async with connected(sim, ZipherPrinter.Options(job="SERIAL", depth=150)) as conn:
            assert conn.driver.capabilities.buffer_depth == 150
            assert sim.engine.depth == 150


async def test_a_device_limit_below_the_depth_is_refused_at_connect():
    async with ZipherSim(depth=20) as sim:
        driver = ZipherPrinter(make_context(spec_for(sim), ignore), OPTIONS)
        with pytest.raises(DeviceRejectedError, match="32 records"):
            await driver.connect()
        await driver.close()


async def test_leading_cr_option_is_harmless_to_the_printer():
    options = ZipherPrinter.Options(job="SERIAL", leading_cr=True)
    async with ZipherSim() as sim, connected(sim, options) as conn:
        await conn.driver.load([record(1)])
        assert conn.reported(PrintOutcome.SENT) == [101]
        assert "ERR" not in codes(sim)


async def test_connect_waits_for_the_slow_power_up():
    now = [0.0]
    async with ZipherSim(shutdown_s=60, startup_s=15, clock=lambda: now[0]) as sim:
        for at, state in ((0.0, "SHUT_DOWN"), (61.0, "STARTING_UP")):
            now[0] = at
            driver = ZipherPrinter(make_context(spec_for(sim), ignore), OPTIONS)
            with pytest.raises(TransientDeviceError, match=state):
                await driver.connect()
            await driver.close()
        now[0] = 76.0
        async with connected(sim) as conn:
            assert (await conn.driver.status()).state is PrinterState.READY


async def test_the_driver_is_single_use_and_run_needs_connect():
    async with ZipherSim() as sim:
        driver = ZipherPrinter(make_context(spec_for(sim), ignore), OPTIONS)
        with pytest.raises(RuntimeError, match="connect"):
            await driver.run()
        await driver.connect()
        try:
            with pytest.raises(RuntimeError, match="single-use"):
                await driver.connect()
        finally:
            await driver.close()
            await driver.close()


# Jobs


async def test_select_job_and_unknown_job():
    async with ZipherSim(jobs=JOBS) as sim, connected(sim) as conn:
        await conn.driver.select_job("CARTON")
        assert sim.engine.job == "CARTON"
        assert await conn.driver.jobs() == ("SERIAL", "CARTON")
        with pytest.raises(DeviceRejectedError, match="NOPE"):
            await conn.driver.select_job("NOPE")
        assert sim.engine.job == "CARTON"


async def test_an_unknown_configured_job_fails_connect():
    async with ZipherSim() as sim:
        driver = ZipherPrinter(make_context(spec_for(sim), ignore), ZipherPrinter.Options(job="NOPE"))
        with pytest.raises(DeviceRejectedError, match="NOPE"):
            await driver.connect()
        await driver.close()


# Feeding and evidence


async def test_records_print_in_order_with_their_ids(transport):
    records = [record(n) for n in range(5)]
    async with ZipherSim(transport=transport) as sim, connected(sim, run=True) as conn:
        await conn.driver.load(records)
        assert conn.reported(PrintOutcome.SENT) == [r.record_id for r in records]
        await conn.driver.start()
        for _ in records:
            assert sim.product_detect() is not None
        assert await conn.printed(5) == [r.record_id for r in records]
        await polls(sim, 3)
        assert conn.reported(PrintOutcome.PRINTED) == [r.record_id for r in records]
    assert [p.fields for p in sim.engine.printed] == [r.fields for r in records]
    assert codes(sim).count("SHO") == 1
    assert sim.header == ("CODE",)


async def test_several_fields_in_the_order_given():
    options = ZipherPrinter.Options(job="CARTON", fields={"CODE": "code", "LOT": "10"})
    carton = PrintRecord(7, (("CODE", "X1"), ("LOT", "L-9")))
    async with ZipherSim(jobs=JOBS) as sim, connected(sim, options, run=True) as conn:
        await conn.driver.load([carton])
        await conn.driver.start()
        sim.product_detect()
        assert await conn.printed(1) == [7]
    assert sim.engine.printed[0].fields == carton.fields
    assert ZipherFrame("SHO", ("CODE", "LOT")) in sim.commands
    assert ZipherFrame("SDO", ("X1", "L-9")) in sim.commands


async def test_clear_then_a_product_detect_prints_nothing_from_before():
    async with ZipherSim() as sim, connected(sim, run=True) as conn:
        await conn.driver.load([record(1), record(2), record(3)])
        await conn.driver.clear()
        await conn.driver.start()
        assert sim.product_detect() is None
        await conn.driver.load([record(4)])
        sim.product_detect()
        assert await conn.printed(1) == [104]
        await polls(sim, 3)
        assert conn.reported(PrintOutcome.PRINTED) == [104]
    assert [p.value("CODE") for p in sim.engine.printed] == [record(4).value("CODE")]
    assert codes(sim).count("SHO") == 2  # the header again after the clear


async def test_trigger_prints_now_and_evidence_still_comes_from_slr():
    async with ZipherSim(print_time_s=0.05) as sim, connected(sim) as conn:
        await conn.driver.load([record(1), record(2)])
        with pytest.raises(DeviceRejectedError, match="PRN"):
            await conn.driver.trigger()  # not Running yet
        await conn.driver.start()
        await conn.driver.trigger()
        assert len(sim.engine.printed) == 1  # the ACK came after the print
        assert conn.reported(PrintOutcome.PRINTED) == []
        conn.run()
        assert await conn.printed(1) == [101]


async def test_a_refused_record_fails_alone_and_the_next_is_sent():
    async with ZipherSim() as sim, connected(sim) as conn:
        await conn.driver.load([record(1)])
        sim.engine.inject_reply(ReplyFault.NAK)
        await conn.driver.load([record(2), record(3)])
        assert conn.reported(PrintOutcome.SENT) == [101, 103]
        failed = [e for e in conn.seen if isinstance(e, PrintEvidence) and e.outcome is PrintOutcome.FAILED]
        assert [e.record_id for e in failed] == [102]
        assert "ERR" in failed[0].detail
        await conn.driver.start()
        conn.run()
        sim.product_detect()
        sim.product_detect()
        assert await conn.printed(2) == [101, 103]
    assert [p.value("CODE") for p in sim.engine.printed] == [record(1).value("CODE"), record(3).value("CODE")]


async def test_buffer_full_fails_the_records_beyond_the_depth():
    async with ZipherSim() as sim, connected(sim, ZipherPrinter.Options(job="SERIAL", depth=2)) as conn:
        await conn.driver.load([record(1), record(2), record(3)])
        assert conn.reported(PrintOutcome.SENT) == [101, 102]
        assert conn.reported(PrintOutcome.FAILED) == [103]
        assert sim.engine.buffered == 2


async def test_a_value_the_protocol_cannot_carry_fails_naming_its_field():
    bad = PrintRecord(9, (("CODE", "A|B"),))
    async with ZipherSim() as sim, connected(sim) as conn:
        await conn.driver.load([bad, record(1)])
        assert conn.reported(PrintOutcome.FAILED) == [9]
        assert conn.reported(PrintOutcome.SENT) == [101]
        failed = conn.seen[0]
        assert isinstance(failed, PrintEvidence)
        assert "'CODE'" in failed.detail
        assert sim.engine.buffered == 1


async def test_records_the_driver_never_gave_make_the_load_fail():
    async with ZipherSim() as sim, connected(sim) as conn:
        sim.engine.enqueue((("CODE", "behind the driver's back"),))
        with pytest.raises(TransientDeviceError, match="no longer matches"):
            await conn.driver.load([record(1)])
        assert conn.reported(PrintOutcome.SENT) == [101]


# Status and counters


async def test_status_mapping_and_ink_out():
    async with ZipherSim() as sim, connected(sim, run=True) as conn:
        assert (await conn.status(PrinterState.READY)).status.detail == "Offline"
        await conn.driver.start()
        await conn.status(PrinterState.PRINTING)
        sim.engine.set_fault(FaultReason.INK_OUT)
        fault = await conn.status(PrinterState.FAULT)
        assert fault.status.faults == {FaultReason.INK_OUT}
        assert "102 Ink out" in fault.status.detail
        sim.engine.clear_fault(FaultReason.INK_OUT)
        await polls(sim, 2)
        assert conn.statuses()[-1].status.state is PrinterState.PRINTING
        await conn.driver.stop()
        assert conn.statuses()[-1].status.state is not PrinterState.FAULT
        assert (await conn.driver.status()).state is PrinterState.READY
    states = [e.status.state for e in conn.statuses()]
    assert states == [PrinterState.READY, PrinterState.PRINTING, PrinterState.FAULT, PrinterState.PRINTING,
                      PrinterState.READY][: len(states)]


async def test_an_empty_buffer_at_a_product_detect_is_a_warning():
    async with ZipherSim() as sim, connected(sim, run=True) as conn:
        await conn.driver.start()
        await conn.status(PrinterState.PRINTING)
        sim.product_detect()
        warned = await conn.status(PrinterState.WARNING)
        assert warned.status.faults == {FaultReason.BUFFER_UNDERRUN}


async def test_start_is_refused_without_a_job():
    async with ZipherSim() as sim, connected(sim, ZipherPrinter.Options()) as conn:
        assert (await conn.driver.status()).state is PrinterState.STOPPED
        with pytest.raises(DeviceRejectedError, match="Running"):
            await conn.driver.start()


async def test_counters():
    async with ZipherSim() as sim, connected(sim, run=True) as conn:
        await conn.driver.load([record(n) for n in range(4)])
        await conn.driver.start()
        sim.product_detect()
        sim.product_detect()
        await conn.printed(2)
        counters = await conn.driver.counters()
        assert (counters.printed, counters.buffered) == (2, 2)


# Faults on the wire


async def test_garbage_before_an_answer_is_reported_and_the_driver_goes_on():
    async with ZipherSim() as sim, connected(sim) as conn:
        sim.faults.inject(Garbage(b"\x00\xffnoise"))
        await conn.driver.load([record(1)])
        assert conn.reported(PrintOutcome.SENT) == [101]
        assert [(g.data, g.reason) for g in conn.garbage()] == [(b"\x00\xffnoise", "bytes before a frame")]
        assert (await conn.driver.counters()).buffered == 1


async def test_a_corrupted_answer_is_garbage_and_no_answer_at_all():
    async with ZipherSim() as sim, connected(sim, response_timeout_s=SHORT_TIMEOUT_S) as conn:
        sim.faults.inject(Corrupt(offset=0, mask=0x20))  # "ACK" → "aCK"
        with pytest.raises(TransientDeviceError, match="no answer"):
            await conn.driver.clear()
        assert [g.data for g in conn.garbage()] == [b"aCK"]


async def test_a_corrupted_index_never_reports_a_wrong_record():
    async with ZipherSim() as sim, connected(sim) as conn:
        await conn.driver.load([record(1)])
        await conn.driver.start()
        sim.product_detect()
        sim.faults.inject(Corrupt(offset=4, mask=0x08))  # the first SLR poll: "SLR|0|" → "SLR|8|"
        conn.run()
        assert await conn.printed(1) == [101]
        await polls(sim, 3)
        assert conn.reported(PrintOutcome.PRINTED) == [101]
        assert [g.data for g in conn.garbage()] == [b"SLR|8|"]
        assert "names no record" in conn.garbage()[0].reason


async def test_a_missing_answer_fails_the_pending_call_within_the_timeout():
    async with ZipherSim() as sim, connected(sim, response_timeout_s=SHORT_TIMEOUT_S) as conn:
        await conn.driver.load([record(1)])
        sim.engine.inject_reply(ReplyFault.MISSING)
        async with asyncio.timeout(SHORT_TIMEOUT_S * 5):
            with pytest.raises(TransientDeviceError, match="SDO: no answer"):
                await conn.driver.load([record(2)])
        assert sim.engine.buffered == 2  # carried out, just never answered: the state is unknown


async def test_duplicate_answers_never_duplicate_or_misplace_a_print():
    async with ZipherSim() as sim, connected(sim) as conn:
        await conn.driver.load([record(1)])
        sim.engine.inject_reply(ReplyFault.DUPLICATE)  # the SDO of record 2
        await conn.driver.load([record(2), record(3)])
        assert conn.reported(PrintOutcome.SENT) == [101, 102, 103]
        await conn.driver.start()
        sim.engine.inject_reply(ReplyFault.DUPLICATE, count=3)  # the first SLR polls
        conn.run()
        for _ in range(3):
            sim.product_detect()
        assert await conn.printed(3) == [101, 102, 103]
        await polls(sim, 5)
        assert conn.reported(PrintOutcome.PRINTED) == [101, 102, 103]
        assert conn.garbage()  # the extra answers were reported as strays
        assert all(g.reason == "answer nobody asked for" for g in conn.garbage())


async def test_a_delayed_answer_within_the_timeout_works():
    async with ZipherSim() as sim, connected(sim) as conn:
        sim.engine.inject_reply(ReplyFault.DELAYED, delay_s=0.1)
        await conn.driver.load([record(1)])
        assert conn.reported(PrintOutcome.SENT) == [101]


async def test_a_disconnect_mid_frame_ends_run(transport):
    async with ZipherSim(transport=transport) as sim, connected(sim, run=True) as conn:
        await conn.status(PrinterState.READY)
        sim.faults.inject(Disconnect(after_bytes=3))
        with pytest.raises(TransientDeviceError):
            await conn.ended()
        assert conn.reported(PrintOutcome.PRINTED) == []


async def test_a_disconnect_mid_answer_fails_the_pending_call(transport):
    async with ZipherSim(transport=transport) as sim, connected(sim) as conn:
        sim.faults.inject(Disconnect(after_bytes=2))
        with pytest.raises(TransientDeviceError):
            await conn.driver.load([record(1)])


async def test_after_a_power_cycle_a_new_driver_connects_and_clear_empties_the_printer(transport):
    async with ZipherSim(transport=transport) as sim:
        async with connected(sim, run=True) as conn:
            await conn.driver.load([record(n) for n in range(3)])
            sim.power_cycle()
            with pytest.raises(TransientDeviceError):
                await conn.ended()
        assert sim.engine.buffered == 0
        async with connected(sim, run=True) as conn:
            await conn.driver.load([record(7), record(8)])
            await conn.driver.clear()
            assert (await conn.driver.counters()).buffered == 0
            assert sim.engine.buffered == 0
            await conn.driver.load([record(9)])
            await conn.driver.start()
            sim.product_detect()
            assert await conn.printed(1) == [109]


# Registry, options, simulator catalog


def test_registered_under_its_entry_point_name():
    assert driver_class("printer.zipher") is ZipherPrinter
    assert ZipherPrinter.role == "printer"


def test_options_refuse_unknown_keys_and_a_depth_beyond_the_device():
    with pytest.raises(pydantic.ValidationError):
        ZipherPrinter.Options.model_validate({"jobb": "SERIAL"})
    with pytest.raises(pydantic.ValidationError, match="exceeds"):
        ZipherPrinter.Options.model_validate({"depth": 151})
    assert ZipherPrinter.Options.model_validate({"depth": 300, "device_max_records": 300}).depth == 300


def test_other_options_are_refused():
    with pytest.raises(TypeError):
        ZipherPrinter(make_context(TransportSpec(url="socket://127.0.0.1:1"), ignore), DriverOptions())


async def test_from_options_builds_the_printer_the_options_describe():
    options = ZipherPrinter.Options(job="CARTON", fields={"CODE": "code", "LOT": "10"}, device_max_records=60)
    sim = from_options(options)
    assert sim.engine.jobs == {"CARTON": ("CODE", "LOT")}
    assert sim.max_records == 60
    async with sim, connected(sim, options) as conn:
        await conn.driver.load([PrintRecord(1, (("CODE", "A"), ("LOT", "B")))])
        assert conn.reported(PrintOutcome.SENT) == [1]
