"""Camera frames of an open case seen from above: one layer of packs, each top carrying its GS1 DataMatrix.

`render_case_top` draws what a case-scan camera over the packing station sees: the case floor and walls in
dark board, a grid of ``rows x cols`` pack tops (lighter carton, a little brightness difference from pack to
pack, a printed word of artwork each), and on every pack top its code, placed near the centre with some
jitter (packs are never exactly centred in their slot). Symbols come from
`simulators.camera_render.symbol_modules` (zxing-cpp's GS1 writer, cached) and are scaled, blurred by the
lens and cached once more as a darkness patch, so a frame of 100 codes is a copy of the cached background
plus 100 small blends: here about 1.5 ms with the symbols cached, 8 ms for 100 new codes, plus about 0.5 s
once per layout for the background (`prepare_case` builds it ahead).

Per-cell defects (`CaseDefect`): a pack with no code (MISSING), a code damaged past reading (UNREADABLE),
the code of the neighbouring pack printed again (DUPLICATE), a pack of another batch (FOREIGN: the code with
another serial, see `foreign_code`). `printed_codes` says what each cell then shows, so tests and the
benchmark know what a perfect reader would return.

Assumed, not measured: a monochrome camera with a linear response, pack tops aligned by the case walls (no
turn, no tilt), even light but for a soft fall-off to the corners. The picture is plausible, not photometric.
"""

from __future__ import annotations

from enum import StrEnum
from functools import lru_cache
from typing import TYPE_CHECKING, Final

import cv2
import numpy as np

from edge.gs1.element import build, parse
from edge.gs1.errors import Gs1SyntaxError
from simulators.camera_render import BACKGROUND_PAD, INK, OPTICS_SIGMA_PX, PAPER, _grain, symbol_modules

if TYPE_CHECKING:
    import random
    from collections.abc import Mapping, Sequence

    import numpy.typing as npt

__all__ = [
    "CASE_SIZE",
    "DEFAULT_CASE_MODULE_PX",
    "CaseDefect",
    "foreign_code",
    "prepare_case",
    "printed_codes",
    "render_case_top",
]

CASE_SIZE: Final = (2448, 2048)
"""(width, height) of a case-scan frame: a 5 MP camera over the open case."""
DEFAULT_CASE_MODULE_PX: Final = 4
"""Pixels per module: 0.35 mm modules seen at about 11 px/mm, a 45 x 37 cm field of view."""
FLOOR: Final = 70
"""Grey level of the case floor and the gaps between packs (in the packs' shadow)."""
WALL_PX: Final = 40
"""Width of the case wall seen around the layer, in pixels."""
GAP_PX: Final = 6
"""Dark gap between neighbouring pack tops, in pixels."""
JITTER: Final = 0.08
"""How far a code sits off its pack's centre, as a fraction of the cell's width and height (each way)."""
QUIET_MODULES: Final = 1
"""Blank modules around the symbol in the cached patch, so the lens blur is not clipped at its edge."""
UNREADABLE_SIDE: Final = 0.65
"""Side of the square scraped off an UNREADABLE symbol, as a fraction of its side, over the finder corner."""


class CaseDefect(StrEnum):
    """What can be wrong with one cell of the layer."""

    MISSING = "missing"
    """A pack without a code (or turned code side down): a blank pack top."""
    UNREADABLE = "unreadable"
    """A code damaged past reading: its finder corner and most of its data scraped off."""
    DUPLICATE = "duplicate"
    """The code of the previous cell (the last cell's for the first) printed again; this cell's own is not seen."""
    FOREIGN = "foreign"
    """A pack of another batch: the cell's code with another serial (`foreign_code`)."""


