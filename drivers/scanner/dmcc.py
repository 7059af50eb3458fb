"""Cognex DataMan readers over DMCC (TCP port 23 by default, or RS-232/USB serial): triggered and unsolicited reads.

Layers: `Link` (bytes) → `drivers.framing.dmcc` (command lines ↔ `Response`) → `ReaderExchange` (one request
at a time, and the reads the reader makes on its own between and during requests) → `DmccReader` (the reader role).

Verified against the public DMCC pages (protocols.md §2.1) [S]: header and checksum formats, silent and extended
response modes, the status codes and their wording, base64 read data in extended mode, ``TRIGGER ON``, ``GET``,
``SET``, ``SET COM.DMCC-RESPONSE 0|1``. ASSUMED, to confirm against a reader (see also the framing module):

- ``GET DEVICE.TYPE`` and ``GET DEVICE.FIRMWARE-VER`` name the model and firmware (connect() uses them as the
  handshake: a device that is not a DataMan does not answer them);
- the answer to ``TRIGGER ON`` carries the read (or the no-read string) itself, status 0; a read the reader makes
  on its own trigger comes as status 1 in extended mode and as a plain line in silent mode;
- a reader that switches response mode may or may not answer the ``SET COM.DMCC-RESPONSE`` that switched it:
  connect() sends it one-way and accepts an answer to it while waiting for the handshake;
- the no-read string is what the reader is configured to send (`DmccReader.Options.no_read`, "NoRead" here).

Silent mode has no ids: the first line after a command is its answer, and a line that arrives while nothing
was asked is a read. A read made on the reader's own trigger while a command waits would be taken for its
answer, so with silent mode use one trigger source only. Extended mode has no such ambiguity (ids, status 1).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections import deque
from typing import TYPE_CHECKING, Final, Generic, Literal, TypeVar

from pydantic import Field

from drivers.base import CodeRead, DeviceInfo, DriverContext, DriverOptions
from drivers.framing.base import Framer, Garbage
from drivers.framing.dmcc import (
    HEADER_START,
    MAX_COMMAND_ID,
    Response,
    ResponseFramer,
    ResponseMode,
    Status,
    encode_command,
    status_text,
)
from drivers.printer.exchange import STRAY, Exchange
from drivers.scanner.base import CodeReader
from drivers.transport.link import Link, open_link
from edge.errors import DeviceRejectedError, ProtocolError, TransientDeviceError

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterator
    from datetime import datetime

FrameT = TypeVar("FrameT")

MODEL: Final = "Cognex DataMan"

DEFAULT_TCP_PORT: Final = 23
"""Where an Ethernet DataMan takes DMCC unless its Setup Tool says otherwise [S]; 44444 is the SDK, not DMCC."""

TRIGGER_TIMEOUT_S: Final = 3.0
"""Longest a ``TRIGGER ON`` may take to answer. The reader answers when it decodes or when its own read timeout
ends (a no-read); DataMan read timeouts are set well under a second on a line, and 3 s leaves room for a slow
decode of a damaged code without taking a dead link for a long read."""

NO_READ: Final = "NoRead"

SET_RESPONSE_MODE: Final = "SET COM.DMCC-RESPONSE"
DEVICE_TYPE: Final = "DEVICE.TYPE"
FIRMWARE_VERSION: Final = "DEVICE.FIRMWARE-VER"
TRIGGER_ON: Final = "TRIGGER ON"
TRIGGER_OFF: Final = "TRIGGER OFF"

MODE_VALUE: Final[dict[ResponseMode, str]] = {"silent": "0", "extended": "1"}


class DmccError(DeviceRejectedError):
    """The reader answered an error status; the command was not carried out."""

    def __init__(self, what: str, status: int) -> None:
        self.status = status
        super().__init__(f"reader refused {what}: status {status} ({status_text(status)})")


class ReaderExchange(Exchange[FrameT], Generic[FrameT]):
    """`Exchange` for a reader: requests in turn, plus the reads the reader sends on its own, never dropped.

    ``unsolicited(frame)`` says whether a frame is a read nobody asked for: its code bytes, b"" for a no-read
    (taken and not delivered: the line notices a missing read from its own trigger), None when it is not a read.
    Reads are delivered in arrival order, whether they come while a request waits for its answer (taken through
    ``expected``), in the same chunk after the answer, or while nothing is asked (`listen`). Every other frame
    nobody asked for is reported as garbage, as `Exchange` does.
    """

    def __init__(
        self,
        link: Link,
        framer: Framer[FrameT],
        context: DriverContext,
        *,
        unsolicited: Callable[[FrameT], bytes | None],
        deliver: Callable[[bytes, datetime], Awaitable[None]],
    ) -> None:
        super().__init__(link, framer, context)
        self._unsolicited = unsolicited
        self._deliver = deliver
        self._reads: deque[tuple[bytes, datetime]] = deque()
        self._demand = 0
        self._wanted = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        # Reads go to the line in the order they came, whoever (a request or the listener) took them off the link.
        self._delivering = asyncio.Lock()

    async def ask(
        self,
        data: bytes,
        accept: Callable[[FrameT], bool],
        *,
        timeout_s: float,
        what: str,
        expected: Callable[[FrameT], bool] | None = None,
    ) -> FrameT:
        """Send data and return the first frame accept() takes (as `Exchange.request`), reads delivered meanwhile."""
        try:
            with self._wanting():
                answer = await self.request(
                    data, accept, timeout_s=timeout_s, what=what, expected=lambda f: self._note(f, expected)
                )
                self._take_leftovers()
        except Exception:
            # A read that came before the failure is still a read: it reaches the line before the error does.
            await self._deliver_reads()
            raise
        await self._report()
        await self._deliver_reads()
        return answer

    async def send(self, data: bytes) -> None:
        """Send data that has no answer, taking the link from `listen` for the moment."""
        with self._wanting():
            await super().send(data)

    @contextlib.contextmanager
    def _wanting(self) -> Iterator[None]:
        """Make `listen` give the link up until the block ends."""
        self._demand += 1
        self._wanted.set()
        self._idle.clear()
        try:
            yield
        finally:
            self._demand -= 1
            if not self._demand:
                self._wanted.clear()
                self._idle.set()

    async def listen(self) -> None:
        """Deliver reads while no request is waiting; return never (TransientDeviceError when the link goes)."""
        while True:
            await self._idle.wait()
            async with self._lock:
                if not self._received and not self._wanted.is_set():
                    chunk = await self._read_unless_wanted()
                    if chunk is not None:
                        self._received.extend(self._framer.feed(chunk))
                self._take_leftovers()
            await self._report()
            await self._deliver_reads()

    async def _read_unless_wanted(self) -> bytes | None:
        """Read the next chunk, or give the link up (None) as soon as a request wants it."""
        reading = asyncio.ensure_future(self.link.read())
        wanted = asyncio.ensure_future(self._wanted.wait())
        try:
            await asyncio.wait([reading, wanted], return_when=asyncio.FIRST_COMPLETED)
        finally:
            # Cancelling a read that has not completed loses nothing: a stream read takes bytes only as it returns.
            for task in (reading, wanted):
                if not task.done():
                    task.cancel()
            await asyncio.wait([reading, wanted])
            if not reading.cancelled():
                reading.exception()  # retrieved here even when a cancellation of ours wins; raised below otherwise
        if reading.cancelled():
            return None
        return reading.result()

    def _note(self, frame: FrameT, expected: Callable[[FrameT], bool] | None) -> bool:
        code = self._unsolicited(frame)
        if code is not None:
            if code:
                self._reads.append((code, self._context.clock()))
            return True
        return expected is not None and expected(frame)

    def _take_leftovers(self) -> None:
        """Sort what arrived after an answer (or while listening): reads to deliver, the rest garbage."""
        while self._received:
            item = self._received.popleft()
            if isinstance(item, Garbage):
                self._unreported.append(item)
            elif (code := self._unsolicited(item)) is not None:
                if code:
                    self._reads.append((code, self._context.clock()))
            else:
                self._unreported.append(Garbage(_describe(item), STRAY))

    async def _deliver_reads(self) -> None:
        async with self._delivering:
            while self._reads:
                code, at = self._reads.popleft()
                await self._deliver(code, at)


class DmccReader(CodeReader):
    """A Cognex DataMan reader on DMCC: trigger() for one read, run() delivers the reads it makes on its own."""

    class Options(DriverOptions):
        """How the reader is set up; match its DMCC and output settings."""

        response_mode: Literal["silent", "extended"] = "extended"
        """Response mode to use. Extended (ids, status codes, base64 reads) is exact; silent is plain text."""
        set_response_mode: bool = True
        """Switch the reader to response_mode at connect (``SET COM.DMCC-RESPONSE``); off: it is set already."""
        checksum: bool = False
        """Send every command with an XOR checksum (header ``||1:<id>>``); the reader then checks it and answers
        with one."""
        no_read: str = NO_READ
        """The string the reader sends when it finds no code (its no-read output setting)."""
        trigger_timeout_s: float = Field(TRIGGER_TIMEOUT_S, gt=0, le=60)
        """Longest a ``TRIGGER ON`` may take to answer: the reader's own read timeout plus margin."""

    def __init__(self, context: DriverContext, options: DriverOptions) -> None:
        if not isinstance(options, DmccReader.Options):
            raise TypeError(f"DmccReader takes DmccReader.Options, not {type(options).__name__}")
        super().__init__(context, options)
        self._options = options
        self._mode: ResponseMode = options.response_mode
        self._link: Link | None = None
        self._exchange: ReaderExchange[Response] | None = None
        self._ids = itertools.count(1)
        self._one_way: set[int] = set()
        self._used = False

    async def connect(self) -> DeviceInfo:
        """Open the link, set the response mode, and ask the model and firmware within the connect timeout."""
        if self._used:
            raise RuntimeError("a driver is single-use: make a new one to reconnect")
        self._used = True
        link = await open_link(
            self.context.transport, connect_timeout_s=self.context.connect_timeout_s, log=self.context.log
        )
        self._link = link
        self._exchange = ReaderExchange(
            link, ResponseFramer(self._mode), self.context, unsolicited=self._unsolicited, deliver=self._deliver_read
        )
        try:
            async with asyncio.timeout(self.context.connect_timeout_s):
                if self._options.set_response_mode:
                    await self._send(f"{SET_RESPONSE_MODE} {MODE_VALUE[self._mode]}")
                model = await self.get(DEVICE_TYPE)
                firmware = await self.get(FIRMWARE_VERSION)
        except TimeoutError as err:
            await link.close()
            raise TransientDeviceError(
                f"reader at {link.peer} did not answer the handshake within {self.context.connect_timeout_s:g} s"
            ) from err
        except (Exception, asyncio.CancelledError):
            await link.close()
            raise
        self.context.log.info("reader connected", peer=link.peer, model=model, firmware=firmware, mode=self._mode)
        return DeviceInfo(model=model or MODEL, firmware=firmware or None)

    async def run(self) -> None:
        """Deliver the reads the reader makes on its own until the link drops (TransientDeviceError) or cancelled."""
        if self._exchange is None:
            raise RuntimeError("run() needs a connected driver: call connect() first")
        await self._exchange.listen()

    async def close(self) -> None:
        """Close the link; idempotent and never raises."""
        if self._link is not None:
            await self._link.close()

    async def trigger(self) -> CodeRead | None:
        """Read once (``TRIGGER ON``): the code as the reader sent it, or None on a no-read."""
        answer = await self._ask(TRIGGER_ON, timeout_s=self._options.trigger_timeout_s)
        at = self.context.clock()
        try:
            code = answer.read_data()
        except ValueError as err:
            raise ProtocolError(f"{TRIGGER_ON}: {err}") from err
        if not code or code == self._options.no_read.encode("latin-1"):
            self.context.log.info("no read")
            return None
        return CodeRead(device_id=self.context.device_id, at=at, data=code)

    async def get(self, parameter: str) -> str:
        """Return the value of a reader parameter (``GET <parameter>``); DmccError on an error status."""
        return (await self._ask(f"GET {parameter}")).text()

    async def set(self, parameter: str, value: str) -> None:
        """Set a reader parameter (``SET <parameter> <value>``); in silent mode there is no answer to wait for."""
        command = f"SET {parameter} {value}"
        if self._mode == "silent":
            await self._send(command)
            return
        await self._ask(command)

    # -- inside -------------------------------------------------------------------------------------

    async def _ask(self, command: str, *, timeout_s: float | None = None) -> Response:
        """Send command and return its answer; DmccError on an error status, TransientDeviceError on none."""
        exchange = self._connected()
        command_id = self._next_id() if self._mode == "extended" else None
        data = encode_command(command, checksum=self._options.checksum, command_id=command_id)
        answer = await exchange.ask(
            data,
            lambda f: self._answers(f, command_id),
            timeout_s=self.context.response_timeout_s if timeout_s is None else timeout_s,
            what=command,
            expected=self._expected,
        )
        if answer.is_error and answer.status is not None:
            raise DmccError(command, answer.status)
        return answer

    async def _send(self, command: str) -> None:
        """Send a command whose answer, if any, nobody waits for."""
        command_id = self._next_id() if self._mode == "extended" else None
        if command_id is not None:
            self._one_way.add(command_id)
        await self._connected().send(encode_command(command, checksum=self._options.checksum, command_id=command_id))

    def _answers(self, frame: Response, command_id: int | None) -> bool:
        if self._mode == "silent":
            return not frame.data.startswith(HEADER_START)
        return frame.status != Status.READ and frame.command_id == command_id

    def _expected(self, frame: Response) -> bool:
        """Return True for an answer to a one-way command (the mode switch), which the reader may or may not send."""
        if self._mode == "silent":
            return frame.data.startswith(HEADER_START)  # an extended answer sent before the switch took effect
        if frame.command_id in self._one_way:
            self._one_way.discard(frame.command_id)
            return True
        return False

    def _unsolicited(self, frame: Response) -> bytes | None:
        """Return the code of a read the reader made on its own, b"" for a no-read, None for anything else."""
        if self._mode == "extended" and frame.status != Status.READ:
            return None
        if self._mode == "silent" and frame.data.startswith(HEADER_START):
            return None
        try:
            code = frame.read_data()
        except ValueError:
            return None  # not a read after all: reported as garbage by the exchange
        if code == self._options.no_read.encode("latin-1"):
            # The line notices a missing read from its own trigger; a no-read is not a code to deliver.
            self.context.log.info("no read on the reader's own trigger")
            return b""
        return code

    def _next_id(self) -> int:
        command_id = next(self._ids)
        if command_id > MAX_COMMAND_ID:
            self._ids = itertools.count(2)
            command_id = 1
        return command_id

    def _connected(self) -> ReaderExchange[Response]:
        if self._exchange is None:
            raise RuntimeError("the driver is not connected: call connect() first")
        return self._exchange


def _describe(frame: object) -> bytes:
    for name in ("raw", "payload", "data"):
        value = getattr(frame, name, None)
        if isinstance(value, bytes):
            return value
    return repr(frame).encode()
