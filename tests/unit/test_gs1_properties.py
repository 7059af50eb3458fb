from __future__ import annotations

import string

from hypothesis import given, settings
from hypothesis import strategies as st

from edge.gs1 import Gs1SyntaxError, ai_spec, all_ais, build, build_hri, check_pair, gs1_check_digit, parse, validate
from edge.gs1.checks import CSET82

# AIs whose values a generator can make valid from the spec alone (no code lists, no structured linters).
_SIMPLE = sorted(
    spec.ai for spec in all_ais()
    if len(spec.components) == 1 and set(spec.linters) <= {"csum", "yymmd0", "yymmdd", "csumalpha"}
    and spec.charset in "NX"
)


@st.composite
def _value(draw, ai: str) -> str:
    spec = ai_spec(ai)
    assert spec is not None
    c = spec.components[0]
    if "yymmd0" in c.linters or "yymmdd" in c.linters:
        return f"{draw(st.integers(0, 99)):02d}{draw(st.integers(1, 12)):02d}{draw(st.integers(1, 28)):02d}"
    alphabet = string.digits if c.charset == "N" else CSET82
    if "csum" in c.linters:
        payload = draw(st.text(string.digits, min_size=c.max_length - 1, max_size=c.max_length - 1))
        return payload + str(gs1_check_digit(payload)) if payload else "0"
    if "csumalpha" in c.linters:
        payload = draw(st.text(CSET82, min_size=max(0, c.min_length - 2), max_size=c.max_length - 2))
        return payload + check_pair(payload)
    return draw(st.text(alphabet, min_size=c.min_length, max_size=c.max_length))


@st.composite
def _pairs(draw) -> list[tuple[str, str]]:
    ais = draw(st.lists(st.sampled_from(_SIMPLE), min_size=1, max_size=6, unique=True))
    return [(ai, draw(_value(ai))) for ai in ais]


@settings(max_examples=300, deadline=None)
@given(_pairs())
def test_build_then_parse_round_trips(pairs):
    content = [i for i in validate(parse(build(pairs, check=False))) if i.rule not in {"REQUIRES", "EXCLUDES"}]
    assert content == []
    assert parse(build(pairs, check=False)).pairs == pairs
    assert parse("]d2" + build(pairs, check=False, predefined_first=True)).pairs == sorted(
        pairs, key=lambda p: ai_spec(p[0]).fnc1,  # type: ignore[union-attr]
    )
    assert parse(build_hri(pairs, check=False)).pairs == pairs


@settings(max_examples=500, deadline=None)
@given(st.one_of(st.binary(max_size=80), st.text(max_size=80), st.text("0123456789()[]]\x1ddCQe\\AB", max_size=60)))
def test_arbitrary_input_raises_only_syntax_errors(data):
    try:
        parsed = parse(data)
    except Gs1SyntaxError:
        return
    for issue in validate(parsed):
        assert issue.rule
        assert 0 <= issue.position <= len(data)
