from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.framing.line import (
    ANY,
    CR,
    CRLF,
    LF,
    OVERLONG_REST,
    Decoded,
    Frame,
    Garbage,
    LineFramer,
    decode_line,
)

GS = b"\x1d"
GS1_CODE = b"]d20109501101530003" + b"17270630" + b"10AB-123" + GS + b"21XYZ0001"


def feed_all(framer: LineFramer, chunks: list[bytes]) -> list[Frame | Garbage]:
    items: list[Frame | Garbage] = []
    for chunk in chunks:
        items += framer.feed(chunk)
    return items


def frames(*payloads: bytes) -> list[Frame | Garbage]:
    return [Frame(p) for p in payloads]


# decode_line: the pure step


def test_decode_needs_more_bytes_without_a_terminator():
    assert decode_line(b"0109501101530003") == Decoded(0, None, False)


def test_decode_one_line_reports_bytes_consumed_including_terminator():
    assert decode_line(b"ABC\r\nDEF") == Decoded(5, Frame(b"ABC"), False)


def test_decode_from_an_offset():
    assert decode_line(b"ABC\r\nDEF\r\n", start=5) == Decoded(5, Frame(b"DEF"), False)


def test_decode_keeps_gs_and_every_other_byte():
    payload = GS1_CODE + b"\x00\xff\r"
    assert decode_line(payload + CRLF) == Decoded(len(payload) + 2, Frame(payload), False)


def test_decode_overlong_line_with_terminator_is_garbage():
    assert decode_line(b"ABCDE\r\nX", max_length=4) == Decoded(7, Garbage(b"ABCDE", "line longer than 4 bytes"), False)


def test_decode_overlong_line_without_terminator_is_garbage_and_skipping_starts():
    step = decode_line(b"ABCDEF\r", max_length=4)
    # The trailing CR may be the first half of CRLF: it stays.
    assert step == Decoded(6, Garbage(b"ABCDEF", "line longer than 4 bytes"), True)


def test_decode_while_skipping_drops_the_rest_of_the_line():
    assert decode_line(b"GH\r\nOK\r\n", max_length=4, skipping=True) == Decoded(4, Garbage(b"GH", OVERLONG_REST), False)
    assert decode_line(b"\r\nOK\r\n", max_length=4, skipping=True) == Decoded(2, None, False)


def test_decode_any_skips_empty_lines():
    assert decode_line(b"\nNEXT", terminator=ANY) == Decoded(1, None, False)


@pytest.mark.parametrize(("data", "expected"), [(b"A\rB", 2), (b"A\nB", 2), (b"A\r\nB", 2)])
def test_decode_any_ends_a_line_at_cr_or_lf(data, expected):
    assert decode_line(data, terminator=ANY) == Decoded(expected, Frame(b"A"), False)


@pytest.mark.parametrize("terminator", [b"", "CRLF"])
def test_bad_configuration_is_refused(terminator):
    with pytest.raises(ValueError, match="terminator"):
        LineFramer(terminator)


def test_max_length_must_be_positive():
    with pytest.raises(ValueError, match="max_length"):
        LineFramer(CRLF, max_length=0)


# LineFramer: the stateful wrapper


@pytest.mark.parametrize("terminator", [CR, LF, CRLF, b"\x03", b"\r\n\r\n"])
def test_every_split_point_gives_the_same_frames(terminator):
    framer = LineFramer(terminator)
    payloads = [GS1_CODE, b"A", b"", b"0109501101530003"]
    stream = b"".join(framer.encode(p) for p in payloads)
    for cut in range(len(stream) + 1):
        fresh = LineFramer(terminator)
        assert feed_all(fresh, [stream[:cut], stream[cut:]]) == frames(*payloads), cut
        assert fresh.pending == 0


def test_every_three_way_split_of_crlf_stream():
    stream = b"AB\r\nC\r\n"
    for i in range(len(stream) + 1):
        for j in range(i, len(stream) + 1):
            framer = LineFramer(CRLF)
            assert feed_all(framer, [stream[:i], stream[i:j], stream[j:]]) == frames(b"AB", b"C"), (i, j)


def test_merged_frames_come_out_in_order():
    framer = LineFramer(CRLF)
    assert framer.feed(b"ONE\r\nTWO\r\nTHREE\r\nFOU") == frames(b"ONE", b"TWO", b"THREE")
    assert framer.feed(b"R\r\n") == frames(b"FOUR")


def test_byte_at_a_time():
    framer = LineFramer(CRLF)
    stream = framer.encode(GS1_CODE) + framer.encode(b"NEXT")
    assert feed_all(framer, [bytes([b]) for b in stream]) == frames(GS1_CODE, b"NEXT")


def test_fixed_crlf_keeps_bare_cr_and_lf_inside_the_payload():
    framer = LineFramer(CRLF)
    assert framer.feed(b"A\rB\nC\r\r\n") == frames(b"A\rB\nC\r")


def test_any_accepts_cr_lf_and_crlf_mixed():
    framer = LineFramer(ANY)
    assert framer.feed(b"ONE\rTWO\nTHREE\r\nFOUR\n\rFIVE\r") == frames(b"ONE", b"TWO", b"THREE", b"FOUR", b"FIVE")


