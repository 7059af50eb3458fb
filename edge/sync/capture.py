"""EPCIS 2.0 REST capture: send one document, follow its capture job, and say exactly what became of it.

The delivery loop calls `CaptureClient.capture` once per attempt and acts on the outcome:

- `CaptureResult` ``stored``: upstream answered ``202`` and the capture job finished with ``success``;
- `CaptureResult` ``duplicate``: upstream already holds every event of the document (a ``409`` naming all of
  them, or a finished job whose only errors are those duplicates). Event IDs are stable, so this is delivered;
- `CaptureFailed` with ``retryable``: the link failed (refused, reset, dropped, timed out), upstream is busy
  or broken (``5xx``, ``408``, ``429``), or the job was still running at its deadline. Re-sending is safe:
  whatever was stored comes back as a duplicate;
- `CaptureFailed` with ``auth``: credentials refused (``401``/``403``, or our client certificate rejected);
  nothing helps until an operator fixes them;
- `CaptureFailed` otherwise: refused for good (other ``4xx``, a job that finished with errors, only part of
  the document already held, a malformed answer); the reason says what was wrong.

Every capture is sent with ``GS1-Capture-Error-Behaviour: rollback``: a job either stores the whole document
or none of it, which is what lets an outcome stand for the whole document.
"""

from __future__ import annotations

import asyncio
import base64
import email.utils
import errno
import json
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final, Literal

import aiohttp
import structlog
from yarl import URL

from edge.errors import EdgeError

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from pathlib import Path

__all__ = [
    "Auth",
    "BasicCredentials",
    "BearerToken",
    "CaptureClient",
    "CaptureFailed",
    "CaptureResult",
    "CaptureTimeouts",
    "TlsSetupError",
    "make_ssl_context",
]

_LOG = structlog.get_logger("lineside.sync")

Sleep = Callable[[float], Awaitable[None]]
Clock = Callable[[], float]

CONNECT_TIMEOUT_S: Final = 10.0
"""TCP and TLS handshake with upstream. Well under a second on a site network; 10 s tolerates a slow proxy or a
DNS retry, while an unreachable repository still goes back to the delivery loop's backoff quickly."""
REQUEST_TIMEOUT_S: Final = 120.0
"""The capture POST from its first byte to the whole answer read. A batch document of tens of megabytes over a
few-Mbit/s site uplink takes about a minute; twice that before a silent peer is given up on."""
POLL_TIMEOUT_S: Final = 30.0
"""One poll of a capture job (a small GET) to its whole answer: a repository that needs longer is in trouble,
and the attempt is better retried later than left waiting."""
POLL_INTERVAL_S: Final = 1.0
"""Between polls of a running capture job: a repository stores a batch in seconds, and one small GET a second
costs it nothing."""
JOB_DEADLINE_S: Final = 300.0
"""A capture job still running this long after it was accepted is left to the next attempt; re-sending is safe
and frees the delivery loop for the other documents waiting."""
MAX_ANSWER_BYTES: Final = 1 << 20
"""Most bytes of an answer read. Capture answers and job documents are small; an error page beyond this is
cut, and a job document beyond this is malformed."""
MAX_CONNECTIONS: Final = 4
"""Open connections to upstream at most: a delivery loop sends one document at a time, polls are short."""
MAX_RETRY_AFTER_S: Final = 3600.0
"""A Retry-After longer than an hour is taken as an hour: the delivery loop's own cap decides beyond that."""

EPCIS_VERSION: Final = "2.0.0"
CBV_VERSION: Final = "2.0.0"
DUPLICATE_IDS_MEMBER: Final = "eventIDs"
"""Member of an RFC 7807 problem (a 409, or a capture job error) listing the event IDs upstream already holds."""
ALREADY_EXISTS: Final = "epcisException:ResourceAlreadyExistsException"
_ACCEPT_JSON: Final = {"Accept": "application/json"}
_JSON_TYPES: Final = ("application/json", "application/problem+json")
_SHOWN_IDS: Final = 3
"""Event IDs quoted in a reason before the rest is counted: a reason is a sentence, not a listing."""
_SHOWN_TEXT: Final = 300
"""Characters of upstream's own words quoted in a reason."""


