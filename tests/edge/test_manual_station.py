"""The manual packing station over the real chain: scanner simulator → wedge driver → station → store.

The driver runs under its real supervisor, over a loopback socket (and once over a pseudo-terminal).

Each scan is awaited until the station has handled it (a counter the scanner's event sink bumps), so nothing
here depends on timing; the only timeouts are guards against a hang.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import pytest
import structlog

from drivers.base import CodeRead, DeviceEvent, DeviceGarbage, DeviceInfo, DriverContext
from drivers.scanner.wedge import WedgeScanner
from drivers.transport.spec import SerialSettings
from edge.aggregation import AggregationError
from edge.aggregation.manual import MESSAGES_KEPT, ManualStation, StationMessage
from edge.aggregation.service import Aggregation
from edge.backoff import Backoff
from edge.config.models import CatalogConfig
from edge.gs1.element import build
from edge.products.load import load_catalog
from edge.serials.batches import BatchService
from edge.serials.ledger import SerialLedger
from edge.serials.states import SerialState
from edge.store import Store
from edge.supervisor import DeviceSupervisor
from simulators.scanner_wedge import WedgeScannerSim
from tests.conftest import ROOT
from tests.edge.test_aggregation_service import TODAY, running_batch

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

    from edge.aggregation.ops import ContainerRow

HANG_GUARD_S = 10.0  # only a guard against a hang; nothing here measures time
STATION = "bench-1"
DEVICE = "scanner-bench-1"
GTIN = "04012345000016"
LOT = "L2611A"
EXPIRY = "281031"  # 2028-10-31, the work order's expiry


def clock() -> datetime:
    return datetime(2026, 11, 25, 10, 0, tzinfo=UTC)


def unit_code(serial: str, *, gtin: str = GTIN) -> bytes:
    """The unit's code as a scanner reads it off the carton: GS1 DataMatrix, FNC1 as GS."""
    return build([("01", gtin), ("17", EXPIRY), ("10", LOT), ("21", serial)], symbology="]d2").encode()


def case_label(sscc: str) -> bytes:
    """What a scanner reads off a case label: SSCC, content GTIN and count, lot and expiry."""
    return build([("00", sscc), ("02", GTIN), ("37", "10"), ("10", LOT), ("17", EXPIRY)], symbology="]d2").encode()


async def serials_of(store: Store, ids: list[int]) -> list[str]:
    def read(conn):
        found = dict(conn.execute(
            "SELECT id, serial FROM serial WHERE id IN (SELECT value FROM json_each(?))", (json.dumps(ids),)
        ).fetchall())
        return [found[i] for i in ids]

    return await store.read(read)


class SignallingScanner(WedgeScanner):
    """The real wedge driver, telling the test once its link is open (a supervisor signals nothing then)."""

    def __init__(self, context: DriverContext, options: WedgeScanner.Options, *, online: asyncio.Event) -> None:
        super().__init__(context, options)
        self._online = online

    async def connect(self) -> DeviceInfo:
        info = await super().connect()
        self._online.set()
        return info


