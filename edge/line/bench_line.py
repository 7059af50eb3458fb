"""Benchmark of `lineside bench line`: packs a minute through the whole line at a given line rate.

The real daemon runs the demo line (config/demo.yaml) against its simulators over loopback sockets: the
printer (Zipher protocol) prints each pack's code at the belt's entry, the PLC (Modbus TCP) reports each pack
at the camera and fires the reject unless the pack's own verdict slot says good, the camera serves each pack's
frame, the inspection service decodes it off the loop (zxing-cpp), judges it, commits a good pack's serial
``commissioned`` (SQLite, WAL, ``synchronous=FULL``, group commit) before it writes the verdict to the PLC,
and the good packs are packed into cases in line order with labels printed and verified (aggregation on by
default). The line is run under PackML: Reset, then Start on the batch.

What is not measured: rendering. Every pack's frame is rendered before the clock starts (the serials exist
from the batch's release, so the code on pack n is known) and the simulated camera serves it
(`drivers.camera.simulated.PrerenderedFrames`); a capture that finds no frame is rendered on the spot and
counted as a miss.

The belt is driven by this benchmark, not by `LineWorld.run`: that one sleeps a fixed interval per step and
falls behind the asked rate as soon as a step's work and the loop's latency add up to a sleep's length (a
millisecond at 3,000 ppm). Here each tick moves the belt by the time that really passed, so the asked rate is
what the packs see.

The truth each pack is checked against is the simulated world: which code the printer put on it, which
defects were planned for it, whether it reached the case packer or the reject bin. A wrong verdict is a pack
judged good whose code is not the one printed on it or that carries a reject-worthy defect, or one judged
bad with none; a missed reject is a pack with such a defect that reached the case packer; a late verdict is a
pack that reached the reject station before its verdict (rejected by default). A run counts (its headline is
the rate achieved, else 0) when none of these happened, its p99 verdict latency (frame to decision, as the
inspection service measures it) is within 20 ms, and the line stayed in Execute.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import json
import math
import multiprocessing
import os
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import structlog

from drivers.camera.simulated import (
    FrameKey,
    PrerenderedFrames,
    SimulatedCamera,
    codes_in_view,
    frame_rng,
    register_frames,
    unregister_frames,
)
from drivers.plc.base import Station
from drivers.plc.modbus import ModbusLineIo
from drivers.printer.base import PrinterOptions
from edge.config import StorageConfig, load_config
from edge.control.packml import Command, State
from edge.control.permissions import Actor, Role
from edge.daemon import Daemon
from edge.line.records import BatchDocuments, order_of, plan_for
from edge.line.simulated import COSMETIC_DEFECTS, SimulatedLine, mixed_plan
from edge.metrics import VERDICT_LATENCY_BUCKETS_S, Histogram
from edge.products.models import Product
from edge.serials.states import SerialState
from edge.supervisor import LinkState
from simulators.camera_render import prepare, render_sparse
from simulators.scanner_wedge import WedgeScannerSim
from simulators.world import STEP_COUNTS

if TYPE_CHECKING:
    import sqlite3
    from collections.abc import Callable, Sequence

    from edge.aggregation.ops import ContainerRow
    from edge.config import DeviceConfig, LineConfig
    from edge.line.verdict import Verdict
    from edge.serials.ops import BatchRow
    from edge.store.store import Store
    from simulators.camera_render import SparseFrame
    from simulators.world import DefectPlan, Geometry, LineWorld, SimProduct

_LOG = structlog.get_logger("lineside.bench")

DEMO_CONFIG: Final = Path(__file__).resolve().parent.parent.parent / "config" / "demo.yaml"
TARGET_PPM: Final = 3000
"""The line rate DESIGN asks for on this 2-core machine."""
P99_LIMIT_S: Final = 0.020
"""The verdict latency the line may take at the 99th percentile, frame to decision (DESIGN)."""
DEFAULT_PPM: Final = 3000.0
DEFAULT_SECONDS: Final = 60.0
DEFAULT_DEFECT_EVERY: Final = 100
"""A reject-worthy defect on every 100th pack: 1 %, the high end of what a pharma line rejects (the demo's 1 in 10
is a showcase). Unreadable packs cost the decoder's fallback budget, so the mix moves the p99: say which."""
BELT_TICK_S: Final = 0.002
"""How often the belt moves: a tenth of a pitch at 3,000 ppm, so the stations see each pack within 2 ms."""
RAMP_S: Final = 2.0
"""How long the belt takes to reach the asked rate: the first packs meet a cold line at a lower rate."""
HEADLINE_METRIC: Final = "packs per minute through the whole line (print, inspect, reject, durable state)"
ACTOR: Final = Actor("bench", Role.SUPERVISOR)
PRODUCT: Final = "aspirin-500-eu"
ORDER: Final = """work_order: {work_order}
product: {product}
lot: "BENCH1"
expiry: 2028-10-31
quantity: {quantity}
line: {line}
"""
SPARE_SERIALS: Final = 64
"""Serials beyond the packs and the printer's buffer: the feeder tops up ahead of the last pack."""
CONNECT_WAIT_S: Final = 20.0
"""Longest the daemon may take to be ready with every device online (or to stop): loopback links, seconds at most."""
SETTLE_WAIT_S: Final = 20.0
"""Longest the packs past the reject station may take to be reported and judged once the belt is empty."""
RENDER_CHUNK: Final = 32
"""Frames per task sent to a rendering process: large enough that pickling is a small share."""
RENDER_NICENESS: Final = 10
"""Rendering runs while the daemon is connected to its devices: their polls time out if it takes the CPU."""
FIND_MAX_RESOLUTION: Final = 0.05
"""find-max stops bisecting when the bracket is narrower than this fraction of the rate that held."""
FIND_MAX_TRIALS: Final = 10
"""Most trials find-max runs: at 60 s each, the search stays within a quarter of an hour."""
FIND_MAX_CEILING_PPM: Final = 30_000.0
"""Highest rate find-max asks for: ten times the target, far beyond any line."""
FIND_MAX_FLOOR_PPM: Final = 60.0
"""Lowest rate find-max asks for: below a pack a second the figures say nothing of a line's rate."""