def foreign_code(code: str) -> str:
    r"""Return code (a GS1 element string, GS as ``"\x1d"``) with another serial (AI 21), or lot when it has none.

    The first character of the value is replaced by ``X`` (``Y`` when it already is one): the result is a valid
    element string of the same length that never equals code. ValueError when code is not GS1 data with 21 or 10.
    """
    try:
        pairs = parse(code).pairs
    except Gs1SyntaxError as exc:
        raise ValueError(f"cannot make a foreign code from non-GS1 data {code!r}") from exc
    keys = [ai for ai, _ in pairs]
    target = "21" if "21" in keys else "10" if "10" in keys else None
    if target is None:
        raise ValueError(f"cannot make a foreign code from {code!r}: it has no serial (21) or lot (10)")
    changed = [(ai, ("Y" if value[0] == "X" else "X") + value[1:] if ai == target else value) for ai, value in pairs]
    return build(changed, check=False)


def printed_codes(codes: Sequence[str], defects: Mapping[int, CaseDefect] | None = None) -> tuple[str | None, ...]:
    """Return what each cell shows readably, in cell order: its code, another one, or None (missing, unreadable)."""
    defects = defects or {}
    bad = sorted(i for i in defects if not 0 <= i < len(codes))
    if bad:
        raise ValueError(f"defects name cells {bad}, but the layer has {len(codes)} codes")
    shown: list[str | None] = []
    for i, code in enumerate(codes):
        kind = defects.get(i)
        if kind is CaseDefect.MISSING or kind is CaseDefect.UNREADABLE:
            shown.append(None)
        elif kind is CaseDefect.DUPLICATE:
            shown.append(codes[i - 1])
        elif kind is CaseDefect.FOREIGN:
            shown.append(foreign_code(code))
        else:
            shown.append(code)
    return tuple(shown)


