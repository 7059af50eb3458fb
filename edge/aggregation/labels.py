r"""Case and pallet labels: the GS1 element string, a complete ZPL label, and a stored format with its records.

From a product's print template for a case or pallet labeller (``level`` case or pallet, its ``ais`` like
``["00", "02", "37", "10", "17"]``, the DataMatrix placement and the HRI lines in mm) and a `LabelValues`
(SSCC, content GTIN, count, lot, expiry), this builds:

- `element_string`: the label's GS1 data in the template's AI order, checked by `edge.gs1` (02 needs 37 and
  the other way round, check digits, lengths);
- `zpl_label`: one complete ``^XA...^XZ`` label: the GS1 DataMatrix (``^BX``), the SSCC as GS1-128 (``^BC``
  with ``>;>8``: start in code set C, then FNC1) with its ``(00)`` line under it, and the template's HRI lines
  as ``^FO..^A0N..^FD`` text, millimetres turned into dots at ``dpmm`` (8: a 203 dpi printer);
- `stored_format` and `label_record`: the same label as a ``^XA^DF<name>^FS...^XZ`` format with one ``^FN``
  per variable field, and the (field name, value) record that fills it through `drivers.printer.zpl` (give
  that driver ``fields=printer_fields(template)``: its default numbering, 1, 2, 3... in that order, is the
  format's).

FNC1 in the DataMatrix: ZPL's ``^BX`` at quality 200 reads ``~1`` (its default escape character, then 1) as
FNC1; first in the data it makes the symbol a GS1 DataMatrix, later it ends a variable-length element. So
the DataMatrix field is ``~1`` + the element string with each GS written ``~1`` (`datamatrix_field`). Every
field goes out under ``^FH``, which writes the ``~`` as ``_7E``: no raw tilde (ZPL's control-command prefix)
is ever in the stream. `element_string_from_field` turns the field back into what a scanner reads.

Verified here: the ZPL parses with `drivers.framing.zpl`; the DataMatrix field, rendered as the printer would
encode it and decoded by zxing-cpp, gives back the element string. ASSUMED from the ZPL II manual, not tried
on a printer: ``^FH`` is decoded before ``^BX`` applies its escapes; ``>;>8`` gives a GS1-128 that begins
with FNC1 in code set C; ``^CI28`` makes the printer read field data as UTF-8 (the driver sends UTF-8).
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Final

from drivers.framing.zpl import encode_fh
from edge.errors import EdgeError
from edge.gs1.element import GS, build
from edge.gs1.errors import Gs1ValidationError
from edge.gs1.identifiers import IdentifierError, validate_sscc
from edge.markets.models import DATE_AIS
from edge.markets.rules import MarketRuleError, format_gs1_date

if TYPE_CHECKING:
    from edge.products.models import PrintTemplate

__all__ = [
    "DEFAULT_DPMM",
    "DEFAULT_FORMAT_NAME",
    "LabelError",
    "LabelValues",
    "datamatrix_field",
    "element_string",
    "element_string_from_field",
    "hri_lines",
    "label_fields",
    "label_record",
    "printer_fields",
    "stored_format",
    "zpl_label",
]

DEFAULT_DPMM: Final = 8
"""Dots per millimetre of a 203 dpi label printer (12 for 300 dpi, 24 for 600 dpi)."""
DEFAULT_FORMAT_NAME: Final = "E:CASE.ZPL"
"""Name the stored format is kept under: on E: (flash), so a power cycle does not lose it."""
TEXT_HEIGHT_MM: Final = 3.0
"""Height of the human-readable text (font 0), in mm."""
BARCODE_HEIGHT_MM: Final = 20.0
"""Bar height of the SSCC's GS1-128 (GS1 logistic labels ask for at least 13 mm at this X)."""
BARCODE_MODULE_DOTS: Final = 3
"""Narrow bar width of the GS1-128 in dots (0.375 mm at 8 dpmm: within the GS1 logistic label range)."""
GAP_MM: Final = 4.0
"""Space left between the DataMatrix or the lowest text line and the GS1-128 placed under them."""
DATAMATRIX_ALLOWANCE_MODULES: Final = 32
"""Symbol side assumed when placing the GS1-128 under the DataMatrix: a case label's data (about 60
characters) fits 26 x 26 modules; the format must hold any data, so a few modules more are allowed."""
ASSUMED_MODULE_MM: Final = 0.5
"""Module size assumed for placement when the template leaves the module to the printer's setting."""
FNC1_ESCAPE: Final = "~1"
"""^BX's default escape sequence for FNC1 at quality 200."""
SSCC_BARCODE_PREFIX: Final = ">;>8"
"""^BC invocation codes: start in code set C (``>;``), then FNC1 (``>8``): a GS1-128."""

LABEL_LEVELS: Final = frozenset({"case", "pallet"})
DATAMATRIX: Final = "DATAMATRIX"
SSCC_BARCODE: Final = "SSCC_BARCODE"
SSCC_TEXT: Final = "SSCC_TEXT"


