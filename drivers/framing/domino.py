"""Domino QuickDesign-era text protocol framing: SOH/STX/ETX/ETB requests and ``Answer<Command>=`` reply lines.

Wire format (protocols.md §1.4 b, observed [C] in a public Java integration):

- request (host → printer): ``SOH <Command> ['=' <arg> {',' <arg>}] ETB``, each argument either quoted as
  ``STX <value> ETX`` or bare (``SOH PrintDesign= STX name.Design ETX ,0,0 ETB``);
- answer (printer → host): one text line ``Answer<Command>=<value>{,<value>}`` ended by LF or CRLF.

The dialect has no checksum and no escaping: a value can never contain SOH, STX, ETX or ETB (and an answer
value no comma, CR or LF), so the encoders refuse such values instead of sending something that would not
decode back. Both framers are pure and resynchronise: requests on the next SOH, answers on the next
``Answer`` (bytes before it on the same line, or a line without it, are garbage).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from drivers.framing.base import Garbage
from drivers.framing.line import ANY, CRLF, Frame, LineFramer

if TYPE_CHECKING:
    from collections.abc import Sequence

SOH: Final = b"\x01"
STX: Final = b"\x02"
ETX: Final = b"\x03"
ETB: Final = b"\x17"
CONTROL: Final = frozenset(b"\x01\x02\x03\x17")
"""Bytes that frame a request; no value may contain them."""

ANSWER_PREFIX: Final = b"Answer"

DEFAULT_MAX_LENGTH: Final = 4096
"""Longest request or answer line accepted: a GS1 DataMatrix holds at most 3116 digits, with room for framing."""

_COMMAND: Final = re.compile(rb"[A-Za-z][A-Za-z0-9_]*\Z")

# Garbage reasons, shared with tests.
BEFORE_SOH: Final = "bytes outside a request"
CUT_SHORT: Final = "request cut short by a new SOH"
NOT_AN_ANSWER: Final = "line is not an Answer"
BEFORE_ANSWER: Final = "bytes before Answer"


@dataclass(frozen=True, slots=True)
class Arg:
    """One request argument: quoted (``STX value ETX``) or bare (``,0``)."""

    value: bytes
    quoted: bool = True


@dataclass(frozen=True, slots=True)
class Request:
    """One host → printer command with its arguments."""

    command: str
    args: tuple[Arg, ...] = ()

    @property
    def values(self) -> tuple[bytes, ...]:
        """Return the argument values, quoting removed."""
        return tuple(arg.value for arg in self.args)

    @property
    def raw(self) -> bytes:
        """Return the request as it goes on the wire."""
        return encode_request(self.command, self.args)


@dataclass(frozen=True, slots=True)
class Answer:
    """One printer → host answer line: ``Answer<command>=<values joined by commas>``."""

    command: str
    values: tuple[bytes, ...]

    @property
    def raw(self) -> bytes:
        """Return the answer line without its terminator."""
        return ANSWER_PREFIX + self.command.encode() + b"=" + b",".join(self.values)

    def value(self, index: int) -> bytes | None:
        """Return the value at index, None when the answer is shorter."""
        return self.values[index] if index < len(self.values) else None


def quoted(value: bytes) -> Arg:
    """Return value as a quoted (STX/ETX) argument."""
    return Arg(value, quoted=True)


def bare(value: bytes) -> Arg:
    """Return value as a bare argument."""
    return Arg(value, quoted=False)


def encode_request(command: str, args: Sequence[Arg] = ()) -> bytes:
    """Return the wire bytes of a request; ValueError for a command or value the framing cannot carry."""
    name = _command_bytes(command)
    parts: list[bytes] = []
    for arg in args:
        if CONTROL.intersection(arg.value):
            raise ValueError(f"{command}: a value cannot contain SOH, STX, ETX or ETB: {arg.value!r}")
        if arg.quoted:
            parts.append(STX + arg.value + ETX)
        elif b"," in arg.value:
            raise ValueError(f"{command}: a bare value cannot contain a comma: {arg.value!r}")
        else:
            parts.append(arg.value)
    body = name + (b"=" + b",".join(parts) if parts else b"")
    return SOH + body + ETB


def encode_answer(command: str, values: Sequence[bytes], *, terminator: bytes = CRLF) -> bytes:
    """Return the wire bytes of an answer line; ValueError for a value the line cannot carry."""
    name = _command_bytes(command)
    if terminator not in (b"\n", CRLF):
        raise ValueError(f"an answer ends with LF or CRLF, not {terminator!r}")
    if not values:
        raise ValueError("an answer has at least one value (it may be empty)")
    for value in values:
        if any(byte in value for byte in (b",", b"\r", b"\n")) or CONTROL.intersection(value):
            raise ValueError(f"answer value cannot contain a comma, CR, LF or framing byte: {value!r}")
    return ANSWER_PREFIX + name + b"=" + b",".join(values) + terminator


def decode_request(body: bytes) -> Request | str:
    """Decode the bytes between SOH and ETB; return the request, or why it is not one."""
    command, equals, rest = body.partition(b"=")
    if not _COMMAND.match(command):
        return f"bad command name {command[:32]!r}"
    if not equals:
        return Request(command.decode("ascii"))
    args: list[Arg] = []
    position = 0
    while True:
        step = _decode_arg(rest, position)
        if isinstance(step, str):
            return step
        arg, position = step
        args.append(arg)
        if position >= len(rest):
            return Request(command.decode("ascii"), tuple(args))
        position += 1  # the comma


def _decode_arg(rest: bytes, position: int) -> tuple[Arg, int] | str:
    """Decode the argument at position; return it and where it ends (at a comma or the end), or why not."""
    if rest[position : position + 1] == STX:
        end = rest.find(ETX, position + 1)
        if end < 0:
            return "quoted value without ETX"
        value = rest[position + 1 : end]
        if CONTROL.intersection(value):
            return "framing byte inside a quoted value"
        if end + 1 < len(rest) and rest[end + 1 : end + 2] != b",":
            return "bytes after a quoted value"
        return quoted(value), end + 1
    end = rest.find(b",", position)
    end = len(rest) if end < 0 else end
    value = rest[position:end]
    if CONTROL.intersection(value):
        return "framing byte inside a bare value"
    return bare(value), end


def decode_answer(line: bytes) -> list[Answer | Garbage]:
    """Decode one answer line (terminator removed): the answer, with any bytes before it reported as garbage."""
    start = line.find(ANSWER_PREFIX)
    if start < 0:
        return [Garbage(line, NOT_AN_ANSWER)]
    items: list[Answer | Garbage] = [Garbage(line[:start], BEFORE_ANSWER)] if start else []
    command, equals, rest = line[start + len(ANSWER_PREFIX) :].partition(b"=")
    if not equals or not _COMMAND.match(command) or CONTROL.intersection(rest):
        items.append(Garbage(line[start:], NOT_AN_ANSWER))
    else:
        items.append(Answer(command.decode("ascii"), tuple(rest.split(b","))))
    return items


class RequestFramer:
    """Host → printer requests from a byte stream (the simulator's side); resynchronises on the next SOH."""

    def __init__(self, max_length: int = DEFAULT_MAX_LENGTH) -> None:
        if max_length < 3:
            raise ValueError(f"a request needs at least 3 bytes, max_length {max_length} is too small")
        self.max_length: Final = max_length
        """Longest request accepted, SOH and ETB included."""
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[Request | Garbage]:
        """Add received bytes; return every request and garbage they complete, in stream order."""
        self._buffer += data
        items: list[Request | Garbage] = []
        buffer = self._buffer
        start = 0
        while start < len(buffer):
            soh = buffer.find(SOH, start)
            if soh < 0:
                items.append(Garbage(bytes(buffer[start:]), BEFORE_SOH))
                start = len(buffer)
                break
            if soh > start:
                items.append(Garbage(bytes(buffer[start:soh]), BEFORE_SOH))
            end = _find_first(buffer, soh + 1, (ETB, SOH))
            if end < 0:
                if len(buffer) - soh >= self.max_length:
                    # It cannot end within max_length any more: drop it now so the buffer stays bounded.
                    items.append(Garbage(bytes(buffer[soh:]), self._too_long))
                    start = len(buffer)
                else:
                    start = soh
                break
            if buffer[end : end + 1] == SOH:
                items.append(Garbage(bytes(buffer[soh:end]), CUT_SHORT))
                start = end
                continue
            frame = bytes(buffer[soh : end + 1])
            start = end + 1
            if len(frame) > self.max_length:
                items.append(Garbage(frame, self._too_long))
                continue
            decoded = decode_request(frame[1:-1])
            items.append(decoded if isinstance(decoded, Request) else Garbage(frame, decoded))
        del buffer[:start]
        return items

    @property
    def pending(self) -> int:
        """Bytes held back waiting for the rest of their request."""
        return len(self._buffer)

    def reset(self) -> None:
        """Forget any partial request (after a reconnect, say)."""
        self._buffer.clear()

    @property
    def _too_long(self) -> str:
        return f"request longer than {self.max_length} bytes"


class AnswerFramer:
    """Printer → host answer lines (the driver's side); a line (or its start) that is no Answer is garbage."""

    def __init__(self, max_length: int = DEFAULT_MAX_LENGTH) -> None:
        # "any" line end: LF and CRLF both end an answer, and the empty line between CR and LF is skipped.
        self._lines = LineFramer(ANY, max_length)
        self.max_length: Final = max_length

    def feed(self, data: bytes) -> list[Answer | Garbage]:
        """Add received bytes; return every answer and garbage they complete, in stream order."""
        items: list[Answer | Garbage] = []
        for item in self._lines.feed(data):
            if isinstance(item, Frame):
                items += decode_answer(item.payload)
            else:
                items.append(item)
        return items

    @property
    def pending(self) -> int:
        """Bytes held back waiting for the rest of their line."""
        return self._lines.pending

    def reset(self) -> None:
        """Forget any partial line (after a reconnect, say)."""
        self._lines.reset()


def _command_bytes(command: str) -> bytes:
    name = command.encode("ascii", errors="replace")
    if not _COMMAND.match(name):
        raise ValueError(f"a command is a letter then letters, digits or _, not {command!r}")
    return name


def _find_first(buffer: bytearray, start: int, needles: tuple[bytes, ...]) -> int:
    found = [i for i in (buffer.find(needle, start) for needle in needles) if i >= 0]
    return min(found) if found else -1