@dataclass(frozen=True, slots=True)
class LineBenchRun:
    """One run of the line benchmark: the rate asked for, for how long, and how the line is set up."""

    ppm: float = DEFAULT_PPM
    seconds: float = DEFAULT_SECONDS
    """Belt time: ppm * seconds / 60 packs enter the line."""
    defect_every: int = DEFAULT_DEFECT_EVERY
    """A reject-worthy defect on every nth pack (0: none), a cosmetic one (which must pass) between."""
    aggregation: bool = True
    """Pack good units into cases in line order, with case and pallet labels printed and verified."""
    plc_poll_s: float | None = None
    """The PLC driver's poll interval (None: the configuration's, 5 ms in the demo line)."""
    printer_poll_s: float | None = None
    """The printer driver's evidence poll interval (None: the configuration's)."""
    belt_tick_s: float = BELT_TICK_S
    ramp_s: float = RAMP_S
    """The belt speeds up linearly to the asked rate over this long, as a line's drive does (0: at once)."""
    decoder_fallback: bool | None = None
    """Override the inspection decoder's libdmtx fallback (None: as configured; on in the demo line)."""
    render_workers: int = max(1, os.cpu_count() or 1)
    """Processes rendering the frames before the clock starts (0: threads in this process)."""
    config: Path = DEMO_CONFIG

    def __post_init__(self) -> None:
        if self.ppm <= 0 or self.seconds <= 0 or self.belt_tick_s <= 0 or self.ramp_s < 0:
            raise ValueError(f"rate, seconds and belt tick must be positive: {self}")
        if self.render_workers < 0 or self.defect_every < 0:
            raise ValueError(f"render workers and defect spacing cannot be negative: {self}")

    @property
    def packs(self) -> int:
        """Packs that enter the line."""
        return max(2, round(self.ppm * self.seconds / 60.0))


def run_line_bench(run: LineBenchRun, *, find_max: bool = False) -> dict[str, Any]:
    """Run the benchmark (or, with find_max, search the highest rate that holds); return its JSON object."""
    if not find_max:
        return _result(_trial(run), ())
    trials = _find_max(run)
    held = [t for t in trials if t["ok"]]
    best = max(held, key=lambda t: t["rate"]["achieved_ppm"]) if held else max(trials, key=lambda t: t["asked_ppm"])
    result = _result(best, trials)
    above = [t for t in trials if not t["ok"] and (not held or t["asked_ppm"] > best["asked_ppm"])]
    result["find_max"] = {
        "max_ppm": best["rate"]["achieved_ppm"] if held else 0,
        "held_at_ppm": best["asked_ppm"] if held else None,
        "failed_above_at_ppm": min((t["asked_ppm"] for t in above), default=None),
        "limited_by": min(above, key=lambda t: t["asked_ppm"])["failures"] if above else [
            f"not limited below {FIND_MAX_CEILING_PPM:g} ppm or {FIND_MAX_TRIALS} trials"],
        "criteria": f"{run.seconds:g} s with zero wrong verdicts, zero missed rejects, zero late verdicts, "
                    f"p99 frame to decision <= {P99_LIMIT_S * 1000:g} ms, the line in Execute throughout",
        "trials": [_trial_summary(t) for t in trials],
    }
    return result


def format_text(result: dict[str, Any]) -> str:
    """Return the benchmark's figures as lines of text."""
    head, base, d = result["headline"], result["baseline"], result["details"]
    lat, trig, v = d["latency"], d["trigger_to_decision"], d["verdicts"]
    cpu, store = d["cpu"], d["store"]
    lines = [
        f"{head['metric']}: {head['value']:,.0f} {head['unit']} (target {head['target']:,})",
        f"baseline, {base['name']}: {base['value']:,.0f} {base['unit']}",
        (f"packs off the belt: {d['rate']['packs_off_belt']} ({v['shipped']} to the case packer, {v['rejected']} "
         f"rejected); achieved {d['rate']['achieved_ppm']:,.0f} ppm over {d['rate']['seconds']:.1f} s at full speed"),
        (f"verdict latency, frame to decision: p50 {lat['p50_ms']} ms, p99 {lat['p99_ms']} ms, max {lat['max_ms']} "
         f"ms ({lat['count']} verdicts)"),
        (f"trigger at the camera to decision: p50 {trig['p50_ms']} ms, p99 {trig['p99_ms']} ms, max "
         f"{trig['max_ms']} ms (deadline {d['limits']['camera_to_reject_ms']} ms)"),
        f"wrong verdicts: {v['wrong']}, missed rejects: {v['missed_rejects']}, late verdicts: {v['late']}",
        "p99 by pack: " + ", ".join(f"{name} {row['p99_ms']} ms ({row['count']})"
                                    for name, row in d["latency_by_pack_class"].items() if row["count"]),
        (f"cpu: {cpu['cores_used']:.2f} of {cpu['cores']} cores ({cpu['of_machine_percent']:.0f}% of the machine); "
         "by thread: ") + ", ".join(f"{name} {share:.0%}" for name, share in cpu["threads_core_share"].items()),
        f"store: {store['commits_per_s']:,.0f} commits/s, {store['changes_per_commit']:.1f} changes per commit",
        f"machine load average before/after: {d['machine']['loadavg_before']} / {d['machine']['loadavg_after']}",
    ]
    if d["failures"]:
        lines.append("failures: " + "; ".join(d["failures"]))
    found = result.get("find_max")
    if found is not None:
        lines.append(f"find-max: {found['max_ppm']:,.0f} ppm held at {found['held_at_ppm']} ppm asked; failed at "
                     f"{found['failed_above_at_ppm']} ppm: " + "; ".join(found["limited_by"]))
        lines.extend(f"  trial {t['asked_ppm']:>8,.0f} ppm: {'held' if t['ok'] else 'failed'}, achieved "
                     f"{t['achieved_ppm']:,.0f}, p99 {t['p99_ms']} ms, cpu {t['cores_used']:.2f} cores"
                     + (f" ({'; '.join(t['failures'])})" if t["failures"] else "") for t in found["trials"])
    return "\n".join(lines)


