"""Print feeding: keep one printer's buffer filled from the running batch, and settle each serial by evidence.

The rules (DESIGN invariants 1, 2 and 4):

- A serial is recorded ``sent`` durably before its bytes leave for the printer (`SerialLedger.next_to_print`).
- It becomes ``printed`` only on the printer's evidence for that record, named by its record id (the serial's
  row id): never by counting products. A printer that reports record k while records loaded before k are
  still outstanding skipped them (a FIFO cannot): those are in doubt.
- A record the printer refused is ``rejected`` (it may hold part of the data; it is never sent again).
- Whatever makes printing uncertain (a fault, a lost link, a power cycle, the batch leaving ``running``, a
  label-roll change or a manual reprint that needs the buffer emptied) ends the same way: the line is asked
  to hold, every serial sent and not confirmed becomes ``in_doubt`` (never re-sent, never reused), the device
  buffer is cleared (now if the link is up, else at the next connect), and feeding resumes with fresh serials.

Resolution of a sent-but-unconfirmed serial: it stays ``in_doubt`` until the camera finds its code on a pack
(re-inspection: ``commissioned``) or an operator decommissions it; batch close is refused while any remain,
so every one is accounted for in the reconciliation.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

import structlog

from drivers.base import DeviceEvent, EventSink, Sleep, utc_now
from drivers.printer.base import (
    LoadStyle,
    Printer,
    PrinterState,
    PrinterStatus,
    PrinterStatusChanged,
    PrintEvidence,
    PrintOutcome,
)
from edge.errors import BatchError, IllegalTransitionError, SerialError, StoreError
from edge.line.events import LineHoldRequest, LineResumable
from edge.line.records import BatchDocuments, PrintPlan, order_of, plan_for
from edge.products.models import Product
from edge.serials.states import BatchState, SerialState

if TYPE_CHECKING:
    from collections.abc import Mapping

    from drivers.base import Clock, Driver
    from edge.serials.ledger import SerialLedger
    from edge.serials.ops import BatchRow

IDLE_POLL_S: Final = 0.2
"""How often the feeder looks for a running batch or a printer that can print again when nothing else wakes it:
a read of the store, cheap, and within a pack or two of the operator pressing start."""

EVIDENCE_QUEUE_SIZE: Final = 4096
"""Evidence waiting to be settled; a full queue makes the driver wait (back-pressure), it never drops evidence."""

REFILL_FRACTION: Final = 4
"""Top the buffer up once a quarter of it is free: fewer, larger durable writes, and never close to empty."""

REFUSED_RETRY_S: Final = 0.5
"""After the printer refused a record, wait this long before feeding again: a printer that refuses every record
(wrong job, buffer stuck full) would otherwise burn the batch's serials one refusal at a time. The wait doubles
with every refusal in a row, up to REFUSED_RETRY_MAX_S, and starts over once a record is accepted."""
REFUSED_RETRY_MAX_S: Final = 60.0

SENT_ONLY: Final = frozenset({SerialState.SENT})


@dataclass(slots=True)
class FeederCounts:
    """What the feeder did since the daemon started, for the HMI, the demo and the benchmark."""

    sent: int = 0
    printed: int = 0
    refused: int = 0
    in_doubt: int = 0
    anomalies: int = 0
    """Evidence for a record the printer was not given or already reported (a duplicate acknowledgement)."""
    holds: int = 0


class PrintFeeder:
    """Feeds one printer from the line's running batch; the device supervisor runs it beside the driver."""

    def __init__(
        self,
        device_id: str,
        ledger: SerialLedger,
        *,
        fields: Mapping[str, str],
        job: str | None,
        notify: EventSink,
        depth: int | None = None,
        clock: Clock = utc_now,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.device_id: Final = device_id
        self.counts = FeederCounts()
        self._ledger = ledger
        self._fields = dict(fields)
        self._job = job
        self._notify = notify
        self._depth = depth
        self._clock = clock
        self._sleep = sleep
        self._log = structlog.get_logger("lineside.feeder").bind(device=device_id)
        self._outstanding: OrderedDict[int, None] = OrderedDict()
        """Records handed to the printer (or about to be) with no evidence yet, in the order loaded."""
        self._evidence: asyncio.Queue[PrintEvidence] = asyncio.Queue(EVIDENCE_QUEUE_SIZE)
        self._wake = asyncio.Event()
        self._status: PrinterStatus | None = None
        self._plan: PrintPlan | None = None
        self._holding: str | None = None
        self._settling: asyncio.Future[None] | None = None
        self._refusal: str | None = None
        self._refusals = 0
        """Refusals in a row, for the growing wait after each."""

    @property
    def outstanding(self) -> tuple[int, ...]:
        """Record ids handed to the printer with no evidence yet, oldest first."""
        return tuple(self._outstanding)

    @property
    def holding(self) -> str | None:
        """Why the feeder asked the line to hold, while it waits; None when it feeds."""
        return self._holding

    async def on_event(self, event: DeviceEvent) -> None:
        """Take the printer's evidence and status (the driver's event sink, directly or through the daemon)."""
        if isinstance(event, PrintEvidence):
            await self._evidence.put(event)
            self._wake.set()
        elif isinstance(event, PrinterStatusChanged):
            self._status = event.status
            self._wake.set()

    # -- one connected session ------------------------------------------------------------------

    async def serve(self, driver: Driver) -> None:
        """Feed the connected printer until cancelled: clear it, select the job, start, and keep it filled."""
        if not isinstance(driver, Printer):
            raise TypeError(f"{self.device_id}: a print feeder needs a printer driver, not {type(driver).__name__}")
        printer = driver
        caps = printer.capabilities
        depth = min(self._depth or caps.buffer_depth, caps.buffer_depth)
        refill = 1 if caps.load is LoadStyle.SINGLE_SHOT else max(1, depth // REFILL_FRACTION)
        # What the device held before this link is unknown: it must not print any of it on our packs.
        await printer.stop()
        await printer.clear()
        if self._job is not None:
            await printer.select_job(self._job)
        self._status = await printer.status()
        settling = asyncio.create_task(self._settle_forever(), name=f"{self.device_id} evidence")
        try:
            await self._feed(printer, depth, refill, settling)
        finally:
            # Ours alone, ended here: evidence it had not taken stays queued for offline() or the next session.
            settling.cancel()
            await asyncio.wait([settling])

    async def _feed(self, printer: Printer, depth: int, refill: int, settling: asyncio.Task[None]) -> None:
        printing = False
        while True:
            if settling.done():  # settling failed (the store): nothing printed can be recorded, stop feeding
                raise settling.exception() or RuntimeError("evidence settling stopped")
            self._wake.clear()
            batch = await self._ledger.active_batch()
            fault = self._fault(printing)
            if self._refusal is not None:
                reason, self._refusal = f"printer {self.device_id} refused a record: {self._refusal}", None
                await self._flush(reason, printer)
                printing = False
                await self._hold(reason)
                await self._sleep(REFUSED_RETRY_S)
                continue
            if fault is not None:
                if printing or self._outstanding:
                    await self._flush(fault, printer)
                    printing = False
                await self._hold(fault)
            elif batch is None or batch.state not in (BatchState.RUNNING, BatchState.PAUSED):
                if printing or self._outstanding:
                    # Records of a batch that ended must never print on the next batch's packs.
                    await self._flush("no batch is running" if batch is None else f"{batch.name} is "
                                      f"{batch.state.value}", printer)
                    printing = False
            elif batch.state is BatchState.RUNNING:
                if not printing:
                    await printer.start()
                    printing = True
                    # The last status polled may predate start(): judge the printer by a fresh one.
                    self._status = await printer.status()
                room = depth - len(self._outstanding)
                if room >= refill or not self._outstanding:
                    await self._top_up(printer, batch, room)
            # Paused: the line stands still; what is in the buffer stays valid and prints when it moves.
            await self._wait()

    async def offline(self, reason: str) -> None:
        """Settle what the lost link left: evidence already received, then every unconfirmed serial in doubt.

        When the store refuses the writes (a full disk), the serials stay sent: completing the batch puts every
        serial still in flight in doubt, so none is lost and none is sent again.
        """
        await self._hold(f"printer link lost: {reason}")
        try:
            await self._settle_pending()
            while not self._evidence.empty():
                await self._settle(self._take_all())
            await self._mark_in_doubt(f"printer {self.device_id} link lost with the serial in its buffer: {reason}")
        except StoreError as err:
            self._outstanding.clear()
            self._log.error("serials of the lost link not recorded; they stay sent until the batch completes",
                            error=str(err))

    # -- inside ---------------------------------------------------------------------------------

    def _fault(self, printing: bool) -> str | None:
        """Why the printer cannot print now (a fault, or stopped by itself while we print), or None."""
        status = self._status
        if status is None or not (
            status.state is PrinterState.FAULT or (printing and status.state is PrinterState.STOPPED)
        ):
            return None
        why = ", ".join(sorted(f.value for f in status.faults)) or status.detail or status.state.value
        return f"printer {self.device_id} cannot print: {why}"

    async def _top_up(self, printer: Printer, batch: BatchRow, room: int) -> None:
        plan = await self._plan_for(batch)
        if plan is None:
            return
        if await self._load(printer, plan, room):
            await self._resume()
        elif not self._outstanding:
            # Only once the printer has printed what it holds: until then the line still has packs to mark.
            await self._hold(f"{batch.name} has no serials left to print on {self.device_id}")

    async def _flush(self, reason: str, printer: Printer) -> None:
        """Stop, empty the device, and put every unconfirmed serial in doubt: printing became uncertain."""
        self._log.warning("printing uncertain: clearing the printer", reason=reason, outstanding=len(self._outstanding))
        if self._status is None or self._status.state is not PrinterState.FAULT:
            await printer.stop()
        await printer.clear()
        await self._settle_pending()
        while not self._evidence.empty():
            await self._settle(self._take_all())
        await self._mark_in_doubt(f"printer {self.device_id} buffer cleared: {reason}")

    async def _mark_in_doubt(self, reason: str) -> None:
        ids = list(self._outstanding)
        self._outstanding.clear()
        if ids:
            moved = await self._move_tolerant(ids, SerialState.IN_DOUBT, reason)
            self.counts.in_doubt += moved
            self._log.warning("serials in doubt", count=moved, reason=reason)

    async def _hold(self, reason: str) -> None:
        if self._holding == reason:
            return
        self._holding = reason
        self.counts.holds += 1
        self._log.debug("line hold requested", reason=reason)
        await self._notify(LineHoldRequest(device_id=self.device_id, at=self._clock(), reason=reason))

    async def _resume(self) -> None:
        if self._holding is None:
            return
        reason, self._holding = self._holding, None
        self._log.info("printer can feed again", after=reason)
        await self._notify(LineResumable(device_id=self.device_id, at=self._clock(), reason=f"cleared: {reason}"))

    async def _plan_for(self, batch: BatchRow) -> PrintPlan | None:
        if self._plan is not None and self._plan.batch.id == batch.id:
            return self._plan
        product_json, order_json = await self._ledger.store.read(BatchDocuments(batch.id))
        try:
            product = Product.model_validate(json.loads(product_json))
            self._plan = plan_for(self.device_id, batch, product, order_of(order_json), self._fields)
        except (BatchError, ValueError) as err:
            await self._hold(f"cannot print {batch.name} on {self.device_id}: {err}")
            return None
        self._log.info("feeding batch", batch=batch.id, work_order=batch.work_order, lot=batch.lot)
        return self._plan

    async def _load(self, printer: Printer, plan: PrintPlan, room: int) -> bool:
        """Draw up to room serials (durably sent first) and hand them over; False when none are left."""
        if room < 1:
            return True
        try:
            rows = await self._ledger.next_to_print(plan.batch.id, room, device=self.device_id)
        except BatchError:
            return True  # the batch stopped running between the check and the draw: the loop sees it
        if not rows:
            return False
        records = [plan.record(serial_id, serial, code) for serial_id, serial, code in rows]
        for record in records:
            self._outstanding[record.record_id] = None
        self.counts.sent += len(records)
        await printer.load(records)
        return True

    async def _wait(self) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(IDLE_POLL_S):
                await self._wake.wait()

    async def _settle_forever(self) -> None:
        while True:
            first = await self._evidence.get()
            batch = [first, *self._take_all()]
            # Shielded: a move handed to the ledger is finished and accounted for even if the link drops now;
            # offline() waits for it before it decides what is in doubt.
            self._settling = asyncio.ensure_future(self._settle(batch))
            try:
                await asyncio.shield(self._settling)
            except StoreError as err:
                # Evidence lost, nothing else: the serials stay sent, the camera's proof of a good pack moves
                # them on, and completing the batch puts the rest in doubt. Stopping here would stop the printer.
                self._log.error("printer evidence not recorded; its serials stay sent", records=len(batch),
                                error=str(err))
            self._settling = None

    async def _settle_pending(self) -> None:
        pending, self._settling = self._settling, None
        if pending is not None:
            with contextlib.suppress(SerialError):
                await pending

    def _take_all(self) -> list[PrintEvidence]:
        taken = []
        while not self._evidence.empty():
            taken.append(self._evidence.get_nowait())
        return taken

    async def _settle(self, evidence: list[PrintEvidence]) -> None:
        """Apply a run of evidence: skipped records in doubt, printed ones printed, refused ones rejected."""
        printed: list[int] = []
        skipped: list[int] = []
        refused: dict[str, list[int]] = {}
        for item in evidence:
            if item.outcome is PrintOutcome.SENT:
                self._refusals = 0
                continue
            if item.record_id not in self._outstanding:
                self.counts.anomalies += 1
                self._log.warning("evidence for a record not outstanding ignored", record=item.record_id,
                                  outcome=item.outcome.value, detail=item.detail)
                continue
            if item.outcome is PrintOutcome.FAILED:
                del self._outstanding[item.record_id]
                refused.setdefault(item.detail or "refused", []).append(item.record_id)
                self._refusal = item.detail or "refused"
                self._wake.set()
                continue
            for earlier in list(self._outstanding):
                if earlier == item.record_id:
                    break
                # A FIFO prints in order: a record loaded earlier and still unconfirmed was skipped or lost.
                del self._outstanding[earlier]
                skipped.append(earlier)
            del self._outstanding[item.record_id]
            printed.append(item.record_id)
        if skipped:
            self.counts.in_doubt += await self._move_tolerant(
                skipped, SerialState.IN_DOUBT, f"printer {self.device_id} reported a later record printed first"
            )
        if printed:
            self.counts.printed += await self._move_tolerant(
                printed, SerialState.PRINTED, "printer reported it printed"
            )
        for detail, ids in refused.items():
            self.counts.refused += await self._move_tolerant(
                ids, SerialState.REJECTED, f"printer refused it: {detail}"
            )

    async def _move_tolerant(self, ids: list[int], to: SerialState, reason: str) -> int:
        """Move the serials still sent; one that moved on meanwhile (batch completed) is logged and left."""
        try:
            return await self._ledger.move(ids, to, reason=reason, device=self.device_id, expect=SENT_ONLY)
        except IllegalTransitionError:
            if len(ids) == 1:
                self._log.warning("serial no longer sent; evidence not applied", serial_id=ids[0], to=to.label)
                return 0
        moved = 0
        for serial_id in ids:
            moved += await self._move_tolerant([serial_id], to, reason)
        return moved
