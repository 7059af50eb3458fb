"""The reader role: a device that reads codes off packs (hand or fixed scanners, smart cameras)."""

from __future__ import annotations

import abc
from typing import TYPE_CHECKING, ClassVar

from drivers.base import CodeRead, DeviceGarbage, Driver

if TYPE_CHECKING:
    from datetime import datetime


class CodeReader(Driver, abc.ABC):
    """A code reader. Contract for every implementation.

    - run() delivers one `CodeRead` per code through ``context.events``, in the order the device read them,
      and awaits each delivery (back-pressure: a read is never dropped).
    - ``CodeRead.data`` is the code's bytes exactly as the device sent them, minus the wire framing only:
      GS (0x1D) separators, symbology identifiers and any other byte stay unless an option says otherwise.
    - Bytes the wire protocol cannot parse become `DeviceGarbage` events; the link stays up.
    - When the link is lost run() raises `TransientDeviceError`; a half-received code is never delivered.

    Smart readers (Cognex DMCC, Keyence SR) will add ``trigger()`` here; line-driven scanners need nothing more.
    """

    role: ClassVar[str] = "reader"

    async def _deliver_read(self, data: bytes, at: datetime) -> None:
        """Hand one code to the line, waiting while the line is busy."""
        await self.context.events(CodeRead(device_id=self.context.device_id, at=at, data=data))

    async def _deliver_garbage(self, data: bytes, reason: str, at: datetime) -> None:
        """Report bytes that were skipped to resynchronise."""
        self.context.log.debug("garbage", reason=reason, data=data)
        await self.context.events(DeviceGarbage(device_id=self.context.device_id, at=at, data=data, reason=reason))
