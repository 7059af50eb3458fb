"""Videojet 1000-line "WSI" framing, both directions, resynchronising on garbage (protocols.md §1.1).

Host → printer: ``STX <cmd: 1 ASCII char> <data fields joined by LF> ETX [CK]`` where CK is two uppercase hex
digits of ``sum(cmd + data) mod 256`` (STX and ETX excluded) and may be left out [C].
Printer → host: ``$XX`` (ACK) or ``!XX`` (NAK), XX the checksum of the command received, or a data reply
``STX <text> ETX`` with no checksum [C].

Two pure decoding steps (`decode_request`, `decode_reply`) report how many bytes they consumed and what
they were; `WsiRequestFramer` (the simulator's side) and `WsiReplyFramer` (the driver's side) are the small
stateful wrappers fed with whatever chunks a link delivers. The ``encode_*`` functions build both directions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final, Literal, NamedTuple

from drivers.framing.base import Garbage, decode_all

STX: Final = 0x02
ETX: Final = 0x03
LF: Final = b"\n"
ACK_MARK: Final = ord("$")
NAK_MARK: Final = ord("!")

DEFAULT_MAX_LENGTH: Final = 4096
"""Longest command data or reply text accepted: a GS1 DataMatrix holds at most 3116 digits, with room for a
field name and message text."""

# Garbage reasons, one constant each so tests and the simulator can tell them apart.
NO_FRAME_START: Final = "no frame start"
CUT_SHORT: Final = "frame cut short by a new STX"
TOO_LONG: Final = "frame longer than the maximum length"
EMPTY_FRAME: Final = "frame without a command"
BAD_CHECKSUM: Final = "bad checksum"
MISSING_CHECKSUM: Final = "missing checksum"
LATE_BAD_CHECKSUM: Final = "bad checksum after a frame already taken without one"
BAD_ACK: Final = "ACK or NAK without two hex digits"

ChecksumMode = Literal["required", "optional", "none"]
"""How a device reads the checksum after ETX: always there, there or not (accept both), never there."""

_HEX: Final = frozenset(b"0123456789ABCDEFabcdef")
_REPLY_STARTS: Final = bytes((STX, ACK_MARK, NAK_MARK))


def checksum(body: bytes) -> int:
    """Return the WSI checksum of a command and its data: the sum of their bytes mod 256."""
    return sum(body) & 0xFF


@dataclass(frozen=True, slots=True)
class Request:
    """One host command as the printer received it."""

    command: str
    """The one-letter command (``M``, ``U``, ``E``...)."""
    data: bytes = b""
    """Everything between the command letter and ETX: the data fields joined by LF."""
    checksum: int | None = field(default=None, compare=False)
    """The checksum the host sent (already verified), None when it sent none."""

    @property
    def body(self) -> bytes:
        """The bytes the checksum covers: command letter and data."""
        return self.command.encode("latin-1") + self.data

    @property
    def fields(self) -> tuple[bytes, ...]:
        """The data fields (split at LF); empty when the command has no data."""
        return tuple(self.data.split(LF)) if self.data else ()

    @property
    def raw(self) -> bytes:
        """The frame as bytes, with its checksum when it carried one."""
        return _frame(self.body) + (b"%02X" % self.checksum if self.checksum is not None else b"")


@dataclass(frozen=True, slots=True)
class Ack:
    """``$XX``: the printer took the command whose checksum is XX."""

    checksum: int

    @property
    def raw(self) -> bytes:
        """The acknowledgement as bytes."""
        return encode_ack(self.checksum)


@dataclass(frozen=True, slots=True)
class Nak:
    """``!XX``: the printer refused the command whose checksum is XX."""

    checksum: int

    @property
    def raw(self) -> bytes:
        """The refusal as bytes."""
        return encode_nak(self.checksum)


@dataclass(frozen=True, slots=True)
class Reply:
    """``STX text ETX``: a data reply (status, counter, message name, part number)."""

    text: bytes

    @property
    def raw(self) -> bytes:
        """The reply as bytes."""
        return _frame(self.text)


Answer = Ack | Nak | Reply
"""Anything the printer sends the host."""


class RequestStep(NamedTuple):
    """One decoding step: bytes consumed (0: more needed), what they were (None: nothing to report)."""

    consumed: int
    item: Request | Garbage | None


class ReplyStep(NamedTuple):
    """One decoding step: bytes consumed (0: more needed), what they were (None: nothing to report)."""

    consumed: int
    item: Answer | Garbage | None


# -- encoders ---------------------------------------------------------------------------------------


def encode_request(command: str, *fields: str | bytes, with_checksum: bool = True) -> bytes:
    """Return one host command frame; ValueError for what could not be decoded back as sent."""
    if len(command) != 1 or not command.isascii() or ord(command) in (STX, ETX, 0x0A) or not command.isprintable():
        raise ValueError(f"a WSI command is one printable ASCII letter, not {command!r}")
    parts = [_ascii(f) for f in fields]
    for part in parts:
        if any(b in part for b in (STX, ETX, 0x0A)):
            raise ValueError(f"a WSI data field cannot contain STX, ETX or LF: {part!r}")
    data = LF.join(parts)
    if len(data) > DEFAULT_MAX_LENGTH:
        raise ValueError(f"command data of {len(data)} bytes is longer than {DEFAULT_MAX_LENGTH}")
    body = command.encode("ascii") + data
    return _frame(body) + (b"%02X" % checksum(body) if with_checksum else b"")


def encode_ack(check: int) -> bytes:
    """Return the printer's acknowledgement of the command with this checksum."""
    return b"$%02X" % _byte(check)


