"""Work orders as an MES sends them (a YAML or JSON file, or an HTTP body), checked against the catalog.

JSON is YAML, so one positioned loader serves every form and each problem is reported at FILE:LINE:COL; for
an HTTP body the file name is a label such as ``<request body>``.
"""

from __future__ import annotations

import calendar
import re
from datetime import UTC, date, datetime
from fractions import Fraction
from math import ceil
from typing import TYPE_CHECKING, Self

from pydantic import Field, ValidationInfo, field_validator, model_validator

from edge.config.document import in_file_order, mapping_document, validate_document
from edge.config.explain import dotted, relation_issue
from edge.config.load import read_config_text
from edge.config.models import ID_PATTERN as LINE_ID_PATTERN
from edge.config.models import RelationError, Section
from edge.markets.rules import RandomisationError, century_year, check_randomisation
from edge.products.checks import ai_value_problems, market_problems, unknown_id

if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path

    from edge.markets.models import MarketPack
    from edge.products.models import Product

WORK_ORDER_PATTERN = r"^[A-Za-z0-9._/-]{1,64}$"
REQUEST_BODY = "<request body>"
"""The file name problems of a work order received over HTTP are reported under."""


def _today(info: ValidationInfo) -> date:
    given = (info.context or {}).get("today")
    return given if isinstance(given, date) else datetime.now(UTC).date()


def gs1_date(yymmdd: str, today: date) -> date:
    """Return the calendar date of a valid GS1 YYMMDD value; day 00 is the month's last day."""
    year = century_year(int(yymmdd[:2]), today)
    month, day = int(yymmdd[2:4]), int(yymmdd[4:])
    return date(year, month, day or calendar.monthrange(year, month)[1])


def _yymmdd(value: object, ai: str, today: date) -> object:
    """Turn YYYY-MM-DD (text or a YAML date) or YYMMDD text into the AI's YYMMDD text; ValueError saying why not."""
    if isinstance(value, datetime):
        # A ValueError, not a TypeError: pydantic reports only a ValueError as a problem of the value.
        raise ValueError(f"{value.isoformat()} has a time of day: give the date only, YYYY-MM-DD")  # noqa: TRY004
    if isinstance(value, str) and re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", value):
        try:
            value = date.fromisoformat(value)
        except ValueError as exc:
            raise ValueError(f'"{value}" is not a date: {exc}') from exc
    if isinstance(value, date):
        yy = value.year % 100
        if century_year(yy, today) != value.year:
            read_as = century_year(yy, today)
            message = f"{value.isoformat()} cannot be encoded: GS1 reads the two-digit year {yy:02d} as {read_as}"
            raise ValueError(message)
        return value.strftime("%y%m%d")
    if isinstance(value, str):
        if not re.fullmatch(r"[0-9]{6}", value):
            raise ValueError(f'"{value}" is not a date: write YYYY-MM-DD, like 2028-10-31, or YYMMDD, like "281031"')
        problems = ai_value_problems(ai, value)
        if problems:
            raise ValueError("; ".join(problems))
    # Anything else (a number) is left for the text check, which tells to quote it.
    return value


class WorkOrder(Section):
    """One order to make a product on a line: which product, lot, expiry and how many saleable units."""

    work_order: str = Field(pattern=WORK_ORDER_PATTERN)
    """The MES order number, unique: letters, digits, . _ - / (1 to 64)."""
    product: str = Field(min_length=1)
    """Id of the product to make, as in the products directory."""
    lot: str
    """Batch or lot number (AI 10): up to 20 characters of GS1 CSET 82; quote it."""
    expiry: str
    """Expiry date (AI 17): YYYY-MM-DD, or quoted YYMMDD where day 00 means the end of the month; kept as YYMMDD."""
    quantity: int = Field(strict=True, ge=1)
    """Saleable units wanted, not counting overage."""
    line: str = Field(pattern=LINE_ID_PATTERN)
    """Id of the line the order is for."""
    market: str | None = Field(None, min_length=1)
    """Market pack to make this order for instead of the product's own; the product must meet it."""
    manufactured: str | None = None
    """Production date (AI 11), YYYY-MM-DD or quoted YYMMDD; kept as YYMMDD."""

    @field_validator("lot")
    @classmethod
    def _lot(cls, lot: str) -> str:
        problems = ai_value_problems("10", lot)
        if problems:
            raise ValueError("; ".join(problems))
        return lot

    @field_validator("expiry", mode="before")
    @classmethod
    def _expiry(cls, value: object, info: ValidationInfo) -> object:
        return _yymmdd(value, "17", _today(info))

    @field_validator("manufactured", mode="before")
    @classmethod
    def _manufactured(cls, value: object, info: ValidationInfo) -> object:
        return None if value is None else _yymmdd(value, "11", _today(info))

    @model_validator(mode="after")
    def _made_before_expiry(self, info: ValidationInfo) -> Self:
        if self.manufactured is None:
            return self
        today = _today(info)
        made, expires = gs1_date(self.manufactured, today), gs1_date(self.expiry, today)
        if expires < made:
            raise RelationError(f"{expires.isoformat()} is before manufactured {made.isoformat()}", at=("expiry",))
        return self

    @property
    def expiry_yymmdd(self) -> str:
        """The expiry as AI 17 encodes it, YYMMDD (day 00: the end of the month)."""
        return self.expiry

    def market_for(self, product: Product) -> str:
        """Return the id of the market pack this order is made for: its override, else the product's market."""
        return self.market or product.market

    def serials_to_allocate(self, product: Product) -> int:
        """Return the serials to allocate at release: the quantity plus the product's overage, rounded up."""
        return with_overage(self.quantity, product.serials.overage_percent)


