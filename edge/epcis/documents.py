"""EPCIS documents as a partner profile wants them, written as a stream: one event at a time, never the whole.

``write_document`` picks the writer (JSON-LD 2.0 in ``edge.epcis.jsonld``, XML 2.0 or 1.2 in
``edge.epcis.xmldoc``); ``Rendering`` holds what both share: the profile's choices, event time formatting,
identifier conversion to GS1 Digital Link, and the checks a document header must pass before a byte is written.
"""

from __future__ import annotations

import gc
import re
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from itertools import chain, islice
from typing import TYPE_CHECKING, BinaryIO

from edge.epcis import jsonld, xmldoc
from edge.epcis.events import BatchEvents
from edge.errors import EdgeError
from edge.gs1.checks import gs1_check_digit
from edge.gs1.digital_link import epc_to_digital_link
from edge.gs1.identifiers import IdentifierError

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

    from edge.epcis.model import DocumentHeader, EpcisEvent, MasterData
    from edge.epcis.profiles import PartnerProfile

__all__ = [
    "CONTENT_TYPES",
    "DocumentError",
    "Rendering",
    "content_type",
    "file_extension",
    "split_events",
    "write_document",
]

CONTENT_TYPES = {"json-ld": "application/ld+json", "xml": "application/xml"}
"""MIME type of each document syntax, for the Content-Type of an upload."""

_OFFSET = re.compile(r"([+-])(0[0-9]|1[0-3]):([0-5][0-9])|[+-]14:00")
_GLN = re.compile(r"[0-9]{13}")
_SGTIN = "urn:epc:id:sgtin:"
# Identifiers converted once and reused; cleared when full so that a long export stays within bounds.
_CACHE_LIMIT = 65_536
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MILLIS = tuple(f".{milli:03d}" for milli in range(1000))


class DocumentError(EdgeError, ValueError):
    """An EPCIS document cannot be written as the profile asks: a header part is missing or an event is malformed."""


def content_type(profile: PartnerProfile) -> str:
    """Return the MIME type of the profile's documents: application/ld+json or application/xml."""
    return CONTENT_TYPES[profile.syntax]


def file_extension(profile: PartnerProfile) -> str:
    """Return the file name extension of the profile's documents, without the dot: jsonld or xml."""
    return profile.extension


EXPORT_GC_THRESHOLD = 50_000
"""Allocations between the cyclic collector's youngest passes during a one-shot export (Python's default: 700)."""


@contextmanager
def export_collector() -> Iterator[None]:
    """Run the body with the cyclic collector's passes made rare and what is alive frozen; restore both after."""
    # A batch export allocates millions of short-lived, acyclic objects that reference counting frees; the
    # collector's passes over them find nothing and cost 5-13 % of a 1M-unit export (measured). Rare passes,
    # not none, so a cycle made somewhere still gets collected and memory stays bounded. Only for processes
    # that do nothing but the export: the daemon keeps its own collector settings.
    threshold = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(EXPORT_GC_THRESHOLD, *threshold[1:])
    try:
        yield
    finally:
        gc.set_threshold(*threshold)
        gc.unfreeze()


def write_document(out: BinaryIO, header: DocumentHeader, events: Iterable[EpcisEvent], profile: PartnerProfile) -> int:
    """Write one document with the events as they come; return how many were written.

    At most profile.max_events_per_document events are taken from the iterator, so an iterator with more is left
    at the first event not written (see split_events). DocumentError before the first byte when the header lacks
    what the profile needs, and naming the event when one cannot be written (the output is then incomplete).
    """
    rendering = Rendering(profile, header)
    if profile.syntax == "json-ld":
        fragments = jsonld.Fragments(rendering)
        if isinstance(events, BatchEvents):
            # A batch's own events: those the fast path takes come written already, with these same fragments.
            with events.prerendered(fragments) as items:
                return jsonld.write_jsonld(out, header, items, rendering, fragments)
        return jsonld.write_jsonld(out, header, events, rendering, fragments)
    xml = xmldoc.Fragments(rendering)
    if isinstance(events, BatchEvents):
        with events.prerendered(xml) as items:
            return xmldoc.write_xml(out, header, items, rendering, xml)
    return xmldoc.write_xml(out, header, events, rendering, xml)


def split_events(events: Iterable[EpcisEvent], size: int) -> Iterator[Iterator[EpcisEvent]]:
    """Cut events into consecutive runs of at most size, lazily; no empty run, and each must be used up in turn."""
    if size < 1:
        raise ValueError(f"a run holds at least one event, not {size}")
    source = iter(events)
    for first in source:
        yield chain((first,), islice(source, size - 1))


def _gtin_class_link(epc_class: str) -> str | None:
    """Return the Digital Link of a urn:epc:idpat:sgtin:<prefix>.<item>.* product class, None for other URIs."""
    match = re.fullmatch(r"urn:epc:idpat:sgtin:([0-9]{6,12})\.([0-9]{1,7})\.\*", epc_class)
    if match is None or len(match[1]) + len(match[2]) != 13:
        return None
    body = match[2][0] + match[1] + match[2][1:]
    return f"https://id.gs1.org/01/{body}{gs1_check_digit(body)}"


