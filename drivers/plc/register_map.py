"""The PLC register map: where the line's I/O sits in the Modbus tables, loaded from YAML with FILE:LINE:COL errors.

No standard register map exists for serialization lines (protocols.md §3); this is Lineside's proposal, built
so that **nothing depends on polling speed or message order**:

- per station (printer, camera, reject), the PLC keeps a write counter and a ring of the last N products it saw
  there (sequence number, encoder count; at the reject station also what it did), so a driver polling late
  still reports every product once, in order, and knows exactly how many it can no longer account for;
- the line writes good verdicts into a ring of M entries indexed by ``seq % M``, each holding the sequence
  number it is for, so a late or lost write can never apply to another product;
- one status word repeats the discrete inputs, so one read request per poll fetches everything the driver needs.

Verified here: the layout is consistent (no overlaps, each station block fits one read request) and the
simulator and driver agree on it (tests). Assumed: a real PLC programmed to this map updates a station's
counter and ring entry in the same scan and serves Modbus reads between scans, so one read of a station block
is consistent; 32-bit values and sequence numbers do not wrap during a PLC's uptime (2^32 products).
"""

from __future__ import annotations

import itertools
from enum import IntEnum, IntFlag, StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Final, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from drivers.plc.base import Station
from edge.config.document import in_file_order, mapping_document, validate_document
from edge.config.models import RelationError
from edge.errors import ConfigError, ConfigIssue

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

DEFAULT_MAP_PATH: Final = Path(__file__).resolve().parents[2] / "config" / "plc" / "default-map.yaml"
"""The shipped default map (config/plc/default-map.yaml beside the packages)."""

MAX_READ_REGISTERS: Final = 125
"""Most registers one Modbus read (FC 3/4) may return: 250 data bytes in a 253-byte PDU (Modbus spec 6.3)."""
MAX_WRITE_REGISTERS: Final = 123
"""Most registers one FC 16 write may carry."""
ADDRESS_SPACE: Final = 65536

U32_WORDS: Final = 2
STATION_ENTRY_WORDS: Final = 4
"""A printer or camera ring entry: sequence number (UInt32), encoder count (UInt32)."""
REJECT_ENTRY_WORDS: Final = 5
"""A reject ring entry: sequence number (UInt32), encoder count (UInt32), outcome flags (UInt16)."""
VERDICT_ENTRY_WORDS: Final = 3
"""A verdict ring entry: sequence number (UInt32), verdict (UInt16)."""
PACKTAGS_WORDS: Final = 2
"""The PackTags block: StateCurrent (UInt16), UnitModeCurrent (UInt16)."""

Address = Annotated[int, Field(strict=True, ge=0, lt=ADDRESS_SPACE)]


class Verdict(IntEnum):
    """What the line wrote for one product in the verdict ring."""

    NONE = 0
    GOOD = 1
    REJECT = 2
    """Explicit reject: the same outcome as no verdict (reject unless proven good)."""


class OutcomeFlags(IntFlag):
    """The flags word of a reject ring entry."""

    REJECTED = 1
    """The reject fired for this product."""
    CONFIRMED = 2
    """The confirmation sensor saw the rejected product leave the line."""


class StatusBits(IntFlag):
    """The status word: the discrete inputs repeated, so the poll needs no second request."""

    LINE_RUNNING = 1
    WATCHDOG_TRIPPED = 2
    REJECT_CONFIRM = 4
    PD_PRINTER = 8
    PD_CAMERA = 16
    PD_REJECT = 32


class WordOrder(StrEnum):
    """Which register of a 32-bit value holds its high word (PLCs differ; Modbus does not say)."""

    HIGH_FIRST = "high_first"
    LOW_FIRST = "low_first"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


class DiscreteInputs(_Section):
    """Bits the PLC shows (FC 2). The driver reads them through the status word; these are for other clients."""

    pd_printer: Address
    """Photo-eye at the printer: high while a product is in front of it."""
    pd_camera: Address
    pd_reject: Address
    reject_confirm: Address
    """Reject confirmation sensor: high while it sees a rejected product leave."""
    line_running: Address
    watchdog_tripped: Address
    """The controller's heartbeat stopped: the PLC stopped the line; a rising edge of the run coil resets it."""


