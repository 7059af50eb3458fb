"""Inspection and rejection: every pack at the camera judged, every verdict acted on, every outcome checked.

For each pack the PLC reports at the camera (by its sequence number) the service takes the camera's frame,
has it decoded and graded off the event loop, and judges it (`edge.line.verdict`). A good pack's serial is
committed ``commissioned`` durably *before* the PLC is told to let it pass (DESIGN invariant 4): a crash in
between rejects a pack whose serial is commissioned, which the outcome check then takes back, never the
reverse. A bad pack is rejected by default (the PLC lets nothing pass without a good verdict for its own
sequence number); its serial, when the code was the right one badly printed, becomes ``rejected`` and its image
is kept for the HMI within a disk budget.

Each outcome at the reject station closes the pack's record (`edge.line.tracking`); an alarm there (an
unconfirmed reject, a pack passing without a good verdict, a missing verdict, too many rejects in a row, a
tracking mismatch) asks the line to stop with a `LineStopRequest` (the PackML layer of step 8 acts on it).

A write the store refuses (a full disk) stops the line too: the pack being judged gets no good verdict (the PLC
rejects it), and what an outcome must write (packing, taking a serial back) waits, in line order, to be written
again with the next event once the store takes writes again.
"""

from __future__ import annotations

import asyncio
import functools
import json
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

import structlog

from drivers.base import DeviceEvent, EventSink, utc_now
from drivers.camera.base import ImageSource
from drivers.plc.base import LineIo, ProductAt, ProductsMissed, RejectOutcome, Station
from edge.errors import BatchError, DeviceError, IllegalTransitionError, StoreError
from edge.line.events import LineStopRequest
from edge.line.records import BatchDocuments, order_of, plan_for
from edge.line.tracking import Alarm, AlarmKind, Settled, Tracked, Tracker
from edge.line.verdict import Expectation, Read, RejectReason, SerialRow, Verdict, judge, serial_of
from edge.metrics import VERDICT_LATENCY_BUCKETS_S, Histogram
from edge.products.models import Product
from edge.serials.states import BatchState, SerialState

if TYPE_CHECKING:
    import sqlite3
    from datetime import datetime
    from pathlib import Path

    import numpy as np
    import numpy.typing as npt

    from drivers.base import Clock, Driver
    from edge.markets.models import MarketPack
    from edge.serials.ledger import SerialLedger
    from edge.serials.ops import BatchRow

Inspect = Callable[["npt.NDArray[np.uint8]"], Awaitable[list[Read]]]
"""Decode and grade one frame off the event loop; return every code found with its grade."""

Passed = Callable[[int, Verdict], Awaitable[None]]
"""Told of each good pack that passed the reject station (product sequence number, its verdict): packing."""

CAPTURE_TIMEOUT_S: Final = 0.5
"""Longest a frame may take: at 600 packs a minute the next pack is at the camera 100 ms later, and a pack whose
frame is later than this has no verdict in time anyway (it is rejected by default)."""

INSPECTION_QUEUE_SIZE: Final = 256
"""Packs at the camera waiting to be judged. Full means the vision cannot keep up: the pack is left without a
verdict, which rejects it, and the tracker raises the alarm."""

PRINTED_OR_IN_DOUBT: Final = frozenset({SerialState.PRINTED, SerialState.IN_DOUBT})
REJECTABLE_REASONS: Final = frozenset({RejectReason.LOW_GRADE})
"""Reasons for which the read serial is this pack's own and is taken out of circulation (``rejected``). A
duplicate's serial belongs to another pack; a wrong or unknown code names no serial of this pack."""


class Attached:
    """A device session that only remembers the connected driver (camera, PLC) for the inspection service."""

    def __init__(self) -> None:
        self.driver: Driver | None = None

    async def serve(self, driver: Driver) -> None:
        """Hold the driver while the link is up."""
        self.driver = driver
        try:
            await asyncio.Future()
        finally:
            self.driver = None

    async def offline(self, reason: str) -> None:
        """Forget the driver (nothing else is uncertain: verdicts are per pack)."""
        del reason  # a lost camera or PLC shows in each pack's verdict; nothing to settle here
        self.driver = None


