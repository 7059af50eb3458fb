"""Benchmark: one GS1 DataMatrix found and decoded in a 1280x1024 grayscale frame, ours beside the baselines.

Frames are rendered with `simulators.camera_render` before any timing: a clean set, and a degraded set
of things a line should still read (mild blur, lower contrast, rotation, perspective, sensor noise). Each
frame carries its own serial, so no decoder can profit from a repeated symbol. Measured per frame, on one
thread, wall clock around the decode call only: our `Decoder` with its default options (the whole frame
searched, so a second code in view is never missed), our `Decoder` with ``track_last_hit`` (the window
around the previous hit first), zxing-cpp's ``read_barcodes`` with its default options, and pylibdmtx
(on fewer frames: it takes tens of milliseconds each). A read counts only when its data equals the
rendered code (libdmtx: with the GS separators it drops removed). Grading is timed apart, for our reads.
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
from simulators.camera_render import render
from simulators.defects import Defect, DefectKind

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    from edge.vision.decode import Decoder

TARGET_MS: Final = 2.0
LIBDMTX_FRAMES: Final = 30
"""pylibdmtx runs on at most this many frames of each set (about 2 ms to over 100 ms per frame here)."""
LIBDMTX_TIMEOUT_MS: Final = 1000
"""libdmtx's own time limit per frame, so a frame it cannot read does not stall the benchmark."""
SIZE: Final = (1280, 1024)

_DEGRADATIONS: Final[tuple[tuple[Defect, ...], ...]] = (
    (Defect(DefectKind.BLUR, 0.25),),
    (Defect(DefectKind.LOW_CONTRAST, 0.35),),
    (Defect(DefectKind.ROTATION, 0.6),),
    (Defect(DefectKind.PERSPECTIVE, 0.3),),
    (Defect(DefectKind.ROTATION, 0.3), Defect(DefectKind.BLUR, 0.15), Defect(DefectKind.LOW_CONTRAST, 0.2)),
)
DEGRADED_NOISE: Final = 0.7
"""Sensor grain on every degraded frame (in units of the renderer's grain field)."""


def _codes(count: int, rng: random.Random) -> list[str]:
    return [
        build([("01", "09506000134352"), ("17", "281231"), ("10", f"L{rng.randint(1000, 9999)}"),
               ("21", "".join(rng.choice("ABCDEFGHJKLMNPQRSTUVWXYZ0123456789") for _ in range(12)))])
        for _ in range(count)
    ]


def make_frames(count: int, *, degraded: bool, seed: int = 20260301) -> list[tuple[str, npt.NDArray[np.uint8]]]:
    """Render count (code, frame) pairs, clean or with the degraded set's defects in turn."""
    rng = random.Random(seed + degraded)  # noqa: S311 - reproducible test frames, nothing secret
    frames = []
    for n, code in enumerate(_codes(count, rng)):
        defects = _DEGRADATIONS[n % len(_DEGRADATIONS)] if degraded else ()
        frames.append((code, render([code], defects, size=SIZE, rng=rng, noise=DEGRADED_NOISE if degraded else 0)))
    return frames


Reader = Callable[["npt.NDArray[np.uint8]", str], bool]


def _measure(frames: list[tuple[str, npt.NDArray[np.uint8]]], read: Reader) -> dict[str, Any]:
    times, hits = [], 0
    read(frames[0][1], frames[0][0])  # warm caches and lazy initialisation outside the figures
    for code, frame in frames:
        started = time.perf_counter()
        ok = read(frame, code)
        times.append((time.perf_counter() - started) * 1000.0)
        hits += ok
    ordered = sorted(times)
    p99 = ordered[min(len(ordered) - 1, max(0, round(0.99 * len(ordered)) - 1))]
    return {"frames": len(frames), "median_ms": round(statistics.median(times), 3), "p99_ms": round(p99, 3),
            "max_ms": round(ordered[-1], 3), "read_rate": round(hits / len(frames), 4)}


