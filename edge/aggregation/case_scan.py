"""Case scan: every unit code on top of an open case decoded from one frame, and the verdict on the set.

`CaseScanner.scan` finds all GS1 DataMatrix symbols of a case-top frame (a 5 MP camera over the packing
station, 24 to 100 and more codes) with zxing-cpp; `check` is the pure verdict: exactly the expected number
of distinct GS1 codes, or the reasons why not. Whether those codes are commissioned, not aggregated yet and
of this batch is the store's business, asked with the codes this returns.

zxing-cpp is called directly rather than through `edge.vision.decode.Decoder`: the Decoder keeps at most
``max_symbols`` symbols and its options cap that at 64 (a unit camera never needs more), while a case holds
up to a few hundred; its other passes (the last-hit window, the pylibdmtx second opinion) do not fit a case
either: the window sees one code, and libdmtx takes seconds on 5 MP and drops FNC1. The scanner still takes
the camera's `DecoderOptions` for what does apply: the region of interest, rotation, inversion, downscaling
and the binarizer. Tuned like the unit camera (DataMatrix only, ``TextMode.Plain`` so GS stays, no
rotate/invert/downscale passes), a clean 2448x2048 frame of 100 codes decodes in about 8 ms here against
about 62 ms with zxing-cpp's defaults, 14 ms against 138 ms with sensor grain (`lineside bench aggregation`).

One physical symbol is counted once even if zxing-cpp reported it twice (same text, overlapping position);
the same code at two places is DUPLICATE_IN_VIEW, which on a case of serialised packs means a second pack
carries a copy of the code (invariant 1).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Final, Self

import cv2
import numpy as np
import zxingcpp

from edge.errors import EdgeError
from edge.gs1.element import parse
from edge.gs1.errors import Gs1SyntaxError
from edge.vision.decode import BINARIZERS, DATAMATRIX, GS1_DATAMATRIX, DecoderOptions, Symbol

if TYPE_CHECKING:
    from collections.abc import Sequence
    from types import TracebackType

    import numpy.typing as npt

    from edge.vision.decode import Corners

__all__ = [
    "CaseFrame",
    "CaseScanError",
    "CaseScanReason",
    "CaseScanResult",
    "CaseScanner",
    "case_decoder_options",
    "check",
]

MAX_CODES: Final = 1000
"""Most symbols a case scan keeps: far above any case layer, so a frame full of codes is reported, not cut."""



class CaseScanError(EdgeError):
    """A case-top frame cannot be scanned (not an 8-bit image, region outside the frame, scanner closed)."""


class CaseScanReason(StrEnum):
    """Why a case scan does not prove the case's contents, most serious first."""

    NOT_GS1 = "not-gs1"
    """A symbol in view is not GS1 data (no ``]d2``, or element strings that do not parse)."""
    DUPLICATE_IN_VIEW = "duplicate-in-view"
    """The same code on two packs in view."""
    TOO_MANY = "too-many"
    """More distinct codes than the case holds."""
    TOO_FEW = "too-few"
    """Fewer distinct codes than the case holds (a pack missing, or its code unreadable)."""


def case_decoder_options(**overrides: object) -> DecoderOptions:
    """Return the camera options a case scan uses by default: whole frame, no extra passes, no fallback."""
    values: dict[str, object] = {"fallback": False, "try_rotate": False, "try_invert": False,
                                 "try_downscale": False} | overrides
    return DecoderOptions.model_validate(values)


@dataclass(frozen=True, slots=True)
class CaseFrame:
    """Every symbol found in one case-top frame, and the time it took."""

    symbols: tuple[Symbol, ...]
    """Each physical symbol once, in the order zxing-cpp found them."""
    ms: float
    """Wall-clock milliseconds spent in scan(), on the thread that ran it."""


