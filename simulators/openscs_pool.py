"""A simulated Level-3 serial pool server speaking OPEN-SCS (OPC 30260) over OPC UA, with faults on command.

Address space (OPEN-SCS namespace ``edge.openscs.types.NAMESPACE``): the OPEN-SCS data types (definitions and
node ids as `edge.openscs.types` gives them), and under ``Objects/OPENSCSObjects``:

- ``PoolManager`` (an OPENSCSPoolManagerObjectType): ``SNRequestUnassigned``, ``SNRequestUnallocated``,
  ``SNRequestAllocated``, ``SNReturnAllocated``, ``SNReturnUnallocated``, ``SNtoAllocated``, ``SNtoEncoded``,
  ``SNtoUnallocated`` and the properties ``PoolSelectionCriteria`` (one ``GTIN`` entry per pool), ``SNFormat``,
  ``MaxSNRequestable``, ``MaxSNReturnable``, ``MaxSNPushable``;
- ``EventManager`` (an OPENSCSEventManagerObjectType): ``SIDCommissioningEvent``, ``SIDDecommissioningEvent``,
  ``SIDDestroyingEvent``, ``LabelsEncodingEvent``, ``LabelsScrappingEvent``, ``LabelsSamplingEvent``.

Pools: one per GTIN (`PoolSpec`), chosen by the ``GTIN`` key of the pool selection criteria or event context;
serials are drawn at random in the GTIN's format (its characters and length), each issued once, up to the pool's
capacity. A request answers up to ``MaxSNRequestable`` serials with a ReturnedRequestToken for the rest; fewer
available than asked answers InsufficientSerialNumbers with those there are. A RequestToken seen before is answered
with the same serials again (a client retrying a lost answer); a ``ReportID`` (criteria or context) seen before is
answered NoError without applying the call again. Each serial has its OPENSCSSerialNumberStateEnum state; a call
naming a serial this pool did not issue, or in a state the call cannot move it from, is refused whole (the
UnableToAccept... status of its kind) and recorded in ``problems``.

Faults (`fault()`, each used up by the calls it applies to): `SlowAnswer` (apply, then answer late: an answer the
client gives up on), `LoseAnswer` (apply, then drop the connections unanswered), `Insufficient` (at most so many
serials left), `InvalidFormat`, `Refuse` (a status instead of applying), `BadAnswer` (a request answered against
OPC 30260); `down()` closes the listener and every connection until `up()`.

Security as a site's L3 would have it: Basic256Sha256 SignAndEncrypt only, user names and passwords (anonymous
refused), client certificates trusted all or from a list.

Standalone: ``python -m simulators.openscs_pool --port 4841 --gtin 04012345000016 --user line --password secret``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import signal
import socket
import string
import sys
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Literal, Self

import structlog
from asyncua import ua
from asyncua.common.manage_nodes import create_encoding
from asyncua.common.utils import ServiceError
from asyncua.crypto.cert_gen import dump_private_key_as_pem, generate_private_key, generate_self_signed_app_certificate
from asyncua.crypto.permission_rules import SimpleRoleRuleset, User, UserRole
from asyncua.server.binary_server_asyncio import BinaryServer
from asyncua.server.server import Server
from asyncua.ua.object_ids import ObjectIds
from asyncua.ua.status_codes import StatusCodes
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

from edge.gs1.identifiers import normalise_gtin
from edge.log import configure as configure_logging
from edge.openscs.types import (
    COLLECTION_BASE,
    EVENT_MANAGER_TYPE,
    NAMESPACE,
    OBJECTS_FOLDER,
    POOL_MANAGER_TYPE,
    RETURN_ENUM,
    SERIAL_NUMBER_STATE_ENUM,
    STRUCTURE_NAMES,
    STRUCTURES,
    KeyValue,
    LabelCollection,
    LabelData,
    ReturnStatus,
    SerialNumberState,
    SNCollection,
    as_mapping,
    node_id,
    register_types,
    sn_collection,
)
from simulators.base import LOOPBACK

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from types import TracebackType

    from asyncua.server.internal_server import InternalServer

__all__ = ["APP_URI", "BadAnswer", "Insufficient", "InvalidFormat", "LoseAnswer", "OpenScsPool", "PoolSpec", "Refuse",
           "SlowAnswer", "main"]

_LOG = structlog.get_logger("lineside.sim.openscs")

N = SerialNumberState
R = ReturnStatus

APP_URI: Final = "urn:lineside:simulator:openscs-pool"
ENDPOINT_PATH: Final = "/openscs/"
DEFAULT_COLLECTION: Final = "default"
SN_FORMAT: Final = "SN"
"""The one serial number format served: the serial alone, as AI (21) carries it."""
DEFAULT_MAX_REQUESTABLE: Final = 10_000
"""Serials one SNRequest answers at most; more come in pages (ReturnedRequestToken)."""
MAX_PUSHABLE: Final = 100_000
"""Serials one pool or event call may name."""
START_TIMEOUT_S: Final = 10.0
"""Binding a loopback port takes microseconds; this only bounds a host name whose lookup hangs."""
DIGITS_AND_UPPER: Final = string.digits + string.ascii_uppercase
GTIN_KEY: Final = "GTIN"
REPORT_KEY: Final = "ReportID"

_STRING: Final = ua.NodeId(ua.Int32(ObjectIds.String), ua.Int16(0))
_UINT32: Final = ua.NodeId(ua.Int32(ObjectIds.UInt32), ua.Int16(0))

_MOVES: Final[dict[str, tuple[dict[SerialNumberState, SerialNumberState], ReturnStatus]]] = {
    "SNtoAllocated": ({N.UNASSIGNED: N.ALLOCATED, N.UNALLOCATED: N.ALLOCATED},
                      R.UNABLE_TO_ACCEPT_SERIAL_NUMBER_EVENTS),
    "SNtoUnallocated": ({N.UNASSIGNED: N.UNALLOCATED}, R.UNABLE_TO_ACCEPT_SERIAL_NUMBER_EVENTS),
    "SNtoEncoded": ({N.ALLOCATED: N.ENCODED}, R.UNABLE_TO_ACCEPT_SERIAL_NUMBER_EVENTS),
    "SNReturnAllocated": ({N.ALLOCATED: N.UNALLOCATED}, R.UNABLE_TO_ACCEPT_SERIAL_NUMBER_EVENTS),
    "SNReturnUnallocated": ({N.UNALLOCATED: N.UNASSIGNED}, R.UNABLE_TO_ACCEPT_SERIAL_NUMBER_EVENTS),
    "LabelsEncodingEvent": ({N.ALLOCATED: N.ENCODED}, R.UNABLE_TO_ACCEPT_LABEL_EVENTS),
    "LabelsScrappingEvent": ({N.ENCODED: N.LABEL_SCRAPPED}, R.UNABLE_TO_ACCEPT_LABEL_EVENTS),
    "LabelsSamplingEvent": ({N.ENCODED: N.LABEL_SAMPLED, N.COMMISSIONED: N.SAMPLED}, R.UNABLE_TO_ACCEPT_LABEL_EVENTS),
    "SIDCommissioningEvent": ({N.ENCODED: N.COMMISSIONED}, R.UNABLE_TO_ACCEPT_SID_EVENTS),
    "SIDDecommissioningEvent": ({N.COMMISSIONED: N.INACTIVE}, R.UNABLE_TO_ACCEPT_SID_EVENTS),
    "SIDDestroyingEvent": (dict.fromkeys((N.ENCODED, N.COMMISSIONED, N.LABEL_SCRAPPED, N.LABEL_SAMPLED, N.SAMPLED,
                                          N.INACTIVE), N.DESTROYED), R.UNABLE_TO_ACCEPT_SID_EVENTS),
}
"""Per method taking serials: the state each may leave from and goes to, and the status refusing the call."""

_REQUESTS: Final = {"SNRequestUnassigned": N.UNASSIGNED, "SNRequestUnallocated": N.UNALLOCATED,
                    "SNRequestAllocated": N.ALLOCATED}
"""Per request method: the state its serials are handed out in."""
_POOL_PUSHES: Final = ("SNReturnAllocated", "SNReturnUnallocated", "SNtoUnallocated", "SNtoAllocated", "SNtoEncoded")
_EVENTS: Final = ("SIDCommissioningEvent", "SIDDecommissioningEvent", "SIDDestroyingEvent", "LabelsEncodingEvent",
                  "LabelsScrappingEvent", "LabelsSamplingEvent")


# -- faults -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SlowAnswer:
    """Apply the next count calls (of method, or any), then answer each only after seconds."""

    seconds: float
    method: str | None = None
    count: int = 1


@dataclass(frozen=True, slots=True)
class LoseAnswer:
    """Apply the next count calls (of method, or any), then drop every connection instead of answering."""

    method: str | None = None
    count: int = 1


@dataclass(frozen=True, slots=True)
class Insufficient:
    """Have at most available more serials to hand out (of any pool) until removed."""

    available: int


@dataclass(frozen=True, slots=True)
class InvalidFormat:
    """Answer the next count requests InvalidSerialNumbersFormat."""

    count: int = 1


@dataclass(frozen=True, slots=True)
class Refuse:
    """Answer the next count calls (of method, or any) with status, applying nothing."""

    status: ReturnStatus
    method: str | None = None
    count: int = 1


@dataclass(frozen=True, slots=True)
class BadAnswer:
    """Answer the next count requests against OPC 30260, the serials handed out all the same."""

    kind: Literal["missing_outputs", "foreign_serials", "too_many"]
    """missing_outputs: the ReturnStatus alone; foreign_serials: serials no GS1 code can carry; too_many: one serial
    more than asked, the first again."""
    count: int = 1


Fault = SlowAnswer | LoseAnswer | Insufficient | InvalidFormat | Refuse | BadAnswer


@dataclass(slots=True)
class _Armed:
    fault: Fault
    left: int


# -- pools ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PoolSpec:
    """One GTIN's serial pool: the serials' characters and length, and how many it can ever hand out."""

    gtin: str
    characters: str = DIGITS_AND_UPPER
    length: int = 12
    capacity: int = 1_000_000


@dataclass(slots=True)
class _Pool:
    spec: PoolSpec
    rng: random.Random
    states: dict[str, SerialNumberState] = field(default_factory=dict)
    """Every serial handed out, in order, with its state."""

    def issue(self, count: int, state: SerialNumberState) -> list[str]:
        """Draw count new random serials in the pool's format, each never issued before, in state."""
        chars, length = self.spec.characters, self.spec.length
        drawn: list[str] = []
        while len(drawn) < count:
            serial = "".join(self.rng.choice(chars) for _ in range(length))
            if serial not in self.states:
                self.states[serial] = state
                drawn.append(serial)
        return drawn

    @property
    def left(self) -> int:
        return self.spec.capacity - len(self.states)