@dataclass
class Bench:
    """The running chain and what the label station was handed."""

    store: Store
    agg: Aggregation
    batches: BatchService
    batch: int
    ids: list[int]
    codes: list[bytes]
    sim: WedgeScannerSim
    station: ManualStation
    handed: list[tuple[ContainerRow, str | None, str | None]] = field(default_factory=list)
    close_when_handed: bool = False
    hand_over_fails: bool = False
    handled: int = 0
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def sink(self, event: DeviceEvent) -> None:
        """The scanner's event sink: the station, then a count the test waits on."""
        await self.station.on_event(event)
        self.handled += 1
        self.changed.set()

    async def completed(self, case: ContainerRow, operator: str | None, reason: str | None) -> None:
        """A stand-in for the label station: records the hand-off, and closes the case when asked to."""
        if self.hand_over_fails:
            raise RuntimeError("label printer out of labels")
        self.handed.append((case, operator, reason))
        if self.close_when_handed:
            await self.agg.close_container(case.id, operator=operator, partial_reason=reason, station="labeller")

    def new_station(self, **kwargs) -> ManualStation:
        return ManualStation(self.agg, self.batches.ledger, station=STATION, completed=self.completed, clock=clock,
                             **kwargs)

    async def scan(self, code: bytes | str) -> StationMessage:
        """Scan code and wait until the station has handled it; return the station's last message."""
        target = self.handled + 1
        await self.sim.scan(code.encode("latin-1") if isinstance(code, str) else code)
        async with asyncio.timeout(HANG_GUARD_S):
            while self.handled < target:
                self.changed.clear()
                await self.changed.wait()
        return self.station.messages[-1]

    async def accepted(self, code: bytes | str) -> StationMessage:
        message = await self.scan(code)
        assert message.outcome == "accepted", message.text
        return message

    async def refused(self, code: bytes | str, match: str) -> StationMessage:
        message = await self.scan(code)
        assert message.outcome == "refused", message.text
        assert match in message.text, message.text
        return message

    async def actions(self) -> list[tuple[str, str | None, str | None, str | None]]:
        """The batch's aggregation log, as (action, operator, reason, station)."""
        return [(e.action, e.operator, e.reason, e.station) for e in await self.agg.events(self.batch)]


@contextlib.asynccontextmanager
async def bench(tmp_path: Path, *, transport: str = "tcp", units: int = 25) -> AsyncIterator[Bench]:
    """A running aspirin batch with `units` commissioned units, and a manual station fed by a real scanner."""
    store = Store.open(tmp_path / "state", clock=clock)
    async with store:
        batch, ids, batches = await running_batch(store, units)
        agg = Aggregation(store, clock=clock)
        codes = [unit_code(serial) for serial in await serials_of(store, ids)]
        async with WedgeScannerSim(transport=transport) as sim:
            b = Bench(store, agg, batches, batch, ids, codes, sim, station=None)  # type: ignore[arg-type]
            b.station = b.new_station()
            log = structlog.get_logger().bind(device=DEVICE)

            online = asyncio.Event()

            def driver() -> WedgeScanner:
                context = DriverContext(device_id=DEVICE, transport=sim.transport_spec(SerialSettings(baudrate=9600)),
                                        events=b.sink, log=log, clock=clock)
                return SignallingScanner(context, WedgeScanner.Options(), online=online)

            supervisor = DeviceSupervisor(DEVICE, driver, backoff=Backoff(initial_s=0.01, max_s=0.01),
                                          connect_timeout_s=5.0, log=log)
            task = asyncio.create_task(supervisor.run())
            try:
                async with asyncio.timeout(HANG_GUARD_S):
                    # Only once the driver has opened its end: opening a serial port flushes what waited in it.
                    await online.wait()
                    await sim.wait_for_connection()
                yield b
            finally:
                task.cancel()
                await asyncio.wait([task])
            assert supervisor.status.failures == 0, supervisor.status.last_error  # the scanner kept working


async def sign_in(b: Bench, name: str = "anna") -> None:
    message = await b.accepted(f"#OPERATOR {name}")
    assert f"{name} signed in" in message.text


# -- operators ------------------------------------------------------------------------------------


async def test_nothing_is_packed_or_removed_before_an_operator_signs_in(tmp_path):
    async with bench(tmp_path) as b:
        await b.refused(b.codes[0], "no operator signed in: scan your badge (#OPERATOR <name>) before adding units")
        await b.refused("#REMOVE", "no operator signed in")
        await b.refused("#CLOSE end of shift", "no operator signed in")
        await b.refused("#LOGOUT", "nobody is signed in")
        await b.refused("#OPERATOR", "the badge carries no name")
        assert [a for a, *_ in await b.actions()] == []

        await sign_in(b)
        await b.accepted(b.codes[0])
        await b.accepted("#REMOVE")
        await b.accepted("#LOGOUT")
        assert b.station.operator is None
        assert b.station.mode == "add"  # the next operator starts afresh
        await b.refused(b.codes[0], "no operator signed in: scan your badge (#OPERATOR <name>) before adding units")
        assert (await b.agg.parent_of_serial(b.ids[0])) is not None  # still packed: nothing was removed

        # A badge printed as Code 128 arrives with its symbology identifier; another operator takes over.
        message = await b.accepted("]C0#operator ben")
        assert message.text == "ben signed in; mode ADD"
        message = await b.accepted("#OPERATOR carla")
        assert message.text == "carla signed in (took over from ben); mode ADD"
        assert message.operator == "carla"
        assert [a for a, *_ in await b.actions()] == ["open", "pack"]
        assert (await b.actions())[1] == ("pack", "anna", None, STATION)


