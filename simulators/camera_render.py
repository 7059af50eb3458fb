"""Camera frames of a pack: real GS1 DataMatrix symbols on a carton background, with the defects a line sees.

`render` draws what a fixed line camera sees when a pack passes: a carton-grey surface with fibre texture,
uneven illumination and printed artwork away from the coding window; in the window, the printed GS1
DataMatrix (zxing-cpp's writer with ``gs1=True``: FNC1 first, ``]d2``, square ECC200) and its
human-readable lines beside it, in the printer's ink. Each `DefectKind` changes the picture; its severity
(0..1) scales the effect so that about 0.3 still reads and grades C or better, and 1 is unreadable or
grades below C (the camera-render tests hold the renderer to this with our own decoder and grader).

Verified: every symbol is a real GS1 DataMatrix that zxing-cpp decodes back to the element string given.
Assumed: a monochrome camera with a linear response, paper white near 190 of 255 and ink near 35, a
module of ``module_px`` pixels (6 by default: 0.3 mm modules at 20 px/mm). The picture is a plausible pack,
not a photometric model: no specular glare, no lens distortion, no sensor noise model beyond a cached
grain field.

The simulated camera (`drivers.camera.simulated`) renders from an in-process `LineWorld` found by name:
`register_world` / `unregister_world`. It exists only in the process that holds the world (demo, tests,
benchmarks), which is why there is no wire protocol here.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Final

import cv2
import numpy as np
import zxingcpp

from edge.gs1.element import build_hri, parse
from edge.gs1.errors import Gs1SyntaxError
from simulators.defects import DefectKind

if TYPE_CHECKING:
    import random
    from collections.abc import Sequence

    import numpy.typing as npt

    from simulators.defects import Defect
    from simulators.world import LineWorld

__all__ = [
    "DEFAULT_MODULE_PX",
    "DEFAULT_SIZE",
    "SparseFrame",
    "prepare",
    "register_world",
    "registered_world",
    "render",
    "render_sparse",
    "symbol_modules",
    "unregister_world",
]

DEFAULT_SIZE: Final = (1280, 1024)
"""(width, height) of a frame: a 1.3 MP line camera."""
DEFAULT_MODULE_PX: Final = 6

PAPER: Final = 190
"""Grey level of the unprinted carton under the line light."""
INK: Final = 35
"""Grey level of a fully inked module."""
QUIET_MODULES: Final = 2
"""Blank modules kept around the symbol in the coverage patch, so warps never clip the symbol's edge."""
BACKGROUND_PAD: Final = 64
"""Extra background on each side, cropped at a random offset per frame so no two frames share a texture."""
WINDOW: Final = (560, 440)
"""(width, height) of the unvarnished coding window in the centre, kept free of artwork."""
CENTRE_JITTER: Final = (60, 40)
"""How far (x, y pixels) the trigger's timing moves the code from the frame centre."""
OPTICS_SIGMA_PX: Final = 0.6
"""Every camera blurs a little: the lens's own spread, in pixels."""
SECOND_CODE_OFFSET_PX: Final = 360
"""How far to the side a second code in view sits (a neighbouring pack, or the code printed twice)."""

# What severity 1 means for each defect (scaled linearly below that).
BLUR_SIGMA_MODULES: Final = 0.6
"""Gaussian sigma, in modules: at 0.6 neighbouring modules merge and the symbol no longer reads."""
CONTRAST_LOSS: Final = 0.85
"""Fraction of the ink-to-paper difference lost: 0.85 leaves symbol contrast far below grade C."""
ROTATION_MAX_DEG: Final = 40.0
"""Largest in-plane turn; packs are held between guides, so more is not a rotation but a jam."""
PERSPECTIVE_MAX: Final = 0.22
"""How much one side of the symbol shrinks (fraction of its length) when the pack tilts fully."""
DAMAGE_SIDE: Final = 0.6
"""Side of the erased square as a fraction of the symbol's side."""
INK_SPREAD_MODULES: Final = 0.35
"""Growth of every dark module on each side, in modules: at 0.35 a light module between two dark ones keeps
less than a third of its width and the symbol no longer reads."""
SMUDGE_RADIUS: Final = 0.5
"""Radius of the smeared patch as a fraction of the symbol's side."""
SMUDGE_LENGTH_MODULES: Final = 4.0
"""Length of the smear, in modules."""
NOISE_GRAIN: Final = 6.0
"""Standard deviation of the cached grain field, in grey levels, at ``noise=1``."""

