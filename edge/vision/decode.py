"""Find and decode the DataMatrix symbols in a camera frame, tuned for a fixed line camera.

zxing-cpp does the work, told only what a line needs: DataMatrix only, ``TextMode.Plain`` so GS (FNC1
after the first position) stays in the text, and no rotation, inversion or downscaling passes unless
configured (with its defaults zxing-cpp spends most of its time on those: about 8 ms against 0.7 ms on a
rendered 1280x1024 pack frame here). The search goes, stopping at the first pass that finds anything:

1. with ``track_last_hit``: a window around the previous hit (the pack pitch and trigger jitter keep the
   code near where it was); this pass cannot see a second code elsewhere in the frame, so it is off by
   default: with it, MULTIPLE_CODES is only caught when both codes fall in the window;
2. the configured region of interest (``roi``), or the whole frame;
3. the whole frame, when a configured ROI found nothing (``roi_fallback_full``);
4. pylibdmtx as a second opinion (``fallback``), only when zxing-cpp found nothing, on the same region,
   within ``fallback_budget_ms`` (libdmtx's own ``timeout``; it checks the clock between candidate
   regions, so one region's work may overrun it) with ``max_count`` and ``shrink``.

Positions are always in full-frame pixels, whatever region was searched.

libdmtx (0.7.7 here) drops FNC1 from GS1 DataMatrix and reports no symbology identifier, so a libdmtx read
has ``symbology_identifier=None``, ``fnc1_lost=True`` and its text exactly as read (no GS is ever put back).
It is re-read as GS1 by walking the AI table over the text and trying every split a variable-length AI
allows: only when exactly one split gives elements of valid length and character set is it ``gs1=True``
with those ``elements``; otherwise (the usual pharma order 01 17 10 21 is ambiguous, since a lot may end in
"21...") it is marked non-GS1 and a verdict must compare it with the expected element string with the GS
removed. Verified against zxing-cpp 3.1.1 and pylibdmtx 0.1.10 on rendered frames and the zxing-cpp corpus;
libdmtx's positions are an axis-aligned box (its rotation is not reported through pylibdmtx).
"""

from __future__ import annotations

import asyncio
import importlib
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Literal, Self

import cv2
import numpy as np
import zxingcpp
from pydantic import BaseModel, ConfigDict, Field

from edge.gs1.ai import lookup_prefix
from edge.gs1.element import parse
from edge.gs1.errors import Gs1SyntaxError

if TYPE_CHECKING:
    from types import ModuleType, TracebackType

    import numpy.typing as npt

__all__ = ["Decoded", "Decoder", "DecoderOptions", "Point", "Symbol", "reparse_without_fnc1"]

Point = tuple[int, int]
Corners = tuple[Point, Point, Point, Point]
"""Top-left, top-right, bottom-right, bottom-left in the symbol's own orientation (libdmtx: the image's)."""

GS1_DATAMATRIX: Final = "]d2"
GS: Final = "\x1d"
MAX_REPARSE_CANDIDATES: Final = 2
"""A libdmtx text is GS1 only when exactly one split exists: counting past two is wasted work."""

DATAMATRIX: Final = zxingcpp.BarcodeFormats(zxingcpp.BarcodeFormat.DataMatrix)
BINARIZERS: Final = {
    "local-average": zxingcpp.Binarizer.LocalAverage,
    "global-histogram": zxingcpp.Binarizer.GlobalHistogram,
    "fixed-threshold": zxingcpp.Binarizer.FixedThreshold,
}


