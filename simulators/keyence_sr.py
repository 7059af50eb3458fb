"""A simulated Keyence SR reader: ``LON``/``LOFF``/``KEYENCE`` and friends, CR or STX/ETX framed, over TCP or a pty.

It parses with the driver's own `CommandFramer` (so a leading ESC clears its receive buffer, as the reader's does)
and answers with `encode_reply`, sharing the driver's framing, reply shapes and ``ER`` code table. The codes in
front of it, the no-read string, a grade suffix and the answer faults come from `ReaderSimulator`.

Behaviour beyond the public facts (ASSUMED, like the driver's): ``KEYENCE`` answers ``OK,KEYENCE,<model>,<firmware>``;
``LON`` answers ``OK,LON`` and then, as a second line, the read or the no-read string (a one-shot trigger); ``NUM``
answers ``OK,NUM,<ok>,<ng>,<err>,<stable>,<triggers>`` with err and stable always 0; unknown commands answer
``ER,<command>,00``; a refused command (`ReaderFault.REFUSED`) answers ``ER,<command>,20``; a delayed ``LON``
sends ``OK,LON`` at once and the read late (the reader is reading), a missing one sends neither.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Final

from drivers.framing.base import Garbage
from drivers.framing.keyence_sr import ER, OK, Command, CommandFramer, Framing, Reply, encode_reply
from drivers.scanner.keyence_sr import IDENTITY, LOFF, LON
from simulators.base import LOOPBACK, SimTransport, Sleep
from simulators.reader import ReaderFault, ReaderSimulator

if TYPE_CHECKING:
    from drivers.scanner.keyence_sr import KeyenceSrReader
    from simulators.base import SimConnection

UNDEFINED_COMMAND: Final = "00"
NOT_EXECUTABLE: Final = "20"


class KeyenceSrSim(ReaderSimulator):
    """A Keyence SR reader in one-shot trigger mode, answering the host's commands."""

    def __init__(
        self,
        *,
        framing: Framing = "CR",
        no_read: bytes = b"ERROR",
        grade_suffix: bytes = b"",
        model: str = "SR-X300 (simulated)",
        firmware: str = "1.00-sim",
        transport: SimTransport = "tcp",
        host: str = LOOPBACK,
        port: int = 0,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        super().__init__(
            no_read=no_read, grade_suffix=grade_suffix, transport=transport, host=host, port=port, sleep=sleep
        )
        self.framing: Final = framing
        self.model: Final = model
        self.firmware: Final = firmware
        self.commands: list[Command] = []
        """Every command received, in order."""
        self.read_off = 0
        """How many LOFF commands arrived."""

    def unsolicited(self, code: bytes | None) -> bytes:
        """Return a read on the reader's own trigger: the data line."""
        return encode_reply(Reply("DATA", data=self.read_bytes(code)), self.framing)

    def counts(self) -> tuple[int, int, int]:
        """Return (reads, no-reads, triggers) so far, what ``NUM`` reports."""
        good = sum(1 for code in self.reads if code is not None)
        return good, len(self.reads) - good, len(self.reads)

    async def handle(self, conn: SimConnection) -> None:
        """Answer every command in turn."""
        framer = CommandFramer(self.framing)
        while True:
            for item in framer.feed(await conn.read()):
                if isinstance(item, Garbage):
                    self.log.warning("input ignored", reason=item.reason, data=item.data[:64])
                    continue
                self.commands.append(item)
                await self._respond(conn, item)

    async def _respond(self, conn: SimConnection, command: Command) -> None:
        planned = self.take_reply_fault()
        name = command.name
        if planned is not None and planned[0] is ReaderFault.REFUSED:
            await conn.write(self._encode(Reply(ER, name, (NOT_EXECUTABLE,))))
            return
        if name == LON and not command.args:
            if planned is not None and planned[0] is ReaderFault.MISSING:
                self.take_read()
                return
            await conn.write(self._encode(Reply(OK, LON)))
            read = self.read_bytes(self.take_read())
            await self.answer(conn, self._encode(Reply("DATA", data=read)), planned)
            return
        await self.answer(conn, self._encode(self._reply(command)), planned)

    def _reply(self, command: Command) -> Reply:
        name = command.name
        if name == IDENTITY and not command.args:
            return Reply(OK, IDENTITY, (self.model, self.firmware))
        if name == LOFF and not command.args:
            self.read_off += 1
            return Reply(OK, LOFF)
        if name == "NUM" and not command.args:
            good, bad, triggers = self.counts()
            return Reply(OK, "NUM", (str(good), str(bad), "0", "0", str(triggers)))
        return Reply(ER, name or "?", (UNDEFINED_COMMAND,))

    def _encode(self, reply: Reply) -> bytes:
        return encode_reply(reply, self.framing)


def from_options(options: KeyenceSrReader.Options, *, port: int = 0, transport: SimTransport = "tcp") -> KeyenceSrSim:
    """Return a simulated SR reader set up like the one the driver options describe."""
    return KeyenceSrSim(
        framing=options.framing, no_read=options.no_read.encode("latin-1"), port=port, transport=transport
    )