def bench_decode(*, frames: int = 300) -> dict[str, Any]:
    """Run every decoder over the clean and the degraded set; return the benchmark's JSON object."""
    import zxingcpp  # noqa: PLC0415 - keeps `lineside --help` fast

    from edge.vision.decode import Decoder, DecoderOptions, load_pylibdmtx  # noqa: PLC0415 - same reason
    from edge.vision.grade import grade  # noqa: PLC0415 - same reason

    if frames < 1:
        raise ValueError("the benchmark needs at least one frame per set")
    pylibdmtx = load_pylibdmtx()
    sets = {"clean": make_frames(frames, degraded=False), "degraded": make_frames(frames, degraded=True)}

    def ours(decoder: Decoder) -> Reader:
        def read(frame: npt.NDArray[np.uint8], code: str) -> bool:
            return any(s.text_str == (code.replace("\x1d", "") if s.fnc1_lost else code)
                       for s in decoder.decode(frame).symbols)
        return read

    def zxing_default(frame: npt.NDArray[np.uint8], code: str) -> bool:
        # Default text mode is HRI, "(01)...": compare the elements, not the spelling.
        return any(_same_hri(b.text, code) for b in zxingcpp.read_barcodes(frame))

    def libdmtx(frame: npt.NDArray[np.uint8], code: str) -> bool:
        found = pylibdmtx.decode(frame, timeout=LIBDMTX_TIMEOUT_MS, max_count=1)
        return any(bytes(f.data).decode("latin-1") == code.replace("\x1d", "") for f in found)

    results: dict[str, dict[str, Any]] = {}
    for name, data in sets.items():
        row: dict[str, Any] = {}
        with Decoder(DecoderOptions()) as default, Decoder(DecoderOptions(track_last_hit=True)) as tracking:
            row["ours"] = _measure(data, ours(default))
            row["ours_track_last_hit"] = _measure(data, ours(tracking))
            row["grade_ms_median"] = _grade_median(data, default, grade)
        row["zxing_cpp_default"] = _measure(data, zxing_default)
        row["pylibdmtx"] = _measure(data[:LIBDMTX_FRAMES], libdmtx)
        results[name] = row

    clean = results["clean"]
    return {
        "headline": {"metric": "ms per 1280x1024 frame to find and decode one GS1 DataMatrix, median, clean set",
                     "value": clean["ours"]["median_ms"], "unit": "ms", "target": TARGET_MS,
                     "read_rate": clean["ours"]["read_rate"], "read_rate_target": 1.0},
        "baseline": {"name": "zxing-cpp read_barcodes with default options", "value":
                     clean["zxing_cpp_default"]["median_ms"], "unit": "ms"},
        "details": {
            "frames_per_set": frames,
            "pylibdmtx_frames_per_set": min(frames, LIBDMTX_FRAMES),
            "frame": {"width": SIZE[0], "height": SIZE[1], "module_px": 6},
            "degradations": [[f"{d.kind}:{d.severity}" for d in group] for group in _DEGRADATIONS],
            "degraded_noise": DEGRADED_NOISE,
            "sets": results,
            "versions": {name: version(name) for name in ("zxing-cpp", "pylibdmtx", "opencv-python-headless")},
        },
    }


def _same_hri(text: str, code: str) -> bool:
    try:
        return parse(text).pairs == parse(code).pairs
    except Gs1SyntaxError:  # not GS1 data at all: not the expected code
        return False


def _grade_median(
    frames: list[tuple[str, npt.NDArray[np.uint8]]], decoder: Decoder, grade: Callable[..., object],
) -> float | None:
    """Median milliseconds to grade the first symbol of each frame our decoder read."""
    times = []
    for _code, frame in frames:
        symbols = decoder.decode(frame).symbols
        if symbols:
            started = time.perf_counter()
            grade(frame, symbols[0])
            times.append((time.perf_counter() - started) * 1000.0)
    return round(statistics.median(times), 3) if times else None
