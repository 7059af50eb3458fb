"""Where plant messages go: an HTTP endpoint (TLS and auth as for EPCIS capture) or a file-drop folder.

Each message goes as one or more representations (JSON always; CSV for manifests, HTML for batch records when
the target asks for them). HTTP: one POST per representation to the target's URL, with the message id in
``Idempotency-Key``; the endpoint answers 201 when it stored it, 200 when it already held that message id in
that representation, so a re-send after a lost answer is recognised and never booked twice. File drop: one
file per representation, written atomically and idempotently by name (edge.sync.filedrop).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final, Literal, Protocol

from edge.plant.html import batch_record_html
from edge.plant.manifest import manifest_csv
from edge.sync.capture import (
    CaptureClient,
    CaptureFailed,
    CaptureResult,
    _auth_refused,
    _retry_after,
    _retryable_status,
    _upstream_says,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

    from edge.plant.outbox import Message
    from edge.sync.filedrop import FileDropTarget

Representation = Literal["json", "csv", "html"]

CONTENT_TYPES: Final[dict[Representation, str]] = {
    "json": "application/json", "csv": "text/csv; charset=utf-8", "html": "text/html; charset=utf-8",
}
MESSAGE_ID_HEADER: Final = "Idempotency-Key"
"""The header carrying the message id the endpoint dedupes on (the IETF idempotency-key header's name)."""


def representations(message: Message, wanted: Sequence[Representation]) -> list[tuple[Representation, bytes]]:
    """Return the representations of message that target wants and its kind has (JSON always first)."""
    out: list[tuple[Representation, bytes]] = [("json", message.body.encode())]
    if "csv" in wanted and message.kind in ("batch_manifest", "pallet_manifest"):
        out.append(("csv", manifest_csv(message.data).encode()))
    if "html" in wanted and message.kind == "batch_record":
        out.append(("html", batch_record_html({**message.data}).encode()))
    return out


class PlantSender(Protocol):
    """Delivers one plant message in every representation its target wants."""

    async def send(self, message: Message) -> CaptureResult:
        """Deliver message; CaptureFailed says whether to retry."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...


class HttpSender:
    """Posts each representation of a message to one URL, with the message id as the idempotency key."""

    def __init__(self, client: PlantClient, formats: Sequence[Representation]) -> None:
        self._client = client
        self._formats = tuple(formats)

    async def send(self, message: Message) -> CaptureResult:
        """POST every representation; stored when any was new, duplicate when the endpoint held them all."""
        outcomes = []
        for representation, document in representations(message, self._formats):
            result = await self._client.post(document, content_type=CONTENT_TYPES[representation],
                                             message_id=message.message_id, kind=message.kind,
                                             representation=representation)
            outcomes.append(result.outcome)
        outcome: Literal["stored", "duplicate"] = "stored" if "stored" in outcomes else "duplicate"
        return CaptureResult(outcome, None, f"{message.kind} {message.message_id}: {', '.join(outcomes)}")

    async def aclose(self) -> None:
        await self._client.aclose()


class FileDropPlantSender:
    """Writes each representation of a message as NAME.json, NAME.csv, NAME.html into a folder."""

    def __init__(self, target: FileDropTarget, formats: Sequence[Representation]) -> None:
        self._target = target
        self._formats = tuple(formats)

    async def send(self, message: Message) -> CaptureResult:
        """Write every file; stored when any was new, duplicate when the folder held them all already."""
        outcomes = []
        for representation, document in representations(message, self._formats):
            result = await self._target.deliver(f"{message.name}.{representation}", document)
            outcomes.append(result.outcome)
        outcome: Literal["stored", "duplicate"] = "stored" if "stored" in outcomes else "duplicate"
        return CaptureResult(outcome, None, f"{message.name}: {', '.join(outcomes)}")

    async def aclose(self) -> None:
        return None


class PlantClient(CaptureClient):
    """POSTs plant messages to one URL over the capture client's session, TLS, auth and error handling."""

    async def post(self, document: bytes, *, content_type: str, message_id: str, kind: str,
                   representation: str) -> CaptureResult:
        """Send one representation of a message; return stored (201) or duplicate (200); raise CaptureFailed."""
        headers = {"Content-Type": content_type, "Accept": "application/json, application/problem+json",
                   MESSAGE_ID_HEADER: message_id, "Lineside-Message-Kind": kind,
                   "Lineside-Representation": representation}
        what = f"{kind} {representation}"
        answer = await self._exchange(self._open(), "POST", self.base_url, headers=headers, body=document,
                                      what=what, timeout_s=self.timeouts.request_s)
        status = answer.status
        if status == 200:
            return CaptureResult("duplicate", None, f"the endpoint already held {message_id} ({representation})")
        if 200 <= status < 300:
            return CaptureResult("stored", None, f"the endpoint stored {message_id} ({representation}, {status})")
        if status in (401, 403):
            raise _auth_refused(answer, what)
        if _retryable_status(status):
            raise CaptureFailed(f"the endpoint answered {status} to the {what}{_upstream_says(answer)}; will retry",
                                retryable=True, status=status,
                                retry_after_s=_retry_after(answer.headers.get("Retry-After")))
        if 300 <= status < 400:
            raise CaptureFailed(f"the endpoint redirected the {what} ({status}); configure the final URL",
                                retryable=False, status=status)
        raise CaptureFailed(f"the endpoint refused the {what} with {status}{_upstream_says(answer)}",
                            retryable=False, status=status)
