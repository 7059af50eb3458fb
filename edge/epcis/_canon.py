"""Value canonicalisation of the GS1 EPCIS event hash (CBV 2.0), as the reference generator does it.

The reference is the GS1 "EPCIS Event Hash Generator" (RalphTro/epcis-event-hash-generator). Hashes only agree
between implementations that canonicalise alike, so this follows the reference where it departs from the letter
of its own rules: a Digital Link is canonical only if it passes the reference's syntax check (so one with a
percent escape stays as written), timestamps are rounded half to even on whole microseconds, and a number is
whatever Python's float makes of it.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = [
    "CBV",
    "CBV_VOCABULARIES",
    "DL_ESCAPES",
    "GS1_VOC",
    "SGTIN_SERIAL",
    "canonical_time",
    "canonical_value",
    "is_vocabulary_uri",
    "normalise_id",
    "utc_millis",
]

CBV = "https://ref.gs1.org/cbv/"
GS1_VOC = "https://gs1.org/voc/"

# The bare words the EPCIS 2.0 JSON-LD context (ref.gs1.org/standards/epcis/2.0.0) expands in each vocabulary
# typed field, with the URI prefix they expand under.
_WORDS = {
    "bizStep": (
        CBV + "BizStep-",
        ("accepting arriving assembling collecting commissioning consigning creating_class_instance cycle_counting "
        "decommissioning departing destroying disassembling dispensing encoding entering_exiting holding inspecting "
        "installing killing loading other packing picking receiving removing repackaging repairing replacing "
        "reserving retail_selling sampling sensor_reporting shipping staging_outbound stock_taking stocking storing "
        "transporting unloading unpacking void_shipping"),
    ),
    "disposition": (
        CBV + "Disp-",
        ("active available completeness_verified completeness_inferred conformant container_closed container_open "
        "damaged destroyed dispensed disposed encoded expired in_progress in_transit inactive mismatch_instance "
        "mismatch_class mismatch_quantity needs_replacement no_pedigree_match non_conformant non_sellable_other "
        "partially_dispensed recalled reserved retail_sold returned sellable_accessible sellable_not_accessible "
        "stolen unavailable unknown"),
    ),
    "bizTransactionType": (
        CBV + "BTT-",
        "bol cert desadv inv pedigree po poc prodorder recadv rma testprd testres upevt",
    ),
    "sourceDestType": (CBV + "SDT-", "owning_party possessing_party location"),
    "errorReason": (CBV + "ER-", "did_not_occur incorrect_data"),
    "measurementType": (
        GS1_VOC,
        ("AbsoluteHumidity AbsorbedDose AbsorbedDoseRate Acceleration Radioactivity Altitude AmountOfSubstance "
        "AmountOfSubstancePerUnitVolume Angle AngularAcceleration AngularMomentum AngularVelocity Area Capacitance "
        "Conductance Conductivity Count Density Dimensionless DoseEquivalent DoseEquivalentRate DynamicViscosity "
        "ElectricCharge ElectricCurrent ElectricCurrentDensity ElectricFieldStrength Energy Exposure Force Frequency "
        "Illuminance Inductance Irradiance KinematicViscosity Length LinearMomentum Luminance LuminousFlux "
        "LuminousIntensity MagneticFlux MagneticFluxDensity MagneticVectorPotential Mass MassConcentration "
        "MassFlowRate MassPerAreaTime MemoryCapacity MolalityOfSolute MolarEnergy MolarMass MolarVolume Power "
        "Pressure RadiantFlux RadiantIntensity RelativeHumidity Resistance Resistivity SolidAngle SpecificVolume Speed "
        "SurfaceDensity SurfaceTension Temperature Time Torque Voltage Volume VolumeFlowRate VolumeFraction "
        "VolumetricFlux Wavenumber"),
    ),
    "sensorAlertType": (GS1_VOC, "ALARM_CONDITION ERROR_CONDITION"),
    "component": (
        CBV + "Comp-",
        ("x y z axial_distance azimuth height spherical_radius polar_angle elevation_angle easting northing latitude "
        "longitude altitude"),
    ),
}
CBV_VOCABULARIES: dict[str, dict[str, str]] = {
    field: {word: prefix + word for word in words.split()} for field, (prefix, words) in _WORDS.items()
}
"""Per vocabulary: bare word -> the URI the EPCIS JSON-LD context expands it to."""

_VOCABULARY_ROOTS = ("https://ref.gs1.org/cbv", "https://gs1.org/voc")


def is_vocabulary_uri(value: str) -> bool:
    """Tell whether a JSON-LD expanded value is one the bare-word replacement may substitute (CBV or GS1 voc)."""
    return value.startswith(_VOCABULARY_ROOTS)


# --- values -------------------------------------------------------------------------------------------------

_WEB_VOCABULARY = (
    ("urn:epcglobal:cbv:bizstep:", CBV + "BizStep-"),
    ("urn:epcglobal:cbv:disp:", CBV + "Disp-"),
    ("urn:epcglobal:cbv:btt:", CBV + "BTT-"),
    ("urn:epcglobal:cbv:sdt:", CBV + "SDT-"),
    ("urn:epcglobal:cbv:er:", CBV + "ER-"),
)


def canonical_value(text: str) -> str:
    """Return a stripped, non-empty field value as the pre-hash string writes it (CBV URNs, numbers, GS1 ids)."""
    if "urn:epcglobal:cbv:" in text:
        # Anywhere in the value, not just at its start: the reference replaces substrings.
        for urn, web in _WEB_VOCABULARY:
            text = text.replace(urn, web)
    text = _numeric(text)
    return normalise_id(text) or text


def _numeric(text: str) -> str:
    """Return a number without trailing zeros, sign or exponent noise; any other text unchanged."""
    if ":" in text:
        return text  # no number has one (float() would refuse it): identifiers, mostly, skip the exception
    try:
        number = float(text)
    except ValueError:
        return text
    try:
        if int(number) == number:
            return str(int(number))
    except (ValueError, OverflowError):
        # NaN stays as written, like the reference; it drops an event holding an infinity, we keep it as written.
        return text
    return str(number)


# --- GS1 identifiers: EPC URIs and Digital Links to constrained canonical Digital Links ------------------------

_DL = "https://id.gs1.org/"
# The reference percent-encodes only these when it copies an EPC URI component into a Digital Link; the EPC
# URI's own %HH escapes are copied as they are, in the case they were written.
DL_ESCAPES = str.maketrans({"!": "%21", "(": "%28", ")": "%29", "*": "%2A", "+": "%2B", ",": "%2C", ":": "%3A"})
_X = r"(?:%2[125-9A-Fa-f]|%3[0-9A-Fa-f]|%4[1-9A-Fa-f]|%5[0-9AaFf]|%6[1-9A-Fa-f]|%7[0-9Aa]|[!')(*+,.0-9:;=A-Za-z_-])"
SGTIN_SERIAL = re.compile(_X + "{1,20}")
"""An SGTIN serial as the reference accepts it (after the company prefix and item reference)."""
_Y = r"(?:%2[3dfDF]|%3[0-9]|%4[1-9A-Fa-f]|%5[0-9Aa]|[0-9A-Z-])"


def _cd(digits: str) -> str:
    """Return the digits followed by their GS1 check digit."""
    # Weight 3 from the last digit on, every other one; 1 for the rest.
    if digits.isascii():
        # ASCII digits summed as their bytes (each 48 more than its value): no int() per digit.
        data = digits.encode()
        threes, ones = data[::-2], data[-2::-2]
        total = 3 * (sum(threes) - 48 * len(threes)) + sum(ones) - 48 * len(ones)
    else:
        # int(): \d in the patterns admits any Unicode digit, as the reference's does.
        total = 3 * sum(map(int, digits[::-2])) + sum(map(int, digits[-2::-2]))
    return digits + str(-total % 10)


def _keyed(total: int, twelve: str | None = None) -> str:
    """Alternatives company prefix (6-12 digits) '.' reference, together `total` digits."""
    alternatives = [rf"\d{{{n}}}\.\d{{{total - n}}}" for n in range(6, 12)]
    alternatives.append(twelve or rf"\d{{12}}\.\d{{{total - 12}}}")
    return "(?:" + "|".join(alternatives) + ")"


def _refs(charset: str, total: int) -> str:
    """Alternatives company prefix (6-12 digits) '.' text of at most `total` characters with it."""
    return "(?:" + "|".join(rf"\d{{{n}}}\.{charset}{{1,{total - n}}}" for n in range(6, 13)) + ")"


def _gtin(uri: str, cp: str, p: int) -> str:
    item = uri[p + 1 : p + 14 - len(cp)]
    return _cd(item[:1] + cp + item[1:])


def _body12(uri: str, cp: str, p: int) -> str:
    return cp + uri[p + 1 : p + 13 - len(cp)]


_G12 = r"\d{12}\.\."  # the reference's 12-digit prefix alternative for some schemes: two dots, not one
_EPC_SCHEMES: list[tuple[str, re.Pattern[str], Callable[[str, str, int], str]]] = [
    (prefix, re.compile(re.escape(prefix) + pattern), build)
    for prefix, pattern, build in [
        ("urn:epc:id:sgtin:", rf"{_keyed(13)}\.{_X}{{1,20}}$",
         lambda u, cp, p: f"01/{_gtin(u, cp, p)}/21/{u[32:].translate(DL_ESCAPES)}"),
        ("urn:epc:id:sscc:", rf"{_keyed(17)}$",
         lambda u, cp, p: "00/" + _cd(u[p + 1 : p + 2] + cp + u[p + 2 :])),
        ("urn:epc:id:sgln:", rf"{_keyed(12)}\.{_X}{{1,20}}$",
         lambda u, cp, p: "414/" + _cd(_body12(u, cp, p))
         + ("" if u[30:] == "0" else "/254/" + u[30:].translate(DL_ESCAPES))),
        ("urn:epc:id:grai:", rf"{_keyed(12, _G12)}\.{_X}{{1,16}}$",
         lambda u, cp, p: "8003/" + _cd("0" + _body12(u, cp, p)) + u[30:].translate(DL_ESCAPES)),
        ("urn:epc:id:giai:", rf"{_refs(_X, 30)}$",
         lambda u, cp, p: f"8004/{cp}{u[p + 1 :].translate(DL_ESCAPES)}"),
        ("urn:epc:id:gsrn:", rf"{_keyed(17)}$",
         lambda u, cp, p: "8018/" + _cd(cp + u[p + 1 :])),
        ("urn:epc:id:gsrnp:", rf"{_keyed(17)}$",
         lambda u, cp, p: "8017/" + _cd(cp + u[p + 1 :])),
        ("urn:epc:id:gdti:", rf"{_keyed(12, _G12)}{_X}{{1,20}}$",
         lambda u, cp, p: "253/" + _cd(_body12(u, cp, p)) + u[30:].translate(DL_ESCAPES)),
        ("urn:epc:id:cpi:", rf"{_refs(_Y, 30)}\.\d{{1,12}}$",
         lambda u, cp, p: f"8010/{(cp + u[p + 1 : u.rfind('.')]).translate(DL_ESCAPES)}/8011/{u[u.rfind('.') + 1 :]}"),
        ("urn:epc:id:sgcn:", rf"{_keyed(12)}\.\d{{1,12}}$",
         lambda u, cp, p: "255/" + _cd(_body12(u, cp, p)) + u[30:]),
        ("urn:epc:id:ginc:", rf"{_refs(_X, 30)}$",
         lambda u, cp, p: f"401/{cp}{u[p + 1 :].translate(DL_ESCAPES)}"),
        ("urn:epc:id:gsin:", rf"{_keyed(16)}$",
         lambda u, cp, p: "402/" + _cd(cp + u[p + 1 :])),
        ("urn:epc:id:itip:", rf"{_keyed(13)}\.\d{{2}}\.\d{{2}}\.{_X}{{1,20}}$",
         lambda u, cp, p: f"8006/{_gtin(u, cp, p)}{u[31:33]}{u[34:36]}/21/{u[37:].translate(DL_ESCAPES)}"),
        ("urn:epc:id:upui:", rf"{_keyed(13)}\.{_X}{{1,28}}$",
         lambda u, cp, p: f"01/{_gtin(u, cp, p)}/235/{u[31:].translate(DL_ESCAPES)}"),
        ("urn:epc:id:pgln:", rf"{_keyed(12)}$",
         lambda u, cp, p: "417/" + _cd(_body12(u, cp, p))),
        ("urn:epc:class:lgtin:", rf"{_keyed(13)}\.{_X}{{1,20}}$",
         lambda u, cp, p: f"01/{_gtin(u, cp, p)}/10/{u[35:].translate(DL_ESCAPES)}"),
        ("urn:epc:idpat:sgtin:", rf"{_keyed(13)}\.\*$", lambda u, cp, p: f"01/{_gtin(u, cp, p)}"),
        ("urn:epc:idpat:grai:", rf"{_keyed(12, _G12)}\.\*$",
         lambda u, cp, p: "8003/" + _cd("0" + _body12(u, cp, p))),
        ("urn:epc:idpat:gdti:", rf"{_keyed(12, _G12)}\.\*$",
         lambda u, cp, p: "253/" + _cd(_body12(u, cp, p))),
        ("urn:epc:idpat:sgcn:", rf"{_keyed(12, _G12)}\.\*$",
         lambda u, cp, p: "255/" + _cd(_body12(u, cp, p))),
        ("urn:epc:idpat:cpi:", rf"{_refs(_Y, 30)}\.\*$",
         lambda u, cp, p: f"8010/{(cp + u[p + 1 : u.rfind('.')]).translate(DL_ESCAPES)}"),
        ("urn:epc:idpat:itip:", rf"{_keyed(13)}\.\d{{2}}\.\d{{2}}\.\*$",
         lambda u, cp, p: f"8006/{_gtin(u, cp, p)}{u[34:36]}{u[37:39]}"),
        ("urn:epc:idpat:upui:", rf"{_keyed(13)}\.\*$", lambda u, cp, p: f"01/{_gtin(u, cp, p)}"),
    ]
]  # fmt: skip

_SSCC = "urn:epc:id:sscc:"
_SSCC_LENGTH = len(_SSCC) + 18
_SSCC_DOTS = (len(_SSCC) + 6, len(_SSCC) + 12)
"""Where the dot after the company prefix may be in an SSCC URN."""

# Digital Link: the reference's checks, its '.' in "id.gs1.org" matching any character included.
_DL_KEYS = (
    "01|gtin|8006|itip|8010|cpid|414|gln|417|party|8017|gsrnp|8018|gsrn|255|gcn|00|sscc|253|gdti|401|ginc|402|gsin|"
    "8003|grai|8004|giai"
)
_DL_CANDIDATE = re.compile(rf"https?:[^?#]*/(?:{_DL_KEYS})/\d{{4}}[^/]")
_SHORT_NAMES = (
    ("/gtin/", "/01/"), ("/itip/", "/8006/"), ("/cpid/", "/8010/"), ("/gln/", "/414/"), ("/party/", "/417/"),
    ("/gsrnp/", "/8017/"), ("/gsrn/", "/8018/"), ("/gcn/", "/255/"), ("/sscc/", "/00/"), ("/gdti/", "/253/"),
    ("/ginc/", "/401/"), ("/gsin/", "/402/"), ("/grai/", "/8003/"), ("/giai/", "/8004/"), ("/cpv/", "/22/"),
    ("/lot/", "/10/"), ("/ser/", "/21/"),
)  # fmt: skip
_CANONICAL_HOST = re.compile(
    r"https://id.gs1.org/(?:01|8006|8010|414|417|8017|8018|255|00|253|401|402|8003|8004)/\d{4}[^/]"
)
# Where a custom domain's path is cut, in the reference's order of preference (not the order in the URI).
_RESTEMS = ("/00/", "/01/", "/253/", "/255/", "/401/", "/402/", "/414/", "/417/", "/8003/", "/8004/", "/8006/",
            "/8010/", "/8017/", "/8018/")  # fmt: skip
_GTIN14 = re.compile(r"https://id.gs1.org/01/\d{14}")
_GTIN_PADS = (
    (re.compile(r"https://id.gs1.org/01/\d{13}"), "/01/0"),
    (re.compile(r"https://id.gs1.org/01/\d{12}"), "/01/00"),
    (re.compile(r"https://id.gs1.org/01/\d{8}"), "/01/000000"),
)
_C_SET = r"\x22\x27\x2D\x2E\x30-\x39\x3B-\x3F\x41-\x5A\x5F\x61-\x7A"
_C = f"[{_C_SET}]"
_CPV_LAST = re.compile(rf"https://id.gs1.org/(?:8006/\d{{18}}|01/\d{{14}})/22/{_C}{{0,20}}$")
_CPV_MIDDLE = re.compile(rf"https://id.gs1.org/(?:8006/\d{{18}}|01/\d{{14}})/22/[/{_C_SET}]{{0,20}}$")
_LOT_AND_SERIAL = re.compile(rf"https://id.gs1.org/(?:8006/\d{{18}}|01/\d{{14}})/10/{_C}{{0,20}}/21/{_C}{{0,20}}$")
_VALID_DL = re.compile(
    "https://id.gs1.org/(?:"
    + "|".join([
        r"00/\d{18}", rf"01/\d{{14}}/21/{_C}{{0,20}}", rf"01/\d{{14}}/10/{_C}{{0,20}}", r"01/\d{14}",
        rf"01/\d{{14}}/235/{_C}{{0,28}}", rf"253/\d{{13}}{_C}{{0,17}}", r"255/\d{13}\d{0,12}", rf"401/{_C}{{0,30}}",
        r"402/\d{17}", r"414/\d{13}", rf"414/\d{{13}}/254/{_C}{{0,20}}", r"417/\d{13}", rf"8003/\d{{14}}{_C}{{0,16}}",
        rf"8004/{_C}{{0,30}}", rf"8006/\d{{18}}/21/{_C}{{0,20}}", rf"8006/\d{{18}}/10/{_C}{{0,20}}", r"8006/\d{18}",
        r"8010/[\x23\x2D\x2F\x30-\x39\x41-\x5A]{0,30}/8011/\d{0,12}", r"8010/[\x23\x2D\x2F\x30-\x39\x41-\x5A]{0,30}",
        r"8017/\d{18}", r"8018/\d{18}",
    ])
    + ")$"
)  # fmt: skip


def _sscc_link(uri: str) -> str | None:
    """Return the Digital Link of a plain SSCC URN as the sscc scheme makes it; None: let the scheme check it."""
    # The SSCC of every case and pallet: its pattern (6 to 12 digits, a dot, the rest of 17) checked directly.
    if len(uri) != _SSCC_LENGTH or not uri.isascii():
        return None
    p = uri.find(".", len(_SSCC))
    if not (_SSCC_DOTS[0] <= p <= _SSCC_DOTS[1] and uri[len(_SSCC) : p].isdigit() and uri[p + 1 :].isdigit()):
        return None
    return _DL + "00/" + _cd(uri[p + 1 : p + 2] + uri[len(_SSCC) : p] + uri[p + 2 :])


def normalise_id(uri: str) -> str | None:
    """Return an EPC (id, class, pattern) URI or a GS1 Digital Link as constrained canonical Digital Link.

    None when the value is none of these or fails the reference's syntax checks; the caller then keeps it as is.
    """
    if "." not in uri:
        return None
    if uri.startswith("urn:epc:"):
        return _epc_link(uri)
    if not uri.startswith("http") or _DL_CANDIDATE.match(uri) is None:
        return None
    return _constrain(uri)


def _epc_link(uri: str) -> str | None:
    """Return an EPC URI as its Digital Link when its scheme's pattern matches it, else None."""
    if uri.startswith(_SSCC) and (link := _sscc_link(uri)) is not None:
        return link
    for prefix, pattern, build in _EPC_SCHEMES:
        if uri.startswith(prefix):
            if pattern.match(uri) is None:
                return None
            p = uri.index(".")
            return _DL + build(uri, uri[len(prefix) : p], p)
    return None


