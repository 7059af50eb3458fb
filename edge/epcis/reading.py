"""Reading the events of an EPCIS document (JSON-LD 2.0, XML 1.2 or 2.0) back into the line's event model.

Only what the checks before upload look at is read: type, action, time, EPCs, parent and children, bizStep,
disposition, bizLocation and eventID. Other event types are skipped; identifiers are kept as written.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import TYPE_CHECKING, Any

from lxml import etree

from edge.epcis.model import Action, EpcisEvent, EventType
from edge.errors import EdgeError

if TYPE_CHECKING:
    from collections.abc import Iterator

_TYPES: dict[str, EventType] = {"ObjectEvent": "ObjectEvent", "AggregationEvent": "AggregationEvent"}
_ACTIONS: dict[str, Action] = {"ADD": "ADD", "OBSERVE": "OBSERVE", "DELETE": "DELETE"}
_CBV_PREFIXES = ("urn:epcglobal:cbv:bizstep:", "urn:epcglobal:cbv:disp:", "https://ref.gs1.org/cbv/BizStep-",
                 "https://ref.gs1.org/cbv/Disp-", "cbv:BizStep-", "cbv:Disp-")


class DocumentReadError(EdgeError):
    """A document cannot be read as EPCIS: names the event and the field."""


def _short(value: str | None) -> str | None:
    if value is None:
        return None
    for prefix in _CBV_PREFIXES:
        if value.startswith(prefix):
            return value[len(prefix):]
    return value


def _time(value: object, where: str) -> datetime:
    try:
        moment = datetime.fromisoformat(str(value))
    except ValueError as exc:
        raise DocumentReadError(f"{where}: eventTime {value!r} is not an ISO 8601 date and time") from exc
    if moment.tzinfo is None:
        raise DocumentReadError(f"{where}: eventTime {value!r} has no time zone")
    return moment


def read_events(data: bytes) -> Iterator[EpcisEvent]:
    """Yield the ObjectEvents and AggregationEvents of a document in order; DocumentReadError when it is not EPCIS."""
    text = data.lstrip()
    if text.startswith(b"{"):
        yield from _json_events(data)
    elif text.startswith(b"<"):
        yield from _xml_events(data)
    else:
        raise DocumentReadError("neither JSON nor XML: an EPCIS document starts with { or <")


def _json_events(data: bytes) -> Iterator[EpcisEvent]:
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise DocumentReadError(f"not JSON: {exc}") from exc
    body = doc.get("epcisBody", {}) if isinstance(doc, dict) else {}
    raw = body.get("eventList") or body.get("queryResults", {}).get("resultsBody", {}).get("eventList") or []
    for index, event in enumerate(raw):
        kind = _TYPES.get(str(event.get("type")))
        if kind is None:
            continue
        where = f"event {index} ({kind})"
        yield EpcisEvent(
            type=kind,
            action=_action(event.get("action"), where),
            event_time=_time(event.get("eventTime"), where),
            event_time_zone_offset=str(event.get("eventTimeZoneOffset", "")),
            biz_step=_short(event.get("bizStep")),
            disposition=_short(event.get("disposition")),
            read_point=_id(event.get("readPoint")),
            biz_location=_id(event.get("bizLocation")),
            epc_list=tuple(event.get("epcList", ())),
            parent_id=event.get("parentID"),
            child_epcs=tuple(event.get("childEPCs", ())),
            event_id=event.get("eventID"),
        )


def _id(value: Any) -> str | None:  # noqa: ANN401 - a JSON value
    return str(value["id"]) if isinstance(value, dict) and "id" in value else None


def _action(value: object, where: str) -> Action:
    action = _ACTIONS.get(str(value))
    if action is None:
        raise DocumentReadError(f"{where}: action {value!r} is not ADD, OBSERVE or DELETE")
    return action


def _xml_events(data: bytes) -> Iterator[EpcisEvent]:
    parser = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=True)
    try:
        root = etree.fromstring(data, parser)
    except etree.XMLSyntaxError as exc:
        raise DocumentReadError(f"not well-formed XML: {exc}") from exc
    index = 0
    for element in root.iter():
        tag = etree.QName(element).localname if isinstance(element.tag, str) else ""
        kind = _TYPES.get(tag)
        if kind is None:
            continue
        where = f"event {index} ({kind}, line {element.sourceline})"
        index += 1

        def text(path: str, node: etree._Element = element) -> str | None:
            found = node.find(path)
            return None if found is None or found.text is None else found.text.strip()

        event_id = text("eventID") or text("baseExtension/eventID")
        yield EpcisEvent(
            type=kind,
            action=_action(text("action"), where),
            event_time=_time(text("eventTime"), where),
            event_time_zone_offset=text("eventTimeZoneOffset") or "",
            biz_step=_short(text("bizStep")),
            disposition=_short(text("disposition")),
            read_point=text("readPoint/id"),
            biz_location=text("bizLocation/id"),
            epc_list=tuple((e.text or "").strip() for e in element.iterfind("epcList/epc")),
            parent_id=text("parentID"),
            child_epcs=tuple((e.text or "").strip() for e in element.iterfind("childEPCs/epc")),
            event_id=event_id,
        )
