"""A file-drop delivery target: each document becomes one file in a folder another system collects from.

A file appears whole or not at all: the document is written to a hidden temporary file in the same folder,
flushed to disk, renamed to its final name, and the folder itself is flushed so the rename survives a power
cut. A collector that ignores dot-files never sees a partial document.

Delivery is idempotent by name: the same name with the same bytes is a duplicate (delivered); the same name
with other bytes is refused for good, because overwriting could replace a document already collected.
One writer per folder is assumed: the name check and the rename are not one atomic step.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Final

from edge.sync.capture import CaptureFailed, CaptureResult

if TYPE_CHECKING:
    from typing import BinaryIO

__all__ = ["FileDropTarget"]

DEFAULT_FILE_MODE: Final = 0o644
"""Collectors usually run as another user: the file must be readable by them, never writable."""
MAX_NAME_LENGTH: Final = 255
"""The longest file name Linux file systems take (bytes, UTF-8)."""
_COMPARE_CHUNK: Final = 1 << 20

# Errors only an operator cures (a missing or read-only folder, permissions). Any other storage error (disk
# full, EIO, a network mount gone stale) may pass without anyone acting, so it is retried.
_PERMANENT_ERRNOS: Final = frozenset(
    {errno.ENOENT, errno.ENOTDIR, errno.EACCES, errno.EPERM, errno.EROFS, errno.ENAMETOOLONG, errno.EISDIR}
)


class FileDropTarget:
    """Delivers documents as files in one directory, atomically and idempotently by name."""

    def __init__(self, directory: Path, *, mode: int = DEFAULT_FILE_MODE) -> None:
        self.directory: Final = directory
        self.mode: Final = mode

    async def deliver(self, name: str, document: bytes) -> CaptureResult:
        """Write document as directory/name (off the event loop); raise CaptureFailed saying whether to retry."""
        _check_name(name)
        return await asyncio.to_thread(self._deliver, name, document)

    def _deliver(self, name: str, document: bytes) -> CaptureResult:
        target = self.directory / name
        existing = self._same_content(target, document)
        if existing is not None:
            # An earlier attempt may have renamed the file and failed before flushing the folder.
            try:
                _fsync_directory(self.directory)
            except OSError as err:
                raise _failed(err, f"cannot flush {self.directory}") from err
            return existing
        tmp: Path | None = None
        try:
            fd, tmp_name = tempfile.mkstemp(dir=self.directory, prefix=f".{name}.", suffix=".tmp")
            tmp = Path(tmp_name)
            try:
                os.fchmod(fd, self.mode)
                _write_all(fd, document)
                os.fsync(fd)
            finally:
                os.close(fd)
            tmp.rename(target)
            tmp = None
            _fsync_directory(self.directory)
        except OSError as err:
            raise _failed(err, f"cannot write {target}") from err
        finally:
            if tmp is not None:
                with contextlib.suppress(OSError):  # the error that got us here is the one to report
                    tmp.unlink()
        return CaptureResult("stored", None, f"wrote {target} ({len(document)} bytes)")

    def _same_content(self, target: Path, document: bytes) -> CaptureResult | None:
        """Return a duplicate result if target holds document; None if absent; raise if it holds anything else."""
        try:
            with target.open("rb") as existing:
                same = os.fstat(existing.fileno()).st_size == len(document) and _equal(existing, document)
        except FileNotFoundError:
            if not self.directory.is_dir():
                raise CaptureFailed(
                    f"file drop folder {self.directory} does not exist (or is not a folder); an operator must "
                    "create or mount it",
                    retryable=False,
                ) from None
            return None
        except OSError as err:
            raise _failed(err, f"cannot read the existing {target}") from err
        if not same:
            raise CaptureFailed(
                f"{target} already exists with other content; refusing to overwrite a document that may have "
                "been collected",
                retryable=False,
            )
        return CaptureResult("duplicate", None, f"{target} already holds this document")


def _check_name(name: str) -> None:
    if (
        not name
        or name in (".", "..")
        or name.startswith(".")  # dot-files are our temporary files; collectors skip them
        or "/" in name
        or "\0" in name
        or len(name.encode("utf-8", "surrogateescape")) > MAX_NAME_LENGTH
    ):
        raise CaptureFailed(
            f"file drop name {name[:80]!r} is not a plain file name (no '/', not hidden, at most "
            f"{MAX_NAME_LENGTH} bytes)",
            retryable=False,
        )


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _equal(existing: BinaryIO, document: bytes) -> bool:
    offset = 0
    while chunk := existing.read(_COMPARE_CHUNK):
        if document[offset : offset + len(chunk)] != chunk:
            return False
        offset += len(chunk)
    return offset == len(document)


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _failed(err: OSError, what: str) -> CaptureFailed:
    code = err.errno
    cause = os.strerror(code) if code is not None else str(err)
    if code in (errno.ENOSPC, errno.EDQUOT):
        return CaptureFailed(f"{what}: disk full ({cause}); will retry once space is freed", retryable=True)
    if code in _PERMANENT_ERRNOS:
        return CaptureFailed(
            f"{what}: {cause}; the folder must exist and be writable by the daemon (an operator must fix it)",
            retryable=False,
        )
    return CaptureFailed(f"{what}: {cause}; will retry", retryable=True)
