"""Print-quality grades of a decoded DataMatrix in the manner of ISO/IEC 15415, from one camera image.

How each number is computed (reflectance R = grey level / 255; grades 4..0 = A..F):

- The symbol is rectified: a homography through the decoder's four corner points (expanded by half a
  pixel to the symbol's outer edge) maps the module grid, plus a one-module quiet-zone ring, to 8 px per
  module. Each module's reflectance is the mean of the central 4x4 px: a square synthetic aperture of half
  the module size.
- Symbol contrast SC = Rmax - Rmin over all module samples, quiet zone included. A ≥ 0.70, B ≥ 0.55,
  C ≥ 0.40, D ≥ 0.20. Global threshold GT = (Rmax + Rmin) / 2 gives each module's observed colour.
- Ideal colours: the decoded data is encoded again with zxing-cpp's writer (GS1 when the read was GS1);
  when that gives the same symbol size and agrees with at least 75 % of the observed modules it is taken as
  the ideal (the printer used the same encodation); otherwise the observed colours stand in, with the fixed
  pattern forced to what ECC200 prescribes (reflectance margin then only catches fixed-pattern errors).
- Modulation: per module MOD = 2·|R - GT| / SC, graded A ≥ 0.50, B ≥ 0.40, C ≥ 0.30, D ≥ 0.20.
  Reflectance margin: the same, but 0 for a module on the wrong side of GT. Each data codeword takes its
  lowest module grade (the ECC200 module placement of ISO/IEC 16022 is computed for the symbol size); then,
  as in ISO/IEC 15415, for each level L the codewords graded below L are counted as erasures, the notional
  unused error correction 1 - erasures / EC codewords is graded, and the parameter grade is the best of
  min(L, that grade). The value reported is the lowest module MOD (or margin) in the data area.
- Fixed pattern damage: the finder L, the clock tracks and internal alignment patterns, and the one-module
  quiet-zone ring are compared with their prescribed colours; each segment (L1 left, L2 bottom, the quiet
  zone, clocks and alignment) gets a damaged-module percentage graded A 0 %, B ≤ 9 %, C ≤ 13 %, D ≤ 17 %
  (our reading of the ISO/IEC 15415 Data Matrix rules: it counts per segment, and we do not grade the
  clock-track transition ratio separately). The value is the worst segment's fraction.
- Axial non-uniformity = |X̄ - Ȳ| / ((X̄ + Ȳ) / 2), the mean module pitches along the two symbol axes from the
  corner points. A ≤ 0.06, B ≤ 0.08, C ≤ 0.10, D ≤ 0.12.
- Grid non-uniformity: the largest distance, in mean module pitches, between the module centres of the
  projective grid through the corners and the best affine grid fitted to them. A ≤ 0.38, B ≤ 0.50,
  C ≤ 0.63, D ≤ 0.75. It sees tilt (perspective) but not module-by-module placement errors.
- Unused error correction: what zxing-cpp 3.x reports (``extra["UEC"]``), A ≥ 0.62, B ≥ 0.50, C ≥ 0.37,
  D ≥ 0.25. A decoder that does not report it (libdmtx) leaves it "not available" (no grade).
- Decode: A, since only decoded symbols are graded (a no-read is F overall: `no_read`).

The overall grade is the lowest graded parameter. A symbol with no size information (libdmtx reads) gets
only symbol contrast (from the 1st/99th percentiles of its box) and decode; ``Grade.complete`` says so.

Where this differs from a certified verifier: no calibrated reflectance (no reference card: a 255 grey is
taken as 100 %), the camera's own illumination angle and wavelength instead of the standard 45° ring light
and a stated wavelength, a square half-module aperture instead of the standard circular aperture in mils,
a single image instead of the mean of five at different orientations, module positions from the corner
points instead of the reference decode algorithm's grid, and EC counted over all blocks together. The
numbers track print quality on a line; they are not a certificate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Final

import cv2
import numpy as np
import zxingcpp

from edge.gs1.element import build_hri

if TYPE_CHECKING:
    from collections.abc import Mapping

    import numpy.typing as npt

    from edge.vision.decode import Symbol

__all__ = ["LETTERS", "Grade", "grade", "letter", "meets", "no_read"]

LETTERS: Final = "FDCBA"
"""Letter of each numeric grade: LETTERS[4] == "A"."""
PX_PER_MODULE: Final = 8
APERTURE: Final = (2, 6)
"""The central pixels of a rectified module that are averaged (a half-module square aperture)."""
IDEAL_AGREEMENT: Final = 0.75
"""Least share of modules a re-encoded symbol must match to be taken as the printed ideal."""

SC_LIMITS: Final = (0.70, 0.55, 0.40, 0.20)
MOD_LIMITS: Final = (0.50, 0.40, 0.30, 0.20)
UEC_LIMITS: Final = (0.62, 0.50, 0.37, 0.25)
AN_LIMITS: Final = (0.06, 0.08, 0.10, 0.12)
GN_LIMITS: Final = (0.38, 0.50, 0.63, 0.75)
FPD_LIMITS: Final = (0.0, 0.09, 0.13, 0.17)

# ECC200 sizes (rows, cols) → (data codewords, EC codewords, regions down, regions across), ISO/IEC 16022.
_ECC200: Final[dict[tuple[int, int], tuple[int, int, int, int]]] = {
    (10, 10): (3, 5, 1, 1), (12, 12): (5, 7, 1, 1), (14, 14): (8, 10, 1, 1), (16, 16): (12, 12, 1, 1),
    (18, 18): (18, 14, 1, 1), (20, 20): (22, 18, 1, 1), (22, 22): (30, 20, 1, 1), (24, 24): (36, 24, 1, 1),
    (26, 26): (44, 28, 1, 1), (32, 32): (62, 36, 2, 2), (36, 36): (86, 42, 2, 2), (40, 40): (114, 48, 2, 2),
    (44, 44): (144, 56, 2, 2), (48, 48): (174, 68, 2, 2), (52, 52): (204, 84, 2, 2),
    (64, 64): (280, 112, 4, 4), (72, 72): (368, 144, 4, 4), (80, 80): (456, 192, 4, 4),
    (88, 88): (576, 224, 4, 4), (96, 96): (696, 272, 4, 4), (104, 104): (816, 336, 4, 4),
    (120, 120): (1050, 408, 6, 6), (132, 132): (1304, 496, 6, 6), (144, 144): (1558, 620, 6, 6),
    (8, 18): (5, 7, 1, 1), (8, 32): (10, 11, 1, 2), (12, 26): (16, 14, 1, 1), (12, 36): (22, 18, 1, 2),
    (16, 36): (32, 24, 1, 2), (16, 48): (49, 28, 1, 2),
}
# DMRE sizes (ISO/IEC 21471): regions across; their EC counts are estimated (see _layout).
_DMRE_REGIONS: Final[dict[tuple[int, int], int]] = {
    (8, 48): 2, (8, 64): 4, (8, 80): 4, (8, 96): 4, (8, 120): 6, (8, 144): 6, (12, 64): 4, (12, 88): 4,
    (16, 64): 4, (20, 36): 2, (20, 44): 2, (20, 64): 4, (22, 48): 2, (24, 48): 2, (24, 64): 4, (26, 40): 2,
    (26, 48): 2, (26, 64): 4,
}
DMRE_EC_SHARE: Final = 0.4
"""EC codewords as a share of all codewords, assumed for DMRE sizes (the ECC200 table's typical share)."""


@dataclass(frozen=True, slots=True)
class Grade:
    """Overall grade (4..0), its letter, and per parameter (value, grade or None when not available)."""

    overall: int
    letter: str
    parameters: Mapping[str, tuple[float | None, int | None]]
    complete: bool = True
    """Every ISO/IEC 15415 parameter was measured (False for reads without a module grid, e.g. libdmtx)."""

    def as_dict(self) -> dict[str, object]:
        """JSON-ready form: overall letter and number, and per parameter value, grade and letter."""
        return {
            "overall": self.letter,
            "overall_grade": self.overall,
            "complete": self.complete,
            "parameters": {
                name: {"value": None if value is None else round(value, 4), "grade": g,
                       "letter": None if g is None else LETTERS[g]}
                for name, (value, g) in self.parameters.items()
            },
        }


def letter(value: int) -> str:
    """Return the letter of a numeric grade 0..4."""
    return LETTERS[value]


def meets(result: Grade, minimum_letter: str) -> bool:
    """Whether the overall grade is at least minimum_letter (A, B, C, D or F)."""
    wanted = minimum_letter.strip().upper()
    if len(wanted) != 1 or wanted not in LETTERS:
        raise ValueError(f"a grade is one of A, B, C, D, F, not {minimum_letter!r}")
    return result.overall >= LETTERS.index(wanted)


def no_read() -> Grade:
    """Return the grade of a frame where no symbol decoded: F."""
    return Grade(0, "F", {"decode": (0.0, 0)})


def _higher_better(value: float, limits: tuple[float, float, float, float]) -> int:
    for n, limit in enumerate(limits):
        if value >= limit:
            return 4 - n
    return 0


def _lower_better(value: float, limits: tuple[float, float, float, float]) -> int:
    for n, limit in enumerate(limits):
        if value <= limit:
            return 4 - n
    return 0


@dataclass(frozen=True, slots=True)
class _Layout:
    rows: int
    cols: int
    regions_down: int
    regions_across: int
    ec_codewords: int
    fixed: npt.NDArray[np.bool_]
    """True where the module belongs to a finder, clock track or alignment pattern."""
    fixed_dark: npt.NDArray[np.bool_]
    """The prescribed colour of those modules (True = dark)."""
    segments: dict[str, npt.NDArray[np.bool_]]
    codewords: tuple[npt.NDArray[np.intp], ...]
    """Per codeword, the flat indices (rows x cols) of its modules."""


@lru_cache(maxsize=64)
def _layout(rows: int, cols: int) -> _Layout:
    """Compute the fixed patterns and the codeword placement of an ECC200 (or DMRE) symbol of this size."""
    known = _ECC200.get((rows, cols))
    if known is not None:
        _data, ec, down, across = known
    else:
        down, across = 1, _DMRE_REGIONS.get((rows, cols), 1)
        ec = -1
    rh, rw = rows // down, cols // across
    fixed = np.zeros((rows, cols), bool)
    dark = np.zeros((rows, cols), bool)
    clocks = np.zeros((rows, cols), bool)
    for r in range(rows):
        for c in range(cols):
            a, b = r % rh, c % rw
            if b == 0 or a == rh - 1:
                fixed[r, c] = dark[r, c] = True
            elif a == 0:
                fixed[r, c] = clocks[r, c] = True
                dark[r, c] = b % 2 == 0
            elif b == rw - 1:
                fixed[r, c] = clocks[r, c] = True
                dark[r, c] = a % 2 == 1
    l1 = np.zeros((rows, cols), bool)
    l1[:, 0] = True
    l2 = np.zeros((rows, cols), bool)
    l2[rows - 1, :] = True
    alignment = fixed & ~l1 & ~l2 & ~clocks
    segments = {"L1": l1, "L2": l2, "clocks": clocks | alignment}
    placement = _placement(rows - 2 * down, cols - 2 * across)
    count = int(placement.max())
    if ec < 0:
        ec = max(1, round(count * DMRE_EC_SHARE))
    dh, dw = rh - 2, rw - 2
    mrow = np.arange(rows - 2 * down)
    mcol = np.arange(cols - 2 * across)
    srow = (mrow // dh) * rh + 1 + mrow % dh
    scol = (mcol // dw) * rw + 1 + mcol % dw
    flat = (srow[:, None] * cols + scol[None, :])
    codewords = tuple(flat[placement == k] for k in range(1, count + 1))
    return _Layout(rows, cols, down, across, ec, fixed, dark, segments, codewords)


def _placement(nrow: int, ncol: int) -> npt.NDArray[np.int32]:
    """ECC200 module placement (ISO/IEC 16022 annex F): codeword number (1-based) of each mapping module."""
    grid = np.zeros((nrow, ncol), np.int32)

    def module(row: int, col: int, cw: int) -> None:
        if row < 0:
            row += nrow
            col += 4 - ((nrow + 4) % 8)
        if col < 0:
            col += ncol
            row += 4 - ((ncol + 4) % 8)
        grid[row, col] = cw

    def utah(row: int, col: int, cw: int) -> None:
        for dr, dc in ((-2, -2), (-2, -1), (-1, -2), (-1, -1), (-1, 0), (0, -2), (0, -1), (0, 0)):
            module(row + dr, col + dc, cw)

    def corner(cells: tuple[tuple[int, int], ...], cw: int) -> None:
        for r, c in cells:
            module(r, c, cw)

    cw, row, col = 1, 4, 0
    while True:
        if row == nrow and col == 0:
            corner(((nrow - 1, 0), (nrow - 1, 1), (nrow - 1, 2), (0, ncol - 2), (0, ncol - 1), (1, ncol - 1),
                    (2, ncol - 1), (3, ncol - 1)), cw)
            cw += 1
        if row == nrow - 2 and col == 0 and ncol % 4:
            corner(((nrow - 3, 0), (nrow - 2, 0), (nrow - 1, 0), (0, ncol - 4), (0, ncol - 3), (0, ncol - 2),
                    (0, ncol - 1), (1, ncol - 1)), cw)
            cw += 1
        if row == nrow - 2 and col == 0 and ncol % 8 == 4:
            corner(((nrow - 3, 0), (nrow - 2, 0), (nrow - 1, 0), (0, ncol - 2), (0, ncol - 1), (1, ncol - 1),
                    (2, ncol - 1), (3, ncol - 1)), cw)
            cw += 1
        if row == nrow + 4 and col == 2 and not ncol % 8:
            corner(((nrow - 1, 0), (nrow - 1, ncol - 1), (0, ncol - 3), (0, ncol - 2), (0, ncol - 1),
                    (1, ncol - 3), (1, ncol - 2), (1, ncol - 1)), cw)
            cw += 1
        while True:  # sweep up and to the right
            if row < nrow and col >= 0 and grid[row, col] == 0:
                utah(row, col, cw)
                cw += 1
            row -= 2
            col += 2
            if not (row >= 0 and col < ncol):
                break
        row += 1
        col += 3
        while True:  # sweep down and to the left
            if row >= 0 and col < ncol and grid[row, col] == 0:
                utah(row, col, cw)
                cw += 1
            row += 2
            col -= 2
            if not (row < nrow and col >= 0):
                break
        row += 3
        col += 1
        if not (row < nrow or col < ncol):
            break
    return grid


def _ideal(symbol: Symbol, layout: _Layout, observed: npt.NDArray[np.bool_]) -> npt.NDArray[np.bool_] | None:
    """Return the symbol as zxing-cpp's writer encodes the same data, when it matches the printed one."""
    shape = (layout.rows, layout.cols)
    try:
        if symbol.gs1 and symbol.elements is not None:
            content, gs1 = build_hri(symbol.elements, check=False), True
        else:
            content, gs1 = symbol.text.decode("latin-1"), False
        for square in (False, True):
            written = zxingcpp.create_barcode(content, zxingcpp.BarcodeFormat.DataMatrix, gs1=gs1,
                                              force_square=square)
            modules = np.asarray(written.to_image(scale=1, add_quiet_zones=False)) < 128
            if modules.shape == shape and float((modules == observed).mean()) >= IDEAL_AGREEMENT:
                return modules
    except (ValueError, RuntimeError):  # data the writer cannot encode the same way: no ideal
        return None
    return None


def _corners(symbol: Symbol) -> npt.NDArray[np.float64]:
    """Return the corner points pushed half a pixel outwards: from pixel centres to the symbol's outer edge."""
    pts = np.array(symbol.position, np.float64)
    centre = pts.mean(axis=0)
    out = pts - centre
    lengths = np.linalg.norm(out, axis=1, keepdims=True)
    return np.asarray(centre + out * (1 + 0.5 * math.sqrt(2) / np.maximum(lengths, 1.0)), dtype=np.float64)


def grade(image: npt.NDArray[np.uint8], symbol: Symbol) -> Grade:
    """Grade one decoded symbol in the frame it was decoded from (grayscale uint8)."""
    if image.ndim != 2 or image.dtype != np.uint8:
        raise ValueError("grading needs the grayscale uint8 frame the symbol was decoded from")
    size = _size(symbol.version)
    if size is None:
        return _partial(image, symbol)
    rows, cols = size
    layout = _layout(rows, cols)
    corners = _corners(symbol)
    q = 1  # quiet-zone ring, in modules
    k = PX_PER_MODULE
    module_space = np.array([[0, 0], [cols, 0], [cols, rows], [0, rows]], np.float64)
    to_image = cv2.getPerspectiveTransform(module_space.astype(np.float32), corners.astype(np.float32))
    scale = np.array([[1 / k, 0, 0.5 / k - q], [0, 1 / k, 0.5 / k - q], [0, 0, 1]], np.float64)
    width, height = (cols + 2 * q) * k, (rows + 2 * q) * k
    rectified = cv2.warpPerspective(image, to_image @ scale, (width, height),
                                    flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REPLICATE)
    a0, a1 = APERTURE
    samples = (rectified.reshape(rows + 2 * q, k, cols + 2 * q, k)[:, a0:a1, :, a0:a1]
               .mean(axis=(1, 3)) / 255.0)
    inner = samples[q:q + rows, q:q + cols]
    ring = np.ones(samples.shape, bool)
    ring[q:q + rows, q:q + cols] = False

    r_max, r_min = float(samples.max()), float(samples.min())
    sc = r_max - r_min
    params: dict[str, tuple[float | None, int | None]] = {"symbol_contrast": (sc, _higher_better(sc, SC_LIMITS))}
    gt = (r_max + r_min) / 2
    observed = inner < gt
    margin = 2 * np.abs(inner - gt) / max(sc, 1e-6)
    ideal = _ideal(symbol, layout, observed)
    if ideal is None:
        ideal = np.where(layout.fixed, layout.fixed_dark, observed)
    wrong = observed != ideal
    mod_grades = np.digitize(margin, MOD_LIMITS[::-1]).astype(np.int8)  # 0..4 per module
    rm_grades = np.where(wrong, 0, mod_grades).astype(np.int8)
    data_area = ~layout.fixed
    ec = layout.ec_codewords
    params["modulation"] = (float(margin[data_area].min()), _codeword_grade(mod_grades, layout, ec))
    rm_value = float(np.where(wrong, 0.0, margin)[data_area].min())
    params["reflectance_margin"] = (rm_value, _codeword_grade(rm_grades, layout, ec))

    worst = max(float((observed[mask] != layout.fixed_dark[mask]).mean()) for mask in layout.segments.values())
    worst = max(worst, float((samples[ring] < gt).mean()))  # the quiet-zone ring must be light all round
    params["fixed_pattern_damage"] = (worst, _lower_better(worst, FPD_LIMITS))
    params.update(_geometry(corners, np.asarray(to_image, np.float64), rows, cols))

    if symbol.unused_ec is not None:
        params["unused_error_correction"] = (symbol.unused_ec, _higher_better(symbol.unused_ec, UEC_LIMITS))
    else:
        params["unused_error_correction"] = (None, None)
    params["decode"] = (1.0, 4)
    return _finish(params, complete=symbol.unused_ec is not None)


def _geometry(
    corners: npt.NDArray[np.float64], to_image: npt.NDArray[np.float64], rows: int, cols: int,
) -> dict[str, tuple[float | None, int | None]]:
    """Axial and grid non-uniformity from the corner points and the grid through them."""
    tl, tr, br, bl = corners
    x_pitch = float(np.linalg.norm(tr - tl) + np.linalg.norm(br - bl)) / (2 * cols)
    y_pitch = float(np.linalg.norm(bl - tl) + np.linalg.norm(br - tr)) / (2 * rows)
    axial = abs(x_pitch - y_pitch) / ((x_pitch + y_pitch) / 2)
    gn = _grid_nonuniformity(to_image, rows, cols, (x_pitch + y_pitch) / 2)
    return {"axial_nonuniformity": (axial, _lower_better(axial, AN_LIMITS)),
            "grid_nonuniformity": (gn, _lower_better(gn, GN_LIMITS))}


def _codeword_grade(module_grades: npt.NDArray[np.int8], layout: _Layout, ec: int) -> int:
    """ISO/IEC 15415's combination: codewords below each level count as erasures against the EC budget."""
    flat = module_grades.ravel()
    codeword = np.array([int(flat[idx].min()) if idx.size else 4 for idx in layout.codewords])
    best = 0
    for level in range(4, 0, -1):
        erasures = int((codeword < level).sum())
        notional = max(0.0, 1.0 - erasures / ec)
        best = max(best, min(level, _higher_better(notional, UEC_LIMITS)))
    return best


def _grid_nonuniformity(to_image: npt.NDArray[np.float64], rows: int, cols: int, pitch: float) -> float:
    """Largest distance (in module pitches) between projective module centres and their best affine fit."""
    v, u = np.mgrid[0:rows, 0:cols].astype(np.float64) + 0.5
    ones = np.ones(u.size)
    grid = np.stack([u.ravel(), v.ravel(), ones])
    mapped = to_image @ grid
    actual = (mapped[:2] / mapped[2]).T
    design = np.stack([u.ravel(), v.ravel(), ones], axis=1)
    fit, *_ = np.linalg.lstsq(design, actual, rcond=None)
    residual = np.linalg.norm(design @ fit - actual, axis=1)
    return float(residual.max() / max(pitch, 1e-6))


def _partial(image: npt.NDArray[np.uint8], symbol: Symbol) -> Grade:
    """Symbol contrast and decode only, from the symbol's box: the read gave no module grid."""
    xs = [p[0] for p in symbol.position]
    ys = [p[1] for p in symbol.position]
    x0, x1 = max(0, min(xs)), min(image.shape[1], max(xs) + 1)
    y0, y1 = max(0, min(ys)), min(image.shape[0], max(ys) + 1)
    params: dict[str, tuple[float | None, int | None]] = {}
    if x1 - x0 >= 3 and y1 - y0 >= 3:
        box = cv2.blur(image[y0:y1, x0:x1], (3, 3)).astype(np.float64) / 255.0
        sc = float(np.percentile(box, 99) - np.percentile(box, 1))
        params["symbol_contrast"] = (sc, _higher_better(sc, SC_LIMITS))
    for name in ("modulation", "reflectance_margin", "fixed_pattern_damage", "axial_nonuniformity",
                 "grid_nonuniformity", "unused_error_correction"):
        params[name] = (None, None)
    params["decode"] = (1.0, 4)
    return _finish(params, complete=False)


def _finish(params: dict[str, tuple[float | None, int | None]], *, complete: bool) -> Grade:
    graded = [g for _, g in params.values() if g is not None]
    overall = min(graded) if graded else 0
    return Grade(overall, LETTERS[overall], params, complete=complete)


def _size(version: str | None) -> tuple[int, int] | None:
    if not version:
        return None
    rows, sep, cols = version.partition("x")
    if not sep or not rows.isdigit() or not cols.isdigit():
        return None
    return int(rows), int(cols)
