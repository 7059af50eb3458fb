"""Prometheus metrics of the line, in the text exposition format (0.0.4), served at GET /metrics.

Written by hand rather than with prometheus_client: every value already lives in the daemon's objects (the
line control's status, the inspection counts, the device supervisors, the store), so a scrape reads them as
they are; the format is a few lines of text; and no global registry or second HTTP server is needed beside
the API's. The one value kept only for metrics is the verdict latency `Histogram`, which the inspection
service feeds.

Every sample carries the label ``line`` (the line's id), so several lines can share one Prometheus.
"""

from __future__ import annotations

import bisect
import math
from typing import TYPE_CHECKING, Final, Protocol

import structlog

from edge import __version__
from edge.control.packml import State
from edge.errors import EdgeError
from edge.line.verdict import RejectReason
from edge.supervisor import LinkState

if TYPE_CHECKING:
    import sqlite3
    from collections.abc import Iterable, Mapping, Sequence

    from aiohttp import web

    from edge.config import LineConfig
    from edge.control.line import LineControl
    from edge.line.inspection import InspectionService
    from edge.store import Store
    from edge.supervisor import DeviceSupervisor

_LOG = structlog.get_logger("lineside.metrics")

CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"
METRICS_PATH: Final = "/metrics"

VERDICT_LATENCY_BUCKETS_S: Final = (0.002, 0.005, 0.01, 0.015, 0.02, 0.03, 0.05, 0.1, 0.2, 0.5, 1.0)
"""Upper bounds of the verdict latency buckets: fine around the 20 ms target, coarse up to the 0.5 s a frame
may take (the capture timeout), so both a healthy line and a struggling one show their shape."""

BACKLOG_STATES: Final = ("pending", "delivering", "failed")
"""The states of an EPCIS message not delivered yet, each its own series so a failed backlog stands out."""

Labels = tuple[tuple[str, str], ...]


class Histogram:
    """Observations counted in fixed buckets (a Prometheus histogram): fixed memory at any line speed."""

    def __init__(self, bounds: Sequence[float]) -> None:
        if not bounds or list(bounds) != sorted(set(bounds)) or not all(math.isfinite(b) for b in bounds):
            raise ValueError(f"histogram bounds must be finite, distinct and increasing, not {bounds!r}")
        self.bounds: Final = tuple(bounds)
        self._counts = [0] * (len(self.bounds) + 1)  # the last one counts what is above every bound
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        """Count one observation (NaN is ignored: it would poison the sum)."""
        if math.isnan(value):
            return
        self._counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value
        self.count += 1

    def cumulative(self) -> list[tuple[float, int]]:
        """Return (upper bound, observations at or below it) per bucket, ending with (+inf, count)."""
        out: list[tuple[float, int]] = []
        total = 0
        for bound, count in zip((*self.bounds, math.inf), self._counts, strict=True):
            total += count
            out.append((bound, total))
        return out


class Exposition:
    """Metric families written in the Prometheus text format: HELP and TYPE once, then the samples."""

    def __init__(self, common: Mapping[str, str] | None = None) -> None:
        self._common: Labels = tuple((common or {}).items())
        self._lines: list[str] = []
        self._families: set[str] = set()

    def family(self, name: str, kind: str, text: str) -> None:
        """Begin a family (kind counter, gauge or histogram); a name may be begun once."""
        if name in self._families:
            raise ValueError(f"metric family {name} is written twice")
        self._families.add(name)
        self._lines.append(f"# HELP {name} {_escape_help(text)}")
        self._lines.append(f"# TYPE {name} {kind}")

    def sample(self, name: str, value: float, labels: Mapping[str, str] | None = None) -> None:
        """Write one sample of the family begun last (name may add _total, _bucket, _sum or _count)."""
        pairs = (*self._common, *(labels or {}).items())
        inner = ",".join(f'{key}="{_escape_label(str(val))}"' for key, val in pairs)
        self._lines.append(f"{name}{{{inner}}} {_number(value)}" if inner else f"{name} {_number(value)}")

    def histogram(self, name: str, text: str, histogram: Histogram) -> None:
        """Write a whole histogram family: cumulative buckets, sum and count."""
        self.family(name, "histogram", text)
        for bound, count in histogram.cumulative():
            self.sample(f"{name}_bucket", count, {"le": _number(bound)})
        self.sample(f"{name}_sum", histogram.sum)
        self.sample(f"{name}_count", histogram.count)

    def text(self) -> str:
        """Return the exposition, one line per HELP, TYPE and sample, ending with a newline."""
        return "\n".join(self._lines) + "\n"


class MetricsSource(Protocol):
    """What the metrics are read from at each scrape: the running daemon (None/empty while it starts)."""

    @property
    def config(self) -> LineConfig: ...
    @property
    def control(self) -> LineControl | None: ...
    @property
    def inspection(self) -> InspectionService | None: ...
    @property
    def supervisors(self) -> Sequence[DeviceSupervisor]: ...
    @property
    def store(self) -> Store | None: ...


class LineMetrics:
    """The line's metrics, read from a MetricsSource (the daemon) whenever they are rendered."""

    def __init__(self, source: MetricsSource) -> None:
        self._source = source

    async def render(self) -> str:
        """Return the metrics now, in the text exposition format."""
        source = self._source
        out = Exposition({"line": source.config.line.id})
        out.family("lineside_info", "gauge", "Always 1; the labels name the Lineside version.")
        out.sample("lineside_info", 1, {"version": __version__})
        _control(out, source.control)
        _inspection(out, source.inspection)
        _devices(out, source.supervisors)
        await _outbox(out, source.store)
        return out.text()


