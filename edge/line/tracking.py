"""Product tracking from camera to reject station, by the PLC's product sequence numbers.

The PLC assigns each pack a sequence number at the printer's photo-eye and reports, by that number, when it
reaches the camera and what the reject station did with it. The tracker keeps one record per pack between the
two and checks every outcome against the verdict (pure: no I/O; the inspection service acts on its alarms):

- a pack the station let pass must have had a good verdict (otherwise tracking is broken: stop);
- a reject must be confirmed by the sensor (otherwise the pack may have gone on: stop);
- a pack must have its verdict before it reaches the station (a missing verdict was rejected, safely, but the
  vision is not keeping up: stop);
- more rejects in a row than the limit stop the line (something upstream is wrong: the printer, the job); an
  operator's reset starts the count afresh with the next pack at the camera;
- a pack the station reports that never reached the camera, or numbers that skip (at the camera or at the
  station), are a tracking mismatch.

Numbers, never counts: a late or lost message changes one pack's record, never the next pack's.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from edge.line.verdict import Verdict

MAX_TRACKED: Final = 10_000
"""Packs between camera and reject station the tracker remembers; far more than fit on any belt, so a record
dropped here means the station stopped reporting (an alarm), never a pack still on its way."""


class AlarmKind(StrEnum):
    REJECT_NOT_CONFIRMED = "reject-not-confirmed"
    PASSED_WITHOUT_GOOD_VERDICT = "passed-without-good-verdict"
    NO_VERDICT_IN_TIME = "no-verdict-in-time"
    CONSECUTIVE_REJECTS = "consecutive-rejects"
    TRACKING_MISMATCH = "tracking-mismatch"
    STORE_WRITE_FAILED = "store-write-failed"
    """A verdict or an outcome could not be made durable (the disk is full): nothing may pass on it."""


@dataclass(frozen=True, slots=True)
class Alarm:
    """Something that stops the line, with the pack it concerns."""

    kind: AlarmKind
    product: int
    detail: str


@dataclass(slots=True)
class Tracked:
    """One pack between camera and reject station."""

    product: int
    camera_encoder: int
    verdict: Verdict | None = None
    good_sent: bool = False
    """The good verdict reached the PLC (its write completed)."""


@dataclass(frozen=True, slots=True)
class Settled:
    """What became of one pack at the reject station, and what the line must do about it."""

    product: int
    record: Tracked | None
    rejected: bool
    confirmed: bool
    alarms: tuple[Alarm, ...]
    good_but_rejected: bool
    """A pack judged good (its serial commissioned) went to the reject bin: its serial must be taken back."""
    unseen: tuple[Tracked, ...] = ()
    """Packs before this one that passed the camera but crossed the station unreported (the link was down)."""


class Tracker:
    """Records from camera to reject station, keyed by product sequence number."""

    def __init__(self, *, consecutive_reject_limit: int) -> None:
        if consecutive_reject_limit < 1:
            raise ValueError(f"the consecutive reject limit is at least 1, not {consecutive_reject_limit}")
        self.limit = consecutive_reject_limit
        self.consecutive_rejects = 0
        self._records: OrderedDict[int, Tracked] = OrderedDict()
        self._last_camera: int | None = None
        self._last_outcome: int | None = None
        self._counted_after: int | None = None
        """Packs up to this one were past the camera at the last reset: their rejects are not in the streak."""

    def __len__(self) -> int:
        return len(self._records)

    def at_camera(self, product: int, encoder: int) -> tuple[Tracked, tuple[Alarm, ...]]:
        """Open the record of a pack at the camera; alarms for numbers that skipped or went back."""
        alarms: list[Alarm] = []
        last = self._last_camera
        if last is not None and product <= last:
            alarms.append(Alarm(AlarmKind.TRACKING_MISMATCH, product,
                                f"pack {product} at the camera after pack {last}: numbers went back"))
        elif last is not None and product > last + 1:
            # The PLC rejects every pack without a good verdict: the skipped ones went to the bin by default.
            alarms.append(Alarm(AlarmKind.TRACKING_MISMATCH, product,
                                f"packs {last + 1} to {product - 1} passed the camera unseen"))
        self._last_camera = product if last is None else max(last, product)
        record = self._records.get(product)
        if record is None:
            record = self._records[product] = Tracked(product, encoder)
        while len(self._records) > MAX_TRACKED:
            lost, _ = self._records.popitem(last=False)
            alarms.append(Alarm(AlarmKind.TRACKING_MISMATCH, lost, f"pack {lost} never reached the reject station"))
        return record, tuple(alarms)

    def judged(self, product: int, verdict: Verdict) -> Tracked | None:
        """Attach the verdict to the pack's record; None when the pack already left (the verdict came too late)."""
        record = self._records.get(product)
        if record is not None:
            record.verdict = verdict
        return record

    def good_sent(self, product: int) -> None:
        """Note that the PLC holds the pack's good verdict."""
        record = self._records.get(product)
        if record is not None:
            record.good_sent = True

    def at_reject(self, product: int, *, rejected: bool, confirmed: bool) -> Settled:
        """Close the pack's record with what the reject station did; return it with the alarms it raises."""
        record = self._records.pop(product, None)
        alarms: list[Alarm] = []
        last = self._last_outcome
        if last is not None and product <= last:
            alarms.append(Alarm(AlarmKind.TRACKING_MISMATCH, product,
                                f"pack {product} at the reject station after pack {last}"))
        # The PLC reports outcomes in belt order: packs seen at the camera before this one and still unreported
        # crossed the station while the line could not hear (a new PLC link starts from the PLC's counters).
        unseen = tuple(self._records.pop(n) for n in [n for n in self._records if n < product])
        if unseen:
            first, end = unseen[0].product, unseen[-1].product
            alarms.append(Alarm(AlarmKind.TRACKING_MISMATCH, first,
                                f"{len(unseen)} pack(s) from {first} to {end} crossed the reject station "
                                "unreported; the PLC decided them by their verdicts"))
        self._last_outcome = product if self._last_outcome is None else max(self._last_outcome, product)
        verdict = None if record is None else record.verdict
        good = verdict is not None and verdict.good
        if record is None:
            alarms.append(Alarm(AlarmKind.TRACKING_MISMATCH, product,
                                f"pack {product} reached the reject station without passing the camera"))
        elif verdict is None:
            alarms.append(Alarm(AlarmKind.NO_VERDICT_IN_TIME, product,
                                f"pack {product} reached the reject station before its verdict"))
        if not rejected and not good:
            alarms.append(Alarm(AlarmKind.PASSED_WITHOUT_GOOD_VERDICT, product,
                                f"pack {product} passed the reject station without a good verdict"))
        if rejected and not confirmed:
            alarms.append(Alarm(AlarmKind.REJECT_NOT_CONFIRMED, product,
                                f"the reject of pack {product} was not confirmed: it may have gone on"))
        if not rejected:
            self.consecutive_rejects = 0
        elif self._counted_after is None or product > self._counted_after:
            self.consecutive_rejects += 1
            if self.consecutive_rejects > self.limit:
                alarms.append(Alarm(AlarmKind.CONSECUTIVE_REJECTS, product,
                                    f"{self.consecutive_rejects} rejects in a row (limit {self.limit})"))
        return Settled(product, record, rejected, confirmed, tuple(alarms), good_but_rejected=rejected and good,
                       unseen=unseen)

    def reset_rejects(self) -> None:
        """Start counting rejects in a row afresh (after an operator reset), from the next pack at the camera on.

        Packs already past the camera were judged under what the operator has just dealt with (a stalled camera,
        a printer that stopped): their rejects would stop the line again for the same cause, one pack at a time.
        """
        self.consecutive_rejects = 0
        self._counted_after = self._last_camera