def test_any_with_crlf_split_between_cr_and_lf():
    framer = LineFramer(ANY)
    assert framer.feed(b"ONE\r") == frames(b"ONE")
    assert framer.feed(b"\nTWO\r") == frames(b"TWO")


def test_overlong_line_is_garbage_and_the_next_line_arrives():
    framer = LineFramer(CRLF, max_length=8)
    items = framer.feed(b"X" * 20 + b"\r\nGOOD\r\n")
    assert items == [Garbage(b"X" * 20, "line longer than 8 bytes"), Frame(b"GOOD")]


def test_overlong_line_in_pieces_is_skipped_up_to_the_next_terminator():
    framer = LineFramer(CRLF, max_length=8)
    items = feed_all(framer, [b"0123456789", b"abcdef", b"ghij\r", b"\nGOOD\r\n"])
    garbage = [i for i in items if isinstance(i, Garbage)]
    assert [i for i in items if isinstance(i, Frame)] == frames(b"GOOD")
    assert b"".join(g.data for g in garbage) == b"0123456789abcdefghij"
    assert garbage[0].reason == "line longer than 8 bytes"
    assert all(g.reason == OVERLONG_REST for g in garbage[1:])


def test_buffer_stays_bounded_while_skipping():
    framer = LineFramer(CRLF, max_length=16)
    for _ in range(100):
        framer.feed(b"Z" * 50)
        assert framer.pending <= 16 + 1
    assert framer.feed(b"\r\nOK\r\n")[-1] == Frame(b"OK")


def test_line_exactly_max_length_is_a_frame():
    framer = LineFramer(CRLF, max_length=4)
    assert feed_all(framer, [b"ABCD", b"\r", b"\n"]) == frames(b"ABCD")


def test_fixed_terminator_empty_line_is_an_empty_frame():
    assert LineFramer(LF).feed(b"\n") == frames(b"")


def test_reset_forgets_a_partial_line():
    framer = LineFramer(CRLF)
    framer.feed(b"HALF")
    framer.reset()
    assert framer.feed(b"WHOLE\r\n") == frames(b"WHOLE")


def test_encode_appends_the_terminator():
    assert LineFramer(CR).encode(b"A" + GS + b"B") == b"A\x1dB\r"
    assert LineFramer(ANY).encode(b"A") == b"A\r\n"


@pytest.mark.parametrize(
    ("terminator", "payload"),
    [(CRLF, b"A\r\nB"), (CR, b"A\rB"), (ANY, b"A\nB"), (ANY, b"A\rB"), (ANY, b"")],
)
def test_encode_refuses_what_would_not_decode_back(terminator, payload):
    with pytest.raises(ValueError, match="line"):
        LineFramer(terminator).encode(payload)


def test_encode_refuses_a_payload_ending_in_the_start_of_an_overlapping_terminator():
    with pytest.raises(ValueError, match="terminator"):
        LineFramer(b"\x04\x04").encode(b"A\x04")


def test_encode_refuses_overlong_payload():
    with pytest.raises(ValueError, match="longer"):
        LineFramer(CRLF, max_length=2).encode(b"ABC")


# Properties

TERMINATORS = st.sampled_from([CR, LF, CRLF, b"\x03", b"\x04\x04", ANY])


@st.composite
def stream_in_chunks(draw: st.DrawFn) -> tuple[bytes | str, list[bytes], list[bytes]]:
    terminator = draw(TERMINATORS)
    framer = LineFramer(terminator, max_length=64)
    payload = st.binary(max_size=64).filter(lambda p: _encodable(framer, p))
    payloads = draw(st.lists(payload, max_size=8))
    stream = b"".join(framer.encode(p) for p in payloads)
    cuts = sorted(draw(st.lists(st.integers(0, len(stream)), max_size=10)))
    chunks = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
    return terminator, payloads, chunks


def _encodable(framer: LineFramer, payload: bytes) -> bool:
    try:
        framer.encode(payload)
    except ValueError:
        return False
    return True


@given(stream_in_chunks())
def test_encode_then_feed_in_random_chunks_gives_the_payloads_back(case):
    terminator, payloads, chunks = case
    framer = LineFramer(terminator, max_length=64)
    assert feed_all(framer, chunks) == frames(*payloads)
    assert framer.pending == 0


@given(TERMINATORS, st.lists(st.binary(max_size=40), max_size=12))
def test_any_input_never_breaks_the_framer_and_stays_bounded(terminator, chunks):
    framer = LineFramer(terminator, max_length=16)
    for chunk in chunks:
        for item in framer.feed(chunk):
            if isinstance(item, Frame):
                assert len(item.payload) <= 16
        assert framer.pending <= 16 + 1 + 40


@given(st.sampled_from([CR, LF, CRLF, b"\x03\x04", ANY]), st.binary(max_size=30))
def test_garbage_before_a_good_line_never_hides_the_line(terminator, noise):
    framer = LineFramer(terminator, max_length=16)
    good = framer.encode(b"GOOD")
    # Whatever came before, once a terminator ends it, the next complete line is delivered intact.
    items = framer.feed(noise + (CRLF if terminator == ANY else terminator) + good)
    assert items[-1] == Frame(b"GOOD")
