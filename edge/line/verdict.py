"""The inspection verdict: exactly the expected code on this pack, readable enough for the market, or why not.

Pure: given what the camera decoded (codes and grade), what the batch expects, and where each serial stands,
return good or the one reason to reject (DESIGN invariant 3). The checks, in order, each naming what is wrong:

1. NO_READ: no code found (the camera delivered nothing, or nothing decoded).
2. MULTIPLE_CODES: more than one distinct code in view: which one is on this pack is not known.
3. WRONG_DATA: not a GS1 code, or its AIs or values differ from the batch's (GTIN, lot, expiry, the market's
   extra AIs); a code the batch received complete from upstream must match byte for byte.
4. UNKNOWN_SERIAL: the serial is not one of this batch's.
5. DUPLICATE: the serial is already commissioned or decommissioned (another pack carried it).
6. NOT_PRINTED: the serial was never given to a printer (still in the pool or only allocated).
7. LOW_GRADE: the right code, printed below the market's minimum grade.

A serial in doubt (possibly printed before a fault or a restart) that the camera finds on a pack is good:
that is the re-inspection that resolves it. So is a serial still ``sent`` whose printer's evidence has not
arrived yet: the camera seeing it on the pack is the stronger proof that it was printed.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Final

from edge.gs1.element import parse
from edge.gs1.errors import Gs1SyntaxError
from edge.serials.states import SerialState

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

GRADES: Final = "FDCBA"
"""Grade letters by ISO/IEC 15415 numeric grade 0..4."""

GS1_DATAMATRIX: Final = "]d2"
SERIAL_AI: Final = "21"

_LABELS: Final = {"01": "GTIN", "10": "lot", "17": "expiry", "11": "production date", "21": "serial"}


class RejectReason(StrEnum):
    NO_READ = "NO_READ"
    LOW_GRADE = "LOW_GRADE"
    WRONG_DATA = "WRONG_DATA"
    UNKNOWN_SERIAL = "UNKNOWN_SERIAL"
    DUPLICATE = "DUPLICATE"
    NOT_PRINTED = "NOT_PRINTED"
    MULTIPLE_CODES = "MULTIPLE_CODES"
    NO_VERDICT = "NO_VERDICT"
    """The pack reached the reject station before its verdict (tracking or vision too slow)."""


@dataclass(frozen=True, slots=True)
class Read:
    """One code the camera decoded, with its overall grade (0..4) when graded."""

    text: bytes
    symbology_identifier: str
    grade: int | None = None


@dataclass(frozen=True, slots=True)
class Expectation:
    """What every pack of the running batch must carry."""

    batch_id: int
    ais: tuple[str, ...]
    """The AIs of the code in print order (the product's template)."""
    fixed: Mapping[str, str]
    """Every AI value but the serial."""
    min_grade: str = "C"


@dataclass(frozen=True, slots=True)
class SerialRow:
    """Where one serial of the batch stands."""

    serial_id: int
    state: SerialState
    code: bytes | None = None
    """The complete code received from upstream, when the batch prints such codes."""


@dataclass(frozen=True, slots=True)
class Verdict:
    """Good, or the one reason to reject, with what the camera read."""

    reason: RejectReason | None
    detail: str = ""
    serial: str | None = None
    serial_id: int | None = None
    state: SerialState | None = None
    """The serial's state when judged."""
    grade: int | None = None

    @property
    def good(self) -> bool:
        """True when the pack passed."""
        return self.reason is None


def grade_letter(grade: int | None) -> str:
    """Return A..F for a numeric grade, ``?`` when ungraded."""
    return "?" if grade is None else GRADES[max(0, min(4, grade))]


def serial_of(read: Read) -> str | None:
    """Return the serial (AI 21) a read carries, if it parses as GS1 and has one."""
    try:
        return parse(read.text).get(SERIAL_AI)
    except Gs1SyntaxError:
        return None


def judge(  # noqa: PLR0911 - one return per reason, in the documented order
    reads: Sequence[Read], expected: Expectation, serials: Mapping[str, SerialRow]
) -> Verdict:
    """Return the verdict on one pack from its reads (``serials``: the batch's rows for the serials read)."""
    distinct = {read.text for read in reads}
    if not distinct:
        return Verdict(RejectReason.NO_READ, "no code found")
    if len(distinct) > 1:
        return Verdict(RejectReason.MULTIPLE_CODES, f"{len(distinct)} different codes in view")
    read = reads[0]
    if read.symbology_identifier != GS1_DATAMATRIX:
        return Verdict(RejectReason.WRONG_DATA, f"symbology {read.symbology_identifier or 'unknown'}, not GS1 "
                       "DataMatrix (]d2)", grade=read.grade)
    try:
        elements = parse(read.text)
    except Gs1SyntaxError as err:
        return Verdict(RejectReason.WRONG_DATA, f"not a GS1 element string: {err}", grade=read.grade)
    pairs = dict(elements.pairs)
    serial = pairs.get(SERIAL_AI)
    problem = _data_problem(elements.pairs, expected)
    if problem is not None:
        return Verdict(RejectReason.WRONG_DATA, problem, serial=serial, grade=read.grade)
    assert serial is not None  # noqa: S101 - _data_problem returns a problem when the serial is missing
    row = serials.get(serial)
    if row is None:
        return Verdict(RejectReason.UNKNOWN_SERIAL, f"serial {serial} is not one of batch {expected.batch_id}",
                       serial=serial, grade=read.grade)
    found = Verdict(None, serial=serial, serial_id=row.serial_id, state=row.state, grade=read.grade)
    if row.code is not None and row.code != read.text.removeprefix(b"]d2"):
        return _reject(found, RejectReason.WRONG_DATA, f"serial {serial}: the code differs from the one received")
    if row.state in (SerialState.COMMISSIONED, SerialState.REJECTED, SerialState.DESTROYED, SerialState.SAMPLED):
        return _reject(found, RejectReason.DUPLICATE, f"serial {serial} is already {row.state.label}")
    if row.state not in (SerialState.SENT, SerialState.PRINTED, SerialState.IN_DOUBT):
        return _reject(found, RejectReason.NOT_PRINTED, f"serial {serial} is {row.state.label}, never printed")
    minimum = GRADES.index(expected.min_grade)
    if read.grade is None or read.grade < minimum:
        return _reject(found, RejectReason.LOW_GRADE,
                       f"grade {grade_letter(read.grade)}, the market asks for {expected.min_grade} or better")
    return found


def _reject(found: Verdict, reason: RejectReason, detail: str) -> Verdict:
    return Verdict(reason, detail, serial=found.serial, serial_id=found.serial_id, state=found.state,
                   grade=found.grade)


def _data_problem(pairs: Sequence[tuple[str, str]], expected: Expectation) -> str | None:
    ais = tuple(ai for ai, _ in pairs)
    if SERIAL_AI not in ais:
        return "no serial (AI 21) in the code"
    if sorted(ais) != sorted(expected.ais) or len(set(ais)) != len(ais):
        missing = sorted(set(expected.ais) - set(ais))
        extra = sorted(set(ais) - set(expected.ais))
        parts = []
        if missing:
            parts.append(f"missing AI {', '.join(missing)}")
        if extra:
            parts.append(f"unexpected AI {', '.join(extra)}")
        return "; ".join(parts) or "an AI appears twice"
    for ai, value in pairs:
        wanted = expected.fixed.get(ai)
        if wanted is not None and value != wanted:
            return f"{_LABELS.get(ai, 'AI ' + ai)} is {value}, expected {wanted}"
    return None
