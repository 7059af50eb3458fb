"""Serial generators: cryptographically random serials for the line's own pool, and sequential ones.

Both are pure apart from reading the OS random source; uniqueness is the store's job (it refuses a serial it
already knows and asks again), the generators only promise format and, for ``RandomSerials``, an exactly
uniform draw from the whole serial space.
"""

from __future__ import annotations

import math
import os
import random
import re
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from edge.errors import SerialError

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["RandomSerials", "SequentialSerials", "SerialSource"]

MIN_ALPHABET = 2
MAX_ALPHABET = 256
"""One random byte picks one character, so an alphabet has at most 256 characters."""


@runtime_checkable
class SerialSource(Protocol):
    """Anything that hands out serials of one format: ``take(n)`` and the size of its serial space."""

    def take(self, n: int) -> list[str]:
        """Return the next n serials."""
        ...

    @property
    def space(self) -> int:
        """How many distinct serials this source can produce."""
        ...


def _count(n: int) -> int:
    if n < 0:
        raise ValueError(f"number of serials must be a whole number, 0 or more, got {n!r}")
    return n


class RandomSerials:
    """Serials of exactly ``length`` characters drawn uniformly and independently from ``characters``.

    Each character costs one byte of ``randbytes`` (default ``os.urandom``, the OS CSPRNG). Bytes at or above
    ``(256 // k) * k`` are rejected rather than folded with a modulo, so that every one of the k characters is
    exactly equally likely; a modulo would favour the first ``256 % k`` of them. Work is done on whole blocks
    in C (``bytes.translate``, ``re.findall``), which makes a million 12-character serials a fraction of a
    second. The serials of one ``take`` may repeat with probability about n² / (2 · space): the store
    enforces uniqueness and asks again.
    """

    def __init__(self, characters: str, length: int, *, randbytes: Callable[[int], bytes] = os.urandom) -> None:
        k = len(characters)
        if not MIN_ALPHABET <= k <= MAX_ALPHABET:
            raise ValueError(f"a serial alphabet needs {MIN_ALPHABET} to {MAX_ALPHABET} characters, got {k}")
        repeated = sorted({ch for ch in characters if characters.count(ch) > 1})
        if repeated:
            raise ValueError(f"serial alphabet {characters!r} repeats {''.join(repeated)!r}")
        if length < 1:
            raise ValueError(f"serial length must be a whole number, 1 or more, got {length!r}")
        self.characters = characters
        self.length = length
        self._randbytes = randbytes
        self._accept = (256 // k) * k
        self._delete = bytes(range(self._accept, 256))
        # Latin-1 characters are one byte each, so a byte can map straight to its character; any other
        # alphabet maps bytes to character indices first and indices to characters after decoding.
        self._direct = all(ord(ch) < 256 for ch in characters)
        if self._direct:
            self._table = bytes(ord(characters[b % k]) for b in range(256))
            self._indices: dict[int, str] | None = None
        else:
            self._table = bytes(b % k for b in range(256))
            self._indices = dict(enumerate(characters))
        self._split = re.compile(f".{{{length}}}", re.DOTALL)

    @classmethod
    def seeded(cls, characters: str, length: int, seed: int) -> RandomSerials:
        """Return a reproducible generator for simulators and tests; NOT for production: its serials are guessable."""
        # A seeded Mersenne Twister is exactly what a reproducible simulator run needs and what a market forbids.
        return cls(characters, length, randbytes=random.Random(seed).randbytes)  # noqa: S311

    @property
    def space(self) -> int:
        """How many distinct serials exist: alphabet size to the power of the length."""
        return int(len(self.characters) ** self.length)

    def _characters(self, count: int) -> str:
        """Return count random characters of the alphabet, each exactly uniform."""
        chunks: list[bytes] = []
        have = 0
        while have < count:
            missing = count - have
            # Enough bytes for the expected rejections plus a little, so one draw nearly always suffices.
            want = math.ceil(missing * 256 / self._accept) + 16 + (missing >> 6)
            chunk = self._randbytes(want).translate(self._table, self._delete)
            chunks.append(chunk)
            have += len(chunk)
        text = b"".join(chunks)[:count].decode("latin-1")
        if self._indices is not None:
            text = text.translate(self._indices)
        return text

    def take(self, n: int) -> list[str]:
        """Return n random serials (repeats possible but negligible; see the class docstring)."""
        if _count(n) == 0:
            return []
        return self._split.findall(self._characters(n * self.length))

    def __repr__(self) -> str:
        return f"RandomSerials({self.characters!r}, {self.length})"


class SequentialSerials:
    """Zero-padded decimal serials counting up from ``start``: ``width`` 6 from 41 gives 000041, 000042, ...

    Only for markets whose randomisation rule is not ``random`` (``none`` or ``sequential_allowed``): sequential
    serials are trivially guessable. The caller checks the market's rule; this class cannot see it.
    """

    def __init__(self, start: int, width: int) -> None:
        if width < 1:
            raise ValueError(f"serial width must be a whole number of digits, 1 or more, got {width!r}")
        if not 0 <= start < 10**width:
            raise ValueError(f"first serial must be a whole number from 0 to {10**width - 1:,}, got {start!r}")
        self.width = width
        self._next = start

    @property
    def next(self) -> int:
        """The number the next serial will carry; persist it to resume counting after a restart."""
        return self._next

    @property
    def space(self) -> int:
        """How many distinct serials exist: 10 to the power of the width."""
        return int(10**self.width)

    def take(self, n: int) -> list[str]:
        """Return the next n serials; SerialError, with nothing consumed, when they would overflow the width."""
        end = self._next + _count(n)
        if end > self.space:
            left = self.space - self._next
            last = "9" * self.width
            remaining = f"only {left:,} left, {self._next:0{self.width}d} to {last}" if left else "none left"
            raise SerialError(
                f"{n:,} sequential serials of {self.width} digits asked for, {remaining}; use wider serials"
            )
        serials = list(map(f"{{:0{self.width}d}}".format, range(self._next, end)))
        self._next = end
        return serials

    def __repr__(self) -> str:
        return f"SequentialSerials(start={self._next}, width={self.width})"
