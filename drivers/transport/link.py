"""One byte stream to a device, TCP (``socket://host:port``) or a serial port, behind one small interface.

The link knows nothing of framing or protocol: it moves chunks of bytes, bounds every wait on the device
with a timeout, and turns transport failures into `TransientDeviceError` or `DeviceRejectedError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import socket
import stat
import termios
from pathlib import Path
from typing import TYPE_CHECKING, Final

import serial
import serial_asyncio_fast
import structlog

from drivers.transport.spec import FlowControl, Parity
from edge.errors import DeviceError, DeviceRejectedError, TransientDeviceError

if TYPE_CHECKING:
    from drivers.transport.spec import SerialSettings, TransportSpec

# All timeouts are in seconds.

WRITE_TIMEOUT_S: Final = 2.0
"""Longest a device may hold up bytes beyond their time on the wire. Devices on a line answer within about
a second; a device that takes longer to accept bytes has stopped reading (buffer full, flow control held)."""

WIRE_TIME_MARGIN: Final = 2.0
"""Serial writes also get this multiple of their transmission time at the configured baud rate, so a long
job sent at 9600 baud is not mistaken for a device that stopped reading."""

CLOSE_TIMEOUT_S: Final = 2.0
"""Longest close() waits for the port to be released. pyserial closes in a worker thread and the kernel may
hold a serial close until pending output drains (30 s by default); past this we log and let it finish."""

PORT_CLOSED_POLL_S: Final = 0.01
"""How often close() looks whether pyserial has really closed the port (only if it reported loss early)."""

READ_CHUNK_SIZE: Final = 65536
"""Most bytes one read() returns; a chunk is whatever arrived, this only caps it."""

# A reader or printer may be silent for hours while the line stands: keepalive probes notice a pulled
# cable or a powered-off device within about 25 s (idle + count x interval) instead of at the next write.
TCP_KEEPALIVE_IDLE_S: Final = 10
TCP_KEEPALIVE_INTERVAL_S: Final = 5
TCP_KEEPALIVE_COUNT: Final = 3

# Errors opening a serial device that retrying cannot cure: the path exists but is not ours to use or
# not a serial port at all. Everything else (ENOENT, ENODEV, ENXIO, EBUSY, EIO, ...) is transient:
# an unplugged or still-enumerating USB adapter makes its /dev node vanish, which looks exactly like a
# typo in the path. Calling that "rejected" would leave a line that lost its adapter for a second at
# the longest backoff, while a typo retried as transient is still logged with its path every attempt.
# EINVAL is the port refusing the configured settings.
_REJECTED_OPEN_ERRNOS: Final = frozenset({errno.EACCES, errno.EPERM, errno.ENOTTY, errno.EISDIR, errno.EINVAL})

_PARITY: Final = {
    Parity.NONE: serial.PARITY_NONE,
    Parity.EVEN: serial.PARITY_EVEN,
    Parity.ODD: serial.PARITY_ODD,
    Parity.MARK: serial.PARITY_MARK,
    Parity.SPACE: serial.PARITY_SPACE,
}


class Link:
    """An open byte stream to one device. Single-use: once closed or lost, open a new one with `open_link`."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        peer: str,
        log: structlog.stdlib.BoundLogger,
        write_timeout_s: float = WRITE_TIMEOUT_S,
        serial_settings: SerialSettings | None = None,
        port: serial.Serial | None = None,
    ) -> None:
        self.peer: Final = peer
        """Where the link goes, for logs: ``host:port`` or the serial device path."""
        self._reader = reader
        self._writer = writer
        self._log = log
        self._write_timeout_s = write_timeout_s
        self._serial_settings = serial_settings
        self._port = port
        self._closing = False
        self._closed = asyncio.Event()
        # Writes must mean "the OS has the bytes": with a zero high-water mark drain() waits until the
        # transport's own buffer is empty, so close() (which aborts) never drops a write that returned.
        writer.transport.set_write_buffer_limits(high=0)

    @property
    def is_closing(self) -> bool:
        """True once close() was called."""
        return self._closing

    async def read(self) -> bytes:
        """Return the next chunk the device sent (never empty); raise TransientDeviceError once the link is gone."""
        if self._closing:
            raise TransientDeviceError(f"link to {self.peer} is closed")
        try:
            chunk = await self._reader.read(READ_CHUNK_SIZE)
        except OSError as err:  # serial.SerialException, ConnectionError and socket errors are all OSError
            raise TransientDeviceError(f"reading from {self.peer} failed: {err}") from err
        if self._closing:
            raise TransientDeviceError(f"link to {self.peer} is closed")
        if not chunk:
            raise TransientDeviceError("connection closed by device")
        self._log.debug("rx", peer=self.peer, data=chunk)
        return chunk

    async def write(self, data: bytes, *, timeout_s: float | None = None) -> None:
        """Send data and wait until the OS has taken it; a device that stops reading raises TransientDeviceError."""
        if self._closing:
            raise TransientDeviceError(f"link to {self.peer} is closed")
        timeout = self._write_timeout_for(len(data)) if timeout_s is None else timeout_s
        self._log.debug("tx", peer=self.peer, data=data)
        try:
            async with asyncio.timeout(timeout):
                self._writer.write(data)
                await self._writer.drain()
        except TimeoutError as err:  # before OSError: TimeoutError is one
            raise TransientDeviceError(
                f"{self.peer} did not take {len(data)} bytes within {timeout:.1f} s (stopped reading?)"
            ) from err
        except OSError as err:
            raise TransientDeviceError(f"writing to {self.peer} failed: {err}") from err

    async def close(self) -> None:
        """Release the link and wait until the port or socket is really closed; idempotent, never raises."""
        if self._closing:
            await self._closed.wait()
            return
        self._closing = True
        try:
            transport = self._writer.transport
            # abort(), not close(): a graceful close flushes first, and pyserial's flush (tcdrain) blocks a
            # worker thread for good when flow control holds the output. write() already saw its bytes into
            # the OS, so aborting drops nothing that was confirmed.
            if not transport.is_closing():
                transport.abort()
            async with asyncio.timeout(CLOSE_TIMEOUT_S):
                with contextlib.suppress(Exception):  # the error that ended the link was already reported
                    await self._writer.wait_closed()
                await self._wait_for_pyserial_to_actually_close()
        except TimeoutError:
            self._log.warning("link close timed out; it finishes in the background", peer=self.peer)
        finally:
            self._closed.set()

    async def _wait_for_pyserial_to_actually_close(self) -> None:
        # pyserial-asyncio calls connection_lost *before* it closes the serial port (the -fast fork closes
        # first); reopening the same tty right away then fails on its exclusive lock. Wait for the real close.
        while self._port is not None and self._port.is_open:  # noqa: ASYNC110 - pyserial signals nothing when its close is done
            await asyncio.sleep(PORT_CLOSED_POLL_S)

    def _write_timeout_for(self, size: int) -> float:
        settings = self._serial_settings
        if settings is None:
            return self._write_timeout_s
        parity_bits = 0 if settings.parity is Parity.NONE else 1
        bits_per_byte = 1 + settings.bytesize + parity_bits + float(settings.stopbits)
        return self._write_timeout_s + WIRE_TIME_MARGIN * size * bits_per_byte / settings.baudrate


