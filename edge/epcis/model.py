"""The EPCIS events the line reports, as plain immutable data: what serializers write and the hash reads.

Identifiers are EPC URNs here (``urn:epc:id:sgtin:...``, ``urn:epc:id:sscc:...``, ``urn:epc:id:sgln:...``);
a partner profile may write them as GS1 Digital Link URIs instead. CBV values are kept as their short names
(``commissioning``, ``in_progress``); serializers write the form their syntax and version need
(``commissioning`` in JSON-LD 2.0, ``urn:epcglobal:cbv:bizstep:commissioning`` in XML,
``https://ref.gs1.org/cbv/BizStep-commissioning`` in the event hash).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, NamedTuple

if TYPE_CHECKING:
    from datetime import datetime

__all__ = [
    "LINESIDE_NS",
    "LINESIDE_PREFIX",
    "Action",
    "DocumentHeader",
    "EpcisEvent",
    "EventType",
    "Ilmd",
    "MasterData",
    "RenderedEvent",
]

EventType = Literal["ObjectEvent", "AggregationEvent"]
Action = Literal["ADD", "OBSERVE", "DELETE"]

LINESIDE_NS = "urn:lineside:epcis:1:"
"""Namespace of the line's own extension fields (written only where a partner profile allows extensions)."""
LINESIDE_PREFIX = "lineside"
"""The prefix bound to LINESIDE_NS in JSON-LD contexts and XML documents."""


@dataclass(frozen=True, slots=True)
class Ilmd:
    """Instance/lot master data of commissioned items (CBV ILMD attributes, namespace urn:epcglobal:cbv:mda)."""

    lot_number: str | None = None
    """cbvmda:lotNumber."""
    item_expiration_date: str | None = None
    """cbvmda:itemExpirationDate, ISO date YYYY-MM-DD (a GS1 expiry with day 00 is the month's last day)."""


@dataclass(frozen=True, slots=True)
class EpcisEvent:
    """One EPCIS event: an ObjectEvent (epc_list) or an AggregationEvent (parent_id with child_epcs)."""

    type: EventType
    action: Action
    event_time: datetime
    """Timezone-aware, whole milliseconds; written in event_time_zone_offset's local time."""
    event_time_zone_offset: str
    """Like "+01:00": the offset of the line's local time at event_time."""
    biz_step: str | None = None
    """CBV business step short name, like "commissioning", "packing", "unpacking", "decommissioning"."""
    disposition: str | None = None
    """CBV disposition short name, like "active", "in_progress", "inactive", "destroyed"."""
    read_point: str | None = None
    """SGLN EPC URN of where the event was seen."""
    biz_location: str | None = None
    """SGLN EPC URN of where the objects are after the event."""
    epc_list: tuple[str, ...] = ()
    """ObjectEvent: the EPCs (SGTIN or SSCC URNs) the event is about."""
    parent_id: str | None = None
    """AggregationEvent: the container (SSCC or SGTIN URN)."""
    child_epcs: tuple[str, ...] = ()
    """AggregationEvent: the children (SGTIN or SSCC URNs)."""
    biz_transactions: tuple[tuple[str, str], ...] = ()
    """(CBV business transaction type short name, transaction URI), like ("prodorder", "urn:epcglobal:cbv:bt:...")."""
    ilmd: Ilmd | None = None
    """Commissioning ObjectEvent ADD only."""
    event_id: str | None = None
    """``ni:///sha-256;<hex>?ver=CBV2.0`` (the GS1 event hash), set once the event is final."""
    extensions: tuple[tuple[str, str], ...] = field(default=())
    """Extension fields as (local name in LINESIDE_NS, text), like ("workOrder", "WO-7"); written only where the
    profile allows extensions, and hashed as {LINESIDE_NS}name=text."""
    source: str | None = None
    """Where the event came from in the store, like "transition 12" or "aggregation_event 4"; never written."""


class RenderedEvent(NamedTuple):
    """An event already written for one document (edge.epcis.fastpath): its text there, its eventID, its origin.

    The text is what the document's writer writes for the EpcisEvent the store's history makes; a writer takes
    it as it is, and refuses it in any document but the one named by written_for.
    """

    text: str
    """The event as the document's syntax and profile write it (JSON-LD member or XML element)."""
    event_id: str | None
    """The eventID the text states, or None when it states none."""
    source: str | None
    """Where the event came from in the store, like "transition 12" (as EpcisEvent.source)."""
    written_for: object
    """The document rendering (edge.epcis.documents.Rendering) the text was written for."""


@dataclass(frozen=True, slots=True)
class MasterData:
    """EPCISMasterData for one product (vocabulary urn:epcglobal:epcis:vtype:EPCClass)."""

    epc_class: str
    """The product's class URI: urn:epc:idpat:sgtin:<company prefix>.<indicator+item ref>.* (or its Digital Link)."""
    attributes: tuple[tuple[str, str], ...]
    """(attribute id, value), like ("urn:epcglobal:cbv:mda#regulatedProductName", "Aspirin 500 mg")."""


@dataclass(frozen=True, slots=True)
class DocumentHeader:
    """What an EPCIS document says about itself, beside its events."""

    creation_date: datetime
    """Timezone-aware; written in UTC."""
    sender_gln: str | None = None
    """GLN of the sender, written in a Standard Business Document Header where the profile asks for one."""
    receiver_gln: str | None = None
    """GLN of the receiver (SBDH)."""
    instance_id: str | None = None
    """SBDH InstanceIdentifier: unique per document, stable across re-sends of the same document."""
    master_data: tuple[MasterData, ...] = ()
    """Product master data written in the header where the profile includes it."""
