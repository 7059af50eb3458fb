"""The life cycle of a serial and of a batch as pure data: states, legal moves, and what counts at close.

Serial states follow OPEN-SCS (OPC 30260 ``OPENSCSSerialNumberStateEnum``), with the line's own split of
Encoded into ``sent`` (in a printer's buffer) and ``printed`` (the printer said it printed it), and
``in_doubt`` for units caught in flight by a crash or a cleared printer buffer (DESIGN invariant 4).
The integer values are stored in the database: never renumber them.
"""

from __future__ import annotations

from enum import IntEnum, StrEnum

from edge.errors import BatchError, IllegalTransitionError


class SerialState(IntEnum):
    """Where one serial is in its life; the value is what the store keeps."""

    AVAILABLE = 0
    """In the pool, belonging to no batch (OPEN-SCS Unallocated)."""
    ALLOCATED = 1
    """Drawn for a batch, not yet given to a printer (Allocated)."""
    SENT = 2
    """In a printer's buffer; it may be printed at any moment (Encoded, not yet confirmed)."""
    PRINTED = 3
    """The printer reported printing it; the camera has not yet judged it (Encoded)."""
    COMMISSIONED = 4
    """Printed, read back exactly and graded good: a saleable unit (Commissioned)."""
    REJECTED = 5
    """Printed or possibly printed, judged bad and taken off the line (LabelScrapped / SNInvalid)."""
    DESTROYED = 6
    """The unit or label was destroyed (Destroyed)."""
    SAMPLED = 7
    """Taken from the line by QA as a sample (Sampled)."""
    IN_DOUBT = 8
    """Possibly printed, fate unknown after a crash or a cleared buffer: re-inspect or decommission it."""
    RETURNED = 9
    """Never given to a printer, handed back at batch close (SNReturnAllocated)."""

    @property
    def label(self) -> str:
        """The lower-case name used in reports, the CLI and the API, like in_doubt."""
        return self.name.lower()


S = SerialState

SERIAL_TRANSITIONS: dict[SerialState, frozenset[SerialState]] = {
    S.AVAILABLE: frozenset({S.ALLOCATED}),
    S.ALLOCATED: frozenset({S.SENT, S.RETURNED}),
    # A printer that refuses or loses a serial may still have printed part of it: it is rejected, never reused.
    S.SENT: frozenset({S.PRINTED, S.REJECTED, S.IN_DOUBT}),
    S.PRINTED: frozenset({S.COMMISSIONED, S.REJECTED, S.SAMPLED, S.IN_DOUBT}),
    # A good unit may still be pulled by QA, or destroyed in rework.
    S.COMMISSIONED: frozenset({S.SAMPLED, S.DESTROYED}),
    S.REJECTED: frozenset({S.DESTROYED}),
    S.DESTROYED: frozenset(),
    S.SAMPLED: frozenset({S.DESTROYED}),
    # Re-inspected and found good, or decommissioned.
    S.IN_DOUBT: frozenset({S.COMMISSIONED, S.REJECTED, S.DESTROYED, S.SAMPLED}),
    # Only serials that never reached a printer come back to the pool.
    S.RETURNED: frozenset({S.AVAILABLE}),
}
"""Every legal move; anything else raises IllegalTransitionError."""

DECOMMISSIONED = frozenset({S.REJECTED, S.DESTROYED, S.SAMPLED})
"""States that take a printed serial out of circulation."""
SETTLED = frozenset({S.COMMISSIONED, *DECOMMISSIONED, S.RETURNED})
"""States a batch's serials must all be in before it closes (DESIGN invariant 2)."""
IN_FLIGHT = frozenset({S.SENT, S.PRINTED})
"""States of serials that may be on a physical unit whose verdict is not yet known."""
REPORTED = frozenset({S.COMMISSIONED, S.REJECTED, S.DESTROYED, S.SAMPLED})
"""Moves to these states enter the EPCIS outbox in their own transaction (commissioning and decommissioning)."""

