"""The OPC UA server: the line as a PackML object following OPC 30050 "OPC UA for PackML", secure by default.

The address space imports the OPC Foundation's PackML NodeSet (OPC 30050 v1.01,
``Opc.Ua.PackML.NodeSet2.xml``, shipped beside this module with its licence header intact: it is published by
the OPC Foundation under the MIT licence) and instantiates ``PackMLBaseObjectType`` as
``Objects/PackMLObjects/<line id>``. Importing rather than building the browse names by hand means type-aware
clients see the real types (the state machines with their states, StateNumbers and transitions) and the model
is the Foundation's, not a copy kept in step by hand; it costs about half a second once at start. asyncua
instantiates only the mandatory parts of a component's type, so the optional ones the line serves (the command
methods, Admin's counters and alarms) are instantiated here from their declarations in the types, keeping
their browse names, data types and arguments.

What a client finds under the line object (PackML namespace unless said otherwise):

- ``BaseStateMachine/CurrentState`` (Aborting, Aborted or Cleared), ``.../MachineState/CurrentState``
  (Stopped, Stopping, Clearing or Running) and ``.../MachineState/ExecuteState/CurrentState`` (Idle, Execute,
  Held, ...): each a LocalizedText with its ``Id`` (the state object in the type) and ``Number`` (the PackTags
  StateNumber the NodeSet gives the state); a sub-machine that is not active reads Bad_StateNotActive.
  ``StateCurrent`` (line namespace) is the PackTags StateCurrent of the innermost state, for a flat view.
- Command methods, as OPC 30050 places them: ``Abort``, ``Clear`` on BaseStateMachine; ``Stop``, ``Reset`` on
  MachineState; ``Start``, ``Hold``, ``Unhold``, ``Suspend``, ``Unsuspend``, ``Reset``, ``ToComplete`` on
  ExecuteState; ``SetUnitMode`` on the line object. They act as the session's user through
  `LineControl.command` and the one permission table: Bad_UserAccessDenied for a role without the permission,
  Bad_InvalidState for a command PackML does not allow now. A call returns when the command's acting state has
  ended, or after CALL_WAIT_S with Good while it goes on (Start waits for printers and the PLC); the states
  show the rest. ``AcknowledgeAlarm(AlarmId)`` (line namespace) acknowledges an alarm.
- ``Status/UnitModeCurrent``, ``Status/CurMachSpeed`` (packs per minute over the last minute),
  ``Admin/ProdProcessedCount`` (packs produced), ``Admin/ProdDefectiveCount`` (one entry per reject reason),
  ``Admin/Alarm`` (the alarms kept until Reset or Clear; Trigger true while unacknowledged) and
  ``Admin/AlarmExtent``; ``Batch/WorkOrder``, ``Batch/Lot``, ``Batch/State``, ``Batch/Id`` (line namespace).

Values follow `LineControl.subscribe()` in this server's own task; callbacks never touch a device.

Security: one endpoint, Basic256Sha256 with SignAndEncrypt; user name and password only (anonymous is off);
users log in through the line's `Accounts` (audited, lockout) as `edge.opcua.identity` explains; every user
has asyncua's User role (read and call; nobody changes the address space remotely). The server certificate
comes from `lineside opcua cert` (`edge.opcua.certs`); client certificates must be trusted (see there) unless
``opcua.trust_any_client`` says otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import gc
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, cast

import structlog
from asyncua import ua
from asyncua.common.instantiate_util import instantiate
from asyncua.common.utils import ServiceError
from asyncua.crypto.permission_rules import SimpleRoleRuleset
from asyncua.crypto.validator import CertificateValidator, CertificateValidatorOptions
from asyncua.ua.object_ids import ObjectIds
from asyncua.ua.status_codes import StatusCodes
from asyncua.ua.uaerrors import UaStatusCodeError
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from edge import __version__
from edge.control.line import LineControlError, UnknownAlarmError
from edge.control.packml import Command, IllegalCommandError, State, UnitMode
from edge.control.permissions import NotAllowedError
from edge.errors import EdgeError
from edge.line.verdict import RejectReason
from edge.opcua.certs import RENEW_WARNING_DAYS, fingerprint, load_certificate, safe_name
from edge.opcua.identity import AccountsGate, GatedServer, caller
from edge.supervisor import Sleep, default_backoff

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, Awaitable, Callable

    from asyncua.common.node import Node

    from edge.backoff import Backoff
    from edge.config.models import OpcUaConfig
    from edge.control.accounts import Accounts
    from edge.control.line import LineControl
    from edge.control.permissions import Actor
    from edge.opcua.certs import OpcUaPaths, ServerCertificate

_LOG = structlog.get_logger("lineside.opcua")

NODESET: Final = Path(__file__).with_name("Opc.Ua.PackML.NodeSet2.xml")
PACKML_NS: Final = "http://opcfoundation.org/UA/PackML/"
PACKML_VERSION: Final = "TR88.00.02-2015"
ENDPOINT_PATH: Final = "/lineside/"

CALL_WAIT_S: Final = 2.0
"""Longest a command method waits for the command's acting state to end before answering Good while it goes
on: Hold, Stop, Abort, Reset end in milliseconds; Start and Unhold wait for printers and the PLC (up to
control.start_timeout_s). Well within client request timeouts (asyncua 4 s, most SCADA 10 s or more)."""
BIND_TIMEOUT_S: Final = 10.0
"""Binding takes microseconds; this only bounds a host name whose lookup hangs."""
BIND_RETRY_INITIAL_S: Final = 1.0
BIND_RETRY_MAX_S: Final = 30.0
MAX_REJECTED: Final = 100
"""Refused client certificates kept for the integrator; more are only logged, so a client trying many
certificates cannot fill the disk."""
MAX_COUNT: Final = 2**31 - 1
"""PackMLCountDataType counts are Int32."""

# Node ids in the OPC 30050 NodeSet's namespace (published, stable across its versions).
_PACKML_OBJECTS = 72
_BASE_OBJECT_TYPE = 6
_ADMIN_TYPE = 5
_BASE_MACHINE_TYPE = 3
_MACHINE_TYPE = 2
_EXECUTE_TYPE = 1

_STATE_TYPES = frozenset({ObjectIds.StateType, ObjectIds.InitialStateType})
_EPOCH = dt.datetime(1601, 1, 1, tzinfo=dt.UTC)
"""OPC UA's null DateTime: an alarm not acknowledged yet."""

