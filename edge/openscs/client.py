"""An OPC UA client of an OPEN-SCS (OPC 30260) serial pool server: serial requests, pool pushes, events.

The line asks a Level-3 pool manager for serials (``SNRequestAllocated``, ``SNRequestUnallocated`` or
``SNRequestUnassigned``), tells it what became of them (``SNtoAllocated``, ``SNtoEncoded``, ``SNReturnAllocated``
on the pool manager; ``SIDCommissioningEvent``, ``LabelsScrappingEvent``, ``LabelsSamplingEvent``,
``SIDDestroyingEvent`` on the event manager), and knows nothing else of the server: `edge.openscs.service` decides
what to call and keeps it durable.

Security is the line's own server's: Basic256Sha256 with SignAndEncrypt only, the line's application certificate
(the one `lineside opcua cert` makes, its application URI taken from it), and a user name with its password.
The server's certificate is taken from its endpoint description unless one is pinned.

The server's objects are found by browsing ``Objects/OPENSCSObjects``: the pool manager is the object there that
has the SNRequest method asked for, the event manager the one with ``SIDCommissioningEvent`` (or the objects
of the configured browse names). One session is kept open between calls; a call that fails on the link or
times out drops it, and the next call opens a new one.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import structlog
from asyncua import ua
from asyncua.client.client import Client
from asyncua.crypto.security_policies import SecurityPolicyBasic256Sha256
from asyncua.crypto.uacrypto import CertProperties
from asyncua.ua.object_ids import ObjectIds
from asyncua.ua.status_codes import StatusCodes
from asyncua.ua.uaerrors import UaError, UaStatusCodeError
from cryptography import x509

from edge.openscs.errors import (
    OpenScsAnswerError,
    OpenScsError,
    OpenScsRefusedError,
    OpenScsSetupError,
    OpenScsUnavailableError,
)
from edge.openscs.types import (
    NAMESPACES,
    OBJECTS_FOLDER,
    ReturnStatus,
    SerialNumberState,
    SNCollection,
    key_values,
    label_collection,
    register_types,
    sn_collection,
)

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from asyncua.common.node import Node

    from edge.openscs.ops import RequestKind

__all__ = ["Endpoint", "OpenScsAnswerError", "OpenScsClient", "OpenScsError", "OpenScsRefusedError",
           "OpenScsSetupError", "OpenScsUnavailableError", "SerialsAnswer", "application_uri_of"]

_LOG = structlog.get_logger("lineside.openscs")

CONNECT_TIMEOUT_S: Final = 10.0
"""Opening a session: TCP, the secure channel's RSA handshake, the session and the login take well under a second on
a site network; this only bounds a server that accepts the connection and then never answers."""
CALL_TIMEOUT_S: Final = 30.0
"""One method call: a pool server answers a request for thousands of serials within a second or two; past this the
server is taken as hung, the session dropped, and the call retried later with the same token or report id."""
SESSION_TIMEOUT_MS: Final = 600_000
"""Session lifetime asked for: ten minutes, the most an asyncua server grants (asking more only draws a warning);
the client's watchdog keeps the session alive while it is open, and a lapsed one is opened again at the next call."""
CLOSE_TIMEOUT_S: Final = 2.0
"""Closing a session is a courtesy to the server; a link that is gone gets no longer than this."""

REQUEST_METHODS: Final = {
    "allocated": "SNRequestAllocated",
    "unallocated": "SNRequestUnallocated",
    "unassigned": "SNRequestUnassigned",
}
EVENT_PROBE: Final = "SIDCommissioningEvent"
"""The method that marks the event manager among the OPEN-SCS objects."""

