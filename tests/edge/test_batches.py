"""BatchService against a real store and the shipped catalog: the market decides where serials come from."""

from __future__ import annotations

import asyncio
import shutil
import sys
from datetime import date
from pathlib import Path

import pytest

from edge.config.models import CatalogConfig
from edge.errors import ConfigError, PoolExhaustedError, SerialImportError
from edge.gs1.element import GS, build
from edge.markets.rules import RandomisationError
from edge.products.load import load_catalog
from edge.serials.batches import BatchService, CommandRequest
from edge.serials.ledger import SerialLedger
from edge.serials.states import BatchState, SerialState
from edge.store import Store
from tests.conftest import ROOT

TODAY = date(2026, 11, 25)
RU_GTIN = "04601234567893"


def order(work_order: str, product: str, quantity: int, *, lot: str = "L2611A") -> str:
    return (
        f"work_order: {work_order}\nproduct: {product}\nlot: \"{lot}\"\nexpiry: 2028-10-31\n"
        f"quantity: {quantity}\nline: line-1\n"
    )


@pytest.fixture
def products(tmp_path: Path) -> Path:
    """The shipped products plus a small-space EU product (6 digits: 1,000,000 serials, so at most 99 issued)."""
    directory = tmp_path / "products"
    shutil.copytree(ROOT / "config" / "products", directory)
    text = (ROOT / "config" / "products" / "aspirin-500-eu.yaml").read_text()
    small = text.replace("id: aspirin-500-eu", "id: tiny-eu").replace(
        "charset: upper_alphanumeric", "charset: numeric"
    ).replace("length: 12", "length: 6").replace('gtin: "04012345000016"', 'gtin: "04012345000023"')
    (directory / "tiny-eu.yaml").write_text(small)
    return directory


async def service(tmp_path: Path, products: Path, **kwargs: object):
    catalog = load_catalog(CatalogConfig(products=products, markets=ROOT / "config" / "markets"))
    store = Store.open(tmp_path / "state")
    ledger = SerialLedger(store, line_id="line-1")
    return store, BatchService(ledger, catalog, today=lambda: TODAY, **kwargs)  # type: ignore[arg-type]


def ru_code(serial: str) -> bytes:
    crypto = ("AbCdEfGhIjKlMnOpQrStUvWxYz0123456789+/=ABCDE")[:44]
    return build([("01", RU_GTIN), ("21", serial), ("91", "EE07"), ("92", crypto)]).encode()


async def test_eu_batch_runs_its_whole_life_and_reconciles(tmp_path, products):
    store, batches = await service(tmp_path, products)
    async with store:
        batch = await batches.import_work_order(order("WO-1", "aspirin-500-eu", 100), "wo.yaml", operator="mes")
        assert batch.state is BatchState.CREATED
        batch = await batches.release(batch.id, operator="supervisor")
        counts = await batches.ledger.counts(batch.id)
        assert counts["allocated"] == 102  # 2 % overage
        await batches.start(batch.id, operator="op")
        sent = await batches.ledger.next_to_print(batch.id, 10, device="printer-1")
        ids = [row[0] for row in sent]
        assert all(len(row[1]) == 12 and row[1].isalnum() and row[1].upper() == row[1] for row in sent)
        await batches.ledger.move(ids, SerialState.PRINTED, reason="printed", device="printer-1")
        await batches.ledger.move(ids[:9], SerialState.COMMISSIONED, reason="verified", device="camera-1")
        await batches.ledger.move(ids[9:], SerialState.REJECTED, reason="grade D", device="camera-1")
        await batches.complete(batch.id, operator="op")
        report = await batches.close(batch.id, operator="qa")
        assert report["balanced"]
        assert report["commissioned"] == 9
        assert report["decommissioned"]["rejected"] == 1
        assert report["returned"] == 92
        assert report["equation"] == "allocated 102 = commissioned 9 + decommissioned 1 + returned 92"


async def test_randomisation_rule_counts_every_serial_ever_issued_for_the_gtin(tmp_path, products):
    store, batches = await service(tmp_path, products)
    async with store:
        first = await batches.import_work_order(order("WO-1", "tiny-eu", 60), "wo.yaml")
        await batches.release(first.id)
        second = await batches.import_work_order(order("WO-2", "tiny-eu", 40, lot="L2"), "wo2.yaml")
        with pytest.raises(RandomisationError, match="1 in 10,000"):
            await batches.release(second.id)
        assert (await batches.ledger.batch(second.id)).state is BatchState.CREATED
        assert (await batches.ledger.counts(second.id))["allocated"] == 0


