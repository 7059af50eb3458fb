"""The durable store: SQLite schema and migrations, and the single writer with group commit."""

from __future__ import annotations

from edge.store.runs import DaemonRun
from edge.store.store import DB_NAME, Store, StoreStats

__all__ = ["DB_NAME", "DaemonRun", "Store", "StoreStats"]
