"""Cameras OpenCV can open: USB (V4L2 device index), RTSP or HTTP streams, and video files, through `VideoCapture`.

One worker thread per camera owns the `VideoCapture`: it opens it, applies the size and rate hints, and grabs
frames continuously, keeping only the newest (converted to 8-bit grayscale in the thread). The event loop never
calls OpenCV. capture() hands out the first frame grabbed after it was called, so a frame always shows what was
in front of the camera after the trigger, never a stale buffered one; close() stops the thread and joins it.

Verified here: reading video files written by `cv2.VideoWriter` (MJPG in .avi) with the headless wheel (FFMPEG
backend). Assumed: USB and RTSP sources behave like files through the same API (not testable without a camera).
A file is replayed at its own frame rate (or the ``fps`` hint) as a live camera would deliver it, once unless
``loop_file`` is set; its end is then a failed read, as a camera unplugged.

The device's transport URL is not used: the camera is the ``source`` option.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Final

import cv2
import numpy as np
from pydantic import Field

from drivers.base import DeviceInfo, DriverContext, DriverOptions
from drivers.camera.base import Frame, ImageSource
from edge.errors import TransientDeviceError

if TYPE_CHECKING:
    import numpy.typing as npt

MODEL: Final = "OpenCV VideoCapture"

GRAB_TIMEOUT_S: Final = 1.0
"""Longest capture() waits for a fresh frame. Line cameras deliver 30+ frames/s, RTSP streams 10+: a second
without one means the stream stalled, and the pack is better rejected than the line held."""

OPEN_TIMEOUT_S: Final = 10.0
"""Longest the worker may take to open the source. An RTSP connect with FFMPEG's default probing takes a few
seconds; the connect timeout of the context applies too, whichever is shorter."""

JOIN_TIMEOUT_S: Final = 5.0
"""Longest close() waits for the worker thread. A read blocked in an RTSP stream returns when FFMPEG's own
network timeout ends; past this the thread is left to finish and a warning says so."""


class OpenCvCamera(ImageSource):
    """A camera read by OpenCV in its own thread; capture() returns the first frame grabbed after the call."""

    class Options(DriverOptions):
        """Which camera and how to open it."""

        source: int | str
        """A V4L2 device index (0 for /dev/video0), an RTSP/HTTP URL, or a video file path."""
        width: int | None = Field(None, gt=0)
        """Frame width to ask the camera for (a hint: the camera may pick another)."""
        height: int | None = Field(None, gt=0)
        """Frame height to ask the camera for (a hint)."""
        fps: float | None = Field(None, gt=0)
        """Frame rate to ask the camera for; for a file, the rate it is replayed at (default: the file's own)."""
        grab_timeout_s: float = Field(GRAB_TIMEOUT_S, gt=0, le=60)
        """Longest capture() waits for a fresh frame."""
        loop_file: bool = False
        """Replay a video file from the start after its last frame, instead of failing."""

    def __init__(self, context: DriverContext, options: DriverOptions) -> None:
        if not isinstance(options, OpenCvCamera.Options):
            raise TypeError(f"OpenCvCamera takes OpenCvCamera.Options, not {type(options).__name__}")
        super().__init__(context, options)
        self._options = options
        self._used = False
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        # Written by the worker thread, read on the loop: always under _guard.
        self._guard = threading.Lock()
        self._latest: npt.NDArray[np.uint8] | None = None
        self._grabbed = 0
        self._failure: str | None = None
        self._opened: asyncio.Future[str] | None = None
        self._changed = asyncio.Event()

    async def connect(self) -> DeviceInfo:
        """Start the worker and wait until the source is open; TransientDeviceError when it cannot be opened."""
        if self._used:
            raise RuntimeError("a driver is single-use: make a new one to reconnect")
        self._used = True
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._opened = loop.create_future()
        # Daemon: a read blocked in a stalled stream must never keep the process from exiting at shutdown.
        self._thread = threading.Thread(target=self._work, name=f"camera {self.context.device_id}", daemon=True)
        self._thread.start()
        timeout = min(OPEN_TIMEOUT_S, self.context.connect_timeout_s)
        try:
            async with asyncio.timeout(timeout):
                backend = await asyncio.shield(self._opened)
        except TimeoutError as err:
            await self.close()
            raise TransientDeviceError(f"camera {self._options.source!r} did not open within {timeout:g} s") from err
        except (Exception, asyncio.CancelledError):
            await self.close()
            raise
        self.context.log.info("camera open", source=self._options.source, backend=backend)
        return DeviceInfo(model=f"{MODEL} ({backend})", serial_number=str(self._options.source))

    async def run(self) -> None:
        """Return never while frames come; TransientDeviceError once the source fails (read error, end of file)."""
        if self._thread is None:
            raise RuntimeError("run() needs a connected driver: call connect() first")
        while True:
            failure = self._state()[2]
            if failure is not None:
                raise TransientDeviceError(failure)
            self._changed.clear()
            if self._state()[2] is None:
                await self._changed.wait()

    async def close(self) -> None:
        """Stop the worker and wait for it to release the camera; idempotent and never raises."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread.is_alive():
            await asyncio.to_thread(thread.join, JOIN_TIMEOUT_S)
            if thread.is_alive():
                self.context.log.warning("camera thread still busy after close; it ends on its own",
                                         timeout=JOIN_TIMEOUT_S)
        opened = self._opened
        if opened is not None and opened.done() and not opened.cancelled():
            opened.exception()  # an open that failed after connect() gave up on it was already reported

    async def capture(self, product: int | None = None) -> Frame:
        """Return the first frame grabbed after this call; TransientDeviceError if none comes in time or reads fail."""
        if self._thread is None:
            raise TransientDeviceError("the camera is not open")
        after = self._state()[1]
        try:
            async with asyncio.timeout(self._options.grab_timeout_s):
                while True:
                    image, grabbed, failure = self._state()
                    if grabbed > after and image is not None:
                        break
                    if failure is not None:
                        raise TransientDeviceError(failure)
                    self._changed.clear()
                    if self._state()[1:] == (grabbed, failure):
                        await self._changed.wait()
        except TimeoutError as err:
            raise TransientDeviceError(
                f"camera {self._options.source!r} gave no frame within {self._options.grab_timeout_s:g} s"
            ) from err
        return Frame(image=image, seq=grabbed, at=self.context.clock(), product=product)

    # -- the worker thread ----------------------------------------------------------------------------

    def _work(self) -> None:
        """Open, grab until stopped or failed, release (runs in the worker thread)."""
        capture: cv2.VideoCapture | None = None
        try:
            capture = self._open()
            if capture is None:
                return
            self._grab_until_stopped(capture)
        except Exception as err:  # noqa: BLE001 - any OpenCV failure ends the source; the loop side raises it
            self._fail(f"camera {self._options.source!r} failed: {err}")
        finally:
            if capture is not None:
                capture.release()

    def _open(self) -> cv2.VideoCapture | None:
        options = self._options
        source = options.source
        capture = cv2.VideoCapture(source) if isinstance(source, int) else cv2.VideoCapture(source, cv2.CAP_ANY)
        if not capture.isOpened():
            capture.release()
            self._fail(f"camera {source!r} cannot be opened", opening=True)
            return None
        for prop, value in ((cv2.CAP_PROP_FRAME_WIDTH, options.width), (cv2.CAP_PROP_FRAME_HEIGHT, options.height),
                            (cv2.CAP_PROP_FPS, options.fps)):
            if value is not None:
                capture.set(prop, float(value))
        self._call(self._set_opened, capture.getBackendName())
        return capture

    def _grab_until_stopped(self, capture: cv2.VideoCapture) -> None:
        options = self._options
        is_file = isinstance(options.source, str) and Path(options.source).is_file()
        rate = options.fps or (capture.get(cv2.CAP_PROP_FPS) if is_file else 0.0)
        # A file is paced like the camera it was recorded with; a live source is paced by the camera itself.
        period = 1.0 / rate if is_file and rate > 0 else 0.0
        due = time.monotonic()
        while not self._stop.is_set():
            ok, image = capture.read()
            if not ok and is_file and options.loop_file:
                capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
                ok, image = capture.read()
            if not ok or image is None:
                self._fail(f"camera {options.source!r}: reading a frame failed (end of stream or device lost)")
                return
            gray = to_gray(image)
            with self._guard:
                self._latest = gray
                self._grabbed += 1
            self._call(self._changed.set)
            if period:
                due += period
                # Waits on the stop event, not a sleep: close() ends the pause at once.
                if self._stop.wait(max(0.0, due - time.monotonic())):
                    return

    def _fail(self, message: str, *, opening: bool = False) -> None:
        with self._guard:
            self._failure = message
        if opening:
            self._call(self._set_open_failed, message)
        self._call(self._changed.set)

    def _call(self, callback: object, *args: object) -> None:
        """Run callback on the event loop, from the worker thread."""
        loop = self._loop
        if loop is None or not callable(callback):
            return
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting any more
            loop.call_soon_threadsafe(callback, *args)

    # -- on the loop ------------------------------------------------------------------------------------

    def _state(self) -> tuple[npt.NDArray[np.uint8] | None, int, str | None]:
        with self._guard:
            return self._latest, self._grabbed, self._failure

    def _set_opened(self, backend: str) -> None:
        if self._opened is not None and not self._opened.done():
            self._opened.set_result(backend)

    def _set_open_failed(self, message: str) -> None:
        if self._opened is not None and not self._opened.done():
            self._opened.set_exception(TransientDeviceError(message))


def to_gray(image: npt.NDArray[np.integer | np.floating]) -> npt.NDArray[np.uint8]:
    """Return image as 2-D uint8 grayscale: BGR and BGRA by OpenCV's BT.601 luma, 16-bit scaled to 8."""
    if image.dtype == np.uint16:
        image = np.right_shift(image, 8).astype(np.uint8)
    if image.ndim == 3 and image.shape[2] == 3:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    elif image.ndim == 3 and image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2GRAY)
    elif image.ndim == 3:
        image = image[:, :, 0]
    return np.ascontiguousarray(image, dtype=np.uint8)