_worlds: dict[str, LineWorld] = {}
_worlds_lock = threading.Lock()


def register_world(name: str, world: LineWorld) -> None:
    """Make world visible to simulated cameras configured with ``world: name``; a name is taken once."""
    with _worlds_lock:
        if name in _worlds and _worlds[name] is not world:
            raise ValueError(f"a line world is already registered as {name!r}")
        _worlds[name] = world


def unregister_world(name: str) -> None:
    """Forget the world registered under name (no error when there is none)."""
    with _worlds_lock:
        _worlds.pop(name, None)


def registered_world(name: str) -> LineWorld | None:
    """Return the world registered under name, or None."""
    with _worlds_lock:
        return _worlds.get(name)


def _hri(code: str) -> str:
    """Return the bracketed HRI that zxing-cpp's GS1 writer takes, from an element string (GS as FNC1) or HRI."""
    return build_hri(parse(code).pairs, check=False)


@lru_cache(maxsize=4096)
def symbol_modules(code: str) -> npt.NDArray[np.bool_]:
    """Return the module matrix (True = dark) of the GS1 DataMatrix for code; cached, read-only.

    GS1 data gives a square GS1 DataMatrix; anything else a plain one. ``ValueError`` when the writer refuses.
    """
    try:
        content, gs1 = _hri(code), True
    except Gs1SyntaxError:  # not GS1 data (a misconfigured print job): printed as a plain DataMatrix
        content, gs1 = code, False
    barcode = zxingcpp.create_barcode(content, zxingcpp.BarcodeFormat.DataMatrix, gs1=gs1, force_square=True)
    modules = np.asarray(barcode.to_image(scale=1, add_quiet_zones=False)) < 128
    modules.flags.writeable = False
    return modules


