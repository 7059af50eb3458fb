"""The serial ledger's changes, as functions of a SQLite connection run inside the store writer's transaction.

Each function is one change: it checks everything first and raises a SerialError or BatchError (undoing
only itself, see edge.store) or it writes all of its effect. Nothing here does I/O besides SQLite, so the
same functions serve the daemon, the offline CLI and the crash tests.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from enum import IntEnum
from typing import TYPE_CHECKING, Any

from edge.errors import (
    BatchError,
    BatchNotFoundError,
    IllegalTransitionError,
    PoolExhaustedError,
    ReconciliationError,
    SerialError,
    SerialImportError,
)
from edge.serials.states import (
    ACTIVE_BATCH_STATES,
    IN_FLIGHT,
    REPORTED,
    SERIAL_TRANSITIONS,
    SETTLED,
    BatchState,
    SerialState,
    check_batch_move,
)

if TYPE_CHECKING:
    import sqlite3
    from collections.abc import Callable, Iterable, Sequence

    from edge.serials.generate import SerialSource

S = SerialState

# Serials inserted or looked up per statement round: large enough to amortise Python, small enough
# that one change holds the writer for a fraction of a second.
CHUNK = 20_000
# A move naming more serials than this is refused: split it, so one change never holds the writer long.
MAX_SERIALS_PER_MOVE = 100_000
# Attempts to replace random serials that collided with existing ones before giving up: with a serial
# space the randomisation rule accepts, one retry round is already rare.
MAX_COLLISION_ROUNDS = 20
# Offending serials named in one error message; the count of the rest follows.
SHOWN_PROBLEMS = 10


class Origin(IntEnum):
    """Where a serial came from; the value is stored."""

    RANDOM = 0
    SEQUENTIAL = 1
    UPSTREAM = 2
    EXTERNAL_CODE = 3


@dataclass(frozen=True, slots=True)
class Move:
    """A request to move serials (by row id) to one state, with who, where and why."""

    ids: Sequence[int]
    to: SerialState
    reason: str
    device: str | None = None
    operator: str | None = None
    batch_id: int | None = None
    """When given, every serial must belong to this batch."""
    expect: frozenset[SerialState] | None = None
    """When given, every serial must be in one of these states (besides the move being legal)."""

    @property
    def key(self) -> tuple[object, ...]:
        """What consecutive moves must share to be recorded as one transition row."""
        return (self.to, self.reason, self.device, self.operator, self.batch_id)


@dataclass(frozen=True, slots=True)
class NewBatch:
    """A batch to create from a work order and the product definition it names."""

    line_id: str
    work_order: str
    product_id: str
    gtin: str
    lot: str
    expiry: str
    quantity: int
    market: str
    serial_source: str
    product: dict[str, Any]
    order: dict[str, Any]


@dataclass(frozen=True, slots=True)
class AllocationPlan:
    """How a batch gets its serials at release: generated here or drawn from the pool, and how many."""

    count: int
    origin: Origin
    source: SerialSource | None = None
    """The generator, for RANDOM; SEQUENTIAL builds its own from the highest serial issued so far."""
    sequential_width: int = 0
    guard: Callable[[int], None] | None = None
    """Called with the number of serials of the GTIN issued in this format once the batch has its own;
    raises (RandomisationError) to refuse the batch."""


@dataclass(frozen=True, slots=True)
class BatchRow:
    """One batch as stored."""

    id: int
    line_id: str
    work_order: str
    product_id: str
    gtin: str
    lot: str
    expiry: str
    quantity: int
    market: str
    serial_source: str
    state: BatchState
    created_at: str
    updated_at: str

    @property
    def name(self) -> str:
        """How messages name the batch, like: batch 7 (work order WO-1, lot L1)."""
        return f"batch {self.id} (work order {self.work_order}, lot {self.lot})"

    def as_dict(self) -> dict[str, Any]:
        """Return the batch as JSON-able data."""
        return {
            "id": self.id,
            "line": self.line_id,
            "work_order": self.work_order,
            "product": self.product_id,
            "gtin": self.gtin,
            "lot": self.lot,
            "expiry": self.expiry,
            "quantity": self.quantity,
            "market": self.market,
            "serial_source": self.serial_source,
            "state": self.state.value,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }


_BATCH_COLUMNS = (
    "id, line_id, work_order, product_id, gtin, lot, expiry, quantity, market, serial_source, state,"
    " created_at, updated_at"
)


@dataclass(slots=True)
class _Pending:
    """Moves of one transition row being gathered: (serial id, from state) pairs."""

    move: Move
    batch_id: int | None
    """The batch of every serial in steps (the move's own, or the serials' when the move names none)."""
    steps: list[tuple[int, int]] = field(default_factory=list)


# -- moves ----------------------------------------------------------------------------------------


def apply_moves(conn: sqlite3.Connection, moves: Sequence[Move], now: str) -> list[int | SerialError]:
    """Apply each legal move in order; return per move the serials moved, or the error refusing it whole.

    Moves are checked against the states the earlier moves of the same call leave, so one call may
    move a serial twice. Consecutive moves with the same target, reason, device, operator and batch
    share one transition row.
    """
    states = _current(conn, {i for move in moves for i in move.ids})
    # Only moves out of commissioned (QA samples, destroys) can touch a packed unit: the hot path skips this.
    packed = _packed(conn, {i for move in moves if move.to in _FROM_COMMISSIONED for i in move.ids})
    outcomes: list[int | SerialError] = []
    groups: list[_Pending] = []
    for move in moves:
        problem = _check(move, states)
        if problem is None and packed and not packed.isdisjoint(move.ids):
            shown = ", ".join(f"#{i}" for i in sorted(packed.intersection(move.ids))[:SHOWN_PROBLEMS])
            problem = IllegalTransitionError(
                f"serial(s) {shown} are packed in a container: unpack them (aggregation rework) first; nothing moved"
            )
        if problem is not None:
            outcomes.append(problem)
            continue
        to = int(move.to)
        for serial_id in move.ids:
            state, batch_id = states[serial_id]
            # A move that names no batch is recorded under each serial's own batch, so that every transition
            # (and the EPCIS outbox row of a reported one) belongs to the batch it counts for.
            if not groups or groups[-1].move.key != move.key or groups[-1].batch_id != batch_id:
                groups.append(_Pending(move, batch_id))
            groups[-1].steps.append((serial_id, state))
            states[serial_id] = (to, batch_id)
        outcomes.append(len(move.ids))
    for group in groups:
        _record(conn, group.move, group.steps, now, group.batch_id)
    return outcomes


def _current(conn: sqlite3.Connection, ids: set[int]) -> dict[int, tuple[int, int | None]]:
    """Return (state, batch id) of each of ids that exists."""
    found: dict[int, tuple[int, int | None]] = {}
    if len(ids) == 1:
        (only,) = ids
        row = conn.execute("SELECT state, batch_id FROM serial WHERE id = ?", (only,)).fetchone()
        if row is not None:
            found[only] = (row[0], row[1])
        return found
    ordered = sorted(ids)
    for start in range(0, len(ordered), CHUNK):
        chunk = json.dumps(ordered[start : start + CHUNK])
        for serial_id, state, batch_id in conn.execute(
            "SELECT id, state, batch_id FROM serial WHERE id IN (SELECT value FROM json_each(?))", (chunk,)
        ):
            found[serial_id] = (state, batch_id)
    return found


_FROM_COMMISSIONED = frozenset(SERIAL_TRANSITIONS[SerialState.COMMISSIONED])


def _packed(conn: sqlite3.Connection, ids: set[int]) -> set[int]:
    """Return which of ids are units packed in a container now (edge.aggregation)."""
    if not ids:
        return set()
    return {
        row[0]
        for row in conn.execute(
            "SELECT serial_id FROM aggregation_member WHERE unpacked_event IS NULL AND serial_id IN"
            " (SELECT value FROM json_each(?))",
            (json.dumps(sorted(ids)),),
        )
    }


def _check(move: Move, states: dict[int, tuple[int, int | None]]) -> SerialError | None:  # noqa: PLR0911, PLR0912 - one branch per refusal
    """Return the error refusing move given the current states, or None when every serial may move."""
    if not move.reason:
        return SerialError("a move needs a reason")
    if move.to in _POOL_STATES:
        return IllegalTransitionError(
            f"serials are not moved to {move.to.label} one by one: they are allocated when a batch is released "
            "and go back to the pool when it closes or is cancelled"
        )
    legal = _LEGAL_FROM[move.to]
    if len(move.ids) == 1:  # the hot path: one acknowledgement or one verdict
        current = states.get(move.ids[0])
        if (
            current is not None
            and current[0] in legal
            and (move.batch_id is None or current[1] == move.batch_id)
            and (move.expect is None or current[0] in move.expect)
        ):
            return None
    elif len(move.ids) > MAX_SERIALS_PER_MOVE:
        return SerialError(f"{len(move.ids):,} serials in one move; move at most {MAX_SERIALS_PER_MOVE:,} at a time")
    elif len(set(move.ids)) != len(move.ids):
        return SerialError("the same serial is named twice in one move")
    problems: list[str] = []
    count = 0
    for serial_id in move.ids:
        current = states.get(serial_id)
        problem = None
        if current is None:
            problem = f"serial #{serial_id} does not exist"
        elif move.batch_id is not None and current[1] != move.batch_id:
            problem = f"serial #{serial_id} belongs to {_batch_label(current[1])}, not batch {move.batch_id}"
        elif current[0] not in legal:
            problem = f"serial #{serial_id} is {S(current[0]).label}"
        elif move.expect is not None and S(current[0]) not in move.expect:
            problem = f"serial #{serial_id} is {S(current[0]).label}, not {_labels(move.expect)}"
        if problem is not None:
            count += 1
            if len(problems) < SHOWN_PROBLEMS:
                problems.append(problem)
    if not problems:
        return None
    more = f" and {count - len(problems)} more" if count > len(problems) else ""
    sources = _labels(S(state) for state in legal) or "no state"
    return IllegalTransitionError(
        f"cannot move {len(move.ids)} serial(s) to {move.to.label} (only from {sources}): "
        f"{'; '.join(problems)}{more}; nothing was moved"
    )


_POOL_STATES = frozenset({S.AVAILABLE, S.ALLOCATED})
"""Targets only release, close and cancel move serials to, keeping serial and batch in step."""

_LEGAL_FROM = {
    to: frozenset(int(src) for src, targets in SERIAL_TRANSITIONS.items() if to in targets) for to in SerialState
}
"""For each target state, the states a serial may move to it from."""


def _labels(states: Iterable[SerialState]) -> str:
    return " or ".join(sorted(state.label for state in states))


def _batch_label(batch_id: int | None) -> str:
    return "no batch (the pool)" if batch_id is None else f"batch {batch_id}"


def _record(
    conn: sqlite3.Connection, move: Move, steps: list[tuple[int, int]], now: str, batch_id: int | None
) -> None:
    """Write one transition row and the moves of its serials, and the outbox row when the move is reported."""
    transition_id = conn.execute(
        "INSERT INTO transition (at, batch_id, to_state, count, device, reason, operator)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        (now, batch_id, int(move.to), len(steps), move.device, move.reason, move.operator),
    ).lastrowid
    to = int(move.to)
    conn.executemany("UPDATE serial SET state = ? WHERE id = ?", ((to, serial_id) for serial_id, _ in steps))
    conn.executemany(
        "INSERT INTO serial_history (serial_id, transition_id, from_state) VALUES (?, ?, ?)",
        ((serial_id, transition_id, src) for serial_id, src in steps),
    )
    if move.to in REPORTED and batch_id is not None:
        conn.execute(
            "INSERT INTO epcis_outbox (batch_id, transition_id, serials) VALUES (?, ?, ?)",
            (batch_id, transition_id, json.dumps(steps, separators=(",", ":"))),
        )


def _move_where(
    conn: sqlite3.Connection,
    *,
    batch_id: int,
    src: Iterable[SerialState],
    to: SerialState,
    reason: str,
    now: str,
    operator: str | None = None,
    device: str | None = None,
) -> int:
    """Move every serial of batch_id in one of src to to, in SQL (no serial passes through Python)."""
    sources = [int(state) for state in src]
    for state in sources:
        if to not in SERIAL_TRANSITIONS[S(state)]:
            raise IllegalTransitionError(f"serials cannot move from {S(state).label} to {to.label}")
    marks = ", ".join("?" for _ in sources)
    count = conn.execute(
        f"SELECT count(*) FROM serial WHERE batch_id = ? AND state IN ({marks})",  # noqa: S608 - only ? marks
        (batch_id, *sources),
    ).fetchone()[0]
    if count == 0:
        return 0
    transition_id = conn.execute(
        "INSERT INTO transition (at, batch_id, to_state, count, device, reason, operator)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        (now, batch_id, int(to), count, device, reason, operator),
    ).lastrowid
    conn.execute(
        "INSERT INTO serial_history (serial_id, transition_id, from_state)"  # noqa: S608 - only ? marks
        f" SELECT id, ?, state FROM serial WHERE batch_id = ? AND state IN ({marks})",
        (transition_id, batch_id, *sources),
    )
    if to in REPORTED:
        conn.execute(
            "INSERT INTO epcis_outbox (batch_id, transition_id, serials)"  # noqa: S608 - only ? marks
            " SELECT ?, ?, json_group_array(json_array(id, state))"
            f" FROM (SELECT id, state FROM serial WHERE batch_id = ? AND state IN ({marks}) ORDER BY id)",
            (batch_id, transition_id, batch_id, *sources),
        )
    conn.execute(
        f"UPDATE serial SET state = ? WHERE batch_id = ? AND state IN ({marks})",  # noqa: S608 - only ? marks
        (int(to), batch_id, *sources),
    )
    return int(count)


# -- batches --------------------------------------------------------------------------------------


def get_batch(conn: sqlite3.Connection, batch_id: int) -> BatchRow:
    """Return the batch with id batch_id; BatchNotFoundError when there is none."""
    row = conn.execute(f"SELECT {_BATCH_COLUMNS} FROM batch WHERE id = ?", (batch_id,)).fetchone()  # noqa: S608
    if row is None:
        raise BatchNotFoundError(f"there is no batch {batch_id}; `lineside batch list` shows the batches")
    return _batch_row(row)


def find_batch(conn: sqlite3.Connection, ref: str) -> BatchRow:
    """Return the batch whose id or work order is ref; BatchNotFoundError when there is none."""
    row = conn.execute(f"SELECT {_BATCH_COLUMNS} FROM batch WHERE work_order = ?", (ref,)).fetchone()  # noqa: S608
    if row is None and ref.isdigit():
        row = conn.execute(f"SELECT {_BATCH_COLUMNS} FROM batch WHERE id = ?", (int(ref),)).fetchone()  # noqa: S608
    if row is None:
        raise BatchNotFoundError(
            f'no batch has the id or work order "{ref}"; `lineside batch list` shows the batches'
        )
    return _batch_row(row)


def list_batches(conn: sqlite3.Connection, *, line_id: str | None = None) -> list[BatchRow]:
    """Return every batch (of line_id when given), newest first."""
    sql = f"SELECT {_BATCH_COLUMNS} FROM batch"  # noqa: S608 - constant columns
    if line_id is None:
        rows = conn.execute(f"{sql} ORDER BY id DESC").fetchall()
    else:
        rows = conn.execute(f"{sql} WHERE line_id = ? ORDER BY id DESC", (line_id,)).fetchall()
    return [_batch_row(row) for row in rows]


def active_batch(conn: sqlite3.Connection, line_id: str) -> BatchRow | None:
    """Return the batch running, paused or completing on line_id, if any."""
    marks = ", ".join("?" for _ in ACTIVE_BATCH_STATES)
    row = conn.execute(
        f"SELECT {_BATCH_COLUMNS} FROM batch WHERE line_id = ? AND state IN ({marks})",  # noqa: S608
        (line_id, *sorted(ACTIVE_BATCH_STATES)),
    ).fetchone()
    return None if row is None else _batch_row(row)


def _batch_row(row: Sequence[Any]) -> BatchRow:
    values = list(row)
    values[10] = BatchState(values[10])
    return BatchRow(*values)


def create_batch(conn: sqlite3.Connection, new: NewBatch, *, now: str, operator: str | None) -> int:
    """Create a batch in state created from a work order; BatchError when the work order is known already."""
    existing = conn.execute("SELECT id, state FROM batch WHERE work_order = ?", (new.work_order,)).fetchone()
    if existing is not None:
        raise BatchError(
            f"work order {new.work_order} was imported already as batch {existing[0]} ({existing[1]}); "
            "a work order makes one batch"
        )
    batch_id = conn.execute(
        "INSERT INTO batch (line_id, work_order, product_id, gtin, lot, expiry, quantity, market, serial_source,"
        " state, product_json, order_json, created_at, updated_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'created', ?, ?, ?, ?)",
        (
            new.line_id, new.work_order, new.product_id, new.gtin, new.lot, new.expiry, new.quantity, new.market,
            new.serial_source, _json(new.product), _json(new.order), now, now,
        ),
    ).lastrowid
    if batch_id is None:
        raise BatchError("SQLite gave no id for the new batch")
    _batch_event(conn, batch_id, None, BatchState.CREATED, now=now, operator=operator, reason="work order imported")
    return batch_id


def _json(data: object) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _batch_event(
    conn: sqlite3.Connection,
    batch_id: int,
    src: BatchState | None,
    dst: BatchState,
    *,
    now: str,
    operator: str | None,
    reason: str,
) -> None:
    conn.execute(
        "INSERT INTO batch_event (batch_id, at, from_state, to_state, operator, reason) VALUES (?, ?, ?, ?, ?, ?)",
        (batch_id, now, None if src is None else src.value, dst.value, operator, reason),
    )


def move_batch(
    conn: sqlite3.Connection,
    batch_id: int,
    to: BatchState,
    *,
    now: str,
    operator: str | None,
    reason: str,
) -> BatchRow:
    """Move a batch to state to where legal (start refused while another batch holds the line); return it before."""
    batch = get_batch(conn, batch_id)
    check_batch_move(batch.state, to, batch.name)
    if to is BatchState.RUNNING and batch.state is BatchState.RELEASED:
        other = active_batch(conn, batch.line_id)
        if other is not None:
            raise BatchError(
                f"cannot start {batch.name}: {other.name}, product {other.product_id}, is {other.state.value} on "
                f"{batch.line_id}; complete and close it first (a line makes one batch at a time)"
            )
    conn.execute("UPDATE batch SET state = ?, updated_at = ? WHERE id = ?", (to.value, now, batch_id))
    _batch_event(conn, batch_id, batch.state, to, now=now, operator=operator, reason=reason)
    return batch


def release_batch(
    conn: sqlite3.Connection,
    batch_id: int,
    plan: AllocationPlan,
    *,
    now: str,
    operator: str | None,
    chunk: int = CHUNK,
) -> int:
    """Allocate up to chunk more of the batch's serials; when it has plan.count, mark it released.

    Return how many serials the batch still lacks (0 once released), so a caller repeats until 0; a
    crash between chunks leaves a created batch that resumes where it stopped.
    """
    batch = get_batch(conn, batch_id)
    check_batch_move(batch.state, BatchState.RELEASED, batch.name)
    have = allocated_total(conn, batch_id)
    if have == 0 and plan.guard is not None:
        issued = conn.execute(
            "SELECT count(*) FROM serial WHERE gtin = ? AND origin = ?", (batch.gtin, int(plan.origin))
        ).fetchone()[0]
        plan.guard(int(issued) + plan.count)
    wanted = min(plan.count - have, chunk)
    if wanted > 0:
        if plan.origin in (Origin.UPSTREAM, Origin.EXTERNAL_CODE):
            _draw_from_pool(conn, batch, plan, wanted, now=now, operator=operator)
        else:
            _generate(conn, batch, plan, wanted, now=now, operator=operator)
    missing = plan.count - have - wanted
    if missing == 0:
        move_batch(conn, batch_id, BatchState.RELEASED, now=now, operator=operator,
                   reason=f"released with {plan.count:,} serials allocated")
    return missing


def allocated_total(conn: sqlite3.Connection, batch_id: int) -> int:
    """Return how many serials were ever allocated to batch_id (from the transition log)."""
    row = conn.execute(
        "SELECT total(count) FROM transition WHERE batch_id = ? AND to_state = ?", (batch_id, int(S.ALLOCATED))
    ).fetchone()
    return int(row[0])


def _generate(
    conn: sqlite3.Connection, batch: BatchRow, plan: AllocationPlan, wanted: int, *, now: str, operator: str | None
) -> None:
    """Insert wanted new serials for the batch, generated here, replacing any that collide with known ones."""
    source = plan.source
    if plan.origin is Origin.SEQUENTIAL:
        from edge.serials.generate import SequentialSerials  # noqa: PLC0415 - sibling module, imported lazily

        top = conn.execute(
            "SELECT max(CAST(serial AS INTEGER)) FROM serial WHERE gtin = ? AND origin = ?",
            (batch.gtin, int(Origin.SEQUENTIAL)),
        ).fetchone()[0]
        source = SequentialSerials(start=0 if top is None else int(top) + 1, width=plan.sequential_width)
    if source is None:
        raise SerialError(f"{batch.name}: no serial generator given for {plan.origin.name.lower()} serials")
    first_id = _next_serial_id(conn)
    transition_id = conn.execute(
        "INSERT INTO transition (at, batch_id, to_state, count, device, reason, operator)"
        " VALUES (?, ?, ?, ?, NULL, ?, ?)",
        (now, batch.id, int(S.ALLOCATED), wanted, f"generated {plan.origin.name.lower()} serials", operator),
    ).lastrowid
    insert = (
        "INSERT OR IGNORE INTO serial (gtin, serial, state, batch_id, origin) VALUES (?, ?, ?, ?, ?)"
    )
    missing = wanted
    for _ in range(MAX_COLLISION_ROUNDS):
        before = conn.total_changes
        gtin, state, origin = batch.gtin, int(S.ALLOCATED), int(plan.origin)
        # Not sorted, though sorted inserts would be faster: row ids set the print order, and consecutive
        # packs must not carry ascending serials.
        conn.executemany(insert, ((gtin, serial, state, batch.id, origin) for serial in source.take(missing)))
        missing -= conn.total_changes - before
        if missing == 0:
            break
    else:
        raise SerialError(
            f"{batch.name}: {missing:,} generated serials kept colliding with serials already issued for GTIN "
            f"{batch.gtin}; the serial space is nearly used up: use longer serials"
        )
    conn.execute(
        "INSERT INTO serial_history (serial_id, transition_id, from_state)"
        # "+batch_id" keeps SQLite on the rowid range of this chunk instead of the batch's whole index.
        " SELECT id, ?, ? FROM serial WHERE +batch_id = ? AND id >= ?",
        (transition_id, int(S.AVAILABLE), batch.id, first_id),
    )


def _next_serial_id(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT coalesce(max(id), 0) + 1 FROM serial").fetchone()[0])


def _draw_from_pool(
    conn: sqlite3.Connection, batch: BatchRow, plan: AllocationPlan, wanted: int, *, now: str, operator: str | None
) -> None:
    """Allocate the oldest wanted available serials of the batch's GTIN and origin to it."""
    ids = [
        row[0]
        for row in conn.execute(
            "SELECT id FROM serial WHERE gtin = ? AND state = 0 AND origin = ? AND batch_id IS NULL"
            " ORDER BY id LIMIT ?",
            (batch.gtin, int(plan.origin), wanted),
        )
    ]
    if len(ids) < wanted:
        have = allocated_total(conn, batch.id)
        kind = "complete codes" if plan.origin is Origin.EXTERNAL_CODE else "serials"
        raise PoolExhaustedError(
            f"{batch.name} needs {plan.count:,} {kind} for GTIN {batch.gtin} but the pool holds "
            f"{have + len(ids):,} (allocated and available): import {plan.count - have - len(ids):,} more, "
            "then release again"
        )
    conn.execute(
        "UPDATE serial SET batch_id = ? WHERE id IN (SELECT value FROM json_each(?))", (batch.id, json.dumps(ids))
    )
    move = Move(ids, S.ALLOCATED, reason="drawn from the pool", operator=operator, batch_id=batch.id)
    _record(conn, move, [(serial_id, int(S.AVAILABLE)) for serial_id in ids], now, batch.id)


