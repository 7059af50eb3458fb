"""Products (recipes): GTIN, market, packaging hierarchy, serial format and print templates, checked at load."""

from __future__ import annotations

from edge.products.checks import ai_value_problems, market_problems, product_problems
from edge.products.load import Catalog, load_catalog, load_product, load_product_text, load_products, product_ids
from edge.products.models import CodePlacement, HierarchyLevel, HriLine, PrintTemplate, Product, ProductSerials

__all__ = [
    "Catalog",
    "CodePlacement",
    "HierarchyLevel",
    "HriLine",
    "PrintTemplate",
    "Product",
    "ProductSerials",
    "ai_value_problems",
    "load_catalog",
    "load_product",
    "load_product_text",
    "load_products",
    "market_problems",
    "product_ids",
    "product_problems",
]