@dataclass(frozen=True, slots=True)
class CaseScanResult:
    """The verdict on one case scan: ok, or every reason it is not, with the codes behind them."""

    expected: int
    codes: tuple[str, ...]
    r"""The distinct GS1 codes in view as element strings (GS as ``"\x1d"``), in the order first seen."""
    duplicates: tuple[str, ...]
    """Codes seen on more than one symbol, each once."""
    not_gs1: tuple[str, ...]
    """The texts (Latin-1) of symbols that are not GS1 data, each once."""
    reasons: tuple[CaseScanReason, ...]
    """Every reason that applies, most serious first; empty when ok."""

    @property
    def ok(self) -> bool:
        """Exactly the expected number of distinct GS1 codes, each once, nothing else in view."""
        return not self.reasons

    @property
    def reason(self) -> CaseScanReason | None:
        """The most serious reason, or None when ok."""
        return self.reasons[0] if self.reasons else None

    @property
    def found(self) -> int:
        """How many distinct GS1 codes are in view."""
        return len(self.codes)

    def describe(self) -> str:
        """Say in one line what the scan found, for the operator and the rework record."""
        if self.ok:
            return f"{self.found} codes, as expected"
        parts = [f"{self.found} distinct GS1 codes in view, {self.expected} expected"]
        if self.duplicates:
            parts.append(f"{len(self.duplicates)} code(s) on more than one pack")
        if self.not_gs1:
            parts.append(f"{len(self.not_gs1)} symbol(s) not GS1")
        return "; ".join(parts)


def _gs1_text(symbol: Symbol) -> str | None:
    """Return the symbol's element string when it is GS1 data that parses, else None."""
    if symbol.symbology_identifier != GS1_DATAMATRIX:  # libdmtx reads (no identifier, FNC1 lost) included
        return None
    if symbol.elements is None:
        try:
            parse(symbol.text)
        except Gs1SyntaxError:
            return None
    return symbol.text_str


def check(reads: Sequence[Symbol] | CaseFrame, expected_count: int) -> CaseScanResult:
    """Judge the symbols of one case scan against the count the case should hold; pure, never raises for data.

    ValueError when expected_count is below 1.
    """
    if expected_count < 1:
        raise ValueError(f"a case holds at least one unit, not {expected_count}")
    symbols = reads.symbols if isinstance(reads, CaseFrame) else reads
    seen: Counter[str] = Counter()
    foreign: dict[str, None] = {}
    for symbol in symbols:
        text = _gs1_text(symbol)
        if text is None:
            foreign[symbol.text_str] = None
        else:
            seen[text] += 1
    codes = tuple(seen)
    duplicates = tuple(code for code, n in seen.items() if n > 1)
    reasons: list[CaseScanReason] = []
    if foreign:
        reasons.append(CaseScanReason.NOT_GS1)
    if duplicates:
        reasons.append(CaseScanReason.DUPLICATE_IN_VIEW)
    if len(codes) > expected_count:
        reasons.append(CaseScanReason.TOO_MANY)
    elif len(codes) < expected_count:
        reasons.append(CaseScanReason.TOO_FEW)
    return CaseScanResult(expected_count, codes, duplicates, tuple(foreign), tuple(reasons))


def _centre(corners: Corners) -> tuple[float, float]:
    return sum(p[0] for p in corners) / 4, sum(p[1] for p in corners) / 4


def _side(corners: Corners) -> float:
    xs = [p[0] for p in corners]
    ys = [p[1] for p in corners]
    return float(max(max(xs) - min(xs), max(ys) - min(ys), 1))


def _same_symbol(a: Symbol, b: Symbol) -> bool:
    """Tell whether two reads of equal text are one physical symbol (centres within half a symbol)."""
    (ax, ay), (bx, by) = _centre(a.position), _centre(b.position)
    reach = min(_side(a.position), _side(b.position)) / 2
    return abs(ax - bx) <= reach and abs(ay - by) <= reach


