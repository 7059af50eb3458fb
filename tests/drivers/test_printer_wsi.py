"""WsiPrinter against WsiSim over a real loopback socket and over a pseudo-terminal pair."""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING

import pydantic
import pytest

from drivers.base import DeviceGarbage, DeviceInfo, DriverContext, DriverOptions
from drivers.printer.base import (
    EvidenceKind,
    FaultReason,
    LoadStyle,
    PrinterCapabilities,
    PrinterState,
    PrinterStatus,
    PrinterStatusChanged,
    PrintEvidence,
    PrintOutcome,
    PrintRecord,
)
from drivers.printer.exchange import STRAY
from drivers.printer.wsi import MODEL, ErrorStatus, WsiPrinter
from drivers.transport.spec import TransportSpec
from edge.errors import DeviceRejectedError, ProtocolError, TransientDeviceError
from edge.registry import driver_class
from simulators.faults import Corrupt, Disconnect, Garbage
from simulators.printer import PrinterEngine, ReplyFault
from simulators.wsi import DEFAULT_PART_NUMBER, WsiSim, from_options
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
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from drivers.base import EventSink

# The driver's poll pause in these tests: a millisecond keeps run() from spinning on the loopback link.
POLL_PAUSE_S = 0.001

JOBS = {"SERIAL": ("CODE",), "LOT": ("CODE", "LOT")}


def code(n: int) -> str:
    return f"0109501101530003{GS}21S{n:06d}"


def record(n: int, *extra: tuple[str, str]) -> PrintRecord:
    return PrintRecord(n, (("CODE", code(n)), *extra))


async def poll_pause(seconds: float) -> None:
    await asyncio.sleep(POLL_PAUSE_S)


def make_sim(transport: str = "tcp", **kwargs) -> WsiSim:
    return WsiSim(PrinterEngine(depth=1, single_shot=True, jobs=dict(JOBS)), transport=transport, **kwargs)


def wsi_context(sim: WsiSim, events: EventSink = ignore, *, response_timeout_s: float = 2.0) -> DriverContext:
    """Reach sim the way a WSI printer is wired: 9600 baud on a serial line, a millisecond's pause between polls."""
    return make_context(spec_for(sim, baudrate=9600), events, response_timeout_s=response_timeout_s, sleep=poll_pause)


def options(**kwargs) -> WsiPrinter.Options:
    kwargs.setdefault("status_interval_s", 0.01)
    return WsiPrinter.Options(**kwargs)


@contextlib.asynccontextmanager
async def running(
    sim: WsiSim,
    opts: WsiPrinter.Options | None = None,
    *,
    run: bool = True,
    response_timeout_s: float = 2.0,
) -> AsyncIterator[Harness[WsiPrinter]]:
    def build(events: EventSink) -> WsiPrinter:
        return WsiPrinter(wsi_context(sim, events, response_timeout_s=response_timeout_s), opts or options())

    async with connected_driver(build, run=run) as harness:
        assert harness.info == DeviceInfo(model=MODEL, firmware=DEFAULT_PART_NUMBER)
        yield harness


def fault_next(sim: WsiSim, monkeypatch, letter: str, fault: ReplyFault, delay_s: float = 0.0) -> None:
    """Spoil the answer to the next command with this letter (answer faults otherwise hit the next answer)."""
    original = sim.refused
    armed = [True]

    def refused():
        if armed[0] and sim.commands and sim.commands[-1].command == letter:
            armed[0] = False
            return fault, delay_s
        return original()

    monkeypatch.setattr(sim, "refused", refused)


async def print_one(sim: WsiSim, run: Harness[WsiPrinter], rec: PrintRecord) -> None:
    await run.driver.load([rec])
    assert await run.next(PrintEvidence) == PrintEvidence(
        device_id=DEVICE, at=AT, record_id=rec.record_id, outcome=PrintOutcome.SENT
    )
    assert sim.product_detect() is not None
    assert await run.next(PrintEvidence) == PrintEvidence(
        device_id=DEVICE, at=AT, record_id=rec.record_id, outcome=PrintOutcome.PRINTED
    )


# -- connect, job, capabilities ---------------------------------------------------------------------


