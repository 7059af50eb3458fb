"""Zipher text framing (Videojet CLARiTY): ``CMD|arg1|arg2|`` + CR, both directions, no checksum.

Wire facts (protocols.md §1.2, [C] from a public integration with a Dataflex 6330): a frame is three
upper-case letters, then each argument preceded by ``|`` and a trailing ``|`` after the last one, ended by CR
(0x0D); a frame without arguments is the bare code (``GST``, ``ACK``, ``ERR``). Arguments cannot hold ``|``
or CR; everything else (GS 0x1D included) passes. Text is taken as Latin-1 (ASSUMED: the public sources only
ever send ASCII) so that any byte decodes.

The framer is pure: `ZipherFramer.feed` splits CR-terminated lines (bounded by ``max_length``), skips empty
lines (one public integration sends a CR ahead of every command), and reports a line that is not a frame as
`Garbage`. When noise and a frame share a line (noise without a CR of its own), the frame is recovered from
the first known command or answer code that starts a well-formed frame, and the bytes before it are garbage.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from drivers.framing.base import Garbage
from drivers.framing.line import LineFramer

CR: Final = b"\r"
SEPARATOR: Final = "|"
ENCODING: Final = "latin-1"
"""Every byte is one character: arbitrary input decodes, and GS 0x1D round-trips."""

DEFAULT_MAX_LENGTH: Final = 8192
"""Longest line by default: a record of a few fields each up to a GS1 DataMatrix (3116 digits), or a long job list."""

NOT_A_FRAME: Final = "not a Zipher frame"
BEFORE_A_FRAME: Final = "bytes before a frame"

KNOWN_CODES: Final = frozenset(
    {
        # host → printer (protocols.md §1.2 table)
        "SEL", "SLA", "SLI", "JDU", "JDA", "JDI", "GJN", "GJL", "GJF", "GJD", "PRN", "SST", "GST", "GFT",
        "GWN", "CAF", "CAW", "SHO", "SDO", "SHD", "SCF", "SRC", "SCB", "SID", "SFS", "SNI", "SLR", "SMR",
        "SGM", "DAN", "SAN",
        # printer → host
        "ACK", "ERR", "JOB", "JBL", "JFL", "JDL", "STS", "FLT", "WRN",
    }
)
"""Codes a frame may be recovered from after noise on the same line (any ``[A-Z]{3}`` line is a frame)."""

_FRAME: Final = re.compile(rb"[A-Z]{3}(?:\|.*)?", re.DOTALL)
_CODE: Final = re.compile(r"[A-Z]{3}")
_RESYNC: Final = re.compile(rb"(?:" + b"|".join(sorted(c.encode() for c in KNOWN_CODES)) + rb")(?=\||\Z)")


@dataclass(frozen=True, slots=True)
class ZipherFrame:
    """One frame either way: its three-letter code and its arguments (trailing pipe and CR removed)."""

    code: str
    args: tuple[str, ...] = ()

    @property
    def raw(self) -> bytes:
        """The frame as it is on the wire, without its CR."""
        return _join(self.code, self.args).encode(ENCODING)


def _join(code: str, args: tuple[str, ...]) -> str:
    return code + "".join(SEPARATOR + arg for arg in args) + (SEPARATOR if args else "")


def parse_frame(line: bytes) -> ZipherFrame | None:
    """Return the frame one CR-less line holds, or None when it is not a frame."""
    if not _FRAME.fullmatch(line):
        return None
    text = line.decode(ENCODING)
    rest = text[3:]
    if rest.endswith(SEPARATOR):
        rest = rest[:-1]
    # "CMD|" and "CMD" are both no arguments; "CMD||" is one empty argument (what encode_frame writes).
    return ZipherFrame(text[:3], tuple(rest[1:].split(SEPARATOR)) if rest else ())


def decode_line(line: bytes) -> list[ZipherFrame | Garbage]:
    """Return what one CR-less line holds: nothing (empty), a frame, garbage, or garbage then a frame."""
    if not line:
        return []
    frame = parse_frame(line)
    if frame is not None:
        return [frame]
    found = _RESYNC.search(line, 1)
    if found is not None:
        recovered = parse_frame(line[found.start() :])
        if recovered is not None:
            return [Garbage(line[: found.start()], BEFORE_A_FRAME), recovered]
    return [Garbage(line, NOT_A_FRAME)]


def check_value(value: str, what: str) -> bytes:
    """Return value as wire bytes; ValueError naming what when it holds ``|`` or CR or is not Latin-1."""
    if SEPARATOR in value:
        raise ValueError(f"{what} contains '|', the Zipher argument separator")
    if "\r" in value:
        raise ValueError(f"{what} contains CR, the Zipher frame terminator")
    try:
        return value.encode(ENCODING)
    except UnicodeEncodeError as err:
        raise ValueError(f"{what} holds characters the printer's Latin-1 text cannot carry: {err.reason}") from err


def encode_frame(code: str, *args: str, max_length: int = DEFAULT_MAX_LENGTH) -> bytes:
    """Return ``CODE|a|b|`` + CR (bare ``CODE`` + CR without arguments); ValueError for what would not decode back."""
    if not _CODE.fullmatch(code):
        raise ValueError(f"a Zipher code is three upper-case letters, not {code!r}")
    for number, arg in enumerate(args, 1):
        check_value(arg, f"argument {number} of {code}")
    line = _join(code, args).encode(ENCODING)
    if len(line) > max_length:
        raise ValueError(f"{code} frame of {len(line)} bytes is longer than {max_length}")
    return line + CR


def encode_command(code: str, *args: str, max_length: int = DEFAULT_MAX_LENGTH) -> bytes:
    """Return a host → printer command frame (same format as an answer)."""
    return encode_frame(code, *args, max_length=max_length)


def encode_answer(code: str, *args: str, max_length: int = DEFAULT_MAX_LENGTH) -> bytes:
    """Return a printer → host answer frame (``ACK``, ``ERR`` or data like ``SFS|1024|``)."""
    return encode_frame(code, *args, max_length=max_length)


ACK: Final = encode_answer("ACK")
ERR: Final = encode_answer("ERR")


class ZipherFramer:
    """Stateful splitter: feed it chunks as they arrive, get frames and garbage back in stream order."""

    def __init__(self, max_length: int = DEFAULT_MAX_LENGTH) -> None:
        self.max_length: Final = max_length
        self._lines = LineFramer(CR, max_length)

    def feed(self, data: bytes) -> list[ZipherFrame | Garbage]:
        """Add received bytes; return every frame and garbage they complete, in stream order."""
        items: list[ZipherFrame | Garbage] = []
        for item in self._lines.feed(data):
            if isinstance(item, Garbage):
                items.append(item)  # an overlong line, already bounded by the line framer
            else:
                items += decode_line(item.payload)
        return items

    @property
    def pending(self) -> int:
        """Bytes held back waiting for their CR."""
        return self._lines.pending

    def reset(self) -> None:
        """Forget any partial line (after a reconnect, say)."""
        self._lines.reset()
