"""lineside demo --upstream open-scs: the demo's serials drawn over OPEN-SCS from a simulated L3, in one process."""

from __future__ import annotations

import re
import subprocess
import sys
from typing import TYPE_CHECKING

from tests.conftest import ROOT

if TYPE_CHECKING:
    from pathlib import Path


def test_the_demo_draws_its_serials_over_open_scs_and_both_sides_agree_at_the_end(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "edge", "demo", "--upstream", "open-scs", "--units", "20", "--ppm", "1200",
         "--defect-every", "4", "--log-level", "warning", "--state-dir", str(tmp_path / "state")],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )
    lines = done.stdout.splitlines()
    closed = next((line for line in lines if line.startswith("batch closed: allocated ")), None)
    assert closed is not None, done.stdout + done.stderr
    allocated = int(closed.split()[3])
    drawn = next(line for line in lines if line.startswith("OPEN-SCS: "))
    assert re.match(rf"OPEN-SCS: {allocated} serials drawn from the simulated L3 at opc\.tcp://127\.0\.0\.1:\d+/"
                    r"openscs/ in 1 request\(s\)$", drawn), drawn
    reported = next(line for line in lines if line.startswith("OPEN-SCS reported"))
    returned = int(reported.rsplit(" ", 1)[1])
    assert f"returned {returned}" in closed
    for method in ("SNtoEncoded", "SIDCommissioningEvent", "LabelsScrappingEvent"):
        assert f"{method} " in reported, reported
    states = next(line for line in lines if line.startswith("OPEN-SCS states"))
    assert f"the batch's {allocated} serials, line and L3 agree on every one: " in states, states
    problems = next(line for line in lines if line.startswith("problems: "))
    # Only the EPCIS delivery may fail here, where the official EPCIS JSON schema is missing.
    assert "OPEN-SCS" not in problems
    assert "differ" not in problems


def test_the_demo_refuses_to_resume_with_the_simulated_l3(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "edge", "demo", "--upstream", "open-scs", "--resume", "--state-dir", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )
    assert done.returncode == 2
    assert "--upstream open-scs does not go with --resume" in done.stderr
