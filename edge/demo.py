"""The embedded demo: the line controller and a simulator of every device, in one process."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import secrets
import signal
import tempfile
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

from edge.config import DeviceConfig, StorageConfig, load_config
from edge.daemon import Daemon
from edge.errors import ConfigError, EdgeError
from edge.log import configure
from simulators.catalog import simulator_for
from simulators.scanner_wedge import WedgeScannerSim

if TYPE_CHECKING:
    from edge.config import LineConfig
    from simulators.base import Simulator

_LOG = structlog.get_logger("lineside.demo")

DEMO_CONFIG = Path(__file__).resolve().parent.parent / "config" / "demo.yaml"
# A scan every half second: readable on a terminal, and enough to show reads flowing.
SCAN_INTERVAL_S = 0.5
# How long the demo waits for the daemon to connect to a simulator before it reports a failure.
CONNECT_WAIT_S = 10.0
# GS1's example GTIN for documentation; never on a real pack.
DEMO_GTIN = "09506000134352"


def run_demo(
    *,
    config_path: Path | None,
    state_dir: Path | None,
    duration_s: float | None,
    log_level: str | None = None,
    log_format: str | None = None,
) -> int:
    """Run the demo until Ctrl-C or the duration; return the exit code."""
    path = config_path or DEMO_CONFIG
    try:
        config = load_config(path)
    except ConfigError as err:
        for issue in err.issues:
            print(issue)  # noqa: T201 - the command's output
        return 2
    configure(
        level=log_level or config.logging.level,
        fmt=log_format or config.logging.format,  # type: ignore[arg-type] # validated by the config model
        redact=config.logging.redact,
    )
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    with tempfile.TemporaryDirectory(prefix="lineside-demo-") as tmp:
        where = state_dir or Path(tmp)
        config = config.model_copy(update={"storage": StorageConfig(state_dir=where)})
        try:
            return asyncio.run(_demo(config, digest, duration_s))
        except EdgeError as err:
            _LOG.error("demo cannot start", error=str(err))
            return 1


async def _demo(config: LineConfig, config_sha256: str, duration_s: float | None) -> int:
    sims = {dev.id: simulator_for(dev.driver, dev.parsed_options) for dev in config.devices if dev.enabled}
    for sim in sims.values():
        await sim.bind()
    config = _pointed_at(config, sims)
    reads: Counter[str] = Counter()
    daemon: Daemon

    async def traffic() -> None:
        await daemon.ready.wait()
        async with asyncio.timeout(CONNECT_WAIT_S):
            for sim in sims.values():
                await sim.wait_for_connection()
        while True:
            for device_id, sim in sims.items():
                if isinstance(sim, WedgeScannerSim) and sim.connections:
                    await sim.scan(_demo_code())
                    reads[device_id] += 1
            await asyncio.sleep(SCAN_INTERVAL_S)

    async def stop_after() -> None:
        if duration_s is None:
            return
        await asyncio.sleep(duration_s)
        daemon.request_shutdown()

    services = [sim.serve for sim in sims.values()]
    daemon = Daemon(config, config_sha256=config_sha256, services=[*services, traffic, stop_after])
    _LOG.info("demo starting", devices=len(sims), state_dir=str(config.storage.state_dir))
    code = await daemon.run()
    for device_id, count in sorted(reads.items()):
        _LOG.info("demo summary", device=device_id, codes_scanned=count)
    return code


async def run_simulators(config: LineConfig, *, duration_s: float | None) -> int:
    """Serve a simulator for every device of a configuration at its configured TCP port until stopped."""
    sims: list[Simulator] = []
    for dev in config.devices:
        if not dev.transport.is_tcp:
            _LOG.warning("not simulated: only socket:// devices can be", device=dev.id, url=dev.url)
            continue
        sims.append(simulator_for(dev.driver, dev.parsed_options, port=dev.transport.host_port[1]))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        async with asyncio.TaskGroup() as tg:
            serving = []
            for sim in sims:
                _LOG.info("simulator listening", url=await sim.bind(), simulator=type(sim).__name__)
                serving.append(tg.create_task(sim.serve()))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(duration_s):
                    await stop.wait()
            for task in serving:
                task.cancel()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
    return 0


def _pointed_at(config: LineConfig, sims: dict[str, Simulator]) -> LineConfig:
    devices = []
    for dev in config.devices:
        sim = sims.get(dev.id)
        if sim is None:
            devices.append(dev)
            continue
        data = dev.model_dump(exclude_unset=True) | {"url": sim.url}
        data.pop("serial", None)
        devices.append(DeviceConfig.model_validate(data))
    return config.model_copy(update={"devices": tuple(devices)})


def _demo_code() -> bytes:
    """Return a GS1 element string as a pack's DataMatrix carries it: GTIN, expiry, lot, serial."""
    serial = secrets.token_hex(6).upper()
    return f"01{DEMO_GTIN}1728123110DEMO01\x1d21{serial}".encode()
