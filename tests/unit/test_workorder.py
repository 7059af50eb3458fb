"""Work orders from the MES, as YAML or JSON: taken when they fit the catalog, line and today, else FILE:LINE:COL."""

from __future__ import annotations

import json
import textwrap
from datetime import date

import pytest

from edge.errors import ConfigError
from edge.markets import AiLength, MarketPack, load_markets
from edge.products import Product, load_product_text, load_products
from edge.serials.workorder import REQUEST_BODY, WorkOrder, gs1_date, load_work_order, load_work_order_text
from tests.conftest import ROOT

TODAY = date(2026, 11, 1)

GOOD = """\
work_order: WO-2026-000123     # MES order number
product: aspirin-500-eu
lot: "L2611A"
expiry: 2028-10-31
quantity: 120000
line: line-3
manufactured: 2026-10-20
"""

GOOD_JSON = {
    "work_order": "WO-2026-000124",
    "product": "amoxicillin-250-ru",
    "lot": "A1",
    "expiry": "2027-01-31",
    "quantity": 5000,
    "line": "line-3",
}


@pytest.fixture(scope="module")
def markets() -> dict[str, MarketPack]:
    return load_markets(ROOT / "config" / "markets")


@pytest.fixture(scope="module")
def products(markets) -> dict[str, Product]:
    return load_products(ROOT / "config" / "products", markets)


def load(text: str, products, markets, *, filename: str = "wo.yaml", line_id: str | None = "line-3") -> WorkOrder:
    return load_work_order_text(text, filename, products=products, markets=markets, line_id=line_id, today=TODAY)


def problems(text: str, products, markets, **kwargs) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load(text, products, markets, **kwargs)
    return [str(issue) for issue in caught.value.issues]


def product(text: str, markets) -> dict[str, Product]:
    made = load_product_text(textwrap.dedent(text), "small.yaml", markets)
    return {made.id: made}


SMALL = """\
id: small
name: Small serial space
gtin: "04012345000030"
market: eu-fmd
company_prefix_length: 7
serials: {charset: numeric, length: 6, overage_percent: 1.1}
templates:
  printer-1: {ais: ["01", "21", "10", "17"], code: {x: 1, y: 1}}
"""


# Accepted


def test_a_yaml_work_order(products, markets):
    order = load(GOOD, products, markets)
    assert order.work_order == "WO-2026-000123"
    assert order.expiry == order.expiry_yymmdd == "281031"
    assert order.manufactured == "261020"
    assert order.market is None
    assert order.market_for(products["aspirin-500-eu"]) == "eu-fmd"
    assert order.serials_to_allocate(products["aspirin-500-eu"]) == 122_400


def test_a_json_http_body_indented_with_tabs(products, markets):
    body = json.dumps(GOOD_JSON, indent="\t")
    order = load(body, products, markets, filename=REQUEST_BODY)
    assert order.product == "amoxicillin-250-ru"
    assert order.expiry_yymmdd == "270131"
    assert order.manufactured is None


def test_a_json_file(tmp_path, products, markets):
    path = tmp_path / "wo.json"
    path.write_text(json.dumps(GOOD_JSON), encoding="utf-8")
    order = load_work_order(path, products=products, markets=markets, line_id="line-3", today=TODAY)
    assert order.quantity == 5000


def test_yymmdd_with_day_00_means_the_end_of_the_month(products, markets):
    order = load(GOOD.replace("2028-10-31", '"281000"'), products, markets)
    assert order.expiry_yymmdd == "281000"
    assert gs1_date(order.expiry_yymmdd, TODAY) == date(2028, 10, 31)
    # Expiring at the end of this very month is not yet expired.
    assert load(GOOD.replace("2028-10-31", '"261100"').replace("2026-10-20", '"261000"'), products, markets)


def test_without_a_line_id_any_line_is_taken(products, markets):
    assert load(GOOD.replace("line-3", "line-9"), products, markets, line_id=None).line == "line-9"


def test_a_market_the_product_meets_can_be_chosen(products, markets):
    order = load(GOOD + "market: generic-gs1\n", products, markets)
    assert order.market_for(products["aspirin-500-eu"]) == "generic-gs1"


