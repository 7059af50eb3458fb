"""What every simulated smart reader shares: codes queued in front of it, triggers that take them, answer faults.

`ReaderSimulator` keeps the codes "in front of the reader" (`present`): each trigger, from the host or from the
reader's own input (`read_on_own_trigger`), takes the next one, or reads nothing (no-read) when the queue is empty
or a no-read was injected. Besides the byte faults of `Simulator.faults`, answers can be delayed, left out or
refused (`inject_reply`), and a grade suffix can be appended to every read, as readers set to verify do. Each
dialect (`simulators.dmcc`, `simulators.keyence_sr`) subclasses it with its own framing.
"""

from __future__ import annotations

import abc
import asyncio
from collections import deque
from enum import StrEnum
from typing import TYPE_CHECKING, Final

from simulators.base import LOOPBACK, SimTransport, Simulator, Sleep

if TYPE_CHECKING:
    from simulators.base import SimConnection


class ReaderFault(StrEnum):
    DELAYED = "delayed"
    """Answer the next command after a delay."""
    MISSING = "missing"
    """Carry out the next command but never answer it."""
    REFUSED = "refused"
    """Refuse the next command with the dialect's error answer; nothing is carried out."""


class ReaderSimulator(Simulator, abc.ABC):
    """A smart reader: codes queued in front of it, triggers that take them, answer faults. Dialects subclass it."""

    def __init__(
        self,
        *,
        no_read: bytes,
        grade_suffix: bytes = b"",
        transport: SimTransport = "tcp",
        host: str = LOOPBACK,
        port: int = 0,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        super().__init__(transport=transport, host=host, port=port, sleep=sleep)
        self.no_read: Final = no_read
        self.grade_suffix = grade_suffix
        """Appended to every read (e.g. b",A" for a reader set to output its ISO 15415 grade); not to no-reads."""
        self.sleep: Final = sleep
        self.in_front: deque[bytes | None] = deque()
        """Codes waiting to pass the reader, oldest first; None is a pack without a readable code."""
        self.reads: list[bytes | None] = []
        """What every trigger read, in order (None: a no-read), whatever the faults then did on the wire."""
        self._no_reads = 0
        self._replies: deque[tuple[ReaderFault, float]] = deque()

    def present(self, code: bytes | None) -> None:
        """Put a code (None: nothing readable) in front of the reader; triggers take them in order."""
        self.in_front.append(code)

    def inject_no_read(self, count: int = 1) -> None:
        """Make the next count triggers read nothing, whatever is in front (each still takes its code)."""
        self._no_reads += count

    def inject_reply(self, fault: ReaderFault, delay_s: float = 0.0) -> None:
        """Apply fault to the next command answered (queued: one fault per command)."""
        self._replies.append((fault, delay_s))

    def take_reply_fault(self) -> tuple[ReaderFault, float] | None:
        """Use up the next answer fault; call once per command, before carrying it out."""
        return self._replies.popleft() if self._replies else None

    def take_read(self) -> bytes | None:
        """Trigger once: return the code read (grade suffix included), or None on a no-read."""
        code = self.in_front.popleft() if self.in_front else None
        if self._no_reads:
            self._no_reads -= 1
            code = None
        self.reads.append(code)
        return None if code is None else code + self.grade_suffix

    def read_bytes(self, code: bytes | None) -> bytes:
        """Return what the reader outputs for a read: the code, or its no-read string."""
        return self.no_read if code is None else code

    async def answer(self, conn: SimConnection, data: bytes, planned: tuple[ReaderFault, float] | None) -> None:
        """Send one answer as the planned fault says: as it is, never (MISSING), or late (DELAYED)."""
        if planned is not None:
            fault, delay_s = planned
            if fault is ReaderFault.MISSING:
                return
            if fault is ReaderFault.DELAYED:
                await self.sleep(delay_s)
        await conn.write(data)

    async def read_on_own_trigger(self) -> bytes | None:
        """Trigger from the reader's own input (a photo-eye on the reader): send the read to every link unasked."""
        code = self.take_read()
        for link in self.connections:
            await link.write(self.unsolicited(code))
        return code

    @abc.abstractmethod
    def unsolicited(self, code: bytes | None) -> bytes:
        """Return the bytes a read made on the reader's own trigger goes out as, in the dialect's framing."""