def _constrain(uri: str) -> str | None:
    """Apply the reference's Digital Link steps: query, short names, host, GTIN padding, CPV, lot, syntax."""
    uri = uri.partition("?")[0]
    for name, ai in _SHORT_NAMES:
        uri = uri.replace(name, ai)
    if _CANONICAL_HOST.match(uri) is None:
        for stem in _RESTEMS:
            at = uri.find(stem)
            if at != -1:
                uri = "https://id.gs1.org" + uri[at:]
                break
    if _GTIN14.match(uri) is None:
        for pattern, padded in _GTIN_PADS:
            if pattern.match(uri) is not None:
                uri = uri.replace("/01/", padded)
                break
    if _CPV_LAST.match(uri) is not None:
        uri = uri[: uri.find("/22/")]
    if _CPV_MIDDLE.match(uri) is not None:
        after = uri[uri.find("/22/") + 4 :]
        uri = uri[: uri.find("/22/")] + after[after.find("/") :]
    if _LOT_AND_SERIAL.match(uri) is not None:
        after = uri[uri.find("/10/") + 4 :]
        uri = uri[: uri.find("/10/")] + after[after.find("/") :]
    return uri if _VALID_DL.match(uri) is not None else None


# --- timestamps ---------------------------------------------------------------------------------------------

