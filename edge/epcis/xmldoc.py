"""EPCIS XML documents, 2.0 (urn:epcglobal:epcis:xsd:2) and 1.2 (urn:epcglobal:epcis:xsd:1), streamed event by event.

The two versions differ in where an event keeps its eventID (1.2: under baseExtension) and its ILMD (1.2: under
extension); both write CBV values as URNs. Text and attribute values are escaped; characters XML 1.0 cannot carry
are refused.
"""

from __future__ import annotations

import re
from itertools import islice
from typing import TYPE_CHECKING, BinaryIO, TypeVar

from edge.epcis.model import LINESIDE_NS, LINESIDE_PREFIX, RenderedEvent
from edge.epcis.vocab import BIZ_STEP, BIZ_TRANSACTION_TYPE, DISPOSITION

if TYPE_CHECKING:
    from collections.abc import Iterable

    from edge.epcis.documents import Rendering
    from edge.epcis.model import DocumentHeader, EpcisEvent, Ilmd

__all__ = ["CBVMDA_NS", "EPCIS_NS", "SBDH_NS", "Fragments", "write_xml"]

EPCIS_NS = {"2.0": "urn:epcglobal:epcis:xsd:2", "1.2": "urn:epcglobal:epcis:xsd:1"}
"""The EPCIS XML namespace of each version."""
SBDH_NS = "http://www.unece.org/cefact/namespaces/StandardBusinessDocumentHeader"
CBVMDA_NS = "urn:epcglobal:cbv:mda"
"""The namespace of ILMD elements (cbvmda:lotNumber) in XML."""
EPC_CLASS_VOCABULARY = "urn:epcglobal:epcis:vtype:EPCClass"

K = TypeVar("K")
_SPECIAL = re.compile(r'[&<>"\r]')
# XML 1.0 cannot carry these at all, escaped or not.
_FORBIDDEN = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
_EITHER = re.compile('[&<>"\r\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]')
_ESCAPES = {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "\r": "&#13;"}
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")
_ACTIONS = {action: f"\n        <action>{action}</action>" for action in ("ADD", "OBSERVE", "DELETE")}
_FRAGMENTS_LIMIT = 4096
_EVENT_TYPES = frozenset({"ObjectEvent", "AggregationEvent"})


def escape(value: str) -> str:
    """Return value escaped for XML text and double-quoted attributes; ValueError for characters XML cannot carry."""
    if _EITHER.search(value) is None:
        return value
    bad = _FORBIDDEN.search(value)
    if bad is not None:
        raise ValueError(f"{value!r}: character U+{ord(bad[0]):04X} cannot be written in XML")
    return _SPECIAL.sub(lambda match: _ESCAPES[match[0]], value)


def _sbdh(header: DocumentHeader, rendering: Rendering) -> str:
    # TypeVersion 1.0 is what the EPCIS 1.2 binding and GS1 US healthcare exchanges write for 1.2 documents.
    type_version = "1.0" if rendering.version == "1.2" else "2.0"
    return f"""
    <sbdh:StandardBusinessDocumentHeader>
      <sbdh:HeaderVersion>1.0</sbdh:HeaderVersion>
      <sbdh:Sender>
        <sbdh:Identifier Authority="GS1">{escape(header.sender_gln or "")}</sbdh:Identifier>
      </sbdh:Sender>
      <sbdh:Receiver>
        <sbdh:Identifier Authority="GS1">{escape(header.receiver_gln or "")}</sbdh:Identifier>
      </sbdh:Receiver>
      <sbdh:DocumentIdentification>
        <sbdh:Standard>EPCglobal</sbdh:Standard>
        <sbdh:TypeVersion>{type_version}</sbdh:TypeVersion>
        <sbdh:InstanceIdentifier>{escape(header.instance_id or "")}</sbdh:InstanceIdentifier>
        <sbdh:Type>Events</sbdh:Type>
        <sbdh:CreationDateAndTime>{rendering.creation_date(header)}</sbdh:CreationDateAndTime>
      </sbdh:DocumentIdentification>
    </sbdh:StandardBusinessDocumentHeader>"""


def _master_data(header: DocumentHeader, rendering: Rendering) -> str:
    elements = []
    for data in header.master_data:
        attributes = "".join(
            f'\n                <attribute id="{escape(key)}">{escape(value)}</attribute>'
            for key, value in data.attributes
        )
        elements.append(
            f'\n              <VocabularyElement id="{escape(rendering.product_class(data))}">{attributes}'
            "\n              </VocabularyElement>"
        )
    return f"""
    <extension>
      <EPCISMasterData>
        <VocabularyList>
          <Vocabulary type="{EPC_CLASS_VOCABULARY}">
            <VocabularyElementList>{"".join(elements)}
            </VocabularyElementList>
          </Vocabulary>
        </VocabularyList>
      </EPCISMasterData>
    </extension>"""


