"""The case-scan station over a real store, the real case scanner and the simulated case camera on a LineWorld."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime

import pytest
import structlog

from drivers.base import DriverContext
from drivers.camera.case_simulated import SimulatedCaseCamera
from drivers.transport.spec import TransportSpec
from edge.aggregation import AggregationError
from edge.aggregation.case_scan import CaseScanner
from edge.aggregation.case_station import CameraOfflineError, CaseScanStation, ReworkReason
from edge.aggregation.service import Aggregation
from edge.config.models import CatalogConfig
from edge.errors import DeviceRejectedError, TransientDeviceError
from edge.gs1.element import build, build_hri, parse
from edge.line.inspection import Attached, RejectImages
from edge.products.load import load_catalog
from edge.registry import driver_class
from edge.serials.batches import BatchService
from edge.serials.ledger import SerialLedger
from edge.serials.states import SerialState
from edge.store import Store
from simulators.camera_render import register_world, unregister_world
from simulators.case_render import CaseDefect, foreign_code
from simulators.printer import Printed
from simulators.world import LineWorld, SimProduct
from tests.conftest import ROOT

TODAY = date(2026, 11, 25)
AT = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
WORLD = "case-station-test"
SMALL = {"width": 1224, "height": 1024}
"""A quarter of the 5 MP frame: a 3 x 4 layer of 4 px modules still fits and decodes in about a millisecond."""


def clock() -> datetime:
    return AT


@dataclass
class Units:
    """A running batch's serials: ids and the code printed on each, commissioned ones first."""

    batch_id: int
    ids: list[int]
    codes: list[str]
    ledger: SerialLedger


async def start_batch(store: Store, *, commissioned: int, printed: int = 0, line: str = "line-1",
                      work_order: str = "WO-1", lot: str = "L2611A") -> Units:
    """An aspirin-500-eu batch (cases of 10) running on line, its first units commissioned, the next only printed."""
    catalog = load_catalog(CatalogConfig(products=ROOT / "config" / "products", markets=ROOT / "config" / "markets"))
    batches = BatchService(SerialLedger(store, line_id=line), catalog, today=lambda: TODAY)
    order = (f"work_order: {work_order}\nproduct: aspirin-500-eu\nlot: \"{lot}\"\nexpiry: 2028-10-31\n"
             f"quantity: 30\nline: {line}\n")
    batch = await batches.import_work_order(order, "wo.yaml", operator="mes")
    await batches.release(batch.id, operator="supervisor")
    await batches.start(batch.id, operator="op")
    rows = await batches.ledger.next_to_print(batch.id, commissioned + printed, device="printer-1")
    ids = [row[0] for row in rows]
    await batches.ledger.move(ids, SerialState.PRINTED, reason="printed", device="printer-1")
    await batches.ledger.move(ids[:commissioned], SerialState.COMMISSIONED, reason="verified", device="camera-1")
    codes = [build([("01", batch.gtin), ("21", serial), ("10", batch.lot), ("17", batch.expiry)])
             for _, serial, _ in rows]
    return Units(batch.id, ids, codes, batches.ledger)


def ship(world: LineWorld, codes: list[str]) -> None:
    """Packs carrying these codes leave the belt for the case packer."""
    for code in codes:
        seq = len(world.shipped) + len(world.reject_bin) + 1
        world.shipped.append(SimProduct(seq, entered=0, printed=Printed(seq, "unit", (("code", code),))))


async def _no_events(_event):
    return None


def camera_for(world_name: str = WORLD, **options) -> SimulatedCaseCamera:
    context = DriverContext(device_id="case-camera", transport=TransportSpec(url="socket://127.0.0.1:1"),
                            events=_no_events, log=structlog.get_logger(), clock=clock)
    return SimulatedCaseCamera(context, SimulatedCaseCamera.Options(world=world_name, **({**SMALL} | options)))


@dataclass
class Line:
    store: Store
    units: Units
    agg: Aggregation
    world: LineWorld
    camera: SimulatedCaseCamera
    attached: Attached
    station: CaseScanStation
    handed: list

    async def containers(self):
        return await self.agg.containers_of_batch(self.units.batch_id)

    async def nothing_aggregated(self) -> bool:
        counters = await self.store.read(lambda conn: conn.execute("SELECT count(*) FROM sscc_counter").fetchone())
        return (await self.containers() == [] and await self.agg.events(self.units.batch_id) == []
                and counters[0] == 0)


