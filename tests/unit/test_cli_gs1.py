"""The `lineside gs1` and `lineside bench` command-line contracts: output shape and exit codes."""

import io
import json

import pytest

from edge.cli import main

GOOD = "]d2010950600013435217281231{GS}10LOT7\\x1d21SER1"


def _run(capsys, *argv):
    code = main(list(argv))
    return code, capsys.readouterr().out


def test_parse_valid_scan_data_with_typed_gs(capsys):
    code, out = _run(capsys, "gs1", "parse", GOOD, "--json")
    report = json.loads(out)
    assert code == 0
    assert report == {
        "ok": True,
        "elements": [
            {"ai": "01", "value": "09506000134352"},
            {"ai": "17", "value": "281231"},
            {"ai": "10", "value": "LOT7"},
            {"ai": "21", "value": "SER1"},
        ],
        "hri": "(01)09506000134352(17)281231(10)LOT7(21)SER1",
        "digital_link": "https://id.gs1.org/01/09506000134352/10/LOT7/21/SER1?17=281231",
        "errors": [],
    }


def test_parse_literal_gs_characters(capsys):
    code, out = _run(capsys, "gs1", "parse", "010950600013435210LOT7\x1d21SER1", "--json")
    assert code == 0
    assert [e["ai"] for e in json.loads(out)["elements"]] == ["01", "10", "21"]


def test_parse_invalid_names_ai_position_and_rule(capsys):
    code, out = _run(capsys, "gs1", "parse", "(01)09506000134353(17)281232", "--json")
    report = json.loads(out)
    assert code == 1
    assert not report["ok"]
    assert [(e["ai"], e["position"], e["rule"]) for e in report["errors"]] == [
        ("01", 17, "INCORRECT_CHECK_DIGIT"),
        ("17", 26, "ILLEGAL_DAY"),
    ]


def test_parse_digital_link(capsys):
    code, out = _run(capsys, "gs1", "parse", "https://id.gs1.org/01/09506000134352/21/ABC?17=281231", "--json")
    assert code == 0
    assert json.loads(out)["hri"] == "(01)09506000134352(21)ABC(17)281231"


def test_parse_unusable_input_exits_2(capsys):
    code, out = _run(capsys, "gs1", "parse", "no AI here", "--json")
    assert code == 2
    assert json.loads(out)["errors"][0]["rule"] == "UNKNOWN_AI"


def test_parse_stdin_answers_one_line_per_input_in_order(capsys, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO("010950600013435217281231\n(01)09506000134353\n0109506000134352\n"))
    code, out = _run(capsys, "gs1", "parse", "--stdin", "--json")
    answers = [json.loads(line) for line in out.splitlines()]
    assert [a["ok"] for a in answers] == [True, False, True]
    assert code == 1


def test_build_gives_fnc1_form_hri_and_link(capsys):
    code, out = _run(capsys, "gs1", "build", "--ai", "01=09506000134352", "--ai", "21=ABC", "--ai", "17=281231",
                     "--json")
    report = json.loads(out)
    assert code == 0
    assert report["element_string"] == "010950600013435221ABC\x1d17281231"
    assert '"element_string": "010950600013435221ABC\\u001d17281231"' in out
    assert report["hri"] == "(01)09506000134352(21)ABC(17)281231"


def test_build_invalid_exits_1_without_element_string(capsys):
    code, out = _run(capsys, "gs1", "build", "--ai", "01=09506000134353", "--json")
    assert code == 1
    assert json.loads(out)["element_string"] is None


def test_build_rejects_malformed_pairs(capsys):
    assert main(["gs1", "build", "--ai", "01:0950"]) == 2


@pytest.mark.parametrize("name", ["gs1"])
def test_bench_json_has_headline_and_baseline(capsys, name):
    code, out = _run(capsys, "bench", name, "--strings", "2000", "--json")
    result = json.loads(out)
    assert code == 0
    assert {"metric", "value", "unit", "target"} <= result["headline"].keys()
    assert {"name", "value", "unit"} <= result["baseline"].keys()
    assert result["headline"]["value"] > 0
    assert result["baseline"]["value"] > 0
