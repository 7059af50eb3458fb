"""Turning pydantic validation errors into compiler-style messages at the YAML node they concern."""

from __future__ import annotations

import json
import re
import types
from datetime import date, datetime
from typing import TYPE_CHECKING, Annotated, Union, get_args, get_origin

from pydantic import BaseModel

from edge import registry
from edge.config.models import LineConfig, RelationError
from edge.errors import ConfigIssue, UnknownDriverError

if TYPE_CHECKING:
    from pydantic_core import ErrorDetails

    from edge.yamlpos import Document, NodePath

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
_CHOICE = re.compile(r"'([^']*)'|(-?[0-9][0-9.]*)")
_RANGES = {
    "greater_than": ("gt", "must be greater than"),
    "greater_than_equal": ("ge", "must be at least"),
    "less_than": ("lt", "must be less than"),
    "less_than_equal": ("le", "must be at most"),
}


def dotted(path: NodePath) -> str:
    """Return a readable path such as ``devices[0].timeouts.connect_s``."""
    out = ""
    for part in path:
        if isinstance(part, int) and not isinstance(part, bool):
            out += f"[{part}]"
        elif isinstance(part, str) and _NAME.fullmatch(part):
            out += f".{part}" if out else part
        else:
            out += f"[{_literal(part)}]"
    return out


def _literal(value: object) -> str:  # noqa: PLR0911 - one return per YAML type
    """Write the value the way YAML shows it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return str(value)


def _describe(value: object) -> str:
    """Name what kind of thing the value is, for "expected X, got Y"."""
    if value is None:
        return "an empty value"
    if isinstance(value, datetime):
        return f"the timestamp {value.isoformat()}"
    if isinstance(value, date):
        return f"the date {value.isoformat()}"
    if isinstance(value, bytes):
        return "binary data"
    return _literal(value)


def _typed(value: object) -> str:
    """How YAML typed a plain scalar, for "YAML reads no as the boolean false"."""
    if isinstance(value, bool):
        return f"the boolean {_literal(value)}"
    if isinstance(value, int | float):
        return f"the number {_literal(value)}"
    if value is None:
        return "null (no value)"
    return _describe(value)


def _choices(expected: str) -> list[str]:
    return [quoted or number for quoted, number in _CHOICE.findall(expected)]


def _suggest(given: str, choices: list[str]) -> str:
    lowered = given.lower()
    for choice in choices:
        if choice.lower() == lowered and choice != given:
            return f' (did you mean "{choice}"?)'
    return registry.suggest(given, choices)


def _is_number_text(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _not_a_number(what: str, value: object, field: object) -> str:
    """Explain why a value is not the number wanted, with the fix when it is text."""
    if isinstance(value, str):
        # Keys ending in _s hold seconds: "5s" or "2 min" is the mistake to expect there.
        if isinstance(field, str) and field.endswith("_s"):
            return f"{_literal(value)} is text; give the duration as a plain number of seconds, like 5 or 0.5"
        if _is_number_text(value):
            return f"expected {what}, got the text {_literal(value)}; write it without quotes"
    return f"expected {what}, got {_describe(value)}"


def _value_problem(error: ErrorDetails, plain: str | None, field: object) -> str:  # noqa: PLR0911, PLR0912 - one branch per error kind reads best as a flat table
    """Say what is wrong with a value in plain words, showing what was written."""
    kind = error["type"]
    value = error["input"]
    ctx = error.get("ctx", {})
    yaml_typed = plain is not None and not isinstance(value, str)
    shown = plain if yaml_typed and plain else _literal(value)
    if kind == "value_error":
        return str(ctx.get("error", error["msg"]))
    if kind == "string_type":
        if yaml_typed and plain:
            return f'YAML reads {plain} as {_typed(value)}, not as text; quote it: "{plain}"'
        return f"expected text, got {_describe(value)}"
    if kind in {"int_type", "int_parsing", "int_from_float"}:
        return _not_a_number("a whole number", value, field)
    if kind in {"float_type", "float_parsing"}:
        return _not_a_number("a number", value, field)
    if kind in {"bool_type", "bool_parsing"}:
        return f"expected true or false, got {_describe(value)}"
    if kind in _RANGES:
        bound, words = _RANGES[kind]
        return f"{shown} {words} {_literal(ctx.get(bound))}"
    if kind == "string_pattern_mismatch":
        return f"{shown} must match {str(ctx.get('pattern', '')).removeprefix('^').removesuffix('$')}"
    if kind == "string_too_short":
        if ctx.get("min_length") == 1:
            return "must not be empty"
        return f"{shown} is too short: at least {ctx.get('min_length')} characters"
    if kind == "string_too_long":
        return f"{shown} is too long: at most {ctx.get('max_length')} characters"
    if kind in {"enum", "literal_error"}:
        choices = _choices(str(ctx.get("expected", "")))
        listed = ", ".join(choices)
        hint = _suggest(plain if plain is not None else str(value), choices)
        # Only worth saying when text was wanted: a number among numbers needs no YAML lesson.
        if yaml_typed and not all(_is_number_text(choice) for choice in choices):
            return f"YAML reads {plain} as {_typed(value)}; expected one of {listed}{hint}"
        return f"{shown} is not one of {listed}{hint}"
    if kind in {"model_type", "model_attributes_type", "dict_type"}:
        return f"expected a mapping of keys, got {_describe(value)}"
    if kind in {"list_type", "tuple_type"}:
        return f"expected a list, got {_describe(value)}"
    if kind == "path_type":
        return f"expected a path, got {_describe(value)}"
    return f"{error['msg']} (got {_describe(value)})"


def _annotation_model(annotation: object) -> type[BaseModel] | None:
    """Return the model a field holds, looking through Optional, Annotated, list and tuple."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    origin = get_origin(annotation)
    if origin in {Union, types.UnionType, Annotated, list, tuple}:
        for arg in get_args(annotation):
            found = _annotation_model(arg)
            if found is not None:
                return found
    return None