@dataclass(frozen=True, slots=True)
class CaptureTimeouts:
    """The capture client's timeouts in seconds (each default is a named constant with its reason)."""

    connect_s: float = CONNECT_TIMEOUT_S
    request_s: float = REQUEST_TIMEOUT_S
    poll_s: float = POLL_TIMEOUT_S
    poll_interval_s: float = POLL_INTERVAL_S
    job_deadline_s: float = JOB_DEADLINE_S

    def __post_init__(self) -> None:
        for name in ("connect_s", "request_s", "poll_s", "poll_interval_s", "job_deadline_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"capture timeout {name} must be positive, got {getattr(self, name)!r}")


@dataclass(frozen=True, slots=True)
class BearerToken:
    """An OAuth-style bearer token sent as ``Authorization: Bearer ...``; never printed."""

    token: str = field(repr=False)

    def __post_init__(self) -> None:
        if not self.token or any(c in self.token for c in "\r\n ") or not self.token.isprintable():
            raise ValueError("a bearer token must be non-empty printable text without spaces or line breaks")

    def header(self) -> str:
        """Return the Authorization header value."""
        return f"Bearer {self.token}"


@dataclass(frozen=True, slots=True)
class BasicCredentials:
    """HTTP basic credentials; the password is never printed."""

    user: str
    password: str = field(repr=False)

    def __post_init__(self) -> None:
        if not self.user or ":" in self.user or not (self.user + self.password).isprintable():
            raise ValueError("a basic-auth user must be non-empty printable text without ':'")

    def header(self) -> str:
        """Return the Authorization header value."""
        return "Basic " + base64.b64encode(f"{self.user}:{self.password}".encode()).decode("ascii")


Auth = BearerToken | BasicCredentials


@dataclass(frozen=True, slots=True)
class CaptureResult:
    """A delivered document: upstream stored it now, or already held every one of its events."""

    outcome: Literal["stored", "duplicate"]
    capture_id: str | None
    """Upstream's capture job, when there was one."""
    detail: str
    """A sentence for logs and the HMI."""


class CaptureFailed(EdgeError):  # noqa: N818 - the delivery loop's agreed name: an outcome, not a fault of ours
    """A capture attempt that delivered nothing for sure; ``retryable`` and ``auth`` tell the loop what to do."""

    def __init__(
        self,
        reason: str,
        *,
        retryable: bool,
        auth: bool = False,
        status: int | None = None,
        retry_after_s: float | None = None,
        capture_id: str | None = None,
    ) -> None:
        super().__init__(reason)
        self.reason: Final = reason
        """What happened, as a sentence naming upstream's words where it gave any."""
        self.retryable: Final = retryable
        """True when the same document may succeed later without anyone changing anything."""
        self.auth: Final = auth
        """True when upstream refused our credentials (permanent until an operator fixes them)."""
        self.status: Final = status
        """The HTTP status of the answer that decided, or None (no answer, or not HTTP)."""
        self.retry_after_s: Final = retry_after_s
        """Upstream's Retry-After, when it gave one: the earliest sensible next attempt."""
        self.capture_id: Final = capture_id

    def __repr__(self) -> str:
        return (
            f"CaptureFailed({self.reason!r}, retryable={self.retryable}, auth={self.auth}, status={self.status})"
        )


class TlsSetupError(EdgeError):
    """A CA bundle, client certificate or key cannot be used; the message names the file and the cause."""


def make_ssl_context(ca_file: Path | None, client_cert: Path | None, client_key: Path | None) -> ssl.SSLContext:
    """Return a TLS 1.2+ client context that verifies upstream (ca_file, else the system's CAs).

    client_cert may hold its key too (then client_key is None). Raise TlsSetupError naming the file at fault.
    """
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if ca_file is not None:
        _check_readable(ca_file, "CA bundle")
        try:
            context.load_verify_locations(cafile=ca_file)
        except ssl.SSLError as err:
            raise TlsSetupError(f"CA bundle {ca_file}: not PEM certificates ({err.reason or err})") from err
        except OSError as err:
            raise TlsSetupError(f"CA bundle {ca_file}: cannot read it: {err.strerror or err}") from err
    if client_cert is None:
        if client_key is not None:
            raise TlsSetupError(f"client key {client_key} given without a client certificate")
        return context
    _check_readable(client_cert, "client certificate")
    if client_key is not None:
        _check_readable(client_key, "client key")
    try:
        # An explicit password callback: OpenSSL would otherwise prompt on the terminal for an encrypted key.
        context.load_cert_chain(client_cert, client_key, password=_no_key_password)
    except _EncryptedKeyError as err:
        raise TlsSetupError(
            f"client key {client_key or client_cert}: encrypted; the daemon needs an unencrypted key file"
        ) from err
    except (ssl.SSLError, OSError) as err:
        reason = getattr(err, "reason", None) or err
        raise TlsSetupError(
            f"client certificate {client_cert}"
            + (f" with key {client_key}" if client_key is not None else "")
            + f": not a PEM certificate and its matching private key ({reason})"
        ) from err
    return context


def _check_readable(path: Path, what: str) -> None:
    try:
        with path.open("rb"):
            pass
    except OSError as err:
        raise TlsSetupError(f"{what} {path}: cannot read it: {err.strerror or err}") from err


class _EncryptedKeyError(Exception):
    pass


def _no_key_password() -> str:
    raise _EncryptedKeyError


@dataclass(frozen=True, slots=True)
class _Answer:
    status: int
    headers: Mapping[str, str]
    body: bytes
    complete: bool
    """False when the body was cut at MAX_ANSWER_BYTES."""


@dataclass(frozen=True, slots=True)
class _Job:
    running: bool
    success: bool | None
    errors: list[dict[str, Any]]
    error_file: str | None


class CaptureClient:
    """Sends EPCIS documents to one repository's ``{base}/capture`` and follows each capture job to its end.

    Owns one HTTP session (opened on first use, closed by aclose). Safe to call concurrently.
    """

    def __init__(
        self,
        base_url: str,
        ssl_context: ssl.SSLContext | None = None,
        *,
        auth: Auth | None = None,
        timeouts: CaptureTimeouts | None = None,
        epcis_version: str | None = EPCIS_VERSION,
        cbv_version: str | None = CBV_VERSION,
        sleep: Sleep = asyncio.sleep,
        clock: Clock = time.monotonic,
    ) -> None:
        base = URL(base_url)
        if base.scheme not in ("http", "https") or not base.host:
            raise ValueError(f"upstream base URL must be http(s)://host[:port][/path], got {base_url!r}")
        if base.user is not None or base.password is not None:
            raise ValueError("upstream credentials belong in auth, not in the base URL (URLs end up in logs)")
        if base.query_string or base.fragment:
            raise ValueError(f"upstream base URL must not have a query or fragment: {base_url!r}")
        prefix = base.path.rstrip("/")
        self.base_url: Final = base.with_path(prefix or "/")
        self.capture_url: Final = base.with_path(f"{prefix}/capture")
        self.timeouts: Final = timeouts or CaptureTimeouts()
        self._ssl = ssl_context
        self._auth = auth
        self._versions = {"GS1-EPCIS-Version": epcis_version, "GS1-CBV-Version": cbv_version}
        self._sleep = sleep
        self._clock = clock
        self._session: aiohttp.ClientSession | None = None
        self._closed = False

    async def capture(self, document: bytes, content_type: str, *, event_ids: Sequence[str]) -> CaptureResult:
        """Send document (all of whose event IDs the caller names) and follow its job; raise CaptureFailed."""
        session = self._open()
        ids = tuple(event_ids)
        posted = await self._post(session, document, content_type, ids)
        if isinstance(posted, CaptureResult):
            return posted
        job_url, capture_id = posted
        return await self._follow(session, job_url, capture_id, ids)

    async def aclose(self) -> None:
        """Close the session and its connections; idempotent. capture() afterwards is a programming error."""
        self._closed = True
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    def _open(self) -> aiohttp.ClientSession:
        if self._closed:
            raise RuntimeError("capture client is closed")
        if self._session is None:
            headers = {"User-Agent": "lineside"}
            if self._auth is not None:
                headers["Authorization"] = self._auth.header()
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=self._ssl if self._ssl is not None else True, limit=MAX_CONNECTIONS),
                # Each exchange runs under its own asyncio.timeout; aiohttp only bounds the handshake.
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=self.timeouts.connect_s),
                headers=headers,
                raise_for_status=False,
            )
        return self._session

    async def _post(
        self, session: aiohttp.ClientSession, document: bytes, content_type: str, ids: tuple[str, ...]
    ) -> CaptureResult | tuple[URL, str]:
        headers = {
            "Content-Type": content_type,
            "Accept": "application/json, application/problem+json",
            "GS1-Capture-Error-Behaviour": "rollback",
        }
        headers.update({k: v for k, v in self._versions.items() if v is not None})
        answer = await self._exchange(
            session,
            "POST",
            self.capture_url,
            headers=headers,
            body=document,
            what="capture",
            timeout_s=self.timeouts.request_s,
        )
        _LOG.debug("capture answered", url=str(self.capture_url), status=answer.status, events=len(ids))
        status = answer.status
        if status == 202:
            return self._job_location(answer)
        if status == 409:
            return CaptureResult("duplicate", None, _judge_409(answer, ids))
        if status in (401, 403):
            raise _auth_refused(answer, "capture")
        if _retryable_status(status):
            raise CaptureFailed(
                f"upstream answered {status} to the capture{_upstream_says(answer)}; will retry",
                retryable=True,
                status=status,
                retry_after_s=_retry_after(answer.headers.get("Retry-After")),
            )
        if 300 <= status < 400:
            raise CaptureFailed(
                f"upstream redirected the capture ({status}) to {answer.headers.get('Location', 'nowhere')!r}; "
                "configure the final URL as the upstream base",
                retryable=False,
                status=status,
            )
        if status == 413:
            limits = ", ".join(
                f"{h}: {answer.headers[h]}"
                for h in ("GS1-EPCIS-Capture-Limit", "GS1-EPCIS-Capture-File-Size-Limit")
                if h in answer.headers
            )
            raise CaptureFailed(
                f"upstream refused the document as too large (413{', ' + limits if limits else ''}); "
                f"it must be sent in smaller parts{_upstream_says(answer)}",
                retryable=False,
                status=status,
            )
        if 200 <= status < 300:
            raise CaptureFailed(
                f"upstream answered {status} to the capture, not 202 with a capture job: whether it stored the "
                f"document cannot be told (a proxy or login page in the way?){_upstream_says(answer)}",
                retryable=False,
                status=status,
            )
        raise CaptureFailed(
            f"upstream refused the capture with {status}{_upstream_says(answer)}", retryable=False, status=status
        )

    def _job_location(self, answer: _Answer) -> tuple[URL, str]:
        location = answer.headers.get("Location", "").strip()
        if not location:
            raise CaptureFailed(
                "malformed answer from upstream: 202 without a Location header naming the capture job",
                retryable=False,
                status=202,
            )
        try:
            job_url = self.capture_url.join(URL(location))
            origin = job_url.origin()
        except ValueError as err:
            raise CaptureFailed(
                f"malformed answer from upstream: 202 with an unusable Location {location[:_SHOWN_TEXT]!r}",
                retryable=False,
                status=202,
            ) from err
        if origin != self.capture_url.origin():
            # Our credentials go with every request: never to a server other than the one configured.
            raise CaptureFailed(
                f"upstream's capture job is on another server ({origin}); not following it with our "
                "credentials",
                retryable=False,
                status=202,
            )
        capture_id = job_url.name
        if not capture_id or job_url.path == self.capture_url.path:
            raise CaptureFailed(
                f"malformed answer from upstream: Location {location[:_SHOWN_TEXT]!r} names no capture job",
                retryable=False,
                status=202,
            )
        return job_url, capture_id

    async def _follow(
        self, session: aiohttp.ClientSession, job_url: URL, capture_id: str, ids: tuple[str, ...]
    ) -> CaptureResult:
        deadline = self._clock() + self.timeouts.job_deadline_s
        polls = 0
        while True:
            answer = await self._exchange(
                session,
                "GET",
                job_url,
                headers=_ACCEPT_JSON,
                body=None,
                what=f"capture job {capture_id}",
                timeout_s=self.timeouts.poll_s,
                capture_id=capture_id,
            )
            polls += 1
            job = self._job(answer, capture_id)
            if not job.running:
                break
            if self._clock() >= deadline:
                raise CaptureFailed(
                    f"capture job {capture_id} still running after {self.timeouts.job_deadline_s:g} s "
                    f"({_count(polls, 'poll')}); will re-send (events already stored come back as duplicates)",
                    retryable=True,
                    capture_id=capture_id,
                )
            await self._sleep(self.timeouts.poll_interval_s)
        if job.success:
            _LOG.debug("capture job succeeded", capture_id=capture_id, polls=polls, events=len(ids))
            return CaptureResult(
                "stored", capture_id, f"capture job {capture_id} stored the document ({_count(len(ids), 'event')})"
            )
        duplicates = _duplicate_ids(job.errors)
        if duplicates is not None:
            detail = _judge_duplicates(duplicates, ids, f"capture job {capture_id}", capture_id)
            return CaptureResult("duplicate", capture_id, detail)
        raise CaptureFailed(
            f"capture job {capture_id} finished without storing the document: {_job_errors_text(job)}",
            retryable=False,
            capture_id=capture_id,
        )

    def _job(self, answer: _Answer, capture_id: str) -> _Job:
        status = answer.status
        what = f"capture job {capture_id}"
        if status in (401, 403):
            raise _auth_refused(answer, what, capture_id)
        if _retryable_status(status) or status == 404:
            # A job upstream no longer knows (404) is retried too: re-sending stores it or finds it stored.
            raise CaptureFailed(
                f"upstream answered {status} to a poll of {what}{_upstream_says(answer)}; will re-send",
                retryable=True,
                status=status,
                retry_after_s=_retry_after(answer.headers.get("Retry-After")),
                capture_id=capture_id,
            )
        if status != 200:
            raise CaptureFailed(
                f"upstream answered {status} to a poll of {what}{_upstream_says(answer)}",
                retryable=False,
                status=status,
                capture_id=capture_id,
            )

        def malformed(problem: str) -> CaptureFailed:
            return CaptureFailed(
                f"malformed answer from upstream: {what}: {problem}",
                retryable=False,
                status=status,
                capture_id=capture_id,
            )

        if not answer.complete:
            raise malformed(f"the job document is larger than {MAX_ANSWER_BYTES} bytes")
        try:
            doc = json.loads(answer.body)
        except ValueError:
            raise malformed(f"the job document is not JSON: {_quote(answer.body)}") from None
        if not isinstance(doc, dict):
            raise malformed(f"the job document is a JSON {type(doc).__name__}, not an object")
        stated_id = doc.get("captureID")
        if stated_id is not None and stated_id != capture_id:
            raise malformed(f"the job document is of capture {str(stated_id)[:_SHOWN_TEXT]!r}")
        running = doc.get("running")
        if not isinstance(running, bool):
            raise malformed("'running' is missing or not true/false")
        success = doc.get("success")
        if not running and not isinstance(success, bool):
            raise malformed("the job finished but 'success' is missing or not true/false")
        errors = doc.get("errors", [])
        if not isinstance(errors, list) or not all(isinstance(e, dict) for e in errors):
            raise malformed("'errors' is not a list of problem objects")
        error_file = doc.get("errorFile")
        return _Job(
            running,
            success if isinstance(success, bool) else None,
            errors,
            error_file if isinstance(error_file, str) else None,
        )

    async def _exchange(
        self,
        session: aiohttp.ClientSession,
        method: str,
        url: URL,
        *,
        headers: dict[str, str],
        body: bytes | None,
        what: str,
        timeout_s: float,
        capture_id: str | None = None,
    ) -> _Answer:
        host = url.host_port_subcomponent or url.host
        try:
            async with asyncio.timeout(timeout_s):
                return await self._request(session, method, url, headers, body)
        except TimeoutError as err:
            raise CaptureFailed(
                f"{what}: no answer from {host} within {timeout_s:g} s; will retry",
                retryable=True,
                capture_id=capture_id,
            ) from err
        except aiohttp.ClientConnectorCertificateError as err:
            raise CaptureFailed(
                f"{what}: {host}'s TLS certificate is not trusted ({err.certificate_error}); "
                "check the CA bundle and the host name",
                retryable=False,
                capture_id=capture_id,
            ) from err
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, OSError) as err:
            if _certificate_refused(err):
                raise CaptureFailed(
                    f"{what}: {host} refused our TLS client certificate ({_describe(err)}); "
                    "an operator must fix the client certificate",
                    retryable=False,
                    auth=True,
                    capture_id=capture_id,
                ) from err
            if isinstance(err, aiohttp.ClientConnectorError):
                happened = f"cannot connect to {host} ({_describe(err.os_error)})"
            else:
                happened = f"connection to {host} lost before the answer ({_describe(err)})"
            if url.scheme == "https" and _reset(err):
                # A server refusing our client certificate mostly just resets the connection (the TLS alert is
                # lost with it), which looks like a network fault: say so, as it will not cure itself.
                happened += "; if this persists, the server may be refusing our TLS client certificate"
            raise CaptureFailed(f"{what}: {happened}; will retry", retryable=True, capture_id=capture_id) from err
        # Not chained (from None): these carry the request, our Authorization header included.
        except aiohttp.ClientResponseError as err:
            message = " ".join(str(err.message).split())[:_SHOWN_TEXT]
            raise CaptureFailed(
                f"malformed answer from upstream: {what}: {host} did not answer in HTTP ({message})",
                retryable=False,
                capture_id=capture_id,
            ) from None
        except aiohttp.ClientError as err:
            raise CaptureFailed(
                f"{what}: request to {host} failed ({type(err).__name__})", retryable=False, capture_id=capture_id
            ) from None

    async def _request(
        self, session: aiohttp.ClientSession, method: str, url: URL, headers: dict[str, str], body: bytes | None
    ) -> _Answer:
        async with session.request(method, url, headers=headers, data=body, allow_redirects=False) as resp:
            data, complete = await _read_bounded(resp)
            return _Answer(resp.status, resp.headers, data, complete)


