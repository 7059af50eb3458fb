"""What every framer yields, whatever the wire format: complete frames, or garbage skipped to resynchronise.

A framer is pure: it turns bytes into items and items into bytes, and never touches a link. Each dialect's
framer has the same shape (``feed(bytes) -> list[FrameT | Garbage]``, ``encode(...) -> bytes``, ``reset()``),
so drivers and simulators share one wire format and a test can feed any framer split, merged or garbled input.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, TypeVar

FrameT = TypeVar("FrameT")


@dataclass(frozen=True, slots=True)
class Garbage:
    """Bytes skipped to resynchronise (framing removed), and why."""

    data: bytes
    reason: str


class Framer(Protocol[FrameT]):
    """The stateful half of a framer: feed it chunks as they arrive, get frames and garbage back in order."""

    def feed(self, data: bytes) -> list[FrameT | Garbage]:
        """Add received bytes; return every frame and garbage they complete, in stream order."""
        ...

    def reset(self) -> None:
        """Forget any partial frame (after a reconnect, say)."""
        ...
