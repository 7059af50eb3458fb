"""ModbusLineIo against PlcSim over loopback: tracking, verdicts, watchdog, run coil, faults, a standard client.

The belt moves only when a test advances the world; the driver polls only when a test lets it (its injected
sleep is a gate), so "three products pass between two polls" is exact, not a matter of timing.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any

import pydantic
import pytest
import structlog
from pymodbus.client import ModbusTcpClient
from pymodbus.constants import ExcCodes

from drivers.base import DeviceEvent, DeviceInfo, DriverContext
from drivers.plc.base import LineIo, LineIoStatus, ProductAt, ProductsMissed, RejectOutcome, StackLight, Station
from drivers.plc.modbus import ModbusLineIo
from drivers.plc.register_map import DEFAULT_MAP_PATH, RegisterMap, Verdict, load_register_map
from drivers.transport.spec import TransportSpec
from edge.errors import DeviceRejectedError, ProtocolError, TransientDeviceError
from simulators.plc import PlcSim, from_options
from simulators.world import Geometry, LineWorld

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

AT = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
DEVICE = "plc-1"
PITCH = Geometry().pitch

# Only a guard against a hang turning into a 60 s pytest-timeout; nothing here measures time.
HANG_GUARD_S = 10.0


def map_with(**changes: Any) -> RegisterMap:
    """The default map with some sections replaced, e.g. verdicts={"address": 200, "entries": 4}."""
    data = load_register_map().model_dump(mode="json")
    data.update(changes)
    return RegisterMap.model_validate(data)


class PollGate:
    """The driver's sleep: each call marks one finished poll and parks the driver until the test lets it poll again."""

    def __init__(self) -> None:
        self.polls = 0
        self._parked = asyncio.Event()
        self._go = asyncio.Event()

    async def sleep(self, _seconds: float) -> None:
        self.polls += 1
        self._go.clear()
        self._parked.set()
        await self._go.wait()

    async def poll(self, times: int = 1) -> None:
        """Let the driver poll times more, and return when the last of those polls has delivered its events."""
        async with asyncio.timeout(HANG_GUARD_S):
            await self._parked.wait()
            for _ in range(times):
                self._parked.clear()
                self._go.set()
                await self._parked.wait()

    def release(self) -> None:
        """Let the parked driver go on without waiting for anything."""
        self._go.set()


@dataclass
class Running:
    driver: ModbusLineIo
    gate: PollGate
    task: asyncio.Task[None]
    events: list[DeviceEvent] = field(default_factory=list)

    def of(self, kind: type[DeviceEvent]) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]

    def at(self, station: Station) -> list[int]:
        return [e.product for e in self.of(ProductAt) if e.station is station]

    def outcome(self, product: int) -> RejectOutcome:
        (found,) = [e for e in self.of(RejectOutcome) if e.product == product]
        return found

    async def ended(self) -> None:
        """Wait for run() to end and re-raise what ended it."""
        async with asyncio.timeout(HANG_GUARD_S):
            await self.task


def make_context(
    spec: TransportSpec, events: list[DeviceEvent], sleep: Any = asyncio.sleep, **timeouts: float
) -> DriverContext:
    async def sink(event: DeviceEvent) -> None:
        events.append(event)

    return DriverContext(
        device_id=DEVICE,
        transport=spec,
        events=sink,
        log=structlog.get_logger().bind(device=DEVICE),
        clock=lambda: AT,
        sleep=sleep,
        **timeouts,
    )


def options(**given: Any) -> ModbusLineIo.Options:
    given.setdefault("poll_interval_s", 0.002)
    given.setdefault("heartbeat_interval_s", 0.002)
    return ModbusLineIo.Options(**given)