def test_overage_is_exact_and_rounded_up(markets):
    small = product(SMALL, markets)["small"]
    order = WorkOrder(work_order="W", product="small", lot="L", expiry="281000", quantity=1000, line="l")
    assert order.serials_to_allocate(small) == 1011
    assert order.model_copy(update={"quantity": 1001}).serials_to_allocate(small) == 1013


def test_work_orders_are_frozen(products, markets):
    order = load(GOOD, products, markets)
    with pytest.raises(ValueError, match="frozen"):
        order.quantity = 1  # type: ignore[misc]


# Refused


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            "2028-10-31",
            "281000",
            '4:9: expiry: YAML reads 281000 as the number 281000, not as text; quote it: "281000"',
        ),
        (
            "2028-10-31",
            '"281300"',
            '4:9: expiry: "281300": AI (17) USE BY or EXPIRY: illegal month',
        ),
        (
            "2028-10-31",
            "2028-02-30",
            '4:9: expiry: "2028-02-30" is not a date: day is out of range for month',
        ),
        (
            "2028-10-31",
            "31.10.2028",
            '4:9: expiry: "31.10.2028" is not a date: write YYYY-MM-DD, like 2028-10-31, or YYMMDD, like "281031"',
        ),
        (
            "2028-10-31",
            "2028-10-31T10:00:00",
            "4:9: expiry: 2028-10-31T10:00:00 has a time of day: give the date only, YYYY-MM-DD",
        ),
        (
            "2028-10-31",
            "2128-10-31",
            "4:9: expiry: 2128-10-31 cannot be encoded: GS1 reads the two-digit year 28 as 2028",
        ),
        (
            "2028-10-31",
            "2026-10-31",
            "4:9: expiry: 2026-10-31 has passed (today is 2026-11-01): units must not be made expired",
        ),
        (
            "2028-10-31",
            '"261000"',
            "4:9: expiry: 2026-10-31 has passed (today is 2026-11-01): units must not be made expired",
        ),
        (
            "2026-10-20",
            "2028-11-20",
            "4:9: expiry: 2028-10-31 is before manufactured 2028-11-20",
        ),
        (
            '"L2611A"',
            '"L 26"',
            '3:6: lot: "L 26": AI (10) BATCH/LOT: invalid cset82 character " " (character 2)',
        ),
        (
            '"L2611A"',
            "2611",
            '3:6: lot: YAML reads 2611 as the number 2611, not as text; quote it: "2611"',
        ),
        (
            "120000",
            "0",
            "5:11: quantity: 0 must be at least 1",
        ),
        (
            "120000",
            '"120000"',
            '5:11: quantity: expected a whole number, got the text "120000"; write it without quotes',
        ),
        (
            "WO-2026-000123",
            "WO 1",
            '1:13: work_order: "WO 1" must match [A-Za-z0-9._/-]{1,64}',
        ),
        (
            "line: line-3",
            "line: line-4",
            '6:7: line: the order is for line "line-4", but this is line "line-3": send it to that line',
        ),
        (
            "2026-10-20",
            "2026-11-31",
            '7:15: manufactured: "2026-11-31" is not a date: day is out of range for month',
        ),
        (
            "quantity",
            "qty",
            '1:1: missing required key "quantity"',
        ),
    ],
)
def test_a_bad_value_is_refused_where_it_is(products, markets, old, new, expected):
    assert old in GOOD
    assert problems(GOOD.replace(old, new), products, markets)[0] == f"wo.yaml:{expected}"


def test_an_unknown_key_is_named(products, markets):
    assert problems(GOOD + "colour: red\n", products, markets) == ['wo.yaml:8:1: unknown key "colour"']


def test_an_unknown_product_lists_the_known_ones(products, markets):
    assert problems(GOOD.replace("aspirin-500-eu", "aspirin-500"), products, markets) == [
        (
            'wo.yaml:2:10: product: unknown product "aspirin-500" (did you mean "aspirin-500-eu"?); known:'
            " amoxicillin-250-ru, aspirin-500-eu, metformin-500-us, paracetamol-500-sa"
        )
    ]


