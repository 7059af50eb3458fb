"""Serials and complete codes from outside: real-looking deliveries parse; every refusal names FILE:LINE(:COL).

Each bad-*.yaml (and *-for-*.yaml) file in serial_imports/ names its market in a ``# market:`` line and lists
the exact problems it must produce in ``# expect: LINE:COL: message`` lines at its end.
"""

from __future__ import annotations

import json
import re
import tracemalloc
from pathlib import Path

import pytest

from edge.errors import SerialImportError
from edge.gs1.element import GS, build
from edge.markets import SerialSpec, load_markets
from edge.serials.imports import (
    MAX_SERIALS,
    REQUEST_BODY,
    CompleteCode,
    SerialRange,
    Serials,
    parse_serial_import,
)
from tests.conftest import ROOT

DATA = Path(__file__).parent / "serial_imports"
BAD_FILES = sorted(p for p in DATA.glob("*.yaml") if p.name.startswith("bad-") or "-for-" in p.name)
EU_GTIN = "04012345000016"
RU_GTIN = "04607012345677"
# (serial, AI 91 verification key, AI 92 crypto code), as the Russian operator issues them.
RU_TAILS = [
    ("4Nkl2Bwzr_tqi", "4eAK", "OkM5B+oaygstwJrLlk6SnDvu72Lz/O2+yh19DcQGN28S"),
    ("hC4egpFrYMqkh", "z3Zl", "iBET6+uZh+7/3Elo6M4h5X29Ii/vMY0S5BLA5KZfPFit"),
    ("8!Nuti6pBgv5w", "lK1U", "Rn0xTZwBNxJGstDD8pm5pP/7VTa3r6dIzEZWFG5Y9CQb"),
    ("m69<WHao_/WM<", "sWh7", "/1k7Wp94PjMbdAL6q0XDtUtbOjbliQMhM3VNHtXNojIl"),
]


def ru_code(serial="4Nkl2Bwzr_tqi", key="4eAK", crypto=RU_TAILS[0][2], gtin=RU_GTIN, order=("01", "21", "91", "92")):
    values = {"01": gtin, "21": serial, "91": key, "92": crypto}
    return build([(ai, values[ai]) for ai in order])


RU_CODES = [ru_code(*tail) for tail in RU_TAILS]


@pytest.fixture(scope="module")
def packs():
    return load_markets(ROOT / "config" / "markets")


@pytest.fixture(scope="module")
def eu(packs):
    return packs["eu-fmd"]


@pytest.fixture(scope="module")
def ru(packs):
    return packs["ru-mdlp"]


@pytest.fixture(scope="module")
def generic(packs):
    return packs["generic-gs1"]


def refusal(data, source, **kwargs):
    with pytest.raises(SerialImportError) as caught:
        parse_serial_import(data, source, **kwargs)
    return str(caught.value).splitlines()


# Good deliveries


def test_yaml_serials_from_l4(eu):
    path = DATA / "eu-serials.yaml"
    batch = parse_serial_import(path.read_bytes(), str(path), market=eu)
    assert batch.gtin == EU_GTIN
    assert batch.request_token == "REQ-2026-42"
    assert list(batch.serials) == ["K7QX2M9P4TZA", "2HW8ND5RQ0XV", "T3MB6YCK1PJE", "9VFL4SRG8UDN", "Q1ZE7HXW3CMA"]
    assert batch.codes == ()
    assert batch.source == str(path)
    assert batch.sequential is False
    assert batch.count == 5


def test_json_serials_from_a_request_body(eu):
    body = (DATA / "eu-serials.json").read_bytes()
    batch = parse_serial_import(body, REQUEST_BODY, market=eu)
    assert batch.request_token == "REQ-2026-43"
    assert list(batch.serials) == ["K7QX2M9P4TZA", "2HW8ND5RQ0XV", "T3MB6YCK1PJE"]
    assert batch.source == REQUEST_BODY


