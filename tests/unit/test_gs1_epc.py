from __future__ import annotations

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from edge.gs1.digital_link import (
    DigitalLinkError,
    build_digital_link,
    digital_link_to_epc,
    epc_to_digital_link,
    parse_digital_link,
)
from edge.gs1.epc import (
    EpcUriError,
    epc_uri_from_elements,
    lgtin_uri,
    parse_epc_uri,
    parse_lgtin_uri,
    parse_sgln_uri,
    parse_sgtin_uri,
    parse_sscc_uri,
    sgln_uri,
    sgtin_uri,
    sscc_uri,
)
from edge.gs1.identifiers import CHARSET_82, IdentifierError, gs1_check_digit, normalise_gtin

GTIN = "80614141123458"  # TDS example: company prefix 0614141, indicator 8


def test_sgtin_uri_escapes_per_tds():
    uri = sgtin_uri(GTIN, '6789/&%"!?()<>', 7)
    assert uri == "urn:epc:id:sgtin:0614141.812345.6789%2F%26%25%22!%3F()%3C%3E"
    assert parse_sgtin_uri(uri) == (GTIN, '6789/&%"!?()<>')


def test_sgtin_accepts_short_gtins_and_lowercase_escapes():
    assert sgtin_uri("4012345123456", "1", 7) == "urn:epc:id:sgtin:4012345.012345.1"
    assert parse_sgtin_uri("urn:epc:id:sgtin:0614141.812345.a%2fb") == (GTIN, "a/b")


def test_sscc_lgtin_sgln_uris():
    assert sscc_uri("340123451111111111", 7) == "urn:epc:id:sscc:4012345.3111111111"
    assert parse_sscc_uri("urn:epc:id:sscc:4012345.3111111111") == "340123451111111111"
    assert lgtin_uri(GTIN, "LOT/1", 7) == "urn:epc:class:lgtin:0614141.812345.LOT%2F1"
    assert parse_lgtin_uri("urn:epc:class:lgtin:0614141.812345.LOT%2F1") == (GTIN, "LOT/1")
    assert sgln_uri("4012345000054", None, 7) == "urn:epc:id:sgln:4012345.00005.0"
    assert sgln_uri("4012345000054", "122", 7) == "urn:epc:id:sgln:4012345.00005.122"
    assert parse_sgln_uri("urn:epc:id:sgln:4012345.00005.0") == ("4012345000054", None)
    assert parse_sgln_uri("urn:epc:id:sgln:4012345.00005.122") == ("4012345000054", "122")


def test_company_prefix_length_decides_the_split():
    assert sgtin_uri(GTIN, "1", 6) == "urn:epc:id:sgtin:061414.8112345.1"
    assert sgtin_uri(GTIN, "1", 12) == "urn:epc:id:sgtin:061414112345.8.1"
    with pytest.raises(IdentifierError, match="6 to 12"):
        sgtin_uri(GTIN, "1", 5)


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("urn:epc:id:sgtin:0614141.812345", "needs 3 dot-separated components, has 2"),
        ("urn:epc:id:sgtin:0614141.81234.1", "must have 13 digits, have 12"),
        ("urn:epc:id:sgtin:0614141.8123A5.1", "only the digits"),
        ("urn:epc:id:sgtin:06141.8123455.1", "company prefix '06141' must be 6 to 12 digits"),
        ("urn:epc:id:sgtin:0614141.812345.a/b", "'/' must be written as %2F"),
        ("urn:epc:id:sgtin:0614141.812345.a%2", "'%' must start an escape"),
        ("urn:epc:id:sgtin:0614141.812345.a%23", "'#' is not allowed"),
        ("urn:epc:id:sgtin:0614141.812345.a b", "' ' is not allowed"),
        ("urn:epc:id:sgtin:0614141.812345." + "x" * 21, "1 to 20 characters"),
        ("urn:epc:id:sgtin:0614141.812345.", "1 to 20 characters"),
        ("urn:epc:id:foo:0614141.812345.1", "not a supported GS1 scheme"),
        ("urn:epc:idpat:sgtin:0614141.812345.1", "must be '*'"),
        ("urn:isbn:0614141.812345.1", "must look like urn:epc"),
        ("urn:epc:id:sscc:4012345.311111111", "must have 17 digits, have 16"),
        ("urn:epc:id:cpi:0614141.ab.1", "'a' is not allowed"),
    ],
)
def test_malformed_urns(uri, message):
    with pytest.raises(EpcUriError, match=message):
        parse_epc_uri(uri)


def test_keys_with_bad_check_digits_are_refused():
    with pytest.raises(IdentifierError, match="check digit"):
        sgtin_uri("80614141123459", "1", 7)
    with pytest.raises(IdentifierError, match="check digit"):
        sscc_uri("340123451111111112", 7)
    with pytest.raises(EpcUriError, match="expected an sgtin URI"):
        parse_sgtin_uri("urn:epc:class:lgtin:0614141.812345.1")


def test_serial_with_characters_outside_set_82_is_refused():
    with pytest.raises(EpcUriError, match="not allowed"):
        sgtin_uri(GTIN, "a#b", 7)
    with pytest.raises(EpcUriError, match="none is a GS1 key"):
        epc_uri_from_elements([("10", "x")], 7)


