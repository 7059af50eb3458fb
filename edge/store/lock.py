"""The state-directory lock: one daemon per state directory, with the holder's pid written in the lock file."""

from __future__ import annotations

import fcntl
import os
from typing import TYPE_CHECKING

from edge.errors import StoreError, StoreLockedError, StoreReadOnlyError

if TYPE_CHECKING:
    from pathlib import Path

LOCK_NAME = "lineside.lock"

# A pid is at most 7 digits on Linux (pid_max <= 4,194,304); anything longer in the file is not ours.
_PID_READ_BYTES = 32


class DirectoryLock:
    """An exclusive flock on <state dir>/lineside.lock, held until release() or the process ends."""

    __slots__ = ("_fd", "path")

    def __init__(self, fd: int, path: Path) -> None:
        self._fd: int | None = fd
        self.path = path

    @classmethod
    def acquire(cls, directory: Path) -> DirectoryLock:
        """Take the lock without waiting; raise StoreLockedError naming the pid that holds it."""
        path = directory / LOCK_NAME
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as err:
            raise StoreReadOnlyError(
                f"cannot create the lock file {path}: {err.strerror}; "
                "check that the state directory is writable"
            ) from err
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as err:
            holder = _read_pid(fd)
            os.close(fd)
            who = f"process {holder}" if holder else "another process"
            raise StoreLockedError(
                f"state directory {directory} is in use by {who} (it holds {path}); "
                "stop that Lineside daemon first, or give this one another state directory"
            ) from err
        except OSError as err:
            os.close(fd)
            raise StoreError(f"cannot lock {path}: {err.strerror}") from err
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except OSError as err:
            os.close(fd)
            raise StoreReadOnlyError(f"cannot write the lock file {path}: {err.strerror}") from err
        return cls(fd, path)

    def release(self) -> None:
        """Release the lock; idempotent. The file stays, so a waiting opener never races its deletion."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, _PID_READ_BYTES, 0).decode("ascii", "replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None
