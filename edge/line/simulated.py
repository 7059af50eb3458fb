"""A whole line simulated in this process: belt, printer, camera, PLC, and the case and pallet labellers.

`SimulatedLine` starts a simulator for every device of a line configuration, ties the printer, camera and PLC
simulators to one `LineWorld` (the printer prints on each pack at its photo-eye, the camera renders the pack in
view with the defects planned for it, the PLC tracks packs and fires the reject), and returns the configuration
pointed at them. The demo, the tests and the benchmarks run the real daemon against it.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from drivers.camera.case_simulated import SimulatedCaseCamera
from drivers.camera.simulated import SimulatedCamera
from drivers.plc.modbus import ModbusLineIo
from drivers.printer.base import PrinterOptions
from edge.config import DeviceConfig
from edge.registry import driver_class
from simulators.camera_render import register_world, unregister_world
from simulators.catalog import simulator_for
from simulators.defects import Defect, DefectKind
from simulators.packaging import LabelApplicator
from simulators.plc import PlcSim
from simulators.plc import from_options as plc_from_options
from simulators.printer import PrinterSimulator
from simulators.scanner_wedge import WedgeScannerSim
from simulators.world import Geometry, LineWorld
from simulators.zpl import ZplSim

if TYPE_CHECKING:
    from edge.config import LineConfig
    from simulators.base import Simulator
    from simulators.world import DefectPlan

REJECTED_DEFECTS: Final = (
    DefectKind.BLUR,
    DefectKind.LOW_CONTRAST,
    DefectKind.DAMAGE,
    DefectKind.SMUDGE,
    DefectKind.INK_SPREAD,
    DefectKind.MISSING,
    DefectKind.WRONG_CODE,
    DefectKind.DUPLICATE,
    DefectKind.TWO_CODES,
)
"""Defects that, at full severity, must get a pack rejected."""

COSMETIC_DEFECTS: Final = (DefectKind.ROTATION, DefectKind.PERSPECTIVE)
"""Defects within the limits a line camera is set up for: the pack must still pass."""

COSMETIC_SEVERITY: Final = 0.3


@dataclass(frozen=True, slots=True)
class EveryNth:
    """A defect plan: every nth pack gets the next defect of kinds, in turn (deterministic, by sequence number)."""

    every: int
    kinds: tuple[DefectKind, ...] = REJECTED_DEFECTS
    severity: float = 1.0
    first: int = 5
    """No defect before this pack: the printer and the camera settle first."""

    def __call__(self, seq: int) -> tuple[Defect, ...]:
        """Return the defects planned for pack seq."""
        if self.every < 1 or seq < self.first or (seq - self.first) % self.every:
            return ()
        index = (seq - self.first) // self.every
        return (Defect(self.kinds[index % len(self.kinds)], self.severity),)


def mixed_plan(every: int, *, cosmetic_every: int = 0) -> DefectPlan:
    """Return a plan: a reject-worthy defect every `every` packs, a cosmetic one every `cosmetic_every`."""
    bad = EveryNth(every)
    cosmetic = EveryNth(cosmetic_every, COSMETIC_DEFECTS, COSMETIC_SEVERITY, first=6) if cosmetic_every else None

    def plan(seq: int) -> tuple[Defect, ...]:
        return bad(seq) or (cosmetic(seq) if cosmetic is not None else ())

    return plan


class SimulatedLine:
    """Every device of a line configuration simulated around one belt; use ``async with`` for the config."""

    def __init__(
        self, config: LineConfig, *, defects: DefectPlan | None = None, geometry: Geometry | None = None
    ) -> None:
        self._base = config
        self.world = LineWorld(geometry or Geometry(), defects=defects or (lambda _seq: ()))
        self.sims: dict[str, Simulator] = {}
        self.plc: PlcSim | None = None
        self.printer: PrinterSimulator | None = None
        """The simulator of the printer marking the units (the first printer that feeds units)."""
        self.applicators: dict[str, LabelApplicator] = {}
        """The case and pallet label applicators, by level, when the line aggregates."""
        self._worlds: list[str] = []
        self.config: LineConfig = config

    async def __aenter__(self) -> SimulatedLine:
        try:
            await self._start()
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.stop()

    async def _start(self) -> None:
        devices = []
        for dev in self._base.devices:
            if not dev.enabled:
                devices.append(dev)
                continue
            cls = driver_class(dev.driver)
            options = dev.parsed_options
            world_camera = (SimulatedCamera.Options, SimulatedCaseCamera.Options)
            if issubclass(cls, (SimulatedCamera, SimulatedCaseCamera)) and isinstance(options, world_camera):
                register_world(options.world, self.world)
                self._worlds.append(options.world)
                devices.append(dev)
                continue
            if issubclass(cls, ModbusLineIo) and isinstance(options, ModbusLineIo.Options):
                plc = self.plc = plc_from_options(options, world=self.world)
                url = await plc.bind()
                await plc.start()
                devices.append(_pointed(dev, url))
                continue
            sim = simulator_for(dev.driver, options)
            unit_printer = isinstance(options, PrinterOptions) and options.feeds == "units"
            if isinstance(sim, PrinterSimulator) and unit_printer and self.printer is None:
                self.printer = sim
                self.world.printer = sim.engine  # the printer's photo-eye sits at the belt's entry
            self.sims[dev.id] = sim
            await sim.start()
            devices.append(_pointed(dev, sim.url))
        self.config = self._base.model_copy(update={"devices": tuple(devices)})
        self._applicators()

    def _applicators(self) -> None:
        """Put each label printer's simulator in front of its verifying scanner's, as on the line."""
        aggregation = self._base.aggregation
        if aggregation is None:
            return
        stations = [("case", aggregation.cases.label)]
        if aggregation.pallets is not None:
            stations.append(("pallet", aggregation.pallets.label))
        for level, label in stations:
            printer, scanner = self.sims.get(label.printer), self.sims.get(label.verifier)
            if isinstance(printer, ZplSim) and isinstance(scanner, WedgeScannerSim):
                self.applicators[level] = LabelApplicator(printer, scanner)

    async def run_packaging(self) -> None:
        """Run the label applicators until cancelled (nothing to run without aggregation)."""
        async with asyncio.TaskGroup() as tasks:
            for applicator in self.applicators.values():
                tasks.create_task(applicator.run())

    async def stop(self) -> None:
        """Stop every simulator and forget the world; idempotent."""
        for name in self._worlds:
            unregister_world(name)
        self._worlds.clear()
        for sim in self.sims.values():
            await sim.stop()
        self.sims.clear()
        if self.plc is not None:
            await self.plc.stop()
            self.plc = None


def _pointed(dev: DeviceConfig, url: str) -> DeviceConfig:
    data = dev.model_dump(exclude_unset=True) | {"url": url}
    data.pop("serial", None)
    return DeviceConfig.model_validate(data)

