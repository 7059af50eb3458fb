"""The OPC UA server against the real daemon and simulated line, with asyncua's client over loopback.

Every client logs in with Basic256Sha256 SignAndEncrypt and a user name and password, with a client certificate
made here (trusted by placing it in the trusted directory, as an integrator does). Waits are for states the line
reaches, bounded only against a hang; nothing asserts on timing.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import stat
from typing import TYPE_CHECKING, Any

import aiohttp
import pytest
from argon2 import PasswordHasher
from asyncua import Client, ua
from asyncua.crypto.cert_gen import (
    dump_private_key_as_pem,
    generate_app_certificate_signing_request,
    generate_private_key,
    generate_self_signed_app_certificate,
    sign_certificate_request,
)
from asyncua.crypto.security_policies import SecurityPolicyBasic256Sha256
from asyncua.crypto.uacrypto import CertProperties
from asyncua.ua.uaerrors import UaError, UaStatusCodeError
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

from edge.cli import main
from edge.config import load_config
from edge.control.accounts import Accounts
from edge.control.audit import AuditTrail
from edge.control.packml import State
from edge.control.permissions import Actor, Role
from edge.daemon import Daemon
from edge.line.simulated import SimulatedLine
from edge.opcua.certs import CertificateError, OpcUaPaths, application_uri, load_certificate, make_certificate
from edge.opcua.server import keep_rejected, state_levels, trusted
from edge.serials.states import BatchState
from edge.store import Store
from edge.supervisor import LinkState
from tests.conftest import ROOT

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable
    from pathlib import Path

    from asyncua.common.node import Node

HANG_GUARD_S = 30.0
PACKML = "http://opcfoundation.org/UA/PackML/"
ORDER = "work_order: WO-1\nproduct: aspirin-500-eu\nlot: \"L1\"\nexpiry: 2028-10-31\nquantity: 500\nline: demo\n"
CLIENT_URI = "urn:test:scada"
USERS = {
    "ada": (Role.ADMINISTRATOR, "admin-pass-123"),
    "anna": (Role.OPERATOR, "operator-pass-1"),
    "sam": (Role.SUPERVISOR, "supervisor-pass-1"),
}


def client_certificate(directory: Path, name: str, uri: str = CLIENT_URI) -> tuple[Path, Path]:
    """Make a client's self-signed certificate and key, as a SCADA makes its own; return their paths."""
    key = generate_private_key()
    cert = generate_self_signed_app_certificate(key, name, {}, [x509.UniformResourceIdentifier(uri)],
                                                [ExtendedKeyUsageOID.CLIENT_AUTH], days=30)
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / f"{name}.der", directory / f"{name}.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.DER))
    key_path.write_bytes(dump_private_key_as_pem(key))
    return cert_path, key_path


async def seed_users(state_dir: Path) -> None:
    """Create the line's users in the store before the daemon opens it (argon2 at its cheapest)."""
    store = Store.open(state_dir, group_window_s=0)
    try:
        async with store:
            accounts = Accounts(store, audit=AuditTrail(store),
                                hasher=PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))
            await accounts.add("ada", Role.ADMINISTRATOR, USERS["ada"][1], by=None)
            for name, (role, secret) in USERS.items():
                if name != "ada":
                    await accounts.add(name, role, secret, by=Actor("ada", Role.ADMINISTRATOR))
    finally:
        store.close()


