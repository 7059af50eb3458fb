"""A simulated Cognex DataMan reader on DMCC, over TCP or a pty; and `ReaderSimulator`, what every smart reader shares.

`ReaderSimulator` keeps the codes "in front of the reader" (`present`): each trigger, from the host or from the
reader's own input (`read_on_own_trigger`), takes the next one, or reads nothing (no-read) when the queue is empty
or a no-read was injected. Besides the byte faults of `Simulator.faults`, answers can be delayed, left out or
refused (`inject_reply`), and a grade suffix can be appended to every read, as readers set to verify do.

`DmccSim` parses with the driver's own `CommandFramer` and answers with `encode_response`, so it speaks exactly the
dialect `drivers.framing.dmcc` documents, with the same ASSUMED points. Its own behaviour (ASSUMED too): it powers up
in silent mode, the DataMan default; ``SET COM.DMCC-RESPONSE`` is answered in the mode in force when it arrived
(so switching from silent to extended gets no answer, from extended to silent gets ``[0]``); in silent mode
invalid commands and errors get no answer at all, as the manual says; a refused command answers status 105
(reader unavailable); parameters known: `DEFAULT_PARAMETERS` (names case-insensitive).
"""

from __future__ import annotations

import asyncio
from collections import deque
from enum import StrEnum
from typing import TYPE_CHECKING, Final

from drivers.framing.base import Garbage
from drivers.framing.dmcc import (
    Command,
    CommandFramer,
    ResponseMode,
    Status,
    encode_read,
    encode_response,
)
from simulators.base import LOOPBACK, SimTransport, Simulator, Sleep

if TYPE_CHECKING:
    from collections.abc import Mapping

    from drivers.scanner.dmcc import DmccReader
    from simulators.base import SimConnection

DEFAULT_PARAMETERS: Final[Mapping[str, str]] = {
    "DEVICE.TYPE": "DataMan 475V (simulated)",
    "DEVICE.FIRMWARE-VER": "6.1.0-sim",
    "SYMBOL.DATAMATRIX": "ON",
    "COM.DMCC-RESPONSE": "0",
}
MODE_PARAMETER: Final = "COM.DMCC-RESPONSE"
_MODES: Final[dict[str, ResponseMode]] = {"0": "silent", "1": "extended"}


class ReaderFault(StrEnum):
    DELAYED = "delayed"
    """Answer the next command after a delay."""
    MISSING = "missing"
    """Carry out the next command but never answer it."""
    REFUSED = "refused"
    """Refuse the next command with the dialect's error answer; nothing is carried out."""