class DecoderOptions(BaseModel):
    """How one camera's frames are searched; unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    roi: tuple[int, int, int, int] | None = None
    """Region of interest (x, y, width, height) in pixels; None searches the whole frame."""
    roi_fallback_full: bool = True
    """When the ROI finds nothing, search the whole frame before giving up."""
    track_last_hit: bool = False
    """Search a window around the previous hit first (fast; blind to a second code outside the window)."""
    last_hit_margin: float = Field(1.0, ge=0.1, le=10.0)
    """Window margin around the previous hit on each side, in symbol sizes."""
    try_rotate: bool = False
    """Let zxing-cpp also try 90°/270° turned images (a camera mounted across the belt needs no such pass)."""
    try_invert: bool = False
    """Also try light-on-dark symbols (laser on dark packaging)."""
    try_downscale: bool = False
    """Also search downscaled copies (symbols much bigger than the module size the camera was set up for)."""
    is_pure: bool = False
    """The image holds nothing but one aligned symbol (generated images, not camera frames)."""
    binarizer: Literal["local-average", "global-histogram", "fixed-threshold"] = "local-average"
    """zxing-cpp's binarizer: local-average copes with uneven light; the others are faster on even light."""
    max_symbols: int = Field(4, ge=1, le=64)
    """Report at most this many symbols per frame."""
    fallback: bool = True
    """Ask pylibdmtx when zxing-cpp finds nothing."""
    fallback_budget_ms: int = Field(30, ge=1, le=5000)
    """libdmtx's timeout: how long the second opinion may search."""
    fallback_shrink: int = Field(2, ge=1, le=8)
    """libdmtx searches an image shrunk by this factor (modules must stay at least ~2 px after shrinking)."""
    workers: int = Field(1, ge=1, le=16)
    """Threads of the decoder's own pool for decode_async."""


@dataclass(frozen=True, slots=True)
class Symbol:
    """One decoded symbol."""

    text: bytes
    """The data as decoded, GS (0x1D) kept where the symbol had FNC1 (zxing-cpp); libdmtx: see fnc1_lost."""
    symbology_identifier: str | None
    """AIM identifier, ``]d2`` for GS1 DataMatrix, ``]d1`` plain; None when the decoder does not say (libdmtx)."""
    format: str
    position: Corners
    """Corner points (x, y) in full-frame pixels."""
    decoder: Literal["zxing-cpp", "libdmtx"]
    gs1: bool
    """The data is GS1 element strings (``]d2``, or a libdmtx text with exactly one AI split)."""
    elements: tuple[tuple[str, str], ...] | None = None
    """The (AI, value) pairs when gs1 and they could be split; None otherwise."""
    fnc1_lost: bool = False
    """The decoder drops FNC1 (libdmtx): compare with an expected element string with its GS removed."""
    unused_ec: float | None = None
    """Unused error correction (1 = none needed, 0 = all used) as the decoder reports it; None if it does not."""
    version: str | None = None
    """Symbol size as rows x columns, e.g. ``22x22``, when the decoder reports it."""
    orientation: int = 0
    """Degrees the symbol is turned in the image, when the decoder reports it."""

    @property
    def text_str(self) -> str:
        """The text as Latin-1 (one character per byte, GS as U+001D)."""
        return self.text.decode("latin-1")


@dataclass(frozen=True, slots=True)
class Decoded:
    """Everything found in one frame, and the time it took."""

    symbols: tuple[Symbol, ...]
    ms: float
    """Wall-clock milliseconds spent in decode(), on the thread that ran it."""
    found_by: Literal["last-hit", "roi", "frame", "libdmtx", "none"]
    """Which pass found the symbols."""


def _component_ok(value: str, min_length: int, max_length: int, charset: str) -> bool:
    if not min_length <= len(value) <= max_length:
        return False
    if charset == "N":
        return value.isdigit()
    return all(32 < ord(c) < 127 for c in value)


def reparse_without_fnc1(text: str) -> tuple[tuple[str, str], ...] | None:
    """Split GS1 data whose FNC1 separators were lost into (AI, value) pairs, when exactly one split exists.

    Every AI is looked up in the GS1 table; a predefined-length AI takes its length, a variable-length one
    every length its bounds allow. A candidate element must have a valid length and, for numeric AIs, only
    digits. None when no split or more than one exists (then nobody can know where the values end).
    """
    memo: dict[int, int] = {}
    choice: dict[int, tuple[str, int]] = {}

    def count(i: int) -> int:
        if i == len(text):
            return 1
        if i in memo:
            return memo[i]
        total = 0
        spec = lookup_prefix(text, i)
        if spec is not None:
            start = i + len(spec.ai)
            numeric = spec.charset == "N"
            lengths = [spec.max_length] if not spec.fnc1 else range(spec.min_length, spec.max_length + 1)
            for length in lengths:
                end = start + length
                if end > len(text):
                    break
                value = text[start:end]
                if not _component_ok(value, spec.min_length, spec.max_length, "N" if numeric else "X"):
                    continue
                found = count(end)
                if found:
                    choice[i] = (spec.ai, end)
                total += found
                if total >= MAX_REPARSE_CANDIDATES:
                    break
        memo[i] = total
        return total

    if not text or count(0) != 1:
        return None
    pairs: list[tuple[str, str]] = []
    i = 0
    while i < len(text):
        ai, end = choice[i]
        pairs.append((ai, text[i + len(ai):end]))
        i = end
    return tuple(pairs)