@dataclass(slots=True)
class _Users:
    """The server's user manager: user names with their passwords; everyone else is refused."""

    passwords: Mapping[str, str]

    def get_user(self, iserver: InternalServer, username: str | None = None, password: str | None = None,
                 certificate: object = None) -> User | None:
        """Return a user (read and call) for a known name with its password; None (refused) otherwise."""
        del iserver, certificate
        if username is None or password is None or self.passwords.get(username) != password:
            _LOG.warning("OPEN-SCS login refused", user=username)
            return None
        return User(role=UserRole.User, name=username)


# -- the server -------------------------------------------------------------------------------------------------


class OpenScsPool:
    """The simulated L3 pool server; ``async with`` it, or start() and aclose()."""

    def __init__(
        self,
        pools: Sequence[PoolSpec],
        *,
        users: Mapping[str, str],
        collections: Sequence[str] = (DEFAULT_COLLECTION,),
        max_requestable: int = DEFAULT_MAX_REQUESTABLE,
        trusted_clients: Sequence[bytes] | None = None,
        seed: int | None = None,
        clock: bool = True,
    ) -> None:
        rng = random.Random(seed)  # noqa: S311 - simulated serials; the line's randomisation rules are checked elsewhere
        self._pools = {normalise_gtin(spec.gtin): _Pool(spec, random.Random(rng.random())) for spec in pools}  # noqa: S311
        self._users = _Users(dict(users))
        self.collections: Final = tuple(collections)
        self.max_requestable = max_requestable
        self.trusted_clients: set[bytes] | None = None if trusted_clients is None else set(trusted_clients)
        """Client certificates (DER) allowed to open a secure channel, read at each; None trusts any."""
        self._clock = clock
        """Keep ServerStatus.CurrentTime ticking: asyncua's task for it takes up to a second to stop (tests turn it
        off)."""
        self._faults: list[_Armed] = []
        self._answers: dict[str, tuple[ReturnStatus, SNCollection, str]] = {}
        self._server: Server | None = None
        self._host = LOOPBACK
        self._port = 0
        self._released = asyncio.Event()
        self.certificate: bytes = b""
        """The server's certificate (DER), made at start."""
        self.applied_reports: set[str] = set()
        """Report ids applied (each once)."""
        self.repeated_reports = 0
        """Calls carrying a report id applied before (answered NoError, not applied again)."""
        self.repeated_requests = 0
        """Requests carrying a token answered before (answered the same again)."""
        self.calls: Counter[str] = Counter()
        """Calls received per method (faulted ones included)."""
        self.problems: list[str] = []
        """Why calls were refused for the serials they named (unknown serial, state they cannot leave)."""

    # -- life cycle -------------------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The endpoint, like opc.tcp://127.0.0.1:4841/openscs/ (once started)."""
        return f"opc.tcp://{self._host}:{self._port}{ENDPOINT_PATH}"

    async def start(self, host: str = LOOPBACK, port: int = 0) -> str:
        """Build the address space and listen; return the endpoint URL."""
        self._host = host
        server = self._server = Server(user_manager=self._users)  # type: ignore[arg-type]
        await server.init()  # the standard address space: seconds of CPU, once
        if not self._clock:
            server.disable_clock()
        server.set_endpoint(f"opc.tcp://{host}:{port}{ENDPOINT_PATH}")
        server.set_server_name("Simulated OPEN-SCS pool server")
        await server.set_application_uri(APP_URI)
        server.set_security_policy([ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt],
                                   permission_ruleset=SimpleRoleRuleset())  # type: ignore[no-untyped-call]
        server.set_identity_tokens([ua.UserNameIdentityToken])  # anonymous stays on until this says otherwise
        der, key_pem = _certificate(host)
        self.certificate = der
        await server.load_certificate(der, format="der")
        await server.load_private_key(key_pem, format="pem")
        server.set_certificate_validator(self._validate)
        ns = await server.register_namespace(NAMESPACE)
        register_types(ns)
        await _define_types(server, ns)
        await self._build(server, ns)
        async with asyncio.timeout(START_TIMEOUT_S):
            await server.start()
        bserver = server.bserver
        self._port = port if bserver is None else bserver.port
        _LOG.info("OPEN-SCS pool server listening", url=self.url, pools=sorted(self._pools))
        return self.url

    async def aclose(self) -> None:
        """Stop serving (slow answers still waiting are released first)."""
        self._released.set()
        server, self._server = self._server, None
        if server is not None:
            await server.stop()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.aclose()

    async def down(self) -> None:
        """Stop listening and drop every connection (the server is down) until up()."""
        server = self._server
        if server is None or server.bserver is None:
            return
        await server.bserver.stop()
        server.bserver = None
        _LOG.info("OPEN-SCS pool server down")

    async def up(self) -> None:
        """Listen again on the same port after down()."""
        server = self._server
        if server is None or server.bserver is not None:
            return
        bserver = BinaryServer(server.iserver, self._host, self._port, server.limits)
        bserver.set_policies(server._policies)  # noqa: SLF001 - asyncua keeps the endpoint policies there
        async with asyncio.timeout(START_TIMEOUT_S):
            await bserver.start()
        server.bserver = bserver
        _LOG.info("OPEN-SCS pool server up again", url=self.url)

    # -- faults and inspection --------------------------------------------------------------------------------

    def fault(self, fault: Fault) -> None:
        """Arm fault; it applies to the calls it names until used up (Insufficient: until clear_faults)."""
        self._faults.append(_Armed(fault, getattr(fault, "count", 0)))

    def clear_faults(self) -> None:
        """Disarm every fault."""
        self._faults.clear()

    def state(self, gtin: str, serial: str) -> SerialNumberState | None:
        """Return the state of a serial the pool of gtin handed out; None for one it never did."""
        return self._pool(gtin).states.get(serial)

    def states(self, gtin: str) -> dict[str, SerialNumberState]:
        """Return every serial the pool of gtin handed out with its state, in the order handed out."""
        return dict(self._pool(gtin).states)

    def counts(self, gtin: str) -> dict[str, int]:
        """Return how many serials of gtin are in each state (by its OPEN-SCS name)."""
        return dict(Counter(state.title for state in self._pool(gtin).states.values()))

    def _pool(self, gtin: str) -> _Pool:
        return self._pools[normalise_gtin(gtin)]

    # -- the address space ------------------------------------------------------------------------------------

    async def _build(self, server: Server, ns: int) -> None:
        objects = server.nodes.objects
        folder = await objects.add_folder(ns, OBJECTS_FOLDER)
        base = server.nodes.base_object_type
        pool_type = await base.add_object_type(node_id(POOL_MANAGER_TYPE, ns), f"{ns}:OPENSCSPoolManagerObjectType")
        event_type = await base.add_object_type(node_id(EVENT_MANAGER_TYPE, ns),
                                                f"{ns}:OPENSCSEventManagerObjectType")
        pool = await folder.add_object(ns, "PoolManager", objecttype=pool_type.nodeid)
        criteria = [KeyValue(ua.String(GTIN_KEY), ua.String(gtin)) for gtin in self._pools]
        await pool.add_property(ns, "PoolSelectionCriteria", ua.Variant(criteria, ua.VariantType.ExtensionObject),
                                datatype=node_id(STRUCTURES[KeyValue].data_type, ns))
        await pool.add_property(ns, "SNFormat", ua.Variant([SN_FORMAT], ua.VariantType.String))
        for name, value in (("MaxSNRequestable", self.max_requestable), ("MaxSNReturnable", MAX_PUSHABLE),
                            ("MaxSNPushable", MAX_PUSHABLE)):
            await pool.add_property(ns, name, ua.Variant(value, ua.VariantType.UInt32))
        collection = node_id(STRUCTURES[SNCollection].data_type, ns)
        kv_array = node_id(STRUCTURES[KeyValue].data_type, ns)
        status = _arg("ReturnStatus", node_id(RETURN_ENUM, ns))
        for name in _REQUESTS:
            await pool.add_method(ns, name, self._request_method(name), [
                _arg("SNCollectionID", _STRING), _arg("Count", _UINT32), _arg("SNFormat", _STRING),
                _arg("PoolSelectionCriteria", kv_array, array=True), _arg("RequestToken", _STRING),
            ], [status, _arg("SNCollection", collection), _arg("ReturnedRequestToken", _STRING)])
        for name in _POOL_PUSHES:
            await pool.add_method(ns, name, self._push_method(name), [
                _arg("SNCollection", collection), _arg("PoolSelectionCriteria", kv_array, array=True),
                _arg("SNFormat", _STRING)], [status])
        events = await folder.add_object(ns, "EventManager", objecttype=event_type.nodeid)
        await events.add_property(ns, "MaxEvents", ua.Variant(MAX_PUSHABLE, ua.VariantType.UInt32))
        labels = node_id(STRUCTURES[LabelCollection].data_type, ns)
        for name in _EVENTS:
            await events.add_method(ns, name, self._event_method(name), [
                _arg("LabelCollection", labels), _arg("SNFormat", _STRING),
                _arg("OPENSCSEventContext", kv_array, array=True)], [status])

    # -- the methods ------------------------------------------------------------------------------------------

    def _request_method(self, method: str) -> Any:  # noqa: ANN401 - asyncua's callback type is untyped
        async def call(parent: ua.NodeId, *args: ua.Variant) -> list[ua.Variant]:
            del parent
            self.calls[method] += 1
            values = [arg.Value for arg in args]
            if len(values) != 5:
                return _answer(R.UNDEFINED, None, "")
            collection_id, count, sn_format, criteria, token = values
            status, collection, returned = self._serve_request(
                method, str(collection_id or ""), int(count or 0), sn_format=str(sn_format or ""),
                criteria=as_mapping(criteria or []), token=str(token or ""))
            await self._maybe_slow(method)
            self._maybe_lose(method)
            bad = self._take(BadAnswer, method)
            if isinstance(bad, BadAnswer):
                _LOG.info("OPEN-SCS answer broken on purpose", method=method, kind=bad.kind)
                return _broken(bad, status, collection, returned)
            return _answer(status, collection, returned)

        return call

    def _serve_request(self, method: str, collection_id: str, count: int, *, sn_format: str,
                       criteria: Mapping[str, str], token: str) -> tuple[ReturnStatus, SNCollection | None, str]:
        refused = self._refusal(method) or self._invalid_format()
        if refused is not None:
            return refused, None, ""
        if token and token in self._answers:
            self.repeated_requests += 1
            return self._answers[token]
        if collection_id and collection_id not in self.collections:
            return R.INVALID_SERIAL_NUMBER_COLLECTION, None, ""
        if sn_format != SN_FORMAT:
            return R.INVALID_SERIAL_NUMBERS_FORMAT, None, ""
        pool = self._pools.get(_gtin_of(criteria))
        if pool is None:
            return R.INVALID_SELECTION_CRITERIA, None, ""
        page = min(count, self.max_requestable)
        give = min(page, pool.left, self._insufficient())
        state = _REQUESTS[method]
        serials = pool.issue(give, state)
        self._use_insufficient(give)
        status = R.NO_ERROR if give == page else R.INSUFFICIENT_SERIAL_NUMBERS
        returned = f"{token or uuid.uuid4().hex}/next" if give == page < count else ""
        answer = (status, sn_collection(collection_id or DEFAULT_COLLECTION, state, serials), returned)
        if token:
            self._answers[token] = answer
        _LOG.info("OPEN-SCS serials handed out", method=method, gtin=pool.spec.gtin, asked=count, given=give,
                  token=token, status=status.title)
        return answer

    def _push_method(self, method: str) -> Any:  # noqa: ANN401 - asyncua's callback type is untyped
        async def call(parent: ua.NodeId, *args: ua.Variant) -> list[ua.Variant]:
            del parent
            self.calls[method] += 1
            values = [arg.Value for arg in args]
            if len(values) != 3 or not isinstance(values[0], SNCollection):
                return [_status(R.UNDEFINED)]
            collection, criteria, sn_format = values
            if collection.ID and collection.ID not in self.collections:
                status = R.INVALID_SERIAL_NUMBER_COLLECTION
            else:
                status = self._apply(method, [str(s) for s in collection.SerialNumbers], str(sn_format or ""),
                                     as_mapping(criteria or []))
            await self._maybe_slow(method)
            self._maybe_lose(method)
            return [_status(status)]

        return call

    def _event_method(self, method: str) -> Any:  # noqa: ANN401 - asyncua's callback type is untyped
        async def call(parent: ua.NodeId, *args: ua.Variant) -> list[ua.Variant]:
            del parent
            self.calls[method] += 1
            values = [arg.Value for arg in args]
            if len(values) != 3 or not isinstance(values[0], LabelCollection):
                return [_status(R.UNDEFINED)]
            labels, sn_format, context = values
            serials = [str(label.ID) for label in labels.LabelCollection if isinstance(label, LabelData)]
            status = self._apply(method, serials, str(sn_format or ""), as_mapping(context or []))
            await self._maybe_slow(method)
            self._maybe_lose(method)
            return [_status(status)]

        return call

    def _apply(self, method: str, serials: list[str], sn_format: str, context: Mapping[str, str]) -> ReturnStatus:
        """Move serials as method does, all or none; return the status to answer."""
        refused = self._refusal(method)
        if refused is not None:
            return refused
        report = context.get(REPORT_KEY, "")
        if report and report in self.applied_reports:
            self.repeated_reports += 1
            return R.NO_ERROR
        if sn_format != SN_FORMAT:
            return R.INVALID_SERIAL_NUMBERS_FORMAT
        pool = self._pools.get(_gtin_of(context))
        if pool is None:
            return R.INVALID_SELECTION_CRITERIA
        moves, refusal = _MOVES[method]
        bad = [(s, pool.states.get(s)) for s in serials if pool.states.get(s) not in moves]
        if bad:
            shown = ", ".join(f"{s} ({'never issued' if st is None else st.title})" for s, st in bad[:5])
            self.problems.append(f"{method} refused: {len(bad)} of {len(serials)} serials cannot move: {shown}")
            _LOG.warning("OPEN-SCS call refused", method=method, problem=self.problems[-1])
            return refusal
        for serial in serials:
            pool.states[serial] = moves[pool.states[serial]]
        if report:
            self.applied_reports.add(report)
        _LOG.info("OPEN-SCS call applied", method=method, gtin=pool.spec.gtin, serials=len(serials), report=report)
        return R.NO_ERROR

    # -- fault bookkeeping ------------------------------------------------------------------------------------

    def _take(self, kind: type[Fault], method: str) -> Fault | None:
        for armed in self._faults:
            fault = armed.fault
            if isinstance(fault, kind) and getattr(fault, "method", None) in (None, method) and armed.left > 0:
                armed.left -= 1
                if armed.left == 0:
                    self._faults.remove(armed)
                return fault
        return None

    def _refusal(self, method: str) -> ReturnStatus | None:
        fault = self._take(Refuse, method)
        return fault.status if isinstance(fault, Refuse) else None

    def _invalid_format(self) -> ReturnStatus | None:
        return R.INVALID_SERIAL_NUMBERS_FORMAT if self._take(InvalidFormat, "") is not None else None

    def _insufficient(self) -> int:
        limits = [a.fault.available for a in self._faults if isinstance(a.fault, Insufficient)]
        return min(limits, default=sys.maxsize)

    def _use_insufficient(self, given: int) -> None:
        for armed in self._faults:
            if isinstance(armed.fault, Insufficient):
                armed.fault = Insufficient(max(0, armed.fault.available - given))

    def _maybe_lose(self, method: str) -> None:
        fault = self._take(LoseAnswer, method)
        server = self._server
        if isinstance(fault, LoseAnswer) and server is not None:
            # Closed before the answer is written: asyncua's write to a closed transport is dropped silently.
            _LOG.info("OPEN-SCS answer lost on purpose: every connection dropped", method=method)
            for transport in list(server.iserver.asyncio_transports):
                transport.close()

    async def _maybe_slow(self, method: str) -> None:
        fault = self._take(SlowAnswer, method)
        if isinstance(fault, SlowAnswer):
            _LOG.info("OPEN-SCS answer held back", method=method, seconds=fault.seconds)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(fault.seconds):
                    await self._released.wait()

    async def _validate(self, certificate: x509.Certificate, app: ua.ApplicationDescription) -> None:
        del app
        trusted = self.trusted_clients
        if trusted is not None and certificate.public_bytes(serialization.Encoding.DER) not in trusted:
            _LOG.warning("OPEN-SCS client certificate not trusted", subject=certificate.subject.rfc4514_string())
            raise ServiceError(StatusCodes.BadCertificateUntrusted)


