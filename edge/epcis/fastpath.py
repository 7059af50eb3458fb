"""Events written straight into a document's text, without an EpcisEvent: the export's fast path.

What repeats between the events of a batch is worked out once, by the general path itself. Per kind of event
(commissioning, packing...), its ILMD, offset and extension fields, a template holds the writer's tail and the
hash's repeating part (``hashing.PrehashTemplate``), both taken from a probe EpcisEvent that the renderer's own
``build`` makes. Per second of the store's clock, the local time the writer writes and the UTC time the hash
reads come from the renderer's clock, ``Rendering.event_time`` and ``hashing.hash_time``. An event is then its
time (that second and the store's milliseconds), its identifiers, put through the writer's ``identifiers`` and
the template's ``prehash`` (the functions the general path calls), and the writer's ``assemble``.

Events of one SGTIN (commissioning, decommissioning: nearly all of a batch) go further: the general parts are
written once with stand-ins for the time, the event ID and the serial, and cut there; an event with a plain
serial (ASCII letters and digits, at most 20, which every part copies as it is) is then the pieces with its
values between them, and its pre-hash string likewise.

Each template and each set of pieces is checked before use: the first event it would write is also written the
general way (EpcisEvent, GS1 event hash, the writer's event), and a template that would differ is never used.
The fast path declines, leaving the event to the general path (which raises where something is wrong), when the
time is not in the store's own format, the renderer's hasher is not the GS1 event hash, an identifier is one only
the document path can hash or the writer cannot write, or a repeating field is one the writer or the hash refuses.
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import TYPE_CHECKING, NamedTuple, Protocol

from edge.epcis.hashing import PrehashTemplate, event_hash, hash_prehash, hash_time
from edge.epcis.model import EpcisEvent, RenderedEvent
from edge.errors import EdgeError

if TYPE_CHECKING:
    from collections.abc import Callable
    from datetime import datetime

    from edge.epcis.documents import Rendering
    from edge.epcis.events import Kind
    from edge.epcis.model import Ilmd

__all__ = ["EventBuilder", "EventWriter", "FastEvents", "Second"]

_MILLIS = frozenset(f".{milli:03d}" for milli in range(1000))
"""The store's milliseconds as they follow the second (…:15.070123Z): what the clock parses as milliseconds."""
_STORE_TIME_LENGTH = len("2026-11-25T10:00:00.000000Z")
_SGTIN = "urn:epc:id:sgtin:"
_SERIAL_AT = len("urn:epc:id:sgtin:9506000.013435.")
"""Where an SGTIN's serial starts: company prefix and item reference are 13 digits and a dot together."""
# Bounded like the other per-document caches: a batch has a few templates, and its seconds come in order.
_SECONDS_LIMIT = 4096
_TEMPLATES_LIMIT = 256
# Stand-ins the general parts write as they are (no escaping in JSON or XML), cut out again to leave the pieces.
_TIME = "\x01time\x01"
_ID = "ni:///sha-256;" + "q" * 64 + "?ver=CBV2.0"
_SERIALS = ("QZ7KX2WQ9R", "R4XWZQ8KJ3")
_new = tuple.__new__  # builds a RenderedEvent without the Python-level __new__ of a NamedTuple
_sha256 = hashlib.sha256


class EventWriter(Protocol):
    """The parts a document writer (jsonld.Fragments, xmldoc.Fragments) writes an event from."""

    @property
    def rendering(self) -> Rendering: ...

    def event(self, ev: EpcisEvent) -> str: ...

    def tail(self, ev: EpcisEvent) -> str: ...

    def id_part(self, event_id: str | None) -> str: ...

    def identifiers(self, event_type: str, epc_list: tuple[str, ...], parent_id: str | None,
                    child_epcs: tuple[str, ...]) -> str: ...

    @staticmethod
    def assemble(event_type: str, time: str, *, offset: str, id_part: str, identifiers: str,
                 tail: str) -> str: ...


class EventBuilder(Protocol):
    """What the fast path takes from the renderer of a batch (edge.epcis.events)."""

    @property
    def hasher(self) -> Callable[[EpcisEvent], str] | None: ...

    def clock(self, at: str) -> tuple[datetime, str]: ...

    def build(self, when: datetime, offset: str, kind: Kind, *, source: str | None,
              extensions: tuple[tuple[str, str], ...], epc_list: tuple[str, ...] = (), parent_id: str | None = None,
              child_epcs: tuple[str, ...] = (), ilmd: Ilmd | None = None) -> EpcisEvent: ...


