"""A print-and-apply labeller with its verifying scanner, around the ZPL and wedge scanner simulators.

Each label the ZPL simulator prints goes onto the container waiting at the applicator, and the scanner after it
reads what is on that label. `LabelApplicator` ties a `ZplSim` to a `WedgeScannerSim`. While labels wait in the
printer it signals the printer's product detect (a container at the applicator), and for every label printed it
sends the scanner what the label's GS1 DataMatrix carries (field ``^FN1`` of the stored format, see
`edge.aggregation.labels`), as a real verifier after the applicator reads it. Faults on demand, one label at a
time or every nth: a no-read (the scanner sends nothing, or its configured no-read text), a wrong read (another
SSCC).
"""

from __future__ import annotations

import asyncio
from collections import deque
from enum import StrEnum
from typing import TYPE_CHECKING, Final

import structlog

from edge.aggregation.labels import element_string_from_field
from edge.gs1.checks import gs1_check_digit
from edge.gs1.element import build, parse

if TYPE_CHECKING:
    from simulators.printer import Printed
    from simulators.scanner_wedge import WedgeScannerSim
    from simulators.zpl import ZplSim

__all__ = ["LabelApplicator", "LabelFault"]

DATAMATRIX_FIELD: Final = "FN1"
"""The stored format's field holding the DataMatrix data (label_fields puts it first)."""
NO_READ_TEXT: Final = b"NOREAD"
"""What many fixed scanners send when they saw no code (configurable on the device)."""


class LabelFault(StrEnum):
    """What can go wrong with one applied label."""

    NO_READ = "no-read"
    """The scanner reads nothing and sends nothing."""
    NO_READ_TEXT = "no-read-text"
    """The scanner sends its no-read text."""
    WRONG = "wrong"
    """The scanner reads another SSCC (a label of a neighbouring container, a smudged digit)."""


class LabelApplicator:
    """Applies each printed label to the waiting container and has the scanner read it."""

    def __init__(self, printer: ZplSim, scanner: WedgeScannerSim, *, fault_every: int = 0,
                 fault: LabelFault = LabelFault.NO_READ) -> None:
        self.printer = printer
        self.scanner = scanner
        self.fault_every = fault_every
        """Every nth label gets `fault` (0: none)."""
        self.fault = fault
        self.applied: list[str] = []
        """Element string of every label applied, in order."""
        self.faulted: list[tuple[str, LabelFault]] = []
        self._planned: deque[LabelFault] = deque()
        # Unbounded on purpose: on_print is a plain callback, and a label printer prints a few a minute.
        self._printed: asyncio.Queue[Printed] = asyncio.Queue()
        self._log = structlog.get_logger("lineside.sim.labeller")
        printer.engine.on_print.append(self._printed.put_nowait)

    def fail_next(self, fault: LabelFault, count: int = 1) -> None:
        """Make the next count labels fail with fault."""
        self._planned.extend([fault] * count)

    async def run(self) -> None:
        """Trigger the applicator for each waiting label and read each printed one, until cancelled."""
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self._apply())
            tasks.create_task(self._read())

    async def _apply(self) -> None:
        engine = self.printer.engine
        while True:
            changed = engine.wait_changed()
            changed.clear()
            if engine.buffered and engine.printing and not engine.faults:
                engine.product_detect()
                await asyncio.sleep(0)  # one container at a time
                continue
            await changed.wait()

    async def _read(self) -> None:
        while True:
            printed = await self._printed.get()
            data = element_string_from_field(printed.value(DATAMATRIX_FIELD))
            self.applied.append(data)
            fault = self._planned.popleft() if self._planned else None
            if fault is None and self.fault_every and len(self.applied) % self.fault_every == 0:
                fault = self.fault
            if fault is not None:
                self.faulted.append((data, fault))
                self._log.info("label fault", fault=fault.value, label=data.replace("\x1d", "<GS>"))
            if fault is LabelFault.NO_READ:
                continue
            code = NO_READ_TEXT if fault is LabelFault.NO_READ_TEXT else data.encode("latin-1")
            if fault is LabelFault.WRONG:
                code = _other_sscc(data).encode("latin-1")
            if self.scanner.connections:
                await self.scanner.scan(code)


def _other_sscc(data: str) -> str:
    """Return the label data with the SSCC's serial reference off by one (check digit kept valid)."""
    pairs = parse(data).pairs
    for n, (ai, value) in enumerate(pairs):
        if ai == "00":
            body = value[:16] + str((int(value[16]) + 1) % 10)
            pairs[n] = (ai, body + str(gs1_check_digit(body)))
    return build(pairs, check=False)
