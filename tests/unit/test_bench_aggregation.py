"""`lineside bench aggregation`: the JSON shape, with few repetitions (timing is the benchmark's, not a test's)."""

from __future__ import annotations

import functools
import json

import pytest

from edge.aggregation import bench
from edge.cli import main

SETS = ("24", "100", "100-noisy")
READERS = ("ours", "zxing_cpp_default")


def test_bench_json_shape():
    result = bench.bench_aggregation(frames=1, repeat=1)
    head, base = result["headline"], result["baseline"]
    assert head["unit"] == "ms"
    assert head["target"] == 25.0
    assert head["value"] > 0
    assert head["codes"] == 100
    assert head["all_found"] is True  # clean frames: every code found
    assert base["unit"] == "ms"
    assert base["name"]
    assert base["value"] > 0
    sets = result["details"]["sets"]
    assert tuple(sets) == SETS
    for name in SETS:
        for reader in READERS:
            figures = sets[name][reader]
            assert set(figures) == {"decodes", "median_ms", "max_ms", "codes", "min_found", "all_found"}
            assert figures["decodes"] == 1
            assert figures["codes"] == (24 if name == "24" else 100)
    assert sets["24"]["ours"]["min_found"] == 24
    assert result["details"]["frame"] == {"width": 2448, "height": 2048, "module_px": 4}
    json.dumps(result)
    text = bench.format_text(result)
    assert "100-noisy" in text
    assert "target 25" in text


@pytest.mark.parametrize("kwargs", [{"frames": 0}, {"repeat": 0}])
def test_bench_refuses_empty_runs(kwargs):
    with pytest.raises(ValueError, match="at least one"):
        bench.bench_aggregation(**kwargs)


def test_bench_through_the_command_line(capsys, monkeypatch):
    monkeypatch.setattr(bench, "bench_aggregation", functools.partial(bench.bench_aggregation, frames=1, repeat=1))
    assert main(["bench", "aggregation", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["headline"]["unit"] == "ms"
    assert out["baseline"]["name"] == "zxing-cpp read_barcodes with default options"
    assert main(["bench", "aggregation"]) == 0
    assert "baseline, zxing-cpp" in capsys.readouterr().out
