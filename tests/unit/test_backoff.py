import random

import pytest

from edge.backoff import Backoff


def test_grows_exponentially_to_the_cap_without_jitter():
    b = Backoff(initial_s=0.5, max_s=8.0, jitter=0.0)
    assert [b.next_delay() for _ in range(7)] == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0]


def test_reset_starts_again_from_initial():
    b = Backoff(initial_s=1.0, max_s=30.0, jitter=0.0)
    for _ in range(5):
        b.next_delay()
    b.reset()
    assert b.next_delay() == 1.0


def test_max_out_jumps_to_the_cap():
    b = Backoff(initial_s=1.0, max_s=30.0, jitter=0.0)
    b.max_out()
    assert b.next_delay() == 30.0


def test_jitter_only_shortens_and_stays_within_bounds():
    b = Backoff(initial_s=1.0, max_s=4.0, jitter=0.25, rng=random.Random(7))
    delays = [b.next_delay() for _ in range(200)]
    assert all(0.75 <= d <= 4.0 for d in delays)
    assert max(delays[5:]) <= 4.0
    assert min(delays[5:]) >= 3.0
    assert len(set(delays)) > 100  # really jittered


def test_survives_thousands_of_failures():
    b = Backoff(initial_s=0.1, max_s=60.0, jitter=0.0)
    for _ in range(10_000):
        assert b.next_delay() <= 60.0


@pytest.mark.parametrize(("initial", "maximum"), [(0.0, 1.0), (2.0, 1.0), (-1.0, 1.0)])
def test_rejects_nonsense_bounds(initial, maximum):
    with pytest.raises(ValueError, match="backoff needs"):
        Backoff(initial_s=initial, max_s=maximum)
