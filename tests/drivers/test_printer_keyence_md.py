"""KeyenceMdPrinter against KeyenceMdSim over a real loopback socket and over a pseudo-terminal pair."""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING

import pydantic
import pytest

from drivers.base import DeviceGarbage, DeviceInfo, DriverOptions
from drivers.framing.keyence_md import NOT_WX_RX
from drivers.framing.line import CR, CRLF
from drivers.printer.base import (
    EvidenceKind,
    FaultReason,
    LoadStyle,
    PrinterCapabilities,
    PrinterCounters,
    PrinterState,
    PrinterStatus,
    PrintEvidence,
    PrintOutcome,
    PrintRecord,
)
from drivers.printer.exchange import STRAY
from drivers.printer.keyence_md import MODEL, KeyenceMdPrinter, status_from
from drivers.transport.spec import TransportSpec
from edge.errors import DeviceRejectedError, TransientDeviceError
from edge.registry import driver_class
from simulators.faults import Corrupt, Disconnect, Garbage, Stall
from simulators.keyence_md import KeyenceMdSim, from_options
from simulators.printer import ReplyFault
from tests.drivers.printer_harness import (
    AT,
    DEVICE,
    GS,
    HANG_GUARD_S,
    SHORT_TIMEOUT_S,
    Harness,
    connected_driver,
    ignore,
    make_context,
    printed_ids,
    spec_for,
    statuses,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from drivers.base import EventSink


def record(record_id: int, names: tuple[str, ...] = ("CODE",)) -> PrintRecord:
    return PrintRecord(record_id, tuple((name, f"0109501101530003{GS}21{name}{record_id:05d}") for name in names))


@contextlib.asynccontextmanager
async def connected(
    sim: KeyenceMdSim,
    options: KeyenceMdPrinter.Options | None = None,
    *,
    run: bool = False,
    response_timeout_s: float = 2.0,
) -> AsyncIterator[Harness[KeyenceMdPrinter]]:
    def build(events: EventSink) -> KeyenceMdPrinter:
        context = make_context(spec_for(sim), events, response_timeout_s=response_timeout_s)
        return KeyenceMdPrinter(context, options or KeyenceMdPrinter.Options(job="0000"))

    async with connected_driver(build, run=run) as harness:
        yield harness


# connect, capabilities, jobs


async def test_connect_handshakes_and_declares_capabilities(transport):
    async with KeyenceMdSim(transport=transport) as sim, connected(sim) as h:
        assert h.info == DeviceInfo(model=MODEL)
        assert h.driver.capabilities == PrinterCapabilities(
            load=LoadStyle.SINGLE_SHOT, buffer_depth=1, evidence=EvidenceKind.PRINT_COUNTER, host_trigger=True
        )


async def test_select_job_and_an_unknown_job_is_rejected_by_name(transport):
    programs = {"0000": {"CODE": 0}, "0001": {"CODE": 0}}
    async with KeyenceMdSim(programs=programs, transport=transport) as sim, connected(sim) as h:
        await h.driver.select_job("1")
        assert sim.engine.job == "0001"
        with pytest.raises(DeviceRejectedError, match="'0042'"):
            await h.driver.select_job("0042")
        with pytest.raises(DeviceRejectedError, match="'abc'"):
            await h.driver.select_job("abc")
        assert sim.engine.job == "0001"
        await h.driver.load([record(1)])
        assert sim.strings == {"0000": {0: ""}, "0001": {0: record(1).value("CODE")}}


async def test_without_a_job_the_current_program_is_used():
    programs = {"0000": {"CODE": 0}, "0005": {"CODE": 4}}
    options = KeyenceMdPrinter.Options(blocks={"CODE": 4})
    async with KeyenceMdSim(programs=programs, program="5") as sim, connected(sim, options) as h:
        await h.driver.load([record(1)])
        assert sim.strings["0005"] == {4: record(1).value("CODE")}
        assert h.evidence() == [PrintEvidence(device_id=DEVICE, at=AT, record_id=1, outcome=PrintOutcome.SENT)]


async def test_connect_with_an_unknown_program_is_rejected():
    async with KeyenceMdSim() as sim:
        driver = KeyenceMdPrinter(make_context(spec_for(sim), ignore), KeyenceMdPrinter.Options(job="0042"))
        with pytest.raises(DeviceRejectedError, match="0042"):
            await driver.connect()
        await driver.close()


async def test_connect_to_a_device_that_does_not_answer_is_transient(transport):
    async with KeyenceMdSim(transport=transport) as sim:
        sim.faults.inject(Stall())
        context = make_context(spec_for(sim), ignore, response_timeout_s=SHORT_TIMEOUT_S)
        driver = KeyenceMdPrinter(context, KeyenceMdPrinter.Options())
        with pytest.raises(TransientDeviceError, match="no answer"):
            await driver.connect()
        await driver.close()


# loading and evidence


async def test_records_print_in_order_with_their_ids(transport):
    records = [record(i) for i in range(1, 6)]
    async with KeyenceMdSim(transport=transport) as sim, connected(sim, run=True) as h:
        for rec in records:
            await h.driver.load([rec])
            assert h.evidence()[-1].outcome is PrintOutcome.SENT
            assert sim.product_detect() is not None
            await h.until(lambda seen, rec=rec: rec.record_id in printed_ids(seen))
    assert printed_ids(h.seen) == [r.record_id for r in records]
    assert [p.fields for p in sim.engine.printed] == [r.fields for r in records]
    assert [e.outcome for e in h.evidence()] == [PrintOutcome.SENT, PrintOutcome.PRINTED] * len(records)
    assert h.garbage() == []


async def test_several_blocks_are_written_in_one_line_and_proven_together():
    options = KeyenceMdPrinter.Options(job="3", fields={"CODE": "code", "SN": "serial"}, blocks={"CODE": 2, "SN": 7})
    sim = KeyenceMdSim(programs={"0003": {"SN": 7, "CODE": 2}}, program="0003")
    async with sim, connected(sim, options) as h:
        rec = record(1, ("CODE", "SN"))
        await h.driver.load([rec])
        assert sim.strings["0003"] == {2: rec.value("CODE"), 7: rec.value("SN")}
        sim.product_detect()
        await h.driver.poll()
        assert printed_ids(h.seen) == [1]
        assert sim.engine.printed[0].fields == rec.fields


async def test_trigger_returns_once_marked_with_the_evidence_reported():
    marking, done = asyncio.Event(), asyncio.Event()

    async def gated_sleep(seconds: float) -> None:
        marking.set()
        await done.wait()

    async with KeyenceMdSim(mark_time_s=1.5, sleep=gated_sleep) as sim, connected(sim) as h:
        await h.driver.load([record(1)])
        trigger = asyncio.create_task(h.driver.trigger())
        async with asyncio.timeout(HANG_GUARD_S):
            await marking.wait()
        assert not trigger.done()
        assert sim.engine.printed == []
        done.set()
        async with asyncio.timeout(HANG_GUARD_S):
            await trigger
        assert printed_ids(h.seen) == [1]
        assert sim.engine.printed[0].fields == record(1).fields


async def test_trigger_on_a_faulted_marker_is_refused():
    async with KeyenceMdSim() as sim, connected(sim) as h:
        await h.driver.load([record(1)])
        sim.engine.set_fault(FaultReason.HEAD_FAULT)
        with pytest.raises(DeviceRejectedError, match="NG 03"):
            await h.driver.trigger()
        assert printed_ids(h.seen) == []


async def test_a_second_record_before_evidence_is_refused_as_buffer_full():
    async with KeyenceMdSim() as sim, connected(sim) as h:
        await h.driver.load([record(1), record(2)])
        sent, refused = h.evidence()
        assert (sent.record_id, sent.outcome) == (1, PrintOutcome.SENT)
        assert (refused.record_id, refused.outcome) == (2, PrintOutcome.FAILED)
        assert "buffer full" in refused.detail
        assert sim.strings["0000"] == {0: record(1).value("CODE")}
        # Once marked (not yet polled), the next load finds the evidence first and takes the record.
        sim.product_detect()
        await h.driver.load([record(3)])
        assert [(e.record_id, e.outcome) for e in h.evidence()[2:]] == [
            (1, PrintOutcome.PRINTED),
            (3, PrintOutcome.SENT),
        ]


async def test_a_value_that_cannot_be_sent_fails_that_record_only():
    async with KeyenceMdSim() as sim, connected(sim) as h:
        await h.driver.load([PrintRecord(1, (("CODE", "A,B"),)), PrintRecord(2, (("OTHER", "X"),)), record(3)])
        comma, unknown, good = h.evidence()
        assert comma.outcome is PrintOutcome.FAILED
        assert "'CODE'" in comma.detail
        assert unknown.outcome is PrintOutcome.FAILED
        assert "OTHER" in unknown.detail
        assert (good.record_id, good.outcome) == (3, PrintOutcome.SENT)
        assert sim.strings["0000"] == {0: record(3).value("CODE")}


async def test_a_nak_on_a_load_fails_that_record_and_the_next_is_sent():
    async with KeyenceMdSim() as sim, connected(sim) as h:
        sim.engine.inject_reply(ReplyFault.NAK)
        await h.driver.load([record(1)])
        await h.driver.load([record(2)])
        refused, sent = h.evidence()
        assert (refused.record_id, refused.outcome) == (1, PrintOutcome.FAILED)
        assert "NG 03" in refused.detail
        assert (sent.record_id, sent.outcome) == (2, PrintOutcome.SENT)
        assert sim.strings["0000"] == {0: record(2).value("CODE")}


async def test_clear_then_a_product_detect_prints_nothing_from_before(transport):
    async with KeyenceMdSim(transport=transport) as sim, connected(sim) as h:
        await h.driver.load([record(1)])
        await h.driver.clear()
        assert sim.engine.buffered == 0
        assert sim.strings["0000"] == {0: ""}
        sim.product_detect()
        await h.driver.poll()
        await h.driver.load([record(2)])
        sim.product_detect()
        await h.driver.poll()
        assert printed_ids(h.seen) == [2]
        assert [p.value("CODE") for p in sim.engine.printed] == ["", record(2).value("CODE")]
        assert h.garbage() == []


async def test_repeated_marks_never_give_a_second_printed():
    async with KeyenceMdSim() as sim, connected(sim) as h:
        await h.driver.load([record(1)])
        sim.product_detect()
        await h.driver.poll()
        sim.product_detect()
        sim.product_detect()
        await h.driver.poll()
        # Marked again after the last poll, then the next record written: the step is a repeat, not record 2.
        sim.product_detect()
        await h.driver.load([record(2)])
        await h.driver.poll()
        assert printed_ids(h.seen) == [1]
        sim.product_detect()
        await h.driver.poll()
        assert printed_ids(h.seen) == [1, 2]
        assert [p.value("CODE") for p in sim.engine.printed] == [record(1).value("CODE")] * 4 + [
            record(2).value("CODE")
        ]
        assert h.garbage() == []


async def test_a_foreign_string_marked_is_garbage_never_printed():
    async with KeyenceMdSim() as sim, connected(sim) as h:
        await h.driver.load([record(1)])
        sim.engine.enqueue([("CODE", "FOREIGN")])  # changed on the marker's own panel
        sim.product_detect()
        # What the marker holds is unknown: the link is given up (the line puts the record in doubt).
        with pytest.raises(TransientDeviceError, match="not the loaded record 1"):
            await h.driver.poll()
        assert printed_ids(h.seen) == []
        [garbage] = h.garbage()
        assert garbage.data == b"FOREIGN"
        assert garbage.reason == "marked string is not the loaded record 1"


async def test_a_counter_going_backwards_gives_no_printed():
    async with KeyenceMdSim() as sim, connected(sim) as h:
        await h.driver.load([record(1)])
        sim.product_detect()
        await h.driver.poll()
        sim.counters["0000"] = 0  # reset on the panel, nothing loaded: counting goes on from the new value
        await h.driver.poll()
        await h.driver.load([record(2)])
        sim.product_detect()
        await h.driver.poll()
        assert printed_ids(h.seen) == [1, 2]
        sim.counters["0000"] = 0  # reset again, now with record 3 waiting: its evidence is lost for good
        await h.driver.load([record(3)])
        with pytest.raises(TransientDeviceError, match="went backwards"):
            await h.driver.poll()
        assert printed_ids(h.seen) == [1, 2]


# status, start/stop, counters


@pytest.mark.parametrize(
    ("reason", "words"),
    [
        (FaultReason.INK_OUT, "300 marking consumable out"),
        (FaultReason.HEAD_FAULT, "100 laser source or scan head fault"),
        (FaultReason.DOOR_OPEN, "200 interlock open"),
        (FaultReason.OTHER, "900 system error"),
    ],
)
async def test_status_maps_the_marker_errors(reason, words):
    async with KeyenceMdSim() as sim, connected(sim) as h:
        assert await h.driver.status() == PrinterStatus(PrinterState.PRINTING, detail="Ready=0")
        sim.engine.set_fault(reason)
        status = await h.driver.status()
        assert status.state is PrinterState.FAULT
        assert status.faults == frozenset({reason})
        assert status.detail.startswith("Ready=2; ")
        assert words in status.detail


async def test_status_warning_and_not_ready():
    async with KeyenceMdSim() as sim, connected(sim) as h:
        sim.engine.warnings.add(FaultReason.BUFFER_UNDERRUN.value)
        assert await h.driver.status() == PrinterStatus(
            PrinterState.WARNING, detail="Ready=0; 500 trigger with no new string (previous string marked again)"
        )
        sim.engine.printing = False
        assert (await h.driver.status()).state is PrinterState.STOPPED


def test_status_from_unknown_codes_and_error_without_code():
    assert status_from(2, []) == PrinterStatus(PrinterState.FAULT, frozenset({FaultReason.OTHER}), "Ready=2")
    unknown = status_from(0, [777])
    assert unknown.state is PrinterState.FAULT
    assert unknown.faults == frozenset({FaultReason.OTHER})
    assert "777 unknown error code" in unknown.detail


async def test_run_reports_status_changes(transport):
    options = KeyenceMdPrinter.Options(job="0000", poll_interval_s=0.01, status_interval_s=0.01)
    async with KeyenceMdSim(transport=transport) as sim, connected(sim, options, run=True) as h:
        await h.until(lambda seen: len(statuses(seen)) == 1)
        assert h.statuses()[0].status.state is PrinterState.PRINTING
        sim.engine.set_fault(FaultReason.INK_OUT)
        await h.until(lambda seen: len(statuses(seen)) == 2)
        fault = h.statuses()[1].status
        assert (fault.state, fault.faults) == (PrinterState.FAULT, frozenset({FaultReason.INK_OUT}))
        sim.engine.clear_fault()
        await h.until(lambda seen: len(statuses(seen)) == 3)
        assert h.statuses()[2].status == PrinterStatus(PrinterState.PRINTING, detail="Ready=0")


async def test_start_checks_ready_and_stop_is_accepted():
    async with KeyenceMdSim() as sim, connected(sim) as h:
        await h.driver.start()
        await h.driver.stop()
        sim.engine.set_fault(FaultReason.DOOR_OPEN)
        with pytest.raises(DeviceRejectedError, match="Ready=2; 200 interlock open"):
            await h.driver.start()
        await h.driver.error_clear()
        assert sim.engine.faults == set()
        await h.driver.start()
        sim.engine.printing = False
        with pytest.raises(DeviceRejectedError, match="Ready=1"):
            await h.driver.start()


async def test_counters_count_markings():
    async with KeyenceMdSim() as sim, connected(sim) as h:
        assert await h.driver.counters() == PrinterCounters(printed=0)
        await h.driver.load([record(1)])
        sim.product_detect()
        sim.product_detect()
        assert await h.driver.counters() == PrinterCounters(printed=2)


# faults on the wire and in the answers


async def test_garbage_before_an_answer_is_reported_and_the_driver_goes_on(transport):
    async with KeyenceMdSim(transport=transport) as sim, connected(sim) as h:
        sim.faults.inject(Garbage(b"\x00\xffnoise\r"))
        assert (await h.driver.status()).state is PrinterState.PRINTING
        assert h.garbage() == [DeviceGarbage(device_id=DEVICE, at=AT, data=b"\x00\xffnoise", reason=NOT_WX_RX)]
        await h.driver.load([record(1)])
        assert h.evidence()[-1].outcome is PrintOutcome.SENT


async def test_a_corrupted_answer_is_garbage_and_the_call_times_out():
    # No checksum in this dialect: a corrupted WX/OK word makes the line garbage, so the answer is missing.
    async with KeyenceMdSim() as sim, connected(sim, response_timeout_s=SHORT_TIMEOUT_S) as h:
        sim.faults.inject(Corrupt(offset=0, mask=0x20))
        with pytest.raises(TransientDeviceError, match="no answer"):
            await h.driver.load([record(1)])
        assert h.garbage() == [DeviceGarbage(device_id=DEVICE, at=AT, data=b"wX,OK", reason=NOT_WX_RX)]
        assert h.evidence() == []


async def test_a_missing_answer_raises_within_the_response_timeout():
    async with KeyenceMdSim() as sim, connected(sim, response_timeout_s=SHORT_TIMEOUT_S) as h:
        sim.engine.inject_reply(ReplyFault.MISSING)
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(TransientDeviceError, match="no answer"):
            await h.driver.status()
        assert loop.time() - started < HANG_GUARD_S / 2


async def test_duplicate_answers_give_no_duplicate_or_wrong_printed():
    async with KeyenceMdSim() as sim, connected(sim) as h:
        sim.engine.inject_reply(ReplyFault.DUPLICATE)  # WX,OK of the load, twice
        await h.driver.load([record(1)])
        sim.product_detect()
        await h.driver.poll()
        await h.driver.poll()
        sim.engine.inject_reply(ReplyFault.DUPLICATE)  # RX,OK of the counter, twice
        await h.driver.poll()
        await h.driver.load([record(2)])
        sim.product_detect()
        await h.driver.poll()
        await h.driver.poll()
        assert printed_ids(h.seen) == [1, 2]
        assert [(g.data, g.reason) for g in h.garbage()] == [(b"WX,OK", STRAY), (b"RX,OK,1", STRAY)]


async def test_a_delayed_answer_within_the_timeout_works():
    async with KeyenceMdSim() as sim, connected(sim) as h:
        sim.engine.inject_reply(ReplyFault.DELAYED, delay_s=0.05)
        await h.driver.load([record(1)])
        assert h.evidence()[-1].outcome is PrintOutcome.SENT


async def test_a_disconnect_mid_frame_ends_run(transport):
    async with KeyenceMdSim(transport=transport) as sim, connected(sim, run=True) as h:
        await h.until(lambda seen: len(statuses(seen)) == 1)
        sim.faults.inject(Disconnect(after_bytes=3))
        with pytest.raises(TransientDeviceError):
            await h.ended()


async def test_a_disconnect_mid_frame_fails_the_pending_call(transport):
    async with KeyenceMdSim(transport=transport) as sim, connected(sim) as h:
        sim.faults.inject(Disconnect(after_bytes=3))
        with pytest.raises(TransientDeviceError):
            await h.driver.status()


async def test_after_a_power_cycle_a_new_driver_clears_the_marker(transport):
    async with KeyenceMdSim(transport=transport) as sim:
        async with connected(sim, run=True) as h:
            await h.driver.load([record(1)])
            sim.power_cycle()
            with pytest.raises(TransientDeviceError):
                await h.ended()
        async with connected(sim) as h:
            await h.driver.clear()
            assert sim.engine.buffered == 0
            assert sim.strings["0000"] == {0: ""}
            before = len(sim.engine.printed)
            sim.product_detect()
            assert all(p.value("CODE") == "" for p in sim.engine.printed[before:])
            assert printed_ids(h.seen) == []


async def test_cancelling_run_propagates_cancellation(transport):
    async with KeyenceMdSim(transport=transport) as sim, connected(sim, run=True) as h:
        await h.until(lambda seen: len(statuses(seen)) == 1)
        assert h.task is not None
        h.task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await h.task


async def test_crlf_terminator_and_from_options():
    options = KeyenceMdPrinter.Options(
        job="7", fields={"CODE": "code", "SN": "serial"}, blocks={"CODE": 3, "SN": 1}, terminator="CRLF"
    )
    sim = from_options(options, transport="pty")
    assert sim.terminator == CRLF
    assert sim.programs == {"0007": {3: "CODE", 1: "SN"}}
    async with sim, connected(sim, options) as h:
        rec = PrintRecord(1, (("CODE", "C1"), ("SN", "S1")))
        await h.driver.load([rec])
        sim.product_detect()
        await h.driver.poll()
        assert printed_ids(h.seen) == [1]
        assert sim.engine.printed[0].fields == (("SN", "S1"), ("CODE", "C1"))  # in block order


async def test_the_simulator_ignores_noise_and_refuses_unknown_commands():
    async with KeyenceMdSim() as sim:
        host, port = sim.url.removeprefix("socket://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            writer.write(b"hello\rWX\rRX,Bogus\rWX,Bogus=1\rWX,PRG=0000,BLK=0009,CharacterString=X\rRX,Ready\r\n")
            expected = b"RX,NG,01\rWX,NG,01\rWX,NG,02\rRX,OK,0\r"
            async with asyncio.timeout(HANG_GUARD_S):
                assert await reader.readexactly(len(expected)) == expected
        finally:
            writer.close()
            await writer.wait_closed()
        assert sim.terminator == CR


# options, registry, lifecycle


def test_options_refuse_unknown_keys_and_inconsistent_blocks():
    with pytest.raises(pydantic.ValidationError):
        KeyenceMdPrinter.Options.model_validate({"terminater": "CR"})
    with pytest.raises(pydantic.ValidationError, match="depth must be 1"):
        KeyenceMdPrinter.Options(depth=2)
    with pytest.raises(pydantic.ValidationError, match="a block for each field"):
        KeyenceMdPrinter.Options(blocks={"SN": 1})
    with pytest.raises(pydantic.ValidationError, match="must differ"):
        KeyenceMdPrinter.Options(fields={"A": "code", "B": "serial"}, blocks={"A": 1, "B": 1})
    with pytest.raises(pydantic.ValidationError):
        KeyenceMdPrinter.Options(terminator="LF")  # type: ignore[arg-type]
    assert KeyenceMdPrinter.Options(depth=1).block_numbers() == {"CODE": 0}
    assert KeyenceMdPrinter.Options(fields={"A": "code", "B": "serial"}).block_numbers() == {"A": 0, "B": 1}


def test_other_options_are_refused():
    with pytest.raises(TypeError):
        KeyenceMdPrinter(make_context(TransportSpec(url="socket://127.0.0.1:1"), ignore), DriverOptions())


def test_registered_as_a_printer():
    assert driver_class("printer.keyence-md") is KeyenceMdPrinter
    assert KeyenceMdPrinter.role == "printer"


async def test_the_driver_is_single_use():
    async with KeyenceMdSim() as sim:
        driver = KeyenceMdPrinter(make_context(spec_for(sim), ignore), KeyenceMdPrinter.Options())
        with pytest.raises(RuntimeError, match="connect"):
            await driver.run()
        await driver.connect()
        try:
            with pytest.raises(RuntimeError, match="single-use"):
                await driver.connect()
        finally:
            await driver.close()
