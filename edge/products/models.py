"""A product (recipe) as typed, immutable models: the shape of config/products/*.yaml and its local rules.

Rules that need the market pack or the GS1 AI table (template AIs, serial format against the market,
aggregation the market asks for) are checked in ``edge.products.checks``, so every problem is reported at once.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, field_validator

from edge.config.models import ID_PATTERN as DEVICE_ID_PATTERN
from edge.config.models import RelationError, Section
from edge.gs1.identifiers import IdentifierError, normalise_gtin
from edge.markets.models import ID_PATTERN, AiCode, HriTemplate, SerialSpec

LEVELS = ("bundle", "case", "pallet")
"""Packaging levels above the unit, from the inside out: the order hierarchy lists them in."""

Level = Literal["bundle", "case", "pallet"]
Millimetres = Annotated[float, Field(strict=True, ge=0, le=1000)]

__all__ = [
    "DEVICE_ID_PATTERN",
    "LEVELS",
    "CodePlacement",
    "HierarchyLevel",
    "HriLine",
    "PrintTemplate",
    "Product",
    "ProductSerials",
]


class HierarchyLevel(Section):
    """One packaging level above the unit and how many of the level below each one holds."""

    level: Level
    """bundle, case or pallet."""
    contains: int = Field(strict=True, ge=1)
    """Children of the level below per parent: units per bundle (or per case without bundles), bundles or units
    per case, cases per pallet."""
    mixed_batches: bool = False
    """Whether one container of this level may hold children of other batches of the product (a pallet made up
    of two lots, say). Off, a container holds only its own batch's children."""


class ProductSerials(SerialSpec):
    """The serials (AI 21) this product is printed with: within the market's serial format, usually narrower."""

    mode: Literal["random", "sequential"] = "random"
    """random: drawn at random from the whole space; sequential: counted up, refused where the market wants
    random serials."""
    overage_percent: float = Field(2.0, strict=True, ge=0, le=100)
    """Extra serials allocated at release, in percent of the quantity, for rejects and samples."""
    low_water: int | None = Field(None, strict=True, ge=1)
    """Alarm when fewer serials than this are left in the pool (serials or codes issued from upstream)."""
    source: Literal["open_scs"] | None = None
    """open_scs: draw this product's serials from the line's OPEN-SCS pool server whatever its market pack says (a
    site whose L3 issues serials for some products only); unset: the market pack's serial_source."""

    @property
    def generated_length(self) -> int:
        """The length a random generator draws serials at: the longest allowed, the largest space."""
        return self.longest


class CodePlacement(Section):
    """Where the DataMatrix sits on the print, from the print's top left corner."""

    x: Millimetres
    """Distance from the left edge of the print, in mm."""
    y: Millimetres
    """Distance from the top edge of the print, in mm."""
    module_mm: float | None = Field(None, strict=True, gt=0, le=5)
    """Size of one module (cell) of the symbol in mm, like 0.38; unset leaves it to the printer's setting."""


class HriLine(Section):
    """One human-readable line printed beside the code."""

    text: HriTemplate
    """Template with a placeholder per AI, like "SN: {21}" or "EXP: {17:%Y-%m}"; {{ and }} print braces."""
    x: Millimetres
    """Distance of the line's start from the left edge of the print, in mm."""
    y: Millimetres
    """Distance of the line's top from the top edge of the print, in mm."""


class PrintTemplate(Section):
    """What one printer prints for this product: the AIs of the code, where the code goes, the text lines."""

    level: Literal["unit", "bundle", "case", "pallet"] = "unit"
    """Packaging level the printer marks: unit (the saleable pack, the market's code) or a level of hierarchy,
    whose label carries the SSCC (AI 00)."""
    ais: tuple[AiCode, ...]
    """AIs the code carries, in print order; quote them ("01": unquoted 01 is the number 1)."""
    code: CodePlacement
    """Where the DataMatrix sits on the print."""
    hri: tuple[HriLine, ...] = ()
    """Human-readable lines; each placeholder must name an AI of ais."""