class Coils(_Section):
    """Bits the line controller writes (FC 5/15; FC 1 reads them back)."""

    heartbeat: Address
    """Toggled by the driver every heartbeat interval; the PLC's watchdog stops the line when it stands still."""
    ready: Address
    """Controller ready: dropping it while the line runs stops the line."""
    run: Address
    """Line run request: the conveyor moves while it is set (reads back as the line's actual run state)."""
    light_green: Address
    light_amber: Address
    light_red: Address


class HoldingRegisters(_Section):
    """Single holding registers the PLC owns (FC 3; read-only, a write is refused with exception 2)."""

    encoder: Address
    """Conveyor encoder count, UInt32 (two registers)."""
    status: Address
    """Status word (`StatusBits`), UInt16."""
    watchdog_ms: Address
    """The PLC's heartbeat timeout in milliseconds, UInt16; 0 means no watchdog."""


class StationRing(_Section):
    """A station's block: write counter (UInt32), then `entries` ring entries, the newest at (counter-1) % entries."""

    address: Address
    entries: int = Field(strict=True, ge=1, le=64)


class VerdictRing(_Section):
    """The verdict ring: entry seq % entries at address + 3 * index holds (seq UInt32, `Verdict` UInt16)."""

    address: Address
    entries: int = Field(strict=True, ge=1, le=1024)


class PackTagsBlock(_Section):
    """Two registers the line controller writes (FC 16): PackTags StateCurrent, then UnitModeCurrent (UInt16 each).

    A line HMI panel or the PLC's own program follows the line's PackML state from them without OPC UA; the
    numbering is PackTags' (ISA-TR88.00.02), as `edge.control.packml` has it.
    """

    address: Address


class Stations(_Section):
    printer: StationRing
    camera: StationRing
    reject: StationRing
    """Entries of five registers: seq, encoder, `OutcomeFlags`."""


class RegisterMap(_Section):
    """The whole map. Addresses are 0-based, as on the wire; coils and discrete inputs are separate tables."""

    word_order: WordOrder
    discrete_inputs: DiscreteInputs
    coils: Coils
    holding_registers: HoldingRegisters
    stations: Stations
    verdicts: VerdictRing
    packtags: PackTagsBlock | None = None
    """Where the line shows its PackML state and unit mode; None: the PLC is not told them."""

    def station(self, station: Station) -> StationRing:
        """Return the ring block of one station."""
        return {Station.PRINTER: self.stations.printer, Station.CAMERA: self.stations.camera}.get(
            station, self.stations.reject
        )

    @staticmethod
    def entry_words(station: Station) -> int:
        """Return the registers one ring entry of station takes."""
        return REJECT_ENTRY_WORDS if station is Station.REJECT else STATION_ENTRY_WORDS

    def station_span(self, station: Station) -> tuple[int, int]:
        """Return (first register, register count) of a station's whole block."""
        ring = self.station(station)
        return ring.address, U32_WORDS + ring.entries * self.entry_words(station)

    def verdict_address(self, seq: int) -> int:
        """Return the first register of the verdict ring entry for product seq."""
        return self.verdicts.address + (seq % self.verdicts.entries) * VERDICT_ENTRY_WORDS

    def register_spans(self) -> dict[str, tuple[int, int]]:
        """Return every holding-register span by its key path, (first register, count)."""
        regs = self.holding_registers
        spans = {
            "holding_registers.encoder": (regs.encoder, U32_WORDS),
            "holding_registers.status": (regs.status, 1),
            "holding_registers.watchdog_ms": (regs.watchdog_ms, 1),
        }
        for station in Station:
            spans[f"stations.{station.value}"] = self.station_span(station)
        spans["verdicts"] = (self.verdicts.address, self.verdicts.entries * VERDICT_ENTRY_WORDS)
        if self.packtags is not None:
            spans["packtags"] = (self.packtags.address, PACKTAGS_WORDS)
        return spans

    def register_count(self) -> int:
        """Return the size of the holding-register table the map needs (highest used address + 1)."""
        return max(start + count for start, count in self.register_spans().values())

    def poll_units(self) -> list[tuple[int, int]]:
        """Return the spans one poll reads; each must come from a single request to be consistent."""
        regs = self.holding_registers
        units = [(regs.encoder, U32_WORDS), (regs.status, 1)]
        units += [self.station_span(station) for station in Station]
        return units

    def to_words(self, value: int) -> list[int]:
        """Return a UInt32 as two registers in this map's word order."""
        high, low = (value >> 16) & 0xFFFF, value & 0xFFFF
        return [high, low] if self.word_order is WordOrder.HIGH_FIRST else [low, high]

    def from_words(self, words: Sequence[int]) -> int:
        """Return the UInt32 held by two registers in this map's word order."""
        first, second = words[0], words[1]
        return (first << 16) | second if self.word_order is WordOrder.HIGH_FIRST else (second << 16) | first

    @model_validator(mode="after")
    def _no_overlaps(self) -> Self:
        # Positions name the later of two clashing keys and cite the earlier one, like a duplicate key.
        for name, (start, count) in self.register_spans().items():
            if start + count > ADDRESS_SPACE:
                raise RelationError(f"needs registers {start} to {start + count - 1}, past 65535", at=_path(name))
        for name, (_start, count) in self.register_spans().items():
            if name.startswith("stations.") and count > MAX_READ_REGISTERS:
                raise RelationError(
                    f"the block takes {count} registers; one read returns at most {MAX_READ_REGISTERS}: "
                    "use fewer entries",
                    at=(*_path(name), "entries"),
                )
        _check_disjoint(self.register_spans().items(), "registers")
        _check_disjoint(((f"discrete_inputs.{k}", (a, 1)) for k, a in self.discrete_inputs), "discrete inputs")
        _check_disjoint(((f"coils.{k}", (a, 1)) for k, a in self.coils), "coils")
        return self


