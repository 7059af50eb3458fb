"""Line framing: payloads ended by a terminator (CR, LF, CRLF, or any of them), resynchronising on garbage.

The decoder is a pure function of bytes (`decode_line`): it reports how many bytes it consumed and what they
were. `LineFramer` is the small stateful wrapper a driver feeds with whatever chunks the link delivers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal, NamedTuple

from drivers.framing.base import Garbage

CR: Final = b"\r"
LF: Final = b"\n"
CRLF: Final = b"\r\n"
ANY: Final = "any"
"""Accept CR, LF or CRLF as the end of a line (blank lines are then skipped, see `decode_line`)."""

LineEnd = bytes | Literal["any"]

DEFAULT_MAX_LENGTH: Final = 4096
"""Longest payload accepted by default: a GS1 DataMatrix holds at most 3116 digits, with room for prefixes."""

OVERLONG_REST: Final = "rest of an overlong line"


@dataclass(frozen=True, slots=True)
class Frame:
    """One complete payload, framing removed, bytes exactly as received."""

    payload: bytes


class Decoded(NamedTuple):
    """One decoding step: bytes consumed, what they were (None: nothing to report), whether a long line goes on."""

    consumed: int
    item: Frame | Garbage | None
    skipping: bool


def decode_line(
    buffer: bytes | bytearray,
    *,
    start: int = 0,
    terminator: LineEnd = CRLF,
    max_length: int = DEFAULT_MAX_LENGTH,
    skipping: bool = False,
) -> Decoded:
    """Decode at most one line from buffer[start:]; consumed 0 means more bytes are needed.

    A line longer than max_length is garbage: reported as soon as it cannot fit any more and skipped up to
    the next terminator (``skipping`` carries that across calls). With ``terminator="any"`` a line ends at
    CR or at LF and empty lines are skipped, which makes CRLF (and LFCR) one terminator.
    """
    _check(terminator, max_length)
    end, end_length = _find_end(buffer, start, terminator)
    if end < 0:
        # Keep a possible first half of a multi-byte terminator: the rest may be in the next chunk.
        carry = len(terminator) - 1 if isinstance(terminator, bytes) else 0
        excess = len(buffer) - start - carry
        if excess > max_length:
            reason = OVERLONG_REST if skipping else _too_long(max_length)
            return Decoded(excess, Garbage(bytes(buffer[start : start + excess]), reason), True)
        return Decoded(0, None, skipping)
    line = bytes(buffer[start:end])
    consumed = end - start + end_length
    if skipping:
        return Decoded(consumed, Garbage(line, OVERLONG_REST) if line else None, False)
    if len(line) > max_length:
        return Decoded(consumed, Garbage(line, _too_long(max_length)), False)
    if not line and not isinstance(terminator, bytes):
        return Decoded(consumed, None, False)
    return Decoded(consumed, Frame(line), False)


class LineFramer:
    """Stateful wrapper around `decode_line`: feed it chunks as they arrive, get frames and garbage back in order."""

    def __init__(self, terminator: LineEnd = CRLF, max_length: int = DEFAULT_MAX_LENGTH) -> None:
        _check(terminator, max_length)
        self.terminator: Final = terminator
        self.max_length: Final = max_length
        self._buffer = bytearray()
        self._skipping = False

    def feed(self, data: bytes) -> list[Frame | Garbage]:
        """Add received bytes; return every frame and garbage they complete, in stream order."""
        self._buffer += data
        items: list[Frame | Garbage] = []
        start = 0
        while True:
            step = decode_line(
                self._buffer,
                start=start,
                terminator=self.terminator,
                max_length=self.max_length,
                skipping=self._skipping,
            )
            if step.consumed == 0:
                break
            start += step.consumed
            self._skipping = step.skipping
            if step.item is not None:
                items.append(step.item)
        # One deletion per chunk, not per line: a chunk holding many short lines stays linear.
        del self._buffer[:start]
        return items

    def encode(self, payload: bytes) -> bytes:
        """Return payload with its terminator (CRLF when configured as "any"); refuse what would not decode back."""
        if isinstance(self.terminator, bytes):
            end = self.terminator
            # Also catches a payload ending in the start of a self-overlapping terminator (b"x\x04" + b"\x04\x04").
            if (payload + end).find(end) != len(payload):
                raise ValueError(f"a line payload cannot contain its terminator {end!r}")
        else:
            if CR in payload or LF in payload:
                raise ValueError("a line payload cannot contain CR or LF")
            if not payload:
                raise ValueError('an empty line is skipped when the line end is "any"')
            end = CRLF
        if len(payload) > self.max_length:
            raise ValueError(f"payload of {len(payload)} bytes is longer than {self.max_length}")
        return payload + end

    @property
    def pending(self) -> int:
        """Bytes held back waiting for the rest of their line."""
        return len(self._buffer)

    def reset(self) -> None:
        """Forget any partial line (after a reconnect, say)."""
        self._buffer.clear()
        self._skipping = False


def _find_end(buffer: bytes | bytearray, start: int, terminator: LineEnd) -> tuple[int, int]:
    """Return (index, length) of the first terminator at or after start, or (-1, 0)."""
    if isinstance(terminator, bytes):
        return buffer.find(terminator, start), len(terminator)
    found = [i for i in (buffer.find(CR, start), buffer.find(LF, start)) if i >= 0]
    return (min(found), 1) if found else (-1, 0)


def _check(terminator: LineEnd, max_length: int) -> None:
    value: object = terminator  # checked as the untyped value a configuration may pass
    if not (value == ANY or (isinstance(value, bytes) and value)):
        raise ValueError(f'a line terminator is one or more bytes, or "any"; not {terminator!r}')
    if max_length < 1:
        raise ValueError(f"max_length must be positive, not {max_length}")


def _too_long(max_length: int) -> str:
    return f"line longer than {max_length} bytes"