class Product(Section):
    """One product as the line packs it: its GTIN, market, packaging hierarchy, serial format and print templates."""

    id: str = Field(pattern=ID_PATTERN)
    """Short name, the same as the file name without .yaml, like aspirin-500-eu."""
    name: str = Field(min_length=1)
    """Human name shown to operators, like the name on the carton."""
    description: str | None = None
    """Free text for the operators and integrators, like strength and pack size."""
    gtin: str
    """GTIN of the saleable unit, quoted: 8, 12, 13 or 14 digits with a valid check digit; kept as 14 digits."""
    market: str = Field(pattern=ID_PATTERN)
    """Id of the market rule pack the product is made for, like eu-fmd."""
    company_prefix_length: int = Field(strict=True, ge=6, le=12)
    """Digits of the GS1 Company Prefix at the start of the GTIN-13 (after the indicator digit of the GTIN-14),
    as the GS1 member organisation allocated it; EPC URIs and SSCCs are split there."""
    sscc_extension_digit: int = Field(0, strict=True, ge=0, le=9)
    """First digit of the SSCCs the line allocates for this product's cases and pallets (0 to 9)."""
    hierarchy: tuple[HierarchyLevel, ...] = ()
    """Packaging levels above the unit, from the inside out, each at most once: bundle, case, pallet."""
    serials: ProductSerials
    """Serials printed on this product, within the market's serial format."""
    templates: dict[str, PrintTemplate]
    """Print templates by printer device id (as in the line configuration), like printer-1."""
    extra_ais: dict[AiCode, str] = Field(default_factory=dict)
    """Fixed data the unit code carries besides GTIN, serial, lot and dates, by AI, like "710": national number."""

    @field_validator("gtin")
    @classmethod
    def _gtin(cls, gtin: str) -> str:
        try:
            return normalise_gtin(gtin)
        except IdentifierError as exc:
            reason = str(exc).removeprefix(f"GTIN {gtin!r}: ")
            raise ValueError(f'"{gtin}" is not a GTIN: {reason}') from exc

    @field_validator("hierarchy")
    @classmethod
    def _inside_out(cls, hierarchy: tuple[HierarchyLevel, ...]) -> tuple[HierarchyLevel, ...]:
        first: dict[str, int] = {}
        for index, entry in enumerate(hierarchy):
            at = (index, "level")
            if entry.level in first:
                message = f'level "{entry.level}" is listed twice'
                raise RelationError(message, at=at, first=(first[entry.level], "level"))
            later = [level for level in first if LEVELS.index(level) > LEVELS.index(entry.level)]
            if later:
                order = ", ".join(LEVELS)
                message = f"{entry.level} must come before {later[0]}: list the levels from the unit up ({order})"
                raise RelationError(message, at=at)
            first[entry.level] = index
        return hierarchy

    def _units_per(self, level: Level) -> int | None:
        units = 1
        for entry in self.hierarchy:
            units *= entry.contains
            if entry.level == level:
                return units
        return None

    @property
    def levels(self) -> tuple[str, ...]:
        """The packaging levels above the unit, inside out."""
        return tuple(entry.level for entry in self.hierarchy)

    @property
    def units_per_bundle(self) -> int | None:
        """Saleable units in one bundle, or None when the product has no bundle level."""
        return self._units_per("bundle")

    @property
    def units_per_case(self) -> int | None:
        """Saleable units in one full case, or None when the product has no case level."""
        return self._units_per("case")

    @property
    def units_per_pallet(self) -> int | None:
        """Saleable units on one full pallet, or None when the product has no pallet level."""
        return self._units_per("pallet")

    def snapshot(self) -> dict[str, Any]:
        """Return the product as JSON-able data, for a batch to keep what it was made with."""
        return self.model_dump(mode="json")
