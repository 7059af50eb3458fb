"""JSON Schema of the line configuration, for editors, with each installed driver's options."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic.json_schema import JsonSchemaMode, models_json_schema

from edge import registry
from edge.config.models import LineConfig
from edge.errors import UnknownDriverError

if TYPE_CHECKING:
    from pydantic import BaseModel

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def _options_models() -> dict[str, type[BaseModel]]:
    models: dict[str, type[BaseModel]] = {}
    for name in registry.driver_names():
        try:
            models[name] = registry.driver_class(name).Options
        except (UnknownDriverError, ImportError, AttributeError):
            # A driver that cannot load is reported when a config uses it; here it just gets no options schema.
            continue
    return models


def config_json_schema() -> dict[str, Any]:
    """Return the JSON Schema (draft 2020-12) of a line configuration file."""
    options = _options_models()
    wanted: list[tuple[type[BaseModel], JsonSchemaMode]] = [(LineConfig, "validation")]
    wanted += [(model, "validation") for model in dict.fromkeys(options.values())]
    refs, combined = models_json_schema(wanted, ref_template="#/$defs/{model}")
    defs: dict[str, Any] = combined["$defs"]
    root: dict[str, Any] = defs.pop(LineConfig.__name__)
    device = defs["DeviceConfig"]
    names = registry.driver_names()
    if names:
        device["properties"]["driver"]["enum"] = names
    # One if/then per driver: editors then complete and check options for the driver named beside them.
    device["allOf"] = [
        {
            "if": {"properties": {"driver": {"const": name}}, "required": ["driver"]},
            "then": {"properties": {"options": refs[model, "validation"]}},
        }
        for name, model in options.items()
    ]
    if not device["allOf"]:
        del device["allOf"]
    return {
        "$schema": SCHEMA_DIALECT,
        "title": "Lineside line configuration",
        **{key: value for key, value in root.items() if key != "title"},
        "$defs": defs,
    }
