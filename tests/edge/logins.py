"""Users for API tests: one per role, the accounts and sessions an API under test authenticates with, and logging in."""

from __future__ import annotations

from argon2 import PasswordHasher

from edge.api.auth import Auth
from edge.control.accounts import Accounts, Sessions
from edge.control.audit import AuditTrail
from edge.control.permissions import Actor, Role
from edge.control.signatures import Signatures
from edge.store import Store

USERS = {
    "olga": (Role.OPERATOR, "operator-pass-1", "Olga Operator"),
    "sam": (Role.SUPERVISOR, "supervisor-pass-1", "Sam Supervisor"),
    "quinn": (Role.QA, "quality-pass-1", "Quinn Quality"),
    "ada": (Role.ADMINISTRATOR, "admin-pass-123", "Ada Admin"),
}
"""Name → (role, password, full name); ada, the administrator, adds the others."""


def password(name):
    return USERS[name][1]


def fast_hasher():
    """Argon2id with the least work argon2 allows, so a test hashes in microseconds."""
    return PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)


def make_auth(store, hasher=None):
    """The accounts, sessions, signatures and audit trail of an API over store (fast hashing)."""
    audit = AuditTrail(store)
    sessions = Sessions()
    accounts = Accounts(store, audit=audit, hasher=hasher or fast_hasher(), sessions=sessions)
    return Auth(accounts=accounts, sessions=sessions, signatures=Signatures(store, accounts, audit), audit=audit)


async def add_users(accounts, names=tuple(USERS)):
    """Add the administrator (when there are no users yet), then the other users named that are not there."""
    known = {user.name for user in await accounts.users()}
    if not known:
        role, secret, full = USERS["ada"]
        await accounts.add("ada", role, secret, by=None, full_name=full)
        known.add("ada")
    admin = Actor("ada", Role.ADMINISTRATOR)
    for name in names:
        if name not in known:
            role, secret, full = USERS[name]
            await accounts.add(name, role, secret, by=admin, full_name=full)


async def seed_users(state_dir):
    """Create the store in state_dir (if new) with every user, and close it again (for a daemon to open)."""
    store = Store.open(state_dir, group_window_s=0)
    try:
        async with store:
            await add_users(Accounts(store, audit=AuditTrail(store), hasher=fast_hasher()))
    finally:
        store.close()


async def daemon_login(daemon, session, name="olga", base=""):
    """Add name (and the administrator) to a running daemon's users if needed, log in; return the bearer header."""
    store = daemon.store
    await add_users(Accounts(store, audit=AuditTrail(store), hasher=fast_hasher()), (name,))
    return await login(session, name, base)


async def login(session, name, base=""):
    """Log name in through the API with the aiohttp session; return the bearer header of the session."""
    async with session.post(f"{base}/api/v1/session", json={"name": name, "password": password(name)}) as response:
        body = await response.json()
        assert response.status == 200, body
    return {"Authorization": f"Bearer {body['token']}"}
