"""The whole print → inspect → reject loop: the real daemon against a simulated belt, printer, camera and PLC.

The belt is stepped by the test, a pitch at a time, and each step waits until the line controller has caught
up (a record loaded before a pack reaches the printer, every pack past the camera judged): deterministic, with
no timing in any assertion. The world (`simulators.world.LineWorld`) is the truth checked against.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING

import aiohttp
import pytest

from edge.config import load_config
from edge.daemon import Daemon
from edge.gs1.element import parse
from edge.line.events import LineStopRequest
from edge.line.simulated import REJECTED_DEFECTS, SimulatedLine
from edge.line.verdict import RejectReason
from edge.supervisor import LinkState
from simulators.defects import Defect, DefectKind
from simulators.scanner_wedge import WedgeScannerSim
from tests.conftest import ROOT
from tests.edge.logins import daemon_login

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

    from simulators.world import DefectPlan

HANG_GUARD_S = 20.0
ORDER = (
    "work_order: WO-{n}\nproduct: aspirin-500-eu\nlot: \"DEMO01\"\nexpiry: 2028-10-31\nquantity: 60\nline: demo\n"
)

EXPECTED = {
    DefectKind.BLUR: {RejectReason.NO_READ, RejectReason.LOW_GRADE},
    DefectKind.LOW_CONTRAST: {RejectReason.NO_READ, RejectReason.LOW_GRADE},
    DefectKind.DAMAGE: {RejectReason.NO_READ, RejectReason.LOW_GRADE},
    DefectKind.SMUDGE: {RejectReason.NO_READ, RejectReason.LOW_GRADE},
    DefectKind.INK_SPREAD: {RejectReason.NO_READ, RejectReason.LOW_GRADE},
    DefectKind.MISSING: {RejectReason.NO_READ},
    DefectKind.WRONG_CODE: {RejectReason.WRONG_DATA},
    DefectKind.DUPLICATE: {RejectReason.DUPLICATE},
    DefectKind.TWO_CODES: {RejectReason.MULTIPLE_CODES},
}


class Line:
    """The running daemon and its simulated line, stepped by the test."""

    def __init__(self, line: SimulatedLine, daemon: Daemon, stops: list[LineStopRequest]) -> None:
        self.sim = line
        self.daemon = daemon
        self.stops = stops
        self.world = line.world

    @property
    def inspection(self):
        assert self.daemon.inspection is not None
        return self.daemon.inspection

    async def caught_up(self) -> None:
        """Wait until every pack past the camera is judged and every pack past the reject station reported."""
        world = self.world
        async with asyncio.timeout(HANG_GUARD_S):
            while True:
                past_camera = sum(1 for p in [*world.products, *world.shipped, *world.reject_bin] if p.inspected)
                past_reject = len(world.shipped) + len(world.reject_bin) + sum(
                    1 for p in world.products if p.rejected is not None)
                if self.inspection.counts.inspected >= past_camera and self.inspection.counts.settled >= past_reject:
                    await self.inspection.idle()
                    return
                await asyncio.sleep(0.002)

    async def packs(self, count: int) -> None:
        """Move count packs onto the belt, each onto a printer that has its record loaded."""
        printer = self.sim.printer
        assert printer is not None
        for _ in range(count):
            async with asyncio.timeout(HANG_GUARD_S):
                await printer.engine.wait_loaded()
            for _ in range(4):  # a pitch in four steps, catching up after each
                self.world.advance(self.world.geometry.pitch // 4)
                await self.caught_up()

    async def drain(self) -> None:
        """Stop the infeed and move the belt until every pack on it has left."""
        self.world.infeed = False
        while self.world.products:
            self.world.advance(self.world.geometry.pitch // 4)
            await self.caught_up()


@contextlib.asynccontextmanager
async def running_line(tmp_path: Path, plan: DefectPlan | None = None) -> AsyncIterator[Line]:
    config = load_config(ROOT / "config" / "demo.yaml")
    config = config.model_copy(update={
        "storage": config.storage.model_copy(update={"state_dir": tmp_path / "state"}),
        "api": config.api.model_copy(update={"port": 0}),
    })
    stops: list[LineStopRequest] = []
    async with SimulatedLine(config, defects=plan) as line:
        daemon = Daemon(line.config)
        task = asyncio.create_task(daemon.run(handle_signals=False))
        try:
            async with asyncio.timeout(HANG_GUARD_S):
                await daemon.ready.wait()
                for sim in line.sims.values():
                    await sim.wait_for_connection()
                assert line.plc is not None
                await line.plc.wait_for_connection()
                while any(s.status.state is not LinkState.ONLINE for s in daemon.supervisors):  # noqa: ASYNC110
                    await asyncio.sleep(0.005)  # supervisors signal nothing when they come online
            inspection = daemon.inspection
            assert inspection is not None
            notify = inspection._notify

            async def listen(event):
                if isinstance(event, LineStopRequest):
                    stops.append(event)
                await notify(event)

            inspection._notify = listen
            batches = daemon.batches
            assert batches is not None
            batch = await batches.import_work_order(ORDER.format(n=1), "test", operator="test")
            await batches.release(batch.id, operator="test")
            await batches.start(batch.id, operator="test")
            labelling = asyncio.create_task(line.run_packaging())
            try:
                yield Line(line, daemon, stops)
            finally:
                labelling.cancel()
                await asyncio.gather(labelling, return_exceptions=True)
        finally:
            daemon.request_shutdown()
            async with asyncio.timeout(HANG_GUARD_S):
                await task


def each_defect(first: int = 3, every: int = 2) -> DefectPlan:
    kinds = list(REJECTED_DEFECTS)

    def plan(seq: int) -> tuple[Defect, ...]:
        if seq < first or (seq - first) % every:
            return ()
        index = (seq - first) // every
        return (Defect(kinds[index]),) if index < len(kinds) else ()

    return plan


async def test_good_packs_are_commissioned_and_pass(tmp_path: Path) -> None:
    async with running_line(tmp_path) as line:
        await line.packs(8)
        await line.drain()
        shipped = line.world.shipped
        assert len(shipped) == 8
        assert line.world.reject_bin == []
        assert line.inspection.counts.good == 8
        assert line.stops == []
        states = await line.daemon.batches.ledger.counts(1)  # type: ignore[union-attr]
        assert states["commissioned"] == 8
        async with aiohttp.ClientSession() as session:
            url = f"http://127.0.0.1:{line.daemon.api_port}/api/v1/line"
            headers = await daemon_login(line.daemon, session, base=f"http://127.0.0.1:{line.daemon.api_port}")
            async with session.get(url, headers=headers) as response:
                status = await response.json()
        assert status["inspection"]["good"] == 8
        assert status["printers"]["printer-1"]["printed"] >= 8
        assert {d["id"]: d["state"] for d in status["devices"]}["plc-1"] == "online"


async def test_every_defect_kind_is_rejected_with_its_reason(tmp_path: Path) -> None:
    async with running_line(tmp_path, each_defect()) as line:
        await line.packs(3 + 2 * len(REJECTED_DEFECTS))
        await line.drain()
        verdicts = line.inspection.verdicts
        for pack in [*line.world.shipped, *line.world.reject_bin]:
            verdict = verdicts[pack.seq]
            if pack.defects:
                kind = pack.defects[0].kind
                assert pack.rejected, f"pack {pack.seq} with {kind} passed"
                assert pack.confirmed
                assert verdict.reason in EXPECTED[kind], f"{kind}: {verdict.reason} {verdict.detail}"
            else:
                assert verdict.good, f"pack {pack.seq}: {verdict.reason} {verdict.detail}"
                assert not pack.rejected
        assert line.world.escaped == []


async def test_an_unconfirmed_reject_stops_the_line(tmp_path: Path) -> None:
    async with running_line(tmp_path, each_defect(first=3, every=100)) as line:
        line.world.confirm_rejects = False
        await line.packs(4)
        await line.drain()
        assert [s.alarm for s in line.stops] == ["reject-not-confirmed"]
        assert "pack 3" in line.stops[0].reason


async def test_a_pack_without_a_verdict_is_rejected_and_stops_the_line(tmp_path: Path) -> None:
    async with running_line(tmp_path) as line:
        await line.packs(2)
        world, geometry = line.world, line.world.geometry
        first = world.product(1)
        assert first is not None
        # Move pack 1 past the camera and on to the reject station in one go: nobody could judge it in time.
        while not first.inspected:
            world.advance(10)
        world.advance(geometry.reject - geometry.camera)
        await line.drain()
        assert "no-verdict-in-time" in [s.alarm for s in line.stops]
        assert first.rejected
        assert first.confirmed
        assert world.escaped == []
        verdicts = line.inspection.verdicts
        assert all(verdicts[p.seq].good for p in world.shipped)


async def test_good_packs_are_packed_into_cases_in_line_order_and_labelled_onto_a_pallet(tmp_path: Path) -> None:
    async with running_line(tmp_path) as line:
        await line.packs(12)
        await line.drain()
        agg = line.daemon.aggregation
        assert agg is not None
        packer = agg.packer
        assert packer is not None
        assert len(line.world.shipped) == 12
        async with asyncio.timeout(HANG_GUARD_S):
            await agg.case_labels.wait_idle()
        # aspirin-500-eu: 10 units per case; the full one was labelled, its label read back, and closed.
        [full] = await agg.aggregation.containers_of_batch(1, level="case", state="closed")
        assert (full.count, full.capacity, full.closed_at is not None) == (10, 10, True)
        assert packer.current is not None
        assert packer.current.count == 2
        assert list(packer.unpacked) == []
        assert full.identifier != packer.current.identifier  # each case its own SSCC
        serials = [line.inspection.verdicts[p.seq].serial_id for p in line.world.shipped]  # in line order
        parents = [await agg.aggregation.parent_of_serial(s) for s in serials if s is not None]
        assert [p.id for p in parents if p is not None] == [full.id] * 10 + [packer.current.id] * 2
        # The palletiser scans the closed case onto a pallet; the operator closes both short at the batch's end.
        pallets = line.sim.sims["scanner-pallet"]
        assert isinstance(pallets, WedgeScannerSim)
        await pallets.scan(b"00" + full.identifier.encode())
        assert agg.pallets is not None
        async with asyncio.timeout(HANG_GUARD_S):
            while agg.pallets.current is None:  # noqa: ASYNC110 - the station signals nothing per scan
                await asyncio.sleep(0.005)
        short = packer.current
        await agg.close_short(short, "anna", "end of batch")
        async with asyncio.timeout(HANG_GUARD_S):
            await agg.case_labels.wait_idle()
        last = await agg.aggregation.container(short.id)
        assert (last.state, last.partial_reason, last.closed_by) == ("closed", "end of batch", "anna")
        pallet = agg.pallets.current
        assert pallet is not None
        await agg.close_short(pallet, "anna", "end of batch")
        async with asyncio.timeout(HANG_GUARD_S):
            await agg.wait_labelled()
        pallet = await agg.aggregation.container(pallet.id)
        assert (pallet.state, pallet.count) == ("closed", 1)
        [pallet_label] = line.sim.applicators["pallet"].applied
        label = dict(parse(pallet_label).pairs)
        assert (label["00"], label["37"]) == (pallet.identifier, "10")  # AI 37: units on the pallet


@pytest.mark.parametrize("kind", [DefectKind.ROTATION, DefectKind.PERSPECTIVE])
async def test_cosmetic_defects_within_limits_still_pass(tmp_path: Path, kind: DefectKind) -> None:
    plan = lambda seq: (Defect(kind, 0.3),) if seq >= 2 else ()  # noqa: E731
    async with running_line(tmp_path, plan) as line:
        await line.packs(4)
        await line.drain()
        assert len(line.world.shipped) == 4
