"""A keyboard-wedge style scanner: each scan goes out as one terminated line, framed by the driver's own framer."""

from __future__ import annotations

import asyncio
from typing import Final

from drivers.framing.line import CRLF, DEFAULT_MAX_LENGTH, LineFramer
from simulators.base import LOOPBACK, SimTransport, Simulator, Sleep


class WedgeScannerSim(Simulator):
    """Sends prefix + symbology id + code + suffix + terminator per scan, to every connected driver."""

    def __init__(
        self,
        *,
        terminator: bytes = CRLF,
        prefix: bytes = b"",
        suffix: bytes = b"",
        symbology_id: bytes = b"",
        max_length: int = DEFAULT_MAX_LENGTH,
        transport: SimTransport = "tcp",
        host: str = LOOPBACK,
        port: int = 0,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        super().__init__(transport=transport, host=host, port=port, sleep=sleep)
        self.framer: Final = LineFramer(terminator, max_length)
        self.prefix: Final = prefix
        self.suffix: Final = suffix
        self.symbology_id: Final = symbology_id
        self.scanned: list[bytes] = []
        """Every code scanned, in order, whatever the faults then did to it on the wire."""

    async def scan(self, code: bytes) -> None:
        """Read code and send it as one line to every connected driver; raise RuntimeError if none is."""
        line = self.framer.encode(self.prefix + self.symbology_id + code + self.suffix)
        links = self.connections
        if not links:
            raise RuntimeError("no driver is connected to the scanner")
        self.scanned.append(code)
        for link in links:
            await link.write(line)
