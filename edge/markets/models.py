"""A market rule pack as typed, immutable models: the shape of config/markets/*.yaml and its local rules.

Rules that need the GS1 AI table or span sections (AIs on the code, HRI placeholders, serial against AI 21)
are checked in ``edge.markets.checks``, so every problem of a pack can be reported at once.
"""

from __future__ import annotations

import json
import re
import string
from datetime import date, datetime
from typing import Annotated, Literal, Self

from pydantic import AfterValidator, Field, field_validator, model_validator

from edge.config.models import RelationError, Section

AI_PATTERN = r"^[0-9]{2,4}$"
ID_PATTERN = r"^[a-z0-9][a-z0-9-]{0,47}$"
COUNTRY_PATTERN = r"^[A-Z]{2}$"

DIGITS = "0123456789"
UPPER = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
LOWER = "abcdefghijklmnopqrstuvwxyz"
CSET82 = "!\"%&'()*+,-./" + DIGITS + ":;<=>?" + UPPER + "_" + LOWER
"""GS1 AI encodable character set 82 (General Specifications figure 7.11-1), what AI 21 and 10 take."""
CSET39 = "#-/" + DIGITS + UPPER
CSET64 = "-" + DIGITS + UPPER + "_" + LOWER
AI_CHARSETS = {"N": DIGITS, "X": CSET82, "Y": CSET39, "Z": CSET64}
"""The characters each charset letter of the AI table allows."""
CHARSET_NAMES = {"N": "digits", "X": "GS1 CSET 82", "Y": "GS1 CSET 39", "Z": "GS1 CSET 64"}

SERIAL_CHARSETS = {
    "numeric": DIGITS,
    "upper_alphanumeric": DIGITS + UPPER,
    "alphanumeric": DIGITS + UPPER + LOWER,
    "cset82": CSET82,
}
"""Named serial alphabets; ``custom`` takes the pack's own ``alphabet``."""

DATE_AIS = frozenset({"11", "12", "13", "15", "16", "17"})
"""AIs holding a YYMMDD date (DD may be 00), the ones an HRI placeholder may format."""
DATE_DIRECTIVES = frozenset("Yymd%")

AiCode = Annotated[str, Field(pattern=AI_PATTERN)]
Need = Literal["required", "optional", "not_used"]
Grade = Literal["A", "B", "C", "D"]


def check_date_format(fmt: str) -> str:
    """Accept a date format made of text and %Y %y %m %d %% only (no locale-dependent names); else ValueError."""
    for match in re.finditer(r"%(.?)", fmt):
        if match[1] not in DATE_DIRECTIVES:
            shown = f"%{match[1]}" if match[1] else "a lone %"
            raise ValueError(f'date format "{fmt}" uses {shown}: only %Y, %y, %m, %d and %% are allowed')
    return fmt


def placeholders(template: str) -> list[tuple[str, str | None]]:
    """Return the (AI, format or None) of every placeholder in an HRI template; ValueError when malformed."""
    found: list[tuple[str, str | None]] = []
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ValueError(f'HRI template "{template}": {exc}; write {{{{ and }}}} for literal braces') from exc
    for _, field, spec, conversion in parts:
        if field is None:
            continue
        shown = "{" + field + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "") + "}"
        if conversion is not None or not re.fullmatch(AI_PATTERN, field) or "{" in (spec or ""):
            raise ValueError(f"placeholder {shown} must name an AI, like {{21}} or {{17:%Y-%m}}")
        if spec and field not in DATE_AIS:
            raise ValueError(f"placeholder {shown}: only date AIs ({', '.join(sorted(DATE_AIS))}) take a format")
        if spec:
            check_date_format(spec)
        found.append((field, spec or None))
    return found


def _date_problem(value: object) -> str | None:
    """Say why value is not a calendar date written YYYY-MM-DD, or None when it is one."""
    if isinstance(value, datetime):
        return f"{value.isoformat()} has a time of day: give the date only, YYYY-MM-DD"
    if isinstance(value, date) or value is None:
        return None
    if not isinstance(value, str):
        return f"expected a date YYYY-MM-DD, got {value!r}"
    if not re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", value):
        return f'"{value}" is not a date: write YYYY-MM-DD, like 2019-02-09'
    try:
        date.fromisoformat(value)
    except ValueError as exc:
        return f'"{value}" is not a date: {exc}'
    return None


def _template(template: str) -> str:
    placeholders(template)
    return template


HriTemplate = Annotated[str, Field(min_length=1), AfterValidator(_template)]


