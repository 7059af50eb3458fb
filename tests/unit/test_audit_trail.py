"""The audit trail: append-only by trigger, hash-chained, and verify finds every kind of edit."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
from datetime import UTC, datetime, timedelta
from enum import Enum

import pytest

from edge.control.audit import (
    AuditTrail,
    AuditVerdict,
    canonical_json,
    entry_hash,
    export_csv,
    export_json,
    genesis_hash,
    verify,
)
from edge.store import DB_NAME, Store

START = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)


class Clock:
    """A store clock that moves only when told to."""

    def __init__(self, now=START):
        self.now = now

    def __call__(self):
        return self.now

    def advance(self, **delta):
        self.now += timedelta(**delta)


@pytest.fixture
async def trail(tmp_path):
    store = Store.open(tmp_path, group_window_s=0)
    async with store:
        yield AuditTrail(store, clock=Clock())


async def fill(trail, count=5):
    for n in range(1, count + 1):
        await trail.record("qa1", "batch.release", f"batch:{n}", {"n": n, "lot": f"L{n}"})


def raw(trail):
    """A plain sqlite3 connection to the store's file, as someone with the file in hand would have."""
    return sqlite3.connect(trail._store.path, isolation_level=None)


async def verdict(trail):
    return await trail.check()


async def test_entries_chain_from_the_store_genesis_and_verify_whole(trail):
    first = await trail.record(None, "config.loaded", "line.yaml", {"sha256": "ab" * 32})
    second = await trail.record("op1", "line.start", "line-1")
    assert (first, second) == (1, 2)
    rows = await trail._store.read(lambda c: c.execute(
        "SELECT id, at, actor, action, subject, details_json, prev_hash, hash FROM audit_log ORDER BY id").fetchall())
    assert rows[0][6] == genesis_hash(trail._store.store_id)
    assert rows[1][6] == rows[0][7]
    assert rows[0][7] == entry_hash(rows[0][6], rows[0][:6])
    assert rows[0][5] == '{"sha256":"' + "ab" * 32 + '"}'
    assert rows[1][5] == "{}"
    result = await verdict(trail)
    assert result == AuditVerdict(ok=True, entries=2, last_id=2, last_hash=rows[1][7])


async def test_an_empty_trail_is_whole(trail):
    assert await verdict(trail) == AuditVerdict(ok=True, entries=0)


async def test_update_and_delete_are_refused_by_the_database(trail):
    await fill(trail, 2)

    def update(conn):
        conn.execute("UPDATE audit_log SET subject = 'x' WHERE id = 1")

    def delete(conn):
        conn.execute("DELETE FROM audit_log WHERE id = 2")

    def unchained(conn):
        conn.execute("INSERT INTO audit_log (id, at, actor, action, subject, details_json, prev_hash, hash)"
                     " VALUES (3, 'x', NULL, 'a.b', 's', '{}', ?, ?)", ("0" * 64, "1" * 64))

    for change in (update, delete, unchained):
        with pytest.raises(sqlite3.IntegrityError, match="audit_log"):
            await trail._store.write(change)
    assert (await verdict(trail)).ok


async def test_record_in_commits_with_the_change_or_not_at_all(trail):
    await trail._store.write(lambda c: c.execute("CREATE TABLE thing (v TEXT) STRICT"))

    def change(conn):
        conn.execute("INSERT INTO thing VALUES ('held')")
        return trail.record_in(conn, "op1", "line.hold", "line-1", {"why": "jam"})

    assert await trail._store.write(change) == 1

    def failing(conn):
        trail.record_in(conn, "op1", "line.start", "line-1")
        raise RuntimeError("the command failed after its audit entry was written")

    with pytest.raises(RuntimeError):
        await trail._store.write(failing)
    assert await trail.record("op1", "line.unhold", "line-1") == 2  # no hole left by the undone entry
    assert (await verdict(trail)).ok


async def test_malformed_action_subject_or_details_are_refused(trail):
    with pytest.raises(ValueError, match=r"area\.verb"):
        await trail.record("op1", "Line Start", "line-1")
    with pytest.raises(ValueError, match="subject"):
        await trail.record("op1", "line.start", "")
    with pytest.raises(TypeError, match="object"):
        await trail.record("op1", "line.start", "line-1", {"x": object()})


