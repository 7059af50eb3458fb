"""What one printer prints for a batch: the product's template for that printer turned into print records."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

from drivers.printer.base import FIELD_SOURCES, PrintRecord
from edge.errors import BatchError
from edge.gs1.element import build, build_hri

if TYPE_CHECKING:
    import sqlite3
    from collections.abc import Mapping

    from edge.products.models import PrintTemplate, Product
    from edge.serials.ops import BatchRow

SERIAL_AI = "21"


@dataclass(frozen=True, slots=True)
class PrintPlan:
    """How the serials of one batch become records for one printer."""

    batch: BatchRow
    template: PrintTemplate
    fixed: dict[str, str]
    """Every AI value of the code but the serial: GTIN, lot, dates, the product's extra AIs."""
    fields: tuple[tuple[str, str], ...]
    """Printer field name → its source ("code", "serial", "hri" or an AI)."""

    def record(self, serial_id: int, serial: str, code: bytes | None) -> PrintRecord:
        """Return the record that prints this serial (a complete code from upstream is printed as given)."""
        values = {**self.fixed, SERIAL_AI: serial}
        pairs = [(ai, values[ai]) for ai in self.template.ais]
        element = code.decode("latin-1") if code is not None else build(pairs, check=False)
        out = []
        for name, source in self.fields:
            if source == "code":
                out.append((name, element))
            elif source == "serial":
                out.append((name, serial))
            elif source == "hri":
                out.append((name, build_hri(pairs, check=False)))
            else:
                out.append((name, values[source]))
        return PrintRecord(serial_id, tuple(out))


def plan_for(
    device_id: str, batch: BatchRow, product: Product, order: Mapping[str, object], fields: Mapping[str, str]
) -> PrintPlan:
    """Return how device prints the batch; BatchError says why it cannot (no template, an AI without a value)."""
    template = product.templates.get(device_id)
    if template is None:
        known = ", ".join(sorted(product.templates)) or "none"
        raise BatchError(f'product "{product.id}" has no print template for printer {device_id} (templates: {known})')
    if template.level != "unit":
        raise BatchError(f"printer {device_id} prints {template.level} labels for {product.id}: aggregation feeds it")
    fixed: dict[str, str] = {"01": batch.gtin, "10": batch.lot, "17": batch.expiry, **dict(product.extra_ais)}
    manufactured = order.get("manufactured")
    if isinstance(manufactured, str):
        fixed["11"] = manufactured
    missing = [ai for ai in template.ais if ai != SERIAL_AI and ai not in fixed]
    if missing:
        raise BatchError(
            f"{batch.name}: the template for {device_id} prints AI {', '.join(missing)}, which has no value"
        )
    unknown = [s for s in fields.values() if s not in FIELD_SOURCES and s != SERIAL_AI and s not in fixed]
    if unknown:
        raise BatchError(
            f"printer {device_id}: fields carry AI {', '.join(unknown)}, which {batch.name} has no value for"
        )
    return PrintPlan(batch, template, fixed, tuple(fields.items()))


def order_of(order_json: str) -> dict[str, object]:
    """Return a batch's stored work order as data."""
    data = json.loads(order_json)
    if not isinstance(data, dict):
        raise BatchError("a stored work order is not a mapping")
    return data


@dataclass(frozen=True, slots=True)
class BatchDocuments:
    """A store read: the batch's product snapshot and work order, as stored (JSON text)."""

    batch_id: int

    def __call__(self, conn: sqlite3.Connection) -> tuple[str, str]:
        row = conn.execute("SELECT product_json, order_json FROM batch WHERE id = ?", (self.batch_id,)).fetchone()
        if row is None:
            raise BatchError(f"batch {self.batch_id} is gone")
        return str(row[0]), str(row[1])