# -- one trial --------------------------------------------------------------------------------------


def _trial(run: LineBenchRun) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="lineside-bench-line-") as tmp:
        return asyncio.run(_measure(run, Path(tmp)))


def _result(trial: dict[str, Any], trials: Sequence[dict[str, Any]]) -> dict[str, Any]:
    ok = trial["ok"]
    return {
        "benchmark": "line",
        # No run judged a pack wrong or let a bad one through; a late verdict fails a rate, not correctness.
        "judged_right": all(not t["verdicts"]["wrong"] and not t["verdicts"]["missed_rejects"]
                            for t in (*trials, trial)),
        "headline": {
            "metric": HEADLINE_METRIC,
            "value": trial["rate"]["achieved_ppm"] if ok else 0,
            "unit": "ppm",
            "target": TARGET_PPM,
        },
        "baseline": {"name": "rate asked for", "value": trial["asked_ppm"], "unit": "ppm"},
        "details": trial,
    }


def _trial_summary(trial: dict[str, Any]) -> dict[str, Any]:
    return {
        "asked_ppm": trial["asked_ppm"],
        "ok": trial["ok"],
        "achieved_ppm": trial["rate"]["achieved_ppm"],
        "p99_ms": trial["latency"]["p99_ms"],
        "cores_used": trial["cpu"]["cores_used"],
        "loop_core_share": trial["cpu"]["threads_core_share"].get("MainThread", 0.0),
        "loadavg_before": trial["machine"]["loadavg_before"],
        "failures": trial["failures"],
    }


def _find_max(run: LineBenchRun) -> list[dict[str, Any]]:
    """Return the trials of a search for the highest rate that holds: grow until one fails, then bisect."""
    trials: list[dict[str, Any]] = []

    def attempt(ppm: float) -> bool:
        _LOG.warning("find-max trial", ppm=ppm, seconds=run.seconds)
        trial = _trial(dataclasses.replace(run, ppm=ppm))
        trials.append(trial)
        return bool(trial["ok"])

    low: float | None = None
    high: float | None = None
    rate = run.ppm
    while len(trials) < FIND_MAX_TRIALS:
        if attempt(rate):
            low = rate
            if high is not None or rate >= FIND_MAX_CEILING_PPM:
                break
            rate = min(FIND_MAX_CEILING_PPM, rate * 1.5)
        else:
            high = rate
            if low is not None or rate <= FIND_MAX_FLOOR_PPM:
                break
            rate = max(FIND_MAX_FLOOR_PPM, rate / 2)
    while low is not None and high is not None and len(trials) < FIND_MAX_TRIALS:
        if high - low <= low * FIND_MAX_RESOLUTION:
            break
        mid = float(round((low + high) / 2 / 50) * 50)  # a round rate, as lines are set
        if not low < mid < high:
            mid = (low + high) / 2
        if attempt(mid):
            low = mid
        else:
            high = mid
    return trials


async def _measure(run: LineBenchRun, state_dir: Path) -> dict[str, Any]:
    """Run the line once at run.ppm; return the trial's figures."""
    config = _bench_config(run, state_dir)
    plan = _plan(run)
    world_name = _camera_world(config)
    async with SimulatedLine(config, defects=plan) as line:
        daemon = Daemon(line.config)
        running = asyncio.create_task(daemon.run(handle_signals=False), name="bench daemon")
        try:
            await _online(line, daemon)
            batch = await _released_batch(daemon, config, run)
            frames, truth = await _prerender(daemon, line, batch, run, world_name)
            await _online(line, daemon)  # a link lost while rendering is back before the clock starts
            # The frames live through the run, as the daemon's startup objects do (it freezes those when ready):
            # out of the cyclic collector's reach, or a full collection walks them all while packs wait.
            gc.collect()
            gc.freeze()
            try:
                return await _produce(line, daemon, batch, run, frames=frames, truth=truth)
            finally:
                unregister_frames(world_name)
        finally:
            daemon.request_shutdown()
            async with asyncio.timeout(CONNECT_WAIT_S):
                await running


def _plan(run: LineBenchRun) -> DefectPlan | None:
    """Return the defect plan: the demo's mix, a reject-worthy defect every nth pack, a cosmetic one between."""
    return mixed_plan(run.defect_every, cosmetic_every=run.defect_every * 2 + 1) if run.defect_every else None


def _bench_config(run: LineBenchRun, state_dir: Path) -> LineConfig:
    """Return the demo line's configuration for the bench: own state, free ports, no upstream, the overrides."""
    config = load_config(run.config)
    devices = []
    for dev in config.devices:
        options = dev.parsed_options
        if isinstance(options, ModbusLineIo.Options) and run.plc_poll_s is not None:
            dev = dev.model_copy(update={"options": {**dev.options, "poll_interval_s": run.plc_poll_s}})  # noqa: PLW2901
        elif isinstance(options, PrinterOptions) and options.feeds == "units" and run.printer_poll_s is not None:
            dev = dev.model_copy(update={"options": {**dev.options, "poll_interval_s": run.printer_poll_s}})  # noqa: PLW2901
        devices.append(dev)
    update: dict[str, Any] = {
        "devices": tuple(devices),
        "storage": StorageConfig(state_dir=state_dir),
        "api": config.api.model_copy(update={"port": 0}),
        "hmi": config.hmi.model_copy(update={"port": 0}),
        # The batch is not closed here: there is nothing to deliver upstream.
        "upstream": config.upstream.model_copy(update={"targets": ()}),
    }
    if not run.aggregation:
        update["aggregation"] = None
    if run.decoder_fallback is not None and config.inspection is not None:
        decoder = {**config.inspection.decoder, "fallback": run.decoder_fallback}
        update["inspection"] = config.inspection.model_copy(update={"decoder": decoder})
    return config.model_copy(update=update)


