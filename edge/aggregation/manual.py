"""The manual packing station: an operator builds or corrects a case unit by unit with a hand scanner.

Every scan reaches the station as a `CodeRead`. Command codes (``#OPERATOR <name>``, ``#LOGOUT``, ``#ADD``,
``#REMOVE``, ``#REASON <text>``, ``#CLOSE <reason>``; the prefix is configurable) are recognised before GS1
parsing; anything else is a unit code, or in ADD mode with no case open, a case label (SSCC, AI 00) to take
up an open case again. Nothing is packed or removed before an operator has signed in.

ADD packs each unit into the current case, opening one with a fresh SSCC for the running batch with the first
unit in the same store change (a refused first unit leaves no empty case and uses up no SSCC). A case that
becomes full, or one an operator closes short, is handed to the label station (`Completed`), which prints,
verifies and closes it; the station then has no current case. REMOVE takes each scanned unit out of the case
holding it, as rework with the operator's reason.

Every scan gets exactly one outcome message, kept in `messages` and logged; a refused scan never raises out
of `on_event`, so the scanner keeps working.
"""

from __future__ import annotations

import asyncio
import collections
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Literal

import structlog

from drivers.base import CodeRead
from edge.aggregation import AggregationError, ContainerNotFoundError
from edge.aggregation.stations import ScanError, read_elements, resolve_unit
from edge.store.runs import iso_utc
from edge.store.store import utc_now

if TYPE_CHECKING:
    from collections.abc import Callable
    from datetime import datetime

    from drivers.base import DeviceEvent
    from edge.aggregation.ops import ContainerRow
    from edge.aggregation.service import Aggregation
    from edge.aggregation.stations import Completed
    from edge.serials.ledger import SerialLedger

__all__ = ["MESSAGES_KEPT", "ManualStation", "Mode", "Outcome", "StationMessage"]

Mode = Literal["add", "remove"]
Outcome = Literal["accepted", "refused", "notice"]

CASE: Final = "case"
"""The level a manual station builds."""

MESSAGES_KEPT: Final = 100
"""Outcome messages kept for the HMI: a shift's recent history at a bench, not a log (structlog keeps that)."""

MAX_OPERATOR_LENGTH: Final = 64
"""Longest operator name accepted from a badge: a name or badge number, never a page of text."""

MAX_REASON_LENGTH: Final = 200
"""Longest reason accepted from a command code: a sentence for the rework record."""

SHOWN_SCAN: Final = 100
"""Characters of a scan quoted in a message: a whole unit code or case label, cut only when it is garbage."""

_SYMBOLOGY_ID_LENGTH: Final = 3
"""An AIM symbology identifier (``]C0``): a command printed as a barcode may arrive with one in front."""

_NOT_A_PREFIX_START: Final = "0123456789([]"
"""How GS1 data starts (element strings, bracketed HRI, a symbology identifier); a command prefix may not."""

_COMMANDS: Final = "#OPERATOR <name>, #LOGOUT, #ADD, #REMOVE, #REASON <text>, #CLOSE <reason>"


@dataclass(frozen=True, slots=True)
class StationMessage:
    """What the station told the operator about one scan or command."""

    at: str
    outcome: Outcome
    text: str
    scan: str | None
    """The scan quoted (GS shown as ``<GS>``), or None for a message no scan caused."""
    operator: str | None

    def as_dict(self) -> dict[str, Any]:
        """Return the message as JSON-able data."""
        return {"at": self.at, "outcome": self.outcome, "text": self.text, "scan": self.scan,
                "operator": self.operator}