async def test_unknown_commands_and_a_custom_prefix(tmp_path):
    async with bench(tmp_path) as b:
        await sign_in(b)
        await b.refused("#PACKALL", "unknown command #PACKALL: this station knows #OPERATOR <name>, #LOGOUT")
        b.station = b.new_station(command_prefix="$$")
        await b.accepted("$$OPERATOR anna")
        await b.refused("#OPERATOR ben", "is not a GS1 code")  # no longer a command, and not GS1 data either
        await b.refused("$$FOO", "this station knows $$OPERATOR <name>, $$LOGOUT, $$ADD")
    with pytest.raises(ValueError, match="command prefix '0'"):
        b.new_station(command_prefix="0")
    with pytest.raises(ValueError, match="command prefix ''"):
        b.new_station(command_prefix="")


# -- adding ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("transport", ["tcp", "pty"])
async def test_add_until_full_hands_the_case_to_the_label_station(tmp_path, transport):
    async with bench(tmp_path, transport=transport) as b:
        await sign_in(b)
        first = await b.accepted(b.codes[0])
        case = b.station.current
        assert case is not None
        assert first.text.endswith(f"packed into {case.name} (a new case): 1 of 10")
        for n, code in enumerate(b.codes[1:9], start=2):
            message = await b.accepted(code)
            assert message.text.endswith(f": {n} of 10")
        assert b.station.describe()["count"] == 9
        assert b.handed == []

        last = await b.accepted(b.codes[9])
        assert last.text.endswith(f"packed into {case.name}: full (10 of 10): handed to the label station")
        assert b.station.current is None
        [(full, operator, reason)] = b.handed
        assert (full.id, full.count, full.state, operator, reason) == (case.id, 10, "open", None, None)
        assert (await b.agg.contents(case.id)).serial_ids == tuple(b.ids[:10])

        # The next unit starts a new case with a fresh SSCC.
        await b.accepted(b.codes[10])
        second = b.station.current
        assert second is not None
        assert second.identifier != case.identifier
        assert second.count == 1
        actions = await b.actions()
        assert [a for a, *_ in actions] == ["open", *["pack"] * 10, "open", "pack"]
        assert {(op, st) for _, op, _, st in actions} == {("anna", STATION)}


