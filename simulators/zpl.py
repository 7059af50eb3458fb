"""A Zebra label printer on raw TCP 9100 (or a serial port), speaking ZPL II through the driver's own framer.

What it does with what it receives (`ZplFramer`):

- ``^XA^DF<name>^FS...^XZ`` stores a format (names on R:, or with no drive letter, live in DRAM and are
  lost at a power cycle; E: and the other drives keep theirs).
- Any other block is a label: one engine record per copy (``^PQ``), its fields named ``FN<n>`` by ^FN number
  with the ^FH-decoded data, in the order sent (so ``Printed.fields`` is ``(("FN1", code), ...)``). Every
  label is also kept in `labels`, with the stored format's text merged with its data; a label recalling a
  format that is not stored is kept as a blank label (``stored`` False), as the printer would print it.
- ``~HS`` answers the three framed lines from the engine: the label awaiting the applicator counts in
  "labels remaining in batch", the ones behind it in "formats in receive buffer"; the pause flag is the
  engine not printing; faults: LABELS_OUT → paper out, RIBBON_OUT (and INK_OUT: the ribbon is a thermal
  printer's ink) → ribbon out, DOOR_OPEN → head up, HEAD_FAULT → over temperature, OTHER → corrupt RAM,
  BUFFER_OVERFLOW or engine.buffer_full → buffer full.
- ``~JA`` empties the engine, ``~PP`` pauses, ``~PS`` resumes; other ``~`` commands and garbage are ignored.
- A full engine holds the stream (the handler stops reading until a label prints), as a full receive
  buffer does: a ZPL printer never refuses a label.

Answer faults apply to ``~HS`` answers only (labels have none): MISSING, DUPLICATE, DELAYED; ZPL has no
negative answer, so a planned NAK is answered normally. A Zebra powers up printing (not paused).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from drivers.framing.base import Garbage
from drivers.framing.zpl import (
    DEFAULT_MAX_BLOCK,
    ControlCommand,
    HostStatus,
    LabelBlock,
    ZplFramer,
    encode_host_status,
    field_data,
    field_numbers,
)
from drivers.printer.base import FaultReason
from simulators.base import LOOPBACK, SimTransport, Sleep
from simulators.printer import PrinterEngine, PrinterSimulator, ReplyFault

if TYPE_CHECKING:
    from collections.abc import Iterable

    from drivers.printer.zpl import ZplPrinter
    from simulators.base import SimConnection

DEFAULT_SIM_DEPTH: Final = 100
"""Labels the simulated receive buffer holds before it stops reading (a real one holds bytes, not labels)."""

LABEL_LENGTH_DOTS: Final = 1218
"""Label length ~HS reports: a 6-inch label at 203 dpi."""

APPLICATOR_MODE: Final = "4"
"""~HS print mode of a print-and-apply printer [K]."""


@dataclass(frozen=True, slots=True)
class StoredFormat:
    """A format the printer holds: its name, its ^FN numbers, the block as downloaded."""

    name: str
    numbers: tuple[int, ...]
    block: LabelBlock


@dataclass(frozen=True, slots=True)
class SimLabel:
    """One label as the printer received it, before it prints."""

    format_name: str | None
    fields: tuple[tuple[int, bytes], ...]
    """^FN number → data, ^FH escapes decoded (GS is 0x1D again)."""
    stored: bool
    """The recalled format is stored; False prints a blank label."""
    text: bytes
    """The stored format's commands with each ^FN's data merged in (empty for a blank label)."""


class ZplSim(PrinterSimulator):
    """A ZPL label printer: stored formats, a label queue in a `PrinterEngine`, ~HS from its state."""

    def __init__(
        self,
        *,
        depth: int = DEFAULT_SIM_DEPTH,
        formats: Iterable[bytes] = (),
        max_block: int = DEFAULT_MAX_BLOCK,
        transport: SimTransport = "tcp",
        host: str = LOOPBACK,
        port: int = 0,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        engine = PrinterEngine(depth=depth, jobs={})
        engine.printing = True
        super().__init__(engine, transport=transport, host=host, port=port, sleep=sleep)
        self.max_block: Final = max_block
        self.formats: dict[str, StoredFormat] = {}
        """Stored formats by name."""
        self.labels: list[SimLabel] = []
        """Every label received, in order, printed or not."""
        self.ignored: list[bytes] = []
        """Garbage and unknown commands the printer skipped, as received."""
        self.status_queries = 0
        """~HS commands received (answered or not)."""
        for block in formats:
            items = ZplFramer(max_block).feed(block)
            if len(items) != 1 or not isinstance(items[0], LabelBlock) or not self._store(items[0]):
                raise ValueError(f"not one ^XA^DF...^XZ format: {block[:40]!r}")

    def host_status(self) -> HostStatus:
        """Return the ~HS answer the printer would give now."""
        engine = self.engine
        faults = engine.faults
        waiting = engine.buffered
        in_batch = min(waiting, 1)
        return HostStatus(
            paper_out=FaultReason.LABELS_OUT in faults,
            paused=not engine.printing,
            label_length=LABEL_LENGTH_DOTS,
            formats_in_buffer=min(waiting - in_batch, 999),
            buffer_full=engine.buffer_full or FaultReason.BUFFER_OVERFLOW in faults,
            corrupt_ram=FaultReason.OTHER in faults,
            over_temperature=FaultReason.HEAD_FAULT in faults,
            head_up=FaultReason.DOOR_OPEN in faults,
            ribbon_out=bool({FaultReason.RIBBON_OUT, FaultReason.INK_OUT} & faults),
            print_mode=APPLICATOR_MODE,
            labels_remaining=in_batch,
            graphics_stored=0,
        )

    def power_cycle(self) -> None:
        """Cut the power: links drop, labels and DRAM (R:) formats are lost; the printer comes back unpaused."""
        super().power_cycle()
        self.engine.printing = True
        self.formats = {n: f for n, f in self.formats.items() if not _in_dram(n)}
        self.engine.jobs = {n: v for n, v in self.engine.jobs.items() if not _in_dram(n)}

    async def handle(self, conn: SimConnection) -> None:
        """Serve one link: frame what the host sends and act on each block and ~ command."""
        framer = ZplFramer(self.max_block)
        while True:
            for item in framer.feed(await conn.read()):
                if isinstance(item, Garbage):
                    self.log.debug("ignored bytes", reason=item.reason, data=item.data[:64])
                    self.ignored.append(item.data)
                elif isinstance(item, ControlCommand):
                    await self._control(conn, item)
                else:
                    await self._block(item)

    async def _control(self, conn: SimConnection, command: ControlCommand) -> None:
        if command.name == "HS":
            self.status_queries += 1
            self.engine.wait_changed().set()  # lets a test wait for the driver's next poll
            planned = self.refused()
            if planned is not None and planned[0] is ReplyFault.NAK:
                self.log.debug("ZPL has no negative answer; answering ~HS normally")
                planned = None
            await self.answer(conn, encode_host_status(self.host_status()), planned)
        elif command.name == "JA":
            self.engine.clear()
        elif command.name == "PS":
            self.engine.printing = True
            self.engine.wait_changed().set()
        elif command.name == "PP":
            self.engine.printing = False
            self.engine.wait_changed().set()
        else:
            self.log.debug("~ command not simulated; ignored", command=command.name)
            self.ignored.append(command.raw)

    async def _block(self, block: LabelBlock) -> None:
        if block.first("DF") is not None:
            self._store(block)
            return
        recall = block.first("XF")
        name = None if recall is None else recall.params.decode("latin-1")
        try:
            fields = field_data(block.commands)
        except ValueError as err:
            # A real printer prints whatever it made of the label; the test sees it was not understood.
            self.log.warning("label not understood; ignored", error=str(err))
            self.ignored.append(block.raw)
            return
        stored = self.formats.get(name) if name is not None else None
        self.labels.append(
            SimLabel(name, fields, stored is not None, b"" if stored is None else _merge(stored.block, fields))
        )
        if name is not None:
            self.engine.job = name
        record = tuple((f"FN{number}", data.decode("utf-8", "replace")) for number, data in fields)
        for _ in range(_quantity(block)):
            while self.engine.enqueue(record) is None:
                # Full: stop taking bytes until the applicator takes a label, as a full receive buffer does.
                changed = self.engine.wait_changed()
                changed.clear()
                await changed.wait()

    def _store(self, block: LabelBlock) -> bool:
        download = block.first("DF")
        if download is None:
            return False
        name = download.params.decode("latin-1")
        numbers = field_numbers(block.commands)
        self.formats[name] = StoredFormat(name, numbers, block)
        self.engine.jobs[name] = tuple(f"FN{n}" for n in numbers)
        self.log.debug("format stored", format=name, fields=numbers)
        self.engine.wait_changed().set()
        return True


def from_options(options: ZplPrinter.Options, *, port: int = 0, transport: SimTransport = "tcp") -> ZplSim:
    """Return a simulated printer set up like the one options describe: its format stored, ^FN numbers alike."""
    name = options.default_format()
    formats: list[bytes] = []
    if options.format_zpl is not None:
        formats.append(options.format_zpl.encode("latin-1"))
    elif name is not None:
        formats.append(default_format(name, options.numbers().values()))
    return ZplSim(formats=formats, port=port, transport=transport)


def default_format(name: str, numbers: Iterable[int]) -> bytes:
    """Return a stored format with one GS1 DataMatrix per ^FN number (FNC1 by ^FH escape _1D)."""
    fields = b"".join(
        b"^FO50,%d^BXN,8,200,,,,_^FH^FN%d^FS" % (50 + 300 * i, n) for i, n in enumerate(numbers)
    )
    return b"^XA^DF" + name.encode("ascii") + b"^FS" + fields + b"^XZ"


def _merge(stored: LabelBlock, fields: tuple[tuple[int, bytes], ...]) -> bytes:
    """Return the stored format's commands with each ^FN<n> followed by ^FD<data> (the ^DF itself left out)."""
    data = dict(fields)
    parts: list[bytes] = []
    for command in stored.commands:
        if command.name == "DF":
            continue
        parts.append(b"^" + command.name.encode("latin-1") + command.params)
        if command.name == "FN" and command.params.isdigit() and int(command.params) in data:
            parts.append(b"^FD" + data[int(command.params)])
    return b"".join(parts)


def _quantity(block: LabelBlock) -> int:
    quantity = block.first("PQ")
    if quantity is None:
        return 1
    first = quantity.params.split(b",")[0]
    return int(first) if first.isdigit() and int(first) > 0 else 1


def _in_dram(name: str) -> bool:
    return ":" not in name or name.upper().startswith("R:")
