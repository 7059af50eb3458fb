"""Signed actions over the API (21 CFR Part 11 §11.50, §11.200): the password again, and the change with its signature.

Releasing and closing a batch, decommissioning its in-doubt serials and reworking aggregation are signed: the body
carries the user's password, and the change runs inside the signature's transaction (``Signatures.sign(then=...)``),
so the change commits with its signature or neither does. What is signed is the record the user decided on (the
batch, its reconciliation, the container); the change checks, in that same transaction, that the record is still
what was signed, so nothing that changed meanwhile is signed for. Answers carry the signature and its manifest.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import structlog
from aiohttp import web

from edge.api.auth import AUTH, actor_of
from edge.control.accounts import MAX_PASSWORD_LENGTH, AuthError
from edge.control.audit import sha256_of
from edge.control.permissions import SIGNED, Permission
from edge.errors import BatchError
from edge.products.models import Product
from edge.serials import ops
from edge.serials.batches import allocation_plan, returns_to_pool
from edge.serials.ops import CHUNK, Origin
from edge.serials.states import BatchState, check_batch_move
from edge.store.runs import iso_utc
from edge.store.store import utc_now

if TYPE_CHECKING:
    import sqlite3
    from collections.abc import Callable

    from edge.control.signatures import Signature
    from edge.serials.batches import BatchService
    from edge.serials.ops import BatchRow

_LOG = structlog.get_logger("lineside.api")

PASSWORD_KEY: Final = "password"  # noqa: S105 - the name of the body key, not a password
CHANGED: Final = "it changed while it was being signed: look at it again and sign again"


class SignatureRequiredError(Exception):
    """A signed action without its password, or with one refused: a 401 naming the signature wanted."""

    def __init__(self, message: str, permission: Permission, kind: str = "signature") -> None:
        super().__init__(message)
        self.permission = permission
        self.kind = kind

    def body(self) -> dict[str, Any]:
        """Return the 401 body: the error, and the signature wanted (its permission and meaning)."""
        return {"error": str(self), "issues": [], "kind": self.kind,
                "signature": {"permission": self.permission.value, "meaning": SIGNED[self.permission]}}


@dataclass(frozen=True, slots=True)
class Signer:
    """A logged-in user about to sign one action with the password sent again in the request's body.

    The password is asked for only when the action gets to its signature: a request the domain refuses anyway
    is answered with that refusal, not with a demand for a password.
    """

    request: web.Request
    permission: Permission
    password: str | None
    what: str
    """The action in words, for the message asking for the password."""

    async def sign(self, record: object, subject: str,
                   then: Callable[[sqlite3.Connection, Signature], object]) -> Signature:
        """Sign record and run then in the signature's transaction; no or a refused password: SignatureRequiredError."""
        auth = self.request.app[AUTH]
        try:
            return await auth.signatures.sign(actor_of(self.request), self._password(), self.permission, record,
                                              subject=subject, then=then)
        except AuthError as err:
            raise SignatureRequiredError(f"signature refused: {err}", self.permission, err.kind) from err

    async def confirm(self, purpose: str) -> None:
        """Check the password before heavy work that precedes the signature; refused as sign() refuses."""
        auth = self.request.app[AUTH]
        try:
            await auth.accounts.confirm(actor_of(self.request), self._password(), purpose=purpose)
        except AuthError as err:
            raise SignatureRequiredError(f"signature refused: {err}", self.permission, err.kind) from err

    def _password(self) -> str:
        if not self.password:
            raise SignatureRequiredError(
                f"{self.what} is signed electronically (meaning: {SIGNED[self.permission]}): send your password "
                f'again as "{PASSWORD_KEY}"', self.permission)
        return self.password


def signer(request: web.Request, body: dict[str, Any], permission: Permission, what: str) -> Signer:
    """Return the signer of a signed action, with the password its body carries (400 when it is not text)."""
    password = body.get(PASSWORD_KEY)
    if password is not None and not isinstance(password, str):
        raise web.HTTPBadRequest(text=f"{PASSWORD_KEY} must be text")
    if password is not None and len(password) > MAX_PASSWORD_LENGTH:
        raise web.HTTPBadRequest(text=f"a password has at most {MAX_PASSWORD_LENGTH} characters")
    return Signer(request, permission, password or None, what)


def signature_json(signature: Signature) -> dict[str, Any]:
    """Return a signature as the API answers it, with the manifest shown beside the signed record."""
    return {
        "id": signature.id, "user": signature.user, "full_name": signature.full_name, "role": signature.role.value,
        "meaning": signature.meaning, "permission": signature.permission.value, "subject": signature.subject,
        "at": iso_utc(signature.at), "sha256": signature.sha256, "manifest": signature.manifest(),
    }


def batch_subject(batch: BatchRow) -> str:
    """Return the subject a batch's signatures and audit entries are filed under."""
    return f"batch:{batch.work_order}"


# -- the signed batch actions ----------------------------------------------------------------------


