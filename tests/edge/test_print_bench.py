"""`lineside bench print` reports each driver beside its baseline, in the benchmark JSON convention."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import ROOT


def test_bench_print_json_names_headline_baseline_and_each_driver() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "edge", "bench", "print", "--units", "30", "--driver", "printer.zipher",
         "--driver", "printer.wsi", "--json"],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert set(result["headline"]) >= {"metric", "value", "unit", "target"}
    assert set(result["baseline"]) >= {"name", "value", "unit"}
    assert set(result["drivers"]) == {"printer.zipher", "printer.wsi"}
    for row in result["drivers"].values():
        assert row["problems"] == []
        assert row["printed"] == 30
        assert row["per_s"] > 0
        assert row["baseline_per_s"] > 0
    assert result["headline"]["value"] == min(row["per_s"] for row in result["drivers"].values())


def test_bench_print_refuses_an_unknown_driver() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "edge", "bench", "print", "--driver", "printer.nope"],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )
    assert done.returncode == 2
    assert "unknown printer driver printer.nope" in done.stderr
