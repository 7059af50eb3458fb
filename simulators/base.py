"""The simulator foundation: a device's far end of the wire, on a loopback TCP port or a pseudo-terminal.

A simulator subclass writes one `Simulator.handle` coroutine per link; the same code serves a driver that
connects over ``socket://127.0.0.1:PORT`` and one that opens the pseudo-terminal as a serial device. Every
byte the simulator sends goes through its `Faults`, so a test can cut, delay, split, corrupt or stall the
device on demand. Simulators reuse the drivers' framers: they never spell the wire format a second time.

Lifecycle: ``async with sim:`` (tests), or ``await sim.bind()`` to learn the URL and then ``await sim.serve()``
as a task of the owner's TaskGroup (the demo). The simulator owns every task it needs and ends them all
when it stops.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import os
import socket
import tempfile
import tty
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal, Self

import structlog

from drivers.transport.spec import TransportSpec
from simulators.faults import Faults, HangUp, Pause, Send

if TYPE_CHECKING:
    from types import TracebackType

    from drivers.transport.spec import SerialSettings

Sleep = Callable[[float], Awaitable[None]]
SimTransport = Literal["tcp", "pty"]

LOOPBACK: Final = "127.0.0.1"
READ_SIZE: Final = 65536
"""Most bytes one read takes off the link."""
PTY_MAX_BUFFERED: Final = 1 << 20
"""Bytes from the driver held unread before the pseudo-terminal stops reading (the driver then blocks)."""


class LinkClosedError(Exception):
    """The driver went away or the simulator hung up; a handler just returns."""


class SimConnection(abc.ABC):
    """The simulator's end of one link to a driver: read what the driver sent, write as the device would."""

    def __init__(self, *, peer: str, faults: Faults, sleep: Sleep) -> None:
        self.peer: Final = peer
        """The driver's address (TCP) or the pseudo-terminal's name, for logs."""
        self.bytes_sent = 0
        """Bytes that really went out on this link (after faults)."""
        self._faults = faults
        self._sleep = sleep
        self._closed = False

    @property
    def closed(self) -> bool:
        """True once the link is gone, from either end."""
        return self._closed

    async def read(self) -> bytes:
        """Return the next chunk the driver sent; raise LinkClosedError once the link is gone."""
        if self._closed:
            raise LinkClosedError(self.peer)
        chunk = await self._recv()
        if not chunk:
            self.hang_up()
            raise LinkClosedError(self.peer)
        return chunk

    async def write(self, data: bytes) -> None:
        """Send data through the active faults; raise LinkClosedError if the link is already gone.

        A `Disconnect` fault that fires here hangs up after the bytes it lets through and returns normally:
        the fault was asked for, the next read or write on this link raises.
        """
        if self._closed:
            raise LinkClosedError(self.peer)
        for action in self._faults.shape(data):
            if isinstance(action, Pause):
                await self._sleep(action.seconds)
            elif isinstance(action, Send):
                await self._send(action.data)
                self.bytes_sent += len(action.data)
            elif isinstance(action, HangUp):
                self.hang_up()

    def hang_up(self) -> None:
        """Drop the link now, as a pulled cable would; idempotent."""
        if not self._closed:
            self._closed = True
            self._hang_up()

    async def aclose(self) -> None:
        """Hang up and wait until the OS has released the link."""
        self.hang_up()
        await self._wait_released()

    @abc.abstractmethod
    async def _recv(self) -> bytes:
        """Next chunk from the driver, b"" at end of stream."""

    @abc.abstractmethod
    async def _send(self, data: bytes) -> None:
        """Write data and wait until the OS took it; raise LinkClosedError if the link is gone."""

    @abc.abstractmethod
    def _hang_up(self) -> None:
        """Release the link at once."""

    @abc.abstractmethod
    async def _wait_released(self) -> None:
        """Wait until the release _hang_up started is complete."""


