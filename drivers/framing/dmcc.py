r"""Cognex DataMan Control Commands (DMCC): ``||[cs:id]>`` command lines and the reader's answers, CRLF-terminated.

Wire format (protocols.md §2.1, from the Cognex DMCC overview and the Communications & Programming manual [S]):

- command: ``<header><command>[ <args>]\\r\\n`` with header ``||>`` (defaults) or ``||<checksum>[:<id>]>``;
  checksum 0 (none) or 1 (the last byte before the footer is the XOR of the bytes before it); one command per line;
- answer, extended mode (``SET COM.DMCC-RESPONSE 1``): ``||<checksum>:<id>[<status>]<data>\\r\\n``, the checksum
  format and the id being those of the command answered; read and no-read data are base64 (RFC 2045);
- answer, silent mode (0, the reader's default): the data alone, plain text.

ASSUMED (not in the public pages, to confirm against a reader):

- the XOR covers every byte from the first ``|`` of the header up to the checksum byte, in both directions;
- an answer to a command sent with the default header ``||>`` is ``||[<status>]...`` (the manual's examples),
  and a read the reader makes on its own trigger is ``||[1]<base64>`` (ids and checksum left out);
- silent-mode answers end with CRLF like everything else the reader sends;
- a checksum byte may be any value, CR and LF included: the line ends at the first CRLF, so a checksum CR before
  the footer (``..\\r\\r\\n``) or a checksum LF (``..\\n\\r\\n``) still frames right. Plain (silent) data cannot
  contain CRLF, which the reader's own output format guarantees only if no code holds CRLF.

The layer below is `LineFramer` (CRLF); this module turns lines into `Command`/`Response` values and back,
reporting a line that is neither as `Garbage` with the reason.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from functools import reduce
from typing import Final, Literal

from drivers.framing.base import Garbage
from drivers.framing.line import CRLF, DEFAULT_MAX_LENGTH, Frame, LineFramer

ResponseMode = Literal["silent", "extended"]

HEADER_START: Final = b"||"
HEADER_END: Final = b">"
ENCODING: Final = "latin-1"
"""Commands are ASCII; latin-1 maps received bytes one to one, so nothing received fails to decode."""

MAX_COMMAND_ID: Final = 65535
"""Largest command id the driver sends (ASSUMED: the manual only says "integer"); ids then wrap to 1."""


class Status:
    """Status codes of an extended answer [S]."""

    OK: Final = 0
    READ: Final = 1
    """A read string the reader sent on its own trigger."""
    UNIDENTIFIED: Final = 100
    INVALID_COMMAND: Final = 101
    INVALID_PARAMETER: Final = 102
    BAD_CHECKSUM: Final = 103
    REJECTED: Final = 104
    UNAVAILABLE: Final = 105


STATUS_TEXT: Final[dict[int, str]] = {
    Status.OK: "no error",
    Status.READ: "reader initiated read-string",
    Status.UNIDENTIFIED: "unidentified error",
    Status.INVALID_COMMAND: "command invalid",
    Status.INVALID_PARAMETER: "parameter invalid",
    Status.BAD_CHECKSUM: "checksum incorrect",
    Status.REJECTED: "parameter rejected/altered due to reader state",
    Status.UNAVAILABLE: "reader unavailable",
}

NO_HEADER: Final = "line is not a DMCC command (no ||...> header)"
BAD_HEADER: Final = "malformed DMCC header"
NOT_EXTENDED: Final = "line is not an extended DMCC answer (no ||...[status] header)"
CHECKSUM_MISMATCH: Final = "checksum mismatch"
EMPTY_COMMAND: Final = "command line without a command"

_COMMAND_HEADER: Final = re.compile(rb"\|\|(?:([01])(?::([0-9]{1,9}))?)?>")
_ANSWER_HEADER: Final = re.compile(rb"\|\|(?:([01])?(?::([0-9]{1,9}))?)\[([0-9]{1,4})\]")


@dataclass(frozen=True, slots=True)
class Command:
    """One host command as the reader sees it: the text, the header's options, whether its checksum held."""

    text: str
    checksum: bool = False
    command_id: int | None = None
    checksum_ok: bool = True
    """False when the header asked for a checksum and the byte did not match (the reader answers status 103)."""

    @property
    def raw(self) -> bytes:
        """Return the command text as bytes (for logs and garbage reports)."""
        return self.text.encode(ENCODING, "replace")

    def words(self) -> list[str]:
        """Return the command split at spaces, the command name upper-cased (commands are case-insensitive)."""
        parts = self.text.split(" ")
        return [parts[0].upper(), *parts[1:]] if parts else []


