"""A simulated EPCIS 2.0 repository: the REST capture interface, with faults on command.

What it serves (an aiohttp application, on loopback or any address, TLS when given a server context):

- ``POST /capture`` takes an EPCISDocument (or EPCISQueryDocument) as ``application/ld+json``,
  ``application/json`` or ``application/xml`` (EPCIS 2.0 XML and 1.2 XML). The document is validated
  (`Validator`), its events identified (`EventIdExtractor`: the eventID the document states, else the event
  hash) and stored all or nothing: if any event ID is already held, nothing is stored and the answer is
  ``409`` with a problem body whose ``eventIDs`` lists the duplicates (or, with ``duplicates="job"``, a capture
  job that finishes with that problem as its error, as asynchronous repositories report it). Otherwise the
  answer is ``202`` with ``Location: /capture/{captureID}``.
- ``GET /capture/{captureID}`` and ``GET /capture`` (paged: ``perPage``, ``nextPageToken``) serve capture
  jobs; ``OPTIONS /capture`` the capture settings (``GS1-EPCIS-Capture-Limit`` and friends).
- For tests, the demo and people: ``GET /events`` (stored events with their IDs, in order; ``offset`` and
  ``limit``), ``GET|POST|DELETE /faults`` and ``GET /stats``. These are never faulted nor authenticated.

A capture's fate is decided when it is posted: its events are stored (or not) at once, and the job merely
reports it, after ``JobKeepsRunning`` polls if that fault is set. Faults are queued in `UpstreamFaults`
(also over ``POST /faults``, e.g. ``{"kind": "status", "status": 500, "count": 2}``) and each is used up by
the next request it applies to: a capture (``on="capture"``) or a job poll (``on="poll"``).

The default validator is ``edge.epcis.validate`` with the schemas it finds, resolved at the first capture;
without it or its schemas, a structural check stands in (with a warning). The default event identifier is
``edge.epcis.hashing.document_events_with_ids``, likewise, with a stand-in hash that is stable but is not the
CBV event hash. Both are injectable.

With a storage directory (``storage=``), the repository survives its process: each capture's stored events are
appended to ``events.jsonl`` there (one JSON line per event, then one line closing the capture) and fsynced
before the capture is answered, and the file is read back at start (`read_event_log`). A capture whose closing
line is missing (the process was killed while writing it) was never answered, so it is dropped.

Standalone: ``python -m simulators.epcis_upstream --port 8090 [--token T] [--cert C --key K]``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import hmac
import importlib
import json
import os
import signal
import ssl
import sys
from collections import Counter, OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Literal, Self, cast

import structlog
from aiohttp import web
from lxml import etree

from edge.log import configure as configure_logging
from simulators.base import LOOPBACK

__all__ = [
    "EVENTS_FILE",
    "DropConnection",
    "EpcisUpstream",
    "ErrorStatus",
    "EventIdExtractor",
    "EventLog",
    "GarbageAnswer",
    "Hang",
    "JobFails",
    "JobKeepsRunning",
    "RefuseCredentials",
    "RejectDocument",
    "SlowAnswer",
    "StoredEvent",
    "Unavailable",
    "UpstreamFaults",
    "Validator",
    "basic_event_ids",
    "fault_from_json",
    "read_event_log",
    "server_ssl_context",
    "structural_problems",
]

Validator = Callable[[bytes], list[str]]
"""Problems found in a document (empty: valid)."""
EventIdExtractor = Callable[[bytes], list[tuple[str | None, str]]]
"""Per event in document order: the eventID the document states (or None) and the event hash."""
Sleep = Callable[[float], Awaitable[None]]

DEFAULT_MAX_DOCUMENT_BYTES: Final = 64 << 20
"""Largest document taken (413 beyond): a 100,000-unit batch in JSON-LD is some tens of megabytes."""
DEFAULT_MAX_EVENTS: Final = 5_000_000
"""Events held in memory at most; a capture that would pass it is answered 507 (a full repository)."""
MAX_JOBS: Final = 10_000
"""Capture jobs remembered; the oldest are forgotten first (their GET then answers 404)."""
MAX_PAGE: Final = 10_000
"""Most items one GET /capture or GET /events returns."""
DEFAULT_PAGE: Final = 100
MAX_LISTED_PROBLEMS: Final = 20
"""Validation problems quoted in a 400; the count says how many there were."""
START_TIMEOUT_S: Final = 10.0
"""Binding a loopback port takes microseconds; this only bounds a host name whose lookup hangs."""
SHUTDOWN_GRACE_S: Final = 1.0
"""Requests in flight at aclose get this long to finish before aiohttp cancels them (hangs are released first)."""

EPCIS_VERSION: Final = "2.0.0"
CBV_VERSION: Final = "2.0.0"
BEHAVIOURS: Final = ("rollback", "proceed", "all")
"""GS1-Capture-Error-Behaviour values; "proceed" and "all" both store what they can."""
DUPLICATE_IDS_MEMBER: Final = "eventIDs"
"""Problem member listing the event IDs already held (a 409, or a capture job error)."""

_JSON_TYPES: Final = frozenset({"application/ld+json", "application/json"})
_XML_TYPES: Final = frozenset({"application/xml", "text/xml"})
_EVENT_TYPES: Final = frozenset(
    {"ObjectEvent", "AggregationEvent", "TransactionEvent", "TransformationEvent", "AssociationEvent"}
)
_EPCIS_NS: Final = ("urn:epcglobal:epcis:xsd:2", "urn:epcglobal:epcis:xsd:1")
_QUERY_NS: Final = ("urn:epcglobal:epcis-query:xsd:2", "urn:epcglobal:epcis-query:xsd:1")
_STAND_IN_HASH_PREFIX: Final = "ni:///sha-256;"
_STAND_IN_HASH_SUFFIX: Final = "?ver=simulator"
"""Marks a stand-in hash: stable for the same event bytes, but not the CBV 2.0 event hash."""

_LOG = structlog.get_logger("lineside.simulator", simulator="EpcisUpstream")

# ---------------------------------------------------------------------------------------------------------
# Faults: plain values, queued; nothing here knows HTTP.


@dataclass(frozen=True, slots=True)
class ErrorStatus:
    """Answer this status (a 4xx or 5xx) with an EPCIS problem body."""

    status: int = 500

    def __post_init__(self) -> None:
        if not 400 <= self.status <= 599:
            raise ValueError(f"an error status is 400..599, got {self.status}")


@dataclass(frozen=True, slots=True)
class Unavailable:
    """Answer 503 with Retry-After."""

    retry_after_s: int = 1

    def __post_init__(self) -> None:
        if self.retry_after_s < 0:
            raise ValueError(f"Retry-After cannot be negative: {self.retry_after_s}")


@dataclass(frozen=True, slots=True)
class Hang:
    """Never answer: the request waits until the simulator closes, then the connection is cut."""


@dataclass(frozen=True, slots=True)
class SlowAnswer:
    """Wait this long, then handle the request normally."""

    delay_s: float

    def __post_init__(self) -> None:
        if self.delay_s < 0:
            raise ValueError(f"a delay cannot be negative: {self.delay_s}")


@dataclass(frozen=True, slots=True)
class DropConnection:
    """Cut the connection mid-request: after the headers and the first bytes of the body, no answer."""


@dataclass(frozen=True, slots=True)
class RefuseCredentials:
    """Answer 401 whatever credentials came."""


@dataclass(frozen=True, slots=True)
class RejectDocument:
    """Answer 400 ValidationException as if the document were malformed."""


@dataclass(frozen=True, slots=True)
class GarbageAnswer:
    """Answer bytes that are not JSON: a capture gets 202 without Location, a poll gets 200 (unless status)."""

    status: int | None = None


@dataclass(frozen=True, slots=True)
class JobFails:
    """Accept the capture (202) but store nothing; the job finishes with success false and an error."""


@dataclass(frozen=True, slots=True)
class JobKeepsRunning:
    """The next capture's job reports running for this many polls before it tells its result."""

    polls: int = 1

    def __post_init__(self) -> None:
        if self.polls < 1:
            raise ValueError(f"a job keeps running for at least one poll, got {self.polls}")


