"""The GS1 EPCIS event hash (CBV 2.0 "EPCIS Event Hash ID"): ``ni:///sha-256;<hex>?ver=CBV2.0``.

``document_event_hashes`` reads any EPCIS document (JSON/JSON-LD or XML, 1.2 or 2.0, capture or query) and hashes
its events the way the GS1 reference generator (RalphTro/epcis-event-hash-generator) does: the document becomes
a tree of (name, text, children), fields are taken in the canonical property order, the rest (ILMD, extensions,
business transactions, sources, destinations) is appended sorted, and every value is canonicalised (``_canon``).
Where the reference fails on a document (a transaction without a type, a time rounding up to the next second)
this hashes it anyway; everything else it reproduces, quirks included.

``event_hash`` hashes one of our own events directly and fast. It gives what the document path gives for the
event alone in the JSON-LD our writer produces, whose context binds ``cbvmda`` to ``urn:epcglobal:cbv:mda:`` and
``lineside`` to LINESIDE_NS: ILMD is hashed as ``{urn:epcglobal:cbv:mda:}lotNumber``. The XML binding's cbvmda
namespace has no trailing colon, so the reference hashes an XML rendering of an event with ILMD differently; the
JSON-LD form is the one the line sends upstream. (The reference also lets a bare word in one event be replaced
because of another event of the same document; an event is hashed here as if alone.)
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import TYPE_CHECKING, TypeAlias, cast

from lxml import etree

from edge.epcis._canon import (
    CBV,
    CBV_VOCABULARIES,
    DL_ESCAPES,
    GS1_VOC,
    SGTIN_SERIAL,
    canonical_time,
    canonical_value,
    is_vocabulary_uri,
    normalise_id,
    utc_millis,
)
from edge.epcis.model import LINESIDE_NS, LINESIDE_PREFIX
from edge.errors import EdgeError

if TYPE_CHECKING:
    from collections.abc import Iterable
    from datetime import datetime

    from edge.epcis.model import EpcisEvent

__all__ = [
    "EpcisHashError",
    "PrehashTemplate",
    "document_event_hashes",
    "document_events_with_ids",
    "document_prehashes",
    "event_hash",
    "hash_prehash",
    "hash_time",
    "prehash",
]


class EpcisHashError(EdgeError):
    """An EPCIS document or event cannot be hashed; the message says what is wrong and where."""


def hash_prehash(text: str) -> str:
    """Return the event hash ID of a pre-hash string."""
    try:
        data = text.encode()
    except UnicodeEncodeError as exc:
        raise EpcisHashError(f"pre-hash string cannot be encoded as UTF-8: {exc}") from None
    return "ni:///sha-256;" + hashlib.sha256(data).hexdigest() + "?ver=CBV2.0"


# --- the document tree --------------------------------------------------------------------------------------


class _Node:
    """An element, attribute or JSON member: its name, its text and its children."""

    __slots__ = ("children", "name", "text")

    def __init__(self, name: str, text: str, children: list[_Item]) -> None:
        self.name = name
        self.text = text
        self.children = children


class _Pair:
    """A business transaction, source or destination: its type and its value, kept in that order."""

    __slots__ = ("first", "second")

    def __init__(self, first: _Node, second: _Node) -> None:
        self.first = first
        self.second = second


_Item: TypeAlias = "_Node | _Pair"
_SortKey: TypeAlias = "tuple[int, object, object, object]"
_PAIRED = ("bizTransaction", "source", "destination")
_PAIR_LISTS = ("bizTransactionList", "sourceList", "destinationList")


def _sort_key(item: _Item) -> _SortKey:
    """Order as the reference orders its (name, text, children) tuples."""
    if isinstance(item, _Pair):
        return (1, _sort_key(item.first), _sort_key(item.second), None)
    return (0, item.name, item.text, [_sort_key(child) for child in item.children])


# --- the pre-hash string of a tree --------------------------------------------------------------------------

_Order: TypeAlias = "tuple[tuple[str | None, _Order | None], ...]"
_EPC: _Order = (("epc", None),)
_QUANTITIES: _Order = (("quantityElement", (("epcClass", None), ("quantity", None), ("uom", None))),)
# The reference lists the paired lists with a child pattern no child can match: only their extensions are
# taken in place, their transactions, sources and destinations go to the end with the extensions.
_NOTHING: _Order = ((None, None),)
# The reference's order, which is its README's table but for certificationInfo (taken third) and parentID
# (taken before epcList).
_ORDER: _Order = (
    ("eventTime", None), ("eventTimeZoneOffset", None), ("certificationInfo", None), ("parentID", None),
    ("epcList", _EPC), ("inputEPCList", _EPC), ("childEPCs", _EPC), ("quantityList", _QUANTITIES),
    ("childQuantityList", _QUANTITIES), ("inputQuantityList", _QUANTITIES), ("outputEPCList", _EPC),
    ("outputQuantityList", _QUANTITIES), ("action", None), ("transformationID", None), ("bizStep", None),
    ("disposition", None), ("persistentDisposition", (("set", None), ("unset", None))),
    ("readPoint", (("id", None),)), ("bizLocation", (("id", None),)), ("bizTransactionList", _NOTHING),
    ("sourceList", _NOTHING), ("destinationList", _NOTHING),
    ("sensorElementList", (("sensorElement", (
        ("sensorMetadata", tuple((name, None) for name in (
            "time", "startTime", "endTime", "deviceID", "deviceMetadata", "rawData", "dataProcessingMethod",
            "bizRules",
        ))),
        ("sensorReport", tuple((name, None) for name in (
            "type", "exception", "deviceID", "deviceMetadata", "rawData", "dataProcessingMethod", "time",
            "microorganism", "chemicalSubstance", "value", "component", "stringValue", "booleanValue",
            "hexBinaryValue", "uriValue", "minValue", "maxValue", "meanValue", "sDev", "percRank", "percValue", "uom",
            "coordinateReferenceSystem",
        ))),
    )),)),
)  # fmt: skip
_NOT_HASHED = frozenset({"recordTime", "eventID", "type", "errorDeclaration"})


class _FieldError(ValueError):
    """A value the hash cannot canonicalise, with the path of the field holding it."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")


