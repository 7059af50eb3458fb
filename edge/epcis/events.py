"""A batch's EPCIS events, rendered from the outbox and the append-only history it names, in outbox order.

What the line reports, and how (CBV 2.0 vocabulary):

| store change | EPCIS event |
|---|---|
| serials → commissioned | ObjectEvent ADD, commissioning, active, ILMD lotNumber and itemExpirationDate |
| serials → rejected (never commissioned) | ObjectEvent DELETE, decommissioning, inactive (unless ``rejects: omit``) |
| commissioned → sampled | ObjectEvent OBSERVE, sampling, non_sellable_other |
| printed or in doubt → sampled or destroyed | as a reject: the serial was never commissioned |
| commissioned (or a commissioned sample) → destroyed | ObjectEvent DELETE, destroying, destroyed |
| rejected → destroyed | nothing: upstream already had the serial decommissioned |
| pack | AggregationEvent ADD, packing, in_progress |
| unpack | AggregationEvent DELETE, unpacking |
| replace | AggregationEvent DELETE (the unit out), then ADD (its replacement in) |
| destroy of a container | ObjectEvent DELETE, destroying, destroyed on the SSCC (its units by their own moves) |
| void_label | the children unpacked from the voided SSCC, then packed into the new one |

Commissioning always precedes the packing of the same unit: a unit is packed only once commissioned, and
the outbox is in commit order. Times are the store's, truncated to whole milliseconds (which keeps the
order), written in the line's time zone.
"""

from __future__ import annotations

import json
import re
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone, tzinfo
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

from edge.epcis.model import EpcisEvent, Ilmd, RenderedEvent
from edge.errors import EdgeError
from edge.gs1.element import parse as parse_element_string
from edge.gs1.epc import escape_component, sgtin_uri, sscc_uri
from edge.gs1.identifiers import COMPANY_PREFIX_LENGTHS
from edge.markets.rules import format_gs1_date
from edge.serials.states import SerialState

if TYPE_CHECKING:
    import sqlite3
    from collections.abc import Callable, Iterable, Iterator, Sequence

    from edge.epcis.fastpath import EventWriter, FastEvents, Second

S = SerialState

PAGE_ROWS = 2000
"""Outbox rows read per query: large enough to amortise the query, small enough to keep memory flat."""

_STATES = {int(state): state for state in S}
"""Serial states by stored value: a dict lookup per outbox row instead of the enum's own, slower, call."""
_COMMISSIONED = int(S.COMMISSIONED)
_STORE_TIME_LENGTH = len("2026-11-25T10:00:00.000000Z")

_CONTAINER_CACHE = 4 * PAGE_ROWS
"""Containers kept read: a page's children (each case once, on its pallet) and the containers named around them."""
_SSCC_CACHE = 4096
"""SSCC URNs kept converted: the containers of a batch are named close together in the outbox."""

# GS1 escapes in EPC URI components; a serial without them (nearly all) is used as it is.
_URI_RESERVED = frozenset('"%&/<>?#')


class EpcisError(EdgeError):
    """The store's history cannot be rendered as EPCIS: names the row and what is wrong with it."""


class Kind(NamedTuple):
    """What kind of event the line reports: its type, action, business step and disposition."""

    type: Literal["ObjectEvent", "AggregationEvent"]
    action: Literal["ADD", "OBSERVE", "DELETE"]
    biz_step: str
    disposition: str | None


COMMISSIONING = Kind("ObjectEvent", "ADD", "commissioning", "active")
SAMPLING = Kind("ObjectEvent", "OBSERVE", "sampling", "non_sellable_other")
DESTROYING = Kind("ObjectEvent", "DELETE", "destroying", "destroyed")
DECOMMISSIONING = Kind("ObjectEvent", "DELETE", "decommissioning", "inactive")
PACKING = Kind("AggregationEvent", "ADD", "packing", "in_progress")
UNPACKING = Kind("AggregationEvent", "DELETE", "unpacking", None)


