"""The line's OPEN-SCS service: serials requested from the L3 pool server into the pool, serial states reported back.

Requests. A batch whose serials come over OPEN-SCS asks, at release, for what the pool lacks (`ensure`, the
`SerialRequester` of `BatchService`), in calls of at most ``request_size``. Each request is recorded with a fresh
RequestToken before it is sent; its serials enter the pool through the import every upstream list takes
(`BatchService.import_serials`, checked against the product's serial format, all or nothing), which keeps the
token. A request whose answer is lost (timeout, link down, a crash) stays pending and is sent again with the same
token, at the next release or by the background task: the server answers a token it knows with the same serials,
and a token whose import is already in the store is not imported again. With ``low_water`` set, the background task
keeps each OPEN-SCS product's pool above it.

Reports. The background task (`run`) turns what happens to the serials of OPEN-SCS batches into OPEN-SCS calls
(`edge.openscs.ops.collect_reports`, durable) and sends them in order, each once accepted; each carries its id
(``ReportID``, unique to this store) so a report sent again after a lost answer is applied once. The mapping:

=====================================  ==========================  =====================================
the line (edge.serials.states)         OPEN-SCS call                server state after
=====================================  ==========================  =====================================
drawn by a batch (requested unalloc.)  SNtoAllocated                Allocated
sent to a printer                      SNtoEncoded                  Encoded (printed, in doubt: the same)
commissioned                           SIDCommissioningEvent        Commissioned
rejected                               LabelsScrappingEvent         LabelScrapped
sampled                                LabelsSamplingEvent          Sampled (was commissioned) / LabelSampled
destroyed                              SIDDestroyingEvent           Destroyed
returned unused at close or cancel     SNReturnAllocated            Unallocated
=====================================  ==========================  =====================================

Every state a serial of the line can be in stands for exactly one server state (`ops.expected_state`), the one
`edge.serials.states.OPEN_SCS_STATE` names, but for serials in the pool (the state they were requested in) and
sampled labels never commissioned (LabelSampled, as the event leaves them). Serials are reported encoded when they
go to a printer, not when printed: from then on the serial may be on a pack, and the server must never see it as
still allocated. The L3 server being down never stops the line: reports wait in the store, in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Final, Literal, TypeVar

import structlog

from edge.errors import EdgeError, PoolExhaustedError, SerialImportError
from edge.openscs import ops
from edge.openscs.client import REQUEST_METHODS, Endpoint, OpenScsClient
from edge.openscs.errors import OpenScsError, OpenScsRefusedError, OpenScsSetupError, OpenScsUnavailableError
from edge.openscs.types import ReturnStatus
from edge.serials.batches import OPEN_SCS, serial_source
from edge.store.runs import iso_utc
from edge.store.store import utc_now
from edge.supervisor import Sleep, default_backoff

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from datetime import datetime

    from edge.config.models import LineConfig, OpenScsConfig
    from edge.openscs.types import SerialNumberState
    from edge.products.models import Product
    from edge.serials.batches import BatchService
    from edge.serials.ops import BatchRow
    from edge.store import Store

_LOG = structlog.get_logger("lineside.openscs")

POLL_S: Final = 1.0
"""How often the background task looks for serial moves to report: a report a second late costs nothing, and a
look finding nothing new is two indexed reads."""
REQUEST_ATTEMPTS: Final = 3
"""Tries of one request before a release gives up (the operator retries it): a brief outage is ridden out, a long
one is reported within seconds rather than holding the release."""
SEND_BATCH: Final = 100
"""Reports read from the store at a time."""
T = TypeVar("T")

GTIN_KEY: Final = "GTIN"
REPORT_KEY: Final = "ReportID"


def endpoint_of(config: LineConfig) -> Endpoint:
    """Return the L3 pool server and the line's credentials for it, read from their files (OpenScsSetupError)."""
    from edge.opcua.certs import OpcUaPaths  # noqa: PLC0415 - asyncua-free module, imported only with OPEN-SCS

    cfg = config.openscs
    if cfg is None:
        raise OpenScsSetupError("the line configuration has no openscs section")
    defaults = OpcUaPaths.in_state_dir(config.storage.state_dir)
    certificate = cfg.certificate or defaults.certificate
    private_key = cfg.private_key or defaults.private_key
    try:
        lines = cfg.credentials_file.read_text(encoding="utf-8").splitlines()
    except OSError as err:
        raise OpenScsSetupError(f"openscs.credentials_file: cannot read {cfg.credentials_file}: {err}") from None
    if len(lines) < 2 or not lines[0].strip():  # a user name line and a password line
        raise OpenScsSetupError(f"{cfg.credentials_file} must hold the user name on its first line and the password "
                                "on its second")
    try:
        cert, key = certificate.read_bytes(), private_key.read_bytes()
    except OSError as err:
        hint = "" if cfg.certificate else "; make the line's certificate with `lineside opcua cert -c FILE`"
        raise OpenScsSetupError(f"the line's OPC UA certificate for OPEN-SCS: {err}{hint}") from None
    try:
        pinned = None if cfg.server_certificate is None else Path(cfg.server_certificate).read_bytes()
    except OSError as err:
        raise OpenScsSetupError(f"openscs.server_certificate: {err}") from None
    return Endpoint(url=cfg.url, certificate=cert, private_key=key, username=lines[0].strip(), password=lines[1],
                    server_certificate=pinned, pool_object=cfg.pool_object, event_manager=cfg.event_manager)


