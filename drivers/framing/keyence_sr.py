"""Keyence SR code readers: ASCII commands (``LON``, ``LOFF``, ``KEYENCE``...) and their replies, CR or STX/ETX framed.

Wire format (protocols.md §2.2) [S + C]:

- commands and replies are ASCII lines, the same on RS-232C and Ethernet; framing is selectable on the reader:
  no header and CR terminator (``"CR"``), or STX header and ETX terminator (``"STX/ETX"``); replies use the
  same framing as commands; an optional ESC before a command clears the reader's receive buffer;
- replies: ``OK,<command>[,<value>...]``, ``ER,<command>,<ee>`` (error code, see `ERROR_TEXT`), and read data:
  the code's bytes as read (or the no-read string, ``ERROR`` by default [K]).

ASSUMED: read data is any line that is neither ``OK,...`` nor ``ER,<command>,<ee>``; a code that itself begins
with ``OK,`` or ``ER,`` would be taken for a reply (GS1 element strings start with digits, so they never do).
Text is latin-1, one byte per character, so GS (0x1D) passes unchanged. In CR framing a read cannot hold CR, in
STX/ETX framing it cannot hold STX or ETX. Bytes outside STX...ETX are garbage; a frame cut short by a new STX is
garbage up to that STX. The reader's 10 s inter-character timeout is the reader's business, not the framer's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal, NamedTuple

from drivers.framing.base import Garbage, decode_all
from drivers.framing.line import CR, DEFAULT_MAX_LENGTH, Frame, LineFramer

Framing = Literal["CR", "STX/ETX"]

STX: Final = b"\x02"
ETX: Final = b"\x03"
ESC: Final = b"\x1b"
ENCODING: Final = "latin-1"

OK: Final = "OK"
ER: Final = "ER"

OUTSIDE_FRAME: Final = "bytes outside STX/ETX"
CUT_SHORT: Final = "frame cut short by a new STX"
EMPTY_COMMAND: Final = "empty command"

ERROR_TEXT: Final[dict[str, str]] = {
    "00": "undefined command",
    "01": "command format mismatch",
    "02": "parameter 1 out of range",
    "03": "parameter 2 out of range",
    "20": "not executable in the current state",
    "21": "buffer overflow",
    "22": "parameter load/save error",
    "23": "busy with AutoID Navigator",
    "99": "hardware fault",
}
"""``ER`` codes as a public integration lists them [C]; the reader's manual is the authority."""


def error_text(code: str) -> str:
    """Return what an ``ER`` code means."""
    return ERROR_TEXT.get(code, "unknown error code")


@dataclass(frozen=True, slots=True)
class Reply:
    """One line from the reader: ``OK``/``ER`` to a command, or read data (kind "DATA", bytes in ``data``)."""

    kind: Literal["OK", "ER", "DATA"]
    command: str = ""
    values: tuple[str, ...] = ()
    """OK: the values after the command; ER: the error code alone."""
    data: bytes = b""

    @property
    def raw(self) -> bytes:
        """Return the line without framing (for logs and garbage reports)."""
        if self.kind == "DATA":
            return self.data
        return ",".join((self.kind, self.command, *self.values)).encode(ENCODING, "replace")

    @property
    def error(self) -> str | None:
        """Return the ER code, None for any other reply."""
        return self.values[0] if self.kind == ER else None


@dataclass(frozen=True, slots=True)
class Command:
    """One host command as the reader sees it: the name and the comma-separated arguments."""

    name: str
    args: tuple[str, ...] = ()

    @property
    def raw(self) -> bytes:
        """Return the command line without framing."""
        return ",".join((self.name, *self.args)).encode(ENCODING, "replace")


class Decoded(NamedTuple):
    """One decoding step: bytes consumed (0: more are needed) and what they were (None: nothing to report)."""

    consumed: int
    item: Frame | Garbage | None


def decode_stx_etx(buffer: bytes | bytearray, *, start: int = 0, max_length: int = DEFAULT_MAX_LENGTH) -> Decoded:
    """Decode at most one STX...ETX frame from buffer[start:]; bytes before an STX are garbage."""
    stx = buffer.find(STX, start)
    if stx != start:
        # Everything up to the next STX (or all of it, when there is none) is outside any frame.
        end = len(buffer) if stx < 0 else stx
        rest = bytes(buffer[start:end])
        return Decoded(len(rest), Garbage(rest, OUTSIDE_FRAME) if rest else None)
    etx = buffer.find(ETX, stx + 1)
    next_stx = buffer.find(STX, stx + 1)
    if next_stx >= 0 and (etx < 0 or next_stx < etx):
        return Decoded(next_stx - stx, Garbage(bytes(buffer[stx + 1 : next_stx]), CUT_SHORT))
    if etx < 0:
        pending = len(buffer) - stx - 1
        if pending > max_length:
            return Decoded(len(buffer) - stx, Garbage(bytes(buffer[stx + 1 :]), _too_long(max_length)))
        return Decoded(0, None)
    payload = bytes(buffer[stx + 1 : etx])
    if len(payload) > max_length:
        return Decoded(etx + 1 - stx, Garbage(payload, _too_long(max_length)))
    return Decoded(etx + 1 - stx, Frame(payload))


