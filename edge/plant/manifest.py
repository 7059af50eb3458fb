"""Shipping manifests and the production confirmation for the ERP, read from the aggregation history.

A manifest shows containers as they stood right after one aggregation event (``as_of``): membership rows keep
the event that packed and the event that unpacked them, so later rework changes nothing already reported.
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from typing import TYPE_CHECKING, Any, Final

from edge.serials.states import SerialState

if TYPE_CHECKING:
    import sqlite3

MANIFEST_SCHEMA: Final = "lineside.shipping-manifest"
MANIFEST_VERSION: Final = 1
CSV_COLUMNS: Final = ("record", "work_order", "pallet_sscc", "case_sscc", "gtin", "lot", "expiry", "quantity",
                      "scrap_quantity")
"""The manifest CSV's columns, in order (docs/plant-messages.md); a new column means a new version."""

Item = tuple[str, str, str]
"""What a unit is, as the ERP books it: GTIN, lot, expiry (YYMMDD)."""

_MEMBERS_AS_OF: Final = (
    "SELECT m.serial_id, m.child_id FROM aggregation_member AS m WHERE m.parent_id = ? AND m.packed_event <= ?"
    " AND (m.unpacked_event IS NULL OR m.unpacked_event > ?) ORDER BY m.id"
)


def pallet_manifest(conn: sqlite3.Connection, batch_id: int, pallet_id: int, as_of: int) -> dict[str, Any]:
    """Return the manifest of one pallet as it stood right after aggregation event as_of."""
    pallet = _container(conn, pallet_id, as_of)
    return {
        "schema": MANIFEST_SCHEMA,
        "version": MANIFEST_VERSION,
        "scope": "pallet",
        "batch": _batch(conn, batch_id),
        "pallets": [pallet],
        "loose_cases": [],
        "totals": _totals([pallet], []),
        "production_confirmation": None,
    }


def batch_manifest(conn: sqlite3.Connection, batch_id: int, as_of: int) -> dict[str, Any]:
    """Return the batch's manifest as of aggregation event as_of (its close): pallets, loose cases, confirmation."""
    pallets = [_container(conn, cid, as_of) for cid in _top_level(conn, batch_id, "pallet", as_of)]
    loose = [_container(conn, cid, as_of) for cid in _top_level(conn, batch_id, "case", as_of)]
    return {
        "schema": MANIFEST_SCHEMA,
        "version": MANIFEST_VERSION,
        "scope": "batch",
        "batch": _batch(conn, batch_id),
        "pallets": [p for p in pallets if p["units"]],
        "loose_cases": [c for c in loose if c["units"]],
        "totals": _totals(pallets, loose),
        "production_confirmation": production_confirmation(conn, batch_id),
    }


def production_confirmation(conn: sqlite3.Connection, batch_id: int) -> dict[str, Any]:
    """Return the batch's good and scrap quantities: packs judged good, packs judged bad or destroyed.

    Serials decommissioned from in doubt (left in a printer's buffer, in flight at a crash) are counted apart:
    whether a pack carried them is unknown, so they are neither good nor scrap.
    """
    judged = {int(SerialState.REJECTED): 0, int(SerialState.DESTROYED): 0, int(SerialState.SAMPLED): 0}
    doubted = 0
    for state, from_doubt, count in conn.execute(
            "SELECT s.state, EXISTS (SELECT 1 FROM serial_history AS h WHERE h.serial_id = s.id AND h.from_state = ?),"
            " count(*) FROM serial AS s WHERE s.batch_id = ? AND s.state IN (?, ?, ?) GROUP BY 1, 2",
            (int(SerialState.IN_DOUBT), batch_id, *judged)):
        if from_doubt:
            doubted += int(count)
        else:
            judged[int(state)] += int(count)
    good = conn.execute("SELECT count(*) FROM serial WHERE batch_id = ? AND state = ?",
                        (batch_id, int(SerialState.COMMISSIONED))).fetchone()[0]
    rejected, destroyed = judged[int(SerialState.REJECTED)], judged[int(SerialState.DESTROYED)]
    return {
        "good_quantity": int(good),
        "scrap_quantity": rejected + destroyed,
        "rejected": rejected,
        "destroyed": destroyed,
        "sampled": judged[int(SerialState.SAMPLED)],
        "in_doubt_decommissioned": doubted,
        "unit": "EA",
    }


