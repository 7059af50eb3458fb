"""A top-view camera over the case packer of an in-process `LineWorld`: the layer of packs in the case below.

It exists only in the process that holds the world (the demo, tests, benchmarks): the world is found by
name through `simulators.camera_render.register_world`, and `connect()` fails with `TransientDeviceError`
while no world is registered under the configured name. Its transport URL is ignored (the line
configuration still needs one: use e.g. ``socket://127.0.0.1:1``).

The case being filled holds the packs that reached the case packer since the previous capture (or since
connect): those the world shipped, plus rejected packs whose reject was never confirmed once they reach the
belt's end (`LineWorld.escaped`: they really do fall into the case). They are taken oldest first, at most
``per_case`` per capture (the packer's count gate; by default as many as the layer has cells); the rest wait
for the next case. `capture()` renders that layer with `simulators.case_render.render_case_top`: pack i's
printed code on cell i, row-major, and an empty `Frame.product`.

Faults on demand: `plan_next` makes the next capture render with per-cell `CaseDefect`s (a code missing,
damaged past reading, printed twice, or of another serial), with packs held back from the case (they stay
for the next one), or with extra packs carrying any code at all (a unit of another batch, a packed one, data
that is not GS1). A capture's frame depends only on ``seed``, the frame number and what is in the case.
Rendering runs in a worker thread, so the event loop never waits on it.
"""

from __future__ import annotations

import asyncio
import random
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Self

from pydantic import Field, model_validator

from drivers.base import DeviceInfo, DriverContext, DriverOptions
from drivers.camera.base import Frame, ImageSource
from edge.errors import DeviceRejectedError, TransientDeviceError
from simulators.camera_render import registered_world
from simulators.case_render import DEFAULT_CASE_MODULE_PX, CaseDefect, prepare_case, printed_codes, render_case_top

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from simulators.world import LineWorld, SimProduct

MODEL: Final = "simulated case camera"
WORLD_POLL_S: Final = 1.0
"""How often run() checks that the world is still registered: a gone world is a lost camera."""


@dataclass(frozen=True, slots=True)
class CasePlan:
    """What goes wrong with the next case: per-cell defects, packs held back, extra packs with their codes."""

    defects: Mapping[int, CaseDefect]
    held_back: int
    extra: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class CaseShown:
    """What one capture showed: the packs in the case, the codes drawn on each cell, and what a reader can read."""

    packs: tuple[SimProduct, ...]
    codes: tuple[str, ...]
    """The code drawn on each cell, in cell order (packs first, then the planned extras); '' for no code."""
    readable: tuple[str | None, ...]
    """What each cell shows readably after its defect (`printed_codes`): what a perfect reader returns."""