def test_canonical_json_sorts_keys_drops_spaces_and_converts_known_types():
    class Colour(Enum):
        RED = "red"

    value = {"b": [1, 2.5], "a": {"z": None, "y": Colour.RED}, "t": datetime(2026, 1, 2, 3, 4, tzinfo=UTC),
             "s": {"q", "p"}, "ü": "é"}
    assert canonical_json(value) == ('{"a":{"y":"red","z":null},"b":[1,2.5],"s":["p","q"],'
                                     '"t":"2026-01-02T03:04:00.000000Z","ü":"é"}')
    with pytest.raises(ValueError, match="JSON"):
        canonical_json({"x": float("nan")})


async def test_verify_finds_a_row_edited_with_the_triggers_dropped(trail):
    await fill(trail)
    conn = raw(trail)
    conn.execute("DROP TRIGGER audit_log_append_only_update")
    conn.execute("UPDATE audit_log SET details_json = '{\"lot\":\"L9\",\"n\":3}' WHERE id = 3")
    conn.close()
    result = await verdict(trail)
    assert not result.ok
    assert result.first_broken_id == 3
    assert "entry #3 was changed" in result.reason
    assert "audit_log_append_only_update" in result.reason


async def test_verify_finds_an_edit_even_with_the_triggers_put_back(trail):
    await fill(trail)
    conn = raw(trail)
    (create,) = conn.execute("SELECT sql FROM sqlite_master WHERE name = 'audit_log_append_only_update'").fetchone()
    conn.execute("DROP TRIGGER audit_log_append_only_update")
    conn.execute("UPDATE audit_log SET actor = 'someone-else' WHERE id = 2")
    conn.execute(create)
    conn.close()
    result = await verdict(trail)
    assert (result.ok, result.first_broken_id) == (False, 2)
    assert result.reason == "entry #2 was changed after it was written (its hash does not match its content)"


async def test_verify_finds_a_deleted_row_in_the_middle(trail):
    await fill(trail)
    conn = raw(trail)
    conn.execute("DROP TRIGGER audit_log_append_only_delete")
    conn.execute("DELETE FROM audit_log WHERE id = 3")
    conn.close()
    result = await verdict(trail)
    assert (result.ok, result.first_broken_id) == (False, 4)
    assert result.reason.startswith("entries #3 are missing before entry #4 (deleted)")


async def test_verify_finds_rows_cut_off_the_end_and_the_next_entry_leaves_a_gap(trail):
    await fill(trail)
    conn = raw(trail)
    conn.execute("DROP TRIGGER audit_log_append_only_delete")
    conn.execute("DELETE FROM audit_log WHERE id >= 4")
    conn.close()
    result = await verdict(trail)
    assert (result.ok, result.first_broken_id) == (False, 4)
    assert "entries #4 to #5 were cut off the end" in result.reason
    assert await trail.record("op1", "line.start", "line-1") == 6
    result = await verdict(trail)
    assert (result.ok, result.first_broken_id) == (False, 6)
    assert "entries #4 to #5 are missing" in result.reason


async def test_verify_finds_a_renumbered_row_and_swapped_rows(trail):
    await fill(trail)
    conn = raw(trail)
    conn.execute("DROP TRIGGER audit_log_append_only_update")
    # Two rows' contents swapped, their ids and hashes left in place: a reordering.
    conn.execute("UPDATE audit_log SET subject = CASE id WHEN 2 THEN 'batch:3' ELSE 'batch:2' END,"
                 " details_json = CASE id WHEN 2 THEN '{\"lot\":\"L3\",\"n\":3}' ELSE '{\"lot\":\"L2\",\"n\":2}' END"
                 " WHERE id IN (2, 3)")
    conn.close()
    result = await verdict(trail)
    assert (result.ok, result.first_broken_id) == (False, 2)


