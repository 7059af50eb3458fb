"""The daemon's aggregation stations wired from a line configuration, against simulated devices on loopback.

A manual packing bench (hand scanner), the case labeller with its verifying scanner, the palletiser: every
device through its real driver and supervisor, the stations reached only through the devices' bytes. And a
restart: a full case left waiting for its label is labelled by the next run.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING

import aiohttp
import pytest

from edge.config import load_config_text
from edge.daemon import Daemon
from edge.gs1.element import build
from edge.line.simulated import SimulatedLine
from edge.serials.states import SerialState
from edge.supervisor import LinkState
from simulators.printer import Printed
from simulators.scanner_wedge import WedgeScannerSim
from simulators.world import SimProduct
from tests.conftest import ROOT
from tests.edge.logins import daemon_login

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

HANG_GUARD_S = 20.0
"""Only a guard against a hang; nothing is timed with it."""

CONFIG = """
line: {{id: bench, name: Bench line}}
devices:
  - id: labeller-case
    driver: printer.zpl
    url: "socket://127.0.0.1:1"
    options: {{feeds: labels, poll_interval_s: 0.005}}
  - {{id: scanner-case-label, driver: scanner.wedge, url: "socket://127.0.0.1:1"}}
  - {{id: scanner-bench, driver: scanner.wedge, url: "socket://127.0.0.1:1"}}
  - {{id: scanner-pallet, driver: scanner.wedge, url: "socket://127.0.0.1:1"}}
  - {{id: labeller-pallet, driver: printer.zpl, url: "socket://127.0.0.1:1", options: {{feeds: labels}}}}
  - {{id: scanner-pallet-label, driver: scanner.wedge, url: "socket://127.0.0.1:1"}}
storage: {{state_dir: "{state}"}}
api: {{port: 0}}
catalog: {{products: "{root}/config/products", markets: "{root}/config/markets"}}
aggregation:
  cases:
    mode: manual
    scanner: scanner-bench
    label: {{printer: labeller-case, verifier: scanner-case-label}}
  pallets:
    scanner: scanner-pallet
    label: {{printer: labeller-pallet, verifier: scanner-pallet-label}}
"""
ORDER = 'work_order: WO-1\nproduct: aspirin-500-eu\nlot: "L1"\nexpiry: 2028-10-31\nquantity: 20\nline: bench\n'


class Bench:
    """The running daemon and its simulated bench, labellers and palletiser."""

    def __init__(self, line: SimulatedLine, daemon: Daemon) -> None:
        self.line = line
        self.daemon = daemon
        assert daemon.aggregation is not None
        self.agg = daemon.aggregation

    def scanner(self, device_id: str) -> WedgeScannerSim:
        sim = self.line.sims[device_id]
        assert isinstance(sim, WedgeScannerSim)
        return sim

    async def commissioned(self, count: int) -> list[tuple[int, str]]:
        """Start the batch and commission count units (printed and verified elsewhere); return (id, code)."""
        batches = self.daemon.batches
        assert batches is not None
        batch = await batches.import_work_order(ORDER, "test", operator="mes")
        await batches.release(batch.id, operator="sup")
        await batches.start(batch.id, operator="op")
        rows = await batches.ledger.next_to_print(batch.id, count, device="printer-1")
        ids = [row[0] for row in rows]
        await batches.ledger.move(ids, SerialState.PRINTED, reason="printed", device="printer-1")
        await batches.ledger.move(ids, SerialState.COMMISSIONED, reason="verified", device="camera-1")
        return [(row[0], build([("01", "04012345000016"), ("21", row[1]), ("10", "L1"), ("17", "281031")]))
                for row in rows]


async def _until(condition, what: str) -> None:
    """Wait until condition() holds; the stations signal nothing per scan, so it is polled."""
    try:
        async with asyncio.timeout(HANG_GUARD_S):
            while not await condition():  # noqa: ASYNC110
                await asyncio.sleep(0.005)
    except TimeoutError:
        pytest.fail(f"timed out waiting for {what}")


@contextlib.asynccontextmanager
async def bench(tmp_path: Path) -> AsyncIterator[Bench]:
    config = load_config_text(CONFIG.format(state=tmp_path / "state", root=ROOT), "bench.yaml")
    async with SimulatedLine(config) as line:
        daemon = Daemon(line.config)
        task = asyncio.create_task(daemon.run(handle_signals=False))
        labelling = asyncio.create_task(line.run_packaging())
        try:
            async with asyncio.timeout(HANG_GUARD_S):
                await daemon.ready.wait()
                for sim in line.sims.values():
                    await sim.wait_for_connection()
                while any(s.status.state is not LinkState.ONLINE for s in daemon.supervisors):  # noqa: ASYNC110
                    await asyncio.sleep(0.005)
            yield Bench(line, daemon)
        finally:
            labelling.cancel()
            await asyncio.gather(labelling, return_exceptions=True)
            daemon.request_shutdown()
            async with asyncio.timeout(HANG_GUARD_S):
                await task


async def test_a_case_built_by_hand_is_labelled_verified_and_palletised(tmp_path: Path) -> None:
    async with bench(tmp_path) as b:
        units = await b.commissioned(12)
        hand = b.scanner("scanner-bench")
        await hand.scan(b"#OPERATOR anna")
        for _, code in units[:10]:
            await hand.scan(code.encode("latin-1"))
        # Full at 10: handed to the case labeller, printed, read back by its scanner, closed.
        service = b.agg.aggregation

        async def one_closed_case() -> bool:
            return len(await service.containers_of_batch(1, level="case", state="closed")) == 1

        await _until(one_closed_case, "the case closed")
        [case] = await service.containers_of_batch(1, level="case", state="closed")
        assert case.count == 10
        # The palletiser reads the case label onto a pallet; the operator closes the pallet short.
        await b.scanner("scanner-pallet").scan(b"00" + case.identifier.encode())
        pallets = b.agg.pallets
        assert pallets is not None

        async def on_pallet() -> bool:
            return pallets.current is not None

        await _until(on_pallet, "the case on a pallet")
        assert pallets.current is not None
        await b.agg.close_short(pallets.current, "anna", "end of batch")
        async with asyncio.timeout(HANG_GUARD_S):
            await b.agg.wait_labelled()
        [pallet] = await service.containers_of_batch(1, level="pallet")
        assert (pallet.state, pallet.count, pallet.partial_reason) == ("closed", 1, "end of batch")
        # A unit removed by hand reopens nothing closed without an operator's reason on record.
        await hand.scan(b"#REMOVE")
        await hand.scan(units[10][1].encode("latin-1"))  # not in any case: refused, nothing changes
        manual = b.agg.manual
        assert manual is not None

        async def answered() -> bool:
            return any("not in any case" in m.text or "is in no" in m.text for m in manual.messages)

        await _until(answered, "the removal refused")
        status = b.daemon.line_status()["aggregation"]
        assert status["cases"]["mode"] == "manual"
        assert status["cases"]["labels"]["counts"]["closed"] == 1
        assert status["pallets"]["labels"]["counts"]["closed"] == 1


async def test_a_full_case_waiting_for_its_label_at_shutdown_is_labelled_after_the_restart(tmp_path: Path) -> None:
    async with bench(tmp_path) as b:
        units = await b.commissioned(10)
        # The case labeller is down: the case fills and waits for its label when the line stops.
        b.line.sims["labeller-case"].engine.printing = False
        hand = b.scanner("scanner-bench")
        await hand.scan(b"#OPERATOR anna")
        for _, code in units:
            await hand.scan(code.encode("latin-1"))
        manual = b.agg.manual
        assert manual is not None

        async def handed_over() -> bool:
            return manual.current is None and b.agg.case_labels.waiting > 0

        await _until(handed_over, "the full case handed to the labeller")
    async with bench(tmp_path) as b:
        service = b.agg.aggregation
        async with asyncio.timeout(HANG_GUARD_S):
            await b.agg.case_labels.wait_idle()
        [case] = await service.containers_of_batch(1, level="case")
        assert (case.state, case.count) == ("closed", 10)
        # The label that was stuck in the powered-down printer of the first run is void: never verified.
        voided = [e for e in await service.events(1) if e.action == "void_label"]
        assert len(voided) == 1


CASE_SCAN = """
line: {{id: bench, name: Bench line}}
devices:
  - id: labeller-case
    driver: printer.zpl
    url: "socket://127.0.0.1:1"
    options: {{feeds: labels, poll_interval_s: 0.005}}
  - {{id: scanner-case-label, driver: scanner.wedge, url: "socket://127.0.0.1:1"}}
  - id: camera-case
    driver: camera.simulated-case
    url: "socket://127.0.0.1:1"
    options: {{world: case-bench, width: 1224, height: 1024}}
