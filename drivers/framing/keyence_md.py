"""Keyence MD-series laser marker lines: ``WX,``/``RX,`` requests and their ``OK``/``NG`` answers, CR-terminated.

Wire format (protocols.md §1.8, observed in several public integrations [C]):

- request: ``WX,<param>=<value>[,<param>=<value>...]`` (write/execute) or ``RX,<param>[=<args>]`` (read);
- answer: ``WX,OK`` | ``WX,NG,<errcode>`` | ``RX,OK,<value>[,<value>...]`` | ``RX,NG,<errcode>``;
- each line ends with CR; some hosts send CRLF, so both directions decode a line ended by CR, LF or CRLF.

Items are split at every comma and never quoted, so no value can hold ``,``, CR or LF: encoding one is a
ValueError naming the offending item. Text is carried byte for byte (latin-1), so a GS (0x1D) in a GS1
string passes unchanged and arbitrary received bytes always decode. The layer below is `LineFramer`; this
module only turns lines into `Request`/`Answer` values and back, reporting any line that is neither as
`Garbage` with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

from drivers.framing.base import Garbage
from drivers.framing.line import ANY, CR, CRLF, DEFAULT_MAX_LENGTH, Frame, LineFramer

Kind = Literal["WX", "RX"]
KINDS: Final[tuple[Kind, ...]] = ("WX", "RX")

TERMINATORS: Final[dict[str, bytes]] = {"CR": CR, "CRLF": CRLF}
"""The line ends a marker can be set to; the key is the driver option's value."""

ENCODING: Final = "latin-1"
"""Bytes map one to one onto characters: nothing received can fail to decode, GS stays GS."""

OK: Final = "OK"
NG: Final = "NG"

NOT_WX_RX: Final = "line is not a WX or RX command"
NO_PARAMETER: Final = "command without a parameter"
NEITHER_OK_NOR_NG: Final = "answer is neither OK nor NG"
NG_WITHOUT_CODE: Final = "NG answer without exactly one error code"
RX_OK_WITHOUT_VALUE: Final = "RX,OK answer without a value"

_FORBIDDEN: Final = (",", "\r", "\n")


@dataclass(frozen=True, slots=True)
class Request:
    """One host command: its kind and the comma-separated items after it, as sent."""

    kind: Kind
    params: tuple[str, ...]
    """E.g. ``("PRG=0000", "BLK=0001", "CharacterString=ABC")`` or ``("MarkedCharacter=0000", "0001")``."""

    def pairs(self) -> tuple[tuple[str, str | None], ...]:
        """Return each item split at its first ``=``: (name, value), value None for a bare item."""
        return tuple(_split_pair(item) for item in self.params)

    @property
    def raw(self) -> bytes:
        """Return the line without its terminator (for logs and garbage reports)."""
        return ",".join((self.kind, *self.params)).encode(ENCODING, "replace")


@dataclass(frozen=True, slots=True)
class Answer:
    """One marker answer: OK with its values, or NG with its error code as the only value."""

    kind: Kind
    ok: bool
    values: tuple[str, ...] = ()

    @property
    def error(self) -> str | None:
        """Return the NG error code, None for an OK answer."""
        return None if self.ok else self.values[0]

    @property
    def raw(self) -> bytes:
        """Return the line without its terminator (for logs and garbage reports)."""
        return ",".join((self.kind, OK if self.ok else NG, *self.values)).encode(ENCODING, "replace")


def check_value(value: str, what: str) -> None:
    """Raise ValueError naming what when value cannot travel as one item (comma, CR, LF, non-latin-1)."""
    for forbidden in _FORBIDDEN:
        if forbidden in value:
            raise ValueError(f"{what}: a Keyence MD item cannot contain {forbidden!r}")
    try:
        value.encode(ENCODING)
    except UnicodeEncodeError as err:
        raise ValueError(f"{what}: character {value[err.start]!r} cannot be sent (one byte per character)") from err


def encode_request(
    request: Request, *, terminator: bytes = CR, max_length: int = DEFAULT_MAX_LENGTH
) -> bytes:
    """Return request as one terminated line; ValueError naming the item that cannot be sent."""
    if request.kind not in KINDS:
        raise ValueError(f"a request is WX or RX, not {request.kind!r}")
    if not request.params or not request.params[0]:
        raise ValueError("a request needs a parameter first")
    for index, item in enumerate(request.params):
        check_value(item, _name_of(item, index))
    return _line(",".join((request.kind, *request.params)), terminator, max_length)


