"""Faults a simulator applies to the bytes it sends, injected on demand and composable.

Each fault is a small frozen value; `Faults` holds the active ones and turns every write into a plan of
actions (`shape`), a pure step a connection then carries out. One-shot faults (`Disconnect`, `Garbage`,
`Corrupt`) are used up when they fire; lasting faults (`Delay`, `Split`, `Stall`) hold until removed.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Disconnect:
    """Hang up once this many more bytes have gone out (0: at the next write), cutting a frame short."""

    after_bytes: int = 0

    def __post_init__(self) -> None:
        if self.after_bytes < 0:
            raise ValueError(f"after_bytes cannot be negative: {self.after_bytes}")


@dataclass(frozen=True, slots=True)
class Garbage:
    """Send these bytes just ahead of the next write, as line noise or a confused device would."""

    data: bytes

    def __post_init__(self) -> None:
        if not self.data:
            raise ValueError("garbage needs at least one byte")


@dataclass(frozen=True, slots=True)
class Corrupt:
    """Flip bits (XOR mask) of one byte of the next write long enough to have it; offset < 0 counts from the end."""

    offset: int = 0
    mask: int = 0xFF

    def __post_init__(self) -> None:
        if not 0 < self.mask <= 0xFF:
            raise ValueError(f"mask must flip at least one bit of a byte: {self.mask:#x}")


@dataclass(frozen=True, slots=True)
class Delay:
    """Wait this long before every write (a slow device), until removed."""

    seconds: float

    def __post_init__(self) -> None:
        if self.seconds < 0:
            raise ValueError(f"a delay cannot be negative: {self.seconds}")


@dataclass(frozen=True, slots=True)
class Split:
    """Send every write in pieces of chunk_size bytes, pausing gap_s between them, until removed."""

    chunk_size: int = 1
    gap_s: float = 0.0

    def __post_init__(self) -> None:
        if self.chunk_size < 1 or self.gap_s < 0:
            raise ValueError(f"chunk_size must be positive and gap_s not negative: {self}")


@dataclass(frozen=True, slots=True)
class Stall:
    """Swallow every write (a device that stopped answering), until removed."""


Fault = Disconnect | Garbage | Corrupt | Delay | Split | Stall


@dataclass(frozen=True, slots=True)
class Send:
    """Write these bytes to the link."""

    data: bytes


@dataclass(frozen=True, slots=True)
class Pause:
    """Sleep this long (with the simulator's injectable sleep)."""

    seconds: float


@dataclass(frozen=True, slots=True)
class HangUp:
    """Drop the link now."""


Action = Send | Pause | HangUp


@dataclass(slots=True)
class _Active:
    fault: Fault
    remaining: int = 0  # Disconnect: bytes still to send before hanging up


class Faults:
    """The faults active on one simulator; every write it makes goes through `shape`."""

    def __init__(self) -> None:
        self._active: list[_Active] = []

    def inject(self, fault: Fault) -> Fault:
        """Activate fault from the next write on; returns it, for `remove`."""
        remaining = fault.after_bytes if isinstance(fault, Disconnect) else 0
        self._active.append(_Active(fault, remaining))
        return fault

    def remove(self, fault: Fault) -> None:
        """Deactivate every active fault equal to fault."""
        self._active = [a for a in self._active if a.fault != fault]

    def clear(self) -> None:
        """Deactivate all faults."""
        self._active.clear()

    @property
    def active(self) -> tuple[Fault, ...]:
        """The faults still active, in the order injected."""
        return tuple(a.fault for a in self._active)

    def shape(self, data: bytes) -> list[Action]:
        """Plan how data goes out under the active faults, using up the one-shot faults that fire."""
        if any(isinstance(a.fault, Stall) for a in self._active):
            return []
        payload = self._corrupt(data)
        noise = [a for a in self._active if isinstance(a.fault, Garbage)]
        payload = b"".join(a.fault.data for a in noise if isinstance(a.fault, Garbage)) + payload
        fired: list[_Active] = list(noise)
        actions: list[Action] = []
        delay = sum(a.fault.seconds for a in self._active if isinstance(a.fault, Delay))
        if delay > 0:
            actions.append(Pause(delay))
        hang_up = False
        cuts = [a for a in self._active if isinstance(a.fault, Disconnect)]
        if cuts:
            budget = min(a.remaining for a in cuts)
            if budget <= len(payload):
                payload, hang_up = payload[:budget], True
                fired += cuts  # the link is gone: every pending disconnect is moot
            else:
                for cut in cuts:
                    cut.remaining -= len(payload)
        actions += _split(payload, [a.fault for a in self._active if isinstance(a.fault, Split)])
        if hang_up:
            actions.append(HangUp())
        self._active = [a for a in self._active if not any(a is f for f in fired)]
        return actions

    def _corrupt(self, data: bytes) -> bytes:
        for active in self._active:
            fault = active.fault
            if isinstance(fault, Corrupt) and -len(data) <= fault.offset < len(data):
                flipped = bytearray(data)
                flipped[fault.offset] ^= fault.mask
                self._active = [a for a in self._active if a is not active]
                return bytes(flipped)
        return data


def _split(payload: bytes, splits: list[Split]) -> list[Action]:
    if not payload:
        return []
    if not splits:
        return [Send(payload)]
    size = min(s.chunk_size for s in splits)
    gap = max(s.gap_s for s in splits)
    actions: list[Action] = []
    for start in range(0, len(payload), size):
        if start and gap > 0:
            actions.append(Pause(gap))
        actions.append(Send(payload[start : start + size]))
    return actions