def load_pylibdmtx() -> ModuleType:
    """Import pylibdmtx on first use, without its import-time distutils deprecation warning."""
    with warnings.catch_warnings():
        # pylibdmtx 0.1.10 compares library versions with distutils, which warns on import.
        warnings.filterwarnings("ignore", message="distutils Version classes", category=DeprecationWarning)
        return importlib.import_module("pylibdmtx.pylibdmtx")  # the second opinion, loaded only when needed


def _to_gray(image: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    if image.dtype != np.uint8:
        raise ValueError(f"frames are 8-bit images, not {image.dtype}")
    if image.ndim == 2:
        return image
    if image.ndim == 3 and image.shape[2] == 3:
        return np.asarray(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY), dtype=np.uint8)
    if image.ndim == 3 and image.shape[2] == 1:
        return np.asarray(image[:, :, 0], dtype=np.uint8)
    raise ValueError(f"frames are grayscale or BGR images, not of shape {image.shape}")


Box = tuple[int, int, int, int]
"""x, y, width, height."""


def _clip(box: Box, shape: tuple[int, ...]) -> Box | None:
    x, y, w, h = box
    height, width = shape[0], shape[1]
    x0, y0, x1, y1 = max(0, x), max(0, y), min(width, x + w), min(height, y + h)
    if x1 <= x0 or y1 <= y0:
        return None
    return x0, y0, x1 - x0, y1 - y0