def next_to_print(
    conn: sqlite3.Connection, batch_id: int, count: int, *, device: str, now: str
) -> list[tuple[int, str, bytes | None]]:
    """Move up to count allocated serials of the batch to sent (for device); return (id, serial, code) each.

    The move is durable before the caller hands any of them to the printer (DESIGN invariant 4).
    """
    if count < 1:
        raise ValueError(f"count must be at least 1, not {count}")
    batch = get_batch(conn, batch_id)
    if batch.state is not BatchState.RUNNING:
        raise BatchError(f"{batch.name} is {batch.state.value}; serials go to printers only while it runs")
    rows = conn.execute(
        "SELECT id, serial, code FROM serial WHERE batch_id = ? AND state = ? ORDER BY id LIMIT ?",
        (batch_id, int(S.ALLOCATED), count),
    ).fetchall()
    if rows:
        move = Move([row[0] for row in rows], S.SENT, reason="sent to printer", device=device, batch_id=batch_id)
        _record(conn, move, [(row[0], int(S.ALLOCATED)) for row in rows], now, batch_id)
    return [(row[0], row[1], row[2]) for row in rows]


# -- completion, recovery, close ------------------------------------------------------------------


def complete_batch(conn: sqlite3.Connection, batch_id: int, *, now: str, operator: str | None) -> int:
    """Stop drawing serials (running or paused → completing); serials still in flight become in doubt.

    Return how many became in doubt: the line has stopped, so nothing will confirm them any more.
    """
    move_batch(conn, batch_id, BatchState.COMPLETING, now=now, operator=operator, reason="completing")
    return _move_where(conn, batch_id=batch_id, src=IN_FLIGHT, to=S.IN_DOUBT, now=now, operator=operator,
                       reason="in flight when the batch was completed")


