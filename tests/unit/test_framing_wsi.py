from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.framing.base import Garbage
from drivers.framing.wsi import (
    BAD_ACK,
    BAD_CHECKSUM,
    CUT_SHORT,
    EMPTY_FRAME,
    LATE_BAD_CHECKSUM,
    MISSING_CHECKSUM,
    NO_FRAME_START,
    TOO_LONG,
    Ack,
    Nak,
    Reply,
    Request,
    WsiReplyFramer,
    WsiRequestFramer,
    checksum,
    decode_reply,
    decode_request,
    encode_ack,
    encode_nak,
    encode_reply,
    encode_request,
)

GS = "\x1d"
GS1_CODE = "0109501101530003" + "17270630" + "10AB-123" + GS + "21XYZ0001"
MODES = ("required", "optional", "none")


def feed_all(framer, chunks):
    items = []
    for chunk in chunks:
        items += framer.feed(chunk)
    return items


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({min(c, len(data)) for c in cuts})
    bounds = [0, *points, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


def frames_only(items):
    return [i for i in items if not isinstance(i, Garbage)]


# -- the byte examples of protocols.md §1.1 ----------------------------------------------------------


def test_print_on_and_off_carry_the_checksums_the_printer_acknowledges():
    # The printer answers $80 to O1 and $7F to O0: 0x4F + 0x31 = 0x80, 0x4F + 0x30 = 0x7F.
    assert encode_request("O", "1") == b"\x02O1\x0380"
    assert encode_request("O", "0") == b"\x02O0\x037F"
    assert checksum(b"O1") == 0x80
    assert checksum(b"O0") == 0x7F
    assert WsiReplyFramer().feed(b"$80$7F") == [Ack(0x80), Ack(0x7F)]


def test_checksum_is_the_byte_sum_mod_256_uppercase_hex():
    body = b"UCODE\n" + GS1_CODE.encode()
    frame = encode_request("U", "CODE", GS1_CODE)
    assert frame == b"\x02" + body + b"\x03" + b"%02X" % (sum(body) % 256)
    assert frame[-2:].isupper() or frame[-2:].isdigit()


def test_without_checksum_the_frame_ends_at_etx():
    assert encode_request("E", with_checksum=False) == b"\x02E\x03"


def test_data_reply_example():
    assert WsiReplyFramer().feed(b"\x0212 MONTH\x03") == [Reply(b"12 MONTH")]
    assert encode_reply("12 MONTH") == b"\x0212 MONTH\x03"


def test_ack_and_nak_encoders():
    assert encode_ack(0x80) == b"$80"
    assert encode_nak(0x0A) == b"!0A"
    assert WsiReplyFramer().feed(b"!0a") == [Nak(0x0A)]


# -- requests (the printer's side) ------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["required", "optional"])
def test_request_round_trip_with_checksum(mode):
    frame = encode_request("U", "CODE", GS1_CODE)
    (item,) = WsiRequestFramer(mode).feed(frame)
    assert item == Request("U", b"CODE\n" + GS1_CODE.encode())
    assert item.checksum == checksum(item.body)
    assert item.fields == (b"CODE", GS1_CODE.encode())
    assert item.raw == frame


@pytest.mark.parametrize("mode", ["optional", "none"])
def test_request_round_trip_without_checksum(mode):
    framer = WsiRequestFramer(mode)
    items = framer.feed(encode_request("M", "SERIAL", with_checksum=False) + encode_request("Q", with_checksum=False))
    assert items == [Request("M", b"SERIAL"), Request("Q")]
    assert [i.checksum for i in items if isinstance(i, Request)] == [None, None]
    assert framer.pending == 0


def test_required_mode_refuses_a_frame_without_checksum():
    items = WsiRequestFramer("required").feed(b"\x02O1\x03\x02O0\x037F")
    assert items == [Garbage(b"O1", MISSING_CHECKSUM), Request("O", b"0")]


def test_a_bad_checksum_is_garbage_never_a_frame():
    assert WsiRequestFramer("required").feed(b"\x02O1\x0381") == [Garbage(b"O1", BAD_CHECKSUM)]
    assert WsiRequestFramer("optional").feed(b"\x02O1\x0381") == [Garbage(b"O1", BAD_CHECKSUM)]


def test_optional_mode_takes_a_frame_at_the_end_of_a_chunk_and_checks_a_late_checksum():
    framer = WsiRequestFramer("optional")
    assert framer.feed(b"\x02O1\x03") == [Request("O", b"1")]
    assert framer.feed(b"8") == []
    assert framer.feed(b"0\x02E\x03") == [Request("E")]
    assert framer.feed(b"00") == [Garbage(b"00", LATE_BAD_CHECKSUM)]


def test_optional_mode_waits_for_the_second_checksum_digit_within_a_chunk():
    framer = WsiRequestFramer("optional")
    assert framer.feed(b"\x02O1\x038") == [Request("O", b"1")]
    assert framer.feed(b"0") == []
    assert framer.pending == 0


def test_none_mode_reads_trailing_hex_as_garbage():
    assert WsiRequestFramer("none").feed(b"\x02O1\x0380") == [Request("O", b"1"), Garbage(b"80", NO_FRAME_START)]


def test_request_garbage_reasons():
    framer = WsiRequestFramer("none", max_length=8)
    items = framer.feed(b"xx\x02\x03\x02O\x02ABCDEFGHIJ\x03\x02E\x03")
    assert items == [
        Garbage(b"xx", NO_FRAME_START),
        Garbage(b"", EMPTY_FRAME),
        Garbage(b"O", CUT_SHORT),
        Garbage(b"ABCDEFGHIJ", TOO_LONG),
        Request("E"),
    ]


def test_an_endless_frame_is_bounded():
    framer = WsiRequestFramer("none", max_length=8)
    assert framer.feed(b"\x02" + b"A" * 20) == [Garbage(b"A" * 20, TOO_LONG)]
    assert framer.pending == 0
    assert framer.feed(b"AAA\x03\x02E\x03") == [Garbage(b"AAA\x03", NO_FRAME_START), Request("E")]


def test_decode_request_step_reports_bytes_consumed():
    assert decode_request(b"\x02E\x0345\x02", mode="required") == (5, Request("E"))
    assert decode_request(b"\x02E\x034", mode="required").consumed == 0
    assert decode_request(b"\x02E\x03", mode="optional").consumed == 0
    assert decode_request(b"\x02E\x03", mode="optional", final=True) == (3, Request("E"))


def test_reset_forgets_a_partial_frame():
    framer = WsiRequestFramer()
    framer.feed(b"\x02UCODE")
    framer.reset()
    assert framer.feed(b"\x02E\x0345") == [Request("E")]


# -- replies (the driver's side) --------------------------------------------------------------------


def test_reply_garbage_is_skipped_up_to_the_next_plausible_start():
    items = WsiReplyFramer().feed(b"noise$7F$G\x02ab\x02cd\x03!80")
    assert items == [
        Garbage(b"noise", NO_FRAME_START),
        Ack(0x7F),
        Garbage(b"$", BAD_ACK),
        Garbage(b"G", NO_FRAME_START),
        Garbage(b"ab", CUT_SHORT),
        Reply(b"cd"),
        Nak(0x80),
    ]


def test_reply_waits_for_the_rest_of_an_ack():
    framer = WsiReplyFramer()
    assert framer.feed(b"$") == []
    assert framer.feed(b"8") == []
    assert framer.feed(b"0") == [Ack(0x80)]
    assert decode_reply(b"$8").consumed == 0


def test_overlong_reply_is_garbage_and_the_next_reply_decodes():
    framer = WsiReplyFramer(max_length=4)
    assert framer.feed(b"\x02ABCDEFG") == [Garbage(b"ABCDEFG", TOO_LONG)]
    assert framer.feed(b"\x03\x02OK\x03") == [Garbage(b"\x03", NO_FRAME_START), Reply(b"OK")]


def test_raw_bytes_of_answers():
    assert Ack(0x7F).raw == b"$7F"
    assert Nak(1).raw == b"!01"
    assert Reply(b"0000001").raw == b"\x020000001\x03"


@pytest.mark.parametrize(
    ("command", "fields"),
    [("", ()), ("OK", ()), ("\x02", ()), ("é", ()), ("U", ("A\nB",)), ("U", ("A\x03",)), ("U", ("é",))],
)
def test_requests_that_would_not_decode_back_are_refused(command, fields):
    with pytest.raises(ValueError, match="WSI"):
        encode_request(command, *fields)


@pytest.mark.parametrize("text", ["A\x03", "\x02", "x" * 5000])
def test_replies_that_would_not_decode_back_are_refused(text):
    with pytest.raises(ValueError, match="reply"):
        encode_reply(text)


def test_bad_framer_settings_are_refused():
    with pytest.raises(ValueError, match="max_length"):
        WsiRequestFramer(max_length=0)
    with pytest.raises(ValueError, match="max_length"):
        WsiReplyFramer(max_length=0)
    with pytest.raises(ValueError, match="checksum"):
        encode_ack(256)


# -- properties -------------------------------------------------------------------------------------

printable = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=24)
requests = st.tuples(st.sampled_from("MUDOEQGRHKT"), st.lists(printable, max_size=3))
cuts = st.lists(st.integers(min_value=0, max_value=400), max_size=8)


