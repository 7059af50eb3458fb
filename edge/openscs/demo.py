"""The demo's simulated Level-3 pool server: ``lineside demo --upstream open-scs`` draws its serials over OPEN-SCS.

The demo product's market pack is copied into the state directory with ``serial_source: open_scs``, the line's
OPC UA certificate is made there when missing, the simulated pool server (`simulators.openscs_pool`) serves the
market's GTINs in their serial formats, and the line configuration gets an ``openscs`` section pointing at it.
At the end the demo sends what is left to report and compares, serial by serial, the L3's states with the
line's own account (`OpenScsService.line_view`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import secrets
import shutil
import socket
from collections import Counter
from functools import partial
from typing import TYPE_CHECKING, Any, Final

from edge.config.models import OpenScsConfig
from edge.openscs import ops
from edge.openscs.errors import OpenScsError
from edge.products.load import load_catalog
from simulators.openscs_pool import OpenScsPool, PoolSpec

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

    from edge.config import LineConfig
    from edge.daemon import Daemon

DEMO_PRODUCT: Final = "aspirin-500-eu"
USER: Final = "demo-line"
MARKETS_DIR: Final = "openscs-markets"
CREDENTIALS: Final = "openscs-credentials"
FLUSH_WAIT_S: Final = 30.0
"""How long the last reports may take to reach the simulated L3 before the demo reports a failure: a few calls on
loopback, each answered in milliseconds."""
_SOURCE_LINE: Final = re.compile(r"^serial_source:.*$", re.MULTILINE)


@contextlib.asynccontextmanager
async def simulated_l3(config: LineConfig) -> AsyncIterator[tuple[LineConfig, OpenScsPool]]:
    """Serve the demo product's market from a simulated L3 pool server; yield the configuration drawing from it."""
    state_dir = config.storage.state_dir
    catalog = await asyncio.to_thread(load_catalog, config.catalog)
    product = catalog.products[DEMO_PRODUCT]
    market = product.market
    markets = state_dir / MARKETS_DIR
    credentials = state_dir / CREDENTIALS
    password = secrets.token_urlsafe(18)
    await asyncio.to_thread(_prepare, config, market, markets, credentials, password)
    pools = [PoolSpec(p.gtin, p.serials.characters, p.serials.longest) for p in catalog.products.values()
             if p.market == market]
    async with OpenScsPool(pools, users={USER: password}) as l3:
        openscs = OpenScsConfig(url=l3.url, credentials_file=credentials, retry_initial_s=0.2, retry_max_s=2.0)
        catalog_config = config.catalog.model_copy(update={"markets": markets})
        yield config.model_copy(update={"openscs": openscs, "catalog": catalog_config}), l3


def _prepare(config: LineConfig, market: str, markets: Path, credentials: Path, password: str) -> None:
    """Copy the market packs with market drawing over OPEN-SCS; write the credentials; make the line certificate."""
    from edge.opcua.certs import OpcUaPaths, make_certificate  # noqa: PLC0415 - loads asyncua's certificate tools

    shutil.rmtree(markets, ignore_errors=True)
    shutil.copytree(config.catalog.markets, markets)
    pack = markets / f"{market}.yaml"
    pack.write_text(_SOURCE_LINE.sub("serial_source: open_scs", pack.read_text(encoding="utf-8"), count=1),
                    encoding="utf-8")
    fd = os.open(credentials, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(f"{USER}\n{password}\n")
    paths = OpcUaPaths.in_state_dir(config.storage.state_dir)
    if not paths.certificate.exists():
        make_certificate(paths, config.line.id, ["127.0.0.1", "localhost", socket.gethostname()])


async def l3_view(daemon: Daemon, batch_id: int, l3: OpenScsPool, problems: list[str]) -> dict[str, Any]:
    """Send what is left to report, then compare every serial of the batch on both sides (differences: problems)."""
    service, batches = daemon.openscs, daemon.batches
    if service is None or batches is None:
        problems.append("the line has no OPEN-SCS service")
        return {}
    try:
        async with asyncio.timeout(FLUSH_WAIT_S):
            await service.flush()
    except (OpenScsError, TimeoutError) as err:
        problems.append(f"OPEN-SCS reports not delivered: {str(err) or 'timed out'}")
    batch = await batches.ledger.batch(batch_id)
    line = await service.line_view(batch_id)
    held = {serial: state for serial, state in l3.states(batch.gtin).items() if serial in line}
    differ = sorted(serial for serial, state in line.items() if held.get(serial) is not state)
    if differ:
        problems.append(f"{len(differ)} serials differ between the line and the L3, like {differ[0]}: line "
                        f"{line[differ[0]].title}, L3 {getattr(held.get(differ[0]), 'title', 'unknown')}")
    problems.extend(l3.problems[:5])
    store = service.store
    return {"open_scs": {
        "url": l3.url,
        "received": await store.read(partial(ops.received_total, gtin=batch.gtin)),
        "requests": sum(n for method, n in l3.calls.items() if method.startswith("SNRequest")),
        "delivered": await store.read(partial(ops.delivered, batch_id=batch_id)),
        "backlog": await service.backlog(),
        "serials": len(line),
        "matching": not differ,
        "l3": dict(Counter(state.title for state in held.values())),
    }}


def summary_lines(outcome: dict[str, Any]) -> list[str]:
    """Return the demo summary's OPEN-SCS lines: serials drawn, reported, returned, and both sides compared."""
    view = outcome.get("open_scs")
    if not view:
        return []
    delivered: dict[str, int] = dict(view["delivered"])
    returned = delivered.pop(ops.RETURN_ALLOCATED, 0)
    reported = ", ".join(f"{method} {count}" for method, count in delivered.items()) or "nothing"
    states = ", ".join(f"{state} {count}" for state, count in sorted(view["l3"].items()))
    agree = "agree on every one" if view["matching"] else "DIFFER"
    waiting = view["backlog"]["reports"]
    return [
        (f"OPEN-SCS: {view['received']} serials drawn from the simulated L3 at {view['url']} "
         f"in {view['requests']} request(s)"),
        f"OPEN-SCS reported (serials): {reported}; returned unused (SNReturnAllocated): {returned}"
        + (f"; {waiting} report(s) still waiting" if waiting else ""),
        f"OPEN-SCS states of the batch's {view['serials']} serials, line and L3 {agree}: {states}",
    ]
