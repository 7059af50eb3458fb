from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.framing.base import Garbage
from drivers.framing.zipher import (
    ACK,
    BEFORE_A_FRAME,
    ERR,
    NOT_A_FRAME,
    ZipherFrame,
    ZipherFramer,
    check_value,
    decode_line,
    encode_answer,
    encode_command,
    encode_frame,
    parse_frame,
)
from drivers.printer.base import FaultReason, PrinterState, PrintRecord
from drivers.printer.zipher import (
    ErrorState,
    FaultEntry,
    OverallState,
    StateReport,
    parse_entries,
    parse_int,
    parse_names,
    parse_state,
    record_data,
    status_from,
)

GS = "\x1d"
GS1 = "0109501101530003" + "17270630" + "10AB-123" + GS + "21XYZ0001"


def feed_all(framer: ZipherFramer, chunks: list[bytes]) -> list[ZipherFrame | Garbage]:
    items: list[ZipherFrame | Garbage] = []
    for chunk in chunks:
        items += framer.feed(chunk)
    return items


# Byte examples (protocols.md §1.2 and the public integration it cites)


@pytest.mark.parametrize(
    ("frame", "wire"),
    [
        (ZipherFrame("GST"), b"GST\r"),
        (ZipherFrame("ACK"), b"ACK\r"),
        (ZipherFrame("ERR"), b"ERR\r"),
        (ZipherFrame("SEL", ("SERIAL",)), b"SEL|SERIAL|\r"),
        (ZipherFrame("SST", ("3",)), b"SST|3|\r"),
        (ZipherFrame("SMR", ("150",)), b"SMR|150|\r"),
        (ZipherFrame("SHO", ("CODE", "LOT")), b"SHO|CODE|LOT|\r"),
        (ZipherFrame("SFS", ("1024",)), b"SFS|1024|\r"),
        (ZipherFrame("STS", ("3", "0", "SERIAL", "5", "1200")), b"STS|3|0|SERIAL|5|1200|\r"),
        (ZipherFrame("FLT", ("1", "102", "1", "Ink out")), b"FLT|1|102|1|Ink out|\r"),
        (ZipherFrame("JOB", ("SERIAL", "-")), b"JOB|SERIAL|-|\r"),
        (ZipherFrame("SDO", ("",)), b"SDO||\r"),
    ],
)
def test_byte_examples_encode_and_decode(frame, wire):
    assert encode_frame(frame.code, *frame.args) == wire
    assert ZipherFramer().feed(wire) == [frame]
    assert frame.raw == wire[:-1]


def test_ack_and_err_constants():
    assert (ACK, ERR) == (b"ACK\r", b"ERR\r")
    assert encode_command("SCB") == encode_answer("SCB") == b"SCB\r"


def test_gs_passes_in_values():
    wire = encode_command("SDO", GS1)
    assert wire == b"SDO|" + GS1.encode() + b"|\r"
    assert ZipherFramer().feed(wire) == [ZipherFrame("SDO", (GS1,))]


def test_a_missing_trailing_pipe_is_tolerated():
    assert parse_frame(b"SFS|12") == ZipherFrame("SFS", ("12",))
    assert parse_frame(b"SHO|") == ZipherFrame("SHO")
    assert parse_frame(b"SDO||") == ZipherFrame("SDO", ("",))
    assert parse_frame(b"SDO|a||") == ZipherFrame("SDO", ("a", ""))


@pytest.mark.parametrize("line", [b"ack", b"AC", b"ACKK", b"AC|K|", b"ACKX", b"SFS 12"])
def test_lines_that_are_not_frames_are_garbage(line):
    assert decode_line(line) == [Garbage(line, NOT_A_FRAME)]


@pytest.mark.parametrize("junk", [b"1", b" ", b"\x00\xff", b"AC", b"AC|K"])
def test_a_known_code_after_junk_on_the_line_is_recovered(junk):
    assert decode_line(junk + b"ACK") == [Garbage(junk, BEFORE_A_FRAME), ZipherFrame("ACK")]


def test_empty_lines_are_skipped():
    assert ZipherFramer().feed(b"\r\r\rACK\r\r") == [ZipherFrame("ACK")]


def test_noise_on_the_same_line_is_garbage_and_the_frame_is_recovered():
    assert ZipherFramer().feed(b"\x00\xffnoiseSLR|4|\r") == [
        Garbage(b"\x00\xffnoise", BEFORE_A_FRAME),
        ZipherFrame("SLR", ("4",)),
    ]


def test_upper_case_noise_does_not_become_an_unknown_frame():
    assert decode_line(b"HELLO WORLD") == [Garbage(b"HELLO WORLD", NOT_A_FRAME)]


def test_an_overlong_line_is_garbage_and_the_next_frame_decodes():
    framer = ZipherFramer(max_length=64)
    items = framer.feed(b"SDO|" + b"9" * 100 + b"|\rACK\r")
    assert all(isinstance(i, Garbage) for i in items[:-1])
    assert items[-1] == ZipherFrame("ACK")
    assert framer.pending == 0


def test_partial_frames_wait_for_their_cr_and_reset_forgets_them():
    framer = ZipherFramer()
    assert framer.feed(b"SFS|10") == []
    assert framer.pending == 6
    framer.reset()
    assert framer.feed(b"ACK\r") == [ZipherFrame("ACK")]


@pytest.mark.parametrize(("value", "words"), [("A|B", "'|'"), ("A\rB", "CR"), ("€", "Latin-1")])
def test_values_the_protocol_cannot_carry_are_refused_by_name(value, words):
    with pytest.raises(ValueError, match=words):
        check_value(value, "field 'CODE'")
    with pytest.raises(ValueError, match="argument 2 of SDO"):
        encode_command("SDO", "ok", value)