async def _read_bounded(resp: aiohttp.ClientResponse) -> tuple[bytes, bool]:
    """Return at most MAX_ANSWER_BYTES of the body, and whether that is all of it."""
    data = bytearray()
    async for chunk in resp.content.iter_chunked(64 * 1024):
        data += chunk
        if len(data) > MAX_ANSWER_BYTES:
            return bytes(data[:MAX_ANSWER_BYTES]), False
    return bytes(data), True


def _retryable_status(status: int) -> bool:
    return status in (408, 429) or 500 <= status < 600


def _auth_refused(answer: _Answer, what: str, capture_id: str | None = None) -> CaptureFailed:
    meaning = "credentials refused" if answer.status == 401 else "access forbidden to these credentials"
    return CaptureFailed(
        f"upstream answered {answer.status} to the {what} ({meaning}){_upstream_says(answer)}; "
        "an operator must fix the upstream credentials",
        retryable=False,
        auth=True,
        status=answer.status,
        capture_id=capture_id,
    )


# OpenSSL alert names a server sends when it refuses our client certificate (or our lack of one).
_CERT_ALERTS: Final = (
    "CERTIFICATE_REQUIRED",
    "BAD_CERTIFICATE",
    "UNKNOWN_CA",
    "CERTIFICATE_UNKNOWN",
    "CERTIFICATE_REVOKED",
    "CERTIFICATE_EXPIRED",
    "ACCESS_DENIED",
)


