"""From a camera frame to the reads the verdict needs: decode and grade, on a worker thread, in camera order.

A libdmtx second opinion loses FNC1; when it split into AIs in exactly one way (`edge.vision.decode`) the
element string is rebuilt from those AIs with GS where GS1 puts them, so the verdict compares like with
like. Otherwise its text goes to the verdict as it is, and fails there as WRONG_DATA rather than being
guessed at.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from edge.gs1.element import build
from edge.line.verdict import GS1_DATAMATRIX, Read
from edge.vision.decode import Decoder, DecoderOptions, load_pylibdmtx
from edge.vision.grade import grade

if TYPE_CHECKING:
    from collections.abc import Mapping

    import numpy as np
    import numpy.typing as npt


class Reading:
    """One camera's decoder and grader, on one worker thread so frames are judged in the order they came."""

    def __init__(self, options: Mapping[str, Any]) -> None:
        self.options = DecoderOptions.model_validate(dict(options))
        self._decoder = Decoder(self.options)
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="lineside-reading")
        if self.options.fallback:
            # Loading libdmtx takes a fifth of a second: done now, on the worker frames queue behind, not by the
            # first unreadable pack, whose verdict would come after it reached the reject station at full rate.
            self._pool.submit(load_pylibdmtx)

    async def inspect(self, image: npt.NDArray[np.uint8]) -> list[Read]:
        """Return every code in the frame with its overall grade (decoded and graded off the event loop)."""
        return await asyncio.get_running_loop().run_in_executor(self._pool, self.read, image)

    def read(self, image: npt.NDArray[np.uint8]) -> list[Read]:
        """Decode and grade one frame (blocking)."""
        decoded = self._decoder.decode(image)
        reads = []
        for symbol in decoded.symbols:
            text, symbology = symbol.text, symbol.symbology_identifier or ""
            if symbol.fnc1_lost and symbol.elements:
                text, symbology = build(symbol.elements, check=False).encode("latin-1"), GS1_DATAMATRIX
            reads.append(Read(text, symbology, grade(image, symbol).overall))
        return reads

    def close(self) -> None:
        """Stop the worker thread and the decoder's own pool."""
        self._pool.shutdown(wait=True)
        self._decoder.close()
