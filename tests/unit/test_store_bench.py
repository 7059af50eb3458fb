"""The store benchmark reports its headline, its baseline and every change on disk."""

from __future__ import annotations

import pytest

from edge.store.bench import TARGET_CHANGES_PER_S, bench_store


async def test_bench_reports_headline_and_baseline(tmp_path):
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


async def test_bench_rejects_empty_runs(tmp_path):
    with pytest.raises(ValueError, match="at least 1"):
        await bench_store(tmp_path, changes=0, batch_concurrency=1)
