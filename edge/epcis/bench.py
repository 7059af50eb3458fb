"""Benchmark of `lineside bench epcis`: a 1,000,000-unit batch with its cases and pallets as one EPCIS document.

The batch is made through the store's own code (edge.serials.ops and edge.aggregation.ops on a plain sqlite3
connection, thousands of changes per transaction), so its outbox rows are exactly what the line writes: serials
drawn for the printer 50 at a time, then one verdict per move as the camera gives them (one commissioning event
per unit, the worst case; one unit in REJECT_EVERY rejected), units packed 10 to a case as each case fills, each
closed case put on a pallet of 40, the last case and pallet closed short by an operator; then completed, closed
and its EPCIS context fixed, as delivery does the first time it renders a batch.

Each export runs in a child process (``python -m edge.epcis.bench export``) so that its peak memory (VmHWM) is
its own, and writes a file on disk, the way `lineside epcis export -o FILE` does: open the store read-only, then
the batch market's profile (EU FMD: EPCIS 2.0 JSON-LD), header, events rendered from the outbox with their GS1
event hash IDs, the document streamed through a 1 MiB buffer and fsynced. The headline times the export itself;
opening the store (its quick_check) is reported beside it. The same batch is also exported as EPCIS 1.2 XML (the
US market's default). The baseline, in the same run, renders the same events, builds the whole document as a
Python dict and writes ``json.dumps`` of it, on a batch of BASELINE_UNITS units of the same shape; our streaming
export of that batch is measured too, so the two compare like for like.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal

from edge.serials.bench_million import BENCH_CAMERA, BENCH_GTIN, BENCH_PRINTER, peak_rss_mb, random_plan

if TYPE_CHECKING:
    import sqlite3
    from collections.abc import Callable, Sequence
    from typing import BinaryIO

    from edge.epcis.model import EpcisEvent
    from edge.epcis.profiles import PartnerProfile
    from edge.serials.ops import Move

__all__ = [
    "BASELINE_UNITS",
    "DEFAULT_UNITS",
    "TARGET_PEAK_MB",
    "TARGET_S",
    "Built",
    "bench_epcis",
    "build_batch",
    "format_text",
]

TARGET_S: Final = 20.0
"""Most seconds the export of a 1,000,000-unit batch may take."""
TARGET_PEAK_MB: Final = 150.0
"""Most peak resident memory the export process may reach, in MB."""
DEFAULT_UNITS: Final = 1_000_000
BASELINE_UNITS: Final = 100_000
"""Units of the batch the in-memory baseline exports (a million would take it past a gigabyte)."""
CASE_UNITS: Final = 10
PALLET_CASES: Final = 40
REJECT_EVERY: Final = 33
"""One unit in this many is rejected by the camera (3 %), so that the last case of most sizes is short."""
FEED_GROUP: Final = 50
"""Serials drawn for the printer per change (and acknowledged as printed together: not reported upstream)."""
UNIT_INTERVAL_US: Final = 20_000
"""Microseconds between verdicts on the simulated clock: 3,000 units a minute, the line rate of DESIGN.md."""
CHUNK_UNITS: Final = 5_000
"""Units made per transaction while building: thousands of changes per COMMIT, as group commit does."""
BUILD_CACHE_KIB: Final = 256 * 1024
START: Final = datetime(2026, 11, 25, 5, 0, tzinfo=UTC)
WORK_ORDER: Final = "BENCH-EPCIS"
LINE_ID: Final = "bench-line"
MARKET: Final = "eu-fmd"
XML_MARKET: Final = "us-dscsa"
"""The market whose default profile is EPCIS 1.2 XML: the XML export uses it on the same batch."""
# The line's EPCIS context (company prefix 9506000 of the benchmark GTIN): where, which zone, which site.
READ_POINT: Final = "urn:epc:id:sgln:9506000.00003.0"
BIZ_LOCATION: Final = "urn:epc:id:sgln:9506000.00000.0"
TIME_ZONE: Final = "Europe/Berlin"
SITE_GLN: Final = "9506000000008"
PRODUCT: Final[dict[str, Any]] = {
    "id": "bench-product", "name": "Benchmark 10 mg tablets", "company_prefix_length": 7, "sscc_extension_digit": 0,
    "hierarchy": [{"level": "case", "contains": CASE_UNITS}, {"level": "pallet", "contains": PALLET_CASES}],
}
CHILD_TIMEOUT_S: Final = 1_800.0
"""A child export may take this long before it is given up (the in-memory baseline at a million could)."""
EXPORT_EVENTS_LIMIT: Final = 10_000_000
"""As `lineside epcis export`: one document however long the batch."""
WRITE_BUFFER: Final = 1 << 20

Mode = Literal["json-ld", "xml-1.2", "in-memory"]
MODES: Final[tuple[Mode, ...]] = ("json-ld", "xml-1.2", "in-memory")


# -- building the batch ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Built:
    """What build_batch made: the batch, its parts, the events an export must hold, seconds and size."""

    batch_id: int
    units: int
    commissioned: int
    rejected: int
    cases: int
    pallets: int
    outbox_rows: int
    expected_events: int
    build_s: float
    db_mb: float


class _SimClock:
    """The line's clock in the benchmark: moves UNIT_INTERVAL per verdict, so the batch spans hours like a real one."""

    __slots__ = ("_micros", "_prefix", "_second")

    def __init__(self) -> None:
        self._micros = 0
        self._second = -1
        self._prefix = ""

    def tick(self) -> None:
        self._micros += UNIT_INTERVAL_US

    def now(self) -> str:
        """Return the time as the store writes it (edge.store.runs.iso_utc: UTC, microseconds, Z)."""
        second, micro = divmod(self._micros, 1_000_000)
        if second != self._second:  # formatting the whole date once a second keeps the build's clock cheap
            self._second = second
            self._prefix = (START + timedelta(seconds=second)).strftime("%Y-%m-%dT%H:%M:%S")
        return f"{self._prefix}.{micro:06d}Z"


