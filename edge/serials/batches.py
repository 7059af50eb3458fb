"""Batches as an MES and an operator see them: work orders in, serials allocated by the market's rules, close.

BatchService joins the catalog (products and market packs) to the serial ledger. The rules of where
serials come from are data: the market pack says local, upstream list, external complete codes or OPEN-SCS
(requested from the L3 pool server at release) and how random serials must be; the product says the serial
format it prints and the overage, and may draw its serials over OPEN-SCS whatever its market says.
"""

from __future__ import annotations

import asyncio
import json
import os
from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol

import structlog

from edge.errors import BatchError, SerialImportError
from edge.markets.rules import check_randomisation
from edge.products.models import Product
from edge.serials.generate import RandomSerials
from edge.serials.imports import Kind, parse_serial_import
from edge.serials.ops import AllocationPlan, NewBatch, Origin
from edge.serials.states import BatchState
from edge.serials.workorder import load_work_order_text, with_overage

if TYPE_CHECKING:
    import sqlite3
    from collections.abc import Awaitable, Callable, Mapping, Sequence

    from edge.markets.models import MarketPack
    from edge.products.load import Catalog
    from edge.serials.ledger import SerialLedger
    from edge.serials.ops import BatchRow
    from edge.serials.workorder import WorkOrder

_LOG = structlog.get_logger("lineside.serials")

# An external request-more command (a site script asking L3 for serials) gets this long: it should
# only place the request, not wait for the answer, which arrives later as an import.
REQUEST_COMMAND_TIMEOUT_S = 30.0

_ORIGIN_OF_SOURCE = {
    "upstream_list": Origin.UPSTREAM,
    "external_complete_codes": Origin.EXTERNAL_CODE,
    "open_scs": Origin.UPSTREAM,
}
OPEN_SCS = "open_scs"


class LowWaterHook(Protocol):
    """Called when a GTIN's pool falls below its product's low-water mark, to ask upstream for more."""

    async def __call__(self, *, gtin: str, product: str, available: int, low_water: int) -> None:
        """Ask for more serials of gtin; must not raise for a failed request (log it instead)."""


async def log_low_water(*, gtin: str, product: str, available: int, low_water: int) -> None:
    """Raise the low-water alarm in the log, where the HMI and monitoring pick it up (the default hook)."""
    _LOG.warning("serial pool low", gtin=gtin, product=product, available=available, low_water=low_water)


@dataclass(frozen=True, slots=True)
class CommandRequest:
    """A low-water hook that runs a site command (argv) with LINESIDE_GTIN, _PRODUCT, _AVAILABLE, _LOW_WATER set."""

    argv: Sequence[str]
    timeout_s: float = REQUEST_COMMAND_TIMEOUT_S

    async def __call__(self, *, gtin: str, product: str, available: int, low_water: int) -> None:
        """Run the command once; log its failure or timeout, never raise it."""
        await log_low_water(gtin=gtin, product=product, available=available, low_water=low_water)
        env = {
            **os.environ,
            "LINESIDE_GTIN": gtin,
            "LINESIDE_PRODUCT": product,
            "LINESIDE_AVAILABLE": str(available),
            "LINESIDE_LOW_WATER": str(low_water),
        }
        try:
            proc = await asyncio.create_subprocess_exec(
                *self.argv, env=env, stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            )
        except OSError as err:
            _LOG.error("serial request command cannot start", argv=list(self.argv), error=str(err))
            return
        try:
            output, _ = await asyncio.wait_for(proc.communicate(), self.timeout_s)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            _LOG.error("serial request command timed out", argv=list(self.argv), timeout_s=self.timeout_s)
            return
        if proc.returncode != 0:
            _LOG.error("serial request command failed", argv=list(self.argv), status=proc.returncode,
                       output=output.decode(errors="replace")[-2000:])


class SerialRequester(Protocol):
    """Brings a batch's serials into the pool from the L3 pool server before the batch draws them (OPEN-SCS)."""

    async def ensure(self, batch: BatchRow, product: Product, count: int) -> None:
        """Have the pool hold what the batch lacks of count serials; raise (PoolExhaustedError, ...) when it cannot."""


def serial_source(product: Product, market: MarketPack) -> str:
    """Return where the product's serials come from: its own serials.source when set, else its market pack's."""
    return product.serials.source or market.serial_source