class Lengths(Section):
    """A length rule: an exact ``length``, or ``min_length`` and ``max_length``."""

    length: int | None = Field(None, strict=True, ge=1)
    """Exact number of characters."""
    min_length: int | None = Field(None, strict=True, ge=1)
    """Fewest characters, with max_length; not with length."""
    max_length: int | None = Field(None, strict=True, ge=1)
    """Most characters, with min_length; not with length."""

    @model_validator(mode="after")
    def _one_form(self) -> Self:
        if self.length is not None:
            for name in ("min_length", "max_length"):
                if getattr(self, name) is not None:
                    raise RelationError(f"give either length or {name}, not both", at=(name,))
            return self
        if self.min_length is None or self.max_length is None:
            missing = "max_length" if self.min_length is not None else "min_length"
            if self.min_length is None and self.max_length is None:
                raise RelationError("give length, or min_length and max_length", at=())
            raise RelationError(f"{missing} is missing: give both min_length and max_length, or length", at=())
        if self.min_length > self.max_length:
            raise RelationError(f"{self.min_length} is more than max_length {self.max_length}", at=("min_length",))
        return self

    @property
    def shortest(self) -> int:
        """Fewest characters allowed."""
        # _one_form guarantees length or min_length, and both are at least 1.
        return self.length or self.min_length or 1

    @property
    def longest(self) -> int:
        """Most characters allowed."""
        return self.length or self.max_length or 1


class AiLength(Lengths):
    """A data length a market fixes for one AI, within what GS1 allows for it."""

    ai: AiCode
    """The AI, quoted, like "91"."""


class CodeSpec(Section):
    """What the market's code carries: AIs in print order, symbology, print grade, externally issued parts."""

    symbology: Literal["gs1_datamatrix"]
    """Symbology of the code on the pack."""
    required: tuple[AiCode, ...]
    """AIs the code must carry, in the order they are printed; quote them ("01": unquoted 01 is the number 1)."""
    optional: tuple[AiCode, ...] = ()
    """AIs the code may also carry, printed after the required ones when the product has them."""
    lengths: tuple[AiLength, ...] = ()
    """Data lengths the market fixes for AIs on the code, narrower than GS1's (the serial's are under serial:)."""
    crypto_tail: tuple[AiCode, ...] = ()
    """AIs whose values are issued from outside with the serial (verification key, crypto code), printed as
    received; empty when the market has none."""
    min_grade: Grade = "C"
    """Lowest ISO/IEC 15415 overall grade a printed code may have."""


class SerialSpec(Lengths):
    """The serial (AI 21): its alphabet and length."""

    charset: Literal["numeric", "upper_alphanumeric", "alphanumeric", "cset82", "custom"]
    """numeric (0-9), upper_alphanumeric (0-9A-Z), alphanumeric (0-9A-Za-z), cset82 (all of GS1 CSET 82),
    or custom with the characters in alphabet."""
    alphabet: str | None = None
    """The characters a serial may use, for charset custom only."""

    @model_validator(mode="after")
    def _alphabet(self) -> Self:
        if self.charset == "custom":
            if not self.alphabet:
                raise RelationError("charset custom needs alphabet: the characters a serial may use", at=("charset",))
            repeated = sorted({ch for ch in self.alphabet if self.alphabet.count(ch) > 1})
            if repeated:
                raise RelationError(f"repeats {json.dumps(''.join(repeated), ensure_ascii=False)}", at=("alphabet",))
        elif self.alphabet is not None:
            raise RelationError(f"only for charset custom, not {self.charset}", at=("alphabet",))
        return self

    @property
    def characters(self) -> str:
        """Every character a serial may use."""
        if self.charset == "custom":
            return self.alphabet or ""
        return SERIAL_CHARSETS[self.charset]


class Randomisation(Section):
    """How unpredictable serials must be."""

    rule: Literal["none", "sequential_allowed", "random"]
    """none: the market sets no rule; sequential_allowed: it expressly permits sequential serials;
    random: a guess must succeed with less than max_guess_probability."""
    max_guess_probability: float | None = None
    """For rule random: the ceiling on serials issued per GTIN divided by the serial space, like 0.0001."""

    @field_validator("max_guess_probability")
    @classmethod
    def _probability(cls, value: float | None) -> float | None:
        if value is not None and not 0 < value < 1:
            raise ValueError(f"{value:g} is not a probability between 0 and 1 (exclusive), like 0.0001 for 1 in 10,000")
        return value

    @model_validator(mode="after")
    def _needs_probability(self) -> Self:
        if self.rule == "random" and self.max_guess_probability is None:
            raise RelationError("rule random needs max_guess_probability, like 0.0001 (1 in 10,000)", at=("rule",))
        if self.rule != "random" and self.max_guess_probability is not None:
            message = f"applies to rule random only, not {self.rule}"
            raise RelationError(message, at=("max_guess_probability",))
        return self