class Second(NamedTuple):
    """One second of the store's clock as an event's time is written: locally (the writer) and in UTC (the hash)."""

    local: str
    """Like 2026-11-25T06:00:15: the line's local time, which the milliseconds and the offset follow."""
    offset: str
    """Like +01:00."""
    utc: str
    """Like 2026-11-25T05:00:15: what the pre-hash string's time starts with."""


class _Single(NamedTuple):
    """The pieces of one-SGTIN events of a template, around their time, event ID and serial."""

    head: str
    """The SGTIN up to its serial (urn:epc:id:sgtin:<company prefix>.<item reference>.)."""
    text: tuple[str, str, str, str]
    """Written: [0] local time [1] event ID [2] serial [3] (the ID and [2] empty when none is written)."""
    prehash: tuple[str, str, str] | None
    """The pre-hash string: [0] UTC time [1] serial [2]; None when no ID is written."""


class _Template:
    """What events of one kind, ILMD, offset and extension fields share, as the writer and the hash see them."""

    __slots__ = ("cut_for", "prehash", "single", "tail")

    def __init__(self, tail: str, prehash: PrehashTemplate | None) -> None:
        self.tail = tail
        self.prehash = prehash
        self.single: _Single | None = None
        """Pieces for one-SGTIN events, made and checked on the first one."""
        self.cut_for: set[str] = set()
        """The GTINs (SGTIN heads) pieces were cut for, kept or not: each is tried once."""