def _gtin_of(pairs: Mapping[str, str]) -> str:
    try:
        return normalise_gtin(pairs.get(GTIN_KEY, ""))
    except ValueError:
        return ""


def _arg(name: str, data_type: ua.NodeId, *, array: bool = False) -> ua.Argument:
    return ua.Argument(Name=name, DataType=data_type, ValueRank=1 if array else -1,
                       ArrayDimensions=[0] if array else [])


def _status(status: ReturnStatus) -> ua.Variant:
    return ua.Variant(int(status), ua.VariantType.Int32)


def _answer(status: ReturnStatus, collection: SNCollection | None, returned: str) -> list[ua.Variant]:
    return [_status(status), ua.Variant(collection or SNCollection(), ua.VariantType.ExtensionObject),
            ua.Variant(returned, ua.VariantType.String)]


def _broken(bad: BadAnswer, status: ReturnStatus, collection: SNCollection | None,
            returned: str) -> list[ua.Variant]:
    """Return an SNRequest answer broken as bad says."""
    if bad.kind == "missing_outputs":
        return [_status(status)]
    collection = collection or SNCollection()
    serials = list(collection.SerialNumbers)
    if bad.kind == "foreign_serials":
        serials = [ua.String(f"not a serial {n}") for n in range(len(serials))]
    else:
        serials = [*serials, *serials[:1]]
    return _answer(status, SNCollection(collection.ID, collection.Description, collection.State,
                                        collection.AssociatedPoolID, serials), returned)


