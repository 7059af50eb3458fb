"""Rules of a market pack that span sections or need the GS1 AI table; each problem names where it is."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from edge.config.models import RelationError
from edge.markets.models import AI_CHARSETS, CHARSET_NAMES, MarketPack, placeholders

if TYPE_CHECKING:
    from edge.markets.models import Lengths


class AiLike(Protocol):
    """What the market checks read of an AI's specification (``edge.gs1.ai.AiSpec`` has all of it)."""

    @property
    def ai(self) -> str: ...
    @property
    def min_length(self) -> int: ...
    @property
    def max_length(self) -> int: ...
    @property
    def charset(self) -> str: ...


AiLookup = Callable[[str], AiLike | None]
"""Returns the specification of an AI such as "01", or None when GS1 defines no such AI."""

Where = tuple[str | int, ...]


def _span(spec: AiLike) -> str:
    if spec.min_length == spec.max_length:
        return f"exactly {spec.min_length} characters"
    return f"{spec.min_length} to {spec.max_length} characters"


def _outside(spec: AiLike, rule: Lengths, at: Where) -> list[RelationError]:
    """Report each configured length that the AI's own specification does not allow."""
    problems = []
    for name in ("length", "min_length", "max_length"):
        value = getattr(rule, name)
        if value is not None and not spec.min_length <= value <= spec.max_length:
            problems.append(RelationError(f"AI {spec.ai} takes {_span(spec)}, not {value}", at=(*at, name)))
    return problems


def _code_ais(pack: MarketPack, lookup: AiLookup) -> tuple[list[RelationError], dict[str, AiLike]]:
    """Check the AIs on the code: known to GS1, each once, the serial among them."""
    problems: list[RelationError] = []
    specs: dict[str, AiLike] = {}
    first: dict[str, Where] = {}
    for section in ("required", "optional"):
        for index, ai in enumerate(getattr(pack.code, section)):
            at: Where = ("code", section, index)
            if ai in first:
                problems.append(RelationError(f'AI "{ai}" is on the code twice', at=at, first=first[ai]))
                continue
            first[ai] = at
            spec = lookup(ai)
            if spec is None:
                problems.append(RelationError(f'unknown AI "{ai}": GS1 defines no such Application Identifier', at))
            else:
                specs[ai] = spec
    if "21" not in pack.code.required:
        problems.append(RelationError('the code must carry the serial: add "21" to required', at=("code", "required")))
    return problems, specs


def _serial(pack: MarketPack, lookup: AiLookup) -> list[RelationError]:
    """Check the serial format against what AI 21 allows."""
    spec = lookup("21")
    if spec is None:
        return []
    problems = _outside(spec, pack.serial, ("serial",))
    allowed = AI_CHARSETS.get(spec.charset, "")
    bad = "".join(dict.fromkeys(ch for ch in pack.serial.characters if ch not in allowed))
    if bad:
        at = "alphabet" if pack.serial.charset == "custom" else "charset"
        charset = CHARSET_NAMES.get(spec.charset, spec.charset)
        shown = json.dumps(bad if len(bad) <= 12 else bad[:12] + "...", ensure_ascii=False)
        count = "" if len(bad) <= 12 else f" ({len(bad)} in all)"
        message = f"characters {shown}{count} are not in {charset}, the characters AI 21 takes"
        problems.append(RelationError(message, at=("serial", at)))
    return problems


def _lengths(pack: MarketPack, specs: dict[str, AiLike]) -> list[RelationError]:
    """Check the market's fixed AI lengths: for AIs on the code, once each, within GS1's bounds."""
    problems: list[RelationError] = []
    first: dict[str, Where] = {}
    for index, rule in enumerate(pack.code.lengths):
        at: Where = ("code", "lengths", index, "ai")
        if rule.ai == "21":
            problems.append(RelationError("the serial's length is set under serial:, not here", at=at))
        elif rule.ai not in pack.code_ais:
            problems.append(RelationError(f'AI "{rule.ai}" is not on the code', at=at))
        elif rule.ai in first:
            problems.append(RelationError(f'AI "{rule.ai}" has a length twice', at=at, first=first[rule.ai]))
        else:
            first[rule.ai] = at
            if rule.ai in specs:
                problems.extend(_outside(specs[rule.ai], rule, at[:-1]))
    return problems


def _crypto_tail(pack: MarketPack) -> list[RelationError]:
    """Check that externally issued parts sit on the code and come with externally issued codes."""
    problems: list[RelationError] = []
    tail = pack.code.crypto_tail
    for index, ai in enumerate(tail):
        at: Where = ("code", "crypto_tail", index)
        if ai not in pack.code.required:
            problems.append(RelationError(f'AI "{ai}" of the crypto tail must be among the required AIs', at=at))
        elif ai in {"01", "21"}:
            problems.append(RelationError(f'AI "{ai}" is not a crypto tail: it identifies the pack', at=at))
        elif tail.index(ai) != index:
            problems.append(RelationError(f'AI "{ai}" is in the crypto tail twice', at=at))
    if pack.serial_source == "external_complete_codes" and not tail:
        message = (
            "external_complete_codes needs code.crypto_tail: the AIs that carry the issued verification key and"
            ' crypto code, like ["91", "92"]'
        )
        problems.append(RelationError(message, at=("serial_source",)))
    if tail and pack.serial_source != "external_complete_codes":
        message = f"a crypto tail is issued with its serial: use external_complete_codes, not {pack.serial_source}"
        problems.append(RelationError(message, at=("serial_source",)))
    return problems


def _hri(pack: MarketPack) -> list[RelationError]:
    """Check that every HRI placeholder names an AI the code may carry."""
    problems = []
    on_code = pack.code_ais
    if not pack.hri.lines:
        problems.append(RelationError('give at least one line, like "SN: {21}"', at=("hri", "lines")))
    for index, template in enumerate(pack.hri.lines):
        missing = dict.fromkeys(ai for ai, _ in placeholders(template) if ai not in on_code)
        for ai in missing:
            message = f"placeholder {{{ai}}} names AI {ai}, which is not on the code ({', '.join(on_code)})"
            problems.append(RelationError(message, at=("hri", "lines", index)))
    return problems


def pack_problems(pack: MarketPack, lookup: AiLookup, *, expected_id: str | None = None) -> list[RelationError]:
    """Return every rule of the pack that fails, each placed at a path from the pack's root."""
    problems: list[RelationError] = []
    if expected_id is not None and pack.id != expected_id:
        message = f'"{pack.id}" does not match the file name: it must be "{expected_id}"'
        problems.append(RelationError(message, at=("id",)))
    code_problems, specs = _code_ais(pack, lookup)
    problems += code_problems
    problems += _serial(pack, lookup)
    problems += _lengths(pack, specs)
    problems += _crypto_tail(pack)
    problems += _hri(pack)
    return problems
