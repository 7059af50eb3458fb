from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.framing.base import Garbage
from drivers.framing.keyence_md import (
    NEITHER_OK_NOR_NG,
    NG_WITHOUT_CODE,
    NO_PARAMETER,
    NOT_WX_RX,
    RX_OK_WITHOUT_VALUE,
    Answer,
    AnswerFramer,
    Request,
    RequestFramer,
    check_value,
    encode_answer,
    encode_request,
    parse_answer,
    read,
    write,
)
from drivers.framing.line import CR, CRLF

GS = "\x1d"
GS1 = "0109501101530003" + "17270630" + "10AB-123" + GS + "21XYZ0001"


def feed_all(framer: AnswerFramer | RequestFramer, chunks: list[bytes]) -> list[object]:
    items: list[object] = []
    for chunk in chunks:
        items += framer.feed(chunk)
    return items


# requests: the byte examples of protocols.md §1.8


@pytest.mark.parametrize(
    ("request_", "wire"),
    [
        (read("Ready"), b"RX,Ready\r"),
        (write(("ProgramNo", "0000")), b"WX,ProgramNo=0000\r"),
        (read("ProgramNo"), b"RX,ProgramNo\r"),
        (
            write(("PRG", "0000"), ("BLK", "0001"), ("CharacterString", "ABC"), ("BLK", "0014"),
                  ("CharacterString", "X")),
            b"WX,PRG=0000,BLK=0001,CharacterString=ABC,BLK=0014,CharacterString=X\r",
        ),
        (write(("StartMarking", None)), b"WX,StartMarking\r"),
        (write(("StopMarking", None)), b"WX,StopMarking\r"),
        (write(("ErrorClear", None)), b"WX,ErrorClear\r"),
        (write(("GuideLaser", "2")), b"WX,GuideLaser=2\r"),
        (read("MarkedCharacter", "0000", "0001"), b"RX,MarkedCharacter=0000,0001\r"),
        (Request("RX", ("PRG=0000", "CTR=A", "Counter")), b"RX,PRG=0000,CTR=A,Counter\r"),
    ],
)
def test_requests_encode_as_documented_and_decode_back(request_, wire):
    assert encode_request(request_) == wire
    assert RequestFramer().feed(wire) == [request_]


def test_request_with_crlf_terminator():
    assert encode_request(read("Ready"), terminator=CRLF) == b"RX,Ready\r\n"


def test_a_host_sending_crlf_is_understood():
    assert RequestFramer().feed(b"RX,Ready\r\nWX,StartMarking\r\n") == [
        Request("RX", ("Ready",)),
        Request("WX", ("StartMarking",)),
    ]


def test_pairs_split_at_the_first_equals_sign():
    request = write(("PRG", "0000"), ("BLK", "0001"), ("CharacterString", "a=b"))
    assert request.pairs() == (("PRG", "0000"), ("BLK", "0001"), ("CharacterString", "a=b"))
    assert read("MarkedCharacter", "0000", "0002").pairs() == (("MarkedCharacter", "0000"), ("0002", None))


def test_gs_and_high_bytes_travel_unchanged():
    request = write(("PRG", "0000"), ("BLK", "0000"), ("CharacterString", GS1 + "\xe9"))
    wire = encode_request(request)
    assert GS.encode() in wire
    assert b"\xe9" in wire
    assert RequestFramer().feed(wire) == [request]


@pytest.mark.parametrize("bad", ["A,B", "A\rB", "A\nB", "\u20ac"])
def test_a_value_that_cannot_travel_is_a_value_error_naming_the_field(bad):
    with pytest.raises(ValueError, match="CharacterString"):
        write(("CharacterString", bad))
    with pytest.raises(ValueError, match="field SN"):
        check_value(bad, "field SN")


def test_bad_requests_are_refused():
    with pytest.raises(ValueError, match="WX or RX"):
        encode_request(Request("ZZ", ("Ready",)))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="parameter"):
        encode_request(Request("RX", ()))
    with pytest.raises(ValueError, match="CR or CRLF"):
        encode_request(read("Ready"), terminator=b"\n")
    with pytest.raises(ValueError, match="longer"):
        encode_request(write(("CharacterString", "x" * 100)), max_length=50)
    with pytest.raises(ValueError, match="name"):
        write(("", "x"))


@pytest.mark.parametrize(
    ("line", "item"),
    [
        (b"XX,Ready", Garbage(b"XX,Ready", NOT_WX_RX)),
        (b"WX", Garbage(b"WX", NO_PARAMETER)),
        (b"WX,", Garbage(b"WX,", NO_PARAMETER)),
        (b"hello", Garbage(b"hello", NOT_WX_RX)),
    ],
)
def test_lines_that_are_not_requests_are_garbage(line, item):
    assert RequestFramer().feed(line + CR) == [item]


# answers


@pytest.mark.parametrize(
    ("wire", "answer"),
    [
        (b"WX,OK\r", Answer("WX", ok=True)),
        (b"WX,NG,02\r", Answer("WX", ok=False, values=("02",))),
        (b"RX,OK,0\r", Answer("RX", ok=True, values=("0",))),
        (b"RX,OK,2,100,200\r", Answer("RX", ok=True, values=("2", "100", "200"))),
        (b"RX,OK,\r", Answer("RX", ok=True, values=("",))),
        (b"RX,NG,01\r\n", Answer("RX", ok=False, values=("01",))),
        (b"RX,OK,0000\n", Answer("RX", ok=True, values=("0000",))),
    ],
)
def test_answers_decode(wire, answer):
    assert AnswerFramer().feed(wire) == [answer]


