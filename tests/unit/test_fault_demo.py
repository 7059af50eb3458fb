"""`lineside demo --faults`: the specification's errors name what is wrong; one fault's batch through the CLI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from edge.line.campaign import SCENARIOS
from edge.line.fault_demo import FaultSpecError, parse_faults

ROOT = Path(__file__).resolve().parents[2]


def test_names_packs_and_all_are_read_in_order():
    chosen = parse_faults("printer-out-of-ink@20, garbage", units=60)
    assert [(s.name, at) for s, at in chosen] == [("printer-out-of-ink", 20), ("garbage", None)]
    assert [s.name for s, _ in parse_faults("all", units=60)] == list(SCENARIOS)


@pytest.mark.parametrize(("spec", "words"), [
    ("printer-on-fire", "unknown fault 'printer-on-fire'; known: printer-disconnect"),
    ("garbage@0", "'garbage@0': the pack after @ is a whole number from 1 to 59"),
    ("garbage@60", "from 1 to 59"),
    ("garbage@x", "from 1 to 59"),
    (" , ", "no fault named"),
    ("all@3", "unknown fault 'all'"),
])
def test_a_bad_specification_names_what_is_wrong(spec, words):
    with pytest.raises(FaultSpecError, match=words):
        parse_faults(spec, units=60)


def test_the_demo_recovers_from_a_fault_and_reports_the_invariants_held(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "edge", "demo", "--faults", "printer-out-of-ink@10", "--units", "30",
         "--state-dir", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=180, check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    row = next(line for line in done.stdout.splitlines() if line.startswith("printer-out-of-ink"))
    assert row.split()[1] == "held"
    assert "Held; hold-request@printer-1" in row
    assert "1 of 1 faults with every invariant holding" in done.stdout
    assert (tmp_path / "01-printer-out-of-ink" / "state").is_dir()


def test_faults_do_not_go_with_resume(tmp_path):
    done = subprocess.run([sys.executable, "-m", "edge", "demo", "--faults", "garbage", "--resume", "--state-dir",
                           str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2
    assert "--faults runs its own batches" in done.stderr