class ManualStation:
    """A bench where a signed-in operator adds units to, or removes them from, cases with a hand scanner."""

    def __init__(
        self,
        aggregation: Aggregation,
        ledger: SerialLedger,
        *,
        station: str,
        completed: Completed,
        command_prefix: str = "#",
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        if not station.strip():
            raise ValueError("a manual station needs a name (station='...')")
        if not command_prefix or command_prefix[0] in _NOT_A_PREFIX_START or not command_prefix.isprintable():
            raise ValueError(
                f"manual station {station}: command prefix {command_prefix!r} must be printable and non-empty, and "
                f"may not start with a digit, '(', '[' or ']' (GS1 data starts that way)"
            )
        self.station = station
        self.messages: collections.deque[StationMessage] = collections.deque(maxlen=MESSAGES_KEPT)
        """What the station told the operator, oldest first, the last MESSAGES_KEPT only."""
        self._aggregation = aggregation
        self._ledger = ledger
        self._completed = completed
        self._prefix = command_prefix
        self._clock = clock
        self._mode: Mode = "add"
        self._operator: str | None = None
        self._reason: str | None = None
        self._case: ContainerRow | None = None
        # The scanner and the HMI (close_short) may act at once; each action reads and replaces _case.
        self._lock = asyncio.Lock()
        self._log = structlog.get_logger("lineside.packing").bind(station=station)

    # -- public ---------------------------------------------------------------------------------

    @property
    def current(self) -> ContainerRow | None:
        """The case being built, as the station last saw it, or None."""
        return self._case

    @property
    def mode(self) -> Mode:
        """Whether a scanned unit is added to the current case or removed from its case."""
        return self._mode

    @property
    def operator(self) -> str | None:
        """The operator signed in, or None."""
        return self._operator

    @property
    def default_reason(self) -> str:
        """The rework reason recorded for a removal when the operator has set none."""
        return f"removed at manual station {self.station}"

    async def on_event(self, event: DeviceEvent) -> None:
        """Act on one scan from the scanner and record its outcome; other events are ignored; never raises."""
        if not isinstance(event, CodeRead):
            return
        data = event.data
        async with self._lock:
            try:
                command = self._command_of(data)
                if command is not None:
                    await self._command(*command, data)
                else:
                    await self._handle(data)
            except AggregationError as err:  # ScanError included
                self._say("refused", str(err), data)
            except Exception as err:  # noqa: BLE001 - a store or hand-off fault must not stop the scanner
                # Not CancelledError (a BaseException): cancellation still ends the driver's run().
                self._log.exception("scan failed", scan=_quote(data))
                self._say("refused", f"the station could not act on this scan ({type(err).__name__}: {err}); "
                          "check the case on the HMI before going on", data)

    async def close_short(self, *, operator: str, reason: str) -> ContainerRow:
        """Hand the current case to the label station to be closed short by operator with reason; return it.

        AggregationError when there is no case, it is empty or no longer open, or operator or reason is blank.
        """
        async with self._lock:
            return await self._close_short(operator, reason)

    def describe(self) -> dict[str, Any]:
        """Return the station's state as JSON-able data: mode, operator, current case, count, last message."""
        case = self._case
        return {
            "station": self.station,
            "mode": self._mode,
            "operator": self._operator,
            "removal_reason": self._reason or self.default_reason,
            "case": None if case is None else case.as_dict(),
            "count": 0 if case is None else case.count,
            "capacity": None if case is None else case.capacity,
            "message": self.messages[-1].as_dict() if self.messages else None,
        }

    # -- commands -------------------------------------------------------------------------------

    def _command_of(self, data: bytes) -> tuple[str, str] | None:
        """Return (command word upper-cased, argument) when data is a command code, else None."""
        text = data.decode("latin-1").strip()
        if text.startswith("]") and text[_SYMBOLOGY_ID_LENGTH:].startswith(self._prefix):
            text = text[_SYMBOLOGY_ID_LENGTH:]
        if not text.startswith(self._prefix):
            return None
        word, _, argument = text[len(self._prefix) :].strip().partition(" ")
        return word.upper(), argument.strip()

    async def _command(self, word: str, argument: str, data: bytes) -> None:
        p = self._prefix
        if word == "OPERATOR":
            self._sign_in(argument, data)
            return
        if word == "LOGOUT":
            if self._operator is None:
                raise ScanError("nobody is signed in")
            self._say("accepted", f"{self._operator} signed out", data)
            self._sign_out()
            return
        if word not in {"ADD", "REMOVE", "REASON", "CLOSE"}:
            raise ScanError(f"unknown command {p}{word}: this station knows {_COMMANDS.replace('#', p)}")
        operator = self._signed_in(f"{p}{word}")
        if len(argument) > MAX_REASON_LENGTH:
            raise ScanError(f"{p}{word}: reason too long ({len(argument)} characters; at most {MAX_REASON_LENGTH})")
        if word in {"ADD", "REMOVE"}:
            self._mode = "add" if word == "ADD" else "remove"
            doing = "adds scanned units to the case" if word == "ADD" else "removes scanned units from their case"
            self._say("accepted", f"mode {word}: the station {doing}", data)
        elif word == "REASON":
            self._reason = argument or None
            self._say("accepted", f"removals are recorded with reason {self._reason or self.default_reason!r}",
                      data)
        else:
            if not argument:
                raise ScanError(f"closing a case short needs a reason: scan {p}CLOSE <reason>")
            case = await self._close_short(operator, argument)
            how = "full" if case.count >= case.capacity else f"closed short by {operator} ({argument})"
            self._say("accepted", f"{case.name} ({case.count} of {case.capacity}) {how}: handed to the label station",
                      data)

    def _sign_in(self, name: str, data: bytes) -> None:
        p = self._prefix
        if not name:
            raise ScanError(f"the badge carries no name: expected {p}OPERATOR <name>")
        if len(name) > MAX_OPERATOR_LENGTH or not name.isprintable():
            raise ScanError(f"operator name {name[:MAX_OPERATOR_LENGTH]!r} is not a name: printable text of at most "
                           f"{MAX_OPERATOR_LENGTH} characters")
        before = self._operator
        self._sign_out()
        self._operator = name
        took_over = f" (took over from {before})" if before is not None and before != name else ""
        self._say("accepted", f"{name} signed in{took_over}; mode ADD", data)

    def _sign_out(self) -> None:
        # The mode and the removal reason are the operator's choices; the next one starts afresh. The case
        # being built stays: it is the bench's, not the operator's.
        self._operator = None
        self._mode = "add"
        self._reason = None

    def _signed_in(self, doing: str) -> str:
        if self._operator is None:
            raise ScanError(f"no operator signed in: scan your badge ({self._prefix}OPERATOR <name>) before {doing}")
        return self._operator

    async def _close_short(self, operator: str, reason: str) -> ContainerRow:
        if not operator.strip() or not reason.strip():
            raise AggregationError(f"closing a case short at {self.station} needs an operator and a reason")
        if self._case is None:
            raise AggregationError(f"no case is being built at {self.station}: nothing to close")
        case = await self._fresh(self._case)
        if case.count == 0:
            raise AggregationError(f"{case.name} is empty: scan units into it, or destroy it through rework")
        if case.count >= case.capacity:
            # Full after all (units added elsewhere): it needs no reason.
            await self._hand_over(case, None, None)
        else:
            await self._hand_over(case, operator, reason)
        # Only now: when the hand-off fails the case stays current, and closing it again retries.
        self._case = None
        self._log.info("case closed short", case=case.identifier, count=case.count, operator=operator,
                       reason=reason)
        return case

    # -- scans ----------------------------------------------------------------------------------

    async def _handle(self, data: bytes) -> None:
        doing = "adding units" if self._mode == "add" else "removing units"
        operator = self._signed_in(doing)
        elements = read_elements(data)
        if "00" in elements:
            await self._case_label(elements["00"], operator, data)
        elif self._mode == "add":
            await self._add(data, elements, operator)
        else:
            await self._remove(data, elements, operator)

    async def _case_label(self, sscc: str, operator: str, data: bytes) -> None:
        p = self._prefix
        if self._mode == "remove":
            raise ScanError(f"SSCC {sscc} is a case label: in REMOVE mode scan the units to take out "
                           f"({p}ADD, then the label, takes up an open case)")
        if self._case is not None:
            if self._case.identifier == sscc:
                self._say("accepted", f"already building {self._case.name} ({self._case.count} of "
                          f"{self._case.capacity})", data)
                return
            raise ScanError(f"{self._case.name} is being built here: fill it or close it short ({p}CLOSE <reason>) "
                           f"before taking up SSCC {sscc}")
        case = await self._aggregation.find(sscc)
        if case.level != CASE:
            raise ScanError(f"{case.name} is a {case.level}: this station builds cases")
        if case.state == "closed":
            raise ScanError(f"{case.name} is closed: reopen it through rework (the HMI) before changing it here")
        if case.state != "open":
            raise ScanError(f"{case.name} is {case.state}: nothing is packed into it again")
        await self._check_running(case)
        if case.count >= case.capacity:
            # A full case whose hand-off failed earlier: taking it up means handing it over again.
            await self._hand_over(case, None, None)
            self._say("accepted", f"{case.name} is full ({case.count} of {case.capacity}): handed to the label "
                      "station", data)
            return
        self._case = case
        self._log.info("case taken up", case=case.identifier, count=case.count, operator=operator)
        self._say("accepted", f"working on {case.name} again ({case.count} of {case.capacity})", data)

    async def _add(self, data: bytes, elements: dict[str, str], operator: str) -> None:
        serial_id = await resolve_unit(self._ledger, data)
        unit = _unit_name(elements)
        case = self._case
        if case is not None and not await self._still_ours(case):
            case = None
        if case is None:
            batch = await self._ledger.active_batch()
            if batch is None:
                raise ScanError(f"no batch is running: {unit} cannot go into a new case")
            case = await self._open_and_pack(batch.id, serial_id, operator)
            opened = " (a new case)"
            self._log.info("case opened", case=case.identifier, capacity=case.capacity, operator=operator)
        else:
            case = await self._aggregation.pack(case.id, serial_ids=[serial_id], operator=operator,
                                                station=self.station)
            opened = ""
        self._log.debug("unit packed", serial_id=serial_id, case=case.identifier, count=case.count)
        if case.count < case.capacity:
            self._case = case
            self._say("accepted", f"{unit} packed into {case.name}{opened}: {case.count} of {case.capacity}", data)
            return
        self._case = None
        text = f"{unit} packed into {case.name}{opened}: full ({case.count} of {case.capacity})"
        try:
            await self._hand_over(case, None, None)
        except Exception as err:  # noqa: BLE001 - the unit is packed for good; only the hand-off failed
            self._log.exception("full case not handed to the label station", case=case.identifier)
            self._say("accepted", text, data)
            self._say("notice", f"the label station did not take {case.name} ({type(err).__name__}: {err}); "
                      "scan its label to hand it over again", None)
            return
        self._say("accepted", f"{text}: handed to the label station", data)

    async def _remove(self, data: bytes, elements: dict[str, str], operator: str) -> None:
        serial_id = await resolve_unit(self._ledger, data)
        unit = _unit_name(elements)
        before = await self._aggregation.parent_of_serial(serial_id)
        if before is None:
            raise ScanError(f"{unit} is in no container: nothing to remove")
        reason = self._reason or self.default_reason
        after = await self._aggregation.unpack(before.id, serial_ids=[serial_id], operator=operator, reason=reason,
                                               station=self.station)
        if self._case is not None and self._case.id == after.id:
            self._case = after
        reopened = " (reopened: it was closed)" if before.state == "closed" else ""
        self._log.info("unit removed", serial_id=serial_id, case=after.identifier, reason=reason, operator=operator)
        self._say("accepted", f"{unit} removed from {after.name}{reopened}: {after.count} of {after.capacity} left; "
                  f"reason {reason!r}", data)

    # -- helpers --------------------------------------------------------------------------------

    async def _open_and_pack(self, batch_id: int, serial_id: int, operator: str) -> ContainerRow:
        """Open a case with a fresh SSCC and pack the unit into it, in one store change: both or neither."""
        return await self._aggregation.open_and_pack(batch_id, CASE, serial_ids=[serial_id], operator=operator,
                                                     station=self.station)

    async def _fresh(self, case: ContainerRow) -> ContainerRow:
        """Return the case as stored now; when it is no longer open here, let go of it and say why."""
        try:
            fresh = await self._aggregation.container(case.id)
        except ContainerNotFoundError:
            self._case = None
            raise
        if fresh.state != "open":
            self._case = None
            raise AggregationError(f"{fresh.name} is {fresh.state} now (changed elsewhere): the station let go of it")
        return fresh

    async def _still_ours(self, case: ContainerRow) -> bool:
        """Whether the current case still belongs to the running batch; if not, let go of it and say so."""
        batch = await self._ledger.active_batch()
        if batch is not None and batch.id == case.batch_id:
            return True
        self._case = None
        running = "no batch is running" if batch is None else f"{batch.name} is running"
        self._log.warning("case let go: its batch no longer runs", case=case.identifier, batch=case.batch_id)
        self._say("notice", f"let go of {case.name}: it belongs to batch {case.batch_id} and {running}", None)
        return False

    async def _check_running(self, case: ContainerRow) -> None:
        batch = await self._ledger.active_batch()
        if batch is None or batch.id != case.batch_id:
            running = "no batch is running" if batch is None else f"{batch.name} is running"
            raise ScanError(f"{case.name} belongs to batch {case.batch_id}, but {running}")

    async def _hand_over(self, case: ContainerRow, operator: str | None, reason: str | None) -> None:
        # The label station queues the case and returns; a slow hand-off holds the scanner back (its reads
        # wait in the link), it never loses one.
        await self._completed(case, operator, reason)
        self._log.info("case handed to the label station", case=case.identifier, count=case.count,
                       short_reason=reason)

    def _say(self, outcome: Outcome, text: str, data: bytes | None) -> None:
        message = StationMessage(at=iso_utc(self._clock()), outcome=outcome, text=text,
                                 scan=None if data is None else _quote(data), operator=self._operator)
        self.messages.append(message)
        log = self._log.warning if outcome == "refused" else self._log.info
        log(f"scan {outcome}" if data is not None else "station notice", message=text, scan=message.scan,
            operator=self._operator)


def _unit_name(elements: dict[str, str]) -> str:
    return f"unit (01){elements.get('01', '?')}(21){elements.get('21', '?')}"


def _quote(data: bytes) -> str:
    text = data.decode("latin-1").strip("\r\n").replace("\x1d", "<GS>")
    return text[:SHOWN_SCAN] + ("..." if len(text) > SHOWN_SCAN else "")