class Line:
    """The running daemon with its OPC UA server, the simulated line, and the test's client certificate."""

    def __init__(self, sim: SimulatedLine, daemon: Daemon, paths: OpcUaPaths, client: tuple[Path, Path]) -> None:
        self.sim = sim
        self.daemon = daemon
        self.paths = paths
        self.client = client
        assert daemon.control is not None
        assert daemon.opcua is not None
        self.control = daemon.control
        self.endpoint = daemon.opcua.endpoint
        assert self.endpoint is not None

    @contextlib.asynccontextmanager
    async def session(self, user: str | None, password: str | None = None, *,
                      certificate: tuple[Path, Path] | None = None, secure: bool = True) -> AsyncIterator[Session]:
        """Log in as user over Basic256Sha256 SignAndEncrypt (user None: anonymous; secure False: no security)."""
        client = Client(self.endpoint, timeout=HANG_GUARD_S)
        client.application_uri = CLIENT_URI
        if secure:
            cert, key = certificate or self.client
            # Contents, not paths: asyncua reads paths in AnyIO worker threads that outlive the test.
            await client.set_security(SecurityPolicyBasic256Sha256, CertProperties(cert.read_bytes(), "der"),
                                      CertProperties(key.read_bytes(), "pem"),
                                      mode=ua.MessageSecurityMode.SignAndEncrypt)
        if user is not None:
            client.set_user(user)
            client.set_password(password if password is not None else USERS[user][1])
        async with client:
            yield await Session.open(client, self.daemon.config.line.id)

    async def until(self, predicate: Callable[[], bool]) -> None:
        async with asyncio.timeout(HANG_GUARD_S):
            while not predicate():  # noqa: ASYNC110 - the line signals only through its state
                await asyncio.sleep(0.005)

    async def packs(self, count: int) -> None:
        """Move count packs under the printer and past the camera on the running belt."""
        printer, world = self.sim.printer, self.sim.world
        assert printer is not None
        for _ in range(count):
            async with asyncio.timeout(HANG_GUARD_S):
                await printer.engine.wait_loaded()
            for _ in range(4):
                world.advance(world.geometry.pitch // 4)
                await asyncio.sleep(0.01)


class Session:
    """A logged-in client and the line's PackML object as it browses it."""

    def __init__(self, client: Client, ns: int, line: Node, levels: list[Node]) -> None:
        self.client = client
        self.ns = ns
        self.line = line
        self.base, self.machine, self.execute = levels

    @classmethod
    async def open(cls, client: Client, line_id: str) -> Session:
        ns = await client.get_namespace_index(PACKML)
        await client.load_data_type_definitions()
        line = await client.nodes.objects.get_child([f"{ns}:PackMLObjects", f"1:{line_id}"])
        base = await line.get_child(f"{ns}:BaseStateMachine")
        machine = await base.get_child(f"{ns}:MachineState")
        execute = await machine.get_child(f"{ns}:ExecuteState")
        return cls(client, ns, line, [base, machine, execute])

    async def child(self, *path: str) -> Node:
        return await self.line.get_child([p if ":" in p else f"{self.ns}:{p}" for p in path])

    async def state(self, level: Node) -> tuple[str, int] | None:
        """The CurrentState of a state machine level as (name, Number); None when that level is not active."""
        current = await level.get_child("0:CurrentState")
        value = await current.read_data_value(raise_on_bad_status=False)
        if value.StatusCode is not None and value.StatusCode.value == ua.StatusCodes.BadStateNotActive:
            return None
        assert value.StatusCode is None or value.StatusCode.is_good()
        number = await (await current.get_child("0:Number")).read_value()
        return value.Value.Value.Text, number

    async def states(self) -> tuple[tuple[str, int] | None, ...]:
        return (await self.state(self.base), await self.state(self.machine), await self.state(self.execute))

    async def call(self, level: Node, method: str, *args: Any) -> Any:
        return await level.call_method(f"{self.ns}:{method}", *args)

    async def value(self, *path: str) -> Any:
        return await (await self.child(*path)).read_value()

    async def until_state(self, name: str) -> None:
        """Read the execute level until it shows name (the line acts on its own time)."""
        async with asyncio.timeout(HANG_GUARD_S):
            while (await self.state(self.execute) or ("",))[0] != name:  # noqa: ASYNC110 - polled over OPC UA
                await asyncio.sleep(0.01)


@contextlib.asynccontextmanager
async def running_line(tmp_path: Path, *, opcua: dict[str, Any] | None = None) -> AsyncIterator[Line]:
    """The daemon with OPC UA enabled (certificate made, one client trusted), users, a released batch."""
    config = load_config(ROOT / "config" / "demo.yaml")
    state_dir = tmp_path / "state"
    paths = OpcUaPaths.in_state_dir(state_dir)
    make_certificate(paths, config.line.id, ["127.0.0.1", "localhost"])
    client = client_certificate(tmp_path / "scada", "scada")
    (paths.trusted / "scada.der").write_bytes(client[0].read_bytes())  # the integrator trusts the SCADA
    await seed_users(state_dir)
    config = config.model_copy(update={
        "storage": config.storage.model_copy(update={"state_dir": state_dir}),
        "api": config.api.model_copy(update={"port": 0}),
        "hmi": config.hmi.model_copy(update={"port": 0}),
        "opcua": config.opcua.model_copy(update={"enabled": True, "port": 0, **(opcua or {})}),
    })
    async with SimulatedLine(config) as sim:
        daemon = Daemon(sim.config)
        task = asyncio.create_task(daemon.run(handle_signals=False))
        try:
            async with asyncio.timeout(HANG_GUARD_S):
                await daemon.ready.wait()
                assert daemon.opcua is not None
                await daemon.opcua.listening.wait()
                assert sim.plc is not None
                await sim.plc.wait_for_connection()
                while any(s.status.state is not LinkState.ONLINE for s in daemon.supervisors):  # noqa: ASYNC110
                    await asyncio.sleep(0.005)
            batches = daemon.batches
            assert batches is not None
            batch = await batches.import_work_order(ORDER, "test", operator="test")
            await batches.release(batch.id, operator="test")
            packaging = asyncio.create_task(sim.run_packaging())
            try:
                yield Line(sim, daemon, paths, client)
            finally:
                packaging.cancel()
                await asyncio.gather(packaging, return_exceptions=True)
        finally:
            daemon.request_shutdown()
            async with asyncio.timeout(HANG_GUARD_S):
                assert await task == 0


async def refused(session: contextlib.AbstractAsyncContextManager[Session]) -> BaseException:
    """Enter session, which must be refused; return why."""
    with pytest.raises((UaError, OSError, TimeoutError)) as caught:
        async with session:
            pass
    return caught.value


# -- the line over OPC UA -------------------------------------------------------------------------


async def test_users_drive_the_line_through_packml_methods_and_see_the_state_follow(tmp_path):
    async with running_line(tmp_path) as line:
        control = line.control
        async with line.session("sam") as sam, line.session("anna") as anna:
            assert await anna.states() == (("Cleared", 19), ("Stopped", 2), None)
            assert await anna.value("1:StateCurrent") == int(State.STOPPED)
            assert await anna.value("TagID") == "demo"

            # An operator may not reset the line; a supervisor may (OPC 30050 puts Reset on MachineState).
            with pytest.raises(UaStatusCodeError, match="BadUserAccessDenied"):
                await anna.call(anna.machine, "Reset")
            await sam.call(sam.machine, "Reset")
            await anna.until_state("Idle")
            await anna.call(anna.execute, "Start")
            await anna.until_state("Execute")
            assert control.state is State.EXECUTE
            assert await anna.states() == (("Cleared", 19), ("Running", 18), ("Execute", 6))
            await line.packs(6)

            await anna.call(anna.execute, "Hold")
            assert control.state is State.HELD  # Holding's logic is done within the call
            assert await anna.state(anna.execute) == ("Held", 11)
            assert await anna.value("1:StateCurrent") == int(State.HELD)
            assert (await line.daemon.batches.ledger.batch(1)).state is BatchState.PAUSED
            state_id = await (await (await anna.execute.get_child("0:CurrentState")).get_child("0:Id")).read_value()
            assert state_id == ua.NodeId(34, anna.ns)  # Held in PackMLExecuteStateMachineType (the NodeSet's i=34)

            # Refusals are Bad status codes; the line stays where it is.
            with pytest.raises(UaStatusCodeError, match="BadInvalidState"):
                await anna.call(anna.execute, "Hold")
            with pytest.raises(UaStatusCodeError, match="BadUserAccessDenied"):
                await anna.call(anna.base, "Abort")
            with pytest.raises(UaStatusCodeError, match="BadUserAccessDenied"):
                await anna.call(anna.line, "SetUnitMode", ua.Variant(2, ua.VariantType.Int32))
            with pytest.raises(UaStatusCodeError, match="BadNotSupported"):
                await anna.call(anna.line, "SetMachSpeed", ua.Variant(100.0, ua.VariantType.Float))
            assert control.state is State.HELD

            await anna.call(anna.execute, "Unhold")
            await anna.until_state("Execute")
            assert control.state is State.EXECUTE
            await line.packs(4)

            # Counters, speed, batch and alarms follow the line's status.
            async with asyncio.timeout(HANG_GUARD_S):
                while True:
                    processed = await anna.value("Admin", "ProdProcessedCount")
                    if processed[0].Count == control.status()["counters"]["produced"] > 0:
                        break
                    await asyncio.sleep(0.01)
            defective = await anna.value("Admin", "ProdDefectiveCount")
            assert {d.Name for d in defective} >= {"NO_READ", "LOW_GRADE", "DUPLICATE"}
            assert all(d.Count == 0 for d in defective)
            assert await anna.value("Status", "CurMachSpeed") > 0
            assert await anna.value("Status", "UnitModeCurrent") == 1
            assert await anna.value("1:Batch", "1:WorkOrder") == "WO-1"
            assert await anna.value("1:Batch", "1:Lot") == "L1"
            assert await anna.value("1:Batch", "1:State") == "running"
            assert await anna.value("Admin", "AlarmExtent") == 0
            assert await anna.value("Admin", "Alarm") == []

            # Prometheus sees the same line, with the verdict latency the inspection observed.
            url = f"http://127.0.0.1:{line.daemon.api_port}/metrics"
            async with aiohttp.ClientSession() as http, http.get(url) as response:
                assert response.status == 200
                metrics = await response.text()
            assert 'lineside_packml_state{line="demo",state="Execute"} 1' in metrics
            judged = re.search(r'^lineside_verdict_latency_seconds_count\{line="demo"\} (\d+)$', metrics, re.MULTILINE)
            assert judged is not None
            assert int(judged[1]) > 0

            await sam.call(sam.machine, "Stop")
            async with asyncio.timeout(HANG_GUARD_S):
                while await sam.state(sam.machine) != ("Stopped", 2):  # noqa: ASYNC110 - polled over OPC UA
                    await asyncio.sleep(0.01)
            assert await sam.state(sam.execute) is None  # not active: Bad_StateNotActive

        # Logins and commands are in the audit trail under the user's name, through OPC UA.
        store = line.daemon.store
        assert store is not None
        rows = await store.read(lambda c: c.execute("SELECT actor, action, details_json FROM audit_log").fetchall())
        logins = [(actor, json.loads(details)["via"]) for actor, action, details in rows if action == "user.login"]
        assert ("anna", "opcua") in logins
        assert ("sam", "opcua") in logins
        commands = [(actor, action, json.loads(details).get("outcome")) for actor, action, details in rows
                    if action.startswith("line.")]
        assert ("anna", "line.hold", "done") in commands
        assert ("anna", "line.abort", "refused") in commands
        assert ("sam", "line.reset", "done") in commands


async def test_anonymous_wrong_passwords_plain_channels_and_untrusted_clients_are_refused(tmp_path):
    async with running_line(tmp_path) as line:
        await refused(line.session(None))  # anonymous: only user name tokens are offered
        wrong = await refused(line.session("anna", "not-her-password"))
        assert "BadUserAccessDenied" in repr(wrong)
        await refused(line.session("nobody", "whatever-pass-1"))
        await refused(line.session("anna", secure=False))  # no endpoint without SignAndEncrypt

        # A client whose certificate is not trusted is refused, and its certificate kept for the integrator...
        stranger = client_certificate(tmp_path / "stranger", "stranger")
        untrusted = await refused(line.session("anna", certificate=stranger))
        assert "BadCertificateUntrusted" in repr(untrusted)
        kept = list(line.paths.rejected.glob("stranger-*.der"))
        assert len(kept) == 1
        assert kept[0].read_bytes() == stranger[0].read_bytes()
        # ... who trusts it by moving it across: no restart.
        assert main(["opcua", "trust", "--state-dir", str(line.daemon.config.storage.state_dir), str(kept[0])]) == 0
        async with line.session("anna", certificate=stranger) as anna:
            assert await anna.state(anna.machine) == ("Stopped", 2)

            # A user disabled while logged in acts no more (a SCADA keeps its session for days).
            store = line.daemon.store
            assert store is not None
            accounts = Accounts(store, audit=AuditTrail(store))
            await accounts.disable("anna", by=Actor("ada", Role.ADMINISTRATOR), reason="left the company")
            with pytest.raises(UaStatusCodeError, match="BadUserAccessDenied"):
                await anna.call(anna.execute, "Start")
        await refused(line.session("anna"))
        assert line.control.state is State.STOPPED

        # A client may read but never change the address space.
        async with line.session("sam") as sam:
            with pytest.raises(UaStatusCodeError, match=r"BadUserAccessDenied|BadNotWritable"):
                await (await sam.child("TagID")).write_value("renamed")
            assert await sam.value("TagID") == "demo"


# -- certificates ---------------------------------------------------------------------------------


def test_the_daemon_refuses_to_start_without_its_opcua_certificate(tmp_path):
    config = load_config(ROOT / "config" / "demo.yaml")
    config = config.model_copy(update={
        "storage": config.storage.model_copy(update={"state_dir": tmp_path / "state"}),
        "opcua": config.opcua.model_copy(update={"enabled": True, "port": 0}),
    })
    with pytest.raises(CertificateError, match="lineside opcua cert"):
        Daemon(config)  # before anything starts
    assert not (tmp_path / "state").exists()


def test_a_certificate_of_another_line_or_without_its_key_is_refused(tmp_path):
    paths = OpcUaPaths.in_state_dir(tmp_path)
    made = make_certificate(paths, "line-1", ["127.0.0.1"])
    assert load_certificate(paths, "line-1").sha256 == made.sha256
    with pytest.raises(CertificateError, match=r"urn:lineside:line-1.*urn:lineside:line-2"):
        load_certificate(paths, "line-2")
    other = OpcUaPaths.in_state_dir(tmp_path / "other")
    make_certificate(other, "line-1", ["127.0.0.1"])
    paths.private_key.write_bytes(other.private_key.read_bytes())
    with pytest.raises(CertificateError, match="is not the key of"):
        load_certificate(paths, "line-1")


def test_the_cert_command_writes_the_line_certificate_once(tmp_path, capsys):
    state = tmp_path / "state"
    args = ["opcua", "cert", "--state-dir", str(state), "--line", "line-7", "--host", "scada-gw.cell",
            "--host", "10.20.30.40", "--json"]
    assert main(args) == 0
    out = json.loads(capsys.readouterr().out)
    paths = OpcUaPaths.in_state_dir(state)
    assert out["certificate"] == str(paths.certificate)
    assert out["application_uri"] == application_uri("line-7") == "urn:lineside:line-7"
    cert = x509.load_der_x509_certificate(paths.certificate.read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == ["urn:lineside:line-7"]
    assert san.get_values_for_type(x509.DNSName) == ["scada-gw.cell"]
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["10.20.30.40"]
    assert cert.public_key().key_size == 2048
    assert out["sha256"].count(":") == 31
    assert stat.S_IMODE(paths.private_key.stat().st_mode) == 0o600
    assert paths.trusted.is_dir()

    # Again: refused, since every client trusting it would have to trust a new one; --force replaces it.
    assert main(args) == 1
    assert "exists already" in capsys.readouterr().err
    assert main([*args, "--force"]) == 0
    assert json.loads(capsys.readouterr().out)["sha256"] != out["sha256"]

    assert main(["opcua", "show", "--state-dir", str(state), "--line", "line-7"]) == 0
    assert "urn:lineside:line-7" in capsys.readouterr().out
    assert main(["opcua", "show", "--state-dir", str(state), "--line", "line-8"]) == 1
    assert main(["opcua", "cert", "--state-dir", str(state)]) == 2  # no line id
    assert "--line" in capsys.readouterr().err


def test_each_packml_state_shows_at_its_level_of_the_opc_30050_state_machines():
    assert state_levels(State.ABORTED) == ("Aborted", None, None)
    assert state_levels(State.ABORTING) == ("Aborting", None, None)
    assert state_levels(State.CLEARING) == ("Cleared", "Clearing", None)
    assert state_levels(State.STOPPED) == ("Cleared", "Stopped", None)
    assert state_levels(State.HELD) == ("Cleared", "Running", "Held")
    assert state_levels(State.UNDEFINED) == (None, None, None)
    execute_level = {s for s in State if state_levels(s)[2] is not None}
    assert len(execute_level) == 12  # Resetting, Idle, Starting, Execute, ... as PackMLExecuteStateMachineType has


def test_a_client_is_trusted_by_its_own_certificate_or_by_the_ca_that_signed_it(tmp_path):
    trusted_dir = tmp_path / "trusted"
    trusted_dir.mkdir()
    ca_key = generate_private_key()
    ca = generate_self_signed_app_certificate(ca_key, "site CA", {}, [], [], days=30)  # no key usages: a CA
    leaf_key = generate_private_key()
    request = generate_app_certificate_signing_request(
        leaf_key, "mes", {}, [x509.UniformResourceIdentifier("urn:test:mes")], [ExtendedKeyUsageOID.CLIENT_AUTH])
    signed = sign_certificate_request(request, ca, ca_key, days=30)
    stranger_dir = tmp_path / "stranger"
    stranger = x509.load_der_x509_certificate(client_certificate(stranger_dir, "stranger")[0].read_bytes())

    assert not trusted(trusted_dir, signed)  # an empty directory trusts nobody
    (trusted_dir / "site-ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (trusted_dir / "notes.txt").write_text("not a certificate")
    (trusted_dir / "broken.der").write_bytes(b"not DER either")
    assert trusted(trusted_dir, signed)
    assert not trusted(trusted_dir, stranger)
    (trusted_dir / "stranger.der").write_bytes(stranger.public_bytes(serialization.Encoding.DER))
    assert trusted(trusted_dir, stranger)

    rejected = tmp_path / "rejected"
    rejected.mkdir()
    kept = keep_rejected(rejected, stranger)
    assert kept is not None
    assert kept.name.startswith("stranger-")
    assert keep_rejected(rejected, stranger) == kept  # once per certificate
