"""`lineside bench epcis`: the batch it builds, the JSON shape with tiny batches, and that every export is the same.

No timing assertions: the figures are the benchmark's. The exports run in child processes as in the benchmark.
"""

from __future__ import annotations

import json
import math

import pytest

from edge.cli import main
from edge.epcis import bench
from edge.epcis.bench import CASE_UNITS, PALLET_CASES, REJECT_EVERY, TARGET_PEAK_MB, TARGET_S

UNITS = 45  # 1 reject, 44 good: four full cases and a short one, on one pallet closed short


def test_the_batch_is_made_closed_and_its_outbox_holds_one_row_per_expected_event(tmp_path):
    built = bench.build_batch(tmp_path / "state", UNITS)
    assert built.units == UNITS
    assert built.rejected == UNITS // REJECT_EVERY
    assert built.commissioned == UNITS - built.rejected
    assert built.cases == math.ceil(built.commissioned / CASE_UNITS)
    assert built.pallets == math.ceil(built.cases / PALLET_CASES)
    # Every verdict its own commissioning or decommissioning row, and one row per case packed and per case palletised.
    assert built.outbox_rows == built.expected_events == UNITS + 2 * built.cases
    with pytest.raises(ValueError, match="at least 1 unit"):
        bench.build_batch(tmp_path / "none", 0)


def _events(path):
    return json.loads(path.read_bytes())["epcisBody"]["eventList"]


def test_streamed_in_memory_and_cli_exports_hold_the_same_events(tmp_path):
    state = tmp_path / "state"
    built = bench.build_batch(state, UNITS)
    streamed = bench.run_export(state, built.batch_id, "json-ld", tmp_path / "streamed.jsonld")
    whole = bench.run_export(state, built.batch_id, "in-memory", tmp_path / "whole.json")
    xml = bench.run_export(state, built.batch_id, "xml-1.2", tmp_path / "batch.xml")
    assert streamed["events"] == whole["events"] == xml["events"] == built.expected_events
    events = _events(tmp_path / "streamed.jsonld")
    assert len(events) == built.expected_events
    assert all(event["eventID"].startswith("ni:///sha-256;") for event in events)
    assert _events(tmp_path / "whole.json") == events  # the baseline writes the same document, built whole
    # `lineside epcis export` of the same batch: the benchmark measures the command's own path.
    out = tmp_path / "cli.jsonld"
    assert main(["epcis", "export", "--batch", str(built.batch_id), "--state-dir", str(state), "-o", str(out)]) == 0
    assert _events(out) == events
    assert (tmp_path / "batch.xml").read_bytes().count(b"<eventID>") == built.expected_events
    kinds = {(event["type"], event.get("bizStep")) for event in events}
    assert kinds == {("ObjectEvent", "commissioning"), ("ObjectEvent", "decommissioning"),
                     ("AggregationEvent", "packing")}
    for figures in (streamed, whole, xml):
        assert figures["peak_mb"] > 0
        assert figures["rss_before_mb"] > 0
        assert figures["export_s"] > 0


def test_bench_json_shape_with_a_smaller_baseline_batch(tmp_path):
    result = bench.bench_epcis(tmp_path, units=UNITS, baseline_units=20, xml=False)
    head, base, details = result["headline"], result["baseline"], result["details"]
    assert head["unit"] == base["unit"] == "s"
    assert head["target"] == TARGET_S
    assert head["target_peak_mb"] == TARGET_PEAK_MB
    assert head["value"] == details["exports"]["json_ld"]["export_s"] > 0
    assert f"{UNITS}-unit batch" in head["metric"]
    assert base["name"] == "whole document built in memory, then json.dumps (20 units)"
    assert base["value"] == details["like_for_like"]["whole_document_in_memory"]["export_s"] > 0
    assert set(details["exports"]) == {"json_ld"}
    assert details["events"] == details["batch"]["expected_events"]
    like = details["like_for_like"]
    assert like["units"] == details["baseline_batch"]["units"] == 20
    assert like["streamed_json_ld"]["events"] == like["whole_document_in_memory"]["events"]
    assert like["streamed_json_ld"]["events"] == details["baseline_batch"]["expected_events"]
    assert like["baseline_extrapolated_to_units"]["units"] == UNITS
    json.dumps(result)
    with pytest.raises(ValueError, match="at least 1"):
        bench.bench_epcis(tmp_path / "none", units=0)


def test_bench_epcis_through_the_command_line(capsys, monkeypatch):
    assert main(["bench", "epcis", "--json", "--units", str(UNITS)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert set(result) >= {"headline", "baseline", "details"}
    assert set(result["headline"]) >= {"metric", "value", "unit", "target"}
    assert set(result["baseline"]) >= {"name", "value", "unit"}
    details = result["details"]
    # The baseline batch is never bigger than the headline's: here they are the same batch.
    assert details["baseline_batch"] == details["batch"]
    assert result["baseline"]["name"] == f"whole document built in memory, then json.dumps ({UNITS} units)"
    assert details["exports"]["xml_1_2"]["events"] == details["exports"]["json_ld"]["events"] == details["events"]
    assert details["within_memory_target"] is (details["peak_mb"] <= TARGET_PEAK_MB)

    monkeypatch.setattr(bench, "run", lambda units: result)  # the text form of the same figures
    assert main(["bench", "epcis", "--units", str(UNITS)]) == 0
    text = capsys.readouterr().out
    assert "streamed EPCIS 1.2 XML" in text
    assert "baseline, whole document built in memory" in text
    assert "(target 20)" in text