def _certificate(host: str) -> tuple[bytes, bytes]:
    """Make the server's self-signed certificate (DER) and key (PEM) for APP_URI and host."""
    key = generate_private_key()
    # The machine's own name too: asyncua warns about a certificate without it, whatever address is served.
    names: list[x509.GeneralName] = [x509.UniformResourceIdentifier(APP_URI), x509.DNSName("localhost"),
                                     x509.DNSName(socket.gethostname())]
    with contextlib.suppress(ValueError):
        import ipaddress  # noqa: PLC0415 - only to tell an address from a name

        names.append(x509.IPAddress(ipaddress.ip_address(host)))
    cert = generate_self_signed_app_certificate(key, "Simulated OPEN-SCS pool server", {}, names,
                                                [ExtendedKeyUsageOID.SERVER_AUTH], days=30)
    return cert.public_bytes(serialization.Encoding.DER), dump_private_key_as_pem(key)


async def _define_types(server: Server, ns: int) -> None:
    """Add the OPEN-SCS enumerations and structures with their definitions, at their published node ids."""
    enum_type = server.nodes.enum_data_type
    for identifier, name, enum in ((RETURN_ENUM, "OPENSCSReturnEnum", ReturnStatus),
                                   (SERIAL_NUMBER_STATE_ENUM, "OPENSCSSerialNumberStateEnum", SerialNumberState)):
        node = await enum_type.add_data_type(node_id(identifier, ns), f"{ns}:{name}")
        values = ua.EnumDefinition()
        values.Fields = [ua.EnumField(Value=int(member), DisplayName=ua.LocalizedText(member.title),
                                      Name=member.title) for member in enum]
        await node.write_data_type_definition(values)
    structure = server.nodes.base_structure_type
    base = await structure.add_data_type(node_id(COLLECTION_BASE, ns), f"{ns}:OPENSCSCollectionDataType")
    fields = _fields(ns)
    for cls, ids in STRUCTURES.items():
        parent = base if cls is SNCollection else structure
        node = await parent.add_data_type(node_id(ids.data_type, ns), f"{ns}:{STRUCTURE_NAMES[cls]}")
        encoding = await create_encoding(node, node_id(ids.encoding, ns), ua.QualifiedName("Default Binary", 0))
        definition = ua.StructureDefinition()
        definition.BaseDataType = base.nodeid if cls is SNCollection else structure.nodeid
        definition.DefaultEncodingId = encoding.nodeid
        definition.Fields = fields[cls]
        optional = any(f.IsOptional for f in definition.Fields)
        definition.StructureType = (ua.StructureType.StructureWithOptionalFields if optional
                                    else ua.StructureType.Structure)
        await node.write_data_type_definition(definition)


