"""OPEN-SCS (OPC 30260): the line's client and service against the simulated L3 pool server, over loopback.

Each test starts the simulated pool server (asyncua, Basic256Sha256 SignAndEncrypt, user and password) and runs the
line's batch service, serial ledger and OPEN-SCS service on a real store. Reports are sent by calling flush(), not
by waiting for the background task (but in the test of the background task itself). Lost answers are connections
the simulator drops after applying a call; one test lets the client's call timeout expire on an answer held back.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from collections import Counter
from datetime import date
from typing import TYPE_CHECKING, Any

import pytest
from asyncua.crypto.cert_gen import (
    dump_private_key_as_pem,
    generate_private_key,
    generate_self_signed_app_certificate,
)
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

from edge.api.errors import error_body, http_status
from edge.config import load_config
from edge.config.models import CatalogConfig, OpenScsConfig
from edge.daemon import Daemon
from edge.errors import BatchError, PoolExhaustedError, SerialImportError
from edge.opcua.certs import OpcUaPaths, make_certificate
from edge.openscs import ops
from edge.openscs.client import Endpoint, OpenScsClient
from edge.openscs.errors import (
    OpenScsAnswerError,
    OpenScsRefusedError,
    OpenScsSetupError,
    OpenScsUnavailableError,
)
from edge.openscs.service import POLL_S, REQUEST_ATTEMPTS, OpenScsService, endpoint_of
from edge.openscs.types import ReturnStatus, SerialNumberState
from edge.products.load import load_catalog
from edge.serials.batches import BatchService
from edge.serials.ledger import SerialLedger
from edge.serials.states import OPEN_SCS_STATE, BatchState, SerialState
from edge.store import Store
from simulators.openscs_pool import (
    BadAnswer,
    Insufficient,
    InvalidFormat,
    LoseAnswer,
    OpenScsPool,
    PoolSpec,
    Refuse,
    SlowAnswer,
)
from tests.conftest import ROOT

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

    from edge.products.models import Product
    from edge.serials.ops import BatchRow

TODAY = date(2026, 11, 25)
GTIN = "04012345000016"
PRODUCT = "aspirin-500-eu"
LINE = "line-1"
USER, PASSWORD = "line-1", "l3-secret-1"
SHORT_CALL_S = 2.0
"""The client's call timeout in the one test where the simulator holds an answer back (for HELD_S): that call always
times out; the others on loopback take milliseconds. Elsewhere answers are lost by dropping the connection."""
HELD_S = 30.0
S = SerialState
N = SerialNumberState


def certificate(uri: str = f"urn:lineside:{LINE}") -> tuple[bytes, bytes]:
    """Make a line's application certificate (DER) and key (PEM)."""
    key = generate_private_key()
    cert = generate_self_signed_app_certificate(key, "line", {}, [x509.UniformResourceIdentifier(uri)],
                                                [ExtendedKeyUsageOID.CLIENT_AUTH], days=30)
    return cert.public_bytes(serialization.Encoding.DER), dump_private_key_as_pem(key)


CERT, KEY = certificate()


def order(work_order: str, quantity: int, *, lot: str = "L2611A") -> str:
    return (f"work_order: {work_order}\nproduct: {PRODUCT}\nlot: \"{lot}\"\nexpiry: 2028-10-31\n"
            f"quantity: {quantity}\nline: {LINE}\n")


@pytest.fixture
def products(tmp_path: Path) -> Path:
    """The shipped products, the EU aspirin drawing its serials over OPEN-SCS (the product's own choice)."""
    directory = tmp_path / "products"
    shutil.copytree(ROOT / "config" / "products", directory)
    path = directory / f"{PRODUCT}.yaml"
    text = path.read_text()
    marker = "  overage_percent: 2"
    assert marker in text
    path.write_text(text.replace(marker, "  source: open_scs\n" + marker))
    return directory


