"""Fixtures of the driver tests."""

from __future__ import annotations

import pytest


@pytest.fixture(params=["tcp", "pty"])
def transport(request: pytest.FixtureRequest) -> str:
    """The kind of link a simulator serves: a loopback socket, or a pseudo-terminal pair."""
    return str(request.param)
