"""The demo's MES/ERP: plant targets pointed at the simulated endpoint, and what arrived there for the summary."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Final

from edge.plant import outbox

if TYPE_CHECKING:
    import sqlite3
    from collections.abc import Sequence

    from edge.config.models import LineConfig
    from edge.plant.delivery import PlantDelivery
    from edge.store import Store
    from simulators.plant_endpoint import PlantEndpoint

PLANT_WAIT_S: Final = 60.0
"""How long the closed batch's messages may take to reach the simulated MES/ERP before the demo reports a
failure: the delivery is woken at close, and a batch record renders in well under a second."""
POLL_S: Final = 0.05
"""How often the demo looks whether the messages arrived."""


def with_endpoint(config: LineConfig, url: str) -> LineConfig:
    """Return config with every HTTP plant target pointed at url (the simulated MES/ERP)."""
    targets = tuple(t.model_copy(update={"url": url}) if t.kind == "http" else t for t in config.plant.targets)
    return config.model_copy(update={"plant": config.plant.model_copy(update={"targets": targets})})


async def delivered_lines(deliveries: Sequence[PlantDelivery], store: Store | None, batch_id: int,
                          endpoint: PlantEndpoint | None, problems: list[str], *, durable: bool) -> list[str]:
    """Wait until the batch's plant messages are delivered (or failed); return summary lines, add problems.

    durable: False when the endpoint saw every delivery of this state directory (a fresh demo), so what it holds
    must be exactly what the store says was delivered; a resumed demo's endpoint forgot earlier runs.
    """
    if store is None or not deliveries:
        return []

    wanted = {d.target.id: d.target.messages for d in deliveries}

    def pending(conn: sqlite3.Connection) -> list[dict[str, object]]:
        """Return the status of every message of the batch each target takes (unqueued: not picked up yet)."""
        status = {(s["target"], s["outbox_id"]): s for s in outbox.status(conn)}
        return [
            status.get((target, oid)) or {"target": target, "outbox_id": oid, "kind": kind, "state": "unqueued"}
            for target, oid, kind in conn.execute(
                "SELECT t.target, o.id, o.kind FROM plant_target AS t JOIN plant_outbox AS o"
                " ON o.id > t.since_outbox WHERE o.batch_id = ? ORDER BY t.target, o.id", (batch_id,))
            if target in wanted and kind in wanted[target]
        ]

    try:
        async with asyncio.timeout(PLANT_WAIT_S):
            while True:
                rows = await store.read(pending)
                if all(r["state"] in ("delivered", "failed") for r in rows):
                    break
                await asyncio.sleep(POLL_S)
    except TimeoutError:
        problems.append(f"the batch's MES/ERP messages were not delivered within {PLANT_WAIT_S:.0f} s")
    rows = await store.read(pending)
    lines = []
    for delivery in deliveries:
        mine = [r for r in rows if r["target"] == delivery.target.id]
        done = [r for r in mine if r["state"] == "delivered"]
        kinds = ", ".join(str(r["kind"]) for r in done)
        lines.append(f"MES/ERP to {delivery.target.id}: {len(done)} of {len(mine)} message(s) delivered ({kinds})")
        problems.extend(f"MES/ERP message {r['outbox_id']} to {r['target']} failed: {r['reason']}"
                        for r in mine if r["state"] == "failed")
    if endpoint is not None:
        held = endpoint.messages("json")
        lines.append(f"simulated MES/ERP holds {len(held)} message(s), each once: "
                     + ", ".join(f"{r.kind} {r.message_id}" for r in held))
        copies = sorted({r.representation for r in endpoint.received} - {"json"})
        if copies:
            lines[-1] += f" (with {' and '.join(copies)} copies)"
        ids = [r.message_id for r in held]
        if len(set(ids)) != len(ids):
            problems.append("the simulated MES/ERP holds a message twice")
        if not durable:
            sent = sum(1 for r in rows if r["state"] == "delivered" and _http(deliveries, str(r["target"])))
            if len(held) != sent:
                problems.append(f"the simulated MES/ERP holds {len(held)} messages, the store delivered {sent}")
    return lines


def _http(deliveries: Sequence[PlantDelivery], target: str) -> bool:
    return any(d.target.id == target and d.target.kind == "http" for d in deliveries)