@pytest.fixture
async def line(tmp_path):
    store = Store.open(tmp_path / "state", clock=clock)
    world = LineWorld()
    register_world(WORLD, world)
    async with store:
        units = await start_batch(store, commissioned=25, printed=3)
        agg = Aggregation(store, clock=clock)
        camera = camera_for(per_case=10)
        await camera.connect()
        attached = Attached()
        attached.driver = camera
        handed = []

        async def completed(case, operator, reason):
            handed.append((case, operator, reason))

        with CaseScanner() as scanner:
            station = CaseScanStation(agg, units.ledger, scanner, camera=attached, station="case-scan-1",
                                      completed=completed, images=RejectImages(tmp_path / "rework", 50_000_000),
                                      clock=clock)
            yield Line(store, units, agg, world, camera, attached, station, handed)
        await camera.close()
    unregister_world(WORLD)


def hri(code: str) -> str:
    return build_hri(parse(code).pairs, check=False)


# -- the station ------------------------------------------------------------------------------------


async def test_a_clean_case_is_packed_whole_and_handed_to_its_label_station(line):
    ship(line.world, line.units.codes[:10])
    outcome = await line.station.scan_case()
    assert outcome.ok, outcome.message
    case = outcome.case
    assert case is not None
    assert (case.level, case.count, case.capacity, case.state, case.kind) == ("case", 10, 10, "open", "sscc")
    assert line.handed == [(case, None, None)]
    assert set((await line.agg.contents(case.id)).serial_ids) == set(line.units.ids[:10])
    assert set(outcome.codes) == set(line.units.codes[:10])
    events = await line.agg.events(line.units.batch_id)
    assert [(e.action, e.station) for e in events] == [("open", "case-scan-1"), ("pack", "case-scan-1")]
    assert len(events[1].serial_ids) == 10  # one change: the whole case at once

    ship(line.world, line.units.codes[10:20])
    second = await line.station.scan_case()
    assert second.ok, second.message
    assert second.case is not None
    assert second.case.identifier != case.identifier
    assert second.frame == 2

    status = line.station.describe()
    assert (status["mode"], status["camera"], status["scanned"], status["packed"]) == ("case-scan", "connected", 2, 2)
    assert status["rework"] == {}
    assert status["last"]["case"]["identifier"] == second.case.identifier
    assert line.station.current is None
    assert not line.station.rework


@pytest.mark.parametrize(("plan", "reason", "detail"), [
    pytest.param({"defects": {3: CaseDefect.UNREADABLE}}, ReworkReason.TOO_FEW,
                 "9 distinct GS1 code.* 10 expected.*1 pack.* missing or unreadable", id="unreadable"),
    pytest.param({"defects": {0: CaseDefect.MISSING}}, ReworkReason.TOO_FEW, "9 distinct", id="code-missing"),
    pytest.param({"held_back": 1}, ReworkReason.TOO_FEW, "9 distinct", id="pack-missing"),
    pytest.param({"defects": {4: CaseDefect.DUPLICATE}}, ReworkReason.DUPLICATE_IN_VIEW,
                 r"on more than one pack: \(01\)04012345000016\(21\)", id="duplicate"),
    pytest.param({"extra": ["LOT L2611A EXP 10/2028"]}, ReworkReason.NOT_GS1,
                 "not GS1: 'LOT L2611A EXP 10/2028'", id="not-gs1"),
    pytest.param({"defects": {2: CaseDefect.FOREIGN}}, ReworkReason.UNKNOWN_CODE,
                 r"1 of 10 codes are not units of this line: unit \(01\)04012345000016\(21\)[XY].* never issued here",
                 id="foreign"),
])
async def test_a_case_the_camera_cannot_prove_goes_to_rework_and_nothing_is_aggregated(line, plan, reason, detail):
    ship(line.world, line.units.codes[:10])
    line.camera.plan_next(**plan)
    outcome = await line.station.scan_case()
    assert not outcome.ok
    assert outcome.reason is reason
    assert outcome.case is None
    assert outcome.expected == 10
    assert outcome.frame == 1
    assert outcome.message
    assert re.search(detail, outcome.message), outcome.message
    assert list(line.station.rework) == [outcome]
    assert outcome.image is not None
    assert outcome.image.is_file()
    assert line.handed == []
    assert await line.nothing_aggregated()
    assert line.station.describe()["rework"] == {reason.value: 1}


