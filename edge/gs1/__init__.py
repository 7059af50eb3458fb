"""GS1 syntax: the Application Identifier table, element strings, check digits and the content checks."""

from __future__ import annotations

from edge.gs1.ai import AiSpec, Component, ai_spec, all_ais
from edge.gs1.checks import check_pair, gs1_check_digit
from edge.gs1.element import (
    GS,
    Element,
    ElementStrings,
    build,
    build_hri,
    parse,
    parse_and_validate,
    parse_hri,
    validate,
    validate_pairs,
)
from edge.gs1.errors import Gs1Issue, Gs1SyntaxError, Gs1ValidationError

__all__ = [
    "GS",
    "AiSpec",
    "Component",
    "Element",
    "ElementStrings",
    "Gs1Issue",
    "Gs1SyntaxError",
    "Gs1ValidationError",
    "ai_spec",
    "all_ais",
    "build",
    "build_hri",
    "check_pair",
    "gs1_check_digit",
    "parse",
    "parse_and_validate",
    "parse_hri",
    "validate",
    "validate_pairs",
]