class Decoder:
    """Decodes frames of one camera; decode() is thread-safe, decode_async() runs on the decoder's own pool."""

    def __init__(self, options: DecoderOptions | None = None) -> None:
        self.options = options or DecoderOptions()
        o = self.options
        self._binarizer = BINARIZERS[o.binarizer]
        self._lock = threading.Lock()
        self._last_hit: Box | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._closed = False

    # -- the synchronous core -------------------------------------------------------------------------------

    def decode(self, image: npt.NDArray[np.uint8]) -> Decoded:
        """Find and decode the symbols in one frame (grayscale or BGR uint8); raise ValueError for other arrays."""
        started = time.perf_counter()
        gray = _to_gray(image)
        o = self.options
        roi = None
        if o.roi is not None:
            roi = _clip(o.roi, gray.shape)
            if roi is None:
                raise ValueError(f"the region of interest {o.roi} lies outside the {gray.shape[1]}x{gray.shape[0]} "
                                 "frame")
        found_by: Literal["last-hit", "roi", "frame", "libdmtx", "none"] = "none"
        symbols: tuple[Symbol, ...] = ()
        if o.track_last_hit:
            with self._lock:
                window = self._last_hit
            if window is not None:
                window = _clip(window, gray.shape)
            if window is not None:
                symbols = self._zxing(gray, window)
                found_by = "last-hit"
        if not symbols:
            symbols = self._zxing(gray, roi)
            found_by = "roi" if roi is not None else "frame"
        if not symbols and roi is not None and o.roi_fallback_full:
            symbols = self._zxing(gray, None)
            found_by = "frame"
        if not symbols and o.fallback:
            symbols = self._libdmtx(gray, roi if roi is not None and not o.roi_fallback_full else None)
            found_by = "libdmtx"
        if not symbols:
            found_by = "none"
        elif o.track_last_hit:
            self._remember(symbols[0])
        return Decoded(symbols, (time.perf_counter() - started) * 1000.0, found_by)

    def _remember(self, symbol: Symbol) -> None:
        xs = [p[0] for p in symbol.position]
        ys = [p[1] for p in symbol.position]
        w, h = max(xs) - min(xs) + 1, max(ys) - min(ys) + 1
        margin = round(max(w, h) * self.options.last_hit_margin)
        with self._lock:
            self._last_hit = (min(xs) - margin, min(ys) - margin, w + 2 * margin, h + 2 * margin)

    def _zxing(self, gray: npt.NDArray[np.uint8], box: Box | None) -> tuple[Symbol, ...]:
        x0, y0 = (box[0], box[1]) if box is not None else (0, 0)
        region = gray if box is None else gray[box[1]:box[1] + box[3], box[0]:box[0] + box[2]]
        o = self.options
        found = zxingcpp.read_barcodes(
            region, formats=DATAMATRIX, try_rotate=o.try_rotate, try_invert=o.try_invert,
            try_downscale=o.try_downscale, text_mode=zxingcpp.TextMode.Plain, binarizer=self._binarizer,
            is_pure=o.is_pure,
        )
        symbols = []
        for barcode in [b for b in found if b.valid][: o.max_symbols]:  # is_pure yields an empty result on a miss
            p = barcode.position
            corners: Corners = tuple(  # type: ignore[assignment]
                (q.x + x0, q.y + y0) for q in (p.top_left, p.top_right, p.bottom_right, p.bottom_left)
            )
            extra = barcode.extra if isinstance(barcode.extra, dict) else {}
            identifier = barcode.symbology_identifier or None
            text = barcode.bytes
            gs1 = identifier == GS1_DATAMATRIX
            elements = None
            if gs1:
                try:
                    elements = tuple(parse(text).pairs)
                except Gs1SyntaxError:
                    elements = None
            uec = extra.get("UEC")
            version = extra.get("Version")
            symbols.append(Symbol(
                text=bytes(text), symbology_identifier=identifier, format=barcode.format.name, position=corners,
                decoder="zxing-cpp", gs1=gs1, elements=elements,
                unused_ec=float(uec) if isinstance(uec, (int, float)) else None,
                version=version if isinstance(version, str) else None, orientation=int(barcode.orientation),
            ))
        return tuple(symbols)

    def _libdmtx(self, gray: npt.NDArray[np.uint8], box: Box | None) -> tuple[Symbol, ...]:
        pylibdmtx = load_pylibdmtx()
        o = self.options
        x0, y0 = (box[0], box[1]) if box is not None else (0, 0)
        region = gray if box is None else gray[box[1]:box[1] + box[3], box[0]:box[0] + box[2]]
        region = np.ascontiguousarray(region)
        height = region.shape[0]
        found = pylibdmtx.decode(region, timeout=o.fallback_budget_ms, max_count=o.max_symbols,
                                 shrink=o.fallback_shrink)
        symbols = []
        for item in found[: o.max_symbols]:
            left, top, w, h = item.rect
            # libdmtx measures y upwards from the image's bottom edge.
            x_lo, x_hi = sorted((left, left + w))
            y_lo, y_hi = sorted((height - top - h, height - top))
            corners: Corners = ((x_lo + x0, y_lo + y0), (x_hi + x0, y_lo + y0), (x_hi + x0, y_hi + y0),
                                (x_lo + x0, y_hi + y0))
            data = bytes(item.data)
            elements = reparse_without_fnc1(data.decode("latin-1"))
            symbols.append(Symbol(
                text=data, symbology_identifier=None, format="DataMatrix", position=corners, decoder="libdmtx",
                gs1=elements is not None, elements=elements, fnc1_lost=True,
            ))
        return tuple(symbols)

    # -- off the event loop -----------------------------------------------------------------------------------

    async def decode_async(self, image: npt.NDArray[np.uint8]) -> Decoded:
        """Decode on the decoder's own thread pool so the event loop never blocks on a frame.

        Cancelling the await abandons the result; the frame's decode still finishes on its thread.
        """
        if self._closed:
            raise RuntimeError("the decoder is closed")
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=self.options.workers, thread_name_prefix="lineside-decode")
        return await asyncio.get_running_loop().run_in_executor(self._executor, self.decode, image)

    def close(self) -> None:
        """Stop the pool after the frames in hand are decoded; idempotent. decode() keeps working."""
        self._closed = True
        executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()
