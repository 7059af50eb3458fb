"""Case-scan packing: a camera over the filled, still open case proves its contents before it is aggregated.

The line triggers `CaseScanStation.scan_case` once per case under the camera. The station takes one frame,
decodes every code on the layer (`CaseScanner`, off the event loop) and requires exactly as many distinct
GS1 codes as the product's case holds, each a unit issued on this line. Only then does it open the case
(a fresh SSCC) and pack every unit into it in one store transaction, which the aggregation rules refuse as a
whole when any unit is not commissioned, is in a container already or belongs to another batch: a refused
case leaves no container and no used SSCC behind. A packed case goes to its label station
(`Completed`), which prints, verifies and closes it.

A case that fails anywhere goes to rework: the station returns a `CaseScanOutcome` naming the reason and the
offending codes, keeps it in `rework` for the operator, logs it and (optionally) keeps its frame. It never
raises for a bad case; it raises `CameraOfflineError` when no camera is connected, and AggregationError
for a request that cannot be honoured (a short case without operator and reason, more than the case holds).

A short case (end of batch) is scanned like any other, against the count the operator declares: an
unreadable code must never pass for a missing pack, so the station does not guess the count from the frame.
`close_short(operator=, reason=, count=)` and `scan_case(expected=, operator=, reason=)` do this; the label
station then closes the case short with that operator and reason.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter, deque
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Final

import structlog

from drivers.camera.base import ImageSource
from edge.aggregation import AggregationError
from edge.aggregation.case_scan import CaseScanError, check
from edge.aggregation.stations import ScanError, resolve_unit
from edge.errors import DeviceError, TransientDeviceError
from edge.gs1.element import GS, build_hri, parse
from edge.gs1.errors import Gs1SyntaxError
from edge.line.records import BatchDocuments
from edge.products.models import Product
from edge.store.runs import iso_utc
from edge.store.store import utc_now

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from datetime import datetime
    from pathlib import Path

    import numpy as np
    import numpy.typing as npt

    from edge.aggregation.case_scan import CaseScanner, CaseScanResult
    from edge.aggregation.ops import ContainerRow
    from edge.aggregation.service import Aggregation
    from edge.aggregation.stations import Completed
    from edge.line.inspection import Attached, RejectImages
    from edge.serials.ledger import SerialLedger
    from edge.serials.ops import BatchRow

__all__ = ["CAPTURE_TIMEOUT_S", "CameraOfflineError", "CaseScanOutcome", "CaseScanStation", "ReworkReason"]

CAPTURE_TIMEOUT_S: Final = 1.0
"""Longest the case camera may take for one frame. A 5 MP frame over GigE arrives in well under 100 ms, and at
600 packs a minute in cases of 10 the next case comes a second later: a camera silent this long is failing."""
REWORK_HISTORY: Final = 100
"""Rework outcomes kept for the operator, newest last; the oldest goes (the counts keep every one)."""
SHOWN_CODES: Final = 10
"""Codes named in one rework message; the count of the rest follows."""
SHOWN_CHARS: Final = 48
"""Characters of a non-GS1 symbol quoted in a message: enough to recognise it, not a page of garbage."""


class CameraOfflineError(TransientDeviceError):
    """The case-scan station has no connected camera: the case cannot be scanned until it reconnects."""


class ReworkReason(StrEnum):
    """Why a case went to rework instead of being aggregated, in the order the station checks."""

    NO_BATCH = "no-batch"
    """No batch is running on the line: there is nothing to pack the case into."""
    NO_FRAME = "no-frame"
    """The camera gave no usable frame (a device error, a timeout, an image the scanner cannot take)."""
    NOT_GS1 = "not-gs1"
    """A symbol in view is not GS1 data."""
    DUPLICATE_IN_VIEW = "duplicate-in-view"
    """The same code on two packs in view."""
    TOO_MANY = "too-many"
    """More distinct codes in view than the case holds."""
    TOO_FEW = "too-few"
    """Fewer distinct codes than the case holds: a pack missing or a code unreadable."""
    UNKNOWN_CODE = "unknown-code"
    """A code that is not a unit code, or names a serial never issued on this line."""
    REFUSED = "refused"
    """The aggregation rules refused the set: a unit not commissioned, already in a container, of another
    batch (the message names each), or a batch or product that cannot take cases."""


@dataclass(frozen=True, slots=True)
class CaseScanOutcome:
    """What became of one case at the station: aggregated (case set) or sent to rework (reason set)."""

    seq: int
    """The station's count of cases, 1 for the first since it started."""
    at: datetime
    reason: ReworkReason | None
    message: str
    """One line for the operator: what was found, and for rework every offending code (up to SHOWN_CODES)."""
    case: ContainerRow | None = None
    """The packed case (open, full or short, on its way to the label station)."""
    expected: int | None = None
    """The units the case had to hold; None when the station did not get that far."""
    codes: tuple[str, ...] = ()
    r"""The distinct GS1 codes in view as element strings (GS as ``"\x1d"``)."""
    frame: int | None = None
    """The camera's frame number, when a frame was taken."""
    scan_ms: float | None = None
    operator: str | None = None
    image: Path | None = None
    """Where the frame of a rework case was kept, if the station keeps frames."""

    @property
    def ok(self) -> bool:
        """Whether the case was aggregated."""
        return self.reason is None

    def as_dict(self) -> dict[str, Any]:
        """Return the outcome as JSON-able data."""
        return {
            "seq": self.seq, "at": iso_utc(self.at), "ok": self.ok,
            "reason": None if self.reason is None else self.reason.value, "message": self.message,
            "case": None if self.case is None else self.case.as_dict(), "expected": self.expected,
            "found": len(self.codes), "frame": self.frame, "scan_ms": self.scan_ms, "operator": self.operator,
            "image": None if self.image is None else str(self.image),
        }


