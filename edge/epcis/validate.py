"""Checking EPCIS documents against GS1's official schemas, which Lineside does not ship (GS1's licence).

``EpcisSchemas.locate`` finds them on the machine: a directory laid out like the gs1/EPCIS repository
(``EPCIS-JSON-Schema.json``, ``XSD/``), with the EPCIS 1.2 XSDs in its ``XSD-1.2/`` or where
``LINESIDE_EPCIS12_XSD`` points. Schema imports are resolved inside the schema's own folder, never over the network.
"""

from __future__ import annotations

import bisect
import json
import os
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from jsonschema import Draft7Validator
from jsonschema.exceptions import best_match
from lxml import etree

from edge.errors import EdgeError
from edge.registry import suggest

if TYPE_CHECKING:
    from collections.abc import Iterable

    from jsonschema.exceptions import ValidationError

__all__ = [
    "DEFAULT_SCHEMAS_DIR",
    "ENV_SCHEMAS",
    "ENV_XSD12",
    "EpcisSchemas",
    "SchemaUnavailableError",
    "validate_document",
]

ENV_SCHEMAS = "LINESIDE_EPCIS_SCHEMAS"
"""A directory laid out like the gs1/EPCIS repository: EPCIS-JSON-Schema.json, XSD/, optionally XSD-1.2/."""
ENV_XSD12 = "LINESIDE_EPCIS12_XSD"
"""A directory holding EPCglobal-epcis-1_2.xsd and the XSDs it imports."""
DEFAULT_SCHEMAS_DIR = Path("/usr/share/lineside/epcis-schemas")
JSON_SCHEMA = "EPCIS-JSON-Schema.json"
XSD2_MAIN = "EPCglobal-epcis-2_0.xsd"
XSD12_MAIN = "EPCglobal-epcis-1_2.xsd"
VENV_XSD12 = Path(sys.prefix) / "share" / "epcis-1.2-xsd"
"""Where scripts/test puts the 1.2 XSDs in a development checkout, looked at last."""
MAX_PROBLEMS = 100
_CBV_URIS = ("urn:epcglobal:cbv:", "https://ref.gs1.org/cbv/", "http://ns.gs1.org/cbv/", "https://ns.gs1.org/cbv/")

# Root element namespace -> (EPCIS version, the XSD that declares the root).
_XML_ROOTS = {
    "urn:epcglobal:epcis:xsd:2": ("2.0", XSD2_MAIN),
    "urn:epcglobal:epcis-query:xsd:2": ("2.0", "EPCglobal-epcis-query-2_0.xsd"),
    "urn:epcglobal:epcis-masterdata:xsd:2": ("2.0", "EPCglobal-epcis-masterdata-2_0.xsd"),
    "urn:epcglobal:epcis:xsd:1": ("1.2", XSD12_MAIN),
    "urn:epcglobal:epcis-query:xsd:1": ("1.2", "EPCglobal-epcis-query-1_2.xsd"),
    "urn:epcglobal:epcis-masterdata:xsd:1": ("1.2", "EPCglobal-epcis-masterdata-1_2.xsd"),
}


class SchemaUnavailableError(EdgeError):
    """The official schema a document needs was not found on this machine."""


