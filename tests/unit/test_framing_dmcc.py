"""The DMCC framer: command headers, checksums, extended and silent answers, split and garbled input."""

from __future__ import annotations

import base64

import pytest

from drivers.framing.base import Garbage
from drivers.framing.dmcc import (
    BAD_HEADER,
    CHECKSUM_MISMATCH,
    NO_HEADER,
    NOT_EXTENDED,
    Command,
    CommandFramer,
    Response,
    ResponseFramer,
    Status,
    encode_command,
    encode_read,
    encode_response,
    parse_command,
    parse_response,
    quote,
    status_text,
    xor,
)

GS = b"\x1d"
CODE = b"0109501101530003" + b"17270630" + b"10AB-123" + GS + b"21XYZ0001"


def test_default_header_and_header_options():
    assert encode_command("TRIGGER ON") == b"||>TRIGGER ON\r\n"
    assert encode_command("GET SYMBOL.DATAMATRIX", command_id=123) == b"||0:123>GET SYMBOL.DATAMATRIX\r\n"
    line = encode_command("TRIGGER ON", checksum=True)
    assert line[:3] == b"||1"
    assert line[:4] == b"||1>"
    assert line[-3] == xor(line[:-3])
    assert encode_command("TRIGGER ON", checksum=True, command_id=7).startswith(b"||1:7>TRIGGER ON")


@pytest.mark.parametrize("text", ["", "A\r\nB", "TRIGGER\nON", "caf\u20ac"])
def test_commands_that_cannot_be_sent(text):
    with pytest.raises(ValueError, match=r"command|character"):
        encode_command(text)


def test_command_ids_out_of_range_are_refused():
    with pytest.raises(ValueError, match="id"):
        encode_command("TRIGGER ON", command_id=70000)


@pytest.mark.parametrize("checksum", [False, True])
@pytest.mark.parametrize("command_id", [None, 0, 42])
def test_commands_round_trip(checksum, command_id):
    line = encode_command("SET COM.DMCC-RESPONSE 1", checksum=checksum, command_id=command_id)
    assert CommandFramer().feed(line) == [Command("SET COM.DMCC-RESPONSE 1", checksum, command_id)]


def test_a_wrong_command_checksum_is_flagged_not_dropped():
    line = bytearray(encode_command("TRIGGER ON", checksum=True, command_id=9))
    line[-3] ^= 0x01
    (command,) = CommandFramer().feed(bytes(line))
    assert isinstance(command, Command)
    assert not command.checksum_ok
    assert command.command_id == 9  # the reader answers status 103 to this id


def test_command_words_are_case_insensitive_in_the_name():
    assert Command("trigger ON").words() == ["TRIGGER", "ON"]


def test_lines_without_a_header_are_garbage():
    assert parse_command(b"TRIGGER ON") == Garbage(b"TRIGGER ON", NO_HEADER)
    assert parse_command(b"||x>TRIGGER ON") == Garbage(b"||x>TRIGGER ON", BAD_HEADER)


@pytest.mark.parametrize("checksum", [False, True])
@pytest.mark.parametrize("command_id", [None, 5])
@pytest.mark.parametrize("status", [Status.OK, Status.READ, Status.INVALID_PARAMETER, Status.UNAVAILABLE])
def test_extended_answers_round_trip(checksum, command_id, status):
    data = encode_read(CODE, mode="extended") if status in (Status.OK, Status.READ) else b""
    line = encode_response(data, mode="extended", status=status, checksum=checksum, command_id=command_id)
    assert ResponseFramer("extended").feed(line) == [Response(data, status, checksum, command_id)]


def test_the_manuals_examples_parse():
    assert parse_response(b"||[0]ON", "extended") == Response(b"ON", Status.OK)
    assert parse_response(b"||[0]", "extended") == Response(b"", Status.OK)
    assert parse_response(b"||0:123[0]ON", "extended") == Response(b"ON", Status.OK, False, 123)


def test_extended_read_data_is_base64_and_keeps_gs():
    line = encode_response(encode_read(CODE, mode="extended"), mode="extended", command_id=3)
    assert line == b"||0:3[0]" + base64.b64encode(CODE) + b"\r\n"
    (answer,) = ResponseFramer("extended").feed(line)
    assert isinstance(answer, Response)
    assert answer.read_data() == CODE


def test_read_data_that_is_not_base64_is_an_error():
    with pytest.raises(ValueError, match="base64"):
        Response(b"not base64!", Status.OK).read_data()


def test_silent_answers_are_plain_lines():
    framer = ResponseFramer("silent")
    assert framer.feed(CODE + b"\r\nON\r\n") == [Response(CODE), Response(b"ON")]
    assert Response(CODE).read_data() == CODE
    assert encode_response(CODE, mode="silent") == CODE + b"\r\n"


def test_a_wrong_answer_checksum_is_garbage():
    line = bytearray(encode_response(b"ON", mode="extended", checksum=True, command_id=4))
    line[-4] ^= 0x20  # the O of ON
    (item,) = ResponseFramer("extended").feed(bytes(line))
    assert isinstance(item, Garbage)
    assert item.reason == CHECKSUM_MISMATCH


def test_checksum_bytes_equal_to_cr_or_lf_still_frame():
    # Search for commands whose checksum byte is CR and LF: the line must still end at the footer.
    printable = [chr(c) for c in range(0x21, 0x7F)]
    for target in (0x0D, 0x0A):
        texts = (f"GET {a}{b}" for a in printable for b in printable)
        text = next(t for t in texts if encode_command(t, checksum=True)[-3] == target)
        line = encode_command(text, checksum=True)
        assert CommandFramer().feed(line) == [Command(text, checksum=True)]
        answer = encode_response(text.encode(), mode="extended", checksum=True)
        assert ResponseFramer("extended").feed(answer) == [Response(text.encode(), Status.OK, checksum=True)]


def test_split_input_gives_the_same_answers():
    stream = b"".join(
        encode_response(encode_read(code, mode="extended"), mode="extended", command_id=i, checksum=i % 2 == 0)
        for i, code in enumerate([CODE, b"A", b"\x00\xff"])
    )
    whole = ResponseFramer("extended").feed(stream)
    framer = ResponseFramer("extended")
    pieces = [item for i in range(len(stream)) for item in framer.feed(stream[i : i + 1])]
    assert pieces == whole
    assert len(whole) == 3


def test_noise_between_answers_is_reported_and_skipped():
    framer = ResponseFramer("extended")
    items = framer.feed(b"noise\r\n" + encode_response(b"ON", mode="extended", command_id=1))
    assert items == [Garbage(b"noise", NOT_EXTENDED), Response(b"ON", Status.OK, False, 1)]


def test_blank_lines_are_skipped():
    assert ResponseFramer("silent").feed(b"\r\n\r\nX\r\n") == [Response(b"X")]


def test_data_that_would_not_decode_back_is_refused():
    with pytest.raises(ValueError, match="CRLF"):
        encode_response(b"A\r\nB", mode="silent")


def test_status_wording():
    assert status_text(Status.INVALID_COMMAND) == "command invalid"
    assert status_text(777) == "unknown status 777"
    assert Response(b"", Status.REJECTED).is_error
    assert not Response(b"", Status.READ).is_error


def test_quoting_escapes_what_the_manual_lists():
    assert quote('a"b\\c|d\te\rf\ng') == '"a\\"b\\\\c\\|d\\te\\rf\\ng"'