class LabelError(EdgeError):
    """A case or pallet label cannot be made: the template is not a label template or the values break a rule."""


@dataclass(frozen=True, slots=True)
class LabelValues:
    """What one case or pallet label says: its SSCC and the contents' GTIN, count, lot and expiry."""

    sscc: str
    """The container's SSCC (AI 00), 18 digits."""
    content_gtin: str | None = None
    """GTIN of the trade items inside (AI 02), 14 digits."""
    count: int | None = None
    """How many of them (AI 37)."""
    lot: str | None = None
    """Batch or lot number (AI 10)."""
    expiry: str | date | None = None
    """Expiry date (AI 17), as YYMMDD (DD 00: the month's end) or a date."""
    extra: tuple[tuple[str, str], ...] = ()
    """Any other AI the template asks for, as (AI, value)."""

    def by_ai(self) -> dict[str, str]:
        """Return the values the label can carry, by AI."""
        expiry = self.expiry.strftime("%y%m%d") if isinstance(self.expiry, date) else self.expiry
        named = (("00", self.sscc), ("02", self.content_gtin),
                 ("37", None if self.count is None else str(self.count)), ("10", self.lot), ("17", expiry))
        return dict(self.extra) | {ai: value for ai, value in named if value is not None}


def _label_template(template: PrintTemplate) -> None:
    if template.level not in LABEL_LEVELS:
        raise LabelError(f"a {template.level} template is not a case or pallet label template")


def _pairs(template: PrintTemplate, values: LabelValues) -> list[tuple[str, str]]:
    _label_template(template)
    if "00" in template.ais:
        try:
            validate_sscc(values.sscc)
        except IdentifierError as exc:
            raise LabelError(str(exc)) from exc
    known = values.by_ai()
    missing = [ai for ai in template.ais if ai not in known]
    if missing:
        raise LabelError(f"the {template.level} label carries AI {', '.join(missing)}, and no value was given")
    return [(ai, known[ai]) for ai in template.ais]


def element_string(template: PrintTemplate, values: LabelValues) -> str:
    """Return the label's GS1 element string (GS after variable-length elements), in the template's AI order."""
    try:
        return build(_pairs(template, values))
    except Gs1ValidationError as exc:
        raise LabelError(f"the {template.level} label's data breaks GS1 rules: {exc}") from exc


def datamatrix_field(element_string: str) -> str:
    """Return the ^BX field data for an element string: FNC1 (``~1``) first and for every GS."""
    return FNC1_ESCAPE + element_string.replace(GS, FNC1_ESCAPE)


def element_string_from_field(data: str) -> str:
    """Return what a scanner reads from a symbol printed with ^BX field data: ``~1`` first dropped, others GS.

    LabelError when the data does not begin with FNC1 (it would print a plain DataMatrix, not GS1).
    """
    if not data.startswith(FNC1_ESCAPE):
        raise LabelError(f"DataMatrix field data must begin with FNC1 ({FNC1_ESCAPE}): {data[:20]!r}")
    return data[len(FNC1_ESCAPE):].replace(FNC1_ESCAPE, GS)


def hri_lines(template: PrintTemplate, values: LabelValues, *, today: date | None = None) -> list[str]:
    """Return the template's human-readable lines filled in; dates formatted as the placeholder says.

    The century of a two-digit year follows GS1's sliding window around today (default: today, UTC).
    """
    today = today or datetime.now(UTC).date()
    known = values.by_ai()
    lines = []
    for line in template.hri:
        parts: list[str] = []
        for literal, ai, spec, _ in string.Formatter().parse(line.text):
            parts.append(literal)
            if ai is None:
                continue
            value = known.get(ai)
            if value is None:
                raise LabelError(f'HRI line "{line.text}" needs AI {ai}, and no value was given')
            if ai in DATE_AIS:
                try:
                    value = format_gs1_date(value, spec or None, today)
                except MarketRuleError as exc:
                    raise LabelError(f'HRI line "{line.text}", AI {ai}: {exc}') from exc
            parts.append(value)
        lines.append("".join(parts))
    return lines


def label_fields(template: PrintTemplate) -> tuple[str, ...]:
    """Return the variable fields of the label, in ^FN order (the first is ^FN1)."""
    _label_template(template)
    sscc = (SSCC_BARCODE, SSCC_TEXT) if "00" in template.ais else ()
    return (DATAMATRIX, *sscc, *(f"HRI{n}" for n in range(1, len(template.hri) + 1)))


def printer_fields(template: PrintTemplate) -> dict[str, str]:
    """Return the ``fields`` option of the ZPL label printer for this template: each field and what it carries."""
    sources = {DATAMATRIX: "code", SSCC_BARCODE: "00", SSCC_TEXT: "00"}
    return {name: sources.get(name, "hri") for name in label_fields(template)}


