"""Driver lookup by configured name through the ``lineside.drivers`` entry-point group, importing lazily."""

from __future__ import annotations

import difflib
from functools import cache
from importlib.metadata import EntryPoint, entry_points

from drivers.base import Driver
from edge.errors import UnknownDriverError

ENTRY_POINT_GROUP = "lineside.drivers"


@cache
def _entry_points() -> dict[str, EntryPoint]:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def driver_names() -> list[str]:
    """Return the names of every installed driver, sorted."""
    return sorted(_entry_points())


def suggest(name: str, choices: list[str]) -> str:
    """Return ' (did you mean "x"?)' for the closest of choices, or '' when none is close."""
    close = difflib.get_close_matches(name, choices, n=1, cutoff=0.6)
    return f' (did you mean "{close[0]}"?)' if close else ""


@cache
def driver_class(name: str) -> type[Driver]:
    """Import and return the driver class registered as name; raise UnknownDriverError otherwise."""
    entry = _entry_points().get(name)
    if entry is None:
        names = driver_names()
        raise UnknownDriverError(
            f'unknown driver "{name}"{suggest(name, names)}; installed: {", ".join(names) or "none"}'
        )
    cls = entry.load()
    if not (isinstance(cls, type) and issubclass(cls, Driver)):
        raise UnknownDriverError(f'driver "{name}" ({entry.value}) is not a Driver subclass')
    return cls
