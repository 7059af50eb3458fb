"""Serial generators: format, reproducibility, and statistical proof that random serials are uniform and unstructured.

The statistical tests use a fixed seed, so they are deterministic; each also shows that it would catch the flaw
it looks for (a modulo-biased or sequential source fails it).
"""

from __future__ import annotations

import itertools
import math
import random
import statistics
from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.errors import SerialError
from edge.markets.models import CSET82, DIGITS, UPPER
from edge.serials.generate import RandomSerials, SequentialSerials, SerialSource

SEED = 20260209
P_VALUE = 0.0001
UPPER_ALNUM = DIGITS + UPPER


class CyclingBytes:
    """A crafted random source: 0, 1, ..., 255, 0, 1, ... so every byte value comes equally often."""

    def __init__(self) -> None:
        self.next = 0
        self.calls: list[int] = []

    def __call__(self, n: int) -> bytes:
        self.calls.append(n)
        out = bytes((self.next + i) % 256 for i in range(n))
        self.next = (self.next + n) % 256
        return out


def chi_square_critical(df: int, p: float) -> float:
    """Upper critical value of chi-square with df degrees of freedom, by the Wilson-Hilferty approximation."""
    z = statistics.NormalDist().inv_cdf(1 - p)
    h = 2 / (9 * df)
    return df * (1 - h + z * math.sqrt(h)) ** 3


def chi_square(counts: Counter[str], alphabet: str) -> float:
    total = sum(counts.values())
    expected = total / len(alphabet)
    return sum((counts.get(ch, 0) - expected) ** 2 / expected for ch in alphabet)


def sample(alphabet: str = CSET82, length: int = 12, characters: int = 200_000) -> list[str]:
    return RandomSerials.seeded(alphabet, length, SEED).take(math.ceil(characters / length))


def test_wilson_hilferty_matches_known_tables():
    # Tabulated chi-square quantiles: df 10 at p=0.05 is 18.307, df 100 at p=0.001 is 149.449.
    assert chi_square_critical(10, 0.05) == pytest.approx(18.307, abs=0.02)
    assert chi_square_critical(100, 0.001) == pytest.approx(149.449, abs=0.1)


# Format


@pytest.mark.parametrize(("alphabet", "length"), [(DIGITS, 12), (UPPER_ALNUM, 12), (CSET82, 20), ("01", 1)])
def test_exact_length_and_alphabet(alphabet, length):
    serials = RandomSerials(alphabet, length).take(2000)
    assert len(serials) == 2000
    assert {len(s) for s in serials} == {length}
    assert set("".join(serials)) <= set(alphabet)


def test_every_character_of_the_alphabet_is_used():
    assert set("".join(RandomSerials(CSET82, 12).take(2000))) == set(CSET82)


def test_a_million_serials_at_once():
    serials = RandomSerials(UPPER_ALNUM, 12).take(1_000_000)
    assert len(serials) == 1_000_000
    assert len(serials[0]) == len(serials[-1]) == 12


def test_take_nothing():
    assert RandomSerials(DIGITS, 6).take(0) == []
    assert SequentialSerials(0, 6).take(0) == []


def test_space():
    assert RandomSerials(UPPER_ALNUM, 12).space == 36**12
    assert RandomSerials(CSET82, 20).space == 82**20
    assert SequentialSerials(5, 6).space == 10**6


def test_an_alphabet_beyond_latin1_works():
    alphabet = "АБВГДЕЖЗИКЛМНПРСТУФХЦЧШЭЮЯ"
    serials = RandomSerials(alphabet, 8).take(500)
    assert {len(s) for s in serials} == {8}
    assert set("".join(serials)) == set(alphabet)


def test_a_256_character_alphabet_needs_no_rejection():
    alphabet = "".join(map(chr, range(256)))
    source = CyclingBytes()
    serials = RandomSerials(alphabet, 4, randbytes=source).take(64)
    assert "".join(serials) == alphabet


@pytest.mark.parametrize(
    ("alphabet", "length", "message"),
    [
        ("A", 6, "a serial alphabet needs 2 to 256 characters, got 1"),
        ("".join(map(chr, range(257))), 6, "a serial alphabet needs 2 to 256 characters, got 257"),
        ("ABCA", 6, "serial alphabet 'ABCA' repeats 'A'"),
        ("AB", 0, "serial length must be a whole number, 1 or more, got 0"),
    ],
)
def test_bad_generator_settings(alphabet, length, message):
    with pytest.raises(ValueError, match=message):
        RandomSerials(alphabet, length)


def test_negative_count():
    with pytest.raises(ValueError, match="number of serials must be a whole number, 0 or more, got -1"):
        RandomSerials(DIGITS, 6).take(-1)


def test_both_are_serial_sources():
    assert isinstance(RandomSerials(DIGITS, 6), SerialSource)
    assert isinstance(SequentialSerials(0, 6), SerialSource)


# Reproducibility


def test_a_seed_makes_runs_reproducible():
    first = RandomSerials.seeded(CSET82, 12, 42)
    second = RandomSerials(CSET82, 12, randbytes=random.Random(42).randbytes)
    assert first.take(100) + first.take(7) == second.take(100) + second.take(7)
    assert RandomSerials.seeded(CSET82, 12, 43).take(100) != RandomSerials.seeded(CSET82, 12, 42).take(100)


def test_unseeded_runs_differ():
    assert RandomSerials(CSET82, 12).take(100) != RandomSerials(CSET82, 12).take(100)


# Statistics


