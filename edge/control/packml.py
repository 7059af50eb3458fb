"""The PackML state machine (ISA-TR88.00.02) as pure data: states, commands, unit modes and legal transitions.

Numbers are the PackTags ones (``Status.StateCurrent``, ``Command.CntrlCmd``, ``Status.UnitModeCurrent``), as
they appear on Modbus and in logs; OPC UA shows the same states under their OPC 30050 names. Acting states
(Starting, Holding, ...) end when the line's logic for them is done (``state_complete``); wait states (Idle,
Held, Stopped, ...) end only on a command. Execute is the dual state: production runs in it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum

from edge.errors import EdgeError


class State(IntEnum):
    """PackTags StateCurrent."""

    UNDEFINED = 0
    CLEARING = 1
    STOPPED = 2
    STARTING = 3
    IDLE = 4
    SUSPENDED = 5
    EXECUTE = 6
    STOPPING = 7
    ABORTING = 8
    ABORTED = 9
    HOLDING = 10
    HELD = 11
    UNHOLDING = 12
    SUSPENDING = 13
    UNSUSPENDING = 14
    RESETTING = 15
    COMPLETING = 16
    COMPLETE = 17

    @property
    def title(self) -> str:
        """The state's name as PackML and OPC 30050 write it, like Execute or Held."""
        return self.name.capitalize()


class Command(IntEnum):
    """PackTags CntrlCmd."""

    RESET = 1
    START = 2
    STOP = 3
    HOLD = 4
    UNHOLD = 5
    SUSPEND = 6
    UNSUSPEND = 7
    ABORT = 8
    CLEAR = 9
    COMPLETE = 10

    @property
    def title(self) -> str:
        """The command's name as the OPC 30050 method is called, like Unhold (Complete is ToComplete there)."""
        return self.name.capitalize()


class UnitMode(IntEnum):
    """PackTags UnitMode: production runs batches; maintenance and manual let a technician work on the line."""

    PRODUCTION = 1
    MAINTENANCE = 2
    MANUAL = 3


S, C = State, Command

WAIT_STATES = frozenset({S.IDLE, S.HELD, S.SUSPENDED, S.COMPLETE, S.STOPPED, S.ABORTED})
"""States that last until a command."""
ACTING_STATES = frozenset(State) - WAIT_STATES - {S.EXECUTE, S.UNDEFINED}
"""States that end on their own once the line's logic for them is done."""

_STOPPABLE = frozenset({S.RESETTING, S.IDLE, S.STARTING, S.EXECUTE, S.COMPLETING, S.COMPLETE, S.HOLDING, S.HELD,
                        S.UNHOLDING, S.SUSPENDING, S.SUSPENDED, S.UNSUSPENDING})

TRANSITIONS: dict[tuple[State, Command], State] = {
    (S.STOPPED, C.RESET): S.RESETTING,
    (S.COMPLETE, C.RESET): S.RESETTING,
    (S.IDLE, C.START): S.STARTING,
    (S.EXECUTE, C.HOLD): S.HOLDING,
    (S.SUSPENDED, C.HOLD): S.HOLDING,
    (S.HELD, C.UNHOLD): S.UNHOLDING,
    (S.EXECUTE, C.SUSPEND): S.SUSPENDING,
    (S.SUSPENDED, C.UNSUSPEND): S.UNSUSPENDING,
    (S.EXECUTE, C.COMPLETE): S.COMPLETING,
    (S.ABORTED, C.CLEAR): S.CLEARING,
    **{(state, C.STOP): S.STOPPING for state in _STOPPABLE},
    **{(state, C.ABORT): S.ABORTING for state in State if state not in (S.ABORTING, S.ABORTED, S.UNDEFINED)},
}
"""Every command legal in a state, and the (acting) state it leads to."""

COMPLETES_TO: dict[State, State] = {
    S.RESETTING: S.IDLE,
    S.STARTING: S.EXECUTE,
    S.COMPLETING: S.COMPLETE,
    S.HOLDING: S.HELD,
    S.UNHOLDING: S.EXECUTE,
    S.SUSPENDING: S.SUSPENDED,
    S.UNSUSPENDING: S.EXECUTE,
    S.STOPPING: S.STOPPED,
    S.ABORTING: S.ABORTED,
    S.CLEARING: S.STOPPED,
}
"""Where each acting state goes once its logic is done."""


class IllegalCommandError(EdgeError):
    """A command given in a state where PackML does not allow it; the message names both and what is allowed."""

    def __init__(self, state: State, command: Command) -> None:
        allowed = ", ".join(c.title for c in available_commands(state)) or "none"
        super().__init__(f"{command.title} is not possible in {state.title} (possible: {allowed})")
        self.state = state
        self.command = command


def available_commands(state: State) -> tuple[Command, ...]:
    """Return the commands PackML allows in state, in command-number order."""
    return tuple(command for command in Command if (state, command) in TRANSITIONS)


@dataclass(slots=True)
class PackMLMachine:
    """One unit's PackML state and mode; no I/O: the line controller runs each acting state's logic around it."""

    state: State = S.STOPPED
    mode: UnitMode = UnitMode.PRODUCTION
    history: list[tuple[State, State, str]] = field(default_factory=list)
    """(from, to, why) of every change, oldest first, bounded by HISTORY."""

    HISTORY = 256

    def command(self, command: Command, why: str = "") -> State:
        """Apply command; return the acting state entered. IllegalCommandError when not allowed here."""
        target = TRANSITIONS.get((self.state, command))
        if target is None:
            raise IllegalCommandError(self.state, command)
        self._go(target, why or command.title)
        return target

    def state_complete(self, why: str = "state complete") -> State:
        """End the current acting state; return the state entered. EdgeError when the state is not acting."""
        target = COMPLETES_TO.get(self.state)
        if target is None:
            raise EdgeError(f"{self.state.title} is not an acting state: it ends only on a command")
        self._go(target, why)
        return target

    def set_mode(self, mode: UnitMode) -> None:
        """Change the unit mode; only in Stopped, Idle or Aborted, as PackML allows a mode change at rest."""
        if self.state not in (S.STOPPED, S.IDLE, S.ABORTED):
            raise EdgeError(f"the unit mode changes only in Stopped, Idle or Aborted, not in {self.state.title}")
        self.mode = mode

    def _go(self, target: State, why: str) -> None:
        self.history.append((self.state, target, why))
        del self.history[: -self.HISTORY]
        self.state = target
