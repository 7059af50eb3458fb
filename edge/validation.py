"""The dated evidence report a validation (IQ/OQ under GAMP 5) files: what was installed, what was tested, the result.

`lineside validation report` gathers, into one directory named by the date and time:

- **installation** (IQ): Lineside's version and source revision, the Python version, every installed
  distribution with its version, the operating system, and the sha256 of every configuration file the line
  uses (line config, market packs, products, partner profiles);
- **operation** (OQ): the test suite run now (pytest with a JUnit XML report: every test, its outcome and
  time), and optionally the benchmarks (`--bench NAME`), each with its figures beside its baseline;
- a summary as Markdown (for a printed record) and JSON (for a document management system), with the sha256
  of every file in the report, so a reviewer can tell the evidence was not changed after it was signed.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import platform
import subprocess
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import edge

ROOT = Path(edge.__file__).resolve().parent.parent
"""The Lineside source tree (configuration and tests are found beside the package)."""
TEST_TIMEOUT_S = 3600.0
"""Longest the test suite may run for a report (the suite takes a few minutes on a 2-core line PC)."""
BENCH_TIMEOUT_S = 3600.0
"""Longest one benchmark may run (the EPCIS export of a million units takes minutes, most of it building)."""


@dataclass
class TestOutcome:
    """What the JUnit report says: counts and the failing tests by name."""

    tests: int = 0
    failures: int = 0
    errors: int = 0
    skipped: int = 0
    seconds: float = 0.0
    failed: list[str] = field(default_factory=list)
    skips: list[str] = field(default_factory=list)

    @property
    def passed(self) -> int:
        return self.tests - self.failures - self.errors - self.skipped


def sha256_file(path: Path) -> str:
    """Return the sha256 of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def configuration_hashes(paths: list[Path]) -> dict[str, str]:
    """Return sha256 by path for every YAML file under the given files and directories, sorted by path."""
    found: dict[str, str] = {}
    for path in paths:
        files = sorted(path.rglob("*.yaml")) if path.is_dir() else [path]
        for file in files:
            if file.is_file():
                found[str(file)] = sha256_file(file)
    return dict(sorted(found.items()))


def installation() -> dict[str, Any]:
    """Return what is installed: Lineside's version and revision, Python, the OS and every distribution."""
    revision = None
    if (ROOT / ".git").exists():
        done = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=False, timeout=30)
        if done.returncode == 0:
            revision = done.stdout.strip()
    dists = sorted(
        {(d.metadata["Name"] or "?", d.version) for d in importlib.metadata.distributions()},
        key=lambda item: item[0].lower(),
    )
    return {
        "lineside": edge.__version__,
        "revision": revision,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.machine(),
        "distributions": dict(dists),
    }


def run_tests(out_dir: Path, extra: list[str]) -> TestOutcome:
    """Run the test suite with a JUnit report into out_dir; return what it says."""
    junit = out_dir / "tests.junit.xml"
    log = out_dir / "tests.log"
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={junit}", *extra]
    with log.open("w", encoding="utf-8") as handle:
        subprocess.run(command, cwd=ROOT, stdout=handle, stderr=subprocess.STDOUT, check=False,
                       timeout=TEST_TIMEOUT_S)
    return read_junit(junit)


def read_junit(path: Path) -> TestOutcome:
    """Return the counts and failing test names of a JUnit XML report (an absent report: nothing ran)."""
    outcome = TestOutcome()
    if not path.is_file():
        return outcome
    root = ET.parse(path).getroot()  # noqa: S314 - our own pytest's report
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    for suite in suites:
        outcome.tests += int(suite.get("tests", 0))
        outcome.failures += int(suite.get("failures", 0))
        outcome.errors += int(suite.get("errors", 0))
        outcome.skipped += int(suite.get("skipped", 0))
        outcome.seconds += float(suite.get("time", 0.0))
        for case in suite.iter("testcase"):
            name = f"{case.get('classname', '')}::{case.get('name', '')}"
            if case.find("failure") is not None or case.find("error") is not None:
                outcome.failed.append(name)
            skipped = case.find("skipped")
            if skipped is not None:
                outcome.skips.append(f"{name}: {skipped.get('message', '')}")
    return outcome


def run_bench(name: str, out_dir: Path) -> dict[str, Any]:
    """Run `lineside bench NAME --json`; return its JSON (or the failure) and keep it in out_dir."""
    command = [sys.executable, "-m", "edge", "bench", name, "--json"]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False, timeout=BENCH_TIMEOUT_S)
    (out_dir / f"bench-{name}.json").write_text(done.stdout, encoding="utf-8")
    try:
        result: dict[str, Any] = json.loads(done.stdout)
    except ValueError:
        return {"failed": True, "exit": done.returncode, "stderr": done.stderr[-2000:]}
    return result