@dataclass(slots=True)
class InspectionCounts:
    """Packs judged and what became of them, since the service started."""

    inspected: int = 0
    good: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    """Rejected packs by reason."""
    confirmed_rejects: int = 0
    settled: int = 0
    """Packs the reject station reported on (passed or rejected)."""
    good_but_rejected: int = 0
    alarms: Counter[str] = field(default_factory=Counter)


class RejectImages:
    """Frames of rejected packs, kept for the HMI in a directory within a byte budget (oldest removed first)."""

    def __init__(self, directory: Path, max_bytes: int) -> None:
        self.directory = directory
        self.max_bytes = max_bytes

    def save(self, product: int, reason: str, image: npt.NDArray[np.uint8]) -> Path | None:
        """Write the frame as PNG (blocking: call it in a thread); None when the budget is zero."""
        if self.max_bytes <= 0:
            return None
        import cv2  # noqa: PLC0415 - OpenCV loads in a second and only this needs it

        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / f"{time.strftime('%Y%m%dT%H%M%S')}-{product:010d}-{reason}.png"
        cv2.imwrite(str(path), image)
        self._prune()
        return path

    def _prune(self) -> None:
        files = sorted(self.directory.glob("*.png"), key=lambda p: p.stat().st_mtime)
        total = sum(p.stat().st_size for p in files)
        while files and total > self.max_bytes:
            oldest = files.pop(0)
            total -= oldest.stat().st_size
            oldest.unlink(missing_ok=True)