storage: {{state_dir: "{state}"}}
api: {{port: 0}}
catalog: {{products: "{root}/config/products", markets: "{root}/config/markets"}}
aggregation:
  cases:
    mode: case-scan
    camera: camera-case
    label: {{printer: labeller-case, verifier: scanner-case-label}}
"""


async def test_case_scan_over_the_api_packs_a_full_case_or_sends_it_to_rework(tmp_path: Path) -> None:
    config = load_config_text(CASE_SCAN.format(state=tmp_path / "state", root=ROOT), "bench.yaml")
    async with SimulatedLine(config) as line:
        daemon = Daemon(line.config)
        task = asyncio.create_task(daemon.run(handle_signals=False))
        labelling = asyncio.create_task(line.run_packaging())
        try:
            async with asyncio.timeout(HANG_GUARD_S):
                await daemon.ready.wait()
                while any(s.status.state is not LinkState.ONLINE for s in daemon.supervisors):  # noqa: ASYNC110
                    await asyncio.sleep(0.005)
            b = Bench(line, daemon)
            units = await b.commissioned(19)
            # Ten packs drop into the case, then nine (one short): the camera over the case sees what came.
            def drop(seq: int, code: str) -> None:
                line.world.shipped.append(SimProduct(seq, entered=0, printed=Printed(seq, "unit", (("code", code),))))

            for n, (_, code) in enumerate(units[:10], start=1):
                drop(n, code)
            url = f"http://127.0.0.1:{daemon.api_port}/api/v1/aggregation/case-scan"
            async with aiohttp.ClientSession() as http:
                http.headers.update(await daemon_login(daemon, http, base=f"http://127.0.0.1:{daemon.api_port}"))
                async with http.post(url) as answer:
                    good = await answer.json()
                assert (answer.status, good["ok"], good["found"]) == (200, True, 10)
                for n, (_, code) in enumerate(units[10:], start=11):
                    drop(n, code)
                async with http.post(url) as answer:
                    short = await answer.json()
                assert (short["ok"], short["reason"], short["found"]) == (False, "too-few", 9)
                async with http.post(url, json={"expected": 9}) as answer:
                    refused = await answer.json()
                assert answer.status == 400
                assert "reason is missing" in refused["error"]  # a short case is closed by someone, saying why
            async with asyncio.timeout(HANG_GUARD_S):
                await b.agg.case_labels.wait_idle()
            [case] = await b.agg.aggregation.containers_of_batch(1, level="case")
            assert (case.state, case.count) == ("closed", 10)
        finally:
            labelling.cancel()
            await asyncio.gather(labelling, return_exceptions=True)
            daemon.request_shutdown()
            async with asyncio.timeout(HANG_GUARD_S):
                await task