@pytest.fixture
async def l3() -> AsyncIterator[OpenScsPool]:
    """The simulated L3 pool server with a pool for the aspirin's GTIN (its serial format: 12 of 0-9A-Z)."""
    async with OpenScsPool([PoolSpec(GTIN, length=12)], users={USER: PASSWORD}, seed=7, clock=False) as pool:
        yield pool


class Line:
    """The line's store, batches and OPEN-SCS service, with helpers to run a batch."""

    def __init__(self, store: Store, batches: BatchService, service: OpenScsService, l3: OpenScsPool) -> None:
        self.store = store
        self.batches = batches
        self.service = service
        self.l3 = l3

    @property
    def ledger(self) -> SerialLedger:
        return self.batches.ledger

    async def ids(self, batch: BatchRow, state: SerialState, count: int) -> list[int]:
        def read(conn: Any) -> list[int]:
            return [row[0] for row in conn.execute(
                "SELECT id FROM serial WHERE batch_id = ? AND state = ? ORDER BY id LIMIT ?",
                (batch.id, int(state), count))]

        return await self.store.read(read)

    async def pool(self) -> int:
        return (await self.ledger.pool_available(GTIN))["serials"]

    async def requests(self) -> list[tuple[str, int, int, str]]:
        def read(conn: Any) -> list[tuple[str, int, int, str]]:
            return [tuple(row) for row in conn.execute(
                "SELECT state, count, received, status FROM openscs_request ORDER BY id")]

        return await self.store.read(read)

    async def consistent(self, batch: BatchRow) -> dict[str, int]:
        """Assert every serial of the batch is in the same state on both sides; return the L3's counts."""
        line = await self.service.line_view(batch.id)
        held = self.l3.states(GTIN)
        assert line == {serial: held.get(serial) for serial in line}
        assert set(held) == set(line)  # the L3 handed out nothing the line does not account for
        assert self.l3.problems == []
        assert await self.service.backlog() == {"reports": 0, "requests": 0}
        return dict(Counter(state.title for state in held.values()))


@contextlib.asynccontextmanager
async def line(tmp_path: Path, products: Path, l3: OpenScsPool, *, call_timeout_s: float = 10.0,
               poll_s: float = POLL_S, **settings: Any) -> AsyncIterator[Line]:
    """The line with an openscs section pointing at l3 (settings override it); its store stays in tmp_path."""
    catalog = load_catalog(CatalogConfig(products=products, markets=ROOT / "config" / "markets"))
    credentials = tmp_path / "credentials"
    credentials.write_text(f"{USER}\n{PASSWORD}\n")
    config = OpenScsConfig(url=l3.url, credentials_file=credentials, retry_initial_s=0.01, retry_max_s=0.05,
                           **settings)
    store = Store.open(tmp_path / "state")
    batches = BatchService(SerialLedger(store, line_id=LINE), catalog, today=lambda: TODAY)
    client = OpenScsClient(Endpoint(l3.url, CERT, KEY, USER, PASSWORD), call_timeout_s=call_timeout_s)
    service = OpenScsService(config, store=store, batches=batches, client=client, line_id=LINE, poll_s=poll_s,
                             sleep=lambda _s: asyncio.sleep(0))
    batches.serial_requests = service
    try:
        async with store:
            yield Line(store, batches, service, l3)
    finally:
        await client.aclose()


