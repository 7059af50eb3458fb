"""Benchmark: GS1 parse + validate rate on a realistic pharmaceutical mix, beside biip on the same strings."""

from __future__ import annotations

import importlib.metadata
import random
import time
from typing import Any

from edge.gs1.checks import check_pair, gs1_check_digit
from edge.gs1.element import build, build_hri, parse_and_validate

_SERIAL_CHARS = "ABCDEFGHJKLMNPQRSTUVWXYZ0123456789"
_CRYPTO_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/="


def _gtin(rng: random.Random) -> str:
    payload = "0" + "".join(rng.choice("0123456789") for _ in range(12))
    return payload + str(gs1_check_digit(payload))


def _expiry(rng: random.Random) -> str:
    return f"{rng.randint(26, 35):02d}{rng.randint(1, 12):02d}{rng.choice((0, rng.randint(1, 28))):02d}"


def make_mix(count: int, *, seed: int = 20240601) -> list[str]:
    """Build ``count`` valid scan strings: EU/US unit codes, Russian crypto tails, NHRNs, some HRI text."""
    rng = random.Random(seed)  # noqa: S311 - reproducible test data, nothing secret
    gtins = [_gtin(rng) for _ in range(50)]
    mix: list[str] = []
    for n in range(count):
        serial = "".join(rng.choice(_SERIAL_CHARS) for _ in range(rng.randint(10, 20)))
        pairs = [("01", rng.choice(gtins)), ("17", _expiry(rng)), ("10", f"L{rng.randint(1, 99999):05d}")]
        kind = n % 10
        if kind < 6:  # EU FMD / DSCSA unit: ]d2 01 17 10 GS 21
            pairs.append(("21", serial))
        elif kind < 8:  # Russia: 01 21 GS 91 GS 92, the crypto tail last
            pairs = [pairs[0], ("21", serial[:13]), ("91", "EE10"),
                     ("92", "".join(rng.choice(_CRYPTO_CHARS) for _ in range(44)))]
        elif kind == 8:  # national reimbursement numbers (Brazil 713, Portugal 714)
            nhrn = rng.choice(("713", "714"))
            pairs += [("21", serial), (nhrn, str(rng.randint(1_000_000, 9_999_999)))]
        else:  # read back as HRI text, a GMN-style check pair on the batch for variety
            batch = f"B{rng.randint(100, 999)}"
            pairs[2] = ("10", batch + check_pair(batch))
            pairs.append(("21", serial))
        mix.append(build_hri(pairs) if kind == 9 else build(pairs, symbology="]d2"))
    return mix


def _ours(strings: list[str]) -> tuple[float, int]:
    issues = 0
    start = time.perf_counter()
    for text in strings:
        _, found = parse_and_validate(text)
        issues += len(found)
    elapsed = time.perf_counter() - start
    return elapsed, issues


def _biip(strings: list[str]) -> tuple[float, int]:
    import biip  # noqa: PLC0415 - optional baseline, imported only when benchmarking

    errors = 0
    start = time.perf_counter()
    for text in strings:
        if biip.parse(text).gs1_message is None:
            errors += 1
    return time.perf_counter() - start, errors


def bench_gs1(*, strings: int = 200_000) -> dict[str, Any]:
    """Measure parse + validate throughput of edge.gs1 and of biip on the same deterministic mix (CPU only)."""
    mix = make_mix(strings)
    parse_and_validate(mix[0])  # warm the association cache the way a running line does
    elapsed, issues = _ours(mix)
    ours_rate = strings / elapsed
    baseline: dict[str, Any]
    try:
        version = importlib.metadata.version("biip")
    except importlib.metadata.PackageNotFoundError:
        baseline = {"name": "biip (not installed)", "value": None, "unit": "strings/s"}
        biip_errors = None
    else:
        # biip is about ten times slower: an evenly spaced sample (same proportions) keeps the run short
        # while measuring the same kinds of strings.
        sample = mix[:: max(1, strings // 20_000)]  # about 20,000 strings
        biip_elapsed, biip_errors = _biip(sample)
        baseline = {"name": f"biip {version}", "value": round(len(sample) / biip_elapsed), "unit": "strings/s"}
    return {
        "headline": {
            "metric": "gs1_parse_validate_per_s", "value": round(ours_rate), "unit": "strings/s", "target": 100_000,
        },
        "baseline": baseline,
        "details": {
            "strings": strings,
            "seconds": round(elapsed, 3),
            "issues_found": issues,
            "biip_strings": len(mix[:: max(1, strings // 20_000)]) if biip_errors is not None else 0,
            "biip_errors": biip_errors,
            "mix": "60% ]d2 01 17 10 GS 21; 20% ]d2 01 21 GS 91 GS 92 (Russia); 10% with 713/714 NHRN; 10% HRI text",
        },
    }
