"""Grades of rendered symbols: clean ones grade A or B, degraded ones lower, for the right parameter."""

from __future__ import annotations

import random

import numpy as np
import pytest

from edge.vision.decode import Decoder, DecoderOptions
from edge.vision.grade import _ECC200, Grade, _placement, grade, letter, meets, no_read
from simulators.camera_render import render
from simulators.defects import Defect, DefectKind

GS = "\x1d"
CODE = "0109506000134352" + "17281231" + "10LOT42" + GS + "21ABC123XYZ0001"
SEEDS = range(4)


def graded(defects=(), seed=0, image=None):
    image = render([CODE], list(defects), rng=random.Random(seed)) if image is None else image
    decoded = Decoder(DecoderOptions(fallback=False)).decode(image)
    if not decoded.symbols:
        return None
    return grade(image, decoded.symbols[0])


@pytest.mark.parametrize("seed", SEEDS)
def test_clean_rendered_symbols_grade_a_or_b(seed):
    result = graded(seed=seed)
    assert result is not None
    assert result.letter in {"A", "B"}, result
    assert result.complete
    assert set(result.parameters) == {"symbol_contrast", "modulation", "reflectance_margin", "fixed_pattern_damage",
                                      "axial_nonuniformity", "grid_nonuniformity", "unused_error_correction",
                                      "decode"}
    assert result.parameters["fixed_pattern_damage"] == (0.0, 4)


def test_grade_does_not_depend_on_quarter_turns():
    image = render([CODE], [], rng=random.Random(5))
    letters = {graded(image=np.ascontiguousarray(np.rot90(image, k))).letter for k in range(4)}
    assert len(letters) == 1


@pytest.mark.parametrize(("kind", "parameter"), [
    (DefectKind.LOW_CONTRAST, "symbol_contrast"),
    (DefectKind.PERSPECTIVE, "grid_nonuniformity"),
])
def test_readable_but_poor_symbols_fail_the_right_parameter(kind, parameter):
    for seed in SEEDS:
        result = graded([Defect(kind, 1.0)], seed)
        assert result is not None
        assert result.parameters[parameter][1] is not None
        assert result.parameters[parameter][1] < 2
        assert not meets(result, "C")


@pytest.mark.parametrize("kind", [DefectKind.BLUR, DefectKind.DAMAGE, DefectKind.SMUDGE, DefectKind.INK_SPREAD])
def test_heavy_defects_are_unreadable_or_below_c(kind):
    for seed in SEEDS:
        result = graded([Defect(kind, 1.0)], seed)
        assert result is None or not meets(result, "C"), result


def test_damage_uses_error_correction():
    result = graded([Defect(DefectKind.DAMAGE, 0.3)], 0)
    assert result is not None
    value, g = result.parameters["unused_error_correction"]
    assert value is not None
    assert value < 1.0
    assert g is not None
    assert g >= 2


def test_placement_fills_every_ecc200_size_with_its_codewords():
    for (rows, cols), (data, ec, down, across) in _ECC200.items():
        grid = _placement(rows - 2 * down, cols - 2 * across)
        assert grid.max() == data + ec, (rows, cols)
        assert (grid == 0).sum() in {0, 4}  # the unused 2x2 corner of some sizes


def test_meets_and_letters():
    b = Grade(3, "B", {"decode": (1.0, 4)})
    assert meets(b, "C")
    assert meets(b, "b")
    assert not meets(b, "A")
    assert letter(4) == "A"
    assert letter(0) == "F"
    assert no_read().letter == "F"
    assert not meets(no_read(), "D")
    with pytest.raises(ValueError, match="one of"):
        meets(b, "E")


def test_libdmtx_reads_get_a_partial_grade():
    image = render([CODE], [], rng=random.Random(0))
    (symbol,) = Decoder()._libdmtx(image, None)
    result = grade(image, symbol)
    assert not result.complete
    assert result.parameters["modulation"] == (None, None)
    assert result.parameters["symbol_contrast"][1] is not None
    assert result.as_dict()["overall"] == result.letter