class AggregationSpec(Section):
    """Which packing levels the market wants reported as aggregation (parent-child)."""

    case: Need
    """Units into cases (shippers)."""
    pallet: Need
    """Cases onto pallets."""


class EpcisSpec(Section):
    """The EPCIS profile the line hands upstream for this market."""

    version: str
    """"2.0" or "1.2", quoted."""
    syntax: Literal["json-ld", "xml"]
    """Document syntax; EPCIS 1.2 has XML only."""
    identifiers: Literal["urn", "digital_link"]
    """EPC URNs (urn:epc:id:sgtin:...) or GS1 Digital Link URIs; Digital Link needs EPCIS 2.0."""

    @field_validator("version")
    @classmethod
    def _known(cls, version: str) -> str:
        if version not in {"2.0", "1.2"}:
            raise ValueError(f'"{version}" is not an EPCIS version this line writes: "2.0" or "1.2"')
        return version

    @model_validator(mode="after")
    def _v12_limits(self) -> Self:
        if self.version == "1.2" and self.syntax != "xml":
            raise RelationError("EPCIS 1.2 is written as xml only", at=("syntax",))
        if self.version == "1.2" and self.identifiers != "urn":
            raise RelationError("EPCIS 1.2 takes urn identifiers only; digital_link needs 2.0", at=("identifiers",))
        return self


class HriSpec(Section):
    """The human-readable lines printed beside the code."""

    lines: tuple[HriTemplate, ...]
    """Templates with a placeholder per AI, like "SN: {21}" or "EXP: {17:%Y-%m}"; {{ and }} print braces."""
    date_format: str | None = None
    """Format of date AIs whose placeholder gives none (%Y %y %m %d); unset prints the six digits as encoded."""

    @field_validator("date_format")
    @classmethod
    def _format(cls, fmt: str | None) -> str | None:
        return None if fmt is None else check_date_format(fmt)


class MarketPack(Section):
    """One market's serialization rules, as data: what the code carries, serial format, reporting."""

    id: str = Field(pattern=ID_PATTERN)
    """Short name, the same as the file name without .yaml, like eu-fmd."""
    name: str = Field(min_length=1)
    """Human name of the market rule."""
    version: str = Field(min_length=1)
    """Version of this pack, quoted, like "2025.1"."""
    effective_date: date
    """Date the rule took or takes effect, YYYY-MM-DD."""
    withdrawn: date | None = None
    """Date the rule stopped applying, for packs kept as profiles for customers who still ask for them."""
    regulation: str = Field(min_length=1)
    """The legal text or specification behind the rule."""
    countries: tuple[Annotated[str, Field(pattern=COUNTRY_PATTERN)], ...]
    """ISO 3166-1 alpha-2 codes where the rule applies (quote "NO": unquoted it is false); empty for none."""
    code: CodeSpec
    """What the code on the pack carries."""
    serial: SerialSpec
    """Format of the serial (AI 21)."""
    randomisation: Randomisation
    """How unpredictable serials must be."""
    serial_source: Literal["local", "upstream_list", "external_complete_codes", "open_scs"]
    """local: the line's own pool; upstream_list: serials issued by L3/L4; external_complete_codes: whole
    codes (serial and crypto tail) issued from outside and printed byte-exact; open_scs: serials requested from the
    L3 pool server of the line configuration's openscs section when a batch is released, their states reported back."""
    aggregation: AggregationSpec
    """Which packing levels are reported as aggregation."""
    epcis: EpcisSpec
    """The EPCIS profile handed upstream."""
    hri: HriSpec
    """Human-readable lines beside the code."""

    @field_validator("effective_date", "withdrawn", mode="before")
    @classmethod
    def _iso_date(cls, value: object) -> object:
        problem = _date_problem(value)
        if problem is not None:
            raise ValueError(problem)
        return date.fromisoformat(value) if isinstance(value, str) else value

    @field_validator("countries")
    @classmethod
    def _unique_countries(cls, countries: tuple[str, ...]) -> tuple[str, ...]:
        repeated = sorted({c for c in countries if countries.count(c) > 1})
        if repeated:
            raise ValueError(f"countries repeat {', '.join(repeated)}")
        return countries

    @model_validator(mode="after")
    def _withdrawn_after_effective(self) -> Self:
        if self.withdrawn is not None and self.withdrawn <= self.effective_date:
            message = f"{self.withdrawn} is not after effective_date {self.effective_date}"
            raise RelationError(message, at=("withdrawn",))
        return self

    @property
    def code_ais(self) -> tuple[str, ...]:
        """Every AI the code may carry: the required ones in print order, then the optional ones."""
        return (*self.code.required, *self.code.optional)