_TIMESTAMP = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})(?:[Tt ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d+))?)?)?\s*(?:([Zz])|([+-])(\d{2}):?(\d{2})?)?"
)


def canonical_time(text: str) -> str:
    """Return an ISO 8601 timestamp in UTC at millisecond precision with a 'Z'; ValueError if it is none.

    A timestamp without an offset is taken as UTC (the reference takes its machine's local time).
    """
    match = _TIMESTAMP.fullmatch(text)
    if match is None:
        raise ValueError(f"{text!r} is not an ISO 8601 date-time")
    year, month, day, hour, minute, second, fraction, _zulu, sign, off_h, off_m = match.groups()
    tz = UTC
    if sign:
        offset = timedelta(hours=int(off_h), minutes=int(off_m or 0))
        tz = timezone(-offset if sign == "-" else offset)
    # Digits past the microsecond are cut, not rounded, before the millisecond rounding (as dateutil parses).
    micro = int((fraction or "0")[:6].ljust(6, "0"))
    try:
        stamp = datetime(int(year), int(month), int(day), int(hour or 0), int(minute or 0), int(second or 0), micro, tz)
        return utc_millis(stamp)
    except (ValueError, OverflowError) as exc:
        raise ValueError(f"{text!r} is not a valid date-time: {exc}") from None


def utc_millis(stamp: datetime) -> str:
    """Return an aware datetime in UTC, rounded to the millisecond (half to even on the microseconds), with 'Z'."""
    stamp = stamp.astimezone(UTC)
    micro = stamp.microsecond
    if micro % 1000:
        # round() on an int rounds half to even; .9995 and up carries into the next second (the reference fails
        # on such an event instead).
        stamp = stamp.replace(microsecond=0) + timedelta(microseconds=round(micro, -3))
    return stamp.isoformat(timespec="milliseconds")[:-6] + "Z"
