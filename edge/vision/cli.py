"""`lineside decode IMAGE...`: decode and grade the DataMatrix symbols in image files.

Per image: the symbols found, each with its text (GS kept, shown as U+001D in JSON and ``<GS>`` in the
human form), symbology identifier, format, decoder, GS1 elements (or their errors), grade (overall and per
parameter) and corner points, and the milliseconds the decode and the grading took. Exit 0 when every
image gave a symbol, 1 when some gave none, 2 when a file cannot be read as an image (named on stderr).
The heavy imports (OpenCV, zxing-cpp) happen only when the command runs, so ``lineside --help`` stays fast.
"""

# ruff: noqa: T201 - a command line prints its results
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from edge.vision.decode import Symbol

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``decode`` command to the ``lineside`` command line."""
    decode = sub.add_parser("decode", help="decode and grade the DataMatrix symbols in image files")
    decode.add_argument("images", nargs="+", type=Path, metavar="IMAGE", help="PNG, JPEG, WebP, BMP, TIFF...")
    decode.add_argument("--json", action="store_true", help="print one JSON list, an object per image")
    decode.add_argument("--roi", type=_roi, metavar="X,Y,W,H", help="search this region first (pixels)")
    decode.add_argument("--try-rotate", action="store_true", help="also try 90°/270° turned images")
    decode.add_argument("--try-invert", action="store_true", help="also try light-on-dark symbols")
    decode.set_defaults(handler=run)


def _roi(text: str) -> tuple[int, int, int, int]:
    parts = text.split(",")
    try:
        x, y, w, h = (int(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected X,Y,W,H as four whole numbers, got {text!r}") from None
    if x < 0 or y < 0 or w < 1 or h < 1:
        raise argparse.ArgumentTypeError(f"a region needs X, Y >= 0 and W, H >= 1, got {text!r}")
    return x, y, w, h


def run(args: argparse.Namespace) -> int:
    """Decode every image given; print the results; return the exit code."""
    import cv2  # noqa: PLC0415 - keeps `lineside --help` fast
    import numpy as np  # noqa: PLC0415 - same reason

    from edge.vision.decode import Decoder, DecoderOptions  # noqa: PLC0415 - same reason
    from edge.vision.grade import grade, no_read  # noqa: PLC0415 - same reason

    options = DecoderOptions(roi=args.roi, try_rotate=args.try_rotate, try_invert=args.try_invert)
    worst = EXIT_OK
    results: list[dict[str, Any]] = []
    with Decoder(options) as decoder:
        for path in args.images:
            loaded = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE) if path.is_file() else None
            if loaded is None:
                print(f"lineside decode: {path}: not a readable image file", file=sys.stderr)
                worst = EXIT_BAD_INPUT
                results.append({"image": str(path), "error": "not a readable image file", "symbols": []})
                continue
            image = np.asarray(loaded, dtype=np.uint8)
            try:
                decoded = decoder.decode(image)
            except ValueError as err:  # e.g. a region of interest outside this image
                print(f"lineside decode: {path}: {err}", file=sys.stderr)
                worst = EXIT_BAD_INPUT
                results.append({"image": str(path), "error": str(err), "symbols": []})
                continue
            started = time.perf_counter()
            symbols = [_symbol_report(s, grade(image, s).as_dict()) for s in decoded.symbols]
            grade_ms = (time.perf_counter() - started) * 1000.0
            if not symbols:
                worst = max(worst, EXIT_FAILED)
            results.append({
                "image": str(path), "width": int(image.shape[1]), "height": int(image.shape[0]),
                "symbols": symbols, "found_by": decoded.found_by, "ms": round(decoded.ms, 3),
                "grade_ms": round(grade_ms, 3), "grade": None if symbols else no_read().as_dict(),
            })
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for result in results:
            _print_human(result)
    return worst


def _symbol_report(symbol: Symbol, graded: dict[str, Any]) -> dict[str, Any]:
    return {
        "text": symbol.text_str,
        "symbology_identifier": symbol.symbology_identifier,
        "format": symbol.format,
        "decoder": symbol.decoder,
        "gs1": _gs1_report(symbol),
        "fnc1_lost": symbol.fnc1_lost,
        "grade": graded,
        "position": [list(p) for p in symbol.position],
        "version": symbol.version,
    }


def _gs1_report(symbol: Symbol) -> dict[str, Any] | None:
    """Return the parsed elements and rule errors through edge.gs1, or None for data that is not GS1."""
    from edge.gs1.report import UnusableInputError, build_report, parse_report  # noqa: PLC0415 - lazy

    if not symbol.gs1:
        return None
    if symbol.fnc1_lost:  # libdmtx: the elements come from the decoder's own unique split
        report = build_report(list(symbol.elements or ()))
        report.pop("element_string", None)
        return report
    try:
        return parse_report(symbol.text_str)
    except UnusableInputError as err:
        issue = err.issue
        return {"ok": False, "elements": [], "hri": None, "digital_link": None, "errors": [
            {"ai": issue.ai, "position": issue.position, "message": issue.message, "rule": issue.rule}]}


def _print_human(result: dict[str, Any]) -> None:
    name = result["image"]
    if "error" in result:
        print(f"{name}: ERROR {result['error']}")
        return
    if not result["symbols"]:
        print(f"{name}: no symbol ({result['ms']:.2f} ms)")
        return
    for symbol in result["symbols"]:
        text = symbol["text"].replace("\x1d", "<GS>")
        identifier = symbol["symbology_identifier"] or "(no identifier)"
        gs1 = symbol["gs1"]
        gs1_note = "" if gs1 is None else (" GS1 ok" if gs1["ok"] else f" GS1 {len(gs1['errors'])} error(s)")
        print(f"{name}: {identifier} {text!r} grade {symbol['grade']['overall']}{gs1_note} "
              f"[{symbol['format']}, {symbol['decoder']}, {result['ms']:.2f} ms]")
