"""Plant delivery against the simulated MES/ERP over loopback HTTP and into a folder: outages, restarts, refusals."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from edge.config.models import PlantTarget
from edge.plant import outbox
from edge.plant.delivery import FAILED_RECHECK_S, PlantDelivery, make_sender
from edge.store import Store
from simulators.epcis_upstream import DropConnection, ErrorStatus, RejectDocument, Unavailable
from simulators.plant_endpoint import PlantEndpoint
from tests.edge.plant_line import Ticker, close_batch, pack_batch

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

IDLE_S = 1000.0
"""The tests' poll interval: never reached, a close or an operator wakes the queue."""
TOKEN = "s3cret-token"


class Sleeps:
    """An injected sleep: retry pauses pass at once (recorded); idle waits last until the queue is woken."""

    def __init__(self, *, hold_retries: bool = False) -> None:
        self.retries: list[float] = []
        self.hold_retries = hold_retries
        self.holding = asyncio.Event()

    async def __call__(self, seconds: float) -> None:
        if seconds >= FAILED_RECHECK_S:
            await asyncio.Event().wait()
        self.retries.append(seconds)
        if self.hold_retries:
            self.holding.set()
            await asyncio.Event().wait()
        await asyncio.sleep(0)


def http_target(url: str, tmp_path: Path, **changes: object) -> PlantTarget:
    (tmp_path / "token").write_text(TOKEN + "\n")
    fields = {"id": "mes", "kind": "http", "url": url, "auth": {"bearer_token_file": str(tmp_path / "token")},
              "formats": ["json", "csv", "html"], "retry_initial_s": 1.0, "retry_max_s": 10.0}
    return PlantTarget.model_validate(fields | changes)


@asynccontextmanager
async def running(store: Store, target: PlantTarget, sleeps: Sleeps) -> AsyncIterator[PlantDelivery]:
    """Run one target's delivery for the block; cancel it and wait for it after."""
    delivery = PlantDelivery(store, target, sender=make_sender(target), sleep=sleeps, poll_s=IDLE_S,
                             clock=Ticker())
    task = asyncio.create_task(delivery.run())
    try:
        await settle(delivery)
        yield delivery
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def settle(delivery: PlantDelivery) -> None:
    """Wake the queue and wait until it has nothing more it can send."""
    delivery.idle.clear()
    delivery.wake()
    await delivery.idle.wait()


async def stored_bodies(store: Store) -> list[tuple[str, str, str]]:
    return await store.read(lambda conn: [
        (str(kind), str(body), str(sha)) for kind, body, sha in
        conn.execute("SELECT kind, body, sha256 FROM plant_outbox ORDER BY id")])


async def test_every_message_survives_an_outage_and_arrives_exactly_once(tmp_path):
    clock = Ticker()
    store = Store.open(tmp_path / "state", clock=clock)
    sleeps = Sleeps()
    async with store, PlantEndpoint(token=TOKEN) as endpoint:
        target = http_target(endpoint.url, tmp_path)
        async with running(store, target, sleeps) as delivery:
            # The endpoint is down, then fails in every way a network can, answers lost after storing included.
            endpoint.faults.add(Unavailable(retry_after_s=2), count=2)
            endpoint.faults.add(ErrorStatus(500))
            endpoint.faults.add(DropConnection())
            endpoint.lose_answers = 2
            packed = await pack_batch(store, clock)
            await settle(delivery)  # the work order's acknowledgement and the pallet manifest, through the outage
            endpoint.faults.add(ErrorStatus(502), count=3)
            endpoint.lose_answers = 1
            await close_batch(packed)
            await settle(delivery)

        bodies = await stored_bodies(store)
        assert [kind for kind, _, _ in bodies] == ["work_order_ack", "pallet_manifest", "batch_record",
                                                   "batch_manifest"]
        received = endpoint.messages("json")
        # Exactly once: each message stored once, in order, byte for byte what the store fixed.
        assert [r.body.decode() for r in received] == [body for _, body, _ in bodies]
        assert len({r.message_id for r in received}) == 4
        assert [r.kind for r in endpoint.messages("csv")] == ["pallet_manifest", "batch_manifest"]
        assert [r.kind for r in endpoint.messages("html")] == ["batch_record"]
        assert Counter((r.message_id, r.representation) for r in endpoint.received).most_common(1)[0][1] == 1
        # The answers lost after storing: sent again, recognised as held (the first re-send's answer lost too).
        assert endpoint.answers[200] == 2
        assert endpoint.faults.pending == ()
        assert sleeps.retries[:2] == [2.0, 2.0]  # the endpoint's Retry-After, above the first backoff pause

        status = await store.read(lambda conn: outbox.status(conn, "mes"))
        assert [s["state"] for s in status] == ["delivered"] * 4
        first = await store.read(lambda conn: outbox.attempts_of(conn, "mes", status[0]["outbox_id"]))
        # Stored by the fifth attempt, whose answer was lost like the sixth's: the seventh finds it held.
        assert [a["outcome"] for a in first] == ["retry"] * 6 + ["duplicate"]
        assert first[0]["status"] == 503