class CaseScanner:
    """Decodes case-top frames; scan() is thread-safe, scan_async() runs on the scanner's own thread pool."""

    def __init__(self, decoder_options: DecoderOptions | None = None, *, max_codes: int = MAX_CODES) -> None:
        if not 1 <= max_codes <= MAX_CODES:
            raise ValueError(f"max_codes must be 1 to {MAX_CODES}, not {max_codes}")
        self.options = decoder_options or case_decoder_options()
        self.max_codes = max_codes
        self._binarizer = BINARIZERS[self.options.binarizer]
        self._executor: ThreadPoolExecutor | None = None
        self._closed = False

    def scan(self, image: npt.NDArray[np.uint8]) -> CaseFrame:
        """Find and decode every DataMatrix in one frame (grayscale or BGR uint8); CaseScanError for other arrays."""
        started = time.perf_counter()
        gray = _to_gray(image)
        o = self.options
        x0 = y0 = 0
        region = gray
        if o.roi is not None:
            x, y, w, h = o.roi
            x0, y0 = max(0, x), max(0, y)
            x1, y1 = min(gray.shape[1], x + w), min(gray.shape[0], y + h)
            if x1 <= x0 or y1 <= y0:
                raise CaseScanError(f"the region of interest {o.roi} lies outside the {gray.shape[1]}x"
                                    f"{gray.shape[0]} frame")
            region = gray[y0:y1, x0:x1]
        found = zxingcpp.read_barcodes(
            region, formats=DATAMATRIX, try_rotate=o.try_rotate, try_invert=o.try_invert,
            try_downscale=o.try_downscale, text_mode=zxingcpp.TextMode.Plain, binarizer=self._binarizer,
            is_pure=False,
        )
        symbols: list[Symbol] = []
        by_text: dict[bytes, list[Symbol]] = {}
        for barcode in found:
            if not barcode.valid:
                continue
            symbol = _symbol(barcode, x0, y0)
            same_text = by_text.setdefault(symbol.text, [])
            if any(_same_symbol(s, symbol) for s in same_text):
                continue
            same_text.append(symbol)
            symbols.append(symbol)
            if len(symbols) >= self.max_codes:
                break
        return CaseFrame(tuple(symbols), (time.perf_counter() - started) * 1000.0)

    async def scan_async(self, image: npt.NDArray[np.uint8]) -> CaseFrame:
        """Scan on the scanner's own thread so the event loop never blocks on a frame.

        Cancelling the await abandons the result; the frame's scan still finishes on its thread.
        """
        if self._closed:
            raise CaseScanError("the case scanner is closed")
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=self.options.workers,
                                                thread_name_prefix="lineside-case-scan")
        return await asyncio.get_running_loop().run_in_executor(self._executor, self.scan, image)

    async def scan_and_check(self, image: npt.NDArray[np.uint8], expected_count: int) -> CaseScanResult:
        """Scan off the loop, then judge the reads against expected_count."""
        return check(await self.scan_async(image), expected_count)

    def close(self) -> None:
        """Stop the pool after the frames in hand are scanned; idempotent. scan() keeps working."""
        self._closed = True
        executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()


def _to_gray(image: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    if image.dtype != np.uint8:
        raise CaseScanError(f"frames are 8-bit images, not {image.dtype}")
    if image.ndim == 2:
        return image
    if image.ndim == 3 and image.shape[2] == 3:
        return np.asarray(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY), dtype=np.uint8)
    if image.ndim == 3 and image.shape[2] == 1:
        return np.asarray(image[:, :, 0], dtype=np.uint8)
    raise CaseScanError(f"frames are grayscale or BGR images, not of shape {image.shape}")


def _symbol(barcode: zxingcpp.Barcode, x0: int, y0: int) -> Symbol:
    """Return one zxing-cpp result as a `Symbol` in full-frame pixels."""
    p = barcode.position
    corners: Corners = tuple(  # type: ignore[assignment]
        (q.x + x0, q.y + y0) for q in (p.top_left, p.top_right, p.bottom_right, p.bottom_left)
    )
    identifier = barcode.symbology_identifier or None
    text = bytes(barcode.bytes)
    gs1 = identifier == GS1_DATAMATRIX
    elements = None
    if gs1:
        try:
            elements = tuple(parse(text).pairs)
        except Gs1SyntaxError:
            elements = None
    extra = barcode.extra if isinstance(barcode.extra, dict) else {}
    uec, version = extra.get("UEC"), extra.get("Version")
    return Symbol(
        text=text, symbology_identifier=identifier, format=barcode.format.name, position=corners,
        decoder="zxing-cpp", gs1=gs1, elements=elements,
        unused_ec=float(uec) if isinstance(uec, (int, float)) else None,
        version=version if isinstance(version, str) else None, orientation=int(barcode.orientation),
    )
