"""The crash campaign: the demo line SIGKILLed at seeded random moments, resumed, and checked after every kill.

A child process runs ``lineside demo --resume`` on one state directory. The parent reads its JSON log and kills
it (SIGKILL, no warning) a seeded random delay after the nth event of the phase planned for that kill:

- printing and inspection: packs read back after printing, packs rejected;
- packing and labelling: cases filled and handed to the labeller, labels queued, verified and voided, cases put
  on the pallet (counted once the run has started the line: before, they are the restart's own relabelling);
- the end: the last case and pallet closed short, the batch completed, in-doubt serials decommissioned, the batch
  closed, its EPCIS cut into messages; the last kill comes the moment the simulated repository has stored the
  capture, before the line controller has read the answer.

A run that reaches a later phase before its planned event is killed there (so every planned kill happens while
there is a batch to kill). After every kill the store is opened read-only and checked (`check_store`): each
serial's history is one legal chain ending where it is, no serial was sent to a printer twice, the units in
flight at a kill move next to in doubt (the next start's recovery), a child is in at most one parent and
only commissioned units are packed, every reported change has its outbox row, the audit trail verifies, and the
simulated repository (which keeps its events in the state directory) holds no event twice. When the demo finally
runs to its end, `check_final` checks the batch closed balanced, delivered, every event of its EPCIS export
stored upstream exactly once, and the cases and pallets whole. `lineside bench crash` and the test suite run it.

Each run is forked from a `Zygote`, an interpreter that has imported the line controller once and never ran it:
the kill still takes the whole line controller (daemon, simulators, repository) with it, and a restart pays
what the line controller does at start rather than the seconds Python spends importing it (``warm=False`` starts
a new interpreter each time).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import socket
import statistics
import sys
import tempfile
import time
import traceback
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, NoReturn, Protocol, Self

from edge.control import audit
from edge.serials.states import REPORTED, SERIAL_TRANSITIONS, BatchState, SerialState
from edge.store import Store
from simulators.epcis_upstream import EVENTS_FILE, read_event_log

if TYPE_CHECKING:
    import sqlite3
    from collections.abc import Callable, Sequence

__all__ = [
    "PHASES",
    "CampaignResult",
    "KillRecord",
    "KillSpec",
    "Zygote",
    "bench_crash",
    "check_final",
    "check_store",
    "plan_kills",
    "run_campaign",
]

S = SerialState
ROOT: Final = Path(__file__).resolve().parent.parent
DEMO_CONFIG: Final = ROOT / "config" / "demo.yaml"
UPSTREAM_DIR: Final = "upstream"
"""The simulated repository's storage in the demo's state directory (edge.demo.UPSTREAM_DIR)."""

PHASES: Final[dict[str, frozenset[str]]] = {
    "printing": frozenset({"code read@scanner-pack", "pack rejected"}),
    "packing": frozenset({"case opened", "case full; to the labeller", "label queued", "case on pallet",
                          "label verified; container closed", "label voided; relabelling with a new SSCC"}),
    "end": frozenset({"case closed short", "pallet closed short", "batch completed", "in-doubt serials decommissioned",
                      "batch closed", "EPCIS messages queued", "demo resuming its batch@completing",
                      "demo resuming its batch@closed"}),
}
"""The log events that mark each phase of a batch, in the order the phases come. A read of the packing
station's hand scanner is named with its device, the demo resuming its batch with the batch's state."""
ORDER: Final = tuple(PHASES)

RUN_TIMEOUT_S: Final = 180.0
"""Longest one run of the demo may take: a run makes a few hundred packs in well under a minute here, so this
only turns a hang into a failure."""
QUIET_TIMEOUT_S: Final = 60.0
"""Longest the demo may say nothing: it logs every pack, and starting takes a few seconds."""
MAX_STOPS: Final = 3
"""Runs that may end by themselves, unfinished (the line stopped on an alarm), before the campaign gives up."""
LINE_LIMIT: Final = 1 << 20
"""Longest log line read from the demo."""


CAPTURE_STORED: Final = "capture stored upstream"
"""The kill trigger watching the repository's event log: its capture is durable, its answer maybe not yet read."""
CAPTURE_POLL_S: Final = 0.002
"""How often the event log's size is looked at: the answer and the job poll take a few milliseconds more."""


@dataclass(frozen=True, slots=True)
class KillSpec:
    """When to kill one run: delay_s after the nth event of phase (or after the first event of a later phase).

    on_capture: instead, as soon as the simulated repository has stored a capture (its event log grew).
    """

    phase: str
    nth: int
    delay_s: float
    on_capture: bool = False


def plan_kills(kills: int, seed: int) -> list[KillSpec]:
    """Return `kills` kill moments drawn from seed: printing and packing ones first (mixed), then the end's."""
    rng = random.Random(seed)  # noqa: S311 - kill moments, seeded to be repeatable, not secrets
    ends = max(1, round(kills * 0.3)) if kills >= 3 else 0
    packing = max(1, round(kills * 0.3)) if kills >= 3 else kills // 2
    printing = kills - ends - packing
    production = [KillSpec("printing", rng.randint(1, 12), round(rng.uniform(0.0, 0.4), 3)) for _ in range(printing)]
    production += [KillSpec("packing", rng.randint(1, 3), round(rng.uniform(0.0, 0.3), 3)) for _ in range(packing)]
    # The first kill lands in printing, whatever the shuffle: a batch always prints before it packs.
    first, rest = production[:1], production[1:]
    rng.shuffle(rest)
    # The first end kill at one of the first end steps (three always come: completed, closed, cut into messages;
    # the last case and pallet closed short usually before them), the later ones soon after the next run's first
    # end step; the last one right after the capture.
    end = [KillSpec("end", rng.randint(1, 3) if n == 0 else 1, round(rng.uniform(0.0, 0.5), 3))
           for n in range(ends - 1)]
    if ends:
        end.append(KillSpec("end", 1, 0.0, on_capture=True))
    return [*first, *rest, *end]


