"""A camera that renders what the simulated printer put on each pack of an in-process `LineWorld`.

It exists only in the process that holds the world (the demo, tests, benchmarks): the world is found by
name through `simulators.camera_render.register_world`, and `connect()` fails with `TransientDeviceError`
while no world is registered under the configured name. Its transport URL is ignored (the line
configuration still needs one: use e.g. ``socket://127.0.0.1:1``).

`capture(product)` renders pack product (or, without a product number, the pack that passed the camera
last) with its planned defects: WRONG_CODE shows the printed code with another lot (or, without a lot,
another GTIN), DUPLICATE the code of the previous printed pack, TWO_CODES the code plus the previous
pack's, MISSING nothing; a pack with nothing printed shows an empty pack (the first pack has no previous
one: DUPLICATE then shows its own code and TWO_CODES adds a code with another lot). A pack's frame is the same on
every capture (its random stream is seeded from ``seed`` and the pack number). Rendering runs in a worker
thread, so the event loop never waits on it. Verified by the camera-render tests against our decoder.

Frames rendered beforehand (`PrerenderedFrames`, registered under the world's name with `register_frames`) are
served instead of rendering when one matches the pack exactly (number, codes in view, defects): the line
benchmark renders every pack's frame before its clock starts, so rendering does not count in its figures.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from pydantic import Field

from drivers.base import DeviceInfo, DriverContext, DriverOptions
from drivers.camera.base import Frame, ImageSource
from edge.errors import TransientDeviceError
from edge.gs1.checks import gs1_check_digit
from edge.gs1.element import build, parse
from edge.gs1.errors import Gs1SyntaxError
from simulators.camera_render import DEFAULT_MODULE_PX, prepare, registered_world, render
from simulators.defects import DefectKind

if TYPE_CHECKING:
    from collections.abc import Collection

    from simulators.camera_render import SparseFrame
    from simulators.defects import Defect
    from simulators.world import LineWorld, SimProduct

MODEL: Final = "simulated camera"
WORLD_POLL_S: Final = 1.0
"""How often run() checks that the world is still registered: a gone world is a lost camera."""

FrameKey = tuple[int, tuple[str, ...], tuple["Defect", ...]]
"""What makes a pack's frame: its number (which seeds the placement), the codes in view, its defects."""


@dataclass(slots=True)
class PrerenderedFrames:
    """Frames rendered before the line runs, for cameras looking at one world with these settings."""

    size: tuple[int, int]
    module_px: int
    seed: int
    frames: dict[FrameKey, SparseFrame] = field(default_factory=dict)
    served: int = 0
    missed: int = 0
    """Captures that found no frame here and were rendered on the spot."""
    last_served: int | None = None
    """The pack whose frame was served last."""

    def take(self, key: FrameKey, size: tuple[int, int], module_px: int, seed: int) -> SparseFrame | None:
        """Return the frame for key when it was rendered with these settings, else None (counted as a miss)."""
        frame = self.frames.get(key) if (size, module_px, seed) == (self.size, self.module_px, self.seed) else None
        if frame is None:
            self.missed += 1
            return None
        self.served += 1
        self.last_served = key[0]
        return frame


_prerendered: dict[str, PrerenderedFrames] = {}


def register_frames(world: str, frames: PrerenderedFrames) -> None:
    """Serve frames to simulated cameras looking at world, instead of rendering the packs they hold."""
    _prerendered[world] = frames


def unregister_frames(world: str) -> None:
    """Stop serving pre-rendered frames for world (no error when there are none)."""
    _prerendered.pop(world, None)


def frame_rng(seed: int, product: int) -> random.Random:
    """Return the random stream of pack product's frame (placement and defect details)."""
    return random.Random(f"{seed}:{product}")  # noqa: S311 - reproducible frames, nothing secret


def codes_in_view(code: str | None, previous: str | None, kinds: Collection[DefectKind]) -> list[str]:
    """Return the codes the camera sees on a pack printed with code, after its data defects (kinds).

    previous is the code on the nearest earlier pack (None for the first).
    """
    if code is None or DefectKind.MISSING in kinds:
        return []
    if DefectKind.WRONG_CODE in kinds:
        code = wrong_code(code)
    if DefectKind.DUPLICATE in kinds:
        code = previous if previous is not None else code
    if DefectKind.TWO_CODES in kinds:
        return [code, previous if previous is not None else wrong_code(code)]
    return [code]


