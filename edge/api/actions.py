"""The batch commands an operator gives, shared by the HTTP API and the offline command line."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from edge.errors import BatchError
from edge.serials.states import BatchState

if TYPE_CHECKING:
    from edge.serials.batches import BatchService

ACTIONS = ("release", "start", "pause", "resume", "complete", "decommission-in-doubt", "close", "cancel")
"""What can be done to a batch by name: POST /api/v1/batches/{ref}/{action} and `lineside batch ACTION REF`."""


async def perform(
    batches: BatchService, ref: str, action: str, *, operator: str | None, reason: str | None = None
) -> dict[str, Any]:
    """Do action to the batch with id or work order ref; return its reconciliation as it stands after.

    close returns the frozen close report. ValueError for an unknown action or a cancel without reason;
    the domain's errors (BatchError, SerialError, ...) pass through.
    """
    if action == "release":
        batch = await batches.release(ref, operator=operator)
    elif action == "start":
        batch = await batches.start(ref, operator=operator)
    elif action == "resume":
        batch = await batches.ledger.batch(ref)
        if batch.state is not BatchState.PAUSED:
            hint = "; start it instead" if batch.state is BatchState.RELEASED else ""
            raise BatchError(f"{batch.name} is {batch.state.value}; only a paused batch resumes{hint}")
        batch = await batches.start(batch.id, operator=operator)
    elif action == "pause":
        batch = await batches.pause(ref, operator=operator)
    elif action == "complete":
        return await batches.complete(ref, operator=operator)
    elif action == "decommission-in-doubt":
        if not reason:
            raise ValueError("decommissioning in-doubt serials needs a reason (what happened to their units)")
        return await batches.decommission_in_doubt(ref, reason=reason, operator=operator)
    elif action == "close":
        return await batches.close(ref, operator=operator)
    elif action == "cancel":
        if not reason:
            raise ValueError("cancelling a batch needs a reason")
        batch = await batches.cancel(ref, reason=reason, operator=operator)
    else:
        raise ValueError(f'unknown action "{action}"; the actions are {", ".join(ACTIONS)}')
    return await batches.status(batch.id)