@contextlib.asynccontextmanager
async def running(
    sim: PlcSim, opts: ModbusLineIo.Options | None = None, *, after: ModbusLineIo | None = None, **timeouts: float
) -> AsyncIterator[Running]:
    events: list[DeviceEvent] = []
    gate = PollGate()
    driver = ModbusLineIo(make_context(sim.transport_spec(), events, gate.sleep, **timeouts), opts or options())
    if after is not None:
        driver.resume_after(after)
    try:
        assert await driver.connect() == DeviceInfo(model="Modbus TCP line PLC (Lineside register map)")
        task = asyncio.create_task(driver.run())
        try:
            run = Running(driver, gate, task, events)
            await gate.poll(0)
            yield run
        finally:
            task.cancel()
            await asyncio.wait([task])
            if not task.cancelled():
                task.exception()  # already checked by the test, or irrelevant to it
    finally:
        await driver.close()


async def advance_and_poll(run: Running, world: LineWorld, counts: int) -> None:
    world.advance(counts)
    await run.gate.poll()


# --- tracking ---


async def test_every_product_is_reported_once_per_station_in_order_when_three_pass_between_polls():
    world = LineWorld()
    async with PlcSim(world=world) as sim, running(sim) as run:
        for _ in range(12):
            await advance_and_poll(run, world, 3 * PITCH)
    printed = [p.seq for p in (*world.products, *world.shipped, *world.reject_bin)]
    assert run.at(Station.PRINTER) == sorted(printed) == list(range(1, len(printed) + 1))
    assert run.at(Station.CAMERA) == list(range(1, len(run.at(Station.CAMERA)) + 1))
    reached_reject = sorted(p.seq for p in (*world.shipped, *world.reject_bin))
    assert run.at(Station.REJECT) == reached_reject
    assert [e.product for e in run.of(RejectOutcome)] == reached_reject
    assert len(reached_reject) >= 20
    assert run.of(ProductsMissed) == []
    g = world.geometry
    offsets = {Station.PRINTER: 0, Station.CAMERA: g.camera, Station.REJECT: g.reject}
    for event in run.of(ProductAt):
        product = world.product(event.product)
        assert product is not None
        assert event.encoder == product.entered + offsets[event.station]
    # No verdicts were written: reject unless proven good.
    assert all(e.rejected and e.confirmed for e in run.of(RejectOutcome))


async def test_more_products_than_the_ring_holds_between_polls_are_reported_as_missed():
    world = LineWorld()
    async with PlcSim(world=world) as sim, running(sim) as run:
        await advance_and_poll(run, world, 12 * PITCH)  # 12 products pass the printer; its ring holds 8
        await advance_and_poll(run, world, PITCH)
    assert run.of(ProductsMissed)[0] == ProductsMissed(
        device_id=DEVICE, at=AT, station=Station.PRINTER, first=1, last=4
    )
    assert run.at(Station.PRINTER) == list(range(5, 14))
    assert [e.station for e in run.of(ProductsMissed)] == [Station.PRINTER]
    assert run.at(Station.CAMERA) == list(range(1, len(run.at(Station.CAMERA)) + 1))


async def test_products_seen_before_connect_are_not_reported_again():
    world = LineWorld()
    async with PlcSim(world=world) as sim:
        world.advance(3 * PITCH)
        async with running(sim) as run:
            await advance_and_poll(run, world, PITCH)
    assert run.at(Station.PRINTER) == [4]
    assert run.of(ProductsMissed) == []


async def test_a_new_link_reports_what_the_lost_one_had_not_and_a_restarted_plc_starts_afresh():
    world = LineWorld()
    async with PlcSim(world=world) as sim:
        async with running(sim) as lost:
            await advance_and_poll(lost, world, 2 * PITCH)
        world.advance(3 * PITCH)  # the belt runs on while no link polls
        async with running(sim, after=lost.driver) as back:
            await advance_and_poll(back, world, 0)
    assert lost.at(Station.PRINTER) == [1, 2]
    assert back.at(Station.PRINTER) == [3, 4, 5]
    assert back.of(ProductsMissed) == []
    async with PlcSim(world=LineWorld()) as restarted, running(restarted, after=back.driver) as fresh:
        await advance_and_poll(fresh, restarted.world, PITCH)
    assert fresh.at(Station.PRINTER) == [1]  # its counters went back: nothing to resume


