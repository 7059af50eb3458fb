"""A Videojet CLARiTY coder behind the Zipher text protocol, framed by the driver's own `ZipherFramer`.

It implements the command table of protocols.md §1.2 on a `PrinterEngine`: the overall state machine
(power-up ShutDown → StartingUp → Offline taking ``shutdown_s`` + ``startup_s``, Offline ↔ Running, shutting
down), jobs (SEL/GJN/GJL/GJF), the serialization buffer (SHO/SDO/SHD/SCB/SRC/SFS/SNI/SLR/SMR/SGM) with a
record cap and a byte budget, PRN answered after ``print_time_s``, SST answered after ``transition_s``, and
faults and warnings as FLT/WRN with the driver's (ASSUMED) code table. Anything it cannot parse is answered
ERR, like any refused command (ASSUMED); empty lines are ignored.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Final

from drivers.framing.line import OVERLONG_REST
from drivers.framing.zipher import ACK, DEFAULT_MAX_LENGTH, ENCODING, ERR, ZipherFrame, ZipherFramer, encode_answer
from drivers.printer.base import FaultReason
from drivers.printer.zipher import FAULT_CODES, FAULT_TEXTS, MAX_DEPTH, ErrorState, OverallState, ZipherPrinter
from simulators.base import LOOPBACK, SimTransport, Sleep
from simulators.printer import DEFAULT_JOBS, PrinterEngine, PrinterSimulator, ReplyFault

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping

    from simulators.base import SimConnection

DEFAULT_BUFFER_BYTES: Final = 65536
"""Bytes of record data the simulated serialization buffer holds (SFS counts down from it)."""

ALWAYS_ANSWERED: Final = frozenset({"GST", "GFT", "GWN", "DAN", "SAN", "SST", "GJN"})
"""Commands answered whatever the state; the rest are refused while the printer is not Offline or Running."""

_READY: Final = (OverallState.OFFLINE, OverallState.RUNNING)


class ZipherSim(PrinterSimulator):
    """A CLARiTY printer: state machine, jobs, serialization FIFO with SNI/SLR indices, faults as FLT/WRN."""

    def __init__(
        self,
        *,
        depth: int = MAX_DEPTH,
        jobs: Mapping[str, tuple[str, ...]] | None = None,
        buffer_bytes: int = DEFAULT_BUFFER_BYTES,
        print_time_s: float = 0.0,
        transition_s: float = 0.0,
        shutdown_s: float = 0.0,
        startup_s: float = 0.0,
        max_frame_length: int = DEFAULT_MAX_LENGTH,
        clock: Callable[[], float] = time.monotonic,
        transport: SimTransport = "tcp",
        host: str = LOOPBACK,
        port: int = 0,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        engine = PrinterEngine(depth=depth, jobs=dict(jobs if jobs is not None else DEFAULT_JOBS))
        super().__init__(engine, transport=transport, host=host, port=port, sleep=sleep)
        self.max_records: Final = depth
        """The device's limit: SMR above it is refused."""
        self.buffer_bytes: Final = buffer_bytes
        self.print_time_s = print_time_s
        """How long PRN takes before its ACK."""
        self.transition_s = transition_s
        """How long an SST transition takes before its ACK."""
        self.shutdown_s = shutdown_s
        """Time spent in ShutDown after power-on before starting up by itself."""
        self.startup_s = startup_s
        """Time spent StartingUp before Offline."""
        self.max_frame_length: Final = max_frame_length
        self.commands: list[ZipherFrame] = []
        """Every frame received, in order (the leading CRs of a driver's option are not frames)."""
        self.notifications = True
        """Asynchronous notifications enabled (this simulator sends none either way; DAN/SAN only record it)."""
        self._received = asyncio.Event()
        self._clock = clock
        self._state = OverallState.OFFLINE
        self._powered_at: float | None = clock()
        self._header: tuple[str, ...] | None = None
        self._sizes: dict[int, int] = {}
        self._batch_start = 0

    # -- what a test or the line does to the device -------------------------------------------------

    @property
    def overall(self) -> OverallState:
        """The overall state now (power-up runs on the clock)."""
        if self._powered_at is not None:
            elapsed = self._clock() - self._powered_at
            if elapsed < self.shutdown_s:
                return OverallState.SHUT_DOWN
            if elapsed < self.shutdown_s + self.startup_s:
                return OverallState.STARTING_UP
            self._powered_at = None
            self._enter(OverallState.OFFLINE)
        return self._state

    @property
    def header(self) -> tuple[str, ...] | None:
        """The field names of the last SHO (None until one is sent)."""
        return self._header

    @property
    def free_bytes(self) -> int:
        """What SFS reports: the byte budget less the records waiting."""
        head, count = self.engine.next_to_print_index, self.engine.buffered
        return self.buffer_bytes - sum(self._sizes.get(i, 0) for i in range(head, head + count))

    async def wait_for_commands(self, code: str, count: int) -> None:
        """Return once count frames with code have been received since the simulator started."""
        while sum(frame.code == code for frame in self.commands) < count:
            self._received.clear()
            await self._received.wait()

    def power_cycle(self) -> None:
        """Cut the power: links drop, buffer and header lost, the slow power-up starts again."""
        super().power_cycle()
        self._header = None
        self._state = OverallState.OFFLINE
        self._powered_at = self._clock()

    # -- the wire -----------------------------------------------------------------------------------

    async def handle(self, conn: SimConnection) -> None:
        """Answer each frame in turn: ERR for a line that is no frame, nothing for an empty line."""
        framer = ZipherFramer(self.max_frame_length)
        while True:
            for item in framer.feed(await conn.read()):
                planned = self.refused()
                if not isinstance(item, ZipherFrame):
                    if item.reason != OVERLONG_REST:
                        self.log.info("unparseable input refused", reason=item.reason, data=item.data[:64])
                        await self.answer(conn, ERR, planned)
                    continue
                self.commands.append(item)
                self._received.set()
                if planned is not None and planned[0] is ReplyFault.NAK:
                    await conn.write(ERR)
                    continue
                await self.answer(conn, await self._carry_out(item), planned)

    async def _carry_out(self, frame: ZipherFrame) -> bytes:
        """Do what frame asks and return the answer; ERR for what the printer refuses or cannot parse."""
        if frame.code not in ALWAYS_ANSWERED and self.overall not in _READY:
            return ERR
        handler = self._handlers().get(frame.code)
        if handler is None:
            return ERR
        try:
            return await handler(frame.args)
        except (ValueError, IndexError):
            return ERR

    def _handlers(self) -> dict[str, Callable[[tuple[str, ...]], Awaitable[bytes]]]:
        return {
            "GST": self._get_state,
            "GFT": self._get_faults,
            "GWN": self._get_warnings,
            "CAF": self._clear_faults,
            "CAW": self._clear_warnings,
            "DAN": self._disable_notifications,
            "SAN": self._set_notifications,
            "SST": self._set_state,
            "SEL": self._select,
            "GJN": self._get_job,
            "GJL": self._get_jobs,
            "GJF": self._get_fields,
            "PRN": self._print,
            "SHO": self._header_only,
            "SDO": self._data_only,
            "SHD": self._header_and_data,
            "SCB": self._clear_buffer,
            "SRC": self._count,
            "SFS": self._free,
            "SNI": self._next_index,
            "SLR": self._last_printed,
            "SMR": self._set_max,
            "SGM": self._get_max,
        }

    # -- commands -----------------------------------------------------------------------------------

    async def _get_state(self, args: tuple[str, ...]) -> bytes:
        _no_args(args)
        engine = self.engine
        error = ErrorState.FAULTS if engine.faults else ErrorState.WARNINGS if engine.warnings else ErrorState.NONE
        return _answer(
            "STS", str(int(self.overall)), str(int(error)), engine.job or "", str(engine.counter - self._batch_start),
            str(engine.counter),
        )

    async def _get_faults(self, args: tuple[str, ...]) -> bytes:
        _no_args(args)
        return _answer("FLT", *_entries([(r, r.value) for r in sorted(self.engine.faults)]))

    async def _get_warnings(self, args: tuple[str, ...]) -> bytes:
        _no_args(args)
        named = []
        for warning in sorted(self.engine.warnings):
            try:
                named.append((FaultReason(warning), warning))
            except ValueError:
                named.append((FaultReason.OTHER, warning))
        return _answer("WRN", *_entries(named))

    async def _clear_faults(self, args: tuple[str, ...]) -> bytes:
        _no_args(args)
        for reason in list(self.engine.faults):
            self.engine.clear_fault(reason)
        return ACK

    async def _clear_warnings(self, args: tuple[str, ...]) -> bytes:
        _no_args(args)
        self.engine.warnings.clear()
        return ACK

    async def _disable_notifications(self, args: tuple[str, ...]) -> bytes:
        _no_args(args)
        self.notifications = False
        return ACK

    async def _set_notifications(self, args: tuple[str, ...]) -> bytes:
        (mask,) = args
        self.notifications = int(mask) != 0
        return ACK

    async def _set_state(self, args: tuple[str, ...]) -> bytes:
        (text,) = args
        target, current = OverallState(int(text)), self.overall
        if target is OverallState.RUNNING:
            if current not in _READY or self.engine.job is None or self.engine.faults:
                return ERR
        elif target is OverallState.OFFLINE:
            if current not in _READY:
                return ERR
        elif target in (OverallState.SHUT_DOWN, OverallState.SHUTTING_DOWN):
            if current not in _READY:
                return ERR
            self._enter(OverallState.SHUTTING_DOWN)
            target = OverallState.SHUT_DOWN
        elif current is OverallState.SHUT_DOWN and self._powered_at is None:  # STARTING_UP asked for
            await self.sleep(self.transition_s)
            self._powered_at = self._clock() - self.shutdown_s  # StartingUp now, Offline after startup_s
            return ACK
        else:
            return ERR
        await self.sleep(self.transition_s)
        self._enter(target)
        return ACK

    async def _select(self, args: tuple[str, ...]) -> bytes:
        job, *values = args
        if not self.engine.select(job):
            return ERR
        self._header, self._sizes = None, {}
        self._batch_start = self.engine.counter
        if len(values) > len(self.engine.field_names()):
            return ERR
        # SEL|job|v1|v2| also fills the message's fields; the serialization buffer (what is modelled) stays empty.
        return ACK

    async def _get_job(self, args: tuple[str, ...]) -> bytes:
        _no_args(args)
        return _answer("JOB", self.engine.job or "", "-")

    async def _get_jobs(self, args: tuple[str, ...]) -> bytes:
        _no_args(args)
        return _answer("JBL", str(len(self.engine.jobs)), *self.engine.jobs)

    async def _get_fields(self, args: tuple[str, ...]) -> bytes:
        (job,) = args
        if job not in self.engine.jobs:
            return ERR
        fields = self.engine.jobs[job]
        return _answer("JFL", str(len(fields)), *fields)

    async def _print(self, args: tuple[str, ...]) -> bytes:
        _no_args(args)
        if not (self.engine.printing and self.engine.buffered and not self.engine.faults):
            return ERR
        await self.sleep(self.print_time_s)
        return ACK if self.engine.print_current() is not None else ERR

    async def _header_only(self, args: tuple[str, ...]) -> bytes:
        names = self.engine.field_names()
        if not args or len(set(args)) != len(args) or any(a not in names for a in args):
            return ERR
        self._header = args
        return ACK

    async def _data_only(self, args: tuple[str, ...]) -> bytes:
        if self._header is None or len(args) != len(self._header):
            return ERR
        return self._enqueue(tuple(zip(self._header, args, strict=True)), _answer_free)

    async def _header_and_data(self, args: tuple[str, ...]) -> bytes:
        pairs = tuple(tuple(arg.split("=", 1)) for arg in args)
        names = self.engine.field_names()
        if not pairs or any(len(p) != 2 or p[0] not in names for p in pairs):
            return ERR
        return self._enqueue(tuple((p[0], p[1]) for p in pairs), lambda _: ACK)

    async def _clear_buffer(self, args: tuple[str, ...]) -> bytes:
        _no_args(args)
        self.engine.clear()
        self._sizes = {}
        return ACK

    async def _count(self, args: tuple[str, ...]) -> bytes:
        _no_args(args)
        return _answer("SRC", str(self.engine.buffered))

    async def _free(self, args: tuple[str, ...]) -> bytes:
        _no_args(args)
        return _answer_free(self.free_bytes)

    async def _next_index(self, args: tuple[str, ...]) -> bytes:
        _no_args(args)
        return _answer("SNI", str(self.engine.next_to_print_index))

    async def _last_printed(self, args: tuple[str, ...]) -> bytes:
        _no_args(args)
        return _answer("SLR", str(self.engine.last_printed_index))

    async def _set_max(self, args: tuple[str, ...]) -> bytes:
        (text,) = args
        count = int(text)
        if not 1 <= count <= self.max_records:
            return ERR
        self.engine.depth = count
        return ACK

    async def _get_max(self, args: tuple[str, ...]) -> bytes:
        _no_args(args)
        return _answer("SGM", str(self.engine.depth))

    # -- inside -------------------------------------------------------------------------------------

    def _enqueue(self, fields: tuple[tuple[str, str], ...], answer: Callable[[int], bytes]) -> bytes:
        size = sum(len(value.encode(ENCODING)) + 1 for _, value in fields)
        if size > self.free_bytes:
            return ERR
        index = self.engine.enqueue(fields)
        if index is None:
            return ERR
        self._sizes = {i: s for i, s in self._sizes.items() if i >= self.engine.next_to_print_index}
        self._sizes[index] = size
        return answer(self.free_bytes)

    def _enter(self, state: OverallState) -> None:
        self._state = state
        self.engine.printing = state is OverallState.RUNNING


def _no_args(args: tuple[str, ...]) -> None:
    if args:
        raise ValueError(f"no arguments expected, got {args}")


def _answer(code: str, *args: str) -> bytes:
    return encode_answer(code, *args, max_length=1 << 20)


def _answer_free(free: int) -> bytes:
    return _answer("SFS", str(free))


def _entries(named: list[tuple[FaultReason, str]]) -> list[str]:
    """Return count then (code, clearable, text) per fault; head faults are the ones an operator must fix."""
    values = [str(len(named))]
    for reason, text in named:
        words = FAULT_TEXTS[reason] if text == reason.value else text
        values += [str(FAULT_CODES[reason]), "0" if reason is FaultReason.HEAD_FAULT else "1", words]
    return values


def from_options(options: ZipherPrinter.Options, *, port: int = 0, transport: SimTransport = "tcp") -> ZipherSim:
    """Return a simulator of the printer these driver options describe (its job with their fields, its limits)."""
    job = options.job or next(iter(DEFAULT_JOBS))
    return ZipherSim(
        depth=options.device_max_records,
        jobs={job: tuple(options.fields)},
        max_frame_length=options.max_frame_length,
        port=port,
        transport=transport,
    )