def allocation_plan(product: Product, market: MarketPack, quantity: int) -> AllocationPlan:
    """Return how a batch of quantity units of product for market gets its serials (with its overage)."""
    count = with_overage(quantity, product.serials.overage_percent)
    where = serial_source(product, market)
    if where != "local":
        return AllocationPlan(count, _ORIGIN_OF_SOURCE[where])
    length = product.serials.generated_length
    if product.serials.mode == "sequential":
        space = 10**length
        return AllocationPlan(
            count, Origin.SEQUENTIAL, sequential_width=length,
            guard=partial(_check_space, market, space),
        )
    source = RandomSerials(product.serials.characters, length)
    return AllocationPlan(count, Origin.RANDOM, source=source, guard=partial(_check_space, market, source.space))


def _check_space(market: MarketPack, space: int, issued: int) -> None:
    check_randomisation(market, issued, space=space)


def returns_to_pool(batch: BatchRow) -> bool:
    """Tell whether the batch's unused serials go back to the pool (they came from upstream) or are only reported.

    Unused OPEN-SCS serials go back to the L3 pool server (SNReturnAllocated), not to the line's pool.
    """
    return batch.serial_source not in ("local", OPEN_SCS)


class AuditRecord(Protocol):
    """The audit trail's record(actor, action, subject, details)."""

    def __call__(
        self, actor: str | None, action: str, subject: str, details: Mapping[str, object], /
    ) -> Awaitable[int]: ...


