"""`lineside bench store`: serial transitions through the ledger beside one commit each, and the big batch.

Tiny sizes, no timing assertions: the shape of the result, that the baseline ran, that every transition
counted is on disk, and that the child's batch closes balanced.
"""

from __future__ import annotations

import json

import pytest

from edge.cli import _print_store_bench, main
from edge.serials.bench import TARGET_MILLION_PEAK_RSS_MB, TARGET_TRANSITIONS_PER_S, bench_serials
from edge.store.bench import TARGET_CHANGES_PER_S, bench_store


async def test_bench_serials_reports_headline_baseline_and_every_transition_on_disk(tmp_path):
    result = await bench_serials(
        tmp_path, transitions=2_000, callers=64, million_serials=5_000, generic_changes=300, baseline_units=50
    )
    headline, baseline, details = result["headline"], result["baseline"], result["details"]
    assert headline["metric"] == "durable_transitions_per_s"
    assert headline["unit"] == baseline["unit"] == "transitions/s"
    assert headline["target"] == TARGET_TRANSITIONS_PER_S
    assert headline["value"] == details["line"]["transitions_per_s"] > 0
    assert baseline["name"].startswith("one commit per transition")
    assert baseline["value"] > 0
    assert details["baseline"]["transitions"] == 150  # 50 units, three transitions each

    line, single, grouped = details["line"], details["single"], details["grouped"]
    assert line["transitions"] == 3 * (2_000 // 3)
    assert single["transitions"] == 2 * (2_000 // 2)
    assert single["moves"] == single["transitions"]  # one serial per move
    assert grouped["transitions"] == 16 * grouped["moves"]
    for item in (line, single, grouped):
        assert 0 < item["commits"] < item["moves"]  # grouped into commits, not one each

    disk = details["on_disk"]
    # What was moved, plus the untimed draw of the single and grouped passes' serials for the printer.
    drawn = single["transitions"] // 2 + grouped["transitions"] // 2
    moved = line["transitions"] + single["transitions"] + grouped["transitions"]
    assert disk["history_rows"] == disk["serials_in_transition_rows"] == disk["expected_history_rows"] == drawn + moved
    judged = line["transitions"] // 3 + drawn
    assert disk["serials_by_state"].get("commissioned", 0) + disk["serials_by_state"].get("rejected", 0) == judged
    assert set(disk["serials_by_state"]) <= {"commissioned", "rejected"}

    assert details["generic_store"]["execute"]["commits"] >= 1
    big = details["million_batch"]
    assert big["serials"] == 5_000
    assert big["balanced"] is True
    assert big["commissioned"] + big["rejected"] + big["returned_at_close"] == 5_000
    assert big["in_doubt_at_complete"] == 0
    assert big["peak_rss_mb"] > 0
    assert big["target_peak_rss_mb"] == TARGET_MILLION_PEAK_RSS_MB
    assert big["within_memory_target"] is (big["peak_rss_mb"] < TARGET_MILLION_PEAK_RSS_MB)
    assert details["sqlite_version"]
    assert details["cpus"] >= 1
    json.dumps(result)  # all of it is JSON


async def test_bench_serials_rejects_empty_runs(tmp_path):
    with pytest.raises(ValueError, match="at least 1"):
        await bench_serials(tmp_path, transitions=0, million_serials=None)
    with pytest.raises(ValueError, match="million_serials"):
        await bench_serials(tmp_path, transitions=10, million_serials=0)


def test_cli_bench_store_prints_one_json_object_and_text_beside_the_baseline(capsys):
    code = main(["bench", "store", "--json", "--transitions", "300", "--serials", "500"])
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert set(result) >= {"headline", "baseline", "details"}
    assert set(result["headline"]) >= {"metric", "value", "unit", "target"}
    assert set(result["baseline"]) >= {"name", "value", "unit"}
    assert result["details"]["million_batch"]["balanced"] is True

    _print_store_bench(result)  # the text form of the same figures
    out = capsys.readouterr().out
    assert f"{result['headline']['value']:,}" in out
    assert f"{result['baseline']['value']:,}" in out
    assert "baseline: one commit per transition" in out
    assert "500-serial batch" in out
    assert "balanced" in out


async def test_generic_store_bench_reports_headline_and_baseline(tmp_path):
    result = await bench_store(tmp_path, changes=300, batch_concurrency=30)
    headline, baseline, details = result["headline"], result["baseline"], result["details"]
    assert headline["metric"] == "durable_state_changes_per_s"
    assert headline["unit"] == baseline["unit"] == "changes/s"
    assert headline["target"] == TARGET_CHANGES_PER_S
    assert headline["value"] > 0
    assert baseline["name"] == "one commit per change"
    assert baseline["value"] > 0
    assert details["changes_on_disk"] == details["changes_expected_on_disk"] == 600
    assert details["execute"]["commits"] < 300  # grouped, not one per change


async def test_generic_store_bench_rejects_empty_runs(tmp_path):
    with pytest.raises(ValueError, match="at least 1"):
        await bench_store(tmp_path, changes=0, batch_concurrency=1)
