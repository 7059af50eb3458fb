from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.framing.base import Garbage
from drivers.framing.linx_rci import (
    BAD_CHECKSUM,
    COMMAND_WITHOUT_ID,
    CUT_SHORT,
    NOT_A_FRAME,
    SHORT_REPLY,
    Command,
    Frame,
    RciFramer,
    Reply,
    checksum,
    encode,
    encode_command,
    encode_reply,
)

ESC = 0x1B
STATUS_REQUEST = bytes.fromhex("1B 02 14 1B 03 E7")
START_PRINT = bytes.fromhex("1B 02 11 1B 03 EA")


def feed_all(framer: RciFramer, chunks: list[bytes]) -> list[Frame | Garbage]:
    items: list[Frame | Garbage] = []
    for chunk in chunks:
        items += framer.feed(chunk)
    return items


def only_frames(items: list[Frame | Garbage]) -> list[Frame]:
    return [item for item in items if not isinstance(item, Garbage)]


# -- verified examples (protocols.md §1.5 [V]) ----------------------------------------------------


def test_status_request_bytes():
    assert encode_command(0x14) == STATUS_REQUEST


def test_start_print_bytes():
    assert encode_command(0x11) == START_PRINT


@pytest.mark.parametrize("wire", [STATUS_REQUEST, START_PRINT])
def test_verified_examples_decode(wire):
    (frame,) = RciFramer().feed(wire)
    assert frame == Command(wire[2])
    assert isinstance(frame, Command)
    assert frame.raw == wire


def test_checksum_makes_the_covered_sum_zero():
    covered = bytes([0x06, 0x00, 0x00, 0x8D, 0xFF, 0x1B])
    assert (sum(covered) + checksum(covered)) & 0xFF == 0
    assert checksum(b"\x02\x14\x03") == 0xE7


# -- encode / decode ------------------------------------------------------------------------------


def test_reply_round_trip():
    wire = encode_reply(0x8D, b"\x05\x00\x00\x00SERIAL", p_status=1, c_status=0)
    assert RciFramer().feed(wire) == [Reply(True, 1, 0, 0x8D, b"\x05\x00\x00\x00SERIAL")]


def test_nak_round_trip():
    wire = encode_reply(0x1D, ack=False, c_status=0x05)
    assert wire[:2] == b"\x1b\x15"
    assert RciFramer().feed(wire) == [Reply(False, 0, 0x05, 0x1D)]


def test_esc_in_data_is_doubled_and_checksummed_once():
    wire = encode_command(0x1D, b"\x02\x00\x1b\x41")
    assert wire == bytes([ESC, 0x02, 0x1D, 0x02, 0x00, ESC, ESC, 0x41, ESC, 0x03]) + bytes(
        [checksum(b"\x02\x1d\x02\x00\x1b\x41\x03")]
    )
    assert RciFramer().feed(wire) == [Command(0x1D, b"\x02\x00\x1b\x41")]


def test_escaped_control_bytes_are_literal():
    # The sample client also escapes STX/SOH/ETX values; ESC x is x for any x but STX, ETX, ACK, NAK.
    body = b"\x1d\x1b\x01\x1b\x1b\x41"  # cmd 0x1D, then ESC SOH (literal SOH), ESC ESC (literal ESC), 'A'
    unstuffed = b"\x1d\x01\x1b\x41"
    wire = b"\x1b\x02" + body + b"\x1b\x03" + bytes([checksum(b"\x02" + unstuffed + b"\x03")])
    assert RciFramer().feed(wire) == [Command(0x1D, b"\x01\x1b\x41")]


def test_checksum_byte_equal_to_esc_is_not_stuffed():
    # Find data whose checksum is 0x1B: the byte after ESC ETX is taken as it is.
    data = next(bytes([b]) for b in range(256) if checksum(bytes([0x02, 0x1D, b, 0x03])) == ESC)
    wire = encode_command(0x1D, data)
    assert wire[-1] == ESC
    assert wire.count(bytes([ESC, 0x03])) == 1
    framer = RciFramer()
    assert framer.feed(wire + STATUS_REQUEST) == [Command(0x1D, data), Command(0x14)]


def test_encode_of_a_decoded_frame_is_the_wire():
    wire = encode_reply(0x14, bytes(10), p_status=0x1B)
    (frame,) = RciFramer().feed(wire)
    assert not isinstance(frame, Garbage)
    assert encode(frame) == wire


def test_encoders_refuse_values_wider_than_a_byte():
    with pytest.raises(ValueError, match="command id"):
        encode_command(0x100)
    with pytest.raises(ValueError, match="C-status"):
        encode_reply(0x14, c_status=-1)


# -- garbage and resynchronisation ----------------------------------------------------------------


def test_bad_checksum_is_garbage_never_a_frame_and_the_next_frame_decodes():
    bad = bytearray(encode_command(0x1D, b"\x01\x00A"))
    bad[-1] ^= 0x01
    assert RciFramer().feed(bytes(bad) + START_PRINT) == [Garbage(b"\x1d\x01\x00A", BAD_CHECKSUM), Command(0x11)]