def _camera_world(config: LineConfig) -> str:
    camera = _inspection_camera(config)
    options = camera.parsed_options if camera is not None else None
    if not isinstance(options, SimulatedCamera.Options):
        raise TypeError("the line benchmark needs the inspection camera to be a camera.simulated")
    return options.world


def _inspection_camera(config: LineConfig) -> DeviceConfig | None:
    if config.inspection is None:
        return None
    return next((dev for dev in config.devices if dev.id == config.inspection.camera), None)


async def _online(line: SimulatedLine, daemon: Daemon) -> None:
    """Return once the daemon is ready and every device link is online."""
    async with asyncio.timeout(CONNECT_WAIT_S):
        await daemon.ready.wait()
        for sim in line.sims.values():
            await sim.wait_for_connection()
        if line.plc is not None:
            await line.plc.wait_for_connection()
        while any(s.status.state is not LinkState.ONLINE for s in daemon.supervisors):  # noqa: ASYNC110
            await asyncio.sleep(0.01)  # supervisors signal nothing when they come online


async def _released_batch(daemon: Daemon, config: LineConfig, run: LineBenchRun) -> BatchRow:
    batches = daemon.batches
    if batches is None:
        raise RuntimeError("the daemon has no batch service")
    depth = max((d.parsed_options.depth or 0 for d in config.devices if isinstance(d.parsed_options, PrinterOptions)),
                default=0)
    text = ORDER.format(work_order=f"BENCH-{round(run.ppm)}", product=PRODUCT, line=config.line.id,
                        quantity=run.packs + depth + SPARE_SERIALS)
    batch = await batches.import_work_order(text, "bench work order", operator=ACTOR.name)
    return await batches.release(batch.id, operator=ACTOR.name)


# -- frames rendered before the clock ---------------------------------------------------------------


@dataclass(slots=True)
class _Truth:
    """What the world should show: the serial printed on each pack, in the order the printer gets them."""

    serial_of_code: dict[str, str]
    frames_bytes: int = 0
    render_s: float = 0.0


async def _prerender(
    daemon: Daemon, line: SimulatedLine, batch: BatchRow, run: LineBenchRun, world_name: str
) -> tuple[PrerenderedFrames, _Truth]:
    """Render every pack's frame as the camera will see it, register them for the camera; return them."""
    store = daemon.store
    printer_id = _unit_printer(line.config)
    if store is None or printer_id is None:
        raise RuntimeError("the line benchmark needs a store and a unit printer")
    printer_dev = next(d for d in line.config.devices if d.id == printer_id)
    options = printer_dev.parsed_options
    if not isinstance(options, PrinterOptions):
        raise TypeError(f"{printer_id} is not a printer")
    product_json, order_json = await store.read(BatchDocuments(batch.id))
    product = Product.model_validate(json.loads(product_json))
    plan = plan_for(printer_id, batch, product, order_of(order_json), options.fields)
    rows = await store.read(lambda conn: _allocated(conn, batch.id))
    # The feeder sends serials in row order and the printer prints them first in, first out: pack n carries
    # the nth. A pack that got no print (an underrun) shifts the rest; the camera then renders on the spot.
    codes = [plan.record(serial_id, serial, code).fields[0][1] for serial_id, serial, code in rows]
    truth = _Truth({code: serial for code, (_, serial, _) in zip(codes, rows, strict=True)})
    camera = _inspection_camera(line.config)
    cam = camera.parsed_options if camera is not None else None
    if not isinstance(cam, SimulatedCamera.Options):
        raise TypeError("the inspection camera is not simulated")
    world = line.world
    keys: list[FrameKey] = []
    for seq in range(1, min(run.packs, len(codes)) + 1):
        defects = world.defects(seq)
        previous = codes[seq - 2] if seq > 1 else None
        seen = codes_in_view(codes[seq - 1], previous, {d.kind for d in defects})
        keys.append((seq, tuple(seen), defects))
    size = (cam.width, cam.height)
    started = time.perf_counter()
    frames = PrerenderedFrames(size, cam.module_px, cam.seed)
    loop = asyncio.get_running_loop()
    pool: Executor | None = None
    if run.render_workers:
        pool = ProcessPoolExecutor(run.render_workers, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_render_worker, initargs=(size,))
    try:
        chunks = [keys[n:n + RENDER_CHUNK] for n in range(0, len(keys), RENDER_CHUNK)]
        # The daemon keeps running meanwhile (heartbeats, polls): the rendering waits are awaited, never blocked on.
        done = await asyncio.gather(*(loop.run_in_executor(pool, _render_chunk, chunk, size, cam.module_px, cam.seed)
                                      for chunk in chunks))
    finally:
        if pool is not None:
            # Joining the processes takes up to seconds: not on the loop, whose device polls and heartbeat go on.
            await asyncio.to_thread(pool.shutdown, wait=True, cancel_futures=True)
    # The camera pastes each patch onto this process's copy of the background: built here now, not by the first
    # capture on the event loop (a fifth of a second, a late verdict at any rate worth measuring).
    await asyncio.to_thread(prepare, size)
    for rendered in done:
        frames.frames.update(rendered)
    truth.render_s = time.perf_counter() - started
    truth.frames_bytes = sum(f.patch.nbytes for f in frames.frames.values())
    register_frames(world_name, frames)
    return frames, truth


def _allocated(conn: sqlite3.Connection, batch_id: int) -> list[tuple[int, str, bytes | None]]:
    return [(int(r[0]), str(r[1]), r[2]) for r in conn.execute(
        "SELECT id, serial, code FROM serial WHERE batch_id = ? AND state = ? ORDER BY id",
        (batch_id, int(SerialState.ALLOCATED)))]


def _render_worker(size: tuple[int, int]) -> None:
    """Set up a rendering process: below the line in priority (its polls must not time out), background built."""
    os.nice(RENDER_NICENESS)
    prepare(size)