async def test_request_print_commission_reject_report_return_keeps_every_serial_consistent(tmp_path, products, l3):
    async with line(tmp_path, products, l3, request_size=20) as it:
        batch = await it.batches.import_work_order(order("WO-1", 50), "wo.yaml", operator="mes")
        assert batch.serial_source == "open_scs"
        batch = await it.batches.release(batch.id, operator="sup")
        assert (await it.ledger.counts(batch.id))["allocated"] == 51  # 2 % overage
        assert l3.calls["SNRequestAllocated"] == 3  # 20 + 20 + 11
        assert [r[:3] for r in await it.requests()] == [("imported", 20, 20), ("imported", 20, 20),
                                                       ("imported", 11, 11)]
        assert await it.pool() == 0
        assert Counter(l3.states(GTIN).values()) == {N.ALLOCATED: 51}

        await it.batches.start(batch.id, operator="op")
        sent = [row[0] for row in await it.ledger.next_to_print(batch.id, 30, device="printer-1")]
        await it.service.flush()
        assert Counter(l3.states(GTIN).values()) == {N.ENCODED: 30, N.ALLOCATED: 21}
        await it.ledger.move(sent, S.PRINTED, reason="printed", device="printer-1")
        await it.ledger.move(sent[:25], S.COMMISSIONED, reason="verified", device="camera-1")
        await it.ledger.move(sent[25:28], S.REJECTED, reason="grade D", device="camera-1")
        await it.ledger.move(sent[28:29], S.SAMPLED, reason="QA sample before the camera", operator="qa")
        await it.ledger.move(sent[:1], S.SAMPLED, reason="QA sample", operator="qa")
        await it.ledger.move(sent[1:2], S.DESTROYED, reason="crushed", operator="qa")
        await it.batches.complete(batch.id, operator="op")  # the last printed one is in doubt now
        await it.batches.decommission_in_doubt(batch.id, reason="set aside", operator="qa")
        await it.batches.close(batch.id, operator="qa")
        assert (await it.ledger.counts(batch.id))["returned"] == 21
        assert await it.pool() == 0  # unused OPEN-SCS serials go back to the L3, not to the line's pool

        await it.service.flush()
        counts = await it.consistent(batch)
        assert counts == {"Commissioned": 23, "LabelScrapped": 4, "Sampled": 1, "LabelSampled": 1, "Destroyed": 1,
                          "Unallocated": 21}
        assert l3.calls["SNReturnAllocated"] == 1
        assert l3.repeated_reports == 0


def test_every_line_state_stands_for_the_open_scs_state_the_line_names():
    for state in SerialState:
        if state in (S.AVAILABLE, S.SAMPLED):
            continue
        expected = ops.expected_state(state, kind="allocated", commissioned=False)
        assert expected.title == OPEN_SCS_STATE[state], state
    assert ops.expected_state(S.SAMPLED, kind="allocated", commissioned=True).title == OPEN_SCS_STATE[S.SAMPLED]
    assert ops.expected_state(S.SAMPLED, kind="allocated", commissioned=False) is N.LABEL_SAMPLED
    assert ops.expected_state(S.AVAILABLE, kind="unallocated", commissioned=False).title == OPEN_SCS_STATE[
        S.AVAILABLE]


async def test_l3_down_during_a_request_then_a_lost_answer_nothing_is_lost_or_imported_twice(tmp_path, products,
                                                                                              l3):
    async with line(tmp_path, products, l3, call_timeout_s=SHORT_CALL_S) as it:
        batch = await it.batches.import_work_order(order("WO-1", 50), "wo.yaml")
        await l3.down()
        with pytest.raises(OpenScsUnavailableError, match="stays pending"):
            await it.batches.release(batch.id)
        assert (await it.ledger.batch(batch.id)).state is BatchState.CREATED
        assert [r[:3] for r in await it.requests()] == [("pending", 51, 0)]
        assert l3.states(GTIN) == {}
        await l3.up()
        # The answer to the pending request is held back past the client's timeout: the L3 has handed the serials
        # out, the line has not seen them. The retry sends the same token and gets the same serials.
        l3.fault(SlowAnswer(HELD_S, method="SNRequestAllocated"))
        batch = await it.batches.release(batch.id)
        assert batch.state is BatchState.RELEASED
        assert l3.repeated_requests == 1
        assert [r[:3] for r in await it.requests()] == [("imported", 51, 51)]
        assert (await it.ledger.counts(batch.id))["allocated"] == 51
        assert set(l3.states(GTIN)) == set(await it.service.line_view(batch.id))
        await it.service.flush()
        assert Counter(l3.states(GTIN).values()) == {N.ALLOCATED: 51}