def test_a_record_value_with_a_pipe_names_its_field():
    with pytest.raises(ValueError, match="field 'LOT' of record 7"):
        record_data(PrintRecord(7, (("CODE", "X"), ("LOT", "A|B"))))


def test_encode_refuses_bad_codes_and_overlong_frames():
    with pytest.raises(ValueError, match="three upper-case"):
        encode_frame("sdo")
    with pytest.raises(ValueError, match="longer than 10"):
        encode_frame("SDO", "x" * 20, max_length=10)


# Answer parsers (commands as data)


def test_answer_parsers():
    assert parse_int(("12",)) == 12
    assert parse_int(("-1",)) == -1
    assert parse_state(("3", "1", "SERIAL", "4", "99")) == StateReport(
        OverallState.RUNNING, ErrorState.WARNINGS, "SERIAL", 4, 99
    )
    assert parse_entries(("2", "102", "1", "Ink out", "7", "0", "Odd")) == (
        FaultEntry(102, True, "Ink out"),
        FaultEntry(7, False, "Odd"),
    )
    assert parse_entries(("0",)) == ()
    assert parse_names(("2", "A", "B")) == ("A", "B")


@pytest.mark.parametrize(
    "bad",
    [
        lambda: parse_int(("+1",)),
        lambda: parse_int((" 1",)),
        lambda: parse_int(()),
        lambda: parse_state(("9", "0", "J", "1", "1")),
        lambda: parse_entries(("2", "1", "1", "x")),
        lambda: parse_names(("3", "A")),
    ],
)
def test_malformed_answers_raise_value_error(bad):
    with pytest.raises(ValueError):  # noqa: PT011 - each parser raises ValueError with its own words
        bad()


def test_status_mapping():
    running = StateReport(OverallState.RUNNING, ErrorState.NONE, "SERIAL", 0, 0)
    assert status_from(running, (), ()).state is PrinterState.PRINTING
    ink = FaultEntry(102, True, "Ink out")
    faulted = status_from(StateReport(OverallState.RUNNING, ErrorState.FAULTS, "SERIAL", 0, 0), (ink,), ())
    assert faulted.state is PrinterState.FAULT
    assert faulted.faults == {FaultReason.INK_OUT}
    assert "102 Ink out" in faulted.detail
    unknown = status_from(StateReport(OverallState.OFFLINE, ErrorState.FAULTS, "J", 0, 0), (FaultEntry(5, 0, "x"),), ())
    assert unknown.faults == {FaultReason.OTHER}
    warned = status_from(
        StateReport(OverallState.RUNNING, ErrorState.WARNINGS, "J", 0, 0), (), (FaultEntry(105, True, "empty"),)
    )
    assert (warned.state, warned.faults) == (PrinterState.WARNING, {FaultReason.BUFFER_UNDERRUN})
    def state(overall, job="J"):
        return status_from(StateReport(overall, ErrorState.NONE, job, 0, 0), (), ()).state

    assert state(OverallState.OFFLINE) is PrinterState.READY
    assert state(OverallState.OFFLINE, job="") is PrinterState.STOPPED
    assert state(OverallState.STARTING_UP) is PrinterState.STOPPED


# Properties

codes = st.sampled_from(["ACK", "ERR", "SFS", "SLR", "SNI", "STS", "SDO", "SHO", "GST", "XYZ"])
values = st.text(st.characters(min_codepoint=0, max_codepoint=255, blacklist_characters="|\r"), max_size=12)
frames = st.builds(lambda code, args: ZipherFrame(code, tuple(args)), codes, st.lists(values, max_size=4))
# After noise on the same line a frame is recovered only from a code the protocol has.
known_frames = frames.filter(lambda f: f.code != "XYZ")


def split_at(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


@given(st.lists(frames, max_size=6))
def test_encode_then_feed_round_trips(items):
    wire = b"".join(encode_frame(f.code, *f.args) for f in items)
    assert ZipherFramer().feed(wire) == items


@given(st.lists(frames, max_size=6), st.lists(st.integers(min_value=0), max_size=8))
def test_any_split_gives_the_same_frames(items, cuts):
    wire = b"".join(encode_frame(f.code, *f.args) for f in items)
    assert feed_all(ZipherFramer(), split_at(wire, cuts)) == items


noise = st.binary(max_size=20).map(lambda b: bytes(c for c in b if not (0x41 <= c <= 0x5A or c == 0x7C)))


@given(st.lists(st.tuples(noise, known_frames), max_size=5), st.lists(st.integers(min_value=0), max_size=8))
def test_garbage_between_frames_is_reported_and_frames_after_it_decode(pairs, cuts):
    wire = b"".join(junk + encode_frame(f.code, *f.args) for junk, f in pairs)
    items = feed_all(ZipherFramer(), split_at(wire, cuts))
    assert [i for i in items if isinstance(i, ZipherFrame)] == [f for _, f in pairs]
    reported = b"".join(i.data for i in items if isinstance(i, Garbage))
    assert reported == b"".join(junk.replace(b"\r", b"") for junk, _ in pairs)


@given(st.binary(max_size=300), st.lists(st.integers(min_value=0), max_size=8))
def test_arbitrary_bytes_never_raise(data, cuts):
    framer = ZipherFramer(max_length=64)
    items = feed_all(framer, split_at(data, cuts))
    assert all(isinstance(i, (ZipherFrame, Garbage)) for i in items)
    assert framer.pending <= len(data)


@given(st.binary(max_size=60))
def test_a_frame_after_any_cr_terminated_noise_decodes(junk):
    items = ZipherFramer().feed(junk + b"\rSLR|3|\r")
    assert items[-1] == ZipherFrame("SLR", ("3",))