OPEN_SCS_STATE = {
    S.AVAILABLE: "Unallocated",
    S.ALLOCATED: "Allocated",
    S.SENT: "Encoded",
    S.PRINTED: "Encoded",
    S.COMMISSIONED: "Commissioned",
    S.REJECTED: "LabelScrapped",
    S.DESTROYED: "Destroyed",
    S.SAMPLED: "Sampled",
    S.IN_DOUBT: "Encoded",
    S.RETURNED: "Unallocated",
}
"""The OPEN-SCS state each of ours reports as, for L3 interfaces."""


def serial_state(name: str) -> SerialState:
    """Return the state called name (like "in_doubt" or "IN-DOUBT"); ValueError listing the names otherwise."""
    key = name.strip().upper().replace("-", "_")
    try:
        return SerialState[key]
    except KeyError:
        names = ", ".join(state.label for state in SerialState)
        raise ValueError(f'"{name}" is not a serial state; the states are {names}') from None


def can_move(src: SerialState, dst: SerialState) -> bool:
    """Tell whether a serial may move from src to dst."""
    return dst in SERIAL_TRANSITIONS[src]


def check_move(src: SerialState, dst: SerialState, what: str = "a serial") -> None:
    """Raise IllegalTransitionError naming what, src and dst unless src → dst is legal."""
    if dst not in SERIAL_TRANSITIONS[src]:
        allowed = ", ".join(sorted(state.label for state in SERIAL_TRANSITIONS[src])) or "nothing (final)"
        raise IllegalTransitionError(
            f"{what} cannot move from {src.label} to {dst.label}; from {src.label} it may move to {allowed}"
        )


class BatchState(StrEnum):
    """Where a batch is in its life; the value is what the store keeps."""

    CREATED = "created"
    """Imported from a work order; nothing drawn yet."""
    RELEASED = "released"
    """Approved for production; its serials are allocated."""
    RUNNING = "running"
    """On the line, units being made."""
    PAUSED = "paused"
    """On the line, stopped for now."""
    COMPLETING = "completing"
    """No more units started; the serials in flight are being settled."""
    CLOSED = "closed"
    """Reconciled and closed for good."""
    CANCELLED = "cancelled"
    """Withdrawn before it ran; its serials were returned."""


B = BatchState

BATCH_TRANSITIONS: dict[BatchState, frozenset[BatchState]] = {
    B.CREATED: frozenset({B.RELEASED, B.CANCELLED}),
    B.RELEASED: frozenset({B.RUNNING, B.CANCELLED}),
    B.RUNNING: frozenset({B.PAUSED, B.COMPLETING}),
    B.PAUSED: frozenset({B.RUNNING, B.COMPLETING}),
    B.COMPLETING: frozenset({B.CLOSED}),
    B.CLOSED: frozenset(),
    B.CANCELLED: frozenset(),
}
"""Every legal batch move. A batch that ran is never cancelled: it is completed and reconciled."""

ACTIVE_BATCH_STATES = frozenset({B.RUNNING, B.PAUSED, B.COMPLETING})
"""A line holds at most one batch in these states (enforced by a unique index too)."""


def check_batch_move(src: BatchState, dst: BatchState, what: str) -> None:
    """Raise BatchError naming what unless a batch may move from src to dst."""
    if dst in BATCH_TRANSITIONS[src]:
        return
    if src is B.CLOSED or src is B.CANCELLED:
        raise BatchError(f"{what} is {src.value}; a {src.value} batch never changes again")
    if dst is B.CANCELLED:
        raise BatchError(
            f"{what} is {src.value} and has put serials on the line; complete and close it instead of cancelling"
        )
    allowed = ", ".join(sorted(state.value for state in BATCH_TRANSITIONS[src]))
    raise BatchError(f"{what} cannot go from {src.value} to {dst.value}; from {src.value} it may go to {allowed}")