async def test_l3_down_during_reports_they_wait_and_a_resent_report_counts_once(tmp_path, products, l3):
    async with line(tmp_path, products, l3) as it:
        batch = await it.batches.import_work_order(order("WO-1", 20), "wo.yaml")
        batch = await it.batches.release(batch.id)
        await it.batches.start(batch.id)
        sent = [row[0] for row in await it.ledger.next_to_print(batch.id, 10, device="printer-1")]
        await l3.down()
        await it.ledger.move(sent, S.PRINTED, reason="printed", device="printer-1")
        await it.ledger.move(sent[:8], S.COMMISSIONED, reason="verified", device="camera-1")
        await it.ledger.move(sent[8:], S.REJECTED, reason="no read", device="camera-1")
        with pytest.raises(OpenScsUnavailableError):
            await it.service.flush()
        backlog = await it.service.backlog()
        assert backlog["reports"] == 3  # encoded, commissioned, scrapped: in order, none lost
        assert Counter(l3.states(GTIN).values()) == {N.ALLOCATED: 21}
        await l3.up()
        # The L3 applies the first report but its answer is lost: the line sends it again with the same id.
        l3.fault(LoseAnswer(method="SNtoEncoded"))
        with pytest.raises(OpenScsUnavailableError):
            await it.service.flush()
        assert Counter(l3.states(GTIN).values()) == {N.ENCODED: 10, N.ALLOCATED: 11}
        await it.service.flush()
        assert l3.repeated_reports == 1
        assert l3.calls["SNtoEncoded"] == 2
        assert l3.calls["SIDCommissioningEvent"] == 1
        await it.batches.complete(batch.id)
        await it.batches.close(batch.id)
        await it.service.flush()
        assert await it.consistent(batch) == {"Commissioned": 8, "LabelScrapped": 2, "Unallocated": 11}


async def test_a_refused_report_holds_the_queue_until_the_l3_takes_it(tmp_path, products, l3):
    async with line(tmp_path, products, l3) as it:
        batch = await it.batches.import_work_order(order("WO-1", 10), "wo.yaml")
        batch = await it.batches.release(batch.id)
        await it.batches.start(batch.id)
        sent = [row[0] for row in await it.ledger.next_to_print(batch.id, 4, device="printer-1")]
        await it.ledger.move(sent, S.PRINTED, reason="printed", device="printer-1")
        await it.ledger.move(sent, S.COMMISSIONED, reason="verified", device="camera-1")
        l3.fault(Refuse(ReturnStatus.UNABLE_TO_ACCEPT_SID_EVENTS, method="SIDCommissioningEvent"))
        with pytest.raises(OpenScsRefusedError, match="UnableToAcceptSIDEvents"):
            await it.service.flush()
        assert Counter(l3.states(GTIN).values()) == {N.ENCODED: 4, N.ALLOCATED: 7}
        await it.service.flush()
        assert Counter(l3.states(GTIN).values()) == {N.COMMISSIONED: 4, N.ALLOCATED: 7}


async def test_insufficient_serials_leave_what_came_in_the_pool_and_the_batch_unreleased(tmp_path, products, l3):
    async with line(tmp_path, products, l3) as it:
        batch = await it.batches.import_work_order(order("WO-1", 50), "wo.yaml")
        l3.fault(Insufficient(10))
        with pytest.raises(PoolExhaustedError, match="lacks 41 serials"):
            await it.batches.release(batch.id)
        assert (await it.ledger.batch(batch.id)).state is BatchState.CREATED
        assert await it.pool() == 10
        assert await it.requests() == [("imported", 51, 10, "InsufficientSerialNumbers")]
        l3.clear_faults()
        batch = await it.batches.release(batch.id)
        assert (await it.ledger.counts(batch.id))["allocated"] == 51
        assert [r[1:3] for r in await it.requests()] == [(51, 10), (41, 41)]

        second = await it.batches.import_work_order(order("WO-2", 10, lot="L2"), "wo2.yaml")
        l3.fault(InvalidFormat())
        with pytest.raises(OpenScsRefusedError, match="InvalidSerialNumbersFormat"):
            await it.batches.release(second.id)
        assert (await it.requests())[-1] == ("failed", 11, 0, "InvalidSerialNumbersFormat")


