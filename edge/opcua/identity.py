"""Who is calling: OPC UA sessions logged in through the line's `Accounts`, and the caller of each request.

asyncua asks its user manager synchronously (``get_user`` inside ``InternalSession.activate_session``), but a
login here hashes the password with argon2 (about 50 ms, in a thread) and writes the attempt to the audit
trail and the lockout count to the store: it must be awaited, and blocking the line's event loop for it is not
an option. So each connection's message processor is a subclass that, on ActivateSession with a user name
token, decrypts the token itself (as asyncua does: RSA-OAEP with the server's key and the session's nonce),
awaits `Accounts.authenticate`, and only then lets asyncua process the request; the user manager's
``get_user`` then finds that answer, already known, for exactly those credentials. Anything else (anonymous,
certificates, a token asyncua cannot decrypt) is refused by asyncua itself, since only user name tokens are
offered and no answer is prepared for them.

asyncua passes no session to method callbacks either, so the same processor sets `caller()` (a context
variable) to the session's `Actor` around every request: the callbacks run in the connection's task and read
it there.

This leans on asyncua internals (UaProcessor.process_message, OPCUAProtocol.processor,
BinaryServer._make_protocol, Server.start's steps), checked against asyncua 2.1; the OPC UA tests log in, call
methods and are refused over real loopback, so an upgrade that moves them fails there, closed: without the
hook no login succeeds.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import structlog
from asyncua import ua
from asyncua.crypto.permission_rules import User, UserRole
from asyncua.server.binary_server_asyncio import BinaryServer, OPCUAProtocol
from asyncua.server.server import Server
from asyncua.server.uaprocessor import UaProcessor
from asyncua.ua.object_ids import ObjectIds
from asyncua.ua.ua_binary import nodeid_from_binary, struct_from_binary

from edge.control.accounts import AuthError

if TYPE_CHECKING:
    from asyncua.common.connection import TransportLimits
    from asyncua.server.internal_server import InternalServer

    from edge.control.accounts import Accounts
    from edge.control.permissions import Actor

_LOG = structlog.get_logger("lineside.opcua")

MAX_CONCURRENT_LOGINS: Final = 2
"""Logins checked at once from OPC UA; more wait. Each costs an argon2 hash (19 MiB, ~50 ms of a core): a client
guessing passwords over many connections must not take the line PC's cores from the line."""

_ACTIVATE: Final = ua.NodeId(ua.Int32(ObjectIds.ActivateSessionRequest_Encoding_DefaultBinary))

_CALLER: ContextVar[Actor | None] = ContextVar("lineside_opcua_caller", default=None)


def caller() -> Actor | None:
    """Return the Actor of the session whose request is being processed (None: not logged in as a user)."""
    return _CALLER.get()


@dataclass
class SessionUser(User):
    """An asyncua user that is one of the line's users (role User: read and call, never change the address space)."""

    actor: Actor | None = None


_Key = tuple[str, bytes]


class AccountsGate:
    """The user manager asyncua asks, and the logins checked for it beforehand through the line's Accounts."""

    def __init__(self, accounts: Accounts) -> None:
        self._accounts = accounts
        self._checked: dict[_Key, list[Actor | None]] = {}
        self._logins = asyncio.Semaphore(MAX_CONCURRENT_LOGINS)

    async def check(self, name: str, password: str) -> _Key:
        """Authenticate name with password now; keep the answer for get_user until release(key)."""
        # Keyed by a digest, so the plain password lives no longer than this call's frame.
        key = (name, hashlib.sha256(password.encode("utf-8", "surrogatepass")).digest())
        actor: Actor | None = None
        async with self._logins:
            try:
                actor = await self._accounts.authenticate(name, password, via="opcua")
            except AuthError as err:
                _LOG.warning("OPC UA login refused", kind=err.kind, reason=str(err))
            except ValueError as err:  # a name or password the accounts refuse to look at (too long, ...)
                _LOG.warning("OPC UA login refused", kind="credentials", reason=str(err))
        if actor is not None:
            _LOG.info("OPC UA login", user=actor.name, role=actor.role.value)
        self._checked.setdefault(key, []).append(actor)
        return key

    def release(self, key: _Key) -> None:
        """Forget one answer kept by check()."""
        answers = self._checked.get(key)
        if answers:
            answers.pop()
        if not answers:
            self._checked.pop(key, None)

    def get_user(self, iserver: InternalServer, username: str | None = None, password: str | None = None,
                 certificate: object = None) -> User | None:
        """Return asyncua's user for credentials check() accepted just before; None (refused) for anything else."""
        del iserver, certificate
        if username is None or password is None:
            return None
        answers = self._checked.get((username, hashlib.sha256(password.encode("utf-8", "surrogatepass")).digest()))
        actor = answers[-1] if answers else None
        if actor is None:
            return None
        return SessionUser(role=UserRole.User, name=actor.name, actor=actor)