def _render_chunk(
    keys: Sequence[FrameKey], size: tuple[int, int], module_px: int, seed: int
) -> list[tuple[FrameKey, SparseFrame]]:
    """Render the frames of keys (in a worker process or thread); return them with their keys."""
    return [(key, render_sparse(list(key[1]), key[2], size=size, module_px=module_px, rng=frame_rng(seed, key[0])))
            for key in keys]


def _unit_printer(config: LineConfig) -> str | None:
    return next((d.id for d in config.devices if d.enabled and isinstance(d.parsed_options, PrinterOptions)
                 and d.parsed_options.feeds == "units"), None)


# -- the run ----------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Pack:
    """One pack's way along the belt, as the stations saw it (perf_counter times)."""

    entered: float
    at_camera: float | None = None
    verdict: Verdict | None = None
    """The verdict the inspection service held for the pack when it reached the reject station."""
    at_reject: float | None = None
    rejected: bool = False
    left: float | None = None
    """When the pack left the belt: into the reject bin, or to the case packer."""


@dataclass(slots=True)
class _Watch:
    """Hooked to the world's stations: each pack's times and its verdict at the reject station."""

    verdicts: dict[int, Verdict]
    packs: dict[int, _Pack] = field(default_factory=dict)
    first_late: float | None = None

    def on_station(self, station: Station, product: SimProduct) -> None:
        now = time.perf_counter()
        if station is Station.PRINTER:
            self.packs[product.seq] = _Pack(now)
            return
        pack = self.packs.get(product.seq)
        if pack is None:
            return
        if station is Station.CAMERA:
            pack.at_camera = now
        elif station is Station.REJECT:
            # The PLC's hook ran first (it decided), so product.rejected is the station's outcome.
            pack.verdict, pack.at_reject, pack.rejected = self.verdicts.get(product.seq), now, bool(product.rejected)
            if pack.rejected:
                pack.left = now
            if pack.verdict is None and self.first_late is None:
                self.first_late = now


class _RecordedLatency(Histogram):
    """The inspection service's latency histogram, also keeping every observation and the pack it was for.

    The service judges one pack at a time, capturing its frame first and observing its latency last, so the
    pack whose frame the camera served last is the one observed.
    """

    def __init__(self, frames: PrerenderedFrames) -> None:
        super().__init__(VERDICT_LATENCY_BUCKETS_S)
        self.frames = frames
        self.values: list[float] = []
        self.by_pack: dict[int, tuple[float, float]] = {}
        """Each pack's latency and when it was decided (perf_counter)."""

    def observe(self, value: float) -> None:
        """Count one observation, keeping it and when it came."""
        super().observe(value)
        self.values.append(value)
        seq = self.frames.last_served
        if seq is not None and seq not in self.by_pack:
            self.by_pack[seq] = (value, time.perf_counter())


class _GcPauses:
    """Garbage collections while it is installed, with how long each held the interpreter (every thread waits)."""

    def __init__(self) -> None:
        self.pauses: list[tuple[int, float]] = []
        self._since = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._since = time.perf_counter()
        else:
            self.pauses.append((info["generation"], time.perf_counter() - self._since))

    def figures(self) -> dict[str, Any]:
        """Return the collections by generation: how many, their total and longest pause in ms."""
        out: dict[str, Any] = {}
        for generation in sorted({g for g, _ in self.pauses}):
            times = [t for g, t in self.pauses if g == generation]
            out[f"gen{generation}"] = {"count": len(times), "total_ms": round(sum(times) * 1000, 1),
                                       "max_ms": round(max(times) * 1000, 2)}
        return out


@dataclass(slots=True)
class _Belt:
    """How the belt ran, and how late its ticks were (the event loop's lag)."""

    started: float = 0.0
    ended: float = 0.0
    up_to_speed: float = 0.0
    """When the ramp ended and the belt ran at the asked rate."""
    lateness: list[float] = field(default_factory=list)
    stopped: str | None = None
    """Why the belt stopped before the packs were through, if it did."""


async def _produce(
    line: SimulatedLine, daemon: Daemon, batch: BatchRow, run: LineBenchRun, *, frames: PrerenderedFrames,
    truth: _Truth,
) -> dict[str, Any]:
    control, inspection, store = daemon.control, daemon.inspection, daemon.store
    if control is None or inspection is None or store is None:
        raise RuntimeError("the line benchmark needs the line control, inspection and a store")
    world = line.world
    watch = _Watch(inspection.verdicts)
    world.on_station.append(watch.on_station)
    latency = inspection.latency = _RecordedLatency(frames)
    collections = _GcPauses()
    machine_before = _loadavg()
    async with asyncio.TaskGroup() as tasks:
        packaging = tasks.create_task(line.run_packaging(), name="bench labellers")
        _pallet_scans(line, daemon)
        try:
            await control.command(Command.RESET, ACTOR, reason="bench")
            state = await control.command(Command.START, ACTOR, reason="bench", batch=batch.id)
            if state is not State.EXECUTE:
                raise RuntimeError(f"the line did not start: {control.status()['reason']}")
            cpu_before, threads_before, stats_before = time.process_time(), _thread_cpu(), _stats(store)
            gc.callbacks.append(collections)
            try:
                belt = await _drive(world, run, watch, control_state=lambda: control.state)
            finally:
                gc.callbacks.remove(collections)
            cpu_after, threads_after, stats_after = time.process_time(), _thread_cpu(), _stats(store)
            settled = await _settled(line, daemon)
            if control.state is State.EXECUTE:
                await control.command(Command.STOP, ACTOR, reason="bench done")
        finally:
            packaging.cancel()
    wall = belt.ended - belt.started
    classes = _classes(world)
    result: dict[str, Any] = {
        "asked_ppm": run.ppm,
        "seconds_asked": run.seconds,
        "packs_asked": run.packs,
        "setup": _setup(line.config, run),
        "rate": _rate(belt, watch),
        "latency": _percentiles(latency.values),
        "latency_by_pack_class": {name: _percentiles([latency.by_pack[s][0] for s in seqs if s in latency.by_pack])
                                  for name, seqs in classes.items()},
        "trigger_to_decision": _percentiles(
            [decided - at for seq, (_, decided) in latency.by_pack.items()
             if (at := _camera_time(watch, seq)) is not None]),
        "verdicts": _judge_verdicts(world, watch, truth),
        "first_late_verdict_at_s": None if watch.first_late is None else round(watch.first_late - belt.started, 2),
        "cpu": _cpu(cpu_after - cpu_before, wall, threads_before, threads_after),
        "gc": collections.figures(),
        "store": _store_figures(stats_before, stats_after, wall),
        "belt": {"tick_ms": run.belt_tick_s * 1000, "ramp_s": run.ramp_s,
                 **_percentiles(belt.lateness, prefix="tick_late"), "stopped": belt.stopped},
        "frames": {"prerendered": len(frames.frames), "served": frames.served, "rendered_during_run": frames.missed,
                   "prerender_s": round(truth.render_s, 1), "workers": run.render_workers,
                   "mb_held": round(truth.frames_bytes / 1e6, 1)},
        "printer": _printer(line, daemon),
        "inspection": {"settled_in_time": settled, "alarms": dict(inspection.counts.alarms),
                       "good": inspection.counts.good, "rejected": dict(inspection.counts.rejected),
                       "good_but_rejected": inspection.counts.good_but_rejected},
        "aggregation": await _aggregation(daemon, batch.id, len(world.shipped)),
        "line_alarms": [f"{a.kind}: {a.text}" for a in control.alarms],
        "machine": {"cores": os.cpu_count(), "loadavg_before": machine_before, "loadavg_after": _loadavg()},
    }
    result["limits"] = _limits(line.config, run, result, world.geometry)
    result["failures"] = _failures(result)
    result["ok"] = not result["failures"]
    return result


