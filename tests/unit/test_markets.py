"""Market rule packs: the shipped packs load with the real AI table; broken packs fail at FILE:LINE:COL.

Each file in bad_markets/ lists the exact problems it must produce in ``# expect: LINE:COL: message`` lines.
"""

from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.errors import ConfigError
from edge.markets import (
    MarketPack,
    MarketRuleError,
    RandomisationError,
    SerialSpec,
    check_randomisation,
    load_market,
    load_market_text,
    load_markets,
    market_ids,
    render_hri,
    serial_space,
)
from edge.markets.rules import century_year
from edge.yamlpos import load_positioned
from tests.conftest import ROOT

MARKETS = ROOT / "config" / "markets"
BAD_MARKETS = Path(__file__).parent / "bad_markets"
BAD_FILES = sorted(BAD_MARKETS.glob("*.yaml"))
SHIPPED = ["br-anvisa", "eu-fmd", "generic-gs1", "in-export-legacy", "ru-mdlp", "sa-rsd", "us-dscsa"]
TODAY = date(2025, 6, 1)


def expectations(path: Path) -> list[str]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return [f"{path}:{line.removeprefix('# expect: ')}" for line in lines if line.startswith("# expect: ")]


def problems(path: Path, **kwargs) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_market(path, **kwargs)
    return [str(issue) for issue in caught.value.issues]


@pytest.fixture(scope="module")
def packs() -> dict[str, MarketPack]:
    return load_markets(MARKETS)


def with_serial(pack: MarketPack, **serial) -> MarketPack:
    return pack.model_copy(update={"serial": SerialSpec(**serial)})


# The shipped packs


def test_every_shipped_pack_is_found():
    assert market_ids(MARKETS) == SHIPPED


@pytest.mark.parametrize("market", SHIPPED)
def test_shipped_pack_loads_with_the_real_ai_table(market):
    pack = load_market(MARKETS / f"{market}.yaml")
    assert pack.id == market
    assert "21" in pack.code.required
    assert render_hri(pack, {ai: sample_value(ai) for ai in pack.code_ais}, today=TODAY)


def test_all_packs_load_together(packs):
    assert sorted(packs) == SHIPPED


def test_line_config_tests_leave_market_packs_alone():
    from tests.unit.test_config_files import LINE_CONFIGS

    assert not [path for path in LINE_CONFIGS if MARKETS in path.parents]


def test_eu_fmd_states_the_regulation(packs):
    eu = packs["eu-fmd"]
    assert eu.code.required == ("01", "21", "10", "17")
    assert eu.randomisation.rule == "random"
    assert eu.randomisation.max_guess_probability == 0.0001
    assert len(eu.serial.characters) == 82
    assert (eu.serial.shortest, eu.serial.longest) == (1, 20)
    assert "NO" in eu.countries
    assert "GB" not in eu.countries
    assert len(eu.countries) == 30


def test_russia_prints_externally_issued_codes(packs):
    ru = packs["ru-mdlp"]
    assert ru.code.required == ("01", "21", "91", "92")
    assert ru.code.crypto_tail == ("91", "92")
    assert ru.serial_source == "external_complete_codes"
    assert {rule.ai: rule.length for rule in ru.code.lengths} == {"91": 4, "92": 44}
    assert ru.serial.length == 13


def test_other_packs(packs):
    assert "713" in packs["br-anvisa"].code.required
    assert packs["in-export-legacy"].withdrawn == date(2025, 2, 1)
    assert packs["us-dscsa"].epcis.version == "1.2"
    assert packs["sa-rsd"].aggregation.case == "required"
    assert packs["generic-gs1"].countries == ()


# Broken packs


def test_there_are_enough_bad_markets():
    assert len(BAD_FILES) >= 12


@pytest.mark.parametrize("path", BAD_FILES, ids=[path.stem for path in BAD_FILES])
def test_bad_market_reports_exactly_what_its_header_expects(path):
    expected = expectations(path)
    assert expected, f"{path} has no '# expect: LINE:COL: message' line"
    assert problems(path) == expected


def test_several_problems_are_reported_at_once_in_file_order():
    found = problems(BAD_MARKETS / "several-errors.yaml")
    assert len(found) == 3
    assert [int(issue.split(":")[1]) for issue in found] == sorted(int(issue.split(":")[1]) for issue in found)


def test_problems_of_all_files_are_collected(tmp_path):
    for name in ("unknown-ai", "serial-too-long"):
        (tmp_path / f"{name}.yaml").write_text((BAD_MARKETS / f"{name}.yaml").read_text(encoding="utf-8"))
    (tmp_path / "eu-fmd.yaml").write_text((MARKETS / "eu-fmd.yaml").read_text(encoding="utf-8"))
    with pytest.raises(ConfigError) as caught:
        load_markets(tmp_path)
    files = [Path(issue.file).name for issue in caught.value.issues]
    assert files == ["serial-too-long.yaml", "unknown-ai.yaml"]


