"""A simulated Cognex DataMan reader on DMCC, over TCP or a pty (a `simulators.reader.ReaderSimulator`).

`DmccSim` parses with the driver's own `CommandFramer` and answers with `encode_response`, so it speaks exactly the
dialect `drivers.framing.dmcc` documents, with the same ASSUMED points. Its own behaviour (ASSUMED too): it powers up
in silent mode, the DataMan default; ``SET COM.DMCC-RESPONSE`` is answered in the mode in force when it arrived
(so switching from silent to extended gets no answer, from extended to silent gets ``[0]``); in silent mode
invalid commands and errors get no answer at all, as the manual says; a refused command answers status 105
(reader unavailable); parameters known: `DEFAULT_PARAMETERS` (names case-insensitive).
"""

from __future__ import annotations

import asyncio
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
from simulators.base import LOOPBACK, SimTransport, Sleep
from simulators.reader import ReaderFault, ReaderSimulator

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