async def test_requests_are_paged_and_low_water_keeps_the_pool_topped_up(tmp_path, products, l3):
    l3.max_requestable = 30
    async with line(tmp_path, products, l3, request_size=100, low_water=40) as it:
        batch = await it.batches.import_work_order(order("WO-1", 50), "wo.yaml")
        await it.batches.release(batch.id)
        # 51 asked for in one call: the L3 gives 30 and a token for the rest, which the line then asks for.
        assert [r[1:3] for r in await it.requests()] == [(51, 30), (21, 21)]
        assert await it.service.refill() == 100  # asked for in one call, given in pages of 30, 30, 30 and 10
        assert await it.pool() == 100
        assert await it.service.refill() == 0  # above the mark now
        second = await it.batches.import_work_order(order("WO-2", 30, lot="L2"), "wo2.yaml")
        calls = l3.calls["SNRequestAllocated"]
        await it.batches.release(second.id)
        assert l3.calls["SNRequestAllocated"] == calls  # drawn from what the refill brought
        assert await it.pool() == 100 - 31
        await it.service.flush()
        held = Counter(l3.states(GTIN).values())
        assert held == {N.ALLOCATED: 151}  # the pool's serials too: requested allocated, not yet used


async def test_unallocated_requests_are_reported_allocated_when_a_batch_draws_them(tmp_path, products, l3):
    async with line(tmp_path, products, l3, request="unallocated") as it:
        batch = await it.batches.import_work_order(order("WO-1", 10), "wo.yaml")
        batch = await it.batches.release(batch.id)
        assert Counter(l3.states(GTIN).values()) == {N.UNALLOCATED: 11}
        await it.batches.start(batch.id)
        sent = [row[0] for row in await it.ledger.next_to_print(batch.id, 3, device="printer-1")]
        await it.ledger.move(sent, S.PRINTED, reason="printed", device="printer-1")
        await it.ledger.move(sent, S.COMMISSIONED, reason="verified", device="camera-1")
        await it.service.flush()
        assert Counter(l3.states(GTIN).values()) == {N.COMMISSIONED: 3, N.ALLOCATED: 8}
        await it.batches.complete(batch.id)
        await it.batches.close(batch.id)
        await it.service.flush()
        assert await it.consistent(batch) == {"Commissioned": 3, "Unallocated": 8}
        assert [l3.calls[m] for m in ("SNRequestUnallocated", "SNtoAllocated", "SNtoEncoded", "SNReturnAllocated")
                ] == [1, 1, 1, 1]


async def test_refused_logins_untrusted_certificates_and_a_missing_pool_manager_are_setup_errors(l3):
    criteria = {"GTIN": GTIN}

    async def ask(endpoint: Endpoint) -> None:
        client = OpenScsClient(endpoint)
        try:
            await client.request("allocated", collection_id="", count=1, sn_format="SN", criteria=criteria,
                                 token="t-1")
        finally:
            await client.aclose()

    with pytest.raises(OpenScsSetupError, match="BadIdentityTokenRejected"):
        await ask(Endpoint(l3.url, CERT, KEY, None, None))
    with pytest.raises(OpenScsSetupError, match="BadUserAccessDenied"):
        await ask(Endpoint(l3.url, CERT, KEY, USER, "wrong-password"))
    l3.trusted_clients = {certificate()[0]}
    with pytest.raises((OpenScsSetupError, OpenScsUnavailableError)):
        await ask(Endpoint(l3.url, CERT, KEY, USER, PASSWORD))
    l3.trusted_clients = {CERT}
    await ask(Endpoint(l3.url, CERT, KEY, USER, PASSWORD))
    assert len(l3.states(GTIN)) == 1
    # A pool manager configured by a browse name the server does not have is named in the error, with what it has.
    with pytest.raises(OpenScsSetupError, match=r"object SerialPool under OPENSCSObjects has no method "
                                                r"SNRequestAllocated \(objects: EventManager, PoolManager\)"):
        await ask(Endpoint(l3.url, CERT, KEY, USER, PASSWORD, pool_object="SerialPool"))


