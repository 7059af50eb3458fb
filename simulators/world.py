"""The simulated line itself: a conveyor carrying packs past the printer, the camera and the reject station.

`LineWorld` is the physical truth the simulators share: the PLC simulator reads its photo-eyes and encoder
and writes what the reject station does; the printer simulator prints on the pack at the printer's photo-eye
(the eye is wired to the printer, as on real lines); the camera simulator renders the pack in view with the
defects planned for it. Tests and benchmarks check the line controller against this truth: which pack
carried which code, and which packs went to the reject bin.

Positions are encoder counts. A pack enters at count 0 (the printer's photo-eye) and moves with the belt.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from drivers.plc.base import Station

if TYPE_CHECKING:
    from simulators.base import Sleep
    from simulators.defects import Defect
    from simulators.printer import Printed, PrinterEngine

STEP_COUNTS: Final = 10
"""Encoder counts the simulated belt moves per step: fine enough that no two events of one pack share a step."""


@dataclass(frozen=True, slots=True)
class Geometry:
    """Where the stations are along the belt, in encoder counts from the printer's photo-eye."""

    pitch: int = 200
    """Counts between two packs on the belt."""
    camera: int = 1000
    reject: int = 2000
    exit: int = 2400
    """Where a pack leaves the belt (to the case packer) if it was not rejected."""

    def __post_init__(self) -> None:
        if not 0 < self.camera < self.reject < self.exit or self.pitch <= 0:
            raise ValueError(f"stations must follow each other along the belt: {self}")


@dataclass(slots=True)
class SimProduct:
    """One pack on the simulated belt, and everything that happened to it."""

    seq: int
    entered: int
    """Encoder count when it passed the printer's photo-eye."""
    printed: Printed | None = None
    defects: tuple[Defect, ...] = ()
    inspected: bool = False
    rejected: bool | None = None
    """None until it reached the reject station."""
    confirmed: bool | None = None
    """For a rejected pack: whether the confirmation sensor saw it go."""

    @property
    def code(self) -> str | None:
        """The code printed on the pack (its first printed field), None when nothing was printed."""
        if self.printed is None or not self.printed.fields or not self.printed.fields[0][1]:
            return None
        return self.printed.fields[0][1]


StationHook = Callable[[Station, SimProduct], None]
Decide = Callable[[SimProduct], bool]
"""The reject station's question: may this pack pass? (The PLC simulator answers from the verdicts it holds.)"""
DefectPlan = Callable[[int], tuple["Defect", ...]]
"""Defects planned for the pack with this sequence number."""


def _reject_all(_product: SimProduct) -> bool:
    return False


def _no_defects(_seq: int) -> tuple[Defect, ...]:
    return ()


def _set(event: asyncio.Event) -> asyncio.Event:
    event.set()
    return event


