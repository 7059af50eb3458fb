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
from dataclasses import dataclass
from datetime import datetime, timezone, tzinfo
from typing import TYPE_CHECKING, Any, Literal

from edge.epcis.model import EpcisEvent, Ilmd
from edge.errors import EdgeError
from edge.gs1.element import parse as parse_element_string
from edge.gs1.epc import escape_component, sgtin_uri, sscc_uri
from edge.markets.rules import format_gs1_date
from edge.serials.states import SerialState

if TYPE_CHECKING:
    import sqlite3
    from collections.abc import Callable, Iterable, Iterator, Sequence

S = SerialState

PAGE_ROWS = 2000
"""Outbox rows read per query: large enough to amortise the query, small enough to keep memory flat."""

_STATES = {int(state): state for state in S}
"""Serial states by stored value: a dict lookup per outbox row instead of the enum's own, slower, call."""
_STORE_TIME_LENGTH = len("2026-11-25T10:00:00.000000Z")

_CONTAINER_CACHE = 4 * PAGE_ROWS
"""Containers kept read: a page's children (each case once, on its pallet) and the containers named around them."""
_SSCC_CACHE = 4096
"""SSCC URNs kept converted: the containers of a batch are named close together in the outbox."""

# GS1 escapes in EPC URI components; a serial without them (nearly all) is used as it is.
_URI_RESERVED = frozenset('"%&/<>?#')


class EpcisError(EdgeError):
    """The store's history cannot be rendered as EPCIS: names the row and what is wrong with it."""


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
                urn = self._sscc_urns[identifier] = sscc_uri(identifier, self._facts.company_prefix_length)
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

    def event(self, **fields: object) -> EpcisEvent:
        """Build one event with the line's context (and its hash ID when asked)."""
        event = EpcisEvent(read_point=self._ctx.read_point, biz_location=self._ctx.biz_location,
                           biz_transactions=self._biz, **fields)  # type: ignore[arg-type]
        if self._hasher is not None:
            # The event is not yet seen outside this method, so its ID is set in place: dataclasses.replace would
            # build it a second time, about a tenth of a whole export.
            object.__setattr__(event, "event_id", self._hasher(event))
        return event

    def extensions(self, **values: str | None) -> tuple[tuple[str, str], ...]:
        """Return the line's own fields when the profile allows them, leaving out the empty ones."""
        if not self._ctx.extensions:
            return ()
        return (("workOrder", self._facts.work_order),
                *((name, value) for name, value in values.items() if value))

    def transition(
        self, row: Sequence[object], serials: dict[int, str], steps: list[list[int]] | None = None
    ) -> Iterator[EpcisEvent]:
        """Yield the events of one serial transition outbox row (steps: its serials column, parsed already)."""
        outbox_id, transition_id, _, moved, at, to_state = row[:6]
        device, reason, operator = row[6:9]
        when, offset = self._clock(str(at))
        if steps is None:
            steps = json.loads(str(moved))
        to = (_STATES.get(to_state) if isinstance(to_state, int) else None) or S(int(str(to_state)))
        ext = (self.extensions(device=_opt(device), reason=_opt(reason), operator=_opt(operator))
               if self._ctx.extensions else ())
        source = f"transition {transition_id}"

        def epcs(ids: Iterable[int]) -> tuple[str, ...]:
            try:
                return tuple(self.sgtin(serials[i]) for i in ids)
            except KeyError as exc:
                raise EpcisError(f"outbox row {outbox_id} names serial #{exc.args[0]}, which does not exist") from exc

        common = {"event_time": when, "event_time_zone_offset": offset, "extensions": ext, "source": source}
        if to is S.COMMISSIONED:
            yield self.event(type="ObjectEvent", action="ADD", biz_step="commissioning", disposition="active",
                             epc_list=epcs(s for s, _ in steps), ilmd=self._ilmd, **common)
            return
        active = [s for s, src in steps if src == S.COMMISSIONED]
        never = [s for s, src in steps if src in (S.SENT, S.PRINTED, S.IN_DOUBT)]
        if to is S.SAMPLED and active:
            yield self.event(type="ObjectEvent", action="OBSERVE", biz_step="sampling",
                             disposition="non_sellable_other", epc_list=epcs(active), **common)
        if to is S.DESTROYED:
            samples = [s for s, src in steps if src == S.SAMPLED]
            active += [s for s in samples if self._was_commissioned(s, int(str(transition_id)))]
            if active:
                yield self.event(type="ObjectEvent", action="DELETE", biz_step="destroying", disposition="destroyed",
                                 epc_list=epcs(sorted(active)), **common)
        if never and self._ctx.rejects == "decommission":
            yield self.event(type="ObjectEvent", action="DELETE", biz_step="decommissioning", disposition="inactive",
                             epc_list=epcs(never), **common)

    def _was_commissioned(self, serial_id: int, before: int) -> bool:
        row = self._conn.execute(
            "SELECT 1 FROM serial_history AS h JOIN transition AS t ON t.id = h.transition_id"
            " WHERE h.serial_id = ? AND h.transition_id < ? AND t.to_state = ? LIMIT 1",
            (serial_id, before, int(S.COMMISSIONED)),
        ).fetchone()
        return row is not None

    def aggregation(
        self, row: Sequence[object], serials: dict[int, str], unit_ids: list[int] | None = None
    ) -> Iterator[EpcisEvent]:
        """Yield the events of one aggregation outbox row (unit_ids: its serial_ids column, parsed already)."""
        outbox_id = row[0]
        event_id, at, action, container_id, identifier, new_identifier, serial_ids, container_ids = row[9:17]
        operator, reason, station = row[17:20]
        agg_id = int(str(event_id))
        when, offset = self._clock(str(at))
        ext = (self.extensions(device=_opt(station), reason=_opt(reason), operator=_opt(operator))
               if self._ctx.extensions else ())
        common = {"event_time": when, "event_time_zone_offset": offset, "extensions": ext,
                  "source": f"aggregation_event {agg_id}"}
        units = [int(i) for i in (json.loads(str(serial_ids)) if unit_ids is None else unit_ids)]
        boxes = [int(i) for i in json.loads(str(container_ids))]

        def unit_urns(ids: Iterable[int]) -> tuple[str, ...]:
            try:
                return tuple(self.sgtin(serials[i]) for i in ids)
            except KeyError as exc:
                raise EpcisError(f"outbox row {outbox_id} names serial #{exc.args[0]}, which does not exist") from exc

        if container_id is None:
            if action == "destroy":  # a unit destroyed in rework: reported by its own serial move
                return
            raise EpcisError(f"aggregation event {agg_id} ({action}) names no container")
        box = int(str(container_id))
        parent = self.container_urn(box, agg_id - 1) if identifier is None else self._parent_urn(
            str(identifier), box)
        children = (*unit_urns(units), *(self.container_urn(c, agg_id) for c in boxes))
        if action == "pack":
            yield self.event(type="AggregationEvent", action="ADD", biz_step="packing", disposition="in_progress",
                             parent_id=parent, child_epcs=children, **common)
        elif action == "unpack":
            yield self.event(type="AggregationEvent", action="DELETE", biz_step="unpacking",
                             parent_id=parent, child_epcs=children, **common)
        elif action == "replace":
            if len(units) != 2:
                raise EpcisError(f"aggregation event {agg_id} (replace) must name [old, new] units, not {units}")
            old, new = unit_urns(units)
            yield self.event(type="AggregationEvent", action="DELETE", biz_step="unpacking",
                             parent_id=parent, child_epcs=(old,), **common)
            yield self.event(type="AggregationEvent", action="ADD", biz_step="packing", disposition="in_progress",
                             parent_id=parent, child_epcs=(new,), **common)
        elif action == "destroy":
            yield self.event(type="ObjectEvent", action="DELETE", biz_step="destroying", disposition="destroyed",
                             epc_list=(parent,), **common)
        elif action == "void_label":
            held = self._held_at(box, agg_id)
            if not held or new_identifier is None:
                return
            kind = self._container(box)[1]
            new_parent = self._identifier_urn(str(new_identifier), kind, box)
            members = self._member_urns(held, agg_id)
            yield self.event(type="AggregationEvent", action="DELETE", biz_step="unpacking",
                             parent_id=parent, child_epcs=members, **common)
            yield self.event(type="AggregationEvent", action="ADD", biz_step="packing", disposition="in_progress",
                             parent_id=new_parent, child_epcs=members, **common)

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
    if not ids:
        return {}
    return {
        int(row[0]): str(row[1])
        for row in conn.execute(
            "SELECT id, serial FROM serial WHERE id IN (SELECT value FROM json_each(?))", (json.dumps(list(ids)),)
        )
    }