async def test_every_refused_scan_says_why_and_the_scanner_keeps_working(tmp_path):
    async with bench(tmp_path) as b:
        # Units that are not commissioned: printed (still waiting for the camera) ...
        [(printed_id, printed_serial, _)] = await b.batches.ledger.next_to_print(b.batch, 1, device="printer-1")
        # ... and a unit of a batch running on another line (same product, same store).
        other = BatchService(SerialLedger(b.store, line_id="line-2"), load_catalog(CatalogConfig(
            products=ROOT / "config" / "products", markets=ROOT / "config" / "markets")), today=lambda: TODAY)
        order = await other.import_work_order(
            "work_order: WO-2\nproduct: aspirin-500-eu\nlot: \"L2611B\"\nexpiry: 2028-10-31\nquantity: 5\n"
            "line: line-2\n", "wo2.yaml", operator="mes")
        await other.release(order.id, operator="supervisor")
        await other.start(order.id, operator="op")
        [(foreign_id, foreign_serial, _)] = await other.ledger.next_to_print(order.id, 1, device="printer-9")
        await other.ledger.move([foreign_id], SerialState.PRINTED, reason="printed", device="printer-9")
        await other.ledger.move([foreign_id], SerialState.COMMISSIONED, reason="verified", device="camera-9")
        # A unit already in a case packed at another station.
        elsewhere = await b.agg.open_container(b.batch, "case", station="case-packer")
        await b.agg.pack(elsewhere.id, serial_ids=[b.ids[5]], station="case-packer")

        await sign_in(b)
        await b.refused(unit_code(printed_serial), "is sent: only commissioned units are aggregated")
        await b.refused(unit_code(foreign_serial),
                        f"belongs to batch {order.id}, not batch {b.batch}: batches are not mixed")
        await b.refused(b.codes[5], f"is already in {elsewhere.name}: a unit is in one container at most")
        await b.refused(unit_code("NEVERISSUED1"),
                        f"unit (01){GTIN}(21)NEVERISSUED1 is not known to this line: it was never issued here")
        await b.refused("HELLO WORLD", "scan 'HELLO WORLD' is not a GS1 code")
        await b.refused(b"\x00\xff\xfe\x1b[2J\x7f", "is not a GS1 code")
        await b.refused(build([("01", GTIN), ("10", LOT)]), "is not a unit code: it needs a GTIN (01) and a serial")
        assert b.station.current is None  # a refused first unit opens no case and uses up no SSCC
        assert [a for a, *_ in await b.actions()] == ["open", "pack"]  # only the other station's
        assert printed_id not in (await b.agg.contents(elsewhere.id)).serial_ids

        # Typed by hand from the carton's text: accepted, into a new case.
        serial = (await serials_of(b.store, [b.ids[0]]))[0]
        message = await b.accepted(f"(01){GTIN}(17){EXPIRY}(10){LOT}(21){serial}")
        assert message.text.startswith(f"unit (01){GTIN}(21){serial} packed into case ")
        assert b.station.current is not None
        assert b.station.current.identifier != elsewhere.identifier
        # Nothing refused reached the driver's supervisor as an error (checked when the bench closes).
        refusals = [m for m in b.station.messages if m.outcome == "refused"]
        assert len(refusals) == 7
        assert all(m.scan for m in refusals)
        assert refusals[3].scan == unit_code("NEVERISSUED1").decode().replace("\x1d", "<GS>")


async def test_a_full_case_whose_hand_off_failed_is_handed_again_by_scanning_its_label(tmp_path):
    async with bench(tmp_path) as b:
        await sign_in(b)
        for code in b.codes[:9]:
            await b.accepted(code)
        case = b.station.current
        assert case is not None
        b.hand_over_fails = True
        notice = await b.scan(b.codes[9])
        assert notice.outcome == "notice"
        assert "the label station did not take" in notice.text
        assert "label printer out of labels" in notice.text
        assert list(b.station.messages)[-2].text.endswith("full (10 of 10)")
        assert b.station.current is None
        b.hand_over_fails = False
        message = await b.accepted(case_label(case.identifier))
        assert message.text == f"{case.name} is full (10 of 10): handed to the label station"
        assert [(c.id, c.count) for c, _, _ in b.handed] == [(case.id, 10)]


# -- removing -------------------------------------------------------------------------------------


