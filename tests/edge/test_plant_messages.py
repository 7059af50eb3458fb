"""Plant messages rendered from a real store: written with the close that causes them, matching the aggregation."""

from __future__ import annotations

import asyncio
import csv
import hashlib
import io
import json
import sqlite3

import pytest

from edge.api import make_app
from edge.plant import outbox
from edge.plant.html import batch_record_html
from edge.plant.manifest import CSV_COLUMNS, manifest_csv
from edge.serials.batches import BatchService
from edge.serials.ledger import SerialLedger
from edge.store import DB_NAME, Store
from tests.edge.logins import add_users, login, make_auth
from tests.edge.plant_line import PackedBatch, Ticker, close_batch, pack_batch
from tests.edge.test_api import LINE, TODAY, aspirin, catalog, line, serving  # noqa: F401 - the API fixtures, shared

ITEM = ("04012345000016", "L2611B", "281031")


async def _outbox(store: Store) -> list[tuple[int, str, int | None]]:
    sql = "SELECT id, kind, container_id FROM plant_outbox ORDER BY id"
    return await store.read(lambda conn: [(int(r[0]), str(r[1]), r[2]) for r in conn.execute(sql)])


async def _message(store: Store, outbox_id: int) -> outbox.Message:
    return await store.write(lambda conn: outbox.fixed_message(conn, outbox_id, "2026-11-25T09:00:00.000000Z"))


async def _sscc(packed: PackedBatch, container_id: int) -> str:
    return (await packed.agg.container(container_id)).identifier


async def _gtin(store: Store, batch_id: int) -> str:
    return await store.read(lambda conn: str(conn.execute("SELECT gtin FROM batch WHERE id = ?",
                                                               (batch_id,)).fetchone()[0]))


async def test_pallet_and_batch_close_write_their_messages_in_the_same_transaction(tmp_path):
    clock = Ticker()
    store = Store.open(tmp_path / "state", clock=clock)
    async with store:
        packed = await pack_batch(store, clock)
        assert await _outbox(store) == [(1, "work_order_ack", None), (2, "pallet_manifest", packed.pallet)]
        await close_batch(packed)
        assert await _outbox(store) == [(1, "work_order_ack", None), (2, "pallet_manifest", packed.pallet),
                                        (3, "batch_record", None), (4, "batch_manifest", None)]

    # A change refused by the store leaves no message behind: the outbox row is part of the change's transaction.
    conn = sqlite3.connect(tmp_path / "state" / DB_NAME, isolation_level=None)
    try:
        conn.execute("BEGIN")
        conn.execute("INSERT INTO batch_event (batch_id, at, from_state, to_state, reason)"
                     " VALUES (1, 'x', 'closed', 'closed', 'again')")
        assert conn.execute("SELECT count(*) FROM plant_outbox").fetchone()[0] == 6
        conn.execute("ROLLBACK")
        assert conn.execute("SELECT count(*) FROM plant_outbox").fetchone()[0] == 4
    finally:
        conn.close()


