"""`lineside demo --faults SPEC`: the demo line made to suffer the fault campaign's faults, one batch each.

Each fault gets a whole batch on the demo line (edge.line.campaign.run_scenario): printed, inspected, rejected,
packed and delivered, the fault struck mid-batch, the line's reaction watched, recovered as an operator does
(acknowledge, refill, Unhold, or Reset and Start), closed, and every invariant checked against what the
simulators saw. The demo prints one row per fault and exits 0 only when every invariant held in every batch.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from edge.line.campaign import SCENARIOS, CampaignRun, Scenario, run_scenario

if TYPE_CHECKING:
    from collections.abc import Sequence

    from edge.line.campaign import ScenarioResult

ALL = "all"


class FaultSpecError(ValueError):
    """A --faults specification names an unknown fault or a pack outside the batch."""


def parse_faults(spec: str, *, units: int) -> list[tuple[Scenario, int | None]]:
    """Return the faults of spec ('all' or NAME[@PACK],...) with their packs; FaultSpecError naming what is wrong."""
    chosen: list[tuple[Scenario, int | None]] = []
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        name, _, at = part.partition("@")
        if name == ALL and not at:
            chosen.extend((scenario, None) for scenario in SCENARIOS.values())
            continue
        scenario = SCENARIOS.get(name)
        if scenario is None:
            raise FaultSpecError(f"unknown fault {name!r}; known: {', '.join(SCENARIOS)} (or {ALL})")
        pack = None
        if at:
            if not at.isdigit() or not 1 <= int(at) < units:
                raise FaultSpecError(f"{part!r}: the pack after @ is a whole number from 1 to {units - 1}")
            pack = int(at)
        chosen.append((scenario, pack))
    if not chosen:
        raise FaultSpecError(f"no fault named; known: {', '.join(SCENARIOS)} (or {ALL})")
    return chosen


def run_fault_demo(faults: Sequence[tuple[Scenario, int | None]], *, units: int, defect_every: int,
                   state_dir: Path | None) -> int:
    """Run a batch per fault, print a row each and the verdict; return 0 when every invariant held in every one."""
    results: list[ScenarioResult] = []
    with tempfile.TemporaryDirectory(prefix="lineside-demo-faults-") as tmp:
        base = state_dir or Path(tmp)
        for index, (scenario, pack) in enumerate(faults, 1):
            run = CampaignRun(units=units, fault_at=pack, defect_every=defect_every)
            print(f"[{index}/{len(faults)}] {scenario.name}: {scenario.title} (after pack {run.fault_pack} "  # noqa: T201
                  f"of {units})", file=sys.stderr, flush=True)
            workdir = base / f"{index:02d}-{scenario.name}"
            workdir.mkdir(parents=True, exist_ok=True)
            results.append(asyncio.run(run_scenario(scenario, run, workdir)))
    print("\n".join(fault_table(results)))  # noqa: T201 - the command's output
    return 0 if all(r.passed for r in results) else 1


def fault_table(results: Sequence[ScenarioResult]) -> list[str]:
    """Return one row per fault's batch (the line's reaction, the operator's recovery, the outcome), then a verdict."""
    rows = [(f"{'fault':<22}{'invariants':<12}{'s':>6}  {'line went to; alarms':<44}{'operator':<40}"
             f"{'in doubt':>9}{'upstream':>10}")]
    for r in results:
        data = r.as_dict()
        reaction = f"{data['state_after_fault'] or 'stayed in Execute'}; {', '.join(data['alarms']) or 'no alarm'}"
        attempts = data["upstream"].get("attempts", "")
        rows.append(f"{r.name:<22}{'held' if r.passed else 'BROKEN':<12}{r.seconds:>6.1f}  {reaction[:43]:<44}"
                    f"{', '.join(data['operator_commands'])[:39]:<40}{r.in_doubt_decommissioned:>9}{attempts!s:>10}")
        rows.extend(f"{'':<22}problem: {problem}" for problem in r.problems[:5])
        rows.extend(f"{'':<22}{note}" for note in r.notes[:3])
    held = sum(r.passed for r in results)
    rows.append(f"{held} of {len(results)} faults with every invariant holding: no serial lost or doubled, no "
                "unverified pack counted good, reconciliation balanced, each event stored upstream once, the audit "
                "trail whole" if held == len(results) else f"{len(results) - held} of {len(results)} faults broke "
                "an invariant (problems above)")
    return rows