def _driver_options(data: object, index: object) -> type[BaseModel] | None:
    try:
        device = data["devices"][index]  # type: ignore[index]
        return registry.driver_class(device["driver"]).Options
    except (LookupError, TypeError, UnknownDriverError, ImportError, AttributeError):
        return None


def model_at(path: NodePath, data: object, root: type[BaseModel] = LineConfig) -> type[BaseModel] | None:
    """Return the model that validates the mapping at path below root, or None when none does."""
    model: type[BaseModel] | None = root
    index = 0
    while index < len(path) and model is not None:
        part = path[index]
        if len(path) >= 3 and index == 2 and path[0] == "devices" and part == "options":
            model = _driver_options(data, path[1])
        else:
            field = model.model_fields.get(part) if isinstance(part, str) else None
            if field is None:
                return None
            model = _annotation_model(field.annotation)
            # A list of models: the next part is the item's index.
            if get_origin(field.annotation) in {list, tuple}:
                index += 1
        index += 1
    return model


def issue_for(
    error: ErrorDetails, doc: Document, filename: str, *, root: type[BaseModel] = LineConfig
) -> ConfigIssue:
    """Place one pydantic error at its YAML node and word it for a line integrator; root is the validated model."""
    path: NodePath = tuple(error["loc"])
    kind = error["type"]
    if kind == "missing":
        parent = path[:-1]
        node, found = doc.locate(parent)
        # Point at "serial:" rather than at the first key below it; a list item has no key.
        at = node.key if found and node.key is not None else node.value
        where = f"{dotted(parent)}: " if parent else ""
        return ConfigIssue(filename, at.line, at.column, f"{where}missing required key {_literal(path[-1])}")
    if kind == "extra_forbidden":
        parent = path[:-1]
        node, found = doc.locate(path)
        at = node.key if found and node.key is not None else node.value
        model = model_at(parent, doc.data, root)
        hint = _suggest(str(path[-1]), list(model.model_fields)) if model is not None else ""
        where = f" in {dotted(parent)}" if parent else ""
        return ConfigIssue(filename, at.line, at.column, f"unknown key {_literal(path[-1])}{where}{hint}")
    if kind == "invalid_key":
        parent = path[:-1]
        node, found = doc.locate(path)
        at = node.key if found and node.key is not None else node.value
        where = f"{dotted(parent)}: " if parent else ""
        return ConfigIssue(filename, at.line, at.column, f"{where}key {_literal(path[-1])} must be text")
    if path and path[-1] == "[key]":
        node, found = doc.locate(path[:-2])
        key_node = node.children.get(path[-2]) if found else None
        at = key_node.key if key_node is not None and key_node.key is not None else node.value
        message = f"{dotted(path[:-2])}: key {_literal(path[-2])} must be text"
        return ConfigIssue(filename, at.line, at.column, message)
    cause = error.get("ctx", {}).get("error")
    if isinstance(cause, RelationError):
        return relation_issue(cause, path, doc, filename)
    node, found = doc.locate(path)
    problem = _value_problem(error, node.plain if found else None, path[-1] if path else None)
    where = f"{dotted(path)}: " if path else ""
    return ConfigIssue(filename, node.value.line, node.value.column, where + problem)


def relation_issue(error: RelationError, base: NodePath, doc: Document, filename: str) -> ConfigIssue:
    """Place an error between keys at the key it names, citing the earlier one for duplicates."""
    path = (*base, *error.at)
    node, _ = doc.locate(path)
    message = f"{dotted(path)}: {error}"
    if error.first is not None:
        first, _ = doc.locate((*base, *error.first))
        message += f" (first at line {first.value.line})"
    return ConfigIssue(filename, node.value.line, node.value.column, message)