_SETUP_CODES: Final = frozenset({
    StatusCodes.BadUserAccessDenied, StatusCodes.BadIdentityTokenInvalid, StatusCodes.BadIdentityTokenRejected,
    StatusCodes.BadSecurityChecksFailed, StatusCodes.BadSecurityPolicyRejected, StatusCodes.BadCertificateInvalid,
    StatusCodes.BadCertificateUntrusted, StatusCodes.BadCertificateUriInvalid, StatusCodes.BadCertificateTimeInvalid,
    StatusCodes.BadCertificateUseNotAllowed, StatusCodes.BadNotSupported, StatusCodes.BadMethodInvalid,
    StatusCodes.BadNodeIdUnknown, StatusCodes.BadArgumentsMissing, StatusCodes.BadTooManyArguments,
    StatusCodes.BadInvalidArgument, StatusCodes.BadTypeMismatch, StatusCodes.BadNotExecutable,
})
"""Status codes that retrying cannot cure: the integrator must fix credentials, trust or the server's model."""


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where the L3 pool server is and how the line logs in."""

    url: str
    certificate: bytes
    """The line's application certificate, DER (or PEM)."""
    private_key: bytes
    """Its private key, PEM, unencrypted."""
    username: str | None
    password: str | None
    server_certificate: bytes | None = None
    """The server's certificate (DER) when pinned; None takes the one its endpoint offers."""
    pool_object: str | None = None
    """Browse name of the pool manager under OPENSCSObjects; None finds it by its methods."""
    event_manager: str | None = None
    """Browse name of the event manager under OPENSCSObjects; None finds it by its methods."""


@dataclass(frozen=True, slots=True)
class SerialsAnswer:
    """What an SNRequest brought: its status, the serials, and the token of the rest (empty: nothing more)."""

    status: ReturnStatus
    serials: tuple[str, ...]
    returned_token: str
    collection_id: str


@dataclass(slots=True)
class _Session:
    client: Client
    ns: int
    objects: dict[str, tuple[Node, dict[str, Node]]]
    """Browse name of each OPEN-SCS object -> the object and its methods by name."""