def decommission_in_doubt(
    conn: sqlite3.Connection, batch_id: int, *, now: str, operator: str | None, reason: str | None
) -> int:
    """Decommission every in-doubt serial of a batch that is not running (their units were set aside); return how many.

    A serial in doubt may be on a unit nobody judged: an operator who has taken those units off the line
    decommissions their serials (rejected: never reused, reported upstream), naming why.
    """
    if not operator or not (reason or "").strip():
        raise BatchError("decommissioning in-doubt serials needs an operator and a reason")
    batch = get_batch(conn, batch_id)
    if batch.state is BatchState.RUNNING:
        raise BatchError(f"{batch.name} is running: pause or complete it before decommissioning in-doubt serials")
    return _move_where(conn, batch_id=batch_id, src=[S.IN_DOUBT], to=S.REJECTED, now=now, operator=operator,
                       reason=f"in doubt, decommissioned: {reason}")


def recover_in_flight(conn: sqlite3.Connection, line_id: str, *, now: str, reason: str) -> int:
    """Mark in doubt every serial sent or printed but not judged, in the line's active batch; return how many."""
    batch = active_batch(conn, line_id)
    if batch is None:
        return 0
    return _move_where(conn, batch_id=batch.id, src=IN_FLIGHT, to=S.IN_DOUBT, now=now, reason=reason)