class _TcpConnection(SimConnection):
    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, faults: Faults, sleep: Sleep
    ) -> None:
        peer = writer.get_extra_info("peername")
        super().__init__(peer=f"{peer[0]}:{peer[1]}" if peer else "?", faults=faults, sleep=sleep)
        self._reader = reader
        self._writer = writer

    async def _recv(self) -> bytes:
        try:
            return await self._reader.read(READ_SIZE)
        except OSError as err:
            raise LinkClosedError(self.peer) from err

    async def _send(self, data: bytes) -> None:
        if self._closed or self._writer.is_closing():
            raise LinkClosedError(self.peer)
        try:
            self._writer.write(data)
            await self._writer.drain()
        except OSError as err:
            raise LinkClosedError(self.peer) from err

    def _hang_up(self) -> None:
        self._writer.transport.abort()

    async def _wait_released(self) -> None:
        with contextlib.suppress(Exception):  # the error that ended the link does not matter any more
            await self._writer.wait_closed()


class _PtyConnection(SimConnection):
    """The master side of a pseudo-terminal pair; the driver opens the slave as its serial port.

    The simulator keeps its own descriptor of the slave open, so a driver closing and reopening the port
    changes nothing here, just as with a real serial device. Hanging up closes both ends: the driver's
    port then fails like an unplugged USB adapter.
    """

    def __init__(self, master: int, slave: int, *, faults: Faults, sleep: Sleep) -> None:
        super().__init__(peer=os.ttyname(slave), faults=faults, sleep=sleep)
        self._master = master
        self._slave = slave
        self._loop = asyncio.get_running_loop()
        self._received = bytearray()
        self._readable = asyncio.Event()
        self._reading = False
        self._eof = False
        self._write_waiter: asyncio.Future[None] | None = None
        self._resume_reading()

    async def _recv(self) -> bytes:
        while not self._received and not self._eof and not self._closed:
            self._readable.clear()
            await self._readable.wait()
        if self._closed:
            raise LinkClosedError(self.peer)
        chunk = bytes(self._received)
        self._received.clear()
        self._resume_reading()
        return chunk

    async def _send(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            if self._closed:
                raise LinkClosedError(self.peer)
            try:
                written = os.write(self._master, view)
            except BlockingIOError:
                await self._wait_writable()
                continue
            except OSError as err:
                raise LinkClosedError(self.peer) from err
            view = view[written:]

    def _hang_up(self) -> None:
        if self._reading:
            self._loop.remove_reader(self._master)
            self._reading = False
        self._loop.remove_writer(self._master)
        os.close(self._master)
        os.close(self._slave)
        self._readable.set()
        if self._write_waiter is not None and not self._write_waiter.done():
            self._write_waiter.set_result(None)

    async def _wait_released(self) -> None:
        pass  # _hang_up closed both descriptors itself

    def _on_readable(self) -> None:
        try:
            data = os.read(self._master, READ_SIZE)
        except BlockingIOError:
            return
        except OSError:  # EIO: the slave side is gone (cannot happen while we hold it, but never spin on it)
            data = b""
        if not data:
            self._eof = True
            self._pause_reading()
        self._received += data
        if len(self._received) >= PTY_MAX_BUFFERED:
            self._pause_reading()
        self._readable.set()

    def _resume_reading(self) -> None:
        if not self._reading and not self._eof and not self._closed:
            self._loop.add_reader(self._master, self._on_readable)
            self._reading = True

    def _pause_reading(self) -> None:
        if self._reading:
            self._loop.remove_reader(self._master)
            self._reading = False

    async def _wait_writable(self) -> None:
        waiter = self._loop.create_future()
        self._write_waiter = waiter
        self._loop.add_writer(self._master, _resolve, waiter)
        try:
            await waiter
        finally:
            self._write_waiter = None
            if not self._closed:
                self._loop.remove_writer(self._master)


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


RunConnection = Callable[[SimConnection], Coroutine[Any, Any, None]]


class _Endpoint(abc.ABC):
    """Where drivers reach a simulator: produces links and runs the simulator's handler on each."""

    url: str

    @abc.abstractmethod
    async def bind(self) -> str:
        """Claim the port or pseudo-terminal; return the URL a driver uses."""

    @abc.abstractmethod
    async def serve(self, run: RunConnection) -> None:
        """Run `run` on every link until cancelled; every link is closed on the way out."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release the port or pseudo-terminal; idempotent."""


class _TcpEndpoint(_Endpoint):
    def __init__(self, host: str, port: int, faults: Faults, sleep: Sleep) -> None:
        self._host = host
        self._port = port
        self._faults = faults
        self._sleep = sleep
        self._socket: socket.socket | None = None
        self._server: asyncio.Server | None = None
        self._tasks: asyncio.TaskGroup | None = None
        self._run: RunConnection | None = None

    async def bind(self) -> str:
        # Listening now, accepting once serve() runs: a driver connecting in between waits in the backlog
        # instead of being refused, and no connection is accepted before there is a task group to own it.
        self._socket = socket.create_server((self._host, self._port))
        host, port = self._socket.getsockname()[:2]
        self.url = f"socket://[{host}]:{port}" if ":" in host else f"socket://{host}:{port}"
        return self.url

    async def serve(self, run: RunConnection) -> None:
        if self._socket is None:
            raise RuntimeError("bind() first")
        async with asyncio.TaskGroup() as tasks:
            self._tasks, self._run = tasks, run
            try:
                self._server = await asyncio.start_server(self._accept, sock=self._socket)
                await asyncio.Future()  # until cancelled; the task group owns one task per connection
            finally:
                # Stop accepting before the task group winds down, so no connection arrives without an owner.
                self._tasks = None
                if self._server is not None:
                    self._server.close()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()  # closes the listening socket too
            await self._server.wait_closed()
        elif self._socket is not None:
            self._socket.close()

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # A plain function, not a coroutine: asyncio would run a coroutine as a task nobody owns.
        if self._tasks is None or self._run is None:
            writer.transport.abort()
            return
        conn = _TcpConnection(reader, writer, faults=self._faults, sleep=self._sleep)
        self._tasks.create_task(self._run(conn), name=f"simulated link {conn.peer}")


class _PtyEndpoint(_Endpoint):
    """A pseudo-terminal under a stable path: after a hang-up a fresh pair is plugged in behind the same path.

    The path is a symlink in a private temporary directory, as /dev/serial/by-id links are: a USB adapter
    that is unplugged and plugged back gets a new tty name but keeps its by-id path.
    """

    def __init__(self, faults: Faults, sleep: Sleep) -> None:
        self._faults = faults
        self._sleep = sleep
        self._dir: Path | None = None
        self._plugged: _PtyConnection | None = None

    async def bind(self) -> str:
        self._dir = Path(tempfile.mkdtemp(prefix="lineside-sim-"))
        self.url = str(self._dir / "tty")
        self._plugged = self._plug()
        return self.url

    async def serve(self, run: RunConnection) -> None:
        while True:
            conn = self._plugged or self._plug()
            self._plugged = None
            await run(conn)  # returns once the link is hung up; then the device is plugged back in

    async def close(self) -> None:
        if self._plugged is not None:
            await self._plugged.aclose()
            self._plugged = None
        if self._dir is not None:
            for name in ("tty", "tty.new"):
                (self._dir / name).unlink(missing_ok=True)
            self._dir.rmdir()
            self._dir = None

    def _plug(self) -> _PtyConnection:
        if self._dir is None:
            raise RuntimeError("bind() first")
        master, slave = os.openpty()
        try:
            # Raw on both ends: no echo, no line discipline, every byte passes as it is.
            tty.setraw(master)
            tty.setraw(slave)
            os.set_blocking(master, False)
            fresh = self._dir / "tty.new"
            fresh.symlink_to(os.ttyname(slave))
            fresh.replace(self._dir / "tty")
            return _PtyConnection(master, slave, faults=self._faults, sleep=self._sleep)
        except BaseException:
            os.close(master)
            os.close(slave)
            raise


class Simulator:
    """A simulated device serving drivers over loopback TCP or a pseudo-terminal, with injectable faults.

    Subclasses override `handle` (one call per link, the same code for both transports) and add the
    device's own operations, writing through `SimConnection.write` so faults apply.
    """

    def __init__(
        self,
        *,
        transport: SimTransport = "tcp",
        host: str = LOOPBACK,
        port: int = 0,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.faults: Final = Faults()
        """Faults applied to every byte this simulator sends."""
        self.transport: Final = transport
        self.log = structlog.get_logger().bind(simulator=type(self).__name__)
        self._endpoint: _Endpoint = (
            _TcpEndpoint(host, port, self.faults, sleep) if transport == "tcp" else _PtyEndpoint(self.faults, sleep)
        )
        self._url: str | None = None
        self._links: list[SimConnection] = []
        self._connected = asyncio.Event()
        self._serving = False
        self._task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        """What a driver connects to: ``socket://127.0.0.1:PORT`` or the pseudo-terminal's path."""
        if self._url is None:
            raise RuntimeError("the simulator is not bound yet: bind(), start() or `async with` it first")
        return self._url

    def transport_spec(self, serial: SerialSettings | None = None) -> TransportSpec:
        """Return the transport a driver configuration needs to reach this simulator."""
        return TransportSpec(url=self.url, serial=serial if self.transport == "pty" else None)

    @property
    def connections(self) -> tuple[SimConnection, ...]:
        """Links open right now, oldest first (a pseudo-terminal counts as soon as it is plugged in)."""
        return tuple(link for link in self._links if not link.closed)

    async def bind(self) -> str:
        """Claim the port or pseudo-terminal and return the URL; idempotent."""
        if self._url is None:
            self._url = await self._endpoint.bind()
            self.log.debug("simulator bound", url=self._url)
        return self._url

    async def serve(self) -> None:
        """Serve drivers until cancelled (binding first if needed), then release everything."""
        self._claim()
        await self._serve()

    async def start(self) -> None:
        """Bind and serve in a task this simulator owns until stop()."""
        await self.bind()
        self._claim()
        self._task = asyncio.create_task(self._serve(), name=f"{type(self).__name__} serve")

    async def stop(self) -> None:
        """Stop serving, close every link and release the endpoint; re-raise a handler's failure."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.wait([task])
        await self._endpoint.close()  # serve() never ran if it was cancelled before its first step
        if task is not None and not task.cancelled() and (error := task.exception()) is not None:
            raise error

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def wait_for_connection(self) -> SimConnection:
        """Return the newest open link, waiting until a driver connects (a pseudo-terminal is always there)."""
        while not self.connections:
            self._connected.clear()
            await self._connected.wait()
        return self.connections[-1]

    def disconnect(self) -> None:
        """Hang up every link now, as a pulled cable would."""
        for link in self.connections:
            link.hang_up()

    async def handle(self, conn: SimConnection) -> None:
        """Serve one link until it closes. By default: a device that only talks and ignores what it is sent."""
        while True:
            await conn.read()

    def _claim(self) -> None:
        if self._serving:
            raise RuntimeError("a simulator serves once")
        self._serving = True

    async def _serve(self) -> None:
        try:
            await self.bind()
            await self._endpoint.serve(self._run_link)
        finally:
            await self._endpoint.close()

    async def _run_link(self, conn: SimConnection) -> None:
        self._links.append(conn)
        self._connected.set()
        self.log.debug("link up", peer=conn.peer)
        try:
            await self.handle(conn)
        except LinkClosedError:
            pass
        finally:
            await conn.aclose()
            self._links.remove(conn)
            self.log.debug("link down", peer=conn.peer, bytes_sent=conn.bytes_sent)
