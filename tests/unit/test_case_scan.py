"""Case-top frames and the case scan: every code of a layer found in one frame, and the verdict on the set."""

from __future__ import annotations

import random

import numpy as np
import pytest

from edge.aggregation.case_scan import (
    CaseFrame,
    CaseScanError,
    CaseScanner,
    CaseScanReason,
    case_decoder_options,
    check,
)
from edge.gs1.element import GS, build, parse
from edge.vision.decode import Symbol
from simulators.case_render import CaseDefect, foreign_code, printed_codes, render_case_top

SMALL = (1224, 1024)
"""A quarter of the 5 MP frame: big enough for a 4 x 6 layer, fast enough for many tests."""


def codes(count: int, *, lot: str = "L2611A") -> list[str]:
    return [build([("01", "09506000134352"), ("17", "281231"), ("10", lot), ("21", f"SN{n:010d}")])
            for n in range(count)]


def frame(layer: list[str], defects=None, *, rows: int = 4, cols: int = 6, seed: int = 1, size=SMALL, **kw):
    return render_case_top(layer, rows=rows, cols=cols, size=size, defects=defects, rng=random.Random(seed), **kw)


def symbol(text: str, at: tuple[int, int] = (0, 0), *, identifier: str | None = "]d2") -> Symbol:
    x, y = at
    return Symbol(text=text.encode("latin-1"), symbology_identifier=identifier, format="DataMatrix",
                  position=((x, y), (x + 50, y), (x + 50, y + 50), (x, y + 50)), decoder="zxing-cpp",
                  gs1=identifier == "]d2")


@pytest.fixture
def scanner():
    with CaseScanner() as s:
        yield s


# -- the renderer --------------------------------------------------------------------------------------


def test_frames_are_deterministic_grayscale_of_the_asked_size():
    layer = codes(24)
    a, b = frame(layer), frame(layer)
    assert a.shape == (SMALL[1], SMALL[0])
    assert a.dtype == np.uint8
    assert np.array_equal(a, b)
    assert not np.array_equal(a, frame(layer, seed=2))


def test_layers_that_cannot_be_drawn_are_refused():
    with pytest.raises(ValueError, match="do not fit"):
        frame(codes(25))
    with pytest.raises(ValueError, match="does not fit"):
        frame(codes(24), module_px=20)
    with pytest.raises(ValueError, match="cells"):
        frame(codes(4), {7: CaseDefect.MISSING})


def test_foreign_code_changes_the_serial_and_stays_gs1():
    code = codes(1)[0]
    other = foreign_code(code)
    assert other != code
    assert dict(parse(other).pairs)["21"] == "X" + dict(parse(code).pairs)["21"][1:]
    assert foreign_code(other) != other
    with pytest.raises(ValueError, match="non-GS1"):
        foreign_code("HELLO")


def test_printed_codes_say_what_each_cell_shows():
    layer = codes(4)
    shown = printed_codes(layer, {0: CaseDefect.MISSING, 1: CaseDefect.UNREADABLE, 2: CaseDefect.DUPLICATE,
                                  3: CaseDefect.FOREIGN})
    assert shown == (None, None, layer[1], foreign_code(layer[3]))
    assert printed_codes(layer) == tuple(layer)


# -- scanning ------------------------------------------------------------------------------------------


def test_a_clean_layer_reads_every_code_once(scanner):
    layer = codes(24)
    result = check(scanner.scan(frame(layer)), 24)
    assert result.ok
    assert result.reason is None
    assert sorted(result.codes) == sorted(layer)
    assert result.describe() == "24 codes, as expected"


def test_a_full_100_code_layer_on_the_5mp_frame_reads_every_code(scanner):
    layer = codes(100)
    read = scanner.scan(render_case_top(layer, rows=10, cols=10, rng=random.Random(7)))
    assert sorted(check(read, 100).codes) == sorted(layer)
    assert all(s.symbology_identifier == "]d2" and s.elements is not None for s in read.symbols)


def test_codes_keep_their_gs_separators(scanner):
    layer = codes(24)
    read = scanner.scan(frame(layer))
    assert all(GS in s.text_str for s in read.symbols)  # lot (10) is variable length and not last


@pytest.mark.parametrize(("defect", "reasons", "found"), [
    (CaseDefect.MISSING, (CaseScanReason.TOO_FEW,), 23),
    (CaseDefect.UNREADABLE, (CaseScanReason.TOO_FEW,), 23),
    (CaseDefect.DUPLICATE, (CaseScanReason.DUPLICATE_IN_VIEW, CaseScanReason.TOO_FEW), 23),
    (CaseDefect.FOREIGN, (), 24),  # the count is right: the store finds the stranger, with these codes
])
def test_each_defect_gives_its_verdict(scanner, defect, reasons, found):
    layer = codes(24)
    defects = {9: defect}
    result = check(scanner.scan(frame(layer, defects)), 24)
    assert result.reasons == reasons
    assert result.found == found
    assert set(result.codes) == {c for c in printed_codes(layer, defects) if c is not None}