async def test_work_order_problems_name_the_request_body(tmp_path, products):
    store, batches = await service(tmp_path, products)
    async with store:
        with pytest.raises(ConfigError) as caught:
            await batches.import_work_order(order("WO-1", "no-such-product", 10), "<request body>")
        assert str(caught.value).startswith("<request body>:2:10: ")


async def test_sequential_serials_continue_where_the_last_batch_stopped(tmp_path, products):
    store, batches = await service(tmp_path, products)
    async with store:
        first = await batches.import_work_order(order("WO-1", "paracetamol-500-sa", 10), "a.yaml")
        await batches.release(first.id)
        second = await batches.import_work_order(order("WO-2", "paracetamol-500-sa", 10, lot="L2"), "b.yaml")
        await batches.release(second.id)

        def serials(conn):
            return [row[0] for row in conn.execute("SELECT serial FROM serial ORDER BY id")]

        got = await store.read(serials)
        assert got == [f"{n:012d}" for n in range(22)]  # 10 + 3 % overage, rounded up, twice


async def test_russian_batch_draws_complete_codes_and_returns_unused_ones_to_the_pool(tmp_path, products, monkeypatch):
    calls = tmp_path / "calls.txt"
    monkeypatch.setenv("CALLS", str(calls))
    hook = CommandRequest([sys.executable, "-c", (
        "import os; open(os.environ['CALLS'], 'a').write("
        "os.environ['LINESIDE_GTIN'] + ' ' + os.environ['LINESIDE_AVAILABLE'] + '\\n')"
    )])
    store, batches = await service(tmp_path, products, low_water=hook)
    codes = [ru_code(f"5Mq7Ycv1Xn{n:03d}") for n in range(30)]
    body = b"\n".join(codes) + b"\n"
    async with store:
        batch = await batches.import_work_order(order("WO-RU", "amoxicillin-250-ru", 20), "ru.yaml")
        with pytest.raises(PoolExhaustedError, match="import 21 more"):
            await batches.release(batch.id)
        added = await batches.import_serials(body, "codes.txt", product="amoxicillin-250-ru")
        assert added["imported"] == 30
        with pytest.raises(SerialImportError, match="already known"):
            await batches.import_serials(body, "codes.txt", product="amoxicillin-250-ru")
        await batches.release(batch.id)
        assert calls.read_text() == f"{RU_GTIN} 9\n"  # 30 imported, 21 drawn, below the low-water mark
        await batches.start(batch.id)
        sent = await batches.ledger.next_to_print(batch.id, 5, device="printer-1")
        assert [row[2] for row in sent] == codes[:5]  # byte-exact, GS included
        assert all(GS.encode() in row[2] for row in sent if row[2] is not None)
        ids = [row[0] for row in sent]
        await batches.ledger.move(ids, SerialState.PRINTED, reason="printed")
        await batches.ledger.move(ids, SerialState.COMMISSIONED, reason="verified")
        await batches.complete(batch.id)
        report = await batches.close(batch.id)
        assert report["returned_to_pool"] == 16
        assert await batches.ledger.pool_available(RU_GTIN) == {"serials": 0, "codes": 25}


async def test_ranges_are_refused_for_a_market_requiring_random_serials(tmp_path, products):
    store, batches = await service(tmp_path, products)
    async with store:
        body = 'gtin: "04012345000016"\nranges:\n  - {first: "000000000001", last: "000000000100"}\n'
        with pytest.raises(SerialImportError, match="eu-fmd requires random ones"):
            await batches.import_serials(body, "ranges.yaml", product="aspirin-500-eu")


async def test_a_failing_request_command_is_logged_not_raised(tmp_path, products):
    hook = CommandRequest([sys.executable, "-c", "import sys; sys.exit(3)"])
    await hook(gtin=RU_GTIN, product="amoxicillin-250-ru", available=1, low_water=10)
    missing = CommandRequest([str(tmp_path / "no-such-command")])
    await missing(gtin=RU_GTIN, product="amoxicillin-250-ru", available=1, low_water=10)
    slow = CommandRequest([sys.executable, "-c", "import time; time.sleep(30)"], timeout_s=0.05)
    await asyncio.wait_for(slow(gtin=RU_GTIN, product="x", available=1, low_water=10), 10)


async def test_a_printer_asks_for_at_least_one_serial(tmp_path, products):
    store, batches = await service(tmp_path, products)
    async with store:
        batch = await batches.import_work_order(order("WO-1", "aspirin-500-eu", 10), "wo.yaml")
        await batches.release(batch.id)
        await batches.start(batch.id)
        for count in (0, -1):
            with pytest.raises(ValueError, match="count must be at least 1"):
                await batches.ledger.next_to_print(batch.id, count, device="printer-1")
        assert (await batches.ledger.counts(batch.id))["sent"] == 0
