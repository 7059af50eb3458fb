"""GS1 Digital Link URIs: build from and parse into GS1 element pairs; conversion to and from EPC URIs."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from edge.gs1.epc import EpcUriError, epc_uri_from_elements, parse_epc_uri
from edge.gs1.identifiers import (
    CHARSET_39,
    CHARSET_82,
    Element,
    IdentifierError,
    gs1_check_digit,
)

if TYPE_CHECKING:
    from collections.abc import Iterable

CANONICAL_STEM = "https://id.gs1.org"


class DigitalLinkError(IdentifierError):
    """A GS1 Digital Link URI is malformed, or element pairs cannot be written as one."""


# Primary keys and their key-qualifier sequences (GS1 Digital Link 1.4 / GS1 Barcode Syntax Dictionary "dlpkey"):
# each alternative lists the qualifiers that may follow the key in the path, optional but in this order.
PRIMARY_KEYS: dict[str, tuple[tuple[str, ...], ...]] = {
    "01": (("22", "10", "21"), ("235",)),
    "00": ((),),
    "253": ((),),
    "255": ((),),
    "401": ((),),
    "402": ((),),
    "414": (("254",), ("7040",)),
    "415": (("8020",),),
    "417": (("7040",),),
    "8003": ((),),
    "8004": (("7040",),),
    "8006": (("22", "10", "21"),),
    "8010": (("8011",),),
    "8013": ((),),
    "8017": (("8019",),),
    "8018": (("8019",),),
}
_QUALIFIERS = frozenset(q for alts in PRIMARY_KEYS.values() for alt in alts for q in alt)

# Convenience alphas of GS1 Digital Link 1.1, still met in the field; accepted when parsing, never written.
SHORT_NAMES = {
    "gtin": "01", "itip": "8006", "cpid": "8010", "gln": "414", "party": "417", "gsrnp": "8017", "gsrn": "8018",
    "gcn": "255", "sscc": "00", "gdti": "253", "ginc": "401", "gsin": "402", "grai": "8003", "giai": "8004",
    "cpv": "22", "lot": "10", "ser": "21",
}  # fmt: skip


def _expand(spec: str) -> frozenset[str]:
    out: set[str] = set()
    for item in spec.split():
        low, _, high = item.partition("-")
        out.update(str(v).zfill(len(low)) for v in range(int(low), int(high or low) + 1))
    return frozenset(out)


_MEASURES = " ".join(f"{p}0-{p}5" for p in [*range(310, 317), *range(320, 338), *range(340, 358), *range(360, 370)])
# AIs permitted as Digital Link data attributes (flag "?" in the GS1 Barcode Syntax Dictionary 2026-01-27).
DATA_ATTRIBUTES = _expand(
    "00-02 10-13 15-17 20 240-243 250 251 253 255 30 37 3900-3909 3910-3919 3920-3929 3930-3939 3940-3943 "
    "3950-3955 400-403 410-417 420-427 4300-4326 4330-4333 7001-7011 7020-7023 7030-7039 710-717 7230-7242 "
    "7250-7259 8001-8010 8012 8013 8017 8018 8026 8030 8110-8112 90-99 " + _MEASURES
)
# Element strings put AIs with these two-digit prefixes first (predefined length, no FNC1); a generated query
# string follows the same order so that its element string needs the fewest separators.
_PREDEFINED_LENGTH = _expand("00-04 11-20 31-36 41")

_URI_CHARS = frozenset(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~:/?#[]@!$&'()*+,;=%"
)  # RFC 3986 unreserved + reserved + '%'
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_HOST = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(:[0-9]*)?")
_HEX = frozenset("0123456789abcdefABCDEF")


def uri_escape(value: str, *, query: bool = False) -> str:
    """Percent-encode everything but RFC 3986 unreserved characters; in a query a space becomes '+'."""
    out = []
    for c in value:
        if c in _UNRESERVED:
            out.append(c)
        elif c == " " and query:
            out.append("+")
        else:
            out.extend(f"%{b:02X}" for b in c.encode())
    return "".join(out)


def uri_unescape(value: str, *, query: bool = False) -> str:
    """Decode %HH escapes (malformed ones stay literal); in a query '+' is a space."""
    out = []
    i = 0
    while i < len(value):
        c = value[i]
        if c == "%" and set(value[i + 1 : i + 3]) <= _HEX and len(value[i + 1 : i + 3]) == 2:
            out.append(chr(int(value[i + 1 : i + 3], 16)))
            i += 3
            continue
        out.append(" " if c == "+" and query else c)
        i += 1
    return "".join(out)


def _fail(ai: str, value: str, rule: str) -> DigitalLinkError:
    return DigitalLinkError(f"AI ({ai}) {value!r}: {rule}")


def _numeric(ai: str, value: str, length: int, *, verify: bool, check: bool = True) -> None:
    if len(value) != length or not value.isascii() or not value.isdigit():
        raise _fail(ai, value, f"must be {length} digits")
    if check and verify and gs1_check_digit(value[:-1]) != int(value[-1]):
        raise _fail(ai, value, f"check digit should be {gs1_check_digit(value[:-1])}")


def _text(ai: str, value: str, max_length: int, charset: frozenset[str] = CHARSET_82, *, minimum: int = 1) -> None:
    if not minimum <= len(value) <= max_length:
        raise _fail(ai, value, f"must have {minimum} to {max_length} characters")
    if not set(value) <= charset:
        bad = sorted(set(value) - charset)
        raise _fail(ai, value, f"characters {bad!r} are not allowed")


def _validate(ai: str, value: str, *, verify: bool) -> None:  # noqa: PLR0912 - one branch per AI format reads like the standard
    """Check the value of an AI that can appear in a Digital Link; keys and qualifiers exactly, others loosely."""
    if ai in {"00", "8017", "8018"}:
        _numeric(ai, value, 18, verify=verify)
    elif ai in {"01", "02"}:
        _numeric(ai, value, 14, verify=verify)
    elif ai in {"414", "415", "417"}:
        _numeric(ai, value, 13, verify=verify)
    elif ai == "402":
        _numeric(ai, value, 17, verify=verify)
    elif ai in {"253", "255"}:
        _numeric(ai, value[:13], 13, verify=verify)
        tail = value[13:]
        if ai == "253" and tail:
            _text(ai, tail, 17)
        elif tail and (len(tail) > 12 or not tail.isascii() or not tail.isdigit()):
            raise _fail(ai, value, "serial component must be at most 12 digits")
    elif ai == "8003":
        if value[:1] != "0":
            raise _fail(ai, value, "must start with the filler digit 0")
        _numeric(ai, value[1:14], 13, verify=verify)
        if value[14:]:
            _text(ai, value[14:], 16)
    elif ai == "8006":
        _numeric(ai, value[:14], 14, verify=verify)
        _numeric(ai, value[14:], 4, verify=False, check=False)
    elif ai == "8010":
        _text(ai, value, 30, CHARSET_39)
    elif ai == "8011":
        _numeric(ai, value, len(value), verify=False, check=False)
        if not 1 <= len(value) <= 12 or (len(value) > 1 and value[0] == "0"):
            raise _fail(ai, value, "must be 1 to 12 digits without leading zeros")
    elif ai == "8019":
        _numeric(ai, value, len(value), verify=False, check=False)
        if not 1 <= len(value) <= 10:
            raise _fail(ai, value, "must be 1 to 10 digits")
    elif ai in {"401", "8004"}:
        _text(ai, value, 30)
    elif ai == "235":
        _text(ai, value, 28)
    elif ai in {"8013", "8020"}:
        _text(ai, value, 25)
    elif ai == "7040":
        _text(ai, value, 4, minimum=4)
    elif ai in {"10", "21", "22", "254"}:
        _text(ai, value, 20)
    else:
        # Data attributes: their full syntax belongs to the AI table; here only what makes a sound URI value.
        _text(ai, value, 90)


def _in_order(alt: tuple[str, ...], qualifiers: list[str]) -> bool:
    """Tell whether every qualifier is in `alt`, in the order `alt` gives."""
    it = iter(alt)
    return all(q in it for q in qualifiers)  # `in` consumes the iterator, so this checks order too


def _qualifier_sequence(key: str, qualifiers: list[str]) -> tuple[str, ...] | None:
    """Return the qualifier alternative of `key` holding all `qualifiers` in order, None if none does."""
    return next((alt for alt in PRIMARY_KEYS[key] if _in_order(alt, qualifiers)), None)


@dataclass(frozen=True, slots=True)
class DigitalLink:
    """A parsed GS1 Digital Link URI: the part before the identifier, the identifier path and query attributes."""

    stem: str
    path: tuple[Element, ...]
    attributes: tuple[Element, ...]

    @property
    def primary_key(self) -> Element:
        """The primary key element (AI, value)."""
        return self.path[0]

    @property
    def elements(self) -> tuple[Element, ...]:
        """Every element in URI order: path, then query attributes."""
        return self.path + self.attributes


def _normalise_gtin_value(ai: str, value: str, *, permit_zero_suppressed: bool) -> str:
    if ai == "01" and len(value) in {8, 12, 13} and value.isascii() and value.isdigit():
        if not permit_zero_suppressed:
            raise _fail(ai, value, "a GTIN in a Digital Link must have 14 digits")
        return value.zfill(14)
    return value


def parse_digital_link(
    uri: str,
    *,
    permit_zero_suppressed_gtin: bool = True,
    permit_convenience_alphas: bool = True,
    verify_check_digits: bool = True,
) -> DigitalLink:
    """Parse a GS1 Digital Link URI (any domain, optional path stem) into element pairs, GTINs as 14 digits.

    Non-numeric query parameters are ignored; a numeric one must be a Digital Link data attribute.
    """
    if not set(uri) <= _URI_CHARS:
        bad = sorted(set(uri) - _URI_CHARS)
        raise DigitalLinkError(f"Digital Link {uri!r}: characters {bad!r} are not allowed in a URI")
    scheme, sep, rest = uri.partition("://")
    if not sep or scheme not in {"http", "https", "HTTP", "HTTPS"}:
        raise DigitalLinkError(f"Digital Link {uri!r}: must start with http:// or https://")
    rest = rest.partition("#")[0]
    rest, _, query = rest.partition("?")
    host, slash, path = rest.partition("/")
    if not _HOST.fullmatch(host):
        raise DigitalLinkError(f"Digital Link {uri!r}: host {host!r} is not a valid host name or address")
    if not slash:
        raise DigitalLinkError(f"Digital Link {uri!r}: has no path")
    segments = path.split("/")
    names = SHORT_NAMES if permit_convenience_alphas else {}
    start = _find_primary_key(uri, segments, names)
    stem = f"{scheme}://{host}" + "".join("/" + s for s in segments[:start])

    path_elements: list[Element] = []
    for i in range(start, len(segments), 2):
        ai = names.get(segments[i], segments[i])
        value = _normalise_gtin_value(
            ai, uri_unescape(segments[i + 1]), permit_zero_suppressed=permit_zero_suppressed_gtin
        )
        path_elements.append((ai, value))
    key = path_elements[0][0]
    qualifiers = [ai for ai, _ in path_elements[1:]]
    sequence = _qualifier_sequence(key, qualifiers)
    if sequence is None:
        allowed = " or ".join("/".join(alt) or "none" for alt in PRIMARY_KEYS[key])
        raise DigitalLinkError(f"Digital Link {uri!r}: qualifiers {qualifiers} of ({key}) must be in order {allowed}")
    # A qualifier that the path could have carried must not hide in the query string.
    compatible = {q for alt in PRIMARY_KEYS[key] if _in_order(alt, qualifiers) for q in alt}

    attributes = _query_attributes(uri, query, compatible, permit_zero_suppressed=permit_zero_suppressed_gtin)
    seen: set[str] = set()
    for ai, value in [*path_elements, *attributes]:
        if ai in seen:
            raise DigitalLinkError(f"Digital Link {uri!r}: ({ai}) appears more than once")
        seen.add(ai)
        try:
            _validate(ai, value, verify=verify_check_digits)
        except DigitalLinkError as exc:
            raise DigitalLinkError(f"Digital Link {uri!r}: {exc}") from None
    return DigitalLink(stem, tuple(path_elements), tuple(attributes))


def _query_attributes(uri: str, query: str, qualifiers: set[str], *, permit_zero_suppressed: bool) -> list[Element]:
    """Return the data attributes of a query string; `qualifiers` are AIs that belong in the path instead."""
    attributes: list[Element] = []
    for param in query.split("&"):
        name, eq, raw = param.partition("=")
        if not eq or not name.isascii() or not name.isdigit():
            continue  # not a GS1 data attribute: the standard lets other parameters through untouched
        if name in qualifiers:
            raise DigitalLinkError(f"Digital Link {uri!r}: key qualifier ({name}) belongs in the path")
        if name not in DATA_ATTRIBUTES:
            raise DigitalLinkError(f"Digital Link {uri!r}: ({name}) is not a Digital Link data attribute")
        value = _normalise_gtin_value(
            name, uri_unescape(raw, query=True), permit_zero_suppressed=permit_zero_suppressed
        )
        attributes.append((name, value))
    return attributes


def _find_primary_key(uri: str, segments: list[str], names: dict[str, str]) -> int:
    """Return the index of the primary key segment, walking back over /AI/value pairs from the end."""
    end = len(segments)
    while end >= 2:
        ai = names.get(segments[end - 2], segments[end - 2])
        if not ai.isascii() or not ai.isdigit():
            break
        if not segments[end - 1]:
            raise DigitalLinkError(f"Digital Link {uri!r}: ({ai}) has an empty value")
        if ai in PRIMARY_KEYS:
            return end - 2
        if ai not in _QUALIFIERS:
            raise DigitalLinkError(f"Digital Link {uri!r}: ({ai}) is not a key qualifier in the path")
        end -= 2
    raise DigitalLinkError(f"Digital Link {uri!r}: no GS1 primary key found in the path")


def build_digital_link(elements: Iterable[Element], *, stem: str = CANONICAL_STEM) -> str:
    """Write element pairs as a GS1 Digital Link URI; GTINs as 14 digits.

    The first primary key and its qualifiers go in the path, in standard order; every other element becomes a
    query data attribute, predefined-length AIs first.
    """
    unique: dict[str, str] = {}
    for ai, value in elements:
        if ai in unique and unique[ai] != value:
            raise DigitalLinkError(f"element ({ai}) given twice with different values {unique[ai]!r}, {value!r}")
        unique[ai] = _normalise_gtin_value(ai, value, permit_zero_suppressed=True)
    key = next((ai for ai in unique if ai in PRIMARY_KEYS), None)
    if key is None:
        raise DigitalLinkError(f"elements {list(unique)}: none is a Digital Link primary key")
    qualifiers = [ai for ai in unique if any(ai in alt for alt in PRIMARY_KEYS[key])]
    sequence = next((alt for alt in PRIMARY_KEYS[key] if set(qualifiers) <= set(alt)), None)
    if sequence is None:
        raise DigitalLinkError(f"elements {qualifiers}: these qualifiers of ({key}) cannot appear together")
    path = [key, *(q for q in sequence if q in unique)]
    rest = [ai for ai in unique if ai not in path]
    for ai in rest:
        if ai not in DATA_ATTRIBUTES:
            raise DigitalLinkError(f"element ({ai}): not a Digital Link data attribute")
    rest.sort(key=lambda ai: ai[:2] not in _PREDEFINED_LENGTH)  # stable: otherwise keeps the given order
    for ai, value in unique.items():
        _validate(ai, value, verify=True)
    uri = stem.rstrip("/") + "".join(f"/{ai}/{uri_escape(unique[ai])}" for ai in path)
    if rest:
        uri += "?" + "&".join(f"{ai}={uri_escape(unique[ai], query=True)}" for ai in rest)
    return uri


def epc_to_digital_link(epc_uri: str, *, stem: str = CANONICAL_STEM) -> str:
    """Return the GS1 Digital Link URI for an EPC id, class (lgtin) or pattern URI."""
    return build_digital_link(parse_epc_uri(epc_uri).elements, stem=stem)


def digital_link_to_epc(uri: str, company_prefix_length: int) -> str:
    """Return the EPC URI for the identifier in a Digital Link URI, given its GS1 Company Prefix length."""
    return epc_uri_from_elements(parse_digital_link(uri).path, company_prefix_length)


def canonical_id_uri(uri: str) -> str | None:
    """Return any EPC or Digital Link URI as canonical Digital Link at its finest level; None if it holds no key.

    Finest level: the serial wins over the lot, CPV and query attributes are dropped. Check digits are not
    verified, so that an identifier sent by a partner hashes the same whatever its quality (EPCIS event hash).
    """
    try:
        if uri.startswith("urn:epc:"):
            path = parse_epc_uri(uri).elements
        else:
            path = parse_digital_link(uri, verify_check_digits=False).path
    except (DigitalLinkError, EpcUriError):
        return None
    kept = dict(path)
    kept.pop("22", None)
    if "21" in kept:
        kept.pop("10", None)
    return CANONICAL_STEM + "".join(f"/{ai}/{uri_escape(v)}" for ai, v in kept.items())