def test_ranges_are_sequential_and_expand_in_order(generic):
    path = DATA / "generic-ranges.yaml"
    batch = parse_serial_import(path.read_text(encoding="utf-8"), path.name, market=generic)
    assert batch.gtin == "04012345000023"  # GTIN-13 kept as 14 digits
    assert batch.sequential is True
    assert batch.serials.ranges == (SerialRange(100000, 100099, 12), SerialRange(200000, 200000, 12))
    serials = list(batch.serials)
    assert len(serials) == len(batch.serials) == 102
    assert serials[:3] == ["000000300000", "000000100000", "000000100001"]
    assert serials[-2:] == ["000000100099", "000000200000"]


@pytest.mark.parametrize("name", ["ru-codes.yaml", "ru-codes.json", "ru-codes.txt"])
def test_complete_codes_survive_byte_exact(ru, name):
    batch = parse_serial_import((DATA / name).read_bytes(), name, market=ru)
    assert batch.gtin == RU_GTIN
    assert [code.code for code in batch.codes] == [code.encode("ascii") for code in RU_CODES]
    assert [code.serial for code in batch.codes] == [serial for serial, _, _ in RU_TAILS]
    first = batch.codes[0]
    assert first.elements == (("01", RU_GTIN), ("21", "4Nkl2Bwzr_tqi"), ("91", "4eAK"), ("92", RU_TAILS[0][2]))
    assert first.code.count(GS.encode()) == 2
    assert len(batch.serials) == 0
    assert batch.count == 4
    assert batch.request_token == (None if name.endswith(".txt") else "b7c4e1d0-5a9f-4c1e-9d2b-7f3a6e8c1b25")


def test_codes_keep_their_order_and_separators_as_received(ru):
    # 92 before 91, and a redundant GS after the fixed-length GTIN: unusual, valid, and printed as received.
    reordered = ru_code(order=("01", "21", "92", "91"))
    assert reordered.index("92") < reordered.index(GS + "91")
    padded = "01" + RU_GTIN + GS + "21" + "hC4egpFrYMqkh" + GS + "91z3Zl" + GS + "92" + RU_TAILS[1][2]
    batch = parse_serial_import(json.dumps({"gtin": RU_GTIN, "codes": [reordered, padded]}), "c.json", market=ru)
    assert [code.code for code in batch.codes] == [reordered.encode(), padded.encode()]
    assert [ai for ai, _ in batch.codes[0].elements] == ["01", "21", "92", "91"]


def test_symbology_identifier_and_leading_fnc1_are_stripped(ru):
    text = f"]d2{RU_CODES[0]}\n{GS}{RU_CODES[1]}\n"
    batch = parse_serial_import(text, "scanned.txt", market=ru)
    assert [code.code for code in batch.codes] == [RU_CODES[0].encode(), RU_CODES[1].encode()]
    assert batch.codes[0] == CompleteCode("4Nkl2Bwzr_tqi", RU_CODES[0].encode(), batch.codes[0].elements)


def test_crlf_text_file_of_codes(ru):
    data = (DATA / "ru-codes.txt").read_bytes().replace(b"\n", b"\r\n")
    assert b"\r\n\r\n" in data  # the blank line is there too
    batch = parse_serial_import(data, "order.txt", market=ru)
    assert [code.code for code in batch.codes] == [code.encode() for code in RU_CODES]
    assert not any(b"\r" in code.code for code in batch.codes)


def test_crlf_text_file_of_serials_with_a_bom(eu):
    data = "\ufeffK7QX2M9P4TZA\r\n\r\n2HW8ND5RQ0XV\r\n   \r\nT3MB6YCK1PJE".encode()
    batch = parse_serial_import(data, "serials.txt", market=eu, gtin="4012345000016")
    assert list(batch.serials) == ["K7QX2M9P4TZA", "2HW8ND5RQ0XV", "T3MB6YCK1PJE"]
    assert batch.gtin == EU_GTIN
    assert batch.request_token is None


def test_raw_gs_byte_inside_a_json_string_is_accepted(ru):
    body = '{"gtin": "%s", "codes": ["%s"]}' % (RU_GTIN, RU_CODES[0])  # noqa: UP031 - the GS must stay raw
    assert GS in body
    assert parse_serial_import(body, REQUEST_BODY, market=ru).codes[0].code == RU_CODES[0].encode()


