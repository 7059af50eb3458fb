from __future__ import annotations

import pytest

from edge.errors import EdgeError
from edge.gs1 import (
    GS,
    Gs1SyntaxError,
    Gs1ValidationError,
    ai_spec,
    build,
    build_hri,
    parse,
    parse_and_validate,
    validate,
    validate_pairs,
)
from edge.gs1.bench import bench_gs1, make_mix

UNIT = "]d2" + "0109501101530003" + "17150119" + "10AB-123" + GS + "21XYZ"


def test_ai_spec_public_contract():
    serial = ai_spec("21")
    assert serial is not None
    assert (serial.fnc1, serial.charset, serial.min_length, serial.max_length) == (True, "X", 1, 20)
    assert serial.requires == ((("01",), ("03",), ("8006",)),)
    gtin = ai_spec("01")
    assert gtin is not None
    assert (gtin.fnc1, gtin.max_length, gtin.linters, gtin.dl_primary_key) == (False, 14, ("csum", "gcppos2"), True)
    assert gtin.dl_qualifiers == (("22", "10", "21"), ("235",))
    assert ai_spec("4309") is not None
    assert ai_spec("99").max_length == 90  # type: ignore[union-attr]
    assert ai_spec("3376") is None


def test_parse_scan_data_with_symbology_and_gs():
    parsed, issues = parse_and_validate(UNIT)
    assert parsed.symbology == "]d2"
    assert parsed.pairs == [("01", "09501101530003"), ("17", "150119"), ("10", "AB-123"), ("21", "XYZ")]
    assert issues == []
    assert parsed.elements[3].position == UNIT.index("21XYZ")


@pytest.mark.parametrize("prefix", ["", GS, "]C1", "]Q3", "]e0", "]J1", "]C1" + GS])
def test_parse_prefixes(prefix):
    assert parse(prefix + "0109501101530003" + "10AB").pairs == [("01", "09501101530003"), ("10", "AB")]


def test_bytes_and_hri_forms_agree():
    pairs = parse(UNIT).pairs
    assert parse(UNIT.encode()).pairs == pairs
    assert parse("(01)09501101530003(17)150119(10)AB-123(21)XYZ").pairs == pairs
    assert parse("[01]09501101530003[17]150119[10]AB-123[21]XYZ").pairs == pairs
    assert parse(r"(10)A\(B").pairs == [("10", "A(B")]


def test_non_gs1_symbology_is_reported():
    parsed, issues = parse_and_validate("]d1" + "0109501101530003" + "10AB")
    assert parsed.symbology == "]d1"
    assert [i.rule for i in issues] == ["SYMBOLOGY"]


@pytest.mark.parametrize(
    ("text", "rule", "position"),
    [
        ("", "EMPTY", 0),
        ("]d2", "EMPTY", 3),
        ("]", "SYMBOLOGY_ID", 0),
        ("0109501101530003" + "AB", "UNKNOWN_AI", 16),
        ("01095011015300", "TRUNCATED", 2),
        ("0109501" + GS + "101530003", "FNC1_IN_DATA", 7),
        ("10" + GS + "21X", "EMPTY_VALUE", 2),
        ("(01", "HRI_SYNTAX", 0),
        ("(0A)1", "UNKNOWN_AI", 1),
        ("(10)", "EMPTY_VALUE", 4),
    ],
)
def test_syntax_errors_name_rule_and_position(text, rule, position):
    with pytest.raises(Gs1SyntaxError) as caught:
        parse(text)
    assert isinstance(caught.value, EdgeError)
    assert (caught.value.issue.rule, caught.value.issue.position) == (rule, position)


def test_validation_reports_every_issue_with_positions():
    text = "]d2" + "0109501101530004" + "17150230" + "10AB CD" + GS + "21XYZ" + GS + "21XYW"
    issues = validate(parse(text))
    got = [(i.ai, i.rule, i.position) for i in issues]
    assert got == [
        ("01", "INCORRECT_CHECK_DIGIT", 3 + 2 + 13),
        ("17", "ILLEGAL_DAY", text.index("17150230") + 2 + 4),
        ("10", "INVALID_CSET82_CHARACTER", text.index("AB CD") + 2),
        ("21", "REPEAT_MISMATCH", text.rindex("21XYW")),
    ]


@pytest.mark.parametrize(
    ("value", "ok"),
    [("240229", True), ("230229", False), ("250200", True), ("251300", False), ("250431", False)],
)
def test_expiry_dates(value, ok):
    assert (validate(parse("0109501101530003" + "17" + value)) == []) is ok


def test_production_date_zero_day_rules():
    assert validate(parse("(01)09501101530003(4326)250600")) != []  # yymmdd: no DD=00


def test_associations():
    rules = [i.rule for i in validate(parse("21ABC"))]
    assert rules == ["REQUIRES"]
    rules = [i.rule for i in validate(parse("(01)09501101530003(02)09501101530003(37)1"))]
    assert "EXCLUDES" in rules


def test_build_fnc1_and_hri():
    pairs = [("01", "09501101530003"), ("10", "AB-123"), ("17", "150119"), ("21", "XYZ")]
    assert build(pairs) == "0109501101530003" + "10AB-123" + GS + "17150119" + "21XYZ"
    assert build(pairs, predefined_first=True, symbology="]d2") == (
        "]d2" + "0109501101530003" + "17150119" + "10AB-123" + GS + "21XYZ"
    )
    assert build_hri(pairs) == "(01)09501101530003(10)AB-123(17)150119(21)XYZ"
    assert parse(build(pairs)).pairs == pairs


def test_build_refuses_invalid_data():
    with pytest.raises(Gs1ValidationError) as caught:
        build([("01", "09501101530004"), ("21", "A B")])
    assert [i.rule for i in caught.value.issues] == ["INCORRECT_CHECK_DIGIT", "INVALID_CSET82_CHARACTER"]
    assert [i.rule for i in validate_pairs([("7", "1")])] == ["UNKNOWN_AI"]


def test_bench_mix_is_valid_and_reports_shape():
    assert all(parse_and_validate(text)[1] == [] for text in make_mix(2000))
    result = bench_gs1(strings=2000)
    assert result["headline"]["metric"] == "gs1_parse_validate_per_s"
    assert result["headline"]["target"] == 100_000
    assert result["details"]["issues_found"] == 0
    assert result["baseline"]["name"].startswith("biip")
