"""The feeder's own rules, on the real path (Zipher driver and simulator, real store): identity, pause, holds."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from drivers.printer.base import PrintEvidence, PrintOutcome
from edge.line.print_rig import DEVICE, PrintRig
from edge.serials.states import BatchState, SerialState
from tests.conftest import ROOT

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from pathlib import Path

HANG_GUARD_S = 10.0


def evidence(record_id: int, outcome: PrintOutcome = PrintOutcome.PRINTED) -> PrintEvidence:
    return PrintEvidence(device_id=DEVICE, at=datetime.now(UTC), record_id=record_id, outcome=outcome)


async def eventually(check: Callable[[], Awaitable[bool]]) -> None:
    """Return once check() holds; the feeder and the store signal nothing a test could wait on."""
    async with asyncio.timeout(HANG_GUARD_S):
        while not await check():  # noqa: ASYNC110 - nothing to wait on but the state itself
            await asyncio.sleep(0.002)


async def outstanding(r: PrintRig, count: int) -> tuple[int, ...]:
    feeder = r.feeder
    assert feeder is not None

    async def loaded() -> bool:
        return len(feeder.outstanding) >= count

    await eventually(loaded)
    return feeder.outstanding


async def state_of(r: PrintRig, serial_id: int) -> SerialState:
    assert r.store is not None
    value = await r.store.read(lambda c: c.execute("SELECT state FROM serial WHERE id = ?", (serial_id,)).fetchone())
    return SerialState(value[0])


async def test_evidence_for_a_later_record_puts_the_skipped_ones_in_doubt(tmp_path: Path) -> None:
    async with PrintRig("printer.zipher", tmp_path / "s", units=40) as r:
        assert r.feeder is not None
        first, second, third, *_ = await outstanding(r, 3)
        # The device reports the third record printed while the first two are unconfirmed: a FIFO cannot skip,
        # so they may be on a pack or nowhere; they are in doubt, never printed by assumption.
        await r.feeder.on_event(evidence(third))

        async def settled() -> bool:
            return await state_of(r, third) is SerialState.PRINTED

        await eventually(settled)
        assert await state_of(r, first) is SerialState.IN_DOUBT
        assert await state_of(r, second) is SerialState.IN_DOUBT


async def test_duplicate_or_unknown_evidence_changes_nothing(tmp_path: Path) -> None:
    async with PrintRig("printer.zipher", tmp_path / "s", units=40) as r:
        assert r.feeder is not None
        await r.products(3)
        await r.settled()
        before = (await r.check()).states
        feeder = r.feeder
        await feeder.on_event(evidence(10_000_000))  # a record it was never given

        async def noticed() -> bool:
            return feeder.counts.anomalies >= 1

        await eventually(noticed)
        after = await r.check()
        assert after.states["printed"] == before["printed"] == 3
        assert after.problems == []


async def test_a_paused_batch_keeps_the_buffer(tmp_path: Path) -> None:
    async with PrintRig("printer.zipher", tmp_path / "s", units=40) as r:
        assert r.ledger is not None
        assert r.feeder is not None
        await r.products(2)
        await r.settled()
        before = await outstanding(r, 1)
        await r.ledger.set_state(r.batch_id, BatchState.PAUSED, reason="operator pause")
        await asyncio.sleep(0.05)  # a few feeder rounds: nothing may be flushed while the line stands
        assert r.feeder.outstanding == before
        assert r.sim.engine.buffered == len(before)
        assert r.holds == []


def test_demo_prints_inspects_and_rejects_every_injected_defect(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "edge", "demo", "--units", "60", "--ppm", "1200", "--defect-every", "4",
         "--log-level", "warning", "--state-dir", str(tmp_path / "state")],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "60 packs off the belt" in done.stdout
    defects = next(line for line in done.stdout.splitlines() if line.startswith("defects injected"))
    for kind in ("blur", "low-contrast", "damage", "missing", "wrong-code", "duplicate", "two-codes"):
        count = defects.split(f"{kind} ")[1].split(",")[0]
        rejected, injected = count.split("/")
        assert rejected == injected != "0", defects
    # Good packs in cases of 10, each label verified (some voided and relabelled), the cases on one pallet
    # closed short at the batch's end, like the last case.
    cases = next(line for line in done.stdout.splitlines() if line.startswith("cases"))
    assert "10/10" in cases
    assert "short: end of batch" in cases
    pallets = next(line for line in done.stdout.splitlines() if line.startswith("pallets"))
    assert pallets.startswith("pallets (SSCC, cases): 1: ")
    assert "short: end of batch" in pallets
    voided = next(line for line in done.stdout.splitlines() if line.startswith("labels voided"))
    assert int(voided.rsplit(" ", 1)[1]) >= 1
    assert "problems: none" in done.stdout
    # Where to watch it, with a login per role made for the demo, and the table at the end.
    assert "HMI:  http://127.0.0.1:" in done.stdout
    logins = done.stdout.split("logins (made for this demo", 1)[1].splitlines()[1:5]
    assert [row.split()[0] for row in logins] == ["administrator", "supervisor", "operator", "qa"], logins
    table = done.stdout.split("serials by state at close", 1)[1].split("=====", 1)[0]
    for row in ("returned", "cases closed", "site-epcis: delivered"):
        assert row in table, table
    # The batch closed balanced and its EPCIS arrived upstream, checked against the official schemas.
    assert "batch closed: allocated" in done.stdout
    delivered = next(line for line in done.stdout.splitlines() if line.startswith("EPCIS to site-epcis: "))
    assert delivered.startswith("EPCIS to site-epcis: delivered, "), delivered
    if os.environ.get("LINESIDE_EPCIS_SCHEMAS"):
        assert "upstream validated with the official EPCIS schemas" in done.stdout


def test_simulate_serves_every_device_of_a_config_tcp_and_serial(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "edge", "simulate", "-c", str(ROOT / "config" / "line.example.yaml"),
         "--duration", "0.3", "--ppm", "600", "--log-format", "json"],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )
    assert done.returncode == 0, done.stderr
    listening = [line for line in done.stdout.splitlines() + done.stderr.splitlines() if "simulator listening" in line]
    assert any('"device": "printer-1"' in line and "ZipherSim" in line for line in listening)
    assert any('"device": "scanner-pack"' in line and "/tty" in line for line in listening)  # a serial device
