"""Our Decoder on rendered pack frames: text with GS, positions in the full frame, ROI, last hit, fallback."""

from __future__ import annotations

import asyncio
import random

import numpy as np
import pytest

from edge.vision.decode import Decoder, DecoderOptions, reparse_without_fnc1
from simulators.camera_render import render

GS = "\x1d"
CODE = "0109506000134352" + "17281231" + "10LOT42" + GS + "21ABC123XYZ0001"
OTHER = "0109506000134352" + "17281231" + "10LOT43" + GS + "21ABC123XYZ0002"
HANG_GUARD_S = 10.0


def frame(codes=(CODE,), seed=1, defects=()):
    return render(list(codes), list(defects), rng=random.Random(seed))


def centre(symbol):
    xs = [p[0] for p in symbol.position]
    ys = [p[1] for p in symbol.position]
    return sum(xs) / 4, sum(ys) / 4


def test_reads_gs1_datamatrix_with_gs_kept():
    with Decoder() as decoder:
        decoded = decoder.decode(frame())
    assert decoded.found_by == "frame"
    (symbol,) = decoded.symbols
    assert symbol.text == CODE.encode()
    assert symbol.symbology_identifier == "]d2"
    assert symbol.gs1
    assert not symbol.fnc1_lost
    assert symbol.elements == (("01", "09506000134352"), ("17", "281231"), ("10", "LOT42"), ("21", "ABC123XYZ0001"))
    assert symbol.format == "DataMatrix"
    assert symbol.decoder == "zxing-cpp"
    assert symbol.version == "22x22"
    assert symbol.unused_ec == 1.0
    x, y = centre(symbol)
    assert 1280 / 2 - 100 < x < 1280 / 2 + 100
    assert 1024 / 2 - 100 < y < 1024 / 2 + 100
    assert decoded.ms > 0


def test_roi_positions_are_in_the_full_frame():
    image = frame()
    full = Decoder().decode(image).symbols[0]
    x, y = centre(full)
    roi = (int(x) - 150, int(y) - 150, 300, 300)
    decoded = Decoder(DecoderOptions(roi=roi)).decode(image)
    assert decoded.found_by == "roi"
    assert decoded.symbols[0].position == full.position


def test_empty_roi_falls_back_to_the_full_frame_unless_told_not_to():
    image = frame()
    empty_corner = (0, 200, 200, 200)
    assert Decoder(DecoderOptions(roi=empty_corner)).decode(image).found_by == "frame"
    strict = Decoder(DecoderOptions(roi=empty_corner, roi_fallback_full=False, fallback=False)).decode(image)
    assert strict.symbols == ()
    assert strict.found_by == "none"


def test_roi_outside_the_frame_is_an_error():
    with pytest.raises(ValueError, match="outside"):
        Decoder(DecoderOptions(roi=(5000, 5000, 10, 10))).decode(frame())


def test_last_hit_window_is_searched_first():
    decoder = Decoder(DecoderOptions(track_last_hit=True))
    first = decoder.decode(frame(seed=1))
    second = decoder.decode(frame(seed=2))
    assert first.found_by == "frame"
    assert second.found_by == "last-hit"
    assert second.symbols[0].text == CODE.encode()
    # Nothing near the last hit: the whole frame is searched again.
    assert decoder.decode(frame(codes=(), seed=3)).found_by == "none"


def test_two_codes_in_view_are_both_reported():
    decoded = Decoder().decode(frame(codes=(CODE, OTHER)))
    assert sorted(s.text for s in decoded.symbols) == sorted([CODE.encode(), OTHER.encode()])


def test_empty_pack_gives_nothing_even_with_the_fallback():
    decoded = Decoder(DecoderOptions(fallback_budget_ms=20)).decode(frame(codes=()))
    assert decoded.symbols == ()
    assert decoded.found_by == "none"


def test_bgr_frames_are_accepted_and_other_arrays_refused():
    gray = frame()
    bgr = np.repeat(gray[:, :, None], 3, axis=2)
    assert Decoder().decode(bgr).symbols[0].text == CODE.encode()
    with pytest.raises(ValueError, match="8-bit"):
        Decoder().decode(gray.astype(np.float32))  # type: ignore[arg-type]


def test_libdmtx_second_opinion_drops_fnc1_and_never_invents_gs():
    decoder = Decoder()
    image = frame()
    (zx,) = decoder.decode(image).symbols
    (dm,) = decoder._libdmtx(image, None)
    assert dm.decoder == "libdmtx"
    assert dm.fnc1_lost
    assert dm.symbology_identifier is None
    assert dm.text == CODE.replace(GS, "").encode()
    assert not dm.gs1
    assert dm.elements is None
    (zx_x, zx_y), (dm_x, dm_y) = centre(zx), centre(dm)
    assert abs(zx_x - dm_x) < 4
    assert abs(zx_y - dm_y) < 4


def test_reparse_without_fnc1_only_when_unique():
    assert reparse_without_fnc1("010950600013435221ABC") == (("01", "09506000134352"), ("21", "ABC"))
    assert reparse_without_fnc1("01095060001343521728123110LOT42") == (
        ("01", "09506000134352"), ("17", "281231"), ("10", "LOT42"))
    assert reparse_without_fnc1("01095060001343521728123110LOT4221XYZ") is None  # where does the lot end?
    assert reparse_without_fnc1("hello") is None
    assert reparse_without_fnc1("") is None


async def test_decode_async_runs_on_the_decoders_own_thread():
    with Decoder(DecoderOptions(workers=2)) as decoder:
        async with asyncio.timeout(HANG_GUARD_S):
            results = await asyncio.gather(*(decoder.decode_async(frame(seed=n)) for n in range(4)))
    assert all(r.symbols[0].text == CODE.encode() for r in results)
    with pytest.raises(RuntimeError, match="closed"):
        await decoder.decode_async(frame())


def test_options_refuse_unknown_keys():
    with pytest.raises(ValueError, match="extra"):
        DecoderOptions.model_validate({"roi": None, "rotate": True})