class SimulatedCaseCamera(ImageSource):
    """Frames of the open case at the packing station of an in-process simulated line."""

    class Options(DriverOptions):
        """Which world to look at, how the case layer is laid out and how the camera is set up."""

        world: str = "default"
        """Name the LineWorld was registered under (simulators.camera_render.register_world)."""
        width: int = Field(2448, ge=200, le=8192)
        height: int = Field(2048, ge=200, le=8192)
        rows: int = Field(3, ge=1, le=40)
        """Packs across the case layer, front to back."""
        cols: int = Field(4, ge=1, le=40)
        """Packs along the case layer, left to right."""
        per_case: int | None = Field(None, ge=1)
        """Packs the case packer drops into one case (its count gate); None: all that arrived, up to the layer."""
        module_px: int = Field(DEFAULT_CASE_MODULE_PX, ge=2, le=40)
        """Pixels per symbol module: how the lens and working distance are set up."""
        noise: float = Field(0.0, ge=0.0, le=4.0)
        """Sensor grain (1: about 6 grey levels); costs a few milliseconds per 5 MP frame."""
        seed: int = 0
        """Seed of every frame's code placement."""

        @model_validator(mode="after")
        def _gate_fits_layer(self) -> Self:
            if self.per_case is not None and self.per_case > self.rows * self.cols:
                raise ValueError(f"per_case {self.per_case} does not fit a layer of {self.rows} x {self.cols} packs")
            return self

    def __init__(self, context: DriverContext, options: DriverOptions) -> None:
        if not isinstance(options, SimulatedCaseCamera.Options):
            raise TypeError(f"SimulatedCaseCamera takes SimulatedCaseCamera.Options, not {type(options).__name__}")
        super().__init__(context, options)
        self._options = options
        self._world: LineWorld | None = None
        self._used = False
        self._frames = 0
        self._shipped_seen = 0
        """How many of world.shipped have reached the case packer for this camera."""
        self._escaped_seen = 0
        self._waiting: deque[SimProduct] = deque()
        """Packs at the case packer not yet in a case, oldest first."""
        self._plan: CasePlan | None = None
        self.last: CaseShown | None = None
        """What the last capture showed, for tests and the demo."""

    async def connect(self) -> DeviceInfo:
        """Find the world by name; raise TransientDeviceError when none is registered under it."""
        if self._used:
            raise RuntimeError("a driver is single-use: make a new one to reconnect")
        self._used = True
        world = registered_world(self._options.world)
        if world is None:
            raise TransientDeviceError(f"no simulated line world is registered as {self._options.world!r} "
                                       "in this process")
        o = self._options
        # The first frame would otherwise pay for building the case background (up to half a second): pay it here.
        await asyncio.to_thread(prepare_case, (), rows=o.rows, cols=o.cols, size=(o.width, o.height),
                                module_px=o.module_px)
        # Packs that reached the packer before the camera looked are in cases already.
        self._shipped_seen, self._escaped_seen = len(world.shipped), len(world.escaped)
        self._world = world
        self.context.log.info("simulated case camera looking at world", world=o.world, layer=f"{o.rows}x{o.cols}")
        return DeviceInfo(model=MODEL)

    async def run(self) -> None:
        """Watch that the world stays registered; raise TransientDeviceError when it goes."""
        if self._world is None:
            raise RuntimeError("run() needs a connected driver: call connect() first")
        while registered_world(self._options.world) is self._world:
            await self.context.sleep(WORLD_POLL_S)
        raise TransientDeviceError(f"the simulated line world {self._options.world!r} is gone")

    async def close(self) -> None:
        """Forget the world; idempotent."""
        self._world = None

    def plan_next(
        self,
        *,
        defects: Mapping[int, CaseDefect] | None = None,
        held_back: int = 0,
        extra: Sequence[str] = (),
    ) -> None:
        """Make the next capture (only, even one that fails) show these faults; a new plan replaces an unused one.

        defects maps a cell (0 = the first pack in the case) to its `CaseDefect`; held_back packs of the case
        stay at the packer for the next case (a pack missing); extra adds packs carrying these codes after the
        case's own (any text: a unit of another batch, a packed unit, data that is not GS1). ValueError for a
        negative held_back or a cell outside the layer.
        """
        cells = self._options.rows * self._options.cols
        if held_back < 0:
            raise ValueError(f"held_back cannot be negative: {held_back}")
        outside = sorted(cell for cell in defects or {} if not 0 <= cell < cells)
        if outside:
            raise ValueError(f"defects name cells {outside}, but the layer has {cells} cells")
        self._plan = CasePlan(dict(defects or {}), held_back, tuple(extra))

    async def capture(self, product: int | None = None) -> Frame:
        """Render the case now under the camera off the event loop; product is ignored (a case has no pack number).

        TransientDeviceError when not connected or rendering times out; DeviceRejectedError when the case's
        packs and planned extras do not fit the layer or a planned defect names a cell with no pack.
        """
        del product  # the case camera is triggered per case, not per pack
        world = self._world
        if world is None:
            raise TransientDeviceError("the simulated case camera is not connected")
        o = self._options
        plan, self._plan = self._plan, None
        plan = plan or CasePlan({}, 0, ())
        self._arrivals(world)
        cells = o.rows * o.cols
        gate = o.per_case if o.per_case is not None else cells
        packs = [self._waiting[i] for i in range(min(gate, len(self._waiting)))]
        kept = packs[: max(0, len(packs) - plan.held_back)]
        codes = [p.code or "" for p in kept] + list(plan.extra)
        if len(codes) > cells:
            raise DeviceRejectedError(f"a case of {len(kept)} packs and {len(plan.extra)} extra ones does not fit "
                                      f"the {o.rows} x {o.cols} layer of camera {self.context.device_id}")
        defects = dict(plan.defects)
        # A pack with nothing printed shows a blank top, exactly as a MISSING code does.
        defects.update({n: CaseDefect.MISSING for n, code in enumerate(codes) if not code})
        try:
            readable = printed_codes(codes, defects)
        except ValueError as err:
            raise DeviceRejectedError(f"camera {self.context.device_id}: {err}") from err
        for _ in kept:
            self._waiting.popleft()
        self._frames += 1
        rng = random.Random(f"{o.seed}:{self._frames}")  # noqa: S311 - reproducible frames, nothing secret
        try:
            async with asyncio.timeout(self.context.response_timeout_s):
                image = await asyncio.to_thread(
                    render_case_top, codes, rows=o.rows, cols=o.cols, size=(o.width, o.height),
                    module_px=o.module_px, defects=defects, rng=rng, noise=o.noise,
                )
        except TimeoutError as err:
            raise TransientDeviceError(f"rendering case frame {self._frames} took longer than "
                                       f"{self.context.response_timeout_s} s") from err
        except ValueError as err:  # a symbol larger than its pack top: the set-up, not the case
            raise DeviceRejectedError(f"camera {self.context.device_id}: {err}") from err
        self.last = CaseShown(tuple(kept), tuple(codes), readable)
        return Frame(image=image, seq=self._frames, at=self.context.clock())

    def _arrivals(self, world: LineWorld) -> None:
        """Move the packs that reached the belt's end since the last look into the packer, in belt order."""
        arrived = list(world.shipped[self._shipped_seen :])
        self._shipped_seen = len(world.shipped)
        escaped = world.escaped
        end = world.geometry.exit
        # An unconfirmed reject rides on to the belt's end; escaped packs leave the list in belt order.
        while self._escaped_seen < len(escaped) and world.encoder - escaped[self._escaped_seen].entered >= end:
            arrived.append(escaped[self._escaped_seen])
            self._escaped_seen += 1
        self._waiting.extend(sorted(arrived, key=lambda p: p.seq))
