"""ZPL II framing, both directions: host→printer label blocks and ~commands, printer→host ~HS status answers.

Host→printer (`ZplFramer`, used by the simulator): the stream is ``^XA ... ^XZ`` label blocks and ``~``
control commands (``~HS``, ``~JA``, ``~PS``, ``~PP``); whitespace between them is ignored, anything else
outside a block is garbage. A block is parsed into its ``^`` commands (`Command`); field data escaped
with ``^FH`` is decoded by `decode_fh`.

Printer→host (`HostStatusFramer`, used by the driver): ``~HS`` answers three lines, each
``STX ... ETX CR LF``; the framer checks each line's fields and yields one `HostStatus` per complete
answer. ZPL has no checksum: a corrupted digit that stays a digit cannot be detected here.

Sources (protocols.md §1.10): block and command syntax, ``^FH`` escapes, ``~HS`` line layout [K + C: a
public integration's test parses the answer STX ``030,1,1,1225,000,0,0,0,000,0,0,0`` ETX CR LF, STX
``001,0,0,1,1,2,6,0,00000100,1,000`` ETX CR LF, STX ``1234,0`` ETX CR LF (Ladder99/ladder99 zebra-test.js)].
ASSUMED: commands are upper case (the lower-case forms printers also accept are not recognised); CR and LF
inside a block are ignored as printers do; a ``~`` command outside a block is ``~`` and two letters or
digits (parameters of ``~`` commands that take them are reported as garbage); line 2 may carry extra
trailing fields on newer firmware (tolerated), line 3 has exactly two.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Final

from drivers.framing.base import Garbage

if TYPE_CHECKING:
    from collections.abc import Sequence

STX: Final = 0x02
ETX: Final = 0x03
START: Final = b"^XA"
END: Final = b"^XZ"
FH_ESCAPE: Final = b"_"
"""The ``^FH`` escape character when the command gives none."""

DEFAULT_MAX_BLOCK: Final = 256 * 1024
"""Longest ``^XA...^XZ`` block accepted: a serial label is well under 1 KiB, a stored format with an embedded
logo (``^GF``) some tens of KiB; a block that long without ``^XZ`` is a broken stream, not a label."""

MAX_STATUS_LINE: Final = 128
"""Longest ``~HS`` line accepted (line 1 is 36 characters)."""

OUTSIDE: Final = "bytes outside a ^XA...^XZ label or ~ command"
OVERLONG_REST: Final = "rest of an overlong label block"
CUT_SHORT: Final = "label block cut short by another ^XA"
OUTSIDE_STATUS: Final = "bytes outside STX...ETX"

_WHITESPACE: Final = b" \t\r\n"
_NAME: Final = re.compile(rb"[A-Za-z0-9]{2}")
_DIGITS: Final = re.compile(r"[0-9]+")


@dataclass(frozen=True, slots=True)
class Command:
    """One ``^`` command of a label block: its two-letter name and its parameters as sent."""

    name: str
    params: bytes


@dataclass(frozen=True, slots=True)
class LabelBlock:
    """One ``^XA...^XZ`` block: the bytes as received and the commands between ^XA and ^XZ."""

    raw: bytes
    commands: tuple[Command, ...]

    def first(self, name: str) -> Command | None:
        """Return the first command called name, or None."""
        return next((c for c in self.commands if c.name == name), None)


@dataclass(frozen=True, slots=True)
class ControlCommand:
    """One ``~`` command outside a block (``~HS``, ``~JA``...), name in upper case."""

    name: str
    raw: bytes


HostItem = LabelBlock | ControlCommand


# -- host → printer -------------------------------------------------------------------------------


class ZplFramer:
    """Splits a host→printer stream into label blocks and control commands, resynchronising on garbage."""

    def __init__(self, max_block: int = DEFAULT_MAX_BLOCK) -> None:
        if max_block < len(START) + len(END):
            raise ValueError(f"max_block must hold at least ^XA^XZ, not {max_block}")
        self.max_block: Final = max_block
        self._buffer = bytearray()
        self._skipping = False
        self._resume = len(START)
        """Where to go on looking for the end of the block the buffer starts with (no quadratic rescans)."""

    def feed(self, data: bytes) -> list[HostItem | Garbage]:
        """Add received bytes; return every block, command and garbage they complete, in stream order."""
        self._buffer += data
        buf = self._buffer
        items: list[HostItem | Garbage] = []
        pos = 0
        while pos < len(buf):
            if self._skipping:
                pos, done = self._skip(buf, pos, items)
                if not done:
                    break
            elif buf.startswith(START, pos):
                step = self._block(buf, pos, items)
                if step == pos:
                    break
                pos = step
            elif buf[pos] == ord("~") and len(buf) - pos < 3:
                break
            elif buf[pos] == ord("~") and _NAME.fullmatch(buf, pos + 1, pos + 3):
                items.append(ControlCommand(bytes(buf[pos + 1 : pos + 3]).decode().upper(), bytes(buf[pos : pos + 3])))
                pos += 3
            else:
                step = self._outside(buf, pos, items)
                if step == pos:
                    break
                pos = step
        del self._buffer[:pos]
        return items

    def reset(self) -> None:
        """Forget any partial block (after a reconnect, say)."""
        self._buffer.clear()
        self._skipping = False
        self._resume = len(START)

    @property
    def pending(self) -> int:
        """Bytes held back waiting for the rest of their block or command."""
        return len(self._buffer)

    def _block(self, buf: bytearray, pos: int, items: list[HostItem | Garbage]) -> int:
        """Take the block starting at pos; return the new position (pos itself: more bytes needed)."""
        edge = _find_edge(buf, pos + self._resume if pos == 0 else pos + len(START))
        if edge < 0:
            if len(buf) - pos > self.max_block:
                # Keep two bytes back: they may be the start of the ^XZ that ends what is skipped.
                cut = len(buf) - 2
                items.append(Garbage(bytes(buf[pos:cut]), _too_long(self.max_block)))
                self._skipping, self._resume = True, len(START)
                return cut
            self._resume = max(len(START), len(buf) - pos - 2)
            return pos
        self._resume = len(START)
        if buf.startswith(START, edge):
            items.append(Garbage(bytes(buf[pos:edge]), CUT_SHORT))
            return edge
        end = edge + len(END)
        raw = bytes(buf[pos:end])
        if len(raw) > self.max_block:
            items.append(Garbage(raw, _too_long(self.max_block)))
        else:
            items.append(LabelBlock(raw, parse_commands(raw[len(START) : -len(END)])))
        return end

    def _skip(self, buf: bytearray, pos: int, items: list[HostItem | Garbage]) -> tuple[int, bool]:
        """Skip the rest of an overlong block; return (new position, whether its end was found)."""
        edge = _find_edge(buf, pos)
        if edge < 0:
            cut = max(pos, len(buf) - 2)
            if cut > pos:
                items.append(Garbage(bytes(buf[pos:cut]), OVERLONG_REST))
            return cut, False
        end = edge + len(END) if buf.startswith(END, edge) else edge
        if end > pos:
            items.append(Garbage(bytes(buf[pos:end]), OVERLONG_REST))
        self._skipping = False
        return end, True

    def _outside(self, buf: bytearray, pos: int, items: list[HostItem | Garbage]) -> int:
        """Skip bytes up to the next plausible start; return the new position (pos: more bytes needed)."""
        nxt = _next_start(buf, pos + 1 if buf[pos] == ord("~") else pos)
        if nxt < 0:
            # A trailing "^" or "^X" may be the start of ^XA split across chunks.
            hold = 2 if buf.endswith(b"^X") else 1 if buf.endswith(b"^") else 0
            nxt = max(pos, len(buf) - hold)
        skipped = bytes(buf[pos:nxt])
        if skipped.strip(_WHITESPACE):
            items.append(Garbage(skipped, OUTSIDE))
        return nxt


def parse_commands(content: bytes) -> tuple[Command, ...]:
    """Split the inside of a block (between ^XA and ^XZ) into its ^ commands; CR and LF are ignored."""
    content = content.replace(b"\r", b"").replace(b"\n", b"")
    return tuple(
        Command(part[:2].decode("latin-1").upper(), part[2:]) for part in content.split(b"^")[1:] if part
    )


def _find_edge(buf: bytearray, start: int) -> int:
    """Return the index of the first ^XZ or ^XA at or after start, or -1."""
    i = buf.find(b"^X", start)
    while i >= 0 and i + 2 < len(buf):
        if buf[i + 2] in b"ZA":
            return i
        i = buf.find(b"^X", i + 1)
    return -1


def _next_start(buf: bytearray, start: int) -> int:
    """Return the index of the next ^XA or ~ at or after start, or -1."""
    found = [i for i in (buf.find(START, start), buf.find(b"~", start)) if i >= 0]
    return min(found) if found else -1


def _too_long(max_block: int) -> str:
    return f"label block longer than {max_block} bytes"


# -- host → printer: encoders -----------------------------------------------------------------------


def encode_control(name: str) -> bytes:
    """Return the ~ command called name (``HS`` → ``~HS``)."""
    if not _NAME.fullmatch(name.encode()):
        raise ValueError(f"a ~ command is two letters or digits, not {name!r}")
    return b"~" + name.upper().encode()


def encode_fh(data: bytes, escape: bytes = FH_ESCAPE) -> bytes:
    """Return data as ^FH field data: every byte but printable ASCII (and not ^, ~ or escape) as escape+hex."""
    unsafe = {ord("^"), ord("~"), escape[0]}
    return b"".join(
        bytes((b,)) if 0x20 <= b < 0x7F and b not in unsafe else escape + b"%02X" % b for b in data
    )


def decode_fh(data: bytes, escape: bytes = FH_ESCAPE) -> bytes:
    """Return ^FH field data with its escape+hex pairs decoded; ValueError on a broken escape."""
    out = bytearray()
    i = 0
    while i < len(data):
        if data[i] == escape[0]:
            pair = data[i + 1 : i + 3]
            if len(pair) != 2 or not all(c in b"0123456789abcdefABCDEF" for c in pair):
                raise ValueError(f"broken ^FH escape at byte {i}: {bytes(data[i : i + 3])!r}")
            out.append(int(pair, 16))
            i += 3
        else:
            out.append(data[i])
            i += 1
    return bytes(out)


def encode_label(format_name: str, fields: Sequence[tuple[int, bytes]], quantity: int = 1) -> bytes:
    """Return one label recalling a stored format: ``^XA^XF<format>^FS`` then ^FN<n>^FH^FD<data>^FS each, ^PQ, ^XZ."""
    if quantity < 1:
        raise ValueError(f"a label is printed at least once, not {quantity} times")
    parts = [START, b"^XF", format_name.encode("ascii"), b"^FS"]
    for number, data in fields:
        parts += [b"^FN%d^FH^FD" % number, encode_fh(data), b"^FS"]
    parts += [b"^PQ%d" % quantity, END]
    return b"".join(parts)


def field_data(commands: Sequence[Command]) -> tuple[tuple[int, bytes], ...]:
    """Return the ^FN-numbered field data of a label, decoding ^FH escapes; ValueError when malformed."""
    fields: list[tuple[int, bytes]] = []
    number: int | None = None
    escape: bytes | None = None
    for command in commands:
        if command.name == "FN":
            text = command.params.decode("latin-1")
            if not _DIGITS.fullmatch(text):
                raise ValueError(f"^FN needs a field number, not {text!r}")
            number = int(text)
        elif command.name == "FH":
            escape = command.params[:1] or FH_ESCAPE
        elif command.name == "FD" and number is not None:
            fields.append((number, command.params if escape is None else decode_fh(command.params, escape)))
        elif command.name == "FS":
            number, escape = None, None
    return tuple(fields)


def field_numbers(commands: Sequence[Command]) -> tuple[int, ...]:
    """Return the ^FN numbers a stored format declares, in order, each once."""
    numbers: list[int] = []
    for command in commands:
        text = command.params.decode("latin-1")
        if command.name == "FN" and _DIGITS.fullmatch(text) and int(text) not in numbers:
            numbers.append(int(text))
    return tuple(numbers)


# -- printer → host: ~HS ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HostStatus:
    """One ``~HS`` answer, every field of its three lines (names as in the ZPL manual)."""

    # line 1: aaa,b,c,dddd,eee,f,g,h,iii,j,k,l
    communication_settings: int = 0
    paper_out: bool = False
    paused: bool = False
    label_length: int = 0
    """Label length in dots."""
    formats_in_buffer: int = 0
    """Formats received and not yet being printed."""
    buffer_full: bool = False
    diagnostic_mode: bool = False
    partial_format: bool = False
    corrupt_ram: bool = False
    under_temperature: bool = False
    over_temperature: bool = False
    # line 2: mmm,n,o,p,q,r,s,t,uuuuuuuu,v,www
    function_settings: int = 0
    head_up: bool = False
    ribbon_out: bool = False
    thermal_transfer: bool = True
    print_mode: str = "0"
    """0 rewind, 1 peel-off, 2 tear-off, 3 cutter, 4 applicator... (one character)."""
    print_width_mode: int = 0
    label_waiting: bool = False
    labels_remaining: int = 0
    """Labels of the current batch (^PQ) still to print."""
    graphics_stored: int = 0
    # line 3: xxxx,y
    password: str = "0000"  # noqa: S105 - the front-panel password as the printer reports it, not a secret of ours
    static_ram: bool = False
    raw: bytes = field(default=b"", compare=False)
    """The three lines as received, framing included."""
    seq: int = field(default=0, compare=False)
    """Which answer this is among those one framer produced (0 first): tells a fresh answer from a stale one."""


def encode_host_status(status: HostStatus) -> bytes:
    """Return the three framed lines a printer sends for ``~HS``."""
    s = status
    lines = (
        (
            f"{s.communication_settings:03d},{s.paper_out:d},{s.paused:d},{s.label_length:04d},"
            f"{s.formats_in_buffer:03d},{s.buffer_full:d},{s.diagnostic_mode:d},{s.partial_format:d},000,"
            f"{s.corrupt_ram:d},{s.under_temperature:d},{s.over_temperature:d}"
        ),
        (
            f"{s.function_settings:03d},0,{s.head_up:d},{s.ribbon_out:d},{s.thermal_transfer:d},{s.print_mode},"
            f"{s.print_width_mode:d},{s.label_waiting:d},{s.labels_remaining:08d},1,{s.graphics_stored:03d}"
        ),
        f"{s.password},{s.static_ram:d}",
    )
    for name, value, most in (
        ("formats_in_buffer", s.formats_in_buffer, 999),
        ("labels_remaining", s.labels_remaining, 99_999_999),
        ("label_length", s.label_length, 9999),
    ):
        if not 0 <= value <= most:
            raise ValueError(f"{name} must be within 0..{most}, not {value}")
    if len(s.print_mode) != 1 or not s.print_mode.isalnum():
        raise ValueError(f"print_mode is one letter or digit, not {s.print_mode!r}")
    return b"".join(b"\x02" + line.encode("ascii") + b"\x03\r\n" for line in lines)


def _number(text: str, what: str) -> int:
    if not _DIGITS.fullmatch(text):
        raise ValueError(f"{what} is not a number: {text!r}")
    return int(text)


def _flag(text: str, what: str) -> bool:
    if text not in ("0", "1"):
        raise ValueError(f"{what} flag is not 0 or 1: {text!r}")
    return text == "1"


def _fields(payload: bytes, least: int, most: int | None, line: int) -> list[str]:
    try:
        fields = payload.decode("ascii").split(",")
    except UnicodeDecodeError as err:
        raise ValueError(f"~HS line {line} is not ASCII") from err
    if len(fields) < least or (most is not None and len(fields) > most):
        expected = f"{least}" if most == least else f"at least {least}"
        raise ValueError(f"~HS line {line} has {len(fields)} fields, not {expected}")
    return fields


def parse_line1(payload: bytes, into: HostStatus = HostStatus()) -> HostStatus:
    """Return into with the fields of ~HS line 1 (framing removed); ValueError when it is not one."""
    f = _fields(payload, 12, None, 1)
    _number(f[8], "unused")
    return replace(
        into,
        communication_settings=_number(f[0], "communication settings"),
        paper_out=_flag(f[1], "paper out"),
        paused=_flag(f[2], "pause"),
        label_length=_number(f[3], "label length"),
        formats_in_buffer=_number(f[4], "formats in receive buffer"),
        buffer_full=_flag(f[5], "buffer full"),
        diagnostic_mode=_flag(f[6], "communications diagnostic mode"),
        partial_format=_flag(f[7], "partial format"),
        corrupt_ram=_flag(f[9], "corrupt RAM"),
        under_temperature=_flag(f[10], "under temperature"),
        over_temperature=_flag(f[11], "over temperature"),
    )


def parse_line2(payload: bytes, into: HostStatus = HostStatus()) -> HostStatus:
    """Return into with the fields of ~HS line 2 (framing removed); ValueError when it is not one."""
    f = _fields(payload, 11, None, 2)
    if len(f[5]) != 1 or not f[5].isalnum():
        raise ValueError(f"print mode is not one letter or digit: {f[5]!r}")
    _number(f[1], "unused")
    _flag(f[9], "format while printing")
    return replace(
        into,
        function_settings=_number(f[0], "function settings"),
        head_up=_flag(f[2], "head up"),
        ribbon_out=_flag(f[3], "ribbon out"),
        thermal_transfer=_flag(f[4], "thermal transfer"),
        print_mode=f[5],
        print_width_mode=_number(f[6], "print width mode"),
        label_waiting=_flag(f[7], "label waiting"),
        labels_remaining=_number(f[8], "labels remaining in batch"),
        graphics_stored=_number(f[10], "graphics stored"),
    )


def parse_line3(payload: bytes, into: HostStatus = HostStatus()) -> HostStatus:
    """Return into with the fields of ~HS line 3 (framing removed); ValueError when it is not one."""
    f = _fields(payload, 2, 2, 3)
    _number(f[0], "password")
    return replace(into, password=f[0], static_ram=_flag(f[1], "static RAM installed"))


_LINE_PARSERS: Final = (parse_line1, parse_line2, parse_line3)


def parse_host_status(lines: Sequence[bytes], *, raw: bytes = b"", seq: int = 0) -> HostStatus:
    """Return the answer the three line payloads (framing removed) make; ValueError when they make none."""
    if len(lines) != len(_LINE_PARSERS):
        raise ValueError(f"a ~HS answer has three lines, not {len(lines)}")
    status = HostStatus(raw=raw, seq=seq)
    for parser, line in zip(_LINE_PARSERS, lines, strict=True):
        status = parser(line, status)
    return status


class HostStatusFramer:
    """Turns the printer→host stream into `HostStatus` answers (three lines each), resynchronising on garbage."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._lines: list[tuple[bytes, bytes]] = []
        """Payload and raw bytes of the lines of the answer under way."""
        self._produced = 0

    @property
    def produced(self) -> int:
        """How many answers this framer has produced; the next one gets this `HostStatus.seq`."""
        return self._produced

    def feed(self, data: bytes) -> list[HostStatus | Garbage]:
        """Add received bytes; return every answer and garbage they complete, in stream order."""
        self._buffer += data
        buf = self._buffer
        items: list[HostStatus | Garbage] = []
        pos = 0
        while pos < len(buf):
            start = buf.find(STX, pos)
            if start < 0:
                self._outside(bytes(buf[pos:]), items)
                pos = len(buf)
                break
            self._outside(bytes(buf[pos:start]), items)
            end = buf.find(ETX, start + 1)
            again = buf.find(STX, start + 1)
            if again >= 0 and (end < 0 or again < end):
                self._broken(bytes(buf[start:again]), "status line cut short by STX", items)
                pos = again
                continue
            if end < 0:
                if len(buf) - start > MAX_STATUS_LINE + 1:
                    # Everything up to the next STX (the overlong line's ETX included) is then outside.
                    self._broken(bytes(buf[start:]), f"status line longer than {MAX_STATUS_LINE} bytes", items)
                    pos = len(buf)
                else:
                    pos = start
                break
            self._line(bytes(buf[start + 1 : end]), bytes(buf[start : end + 1]), items)
            pos = end + 1
        del self._buffer[:pos]
        return items

    def reset(self) -> None:
        """Forget any partial line or answer (after a reconnect, say)."""
        self._buffer.clear()
        self._lines.clear()

    def _line(self, payload: bytes, raw: bytes, items: list[HostStatus | Garbage]) -> None:
        if len(payload) > MAX_STATUS_LINE:
            self._broken(raw, f"status line longer than {MAX_STATUS_LINE} bytes", items)
            return
        expected = len(self._lines)
        try:
            _LINE_PARSERS[expected](payload)
        except ValueError as err:
            if expected == 0:
                items.append(Garbage(raw, f"not a ~HS answer: {err}"))
                return
            # The answer under way is broken; this line may still begin the next one.
            try:
                parse_line1(payload)
            except ValueError:
                self._broken(raw, f"~HS answer broken: {err}", items)
            else:
                self._broken(b"", "~HS answer cut short", items)
                self._lines.append((payload, raw))
            return
        self._lines.append((payload, raw))
        if len(self._lines) == len(_LINE_PARSERS):
            lines, self._lines = self._lines, []
            answer = parse_host_status(
                [p for p, _ in lines], raw=b"".join(r for _, r in lines), seq=self._produced
            )
            self._produced += 1
            items.append(answer)

    def _broken(self, tail: bytes, reason: str, items: list[HostStatus | Garbage]) -> None:
        """Report the answer under way plus tail as garbage and start afresh."""
        data = b"".join(r for _, r in self._lines) + tail
        self._lines.clear()
        if data:
            items.append(Garbage(data, reason))

    @staticmethod
    def _outside(data: bytes, items: list[HostStatus | Garbage]) -> None:
        # CR LF after each ETX (and stray line ends) separate lines; anything else is noise.
        if data.strip(b"\r\n"):
            items.append(Garbage(data, OUTSIDE_STATUS))