def counts(conn: sqlite3.Connection, batch_id: int) -> dict[str, int]:
    """Return the number of the batch's serials in each state (every state named, zeros included)."""
    found = dict.fromkeys((state.label for state in SerialState), 0)
    for state, count in conn.execute(
        "SELECT state, count(*) FROM serial WHERE batch_id = ? GROUP BY state", (batch_id,)
    ):
        found[S(state).label] = int(count)
    return found


def returned_to_pool(conn: sqlite3.Connection, batch_id: int) -> int:
    """Return how many serials the batch handed back that have since gone back to the pool."""
    row = conn.execute(
        "SELECT count(*) FROM serial_history AS h JOIN transition AS t ON t.id = h.transition_id"
        " JOIN serial AS s ON s.id = h.serial_id"
        " WHERE t.batch_id = ? AND t.to_state = ? AND (s.batch_id IS NULL OR s.batch_id <> ?)",
        (batch_id, int(S.RETURNED), batch_id),
    ).fetchone()
    return int(row[0])


def reconciliation(conn: sqlite3.Connection, batch_id: int) -> dict[str, Any]:
    """Return the batch's reconciliation as JSON-able data: counts by state, the balance, what blocks close."""
    batch = get_batch(conn, batch_id)
    by_state = counts(conn, batch_id)
    allocated = allocated_total(conn, batch_id)
    settled_batch = batch.state in (BatchState.CLOSED, BatchState.CANCELLED)
    pooled = returned_to_pool(conn, batch_id) if settled_batch else 0
    decommissioned = {name: by_state[name] for name in ("rejected", "destroyed", "sampled")}
    returned = by_state["returned"] + pooled
    settled = by_state["commissioned"] + sum(decommissioned.values()) + returned
    unsettled = {state.label: by_state[state.label] for state in SerialState if state not in SETTLED}
    unsettled = {name: count for name, count in unsettled.items() if count}
    balanced = allocated == settled and not unsettled
    blocking: list[str] = []
    if unsettled.get("in_doubt"):
        blocking.append(
            f"{unsettled['in_doubt']:,} serials are in doubt: re-inspect them (commissioned) or decommission them"
        )
    in_flight = sum(unsettled.get(state.label, 0) for state in IN_FLIGHT)
    if in_flight:
        blocking.append(f"{in_flight:,} serials are still in flight (sent or printed, not judged): complete the batch")
    if unsettled.get("available"):
        blocking.append(f"{unsettled['available']:,} serials are in the pool state yet belong to the batch")
    rows = settled + sum(unsettled.values())
    if allocated != rows:
        blocking.append(f"{allocated:,} serials were allocated but {rows:,} are accounted for")
    return {
        "batch": batch.as_dict(),
        "allocated": allocated,
        "counts": by_state,
        "commissioned": by_state["commissioned"],
        "decommissioned": decommissioned,
        "returned": returned,
        "returned_to_pool": pooled,
        "unsettled": unsettled,
        "equation": (
            f"allocated {allocated:,} = commissioned {by_state['commissioned']:,}"
            f" + decommissioned {sum(decommissioned.values()):,} + returned {returned:,}"
        ),
        "balanced": balanced,
        "blocking": blocking,
    }


