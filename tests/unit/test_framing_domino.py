from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.framing.base import Garbage
from drivers.framing.domino import (
    BEFORE_ANSWER,
    BEFORE_SOH,
    CUT_SHORT,
    NOT_AN_ANSWER,
    Answer,
    AnswerFramer,
    Arg,
    Request,
    RequestFramer,
    bare,
    decode_request,
    encode_answer,
    encode_request,
    quoted,
)

GS = b"\x1d"
CODE = b"0109501101530003" + b"17270630" + b"10AB-123" + GS + b"21XYZ0001"


def feed_all(framer, chunks):
    items = []
    for chunk in chunks:
        items += framer.feed(chunk)
    return items


def only_frames(items):
    return [item for item in items if not isinstance(item, Garbage)]


# The byte examples of protocols.md §1.4 b


def test_print_design_example_bytes():
    wire = b"\x01PrintDesign=\x02LOT.Design\x03,0,0\x17"
    request = Request("PrintDesign", (quoted(b"LOT.Design"), bare(b"0"), bare(b"0")))
    assert encode_request(request.command, request.args) == wire
    assert RequestFramer().feed(wire) == [request]


def test_fill_and_poll_serial_var_example_bytes():
    fill = b"\x01FillSerialVar=\x02CODE\x03,\x02" + CODE + b"\x03\x17"
    poll = b"\x01PollSerialVar=\x02CODE\x03\x17"
    assert encode_request("FillSerialVar", [quoted(b"CODE"), quoted(CODE)]) == fill
    assert encode_request("PollSerialVar", [quoted(b"CODE")]) == poll
    assert RequestFramer().feed(fill + poll) == [
        Request("FillSerialVar", (quoted(b"CODE"), quoted(CODE))),
        Request("PollSerialVar", (quoted(b"CODE"),)),
    ]


def test_commands_without_arguments():
    assert encode_request("PausePrint") == b"\x01PausePrint\x17"
    assert RequestFramer().feed(b"\x01ResumePrint\x17") == [Request("ResumePrint")]


def test_answer_examples_with_crlf_or_lf():
    framer = AnswerFramer()
    items = framer.feed(b"AnswerPrintDesign=LOT.Design,1,0,0,0,PromptInfo,0,\r\nAnswerSerialVar=CODE,0,17\n")
    assert items == [
        Answer("PrintDesign", (b"LOT.Design", b"1", b"0", b"0", b"0", b"PromptInfo", b"0", b"")),
        Answer("SerialVar", (b"CODE", b"0", b"17")),
    ]
    assert items[1].value(2) == b"17"
    assert items[1].value(3) is None
    assert items[0].raw == b"AnswerPrintDesign=LOT.Design,1,0,0,0,PromptInfo,0,"


def test_encode_answer():
    assert encode_answer("SerialVar", [b"CODE", b"0", b"3"]) == b"AnswerSerialVar=CODE,0,3\r\n"
    assert encode_answer("PausePrint", [b"1"], terminator=b"\n") == b"AnswerPausePrint=1\n"


# Refusals by the encoders: what would not decode back never goes on the wire


@pytest.mark.parametrize("value", [b"a\x01", b"\x02", b"x\x03y", b"\x17"])
def test_values_cannot_hold_framing_bytes(value):
    with pytest.raises(ValueError, match="cannot contain"):
        encode_request("FillSerialVar", [quoted(b"CODE"), quoted(value)])
    with pytest.raises(ValueError, match="cannot contain"):
        encode_answer("SerialVar", [value])


def test_bare_values_cannot_hold_a_comma_and_commands_must_be_names():
    with pytest.raises(ValueError, match="comma"):
        encode_request("PrintDesign", [bare(b"0,1")])
    for bad in ("", "Print Design", "1Cmd", "Fill=", "Ä"):
        with pytest.raises(ValueError, match="command"):
            encode_request(bad)
    with pytest.raises(ValueError, match="comma"):
        encode_answer("SerialVar", [b"a,b"])
    with pytest.raises(ValueError, match="LF"):
        encode_answer("SerialVar", [b"1"], terminator=b"\r")
    with pytest.raises(ValueError, match="at least one"):
        encode_answer("SerialVar", [])


