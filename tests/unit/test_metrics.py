"""Prometheus metrics: the text exposition format, the histogram, and what the line's scrape shows."""

from __future__ import annotations

import math
import re
import sqlite3
from collections import Counter
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from edge import __version__
from edge.control.packml import State, UnitMode
from edge.errors import StoreError
from edge.line.inspection import InspectionCounts
from edge.line.verdict import RejectReason
from edge.metrics import (
    CONTENT_TYPE,
    VERDICT_LATENCY_BUCKETS_S,
    Exposition,
    Histogram,
    LineMetrics,
    _backlog,
    add_metrics_route,
)
from edge.store import Store
from edge.supervisor import DeviceStatus, LinkState

# One line of the text format: a sample name, optional labels, a value (Prometheus's own grammar, simplified to
# what a well-formed exposition holds).
NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL = r'[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\["\\n])*"'
SAMPLE = re.compile(rf"^({NAME})(?:\{{({LABEL}(?:,{LABEL})*)?\}})? (\S+)$")
COMMENT = re.compile(rf"^# (HELP|TYPE) ({NAME}) (.*)$")


def parse(text: str) -> dict[str, Any]:
    """Check text is a valid exposition; return {family: {"type", "help", "samples": [(name, labels, value)]}}."""
    assert text.endswith("\n")
    families: dict[str, dict[str, Any]] = {}
    current = None
    for line in text.splitlines():
        comment = COMMENT.match(line)
        if comment:
            kind, name, rest = comment.groups()
            family = families.setdefault(name, {"samples": []})
            assert kind.lower() not in family, f"{kind} twice for {name}"
            family[kind.lower()] = rest
            current = name
            continue
        sample = SAMPLE.match(line)
        assert sample, f"not a sample line: {line!r}"
        name, labels, value = sample.groups()
        assert current is not None, f"{name} before any HELP or TYPE"
        assert name.startswith(current), f"{name} outside its family"
        pairs = dict(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"', labels or ""))
        families[current]["samples"].append((name, pairs, float(value)))
    for name, family in families.items():
        assert family.get("type") in {"counter", "gauge", "histogram"}, name
        assert family.get("help"), name
    return families


def values(families: dict[str, Any], family: str, key: str | None = None) -> dict[str | None, float]:
    """Map a family's samples by one label's value (None: the single sample)."""
    return {labels.get(key) if key else None: value for _, labels, value in families[family]["samples"]}


def test_histogram_counts_cumulatively_with_inclusive_upper_bounds():
    histogram = Histogram((0.01, 0.02, 0.05))
    for value in (0.001, 0.01, 0.015, 0.02, 0.5, math.nan):
        histogram.observe(value)
    assert histogram.cumulative() == [(0.01, 2), (0.02, 4), (0.05, 4), (math.inf, 5)]
    assert histogram.count == 5  # NaN is not counted
    assert histogram.sum == pytest.approx(0.546)


@pytest.mark.parametrize("bounds", [(), (0.2, 0.1), (0.1, 0.1), (0.1, math.inf)])
def test_histogram_refuses_bounds_that_are_not_finite_and_increasing(bounds):
    with pytest.raises(ValueError, match="increasing"):
        Histogram(bounds)


def test_exposition_escapes_labels_and_help_and_writes_numbers_as_prometheus_reads_them():
    out = Exposition({"line": 'l"1'})
    out.family("x_total", "counter", "back\\slash and\nnewline")
    out.sample("x_total", 3, {"reason": 'a\\b\n"c"'})
    out.family("y", "gauge", "numbers")
    out.sample("y", 0.25)
    out.sample("y", True, {"k": "bool"})
    out.sample("y", math.inf, {"k": "inf"})
    out.sample("y", -math.inf, {"k": "-inf"})
    out.sample("y", math.nan, {"k": "nan"})
    out.sample("y", 1e-9, {"k": "small"})
    text = out.text()
    assert text.splitlines()[:3] == [
        "# HELP x_total back\\\\slash and\\nnewline",
        "# TYPE x_total counter",
        'x_total{line="l\\"1",reason="a\\\\b\\n\\"c\\""} 3',
    ]
    assert 'y{line="l\\"1"} 0.25' in text
    assert 'y{line="l\\"1",k="bool"} 1' in text
    assert 'y{line="l\\"1",k="inf"} +Inf' in text
    assert 'y{line="l\\"1",k="-inf"} -Inf' in text
    assert 'y{line="l\\"1",k="nan"} NaN' in text
    assert 'y{line="l\\"1",k="small"} 1e-09' in text
    parsed = parse(text)
    assert parsed["x_total"]["samples"][0][1]["reason"] == 'a\\\\b\\n\\"c\\"'  # still escaped, as on the wire
    with pytest.raises(ValueError, match="twice"):
        out.family("y", "gauge", "again")


def test_a_histogram_family_has_buckets_sum_and_count():
    histogram = Histogram((0.25, 0.5))
    histogram.observe(0.125)
    histogram.observe(0.75)
    out = Exposition()
    out.histogram("lat_seconds", "latency", histogram)
    assert out.text().splitlines() == [
        "# HELP lat_seconds latency",
        "# TYPE lat_seconds histogram",
        'lat_seconds_bucket{le="0.25"} 1',
        'lat_seconds_bucket{le="0.5"} 1',
        'lat_seconds_bucket{le="+Inf"} 2',
        "lat_seconds_sum 0.875",
        "lat_seconds_count 2",
    ]


# -- the line's scrape ------------------------------------------------------------------------------


@dataclass
class FakeControl:
    state: State = State.EXECUTE
    mode: UnitMode = UnitMode.PRODUCTION

    def status(self) -> dict[str, Any]:
        return {
            "counters": {"produced": 120, "good": 117, "rejected": {"NO_READ": 3}, "rate_per_minute": 312.5},
            "alarms": [{"id": 1}, {"id": 2}],
            "unacknowledged_alarms": 1,
        }


@dataclass
class FakeInspection:
    counts: InspectionCounts = field(default_factory=lambda: InspectionCounts(
        inspected=120, good=117, rejected=Counter({"NO_READ": 2, "LOW_GRADE": 1}), confirmed_rejects=3))
    latency: Histogram = field(default_factory=lambda: Histogram(VERDICT_LATENCY_BUCKETS_S))


class ClosedStore:
    """A store whose reads fail, as a closed or broken one does."""

    async def read(self, fn):
        raise StoreError("the store is closed")


@pytest.fixture
async def store(tmp_path):
    """A real store; rows are added through a plain connection (foreign keys off: no batch rows needed)."""
    opened = Store.open(tmp_path, group_window_s=0)
    async with opened:
        yield opened


def raw(store: Store) -> sqlite3.Connection:
    return sqlite3.connect(store.path, isolation_level=None)


def add_message(conn: sqlite3.Connection, target: str, seq: int, state: str) -> None:
    conn.execute(
        "INSERT INTO epcis_message (target, batch_id, seq, first_outbox, last_outbox, state, created_at, updated_at)"
        " VALUES (?, 1, ?, 1, 1, ?, 't', 't')", (target, seq, state))


def source(**overrides: Any) -> SimpleNamespace:
    base: dict[str, Any] = {"config": SimpleNamespace(line=SimpleNamespace(id="line-1")), "control": None,
                            "inspection": None, "supervisors": [], "store": None}
    return SimpleNamespace(**{**base, **overrides})


async def test_a_daemon_still_starting_shows_only_what_exists():
    families = parse(await LineMetrics(source()).render())
    assert set(families) == {"lineside_info"}
    assert families["lineside_info"]["samples"] == [("lineside_info", {"line": "line-1", "version": __version__}, 1)]


async def test_the_scrape_shows_state_counters_latency_devices_and_backlog(store):
    conn = raw(store)
    conn.executemany("INSERT INTO epcis_target (target, since) VALUES (?, 't')", [("repo",), ("idle",)])
    for seq, state in enumerate(["delivered", "delivered", "pending", "pending", "delivering", "failed"], 1):
        add_message(conn, "repo", seq, state)
    add_message(conn, "unregistered", 1, "pending")  # counted though its target row is missing
    conn.close()
    inspection = FakeInspection()
    for seconds in (0.004, 0.012, 0.012, 0.3):
        inspection.latency.observe(seconds)
    online, offline = DeviceStatus("printer-1", LinkState.ONLINE, connects=2, failures=1), DeviceStatus("plc-1")
    daemon = source(control=FakeControl(), inspection=inspection, store=store,
                    supervisors=[SimpleNamespace(status=online), SimpleNamespace(status=offline)])

    families = parse(await LineMetrics(daemon).render())

    assert all(labels["line"] == "line-1" for f in families.values() for _, labels, _ in f["samples"])
    states = values(families, "lineside_packml_state", "state")
    assert states["Execute"] == 1
    assert sum(states.values()) == 1
    assert set(states) == {s.title for s in State if s is not State.UNDEFINED}
    assert values(families, "lineside_packml_state_number") == {None: 6}
    assert values(families, "lineside_packml_unit_mode") == {None: 1}
    assert values(families, "lineside_produced_total") == {None: 120}
    assert values(families, "lineside_line_rate_per_minute") == {None: 312.5}
    assert values(families, "lineside_alarms", "acknowledged") == {"false": 1, "true": 1}
    assert values(families, "lineside_verdicts_total", "verdict") == {"good": 117, "rejected": 3}
    rejects = values(families, "lineside_rejects_total", "reason")
    assert set(rejects) == {r.value for r in RejectReason}  # every reason from the start
    assert (rejects["NO_READ"], rejects["LOW_GRADE"], rejects["DUPLICATE"]) == (2, 1, 0)
    assert families["lineside_rejects_total"]["type"] == "counter"
    assert values(families, "lineside_confirmed_rejects_total") == {None: 3}

    latency = families["lineside_verdict_latency_seconds"]
    assert latency["type"] == "histogram"
    buckets = {labels["le"]: value for name, labels, value in latency["samples"] if name.endswith("_bucket")}
    assert list(buckets) == [*(repr(b) for b in VERDICT_LATENCY_BUCKETS_S), "+Inf"]
    assert (buckets["0.005"], buckets["0.015"], buckets["0.2"], buckets["+Inf"]) == (1, 3, 3, 4)
    assert list(buckets.values()) == sorted(buckets.values())  # cumulative
    sums = {name: value for name, _, value in latency["samples"] if not name.endswith("_bucket")}
    assert sums == {"lineside_verdict_latency_seconds_sum": pytest.approx(0.328),
                    "lineside_verdict_latency_seconds_count": 4}

    assert values(families, "lineside_device_up", "device") == {"printer-1": 1, "plc-1": 0}
    assert values(families, "lineside_device_connects_total", "device") == {"printer-1": 2, "plc-1": 0}
    assert values(families, "lineside_device_failures_total", "device") == {"printer-1": 1, "plc-1": 0}

    backlog = {(labels["target"], labels["state"]): value
               for _, labels, value in families["lineside_outbox_backlog_messages"]["samples"]}
    assert backlog == {
        ("idle", "pending"): 0, ("idle", "delivering"): 0, ("idle", "failed"): 0,
        ("repo", "pending"): 2, ("repo", "delivering"): 1, ("repo", "failed"): 1,
        ("unregistered", "pending"): 1, ("unregistered", "delivering"): 0, ("unregistered", "failed"): 0,
    }


async def test_a_store_that_cannot_be_read_leaves_the_backlog_out_and_the_rest_in():
    families = parse(await LineMetrics(source(control=FakeControl(), store=ClosedStore())).render())
    assert "lineside_outbox_backlog_messages" not in families
    assert "lineside_packml_state" in families


async def test_the_backlog_is_counted_from_the_queue_index_and_empty_without_targets(store):
    conn = raw(store)
    try:
        plan = " ".join(row[-1] for row in conn.execute(
            "EXPLAIN QUERY PLAN SELECT target, state, count(*) FROM epcis_message WHERE state <> 'delivered'"
            " GROUP BY target, state"))
        assert "epcis_message_queue" in plan
        assert _backlog(conn) == {}
    finally:
        conn.close()


async def test_the_route_serves_the_text_format_uncached():
    app = web.Application()
    add_metrics_route(app, LineMetrics(source(control=FakeControl(state=State.HELD))))
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{site.port}/metrics") as response:
            assert response.status == 200
            assert response.headers["Content-Type"] == CONTENT_TYPE
            assert response.headers["Cache-Control"] == "no-store"
            families = parse(await response.text())
    finally:
        await runner.cleanup()
    assert values(families, "lineside_packml_state", "state")["Held"] == 1