@dataclass(slots=True)
class KillRecord:
    """One kill: when and where it landed, what the checks found, and how the next start recovered."""

    index: int
    planned: str
    phase: str
    """The phase the kill landed in (later than planned when the planned events did not come)."""
    trigger: str
    at_s: float
    """Seconds from the run's start to the kill."""
    batch_state: str | None = None
    checks: int = 0
    violations: list[str] = field(default_factory=list)
    capture_unacknowledged: bool = False
    """The repository had stored events the store did not yet know were delivered: a capture's answer was lost."""
    in_doubt_at_restart: int | None = None
    """Serials the next start found in flight and put in doubt."""
    lost_good_packs: int | None = None
    """Good packs between the camera and the case packer at the kill, destroyed by the next run."""
    recovery_s: float | None = None
    """Seconds from the next run's start until it produced again (or was ready, when nothing was left to make)."""


@dataclass(slots=True)
class CampaignResult:
    """Everything one campaign did and found."""

    kills: list[KillRecord]
    clean_start_s: float | None
    """Seconds from the first run's start until it produced: a start on a fresh state directory."""
    final_checks: int
    final_problems: list[str]
    stops: list[str]
    """Runs that ended by themselves, unfinished, and why (the line stopped on an alarm: resumed like a kill)."""
    stop_violations: list[str]
    """What the checks found wrong after such a run."""
    runs: int
    seconds: float
    summary: dict[str, Any]

    @property
    def checks(self) -> int:
        """Invariant checks performed: after every kill and at the end."""
        return sum(k.checks for k in self.kills) + self.final_checks

    @property
    def survived(self) -> int:
        """Kills after which every invariant held."""
        return sum(1 for k in self.kills if not k.violations)

    @property
    def ok(self) -> bool:
        """Every kill survived and the batch ended right."""
        return self.survived == len(self.kills) and not self.final_problems and not self.stop_violations


@dataclass(slots=True)
class _Run:
    """What one run of the demo said and how it ended."""

    returncode: int | None = None
    killed: bool = False
    phase: str | None = None
    trigger: str | None = None
    killed_at_s: float | None = None
    ready_s: float | None = None
    producing_s: float | None = None
    resumed_state: str | None = None
    in_doubt_at_start: int = 0
    lost_good_packs: int = 0
    tail: list[str] = field(default_factory=list)


@dataclass(slots=True)
class _Carry:
    """What the checks after one kill leave for the next: the serials in flight then.

    Each maps to its state and the last transition of the store at the kill: its next move, by the next start's
    recovery, comes after that.
    """

    in_flight: dict[int, tuple[int, int]] = field(default_factory=dict)


async def run_campaign(
    state_dir: Path,
    *,
    kills: int,
    seed: int,
    units: int,
    ppm: float = 1200.0,
    defect_every: int = 10,
    config: Path = DEMO_CONFIG,
    warm: bool = True,
    progress: Callable[[str], None] | None = None,
) -> CampaignResult:
    """Run the demo on state_dir, killing it kills times as planned from seed, then to its end; check throughout.

    warm: fork each run from an interpreter that has imported the line controller once (`Zygote`), so a restart
    costs what the line controller does at start, not the seconds Python takes to import it.
    """
    started = time.monotonic()
    plan = plan_kills(kills, seed)
    # Every kill may put a printer's buffer and the belt in doubt: serials for that on top of the packs.
    spare = (kills + 2) * 64
    argv = ["demo", "-c", str(config), "--state-dir", str(state_dir), "--resume", "--units", str(units),
            "--ppm", f"{ppm:g}", "--defect-every", str(defect_every), "--spare", str(spare),
            "--log-format", "json", "--log-level", "info"]
    records: list[KillRecord] = []
    stops: list[str] = []
    stop_violations: list[str] = []
    carry = _Carry()
    clean_start_s: float | None = None
    runs = 0
    async with contextlib.AsyncExitStack() as stack:
        launcher: _Launcher = await stack.enter_async_context(Zygote()) if warm else _Cold()
        while True:
            spec = plan[len(records)] if len(records) < len(plan) else None
            run = await _run_child(launcher, argv, spec, state_dir / UPSTREAM_DIR / EVENTS_FILE)
            runs += 1
            if runs == 1:
                clean_start_s = run.producing_s
            if records:
                # This run's start recovered from the previous kill.
                last = records[-1]
                last.in_doubt_at_restart = run.in_doubt_at_start
                last.lost_good_packs = run.lost_good_packs
                last.recovery_s = run.producing_s if run.producing_s is not None else run.ready_s
            if run.killed and spec is not None:
                record = KillRecord(len(records) + 1, spec.phase, run.phase or spec.phase, run.trigger or "",
                                    run.killed_at_s or 0.0)
                record.checks, record.violations, carry, facts = await check_store(state_dir, carry)
                record.batch_state = facts.get("batch_state")
                record.capture_unacknowledged = bool(facts.get("capture_unacknowledged"))
                if record.phase != "end" and (record.batch_state in ("completing", "closed")
                                              or run.resumed_state in ("completing", "closed")):
                    record.phase = "end"
                records.append(record)
                if progress is not None:
                    progress(_describe(record))
                continue
            if run.returncode == 0:
                break
            stops.append(f"run {runs} ended with {run.returncode}: {' | '.join(run.tail[-3:])}")
            if progress is not None:
                progress(stops[-1])
            _, violations, carry, _ = await check_store(state_dir, carry)
            stop_violations.extend(f"after run {runs}: {v}" for v in violations)
            if len(stops) > MAX_STOPS:
                raise RuntimeError(f"the demo stopped by itself {len(stops)} times: {stops}")
        warmup_s = launcher.warmup_s
    final_checks, final_problems, summary = await check_final(state_dir, config, carry)
    return CampaignResult(records, clean_start_s, final_checks, final_problems, stops, stop_violations, runs,
                          round(time.monotonic() - started, 1), {**summary, "warmup_s": warmup_s})