def test_a_narrower_serial_format_of_the_product(eu):
    product = SerialSpec(charset="upper_alphanumeric", length=12)
    good = (DATA / "eu-serials.yaml").read_text(encoding="utf-8")
    assert parse_serial_import(good, "s.yaml", market=eu, serial_format=product).count == 5
    problems = refusal(f'gtin: "{EU_GTIN}"\nserials: ["k7qx2m9p4tza", "K7QX2M9P4TZ"]\n', "s.yaml",
                       market=eu, serial_format=product)
    assert problems == [
        ('s.yaml:2:11: serial "k7qx2m9p4tza" has "a", "k", "m", "p", "q", "t", "x", "z", outside the serial format'
        " (upper_alphanumeric)"),
        's.yaml:2:27: serial "K7QX2M9P4TZ" has 11 characters; the serial format takes 12',
    ]


@pytest.mark.parametrize(
    ("data", "source", "expected"),
    [
        (f'{{"gtin": "{EU_GTIN}", "serials": ["K7QX2M9P4TZA"]}}', REQUEST_BODY, "json"),
        (f'gtin: "{EU_GTIN}"\nserials: [K7QX2M9P4TZA]\n', REQUEST_BODY, "yaml"),
        ("K7QX2M9P4TZA\n2HW8ND5RQ0XV\n", REQUEST_BODY, "text"),
        ("K7QX2M9P4TZA\n", "serials.lst", "text"),
        (f'gtin: "{EU_GTIN}"\nserials: [K7QX2M9P4TZA]\n', "answer.yml", "yaml"),
    ],
)
def test_the_format_is_found_by_suffix_or_content(eu, data, source, expected):
    gtin = EU_GTIN if expected == "text" else None
    batch = parse_serial_import(data, source, market=eu, gtin=gtin)
    assert batch.serials[0] == "K7QX2M9P4TZA"
    assert batch.request_token is None


def test_kind_overrides_the_suffix(eu):
    batch = parse_serial_import("K7QX2M9P4TZA\n", "serials.yaml", market=eu, kind="text", gtin=EU_GTIN)
    assert list(batch.serials) == ["K7QX2M9P4TZA"]


def test_a_million_serial_range_stays_lazy(generic):
    doc = f'gtin: "{EU_GTIN}"\nranges: [{{first: "000000000000", last: "000000999999"}}]\n'
    tracemalloc.start()
    try:
        batch = parse_serial_import(doc, "big.yaml", market=generic)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2_000_000  # a tuple of a million serials would take about 70 MB
    serials = batch.serials
    assert len(serials) == 1_000_000
    assert (serials[0], serials[123_456], serials[-1]) == ("000000000000", "000000123456", "000000999999")
    assert "000000500000" in serials
    assert "000001000000" not in serials
    assert "00000050000" not in serials
    assert sum(1 for _ in serials) == 1_000_000


def test_a_large_json_list_has_no_node_limit(eu):
    serials = [f"S{n:011d}" for n in range(200_000)]
    body = json.dumps({"gtin": EU_GTIN, "serials": serials})
    assert parse_serial_import(body, REQUEST_BODY, market=eu).serials.listed == tuple(serials)


def test_serials_behave_as_a_sequence():
    serials = Serials(("A", "B"), (SerialRange(8, 11, 2),))
    assert list(serials) == ["A", "B", "08", "09", "10", "11"]
    assert len(serials) == 6
    assert serials[2] == "08"
    assert serials[-1] == "11"
    assert serials[1:4] == ["B", "08", "09"]
    assert serials.index("10") == 4
    assert "B" in serials
    assert "09" in serials
    assert "12" not in serials
    assert serials == Serials(("A", "B"), (SerialRange(8, 11, 2),))
    with pytest.raises(IndexError, match="serial index 6 out of range for 6 serials"):
        serials[6]


# Refusals


def expectations(path: Path) -> list[str]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return [f"{path.name}:{line.removeprefix('# expect: ')}" for line in lines if line.startswith("# expect: ")]