def _event_prehash(event: _Node) -> str:
    """Return the pre-hash string of an event tree; consumes the tree."""
    items = event.children
    ordered = _ordered(items, _ORDER, "")
    rest = [item for item in items if not (isinstance(item, _Node) and item.name in _NOT_HASHED)]
    return "eventType=" + event.name + ordered + (_generic(rest) if rest else "")


def _ordered(items: list[_Item], order: _Order, path: str) -> str:
    """Return the fields of `order` found in items, each name's values sorted; removes what it used up."""
    extensions = _nested_extensions(items)
    out = ""
    for name, sub_order in order:
        values = []
        for child in [item for item in items if isinstance(item, _Node) and item.name == name]:
            value = _field(child, sub_order, path)
            if value:
                values.append(value)
            if not child.children:
                items.remove(child)
        if values:
            values.sort()
            out += "".join(values)
    if extensions:
        out += _generic(extensions)
    return out


def _nested_extensions(items: list[_Item]) -> list[_Item]:
    """Take out the user extensions of a standard field (readPoint, sensorReport...) to go after its own fields.

    As the reference does: only in a field with two or more children, never at event level (a level holding
    eventTime or action), and only for namespaces ending in '/'; other extensions stay for the end of the event.
    """
    if len(items) <= 1:
        return []
    for item in items:
        if isinstance(item, _Node) and ("eventTime" in item.name or "action" in item.name):
            return []
    found: list[_Item] = [item for item in items if isinstance(item, _Node) and "{" in item.name and "/}" in item.name]
    for item in found:
        items.remove(item)
    return found


def _field(node: _Node, sub_order: _Order | None, path: str) -> str:
    """Return name=value of one field, followed by its children in sub_order; empty when it holds nothing."""
    where = f"{path}/{node.name}" if path else node.name
    nested = _ordered(node.children, sub_order, where) if sub_order else ""
    text = node.text.strip()
    if text:
        lowered = node.name.lower()
        if "time" in lowered and "offset" not in lowered:
            try:
                text = canonical_time(text)
            except ValueError as exc:
                raise _FieldError(where, str(exc)) from None
        else:
            text = canonical_value(text)
        text = "=" + text
    return node.name + text + nested if text or nested else ""


def _generic(items: list[_Item]) -> str:
    """Return fields outside the property order: name=value and children, sorted at each level."""
    values = []
    for item in items:
        if isinstance(item, _Pair):
            values.append(_generic([item.first, item.second]))
            continue
        text = item.text.strip()
        if text:
            text = "=" + canonical_value(text)
        values.append(item.name + text + _generic(item.children))
    # A type and its transaction, source or destination keep their order: type first (XML; JSON as written).
    if len(items) > 1 and not any(isinstance(item, _Node) and item.name in _PAIRED for item in items):
        values.sort()
    return "".join(values)


# --- documents ----------------------------------------------------------------------------------------------


def document_event_hashes(data: bytes) -> list[str]:
    """Return the hash of every event of an EPCIS document (JSON/JSON-LD or XML, auto-detected), in document order."""
    return [hash_prehash(text) for _, text in _document(data)]


def document_events_with_ids(data: bytes) -> list[tuple[str | None, str]]:
    """Return, per event in document order, the eventID the document states (None if none) and the computed hash."""
    return [(event_id, hash_prehash(text)) for event_id, text in _document(data)]


def document_prehashes(data: bytes) -> list[str]:
    """Return the pre-hash string of every event of an EPCIS document, in document order."""
    return [text for _, text in _document(data)]


def _document(data: bytes) -> list[tuple[str | None, str]]:
    start = data[3:] if data.startswith(b"\xef\xbb\xbf") else data
    start = start.lstrip()
    if start.startswith(b"{"):
        events, ignored = _json_events(data)
    elif start.startswith(b"<"):
        events, ignored = _xml_events(data)
    else:
        raise EpcisHashError("not an EPCIS document: expected JSON (starting with '{') or XML (starting with '<')")
    out = []
    for index, event in enumerate(events):
        stated = [item.text.strip() for item in event.children if isinstance(item, _Node) and item.name == "eventID"]
        event_id = stated[0] if stated and stated[0] else None
        if ignored:
            event.children = [item for item in event.children if not (isinstance(item, _Node) and item.name in ignored)]
        try:
            text = _event_prehash(event)
            text.encode()
        except _FieldError as exc:
            raise EpcisHashError(f"event {index} ({event.name}): {exc}") from None
        except UnicodeEncodeError as exc:
            raise EpcisHashError(f"event {index} ({event.name}): text cannot be encoded as UTF-8: {exc}") from None
        out.append((event_id, text))
    return out


# --- XML ----------------------------------------------------------------------------------------------------

# huge_tree: the export of a whole batch is one document; entities stay unresolved, so it cannot blow up.
_XML_PARSER = etree.XMLParser(
    resolve_entities=False, no_network=True, remove_comments=True, remove_pis=True, huge_tree=True
)


