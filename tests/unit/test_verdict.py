"""The verdict on one pack: good only for exactly the expected, printed, well-graded code; else one reason."""

from __future__ import annotations

import pytest

from edge.gs1.element import build
from edge.line.verdict import Expectation, Read, RejectReason, SerialRow, grade_letter, judge, serial_of
from edge.serials.states import SerialState as S

GTIN = "04012345000016"
EXPECTED = Expectation(batch_id=7, ais=("01", "21", "10", "17"), fixed={"01": GTIN, "10": "L1", "17": "281031"})


def code(serial: str = "SN1", *, gtin: str = GTIN, lot: str = "L1", expiry: str = "281031") -> bytes:
    return build([("01", gtin), ("21", serial), ("10", lot), ("17", expiry)]).encode()


def read(text: bytes | None = None, grade: int | None = 4, symbology: str = "]d2") -> Read:
    return Read(text if text is not None else code(), symbology, grade)


ROWS = {"SN1": SerialRow(11, S.PRINTED), "SN2": SerialRow(12, S.COMMISSIONED), "SN3": SerialRow(13, S.SENT),
        "SN4": SerialRow(14, S.IN_DOUBT), "SN5": SerialRow(15, S.REJECTED), "SN6": SerialRow(16, S.ALLOCATED)}


def test_the_expected_printed_code_at_grade_c_or_better_is_good() -> None:
    verdict = judge([read(grade=2)], EXPECTED, ROWS)
    assert verdict.good
    assert (verdict.serial, verdict.serial_id, verdict.state) == ("SN1", 11, S.PRINTED)


def test_a_serial_in_doubt_found_on_a_pack_is_good_re_inspection() -> None:
    assert judge([read(code("SN4"))], EXPECTED, ROWS).good


def test_a_sent_serial_seen_on_a_pack_is_printed_whatever_the_printer_has_said_so_far() -> None:
    verdict = judge([read(code("SN3"))], EXPECTED, ROWS)
    assert verdict.good
    assert verdict.state is S.SENT


@pytest.mark.parametrize(
    ("reads", "reason", "detail"),
    [
        ([], RejectReason.NO_READ, "no code found"),
        ([read(), read(code("SN4"))], RejectReason.MULTIPLE_CODES, "2 different codes"),
        ([read(symbology="]d1")], RejectReason.WRONG_DATA, "not GS1 DataMatrix"),
        ([read(b"hello")], RejectReason.WRONG_DATA, "not a GS1 element string"),
        ([read(code(lot="L2"))], RejectReason.WRONG_DATA, "lot is L2, expected L1"),
        ([read(code(expiry="281130"))], RejectReason.WRONG_DATA, "expiry is 281130, expected 281031"),
        ([read(code(gtin="04012345000023"))], RejectReason.WRONG_DATA, "GTIN is 04012345000023"),
        ([read(build([("01", GTIN), ("10", "L1"), ("17", "281031")]).encode())], RejectReason.WRONG_DATA,
         "no serial"),
        ([read(build([("01", GTIN), ("21", "SN1"), ("10", "L1")]).encode())], RejectReason.WRONG_DATA,
         "missing AI 17"),
        ([read(code("ZZZ"))], RejectReason.UNKNOWN_SERIAL, "serial ZZZ is not one of batch 7"),
        ([read(code("SN2"))], RejectReason.DUPLICATE, "already commissioned"),
        ([read(code("SN5"))], RejectReason.DUPLICATE, "already rejected"),
        ([read(code("SN6"))], RejectReason.NOT_PRINTED, "is allocated"),
        ([read(grade=1)], RejectReason.LOW_GRADE, "grade D, the market asks for C"),
        ([read(grade=None)], RejectReason.LOW_GRADE, "grade ?"),
    ],
)
def test_every_reject_has_one_reason_naming_what_is_wrong(reads, reason, detail) -> None:
    verdict = judge(reads, EXPECTED, ROWS)
    assert verdict.reason is reason
    assert detail in verdict.detail
    assert not verdict.good


def test_the_same_code_twice_in_view_is_one_read() -> None:
    assert judge([read(), read()], EXPECTED, ROWS).good


def test_a_complete_code_from_upstream_must_match_byte_for_byte() -> None:
    crypto = Expectation(batch_id=7, ais=(*EXPECTED.ais, "91"), fixed=EXPECTED.fixed)
    received = code() + b"\x1d91EE07"
    rows = {"SN1": SerialRow(11, S.PRINTED, code=received)}
    assert judge([read(received)], crypto, rows).good
    verdict = judge([read(code() + b"\x1d91EE08")], crypto, rows)
    assert verdict.reason is RejectReason.WRONG_DATA
    assert "differs from the one received" in verdict.detail


def test_a_stricter_market_minimum() -> None:
    strict = Expectation(batch_id=7, ais=EXPECTED.ais, fixed=EXPECTED.fixed, min_grade="B")
    assert judge([read(grade=2)], strict, ROWS).reason is RejectReason.LOW_GRADE
    assert judge([read(grade=3)], strict, ROWS).good


def test_helpers() -> None:
    assert [grade_letter(g) for g in (4, 3, 2, 1, 0, None)] == ["A", "B", "C", "D", "F", "?"]
    assert serial_of(read()) == "SN1"
    assert serial_of(read(b"nonsense")) is None
