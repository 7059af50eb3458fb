"""The PackML state machine as pure data: numbering, every legal transition, every illegal command, modes."""

from __future__ import annotations

import pytest

from edge.control.packml import (
    ACTING_STATES,
    COMPLETES_TO,
    TRANSITIONS,
    WAIT_STATES,
    Command,
    IllegalCommandError,
    PackMLMachine,
    State,
    UnitMode,
    available_commands,
)
from edge.errors import EdgeError

S, C = State, Command

# ISA-TR88.00.02 / PackTags v3.0 numbering, as Modbus and the logs show it (protocols.md §4.1).
PACKTAGS_STATES = {
    "UNDEFINED": 0, "CLEARING": 1, "STOPPED": 2, "STARTING": 3, "IDLE": 4, "SUSPENDED": 5, "EXECUTE": 6,
    "STOPPING": 7, "ABORTING": 8, "ABORTED": 9, "HOLDING": 10, "HELD": 11, "UNHOLDING": 12, "SUSPENDING": 13,
    "UNSUSPENDING": 14, "RESETTING": 15, "COMPLETING": 16, "COMPLETE": 17,
}
PACKTAGS_COMMANDS = {
    "RESET": 1, "START": 2, "STOP": 3, "HOLD": 4, "UNHOLD": 5, "SUSPEND": 6, "UNSUSPEND": 7, "ABORT": 8,
    "CLEAR": 9, "COMPLETE": 10,
}

# The transitions of the standard, written out by hand (not derived from the table under test).
STOPPABLE = {S.RESETTING, S.IDLE, S.STARTING, S.EXECUTE, S.COMPLETING, S.COMPLETE, S.HOLDING, S.HELD,
             S.UNHOLDING, S.SUSPENDING, S.SUSPENDED, S.UNSUSPENDING}
EXPECTED = {
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
    **{(state, C.STOP): S.STOPPING for state in STOPPABLE},
    **{(state, C.ABORT): S.ABORTING for state in set(State) - {S.ABORTING, S.ABORTED, S.UNDEFINED}},
}
EXPECTED_COMPLETION = {
    S.RESETTING: S.IDLE, S.STARTING: S.EXECUTE, S.COMPLETING: S.COMPLETE, S.HOLDING: S.HELD,
    S.UNHOLDING: S.EXECUTE, S.SUSPENDING: S.SUSPENDED, S.UNSUSPENDING: S.EXECUTE, S.STOPPING: S.STOPPED,
    S.ABORTING: S.ABORTED, S.CLEARING: S.STOPPED,
}
ILLEGAL = [(state, command) for state in State for command in Command if (state, command) not in EXPECTED]


def test_states_and_commands_carry_the_packtags_numbers() -> None:
    assert {s.name: int(s) for s in State} == PACKTAGS_STATES
    assert {c.name: int(c) for c in Command} == PACKTAGS_COMMANDS
    assert [int(m) for m in UnitMode] == [1, 2, 3]
    assert S.UNHOLDING.title == "Unholding"
    assert C.COMPLETE.title == "Complete"


def test_the_table_is_exactly_the_standard() -> None:
    assert TRANSITIONS == EXPECTED
    assert COMPLETES_TO == EXPECTED_COMPLETION
    assert {S.IDLE, S.HELD, S.SUSPENDED, S.COMPLETE, S.STOPPED, S.ABORTED} == WAIT_STATES
    assert set(COMPLETES_TO) == ACTING_STATES
    assert ACTING_STATES.isdisjoint(WAIT_STATES)
    assert S.EXECUTE not in ACTING_STATES | WAIT_STATES  # the dual state ends on a command or by completing


@pytest.mark.parametrize(("start", "command"), sorted(EXPECTED), ids=lambda v: v.title)
def test_every_legal_command_leads_to_its_acting_state_and_is_remembered(start: State, command: Command) -> None:
    machine = PackMLMachine(state=start)
    target = machine.command(command, "because")
    assert target is EXPECTED[(start, command)]
    assert machine.state is target
    assert target in ACTING_STATES
    assert machine.history == [(start, target, "because")]


@pytest.mark.parametrize(("start", "command"), ILLEGAL, ids=lambda v: v.title)
def test_every_illegal_command_is_refused_naming_state_command_and_what_is_possible(
    start: State, command: Command
) -> None:
    machine = PackMLMachine(state=start)
    with pytest.raises(IllegalCommandError) as caught:
        machine.command(command)
    error = caught.value
    assert (error.state, error.command) == (start, command)
    possible = [c.title for c in Command if (start, c) in EXPECTED]
    assert str(error) == (f"{command.title} is not possible in {start.title} "
                          f"(possible: {', '.join(possible) or 'none'})")
    assert isinstance(error, EdgeError)
    assert machine.state is start
    assert machine.history == []


