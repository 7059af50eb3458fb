"""EPC pure identity, class and pattern URIs (GS1 EPC Tag Data Standard 2.x) to and from GS1 element pairs."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from edge.gs1.identifiers import (
    CHARSET_39,
    CHARSET_82,
    COMPANY_PREFIX_LENGTHS,
    Element,
    IdentifierError,
    check_company_prefix_length,
    gs1_check_digit,
    normalise_gtin,
    validate_key,
)

# TDS 2.x, Table A-1: characters of the GS1 character sets that an EPC URI must percent-escape; every other
# character of the set is written literally. '#' only occurs in set 39 (CPID).
_ESCAPES = {'"': "%22", "%": "%25", "&": "%26", "/": "%2F", "<": "%3C", ">": "%3E", "?": "%3F", "#": "%23"}
_HEX = frozenset("0123456789abcdefABCDEF")


class EpcUriError(IdentifierError):
    """An EPC URI is malformed or does not describe a valid GS1 key."""


@dataclass(frozen=True, slots=True)
class EpcIdentity:
    """A parsed EPC URI: its form (id, class, idpat), scheme, GS1 Company Prefix and the GS1 elements it stands for."""

    kind: str
    scheme: str
    company_prefix: str
    elements: tuple[Element, ...]

    def value(self, ai: str) -> str | None:
        """Return the value of element `ai`, None when absent."""
        return next((v for a, v in self.elements if a == ai), None)


def escape_component(value: str, charset: frozenset[str] = CHARSET_82) -> str:
    """Write `value` as an EPC URI component: TDS escapes for the reserved characters, others literal."""
    out = []
    for c in value:
        if c not in charset:
            raise EpcUriError(f"EPC URI component {value!r}: character {c!r} is not allowed")
        out.append(_ESCAPES.get(c, c))
    return "".join(out)


def unescape_component(component: str, charset: frozenset[str], what: str) -> str:
    """Decode an EPC URI component; refuse bad escapes, unescaped reserved and foreign characters."""
    out: list[str] = []
    i = 0
    while i < len(component):
        c = component[i]
        if c == "%":
            pair = component[i + 1 : i + 3]
            if len(pair) != 2 or not set(pair) <= _HEX:
                raise EpcUriError(f"{what} {component!r}: '%' must start an escape %HH")
            c = chr(int(pair, 16))
            i += 3
        elif c in _ESCAPES:
            raise EpcUriError(f"{what} {component!r}: character {c!r} must be written as {_ESCAPES[c]}")
        else:
            i += 1
        if c not in charset:
            raise EpcUriError(f"{what} {component!r}: character {c!r} is not allowed")
        out.append(c)
    return "".join(out)


# Field kinds after the company prefix, as (kind, number): ("num", n) digits making n together with the prefix;
# ("x82", n)/("y39", n) escaped text of 1..n characters; ("x82ref", n)/("y39ref", n) escaped text making at most
# n with the prefix; ("digits", n) exactly n digits; ("serialnum", n) 1..n digits; ("*", 0) the pattern wildcard.
_Field = tuple[str, int]
_Builder = Callable[[str, list[str]], tuple[Element, ...]]


@dataclass(frozen=True, slots=True)
class _Scheme:
    fields: tuple[_Field, ...]
    build: _Builder


def _with_check(body: str) -> str:
    return body + str(gs1_check_digit(body))


def _gtin(cp: str, indicator_item: str) -> str:
    # The indicator digit leads the item reference in the URI but the whole GTIN in AI 01.
    return _with_check(indicator_item[0] + cp + indicator_item[1:])


def _sgln(cp: str, f: list[str]) -> tuple[Element, ...]:
    gln = _with_check(cp + f[0])
    # "0" is no extension; a "*" here is an extension of that one character (AI 254 is CSET 82).
    return (("414", gln),) if f[1] == "0" else (("414", gln), ("254", f[1]))


def _sgln_pattern(cp: str, f: list[str]) -> tuple[Element, ...]:
    return (("414", _with_check(cp + f[0])),)  # the extension is the wildcard


_SCHEMES: dict[tuple[str, str], _Scheme] = {
    ("id", "sgtin"): _Scheme((("num", 13), ("x82", 20)), lambda cp, f: (("01", _gtin(cp, f[0])), ("21", f[1]))),
    ("id", "sscc"): _Scheme((("num", 17),), lambda cp, f: (("00", _with_check(f[0][0] + cp + f[0][1:])),)),
    ("id", "sgln"): _Scheme((("num", 12), ("x82", 20)), _sgln),
    ("id", "grai"): _Scheme((("num", 12), ("x82", 16)), lambda cp, f: (("8003", "0" + _with_check(cp + f[0]) + f[1]),)),
    ("id", "giai"): _Scheme((("x82ref", 30),), lambda cp, f: (("8004", cp + f[0]),)),
    ("id", "gsrn"): _Scheme((("num", 17),), lambda cp, f: (("8018", _with_check(cp + f[0])),)),
    ("id", "gsrnp"): _Scheme((("num", 17),), lambda cp, f: (("8017", _with_check(cp + f[0])),)),
    ("id", "gdti"): _Scheme((("num", 12), ("x82", 17)), lambda cp, f: (("253", _with_check(cp + f[0]) + f[1]),)),
    ("id", "cpi"): _Scheme((("y39ref", 30), ("serialnum", 12)), lambda cp, f: (("8010", cp + f[0]), ("8011", f[1]))),
    ("id", "sgcn"): _Scheme((("num", 12), ("serialnum", 12)), lambda cp, f: (("255", _with_check(cp + f[0]) + f[1]),)),
    ("id", "ginc"): _Scheme((("x82ref", 30),), lambda cp, f: (("401", cp + f[0]),)),
    ("id", "gsin"): _Scheme((("num", 16),), lambda cp, f: (("402", _with_check(cp + f[0])),)),
    ("id", "itip"): _Scheme(
        (("num", 13), ("digits", 2), ("digits", 2), ("x82", 20)),
        lambda cp, f: (("8006", _gtin(cp, f[0]) + f[1] + f[2]), ("21", f[3])),
    ),
    ("id", "upui"): _Scheme((("num", 13), ("x82", 28)), lambda cp, f: (("01", _gtin(cp, f[0])), ("235", f[1]))),
    ("id", "pgln"): _Scheme((("num", 12),), lambda cp, f: (("417", _with_check(cp + f[0])),)),
    ("class", "lgtin"): _Scheme((("num", 13), ("x82", 20)), lambda cp, f: (("01", _gtin(cp, f[0])), ("10", f[1]))),
    ("idpat", "sgtin"): _Scheme((("num", 13), ("*", 0)), lambda cp, f: (("01", _gtin(cp, f[0])),)),
    ("idpat", "upui"): _Scheme((("num", 13), ("*", 0)), lambda cp, f: (("01", _gtin(cp, f[0])),)),
    ("idpat", "sgln"): _Scheme((("num", 12), ("*", 0)), _sgln_pattern),
    ("idpat", "grai"): _Scheme((("num", 12), ("*", 0)), lambda cp, f: (("8003", "0" + _with_check(cp + f[0])),)),
    ("idpat", "gdti"): _Scheme((("num", 12), ("*", 0)), lambda cp, f: (("253", _with_check(cp + f[0])),)),
    ("idpat", "sgcn"): _Scheme((("num", 12), ("*", 0)), lambda cp, f: (("255", _with_check(cp + f[0])),)),
    ("idpat", "cpi"): _Scheme((("y39ref", 30), ("*", 0)), lambda cp, f: (("8010", cp + f[0]),)),
    ("idpat", "itip"): _Scheme(
        (("num", 13), ("digits", 2), ("digits", 2), ("*", 0)),
        lambda cp, f: (("8006", _gtin(cp, f[0]) + f[1] + f[2]),),
    ),
}


def _field(uri: str, cp: str, index: int, raw: str, field: _Field) -> str:
    kind, n = field
    what = f"EPC URI {uri!r}: component {index + 2}"
    if kind == "*":
        if raw != "*":
            raise EpcUriError(f"{what} must be '*' in a pattern URI, is {raw!r}")
        return raw
    if kind in {"num", "digits", "serialnum"}:
        if raw and (not raw.isascii() or not raw.isdigit()):
            raise EpcUriError(f"{what} {raw!r}: only the digits 0-9 are allowed")
        if kind == "num" and len(cp) + len(raw) != n:
            raise EpcUriError(f"{what}: company prefix and reference must have {n} digits, have {len(cp) + len(raw)}")
        if kind == "digits" and len(raw) != n:
            raise EpcUriError(f"{what} {raw!r}: must have {n} digits")
        if kind == "serialnum" and not 1 <= len(raw) <= n:
            raise EpcUriError(f"{what} {raw!r}: must have 1 to {n} digits")
        return raw
    charset = CHARSET_39 if kind.startswith("y39") else CHARSET_82
    value = unescape_component(raw, charset, what)
    limit = n - len(cp) if kind.endswith("ref") else n
    if not 1 <= len(value) <= limit:
        raise EpcUriError(f"{what} {raw!r}: must have 1 to {limit} characters, has {len(value)}")
    return value


def parse_epc_uri(uri: str) -> EpcIdentity:
    """Parse an EPC pure identity, class or pattern URI into the GS1 elements it stands for (check digits computed)."""
    parts = uri.split(":", 4)
    if len(parts) != 5 or parts[0] != "urn" or parts[1] != "epc":
        raise EpcUriError(f"EPC URI {uri!r}: must look like urn:epc:id|class|idpat:SCHEME:...")
    kind, scheme, body = parts[2], parts[3], parts[4]
    spec = _SCHEMES.get((kind, scheme))
    if spec is None:
        raise EpcUriError(f"EPC URI {uri!r}: scheme urn:epc:{kind}:{scheme} is not a supported GS1 scheme")
    segments = body.split(".", len(spec.fields))
    if len(segments) != len(spec.fields) + 1:
        raise EpcUriError(
            f"EPC URI {uri!r}: {scheme} needs {len(spec.fields) + 1} dot-separated components, has {len(segments)}"
        )
    cp = segments[0]
    if not cp.isascii() or not cp.isdigit() or len(cp) not in COMPANY_PREFIX_LENGTHS:
        raise EpcUriError(f"EPC URI {uri!r}: company prefix {cp!r} must be 6 to 12 digits")
    fields = [_field(uri, cp, i, raw, f) for i, (raw, f) in enumerate(zip(segments[1:], spec.fields, strict=True))]
    if spec.fields[0] == ("num", 13) and not fields[0]:
        raise EpcUriError(f"EPC URI {uri!r}: the indicator digit and item reference must not be empty")
    return EpcIdentity(kind, scheme, cp, spec.build(cp, fields))


def _split_gtin(gtin: str, n: int) -> tuple[str, str]:
    full = normalise_gtin(gtin)
    return full[1 : 1 + n], full[0] + full[1 + n : 13]


def _split_key(name: str, key: str, length: int, n: int) -> tuple[str, str]:
    validate_key(name, key, length)
    return key[:n], key[n : length - 1]


def epc_uri_from_elements(elements: Iterable[Element], company_prefix_length: int) -> str:
    """Return the EPC URI for the GS1 key among `elements` (id URI with a serial, class/pattern URI without).

    Elements that are not part of an EPC (CPV, a lot beside a serial, data attributes) are left out.
    """
    n = check_company_prefix_length(company_prefix_length)
    e = dict(elements)
    uri = _epc_uri(e, n)
    parse_epc_uri(uri)  # one set of rules for both directions: what we write must parse
    return uri


def _epc_uri(e: dict[str, str], n: int) -> str:  # noqa: PLR0911, PLR0912 - one branch per GS1 key reads like the TDS table
    x = escape_component
    if "01" in e:
        cp, iir = _split_gtin(e["01"], n)
        if "21" in e:
            return f"urn:epc:id:sgtin:{cp}.{iir}.{x(e['21'])}"
        if "235" in e:
            return f"urn:epc:id:upui:{cp}.{iir}.{x(e['235'])}"
        if "10" in e:
            return f"urn:epc:class:lgtin:{cp}.{iir}.{x(e['10'])}"
        return f"urn:epc:idpat:sgtin:{cp}.{iir}.*"
    if "00" in e:
        sscc = validate_key("SSCC", e["00"], 18)
        return f"urn:epc:id:sscc:{sscc[1 : 1 + n]}.{sscc[0]}{sscc[1 + n : 17]}"
    if "414" in e:
        cp, ref = _split_key("GLN", e["414"], 13, n)
        return f"urn:epc:id:sgln:{cp}.{ref}.{x(e.get('254', '0'))}"
    if "417" in e:
        cp, ref = _split_key("PGLN", e["417"], 13, n)
        return f"urn:epc:id:pgln:{cp}.{ref}"
    if "8003" in e:
        grai = e["8003"]
        if grai[:1] != "0":
            raise EpcUriError(f"GRAI {grai!r}: must start with the filler digit 0")
        cp, ref = _split_key("GRAI", grai[1:14], 13, n)
        serial = grai[14:]
        return f"urn:epc:id:grai:{cp}.{ref}.{x(serial)}" if serial else f"urn:epc:idpat:grai:{cp}.{ref}.*"
    if "8004" in e:
        return f"urn:epc:id:giai:{e['8004'][:n]}.{x(e['8004'][n:])}"
    if "8017" in e:
        cp, ref = _split_key("GSRNP", e["8017"], 18, n)
        return f"urn:epc:id:gsrnp:{cp}.{ref}"
    if "8018" in e:
        cp, ref = _split_key("GSRN", e["8018"], 18, n)
        return f"urn:epc:id:gsrn:{cp}.{ref}"
    if "253" in e:
        cp, ref = _split_key("GDTI", e["253"][:13], 13, n)
        serial = e["253"][13:]
        return f"urn:epc:id:gdti:{cp}.{ref}.{x(serial)}" if serial else f"urn:epc:idpat:gdti:{cp}.{ref}.*"
    if "255" in e:
        cp, ref = _split_key("GCN", e["255"][:13], 13, n)
        serial = e["255"][13:]
        return f"urn:epc:id:sgcn:{cp}.{ref}.{serial}" if serial else f"urn:epc:idpat:sgcn:{cp}.{ref}.*"
    if "8010" in e:
        cp, ref = e["8010"][:n], x(e["8010"][n:], CHARSET_39)
        return f"urn:epc:id:cpi:{cp}.{ref}.{e['8011']}" if "8011" in e else f"urn:epc:idpat:cpi:{cp}.{ref}.*"
    if "401" in e:
        return f"urn:epc:id:ginc:{e['401'][:n]}.{x(e['401'][n:])}"
    if "402" in e:
        cp, ref = _split_key("GSIN", e["402"], 17, n)
        return f"urn:epc:id:gsin:{cp}.{ref}"
    if "8006" in e:
        itip = e["8006"]
        cp, iir = _split_gtin(itip[:14], n)
        piece, total = itip[14:16], itip[16:]
        if "21" in e:
            return f"urn:epc:id:itip:{cp}.{iir}.{piece}.{total}.{x(e['21'])}"
        return f"urn:epc:idpat:itip:{cp}.{iir}.{piece}.{total}.*"
    raise EpcUriError(f"elements {sorted(e)}: none is a GS1 key with an EPC scheme")


def sgtin_uri(gtin: str, serial: str, company_prefix_length: int) -> str:
    """Return urn:epc:id:sgtin for a GTIN (8 to 14 digits) and a serial (AI 21)."""
    return epc_uri_from_elements((("01", gtin), ("21", serial)), company_prefix_length)


def lgtin_uri(gtin: str, lot: str, company_prefix_length: int) -> str:
    """Return urn:epc:class:lgtin for a GTIN and a batch/lot (AI 10)."""
    return epc_uri_from_elements((("01", gtin), ("10", lot)), company_prefix_length)


def sscc_uri(sscc: str, company_prefix_length: int) -> str:
    """Return urn:epc:id:sscc for an 18-digit SSCC."""
    return epc_uri_from_elements((("00", sscc),), company_prefix_length)


def sgln_uri(gln: str, extension: str | None, company_prefix_length: int) -> str:
    """Return urn:epc:id:sgln for a GLN and its extension (AI 254); no extension is written as "0"."""
    elements = [("414", gln)] if extension is None else [("414", gln), ("254", extension)]
    return epc_uri_from_elements(elements, company_prefix_length)


def _expect(uri: str, scheme: str) -> EpcIdentity:
    identity = parse_epc_uri(uri)
    if identity.scheme != scheme or identity.kind != ("class" if scheme == "lgtin" else "id"):
        raise EpcUriError(f"EPC URI {uri!r}: expected an {scheme} URI")
    return identity


def parse_sgtin_uri(uri: str) -> tuple[str, str]:
    """Return (GTIN-14, serial) from urn:epc:id:sgtin."""
    e = _expect(uri, "sgtin")
    return e.elements[0][1], e.elements[1][1]


def parse_lgtin_uri(uri: str) -> tuple[str, str]:
    """Return (GTIN-14, lot) from urn:epc:class:lgtin."""
    e = _expect(uri, "lgtin")
    return e.elements[0][1], e.elements[1][1]


def parse_sscc_uri(uri: str) -> str:
    """Return the 18-digit SSCC from urn:epc:id:sscc."""
    return _expect(uri, "sscc").elements[0][1]


def parse_sgln_uri(uri: str) -> tuple[str, str | None]:
    """Return (GLN, extension or None when the URI says "0") from urn:epc:id:sgln."""
    e = _expect(uri, "sgln")
    return e.elements[0][1], e.value("254")