class OpenScsService:
    """OPEN-SCS serial requests and state reports of one line, durable in its store; run() in the daemon's TaskGroup."""

    def __init__(
        self,
        config: OpenScsConfig,
        *,
        store: Store,
        batches: BatchService,
        client: OpenScsClient,
        line_id: str,
        clock: Callable[[], datetime] = utc_now,
        poll_s: float = POLL_S,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.config: Final = config
        self.store = store
        self.batches = batches
        self.client = client
        self.line_id = line_id
        self._clock = clock
        self._poll_s = poll_s
        self._sleep = sleep
        self._requests = asyncio.Lock()  # one request at a time: a token is never in two calls at once
        self._sending = asyncio.Lock()  # one sender: reports go out in order
        self._wakeup = asyncio.Event()
        self._backoff = default_backoff(config.retry_initial_s, config.retry_max_s)
        self.last_error: str | None = None
        """Why the last round failed (the server down, a refusal), until one succeeds."""

    def _now(self) -> str:
        return iso_utc(self._clock())

    def wake(self) -> None:
        """Have the background task look for work now (a batch was released or closed)."""
        self._wakeup.set()

    # -- requests -------------------------------------------------------------------------------------------

    async def ensure(self, batch: BatchRow, product: Product, count: int) -> None:
        """Request what the pool lacks of the batch's count serials (PoolExhaustedError, OpenScsError when not)."""
        # What a short answer gave stays in the pool; a request whose answer was lost goes again, same token.
        async with self._requests:
            needed = await self._shortfall(batch, count)
            if needed and await self._finish_pending(product):
                needed = await self._shortfall(batch, count)
            while needed > 0:
                got, complete = await self._request(product, min(needed, self.config.request_size))
                needed = await self._shortfall(batch, count)
                if not complete and needed > 0:
                    raise PoolExhaustedError(
                        f"{batch.name} lacks {needed:,} serials and the L3 pool server has no more for GTIN "
                        f"{batch.gtin} (it gave {got:,} of the last request, which are in the pool): ask the site "
                        "for more, then release again"
                    )
        self.wake()  # the background task checks the low-water mark

    async def refill(self) -> int:
        """Finish lost requests, then give each OPEN-SCS pool below low_water request_size more; return serials got."""
        mark = self.config.low_water
        received = 0
        async with self._requests:
            for product in self._products():
                await self._finish_pending(product)
                if mark is None:
                    continue
                available = await self.store.read(partial(ops.pool_size, gtin=product.gtin))
                if available < mark:
                    _LOG.info("OPEN-SCS pool below its low-water mark: requesting more", product=product.id,
                              available=available, low_water=mark, requesting=self.config.request_size)
                    received += (await self._request(product, self.config.request_size))[0]
        return received

    async def _shortfall(self, batch: BatchRow, count: int) -> int:
        return await self.store.read(partial(ops.shortfall, batch_id=batch.id, count=count))

    def _products(self) -> list[Product]:
        catalog = self.batches.catalog
        return [p for p in catalog.products.values()
                if p.market in catalog.markets and serial_source(p, catalog.markets[p.market]) == OPEN_SCS]

    async def _finish_pending(self, product: Product) -> bool:
        """Send again the product's requests whose answer never arrived; tell whether there were any."""
        pending = await self.store.read(partial(ops.pending_requests, gtin=product.gtin))
        for row in pending:
            _LOG.info("OPEN-SCS request sent again with its token", token=row.token, count=row.count)
            await self._complete(row, product)
        return bool(pending)

    async def _request(self, product: Product, count: int) -> tuple[int, bool]:
        """Record and send one request for count serials; return how many came and whether all did."""
        cfg = self.config
        row = await self.store.write(partial(
            ops.begin_request, token=f"{self.line_id}-{uuid.uuid4().hex}", kind=cfg.request, gtin=product.gtin,
            product_id=product.id, collection_id=cfg.collection_id, count=count, now=self._now()))
        return await self._complete(row, product)

    async def _complete(self, row: ops.RequestRow, product: Product) -> tuple[int, bool]:
        """Send a recorded request (again) and import what it brings; return how many came and whether all did."""
        method = REQUEST_METHODS[row.kind]
        before = await self.store.read(partial(ops.imported_count, token=row.token))
        if before is not None:  # imported before a crash or a lost write: done already
            await self._finish(row, "imported", before, "imported earlier")
            return before, before >= row.count
        answer = await self._with_retries(lambda: self.client.request(
            row.kind, collection_id=row.collection_id, count=row.count, sn_format=self.config.sn_format,
            criteria={GTIN_KEY: row.gtin}, token=row.token))
        if answer.status not in (ReturnStatus.NO_ERROR, ReturnStatus.INSUFFICIENT_SERIAL_NUMBERS):
            await self._finish(row, "failed", 0, answer.status.title)
            raise OpenScsRefusedError(method, answer.status)
        if answer.serials:
            document = json.dumps({"gtin": row.gtin, "request_token": row.token, "serials": list(answer.serials)})
            try:
                await self.batches.import_serials(document, f"OPEN-SCS {method} {row.token}", product=product.id,
                                                  kind="json")
            except SerialImportError as err:
                await self._finish(row, "failed", 0, f"import refused: {err}")
                raise
        received = len(answer.serials)
        await self._finish(row, "imported", received, answer.status.title)
        _LOG.info("OPEN-SCS serials received", method=method, token=row.token, asked=row.count, received=received,
                  status=answer.status.title)
        if answer.returned_token and received < row.count and answer.status is ReturnStatus.NO_ERROR:
            # The server hands the rest out in pages: the next page is asked for with the token it returned.
            rest = await self.store.write(partial(
                ops.begin_request, token=answer.returned_token, kind=row.kind, gtin=row.gtin,
                product_id=row.product_id, collection_id=row.collection_id, count=row.count - received,
                now=self._now()))
            more, complete = await self._complete(rest, product)
            return received + more, complete
        return received, received >= row.count

    async def _finish(self, row: ops.RequestRow, state: Literal["imported", "failed"], received: int,
                      status: str) -> None:
        await self.store.write(partial(ops.finish_request, request_id=row.id, state=state, received=received,
                                       status=status, now=self._now()))

    async def _with_retries(self, call: Callable[[], Awaitable[T]]) -> T:
        """Make call, again after a pause while the server cannot be reached, REQUEST_ATTEMPTS times at most."""
        backoff = default_backoff(self.config.retry_initial_s, self.config.retry_max_s)
        attempt = 1
        while True:
            try:
                return await call()
            except OpenScsUnavailableError as err:
                if attempt >= REQUEST_ATTEMPTS:
                    raise OpenScsUnavailableError(
                        f"{err}; the request stays pending and is sent again with its token at the next try"
                    ) from err
                delay = backoff.next_delay()
                _LOG.warning("OPEN-SCS request failed; trying again", error=str(err), attempt=attempt,
                             retry_in_s=round(delay, 2))
                await self._sleep(delay)
                attempt += 1

    # -- reports --------------------------------------------------------------------------------------------

    async def collect(self) -> int:
        """Queue reports for what happened to OPEN-SCS serials since the last look; return how many were queued."""
        queued = 0
        while True:
            count, more = await self.store.write(partial(ops.collect_reports, kind=self.config.request,
                                                         now=self._now()))
            queued += count
            if not more:
                return queued

    async def send(self) -> int:
        """Send the queued reports in order; return how many were accepted (OpenScsError at the first that fails)."""
        sent = 0
        async with self._sending:
            while reports := await self.store.read(partial(ops.next_reports, limit=SEND_BATCH)):
                for report in reports:
                    try:
                        status = await self._send(report)
                    except OpenScsError as err:
                        await self.store.write(partial(ops.report_failed, report_id=report.id, error=str(err)))
                        raise
                    if status is not ReturnStatus.NO_ERROR:
                        await self.store.write(partial(ops.report_failed, report_id=report.id, error=status.title))
                        raise OpenScsRefusedError(report.method, status)
                    await self.store.write(partial(ops.report_sent, report_id=report.id, now=self._now()))
                    sent += 1
        return sent

    async def flush(self) -> None:
        """Queue and send every report due now (OpenScsError when the server fails one)."""
        await self.collect()
        await self.send()

    async def backlog(self) -> dict[str, int]:
        """Return the reports not yet accepted by the server and the requests still pending."""
        return await self.store.read(ops.backlog)

    async def line_view(self, batch_id: int) -> dict[str, SerialNumberState]:
        """Return, per serial of the batch, the state the server should hold it in by the line's own records."""
        return await self.store.read(partial(ops.line_view, batch_id=batch_id, kind=self.config.request))

    async def _send(self, report: ops.ReportRow) -> ReturnStatus:
        cfg = self.config
        report_id = f"{self.store.store_id}-{report.id}"
        if report.method in ops.POOL_METHODS:
            return await self.client.push(report.method, report.serials, collection_id=cfg.collection_id,
                                          state=ops.METHOD_STATE[report.method], sn_format=cfg.sn_format,
                                          criteria={GTIN_KEY: report.gtin, REPORT_KEY: report_id})
        context = {GTIN_KEY: report.gtin, "LotNumber": report.lot, "OrderNumber": report.work_order,
                   "LineID": self.line_id, REPORT_KEY: report_id}
        return await self.client.event(report.method, report.serials, sn_format=cfg.sn_format, context=context)

    # -- the background task --------------------------------------------------------------------------------

    async def run(self) -> None:
        """Report, finish lost requests and keep pools above low water until cancelled; closes the client then."""
        try:
            while True:
                try:
                    await self._round()
                except EdgeError as err:
                    await self._failed(err)
                    continue
                if self.last_error is not None:
                    _LOG.info("OPEN-SCS server reachable again; reports delivered")
                    self.last_error = None
                self._backoff.reset()
                await self._wait(self._poll_s)
        finally:
            await self.client.aclose()

    async def _round(self) -> None:
        await self.collect()
        await self.send()
        await self.refill()

    async def _failed(self, err: EdgeError) -> None:
        delay = self._backoff.next_delay()
        if isinstance(err, OpenScsSetupError):
            self._backoff.max_out()  # credentials or trust: a person must act, retrying fast helps nobody
        first = self.last_error is None
        self.last_error = str(err)
        log = _LOG.warning if first else _LOG.debug
        log("OPEN-SCS round failed; the line goes on, reports wait in the store", error=str(err),
            retry_in_s=round(delay, 1), **await self.backlog())
        await self._wait(delay)

    async def _wait(self, delay: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay):
                await self._wakeup.wait()
        self._wakeup.clear()