async def test_connect_asks_part_number_and_counter_then_selects_the_job(transport):
    async with make_sim(transport) as sim, running(sim, options(job="LOT"), run=False) as run:
        assert [c.command for c in sim.commands] == ["H", "G", "G", "M"]
        assert sim.engine.job == "LOT"
        assert await run.driver.current_message() == "LOT"


async def test_commands_carry_the_checksum_the_printer_acknowledges():
    async with make_sim(require_checksum=True) as sim, running(sim, run=False) as run:
        await run.driver.start()
        assert sim.engine.printing
        assert sim.commands[-1].checksum == 0x80
        await run.driver.stop()
        assert not sim.engine.printing
        assert sim.commands[-1].checksum == 0x7F


async def test_commands_without_checksum_work_when_the_printer_takes_them():
    async with make_sim() as sim, running(sim, options(checksum=False)) as run:
        await run.driver.start()
        await print_one(sim, run, record(1))
        assert {c.checksum for c in sim.commands} == {None}


async def test_a_printer_that_requires_checksums_never_answers_a_driver_without_them():
    # The printer waits for the checksum after ETX: the driver's handshake fails at connect.
    async with make_sim(require_checksum=True) as sim:
        context = wsi_context(sim, response_timeout_s=SHORT_TIMEOUT_S)
        driver = WsiPrinter(context, options(checksum=False))
        with pytest.raises(TransientDeviceError, match="part number"):
            await driver.connect()
        await driver.close()
        assert sim.commands == []


async def test_select_job_and_unknown_job(transport):
    async with make_sim(transport) as sim, running(sim, run=False) as run:
        await run.driver.select_job("LOT")
        assert sim.engine.job == "LOT"
        with pytest.raises(DeviceRejectedError, match="NOPE"):
            await run.driver.select_job("NOPE")
        assert sim.engine.job == "LOT"


async def test_capabilities_are_single_shot_counter_evidence():
    async with make_sim() as sim, running(sim, options(depth=5), run=False) as run:
        assert run.driver.capabilities == PrinterCapabilities(
            LoadStyle.SINGLE_SHOT, 1, EvidenceKind.PRINT_COUNTER, host_trigger=False
        )
        with pytest.raises(DeviceRejectedError, match="trigger"):
            await run.driver.trigger()


# -- load and print evidence ------------------------------------------------------------------------


async def test_records_print_in_order_with_their_ids(transport):
    async with make_sim(transport) as sim, running(sim) as run:
        await run.driver.start()
        records = [record(n) for n in range(1, 6)]
        for rec in records:
            await print_one(sim, run, rec)
        assert [p.fields for p in sim.engine.printed] == [r.fields for r in records]
        assert [e.record_id for e in run.drain() if isinstance(e, PrintEvidence)] == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]


async def test_every_field_of_a_record_is_updated_in_order():
    async with make_sim() as sim, running(sim, options(job="LOT", fields={"CODE": "code", "LOT": "10"})) as run:
        await run.driver.start()
        rec = record(7, ("LOT", "AB-123"))
        await print_one(sim, run, rec)
        assert sim.engine.printed[-1].fields == rec.fields
        assert [c.fields[0] for c in sim.commands if c.command == "U"] == [b"CODE", b"LOT"]


async def test_a_message_printed_twice_is_reported_printed_once():
    async with make_sim() as sim, running(sim) as run:
        await run.driver.start()
        await print_one(sim, run, record(1))
        sim.product_detect()  # nothing new loaded: the printer prints the same code again
        await print_one(sim, run, record(2))
        assert [p.value("CODE") for p in sim.engine.printed] == [code(1), code(1), code(2)]
        assert printed_ids(run.drain()) == [1, 2]


async def test_load_takes_exactly_one_record_at_a_time():
    async with make_sim() as sim, running(sim, run=False) as run:
        await run.driver.load([])
        with pytest.raises(ValueError, match="one record"):
            await run.driver.load([record(1), record(2)])
        await run.driver.load([record(1)])
        with pytest.raises(RuntimeError, match="record 1"):
            await run.driver.load([record(2)])
        assert sim.engine.buffered == 1