def close_batch(
    conn: sqlite3.Connection, batch_id: int, *, now: str, operator: str | None, return_to_pool: bool
) -> dict[str, Any]:
    """Reconcile and close a completing batch; return the frozen report. ReconciliationError when it does not balance.

    Serials never sent to a printer become returned; with return_to_pool (serials received from
    upstream) they then go back to the pool for the next batch of the GTIN.
    """
    batch = get_batch(conn, batch_id)
    check_batch_move(batch.state, BatchState.CLOSED, batch.name)
    returned = _move_where(conn, batch_id=batch_id, src=[S.ALLOCATED], to=S.RETURNED, now=now, operator=operator,
                           reason="never printed, returned at batch close")
    report = reconciliation(conn, batch_id)
    if not report["balanced"]:
        raise ReconciliationError(f"cannot close {batch.name}: {'; '.join(report['blocking'])}")
    _check_outbox(conn, batch_id, batch.name)
    move_batch(conn, batch_id, BatchState.CLOSED, now=now, operator=operator, reason="closed, reconciled")
    report["batch"]["state"] = BatchState.CLOSED.value
    report["closed_at"] = now
    report["closed_by"] = operator
    report["returned_at_close"] = returned
    if return_to_pool and returned:
        report["returned_to_pool"] = _back_to_pool(conn, batch_id, now=now, operator=operator)
    text = _json(report)
    conn.execute(
        "INSERT INTO batch_report (batch_id, at, report, sha256) VALUES (?, ?, ?, ?)",
        (batch_id, now, text, hashlib.sha256(text.encode()).hexdigest()),
    )
    return report