@dataclass(frozen=True, slots=True)
class Response:
    """One line from the reader: an extended answer (status set) or, in silent mode, plain data (status None)."""

    data: bytes
    status: int | None = None
    checksum: bool = False
    command_id: int | None = None

    @property
    def raw(self) -> bytes:
        """Return the data (for logs and garbage reports)."""
        return self.data

    @property
    def is_error(self) -> bool:
        """True for an extended answer with an error status (100 and up)."""
        return self.status is not None and self.status >= Status.UNIDENTIFIED

    def read_data(self) -> bytes:
        """Return the read data: base64-decoded in extended mode, as sent in silent mode; ValueError if not base64."""
        if self.status is None:
            return self.data
        try:
            return base64.b64decode(self.data, validate=True)
        except binascii.Error as err:
            raise ValueError(f"read data is not base64: {err}") from err

    def text(self) -> str:
        """Return the data as text (GET answers)."""
        return self.data.decode(ENCODING)


def status_text(status: int) -> str:
    """Return the manual's wording of a status code."""
    return STATUS_TEXT.get(status, f"unknown status {status}")


def xor(data: bytes) -> int:
    """Return the XOR of every byte of data (the DMCC checksum)."""
    return reduce(lambda a, b: a ^ b, data, 0)


def quote(value: str) -> str:
    r"""Return value as a DMCC string argument: in quotes, with ``"`` ``\\`` ``|`` tab CR LF escaped."""
    escaped = (
        value.replace("\\", "\\\\").replace('"', '\\"').replace("|", "\\|")
        .replace("\t", "\\t").replace("\r", "\\r").replace("\n", "\\n")
    )
    return f'"{escaped}"'


def encode_command(text: str, *, checksum: bool = False, command_id: int | None = None) -> bytes:
    """Return text as one command line; ValueError if it cannot be sent as one (CR, LF, not latin-1, empty)."""
    if not text or "\r" in text or "\n" in text:
        raise ValueError(f"a DMCC command is one non-empty line, not {text!r}")
    if command_id is not None and not 0 <= command_id <= MAX_COMMAND_ID:
        raise ValueError(f"command id {command_id} is not from 0 to {MAX_COMMAND_ID}")
    try:
        body = text.encode(ENCODING)
    except UnicodeEncodeError as err:
        raise ValueError(f"character {text[err.start]!r} cannot be sent in a DMCC command") from err
    return _with_footer(_header(checksum, command_id, b">") + body, checksum=checksum)


def encode_response(
    data: bytes, *, mode: ResponseMode, status: int = Status.OK, checksum: bool = False, command_id: int | None = None
) -> bytes:
    """Return one answer line as the reader sends it in mode; ValueError for data that would not decode back."""
    if mode == "silent":
        if CRLF in data:
            raise ValueError("silent-mode data cannot contain CRLF")
        return data + CRLF
    if not 0 <= status <= 9999:
        raise ValueError(f"status {status} does not fit the header")
    if CRLF in data:
        raise ValueError("extended-mode data cannot contain CRLF (read data travels as base64)")
    line = _header(checksum, command_id, b"[%d]" % status) + data
    return _with_footer(line, checksum=checksum)