def manifest_csv(body: dict[str, Any]) -> str:
    """Return a manifest as CSV: a row per case (and per unit lot on a pallet), then the confirmation row."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    work_order = body["batch"]["work_order"]
    for pallet in body["pallets"]:
        _container_rows(writer, work_order, pallet["sscc"], pallet)
    for case in body["loose_cases"]:
        _container_rows(writer, work_order, "", case)
    confirmation = body.get("production_confirmation")
    if confirmation is not None:
        batch = body["batch"]
        writer.writerow(("production", work_order, "", "", batch["gtin"], batch["lot"], batch["expiry"],
                         confirmation["good_quantity"], confirmation["scrap_quantity"]))
    return out.getvalue()


def _container_rows(writer: Any, work_order: str, pallet_sscc: str, box: dict[str, Any]) -> None:  # noqa: ANN401 - csv writer
    if box["level"] == "case":
        for item in box["contents"]:
            writer.writerow(("case", work_order, pallet_sscc, box["sscc"], item["gtin"], item["lot"],
                             item["expiry"], item["quantity"], ""))
        return
    for case in box["cases"]:
        _container_rows(writer, work_order, pallet_sscc, case)
    for item in box["loose_units"]:
        writer.writerow(("unit", work_order, pallet_sscc, "", item["gtin"], item["lot"], item["expiry"],
                         item["quantity"], ""))


def _batch(conn: sqlite3.Connection, batch_id: int) -> dict[str, Any]:
    row = conn.execute("SELECT id, line_id, work_order, product_id, gtin, lot, expiry FROM batch WHERE id = ?",
                       (batch_id,)).fetchone()
    return dict(zip(("id", "line", "work_order", "product", "gtin", "lot", "expiry"), row, strict=True))


def _top_level(conn: sqlite3.Connection, batch_id: int, level: str, as_of: int) -> list[int]:
    """Return the batch's containers of level that were in no parent right after as_of, in opening order."""
    return [int(row[0]) for row in conn.execute(
        "SELECT c.id FROM container AS c WHERE c.batch_id = ? AND c.level = ? AND NOT EXISTS ("
        " SELECT 1 FROM aggregation_member AS m WHERE m.child_id = c.id AND m.packed_event <= ?"
        " AND (m.unpacked_event IS NULL OR m.unpacked_event > ?)) ORDER BY c.id",
        (batch_id, level, as_of, as_of))]


def _container(conn: sqlite3.Connection, container_id: int, as_of: int) -> dict[str, Any]:
    """Return a container with its child containers and unit counts by item, as they were right after as_of."""
    level, current = conn.execute("SELECT level, identifier FROM container WHERE id = ?", (container_id,)).fetchone()
    # A label voided later renamed the container: it shipped, as of then, under the identifier voided.
    renamed = conn.execute(
        "SELECT identifier FROM aggregation_event WHERE container_id = ? AND action = 'void_label' AND id > ?"
        " ORDER BY id LIMIT 1", (container_id, as_of)).fetchone()
    closed = conn.execute(
        "SELECT at, operator, reason FROM aggregation_event WHERE container_id = ? AND action = 'close' AND id <= ?"
        " ORDER BY id DESC LIMIT 1", (container_id, as_of)).fetchone()
    serial_ids: list[int] = []
    children: list[dict[str, Any]] = []
    for serial_id, child_id in conn.execute(_MEMBERS_AS_OF, (container_id, as_of, as_of)).fetchall():
        if serial_id is not None:
            serial_ids.append(int(serial_id))
        else:
            children.append(_container(conn, int(child_id), as_of))
    direct = _items(conn, serial_ids)
    contents: Counter[Item] = Counter(direct)
    for child in children:
        contents.update({(i["gtin"], i["lot"], i["expiry"]): i["quantity"] for i in child["contents"]})
    return {
        "sscc": renamed[0] if renamed is not None else current,
        "level": level,
        "closed_at": None if closed is None else closed[0],
        "closed_by": None if closed is None else closed[1],
        "cases": children,
        "loose_units": _listed(direct),
        "contents": _listed(contents),
        "units": sum(contents.values()),
    }


def _items(conn: sqlite3.Connection, serial_ids: list[int]) -> Counter[Item]:
    """Return how many of the serials are of each GTIN, lot and expiry (their batch's)."""
    found: Counter[Item] = Counter()
    for start in range(0, len(serial_ids), 500):  # SQLite's bound-parameter limit is far above 500
        chunk = serial_ids[start : start + 500]
        marks = ", ".join("?" * len(chunk))
        for gtin, lot, expiry, count in conn.execute(
            "SELECT s.gtin, b.lot, b.expiry, count(*) FROM serial AS s JOIN batch AS b ON b.id = s.batch_id"  # noqa: S608 - ? marks only
            f" WHERE s.id IN ({marks}) GROUP BY s.gtin, b.lot, b.expiry", chunk):
            found[(str(gtin), str(lot), str(expiry))] += int(count)
    return found


def _listed(counts: Counter[Item]) -> list[dict[str, Any]]:
    return [{"gtin": g, "lot": lot, "expiry": e, "quantity": n} for (g, lot, e), n in sorted(counts.items())]


def _totals(pallets: list[dict[str, Any]], loose: list[dict[str, Any]]) -> dict[str, int]:
    return {
        "pallets": sum(1 for p in pallets if p["units"]),
        "cases": sum(len(p["cases"]) for p in pallets) + sum(1 for c in loose if c["units"]),
        "units": sum(p["units"] for p in pallets) + sum(c["units"] for c in loose),
    }