class _ReworkError(Exception):
    """Ends one case's scan: it goes to rework with this reason and message."""

    def __init__(self, reason: ReworkReason, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class CaseScanStation:
    """Scans each case under its camera and aggregates it whole, or sends it to rework with the reason."""

    def __init__(
        self,
        aggregation: Aggregation,
        ledger: SerialLedger,
        scanner: CaseScanner,
        *,
        camera: Attached,
        station: str,
        completed: Completed,
        capture_timeout_s: float = CAPTURE_TIMEOUT_S,
        level: str = "case",
        images: RejectImages | None = None,
        rework_history: int = REWORK_HISTORY,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        if capture_timeout_s <= 0:
            raise ValueError(f"capture_timeout_s must be positive, not {capture_timeout_s}")
        self.aggregation = aggregation
        self.station = station
        self.level = level
        self.rework: deque[CaseScanOutcome] = deque(maxlen=rework_history)
        """Cases sent to rework, newest last, for the operator (bounded: the oldest goes first)."""
        self.last: CaseScanOutcome | None = None
        self.scanned = 0
        self.packed = 0
        self.reworked: Counter[ReworkReason] = Counter()
        self._ledger = ledger
        self._scanner = scanner
        self._camera = camera
        self._completed = completed
        self._capture_timeout_s = capture_timeout_s
        self._images = images
        self._clock = clock
        self._capacity: tuple[int, int | None] | None = None
        """(batch id, units its product puts in one case or None without that level): a batch's product is fixed."""
        # One case is under the camera at a time: a second trigger waits for the first case's outcome.
        self._lock = asyncio.Lock()
        self._log = structlog.get_logger("lineside.packing").bind(station=station)

    @property
    def current(self) -> ContainerRow | None:
        """Always None: a case is aggregated whole from its scan, never filled unit by unit here."""
        return None

    async def scan_case(
        self, *, expected: int | None = None, operator: str | None = None, reason: str | None = None
    ) -> CaseScanOutcome:
        """Scan the case under the camera: aggregate it and hand it to its label station, or send it to rework.

        expected below the case's capacity declares a short case (it needs operator and reason, and is closed
        short by the label station with them). CameraOfflineError without a connected camera; AggregationError
        for an expected count the case cannot hold or a short case without operator and reason.
        """
        camera = self._camera.driver
        if not isinstance(camera, ImageSource):
            raise CameraOfflineError(f"case station {self.station}: its camera is not connected; the case under "
                                     "it cannot be scanned")
        async with self._lock:
            batch = await self._ledger.active_batch()
            capacity = None if batch is None else await self._case_capacity(batch)
            # A request the case cannot honour is refused before anything is looked at or counted.
            count = None if capacity is None else self._expected_count(capacity, expected, operator, reason)
            self.scanned += 1
            partial = _Partial(seq=self.scanned, expected=count)
            try:
                case = await self._scan_and_pack(camera, batch, count, partial, operator=operator)
            except _ReworkError as rework:
                outcome = CaseScanOutcome(
                    seq=partial.seq, at=self._clock(), reason=rework.reason, message=rework.message,
                    expected=partial.expected, codes=partial.codes, frame=partial.frame, scan_ms=partial.scan_ms,
                    operator=operator,
                )
                return await self._record(outcome, partial.image)
            short = count is not None and capacity is not None and count < capacity
            message = f"{case.name}: {case.count} units packed" + (
                f", short of {capacity} ({operator}: {reason})" if short else "")
            outcome = await self._record(CaseScanOutcome(
                seq=partial.seq, at=self._clock(), reason=None, message=message, case=case, expected=count,
                codes=partial.codes, frame=partial.frame, scan_ms=partial.scan_ms, operator=operator,
            ), None)
            # Recorded first: should the label station fail, the case is packed (and open) all the same.
            if short:
                await self._completed(case, operator, reason)
            else:
                await self._completed(case, None, None)
            return outcome

    async def close_short(self, *, operator: str, reason: str, count: int | None = None) -> ContainerRow:
        """Scan the case under the camera as a short one of count units; return it, or AggregationError why not.

        The count is required: the operator counts the packs, so an unreadable code is never taken for a pack
        that is not there. The case is handed to the label station with operator and reason.
        """
        if count is None:
            raise AggregationError(
                f"case station {self.station}: a short case is scanned against the number of packs the operator "
                "put in it: give that count (the camera cannot tell a missing pack from an unreadable code)"
            )
        outcome = await self.scan_case(expected=count, operator=operator, reason=reason)
        if outcome.case is None:
            raise AggregationError(f"case station {self.station}: the short case was not packed, it goes to "
                                   f"rework ({outcome.reason}): {outcome.message}")
        return outcome.case

    def describe(self) -> dict[str, Any]:
        """Return the station's state for the line status (JSON-able)."""
        return {
            "mode": "case-scan", "station": self.station, "level": self.level,
            "camera": "connected" if isinstance(self._camera.driver, ImageSource) else "offline",
            "scanned": self.scanned, "packed": self.packed,
            "rework": {reason.value: n for reason, n in self.reworked.items()},
            "awaiting_rework": len(self.rework),
            "last": None if self.last is None else self.last.as_dict(),
        }

    # -- one case ---------------------------------------------------------------------------------

    async def _scan_and_pack(
        self, camera: ImageSource, batch: BatchRow | None, count: int | None, partial: _Partial, *,
        operator: str | None,
    ) -> ContainerRow:
        """Capture, decode, check and aggregate one case; _ReworkError (with what was found in partial) if not.

        count None: the batch's product has no level of this station.
        """
        if batch is None:
            raise _ReworkError(ReworkReason.NO_BATCH, "no batch is running: the case cannot be aggregated")
        if count is None:
            raise _ReworkError(ReworkReason.REFUSED, f"{batch.name}: product {batch.product_id} has no {self.level} "
                                                     f"level; its {self.level}s are not aggregated")
        try:
            async with asyncio.timeout(self._capture_timeout_s):
                frame = await camera.capture()
        except (DeviceError, TimeoutError) as err:
            why = str(err) or f"no frame within {self._capture_timeout_s} s"
            raise _ReworkError(ReworkReason.NO_FRAME, f"camera gave no frame: {why}") from err
        partial.image, partial.frame = frame.image, frame.seq
        try:
            found = await self._scanner.scan_async(frame.image)
        except CaseScanError as err:
            raise _ReworkError(ReworkReason.NO_FRAME, f"frame {frame.seq} cannot be scanned: {err}") from err
        scan = check(found, count)
        partial.codes, partial.scan_ms = scan.codes, round(found.ms, 3)
        if scan.reason is not None:
            raise _ReworkError(ReworkReason(scan.reason.value), _scan_message(scan))

        serial_ids = await self._resolve(scan.codes)
        try:
            # One transaction: a refused pack takes the opened case (and its SSCC) back with it.
            return await self.aggregation.open_and_pack(batch.id, self.level, serial_ids=serial_ids,
                                                        operator=operator, station=self.station)
        except AggregationError as err:
            raise _ReworkError(ReworkReason.REFUSED, str(err)) from err

    def _expected_count(self, capacity: int, expected: int | None, operator: str | None, reason: str | None) -> int:
        """Return the units the case must hold; AggregationError for a count it cannot or may not hold."""
        if expected is None:
            return capacity
        if not 1 <= expected <= capacity:
            raise AggregationError(f"case station {self.station}: a {self.level} holds 1 to {capacity} units, "
                                   f"not {expected}")
        if expected < capacity and not (operator and operator.strip() and reason and reason.strip()):
            raise AggregationError(f"case station {self.station}: a {self.level} of {expected} (short of "
                                   f"{capacity}) is closed short only by an operator, with a reason")
        return expected

    async def _case_capacity(self, batch: BatchRow) -> int | None:
        """Return how many children the batch's product puts in one container of the station's level."""
        if self._capacity is None or self._capacity[0] != batch.id:
            product_json, _ = await self._ledger.store.read(BatchDocuments(batch.id))
            product = Product.model_validate(json.loads(product_json))
            found = next((entry.contains for entry in product.hierarchy if entry.level == self.level), None)
            self._capacity = (batch.id, found)
        return self._capacity[1]

    async def _resolve(self, codes: Sequence[str]) -> list[int]:
        """Return the serial row id of each code; _ReworkError naming every code that is not a unit issued here."""
        found = await asyncio.gather(*(self._resolve_one(code) for code in codes))
        unknown = [str(item) for item in found if isinstance(item, ScanError)]
        if unknown:
            raise _ReworkError(ReworkReason.UNKNOWN_CODE, f"{len(unknown)} of {len(codes)} codes are not units of this "
                                                     f"line: {_listed(unknown)}")
        return [item for item in found if isinstance(item, int)]

    async def _resolve_one(self, code: str) -> int | ScanError:
        try:
            return await resolve_unit(self._ledger, code.encode("latin-1"))
        except ScanError as err:
            return err

    async def _record(self, outcome: CaseScanOutcome, image: npt.NDArray[np.uint8] | None) -> CaseScanOutcome:
        """Count and log the outcome; keep a rework case (and its frame, when frames are kept) for the operator."""
        if outcome.reason is None:
            self.packed += 1
            case = outcome.case
            self._log.info("case packed", seq=outcome.seq, case=None if case is None else case.identifier,
                           count=None if case is None else case.count, frame=outcome.frame, scan_ms=outcome.scan_ms)
        else:
            reason = outcome.reason
            if image is not None and self._images is not None:
                outcome = replace(outcome, image=await self._keep_frame(outcome.seq, reason, image))
            self.reworked[reason] += 1
            self.rework.append(outcome)
            self._log.warning("case sent to rework", seq=outcome.seq, reason=reason.value, detail=outcome.message,
                              frame=outcome.frame, image=None if outcome.image is None else str(outcome.image))
        self.last = outcome
        return outcome

    async def _keep_frame(self, seq: int, reason: ReworkReason, image: npt.NDArray[np.uint8]) -> Path | None:
        """Keep a rework case's frame (off the loop) where the station keeps frames; None when it is not kept."""
        images = self._images
        if images is None:
            return None
        try:
            return await asyncio.to_thread(images.save, seq, reason.value, image)
        except OSError as err:
            # The rework record matters more than its picture: a full disk must not lose the case's outcome.
            self._log.error("rework frame not kept", seq=seq, error=str(err))
            return None


@dataclass(slots=True)
class _Partial:
    """What one case's scan found so far, for its outcome."""

    seq: int
    expected: int | None = None
    image: npt.NDArray[np.uint8] | None = None
    frame: int | None = None
    codes: tuple[str, ...] = ()
    scan_ms: float | None = None


def _show(code: str) -> str:
    """Return a code as a person reads it: bracketed HRI for GS1 data, else its text quoted (and cut)."""
    try:
        return build_hri(parse(code).pairs, check=False)
    except Gs1SyntaxError:
        text = code[:SHOWN_CHARS] + ("..." if len(code) > SHOWN_CHARS else "")
        return repr(text.replace(GS, "<GS>"))


def _listed(items: Sequence[str]) -> str:
    shown = "; ".join(items[:SHOWN_CODES])
    more = len(items) - SHOWN_CODES
    return f"{shown} and {more} more" if more > 0 else shown


def _scan_message(scan: CaseScanResult) -> str:
    """Say what is wrong with a case scan, naming the offending codes."""
    parts = [f"{scan.found} distinct GS1 code(s) in view, {scan.expected} expected"]
    if scan.not_gs1:
        parts.append(f"not GS1: {_listed([_show(text) for text in scan.not_gs1])}")
    if scan.duplicates:
        parts.append(f"on more than one pack: {_listed([_show(code) for code in scan.duplicates])}")
    if scan.found > scan.expected:
        parts.append(f"{scan.found - scan.expected} pack(s) too many")
    elif scan.found < scan.expected:
        parts.append(f"{scan.expected - scan.found} pack(s) missing or unreadable")
    return "; ".join(parts)
