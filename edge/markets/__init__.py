"""Market rule packs: each market's serialization rules as data (config/markets/*.yaml), checked at load."""

from __future__ import annotations

from edge.markets.checks import AiLike, AiLookup, pack_problems
from edge.markets.load import load_market, load_market_text, load_markets, market_ids
from edge.markets.models import (
    AggregationSpec,
    AiLength,
    CodeSpec,
    EpcisSpec,
    HriSpec,
    MarketPack,
    Randomisation,
    SerialSpec,
)
from edge.markets.rules import (
    MarketRuleError,
    RandomisationError,
    check_randomisation,
    render_hri,
    serial_space,
)

__all__ = [
    "AggregationSpec",
    "AiLength",
    "AiLike",
    "AiLookup",
    "CodeSpec",
    "EpcisSpec",
    "HriSpec",
    "MarketPack",
    "MarketRuleError",
    "Randomisation",
    "RandomisationError",
    "SerialSpec",
    "check_randomisation",
    "load_market",
    "load_market_text",
    "load_markets",
    "market_ids",
    "pack_problems",
    "render_hri",
    "serial_space",
]
