"""`lineside epcis export|validate|hash|status|resend` on a real state directory."""

from __future__ import annotations

import json

import pytest

from edge.aggregation import ops as agg
from edge.cli import main
from edge.serials import ops as serial_ops
from edge.sync import outbox
from tests.unit.test_aggregation_ops import SIMPLE, change, open_db, running_batch

LATER = "2026-11-25T10:05:00.000000Z"
CONFIG = """line:
  id: line-1
  name: Line 1
  site_gln: "4012345000009"
  location: "urn:epc:id:sgln:4012345.00003.0"
storage:
  state_dir: {state}
epcis:
  biz_location: "urn:epc:id:sgln:4012345.00000.0"
  timezone: Europe/Berlin
"""


@pytest.fixture
def line(tmp_path):
    """A state directory with one closed batch (6 units in a case, one rejected) and its line configuration."""
    state = tmp_path / "state"
    state.mkdir()
    conn = open_db(state)
    batch_id, ids = running_batch(conn, units=5, rejected=1, product=SIMPLE)
    case = change(conn, agg.open_container, batch_id, "case", now=LATER)
    change(conn, agg.pack, case, serial_ids=ids[:4], now=LATER)
    change(conn, agg.close_container, case, now=LATER)
    change(conn, serial_ops.complete_batch, batch_id, now=LATER, operator="op")
    change(conn, serial_ops.close_batch, batch_id, now=LATER, operator="op", return_to_pool=False)
    conn.close()
    config = tmp_path / "line.yaml"
    config.write_text(CONFIG.format(state=state), encoding="utf-8")
    return state, config


def test_export_writes_one_valid_document_whose_ids_the_hash_command_reproduces(line, tmp_path, capsys, corpora):
    _, config = line
    out = tmp_path / "batch.jsonld"
    assert main(["epcis", "export", "--batch", "WO-1", "-c", str(config), "-o", str(out)]) == 0
    assert "3 events written" in capsys.readouterr().err  # commissioning, decommissioning, packing
    document = json.loads(out.read_bytes())
    events = document["epcisBody"]["eventList"]
    assert [e["type"] for e in events] == ["ObjectEvent", "ObjectEvent", "AggregationEvent"]
    assert events[0]["eventTimeZoneOffset"] == "+01:00"
    assert events[0]["bizLocation"] == {"id": "urn:epc:id:sgln:4012345.00000.0"}
    assert main(["epcis", "validate", str(out), "--checks", "--schemas", str(corpora / "gs1-EPCIS")]) == 0
    assert capsys.readouterr().out.strip() == f"{out}: valid"
    assert main(["epcis", "hash", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == [e["eventID"] for e in events]


def test_export_as_epcis_12_xml_for_a_dscsa_partner_validates(line, tmp_path, capsys, corpora):
    _, config = line
    out = tmp_path / "batch.xml"
    assert main(["epcis", "export", "--batch", "1", "-c", str(config), "--profile", "dscsa-epcis12-xml",
                 "-o", str(out)]) == 0
    text = out.read_text(encoding="utf-8")
    assert 'schemaVersion="1.2"' in text
    assert "<sbdh:Receiver>" in text
    schemas = corpora / "gs1-EPCIS"
    code = main(["epcis", "validate", str(out), "--schemas", str(schemas), "--json"])
    if code == 2:
        pytest.skip(f"the EPCIS 1.2 XSDs are not installed (scripts/test fetches them): {capsys.readouterr().err}")
    assert code == 0, capsys.readouterr()


def test_validate_names_what_is_wrong_and_exits_1(tmp_path, capsys, corpora):
    bad = tmp_path / "bad.jsonld"
    bad.write_text(json.dumps({
        "@context": ["https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld"], "type": "EPCISDocument",
        "schemaVersion": "2.0", "creationDate": "2026-11-25T10:00:00Z",
        "epcisBody": {"eventList": [{"type": "ObjectEvent", "eventTime": "2026-11-25T10:00:00Z",
                                     "eventTimeZoneOffset": "+00:00", "action": "ADD", "bizStep": "comissioning",
                                     "epcList": ["urn:epc:id:sgtin:4012345.000001.A"]}]},
    }), encoding="utf-8")
    assert main(["epcis", "validate", str(bad), "--schemas", str(corpora / "gs1-EPCIS")]) == 1
    out = capsys.readouterr().out
    assert "comissioning" in out
    assert "event 0" in out


def test_validate_without_schemas_is_bad_input(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("LINESIDE_EPCIS_SCHEMAS", raising=False)
    doc = tmp_path / "doc.jsonld"
    doc.write_text("{}", encoding="utf-8")
    assert main(["epcis", "validate", str(doc), "--schemas", str(tmp_path / "nowhere")]) == 2
    assert "LINESIDE_EPCIS_SCHEMAS" in capsys.readouterr().err


def test_hash_of_garbage_names_the_problem(tmp_path, capsys):
    doc = tmp_path / "doc.json"
    doc.write_text("not json at all", encoding="utf-8")
    assert main(["epcis", "hash", str(doc)]) == 2
    assert str(doc) in capsys.readouterr().err


def test_export_of_an_unknown_batch_or_without_context_is_bad_input(line, capsys):
    state, config = line
    assert main(["epcis", "export", "--batch", "WO-404", "-c", str(config)]) == 2
    assert "no batch 'WO-404'" in capsys.readouterr().err
    assert main(["epcis", "export", "--batch", "1", "--state-dir", str(state)]) == 2
    assert "give the line configuration with -c FILE" in capsys.readouterr().err


def test_status_and_resend_offline(line, capsys):
    state, config = line
    conn = open_db(state)
    change(conn, outbox.start_batch, "l4", 1, {"id": "x"}, LATER)
    change(conn, outbox.cut, "l4", 1, max_rows=2, complete=True, now=LATER)
    first = outbox.next_message(conn, "l4")
    assert first is not None
    change(conn, outbox.end_attempt, first.id, "failed", "upstream said 400", now=LATER, status=400)
    conn.close()
    assert main(["epcis", "status", "--state-dir", str(state), "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert (row["target"], row["state"], row["messages"], row["reason"]) == ("l4", "failed", 2, "upstream said 400")
    assert main(["epcis", "resend", "--target", "l4", "--batch", "WO-1", "-c", str(config), "--operator", "ana",
                 "--reason", "partner fixed its schema"]) == 0
    assert "1 message(s) of batch WO-1 queued again for l4" in capsys.readouterr().out
    assert main(["epcis", "resend", "--target", "l4", "--batch", "WO-1", "-c", str(config), "--operator", "ana",
                 "--reason", "again"]) == 1
    assert "nothing failed or delivered" in capsys.readouterr().err