@dataclass(frozen=True, slots=True)
class EventContext:
    """What the line adds to every event: where, which time zone, and what the partner profile allows."""

    read_point: str | None
    """SGLN URN of the line (line.location)."""
    biz_location: str | None
    """SGLN URN where the products are after the event (epcis.biz_location)."""
    zone: tzinfo
    """The line's local time zone; eventTime is written with its offset at that instant."""
    extensions: bool = False
    """Add the line's own fields (workOrder, device, reason, operator) in the lineside namespace."""
    rejects: Literal["decommission", "omit"] = "decommission"
    """Report serials that were printed but never commissioned (rejects, in-doubt decommissions)."""
    biz_transaction: str | None = None
    """A prodorder business transaction URI (the work order) to add to every event, or None."""
    event_ids: bool = True
    """Set each event's eventID to its GS1 event hash."""


@dataclass(frozen=True, slots=True)
class BatchFacts:
    """What every event of one batch shares: the product's identity and the lot."""

    batch_id: int
    work_order: str
    gtin: str
    company_prefix_length: int
    lot: str
    expiry_iso: str
    sgtin_prefix: str
    """urn:epc:id:sgtin:<company prefix>.<indicator and item reference>. — the serial follows."""


def batch_facts(conn: sqlite3.Connection, batch_id: int) -> BatchFacts:
    """Read what the events of batch_id share; EpcisError when the batch does not exist."""
    row = conn.execute(
        "SELECT work_order, gtin, lot, expiry, product_json, created_at FROM batch WHERE id = ?", (batch_id,)
    ).fetchone()
    if row is None:
        raise EpcisError(f"there is no batch {batch_id}")
    work_order, gtin, lot, expiry, product_json, created_at = row
    product = json.loads(product_json)
    cpl = int(product["company_prefix_length"])
    # The century of the expiry follows GS1's window around the batch's creation, not around today, so that
    # rendering the same batch years later gives the same events and the same hashes.
    made = datetime.fromisoformat(created_at).date()
    expiry_iso = format_gs1_date(expiry, "%Y-%m-%d", made)
    probe = sgtin_uri(gtin, "0", cpl)
    return BatchFacts(batch_id, work_order, gtin, cpl, lot, expiry_iso, probe[: -len("0")])