async def open_link(
    spec: TransportSpec,
    *,
    connect_timeout_s: float,
    write_timeout_s: float = WRITE_TIMEOUT_S,
    log: structlog.stdlib.BoundLogger | None = None,
) -> Link:
    """Open the link spec names within connect_timeout_s; on failure nothing is left open.

    Raises TransientDeviceError when retrying may help (refused, unreachable, timed out, device node
    missing or busy) and DeviceRejectedError when it cannot (not a serial device, permission denied,
    settings the port refuses).
    """
    bound_log: structlog.stdlib.BoundLogger = structlog.get_logger() if log is None else log
    if spec.is_tcp:
        return await _open_tcp(spec, connect_timeout_s, write_timeout_s, bound_log)
    return await _open_serial(spec, connect_timeout_s, write_timeout_s, bound_log)


async def _open_tcp(
    spec: TransportSpec, connect_timeout_s: float, write_timeout_s: float, log: structlog.stdlib.BoundLogger
) -> Link:
    host, port = spec.host_port
    peer = f"{host}:{port}"
    try:
        async with asyncio.timeout(connect_timeout_s):
            reader, writer = await asyncio.open_connection(host, port)
    except TimeoutError as err:  # before OSError: TimeoutError is one
        raise TransientDeviceError(f"connecting to {peer} timed out after {connect_timeout_s:g} s") from err
    except OSError as err:  # refused, unreachable, name not resolved
        raise TransientDeviceError(f"connecting to {peer} failed: {err}") from err
    _enable_keepalive(writer.get_extra_info("socket"))
    log.debug("link open", peer=peer)
    return Link(reader, writer, peer=peer, log=log, write_timeout_s=write_timeout_s)