def _describe(record: KillRecord) -> str:
    verdict = "ok" if not record.violations else "; ".join(record.violations)
    return (f"kill {record.index}: {record.phase} ({record.trigger}, {record.at_s:.1f} s), batch "
            f"{record.batch_state}, {record.checks} checks: {verdict}")


class _Launcher(Protocol):
    """Starts one run of `lineside` and tells how it ended."""

    warmup_s: float | None
    """Seconds spent once importing the line controller before the first run (None: every run pays it)."""

    async def start(self, argv: Sequence[str]) -> tuple[int, asyncio.StreamReader]:
        """Start `lineside argv`; return its process id and a reader of its output (stdout and stderr)."""
        ...

    async def wait(self) -> int:
        """Wait for the run to end; return its exit code (negative: the signal that ended it)."""
        ...


class _Cold:
    """Each run a new interpreter: `python -m edge ...`."""

    warmup_s: float | None = None

    def __init__(self) -> None:
        self._process: asyncio.subprocess.Process | None = None

    async def start(self, argv: Sequence[str]) -> tuple[int, asyncio.StreamReader]:
        """Start the run as a child process."""
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}
        process = self._process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "edge", *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            stdin=asyncio.subprocess.DEVNULL, env=env, cwd=ROOT, limit=LINE_LIMIT)
        if process.stdout is None:  # pragma: no cover - PIPE was asked for
            raise RuntimeError("no pipe from the demo")
        return process.pid, process.stdout

    async def wait(self) -> int:
        """Reap the child."""
        if self._process is None:
            raise RuntimeError("no run started")
        return await self._process.wait()


class Zygote:
    """A warmed interpreter that forks each run: the line controller imported once, never run in it.

    Runs `python -m edge.crash --zygote FD`; each run's output pipe reaches it over a Unix socket (FD), and it
    answers on its stdout with the run's process id, then its exit code. Its child threads of numeric libraries
    are kept off (one thread), so forking it is safe.
    """

    def __init__(self) -> None:
        self.warmup_s: float | None = None
        self._process: asyncio.subprocess.Process | None = None
        self._socket: socket.socket | None = None
        self._output: asyncio.BaseTransport | None = None

    async def __aenter__(self) -> Self:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self._socket = ours
        env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1",
               "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}
        try:
            self._process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "edge.crash", "--zygote", str(theirs.fileno()), stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE, pass_fds=(theirs.fileno(),), env=env, cwd=ROOT)
            self.warmup_s = float((await self._answer())["warm"])
        except BaseException:
            await self.__aexit__()
            raise
        finally:
            theirs.close()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        process, self._process = self._process, None
        if process is not None:
            if process.stdin is not None:
                process.stdin.close()  # the zygote ends when its commands end
            try:
                async with asyncio.timeout(RUN_TIMEOUT_S):
                    await process.wait()
            finally:
                if process.returncode is None:
                    process.kill()
                    await process.wait()
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    async def start(self, argv: Sequence[str]) -> tuple[int, asyncio.StreamReader]:
        """Fork a run with argv; its output comes through a pipe whose other end only the run holds."""
        process, sock = self._process, self._socket
        if process is None or process.stdin is None or sock is None:
            raise RuntimeError("the zygote is not running")
        read_fd, write_fd = os.pipe()
        try:
            socket.send_fds(sock, [b"\0"], [write_fd])
        finally:
            os.close(write_fd)  # the run holds the only write end: its death is the pipe's end
        reader = asyncio.StreamReader(limit=LINE_LIMIT)
        loop = asyncio.get_running_loop()
        pipe = os.fdopen(read_fd, "rb", buffering=0)
        try:
            self._output, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), pipe)
        except BaseException:
            pipe.close()
            raise
        process.stdin.write(json.dumps(list(argv)).encode() + b"\n")
        await process.stdin.drain()
        return int((await self._answer())["pid"]), reader

    async def wait(self) -> int:
        """Return the exit code the zygote saw the run end with."""
        try:
            return int((await self._answer())["exit"])
        finally:
            output, self._output = self._output, None
            if output is not None:
                output.close()  # at its end already, unless the run was given up on

    async def _answer(self) -> dict[str, Any]:
        process = self._process
        if process is None or process.stdout is None:
            raise RuntimeError("the zygote is not running")
        async with asyncio.timeout(RUN_TIMEOUT_S):
            line = await process.stdout.readline()
        if not line:
            raise RuntimeError(f"the zygote ended (exit {await process.wait()})")
        answer: dict[str, Any] = json.loads(line)
        return answer


