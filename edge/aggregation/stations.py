"""What the packing stations share: the hand-off of a finished container, and reading what a scanner sent.

A station fills a container; once it is full (or an operator closes it short) the station hands it to its
label station (`Completed`), which prints and verifies the label and only then closes it. Scanned data
comes as the bytes a reader sent: GS1 element strings with GS as FNC1, maybe with a symbology identifier
(``]d2``, ``]C1``, ``]Q3``), or bracketed HRI typed by hand.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Final, Protocol

from edge.errors import ScanError
from edge.gs1.element import parse, parse_hri
from edge.gs1.errors import Gs1SyntaxError

if TYPE_CHECKING:
    from edge.aggregation.ops import ContainerRow
    from edge.serials.ledger import SerialLedger

__all__ = ["Completed", "PackingStation", "ScanError", "read_elements", "resolve_unit", "sscc_of"]

Completed = Callable[["ContainerRow", "str | None", "str | None"], Awaitable[None]]
"""Hands a finished container to its label station: (container, operator, partial_reason); a full container
needs neither, one closed short by an operator needs both."""



class PackingStation(Protocol):
    """A station filling containers of one level: the operator can close its current one short."""

    @property
    def current(self) -> ContainerRow | None:
        """The container being filled, if any."""
        ...

    async def close_short(self, *, operator: str, reason: str) -> ContainerRow:
        """Hand the current container, short of capacity, to its label station; AggregationError if none."""
        ...

    def describe(self) -> dict[str, Any]:
        """Return the station's state for the line status (JSON-able)."""
        ...


SHOWN_DATA: Final = 48
"""Characters of a bad scan quoted in an error message: enough to recognise it, not a page of garbage."""


def _quote(data: bytes) -> str:
    text = data.decode("latin-1").replace("\x1d", "<GS>")
    return repr(text[:SHOWN_DATA] + ("..." if len(text) > SHOWN_DATA else ""))


def read_elements(data: bytes) -> dict[str, str]:
    """Return the AIs of a scan (FNC1 element string or bracketed HRI) by AI; ScanError when it is not GS1."""
    text = data.decode("latin-1").strip("\r\n")
    try:
        parsed = parse_hri(text) if text.startswith("(") else parse(text)
    except Gs1SyntaxError as err:
        raise ScanError(f"scan {_quote(data)} is not a GS1 code: {err}") from err
    return dict(parsed.pairs)


def sscc_of(data: bytes) -> str:
    """Return the SSCC (AI 00) a scanned case or pallet label carries; ScanError when it carries none."""
    elements = read_elements(data)
    sscc = elements.get("00")
    if sscc is None:
        raise ScanError(f"scan {_quote(data)} carries no SSCC (AI 00): scan the case or pallet label")
    return sscc


async def resolve_unit(ledger: SerialLedger, data: bytes) -> int:
    """Return the serial row id of the unit whose code was scanned; ScanError naming what is wrong otherwise."""
    elements = read_elements(data)
    gtin, serial = elements.get("01"), elements.get("21")
    if gtin is None or serial is None:
        raise ScanError(f"scan {_quote(data)} is not a unit code: it needs a GTIN (01) and a serial (21)")
    found = await ledger.serial_ids(gtin, [serial])
    serial_id = found.get(serial)
    if serial_id is None:
        raise ScanError(f"unit (01){gtin}(21){serial} is not known to this line: it was never issued here")
    return serial_id
