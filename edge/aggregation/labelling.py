"""The label station: a finished case or pallet counts as closed only once its label is printed and verified.

A packing station hands over each finished container (`submit`). For each one, in order, the station:

1. builds the label from the product's template for this printer (`edge.aggregation.labels`): the SSCC, the
   content GTIN, count, lot and expiry of the batch; downloads that product's stored format when it is not the
   one in the printer;
2. sends it as one record and waits for the printer's evidence that it printed (`PRINT_TIMEOUT_S`);
3. waits for the verifying scanner after the applicator to read it (`VERIFY_TIMEOUT_S`): the read must carry
   exactly the container's current SSCC, and every other AI it carries must be the label's;
4. closes the container (full, or short with the operator's reason).

A label that failed (refused by the printer, not printed in time, not read, read wrong, or in doubt because
the printer's link dropped) is voided: its SSCC is recorded as voided, never used again, and the container
gets a new SSCC and a new label. After `MAX_ATTEMPTS` failed labels the container waits for an operator
(`attention`, a line hold is requested): a printer or scanner that fails every label needs a person.

The station is the printer's device session (`serve`/`offline`); the daemon routes the printer's events to
`on_printer_event` and the verifying scanner's reads to `on_read`.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Literal

import structlog

from drivers.base import CodeRead, DeviceEvent
from drivers.printer.base import Printer, PrintEvidence, PrintOutcome, PrintRecord
from edge.aggregation import AggregationError
from edge.aggregation.labels import LabelError, LabelValues, element_string, label_record, stored_format
from edge.aggregation.stations import ScanError, read_elements
from edge.line.events import LineHoldRequest
from edge.store.store import utc_now

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from drivers.base import Driver, EventSink
    from edge.aggregation.ops import ContainerRow
    from edge.aggregation.service import Aggregation
    from edge.products.load import Catalog
    from edge.products.models import PrintTemplate
    from edge.serials.ledger import SerialLedger

__all__ = ["LabelAttempt", "LabelJob", "LabelStation"]

PRINT_TIMEOUT_S: Final = 60.0
"""An applicator prints when the container reaches it: a case or pallet may take this long from the packer to
the labeller on a slow line; a label not printed by then is in doubt and is voided."""
VERIFY_TIMEOUT_S: Final = 15.0
"""The verifying scanner sits just after the applicator: a printed label it has not read by then is a no-read."""
MAX_ATTEMPTS: Final = 3
"""Labels tried per container before an operator is called: one bad label is a smudge, three are a fault."""
QUEUE_SIZE: Final = 64
"""Containers waiting for a label: a packer that gets this far ahead of its labeller waits (back-pressure)."""
READS_QUEUE_SIZE: Final = 16
"""Verifier reads waiting for the label being checked; a scanner that reads more than this is misconfigured."""
HISTORY: Final = 50
"""Label attempts kept for the HMI."""
SYSTEM_OPERATOR: Final = "system"
"""Operator recorded when the station itself voids a label it could not verify."""

Level = Literal["case", "pallet"]


@dataclass(slots=True)
class LabelJob:
    """One container waiting for its label: closed by an operator short of capacity when partial_reason is set."""

    container_id: int
    operator: str | None = None
    partial_reason: str | None = None
    attempts: int = 0
    last_problem: str | None = None
    in_doubt: bool = False
    """A label may already have been sent for the container's SSCC (before a restart): void it first."""


@dataclass(frozen=True, slots=True)
class LabelAttempt:
    """One label printed (or tried) for a container, and how it ended."""

    container_id: int
    sscc: str
    outcome: Literal["verified", "voided"]
    detail: str = ""


@dataclass(slots=True)
class LabelCounts:
    """Labels since the station started."""

    printed: int = 0
    verified: int = 0
    voided: int = 0
    closed: int = 0
    attention: int = 0
    voided_by_reason: dict[str, int] = field(default_factory=dict)


class _LabelFailedError(Exception):
    """This label cannot count: the reason is recorded with the voided SSCC."""