def _camera_time(watch: _Watch, seq: int) -> float | None:
    pack = watch.packs.get(seq)
    return None if pack is None else pack.at_camera


def _classes(world: LineWorld) -> dict[str, list[int]]:
    """Return the packs off the belt by what was planned for them: clean, cosmetic defect, reject-worthy defect."""
    out: dict[str, list[int]] = {"clean": [], "cosmetic": [], "reject-worthy": []}
    for product in (*world.shipped, *world.reject_bin):
        if not product.defects:
            out["clean"].append(product.seq)
        elif all(d.kind in COSMETIC_DEFECTS for d in product.defects):
            out["cosmetic"].append(product.seq)
        else:
            out["reject-worthy"].append(product.seq)
    return out


def _pallet_scans(line: SimulatedLine, daemon: Daemon) -> None:
    """Have the palletiser scan each case once it is closed, as the demo does."""
    agg, config = daemon.aggregation, line.config.aggregation
    if agg is None or config is None or config.pallets is None:
        return
    scanner = line.sims.get(config.pallets.scanner)
    if not isinstance(scanner, WedgeScannerSim):
        return

    async def scan_onto_pallet(case: ContainerRow) -> None:
        await scanner.scan(b"00" + case.identifier.encode("ascii"))

    agg.case_labels.on_closed.append(scan_onto_pallet)


async def _drive(
    world: LineWorld, run: LineBenchRun, watch: _Watch, *, control_state: Callable[[], State]
) -> _Belt:
    """Move the belt at run.ppm (after a linear ramp) until run.packs packs entered and left it."""
    belt = _Belt()
    full = run.ppm * world.geometry.pitch / 60.0
    """Counts a second at the asked rate."""
    shipped = len(world.shipped)
    belt.started = last = time.perf_counter()
    belt.up_to_speed = belt.started + run.ramp_s
    deadline = belt.up_to_speed + run.seconds * 3 + 30  # a line that fell far behind is not waited for
    moved = 0
    while world.infeed or world.products:
        await asyncio.sleep(run.belt_tick_s)
        now = time.perf_counter()
        belt.lateness.append(max(0.0, now - last - run.belt_tick_s))
        last = now
        if control_state() is not State.EXECUTE or not world.running:
            belt.stopped = (f"the line stopped after {world.entered} packs ({control_state().title}"
                            f"{'' if world.running else ', run output off'})")
            break
        # Whole steps only: LineWorld lets the next pack on a pitch after the step the last one entered in, so
        # steps that straddle a pitch would stretch every gap and the rate would fall short of the one asked.
        due = int(_distance(now - belt.started, full, run.ramp_s)) // STEP_COUNTS * STEP_COUNTS - moved
        if due > 0:
            world.advance(due)
            moved += due
        for product in world.shipped[shipped:]:
            pack = watch.packs.get(product.seq)
            if pack is not None:
                pack.left = now
        shipped = len(world.shipped)
        if world.infeed and world.entered >= run.packs:
            world.infeed = False
        if now > deadline:
            belt.stopped = f"not through after {now - belt.started:.0f} s"
            break
    belt.ended = time.perf_counter()
    return belt


def _distance(elapsed: float, full: float, ramp_s: float) -> float:
    """Return the counts the belt has moved after elapsed seconds, speeding up linearly to full over ramp_s."""
    if elapsed < ramp_s:
        return full * elapsed * elapsed / (2 * ramp_s)
    return full * (elapsed - ramp_s / 2)


async def _settled(line: SimulatedLine, daemon: Daemon) -> bool:
    """Return True once every pack past the reject station was reported and judged, False if that timed out."""
    inspection, world = daemon.inspection, line.world
    if inspection is None:
        return True
    try:
        async with asyncio.timeout(SETTLE_WAIT_S):
            while inspection.counts.settled < len(world.shipped) + len(world.reject_bin):  # noqa: ASYNC110
                await asyncio.sleep(0.01)  # the PLC's reports arrive by its polling
            await inspection.idle()
    except TimeoutError:
        return False
    return True


# -- figures ----------------------------------------------------------------------------------------