def expected_requests(specs) -> list[Request]:
    return [Request(c, "\n".join(f).encode()) for c, f in specs]


def answers():
    return st.one_of(
        st.builds(Ack, st.integers(0, 255)),
        st.builds(Nak, st.integers(0, 255)),
        st.builds(Reply, printable.map(str.encode)),
    )


@given(st.lists(requests, max_size=6), st.sampled_from(MODES), cuts)
def test_any_split_of_a_request_stream_gives_the_same_frames(specs, mode, points):
    data = b"".join(encode_request(c, *f, with_checksum=mode != "none") for c, f in specs)
    items = feed_all(WsiRequestFramer(mode), split(data, points))
    assert items == expected_requests(specs)


@given(st.lists(requests, max_size=6), cuts)
def test_optional_mode_takes_frames_with_and_without_checksum_however_split(specs, points):
    data = b"".join(encode_request(c, *f, with_checksum=i % 2 == 0) for i, (c, f) in enumerate(specs))
    items = feed_all(WsiRequestFramer("optional"), split(data, points))
    assert items == expected_requests(specs)


@given(st.lists(answers(), max_size=8), cuts)
def test_any_split_of_a_reply_stream_gives_the_same_frames(items, points):
    data = b"".join(item.raw for item in items)
    assert feed_all(WsiReplyFramer(), split(data, points)) == items