@dataclass(slots=True)
class LineWorld:
    """The conveyor: packs enter at a pitch, pass the stations in order and leave or fall into the reject bin."""

    geometry: Geometry = field(default_factory=Geometry)
    printer: PrinterEngine | None = None
    defects: DefectPlan = _no_defects
    may_pass: Decide = _reject_all
    """Set by the PLC simulator: the reject station lets a pack pass only when this says so."""
    confirm_rejects: bool = True
    """False: the reject mechanism fires but the confirmation sensor never sees the pack (a fault)."""
    running: bool = True
    """The conveyor moves only while running (the line run output)."""
    infeed: bool = True
    """New packs come onto the belt (False: the infeed stopped, the belt empties)."""
    encoder: int = 0
    on_station: list[StationHook] = field(default_factory=list)
    products: deque[SimProduct] = field(default_factory=deque)
    """Packs on the belt, oldest (furthest along) first."""
    shipped: list[SimProduct] = field(default_factory=list)
    """Packs that left the belt to the case packer."""
    reject_bin: list[SimProduct] = field(default_factory=list)
    """Packs the reject station took off the belt (confirmed or not)."""
    escaped: list[SimProduct] = field(default_factory=list)
    """Packs the reject fired for but that went on anyway (no confirmation): they reach the case packer too."""
    _next_seq: int = 1
    _next_entry: int = 0
    _changed: asyncio.Event = field(default_factory=asyncio.Event)
    _frames: asyncio.Event = field(default_factory=lambda: _set(asyncio.Event()))

    @property
    def entered(self) -> int:
        """How many packs came onto the belt so far."""
        return self._next_seq - 1

    def product(self, seq: int) -> SimProduct | None:
        """Return the pack with this sequence number while it is on the belt or after it left."""
        for collection in (self.products, self.shipped, self.reject_bin):
            for product in collection:
                if product.seq == seq:
                    return product
        return None

    def in_view(self) -> SimProduct | None:
        """Return the pack that passed the camera last (what a triggered camera sees), if any."""
        seen = [p for p in self.products if p.inspected]
        return seen[-1] if seen else None

    def advance(self, counts: int) -> None:
        """Move the belt on by counts, firing every station a pack crosses, in belt order."""
        if not self.running:
            return
        target = self.encoder + counts
        while self.encoder < target:
            step = min(STEP_COUNTS, target - self.encoder)
            self.encoder += step
            if self.encoder >= self._next_entry and self.infeed:
                self._enter()
            self._cross(self.encoder - step, self.encoder)
        self._changed.set()

    def pass_one(self) -> None:
        """Move the belt by one pitch (one more pack enters)."""
        self.advance(self.geometry.pitch)

    async def run(self, per_minute: float, *, sleep: Sleep = asyncio.sleep) -> None:
        """Move the belt so that per_minute packs pass a station each minute, until cancelled."""
        if per_minute <= 0:
            raise ValueError(f"a line rate must be positive, not {per_minute}")
        steps = max(1, self.geometry.pitch // STEP_COUNTS)
        interval = 60.0 / per_minute / steps
        while True:
            await sleep(interval)
            self.advance(self.geometry.pitch // steps)

    async def wait_changed(self) -> None:
        """Return after the belt next moves."""
        self._changed.clear()
        await self._changed.wait()

    @property
    def camera_frames(self) -> bool:
        """False is a fault: the camera delivers no frames (stalled) until this is True again."""
        return self._frames.is_set()

    @camera_frames.setter
    def camera_frames(self, value: bool) -> None:
        if value:
            self._frames.set()
        else:
            self._frames.clear()

    async def wait_camera_frames(self) -> None:
        """Return once the camera delivers frames (at once unless it stalled)."""
        await self._frames.wait()

    def _enter(self) -> None:
        product = SimProduct(self._next_seq, self.encoder, defects=self.defects(self._next_seq))
        self._next_seq += 1
        self._next_entry = self.encoder + self.geometry.pitch
        if self.printer is not None:
            product.printed = self.printer.product_detect()
        self.products.append(product)
        self._fire(Station.PRINTER, product)

    def _cross(self, before: int, after: int) -> None:
        g = self.geometry
        for product in list(self.products):
            travelled_before, travelled = before - product.entered, after - product.entered
            if travelled_before < g.camera <= travelled:
                product.inspected = True
                self._fire(Station.CAMERA, product)
            if travelled_before < g.reject <= travelled:
                passing = self.may_pass(product)
                product.rejected = not passing
                product.confirmed = (not passing) and self.confirm_rejects
                self._fire(Station.REJECT, product)
                if product.rejected:
                    self.products.remove(product)
                    self.reject_bin.append(product)
                    if not product.confirmed:
                        self.escaped.append(product)
                    continue
            if travelled_before < g.exit <= travelled:
                self.products.remove(product)
                self.shipped.append(product)

    def _fire(self, station: Station, product: SimProduct) -> None:
        for hook in self.on_station:
            hook(station, product)