class Rendering:
    """How one document writes values: the profile's choices and per-document caches of converted values."""

    def __init__(self, profile: PartnerProfile, header: DocumentHeader) -> None:
        self.profile = profile
        self.version = profile.version
        self.digital_link = profile.identifiers == "digital_link"
        self.limit = profile.max_events_per_document
        self.event_ids = profile.event_ids
        self.extensions = profile.extensions
        self.prodorder = profile.work_order_transaction
        self._zones: dict[str, int] = {}
        """Offset text -> milliseconds to add to UTC."""
        self._seconds: dict[int, str] = {}
        self._links: dict[str, str] = {}
        self._gtin_paths: dict[str, str] = {}
        self._check_header(header)

    def _check_header(self, header: DocumentHeader) -> None:
        if self.version == "1.2" and (self.profile.syntax != "xml" or self.digital_link):
            # A profile changed with model_copy skips the checks its loader makes.
            raise DocumentError(f'partner profile "{self.profile.id}": EPCIS 1.2 is XML with EPC URNs only')
        if header.creation_date.tzinfo is None:
            raise DocumentError(f"the document's creation date {header.creation_date.isoformat()} has no time zone")
        if self.profile.sbdh:
            for name in ("sender_gln", "receiver_gln", "instance_id"):
                if not getattr(header, name):
                    hint = {"receiver_gln": ": set receiver_gln in the partner profile",
                            "sender_gln": ": set line.site_gln in the line configuration"}.get(name, "")
                    raise DocumentError(f'partner profile "{self.profile.id}" wants a Standard Business Document'
                                        f" Header: the document header has no {name}{hint}")  # fmt: skip
            for name in ("sender_gln", "receiver_gln"):
                gln = getattr(header, name)
                if not _GLN.fullmatch(gln) or gs1_check_digit(gln[:12]) != int(gln[12]):
                    raise DocumentError(f'{name} "{gln}" is not a GLN (13 digits with a valid check digit)')
        if self.profile.master_data and not header.master_data:
            raise DocumentError(
                f'partner profile "{self.profile.id}" wants product master data: the document header has none'
            )

    def creation_date(self, header: DocumentHeader) -> str:
        """Return the header's creation date in UTC with milliseconds, like 2026-12-04T17:12:15.070Z."""
        return header.creation_date.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")

    def event_time(self, event: EpcisEvent) -> str:
        """Return eventTime in the event's own offset with milliseconds, like 2026-12-04T18:12:15.070+01:00."""
        offset = event.event_time_zone_offset
        shift = self._zones.get(offset)
        if shift is None:
            shift = self._zone(offset)
        try:
            since = event.event_time - _EPOCH
        except TypeError:
            raise DocumentError(f"eventTime {event.event_time.isoformat()} has no time zone") from None
        # Whole seconds repeat from event to event (a line makes dozens a second): format each one once.
        second, milli = divmod(
            since.days * 86_400_000 + since.seconds * 1000 + since.microseconds // 1000 + shift, 1000
        )
        text = self._seconds.get(second)
        if text is None:
            if len(self._seconds) >= _CACHE_LIMIT:
                self._seconds.clear()
            text = self._seconds[second] = (_EPOCH + timedelta(seconds=second)).strftime("%Y-%m-%dT%H:%M:%S")
        return text + _MILLIS[milli] + offset

    def _zone(self, offset: str) -> int:
        match = _OFFSET.fullmatch(offset)
        if match is None:
            raise DocumentError(f'eventTimeZoneOffset "{offset}" is not an offset like +01:00 (-14:00 to +14:00)')
        minutes = 14 * 60 if match[2] is None else int(match[2]) * 60 + int(match[3])
        shift = self._zones[offset] = (-minutes if offset[0] == "-" else minutes) * 60_000
        return shift

    def identifier(self, epc: str) -> str:
        """Return an EPC as the profile writes it: unchanged, or as its GS1 Digital Link URI."""
        if not self.digital_link:
            return epc
        if epc.startswith(_SGTIN):
            # Units of a batch share their GTIN: only the serial differs, and a plain one needs no escaping.
            head, _, serial = epc.rpartition(".")
            path = self._gtin_paths.get(head)
            if path is not None and serial.isascii() and serial.isalnum() and len(serial) <= 20:
                return path + serial
        link = self._links.get(epc)
        if link is None:
            link = self._convert(epc)
        return link

    def _convert(self, epc: str) -> str:
        try:
            link = epc_to_digital_link(epc)
        except IdentifierError as exc:
            raise DocumentError(f'"{epc}" cannot be written as a GS1 Digital Link: {exc}') from exc
        if len(self._links) >= _CACHE_LIMIT:
            self._links.clear()
        if epc.startswith(_SGTIN):
            head, _, serial = epc.rpartition(".")
            if serial.isascii() and serial.isalnum() and link.endswith("/21/" + serial):
                self._gtin_paths[head] = link[: -len(serial)]
            return link
        self._links[epc] = link
        return link

    def product_class(self, data: MasterData) -> str:
        """Return a master data element's product class as the profile writes it."""
        if not self.digital_link:
            return data.epc_class
        return _gtin_class_link(data.epc_class) or self.identifier(data.epc_class)

    def transactions(self, event: EpcisEvent) -> tuple[tuple[str, str], ...]:
        """Return the event's business transactions the profile keeps (prodorder only when it wants the work order)."""
        if self.prodorder or not event.biz_transactions:
            return event.biz_transactions
        return tuple(pair for pair in event.biz_transactions if pair[0] != "prodorder")

    def fail(self, index: int, event: object, exc: Exception) -> DocumentError:
        """Return a DocumentError naming the event (its position in the document and its source) and the cause."""
        source = getattr(event, "source", None)
        where = f"event {index}" + (f" ({source})" if source else "")
        return DocumentError(f"{where}: {exc}")