class ReaderSimulator(Simulator):
    """A smart reader: codes queued in front of it, triggers that take them, answer faults. Dialects subclass it."""

    def __init__(
        self,
        *,
        no_read: bytes,
        grade_suffix: bytes = b"",
        transport: SimTransport = "tcp",
        host: str = LOOPBACK,
        port: int = 0,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        super().__init__(transport=transport, host=host, port=port, sleep=sleep)
        self.no_read: Final = no_read
        self.grade_suffix = grade_suffix
        """Appended to every read (e.g. b",A" for a reader set to output its ISO 15415 grade); not to no-reads."""
        self.sleep: Final = sleep
        self.in_front: deque[bytes | None] = deque()
        """Codes waiting to pass the reader, oldest first; None is a pack without a readable code."""
        self.reads: list[bytes | None] = []
        """What every trigger read, in order (None: a no-read), whatever the faults then did on the wire."""
        self._no_reads = 0
        self._replies: deque[tuple[ReaderFault, float]] = deque()

    def present(self, code: bytes | None) -> None:
        """Put a code (None: nothing readable) in front of the reader; triggers take them in order."""
        self.in_front.append(code)

    def inject_no_read(self, count: int = 1) -> None:
        """Make the next count triggers read nothing, whatever is in front (each still takes its code)."""
        self._no_reads += count

    def inject_reply(self, fault: ReaderFault, delay_s: float = 0.0) -> None:
        """Apply fault to the next command answered (queued: one fault per command)."""
        self._replies.append((fault, delay_s))

    def take_reply_fault(self) -> tuple[ReaderFault, float] | None:
        """Use up the next answer fault; call once per command, before carrying it out."""
        return self._replies.popleft() if self._replies else None

    def take_read(self) -> bytes | None:
        """Trigger once: return the code read (grade suffix included), or None on a no-read."""
        code = self.in_front.popleft() if self.in_front else None
        if self._no_reads:
            self._no_reads -= 1
            code = None
        self.reads.append(code)
        return None if code is None else code + self.grade_suffix

    def read_bytes(self, code: bytes | None) -> bytes:
        """Return what the reader outputs for a read: the code, or its no-read string."""
        return self.no_read if code is None else code

    async def answer(self, conn: SimConnection, data: bytes, planned: tuple[ReaderFault, float] | None) -> None:
        """Send one answer as the planned fault says: as it is, never (MISSING), or late (DELAYED)."""
        if planned is not None:
            fault, delay_s = planned
            if fault is ReaderFault.MISSING:
                return
            if fault is ReaderFault.DELAYED:
                await self.sleep(delay_s)
        await conn.write(data)

    async def read_on_own_trigger(self) -> bytes | None:
        """Trigger from the reader's own input (a photo-eye on the reader): send the read to every link unasked."""
        code = self.take_read()
        for link in self.connections:
            await link.write(self.unsolicited(code))
        return code

    def unsolicited(self, code: bytes | None) -> bytes:
        """Return the bytes a read made on the reader's own trigger goes out as (dialects override)."""
        raise NotImplementedError


class DmccSim(ReaderSimulator):
    """A Cognex DataMan answering DMCC: TRIGGER, GET, SET, silent and extended modes, checksums, ids."""

    def __init__(
        self,
        *,
        mode: ResponseMode = "silent",
        no_read: bytes = b"NoRead",
        grade_suffix: bytes = b"",
        parameters: Mapping[str, str] = DEFAULT_PARAMETERS,
        transport: SimTransport = "tcp",
        host: str = LOOPBACK,
        port: int = 0,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        super().__init__(
            no_read=no_read, grade_suffix=grade_suffix, transport=transport, host=host, port=port, sleep=sleep
        )
        self.parameters: dict[str, str] = {name.upper(): value for name, value in parameters.items()}
        self.parameters[MODE_PARAMETER] = "1" if mode == "extended" else "0"
        self.commands: list[Command] = []
        """Every command received, in order (checksum failures included)."""

    @property
    def mode(self) -> ResponseMode:
        """The response mode in force."""
        return _MODES[self.parameters[MODE_PARAMETER]]

    def unsolicited(self, code: bytes | None) -> bytes:
        """Return a read on the reader's own trigger: status 1 in extended mode, the plain line in silent mode."""
        data = encode_read(self.read_bytes(code), mode=self.mode)
        return encode_response(data, mode=self.mode, status=Status.READ)

    async def handle(self, conn: SimConnection) -> None:
        """Answer every command line in turn; a line without a DMCC header is ignored, as the reader does."""
        framer = CommandFramer()
        while True:
            for item in framer.feed(await conn.read()):
                if isinstance(item, Garbage):
                    self.log.warning("line ignored", reason=item.reason, data=item.data[:64])
                    continue
                self.commands.append(item)
                await self._respond(conn, item)

    async def _respond(self, conn: SimConnection, command: Command) -> None:
        mode = self.mode  # the answer goes out in the mode the command arrived in
        if not command.checksum_ok:
            await self._send(conn, command, mode=mode, status=Status.BAD_CHECKSUM, data=b"", planned=None)
            return
        planned = self.take_reply_fault()
        if planned is not None and planned[0] is ReaderFault.REFUSED:
            await self._send(conn, command, mode=mode, status=Status.UNAVAILABLE, data=b"", planned=None)
            return
        status, data = self._carry_out(command.words())
        if mode == "silent" and status == Status.OK and not data and command.words()[0] != "GET":
            return  # silent mode answers only what returns data
        await self._send(conn, command, mode=mode, status=status, data=data, planned=planned)

    def _carry_out(self, words: list[str]) -> tuple[int, bytes]:
        """Do what words ask; return (status, data)."""
        name, args = words[0], words[1:]
        if name == "TRIGGER" and len(args) == 1 and args[0].upper() in ("ON", "OFF"):
            if args[0].upper() == "OFF":
                return Status.OK, b""
            return Status.OK, encode_read(self.read_bytes(self.take_read()), mode=self.mode)
        if name == "GET" and len(args) == 1:
            value = self.parameters.get(args[0].upper())
            return (Status.INVALID_PARAMETER, b"") if value is None else (Status.OK, value.encode("latin-1"))
        if name == "SET" and len(args) >= 2:
            parameter, value = args[0].upper(), " ".join(args[1:])
            if parameter not in self.parameters or (parameter == MODE_PARAMETER and value not in _MODES):
                return Status.INVALID_PARAMETER, b""
            self.parameters[parameter] = value
            return Status.OK, b""
        return Status.INVALID_COMMAND, b""

    async def _send(
        self,
        conn: SimConnection,
        command: Command,
        *,
        mode: ResponseMode,
        status: int,
        data: bytes,
        planned: tuple[ReaderFault, float] | None,
    ) -> None:
        if mode == "silent":
            if status != Status.OK:
                return  # silent mode: errors are ignored without feedback
            await self.answer(conn, encode_response(data, mode="silent"), planned)
            return
        line = encode_response(
            data, mode="extended", status=status, checksum=command.checksum, command_id=command.command_id
        )
        await self.answer(conn, line, planned)


def from_options(options: DmccReader.Options, *, port: int = 0, transport: SimTransport = "tcp") -> DmccSim:
    """Return a simulated DataMan the driver options fit: in the mode the driver expects unless it switches itself."""
    mode: ResponseMode = "silent" if options.set_response_mode else options.response_mode
    return DmccSim(mode=mode, no_read=options.no_read.encode("latin-1"), port=port, transport=transport)
