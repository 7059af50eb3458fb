"""Digital Link and EPC URI vectors from the EPCIS event hash generator and the GS1 Barcode Syntax Engine."""

from __future__ import annotations

import functools
import json
import re

import pytest

from edge.gs1.digital_link import (
    CANONICAL_STEM,
    DigitalLinkError,
    build_digital_link,
    canonical_id_uri,
    digital_link_to_epc,
    parse_digital_link,
    uri_escape,
    uri_unescape,
)
from tests.conftest import CORPORA

pytestmark = pytest.mark.corpora

HASH_VECTORS = "epcis-event-hash-generator/derived-dl-normaliser-vectors.tsv"
ENGINE_VECTORS = "gs1-syntax-engine/unit-test-vectors.jsonl"

# Vectors we do not follow, by upstream source line, with the reason. Everything else in the files runs.
NOT_FOLLOWED = {
    "src/c-lib/dl.c:1767": "needs the engine's switch that admits unknown AIs (89) as data attributes; we never do",
    "src/c-lib/dl.c:2206": "needs the engine's switch that admits unknown AIs (89) as data attributes; we never do",
}
# The engine enables convenience alphas (gtin, ser, sscc...) for these three lines by poking its context
# directly (dl.c:1436, 1442), which the vector file cannot record as a setter call.
CONVENIENCE_ALPHAS_ON = {"src/c-lib/dl.c:1437", "src/c-lib/dl.c:1438", "src/c-lib/dl.c:1439"}
# Two-digit AI prefixes of predefined length (no FNC1 after them), to write the engine's "^"-separated form.
PREDEFINED = {f"{n:02d}" for n in [*range(5), *range(11, 21), *range(31, 37), 41]}


# Without the corpora each test gets one placeholder case, which the corpora fixture then skips with its reason.
ABSENT = [pytest.param(None, id="corpora-absent")]


def _hash_rows() -> list[list[str]]:
    if not CORPORA.is_dir():
        return []
    lines = (CORPORA / HASH_VECTORS).read_text(encoding="utf-8").splitlines()
    return [line.split("\t") for line in lines[2:]]  # a provenance comment, then the header


@functools.cache
def _all_engine_records() -> list[dict[str, object]]:
    if not CORPORA.is_dir():
        return []
    text = (CORPORA / ENGINE_VECTORS).read_text(encoding="utf-8")
    # split on newlines only: str.splitlines would also split at the GS separators inside scan-data records
    return [json.loads(line) for line in text.split("\n") if line]


def _engine_records(*keys: str) -> list[dict[str, object]]:
    return [r for r in _all_engine_records() if all(k in r for k in keys)]


def _cases(values: list[object]) -> list[object]:
    return values or ABSENT


def _id(record: dict[str, object]) -> str:
    return str(record["source"])


def _setter(record: dict[str, object], name: str, default: bool) -> bool:
    """Return the state the last matching setter call before this vector left the engine in."""
    state = default
    for call in record.get("preceding_setter_calls") or []:  # type: ignore[attr-defined]
        if name in call:
            state = "true)" in call
    return state


def _unbracketed(elements: tuple[tuple[str, str], ...]) -> str:
    out = "^"
    for i, (ai, value) in enumerate(elements):
        out += ai + value
        if ai[:2] not in PREDEFINED and i < len(elements) - 1:
            out += "^"
    return out


def _follow(record: dict[str, object]) -> None:
    reason = NOT_FOLLOWED.get(_id(record))
    if reason:
        pytest.skip(reason)


@pytest.mark.parametrize("row", _cases(_hash_rows()), ids=lambda row: row[0].removeprefix("tests/"))
def test_event_hash_dl_normaliser(corpora, row):
    _source, _test, given, op, expected = row
    result = canonical_id_uri(given)
    if op == "Is":
        assert expected == "None"
        assert result is None
    else:
        assert result == expected


@pytest.mark.parametrize(
    "row", _cases([r for r in _hash_rows() if r[3] == "Eq" and r[2].startswith("urn:epc:id:")]), ids=lambda row: row[2]
)
def test_event_hash_epc_round_trip(corpora, row):
    """An EPC id URI converted to Digital Link converts back to itself given its company prefix length."""
    given = row[2]
    prefix_length = len(given.split(":")[4].split(".")[0])
    assert digital_link_to_epc(row[4], prefix_length) == given


@pytest.mark.parametrize("record", _cases(_engine_records("dl_uri")), ids=_id)
def test_engine_parse_dl_uri(corpora, record):
    _follow(record)
    uri = str(record["dl_uri"])
    options = {
        "permit_zero_suppressed_gtin": _setter(record, "PermitZeroSuppressedGTINinDLuris", default=False),
        "permit_convenience_alphas": _id(record) in CONVENIENCE_ALPHAS_ON,
    }
    if record["should_succeed"]:
        assert _unbracketed(parse_digital_link(uri, **options).elements) == record["expected_unbracketed"]
    else:
        with pytest.raises(DigitalLinkError):
            parse_digital_link(uri, **options)


@pytest.mark.parametrize("record", _cases(_engine_records("expected_uri")), ids=_id)
def test_engine_generate_dl_uri(corpora, record):
    _follow(record)
    elements = re.findall(r"\((\d+)\)([^(]*)", str(record["bracketed_ai"]))
    stem = str(record["stem"] or CANONICAL_STEM)
    if record["should_succeed"]:
        assert build_digital_link(elements, stem=stem) == record["expected_uri"]
    else:
        with pytest.raises(DigitalLinkError):
            build_digital_link(elements, stem=stem)


@pytest.mark.parametrize("record", _cases(_engine_records("is_query")), ids=_id)
def test_engine_uri_escape_and_unescape(corpora, record):
    convert = uri_unescape if "unescape" in str(record["function"]) else uri_escape
    assert convert(str(record["input"])) == record["expected"]
    assert convert(str(record["input"]), query=True) == record["is_query"]


def test_every_vector_is_accounted_for(corpora):
    assert len(_hash_rows()) == 71
    engine = _engine_records("dl_uri") + _engine_records("expected_uri")
    assert set(NOT_FOLLOWED) <= {_id(r) for r in engine}
    assert len(engine) == 118 + 22