HttpFault = ErrorStatus | Unavailable | Hang | SlowAnswer | DropConnection | RefuseCredentials | RejectDocument | (
    GarbageAnswer
)
JobFault = JobFails | JobKeepsRunning
UpstreamFault = HttpFault | JobFault
FaultTarget = Literal["capture", "poll"]

_FAULT_KINDS: Final[dict[str, type[UpstreamFault]]] = {
    "status": ErrorStatus,
    "unavailable": Unavailable,
    "hang": Hang,
    "slow": SlowAnswer,
    "drop": DropConnection,
    "unauthorized": RefuseCredentials,
    "bad_request": RejectDocument,
    "garbage": GarbageAnswer,
    "job_failed": JobFails,
    "job_running": JobKeepsRunning,
}
_KIND_OF: Final = {cls: kind for kind, cls in _FAULT_KINDS.items()}


@dataclass(slots=True)
class _Queued:
    fault: UpstreamFault
    on: FaultTarget
    left: int


class UpstreamFaults:
    """Faults waiting for the requests they apply to, first queued first used; each fires `count` times."""

    def __init__(self) -> None:
        self._queue: list[_Queued] = []
        self.fired: Counter[str] = Counter()
        """How often each kind of fault fired."""

    def add(self, fault: UpstreamFault, *, count: int = 1, on: FaultTarget = "capture") -> None:
        """Queue fault for the next count captures (or job polls, on="poll"; job faults apply to captures)."""
        if count < 1:
            raise ValueError(f"a fault fires at least once, got count={count}")
        if isinstance(fault, JobFails | JobKeepsRunning) and on != "capture":
            raise ValueError(f"{type(fault).__name__} shapes the job a capture creates: on must be 'capture'")
        self._queue.append(_Queued(fault, on, count))

    def clear(self) -> None:
        """Drop every queued fault."""
        self._queue.clear()

    @property
    def pending(self) -> tuple[tuple[UpstreamFault, FaultTarget, int], ...]:
        """Queued faults with their target and the uses left, in order."""
        return tuple((q.fault, q.on, q.left) for q in self._queue)

    def take_http(self, on: FaultTarget) -> HttpFault | None:
        """Use up and return the first queued HTTP fault for this kind of request, or None."""
        for queued in self._queue:
            if queued.on == on and not isinstance(queued.fault, JobFails | JobKeepsRunning):
                return cast("HttpFault", self._use(queued))
        return None

    def take_job(self) -> list[JobFault]:
        """Use up and return one of each kind of queued job fault (they combine: run K polls, then fail)."""
        taken: dict[type, JobFault] = {}
        for queued in list(self._queue):
            if isinstance(queued.fault, JobFails | JobKeepsRunning) and type(queued.fault) not in taken:
                taken[type(queued.fault)] = cast("JobFault", self._use(queued))
        return list(taken.values())

    def _use(self, queued: _Queued) -> UpstreamFault:
        queued.left -= 1
        if queued.left == 0:
            self._queue.remove(queued)
        self.fired[_KIND_OF[type(queued.fault)]] += 1
        return queued.fault


class FaultSpecError(ValueError):
    """A fault given as JSON cannot be understood; the message says why."""


def fault_from_json(spec: object) -> tuple[UpstreamFault, int, FaultTarget]:
    """Return (fault, count, on) from ``{"kind": ..., "count": n, "on": "capture"|"poll", <fault fields>}``."""
    if not isinstance(spec, dict):
        raise FaultSpecError("a fault is a JSON object with a 'kind'")
    params = dict(spec)
    kind = params.pop("kind", None)
    count = params.pop("count", 1)
    on = params.pop("on", "capture")
    cls = _FAULT_KINDS.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise ValueError(f"unknown fault kind {kind!r}; known: {', '.join(_FAULT_KINDS)}")
    if not isinstance(count, int) or isinstance(count, bool) or on not in ("capture", "poll"):
        raise ValueError("'count' must be an integer and 'on' 'capture' or 'poll'")
    try:
        fault = cls(**params)
    except TypeError as err:
        raise ValueError(f"fault {kind!r}: {err}") from None
    for name, value in params.items():
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise FaultSpecError(f"fault {kind!r}: {name} must be a number")
    return fault, count, cast("FaultTarget", on)


def _fault_json(fault: UpstreamFault, on: FaultTarget, left: int) -> dict[str, Any]:
    fields = {name: getattr(fault, name) for name in getattr(fault, "__dataclass_fields__", {})}
    return {"kind": _KIND_OF[type(fault)], "on": on, "count": left, **fields}


