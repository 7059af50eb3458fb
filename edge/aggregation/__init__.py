"""Aggregation: units into bundles and cases, cases onto pallets, SSCCs allocated once, and audited rework."""

from edge.errors import AggregationError, ContainerNotFoundError, ScanError, SsccExhaustedError

__all__ = ["AggregationError", "ContainerNotFoundError", "ScanError", "SsccExhaustedError"]