def _rate(belt: _Belt, watch: _Watch) -> dict[str, Any]:
    """Packs a minute off the belt with a verdict, over the packs that came on at full speed."""
    steady = sorted((p for p in watch.packs.values() if p.entered >= belt.up_to_speed and p.left is not None),
                    key=lambda p: p.left or 0.0)
    off = len(steady)
    judged = sum(1 for p in steady if p.verdict is not None)
    span = (steady[-1].left or 0.0) - (steady[0].left or 0.0) if off >= 2 else 0.0
    per_minute = (off - 1) / span * 60.0 if span > 0 else 0.0
    return {
        "achieved_ppm": round(per_minute * judged / off) if off else 0,
        "off_belt_ppm": round(per_minute),
        "packs_off_belt": sum(1 for p in watch.packs.values() if p.left is not None),
        "packs_at_full_speed": off,
        "judged_at_full_speed": judged,
        "seconds": round(span, 2),
        "belt_seconds": round(belt.ended - belt.started, 2),
    }


def _percentiles(values: Sequence[float], *, prefix: str = "") -> dict[str, Any]:
    """Return count, p50, p99 and max of values (seconds) in milliseconds."""
    p = f"{prefix}_" if prefix else ""
    if not values:
        return {f"{p}count": 0, f"{p}p50_ms": None, f"{p}p99_ms": None, f"{p}max_ms": None}
    ordered = sorted(values)

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)] * 1000, 2)

    return {f"{p}count": len(ordered), f"{p}p50_ms": at(0.5), f"{p}p99_ms": at(0.99),
            f"{p}max_ms": round(ordered[-1] * 1000, 2)}


def _judge_verdicts(world: LineWorld, watch: _Watch, truth: _Truth) -> dict[str, Any]:
    """Check every pack that left the belt against the world's truth."""
    wrong: Counter[str] = Counter()
    late = missed = 0
    examples: list[str] = []
    for product in (*world.shipped, *world.reject_bin):
        pack = watch.packs.get(product.seq)
        bad = any(d.kind not in COSMETIC_DEFECTS for d in product.defects)
        verdict = pack.verdict if pack is not None else None
        rejected = product.rejected or (pack is not None and pack.rejected)
        if bad and (not rejected or product in world.escaped):
            missed += 1
            examples.append(f"pack {product.seq} with {product.defects[0].kind.value} reached the case packer")
        if verdict is None:
            late += 1
            continue
        expected = truth.serial_of_code.get(product.code or "")
        problem = None
        if verdict.good and bad:
            problem = "good with a reject-worthy defect"
        elif verdict.good and (expected is None or verdict.serial != expected):
            problem = "good with another pack's code"
        elif not verdict.good and not bad:
            problem = "bad without a defect"
        if problem is not None:
            wrong[problem] += 1
            if len(examples) < 10:
                examples.append(f"pack {product.seq}: {problem} ({verdict.reason or 'good'} {verdict.detail})")
    return {
        "shipped": len(world.shipped),
        "rejected": len(world.reject_bin),
        "defects_planned": sum(1 for p in (*world.shipped, *world.reject_bin) if p.defects),
        "wrong": sum(wrong.values()),
        "wrong_by_kind": dict(wrong),
        "missed_rejects": missed,
        "late": late,
        "unconfirmed_rejects": len(world.escaped),
        "examples": examples[:10],
    }


def _thread_cpu() -> dict[str, float]:
    """Return CPU seconds per thread of this process by Python thread name (Linux; empty elsewhere)."""
    names = {t.native_id: t.name for t in threading.enumerate() if t.native_id is not None}
    ticks = float(os.sysconf("SC_CLK_TCK")) if hasattr(os, "sysconf") else 100.0
    out: dict[str, float] = {}
    with contextlib.suppress(OSError):
        for task in Path("/proc/self/task").iterdir():
            with contextlib.suppress(OSError, ValueError, IndexError):
                fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
                # utime and stime are the 14th and 15th fields; the split starts at the 3rd.
                seconds = (int(fields[11]) + int(fields[12])) / ticks
                name = names.get(int(task.name), f"thread {task.name}")
                out[name] = out.get(name, 0.0) + seconds
    return out


def _cpu(cpu_s: float, wall: float, before: dict[str, float], after: dict[str, float]) -> dict[str, Any]:
    cores = os.cpu_count() or 1
    used = cpu_s / wall if wall > 0 else 0.0
    shares: dict[str, float] = {}
    for name, seconds in after.items():
        # Pool threads are numbered (lineside-reading_0); their roles are what matters.
        role = name.rsplit("_", 1)[0] if name.rsplit("_", 1)[-1].isdigit() else name
        shares[role] = shares.get(role, 0.0) + max(0.0, seconds - before.get(name, 0.0))
    return {
        "process_cpu_s": round(cpu_s, 2),
        "wall_s": round(wall, 2),
        "cores_used": round(used, 3),
        "cores": cores,
        "of_machine_percent": round(100 * used / cores, 1),
        "threads_core_share": {name: round(s / wall, 3) for name, s in sorted(shares.items(), key=lambda i: -i[1])
                               if wall > 0 and s > 0},
    }


def _stats(store: Store) -> dict[str, int]:
    s = store.stats
    return {"commits": s.commits, "changes": s.changes, "failed_changes": s.failed_changes,
            "batches": s.batches, "largest_batch": s.largest_batch}


def _store_figures(before: dict[str, int], after: dict[str, int], wall: float) -> dict[str, Any]:
    commits = after["commits"] - before["commits"]
    changes = after["changes"] - before["changes"]
    return {
        "commits": commits,
        "changes": changes,
        "commits_per_s": round(commits / wall, 1) if wall > 0 else 0.0,
        "changes_per_s": round(changes / wall, 1) if wall > 0 else 0.0,
        "changes_per_commit": round(changes / commits, 2) if commits else 0.0,
        "failed_changes": after["failed_changes"] - before["failed_changes"],
        "largest_batch_since_start": after["largest_batch"],
        "synchronous": "FULL (WAL): every commit is fsynced",
    }


