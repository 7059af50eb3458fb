"""Hand or fixed scanners that send each read as one line, the way they would type it as a keyboard wedge.

Layers: `Link` (bytes) → `LineFramer` (lines) → this role adapter (prefix, suffix, symbology identifier
→ `CodeRead`). The scanner speaks only when a code passes, so nothing here is a request with a timeout:
reads are awaited for as long as the line stands still, and a dead link shows as an error from the link
(TCP keepalive, or the serial port failing when its adapter goes away).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final, Literal

from pydantic import Field

from drivers.base import DeviceInfo, DriverContext, DriverOptions
from drivers.framing.line import ANY, CR, CRLF, DEFAULT_MAX_LENGTH, LF, Frame, LineEnd, LineFramer
from drivers.scanner.base import CodeReader
from drivers.transport.link import Link, open_link

if TYPE_CHECKING:
    from datetime import datetime

MODEL: Final = "keyboard-wedge scanner"

SYMBOLOGY_ID_LENGTH: Final = 3
"""An AIM symbology identifier is ``]`` plus a code character and a modifier, e.g. ``]d2`` for GS1 DataMatrix."""

TERMINATORS: Final[dict[str, LineEnd]] = {"CR": CR, "LF": LF, "CRLF": CRLF, "any": ANY}


class WedgeScanner(CodeReader):
    """A scanner sending one line per read over TCP or a serial port."""

    class Options(DriverOptions):
        """How the scanner is programmed; match its configuration sheet."""

        terminator: Literal["CR", "LF", "CRLF", "any"] = "CRLF"
        """Suffix key that ends each read; "any" accepts CR, LF or CRLF."""
        max_length: int = Field(DEFAULT_MAX_LENGTH, ge=1, le=1 << 20)
        """Longest read accepted; a longer line is reported as garbage and skipped."""
        prefix: bytes = b""
        """Bytes the scanner is programmed to send before each read; a line without them is garbage."""
        suffix: bytes = b""
        """Bytes the scanner is programmed to send after each read (before the terminator); likewise required."""
        strip_symbology_id: bool = False
        """Drop a leading AIM symbology identifier (``]d2``...). Off by default: it tells GS1 from plain codes."""

    def __init__(self, context: DriverContext, options: DriverOptions) -> None:
        if not isinstance(options, WedgeScanner.Options):
            raise TypeError(f"WedgeScanner takes WedgeScanner.Options, not {type(options).__name__}")
        super().__init__(context, options)
        self._options = options
        self._framer = LineFramer(TERMINATORS[options.terminator], options.max_length)
        self._link: Link | None = None
        self._used = False

    async def connect(self) -> DeviceInfo:
        """Open the link within the context's connect timeout; a wedge scanner has no handshake to make."""
        if self._used:
            raise RuntimeError("a driver is single-use: make a new one to reconnect")
        self._used = True
        self._link = await open_link(
            self.context.transport, connect_timeout_s=self.context.connect_timeout_s, log=self.context.log
        )
        self.context.log.info("scanner link open", peer=self._link.peer)
        return DeviceInfo(model=MODEL)

    async def run(self) -> None:
        """Deliver every read until the link drops (TransientDeviceError) or the task is cancelled."""
        if self._link is None:
            raise RuntimeError("run() needs a connected driver: call connect() first")
        link = self._link
        while True:
            chunk = await link.read()
            # One timestamp per chunk, taken before delivery: back-pressure must not skew when a code was seen.
            at = self.context.clock()
            for item in self._framer.feed(chunk):
                if isinstance(item, Frame):
                    await self._deliver_line(item.payload, at)
                else:
                    await self._deliver_garbage(item.data, item.reason, at)

    async def close(self) -> None:
        """Close the link; idempotent and never raises."""
        if self._link is not None:
            await self._link.close()

    async def _deliver_line(self, line: bytes, at: datetime) -> None:
        options = self._options
        if not line:
            # An empty line is no code (some scanners send a bare terminator for a no-read); the line
            # notices a missing read from its own trigger, so there is nothing to report.
            self.context.log.debug("empty line skipped")
            return
        if not (line.startswith(options.prefix) and line.endswith(options.suffix)) or (
            len(line) < len(options.prefix) + len(options.suffix)
        ):
            await self._deliver_garbage(line, "read without the configured prefix or suffix", at)
            return
        code = line[len(options.prefix) : len(line) - len(options.suffix)]
        if options.strip_symbology_id and code.startswith(b"]") and len(code) >= SYMBOLOGY_ID_LENGTH:
            code = code[SYMBOLOGY_ID_LENGTH:]
        await self._deliver_read(code, at)