# Garbage that holds no frame start (and, after a frame whose checksum is optional, starts with no hex digit).
HEX_DIGITS = b"0123456789ABCDEFabcdef"
request_noise = st.binary(min_size=1, max_size=16).filter(lambda b: 0x02 not in b and b[0] not in HEX_DIGITS)
reply_noise = st.binary(min_size=1, max_size=16).filter(lambda b: not set(b) & set(b"\x02$!"))


@given(st.lists(st.tuples(requests, request_noise), min_size=1, max_size=5), st.sampled_from(MODES), cuts)
def test_garbage_between_requests_is_reported_and_the_frames_after_it_decode(pairs, mode, points):
    data = b"".join(encode_request(c, *f, with_checksum=mode != "none") + noise for (c, f), noise in pairs)
    items = feed_all(WsiRequestFramer(mode), split(data, points))
    assert frames_only(items) == expected_requests([spec for spec, _ in pairs])
    garbage = b"".join(i.data for i in items if isinstance(i, Garbage))
    assert garbage == b"".join(noise for _, noise in pairs)


@given(st.lists(st.tuples(answers(), reply_noise), min_size=1, max_size=5), cuts)
def test_garbage_between_replies_is_reported_and_the_frames_after_it_decode(pairs, points):
    data = b"".join(item.raw + noise for item, noise in pairs)
    items = feed_all(WsiReplyFramer(), split(data, points))
    assert frames_only(items) == [item for item, _ in pairs]
    assert b"".join(i.data for i in items if isinstance(i, Garbage)) == b"".join(noise for _, noise in pairs)


@given(requests, st.integers(1, 255), cuts)
def test_a_corrupted_checksum_never_yields_a_frame(spec, delta, points):
    command, fields = spec
    frame = encode_request(command, *fields)
    bad = frame[:-2] + b"%02X" % ((int(frame[-2:], 16) + delta) % 256)
    after = encode_request("E")
    items = feed_all(WsiRequestFramer("required"), split(bad + after, points))
    assert items == [Garbage(bad[1:-3], BAD_CHECKSUM), Request("E")]
    # A printer taking both forms checks the checksum when it arrives with its frame.
    assert WsiRequestFramer("optional").feed(bad + after) == [Garbage(bad[1:-3], BAD_CHECKSUM), Request("E")]


@given(st.binary(max_size=200), st.sampled_from(MODES), cuts)
def test_arbitrary_bytes_give_requests_and_garbage_only(data, mode, points):
    framer = WsiRequestFramer(mode, max_length=32)
    items = feed_all(framer, split(data, points))
    assert all(isinstance(i, Request | Garbage) for i in items)
    assert framer.pending <= 32 + 5


@given(st.binary(max_size=200), cuts)
def test_arbitrary_bytes_give_answers_and_garbage_only(data, points):
    framer = WsiReplyFramer(max_length=32)
    items = feed_all(framer, split(data, points))
    assert all(isinstance(i, Ack | Nak | Reply | Garbage) for i in items)
    assert framer.pending <= 32 + 1