async def test_the_pallet_manifest_shows_the_pallet_as_closed_though_it_is_reworked_later(tmp_path):
    clock = Ticker()
    store = Store.open(tmp_path / "state", clock=clock)
    async with store:
        packed = await pack_batch(store, clock)
        gtin = await _gtin(store, packed.batch_id)
        pallet_sscc = await _sscc(packed, packed.pallet)
        case_ssccs = [await _sscc(packed, c) for c in packed.cases]
        # Rework after the close: the second case comes off the pallet, which closes again with one case.
        await packed.agg.unpack(packed.pallet, containers=[packed.cases[1]], operator="op", reason="damaged wrap")
        await packed.agg.close_container(packed.pallet, operator="supervisor", partial_reason="rebuilt")
        await close_batch(packed)
        kinds = [kind for _, kind, _ in await _outbox(store)]
        assert kinds == ["work_order_ack", "pallet_manifest", "pallet_manifest", "batch_record", "batch_manifest"]

        first = (await _message(store, 2)).data
        assert (first["schema"], first["version"]) == ("lineside.shipping-manifest", 1)
        [pallet] = first["pallets"]
        assert pallet["sscc"] == pallet_sscc
        assert [c["sscc"] for c in pallet["cases"]] == case_ssccs[:2]
        assert pallet["contents"] == [{"gtin": gtin, "lot": ITEM[1], "expiry": ITEM[2], "quantity": 20}]
        assert first["totals"] == {"pallets": 1, "cases": 2, "units": 20}

        second = (await _message(store, 3)).data
        assert [c["sscc"] for c in second["pallets"][0]["cases"]] == case_ssccs[:1]
        assert second["pallets"][0]["units"] == 10

        # The batch manifest against the store's aggregation as it stands at the close.
        manifest = (await _message(store, 5)).data
        assert manifest["scope"] == "batch"
        on_pallet = (await packed.agg.contents(packed.pallet)).container_ids
        assert [[c["sscc"] for c in p["cases"]] for p in manifest["pallets"]] == [
            [await _sscc(packed, c) for c in on_pallet]]
        loose = [c for c in packed.cases if c not in on_pallet]
        assert [c["sscc"] for c in manifest["loose_cases"]] == [await _sscc(packed, c) for c in loose]
        for case in [*manifest["pallets"][0]["cases"], *manifest["loose_cases"]]:
            found = await packed.agg.find(case["sscc"])
            assert case["units"] == len((await packed.agg.contents(found.id)).serial_ids)
        assert manifest["totals"] == {"pallets": 1, "cases": 3, "units": 25}
        assert manifest["production_confirmation"] == {
            "good_quantity": 25, "scrap_quantity": 3, "rejected": 3, "destroyed": 0, "sampled": 0,
            "in_doubt_decommissioned": 2, "unit": "EA"}

        rows = list(csv.reader(io.StringIO(manifest_csv(manifest))))
        assert tuple(rows[0]) == CSV_COLUMNS
        assert [r[0] for r in rows[1:]] == ["case", "case", "case", "production"]
        assert sum(int(r[7]) for r in rows[1:] if r[0] == "case") == 25
        assert rows[-1][4:] == [gtin, ITEM[1], ITEM[2], "25", "3"]


async def test_the_batch_record_holds_what_the_line_did(tmp_path):
    clock = Ticker()
    store = Store.open(tmp_path / "state", clock=clock)
    async with store:
        run_id, _ = await store.begin_run("test", "c" * 64)
        packed = await pack_batch(store, clock)
        await close_batch(packed)
        message = await _message(store, 3)
        record = message.data
        assert record["message_id"] == message.message_id
        assert message.message_id.startswith("urn:uuid:")
        assert (record["schema"], record["version"], record["kind"]) == ("lineside.batch-record", 1, "batch_record")
        assert record["batch"]["work_order"] == "WO-7"
        assert [p["reason"] for p in record["pauses"]] == ["paused"]
        assert record["pauses"][0]["resumed_at"] is not None
        assert (record["counts"]["commissioned"], record["counts"]["rejected"]) == (25, 5)
        assert record["decommissioned_by_reason"]["rejected"] == {"grade below C": 2,
                                                                  "in doubt, decommissioned: left in the printer": 2,
                                                                  "wrong code": 1}
        assert [d["id"] for d in record["devices"]["printers"]] == ["printer-1"]
        [camera] = record["devices"]["cameras"]
        assert camera == {"id": "camera-1", "commissioned": 25, "rejected": 3,
                          "first_at": record["serial_times"]["first_commissioned_at"], "last_at": camera["last_at"]}
        assert (record["devices"]["printers"][0]["sent"], record["devices"]["printers"][0]["printed"]) == (30, 28)
        assert record["serial_times"]["first_printed_at"] <= record["serial_times"]["last_commissioned_at"]
        assert [(c["run"], c["config_sha256"]) for c in record["configuration"]] == [(run_id, "c" * 64)]
        assert record["reconciliation"]["report"]["balanced"] is True
        assert record["closed_at"] == record["reconciliation"]["report"]["closed_at"]

        # The body is fixed at its first rendering: every later read and every target gets the same bytes.
        again = await _message(store, 3)
        assert (again.body, again.sha256, again.message_id) == (message.body, message.sha256, message.message_id)
        with pytest.raises(Exception, match="fixed once rendered"):
            await store.write(lambda conn: conn.execute("UPDATE plant_outbox SET body = '{}' WHERE id = 3"))

        page = batch_record_html(record)
        assert "<script" not in page
        assert "WO-7" in page
        assert "grade below C" in page
        json.dumps(record)  # JSON all through