def zygote_main(control_fd: int) -> int:
    """Import the line controller, then fork a run for each command on stdin until it closes (the zygote)."""
    began = time.monotonic()
    import edge.cli  # noqa: PLC0415 - the point of the zygote: imported once, before any fork
    import edge.demo  # noqa: PLC0415
    import edge.epcis.hashing  # noqa: PLC0415
    import edge.epcis.validate  # noqa: PLC0415
    import edge.sync.upstream  # noqa: PLC0415, F401

    control = socket.socket(fileno=control_fd)
    _say({"warm": round(time.monotonic() - began, 3)})
    for line in sys.stdin:
        argv = json.loads(line)
        _, fds, _, _ = socket.recv_fds(control, 16, 1)
        if not fds:
            raise RuntimeError("a run came without its output pipe")
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            control.close()
            _run_forked(argv, fds[0])
        os.close(fds[0])
        _say({"pid": pid})
        _, status = os.waitpid(pid, 0)
        _say({"exit": os.waitstatus_to_exitcode(status)})
    return 0


def _say(answer: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(answer) + "\n")
    sys.stdout.flush()


def _run_forked(argv: list[str], out: int) -> NoReturn:
    """Be `lineside argv` with output to out, in the forked child; never returns."""
    code = 70
    try:
        os.dup2(out, 1)
        os.dup2(out, 2)
        os.close(out)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
        from edge.cli import main  # noqa: PLC0415 - imported by the zygote already

        code = main(argv)
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
    except BaseException:  # noqa: BLE001 - the child reports whatever ended it, then exits with 70
        traceback.print_exc()
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


@dataclass(slots=True)
class _Trigger:
    """Decides when one run is killed, from its events (or the repository's event log) as they come."""

    spec: KillSpec | None
    captures: Path
    stored: int = 0
    """The event log's size when the run started."""
    counted: int = 0
    kill_at: float | None = None
    fired: bool = False
    producing: bool = False
    """The run started the line: labels queued before are the restart's relabelling, not packing."""

    def watching(self) -> bool:
        """Tell whether the event log is still being watched for a capture."""
        return self.spec is not None and self.spec.on_capture and not self.fired

    def wait_s(self, now: float, run: _Run) -> float:
        """Return how long to wait for the demo's next line before looking again."""
        if self.watching():
            if _size(self.captures) <= self.stored:
                return CAPTURE_POLL_S
            self._fire(run, "end", CAPTURE_STORED, now)
        if self.kill_at is not None:
            return max(0.0, self.kill_at - now)
        return QUIET_TIMEOUT_S

    def on_event(self, name: str | None, now: float, run: _Run) -> None:
        """Count one event of the demo; arm the kill at the planned one (or the first of a later phase)."""
        spec = self.spec
        self.producing = self.producing or name == "batch running"
        if spec is None or spec.on_capture or self.fired or name is None:
            return
        phase = _phase_of(name)
        if phase is None or ORDER.index(phase) < ORDER.index(spec.phase) or (phase == "packing" and not self.producing):
            return
        if phase == spec.phase:
            self.counted += 1
            # A run resuming a closed batch may have no end step after this one: it only delivers.
            if self.counted < spec.nth and not name.endswith("@closed"):
                return
        self._fire(run, phase, name, now + spec.delay_s)

    def due(self, now: float) -> bool:
        """Tell whether the kill is due now; it is then disarmed."""
        if self.kill_at is None or now < self.kill_at:
            return False
        self.kill_at = None
        return True

    def _fire(self, run: _Run, phase: str, trigger: str, at: float) -> None:
        self.fired = True
        run.phase, run.trigger, self.kill_at = phase, trigger, at


async def _run_child(launcher: _Launcher, argv: Sequence[str], spec: KillSpec | None, captures: Path) -> _Run:
    """Run the demo once; kill it as spec says (None: let it finish); return what it said.

    captures: the repository's event log, watched for a kill on_capture.
    """
    run = _Run()
    start = time.monotonic()
    trigger = _Trigger(spec, captures)
    if trigger.watching():
        trigger.stored = await asyncio.to_thread(_size, captures)
    pid, output = await launcher.start(argv)
    reading: asyncio.Task[bytes] | None = None
    ended = False
    try:
        async with asyncio.timeout(RUN_TIMEOUT_S):
            while True:
                reading = reading or asyncio.ensure_future(output.readline())
                done, _ = await asyncio.wait({reading}, timeout=trigger.wait_s(time.monotonic(), run))
                if not done:
                    if trigger.due(time.monotonic()):
                        os.kill(pid, signal.SIGKILL)
                        run.killed, run.killed_at_s = True, round(time.monotonic() - start, 3)
                    elif not trigger.watching() and trigger.kill_at is None:
                        raise TimeoutError(f"the demo said nothing for {QUIET_TIMEOUT_S:g} s")
                    continue
                line, reading = reading.result(), None
                if not line:
                    break
                now = time.monotonic()
                trigger.on_event(_event(line, run, now - start), now, run)
            run.returncode = await launcher.wait()
            ended = True
    finally:
        if reading is not None and not reading.done():
            reading.cancel()
            await asyncio.wait({reading})
        if not ended:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(Exception):
                await launcher.wait()
    if run.killed and run.returncode != -signal.SIGKILL:
        run.killed = False  # it ended by itself just before the kill
    return run


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _event(line: bytes, run: _Run, at: float) -> str | None:
    """Note what one line of the demo's output says; return its event name (with the device for scanner reads)."""
    text = line.decode("utf-8", "replace").rstrip("\n")
    run.tail.append(text[:300])
    del run.tail[:-20]
    try:
        record = json.loads(text)
    except ValueError:
        return None  # the summary printed at the end
    if not isinstance(record, dict):
        return None
    name = str(record.get("event"))
    if name == "line controller ready" and run.ready_s is None:
        run.ready_s = round(at, 3)
    elif name == "batch running" and run.producing_s is None:
        run.producing_s = round(at, 3)
    elif name.startswith("serials in doubt after restart"):
        run.in_doubt_at_start = int(record.get("in_doubt", 0))
    elif name == "demo resuming its batch":
        run.resumed_state = str(record.get("state"))
        return f"{name}@{run.resumed_state}"
    elif name.startswith("good packs lost with the process"):
        run.lost_good_packs = int(record.get("units", 0))
    elif name == "code read":
        return f"{name}@{record.get('device')}"
    return name