_ROWS_SQL = (
    "SELECT o.id, o.transition_id, o.aggregation_event_id, o.serials, t.at, t.to_state, t.device, t.reason,"
    " t.operator, e.id, e.at, e.action, e.container_id, e.identifier, e.new_identifier, e.serial_ids,"
    " e.container_ids, e.operator, e.reason, e.station"
    " FROM epcis_outbox AS o LEFT JOIN transition AS t ON t.id = o.transition_id"
    " LEFT JOIN aggregation_event AS e ON e.id = o.aggregation_event_id"
    " WHERE o.batch_id = ? AND o.id > ? AND o.id <= ? ORDER BY o.id LIMIT ?"
)


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
) -> Iterator[EpcisEvent]:
    """Yield the events of batch_id's outbox rows first_outbox..last_outbox (all by default), in outbox order.

    Reads PAGE_ROWS rows at a time, so memory stays flat for a batch of any size. hasher defaults to the GS1
    event hash when ctx.event_ids is set.
    """
    facts = batch_facts(conn, batch_id)
    if hasher is None and ctx.event_ids:
        hasher = default_hasher()
    renderer = _Renderer(conn, facts, ctx, hasher if ctx.event_ids else None)
    after = first_outbox - 1
    last = last_outbox if last_outbox is not None else 2**62
    while True:
        rows = conn.execute(_ROWS_SQL, (batch_id, after, last, PAGE_ROWS)).fetchall()
        if not rows:
            return
        # Each row's JSON list of serials is parsed once: for the page's serial values, then for its events.
        parsed: list[list[Any]] = [json.loads(row[3] if row[3] is not None else row[15] or "[]") for row in rows]
        wanted: list[int] = []
        for row, ids in zip(rows, parsed, strict=True):
            wanted += [step[0] for step in ids] if row[3] is not None else ids
        serials = _serial_values(conn, wanted)
        renderer.prefetch_containers([c for row in rows if row[16] is not None for c in json.loads(row[16])])
        for row, ids in zip(rows, parsed, strict=True):
            if row[1] is not None:
                yield from renderer.transition(row, serials, ids)
            else:
                yield from renderer.aggregation(row, serials, ids)
        after = rows[-1][0]


def outbox_range(conn: sqlite3.Connection, batch_id: int) -> tuple[int, int] | None:
    """Return the first and last outbox row ids of batch_id, or None when it has none."""
    row = conn.execute("SELECT min(id), max(id) FROM epcis_outbox WHERE batch_id = ?", (batch_id,)).fetchone()
    return None if row is None or row[0] is None else (int(row[0]), int(row[1]))