class StxEtxFramer:
    """Stateful wrapper around `decode_stx_etx`: feed it chunks, get frames and garbage back in order."""

    def __init__(self, max_length: int = DEFAULT_MAX_LENGTH) -> None:
        if max_length < 1:
            raise ValueError(f"max_length must be positive, not {max_length}")
        self.max_length: Final = max_length
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[Frame | Garbage]:
        """Add received bytes; return every frame and garbage they complete, in stream order."""
        self._buffer += data
        return decode_all(self._buffer, lambda start: decode_stx_etx(self._buffer, start=start,
                                                                       max_length=self.max_length))

    def reset(self) -> None:
        """Forget any partial frame."""
        self._buffer.clear()


class _Payloads:
    """Frames of either framing, as payloads."""

    def __init__(self, framing: Framing, max_length: int) -> None:
        if framing not in ("CR", "STX/ETX"):
            raise ValueError(f'Keyence SR framing is "CR" or "STX/ETX", not {framing!r}')
        self._framer: LineFramer | StxEtxFramer = (
            LineFramer(CR, max_length) if framing == "CR" else StxEtxFramer(max_length)
        )

    def feed(self, data: bytes) -> list[Frame | Garbage]:
        return self._framer.feed(data)

    def reset(self) -> None:
        self._framer.reset()


def frame(payload: bytes, framing: Framing, *, esc: bool = False) -> bytes:
    """Return payload framed; ValueError when it holds a byte the framing reserves."""
    reserved = (CR,) if framing == "CR" else (STX, ETX)
    for byte in reserved:
        if byte in payload:
            raise ValueError(f"{framing} framing cannot carry {byte!r} in a payload")
    prefix = ESC if esc else b""
    return prefix + (payload + CR if framing == "CR" else STX + payload + ETX)


def encode_command(name: str, *args: str, framing: Framing = "CR", esc: bool = False) -> bytes:
    """Return the command line ``name[,arg...]`` framed; ValueError for text that cannot be sent."""
    if not name or any("," in part for part in (name, *args)):
        raise ValueError(f"a command name is non-empty and no part holds a comma: {(name, *args)!r}")
    return frame(_text(",".join((name, *args))), framing, esc=esc)


def encode_reply(reply: Reply, framing: Framing = "CR") -> bytes:
    """Return reply framed as the reader sends it; ValueError for one that would not decode back."""
    if reply.kind == "DATA":
        if parse_reply(reply.data) != reply:
            raise ValueError(f"read data {reply.data!r} would decode as a reply, not as data")
        return frame(reply.data, framing)
    if reply.kind == ER and len(reply.values) != 1:
        raise ValueError("an ER reply carries exactly one error code")
    return frame(_text(",".join((reply.kind, reply.command, *reply.values))), framing)


def parse_reply(payload: bytes) -> Reply:
    """Return the reply one line (framing removed) holds: OK, ER, or read data."""
    parts = payload.split(b",")
    head = parts[0]
    if head == b"OK" and len(parts) >= 2 and parts[1]:
        text = [part.decode(ENCODING) for part in parts[1:]]
        return Reply("OK", text[0], tuple(text[1:]))
    if head == b"ER" and len(parts) == 3 and parts[1]:
        return Reply("ER", parts[1].decode(ENCODING), (parts[2].decode(ENCODING),))
    return Reply("DATA", data=payload)


def parse_command(payload: bytes) -> Command | Garbage:
    """Return the command one line holds, or Garbage when it is empty."""
    if not payload:
        return Garbage(payload, EMPTY_COMMAND)
    name, *args = payload.decode(ENCODING).split(",")
    return Command(name, tuple(args))


class ReplyFramer:
    """The host's side: feed it what the reader sent, get `Reply` values and garbage back in order."""

    def __init__(self, framing: Framing = "CR", max_length: int = DEFAULT_MAX_LENGTH) -> None:
        self._payloads = _Payloads(framing, max_length)

    def feed(self, data: bytes) -> list[Reply | Garbage]:
        """Add received bytes; return every reply and garbage they complete, in stream order."""
        return [
            parse_reply(item.payload) if isinstance(item, Frame) else item
            for item in self._payloads.feed(data)
            if not isinstance(item, Frame) or item.payload  # a bare terminator carries nothing
        ]

    def reset(self) -> None:
        """Forget any partial reply (after a reconnect, say)."""
        self._payloads.reset()


class CommandFramer:
    """The reader's side (the simulator): commands and garbage; an ESC drops whatever came before it unfinished."""

    def __init__(self, framing: Framing = "CR", max_length: int = DEFAULT_MAX_LENGTH) -> None:
        self._payloads = _Payloads(framing, max_length)

    def feed(self, data: bytes) -> list[Command | Garbage]:
        """Add received bytes; return every command and garbage they complete, in stream order."""
        items: list[Command | Garbage] = []
        segments = data.split(ESC)
        for index, segment in enumerate(segments):
            if index:
                self._payloads.reset()  # ESC clears the receive buffer: a partial command is dropped silently
            frames = self._payloads.feed(segment)
            items.extend(parse_command(item.payload) if isinstance(item, Frame) else item for item in frames)
        return items

    def reset(self) -> None:
        """Forget any partial command."""
        self._payloads.reset()


def _text(text: str) -> bytes:
    try:
        return text.encode(ENCODING)
    except UnicodeEncodeError as err:
        raise ValueError(f"character {text[err.start]!r} cannot be sent (one byte per character)") from err


def _too_long(max_length: int) -> str:
    return f"frame longer than {max_length} bytes"
