"""Aggregation: units into bundles and cases, cases onto pallets, SSCCs allocated once, and audited rework."""

from edge.aggregation.ops import AggregationError, ContainerNotFoundError, SsccExhaustedError

__all__ = ["AggregationError", "ContainerNotFoundError", "SsccExhaustedError"]
