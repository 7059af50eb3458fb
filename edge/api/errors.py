"""How expected errors reach API clients and the command line: one HTTP status and JSON body per kind of error.

Kept free of aiohttp so the offline command line shares it without loading the web stack.
"""

from __future__ import annotations

from typing import Any

from edge.errors import (
    AggregationError,
    BatchError,
    BatchNotFoundError,
    ConfigError,
    ContainerNotFoundError,
    ScanError,
    SerialError,
    SerialImportError,
    StoreError,
)
from edge.markets.rules import MarketRuleError
from edge.openscs.errors import OpenScsError

BAD_REQUEST = 400
NOT_FOUND = 404
CONFLICT = 409
UNPROCESSABLE = 422
BAD_GATEWAY = 502
UNAVAILABLE = 503


def http_status(err: BaseException) -> int | None:
    """Return the HTTP status of an expected error, or None when the error is not one we raise on purpose.

    400 bad input, 404 no such batch or container, 409 refused by the domain (illegal move, does not balance,
    pool exhausted, randomisation, an aggregation rule), 422 a scan that is not the code asked for, 502 the L3
    pool server (OPEN-SCS) failed or refused, 503 the store failed.
    """
    return next((status for kinds, status in _STATUS_OF if isinstance(err, kinds)), None)


_STATUS_OF: tuple[tuple[tuple[type[Exception], ...], int], ...] = (
    # In this order: a subclass's status before its base's.
    ((BatchNotFoundError, ContainerNotFoundError), NOT_FOUND),
    ((ScanError,), UNPROCESSABLE),
    ((ConfigError, SerialImportError), BAD_REQUEST),
    ((StoreError,), UNAVAILABLE),
    ((OpenScsError,), BAD_GATEWAY),
    ((BatchError, SerialError, MarketRuleError, AggregationError), CONFLICT),
)


def error_body(err: BaseException) -> dict[str, Any]:
    """Return {"error": message, "issues": ["FILE:LINE:COL: message", ...]} for an expected error."""
    if isinstance(err, ConfigError):
        issues = [str(issue) for issue in err.issues]
        more = f" (and {len(issues) - 1} more, see issues)" if len(issues) > 1 else ""
        return {"error": f"{issues[0]}{more}" if issues else "invalid input", "issues": issues}
    lines = str(err).splitlines() or [type(err).__name__]
    if isinstance(err, SerialImportError):
        more = f" (and {len(lines) - 1} more, see issues)" if len(lines) > 1 else ""
        return {"error": f"{lines[0]}{more}", "issues": lines}
    return {"error": "\n".join(lines), "issues": []}
