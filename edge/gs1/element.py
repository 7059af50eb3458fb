"""GS1 element strings: read scan data and HRI text, check every GS1 rule, and build what printers print.

Reading (``parse``) only splits text into (AI, value) elements and raises ``Gs1SyntaxError`` when that is
impossible; ``validate`` then reports every broken rule as a ``Gs1Issue`` (lengths, character sets, check
digits, dates and the other dictionary checks, requisite and excluded AIs, repeated AIs with different
values). Positions are 0-based offsets into the text given to ``parse`` (see ``Gs1Issue``); inside an HRI
value that contained an escaped bracket they are approximate by the number of escapes before them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import NamedTuple

from edge.gs1.ai import AiSpec, ai_matches, ai_spec, all_ais, lookup_prefix
from edge.gs1.checks import CHARSETS, LINTERS, NOT_CHECKED, Lint, check_charset
from edge.gs1.errors import Gs1Issue, Gs1SyntaxError, Gs1ValidationError

__all__ = [
    "GS",
    "GS1_SYMBOLOGIES",
    "Element",
    "ElementStrings",
    "build",
    "build_hri",
    "parse",
    "parse_and_validate",
    "parse_hri",
    "validate",
    "validate_pairs",
]

GS = "\x1d"
#: Symbology identifiers whose data is GS1 element strings (FNC1 in first position).
GS1_SYMBOLOGIES = {
    "]C1": "GS1-128",
    "]e0": "GS1 DataBar / Composite",
    "]d2": "GS1 DataMatrix",
    "]Q3": "GS1 QR Code",
    "]J1": "GS1 DotCode",
}
_DIGITS = "0123456789"


class Element(NamedTuple):
    """One element string: the AI, its value, where the element starts and where its value starts."""

    ai: str
    value: str
    position: int
    value_position: int


@dataclass(frozen=True, slots=True)
class ElementStrings:
    """What was read: the symbology identifier (None when absent), the elements in order, and the form."""

    text: str
    symbology: str | None
    elements: tuple[Element, ...]
    hri: bool = False

    @property
    def pairs(self) -> list[tuple[str, str]]:
        """The (AI, value) pairs in the order read."""
        return [(e.ai, e.value) for e in self.elements]

    def get(self, ai: str) -> str | None:
        """Return the value of the first element with this AI, or None."""
        for element in self.elements:
            if element.ai == ai:
                return element.value
        return None


def _syntax(position: int, message: str, rule: str, ai: str | None = None) -> Gs1SyntaxError:
    return Gs1SyntaxError(Gs1Issue(ai, position, message, rule))


def parse(data: str | bytes) -> ElementStrings:
    """Read scan data (GS as FNC1, optional symbology identifier, optional leading GS) or bracketed HRI text.

    Raises ``Gs1SyntaxError`` (and nothing else) when the text cannot be split into known AIs and values.
    Bytes are read as Latin-1 so that any byte reaches the character-set checks instead of failing here.
    """
    text = data.decode("latin-1") if isinstance(data, bytes) else data
    size = len(text)
    start = 0
    symbology = None
    if text.startswith("]"):
        if size < 3 or not ("A" <= text[1] <= "Z" or "a" <= text[1] <= "z") or text[2] not in _DIGITS:
            raise _syntax(0, "malformed symbology identifier: expected ']' + letter + digit", "SYMBOLOGY_ID")
        symbology = text[:3]
        start = 3
    if start < size and text[start] in "([":
        return ElementStrings(text, symbology, _read_hri(text, start), hri=True)
    if start < size and text[start] == GS:
        start += 1
    if start >= size:
        raise _syntax(start, "no element strings", "EMPTY")
    return ElementStrings(text, symbology, _read_fnc1(text, start))


def parse_hri(text: str) -> ElementStrings:
    """Read bracketed HRI text only, ``(01)...(21)...`` or ``[01]...[21]...``; raises ``Gs1SyntaxError``."""
    if not text or text[0] not in "([":
        raise _syntax(0, "HRI text must start with '(' or '['", "HRI_SYNTAX")
    return ElementStrings(text, None, _read_hri(text, 0), hri=True)


def _read_fnc1(text: str, start: int) -> tuple[Element, ...]:
    elements: list[Element] = []
    size = len(text)
    i = start
    while i < size:
        if text[i] == GS:  # a redundant separator (doubled, or after a predefined-length AI) is harmless
            i += 1
            continue
        spec = lookup_prefix(text, i)
        if spec is None:
            raise _syntax(i, f"no GS1 AI starts here: {text[i : i + 4]!r}", "UNKNOWN_AI")
        ai = spec.ai
        value_start = i + len(ai)
        if spec.fnc1:
            end = text.find(GS, value_start)
            if end == -1:
                end = size
            if end == value_start:
                raise _syntax(value_start, f"AI ({ai}) has no data", "EMPTY_VALUE", ai)
        else:
            end = value_start + spec.max_length
            if end > size:
                raise _syntax(
                    value_start, f"AI ({ai}) needs {spec.max_length} characters, {size - value_start} left",
                    "TRUNCATED", ai,
                )
            separator = text.find(GS, value_start, end)
            if separator != -1:
                raise _syntax(separator, f"FNC1 inside the predefined-length data of AI ({ai})", "FNC1_IN_DATA", ai)
        elements.append(Element(ai, text[value_start:end], i, value_start))
        i = end
    return tuple(elements)


def _read_hri(text: str, start: int) -> tuple[Element, ...]:
    opening = text[start]
    closing = ")" if opening == "(" else "]"
    escaped = "\\" + opening
    elements: list[Element] = []
    size = len(text)
    i = start
    while i < size:
        if text[i] != opening:
            raise _syntax(i, f"expected {opening!r} to open an AI", "HRI_SYNTAX")
        close = text.find(closing, i + 1)
        if close == -1:
            raise _syntax(i, f"AI opened with {opening!r} is never closed", "HRI_SYNTAX")
        ai = text[i + 1 : close]
        spec = ai_spec(ai)
        if spec is None:
            raise _syntax(i + 1, f"unknown AI {ai!r}", "UNKNOWN_AI")
        value_start = close + 1
        end = text.find(opening, value_start)
        while end != -1 and text[end - 1] == "\\":
            end = text.find(opening, end + 1)
        if end == -1:
            end = size
        value = text[value_start:end]
        if "\\" in value:
            value = value.replace(escaped, opening)
        if not value:
            raise _syntax(value_start, f"AI ({ai}) has no data", "EMPTY_VALUE", ai)
        elements.append(Element(ai, value, i, value_start))
        i = end
    return tuple(elements)


# --- validation -------------------------------------------------------------------------------------------

_Check = Callable[[str, int, list[Gs1Issue]], None]


def _lint_issue(spec: AiSpec, lint: Lint, base: int) -> Gs1Issue:
    reason = lint.rule.lower().replace("_", " ")
    return Gs1Issue(spec.ai, base + lint.start, f"AI ({spec.ai}) {spec.title}: {reason}", lint.rule)


def _compile(spec: AiSpec) -> _Check:
    """Build the content check of one AI once, so that validating an element is a dict lookup and a call."""
    parts = tuple(
        (c.charset, CHARSETS[c.charset], c.min_length, c.max_length, c.optional,
         tuple(LINTERS[name] for name in c.linters if name not in NOT_CHECKED))
        for c in spec.components
    )
    ai, title = spec.ai, spec.title

    def length_issue(position: int, expected: str, got: int) -> Gs1Issue:
        return Gs1Issue(ai, position, f"AI ({ai}) {title}: must be {expected} characters, got {got}", "LENGTH")

    if len(parts) == 1:
        charset, allowed, low, high, _, linters = parts[0]
        expected = str(low) if low == high else f"{low} to {high}"

        def check_one(value: str, base: int, issues: list[Gs1Issue]) -> None:
            size = len(value)
            if size < low or size > high:
                issues.append(length_issue(base, expected, size))
                return
            if charset == "Z" or value.strip(allowed):
                bad = check_charset(charset, value)
                if bad is not None:
                    issues.append(_lint_issue(spec, bad, base))
                    return
            for lint in linters:
                bad = lint(value)
                if bad is not None:
                    issues.append(_lint_issue(spec, bad, base))
                    return

        return check_one

    total = f"{spec.min_length} to {spec.max_length}" if spec.min_length != spec.max_length else str(spec.max_length)

    def check_many(value: str, base: int, issues: list[Gs1Issue]) -> None:
        size = len(value)
        offset = 0
        for charset, _allowed, low, high, optional, linters in parts:
            if offset >= size and optional:
                break
            part = value[offset : offset + high]
            if len(part) < low:
                issues.append(length_issue(base, total, size))
                return
            bad = check_charset(charset, part)
            if bad is None:
                for lint in linters:
                    bad = lint(part)
                    if bad is not None:
                        break
            if bad is not None:
                issues.append(_lint_issue(spec, bad, base + offset))
                return
            offset += len(part)
        if offset < size:
            issues.append(length_issue(base, total, size))

    return check_many


_CHECKS: dict[str, _Check] = {spec.ai: _compile(spec) for spec in all_ais()}
_Template = tuple[int, str, str, str]
_ASSOCIATIONS: dict[tuple[str, ...], tuple[_Template, ...]] = {}
_ASSOCIATIONS_MAX = 4096


def _present(pattern: str, present: set[str]) -> bool:
    if "n" not in pattern:
        return pattern in present
    return any(ai_matches(pattern, ai) for ai in present)


def _associations(ais: tuple[str, ...]) -> tuple[_Template, ...]:
    """Requisite and excluded AI issues for a sequence of AIs, as (index, ai, message, rule)."""
    present = set(ais)
    found: list[_Template] = []
    seen: set[str] = set()
    for index, ai in enumerate(ais):
        if ai in seen:
            continue
        seen.add(ai)
        spec = ai_spec(ai)
        if spec is None:
            continue
        for rule in spec.requires:
            if not any(all(_present(p, present) for p in alternative) for alternative in rule):
                needed = " or ".join("+".join(f"({p})" for p in alternative) for alternative in rule)
                found.append((index, ai, f"AI ({ai}) {spec.title} requires {needed}", "REQUIRES"))
        for pattern in spec.excludes:
            clash = sorted(other for other in present if other != ai and ai_matches(pattern, other))
            if clash:
                found.append((index, ai, f"AI ({ai}) {spec.title} must not appear with ({clash[0]})", "EXCLUDES"))
    return tuple(found)


#: Keys a digital signature (AI 8030) may sign only when serialised: the data length that proves a serial.
_DIGSIG_SERIALISED = {"253": 13, "255": 13, "8003": 14}


def validate(parsed: ElementStrings) -> list[Gs1Issue]:
    """Return every GS1 rule the elements break (empty when valid); never raises for parsed input."""
    issues: list[Gs1Issue] = []
    symbology = parsed.symbology
    if symbology is not None and symbology not in GS1_SYMBOLOGIES:
        issues.append(Gs1Issue(None, 0, f"symbology {symbology} does not carry GS1 element strings", "SYMBOLOGY"))
    elements = parsed.elements
    checks = _CHECKS
    for element in elements:
        checks[element.ai](element.value, element.value_position, issues)
    ais = tuple(e.ai for e in elements)
    templates = _ASSOCIATIONS.get(ais)
    if templates is None:
        if len(_ASSOCIATIONS) >= _ASSOCIATIONS_MAX:
            _ASSOCIATIONS.clear()
        templates = _ASSOCIATIONS[ais] = _associations(ais)
    issues.extend(Gs1Issue(ai, elements[index].position, message, rule) for index, ai, message, rule in templates)
    if len(set(ais)) != len(ais):
        first: dict[str, str] = {}
        for element in elements:
            earlier = first.setdefault(element.ai, element.value)
            if earlier != element.value:
                issues.append(Gs1Issue(
                    element.ai, element.position,
                    f"AI ({element.ai}) repeated with a different value ({earlier!r} then {element.value!r})",
                    "REPEAT_MISMATCH",
                ))
    if "8030" in ais:
        for element in elements:
            shortest = _DIGSIG_SERIALISED.get(element.ai)
            if shortest is not None and len(element.value) <= shortest:
                issues.append(Gs1Issue(
                    element.ai, element.position,
                    f"AI (8030) digital signature needs a serialised ({element.ai})", "DIGSIG_SERIALISED_KEY",
                ))
    return issues


def parse_and_validate(data: str | bytes) -> tuple[ElementStrings, list[Gs1Issue]]:
    """Parse then validate; raises only ``Gs1SyntaxError``, for text that cannot be read at all."""
    parsed = parse(data)
    return parsed, validate(parsed)


def _escape(value: str) -> str:
    return value.replace("(", "\\(")


def validate_pairs(pairs: Iterable[tuple[str, str]]) -> list[Gs1Issue]:
    """Validate (AI, value) pairs; positions are offsets into their HRI text (see ``build_hri``)."""
    elements: list[Element] = []
    issues: list[Gs1Issue] = []
    offset = 0
    for ai, value in pairs:
        value_position = offset + len(ai) + 2
        if ai_spec(ai) is None:
            issues.append(Gs1Issue(ai, offset, f"unknown AI {ai!r}", "UNKNOWN_AI"))
        else:
            elements.append(Element(ai, value, offset, value_position))
        offset = value_position + len(_escape(value))
    return issues + validate(ElementStrings("", None, tuple(elements), hri=True))


def build(
    pairs: Iterable[tuple[str, str]], *, symbology: str | None = None, predefined_first: bool = False,
    check: bool = True,
) -> str:
    """Build the FNC1 form: GS after each element that needs FNC1 and is not last; raises Gs1ValidationError.

    ``symbology`` (e.g. ``"]d2"``) is put in front when given, as a reader would report it. With
    ``predefined_first`` the elements that need no separator go first (stable), which saves FNC1s.
    """
    items = list(pairs)
    if check:
        issues = validate_pairs(items)
        if issues:
            raise Gs1ValidationError(issues)
    needs_fnc1 = [spec is None or spec.fnc1 for spec in (ai_spec(ai) for ai, _ in items)]
    order = list(range(len(items)))
    if predefined_first:
        order.sort(key=needs_fnc1.__getitem__)
    parts = [symbology or ""]
    last = len(order) - 1
    for n, k in enumerate(order):
        ai, value = items[k]
        parts.append(ai + value)
        if n < last and needs_fnc1[k]:
            parts.append(GS)
    return "".join(parts)


def build_hri(pairs: Iterable[tuple[str, str]], *, check: bool = True) -> str:
    """Build the human-readable text ``(01)...(21)...``, a '(' inside a value escaped with a backslash."""
    items = list(pairs)
    if check:
        issues = validate_pairs(items)
        if issues:
            raise Gs1ValidationError(issues)
    return "".join(f"({ai}){_escape(value)}" for ai, value in items)
