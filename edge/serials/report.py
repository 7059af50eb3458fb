"""The batch reconciliation as a readable, self-contained HTML page (no scripts, no external resources)."""

from __future__ import annotations

from html import escape
from typing import Any

from edge.serials.states import SerialState

_STYLE = """
body { font: 15px/1.45 system-ui, sans-serif; margin: 2rem auto; max-width: 52rem; color: #111; }
h1 { font-size: 1.4rem; margin-bottom: .2rem; }
table { border-collapse: collapse; margin: 1rem 0; min-width: 28rem; }
th, td { border: 1px solid #999; padding: .3rem .7rem; text-align: left; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
.ok { color: #075e07; font-weight: bold; }
.bad { color: #a40000; font-weight: bold; }
.eq { font-family: ui-monospace, monospace; }
@media print { body { margin: 0; } }
"""

_BATCH_FIELDS = (
    ("Work order", "work_order"),
    ("Product", "product"),
    ("GTIN", "gtin"),
    ("Lot", "lot"),
    ("Expiry (YYMMDD)", "expiry"),
    ("Market", "market"),
    ("Line", "line"),
    ("Quantity ordered", "quantity"),
    ("Batch state", "state"),
)


def render_html(report: dict[str, Any]) -> str:
    """Return the reconciliation report (from ops.reconciliation or a frozen close report) as an HTML page."""
    batch = report["batch"]
    title = f"Reconciliation of batch {batch['id']} ({batch['work_order']}, lot {batch['lot']})"
    rows = "".join(
        f"<tr><th>{escape(label)}</th><td>{escape(str(batch.get(key, '')))}</td></tr>" for label, key in _BATCH_FIELDS
    )
    counts = report["counts"]
    states = "".join(
        f"<tr><td>{escape(state.label)}</td><td class=n>{counts.get(state.label, 0):,}</td></tr>"
        for state in SerialState
    )
    verdict = (
        '<p class="ok">Balanced: every serial allocated to the batch is accounted for.</p>'
        if report["balanced"]
        else '<p class="bad">Not balanced: the batch cannot be closed.</p>'
    )
    blocking = "".join(f"<li>{escape(item)}</li>" for item in report.get("blocking", []))
    closed = ""
    if "closed_at" in report:
        who = report.get("closed_by") or "not recorded"
        closed = f"<p>Closed {escape(str(report['closed_at']))} by {escape(str(who))}.</p>"
    returned_pool = report.get("returned_to_pool", 0)
    pool_note = f"<p>{returned_pool:,} returned serials went back to the pool.</p>" if returned_pool else ""
    return (
        "<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8>"
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head><body>"
        f"<h1>{escape(title)}</h1>{closed}"
        f"<table>{rows}</table>"
        f'<p class="eq">{escape(report["equation"])}</p>{verdict}'
        + (f"<ul>{blocking}</ul>" if blocking else "")
        + f"<h2>Serials by state</h2><table><tr><th>State</th><th>Serials</th></tr>{states}"
        f"<tr><th>allocated</th><td class=n>{report['allocated']:,}</td></tr></table>{pool_note}"
        "</body></html>\n"
    )
