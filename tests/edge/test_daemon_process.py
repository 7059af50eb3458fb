"""`lineside run` as a real process: sd_notify over a unix datagram socket, SIGTERM, exit code, no traceback."""

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

LINESIDE = Path(sys.executable).with_name("lineside")
# Generous bounds for a loaded 2-core CI machine; they only bound a failure, a pass takes well under a second.
STARTUP_TIMEOUT_S = 30.0
EXIT_TIMEOUT_S = 30.0


def _config(tmp_path, extra=""):
    cfg = tmp_path / "line.yaml"
    cfg.write_text(
        "line:\n"
        "  id: L1\n"
        "  name: Test line\n"
        "storage:\n"
        f"  state_dir: {tmp_path / 'state'}\n"
        "logging:\n"
        "  format: json\n"
        "daemon:\n"
        "  drain_timeout_s: 5\n" + extra
    )
    return cfg


@pytest.fixture
def notify(tmp_path):
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(STARTUP_TIMEOUT_S)
    yield path, sock
    sock.close()


def _start(cfg, notify_path, **env_extra):
    env = {**os.environ, "NOTIFY_SOCKET": str(notify_path), **env_extra}
    return subprocess.Popen(
        [str(LINESIDE), "run", "-c", str(cfg)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _messages_until(sock, wanted):
    seen = []
    while True:
        msg = sock.recv(4096).decode()
        seen.append(msg)
        if msg.startswith(wanted):
            return seen


def test_ready_then_stopping_after_sigterm_and_clean_exit(tmp_path, notify):
    path, sock = notify
    cfg = _config(
        tmp_path,
        "devices:\n"
        "  - id: scanner-1\n"
        "    driver: scanner.wedge\n"
        "    url: socket://127.0.0.1:9\n",  # nothing listens there: the supervisor keeps retrying
    )
    proc = _start(cfg, path, WATCHDOG_USEC="2000000", WATCHDOG_PID="")
    try:
        before_ready = _messages_until(sock, "READY=1")
        assert before_ready[-1].startswith("READY=1\nSTATUS=line L1: 0/1 devices online")
        proc.send_signal(signal.SIGTERM)
        after = _messages_until(sock, "STOPPING=1")
        assert after[-1] == "STOPPING=1\nSTATUS=draining"
        _, err = proc.communicate(timeout=EXIT_TIMEOUT_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    assert "line controller ready" in err
    assert "line controller stopped" in err
    assert (tmp_path / "state" / "lineside.db").exists()


def test_second_instance_on_the_same_state_dir_is_refused(tmp_path, notify):
    path, sock = notify
    cfg = _config(tmp_path)
    first = _start(cfg, path)
    try:
        _messages_until(sock, "READY=1")
        second = subprocess.run(
            [str(LINESIDE), "run", "-c", str(cfg)], capture_output=True, text=True, timeout=EXIT_TIMEOUT_S, check=False
        )
        assert second.returncode == 1
        assert "Traceback" not in second.stderr
        assert "cannot start" in second.stderr
        assert str(os.getpid()) not in second.stderr  # names the holder, which is the first daemon, not us
        assert str(first.pid) in second.stderr
        first.send_signal(signal.SIGINT)
        _, err = first.communicate(timeout=EXIT_TIMEOUT_S)
        assert first.returncode == 0, err
    finally:
        if first.poll() is None:
            first.kill()
            first.communicate()


def test_invalid_config_exits_2_with_positions(tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("line:\n  id: L1\n  name: x\n  colour: red\n")
    proc = subprocess.run(
        [str(LINESIDE), "run", "-c", str(cfg)], capture_output=True, text=True, timeout=EXIT_TIMEOUT_S, check=False
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith(f"{cfg}:4:3: ")


def test_a_killed_run_is_reported_at_the_next_start(tmp_path, notify):
    path, sock = notify
    cfg = _config(tmp_path)
    first = _start(cfg, path)
    try:
        _messages_until(sock, "READY=1")
        first.kill()  # SIGKILL: no drain, no end-of-run record
        first.communicate(timeout=EXIT_TIMEOUT_S)
        second = _start(cfg, path)
        _messages_until(sock, "READY=1")
        second.send_signal(signal.SIGTERM)
        _, err = second.communicate(timeout=EXIT_TIMEOUT_S)
    finally:
        for proc in (first, locals().get("second")):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.communicate()
    assert second.returncode == 0, err
    assert "previous run ended without a clean shutdown" in err