def label_record(
    template: PrintTemplate, values: LabelValues, *, today: date | None = None,
) -> tuple[tuple[str, str], ...]:
    """Return the record filling `stored_format`'s fields for values: (field name, value) in ^FN order."""
    data = datamatrix_field(element_string(template, values))
    sscc = ((SSCC_BARCODE, SSCC_BARCODE_PREFIX + "00" + values.sscc), (SSCC_TEXT, f"(00) {values.sscc}")) \
        if "00" in template.ais else ()
    hri = tuple((f"HRI{n}", text) for n, text in enumerate(hri_lines(template, values, today=today), start=1))
    return ((DATAMATRIX, data), *sscc, *hri)


@dataclass(frozen=True, slots=True)
class _Place:
    """Where each element of the label goes, in dots."""

    datamatrix: tuple[int, int]
    module: int | None
    barcode: tuple[int, int] | None
    barcode_text: tuple[int, int] | None
    hri: tuple[tuple[int, int], ...]
    text: int
    bar_height: int


def _layout(template: PrintTemplate, dpmm: int, barcode_at_mm: tuple[float, float] | None) -> _Place:
    if not 1 <= dpmm <= 24:
        raise LabelError(f"a label printer has 1 to 24 dots per mm (8, 12 or 24), not {dpmm}")

    def dots(mm: float) -> int:
        return round(mm * dpmm)

    code = template.code
    module = None if code.module_mm is None else max(1, dots(code.module_mm))
    barcode = barcode_text = None
    if "00" in template.ais:
        if barcode_at_mm is None:
            symbol_mm = DATAMATRIX_ALLOWANCE_MODULES * (code.module_mm or ASSUMED_MODULE_MM)
            lowest = max([code.y + symbol_mm] + [line.y + TEXT_HEIGHT_MM for line in template.hri])
            barcode_at_mm = (code.x, lowest + GAP_MM)
        x, y = barcode_at_mm
        barcode = (dots(x), dots(y))
        barcode_text = (dots(x), dots(y + BARCODE_HEIGHT_MM + 1.0))
    return _Place(
        datamatrix=(dots(code.x), dots(code.y)), module=module, barcode=barcode, barcode_text=barcode_text,
        hri=tuple((dots(line.x), dots(line.y)) for line in template.hri), text=max(1, dots(TEXT_HEIGHT_MM)),
        bar_height=max(1, dots(BARCODE_HEIGHT_MM)),
    )


def _commands(place: _Place, fields: tuple[tuple[str, str], ...] | None, count: int) -> str:
    """Return the label's field commands: with ^FH^FD data when fields are given, else ^FN<n> placeholders."""

    def data(n: int) -> str:
        if fields is None:
            return f"^FN{n + 1}^FS"
        return "^FH^FD" + encode_fh(fields[n][1].encode("utf-8")).decode("ascii") + "^FS"

    module = "" if place.module is None else str(place.module)
    parts = [f"^FO{place.datamatrix[0]},{place.datamatrix[1]}^BXN,{module},200" + data(0)]
    n = 1
    if place.barcode is not None and place.barcode_text is not None:
        bx, by = place.barcode
        parts.append(f"^FO{bx},{by}^BY{BARCODE_MODULE_DOTS}^BCN,{place.bar_height},N,N,N" + data(1))
        tx, ty = place.barcode_text
        parts.append(f"^FO{tx},{ty}^A0N,{place.text},{place.text}" + data(2))
        n = 3
    for x, y in place.hri:
        parts.append(f"^FO{x},{y}^A0N,{place.text},{place.text}" + data(n))
        n += 1
    if n != count:
        raise AssertionError(f"{n} label fields laid out, {count} named")  # label_fields and the layout disagree
    return "\n".join(parts)


def zpl_label(
    template: PrintTemplate, values: LabelValues, dpmm: int = DEFAULT_DPMM, *, today: date | None = None,
    barcode_at_mm: tuple[float, float] | None = None,
) -> str:
    """Return one complete ZPL label (``^XA ... ^XZ``, fields under ^FH) for values on this template.

    barcode_at_mm places the SSCC's GS1-128 (x, y from the top left); by default it goes under the
    DataMatrix and the text lines, at the DataMatrix's left edge.
    """
    record = label_record(template, values, today=today)
    place = _layout(template, dpmm, barcode_at_mm)
    return f"^XA\n^CI28\n^LH0,0\n{_commands(place, record, len(record))}\n^PQ1\n^XZ\n"


def stored_format(
    template: PrintTemplate, dpmm: int = DEFAULT_DPMM, *, name: str = DEFAULT_FORMAT_NAME,
    barcode_at_mm: tuple[float, float] | None = None,
) -> str:
    """Return the template as a stored format (``^XA^DF<name>^FS ... ^FN<n>^FS ... ^XZ``), fields as label_fields."""
    place = _layout(template, dpmm, barcode_at_mm)
    fields = label_fields(template)
    return f"^XA^DF{name}^FS\n^CI28\n^LH0,0\n{_commands(place, None, len(fields))}\n^XZ\n"
