"""Who may do what: the one table of roles and permissions, enforced here for the HMI, the HTTP API and OPC UA.

21 CFR Part 11 asks for authority checks (§11.10(g)) and electronic signatures on the records that need
them (§11.50, §11.200): SIGNED names the actions whose record must be signed again with the user's password,
and the meaning that signature carries.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from edge.errors import EdgeError


class Role(StrEnum):
    """What a user is on this line."""

    OPERATOR = "operator"
    """Runs the line: start, hold, unhold, acknowledge alarms."""
    SUPERVISOR = "supervisor"
    """Also stops, resets and aborts the line, manages batches, rework and upstream re-sends."""
    QA = "qa"
    """Approves: releases and closes batches, decommissions serials; reads the audit trail."""
    ADMINISTRATOR = "administrator"
    """The integrator: users, configuration, unit modes; no production signatures."""


class Permission(StrEnum):
    """One thing a user may be allowed to do."""

    VIEW = "view"
    LINE_START = "line.start"
    LINE_HOLD = "line.hold"
    LINE_UNHOLD = "line.unhold"
    LINE_SUSPEND = "line.suspend"
    LINE_STOP = "line.stop"
    LINE_RESET = "line.reset"
    LINE_ABORT = "line.abort"
    LINE_CLEAR = "line.clear"
    LINE_COMPLETE = "line.complete"
    UNIT_MODE = "line.unit-mode"
    ALARM_ACK = "alarm.acknowledge"
    BATCH_CREATE = "batch.create"
    BATCH_RELEASE = "batch.release"
    BATCH_RUN = "batch.run"
    """Start, pause, resume and complete a released batch."""
    BATCH_CLOSE = "batch.close"
    BATCH_CANCEL = "batch.cancel"
    DECOMMISSION = "serial.decommission"
    REWORK = "aggregation.rework"
    EPCIS_RESEND = "epcis.resend"
    AUDIT_READ = "audit.read"
    USER_ADMIN = "user.admin"
    CONFIG = "config.change"


P = Permission
_RUN_LINE = frozenset({P.VIEW, P.LINE_START, P.LINE_HOLD, P.LINE_UNHOLD, P.LINE_SUSPEND, P.ALARM_ACK})

ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.OPERATOR: _RUN_LINE | {P.BATCH_RUN},
    Role.SUPERVISOR: _RUN_LINE | {
        P.LINE_STOP, P.LINE_RESET, P.LINE_ABORT, P.LINE_CLEAR, P.LINE_COMPLETE, P.BATCH_CREATE, P.BATCH_RUN,
        P.BATCH_CANCEL, P.REWORK, P.EPCIS_RESEND,
    },
    Role.QA: frozenset({
        P.VIEW, P.ALARM_ACK, P.BATCH_RELEASE, P.BATCH_CLOSE, P.DECOMMISSION, P.REWORK, P.AUDIT_READ, P.EPCIS_RESEND,
    }),
    Role.ADMINISTRATOR: frozenset({
        P.VIEW, P.LINE_STOP, P.LINE_RESET, P.LINE_ABORT, P.LINE_CLEAR, P.UNIT_MODE, P.ALARM_ACK, P.USER_ADMIN,
        P.CONFIG, P.AUDIT_READ,
    }),
}
"""The whole table: a permission not listed for a role is refused."""

SIGNED: dict[Permission, str] = {
    P.BATCH_RELEASE: "released",
    P.BATCH_CLOSE: "approved",
    P.DECOMMISSION: "reviewed",
    P.REWORK: "reviewed",
}
"""Actions whose record is signed (password entered again), with the meaning the signature carries."""


class NotAllowedError(EdgeError):
    """A user asked for something their role does not allow; the message names user, role and permission."""


@dataclass(frozen=True, slots=True)
class Actor:
    """Who does something: an authenticated user, with the role they had when they logged in."""

    name: str
    role: Role


def allowed(role: Role, permission: Permission) -> bool:
    """Tell whether role has permission."""
    return permission in ROLE_PERMISSIONS[role]


def authorize(actor: Actor, permission: Permission) -> None:
    """Refuse (NotAllowedError) unless actor's role has permission: the single check every interface calls."""
    if not allowed(actor.role, permission):
        holders = ", ".join(role.value for role in Role if allowed(role, permission))
        raise NotAllowedError(
            f"{actor.name} ({actor.role.value}) may not {permission.value}: that needs the role {holders}"
        )