class LabelStation:
    """Prints, verifies and closes each finished container of one level, one at a time, in order."""

    def __init__(
        self,
        aggregation: Aggregation,
        ledger: SerialLedger,
        catalog: Catalog,
        *,
        device_id: str,
        level: Level,
        station: str | None = None,
        notify: EventSink | None = None,
        print_timeout_s: float = PRINT_TIMEOUT_S,
        verify_timeout_s: float = VERIFY_TIMEOUT_S,
        max_attempts: int = MAX_ATTEMPTS,
    ) -> None:
        self.aggregation = aggregation
        self.device_id = device_id
        self.level = level
        self.station = station or f"{level}-labeller"
        self.counts = LabelCounts()
        self.history: deque[LabelAttempt] = deque(maxlen=HISTORY)
        """The latest label attempts, oldest first."""
        self.attention: deque[LabelJob] = deque()
        """Containers whose labels kept failing: an operator checks the printer and scanner, then `retry`."""
        self.on_closed: list[Callable[[ContainerRow], Awaitable[None]]] = []
        """Called with each container once its label is verified and it is closed."""
        self._ledger = ledger
        self._catalog = catalog
        self._notify = notify
        self._print_timeout_s = print_timeout_s
        self._verify_timeout_s = verify_timeout_s
        self._max_attempts = max_attempts
        self._jobs: asyncio.Queue[LabelJob] = asyncio.Queue(QUEUE_SIZE)
        self._current: LabelJob | None = None
        self._evidence: dict[int, asyncio.Future[PrintEvidence]] = {}
        self._reads: asyncio.Queue[bytes] | None = None
        self._record = 0
        self._format: str | None = None
        self._idle = asyncio.Event()
        self._idle.set()
        self._log = structlog.get_logger("lineside.labels").bind(station=self.station, device=device_id)

    # -- the packing stations' side --------------------------------------------------------------

    async def submit(self, container: ContainerRow, operator: str | None = None,
                     partial_reason: str | None = None, *, in_doubt: bool = False) -> None:
        """Queue a finished container for its label (a `Completed` callback); waits while the queue is full.

        in_doubt: a label for its current SSCC may exist already (it waited for its label when the line
        stopped); that SSCC is voided before the new label, so two labels never carry one SSCC.
        """
        if container.level != self.level:
            raise AggregationError(f"{container.name} cannot go to the {self.level} label station")
        self._idle.clear()
        await self._jobs.put(LabelJob(container.id, operator, partial_reason, in_doubt=in_doubt))
        self._log.info("label queued", container=container.name, waiting=self._jobs.qsize())

    def retry(self, container_id: int) -> bool:
        """Put a container back in line after an operator fixed the printer or scanner; False when it is not waiting."""
        for job in self.attention:
            if job.container_id == container_id:
                self.attention.remove(job)
                job.attempts = 0
                self._jobs.put_nowait(job)  # it came out of this queue: there is room unless the line overfilled it
                self._idle.clear()
                return True
        return False

    async def wait_idle(self) -> None:
        """Return once every submitted container is closed or waiting for an operator."""
        await self._idle.wait()

    @property
    def waiting(self) -> int:
        """Containers queued or being labelled."""
        return self._jobs.qsize() + (self._current is not None)

    def describe(self) -> dict[str, Any]:
        """Return the station's state for the line status: counts, waiting, containers needing an operator."""
        return {
            "device": self.device_id,
            "level": self.level,
            "waiting": self.waiting,
            "counts": {"printed": self.counts.printed, "verified": self.counts.verified,
                       "voided": self.counts.voided, "closed": self.counts.closed},
            "attention": [{"container_id": j.container_id, "problem": j.last_problem} for j in self.attention],
            "last": [{"sscc": a.sscc, "outcome": a.outcome, "detail": a.detail} for a in list(self.history)[-5:]],
        }

    # -- device events -----------------------------------------------------------------------------

    async def on_printer_event(self, event: DeviceEvent) -> None:
        """Take the label printer's evidence for the label being printed."""
        if isinstance(event, PrintEvidence) and event.outcome is not PrintOutcome.SENT:
            waiter = self._evidence.get(event.record_id)
            if waiter is not None and not waiter.done():
                waiter.set_result(event)

    async def on_read(self, event: DeviceEvent) -> None:
        """Take one read of the verifying scanner; reads with no label waiting to be verified are logged, not used."""
        if not isinstance(event, CodeRead):
            return
        reads = self._reads
        if reads is None:
            self._log.warning("label read while no label awaits verification; ignored",
                              data=event.data[:64].decode("latin-1"))
            return
        await reads.put(event.data)

    # -- the printer session ---------------------------------------------------------------------

    async def serve(self, driver: Driver) -> None:
        """Label the queued containers on this printer until cancelled; a lost link raises out of here."""
        if not isinstance(driver, Printer):
            raise TypeError(f"{self.device_id} is not a printer; it cannot print labels")
        self._format = None  # a printer that reconnects may have been power cycled: download the format again
        # Labels the printer still holds from before (a lost link, a restart) must not print onto the next
        # container: their SSCCs are voided (offline, recover) and they are cancelled here.
        await driver.clear()
        while True:
            if self._current is None:
                if self._jobs.empty():
                    self._idle.set()
                self._current = await self._jobs.get()
            await self._label(driver, self._current)
            self._current = None

    async def offline(self, reason: str) -> None:
        """Void the SSCC of a label sent before the link dropped: it may print later and must never verify."""
        job = self._current
        self._fail_waiters(f"printer link lost: {reason}")
        if job is not None and job.last_problem == _IN_FLIGHT:
            try:
                await self._void(job, f"label in doubt: the printer's link was lost ({reason})")
            except AggregationError as err:
                self._log.error("label in doubt could not be voided", container_id=job.container_id, error=str(err))

    # -- inside --------------------------------------------------------------------------------------

    async def _label(self, printer: Printer, job: LabelJob) -> None:
        while True:
            box = await self.aggregation.container(job.container_id)
            if box.state != "open":
                self._log.warning("container no longer open; not labelled", container=box.name, state=box.state)
                return
            if job.attempts >= self._max_attempts:
                await self._needs_operator(job, box)
                return
            if job.in_doubt:
                job.in_doubt = False
                await self._void(job, "label in doubt: the line stopped while the container waited for its label")
                continue
            job.attempts += 1
            try:
                await self._attempt(printer, job, box)
            except _LabelFailedError as failed:
                await self._void(job, str(failed))
                continue
            except (AggregationError, LabelError) as err:
                # The container or its batch cannot be labelled at all (batch ended, product without a
                # template): no label would help, an operator must decide.
                job.last_problem = str(err)
                job.attempts = self._max_attempts
                await self._needs_operator(job, box)
                return
            return

    async def _attempt(self, printer: Printer, job: LabelJob, box: ContainerRow) -> None:
        template, values = await self._label_data(box)
        expected = element_string(template, values)
        await self._ensure_format(printer, template)
        self._record += 1
        record_id = self._record
        fields = tuple((f"FN{n}", value) for n, (_, value) in enumerate(label_record(template, values), start=1))
        loop = asyncio.get_running_loop()
        evidence = self._evidence[record_id] = loop.create_future()
        self._reads = asyncio.Queue(READS_QUEUE_SIZE)
        try:
            job.last_problem = _IN_FLIGHT
            await printer.load([PrintRecord(record_id, fields)])
            try:
                async with asyncio.timeout(self._print_timeout_s):
                    outcome = await evidence
            except TimeoutError:
                await self._scrap(printer)
                raise _LabelFailedError(f"not printed within {self._print_timeout_s:g} s") from None
            if outcome.outcome is PrintOutcome.FAILED:
                raise _LabelFailedError(f"the printer refused the label: {outcome.detail or 'no detail'}")
            self.counts.printed += 1
            problem = await self._verify(box.identifier, expected)
            if problem is not None:
                raise _LabelFailedError(problem)
        finally:
            self._evidence.pop(record_id, None)
            self._reads = None
        job.last_problem = None
        self.counts.verified += 1
        self.history.append(LabelAttempt(box.id, box.identifier, "verified"))
        closed = await self.aggregation.close_container(
            box.id, operator=job.operator, partial_reason=job.partial_reason, station=self.station,
        )
        self.counts.closed += 1
        self._log.info("label verified; container closed", container=closed.name, count=closed.count,
                       short=closed.partial_reason)
        for listener in self.on_closed:
            await listener(closed)

    async def _verify(self, sscc: str, expected: str) -> str | None:
        """Return None when the scanner read this label right, else what was wrong."""
        reads = self._reads
        if reads is None:  # pragma: no cover - set by _attempt around this call
            raise RuntimeError("no verification in progress")
        want = dict(read_elements(expected.encode("latin-1")))
        try:
            async with asyncio.timeout(self._verify_timeout_s):
                data = await reads.get()
        except TimeoutError:
            return f"no read: the scanner read no label within {self._verify_timeout_s:g} s"
        try:
            got = read_elements(data)
        except ScanError as err:
            return f"unreadable or not GS1: {err}"
        if got.get("00") != sscc:
            return f"wrong label: read SSCC {got.get('00') or '(none)'}, expected {sscc}"
        wrong = [f"({ai}) read {value!r}, expected {want.get(ai)!r}"
                 for ai, value in got.items() if want.get(ai) != value]
        if wrong:
            return f"label data differs: {'; '.join(wrong)}"
        return None

    async def _void(self, job: LabelJob, reason: str) -> None:
        relabelled = await self.aggregation.void_label(
            job.container_id, reason=reason, operator=job.operator or SYSTEM_OPERATOR, station=self.station,
        )
        job.last_problem = reason
        self.counts.voided += 1
        kind = reason.split(":", 1)[0]
        self.counts.voided_by_reason[kind] = self.counts.voided_by_reason.get(kind, 0) + 1
        self.history.append(LabelAttempt(job.container_id, relabelled.voided, "voided", reason))
        self._log.warning("label voided; relabelling with a new SSCC", voided=relabelled.voided,
                          new=relabelled.container.identifier, reason=reason, attempt=job.attempts)

    async def _scrap(self, printer: Printer) -> None:
        """Cancel what the printer still holds, so a label in doubt does not print onto the next container."""
        try:
            await printer.clear()
        except Exception as err:  # noqa: BLE001 - a link that fails here is reported by the supervisor
            self._log.warning("could not cancel the printer's labels", error=str(err))

    async def _needs_operator(self, job: LabelJob, box: ContainerRow) -> None:
        self.attention.append(job)
        self.counts.attention += 1
        self._log.error("labels keep failing; an operator must check the labeller and scanner",
                        container=box.name, attempts=job.attempts, problem=job.last_problem)
        if self._notify is not None:
            await self._notify(LineHoldRequest(
                device_id=self.device_id, at=utc_now(), reason=f"{box.name}: label failed {job.attempts} times: "
                f"{job.last_problem}",
            ))

    async def _ensure_format(self, printer: Printer, template: PrintTemplate) -> None:
        zpl = stored_format(template, name=_format_name(template))
        if zpl == self._format:
            return
        store = getattr(printer, "store_format", None)
        if store is None:
            raise LabelError(f"{self.device_id} cannot store label formats: a label station needs a ZPL printer")
        await store(zpl)
        self._format = zpl

    async def _label_data(self, box: ContainerRow) -> tuple[PrintTemplate, LabelValues]:
        batch = await self._ledger.batch(box.batch_id)
        product = self._catalog.products.get(batch.product_id)
        if product is None:
            raise LabelError(f"product {batch.product_id} of {batch.name} is not in the catalog")
        template = product.templates.get(self.device_id)
        if template is None or template.level != box.level:
            raise LabelError(f"product {product.id} has no {box.level} label template for printer {self.device_id}")
        units = await self._units(box)
        values = LabelValues(sscc=box.identifier, content_gtin=batch.gtin, count=units, lot=batch.lot,
                             expiry=batch.expiry)
        return template, values

    async def _units(self, box: ContainerRow) -> int:
        """Return the saleable units in the container, through every level below it (AI 37 counts units)."""
        contents = await self.aggregation.contents(box.id)
        total = len(contents.serial_ids)
        for child in contents.container_ids:
            total += await self._units(await self.aggregation.container(child))
        return total

    def _fail_waiters(self, reason: str) -> None:
        for waiter in self._evidence.values():
            if not waiter.done():
                waiter.set_exception(_LabelFailedError(reason))
        self._evidence.clear()


_IN_FLIGHT: Final = "label sent; not yet verified"


def _format_name(template: PrintTemplate) -> str:
    """Return a stored-format name unique to the template's layout, so two products never share a stale format."""
    digest = hashlib.sha256(template.model_dump_json().encode()).hexdigest()[:8].upper()
    return f"E:L{digest}.ZPL"