async def test_an_extra_pack_of_another_batch_is_one_too_many(line):
    other = await start_batch(line.store, commissioned=1, line="line-2", work_order="WO-2", lot="L2611B")
    ship(line.world, line.units.codes[:10])
    line.camera.plan_next(extra=[other.codes[0]])
    outcome = await line.station.scan_case()
    assert outcome.reason is ReworkReason.TOO_MANY
    assert "11 distinct GS1 code(s) in view, 10 expected; 1 pack(s) too many" in outcome.message
    assert await line.nothing_aggregated()


async def test_a_held_back_pack_goes_into_the_next_case(line):
    ship(line.world, line.units.codes[:10])
    line.camera.plan_next(held_back=1)
    assert (await line.station.scan_case()).reason is ReworkReason.TOO_FEW
    ship(line.world, line.units.codes[10:19])  # the packer counts the held-back pack into this one
    outcome = await line.station.scan_case()
    assert outcome.ok, outcome.message
    assert outcome.case is not None
    assert line.units.ids[9] in (await line.agg.contents(outcome.case.id)).serial_ids


async def test_units_the_rules_refuse_send_the_case_to_rework_whole(line):
    units = line.units
    first = units.codes[:10]
    ship(line.world, first)
    packed = await line.station.scan_case()
    assert packed.ok
    assert packed.case is not None
    other = await start_batch(line.store, commissioned=1, line="line-2", work_order="WO-2", lot="L2611B")
    before = await line.agg.events(units.batch_id)

    cases = {
        "not commissioned": ([*units.codes[10:19], units.codes[25]], r"is printed: only commissioned units"),
        "already packed": ([*units.codes[10:19], first[0]], rf"is already in case {packed.case.identifier}"),
        "another batch": ([*units.codes[10:19], other.codes[0]],
                          rf"belongs to batch {other.batch_id}, not batch {units.batch_id}"),
    }
    for name, (codes, detail) in cases.items():
        ship(line.world, codes)
        outcome = await line.station.scan_case()
        assert outcome.reason is ReworkReason.REFUSED, name
        assert "nothing was packed" in outcome.message
        assert re.search(detail, outcome.message), outcome.message
        assert len(outcome.codes) == 10
    assert await line.agg.events(units.batch_id) == before
    assert [c.id for c in await line.containers()] == [packed.case.id]
    assert line.handed == [(packed.case, None, None)]
    # The refused cases took no SSCC: the next good case gets the next one in line.
    ship(line.world, units.codes[10:20])
    good = await line.station.scan_case()
    assert good.case is not None
    assert int(good.case.identifier[8:17]) == int(packed.case.identifier[8:17]) + 1
    assert line.station.describe()["rework"] == {"refused": 3}


async def test_a_short_case_is_scanned_against_the_count_the_operator_declares(line):
    ship(line.world, line.units.codes[:7])
    with pytest.raises(AggregationError, match="give that count"):
        await line.station.close_short(operator="op", reason="end of batch")
    with pytest.raises(AggregationError, match="closed short only by an operator, with a reason"):
        await line.station.scan_case(expected=7)
    with pytest.raises(AggregationError, match="holds 1 to 10 units, not 11"):
        await line.station.scan_case(expected=11, operator="op", reason="x")
    assert line.station.scanned == 0  # refused requests look at nothing

    case = await line.station.close_short(operator="op", reason="end of batch", count=7)
    assert (case.count, case.capacity, case.state) == (7, 10, "open")
    assert line.handed == [(case, "op", "end of batch")]
    pack = (await line.agg.events(line.units.batch_id))[-1]
    assert (pack.action, pack.operator) == ("pack", "op")

    ship(line.world, line.units.codes[7:13])  # six packs, the operator said seven
    with pytest.raises(AggregationError, match=r"not packed, it goes to rework \(too-few\): 6 distinct"):
        await line.station.close_short(operator="op", reason="end of batch", count=7)


async def test_a_camera_that_gives_no_frame_sends_the_case_to_rework(line):
    await line.camera.close()  # the link dropped between the session's notice and the trigger
    outcome = await line.station.scan_case()
    assert outcome.reason is ReworkReason.NO_FRAME
    assert "camera gave no frame: the simulated case camera is not connected" in outcome.message
    assert outcome.image is None


async def test_without_a_connected_camera_the_station_says_so(line):
    line.attached.driver = None
    with pytest.raises(CameraOfflineError, match="case station case-scan-1: its camera is not connected"):
        await line.station.scan_case()
    assert line.station.describe()["camera"] == "offline"