def add_metrics_route(app: web.Application, metrics: LineMetrics, path: str = METRICS_PATH) -> None:
    """Serve metrics as GET path on app (for Prometheus: text exposition format, never cached)."""
    from aiohttp import web  # noqa: PLC0415 - only the API needs aiohttp; the inspection imports this module

    async def handle(request: web.Request) -> web.Response:
        del request
        return web.Response(body=(await metrics.render()).encode("utf-8"),
                            headers={"Content-Type": CONTENT_TYPE, "Cache-Control": "no-store"})

    app.router.add_get(path, handle)


# -- families -------------------------------------------------------------------------------------


def _control(out: Exposition, control: LineControl | None) -> None:
    if control is None:
        return
    status = control.status()
    counters = status["counters"]
    out.family("lineside_packml_state", "gauge",
               "1 for the line's PackML state now (OPC 30050 names), 0 for every other state.")
    for state in State:
        if state is not State.UNDEFINED:
            out.sample("lineside_packml_state", int(state is control.state), {"state": state.title})
    out.family("lineside_packml_state_number", "gauge", "The line's PackML state as its PackTags StateCurrent number.")
    out.sample("lineside_packml_state_number", int(control.state))
    out.family("lineside_packml_unit_mode", "gauge", "The line's PackTags unit mode: 1 production, 2 maintenance, "
               "3 manual.")
    out.sample("lineside_packml_unit_mode", int(control.mode))
    out.family("lineside_produced_total", "counter",
               "Packs produced since the daemon started: judged at the camera, or printed on a line without one.")
    out.sample("lineside_produced_total", int(counters["produced"]))
    out.family("lineside_line_rate_per_minute", "gauge", "Packs per minute over the last minute (PackML CurMachSpeed).")
    out.sample("lineside_line_rate_per_minute", float(counters["rate_per_minute"]))
    out.family("lineside_alarms", "gauge", "Alarms kept (until Reset or Clear), by whether they are acknowledged.")
    unacknowledged = int(status["unacknowledged_alarms"])
    out.sample("lineside_alarms", unacknowledged, {"acknowledged": "false"})
    out.sample("lineside_alarms", len(status["alarms"]) - unacknowledged, {"acknowledged": "true"})


def _inspection(out: Exposition, inspection: InspectionService | None) -> None:
    if inspection is None:
        return
    counts = inspection.counts
    out.family("lineside_verdicts_total", "counter", "Packs judged at the camera, by verdict.")
    out.sample("lineside_verdicts_total", counts.good, {"verdict": "good"})
    out.sample("lineside_verdicts_total", sum(counts.rejected.values()), {"verdict": "rejected"})
    out.family("lineside_rejects_total", "counter", "Packs rejected at the camera, by reason.")
    # Every known reason from the start, so rate() sees a reason's first reject as an increase.
    for reason in _union([r.value for r in RejectReason], counts.rejected):
        out.sample("lineside_rejects_total", counts.rejected.get(reason, 0), {"reason": reason})
    out.family("lineside_confirmed_rejects_total", "counter", "Rejects the reject station confirmed.")
    out.sample("lineside_confirmed_rejects_total", counts.confirmed_rejects)
    out.histogram("lineside_verdict_latency_seconds",
                  "Seconds from the camera's frame to the verdict (for a good pack: committed and sent to the PLC).",
                  inspection.latency)


def _devices(out: Exposition, supervisors: Sequence[DeviceSupervisor]) -> None:
    if not supervisors:
        return
    statuses = [s.status for s in supervisors]
    out.family("lineside_device_up", "gauge", "1 while the device's link is online, else 0.")
    for status in statuses:
        out.sample("lineside_device_up", int(status.state is LinkState.ONLINE), {"device": status.device_id})
    out.family("lineside_device_connects_total", "counter", "Successful connections to the device.")
    for status in statuses:
        out.sample("lineside_device_connects_total", status.connects, {"device": status.device_id})
    out.family("lineside_device_failures_total", "counter", "Failed connections and links lost, per device.")
    for status in statuses:
        out.sample("lineside_device_failures_total", status.failures, {"device": status.device_id})


async def _outbox(out: Exposition, store: Store | None) -> None:
    if store is None:
        return
    try:
        backlog = await store.read(_backlog)
    except EdgeError as err:
        # A scrape must not fail for the store: the other families still say a lot, and the store's own
        # alarms say why it cannot be read.
        _LOG.warning("outbox backlog not read for the metrics", error=str(err))
        return
    out.family("lineside_outbox_backlog_messages", "gauge",
               "EPCIS messages not delivered yet, per upstream target and state.")
    for target, states in sorted(backlog.items()):
        for state in BACKLOG_STATES:
            out.sample("lineside_outbox_backlog_messages", states.get(state, 0), {"target": target, "state": state})


def _backlog(conn: sqlite3.Connection) -> dict[str, dict[str, int]]:
    """Count the messages not delivered per target and state; a registered target with none shows zeros."""
    backlog: dict[str, dict[str, int]] = {}
    for (target,) in conn.execute("SELECT target FROM epcis_target"):
        backlog[str(target)] = {}
    rows = conn.execute(
        "SELECT target, state, count(*) FROM epcis_message WHERE state <> 'delivered' GROUP BY target, state"
    )
    for target, state, count in rows:
        backlog.setdefault(str(target), {})[str(state)] = int(count)
    return backlog


# -- format ---------------------------------------------------------------------------------------


def _union(first: Iterable[str], more: Iterable[str]) -> list[str]:
    return list(dict.fromkeys([*first, *more]))


def _number(value: float) -> str:
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


def _escape_label(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")