def _head(header: DocumentHeader, rendering: Rendering) -> str:
    profile = rendering.profile
    namespaces = [f'xmlns:epcis="{EPCIS_NS[rendering.version]}"', f'xmlns:cbvmda="{CBVMDA_NS}"']
    if profile.sbdh:
        namespaces.append(f'xmlns:sbdh="{SBDH_NS}"')
    if rendering.extensions:
        namespaces.append(f'xmlns:{LINESIDE_PREFIX}="{LINESIDE_NS}"')
    text = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<epcis:EPCISDocument {' '.join(namespaces)}\n"
        f'    schemaVersion="{rendering.version}" creationDate="{rendering.creation_date(header)}">'
    )
    if profile.sbdh or profile.master_data:
        text += "\n  <EPCISHeader>"
        if profile.sbdh:
            text += _sbdh(header, rendering)
        if profile.master_data:
            text += _master_data(header, rendering)
        text += "\n  </EPCISHeader>"
    return text + "\n  <EPCISBody>\n    <EventList>"


def _ilmd(ilmd: Ilmd, version: str) -> str:
    fields = ""
    if ilmd.lot_number is not None:
        fields += f"\n          <cbvmda:lotNumber>{escape(ilmd.lot_number)}</cbvmda:lotNumber>"
    if ilmd.item_expiration_date is not None:
        fields += (
            f"\n          <cbvmda:itemExpirationDate>{escape(ilmd.item_expiration_date)}</cbvmda:itemExpirationDate>"
        )
    if not fields:
        return ""
    if version == "1.2":
        # EPCIS 1.2 added ILMD through the ObjectEvent's extension element.
        fields = fields.replace("\n", "\n  ")
        return f"\n        <extension>\n          <ilmd>{fields}\n          </ilmd>\n        </extension>"
    return f"\n        <ilmd>{fields}\n        </ilmd>"


def _transactions(pairs: tuple[tuple[str, str], ...]) -> str:
    if not pairs:
        return ""
    items = "".join(
        f'\n          <bizTransaction type="{BIZ_TRANSACTION_TYPE.urn(kind)}">{escape(uri)}</bizTransaction>'
        for kind, uri in pairs
    )
    return f"\n        <bizTransactionList>{items}\n        </bizTransactionList>"


def _extensions(pairs: tuple[tuple[str, str], ...]) -> str:
    out = ""
    for name, text in pairs:
        if not _NAME.fullmatch(name):
            raise ValueError(f'extension field name "{name}" is not a plain name like workOrder')
        out += f"\n        <{LINESIDE_PREFIX}:{name}>{escape(text)}</{LINESIDE_PREFIX}:{name}>"
    return out


def _bounded(cache: dict[K, str], key: K, fragment: str) -> str:
    """Remember fragment under key, emptying the cache first when it is full; return fragment."""
    if len(cache) >= _FRAGMENTS_LIMIT:
        cache.clear()
    cache[key] = fragment
    return fragment


