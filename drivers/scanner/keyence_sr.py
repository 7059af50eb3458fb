"""Keyence SR code readers (SR-750/1000/2000/X) over TCP (command port 9004 observed on SR-X) or RS-232C.

Layers: `Link` (bytes) → `drivers.framing.keyence_sr` (commands ↔ `Reply`) → `ReaderExchange` (shared with the
DMCC driver: one command at a time, reads the reader makes on its own delivered in order) → `KeyenceSrReader`.

Verified against public sources (protocols.md §2.2) [S + C]: ``LON`` → ``OK,LON`` then the read data, ``LOFF`` →
``OK,LOFF``, ``ER,<command>,<ee>`` errors and their code table, CR or STX/ETX framing, the optional leading ESC,
``KEYENCE`` as the identity command, ``ERROR`` as the default no-read string [K]. ASSUMED, to confirm on a reader:

- ``KEYENCE`` answers ``OK,KEYENCE[,<model>[,<firmware>]]``; connect() takes whatever values come;
- after ``LON`` the reader sends exactly one line: the code, or the no-read string when its read time ends (a
  reader in one-shot trigger mode); some readers send no ``OK,LON`` first, which is accepted as well;
- a read made on the reader's own trigger input arrives as a plain data line; one arriving while a ``LON``
  waits would be taken for its answer, so with host triggering do not also wire the reader's own input.
The SR-1000's separate command and data ports [K] are not handled: point the driver at the port that carries both.
"""

from __future__ import annotations

import asyncio
from typing import Final, Literal

from pydantic import Field

from drivers.base import CodeRead, DeviceInfo, DriverContext, DriverOptions
from drivers.framing.keyence_sr import ER, OK, Framing, Reply, ReplyFramer, encode_command, error_text
from drivers.framing.line import DEFAULT_MAX_LENGTH
from drivers.scanner.base import CodeReader
from drivers.scanner.dmcc import ReaderExchange
from drivers.transport.link import Link, open_link
from edge.errors import DeviceRejectedError, TransientDeviceError

MODEL: Final = "Keyence SR reader"

DEFAULT_TCP_PORT: Final = 9004
"""The command port seen on SR-X readers [C]; check the reader's Ethernet settings."""

TRIGGER_TIMEOUT_S: Final = 3.0
"""Longest a ``LON`` may take to bring its read. The reader sends the no-read string itself when its read time
ends (set to well under a second on a line; 1 s is a common setting), so 3 s leaves room for retries the reader
makes inside one trigger without mistaking a dead link for a long read."""

NO_READ: Final = "ERROR"
IDENTITY: Final = "KEYENCE"
LON: Final = "LON"
LOFF: Final = "LOFF"


class KeyenceSrError(DeviceRejectedError):
    """The reader answered ``ER``; the command was not carried out."""

    def __init__(self, command: str, code: str) -> None:
        self.code = code
        super().__init__(f"reader refused {command}: ER {code} ({error_text(code)})")


class KeyenceSrReader(CodeReader):
    """A Keyence SR reader: trigger() for one read (``LON``), run() delivers reads made on its own trigger."""

    class Options(DriverOptions):
        """How the reader is set up; match its communication settings."""

        framing: Literal["CR", "STX/ETX"] = "CR"
        """Header and terminator set on the reader: none and CR, or STX and ETX."""
        leading_esc: bool = False
        """Send ESC before every command, so a half-received command left on the reader is discarded first."""
        no_read: str = NO_READ
        """What the reader sends when it finds no code (its "error code" output setting, ``ERROR`` by default)."""
        trigger_timeout_s: float = Field(TRIGGER_TIMEOUT_S, gt=0, le=60)
        """Longest a ``LON`` may take to bring its read: the reader's read time plus margin."""
        max_length: int = Field(DEFAULT_MAX_LENGTH, ge=16, le=1 << 20)
        """Longest reply accepted; a longer one is garbage."""

    def __init__(self, context: DriverContext, options: DriverOptions) -> None:
        if not isinstance(options, KeyenceSrReader.Options):
            raise TypeError(f"KeyenceSrReader takes KeyenceSrReader.Options, not {type(options).__name__}")
        super().__init__(context, options)
        self._options = options
        self._framing: Framing = options.framing
        self._no_read = options.no_read.encode("latin-1")
        self._link: Link | None = None
        self._exchange: ReaderExchange[Reply] | None = None
        self._used = False

    async def connect(self) -> DeviceInfo:
        """Open the link and ask the reader's identity (``KEYENCE``) within the connect timeout."""
        if self._used:
            raise RuntimeError("a driver is single-use: make a new one to reconnect")
        self._used = True
        link = await open_link(
            self.context.transport, connect_timeout_s=self.context.connect_timeout_s, log=self.context.log
        )
        self._link = link
        self._exchange = ReaderExchange(
            link,
            ReplyFramer(self._framing, self._options.max_length),
            self.context,
            unsolicited=self._unsolicited,
            deliver=self._deliver_read,
        )
        try:
            async with asyncio.timeout(self.context.connect_timeout_s):
                values = await self.command(IDENTITY)
        except TimeoutError as err:
            await link.close()
            raise TransientDeviceError(
                f"reader at {link.peer} did not answer {IDENTITY} within {self.context.connect_timeout_s:g} s"
            ) from err
        except (Exception, asyncio.CancelledError):
            await link.close()
            raise
        model = values[0] if values and values[0] else MODEL
        firmware = values[1] if len(values) > 1 and values[1] else None
        self.context.log.info("reader connected", peer=link.peer, model=model, firmware=firmware)
        return DeviceInfo(model=model, firmware=firmware)

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
        """Read once (``LON``): the code as the reader sent it, or None on a no-read; KeyenceSrError on ``ER``."""
        reply = await self._connected().ask(
            self._encode(LON),
            lambda r: r.kind == "DATA" or (r.kind == ER and r.command == LON),
            timeout_s=self._options.trigger_timeout_s,
            what=LON,
            expected=lambda r: r.kind == OK and r.command == LON,
        )
        if reply.error is not None:
            raise KeyenceSrError(LON, reply.error)
        at = self.context.clock()
        if reply.data == self._no_read:
            self.context.log.info("no read")
            return None
        return CodeRead(device_id=self.context.device_id, at=at, data=reply.data)

    async def stop_reading(self) -> None:
        """End a read in progress (``LOFF``), as after a trigger the line no longer needs."""
        await self.command(LOFF)

    async def command(self, name: str, *args: str) -> tuple[str, ...]:
        """Send ``name[,args]`` and return the values of its ``OK`` reply; KeyenceSrError on ``ER``."""
        try:
            data = self._encode(name, *args)
        except ValueError as err:
            raise DeviceRejectedError(str(err)) from err
        reply = await self._connected().ask(
            data,
            lambda r: r.kind in (OK, ER) and r.command == name,
            timeout_s=self.context.response_timeout_s,
            what=name,
        )
        if reply.error is not None:
            raise KeyenceSrError(name, reply.error)
        return reply.values

    def _encode(self, name: str, *args: str) -> bytes:
        return encode_command(name, *args, framing=self._framing, esc=self._options.leading_esc)

    def _unsolicited(self, reply: Reply) -> bytes | None:
        """Return the code of a read the reader made on its own, b"" for a no-read, None for a command reply."""
        if reply.kind != "DATA":
            return None
        if reply.data == self._no_read:
            self.context.log.info("no read on the reader's own trigger")
            return b""
        return reply.data

    def _connected(self) -> ReaderExchange[Reply]:
        if self._exchange is None:
            raise RuntimeError("the driver is not connected: call connect() first")
        return self._exchange