def _check_outbox(conn: sqlite3.Connection, batch_id: int, name: str) -> None:
    """Refuse to close a batch whose reported serial moves are not all in the EPCIS outbox."""
    states = tuple(int(state) for state in REPORTED)
    moves = conn.execute(
        f"SELECT count(*) FROM transition WHERE batch_id = ? AND to_state IN ({', '.join('?' * len(states))})",  # noqa: S608
        (batch_id, *states),
    ).fetchone()[0]
    queued = conn.execute(
        "SELECT count(*) FROM epcis_outbox WHERE batch_id = ? AND transition_id IS NOT NULL", (batch_id,)
    ).fetchone()[0]
    if moves != queued:
        raise ReconciliationError(
            f"cannot close {name}: {moves:,} commissioning and decommissioning moves were recorded but {queued:,} "
            "entered the EPCIS outbox; the store was changed outside the line controller"
        )


def _back_to_pool(conn: sqlite3.Connection, batch_id: int, *, now: str, operator: str | None) -> int:
    """Put the batch's returned serials back in the pool (no batch, available)."""
    count = _move_where(conn, batch_id=batch_id, src=[S.RETURNED], to=S.AVAILABLE, now=now, operator=operator,
                        reason="returned to the pool")
    conn.execute("UPDATE serial SET batch_id = NULL WHERE batch_id = ? AND state = ?", (batch_id, int(S.AVAILABLE)))
    return count