async def release(batches: BatchService, ref: str, sign: Signer) -> dict[str, Any]:
    """Allocate the batch's serials and release it, signed; return its reconciliation and the signature."""
    ledger = batches.ledger
    batch = await ledger.batch(ref)
    product = await _product_of(batches, batch)
    market = batches.catalog.markets.get(batch.market)
    if market is None:
        raise BatchError(f"{batch.name} is for market {batch.market}, which is not in the catalog; restore its pack")
    plan = allocation_plan(product, market, batch.quantity)
    operator = actor_of(sign.request).name
    check_batch_move(batch.state, BatchState.RELEASED, batch.name)
    record = {"action": "batch.release", "batch": batch.as_dict(), "serials": plan.count,
              "origin": plan.origin.name.lower()}
    left = plan.count - await ledger.store.read(lambda conn: ops.allocated_total(conn, batch.id))
    if left > CHUNK:
        # A big batch is allocated in chunks (each its own commit, resumable); all but the last come before the
        # signature, so a wrong password must not set a million serials aside first.
        await sign.confirm(f"signature {Permission.BATCH_RELEASE.value} of {batch_subject(batch)}")
        while left > CHUNK:
            await ledger.store.write(lambda conn: ops.release_batch(conn, batch.id, plan, now=_now(),
                                                                    operator=operator, chunk=CHUNK))
            left -= CHUNK

    def then(conn: sqlite3.Connection, signature: Signature) -> None:
        current = ops.get_batch(conn, batch.id)
        if sha256_of({**record, "batch": {**current.as_dict(), "updated_at": batch.updated_at}}) != signature.sha256:
            raise BatchError(f"{batch.name}: {CHANGED}")
        if ops.release_batch(conn, batch.id, plan, now=_now(), operator=operator, chunk=CHUNK):
            raise BatchError(f"{batch.name}: serials are still missing after the last chunk; release it again")

    signature = await sign.sign(record, batch_subject(batch), then)
    _LOG.info("batch released", batch=batch.id, serials=plan.count, operator=operator, signature=signature.id)
    if plan.origin in (Origin.UPSTREAM, Origin.EXTERNAL_CODE):
        await batches.check_low_water(product)
    return {**await batches.status(batch.id), "signature": signature_json(signature)}


async def close(batches: BatchService, ref: str, sign: Signer) -> dict[str, Any]:
    """Close the batch with its reconciliation as signed; return the frozen report and the signature."""
    ledger = batches.ledger
    batch = await ledger.batch(ref)
    check_batch_move(batch.state, BatchState.CLOSED, batch.name)
    report = await ledger.reconciliation(batch.id)
    if report["blocking"]:  # never-printed serials are returned by the close itself: they do not block it
        raise BatchError(f"cannot close {batch.name}: {'; '.join(report['blocking'])}")
    record = {"action": "batch.close", "reconciliation": report}
    operator = actor_of(sign.request).name
    closed: dict[str, Any] = {}

    def then(conn: sqlite3.Connection, signature: Signature) -> None:
        if sha256_of({**record, "reconciliation": ops.reconciliation(conn, batch.id)}) != signature.sha256:
            raise BatchError(f"{batch.name}: its reconciliation {CHANGED}")
        closed.update(ops.close_batch(conn, batch.id, now=_now(), operator=operator,
                                      return_to_pool=returns_to_pool(batch)))

    signature = await sign.sign(record, batch_subject(batch), then)
    _LOG.info("batch closed", batch=batch.id, equation=closed["equation"], operator=operator, signature=signature.id)
    for listener in batches.closed_listeners:
        listener(batch.id)
    return {**closed, "signature": signature_json(signature)}


async def decommission_in_doubt(batches: BatchService, ref: str, reason: str, sign: Signer) -> dict[str, Any]:
    """Decommission the batch's in-doubt serials, signed; return its reconciliation and the signature."""
    ledger = batches.ledger
    batch = await ledger.batch(ref)
    if batch.state is BatchState.RUNNING:
        raise BatchError(f"{batch.name} is running: pause or complete it before decommissioning in-doubt serials")
    in_doubt = (await ledger.counts(batch.id))["in_doubt"]
    if not in_doubt:
        raise BatchError(f"{batch.name} has no serials in doubt: there is nothing to decommission")
    record = {"action": "serial.decommission", "batch": batch.as_dict(), "in_doubt": in_doubt, "reason": reason}
    operator = actor_of(sign.request).name
    done: list[int] = []

    def then(conn: sqlite3.Connection, signature: Signature) -> None:
        now_batch = ops.get_batch(conn, batch.id).as_dict()
        now_in_doubt = ops.counts(conn, batch.id)["in_doubt"]
        if sha256_of({**record, "batch": now_batch, "in_doubt": now_in_doubt}) != signature.sha256:
            raise BatchError(f"{batch.name}: {CHANGED}")
        done.append(ops.decommission_in_doubt(conn, batch.id, now=_now(), operator=operator, reason=reason))

    signature = await sign.sign(record, batch_subject(batch), then)
    _LOG.warning("in-doubt serials decommissioned", batch=batch.id, count=done[0], operator=operator, reason=reason,
                 signature=signature.id)
    return {**await batches.status(batch.id), "signature": signature_json(signature)}


async def signatures_of(request: web.Request, batch: BatchRow) -> list[dict[str, Any]]:
    """Return the signatures given on a batch, oldest first."""
    return [signature_json(s) for s in await request.app[AUTH].signatures.of_subject(batch_subject(batch))]


async def _product_of(batches: BatchService, batch: BatchRow) -> Product:
    """Return the product as it was when the batch was created (its snapshot), as the release plans with it."""
    def read(conn: sqlite3.Connection) -> str:
        return str(conn.execute("SELECT product_json FROM batch WHERE id = ?", (batch.id,)).fetchone()[0])

    snapshot = json.loads(await batches.ledger.store.read(read))
    try:
        return Product.model_validate(snapshot)
    except ValueError as err:
        raise BatchError(f"{batch.name}: its product snapshot no longer reads as a product: {err}") from err


def _now() -> str:
    return iso_utc(utc_now())
