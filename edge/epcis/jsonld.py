"""EPCIS 2.0 JSON-LD documents, streamed: the head, then one compact event per line as the events come, then the tail.

Events are assembled from precomputed fragments; only values that may need escaping go through the JSON string
encoder. CBV values are written as the bare short names the EPCIS JSON Schema lists.
"""

from __future__ import annotations

import json.encoder
import re
from itertools import islice
from typing import TYPE_CHECKING, BinaryIO, TypeVar

from edge.epcis.model import LINESIDE_NS, LINESIDE_PREFIX, RenderedEvent
from edge.epcis.vocab import BIZ_STEP, BIZ_TRANSACTION_TYPE, DISPOSITION

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from edge.epcis.documents import Rendering
    from edge.epcis.model import DocumentHeader, EpcisEvent, Ilmd

__all__ = ["CBVMDA_NS", "CONTEXT_URL", "Fragments", "write_jsonld"]

CONTEXT_URL = "https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld"
"""The EPCIS 2.0 JSON-LD context every document names first."""
CBVMDA_NS = "urn:epcglobal:cbv:mda:"
"""The cbvmda prefix as the EPCIS context binds it (ILMD and master data attributes)."""
EPC_CLASS_VOCABULARY = "urn:epcglobal:epcis:vtype:EPCClass"

_q: Callable[[str], str] = json.encoder.encode_basestring  # the C encoder: quotes and escapes one string
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")
_EVENT_TYPES = frozenset({"ObjectEvent", "AggregationEvent"})
_ACTIONS = {action: f'"action":"{action}"' for action in ("ADD", "OBSERVE", "DELETE")}
K = TypeVar("K")
# Fragment caches are per document and bounded: values repeat (one read point, one lot) but need not.
_FRAGMENTS_LIMIT = 4096


def _head(header: DocumentHeader, rendering: Rendering) -> str:
    context: dict[str, str] = {"cbvmda": CBVMDA_NS}
    if rendering.extensions:
        context[LINESIDE_PREFIX] = LINESIDE_NS
    lines = [
        f'{{"@context":[{_q(CONTEXT_URL)},{json.dumps(context, separators=(",", ":"))}],',
        '"type":"EPCISDocument",',
        f'"schemaVersion":"2.0","creationDate":"{rendering.creation_date(header)}",',
    ]
    if rendering.profile.sbdh:
        # The JSON-LD binding's stand-in for the SBDH: sender, receiver and instanceIdentifier on the document.
        lines.append(
            f'"sender":{_q(header.sender_gln or "")},"receiver":{_q(header.receiver_gln or "")},'
            f'"instanceIdentifier":{_q(header.instance_id or "")},'
        )
    if rendering.profile.master_data:
        elements = [
            {
                "id": rendering.product_class(data),
                "attributes": [{"id": key, "attribute": value} for key, value in data.attributes],
            }
            for data in header.master_data
        ]
        vocabulary = {"type": EPC_CLASS_VOCABULARY, "vocabularyElementList": elements}
        master = json.dumps(
            {"epcisMasterData": {"vocabularyList": [vocabulary]}}, ensure_ascii=False, separators=(",", ":")
        )
        lines.append(f'"epcisHeader":{master},')
    lines.append('"epcisBody":{"eventList":[\n')
    return "\n".join(lines)


def _ilmd(ilmd: Ilmd) -> str:
    fields = []
    if ilmd.lot_number is not None:
        fields.append(f'"cbvmda:lotNumber":{_q(ilmd.lot_number)}')
    if ilmd.item_expiration_date is not None:
        fields.append(f'"cbvmda:itemExpirationDate":{_q(ilmd.item_expiration_date)}')
    return f',"ilmd":{{{",".join(fields)}}}' if fields else ""


def _extensions(pairs: tuple[tuple[str, str], ...]) -> str:
    out = []
    for name, text in pairs:
        if not _NAME.fullmatch(name):
            raise ValueError(f'extension field name "{name}" is not a plain name like workOrder')
        out.append(f',"{LINESIDE_PREFIX}:{name}":{_q(text)}')
    return "".join(out)


def _transactions(pairs: tuple[tuple[str, str], ...]) -> str:
    if not pairs:
        return ""
    items = [f'{{"type":"{BIZ_TRANSACTION_TYPE.check(kind)}","bizTransaction":{_q(uri)}}}' for kind, uri in pairs]
    return f',"bizTransactionList":[{",".join(items)}]'