def cancel_batch(
    conn: sqlite3.Connection, batch_id: int, *, now: str, operator: str | None, reason: str, return_to_pool: bool
) -> int:
    """Cancel a batch that never ran; its allocated serials are returned (to the pool if asked); return how many."""
    batch = get_batch(conn, batch_id)
    check_batch_move(batch.state, BatchState.CANCELLED, batch.name)
    returned = _move_where(conn, batch_id=batch_id, src=[S.ALLOCATED], to=S.RETURNED, now=now, operator=operator,
                           reason=f"batch cancelled: {reason}")
    move_batch(conn, batch_id, BatchState.CANCELLED, now=now, operator=operator, reason=reason)
    if return_to_pool and returned:
        _back_to_pool(conn, batch_id, now=now, operator=operator)
    return returned


def frozen_report(conn: sqlite3.Connection, batch_id: int) -> dict[str, Any] | None:
    """Return the report frozen when the batch closed, or None when it has not closed."""
    row = conn.execute("SELECT report FROM batch_report WHERE batch_id = ?", (batch_id,)).fetchone()
    return None if row is None else dict(json.loads(row[0]))


# -- the pool -------------------------------------------------------------------------------------


def import_pool(
    conn: sqlite3.Connection,
    *,
    gtin: str,
    serials: Sequence[str],
    codes: Sequence[tuple[str, bytes]],
    source: str,
    request_token: str | None,
    operator: str | None,
    now: str,
) -> int:
    """Add serials (or complete codes: serial and the code bytes) from upstream to the pool, all or nothing.

    SerialImportError names the serials already known for the GTIN (a serial is unique per GTIN forever).
    """
    count = len(serials) + len(codes)
    if count == 0:
        raise SerialImportError(f"{source}: no serials or codes to import")
    import_id = conn.execute(
        "INSERT INTO serial_import (at, gtin, source, request_token, count, operator) VALUES (?, ?, ?, ?, ?, ?)",
        (now, gtin, source, request_token, count, operator),
    ).lastrowid
    if import_id is None:
        raise SerialImportError(f"{source}: SQLite gave no id for the import record")
    before = conn.total_changes
    if serials:
        conn.executemany(
            "INSERT OR IGNORE INTO serial (gtin, serial, state, origin, import_id) VALUES (?, ?, 0, ?, ?)",
            ((gtin, serial, int(Origin.UPSTREAM), import_id) for serial in serials),
        )
    if codes:
        conn.executemany(
            "INSERT OR IGNORE INTO serial (gtin, serial, state, origin, import_id, code) VALUES (?, ?, 0, ?, ?, ?)",
            ((gtin, serial, int(Origin.EXTERNAL_CODE), import_id, code) for serial, code in codes),
        )
    added = conn.total_changes - before
    if added != count:
        clashes = _known_serials(conn, gtin, import_id, [*serials, *(serial for serial, _ in codes)])
        shown = ", ".join(clashes[:SHOWN_PROBLEMS])
        more = f" and {len(clashes) - SHOWN_PROBLEMS:,} more" if len(clashes) > SHOWN_PROBLEMS else ""
        raise SerialImportError(
            f"{source}: {count - added:,} of {count:,} serials are already known for GTIN {gtin} ({shown}{more}); "
            "a serial is used once per GTIN, ever: nothing was imported"
        )
    return count