async def _open_serial(
    spec: TransportSpec, connect_timeout_s: float, write_timeout_s: float, log: structlog.stdlib.BoundLogger
) -> Link:
    settings = spec.serial_settings
    loop = asyncio.get_running_loop()
    # Open in a worker thread we can walk away from: if the timeout or a cancellation wins, the port the
    # thread opens late is closed by the callback below instead of leaking (open_serial_connection would).
    opening = loop.run_in_executor(None, functools.partial(_open_serial_port, spec.url, settings))
    try:
        async with asyncio.timeout(connect_timeout_s):
            port = await asyncio.shield(opening)
    except TimeoutError as err:  # before OSError: TimeoutError is one
        opening.add_done_callback(_close_late_port)
        raise TransientDeviceError(f"opening {spec.url} timed out after {connect_timeout_s:g} s") from err
    except asyncio.CancelledError:
        opening.add_done_callback(_close_late_port)
        raise
    except (OSError, ValueError) as err:
        raise _open_error(spec.url, err) from err
    try:
        reader = asyncio.StreamReader(limit=READ_CHUNK_SIZE)
        protocol = asyncio.StreamReaderProtocol(reader)
        # The transport reconfigures the port for non-blocking use; that can fail too (termios.error).
        transport, _ = await serial_asyncio_fast.connection_for_serial(loop, lambda: protocol, port)
        writer = asyncio.StreamWriter(transport, protocol, reader, loop)
    except (OSError, ValueError, termios.error) as err:
        port.close()
        raise _open_error(spec.url, err) from err
    except BaseException:
        port.close()
        raise
    log.debug("link open", peer=spec.url, baudrate=settings.baudrate)
    return Link(
        reader,
        writer,
        peer=spec.url,
        log=log,
        write_timeout_s=write_timeout_s,
        serial_settings=settings,
        port=port,
    )


def _open_serial_port(url: str, settings: SerialSettings) -> serial.Serial:
    """Open and configure the port (blocking: runs in a worker thread)."""
    try:
        mode = Path(url).stat().st_mode
    except FileNotFoundError:
        pass  # let pyserial report it with its errno, like any other open failure
    else:
        if not stat.S_ISCHR(mode):
            raise DeviceRejectedError(f"{url} is not a serial device")
    flow = settings.flow_control
    return serial.serial_for_url(
        url,
        baudrate=settings.baudrate,
        bytesize=settings.bytesize,
        parity=_PARITY[settings.parity],
        stopbits=settings.stopbits,
        xonxoff=flow is FlowControl.XONXOFF,
        rtscts=flow is FlowControl.RTSCTS,
        dsrdtr=flow is FlowControl.DSRDTR,
        # Two processes reading one port each get half the bytes: refuse a second opener outright.
        exclusive=True,
    )


def _open_error(url: str, err: Exception) -> DeviceError:
    """Classify a failure to open or configure a serial port."""
    if isinstance(err, ValueError) and not isinstance(err, OSError):  # pyserial refuses the settings themselves
        return DeviceRejectedError(f"{url}: {err}")
    code = _errno_of(err)
    kind = DeviceRejectedError if code in _REJECTED_OPEN_ERRNOS else TransientDeviceError
    return kind(f"opening {url} failed: {err}")


def _errno_of(err: BaseException) -> int | None:
    # pyserial re-raises termios failures as a SerialException without an errno; the cause is its context.
    for candidate in (err, err.__context__):
        if isinstance(candidate, OSError) and candidate.errno is not None:
            return candidate.errno
        if isinstance(candidate, termios.error) and candidate.args and isinstance(candidate.args[0], int):
            return candidate.args[0]
    return None


def _close_late_port(opening: asyncio.Future[serial.Serial]) -> None:
    if opening.cancelled() or opening.exception() is not None:
        return
    opening.result().close()


def _enable_keepalive(sock: socket.socket | None) -> None:
    if sock is None:
        return
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    # Linux names; other platforms keep their system defaults.
    for name, value in (
        ("TCP_KEEPIDLE", TCP_KEEPALIVE_IDLE_S),
        ("TCP_KEEPINTVL", TCP_KEEPALIVE_INTERVAL_S),
        ("TCP_KEEPCNT", TCP_KEEPALIVE_COUNT),
    ):
        option = getattr(socket, name, None)
        if option is not None:
            sock.setsockopt(socket.IPPROTO_TCP, option, value)
