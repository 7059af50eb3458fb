"""Every DataMatrix image of zxing-cpp's own test corpus through our Decoder, with the expected text.

The options are those a line would set for such images: the default search (DataMatrix only, Plain text,
whole frame) plus rotation and inversion on, since the corpus holds turned, mirrored and inverted symbols;
the libdmtx fallback off, so every read below is zxing-cpp's. Images not matched are listed with the reason.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import cv2
import numpy as np
import pytest

from edge.vision.decode import Decoder, DecoderOptions

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.corpora

FOLDERS = ("datamatrix-1", "datamatrix-3", "datamatrix-4")
IMAGE_SUFFIXES = {".png", ".jpg", ".webp"}

KNOWN_MISSES = {
    "datamatrix-3/dm-2x2-b.webp": "zxing-cpp itself does not read it (its expected text is '<unkown>'; the "
                                  "corpus README counts 27/28 for this folder)",
}
KNOWN_DIFFERENT = {
    "datamatrix-1/eci.png": "ECI content: Symbol.text holds the raw data bytes in each segment's declared "
                            "character set (zxing-cpp's .bytes), the corpus expects the UTF-8 transcoding",
}


def _images(corpora: Path) -> list[Path]:
    root = corpora / "zxing-cpp-datamatrix"
    return sorted(p for folder in FOLDERS for p in (root / folder).iterdir() if p.suffix in IMAGE_SUFFIXES)


def _expected(image: Path) -> tuple[bytes, str | None]:
    binary, text = image.with_suffix(".bin"), image.with_suffix(".txt")
    data = binary.read_bytes() if binary.exists() else text.read_bytes()
    identifier = None
    result = image.with_suffix(".result.txt")
    if result.exists():
        for line in result.read_text().splitlines():
            key, _, value = line.partition("=")
            if key.strip() == "symbologyIdentifier":
                identifier = value.strip()
    return data, identifier


def test_corpus_decodes_as_expected(corpora):
    decoder = Decoder(DecoderOptions(try_rotate=True, try_invert=True, fallback=False))
    images = _images(corpora)
    assert len(images) == 79
    unmatched: dict[str, str] = {}
    checked_identifiers = 0
    for image in images:
        key = f"{image.parent.name}/{image.name}"
        loaded = cv2.imread(str(image), cv2.IMREAD_GRAYSCALE)
        assert loaded is not None, f"OpenCV cannot read {key}"
        expected, identifier = _expected(image)
        symbols = decoder.decode(np.asarray(loaded, dtype=np.uint8)).symbols
        match = next((s for s in symbols if s.text == expected), None)
        if match is None:
            unmatched[key] = "no symbol" if not symbols else f"read {symbols[0].text[:40]!r}"
            continue
        if identifier is not None:
            assert match.symbology_identifier == identifier, key
            checked_identifiers += 1
    assert set(unmatched) == set(KNOWN_MISSES) | set(KNOWN_DIFFERENT), unmatched
    assert checked_identifiers >= 6


def test_the_pharma_gs1_photo_reads_as_gs1(corpora):
    image = corpora / "zxing-cpp-datamatrix" / "datamatrix-3" / "#794.png"
    loaded = cv2.imread(str(image), cv2.IMREAD_GRAYSCALE)
    (symbol,) = Decoder().decode(np.asarray(loaded, dtype=np.uint8)).symbols
    assert symbol.symbology_identifier == "]d2"
    assert symbol.gs1
    assert symbol.elements is not None
    assert symbol.elements[0][0] == "01"
    assert b"\x1d" in symbol.text