S, C = State, Command
_BASE_STATES: Final = {S.ABORTING: "Aborting", S.ABORTED: "Aborted"}
_MACHINE_STATES: Final = {S.CLEARING: "Clearing", S.STOPPED: "Stopped", S.STOPPING: "Stopping"}

_METHODS: Final = {
    _BASE_MACHINE_TYPE: {"Abort": C.ABORT, "Clear": C.CLEAR},
    _MACHINE_TYPE: {"Stop": C.STOP, "Reset": C.RESET},
    _EXECUTE_TYPE: {"Start": C.START, "Hold": C.HOLD, "Unhold": C.UNHOLD, "Suspend": C.SUSPEND,
                    "Unsuspend": C.UNSUSPEND, "Reset": C.RESET, "ToComplete": C.COMPLETE},
}
"""The command methods each state machine type declares, and the command each one gives."""

_UNSUPPORTED: Final = ("SetMachSpeed", "SetParameter", "SetProduct", "RemoteCommand", "SetInterlock")
"""Methods of PackMLBaseObjectType the line does not take (its speed is the belt's); they answer BadNotSupported."""

_ADMIN_VARIABLES: Final = ("ProdProcessedCount", "ProdDefectiveCount", "Alarm", "AlarmExtent")


def state_levels(state: State) -> tuple[str | None, str | None, str | None]:
    """Return the OPC 30050 state names of state at the base, machine and execute level (None: not active)."""
    if state is S.UNDEFINED:
        return None, None, None
    if state in _BASE_STATES:
        return _BASE_STATES[state], None, None
    if state in _MACHINE_STATES:
        return "Cleared", _MACHINE_STATES[state], None
    return "Cleared", "Running", state.title


