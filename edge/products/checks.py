"""Rules of a product that span sections or need the GS1 AI table or its market pack; each names where it is."""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING

from edge import registry
from edge.config.models import RelationError
from edge.gs1.ai import ai_spec
from edge.gs1.element import validate_pairs
from edge.markets.models import placeholders
from edge.products.models import DEVICE_ID_PATTERN

if TYPE_CHECKING:
    from collections.abc import Mapping

    from edge.markets.models import Lengths, MarketPack
    from edge.products.models import PrintTemplate, Product

Where = tuple[str | int, ...]


class KeyRelationError(RelationError):
    """A rule about a mapping key itself (not its value), so it is shown at the key."""


UNIT_DATA_AIS = ("01", "21", "10", "17", "11")
"""AIs the line has a value for on every unit: the product's GTIN, the serial, the work order's lot and dates."""
LABEL_DATA_AIS = ("00", "02", "37", "10", "17", "11")
"""AIs the line has a value for on a bundle, case or pallet label: the SSCC, the content GTIN and count, the
work order's lot and dates."""
SSCC_LEVELS = ("case", "pallet")
"""Levels whose label carries the SSCC the aggregation is reported under."""
ASSOCIATION_RULES = frozenset({"REQUIRES", "EXCLUDES"})


def _quoted(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def _listed(ais: tuple[str, ...] | list[str]) -> str:
    return ", ".join(_quoted(ai) for ai in ais)


def ai_value_problems(ai: str, value: str) -> list[str]:
    """Return what GS1 finds wrong with value as the data of ai on its own (length, characters, date, check digit)."""
    problems = []
    for issue in validate_pairs([(ai, value)]):
        if issue.rule in ASSOCIATION_RULES:
            # Which other AIs an AI needs is a rule of the whole code, checked where the code is assembled.
            continue
        message = f"{_quoted(value)}: {issue.message}"
        # Alone, the element's value starts right after "(AI)" in the text validate_pairs counts positions in.
        index = issue.position - len(ai) - 2
        if re.fullmatch(r"INVALID_\w+_CHARACTER", issue.rule) and 0 <= index < len(value):
            message += f" {_quoted(value[index])} (character {index + 1})"
        problems.append(message)
    return problems


def _span(rule: Lengths) -> str:
    if rule.shortest == rule.longest:
        return f"exactly {rule.shortest} characters"
    return f"{rule.shortest} to {rule.longest} characters"


def unknown_id(kind: str, given: str, known: Mapping[str, object]) -> str:
    """Word an unknown reference: what was given, the closest known id, and every known one."""
    names = sorted(known)
    return f'unknown {kind} "{given}"{registry.suggest(given, names)}; known: {", ".join(names) or "none"}'


def _template_ais(key: str, template: PrintTemplate) -> list[RelationError]:
    """Check a template's AIs on their own: some given, each known to GS1 once, valid together."""
    base: Where = ("templates", key, "ais")
    if not template.ais:
        return [RelationError('give the AIs the code carries, like ["01", "21", "10", "17"]', at=base)]
    problems: list[RelationError] = []
    first: dict[str, int] = {}
    for index, ai in enumerate(template.ais):
        at: Where = (*base, index)
        if ai in first:
            problems.append(RelationError(f'AI "{ai}" is on the code twice', at=at, first=(*base, first[ai])))
        elif ai_spec(ai) is None:
            problems.append(RelationError(f'unknown AI "{ai}": GS1 defines no such Application Identifier', at=at))
        first.setdefault(ai, index)
    known = [ai for ai in first if ai_spec(ai) is not None]
    # Values play no part in these rules: only which AIs appear together.
    problems.extend(
        RelationError(issue.message, at=(*base, first[issue.ai]))
        for issue in validate_pairs([(ai, "") for ai in known])
        if issue.rule in ASSOCIATION_RULES and issue.ai is not None
    )
    return problems


def _template_hri(key: str, template: PrintTemplate) -> list[RelationError]:
    """Check that every HRI placeholder names an AI the template's code carries."""
    problems = []
    for index, line in enumerate(template.hri):
        for ai in dict.fromkeys(ai for ai, _ in placeholders(line.text) if ai not in template.ais):
            message = f"placeholder {{{ai}}} names AI {ai}, which is not on this code ({', '.join(template.ais)})"
            problems.append(RelationError(message, at=("templates", key, "hri", index, "text")))
    return problems


def _label(key: str, template: PrintTemplate, product: Product) -> list[RelationError]:
    """Check a bundle, case or pallet label: its level is packed, it carries the SSCC and only data the line has."""
    problems: list[RelationError] = []
    if template.level not in product.levels:
        levels = ", ".join(product.levels) or "none"
        message = f"the product has no {template.level} level in hierarchy (levels: {levels}): add it or fix level"
        problems.append(RelationError(message, at=("templates", key, "level")))
    if template.level in SSCC_LEVELS and template.ais and "00" not in template.ais:
        message = f'a {template.level} label carries the SSCC the aggregation is reported under: add "00"'
        problems.append(RelationError(message, at=("templates", key, "ais")))
    for index, ai in enumerate(template.ais):
        if ai not in LABEL_DATA_AIS and ai_spec(ai) is not None:
            message = f'AI "{ai}" has no value on a {template.level} label: it may carry {_listed(LABEL_DATA_AIS)}'
            problems.append(RelationError(message, at=("templates", key, "ais", index)))
    return problems


def _templates(product: Product) -> list[RelationError]:
    problems: list[RelationError] = []
    if not any(template.level == "unit" for template in product.templates.values()):
        message = "give a template for the unit code (level unit, the default), keyed by the printer's device id"
        problems.append(RelationError(message, at=("templates",)))
    for key, template in product.templates.items():
        if not re.fullmatch(DEVICE_ID_PATTERN, key):
            message = f"{_quoted(key)} is not a device id: letters, digits, . _ - (at most 32), like printer-1"
            problems.append(KeyRelationError(message, at=("templates", key)))
        problems += _template_ais(key, template)
        problems += _template_hri(key, template)
        if template.level != "unit":
            problems += _label(key, template, product)
    return problems


def _extra_ais(product: Product) -> list[RelationError]:
    """Check the fixed AI values: known AIs whose values are not set elsewhere, each valid for its AI."""
    problems = []
    for ai, value in product.extra_ais.items():
        at: Where = ("extra_ais", ai)
        if ai in UNIT_DATA_AIS:
            message = f'AI "{ai}" is not fixed data: the line takes it from the product, serial pool or work order'
            problems.append(RelationError(message, at=at))
        elif ai_spec(ai) is None:
            problems.append(RelationError(f'unknown AI "{ai}": GS1 defines no such Application Identifier', at=at))
        else:
            problems += [RelationError(problem, at=at) for problem in ai_value_problems(ai, value)]
    return problems


def _aggregation(product: Product, pack: MarketPack) -> list[RelationError]:
    """Check that the product has every packing level the market wants aggregated."""
    problems = []
    for level in ("case", "pallet"):
        if getattr(pack.aggregation, level) == "required" and level not in product.levels:
            message = f"market {pack.id} requires {level} aggregation: add {{level: {level}, contains: N}} to hierarchy"
            problems.append(RelationError(message, at=("hierarchy",) if product.hierarchy else ("market",)))
    return problems


def _serials(product: Product, pack: MarketPack) -> list[RelationError]:
    """Check the product's serial format lies within the market's and its mode meets the randomisation rule."""
    serials = product.serials
    problems = []
    if serials.mode == "sequential" and pack.randomisation.rule == "random":
        message = f"market {pack.id} requires random serials (randomisation rule random): use mode random"
        problems.append(RelationError(message, at=("serials", "mode")))
    bad = "".join(dict.fromkeys(ch for ch in serials.characters if ch not in pack.serial.characters))
    if bad:
        at = "alphabet" if serials.charset == "custom" else "charset"
        shown = _quoted(bad if len(bad) <= 12 else bad[:12] + "...")
        count = "" if len(bad) <= 12 else f" ({len(bad)} in all)"
        message = f"characters {shown}{count} are not in the {pack.id} serial charset {pack.serial.charset}"
        problems.append(RelationError(message, at=("serials", at)))
    for name in ("length", "min_length", "max_length"):
        value = getattr(serials, name)
        if value is not None and not pack.serial.shortest <= value <= pack.serial.longest:
            message = f"market {pack.id} serials have {_span(pack.serial)}, not {value}"
            problems.append(RelationError(message, at=("serials", name)))
    return problems


def _unit_code(key: str, template: PrintTemplate, product: Product, pack: MarketPack) -> list[RelationError]:
    """Check a unit template carries what the market requires, only AIs it allows, each with a value."""
    base: Where = ("templates", key, "ais")
    problems: list[RelationError] = []
    missing = [ai for ai in pack.code.required if ai not in template.ais]
    if missing and template.ais:
        them = "it" if len(missing) == 1 else "them"
        message = f"market {pack.id} requires {_listed(missing)} on the code: add {them}"
        problems.append(RelationError(message, at=base))
    has_value = {*UNIT_DATA_AIS, *product.extra_ais, *pack.code.crypto_tail}
    for index, ai in enumerate(template.ais):
        if ai_spec(ai) is None or template.ais.index(ai) != index:
            continue
        if ai not in pack.code_ais:
            message = f'AI "{ai}" is not allowed on the {pack.id} code: it may carry {_listed(pack.code_ais)}'
            problems.append(RelationError(message, at=(*base, index)))
        elif ai not in has_value:
            message = f'AI "{ai}" has no value: give it under extra_ais, like "{ai}": "..."'
            problems.append(RelationError(message, at=(*base, index)))
    return problems


def _extra_on_code(product: Product, pack: MarketPack) -> list[RelationError]:
    """Check the fixed AI values against the market: allowed on its code, not issued per serial, of its length."""
    problems = []
    lengths = {rule.ai: rule for rule in pack.code.lengths}
    for ai, value in product.extra_ais.items():
        at: Where = ("extra_ais", ai)
        if ai in UNIT_DATA_AIS or ai_spec(ai) is None:
            continue
        if ai in pack.code.crypto_tail:
            message = f'AI "{ai}" of the {pack.id} crypto tail is issued with each serial, not fixed per product'
            problems.append(RelationError(message, at=at))
        elif ai not in pack.code_ais:
            message = f'AI "{ai}" is not allowed on the {pack.id} code: it may carry {_listed(pack.code_ais)}'
            problems.append(RelationError(message, at=at))
        elif ai in lengths and not lengths[ai].shortest <= len(value) <= lengths[ai].longest:
            message = f"market {pack.id} takes AI {ai} values of {_span(lengths[ai])}, not {len(value)}"
            problems.append(RelationError(message, at=at))
    return problems


def market_problems(product: Product, pack: MarketPack) -> list[RelationError]:
    """Return every way the product falls short of the market pack, each placed at a path from the product's root."""
    problems = _aggregation(product, pack) + _serials(product, pack) + _extra_on_code(product, pack)
    for key, template in product.templates.items():
        if template.level == "unit":
            problems += _unit_code(key, template, product, pack)
    return problems


def product_problems(
    product: Product, markets: Mapping[str, MarketPack], *, expected_id: str | None = None
) -> list[RelationError]:
    """Return every rule of the product that fails, its market's included, each placed at a path from its root."""
    problems: list[RelationError] = []
    if expected_id is not None and product.id != expected_id:
        message = f'"{product.id}" does not match the file name: it must be "{expected_id}"'
        problems.append(RelationError(message, at=("id",)))
    pack = markets.get(product.market)
    if pack is None:
        problems.append(RelationError(unknown_id("market", product.market, markets), at=("market",)))
    problems += _templates(product)
    problems += _extra_ais(product)
    if pack is not None:
        problems += market_problems(product, pack)
    return problems