def _xml_events(data: bytes) -> tuple[list[_Node], frozenset[str]]:
    """Return the event trees of an XML document and the field names its ignoreFields element lists."""
    # The reference deletes these tags from the text before parsing, so the fields of an EPCIS 1.2
    # <extension> or <baseExtension> (and of a 2.0 <extension> in a readPoint) count as their parent's.
    for tag in (b"<extension>", b"</extension>", b"<baseExtension>", b"</baseExtension>"):
        data = data.replace(tag, b"")
    try:
        root = etree.fromstring(data, _XML_PARSER)
    except etree.XMLSyntaxError as exc:
        raise EpcisHashError(f"XML document is not well-formed: {exc}") from None
    event_list = next(root.iter("EventList"), None)
    if event_list is None:
        if str(root.tag).endswith("EPCISMasterDataDocument"):
            return [], frozenset()
        raise EpcisHashError("XML document has no EventList (EPCISBody/EventList, QueryResults/resultsBody/EventList)")
    ignored = {
        str(child.tag)
        for element in root.iter(etree.Element)
        if str(element.tag).rpartition("}")[2] == "ignoreFields" and event_list not in element.iterancestors()
        for child in element.iterchildren(etree.Element)
    }
    events = [_xml_node(element) for element in event_list.iterchildren(etree.Element)]
    for event in events:
        _expand_xml_prefixes(event)
    return events, frozenset(ignored)


def _xml_node(element: etree._Element) -> _Node:
    children: list[_Item] = [_Node(str(name), str(value), []) for name, value in element.items()]
    children += [_xml_node(child) for child in element.iterchildren(etree.Element)]
    children.sort(key=_sort_key)
    paired = [child for child in children if isinstance(child, _Node) and child.name in _PAIRED]
    if paired:
        # A transaction, source or destination becomes (its first child, normally the type attribute; itself);
        # every other child of the list is dropped, as in the reference.
        children = [_paired(child) for child in paired]
    return _Node(str(element.tag), (element.text or "").strip(), children)


def _paired(node: _Node) -> _Item:
    first = node.children[0] if node.children else None
    if not isinstance(first, _Node):
        return node  # no type: the reference fails on such a document; hashed here as the value alone
    return _Pair(first, _Node(node.name, node.text, []))


def _expand_xml_prefixes(item: _Item) -> None:
    """Expand the gs1: and cbv: CURIEs that start a value (for a transaction type, only cbv:, as the reference)."""
    if isinstance(item, _Pair):
        kind = item.first
        if kind.name == "type" and kind.text.startswith("cbv:"):
            kind.text = kind.text.replace("cbv:", CBV)
        return
    if item.text.startswith("gs1:"):
        item.text = item.text.replace("gs1:", GS1_VOC)
    if item.text.startswith("cbv:"):
        item.text = item.text.replace("cbv:", CBV)
    for child in item.children:
        _expand_xml_prefixes(child)


# --- JSON / JSON-LD -----------------------------------------------------------------------------------------

_Json: TypeAlias = "dict[str, _Json] | list[_Json] | str | int | float | bool | None"


def _json_events(data: bytes) -> tuple[list[_Node], frozenset[str]]:
    """Return the event trees of a JSON document and the field names its ignoreFields member lists."""
    try:
        document = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise EpcisHashError(f"JSON document is malformed: {exc}") from None
    if not isinstance(document, dict):
        raise EpcisHashError("JSON document is not an object")
    _json_event_list(document)  # fail on a document without events before the work below
    # The replacement keeps the shape of the document: an object stays an object.
    replaced = cast("dict[str, _Json]", _replace_bare_words(document, _vocabulary_uris(document)))
    namespaces = _context_namespaces(replaced.get("@context"))
    raw_events = _json_event_list(replaced)
    ignored = _json_ignored(replaced, namespaces)
    events = []
    for index, raw in enumerate(raw_events):
        if not isinstance(raw, dict):
            raise EpcisHashError(f"event {index}: is not a JSON object")
        kind = raw.get("type")
        if not isinstance(kind, str) or not kind:
            raise EpcisHashError(f"event {index}: has no event type ('type' like ObjectEvent)")
        events.append(_corrected(_json_node(raw, namespaces)))
    return events, ignored


def _json_event_list(document: dict[str, _Json]) -> list[_Json]:
    body = document.get("epcisBody")
    if not isinstance(body, dict):
        raise EpcisHashError("JSON document has no epcisBody object")
    if "eventList" in body:
        events = body["eventList"]
    elif "event" in body:
        events = [body["event"]]
    else:
        results = body.get("queryResults")
        results_body = results.get("resultsBody") if isinstance(results, dict) else None
        if not isinstance(results_body, dict) or "eventList" not in results_body:
            raise EpcisHashError("JSON document: epcisBody has no eventList, event or queryResults.resultsBody")
        events = results_body["eventList"]
    if isinstance(events, dict):
        return [events]
    if not isinstance(events, list):
        raise EpcisHashError("JSON document: eventList is not a list of events")
    return events


def _context_namespaces(context: _Json) -> dict[str, str]:
    """Return prefix -> namespace from the document's own @context (the reference ignores the EPCIS context's)."""
    namespaces: dict[str, str] = {}
    if isinstance(context, list):
        for entry in context:
            if isinstance(entry, str):
                namespaces[entry] = entry
            elif isinstance(entry, dict):
                namespaces.update((key, value) for key, value in entry.items() if isinstance(value, str))
    return namespaces


