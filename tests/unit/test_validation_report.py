"""`lineside validation report`: a dated evidence directory with installation, configuration hashes and tests."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from edge import validation
from edge.cli import main

FAST_TESTS = ["tests/unit/test_backoff.py"]


def test_report_holds_installation_configuration_and_the_test_outcome(tmp_path):
    out = validation.report(tmp_path, config=None, bench=[], pytest_args=FAST_TESTS,
                            now=datetime(2026, 12, 4, 12, 0, tzinfo=UTC))
    assert out.name == "lineside-evidence-20261204T120000Z"
    summary = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert summary["verdict"] == "pass"
    assert summary["tests"]["tests"] == summary["tests"]["passed"] > 0
    assert summary["installation"]["lineside"]
    assert "pydantic" in {name.lower() for name in summary["installation"]["distributions"]}
    demo = next(path for path in summary["configuration_sha256"] if path.endswith("config/demo.yaml"))
    assert summary["configuration_sha256"][demo] == validation.sha256_file(validation.ROOT / "config" / "demo.yaml")
    for name in ("report.md", "installation.json", "tests.junit.xml", "tests.log"):
        assert summary["files_sha256"][name] == validation.sha256_file(out / name)
    text = (out / "report.md").read_text(encoding="utf-8")
    assert "Verdict: **pass**" in text
    assert "Approved by:" in text


def test_a_failing_suite_fails_the_report(tmp_path, capsys):
    bad = tmp_path / "test_fails.py"
    bad.write_text("def test_no():\n    assert 1 == 2\n", encoding="utf-8")
    code = main(["validation", "report", "-o", str(tmp_path / "out"), "--", str(bad)])
    assert code == 1
    printed = capsys.readouterr().out
    assert ": fail (0 of 1 tests passed)" in printed
    (report_dir,) = (tmp_path / "out").iterdir()
    summary = json.loads((report_dir / "report.json").read_text(encoding="utf-8"))
    # Named from pytest's rootdir, which depends on where the checkout and the temporary directory sit.
    (failed,) = summary["tests"]["failed"]
    assert failed == "test_fails::test_no" or failed.endswith(".test_fails::test_no"), failed


def test_junit_absent_means_nothing_ran(tmp_path):
    outcome = validation.read_junit(tmp_path / "missing.xml")
    assert outcome.tests == outcome.passed == 0
