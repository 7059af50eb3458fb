"""Electronic signatures: password re-entered, meaning from the signed action, bound to the record's content."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime

import pytest

from edge.control.accounts import AccountPolicy, AuthError
from edge.control.audit import sha256_of
from edge.control.permissions import Actor, NotAllowedError, Permission, Role
from edge.control.signatures import Signature, Signatures
from edge.store import Store
from tests.unit.test_control_accounts import ADMIN_PW, Clock, Line

QA_PW = "quality-first-2026"
RECORD = {"batch": "WO-1", "gtin": "09506000134352", "lot": "L1", "commissioned": 998, "decommissioned": 2}


@pytest.fixture
async def line(tmp_path):
    store = Store.open(tmp_path, group_window_s=0)
    async with store:
        line = Line(store, Clock())
        await line.accounts.add("admin", Role.ADMINISTRATOR, ADMIN_PW, by=None)
        admin = Actor("admin", Role.ADMINISTRATOR)
        await line.accounts.add("qa1", Role.QA, QA_PW, by=admin, full_name="Quentin Quality")
        await line.accounts.add("op1", Role.OPERATOR, "operator-password-1", by=admin)
        line.signatures = Signatures(store, line.accounts, line.audit, clock=line.clock)
        yield line


QA = Actor("qa1", Role.QA)


async def test_a_signature_carries_the_meaning_of_its_action_and_the_hash_of_the_record(line):
    signature = await line.signatures.sign(QA, QA_PW, Permission.BATCH_CLOSE, RECORD, subject="batch:WO-1")
    assert signature == Signature(
        id=1, at=datetime(2026, 11, 25, 9, 0, tzinfo=UTC), user="qa1", full_name="Quentin Quality", role=Role.QA,
        meaning="approved", permission=Permission.BATCH_CLOSE, subject="batch:WO-1", sha256=sha256_of(RECORD))
    assert await line.signatures.get(1) == signature
    assert await line.signatures.of_subject("batch:WO-1") == [signature]
    assert signature.manifest() == ("Electronically signed by Quentin Quality (qa1, qa) on 2026-11-25 09:00:00 UTC; "
                                    "meaning: approved")
    assert (await line.trail())[-1] == ("qa1", "signature.signed", "batch:WO-1", {
        "meaning": "approved", "permission": "batch.close", "role": "qa", "sha256": signature.sha256,
        "signature_id": 1})


async def test_verify_is_true_for_the_same_content_in_any_key_order_and_false_for_any_change(line):
    signature = await line.signatures.sign(QA, QA_PW, Permission.BATCH_RELEASE, RECORD, subject="batch:WO-1")
    assert await line.signatures.verify(signature.id, dict(reversed(RECORD.items())))
    assert not await line.signatures.verify(signature.id, {**RECORD, "decommissioned": 3})
    assert not await line.signatures.verify(signature.id, {k: v for k, v in RECORD.items() if k != "lot"})
    assert not await line.signatures.verify(999, RECORD)


async def test_a_wrong_password_is_refused_audited_and_counted_toward_the_lockout(line):
    with pytest.raises(AuthError, match="unknown user or wrong password"):
        await line.signatures.sign(QA, "not my password", Permission.DECOMMISSION, RECORD, subject="serial:1")
    assert await line.signatures.of_subject("serial:1") == []
    assert (await line.trail())[-1] == ("qa1", "user.confirm-failed", "qa1", {
        "failed_attempts": 1, "purpose": "signature serial.decommission of serial:1", "reason": "wrong password"})
    line.accounts.policy = AccountPolicy(lockout_attempts=2)
    with pytest.raises(AuthError, match="locked until"):
        await line.signatures.sign(QA, "still not it", Permission.DECOMMISSION, RECORD, subject="serial:1")
    with pytest.raises(AuthError, match="locked until"):
        await line.signatures.sign(QA, QA_PW, Permission.DECOMMISSION, RECORD, subject="serial:1")


async def test_only_signed_actions_are_signed_and_only_by_those_allowed_to_do_them(line):
    with pytest.raises(ValueError, match=r"line\.start is not a signed action"):
        await line.signatures.sign(QA, QA_PW, Permission.LINE_START, RECORD, subject="line-1")
    with pytest.raises(NotAllowedError, match=r"may not batch\.release"):
        await line.signatures.sign(Actor("op1", Role.OPERATOR), "operator-password-1", Permission.BATCH_RELEASE,
                                   RECORD, subject="batch:WO-1")
    assert (await line.trail())[-1] == ("op1", "access.refused", "batch:WO-1", {
        "permission": "batch.release", "role": "operator", "wanted": "signature"})


async def test_someone_else_s_password_does_not_sign_as_the_actor(line):
    with pytest.raises(AuthError):
        await line.signatures.sign(QA, ADMIN_PW, Permission.BATCH_CLOSE, RECORD, subject="batch:WO-1")


async def test_a_signer_whose_role_changed_since_the_login_must_log_in_again(line):
    await line.accounts.set_role("qa1", Role.SUPERVISOR, by=Actor("admin", Role.ADMINISTRATOR))
    with pytest.raises(AuthError, match="log in again"):
        await line.signatures.sign(QA, QA_PW, Permission.BATCH_CLOSE, RECORD, subject="batch:WO-1")


async def test_the_signed_action_commits_with_its_signature_or_neither_does(line):
    await line.store.write(lambda c: c.execute("CREATE TABLE released (batch TEXT, signature_id INTEGER) STRICT"))

    def release(conn, signature):
        conn.execute("INSERT INTO released VALUES (?, ?)", ("WO-1", signature.id))

    signature = await line.signatures.sign(QA, QA_PW, Permission.BATCH_RELEASE, RECORD, subject="batch:WO-1",
                                           then=release)
    assert await line.store.read(lambda c: c.execute("SELECT * FROM released").fetchall()) == [("WO-1", signature.id)]

    def refused(conn, signature):
        raise RuntimeError("the batch cannot be released any more")

    entries = len(await line.trail())
    with pytest.raises(RuntimeError):
        await line.signatures.sign(QA, QA_PW, Permission.BATCH_RELEASE, RECORD, subject="batch:WO-2", then=refused)
    assert await line.signatures.of_subject("batch:WO-2") == []
    assert len(await line.trail()) == entries
    assert (await line.audit.check()).ok


async def test_signatures_are_append_only(line):
    await line.signatures.sign(QA, QA_PW, Permission.REWORK, RECORD, subject="case:1")
    for sql in ("UPDATE signature SET sha256 = ?", "DELETE FROM signature WHERE sha256 <> ?"):
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            await line.store.write(lambda c, sql=sql: c.execute(sql, ("0" * 64,)))


async def test_a_record_json_cannot_hold_is_refused_before_the_password_is_checked(line):
    with pytest.raises(TypeError):
        await line.signatures.sign(QA, "whatever", Permission.BATCH_CLOSE, {"x": object()}, subject="batch:WO-1")
    assert all(entry[1] != "user.confirm-failed" for entry in await line.trail())