# ---------------------------------------------------------------------------------------------------------
# The repository: what is stored and why a capture is refused; nothing here knows HTTP.


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """One event the repository holds."""

    event_id: str
    """The ID it is held under: the eventID the document stated, else the event hash."""
    stated_id: str | None
    event_hash: str
    capture_id: str
    media_type: str


@dataclass(slots=True)
class CaptureJob:
    """One accepted capture and what became of it (decided when it was posted)."""

    capture_id: str
    created_at: datetime
    behaviour: str
    media_type: str
    event_ids: tuple[str, ...]
    stored: int
    """Events this capture stored (all of event_ids on success under rollback)."""
    success: bool
    errors: list[dict[str, Any]]
    headers: dict[str, str]
    """The GS1-* request headers the client sent."""
    polls_running: int = 0
    """Polls still to be answered running: true."""
    polls: int = 0

    def poll(self) -> dict[str, Any]:
        """Count one poll and return the job document as it stands now."""
        self.polls += 1
        running = self.polls_running > 0
        if running:
            self.polls_running -= 1
        return self.document(running=running)

    def document(self, *, running: bool | None = None) -> dict[str, Any]:
        """Return the capture job document (EPCIS 2.0 CaptureJob)."""
        if running is None:
            running = self.polls_running > 0
        doc: dict[str, Any] = {
            "captureID": self.capture_id,
            "createdAt": _timestamp(self.created_at),
            "running": running,
            "success": True if running else self.success,
            "captureErrorBehaviour": "rollback" if self.behaviour == "rollback" else "proceed",
            "errors": [] if running else self.errors,
        }
        if not running:
            doc["finishedAt"] = _timestamp(self.created_at)
        return doc


class Problem(Exception):  # noqa: N818 - an RFC 7807 problem answered to the client, not an error of ours
    """A capture refused: the HTTP status and RFC 7807 problem to answer."""

    def __init__(
        self,
        status: int,
        type_: str,
        title: str,
        detail: str | None = None,
        *,
        extra: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail or title)
        self.status = status
        self.body: dict[str, Any] = {"type": type_, "title": title, "status": status}
        if detail is not None:
            self.body["detail"] = detail
        self.body.update(extra or {})
        self.headers = headers or {}


@dataclass(frozen=True, slots=True)
class _Examined:
    media_type: str
    events: list[tuple[str, str | None, str]]
    """(ID held under, stated ID, hash) per event, in document order."""


EVENTS_FILE: Final = "events.jsonl"
"""The stored events in a storage directory: a line per event, then a line closing its capture."""
_CAPTURE_PREFIX: Final = "job-"


class EventLogError(ValueError):
    """A storage directory's event log cannot be read back: names the file, the line and why."""


@dataclass(frozen=True, slots=True)
class EventLogContents:
    """What an event log holds: every event of every closed capture, the last capture number, the bytes used."""

    events: list[StoredEvent]
    last_capture: int
    end: int
    """Bytes up to the end of the last closed capture: anything after it was never answered."""


