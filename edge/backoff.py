"""Reconnect delay policy: capped exponential growth with jitter, reset on success."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

# 2**32 times any sensible initial delay is far past any cap; stopping the exponent there
# keeps the arithmetic finite however long a device stays away.
_MAX_EXPONENT = 32


@dataclass(slots=True)
class Backoff:
    """Delays before reconnect attempts: initial * factor**n, capped, each shortened by up to `jitter`."""

    initial_s: float
    max_s: float
    factor: float = 2.0
    jitter: float = 0.2
    rng: random.Random = field(default_factory=random.Random)
    failures: int = 0

    def __post_init__(self) -> None:
        if not 0 < self.initial_s <= self.max_s:
            raise ValueError(f"backoff needs 0 < initial_s <= max_s, got {self.initial_s} and {self.max_s}")
        if self.factor < 1 or not 0 <= self.jitter < 1:
            raise ValueError("backoff factor must be >= 1 and jitter in [0, 1)")

    def next_delay(self) -> float:
        """Return the delay before the next attempt and count one more failure."""
        base = min(self.initial_s * self.factor ** min(self.failures, _MAX_EXPONENT), self.max_s)
        self.failures += 1
        # Jitter only ever shortens the delay, so the cap stays a true upper bound, and
        # devices that dropped together (a switch reboot) do not reconnect in lockstep.
        return base * (1 - self.jitter * self.rng.random())

    def reset(self) -> None:
        """Forget past failures after a link has been established."""
        self.failures = 0

    def max_out(self) -> None:
        """Jump to the cap: the last error will not cure itself quickly (wrong settings, wrong device)."""
        self.failures = _MAX_EXPONENT