def encode_nak(check: int) -> bytes:
    """Return the printer's refusal of the command with this checksum."""
    return b"!%02X" % _byte(check)


def encode_reply(text: str | bytes) -> bytes:
    """Return one data reply frame; ValueError if text holds STX or ETX or is too long."""
    data = _ascii(text)
    if STX in data or ETX in data:
        raise ValueError(f"a WSI reply cannot contain STX or ETX: {data!r}")
    if len(data) > DEFAULT_MAX_LENGTH:
        raise ValueError(f"reply of {len(data)} bytes is longer than {DEFAULT_MAX_LENGTH}")
    return _frame(data)


# -- decoding steps ---------------------------------------------------------------------------------


def decode_request(
    buffer: bytes | bytearray,
    *,
    start: int = 0,
    mode: ChecksumMode = "optional",
    max_length: int = DEFAULT_MAX_LENGTH,
    final: bool = False,
) -> RequestStep:
    """Decode at most one host command from buffer[start:]; consumed 0 means more bytes are needed.

    In "optional" mode a frame whose ETX ends the buffer (or is followed by one hex digit only) is taken
    without a checksum only when ``final`` says no more bytes are coming now; otherwise the step waits.
    """
    if buffer[start] != STX:
        return RequestStep(*_skip_to(buffer, start, bytes((STX,))))
    framed, body = _framed(buffer, start, max_length + 1)
    if not isinstance(body, bytes):
        return RequestStep(framed, body)
    if not body:
        return RequestStep(framed, Garbage(b"", EMPTY_FRAME))
    if mode == "none":
        return RequestStep(framed, _request(body, None))
    return _checked(buffer[start + framed : start + framed + 2], framed, body, mode, final=final)


def decode_reply(buffer: bytes | bytearray, *, start: int = 0, max_length: int = DEFAULT_MAX_LENGTH) -> ReplyStep:
    """Decode at most one printer answer from buffer[start:]; consumed 0 means more bytes are needed."""
    first = buffer[start]
    if first in (ACK_MARK, NAK_MARK):
        digits = bytes(buffer[start + 1 : start + 3])
        if not all(b in _HEX for b in digits):
            return ReplyStep(1, Garbage(bytes(buffer[start : start + 1]), BAD_ACK))
        if len(digits) < 2:
            return ReplyStep(0, None)
        value = int(digits, 16)
        return ReplyStep(3, Ack(value) if first == ACK_MARK else Nak(value))
    if first != STX:
        return ReplyStep(*_skip_to(buffer, start, _REPLY_STARTS))
    framed, text = _framed(buffer, start, max_length)
    return ReplyStep(framed, Reply(text) if isinstance(text, bytes) else text)


# -- stateful wrappers ------------------------------------------------------------------------------


class WsiRequestFramer:
    """The printer's side: feed it what the host sent, get its commands and garbage back in order."""

    def __init__(self, checksum: ChecksumMode = "optional", max_length: int = DEFAULT_MAX_LENGTH) -> None:
        if max_length < 1:
            raise ValueError(f"max_length must be positive, not {max_length}")
        self.mode: Final = checksum
        self.max_length: Final = max_length
        self._buffer = bytearray()
        self._late: int | None = None
        """Checksum expected right after a frame that was taken without one at the end of a chunk."""

    def feed(self, data: bytes) -> list[Request | Garbage]:
        """Add received bytes; return every command and garbage they complete, in stream order."""
        self._buffer += data
        items: list[Request | Garbage] = []
        start = self._late_checksum(items)
        if start < 0:
            return items
        while start < len(self._buffer):
            step = decode_request(self._buffer, start=start, mode=self.mode, max_length=self.max_length)
            if step.consumed == 0:
                # A whole frame may be waiting only for a checksum that the host may never send: a device
                # that accepts both cannot wait for it, so it takes the frame now and checks a late one.
                step = decode_request(
                    self._buffer, start=start, mode=self.mode, max_length=self.max_length, final=True
                )
                if step.consumed == 0:
                    break
                if isinstance(step.item, Request):
                    self._late = checksum(step.item.body)
                    items.append(step.item)
                    start += step.consumed
                    break  # what is left is the first digit of that checksum, or nothing
            start += step.consumed
            if step.item is not None:
                items.append(step.item)
        del self._buffer[:start]
        return items

    @property
    def pending(self) -> int:
        """Bytes held back waiting for the rest of their frame."""
        return len(self._buffer)

    def reset(self) -> None:
        """Forget any partial frame (after a reconnect, say)."""
        self._buffer.clear()
        self._late = None

    def _late_checksum(self, items: list[Request | Garbage]) -> int:
        """Consume a checksum trailing a frame already taken; return where decoding goes on (-1: wait)."""
        if self._late is None or not self._buffer:
            return 0
        head = bytes(self._buffer[:2])
        if not all(b in _HEX for b in head):
            self._late = None
            return 0
        if len(head) < 2:
            return -1
        expected, self._late = self._late, None
        if int(head, 16) != expected:
            items.append(Garbage(head, LATE_BAD_CHECKSUM))
        return 2