class _Level:
    """One of the three state machines of the PackML object: its CurrentState and the states of its type."""

    def __init__(self, current: Node, state_id: Node, number: Node, states: dict[str, tuple[ua.NodeId, int]]
                 ) -> None:
        self.current = current
        self.state_id = state_id
        self.number = number
        self.states = states
        """State name -> (the state object's node id in the type, its StateNumber)."""


class OpcUaServer:
    """The line's PackML object over OPC UA, served for as long as run() runs (a task of the daemon's TaskGroup)."""

    def __init__(
        self,
        config: OpcUaConfig,
        *,
        line_id: str,
        paths: OpcUaPaths,
        sleep: Sleep = asyncio.sleep,
        backoff: Backoff | None = None,
        call_wait_s: float = CALL_WAIT_S,
    ) -> None:
        """Check the server certificate now: CertificateError (naming the command that makes it) without it.

        Made before the daemon starts anything, so a missing certificate stops it at once with that message.
        """
        self.config: Final = config
        self.line_id: Final = line_id
        self.paths: Final = paths
        self.certificate: ServerCertificate = load_certificate(paths, line_id)
        self._control: LineControl | None = None
        self._accounts: Accounts | None = None
        self._sleep = sleep
        self._backoff = backoff or default_backoff(BIND_RETRY_INITIAL_S, BIND_RETRY_MAX_S)
        self._call_wait_s = call_wait_s
        self._tasks: asyncio.TaskGroup | None = None
        self._server: GatedServer | None = None
        self._ns = 0
        self._packml_ns = 0
        self._levels: list[_Level] = []
        self._nodes: dict[str, Node] = {}
        self._written: dict[str, Any] = {}
        self.port: int | None = None
        """The port listened on while serving; None before and after."""
        self.listening = asyncio.Event()
        """Set while the server listens."""

    @property
    def endpoint(self) -> str | None:
        """The endpoint URL while the server listens, like opc.tcp://127.0.0.1:4840/lineside/."""
        if self.port is None:
            return None
        host = f"[{self.config.host}]" if ":" in self.config.host else self.config.host
        return f"opc.tcp://{host}:{self.port}{ENDPOINT_PATH}"

    async def run(self, control: LineControl, accounts: Accounts) -> None:
        """Serve control's line to users of accounts: build, listen (retrying), follow the line, until cancelled."""
        self._control, self._accounts = control, accounts
        server = await self._build_aside(accounts)
        async with asyncio.TaskGroup() as tasks:
            self._tasks = tasks
            started = False
            try:
                await self._show(control.status())  # no client ever reads the address space's empty values
                started = await self._listen(server)
                await self._follow(control)
            finally:
                self.port = None
                self.listening.clear()
                if started:
                    await server.stop()

    # -- the address space --------------------------------------------------------------------------

    async def _build_aside(self, accounts: Accounts) -> GatedServer:
        """Build the server without stalling the line's event loop; return it ready to start on this loop."""
        # asyncua spends seconds of CPU on the address space (the standard nodes, the NodeSet's import, the
        # instantiation), most of it without yielding: it is built on an event loop of its own in a worker thread.
        # Nothing built is bound to that loop (asyncua makes its tasks, queues and sockets in start()), so the
        # server is started and served on this one. The build makes about half a million objects that live as
        # long as the process: the cyclic collector, walking them all at each full collection, would stop the
        # line's loop for a quarter of a second each time (measured here), so it is off while they are made and
        # they are then frozen out of its reach (gc.freeze, the way long-lived startup objects are meant to be).
        collecting = gc.isenabled()
        gc.disable()
        try:
            server = await asyncio.to_thread(asyncio.run, self._build(accounts))
            gc.freeze()  # before the collector is back, or its first full collection walks them all once
        finally:
            if collecting:
                gc.enable()
        return server

    async def _build(self, accounts: Accounts) -> GatedServer:
        """Return the server with its endpoint, security and the line's PackML object, not yet listening."""
        cfg, cert = self.config, self.certificate
        server = self._server = GatedServer(AccountsGate(accounts))
        await server.init()  # loads the standard address space in a worker thread (seconds)
        server.set_endpoint(f"opc.tcp://{cfg.host}:{cfg.port}{ENDPOINT_PATH}")
        server.set_server_name(f"Lineside {self.line_id}")
        # Namespace 1 becomes the application URI, which must equal the certificate's.
        await server.set_application_uri(cert.uri)
        await server.set_build_info("urn:lineside", "Lineside", "Lineside line controller", __version__, "0",
                                    dt.datetime.now(dt.UTC))
        server.set_security_policy([ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt],
                                   permission_ruleset=SimpleRoleRuleset())  # type: ignore[no-untyped-call]
        server.set_identity_tokens([ua.UserNameIdentityToken])  # anonymous stays on until this says otherwise
        await server.load_certificate(cert.der, format="der")
        await server.load_private_key(cert.key_pem, format="pem")
        server.iserver.max_connections = cfg.max_sessions
        validator = CertificateValidator(CertificateValidatorOptions.TIME_RANGE | CertificateValidatorOptions.URI)
        server.set_certificate_validator(validator if cfg.trust_any_client else self._validator(validator))
        if not cfg.trust_any_client:
            await asyncio.to_thread(self._make_trust_dirs)
        self._ns = await server.register_namespace(cert.uri)
        await server.import_xml(str(NODESET))
        self._packml_ns = await server.get_namespace_index(PACKML_NS)
        await self._add_line(server)
        return server

    async def _add_line(self, server: GatedServer) -> None:
        ns, pml = self._ns, self._packml_ns
        folder = server.get_node(_nid(_PACKML_OBJECTS, pml))
        line = await folder.add_object(_nid(self.line_id, ns), ua.QualifiedName(self.line_id, ns),
                                       objecttype=_nid(_BASE_OBJECT_TYPE, pml))
        await (await line.get_child(f"{pml}:TagID")).write_value(self.line_id)
        await (await line.get_child(f"{pml}:PackMLVersion")).write_value(PACKML_VERSION)
        status = await line.get_child(f"{pml}:Status")
        admin = await line.get_child(f"{pml}:Admin")
        base = await line.get_child(f"{pml}:BaseStateMachine")
        machine = await base.get_child(f"{pml}:MachineState")
        execute = await machine.get_child(f"{pml}:ExecuteState")
        nodes = self._nodes
        nodes["mode"] = await status.get_child(f"{pml}:UnitModeCurrent")
        nodes["speed"] = await status.get_child(f"{pml}:CurMachSpeed")
        for name in _ADMIN_VARIABLES:
            nodes[name] = await self._optional(server, admin, _ADMIN_TYPE, name)
        nodes["StateCurrent"] = await line.add_variable(ns, "StateCurrent", 0, ua.VariantType.Int32)
        batch = await line.add_object(ns, "Batch")
        nodes["batch.id"] = await batch.add_variable(ns, "Id", 0, ua.VariantType.Int64)
        nodes["batch.work_order"] = await batch.add_variable(ns, "WorkOrder", "", ua.VariantType.String)
        nodes["batch.lot"] = await batch.add_variable(ns, "Lot", "", ua.VariantType.String)
        nodes["batch.state"] = await batch.add_variable(ns, "State", "", ua.VariantType.String)
        for sm, type_id in ((base, _BASE_MACHINE_TYPE), (machine, _MACHINE_TYPE), (execute, _EXECUTE_TYPE)):
            self._levels.append(await self._level(server, sm, type_id))
            for name, command in _METHODS[type_id].items():
                method = await self._optional(server, sm, type_id, name)
                server.link_method(method, self._command_method(command))
        server.link_method(await line.get_child(f"{pml}:SetUnitMode"), self._set_unit_mode)
        for name in _UNSUPPORTED:
            with contextlib.suppress(UaStatusCodeError):  # an optional method asyncua did not instantiate
                server.link_method(await line.get_child(f"{pml}:{name}"), _not_supported)
        await line.add_method(ns, "AcknowledgeAlarm", self._acknowledge,
                              [ua.Argument(Name="AlarmId", DataType=_nid(ObjectIds.UInt32, 0), ValueRank=-1,
                                           Description=ua.LocalizedText("the alarm's id, as in Admin/Alarm"))], [])

    async def _optional(self, server: GatedServer, parent: Node, type_id: int, name: str) -> Node:
        """Instantiate the optional child name of the type type_id under parent (asyncua skips those)."""
        declaration = await server.get_node(_nid(type_id, self._packml_ns)).get_child(f"{self._packml_ns}:{name}")
        nodes: list[Node] = await instantiate(parent, declaration, idx=self._ns)
        return nodes[0]

    async def _level(self, server: GatedServer, machine: Node, type_id: int) -> _Level:
        """Return a state machine's CurrentState nodes (with a Number property) and the states of its type."""
        current = await machine.get_child("0:CurrentState")
        state_id = await current.get_child("0:Id")
        number = await current.add_property(ua.NodeId(NamespaceIndex=ua.Int16(self._ns)), ua.QualifiedName("Number", 0),
                                            0, ua.VariantType.UInt32)
        states: dict[str, tuple[ua.NodeId, int]] = {}
        for child in await server.get_node(_nid(type_id, self._packml_ns)).get_children(
                refs=ObjectIds.HasComponent, nodeclassmask=ua.NodeClass.Object):
            definition = await child.read_type_definition()
            if definition is None or definition.Identifier not in _STATE_TYPES:
                continue
            name = (await child.read_browse_name()).Name
            states[name] = (child.nodeid, int(await (await child.get_child("0:StateNumber")).read_value()))
        state_nodes = [node_id for node_id, _ in states.values()]
        await (await machine.get_child("0:AvailableStates")).write_value(ua.Variant(state_nodes, ua.VariantType.NodeId))
        return _Level(current, state_id, number, states)

    # -- following the line --------------------------------------------------------------------------

    async def _follow(self, control: LineControl) -> None:
        updates = cast("AsyncGenerator[dict[str, Any], None]", control.subscribe())
        async with contextlib.aclosing(updates):
            async for status in updates:
                await self._show(status)

    async def _show(self, status: dict[str, Any]) -> None:
        """Write what changed in the line's status to the address space."""
        state = State(status["state_number"])
        entered = dt.datetime.fromisoformat(status["state_entered_at"])
        for level, name in zip(self._levels, state_levels(state), strict=True):
            await self._show_state(level, name, entered)
        counters = status["counters"]
        rejected: dict[str, int] = counters["rejected"]
        known = [r.value for r in RejectReason]  # every reason from the start, so an entry's index never moves
        reasons = [*known, *(r for r in rejected if r not in known)]
        count = _struct("PackMLCountDataType")
        processed = [count(ID=0, Name="packs", Count=_int32(counters["produced"]),
                           AccCount=_int32(counters["produced"]))]
        defective = [count(ID=i, Name=reason, Count=_int32(rejected.get(reason, 0)),
                           AccCount=_int32(rejected.get(reason, 0))) for i, reason in enumerate(reasons, 1)]
        alarm = _struct("PackMLAlarmDataType")
        alarms = [alarm(ID=a["id"], Value=0, Message=f"{a['kind']}: {a['text']}", Category=0,
                        DateTime=dt.datetime.fromisoformat(a["at"]),
                        AckDateTime=_EPOCH if a["acknowledged_at"] is None
                        else dt.datetime.fromisoformat(a["acknowledged_at"]),
                        Trigger=a["acknowledged_by"] is None) for a in status["alarms"]]
        batch = status["batch"] or {}
        await self._write("StateCurrent", ua.Variant(int(state), ua.VariantType.Int32), entered)
        await self._write("mode", ua.Variant(int(status["mode_number"]), ua.VariantType.Int32))
        await self._write("speed", ua.Variant(float(counters["rate_per_minute"]), ua.VariantType.Float))
        await self._write("ProdProcessedCount", ua.Variant(processed, ua.VariantType.ExtensionObject))
        await self._write("ProdDefectiveCount", ua.Variant(defective, ua.VariantType.ExtensionObject))
        await self._write("Alarm", ua.Variant(alarms, ua.VariantType.ExtensionObject))
        await self._write("AlarmExtent", ua.Variant(len(alarms), ua.VariantType.Int32))
        await self._write("batch.id", ua.Variant(int(batch.get("id", 0)), ua.VariantType.Int64))
        await self._write("batch.work_order", ua.Variant(str(batch.get("work_order", "")), ua.VariantType.String))
        await self._write("batch.lot", ua.Variant(str(batch.get("lot", "")), ua.VariantType.String))
        await self._write("batch.state", ua.Variant(str(batch.get("state", "")), ua.VariantType.String))

    async def _show_state(self, level: _Level, name: str | None, entered: dt.datetime) -> None:
        server = self._server
        if server is None:
            return
        key = f"level:{level.current.nodeid.to_string()}"
        if key in self._written and self._written[key] == name:
            return
        self._written[key] = name
        if name is None:
            # OPC 10000-16: the current state of a sub-state machine that is not active is null, Bad_StateNotActive.
            inactive = _bad(StatusCodes.BadStateNotActive)
            for node in (level.current, level.state_id, level.number):
                await server.write_attribute_value(node.nodeid, ua.DataValue(ua.Variant(), StatusCode=inactive,
                                                                             SourceTimestamp=_stamp(entered)))
            return
        state_node, number = level.states[name]
        await server.write_attribute_value(level.current.nodeid, _value(ua.Variant(ua.LocalizedText(name)), entered))
        await server.write_attribute_value(level.state_id.nodeid, _value(ua.Variant(state_node), entered))
        await server.write_attribute_value(level.number.nodeid,
                                           _value(ua.Variant(number, ua.VariantType.UInt32), entered))

    async def _write(self, key: str, value: ua.Variant, at: dt.datetime | None = None) -> None:
        if self._server is None or self._written.get(key) == value:
            return
        self._written[key] = value
        await self._server.write_attribute_value(self._nodes[key].nodeid, _value(value, at))

    # -- methods --------------------------------------------------------------------------------------

    def _command_method(self, command: Command) -> Callable[..., Awaitable[ua.StatusCode | list[ua.Variant]]]:
        async def call(parent: ua.NodeId, *args: ua.Variant) -> ua.StatusCode | list[ua.Variant]:
            del parent, args
            actor = caller()
            if actor is None:
                return _bad(StatusCodes.BadUserAccessDenied)
            why = f"{command.title} by {actor.name} over OPC UA"
            return await self._as_caller(actor, command.title, lambda line: line.command(command, actor, reason=why))

        return call

    async def _set_unit_mode(self, parent: ua.NodeId, *args: ua.Variant) -> ua.StatusCode | list[ua.Variant]:
        del parent
        actor = caller()
        if actor is None:
            return _bad(StatusCodes.BadUserAccessDenied)
        try:
            mode = UnitMode(int(args[0].Value))
        except (IndexError, TypeError, ValueError):
            return _bad(StatusCodes.BadInvalidArgument)
        return await self._as_caller(actor, "SetUnitMode", lambda line: line.set_mode(mode, actor))

    async def _acknowledge(self, parent: ua.NodeId, *args: ua.Variant) -> ua.StatusCode | list[ua.Variant]:
        del parent
        actor = caller()
        if actor is None:
            return _bad(StatusCodes.BadUserAccessDenied)
        try:
            alarm_id = int(args[0].Value)
        except (IndexError, TypeError, ValueError):
            return _bad(StatusCodes.BadInvalidArgument)
        return await self._as_caller(actor, "AcknowledgeAlarm", lambda line: line.acknowledge(alarm_id, actor))

    async def _as_caller(self, actor: Actor, what: str, act: Callable[[LineControl], Awaitable[object]]
                         ) -> ua.StatusCode | list[ua.Variant]:
        """Do act on the line in a task of this server (never cancelled with the call); answer its outcome.

        Good, with the task going on, when it has not ended within CALL_WAIT_S.
        """
        control, accounts = self._control, self._accounts
        if self._tasks is None or control is None or accounts is None:
            return _bad(StatusCodes.BadResourceUnavailable)
        # A SCADA keeps its session for days: a user disabled, or given another role, since the login acts no more.
        try:
            user = await accounts.user(actor.name)
        except EdgeError as err:  # the store: its own alarms say why
            _LOG.error("OPC UA call refused: the account could not be read", call=what, user=actor.name, error=str(err))
            return _bad(StatusCodes.BadResourceUnavailable)
        if user is None or not user.active or user.role is not actor.role:
            _LOG.warning("OPC UA call refused: the account changed since the login", call=what, user=actor.name)
            return _bad(StatusCodes.BadUserAccessDenied)
        # The line control drops a command whose caller gave up before it ran: a call cut short by its
        # connection must not cancel it, so the work runs in a task of this server, not in the call.
        task = self._tasks.create_task(self._outcome(actor, what, lambda: act(control)), name=f"opcua:{what}")
        done, _ = await asyncio.wait({task}, timeout=self._call_wait_s)
        if not done:
            _LOG.info("OPC UA call goes on after its answer", call=what, user=actor.name)
            return []
        code = task.result()
        return [] if code is None else _bad(code)

    async def _outcome(self, actor: Actor, what: str, act: Callable[[], Awaitable[object]]) -> int | None:
        """Do act; return None when it succeeded, else the Bad status code for the error (logged)."""
        try:
            result = await act()
        except NotAllowedError as err:
            code, reason = StatusCodes.BadUserAccessDenied, str(err)
        except IllegalCommandError as err:
            code, reason = StatusCodes.BadInvalidState, str(err)
        except UnknownAlarmError as err:
            code, reason = StatusCodes.BadInvalidArgument, str(err)
        except LineControlError as err:
            code, reason = StatusCodes.BadResourceUnavailable, str(err)
        except EdgeError as err:  # an interlock: refused by the line as it is now (mode, state)
            code, reason = StatusCodes.BadInvalidState, str(err)
        else:
            _LOG.info("OPC UA call done", call=what, user=actor.name, result=_describe(result))
            return None
        _LOG.warning("OPC UA call refused", call=what, user=actor.name, role=actor.role.value,
                     status=_bad(code).name, reason=reason)
        return code

    # -- listening and client certificates ------------------------------------------------------------

    async def _listen(self, server: GatedServer) -> bool:
        """Start listening, retrying with backoff while the address cannot be bound; True once it listens."""
        while True:
            try:
                async with asyncio.timeout(BIND_TIMEOUT_S):
                    await server.start()
            except (OSError, TimeoutError) as err:
                delay = self._backoff.next_delay()
                _LOG.error("OPC UA server cannot listen; the line runs on without it, retrying",
                           host=self.config.host, port=self.config.port, error=str(err) or type(err).__name__,
                           retry_in_s=round(delay, 1))
                await self._sleep(delay)
                continue
            self._backoff.reset()
            bserver = server.bserver
            self.port = None if bserver is None else bserver.port
            self.listening.set()
            _LOG.info("OPC UA server listening", endpoint=self.endpoint, security="Basic256Sha256 SignAndEncrypt",
                      certificate=self.certificate.sha256, valid_until=f"{self.certificate.not_after:%Y-%m-%d}",
                      trust_any_client=self.config.trust_any_client)
            days = (self.certificate.not_after - dt.datetime.now(dt.UTC)).days
            if days < RENEW_WARNING_DAYS:
                _LOG.warning("OPC UA server certificate expires soon: make a new one and trust it on every client",
                             days_left=days)
            return True

    def _make_trust_dirs(self) -> None:
        self.paths.trusted.mkdir(parents=True, exist_ok=True)
        self.paths.rejected.mkdir(parents=True, exist_ok=True)

    def _validator(self, basic: CertificateValidator
                   ) -> Callable[[x509.Certificate, ua.ApplicationDescription], Awaitable[None]]:
        async def validate(certificate: x509.Certificate, app: ua.ApplicationDescription) -> None:
            await basic.validate(certificate, app)  # expiry, and the application URI the client claims
            if await asyncio.to_thread(trusted, self.paths.trusted, certificate):
                return
            kept = await asyncio.to_thread(keep_rejected, self.paths.rejected, certificate)
            _LOG.warning("OPC UA client certificate not trusted: move it to the trusted directory to trust it",
                         client=app.ApplicationUri, sha256=_fingerprint(certificate),
                         kept=None if kept is None else str(kept), trusted=str(self.paths.trusted))
            raise ServiceError(StatusCodes.BadCertificateUntrusted)

        return validate