def test_there_are_bad_files():
    assert len(BAD_FILES) >= 6


@pytest.mark.parametrize("path", BAD_FILES, ids=[path.stem for path in BAD_FILES])
def test_bad_file_reports_exactly_what_it_expects(packs, path):
    text = path.read_text(encoding="utf-8")
    market = re.search(r"^# market: (\S+)$", text, re.MULTILINE)
    assert market, f"{path} has no '# market: ID' line"
    expected = expectations(path)
    assert expected, f"{path} has no '# expect: LINE:COL: message' line"
    assert refusal(path.read_bytes(), path.name, market=packs[market[1]]) == expected


def test_json_refusals_name_line_and_column(eu):
    body = '{\n  "gtin": "%s",\n  "serials": ["K7QX2M9P4TZA", 42,\n    "K7QX2M9P4TZA"],\n  "gtin": "x"\n}' % EU_GTIN  # noqa: UP031
    assert refusal(body, "answer.json", market=eu) == [
        "answer.json:3:31: serial must be a string in quotes, got 42",
        'answer.json:4:5: serial "K7QX2M9P4TZA" appears twice (first at answer.json:3:15)',
        'answer.json:5:3: duplicate key "gtin" (first at answer.json:2:3)',
    ]


def test_json_syntax_error_names_its_position(eu):
    assert refusal('{"gtin": "%s",\n "serials": [1,]}' % EU_GTIN, "a.json", market=eu) == [  # noqa: UP031
        "a.json:2:16: JSON syntax: Expecting value",
    ]


def test_yaml_syntax_and_raw_gs_bytes(eu, ru):
    assert refusal("gtin: [\n", "a.yaml", market=eu)[0].startswith("a.yaml:2:1: YAML syntax")
    assert refusal(f'gtin: "{RU_GTIN}"\ncodes: ["{RU_CODES[0]}"]\n', "a.yaml", market=ru) == [
        ("a.yaml:2:41: character '\\x1d' is not allowed in YAML text:"
        ' write GS as "\\x1d" inside a double-quoted string'),
    ]


def test_document_level_refusals(eu):
    assert refusal("", "a.yaml", market=eu, kind="yaml") == [
        "a.yaml:1:1: the document is empty: give gtin: and serials:, ranges: or codes:",
    ]
    assert refusal("- K7QX2M9P4TZA\n", "a.yaml", market=eu) == [
        "a.yaml:1:1: the top level must be a mapping with gtin: and serials:, ranges: or codes:",
    ]
    assert refusal("serials: [K7QX2M9P4TZA]\n", "a.yaml", market=eu) == [
        'a.yaml:1:1: no gtin: say which GTIN the serials are for, like gtin: "04012345000016"',
    ]
    assert refusal(f'gtin: "{EU_GTIN}"\nserials: []\n', "a.yaml", market=eu) == [
        "a.yaml:1:1: nothing to import: give serials:, ranges: or codes:",
    ]
    assert refusal(f'gtin: "{EU_GTIN}"\nserials: [A]\nrequest_token: " "\n', "a.yaml", market=eu) == [
        "a.yaml:3:16: request_token is blank: give the token or leave the key out",
    ]


def test_gtin_given_with_the_import_must_agree(eu):
    doc = f'gtin: "{EU_GTIN}"\nserials: [K7QX2M9P4TZA]\n'
    assert parse_serial_import(doc, "a.yaml", market=eu, gtin="4012345000016").gtin == EU_GTIN
    assert refusal(doc, "a.yaml", market=eu, gtin="04012345000023") == [
        "a.yaml:1:7: GTIN 04012345000016 is not 04012345000023, the GTIN this import was asked for",
    ]
    assert refusal(doc, "a.yaml", market=eu, gtin="4012345000017") == [
        "a.yaml: the GTIN given with the import: GTIN '4012345000017': check digit is 7, should be 6",
    ]