async def test_remove_by_scanning_the_unit_with_and_without_a_reason(tmp_path):
    async with bench(tmp_path) as b:
        await sign_in(b)
        for code in b.codes[:4]:
            await b.accepted(code)
        case = b.station.current
        assert case is not None
        message = await b.accepted("#REMOVE")
        assert message.text == "mode REMOVE: the station removes scanned units from their case"
        assert b.station.describe()["mode"] == "remove"

        message = await b.accepted(b.codes[1])
        assert message.text.endswith(f"removed from {case.name}: 3 of 10 left; reason "
                                     f"'removed at manual station {STATION}'")
        assert b.station.describe()["count"] == 3
        await b.accepted("#REASON carton dented")
        message = await b.accepted(b.codes[2])
        assert message.text.endswith("2 of 10 left; reason 'carton dented'")
        await b.refused(b.codes[2], "is in no container: nothing to remove")
        await b.refused(b.codes[20], "is in no container: nothing to remove")
        await b.refused(case_label(case.identifier), "is a case label: in REMOVE mode scan the units to take out")
        await b.accepted("#REASON")  # cleared: back to the station's own reason
        assert b.station.describe()["removal_reason"] == f"removed at manual station {STATION}"

        actions = await b.actions()
        assert actions[-2:] == [("unpack", "anna", f"removed at manual station {STATION}", STATION),
                                ("unpack", "anna", "carton dented", STATION)]
        assert (await b.agg.contents(case.id)).serial_ids == (b.ids[0], b.ids[3])

        # Back to ADD: a replacement goes into the same case.
        await b.accepted("#ADD")
        await b.accepted(b.codes[10])
        assert b.station.current is not None
        assert (b.station.current.id, b.station.current.count) == (case.id, 3)


async def test_removing_from_a_closed_case_reopens_it_and_taking_it_up_again_refills_it(tmp_path):
    async with bench(tmp_path) as b:
        b.close_when_handed = True  # the label station prints, verifies and closes
        await sign_in(b)
        for code in b.codes[:10]:
            await b.accepted(code)
        [(case, _, _)] = b.handed
        assert (await b.agg.container(case.id)).state == "closed"
        await b.refused(case_label(case.identifier), f"{case.name} is closed: reopen it through rework (the HMI)")

        await b.accepted("#REMOVE")
        await b.accepted("#REASON tablet count wrong")
        message = await b.accepted(b.codes[4])
        assert message.text.endswith(f"removed from {case.name} (reopened: it was closed): 9 of 10 left; reason "
                                     "'tablet count wrong'")
        assert b.station.current is None  # removing does not take the case up

        await b.accepted("#ADD")
        message = await b.accepted(case_label(case.identifier))
        assert message.text == f"working on {case.name} again (9 of 10)"
        await b.accepted(b.codes[10])
        assert [(c.id, c.count) for c, _, _ in b.handed] == [(case.id, 10), (case.id, 10)]
        assert (await b.agg.container(case.id)).state == "closed"


# -- closing short and taking a case up -----------------------------------------------------------


async def test_close_short_by_command_and_through_the_api(tmp_path):
    async with bench(tmp_path) as b:
        await sign_in(b)
        await b.refused("#CLOSE end of batch", "no case is being built at bench-1: nothing to close")
        for code in b.codes[:4]:
            await b.accepted(code)
        case = b.station.current
        assert case is not None
        await b.refused("#CLOSE", "closing a case short needs a reason: scan #CLOSE <reason>")
        message = await b.accepted("#CLOSE end of batch")
        assert message.text == f"{case.name} (4 of 10) closed short by anna (end of batch): handed to the label station"
        assert b.station.current is None
        [(short, operator, reason)] = b.handed
        assert (short.id, short.count, operator, reason) == (case.id, 4, "anna", "end of batch")

        # From the HMI: the same, and the same refusals as errors.
        await b.accepted(b.codes[4])
        with pytest.raises(AggregationError, match="needs an operator and a reason"):
            await b.station.close_short(operator="ben", reason=" ")
        case = await b.station.close_short(operator="ben", reason="line stop")
        assert b.handed[-1][1:] == ("ben", "line stop")
        assert case.count == 1
        with pytest.raises(AggregationError, match="nothing to close"):
            await b.station.close_short(operator="ben", reason="line stop")


async def test_a_failed_close_short_keeps_the_case_so_closing_again_retries(tmp_path):
    async with bench(tmp_path) as b:
        await sign_in(b)
        await b.accepted(b.codes[0])
        b.hand_over_fails = True
        message = await b.refused("#CLOSE end of batch", "the station could not act on this scan (RuntimeError: "
                                  "label printer out of labels)")
        assert message.outcome == "refused"
        assert b.station.current is not None
        b.hand_over_fails = False
        await b.accepted("#CLOSE end of batch")
        assert [(c.count, op, r) for c, op, r in b.handed] == [(1, "anna", "end of batch")]