def trusted(directory: Path, certificate: x509.Certificate) -> bool:
    """Tell whether directory holds certificate, or a CA certificate that signed it (blocking: use a thread)."""
    der = certificate.public_bytes(serialization.Encoding.DER)
    anchors: list[x509.Certificate] = []
    for path in sorted(directory.glob("*")):
        if path.suffix.lower() not in (".der", ".pem", ".crt", ".cer") or not path.is_file():
            continue
        try:
            data = path.read_bytes()
            cert = (x509.load_pem_x509_certificate(data) if data.lstrip().startswith(b"-----")
                    else x509.load_der_x509_certificate(data))
        except (OSError, ValueError) as err:
            _LOG.warning("unreadable file in the OPC UA trusted directory", file=str(path), error=str(err))
            continue
        if cert.public_bytes(serialization.Encoding.DER) == der:
            return True
        anchors.append(cert)
    if not anchors:
        return False
    verification = x509.verification
    # OPC UA application certificates break web PKI rules (a self-signed leaf marked CA, key usages for
    # signing and encryption together): only the chain to a trusted CA is checked here, as asyncua does.
    policy = verification.ExtensionPolicy.permit_all()
    builder = verification.PolicyBuilder().store(verification.Store(anchors)).extension_policies(
        ca_policy=policy.require_present(x509.BasicConstraints, verification.Criticality.AGNOSTIC, _is_ca),
        ee_policy=policy)
    try:
        builder.build_client_verifier().verify(certificate, [])
    except verification.VerificationError:
        return False
    return True