def _phase_of(name: str) -> str | None:
    for phase, names in PHASES.items():
        if name in names:
            return phase
    return None


# -- checks ---------------------------------------------------------------------------------------


class _Checks:
    """Named checks and what each found wrong."""

    def __init__(self) -> None:
        self.performed = 0
        self.violations: list[str] = []

    def check(self, name: str, problems: Sequence[str]) -> None:
        """Count one check; keep its first few problems."""
        self.performed += 1
        self.violations.extend(f"{name}: {p}" for p in problems[:5])
        if len(problems) > 5:
            self.violations.append(f"{name}: and {len(problems) - 5} more")


async def check_store(state_dir: Path, carry: _Carry | None = None) -> tuple[int, list[str], _Carry, dict[str, Any]]:
    """Check the invariants on the state directory read-only; return (checks, violations, carry, facts)."""
    carry = carry or _Carry()
    checks = _Checks()
    store = await asyncio.to_thread(Store.open_readonly, state_dir)  # runs SQLite's quick check
    checks.check("store integrity", [])
    try:
        facts, after = await store.read(lambda conn: _check_tables(conn, checks, carry))
    finally:
        store.close()
    stored = await asyncio.to_thread(_upstream_ids, state_dir)
    checks.check("no event stored upstream twice",
                 [f"{eid} stored {n} times" for eid, n in Counter(stored).items() if n > 1])
    facts["upstream_events"] = len(stored)
    facts["capture_unacknowledged"] = len(set(stored)) > facts.get("delivered_events", 0)
    return checks.performed, checks.violations, after, facts


def _upstream_ids(state_dir: Path) -> list[str]:
    return [e.event_id for e in read_event_log(state_dir / UPSTREAM_DIR / EVENTS_FILE).events]


def _check_tables(conn: sqlite3.Connection, checks: _Checks, carry: _Carry) -> tuple[dict[str, Any], _Carry]:
    """Run every check on one snapshot of the store; return facts about it and what the next check needs."""
    serials = {int(r[0]): (int(r[1]), r[2]) for r in conn.execute("SELECT id, state, batch_id FROM serial")}
    steps = conn.execute(
        "SELECT h.serial_id, h.from_state, t.to_state, t.id FROM serial_history AS h"
        " JOIN transition AS t ON t.id = h.transition_id ORDER BY h.serial_id, h.transition_id"
    ).fetchall()
    _check_chains(checks, serials, steps)
    _check_in_doubt(checks, carry, steps)
    checks.check("one serial per GTIN and serial number (invariant 1)", [
        f"({gtin}, {serial}) {n} times" for gtin, serial, n in conn.execute(
            "SELECT gtin, serial, count(*) FROM serial GROUP BY gtin, serial HAVING count(*) > 1")])
    _check_batches(conn, checks)
    _check_aggregation(conn, checks, serials)
    _check_outbox(conn, checks)
    verdict = audit.verify(conn)
    checks.check("audit trail verifies (invariant 7)", [] if verdict.ok else [verdict.reason or "broken"])
    batch = conn.execute("SELECT id, state FROM batch ORDER BY id DESC LIMIT 1").fetchone()
    delivered = conn.execute("SELECT coalesce(sum(events), 0) FROM epcis_message WHERE state = 'delivered'"
                             ).fetchone()[0]
    last = int(conn.execute("SELECT coalesce(max(id), 0) FROM transition").fetchone()[0])
    moved = {serial_id for serial_id, _, _, transition in steps
             if serial_id in carry.in_flight and transition > carry.in_flight[serial_id][1]}
    # A serial in flight at an earlier kill that has not moved since (the next run died before it recovered)
    # stays watched from that kill on.
    watched = {sid: held for sid, held in carry.in_flight.items() if sid not in moved}
    for serial_id, (state, _) in serials.items():
        if state in (S.SENT, S.PRINTED) and serial_id not in watched:
            watched[serial_id] = (state, last)
    facts = {"batch_state": None if batch is None else str(batch[1]), "delivered_events": int(delivered),
             "in_flight": sum(1 for state, _ in serials.values() if state in (S.SENT, S.PRINTED))}
    return facts, _Carry(watched)


def _check_chains(checks: _Checks, serials: dict[int, tuple[int, int | None]],
                  steps: Sequence[tuple[int, int, int, int]]) -> None:
    """Each serial's history is one legal chain from available to where it is; none was sent twice."""
    problems: list[str] = []
    sent_twice: list[str] = []
    last: dict[int, int] = {}
    sent: Counter[int] = Counter()
    for serial_id, src, dst, _ in steps:
        expected = last.get(serial_id, int(S.AVAILABLE))
        if src != expected:
            problems.append(f"serial #{serial_id}: history goes on from {S(src).label}, not {S(expected).label}")
        elif S(dst) not in SERIAL_TRANSITIONS[S(src)]:
            problems.append(f"serial #{serial_id}: {S(src).label} → {S(dst).label} is not a legal move")
        last[serial_id] = dst
        if dst == S.SENT:
            sent[serial_id] += 1
    for serial_id, (state, _) in serials.items():
        if last.get(serial_id, int(S.AVAILABLE)) != state:
            problems.append(f"serial #{serial_id} is {S(state).label}, its history ends at "
                            f"{S(last.get(serial_id, int(S.AVAILABLE))).label}")
    sent_twice = [f"serial #{sid} sent to a printer {n} times" for sid, n in sent.items() if n > 1]
    checks.check("every serial in one state, reached by legal moves (invariant 2)", problems)
    checks.check("no serial sent to a printer twice (invariant 1)", sent_twice)


