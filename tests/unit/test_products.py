"""Products: the shipped products load against the shipped market packs; broken products fail at FILE:LINE:COL.

Each file in bad_products/ lists the exact problems it must produce in ``# expect: LINE:COL: message`` lines.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from edge.config.explain import dotted
from edge.config.models import CatalogConfig
from edge.errors import ConfigError
from edge.markets import MarketPack, load_markets
from edge.products import (
    Product,
    ai_value_problems,
    load_catalog,
    load_product,
    load_product_text,
    load_products,
    market_problems,
    product_ids,
)
from tests.conftest import ROOT

MARKETS = ROOT / "config" / "markets"
PRODUCTS = ROOT / "config" / "products"
BAD_PRODUCTS = Path(__file__).parent / "bad_products"
BAD_FILES = sorted(BAD_PRODUCTS.glob("*.yaml"))
SHIPPED = {
    "amoxicillin-250-ru": "ru-mdlp",
    "aspirin-500-eu": "eu-fmd",
    "metformin-500-us": "us-dscsa",
    "paracetamol-500-sa": "sa-rsd",
}


def expectations(path: Path) -> list[str]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return [f"{path}:{line.removeprefix('# expect: ')}" for line in lines if line.startswith("# expect: ")]


@pytest.fixture(scope="module")
def packs() -> dict[str, MarketPack]:
    return load_markets(MARKETS)


@pytest.fixture(scope="module")
def products(packs) -> dict[str, Product]:
    return load_products(PRODUCTS, packs)


def problems(path: Path, packs: dict[str, MarketPack]) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_product(path, packs)
    return [str(issue) for issue in caught.value.issues]


FLOW = textwrap.dedent(
    """\
    id: flow
    name: Flow
    gtin: "4012345000023"
    market: eu-fmd
    company_prefix_length: 7
    serials: {charset: numeric, length: 12}
    templates:
      printer-1: {ais: ["01", "21", "10", "17"], code: {x: 1, y: 1}}
    """
)


# The shipped products


def test_every_shipped_product_is_found():
    assert product_ids(PRODUCTS) == sorted(SHIPPED)


@pytest.mark.parametrize(("product_id", "market"), SHIPPED.items())
def test_shipped_product_loads_with_the_shipped_packs(packs, product_id, market):
    product = load_product(PRODUCTS / f"{product_id}.yaml", packs)
    assert product.id == product_id
    assert product.market == market
    assert len(product.gtin) == 14
    assert market_problems(product, packs[market]) == []
    assert {"printer-1", "labeller-case"} <= set(product.templates)


def test_the_eu_carton(products):
    eu = products["aspirin-500-eu"]
    assert eu.gtin == "04012345000016"
    assert eu.company_prefix_length == 7
    assert eu.levels == ("case", "pallet")
    assert (eu.units_per_bundle, eu.units_per_case, eu.units_per_pallet) == (None, 10, 400)
    assert eu.serials.characters == "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    assert eu.serials.generated_length == 12
    assert len(eu.serials.characters) ** eu.serials.generated_length == 36**12
    assert eu.serials.mode == "random"
    assert eu.serials.overage_percent == 2.0
    assert eu.templates["printer-1"].ais == ("01", "21", "10", "17")
    assert eu.templates["printer-1"].level == "unit"
    assert eu.templates["labeller-case"].level == "case"
    assert eu.extra_ais == {}


def test_the_us_bottle_is_bundled(products):
    us = products["metformin-500-us"]
    assert us.levels == ("bundle", "case", "pallet")
    assert (us.units_per_bundle, us.units_per_case, us.units_per_pallet) == (12, 72, 3600)


def test_the_russian_carton_prints_issued_codes(products):
    ru = products["amoxicillin-250-ru"]
    assert ru.templates["printer-1"].ais == ("01", "21", "91", "92")
    assert ru.serials.low_water == 20000
    assert ru.serials.length == 13


def test_the_saudi_carton_counts_up(products):
    sa = products["paracetamol-500-sa"]
    assert sa.serials.mode == "sequential"
    assert sa.levels == ("case", "pallet")


def test_snapshot_is_json_and_rebuilds_the_product(products):
    for product in products.values():
        snapshot = product.snapshot()
        assert json.loads(json.dumps(snapshot)) == snapshot
        assert Product.model_validate(snapshot) == product
    assert products["aspirin-500-eu"].snapshot()["gtin"] == "04012345000016"


def test_products_are_frozen(products):
    with pytest.raises(ValueError, match="frozen"):
        products["aspirin-500-eu"].gtin = "04012345000023"  # type: ignore[misc]


def test_line_config_tests_leave_products_alone():
    from tests.unit.test_config_files import LINE_CONFIGS

    assert not [path for path in LINE_CONFIGS if PRODUCTS in path.parents]


# Broken products


def test_there_are_enough_bad_products():
    assert len(BAD_FILES) >= 12


@pytest.mark.parametrize("path", BAD_FILES, ids=[path.stem for path in BAD_FILES])
def test_bad_product_reports_exactly_what_its_header_expects(path, packs):
    expected = expectations(path)
    assert expected, f"{path} has no '# expect: LINE:COL: message' line"
    assert problems(path, packs) == expected


def test_several_problems_are_reported_at_once_in_file_order(packs):
    found = problems(BAD_PRODUCTS / "several-errors.yaml", packs)
    assert len(found) == 3
    lines = [int(issue.split(":")[1]) for issue in found]
    assert lines == sorted(lines)


def test_problems_of_all_files_are_collected(tmp_path, packs):
    for name in ("unknown-market", "gtin-check-digit"):
        (tmp_path / f"{name}.yaml").write_text((BAD_PRODUCTS / f"{name}.yaml").read_text(encoding="utf-8"))
    (tmp_path / "aspirin-500-eu.yaml").write_text((PRODUCTS / "aspirin-500-eu.yaml").read_text(encoding="utf-8"))
    with pytest.raises(ConfigError) as caught:
        load_products(tmp_path, packs)
    assert [Path(issue.file).name for issue in caught.value.issues] == ["gtin-check-digit.yaml", "unknown-market.yaml"]


def test_a_yml_file_is_not_skipped_silently(tmp_path, packs):
    (tmp_path / "aspirin-500-eu.yml").write_text((PRODUCTS / "aspirin-500-eu.yaml").read_text(encoding="utf-8"))
    with pytest.raises(ConfigError) as caught:
        load_products(tmp_path, packs)
    message = "products are read from .yaml files only: rename it to aspirin-500-eu.yaml"
    assert [str(issue) for issue in caught.value.issues] == [f"{tmp_path / 'aspirin-500-eu.yml'}:1:1: {message}"]


def test_missing_directory(tmp_path, packs):
    with pytest.raises(ConfigError, match=r"not a directory of products; create it or set catalog\.products"):
        load_products(tmp_path / "nowhere", packs)


def test_an_empty_directory_has_no_products(tmp_path, packs):
    assert load_products(tmp_path, packs) == {}


def test_unreadable_text_is_reported_at_its_byte(tmp_path, packs):
    path = tmp_path / "latin.yaml"
    path.write_bytes(b"id: latin\nname: Caf\xe9\n")
    assert problems(path, packs) == [f"{path}:2:10: cannot read: not UTF-8 text (byte 0xe9)"]


def test_without_market_packs_every_market_is_unknown():
    with pytest.raises(ConfigError) as caught:
        load_product_text(FLOW, "flow.yaml", {})
    found = [str(issue) for issue in caught.value.issues]
    assert found == ['flow.yaml:4:9: market: unknown market "eu-fmd"; known: none']


# Products from text, and against other markets


def test_product_from_text_with_defaults(packs):
    product = load_product_text(FLOW, "products/flow.yaml", packs)
    assert product.gtin == "04012345000023"
    assert product.hierarchy == ()
    assert (product.units_per_case, product.units_per_pallet) == (None, None)
    assert product.sscc_extension_digit == 0
    assert product.serials.mode == "random"
    assert product.serials.low_water is None
    assert product.templates["printer-1"].hri == ()
    assert product.templates["printer-1"].code.module_mm is None
    assert product.description is None


def test_the_same_product_against_another_market(products, packs):
    eu = products["aspirin-500-eu"]
    found = [(dotted(problem.at), str(problem)) for problem in market_problems(eu, packs["ru-mdlp"])]
    not_allowed = 'is not allowed on the ru-mdlp code: it may carry "01", "21", "91", "92"'
    assert found == [
        ("serials.length", "market ru-mdlp serials have exactly 13 characters, not 12"),
        ("templates.printer-1.ais", 'market ru-mdlp requires "91", "92" on the code: add them'),
        ("templates.printer-1.ais[2]", f'AI "10" {not_allowed}'),
        ("templates.printer-1.ais[3]", f'AI "17" {not_allowed}'),
    ]
    assert market_problems(eu, packs["generic-gs1"]) == []


def test_a_national_number_rides_on_the_code(packs):
    text = FLOW.replace('"17"]', '"17", "712"]') + 'extra_ais: {"712": "6543210"}\n'
    product = load_product_text(text, "flow.yaml", packs)
    assert product.extra_ais == {"712": "6543210"}


def test_gtin_8_is_kept_as_14_digits(packs):
    product = load_product_text(FLOW.replace('"4012345000023"', '"96385074"'), "flow.yaml", packs)
    assert product.gtin == "00000096385074"


def test_json_schema_carries_the_documentation():
    schema = Product.model_json_schema()
    assert "check digit" in schema["properties"]["gtin"]["description"]
    assert "random" in schema["$defs"]["ProductSerials"]["properties"]["mode"]["description"]


def test_ai_value_problems_name_the_bad_character():
    assert ai_value_problems("10", "L2611A") == []
    bad_space = '"A(B C": AI (10) BATCH/LOT: invalid cset82 character " " (character 4)'
    assert ai_value_problems("10", "A(B C") == [bad_space]
    too_long = "x" * 21
    assert ai_value_problems("10", too_long) == [f'"{too_long}": AI (10) BATCH/LOT: must be 1 to 20 characters, got 21']


# The catalog a line configuration names


def test_catalog_loads_markets_then_products():
    catalog = load_catalog(CatalogConfig(products=PRODUCTS, markets=MARKETS))
    assert sorted(catalog.products) == sorted(SHIPPED)
    assert "eu-fmd" in catalog.markets


def test_a_default_products_directory_may_be_absent(tmp_path):
    catalog = CatalogConfig.model_validate({}, context={"base_dir": tmp_path})
    assert catalog.products == tmp_path / "products"
    assert load_catalog(catalog).products == {}


def test_a_configured_products_directory_must_exist(tmp_path):
    with pytest.raises(ConfigError) as caught:
        load_catalog(CatalogConfig(products=tmp_path / "nowhere", markets=MARKETS))
    assert [issue.file for issue in caught.value.issues] == [str(tmp_path / "nowhere")]


def test_products_wait_for_broken_market_packs(tmp_path):
    markets = tmp_path / "markets"
    markets.mkdir()
    (markets / "eu-fmd.yaml").write_text("id: eu-fmd\n", encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_catalog(CatalogConfig(products=PRODUCTS, markets=markets))
    assert {Path(issue.file).name for issue in caught.value.issues} == {"eu-fmd.yaml"}
