"""The crash campaign: the demo line SIGKILLed at seeded random moments, resumed, the invariants checked each time.

Also the pieces it stands on: the simulated EPCIS repository keeping its events across a restart (a capture cut
short by a kill is dropped), the kill plan, a restart resuming a case opened just before the kill, and the checks
themselves, which must catch a store or a repository that breaks an invariant.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import sqlite3
from pathlib import Path

import aiohttp
import pytest

from edge.aggregation.line import AggregationLine
from edge.aggregation.service import Aggregation
from edge.config import load_config
from edge.crash import DEMO_CONFIG, UPSTREAM_DIR, check_store, plan_kills, run_campaign
from edge.products.load import load_catalog
from edge.serials.states import SerialState
from edge.store import Store
from simulators.epcis_upstream import (
    EVENTS_FILE,
    EpcisUpstream,
    EventLogError,
    basic_event_ids,
    read_event_log,
    structural_problems,
)
from tests.edge.test_aggregation_service import clock, running_batch

GUARD_S = 10.0
"""Guards the small tests against a hang; nothing here measures time."""


def document(*serials: int) -> bytes:
    """An EPCIS 2.0 JSON-LD document commissioning these serials (no eventID: held under their hash)."""
    events = [{"type": "ObjectEvent", "eventTime": "2026-11-01T08:00:00.000Z", "eventTimeZoneOffset": "+00:00",
               "epcList": [f"urn:epc:id:sgtin:0614141.107346.{n}"], "action": "ADD", "bizStep": "commissioning",
               "disposition": "active"} for n in serials]
    return json.dumps({"@context": ["https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld"],
                       "type": "EPCISDocument", "schemaVersion": "2.0", "creationDate": "2026-11-01T08:00:00.000Z",
                       "epcisBody": {"eventList": events}}).encode()


def repository(storage: Path) -> EpcisUpstream:
    # The structural check and stand-in hash: what is stored is under test here, not the schemas.
    return EpcisUpstream(storage=storage, validator=structural_problems, extractor=basic_event_ids)


async def capture(upstream: EpcisUpstream, data: bytes) -> tuple[int, str]:
    async with asyncio.timeout(GUARD_S), aiohttp.ClientSession() as session, session.post(
            f"{upstream.url}/capture", data=data, headers={"Content-Type": "application/ld+json"}) as answer:
        return answer.status, answer.headers.get("Location", "")


async def test_a_stored_capture_survives_a_restart_and_its_resend_is_a_duplicate(tmp_path):
    async with repository(tmp_path) as upstream:
        assert await capture(upstream, document(1, 2)) == (202, "/capture/job-1")
        before = upstream.stored_events
    assert len(before) == 2
    async with repository(tmp_path) as upstream:
        assert upstream.stored_events == before
        # The line re-sends what it never heard was stored: a duplicate, stored once.
        status, _ = await capture(upstream, document(1, 2))
        assert status == 409
        # New captures go on after the old ones (a refused one makes no job): a capture ID is never given twice.
        assert await capture(upstream, document(3)) == (202, "/capture/job-2")
        assert len(upstream.stored_events) == 3
    assert [e.event_id for e in read_event_log(tmp_path / EVENTS_FILE).events] == [
        e.event_id for e in before] + [upstream.stored_events[-1].event_id]


async def test_a_capture_cut_short_by_a_kill_was_never_answered_so_it_is_dropped(tmp_path):
    async with repository(tmp_path) as upstream:
        assert (await capture(upstream, document(1)))[0] == 202
    log = tmp_path / EVENTS_FILE
    whole = log.read_bytes()
    event = whole.splitlines(keepends=True)[0].replace(b"job-1", b"job-2")
    # A capture killed while it was written: one event line whole, the next cut off, no closing line.
    log.write_bytes(whole + event + event[:25])
    async with repository(tmp_path) as upstream:
        assert len(upstream.stored_events) == 1
        assert log.read_bytes() == whole  # cut back, so the next capture starts on a line of its own
        assert (await capture(upstream, document(2)))[0] == 202
    assert len(read_event_log(log).events) == 2
    log.write_bytes(b"not json\n" + whole)
    with pytest.raises(EventLogError, match=r"events.jsonl:1: not a stored event"):
        read_event_log(log)


def test_the_kill_plan_is_repeatable_prints_first_and_ends_on_a_capture():
    plan = plan_kills(11, 7)
    assert plan == plan_kills(11, 7)
    assert len(plan) == 11
    assert plan[0].phase == "printing"
    phases = [spec.phase for spec in plan]
    assert phases.index("end") == len(plan) - phases.count("end") == 8  # the end's kills come last
    assert plan[-1].on_capture
    assert {"printing", "packing", "end"} == set(phases)


async def test_a_case_opened_just_before_the_kill_is_filled_after_the_restart(tmp_path):
    config = load_config(DEMO_CONFIG)
    assert config.aggregation is not None
    store = Store.open(tmp_path / "state", clock=clock)
    async with store:
        batch, units, batches = await running_batch(store, 12)
        agg = Aggregation(store, clock=clock)
        full = await agg.open_container(batch, "case")
        await agg.pack(full.id, serial_ids=units[:10])
        # The packer opens a case and packs into it in two changes: the process died between them.
        empty = await agg.open_container(batch, "case")

        async def nowhere(_event: object) -> None:
            return None

        catalog = load_catalog(config.catalog)
        line = AggregationLine(config.aggregation, batches.ledger, catalog, notify=nowhere)
        try:
            await line.recover()
            assert line.packer is not None
            assert line.packer.current is not None
            assert line.packer.current.id == empty.id  # filled on, not left open and empty for good
            assert line.case_labels.waiting == 1  # the full one waits for a label, its old one in doubt
        finally:
            line.close()


@pytest.mark.timeout(300)
async def test_sigkilled_at_random_moments_the_line_loses_nothing_and_finishes_its_batch(tmp_path):
    state = tmp_path / "state"
    result = await run_campaign(state, kills=11, seed=20270401, units=200)

    assert len(result.kills) >= 10, [k.phase for k in result.kills]
    for kill in result.kills:
        assert kill.violations == [], f"after kill {kill.index} ({kill.phase}, {kill.trigger}): {kill.violations}"
        assert kill.checks >= 12
    assert result.final_problems == []
    # The first kill always lands while printing, with serials in the printer: the restart puts them in doubt.
    first = result.kills[0]
    assert first.phase == "printing"
    assert first.in_doubt_at_restart
    assert result.kills[-1].phase == "end"
    summary = result.summary
    assert summary["state"] == "closed"
    assert summary["events"] == summary["stored_upstream"] > 0

    # The checks catch what they claim to: each breakage of a copy is found by its own check.
    broken = tmp_path / "broken"
    shutil.copytree(state, broken)
    log = broken / UPSTREAM_DIR / EVENTS_FILE
    first_event = log.read_bytes().splitlines(keepends=True)[0]
    with log.open("ab") as out:
        out.write(first_event.replace(b'"captureID": "job-', b'"captureID": "job-9') + json.dumps(
            {"capture": f"job-9{json.loads(first_event)['captureID'][4:]}", "events": 1}).encode() + b"\n")
    conn = sqlite3.connect(broken / "lineside.db")
    try:
        conn.execute("DROP TRIGGER audit_log_append_only_update")
        conn.execute("UPDATE audit_log SET actor = 'mallory' WHERE id = 1")
        serial_id = conn.execute("SELECT min(id) FROM serial WHERE state = ?", (int(SerialState.REJECTED),)
                                 ).fetchone()[0]
        transition = conn.execute(
            "INSERT INTO transition (at, batch_id, to_state, count, reason) VALUES ('2026-12-01T00:00:00Z', 1, ?, 1,"
            " 'printed again')", (int(SerialState.SENT),)).lastrowid
        conn.execute("INSERT INTO serial_history (serial_id, transition_id, from_state) VALUES (?, ?, ?)",
                     (serial_id, transition, int(SerialState.REJECTED)))
        conn.execute("UPDATE serial SET state = ? WHERE id = ?", (int(SerialState.SENT), serial_id))
        conn.commit()
    finally:
        conn.close()
    _, violations, _, _ = await check_store(broken)
    found = {text.split(":", 1)[0] for text in violations}
    assert {"no event stored upstream twice", "audit trail verifies (invariant 7)",
            "every serial in one state, reached by legal moves (invariant 2)",
            "no serial sent to a printer twice (invariant 1)"} <= found, violations