class BatchService:
    """Work orders, batch life cycle and serial imports for one line, over its serial ledger."""

    def __init__(
        self,
        ledger: SerialLedger,
        catalog: Catalog,
        *,
        low_water: LowWaterHook = log_low_water,
        today: Callable[[], date] = lambda: datetime.now(UTC).date(),
    ) -> None:
        self.ledger = ledger
        self.catalog = catalog
        self._low_water = low_water
        self._today = today
        self.audit: AuditRecord | None = None
        """Where batch actions and serial exceptions are recorded (the audit trail), when the line keeps one."""
        self.closed_listeners: list[Callable[[int], None]] = []
        """Called with the batch id once a batch is durably closed (upstream delivery starts at once)."""
        self.serial_requests: SerialRequester | None = None
        """Requests the serials of OPEN-SCS batches from the L3 pool server, when the line has one configured."""

    # -- work orders ----------------------------------------------------------------------------

    def parse_work_order(self, text: str, source: str) -> WorkOrder:
        """Read a work order (YAML or JSON) against the catalog and this line; ConfigError lists its problems."""
        return load_work_order_text(
            text, source, products=self.catalog.products, markets=self.catalog.markets,
            line_id=self.ledger.line_id, today=self._today(),
        )

    async def create(self, order: WorkOrder, *, operator: str | None = None) -> BatchRow:
        """Create the batch of a checked work order, with a snapshot of its product; return it."""
        product = self.catalog.products[order.product]
        market = self.catalog.markets[order.market_for(product)]
        new = NewBatch(
            line_id=self.ledger.line_id,
            work_order=order.work_order,
            product_id=product.id,
            gtin=product.gtin,
            lot=order.lot,
            expiry=order.expiry_yymmdd,
            quantity=order.quantity,
            market=market.id,
            serial_source=serial_source(product, market),
            product=product.snapshot(),
            order=order.model_dump(mode="json"),
        )
        batch_id = await self.ledger.create_batch(new, operator=operator)
        _LOG.info("batch created", batch=batch_id, work_order=order.work_order, product=product.id, lot=order.lot,
                  quantity=order.quantity, market=market.id, operator=operator)
        created = await self.ledger.batch(batch_id)
        await self._audited(operator, "batch.create", created, {"product": product.id, "lot": order.lot,
                                                                "quantity": order.quantity, "market": market.id})
        return created

    async def import_work_order(self, text: str, source: str, *, operator: str | None = None) -> BatchRow:
        """Parse a work order and create its batch; ConfigError or BatchError say what is wrong."""
        return await self.create(self.parse_work_order(text, source), operator=operator)

    # -- life cycle -----------------------------------------------------------------------------

    async def release(self, ref: int | str, *, operator: str | None = None) -> BatchRow:
        """Allocate the batch's serials by its market's rules and mark it released; return it."""
        batch = await self.ledger.batch(ref)
        product = await self._product_of(batch)
        market = self._market(batch)
        plan = allocation_plan(product, market, batch.quantity)
        await self.prepare_release(batch, product, plan.count)
        await self.ledger.release(batch.id, plan, operator=operator)
        _LOG.info("batch released", batch=batch.id, serials=plan.count, origin=plan.origin.name.lower(),
                  operator=operator)
        await self._audited(operator, "batch.release", batch, {"serials": plan.count,
                                                               "origin": plan.origin.name.lower()})
        if plan.origin in (Origin.UPSTREAM, Origin.EXTERNAL_CODE):
            await self.check_low_water(product)
        return await self.ledger.batch(batch.id)

    async def prepare_release(self, batch: BatchRow, product: Product, count: int) -> None:
        """Bring what an OPEN-SCS batch lacks of count serials into the pool from the L3 server; nothing for others."""
        if batch.serial_source != OPEN_SCS or batch.state is not BatchState.CREATED:
            return
        if self.serial_requests is None:
            # Offline commands (lineside batch, no daemon) have no OPEN-SCS client either.
            raise BatchError(f"{batch.name} draws its serials over OPEN-SCS and no OPEN-SCS client runs here: release "
                             "it through the daemon, with an openscs section naming the L3 pool server in its line "
                             "configuration")
        await self.serial_requests.ensure(batch, product, count)

    async def start(self, ref: int | str, *, operator: str | None = None) -> BatchRow:
        """Start a released batch (refused while another batch holds the line), or resume a paused one."""
        batch = await self.ledger.batch(ref)
        reason = "resumed" if batch.state is BatchState.PAUSED else "started"
        await self.ledger.set_state(batch.id, BatchState.RUNNING, reason=reason, operator=operator)
        await self._audited(operator, "batch.resume" if reason == "resumed" else "batch.start", batch, {})
        return await self.ledger.batch(batch.id)

    async def pause(self, ref: int | str, *, operator: str | None = None) -> BatchRow:
        """Pause a running batch."""
        batch = await self.ledger.batch(ref)
        await self.ledger.set_state(batch.id, BatchState.PAUSED, reason="paused", operator=operator)
        await self._audited(operator, "batch.pause", batch, {})
        return await self.ledger.batch(batch.id)

    async def complete(self, ref: int | str, *, operator: str | None = None) -> dict[str, Any]:
        """Stop the batch drawing serials; return its reconciliation (serials in flight are now in doubt)."""
        batch = await self.ledger.batch(ref)
        in_doubt = await self.ledger.complete(batch.id, operator=operator)
        await self._audited(operator, "batch.complete", batch, {"in_doubt": in_doubt})
        if in_doubt:
            _LOG.warning("serials in doubt at batch completion", batch=batch.id, in_doubt=in_doubt)
            await self._audited(None, "serial.in-doubt", batch, {"count": in_doubt, "why": "in flight at completion"})
        return await self.ledger.reconciliation(batch.id)

    async def decommission_in_doubt(self, ref: int | str, *, reason: str, operator: str | None) -> dict[str, Any]:
        """Decommission the batch's in-doubt serials; return its reconciliation after."""
        batch = await self.ledger.batch(ref)
        count = await self.ledger.decommission_in_doubt(batch.id, operator=operator, reason=reason)
        _LOG.warning("in-doubt serials decommissioned", batch=batch.id, count=count, operator=operator, reason=reason)
        await self._audited(operator, "serial.decommission", batch, {"count": count, "reason": reason})
        return await self.ledger.reconciliation(batch.id)

    async def close(self, ref: int | str, *, operator: str | None = None) -> dict[str, Any]:
        """Reconcile and close the batch; return the frozen report (ReconciliationError when it does not balance)."""
        batch = await self.ledger.batch(ref)
        report = await self.ledger.close(batch.id, operator=operator, return_to_pool=returns_to_pool(batch))
        _LOG.info("batch closed", batch=batch.id, equation=report["equation"], operator=operator)
        await self._audited(operator, "batch.close", batch, {"equation": report["equation"]})
        for listener in self.closed_listeners:
            listener(batch.id)
        return report

    async def cancel(self, ref: int | str, *, reason: str, operator: str | None = None) -> BatchRow:
        """Cancel a batch that never ran; its serials are returned."""
        batch = await self.ledger.batch(ref)
        await self.ledger.cancel(batch.id, reason=reason, operator=operator, return_to_pool=returns_to_pool(batch))
        await self._audited(operator, "batch.cancel", batch, {"reason": reason})
        return await self.ledger.batch(batch.id)

    # -- reading --------------------------------------------------------------------------------

    async def status(self, ref: int | str) -> dict[str, Any]:
        """Return the batch with its counts by state and its reconciliation as it stands."""
        batch = await self.ledger.batch(ref)
        return await self.ledger.reconciliation(batch.id)

    async def summaries(self) -> list[dict[str, Any]]:
        """Return every batch of the line with its counts by state, newest first."""
        return [
            {**batch.as_dict(), "counts": await self.ledger.counts(batch.id)} for batch in await self.ledger.batches()
        ]

    # -- the pool -------------------------------------------------------------------------------

    async def import_serials(
        self,
        data: bytes | str,
        source: str,
        *,
        product: str | None = None,
        gtin: str | None = None,
        kind: Kind = "auto",
        operator: str | None = None,
    ) -> dict[str, Any]:
        """Import serials or complete codes from upstream for a product's GTIN; return what was added."""
        chosen = self._product_for_import(product, gtin)
        market = self.catalog.markets[chosen.market]
        # Checking millions of serials takes seconds of CPU: not on the event loop the line runs on.
        parsed = await asyncio.to_thread(
            partial(parse_serial_import, data, source, market=market, serial_format=chosen.serials, kind=kind,
                    gtin=gtin or chosen.gtin)
        )
        if parsed.gtin != chosen.gtin:
            raise SerialImportError(
                f"{source}: the serials are for GTIN {parsed.gtin}, but product {chosen.id} is {chosen.gtin}"
            )
        if parsed.sequential and market.randomisation.rule == "random":
            raise SerialImportError(
                f"{source}: ranges give sequential serials, and {market.id} requires random ones; send a list"
            )
        count = await self.ledger.import_pool(
            gtin=parsed.gtin,
            serials=parsed.serials,
            codes=[(code.serial, code.code) for code in parsed.codes],
            source=source,
            request_token=parsed.request_token,
            operator=operator,
        )
        available = await self.ledger.pool_available(parsed.gtin)
        _LOG.info("serials imported", gtin=parsed.gtin, count=count, source=source, operator=operator, **available)
        if self.audit is not None:
            await self.audit(operator, "serial.import", f"GTIN {parsed.gtin}",
                             {"count": count, "source": source, "product": chosen.id})
        return {"gtin": parsed.gtin, "product": chosen.id, "imported": count, "available": available}

    async def _audited(self, operator: str | None, action: str, batch: BatchRow, details: dict[str, Any]) -> None:
        """Record a batch action in the audit trail (after it is durable: the trail says what happened)."""
        if self.audit is not None:
            await self.audit(operator, action, f"batch {batch.id} ({batch.work_order})", details)

    async def check_low_water(self, product: Product) -> bool:
        """Call the low-water hook when the product's pool is below its mark; tell whether it was."""
        mark = product.serials.low_water
        if mark is None:
            return False
        available = sum((await self.ledger.pool_available(product.gtin)).values())
        if available >= mark:
            return False
        await self._low_water(gtin=product.gtin, product=product.id, available=available, low_water=mark)
        return True

    def _product_for_import(self, product: str | None, gtin: str | None) -> Product:
        products = self.catalog.products
        if product is not None:
            if product not in products:
                raise SerialImportError(f'unknown product "{product}"; known: {", ".join(sorted(products)) or "none"}')
            return products[product]
        if gtin is not None:
            for candidate in products.values():
                if candidate.gtin == gtin or candidate.gtin == gtin.zfill(14):
                    return candidate
            raise SerialImportError(f"no product of this line has GTIN {gtin}")
        raise SerialImportError("say which product (or GTIN) the serials are for")

    async def _product_of(self, batch: BatchRow) -> Product:
        """Return the product as it was when the batch was created (its snapshot), not as the YAML is now."""

        def read(conn: sqlite3.Connection) -> str:
            return str(conn.execute("SELECT product_json FROM batch WHERE id = ?", (batch.id,)).fetchone()[0])

        snapshot = json.loads(await self.ledger.store.read(read))
        try:
            return Product.model_validate(snapshot)
        except ValueError as err:
            raise BatchError(f"{batch.name}: its product snapshot no longer reads as a product: {err}") from err

    def _market(self, batch: BatchRow) -> MarketPack:
        market = self.catalog.markets.get(batch.market)
        if market is None:
            known = ", ".join(sorted(self.catalog.markets)) or "none"
            raise BatchError(
                f"{batch.name} is for market {batch.market}, which is not in the catalog (known: {known}); "
                "restore its market pack"
            )
        return market

