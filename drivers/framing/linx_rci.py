"""Linx RCI framing: ``ESC STX`` commands and ``ESC ACK``/``ESC NAK`` replies, ESC-stuffed, two's-complement checksum.

Wire format (protocols.md §1.5)::

    command  ESC STX <CmdID> <data...> ESC ETX <CS>
    reply    ESC ACK <P-status> <C-status> <CmdID> <data...> ESC ETX <CS>      (NAK instead of ACK: refused)

- An ESC inside the frame is sent doubled (``ESC ESC``). Decoding is tolerant: ``ESC x`` for any x other
  than STX, ETX, ACK or NAK is the literal x (the public sample client also escapes STX, SOH and ETX).
- CS makes the 8-bit sum of the unstuffed bytes from STX (ACK, NAK) through ETX, framing ESCs excluded,
  zero: ``CS = (0x100 - (sum & 0xFF)) & 0xFF``. Verified: status request ``1B 02 14 1B 03 E7``.
- ASSUMED: the byte after ``ESC ETX`` is always the CS and is never stuffed, even when it is 0x1B. A device
  that did stuff it would cost one stray ESC, reported as garbage, and no frame.
- ``ESC STX``/``ESC ACK``/``ESC NAK`` inside a frame means the frame was cut short: its bytes are garbage and
  decoding restarts at the new frame.

`RciFramer` decodes both directions, so the driver and the simulator share it. Garbage data of a refused
frame (bad checksum, too short, cut short, too long) is its unstuffed content after the start byte, so a
bad command's id is its first byte; skipped bytes outside any frame are reported as they came.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum, auto
from typing import Final

from drivers.framing.base import Garbage

ESC: Final = 0x1B
STX: Final = 0x02
ETX: Final = 0x03
ACK: Final = 0x06
NAK: Final = 0x15
_STARTS: Final = frozenset({STX, ACK, NAK})

DEFAULT_MAX_LENGTH: Final = 4096
"""Longest unstuffed frame content accepted: a remote field record (a GS1 DataMatrix holds at most 3116
digits) with its length and room for several fields; longer is garbage, so the buffer stays bounded."""

BAD_CHECKSUM: Final = "bad checksum"
NOT_A_FRAME: Final = "bytes outside a frame"
CUT_SHORT: Final = "frame cut short by a new frame start"
COMMAND_WITHOUT_ID: Final = "command without a command id"
SHORT_REPLY: Final = "reply shorter than its status bytes and command id"


@dataclass(frozen=True, slots=True)
class Command:
    """A host → printer command: its id and data, stuffing removed."""

    cmd: int
    data: bytes = b""
    raw: bytes = field(default=b"", compare=False, repr=False)
    """The frame as it was on the wire (empty for frames built in code)."""


@dataclass(frozen=True, slots=True)
class Reply:
    """A printer → host reply: ACK (carried out) or NAK (refused, ``c_status`` says why), stuffing removed."""

    ack: bool
    p_status: int
    c_status: int
    cmd: int
    data: bytes = b""
    raw: bytes = field(default=b"", compare=False, repr=False)
    """The frame as it was on the wire (empty for frames built in code)."""


Frame = Command | Reply


def checksum(covered: bytes) -> int:
    """Return the CS byte for the unstuffed bytes from STX (ACK, NAK) through ETX."""
    return (0x100 - (sum(covered) & 0xFF)) & 0xFF


def encode_command(cmd: int, data: bytes = b"") -> bytes:
    """Return the wire bytes of command cmd with data (ESC stuffed, checksum appended)."""
    return _encode(STX, bytes([_byte(cmd, "command id")]) + data)


def encode_reply(cmd: int, data: bytes = b"", *, ack: bool = True, p_status: int = 0, c_status: int = 0) -> bytes:
    """Return the wire bytes of an ACK (or NAK) reply to cmd carrying data."""
    head = bytes([_byte(p_status, "P-status"), _byte(c_status, "C-status"), _byte(cmd, "command id")])
    return _encode(ACK if ack else NAK, head + data)


def encode(frame: Frame) -> bytes:
    """Return the wire bytes of a decoded or built frame."""
    if isinstance(frame, Command):
        return encode_command(frame.cmd, frame.data)
    return encode_reply(frame.cmd, frame.data, ack=frame.ack, p_status=frame.p_status, c_status=frame.c_status)


class _State(Enum):
    HUNT = auto()
    """Outside a frame, looking for ESC."""
    HUNT_ESC = auto()
    """Outside a frame, just after an ESC."""
    BODY = auto()
    BODY_ESC = auto()
    """Inside a frame, just after an ESC."""
    CS = auto()
    """After ESC ETX: the next byte is the checksum."""


class RciFramer:
    """Incremental decoder of RCI frames in both directions, resynchronising on garbage."""

    def __init__(self, max_length: int = DEFAULT_MAX_LENGTH) -> None:
        if max_length < 4:
            raise ValueError(f"max_length must hold at least a reply header and id, not {max_length}")
        self.max_length: Final = max_length
        self._state = _State.HUNT
        self._skipped = bytearray()
        self._start = 0
        self._body = bytearray()
        self._raw = bytearray()

    def feed(self, data: bytes) -> list[Frame | Garbage]:
        """Add received bytes; return every frame and garbage they complete, in stream order."""
        out: list[Frame | Garbage] = []
        for byte in data:
            self._step(byte, out)
        # Report skipped bytes now rather than at the next frame, so noise on a quiet link shows at once;
        # a trailing ESC stays pending, it may start the next frame.
        self._flush_skipped(out)
        return out

    def reset(self) -> None:
        """Forget any partial frame and skipped bytes (after a reconnect, say)."""
        self._state = _State.HUNT
        self._skipped.clear()
        self._body.clear()
        self._raw.clear()

    @property
    def pending(self) -> int:
        """Bytes held back waiting for the rest of their frame."""
        return len(self._raw) + len(self._skipped) + (self._state is _State.HUNT_ESC)

    def _step(self, byte: int, out: list[Frame | Garbage]) -> None:
        state = self._state
        if state is _State.HUNT or state is _State.HUNT_ESC:
            self._hunt(byte, out)
        elif state is _State.CS:
            self._raw.append(byte)
            self._finish(byte, out)
        else:
            self._inside(byte, out)

    def _hunt(self, byte: int, out: list[Frame | Garbage]) -> None:
        if self._state is _State.HUNT:
            if byte == ESC:
                self._state = _State.HUNT_ESC
            else:
                self._skip(byte, out)
        elif byte in _STARTS:
            self._flush_skipped(out)
            self._begin(byte)
        elif byte == ESC:
            self._skip(ESC, out)  # the second ESC may still start a frame
        else:
            self._skip(ESC, out)
            self._skip(byte, out)
            self._state = _State.HUNT

    def _inside(self, byte: int, out: list[Frame | Garbage]) -> None:
        if self._state is _State.BODY:
            self._raw.append(byte)
            if byte == ESC:
                self._state = _State.BODY_ESC
            else:
                self._add(byte, out)
        elif byte in _STARTS:
            out.append(Garbage(bytes(self._body), CUT_SHORT))
            self._begin(byte)
        else:
            self._raw.append(byte)
            if byte == ETX:
                self._state = _State.CS
            else:
                self._state = _State.BODY
                self._add(byte, out)  # ESC ESC is a literal ESC; ESC x is a tolerated literal x

    def _begin(self, start: int) -> None:
        self._start = start
        self._body.clear()
        self._raw[:] = bytes([ESC, start])
        self._state = _State.BODY

    def _add(self, byte: int, out: list[Frame | Garbage]) -> None:
        self._body.append(byte)
        if len(self._body) > self.max_length:
            out.append(Garbage(bytes(self._body), f"frame longer than {self.max_length} bytes"))
            self._body.clear()
            self._raw.clear()
            self._state = _State.HUNT  # the rest of the frame is skipped as bytes outside a frame

    def _finish(self, cs: int, out: list[Frame | Garbage]) -> None:
        body = bytes(self._body)
        raw = bytes(self._raw)
        self._body.clear()
        self._raw.clear()
        self._state = _State.HUNT
        if (self._start + sum(body) + ETX + cs) & 0xFF:
            out.append(Garbage(body, BAD_CHECKSUM))
        elif self._start == STX:
            if body:
                out.append(Command(body[0], body[1:], raw))
            else:
                out.append(Garbage(body, COMMAND_WITHOUT_ID))
        elif len(body) >= 3:
            out.append(Reply(self._start == ACK, body[0], body[1], body[2], body[3:], raw))
        else:
            out.append(Garbage(body, SHORT_REPLY))

    def _skip(self, byte: int, out: list[Frame | Garbage]) -> None:
        self._skipped.append(byte)
        if len(self._skipped) >= self.max_length:
            self._flush_skipped(out)

    def _flush_skipped(self, out: list[Frame | Garbage]) -> None:
        if self._skipped:
            out.append(Garbage(bytes(self._skipped), NOT_A_FRAME))
            self._skipped.clear()


def _encode(start: int, content: bytes) -> bytes:
    stuffed = content.replace(bytes([ESC]), bytes([ESC, ESC]))
    return bytes([ESC, start]) + stuffed + bytes([ESC, ETX, checksum(bytes([start]) + content + bytes([ETX]))])


def _byte(value: int, what: str) -> int:
    if not 0 <= value <= 0xFF:
        raise ValueError(f"{what} must be one byte, not {value}")
    return value
