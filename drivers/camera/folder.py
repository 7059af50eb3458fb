"""Replay of recorded frames: a folder of images handed out one per capture, in file-name order.

Used to re-run a line's inspection on frames recorded from a real camera, and in tests. The device's transport
URL is ignored (the configuration still needs one; ``socket://localhost:1`` will do): the folder is the
`FolderCamera.Options.path` option. The folder is listed once, at connect(): files added later are not seen
until a new driver connects. Images are decoded with OpenCV in a worker thread, so a large frame never blocks
the event loop; colour images become 8-bit grayscale (luma by default, or one channel: a monochrome line camera
under red light sees roughly the red channel), converted as `OpenCvCamera` converts; 16-bit images keep their
upper 8 bits.
"""

from __future__ import annotations

import asyncio
from pathlib import Path  # noqa: TC003 - pydantic needs the type at run time for the path option
from typing import TYPE_CHECKING, Final, Literal

import cv2
import numpy as np
from pydantic import Field

from drivers.base import DeviceInfo, DriverContext, DriverOptions
from drivers.camera.base import Frame, ImageSource
from drivers.camera.opencv import to_gray
from edge.errors import DeviceRejectedError, TransientDeviceError

if TYPE_CHECKING:
    import numpy.typing as npt

MODEL: Final = "image folder"

FOLDER_CHECK_INTERVAL_S: Final = 5.0
"""How often run() looks that the folder is still there (a network share can go away); a capture in between
fails on its own file anyway, so this only makes a lost folder show up while the line is idle."""

CHANNELS: Final[dict[str, int]] = {"blue": 0, "green": 1, "red": 2}
"""OpenCV's channel order is BGR."""


class FolderCamera(ImageSource):
    """Frames from image files in a folder, in name order, optionally looping."""

    class Options(DriverOptions):
        """Where the frames are and how to hand them out."""

        path: Path
        """The folder holding the frames."""
        pattern: str = Field("*.png", min_length=1)
        """Which files are frames (a glob, matched in the folder only, not below it)."""
        loop: bool = False
        """Start again from the first frame after the last; off: a capture after the last frame fails."""
        grayscale: Literal["luma", "red", "green", "blue"] = "luma"
        """How colour images become gray: luma (ITU-R BT.601, OpenCV's conversion) or one colour channel."""

    def __init__(self, context: DriverContext, options: DriverOptions) -> None:
        if not isinstance(options, FolderCamera.Options):
            raise TypeError(f"FolderCamera takes FolderCamera.Options, not {type(options).__name__}")
        super().__init__(context, options)
        self._options = options
        self._files: list[Path] = []
        self._next = 0
        self._seq = 0
        self._used = False
        self._connected = False
        self._lock = asyncio.Lock()

    @property
    def files(self) -> tuple[Path, ...]:
        """The frames found at connect(), in the order they are handed out."""
        return tuple(self._files)

    async def connect(self) -> DeviceInfo:
        """List the folder; DeviceRejectedError when it is missing or holds no file matching the pattern."""
        if self._used:
            raise RuntimeError("a driver is single-use: make a new one to reconnect")
        self._used = True
        folder = self._options.path
        files = await asyncio.to_thread(_list, folder, self._options.pattern)
        if files is None:
            raise DeviceRejectedError(f"image folder {folder} does not exist or is not a folder")
        if not files:
            raise DeviceRejectedError(f"image folder {folder} holds no file matching {self._options.pattern!r}")
        self._files = files
        self._connected = True
        self.context.log.info("image folder open", path=str(folder), frames=len(files))
        return DeviceInfo(model=MODEL, serial_number=str(folder))

    async def run(self) -> None:
        """Look now and then that the folder is still there; TransientDeviceError once it is gone."""
        if not self._connected:
            raise RuntimeError("run() needs a connected driver: call connect() first")
        while True:
            await self.context.sleep(FOLDER_CHECK_INTERVAL_S)
            if not await asyncio.to_thread(self._options.path.is_dir):
                raise TransientDeviceError(f"image folder {self._options.path} is gone")

    async def close(self) -> None:
        """Forget the listing; idempotent and never raises."""
        self._connected = False

    async def capture(self, product: int | None = None) -> Frame:
        """Return the next frame in name order; TransientDeviceError naming the file if unreadable, or when done."""
        if not self._connected:
            raise TransientDeviceError("the image folder is not open")
        async with self._lock:  # two captures at once still take two different files, in order
            if self._next >= len(self._files):
                if not self._options.loop:
                    raise TransientDeviceError(
                        f"image folder {self._options.path}: all {len(self._files)} frames were replayed"
                    )
                self._next = 0
            path = self._files[self._next]
            self._next += 1
            self._seq += 1
            seq = self._seq
        try:
            async with asyncio.timeout(self.context.response_timeout_s):
                image = await asyncio.to_thread(_read, path, self._options.grayscale)
        except TimeoutError as err:
            raise TransientDeviceError(f"reading frame {path} took over {self.context.response_timeout_s:g} s") from err
        if image is None:
            raise TransientDeviceError(f"frame {path} cannot be read as an image")
        return Frame(image=image, seq=seq, at=self.context.clock(), product=product)


def _list(folder: Path, pattern: str) -> list[Path] | None:
    """Return the files in folder matching pattern, sorted by name; None when folder is not a folder."""
    if not folder.is_dir():
        return None
    return sorted((p for p in folder.glob(pattern) if p.is_file()), key=lambda p: p.name)


def _read(path: Path, grayscale: str) -> npt.NDArray[np.uint8] | None:
    """Decode one image as 8-bit grayscale (blocking: runs in a worker thread); None when it cannot be read."""
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None or image.size == 0:
        return None
    if grayscale == "luma" or image.ndim == 2:  # a gray image has no channel to pick
        return to_gray(image)
    if image.dtype == np.uint16:
        image = np.right_shift(image, 8).astype(np.uint8)
    return np.ascontiguousarray(image[:, :, CHANNELS[grayscale]], dtype=np.uint8)
