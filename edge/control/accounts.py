"""Users, passwords, lockout and sessions (21 CFR Part 11 §11.10(d), §11.10(g), §11.300).

Passwords are kept only as argon2id hashes; hashing runs in a worker thread, off the event loop. Failed
attempts are counted in the store, so a restart does not reset a lockout. Every login, failure, lockout and
account change is written to the audit trail in the same transaction as the change itself. There is no
default account and no default password: the first administrator is created at installation
(``lineside user add NAME --role administrator``), and only while no user exists.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import secrets
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Literal

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from edge.control.permissions import Actor, NotAllowedError, Permission, Role, authorize
from edge.errors import EdgeError
from edge.store.runs import iso_utc
from edge.store.store import utc_now

if TYPE_CHECKING:
    import sqlite3
    from collections.abc import Callable, Mapping

    from edge.control.audit import AuditTrail
    from edge.store import Store

NAME = re.compile(r"[A-Za-z0-9._@-]{1,64}")
"""A user name: 1 to 64 letters, digits and . _ @ - (unique whatever the case)."""

VIA = frozenset({"hmi", "api", "opcua", "cli"})
"""The interfaces a user logs in through, recorded with every attempt."""

MAX_PASSWORD_LENGTH = 1024
"""Longer passwords are refused: hashing a megabyte on every attempt would be a way to load the line PC."""

MAX_FULL_NAME_LENGTH = 128

UNKNOWN_NAME = "(unknown name)"
"""The subject of an audit entry for an attempt with a name no user has."""

CREDENTIALS_REFUSED = "unknown user or wrong password"
"""The one answer for an unknown name and for a wrong password, so a failure never tells which it was."""

AuthKind = Literal["credentials", "locked", "disabled", "session"]


def default_hasher() -> PasswordHasher:
    """Return the argon2id hasher for stored passwords: 19 MiB, 2 passes, 1 lane (OWASP's argon2id minimum).

    About 50 ms on a line PC: slow enough to make guessing a stolen hash costly, quick enough for a login.
    One lane, because the line PC's few cores belong to the line.
    """
    return PasswordHasher(time_cost=2, memory_cost=19_456, parallelism=1)


class AuthError(EdgeError):
    """A login or a password re-entry was refused; the message is safe to show and never says whether a name exists."""

    def __init__(self, message: str, *, kind: AuthKind, locked_until: datetime | None = None) -> None:
        super().__init__(message)
        self.kind: AuthKind = kind
        self.locked_until = locked_until


class AccountError(EdgeError):
    """An account change was refused (no such user, name taken, last administrator); the message says why."""


@dataclass(frozen=True, slots=True)
class AccountPolicy:
    """Lockout, session and password rules (Part 11 §11.300); defaults follow common pharma practice."""

    lockout_attempts: int = 5
    """Consecutive failed attempts that lock an account."""
    lockout_minutes: int = 15
    session_idle_minutes: int = 15
    session_max_hours: int = 12
    min_password_length: int = 10
    max_sessions: int = 64
    """Open sessions kept at most; opening one more drops the least recently used."""

    def __post_init__(self) -> None:
        for field in ("lockout_attempts", "lockout_minutes", "session_idle_minutes", "session_max_hours",
                      "min_password_length", "max_sessions"):
            if getattr(self, field) < 1:
                raise ValueError(f"account policy: {field} must be 1 or more, not {getattr(self, field)}")


DEFAULT_POLICY = AccountPolicy()


@dataclass(frozen=True, slots=True)
class User:
    """A user account as stored (never its password hash)."""

    name: str
    role: Role
    active: bool
    created_at: datetime
    failed_attempts: int
    locked_until: datetime | None
    full_name: str | None = None

    def locked(self, now: datetime) -> bool:
        """Tell whether the account is locked out at now."""
        return self.locked_until is not None and now < self.locked_until


@dataclass(frozen=True, slots=True)
class _Stored:
    """The columns authentication needs."""

    name: str
    role: Role
    password_hash: str
    active: bool
    failed_attempts: int
    locked_until: datetime | None


class Accounts:
    """The user accounts in the store: authentication with lockout, and audited administration."""

    def __init__(
        self,
        store: Store,
        *,
        audit: AuditTrail,
        policy: AccountPolicy = DEFAULT_POLICY,
        clock: Callable[[], datetime] = utc_now,
        hasher: PasswordHasher | None = None,
        sessions: Sessions | None = None,
    ) -> None:
        """Sessions, when given, are closed for a user whose password, role or status changes."""
        self.policy = policy
        self._store = store
        self._audit = audit
        self._clock = clock
        self._hasher = hasher or default_hasher()
        self._sessions = sessions
        self._dummy_hash: str | None = None

    # -- authentication -------------------------------------------------------------------------

    async def authenticate(self, name: str, password: str, *, via: str) -> Actor:
        """Return the Actor for name if password is theirs; else AuthError, audited, the failure counted."""
        if via not in VIA:
            raise ValueError(f"via must be one of {', '.join(sorted(VIA))}, not {via!r}")
        stored = await self._check(name, password, actor=None, action="user.login", details={"via": via})
        return Actor(stored.name, stored.role)

    async def confirm(self, actor: Actor, password: str, *, purpose: str) -> None:
        """Check that password is actor's own, re-entered for purpose (a signature); AuthError as authenticate.

        A failure counts toward the lockout and is audited as user.confirm-failed; a success is not audited
        here, the action it confirms is.
        """
        stored = await self._check(actor.name, password, actor=actor.name, action=None, details={"purpose": purpose})
        if stored.name != actor.name or stored.role is not actor.role:
            raise AuthError(f"{actor.name}'s account changed since the login (now {stored.role.value}); log in again",
                            kind="session")

    # -- administration -------------------------------------------------------------------------

    async def add(self, name: str, role: Role, password: str, *, by: Actor | None,
                  full_name: str | None = None) -> User:
        """Create a user; by=None only for the first user, an administrator, while no user exists.

        ValueError for a malformed name, full name or password; NotAllowedError unless by may administer
        users; AccountError when the name is taken (whatever its case) or users exist already (by=None).
        """
        _check_name(name)
        role = Role(role)
        self._check_password_rules(name, password)
        if full_name is not None:
            full_name = _check_full_name(full_name)
        if by is not None:
            await self._authorize(by, "user.add", name)
        hashed = await asyncio.to_thread(self._hasher.hash, password)
        now = self._clock()

        def change(conn: sqlite3.Connection) -> None:
            if by is None:
                if conn.execute("SELECT 1 FROM app_user LIMIT 1").fetchone() is not None:
                    raise AccountError("users exist already: log in as an administrator to add one")
                if role is not Role.ADMINISTRATOR:
                    raise NotAllowedError("the first user must be an administrator: they add every other user")
            else:
                _check_actor_in(conn, by)
            if _row(conn, name) is not None:
                raise AccountError(f"a user named {name!r} exists already (names are unique whatever their case)")
            stamp = iso_utc(now)
            conn.execute(
                "INSERT INTO app_user (name, full_name, role, password_hash, active, created_at, password_set_at)"
                " VALUES (?, ?, ?, ?, 1, ?, ?)",
                (name, full_name, role.value, hashed, stamp, stamp),
            )
            self._audit.record_in(conn, by.name if by else None, "user.add", name,
                                  {"role": role.value, "full_name": full_name, "first_user": by is None}, at=now)

        await self._store.write(change)
        return User(name=name, role=role, active=True, created_at=now, failed_attempts=0, locked_until=None,
                    full_name=full_name)

    async def set_password(self, name: str, password: str, *, by: Actor, current: str | None = None) -> None:
        """Set name's password: by themself (current password required) or by a user administrator.

        Clears failed attempts and any lockout, and closes name's sessions.
        """
        self._check_password_rules(name, password)
        own = by.name.casefold() == name.casefold()
        if own:
            if current is None:
                raise NotAllowedError("changing your own password needs your current password")
            await self.confirm(by, current, purpose="password change")
        else:
            await self._authorize(by, "user.password", name)
        hashed = await asyncio.to_thread(self._hasher.hash, password)
        now = self._clock()

        def change(conn: sqlite3.Connection) -> str:
            _check_actor_in(conn, by)
            user = _existing(conn, name)
            conn.execute(
                "UPDATE app_user SET password_hash = ?, password_set_at = ?, failed_attempts = 0, locked_until = NULL"
                " WHERE name = ?",
                (hashed, iso_utc(now), user.name),
            )
            self._audit.record_in(conn, by.name, "user.password", user.name, {"own": own}, at=now)
            return user.name

        self._close_sessions(await self._store.write(change))

    async def set_role(self, name: str, role: Role, *, by: Actor) -> None:
        """Give name another role; refused when that would leave no active administrator. Closes name's sessions."""
        role = Role(role)
        await self._authorize(by, "user.role", name)
        now = self._clock()

        def change(conn: sqlite3.Connection) -> str:
            _check_actor_in(conn, by)
            user = _existing(conn, name)
            if user.role is role:
                raise AccountError(f"{user.name} is {role.value} already")
            if user.role is Role.ADMINISTRATOR and user.active:
                _keep_an_administrator(conn, user.name, "take the administrator role from")
            conn.execute("UPDATE app_user SET role = ? WHERE name = ?", (role.value, user.name))
            self._audit.record_in(conn, by.name, "user.role", user.name,
                                  {"from": user.role.value, "to": role.value}, at=now)
            return user.name

        self._close_sessions(await self._store.write(change))

    async def disable(self, name: str, *, by: Actor, reason: str) -> None:
        """Disable name (never deleted: the name stays bound to its records); refused for the last administrator."""
        reason = _check_reason(reason)
        await self._authorize(by, "user.disable", name)
        now = self._clock()

        def change(conn: sqlite3.Connection) -> str:
            _check_actor_in(conn, by)
            user = _existing(conn, name)
            if not user.active:
                raise AccountError(f"{user.name} is disabled already")
            if user.role is Role.ADMINISTRATOR:
                _keep_an_administrator(conn, user.name, "disable")
            conn.execute("UPDATE app_user SET active = 0 WHERE name = ?", (user.name,))
            self._audit.record_in(conn, by.name, "user.disable", user.name, {"reason": reason}, at=now)
            return user.name

        self._close_sessions(await self._store.write(change))

    async def enable(self, name: str, *, by: Actor, reason: str) -> None:
        """Enable a disabled user again, with no failed attempts counted."""
        reason = _check_reason(reason)
        await self._authorize(by, "user.enable", name)
        now = self._clock()

        def change(conn: sqlite3.Connection) -> None:
            _check_actor_in(conn, by)
            user = _existing(conn, name)
            if user.active:
                raise AccountError(f"{user.name} is enabled already")
            conn.execute("UPDATE app_user SET active = 1, failed_attempts = 0, locked_until = NULL WHERE name = ?",
                         (user.name,))
            self._audit.record_in(conn, by.name, "user.enable", user.name, {"reason": reason}, at=now)

        await self._store.write(change)

    async def unlock(self, name: str, *, by: Actor) -> None:
        """End name's lockout now and forget their failed attempts."""
        await self._authorize(by, "user.unlock", name)
        now = self._clock()

        def change(conn: sqlite3.Connection) -> None:
            _check_actor_in(conn, by)
            user = _existing(conn, name)
            conn.execute("UPDATE app_user SET failed_attempts = 0, locked_until = NULL WHERE name = ?", (user.name,))
            self._audit.record_in(conn, by.name, "user.unlock", user.name,
                                  {"failed_attempts": user.failed_attempts}, at=now)

        await self._store.write(change)

    async def users(self) -> list[User]:
        """Return every user, enabled or not, by name."""
        return await self._store.read(read_users)

    async def user(self, name: str) -> User | None:
        """Return the user called name (whatever the case), or None."""
        def read(conn: sqlite3.Connection) -> User | None:
            row = conn.execute(f"{_USER_SELECT} WHERE name = ?", (name,)).fetchone()
            return _user(row) if row is not None else None

        return await self._store.read(read)

    # -- internals ------------------------------------------------------------------------------

    async def _check(self, name: str, password: str, *, actor: str | None, action: str | None,
                     details: Mapping[str, object]) -> _Stored:
        """Verify name's password, count and audit a failure; on success audit action (if any) and return the row."""
        attempt = _Attempt(now=self._clock(), actor=actor, action=action, details=details,
                           failed_action="user.login-failed" if action == "user.login" else "user.confirm-failed")
        stored = await self._store.read(lambda conn: _stored(conn, name)) if NAME.fullmatch(name) else None
        if stored is None:
            # As slow as a wrong password, so the time taken does not tell an unknown name either.
            await asyncio.to_thread(self._matches, await self._dummy(), password)
            # Never the name typed: a password typed in the name field by mistake would be kept in clear.
            await self._audit.record(actor, attempt.failed_action, UNKNOWN_NAME, {**details, "reason": "unknown user"})
            raise AuthError(CREDENTIALS_REFUSED, kind="credentials")
        if stored.locked_until is not None and attempt.now < stored.locked_until:
            await self._audit.record(actor, attempt.failed_action, stored.name, {**details, "reason": "locked"})
            raise _locked(stored.locked_until, stored.failed_attempts)
        ok, rehashed = await asyncio.to_thread(self._matches, stored.password_hash, password)
        if not ok:
            failed, until = await self._store.write(lambda conn: self._count_failure(conn, stored.name, attempt))
            if until is not None:
                raise _locked(until, failed)
            raise AuthError(CREDENTIALS_REFUSED, kind="credentials")
        refusal = await self._store.write(lambda conn: self._succeed(conn, stored, rehashed, attempt))
        if refusal is not None:
            raise refusal
        return stored

    def _matches(self, password_hash: str, password: str) -> tuple[bool, str | None]:
        """In a worker thread: whether password matches, and its new hash when the parameters changed."""
        try:
            self._hasher.verify(password_hash, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False, None
        if self._hasher.check_needs_rehash(password_hash):
            return True, self._hasher.hash(password)
        return True, None

    async def _dummy(self) -> str:
        if self._dummy_hash is None:
            self._dummy_hash = await asyncio.to_thread(self._hasher.hash, secrets.token_urlsafe(16))
        return self._dummy_hash

    def _count_failure(self, conn: sqlite3.Connection, name: str, attempt: _Attempt) -> tuple[int, datetime | None]:
        """In the writer: count one more failed attempt, lock when there are enough; return (count, locked until)."""
        now, details = attempt.now, attempt.details
        row = conn.execute("SELECT failed_attempts, locked_until FROM app_user WHERE name = ?", (name,)).fetchone()
        failed, until = int(row[0]), _parse(row[1])
        if until is not None and until <= now:
            failed, until = 0, None  # a lockout that ran out starts the count again
        failed += 1
        locks = until is None and failed >= self.policy.lockout_attempts
        if locks:
            until = now + timedelta(minutes=self.policy.lockout_minutes)
        conn.execute("UPDATE app_user SET failed_attempts = ?, locked_until = ? WHERE name = ?",
                     (failed, iso_utc(until) if until else None, name))
        self._audit.record_in(conn, attempt.actor, attempt.failed_action, name,
                              {**details, "reason": "wrong password", "failed_attempts": failed}, at=now)
        if locks and until is not None:
            self._audit.record_in(conn, attempt.actor, "user.locked", name,
                                  {**details, "failed_attempts": failed, "until": iso_utc(until)}, at=now)
        return failed, until if locks else None

    def _succeed(self, conn: sqlite3.Connection, seen: _Stored, rehashed: str | None,
                 attempt: _Attempt) -> AuthError | None:
        """In the writer: reset the count and audit the success; return the refusal when the account changed."""
        now, details = attempt.now, attempt.details
        current = _stored(conn, seen.name)
        refusal: AuthError | None = None
        if current is None or current.password_hash != seen.password_hash:
            refusal = AuthError(CREDENTIALS_REFUSED, kind="credentials")  # the password changed meanwhile
        elif current.locked_until is not None and now < current.locked_until:
            refusal = _locked(current.locked_until, current.failed_attempts)  # locked by an attempt meanwhile
        elif not current.active:
            refusal = AuthError("this account is disabled: ask an administrator", kind="disabled")
        if refusal is not None:
            self._audit.record_in(conn, attempt.actor, attempt.failed_action, seen.name,
                                  {**details, "reason": refusal.kind}, at=now)
            return refusal
        conn.execute(
            "UPDATE app_user SET failed_attempts = 0, locked_until = NULL,"
            " password_hash = coalesce(?, password_hash) WHERE name = ?",
            (rehashed, seen.name),
        )
        if attempt.action is not None:
            self._audit.record_in(conn, seen.name, attempt.action, seen.name,
                                  {**details, "rehashed": rehashed is not None}, at=now)
        return None

    async def _authorize(self, by: Actor, action: str, subject: str) -> None:
        """Refuse (NotAllowedError, audited) unless by may administer users."""
        try:
            authorize(by, Permission.USER_ADMIN)
        except NotAllowedError as err:
            await self._audit.record(by.name, "access.refused", subject,
                                     {"wanted": action, "permission": Permission.USER_ADMIN.value,
                                      "role": by.role.value})
            raise err from None

    def _check_password_rules(self, name: str, password: str) -> None:
        """Raise ValueError (never showing the password) unless password meets the policy."""
        if len(password) < self.policy.min_password_length:
            raise ValueError(f"a password has at least {self.policy.min_password_length} characters")
        if len(password) > MAX_PASSWORD_LENGTH:
            raise ValueError(f"a password has at most {MAX_PASSWORD_LENGTH} characters")
        if not password.strip():
            raise ValueError("a password cannot be only spaces")
        folded, secret = name.casefold(), password.casefold()
        # Containment only from 4 characters on: a one-letter name would forbid every password with that letter.
        if secret == folded or (len(folded) >= 4 and folded in secret):
            raise ValueError("a password cannot be or contain the user name")

    def _close_sessions(self, name: str) -> None:
        if self._sessions is not None:
            self._sessions.close_user(name)


class Sessions:
    """Logged-in sessions, in memory: a token per session, idle and absolute expiry, a bounded number."""

    def __init__(self, policy: AccountPolicy = DEFAULT_POLICY, clock: Callable[[], datetime] = utc_now) -> None:
        self._policy = policy
        self._clock = clock
        # Keyed by the token's sha256, so neither a dict lookup's timing nor a memory dump gives a token away;
        # ordered from least to most recently used.
        self._sessions: OrderedDict[str, _Session] = OrderedDict()

    def open(self, actor: Actor) -> str:
        """Open a session for actor; return its token. When full, the least recently used session ends."""
        now = self._clock()
        self._purge(now)
        while len(self._sessions) >= self._policy.max_sessions:
            self._sessions.popitem(last=False)
        token = secrets.token_urlsafe(32)
        self._sessions[_key(token)] = _Session(actor, opened=now, used=now)
        return token

    def actor(self, token: str) -> Actor | None:
        """Return the session's Actor and refresh its idle time, or None when unknown or expired."""
        key = _key(token)
        session = self._sessions.get(key)
        if session is None:
            return None
        now = self._clock()
        if self._expired(session, now):
            del self._sessions[key]
            return None
        session.used = now
        self._sessions.move_to_end(key)
        return session.actor

    def close(self, token: str) -> bool:
        """End a session (a logout); tell whether it was open."""
        return self._sessions.pop(_key(token), None) is not None

    def close_user(self, name: str) -> int:
        """End every session of the user called name; return how many."""
        folded = name.casefold()
        keys = [key for key, session in self._sessions.items() if session.actor.name.casefold() == folded]
        for key in keys:
            del self._sessions[key]
        return len(keys)

    def __len__(self) -> int:
        """Sessions held, expired ones not yet noticed included."""
        return len(self._sessions)

    def _expired(self, session: _Session, now: datetime) -> bool:
        return (now - session.used >= timedelta(minutes=self._policy.session_idle_minutes)
                or now - session.opened >= timedelta(hours=self._policy.session_max_hours))

    def _purge(self, now: datetime) -> None:
        for key in [key for key, session in self._sessions.items() if self._expired(session, now)]:
            del self._sessions[key]


@dataclass(frozen=True, slots=True)
class _Attempt:
    """One authentication attempt: when, by whom (None for a login), what to audit on success and failure."""

    now: datetime
    actor: str | None
    action: str | None
    failed_action: str
    details: Mapping[str, object]


@dataclass(slots=True)
class _Session:
    actor: Actor
    opened: datetime
    used: datetime


def _key(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


_USER_SELECT = "SELECT name, role, active, created_at, failed_attempts, locked_until, full_name FROM app_user"


def _user(row: tuple[object, ...]) -> User:
    return User(name=str(row[0]), role=Role(str(row[1])), active=bool(row[2]),
                created_at=datetime.fromisoformat(str(row[3])), failed_attempts=int(str(row[4])),
                locked_until=_parse(row[5]), full_name=None if row[6] is None else str(row[6]))


def read_users(conn: sqlite3.Connection) -> list[User]:
    """Return every user on conn, enabled or not, by name."""
    return [_user(row) for row in conn.execute(f"{_USER_SELECT} ORDER BY name")]


def _row(conn: sqlite3.Connection, name: str) -> User | None:
    row = conn.execute(f"{_USER_SELECT} WHERE name = ?", (name,)).fetchone()
    return _user(row) if row is not None else None


def _existing(conn: sqlite3.Connection, name: str) -> User:
    user = _row(conn, name)
    if user is None:
        raise AccountError(f"no user named {name!r}")
    return user


def _stored(conn: sqlite3.Connection, name: str) -> _Stored | None:
    row = conn.execute(
        "SELECT name, role, password_hash, active, failed_attempts, locked_until FROM app_user WHERE name = ?",
        (name,),
    ).fetchone()
    if row is None:
        return None
    return _Stored(name=str(row[0]), role=Role(row[1]), password_hash=str(row[2]), active=bool(row[3]),
                   failed_attempts=int(row[4]), locked_until=_parse(row[5]))


def _check_actor_in(conn: sqlite3.Connection, by: Actor) -> None:
    """Refuse unless by is still an enabled user with the role they logged in with."""
    user = _row(conn, by.name)
    if user is None or not user.active:
        raise NotAllowedError(f"{by.name} is not an enabled user any more")
    if user.role is not by.role:
        raise NotAllowedError(f"{by.name}'s role changed since the login (now {user.role.value}); log in again")


def _keep_an_administrator(conn: sqlite3.Connection, name: str, doing: str) -> None:
    others = conn.execute(
        "SELECT count(*) FROM app_user WHERE role = ? AND active = 1 AND name <> ?",
        (Role.ADMINISTRATOR.value, name),
    ).fetchone()[0]
    if not others:
        raise AccountError(f"cannot {doing} {name}: they are the last enabled administrator, and nobody could "
                           "administer users any more; add another administrator first")


def _locked(until: datetime, failed: int) -> AuthError:
    return AuthError(f"locked until {until.astimezone(UTC):%H:%M} UTC after {failed} failed attempts",
                     kind="locked", locked_until=until)


def _parse(text: object) -> datetime | None:
    return None if text is None else datetime.fromisoformat(str(text))


def _check_name(name: str) -> None:
    if not NAME.fullmatch(name):
        raise ValueError(f"a user name is 1 to 64 letters, digits and . _ @ -, not {name!r}")


def _check_full_name(full_name: str) -> str:
    text = " ".join(full_name.split())
    if not text or len(text) > MAX_FULL_NAME_LENGTH or not text.isprintable():
        raise ValueError(f"a full name is 1 to {MAX_FULL_NAME_LENGTH} printable characters")
    return text


def _check_reason(reason: str) -> str:
    text = " ".join(reason.split())
    if not text:
        raise ValueError("give the reason, it is recorded in the audit trail")
    return text
