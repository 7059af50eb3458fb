"""The camera role: anything that hands the line a grayscale image of the pack under inspection.

Image sources are cameras (OpenCV `VideoCapture` for USB and RTSP), a folder of recorded frames (replay), and
the simulated camera that renders what the simulated printer put on each pack. A smart reader that decodes on
its own is a `drivers.scanner.base.CodeReader` instead. Decoding and grading happen in `edge.vision`, off the
event loop, whatever the source.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from drivers.base import DeviceEvent, Driver

if TYPE_CHECKING:
    from datetime import datetime

    import numpy as np
    import numpy.typing as npt


@dataclass(frozen=True, slots=True)
class Frame:
    """One image as the source delivered it: 8-bit grayscale, rows by columns."""

    image: npt.NDArray[np.uint8]
    seq: int
    """The source's own frame counter (1 for the first frame since connect)."""
    at: datetime
    product: int | None = None
    """The product sequence number this frame was taken for, when the trigger said."""


@dataclass(frozen=True, slots=True, kw_only=True)
class FrameCaptured(DeviceEvent):
    """A free-running source took a frame nobody asked for (the line may inspect or ignore it)."""

    frame: Frame


class ImageSource(Driver, abc.ABC):
    """A camera. Contract for every implementation.

    - capture() returns the frame for one product (a triggered acquisition), within the context's response
      timeout; a source that cannot deliver raises `TransientDeviceError` (the line rejects that pack).
    - Frames are 2-D uint8 arrays; colour sources convert to grayscale before returning.
    - run() keeps the link supervised (and may emit `FrameCaptured` for free-running sources) until the source
      is lost (raise `TransientDeviceError`) or cancelled.
    """

    role: ClassVar[str] = "camera"

    @abc.abstractmethod
    async def capture(self, product: int | None = None) -> Frame:
        """Take (or fetch) the frame of the product now at the camera."""