def _known_serials(conn: sqlite3.Connection, gtin: str, import_id: int, serials: Sequence[str]) -> list[str]:
    """Return which of serials were already known for gtin before import import_id."""
    known: list[str] = []
    for start in range(0, len(serials), CHUNK):
        chunk = json.dumps(list(serials[start : start + CHUNK]))
        known.extend(
            row[0]
            for row in conn.execute(
                "SELECT serial FROM serial WHERE gtin = ? AND import_id IS NOT ? AND serial IN"
                " (SELECT value FROM json_each(?))",
                (gtin, import_id, chunk),
            )
        )
    return known


def pool_available(conn: sqlite3.Connection, gtin: str) -> dict[str, int]:
    """Return how many serials and complete codes of gtin wait in the pool."""
    found = {"serials": 0, "codes": 0}
    for origin, count in conn.execute(
        "SELECT origin, count(*) FROM serial WHERE gtin = ? AND state = 0 GROUP BY origin", (gtin,)
    ):
        found["codes" if origin == Origin.EXTERNAL_CODE else "serials"] += int(count)
    return found


def serial_ids(conn: sqlite3.Connection, gtin: str, serials: Sequence[str]) -> dict[str, int]:
    """Return the row id of each of serials known for gtin."""
    found: dict[str, int] = {}
    for start in range(0, len(serials), CHUNK):
        chunk = json.dumps(list(serials[start : start + CHUNK]))
        found.update(
            (row[0], row[1])
            for row in conn.execute(
                "SELECT serial, id FROM serial WHERE gtin = ? AND serial IN (SELECT value FROM json_each(?))",
                (gtin, chunk),
            )
        )
    return found


def serials_in(conn: sqlite3.Connection, batch_id: int, state: SerialState, limit: int) -> list[tuple[int, str]]:
    """Return up to limit (id, serial) of the batch's serials in state, oldest first."""
    return [
        (row[0], row[1])
        for row in conn.execute(
            "SELECT id, serial FROM serial WHERE batch_id = ? AND state = ? ORDER BY id LIMIT ?",
            (batch_id, int(state), limit),
        )
    ]


def history(conn: sqlite3.Connection, serial_id: int) -> list[dict[str, Any]]:
    """Return every move of one serial, oldest first: when, from, to, device, reason, operator."""
    return [
        {
            "at": at, "from": S(src).label, "to": S(dst).label, "device": device, "reason": reason,
            "operator": operator, "batch": batch_id,
        }
        for at, src, dst, device, reason, operator, batch_id in conn.execute(
            "SELECT t.at, h.from_state, t.to_state, t.device, t.reason, t.operator, t.batch_id"
            " FROM serial_history AS h JOIN transition AS t ON t.id = h.transition_id"
            " WHERE h.serial_id = ? ORDER BY h.transition_id",
            (serial_id,),
        )
    ]