class _Processor(UaProcessor):
    """A connection's processor that logs in through the gate and tells callbacks who calls."""

    gate: AccountsGate

    async def process_message(self, seqhdr: Any, body: Any) -> Any:  # noqa: ANN401 - asyncua's untyped signature
        """Process one request: ActivateSession after its login is checked, others with caller() set."""
        probe = body.copy()
        if nodeid_from_binary(probe) == _ACTIVATE:
            return await self._activate(seqhdr, body, probe)
        session = self.session
        actor = getattr(session.user, "actor", None) if session is not None else None
        token = _CALLER.set(actor)
        try:
            return await super().process_message(seqhdr, body)  # type: ignore[no-untyped-call]
        finally:
            _CALLER.reset(token)

    async def _activate(self, seqhdr: Any, body: Any, probe: Any) -> Any:  # noqa: ANN401 - as process_message
        header = struct_from_binary(ua.RequestHeader, probe)
        params = struct_from_binary(ua.ActivateSessionParameters, probe)
        # A reconnecting client activates its session on a new channel: asyncua finds it by its token.
        session = self.session or self.iserver.lookup_external_session(header.AuthenticationToken)
        token = params.UserIdentityToken
        key: _Key | None = None
        if session is not None and isinstance(token, ua.UserNameIdentityToken):
            try:
                name, password = self.iserver.decrypt_user_token(session, token)
            except Exception:  # asyncua refuses the same token itself (BadIdentityTokenInvalid)
                logging.getLogger(__name__).debug("user token not decrypted", exc_info=True)
            else:
                key = await self.gate.check(name, password)
        try:
            return await super().process_message(seqhdr, body)  # type: ignore[no-untyped-call]
        finally:
            if key is not None:
                self.gate.release(key)


class _Protocol(OPCUAProtocol):
    """asyncua's connection protocol with the gate's processor."""

    gate: AccountsGate

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        if self.processor is not None and self.transport is not None:
            # Nothing has reached asyncua's processor yet (its reading task has not run): replace it.
            processor = _Processor(self.iserver, self.transport, self.limits)
            processor.set_policies(self.policies)  # type: ignore[no-untyped-call]
            processor.gate = self.gate
            self.processor = processor


class _BinaryServer(BinaryServer):
    def __init__(self, iserver: InternalServer, host: str | None, port: int | None, limits: TransportLimits,
                 gate: AccountsGate) -> None:
        super().__init__(iserver, host, port, limits)  # type: ignore[arg-type]
        self._gate = gate

    def _make_protocol(self) -> OPCUAProtocol:
        protocol = _Protocol(iserver=self.iserver, policies=self._policies, clients=self.clients,
                             closing_tasks=self.closing_tasks, limits=self.limits)
        protocol.gate = self._gate
        return protocol


class GatedServer(Server):
    """An asyncua Server whose sessions log in through the line's Accounts (see the module docstring)."""

    def __init__(self, gate: AccountsGate) -> None:
        super().__init__(user_manager=gate)  # type: ignore[arg-type]
        self.gate: Final = gate

    async def start(self) -> None:
        """Listen: Server.start's steps, with the gate's connection protocol."""
        await self._setup_server_nodes()
        await self.iserver.start()
        try:
            host, port = self._get_bind_socket_info()
            self.bserver = _BinaryServer(self.iserver, host, port, self.limits, self.gate)
            self.bserver.set_policies(self._policies)
            await self.bserver.start()
        except BaseException:
            await self.iserver.stop()
            raise
