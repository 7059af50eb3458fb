"""GS1 keys: mod-10 check digits, GTIN normalisation, GLN and SSCC building and parsing, serial character sets."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

from edge.errors import EdgeError
from edge.gs1 import checks

Element: TypeAlias = tuple[str, str]
"""One GS1 element: (AI, value), e.g. ("01", "09506000134352")."""

# GS1 AI encodable character set 82 (GS1 General Specifications, Figure 7.11-1): what serials, lots and
# most alphanumeric AI values may contain.
CHARSET_82 = frozenset("!\"%&'()*+,-./0123456789:;<=>?ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz")
# GS1 AI encodable character set 39 (Figure 7.11-2): component/part identifiers (CPID, AI 8010).
CHARSET_39 = frozenset("#-/0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ")

GTIN_LENGTHS = (8, 12, 13, 14)
COMPANY_PREFIX_LENGTHS = range(6, 13)


class IdentifierError(EdgeError):
    """A GS1 key or EPC/Digital Link identifier breaks a rule; the message names the identifier and the rule."""


def gs1_check_digit(digits: str) -> int:
    """Return the GS1 mod-10 check digit for `digits` (the key without its check digit), any length."""
    if not digits.isascii() or not digits.isdigit():
        raise IdentifierError(f"check digit of {digits!r}: only the digits 0-9 are allowed")
    return checks.gs1_check_digit(digits)


def has_valid_check_digit(key: str) -> bool:
    """Tell whether the last digit of the all-digit `key` is its GS1 mod-10 check digit."""
    if len(key) < 2 or not key.isascii() or not key.isdigit():
        return False
    return gs1_check_digit(key[:-1]) == int(key[-1])


def _digits(name: str, value: str, lengths: tuple[int, ...]) -> None:
    if value and (not value.isascii() or not value.isdigit()):
        raise IdentifierError(f"{name} {value!r}: only the digits 0-9 are allowed")
    if len(value) not in lengths:
        allowed = " or ".join(str(n) for n in lengths)
        raise IdentifierError(f"{name} {value!r}: must have {allowed} digits, has {len(value)}")


def _check(name: str, value: str) -> None:
    expected = gs1_check_digit(value[:-1])
    if int(value[-1]) != expected:
        raise IdentifierError(f"{name} {value!r}: check digit is {value[-1]}, should be {expected}")


def validate_key(name: str, value: str, length: int) -> str:
    """Return `value` when it is `length` digits ending in a correct check digit; IdentifierError naming `name`."""
    _digits(name, value, (length,))
    _check(name, value)
    return value


def normalise_gtin(gtin: str) -> str:
    """Return the 14-digit form of a GTIN-8, -12, -13 or -14 after checking its digits and check digit."""
    _digits("GTIN", gtin, GTIN_LENGTHS)
    _check("GTIN", gtin)
    return gtin.zfill(14)


def gtin_short_form(gtin: str, length: int | None = None) -> str:
    """Return a valid GTIN in its shortest form, or in exactly `length` digits, by dropping leading zeros."""
    full = normalise_gtin(gtin)
    if length is not None:
        if length not in GTIN_LENGTHS:
            raise IdentifierError(f"GTIN {gtin!r}: cannot be written with {length} digits (8, 12, 13 or 14)")
        if full[: 14 - length].strip("0"):
            raise IdentifierError(f"GTIN {gtin!r}: does not fit in {length} digits (leading digits are not zero)")
        return full[14 - length :]
    for candidate in (8, 12, 13):
        if not full[: 14 - candidate].strip("0"):
            return full[14 - candidate :]
    return full


def validate_gln(gln: str) -> str:
    """Return `gln` when it is 13 digits with a correct check digit (GLN, AI 414/417)."""
    return validate_key("GLN", gln, 13)


def validate_sscc(sscc: str) -> str:
    """Return `sscc` when it is 18 digits with a correct check digit (AI 00)."""
    return validate_key("SSCC", sscc, 18)


def check_company_prefix_length(length: int) -> int:
    """Return `length` when it is a possible GS1 Company Prefix length (6 to 12 digits)."""
    if length not in COMPANY_PREFIX_LENGTHS:
        raise IdentifierError(f"GS1 Company Prefix length {length}: must be 6 to 12 digits")
    return length


@dataclass(frozen=True, slots=True)
class SsccParts:
    """An SSCC split at the GS1 Company Prefix: extension digit, prefix, serial reference, check digit."""

    extension_digit: str
    company_prefix: str
    serial_reference: str
    check_digit: str

    @property
    def sscc(self) -> str:
        """Return the 18-digit SSCC these parts make."""
        return self.extension_digit + self.company_prefix + self.serial_reference + self.check_digit


def build_sscc(extension_digit: int | str, company_prefix: str, serial_reference: str) -> str:
    """Build the 18-digit SSCC: extension digit, company prefix, serial reference (17 digits), check digit."""
    ext = str(extension_digit)
    _digits("SSCC extension digit", ext, (1,))
    _digits("SSCC company prefix", company_prefix, tuple(COMPANY_PREFIX_LENGTHS))
    if not serial_reference.isascii() or not serial_reference.isdigit():
        raise IdentifierError(f"SSCC serial reference {serial_reference!r}: only the digits 0-9 are allowed")
    body = ext + company_prefix + serial_reference
    if len(body) != 17:
        raise IdentifierError(
            f"SSCC serial reference {serial_reference!r}: with a {len(company_prefix)}-digit company prefix it "
            f"must have {16 - len(company_prefix)} digits, has {len(serial_reference)}"
        )
    return body + str(gs1_check_digit(body))


def parse_sscc(sscc: str, company_prefix_length: int) -> SsccParts:
    """Split a valid SSCC into its parts, given the length of its GS1 Company Prefix."""
    validate_sscc(sscc)
    n = check_company_prefix_length(company_prefix_length)
    return SsccParts(sscc[0], sscc[1 : 1 + n], sscc[1 + n : 17], sscc[17])


def validate_chars(name: str, value: str, *, max_length: int, charset: frozenset[str] = CHARSET_82) -> str:
    """Return `value` when it has 1..`max_length` characters, all from `charset` (default: GS1 set 82)."""
    if not value:
        raise IdentifierError(f"{name}: must not be empty")
    if len(value) > max_length:
        raise IdentifierError(f"{name} {value!r}: at most {max_length} characters, has {len(value)}")
    bad = sorted({c for c in value if c not in charset})
    if bad:
        names = {CHARSET_82: "GS1 character set 82", CHARSET_39: "GS1 character set 39"}
        set_name = names.get(charset, "allowed character set")
        raise IdentifierError(f"{name} {value!r}: characters {bad!r} are not in the {set_name}")
    return value


def validate_serial(serial: str) -> str:
    """Return `serial` when it is a valid GS1 serial number (AI 21): 1 to 20 characters of set 82."""
    return validate_chars("serial", serial, max_length=20)