def read_event_log(path: Path) -> EventLogContents:
    """Return the events of the captures closed in the log at path (empty when there is none); EventLogError."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return EventLogContents([], 0, 0)
    events: list[StoredEvent] = []
    pending: list[StoredEvent] = []
    last_capture = end = offset = 0
    # Every capture is written at once: only its tail may be missing (a line cut short, or no closing line).
    for number, line in enumerate(data.split(b"\n")[:-1], start=1):
        offset += len(line) + 1
        try:
            record = _log_record(line)
        except (ValueError, KeyError, TypeError) as err:
            raise EventLogError(f"{path}:{number}: not a stored event or capture: {err}") from None
        if isinstance(record, StoredEvent):
            pending.append(record)
            continue
        capture_id, count = record
        if count != len(pending) or any(e.capture_id != capture_id for e in pending):
            raise EventLogError(f"{path}:{number}: capture {capture_id} closes {count} events, "
                                f"{len(pending)} precede it")
        events.extend(pending)
        pending = []
        last_capture = max(last_capture, _capture_number(capture_id))
        end = offset
    return EventLogContents(events, last_capture, end)


def _log_record(line: bytes) -> StoredEvent | tuple[str, int]:
    """Return one line of an event log: an event, or (capture ID, events) closing a capture; ValueError, KeyError."""
    record = json.loads(line)
    if "capture" in record:
        return str(record["capture"]), int(record["events"])
    stated = record["statedEventID"]
    return StoredEvent(str(record["eventID"]), None if stated is None else str(stated), str(record["eventHash"]),
                       str(record["captureID"]), str(record["mediaType"]))


def _capture_number(capture_id: str) -> int:
    number = capture_id.removeprefix(_CAPTURE_PREFIX)
    return int(number) if number.isdigit() else 0


class EventLog:
    """The durable side of a repository: captures appended and fsynced to a storage directory's event log."""

    def __init__(self, directory: Path) -> None:
        self.path: Final = directory / EVENTS_FILE
        self._fd: int | None = None

    def open(self) -> EventLogContents:
        """Read the log back, cut off a capture never closed, and open it for appending (blocking: off the loop)."""
        if self._fd is not None:
            raise RuntimeError(f"{self.path} is open already")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        contents = read_event_log(self.path)
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
        try:
            # A capture cut short would otherwise run into the next one's first line.
            if os.fstat(fd).st_size > contents.end:
                os.ftruncate(fd, contents.end)
            os.fsync(fd)
            directory = os.open(self.path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                os.fsync(directory)  # the file's name is as durable as its contents
            finally:
                os.close(directory)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return contents

    def append(self, events: Sequence[StoredEvent], capture_id: str) -> None:
        """Append one capture's events and its closing line, durably (fsync) before returning; OSError."""
        if self._fd is None:
            raise RuntimeError(f"{self.path} is not open")
        lines = [json.dumps({"eventID": e.event_id, "statedEventID": e.stated_id, "eventHash": e.event_hash,
                             "captureID": e.capture_id, "mediaType": e.media_type}) for e in events]
        lines.append(json.dumps({"capture": capture_id, "events": len(events)}))
        data = memoryview(("\n".join(lines) + "\n").encode())
        while data:
            data = data[os.write(self._fd, data):]
        os.fsync(self._fd)

    def close(self) -> None:
        """Close the file; idempotent."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)


class Repository:
    """Stores events by ID, all or nothing per capture, and keeps the capture jobs."""

    def __init__(
        self,
        *,
        validator: Validator | None,
        extractor: EventIdExtractor | None,
        duplicates: Literal["409", "job"],
        capture_limit: int | None,
        max_events: int,
    ) -> None:
        self._validator = validator
        self.validated_by = "a validator given by its owner" if validator is not None else "not yet resolved"
        """What documents are checked against: the official schemas, or their structure only."""
        self._extractor = extractor
        self.duplicates: Final = duplicates
        self.capture_limit: Final = capture_limit
        self.max_events: Final = max_events
        self.events: list[StoredEvent] = []
        self._held: set[str] = set()
        self.jobs: OrderedDict[str, CaptureJob] = OrderedDict()
        self._next_id = 1
        self.counts: Counter[str] = Counter()
        self.log: EventLog | None = None
        """Where captures are made durable before they are answered (None: memory only)."""

    def restore(self, contents: EventLogContents, log: EventLog) -> None:
        """Hold what a storage directory's log holds (as after a restart) and append new captures to it."""
        self.events = list(contents.events)
        self._held = {e.event_id for e in contents.events}
        self._next_id = max(self._next_id, contents.last_capture + 1)
        self.log = log

    def examine(self, data: bytes, content_type: str) -> _Examined:
        """Check the document and identify its events (CPU-bound: run off the loop); raise Problem."""
        media_type = content_type.split(";", maxsplit=1)[0].strip().lower()
        if media_type not in _JSON_TYPES | _XML_TYPES:
            raise Problem(
                415,
                "epcisException:UnsupportedMediaTypeException",
                "Unsupported Media Type",
                f"{media_type or 'no Content-Type'} is not one of {', '.join(sorted(_JSON_TYPES | _XML_TYPES))}",
            )
        syntax = _sniff(data)
        wanted = "json" if media_type in _JSON_TYPES else "xml"
        if syntax != wanted:
            raise _invalid([f"declared {media_type} but the body is {syntax or 'neither JSON nor XML'}"])
        problems = self._validate(data)
        if problems:
            raise _invalid(problems)
        try:
            found = self._extract(data)
        except ValueError as err:
            raise _invalid([f"cannot identify the events: {err}"]) from None
        events = [(stated or hashed, stated, hashed) for stated, hashed in found]
        twice = [eid for eid, n in Counter(eid for eid, _, _ in events).items() if n > 1]
        if twice:
            raise _invalid([f"event ID {eid} appears more than once in the document" for eid in twice])
        if self.capture_limit is not None and len(events) > self.capture_limit:
            raise Problem(
                413,
                "epcisException:CaptureLimitExceededException",
                "Capture Payload too large",
                f"{len(events)} events; at most {self.capture_limit} per capture",
                headers={"GS1-EPCIS-Capture-Limit": str(self.capture_limit)},
            )
        return _Examined(media_type, events)

    def capture(
        self, examined: _Examined, behaviour: str, job_faults: Callable[[], list[JobFault]], headers: dict[str, str]
    ) -> CaptureJob:
        """Store the examined document's events all or nothing and return its job; raise Problem (409, 507)."""
        ids = [eid for eid, _, _ in examined.events]
        held = [eid for eid in ids if eid in self._held]
        if held and behaviour == "rollback":
            if self.duplicates == "409":
                self.counts["duplicates"] += 1
                raise Problem(
                    409,
                    "epcisException:ResourceAlreadyExistsException",
                    "A resource with the provided identifier already exists.",
                    f"{len(held)} of the {len(ids)} events are already captured; nothing was stored",
                    extra={DUPLICATE_IDS_MEMBER: held},
                )
            fresh = []  # all or nothing: the job reports the duplicates
        else:
            fresh = [e for e in examined.events if e[0] not in self._held]
        if len(self.events) + len(fresh) > self.max_events:
            raise Problem(
                507, "epcisException:ImplementationException", "Repository full", f"holds {len(self.events)} events"
            )
        faults = job_faults()
        errors: list[dict[str, Any]] = []
        if any(isinstance(f, JobFails) for f in faults):
            fresh = []
            errors.append(
                {
                    "type": "epcisException:ImplementationException",
                    "title": "Capture failed (injected fault)",
                    "status": 500,
                    "detail": "the simulated repository was told to fail this capture",
                }
            )
        if held:
            self.counts["duplicates"] += 1
            errors.append(
                {
                    "type": "epcisException:ResourceAlreadyExistsException",
                    "title": "A resource with the provided identifier already exists.",
                    "status": 409,
                    DUPLICATE_IDS_MEMBER: held,
                }
            )
        capture_id = f"{_CAPTURE_PREFIX}{self._next_id}"
        stored = [StoredEvent(eid, stated, hashed, capture_id, examined.media_type) for eid, stated, hashed in fresh]
        if self.log is not None:
            # Durable before the answer: a repository that forgot an acknowledged capture would store its re-send
            # again. Blocking the loop for one fsync keeps check-and-store atomic; a simulator can afford it.
            try:
                self.log.append(stored, capture_id)
            except OSError as err:
                raise Problem(500, "epcisException:ImplementationException", "Cannot store the events",
                              _short(err)) from err
        self._next_id += 1
        self.events.extend(stored)
        self._held.update(e.event_id for e in stored)
        running = max((f.polls for f in faults if isinstance(f, JobKeepsRunning)), default=0)
        job = CaptureJob(
            capture_id=capture_id,
            created_at=datetime.now(UTC),
            behaviour=behaviour,
            media_type=examined.media_type,
            event_ids=tuple(ids),
            stored=len(fresh),
            success=not errors,
            errors=errors,
            headers=headers,
            polls_running=running,
        )
        self.jobs[capture_id] = job
        while len(self.jobs) > MAX_JOBS:
            self.jobs.popitem(last=False)
        self.counts["captures"] += 1
        return job

    def prepare(self) -> None:
        """Resolve the default validator and extractor now (imports and schema loading: run off the loop)."""
        if self._validator is None:
            self._validator, self.validated_by = _default_validator(self)
        if self._extractor is None:
            self._extractor = _default_extractor()

    def _validate(self, data: bytes) -> list[str]:
        if self._validator is None:
            self._validator, self.validated_by = _default_validator(self)
        return self._validator(data)

    def _extract(self, data: bytes) -> list[tuple[str | None, str]]:
        if self._extractor is None:
            self._extractor = _default_extractor()
        return self._extractor(data)


def _invalid(problems: list[str]) -> Problem:
    shown = problems[:MAX_LISTED_PROBLEMS]
    more = f" (and {len(problems) - len(shown)} more)" if len(problems) > len(shown) else ""
    return Problem(
        400,
        "epcisException:ValidationException",
        "The document is not a valid EPCIS document",
        "; ".join(shown) + more,
        extra={"problems": shown},
    )


STRUCTURE_ONLY = "document structure only (the official EPCIS schemas were not found)"


def _default_validator(repository: Repository) -> tuple[Validator, str]:
    """Return edge.epcis.validate with the schemas it finds, or the structural check (with a warning); and which.

    A document whose syntax has no schema among those found gets the structural check, and the repository's
    validated_by says so from then on: what the demo reports must be what was checked.
    """
    try:
        module = importlib.import_module("edge.epcis.validate")
        schemas = module.EpcisSchemas.locate()
    except ImportError:
        _LOG.warning("edge.epcis.validate is not available; checking documents' structure only")
        return structural_problems, STRUCTURE_ONLY
    if schemas is None:
        _LOG.warning("no EPCIS schemas found; checking documents' structure only")
        return structural_problems, STRUCTURE_ONLY
    validate = cast("Callable[[bytes, object], list[str]]", module.validate_document)
    unavailable = cast("type[Exception]", getattr(module, "SchemaUnavailableError", LookupError))
    warned: set[str] = set()

    def check(data: bytes) -> list[str]:
        try:
            return validate(data, schemas)
        except unavailable as err:
            # Some schemas were found but not the one this syntax needs: check what can be checked.
            if str(err) not in warned:
                warned.add(str(err))
                _LOG.warning("checking this kind of document's structure only", reason=str(err))
            repository.validated_by = f"document structure only ({err})"
            return structural_problems(data)

    parts = [str(p) for p in (schemas.json_schema, schemas.xsd2, schemas.xsd12) if p is not None]
    return check, f"the official EPCIS schemas ({', '.join(parts)})"


def _default_extractor() -> EventIdExtractor:
    """Return edge.epcis.hashing's event identification, or the stand-in (with a warning)."""
    try:
        module = importlib.import_module("edge.epcis.hashing")
    except ImportError:
        _LOG.warning("edge.epcis.hashing is not available; events without eventID get a stand-in hash")
        return basic_event_ids
    extract = cast("EventIdExtractor", module.document_events_with_ids)
    unhashable = cast("type[Exception]", getattr(module, "EpcisHashError", ValueError))

    def events(data: bytes) -> list[tuple[str | None, str]]:
        try:
            return extract(data)
        except unhashable as err:  # the document's fault, not the repository's: a 400, not a 500
            raise ValueError(str(err)) from err

    return events


# ---------------------------------------------------------------------------------------------------------
# Stand-ins for edge.epcis: a structural check and stable (non-CBV) event hashes, for JSON and XML.


def structural_problems(data: bytes) -> list[str]:
    """Return what keeps data from being an EPCIS document in outline (not a schema validation)."""
    try:
        events = _document_events(data)
    except ValueError as err:
        return [str(err)]
    problems: list[str] = []
    for index, event in enumerate(events):
        if event.type not in _EVENT_TYPES:
            problems.append(f"event {index}: {event.type or 'no type'} is not an EPCIS event type")
        if not event.has_time:
            problems.append(f"event {index}: no eventTime")
    return problems


def basic_event_ids(data: bytes) -> list[tuple[str | None, str]]:
    """Return (stated eventID or None, stand-in hash) per event in document order; raise ValueError if malformed."""
    return [
        (e.stated_id, _STAND_IN_HASH_PREFIX + hashlib.sha256(e.canonical).hexdigest() + _STAND_IN_HASH_SUFFIX)
        for e in _document_events(data)
    ]


@dataclass(frozen=True, slots=True)
class _Event:
    type: str | None
    stated_id: str | None
    has_time: bool
    canonical: bytes


class MalformedDocumentError(ValueError):
    """The bytes are not an EPCIS document in outline; the message says why."""


def _sniff(data: bytes) -> Literal["json", "xml"] | None:
    head = data.lstrip(b"\xef\xbb\xbf \t\r\n")[:1]
    return "json" if head in (b"{", b"[") else "xml" if head == b"<" else None


def _document_events(data: bytes) -> list[_Event]:
    syntax = _sniff(data)
    if syntax == "json":
        return _json_events(data)
    if syntax == "xml":
        return _xml_events(data)
    raise MalformedDocumentError("neither a JSON nor an XML document")


def _json_events(data: bytes) -> list[_Event]:
    try:
        doc = json.loads(data)
    except ValueError as err:
        raise MalformedDocumentError(f"not JSON: {err}") from None
    if not isinstance(doc, dict):
        raise MalformedDocumentError("the document is not a JSON object")
    kind = doc.get("type")
    if kind not in ("EPCISDocument", "EPCISQueryDocument"):
        raise MalformedDocumentError(f"type is {kind!r}, not EPCISDocument or EPCISQueryDocument")
    if "@context" not in doc:
        raise MalformedDocumentError("no @context")
    body = doc.get("epcisBody")
    if kind == "EPCISQueryDocument":
        body = _get(_get(body, "queryResults"), "resultsBody")
    events = _get(body, "eventList")
    if not isinstance(events, list):
        where = "epcisBody" if kind == "EPCISDocument" else "queryResults resultsBody"
        raise MalformedDocumentError(f"no {where} eventList")
    found = []
    for event in events:
        if not isinstance(event, dict):
            raise MalformedDocumentError("an eventList entry is not an object")
        stated = event.get("eventID")
        rest = {k: v for k, v in event.items() if k != "eventID"}
        canonical = json.dumps(rest, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
        found.append(
            _Event(
                event.get("type") if isinstance(event.get("type"), str) else None,
                stated if isinstance(stated, str) else None,
                "eventTime" in event,
                canonical,
            )
        )
    return found


def _get(node: object, key: str) -> object:
    return node.get(key) if isinstance(node, dict) else None


def _xml_events(data: bytes) -> list[_Event]:
    # No DTD loading, entity expansion or network: a document must not make the server fetch or expand anything.
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)
    try:
        root = etree.fromstring(data, parser)
    except etree.XMLSyntaxError as err:
        raise MalformedDocumentError(f"not well-formed XML: {err}") from None
    name = etree.QName(root)
    if not (
        (name.localname == "EPCISDocument" and name.namespace in _EPCIS_NS)
        or (name.localname == "EPCISQueryDocument" and name.namespace in _QUERY_NS)
    ):
        raise MalformedDocumentError(f"root element is {root.tag}, not an EPCIS 1.2 or 2.0 EPCISDocument")
    lists = root.findall("EPCISBody/EventList") + root.findall(".//resultsBody/EventList")
    if not lists:
        raise MalformedDocumentError("no EPCISBody/EventList")
    found = []
    for element in lists[0]:
        if not isinstance(element.tag, str):
            continue  # comments and processing instructions
        # EPCIS 1.2 wraps its newer event types in <extension>.
        for event in element if element.tag == "extension" else [element]:
            if not isinstance(event.tag, str):
                continue
            stated = event.findtext("eventID") or event.findtext("baseExtension/eventID")
            found.append(
                _Event(
                    etree.QName(event).localname,
                    stated.strip() if stated else None,
                    event.find("eventTime") is not None,
                    etree.tostring(event, method="c14n"),
                )
            )
    return found


# ---------------------------------------------------------------------------------------------------------
# HTTP.


def server_ssl_context(cert: Path, key: Path, client_ca: Path | None = None) -> ssl.SSLContext:
    """Return a TLS 1.2+ server context; with client_ca, clients must present a certificate it signed."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    if client_ca is not None:
        context.load_verify_locations(cafile=client_ca)
        context.verify_mode = ssl.CERT_REQUIRED
    return context


class EpcisUpstream:
    """The simulated repository's HTTP side: start() on a port, aclose() to stop; faults in `faults`."""

    def __init__(
        self,
        *,
        token: str | None = None,
        basic: tuple[str, str] | None = None,
        tls: ssl.SSLContext | None = None,
        validator: Validator | None = None,
        extractor: EventIdExtractor | None = None,
        duplicates: Literal["409", "job"] = "409",
        capture_limit: int | None = None,
        max_document_bytes: int = DEFAULT_MAX_DOCUMENT_BYTES,
        max_events: int = DEFAULT_MAX_EVENTS,
        sleep: Sleep = asyncio.sleep,
        storage: Path | None = None,
    ) -> None:
        self.faults: Final = UpstreamFaults()
        self._log = None if storage is None else EventLog(storage)
        self.repository: Final = Repository(
            validator=validator,
            extractor=extractor,
            duplicates=duplicates,
            capture_limit=capture_limit,
            max_events=max_events,
        )
        self.max_document_bytes: Final = max_document_bytes
        self.requests: Counter[str] = Counter()
        """Requests received per "METHOD route"."""
        self.answers: Counter[int] = Counter()
        """Capture and poll answers per status (faults included; hangs and drops are not answers)."""
        self._token = token
        self._basic = basic
        self._tls = tls
        self._sleep = sleep
        self._examining = asyncio.Lock()  # one document examined at a time: bounds CPU and memory
        self._released = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._url: str | None = None
        self.app: Final = self._make_app()

    @property
    def url(self) -> str:
        """The repository's base URL (``http(s)://host:port``); the capture endpoint is ``{url}/capture``."""
        if self._url is None:
            raise RuntimeError("the upstream simulator is not started")
        return self._url

    @property
    def validated_by(self) -> str:
        """What captured documents are checked against: the official schemas, or their structure only."""
        return self.repository.validated_by

    @property
    def stored_events(self) -> tuple[StoredEvent, ...]:
        """Every event held, in the order stored."""
        return tuple(self.repository.events)

    @property
    def captures(self) -> tuple[CaptureJob, ...]:
        """Capture jobs, oldest first (at most MAX_JOBS)."""
        return tuple(self.repository.jobs.values())

    async def start(self, host: str = LOOPBACK, port: int = 0) -> str:
        """Listen on host:port (0: a free port) and return the base URL."""
        if self._runner is not None:
            raise RuntimeError("the upstream simulator is already started")
        self._released.clear()
        try:
            if self._log is not None:
                log = self._log
                self.repository.restore(await asyncio.to_thread(log.open), log)
            # The default validator imports and loads schemas for seconds: before listening, so no capture waits.
            await asyncio.to_thread(self.repository.prepare)
        except BaseException:
            await self.aclose()
            raise
        runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=SHUTDOWN_GRACE_S)
        await runner.setup()
        self._runner = runner
        try:
            site = web.TCPSite(runner, host, port, ssl_context=self._tls)
            async with asyncio.timeout(START_TIMEOUT_S):
                await site.start()
        except BaseException:
            await self.aclose()
            raise
        bound_host, bound_port = runner.addresses[0][:2]
        shown = f"[{bound_host}]" if ":" in bound_host else bound_host
        self._url = f"{'https' if self._tls else 'http'}://{shown}:{bound_port}"
        _LOG.debug("upstream simulator listening", url=self._url)
        return self._url

    async def aclose(self) -> None:
        """Release hanging requests, stop listening and close every connection; idempotent."""
        self._released.set()
        runner, self._runner = self._runner, None
        self._url = None
        try:
            if runner is not None:
                await runner.cleanup()
        finally:
            if self._log is not None:
                self._log.close()
                self.repository.log = None

    async def serve(self, host: str = LOOPBACK, port: int = 0) -> None:
        """Start, serve until cancelled, then close (for an owner's TaskGroup)."""
        await self.start(host, port)
        try:
            await asyncio.Event().wait()
        finally:
            await self.aclose()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def stats(self) -> dict[str, Any]:
        """Return counters for GET /stats."""
        return {
            "storedEvents": len(self.repository.events),
            "captures": self.repository.counts["captures"],
            "duplicates": self.repository.counts["duplicates"],
            "requests": dict(self.requests),
            "answers": {str(k): v for k, v in sorted(self.answers.items())},
            "faultsFired": dict(self.faults.fired),
            "faultsPending": [_fault_json(*p) for p in self.faults.pending],
        }

    def _make_app(self) -> web.Application:
        app = web.Application(client_max_size=self.max_document_bytes)
        app.router.add_post("/capture", self._post_capture)
        app.router.add_get("/capture", self._list_jobs)
        app.router.add_route("OPTIONS", "/capture", self._capture_options)
        app.router.add_get("/capture/{capture_id}", self._get_job)
        app.router.add_get("/events", self._get_events)
        app.router.add_get("/faults", self._get_faults)
        app.router.add_post("/faults", self._post_faults)
        app.router.add_delete("/faults", self._delete_faults)
        app.router.add_get("/stats", self._get_stats)
        return app

    async def _post_capture(self, request: web.Request) -> web.StreamResponse:
        self.requests["POST /capture"] += 1
        faulted = await self._http_fault(request, "capture")
        if faulted is not None:
            return faulted
        refused = self._check_auth(request)
        if refused is not None:
            return self._answer(refused)
        try:
            behaviour = request.headers.get("GS1-Capture-Error-Behaviour", "rollback").strip().lower()
            if behaviour not in BEHAVIOURS:
                raise _invalid([f"GS1-Capture-Error-Behaviour {behaviour!r} is not one of {', '.join(BEHAVIOURS)}"])
            try:
                data = await request.read()
            except web.HTTPRequestEntityTooLarge:
                raise Problem(
                    413,
                    "epcisException:CaptureLimitExceededException",
                    "Capture Payload too large",
                    f"at most {self.max_document_bytes} bytes per capture",
                    headers={"GS1-EPCIS-Capture-File-Size-Limit": str(self.max_document_bytes)},
                ) from None
            examined = await self._examine(data, request.headers.get("Content-Type", ""))
            gs1 = {k: v for k, v in request.headers.items() if k.lower().startswith("gs1-")}
            job = self.repository.capture(examined, behaviour, self.faults.take_job, gs1)
        except Problem as problem:
            return self._answer(problem)
        _LOG.debug("capture accepted", capture_id=job.capture_id, events=len(job.event_ids), stored=job.stored)
        self.answers[202] += 1
        return web.Response(
            status=202,
            headers={"Location": f"/capture/{job.capture_id}", **self._version_headers()},
        )

    async def _examine(self, data: bytes, content_type: str) -> _Examined:
        async with self._examining:
            try:
                return await asyncio.to_thread(self.repository.examine, data, content_type)
            except Problem:
                raise
            except Exception as err:
                # A validator or extractor that breaks is the repository's fault: 500, as a real one answers.
                _LOG.exception("examining a capture failed")
                raise Problem(
                    500, "epcisException:ImplementationException", "A server-side error occurred", _short(err)
                ) from err

    async def _get_job(self, request: web.Request) -> web.StreamResponse:
        self.requests["GET /capture/{id}"] += 1
        faulted = await self._http_fault(request, "poll")
        if faulted is not None:
            return faulted
        refused = self._check_auth(request)
        if refused is not None:
            return self._answer(refused)
        job = self.repository.jobs.get(request.match_info["capture_id"])
        if job is None:
            return self._answer(
                Problem(404, "epcisException:NoSuchResourceException", "Capture job not found", None)
            )
        self.answers[200] += 1
        return web.json_response(job.poll(), headers=self._version_headers())

    async def _list_jobs(self, request: web.Request) -> web.StreamResponse:
        self.requests["GET /capture"] += 1
        refused = self._check_auth(request)
        if refused is not None:
            return self._answer(refused)
        try:
            per_page = _query_int(request, "perPage", DEFAULT_PAGE, 1, MAX_PAGE)
            start = _query_int(request, "nextPageToken", 0, 0, sys.maxsize)
        except Problem as problem:
            return self._answer(problem)
        jobs = list(self.repository.jobs.values())
        page = jobs[start : start + per_page]
        headers = self._version_headers()
        if start + per_page < len(jobs):
            headers["Link"] = f'</capture?perPage={per_page}&nextPageToken={start + per_page}>; rel="next"'
        return web.json_response([j.document() for j in page], headers=headers)

    async def _capture_options(self, _request: web.Request) -> web.StreamResponse:
        self.requests["OPTIONS /capture"] += 1
        headers = {
            "Allow": "OPTIONS, POST, GET",
            "GS1-EPCIS-Min": "1.2.0",
            "GS1-EPCIS-Max": EPCIS_VERSION,
            "GS1-Capture-Error-Behaviour": ", ".join(BEHAVIOURS),
            "GS1-EPCIS-Capture-File-Size-Limit": str(self.max_document_bytes),
            **self._version_headers(),
        }
        if self.repository.capture_limit is not None:
            headers["GS1-EPCIS-Capture-Limit"] = str(self.repository.capture_limit)
        return web.Response(status=204, headers=headers)

    async def _get_events(self, request: web.Request) -> web.StreamResponse:
        self.requests["GET /events"] += 1
        try:
            offset = _query_int(request, "offset", 0, 0, sys.maxsize)
            limit = _query_int(request, "limit", MAX_PAGE, 1, MAX_PAGE)
        except Problem as problem:
            return self._answer(problem)
        events = self.repository.events[offset : offset + limit]
        return web.json_response(
            {
                "total": len(self.repository.events),
                "events": [
                    {
                        "eventID": e.event_id,
                        "statedEventID": e.stated_id,
                        "eventHash": e.event_hash,
                        "captureID": e.capture_id,
                        "mediaType": e.media_type,
                    }
                    for e in events
                ],
            }
        )

    async def _get_faults(self, _request: web.Request) -> web.StreamResponse:
        self.requests["GET /faults"] += 1
        return web.json_response({"pending": [_fault_json(*p) for p in self.faults.pending]})

    async def _post_faults(self, request: web.Request) -> web.StreamResponse:
        self.requests["POST /faults"] += 1
        try:
            spec = await request.json()
            specs = spec if isinstance(spec, list) else [spec]
            parsed = [fault_from_json(s) for s in specs]
            for fault, count, on in parsed:
                UpstreamFaults().add(fault, count=count, on=on)  # all checked before any is queued
        except ValueError as err:
            return web.json_response({"title": "Bad fault", "detail": str(err), "status": 400}, status=400)
        for fault, count, on in parsed:
            self.faults.add(fault, count=count, on=on)
        return web.json_response({"pending": [_fault_json(*p) for p in self.faults.pending]})

    async def _delete_faults(self, _request: web.Request) -> web.StreamResponse:
        self.requests["DELETE /faults"] += 1
        self.faults.clear()
        return web.Response(status=204)

    async def _get_stats(self, _request: web.Request) -> web.StreamResponse:
        self.requests["GET /stats"] += 1
        return web.json_response(self.stats())

    async def _http_fault(  # noqa: PLR0911 - one answer per kind of fault reads better than a dispatch table
        self, request: web.Request, on: FaultTarget
    ) -> web.StreamResponse | None:
        """Carry out the next fault queued for this request; return its answer, or None to go on normally."""
        fault = self.faults.take_http(on)
        if fault is None:
            return None
        _LOG.debug("injecting fault", fault=fault, on=on)
        if isinstance(fault, CONNECTION_FAULTS):
            return await connection_fault(fault, request, sleep=self._sleep, released=self._released)
        if isinstance(fault, ErrorStatus):
            return self._answer(Problem(fault.status, _problem_type(fault.status), "Injected fault", None))
        if isinstance(fault, Unavailable):
            return self._answer(
                Problem(
                    503,
                    "epcisException:ImplementationException",
                    "Service Unavailable",
                    "injected fault",
                    headers={"Retry-After": str(fault.retry_after_s)},
                )
            )
        if isinstance(fault, RefuseCredentials):
            return self._answer(_unauthorized())
        if isinstance(fault, RejectDocument):
            return self._answer(_invalid(["injected fault: the document is malformed"]))
        status = fault.status or (202 if on == "capture" else 200)
        self.answers[status] += 1
        return web.Response(status=status, body=b"<html>\x00not json{{", content_type="text/html")

    def _check_auth(self, request: web.Request) -> Problem | None:
        if self._token is None and self._basic is None:
            return None
        given = request.headers.get("Authorization", "")
        scheme, _, value = given.partition(" ")
        if self._token is not None and scheme.lower() == "bearer":
            if hmac.compare_digest(value.strip().encode(), self._token.encode()):
                return None
        elif self._basic is not None and scheme.lower() == "basic":
            try:
                login, _, password = base64.b64decode(value.strip(), validate=True).decode("utf-8").partition(":")
            except ValueError:
                return _unauthorized()
            user_ok = hmac.compare_digest(login.encode(), self._basic[0].encode())
            password_ok = hmac.compare_digest(password.encode(), self._basic[1].encode())
            if user_ok and password_ok:
                return None
        return _unauthorized()

    def _answer(self, problem: Problem) -> web.Response:
        self.answers[problem.status] += 1
        headers = {**problem.headers, **self._version_headers()}
        if problem.status == 401:
            headers["WWW-Authenticate"] = "Bearer" if self._token is not None else 'Basic realm="epcis"'
        return web.json_response(
            problem.body, status=problem.status, headers=headers, content_type="application/problem+json"
        )

    def _version_headers(self) -> dict[str, str]:
        return {"GS1-EPCIS-Version": EPCIS_VERSION, "GS1-CBV-Version": CBV_VERSION}