@lru_cache(maxsize=4)
def _background(width: int, height: int) -> npt.NDArray[np.uint8]:
    """Build a carton surface bigger than the frame by BACKGROUND_PAD each side; built once per size, read-only."""
    gen = np.random.default_rng(20260301)
    w, h = width + 2 * BACKGROUND_PAD, height + 2 * BACKGROUND_PAD
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    # Uneven illumination: brighter under the light, falling off to the corners.
    r2 = ((xx - w / 2) / (w / 2)) ** 2 + ((yy - h / 2) / (h / 2)) ** 2
    surface = PAPER + 8.0 - 14.0 * r2
    # Fibre texture: smooth blotches plus fine grain.
    blotch = cv2.resize(gen.normal(0, 1, (h // 16 + 1, w // 16 + 1)).astype(np.float32), (w, h),
                        interpolation=cv2.INTER_CUBIC)
    surface += 4.0 * blotch + gen.normal(0, 2.0, (h, w)).astype(np.float32)
    image = np.clip(surface, 0, 255).astype(np.uint8)
    # Printed artwork outside the coding window: a colour band, a rule, product texts.
    cy = h // 2
    wh = WINDOW[1]
    cv2.rectangle(image, (0, 0), (w, BACKGROUND_PAD + 110), 120, thickness=-1)
    cv2.line(image, (BACKGROUND_PAD + 40, cy + wh // 2 + 30), (w - BACKGROUND_PAD - 40, cy + wh // 2 + 30), 80, 3)
    font = cv2.FONT_HERSHEY_SIMPLEX
    cv2.putText(image, "LINESIDUM 20 mg", (BACKGROUND_PAD + 40, BACKGROUND_PAD + 80), font, 2.2, 235, 5)
    cv2.putText(image, "film-coated tablets", (BACKGROUND_PAD + 40, cy + wh // 2 + 90), font, 1.3, 70, 3)
    cv2.putText(image, "30 x 1", (w - BACKGROUND_PAD - 260, cy + wh // 2 + 90), font, 1.3, 70, 3)
    for n, text in enumerate(("Read the package leaflet", "before use. Oral use.", "Keep out of reach",
                              "of children.")):
        cv2.putText(image, text, (BACKGROUND_PAD + 30, cy - wh // 2 - 80 + 36 * n), font, 0.8, 90, 2)
    image.flags.writeable = False
    return np.asarray(image, dtype=np.uint8)


@lru_cache(maxsize=4)
def _grain(width: int, height: int) -> npt.NDArray[np.int16]:
    """Zero-mean sensor grain (standard deviation NOISE_GRAIN), padded like the background; read-only."""
    gen = np.random.default_rng(20260302)
    w, h = width + 2 * BACKGROUND_PAD, height + 2 * BACKGROUND_PAD
    grain = np.round(gen.normal(0, NOISE_GRAIN, (h, w))).astype(np.int16)
    grain.flags.writeable = False
    return grain


def prepare(size: tuple[int, int] = DEFAULT_SIZE) -> None:
    """Build the cached background and grain for frames of size now, so the first frame is as fast as the rest."""
    _background(*size)
    _grain(*size)


def _severity(defects: Sequence[Defect], kind: DefectKind) -> float:
    """Return the largest severity given for kind, 0 when absent."""
    return max((d.severity for d in defects if d.kind is kind), default=0.0)


def render(
    codes: Sequence[str],
    defects: Sequence[Defect] = (),
    *,
    size: tuple[int, int] = DEFAULT_SIZE,
    module_px: int = DEFAULT_MODULE_PX,
    rng: random.Random,
    noise: float = 0.0,
) -> npt.NDArray[np.uint8]:
    r"""Render one grayscale frame (height x width, uint8) of a pack carrying codes, with defects applied.

    codes are GS1 element strings (GS as ``"\x1d"``) or bracketed HRI; the first sits near the centre, a
    second one (two codes in view) beside it. MISSING draws no code at all; WRONG_CODE and DUPLICATE are
    the caller's business (pass the wrong or the earlier code); the optical defects apply to every code.
    noise scales a cached sensor-grain field (1 = NOISE_GRAIN grey levels). Same rng state, same frame.
    """
    width, height = size
    if width < 200 or height < 200 or module_px < 1:
        raise ValueError(f"a frame of {size} with {module_px} px modules is too small to render")
    ox, oy = _crop_offset(rng)
    frame = _background(width, height)[oy:oy + height, ox:ox + width].copy()
    if noise > 0:
        gx, gy = rng.randrange(BACKGROUND_PAD), rng.randrange(BACKGROUND_PAD)
        grain = _grain(width, height)[gy:gy + height, gx:gx + width]
        frame = np.clip(frame + np.round(grain * noise).astype(np.int16), 0, 255).astype(np.uint8)
    if any(d.kind is DefectKind.MISSING for d in defects):
        return frame
    cx = width / 2 + rng.uniform(-CENTRE_JITTER[0], CENTRE_JITTER[0])
    cy = height / 2 + rng.uniform(-CENTRE_JITTER[1], CENTRE_JITTER[1])
    side = -1 if rng.random() < 0.5 else 1
    for n, code in enumerate(codes[:2]):
        x = cx + (side * SECOND_CODE_OFFSET_PX if n else 0)
        _draw_code(frame, code, defects=defects, centre=(x, cy + (rng.uniform(-20, 20) if n else 0)),
                   module_px=module_px, rng=rng)
    return frame


@dataclass(frozen=True, slots=True)
class SparseFrame:
    """A rendered frame kept as the part that differs from its background crop: tens of KB instead of 1.3 MB."""

    size: tuple[int, int]
    """(width, height) of the frame."""
    offset: tuple[int, int]
    """(x, y) of the frame's crop in the padded background."""
    origin: tuple[int, int]
    """(x, y) in the frame where patch goes."""
    patch: npt.NDArray[np.uint8]

    def image(self) -> npt.NDArray[np.uint8]:
        """Return the whole frame as `render` made it (a fresh, writeable array)."""
        (width, height), (ox, oy), (x, y) = self.size, self.offset, self.origin
        frame = _background(width, height)[oy:oy + height, ox:ox + width].copy()
        rows, cols = self.patch.shape
        frame[y:y + rows, x:x + cols] = self.patch
        return frame


def render_sparse(
    codes: Sequence[str],
    defects: Sequence[Defect] = (),
    *,
    size: tuple[int, int] = DEFAULT_SIZE,
    module_px: int = DEFAULT_MODULE_PX,
    rng: random.Random,
) -> SparseFrame:
    """Render as `render` does without noise (same rng, same frame) and keep only what differs from the background."""
    state = rng.getstate()
    ox, oy = _crop_offset(rng)
    rng.setstate(state)  # render draws the same offset first
    frame = render(codes, defects, size=size, module_px=module_px, rng=rng)
    width, height = size
    changed = frame != _background(width, height)[oy:oy + height, ox:ox + width]
    rows, cols = np.flatnonzero(changed.any(axis=1)), np.flatnonzero(changed.any(axis=0))
    if not rows.size:
        return SparseFrame(size, (ox, oy), (0, 0), np.zeros((0, 0), np.uint8))
    y0, y1, x0, x1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
    return SparseFrame(size, (ox, oy), (x0, y0), frame[y0:y1, x0:x1].copy())


def _crop_offset(rng: random.Random) -> tuple[int, int]:
    """Draw where a frame's crop of the padded background starts (the first draws of every frame)."""
    ox = rng.randrange(BACKGROUND_PAD)
    return ox, rng.randrange(BACKGROUND_PAD)


def _draw_code(
    frame: npt.NDArray[np.uint8], code: str, *, defects: Sequence[Defect], centre: tuple[float, float],
    module_px: int, rng: random.Random,
) -> None:
    """Draw one symbol (and its human-readable lines) centred at centre, in place."""
    modules = symbol_modules(code)
    rows, cols = modules.shape
    gen = np.random.default_rng(rng.getrandbits(64))
    padded = np.pad(modules, QUIET_MODULES).astype(np.uint8)
    coverage = cv2.resize(padded, (padded.shape[1] * module_px, padded.shape[0] * module_px),
                          interpolation=cv2.INTER_NEAREST).astype(np.float32)
    sym_x0 = sym_y0 = QUIET_MODULES * module_px
    sym_w, sym_h = cols * module_px, rows * module_px

    spread = _severity(defects, DefectKind.INK_SPREAD)
    if spread > 0:
        coverage = _spread(coverage, spread * INK_SPREAD_MODULES * module_px)
    smudge = _severity(defects, DefectKind.SMUDGE)
    if smudge > 0:
        coverage = _smudge(coverage, smudge, (sym_x0, sym_y0, sym_w, sym_h), module_px, gen)
    damage = _severity(defects, DefectKind.DAMAGE)
    if damage > 0:
        d = max(1, round(damage * DAMAGE_SIDE * min(sym_w, sym_h)))
        x0 = sym_x0 + int(gen.integers(0, max(1, sym_w - d + 1)))
        y0 = sym_y0 + int(gen.integers(0, max(1, sym_h - d + 1)))
        coverage[y0:y0 + d, x0:x0 + d] = 0.0

    ph, pw = coverage.shape
    src = np.array([[0, 0], [pw, 0], [pw, ph], [0, ph]], np.float32)
    dst = _destination(src, defects, centre, gen)
    x_lo, y_lo = np.floor(dst.min(axis=0)).astype(int) - 2
    x_hi, y_hi = np.ceil(dst.max(axis=0)).astype(int) + 2
    fh, fw = frame.shape
    x_lo, y_lo, x_hi, y_hi = max(0, x_lo), max(0, y_lo), min(fw, x_hi), min(fh, y_hi)
    if x_hi <= x_lo or y_hi <= y_lo:
        return
    h_matrix = cv2.getPerspectiveTransform(src, dst - np.array([x_lo, y_lo], np.float32))
    warped = cv2.warpPerspective(coverage, h_matrix, (x_hi - x_lo, y_hi - y_lo), flags=cv2.INTER_LINEAR,
                                 borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)

    contrast = 1.0 - _severity(defects, DefectKind.LOW_CONTRAST) * CONTRAST_LOSS
    region = frame[y_lo:y_hi, x_lo:x_hi].astype(np.float32)
    region -= warped * (region - INK) * contrast
    frame[y_lo:y_hi, x_lo:x_hi] = np.clip(region, 0, 255).astype(np.uint8)
    _draw_hri(frame, code, (x_hi + 3 * module_px, int(centre[1])), module_px, contrast)

    sigma = OPTICS_SIGMA_PX + _severity(defects, DefectKind.BLUR) * BLUR_SIGMA_MODULES * module_px
    reach = math.ceil(3 * sigma) + 1
    bx0, by0 = max(0, x_lo - reach), max(0, y_lo - reach)
    bx1, by1 = min(fw, x_hi + reach), min(fh, y_hi + reach)
    frame[by0:by1, bx0:bx1] = cv2.GaussianBlur(frame[by0:by1, bx0:bx1], (0, 0), sigma)


def _destination(
    src: npt.NDArray[np.float32], defects: Sequence[Defect], centre: tuple[float, float], gen: np.random.Generator,
) -> npt.NDArray[np.float32]:
    """Return where the patch corners land in the frame: centred on centre, tilted, then turned."""
    local = src - src.mean(axis=0)
    tilt = _severity(defects, DefectKind.PERSPECTIVE)
    if tilt > 0:
        shrink = tilt * PERSPECTIVE_MAX
        edge = int(gen.integers(0, 4))  # which side moves away from the camera
        a, b = edge, (edge + 1) % 4
        mid = (local[a] + local[b]) / 2
        local[a] = local[a] + (mid - local[a]) * shrink
        local[b] = local[b] + (mid - local[b]) * shrink
    sign = 1 if gen.random() < 0.5 else -1
    angle = math.radians(_severity(defects, DefectKind.ROTATION) * ROTATION_MAX_DEG * sign)
    turn = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]], np.float32)
    return np.asarray(local @ turn.T + np.array(centre, np.float32), dtype=np.float32)


def _spread(coverage: npt.NDArray[np.float32], grow_px: float) -> npt.NDArray[np.float32]:
    """Grow every dark area by grow_px on each side; a fractional pixel grows as partial coverage."""
    whole = math.floor(grow_px)
    part = grow_px - whole

    def dilated(px: int) -> npt.NDArray[np.float32]:
        if px <= 0:
            return coverage
        kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (2 * px + 1, 2 * px + 1))
        return np.asarray(cv2.dilate(coverage, kernel), dtype=np.float32)

    inner = dilated(whole)
    if part <= 0:
        return inner
    return np.asarray(inner + part * (dilated(whole + 1) - inner), dtype=np.float32)


def _smudge(
    coverage: npt.NDArray[np.float32], severity: float, symbol: tuple[int, int, int, int], module_px: int,
    gen: np.random.Generator,
) -> npt.NDArray[np.float32]:
    """Smear the ink over a round patch of the symbol: light modules there turn grey."""
    x0, y0, w, h = symbol
    radius = max(2.0, severity * SMUDGE_RADIUS * min(w, h))
    cx = x0 + float(gen.uniform(radius * 0.5, max(radius * 0.5 + 1, w - radius * 0.5)))
    cy = y0 + float(gen.uniform(radius * 0.5, max(radius * 0.5 + 1, h - radius * 0.5)))
    length = max(3, round(severity * SMUDGE_LENGTH_MODULES * module_px) | 1)
    kernel = np.zeros((length, length), np.float32)
    kernel[length // 2, :] = 1.0 / length
    rot = cv2.getRotationMatrix2D((length / 2 - 0.5, length / 2 - 0.5), float(gen.uniform(0, 180)), 1.0)
    kernel = np.asarray(cv2.warpAffine(kernel, rot, (length, length)), dtype=np.float32)
    kernel /= max(float(kernel.sum()), 1e-6)
    smeared = cv2.filter2D(coverage, -1, kernel, borderType=cv2.BORDER_CONSTANT)
    yy, xx = np.mgrid[0:coverage.shape[0], 0:coverage.shape[1]].astype(np.float32)
    weight = np.clip(1.5 - np.hypot(xx - cx, yy - cy) / radius, 0.0, 1.0)
    # The smear carries ink onto the light modules and thins it on the dark ones, at up to full strength.
    strength = min(1.0, 0.4 + severity)
    mixed = coverage + weight * strength * (smeared - coverage)
    return np.asarray(np.maximum(mixed, weight * strength * 0.55 * float(smeared.max() > 0)), dtype=np.float32)


def _draw_hri(
    frame: npt.NDArray[np.uint8], code: str, origin: tuple[int, int], module_px: int, contrast: float,
) -> None:
    """Print the human-readable lines beside the symbol, as pharma packs carry them."""
    try:
        pairs = parse(code).pairs
    except Gs1SyntaxError:
        return
    labels = {"01": "GTIN", "17": "EXP", "10": "LOT", "21": "SN"}
    lines = [f"{labels.get(ai, ai)} {value}" for ai, value in pairs][:4]
    scale = module_px / 12
    level = round(PAPER - (PAPER - INK) * contrast)
    x, y = origin
    step = max(12, round(module_px * 4))
    for n, line in enumerate(lines):
        cv2.putText(frame, line, (x, y - step * 2 + step * n + step // 2), cv2.FONT_HERSHEY_SIMPLEX, scale,
                    level, max(1, module_px // 5), cv2.LINE_AA)