def _certificate_refused(err: BaseException) -> bool:
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ssl.SSLError) and any(a in str(current.reason) for a in _CERT_ALERTS):
            return True
        current = getattr(current, "os_error", None) or current.__cause__ or current.__context__
    return False


def _reset(err: BaseException) -> bool:
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ConnectionResetError) or getattr(current, "errno", None) == errno.ECONNRESET:
            return True
        current = getattr(current, "os_error", None) or current.__cause__ or current.__context__
    return False


def _describe(err: BaseException) -> str:
    text = str(err).strip()
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def _retry_after(value: str | None) -> float | None:
    """Return a Retry-After (delta-seconds or HTTP date) in seconds from now, capped; None if absent or unusable."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), MAX_RETRY_AFTER_S)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return min(max((when - datetime.now(UTC)).total_seconds(), 0.0), MAX_RETRY_AFTER_S)


def _judge_409(answer: _Answer, ids: tuple[str, ...]) -> str:
    problem = _json_object(answer)
    named = None if problem is None else problem.get(DUPLICATE_IDS_MEMBER)
    if not isinstance(named, list) or not all(isinstance(i, str) for i in named):
        raise CaptureFailed(
            "upstream answered 409 (already exists) without listing the event IDs it holds "
            f"('{DUPLICATE_IDS_MEMBER}'), so whether all {len(ids)} events of this document are stored cannot be "
            f"told{_upstream_says(answer)}",
            retryable=False,
            status=409,
        )
    return _judge_duplicates(named, ids, "upstream (409)", None)


def _judge_duplicates(named: Sequence[str], ids: tuple[str, ...], source: str, capture_id: str | None) -> str:
    """Return the detail of a document upstream holds entirely; raise CaptureFailed for anything less."""
    status = 409 if capture_id is None else None
    if not ids:
        raise CaptureFailed(
            f"{source} reports duplicates but the caller named no event IDs for this document, so they cannot "
            "be checked",
            retryable=False,
            status=status,
            capture_id=capture_id,
        )
    ours = set(ids)
    foreign = [i for i in dict.fromkeys(named) if i not in ours]
    if foreign:
        raise CaptureFailed(
            f"{source} reports as duplicates {_count(len(foreign), 'event ID')} that are not in this document "
            f"({_some(foreign)}); not counting it as delivered",
            retryable=False,
            status=status,
            capture_id=capture_id,
        )
    missing = [i for i in dict.fromkeys(ids) if i not in set(named)]
    if missing:
        raise CaptureFailed(
            f"{source} already holds {len(ours) - len(missing)} of this document's {len(ours)} events and stored "
            f"none of it: {_count(len(missing), 'event')} not delivered ({_some(missing)}); the document must be "
            "re-sent without the events upstream holds",
            retryable=False,
            status=status,
            capture_id=capture_id,
        )
    return f"{source}: upstream already holds all {len(ours)} events of this document"


def _duplicate_ids(errors: list[dict[str, Any]]) -> list[str] | None:
    """Return the event IDs named by a finished job's errors when every error is a duplicate; else None."""
    if not errors:
        return None
    named: list[str] = []
    for error in errors:
        ids = error.get(DUPLICATE_IDS_MEMBER)
        duplicate = error.get("type") == ALREADY_EXISTS or error.get("status") == 409
        if not duplicate or not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            return None
        named += ids
    return named


