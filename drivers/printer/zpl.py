"""Zebra label printers speaking ZPL II over raw TCP 9100: case and pallet labels from a stored format.

Layers: `Link` (bytes) → `drivers.framing.zpl` (``~HS`` answers in, label blocks out) → the commands below
(`Label`, `HOST_STATUS`, `CANCEL_ALL`, `RESUME`, `PAUSE`, `status_of`) → `ZplPrinter`, the printer role.

How a ZPL printer fills the role (protocols.md §0, §1.10):

- The stored format (``format_zpl``, a ``^XA^DF<name>^FS ... ^FN<n>^FS ... ^XZ`` block) is downloaded at
  connect when given; each record is one label ``^XA^XF<format>^FS^FN<n>^FH^FD<data>^FS...^PQ1^XZ``, field
  data hex-escaped with ``^FH`` (GS → ``_1D``, and ``^``, ``~``, ``_``, control and non-ASCII bytes likewise).
- ZPL answers nothing but queries: a label is SENT once written, a record is never refused by the printer.
- Evidence (LABEL_STATUS) comes from polling ``~HS``: printed since the last clear = labels sent since then -
  (formats in receive buffer + labels remaining in batch). A count is believed only once two consecutive
  answers agree it was reached (one corrupted digit cannot print a wrong record: ZPL has no checksum).
  Answers carry no request id: the exchange drops answers read before a request was written, and each
  answer is counted against the fewest labels sent over the last `STALE_WINDOW` requests, so one lagging
  behind its request (after a duplicated answer) never counts labels sent meanwhile as printed. The price:
  PRINTED comes one poll after the print, later still while labels are being loaded.
- ``~JA`` cancels everything (clear), ``~PS`` / ``~PP`` resume / pause (start / stop).
- A record's fields fill the format's ``^FN`` numbers through ``field_numbers`` (default: the ``fields``
  option in order → 1, 2, 3...); a field named ``FN<n>`` fills ``^FN<n>`` directly, so a label station
  that downloads its own format with `store_format` needs no per-product field list.
- select_job only records the format name: ZPL cannot confirm a stored format exists; ``^XF`` of a missing
  format prints a blank label, which the label scanner downstream catches. Names that cannot be a ZPL
  object name are refused.

Verified here: nothing against real hardware. Stated/known [K + C]: the commands above, the ``~HS`` layout
and its flags (see `drivers.framing.zpl`). ASSUMED, to confirm with Zebra for the model in use: that a
format is counted in "formats in receive buffer" as soon as its ``^XZ`` is received, before a ``~HS`` that
follows it on the wire is answered; that in applicator mode the label awaiting the print signal counts in
"labels remaining in batch"; that ``~JA`` also cancels formats not yet started; pause maps to STOPPED,
"buffer full" to a WARNING (the printer holds the stream, it loses nothing). If an operator cancels labels
at the printer's panel, the count above mistakes them for printed: the label scanner must verify.
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Self

from pydantic import Field, field_validator, model_validator

from drivers.base import DeviceInfo, DriverContext, DriverOptions
from drivers.framing.zpl import (
    HostStatus,
    HostStatusFramer,
    LabelBlock,
    ZplFramer,
    encode_control,
    encode_label,
)
from drivers.printer.base import (
    EvidenceKind,
    FaultReason,
    LoadStyle,
    Printer,
    PrinterCapabilities,
    PrinterCounters,
    PrinterOptions,
    PrinterState,
    PrinterStatus,
    PrinterStatusChanged,
    PrintEvidence,
    PrintOutcome,
)
from drivers.printer.exchange import Exchange
from drivers.transport.link import Link, open_link
from edge.errors import DeviceRejectedError

if TYPE_CHECKING:
    from collections.abc import Sequence

    from drivers.base import DeviceEvent
    from drivers.printer.base import PrintRecord

MODEL: Final = "Zebra ZPL label printer"

DEFAULT_DEPTH: Final = 4
"""Labels kept in the printer ahead of the applicator: enough to ride out a slow poll, few enough that a
clear() after a fault scraps little."""

MAX_DEPTH: Final = 999
"""Most formats ``~HS`` can report in the receive buffer (three digits)."""

FORMAT_NAME: Final = re.compile(r"(?:[A-Za-z]:)?[A-Za-z0-9_-]{1,16}(?:\.[Zz][Pp][Ll])?")
"""A ZPL object name: optional drive letter, up to 16 name characters, optional .ZPL extension [K]."""

STALE_WINDOW: Final = 4
"""~HS answers carry no request id: an answer is counted against the fewest labels sent at any of the last
this many requests, so a device that duplicates answers (each later one then lags a request behind) cannot
make labels sent meanwhile look printed unless it falls this many answers behind."""

DIRECT_FIELD: Final = re.compile(r"FN(\d{1,4})")
"""A record field named like this fills that ^FN number of the format, whatever the options number."""

HOST_STATUS: Final = encode_control("HS")
CANCEL_ALL: Final = encode_control("JA")
RESUME: Final = encode_control("PS")
PAUSE: Final = encode_control("PP")


@dataclass(frozen=True, slots=True)
class Label:
    """One label recalling a stored format, with its ^FN field data."""

    format_name: str
    fields: tuple[tuple[int, bytes], ...]
    quantity: int = 1

    def encode(self) -> bytes:
        """Return the label as ZPL."""
        return encode_label(self.format_name, self.fields, self.quantity)


def status_of(answer: HostStatus) -> PrinterStatus:
    """Return the traffic light a ``~HS`` answer shows; detail names the raised flags as the ZPL manual does."""
    flags = (
        (answer.paper_out, "paper out", FaultReason.LABELS_OUT),
        (answer.ribbon_out, "ribbon out", FaultReason.RIBBON_OUT),
        (answer.head_up, "head up", FaultReason.DOOR_OPEN),
        (answer.under_temperature, "under temperature", FaultReason.HEAD_FAULT),
        (answer.over_temperature, "over temperature", FaultReason.HEAD_FAULT),
        (answer.corrupt_ram, "corrupt RAM", FaultReason.OTHER),
        (answer.paused, "pause", None),
        (answer.buffer_full, "buffer full", None),
    )
    detail = ", ".join(words for raised, words, _ in flags if raised)
    faults = frozenset(reason for raised, _, reason in flags if raised and reason is not None)
    if faults:
        state = PrinterState.FAULT
    elif answer.paused:
        state = PrinterState.STOPPED
    elif answer.buffer_full:
        state = PrinterState.WARNING
    else:
        state = PrinterState.PRINTING
    return PrinterStatus(state, faults, detail)


def stored_format_name(format_zpl: str) -> str:
    """Return the ^DF name of a stored-format download; ValueError unless it is exactly one ^XA^DF...^XZ block."""
    items = ZplFramer().feed(format_zpl.encode("latin-1"))
    blocks = [item for item in items if isinstance(item, LabelBlock)]
    if len(items) != 1 or len(blocks) != 1:
        raise ValueError("format_zpl must be exactly one ^XA...^XZ block")
    download = blocks[0].first("DF")
    if download is None:
        raise ValueError("format_zpl must store the format with ^DF<name>^FS")
    name = download.params.decode("latin-1")
    if not FORMAT_NAME.fullmatch(name):
        raise ValueError(f"^DF{name} is not a ZPL format name")
    return name


class ZplPrinter(Printer):
    """A Zebra printer printing one label per record from a stored format, evidence by ``~HS`` polling."""

    class Options(PrinterOptions):
        """How the printer and its stored format are set up."""

        format_name: str | None = None
        """Stored format each label recalls with ^XF, e.g. E:CASE.ZPL (default: job, else format_zpl's ^DF name)."""
        format_zpl: str | None = None
        """The stored format itself (one ^XA^DF<name>^FS...^XZ block), downloaded at connect when given."""
        field_numbers: dict[str, int] = Field(default_factory=dict)
        """Record field name → its ^FN number in the format (default: the fields in order → 1, 2, 3...)."""

        @field_validator("format_zpl")
        @classmethod
        def _check_format_zpl(cls, value: str | None) -> str | None:
            if value is not None:
                stored_format_name(value)
            return value

        @field_validator("format_name", "job")
        @classmethod
        def _check_format_name(cls, value: str | None) -> str | None:
            if value is not None and not FORMAT_NAME.fullmatch(value):
                raise ValueError(f"{value!r} is not a ZPL format name (like E:CASE.ZPL)")
            return value

        @field_validator("field_numbers")
        @classmethod
        def _check_field_numbers(cls, value: dict[str, int]) -> dict[str, int]:
            if any(not 0 <= n <= 9999 for n in value.values()):
                raise ValueError("^FN numbers are 0 to 9999")
            if len(set(value.values())) != len(value):
                raise ValueError("two fields cannot share one ^FN number")
            return value

        @model_validator(mode="after")
        def _check_fields_numbered(self) -> Self:
            missing = [name for name in self.fields if self.field_numbers and name not in self.field_numbers]
            if missing:
                raise ValueError(f"field_numbers gives no ^FN number for {', '.join(missing)}")
            return self

        def numbers(self) -> dict[str, int]:
            """Return field name → ^FN number, the defaults filled in."""
            return dict(self.field_numbers) or {name: n for n, name in enumerate(self.fields, start=1)}

        def default_format(self) -> str | None:
            """Return the format labels recall unless select_job says otherwise."""
            if self.format_name is not None:
                return self.format_name
            if self.job is not None:
                return self.job
            return None if self.format_zpl is None else stored_format_name(self.format_zpl)

    def __init__(self, context: DriverContext, options: DriverOptions) -> None:
        if not isinstance(options, ZplPrinter.Options):
            raise TypeError(f"ZplPrinter takes ZplPrinter.Options, not {type(options).__name__}")
        super().__init__(context, options)
        self._options = options
        self._numbers = options.numbers()
        self._format = options.default_format()
        self._framer = HostStatusFramer()
        self._link: Link | None = None
        self._exchange: Exchange[HostStatus] | None = None
        self._used = False
        depth = options.depth or DEFAULT_DEPTH
        if depth > MAX_DEPTH:
            context.log.warning("depth above what ~HS can report; capped", depth=depth, cap=MAX_DEPTH)
        self._capabilities = PrinterCapabilities(
            load=LoadStyle.BUFFERED,
            buffer_depth=min(depth, MAX_DEPTH),
            evidence=EvidenceKind.LABEL_STATUS,
            host_trigger=False,
        )
        self._requests = 0
        """~HS requests made; fewer than the answers framed means the printer duplicated answers."""
        self._extra_answers = 0
        self._snapshots: deque[int] = deque([0] * STALE_WINDOW, maxlen=STALE_WINDOW)
        """Labels sent at each of the last STALE_WINDOW requests (zeros after a clear)."""
        self._mirror: deque[int] = deque()
        """record_ids of labels sent and not yet reported printed, oldest first."""
        self._sent = 0
        """Labels written since the last clear (counted once the link took them)."""
        self._printed = 0
        """Labels reported printed since the last clear."""
        self._estimate: int | None = None
        """The previous answer's printed count, waiting for the next answer to confirm it."""
        self._epoch = 0
        """Bumped by clear(): an answer to a query made before it says nothing about labels sent after."""
        self._last_status: PrinterStatus | None = None

    @property
    def capabilities(self) -> PrinterCapabilities:
        """Buffered labels, depth from the options (default 4), evidence from ~HS, no host trigger."""
        return self._capabilities

    async def connect(self) -> DeviceInfo:
        """Open the link, ask ~HS (a silent or foreign device fails here) and download format_zpl if given."""
        if self._used:
            raise RuntimeError("a driver is single-use: make a new one to reconnect")
        self._used = True
        link = await open_link(
            self.context.transport, connect_timeout_s=self.context.connect_timeout_s, log=self.context.log
        )
        try:
            self._link = link
            self._exchange = Exchange(link, self._framer, self.context)
            answer, _ = await self._query("handshake ~HS")
            if self._options.format_zpl is not None:
                await self._exchange.send(self._options.format_zpl.encode("latin-1"))
        except BaseException:
            self._link, self._exchange = None, None
            await link.close()
            raise
        self.context.log.info("label printer connected", peer=link.peer, status=status_of(answer).detail or "ok")
        return DeviceInfo(model=MODEL)

    async def run(self) -> None:
        """Poll ~HS until the link is lost (TransientDeviceError) or cancelled; emit PRINTED and status changes."""
        self._connected()
        poll_s = self._options.poll_interval_s
        while True:
            await self._emit(await self._poll())
            # Poll fast only while labels wait for evidence; an idle printer is asked at the status interval.
            waited = 0.0
            while True:
                await self.context.sleep(poll_s)
                waited += poll_s
                if self._mirror or waited >= self._options.status_interval_s:
                    break

    async def close(self) -> None:
        """Close the link; idempotent and never raises."""
        if self._link is not None:
            await self._link.close()

    async def select_job(self, job: str) -> None:
        """Recall format job from now on (ZPL cannot confirm it is stored); DeviceRejectedError for a bad name."""
        exchange = self._connected()
        if not FORMAT_NAME.fullmatch(job):
            raise DeviceRejectedError(f"{job!r} is not a ZPL format name (like E:CASE.ZPL)")
        format_zpl = self._options.format_zpl
        if format_zpl is not None and stored_format_name(format_zpl) == job:
            await exchange.send(format_zpl.encode("latin-1"))
        self._format = job
        self.context.log.info("format selected", format=job)

    async def store_format(self, format_zpl: str) -> str:
        """Download a stored format (one ``^XA^DF<name>^FS...^XZ`` block), recall it from now on; return its name."""
        exchange = self._connected()
        try:
            name = stored_format_name(format_zpl)
        except ValueError as err:
            raise DeviceRejectedError(str(err)) from err
        await exchange.send(format_zpl.encode("latin-1"))
        self._format = name
        self.context.log.info("format stored", format=name)
        return name

    async def load(self, records: Sequence[PrintRecord]) -> None:
        """Send one label per record; SENT once written, FAILED (never sent) when a record cannot be composed."""
        exchange = self._connected()
        for record in records:
            try:
                label = self._label(record)
            except ValueError as err:
                await self._emit([self._evidence(record.record_id, PrintOutcome.FAILED, str(err))])
                continue
            await exchange.send(label.encode())
            # Counted only now that the link took it: an answer can never count a label the printer lacks.
            self._sent += 1
            self._mirror.append(record.record_id)
            await self._emit([self._evidence(record.record_id, PrintOutcome.SENT)])

    async def clear(self) -> None:
        """Cancel every label in the printer (~JA); none sent before is reported printed afterwards."""
        exchange = self._connected()
        await exchange.send(CANCEL_ALL)
        self._epoch += 1
        self._mirror.clear()
        self._sent = self._printed = 0
        self._estimate = None
        # Answers still in flight from before ~JA must not count labels sent after it.
        self._snapshots.extend([0] * STALE_WINDOW)

    async def start(self) -> None:
        """Resume printing (~PS)."""
        await self._connected().send(RESUME)

    async def stop(self) -> None:
        """Pause printing (~PP); labels stay in the printer."""
        await self._connected().send(PAUSE)

    async def status(self) -> PrinterStatus:
        """Ask ~HS now and return its traffic light."""
        answer, _ = await self._query("~HS")
        return status_of(answer)

    async def counters(self) -> PrinterCounters:
        """Ask ~HS now: printed = labels sent since the last clear minus those still in the printer."""
        sent = self._sent
        answer, _ = await self._query("~HS")
        waiting = answer.formats_in_buffer + answer.labels_remaining
        return PrinterCounters(printed=max(0, sent - waiting), buffered=waiting)

    # -- inside ---------------------------------------------------------------------------------

    def _connected(self) -> Exchange[HostStatus]:
        if self._exchange is None:
            raise RuntimeError("the printer is not connected: call connect() first")
        return self._exchange

    async def _query(self, what: str) -> tuple[HostStatus, int]:
        """Ask ~HS; return the answer and the fewest labels sent over the last STALE_WINDOW requests."""
        self._requests += 1
        self._snapshots.append(self._sent)
        floor = min(self._snapshots)
        answer = await self._connected().request(
            HOST_STATUS, self._accept, timeout_s=self.context.response_timeout_s, what=what
        )
        return answer, floor

    def _accept(self, _answer: HostStatus) -> bool:
        """Take the next answer (Exchange already dropped those read before the request was written)."""
        extra = self._framer.produced - self._requests
        if extra > self._extra_answers:
            self._extra_answers = extra
            self._estimate = None  # start confirming afresh: answers may now lag their requests
            self.context.log.warning("printer sent more ~HS answers than it was asked for", extra=extra)
        return True

    async def _poll(self) -> list[DeviceEvent]:
        """Ask ~HS once; return the PRINTED evidence and status change it shows."""
        epoch = self._epoch
        answer, sent = await self._query("~HS poll")
        events: list[DeviceEvent] = []
        if epoch == self._epoch:
            events += self._printed_events(sent - answer.formats_in_buffer - answer.labels_remaining)
        status = status_of(answer)
        if status != self._last_status:
            self._last_status = status
            self.context.log.info("printer status", state=status.state, detail=status.detail)
            events.append(PrinterStatusChanged(device_id=self.context.device_id, at=self.context.clock(),
                                               status=status))
        return events

    def _printed_events(self, estimate: int) -> list[DeviceEvent]:
        """Turn one answer's printed count into PRINTED for the oldest labels, once two answers agree."""
        previous, self._estimate = self._estimate, estimate
        if estimate < self._printed and previous != estimate:
            # Never a PRINTED from this: labels this driver did not send, or an answer that went backwards.
            self.context.log.warning(
                "printer holds more labels than this driver sent since its last clear; ignored",
                printed=self._printed, answer_says=estimate, sent=self._sent,
            )
        if previous is None:
            return []
        confirmed = min(previous, estimate, self._printed + len(self._mirror))
        events: list[DeviceEvent] = []
        while self._printed < confirmed:
            self._printed += 1
            events.append(self._evidence(self._mirror.popleft(), PrintOutcome.PRINTED))
        return events

    def _label(self, record: PrintRecord) -> Label:
        if self._format is None:
            raise ValueError("no stored format to recall: set format_name, job or format_zpl, or call select_job")
        fields: list[tuple[int, bytes]] = []
        for name, value in record.fields:
            number = self._numbers.get(name)
            if number is None and (direct := DIRECT_FIELD.fullmatch(name)) is not None:
                number = int(direct.group(1))
            if number is None:
                raise ValueError(f"field {name!r} has no ^FN number (numbered: {', '.join(self._numbers)})")
            fields.append((number, value.encode("utf-8")))
        return Label(self._format, tuple(fields))

    def _evidence(self, record_id: int, outcome: PrintOutcome, detail: str = "") -> PrintEvidence:
        return PrintEvidence(
            device_id=self.context.device_id, at=self.context.clock(), record_id=record_id, outcome=outcome,
            detail=detail,
        )

    async def _emit(self, events: list[DeviceEvent]) -> None:
        for event in events:
            await self.context.events(event)