def with_overage(quantity: int, overage_percent: float) -> int:
    """Return quantity plus overage_percent of it, rounded up: the serials a batch allocates at release."""
    # Exact arithmetic: 1.1 % of 1,000 must be 11 extra serials, not 12 from a float just above 11.
    return quantity + ceil(Fraction(quantity) * Fraction(str(overage_percent)) / 100)


def _market_problems(order: WorkOrder, product: Product, markets: Mapping[str, MarketPack]) -> list[RelationError]:
    """Check the market the order is made for: loaded, met by the product, and its lot length."""
    market_id = order.market_for(product)
    pack = markets.get(market_id)
    if pack is None:
        if order.market is not None:
            return [RelationError(unknown_id("market", market_id, markets), at=("market",))]
        message = f'product "{product.id}" is made for market "{market_id}", which is not loaded'
        return [RelationError(message, at=("product",))]
    problems: list[RelationError] = []
    if order.market is not None:
        unmet = market_problems(product, pack)
        if unmet:
            found = "; ".join(f"{dotted(problem.at)}: {problem}" for problem in unmet)
            message = f'product "{product.id}" does not meet market "{pack.id}": {found}'
            problems.append(RelationError(message, at=("market",)))
    for rule in pack.code.lengths:
        if rule.ai == "10" and not rule.shortest <= len(order.lot) <= rule.longest:
            span = str(rule.shortest) if rule.shortest == rule.longest else f"{rule.shortest} to {rule.longest}"
            message = f"market {pack.id} takes lots of {span} characters, not {len(order.lot)}"
            problems.append(RelationError(message, at=("lot",)))
    if pack.serial_source == "local":
        serials = product.serials
        needed = order.serials_to_allocate(product)
        try:
            check_randomisation(pack, needed, space=len(serials.characters) ** serials.generated_length)
        except RandomisationError as exc:
            message = f"{needed:,} serials with {serials.overage_percent:g}% overage: {exc}"
            problems.append(RelationError(message, at=("quantity",)))
    return problems


def order_problems(
    order: WorkOrder,
    *,
    products: Mapping[str, Product],
    markets: Mapping[str, MarketPack],
    line_id: str | None,
    today: date,
) -> list[RelationError]:
    """Return every way the order does not fit this line, its catalog and today, each at a path from its root."""
    problems: list[RelationError] = []
    if line_id is not None and order.line != line_id:
        message = f'the order is for line "{order.line}", but this is line "{line_id}": send it to that line'
        problems.append(RelationError(message, at=("line",)))
    expires = gs1_date(order.expiry, today)
    if expires < today:
        message = f"{expires.isoformat()} has passed (today is {today.isoformat()}): units must not be made expired"
        problems.append(RelationError(message, at=("expiry",)))
    product = products.get(order.product)
    if product is None:
        problems.append(RelationError(unknown_id("product", order.product, products), at=("product",)))
        return problems
    if order.manufactured is None and any("11" in template.ais for template in product.templates.values()):
        message = f'product "{product.id}" prints the production date (AI 11): give manufactured: YYYY-MM-DD'
        problems.append(RelationError(message, at=("product",)))
    return problems + _market_problems(order, product, markets)


def load_work_order_text(
    text: str,
    filename: str,
    *,
    products: Mapping[str, Product],
    markets: Mapping[str, MarketPack],
    line_id: str | None,
    today: date | None = None,
) -> WorkOrder:
    """Parse and check one work order (YAML or JSON); ConfigError lists every problem as FILE:LINE:COL: message.

    today (default: the current UTC date) is what expiry must not lie before.
    """
    today = today or datetime.now(UTC).date()
    if text.lstrip("\ufeff \r\n").startswith(("{", "[")):
        # JSON may indent with tabs, YAML may not; valid JSON has tabs only between tokens, one column each.
        text = text.replace("\t", " ")
    doc = mapping_document(
        text,
        filename,
        empty="the work order is empty: it needs work_order:, product:, lot:, expiry:, quantity: and line:",
        top_level="the work order must be a mapping of keys (work_order:, product:, ...)",
    )
    issues = list(doc.issues)
    order = validate_document(WorkOrder, doc, filename, issues, context={"today": today})
    problems = order_problems(order, products=products, markets=markets, line_id=line_id, today=today)
    issues += [relation_issue(problem, (), doc, filename) for problem in problems]
    if issues:
        raise in_file_order(issues)
    return order


def load_work_order(
    path: Path,
    *,
    products: Mapping[str, Product],
    markets: Mapping[str, MarketPack],
    line_id: str | None,
    today: date | None = None,
) -> WorkOrder:
    """Read and check one work order file (YAML or JSON); ConfigError lists every problem as FILE:LINE:COL."""
    text = read_config_text(path)
    return load_work_order_text(text, str(path), products=products, markets=markets, line_id=line_id, today=today)
