"""The error taxonomy: every error Lineside raises on purpose derives from EdgeError."""

from __future__ import annotations

from dataclasses import dataclass


class EdgeError(Exception):
    """Root of every error Lineside raises on purpose."""


class ConfigError(EdgeError):
    """Configuration is invalid; carries every problem found, each with its file position."""

    def __init__(self, issues: list[ConfigIssue]) -> None:
        self.issues = issues
        super().__init__("\n".join(str(issue) for issue in issues))


@dataclass(frozen=True, slots=True)
class ConfigIssue:
    """One configuration problem at FILE:LINE:COL (1-based), printed the way compilers do."""

    file: str
    line: int
    column: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}: {self.message}"


class DeviceError(EdgeError):
    """A device failed; subclasses say whether retrying can help."""


class TransientDeviceError(DeviceError):
    """The device or its link failed in a way a reconnect may cure (timeout, reset, refused)."""


class DeviceRejectedError(DeviceError):
    """The device refused us for a reason retrying will not cure (wrong settings, wrong model, bad credentials)."""


class ProtocolError(TransientDeviceError):
    """The device sent bytes that break its wire protocol; the link is reset and resynchronised."""


class UnknownDriverError(EdgeError):
    """No installed driver has the configured name."""


class StoreError(EdgeError):
    """The durable store failed; nothing of the failed change was written."""


class StoreCorruptError(StoreError):
    """The database file failed its integrity check."""


class StoreSchemaError(StoreError):
    """The database schema is newer than this program, or a migration failed."""


class StoreLockedError(StoreError):
    """Another process holds the database lock."""


class StoreFullError(StoreError):
    """The disk holding the database is full."""


class StoreReadOnlyError(StoreError):
    """The database or its directory cannot be written."""


class SerialError(EdgeError):
    """A serial-number operation was refused; nothing of it was written."""


class IllegalTransitionError(SerialError):
    """A serial (or several) cannot move from its current state to the one asked for."""


class PoolExhaustedError(SerialError):
    """The pool has fewer serials available for a GTIN than a batch needs."""


class SerialImportError(SerialError):
    """Serials or codes supplied from outside are malformed or clash with ones already known."""


class BatchError(EdgeError):
    """A batch or work-order operation was refused; the message gives the reason and what to do."""


class BatchNotFoundError(BatchError):
    """No batch has the id or work order given."""


class ReconciliationError(BatchError):
    """A batch cannot be closed: its serials do not balance or some are still unresolved."""


class AggregationError(EdgeError):
    """An aggregation change was refused; the message names the unit or container and the rule."""


class ContainerNotFoundError(AggregationError):
    """No container has the id or identifier given."""


class SsccExhaustedError(AggregationError):
    """Every serial reference of a company prefix and extension digit has been allocated."""


class ScanError(AggregationError):
    """A scan cannot be used here: not GS1, or not the kind of code this station takes; the message says which."""