def _json_ignored(document: dict[str, _Json], namespaces: dict[str, str]) -> frozenset[str]:
    """Return the field names an ignoreFields member lists (on the document, its body or its query results)."""
    places: list[_Json] = [document]
    body = document.get("epcisBody")
    if isinstance(body, dict):
        places.append(body)
        places.append(body.get("queryResults"))
    names: set[str] = set()
    for place in places:
        if not isinstance(place, dict):
            continue
        for key, value in place.items():
            if key.rpartition(":")[2] == "ignoreFields":
                listed = value if isinstance(value, list) else [value]
                names.update(_ns_key(name, namespaces) for name in listed if isinstance(name, str))
    return frozenset(names)


def _ns_key(text: str, namespaces: dict[str, str]) -> str:
    prefix, colon, rest = text.partition(":")
    if colon and prefix in namespaces:
        return "{" + namespaces[prefix] + "}" + rest
    return text


def _ns_value(text: str, namespaces: dict[str, str]) -> str:
    prefix, colon, rest = text.partition(":")
    if colon and prefix in namespaces:
        return namespaces[prefix].replace("{", "").replace("}", "") + rest
    return text


_SKIPPED_MEMBERS = frozenset({"#text", "rdfs:comment", "comment"})


def _json_node(value: _Json, namespaces: dict[str, str]) -> _Node:
    """Return the tree of a JSON value; list items and member values become children, named by their member."""
    if isinstance(value, list):
        items: list[_Item] = [_json_node(item, namespaces) for item in value]
        if not any(paired in value for paired in _PAIRED):  # a string among the list's items, as the reference
            items.sort(key=_sort_key)
        return _Node("", "", items)
    if isinstance(value, dict):
        name = _text(value["type"]) if "type" in value else ""
        text = _text(value["#text"]) if "#text" in value else ""
        children: list[_Item] = []
        for key, member in value.items():
            if key in _SKIPPED_MEMBERS:
                continue
            if key.startswith("@xmlns"):
                # JSON converted from XML may carry its namespace declarations as members.
                namespaces[key[7:]] = _text(member)
                name = _ns_key(name, namespaces)
                continue
            child = _json_node(member, namespaces)  # first the child, whose members may declare namespaces
            member_name = _ns_key(key, namespaces)
            if isinstance(member, list):
                nodes = [item for item in child.children if isinstance(item, _Node)]
                children.extend(_Node(member_name, node.text, node.children) for node in nodes)
            else:
                children.append(_Node(member_name, child.text, child.children))
        if not any(paired in value for paired in _PAIRED):
            children.sort(key=_sort_key)
        return _Node(name, text, children)
    return _Node("", _text(_ns_value(value, namespaces) if isinstance(value, str) else value), [])


def _text(value: _Json) -> str:
    # str() as Python writes it: the reference hashes JSON true as "True" and 1.0 as "1.0" (then "1")
    return value if isinstance(value, str) else str(value)


_RENAMED = {"inputEPC": "epc", "outputEPC": "epc", "inputQuantity": "quantityElement",
            "outputQuantity": "quantityElement", "childQuantity": "quantityElement"}  # fmt: skip


def _corrected(node: _Node) -> _Node:
    """Give a JSON tree the shape of its XML counterpart (list items named, childEPCs as epc elements)."""
    lists: dict[str, list[_Node]] = {}
    kept: list[_Item] = []
    for item in node.children:
        if isinstance(item, _Node) and item.name.endswith("List"):
            lists.setdefault(item.name, []).append(_Node(item.name[:-4], item.text, item.children))
        else:
            kept.append(item)
    for name, elements in lists.items():
        if name in _PAIR_LISTS:
            kept.append(_Node(name, "", [_json_pair(element) for element in elements]))
        else:
            kept.append(_Node(name, "", list(elements)))
    children_epcs = [item for item in kept if isinstance(item, _Node) and item.name == "childEPCs"]
    if children_epcs:
        kept = [item for item in kept if item not in children_epcs]
        kept.append(_Node("childEPCs", "", [_Node("epc", item.text, []) for item in children_epcs]))
    children: list[_Item] = [
        item if isinstance(item, _Pair) or item.name in _PAIR_LISTS else _corrected(item) for item in kept
    ]
    name = node.name
    if name in _RENAMED or (name == "quantity" and node.children):
        name = _RENAMED.get(name, "quantityElement")
    return _Node(name, node.text, children)


def _json_pair(element: _Node) -> _Item:
    # The first two members as written: {"type": ..., "bizTransaction": ...} puts the type first.
    first, second = [*element.children, None, None][:2]
    if isinstance(first, _Node) and isinstance(second, _Node):
        return _Pair(first, second)
    # One member or none: the reference fails on such a document; hashed here as what there is.
    return first if isinstance(first, _Node) else element


# The JSON-LD bare-word replacement. The reference expands the document with the EPCIS context, collects the
# expanded values that are CBV or GS1 vocabulary URIs, and then replaces every string anywhere in the document
# that is the end (after a '-' or '/') of exactly one of them. What the context expands is modelled here: the
# vocabulary-typed fields with their bare words, identifier-typed fields (CURIEs), and plain values.

