"""Users: the first-user rule, argon2id passwords, durable lockout and its expiry, audited administration, sessions."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

import pytest
from argon2 import PasswordHasher

from edge.control.accounts import (
    CREDENTIALS_REFUSED,
    AccountError,
    AccountPolicy,
    Accounts,
    AuthError,
    Sessions,
)
from edge.control.audit import AuditTrail, export_json
from edge.control.permissions import Actor, NotAllowedError, Role
from edge.store import Store

START = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
ADMIN_PW = "correct horse battery"
OP_PW = "operator-password-1"


class Clock:
    def __init__(self, now=START):
        self.now = now

    def __call__(self):
        return self.now

    def advance(self, **delta):
        self.now += timedelta(**delta)


def fast_hasher(time_cost=1):
    """Argon2id with the least work argon2 allows, so a test hashes in microseconds."""
    return PasswordHasher(time_cost=time_cost, memory_cost=8, parallelism=1)


class Line:
    """A store with accounts, audit trail and sessions on one injected clock."""

    def __init__(self, store, clock, hasher=None):
        self.store = store
        self.clock = clock
        self.audit = AuditTrail(store, clock=clock)
        self.sessions = Sessions(AccountPolicy(), clock)
        self.accounts = Accounts(store, audit=self.audit, clock=clock, hasher=hasher or fast_hasher(),
                                 sessions=self.sessions)

    async def trail(self):
        return [(e.actor, e.action, e.subject, e.details) for e in await self.audit.entries(limit=1000)]


@pytest.fixture
async def line(tmp_path):
    store = Store.open(tmp_path, group_window_s=0)
    async with store:
        yield Line(store, Clock())


@pytest.fixture
async def admin(line):
    await line.accounts.add("admin", Role.ADMINISTRATOR, ADMIN_PW, by=None, full_name="Ada Admin")
    return Actor("admin", Role.ADMINISTRATOR)


# -- the first user -------------------------------------------------------------------------------


async def test_the_first_user_is_an_administrator_added_by_nobody_and_only_while_there_are_none(line):
    with pytest.raises(NotAllowedError, match="first user must be an administrator"):
        await line.accounts.add("op", Role.OPERATOR, OP_PW, by=None)
    user = await line.accounts.add("admin", Role.ADMINISTRATOR, ADMIN_PW, by=None)
    assert (user.name, user.role, user.active, user.created_at) == ("admin", Role.ADMINISTRATOR, True, START)
    with pytest.raises(AccountError, match="users exist already"):
        await line.accounts.add("admin2", Role.ADMINISTRATOR, ADMIN_PW, by=None)
    assert await line.trail() == [
        (None, "user.add", "admin", {"first_user": True, "full_name": None, "role": "administrator"}),
    ]


async def test_an_administrator_adds_users_others_may_not_and_the_refusal_is_audited(line, admin):
    await line.accounts.add("op", Role.OPERATOR, OP_PW, by=admin)
    with pytest.raises(NotAllowedError, match=r"op \(operator\) may not user.admin"):
        await line.accounts.add("op2", Role.OPERATOR, OP_PW, by=Actor("op", Role.OPERATOR))
    assert (await line.trail())[-2:] == [
        ("admin", "user.add", "op", {"first_user": False, "full_name": None, "role": "operator"}),
        ("op", "access.refused", "op2", {"permission": "user.admin", "role": "operator", "wanted": "user.add"}),
    ]
    assert [u.name for u in await line.accounts.users()] == ["admin", "op"]


@pytest.mark.parametrize("name", ["", "a" * 65, "with space", "naïve", "semi;colon", "new\nline"])
async def test_malformed_names_are_refused(line, admin, name):
    with pytest.raises(ValueError, match="user name is 1 to 64"):
        await line.accounts.add(name, Role.OPERATOR, OP_PW, by=admin)


@pytest.mark.parametrize(("name", "password", "why"), [
    ("op", "short-pw", "at least 10"),
    ("operator01", "operator01", "be or contain the user name"),
    ("jsmith", "JSmith-2026!", "be or contain the user name"),
    ("op", " " * 12, "only spaces"),
    ("op", "x" * 1025, "at most"),
])
async def test_passwords_must_meet_the_policy(line, admin, name, password, why):
    with pytest.raises(ValueError, match=why) as caught:
        await line.accounts.add(name, Role.OPERATOR, password, by=admin)
    assert password not in str(caught.value)


async def test_names_are_unique_whatever_their_case_and_login_gives_the_stored_spelling(line, admin):
    await line.accounts.add("Jane.Doe", Role.QA, OP_PW, by=admin)
    with pytest.raises(AccountError, match="exists already"):
        await line.accounts.add("jane.doe", Role.OPERATOR, OP_PW, by=admin)
    assert await line.accounts.authenticate("JANE.DOE", OP_PW, via="hmi") == Actor("Jane.Doe", Role.QA)


# -- authentication and lockout ------------------------------------------------------------------


async def test_a_login_returns_the_actor_and_is_audited_with_its_interface(line, admin):
    assert await line.accounts.authenticate("admin", ADMIN_PW, via="opcua") == admin
    assert (await line.trail())[-1] == ("admin", "user.login", "admin", {"rehashed": False, "via": "opcua"})
    with pytest.raises(ValueError, match="via must be one of"):
        await line.accounts.authenticate("admin", ADMIN_PW, via="telnet")


async def test_unknown_name_and_wrong_password_get_the_same_answer_both_audited(line, admin):
    for name, password in (("nobody", ADMIN_PW), ("admin", "wrong password"), ("bad name!", "x"),
                           ("Typed-4-Password", "")):
        with pytest.raises(AuthError) as caught:
            await line.accounts.authenticate(name, password, via="api")
        assert str(caught.value) == CREDENTIALS_REFUSED
        assert caught.value.kind == "credentials"
    assert (await line.trail())[-4:] == [
        (None, "user.login-failed", "(unknown name)", {"reason": "unknown user", "via": "api"}),
        (None, "user.login-failed", "admin", {"failed_attempts": 1, "reason": "wrong password", "via": "api"}),
        (None, "user.login-failed", "(unknown name)", {"reason": "unknown user", "via": "api"}),
        (None, "user.login-failed", "(unknown name)", {"reason": "unknown user", "via": "api"}),
    ]


async def test_five_failures_lock_the_account_until_the_lockout_runs_out(line, admin):
    for attempt in range(1, 5):
        with pytest.raises(AuthError, match=CREDENTIALS_REFUSED):
            await line.accounts.authenticate("admin", f"wrong {attempt}", via="hmi")
        line.clock.advance(seconds=10)
    with pytest.raises(AuthError, match="locked until 09:15 UTC after 5 failed attempts") as caught:
        await line.accounts.authenticate("admin", "wrong 5", via="hmi")
    assert caught.value.kind == "locked"
    assert caught.value.locked_until == START + timedelta(seconds=40, minutes=15)
    assert (await line.trail())[-1] == (None, "user.locked", "admin", {
        "failed_attempts": 5, "until": "2026-11-25T09:15:40.000000Z", "via": "hmi"})
    line.clock.advance(minutes=14, seconds=59)
    with pytest.raises(AuthError, match="locked until 09:15 UTC") as caught:
        await line.accounts.authenticate("admin", ADMIN_PW, via="hmi")  # the right password does not help
    assert (await line.trail())[-1] == (None, "user.login-failed", "admin", {"reason": "locked", "via": "hmi"})
    line.clock.advance(seconds=1)
    assert await line.accounts.authenticate("admin", ADMIN_PW, via="hmi") == admin
    (user,) = await line.accounts.users()
    assert (user.failed_attempts, user.locked_until) == (0, None)


async def test_the_count_starts_again_after_a_lockout_ran_out(line, admin):
    line.accounts.policy = AccountPolicy(lockout_attempts=2, lockout_minutes=1)
    for _ in range(2):
        with pytest.raises(AuthError):
            await line.accounts.authenticate("admin", "wrong password", via="hmi")
    line.clock.advance(minutes=1)
    with pytest.raises(AuthError, match=CREDENTIALS_REFUSED):
        await line.accounts.authenticate("admin", "wrong password", via="hmi")
    (user,) = await line.accounts.users()
    assert (user.failed_attempts, user.locked_until) == (1, None)


async def test_a_success_resets_the_count(line, admin):
    for _ in range(4):
        with pytest.raises(AuthError):
            await line.accounts.authenticate("admin", "wrong password", via="hmi")
    await line.accounts.authenticate("admin", ADMIN_PW, via="hmi")
    with pytest.raises(AuthError, match=CREDENTIALS_REFUSED):
        await line.accounts.authenticate("admin", "wrong password", via="hmi")


async def test_the_lockout_is_durable_across_a_restart(tmp_path):
    clock = Clock()
    store = Store.open(tmp_path, group_window_s=0)
    async with store:
        line = Line(store, clock)
        await line.accounts.add("admin", Role.ADMINISTRATOR, ADMIN_PW, by=None)
        for _ in range(5):
            with pytest.raises(AuthError):
                await line.accounts.authenticate("admin", "wrong password", via="hmi")
    store = Store.open(tmp_path, group_window_s=0)
    async with store:
        line = Line(store, clock)
        with pytest.raises(AuthError, match="locked until"):
            await line.accounts.authenticate("admin", ADMIN_PW, via="hmi")


async def test_a_disabled_user_is_told_so_only_with_the_right_password(line, admin):
    await line.accounts.add("op", Role.OPERATOR, OP_PW, by=admin)
    await line.accounts.disable("op", by=admin, reason="left the company")
    with pytest.raises(AuthError, match=CREDENTIALS_REFUSED):
        await line.accounts.authenticate("op", "wrong password", via="hmi")
    with pytest.raises(AuthError, match="disabled") as caught:
        await line.accounts.authenticate("op", OP_PW, via="hmi")
    assert caught.value.kind == "disabled"
    await line.accounts.enable("op", by=admin, reason="came back")
    assert await line.accounts.authenticate("op", OP_PW, via="hmi") == Actor("op", Role.OPERATOR)


async def test_a_hash_made_with_old_parameters_is_replaced_at_the_next_login(tmp_path):
    clock = Clock()
    store = Store.open(tmp_path, group_window_s=0)
    async with store:
        old = Line(store, clock, hasher=fast_hasher(time_cost=1))
        await old.accounts.add("admin", Role.ADMINISTRATOR, ADMIN_PW, by=None)
        new = Line(store, clock, hasher=fast_hasher(time_cost=2))
        await new.accounts.authenticate("admin", ADMIN_PW, via="cli")
        stored = await store.read(lambda c: c.execute("SELECT password_hash FROM app_user").fetchone()[0])
        assert stored.startswith("$argon2id$v=19$m=8,t=2,p=1$")
        assert (await new.trail())[-1][3] == {"rehashed": True, "via": "cli"}
        assert await old.accounts.authenticate("admin", ADMIN_PW, via="cli") == Actor("admin", Role.ADMINISTRATOR)


async def test_no_password_ever_reaches_the_store_in_clear(line, admin):
    await line.accounts.add("op", Role.OPERATOR, OP_PW, by=admin)
    await line.accounts.set_password("op", "another-password-2", by=admin)
    with pytest.raises(AuthError):
        await line.accounts.authenticate("op", "typed-by-mistake-3", via="hmi")
    dump = "\n".join(await line.store.read(lambda c: list(c.iterdump())))
    out = io.StringIO()
    await line.store.read(lambda c: export_json(c, out))
    for secret in (ADMIN_PW, OP_PW, "another-password-2", "typed-by-mistake-3"):
        assert secret not in dump
        assert secret not in out.getvalue()


# -- administration ------------------------------------------------------------------------------


async def test_own_password_change_needs_the_current_one(line, admin):
    await line.accounts.add("op", Role.OPERATOR, OP_PW, by=admin)
    op = Actor("op", Role.OPERATOR)
    with pytest.raises(NotAllowedError, match="current password"):
        await line.accounts.set_password("op", "new-password-22", by=op)
    with pytest.raises(AuthError, match=CREDENTIALS_REFUSED):
        await line.accounts.set_password("op", "new-password-22", by=op, current="not my password")
    await line.accounts.set_password("op", "new-password-22", by=op, current=OP_PW)
    assert await line.accounts.authenticate("op", "new-password-22", via="hmi") == op
    assert ("op", "user.password", "op", {"own": True}) in await line.trail()


async def test_an_administrator_reset_ends_a_lockout_and_the_user_s_sessions(line, admin):
    await line.accounts.add("op", Role.OPERATOR, OP_PW, by=admin)
    token = line.sessions.open(Actor("op", Role.OPERATOR))
    for _ in range(5):
        with pytest.raises(AuthError):
            await line.accounts.authenticate("op", "wrong password", via="hmi")
    await line.accounts.set_password("op", "fresh-password-9", by=admin)
    assert line.sessions.actor(token) is None
    assert await line.accounts.authenticate("op", "fresh-password-9", via="hmi") == Actor("op", Role.OPERATOR)


async def test_unlock_forgets_the_failed_attempts(line, admin):
    await line.accounts.add("op", Role.OPERATOR, OP_PW, by=admin)
    for _ in range(5):
        with pytest.raises(AuthError):
            await line.accounts.authenticate("op", "wrong password", via="hmi")
    await line.accounts.unlock("op", by=admin)
    assert await line.accounts.authenticate("op", OP_PW, via="hmi") == Actor("op", Role.OPERATOR)
    assert ("admin", "user.unlock", "op", {"failed_attempts": 5}) in await line.trail()


async def test_role_changes_are_audited_and_end_the_user_s_sessions(line, admin):
    await line.accounts.add("op", Role.OPERATOR, OP_PW, by=admin)
    token = line.sessions.open(Actor("op", Role.OPERATOR))
    await line.accounts.set_role("op", Role.SUPERVISOR, by=admin)
    assert line.sessions.actor(token) is None
    assert (await line.trail())[-1] == ("admin", "user.role", "op", {"from": "operator", "to": "supervisor"})
    with pytest.raises(AccountError, match="supervisor already"):
        await line.accounts.set_role("op", Role.SUPERVISOR, by=admin)
    with pytest.raises(AccountError, match="no user named 'ghost'"):
        await line.accounts.set_role("ghost", Role.QA, by=admin)


async def test_the_last_administrator_can_be_neither_demoted_nor_disabled(line, admin):
    with pytest.raises(AccountError, match="last enabled administrator"):
        await line.accounts.set_role("admin", Role.QA, by=admin)
    with pytest.raises(AccountError, match="last enabled administrator"):
        await line.accounts.disable("admin", by=admin, reason="oops")
    await line.accounts.add("admin2", Role.ADMINISTRATOR, ADMIN_PW, by=admin)
    await line.accounts.disable("admin", by=Actor("admin2", Role.ADMINISTRATOR), reason="moved to site IT")
    assert [(u.name, u.active) for u in await line.accounts.users()] == [("admin", False), ("admin2", True)]


async def test_an_actor_whose_account_changed_since_the_login_may_not_administer(line, admin):
    await line.accounts.add("admin2", Role.ADMINISTRATOR, ADMIN_PW, by=admin)
    stale = Actor("admin2", Role.ADMINISTRATOR)
    await line.accounts.set_role("admin2", Role.QA, by=admin)
    with pytest.raises(NotAllowedError, match="role changed since the login"):
        await line.accounts.add("op", Role.OPERATOR, OP_PW, by=stale)
    await line.accounts.set_role("admin2", Role.ADMINISTRATOR, by=admin)
    await line.accounts.disable("admin2", by=admin, reason="left")
    with pytest.raises(NotAllowedError, match="not an enabled user"):
        await line.accounts.add("op", Role.OPERATOR, OP_PW, by=stale)


async def test_disabling_needs_a_reason_and_a_user_is_never_deleted(line, admin):
    await line.accounts.add("op", Role.OPERATOR, OP_PW, by=admin)
    with pytest.raises(ValueError, match="reason"):
        await line.accounts.disable("op", by=admin, reason="  ")
    await line.accounts.disable("op", by=admin, reason="left  the\ncompany")
    assert (await line.trail())[-1] == ("admin", "user.disable", "op", {"reason": "left the company"})
    with pytest.raises(AccountError, match="disabled already"):
        await line.accounts.disable("op", by=admin, reason="again")
    import sqlite3

    with pytest.raises(sqlite3.IntegrityError, match="never deleted"):
        await line.store.write(lambda c: c.execute("DELETE FROM app_user WHERE name = 'op'"))


def test_policy_values_must_be_positive():
    with pytest.raises(ValueError, match="lockout_attempts must be 1 or more"):
        AccountPolicy(lockout_attempts=0)


# -- sessions ------------------------------------------------------------------------------------


def test_a_session_ends_after_the_idle_time_and_use_refreshes_it():
    clock = Clock()
    sessions = Sessions(AccountPolicy(session_idle_minutes=15), clock)
    actor = Actor("op", Role.OPERATOR)
    token = sessions.open(actor)
    assert len(token) >= 43
    clock.advance(minutes=14, seconds=59)
    assert sessions.actor(token) == actor
    clock.advance(minutes=14, seconds=59)
    assert sessions.actor(token) == actor
    clock.advance(minutes=15)
    assert sessions.actor(token) is None
    assert len(sessions) == 0


def test_a_session_ends_at_its_absolute_limit_however_busy():
    clock = Clock()
    sessions = Sessions(AccountPolicy(session_idle_minutes=15, session_max_hours=12), clock)
    token = sessions.open(Actor("op", Role.OPERATOR))
    for _ in range(12 * 6 - 1):
        clock.advance(minutes=10)
        assert sessions.actor(token) is not None
    clock.advance(minutes=10)
    assert sessions.actor(token) is None


def test_close_and_close_user_end_sessions():
    sessions = Sessions(AccountPolicy(), Clock())
    mine = [sessions.open(Actor("Op", Role.OPERATOR)) for _ in range(2)]
    theirs = sessions.open(Actor("qa", Role.QA))
    assert len(set(mine)) == 2
    assert sessions.close(mine[0]) is True
    assert sessions.close(mine[0]) is False
    assert sessions.close_user("op") == 1
    assert sessions.actor(mine[1]) is None
    assert sessions.actor(theirs) == Actor("qa", Role.QA)
    assert sessions.actor("not-a-token") is None


def test_sessions_are_bounded_dropping_the_least_recently_used():
    clock = Clock()
    sessions = Sessions(AccountPolicy(max_sessions=3), clock)
    tokens = [sessions.open(Actor(f"u{n}", Role.OPERATOR)) for n in range(3)]
    assert sessions.actor(tokens[0]) is not None  # now the most recently used
    newest = sessions.open(Actor("u3", Role.OPERATOR))
    assert len(sessions) == 3
    assert sessions.actor(tokens[1]) is None
    assert all(sessions.actor(t) is not None for t in (tokens[0], tokens[2], newest))


def test_expired_sessions_make_room_before_live_ones_are_dropped():
    clock = Clock()
    sessions = Sessions(AccountPolicy(max_sessions=2, session_idle_minutes=5), clock)
    old = sessions.open(Actor("u0", Role.OPERATOR))
    clock.advance(minutes=4)
    live = sessions.open(Actor("u1", Role.OPERATOR))
    clock.advance(minutes=2)
    sessions.open(Actor("u2", Role.OPERATOR))
    assert sessions.actor(live) is not None
    assert sessions.actor(old) is None