def _unauthorized() -> Problem:
    return Problem(401, "epcisException:SecurityException", "Unauthorised request", None)


CONNECTION_FAULTS: Final = (SlowAnswer, Hang, DropConnection)
"""Faults on the connection itself rather than in an answer."""


async def connection_fault(fault: SlowAnswer | Hang | DropConnection, request: web.Request, *, sleep: Sleep,
                           released: asyncio.Event) -> web.Response | None:
    """Carry out a connection fault; return the answer of a cut connection, or None to answer normally after all."""
    if isinstance(fault, SlowAnswer):
        # A slow answer still ends when the simulator closes, so no request outlives it.
        sleeper = asyncio.ensure_future(sleep(fault.delay_s))
        closing = asyncio.ensure_future(released.wait())
        done, pending = await asyncio.wait({sleeper, closing}, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        return cut_connection(request) if closing in done else None
    if isinstance(fault, Hang):
        await released.wait()
    else:
        await request.content.read(1024)
    return cut_connection(request)


def cut_connection(request: web.Request) -> web.Response:
    """Abort the request's connection; the answer returned is never sent (aiohttp drops it)."""
    if request.transport is not None:
        request.transport.abort()
    return web.Response(status=500)


def _problem_type(status: int) -> str:
    if status in (401, 403):
        return "epcisException:SecurityException"
    if status == 404:
        return "epcisException:NoSuchResourceException"
    if status == 413:
        return "epcisException:CaptureLimitExceededException"
    if status < 500:
        return "epcisException:ValidationException"
    return "epcisException:ImplementationException"


def _query_int(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise Problem(400, "epcisException:QueryParameterException", f"{name} must be an integer {low}..{high}")
    return int(raw)


def _short(err: BaseException) -> str:
    text = f"{type(err).__name__}: {err}"
    return text if len(text) <= 300 else text[:297] + "..."


def _timestamp(when: datetime) -> str:
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


# ---------------------------------------------------------------------------------------------------------
# Standalone.


def main(argv: Sequence[str] | None = None) -> int:
    """Run the simulated repository until interrupted; print its URL first."""
    parser = argparse.ArgumentParser(prog="python -m simulators.epcis_upstream", description=__doc__.split("\n")[0])
    parser.add_argument("--host", default=LOOPBACK)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--token", help="require this bearer token")
    parser.add_argument("--basic", metavar="USER:PASSWORD", help="require these basic credentials")
    parser.add_argument("--cert", type=Path, help="serve TLS with this certificate (PEM)")
    parser.add_argument("--key", type=Path, help="the certificate's private key (PEM)")
    parser.add_argument("--client-ca", type=Path, help="require client certificates signed by this CA")
    parser.add_argument("--duplicates", choices=("409", "job"), default="409")
    parser.add_argument("--capture-limit", type=int, help="most events per capture (413 beyond)")
    parser.add_argument("--storage", type=Path, help="keep stored events in this directory across restarts")
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args(argv)
    configure_logging(level=args.log_level)
    if (args.cert is None) != (args.key is None):
        parser.error("--cert and --key go together")
    basic = None
    if args.basic is not None:
        user, sep, password = args.basic.partition(":")
        if not sep:
            parser.error("--basic takes USER:PASSWORD")
        basic = (user, password)
    tls = None if args.cert is None else server_ssl_context(args.cert, args.key, args.client_ca)

    async def run() -> None:
        upstream = EpcisUpstream(
            token=args.token,
            basic=basic,
            tls=tls,
            duplicates=args.duplicates,
            capture_limit=args.capture_limit,
            storage=args.storage,
        )
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        url = await upstream.start(args.host, args.port)
        sys.stdout.write(f"EPCIS capture at {url}/capture\n")
        sys.stdout.flush()
        try:
            await stop.wait()
        finally:
            await upstream.aclose()

    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C is how a person stops it
        asyncio.run(run())
    return 0


if __name__ == "__main__":
    sys.exit(main())
