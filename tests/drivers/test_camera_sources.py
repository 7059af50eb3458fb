"""FolderCamera over real image files, OpenCvCamera over a real video file written by cv2.VideoWriter."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import cv2
import numpy as np
import pydantic
import pytest
import structlog

from drivers.base import DeviceEvent, DriverContext
from drivers.camera.base import Frame, ImageSource
from drivers.camera.folder import FOLDER_CHECK_INTERVAL_S, FolderCamera
from drivers.camera.opencv import OpenCvCamera
from drivers.transport.spec import TransportSpec
from edge.errors import DeviceRejectedError, TransientDeviceError
from edge.registry import driver_class

if TYPE_CHECKING:
    from pathlib import Path

AT = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
DEVICE = "camera-1"
HANG_GUARD_S = 10.0
"""Only a guard against a hang; nothing here measures time."""
UNUSED_URL = TransportSpec(url="socket://localhost:1")

SIZE = (48, 64)  # rows, columns
LEVELS = [40, 80, 120, 160, 200, 240]
"""Gray level of each frame of the test video, in order (MJPG keeps flat frames within a few levels)."""


async def _ignore(event: DeviceEvent) -> None:
    pass


def make_context(sleep=asyncio.sleep) -> DriverContext:
    return DriverContext(
        device_id=DEVICE,
        transport=UNUSED_URL,
        events=_ignore,
        log=structlog.get_logger().bind(device=DEVICE),
        clock=lambda: AT,
        sleep=sleep,
        connect_timeout_s=5.0,
        response_timeout_s=5.0,
    )


def write_frames(folder: Path) -> None:
    """Write three PNGs: a gray one, a colour one (B=10, G=20, R=30), a 16-bit one; names not in write order."""
    folder.mkdir(exist_ok=True)
    assert cv2.imwrite(str(folder / "b.png"), np.full(SIZE, 100, np.uint8))
    colour = np.zeros((*SIZE, 3), np.uint8)
    colour[:, :] = (10, 20, 30)
    assert cv2.imwrite(str(folder / "a.png"), colour)
    assert cv2.imwrite(str(folder / "c.png"), np.full(SIZE, 200 * 256, np.uint16))


async def capture(camera: ImageSource, product: int | None = None) -> Frame:
    async with asyncio.timeout(HANG_GUARD_S):
        return await camera.capture(product)


# -- FolderCamera -----------------------------------------------------------------------------------------


async def test_folder_frames_come_in_name_order_as_grayscale(tmp_path):
    write_frames(tmp_path)
    (tmp_path / "notes.txt").write_text("not a frame")
    camera = FolderCamera(make_context(), FolderCamera.Options(path=tmp_path))
    info = await camera.connect()
    assert info.model == "image folder"
    assert [p.name for p in camera.files] == ["a.png", "b.png", "c.png"]
    frames = [await capture(camera, product) for product in (7, 8, 9)]
    await camera.close()
    luma = round(0.114 * 10 + 0.587 * 20 + 0.299 * 30)
    assert [int(f.image[0, 0]) for f in frames] == [luma, 100, 200]
    assert all(f.image.dtype == np.uint8 and f.image.shape == SIZE for f in frames)
    assert [(f.seq, f.product, f.at) for f in frames] == [(1, 7, AT), (2, 8, AT), (3, 9, AT)]


@pytest.mark.parametrize(("channel", "value"), [("blue", 10), ("green", 20), ("red", 30)])
async def test_folder_grayscale_can_take_one_channel(tmp_path, channel, value):
    write_frames(tmp_path)
    camera = FolderCamera(make_context(), FolderCamera.Options(path=tmp_path, grayscale=channel))
    await camera.connect()
    frame = await capture(camera)
    await camera.close()
    assert frame.image.shape == SIZE
    assert int(frame.image[5, 5]) == value


async def test_folder_exhausted_without_loop_and_wraps_with_loop(tmp_path):
    write_frames(tmp_path)
    once = FolderCamera(make_context(), FolderCamera.Options(path=tmp_path, pattern="[ab].png"))
    await once.connect()
    await capture(once)
    await capture(once)
    with pytest.raises(TransientDeviceError, match="all 2 frames were replayed"):
        await capture(once)
    looping = FolderCamera(make_context(), FolderCamera.Options(path=tmp_path, pattern="[ab].png", loop=True))
    await looping.connect()
    levels = [int((await capture(looping)).image[0, 0]) for _ in range(5)]
    assert levels[2:4] == levels[0:2]
    assert [f.seq for f in [await capture(looping)]] == [6]


async def test_an_unreadable_file_is_named_and_the_next_one_still_comes(tmp_path):
    write_frames(tmp_path)
    (tmp_path / "a.png").write_bytes(b"not a png at all")
    camera = FolderCamera(make_context(), FolderCamera.Options(path=tmp_path))
    await camera.connect()
    with pytest.raises(TransientDeviceError, match=r"a\.png"):
        await capture(camera)
    assert int((await capture(camera)).image[0, 0]) == 100


async def test_folder_connect_needs_a_folder_with_frames(tmp_path):
    missing = FolderCamera(make_context(), FolderCamera.Options(path=tmp_path / "nope"))
    with pytest.raises(DeviceRejectedError, match="does not exist"):
        await missing.connect()
    empty = FolderCamera(make_context(), FolderCamera.Options(path=tmp_path, pattern="*.bmp"))
    with pytest.raises(DeviceRejectedError, match=r"no file matching '\*\.bmp'"):
        await empty.connect()
    with pytest.raises(RuntimeError, match="single-use"):
        await empty.connect()


async def test_folder_run_notices_the_folder_going_away(tmp_path):
    folder = tmp_path / "frames"
    write_frames(folder)
    looked = asyncio.Event()
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)
        looked.set()
        await asyncio.sleep(0)

    camera = FolderCamera(make_context(sleep), FolderCamera.Options(path=folder))
    await camera.connect()
    task = asyncio.create_task(camera.run())
    async with asyncio.timeout(HANG_GUARD_S):
        await looked.wait()
    for path in folder.iterdir():
        path.unlink()
    folder.rmdir()
    with pytest.raises(TransientDeviceError, match="gone"):
        async with asyncio.timeout(HANG_GUARD_S):
            await task
    assert set(waits) == {FOLDER_CHECK_INTERVAL_S}
    await camera.close()
    await camera.close()
    with pytest.raises(TransientDeviceError, match="not open"):
        await camera.capture()


def test_folder_options():
    with pytest.raises(pydantic.ValidationError):
        FolderCamera.Options.model_validate({"path": "/x", "grayscale": "purple"})
    with pytest.raises(pydantic.ValidationError):
        FolderCamera.Options.model_validate({"path": "/x", "recursive": True})
    with pytest.raises(TypeError):
        FolderCamera(make_context(), OpenCvCamera.Options(source=0))


# -- OpenCvCamera -----------------------------------------------------------------------------------------


@pytest.fixture
def video(tmp_path) -> Path:
    """An MJPG .avi of flat colour frames whose gray levels are LEVELS, in order."""
    path = tmp_path / "line.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), 25.0, (SIZE[1], SIZE[0]))
    assert writer.isOpened(), "headless OpenCV cannot write MJPG/.avi here"
    try:
        for level in LEVELS:
            frame = np.zeros((*SIZE, 3), np.uint8)
            frame[:, :] = (level, level, level)
            writer.write(frame)
    finally:
        writer.release()
    return path


async def capture_until_failure(camera: ImageSource, limit: int) -> tuple[list[Frame], TransientDeviceError]:
    """Capture until a capture fails (at most limit times); return the frames and the failure."""
    frames: list[Frame] = []
    for _ in range(limit):
        try:
            frames.append(await capture(camera, product=len(frames)))
        except TransientDeviceError as err:
            return frames, err
    pytest.fail(f"no capture failed in {limit}")


def level_index(frame: Frame) -> int:
    """Return which of LEVELS a frame shows (MJPG moves flat levels by a few units at most)."""
    mean = float(frame.image.mean())
    index = min(range(len(LEVELS)), key=lambda i: abs(LEVELS[i] - mean))
    assert abs(LEVELS[index] - mean) < 8, mean
    return index


async def test_opencv_frames_from_a_video_file_are_gray_fresh_and_in_order(video):
    camera = OpenCvCamera(make_context(), OpenCvCamera.Options(source=str(video), fps=200))
    info = await camera.connect()
    try:
        assert info.model.startswith("OpenCV VideoCapture")
        frames, error = await capture_until_failure(camera, len(LEVELS) + 1)
    finally:
        await camera.close()
    assert "reading a frame failed" in str(error)  # the file ends: a read fails, as a camera unplugged
    assert frames
    assert all(f.image.dtype == np.uint8 and f.image.shape == SIZE for f in frames)
    indexes = [level_index(f) for f in frames]
    assert indexes == sorted(set(indexes))  # never the same frame twice, never backwards
    assert [f.seq for f in frames] == sorted({f.seq for f in frames})
    assert [f.product for f in frames] == list(range(len(frames)))


async def test_opencv_run_ends_with_the_source_and_loop_file_keeps_it_going(video):
    ended = OpenCvCamera(make_context(), OpenCvCamera.Options(source=str(video), fps=500))
    await ended.connect()
    try:
        with pytest.raises(TransientDeviceError, match="end of stream"):
            async with asyncio.timeout(HANG_GUARD_S):
                await ended.run()
    finally:
        await ended.close()
    looping = OpenCvCamera(make_context(), OpenCvCamera.Options(source=str(video), fps=500, loop_file=True))
    await looping.connect()
    try:
        frames = [await capture(looping) for _ in range(3 * len(LEVELS))]
    finally:
        await looping.close()
    assert len({f.seq for f in frames}) == len(frames)


async def test_opencv_a_source_that_cannot_open_fails_connect(tmp_path):
    camera = OpenCvCamera(make_context(), OpenCvCamera.Options(source=str(tmp_path / "missing.avi")))
    with pytest.raises(TransientDeviceError, match="cannot be opened"):
        await camera.connect()
    await camera.close()
    with pytest.raises(TransientDeviceError, match="not open"):
        await OpenCvCamera(make_context(), OpenCvCamera.Options(source=0)).capture()


async def test_opencv_close_stops_a_running_worker_and_is_idempotent(video):
    # A frame a second; the grab timeout outlasts the pause between frames, so a slow machine still gets one.
    options = OpenCvCamera.Options(source=str(video), fps=1, loop_file=True, grab_timeout_s=HANG_GUARD_S / 2)
    camera = OpenCvCamera(make_context(), options)
    await camera.connect()
    try:
        await capture(camera)
    finally:
        await asyncio.gather(camera.close(), camera.close())  # the worker is paused a second between frames
    await camera.close()
    with pytest.raises(RuntimeError, match="single-use"):
        await camera.connect()


def test_opencv_options():
    assert OpenCvCamera.Options.model_validate({"source": 0}).source == 0
    assert OpenCvCamera.Options.model_validate({"source": "rtsp://cam/1"}).source == "rtsp://cam/1"
    with pytest.raises(pydantic.ValidationError):
        OpenCvCamera.Options.model_validate({"source": 0, "width": 0})
    with pytest.raises(pydantic.ValidationError):
        OpenCvCamera.Options.model_validate({"source": 0, "exposure": 3})


def test_both_are_cameras():
    assert FolderCamera.role == OpenCvCamera.role == "camera"
    assert issubclass(FolderCamera, ImageSource)
    assert issubclass(OpenCvCamera, ImageSource)


def test_registered():
    assert driver_class("camera.folder") is FolderCamera
    assert driver_class("camera.opencv") is OpenCvCamera