async def test_a_field_the_message_lacks_fails_that_record_only():
    async with make_sim() as sim, running(sim, run=False) as run:
        await run.driver.load([PrintRecord(1, (("NOPE", "x"),))])
        await run.driver.load([record(2)])
        first, second = await run.next(PrintEvidence), await run.next(PrintEvidence)
        assert (first.record_id, first.outcome) == (1, PrintOutcome.FAILED)
        assert "NOPE" in first.detail
        assert (second.record_id, second.outcome) == (2, PrintOutcome.SENT)


async def test_a_value_wsi_cannot_carry_fails_without_sending():
    async with make_sim() as sim, running(sim, run=False) as run:
        await run.driver.load([PrintRecord(1, (("CODE", "a\nb"),))])
        event = await run.next(PrintEvidence)
        assert (event.outcome, event.record_id) == (PrintOutcome.FAILED, 1)
        assert not [c for c in sim.commands if c.command == "U"]


async def test_clear_empties_the_message_and_the_record_is_never_reported_printed():
    async with make_sim() as sim, running(sim) as run:
        await run.driver.start()
        await run.driver.load([record(1)])
        assert (await run.next(PrintEvidence)).outcome is PrintOutcome.SENT
        await run.driver.clear()
        assert sim.engine.buffered == 0
        sim.product_detect()
        assert sim.engine.printed[-1].value("CODE") == ""  # the field is empty: nothing from before
        await print_one(sim, run, record(2))
        assert [e.record_id for e in run.drain() if isinstance(e, PrintEvidence)] == [1, 2, 2]


async def test_counters_report_the_print_counter():
    async with make_sim() as sim, running(sim) as run:
        await run.driver.start()
        await print_one(sim, run, record(1))
        await print_one(sim, run, record(2))
        assert (await run.driver.counters()).printed == 2
        await run.driver.reset_counter()
        assert sim.engine.counter == 0
        await print_one(sim, run, record(3))


async def test_a_counter_going_backwards_reports_garbage_and_no_print():
    async with make_sim() as sim, running(sim) as run:
        await run.driver.start()
        await print_one(sim, run, record(1))
        await run.driver.load([record(2)])
        assert (await run.next(PrintEvidence)).outcome is PrintOutcome.SENT
        sim.engine.counter = 0  # reset on the panel
        garbage = await run.next(DeviceGarbage)
        assert isinstance(garbage, DeviceGarbage)
        assert "backwards" in garbage.reason
        sim.product_detect()  # the counter is now 1, still below the last good value
        await run.driver.counters()
        assert printed_ids(run.drain()) == [1]


# -- status -----------------------------------------------------------------------------------------


async def test_status_maps_faults_and_comes_back_to_printing():
    async with make_sim() as sim, running(sim) as run:
        first = await run.next(PrinterStatusChanged)
        assert isinstance(first, PrinterStatusChanged)
        assert first.status == PrinterStatus(PrinterState.READY, detail="E 0000000")
        await run.driver.start()
        await run.next_status(PrinterState.PRINTING)
        sim.engine.set_fault(FaultReason.INK_OUT)
        fault = (await run.next_status(PrinterState.FAULT)).status
        assert fault.faults == {FaultReason.INK_OUT}
        assert "Ink core empty" in fault.detail
        sim.engine.clear_fault()
        await run.next_status(PrinterState.PRINTING)


@pytest.mark.parametrize(
    ("text", "state", "faults"),
    [
        (b"0000001", PrinterState.PRINTING, set()),
        (b"0000003", PrinterState.WARNING, set()),
        (b"0000000", PrinterState.READY, set()),
        (b"0000010", PrinterState.WARNING, set()),  # date/time not set only warns
        (b"100000C", PrinterState.FAULT, {FaultReason.HEAD_FAULT}),
        (b"810000C", PrinterState.FAULT, {FaultReason.INK_OUT, FaultReason.OTHER}),
        (b"000000C", PrinterState.FAULT, {FaultReason.OTHER}),  # red with no bit named
    ],
)
def test_error_status_decoding(text, state, faults):
    status = ErrorStatus.parse(text).status()
    assert (status.state, set(status.faults)) == (state, faults)
    assert ErrorStatus.parse(text).encode() == text
    assert status.detail.startswith(f"E {text.decode()}")


def test_error_status_refuses_other_text():
    with pytest.raises(ValueError, match="status"):
        ErrorStatus.parse(b"00000")


# -- faults on the link -----------------------------------------------------------------------------


