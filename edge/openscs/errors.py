"""Errors of talking OPEN-SCS to the L3 pool server, free of asyncua so the API and the command line can map them."""

from __future__ import annotations

from typing import TYPE_CHECKING

from edge.errors import EdgeError

if TYPE_CHECKING:
    from edge.openscs.types import ReturnStatus


class OpenScsError(EdgeError):
    """Talking OPEN-SCS to the L3 pool server failed."""


class OpenScsUnavailableError(OpenScsError):
    """The server could not be reached, dropped the link or did not answer in time; a retry may succeed."""


class OpenScsSetupError(OpenScsError):
    """The server refused the line (login, certificate, security) or lacks what the line calls; fix and retry."""


class OpenScsAnswerError(OpenScsError):
    """The server's answer breaks OPC 30260 (outputs missing, too many serials, ...); nothing of it was taken."""


class OpenScsRefusedError(OpenScsError):
    """The server answered a call with a ReturnStatus other than NoError."""

    def __init__(self, method: str, status: ReturnStatus) -> None:
        super().__init__(f"the L3 pool server answered {method} with {status.title}")
        self.method = method
        self.status = status
