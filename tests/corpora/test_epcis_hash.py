"""Event hash vectors of the GS1 EPCIS event hash generator: expected hashes, pre-hash strings, equal documents."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge.epcis._canon import normalise_id
from edge.epcis.hashing import document_event_hashes, document_prehashes, hash_prehash
from tests.conftest import CORPORA

pytestmark = pytest.mark.corpora

VECTORS = CORPORA / "epcis-event-hash-generator"
EXAMPLES = VECTORS / "tests" / "examples"
EQUAL = VECTORS / "tests" / "expected_equal"
# The corpus notes that the .prehashes of these documents predate their .hashes (the .hashes are current).
STALE_PREHASHES = {"epcisDocWithAllGS1Keys", "epcisDocWithCustomSchemaInContext", "epcisDocWithDefaultSchemaInContext"}

# Without the corpora each test gets one placeholder case, which the corpora fixture then skips with its reason.
ABSENT = [pytest.param(None, id="corpora-absent")]


def _documents() -> list[Path]:
    """Every example document that has expected hashes (a .hashes file serves its .xml and its .jsonld)."""
    if not EXAMPLES.is_dir():
        return []
    documents = [*EXAMPLES.glob("*.xml"), *EXAMPLES.glob("*.jsonld")]
    return sorted(path for path in documents if path.with_suffix(".hashes").is_file())


def _with_prehashes() -> list[Path]:
    return [path for path in _documents() if path.with_suffix(".prehashes").is_file()]


def _equal_documents() -> list[Path]:
    return sorted(EQUAL.iterdir()) if EQUAL.is_dir() else []


def _lines(path: Path) -> list[str]:
    return [line for line in path.read_text(encoding="utf-8").splitlines() if line]


def _normaliser_rows() -> list[list[str]]:
    path = VECTORS / "derived-dl-normaliser-vectors.tsv"
    if not path.is_file():
        return []
    return [line.split("\t") for line in path.read_text(encoding="utf-8").splitlines()[2:]]


@pytest.mark.parametrize("document", _documents() or ABSENT, ids=lambda path: path and path.name)
def test_expected_hashes(corpora, document):
    expected = _lines(document.with_suffix(".hashes"))
    assert document_event_hashes(document.read_bytes()) == expected


@pytest.mark.parametrize("document", _with_prehashes() or ABSENT, ids=lambda path: path and path.name)
def test_prehashes_where_current(corpora, document):
    """Where a .prehashes line still hashes to the expected hash, our pre-hash string is that line."""
    prehashes = document.with_suffix(".prehashes")
    expected = _lines(document.with_suffix(".hashes"))
    current = [(i, line) for i, line in enumerate(_lines(prehashes)) if i < len(expected)]
    current = [(i, line) for i, line in current if hash_prehash(line) == expected[i]]
    ours = document_prehashes(document.read_bytes())
    assert [ours[i] for i, _ in current] == [line for _, line in current]
    assert (len(current) < len(expected)) == (document.stem in STALE_PREHASHES)


@pytest.mark.parametrize("document", _equal_documents() or ABSENT, ids=lambda path: path and path.name)
def test_expected_equal(corpora, document):
    hashes = document_event_hashes(document.read_bytes())
    assert len(hashes) >= 2
    assert len(set(hashes)) == 1, document_prehashes(document.read_bytes())


@pytest.mark.parametrize("row", _normaliser_rows() or ABSENT, ids=lambda row: row and row[0].removeprefix("tests/"))
def test_dl_normaliser_vectors(corpora, row):
    _source, _test, given, op, expected = row
    assert normalise_id(given) == (None if op == "Is" else expected)


def test_every_vector_is_accounted_for(corpora):
    documents = _documents()
    hash_files = {path.with_suffix(".hashes") for path in documents}
    assert len(documents) == 39
    assert sum(len(_lines(path)) for path in hash_files) == 63
    assert sum(len(_lines(path.with_suffix(".hashes"))) for path in documents) == 89  # hashes checked, per document
    assert len(_equal_documents()) == 11
    assert len(_normaliser_rows()) == 71
