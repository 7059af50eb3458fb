"""Electronic signatures (21 CFR Part 11 §11.50, §11.70, §11.200).

A signature is given by a logged-in user entering their password again; it carries the meaning SIGNED gives
its permission ("released", "approved", "reviewed"), and is bound to the record signed by the sha256 of the
record's canonical JSON, so a signature cannot be moved to another record, and a record changed after it was
signed no longer verifies. The signature row and its audit entry commit together, and with the signed
action itself when the caller passes it as ``then``.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from edge.control.audit import MAX_SUBJECT, sha256_of
from edge.control.permissions import SIGNED, Actor, NotAllowedError, Permission, Role, authorize
from edge.store.runs import iso_utc
from edge.store.store import utc_now

if TYPE_CHECKING:
    import sqlite3
    from collections.abc import Callable

    from edge.control.accounts import Accounts
    from edge.control.audit import AuditTrail
    from edge.store import Store


@dataclass(frozen=True, slots=True)
class Signature:
    """One electronic signature as stored."""

    id: int
    at: datetime
    user: str
    full_name: str
    """The signer's printed name when they signed (their user name if no full name is on file)."""
    role: Role
    meaning: str
    permission: Permission
    subject: str
    sha256: str
    """sha256 of the canonical JSON of the record signed."""

    def manifest(self) -> str:
        """Return the signature as shown with the signed record: printed name, date and time, meaning (§11.50)."""
        return (f"Electronically signed by {self.full_name} ({self.user}, {self.role.value}) on "
                f"{self.at.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC; meaning: {self.meaning}")


class Signatures:
    """Signs records with a re-entered password and checks records against their signatures."""

    def __init__(self, store: Store, accounts: Accounts, audit: AuditTrail, *,
                 clock: Callable[[], datetime] = utc_now) -> None:
        self._store = store
        self._accounts = accounts
        self._audit = audit
        self._clock = clock

    async def sign(
        self,
        actor: Actor,
        password: str,
        permission: Permission,
        record: object,
        *,
        subject: str,
        then: Callable[[sqlite3.Connection, Signature], object] | None = None,
    ) -> Signature:
        """Sign record (bound to its content) as actor, who enters their password again; return the signature.

        ValueError when permission is not a signed one or subject is malformed, TypeError when record is not
        JSON-like, NotAllowedError when actor lacks permission, AuthError (audited, counted toward the lockout)
        for a wrong password. then(conn, signature), when given, runs in the signature's transaction (in the
        store's writer thread): the signed action commits with its signature or neither does.
        """
        meaning = SIGNED.get(permission)
        if meaning is None:
            signed = ", ".join(p.value for p in SIGNED)
            raise ValueError(f"{permission.value} is not a signed action (those are {signed})")
        if not subject or len(subject) > MAX_SUBJECT:
            raise ValueError(f"a signature's subject is 1 to {MAX_SUBJECT} characters")
        digest = sha256_of(record)
        try:
            authorize(actor, permission)
        except NotAllowedError as err:
            await self._audit.record(actor.name, "access.refused", subject,
                                     {"wanted": "signature", "permission": permission.value, "role": actor.role.value})
            raise err from None
        await self._accounts.confirm(actor, password, purpose=f"signature {permission.value} of {subject}")
        now = self._clock()

        def change(conn: sqlite3.Connection) -> Signature:
            row = conn.execute("SELECT coalesce(full_name, name) FROM app_user WHERE name = ?",
                               (actor.name,)).fetchone()
            full_name = str(row[0]) if row is not None else actor.name
            cursor = conn.execute(
                "INSERT INTO signature (at, user, full_name, role, meaning, permission, subject, sha256)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (iso_utc(now), actor.name, full_name, actor.role.value, meaning, permission.value, subject, digest),
            )
            if cursor.lastrowid is None:
                raise RuntimeError("SQLite gave no id for the new signature")
            signature = Signature(id=cursor.lastrowid, at=now, user=actor.name, full_name=full_name,
                                  role=actor.role, meaning=meaning, permission=permission, subject=subject,
                                  sha256=digest)
            self._audit.record_in(conn, actor.name, "signature.signed", subject, {
                "signature_id": signature.id, "meaning": meaning, "permission": permission.value,
                "role": actor.role.value, "sha256": digest,
            }, at=now)
            if then is not None:
                then(conn, signature)
            return signature

        return await self._store.write(change)

    async def verify(self, signature_id: int, record: object) -> bool:
        """Tell whether signature signature_id exists and was given to exactly this record's content."""
        signature = await self.get(signature_id)
        return signature is not None and hmac.compare_digest(signature.sha256, sha256_of(record))

    async def get(self, signature_id: int) -> Signature | None:
        """Return the signature with this id, or None."""
        def read(conn: sqlite3.Connection) -> Signature | None:
            row = conn.execute(f"{_SELECT} WHERE id = ?", (signature_id,)).fetchone()
            return _signature(row) if row is not None else None

        return await self._store.read(read)

    async def of_subject(self, subject: str) -> list[Signature]:
        """Return the signatures given on subject, oldest first."""
        def read(conn: sqlite3.Connection) -> list[Signature]:
            return [_signature(row) for row in conn.execute(f"{_SELECT} WHERE subject = ? ORDER BY id", (subject,))]

        return await self._store.read(read)


_SELECT = "SELECT id, at, user, full_name, role, meaning, permission, subject, sha256 FROM signature"


def _signature(row: tuple[object, ...]) -> Signature:
    return Signature(id=int(str(row[0])), at=datetime.fromisoformat(str(row[1])), user=str(row[2]),
                     full_name=str(row[3]), role=Role(str(row[4])), meaning=str(row[5]),
                     permission=Permission(str(row[6])), subject=str(row[7]), sha256=str(row[8]))
