"""Tracking camera → reject station by sequence number: every way the line must stop is noticed."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.line.tracking import AlarmKind, Tracker
from edge.line.verdict import RejectReason, Verdict

GOOD = Verdict(None, serial="S", serial_id=1)
BAD = Verdict(RejectReason.LOW_GRADE, "grade D")


def kinds(settled) -> list[AlarmKind]:
    return [alarm.kind for alarm in settled.alarms]


def test_a_good_pack_passes_and_a_bad_one_is_rejected_with_confirmation() -> None:
    tracker = Tracker(consecutive_reject_limit=3)
    tracker.at_camera(1, 1000)
    tracker.judged(1, GOOD)
    tracker.at_camera(2, 1200)
    tracker.judged(2, BAD)
    assert kinds(tracker.at_reject(1, rejected=False, confirmed=False)) == []
    assert kinds(tracker.at_reject(2, rejected=True, confirmed=True)) == []
    assert len(tracker) == 0


def test_an_unconfirmed_reject_stops_the_line() -> None:
    tracker = Tracker(consecutive_reject_limit=3)
    tracker.at_camera(1, 0)
    tracker.judged(1, BAD)
    assert kinds(tracker.at_reject(1, rejected=True, confirmed=False)) == [AlarmKind.REJECT_NOT_CONFIRMED]


def test_a_missing_verdict_is_rejected_and_stops_the_line() -> None:
    tracker = Tracker(consecutive_reject_limit=3)
    tracker.at_camera(1, 0)
    settled = tracker.at_reject(1, rejected=True, confirmed=True)
    assert kinds(settled) == [AlarmKind.NO_VERDICT_IN_TIME]
    assert tracker.judged(1, GOOD) is None  # the late verdict finds no record: it can touch no other pack


def test_a_pack_that_passed_without_a_good_verdict_stops_the_line() -> None:
    tracker = Tracker(consecutive_reject_limit=3)
    tracker.at_camera(1, 0)
    tracker.judged(1, BAD)
    assert AlarmKind.PASSED_WITHOUT_GOOD_VERDICT in kinds(tracker.at_reject(1, rejected=False, confirmed=False))


def test_a_good_pack_rejected_anyway_must_have_its_serial_taken_back() -> None:
    tracker = Tracker(consecutive_reject_limit=3)
    tracker.at_camera(1, 0)
    tracker.judged(1, GOOD)
    settled = tracker.at_reject(1, rejected=True, confirmed=True)
    assert settled.good_but_rejected
    assert settled.record is not None
    assert settled.record.verdict == GOOD


def test_consecutive_rejects_over_the_limit_stop_the_line_and_a_good_pack_resets_the_count() -> None:
    tracker = Tracker(consecutive_reject_limit=2)
    for product in range(1, 4):
        tracker.at_camera(product, 0)
        tracker.judged(product, BAD)
    assert kinds(tracker.at_reject(1, rejected=True, confirmed=True)) == []
    assert kinds(tracker.at_reject(2, rejected=True, confirmed=True)) == []
    assert kinds(tracker.at_reject(3, rejected=True, confirmed=True)) == [AlarmKind.CONSECUTIVE_REJECTS]
    tracker.at_camera(4, 0)
    tracker.judged(4, GOOD)
    tracker.at_reject(4, rejected=False, confirmed=False)
    assert tracker.consecutive_rejects == 0


def test_numbers_that_skip_or_go_back_are_tracking_mismatches() -> None:
    tracker = Tracker(consecutive_reject_limit=3)
    tracker.at_camera(1, 0)
    _, alarms = tracker.at_camera(4, 0)
    assert [a.kind for a in alarms] == [AlarmKind.TRACKING_MISMATCH]
    assert "packs 2 to 3" in alarms[0].detail
    _, alarms = tracker.at_camera(3, 0)
    assert [a.kind for a in alarms] == [AlarmKind.TRACKING_MISMATCH]
    assert AlarmKind.TRACKING_MISMATCH in kinds(tracker.at_reject(9, rejected=True, confirmed=True))


def test_a_late_verdict_for_one_pack_never_lands_on_the_next() -> None:
    tracker = Tracker(consecutive_reject_limit=5)
    tracker.at_camera(1, 0)
    tracker.at_camera(2, 200)
    tracker.at_reject(1, rejected=True, confirmed=True)  # pack 1 left before its verdict
    tracker.judged(1, GOOD)  # arrives late
    settled = tracker.at_reject(2, rejected=True, confirmed=True)
    assert settled.record is not None
    assert settled.record.verdict is None  # pack 2 did not inherit pack 1's verdict


@given(st.lists(st.tuples(st.booleans(), st.booleans(), st.booleans()), min_size=1, max_size=60))
def test_at_speed_every_pack_is_settled_once_and_good_only_with_a_good_verdict(packs) -> None:
    """Packs in order; each with a good/bad verdict, passed or not, confirmed or not: no alarm is ever missed."""
    tracker = Tracker(consecutive_reject_limit=1000)
    for product, (good, _, _) in enumerate(packs, start=1):
        tracker.at_camera(product, product * 200)
        tracker.judged(product, GOOD if good else BAD)
    for product, (good, rejected, confirmed) in enumerate(packs, start=1):
        found = kinds(tracker.at_reject(product, rejected=rejected, confirmed=confirmed))
        assert (AlarmKind.PASSED_WITHOUT_GOOD_VERDICT in found) == (not rejected and not good)
        assert (AlarmKind.REJECT_NOT_CONFIRMED in found) == (rejected and not confirmed)
    assert len(tracker) == 0


def test_the_limit_is_at_least_one() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        Tracker(consecutive_reject_limit=0)


def test_a_reset_counts_rejects_in_a_row_afresh_from_the_next_pack_at_the_camera() -> None:
    tracker = Tracker(consecutive_reject_limit=2)
    no_read = Verdict(RejectReason.NO_READ, "no frame")

    def at_camera(*products: int) -> None:
        for product in products:
            tracker.at_camera(product, product * 10)
            tracker.judged(product, no_read)

    def rejected(product: int) -> list[AlarmKind]:
        return [a.kind for a in tracker.at_reject(product, rejected=True, confirmed=True).alarms]

    at_camera(1, 2, 3, 4, 5)
    assert [rejected(1), rejected(2), rejected(3)] == [[], [], [AlarmKind.CONSECUTIVE_REJECTS]]
    tracker.reset_rejects()
    # Packs 4 and 5 were past the camera at the reset: judged under the fault the operator dealt with.
    assert [rejected(4), rejected(5)] == [[], []]
    at_camera(6, 7, 8)
    assert [rejected(6), rejected(7), rejected(8)] == [[], [], [AlarmKind.CONSECUTIVE_REJECTS]]


def test_packs_seen_at_the_camera_that_cross_the_station_unreported_are_handed_back_with_an_alarm() -> None:
    tracker = Tracker(consecutive_reject_limit=3)
    for product, verdict in ((1, GOOD), (2, BAD), (3, GOOD)):
        tracker.at_camera(product, product * 100)
        tracker.judged(product, verdict)
    tracker.good_sent(1)
    # The PLC link was down while packs 1 and 2 crossed the station: the first outcome heard is pack 3's.
    settled = tracker.at_reject(3, rejected=False, confirmed=False)
    assert [r.product for r in settled.unseen] == [1, 2]
    assert settled.unseen[0].good_sent
    assert kinds(settled) == [AlarmKind.TRACKING_MISMATCH]
    assert len(tracker) == 0