def report(out_root: Path, *, config: Path | None, bench: list[str], pytest_args: list[str],
           now: datetime | None = None) -> Path:
    """Write a dated evidence report under out_root; return its directory."""
    moment = now or datetime.now(UTC)
    out_dir = out_root / f"lineside-evidence-{moment.strftime('%Y%m%dT%H%M%SZ')}"
    out_dir.mkdir(parents=True, exist_ok=False)
    config_paths = [ROOT / "config"] + ([config] if config is not None else [])
    if config is not None:
        from edge.config.load import load_config  # noqa: PLC0415 - only when a line config is named

        catalog = load_config(config).catalog
        config_paths += [catalog.products, catalog.markets, catalog.partners]
    summary: dict[str, Any] = {
        "generated_at": moment.isoformat(),
        "installation": installation(),
        "configuration_sha256": configuration_hashes(config_paths),
    }
    (out_dir / "installation.json").write_text(json.dumps(summary["installation"], indent=2), encoding="utf-8")
    outcome = run_tests(out_dir, pytest_args)
    summary["tests"] = {
        "tests": outcome.tests, "passed": outcome.passed, "failures": outcome.failures, "errors": outcome.errors,
        "skipped": outcome.skipped, "seconds": round(outcome.seconds, 1), "failed": outcome.failed,
        "skips": outcome.skips,
    }
    summary["benchmarks"] = {name: run_bench(name, out_dir) for name in bench}
    summary["verdict"] = "pass" if outcome.tests and not (outcome.failures or outcome.errors) else "fail"
    (out_dir / "report.md").write_text(_markdown(summary), encoding="utf-8")
    summary["files_sha256"] = {p.name: sha256_file(p) for p in sorted(out_dir.iterdir()) if p.is_file()}
    (out_dir / "report.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    os.sync()
    return out_dir


def _markdown(summary: dict[str, Any]) -> str:
    inst, tests = summary["installation"], summary["tests"]
    lines = [
        "# Lineside validation evidence",
        "",
        f"Generated {summary['generated_at']}. Verdict: **{summary['verdict']}**.",
        "",
        "## Installation (IQ)",
        "",
        f"- Lineside {inst['lineside']}, revision {inst['revision'] or 'not a source checkout'}",
        f"- Python {inst['python']} on {inst['platform']} ({inst['machine']})",
        f"- {len(inst['distributions'])} Python distributions: see installation.json",
        "",
        "Configuration files (sha256):",
        "",
        *(f"- `{path}` {digest}" for path, digest in summary["configuration_sha256"].items()),
        "",
        "## Operation (OQ): the test suite",
        "",
        (f"{tests['tests']} tests: {tests['passed']} passed, {tests['failures']} failed, {tests['errors']} errors, "
        f"{tests['skipped']} skipped, in {tests['seconds']} s. Every test and its outcome: tests.junit.xml."),
        "",
        *(f"- FAILED {name}" for name in tests["failed"]),
        *(f"- skipped {text}" for text in tests["skips"]),
        "",
    ]
    if summary["benchmarks"]:
        lines += ["## Benchmarks", ""]
        for name, result in summary["benchmarks"].items():
            head, base = result.get("headline", {}), result.get("baseline", {})
            if result.get("failed"):
                lines.append(f"- {name}: did not run (exit {result.get('exit')})")
                continue
            lines.append(f"- {name}: {head.get('metric')}: {head.get('value')} {head.get('unit')} "
                         f"(target {head.get('target')}); baseline {base.get('name')}: {base.get('value')} "
                         f"{base.get('unit')}")
        lines.append("")
    lines += ["## Signatures", "", "Reviewed by: ____________________  date: __________", "",
              "Approved by: ____________________  date: __________", ""]
    return "\n".join(lines)


def add_parser(sub: Any) -> None:  # noqa: ANN401 - argparse's private subparsers action
    """Register `lineside validation report` on the top-level subparsers."""
    validation = sub.add_parser("validation", help="evidence for a GAMP 5 validation (IQ/OQ)")
    commands = validation.add_subparsers(title="validation commands", dest="validation_command", required=True,
                                         metavar="COMMAND")
    rep = commands.add_parser("report", help="run the tests (and benchmarks) and write a dated evidence report")
    rep.add_argument("-o", "--output", type=Path, default=Path(), metavar="DIR",
                     help="where the dated report directory is made (default: here)")
    rep.add_argument("-c", "--config", type=Path, metavar="FILE",
                     help="the line configuration whose files (and catalog) are hashed into the report")
    rep.add_argument("--bench", action="append", default=[], metavar="NAME",
                     help="also run `lineside bench NAME` (repeatable), e.g. decode, gs1, store")
    rep.add_argument("pytest_args", nargs="*", metavar="PYTEST_ARG",
                     help="after --: arguments for pytest, e.g. -- -k store")
    rep.set_defaults(handler=_cmd_report)


def _cmd_report(args: Any) -> int:  # noqa: ANN401 - an argparse namespace
    out_dir = report(args.output, config=args.config, bench=list(args.bench), pytest_args=list(args.pytest_args))
    summary = json.loads((out_dir / "report.json").read_text(encoding="utf-8"))
    tests = summary["tests"]
    sys.stdout.write(f"{out_dir}: {summary['verdict']} ({tests['passed']} of {tests['tests']} tests passed)\n")
    return 0 if summary["verdict"] == "pass" else 1