async def test_each_work_order_is_acknowledged_accepted_or_refused_with_the_reason(line):  # noqa: F811 - a fixture
    """Through the HTTP API: an accepted work order, the same again, one for another line, one unreadable."""
    order = aspirin(work_order="WO-ACK")
    assert (await line.call("POST", "/work-orders", data=order.encode()))[0] == 201
    assert (await line.call("POST", "/work-orders", data=order.encode()))[0] == 409
    other_line = order.replace(f"line: {LINE}", "line: line-9").replace("WO-ACK", "WO-OTHER")
    assert (await line.call("POST", "/work-orders", data=other_line.encode()))[0] == 400
    assert (await line.call("POST", "/work-orders", data=b"work_order: [unclosed"))[0] == 400

    store = line.ledger.store
    acks = [(await _message(store, oid)).data for oid, kind, _ in await _outbox(store) if kind == "work_order_ack"]
    assert [(a["work_order"], a["accepted"]) for a in acks] == [
        ("WO-ACK", True), ("WO-ACK", False), ("WO-OTHER", False), (None, False)]
    assert all(a["schema"] == "lineside.work-order-ack" and a["line"] == LINE for a in acks)
    assert acks[0]["batch"] == 1
    assert acks[0]["reason"] is None
    assert "imported already as batch 1" in acks[1]["reason"]
    assert "line-9" in acks[2]["reason"]
    assert acks[3]["reason"]
    kept = await store.read(lambda conn: conn.execute(
        "SELECT text, sha256, operator FROM work_order_refusal ORDER BY id").fetchall())
    assert kept[0][0] == order
    assert kept[0][1] == hashlib.sha256(order.encode()).hexdigest()
    assert kept[0][2] == "sam"


async def test_the_api_shows_plant_deliveries_and_resends_a_failed_one_as_the_user(tmp_path, catalog):  # noqa: F811
    store = Store.open(tmp_path / "state", group_window_s=0)
    writer = asyncio.create_task(store.run(), name="store writer")
    auth = make_auth(store)
    batches = BatchService(SerialLedger(store, line_id=LINE), catalog, today=lambda: TODAY)
    try:
        await add_users(auth.accounts)
        await batches.import_work_order(aspirin(work_order="WO-API"), "wo.yaml", operator="mes")
        stamp = "2026-11-25T09:00:00.000000Z"

        def fail_it(conn: sqlite3.Connection) -> None:
            conn.execute("INSERT INTO plant_target (target, since_outbox, at) VALUES ('mes', 0, ?)", (stamp,))
            outbox.enqueue(conn, "mes", outbox.KINDS, stamp)
            outbox.fixed_message(conn, 1, stamp)
            outbox.begin_attempt(conn, "mes", 1, stamp)
            outbox.end_attempt(conn, "mes", 1, "failed", "the endpoint refused it with 400", now=stamp, status=400)

        await store.write(fail_it)
        async with serving(make_app(batches, auth=auth, store=lambda: store)) as session:
            headers = await login(session, "sam")
            async with session.get("/api/v1/plant/deliveries", headers=headers) as answer:
                listed = await answer.json()
            assert [(d["kind"], d["work_order"], d["state"]) for d in listed["deliveries"]] == [
                ("work_order_ack", "WO-API", "failed")]
            async with session.post("/api/v1/plant/deliveries/mes/1/resend", headers=headers,
                                    json={"reason": "MES fixed its schema"}) as answer:
                assert answer.status == 200
            async with session.post("/api/v1/plant/deliveries/mes/1/resend", headers=headers,
                                    json={"reason": "again"}) as answer:
                assert answer.status == 409  # pending already: nothing to re-send
            async with session.get("/api/v1/plant/deliveries/mes/1", headers=headers) as answer:
                shown = await answer.json()
        assert shown["state"] == "pending"
        assert [(a["outcome"], a["operator"]) for a in shown["attempts"]] == [("failed", None), ("resend", "sam")]
        assert len(shown["sha256"]) == 64
    finally:
        await store.aclose()
        await writer
        store.close()