async def test_an_open_case_is_taken_up_again_by_its_sscc(tmp_path):
    async with bench(tmp_path) as b:
        await sign_in(b)
        for code in b.codes[:3]:
            await b.accepted(code)
        half = b.station.current
        assert half is not None
        pallet = await b.agg.open_container(b.batch, "pallet")

        # The bench PC restarted: a fresh station knows no case; the operator scans the half-built one's label.
        b.station = b.new_station()
        await sign_in(b, "ben")
        await b.refused(case_label("001234567000000000"), "no container is identified by 001234567000000000")
        await b.refused(case_label(pallet.identifier), f"{pallet.name} is a pallet: this station builds cases")
        message = await b.accepted(case_label(half.identifier))
        assert message.text == f"working on {half.name} again (3 of 10)"
        assert b.station.current is not None
        assert b.station.current.id == half.id
        message = await b.accepted(case_label(half.identifier))
        assert message.text == f"already building {half.name} (3 of 10)"
        other = await b.agg.open_container(b.batch, "case", station="elsewhere")
        await b.refused(case_label(other.identifier), f"{half.name} is being built here: fill it or close it short")

        for code in b.codes[3:10]:
            await b.accepted(code)
        [(full, operator, reason)] = b.handed
        assert (full.id, full.count, operator, reason) == (half.id, 10, None, None)
        packers = [op for action, op, _, _ in await b.actions() if action == "pack"]
        assert packers == ["anna"] * 3 + ["ben"] * 7


# -- state, history, and the event sink contract ----------------------------------------------------


async def test_describe_is_json_and_the_history_is_bounded(tmp_path):
    async with bench(tmp_path) as b:
        assert b.station.describe() == {
            "station": STATION, "mode": "add", "operator": None,
            "removal_reason": f"removed at manual station {STATION}", "case": None, "count": 0, "capacity": None,
            "message": None,
        }
        await sign_in(b)
        await b.accepted(b.codes[0])
        state = json.loads(json.dumps(b.station.describe()))
        assert (state["operator"], state["count"], state["capacity"]) == ("anna", 1, 10)
        assert state["case"]["identifier"] == b.station.current.identifier
        assert state["message"]["outcome"] == "accepted"
        assert state["message"]["at"] == "2026-11-25T10:00:00.000000Z"
    for _ in range(MESSAGES_KEPT + 5):
        await b.station.on_event(CodeRead(device_id=DEVICE, at=clock(), data=b"#NOPE"))
    assert len(b.station.messages) == MESSAGES_KEPT


async def test_other_events_are_ignored_and_cancellation_is_never_swallowed(tmp_path):
    store = Store.open(tmp_path / "state", clock=clock)
    async with store:
        _, ids, batches = await running_batch(store, 10)
        agg = Aggregation(store, clock=clock)
        [serial] = await serials_of(store, ids[:1])
        started = asyncio.Event()

        async def stuck(case, operator, reason):
            started.set()
            await asyncio.Event().wait()

        station = ManualStation(agg, batches.ledger, station=STATION, completed=stuck, clock=clock)
        await station.on_event(DeviceGarbage(device_id=DEVICE, at=clock(), data=b"\xff" * 10, reason="too long"))
        assert list(station.messages) == []
        await station.on_event(CodeRead(device_id=DEVICE, at=clock(), data=b"#OPERATOR anna"))
        for serial_id in ids[1:]:  # nine of ten packed directly; the tenth, scanned, fills the case
            if station.current is None:
                await station.on_event(CodeRead(device_id=DEVICE, at=clock(), data=unit_code(
                    (await serials_of(store, [serial_id]))[0])))
            else:
                await agg.pack(station.current.id, serial_ids=[serial_id])
        task = asyncio.create_task(station.on_event(CodeRead(device_id=DEVICE, at=clock(), data=unit_code(serial))))
        async with asyncio.timeout(HANG_GUARD_S):
            await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
