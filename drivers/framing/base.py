"""What every framer yields, whatever the wire format: complete frames, or garbage skipped to resynchronise.

A framer is pure: it turns bytes into items and items into bytes, and never touches a link. Each dialect's
framer has the same shape (``feed(bytes) -> list[FrameT | Garbage]``, ``encode(...) -> bytes``, ``reset()``),
so drivers and simulators share one wire format and a test can feed any framer split, merged or garbled input.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, TypeVar

if TYPE_CHECKING:
    from collections.abc import Callable

FrameT = TypeVar("FrameT")
ItemT_co = TypeVar("ItemT_co", covariant=True)


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


class Step(Protocol[ItemT_co]):
    """One step of a pure decoder: bytes consumed (0: more needed), a frame or `Garbage` (None: nothing)."""

    @property
    def consumed(self) -> int: ...

    @property
    def item(self) -> ItemT_co | None: ...


def decode_all(buffer: bytearray, step: Callable[[int], Step[FrameT]]) -> list[FrameT]:
    """Run step from each position of buffer until it needs more bytes; drop what it consumed; return the items.

    The shared loop of the stateful framers: one deletion per chunk, so a chunk of many short frames stays linear.
    """
    items: list[FrameT] = []
    start = 0
    while start < len(buffer):
        decoded = step(start)
        if decoded.consumed == 0:
            break
        start += decoded.consumed
        if decoded.item is not None:
            items.append(decoded.item)
    del buffer[:start]
    return items
