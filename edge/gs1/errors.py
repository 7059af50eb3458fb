"""Structured GS1 problems: one issue type for every rule, and the two errors that carry issues."""

from __future__ import annotations

from dataclasses import dataclass

from edge.errors import EdgeError


@dataclass(frozen=True, slots=True)
class Gs1Issue:
    """One broken GS1 rule.

    ``position`` is the 0-based character offset in the text given to the parser (symbology identifier
    included) where the offending part starts: the first offending character of a value for content
    checks, the start of the element (its AI, or its opening bracket in HRI) for rules about whole
    elements, and the point where reading stopped for syntax errors. For issues of ``validate_pairs``
    (no source text), the offset is into the HRI text of the pairs.
    """

    ai: str | None
    position: int
    message: str
    rule: str

    def __str__(self) -> str:
        where = f"AI ({self.ai}) " if self.ai is not None else ""
        return f"{where}at {self.position}: {self.message} [{self.rule}]"


class Gs1SyntaxError(EdgeError):
    """The text cannot be read as GS1 element strings at all; carries the issue that stopped the parser."""

    def __init__(self, issue: Gs1Issue) -> None:
        self.issue = issue
        super().__init__(str(issue))


class Gs1ValidationError(EdgeError):
    """Element strings were read but break GS1 rules; carries every issue found."""

    def __init__(self, issues: list[Gs1Issue]) -> None:
        self.issues = issues
        super().__init__("; ".join(str(issue) for issue in issues))