class Fragments:
    """Per-document cache of the event fragments that repeat from event to event, and the event assembler.

    event() is tail(), id_part(), identifiers() and the event time, put together by assemble(): the fast path
    (edge.epcis.fastpath) takes the same parts for events it writes without an EpcisEvent.
    """

    def __init__(self, rendering: Rendering) -> None:
        self.rendering = rendering
        self.tails: dict[tuple[object, ...], str] = {}

    def event(self, ev: EpcisEvent) -> str:
        """Return one event as compact JSON."""
        r = self.rendering
        tail = self.tail(ev)
        event_id = self.id_part(ev.event_id if r.event_ids else None)
        what = self.identifiers(ev.type, ev.epc_list, ev.parent_id, ev.child_epcs)
        return self.assemble(ev.type, r.event_time(ev), offset=ev.event_time_zone_offset, id_part=event_id,
                             identifiers=what, tail=tail)

    def tail(self, ev: EpcisEvent) -> str:
        """Return the event's fields from action on (all but its type, time and identifiers), checked and cached."""
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
        """Return the eventID member (with its leading comma), or "" for None."""
        return "" if event_id is None else ',"eventID":' + _q(event_id)

    def identifiers(self, event_type: str, epc_list: tuple[str, ...], parent_id: str | None,
                    child_epcs: tuple[str, ...]) -> str:
        """Return an event's epcList (ObjectEvent), or parentID and childEPCs, with their leading commas."""
        if event_type == "ObjectEvent":
            return ',"epcList":[' + self._ids(epc_list) + "]"
        what = "" if parent_id is None else ',"parentID":' + _q(self.rendering.identifier(parent_id))
        if child_epcs:
            what += ',"childEPCs":[' + self._ids(child_epcs) + "]"
        return what

    @staticmethod
    def assemble(event_type: str, time: str, *, offset: str, id_part: str, identifiers: str, tail: str) -> str:
        """Return one event as compact JSON from its parts (time as Rendering.event_time writes it)."""
        return (f'{{"type":"{event_type}","eventTime":"{time}","eventTimeZoneOffset":"{offset}"'
                f"{id_part}{identifiers},{tail}}}")

    def _tail(self, ev: EpcisEvent) -> str:
        """Return the event's fields from action on, checking the values they hold."""
        r = self.rendering
        if ev.type not in _EVENT_TYPES:
            raise ValueError(f'event type "{ev.type}" is not ObjectEvent or AggregationEvent')
        action = _ACTIONS.get(ev.action)
        if action is None:
            raise ValueError(f'action "{ev.action}" is not ADD, OBSERVE or DELETE')
        text = action
        if ev.biz_step is not None:
            text += f',"bizStep":"{BIZ_STEP.check(ev.biz_step)}"'
        if ev.disposition is not None:
            text += f',"disposition":"{DISPOSITION.check(ev.disposition)}"'
        if ev.read_point is not None:
            text += f',"readPoint":{{"id":{_q(r.identifier(ev.read_point))}}}'
        if ev.biz_location is not None:
            text += f',"bizLocation":{{"id":{_q(r.identifier(ev.biz_location))}}}'
        text += _transactions(r.transactions(ev))
        if ev.ilmd is not None:
            if ev.type != "ObjectEvent":
                raise ValueError("ILMD belongs to ObjectEvents (commissioning), not to an AggregationEvent")
            text += _ilmd(ev.ilmd)
        if ev.extensions and r.extensions:
            text += _extensions(ev.extensions)
        return text

    def _ids(self, epcs: tuple[str, ...]) -> str:
        if self.rendering.digital_link:
            identifier = self.rendering.identifier
            return ",".join([_q(identifier(epc)) for epc in epcs])
        return ",".join(map(_q, epcs))


def _bounded(cache: dict[K, str], key: K, fragment: str) -> str:
    """Remember fragment under key, emptying the cache first when it is full; return fragment."""
    if len(cache) >= _FRAGMENTS_LIMIT:
        cache.clear()
    cache[key] = fragment
    return fragment


def write_jsonld(
    out: BinaryIO,
    header: DocumentHeader,
    events: Iterable[EpcisEvent | RenderedEvent],
    rendering: Rendering,
    fragments: Fragments | None = None,
) -> int:
    """Write an EPCIS 2.0 JSON-LD document with at most rendering.limit events; return how many were written.

    A RenderedEvent must have been rendered for this document (by fastpath with these fragments, or ones of the
    same rendering); its text is written as it is.
    """
    write = out.write
    write(_head(header, rendering).encode())
    event = (fragments or Fragments(rendering)).event
    separator = b""
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
        write(separator + text.encode())
        separator = b",\n"
        count += 1
    write(b"\n]}}\n")
    return count