def _check_in_doubt(checks: _Checks, carry: _Carry, steps: Sequence[tuple[int, int, int, int]]) -> None:
    """Units in flight at the last kill were put in doubt by the next start before anything else moved them."""
    problems: list[str] = []
    first_after: dict[int, int] = {}
    for serial_id, _, dst, transition in steps:  # in transition order per serial
        held = carry.in_flight.get(serial_id)
        if held is not None and transition > held[1] and serial_id not in first_after:
            first_after[serial_id] = dst
    for serial_id, dst in first_after.items():
        if dst != S.IN_DOUBT:
            problems.append(f"serial #{serial_id}, {S(carry.in_flight[serial_id][0]).label} at the kill, then moved "
                            f"to {S(dst).label}, not in_doubt")
    checks.check("units in flight at a kill are in doubt after it (invariant 4)", problems)


def _check_batches(conn: sqlite3.Connection, checks: _Checks) -> None:
    """Each batch's allocation log, rows and counts agree; a closed batch balanced."""
    problems = []
    for batch_id, state in conn.execute("SELECT id, state FROM batch"):
        rows = conn.execute("SELECT count(*) FROM serial WHERE batch_id = ?", (batch_id,)).fetchone()[0]
        allocated = conn.execute("SELECT coalesce(sum(count), 0) FROM transition WHERE batch_id = ? AND to_state = ?",
                                 (batch_id, int(S.ALLOCATED))).fetchone()[0]
        if state not in ("closed", "cancelled") and rows != allocated:
            problems.append(f"batch {batch_id}: {rows} serial rows, {allocated} allocated")
        if state == BatchState.CLOSED.value:
            report = conn.execute("SELECT report FROM batch_report WHERE batch_id = ?", (batch_id,)).fetchone()
            if report is None or not json.loads(report[0]).get("balanced"):
                problems.append(f"batch {batch_id} is closed without a balanced report")
    checks.check("batch accounting", problems)


def _check_aggregation(conn: sqlite3.Connection, checks: _Checks, serials: dict[int, tuple[int, int | None]]) -> None:
    """Check a child is in at most one parent and only commissioned units and closed containers are packed."""
    members = conn.execute(
        "SELECT parent_id, serial_id, child_id FROM aggregation_member WHERE unpacked_event IS NULL").fetchall()
    units = Counter(s for _, s, _ in members if s is not None)
    boxes = Counter(c for _, _, c in members if c is not None)
    twice = [f"unit #{s} in {n} parents" for s, n in units.items() if n > 1]
    twice += [f"container #{c} in {n} parents" for c, n in boxes.items() if n > 1]
    checks.check("a child in at most one parent (invariant 5)", twice)
    states = dict(conn.execute("SELECT id, state FROM container").fetchall())
    capacity = dict(conn.execute("SELECT id, capacity FROM container").fetchall())
    wrong = [f"unit #{s} is packed but {S(serials[s][0]).label}" for s in units if serials[s][0] != S.COMMISSIONED]
    wrong += [f"container #{c} is packed but {states[c]}" for c in boxes if states[c] != "closed"]
    checks.check("only commissioned units and closed containers are packed (invariant 5)", wrong)
    held = Counter(p for p, _, _ in members)
    over = [f"container #{p} holds {n} of {capacity[p]}" for p, n in held.items() if n > capacity[p]]
    voided = {r[0] for r in conn.execute("SELECT sscc FROM sscc_voided")}
    reused = [f"voided SSCC {i} is on container #{c}" for c, i in conn.execute("SELECT id, identifier FROM container")
              if i in voided]
    checks.check("capacity kept, a voided SSCC never reused (invariant 5)", over + reused)


def _check_outbox(conn: sqlite3.Connection, checks: _Checks) -> None:
    """Every reported serial move and aggregation event has exactly one outbox row, naming the same serials."""
    marks = ", ".join("?" * len(REPORTED))
    moves = {int(r[0]): sorted(json.loads(r[1])) for r in conn.execute(
        "SELECT t.id, json_group_array(json_array(h.serial_id, h.from_state)) FROM transition AS t"  # noqa: S608
        f" JOIN serial_history AS h ON h.transition_id = t.id WHERE t.batch_id IS NOT NULL AND t.to_state IN ({marks})"
        " GROUP BY t.id", tuple(int(s) for s in REPORTED))}
    rows = conn.execute("SELECT transition_id, serials FROM epcis_outbox WHERE transition_id IS NOT NULL").fetchall()
    queued = Counter(int(r[0]) for r in rows)
    problems = [f"transition #{t} has no outbox row" for t in moves if t not in queued]
    problems += [f"transition #{t} has {n} outbox rows" for t, n in queued.items() if n > 1]
    problems += [f"outbox row of transition #{t} names other serials" for t, text in rows
                 if t in moves and sorted(json.loads(text)) != moves[t]]
    events = {int(r[0]) for r in conn.execute(
        "SELECT id FROM aggregation_event WHERE action IN ('pack', 'unpack', 'replace', 'destroy', 'void_label')")}
    rows = conn.execute("SELECT aggregation_event_id FROM epcis_outbox WHERE aggregation_event_id IS NOT NULL"
                        ).fetchall()
    queued = Counter(int(r[0]) for r in rows)
    problems += [f"aggregation event #{e} has no outbox row" for e in events if e not in queued]
    problems += [f"aggregation event #{e} has {n} outbox rows" for e, n in queued.items() if n > 1]
    checks.check("the outbox holds every reported change once (invariants 4, 6)", problems)


