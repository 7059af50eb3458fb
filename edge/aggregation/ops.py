"""Aggregation changes as functions of a SQLite connection, run inside the store writer's transaction.

Each change checks everything first and raises an AggregationError naming the unit or container and the
rule (undoing only itself, see edge.store), or writes all of its effect together with its
aggregation_event rows. The rules (DESIGN invariant 5): only commissioned units are packed; a child is
in at most one parent; children follow the product hierarchy (units into the first level, each level into
the next); a container never holds more than its capacity and closes full unless an operator closes it
short with a reason; nothing goes into a closed or destroyed container; batches are not mixed unless
asked; rework (unpack, replace, destroy, void a label) names an operator and a reason; an SSCC is
allocated once, ever.

Removing children from a container that sits inside another one is refused: take it out of its parent
first. A closed container that loses children is reopened (an 'open' event), so a closed container is
always full or closed short on purpose.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from edge.errors import AggregationError, ContainerNotFoundError, SsccExhaustedError
from edge.gs1.identifiers import IdentifierError, build_sscc, validate_sscc
from edge.products.models import LEVELS
from edge.serials.ops import Move, apply_moves, get_batch
from edge.serials.states import ACTIVE_BATCH_STATES, SerialState

if TYPE_CHECKING:
    import sqlite3
    from collections.abc import Iterable, Sequence

    from edge.serials.ops import BatchRow

S = SerialState

ContainerState = Literal["open", "closed", "destroyed"]
Action = Literal["pack", "unpack", "replace", "destroy", "close", "void_label", "open"]

# Offending children named in one error message; the count of the rest follows.
SHOWN_PROBLEMS = 10
# Children named in one change: a pallet of cases or a case of units is far below this, and a change this
# size still holds the writer for only milliseconds.
MAX_CHILDREN = 10_000


@dataclass(frozen=True, slots=True)
class ContainerRow:
    """One container as stored, with how many children it holds now and the container holding it."""

    id: int
    batch_id: int
    level: str
    identifier: str
    kind: str
    capacity: int
    state: ContainerState
    count: int
    parent_id: int | None
    partial_reason: str | None
    closed_by: str | None
    opened_at: str
    closed_at: str | None

    @property
    def name(self) -> str:
        """How messages name the container, like: case 001234567000000017 (#3)."""
        return f"{self.level} {self.identifier} (#{self.id})"

    def as_dict(self) -> dict[str, Any]:
        """Return the container as JSON-able data."""
        return {
            "id": self.id, "batch": self.batch_id, "level": self.level, "identifier": self.identifier,
            "kind": self.kind, "capacity": self.capacity, "state": self.state, "count": self.count,
            "parent": self.parent_id, "partial_reason": self.partial_reason, "closed_by": self.closed_by,
            "opened_at": self.opened_at, "closed_at": self.closed_at,
        }


@dataclass(frozen=True, slots=True)
class Contents:
    """What a container holds now: units by serial row id and child containers by id, in packing order."""

    serial_ids: tuple[int, ...]
    container_ids: tuple[int, ...]

    def __len__(self) -> int:
        return len(self.serial_ids) + len(self.container_ids)


@dataclass(frozen=True, slots=True)
class AggregationEvent:
    """One row of the append-only aggregation log."""

    id: int
    at: str
    batch_id: int
    action: Action
    container_id: int | None
    identifier: str | None
    new_identifier: str | None
    serial_ids: tuple[int, ...]
    container_ids: tuple[int, ...]
    operator: str | None
    reason: str | None
    station: str | None


@dataclass(frozen=True, slots=True)
class Destroyed:
    """What one destroy changed: the units moved to destroyed and the containers destroyed."""

    serial_ids: tuple[int, ...]
    container_ids: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class _Recipe:
    """What a batch's product says about aggregation: SSCC parts and each level's capacity and child level."""

    batch: BatchRow
    company_prefix: str
    extension_digit: int
    capacity: dict[str, int]
    child_level: dict[str, str]
    mixed: frozenset[str] = frozenset()
    """Levels the recipe lets hold children of other batches."""

    def describe(self) -> str:
        chain = " → ".join(["unit", *self.capacity])
        return f"product {self.batch.product_id} packs {chain}"


# -- SSCCs ----------------------------------------------------------------------------------------


def allocate_sscc(conn: sqlite3.Connection, company_prefix: str, extension_digit: int) -> str:
    """Return the next never-allocated SSCC of the company prefix and extension digit; the counter moves past it.

    SsccExhaustedError when every serial reference has been allocated.
    """
    _check_sscc_parts(company_prefix, extension_digit)
    digits = 16 - len(company_prefix)
    row = conn.execute(
        "SELECT next_reference FROM sscc_counter WHERE company_prefix = ? AND extension_digit = ?",
        (company_prefix, extension_digit),
    ).fetchone()
    reference = 0 if row is None else int(row[0])
    # An SSCC supplied from outside (open_container with an identifier) may sit on the counter's path: skip it.
    while reference < 10**digits:
        sscc = build_sscc(extension_digit, company_prefix, f"{reference:0{digits}d}")
        reference += 1
        if _identifier_use(conn, sscc) is None:
            _set_counter(conn, company_prefix, extension_digit, reference)
            return sscc
    raise SsccExhaustedError(
        f"every SSCC of company prefix {company_prefix} with extension digit {extension_digit} has been allocated "
        f"({10**digits:,} serial references); use another extension digit for this product"
    )


def set_sscc_counter(conn: sqlite3.Connection, company_prefix: str, extension_digit: int, next_reference: int) -> None:
    """Move the counter forward to next_reference (a line moved to a new PC continues where it was); never back."""
    _check_sscc_parts(company_prefix, extension_digit)
    digits = 16 - len(company_prefix)
    if not 0 <= next_reference <= 10**digits:
        raise AggregationError(f"SSCC serial reference {next_reference} is outside 0 to {10**digits:,}")
    row = conn.execute(
        "SELECT next_reference FROM sscc_counter WHERE company_prefix = ? AND extension_digit = ?",
        (company_prefix, extension_digit),
    ).fetchone()
    if row is not None and int(row[0]) > next_reference:
        raise AggregationError(
            f"the SSCC counter of {company_prefix}/{extension_digit} is at {row[0]}; it never goes back "
            f"(to {next_reference}): an SSCC is never reused"
        )
    _set_counter(conn, company_prefix, extension_digit, next_reference)


def _check_sscc_parts(company_prefix: str, extension_digit: int) -> None:
    if not (company_prefix.isascii() and company_prefix.isdigit() and 6 <= len(company_prefix) <= 12):
        raise AggregationError(f"GS1 Company Prefix {company_prefix!r}: must be 6 to 12 digits")
    if not 0 <= extension_digit <= 9:
        raise AggregationError(f"SSCC extension digit {extension_digit}: must be 0 to 9")


def _set_counter(conn: sqlite3.Connection, company_prefix: str, extension_digit: int, next_reference: int) -> None:
    conn.execute(
        "INSERT INTO sscc_counter (company_prefix, extension_digit, next_reference) VALUES (?, ?, ?)"
        " ON CONFLICT (company_prefix, extension_digit) DO UPDATE SET next_reference = excluded.next_reference",
        (company_prefix, extension_digit, next_reference),
    )


def _identifier_use(conn: sqlite3.Connection, identifier: str) -> str | None:
    """Return how identifier is already used (by a container, or voided), or None when it never was."""
    row = conn.execute("SELECT id, level FROM container WHERE identifier = ?", (identifier,)).fetchone()
    if row is not None:
        return f"it identifies {row[1]} #{row[0]}"
    row = conn.execute("SELECT container_id FROM sscc_voided WHERE sscc = ?", (identifier,)).fetchone()
    if row is not None:
        return f"it was voided on container #{row[0]} and is never reused"
    return None


# -- containers -----------------------------------------------------------------------------------


def open_container(
    conn: sqlite3.Connection,
    batch_id: int,
    level: str,
    capacity: int | None = None,
    *,
    identifier: str | None = None,
    now: str,
    operator: str | None = None,
    station: str | None = None,
) -> int:
    """Open an empty container of the batch at level; return its id.

    capacity defaults to the recipe's and may not differ from it (a short container is closed short by an
    operator instead). Without identifier an SSCC is allocated from the product's company prefix and
    extension digit; an 18-digit identifier must be a valid, never-used SSCC, anything else is taken as the
    SGTIN of a trade-item case.
    """
    recipe = _recipe(conn, batch_id)
    _check_batch_active(recipe.batch)
    if level not in recipe.capacity:
        raise AggregationError(f"{recipe.batch.name}: there is no {level} level: {recipe.describe()}")
    wanted = recipe.capacity[level]
    if capacity is not None and capacity != wanted:
        raise AggregationError(
            f"{recipe.batch.name}: a {level} holds {wanted} per the recipe, not {capacity}; "
            "an operator closes a short one explicitly instead"
        )
    if identifier is None:
        identifier = allocate_sscc(conn, recipe.company_prefix, recipe.extension_digit)
        kind = "sscc"
    else:
        kind = _identifier_kind(identifier)
        use = _identifier_use(conn, identifier)
        if use is not None:
            raise AggregationError(f"cannot open a {level} as {identifier}: {use}")
    container_id = conn.execute(
        "INSERT INTO container (batch_id, level, identifier, kind, capacity, state, opened_at, opened_by, station)"
        " VALUES (?, ?, ?, ?, ?, 'open', ?, ?, ?)",
        (batch_id, level, identifier, kind, wanted, now, operator, station),
    ).lastrowid
    if container_id is None:
        raise AggregationError("SQLite gave no id for the new container")
    _event(conn, "open", batch_id, now=now, container_id=container_id, identifier=identifier, operator=operator,
           reason="opened", station=station)
    return container_id


def _identifier_kind(identifier: str) -> str:
    if len(identifier) == 18 and identifier.isascii() and identifier.isdigit():
        try:
            validate_sscc(identifier)
        except IdentifierError as err:
            raise AggregationError(f"{identifier} is not a valid SSCC: {err}") from err
        return "sscc"
    if not identifier.strip():
        raise AggregationError("a container identifier cannot be empty")
    return "sgtin"


def pack(
    conn: sqlite3.Connection,
    parent: int,
    *,
    serial_ids: Sequence[int] = (),
    containers: Sequence[int] = (),
    now: str,
    operator: str | None = None,
    station: str | None = None,
    allow_mixed_batches: bool = False,
) -> ContainerRow:
    """Put units (serial row ids) and child containers into the open container parent; return it after."""
    box = container(conn, parent)
    serial_ids, containers = list(serial_ids), list(containers)
    if not serial_ids and not containers:
        raise AggregationError(f"nothing to pack into {box.name}")
    _check_names_once(serial_ids, containers, f"pack into {box.name}")
    recipe = _recipe(conn, box.batch_id)
    _check_batch_active(recipe.batch)
    if box.state != "open":
        raise AggregationError(f"cannot pack into {box.name}: it is {box.state}; nothing is packed into a "
                               f"{box.state} container")
    child_level = recipe.child_level[box.level]
    if serial_ids and child_level != "unit":
        raise AggregationError(
            f"cannot pack units into {box.name}: a {box.level} holds {child_level}s ({recipe.describe()})"
        )
    mixed = allow_mixed_batches or box.level in recipe.mixed
    problems = [*_unit_problems(conn, serial_ids, box, mixed),
                *_child_problems(conn, containers, box, child_level, mixed)]
    if problems:
        raise AggregationError(f"cannot pack into {box.name}: {_join(problems)}; nothing was packed")
    adding = len(serial_ids) + len(containers)
    if box.count + adding > box.capacity:
        raise AggregationError(
            f"cannot pack {adding} more into {box.name}: it holds {box.count} of {box.capacity}; "
            "its capacity is never exceeded"
        )
    event = _event(conn, "pack", box.batch_id, now=now, container_id=box.id, identifier=box.identifier,
                   serial_ids=serial_ids, container_ids=containers, operator=operator, station=station)
    conn.executemany(
        "INSERT INTO aggregation_member (parent_id, serial_id, packed_event) VALUES (?, ?, ?)",
        ((box.id, serial_id, event) for serial_id in serial_ids),
    )
    conn.executemany(
        "INSERT INTO aggregation_member (parent_id, child_id, packed_event) VALUES (?, ?, ?)",
        ((box.id, child, event) for child in containers),
    )
    return container(conn, box.id)


def _unit_problems(
    conn: sqlite3.Connection, serial_ids: list[int], box: ContainerRow, allow_mixed: bool
) -> list[str]:
    """Return why each of the units may not go into box: not commissioned, packed already, another batch."""
    if not serial_ids:
        return []
    found = _units(conn, serial_ids)
    problems: list[str] = []
    for serial_id in serial_ids:
        unit = found.get(serial_id)
        if unit is None:
            problems.append(f"unit #{serial_id} does not exist")
            continue
        name, state, batch_id, parent_id = unit
        if state != S.COMMISSIONED:
            problems.append(f"{name} is {S(state).label}: only commissioned units are aggregated")
        elif parent_id is not None:
            problems.append(f"{name} is already in {_container_name(conn, parent_id)}: a unit is in one container "
                            "at most (unpack it first)")
        elif batch_id != box.batch_id and not allow_mixed:
            problems.append(f"{name} belongs to batch {batch_id}, not batch {box.batch_id}: batches are not mixed "
                            "unless the recipe allows it")
    return problems


def _child_problems(
    conn: sqlite3.Connection, containers: list[int], box: ContainerRow, child_level: str, allow_mixed: bool
) -> list[str]:
    """Return why each child container may not go into box: level, state, packed already, another batch."""
    problems: list[str] = []
    for child_id in containers:
        if child_id == box.id:
            problems.append(f"{box.name} cannot go into itself")
            continue
        try:
            child = container(conn, child_id)
        except ContainerNotFoundError:
            problems.append(f"container #{child_id} does not exist")
            continue
        if child.level != child_level:
            problems.append(f"{child.name} is a {child.level}; a {box.level} holds {child_level}s")
        elif child.state != "closed":
            problems.append(f"{child.name} is {child.state}: only a closed {child.level} is packed")
        elif child.parent_id is not None:
            problems.append(f"{child.name} is already in {_container_name(conn, child.parent_id)}: a {child.level} "
                            "is in one container at most (take it out first)")
        elif child.batch_id != box.batch_id and not allow_mixed:
            problems.append(f"{child.name} belongs to batch {child.batch_id}, not batch {box.batch_id}: batches "
                            "are not mixed unless the recipe allows it")
    return problems


def unpack(
    conn: sqlite3.Connection,
    parent: int,
    *,
    serial_ids: Sequence[int] | None = None,
    containers: Sequence[int] | None = None,
    now: str,
    operator: str | None,
    reason: str | None,
    station: str | None = None,
) -> ContainerRow:
    """Take units and child containers out of parent (both None: everything in it); return it after.

    A closed parent is reopened. Refused when parent is itself inside another container.
    """
    _check_rework(operator, reason, "unpacking")
    box = container(conn, parent)
    _check_batch_active(get_batch(conn, box.batch_id))
    if box.state == "destroyed":
        raise AggregationError(f"cannot unpack {box.name}: it is destroyed")
    held = contents(conn, box.id)
    if serial_ids is None and containers is None:
        units, children = list(held.serial_ids), list(held.container_ids)
        if not units and not children:
            raise AggregationError(f"{box.name} is empty: nothing to unpack")
    else:
        units, children = list(serial_ids or ()), list(containers or ())
        if not units and not children:
            raise AggregationError(f"nothing named to unpack from {box.name}")
        _check_names_once(units, children, f"unpack from {box.name}")
        in_box = set(held.serial_ids)
        problems = [f"unit #{serial_id} is not in {box.name}" for serial_id in units if serial_id not in in_box]
        in_box = set(held.container_ids)
        problems += [f"container #{child} is not in {box.name}" for child in children if child not in in_box]
        if problems:
            raise AggregationError(f"cannot unpack from {box.name}: {_join(problems)}; nothing was unpacked")
    _take_out(conn, box, units, children, now=now, operator=operator, reason=reason, station=station)
    return container(conn, box.id)


def replace(
    conn: sqlite3.Connection,
    parent: int,
    old_serial_id: int,
    new_serial_id: int,
    *,
    now: str,
    operator: str | None,
    reason: str | None,
    station: str | None = None,
    allow_mixed_batches: bool = False,
) -> ContainerRow:
    """Swap unit old_serial_id in parent for new_serial_id (commissioned, in no container); return parent after.

    The count does not change, so a closed parent stays closed.
    """
    _check_rework(operator, reason, "replacing a unit")
    box = container(conn, parent)
    _check_batch_active(get_batch(conn, box.batch_id))
    if box.state == "destroyed":
        raise AggregationError(f"cannot replace a unit in {box.name}: it is destroyed")
    if old_serial_id == new_serial_id:
        raise AggregationError(f"unit #{old_serial_id} cannot replace itself in {box.name}")
    if old_serial_id not in contents(conn, box.id).serial_ids:
        raise AggregationError(f"cannot replace unit #{old_serial_id}: it is not in {box.name}")
    problems = _unit_problems(conn, [new_serial_id], box, allow_mixed_batches)
    if problems:
        raise AggregationError(f"cannot replace unit #{old_serial_id} in {box.name}: {_join(problems)}")
    event = _event(conn, "replace", box.batch_id, now=now, container_id=box.id, identifier=box.identifier,
                   serial_ids=[old_serial_id, new_serial_id], operator=operator, reason=reason, station=station)
    conn.execute(
        "UPDATE aggregation_member SET unpacked_event = ? WHERE serial_id = ? AND unpacked_event IS NULL",
        (event, old_serial_id),
    )
    conn.execute(
        "INSERT INTO aggregation_member (parent_id, serial_id, packed_event) VALUES (?, ?, ?)",
        (box.id, new_serial_id, event),
    )
    return container(conn, box.id)


def destroy_unit(
    conn: sqlite3.Connection,
    serial_id: int,
    *,
    now: str,
    operator: str | None,
    reason: str | None,
    station: str | None = None,
) -> Destroyed:
    """Destroy one commissioned unit: take it out of its container if packed, then commissioned → destroyed."""
    _check_rework(operator, reason, "destroying a unit")
    unit = _units(conn, [serial_id]).get(serial_id)
    if unit is None:
        raise AggregationError(f"unit #{serial_id} does not exist")
    name, state, batch_id, parent_id = unit
    if state != S.COMMISSIONED:
        raise AggregationError(
            f"cannot destroy {name} in rework: it is {S(state).label}; only commissioned units are (the serial "
            "ledger decommissions the others)"
        )
    if batch_id is None:
        raise AggregationError(f"{name} belongs to no batch")
    _check_batch_active(get_batch(conn, batch_id))
    if parent_id is not None:
        box = container(conn, parent_id)
        _take_out(conn, box, [serial_id], [], now=now, operator=operator, reason=reason, station=station)
    _destroy_serials(conn, [serial_id], batch_id, now=now, operator=operator, reason=reason, station=station)
    _event(conn, "destroy", batch_id, now=now, serial_ids=[serial_id], operator=operator, reason=reason,
           station=station)
    return Destroyed((serial_id,), ())


def destroy_container(
    conn: sqlite3.Connection,
    container_id: int,
    *,
    now: str,
    operator: str | None,
    reason: str | None,
    station: str | None = None,
) -> Destroyed:
    """Destroy a container with everything in it: units destroyed, child containers destroyed in turn.

    The container is first taken out of its parent, if it has one.
    """
    _check_rework(operator, reason, "destroying a container")
    box = container(conn, container_id)
    _check_batch_active(get_batch(conn, box.batch_id))
    if box.state == "destroyed":
        raise AggregationError(f"{box.name} is destroyed already")
    if box.parent_id is not None:
        holder = container(conn, box.parent_id)
        _take_out(conn, holder, [], [box.id], now=now, operator=operator, reason=reason, station=station)
    units: list[int] = []
    boxes: list[int] = []
    _destroy_tree(conn, container(conn, box.id), units, boxes, now=now, operator=operator, reason=reason,
                  station=station)
    return Destroyed(tuple(units), tuple(boxes))


def _destroy_tree(
    conn: sqlite3.Connection,
    box: ContainerRow,
    units: list[int],
    boxes: list[int],
    *,
    now: str,
    operator: str | None,
    reason: str | None,
    station: str | None,
) -> None:
    """Empty box (in no parent any more), destroy its children depth first, then its units and itself."""
    held = contents(conn, box.id)
    if len(held):
        _take_out(conn, box, list(held.serial_ids), list(held.container_ids), now=now, operator=operator,
                  reason=reason, station=station, reopen=False)
    for child in held.container_ids:
        _destroy_tree(conn, container(conn, child), units, boxes, now=now, operator=operator, reason=reason,
                      station=station)
    if held.serial_ids:
        _destroy_serials(conn, list(held.serial_ids), box.batch_id, now=now, operator=operator, reason=reason,
                         station=station)
    conn.execute("UPDATE container SET state = 'destroyed' WHERE id = ?", (box.id,))
    _event(conn, "destroy", box.batch_id, now=now, container_id=box.id, identifier=box.identifier,
           serial_ids=held.serial_ids, container_ids=held.container_ids, operator=operator, reason=reason,
           station=station)
    units.extend(held.serial_ids)
    boxes.append(box.id)


def _destroy_serials(
    conn: sqlite3.Connection,
    serial_ids: list[int],
    batch_id: int,
    *,
    now: str,
    operator: str | None,
    reason: str | None,
    station: str | None,
) -> None:
    """Move units commissioned → destroyed through the serial ledger's own path (transition and history rows)."""
    # Units of another batch (mixed containers) are moved under their own batch, so each batch reconciles.
    by_batch: dict[int | None, list[int]] = {}
    for serial_id, (_, _, unit_batch, _) in _units(conn, serial_ids).items():
        by_batch.setdefault(unit_batch, []).append(serial_id)
    moves = [
        Move(tuple(sorted(ids)), S.DESTROYED, reason=f"destroyed in rework: {reason}", device=station,
             operator=operator, batch_id=unit_batch if unit_batch is not None else batch_id,
             expect=frozenset({S.COMMISSIONED}))
        for unit_batch, ids in sorted(by_batch.items(), key=lambda item: item[0] or 0)
    ]
    for outcome in apply_moves(conn, moves, now):
        if isinstance(outcome, Exception):
            raise AggregationError(f"cannot destroy the units: {outcome}") from outcome


def _take_out(
    conn: sqlite3.Connection,
    box: ContainerRow,
    serial_ids: list[int],
    containers: list[int],
    *,
    now: str,
    operator: str | None,
    reason: str | None,
    station: str | None,
    reopen: bool = True,
) -> None:
    """Record the unpacking of these children of box, reopening box when it was closed."""
    if box.parent_id is not None:
        raise AggregationError(
            f"cannot take anything out of {box.name}: it is in {_container_name(conn, box.parent_id)}; "
            f"take the {box.level} out of it first"
        )
    if reopen and box.state == "closed":
        conn.execute(
            "UPDATE container SET state = 'open', closed_at = NULL, closed_by = NULL, partial_reason = NULL"
            " WHERE id = ?",
            (box.id,),
        )
        _event(conn, "open", box.batch_id, now=now, container_id=box.id, identifier=box.identifier,
               operator=operator, reason=f"reopened: {reason}", station=station)
    event = _event(conn, "unpack", box.batch_id, now=now, container_id=box.id, identifier=box.identifier,
                   serial_ids=serial_ids, container_ids=containers, operator=operator, reason=reason,
                   station=station)
    conn.execute(
        "UPDATE aggregation_member SET unpacked_event = ? WHERE parent_id = ? AND unpacked_event IS NULL AND"
        " (serial_id IN (SELECT value FROM json_each(?)) OR child_id IN (SELECT value FROM json_each(?)))",
        (event, box.id, json.dumps(serial_ids), json.dumps(containers)),
    )


def close_container(
    conn: sqlite3.Connection,
    container_id: int,
    *,
    now: str,
    operator: str | None = None,
    partial_reason: str | None = None,
    station: str | None = None,
) -> ContainerRow:
    """Close an open container: full, or short of its capacity when an operator gives partial_reason."""
    box = container(conn, container_id)
    _check_batch_active(get_batch(conn, box.batch_id))
    if box.state != "open":
        raise AggregationError(f"cannot close {box.name}: it is {box.state}")
    if box.count == 0:
        raise AggregationError(f"cannot close {box.name}: it is empty; destroy it instead")
    short = box.count < box.capacity
    if short and not (partial_reason and partial_reason.strip() and operator):
        raise AggregationError(
            f"cannot close {box.name}: it holds {box.count} of {box.capacity}; only an operator closes a "
            f"{box.level} short, with a reason"
        )
    reason = partial_reason if short else None
    conn.execute(
        "UPDATE container SET state = 'closed', closed_at = ?, closed_by = ?, partial_reason = ? WHERE id = ?",
        (now, operator, reason, box.id),
    )
    _event(conn, "close", box.batch_id, now=now, container_id=box.id, identifier=box.identifier, operator=operator,
           reason=f"closed short: {reason}" if short else "full", station=station)
    return container(conn, box.id)


def void_label(
    conn: sqlite3.Connection,
    container_id: int,
    *,
    now: str,
    reason: str | None,
    operator: str | None,
    station: str | None = None,
) -> str:
    """Void the container's SSCC (recorded, never reused) and give it a freshly allocated one; return the new SSCC."""
    _check_rework(operator, reason, "voiding a label")
    if operator is None or reason is None:  # for the type checker: _check_rework refused these
        raise AggregationError("voiding a label needs an operator and a reason")
    box = container(conn, container_id)
    recipe = _recipe(conn, box.batch_id)
    _check_batch_active(recipe.batch)
    if box.state == "destroyed":
        raise AggregationError(f"cannot void the label of {box.name}: it is destroyed")
    if box.kind != "sscc":
        raise AggregationError(f"cannot void the label of {box.name}: it is identified by an SGTIN, not an SSCC")
    new = allocate_sscc(conn, recipe.company_prefix, recipe.extension_digit)
    conn.execute(
        "INSERT INTO sscc_voided (sscc, container_id, reason, operator, at) VALUES (?, ?, ?, ?, ?)",
        (box.identifier, box.id, reason, operator, now),
    )
    conn.execute("UPDATE container SET identifier = ? WHERE id = ?", (new, box.id))
    _event(conn, "void_label", box.batch_id, now=now, container_id=box.id, identifier=box.identifier,
           new_identifier=new, operator=operator, reason=reason, station=station)
    return new


# -- reads ----------------------------------------------------------------------------------------

_CONTAINER_SQL = (
    "SELECT c.id, c.batch_id, c.level, c.identifier, c.kind, c.capacity, c.state,"
    " (SELECT count(*) FROM aggregation_member AS m WHERE m.parent_id = c.id AND m.unpacked_event IS NULL),"
    " (SELECT p.parent_id FROM aggregation_member AS p WHERE p.child_id = c.id AND p.unpacked_event IS NULL),"
    " c.partial_reason, c.closed_by, c.opened_at, c.closed_at FROM container AS c"
)


def container(conn: sqlite3.Connection, container_id: int) -> ContainerRow:
    """Return the container with id container_id; ContainerNotFoundError when there is none."""
    row = conn.execute(f"{_CONTAINER_SQL} WHERE c.id = ?", (container_id,)).fetchone()
    if row is None:
        raise ContainerNotFoundError(f"there is no container #{container_id}")
    return ContainerRow(*row)


def find_container(conn: sqlite3.Connection, identifier: str) -> ContainerRow:
    """Return the container identified now by identifier (an SSCC or SGTIN); ContainerNotFoundError otherwise."""
    row = conn.execute(f"{_CONTAINER_SQL} WHERE c.identifier = ?", (identifier,)).fetchone()
    if row is None:
        use = _identifier_use(conn, identifier)
        raise ContainerNotFoundError(f"no container is identified by {identifier}" + (f": {use}" if use else ""))
    return ContainerRow(*row)


def contents(conn: sqlite3.Connection, container_id: int) -> Contents:
    """Return what the container holds now, in packing order."""
    units: list[int] = []
    children: list[int] = []
    for serial_id, child_id in conn.execute(
        "SELECT serial_id, child_id FROM aggregation_member WHERE parent_id = ? AND unpacked_event IS NULL"
        " ORDER BY id",
        (container_id,),
    ):
        if serial_id is not None:
            units.append(serial_id)
        else:
            children.append(child_id)
    return Contents(tuple(units), tuple(children))


def containers_of_batch(
    conn: sqlite3.Connection, batch_id: int, *, level: str | None = None, state: str | None = None
) -> list[ContainerRow]:
    """Return the batch's containers (of level and in state when given), oldest first."""
    sql = f"{_CONTAINER_SQL} WHERE c.batch_id = ?"
    params: list[object] = [batch_id]
    if level is not None:
        sql += " AND c.level = ?"
        params.append(level)
    if state is not None:
        sql += " AND c.state = ?"
        params.append(state)
    return [ContainerRow(*row) for row in conn.execute(f"{sql} ORDER BY c.id", params)]


def parent_of_serial(conn: sqlite3.Connection, serial_id: int) -> ContainerRow | None:
    """Return the container holding the unit now, or None."""
    row = conn.execute(
        "SELECT parent_id FROM aggregation_member WHERE serial_id = ? AND unpacked_event IS NULL", (serial_id,)
    ).fetchone()
    return None if row is None else container(conn, row[0])


def parent_of_container(conn: sqlite3.Connection, container_id: int) -> ContainerRow | None:
    """Return the container holding this one now, or None."""
    parent_id = container(conn, container_id).parent_id
    return None if parent_id is None else container(conn, parent_id)


def aggregation_events(conn: sqlite3.Connection, batch_id: int, *, after: int = 0) -> list[AggregationEvent]:
    """Return the batch's aggregation events with an id above after, in order."""
    return [
        AggregationEvent(
            id=row[0], at=row[1], batch_id=row[2], action=row[3], container_id=row[4], identifier=row[5],
            new_identifier=row[6], serial_ids=tuple(json.loads(row[7])), container_ids=tuple(json.loads(row[8])),
            operator=row[9], reason=row[10], station=row[11],
        )
        for row in conn.execute(
            "SELECT id, at, batch_id, action, container_id, identifier, new_identifier, serial_ids, container_ids,"
            " operator, reason, station FROM aggregation_event WHERE batch_id = ? AND id > ? ORDER BY id",
            (batch_id, after),
        )
    ]


def replay(events: Iterable[AggregationEvent]) -> tuple[dict[int, int], dict[int, int]]:
    """Return the membership the events leave: (parent of each packed unit, parent of each packed container)."""
    units: dict[int, int] = {}
    boxes: dict[int, int] = {}
    for event in events:
        parent = event.container_id
        if event.action == "pack" and parent is not None:
            units.update(dict.fromkeys(event.serial_ids, parent))
            boxes.update(dict.fromkeys(event.container_ids, parent))
        elif event.action == "unpack":
            for serial_id in event.serial_ids:
                units.pop(serial_id, None)
            for child in event.container_ids:
                boxes.pop(child, None)
        elif event.action == "replace" and parent is not None:
            old, new = event.serial_ids
            units.pop(old, None)
            units[new] = parent
    return units, boxes


# -- helpers --------------------------------------------------------------------------------------


_RecipeParts = tuple[str, int, dict[str, int], dict[str, str], frozenset[str]]
_RECIPES: dict[tuple[int, str, str], _RecipeParts] = {}
"""What _recipe made of a batch's product, by (batch id, GTIN, product_json): packing reads it for every case."""
_RECIPES_LIMIT = 64
"""Recipes kept before the cache starts afresh: a line runs a handful of batches at once, at most."""


def _recipe(conn: sqlite3.Connection, batch_id: int) -> _Recipe:
    batch = get_batch(conn, batch_id)
    product_json = conn.execute("SELECT product_json FROM batch WHERE id = ?", (batch_id,)).fetchone()[0]
    # The parts depend on nothing but the product's text and the GTIN, which the key holds: a batch whose product
    # were changed would be parsed again. The batch row (its state) is read afresh every time.
    key = (batch_id, batch.gtin, product_json)
    parts = _RECIPES.get(key)
    if parts is None:
        parts = _recipe_parts(batch, product_json)
        if len(_RECIPES) >= _RECIPES_LIMIT:
            _RECIPES.clear()
        _RECIPES[key] = parts
    company_prefix, extension_digit, capacity, child_level, mixed = parts
    # Copies of the dicts, so that no caller can change what the next one is given.
    return _Recipe(batch=batch, company_prefix=company_prefix, extension_digit=extension_digit,
                   capacity=dict(capacity), child_level=dict(child_level), mixed=mixed)


def _recipe_parts(batch: BatchRow, product_json: str) -> _RecipeParts:
    """Return company prefix, extension digit, capacities, child levels and mixed levels of a batch's product."""
    product = json.loads(product_json)
    capacity: dict[str, int] = {}
    child_level: dict[str, str] = {}
    mixed: set[str] = set()
    below = "unit"
    for entry in product.get("hierarchy", ()):
        level = str(entry["level"])
        if level not in LEVELS:
            raise AggregationError(f"{batch.name}: product {batch.product_id} names an unknown level {level!r}")
        capacity[level] = int(entry["contains"])
        child_level[level] = below
        if entry.get("mixed_batches"):
            mixed.add(level)
        below = level
    prefix_length = int(product["company_prefix_length"])
    return (batch.gtin[1 : 1 + prefix_length], int(product.get("sscc_extension_digit", 0)), capacity, child_level,
            frozenset(mixed))


def _check_batch_active(batch: BatchRow) -> None:
    if batch.state not in ACTIVE_BATCH_STATES:
        raise AggregationError(
            f"{batch.name} is {batch.state.value}: its containers change only while it is running, paused or "
            "completing"
        )


def _check_rework(operator: str | None, reason: str | None, doing: str) -> None:
    if not (operator and operator.strip()) or not (reason and reason.strip()):
        raise AggregationError(f"{doing} is rework: it needs an operator and a reason")


def _check_names_once(serial_ids: list[int], containers: list[int], doing: str) -> None:
    if len(serial_ids) + len(containers) > MAX_CHILDREN:
        raise AggregationError(f"cannot {doing}: {len(serial_ids) + len(containers):,} children in one change; "
                               f"name at most {MAX_CHILDREN:,}")
    if len(set(serial_ids)) != len(serial_ids):
        raise AggregationError(f"cannot {doing}: the same unit is named twice")
    if len(set(containers)) != len(containers):
        raise AggregationError(f"cannot {doing}: the same container is named twice")


def _units(conn: sqlite3.Connection, serial_ids: Sequence[int]) -> dict[int, tuple[str, int, int | None, int | None]]:
    """Return per existing unit: (its name in messages, state, batch id, id of the container holding it)."""
    found: dict[int, tuple[str, int, int | None, int | None]] = {}
    for serial_id, gtin, serial, state, batch_id, parent_id in conn.execute(
        "SELECT s.id, s.gtin, s.serial, s.state, s.batch_id, m.parent_id FROM serial AS s"
        " LEFT JOIN aggregation_member AS m ON m.serial_id = s.id AND m.unpacked_event IS NULL"
        " WHERE s.id IN (SELECT value FROM json_each(?))",
        (json.dumps(list(serial_ids)),),
    ):
        found[serial_id] = (f"unit #{serial_id} (01){gtin}(21){serial}", state, batch_id, parent_id)
    return found


def _container_name(conn: sqlite3.Connection, container_id: int) -> str:
    return container(conn, container_id).name


def _join(problems: list[str]) -> str:
    shown = "; ".join(problems[:SHOWN_PROBLEMS])
    more = len(problems) - SHOWN_PROBLEMS
    return f"{shown} and {more} more" if more > 0 else shown


def _event(
    conn: sqlite3.Connection,
    action: Action,
    batch_id: int,
    *,
    now: str,
    container_id: int | None = None,
    identifier: str | None = None,
    new_identifier: str | None = None,
    serial_ids: Sequence[int] = (),
    container_ids: Sequence[int] = (),
    operator: str | None = None,
    reason: str | None = None,
    station: str | None = None,
) -> int:
    """Append one aggregation_event row; return its id."""
    event_id = conn.execute(
        "INSERT INTO aggregation_event (at, batch_id, action, container_id, identifier, new_identifier, serial_ids,"
        " container_ids, operator, reason, station) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (now, batch_id, action, container_id, identifier, new_identifier, json.dumps(list(serial_ids)),
         json.dumps(list(container_ids)), operator, reason, station),
    ).lastrowid
    if event_id is None:
        raise AggregationError("SQLite gave no id for the aggregation event")
    return event_id