async def test_a_restart_between_storing_and_the_answer_sends_again_and_the_endpoint_keeps_one(tmp_path):
    clock = Ticker()
    state = tmp_path / "state"
    async with PlantEndpoint(token=TOKEN) as endpoint:
        target = http_target(endpoint.url, tmp_path)
        store = Store.open(state, clock=clock)
        async with store:
            hold = Sleeps(hold_retries=True)
            async with running(store, target, hold) as delivery:
                endpoint.lose_answers = 1
                packed = await pack_batch(store, clock)
                delivery.wake()
                await hold.holding.wait()  # stored upstream, answer lost, the daemon dies in its retry pause
            assert len(endpoint.messages("json")) == 1
            await close_batch(packed)

        store = Store.open(state, clock=clock)
        async with store, running(store, target, Sleeps()) as delivery:
            await settle(delivery)
            status = await store.read(lambda conn: outbox.status(conn, "mes"))

    assert [s["state"] for s in status] == ["delivered"] * 4
    assert [r.kind for r in endpoint.messages("json")] == ["work_order_ack", "pallet_manifest", "batch_record",
                                                           "batch_manifest"]
    assert endpoint.answers[200] == 1  # the acknowledgement, stored before its answer was lost


async def test_a_refused_message_holds_the_queue_until_an_operator_resends_it(tmp_path):
    clock = Ticker()
    store = Store.open(tmp_path / "state", clock=clock)
    async with store, PlantEndpoint(token=TOKEN) as endpoint:
        target = http_target(endpoint.url, tmp_path, formats=["json"])
        async with running(store, target, Sleeps()) as delivery:
            endpoint.faults.add(RejectDocument())
            packed = await pack_batch(store, clock)
            await close_batch(packed)
            await settle(delivery)
            assert delivery.blocked is not None
            assert "refused the work_order_ack json with 400" in delivery.blocked
            assert endpoint.received == []  # nothing after the refused message goes ahead of it

            await store.write(lambda conn: outbox.resend(conn, "mes", 1, operator="qa", reason="fixed upstream",
                                                         now="2026-11-25T12:00:00.000000Z"))
            await settle(delivery)
            assert delivery.blocked is None
        status = await store.read(lambda conn: outbox.status(conn, "mes"))
        assert [s["state"] for s in status] == ["delivered"] * 4
        assert [r.kind for r in endpoint.received] == ["work_order_ack", "pallet_manifest", "batch_record",
                                                       "batch_manifest"]
        attempts = await store.read(lambda conn: outbox.attempts_of(conn, "mes", 1))
        assert [(a["outcome"], a["operator"]) for a in attempts] == [("failed", None), ("resend", "qa"),
                                                                     ("stored", None)]


async def test_credentials_refused_fail_the_message_for_an_operator(tmp_path):
    clock = Ticker()
    store = Store.open(tmp_path / "state", clock=clock)
    async with store, PlantEndpoint(token="another-token") as endpoint:
        async with running(store, http_target(endpoint.url, tmp_path), Sleeps()) as delivery:
            await pack_batch(store, clock)
            await settle(delivery)
            assert delivery.blocked is not None
            assert "credentials" in delivery.blocked
        assert endpoint.received == []


async def test_a_file_drop_target_gets_json_csv_and_html_once(tmp_path):
    clock = Ticker()
    drop = tmp_path / "drop"
    drop.mkdir()
    target = PlantTarget.model_validate({"id": "erp", "kind": "file_drop", "directory": str(drop),
                                         "formats": ["json", "csv", "html"]})
    store = Store.open(tmp_path / "state", clock=clock)
    async with store:
        async with running(store, target, Sleeps()) as delivery:
            packed = await pack_batch(store, clock)
            await close_batch(packed)
            await settle(delivery)
            names = sorted(p.name for p in drop.iterdir())
            # A re-send finds the same files with the same bytes: delivered, nothing written twice.
            await store.write(lambda conn: outbox.resend(conn, "erp", 2, operator="qa", reason="lost by the MES",
                                                         now="2026-11-25T12:00:00.000000Z"))
            await settle(delivery)
        bodies = await stored_bodies(store)
        attempts = await store.read(lambda conn: outbox.attempts_of(conn, "erp", 2))
    assert sorted(p.name for p in drop.iterdir()) == names
    assert len(names) == 7  # json for all four, csv for the two manifests, html for the record
    record = next(p for p in drop.iterdir() if p.name.startswith("batch_record-WO-7") and p.suffix == ".json")
    assert record.read_text() == bodies[2][1]
    assert json.loads(record.read_text())["kind"] == "batch_record"
    assert [a["outcome"] for a in attempts] == ["stored", "resend", "duplicate"]


async def test_a_target_configured_later_gets_only_what_closes_after(tmp_path):
    clock = Ticker()
    store = Store.open(tmp_path / "state", clock=clock)
    async with store, PlantEndpoint(token=TOKEN) as endpoint:
        packed = await pack_batch(store, clock)  # the pallet closes before the target exists
        async with running(store, http_target(endpoint.url, tmp_path, formats=["json"]), Sleeps()) as delivery:
            await close_batch(packed)
            await settle(delivery)
    assert [r.kind for r in endpoint.received] == ["batch_record", "batch_manifest"]


async def test_two_targets_get_the_same_bytes_under_the_same_message_id(tmp_path):
    clock = Ticker()
    drop = tmp_path / "drop"
    drop.mkdir()
    erp = PlantTarget.model_validate({"id": "erp", "kind": "file_drop", "directory": str(drop),
                                      "messages": ["batch_manifest"]})
    store = Store.open(tmp_path / "state", clock=clock)
    async with store, PlantEndpoint(token=TOKEN) as endpoint:
        mes = http_target(endpoint.url, tmp_path, formats=["json"])
        async with running(store, mes, Sleeps()) as one, running(store, erp, Sleeps()) as other:
            packed = await pack_batch(store, clock)
            await close_batch(packed)
            await settle(one)
            await settle(other)
    [manifest] = [r for r in endpoint.received if r.kind == "batch_manifest"]
    [written] = list(drop.iterdir())
    assert written.read_bytes() == manifest.body
    assert json.loads(written.read_bytes())["message_id"] == manifest.message_id