def test_a_yml_file_is_not_skipped_silently(tmp_path):
    (tmp_path / "eu-fmd.yml").write_text((MARKETS / "eu-fmd.yaml").read_text(encoding="utf-8"))
    with pytest.raises(ConfigError) as caught:
        load_markets(tmp_path)
    assert [str(issue) for issue in caught.value.issues] == [
        f"{tmp_path / 'eu-fmd.yml'}:1:1: market packs are read from .yaml files only: rename it to eu-fmd.yaml"
    ]
    assert market_ids(tmp_path) == []


def test_missing_directory(tmp_path):
    with pytest.raises(ConfigError, match="not a directory of market packs"):
        load_markets(tmp_path / "nowhere")


def test_an_empty_directory_has_no_markets(tmp_path):
    assert load_markets(tmp_path) == {}


def test_unreadable_text_is_reported_at_its_byte(tmp_path):
    path = tmp_path / "latin.yaml"
    path.write_bytes(b"id: latin\nname: Caf\xe9\n")
    assert problems(path) == [f"{path}:2:10: cannot read: not UTF-8 text (byte 0xe9)"]


@dataclass(frozen=True)
class FakeAi:
    ai: str
    min_length: int
    max_length: int
    charset: str


NUMERIC_ONLY = {
    "01": FakeAi("01", 14, 14, "N"),
    "10": FakeAi("10", 1, 20, "X"),
    "17": FakeAi("17", 6, 6, "N"),
    "21": FakeAi("21", 1, 12, "N"),
}


def test_the_ai_table_is_a_seam():
    text = (BAD_MARKETS / "unknown-ai.yaml").read_text(encoding="utf-8").replace("unknown-ai", "seam")
    text = text.replace('"9999"', '"10"')
    with pytest.raises(ConfigError) as caught:
        load_market_text(text, "seam.yaml", ai_lookup=NUMERIC_ONLY.get)
    charset, length = (str(issue) for issue in caught.value.issues)
    assert charset == (
        'seam.yaml:16:12: serial.charset: characters "!\\"%&\'()*+,-...." (72 in all) are not in digits,'
        " the characters AI 21 takes"
    )
    assert length == "seam.yaml:18:15: serial.max_length: AI 21 takes 1 to 12 characters, not 20"


def test_a_date_yaml_cannot_build_stays_text_even_through_an_alias():
    doc = load_positioned("a: &day 2019-13-01\nb: *day\nc: 2019-02-03\n", "dates.yaml")
    assert doc is not None
    assert doc.data == {"a": "2019-13-01", "b": "2019-13-01", "c": date(2019, 2, 3)}


# Randomisation


def test_eu_fmd_twelve_digit_numeric_serials_are_random_enough(packs):
    pack = with_serial(packs["eu-fmd"], charset="numeric", length=12)
    assert serial_space(pack) == 10**12
    check_randomisation(pack, 10**7)  # 1e-5 < 1e-4


def test_eu_fmd_four_digit_serials_are_not(packs):
    pack = with_serial(packs["eu-fmd"], charset="numeric", length=4)
    assert serial_space(pack) == 10**4
    with pytest.raises(RandomisationError) as caught:
        check_randomisation(pack, 1)
    assert str(caught.value) == (
        "eu-fmd: 1 of 10,000 possible serials issued: a guess succeeds with probability 0.0001, and the market"
        " requires less than 0.0001 (1 in 10,000); use longer serials or a larger alphabet"
    )
    with pytest.raises(RandomisationError) as caught:
        check_randomisation(pack, 10**7)
    assert str(caught.value) == "eu-fmd: 10,000,000 serials asked for, but the serial format allows only 10,000"


def test_the_limit_itself_is_refused_exactly(packs):
    pack = with_serial(packs["eu-fmd"], charset="numeric", length=12)
    check_randomisation(pack, 10**8 - 1)
    with pytest.raises(RandomisationError, match="100,000,000 of 1,000,000,000,000"):
        check_randomisation(pack, 10**8)


def test_a_pool_passes_its_own_narrower_space(packs):
    eu = packs["eu-fmd"]
    check_randomisation(eu, 10**7)
    with pytest.raises(RandomisationError, match="10,000,000 of 20,000,000 possible serials"):
        check_randomisation(eu, 10**7, space=2 * 10**7)


def test_markets_without_a_rule_only_need_the_serials_to_exist(packs):
    us = with_serial(packs["us-dscsa"], charset="numeric", min_length=1, max_length=3)
    assert serial_space(us) == 10 + 100 + 1000
    check_randomisation(us, 1110)
    with pytest.raises(RandomisationError, match="1,111 serials asked for"):
        check_randomisation(us, 1111)
    with pytest.raises(ValueError, match="negative"):
        check_randomisation(us, -1)


def test_custom_alphabet_space(packs):
    pack = with_serial(packs["generic-gs1"], charset="custom", alphabet="ACDEFHJKLMNPRTUVWXY3479", length=10)
    assert serial_space(pack) == 23**10