async def test_a_release_without_an_openscs_section_says_so(tmp_path, products):
    catalog = load_catalog(CatalogConfig(products=products, markets=ROOT / "config" / "markets"))
    store = Store.open(tmp_path / "state")
    batches = BatchService(SerialLedger(store, line_id=LINE), catalog, today=lambda: TODAY)
    async with store:
        batch = await batches.import_work_order(order("WO-1", 5), "wo.yaml")
        with pytest.raises(BatchError, match="no OPEN-SCS client runs here: release it through the daemon"):
            await batches.release(batch.id)


def product_of(products: Path) -> Product:
    catalog = load_catalog(CatalogConfig(products=products, markets=ROOT / "config" / "markets"))
    return catalog.products[PRODUCT]


def test_the_product_chooses_open_scs_over_its_market(products):
    product = product_of(products)
    assert product.serials.source == "open_scs"
    assert product.market == "eu-fmd"


async def report_rows(it: Line) -> list[tuple[str, int, bool]]:
    """Return each report as (method, serials, sent), in order."""
    def read(conn: Any) -> list[tuple[str, int, bool]]:
        return [(method, count, bool(sent)) for method, count, sent in conn.execute(
            "SELECT method, json_array_length(serials), sent_at IS NOT NULL FROM openscs_report ORDER BY id")]

    return await it.store.read(read)


async def test_an_outage_mid_batch_and_a_line_restart_deliver_every_report_once(tmp_path, products, l3):
    async with line(tmp_path, products, l3) as it:
        batch = await it.batches.import_work_order(order("WO-1", 40), "wo.yaml")
        batch = await it.batches.release(batch.id)
        await it.batches.start(batch.id)
        sent = [row[0] for row in await it.ledger.next_to_print(batch.id, 20, device="printer-1")]
        await it.service.flush()
        # The next batch's request is applied by the L3, but every answer to it is lost: it stays pending.
        second = await it.batches.import_work_order(order("WO-2", 10, lot="L2"), "wo2.yaml")
        l3.fault(LoseAnswer(method="SNRequestAllocated", count=REQUEST_ATTEMPTS))
        with pytest.raises(OpenScsUnavailableError, match="stays pending"):
            await it.batches.release(second.id)
        # The L3 goes down mid-batch; the line goes on printing and judging.
        await l3.down()
        await it.ledger.move(sent, S.PRINTED, reason="printed", device="printer-1")
        await it.ledger.move(sent[:15], S.COMMISSIONED, reason="verified", device="camera-1")
        await it.ledger.move(sent[15:18], S.REJECTED, reason="grade D", device="camera-1")
        more = [row[0] for row in await it.ledger.next_to_print(batch.id, 10, device="printer-1")]
        with pytest.raises(OpenScsUnavailableError):
            await it.service.flush()
        assert await report_rows(it) == [("SNtoEncoded", 20, True), ("SNtoEncoded", 10, False),
                                         ("SIDCommissioningEvent", 15, False), ("LabelsScrappingEvent", 3, False)]
        assert await it.service.backlog() == {"reports": 3, "requests": 1}

    # The line restarts on the same store, with a new client: nothing is queued again, nothing forgotten.
    async with line(tmp_path, products, l3) as it:
        assert await it.service.backlog() == {"reports": 3, "requests": 1}
        assert await it.service.collect() == 0
        await l3.up()
        # The commissioning is applied, its answer lost: sent again with its report id, applied once.
        l3.fault(LoseAnswer(method="SIDCommissioningEvent"))
        with pytest.raises(OpenScsUnavailableError):
            await it.service.flush()
        await it.service.flush()
        assert [r[2] for r in await report_rows(it)] == [True] * 4
        assert (l3.calls["SNtoEncoded"], l3.calls["SIDCommissioningEvent"], l3.calls["LabelsScrappingEvent"]) == (
            2, 2, 1)
        assert l3.repeated_reports == 1
        assert len(l3.applied_reports) == 4
        # The pending request goes out again with its token: the L3 answers the serials it handed out then.
        second = await it.batches.release("WO-2")
        assert l3.repeated_requests == REQUEST_ATTEMPTS  # its retries before the restart, and this one
        assert [r[:3] for r in await it.requests()][-1] == ("imported", 11, 11)
        assert await it.pool() == 0

        await it.ledger.move(more, S.PRINTED, reason="printed", device="printer-1")
        await it.ledger.move(more, S.COMMISSIONED, reason="verified", device="camera-1")
        await it.batches.complete(batch.id)
        await it.batches.decommission_in_doubt(batch.id, reason="set aside", operator="qa")
        await it.batches.close(batch.id)
        await it.service.flush()
        line_states = await it.service.line_view(batch.id)
        assert Counter(line_states.values()) == {N.COMMISSIONED: 25, N.LABEL_SCRAPPED: 5, N.UNALLOCATED: 11}
        assert all(l3.state(GTIN, serial) is state for serial, state in line_states.items())
        assert Counter(l3.states(GTIN)[s] for s in await it.service.line_view(second.id)) == {N.ALLOCATED: 11}
        assert l3.problems == []
        assert await it.service.backlog() == {"reports": 0, "requests": 0}