def _printer(line: SimulatedLine, daemon: Daemon) -> dict[str, Any]:
    engine = line.printer.engine if line.printer is not None else None
    feeders = {device: {"sent": f.counts.sent, "printed": f.counts.printed, "in_doubt": f.counts.in_doubt,
                        "holds": f.counts.holds, "refused": f.counts.refused}
               for device, f in daemon.feeders.items()}
    return {"printed_by_device": len(engine.printed) if engine is not None else 0,
            "underruns": engine.missed if engine is not None else 0, "feeders": feeders}


async def _aggregation(daemon: Daemon, batch_id: int, shipped: int) -> dict[str, Any]:
    agg = daemon.aggregation
    if agg is None:
        return {"on": False}
    cases = await agg.aggregation.containers_of_batch(batch_id, level="case")
    pallets = await agg.aggregation.containers_of_batch(batch_id, level="pallet")
    packed = sum(c.count for c in cases)
    return {"on": True, "mode": agg.config.cases.mode, "cases": len(cases),
            "cases_closed": sum(1 for c in cases if c.state == "closed"), "pallets": len(pallets),
            "units_in_cases": packed, "good_packs_shipped": shipped, "labels": agg.case_labels.describe()}


def _setup(config: LineConfig, run: LineBenchRun) -> dict[str, Any]:
    plc = next((d.parsed_options for d in config.devices if isinstance(d.parsed_options, ModbusLineIo.Options)),
               None)
    printer = next((d for d in config.devices if isinstance(d.parsed_options, PrinterOptions)
                    and d.parsed_options.feeds == "units"), None)
    popts = printer.parsed_options if printer is not None else None
    return {
        "config": str(run.config),
        "defect_every": run.defect_every,
        "cosmetic_every": run.defect_every * 2 + 1 if run.defect_every else 0,
        "defect_mix": _defect_mix(_plan(run), run.packs),
        "aggregation": run.aggregation,
        "plc_poll_ms": plc.poll_interval_s * 1000 if plc is not None else None,
        "printer": printer.driver if printer is not None else None,
        "printer_depth": popts.depth if isinstance(popts, PrinterOptions) else None,
        "printer_poll_ms": popts.poll_interval_s * 1000 if isinstance(popts, PrinterOptions) else None,
        "decoder": config.inspection.decoder if config.inspection is not None else None,
        "belt": "driven by the bench from the monotonic clock (LineWorld.run's fixed sleeps fall behind)",
        "rendering": "every frame rendered before the clock; the camera serves them",
    }


def _limits(config: LineConfig, run: LineBenchRun, result: dict[str, Any], geometry: Geometry) -> dict[str, Any]:
    """Return the figures that bound the rate at this setting, each worked out for run.ppm."""
    pitch_ms = 60_000.0 / run.ppm
    plc = next((d.parsed_options for d in config.devices if isinstance(d.parsed_options, ModbusLineIo.Options)),
               None)
    between = (geometry.reject - geometry.camera) / geometry.pitch
    out: dict[str, Any] = {
        "pitch_ms": round(pitch_ms, 2),
        "camera_to_reject_ms": round(between * pitch_ms, 1),
        "packs_between_camera_and_reject": between,
    }
    if plc is not None:
        rmap = plc.resolved_map()
        out |= {
            "plc_poll_ms": plc.poll_interval_s * 1000,
            "plc_camera_ring_ms": round(rmap.station(Station.CAMERA).entries * pitch_ms, 1),
            "plc_verdict_ring_entries": rmap.verdicts.entries,
        }
    setup = result["setup"]
    if setup["printer_depth"]:
        out["printer_buffer_ms"] = round(setup["printer_depth"] * pitch_ms, 1)
    # What LineWorld.run would sleep per step at this rate (the bench drives the belt itself).
    out["lineside_world_run_sleep_ms"] = round(pitch_ms / max(1, geometry.pitch // STEP_COUNTS), 3)
    shares = result["cpu"]["threads_core_share"]
    judged = max(1, result["latency"]["count"])
    wall = result["cpu"]["wall_s"]
    out["loop_thread_core_share"] = shares.get("MainThread", 0.0)
    out["decode_and_grade_cpu_ms_per_frame"] = round(shares.get("lineside-reading", 0.0) * wall * 1000 / judged, 2)
    out["store_writer_core_share"] = shares.get("lineside-store-writer", 0.0)
    return out


def _failures(result: dict[str, Any]) -> list[str]:
    v, lat = result["verdicts"], result["latency"]
    out = []
    if result["belt"]["stopped"]:
        out.append(result["belt"]["stopped"])
    if v["wrong"]:
        out.append(f"{v['wrong']} wrong verdict(s): " + ", ".join(f"{n} {k}" for k, n in v["wrong_by_kind"].items()))
    if v["missed_rejects"] or v["unconfirmed_rejects"]:
        out.append(f"{v['missed_rejects']} missed reject(s), {v['unconfirmed_rejects']} unconfirmed")
    if v["late"]:
        out.append(f"{v['late']} pack(s) reached the reject station before their verdict")
    if lat["p99_ms"] is None or lat["p99_ms"] > P99_LIMIT_S * 1000:
        out.append(f"p99 frame to decision {lat['p99_ms']} ms > {P99_LIMIT_S * 1000:g} ms")
    if not result["inspection"]["settled_in_time"]:
        out.append("packs past the reject station were not all reported and judged")
    if result["frames"]["rendered_during_run"]:
        out.append(f"{result['frames']['rendered_during_run']} frame(s) rendered during the run (the printer's "
                   "order differed from the serials')")
    return out


def _loadavg() -> list[float]:
    with contextlib.suppress(OSError):
        return [round(x, 2) for x in os.getloadavg()]
    return []


def _defect_mix(plan: DefectPlan | None, packs: int) -> dict[str, int]:
    """Return how many of the first packs carry each defect kind under plan."""
    kinds: Counter[str] = Counter()
    for seq in range(1, packs + 1 if plan is not None else 1):
        for defect in plan(seq) if plan is not None else ():
            kinds[defect.kind.value] += 1
    return dict(sorted(kinds.items()))