def keep_rejected(directory: Path, certificate: x509.Certificate) -> Path | None:
    """Write a refused client's certificate to directory as DER for the integrator; None past MAX_REJECTED files."""
    der = certificate.public_bytes(serialization.Encoding.DER)
    path = directory / f"{safe_name(certificate)}-{_fingerprint(certificate).replace(':', '')[:16].lower()}.der"
    if path.exists():
        return path
    if sum(1 for _ in directory.glob("*.der")) >= MAX_REJECTED:
        return None
    path.write_bytes(der)
    return path


def _is_ca(policy: object, cert: x509.Certificate, extension: x509.BasicConstraints | None) -> None:
    del policy, cert
    if extension is None or not extension.ca:
        raise ValueError("a trusted CA certificate must say it is a CA (basicConstraints ca=true)")


def _fingerprint(certificate: x509.Certificate) -> str:
    return fingerprint(certificate.public_bytes(serialization.Encoding.DER))


def _struct(name: str) -> Callable[..., Any]:
    """Return the class asyncua made for a structure of the imported NodeSet (it has no static type)."""
    return getattr(ua, name)  # type: ignore[no-any-return]


def _int32(value: int) -> int:
    return min(int(value), MAX_COUNT)


def _value(value: ua.Variant, at: dt.datetime | None = None) -> ua.DataValue:
    now = dt.datetime.now(dt.UTC)
    return ua.DataValue(value, SourceTimestamp=_stamp(at or now), ServerTimestamp=_stamp(now))


def _stamp(at: dt.datetime) -> ua.DateTime:
    return cast("ua.DateTime", at)  # asyncua's DateTime marks a datetime; any aware datetime is encoded


def _nid(identifier: int | str, namespace: int) -> ua.NodeId:
    key = ua.Int32(identifier) if isinstance(identifier, int) else ua.String(identifier)
    return ua.NodeId(key, ua.Int16(namespace))


def _bad(code: int) -> ua.StatusCode:
    return ua.StatusCode(ua.UInt32(code))


def _describe(result: object) -> object:
    if isinstance(result, State | UnitMode):
        return result.name.capitalize()
    return getattr(result, "id", None)


async def _not_supported(parent: ua.NodeId, *args: ua.Variant) -> ua.StatusCode:
    del parent, args
    return _bad(StatusCodes.BadNotSupported)

