"""The local HTTP API (aiohttp): sessions, batches, line control, aggregation and delivery as JSON under /api/v1."""

from __future__ import annotations

from edge.api.app import API_PREFIX, MAX_BODY_BYTES, make_app
from edge.api.server import ApiServer

__all__ = ["API_PREFIX", "MAX_BODY_BYTES", "ApiServer", "make_app"]