# -- the end --------------------------------------------------------------------------------------


async def check_final(state_dir: Path, config: Path, carry: _Carry | None = None
                      ) -> tuple[int, list[str], dict[str, Any]]:
    """Check the finished demo: closed balanced, delivered, its export stored upstream once; return checks too."""
    performed, problems, _, _ = await check_store(state_dir, carry)
    checks = _Checks()
    checks.performed, checks.violations = performed, list(problems)
    store = await asyncio.to_thread(Store.open_readonly, state_dir)
    try:
        batch_id, state, report, delivery = await store.read(_final_facts)
        hierarchy = await store.read(lambda conn: _hierarchy_problems(conn, batch_id))
    finally:
        store.close()
    checks.check("the batch is closed", [] if state == "closed" else [f"batch {batch_id} is {state}"])
    balance = []
    if report is None:
        balance.append("no frozen report")
    else:
        decommissioned = sum(report["decommissioned"].values())
        if not report["balanced"] or report["allocated"] != report["commissioned"] + decommissioned + report[
                "returned"]:
            balance.append(report.get("equation", "not balanced"))
    checks.check("allocated = commissioned + decommissioned + returned (invariant 2)", balance)
    checks.check("delivered upstream", [f"{t}: {s} ({why})" for t, s, why in delivery if s != "delivered"]
                 or ([] if delivery else ["no delivery target has the batch"]))
    exported = await _exported_ids(state_dir, config, batch_id)
    stored = await asyncio.to_thread(_upstream_ids, state_dir)
    counted = Counter(stored)
    once = [f"{eid} exported but not stored upstream" for eid in exported if eid not in counted]
    once += [f"{eid} stored {counted[eid]} times" for eid in exported if counted[eid] > 1]
    once += [f"{eid} stored upstream but not in the export" for eid in counted if eid not in set(exported)]
    checks.check("every exported event stored upstream exactly once (invariant 6)", once)
    checks.check("cases and pallets whole: every good unit in one closed case on one closed pallet", hierarchy)
    summary = {"batch": batch_id, "state": state, "events": len(exported), "stored_upstream": len(stored),
               "equation": None if report is None else report.get("equation")}
    return checks.performed, checks.violations, summary


def _final_facts(conn: sqlite3.Connection) -> tuple[int, str, dict[str, Any] | None, list[tuple[str, str, str]]]:
    batch_id, state = conn.execute("SELECT id, state FROM batch ORDER BY id DESC LIMIT 1").fetchone()
    row = conn.execute("SELECT report FROM batch_report WHERE batch_id = ?", (batch_id,)).fetchone()
    delivery = [(str(t), str(s), str(r)) for t, s, r in conn.execute(
        "SELECT target, CASE WHEN sum(state = 'delivered') = count(*) THEN 'delivered' ELSE 'pending' END,"
        " coalesce(max(reason), '') FROM epcis_message WHERE batch_id = ? GROUP BY target", (batch_id,))]
    return int(batch_id), str(state), None if row is None else json.loads(row[0]), delivery


def _hierarchy_problems(conn: sqlite3.Connection, batch_id: int) -> list[str]:
    """Every commissioned unit in one closed case, every case on one closed pallet, nothing open or empty."""
    problems = []
    parent_of_unit = dict(conn.execute(
        "SELECT serial_id, parent_id FROM aggregation_member WHERE serial_id IS NOT NULL AND unpacked_event IS NULL"
    ).fetchall())
    parent_of_box = dict(conn.execute(
        "SELECT child_id, parent_id FROM aggregation_member WHERE child_id IS NOT NULL AND unpacked_event IS NULL"
    ).fetchall())
    boxes = {int(r[0]): (str(r[1]), str(r[2])) for r in conn.execute(
        "SELECT id, level, state FROM container WHERE batch_id = ?", (batch_id,))}
    for serial_id, in conn.execute("SELECT id FROM serial WHERE batch_id = ? AND state = ?",
                                   (batch_id, int(S.COMMISSIONED))):
        case = parent_of_unit.get(serial_id)
        if case is None or boxes.get(case, ("", ""))[0] != "case":
            problems.append(f"commissioned unit #{serial_id} is in no case")
    for box, (level, state) in boxes.items():
        if state != "closed":
            problems.append(f"{level} #{box} is {state}")
        if level == "case" and boxes.get(parent_of_box.get(box, -1), ("", ""))[0] != "pallet":
            problems.append(f"case #{box} is on no pallet")
    held = Counter([*parent_of_unit.values(), *parent_of_box.values()])
    problems += [f"{level} #{box} is empty" for box, (level, _) in boxes.items() if held[box] == 0]
    # The membership the events describe is the membership the tables hold.
    events = conn.execute("SELECT action, container_id, serial_ids, container_ids FROM aggregation_event"
                          " WHERE batch_id = ? ORDER BY id", (batch_id,)).fetchall()
    units: dict[int, int] = {}
    children: dict[int, int] = {}
    for action, parent, serial_ids, container_ids in events:
        serial_list, box_list = json.loads(serial_ids), json.loads(container_ids)
        if action == "pack":
            units.update(dict.fromkeys(serial_list, parent))
            children.update(dict.fromkeys(box_list, parent))
        elif action == "unpack":
            for s in serial_list:
                units.pop(s, None)
            for c in box_list:
                children.pop(c, None)
    batch_units = {s: p for s, p in parent_of_unit.items() if p in boxes}
    batch_boxes = {c: p for c, p in parent_of_box.items() if p in boxes}
    if units != batch_units or children != batch_boxes:
        problems.append("the aggregation events describe another hierarchy than the tables hold")
    return problems