class OpenScsClient:
    """The line's OPC UA client of one OPEN-SCS pool server; aclose() when done."""

    def __init__(self, endpoint: Endpoint, *, connect_timeout_s: float = CONNECT_TIMEOUT_S,
                 call_timeout_s: float = CALL_TIMEOUT_S) -> None:
        self.endpoint: Final = endpoint
        self._connect_timeout_s = connect_timeout_s
        self._call_timeout_s = call_timeout_s
        self._session: _Session | None = None
        self._lock = asyncio.Lock()
        self.application_uri = application_uri_of(endpoint.certificate)

    @property
    def connected(self) -> bool:
        """Tell whether a session is open now."""
        return self._session is not None

    async def request(self, kind: RequestKind, *, collection_id: str, count: int, sn_format: str,
                      criteria: Mapping[str, str], token: str) -> SerialsAnswer:
        """Call SNRequest<kind> for count serials; return the answer (OpenScsError when the call itself fails)."""
        method = REQUEST_METHODS[kind]
        outputs = await self._call(method, [
            ua.Variant(collection_id, ua.VariantType.String),
            ua.Variant(count, ua.VariantType.UInt32),
            ua.Variant(sn_format, ua.VariantType.String),
            ua.Variant(key_values(criteria), ua.VariantType.ExtensionObject),
            ua.Variant(token, ua.VariantType.String),
        ])
        return _serials_answer(method, count, outputs)

    async def push(self, method: str, serials: Sequence[str], *, collection_id: str, state: SerialNumberState,
                   sn_format: str, criteria: Mapping[str, str]) -> ReturnStatus:
        """Call a pool method taking an SNCollection (SNtoEncoded, SNReturnAllocated, ...); return its status."""
        outputs = await self._call(method, [
            ua.Variant(sn_collection(collection_id, state, serials), ua.VariantType.ExtensionObject),
            ua.Variant(key_values(criteria), ua.VariantType.ExtensionObject),
            ua.Variant(sn_format, ua.VariantType.String),
        ])
        return _status(outputs[0] if outputs else None)

    async def event(self, method: str, serials: Sequence[str], *, sn_format: str,
                    context: Mapping[str, str]) -> ReturnStatus:
        """Call an event manager method taking a LabelCollection (SIDCommissioningEvent, ...); return its status."""
        outputs = await self._call(method, [
            ua.Variant(label_collection(serials), ua.VariantType.ExtensionObject),
            ua.Variant(sn_format, ua.VariantType.String),
            ua.Variant(key_values(context), ua.VariantType.ExtensionObject),
        ])
        return _status(outputs[0] if outputs else None)

    async def aclose(self) -> None:
        """Close the session, if one is open."""
        async with self._lock:
            await self._drop()

    # -- the session ----------------------------------------------------------------------------------------

    async def _call(self, method: str, args: list[ua.Variant]) -> list[Any]:
        """Call method on whichever OPEN-SCS object has it; return its output values."""
        async with self._lock:
            session = await self._open()
            node, target = _find(session, method, self.endpoint)
            try:
                async with asyncio.timeout(self._call_timeout_s):
                    result = await node.call_method(target.nodeid, *args)
            except UaStatusCodeError as err:
                if err.code in _SETUP_CODES:
                    raise OpenScsSetupError(f"the L3 pool server refused {method}: {err}") from err
                await self._drop()
                raise OpenScsUnavailableError(f"{method} failed: {err}") from err
            except (OSError, TimeoutError, UaError) as err:
                await self._drop()
                raise OpenScsUnavailableError(f"{method} got no answer: {_describe(err)}") from err
            except asyncio.CancelledError:
                await self._drop()
                if _cancelling():
                    raise
                raise OpenScsUnavailableError(f"{method}: the link went during the call") from None
            except Exception as err:
                # An answer asyncua cannot decode surfaces as almost any exception; the L3 must never stop the line.
                await self._drop()
                raise OpenScsAnswerError(f"the answer to {method} cannot be read: {type(err).__name__}: {err}"
                                         ) from err
        return result if isinstance(result, list) else [result]

    async def _open(self) -> _Session:
        if self._session is not None:
            return self._session
        endpoint = self.endpoint
        client = Client(endpoint.url, timeout=self._call_timeout_s)
        client.application_uri = self.application_uri
        client.session_timeout = SESSION_TIMEOUT_MS
        if endpoint.username is not None:
            client.set_user(endpoint.username)
            client.set_password(endpoint.password or "")
        try:
            async with asyncio.timeout(self._connect_timeout_s):
                await client.set_security(
                    SecurityPolicyBasic256Sha256, CertProperties(endpoint.certificate, _format(endpoint.certificate)),
                    CertProperties(endpoint.private_key, "pem"),
                    server_certificate=None if endpoint.server_certificate is None
                    else CertProperties(endpoint.server_certificate, _format(endpoint.server_certificate)),
                    mode=ua.MessageSecurityMode.SignAndEncrypt)
                await client.connect()
                session = await _discover(client)
        except UaStatusCodeError as err:
            await _close(client)
            if err.code in _SETUP_CODES:
                raise OpenScsSetupError(f"the L3 pool server at {endpoint.url} refused the line: {err}") from err
            raise OpenScsUnavailableError(f"cannot open a session with {endpoint.url}: {err}") from err
        except (OSError, TimeoutError, UaError) as err:
            await _close(client)
            if isinstance(err, UaError) and "endpoint" in str(err).lower():
                raise OpenScsSetupError(f"{endpoint.url} offers no Basic256Sha256 SignAndEncrypt endpoint: {err}"
                                        ) from err
            raise OpenScsUnavailableError(f"cannot reach {endpoint.url}: {_describe(err)}") from err
        except asyncio.CancelledError:
            await _close(client)
            if _cancelling():
                raise
            # asyncua cancels its pending requests when the link goes mid-handshake.
            raise OpenScsUnavailableError(f"cannot open a session with {endpoint.url}: the link went") from None
        except BaseException:  # our own setup errors, anything else: nothing is left half open
            await _close(client)
            raise
        self._session = session
        _LOG.info("OPEN-SCS session open", url=endpoint.url, objects=sorted(session.objects))
        return session

    async def _drop(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await _close(session.client)


async def _discover(client: Client) -> _Session:
    """Find the OPEN-SCS namespace and the objects under OPENSCSObjects with their methods."""
    namespaces = await client.get_namespace_array()
    ns = next((namespaces.index(uri) for uri in NAMESPACES if uri in namespaces), None)
    if ns is None:
        raise OpenScsSetupError(f"the server has no OPEN-SCS namespace ({' or '.join(NAMESPACES)})")
    register_types(ns)
    folder = None
    for child in await client.nodes.objects.get_children(nodeclassmask=ua.NodeClass.Object):
        if (await child.read_browse_name()).Name == OBJECTS_FOLDER:
            folder = child
            break
    if folder is None:
        raise OpenScsSetupError(f"the server has no Objects/{OBJECTS_FOLDER} folder")
    objects: dict[str, tuple[Node, dict[str, Node]]] = {}
    for child in await folder.get_children(nodeclassmask=ua.NodeClass.Object):
        methods = {str((await m.read_browse_name()).Name): m
                   for m in await child.get_children(refs=ObjectIds.HasComponent, nodeclassmask=ua.NodeClass.Method)}
        objects[str((await child.read_browse_name()).Name)] = (child, methods)
    return _Session(client, ns, objects)


def _find(session: _Session, method: str, endpoint: Endpoint) -> tuple[Node, Node]:
    """Return the OPEN-SCS object to call method on and the method's node."""
    wanted = endpoint.event_manager if _is_event(method) else endpoint.pool_object
    for name, (node, methods) in session.objects.items():
        if (wanted is None or name == wanted) and method in methods:
            return node, methods[method]
    where = f"object {wanted}" if wanted is not None else "any object"
    raise OpenScsSetupError(f"{where} under {OBJECTS_FOLDER} has no method {method} "
                            f"(objects: {', '.join(sorted(session.objects)) or 'none'})")


def _is_event(method: str) -> bool:
    return method.endswith("Event")


async def _close(client: Client) -> None:
    """Close client's session and link, bounded; failures are the link's state, not news."""
    try:
        async with asyncio.timeout(CLOSE_TIMEOUT_S):
            await client.disconnect()
    except (OSError, TimeoutError, UaError):
        pass
    except asyncio.CancelledError:
        if _cancelling():
            raise
    finally:
        client.disconnect_socket()


def _cancelling() -> bool:
    """Tell whether the running task itself is being cancelled (not a request asyncua cancelled on a lost link)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def _serials_answer(method: str, count: int, outputs: list[Any]) -> SerialsAnswer:
    """Return an SNRequest's outputs as an answer; OpenScsAnswerError when they break OPC 30260."""
    def bad(why: str) -> OpenScsAnswerError:
        return OpenScsAnswerError(f"the L3 pool server answered {method} for {count} serials {why}; nothing of "
                                  "the answer was taken")

    if len(outputs) != len(_REQUEST_OUTPUTS):
        raise bad(f"with {len(outputs)} output(s), not the {len(_REQUEST_OUTPUTS)} of OPC 30260 "
                  f"({', '.join(_REQUEST_OUTPUTS)})")
    status = _status(outputs[0])
    collection, returned = outputs[1], outputs[2]
    if status not in (ReturnStatus.NO_ERROR, ReturnStatus.INSUFFICIENT_SERIAL_NUMBERS):
        return SerialsAnswer(status, (), "", "")  # refused: whatever else came is not looked at
    if not isinstance(collection, SNCollection):
        raise bad(f"{status.title} without an OPENSCSSNCollectionDataType (got {type(collection).__name__})")
    if not isinstance(returned, str | None):
        raise bad(f"with a ReturnedRequestToken of type {type(returned).__name__}")
    serials = tuple(str(s) for s in collection.SerialNumbers or ())
    if len(serials) > count:
        raise bad(f"with {len(serials)} serials")
    if len(set(serials)) != len(serials):
        twice = next(s for s in serials if serials.count(s) > 1)
        raise bad(f"with serial {twice!r} more than once")
    if status is ReturnStatus.NO_ERROR and len(serials) < count and not returned:
        raise bad(f"NoError with {len(serials)} serials and no ReturnedRequestToken for the rest (fewer serials "
                  "than asked are InsufficientSerialNumbers)")
    return SerialsAnswer(status, serials, returned or "", str(collection.ID or ""))


_REQUEST_OUTPUTS: Final = ("ReturnStatus", "SNCollection", "ReturnedRequestToken")
"""What every SNRequest method answers, in order (OPC 30260)."""


def _status(value: object) -> ReturnStatus:
    try:
        return ReturnStatus(int(value))  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return ReturnStatus.UNDEFINED


def _format(data: bytes) -> str:
    return "pem" if data.lstrip().startswith(b"-----") else "der"


def _describe(err: BaseException) -> str:
    return str(err) or type(err).__name__


def application_uri_of(certificate: bytes) -> str:
    """Return the application URI in a certificate's subjectAltName (what the client must call itself)."""
    try:
        cert = (x509.load_pem_x509_certificate(certificate) if _format(certificate) == "pem"
                else x509.load_der_x509_certificate(certificate))
    except ValueError as err:
        raise OpenScsSetupError(f"the line's OPC UA certificate cannot be read: {err}") from None
    try:
        uris = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
            x509.UniformResourceIdentifier)
    except x509.ExtensionNotFound:
        uris = []
    if not uris:
        raise OpenScsSetupError("the line's OPC UA certificate names no application URI (subjectAltName URI)")
    return str(uris[0])
