"""Case and pallet labels: element string, complete ZPL, stored format and record, read back as a printer would."""

from __future__ import annotations

import random
from datetime import date
from pathlib import Path

import pytest

from drivers.framing.zpl import Command, LabelBlock, ZplFramer, decode_fh, encode_label, field_data, field_numbers
from drivers.printer.zpl import ZplPrinter, stored_format_name
from edge.aggregation.labels import (
    DEFAULT_FORMAT_NAME,
    LabelError,
    LabelValues,
    datamatrix_field,
    element_string,
    element_string_from_field,
    hri_lines,
    label_fields,
    label_record,
    printer_fields,
    stored_format,
    zpl_label,
)
from edge.gs1.element import GS, parse
from edge.gs1.identifiers import build_sscc
from edge.markets.load import load_markets
from edge.products.load import load_product
from edge.products.models import PrintTemplate
from edge.vision.decode import Decoder, DecoderOptions
from simulators.camera_render import render
from tests.conftest import ROOT

TODAY = date(2026, 11, 25)
SSCC = build_sscc(0, "4012345", "000000001")
UNIT_GTIN = "04012345000016"
VALUES = LabelValues(sscc=SSCC, content_gtin=UNIT_GTIN, count=10, lot="L2611A", expiry="281031")


@pytest.fixture(scope="module")
def markets():
    return load_markets(ROOT / "config" / "markets")


def template(markets, product: str = "aspirin-500-eu", device: str = "labeller-case") -> PrintTemplate:
    return load_product(Path(ROOT / "config" / "products" / f"{product}.yaml"), markets).templates[device]


def pallet_template() -> PrintTemplate:
    return PrintTemplate.model_validate({
        "level": "pallet", "ais": ["00", "02", "37"], "code": {"x": 20.0, "y": 20.0, "module_mm": 0.75},
        "hri": [{"text": "SSCC {00}", "x": 20.0, "y": 60.0}, {"text": "{02} x {37}", "x": 20.0, "y": 68.0}],
    })


def block(zpl: str) -> LabelBlock:
    items = ZplFramer().feed(zpl.encode("latin-1"))
    assert len(items) == 1
    assert isinstance(items[0], LabelBlock)
    return items[0]


def field_after(commands: tuple[Command, ...], name: str) -> bytes:
    """Return the ^FD data of the field whose barcode or font command is name (^FH decoded)."""
    at = next(i for i, c in enumerate(commands) if c.name == name)
    escaped = False
    for command in commands[at + 1:]:
        if command.name == "FH":
            escaped = True
        elif command.name == "FD":
            return decode_fh(command.params) if escaped else command.params
    raise AssertionError(f"no ^FD after ^{name}")


def read_printed(field: bytes) -> str:
    """Print the ^BX data the way the printer encodes it, photograph it, and decode it."""
    text = element_string_from_field(field.decode("utf-8"))
    image = render([text], rng=random.Random(1))
    (symbol,) = Decoder(DecoderOptions(fallback=False)).decode(image).symbols
    assert symbol.symbology_identifier == "]d2"
    return symbol.text_str


def test_element_string_in_template_order(markets):
    es = element_string(template(markets), VALUES)
    assert es == f"00{SSCC}02{UNIT_GTIN}3710{GS}10L2611A{GS}17281031"
    assert parse(es).pairs == [("00", SSCC), ("02", UNIT_GTIN), ("37", "10"), ("10", "L2611A"), ("17", "281031")]


def test_a_date_expiry_is_written_yymmdd(markets):
    values = LabelValues(sscc=SSCC, content_gtin=UNIT_GTIN, count=10, lot="L2611A", expiry=date(2028, 10, 31))
    assert element_string(template(markets), values) == element_string(template(markets), VALUES)


def test_complete_label_parses_and_its_datamatrix_reads_back(markets):
    t = template(markets)
    zpl = zpl_label(t, VALUES, today=TODAY)
    commands = block(zpl).commands
    names = [c.name for c in commands]
    assert names[:3] == ["CI", "LH", "FO"]
    assert Command("BX", b"N,5,200") in commands  # 0.6 mm modules at 8 dots/mm
    dm = field_after(commands, "BX")
    assert dm.startswith(b"~1")
    assert b"~" not in zpl.encode()  # ZPL's control prefix never appears raw: ^FH writes it as _7E
    es = element_string(t, VALUES)
    assert read_printed(dm) == es
    assert dict(parse(read_printed(dm)).pairs) == {"00": SSCC, "02": UNIT_GTIN, "37": "10", "10": "L2611A",
                                                  "17": "281031"}


def test_sscc_is_a_gs1_128_starting_in_code_set_c_with_fnc1(markets):
    commands = block(zpl_label(template(markets), VALUES, today=TODAY)).commands
    assert field_after(commands, "BC") == b">;>800" + SSCC.encode()
    bc = next(c for c in commands if c.name == "BC")
    assert bc.params == b"N,160,N,N,N"  # 20 mm bars, no printer-made interpretation line: ours is below
    assert Command("BY", b"3") in commands
    texts = [decode_fh(c.params).decode() for i, c in enumerate(commands)
             if c.name == "FD" and commands[i - 2].name == "A0"]
    assert f"(00) {SSCC}" in texts


def test_hri_lines_are_text_at_their_millimetres(markets):
    t = template(markets)
    assert hri_lines(t, VALUES, today=TODAY) == [
        f"SSCC: {SSCC}", f"CONTENT: {UNIT_GTIN}  COUNT: 10", "LOT: L2611A  EXP: 10/2028",
    ]
    zpl = zpl_label(t, VALUES, today=TODAY)
    assert "^FO80,320^A0N,24,24^FH^FDSSCC: " in zpl  # (10 mm, 40 mm) at 8 dots/mm, 3 mm text
    assert "^FO80,80^BXN,5,200" in zpl
    hi = zpl_label(t, VALUES, 12, today=TODAY)
    assert "^FO120,480^A0N,36,36^FH^FDSSCC: " in hi
    assert "^FO120,120^BXN,7,200" in hi