@dataclass(frozen=True, slots=True)
class EpcisSchemas:
    """Where the official schemas are: each part may be missing, and is then reported when a document needs it."""

    json_schema: Path | None = None
    """EPCIS-JSON-Schema.json (EPCIS 2.0 JSON/JSON-LD)."""
    xsd2: Path | None = None
    """The folder of EPCglobal-epcis-2_0.xsd and its imports."""
    xsd12: Path | None = None
    """The folder of EPCglobal-epcis-1_2.xsd and its imports."""

    @classmethod
    def locate(cls, explicit: Path | None = None) -> EpcisSchemas | None:
        """Find the schemas in explicit (only), else in $LINESIDE_EPCIS_SCHEMAS or /usr/share/lineside/epcis-schemas.

        The 1.2 XSDs: that directory's XSD-1.2/, else $LINESIDE_EPCIS12_XSD, else share/epcis-1.2-xsd of the
        running Python environment. None when no schema at all is found.
        """
        if explicit is not None:
            candidates = [explicit]
        else:
            given = os.environ.get(ENV_SCHEMAS)
            candidates = [Path(given)] if given else []
            candidates.append(DEFAULT_SCHEMAS_DIR)
        base = next((path for path in candidates if _has_any(path)), None)
        json_schema = base / JSON_SCHEMA if base is not None and (base / JSON_SCHEMA).is_file() else None
        xsd2 = base / "XSD" if base is not None and (base / "XSD" / XSD2_MAIN).is_file() else None
        folders = [base / "XSD-1.2"] if base is not None else []
        given12 = os.environ.get(ENV_XSD12)
        folders += [Path(given12)] if given12 else []
        folders.append(VENV_XSD12)
        xsd12 = next((folder for folder in folders if (folder / XSD12_MAIN).is_file()), None)
        if json_schema is None and xsd2 is None and xsd12 is None:
            return None
        return cls(json_schema, xsd2, xsd12)


def _has_any(path: Path) -> bool:
    return (path / JSON_SCHEMA).is_file() or (path / "XSD" / XSD2_MAIN).is_file() or (path / "XSD-1.2").is_dir()


def validate_document(data: bytes, schemas: EpcisSchemas, *, max_problems: int = MAX_PROBLEMS) -> list[str]:
    """Return the document's problems against the official schema of its syntax and version; empty when valid.

    JSON is checked against the EPCIS 2.0 JSON Schema (Draft 7, formats checked), XML against the XSD of its
    namespace (2.0 or 1.2). Each problem says where: the event index and JSON path, or the XML line.
    SchemaUnavailableError when the schema the document needs is not in schemas.
    """
    text = data.lstrip(b"\xef\xbb\xbf \t\r\n")
    if text.startswith(b"{"):
        return _json_problems(text, schemas, max_problems)
    if text.startswith(b"<"):
        return _xml_problems(text, schemas, max_problems)
    return ["not an EPCIS document: neither JSON (starting with {) nor XML (starting with <)"]


# JSON


@cache
def _json_validator(path: Path) -> Draft7Validator:
    schema = json.loads(path.read_text(encoding="utf-8"))
    return Draft7Validator(schema, format_checker=Draft7Validator.FORMAT_CHECKER)


def _json_problems(text: bytes, schemas: EpcisSchemas, max_problems: int) -> list[str]:
    if schemas.json_schema is None:
        message = f"cannot check EPCIS JSON: {JSON_SCHEMA} not found (set {ENV_SCHEMAS} to a copy of gs1/EPCIS)"
        raise SchemaUnavailableError(message)
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        return [f"line {exc.lineno} column {exc.colno}: not JSON: {exc.msg}"]
    except UnicodeDecodeError as exc:
        return [f"byte {exc.start}: not UTF-8 text"]
    validator = _json_validator(schemas.json_schema)
    found: dict[tuple[Any, ...], list[ValidationError]] = {}
    for error in validator.iter_errors(document):
        found.setdefault(tuple(error.absolute_path), []).append(error)
    # A branch refused as a whole (anyOf of an event's shapes) is explained better by the problem found inside it.
    paths = [
        path for path in found if not any(len(other) > len(path) and other[: len(path)] == path for other in found)
    ]
    problems: list[str] = []
    for path in sorted(paths, key=lambda p: [(isinstance(part, str), str(part).zfill(12)) for part in p]):
        problems += dict.fromkeys(_json_problem(error) for error in found[path])
        if len(problems) >= max_problems:
            problems.append(f"... stopped after {max_problems} problems")
            break
    return problems


def _json_problem(error: ValidationError) -> str:
    """Word one schema error: where (event index, JSON path) and the most specific reason."""
    path = list(error.absolute_path)
    leaf = error
    # anyOf / if-then errors carry the real reason in their context: follow the most relevant branch down.
    while leaf.context:
        leaf = best_match(leaf.context)
    where = _json_path(path) or "document"
    if path[:2] == ["epcisBody", "eventList"] and len(path) > 2:
        where = f"event {path[2]} ({where})"
    reason = _vocabulary_reason(error, path) or leaf.message
    return f"{where}: {reason}"