@given(digits=st.integers(1, 20), quantity=st.integers(0, 10**12))
def test_randomisation_holds_exactly_when_the_ratio_is_below_the_limit(digits, quantity):
    pack = with_serial(load_market(MARKETS / "eu-fmd.yaml"), charset="numeric", length=digits)
    space = 10**digits
    try:
        check_randomisation(pack, quantity)
    except RandomisationError:
        assert quantity * 10_000 >= space
    else:
        assert quantity * 10_000 < space


# Human-readable lines


def sample_value(ai: str) -> str:
    return {"01": "09506000134352", "17": "271200", "11": "250115", "10": "L0T-42", "713": "1234567890123"}.get(
        ai, "ABC123"
    )


ELEMENTS = {"01": "09506000134352", "21": "Q7X2M9K4", "10": "L0T-42", "17": "271200"}


def test_eu_fmd_lines_leave_out_an_absent_national_number(packs):
    assert render_hri(packs["eu-fmd"], ELEMENTS, today=TODAY) == [
        "PC: 09506000134352",
        "SN: Q7X2M9K4",
        "Lot: L0T-42",
        "EXP: 12/2027",
    ]
    assert "NN: 1234567" in render_hri(packs["eu-fmd"], {**ELEMENTS, "712": "1234567"}, today=TODAY)


def test_day_00_is_the_last_day_of_the_month(packs):
    us = packs["us-dscsa"]
    assert render_hri(us, {**ELEMENTS, "17": "270200"}, today=TODAY)[-1] == "EXP: 2027-02-28"
    assert render_hri(us, {**ELEMENTS, "17": "280200"}, today=TODAY)[-1] == "EXP: 2028-02-29"
    assert render_hri(us, {**ELEMENTS, "17": "280215"}, today=TODAY)[-1] == "EXP: 2028-02-15"


def test_without_a_date_format_dates_print_as_encoded(packs):
    lines = render_hri(packs["generic-gs1"], {**ELEMENTS, "17": "270200"}, today=TODAY)
    assert lines == ["(01) 09506000134352", "(21) Q7X2M9K4", "(17) 270200", "(10) L0T-42"]


def test_russia_prints_no_crypto_tail_as_text(packs):
    elements = {"01": "04600000000001", "21": "ab!CD%ef(gh*1", "91": "EE10", "92": "x" * 44}
    assert render_hri(packs["ru-mdlp"], elements, today=TODAY) == ["GTIN: 04600000000001", "SN: ab!CD%ef(gh*1"]


def test_a_missing_required_ai_is_an_error(packs):
    with pytest.raises(MarketRuleError, match=re.escape('eu-fmd: HRI line "SN: {21}" needs AI 21,')):
        render_hri(packs["eu-fmd"], {"01": "09506000134352"}, today=TODAY)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("271300", '"271300" has no month 13'),
        ("270231", '"270231" has no day 31: 2027-02 has 28 days'),
        ("2712", '"2712" is not a YYMMDD date'),
    ],
)
def test_a_bad_date_is_an_error(packs, value, message):
    with pytest.raises(MarketRuleError, match=message):
        render_hri(packs["us-dscsa"], {**ELEMENTS, "17": value}, today=TODAY)


def test_braces_and_date_directives(tmp_path):
    text = (MARKETS / "generic-gs1.yaml").read_text(encoding="utf-8").replace("generic-gs1", "braces")
    text = text.replace('    - "(01) {01}"\n', '    - "{{{01}}} {17:%d.%m.%y} %Y {17:%Y%%}"\n')
    path = tmp_path / "braces.yaml"
    path.write_text(text, encoding="utf-8")
    pack = load_market(path)
    assert render_hri(pack, ELEMENTS, today=TODAY)[0] == "{09506000134352} 31.12.27 %Y 2027%"


@pytest.mark.parametrize(("yy", "year"), [(25, 2025), (75, 2075), (76, 1976), (99, 1999), (0, 2000), (74, 2074)])
def test_gs1_century_window(yy, year):
    assert century_year(yy, TODAY) == year


def test_the_century_window_wraps_late_in_a_century():
    assert century_year(1, date(2090, 1, 1)) == 2101
    assert century_year(41, date(2090, 1, 1)) == 2041  # 49 years back
    assert century_year(40, date(2090, 1, 1)) == 2140  # 50 years back is too far: 50 ahead instead


def test_pack_from_text_with_flow_lists():
    text = textwrap.dedent(
        """\
        id: flow
        name: Flow
        version: "1"
        effective_date: "2024-01-31"
        regulation: none
        countries: []
        code: {symbology: gs1_datamatrix, required: ["01", "21"]}
        serial: {charset: upper_alphanumeric, length: 8}
        randomisation: {rule: random, max_guess_probability: 1e-4}
        serial_source: upstream_list
        aggregation: {case: not_used, pallet: required}
        epcis: {version: "2.0", syntax: json-ld, identifiers: digital_link}
        hri: {lines: ["{01}/{21}"]}
        """
    )
    pack = load_market_text(text, "markets/flow.yaml")
    assert pack.effective_date == date(2024, 1, 31)
    assert pack.randomisation.max_guess_probability == 0.0001
    assert serial_space(pack) == 36**8
    assert render_hri(pack, {"01": "1", "21": "2"}) == ["1/2"]