def _cells(size: tuple[int, int], rows: int, cols: int) -> list[tuple[int, int, int, int]]:
    """Return each pack top's box (x, y, width, height) in row-major order."""
    width, height = size
    inner_w, inner_h = width - 2 * WALL_PX, height - 2 * WALL_PX
    cell_w, cell_h = inner_w // cols, inner_h // rows
    return [
        (WALL_PX + c * cell_w + GAP_PX // 2, WALL_PX + r * cell_h + GAP_PX // 2, cell_w - GAP_PX, cell_h - GAP_PX)
        for r in range(rows) for c in range(cols)
    ]


@lru_cache(maxsize=8)
def _case_background(size: tuple[int, int], rows: int, cols: int) -> npt.NDArray[np.uint8]:
    """Build the case floor, walls and pack tops for one layout; built once per layout, read-only."""
    width, height = size
    gen = np.random.default_rng(20260601 + 97 * rows + cols)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    r2 = ((xx - width / 2) / (width / 2)) ** 2 + ((yy - height / 2) / (height / 2)) ** 2
    surface = np.full((height, width), float(FLOOR), np.float32)
    font = cv2.FONT_HERSHEY_SIMPLEX
    for x, y, w, h in _cells(size, rows, cols):
        surface[y:y + h, x:x + w] = PAPER + float(gen.uniform(-8, 8))
    surface += 6.0 - 12.0 * r2  # the light falls off to the corners
    blotch = cv2.resize(gen.normal(0, 1, (height // 16 + 1, width // 16 + 1)).astype(np.float32), (width, height),
                        interpolation=cv2.INTER_CUBIC)
    surface += 3.0 * blotch + gen.normal(0, 1.5, (height, width)).astype(np.float32)
    image = np.clip(surface, 0, 255).astype(np.uint8)
    cv2.rectangle(image, (0, 0), (width - 1, height - 1), 110, thickness=WALL_PX // 2)  # the wall's top edge
    for x, y, _w, h in _cells(size, rows, cols):
        # Artwork on the flap, along its bottom edge, clear of where the code may sit.
        scale = max(0.3, min(1.0, h / 400))
        cv2.putText(image, "LINESIDUM", (x + 6, y + h - 8), font, scale, 90, max(1, round(2 * scale)), cv2.LINE_AA)
    image.flags.writeable = False
    return image


@lru_cache(maxsize=4096)
def _darkness(code: str, module_px: int, unreadable: bool) -> npt.NDArray[np.float32]:
    """Return the symbol's ink coverage (0 paper .. 1 ink), scaled, lens-blurred, with a quiet margin; read-only."""
    modules = symbol_modules(code)
    if unreadable:
        modules = modules.copy()
        side = max(2, round(modules.shape[0] * UNREADABLE_SIDE))
        modules[-side:, :side] = False  # the finder corner (bottom left) and what lies over it: nothing to find
        modules[: modules.shape[0] // 2, modules.shape[1] // 2:] = False
    padded = np.pad(modules, QUIET_MODULES).astype(np.float32)
    scaled = cv2.resize(padded, (padded.shape[1] * module_px, padded.shape[0] * module_px),
                        interpolation=cv2.INTER_NEAREST)
    coverage = np.asarray(cv2.GaussianBlur(scaled, (0, 0), OPTICS_SIGMA_PX), dtype=np.float32)
    coverage.flags.writeable = False
    return coverage


def prepare_case(
    codes: Sequence[str], *, rows: int, cols: int, size: tuple[int, int] = CASE_SIZE,
    module_px: int = DEFAULT_CASE_MODULE_PX,
) -> None:
    """Build the cached background and symbol patches for these codes, so rendering them later is fast."""
    _case_background(size, rows, cols)
    for code in codes:
        _darkness(code, module_px, False)


def render_case_top(
    codes: Sequence[str],
    *,
    rows: int,
    cols: int,
    size: tuple[int, int] = CASE_SIZE,
    module_px: int = DEFAULT_CASE_MODULE_PX,
    defects: Mapping[int, CaseDefect] | None = None,
    rng: random.Random,
    noise: float = 0.0,
) -> npt.NDArray[np.uint8]:
    """Render one grayscale frame (height x width, uint8) of a case layer: codes[i] on the i-th pack, row-major.

    Cells past len(codes) are packs without a code (a partial layer shows its blank slots as packs too);
    defects maps a cell index to what is wrong with it (see `printed_codes` for what each cell then shows).
    noise scales the camera renderer's cached sensor-grain field (1: about 6 grey levels; it costs some
    milliseconds on a 5 MP frame). ValueError when the codes do not fit the grid or a symbol does not fit its
    pack. Same rng state, same frame.
    """
    if rows < 1 or cols < 1 or module_px < 1:
        raise ValueError(f"a layer of {rows} x {cols} packs with {module_px} px modules cannot be drawn")
    if len(codes) > rows * cols:
        raise ValueError(f"{len(codes)} codes do not fit a layer of {rows} x {cols} packs")
    defects = defects or {}
    shown = printed_codes(codes, defects)
    frame = _case_background(size, rows, cols).copy()
    for n, (x, y, w, h) in enumerate(_cells(size, rows, cols)[: len(codes)]):
        kind = defects.get(n)
        if kind is CaseDefect.MISSING:
            continue
        code = codes[n] if kind is CaseDefect.UNREADABLE else shown[n]
        if code is None:  # only MISSING shows nothing, handled above
            continue
        patch = _darkness(code, module_px, kind is CaseDefect.UNREADABLE)
        ph, pw = patch.shape
        if pw > w or ph > h:
            raise ValueError(f"a {pw} x {ph} px symbol does not fit a {w} x {h} px pack top: use fewer packs "
                             "or smaller modules")
        # Jitter within the pack top, never over its edge.
        room_x, room_y = min((w - pw) // 2, round(w * JITTER)), min((h - ph) // 2, round(h * JITTER))
        px = x + (w - pw) // 2 + rng.randint(-room_x, room_x)
        py = y + (h - ph) // 2 + rng.randint(-room_y, room_y)
        region = frame[py:py + ph, px:px + pw].astype(np.float32)
        region -= patch * (region - INK)
        frame[py:py + ph, px:px + pw] = region.astype(np.uint8)  # stays within INK..255: no clipping needed
    if noise > 0:
        width, height = size
        gx, gy = rng.randrange(BACKGROUND_PAD), rng.randrange(BACKGROUND_PAD)
        grain = _grain(width, height)[gy:gy + height, gx:gx + width]
        frame = np.clip(frame + np.round(grain * noise).astype(np.int16), 0, 255).astype(np.uint8)
    return frame