def encode_answer(answer: Answer, *, terminator: bytes = CR, max_length: int = DEFAULT_MAX_LENGTH) -> bytes:
    """Return answer as one terminated line; ValueError for values that cannot be sent or would not decode back."""
    if answer.kind not in KINDS:
        raise ValueError(f"an answer is WX or RX, not {answer.kind!r}")
    if not answer.ok and len(answer.values) != 1:
        raise ValueError("an NG answer carries exactly one error code")
    if answer.ok and answer.kind == "RX" and not answer.values:
        raise ValueError("an RX,OK answer carries at least one value")
    for index, value in enumerate(answer.values):
        check_value(value, f"answer value {index}")
    return _line(",".join((answer.kind, OK if answer.ok else NG, *answer.values)), terminator, max_length)


def write(*pairs: tuple[str, str | None]) -> Request:
    """Return a WX request of name=value items (a None value sends the bare name, e.g. ``StartMarking``)."""
    return Request("WX", tuple(_join_pair(name, value) for name, value in pairs))


def read(name: str, *args: str) -> Request:
    """Return an RX request ``RX,name[=arg1,arg2...]``."""
    if not args:
        return Request("RX", (name,))
    return Request("RX", (f"{name}={args[0]}", *args[1:]))


def parse_request(payload: bytes) -> Request | Garbage:
    """Return the request one line (terminator removed) holds, or Garbage saying why it is none."""
    items = payload.decode(ENCODING).split(",")
    kind = items[0]
    if kind not in KINDS:
        return Garbage(payload, NOT_WX_RX)
    params = tuple(items[1:])
    if not params or not params[0]:
        return Garbage(payload, NO_PARAMETER)
    return Request("WX" if kind == "WX" else "RX", params)


def parse_answer(payload: bytes) -> Answer | Garbage:
    """Return the answer one line (terminator removed) holds, or Garbage saying why it is none."""
    items = payload.decode(ENCODING).split(",")
    kind = items[0]
    if kind not in KINDS or len(items) < 2:
        return Garbage(payload, NOT_WX_RX if kind not in KINDS else NEITHER_OK_NOR_NG)
    typed: Kind = "WX" if kind == "WX" else "RX"
    status, values = items[1], tuple(items[2:])
    if status == OK:
        if typed == "RX" and not values:
            return Garbage(payload, RX_OK_WITHOUT_VALUE)
        return Answer(typed, ok=True, values=values)
    if status == NG:
        if len(values) != 1:
            return Garbage(payload, NG_WITHOUT_CODE)
        return Answer(typed, ok=False, values=values)
    return Garbage(payload, NEITHER_OK_NOR_NG)


class AnswerFramer:
    """The host's side: feed it what the marker sent, get `Answer` values and garbage back in order."""

    def __init__(self, max_length: int = DEFAULT_MAX_LENGTH) -> None:
        # CR, LF or CRLF end a line: a marker set to CRLF then decodes the same as one set to CR.
        self._lines = LineFramer(ANY, max_length)

    def feed(self, data: bytes) -> list[Answer | Garbage]:
        """Add received bytes; return every answer and garbage they complete, in stream order."""
        return [parse_answer(item.payload) if isinstance(item, Frame) else item for item in self._lines.feed(data)]

    def reset(self) -> None:
        """Forget any partial line (after a reconnect, say)."""
        self._lines.reset()


class RequestFramer:
    """The marker's side (the simulator): feed it what the host sent, get `Request` values and garbage back."""

    def __init__(self, max_length: int = DEFAULT_MAX_LENGTH) -> None:
        # Hosts that send CRLF are accepted (protocols.md §1.8): the LF then ends an empty line, which is skipped.
        self._lines = LineFramer(ANY, max_length)

    def feed(self, data: bytes) -> list[Request | Garbage]:
        """Add received bytes; return every request and garbage they complete, in stream order."""
        return [parse_request(item.payload) if isinstance(item, Frame) else item for item in self._lines.feed(data)]

    def reset(self) -> None:
        """Forget any partial line."""
        self._lines.reset()


def _line(payload: str, terminator: bytes, max_length: int) -> bytes:
    if terminator not in TERMINATORS.values():
        raise ValueError(f"a Keyence MD line ends with CR or CRLF, not {terminator!r}")
    data = payload.encode(ENCODING)
    if len(data) > max_length:
        raise ValueError(f"line of {len(data)} bytes is longer than {max_length}")
    return data + terminator


def _split_pair(item: str) -> tuple[str, str | None]:
    name, equals, value = item.partition("=")
    return (name, value) if equals else (name, None)


def _join_pair(name: str, value: str | None) -> str:
    if not name or "=" in name:
        raise ValueError(f"parameter name {name!r} must be non-empty and without '='")
    check_value(name, "parameter name")
    if value is None:
        return name
    check_value(value, name)
    return f"{name}={value}"


def _name_of(item: str, index: int) -> str:
    name, value = _split_pair(item)
    return name if value is not None and name else f"parameter {index}"