def _transaction(conn: sqlite3.Connection, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:  # noqa: ANN401 - passes fn's result on
    """Run fn(conn, ...) in one transaction, undone whole when it raises."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        result = fn(conn, *args, **kwargs)
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return result


class _Line:
    """The packing end of the line: units into cases of CASE_UNITS, cases onto pallets of PALLET_CASES."""

    def __init__(self, conn: sqlite3.Connection, batch_id: int, clock: _SimClock) -> None:
        self.conn = conn
        self.batch_id = batch_id
        self.clock = clock
        self.pending: list[int] = []
        self.pallet: int | None = None
        self.on_pallet = 0
        self.cases = 0
        self.pallets = 0

    def unit(self, serial_id: int) -> None:
        """Take one commissioned unit; pack a case when it is full."""
        self.pending.append(serial_id)
        if len(self.pending) == CASE_UNITS:
            self._case(None)

    def finish(self) -> None:
        """Close the last case and pallet short, as an operator does at the end of a batch."""
        if self.pending:
            self._case("end of batch")
        if self.pallet is not None:
            self._close_pallet("end of batch")

    def _case(self, short: str | None) -> None:
        from edge.aggregation import ops as agg  # noqa: PLC0415 - keeps `lineside --help` fast

        conn, now = self.conn, self.clock.now()
        case = agg.open_container(conn, self.batch_id, "case", now=now, station="case-packer")
        agg.pack(conn, case, serial_ids=self.pending, now=now, station="case-packer")
        agg.close_container(conn, case, now=now, station="case-packer", operator="op" if short else None,
                            partial_reason=short)
        self.pending = []
        self.cases += 1
        if self.pallet is None:
            self.pallet = agg.open_container(conn, self.batch_id, "pallet", now=now, station="palletiser")
            self.pallets += 1
        agg.pack(conn, self.pallet, containers=[case], now=now, station="palletiser")
        self.on_pallet += 1
        if self.on_pallet == PALLET_CASES:
            self._close_pallet(None)

    def _close_pallet(self, short: str | None) -> None:
        from edge.aggregation import ops as agg  # noqa: PLC0415 - keeps `lineside --help` fast

        if self.pallet is None:
            return
        agg.close_container(self.conn, self.pallet, now=self.clock.now(), station="palletiser",
                            operator="op" if short else None, partial_reason=short)
        self.pallet, self.on_pallet = None, 0


def build_batch(state_dir: Path, units: int, *, work_order: str = WORK_ORDER) -> Built:
    """Make, close and fix the EPCIS context of a batch of units in a new store under state_dir; return it."""
    from edge.serials import ops as serial_ops  # noqa: PLC0415 - keeps `lineside --help` fast
    from edge.serials.ops import NewBatch  # noqa: PLC0415
    from edge.serials.states import BatchState  # noqa: PLC0415
    from edge.store import Store  # noqa: PLC0415
    from edge.store.connection import configure_writer, connect  # noqa: PLC0415
    from edge.store.store import DB_NAME  # noqa: PLC0415
    from edge.sync import outbox  # noqa: PLC0415
    from edge.sync.delivery import LineFacts  # noqa: PLC0415

    if units < 1:
        raise ValueError(f"a batch needs at least 1 unit, not {units}")
    Store.open(state_dir).close()  # creates and migrates the database, then lets go of its lock
    db = state_dir / DB_NAME
    conn = connect(db, readonly=False)
    try:
        configure_writer(conn, db)  # WAL, synchronous=FULL: the store's own durability
        # A bigger page cache than the daemon's: the build touches a million serials' index pages again and again,
        # and only the build (not the exports measured) has it.
        conn.execute(f"PRAGMA cache_size = -{BUILD_CACHE_KIB}")
        started = time.perf_counter()
        clock = _SimClock()
        new = NewBatch(line_id=LINE_ID, work_order=work_order, product_id=str(PRODUCT["id"]), gtin=BENCH_GTIN,
                       lot="BENCH-LOT-1", expiry="301231", quantity=units, market=MARKET, serial_source="local",
                       product=dict(PRODUCT), order={})
        batch_id: int = _transaction(conn, serial_ops.create_batch, new, now=clock.now(), operator="mes")
        plan = random_plan(units)
        while _transaction(conn, serial_ops.release_batch, batch_id, plan, now=clock.now(), operator="supervisor"):
            pass
        _transaction(conn, serial_ops.move_batch, batch_id, BatchState.RUNNING, now=clock.now(), operator="op",
                     reason="start")
        line = _Line(conn, batch_id, clock)
        judged = [0, 0]  # commissioned, rejected
        while judged[0] + judged[1] < units:
            _transaction(conn, _make_units, batch_id, min(CHUNK_UNITS, units - sum(judged)), clock=clock, line=line,
                         judged=judged)
        _transaction(conn, lambda _conn: line.finish())
        _transaction(conn, serial_ops.complete_batch, batch_id, now=clock.now(), operator="op")
        _transaction(conn, serial_ops.close_batch, batch_id, now=clock.now(), operator="op", return_to_pool=False)
        facts = LineFacts(LINE_ID, READ_POINT, BIZ_LOCATION, TIME_ZONE, SITE_GLN)
        _transaction(conn, outbox.fixed_context, batch_id, facts.proposal(work_order), clock.now())
        build_s = time.perf_counter() - started
        outbox_rows = int(conn.execute("SELECT count(*) FROM epcis_outbox WHERE batch_id = ?", (batch_id,))
                          .fetchone()[0])
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # the exports read the database file, not a long WAL
    finally:
        conn.close()
    size = sum(path.stat().st_size for path in (db, db.with_name(DB_NAME + "-wal")) if path.exists())
    # One event per verdict (commissioning or decommissioning), one per case packed and one per case on a pallet.
    expected = judged[0] + judged[1] + 2 * line.cases
    return Built(batch_id, units, judged[0], judged[1], line.cases, line.pallets, outbox_rows, expected,
                 round(build_s, 2), round(size / 1e6, 1))


def _make_units(
    conn: sqlite3.Connection, batch_id: int, count: int, *, clock: _SimClock, line: _Line, judged: list[int]
) -> None:
    """Print count units, FEED_GROUP drawn at a time, give each its own verdict and pack the good ones."""
    from edge.serials import ops as serial_ops  # noqa: PLC0415 - keeps `lineside --help` fast
    from edge.serials.ops import Move  # noqa: PLC0415
    from edge.serials.states import SerialState as S  # noqa: PLC0415

    made = 0
    while made < count:
        rows = serial_ops.next_to_print(conn, batch_id, min(FEED_GROUP, count - made), device=BENCH_PRINTER,
                                        now=clock.now())
        if not rows:
            raise RuntimeError(f"batch {batch_id} ran out of serials after {sum(judged):,} units")
        ids = [row[0] for row in rows]
        _apply(conn, [Move(ids, S.PRINTED, "printed", device=BENCH_PRINTER, batch_id=batch_id)], clock.now())
        for serial_id in ids:
            clock.tick()
            if (judged[0] + judged[1]) % REJECT_EVERY == REJECT_EVERY - 1:
                _apply(conn, [Move((serial_id,), S.REJECTED, "grade D", device=BENCH_CAMERA, batch_id=batch_id)],
                       clock.now())
                judged[1] += 1
            else:
                _apply(conn, [Move((serial_id,), S.COMMISSIONED, "verified", device=BENCH_CAMERA,
                                   batch_id=batch_id)], clock.now())
                judged[0] += 1
                line.unit(serial_id)
        made += len(ids)


def _apply(conn: sqlite3.Connection, moves: Sequence[Move], now: str) -> None:
    from edge.serials import ops as serial_ops  # noqa: PLC0415 - keeps `lineside --help` fast

    for outcome in serial_ops.apply_moves(conn, moves, now):
        if isinstance(outcome, Exception):
            raise outcome


# -- the exports (in the child process) -----------------------------------------------------------


def _profile(mode: Mode) -> PartnerProfile:
    """Return the profile `lineside epcis export` takes for the batch's market (the US one for XML 1.2)."""
    from edge.config.models import shipped_markets_dir  # noqa: PLC0415 - keeps `lineside --help` fast
    from edge.epcis.profiles import profile_from_market  # noqa: PLC0415
    from edge.markets.load import load_market  # noqa: PLC0415

    market = XML_MARKET if mode == "xml-1.2" else MARKET
    profile = profile_from_market(load_market(shipped_markets_dir() / f"{market}.yaml").epcis)
    return profile.model_copy(update={"max_events_per_document": EXPORT_EVENTS_LIMIT})


def _header_and_events(conn: sqlite3.Connection, batch_id: int, profile: PartnerProfile) -> tuple[Any, Any]:
    """Return the document header and the event iterator, as edge.epcis.cli._export_in makes them."""
    from edge.epcis.events import batch_events  # noqa: PLC0415 - keeps `lineside --help` fast
    from edge.epcis.model import DocumentHeader  # noqa: PLC0415
    from edge.store.runs import iso_utc  # noqa: PLC0415
    from edge.store.store import utc_now  # noqa: PLC0415
    from edge.sync import delivery, outbox  # noqa: PLC0415

    context = outbox.stored_context(conn, batch_id)
    if context is None:
        raise RuntimeError(f"batch {batch_id} has no fixed EPCIS context: build_batch fixes it")
    header = DocumentHeader(
        creation_date=utc_now(),
        sender_gln=context.get("site_gln"),
        instance_id=f"{context.get('line', 'line')}.export.{batch_id}.{iso_utc(utc_now())}",
        master_data=delivery.master_data(conn, batch_id) if profile.master_data else (),
    )
    return header, batch_events(conn, batch_id, delivery.event_context(context, profile))


def _stream(conn: sqlite3.Connection, batch_id: int, mode: Mode, out: BinaryIO) -> int:
    """Write the batch as one document, streamed; return the events written."""
    from edge.epcis.documents import write_document  # noqa: PLC0415 - keeps `lineside --help` fast

    profile = _profile(mode)
    header, events = _header_and_events(conn, batch_id, profile)
    return write_document(out, header, events, profile)


def _whole_in_memory(conn: sqlite3.Connection, batch_id: int, out: BinaryIO) -> int:
    """Write the baseline: every event as a dict in one document dict, then json.dumps of the whole, one write."""
    from edge.epcis.jsonld import CBVMDA_NS, CONTEXT_URL  # noqa: PLC0415 - keeps `lineside --help` fast

    profile = _profile("json-ld")
    header, events = _header_and_events(conn, batch_id, profile)
    event_list = [_event_dict(event) for event in events]
    document = {
        "@context": [CONTEXT_URL, {"cbvmda": CBVMDA_NS}],
        "type": "EPCISDocument",
        "schemaVersion": "2.0",
        "creationDate": header.creation_date.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "epcisBody": {"eventList": event_list},
    }
    out.write(json.dumps(document, separators=(",", ":")).encode())
    return len(event_list)


def _event_dict(event: EpcisEvent) -> dict[str, Any]:
    """Return one event as the JSON-LD binding writes it (the fields our writer writes, the same values)."""
    body: dict[str, Any] = {
        "type": event.type,
        "eventTime": event.event_time.isoformat(timespec="milliseconds"),
        "eventTimeZoneOffset": event.event_time_zone_offset,
    }
    if event.event_id is not None:
        body["eventID"] = event.event_id
    if event.type == "ObjectEvent":
        body["epcList"] = list(event.epc_list)
    else:
        if event.parent_id is not None:
            body["parentID"] = event.parent_id
        if event.child_epcs:
            body["childEPCs"] = list(event.child_epcs)
    body["action"] = event.action
    if event.biz_step is not None:
        body["bizStep"] = event.biz_step
    if event.disposition is not None:
        body["disposition"] = event.disposition
    if event.read_point is not None:
        body["readPoint"] = {"id": event.read_point}
    if event.biz_location is not None:
        body["bizLocation"] = {"id": event.biz_location}
    if event.biz_transactions:
        body["bizTransactionList"] = [{"type": kind, "bizTransaction": uri} for kind, uri in event.biz_transactions]
    if event.ilmd is not None:
        ilmd = {"cbvmda:lotNumber": event.ilmd.lot_number, "cbvmda:itemExpirationDate": event.ilmd.item_expiration_date}
        body["ilmd"] = {name: value for name, value in ilmd.items() if value is not None}
    return body


def _rss_mb() -> float:
    """Return this process's resident memory now (VmRSS), in MB; 0 where /proc is missing."""
    try:
        with Path("/proc/self/status").open(encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return 0.0


def run_export(state_dir: Path, batch_id: int, mode: Mode, path: Path) -> dict[str, Any]:
    """Open the store read-only, export the batch to path in mode (timed alone) and fsync; return the figures."""
    from edge.store import Store  # noqa: PLC0415 - keeps `lineside --help` fast

    # Import what the export uses before the clock starts: a long-running exporter has it loaded already.
    _profile(mode)
    for module in ("edge.epcis.documents", "edge.epcis.events", "edge.epcis.hashing", "edge.sync.delivery"):
        importlib.import_module(module)

    started = time.perf_counter()
    store = Store.open_readonly(state_dir)
    open_s = time.perf_counter() - started
    rss_before = _rss_mb()

    def export(conn: sqlite3.Connection) -> int:
        with path.open("wb", buffering=WRITE_BUFFER) as out:
            count = _whole_in_memory(conn, batch_id, out) if mode == "in-memory" else _stream(conn, batch_id, mode, out)
            out.flush()
            os.fsync(out.fileno())
        return count

    async def run() -> int:
        return await store.read(export)

    from edge.epcis.documents import export_collector  # noqa: PLC0415 - keeps `lineside --help` fast

    try:
        # As `lineside epcis export` runs it, the baseline too: both are this child process's only work.
        with export_collector():
            started = time.perf_counter()
            events = asyncio.run(run())
            export_s = time.perf_counter() - started
    finally:
        store.close()
    return {"mode": mode, "events": events, "export_s": round(export_s, 3), "open_s": round(open_s, 3),
            "rss_before_mb": rss_before, "peak_mb": peak_rss_mb()}


def _child(state_dir: Path, batch_id: int, mode: Mode, path: Path) -> dict[str, Any]:
    """Run run_export in a fresh Python process; return its figures with the file's size and the rates."""
    command = [sys.executable, "-m", "edge.epcis.bench", "export", "--state-dir", str(state_dir),
               "--batch", str(batch_id), "--mode", mode, "--out", str(path)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=CHILD_TIMEOUT_S, check=False)
    if done.returncode != 0:
        tail = "\n".join(done.stderr.strip().splitlines()[-5:])
        raise RuntimeError(f"the {mode} export failed (exit {done.returncode}): {tail}")
    result: dict[str, Any] = json.loads(done.stdout)
    size = path.stat().st_size
    path.unlink()
    result["bytes"] = size
    result["events_per_s"] = round(result["events"] / result["export_s"]) if result["export_s"] > 0 else None
    result["mb_per_s"] = round(size / 1e6 / result["export_s"], 1) if result["export_s"] > 0 else None
    return result


# -- the benchmark ----------------------------------------------------------------------------------


def bench_epcis(
    work_dir: Path, *, units: int = DEFAULT_UNITS, baseline_units: int = BASELINE_UNITS, xml: bool = True
) -> dict[str, Any]:
    """Build the batches under work_dir (empty), export them in child processes and return the JSON result.

    The baseline batch has min(baseline_units, units) units; when that is units, the big batch serves both.
    xml False skips the EPCIS 1.2 XML export of the big batch.
    """
    if units < 1 or baseline_units < 1:
        raise ValueError("units and baseline_units must be at least 1")
    small_units = min(baseline_units, units)
    big = build_batch(work_dir / "big", units)
    small = big if small_units == units else build_batch(work_dir / "small", small_units,
                                                         work_order=f"{WORK_ORDER}-SMALL")
    out = work_dir / "out"
    out.mkdir(exist_ok=True)
    small_dir = work_dir / ("big" if small is big else "small")
    streamed = _child(work_dir / "big", big.batch_id, "json-ld", out / "batch.jsonld")
    exports: dict[str, Any] = {"json_ld": streamed}
    if xml:
        exports["xml_1_2"] = _child(work_dir / "big", big.batch_id, "xml-1.2", out / "batch.xml")
    small_streamed = streamed if small is big else _child(small_dir, small.batch_id, "json-ld",
                                                          out / "small.jsonld")
    baseline = _child(small_dir, small.batch_id, "in-memory", out / "small-in-memory.json")
    scale = units / small_units
    grown = baseline["peak_mb"] - baseline["rss_before_mb"]
    details: dict[str, Any] = {
        "units": units,
        "batch": _built(big),
        "events": streamed["events"],
        "bytes": streamed["bytes"],
        "events_per_s": streamed["events_per_s"],
        "peak_mb": streamed["peak_mb"],
        "target_peak_mb": TARGET_PEAK_MB,
        "within_time_target": streamed["export_s"] <= TARGET_S,
        "within_memory_target": streamed["peak_mb"] <= TARGET_PEAK_MB,
        "build_s": big.build_s,
        "exports": exports,
        "baseline_batch": _built(small),
        "like_for_like": {
            "units": small_units,
            "streamed_json_ld": small_streamed,
            "whole_document_in_memory": baseline,
            "speedup": round(baseline["export_s"] / small_streamed["export_s"], 2)
            if small_streamed["export_s"] > 0 else None,
            "baseline_extrapolated_to_units": {
                "units": units,
                "export_s": round(baseline["export_s"] * scale, 1),
                # What the baseline held grows with the batch; what it started with does not.
                "peak_mb": round(baseline["rss_before_mb"] + grown * scale, 1),
            },
        },
        "python": sys.version.split()[0],
        "cpus": os.cpu_count(),
    }
    return {
        "headline": {
            "metric": "seconds to export a 1,000,000-unit batch (with cases and pallets) as one EPCIS 2.0 JSON-LD "
                      "document" if units == DEFAULT_UNITS else
                      f"seconds to export a {units:,}-unit batch (with cases and pallets) as one EPCIS 2.0 JSON-LD "
                      "document",
            "value": streamed["export_s"],
            "unit": "s",
            "target": TARGET_S,
            "peak_mb": streamed["peak_mb"],
            "target_peak_mb": TARGET_PEAK_MB,
        },
        "baseline": {
            "name": f"whole document built in memory, then json.dumps ({small_units:,} units)",
            "value": baseline["export_s"],
            "unit": "s",
            "peak_mb": baseline["peak_mb"],
            "measured": "in the same run",
        },
        "details": details,
    }


def _built(built: Built) -> dict[str, Any]:
    return asdict(built)


def format_text(result: dict[str, Any]) -> str:
    """Return the benchmark as text: the batch, one line per export, then the headline beside the baseline."""
    head, base, details = result["headline"], result["baseline"], result["details"]
    batch, like = details["batch"], details["like_for_like"]
    lines = [
        (f"batch: {batch['units']:,} units ({batch['commissioned']:,} commissioned, {batch['rejected']:,} rejected), "
         f"{batch['cases']:,} cases, {batch['pallets']:,} pallets; {batch['expected_events']:,} events; "
         f"built in {batch['build_s']:.1f} s, database {batch['db_mb']:,.0f} MB"),
        f"{'export':<48}{'units':>10}{'events':>11}{'seconds':>9}{'events/s':>10}{'MB':>8}{'peak MB':>9}",
    ]
    labels = {"json_ld": "streamed EPCIS 2.0 JSON-LD (headline)", "xml_1_2": "streamed EPCIS 1.2 XML"}
    rows = [(labels[name], batch["units"], figures) for name, figures in details["exports"].items()]
    rows += [("streamed EPCIS 2.0 JSON-LD", like["units"], like["streamed_json_ld"]),
             ("baseline: whole document in memory, json.dumps", like["units"], like["whole_document_in_memory"])]
    for label, units, figures in rows:
        lines.append(f"{label:<48}{units:>10,}{figures['events']:>11,}{figures['export_s']:>9.2f}"
                     f"{figures['events_per_s'] or 0:>10,}{figures['bytes'] / 1e6:>8.0f}{figures['peak_mb']:>9.0f}")
    extrapolated = like["baseline_extrapolated_to_units"]
    lines.append(f"baseline extrapolated to {extrapolated['units']:,} units: {extrapolated['export_s']:.0f} s, "
                 f"{extrapolated['peak_mb']:,.0f} MB peak")
    lines.append(f"{head['metric']}: {head['value']:.2f} {head['unit']} (target {head['target']:g}), "
                 f"peak {head['peak_mb']:.0f} MB (target {head['target_peak_mb']:g})")
    lines.append(f"baseline, {base['name']}: {base['value']:.2f} {base['unit']}, peak {base['peak_mb']:.0f} MB")
    return "\n".join(lines)


def run(units: int = DEFAULT_UNITS, *, xml: bool = True) -> dict[str, Any]:
    """Run bench_epcis in a temporary directory removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="lineside-bench-epcis-") as tmp:
        return bench_epcis(Path(tmp), units=units, xml=xml)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the child process: export one batch in one mode and print its figures as one JSON object."""
    parser = argparse.ArgumentParser(prog="python -m edge.epcis.bench", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    export = commands.add_parser("export", help="export one batch to a file and print the figures")
    export.add_argument("--state-dir", type=Path, required=True)
    export.add_argument("--batch", type=int, required=True)
    export.add_argument("--mode", choices=MODES, required=True)
    export.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    sys.stdout.write(json.dumps(run_export(args.state_dir, args.batch, args.mode, args.out)) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