class Fragments:
    """Per-document cache of the event fragments that repeat from event to event, and the event assembler.

    event() is tail(), id_part(), identifiers() and the event time, put together by assemble(): the fast path
    (edge.epcis.fastpath) takes the same parts for events it writes without an EpcisEvent.
    """

    def __init__(self, rendering: Rendering) -> None:
        self.rendering = rendering
        self.v12 = rendering.version == "1.2"
        self.tails: dict[tuple[object, ...], str] = {}

    def event(self, ev: EpcisEvent) -> str:
        """Return one event element, indented, starting on a new line."""
        r = self.rendering
        tail = self.tail(ev)
        event_id = self.id_part(ev.event_id if r.event_ids else None)
        what = self.identifiers(ev.type, ev.epc_list, ev.parent_id, ev.child_epcs)
        return self.assemble(ev.type, r.event_time(ev), offset=ev.event_time_zone_offset, id_part=event_id,
                             identifiers=what, tail=tail)

    def tail(self, ev: EpcisEvent) -> str:
        """Return the event's elements from action to its end tag, checked and cached."""
        ilmd = ev.ilmd
        # Everything after the identifiers repeats across a batch: one lookup finds it, already written.
        key = (ev.type, ev.action, ev.biz_step, ev.disposition, ev.read_point, ev.biz_location, ev.biz_transactions,
               None if ilmd is None else ilmd.lot_number, None if ilmd is None else ilmd.item_expiration_date,
               ev.extensions)  # fmt: skip
        tail = self.tails.get(key)
        if tail is None:
            tail = _bounded(self.tails, key, self._tail(ev))
        return tail

    def id_part(self, event_id: str | None) -> str:
        """Return the eventID element (1.2: in baseExtension), or "" for None; ValueError if XML cannot carry it."""
        if event_id is None:
            return ""
        text = escape(event_id)
        if self.v12:
            return f"\n        <baseExtension>\n          <eventID>{text}</eventID>\n        </baseExtension>"
        return f"\n        <eventID>{text}</eventID>"

    def identifiers(self, event_type: str, epc_list: tuple[str, ...], parent_id: str | None,
                    child_epcs: tuple[str, ...]) -> str:
        """Return an event's epcList (ObjectEvent), or parentID and childEPCs, as indented elements."""
        if event_type == "ObjectEvent":
            if not epc_list:
                return "\n        <epcList/>"
            return f"\n        <epcList>{self._ids(epc_list)}\n        </epcList>"
        what = "" if parent_id is None else (
            f"\n        <parentID>{escape(self.rendering.identifier(parent_id))}</parentID>")
        if child_epcs:
            what += f"\n        <childEPCs>{self._ids(child_epcs)}\n        </childEPCs>"
        return what

    @staticmethod
    def assemble(event_type: str, time: str, *, offset: str, id_part: str, identifiers: str, tail: str) -> str:
        """Return one event element from its parts (time as Rendering.event_time writes it)."""
        return (f"\n      <{event_type}>\n        <eventTime>{time}</eventTime>"
                f"\n        <eventTimeZoneOffset>{offset}</eventTimeZoneOffset>{id_part}{identifiers}{tail}")

    def _tail(self, ev: EpcisEvent) -> str:
        """Return the event's elements from action to its end tag, checking the values they hold."""
        r = self.rendering
        if ev.type not in _EVENT_TYPES:
            raise ValueError(f'event type "{ev.type}" is not ObjectEvent or AggregationEvent')
        text = _ACTIONS.get(ev.action, "")
        if not text:
            raise ValueError(f'action "{ev.action}" is not ADD, OBSERVE or DELETE')
        if ev.biz_step is not None:
            text += f"\n        <bizStep>{BIZ_STEP.urn(ev.biz_step)}</bizStep>"
        if ev.disposition is not None:
            text += f"\n        <disposition>{DISPOSITION.urn(ev.disposition)}</disposition>"
        for field, epc in (("readPoint", ev.read_point), ("bizLocation", ev.biz_location)):
            if epc is not None:
                text += f"\n        <{field}>\n          <id>{escape(r.identifier(epc))}</id>\n        </{field}>"
        text += _transactions(r.transactions(ev))
        if ev.ilmd is not None:
            if ev.type != "ObjectEvent":
                raise ValueError("ILMD belongs to ObjectEvents (commissioning), not to an AggregationEvent")
            text += _ilmd(ev.ilmd, r.version)
        if ev.extensions and r.extensions:
            text += _extensions(ev.extensions)
        return text + f"\n      </{ev.type}>"

    def _ids(self, epcs: tuple[str, ...]) -> str:
        if self.rendering.digital_link:
            identifier = self.rendering.identifier
            epcs = tuple([identifier(epc) for epc in epcs])
        if _EITHER.search("".join(epcs)) is None:
            # The usual case: no identifier needs escaping, so they are checked together.
            return "".join([f"\n          <epc>{epc}</epc>" for epc in epcs])
        return "".join([f"\n          <epc>{escape(epc)}</epc>" for epc in epcs])


def write_xml(
    out: BinaryIO,
    header: DocumentHeader,
    events: Iterable[EpcisEvent | RenderedEvent],
    rendering: Rendering,
    fragments: Fragments | None = None,
) -> int:
    """Write an EPCIS XML document (the profile's version) with at most rendering.limit events; return the count.

    A RenderedEvent must have been rendered for this document (by fastpath with these fragments, or ones of the
    same rendering); its text is written as it is.
    """
    write = out.write
    write(_head(header, rendering).encode())
    event = (fragments or Fragments(rendering)).event
    count = 0
    for ev in islice(events, rendering.limit):
        if isinstance(ev, RenderedEvent):
            if ev.written_for is not rendering:
                raise rendering.fail(count, ev, ValueError("the event was rendered for another document"))
            text = ev.text
        else:
            try:
                text = event(ev)
            except ValueError as exc:
                raise rendering.fail(count, ev, exc) from exc
        write(text.encode())
        count += 1
    write(b"\n    </EventList>\n  </EPCISBody>\n</epcis:EPCISDocument>\n")
    return count