# --- verdicts ---


async def reach(run: Running, world: LineWorld, station: Station, product: int) -> None:
    """Step the belt until product was reported at station."""
    async with asyncio.timeout(HANG_GUARD_S):
        while product not in run.at(station):
            await advance_and_poll(run, world, PITCH // 2)


async def test_a_good_verdict_in_time_passes_none_or_a_late_one_rejects():
    world = LineWorld()
    async with PlcSim(world=world) as sim, running(sim) as run:
        await reach(run, world, Station.CAMERA, 1)
        await run.driver.good(1)
        await run.driver.good(1)  # idempotent
        await reach(run, world, Station.REJECT, 3)
        await run.driver.good(3)  # too late: product 3 is already in the bin
        await reach(run, world, Station.REJECT, 4)
    first = world.product(1)
    assert first is not None
    encoder = first.entered + world.geometry.reject
    assert run.outcome(1) == RejectOutcome(
        device_id=DEVICE, at=AT, product=1, rejected=False, confirmed=False, encoder=encoder
    )
    assert run.outcome(2).rejected
    assert run.outcome(3).rejected
    assert [p.seq for p in world.reject_bin] == [2, 3, 4]
    assert 1 in [p.seq for p in (*world.products, *world.shipped)]


async def test_the_verdict_ring_never_applies_a_verdict_to_another_product():
    # Four slots: products 1, 5 and 9 share slot 1. The entry names its product, so the slot alone passes nobody.
    world = LineWorld()
    opts = options(map=map_with(verdicts={"address": 200, "entries": 4}))
    async with PlcSim(world=world, map=opts.resolved_map()) as sim, running(sim, opts) as run:
        await run.driver.good(9)  # early, for a product far upstream: it takes slot 1
        assert sim.verdict(1) == (9, Verdict.GOOD)
        await reach(run, world, Station.REJECT, 5)
        await run.driver.good(5)  # late: product 5 was already rejected with slot 1 holding 9's verdict
        await run.driver.good(9)
        await reach(run, world, Station.REJECT, 10)
    assert run.outcome(1).rejected  # slot 1 held good for 9, not for 1
    assert run.outcome(5).rejected
    assert not run.outcome(9).rejected
    assert [e.product for e in run.of(RejectOutcome) if not e.rejected] == [9]


async def test_a_missing_reject_confirmation_is_reported_unconfirmed():
    world = LineWorld()
    async with PlcSim(world=world) as sim, running(sim) as run:
        sim.confirm_rejects = False
        await reach(run, world, Station.REJECT, 2)
    assert [(e.rejected, e.confirmed) for e in run.of(RejectOutcome)] == [(True, False), (True, False)]
    assert [p.seq for p in world.escaped] == [1, 2]


# --- line state, heartbeat, outputs ---


async def test_the_watchdog_trips_when_the_driver_stops_and_the_run_coil_resets_it():
    now = [0.0]
    world = LineWorld()
    async with PlcSim(world=world, watchdog_s=1.0, clock=lambda: now[0]) as sim:
        async with running(sim) as run:
            for _ in range(5):
                now[0] += 0.4  # less than the watchdog between two heartbeats (one per poll here)
                await run.gate.poll()
                sim.scan()
            assert sim.heartbeats >= 5
            assert not sim.watchdog_tripped
        now[0] += 1.5  # the driver is gone: no heartbeat for longer than the watchdog
        sim.scan()
        async with asyncio.timeout(HANG_GUARD_S):
            await sim.wait_watchdog_trip()
        assert not world.running
        encoder = world.encoder
        world.advance(5 * PITCH)
        assert world.encoder == encoder
        async with running(sim) as run:
            await run.gate.poll()
            assert run.of(LineIoStatus)[0] == LineIoStatus(
                device_id=DEVICE, at=AT, running=False, encoder=encoder, watchdog_ok=False
            )
            await run.driver.set_running(True)
            await run.gate.poll()
            assert run.of(LineIoStatus)[-1] == LineIoStatus(
                device_id=DEVICE, at=AT, running=True, encoder=encoder, watchdog_ok=True
            )
        assert world.running
        assert not sim.watchdog_tripped


async def test_the_heartbeat_toggles_every_interval_in_polls():
    async with PlcSim() as sim, running(sim, options(poll_interval_s=0.002, heartbeat_interval_s=0.006)) as run:
        before = sim.heartbeats
        await run.gate.poll(9)
        assert sim.heartbeats - before == 3


async def test_a_heartbeat_slower_than_half_the_watchdog_is_refused_at_connect():
    async with PlcSim(watchdog_s=0.1) as sim:
        driver = ModbusLineIo(make_context(sim.transport_spec(), []), options(heartbeat_interval_s=0.06))
        with pytest.raises(DeviceRejectedError, match="watchdog trips after 100 ms"):
            await driver.connect()
        await driver.close()


async def test_the_run_coil_stops_and_restarts_the_belt():
    world = LineWorld()
    async with PlcSim(world=world) as sim, running(sim) as run:
        await advance_and_poll(run, world, PITCH)
        await run.driver.set_running(False)
        assert not world.running
        encoder = world.encoder
        await advance_and_poll(run, world, 5 * PITCH)
        assert world.encoder == encoder
        await run.driver.set_running(True)
        await advance_and_poll(run, world, PITCH)
    statuses = [(e.running, e.encoder) for e in run.of(LineIoStatus)]
    assert statuses == [(True, 0), (False, encoder), (True, encoder + PITCH)]
    assert run.at(Station.PRINTER) == [1, 2]


async def test_ready_and_the_stack_light_reach_the_plc():
    world = LineWorld()
    async with PlcSim(world=world) as sim, running(sim) as run:
        await run.driver.set_ready(True)
        assert sim.ready
        for light in StackLight:
            await run.driver.set_stack_light(light)
            assert sim.stack_light is light
        assert world.running
        await run.driver.set_ready(False)  # the controller withdrew: the PLC stops the line
        assert not sim.ready
        assert not world.running


async def test_the_packml_state_and_unit_mode_reach_the_plc_in_packtags_numbering():
    async with PlcSim(world=LineWorld()) as sim, running(sim) as run:
        assert sim.packtags == (0, 0)
        await run.driver.show_state(11, 2)  # Held, Maintenance
        assert sim.packtags == (11, 2)


async def test_a_map_without_a_packtags_block_tells_the_plc_nothing():
    opts = options(map=map_with(packtags=None))
    async with PlcSim(world=LineWorld(), map=opts.resolved_map()) as sim, running(sim, opts) as run:
        await run.driver.show_state(6, 1)
        assert sim.packtags is None


# --- faults and errors ---


async def test_a_dropped_connection_ends_run_with_a_transient_error():
    async with PlcSim() as sim, running(sim) as run:
        sim.disconnect()
        run.gate.release()  # the parked driver makes its next request
        with pytest.raises(TransientDeviceError, match="link lost"):
            await run.ended()


async def test_a_late_answer_is_a_transient_error():
    async with PlcSim() as sim, running(sim, response_timeout_s=0.1) as run:
        sim.delay_s = 30.0  # released by stop(), so the test does not wait for it
        with pytest.raises(TransientDeviceError, match=r"no answer within 0\.1 s"):
            await run.driver.good(1)


async def test_a_busy_plc_is_a_protocol_error_naming_the_request():
    async with PlcSim() as sim, running(sim) as run:
        sim.refuse_with = ExcCodes.DEVICE_BUSY
        run.gate.release()  # the next round starts with the heartbeat write (one per poll here)
        with pytest.raises(ProtocolError, match=r"refused write coil at 17 \(function 5\): exception 6 DEVICE_BUSY"):
            await run.ended()


async def test_a_write_the_plc_refuses_names_the_function_and_address():
    # The driver's map puts the verdict ring where the PLC has no verdict ring: it refuses writes there.
    opts = options(map=map_with(verdicts={"address": 120, "entries": 4}))
    async with PlcSim() as sim, running(sim, opts) as run:
        with pytest.raises(DeviceRejectedError, match=r"write registers at 123 \(function 16\): exception 2"):
            await run.driver.good(1)


async def test_a_map_reaching_past_the_plc_is_refused_at_connect():
    opts = options(map=map_with(stations={
        "printer": {"address": 4, "entries": 8},
        "camera": {"address": 38, "entries": 8},
        "reject": {"address": 400, "entries": 8},
    }))
    async with PlcSim() as sim:
        driver = ModbusLineIo(make_context(sim.transport_spec(), []), opts)
        with pytest.raises(DeviceRejectedError, match="read holding registers at 400"):
            await driver.connect()
        await driver.close()


async def test_connect_to_a_closed_port_is_transient():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    driver = ModbusLineIo(make_context(TransportSpec(url=f"socket://127.0.0.1:{port}"), []), options())
    with pytest.raises(TransientDeviceError, match="cannot connect"):
        await driver.connect()
    await driver.close()


async def test_modbus_rtu_over_a_serial_port_is_refused():
    driver = ModbusLineIo(make_context(TransportSpec(url="/dev/ttyUSB0"), []), options())
    with pytest.raises(DeviceRejectedError, match="Modbus RTU"):
        await driver.connect()
    await driver.close()


async def test_the_driver_is_single_use_and_close_is_idempotent():
    async with PlcSim() as sim:
        driver = ModbusLineIo(make_context(sim.transport_spec(), []), options())
        await driver.close()
        with pytest.raises(RuntimeError, match="connect"):
            await driver.run()
        await driver.connect()
        with pytest.raises(RuntimeError, match="single-use"):
            await driver.connect()
        await asyncio.gather(driver.close(), driver.close())
        with pytest.raises(TransientDeviceError):
            await driver.good(1)
        with pytest.raises(TransientDeviceError, match="closed"):
            await driver.run()


async def test_cancelling_run_propagates_cancellation():
    async with PlcSim() as sim, running(sim) as run:
        await run.gate.poll()
        run.task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await run.task


async def test_a_bad_sequence_number_is_refused():
    async with PlcSim() as sim, running(sim) as run:
        for bad in (0, -1, 1 << 32):
            with pytest.raises(ValueError, match="sequence number"):
                await run.driver.good(bad)


# --- a standard Modbus client ---


def _standard_client_session(port: int, m: RegisterMap) -> dict[str, Any]:
    """Read every mapped address and write the writable ones with pymodbus's sync client (FC 1-6, 15, 16)."""
    seen: dict[str, Any] = {}
    with ModbusTcpClient("127.0.0.1", port=port, timeout=5) as client:
        coils = sorted(a for _, a in m.coils)
        inputs = sorted(a for _, a in m.discrete_inputs)
        seen["fc1"] = client.read_coils(coils[0], count=coils[-1] - coils[0] + 1, device_id=1).bits
        seen["fc2"] = client.read_discrete_inputs(inputs[0], count=len(inputs), device_id=1).bits
        seen["fc3"] = {
            name: client.read_holding_registers(start, count=count, device_id=1).registers
            for name, (start, count) in m.register_spans().items()
        }
        seen["fc4"] = {
            name: client.read_input_registers(start, count=count, device_id=1).registers
            for name, (start, count) in m.register_spans().items()
        }
        seen["fc5"] = client.write_coil(m.coils.light_amber, True, device_id=1).isError()
        seen["fc15"] = client.write_coils(m.coils.ready, [True, True], device_id=1).isError()  # ready, run
        at = m.verdict_address(3)
        seen["fc16"] = client.write_registers(at, [*m.to_words(3), 0], device_id=1).isError()
        seen["fc6"] = client.write_register(at + 2, int(Verdict.GOOD), device_id=1).isError()
        refused = client.write_register(m.holding_registers.encoder, 7, device_id=1)
        seen["fc6_refused"] = (refused.isError(), refused.exception_code)
        seen["fc3_after"] = client.read_holding_registers(at, count=3, device_id=1).registers
    return seen


async def test_a_standard_client_reads_and_writes_every_mapped_address():
    world = LineWorld()
    async with PlcSim(world=world) as sim:
        world.advance(2 * world.geometry.reject)  # some products at every station
        m = sim.map
        port = int(sim.url.rsplit(":", 1)[1])
        seen = await asyncio.to_thread(_standard_client_session, port, m)
    coils = sorted(a for _, a in m.coils)
    assert seen["fc1"][m.coils.run - coils[0]] is True  # the run coil reads back the running line
    assert seen["fc2"][m.discrete_inputs.line_running] is True
    assert seen["fc3"] == seen["fc4"]
    spans = seen["fc3"]
    assert m.from_words(spans["holding_registers.encoder"]) == 2 * world.geometry.reject
    assert spans["holding_registers.watchdog_ms"] == [1000]
    printer = spans["stations.printer"]
    assert m.from_words(printer[:2]) == 20  # products seen at the printer
    assert all(count for count in (m.from_words(spans[f"stations.{s.value}"][:2]) for s in Station))
    assert (seen["fc5"], seen["fc15"], seen["fc16"], seen["fc6"]) == (False, False, False, False)
    assert seen["fc6_refused"] == (True, 2)
    assert seen["fc3_after"] == [*m.to_words(3), int(Verdict.GOOD)]
    assert sim.stack_light is StackLight.AMBER
    assert sim.ready
    assert sim.verdict(3) == (3, Verdict.GOOD)


# --- wiring ---


async def test_from_options_builds_a_simulator_speaking_the_drivers_map():
    opts = options(map=map_with(verdicts={"address": 300, "entries": 8}), device_id=7)
    world = LineWorld()
    sim = from_options(opts, world=world)
    assert sim.world is world
    assert sim.map.verdicts.address == 300
    assert sim.device_id == 7
    async with sim, running(sim, opts) as run:
        await run.driver.good(1)
        assert sim.verdict(1) == (1, Verdict.GOOD)
    with pytest.raises(ValueError, match="TCP only"):
        from_options(opts, transport="pty")


def test_options_take_a_map_path_or_an_inline_map_and_forbid_unknown_keys():
    assert ModbusLineIo.Options().resolved_map() == load_register_map()
    assert ModbusLineIo.Options.model_validate({"map": str(DEFAULT_MAP_PATH)}).register_map == load_register_map()
    inline = load_register_map().model_dump(mode="json")
    assert ModbusLineIo.Options.model_validate({"map": inline}).resolved_map() == load_register_map()
    with pytest.raises(pydantic.ValidationError):
        ModbusLineIo.Options.model_validate({"poll_s": 1})
    with pytest.raises(pydantic.ValidationError, match="cannot read the register map"):
        ModbusLineIo.Options.model_validate({"map": "/nonexistent/map.yaml"})
    with pytest.raises(pydantic.ValidationError):
        ModbusLineIo.Options.model_validate({"device_id": 256})
    schema = ModbusLineIo.Options.model_json_schema()["properties"]["map"]  # what editors check configs with
    assert {"type": "string", "description": "path of a register map YAML file"} in schema["anyOf"]


def test_registered_as_the_plc_driver():
    names = {ep.name: ep.value for ep in entry_points(group="lineside.drivers")}
    assert names["plc.modbus"] == "drivers.plc.modbus:ModbusLineIo"
    assert ModbusLineIo.role == "plc"
    assert issubclass(ModbusLineIo, LineIo)
