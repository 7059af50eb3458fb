"""The shipped unit file passes systemd's own checks and keeps the properties operations rely on."""

import configparser
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

UNIT = ROOT / "systemd" / "lineside.service"
INSTALLED_BINARY = "/opt/lineside/bin/lineside"


def _service_section():
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # keys are case-sensitive in systemd
    parser.read(UNIT)
    return parser["Service"]


def test_unit_declares_notify_watchdog_and_hardening():
    service = _service_section()
    assert service["Type"] == "notify"
    assert service["WatchdogSec"] == "30"
    assert service["Restart"] == "on-failure"
    assert service["StateDirectory"] == "lineside"
    assert service["ConfigurationDirectory"] == "lineside"
    assert service["SupplementaryGroups"] == "dialout"
    assert service["NoNewPrivileges"] == "yes"
    assert service["ProtectSystem"] == "strict"
    assert service["ProtectHome"] == "yes"
    assert service["PrivateTmp"] == "yes"
    assert service["CapabilityBoundingSet"] == ""
    assert "@system-service" in UNIT.read_text()
    assert "AF_INET" in service["RestrictAddressFamilies"]


def test_stop_timeout_leaves_room_for_the_longest_drain():
    from edge.config import DaemonConfig

    stop_s = float(_service_section()["TimeoutStopSec"])
    default_drain = DaemonConfig().drain_timeout_s
    assert stop_s > default_drain + 10


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed here")
def test_systemd_analyze_verify_is_clean(tmp_path):
    # verify checks that ExecStart's program exists; point it at this checkout's console script,
    # which stands where /opt/lineside/bin/lineside stands on an installed line PC.
    lineside = Path(sys.executable).with_name("lineside")
    assert lineside.exists()
    unit = tmp_path / "lineside.service"
    unit.write_text(UNIT.read_text().replace(INSTALLED_BINARY, str(lineside)))
    proc = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip() == ""