# Decoding edge cases


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"=\x02x\x03", "bad command name"),
        (b"Fill=\x02x", "quoted value without ETX"),
        (b"Fill=\x02x\x03y", "bytes after a quoted value"),
        (b"Fill=a\x03", "framing byte inside a bare value"),
    ],
)
def test_decode_request_reasons(body, reason):
    decoded = decode_request(body)
    assert isinstance(decoded, str)
    assert decoded.startswith(reason)


def test_empty_and_trailing_arguments_round_trip():
    for args in [(bare(b""),), (quoted(b"a"), bare(b"")), (quoted(b""), quoted(b",x,"))]:
        wire = encode_request("Cmd", args)
        assert RequestFramer().feed(wire) == [Request("Cmd", args)]


def test_garbage_before_and_between_requests_is_reported():
    wire = encode_request("PausePrint")
    items = RequestFramer().feed(b"noise" + wire + b"\r\n" + wire)
    assert items == [
        Garbage(b"noise", BEFORE_SOH),
        Request("PausePrint"),
        Garbage(b"\r\n", BEFORE_SOH),
        Request("PausePrint"),
    ]


def test_a_request_cut_short_by_a_new_soh_is_garbage_and_the_next_decodes():
    items = RequestFramer().feed(b"\x01FillSerialVar=\x02CO" + encode_request("ResumePrint"))
    assert items == [Garbage(b"\x01FillSerialVar=\x02CO", CUT_SHORT), Request("ResumePrint")]


def test_an_unparsable_request_is_garbage_with_its_bytes():
    items = RequestFramer().feed(b"\x01Fill=\x02x\x03y\x17")
    assert items == [Garbage(b"\x01Fill=\x02x\x03y\x17", "bytes after a quoted value")]


def test_overlong_requests_are_dropped_and_the_buffer_stays_bounded():
    framer = RequestFramer(max_length=16)
    items = framer.feed(b"\x01FillSerialVar=\x02" + b"9" * 40)
    assert items == [Garbage(b"\x01FillSerialVar=\x02" + b"9" * 40, "request longer than 16 bytes")]
    assert framer.pending == 0
    # The rest of the long request is outside any request; the next request decodes.
    assert framer.feed(b"99\x03\x17\x01PausePrint\x17") == [Garbage(b"99\x03\x17", BEFORE_SOH), Request("PausePrint")]
    # A complete request over the limit is refused too.
    assert framer.feed(encode_request("Fill", [quoted(b"x" * 20)]))[0].reason == "request longer than 16 bytes"


def test_request_framer_keeps_a_partial_request_and_reset_forgets_it():
    framer = RequestFramer()
    assert framer.feed(b"\x01PausePr") == []
    assert framer.pending == 8
    framer.reset()
    assert framer.feed(b"int\x17") == [Garbage(b"int\x17", BEFORE_SOH)]
    with pytest.raises(ValueError, match="too small"):
        RequestFramer(max_length=2)


def test_answer_resynchronises_on_answer_within_a_line():
    items = AnswerFramer().feed(b"\x15\x00junkAnswerSerialVar=CODE,0,1\r\n")
    assert items == [Garbage(b"\x15\x00junk", BEFORE_ANSWER), Answer("SerialVar", (b"CODE", b"0", b"1"))]


@pytest.mark.parametrize("line", [b"hello", b"AnswerSerialVar", b"Answer=1", b"Answer Bad=1", b"AnswerX=\x02"])
def test_lines_that_are_no_answer_are_garbage(line):
    items = AnswerFramer().feed(line + b"\n" + b"AnswerPausePrint=1\n")
    assert isinstance(items[-2], Garbage)
    assert items[-2].reason in (NOT_AN_ANSWER, BEFORE_ANSWER)
    assert items[-1] == Answer("PausePrint", (b"1",))


def test_overlong_answer_line_is_garbage():
    framer = AnswerFramer(max_length=20)
    items = framer.feed(b"AnswerSerialVar=" + b"9" * 20 + b"\nAnswerPausePrint=1\n")
    assert isinstance(items[0], Garbage)
    assert items[-1] == Answer("PausePrint", (b"1",))
    assert framer.pending == 0
    framer.feed(b"Answer")
    framer.reset()
    assert framer.pending == 0


# Properties