class InspectionService:
    """Judges every pack at the camera and checks every outcome at the reject station."""

    def __init__(
        self,
        ledger: SerialLedger,
        markets: dict[str, MarketPack],
        *,
        camera_id: str,
        inspect: Inspect,
        camera: Attached,
        plc: Attached,
        notify: EventSink,
        consecutive_reject_limit: int = 5,
        reject_images: RejectImages | None = None,
        passed: Passed | None = None,
        clock: Clock = utc_now,
    ) -> None:
        self.counts = InspectionCounts()
        self.tracker = Tracker(consecutive_reject_limit=consecutive_reject_limit)
        self.verdicts: dict[int, Verdict] = {}
        """The last verdicts by product sequence number (bounded), for the HMI, the demo and tests."""
        self.latency = Histogram(VERDICT_LATENCY_BUCKETS_S)
        """Seconds from each frame to its verdict (for a good pack: committed and sent to the PLC), for the metrics."""
        self._ledger = ledger
        self._markets = markets
        self._camera_id = camera_id
        self._inspect = inspect
        self._camera = camera
        self._plc = plc
        self._notify = notify
        self._images = reject_images
        self._passed = passed
        self._clock = clock
        self._queue: asyncio.Queue[ProductAt] = asyncio.Queue(INSPECTION_QUEUE_SIZE)
        self._expectation: tuple[int, Expectation] | None = None
        self._log = structlog.get_logger("lineside.inspection")
        self._idle = asyncio.Event()
        self._idle.set()
        self._unwritten: deque[tuple[int, Callable[[], Awaitable[Any]]]] = deque()
        """Writes of outcomes the tracker took that wait for the store, by pack, oldest first (`_write_outcomes`)."""
        self._store_failing = False

    async def on_event(self, event: DeviceEvent) -> None:
        """Take the PLC's events: packs at the camera are queued for judging, outcomes are checked at once."""
        if isinstance(event, ProductAt) and event.station is Station.CAMERA:
            _, alarms = self.tracker.at_camera(event.product, event.encoder)
            await self._raise(alarms)
            try:
                self._queue.put_nowait(event)
                self._idle.clear()
            except asyncio.QueueFull:
                self._log.error("inspection cannot keep up: pack left without a verdict", product=event.product)
        elif isinstance(event, RejectOutcome):
            await self._settle(event)
            return  # its writes, and any waiting before them, were tried just now
        elif isinstance(event, ProductsMissed):
            detail = f"packs {event.first} to {event.last} passed the {event.station.value} unseen by the line"
            await self._raise((Alarm(AlarmKind.TRACKING_MISMATCH, event.first, detail),))
        if self._unwritten:
            # Writes the store refused are tried again with every event, so they go once it takes writes again.
            await self._write_outcomes()

    async def run(self) -> None:
        """Judge queued packs, one at a time in camera order, until cancelled."""
        while True:
            if self._queue.empty():
                self._idle.set()
            event = await self._queue.get()
            try:
                await self._judge(event.product)
            except (BatchError, DeviceError, IllegalTransitionError) as err:
                # One pack's trouble must not stop inspection: without a good verdict the pack is rejected.
                self._log.error("pack could not be judged; it is rejected", product=event.product, error=str(err))
            except StoreError as err:
                await self._unrecorded(event.product, err)

    async def idle(self) -> None:
        """Return once every queued pack was judged (tests, the demo)."""
        await self._idle.wait()

    # -- judging --------------------------------------------------------------------------------

    async def _unrecorded(self, product: int, err: StoreError) -> None:
        """Reject the pack whose verdict the store refused (no good verdict reaches the PLC) and stop the line."""
        verdict = Verdict(RejectReason.NO_VERDICT, f"the store refused its verdict: {err}")
        if self.tracker.judged(product, verdict) is not None:
            self._remember(product, verdict)
        self._log.error("verdict not recorded; the pack is rejected", product=product, error=str(err))
        await self._store_failed(product, f"the verdict of pack {product} could not be recorded: {err}")

    async def _store_failed(self, product: int, detail: str) -> None:
        """Stop the line once per spell of refused writes (each pack's would repeat the same request)."""
        if not self._store_failing:
            self._store_failing = True
            await self._raise((Alarm(AlarmKind.STORE_WRITE_FAILED, product, detail),))

    async def _judge(self, product: int) -> None:
        verdict, image, taken = await self._verdict(product)
        rejected = await self._act_on(product, verdict)
        if taken is not None:
            self.latency.observe(max(0.0, (self._clock() - taken).total_seconds()))
        if rejected is not None and image is not None and self._images is not None:
            # After the verdict's latency: the PLC rejects the pack whatever becomes of its picture.
            await asyncio.to_thread(self._images.save, product, rejected.value, image)

    async def _act_on(self, product: int, verdict: Verdict) -> RejectReason | None:
        """Record the verdict and act on it (good: commissioned, then sent to the PLC); return why it was rejected."""
        self.counts.inspected += 1
        record = self.tracker.judged(product, verdict)
        self._remember(product, verdict)
        if record is None:
            # The pack reached the reject station first and was rejected by default: it is in the bin.
            self._log.warning("verdict too late: the pack was already rejected", product=product,
                              verdict=verdict.reason or "good")
            if verdict.serial_id is not None and verdict.state in PRINTED_OR_IN_DOUBT:
                await self._move(verdict.serial_id, SerialState.REJECTED, "rejected before its verdict",
                                 expect=PRINTED_OR_IN_DOUBT)
            return None
        if verdict.good and verdict.serial_id is not None:
            if verdict.state is SerialState.SENT:
                # Seen on the pack before the printer's evidence came: the camera's proof stands for it (urgent: the
                # commissioning, and the PLC, wait behind it).
                await self._move(verdict.serial_id, SerialState.PRINTED, "seen printed by the camera",
                                 expect=frozenset({SerialState.SENT}), urgent=True)
            # Durable before the PLC may let the pack pass (invariant 4); urgent, as the PLC waits for it.
            if not await self._move(verdict.serial_id, SerialState.COMMISSIONED, "verified good by the camera",
                                    expect=PRINTED_OR_IN_DOUBT, urgent=True):
                verdict = Verdict(RejectReason.DUPLICATE, f"serial {verdict.serial} moved on meanwhile",
                                  serial=verdict.serial, grade=verdict.grade)
                self.tracker.judged(product, verdict)
                self._remember(product, verdict)
            else:
                plc = self._plc.driver
                if isinstance(plc, LineIo):
                    await plc.good(product)
                    self.tracker.good_sent(product)
                self.counts.good += 1
                return None
        reason = verdict.reason or RejectReason.NO_READ
        self.counts.rejected[reason.value] += 1
        self._log.info("pack rejected", product=product, reason=reason.value, detail=verdict.detail,
                       serial=verdict.serial)
        if verdict.serial_id is not None and reason in REJECTABLE_REASONS:
            await self._move(verdict.serial_id, SerialState.REJECTED, f"{reason.value}: {verdict.detail}",
                             expect=PRINTED_OR_IN_DOUBT)
        return reason

    async def _verdict(self, product: int) -> tuple[Verdict, npt.NDArray[np.uint8] | None, datetime | None]:
        """Judge the pack; return the verdict, its frame and when the frame was taken (None without one)."""
        expectation = await self._expected()
        if expectation is None:
            return Verdict(RejectReason.NOT_PRINTED, "no batch is running"), None, None
        camera = self._camera.driver
        if not isinstance(camera, ImageSource):
            return Verdict(RejectReason.NO_READ, f"camera {self._camera_id} is offline"), None, None
        try:
            async with asyncio.timeout(CAPTURE_TIMEOUT_S):
                frame = await camera.capture(product)
        except (DeviceError, TimeoutError) as err:
            why = str(err) or "timed out"
            return Verdict(RejectReason.NO_READ, f"camera {self._camera_id} gave no frame: {why}"), None, None
        reads = await self._inspect(frame.image)
        serials = [s for s in (serial_of(r) for r in reads) if s is not None]
        rows = await self._ledger.store.read(_SerialRows(expectation.batch_id, tuple(serials)))
        return judge(reads, expectation, rows), frame.image, frame.at

    async def _expected(self) -> Expectation | None:
        batch = await self._ledger.active_batch()
        if batch is None or batch.state not in (BatchState.RUNNING, BatchState.PAUSED, BatchState.COMPLETING):
            return None
        cached = self._expectation
        if cached is not None and cached[0] == batch.id:
            return cached[1]
        expectation = await self._expectation_for(batch)
        self._expectation = (batch.id, expectation)
        return expectation

    async def _expectation_for(self, batch: BatchRow) -> Expectation:
        product_json, order_json = await self._ledger.store.read(BatchDocuments(batch.id))
        product = Product.model_validate(json.loads(product_json))
        printers = [device for device, t in product.templates.items() if t.level == "unit"]
        if not printers:
            raise BatchError(f"product {product.id} has no unit print template: nothing to inspect against")
        plan = plan_for(printers[0], batch, product, order_of(order_json), {"code": "code"})
        market = self._markets.get(batch.market)
        minimum = market.code.min_grade if market is not None else "C"
        return Expectation(batch.id, plan.template.ais, plan.fixed, minimum)

    # -- outcomes -------------------------------------------------------------------------------

    async def _settle(self, outcome: RejectOutcome) -> None:
        settled = self.tracker.at_reject(outcome.product, rejected=outcome.rejected, confirmed=outcome.confirmed)
        if outcome.rejected and outcome.confirmed:
            self.counts.confirmed_rejects += 1
        if settled.good_but_rejected:
            self.counts.good_but_rejected += 1
        await self._raise(settled.alarms)
        self._unwritten.extend(self._outcome_writes(settled))
        await self._write_outcomes()
        self.counts.settled += 1  # last: the tracker's part is done, its writes are done or wait in line

    async def _write_outcomes(self) -> None:
        """Make each waiting write, oldest first; on a refused one keep it and the rest waiting, in line order."""
        while self._unwritten:
            product, write = self._unwritten[0]
            try:
                await write()
            except StoreError as err:
                self._log.error("outcome not recorded; it waits for the store", product=product,
                                waiting=len(self._unwritten), error=str(err))
                await self._store_failed(product, f"what pack {product} entails at the reject station could not "
                                                  f"be recorded: {err}")
                return
            self._unwritten.popleft()
        self._store_failing = False

    def _outcome_writes(self, settled: Settled) -> list[tuple[int, Callable[[], Awaitable[Any]]]]:
        """Return the writes an outcome entails, in order, each one whole (made again from the start if refused)."""
        writes: list[tuple[int, Callable[[], Awaitable[Any]]]] = [
            (record.product, functools.partial(self._unreported, record)) for record in settled.unseen]
        verdict = None if settled.record is None else settled.record.verdict
        if settled.good_but_rejected and verdict is not None and verdict.serial_id is not None:
            # Commissioned, then rejected by the station (its good verdict came too late): the pack is in the bin,
            # so its serial leaves circulation.
            writes.append((settled.product, functools.partial(
                self._move, verdict.serial_id, SerialState.DESTROYED, "good pack rejected: its verdict came too late",
                expect=frozenset({SerialState.COMMISSIONED}))))
        if self._passed is not None and not settled.rejected and verdict is not None and verdict.good:
            # Only now is the pack past the last point it could leave the line: packing may count it.
            writes.append((settled.product, functools.partial(self._passed, settled.product, verdict)))
        return writes

    async def _unreported(self, record: Tracked) -> None:
        """Settle a pack that crossed the reject station unreported, as the PLC decided it from its verdict slot."""
        verdict = record.verdict
        if verdict is not None and verdict.good and record.good_sent:
            # The PLC held its good verdict, and lets such a pack pass: it is on its way to the case packer,
            # ahead of the pack just reported, so packing it now keeps the line order.
            self._log.warning("pack crossed the reject station unreported; passed on its good verdict",
                              product=record.product, serial=verdict.serial)
            if self._passed is not None:
                await self._passed(record.product, verdict)
        elif verdict is not None and verdict.good:
            # Commissioned, but the write of its verdict never completed: whether the PLC passed it is unknown.
            self._log.error("pack crossed the reject station unreported; its good verdict may not have reached "
                            "the PLC: find it before the case packer", product=record.product, serial=verdict.serial)
        else:
            self._log.warning("pack crossed the reject station unreported; rejected by default",
                              product=record.product)

    async def _raise(self, alarms: tuple[Alarm, ...]) -> None:
        for alarm in alarms:
            self.counts.alarms[alarm.kind.value] += 1
            self._log.error("line stop requested", alarm=alarm.kind.value, product=alarm.product,
                            detail=alarm.detail)
            await self._notify(LineStopRequest(device_id=self._camera_id, at=self._clock(), alarm=alarm.kind.value,
                                               reason=alarm.detail))

    async def _move(self, serial_id: int, to: SerialState, reason: str, *, expect: frozenset[SerialState],
                    urgent: bool = False) -> bool:
        try:
            await self._ledger.move([serial_id], to, reason=reason, device=self._camera_id, expect=expect,
                                    urgent=urgent)
        except IllegalTransitionError as err:
            self._log.warning("serial not moved", serial_id=serial_id, to=to.label, error=str(err))
            return False
        return True

    def _remember(self, product: int, verdict: Verdict) -> None:
        self.verdicts[product] = verdict
        while len(self.verdicts) > INSPECTION_QUEUE_SIZE * 4:
            del self.verdicts[next(iter(self.verdicts))]


@dataclass(frozen=True, slots=True)
class _SerialRows:
    batch_id: int
    serials: tuple[str, ...]

    def __call__(self, conn: sqlite3.Connection) -> dict[str, SerialRow]:
        if not self.serials:
            return {}
        rows = conn.execute(
            "SELECT serial, id, state, code FROM serial WHERE batch_id = ?"
            " AND serial IN (SELECT value FROM json_each(?))",
            (self.batch_id, json.dumps(list(self.serials))),
        )
        return {row[0]: SerialRow(row[1], SerialState(row[2]), row[3]) for row in rows}


def describe(counts: InspectionCounts) -> dict[str, Any]:
    """Return the counts as JSON-able data."""
    return {
        "inspected": counts.inspected,
        "good": counts.good,
        "rejected": dict(counts.rejected),
        "confirmed_rejects": counts.confirmed_rejects,
        "settled": counts.settled,
        "good_but_rejected": counts.good_but_rejected,
        "alarms": dict(counts.alarms),
    }

