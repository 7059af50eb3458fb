"""The line PLC, simulated: a pymodbus Modbus TCP server over a `LineWorld` conveyor, speaking Lineside's register map.

It is the PLC program the register map (config/plc/default-map.yaml) describes: it shows the world's encoder
and photo-eyes, logs every product at each station in that station's ring (hooked to `LineWorld.on_station`),
answers the reject station's question from the verdict ring (`LineWorld.may_pass`: pass only when the entry
for the product's seq holds that seq with verdict good), records what the reject station did, follows the run
coil (`LineWorld.running`), and runs a watchdog on the heartbeat coil: when the controller stops toggling it for
`watchdog_s` the line stops and the watchdog flag is set until a rising edge of the run coil.

Built on pymodbus's `SimDevice` (4 separate tables, bit-addressed coils and discrete inputs) with an async action
callback: the PLC's memory lives here, and every request first refreshes the table it touches from it, so any
standard Modbus client (FC 1, 2, 3, 4, 5, 6, 15, 16) reads and writes the same values the driver does. Input
registers (FC 4) mirror the holding registers. Writes to holding registers outside the verdict ring are refused
with exception 2 (illegal data address), as a PLC protects its own data.

Faults: missing reject confirmation (`confirm_rejects`, the world's sensor), connection drop (`disconnect()`),
the cable pulled for a while (`unplug()` until `plug()`: every link dropped as it comes), delayed answers (`delay_s`:
every answer waits that long, released at once by `stop()`), exception answers (`refuse_with`: every request
answered with that Modbus exception code), line noise (`send_garbage`). The belt is not driven
here: the owner moves it (`world.advance(...)` in tests, `world.run(ppm)` in the demo).

Verified: a pymodbus client and the driver read and write every mapped address (tests). Assumed: a real PLC
updates a station's counter and ring entry in one scan; Modbus RTU is not simulated (TCP only).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Final, Self

import structlog
from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from drivers.plc.base import StackLight, Station
from drivers.plc.register_map import (
    PACKTAGS_WORDS,
    VERDICT_ENTRY_WORDS,
    OutcomeFlags,
    RegisterMap,
    StatusBits,
    Verdict,
    load_register_map,
)
from drivers.transport.spec import TransportSpec
from simulators.world import LineWorld

if TYPE_CHECKING:
    from types import TracebackType

    from drivers.plc.modbus import ModbusLineIo
    from simulators.world import SimProduct

Sleep = Callable[[float], Awaitable[None]]
MonotonicClock = Callable[[], float]

LOOPBACK: Final = "127.0.0.1"
BITS_PER_REGISTER: Final = 16
SCAN_INTERVAL_S: Final = 0.01
"""How often the simulated PLC runs its watchdog when nobody talks to it (a PLC scans continuously; 10 ms is a
typical cycle and far below any watchdog timeout worth setting)."""
DEFAULT_WATCHDOG_S: Final = 1.0
MAX_WATCHDOG_S: Final = 65.535
"""The watchdog register holds milliseconds in a UInt16."""

_COIL_FCS: Final = frozenset({1, 5, 15})
_INPUT_FCS: Final = frozenset({2})
_INPUT_REGISTER_FCS: Final = frozenset({4})


def _rounded(bits: int) -> int:
    return -(-bits // BITS_PER_REGISTER) * BITS_PER_REGISTER


def _pack(bits: list[bool], registers: list[int]) -> None:
    """Write bits into pymodbus's packed bit registers in place (bit 0 of register 0 first)."""
    for index in range(len(bits) // BITS_PER_REGISTER):
        word = 0
        for offset, bit in enumerate(bits[index * BITS_PER_REGISTER : (index + 1) * BITS_PER_REGISTER]):
            if bit:
                word |= 1 << offset
        registers[index] = word


class PlcSim:
    """A simulated line PLC serving one Modbus TCP device (unit id device_id) over a LineWorld."""

    def __init__(
        self,
        *,
        world: LineWorld | None = None,
        map: RegisterMap | None = None,  # noqa: A002 - the register map; the name the options and docs use
        device_id: int = 1,
        host: str = LOOPBACK,
        port: int = 0,
        watchdog_s: float = DEFAULT_WATCHDOG_S,
        clock: MonotonicClock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        scan_interval_s: float = SCAN_INTERVAL_S,
    ) -> None:
        if not 0 <= watchdog_s <= MAX_WATCHDOG_S:
            raise ValueError(f"watchdog_s must be 0 (off) to {MAX_WATCHDOG_S} s, not {watchdog_s}")
        self.world: Final = world if world is not None else LineWorld()
        self.map: Final = map if map is not None else load_register_map()
        self.device_id: Final = device_id
        self.watchdog_s: Final = watchdog_s
        self.delay_s = 0.0
        """Fault: every answer waits this long (0: none)."""
        self.refuse_with: ExcCodes | None = None
        """Fault: answer every request with this Modbus exception (e.g. DEVICE_BUSY) instead of serving it."""
        self.unplugged = False
        """Fault: the cable is pulled; every link is dropped as it comes (`unplug`, `plug`)."""
        self.log = structlog.get_logger().bind(simulator=type(self).__name__)
        self._host, self._port = host, port
        self._clock, self._sleep, self._scan_interval_s = clock, sleep, scan_interval_s
        m = self.map
        self._coils = [False] * _rounded(max(a for _, a in m.coils) + 1)
        self._inputs = [False] * _rounded(max(a for _, a in m.discrete_inputs) + 1)
        self._registers = [0] * m.register_count()
        self._registers[m.holding_registers.watchdog_ms] = round(watchdog_s * 1000)
        self._counts = dict.fromkeys(Station, 0)
        self._last_encoder: dict[Station, int | None] = dict.fromkeys(Station)
        self._last_confirmed = False
        self._verdicts = range(m.verdicts.address, m.verdicts.address + m.verdicts.entries * VERDICT_ENTRY_WORDS)
        self._packtags = range(0) if m.packtags is None else range(m.packtags.address,
                                                                    m.packtags.address + PACKTAGS_WORDS)
        self.heartbeats = 0
        """Heartbeat toggles seen."""
        self.watchdog_tripped = False
        self._last_beat: float | None = None
        self._tripped = asyncio.Event()
        self._beat = asyncio.Event()
        self._connected = asyncio.Event()
        self._released = asyncio.Event()
        self._delayed = 0
        self._idle = asyncio.Event()
        self._server: ModbusTcpServer | None = None
        self._url: str | None = None
        self._serving = False
        self._task: asyncio.Task[None] | None = None
        self.world.may_pass = self._may_pass
        self.world.on_station.append(self._on_station)

    # --- lifecycle (the same as simulators.base.Simulator) ---

    @property
    def url(self) -> str:
        """What a driver connects to: ``socket://127.0.0.1:PORT``."""
        if self._url is None:
            raise RuntimeError("the simulator is not bound yet: bind(), start() or `async with` it first")
        return self._url

    def transport_spec(self) -> TransportSpec:
        """Return the transport a driver configuration needs to reach this simulator."""
        return TransportSpec(url=self.url)

    async def bind(self) -> str:
        """Start listening (pymodbus accepts from then on) and return the URL; idempotent."""
        if self._server is None:
            device = SimDevice(
                id=self.device_id,
                action=self._on_access,
                simdata=(
                    [SimData(0, count=len(self._coils), values=False, datatype=DataType.BITS)],
                    [SimData(0, count=len(self._inputs), values=False, datatype=DataType.BITS)],
                    [SimData(0, count=len(self._registers), values=0, datatype=DataType.REGISTERS)],
                    [SimData(0, count=len(self._registers), values=0, datatype=DataType.REGISTERS)],
                ),
            )
            server = ModbusTcpServer(device, address=(self._host, self._port), trace_connect=self._on_connect)
            await server.serve_forever(background=True)
            self._server = server
            listener: Any = server.transport  # an asyncio.Server once listening
            host, port = listener.sockets[0].getsockname()[:2]
            self._url = f"socket://{host}:{port}"
            self.log.debug("simulator bound", url=self._url)
        return self.url

    async def serve(self) -> None:
        """Serve and scan until cancelled (binding first if needed), then release everything."""
        self._claim()
        try:
            await self.bind()
            await self._scan_forever()
        finally:
            await self._shutdown()

    async def start(self) -> None:
        """Bind and scan in a task this simulator owns until stop()."""
        await self.bind()
        self._claim()
        self._task = asyncio.create_task(self._scan_forever(), name="PlcSim scan")

    async def stop(self) -> None:
        """Stop scanning and serving, close every link and release the port."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.wait([task])
        await self._shutdown()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    @property
    def connections(self) -> int:
        """Modbus clients connected right now."""
        return len(self._server.active_connections) if self._server is not None else 0

    async def wait_for_connection(self) -> None:
        """Return once a client is connected, waiting until one connects."""
        while not self.connections:
            self._connected.clear()
            await self._connected.wait()

    def disconnect(self) -> None:
        """Fault: drop every client connection now, as a pulled cable would."""
        if self._server is not None:
            for link in list(self._server.active_connections.values()):
                link.close()

    def unplug(self) -> None:
        """Fault: pull the cable: drop every client now and every one that connects until `plug()`."""
        self.unplugged = True
        self.disconnect()

    def plug(self) -> None:
        """Put the cable back: clients connect again."""
        self.unplugged = False

    def send_garbage(self, data: bytes) -> None:
        """Fault: write data to every client link now, between two answers, as line noise would."""
        if self._server is not None:
            for link in list(self._server.active_connections.values()):
                transport: Any = link.transport
                if transport is not None:
                    transport.write(data)

    # --- what tests and the demo look at ---

    @property
    def confirm_rejects(self) -> bool:
        """False is a fault: the reject fires but the confirmation sensor never sees the product."""
        return self.world.confirm_rejects

    @confirm_rejects.setter
    def confirm_rejects(self, value: bool) -> None:
        self.world.confirm_rejects = value

    @property
    def packtags(self) -> tuple[int, int] | None:
        """(StateCurrent, UnitModeCurrent) as the line last wrote them; None when the map has no PackTags block."""
        if not self._packtags:
            return None
        first = self._packtags.start
        return self._registers[first], self._registers[first + 1]

    @property
    def ready(self) -> bool:
        """The controller-ready coil."""
        return self._coils[self.map.coils.ready]

    @property
    def stack_light(self) -> StackLight:
        """The stack light as lit by the coils (the most severe colour when several are on)."""
        coils = self.map.coils
        for address, light in ((coils.light_red, StackLight.RED), (coils.light_amber, StackLight.AMBER),
                                (coils.light_green, StackLight.GREEN)):
            if self._coils[address]:
                return light
        return StackLight.OFF

    def verdict(self, seq: int) -> tuple[int, Verdict]:
        """Return the verdict ring entry in product seq's slot: (the seq it is for, the verdict)."""
        at = self.map.verdict_address(seq)
        held = self.map.from_words(self._registers[at : at + 2])
        try:
            verdict = Verdict(self._registers[at + 2])
        except ValueError:
            verdict = Verdict.NONE  # a value the map does not define counts as no verdict
        return held, verdict

    async def wait_heartbeat(self) -> None:
        """Return after the next heartbeat toggle."""
        self._beat.clear()
        await self._beat.wait()

    async def wait_watchdog_trip(self) -> None:
        """Return once the watchdog has tripped."""
        await self._tripped.wait()

    def scan(self) -> None:
        """Run one PLC scan: the watchdog check (also run before every request and every scan interval)."""
        if self.watchdog_tripped or self._last_beat is None or self.watchdog_s == 0:
            return
        if self._clock() - self._last_beat > self.watchdog_s:
            self.watchdog_tripped = True
            self.world.running = False
            self._tripped.set()
            self.log.warning("watchdog tripped: controller heartbeat stopped, line stopped", timeout_s=self.watchdog_s)

    # --- the PLC program ---

    def _on_station(self, station: Station, product: SimProduct) -> None:
        g = self.world.geometry
        encoder = product.entered + {Station.PRINTER: 0, Station.CAMERA: g.camera}.get(station, g.reject)
        base, _ = self.map.station_span(station)
        ring = self.map.station(station)
        size = self.map.entry_words(station)
        at = base + 2 + (self._counts[station] % ring.entries) * size
        entry = [*self.map.to_words(product.seq), *self.map.to_words(encoder)]
        if station is Station.REJECT:
            flags = (OutcomeFlags.REJECTED if product.rejected else 0) | (
                OutcomeFlags.CONFIRMED if product.confirmed else 0
            )
            entry.append(int(flags))
            self._last_confirmed = bool(product.confirmed)
        # Entry first, then the counter: a reader between the two (impossible here, a scan is atomic) sees the
        # old counter and ignores the new entry.
        self._registers[at : at + size] = entry
        self._counts[station] += 1
        self._registers[base : base + 2] = self.map.to_words(self._counts[station])
        self._last_encoder[station] = encoder

    def _may_pass(self, product: SimProduct) -> bool:
        held, verdict = self.verdict(product.seq)
        return held == product.seq and verdict is Verdict.GOOD

    def _refresh(self) -> None:
        """Copy the world's state into the PLC's memory: encoder, photo-eyes, run state, status word."""
        m, world = self.map, self.world
        self._registers[m.holding_registers.encoder : m.holding_registers.encoder + 2] = m.to_words(world.encoder)
        window = world.geometry.pitch // 2

        def eye(station: Station) -> bool:
            last = self._last_encoder[station]
            return last is not None and 0 <= world.encoder - last < window

        di = m.discrete_inputs
        states = {
            StatusBits.LINE_RUNNING: (di.line_running, world.running),
            StatusBits.WATCHDOG_TRIPPED: (di.watchdog_tripped, self.watchdog_tripped),
            StatusBits.REJECT_CONFIRM: (di.reject_confirm, eye(Station.REJECT) and self._last_confirmed),
            StatusBits.PD_PRINTER: (di.pd_printer, eye(Station.PRINTER)),
            StatusBits.PD_CAMERA: (di.pd_camera, eye(Station.CAMERA)),
            StatusBits.PD_REJECT: (di.pd_reject, eye(Station.REJECT)),
        }
        status = 0
        for bit, (address, on) in states.items():
            self._inputs[address] = on
            status |= bit if on else 0
        self._registers[m.holding_registers.status] = status
        self._coils[m.coils.run] = world.running

    async def _on_access(
        self,
        function_code: int,
        _start: int,
        address: int,
        _count: int,
        registers: list[int],
        values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:
        """Apply a write to the PLC's memory and refresh the table, before pymodbus serves any access."""
        if self.delay_s > 0:
            await self._delay()
        if self.unplugged:
            return ExcCodes.GATEWAY_NO_RESPONSE  # a request that came in before its link was dropped
        if self.refuse_with is not None:
            return self.refuse_with
        self.scan()
        if values is not None:
            refused = self._write(function_code, address, values)
            if refused is not None:
                return refused
        self._refresh()
        if function_code in _COIL_FCS:
            _pack(self._coils, registers)
        elif function_code in _INPUT_FCS:
            _pack(self._inputs, registers)
        else:
            registers[: len(self._registers)] = self._registers
        return None

    def _write(self, function_code: int, address: int, values: list[int] | list[bool]) -> ExcCodes | None:
        if function_code in _COIL_FCS:
            for offset, value in enumerate(values):
                self._write_coil(address + offset, bool(value))
            return None
        if function_code in _INPUT_REGISTER_FCS or not any(
            address in block and address + len(values) - 1 in block for block in (self._verdicts, self._packtags)
        ):
            return ExcCodes.ILLEGAL_ADDRESS  # the PLC's own registers are read-only
        self._registers[address : address + len(values)] = [int(v) for v in values]
        return None

    def _write_coil(self, address: int, value: bool) -> None:
        coils = self.map.coils
        before = self._coils[address]
        self._coils[address] = value
        if address == coils.heartbeat and value != before:
            self.heartbeats += 1
            self._last_beat = self._clock()
            self._beat.set()
        elif address == coils.run:
            if value and not self.world.running and self.watchdog_tripped:
                # A rising edge of run is the operator's reset: it re-arms the watchdog from now.
                self.watchdog_tripped = False
                self._tripped.clear()
                self._last_beat = self._clock()
            self.world.running = value
        elif address == coils.ready and before and not value and self.world.running:
            self.log.warning("controller dropped ready: line stopped")
            self.world.running = False

    async def _delay(self) -> None:
        self._delayed += 1
        self._idle.clear()
        try:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.delay_s):
                    await self._released.wait()
        finally:
            self._delayed -= 1
            if not self._delayed:
                self._idle.set()

    def _on_connect(self, connected: bool) -> None:
        if connected and self.unplugged:
            # The link is registered once this callback returns: drop it right after.
            asyncio.get_running_loop().call_soon(self.disconnect)
        elif connected:
            self._connected.set()

    def _claim(self) -> None:
        if self._serving:
            raise RuntimeError("a simulator serves once")
        self._serving = True

    async def _scan_forever(self) -> None:
        while True:
            await self._sleep(self._scan_interval_s)
            self.scan()

    async def _shutdown(self) -> None:
        self._released.set()
        if self._delayed:
            await self._idle.wait()
        await asyncio.sleep(0)  # a released answer goes out (or fails on a closed link) in this step
        if self._on_station in self.world.on_station:
            self.world.on_station.remove(self._on_station)  # a later PLC on the same belt hooks in afresh
        server, self._server = self._server, None
        if server is not None:
            await server.shutdown()  # type: ignore[no-untyped-call]  # pymodbus leaves it unannotated
            # Closed transports release their sockets in callbacks scheduled just now.
            await asyncio.sleep(0)


def from_options(
    options: ModbusLineIo.Options, *, port: int = 0, transport: str = "tcp", world: LineWorld | None = None
) -> PlcSim:
    """Return a PLC simulator speaking the driver's register map, over world (a fresh LineWorld by default)."""
    if transport != "tcp":
        raise ValueError(f"the PLC simulator serves Modbus TCP only, not {transport!r} (Modbus RTU is not simulated)")
    return PlcSim(world=world, map=options.resolved_map(), device_id=options.device_id, port=port)