_PREFIXES = {
    "epcis": "https://ref.gs1.org/epcis/", "cbv": CBV, "cbvmda": "urn:epcglobal:cbv:mda:", "gs1": GS1_VOC,
    "rdfs": "http://www.w3.org/2000/01/rdf-schema#", "owl": "http://www.w3.org/2002/07/owl#",
    "xsd": "http://www.w3.org/2001/XMLSchema#", "dcterms": "http://purl.org/dc/terms/",
}  # fmt: skip
# A term's kind: "id" (IRI, CURIEs expanded), "type" (vocabulary IRI without bare words), "literal", or the
# name of a CBV_VOCABULARIES table (vocabulary IRI with its bare words). Scoped terms apply below their term.
_Scope: TypeAlias = "dict[str, tuple[str, _Scope | None]]"
_ID_TERMS = ("id eventID member certificationInfo bizLocation readPoint transformationID epcList epcClass parentID "
             "childEPCs inputEPCList outputEPCList children")  # fmt: skip
_LITERAL_TERMS = (
    "eventTime recordTime eventTimeZoneOffset action quantity uom quantityList childQuantityList inputQuantityList "
    "outputQuantityList creationDate sender receiver instanceIdentifier schemaVersion ilmd epcisHeader masterData "
    "vocabularyList epcisBody queryResults subscriptionID queryName resultsBody eventList ObjectEvent "
    "AggregationEvent TransformationEvent AssociationEvent TransactionEvent Collection EPCISDocument "
    "EPCISQueryDocument baseURL"
)
_ID: tuple[str, _Scope | None] = ("id", None)
_LITERAL: tuple[str, _Scope | None] = ("literal", None)
_SENSOR_REPORT: _Scope = {
    "type": ("measurementType", None), "exception": ("sensorAlertType", None), "component": ("component", None),
    **dict.fromkeys(("coordinateReferenceSystem", "microorganism", "chemicalSubstance", "uriValue"), _ID),
    **dict.fromkeys(("time", "value", "stringValue", "booleanValue", "hexBinaryValue", "minValue", "maxValue",
                     "meanValue", "sDev", "percRank", "percValue"), _LITERAL),
}  # fmt: skip
_ROOT_SCOPE: _Scope = {
    **dict.fromkeys(_ID_TERMS.split(), _ID),
    **dict.fromkeys(_LITERAL_TERMS.split(), _LITERAL),
    "type": ("type", None),
    "bizStep": ("bizStep", None),
    "disposition": ("disposition", None),
    "persistentDisposition": ("literal", {"set": ("disposition", None), "unset": ("disposition", None)}),
    "bizTransactionList": ("literal", {"bizTransaction": ("id", None), "type": ("bizTransactionType", None)}),
    "sourceList": ("literal", {"source": ("id", None), "type": ("sourceDestType", None)}),
    "destinationList": ("literal", {"destination": ("id", None), "type": ("sourceDestType", None)}),
    "errorDeclaration": ("literal", {"reason": ("errorReason", None), "correctiveEventIDs": ("id", None),
                                     "declarationTime": ("literal", None)}),
    "sensorElementList": ("literal", {
        **dict.fromkeys(("deviceID", "deviceMetadata", "rawData", "dataProcessingMethod"), _ID),
        "time": ("literal", None),
        "type": ("type", None),
        "sensorMetadata": ("literal", {"startTime": ("literal", None), "endTime": ("literal", None),
                                       "bizRules": ("id", None)}),
        "sensorReport": ("literal", _SENSOR_REPORT),
    }),
}  # fmt: skip


def _vocabulary_uris(document: dict[str, _Json]) -> set[str]:
    """Return the CBV and GS1 vocabulary URIs that JSON-LD expansion of the document yields."""
    prefixes = dict(_PREFIXES)
    context = document.get("@context")
    for entry in context if isinstance(context, list) else [context]:
        if isinstance(entry, dict):
            prefixes.update((key, value) for key, value in entry.items() if isinstance(value, str))
    found: set[str] = set()
    _collect(document, "literal", _ROOT_SCOPE, prefixes, found)
    return found


def _collect(value: _Json, kind: str, scope: _Scope, prefixes: dict[str, str], found: set[str]) -> None:
    if isinstance(value, list):
        for item in value:
            _collect(item, kind, scope, prefixes, found)
    elif isinstance(value, dict):
        for key, member in value.items():
            if key == "@context":
                continue
            term = scope.get(key)
            if term is None:
                if ":" not in key or key.startswith("@"):
                    continue  # not a term of the context: JSON-LD expansion drops it
                term = ("literal", None)
            member_kind, scoped = term
            _collect(member, member_kind, {**scope, **scoped} if scoped else scope, prefixes, found)
    elif isinstance(value, str):
        expanded = _expand(value, kind, prefixes)
        if is_vocabulary_uri(expanded):
            found.add(expanded)


def _expand(value: str, kind: str, prefixes: dict[str, str]) -> str:
    if kind == "literal":
        return value
    words = CBV_VOCABULARIES.get(kind)
    if words is not None and value in words:
        return words[value]
    prefix, colon, rest = value.partition(":")
    if colon and not rest.startswith("//") and prefix in prefixes:
        return prefixes[prefix] + rest
    return value


def _replacements(uris: Iterable[str]) -> dict[str, str]:
    """Return end -> URI for every end (after a '-' or '/') that exactly one of the URIs has."""
    owners: dict[str, set[str]] = {}
    for uri in uris:
        for at, char in enumerate(uri):
            if char in "-/":
                owners.setdefault(uri[at + 1 :], set()).add(uri)
    return {end: next(iter(found)) for end, found in owners.items() if len(found) == 1}


def _replace_bare_words(value: _Json, uris: set[str]) -> _Json:
    replacements = _replacements(uris)
    if not replacements:
        return value
    return _replace(value, replacements)