@pytest.mark.parametrize("acting", sorted(EXPECTED_COMPLETION), ids=lambda v: v.title)
def test_every_acting_state_completes_to_its_successor(acting: State) -> None:
    machine = PackMLMachine(state=acting)
    assert machine.state_complete() is EXPECTED_COMPLETION[acting]
    assert machine.history == [(acting, EXPECTED_COMPLETION[acting], "state complete")]


@pytest.mark.parametrize("state", sorted(WAIT_STATES | {S.EXECUTE, S.UNDEFINED}), ids=lambda v: v.title)
def test_a_state_that_is_not_acting_ends_only_on_a_command(state: State) -> None:
    machine = PackMLMachine(state=state)
    with pytest.raises(EdgeError, match=f"{state.title} is not an acting state"):
        machine.state_complete()
    assert machine.state is state


def test_available_commands_in_command_number_order() -> None:
    assert available_commands(S.EXECUTE) == (C.STOP, C.HOLD, C.SUSPEND, C.ABORT, C.COMPLETE)
    assert available_commands(S.STOPPED) == (C.RESET, C.ABORT)
    assert available_commands(S.ABORTED) == (C.CLEAR,)
    assert available_commands(S.ABORTING) == ()
    for state in State:
        assert set(available_commands(state)) == {c for (s, c) in EXPECTED if s is state}


def test_a_whole_production_cycle_through_hold_and_suspend() -> None:
    machine = PackMLMachine()
    assert machine.state is S.STOPPED
    steps: list[Command | None] = [C.RESET, None, C.START, None, C.HOLD, None, C.UNHOLD, None, C.SUSPEND, None,
                                   C.UNSUSPEND, None, C.COMPLETE, None, C.RESET, None]
    for step in steps:
        if step is None:
            machine.state_complete()
        else:
            machine.command(step)
    assert machine.state is S.IDLE
    visited = [to for _, to, _ in machine.history]
    assert visited == [S.RESETTING, S.IDLE, S.STARTING, S.EXECUTE, S.HOLDING, S.HELD, S.UNHOLDING, S.EXECUTE,
                       S.SUSPENDING, S.SUSPENDED, S.UNSUSPENDING, S.EXECUTE, S.COMPLETING, S.COMPLETE,
                       S.RESETTING, S.IDLE]
    assert machine.history[0][2] == "Reset"  # a command with no reason is remembered by its name


def test_abort_then_clear_returns_to_stopped() -> None:
    machine = PackMLMachine(state=S.EXECUTE)
    machine.command(C.ABORT, "tracking broken")
    assert machine.state_complete() is S.ABORTED
    with pytest.raises(IllegalCommandError, match=r"Reset is not possible in Aborted \(possible: Clear\)"):
        machine.command(C.RESET)
    machine.command(C.CLEAR)
    assert machine.state_complete() is S.STOPPED


def test_history_is_bounded_keeping_the_newest() -> None:
    machine = PackMLMachine(state=S.EXECUTE)
    for n in range(PackMLMachine.HISTORY + 10):
        machine.command(C.HOLD, f"hold {n}")
        machine.state_complete()
        machine.command(C.UNHOLD)
        machine.state_complete()
    assert len(machine.history) == PackMLMachine.HISTORY
    assert machine.history[-1] == (S.UNHOLDING, S.EXECUTE, "state complete")
    assert machine.history[-4][2] == f"hold {PackMLMachine.HISTORY + 9}"


@pytest.mark.parametrize("state", [S.STOPPED, S.IDLE, S.ABORTED], ids=lambda v: v.title)
def test_the_unit_mode_changes_at_rest(state: State) -> None:
    machine = PackMLMachine(state=state)
    assert machine.mode is UnitMode.PRODUCTION
    machine.set_mode(UnitMode.MAINTENANCE)
    assert machine.mode is UnitMode.MAINTENANCE
    machine.set_mode(UnitMode.MANUAL)
    assert machine.mode is UnitMode.MANUAL
    assert machine.history == []  # a mode change is not a state change


@pytest.mark.parametrize("state", sorted(set(State) - {S.STOPPED, S.IDLE, S.ABORTED}), ids=lambda v: v.title)
def test_the_unit_mode_does_not_change_while_the_line_is_busy(state: State) -> None:
    machine = PackMLMachine(state=state)
    with pytest.raises(EdgeError, match=f"only in Stopped, Idle or Aborted, not in {state.title}"):
        machine.set_mode(UnitMode.MAINTENANCE)
    assert machine.mode is UnitMode.PRODUCTION