def test_an_unknown_market_lists_the_known_ones(products, markets):
    assert problems(GOOD + "market: eu-fm\n", products, markets) == [
        (
            'wo.yaml:8:9: market: unknown market "eu-fm" (did you mean "eu-fmd"?); known: br-anvisa, eu-fmd,'
            " generic-gs1, in-export-legacy, ru-mdlp, sa-rsd, us-dscsa"
        )
    ]


def test_a_market_the_product_does_not_meet_is_refused_with_every_reason(products, markets):
    (found,) = problems(GOOD + "market: ru-mdlp\n", products, markets)
    assert found.startswith('wo.yaml:8:9: market: product "aspirin-500-eu" does not meet market "ru-mdlp": ')
    assert "serials.length: market ru-mdlp serials have exactly 13 characters, not 12; " in found
    assert 'templates.printer-1.ais: market ru-mdlp requires "91", "92" on the code: add them' in found


def test_a_market_of_the_product_that_is_not_loaded(products, markets):
    without_eu = {key: pack for key, pack in markets.items() if key != "eu-fmd"}
    assert problems(GOOD, products, without_eu) == [
        'wo.yaml:2:10: product: product "aspirin-500-eu" is made for market "eu-fmd", which is not loaded'
    ]


def test_too_many_serials_for_a_random_market(markets):
    text = GOOD.replace("aspirin-500-eu", "small").replace("120000", "99")
    assert problems(text, product(SMALL, markets), markets) == [
        (
            "wo.yaml:5:11: quantity: 101 serials with 1.1% overage: eu-fmd: 101 of 1,000,000 possible serials issued: a"
            " guess succeeds with probability 0.000101, and the market requires less than 0.0001 (1 in 10,000); use"
            " longer serials or a larger alphabet"
        )
    ]
    # 97 and 2 overage: 99 serials of a million, just under 1 in 10,000.
    assert load(text.replace("99", "97"), product(SMALL, markets), markets).quantity == 97


def test_a_printed_production_date_needs_manufactured(markets):
    text = SMALL.replace("eu-fmd", "generic-gs1").replace('"17"]', '"17", "11"]')
    order = GOOD.replace("aspirin-500-eu", "small")
    assert load(order, product(text, markets), markets).manufactured == "261020"
    assert problems(order.replace("manufactured: 2026-10-20\n", ""), product(text, markets), markets) == [
        'wo.yaml:2:10: product: product "small" prints the production date (AI 11): give manufactured: YYYY-MM-DD'
    ]


def test_a_market_that_fixes_the_lot_length(products, markets):
    eu = markets["eu-fmd"]
    fixed = eu.model_copy(update={"code": eu.code.model_copy(update={"lengths": (AiLength(ai="10", length=8),)})})
    assert problems(GOOD, products, {**markets, "eu-fmd": fixed}) == [
        "wo.yaml:3:6: lot: market eu-fmd takes lots of 8 characters, not 6"
    ]


def test_every_problem_is_reported_at_once_in_file_order(products, markets):
    text = GOOD.replace("aspirin-500-eu", "nope").replace("line-3", "line-4").replace("2028-10-31", '"261000"')
    found = problems(text, products, markets)
    assert [issue.split(": ")[1] for issue in found] == ["product", "expiry", "line"]
    assert [issue.split(":")[1] for issue in found] == ["2", "4", "6"]


def test_json_problems_are_placed_in_the_body(products, markets):
    body = json.dumps({**GOOD_JSON, "quantity": "5000"})
    column = body.index('"5000"') + 1
    assert problems(body, products, markets, filename=REQUEST_BODY) == [
        f'<request body>:1:{column}: quantity: expected a whole number, got the text "5000"; write it without quotes'
    ]


def test_a_repeated_json_key_is_refused(products, markets):
    body = '{"work_order": "W", "work_order": "X"}'
    assert '<request body>:1:21: duplicate key "work_order" (first at line 1)' in problems(
        body, products, markets, filename=REQUEST_BODY
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "",
            "wo.yaml:1:1: the work order is empty: it needs work_order:, product:, lot:, expiry:, quantity: and line:",
        ),
        (
            "[1]",
            "wo.yaml:1:1: the work order must be a mapping of keys (work_order:, product:, ...), not a list",
        ),
    ],
)
def test_an_empty_or_shapeless_order(products, markets, text, expected):
    assert problems(text, products, markets) == [expected]
