"""Benchmark: every unit code on a case top decoded from one 2448x2048 frame, ours beside zxing-cpp's defaults.

Frames are rendered with `simulators.case_render` before any timing: a layer of 24 packs (4 x 6) and one of
100 (10 x 10), clean, each pack with its own serial; ``frames`` different frames per layer, each decoded
``repeat`` times, so one lucky frame does not make the figure. Measured on one thread, wall clock around the
decode call only, one warm-up decode first: our `CaseScanner` with its default options (DataMatrix only,
plain text, no rotate/invert/downscale passes, the whole frame) and zxing-cpp's ``read_barcodes`` with its
default options (every format, every pass). Codes found are those whose data equals a rendered code; the
headline wants all 100 found on every frame.
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable
from importlib.metadata import version
from typing import TYPE_CHECKING, Any, Final

from edge.gs1.element import build, parse
from edge.gs1.errors import Gs1SyntaxError

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

__all__ = ["LAYERS", "TARGET_MS", "bench_aggregation", "make_case_frames"]

TARGET_MS: Final = 25.0
"""Most milliseconds one 100-code frame may take, median."""
LAYERS: Final = {24: (4, 6), 100: (10, 10)}
"""Codes per layer → (rows, columns) of packs."""
SIZE: Final = (2448, 2048)
NOISE: Final = 1.0
"""Sensor grain of the extra 100-code set (in units of the renderer's grain field): not the headline, which is
on clean frames, but closer to a real camera's picture."""

Frame = tuple[list[str], "npt.NDArray[np.uint8]"]
Reader = Callable[["npt.NDArray[np.uint8]"], set[tuple[tuple[str, str], ...]]]


def _codes(count: int, rng: random.Random) -> list[str]:
    lot = f"L{rng.randint(1000, 9999)}"
    return [
        build([("01", "09506000134352"), ("17", "281231"), ("10", lot),
               ("21", "".join(rng.choice("ABCDEFGHJKLMNPQRSTUVWXYZ0123456789") for _ in range(12)))])
        for _ in range(count)
    ]


def make_case_frames(count: int, frames: int, *, noise: float = 0.0, seed: int = 20260601) -> list[Frame]:
    """Render frames case-top frames of count codes (a layer from LAYERS), each with its codes; noise as rendered."""
    from simulators.case_render import render_case_top  # noqa: PLC0415 - keeps `lineside --help` fast

    rows, cols = LAYERS[count]
    rng = random.Random(seed + count)  # noqa: S311 - reproducible test frames, nothing secret
    made = []
    for _ in range(frames):
        codes = _codes(count, rng)
        made.append((codes, render_case_top(codes, rows=rows, cols=cols, size=SIZE, rng=rng, noise=noise)))
    return made


def _key(text: str) -> tuple[tuple[str, str], ...] | None:
    try:
        return tuple(parse(text).pairs)
    except Gs1SyntaxError:  # not GS1 data: never one of ours
        return None


def _measure(frames: list[Frame], read: Reader, repeat: int) -> dict[str, Any]:
    times: list[float] = []
    found: list[int] = []
    read(frames[0][1])  # warm caches and lazy initialisation outside the figures
    for codes, frame in frames:
        expected = {_key(code) for code in codes}
        for _ in range(repeat):
            started = time.perf_counter()
            keys = read(frame)
            times.append((time.perf_counter() - started) * 1000.0)
            found.append(len(keys & expected))
    return {"decodes": len(times), "median_ms": round(statistics.median(times), 3),
            "max_ms": round(max(times), 3), "codes": len(frames[0][0]), "min_found": min(found),
            "all_found": min(found) == len(frames[0][0])}


def bench_aggregation(*, frames: int = 5, repeat: int = 3) -> dict[str, Any]:
    """Decode the 24- and 100-code layers with our scanner and with zxing-cpp's defaults; the benchmark's JSON."""
    import zxingcpp  # noqa: PLC0415 - keeps `lineside --help` fast

    from edge.aggregation.case_scan import CaseScanner  # noqa: PLC0415 - same reason

    if frames < 1 or repeat < 1:
        raise ValueError("the benchmark needs at least one frame per layer and one decode per frame")
    scanner = CaseScanner()

    def ours(frame: npt.NDArray[np.uint8]) -> set[tuple[tuple[str, str], ...]]:
        return {s.elements for s in scanner.scan(frame).symbols if s.elements is not None}

    def zxing_default(frame: npt.NDArray[np.uint8]) -> set[tuple[tuple[str, str], ...]]:
        # Default text mode is HRI, "(01)...": compare the elements, not the spelling.
        return {key for b in zxingcpp.read_barcodes(frame) if (key := _key(b.text)) is not None}

    sets: dict[str, dict[str, Any]] = {}
    for name, count, noise in (*((str(count), count, 0.0) for count in LAYERS), ("100-noisy", 100, NOISE)):
        data = make_case_frames(count, frames, noise=noise)
        sets[name] = {"ours": _measure(data, ours, repeat),
                      "zxing_cpp_default": _measure(data, zxing_default, repeat)}
    big = sets["100"]
    ours_ms, base_ms = big["ours"]["median_ms"], big["zxing_cpp_default"]["median_ms"]
    return {
        "headline": {"metric": "ms per 2448x2048 case-top frame to decode 100 GS1 DataMatrix codes, median",
                     "value": ours_ms, "unit": "ms", "target": TARGET_MS, "codes": 100,
                     "min_found": big["ours"]["min_found"], "all_found": big["ours"]["all_found"]},
        "baseline": {"name": "zxing-cpp read_barcodes with default options", "value": base_ms, "unit": "ms",
                     "min_found": big["zxing_cpp_default"]["min_found"]},
        "details": {
            "frame": {"width": SIZE[0], "height": SIZE[1], "module_px": _module_px()},
            "noisy_set_noise": NOISE,
            "frames_per_layer": frames, "repeat": repeat,
            "layers": {str(count): {"rows": rows, "cols": cols} for count, (rows, cols) in LAYERS.items()}
            | {"100-noisy": {"rows": LAYERS[100][0], "cols": LAYERS[100][1]}},
            "sets": sets,
            "speedup_100": round(base_ms / ours_ms, 1) if ours_ms > 0 else None,
            "versions": {name: version(name) for name in ("zxing-cpp", "opencv-python-headless")},
        },
    }


def _module_px() -> int:
    from simulators.case_render import DEFAULT_CASE_MODULE_PX  # noqa: PLC0415 - keeps `lineside --help` fast

    return DEFAULT_CASE_MODULE_PX


def format_text(result: dict[str, Any]) -> str:
    """Return the benchmark as text: one line per layer and reader, then the headline beside the baseline."""
    head, base = result["headline"], result["baseline"]
    lines = [f"{'set':>10}  {'reader':<20}{'median ms':>10}{'max ms':>9}{'found (min)':>13}"]
    for count, row in result["details"]["sets"].items():
        for name, figures in row.items():
            lines.append(f"{count:>10}  {name:<20}{figures['median_ms']:>10.2f}{figures['max_ms']:>9.2f}"
                         f"{figures['min_found']:>9}/{figures['codes']}")
    lines.append(f"{head['metric']}: {head['value']:.2f} {head['unit']} (target {head['target']:g}), "
                 f"all found: {'yes' if head['all_found'] else 'NO'}")
    lines.append(f"baseline, {base['name']}: {base['value']:.2f} {base['unit']}")
    return "\n".join(lines)
