"""Check digits, character sets, dates and the other GS1 content checks ("linters"), as pure functions.

Every linter takes the component's data and returns None when it passes, or a ``Lint`` naming the broken
rule (the GS1 Syntax Engine's error name without its ``GS1_LINTER_`` prefix) and the 0-based span of the
offending characters within that data.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

DIGITS = "0123456789"
#: GS1 AI encodable character set 82 (General Specifications figure 7.11-1).
CSET82 = "!\"%&'()*+,-./0123456789:;<=>?ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz"
#: GS1 AI encodable character set 39 (figure 7.11-2).
CSET39 = "#-/0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
#: GS1 AI encodable character set 64, the file-safe base64url alphabet (figure 7.11-3); '=' pads at the end only.
CSET64 = "-0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz"
CHARSETS = {"N": DIGITS, "X": CSET82, "Y": CSET39, "Z": CSET64}
_CHARSET_RULES = {
    "N": "NON_DIGIT_CHARACTER",
    "X": "INVALID_CSET82_CHARACTER",
    "Y": "INVALID_CSET39_CHARACTER",
    "Z": "INVALID_CSET64_CHARACTER",
}
_CSET32 = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ"
_CSET82_VALUE = {ch: i for i, ch in enumerate(CSET82)}
_DAYS = (0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


class Lint(NamedTuple):
    """A failed check: the rule broken and the span [start, end) of the offending data."""

    rule: str
    start: int
    end: int


Linter = Callable[[str], "Lint | None"]


def _first_outside(data: str, allowed: str) -> int:
    """Index of the first character of data not in allowed, or -1."""
    for i, ch in enumerate(data):
        if ch not in allowed:
            return i
    return -1


def check_charset(charset: str, data: str) -> Lint | None:
    """Check data against the component charset N, X (CSET 82), Y (CSET 39) or Z (CSET 64)."""
    if charset == "Z":
        return lint_cset64(data)
    allowed = CHARSETS[charset]
    if not data.strip(allowed):
        return None
    bad = _first_outside(data, allowed)
    return Lint(_CHARSET_RULES[charset], bad, bad + 1)


def _digits(data: str) -> Lint | None:
    if data.strip(DIGITS):
        bad = _first_outside(data, DIGITS)
        return Lint("NON_DIGIT_CHARACTER", bad, bad + 1)
    return None


def lint_cset64(data: str) -> Lint | None:
    """Base64url characters, with at most two '=' padding a total length that is a multiple of three."""
    body = data.rstrip("=")
    if body.strip(CSET64):
        bad = _first_outside(body, CSET64)
        return Lint("INVALID_CSET64_CHARACTER", bad, bad + 1)
    pad = len(data) - len(body)
    if pad and (not body or pad > 2 or len(data) % 3):
        return Lint("INVALID_CSET64_PADDING", len(body), len(data))
    return None


def gs1_check_digit(payload: str) -> int:
    """Return the GS1 mod-10 check digit for the digits of payload (the data without its check digit)."""
    if not payload or not payload.isascii() or not payload.isdigit():
        raise ValueError(f"check digit needs a non-empty string of ASCII digits, got {payload!r}")
    total = 3 * sum(map(int, payload[-1::-2])) + sum(map(int, payload[-2::-2]))
    return -total % 10


def lint_csum(data: str) -> Lint | None:
    """GS1 mod-10 check digit in the last position (GTIN, SSCC, GLN, GSRN, ...)."""
    if not data:
        return Lint("TOO_SHORT_FOR_CHECK_DIGIT", 0, 0)
    bad = _digits(data)
    if bad:
        return bad
    expected = gs1_check_digit(data[:-1]) if len(data) > 1 else 0
    if expected != int(data[-1]):
        return Lint("INCORRECT_CHECK_DIGIT", len(data) - 1, len(data))
    return None


def _primes(count: int) -> tuple[int, ...]:
    found: list[int] = []
    candidate = 2
    while len(found) < count:
        if all(candidate % p for p in found if p * p <= candidate):
            found.append(candidate)
        candidate += 1
    return tuple(found)


#: Weights of the check character pair: successive primes from the right (General Specifications 7.9.5).
_PAIR_WEIGHTS = _primes(97)


def check_pair(payload: str) -> str:
    """Return the two GS1 check characters (CSET 32) for a CSET 82 payload (GMN, CPID-style keys)."""
    if len(payload) > len(_PAIR_WEIGHTS):
        raise ValueError("payload too long for the check character pair")
    total = sum(_CSET82_VALUE[ch] * w for ch, w in zip(reversed(payload), _PAIR_WEIGHTS, strict=False)) % 1021
    return _CSET32[total >> 5] + _CSET32[total & 31]


def lint_csumalpha(data: str) -> Lint | None:
    """GS1 check character pair in the last two positions."""
    if len(data) < 2:
        return Lint("TOO_SHORT_FOR_CHECK_PAIR", 0, len(data))
    if len(data) - 2 > len(_PAIR_WEIGHTS):
        return Lint("TOO_LONG_FOR_CHECK_PAIR_IMPLEMENTATION", 0, len(data))
    bad = _first_outside(data, CSET82)
    if bad != -1 and bad < len(data) - 2:
        return Lint("INVALID_CSET82_CHARACTER", bad, bad + 1)
    if bad != -1 or check_pair(data[:-2]) != data[-2:]:
        return Lint("INCORRECT_CHECK_PAIR", len(data) - 2, len(data))
    return None


def _is_leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


def _date(data: str, *, year_digits: int, zero_day: bool) -> Lint | None:
    size = year_digits + 4
    if len(data) < size:
        return Lint("DATE_TOO_SHORT", 0, len(data))
    if len(data) > size:
        return Lint("DATE_TOO_LONG", 0, len(data))
    bad = _digits(data)
    if bad:
        return bad
    # Two-digit years fall in a window of -49/+50 years around today (GS1 General Specifications 7.12); every
    # year divisible by four in any such window around this century is a leap year, so yy % 4 decides.
    year = int(data[:year_digits])
    leap = year % 4 == 0 if year_digits == 2 else _is_leap(year)
    month = int(data[year_digits : year_digits + 2])
    if not 1 <= month <= 12:
        return Lint("ILLEGAL_MONTH", year_digits, year_digits + 2)
    day = int(data[year_digits + 2 :])
    last = 28 if month == 2 and not leap else _DAYS[month]
    if day > last or (day == 0 and not zero_day):
        return Lint("ILLEGAL_DAY", year_digits + 2, size)
    return None


def lint_yymmd0(data: str) -> Lint | None:
    """YYMMDD date where DD may be 00 (meaning the last day of the month)."""
    return _date(data, year_digits=2, zero_day=True)


def lint_yymmdd(data: str) -> Lint | None:
    """YYMMDD calendar date."""
    return _date(data, year_digits=2, zero_day=False)


def lint_yyyymmd0(data: str) -> Lint | None:
    """YYYYMMDD date where DD may be 00."""
    return _date(data, year_digits=4, zero_day=True)


def lint_yyyymmdd(data: str) -> Lint | None:
    """YYYYMMDD calendar date."""
    return _date(data, year_digits=4, zero_day=False)


def _two_digit(data: str, name: str, highest: int, illegal: str) -> Lint | None:
    if len(data) < 2:
        return Lint(f"{name}_TOO_SHORT", 0, len(data))
    if len(data) > 2:
        return Lint(f"{name}_TOO_LONG", 0, len(data))
    bad = _digits(data)
    if bad:
        return bad
    if int(data) > highest:
        return Lint(illegal, 0, 2)
    return None


def lint_hh(data: str) -> Lint | None:
    """Hour 00-23."""
    return _two_digit(data, "HOUR", 23, "ILLEGAL_HOUR")


def lint_mi(data: str) -> Lint | None:
    """Minute 00-59."""
    return _two_digit(data, "MINUTE", 59, "ILLEGAL_MINUTE")


def lint_ss(data: str) -> Lint | None:
    """Second 00-59."""
    return _two_digit(data, "SECOND", 59, "ILLEGAL_SECOND")


def lint_hhmi(data: str) -> Lint | None:
    """Time of day HHMI."""
    if len(data) < 4:
        return Lint("HOUR_WITH_MINUTE_TOO_SHORT", 0, len(data))
    if len(data) > 4:
        return Lint("HOUR_WITH_MINUTE_TOO_LONG", 0, len(data))
    bad = _digits(data)
    if bad:
        return bad
    if int(data[:2]) > 23:
        return Lint("ILLEGAL_HOUR", 0, 2)
    if int(data[2:]) > 59:
        return Lint("ILLEGAL_MINUTE", 2, 4)
    return None


def lint_nonzero(data: str) -> Lint | None:
    """Digits that are not all zero."""
    bad = _digits(data)
    if bad:
        return bad
    if not data.strip("0"):
        return Lint("ILLEGAL_ZERO_VALUE", 0, len(data))
    return None


def lint_zero(data: str) -> Lint | None:
    """Exactly zero: one or more '0'."""
    if not data or data.strip("0"):
        return Lint("NOT_ZERO", 0, len(data))
    return None


def lint_nozeroprefix(data: str) -> Lint | None:
    """Digits without a leading zero."""
    bad = _digits(data)
    if bad:
        return bad
    if data.startswith("0"):
        return Lint("ILLEGAL_ZERO_PREFIX", 0, 1)
    return None


def lint_yesno(data: str) -> Lint | None:
    """Check a flag: '0' or '1'."""
    return None if data in ("0", "1") else Lint("NOT_ZERO_OR_ONE", 0, len(data))


def lint_winding(data: str) -> Lint | None:
    """Winding direction of a roll: 0, 1 or 9."""
    return None if data in ("0", "1", "9") else Lint("INVALID_WINDING_DIRECTION", 0, len(data))


def lint_iso5218(data: str) -> Lint | None:
    """Biological sex code of ISO/IEC 5218: 0, 1, 2 or 9."""
    return None if data in ("0", "1", "2", "9") else Lint("INVALID_BIOLOGICAL_SEX_CODE", 0, len(data))


def lint_hyphen(data: str) -> Lint | None:
    """One or more '-'."""
    if not data or data.strip("-"):
        return Lint("NOT_HYPHEN", 0, len(data))
    return None


def lint_hasnondigit(data: str) -> Lint | None:
    """At least one character that is not a digit."""
    if not data.strip(DIGITS):
        return Lint("REQUIRES_NON_DIGIT_CHARACTER", 0, len(data))
    return None


def lint_pieceoftotal(data: str) -> Lint | None:
    """Piece number and total count, two halves of equal length, 1 <= piece <= total."""
    if not data or len(data) % 2:
        return Lint("INVALID_LENGTH_FOR_PIECE_OF_TOTAL", 0, len(data))
    bad = _digits(data)
    if bad:
        return bad
    half = len(data) // 2
    piece, total = int(data[:half]), int(data[half:])
    if piece == 0:
        return Lint("ZERO_PIECE_NUMBER", 0, half)
    if total == 0:
        return Lint("ZERO_TOTAL_PIECES", half, len(data))
    if piece > total:
        return Lint("PIECE_NUMBER_EXCEEDS_TOTAL", 0, len(data))
    return None


def lint_posinseqslash(data: str) -> Lint | None:
    """Position in a sequence written as ``position/end``, no leading zeros, position <= end."""
    position, slash, end = data.partition("/")
    if not slash or not position.isdigit() or not end.isdigit() or not data.isascii():
        return Lint("POSITION_IN_SEQUENCE_MALFORMED", 0, len(data))
    if position.startswith("0"):
        return Lint("ILLEGAL_ZERO_PREFIX", 0, len(position))
    if end.startswith("0"):
        return Lint("ILLEGAL_ZERO_PREFIX", len(position) + 1, len(data))
    if int(position) > int(end):
        return Lint("POSITION_EXCEEDS_END", 0, len(data))
    return None


def lint_pcenc(data: str) -> Lint | None:
    """Percent-encoding: every '%' starts a two-hex-digit escape."""
    start = data.find("%")
    while start != -1:
        escape = data[start + 1 : start + 3]
        if len(escape) != 2 or escape.strip("0123456789abcdefABCDEF"):
            return Lint("INVALID_PERCENT_SEQUENCE", start, start + 1 + len(escape))
        start = data.find("%", start + 3)
    return None


def _coordinate(data: str, name: str, highest: int) -> Lint | None:
    if len(data) != 10:
        return Lint(f"{name}_INVALID_LENGTH", 0, len(data))
    bad = _digits(data)
    if bad:
        return bad
    if int(data) > highest:
        return Lint(f"INVALID_{name}", 0, 10)
    return None


def lint_latitude(data: str) -> Lint | None:
    """Latitude as 10 digits, 0 to 1800000000 (offset by 90 degrees)."""
    return _coordinate(data, "LATITUDE", 1_800_000_000)


def lint_longitude(data: str) -> Lint | None:
    """Longitude as 10 digits, 0 to 3600000000 (offset by 180 degrees)."""
    return _coordinate(data, "LONGITUDE", 3_600_000_000)


_IMPORTER_INDEX = "-0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz"


def lint_importeridx(data: str) -> Lint | None:
    """Check the importer index of a UIC (AI 7040): one character of the base64url alphabet."""
    if len(data) != 1:
        return Lint("IMPORTER_IDX_MUST_BE_ONE_CHARACTER", 0, len(data))
    if data not in _IMPORTER_INDEX:
        return Lint("INVALID_IMPORT_IDX_CHARACTER", 0, 1)
    return None


def lint_iban(data: str) -> Lint | None:
    """IBAN structure and ISO 13616 mod-97 checksum (the country-code list itself is not carried)."""
    if len(data) < 5:
        return Lint("IBAN_TOO_SHORT", 0, len(data))
    if len(data) > 34:
        return Lint("IBAN_TOO_LONG", 0, len(data))
    bad = _first_outside(data, "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ")
    if bad != -1:
        return Lint("INVALID_IBAN_CHARACTER", bad, bad + 1)
    if data[:2].strip("ABCDEFGHIJKLMNOPQRSTUVWXYZ") or data[2:4].strip(DIGITS):
        return Lint("ILLEGAL_IBAN_COUNTRY_CODE", 0, 2)
    rearranged = data[4:] + data[:4]
    if int("".join(str(int(ch, 36)) for ch in rearranged)) % 97 != 1:
        return Lint("INCORRECT_IBAN_CHECKSUM", 2, 4)
    return None


def _accept(_data: str) -> Lint | None:
    """Stand-in for a check that needs an external code list we do not carry (see NOT_CHECKED)."""
    return None


#: Dictionary checks accepted without checking, with the reason: they need code lists or rules we do not carry.
NOT_CHECKED: dict[str, str] = {
    "gcppos1": "needs the GS1 Company Prefix allocation list",
    "gcppos2": "needs the GS1 Company Prefix allocation list",
    "iso3166": "needs the ISO 3166-1 numeric country code list",
    "iso3166999": "needs the ISO 3166-1 numeric country code list",
    "iso3166alpha2": "needs the ISO 3166-1 alpha-2 country code list",
    "iso4217": "needs the ISO 4217 currency code list",
    "mediatype": "needs the GS1 AIDC media type code list",
    "packagetype": "needs the UN/ECE Recommendation 21 package type code list",
    "couponcode": "North American coupon structure, not used on pharmaceutical lines",
    "couponposoffer": "North American coupon structure, not used on pharmaceutical lines",
}

LINTERS: dict[str, Linter] = {
    "csum": lint_csum,
    "csumalpha": lint_csumalpha,
    "yymmd0": lint_yymmd0,
    "yymmdd": lint_yymmdd,
    "yyyymmd0": lint_yyyymmd0,
    "yyyymmdd": lint_yyyymmdd,
    "hh": lint_hh,
    "mi": lint_mi,
    "ss": lint_ss,
    "hhmi": lint_hhmi,
    "nonzero": lint_nonzero,
    "zero": lint_zero,
    "nozeroprefix": lint_nozeroprefix,
    "yesno": lint_yesno,
    "winding": lint_winding,
    "iso5218": lint_iso5218,
    "hyphen": lint_hyphen,
    "hasnondigit": lint_hasnondigit,
    "pieceoftotal": lint_pieceoftotal,
    "posinseqslash": lint_posinseqslash,
    "pcenc": lint_pcenc,
    "latitude": lint_latitude,
    "longitude": lint_longitude,
    "importeridx": lint_importeridx,
    "iban": lint_iban,
    **dict.fromkeys(NOT_CHECKED, _accept),
}