def test_bytes_before_a_frame_are_reported():
    assert RciFramer().feed(b"noise" + STATUS_REQUEST) == [Garbage(b"noise", NOT_A_FRAME), Command(0x14)]


def test_lone_bytes_are_reported_at_once_but_a_trailing_esc_waits():
    framer = RciFramer()
    assert framer.feed(b"ab\x1b") == [Garbage(b"ab", NOT_A_FRAME)]
    assert framer.pending == 1
    assert framer.feed(STATUS_REQUEST[1:]) == [Command(0x14)]


def test_double_esc_before_start_is_skipped():
    assert RciFramer().feed(b"\x1b\x1b\x1b\x02\x14\x1b\x03\xe7") == [Garbage(b"\x1b\x1b", NOT_A_FRAME), Command(0x14)]


def test_a_new_frame_start_cuts_the_current_frame_short():
    assert RciFramer().feed(b"\x1b\x02\x1d\x05" + START_PRINT) == [Garbage(b"\x1d\x05", CUT_SHORT), Command(0x11)]


def test_empty_command_and_short_reply_are_garbage():
    empty = b"\x1b\x02\x1b\x03" + bytes([checksum(b"\x02\x03")])
    short = b"\x1b\x06\x00\x00\x1b\x03" + bytes([checksum(b"\x06\x00\x00\x03")])
    assert RciFramer().feed(empty + short) == [Garbage(b"", COMMAND_WITHOUT_ID), Garbage(b"\x00\x00", SHORT_REPLY)]


def test_an_overlong_frame_is_garbage_and_the_buffer_stays_bounded():
    framer = RciFramer(max_length=16)
    items = framer.feed(encode_command(0x1D, b"A" * 40) + START_PRINT)
    assert items[0] == Garbage(b"\x1d" + b"A" * 16, "frame longer than 16 bytes")
    assert items[-1] == Command(0x11)
    assert framer.pending == 0
    framer.feed(b"\x1b\x02" + b"B" * 1000)
    assert framer.pending < 40


def test_reset_forgets_a_partial_frame():
    framer = RciFramer()
    framer.feed(STATUS_REQUEST[:3])
    framer.reset()
    assert framer.feed(START_PRINT) == [Command(0x11)]


def test_max_length_must_hold_a_reply_header():
    with pytest.raises(ValueError, match="max_length"):
        RciFramer(max_length=3)


# -- properties -----------------------------------------------------------------------------------

commands = st.builds(encode_command, st.integers(0, 255), st.binary(max_size=40))
replies = st.builds(
    lambda cmd, data, ack, p, c: encode_reply(cmd, data, ack=ack, p_status=p, c_status=c),
    st.integers(0, 255),
    st.binary(max_size=40),
    st.booleans(),
    st.integers(0, 255),
    st.integers(0, 255),
)
streams = st.lists(st.one_of(commands, replies), min_size=1, max_size=8)
# Noise without ESC: an ESC in noise may look like a frame start and swallow the frame after it (a
# limit of every ESC-framed protocol, not a property the framer can promise).
noise = st.binary(min_size=1, max_size=20).filter(lambda b: ESC not in b)


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


@given(streams, st.lists(st.integers(0, 10_000), max_size=12))
def test_any_split_gives_the_same_frames(wires, cuts):
    data = b"".join(wires)
    whole = RciFramer().feed(data)
    assert not any(isinstance(item, Garbage) for item in whole)
    assert len(whole) == len(wires)
    assert feed_all(RciFramer(), split(data, cuts)) == whole
    assert [encode(frame) for frame in only_frames(whole)] == wires


@given(streams, st.lists(noise, min_size=1, max_size=8), st.lists(st.integers(0, 10_000), max_size=6))
def test_noise_between_frames_is_reported_and_every_frame_still_decodes(wires, noises, cuts):
    data = b"".join(n + w for n, w in zip(noises, wires, strict=False)) + b"".join(wires[len(noises) :])
    items = feed_all(RciFramer(), split(data, cuts))
    assert [encode(frame) for frame in only_frames(items)] == wires
    reported = b"".join(item.data for item in items if isinstance(item, Garbage))
    assert reported == b"".join(noises[: len(wires)])


@given(st.one_of(commands, replies), st.integers(1, 255))
def test_a_corrupted_checksum_never_yields_a_frame(wire, flip):
    bad = wire[:-1] + bytes([wire[-1] ^ flip])
    items = RciFramer().feed(bad)
    assert len(items) == 1
    assert isinstance(items[0], Garbage)
    assert items[0].reason == BAD_CHECKSUM


@given(st.binary(max_size=300), st.lists(st.integers(0, 10_000), max_size=8))
def test_arbitrary_bytes_only_give_frames_or_garbage(data, cuts):
    framer = RciFramer(max_length=64)
    items = feed_all(framer, split(data, cuts))
    assert all(isinstance(item, (Command, Reply, Garbage)) for item in items)
    assert framer.pending <= 2 * 64 + 4