def wrong_code(code: str) -> str:
    """Return the code with other data: another lot when it has one, else another GTIN (check digit kept valid)."""
    try:
        pairs = parse(code).pairs
    except Gs1SyntaxError:
        return code + "X"
    for n, (ai, value) in enumerate(pairs):
        if ai == "10" and value:
            pairs[n] = (ai, value[:-1] + ("A" if value[-1] != "A" else "B"))
            return build(pairs, check=False)
    for n, (ai, value) in enumerate(pairs):
        if ai == "01" and len(value) == 14 and value.isdigit():
            body = value[:12] + str((int(value[12]) + 1) % 10)
            pairs[n] = (ai, body + str(gs1_check_digit(body)))
            return build(pairs, check=False)
    return code + "X"


class SimulatedCamera(ImageSource):
    """Frames of the packs of an in-process simulated line."""

    class Options(DriverOptions):
        """Which world to look at and how the camera is set up."""

        world: str = "default"
        """Name the LineWorld was registered under (simulators.camera_render.register_world)."""
        width: int = Field(1280, ge=200, le=8192)
        height: int = Field(1024, ge=200, le=8192)
        module_px: int = Field(DEFAULT_MODULE_PX, ge=2, le=40)
        """Pixels per symbol module: how the lens and working distance are set up."""
        seed: int = 0
        """Seed of every pack's random placement and defect details."""

    def __init__(self, context: DriverContext, options: DriverOptions) -> None:
        if not isinstance(options, SimulatedCamera.Options):
            raise TypeError(f"SimulatedCamera takes SimulatedCamera.Options, not {type(options).__name__}")
        super().__init__(context, options)
        self._options = options
        self._world: LineWorld | None = None
        self._frames = 0
        self._used = False

    async def connect(self) -> DeviceInfo:
        """Find the world by name; raise TransientDeviceError when none is registered under it."""
        if self._used:
            raise RuntimeError("a driver is single-use: make a new one to reconnect")
        self._used = True
        world = registered_world(self._options.world)
        if world is None:
            raise TransientDeviceError(f"no simulated line world is registered as {self._options.world!r} "
                                       "in this process")
        # The first frame would otherwise pay for building the background (tens of ms): pay it here.
        await asyncio.to_thread(prepare, (self._options.width, self._options.height))
        self._world = world
        self.context.log.info("simulated camera looking at world", world=self._options.world)
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

    async def capture(self, product: int | None = None) -> Frame:
        """Render the pack's frame off the event loop, or serve it pre-rendered; TransientDeviceError when it cannot."""
        world = self._world
        if world is None:
            raise TransientDeviceError("the simulated camera is not connected")
        if not world.camera_frames:
            # The world's camera stalled (a fault): no frame comes, as from a real camera that hung.
            try:
                async with asyncio.timeout(self.context.response_timeout_s):
                    await world.wait_camera_frames()
            except TimeoutError as err:
                raise TransientDeviceError(f"no frame within {self.context.response_timeout_s} s: the camera "
                                           "stalled") from err
        pack = world.product(product) if product is not None else world.in_view()
        if pack is None:
            raise TransientDeviceError(f"no pack {product} on the simulated line" if product is not None
                                       else "no pack has passed the camera yet")
        codes = self._codes(world, pack)
        o = self._options
        size = (o.width, o.height)
        frames = _prerendered.get(o.world)
        key = (pack.seq, tuple(codes), pack.defects)
        ready = frames.take(key, size, o.module_px, o.seed) if frames is not None else None
        if ready is not None:
            # A copy of the background with the code pasted in: a memcpy, cheaper than a hop to a thread.
            image = ready.image()
        else:
            try:
                async with asyncio.timeout(self.context.response_timeout_s):
                    image = await asyncio.to_thread(render, codes, pack.defects, size=size, module_px=o.module_px,
                                                    rng=frame_rng(o.seed, pack.seq))
            except TimeoutError as err:
                raise TransientDeviceError(f"rendering pack {pack.seq} took longer than "
                                           f"{self.context.response_timeout_s} s") from err
        self._frames += 1
        return Frame(image=image, seq=self._frames, at=self.context.clock(), product=pack.seq)

    @staticmethod
    def _codes(world: LineWorld, pack: SimProduct) -> list[str]:
        """Return what is printed on the pack as the camera sees it, after the planned data defects."""
        kinds = {d.kind for d in pack.defects}
        if pack.code is None or DefectKind.MISSING in kinds:
            return []
        return codes_in_view(pack.code, _previous_code(world, pack.seq), kinds)


def _previous_code(world: LineWorld, seq: int) -> str | None:
    """Return the code on the nearest earlier pack that had one printed."""
    for earlier in range(seq - 1, 0, -1):
        pack = world.product(earlier)
        if pack is None:
            return None
        if pack.code is not None:
            return pack.code
    return None
