"""ZplPrinter against ZplSim over a real loopback socket (ZPL printers are reached on raw TCP 9100)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from typing import TYPE_CHECKING

import pydantic
import pytest

from drivers.base import DeviceEvent, DeviceGarbage, DeviceInfo, DriverOptions
from drivers.framing.zpl import HostStatus, encode_label
from drivers.printer.base import (
    EvidenceKind,
    FaultReason,
    LoadStyle,
    PrinterCounters,
    PrinterState,
    PrinterStatus,
    PrinterStatusChanged,
    PrintEvidence,
    PrintOutcome,
    PrintRecord,
)
from drivers.printer.exchange import STRAY
from drivers.printer.zpl import MODEL, STALE_WINDOW, ZplPrinter, status_of
from drivers.transport.spec import TransportSpec
from edge.errors import DeviceRejectedError, TransientDeviceError
from edge.registry import driver_class
from simulators.faults import Corrupt, Disconnect, Garbage, Stall
from simulators.printer import ReplyFault
from simulators.zpl import ZplSim, default_format, from_options
from tests.drivers.printer_harness import (
    AT,
    DEVICE,
    GS,
    HANG_GUARD_S,
    SHORT_TIMEOUT_S,
    Harness,
    connected_driver,
    ignore,
    is_printed,
    make_context,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from drivers.base import EventSink

FORMAT = "E:CASE.ZPL"
STORED = b"^XA^DFE:CASE.ZPL^FS^FO50,50^BXN,10,200,,,,_^FH^FN1^FS^FO50,400^A0N,30,30^FN2^FS^XZ"


def code(n: int) -> str:
    return "0109501101530003172706301" + f"0LOT{n}{GS}21SN{n:05d}"


CODED: set[int] = set()
"""Record ids made by records() in the running test: their field value is code(id)."""


@pytest.fixture(autouse=True)
def _only_this_tests_records() -> None:
    CODED.clear()  # an id another test made may carry other values here (record 5 of the ^FN mapping test)


def records(*ids: int, fields: tuple[str, ...] = ("CODE",)) -> list[PrintRecord]:
    CODED.update(ids)
    return [PrintRecord(i, tuple((name, code(i)) for name in fields)) for i in ids]


def options(**overrides) -> ZplPrinter.Options:
    values = {"format_name": FORMAT, "poll_interval_s": 0.005, "status_interval_s": 0.02} | overrides
    return ZplPrinter.Options.model_validate(values)


def status_change(event: DeviceEvent) -> bool:
    return isinstance(event, PrinterStatusChanged)


def evidence(record_id: int, outcome: PrintOutcome, detail: str = "") -> PrintEvidence:
    return PrintEvidence(device_id=DEVICE, at=AT, record_id=record_id, outcome=outcome, detail=detail)


async def wait_for(sim: ZplSim, condition: Callable[[], bool]) -> None:
    """Wait until condition holds, woken by every change of the simulated printer (labels, polls, faults)."""
    async with asyncio.timeout(HANG_GUARD_S):
        while True:
            changed = sim.engine.wait_changed()
            changed.clear()
            if condition():
                return
            await changed.wait()


async def polls(sim: ZplSim, count: int) -> None:
    """Wait until the driver asked ~HS count more times."""
    target = sim.status_queries + count
    await wait_for(sim, lambda: sim.status_queries >= target)


@contextlib.asynccontextmanager
async def running(
    sim: ZplSim, opts: ZplPrinter.Options | None = None, *, run: bool = True, response_timeout_s: float = 2.0
) -> AsyncIterator[Harness[ZplPrinter]]:
    premature: list[DeviceEvent] = []

    def build(events: EventSink) -> ZplPrinter:
        async def sink(event: DeviceEvent) -> None:
            # Every test checks the one thing LABEL_STATUS evidence must never do: report a label the printer
            # has not printed yet. Records carry their own id in their code, so the label is findable.
            if is_printed(event) and isinstance(event, PrintEvidence):
                values = {value for p in sim.engine.printed for _, value in p.fields}
                if event.record_id in CODED and code(event.record_id) not in values:
                    premature.append(event)
            await events(event)

        context = make_context(sim.transport_spec(), sink, response_timeout_s=response_timeout_s, sleep=asyncio.sleep)
        return ZplPrinter(context, opts or options())

    async with connected_driver(build, run=run) as harness:
        assert harness.info == DeviceInfo(model=MODEL)
        yield harness
    assert premature == [], "PRINTED before the printer printed the label"


def new_sim(**kwargs) -> ZplSim:
    return ZplSim(formats=[STORED], **kwargs)


# -- connect, jobs, capabilities --------------------------------------------------------------------


async def test_connect_asks_host_status_and_downloads_the_format():
    stored = STORED.decode().replace("CASE", "PALLET")
    async with ZplSim() as sim, running(sim, options(format_name=None, format_zpl=stored), run=False) as run:
        await wait_for(sim, lambda: "E:PALLET.ZPL" in sim.formats)
        assert sim.status_queries == 1
        assert sim.formats["E:PALLET.ZPL"].numbers == (1, 2)
        await run.driver.load(records(1))
        await wait_for(sim, lambda: sim.engine.buffered == 1)
    assert sim.labels[0].format_name == "E:PALLET.ZPL"  # the ^DF name is the default format


async def test_connect_to_a_printer_that_never_answers_fails_and_closes_the_link():
    async with new_sim() as sim:
        sim.faults.inject(Stall())
        driver = ZplPrinter(make_context(sim.transport_spec(), ignore, response_timeout_s=SHORT_TIMEOUT_S), options())
        with pytest.raises(TransientDeviceError, match="handshake"):
            await driver.connect()
        assert driver._link is None  # closed on the way out; the fd guard checks nothing leaked
        await driver.close()


async def test_select_job_changes_the_recalled_format_and_refuses_what_cannot_be_a_format_name():
    async with new_sim() as sim, running(sim, run=False) as run:
        await run.driver.select_job("R:OTHER.ZPL")
        await run.driver.load(records(1))
        with pytest.raises(DeviceRejectedError, match=r"NO SUCH\^JOB"):
            await run.driver.select_job("NO SUCH^JOB")
        await wait_for(sim, lambda: len(sim.labels) == 1)
    # ZPL cannot tell whether a format is stored: the label recalls it and prints blank.
    assert sim.labels[0].format_name == "R:OTHER.ZPL"
    assert not sim.labels[0].stored


async def test_select_job_downloads_format_zpl_again_when_it_names_it():
    async with ZplSim() as sim, running(sim, options(format_zpl=STORED.decode()), run=False) as run:
        await wait_for(sim, lambda: FORMAT in sim.formats)
        del sim.formats[FORMAT]
        await run.driver.select_job(FORMAT)
        await wait_for(sim, lambda: FORMAT in sim.formats)


async def test_capabilities_as_declared():
    async with new_sim() as sim:
        async with running(sim, run=False) as run:
            caps = run.driver.capabilities
            assert (caps.load, caps.buffer_depth, caps.evidence, caps.host_trigger) == (
                LoadStyle.BUFFERED, 4, EvidenceKind.LABEL_STATUS, False,
            )
            with pytest.raises(DeviceRejectedError, match="product detect"):
                await run.driver.trigger()
        async with running(sim, options(depth=10), run=False) as run:
            assert run.driver.capabilities.buffer_depth == 10
        async with running(sim, options(depth=5000), run=False) as run:
            assert run.driver.capabilities.buffer_depth == 999


# -- printing and evidence --------------------------------------------------------------------------


async def test_loaded_labels_print_in_order_with_their_record_ids():
    ids = [11, 12, 13, 14]
    async with new_sim() as sim, running(sim) as run:
        await run.driver.load(records(*ids))
        sent = await run.take(lambda e: isinstance(e, PrintEvidence) and e.outcome is PrintOutcome.SENT, 4)
        assert sent == [evidence(i, PrintOutcome.SENT) for i in ids]
        await wait_for(sim, lambda: sim.engine.buffered == 4)
        for _ in ids:
            assert sim.product_detect() is not None
        done = await run.take(is_printed, 4)
    assert done == [evidence(i, PrintOutcome.PRINTED) for i in ids]
    assert [p.fields for p in sim.engine.printed] == [(("FN1", code(i)),) for i in ids]
    assert [p.job for p in sim.engine.printed] == [FORMAT] * 4


async def test_gs_reaches_the_printer_escaped_and_comes_out_as_gs():
    async with new_sim() as sim, running(sim, run=False) as run:
        await run.driver.load(records(1))
        await wait_for(sim, lambda: sim.engine.buffered == 1)
    label = sim.labels[0]
    assert label.fields == ((1, code(1).encode()),)
    assert b"\x1d" in label.fields[0][1]
    assert label.stored
    assert label.text.startswith(b"^FS^FO50,50^BXN,10,200,,,,_^FH^FN1^FD" + code(1).encode())
    assert sim.engine.printed == []


async def test_field_numbers_map_record_fields_onto_the_format():
    opts = options(fields={"SSCC": "00", "GTIN": "01"}, field_numbers={"SSCC": 2, "GTIN": 1})
    async with new_sim() as sim, running(sim, opts) as run:
        await run.driver.load([PrintRecord(5, (("SSCC", "00123"), ("GTIN", "0950110153000")))])
        await wait_for(sim, lambda: sim.engine.buffered == 1)
        sim.product_detect()
        assert await run.take(is_printed) == [evidence(5, PrintOutcome.PRINTED)]
    assert sim.engine.printed[0].fields == (("FN2", "00123"), ("FN1", "0950110153000"))


async def test_a_record_that_cannot_be_composed_fails_alone_and_the_next_is_sent():
    async with new_sim() as sim, running(sim, run=False) as run:
        bad = PrintRecord(2, (("NOPE", "x"),))
        await run.driver.load([*records(1), bad, *records(3)])
        outcomes = [e for e in run.drain() if isinstance(e, PrintEvidence)]
        await wait_for(sim, lambda: sim.engine.buffered == 2)
    assert [(e.record_id, e.outcome) for e in outcomes] == [
        (1, PrintOutcome.SENT), (2, PrintOutcome.FAILED), (3, PrintOutcome.SENT),
    ]
    assert "NOPE" in outcomes[1].detail
    assert [label.fields[0][1] for label in sim.labels] == [code(1).encode(), code(3).encode()]


async def test_without_a_format_every_record_fails():
    async with new_sim() as sim, running(sim, options(format_name=None), run=False) as run:
        await run.driver.load(records(1, 2))
        outcomes = [e for e in run.drain() if isinstance(e, PrintEvidence)]
    assert [e.outcome for e in outcomes] == [PrintOutcome.FAILED] * 2
    assert "no stored format" in outcomes[0].detail


async def test_clear_cancels_everything_and_nothing_from_before_prints():
    async with new_sim() as sim, running(sim) as run:
        await run.driver.load(records(1, 2, 3))
        await wait_for(sim, lambda: sim.engine.buffered == 3)
        sim.product_detect()
        assert await run.take(is_printed) == [evidence(1, PrintOutcome.PRINTED)]
        await run.driver.clear()
        await wait_for(sim, lambda: sim.engine.buffered == 0)
        assert sim.product_detect() is None
        await run.driver.load(records(4))
        await wait_for(sim, lambda: sim.engine.buffered == 1)
        sim.product_detect()
        assert await run.take(is_printed) == [evidence(4, PrintOutcome.PRINTED)]
        await polls(sim, 5)
    assert [e.record_id for e in run.drain() if is_printed(e)] == [1, 4]
    assert [p.fields[0][1] for p in sim.engine.printed] == [code(1), code(4)]


async def test_labels_the_driver_never_sent_are_never_reported_printed():
    async with new_sim() as sim:
        async with running(sim, run=False) as first:
            await first.driver.load(records(1, 2))
            await wait_for(sim, lambda: sim.engine.buffered == 2)
        async with running(sim) as second:
            await second.driver.load(records(3))
            await wait_for(sim, lambda: sim.engine.buffered == 3)
            sim.product_detect()
            sim.product_detect()
            await polls(sim, 5)
            assert not [e for e in second.drain() if is_printed(e)]
            sim.product_detect()
            assert await second.take(is_printed) == [evidence(3, PrintOutcome.PRINTED)]


async def test_counters_from_host_status():
    async with new_sim() as sim, running(sim, run=False) as run:
        await run.driver.load(records(1, 2, 3))
        await wait_for(sim, lambda: sim.engine.buffered == 3)
        sim.product_detect()
        assert await run.driver.counters() == PrinterCounters(printed=1, buffered=2)


# -- status -----------------------------------------------------------------------------------------


async def test_status_changes_are_reported_with_the_fault_reason_and_recovery():
    async with new_sim() as sim, running(sim) as run:
        (first,) = await run.take(status_change)
        assert first == PrinterStatusChanged(device_id=DEVICE, at=AT, status=PrinterStatus(PrinterState.PRINTING))
        sim.engine.set_fault(FaultReason.RIBBON_OUT)
        (fault,) = await run.take(status_change)
        assert fault.status == PrinterStatus(PrinterState.FAULT, frozenset({FaultReason.RIBBON_OUT}), "ribbon out")
        sim.engine.clear_fault()
        (again,) = await run.take(status_change)
        assert again.status.state is PrinterState.PRINTING


@pytest.mark.parametrize(
    ("fault", "reason", "words"),
    [
        (FaultReason.LABELS_OUT, FaultReason.LABELS_OUT, "paper out"),
        (FaultReason.RIBBON_OUT, FaultReason.RIBBON_OUT, "ribbon out"),
        (FaultReason.INK_OUT, FaultReason.RIBBON_OUT, "ribbon out"),
        (FaultReason.DOOR_OPEN, FaultReason.DOOR_OPEN, "head up"),
        (FaultReason.HEAD_FAULT, FaultReason.HEAD_FAULT, "over temperature"),
        (FaultReason.OTHER, FaultReason.OTHER, "corrupt RAM"),
    ],
)
async def test_fault_mapping(fault, reason, words):
    async with new_sim() as sim, running(sim, run=False) as run:
        sim.engine.set_fault(fault)
        assert await run.driver.status() == PrinterStatus(PrinterState.FAULT, frozenset({reason}), words)


async def test_stop_pauses_and_start_resumes():
    async with new_sim() as sim, running(sim, run=False) as run:
        await run.driver.stop()
        assert await run.driver.status() == PrinterStatus(PrinterState.STOPPED, detail="pause")
        assert not sim.engine.printing
        await run.driver.start()
        assert (await run.driver.status()).state is PrinterState.PRINTING


def test_buffer_full_and_temperature_mapping():
    assert status_of(HostStatus(buffer_full=True)) == PrinterStatus(PrinterState.WARNING, detail="buffer full")
    cold = status_of(HostStatus(under_temperature=True, paused=True))
    assert cold == PrinterStatus(PrinterState.FAULT, frozenset({FaultReason.HEAD_FAULT}), "under temperature, pause")


# -- faults on the wire -----------------------------------------------------------------------------


async def test_garbage_before_an_answer_is_reported_and_the_driver_goes_on():
    async with new_sim() as sim, running(sim, run=False) as run:
        sim.faults.inject(Garbage(b"\x00NOISE"))
        assert (await run.driver.status()).state is PrinterState.PRINTING
        (garbage,) = await run.take(lambda e: isinstance(e, DeviceGarbage))
        assert garbage == DeviceGarbage(device_id=DEVICE, at=AT, data=b"\x00NOISE", reason="bytes outside STX...ETX")
        assert (await run.driver.status()).state is PrinterState.PRINTING


async def test_a_corrupted_answer_is_garbage_never_a_status_and_the_link_is_given_up():
    async with new_sim() as sim, running(sim, run=False, response_timeout_s=SHORT_TIMEOUT_S) as run:
        sim.engine.set_fault(FaultReason.LABELS_OUT)
        sim.faults.inject(Corrupt(offset=5, mask=0x40))  # the paper-out flag "1" becomes "q"
        with pytest.raises(TransientDeviceError, match="no answer"):
            await run.driver.status()
        garbage = [e for e in run.drain() if isinstance(e, DeviceGarbage)]
        assert garbage
        assert any("paper out" in g.reason for g in garbage)


async def test_a_planned_nak_is_answered_normally_because_zpl_has_none():
    async with new_sim() as sim, running(sim, run=False) as run:
        sim.engine.inject_reply(ReplyFault.NAK)
        assert (await run.driver.status()).state is PrinterState.PRINTING


async def test_a_missing_answer_is_a_lost_link_within_the_response_timeout():
    async with new_sim() as sim, running(sim, run=False, response_timeout_s=SHORT_TIMEOUT_S) as run:
        sim.engine.inject_reply(ReplyFault.MISSING)
        started = time.monotonic()
        with pytest.raises(TransientDeviceError, match="no answer"):
            await run.driver.status()
        assert time.monotonic() - started < SHORT_TIMEOUT_S + 1.0


async def test_a_delayed_answer_within_the_timeout_works():
    async with new_sim() as sim, running(sim, run=False) as run:
        sim.engine.inject_reply(ReplyFault.DELAYED, delay_s=0.05)
        assert (await run.driver.counters()) == PrinterCounters(printed=0, buffered=0)


async def test_duplicate_answers_never_give_a_duplicate_or_wrong_printed():
    async with new_sim() as sim, running(sim) as run:
        await run.driver.load(records(1, 2, 3))
        await wait_for(sim, lambda: sim.engine.buffered == 3)
        sim.engine.inject_reply(ReplyFault.DUPLICATE, count=4)
        sim.product_detect()
        await polls(sim, 3)
        # More labels go out while duplicated answers from before them are about: taken as answers, they
        # would count 2 and 3 as printed (5 sent - 2 waiting) before the printer printed them.
        await run.driver.load(records(4, 5))
        await wait_for(sim, lambda: sim.engine.buffered == 4)
        await polls(sim, 8)
        sim.engine.inject_reply(ReplyFault.DUPLICATE, count=4)
        sim.product_detect()
        sim.product_detect()
        done = await run.take(is_printed, 3)
        await polls(sim, 10)
        strays = [e for e in run.drain() if isinstance(e, DeviceGarbage) and e.reason == STRAY]
    assert done == [evidence(i, PrintOutcome.PRINTED) for i in (1, 2, 3)]
    assert [e.record_id for e in run.seen if is_printed(e)] == [1, 2, 3]
    assert strays


async def test_one_answer_with_a_digit_corrupted_into_another_digit_prints_nothing():
    async with new_sim() as sim, running(sim) as run:
        await run.driver.load(records(1, 2, 3, 4))
        await wait_for(sim, lambda: sim.engine.buffered == 4)
        await polls(sim, 4)
        # "formats in receive buffer" 003 becomes 000 in one answer: no checksum in ZPL can tell.
        sim.faults.inject(Corrupt(offset=len("\x02000,0,0,1218,00"), mask=0x03))
        await polls(sim, 6)
        assert sim.faults.active == ()
        assert not [e for e in run.drain() if is_printed(e)]


class LaggingSim(ZplSim):
    """Answers every ~HS with the status it had `lag` requests earlier: the stream after duplicated answers."""

    def __init__(self, lag: int, **kwargs) -> None:
        super().__init__(formats=[STORED], **kwargs)
        self.history: deque[HostStatus] = deque(maxlen=lag + 1)

    def host_status(self) -> HostStatus:
        self.history.append(super().host_status())
        return self.history[0]


async def test_answers_lagging_their_requests_never_count_labels_sent_meanwhile():
    async with LaggingSim(lag=STALE_WINDOW - 1) as sim, running(sim) as run:
        await run.driver.load(records(1, 2))
        await wait_for(sim, lambda: sim.engine.buffered == 2)
        await polls(sim, 8)
        await run.driver.load(records(3, 4))  # lagging answers still show 2 waiting: 2 of 4 "printed"
        await wait_for(sim, lambda: sim.engine.buffered == 4)
        await polls(sim, 8)
        assert not [e for e in run.drain() if is_printed(e)]
        for _ in range(4):
            sim.product_detect()
        done = await run.take(is_printed, 4)
    assert done == [evidence(i, PrintOutcome.PRINTED) for i in (1, 2, 3, 4)]


async def test_disconnect_mid_answer_ends_run_with_a_transient_error():
    async with new_sim() as sim, running(sim) as run:
        await run.take(status_change)
        sim.faults.inject(Disconnect(after_bytes=10))
        with pytest.raises(TransientDeviceError):
            await run.ended()
        assert not [e for e in run.drain() if is_printed(e)]


async def test_power_cycle_drops_the_link_and_a_new_driver_clears_the_printer():
    sim = ZplSim(formats=[STORED, default_format("R:TEMP.ZPL", [1])])
    async with sim:
        async with running(sim) as run:
            await run.driver.load(records(1, 2))
            await wait_for(sim, lambda: sim.engine.buffered == 2)
            sim.power_cycle()
            with pytest.raises(TransientDeviceError):
                await run.ended()
        assert sim.engine.buffered == 0
        assert set(sim.formats) == {FORMAT}  # DRAM formats are gone, E: survives
        async with running(sim) as run:
            await run.driver.load(records(3))
            await wait_for(sim, lambda: sim.engine.buffered == 1)
            await run.driver.clear()
            await wait_for(sim, lambda: sim.engine.buffered == 0)
            assert sim.product_detect() is None
            assert sim.engine.printing  # a Zebra powers up unpaused


async def test_a_full_printer_holds_the_stream_until_a_label_prints():
    async with ZplSim(formats=[STORED], depth=2) as sim, running(sim, run=False) as run:
        await run.driver.load(records(1, 2, 3))
        await wait_for(sim, lambda: sim.engine.buffered == 2)
        sim.product_detect()
        await wait_for(sim, lambda: sim.engine.buffered == 2 and len(sim.labels) == 3)


async def test_from_options_builds_a_printer_the_driver_prints_on():
    opts = options(fields={"SSCC": "00"}, field_numbers={"SSCC": 3})
    async with from_options(opts) as sim, running(sim, opts) as run:
        assert sim.formats[FORMAT].numbers == (3,)
        await run.driver.load([PrintRecord(9, (("SSCC", "00123"),))])
        await wait_for(sim, lambda: sim.engine.buffered == 1)
        sim.product_detect()
        assert await run.take(is_printed) == [evidence(9, PrintOutcome.PRINTED)]
    assert sim.labels[0].stored


async def test_the_simulator_prints_each_copy_and_ignores_what_it_cannot_parse():
    async with new_sim() as sim:
        host, port = sim.url.removeprefix("socket://").rsplit(":", 1)
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            writer.write(b"junk" + encode_label(FORMAT, [(1, b"X")], quantity=2) + b"~XY^XA^FN1^FH^FD_Z^FS^XZ~HS")
            async with asyncio.timeout(HANG_GUARD_S):
                answer = await reader.readuntil(b"\x03\r\n\x02")
        finally:
            writer.close()
            await writer.wait_closed()
        assert sim.engine.buffered == 2
        assert answer.startswith(b"\x02000,0,0,1218,001,")
        assert sim.ignored == [b"junk", b"~XY", b"^XA^FN1^FH^FD_Z^FS^XZ"]


# -- lifecycle and configuration --------------------------------------------------------------------


async def test_the_driver_is_single_use_and_needs_connect():
    async with new_sim() as sim:
        driver = ZplPrinter(make_context(sim.transport_spec(), ignore), options())
        with pytest.raises(RuntimeError, match="connect"):
            await driver.run()
        with pytest.raises(RuntimeError, match="connect"):
            await driver.load(records(1))
        await driver.connect()
        try:
            with pytest.raises(RuntimeError, match="single-use"):
                await driver.connect()
        finally:
            await driver.close()
            await driver.close()


async def test_cancelling_run_propagates_cancellation():
    async with new_sim() as sim, running(sim) as run:
        await run.take(status_change)
        assert run.task is not None
        run.task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await run.task


def test_registered_under_its_entry_point():
    assert driver_class("printer.zpl") is ZplPrinter
    assert ZplPrinter.role == "printer"


def test_options_refuse_unknown_keys_and_bad_values():
    with pytest.raises(pydantic.ValidationError):
        ZplPrinter.Options.model_validate({"format": "E:CASE.ZPL"})
    with pytest.raises(pydantic.ValidationError, match="ZPL format name"):
        ZplPrinter.Options.model_validate({"format_name": "E:CASE^XZ"})
    with pytest.raises(pydantic.ValidationError, match="DF"):
        ZplPrinter.Options.model_validate({"format_zpl": "^XA^FO1,1^FDx^FS^XZ"})
    with pytest.raises(pydantic.ValidationError, match="exactly one"):
        ZplPrinter.Options.model_validate({"format_zpl": STORED.decode() * 2})
    with pytest.raises(pydantic.ValidationError, match="no \\^FN number for CODE"):
        ZplPrinter.Options.model_validate({"field_numbers": {"OTHER": 1}})
    with pytest.raises(pydantic.ValidationError, match="share"):
        ZplPrinter.Options.model_validate({"fields": {"A": "code", "B": "21"}, "field_numbers": {"A": 1, "B": 1}})
    opts = ZplPrinter.Options.model_validate({"job": "E:CASE.ZPL", "fields": {"A": "code", "B": "21"}})
    assert opts.numbers() == {"A": 1, "B": 2}
    assert opts.default_format() == "E:CASE.ZPL"


def test_other_options_are_refused():
    with pytest.raises(TypeError):
        ZplPrinter(make_context(TransportSpec(url="socket://127.0.0.1:1"), ignore), DriverOptions())