def encode_read(code: bytes, *, mode: ResponseMode) -> bytes:
    """Return read data as it travels in mode: base64 in extended mode, as it is in silent mode."""
    return base64.b64encode(code) if mode == "extended" else code


def parse_command(line: bytes) -> Command | Garbage:
    """Return the command one line (CRLF removed) holds, or Garbage saying why it is none."""
    start = line.find(HEADER_START)
    if start < 0:
        return Garbage(line, NO_HEADER)
    match = _COMMAND_HEADER.match(line, start)
    if match is None:
        return Garbage(line, BAD_HEADER)
    checksum = match.group(1) == b"1"
    command_id = int(match.group(2)) if match.group(2) is not None else None
    body = line[match.end() :]
    checksum_ok = True
    if checksum:
        if not body:
            return Garbage(line, EMPTY_COMMAND)
        checksum_ok = xor(line[start:-1]) == line[-1]
        body = body[:-1]
    if not body:
        return Garbage(line, EMPTY_COMMAND)
    return Command(body.decode(ENCODING), checksum, command_id, checksum_ok)


def parse_response(line: bytes, mode: ResponseMode) -> Response | Garbage:
    """Return the answer one line (CRLF removed) holds in mode, or Garbage saying why it is none."""
    if mode == "silent":
        return Response(line)
    match = _ANSWER_HEADER.match(line)
    if match is None:
        return Garbage(line, NOT_EXTENDED)
    checksum = match.group(1) == b"1"
    command_id = int(match.group(2)) if match.group(2) is not None else None
    data = line[match.end() :]
    if checksum:
        if not data or xor(line[:-1]) != line[-1]:
            return Garbage(line, CHECKSUM_MISMATCH)
        data = data[:-1]
    return Response(data, int(match.group(3)), checksum, command_id)


class ResponseFramer:
    """The host's side: feed it what the reader sent, get `Response` values and garbage back in order."""

    def __init__(self, mode: ResponseMode = "extended", max_length: int = DEFAULT_MAX_LENGTH * 2) -> None:
        # Base64 makes read data 4/3 as long: the default leaves room for the largest DataMatrix and a header.
        self.mode: ResponseMode = mode
        self._lines = LineFramer(CRLF, max_length)

    def feed(self, data: bytes) -> list[Response | Garbage]:
        """Add received bytes; return every answer and garbage they complete, in stream order."""
        items: list[Response | Garbage] = []
        for item in self._lines.feed(data):
            if isinstance(item, Garbage):
                items.append(item)
            elif item.payload:  # a bare CRLF carries nothing (a blank output line)
                items.append(parse_response(item.payload, self.mode))
        return items

    def reset(self) -> None:
        """Forget any partial line (after a reconnect, say)."""
        self._lines.reset()


class CommandFramer:
    """The reader's side (the simulator): feed it what the host sent, get `Command` values and garbage back."""

    def __init__(self, max_length: int = DEFAULT_MAX_LENGTH) -> None:
        self._lines = LineFramer(CRLF, max_length)

    def feed(self, data: bytes) -> list[Command | Garbage]:
        """Add received bytes; return every command and garbage they complete, in stream order."""
        return [
            parse_command(item.payload) if isinstance(item, Frame) else item
            for item in self._lines.feed(data)
            if not isinstance(item, Frame) or item.payload
        ]

    def reset(self) -> None:
        """Forget any partial line."""
        self._lines.reset()


def _header(checksum: bool, command_id: int | None, end: bytes) -> bytes:
    if not checksum and command_id is None:
        return HEADER_START + end
    options = b"1" if checksum else b"0"
    if command_id is not None:
        options += b":%d" % command_id
    return HEADER_START + options + end


def _with_footer(line: bytes, *, checksum: bool) -> bytes:
    if checksum:
        line += bytes([xor(line)])
    return line + CRLF