def _replace(value: _Json, replacements: dict[str, str]) -> _Json:
    if isinstance(value, str):
        return replacements.get(value, value)
    if isinstance(value, list):
        return [_replace(item, replacements) for item in value]
    if isinstance(value, dict):
        return {key: _replace(member, replacements) for key, member in value.items()}
    return value


# --- our own events -----------------------------------------------------------------------------------------

_MDA_NS = _PREFIXES["cbvmda"]
_EVENT_TYPES = frozenset({"ObjectEvent", "AggregationEvent"})
# The prefixes our JSON-LD context binds: the generic path expands values written with them.
_OWN_PREFIXES = {"cbvmda": _MDA_NS, LINESIDE_PREFIX: LINESIDE_NS}
_OWN_PREFIX_STARTS = tuple(prefix + ":" for prefix in _OWN_PREFIXES)
_ALL_PREFIXES = {**_PREFIXES, **_OWN_PREFIXES}
# Identifier values that would themselves add to the vocabulary URIs (see _vocabulary_uris).
_VOCABULARY_STARTS = ("https://ref.gs1.org/cbv", "https://gs1.org/voc", "cbv:", "gs1:")
_SGTIN = "urn:epc:id:sgtin:"
# Caches of what repeats across a batch; each is emptied when full, so a long run stays bounded.
_CACHE_LIMIT = 4096


def event_hash(event: EpcisEvent) -> str:
    """Return the event hash ID of one of our events (what document_event_hashes gives for it in our JSON-LD)."""
    return hash_prehash(prehash(event))


def prehash(event: EpcisEvent) -> str:
    """Return the pre-hash string of one of our events."""
    ilmd = event.ilmd
    key = (event.type, event.event_time_zone_offset, event.action, event.biz_step, event.disposition,
           event.read_point, event.biz_location, event.biz_transactions,
           None if ilmd is None else ilmd.lot_number, None if ilmd is None else ilmd.item_expiration_date,
           event.extensions)  # fmt: skip
    # Consecutive events mostly share all of these: comparing with the last (identical objects) beats hashing.
    last = _LAST_TAIL[0]
    tail = last[1] if last is not None and last[0] == key else _tail(key, event)
    if event.event_time.tzinfo is None:
        raise EpcisHashError(f"{event.type} eventTime {event.event_time} has no time zone")
    text = _compose(tail, hash_time(event.event_time), event.parent_id, event.epc_list, event.child_epcs)
    return _slow_prehash(event) if text is None else text