def _fields(ns: int) -> dict[type, list[ua.StructureField]]:
    kv, label = node_id(STRUCTURES[KeyValue].data_type, ns), node_id(STRUCTURES[LabelData].data_type, ns)

    def one(name: str, data_type: ua.NodeId, *, array: bool = False, optional: bool = False) -> ua.StructureField:
        return ua.StructureField(Name=name, DataType=data_type, ValueRank=1 if array else -1,
                                 ArrayDimensions=[0] if array else None, IsOptional=optional)  # type: ignore[arg-type]

    return {
        KeyValue: [one("Key", _STRING), one("Value", _STRING)],
        SNCollection: [one("ID", _STRING), one("Description", _STRING),
                       one("State", node_id(SERIAL_NUMBER_STATE_ENUM, ns)), one("AssociatedPoolID", _STRING),
                       one("SerialNumbers", _STRING, array=True)],
        LabelData: [one("ID", _STRING), one("LabelProperties", kv, array=True)],
        LabelCollection: [one("LabelCollection", label, array=True),
                          one("LabelCollectionProperties", kv, array=True, optional=True)],
    }


# -- standalone -------------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Run the simulated pool server until interrupted; print its endpoint first."""
    parser = argparse.ArgumentParser(prog="python -m simulators.openscs_pool", description=__doc__.split("\n")[0])
    parser.add_argument("--host", default=LOOPBACK)
    parser.add_argument("--port", type=int, default=4841)
    parser.add_argument("--gtin", action="append", required=True, help="a GTIN to serve serials for (repeatable)")
    parser.add_argument("--characters", default=DIGITS_AND_UPPER, help="the serials' characters (default 0-9A-Z)")
    parser.add_argument("--length", type=int, default=12, help="the serials' length (default 12)")
    parser.add_argument("--capacity", type=int, default=1_000_000, help="serials each pool hands out at most")
    parser.add_argument("--user", default="line", help="user name clients log in with")
    parser.add_argument("--password", required=True, help="its password")
    parser.add_argument("--collection", action="append", help="serial number collection ids (default: default)")
    parser.add_argument("--seed", type=int, help="seed of the random serials")
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args(argv)
    configure_logging(level=args.log_level)
    try:
        pools = [PoolSpec(normalise_gtin(gtin), args.characters, args.length, args.capacity) for gtin in args.gtin]
    except ValueError as err:
        parser.error(str(err))

    async def run() -> None:
        pool = OpenScsPool(pools, users={args.user: args.password}, collections=args.collection or
                           (DEFAULT_COLLECTION,), seed=args.seed)
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        url = await pool.start(args.host, args.port)
        sys.stdout.write(f"OPEN-SCS pool server at {url}\n")
        sys.stdout.flush()
        try:
            await stop.wait()
        finally:
            await pool.aclose()

    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C is how a person stops it
        asyncio.run(run())
    return 0


if __name__ == "__main__":
    sys.exit(main())
