"""DominoPrinter against DominoSim over a real loopback socket and over a pseudo-terminal pair."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from typing import TYPE_CHECKING

import pydantic
import pytest

from drivers.base import DeviceGarbage, DeviceInfo, DriverOptions
from drivers.printer.base import (
    EvidenceKind,
    FaultReason,
    LoadStyle,
    PrinterCapabilities,
    PrinterState,
    PrinterStatusChanged,
    PrintEvidence,
    PrintOutcome,
    PrintRecord,
)
from drivers.printer.domino import MODEL, DominoPrinter
from drivers.transport.spec import TransportSpec
from edge.errors import DeviceRejectedError, TransientDeviceError
from edge.registry import driver_class
from simulators.base import Simulator
from simulators.domino import DominoSim, from_options
from simulators.faults import Corrupt, Disconnect, Garbage
from simulators.printer import ReplyFault
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


def options(**values) -> DominoPrinter.Options:
    return DominoPrinter.Options.model_validate({"job": "SERIAL", **values})


def code(n: int) -> str:
    return f"0109501101530003{GS}21SN{n:05d}"


def records(*ids: int) -> list[PrintRecord]:
    return [PrintRecord(i, (("CODE", code(i)),)) for i in ids]


@contextlib.asynccontextmanager
async def connected(
    sim: DominoSim, opts: DominoPrinter.Options | None = None, *, response_timeout_s: float = 2.0
) -> AsyncIterator[Harness[DominoPrinter]]:
    def build(events: EventSink) -> DominoPrinter:
        context = make_context(spec_for(sim), events, response_timeout_s=response_timeout_s)
        return DominoPrinter(context, opts or options())

    async with connected_driver(build) as harness:
        assert harness.info == DeviceInfo(model=MODEL)
        yield harness


# -- connect, jobs, capabilities ---------------------------------------------------------------------


async def test_connect_handshakes_and_selects_the_job(transport):
    async with DominoSim(jobs={"OTHER": ("CODE",), "SERIAL": ("CODE",)}, transport=transport) as sim:
        assert sim.engine.job == "OTHER"
        async with connected(sim):
            assert sim.engine.job == "SERIAL"


async def test_connect_to_a_device_that_does_not_answer_fails_within_the_response_timeout():
    async with Simulator() as silent:
        driver = DominoPrinter(make_context(spec_for(silent), ignore, response_timeout_s=SHORT_TIMEOUT_S), options())
        with pytest.raises(TransientDeviceError, match="no answer"):
            await driver.connect()
        await driver.close()


async def test_connect_with_an_unknown_job_is_rejected_and_leaves_nothing_open():
    async with DominoSim() as sim:
        driver = DominoPrinter(make_context(spec_for(sim), ignore), options(job="NOPE"))
        with pytest.raises(DeviceRejectedError, match='"NOPE"'):
            await driver.connect()
        await driver.close()


async def test_select_job(transport):
    jobs = {"SERIAL": ("CODE",), "LOT2": ("CODE",)}
    async with DominoSim(jobs=jobs, transport=transport) as sim, connected(sim) as h:
        await h.driver.select_job("LOT2")
        assert sim.engine.job == "LOT2"
        await h.driver.select_job("SERIAL.Design")
        assert sim.engine.job == "SERIAL"
        with pytest.raises(DeviceRejectedError, match='no job "MISSING"'):
            await h.driver.select_job("MISSING")
        assert sim.engine.job == "SERIAL"


async def test_capabilities_as_declared():
    async with DominoSim() as sim:
        async with connected(sim) as h:
            assert h.driver.capabilities == PrinterCapabilities(
                LoadStyle.BUFFERED, 20, EvidenceKind.QUEUE_LEVEL, host_trigger=False
            )
        async with connected(sim, options(depth=5, queue_limit=8)) as h:
            assert h.driver.capabilities.buffer_depth == 5
        async with connected(sim, options(queue_limit=8)) as h:
            assert h.driver.capabilities.buffer_depth == 8
            with pytest.raises(DeviceRejectedError, match="product detect"):
                await h.driver.trigger()


# -- load, print evidence -----------------------------------------------------------------------------


async def test_loaded_records_print_in_order_with_their_ids(transport):
    async with DominoSim(transport=transport) as sim, connected(sim) as h:
        await h.driver.load(records(11, 12, 13, 14))
        assert h.reported(PrintOutcome.SENT) == [11, 12, 13, 14]
        await h.driver.start()
        h.run()
        for _ in range(4):
            assert sim.product_detect() is not None
        assert await h.next_printed(4) == [11, 12, 13, 14]
        assert [p.value("CODE") for p in sim.engine.printed] == [code(i) for i in (11, 12, 13, 14)]
        assert sim.engine.buffered == 0


async def test_prints_between_loads_are_reported_once_each():
    async with DominoSim() as sim, connected(sim) as h:
        await h.driver.start()
        h.run()
        await h.driver.load(records(1, 2))
        sim.product_detect()
        assert await h.next_printed(1) == [1]
        await h.driver.load(records(3))
        sim.product_detect()
        sim.product_detect()
        assert await h.next_printed(2) == [2, 3]
        sim.product_detect()  # nothing left: an underrun, not a print
        await h.next_status(PrinterState.WARNING)
        assert h.reported(PrintOutcome.PRINTED) == [1, 2, 3]


async def test_records_with_several_fields_fill_each_variable():
    jobs = {"PACK": ("SN", "LOT")}
    opts = options(job="PACK", fields={"SN": "serial", "LOT": "10"})
    async with DominoSim(jobs=jobs) as sim, connected(sim, opts) as h:
        batch = [PrintRecord(i, (("SN", f"SN{i}"), ("LOT", "L1"))) for i in (1, 2)]
        wrong = PrintRecord(3, (("LOT", "L1"), ("SN", "SN3")))
        await h.driver.load([batch[0], wrong, batch[1]])
        assert h.reported(PrintOutcome.SENT) == [1, 2]
        failed = [e for e in h.seen if isinstance(e, PrintEvidence) and e.outcome is PrintOutcome.FAILED]
        assert [e.record_id for e in failed] == [3]
        assert "not the printer's" in failed[0].detail
        await h.driver.start()
        h.run()
        sim.product_detect()
        sim.product_detect()
        assert await h.next_printed(2) == [1, 2]
        assert [p.fields for p in sim.engine.printed] == [
            (("SN", "SN1"), ("LOT", "L1")),
            (("SN", "SN2"), ("LOT", "L1")),
        ]


async def test_a_value_the_framing_cannot_carry_is_failed_not_sent():
    async with DominoSim() as sim, connected(sim) as h:
        await h.driver.load([PrintRecord(1, (("CODE", "bad\x03value"),)), *records(2)])
        assert h.reported(PrintOutcome.SENT) == [2]
        assert h.reported(PrintOutcome.FAILED) == [1]
        assert sim.engine.buffered == 1


async def test_the_driver_never_lets_the_queue_overflow():
    async with DominoSim(queue_limit=3) as sim, connected(sim, options(queue_limit=3)) as h:
        await h.driver.load(records(1, 2, 3, 4))
        assert h.reported(PrintOutcome.SENT) == [1, 2, 3]
        failed = [e for e in h.seen if isinstance(e, PrintEvidence) and e.outcome is PrintOutcome.FAILED]
        assert [e.record_id for e in failed] == [4]
        assert "may be full" in failed[0].detail
        assert sim.engine.buffered == 3
        await h.driver.start()
        sim.product_detect()
        await h.driver.counters()  # a fresh count: room again
        await h.driver.load(records(5))
        assert h.reported(PrintOutcome.SENT) == [1, 2, 3, 5]


async def test_clear_then_product_detect_prints_nothing_from_before(transport):
    async with DominoSim(transport=transport) as sim, connected(sim) as h:
        await h.driver.load(records(1, 2, 3))
        await h.driver.clear()
        assert sim.engine.buffered == 0
        await h.driver.start()
        h.run()
        assert sim.product_detect() is None
        await h.next_status(PrinterState.WARNING)  # the underrun, seen by a poll after the detect
        await h.driver.load(records(4))
        sim.product_detect()
        assert await h.next_printed(1) == [4]
        assert h.reported(PrintOutcome.PRINTED) == [4]
        assert [p.value("CODE") for p in sim.engine.printed] == [code(4)]


async def test_answers_ended_by_lf_alone_work_too():
    async with DominoSim(terminator=b"\n") as sim, connected(sim) as h:
        await h.driver.load(records(1))
        await h.driver.start()
        h.run()
        sim.product_detect()
        assert await h.next_printed(1) == [1]


async def test_start_and_stop():
    async with DominoSim() as sim, connected(sim) as h:
        await h.driver.start()
        assert sim.engine.printing
        await h.driver.stop()
        assert not sim.engine.printing


async def test_status_mapping(transport):
    async with DominoSim(transport=transport) as sim, connected(sim) as h:
        assert (await h.driver.status()).state is PrinterState.READY
        h.run()
        first = await h.next(PrinterStatusChanged)
        assert first.status.state is PrinterState.READY
        await h.driver.start()
        await h.next_status(PrinterState.PRINTING)
        sim.engine.set_fault(FaultReason.INK_OUT)
        fault = await h.next_status(PrinterState.FAULT)
        assert fault.status.faults == frozenset({FaultReason.INK_OUT})
        assert "InkOut" in fault.status.detail
        sim.engine.set_fault(FaultReason.DOOR_OPEN)
        both = await h.next(PrinterStatusChanged)
        assert both.status.faults == frozenset({FaultReason.INK_OUT, FaultReason.DOOR_OPEN})
        sim.engine.clear_fault()
        printing = await h.next_status(PrinterState.PRINTING)
        assert printing.status.faults == frozenset()
        status_events = [e for e in h.drain() if isinstance(e, PrinterStatusChanged)]
        assert all(a.status != b.status for a, b in itertools.pairwise(status_events))


async def test_warnings_and_unknown_codes():
    async with DominoSim() as sim, connected(sim) as h:
        sim.engine.printing = True
        sim.engine.warnings.add("ink low")
        status = await h.driver.status()
        assert status.state is PrinterState.WARNING
        assert status.faults == frozenset()
        assert "Warn:ink low" in status.detail


def test_status_parsing_of_unknown_state_and_fault_codes():
    from drivers.framing.domino import Answer
    from drivers.printer.domino import parse_status

    odd = parse_status(Answer("Status", (b"9",)))
    assert odd.state is PrinterState.FAULT
    assert odd.faults == frozenset({FaultReason.OTHER})
    unknown = parse_status(Answer("Status", (b"4", b"Smoke")))
    assert unknown.faults == frozenset({FaultReason.OTHER})
    assert unknown.detail == "4,Smoke"


async def test_counters():
    async with DominoSim() as sim, connected(sim) as h:
        await h.driver.load(records(1, 2, 3))
        await h.driver.start()
        sim.product_detect()
        counters = await h.driver.counters()
        assert (counters.printed, counters.buffered) == (1, 2)


# -- the device's own surprises -----------------------------------------------------------------------


async def test_records_the_driver_never_gave_are_reported_not_printed():
    async with DominoSim() as sim, connected(sim) as h:
        await h.driver.load(records(1))
        sim.engine.enqueue((("CODE", "FOREIGN"),))
        h.run()
        garbage = await h.next(DeviceGarbage)
        assert "above the 1 record" in garbage.reason
        await h.driver.start()
        sim.product_detect()  # prints record 1: the count is now 1, one record mirrored
        await h.next_status(PrinterState.PRINTING)
        sim.product_detect()  # prints FOREIGN: now count 0, so record 1 is reported printed
        assert await h.next_printed(1) == [1]
        assert h.reported(PrintOutcome.PRINTED) == [1]
        assert len([e for e in h.seen if isinstance(e, DeviceGarbage)]) == 1  # reported once, not every poll


async def test_known_weakness_a_silently_dropped_record_looks_printed():
    # FillSerialVar has no answer: a record the printer drops (queue overflow) is only seen as a lower count,
    # exactly like a print. The driver's queue_limit keeps this from happening in normal use.
    async with DominoSim() as sim, connected(sim) as h:
        sim.engine.buffer_full = True
        await h.driver.load(records(1))
        assert h.reported(PrintOutcome.SENT) == [1]
        h.run()
        assert await h.next_printed(1) == [1]
        assert sim.engine.printed == []


# -- fault injection ----------------------------------------------------------------------------------


async def test_garbage_before_an_answer_is_reported_and_the_driver_keeps_working(transport):
    async with DominoSim(transport=transport) as sim, connected(sim) as h:
        sim.faults.inject(Garbage(b"\x00\x15noise\r\n#"))
        assert (await h.driver.status()).state is PrinterState.READY
        garbage = [e for e in h.drain() if isinstance(e, DeviceGarbage)]
        assert [g.data for g in garbage] == [b"\x00\x15noise", b"#"]
        await h.driver.load(records(1))
        assert h.reported(PrintOutcome.SENT) == [1]


async def test_garbage_sent_to_the_printer_is_ignored_by_it():
    async with DominoSim() as sim, connected(sim) as h:
        assert h.driver._link is not None
        await h.driver._link.write(b"\x02junk\x03\x01Broken")
        await h.driver.load(records(1))
        assert h.reported(PrintOutcome.SENT) == [1]
        assert sim.garbage == [b"\x02junk\x03", b"\x01Broken"]


async def test_a_corrupted_answer_is_garbage_and_without_a_checksum_the_call_times_out():
    async with DominoSim() as sim, connected(sim, response_timeout_s=SHORT_TIMEOUT_S) as h:
        sim.faults.inject(Corrupt(offset=0, mask=0x20))  # "Answer" becomes "answer": no answer at all
        with pytest.raises(TransientDeviceError, match="GetStatus"):
            await h.driver.status()
        garbage = [e for e in h.drain() if isinstance(e, DeviceGarbage)]
        assert garbage
        assert garbage[0].data.startswith(b"answerStatus=")


async def test_nak_on_a_load_fails_that_record_only(transport):
    async with DominoSim(transport=transport) as sim, connected(sim) as h:
        # A record's first command is the GetStatus fence: let it through and refuse the record's fill.
        sim.engine.inject_reply(ReplyFault.DELAYED, delay_s=0)
        sim.engine.inject_reply(ReplyFault.NAK)
        await h.driver.load(records(1, 2, 3))
        failed = [e for e in h.drain() if isinstance(e, PrintEvidence) and e.outcome is PrintOutcome.FAILED]
        assert [e.record_id for e in failed] == [1]
        assert failed[0].detail == "AnswerError=FillSerialVar,Refused"
        assert h.reported(PrintOutcome.SENT) == [2, 3]
        await h.driver.start()
        h.run()
        sim.product_detect()
        sim.product_detect()
        assert await h.next_printed(2) == [2, 3]
        assert [p.value("CODE") for p in sim.engine.printed] == [code(2), code(3)]


async def test_a_partly_refused_record_stops_the_driver():
    opts = options(job="PACK", fields={"SN": "serial", "LOT": "10"})
    async with DominoSim(jobs={"PACK": ("SN", "LOT")}) as sim, connected(sim, opts) as h:
        sim.engine.inject_reply(ReplyFault.DELAYED, delay_s=0, count=2)  # the fence and the SN fill go through
        sim.engine.inject_reply(ReplyFault.NAK)  # the LOT fill is refused
        with pytest.raises(TransientDeviceError, match="out of step"):
            await h.driver.load([PrintRecord(1, (("SN", "A"), ("LOT", "L")))])
        assert h.reported(PrintOutcome.FAILED) == [1]


async def test_missing_answer_raises_within_the_response_timeout(transport):
    async with DominoSim(transport=transport) as sim, connected(sim, response_timeout_s=SHORT_TIMEOUT_S) as h:
        sim.engine.inject_reply(ReplyFault.MISSING)
        with pytest.raises(TransientDeviceError, match="no answer"):
            async with asyncio.timeout(HANG_GUARD_S):
                await h.driver.status()


async def test_missing_poll_answer_ends_run():
    async with DominoSim() as sim, connected(sim, response_timeout_s=SHORT_TIMEOUT_S) as h:
        sim.engine.inject_reply(ReplyFault.DELAYED, delay_s=0)  # GetStatus answered
        sim.engine.inject_reply(ReplyFault.MISSING)  # PollSerialVar not
        h.run()
        with pytest.raises(TransientDeviceError, match="PollSerialVar"):
            await h.ended()


async def test_duplicate_answers_never_give_duplicate_or_wrong_prints():
    async with DominoSim() as sim, connected(sim) as h:
        await h.driver.load(records(1, 2))
        await h.driver.start()
        sim.product_detect()
        # The queue level (1) of this poll is answered twice; the stale copy must not answer the next load's poll.
        sim.engine.inject_reply(ReplyFault.DELAYED, delay_s=0)
        sim.engine.inject_reply(ReplyFault.DUPLICATE)
        assert (await h.driver.counters()).buffered == 1
        await h.driver.load(records(3))
        assert h.reported(PrintOutcome.SENT) == [1, 2, 3]
        # Every answer of the next polls twice, too.
        sim.engine.inject_reply(ReplyFault.DUPLICATE, count=20)
        h.run()
        assert await h.next_printed(1) == [1]
        sim.product_detect()
        assert await h.next_printed(1) == [2]
        sim.product_detect()
        assert await h.next_printed(1) == [3]
        sim.engine.set_fault(FaultReason.HEAD_FAULT)
        await h.next_status(PrinterState.FAULT)  # a later poll: nothing more was reported printed
        assert h.reported(PrintOutcome.PRINTED) == [1, 2, 3]
        assert any(isinstance(e, DeviceGarbage) for e in h.seen)


async def test_a_delayed_answer_within_the_timeout_works():
    slept: list[float] = []

    async def sim_sleep(seconds: float) -> None:
        slept.append(seconds)
        await asyncio.sleep(0)

    async with DominoSim(sleep=sim_sleep) as sim, connected(sim) as h:
        sim.engine.inject_reply(ReplyFault.DELAYED, delay_s=0.5)
        sim.engine.inject_reply(ReplyFault.DELAYED, delay_s=0.5)
        assert (await h.driver.status()).state is PrinterState.READY
        assert slept == [0.5, 0.5]


async def test_disconnect_mid_answer_fails_the_pending_call(transport):
    async with DominoSim(transport=transport) as sim, connected(sim) as h:
        sim.faults.inject(Disconnect(after_bytes=5))
        with pytest.raises(TransientDeviceError):
            await h.driver.status()


async def test_disconnect_mid_answer_ends_run(transport):
    async with DominoSim(transport=transport) as sim, connected(sim) as h:
        h.run()
        await h.next(PrinterStatusChanged)
        sim.faults.inject(Disconnect(after_bytes=7))
        with pytest.raises(TransientDeviceError):
            await h.ended()


async def test_power_cycle_drops_the_link_and_a_new_driver_clears_the_printer(transport):
    async with DominoSim(transport=transport) as sim:
        async with connected(sim) as h:
            await h.driver.load(records(1, 2))
            h.run()
            await h.next(PrinterStatusChanged)
            sim.power_cycle()
            with pytest.raises(TransientDeviceError):
                await h.ended()
        async with connected(sim) as h:
            await h.driver.load(records(3))
            await h.driver.clear()
            assert sim.engine.buffered == 0
            assert sim.staged("CODE") == 0
            assert (await h.driver.counters()).buffered == 0
            await h.driver.start()
            assert sim.product_detect() is None


# -- lifecycle, options, registry ----------------------------------------------------------------------


async def test_the_driver_is_single_use_and_needs_connect():
    async with DominoSim() as sim:
        driver = DominoPrinter(make_context(spec_for(sim), ignore), options())
        with pytest.raises(RuntimeError, match="connect"):
            await driver.run()
        with pytest.raises(RuntimeError, match="connect"):
            await driver.status()
        await driver.connect()
        try:
            with pytest.raises(RuntimeError, match="single-use"):
                await driver.connect()
        finally:
            await driver.close()
            await driver.close()
        with pytest.raises(TransientDeviceError):
            await driver.status()


async def test_from_options_builds_a_matching_simulator():
    opts = options(job="PACK.Design", fields={"SN": "serial", "LOT": "10"}, queue_limit=7)
    sim = from_options(opts)
    assert sim.engine.jobs == {"PACK": ("SN", "LOT")}
    assert sim.engine.depth == 7
    async with sim, connected(sim, opts) as h:
        assert sim.engine.job == "PACK"
        await h.driver.load([PrintRecord(1, (("SN", "S1"), ("LOT", "L1")))])
        assert h.reported(PrintOutcome.SENT) == [1]


def test_options_refuse_unknown_keys_and_bad_values():
    with pytest.raises(pydantic.ValidationError):
        DominoPrinter.Options.model_validate({"queue_size": 10})
    with pytest.raises(pydantic.ValidationError, match="queue_limit"):
        DominoPrinter.Options.model_validate({"depth": 30})
    with pytest.raises(pydantic.ValidationError, match="cannot go on the wire"):
        DominoPrinter.Options.model_validate({"fields": {"A,B": "code"}})
    assert DominoPrinter.Options().queue_limit == 20


def test_other_options_are_refused():
    with pytest.raises(TypeError):
        DominoPrinter(make_context(TransportSpec(url="socket://127.0.0.1:1"), ignore), DriverOptions())


def test_registered_as_a_printer():
    assert driver_class("printer.domino") is DominoPrinter
    assert DominoPrinter.role == "printer"