class _Clock:
    """Store timestamps to (millisecond datetime in the line's zone, offset text), caching the offset per UTC hour."""

    __slots__ = ("_offsets", "_zone")

    def __init__(self, zone: tzinfo) -> None:
        self._zone = zone
        self._offsets: dict[str, tuple[timezone, str]] = {}

    def __call__(self, at: str) -> tuple[datetime, str]:
        if len(at) == _STORE_TIME_LENGTH and at[19] == "." and at[-1] == "Z":
            # The store's own format (…:15.070123Z): cut to milliseconds as text, cheaper than datetime.replace.
            moment = datetime.fromisoformat(at[:23] + "+00:00")
        else:
            moment = datetime.fromisoformat(at)
            moment = moment.replace(microsecond=moment.microsecond // 1000 * 1000)
        hour = at[:13]
        cached = self._offsets.get(hour)
        if cached is None:
            start = moment.replace(minute=0, second=0, microsecond=0)
            first = start.astimezone(self._zone).utcoffset()
            last = start.replace(minute=59, second=59, microsecond=999_000).astimezone(self._zone).utcoffset()
            if first is None or last is None:
                raise EpcisError(f"time zone {self._zone} gives no UTC offset at {at}")
            if first != last:  # the offset changes within this hour: work it out for this instant alone
                local = moment.astimezone(self._zone)
                offset = local.utcoffset()
                if offset is None:
                    raise EpcisError(f"time zone {self._zone} gives no UTC offset at {at}")
                return local, _offset_text(offset.total_seconds())
            cached = (timezone(first), _offset_text(first.total_seconds()))
            self._offsets[hour] = cached
        return moment.astimezone(cached[0]), cached[1]


def _offset_text(seconds: float) -> str:
    sign = "-" if seconds < 0 else "+"
    minutes = abs(int(seconds)) // 60
    return f"{sign}{minutes // 60:02d}:{minutes % 60:02d}"


class _Renderer:
    """Turns outbox rows of one batch into events, keeping what it needs between rows (container identifiers)."""

    def __init__(self, conn: sqlite3.Connection, facts: BatchFacts, ctx: EventContext,
                 hasher: Callable[[EpcisEvent], str] | None) -> None:
        self._conn = conn
        self._facts = facts
        self._ctx = ctx
        self._hasher = hasher
        self._clock = _Clock(ctx.zone)
        self.fast: FastEvents | None = None
        """Set while a document takes events written already (BatchEvents.prerendered)."""
        self._ilmd = Ilmd(lot_number=facts.lot, item_expiration_date=facts.expiry_iso)
        self._biz = (("prodorder", ctx.biz_transaction),) if ctx.biz_transaction else ()
        self._containers: dict[int, tuple[str, str]] = {}
        self._sscc_urns: dict[str, str] = {}
        # container id -> [(void_label event id, the SSCC it voided)], in event order.
        self._voids: dict[int, list[tuple[int, str]]] = {}
        for container_id, event_id, old in conn.execute(
            "SELECT container_id, id, identifier FROM aggregation_event"
            " WHERE batch_id = ? AND action = 'void_label' ORDER BY id",
            (facts.batch_id,),
        ):
            self._voids.setdefault(container_id, []).append((event_id, old))

    # -- identifiers --

    def sgtin(self, serial: str) -> str:
        """Return the SGTIN URN of one of the batch's serials."""
        if _URI_RESERVED.isdisjoint(serial):
            return self._facts.sgtin_prefix + serial
        return self._facts.sgtin_prefix + escape_component(serial)

    def container_urn(self, container_id: int, at_event: int) -> str:
        """Return the EPC URN a container had at aggregation event at_event (before a later void_label)."""
        for event_id, old in self._voids.get(container_id, ()):
            if event_id > at_event:
                return self._identifier_urn(old, "sscc", container_id)
        identifier, kind = self._container(container_id)
        return self._identifier_urn(identifier, kind, container_id)

    def _container(self, container_id: int) -> tuple[str, str]:
        found = self._containers.get(container_id)
        if found is None:
            row = self._conn.execute("SELECT identifier, kind FROM container WHERE id = ?", (container_id,)).fetchone()
            if row is None:
                raise EpcisError(f"aggregation history names container #{container_id}, which does not exist")
            found = self._remember(container_id, str(row[0]), str(row[1]))
        return found

    def _remember(self, container_id: int, identifier: str, kind: str) -> tuple[str, str]:
        if len(self._containers) >= _CONTAINER_CACHE:
            self._containers.clear()
        found = self._containers[container_id] = (identifier, kind)
        return found

    def prefetch_containers(self, ids: Sequence[int]) -> None:
        """Read the identifiers of the child containers a page of outbox rows names, in one query."""
        if not ids:
            return
        for container_id, identifier, kind in self._conn.execute(
            "SELECT id, identifier, kind FROM container WHERE id IN (SELECT value FROM json_each(?))",
            (json.dumps(list(ids)),),
        ):
            self._remember(int(container_id), str(identifier), str(kind))

    def _identifier_urn(self, identifier: str, kind: str, container_id: int) -> str:
        if kind == "sscc":
            # A container's SSCC is named again and again (a pallet's in the packing of each of its cases, a
            # case's in its own packing and on its pallet): converted once while it is in use.
            urn = self._sscc_urns.get(identifier)
            if urn is None:
                if len(self._sscc_urns) >= _SSCC_CACHE:
                    self._sscc_urns.clear()
                urn = self._sscc_urns[identifier] = _sscc_urn(identifier, self._facts.company_prefix_length)
            return urn
        if identifier.startswith("urn:epc:id:sgtin:"):
            return identifier
        try:
            elements = {e.ai: e.value for e in parse_element_string(identifier).elements}
            return sgtin_uri(elements["01"], elements["21"], self._facts.company_prefix_length)
        except (EdgeError, KeyError, ValueError) as exc:
            raise EpcisError(
                f"container #{container_id} is identified as {identifier!r}, which is neither an SSCC nor an SGTIN"
                " (an EPC URN or a GS1 element string with AIs 01 and 21)"
            ) from exc

    # -- events --

    @property
    def hasher(self) -> Callable[[EpcisEvent], str] | None:
        """The function that gives each event its ID, or None when events carry none."""
        return self._hasher

    def clock(self, at: str) -> tuple[datetime, str]:
        """Return a store timestamp as its millisecond datetime in the line's zone and that zone's offset text."""
        return self._clock(at)

    def build(self, when: datetime, offset: str, kind: Kind, *, source: str | None,
              extensions: tuple[tuple[str, str], ...], epc_list: tuple[str, ...] = (), parent_id: str | None = None,
              child_epcs: tuple[str, ...] = (), ilmd: Ilmd | None = None) -> EpcisEvent:
        """Build one event of kind with the line's context, without its ID."""
        return EpcisEvent(type=kind.type, action=kind.action, event_time=when, event_time_zone_offset=offset,
                          biz_step=kind.biz_step, disposition=kind.disposition, read_point=self._ctx.read_point,
                          biz_location=self._ctx.biz_location, epc_list=epc_list, parent_id=parent_id,
                          child_epcs=child_epcs, biz_transactions=self._biz, ilmd=ilmd, extensions=extensions,
                          source=source)

    def event(self, at: str, stamp: tuple[datetime, str] | Second, kind: Kind, *, source: str,
              extensions: tuple[tuple[str, str], ...], epc_list: tuple[str, ...] = (), parent_id: str | None = None,
              child_epcs: tuple[str, ...] = (), ilmd: Ilmd | None = None) -> EpcisEvent | RenderedEvent:
        """Return one event with the line's context and its hash ID when asked: written already if the fast path can.

        stamp is what _stamp gave for the row's time at: the fast path's second, or the clock's reading.
        """
        if len(stamp) == 3:  # a Second: the fast path takes the row's time
            fast = self.fast
            if fast is not None:
                item = fast.render(at, stamp, kind, source=source, extensions=extensions, epc_list=epc_list,
                                   parent_id=parent_id, child_epcs=child_epcs, ilmd=ilmd)
                if item is not None:
                    return item
            when, offset = self._clock(at)
        else:
            when, offset = stamp
        event = self.build(when, offset, kind, source=source, extensions=extensions, epc_list=epc_list,
                           parent_id=parent_id, child_epcs=child_epcs, ilmd=ilmd)
        if self._hasher is not None:
            # The event is not yet seen outside this method, so its ID is set in place: dataclasses.replace would
            # build it a second time, about a tenth of a whole export.
            object.__setattr__(event, "event_id", self._hasher(event))
        return event

    def _stamp(self, at: str) -> tuple[datetime, str] | Second:
        """Read a row's time: as the fast path's second when it takes it, else through the clock (raising here)."""
        fast = self.fast
        second = None if fast is None else fast.second(at)
        return self._clock(at) if second is None else second

    def extensions(self, **values: str | None) -> tuple[tuple[str, str], ...]:
        """Return the line's own fields when the profile allows them, leaving out the empty ones."""
        if not self._ctx.extensions:
            return ()
        return (("workOrder", self._facts.work_order),
                *((name, value) for name, value in values.items() if value))

    def _sgtins(self, ids: Iterable[int], serials: dict[int, str], outbox_id: object) -> tuple[str, ...]:
        try:
            values = [serials[i] for i in ids]
        except KeyError as exc:
            raise EpcisError(f"outbox row {outbox_id} names serial #{exc.args[0]}, which does not exist") from exc
        prefix = self._facts.sgtin_prefix
        # sgtin() of each, its common case (nothing to escape) without a call per serial.
        return tuple([prefix + value if _URI_RESERVED.isdisjoint(value) else self.sgtin(value) for value in values])

    def commissioned(self, row: Sequence[object], serial_id: int, serials: dict[int, str]) -> RenderedEvent | None:
        """Return, written already, the event transition() yields for a row commissioning serial_id alone.

        None when the fast path does not take it: transition() then makes the row's event (or raises).
        """
        fast = self.fast
        serial = serials.get(serial_id)
        at = row[4]
        if fast is None or serial is None or at.__class__ is not str:
            return None
        ext = (self.extensions(device=_opt(row[6]), reason=_opt(row[7]), operator=_opt(row[8]))
               if self._ctx.extensions else ())
        epc = (self._facts.sgtin_prefix + serial if _URI_RESERVED.isdisjoint(serial) else self.sgtin(serial))
        return fast.single(str(at), COMMISSIONING, source=f"transition {row[1]}", extensions=ext, epc=epc,
                           ilmd=self._ilmd)

    def transition(
        self, row: Sequence[object], serials: dict[int, str], steps: list[list[int]] | None = None
    ) -> Iterator[EpcisEvent | RenderedEvent]:
        """Yield the events of one serial transition outbox row (steps: its serials column, parsed already)."""
        outbox_id, transition_id, _, moved, at, to_state = row[:6]
        at = str(at)
        stamp = self._stamp(at)
        if steps is None:
            steps = json.loads(str(moved))
        to = (_STATES.get(to_state) if isinstance(to_state, int) else None) or S(int(str(to_state)))
        ext = (self.extensions(device=_opt(row[6]), reason=_opt(row[7]), operator=_opt(row[8]))
               if self._ctx.extensions else ())
        source = f"transition {transition_id}"
        if to is S.COMMISSIONED:
            yield self.event(at, stamp, COMMISSIONING, source=source, extensions=ext,
                             epc_list=self._sgtins([s for s, _ in steps], serials, outbox_id), ilmd=self._ilmd)
            return
        active = [s for s, src in steps if src == S.COMMISSIONED]
        never = [s for s, src in steps if src in (S.SENT, S.PRINTED, S.IN_DOUBT)]
        if to is S.SAMPLED and active:
            yield self.event(at, stamp, SAMPLING, source=source, extensions=ext,
                             epc_list=self._sgtins(active, serials, outbox_id))
        if to is S.DESTROYED:
            samples = [s for s, src in steps if src == S.SAMPLED]
            active += [s for s in samples if self._was_commissioned(s, int(str(transition_id)))]
            if active:
                yield self.event(at, stamp, DESTROYING, source=source, extensions=ext,
                                 epc_list=self._sgtins(sorted(active), serials, outbox_id))
        if never and self._ctx.rejects == "decommission":
            yield self.event(at, stamp, DECOMMISSIONING, source=source, extensions=ext,
                             epc_list=self._sgtins(never, serials, outbox_id))

    def _was_commissioned(self, serial_id: int, before: int) -> bool:
        row = self._conn.execute(
            "SELECT 1 FROM serial_history AS h JOIN transition AS t ON t.id = h.transition_id"
            " WHERE h.serial_id = ? AND h.transition_id < ? AND t.to_state = ? LIMIT 1",
            (serial_id, before, int(S.COMMISSIONED)),
        ).fetchone()
        return row is not None

    def aggregation(
        self, row: Sequence[object], serials: dict[int, str], unit_ids: list[int] | None = None,
        box_ids: list[int] | None = None,
    ) -> Iterator[EpcisEvent | RenderedEvent]:
        """Yield the events of one aggregation outbox row (unit_ids, box_ids: its JSON columns, parsed already)."""
        outbox_id = row[0]
        event_id, at, action, container_id, identifier, new_identifier, serial_ids, container_ids = row[9:17]
        operator, reason, station = row[17:20]
        agg_id = int(str(event_id))
        at = str(at)
        stamp = self._stamp(at)
        ext = (self.extensions(device=_opt(station), reason=_opt(reason), operator=_opt(operator))
               if self._ctx.extensions else ())
        source = f"aggregation_event {agg_id}"
        units = [int(i) for i in (json.loads(str(serial_ids)) if unit_ids is None else unit_ids)]
        boxes = [int(i) for i in (json.loads(str(container_ids)) if box_ids is None else box_ids)]

        if container_id is None:
            if action == "destroy":  # a unit destroyed in rework: reported by its own serial move
                return
            raise EpcisError(f"aggregation event {agg_id} ({action}) names no container")
        box = int(str(container_id))
        parent = self.container_urn(box, agg_id - 1) if identifier is None else self._parent_urn(
            str(identifier), box)
        children = (*self._sgtins(units, serials, outbox_id), *(self.container_urn(c, agg_id) for c in boxes))
        if action == "pack":
            yield self.event(at, stamp, PACKING, source=source, extensions=ext, parent_id=parent, child_epcs=children)
        elif action == "unpack":
            yield self.event(at, stamp, UNPACKING, source=source, extensions=ext, parent_id=parent,
                             child_epcs=children)
        elif action == "replace":
            if len(units) != 2:
                raise EpcisError(f"aggregation event {agg_id} (replace) must name [old, new] units, not {units}")
            old, new = self._sgtins(units, serials, outbox_id)
            yield self.event(at, stamp, UNPACKING, source=source, extensions=ext, parent_id=parent, child_epcs=(old,))
            yield self.event(at, stamp, PACKING, source=source, extensions=ext, parent_id=parent, child_epcs=(new,))
        elif action == "destroy":
            yield self.event(at, stamp, DESTROYING, source=source, extensions=ext, epc_list=(parent,))
        elif action == "void_label":
            held = self._held_at(box, agg_id)
            if not held or new_identifier is None:
                return
            kind = self._container(box)[1]
            new_parent = self._identifier_urn(str(new_identifier), kind, box)
            members = self._member_urns(held, agg_id)
            yield self.event(at, stamp, UNPACKING, source=source, extensions=ext, parent_id=parent,
                             child_epcs=members)
            yield self.event(at, stamp, PACKING, source=source, extensions=ext, parent_id=new_parent,
                             child_epcs=members)

    def _parent_urn(self, identifier: str, box: int) -> str:
        kind = "sscc" if len(identifier) == 18 and identifier.isdigit() else self._container(box)[1]
        return self._identifier_urn(identifier, kind, box)

    def _held_at(self, box: int, at_event: int) -> list[tuple[int | None, int | None]]:
        """Return (serial_id, child container id) of what box held just before aggregation event at_event."""
        return [
            (row[0], row[1])
            for row in self._conn.execute(
                "SELECT serial_id, child_id FROM aggregation_member WHERE parent_id = ? AND packed_event < ?"
                " AND (unpacked_event IS NULL OR unpacked_event > ?) ORDER BY id",
                (box, at_event, at_event),
            )
        ]

    def _member_urns(self, held: list[tuple[int | None, int | None]], at_event: int) -> tuple[str, ...]:
        ids = [s for s, _ in held if s is not None]
        values = _serial_values(self._conn, ids)
        urns = [self.sgtin(values[i]) for i in ids]
        urns += [self.container_urn(c, at_event) for _, c in held if c is not None]
        return tuple(urns)


def _opt(value: object) -> str | None:
    return None if value is None else str(value)


def _serial_values(conn: sqlite3.Connection, ids: Sequence[int]) -> dict[int, str]:
    """Return serial id -> serial value for ids (and maybe other serials between them); missing ones left out."""
    if not ids:
        return {}
    low, high = min(ids), max(ids)
    if high - low < 2 * len(ids) + _SERIAL_SPAN_SLACK:
        # A page names serials made together, so their ids are close: one range of the primary key reads them
        # (with the few between them) cheaper than a lookup each.
        return dict(conn.execute("SELECT id, serial FROM serial WHERE id BETWEEN ? AND ?", (low, high)).fetchall())
    return dict(conn.execute(
        "SELECT id, serial FROM serial WHERE id IN (SELECT value FROM json_each(?))", (json.dumps(list(ids)),)
    ).fetchall())


_SERIAL_SPAN_SLACK = 64
_ONE_STEP: Callable[[str], re.Match[str] | None] = re.compile(r"\[\[([1-9][0-9]*),[0-9]\]\]").fullmatch
"""A serials column naming one serial as the outbox writes it, [[12,3]]: what json.loads reads as [[12, 3]]."""
_scan_json: Callable[[str, int], tuple[Any, int]] = vars(json.JSONDecoder())["scan_once"]
"""json.loads' own scanner (the C one), without the Python calls around it."""


def _json_values(texts: Sequence[str]) -> list[Any]:
    """Return json.loads of each text, in one pass of the C scanner when each is one compact JSON value."""
    scan = _scan_json
    try:
        scanned = [scan(text, 0) for text in texts]
    except (StopIteration, ValueError):
        return [json.loads(text) for text in texts]  # raises as it would have
    values = [value for value, _ in scanned]
    if any(end != len(text) for (_, end), text in zip(scanned, texts, strict=True)):
        return [json.loads(text) for text in texts]  # white space around a value: json.loads takes it
    return values


def _check_digit(digits: str) -> int:
    """Return gs1_check_digit(digits) for ASCII digits, summing their bytes (each 48 more than its value)."""
    data = digits.encode()
    threes, ones = data[::-2], data[-2::-2]
    return -(3 * (sum(threes) - 48 * len(threes)) + sum(ones) - 48 * len(ones)) % 10


def _sscc_urn(sscc: str, company_prefix_length: int) -> str:
    """Return sscc_uri(sscc, company_prefix_length), formatting a valid SSCC directly."""
    if (len(sscc) == 18 and sscc.isascii() and sscc.isdigit() and company_prefix_length in COMPANY_PREFIX_LENGTHS
            and _check_digit(sscc[:17]) == int(sscc[17])):
        # What sscc_uri writes for it, without the parse of the result it makes to check itself.
        n = company_prefix_length
        return f"urn:epc:id:sscc:{sscc[1 : 1 + n]}.{sscc[0]}{sscc[1 + n : 17]}"
    return sscc_uri(sscc, company_prefix_length)  # raises for a malformed one


_PAGE_SQL = (
    "SELECT o.id, o.transition_id, o.aggregation_event_id, o.serials, t.at, t.to_state{who}"
    " FROM epcis_outbox AS o LEFT JOIN transition AS t ON t.id = o.transition_id"
    " WHERE o.batch_id = ? AND o.id > ? AND o.id <= ? ORDER BY o.id LIMIT ?"
)
"""A page of outbox rows with their transitions; a transition's device, reason and operator only for extensions.

Each column read costs (SQLite locks for each one): nearly all rows are transitions, so the aggregation events
of the page are read apart (_AGGREGATION_SQL), and the three columns only extensions use are left out.
"""
_WHO = ", t.device, t.reason, t.operator"
_NO_WHO = (None, None, None)
_AGGREGATION_SQL = (
    "SELECT id, at, action, container_id, identifier, new_identifier, serial_ids, container_ids, operator, reason,"
    " station FROM aggregation_event WHERE {where}"
)
_NO_AGGREGATION = (None,) * 11
"""The aggregation columns of an outbox row whose event is missing (as a LEFT JOIN would give them)."""


def _aggregation_rows(conn: sqlite3.Connection, ids: list[int]) -> dict[int, tuple[Any, ...]]:
    """Return aggregation event id -> its columns (_AGGREGATION_SQL) for ids, in increasing order."""
    low, high = ids[0], ids[-1]
    if high - low < 4 * len(ids) + _SERIAL_SPAN_SLACK:
        # A page's events were made together, between them only their batch's open and close events and the like.
        cursor = conn.execute(_AGGREGATION_SQL.format(where="id BETWEEN ? AND ?"), (low, high))
    else:
        cursor = conn.execute(_AGGREGATION_SQL.format(where="id IN (SELECT value FROM json_each(?))"),
                              (json.dumps(ids),))
    return {row[0]: row for row in cursor}


def default_hasher() -> Callable[[EpcisEvent], str]:
    """Return the GS1 event hash function (imported when first needed)."""
    from edge.epcis.hashing import event_hash  # noqa: PLC0415 - the hash module is only needed when IDs are set

    return event_hash


def batch_events(
    conn: sqlite3.Connection,
    batch_id: int,
    ctx: EventContext,
    *,
    first_outbox: int = 1,
    last_outbox: int | None = None,
    hasher: Callable[[EpcisEvent], str] | None = None,
) -> BatchEvents:
    """Return the events of batch_id's outbox rows first_outbox..last_outbox (all by default), in outbox order.

    Reads PAGE_ROWS rows at a time, so memory stays flat for a batch of any size, and nothing before the first
    event is taken. hasher defaults to the GS1 event hash when ctx.event_ids is set.
    """
    if hasher is None and ctx.event_ids:
        hasher = default_hasher()
    return BatchEvents(conn, batch_id, ctx, first_outbox=first_outbox, last_outbox=last_outbox,
                       hasher=hasher if ctx.event_ids else None)


class BatchEvents:
    """The events of a batch's outbox rows, in outbox order: an iterator of EpcisEvent, read as it is used.

    A document writer may take them through prerendered() instead: the events the fast path can write come
    already written for that document (RenderedEvent), the same text the EpcisEvent would have given.
    """

    def __init__(self, conn: sqlite3.Connection, batch_id: int, ctx: EventContext, *, first_outbox: int,
                 last_outbox: int | None, hasher: Callable[[EpcisEvent], str] | None) -> None:
        self._conn = conn
        self._ctx = ctx
        self._hasher = hasher
        self._renderer: _Renderer | None = None
        self._writer: EventWriter | None = None
        self._items = self._rows(batch_id, first_outbox, last_outbox)

    def __iter__(self) -> BatchEvents:
        return self

    def __next__(self) -> EpcisEvent:
        item = next(self._items)
        if isinstance(item, RenderedEvent):
            raise TypeError("the events are being written pre-rendered: take them from prerendered()")
        return item

    @contextmanager
    def prerendered(self, writer: EventWriter) -> Iterator[Iterator[EpcisEvent | RenderedEvent]]:
        """Within the block: the same events, those the fast path takes written for writer's document."""
        self._writer = writer
        self._attach()
        try:
            yield self._items
        finally:
            self._writer = None
            self._attach()

    def _attach(self) -> None:
        """Give the renderer (once made) the fast path for the current writer, or take it away."""
        renderer = self._renderer
        if renderer is None:
            return
        if self._writer is None:
            renderer.fast = None
            return
        from edge.epcis.fastpath import FastEvents  # noqa: PLC0415 - only documents written whole need it

        renderer.fast = FastEvents.make(renderer, self._writer)

    def _rows(self, batch_id: int, first_outbox: int, last_outbox: int | None) -> Iterator[EpcisEvent | RenderedEvent]:
        conn = self._conn
        facts = batch_facts(conn, batch_id)
        renderer = self._renderer = _Renderer(conn, facts, self._ctx, self._hasher)
        self._attach()
        after = first_outbox - 1
        last = last_outbox if last_outbox is not None else 2**62
        extensions = self._ctx.extensions
        sql = _PAGE_SQL.format(who=_WHO if extensions else "")
        while True:
            rows: list[tuple[Any, ...]] = conn.execute(sql, (batch_id, after, last, PAGE_ROWS)).fetchall()
            if not rows:
                return
            agg_ids = [row[2] for row in rows if row[2] is not None]
            if agg_ids:
                # An aggregation row as transition() and aggregation() read it: outbox and transition columns (with
                # the three extension ones), then the event's.
                found = _aggregation_rows(conn, agg_ids)
                who = () if extensions else _NO_WHO
                rows = [row if row[2] is None else row + who + found.get(row[2], _NO_AGGREGATION) for row in rows]
            # Most rows commission one serial: its id is read from the text as the outbox writes it, without
            # parsing it as JSON. The other rows' JSON lists are parsed once, for the page's serial values and
            # containers, then for their events.
            ones = [int(step[1]) if row[5] == _COMMISSIONED and row[3].__class__ is str
                    and (step := _ONE_STEP(row[3])) else None for row in rows]
            others = [row for row, one in zip(rows, ones, strict=True) if one is None]
            parsed: list[list[Any]] = _json_values([
                row[3] if row[3] is not None else (None if row[2] is None else row[15]) or "[]" for row in others])
            box_texts = [None if row[2] is None else row[16] for row in rows]
            box_values = iter(_json_values([text for text in box_texts if text is not None]))
            boxes: list[list[int] | None] = [None if text is None else next(box_values) for text in box_texts]
            wanted = [one for one in ones if one is not None]
            wanted += [step[0] for row, ids in zip(others, parsed, strict=True) if row[3] is not None for step in ids]
            wanted += [i for row, ids in zip(others, parsed, strict=True) if row[3] is None for i in ids]
            serials = _serial_values(conn, wanted)
            renderer.prefetch_containers([c for listed in boxes if listed for c in listed])
            listed_ids = iter(parsed)
            for row, one, listed in zip(rows, ones, boxes, strict=True):
                if one is not None:
                    # The fast path, while a document takes it, writes the event without the general path's steps.
                    item = None if renderer.fast is None else renderer.commissioned(row, one, serials)
                    if item is not None:
                        yield item
                    else:
                        yield from renderer.transition(row, serials)
                    continue
                ids = next(listed_ids)
                if row[1] is not None:
                    yield from renderer.transition(row, serials, ids)
                else:
                    yield from renderer.aggregation(row, serials, ids, listed)
            after = rows[-1][0]


def outbox_range(conn: sqlite3.Connection, batch_id: int) -> tuple[int, int] | None:
    """Return the first and last outbox row ids of batch_id, or None when it has none."""
    row = conn.execute("SELECT min(id), max(id) FROM epcis_outbox WHERE batch_id = ?", (batch_id,)).fetchone()
    return None if row is None or row[0] is None else (int(row[0]), int(row[1]))