async def test_verify_finds_a_row_moved_with_its_hash(trail):
    await fill(trail)
    conn = raw(trail)
    conn.execute("DROP TRIGGER audit_log_append_only_update")
    conn.execute("DROP TRIGGER audit_log_append_only_delete")
    # Entry 5 moved in front of entry 4 (ids 4 and 5 swapped through a free id), each row otherwise intact.
    conn.execute("UPDATE audit_log SET id = 100 WHERE id = 4")
    conn.execute("UPDATE audit_log SET id = 4 WHERE id = 5")
    conn.execute("UPDATE audit_log SET id = 5 WHERE id = 100")
    conn.close()
    result = await verdict(trail)
    assert (result.ok, result.first_broken_id) == (False, 4)


async def test_verify_finds_a_whole_rewritten_chain_only_by_the_dropped_triggers(trail):
    await fill(trail, 3)
    conn = raw(trail)
    conn.execute("DROP TRIGGER audit_log_append_only_update")
    conn.execute("DROP TRIGGER audit_log_chained")
    rows = conn.execute("SELECT id, at, actor, action, subject, details_json FROM audit_log ORDER BY id").fetchall()
    prev = genesis_hash(trail._store.store_id)
    for row in rows:
        content = (*row[:2], "forger", *row[3:])
        digest = entry_hash(prev, content)
        conn.execute("UPDATE audit_log SET actor = 'forger', hash = ?, prev_hash = ? WHERE id = ?", (digest, prev,
                                                                                                     row[0]))
        prev = digest
    conn.close()
    result = await verdict(trail)
    assert not result.ok
    assert result.first_broken_id is None
    assert "audit_log_append_only_update, audit_log_chained" in result.reason


async def test_verify_knows_its_store_a_trail_copied_from_another_does_not_verify(tmp_path):
    clock = Clock()
    for name in ("a", "b"):
        store = Store.open(tmp_path / name, group_window_s=0)
        async with store:
            await AuditTrail(store, clock=clock).record("op1", "line.start", "line-1")
    source = sqlite3.connect(tmp_path / "a" / DB_NAME)
    row = source.execute("SELECT * FROM audit_log").fetchone()
    source.close()
    target = sqlite3.connect(tmp_path / "b" / DB_NAME, isolation_level=None)
    target.execute("DROP TRIGGER audit_log_append_only_update")
    target.execute("UPDATE audit_log SET at = ?, prev_hash = ?, hash = ? WHERE id = 1", (row[1], row[6], row[7]))
    result = verify(target)
    target.close()
    assert (result.ok, result.first_broken_id) == (False, 1)
    assert "does not follow the start of the trail" in result.reason


async def test_exports_stream_every_column_and_the_json_rehashes(trail):
    await trail.record(None, "config.loaded", "line.yaml", {"sha256": "0" * 64})
    await trail.record("ann", "user.login", "ann", {"via": "hmi", "note": "a,b \"c\"\nd"})
    out = io.StringIO()
    assert await trail._store.read(lambda c: export_csv(c, out)) == 2
    table = list(csv.reader(io.StringIO(out.getvalue())))
    assert table[0] == ["id", "at", "actor", "action", "subject", "details_json", "prev_hash", "hash"]
    assert table[1][:5] == ["1", "2026-11-25T09:00:00.000000Z", "", "config.loaded", "line.yaml"]
    assert json.loads(table[2][5]) == {"note": "a,b \"c\"\nd", "via": "hmi"}
    out = io.StringIO()
    assert await trail._store.read(lambda c: export_json(c, out)) == 2
    document = json.loads(out.getvalue())
    assert document["store_id"] == trail._store.store_id
    prev = genesis_hash(document["store_id"])
    for entry in document["entries"]:
        content = (entry["id"], entry["at"], entry["actor"], entry["action"], entry["subject"], entry["details_json"])
        assert entry["prev_hash"] == prev
        assert entry["hash"] == entry_hash(prev, content)
        prev = entry["hash"]


async def test_an_empty_export_is_still_a_document(trail):
    out = io.StringIO()
    assert await trail._store.read(lambda c: export_json(c, out)) == 0
    assert json.loads(out.getvalue())["entries"] == []


async def test_entries_page_by_id_and_filter_by_subject(trail):
    await fill(trail, 4)
    page = await trail.entries(after=1, limit=2)
    assert [e.id for e in page] == [2, 3]
    assert page[0].details == {"lot": "L2", "n": 2}
    assert page[0].at == START
    assert [e.id for e in await trail.entries(subject="batch:4")] == [4]
