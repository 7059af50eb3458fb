"""A readable, self-contained HTML copy of a batch record, for QA who review on paper."""

from __future__ import annotations

import json
from html import escape
from typing import Any, Final

_STYLE: Final = (
    "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin-bottom:1.5em}"
    "th,td{border:1px solid #888;padding:2px 8px;text-align:left;vertical-align:top}th{background:#eee}</style>"
)


def batch_record_html(body: dict[str, Any]) -> str:
    """Return the batch record as one HTML page (no scripts, no external resources), printable as it is."""
    batch = body["batch"]
    title = f"Batch record {batch['work_order']} (lot {batch['lot']})"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{_e(title)}</title>",
        _STYLE,
        "</head><body>",
        f"<h1>{_e(title)}</h1>",
        f"<p>Message {_e(body.get('message_id'))}, {_e(body['schema'])} version {_e(body['version'])}</p>",
        _pairs("Batch", {**batch, "started_at": body["started_at"], "closed_at": body["closed_at"]}),
        _pairs("Serials by state", body["counts"]),
        _pairs("Serial times", body["serial_times"]),
        _table("Decommissioned by reason", ("state", "reason", "count"),
               [(state, reason, n) for state, reasons in body["decommissioned_by_reason"].items()
                for reason, n in reasons.items()]),
        _table("Pauses", ("at", "operator", "reason", "resumed_at"),
               [(p["at"], p["operator"], p["reason"], p["resumed_at"]) for p in body["pauses"]]),
        _table("Line stops and holds", ("at", "actor", "action", "details"),
               [(s["at"], s["actor"], s["action"], json.dumps(s["details"], sort_keys=True))
                for s in body["line_stops"]]),
        _table("Alarms", ("at", "kind", "device", "text"),
               [(a["at"], a["details"].get("kind"), a["details"].get("device"), a["details"].get("text"))
                for a in body["alarms"]]),
        _table("Printers", ("id", "sent", "printed", "first", "last"),
               [(d["id"], d["sent"], d["printed"], d["first_at"], d["last_at"]) for d in body["devices"]["printers"]]),
        _table("Cameras", ("id", "commissioned", "rejected", "first", "last"),
               [(d["id"], d["commissioned"], d["rejected"], d["first_at"], d["last_at"])
                for d in body["devices"]["cameras"]]),
        _table("Configuration", ("run", "started_at", "version", "config_sha256"),
               [(c["run"], c["started_at"], c["version"], c["config_sha256"]) for c in body["configuration"]]),
        _reconciliation(body.get("reconciliation")),
        _table("Electronic signatures", ("at", "user", "full name", "role", "meaning", "signed record sha256"),
               [(s["at"], s["user"], s["full_name"], s["role"], s["meaning"], s["sha256"])
                for s in body["signatures"]]),
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"


def _e(value: object) -> str:
    return "" if value is None else escape(str(value))


def _pairs(caption: str, values: dict[str, Any]) -> str:
    return _table(caption, ("", ""), list(values.items()), header=False)


def _table(caption: str, columns: tuple[str, ...], rows: list[tuple[Any, ...]], *, header: bool = True) -> str:
    lines = [f"<h2>{_e(caption)}</h2>"]
    if not rows:
        return lines[0] + "\n<p>None.</p>"
    lines.append("<table>")
    if header:
        lines.append("<tr>" + "".join(f"<th>{_e(c)}</th>" for c in columns) + "</tr>")
    lines += ["<tr>" + "".join(f"<td>{_e(v)}</td>" for v in row) + "</tr>" for row in rows]
    lines.append("</table>")
    return "\n".join(lines)


def _reconciliation(reconciliation: dict[str, Any] | None) -> str:
    if reconciliation is None:
        return "<h2>Reconciliation</h2>\n<p>No frozen reconciliation report.</p>"
    report = reconciliation["report"]
    return _pairs("Reconciliation", {
        "equation": report.get("equation"), "balanced": report.get("balanced"),
        "closed_by": report.get("closed_by"), "closed_at": report.get("closed_at"),
        "report sha256": reconciliation["sha256"],
    })
