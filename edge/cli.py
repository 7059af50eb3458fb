"""The `lineside` command: run the daemon, the demo and the simulators, and check configuration."""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

from edge import __version__
from edge.errors import ConfigError, EdgeError

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from edge.config import LineConfig

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2

_LOG = structlog.get_logger("lineside.cli")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `lineside` console script; returns the process exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lineside", description="Level-2 line controller for pharma serialization.")
    parser.add_argument("--version", action="version", version=f"lineside {__version__}")
    sub = parser.add_subparsers(title="commands", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run the line controller daemon")
    run.add_argument("-c", "--config", type=Path, required=True, help="line configuration (YAML)")
    _log_options(run)
    run.set_defaults(handler=_cmd_run)

    demo = sub.add_parser("demo", help="run the daemon with every device simulated, in one process")
    demo.add_argument("-c", "--config", type=Path, help="demo line configuration (default: config/demo.yaml)")
    demo.add_argument("--state-dir", type=Path, help="keep state here instead of a temporary directory")
    demo.add_argument("--duration", type=float, help="stop after this many seconds (default: until Ctrl-C)")
    _log_options(demo)
    demo.set_defaults(handler=_cmd_demo)

    sim = sub.add_parser("simulate", help="run the simulators of a configuration's devices on their own")
    sim.add_argument("-c", "--config", type=Path, required=True, help="line configuration (YAML)")
    sim.add_argument("--duration", type=float, help="stop after this many seconds (default: until Ctrl-C)")
    _log_options(sim)
    sim.set_defaults(handler=_cmd_simulate)

    check = sub.add_parser("check-config", help="validate a line configuration; errors as FILE:LINE:COL: message")
    check.add_argument("file", type=Path)
    check.add_argument("--json", action="store_true", help="print the errors as a JSON list")
    check.set_defaults(handler=_cmd_check_config)

    schema = sub.add_parser("config-schema", help="print the JSON Schema of line configurations")
    schema.set_defaults(handler=_cmd_config_schema)

    bench = sub.add_parser("bench", help="run a benchmark and print our figure beside a baseline")
    bench.add_argument("name", choices=["store"], help="store: durable state changes per second")
    bench.add_argument("--changes", type=int, default=100_000, help="state changes to make (store)")
    bench.add_argument("--json", action="store_true", help="print one JSON object")
    bench.set_defaults(handler=_cmd_bench)
    return parser


def _log_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--log-level", choices=["debug", "info", "warning", "error"], help="override logging.level")
    parser.add_argument("--log-format", choices=["auto", "json", "console"], help="override logging.format")


def _load(path: Path) -> LineConfig | None:
    from edge.config import load_config  # noqa: PLC0415 - keeps `lineside --help` fast

    try:
        return load_config(path)
    except ConfigError as err:
        for issue in err.issues:
            print(issue, file=sys.stderr)
        return None


def _setup_logging(config: LineConfig, args: argparse.Namespace) -> None:
    from edge.log import configure  # noqa: PLC0415 - keeps `lineside --help` fast

    configure(
        level=args.log_level or config.logging.level,
        fmt=args.log_format or config.logging.format,
        redact=config.logging.redact,
    )


def _cmd_run(args: argparse.Namespace) -> int:
    from edge.daemon import Daemon  # noqa: PLC0415 - keeps `lineside --help` fast

    config = _load(args.config)
    if config is None:
        return EXIT_BAD_INPUT
    _setup_logging(config, args)
    digest = hashlib.sha256(args.config.read_bytes()).hexdigest()
    try:
        return asyncio.run(Daemon(config, config_sha256=digest).run())
    except EdgeError as err:
        _LOG.error("line controller cannot start", error=str(err))
        return EXIT_FAILED


def _cmd_demo(args: argparse.Namespace) -> int:
    from edge.demo import run_demo  # noqa: PLC0415 - keeps `lineside --help` fast

    return run_demo(config_path=args.config, state_dir=args.state_dir, duration_s=args.duration,
                    log_level=args.log_level, log_format=args.log_format)


def _cmd_simulate(args: argparse.Namespace) -> int:
    from edge.demo import run_simulators  # noqa: PLC0415 - keeps `lineside --help` fast

    config = _load(args.config)
    if config is None:
        return EXIT_BAD_INPUT
    _setup_logging(config, args)
    return asyncio.run(run_simulators(config, duration_s=args.duration))


def _cmd_check_config(args: argparse.Namespace) -> int:
    from edge.config import check_config_main  # noqa: PLC0415 - keeps `lineside --help` fast

    return check_config_main(args.file, as_json=args.json)


def _cmd_config_schema(_args: argparse.Namespace) -> int:
    from edge.config import config_json_schema  # noqa: PLC0415 - keeps `lineside --help` fast

    print(json.dumps(config_json_schema(), indent=2))
    return EXIT_OK


def _cmd_bench(args: argparse.Namespace) -> int:
    import tempfile  # noqa: PLC0415 - only benchmarks need it

    from edge.store.bench import bench_store  # noqa: PLC0415 - keeps `lineside --help` fast

    with tempfile.TemporaryDirectory(prefix="lineside-bench-") as tmp:
        result = asyncio.run(bench_store(Path(tmp), changes=args.changes, batch_concurrency=1024))
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        head, base = result["headline"], result["baseline"]
        print(f"{head['metric']}: {head['value']:,.0f} {head['unit']} (target {head['target']:,})")
        print(f"baseline, {base['name']}: {base['value']:,.0f} {base['unit']}")
    return EXIT_OK