async def test_without_a_running_batch_the_case_goes_to_rework(tmp_path):
    store = Store.open(tmp_path / "state", clock=clock)
    world = LineWorld()
    register_world(WORLD, world)
    async with store:
        camera = camera_for()
        await camera.connect()
        attached = Attached()
        attached.driver = camera

        async def completed(case, operator, reason):
            raise AssertionError("nothing is complete without a batch")

        with CaseScanner() as scanner:
            station = CaseScanStation(Aggregation(store, clock=clock), SerialLedger(store, line_id="line-1"),
                                      scanner, camera=attached, station="case-scan-1", completed=completed)
            outcome = await station.scan_case()
        assert outcome.reason is ReworkReason.NO_BATCH
        assert outcome.frame is None
        await camera.close()
    unregister_world(WORLD)


# -- the simulated case camera ---------------------------------------------------------------------


@pytest.fixture
def world():
    world = LineWorld()
    register_world(WORLD, world)
    yield world
    unregister_world(WORLD)


def codes(count: int, start: int = 0) -> list[str]:
    return [build([("01", "04012345000016"), ("21", f"SN{n:010d}"), ("10", "L1"), ("17", "281031")])
            for n in range(start, start + count)]


async def test_the_case_camera_shows_the_packs_that_reached_the_packer_since_the_last_capture(world):
    camera = camera_for(rows=2, cols=3)
    ship(world, codes(2))  # in cases before the camera looked
    await camera.connect()
    ship(world, codes(8, 2))
    with CaseScanner() as scanner:
        frame = await camera.capture()
        assert frame.image.shape == (1024, 1224)
        assert (frame.seq, frame.product, frame.at) == (1, None, AT)
        assert camera.last is not None
        assert camera.last.codes == tuple(codes(6, 2))  # the layer holds six; two wait for the next case
        assert {s.text_str for s in scanner.scan(frame.image).symbols} == set(codes(6, 2))
        frame = await camera.capture()
        assert camera.last.codes == tuple(codes(2, 8))
        assert {s.text_str for s in scanner.scan(frame.image).symbols} == set(codes(2, 8))
        await camera.capture()
        assert camera.last.codes == ()
    await camera.close()


async def test_an_unconfirmed_reject_rides_on_into_the_case(world):
    camera = camera_for(per_case=3)
    await camera.connect()
    good, bad = codes(3), codes(1, 100)[0]
    ship(world, good[:1])
    escaped = SimProduct(2, entered=world.encoder, printed=Printed(2, "unit", (("code", bad),)), rejected=True,
                         confirmed=False)
    world.reject_bin.append(escaped)
    world.escaped.append(escaped)
    await camera.capture()
    assert camera.last is not None
    assert camera.last.codes == (good[0],)  # still between the reject station and the belt's end
    world.encoder += world.geometry.exit
    ship(world, good[1:])
    await camera.capture()
    assert camera.last.codes == (bad, good[1], good[2])  # in belt order
    await camera.close()


async def test_planned_faults_apply_to_the_next_capture_only(world):
    camera = camera_for()
    await camera.connect()
    layer = codes(4)
    ship(world, layer)
    camera.plan_next(defects={0: CaseDefect.FOREIGN, 1: CaseDefect.UNREADABLE}, extra=["NOT GS1"])
    await camera.capture()
    assert camera.last is not None
    assert camera.last.readable == (foreign_code(layer[0]), None, layer[2], layer[3], "NOT GS1")
    ship(world, layer)
    await camera.capture()
    assert camera.last.readable == tuple(layer)
    with pytest.raises(ValueError, match="cells"):
        camera.plan_next(defects={12: CaseDefect.MISSING})
    with pytest.raises(ValueError, match="negative"):
        camera.plan_next(held_back=-1)
    ship(world, codes(12))
    camera.plan_next(extra=["ONE MORE"])
    with pytest.raises(DeviceRejectedError, match="12 packs and 1 extra ones does not fit the 3 x 4 layer"):
        await camera.capture()
    await camera.capture()  # the packs stayed at the packer
    assert len(camera.last.codes) == 12
    await camera.close()


async def test_the_case_camera_needs_its_world_and_valid_options():
    camera = camera_for("nowhere")
    with pytest.raises(TransientDeviceError, match="nowhere"):
        await camera.connect()
    with pytest.raises(TransientDeviceError, match="not connected"):
        await camera.capture()
    await camera.close()
    with pytest.raises(ValueError, match="per_case 13 does not fit a layer of 3 x 4"):
        SimulatedCaseCamera.Options(per_case=13)
    with pytest.raises(ValueError, match="extra"):
        SimulatedCaseCamera.Options.model_validate({"world": "x", "fps": 5})
    assert driver_class("camera.simulated-case") is SimulatedCaseCamera