async def test_garbage_before_an_answer_is_reported_and_the_answer_taken():
    async with make_sim() as sim, running(sim, run=False) as run:
        sim.faults.inject(Garbage(b"noise"))
        assert (await run.driver.status()).state is PrinterState.READY
        garbage = await run.next(DeviceGarbage)
        assert garbage == DeviceGarbage(device_id=DEVICE, at=AT, data=b"noise", reason="no frame start")


async def test_a_corrupted_ack_is_never_taken_for_the_answer():
    async with make_sim() as sim, running(sim, run=False, response_timeout_s=SHORT_TIMEOUT_S) as run:
        sim.faults.inject(Corrupt(offset=-1, mask=0x01))  # $80 becomes $81: the ACK of another command
        with pytest.raises(TransientDeviceError, match="print on"):
            await run.driver.start()
        stray = await run.next(DeviceGarbage)
        assert stray == DeviceGarbage(device_id=DEVICE, at=AT, data=b"$81", reason=STRAY)


async def test_a_corrupted_reply_frame_is_garbage_and_the_call_times_out():
    async with make_sim() as sim, running(sim, run=False, response_timeout_s=SHORT_TIMEOUT_S) as run:
        sim.faults.inject(Corrupt(offset=0, mask=0x40))  # STX lost: the reply has no frame start
        with pytest.raises(TransientDeviceError, match="print counter"):
            await run.driver.counters()
        assert isinstance(await run.next(DeviceGarbage), DeviceGarbage)


async def test_a_nak_on_a_field_fails_that_record_only_and_the_next_is_sent(monkeypatch):
    async with make_sim() as sim, running(sim, run=False) as run:
        fault_next(sim, monkeypatch, "U", ReplyFault.NAK)
        await run.driver.load([record(1)])
        await run.driver.load([record(2)])
        first, second = await run.next(PrintEvidence), await run.next(PrintEvidence)
        assert (first.record_id, first.outcome) == (1, PrintOutcome.FAILED)
        assert "U NAK" in first.detail
        assert (second.record_id, second.outcome) == (2, PrintOutcome.SENT)
        assert sim.values["CODE"] == code(2)


async def test_a_nak_on_a_later_field_empties_the_fields_already_updated(monkeypatch):
    async with make_sim() as sim, running(sim, options(job="LOT"), run=False) as run:
        original = sim.refused
        def refused():
            last = sim.commands[-1]
            if last.command == "U" and last.fields[0] == b"LOT":
                return ReplyFault.NAK, 0.0
            return original()
        monkeypatch.setattr(sim, "refused", refused)
        await run.driver.load([record(1, ("LOT", "L1"))])
        assert (await run.next(PrintEvidence)).outcome is PrintOutcome.FAILED
        assert sim.values["CODE"] == ""
        assert sim.engine.buffered == 0


async def test_a_missing_answer_is_a_lost_link_within_the_response_timeout(transport, monkeypatch):
    async with make_sim(transport) as sim, running(sim, run=False, response_timeout_s=SHORT_TIMEOUT_S) as run:
        fault_next(sim, monkeypatch, "U", ReplyFault.MISSING)
        async with asyncio.timeout(HANG_GUARD_S):
            with pytest.raises(TransientDeviceError, match="no answer"):
                await run.driver.load([record(1)])
        assert run.drain() == []  # neither SENT nor FAILED: the record's fate is unknown


async def test_a_duplicated_answer_gives_no_duplicate_or_wrong_print(monkeypatch):
    async with make_sim() as sim, running(sim) as run:
        await run.driver.start()
        fault_next(sim, monkeypatch, "U", ReplyFault.DUPLICATE)
        await print_one(sim, run, record(1))
        fault_next(sim, monkeypatch, "G", ReplyFault.DUPLICATE)
        await print_one(sim, run, record(2))
        await print_one(sim, run, record(3))
        events = run.drain()
        assert printed_ids(events) == [1, 2, 3]
        assert any(isinstance(e, DeviceGarbage) and e.reason == STRAY for e in events)


async def test_a_delayed_answer_within_the_timeout_works(monkeypatch):
    async with make_sim() as sim, running(sim, run=False) as run:
        fault_next(sim, monkeypatch, "U", ReplyFault.DELAYED, delay_s=0.05)
        await run.driver.load([record(1)])
        assert (await run.next(PrintEvidence)).outcome is PrintOutcome.SENT


