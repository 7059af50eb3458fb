"""A simulated Keyence MD laser marker: ``WX``/``RX`` lines in, ``OK``/``NG`` answers out, over TCP or a pty.

It parses with the driver's own `RequestFramer`, answers with `encode_answer`, and shares the driver's command
names, NG codes and (ASSUMED) error table, so it speaks exactly the dialect the driver module documents. The
device model is a single-shot `PrinterEngine`: each program has numbered blocks; the strings of the current
program are the engine's message, marked again on every product detect until new strings arrive.

Behaviour beyond the public facts (all ASSUMED, like the driver's): lines that are not ``WX``/``RX`` are
ignored without an answer; a power cycle loses the strings set over the link and comes back ready to mark;
``WX,ErrorClear`` clears every engine fault; an injected NAK answers ``NG,03``.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Final

from drivers.framing.base import Garbage
from drivers.framing.keyence_md import TERMINATORS, Answer, Kind, Request, RequestFramer, encode_answer
from drivers.framing.line import CR, DEFAULT_MAX_LENGTH
from drivers.printer.keyence_md import (
    BLK,
    CHARACTER_STRING,
    COUNTER,
    CTR,
    DEFAULT_PROGRAM,
    ERROR,
    ERROR_CLEAR,
    FAULT_CODES,
    MARKED_CHARACTER,
    OTHER_WARNING_CODE,
    PRG,
    PROGRAM_NO,
    READY,
    START_MARKING,
    STOP_MARKING,
    WARNING_CODES,
    KeyenceMdPrinter,
    NgCode,
    ReadyState,
    program_number,
)
from simulators.base import LOOPBACK, SimTransport, Sleep
from simulators.printer import PrinterEngine, PrinterSimulator, ReplyFault

if TYPE_CHECKING:
    from collections.abc import Mapping

    from simulators.base import SimConnection
    from simulators.printer import Printed

DEFAULT_PROGRAMS: Final[Mapping[str, Mapping[str, int]]] = {DEFAULT_PROGRAM: {"CODE": 0}}
"""Programs the simulated marker has unless told otherwise: program 0000 with field CODE in block 0."""

_DIGITS: Final = re.compile(r"[0-9]{1,4}")

Pairs = tuple[tuple[str, str | None], ...]
Handler = Callable[[Pairs], Awaitable[Answer]]


class KeyenceMdSim(PrinterSimulator):
    """A Keyence MD marker: programs of numbered blocks, StartMarking answered after the mark time."""

    def __init__(
        self,
        *,
        programs: Mapping[str, Mapping[str, int]] = DEFAULT_PROGRAMS,
        program: str = DEFAULT_PROGRAM,
        terminator: bytes = CR,
        mark_time_s: float = 0.0,
        max_length: int = DEFAULT_MAX_LENGTH,
        transport: SimTransport = "tcp",
        host: str = LOOPBACK,
        port: int = 0,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        blocks = {program_number(number): dict(fields) for number, fields in programs.items()}
        names = {number: {block: name for name, block in fields.items()} for number, fields in blocks.items()}
        engine = PrinterEngine(
            depth=1,
            single_shot=True,
            jobs={number: tuple(by_block[b] for b in sorted(by_block)) for number, by_block in names.items()},
            printing=True,  # a laser marker marks on its trigger input whenever it is ready; no enable command
        )
        super().__init__(engine, transport=transport, host=host, port=port, sleep=sleep)
        if terminator not in TERMINATORS.values():
            raise ValueError(f"a Keyence MD marker ends lines with CR or CRLF, not {terminator!r}")
        self.terminator: Final = terminator
        self.mark_time_s: Final = mark_time_s
        self.max_length: Final = max_length
        self.programs: Final = names
        """Program number → block number → field name."""
        self.strings: dict[str, dict[int, str]] = {number: dict.fromkeys(names[number], "") for number in names}
        """The text of every block, as set over the link."""
        self.marked: dict[str, dict[int, str]] = {number: dict.fromkeys(names[number], "") for number in names}
        """The text every block was last marked with (``RX,MarkedCharacter``)."""
        self.counters: dict[str, int] = dict.fromkeys(names, 0)
        """Marking counter A of each program; kept across power cycles."""
        engine.on_print.append(self._on_print)
        self._handlers: Final[dict[tuple[Kind, str], Handler]] = {
            ("RX", READY): self._ready,
            ("RX", PROGRAM_NO): self._program_no,
            ("RX", ERROR): self._errors,
            ("RX", MARKED_CHARACTER): self._marked_character,
            ("RX", PRG): self._counter,
            ("WX", PROGRAM_NO): self._select,
            ("WX", PRG): self._strings,
            ("WX", START_MARKING): self._start_marking,
            ("WX", STOP_MARKING): self._stop_marking,
            ("WX", ERROR_CLEAR): self._error_clear,
        }
        if not engine.select(program_number(program)):
            raise ValueError(f"program {program!r} is not one of {sorted(names)}")

    @property
    def ready_state(self) -> int:
        """What ``RX,Ready`` answers: 2 in error, 1 not ready, 0 ready."""
        if self.engine.faults:
            return ReadyState.ERROR
        if not self.engine.printing:
            return ReadyState.NOT_READY
        return ReadyState.READY

    def error_codes(self) -> list[int]:
        """Return what ``RX,Error`` lists: the engine's faults and warnings in the shared (ASSUMED) code table."""
        faults = {FAULT_CODES[reason] for reason in self.engine.faults}
        warnings = {WARNING_CODES.get(warning, OTHER_WARNING_CODE) for warning in self.engine.warnings}
        return sorted(faults) + sorted(warnings)

    def power_cycle(self) -> None:
        """Cut the power: links drop, the strings set over the link are lost; the marker comes back ready."""
        super().power_cycle()
        for by_block in self.strings.values():
            for block in by_block:
                by_block[block] = ""
        self.engine.printing = True

    async def handle(self, conn: SimConnection) -> None:
        """Answer every request line in turn; lines that are not WX/RX are ignored, as the marker is assumed to."""
        framer = RequestFramer(self.max_length)
        while True:
            for item in framer.feed(await conn.read()):
                if isinstance(item, Garbage):
                    self.log.warning("line ignored", reason=item.reason, data=item.data[:64])
                    continue
                await self._respond(conn, item)

    async def _respond(self, conn: SimConnection, request: Request) -> None:
        planned = self.refused()
        if planned is not None and planned[0] is ReplyFault.NAK:
            await conn.write(self._encode(_ng(request.kind, NgCode.NOT_EXECUTABLE)))
            return
        pairs = request.pairs()
        handler = self._handlers.get((request.kind, pairs[0][0]))
        answer = _ng(request.kind, NgCode.UNKNOWN_COMMAND) if handler is None else await handler(pairs)
        await self.answer(conn, self._encode(answer), planned)

    async def _ready(self, pairs: Pairs) -> Answer:
        return _ok("RX", str(self.ready_state)) if len(pairs) == 1 and pairs[0][1] is None else _unknown("RX")

    async def _program_no(self, pairs: Pairs) -> Answer:
        return _ok("RX", self.engine.job or DEFAULT_PROGRAM) if pairs == ((PROGRAM_NO, None),) else _unknown("RX")

    async def _errors(self, pairs: Pairs) -> Answer:
        if pairs != ((ERROR, None),):
            return _unknown("RX")
        codes = self.error_codes()
        return _ok("RX", str(len(codes)), *(str(code) for code in codes))

    async def _marked_character(self, pairs: Pairs) -> Answer:
        if len(pairs) != 2 or pairs[1][1] is not None:
            return _unknown("RX")
        program, block = self._program(pairs[0][1]), _number(pairs[1][0])
        if program is None or block not in self.marked[program]:
            return _ng("RX", NgCode.OUT_OF_RANGE)
        return _ok("RX", self.marked[program][block])

    async def _counter(self, pairs: Pairs) -> Answer:
        if pairs[1:] != ((CTR, "A"), (COUNTER, None)):
            return _unknown("RX")
        program = self._program(pairs[0][1])
        if program is None:
            return _ng("RX", NgCode.OUT_OF_RANGE)
        return _ok("RX", str(self.counters[program]))

    async def _select(self, pairs: Pairs) -> Answer:
        if len(pairs) != 1:
            return _unknown("WX")
        program = self._program(pairs[0][1])
        if program is None or not self.engine.select(program):
            return _ng("WX", NgCode.OUT_OF_RANGE)
        self._show(program, self.strings[program], fresh=False)
        return _ok("WX")

    async def _strings(self, pairs: Pairs) -> Answer:
        return self._set_strings(self._program(pairs[0][1]), pairs[1:])

    async def _start_marking(self, pairs: Pairs) -> Answer:
        return await self._mark() if pairs == ((START_MARKING, None),) else _unknown("WX")

    async def _stop_marking(self, pairs: Pairs) -> Answer:
        return _ok("WX") if pairs == ((STOP_MARKING, None),) else _unknown("WX")

    async def _error_clear(self, pairs: Pairs) -> Answer:
        if pairs != ((ERROR_CLEAR, None),):
            return _unknown("WX")
        self.engine.clear_fault()
        return _ok("WX")

    def _set_strings(self, program: str | None, rest: tuple[tuple[str, str | None], ...]) -> Answer:
        if program is None:
            return _ng("WX", NgCode.OUT_OF_RANGE)
        if not rest or len(rest) % 2:
            return _ng("WX", NgCode.UNKNOWN_COMMAND)
        strings = dict(self.strings[program])
        for (block_name, block_value), (text_name, text) in zip(rest[::2], rest[1::2], strict=True):
            if block_name != BLK or text_name != CHARACTER_STRING or block_value is None or text is None:
                return _ng("WX", NgCode.UNKNOWN_COMMAND)
            block = _number(block_value)
            if block not in strings:
                return _ng("WX", NgCode.OUT_OF_RANGE)
            strings[block] = text
        if program == self.engine.job and not self._show(program, strings, fresh=True):
            return _ng("WX", NgCode.NOT_EXECUTABLE)  # the engine's "buffer full" knob
        self.strings[program] = strings
        return _ok("WX")

    def _show(self, program: str, strings: Mapping[int, str], *, fresh: bool) -> bool:
        """Make strings the engine's message; all-blank or not fresh: marked on a trigger, but nothing waits."""
        names = self.programs[program]
        fields = tuple((names[block], strings[block]) for block in sorted(names))
        if self.engine.enqueue(fields) is None:
            return False
        if not fresh or not any(text for _, text in fields):
            self.engine.clear()
        return True

    async def _mark(self) -> Answer:
        if self.engine.faults:
            return _ng("WX", NgCode.NOT_EXECUTABLE)
        if self.mark_time_s > 0:
            await self.sleep(self.mark_time_s)  # StartMarking is answered once marking is over
        if self.engine.print_current() is None:
            return _ng("WX", NgCode.NOT_EXECUTABLE)
        return _ok("WX")

    def _program(self, value: str | None) -> str | None:
        """Return value as a known program number, or None."""
        if value is None or not _DIGITS.fullmatch(value):
            return None
        number = f"{int(value):04d}"
        return number if number in self.programs else None

    def _on_print(self, printed: Printed) -> None:
        program = printed.job
        if program not in self.programs:
            return
        self.counters[program] += 1
        blocks = {name: block for block, name in self.programs[program].items()}
        for name, text in printed.fields:
            if name in blocks:
                self.marked[program][blocks[name]] = text

    def _encode(self, answer: Answer) -> bytes:
        return encode_answer(answer, terminator=self.terminator, max_length=self.max_length)


def from_options(
    options: KeyenceMdPrinter.Options, *, port: int = 0, transport: SimTransport = "tcp"
) -> KeyenceMdSim:
    """Return a simulated marker set up like the one options describe: its program, blocks and line end."""
    program = program_number(options.job) if options.job is not None else DEFAULT_PROGRAM
    return KeyenceMdSim(
        programs={program: options.block_numbers()},
        program=program,
        terminator=TERMINATORS[options.terminator],
        port=port,
        transport=transport,
    )


def _ok(kind: Kind, *values: str) -> Answer:
    return Answer(kind, ok=True, values=values)


def _ng(kind: Kind, code: NgCode) -> Answer:
    return Answer(kind, ok=False, values=(code.value,))


def _unknown(kind: Kind) -> Answer:
    return _ng(kind, NgCode.UNKNOWN_COMMAND)


def _number(value: str) -> int | None:
    return int(value) if _DIGITS.fullmatch(value) else None
