"""Reading one YAML (or JSON) document into a model, every problem reported at once at its FILE:LINE:COL."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel, ValidationError

from edge.config.explain import issue_for
from edge.errors import ConfigError, ConfigIssue
from edge.yamlpos import Document, load_positioned

if TYPE_CHECKING:
    from collections.abc import Iterable

M = TypeVar("M", bound=BaseModel)


def kind_of(value: object) -> str:
    """Describe a YAML value that is not the mapping expected, like: a list, or the value "text"."""
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "an empty value"
    return f"the value {json.dumps(value, ensure_ascii=False, default=str)}"


def in_file_order(issues: Iterable[ConfigIssue]) -> ConfigError:
    """Return one ConfigError listing issues once each (a problem may be found twice), in file order."""
    return ConfigError(sorted(dict.fromkeys(issues), key=lambda issue: (issue.line, issue.column)))


def mapping_document(text: str, filename: str, *, empty: str, top_level: str) -> Document:
    """Load text with node positions; ConfigError with empty or top_level (plus what was found) unless a mapping."""
    doc = load_positioned(text, filename)
    if doc is None or doc.data is None:
        raise ConfigError([ConfigIssue(filename, 1, 1, empty)])
    if not isinstance(doc.data, dict):
        at = doc.root.value
        raise ConfigError([ConfigIssue(filename, at.line, at.column, f"{top_level}, not {kind_of(doc.data)}")])
    return doc


def validate_document(
    model: type[M],
    doc: Document,
    filename: str,
    issues: list[ConfigIssue],
    *,
    context: dict[str, Any] | None = None,
) -> M:
    """Validate doc as model; on failure raise every issue so far plus the model's, in file order."""
    try:
        return model.model_validate(doc.data, context=context)
    except ValidationError as exc:
        issues.extend(issue_for(error, doc, filename, root=model) for error in exc.errors(include_url=False))
        raise in_file_order(issues) from exc