async def test_a_refused_status_query_is_a_protocol_error(monkeypatch):
    async with make_sim() as sim, running(sim, run=False) as run:
        fault_next(sim, monkeypatch, "E", ReplyFault.NAK)
        with pytest.raises(ProtocolError, match="error status"):
            await run.driver.status()


async def test_disconnect_mid_frame_ends_run(transport):
    async with make_sim(transport) as sim, running(sim) as run:
        await run.next(PrinterStatusChanged)
        sim.faults.inject(Disconnect(after_bytes=2))
        with pytest.raises(TransientDeviceError):
            await run.ended()


async def test_disconnect_mid_frame_fails_the_pending_call(transport):
    async with make_sim(transport) as sim, running(sim, run=False) as run:
        sim.faults.inject(Disconnect(after_bytes=3))
        with pytest.raises(TransientDeviceError):
            await run.driver.status()


async def test_power_cycle_drops_the_link_and_a_new_driver_clears_the_printer(transport):
    async with make_sim(transport) as sim:
        async with running(sim) as run:
            await run.driver.start()
            await run.driver.load([record(1)])
            sim.power_cycle()
            with pytest.raises(TransientDeviceError):
                await run.ended()
        async with running(sim) as run:
            await run.driver.clear()
            assert sim.engine.buffered == 0
            await run.driver.start()
            sim.product_detect()
            assert all(p.value("CODE") != code(1) for p in sim.engine.printed)
            await print_one(sim, run, record(2))


# -- simulator, registry, options -------------------------------------------------------------------


async def test_from_options_builds_a_printer_like_the_options_describe():
    opts = options(job="BATCH", fields={"CODE": "code", "EXP": "17"})
    async with from_options(opts) as sim, running(sim, opts) as run:
        assert sim.engine.jobs == {"BATCH": ("CODE", "EXP")}
        assert sim.require_checksum
        await run.driver.start()
        await print_one(sim, run, record(1, ("EXP", "270630")))


async def test_the_simulator_refuses_bad_frames_and_unknown_commands():
    async with make_sim(require_checksum=True) as sim, running(sim, run=False) as run:
        link = run.driver._require().link
        await link.write(b"\x02O1\x0300")  # bad checksum
        assert await link.read() == b"!80"
        await link.write(b"\x02X\x0358")  # no such command
        assert await link.read() == b"!58"


async def test_the_simulator_ignores_line_noise_and_survives_names_it_cannot_send():
    engine = PrinterEngine(depth=1, single_shot=True, jobs={"CAFÉ": ("CODE",)})
    async with WsiSim(engine) as sim, running(sim, run=False) as run:
        await run.driver._require().link.write(b"\xff\x00noise\x02\x03\x03")
        assert (await run.driver.status()).state is PrinterState.READY
        assert await run.driver.current_message() == "CAF?"


def test_the_simulator_needs_a_single_shot_engine():
    with pytest.raises(ValueError, match="single_shot"):
        WsiSim(PrinterEngine())


async def test_the_driver_is_single_use_and_needs_connect():
    async with make_sim() as sim:
        driver = WsiPrinter(wsi_context(sim), options())
        with pytest.raises(RuntimeError, match="connect"):
            await driver.run()
        await driver.connect()
        try:
            with pytest.raises(RuntimeError, match="single-use"):
                await driver.connect()
        finally:
            await driver.close()
            await driver.close()


def test_options_refuse_unknown_keys_and_bad_values():
    with pytest.raises(pydantic.ValidationError):
        WsiPrinter.Options.model_validate({"checksums": False})
    with pytest.raises(pydantic.ValidationError):
        WsiPrinter.Options.model_validate({"counter": "C"})
    assert WsiPrinter.Options.model_validate({"checksum": False, "counter": "A"}).counter == "A"


def test_other_options_are_refused():
    with pytest.raises(TypeError):
        WsiPrinter(make_context(TransportSpec(url="socket://127.0.0.1:1"), ignore), DriverOptions())


def test_registered_as_a_printer():
    assert driver_class("printer.wsi") is WsiPrinter
    assert WsiPrinter.role == "printer"