def test_epc_to_digital_link_and_back():
    epc = "urn:epc:id:sgtin:0614141.812345.6789%2F%26"
    dl = epc_to_digital_link(epc)
    assert dl == "https://id.gs1.org/01/80614141123458/21/6789%2F%26"
    assert digital_link_to_epc(dl, 7) == epc
    assert epc_to_digital_link(epc, stem="https://brand.example.com/") == (
        "https://brand.example.com/01/80614141123458/21/6789%2F%26"
    )
    assert digital_link_to_epc("https://id.gs1.org/01/80614141123458/10/L1", 7) == (
        "urn:epc:class:lgtin:0614141.812345.L1"
    )
    assert digital_link_to_epc("https://id.gs1.org/01/80614141123458", 7) == "urn:epc:idpat:sgtin:0614141.812345.*"


def test_build_and_parse_digital_link():
    uri = build_digital_link([("17", "281231"), ("21", "S/1&"), ("01", "4012345123456"), ("10", "L1")])
    assert uri == "https://id.gs1.org/01/04012345123456/10/L1/21/S%2F1%26?17=281231"
    dl = parse_digital_link("https://example.com/x/01/04012345123456/10/L1/21/S%2F1?17=281231&utm=a")
    assert dl.stem == "https://example.com/x"
    assert dl.path == (("01", "04012345123456"), ("10", "L1"), ("21", "S/1"))
    assert dl.attributes == (("17", "281231"),)
    assert dl.primary_key == ("01", "04012345123456")


def test_digital_link_errors():
    with pytest.raises(DigitalLinkError, match="order"):
        parse_digital_link("https://id.gs1.org/01/04012345123456/21/S1/10/L1")
    with pytest.raises(DigitalLinkError, match="belongs in the path"):
        parse_digital_link("https://id.gs1.org/01/04012345123456?21=S1")
    with pytest.raises(DigitalLinkError, match="check digit"):
        parse_digital_link("https://id.gs1.org/01/04012345123457")
    with pytest.raises(DigitalLinkError, match="more than once"):
        parse_digital_link("https://id.gs1.org/01/04012345123456?17=281231&17=281231")
    with pytest.raises(DigitalLinkError, match="cannot appear together"):
        build_digital_link([("01", "04012345123456"), ("235", "X"), ("21", "S")])
    with pytest.raises(DigitalLinkError, match="not allowed"):
        build_digital_link([("01", "04012345123456"), ("21", "S 1")])
    with pytest.raises(DigitalLinkError, match="different values"):
        build_digital_link([("01", "04012345123456"), ("10", "A"), ("10", "B")])


_SERIALS = st.text(sorted(CHARSET_82), min_size=1, max_size=20)
_BODIES = st.text("0123456789", min_size=13, max_size=13)


def _gtin(body: str) -> str:
    return body + str(gs1_check_digit(body))


@given(body=_BODIES, serial=_SERIALS, prefix_length=st.integers(6, 12))
def test_sgtin_round_trip(body, serial, prefix_length):
    gtin = _gtin(body)
    uri = sgtin_uri(gtin, serial, prefix_length)
    assert parse_sgtin_uri(uri) == (gtin, serial)
    assert digital_link_to_epc(epc_to_digital_link(uri), prefix_length) == uri


@given(body=_BODIES, lot=_SERIALS, prefix_length=st.integers(6, 12))
def test_lgtin_round_trip(body, lot, prefix_length):
    gtin = _gtin(body)
    assert parse_lgtin_uri(lgtin_uri(gtin, lot, prefix_length)) == (gtin, lot)


@given(body=st.text("0123456789", min_size=17, max_size=17), prefix_length=st.integers(6, 12))
def test_sscc_uri_round_trip(body, prefix_length):
    sscc = body + str(gs1_check_digit(body))
    uri = sscc_uri(sscc, prefix_length)
    assert parse_sscc_uri(uri) == sscc
    assert digital_link_to_epc(epc_to_digital_link(uri), prefix_length) == uri


@given(
    body=st.text("0123456789", min_size=12, max_size=12),
    extension=st.none() | _SERIALS.filter(lambda s: s != "0"),
    prefix_length=st.integers(6, 12),
)
@example(body="000000000000", extension="*", prefix_length=6)  # an extension, not the pattern wildcard
def test_sgln_round_trip(body, extension, prefix_length):
    gln = body + str(gs1_check_digit(body))
    uri = sgln_uri(gln, extension, prefix_length)
    assert parse_sgln_uri(uri) == (gln, extension)
    assert digital_link_to_epc(epc_to_digital_link(uri), prefix_length) == uri


@given(
    body=_BODIES,
    short=st.booleans(),
    lot=st.none() | _SERIALS,
    serial=st.none() | _SERIALS,
    expiry=st.none() | st.text("0123456789", min_size=6, max_size=6),
    stem=st.sampled_from(["https://id.gs1.org", "https://brand.example.com/some/stem"]),
)
def test_digital_link_round_trip(body, short, lot, serial, expiry, stem):  # noqa: PLR0917 - one per strategy
    gtin = _gtin("0" + body[1:]) if short else _gtin(body)
    given_gtin = gtin[1:] if short else gtin
    elements = [("01", given_gtin)]
    elements += [("21", serial)] if serial is not None else []
    elements += [("17", expiry)] if expiry is not None else []
    elements += [("10", lot)] if lot is not None else []
    dl = parse_digital_link(build_digital_link(elements, stem=stem))
    assert dl.stem == stem
    expected_path = [("01", normalise_gtin(given_gtin))]
    expected_path += [("10", lot)] if lot is not None else []
    expected_path += [("21", serial)] if serial is not None else []
    assert list(dl.path) == expected_path
    assert list(dl.attributes) == ([("17", expiry)] if expiry is not None else [])
