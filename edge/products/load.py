"""Reading products (one YAML file each) checked against the market packs, every problem of every file at once."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from edge.config.document import in_file_order, mapping_document, validate_document
from edge.config.explain import relation_issue
from edge.config.load import read_config_text
from edge.errors import ConfigError, ConfigIssue
from edge.markets.load import load_markets
from edge.products.checks import KeyRelationError, product_problems
from edge.products.models import Product

if TYPE_CHECKING:
    from collections.abc import Mapping

    from edge.config.models import CatalogConfig, RelationError
    from edge.markets.models import MarketPack
    from edge.yamlpos import Document

PRODUCT_SUFFIX = ".yaml"


def _placed(problem: RelationError, doc: Document, filename: str) -> ConfigIssue:
    """Place a problem found after validation at its value, or at its key when the key itself is wrong."""
    issue = relation_issue(problem, (), doc, filename)
    node, found = doc.locate(problem.at)
    if isinstance(problem, KeyRelationError) and found and node.key is not None:
        return replace(issue, line=node.key.line, column=node.key.column)
    return issue


def load_product_text(text: str, filename: str, markets: Mapping[str, MarketPack]) -> Product:
    """Parse and check one product against markets; its id must be the stem of filename; ConfigError lists all."""
    doc = mapping_document(
        text,
        filename,
        empty="the file is empty: a product needs id:, name:, gtin:, market:, serials:, templates: and more",
        top_level="the top level must be a mapping of keys (id:, name:, gtin:, ...)",
    )
    issues = list(doc.issues)
    product = validate_document(Product, doc, filename, issues)
    expected_id = Path(filename).name.removesuffix(PRODUCT_SUFFIX)
    problems = product_problems(product, markets, expected_id=expected_id)
    issues += [_placed(problem, doc, filename) for problem in problems]
    if issues:
        raise in_file_order(issues)
    return product


def load_product(path: Path, markets: Mapping[str, MarketPack]) -> Product:
    """Read and check one product file; ConfigError lists every problem as FILE:LINE:COL: message."""
    return load_product_text(read_config_text(path), str(path), markets)


def product_ids(directory: Path) -> list[str]:
    """Return the ids of the products in directory (file names without .yaml), sorted; nothing is checked."""
    files = directory.glob(f"*{PRODUCT_SUFFIX}")
    return sorted(path.name.removesuffix(PRODUCT_SUFFIX) for path in files if path.is_file())


def load_products(directory: Path, markets: Mapping[str, MarketPack]) -> dict[str, Product]:
    """Load every product in directory, by id, checked against markets; ConfigError lists all files' problems."""
    if not directory.is_dir():
        message = "cannot read: not a directory of products; create it or set catalog.products in the line config"
        raise ConfigError([ConfigIssue(str(directory), 1, 1, message)])
    products: dict[str, Product] = {}
    issues: list[ConfigIssue] = []
    for path in sorted(directory.iterdir()):
        if path.suffix == ".yml":
            # Silently skipping it would leave an integrator wondering why the product is unknown.
            message = f"products are read from {PRODUCT_SUFFIX} files only: rename it to {path.stem}{PRODUCT_SUFFIX}"
            issues.append(ConfigIssue(str(path), 1, 1, message))
        if path.suffix != PRODUCT_SUFFIX or not path.is_file():
            continue
        try:
            product = load_product(path, markets)
        except ConfigError as exc:
            issues += exc.issues
        else:
            products[product.id] = product
    if issues:
        raise ConfigError(issues)
    return products


@dataclass(frozen=True, slots=True)
class Catalog:
    """What a line can make: the market rule packs and the products checked against them, each by id."""

    markets: Mapping[str, MarketPack]
    products: Mapping[str, Product]


def load_catalog(catalog: CatalogConfig) -> Catalog:
    """Load the market packs, then the products against them; ConfigError lists every problem of every file.

    Products are checked once every pack loads: against a broken pack they would only add noise. A products
    directory left at its default that does not exist means no products; a configured one must exist.
    """
    markets = load_markets(catalog.markets)
    if not catalog.products.is_dir() and "products" not in catalog.model_fields_set:
        return Catalog(markets, {})
    return Catalog(markets, load_products(catalog.products, markets))
