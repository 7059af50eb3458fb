"""The Keyence SR framer: CR and STX/ETX framing, OK/ER/data replies, leading ESC, split and garbled input."""

from __future__ import annotations

import pytest

from drivers.framing.base import Garbage
from drivers.framing.keyence_sr import (
    CUT_SHORT,
    ESC,
    ETX,
    OUTSIDE_FRAME,
    STX,
    Command,
    CommandFramer,
    Reply,
    ReplyFramer,
    StxEtxFramer,
    decode_stx_etx,
    encode_command,
    encode_reply,
    error_text,
    parse_reply,
)
from drivers.framing.line import Frame

GS = b"\x1d"
CODE = b"0109501101530003" + b"17270630" + b"10AB-123" + GS + b"21XYZ0001"


@pytest.mark.parametrize(
    ("framing", "esc", "expected"),
    [("CR", False, b"LON\r"), ("CR", True, b"\x1bLON\r"), ("STX/ETX", False, b"\x02LON\x03"),
     ("STX/ETX", True, b"\x1b\x02LON\x03")],
)
def test_command_encoding(framing, esc, expected):
    assert encode_command("LON", framing=framing, esc=esc) == expected


def test_command_arguments_are_comma_separated():
    assert encode_command("WP", "001", "1") == b"WP,001,1\r"
    with pytest.raises(ValueError, match="comma"):
        encode_command("WP", "0,1")


@pytest.mark.parametrize(
    ("payload", "reply"),
    [
        (b"OK,LON", Reply("OK", "LON")),
        (b"OK,KEYENCE,SR-X300,1.00", Reply("OK", "KEYENCE", ("SR-X300", "1.00"))),
        (b"ER,LON,20", Reply("ER", "LON", ("20",))),
        (CODE, Reply("DATA", data=CODE)),
        (b"ERROR", Reply("DATA", data=b"ERROR")),
        (b"OK", Reply("DATA", data=b"OK")),
        (b"ER,LON", Reply("DATA", data=b"ER,LON")),
    ],
)
def test_reply_parsing(payload, reply):
    assert parse_reply(payload) == reply
    assert reply.error == (reply.values[0] if reply.kind == "ER" else None)


@pytest.mark.parametrize("framing", ["CR", "STX/ETX"])
def test_replies_round_trip_split_byte_by_byte(framing):
    replies = [Reply("OK", "LON"), Reply("DATA", data=CODE), Reply("ER", "LOFF", ("00",)), Reply("DATA", data=b"ERROR")]
    stream = b"".join(encode_reply(reply, framing) for reply in replies)
    assert ReplyFramer(framing).feed(stream) == replies
    framer = ReplyFramer(framing)
    assert [item for i in range(len(stream)) for item in framer.feed(stream[i : i + 1])] == replies


def test_data_that_would_decode_as_a_reply_or_break_framing_is_refused():
    with pytest.raises(ValueError, match="reply"):
        encode_reply(Reply("DATA", data=b"OK,LON"))
    with pytest.raises(ValueError, match="CR"):
        encode_reply(Reply("DATA", data=b"A\rB"))
    with pytest.raises(ValueError, match="STX"):
        encode_reply(Reply("DATA", data=b"A\x03B"), "STX/ETX")


def test_stx_etx_garbage_outside_frames_and_cut_short_frames():
    stream = b"noise" + STX + b"HALF" + STX + b"OK,LON" + ETX + b"x" + STX + b"WHOLE" + ETX
    assert StxEtxFramer().feed(stream) == [
        Garbage(b"noise", OUTSIDE_FRAME),
        Garbage(b"HALF", CUT_SHORT),
        Frame(b"OK,LON"),
        Garbage(b"x", OUTSIDE_FRAME),
        Frame(b"WHOLE"),
    ]


def test_stx_etx_waits_for_the_rest_of_a_frame():
    assert decode_stx_etx(STX + b"PART") == (0, None)
    framer = StxEtxFramer()
    assert framer.feed(STX + b"PA") == []
    assert framer.feed(b"RT" + ETX) == [Frame(b"PART")]


def test_stx_etx_overlong_frames_are_garbage():
    framer = StxEtxFramer(max_length=4)
    items = framer.feed(STX + b"TOOLONG" + ETX + STX + b"OK" + ETX)
    assert items[0] == Garbage(b"TOOLONG", "frame longer than 4 bytes")
    assert items[-1] == Frame(b"OK")
    assert StxEtxFramer(max_length=4).feed(STX + b"TOOLONG")[0].reason == "frame longer than 4 bytes"


@pytest.mark.parametrize("framing", ["CR", "STX/ETX"])
def test_the_reader_side_parses_commands_and_esc_clears_a_partial_one(framing):
    framer = CommandFramer(framing)
    half = encode_command("LOFF", framing=framing)[:-1]
    items = framer.feed(half + encode_command("LON", framing=framing, esc=True))
    assert items == [Command("LON")]
    assert framer.feed(encode_command("WP", "001", "2", framing=framing)) == [Command("WP", ("001", "2"))]


def test_esc_split_across_chunks_still_clears():
    framer = CommandFramer("CR")
    assert framer.feed(b"GARB") == []
    assert framer.feed(ESC) == []
    assert framer.feed(b"LON\r") == [Command("LON")]


def test_error_code_wording():
    assert error_text("20") == "not executable in the current state"
    assert error_text("77") == "unknown error code"


def test_unknown_framing_is_refused():
    with pytest.raises(ValueError, match="framing"):
        ReplyFramer("LF")  # type: ignore[arg-type]
