from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.errors import EdgeError
from edge.gs1.identifiers import (
    IdentifierError,
    SsccParts,
    build_sscc,
    gs1_check_digit,
    gtin_short_form,
    has_valid_check_digit,
    normalise_gtin,
    parse_sscc,
    validate_gln,
    validate_serial,
    validate_sscc,
)


@pytest.mark.parametrize(
    ("payload", "digit"),
    [
        ("37610425002123456", 9),
        ("629104150021", 3),
        ("703801005447", 1),
        ("950110153100", 0),
        ("0234567", 3),
        ("12345678901234567", 5),
    ],
)
def test_check_digit(payload, digit):
    assert gs1_check_digit(payload) == digit
    assert has_valid_check_digit(payload + str(digit))
    assert not has_valid_check_digit(payload + str((digit + 1) % 10))


def test_check_digit_refuses_non_digits():
    with pytest.raises(IdentifierError, match="digits"):
        gs1_check_digit("12a4")
    assert not has_valid_check_digit("1")
    assert not has_valid_check_digit("1 34")


def test_identifier_error_is_an_edge_error():
    assert issubclass(IdentifierError, EdgeError)


@pytest.mark.parametrize(
    ("gtin", "full"),
    [
        ("02345673", "00000002345673"),
        ("416000336108", "00416000336108"),
        ("1234567890128", "01234567890128"),
        ("12345678901231", "12345678901231"),
    ],
)
def test_normalise_gtin(gtin, full):
    assert normalise_gtin(gtin) == full
    assert gtin_short_form(full) == gtin


@pytest.mark.parametrize(
    ("gtin", "message"),
    [
        ("1234567890", "must have 8 or 12 or 13 or 14 digits, has 10"),
        ("12345678901232", "check digit is 2, should be 1"),
        ("1234567890I28", "only the digits"),
        ("１２３４５６７８９０１２８", "only the digits"),  # full-width digits are digits to str.isdigit  # noqa: RUF001
        ("", "must have"),
    ],
)
def test_normalise_gtin_rejects(gtin, message):
    with pytest.raises(IdentifierError, match=message) as info:
        normalise_gtin(gtin)
    assert "GTIN" in str(info.value)


def test_gtin_short_form_to_a_given_length():
    assert gtin_short_form("00000002345673", 13) == "0000002345673"
    assert gtin_short_form("02345673", 14) == "00000002345673"
    with pytest.raises(IdentifierError, match="does not fit in 12 digits"):
        gtin_short_form("1234567890128", 12)
    with pytest.raises(IdentifierError, match="cannot be written with 10 digits"):
        gtin_short_form("1234567890128", 10)


def test_gln_and_sscc_validation():
    assert validate_gln("4012345000054") == "4012345000054"
    with pytest.raises(IdentifierError, match=r"GLN .* check digit"):
        validate_gln("4012345000055")
    with pytest.raises(IdentifierError, match=r"GLN .* 13 digits"):
        validate_gln("401234500005")
    assert validate_sscc("340123451111111111") == "340123451111111111"
    with pytest.raises(IdentifierError, match="SSCC"):
        validate_sscc("340123451111111112")


def test_build_and_parse_sscc():
    sscc = build_sscc(3, "4012345", "111111111")
    assert sscc == "340123451111111111"
    parts = parse_sscc(sscc, 7)
    assert parts == SsccParts("3", "4012345", "111111111", "1")
    assert parts.sscc == sscc


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((3, "4012345", "11111111"), "must have 9 digits, has 8"),
        ((10, "4012345", "111111111"), "extension digit"),
        ((3, "40123", "11111111111"), "company prefix"),
        ((3, "4012345", "11111111A"), "serial reference"),
    ],
)
def test_build_sscc_rejects(args, message):
    with pytest.raises(IdentifierError, match=message):
        build_sscc(*args)


def test_parse_sscc_rejects_impossible_prefix_length():
    with pytest.raises(IdentifierError, match="6 to 12"):
        parse_sscc("340123451111111111", 13)


def test_serial_charset():
    assert validate_serial("AB-12/%&<>?!") == "AB-12/%&<>?!"
    with pytest.raises(IdentifierError, match="must not be empty"):
        validate_serial("")
    with pytest.raises(IdentifierError, match="at most 20"):
        validate_serial("X" * 21)
    with pytest.raises(IdentifierError, match=r"\['#', 'é'\].*character set 82"):
        validate_serial("A#é")


@given(
    ext=st.integers(0, 9),
    prefix_length=st.integers(6, 12),
    data=st.data(),
)
def test_sscc_round_trip(ext, prefix_length, data):
    prefix = data.draw(st.text("0123456789", min_size=prefix_length, max_size=prefix_length))
    ref = data.draw(st.text("0123456789", min_size=16 - prefix_length, max_size=16 - prefix_length))
    sscc = build_sscc(ext, prefix, ref)
    assert has_valid_check_digit(sscc)
    assert parse_sscc(sscc, prefix_length) == SsccParts(str(ext), prefix, ref, sscc[-1])


@given(body=st.text("0123456789", min_size=13, max_size=13))
def test_gtin_short_form_round_trip(body):
    gtin = body + str(gs1_check_digit(body))
    assert normalise_gtin(gtin_short_form(gtin)) == gtin