async def _exported_ids(state_dir: Path, config: Path, batch_id: int) -> list[str]:
    """Return the event IDs of `lineside epcis export` of the batch, as the repository identifies them."""
    from edge.config import load_config  # noqa: PLC0415 - only the end needs the configuration
    from edge.epcis.hashing import document_events_with_ids  # noqa: PLC0415

    line = await asyncio.to_thread(load_config, config)
    profiles = [t.profile for t in line.upstream.targets if t.kind == "capture"]
    with tempfile.TemporaryDirectory(prefix="lineside-crash-") as tmp:
        out = Path(tmp) / "export.json"
        args = ["epcis", "export", "-c", str(config), "--state-dir", str(state_dir), "--batch", str(batch_id),
                "-o", str(out), *(["--profile", profiles[0]] if profiles and profiles[0] else [])]
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "edge", *args, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
        _, err = await process.communicate()
        if process.returncode != 0:
            raise RuntimeError(f"lineside epcis export failed: {err.decode(errors='replace')}")
        data = await asyncio.to_thread(out.read_bytes)
    return [stated or hashed for stated, hashed in await asyncio.to_thread(document_events_with_ids, data)]


# -- the benchmark --------------------------------------------------------------------------------


def bench_crash(*, kills: int, seed: int = 20270401, units: int | None = None, ppm: float = 1200.0,
                warm: bool = True, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run a campaign in a temporary state directory; return the benchmark's JSON object."""
    # Each printing or packing kill makes up to a few dozen packs; the batch outlasts them.
    units = units or max(120, kills * 20)
    with tempfile.TemporaryDirectory(prefix="lineside-crash-") as tmp:
        result = asyncio.run(run_campaign(Path(tmp), kills=kills, seed=seed, units=units, ppm=ppm, warm=warm,
                                          progress=progress))
    recovery = [k.recovery_s for k in result.kills if k.recovery_s is not None]
    by_phase = Counter(k.phase for k in result.kills)
    return {
        "headline": {"metric": "kills survived with every invariant holding", "value": result.survived,
                     "unit": "kills", "target": kills},
        "baseline": {"name": "invariant checks performed in the same run", "value": result.checks,
                     "unit": "checks"},
        "details": {
            "ok": result.ok,
            "kills": len(result.kills),
            "kills_by_phase": dict(by_phase),
            "runs": result.runs,
            "seconds": result.seconds,
            "units": units,
            "ppm": ppm,
            "seed": seed,
            "starts": "forked from a warmed interpreter" if warm else "a new interpreter each",
            "warmup_s": result.summary.get("warmup_s"),
            "clean_start_to_production_s": result.clean_start_s,
            "recovery_to_production_s": {
                "median": round(statistics.median(recovery), 3) if recovery else None,
                "max": max(recovery) if recovery else None,
            },
            "in_doubt_at_restart": sum(k.in_doubt_at_restart or 0 for k in result.kills),
            "good_packs_lost": sum(k.lost_good_packs or 0 for k in result.kills),
            "captures_unacknowledged_at_a_kill": sum(k.capture_unacknowledged for k in result.kills),
            "final": {**result.summary, "problems": result.final_problems},
            "stops": result.stops,
            "stop_violations": result.stop_violations,
            "per_kill": [asdict(k) for k in result.kills],
        },
    }


def format_text(result: dict[str, Any]) -> str:
    """Return the benchmark's figures as lines for a terminal."""
    head, base, details = result["headline"], result["baseline"], result["details"]
    header = f"{'kill':>4}  {'phase':<9}{'trigger':<42}{'at s':>6}  {'batch':<11}{'in doubt':>9}{'recovery s':>11}"
    lines = [f"{header}  problems"]
    for k in details["per_kill"]:
        recovery = "" if k["recovery_s"] is None else f"{k['recovery_s']:.2f}"
        doubt = "" if k["in_doubt_at_restart"] is None else str(k["in_doubt_at_restart"])
        lines.append(f"{k['index']:>4}  {k['phase']:<9}{k['trigger'][:40]:<42}{k['at_s']:>6.1f}  "
                     f"{k['batch_state'] or '':<11}{doubt:>9}{recovery:>11}  {'; '.join(k['violations']) or 'none'}")
    final = details["final"]
    lines += [
        f"final: batch {final.get('batch')} {final.get('state')}, {final.get('equation')}; "
        f"{final.get('events')} events exported, {final.get('stored_upstream')} stored upstream; problems: "
        + ("; ".join(final["problems"]) or "none"),
        (f"clean start to production: {details['clean_start_to_production_s']} s; after a kill: median "
         f"{details['recovery_to_production_s']['median']} s, max {details['recovery_to_production_s']['max']} s"),
        f"{head['metric']}: {head['value']} of {head['target']} {head['unit']}",
        f"baseline, {base['name']}: {base['value']:,} {base['unit']}",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--zygote":
        sys.exit(zygote_main(int(sys.argv[2])))
    sys.exit("usage: python -m edge.crash --zygote FD (started by the crash campaign)")