def hash_time(stamp: datetime) -> str:
    """Return an aware eventTime as the pre-hash string writes it: UTC, milliseconds, Z."""
    micro = stamp.microsecond
    if micro % 1000:
        return utc_millis(stamp)
    # The UTC second is looked up, only the milliseconds are added.
    when = (stamp.year, stamp.month, stamp.day, stamp.hour, stamp.minute, stamp.second, stamp.tzinfo, stamp.fold)
    second = _SECONDS.get(when)
    if second is None:
        if len(_SECONDS) >= _CACHE_LIMIT:
            _SECONDS.clear()
        second = _SECONDS[when] = utc_millis(stamp.replace(microsecond=0))[:-5]
    return second + _MILLIS[micro // 1000]


class PrehashTemplate:
    """The pre-hash strings of events that differ from one probe event only in eventTime and identifiers.

    The probe's offset stays: an event at another offset needs its own template. Built from the same repeating
    part prehash() uses, and composed by the same function, so a string it gives is the one prehash() gives.
    """

    __slots__ = ("_tail",)

    def __init__(self, probe: EpcisEvent) -> None:
        self._tail = _build_tail(probe)

    @property
    def copies_serials(self) -> bool:
        """Whether an SGTIN's plain serial (ASCII letters and digits, 1 to 20) is only copied, never replaced."""
        return not self._tail.sgtin_replacements

    def prehash(self, time: str, parent_id: str | None, epc_list: tuple[str, ...],
                child_epcs: tuple[str, ...]) -> str | None:
        """Return the pre-hash string with time (as hash_time writes it) and these identifiers; None: the slow path."""
        return _compose(self._tail, time, parent_id, epc_list, child_epcs)


def _compose(tail: _Tail, time: str, parent_id: str | None, epc_list: tuple[str, ...],
             child_epcs: tuple[str, ...]) -> str | None:
    """Return the pre-hash string of an event from its repeating part, time and identifiers; None for the slow path."""
    ids = None
    if len(epc_list) == 1 and parent_id is None and not child_epcs and not tail.sgtin_replacements:
        # The commissioning case, one SGTIN: its company prefix and item reference are converted once per GTIN,
        # its serial only checked (a plain one) and copied.
        epc = epc_list[0]
        base = _SGTIN_HEADS.get(epc[:31]) if epc[31:32] == "." else None
        if base is not None:
            serial = epc[32:]
            if serial.isalnum() and serial.isascii() and len(serial) <= 20:  # the reference's limit
                ids = "epcListepc=" + base + serial
    if ids is None:
        ids = _identifiers(parent_id, epc_list, child_epcs, tail.replacements, plain=not tail.sgtin_replacements)
        if ids is None:
            return None
    return f"eventType={tail.event_type}eventTime={time}{tail.offset}{ids}{tail.rest}"


def _tail(key: tuple[object, ...], event: EpcisEvent) -> _Tail:
    tail = _TAILS.get(key)
    if tail is None:
        if len(_TAILS) >= _CACHE_LIMIT:
            _TAILS.clear()
        tail = _TAILS[key] = _build_tail(event)
    _LAST_TAIL[0] = (key, tail)
    return tail


def _identifiers(parent_id: str | None, epc_list: tuple[str, ...], child_epcs: tuple[str, ...],
                 replacements: dict[str, str], *, plain: bool) -> str | None:
    """Return the parentID, epcList and childEPCs part of the pre-hash string; None to take the slow path.

    plain: no bare-word replacement reaches an SGTIN, so one of a known GTIN with a plain serial is copied here as
    _identifier would copy it.
    """
    out = ""
    if parent_id is not None:
        text = _identifier(parent_id, replacements)
        if text is None:
            return None
        if text:
            out = "parentID=" + text
    for name, values in (("epcList", epc_list), ("childEPCs", child_epcs)):
        if values:
            part = (_plain_sgtins(name, values) if plain else None) or _listed(name, values, replacements, plain=plain)
            if part is None:
                return None
            out += part
    return out


def _listed(name: str, values: tuple[str, ...], replacements: dict[str, str], *, plain: bool) -> str | None:
    """Return the part of the pre-hash string of one non-empty identifier list (as _identifiers); None: slow path."""
    heads = _SGTIN_HEADS
    texts = []
    for value in values:
        if plain and value[31:32] == ".":
            base = heads.get(value[:31])
            if base is not None:
                serial = value[32:]
                if serial.isalnum() and serial.isascii() and len(serial) <= 20:
                    texts.append(base + serial)
                    continue
        text = _identifier(value, replacements)
        if text is None:
            return None
        if text:
            texts.append(text)
    if not texts:
        return ""
    texts.sort()
    return name + "".join(["epc=" + text for text in texts])


def _plain_sgtins(name: str, values: tuple[str, ...]) -> str | None:
    """Return the list's part of the pre-hash string when all are plain SGTINs of one known GTIN; else None.

    What _identifiers writes for them (a case's units, one GTIN): their serials copied, sorted, after the GTIN's
    base; sorting the serials sorts the texts, which share that base.
    """
    head = values[0][:32]
    base = _SGTIN_HEADS.get(head[:31]) if head[31:32] == "." else None
    if base is None or len({value[:32] for value in values}) != 1:
        return None
    serials = [value[32:] for value in values]
    lengths = list(map(len, serials))
    joined = "".join(serials)
    # Alphanumeric and ASCII hold for a whole string when they hold for each (non-empty) part.
    if min(lengths) < 1 or max(lengths) > 20 or not joined.isalnum() or not joined.isascii():
        return None
    serials.sort()
    each = "epc=" + base
    return name + each + each.join(serials)


def _identifier(value: str, replacements: dict[str, str]) -> str | None:
    """Return an EPC as the pre-hash string writes it ("" for a blank one); None when only the slow path can."""
    if replacements:
        value = replacements.get(value, value)
    if value.startswith(_SGTIN) and value[31:32] == ".":
        # A valid SGTIN has 13 digits of company prefix and item reference: its serial starts at 32.
        head = value[:31]
        base = _SGTIN_HEADS.get(head, "")
        if base == "":
            if len(_SGTIN_HEADS) >= _CACHE_LIMIT:
                _SGTIN_HEADS.clear()
            probe = normalise_id(head + ".0")
            base = _SGTIN_HEADS[head] = None if probe is None else probe[:-1]
        if base is not None:
            serial = value[32:]
            if (serial.isalnum() and serial.isascii() and len(serial) <= 20) or _PLAIN_SERIAL.fullmatch(serial):
                return base + serial
            if SGTIN_SERIAL.fullmatch(serial) is not None:
                return base + serial.translate(DL_ESCAPES)
    # Any other identifier (an SSCC, named again on each case of its pallet) is converted once while in use.
    found = _OTHER_IDS.get(value, _UNSEEN)
    if found is _UNSEEN:
        if len(_OTHER_IDS) >= _CACHE_LIMIT:
            _OTHER_IDS.clear()
        found = _OTHER_IDS[value] = _other_identifier(value)
    return found


def _other_identifier(value: str) -> str | None:
    """Return an identifier other than a plain SGTIN as the pre-hash string writes it; None for the slow path."""
    if value.startswith(_VOCABULARY_STARTS):
        return None  # it would join the vocabulary URIs and so change which bare words are replaced
    if value.startswith(_OWN_PREFIX_STARTS):
        value = _ns_value(value, _OWN_PREFIXES)
    value = value.strip()
    return canonical_value(value) if value else ""


# An SGTIN serial without the characters a Digital Link must escape: copied as it is.
_PLAIN_SERIAL = re.compile(
    r"(?:%2[125-9A-Fa-f]|%3[0-9A-Fa-f]|%4[1-9A-Fa-f]|%5[0-9AaFf]|%6[1-9A-Fa-f]|%7[0-9Aa]|['.0-9;=A-Za-z_-]){1,20}"
)


class _Tail:
    """What an event's hash takes from fields that repeat across a batch: built once per combination."""

    __slots__ = ("event_type", "offset", "replacements", "rest", "sgtin_replacements")

    def __init__(self, event_type: str, offset: str, replacements: dict[str, str], rest: str) -> None:
        self.event_type = event_type
        self.offset = offset
        self.replacements = replacements
        self.rest = rest
        # Whether a bare-word replacement could hit an SGTIN (never, short of a free text made to): the fast
        # commissioning case skips the lookup otherwise.
        self.sgtin_replacements = any(end.startswith(_SGTIN) for end in replacements)


_TAILS: dict[tuple[object, ...], _Tail] = {}
_LAST_TAIL: list[tuple[tuple[object, ...], _Tail] | None] = [None]
_MILLIS = [f".{millis:03d}Z" for millis in range(1000)]
_SECONDS: dict[tuple[object, ...], str] = {}
_SGTIN_HEADS: dict[str, str | None] = {}
_OTHER_IDS: dict[str, str | None] = {}
_UNSEEN = "\x00unseen"


def _build_tail(event: EpcisEvent) -> _Tail:
    """Compute the repeating part of an event's pre-hash string, as the generic path does for our JSON-LD."""
    if event.type not in _EVENT_TYPES:
        raise EpcisHashError(f"event type {event.type!r} is not ObjectEvent or AggregationEvent")
    ilmd = event.ilmd
    ilmd_fields = [] if ilmd is None else [
        (f"{{{_MDA_NS}}}{name}", value)
        for name, value in (("lotNumber", ilmd.lot_number), ("itemExpirationDate", ilmd.item_expiration_date))
        if value is not None
    ]  # fmt: skip
    extensions = {f"{{{LINESIDE_NS}}}{name}": text for name, text in event.extensions}  # JSON: the last one wins
    # The vocabulary URIs JSON-LD expansion finds in the event: they decide which bare words are replaced.
    uris = {uri for uri in (
        _expand_vocabulary("bizStep", event.biz_step), _expand_vocabulary("disposition", event.disposition),
        *(_expand_vocabulary("bizTransactionType", kind) for kind, _ in event.biz_transactions),
        *(_expand(value, "id", _ALL_PREFIXES) for value in (event.read_point, event.biz_location) if value is not None),
        *(_expand(uri, "id", _ALL_PREFIXES) for _, uri in event.biz_transactions),
        event.event_time_zone_offset, event.action, *(value for _, value in ilmd_fields), *extensions.values(),
    ) if uri is not None and is_vocabulary_uri(uri)}  # fmt: skip
    replacements = _replacements(uris)

    def text(value: str) -> str:
        # A JSON string as the generic path reads it: bare word replaced, prefix expanded, stripped, canonical.
        value = replacements.get(value, value)
        if value.startswith(_OWN_PREFIX_STARTS):
            value = _ns_value(value, _OWN_PREFIXES)
        value = value.strip()
        return canonical_value(value) if value else ""

    def pair(name: str, value: str) -> str:
        value = text(value)
        return f"{name}={value}" if value else ""

    def member(name: str, value: str) -> str:
        value = text(value)
        return f"{name}={value}" if value else name

    rest = pair("action", event.action)
    for name, value in (("bizStep", event.biz_step), ("disposition", event.disposition)):
        if value is not None:
            rest += pair(name, value)
    for name, value in (("readPoint", event.read_point), ("bizLocation", event.biz_location)):
        if value is not None and (found := pair("id", value)):
            rest += name + found
    ends = []
    if event.biz_transactions:
        transactions = [member("type", kind) + member("bizTransaction", uri) for kind, uri in event.biz_transactions]
        ends.append("bizTransactionList" + "".join(sorted(transactions)))
    if ilmd_fields:
        ends.append("ilmd" + "".join(sorted(member(name, value) for name, value in ilmd_fields)))
    ends.extend(member(name, value) for name, value in extensions.items())
    ends.sort()
    event_type = replacements.get(event.type, event.type)
    return _Tail(event_type, pair("eventTimeZoneOffset", event.event_time_zone_offset), replacements,
                 rest + "".join(ends))  # fmt: skip


def _expand_vocabulary(kind: str, value: str | None) -> str | None:
    return None if value is None else _expand(value, kind, _ALL_PREFIXES)


def _slow_prehash(event: EpcisEvent) -> str:
    """Hash the event through the generic path, for identifier values that change the vocabulary expansion."""
    document = json.dumps(_jsonld_document(event)).encode()
    return document_prehashes(document)[0]


def _jsonld_document(event: EpcisEvent) -> dict[str, _Json]:
    """Return a JSON-LD document holding the event as our writer writes it."""
    body: dict[str, _Json] = {
        "type": event.type,
        "eventTime": event.event_time.isoformat(),
        "eventTimeZoneOffset": event.event_time_zone_offset,
    }
    if event.epc_list:
        body["epcList"] = list(event.epc_list)
    if event.parent_id is not None:
        body["parentID"] = event.parent_id
    if event.child_epcs:
        body["childEPCs"] = list(event.child_epcs)
    body["action"] = event.action
    optional: dict[str, _Json] = {
        "bizStep": event.biz_step,
        "disposition": event.disposition,
        "readPoint": None if event.read_point is None else {"id": event.read_point},
        "bizLocation": None if event.biz_location is None else {"id": event.biz_location},
        "bizTransactionList": [{"type": kind, "bizTransaction": uri} for kind, uri in event.biz_transactions] or None,
    }
    ilmd = event.ilmd
    if ilmd is not None:
        fields = {"cbvmda:lotNumber": ilmd.lot_number, "cbvmda:itemExpirationDate": ilmd.item_expiration_date}
        optional["ilmd"] = {name: value for name, value in fields.items() if value is not None} or None
    body.update((name, value) for name, value in optional.items() if value is not None)
    body.update((f"{LINESIDE_PREFIX}:{name}", text) for name, text in event.extensions)
    context: list[_Json] = [
        "https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld",
        {"cbvmda": _MDA_NS, LINESIDE_PREFIX: LINESIDE_NS},
    ]
    return {"@context": context, "type": "EPCISDocument", "schemaVersion": "2.0", "epcisBody": {"eventList": [body]}}