class WsiReplyFramer:
    """The host's side: feed it what the printer sent, get ACKs, NAKs, data replies and garbage back in order."""

    def __init__(self, max_length: int = DEFAULT_MAX_LENGTH) -> None:
        if max_length < 1:
            raise ValueError(f"max_length must be positive, not {max_length}")
        self.max_length: Final = max_length
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[Answer | Garbage]:
        """Add received bytes; return every answer and garbage they complete, in stream order."""
        self._buffer += data
        return decode_all(self._buffer, lambda start: decode_reply(self._buffer, start=start,
                                                                     max_length=self.max_length))

    @property
    def pending(self) -> int:
        """Bytes held back waiting for the rest of their frame."""
        return len(self._buffer)

    def reset(self) -> None:
        """Forget any partial frame (after a reconnect, say)."""
        self._buffer.clear()


# -- inside -----------------------------------------------------------------------------------------


def _frame(body: bytes) -> bytes:
    return bytes((STX,)) + body + bytes((ETX,))


def _request(body: bytes, sent: int | None) -> Request:
    return Request(chr(body[0]), body[1:], sent)


def _ascii(value: str | bytes) -> bytes:
    if isinstance(value, bytes):
        return value
    try:
        return value.encode("ascii")
    except UnicodeEncodeError as err:
        raise ValueError(f"WSI carries ASCII text only: {value!r}") from err


def _byte(value: int) -> int:
    if not 0 <= value <= 0xFF:
        raise ValueError(f"a WSI checksum is one byte, not {value}")
    return value


def _framed(buffer: bytes | bytearray, start: int, max_body: int) -> tuple[int, bytes | Garbage | None]:
    """Read the STX...ETX frame at start: (consumed, body), (consumed, Garbage) or (0, None) for more bytes."""
    end, cut = _find_end(buffer, start)
    if cut >= 0:
        return cut - start, Garbage(bytes(buffer[start + 1 : cut]), CUT_SHORT)
    if end < 0:
        if len(buffer) - start - 1 > max_body:
            return len(buffer) - start, Garbage(bytes(buffer[start + 1 :]), TOO_LONG)
        return 0, None
    body = bytes(buffer[start + 1 : end])
    if len(body) > max_body:
        return end - start + 1, Garbage(body, TOO_LONG)
    return end - start + 1, body


def _checked(after: bytes | bytearray, framed: int, body: bytes, mode: ChecksumMode, *, final: bool) -> RequestStep:
    """Check the checksum in the (up to) two bytes after ETX, as mode says."""
    if len(after) == 2 and all(b in _HEX for b in after):
        if int(after, 16) != checksum(body):
            return RequestStep(framed + 2, Garbage(body, BAD_CHECKSUM))
        return RequestStep(framed + 2, _request(body, int(after, 16)))
    waiting = all(b in _HEX for b in after)  # nothing yet, or one hex digit: the checksum may be on its way
    if mode == "required":
        return RequestStep(0, None) if waiting else RequestStep(framed, Garbage(body, MISSING_CHECKSUM))
    if waiting and not final:
        return RequestStep(0, None)
    return RequestStep(framed, _request(body, None))


def _find_end(buffer: bytes | bytearray, start: int) -> tuple[int, int]:
    """Return (ETX index or -1, index of an STX before it or -1) for the frame starting at start."""
    end = buffer.find(ETX, start + 1)
    restart = buffer.find(STX, start + 1, end if end >= 0 else len(buffer))
    return end, restart


def _skip_to(buffer: bytes | bytearray, start: int, starts: bytes) -> tuple[int, Garbage]:
    """Skip everything up to the next plausible frame start (or the end of what arrived) as garbage."""
    stop = min((i for i in (buffer.find(s, start + 1) for s in starts) if i >= 0), default=len(buffer))
    return stop - start, Garbage(bytes(buffer[start:stop]), NO_FRAME_START)