async def test_bad_answers_to_a_request_give_clear_errors_and_nothing_of_them_enters_the_pool(tmp_path, products,
                                                                                            l3):
    async with line(tmp_path, products, l3) as it:
        batch = await it.batches.import_work_order(order("WO-1", 10), "wo.yaml")
        l3.fault(BadAnswer("missing_outputs"))
        with pytest.raises(OpenScsAnswerError, match="with 1 output"):
            await it.batches.release(batch.id)
        assert [r[:3] for r in await it.requests()] == [("pending", 11, 0)]
        l3.fault(BadAnswer("too_many"))
        with pytest.raises(OpenScsAnswerError, match="for 11 serials with 12 serials"):
            await it.batches.release(batch.id)
        assert await it.pool() == 0
        # Sent again with its token, the request is answered the same serials, this time not GS1 serials at all.
        l3.fault(BadAnswer("foreign_serials"))
        with pytest.raises(SerialImportError, match="not a serial 0"):
            await it.batches.release(batch.id)
        assert await it.requests() == [
            ("failed", 11, 0, "import refused: " + (await it.requests())[0][3].removeprefix("import refused: "))]
        assert await it.pool() == 0
        assert (await it.ledger.batch(batch.id)).state is BatchState.CREATED
        assert l3.repeated_requests == 2  # the same token each time: the L3 handed out 11 serials, no more
        batch = await it.batches.release(batch.id)  # a new request, answered properly
        assert (await it.ledger.counts(batch.id))["allocated"] == 11


async def until(condition: Any) -> None:
    """Return once condition() (awaited) is true; the test's timeout bounds the wait."""
    while not await condition():  # noqa: ASYNC110 - the simulator and the store signal nothing on a change
        await asyncio.sleep(0.01)


