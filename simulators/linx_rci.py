"""A Linx CIJ printer speaking RCI over TCP or a pseudo-terminal, built on the driver's own framer and commands.

Answers as the driver's module docstring assumes the device does (C-status codes, status masks, 0x1F
clear): a command with a bad checksum gets a NAK with CHECKSUM_ERROR, an unknown command UNKNOWN_COMMAND,
a record into a full remote buffer BUFFER_FULL. Replies it is sent and bytes outside frames are ignored.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Final

from drivers.framing.linx_rci import BAD_CHECKSUM, Command, RciFramer, Reply, encode_reply
from drivers.printer.base import FaultReason
from drivers.printer.linx_rci import (
    COUNT_NAME_WIDTH,
    DEFAULT_REMOTE_BUFFER,
    ERROR_BITS,
    OTHER_WARNING,
    WARNING_BITS,
    CmdId,
    CStatus,
    JetState,
    LinxRciPrinter,
    PrintCount,
    PrintState,
    RciStatus,
    message_name,
    parse_load_message,
    parse_remote_field_data,
)
from simulators.base import LOOPBACK, SimTransport, Sleep
from simulators.printer import PrinterEngine, PrinterSimulator, ReplyFault

if TYPE_CHECKING:
    from collections.abc import Callable

    from simulators.base import SimConnection
    from simulators.printer import Printed

P_STATUS_OK: Final = 0x00
P_STATUS_ATTENTION: Final = 0x01
"""P-status when a fault or warning is pending (ASSUMED meaning; the driver does not read it)."""


class LinxRciSim(PrinterSimulator):
    """A Linx printer: remote buffer FIFO, message print counter, jet and print state, faults as status masks."""

    def __init__(
        self,
        *,
        depth: int = DEFAULT_REMOTE_BUFFER,
        jobs: dict[str, tuple[str, ...]] | None = None,
        job: str | None = None,
        message_name_width: int = 16,
        field_separator: str = "",
        jet_time_s: float = 0.0,
        transport: SimTransport = "tcp",
        host: str = LOOPBACK,
        port: int = 0,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        engine = PrinterEngine(depth=depth)
        if jobs is not None:
            engine.jobs = dict(jobs)
        if job is not None and not engine.select(job):
            raise ValueError(f"job {job!r} is not one of the simulator's jobs {sorted(engine.jobs)}")
        super().__init__(engine, transport=transport, host=host, port=port, sleep=sleep)
        self.message_name_width: Final = message_name_width
        self.field_separator: Final = field_separator
        self.jet_time_s = jet_time_s
        """How long jet start and stop take before they are answered."""
        self.jet_running = True
        self.commands: list[Command] = []
        """Every well-formed command received, in order."""

    def product_detect(self) -> Printed | None:
        """Pass a product under the head; with the jet off nothing prints (a missed product)."""
        if not self.jet_running:
            self.engine.missed += 1
            return None
        return self.engine.product_detect()

    def status(self) -> RciStatus:
        """Return the status the device would report now."""
        engine = self.engine
        errors = 0
        for reason in engine.faults:
            errors |= 1 << ERROR_BITS.get(reason, ERROR_BITS[FaultReason.OTHER])
        warnings = 0
        for name in engine.warnings:
            warnings |= 1 << WARNING_BITS.get(name, WARNING_BITS[OTHER_WARNING])
        if engine.printing and self.jet_running:
            print_state = PrintState.PRINTING
        elif engine.job is not None:
            print_state = PrintState.IDLE
        else:
            print_state = PrintState.NOT_READY
        jet = JetState.RUNNING if self.jet_running else JetState.STOPPED
        return RciStatus(jet, print_state, errors, warnings)

    async def handle(self, conn: SimConnection) -> None:
        """Answer every command on this link until it closes."""
        framer = RciFramer()
        while True:
            for item in framer.feed(await conn.read()):
                if isinstance(item, Command):
                    self.commands.append(item)
                    await self._on_command(conn, item)
                elif isinstance(item, Reply):
                    self.log.warning("reply sent to the printer ignored", frame=item)
                elif item.reason == BAD_CHECKSUM and item.data:
                    # The command id is the first byte of the refused frame's content.
                    await self._reply(conn, item.data[0], self.refused(), c_status=CStatus.CHECKSUM_ERROR)
                else:
                    self.log.warning("garbage ignored", reason=item.reason, data=item.data[:64])

    async def _on_command(self, conn: SimConnection, command: Command) -> None:
        planned = self.refused()
        if planned is not None and planned[0] is ReplyFault.NAK:
            await self._reply(conn, command.cmd, None, c_status=CStatus.REFUSED)
            return
        c_status, data = await self._carry_out(command)
        await self._reply(conn, command.cmd, planned, c_status=c_status, data=data)

    async def _carry_out(self, command: Command) -> tuple[CStatus, bytes]:
        """Do what command asks; return the C-status (OK or why it was refused) and the reply data."""
        cmd, data = command.cmd, command.data
        if cmd in (CmdId.START_JET, CmdId.STOP_JET):
            await self.sleep(self.jet_time_s)
            self.jet_running = cmd == CmdId.START_JET
            return CStatus.OK, b""
        handlers: dict[int, Callable[[bytes], tuple[CStatus, bytes]]] = {
            CmdId.STATUS: self._status,
            CmdId.MESSAGE_PRINT_COUNT: self._print_count,
            CmdId.DOWNLOAD_REMOTE_DATA: self._download,
            CmdId.LOAD_MESSAGE: self._load_message,
            CmdId.CLEAR_REMOTE_BUFFER: self._clear,
            CmdId.START_PRINT: self._start_print,
            CmdId.STOP_PRINT: self._stop_print,
        }
        handler = handlers.get(cmd)
        if handler is None:
            return CStatus.UNKNOWN_COMMAND, b""
        return handler(data)

    def _status(self, _data: bytes) -> tuple[CStatus, bytes]:
        return CStatus.OK, self.status().encode()

    def _load_message(self, data: bytes) -> tuple[CStatus, bytes]:
        try:
            name, _count = parse_load_message(data, self.message_name_width)
        except ValueError:
            return CStatus.BAD_DATA, b""
        return (CStatus.OK if self.engine.select(name) else CStatus.UNKNOWN_MESSAGE), b""

    def _clear(self, _data: bytes) -> tuple[CStatus, bytes]:
        self.engine.clear()
        return CStatus.OK, b""

    def _start_print(self, _data: bytes) -> tuple[CStatus, bytes]:
        if self.engine.job is None:
            return CStatus.NOT_READY, b""
        self.engine.printing = True
        self.engine.wait_changed().set()
        return CStatus.OK, b""

    def _stop_print(self, _data: bytes) -> tuple[CStatus, bytes]:
        self.engine.printing = False
        self.engine.wait_changed().set()
        return CStatus.OK, b""

    def _print_count(self, data: bytes) -> tuple[CStatus, bytes]:
        if len(data) != COUNT_NAME_WIDTH:
            return CStatus.BAD_DATA, b""
        name = data.split(b"\0", 1)[0].decode("latin-1")
        job = self.engine.job or ""
        if name and name != job:
            return CStatus.UNKNOWN_MESSAGE, b""
        return CStatus.OK, PrintCount(self.engine.counter, job).encode()

    def _download(self, data: bytes) -> tuple[CStatus, bytes]:
        engine = self.engine
        try:
            value = parse_remote_field_data(data).decode("latin-1")
        except ValueError:
            return CStatus.BAD_DATA, b""
        names = engine.field_names()
        if not names:
            return CStatus.NOT_READY, b""
        values = value.split(self.field_separator) if self.field_separator else [value]
        if len(values) != len(names):
            # Without a separator a message with several remote fields cannot be split (ASSUMED refusal).
            return CStatus.BAD_DATA, b""
        if engine.enqueue(tuple(zip(names, values, strict=True))) is None:
            return CStatus.BUFFER_FULL, b""
        return CStatus.OK, b""

    async def _reply(
        self,
        conn: SimConnection,
        cmd: int,
        planned: tuple[ReplyFault, float] | None,
        *,
        c_status: int,
        data: bytes = b"",
    ) -> None:
        attention = self.engine.faults or self.engine.warnings
        if planned is not None and planned[0] is ReplyFault.NAK:
            planned, c_status = None, CStatus.REFUSED
        frame = encode_reply(
            cmd,
            data,
            ack=c_status == CStatus.OK,
            p_status=P_STATUS_ATTENTION if attention else P_STATUS_OK,
            c_status=c_status,
        )
        await self.answer(conn, frame, planned)


def from_options(options: LinxRciPrinter.Options, *, port: int = 0, transport: SimTransport = "tcp") -> LinxRciSim:
    """Return a simulator of the printer options describe: its buffer, message name width, separator, job."""
    job = options.job or "SERIAL"
    message_name(job, options.message_name_width)  # a job the driver could not select is a configuration error
    return LinxRciSim(
        depth=options.remote_buffer_size,
        jobs={job: tuple(options.fields)},
        message_name_width=options.message_name_width,
        field_separator=options.field_separator,
        transport=transport,
        port=port,
    )