def _path(name: str) -> tuple[str, ...]:
    return tuple(name.split("."))


def _check_disjoint(spans: Iterable[tuple[str, tuple[int, int]]], table: str) -> None:
    ordered = sorted(spans, key=lambda item: item[1][0])
    for (first, (a_start, a_count)), (second, (b_start, b_count)) in itertools.pairwise(ordered):
        if b_start < a_start + a_count:
            raise RelationError(
                f"{table} {b_start}-{b_start + b_count - 1} overlap {first} ({a_start}-{a_start + a_count - 1})",
                at=_path(second),
                first=_path(first),
            )


def plan_reads(units: Iterable[tuple[int, int]], *, limit: int = MAX_READ_REGISTERS, max_gap: int = 8) -> list[
    tuple[int, int]
]:
    """Merge spans into as few reads as possible: never splitting a span, at most limit wide, bridging small gaps.

    A gap is read along (its registers are wasted) only up to max_gap, since a PLC may refuse unmapped addresses.
    """
    reads: list[tuple[int, int]] = []
    for start, count in sorted(units):
        if reads:
            first, width = reads[-1]
            end = first + width
            if start - end <= max_gap and max(end, start + count) - first <= limit:
                reads[-1] = (first, max(end, start + count) - first)
                continue
        reads.append((start, count))
    return reads


def load_register_map_text(text: str, filename: str) -> RegisterMap:
    """Parse and check a register map; ConfigError lists every problem as FILE:LINE:COL: message."""
    doc = mapping_document(
        text,
        filename,
        empty="the file is empty: a register map needs word_order:, discrete_inputs:, coils:, ... (see the default)",
        top_level="the top level must be a mapping (word_order:, discrete_inputs:, coils:, ...)",
    )
    issues = list(doc.issues)
    register_map = validate_document(RegisterMap, doc, filename, issues)
    if issues:
        raise in_file_order(issues)
    return register_map


def load_register_map(path: Path = DEFAULT_MAP_PATH) -> RegisterMap:
    """Read and check a register map file (the shipped default when none is named)."""
    filename = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([ConfigIssue(filename, 1, 1, f"cannot read the register map: {exc}")]) from exc
    return load_register_map_text(text, filename)
