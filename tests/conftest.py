"""Suite-wide guards: no test may leak an asyncio task or thread, and shared paths to the corpora."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CORPORA = ROOT.parent / "shared" / "corpora"
if (CORPORA / "gs1-EPCIS" / "EPCIS-JSON-Schema.json").is_file():
    # The official EPCIS schemas, for every test and every process a test starts (the demo, the daemon).
    os.environ.setdefault("LINESIDE_EPCIS_SCHEMAS", str(CORPORA / "gs1-EPCIS"))


@pytest.fixture
def corpora() -> Path:
    """The third-party test corpora beside the project; skips the test when they are absent."""
    if not CORPORA.is_dir():
        pytest.skip(f"third-party corpora not found at {CORPORA} (they sit beside the project checkout)")
    return CORPORA


@pytest.fixture(autouse=True)
async def _no_leaked_tasks() -> AsyncIterator[None]:
    """Fail the test when it leaves asyncio tasks running; cancel them so later tests stay clean."""
    before = asyncio.all_tasks()
    yield
    current = asyncio.current_task()
    leaked = [t for t in asyncio.all_tasks() - before if t is not current and not t.done()]
    if leaked:
        for task in leaked:
            task.cancel()
        await asyncio.gather(*leaked, return_exceptions=True)
        pytest.fail(f"test leaked {len(leaked)} task(s): {leaked!r}")


@pytest.fixture(autouse=True)
def _no_leaked_threads() -> object:
    """Fail the test when it leaves non-daemon threads, or our own (daemon) camera workers, running."""
    before = set(threading.enumerate())
    yield
    leaked = [
        t for t in set(threading.enumerate()) - before
        if t.is_alive() and (not t.daemon or t.name.startswith("camera ")) and not t.name.startswith("asyncio_")
    ]
    if leaked:
        pytest.fail(f"test leaked thread(s): {leaked!r}")


def open_fds() -> dict[str, str]:
    """This process's open file descriptors and what each refers to."""
    fds = {}
    for entry in Path("/proc/self/fd").iterdir():
        try:
            fds[entry.name] = str(entry.readlink())
        except OSError:  # the directory's own descriptor, gone by now
            continue
    return fds


@pytest.fixture(autouse=True)
async def _no_leaked_fds() -> AsyncIterator[None]:
    """Fail the test when it leaves file descriptors open (sockets, ptys, database files)."""
    before = open_fds()
    yield
    await asyncio.sleep(0)  # let close callbacks already scheduled run
    leaked = open_fds().keys() - before.keys()
    if leaked:
        pytest.fail(f"test leaked file descriptor(s): { {fd: open_fds().get(fd) for fd in leaked} }")
