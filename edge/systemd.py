"""The sd_notify protocol: readiness, stopping, status and watchdog pings to systemd; silent without it."""

from __future__ import annotations

import os
import socket
from typing import TYPE_CHECKING

import structlog

if TYPE_CHECKING:
    from collections.abc import Mapping

_LOG = structlog.get_logger(__name__)


class Notifier:
    """Sends sd_notify datagrams to $NOTIFY_SOCKET; every call is a no-op when it is not set."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        self._address = _socket_address(env.get("NOTIFY_SOCKET", ""))
        self._watchdog_s = _watchdog_interval(env)
        self._sock: socket.socket | None = None

    @property
    def enabled(self) -> bool:
        """True when running under a service manager that listens for notifications."""
        return self._address is not None

    @property
    def watchdog_interval_s(self) -> float | None:
        """The watchdog timeout systemd enforces on this process, or None when there is none."""
        return self._watchdog_s

    def ready(self, status: str) -> None:
        """Tell systemd start-up is complete."""
        self.send(f"READY=1\nSTATUS={status}")

    def stopping(self, status: str) -> None:
        """Tell systemd an orderly shutdown has begun."""
        self.send(f"STOPPING=1\nSTATUS={status}")

    def status(self, status: str) -> None:
        """Publish a one-line status shown by `systemctl status`."""
        self.send(f"STATUS={status}")

    def watchdog(self) -> None:
        """Ping the service watchdog."""
        self.send("WATCHDOG=1")

    def send(self, message: str) -> None:
        """Send one raw notification; failures are logged, never raised (systemd may be restarting)."""
        if self._address is None:
            return
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            # A datagram to a local socket does not block for long; systemd reads it at once.
            self._sock.sendto(message.encode(), self._address)
        except OSError as err:
            _LOG.warning("sd_notify failed", error=str(err), message=message.split("\n", 1)[0])

    def close(self) -> None:
        """Release the notification socket."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def _socket_address(raw: str) -> str | None:
    if not raw:
        return None
    if raw.startswith("@"):
        # Abstract namespace sockets are spelled with a leading NUL on the wire.
        return "\0" + raw[1:]
    return raw


def _watchdog_interval(env: Mapping[str, str]) -> float | None:
    usec = env.get("WATCHDOG_USEC", "")
    pid = env.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if pid and pid != str(os.getpid()):
        return None  # the watchdog was meant for another process (we were started by a wrapper)
    return int(usec) / 1_000_000
