import os
import socket

import pytest

from edge.systemd import Notifier


@pytest.fixture
def notify_socket(tmp_path):
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(2.0)
    yield path, sock
    sock.close()


def test_silent_without_notify_socket():
    n = Notifier(environ={})
    assert not n.enabled
    n.ready("x")  # must not raise or open anything
    n.close()


def test_messages_reach_the_socket(notify_socket):
    path, sock = notify_socket
    n = Notifier(environ={"NOTIFY_SOCKET": str(path)})
    n.ready("line L1: 0/0 devices online")
    n.watchdog()
    n.stopping("draining")
    n.close()
    got = [sock.recv(4096).decode() for _ in range(3)]
    assert got == [
        "READY=1\nSTATUS=line L1: 0/0 devices online",
        "WATCHDOG=1",
        "STOPPING=1\nSTATUS=draining",
    ]


def test_abstract_namespace_socket():
    name = f"lineside-test-{os.getpid()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(2.0)
    try:
        n = Notifier(environ={"NOTIFY_SOCKET": "@" + name})
        n.status("hello")
        n.close()
        assert sock.recv(100) == b"STATUS=hello"
    finally:
        sock.close()


def test_watchdog_interval_from_environment():
    assert Notifier(environ={"WATCHDOG_USEC": "30000000"}).watchdog_interval_s == 30.0
    assert Notifier(environ={"WATCHDOG_USEC": "0"}).watchdog_interval_s is None
    assert Notifier(environ={"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}).watchdog_interval_s is None
    own = {"WATCHDOG_USEC": "5000000", "WATCHDOG_PID": str(os.getpid())}
    assert Notifier(environ=own).watchdog_interval_s == 5.0


def test_a_vanished_socket_is_logged_not_raised(tmp_path):
    n = Notifier(environ={"NOTIFY_SOCKET": str(tmp_path / "gone.sock")})
    n.ready("x")
    n.close()