def _job_errors_text(job: _Job) -> str:
    if not job.errors:
        tail = f"; see {job.error_file[:_SHOWN_TEXT]}" if job.error_file else ""
        return f"success is false and upstream listed no errors{tail}"
    shown = "; ".join(_problem_line(e) for e in job.errors[:_SHOWN_IDS])
    more = f" (and {_count(len(job.errors) - _SHOWN_IDS, 'more error')})" if len(job.errors) > _SHOWN_IDS else ""
    return shown + more


def _problem_line(problem: Mapping[str, Any]) -> str:
    parts = [str(problem[k]) for k in ("title", "detail") if isinstance(problem.get(k), str | int) and problem[k]]
    if not parts and isinstance(problem.get("type"), str):
        parts = [problem["type"]]
    text = ": ".join(parts) or "an error without title or detail"
    return text[:_SHOWN_TEXT]


def _json_object(answer: _Answer) -> dict[str, Any] | None:
    if not answer.complete:
        return None
    try:
        doc = json.loads(answer.body)
    except ValueError:
        return None
    return doc if isinstance(doc, dict) else None


def _upstream_says(answer: _Answer) -> str:
    """Return ': <upstream's problem title and detail>' or a quote of a non-JSON body, or '' for none."""
    if not answer.body.strip():
        return ""
    problem = _json_object(answer)
    if problem is not None:
        return f": {_problem_line(problem)}"
    kind = answer.headers.get("Content-Type", "").split(";")[0].strip()
    if kind in _JSON_TYPES:
        return f": malformed answer ({kind} that is not a JSON object: {_quote(answer.body)})"
    return f": {_quote(answer.body)}"


def _quote(body: bytes) -> str:
    text = body[:_SHOWN_TEXT].decode("utf-8", "replace")
    cut = "…" if len(body) > _SHOWN_TEXT else ""
    return repr(text) + cut


def _some(ids: Sequence[str]) -> str:
    shown = ", ".join(ids[:_SHOWN_IDS])
    return shown + (f" and {len(ids) - _SHOWN_IDS} more" if len(ids) > _SHOWN_IDS else "")


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"