def test_several_defects_at_once(scanner):
    layer = codes(24)
    defects = {0: CaseDefect.MISSING, 5: CaseDefect.UNREADABLE, 11: CaseDefect.DUPLICATE, 17: CaseDefect.FOREIGN}
    result = check(scanner.scan(frame(layer, defects)), 24)
    assert result.reason is CaseScanReason.DUPLICATE_IN_VIEW
    assert result.duplicates == (layer[10],)
    assert set(result.codes) == {c for c in printed_codes(layer, defects) if c is not None}
    assert "1 code(s) on more than one pack" in result.describe()


def test_a_plain_datamatrix_in_view_is_not_gs1(scanner):
    layer = [*codes(23), "NOT-A-GS1-CODE"]
    result = check(scanner.scan(frame(layer)), 24)
    assert result.reason is CaseScanReason.NOT_GS1
    assert result.not_gs1 == ("NOT-A-GS1-CODE",)
    assert CaseScanReason.TOO_FEW in result.reasons


def test_a_layer_bigger_than_the_case_is_too_many(scanner):
    result = check(scanner.scan(frame(codes(24))), 20)
    assert result.reasons == (CaseScanReason.TOO_MANY,)


def test_sensor_grain_still_reads(scanner):
    layer = codes(24)
    assert check(scanner.scan(frame(layer, noise=1.0)), 24).ok


def test_bgr_frames_and_a_region_of_interest(scanner):
    layer = codes(24)
    gray = frame(layer)
    assert check(scanner.scan(np.dstack([gray] * 3)), 24).ok
    left = CaseScanner(case_decoder_options(roi=(0, 0, SMALL[0] // 2, SMALL[1])))
    read = left.scan(gray)
    assert 0 < len(read.symbols) < 24
    assert all(max(p[0] for p in s.position) < SMALL[0] // 2 for s in read.symbols)  # full-frame pixels


def test_frames_that_cannot_be_scanned_are_refused(scanner):
    with pytest.raises(CaseScanError, match="8-bit"):
        scanner.scan(np.zeros((10, 10), np.float32))
    with pytest.raises(CaseScanError, match="shape"):
        scanner.scan(np.zeros((10, 10, 4), np.uint8))
    outside = CaseScanner(case_decoder_options(roi=(5000, 5000, 10, 10)))
    with pytest.raises(CaseScanError, match="outside"):
        outside.scan(np.zeros((100, 100), np.uint8))
    with pytest.raises(ValueError, match="max_codes"):
        CaseScanner(max_codes=0)


def test_max_codes_caps_the_report():
    read = CaseScanner(max_codes=5).scan(frame(codes(24)))
    assert len(read.symbols) == 5


async def test_scan_runs_off_the_loop_and_closes():
    layer = codes(24)
    image = frame(layer)
    with CaseScanner() as scanner:
        result = await scanner.scan_and_check(image, 24)
        assert result.ok
    with pytest.raises(CaseScanError, match="closed"):
        await scanner.scan_async(image)
    scanner.close()  # idempotent


# -- the verdict alone ---------------------------------------------------------------------------------


def test_check_is_pure_over_symbols():
    a, b = codes(2)
    result = check([symbol(a, (0, 0)), symbol(b, (100, 0))], 2)
    assert result.ok
    assert result.codes == (a, b)
    assert check(CaseFrame((symbol(a),), 1.0), 1).ok


def test_reasons_come_most_serious_first():
    a, b, c = codes(3)
    reads = [symbol(a), symbol(a, (200, 0)), symbol(b, (400, 0)), symbol(c, (600, 0)),
             symbol("plain", (800, 0), identifier="]d1")]
    result = check(reads, 2)
    assert result.reasons == (CaseScanReason.NOT_GS1, CaseScanReason.DUPLICATE_IN_VIEW, CaseScanReason.TOO_MANY)
    assert result.found == 3
    assert result.duplicates == (a,)


def test_gs1_identifier_with_broken_data_is_not_gs1():
    result = check([symbol("01123")], 1)  # ]d2, but a GTIN of three digits
    assert result.reasons == (CaseScanReason.NOT_GS1, CaseScanReason.TOO_FEW)


def test_libdmtx_reads_without_fnc1_are_not_trusted():
    a = codes(1)[0]
    lost = Symbol(text=a.replace(GS, "").encode(), symbology_identifier=None, format="DataMatrix",
                  position=((0, 0), (1, 0), (1, 1), (0, 1)), decoder="libdmtx", gs1=True, fnc1_lost=True)
    assert check([lost], 1).reason is CaseScanReason.NOT_GS1


def test_an_empty_case_is_refused():
    with pytest.raises(ValueError, match="at least one"):
        check([], 0)
    assert check([], 3).reasons == (CaseScanReason.TOO_FEW,)