NAMES = st.from_regex(r"[A-Za-z][A-Za-z0-9_]{0,12}", fullmatch=True)
VALUES = st.binary(max_size=24).map(lambda b: bytes(c for c in b if c not in b"\x01\x02\x03\x17"))
ARGS = st.one_of(
    VALUES.map(quoted),
    VALUES.map(lambda v: bare(v.replace(b",", b""))),
)
REQUESTS = st.builds(Request, NAMES, st.lists(ARGS, max_size=4).map(tuple))
ANSWER_VALUES = st.binary(max_size=16).map(lambda b: bytes(c for c in b if c not in b",\r\n\x01\x02\x03\x17"))
ANSWERS = st.builds(Answer, NAMES, st.lists(ANSWER_VALUES, min_size=1, max_size=5).map(tuple))


def _chunks(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


@given(st.lists(REQUESTS, max_size=6), st.lists(st.integers(min_value=0), max_size=8))
def test_requests_survive_any_split(requests, cuts):
    wire = b"".join(encode_request(r.command, r.args) for r in requests)
    framer = RequestFramer()
    assert feed_all(framer, _chunks(wire, cuts)) == requests
    assert framer.pending == 0


@given(st.lists(ANSWERS, max_size=6), st.lists(st.integers(min_value=0), max_size=8), st.sampled_from([b"\n", b"\r\n"]))
def test_answers_survive_any_split(answers, cuts, terminator):
    wire = b"".join(encode_answer(a.command, a.values, terminator=terminator) for a in answers)
    framer = AnswerFramer()
    assert feed_all(framer, _chunks(wire, cuts)) == answers
    assert framer.pending == 0


@given(st.lists(REQUESTS, min_size=1, max_size=4), st.binary(min_size=1, max_size=30), st.integers(min_value=0))
def test_garbage_between_requests_is_reported_and_later_requests_decode(requests, noise, where):
    wires = [encode_request(r.command, r.args) for r in requests]
    at = where % len(wires)
    # Noise may start a request (SOH) that the next SOH cuts short; a lone ETB in noise ends nothing.
    wire = b"".join(wires[:at]) + noise + b"".join(wires[at:])
    items = RequestFramer().feed(wire)
    decoded = only_frames(items)
    assert decoded[: at] == requests[:at]
    assert decoded[len(decoded) - (len(requests) - at) :] == requests[at:]
    if b"\x01" not in noise:
        assert any(isinstance(item, Garbage) for item in items)


@given(st.lists(ANSWERS, min_size=1, max_size=4), st.binary(min_size=1, max_size=30), st.integers(min_value=0))
def test_garbage_lines_between_answers_are_reported_and_later_answers_decode(answers, noise, where):
    wires = [encode_answer(a.command, a.values) for a in answers]
    at = where % len(wires)
    noise = noise.replace(b"Answer", b"") + b"\n"
    items = AnswerFramer().feed(b"".join(wires[:at]) + noise + b"".join(wires[at:]))
    decoded = only_frames(items)
    assert decoded[:at] == answers[:at]
    assert decoded[len(decoded) - (len(answers) - at) :] == answers[at:]


@given(st.lists(st.binary(max_size=40), max_size=12))
def test_arbitrary_bytes_never_raise_and_stay_bounded(chunks):
    requests, answers = RequestFramer(max_length=32), AnswerFramer(max_length=32)
    for chunk in chunks:
        for item in requests.feed(chunk):
            assert isinstance(item, Request | Garbage)
        for item in answers.feed(chunk):
            assert isinstance(item, Answer | Garbage)
        assert requests.pending < 32
        assert answers.pending <= 32 + 40


@given(REQUESTS, st.integers(min_value=0), st.integers(min_value=1, max_value=255))
def test_a_corrupted_request_never_decodes_as_a_different_request(request, offset, mask):
    # No checksum in this dialect: a flipped byte may still decode, but only as what its bytes now say,
    # never by mistake as the original (the framer never "repairs").
    wire = bytearray(encode_request(request.command, request.args))
    wire[offset % len(wire)] ^= mask
    for item in RequestFramer().feed(bytes(wire)):
        if isinstance(item, Request):
            assert item != request
            assert encode_request(item.command, item.args) in bytes(wire)


def test_arg_defaults_to_quoted():
    assert Arg(b"x") == quoted(b"x")