def test_other_markets_date_formats(markets):
    us = template(markets, "metformin-500-us")
    assert hri_lines(us, VALUES, today=TODAY)[2] == "LOT: L2611A  EXP: 2028-10-31"


def test_special_characters_survive_fh(markets):
    t = template(markets)
    values = LabelValues(sscc=SSCC, content_gtin=UNIT_GTIN, count=10, lot="A_B%C", expiry="281000")
    zpl = zpl_label(t, values, today=TODAY)
    assert "_5F" in zpl
    commands = block(zpl).commands
    assert read_printed(field_after(commands, "BX")) == element_string(t, values)
    assert "EXP: 10/2028" in hri_lines(t, values, today=TODAY)[2]


def test_stored_format_and_record_fill_it_through_the_driver(markets):
    t = template(markets)
    fmt = stored_format(t)
    assert stored_format_name(fmt) == DEFAULT_FORMAT_NAME
    fields = label_fields(t)
    assert fields == ("DATAMATRIX", "SSCC_BARCODE", "SSCC_TEXT", "HRI1", "HRI2", "HRI3")
    assert field_numbers(block(fmt).commands) == tuple(range(1, len(fields) + 1))
    options = ZplPrinter.Options.model_validate({"feeds": "labels", "format_zpl": fmt, "fields": printer_fields(t)})
    numbers = options.numbers()
    assert numbers == {name: n for n, name in enumerate(fields, start=1)}
    record = label_record(t, VALUES, today=TODAY)
    assert tuple(name for name, _ in record) == fields
    # What the driver sends for this record (ZplPrinter._label): ^FN<n>^FH^FD<utf-8, escaped>^FS each.
    wire = encode_label(options.default_format() or "", [(numbers[n], v.encode("utf-8")) for n, v in record])
    assert b"~" not in wire
    sent = dict(field_data(block(wire.decode("latin-1")).commands))
    assert sent[1] == datamatrix_field(element_string(t, VALUES)).encode()
    assert read_printed(sent[1]) == element_string(t, VALUES)
    assert sent[2] == b">;>800" + SSCC.encode()
    # The stored format, merged with the record, is the complete label's field by field.
    complete = block(zpl_label(t, VALUES, today=TODAY)).commands
    merged = [decode_fh(c.params) for c in complete if c.name == "FD"]
    assert merged == [sent[n] for n in range(1, len(fields) + 1)]


def test_pallet_label(markets):
    t = pallet_template()
    values = LabelValues(sscc=build_sscc(0, "4012345", "000000002"), content_gtin=UNIT_GTIN, count=400)
    zpl = zpl_label(t, values, today=TODAY)
    commands = block(zpl).commands
    assert read_printed(field_after(commands, "BX")) == f"00{values.sscc}02{UNIT_GTIN}37400"
    assert Command("BX", b"N,6,200") in commands
    assert label_fields(t) == ("DATAMATRIX", "SSCC_BARCODE", "SSCC_TEXT", "HRI1", "HRI2")
    # The GS1-128 goes 4 mm under the lower of the symbol (20 + 32 x 0.75 = 44 mm) and the text (68 + 3 mm).
    assert "^FO160,600^BY3^BCN" in zpl  # (20 mm, 75 mm)


def test_a_label_without_sscc_has_no_gs1_128():
    t = PrintTemplate.model_validate({"level": "case", "ais": ["01", "21"], "code": {"x": 5.0, "y": 5.0}})
    values = LabelValues(sscc="", extra=(("01", "14012345000013"), ("21", "C0001")))
    zpl = zpl_label(t, values)
    assert "^BC" not in zpl
    assert "^BXN,,200" in zpl  # the module size left to the printer
    assert label_fields(t) == ("DATAMATRIX",)
    assert "^FN1^FS" in stored_format(t, name="R:SGTIN.ZPL")


def test_barcode_placement_can_be_given(markets):
    zpl = zpl_label(template(markets), VALUES, today=TODAY, barcode_at_mm=(50.0, 5.0))
    assert "^FO400,40^BY3^BCN" in zpl
    assert "^FO400,208^A0N,24,24^FH^FD(00) " in zpl


@pytest.mark.parametrize(("values", "message"), [
    (LabelValues(sscc=SSCC[:-1] + "9", content_gtin=UNIT_GTIN, count=1, lot="L", expiry="281031"), "check digit"),
    (LabelValues(sscc=SSCC, count=1, lot="L", expiry="281031"), "AI 02"),
    (LabelValues(sscc=SSCC, content_gtin=UNIT_GTIN, count=1, lot="L", expiry="281331"), "GS1 rules"),
])
def test_bad_values_are_refused(markets, values, message):
    with pytest.raises(LabelError, match=message):
        zpl_label(template(markets), values, today=TODAY)


def test_gs1_association_rules_apply():
    t = PrintTemplate.model_validate({"level": "case", "ais": ["00", "02"], "code": {"x": 5.0, "y": 5.0}})
    with pytest.raises(LabelError, match="GS1 rules"):
        element_string(t, VALUES)  # 02 without 37


def test_unit_templates_and_bad_fields_are_refused(markets):
    with pytest.raises(LabelError, match="not a case or pallet"):
        stored_format(template(markets, device="printer-1"))
    with pytest.raises(LabelError, match="FNC1"):
        element_string_from_field("00" + SSCC)
    with pytest.raises(LabelError, match="dots per mm"):
        stored_format(template(markets), 0)