def _vocabulary_reason(error: ValidationError, path: list[Any]) -> str | None:
    """Explain a CBV value the schema refused (a name from its enum, or a URI outside the CBV), else None."""
    if error.validator != "anyOf" or not isinstance(error.instance, str):
        return None
    branches = cast("list[ValidationError]", error.context or [])
    enums = [e for e in branches if e.validator == "enum" and list(e.absolute_path) == path]
    if not enums:
        return None
    value = error.instance
    choices = [str(choice) for choice in cast("list[object]", enums[0].validator_value)]
    if value.startswith(_CBV_URIS):
        name = value.rsplit(":", 1)[-1].rsplit("-", 1)[-1]
        hint = f' "{name}"' if name in choices else " short name"
        return f'"{value}" is a CBV URI: EPCIS 2.0 JSON writes the{hint} instead'
    return f'"{value}" is not a CBV name{suggest(value, choices)}, nor a URI of another vocabulary'


def _json_path(path: Iterable[Any]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _short(value: object) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 80 else text[:77] + "..."


# XML


class _LocalResolver(etree.Resolver):
    """Resolve every schema import or include to the file of the same name in one folder, or to nothing."""

    def __init__(self, folder: Path) -> None:
        super().__init__()
        self.folder = folder

    def resolve(self, system_url: str, _public_id: str, context: object = None) -> object:
        """Return the local file of the same name, or an empty document when the folder has none."""
        # Some copies of the XSDs import "./schemas/EPCglobal.xsd": only the file name is trusted.
        local = self.folder / Path(system_url or "").name
        resolver = cast("Any", self)  # lxml-stubs leave out resolve_filename
        if local.is_file():
            return resolver.resolve_filename(str(local), context)
        return resolver.resolve_string("", context)


@cache
def _xml_schema(path: Path) -> etree.XMLSchema:
    parser = etree.XMLParser(no_network=True, resolve_entities=False)
    parser.resolvers.add(_LocalResolver(path.parent))
    return etree.XMLSchema(etree.parse(str(path), parser))


def _xml_problems(text: bytes, schemas: EpcisSchemas, max_problems: int) -> list[str]:
    parser = etree.XMLParser(no_network=True, resolve_entities=False)
    try:
        tree = etree.fromstring(text, parser).getroottree()
    except etree.XMLSyntaxError as exc:
        line = exc.lineno or 1
        return [f"line {line}: not well-formed XML: {exc.msg}"]
    root = tree.getroot()
    namespace = etree.QName(root).namespace or ""
    known = _XML_ROOTS.get(namespace)
    if known is None:
        return [f"line {root.sourceline}: not an EPCIS document: root element {root.tag}"]
    version, main = known
    folder = schemas.xsd2 if version == "2.0" else schemas.xsd12
    if folder is None:
        hint = f"set {ENV_SCHEMAS} to a copy of gs1/EPCIS" if version == "2.0" else f"set {ENV_XSD12}"
        raise SchemaUnavailableError(f"cannot check EPCIS {version} XML: its XSDs were not found ({hint})")
    schema = _xml_schema(folder / main)
    if schema.validate(tree):
        return []
    starts = _event_lines(root)
    problems: list[str] = []
    for entry in cast("Iterable[Any]", schema.error_log):
        where = f"line {entry.line}"
        index = bisect.bisect_right(starts, entry.line) - 1
        if index >= 0:
            where += f" (event {index})"
        problems.append(f"{where}: {entry.message}")
        if len(problems) >= max_problems:
            problems.append(f"... stopped after {max_problems} problems")
            break
    return problems


def _event_lines(root: etree._Element) -> list[int]:
    """Return the first line of every event of the document's EventList, in order."""
    for event_list in root.iter("EventList"):
        return [cast("int", child.sourceline) for child in event_list.iterchildren(etree.Element)]
    return []
