"""Applying a market pack: the size of its serial space, the randomisation proof, human-readable lines."""

from __future__ import annotations

import calendar
import re
import string
from datetime import UTC, date, datetime
from fractions import Fraction
from typing import TYPE_CHECKING

from edge.errors import EdgeError
from edge.markets.models import DATE_AIS

if TYPE_CHECKING:
    from collections.abc import Mapping

    from edge.markets.models import MarketPack


class MarketRuleError(EdgeError):
    """A market pack's rule cannot be met by what was asked (serial quantity, HRI data)."""


class RandomisationError(MarketRuleError):
    """Issuing the serials asked for would make them too easy to guess, or there are not that many."""


def serial_space(pack: MarketPack) -> int:
    """Return how many distinct serials the pack's serial format allows (every length, every character)."""
    size = len(pack.serial.characters)
    return sum(size**length for length in range(pack.serial.shortest, pack.serial.longest + 1))


def check_randomisation(pack: MarketPack, quantity: int, *, space: int | None = None) -> None:
    """Raise RandomisationError unless quantity serials fit and, for rule random, quantity / space is below the limit.

    quantity counts every serial issued for the GTIN in this format, this request included: the guess
    probability is a property of all serials out there, not of one batch. space defaults to serial_space(pack);
    a pool that draws from a narrower format (say 12 digits where the market allows 1 to 20) passes its own.
    """
    if quantity < 0:
        raise ValueError(f"quantity must not be negative, got {quantity}")
    space = serial_space(pack) if space is None else space
    if quantity > space:
        message = f"{pack.id}: {quantity:,} serials asked for, but the serial format allows only {space:,}"
        raise RandomisationError(message)
    limit = pack.randomisation.max_guess_probability
    if pack.randomisation.rule != "random" or limit is None:
        return
    # Exact arithmetic: at the boundary a float quotient could pass a ratio equal to the limit.
    if Fraction(quantity, space) >= Fraction(str(limit)):
        raise RandomisationError(
            f"{pack.id}: {quantity:,} of {space:,} possible serials issued: a guess succeeds with probability"
            f" {quantity / space:.3g}, and the market requires less than {limit:g} (1 in {round(1 / limit):,});"
            " use longer serials or a larger alphabet"
        )


def century_year(yy: int, today: date) -> int:
    """Return the four-digit year of a GS1 two-digit year: within 49 years back and 50 ahead of today (GS1 7.12)."""
    diff = yy - today.year % 100
    century = today.year // 100
    if diff >= 51:
        century -= 1
    elif diff <= -50:
        century += 1
    return century * 100 + yy


def format_gs1_date(value: str, fmt: str | None, today: date) -> str:
    """Format a YYMMDD value; DD=00 (month only) becomes the last day of the month; fmt None keeps the digits."""
    match = re.fullmatch(r"([0-9]{2})([0-9]{2})([0-9]{2})", value)
    if match is None:
        raise MarketRuleError(f'"{value}" is not a YYMMDD date')
    year = century_year(int(match[1]), today)
    month, day = int(match[2]), int(match[3])
    if not 1 <= month <= 12:
        raise MarketRuleError(f'"{value}" has no month {month:02d}')
    last = calendar.monthrange(year, month)[1]
    if day > last:
        raise MarketRuleError(f'"{value}" has no day {day:02d}: {year}-{month:02d} has {last} days')
    if fmt is None:
        return value
    fields = {"Y": f"{year:04d}", "y": f"{year % 100:02d}", "m": f"{month:02d}", "d": f"{day or last:02d}", "%": "%"}
    return re.sub(r"%(.)", lambda directive: fields[directive[1]], fmt)


def render_hri(pack: MarketPack, elements: Mapping[str, str], *, today: date | None = None) -> list[str]:
    """Return the pack's human-readable lines filled from elements (AI to value).

    A line naming an optional AI the elements lack is left out; a missing required AI is a MarketRuleError.
    Date AIs print with their placeholder's format, else the pack's date_format, else as encoded; the
    century follows GS1's sliding window around today (default: the current UTC date).
    """
    today = today or datetime.now(UTC).date()
    lines = []
    for template in pack.hri.lines:
        parts: list[str] = []
        for literal, ai, spec, _ in string.Formatter().parse(template):
            parts.append(literal)
            if ai is None:
                continue
            value = elements.get(ai)
            if value is None:
                if ai in pack.code.required:
                    raise MarketRuleError(f'{pack.id}: HRI line "{template}" needs AI {ai}, which the elements lack')
                break
            if ai in DATE_AIS:
                try:
                    value = format_gs1_date(value, spec or pack.hri.date_format, today)
                except MarketRuleError as exc:
                    raise MarketRuleError(f'{pack.id}: HRI line "{template}", AI {ai}: {exc}') from exc
            parts.append(value)
        else:
            lines.append("".join(parts))
    return lines