def test_answer_properties():
    assert Answer("WX", ok=False, values=("03",)).error == "03"
    assert Answer("RX", ok=True, values=("1",)).error is None
    assert Answer("RX", ok=True, values=("1", "2")).raw == b"RX,OK,1,2"
    assert encode_answer(Answer("WX", ok=True)) == b"WX,OK\r"
    assert encode_answer(Answer("RX", ok=False, values=("01",)), terminator=CRLF) == b"RX,NG,01\r\n"


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b"OK", NOT_WX_RX),
        (b"ER,WX,22", NOT_WX_RX),
        (b"WX", NEITHER_OK_NOR_NG),
        (b"WX,MAYBE", NEITHER_OK_NOR_NG),
        (b"WX,NG", NG_WITHOUT_CODE),
        (b"RX,NG,01,02", NG_WITHOUT_CODE),
        (b"RX,OK", RX_OK_WITHOUT_VALUE),
    ],
)
def test_lines_that_are_not_answers_are_garbage(line, reason):
    assert parse_answer(line) == Garbage(line, reason)


def test_bad_answers_are_refused():
    with pytest.raises(ValueError, match="exactly one"):
        encode_answer(Answer("WX", ok=False, values=()))
    with pytest.raises(ValueError, match="at least one"):
        encode_answer(Answer("RX", ok=True))
    with pytest.raises(ValueError, match="answer value 0"):
        encode_answer(Answer("RX", ok=True, values=("a,b",)))


def test_an_overlong_line_is_garbage_and_the_next_answer_decodes():
    framer = AnswerFramer(max_length=16)
    items = feed_all(framer, [b"RX,OK," + b"9" * 30, b"\rWX,OK\r"])
    assert items == [Garbage(b"RX,OK," + b"9" * 30, "line longer than 16 bytes"), Answer("WX", ok=True)]


def test_reset_forgets_a_partial_line():
    framer = AnswerFramer()
    assert framer.feed(b"RX,OK,12") == []
    framer.reset()
    assert framer.feed(b"34\rWX,OK\r") == [Garbage(b"34", NOT_WX_RX), Answer("WX", ok=True)]


def test_no_checksum_but_a_corrupted_header_never_decodes_as_the_same_answer():
    # The dialect has no checksum: a corrupted value is undetectable, but the WX/RX and OK/NG words are checked.
    wire = encode_answer(Answer("WX", ok=True))
    for offset in range(5):
        for mask in (0x01, 0x02, 0x20, 0x40):
            corrupted = bytearray(wire)
            corrupted[offset] ^= mask
            for item in AnswerFramer().feed(bytes(corrupted)):
                assert item != Answer("WX", ok=True)


# properties

VALUE = st.text(st.characters(min_codepoint=0, max_codepoint=255, blacklist_characters=",\r\n"), max_size=20)
KIND = st.sampled_from(["WX", "RX"])


@st.composite
def answers(draw: st.DrawFn) -> Answer:
    kind = draw(KIND)
    if draw(st.booleans()):
        values = draw(st.lists(VALUE, min_size=1 if kind == "RX" else 0, max_size=4))
        return Answer(kind, ok=True, values=tuple(values))
    return Answer(kind, ok=False, values=(draw(VALUE),))


@st.composite
def requests(draw: st.DrawFn) -> Request:
    first = draw(VALUE.filter(bool))
    return Request(draw(KIND), (first, *draw(st.lists(VALUE, max_size=4))))


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


@given(st.lists(answers(), max_size=6), st.sampled_from([CR, CRLF]), st.lists(st.integers(0, 10_000), max_size=8))
def test_any_split_of_an_answer_stream_gives_the_same_answers(items, terminator, cuts):
    stream = b"".join(encode_answer(a, terminator=terminator) for a in items)
    assert feed_all(AnswerFramer(), split(stream, cuts)) == items


@given(st.lists(requests(), max_size=6), st.sampled_from([CR, CRLF]), st.lists(st.integers(0, 10_000), max_size=8))
def test_any_split_of_a_request_stream_gives_the_same_requests(items, terminator, cuts):
    stream = b"".join(encode_request(r, terminator=terminator) for r in items)
    assert feed_all(RequestFramer(), split(stream, cuts)) == items


@given(
    st.lists(st.tuples(answers(), st.binary(max_size=20).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b""))),
             min_size=1, max_size=5)
)
def test_garbage_lines_between_answers_are_reported_and_the_answers_after_still_decode(pairs):
    stream = b""
    expected: list[object] = []
    for answer, noise in pairs:
        garbage = b"#" + noise
        stream += garbage + CR + encode_answer(answer)
        expected += [Garbage(garbage, NOT_WX_RX), answer]
    assert AnswerFramer().feed(stream) == expected


@given(st.lists(st.binary(max_size=50), max_size=10))
def test_arbitrary_bytes_never_raise(chunks):
    for framer in (AnswerFramer(max_length=32), RequestFramer(max_length=32)):
        for item in feed_all(framer, chunks):
            assert isinstance(item, Garbage | Answer | Request)