async def test_the_background_task_rides_out_an_outage_and_delivers_once_the_l3_is_back(tmp_path, products, l3):
    async with line(tmp_path, products, l3, poll_s=0.02) as it:
        batch = await it.batches.import_work_order(order("WO-1", 10), "wo.yaml")
        batch = await it.batches.release(batch.id)
        await it.batches.start(batch.id)
        sent = [row[0] for row in await it.ledger.next_to_print(batch.id, 6, device="printer-1")]

        async def held(expected: dict[SerialNumberState, int]) -> bool:
            return Counter(l3.states(GTIN).values()) == expected

        async def failing() -> bool:
            return it.service.last_error is not None

        async def recovered() -> bool:
            return it.service.last_error is None

        async with asyncio.TaskGroup() as tasks:
            task = tasks.create_task(it.service.run(), name="openscs")
            await until(lambda: held({N.ENCODED: 6, N.ALLOCATED: 5}))
            await l3.down()
            await it.ledger.move(sent, S.PRINTED, reason="printed", device="printer-1")
            await it.ledger.move(sent, S.COMMISSIONED, reason="verified", device="camera-1")
            it.service.wake()
            await until(failing)
            # The session breaks under the call, or no session opens: either way the report waits.
            assert any(why in str(it.service.last_error) for why in ("SIDCommissioningEvent", "cannot reach"))
            assert await it.service.backlog() == {"reports": 1, "requests": 0}
            await l3.up()
            await until(lambda: held({N.COMMISSIONED: 6, N.ALLOCATED: 5}))
            await until(recovered)
            assert await it.service.backlog() == {"reports": 0, "requests": 0}
            task.cancel()
        assert task.cancelled()
        assert not it.service.client.connected  # run() closes its session when cancelled
        assert l3.repeated_reports == 0


def test_the_openscs_section_and_its_files_are_checked_before_the_daemon_starts(tmp_path):
    credentials = tmp_path / "credentials"
    section = {"url": "opc.tcp://l3.example.com:4840/openscs", "credentials_file": credentials}
    with pytest.raises(ValueError, match="certificate and private_key go together"):
        OpenScsConfig(**section, certificate=tmp_path / "line.der")
    with pytest.raises(ValueError, match="retry_max_s must not be below retry_initial_s"):
        OpenScsConfig(**section, retry_initial_s=5.0, retry_max_s=1.0)
    with pytest.raises(ValueError, match="url"):
        OpenScsConfig(**{**section, "url": "https://l3.example.com/openscs"})
    config = load_config(ROOT / "config" / "demo.yaml")
    config = config.model_copy(update={
        "storage": config.storage.model_copy(update={"state_dir": tmp_path / "state"}),
        "openscs": OpenScsConfig(**section),
    })
    with pytest.raises(OpenScsSetupError, match=r"openscs\.credentials_file: cannot read"):
        Daemon(config)  # before anything starts
    credentials.write_text("line-1\n")
    with pytest.raises(OpenScsSetupError, match="user name on its first line and the password on its second"):
        Daemon(config)
    credentials.write_text("line-1\nl3-secret-1\n")
    with pytest.raises(OpenScsSetupError, match="lineside opcua cert -c FILE"):
        Daemon(config)
    assert not (tmp_path / "state").exists()
    make_certificate(OpcUaPaths.in_state_dir(tmp_path / "state"), "line-1", ["127.0.0.1"])
    endpoint = endpoint_of(config)
    assert (endpoint.username, endpoint.password) == ("line-1", "l3-secret-1")
    assert OpenScsClient(endpoint).application_uri == "urn:lineside:line-1"


def test_open_scs_failures_reach_api_clients_as_bad_gateway_with_their_message():
    err = OpenScsRefusedError("SNRequestAllocated", ReturnStatus.INVALID_SELECTION_CRITERIA)
    assert http_status(err) == 502
    assert error_body(err)["error"] == "the L3 pool server answered SNRequestAllocated with InvalidSelectionCriteria"
    assert http_status(OpenScsUnavailableError("cannot reach opc.tcp://l3:4840/")) == 502
    assert http_status(PoolExhaustedError("WO-1 lacks 41 serials")) == 409
