"""Structured logging: JSON lines for journald, readable console lines on a terminal, secrets masked."""

from __future__ import annotations

import logging
import re
import sys
from typing import TYPE_CHECKING, Any, Literal, TextIO

import structlog

if TYPE_CHECKING:
    from collections.abc import Iterable, MutableMapping

    from structlog.typing import EventDict, Processor

DEFAULT_REDACT = frozenset({"password", "passwd", "token", "secret", "authorization", "api_key", "cookie"})
REDACTED = "***"
# user:password@ inside URLs (upstream endpoints, device servers) must not reach the journal.
_URL_CREDENTIALS = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<user>[^:/@\s]+):(?P<pw>[^@/\s]+)@")

LogFormat = Literal["auto", "json", "console"]


class Redactor:
    """Masks values whose key names a secret, and passwords inside URLs, in every event."""

    def __init__(self, keys: Iterable[str] = ()) -> None:
        self._keys = frozenset(k.lower() for k in (*DEFAULT_REDACT, *keys))

    def __call__(self, _logger: object, _name: str, event: EventDict) -> EventDict:
        """Return the event with secrets masked (structlog processor)."""
        return self._mask(event)

    def _mask(self, mapping: MutableMapping[str, Any]) -> EventDict:
        out: EventDict = {}
        for key, value in mapping.items():
            if key.lower() in self._keys:
                out[key] = REDACTED
            elif isinstance(value, str):
                out[key] = _URL_CREDENTIALS.sub(rf"\g<scheme>\g<user>:{REDACTED}@", value)
            elif isinstance(value, dict):
                out[key] = self._mask(value)
            else:
                out[key] = value
        return out


def configure(
    level: str = "info",
    fmt: LogFormat = "auto",
    redact: Iterable[str] = (),
    stream: TextIO | None = None,
) -> None:
    """Route structlog and stdlib logging (asyncua, pymodbus, aiohttp) to one formatted stream."""
    out = sys.stderr if stream is None else stream
    use_json = fmt == "json" or (fmt == "auto" and not out.isatty())
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        Redactor(redact),
    ]
    renderer: Processor
    if use_json:
        renderer = structlog.processors.JSONRenderer()
        shared.append(structlog.processors.dict_tracebacks)
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=out.isatty())
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # Third-party stacks are chatty at INFO about every connection; their warnings still pass.
    for noisy in ("asyncua", "pymodbus", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


def device_logger(device_id: str) -> structlog.stdlib.BoundLogger:
    """Return a logger whose every line names the device."""
    log: structlog.stdlib.BoundLogger = structlog.get_logger("lineside.device").bind(device=device_id)
    return log