def test_characters_are_uniform_chi_square():
    serials = sample()
    counts = Counter("".join(serials))
    statistic = chi_square(counts, CSET82)
    critical = chi_square_critical(len(CSET82) - 1, P_VALUE)
    assert sum(counts.values()) >= 200_000
    assert statistic < critical


def test_the_chi_square_test_catches_modulo_bias():
    # Folding bytes with % 82 makes the first 256 % 82 = 10 characters 4/3 as likely: the test must see it.
    data = random.Random(SEED).randbytes(200_000)
    counts = Counter(CSET82[b % len(CSET82)] for b in data)
    assert chi_square(counts, CSET82) > 10 * chi_square_critical(len(CSET82) - 1, P_VALUE)


@pytest.mark.parametrize(("alphabet", "length"), [(UPPER_ALNUM, 12), (CSET82, 6)])
def test_rejection_sampling_is_exactly_unbiased(alphabet, length):
    # 36 and 82 do not divide 256. Fed every byte value equally often, each character must come out equally
    # often: 7 byte values per character for 36 (252 accepted), 3 for 82 (246 accepted).
    k = len(alphabet)
    accepted = (256 // k) * k
    cycles = 10
    n = accepted * cycles // length
    assert n * length == accepted * cycles
    serials = RandomSerials(alphabet, length, randbytes=CyclingBytes()).take(n)
    counts = Counter("".join(serials))
    assert set(counts.values()) == {accepted // k * cycles}
    assert len(counts) == k
    # The naive modulo over the same bytes is not uniform: that is what the rejection avoids.
    naive = Counter(alphabet[b % k] for b in bytes(range(256)) * cycles)
    assert len(set(naive.values())) == 2


def test_rejected_bytes_are_drawn_again():
    draws = iter([b"\xff" * 64, bytes(range(64))])
    serials = RandomSerials(UPPER_ALNUM, 4, randbytes=lambda n: next(draws)[:n]).take(2)
    assert serials == ["0123", "4567"]


def as_number(serial: str, index: dict[str, int]) -> int:
    value = 0
    for ch in serial:
        value = value * len(index) + index[ch]
    return value


def small_steps(serials: list[str], alphabet: str) -> float:
    """Fraction of consecutive serials whose difference, read as base-k numbers, is below k**2."""
    index = {ch: i for i, ch in enumerate(alphabet)}
    numbers = [as_number(s, index) for s in serials]
    close = sum(abs(b - a) < len(alphabet) ** 2 for a, b in itertools.pairwise(numbers))
    return close / (len(numbers) - 1)


def test_no_sequential_structure():
    assert small_steps(sample(UPPER_ALNUM), UPPER_ALNUM) == 0
    # The same measure flags a counter at once.
    assert small_steps(SequentialSerials(100, 12).take(1000), DIGITS) == 1


def test_no_lag_one_correlation():
    index = {ch: i for i, ch in enumerate(CSET82)}
    values = [index[ch] for ch in "".join(sample())]
    assert len(values) >= 200_000
    assert abs(statistics.correlation(values[:-1], values[1:])) < 0.02


def test_runs_above_and_below_the_middle():
    # Wald-Wolfowitz runs test on "index in the upper half of the alphabet": too few runs means clumping,
    # too many means alternation; either moves z far from 0.
    index = {ch: i for i, ch in enumerate(CSET82)}
    high = [index[ch] >= len(CSET82) // 2 for ch in "".join(sample())]
    runs = 1 + sum(a != b for a, b in itertools.pairwise(high))
    n1 = sum(high)
    n2 = len(high) - n1
    n = n1 + n2
    mean = 2 * n1 * n2 / n + 1
    variance = (mean - 1) * (mean - 2) / (n - 1)
    z = (runs - mean) / math.sqrt(variance)
    assert abs(z) < statistics.NormalDist().inv_cdf(1 - P_VALUE / 2)


@given(
    alphabet=st.lists(st.characters(), min_size=2, max_size=256, unique=True).map("".join),
    length=st.integers(1, 24),
    count=st.integers(0, 40),
    seed=st.integers(0, 2**32),
)
def test_any_alphabet_and_length(alphabet, length, count, seed):
    serials = RandomSerials.seeded(alphabet, length, seed).take(count)
    assert len(serials) == count
    allowed = set(alphabet)
    for serial in serials:
        assert len(serial) == length
        assert set(serial) <= allowed


# Sequential serials


def test_sequential_serials_count_zero_padded():
    source = SequentialSerials(41, 6)
    assert source.take(3) == ["000041", "000042", "000043"]
    assert source.next == 44
    assert source.take(1) == ["000044"]


def test_sequential_overflow_consumes_nothing():
    source = SequentialSerials(998, 3)
    with pytest.raises(SerialError, match="3 sequential serials of 3 digits asked for, only 2 left, 998 to 999"):
        source.take(3)
    assert source.next == 998
    assert source.take(2) == ["998", "999"]
    with pytest.raises(SerialError, match="1 sequential serials of 3 digits asked for, none left"):
        source.take(1)


@pytest.mark.parametrize(
    ("start", "width", "message"),
    [
        (0, 0, "serial width must be a whole number of digits, 1 or more, got 0"),
        (-1, 3, "first serial must be a whole number from 0 to 999, got -1"),
        (1000, 3, "first serial must be a whole number from 0 to 999, got 1000"),
    ],
)
def test_bad_sequential_settings(start, width, message):
    with pytest.raises(ValueError, match=message):
        SequentialSerials(start, width)
