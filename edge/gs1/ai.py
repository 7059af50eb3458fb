"""The GS1 Application Identifier table: what each AI holds, how long it is, what it needs and excludes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from edge.gs1.ai_table import AI_ROWS, RELEASE

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = ["DICTIONARY_RELEASE", "AiSpec", "Component", "ai_matches", "ai_spec", "all_ais", "lookup_prefix"]

DICTIONARY_RELEASE = RELEASE


@dataclass(frozen=True, slots=True)
class Component:
    """One part of an AI's data field: charset N/X/Y/Z, length bounds, optional flag, named checks."""

    charset: str
    min_length: int
    max_length: int
    optional: bool
    linters: tuple[str, ...]

    @property
    def fixed(self) -> bool:
        """Whether the component has a single permitted length."""
        return self.min_length == self.max_length


@dataclass(frozen=True, slots=True)
class AiSpec:
    """Everything the GS1 Barcode Syntax Dictionary says about one AI.

    ``requires`` is a tuple of rules that must all hold; each rule is a tuple of alternatives, one of which
    must be present in full; an alternative is a tuple of AIs or patterns ('n' stands for any digit).
    ``excludes`` lists AIs or patterns that must not appear with this AI (an AI never excludes itself).
    ``dl_qualifiers`` lists the permitted qualifier sequences when the AI is a Digital Link primary key.
    """

    ai: str
    title: str
    fnc1: bool
    components: tuple[Component, ...]
    min_length: int
    max_length: int
    charset: str
    requires: tuple[tuple[tuple[str, ...], ...], ...]
    excludes: tuple[str, ...]
    dl_primary_key: bool
    dl_qualifiers: tuple[tuple[str, ...], ...]
    dl_data_attribute: bool

    @property
    def linters(self) -> tuple[str, ...]:
        """All checks named by any component, in order, without repeats."""
        return tuple(dict.fromkeys(name for c in self.components for name in c.linters))

    @property
    def format(self) -> str:
        """The dictionary's format notation, e.g. ``N14,csum`` or ``N6,yymmdd [N4],hhmi``."""
        parts = []
        for c in self.components:
            size = str(c.max_length) if c.fixed else f"..{c.max_length}"
            body = f"[{c.charset}{size}]" if c.optional else f"{c.charset}{size}"
            parts.append(",".join((body, *c.linters)))
        return " ".join(parts)


def _build() -> dict[str, AiSpec]:
    table: dict[str, AiSpec] = {}
    for ai, title, fnc1, dl_attribute, raw_components, requires, excludes, dlpkey in AI_ROWS:
        components = tuple(Component(*c) for c in raw_components)
        spec = AiSpec(
            ai=ai,
            title=title,
            fnc1=fnc1,
            components=components,
            min_length=sum(c.min_length for c in components if not c.optional),
            max_length=sum(c.max_length for c in components),
            charset=components[0].charset,
            requires=requires,
            excludes=excludes,
            dl_primary_key=dlpkey is not None,
            dl_qualifiers=tuple(seq for seq in dlpkey or () if seq),
            dl_data_attribute=dl_attribute,
        )
        # Element strings are read by length alone for AIs that need no FNC1: the table must say how long.
        if not fnc1 and spec.min_length != spec.max_length:
            raise ValueError(f"AI {ai} needs no FNC1 but has no predefined length")
        table[ai] = spec
    return table


_TABLE = _build()


def ai_spec(ai: str) -> AiSpec | None:
    """Return the specification of an AI such as ``"01"`` or ``"3103"``, or None when GS1 defines no such AI."""
    return _TABLE.get(ai)


def all_ais() -> Iterable[AiSpec]:
    """Every AI the dictionary defines, in the dictionary's (lexical) order."""
    return _TABLE.values()


def lookup_prefix(text: str, start: int = 0) -> AiSpec | None:
    """Return the AI that ``text`` starts with at ``start`` (AIs are prefix-free), or None."""
    get = _TABLE.get
    return get(text[start : start + 2]) or get(text[start : start + 3]) or get(text[start : start + 4])


def ai_matches(pattern: str, ai: str) -> bool:
    """Whether an AI matches a dictionary pattern, where 'n' in the pattern stands for any digit."""
    return len(pattern) == len(ai) and all(p in ("n", a) for p, a in zip(pattern, ai, strict=True))