class FastEvents:
    """Writes a batch's events for one document from templates the general path makes; None where it declines."""

    def __init__(self, builder: EventBuilder, writer: EventWriter, *, hashed: bool) -> None:
        self._builder = builder
        self._writer = writer
        self._rendering = writer.rendering
        self._hashed = hashed
        self._seconds: dict[str, Second | None] = {}
        self._templates: dict[tuple[object, ...], _Template | None] = {}
        # The template of the last event, found again by identity: consecutive events mostly share it.
        self._last: tuple[Kind, Ilmd | None, str, tuple[tuple[str, str], ...], _Template] | None = None
        # The pieces of the last one-SGTIN event, kept apart from _last: packing events come between commissionings.
        self._last_single: tuple[Kind, Ilmd | None, str, tuple[tuple[str, str], ...], _Single] | None = None

    @classmethod
    def make(cls, builder: EventBuilder, writer: EventWriter) -> FastEvents | None:
        """Return the fast path for the builder's events in writer's document; None if the IDs cannot be made here."""
        hasher = builder.hasher
        if hasher is not None and hasher is not event_hash:
            return None  # another hash function: only the general path calls it
        return cls(builder, writer, hashed=hasher is not None and writer.rendering.event_ids)

    def second(self, at: str) -> Second | None:
        """Return the second of a store timestamp (…:15.070123Z), or None when the fast path does not take it."""
        if len(at) != _STORE_TIME_LENGTH or at[26] != "Z" or at[19:23] not in _MILLIS:
            return None
        key = at[:19]
        try:
            return self._seconds[key]
        except KeyError:
            pass
        if len(self._seconds) >= _SECONDS_LIMIT:
            self._seconds.clear()
        found = self._seconds[key] = self._second(key)
        return found

    def _second(self, key: str) -> Second | None:
        # The clock keeps the store's milliseconds as they are written and the offset cannot change within a second
        # (zone transitions fall on whole seconds), so the second's own times, with .000, hold for each of its
        # milliseconds.
        try:
            when, offset = self._builder.clock(key + ".000000Z")
            local = self._rendering.event_time(EpcisEvent("ObjectEvent", "ADD", when, offset))
            utc = hash_time(when)
        except (EdgeError, ValueError, OverflowError):
            return None  # the general path raises for such a time, where it should
        suffix = ".000" + offset
        if not local.endswith(suffix) or not utc.endswith(".000Z"):
            return None
        return Second(local[: -len(suffix)], offset, utc[: -len(".000Z")])

    def single(self, at: str, kind: Kind, *, source: str, extensions: tuple[tuple[str, str], ...], epc: str,
               ilmd: Ilmd | None) -> RenderedEvent | None:
        """Return render()'s event of epc alone (epc_list=(epc,)) at the row's store time at; None as render()."""
        millis = at[19:23]
        if len(at) != _STORE_TIME_LENGTH or at[26] != "Z" or millis not in _MILLIS:
            return None
        second = self._seconds.get(at[:19]) or self.second(at)
        if second is None:
            return None
        last = self._last_single
        serial = epc[_SERIAL_AT:]
        if (last is None or last[0] is not kind or last[1] is not ilmd or last[2] != second.offset
                or last[3] != extensions or not epc.startswith(last[4].head) or not serial.isalnum()
                or not serial.isascii() or len(serial) > 20):
            return self.render(at, second, kind, source=source, extensions=extensions, epc_list=(epc,), ilmd=ilmd)
        # What render() does with the same pieces, without its lookups; f-strings join them in one copy, where +
        # copies at each step. The pieces encode: the general path hashed the same text when they were checked, and
        # the serial is ASCII.
        single = last[4]
        event_id = ""
        pre = single.prehash
        if pre is not None:
            digest = _sha256(f"{pre[0]}{second.utc}{millis}{pre[1]}{serial}{pre[2]}".encode()).hexdigest()
            event_id = f"ni:///sha-256;{digest}?ver=CBV2.0"
        text = single.text
        return _new(RenderedEvent, (f"{text[0]}{second.local}{millis}{text[1]}{event_id}{text[2]}{serial}{text[3]}",
                                    event_id or None, source, self._rendering))

    def render(self, at: str, second: Second, kind: Kind, *, source: str, extensions: tuple[tuple[str, str], ...],
               epc_list: tuple[str, ...] = (), parent_id: str | None = None, child_epcs: tuple[str, ...] = (),
               ilmd: Ilmd | None = None) -> RenderedEvent | None:
        """Return the event written for the document, or None to have the general path write it.

        at is the row's store time, whose second (from second()) is given; the rest as the renderer's build().
        """
        offset = second.offset
        last = self._last
        if (last is not None and last[0] is kind and last[1] is ilmd and last[2] == offset
                and last[3] == extensions):
            template = last[4]
        else:
            found = self._find(at, kind, source=source, extensions=extensions, epc_list=epc_list,
                               parent_id=parent_id, child_epcs=child_epcs, ilmd=ilmd)
            if found is None:
                return None
            template = found
            self._last = (kind, ilmd, offset, extensions, template)
        if len(epc_list) == 1 and parent_id is None and not child_epcs:
            epc = epc_list[0]
            single = template.single
            if single is None:
                single = self._single(template, at, kind, source=source, extensions=extensions, epc=epc, ilmd=ilmd)
            serial = epc[_SERIAL_AT:]
            if (single is not None and epc.startswith(single.head) and serial.isalnum() and serial.isascii()
                    and len(serial) <= 20):
                millis = at[19:23]
                event_id = ""
                if single.prehash is not None:
                    pre = single.prehash
                    event_id = hash_prehash(pre[0] + second.utc + millis + pre[1] + serial + pre[2])
                text = single.text
                self._last_single = (kind, ilmd, offset, extensions, single)
                return _new(RenderedEvent, (text[0] + second.local + millis + text[1] + event_id + text[2] + serial
                                            + text[3], event_id or None, source, self._rendering))
        return self._write(template, at, second, kind.type, source=source, epc_list=epc_list, parent_id=parent_id,
                           child_epcs=child_epcs)

    def _write(self, template: _Template, at: str, second: Second, event_type: str, *, source: str | None,
               epc_list: tuple[str, ...], parent_id: str | None, child_epcs: tuple[str, ...]) -> RenderedEvent | None:
        """Write one event from the template with the general parts, or None when one of them declines."""
        millis = at[19:23]
        event_id = None
        if template.prehash is not None:
            text = template.prehash.prehash(second.utc + millis + "Z", parent_id, epc_list, child_epcs)
            if text is None:
                return None
            event_id = hash_prehash(text)
        writer = self._writer
        try:
            what = writer.identifiers(event_type, epc_list, parent_id, child_epcs)
            id_part = writer.id_part(event_id)
        except ValueError:
            return None  # the general path raises it, naming the event
        offset = second.offset
        text = writer.assemble(event_type, second.local + millis + offset, offset=offset, id_part=id_part,
                               identifiers=what, tail=template.tail)
        return _new(RenderedEvent, (text, event_id, source, self._rendering))

    def _expected(self, at: str, kind: Kind, *, source: str, extensions: tuple[tuple[str, str], ...],
                  epc_list: tuple[str, ...], parent_id: str | None, child_epcs: tuple[str, ...],
                  ilmd: Ilmd | None) -> tuple[EpcisEvent, str, str | None] | None:
        """Return the event as the general path builds it, its text and its written ID; None if the path raises."""
        when, offset = self._builder.clock(at)
        probe = self._builder.build(when, offset, kind, source=source, extensions=extensions, epc_list=epc_list,
                                    parent_id=parent_id, child_epcs=child_epcs, ilmd=ilmd)
        try:
            stated = event_hash(probe) if self._hashed else None
            return probe, self._writer.event(dataclasses.replace(probe, event_id=stated)), stated
        except (EdgeError, ValueError):
            return None  # the general path raises it, naming the event

    def _find(self, at: str, kind: Kind, *, source: str, extensions: tuple[tuple[str, str], ...],
              epc_list: tuple[str, ...], parent_id: str | None, child_epcs: tuple[str, ...],
              ilmd: Ilmd | None) -> _Template | None:
        """Return the template of this event's kind, ILMD, offset and extensions; made and checked on first use."""
        second = self.second(at)
        if second is None:
            return None
        key = (kind, None if ilmd is None else (ilmd.lot_number, ilmd.item_expiration_date), second.offset, extensions)
        try:
            return self._templates[key]
        except KeyError:
            pass
        if len(self._templates) >= _TEMPLATES_LIMIT:
            self._templates.clear()
        self._templates[key] = None  # declined unless all below holds
        expected = self._expected(at, kind, source=source, extensions=extensions, epc_list=epc_list,
                                  parent_id=parent_id, child_epcs=child_epcs, ilmd=ilmd)
        if expected is None:
            return None
        probe, text, stated = expected
        try:
            template = _Template(self._writer.tail(probe), PrehashTemplate(probe) if self._hashed else None)
        except (EdgeError, ValueError):
            return None
        written = self._write(template, at, second, kind.type, source=source, epc_list=epc_list,
                              parent_id=parent_id, child_epcs=child_epcs)
        if written is None or written.text != text or written.event_id != stated:
            return None
        self._templates[key] = template
        return template

    def _single(  # noqa: PLR0911 - each way the pieces can fail to hold declines them
        self, template: _Template, at: str, kind: Kind, *, source: str,
        extensions: tuple[tuple[str, str], ...], epc: str, ilmd: Ilmd | None,
    ) -> _Single | None:
        """Cut the template's one-SGTIN pieces for epc's GTIN, check them on epc's event; None if they do not hold."""
        head = epc[:_SERIAL_AT]
        if head in template.cut_for or not head.startswith(_SGTIN) or head[-1] != ".":
            return None
        template.cut_for.add(head)
        second = self.second(at)
        prehash = template.prehash
        if second is None or (prehash is not None and not prehash.copies_serials):
            return None
        writer = self._writer

        def written(serial: str) -> str:
            return writer.assemble(kind.type, _TIME + second.offset, offset=second.offset,
                                   id_part=writer.id_part(_ID if prehash is not None else None),
                                   identifiers=writer.identifiers(kind.type, (head + serial,), None, ()),
                                   tail=template.tail)

        try:
            text = _cut(written(_SERIALS[0]), _TIME, _ID if prehash is not None else "", _SERIALS[0])
            hashed = None if prehash is None else _cut(
                prehash.prehash(_TIME + "Z", None, (head + _SERIALS[0],), ()) or "", _TIME, _SERIALS[0])
        except ValueError:
            return None
        if text is None or (prehash is not None and hashed is None):
            return None
        single = _Single(head, (text[0], text[1], text[2], text[3]),
                         None if hashed is None else (hashed[0], hashed[1], hashed[2]))
        # The pieces must give what the parts give for another serial, and for this very event what the general
        # path writes.
        other = _SERIALS[1]
        pre = "" if prehash is None else prehash.prehash(_TIME + "Z", None, (head + other,), ()) or ""
        if hashed is not None and pre != hashed[0] + _TIME + hashed[1] + other + hashed[2]:
            return None
        event_id = _ID if prehash is not None else ""
        if written(other) != text[0] + _TIME + text[1] + event_id + text[2] + other + text[3]:
            return None
        template.single = single
        expected = self._expected(at, kind, source=source, extensions=extensions, epc_list=(epc,), parent_id=None,
                                  child_epcs=(), ilmd=ilmd)
        serial = epc[_SERIAL_AT:]
        if serial.isalnum() and serial.isascii() and len(serial) <= 20:
            mine = self.render(at, second, kind, source=source, extensions=extensions, epc_list=(epc,), ilmd=ilmd)
            if expected is None or mine is None or mine.text != expected[1] or mine.event_id != expected[2]:
                template.single = self._last_single = None
                return None
        return single


def _cut(text: str, *marks: str) -> list[str] | None:
    """Cut text at each mark in turn (each found exactly once, in order; an empty mark cuts nothing)."""
    pieces = []
    for mark in marks:
        if not mark:
            pieces.append("")
            continue
        if text.count(mark) != 1:
            return None
        before, _, text = text.partition(mark)
        pieces.append(before)
    if any(mark and mark in piece for mark in marks for piece in (*pieces, text)):
        return None
    pieces.append(text)
    return pieces
