"""Plant messages rendered from a real store: written with the close that causes them, matching the aggregation."""

from __future__ import annotations

import csv
import io
import json
import sqlite3

import pytest

from edge.plant import outbox
from edge.plant.html import batch_record_html
from edge.plant.manifest import CSV_COLUMNS, manifest_csv
from edge.store import DB_NAME, Store
from tests.edge.plant_line import PackedBatch, Ticker, close_batch, pack_batch

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
        assert await _outbox(store) == [(1, "pallet_manifest", packed.pallet)]
        await close_batch(packed)
        assert await _outbox(store) == [(1, "pallet_manifest", packed.pallet), (2, "batch_record", None),
                                        (3, "batch_manifest", None)]

    # A change refused by the store leaves no message behind: the outbox row is part of the change's transaction.
    conn = sqlite3.connect(tmp_path / "state" / DB_NAME, isolation_level=None)
    try:
        conn.execute("BEGIN")
        conn.execute("INSERT INTO batch_event (batch_id, at, from_state, to_state, reason)"
                     " VALUES (1, 'x', 'closed', 'closed', 'again')")
        assert conn.execute("SELECT count(*) FROM plant_outbox").fetchone()[0] == 5
        conn.execute("ROLLBACK")
        assert conn.execute("SELECT count(*) FROM plant_outbox").fetchone()[0] == 3
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
        assert kinds == ["pallet_manifest", "pallet_manifest", "batch_record", "batch_manifest"]

        first = (await _message(store, 1)).data
        assert (first["schema"], first["version"]) == ("lineside.shipping-manifest", 1)
        [pallet] = first["pallets"]
        assert pallet["sscc"] == pallet_sscc
        assert [c["sscc"] for c in pallet["cases"]] == case_ssccs[:2]
        assert pallet["contents"] == [{"gtin": gtin, "lot": ITEM[1], "expiry": ITEM[2], "quantity": 20}]
        assert first["totals"] == {"pallets": 1, "cases": 2, "units": 20}

        second = (await _message(store, 2)).data
        assert [c["sscc"] for c in second["pallets"][0]["cases"]] == case_ssccs[:1]
        assert second["pallets"][0]["units"] == 10

        # The batch manifest against the store's aggregation as it stands at the close.
        manifest = (await _message(store, 4)).data
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
        message = await _message(store, 2)
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
        again = await _message(store, 2)
        assert (again.body, again.sha256, again.message_id) == (message.body, message.sha256, message.message_id)
        with pytest.raises(Exception, match="fixed once rendered"):
            await store.write(lambda conn: conn.execute("UPDATE plant_outbox SET body = '{}' WHERE id = 2"))

        page = batch_record_html(record)
        assert "<script" not in page
        assert "WO-7" in page
        assert "grade below C" in page
        json.dumps(record)  # JSON all through
