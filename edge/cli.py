"""The `lineside` command: run the daemon, the demo and the simulators, and check configuration."""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from edge import __version__, batch_cli, validation
from edge.aggregation import cli as aggregation_cli
from edge.control import cli as control_cli
from edge.epcis import cli as epcis_cli
from edge.errors import ConfigError, EdgeError
from edge.opcua import cli as opcua_cli
from edge.vision import cli as vision_cli

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


def _parser() -> argparse.ArgumentParser:  # noqa: PLR0915 - the whole command line, read top to bottom
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
    demo.add_argument("--units", type=_positive, default=200, help="serials to print (default 200)")
    demo.add_argument("--ppm", type=float, default=600.0, help="packs a minute on the belt (default 600)")
    demo.add_argument("--defect-every", type=int, default=10,
                      help="a reject-worthy defect on every nth pack, cosmetic ones between (0: none; default 10)")
    demo.add_argument("--duration", type=float, help="give up after this many seconds (default: when printed)")
    demo.add_argument("--resume", action="store_true",
                      help="carry on the demo's unfinished batch in --state-dir (after a crash or a kill) instead of "
                           "starting another; start one when there is none")
    demo.add_argument("--spare", type=int, default=0,
                      help="serials allocated beyond the packs and the printer's buffer, for restarts (default 0)")
    demo.add_argument("--upstream", choices=["open-scs"],
                      help="open-scs: draw the batch's serials over OPEN-SCS (OPC 30260) from a simulated L3 pool "
                           "server in the same process, report their states back and return the unused ones")
    demo.add_argument("--faults", metavar="SPEC",
                      help="instead of one free-running batch, one batch per fault: comma-separated fault names, "
                           "each optionally @PACK (the pack after which it strikes; default a third of the way), or "
                           "'all'. Faults: printer-disconnect, printer-out-of-ink, camera-stall, plc-connection-loss, "
                           "reject-not-confirmed, upstream-down, disk-full, garbage. The demo recovers as an "
                           "operator does and checks every invariant after each batch")
    _log_options(demo)
    demo.set_defaults(handler=_cmd_demo)

    sim = sub.add_parser("simulate", help="run the simulators of a configuration's devices on their own")
    sim.add_argument("-c", "--config", type=Path, required=True, help="line configuration (YAML)")
    sim.add_argument("--duration", type=float, help="stop after this many seconds (default: until Ctrl-C)")
    sim.add_argument("--ppm", type=float, default=0.0,
                     help="products a minute past each simulated printer's head (default 0: none)")
    _log_options(sim)
    sim.set_defaults(handler=_cmd_simulate)

    check = sub.add_parser("check-config", help="validate a line configuration; errors as FILE:LINE:COL: message")
    check.add_argument("file", type=Path)
    check.add_argument("--json", action="store_true", help="print the errors as a JSON list")
    check.set_defaults(handler=_cmd_check_config)

    schema = sub.add_parser("config-schema", help="print the JSON Schema of line configurations")
    schema.set_defaults(handler=_cmd_config_schema)

    gs1 = sub.add_parser("gs1", help="read, check and build GS1 element strings")
    gs1_sub = gs1.add_subparsers(title="gs1 commands", required=True, metavar="ACTION")
    gs1_parse = gs1_sub.add_parser("parse", help="read scan data, HRI text or a Digital Link and check it")
    gs1_parse.add_argument("data", nargs="?", help="the data; GS may be typed as \\x1d or {GS}")
    gs1_parse.add_argument("--stdin", action="store_true", help="read one DATA per line, answer one line each")
    gs1_parse.add_argument("--json", action="store_true", help="print JSON")
    gs1_parse.set_defaults(handler=_cmd_gs1_parse)
    gs1_build = gs1_sub.add_parser("build", help="build the element string, HRI and Digital Link from AIs")
    gs1_build.add_argument("--ai", action="append", required=True, metavar="AI=VALUE", help="one element, in order")
    gs1_build.add_argument("--json", action="store_true", help="print JSON")
    gs1_build.set_defaults(handler=_cmd_gs1_build)

    batch_cli.add_parser(sub)
    aggregation_cli.add_parser(sub)
    epcis_cli.add_parser(sub)
    validation.add_parser(sub)
    vision_cli.add_parser(sub)
    control_cli.add_parser(sub)
    opcua_cli.add_parser(sub)

    bench = sub.add_parser("bench", help="run a benchmark and print our figure beside a baseline")
    bench.add_argument("name", choices=["store", "gs1", "print", "decode", "aggregation", "epcis", "crash", "line",
                                         "faults"],
                       help="store: durable serial transitions/s and a million-serial batch; gs1: parse+validate/s; "
                            "print: serials/s with per-serial evidence through each printer driver and simulator; "
                            "decode: ms per 1280x1024 frame to find and decode a GS1 DataMatrix; "
                            "aggregation: ms per 2448x2048 case-top frame to decode 24 and 100 codes; "
                            "epcis: seconds and peak MB to export a batch with its cases and pallets as one EPCIS "
                            "document; crash: the demo line SIGKILLed at random moments, resumed, every invariant "
                            "checked after each kill; line: packs a minute through the whole simulated line (print, "
                            "inspect, reject, durable state) at --ppm; faults: a whole batch per fault scenario "
                            "(printer, camera, PLC, reject sensor, upstream, disk full, line noise), every invariant "
                            "checked, beside the same batch without a fault")
    bench.add_argument("--transitions", type=_positive, default=300_000,
                       help="serial transitions per pass (store; default 300,000)")
    bench.add_argument("--serials", type=_positive, default=1_000_000,
                       help="serials in the big batch, allocated and closed in a child process (store)")
    bench.add_argument("--skip-million", action="store_true", help="skip the big batch (store)")
    bench.add_argument("--strings", type=int, default=200_000, help="element strings to parse (gs1)")
    bench.add_argument("--units", type=_positive,
                       help="serials printed per driver (print; default 1,000); units in the batch (epcis; default "
                            "1,000,000; crash: default 20 per kill, at least 120; faults: packs per "
                            "batch, default 90)")
    bench.add_argument("--kills", type=_positive, default=50, help="SIGKILLs of the demo line (crash; default 50)")
    bench.add_argument("--repeat", type=_positive, default=1, help="runs of every scenario (faults; default 1)")
    bench.add_argument("--scenario", action="append",
                       help="only this fault scenario, e.g. printer-out-of-ink (faults; default: all)")
    bench.add_argument("--seed", type=int, default=20270401, help="seed of the kill moments (crash)")
    bench.add_argument("--cold", action="store_true",
                       help="start each run in a new interpreter instead of forking a warmed one (crash)")
    bench.add_argument("--driver", action="append", help="only this printer driver, e.g. printer.zipher (print)")
    bench.add_argument("--frames", type=_positive, default=300, help="frames per set, clean and degraded (decode)")
    bench.add_argument("--ppm", type=float, default=3000.0, help="line rate asked for, packs a minute (line)")
    bench.add_argument("--seconds", type=float, default=60.0, help="belt time at that rate (line; default 60)")
    bench.add_argument("--find-max", action="store_true",
                       help="search the highest rate that holds for --seconds, starting at --ppm (line)")
    bench.add_argument("--defect-every", type=int, default=100,
                       help="a reject-worthy defect on every nth pack, cosmetic ones between (line; default 100; "
                            "0: none)")
    bench.add_argument("--no-aggregation", action="store_true", help="no case packing and labels (line)")
    bench.add_argument("--plc-poll-ms", type=float, help="the PLC driver's poll interval (line; default: config)")
    bench.add_argument("--decoder-fallback", choices=["on", "off"],
                       help="the inspection decoder's libdmtx fallback (line; default: config)")
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
    from edge.demo import DemoRun, run_demo  # noqa: PLC0415 - keeps `lineside --help` fast

    if args.faults is not None:
        return _cmd_demo_faults(args)
    if args.ppm <= 0:
        print(f"lineside demo: --ppm must be positive, not {args.ppm:g}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.resume and args.state_dir is None:
        print("lineside demo: --resume carries on the batch in a --state-dir; give one", file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.resume and args.upstream is not None:
        # The simulated L3 keeps its pools in memory: a resumed line would report serials it never issued.
        print("lineside demo: --upstream open-scs does not go with --resume (the simulated L3 forgets its serials "
              "when the demo ends)", file=sys.stderr)
        return EXIT_BAD_INPUT
    return run_demo(config_path=args.config, state_dir=args.state_dir,
                    run=DemoRun(units=args.units, ppm=args.ppm, defect_every=max(0, args.defect_every),
                                duration_s=args.duration, resume=args.resume, spare=max(0, args.spare),
                                serial_upstream=args.upstream),
                    log_level=args.log_level, log_format=args.log_format)


def _cmd_demo_faults(args: argparse.Namespace) -> int:
    """Run a batch per fault of --faults, recovering as an operator does; exit 1 when an invariant broke."""
    from edge.line.fault_demo import FaultSpecError, parse_faults, run_fault_demo  # noqa: PLC0415 - keeps --help fast
    from edge.log import configure  # noqa: PLC0415 - keeps `lineside --help` fast

    if args.resume or args.upstream is not None or args.config is not None:
        print("lineside demo: --faults runs its own batches on the demo line; it does not go with --resume, "
              "--upstream or -c", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        faults = parse_faults(args.faults, units=args.units)
    except FaultSpecError as err:
        print(f"lineside demo: --faults: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    # The faults' own alarms and warnings are what the demo shows, in its table; the log would repeat them.
    configure(level=args.log_level or "critical", fmt=args.log_format or "console")
    return run_fault_demo(faults, units=args.units, defect_every=max(0, args.defect_every),
                          state_dir=args.state_dir)


def _cmd_simulate(args: argparse.Namespace) -> int:
    from edge.demo import run_simulators  # noqa: PLC0415 - keeps `lineside --help` fast

    config = _load(args.config)
    if config is None:
        return EXIT_BAD_INPUT
    _setup_logging(config, args)
    if args.ppm < 0:
        print(f"lineside simulate: --ppm cannot be negative, not {args.ppm:g}", file=sys.stderr)
        return EXIT_BAD_INPUT
    return asyncio.run(run_simulators(config, duration_s=args.duration, ppm=args.ppm))


def _cmd_check_config(args: argparse.Namespace) -> int:
    from edge.config import check_config_main  # noqa: PLC0415 - keeps `lineside --help` fast

    return check_config_main(args.file, as_json=args.json)


def _cmd_config_schema(_args: argparse.Namespace) -> int:
    from edge.config import config_json_schema  # noqa: PLC0415 - keeps `lineside --help` fast

    print(json.dumps(config_json_schema(), indent=2))
    return EXIT_OK


def _cmd_bench(args: argparse.Namespace) -> int:  # noqa: PLR0912 - one branch per benchmark
    if args.name == "crash":
        return _cmd_bench_crash(args)
    if args.name == "faults":
        return _cmd_bench_faults(args)
    if args.name == "line":
        return _cmd_bench_line(args)
    if args.name == "decode":
        from edge.vision.bench import bench_decode  # noqa: PLC0415 - keeps `lineside --help` fast

        result = bench_decode(frames=args.frames)
    elif args.name == "aggregation":
        from edge.aggregation.bench import bench_aggregation  # noqa: PLC0415 - keeps `lineside --help` fast

        result = bench_aggregation()
    elif args.name == "gs1":
        from edge.gs1.bench import bench_gs1  # noqa: PLC0415 - keeps `lineside --help` fast

        result = bench_gs1(strings=args.strings)
    elif args.name == "print":
        import tempfile  # noqa: PLC0415 - only the benchmarks need it

        from edge.line.bench_print import DIALECTS, bench_print  # noqa: PLC0415 - keeps `lineside --help` fast
        from edge.log import configure  # noqa: PLC0415 - keeps `lineside --help` fast

        configure(level="warning", fmt="console")  # device chatter would drown the figures
        drivers = tuple(args.driver or DIALECTS)
        unknown = sorted(set(drivers) - set(DIALECTS))
        if unknown:
            print(f"lineside bench print: unknown printer driver {', '.join(unknown)}; known: {', '.join(DIALECTS)}",
                  file=sys.stderr)
            return EXIT_BAD_INPUT
        with tempfile.TemporaryDirectory(prefix="lineside-bench-") as tmp:
            result = asyncio.run(bench_print(Path(tmp), units=args.units or 1000, drivers=drivers))
    elif args.name == "epcis":
        from edge.epcis.bench import DEFAULT_UNITS, run  # noqa: PLC0415 - keeps `lineside --help` fast

        result = run(args.units or DEFAULT_UNITS)
    else:
        import tempfile  # noqa: PLC0415 - only this benchmark needs it

        from edge.serials.bench import bench_serials  # noqa: PLC0415 - keeps `lineside --help` fast

        with tempfile.TemporaryDirectory(prefix="lineside-bench-") as tmp:
            result = asyncio.run(bench_serials(Path(tmp), transitions=args.transitions,
                                               million_serials=None if args.skip_million else args.serials))
    if args.json:
        print(json.dumps(result, indent=2))
    elif args.name == "store":
        _print_store_bench(result)
    elif args.name == "print":
        _print_print_bench(result)
    elif args.name == "decode":
        _print_decode_bench(result)
    elif args.name == "aggregation":
        from edge.aggregation.bench import format_text  # noqa: PLC0415 - keeps `lineside --help` fast

        print(format_text(result))
    elif args.name == "epcis":
        from edge.epcis.bench import format_text as epcis_text  # noqa: PLC0415 - keeps `lineside --help` fast

        print(epcis_text(result))
    else:
        head, base = result["headline"], result["baseline"]
        print(f"{head['metric']}: {head['value']:,.0f} {head['unit']} (target {head['target']:,})")
        print(f"baseline, {base['name']}: {base['value']:,.0f} {base['unit']}")
    return EXIT_OK


def _cmd_bench_crash(args: argparse.Namespace) -> int:
    """Run the crash campaign; print its figures; exit 1 when an invariant broke."""
    from edge.crash import bench_crash, format_text  # noqa: PLC0415 - keeps `lineside --help` fast

    def progress(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    result = bench_crash(kills=args.kills, seed=args.seed, units=args.units, warm=not args.cold, progress=progress)
    print(json.dumps(result, indent=2) if args.json else format_text(result))
    return EXIT_OK if result["details"]["ok"] else EXIT_FAILED


def _cmd_bench_line(args: argparse.Namespace) -> int:
    """Run the line benchmark; print its figures; exit 1 when a pack was judged wrong or a bad one got through."""
    from edge.line.bench_line import LineBenchRun, format_text, run_line_bench  # noqa: PLC0415 - keeps --help fast
    from edge.log import configure  # noqa: PLC0415 - keeps `lineside --help` fast

    try:
        run = LineBenchRun(ppm=args.ppm, seconds=args.seconds, defect_every=max(0, args.defect_every),
                           aggregation=not args.no_aggregation,
                           plc_poll_s=None if args.plc_poll_ms is None else args.plc_poll_ms / 1000,
                           decoder_fallback=None if args.decoder_fallback is None else args.decoder_fallback == "on")
    except ValueError as err:
        print(f"lineside bench line: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    configure(level="warning", fmt="console")  # device chatter would drown the figures
    result = run_line_bench(run, find_max=args.find_max)
    print(json.dumps(result, indent=2) if args.json else format_text(result))
    return EXIT_OK if result["judged_right"] else EXIT_FAILED


def _cmd_bench_faults(args: argparse.Namespace) -> int:
    """Run the fault campaign; print its figures; exit 1 when an invariant broke in any scenario."""
    from edge.line.campaign import BENCH_UNITS, SCENARIOS, bench_faults, format_text  # noqa: PLC0415 - keeps `lineside --help` fast
    from edge.log import configure  # noqa: PLC0415 - keeps `lineside --help` fast

    unknown = sorted(set(args.scenario or ()) - set(SCENARIOS))
    if unknown:
        print(f"lineside bench faults: unknown scenario {', '.join(unknown)}; known: {', '.join(SCENARIOS)}",
              file=sys.stderr)
        return EXIT_BAD_INPUT
    configure(level="critical", fmt="console")  # the faults' own alarms and warnings would drown the figures

    def progress(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    result = bench_faults(units=args.units or BENCH_UNITS, repeat=args.repeat, names=args.scenario, progress=progress)
    print(json.dumps(result, indent=2) if args.json else format_text(result))
    return EXIT_OK if result["details"]["ok"] else EXIT_FAILED


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of 1 or more, got {text}")
    return value


def _print_print_bench(result: dict[str, Any]) -> None:
    """Print one line per printer driver: our rate beside the baseline's, and any problem found."""
    head, base = result["headline"], result["baseline"]
    print(f"{'driver':<20}{'serials/s':>12}{'baseline/s':>12}  problems")
    for name, row in result["drivers"].items():
        problems = "; ".join(row["problems"]) or "none"
        print(f"{name:<20}{row['per_s']:>12,.1f}{row['baseline_per_s']:>12,.1f}  {problems}")
    print(f"{head['metric']}: {head['value']:,.1f} {head['unit']} (target {head['target']:,.0f})")
    print(f"baseline, {base['name']}: {base['value']:,.1f} {base['unit']}")


def _print_decode_bench(result: dict[str, Any]) -> None:
    """Print one line per decoder and frame set: median, p99 and read rate."""
    head, base, details = result["headline"], result["baseline"], result["details"]
    print(f"{'set':<10}{'decoder':<22}{'frames':>7}{'median ms':>11}{'p99 ms':>9}{'reads':>8}")
    for set_name, row in details["sets"].items():
        for name, figures in row.items():
            if isinstance(figures, dict):
                print(f"{set_name:<10}{name:<22}{figures['frames']:>7}{figures['median_ms']:>11.2f}"
                      f"{figures['p99_ms']:>9.2f}{figures['read_rate']:>8.1%}")
        print(f"{set_name:<10}{'grading (ours)':<22}{'':>7}{row['grade_ms_median'] or 0:>11.2f}")
    print(f"{head['metric']}: {head['value']:.2f} {head['unit']} (target {head['target']}), "
          f"reads {head['read_rate']:.1%}")
    print(f"baseline, {base['name']}: {base['value']:.2f} {base['unit']}")


def _print_store_bench(result: dict[str, Any]) -> None:
    """Print the store benchmark one line per measured item, ours beside the baseline."""
    head, base, details = result["headline"], result["baseline"], result["details"]
    single, grouped, disk = details["single"], details["grouped"], details["on_disk"]
    rows: list[tuple[str, str, str]] = [
        ("transitions/s, line pattern, group commit", f"{head['value']:,}", f"target {head['target']:,}"),
        ("transitions/s, single-serial moves", f"{single['transitions_per_s']:,}",
         f"{single['mean_transitions_per_commit']:,.0f} per commit"),
        ("transitions/s, grouped moves", f"{grouped['transitions_per_s']:,}",
         f"{grouped['mean_transitions_per_commit']:,.0f} per commit"),
        ("transitions/s, baseline: one commit per transition", f"{base['value']:,}",
         f"line pattern is {head['value'] / base['value']:.1f}x"),
        ("history rows on disk", f"{disk['history_rows']:,}", f"{disk['expected_history_rows']:,} expected"),
    ]
    generic = details.get("generic_store")
    if generic is not None:
        rows.append(("changes/s, generic store (one-row UPDATE)", f"{generic['changes_per_s']:,}", ""))
    big = details.get("million_batch")
    if big is not None:
        name = f"{big['serials']:,}-serial batch"
        rows += [
            (f"{name}: allocate, s", f"{big['allocate_s']:.1f}", "create and release"),
            (f"{name}: settle, s", f"{big['settle_s']:.1f}", f"{big['settle_transitions_per_s']:,} transitions/s"),
            (f"{name}: complete and close, s", f"{big['complete_s'] + big['close_s']:.2f}",
             "balanced" if big["balanced"] else "NOT BALANCED"),
            (f"{name}: peak memory, MB", f"{big['peak_rss_mb']:.0f}", f"target under {big['target_peak_rss_mb']}"),
            (f"{name}: database, MB", f"{big['db_mb']:.0f}", ""),
        ]
    width = max(len(label) for label, _, _ in rows)
    for label, value, note in rows:
        print(f"{label:<{width}}  {value:>10}  {note}".rstrip())


def _cmd_gs1_parse(args: argparse.Namespace) -> int:
    from edge.gs1.report import UnusableInputError, parse_report  # noqa: PLC0415 - keeps `lineside --help` fast

    if args.stdin == (args.data is not None):
        print("give DATA or --stdin, not both and not neither", file=sys.stderr)
        return EXIT_BAD_INPUT
    worst = EXIT_OK
    lines = (line.rstrip("\r\n") for line in sys.stdin) if args.stdin else iter([args.data])
    for data in lines:
        try:
            report = parse_report(data)
            code = EXIT_OK if report["ok"] else EXIT_FAILED
        except UnusableInputError as err:
            issue = err.issue
            report = {"ok": False, "elements": [], "hri": None, "digital_link": None, "errors": [
                {"ai": issue.ai, "position": issue.position, "message": issue.message, "rule": issue.rule}]}
            code = EXIT_BAD_INPUT
        worst = max(worst, code)
        _print_gs1(report, as_json=args.json, one_line=args.stdin)
    return worst


def _cmd_gs1_build(args: argparse.Namespace) -> int:
    from edge.gs1.report import build_report, unescape  # noqa: PLC0415 - keeps `lineside --help` fast

    pairs = []
    for item in args.ai:
        ai, sep, value = item.partition("=")
        if not sep or not ai.isdigit():
            print(f'--ai "{item}": expected AI=VALUE, like 01=09506000134352', file=sys.stderr)
            return EXIT_BAD_INPUT
        pairs.append((ai, unescape(value)))
    report = build_report(pairs)
    _print_gs1(report, as_json=args.json, one_line=False)
    return EXIT_OK if report["ok"] else EXIT_FAILED


def _print_gs1(report: dict[str, Any], *, as_json: bool, one_line: bool) -> None:
    if as_json:
        print(json.dumps(report, indent=None if one_line else 2))
        return
    if "element_string" in report and report["element_string"] is not None:
        print("element string:", report["element_string"].replace("\x1d", "<GS>"))
    print("ok" if report["ok"] else "INVALID")
    for element in report["elements"]:
        print(f"  ({element['ai']}) {element['value']}")
    if report["hri"]:
        print("HRI:", report["hri"])
    if report["digital_link"]:
        print("Digital Link:", report["digital_link"])
    for error in report["errors"]:
        print(f"  error at {error['position']}: {error['message']} [{error['rule']}]")
