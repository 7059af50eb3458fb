"""What can be wrong with a pack's code as the camera sees it: the defects the camera simulator renders."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class DefectKind(StrEnum):
    BLUR = "blur"
    """Out of focus or motion blur."""
    LOW_CONTRAST = "low-contrast"
    """Faded ink, low reflectance difference."""
    ROTATION = "rotation"
    """The code turned in the image plane."""
    PERSPECTIVE = "perspective"
    """The pack tilted towards the camera."""
    DAMAGE = "damage"
    """Part of the symbol missing (scratched, torn)."""
    INK_SPREAD = "ink-spread"
    """Modules grown into each other (print growth)."""
    SMUDGE = "smudge"
    """Ink smeared across part of the symbol."""
    MISSING = "missing"
    """No code on the pack at all."""
    WRONG_CODE = "wrong-code"
    """A code with other data than the one printed (another lot, another GTIN)."""
    DUPLICATE = "duplicate"
    """The code of an earlier pack again."""
    TWO_CODES = "two-codes"
    """Two codes in view (a second pack, or a code printed twice)."""


@dataclass(frozen=True, slots=True)
class Defect:
    """One defect and how bad it is: 0 barely there, 1 as bad as the simulator makes it."""

    kind: DefectKind
    severity: float = 1.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.severity <= 1.0:
            raise ValueError(f"a defect's severity is from 0 to 1, not {self.severity}")