def test_more_than_twenty_problems_are_counted(eu):
    serials = [f"BAD SERIAL {n}" for n in range(30)]
    problems = refusal(json.dumps({"gtin": EU_GTIN, "serials": serials}), "a.json", market=eu)
    assert len(problems) == 21
    assert problems[0] == 'a.json:1:40: serial "BAD SERIAL 0" has " ", outside the serial format (cset82)'
    assert problems[-1] == "... and 10 more problems (30 in all)"


def test_an_import_is_capped(generic):
    doc = f'gtin: "{EU_GTIN}"\nranges: [{{first: "000000000000", last: "{MAX_SERIALS:012d}"}}]\n'
    assert refusal(doc, "a.yaml", market=generic) == [
        "a.yaml:1:1: 5,000,001 serials in one import; at most 5,000,000 are taken at once: split it",
    ]


def test_text_serials_need_a_gtin_and_are_checked(eu):
    text = "K7QX2M9P4TZA\nK7QX 2M9P4TZA\n\nK7QX2M9P4TZA\n"
    assert refusal(text, "serials.txt", market=eu) == [
        "serials.txt: a list of serials names no GTIN: give the GTIN with the import",
        'serials.txt:2: serial "K7QX 2M9P4TZA" has " ", outside the serial format (cset82)',
        'serials.txt:4: serial "K7QX2M9P4TZA" appears twice (first at serials.txt:1)',
    ]


def test_text_carriage_return_inside_a_line(ru):
    text = RU_CODES[0] + "\n" + RU_CODES[1].replace(GS, "\r", 1) + "\r\n"
    assert refusal(text, "order.txt", market=ru) == [
        (f"order.txt:2: carriage return inside the line {json.dumps(RU_CODES[1].replace(GS, chr(13), 1))}:"
        " a serial or code is one line"),
    ]


def test_text_codes_take_the_gtin_of_the_first_and_must_share_it(ru):
    other = ru_code(serial="hC4egpFrYMqkh", gtin="04607012345684")
    problems = refusal(f"{RU_CODES[0]}\n{other}\n", "order.txt", market=ru)
    assert problems == [
        f"order.txt:2: code {json.dumps(other)}: AI (01) is 04607012345684, but this import is for GTIN {RU_GTIN}",
    ]
    assert parse_serial_import(f"{RU_CODES[0]}\n", "order.txt", market=ru).gtin == RU_GTIN


def test_text_file_holds_one_kind(ru):
    assert refusal(f"{RU_CODES[0]}\n\n4Nkl2Bwzr_tqX\n", "order.txt", market=ru) == [
        ("order.txt:3: this line is a serial: a file holds serials or complete codes, not both"
        " (the first complete code at order.txt:1)"),
    ]


def test_text_refusals_by_market(eu, ru):
    assert refusal(f"{RU_CODES[0]}\n", "order.txt", market=eu, gtin=RU_GTIN) == [
        "order.txt:1: this market (eu-fmd) takes serials, not complete codes",
    ]
    assert refusal("4Nkl2Bwzr_tqi\n", "order.txt", market=ru, gtin=RU_GTIN) == [
        "order.txt:1: this market (ru-mdlp) takes complete codes with their crypto tail, not serials",
    ]


def test_text_with_literal_gs_gets_a_hint(ru):
    text = RU_CODES[0].replace(GS, "<GS>")
    problems = refusal(text + "\n", "order.txt", market=ru, gtin=RU_GTIN)
    assert len(problems) == 1
    assert problems[0].endswith("GS must be the single byte 0x1D, not written out as text")


def test_a_long_numeric_serial_starting_01_is_still_a_serial(eu):
    # 20 digits that even parse as (01)(21): without a GS and within the serial length, it is a serial.
    serial = "01" + EU_GTIN + "2100"
    batch = parse_serial_import(serial + "\n", "serials.txt", market=eu, gtin=EU_GTIN)
    assert list(batch.serials) == [serial]


def test_not_utf8(eu):
    assert refusal(b"K7QX2M9P4TZA\n\xff\n", "serials.txt", market=eu, gtin=EU_GTIN) == [
        "serials.txt:2: byte 0xFF is not UTF-8 text",
    ]
