"""Aggregation on the event loop: each method is one store change, durable before it returns.

The rules live in edge.aggregation.ops; this wraps them for the line, the HMI and the CLI, stamping
every change with the store clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

from edge.aggregation import ops
from edge.store.runs import iso_utc
from edge.store.store import utc_now

if TYPE_CHECKING:
    import sqlite3
    from collections.abc import Callable, Sequence
    from datetime import datetime

    from edge.aggregation.ops import AggregationEvent, ContainerRow, Contents, Destroyed
    from edge.store import Store


@dataclass(frozen=True, slots=True)
class Relabelled:
    """A container whose SSCC was voided: the voided SSCC and the container with its new one."""

    voided: str
    container: ContainerRow


class Aggregation:
    """Containers of the store's batches; every change raises AggregationError or is committed when it returns."""

    def __init__(self, store: Store, *, clock: Callable[[], datetime] = utc_now) -> None:
        self.store = store
        self._clock = clock

    def _now(self) -> str:
        return iso_utc(self._clock())

    async def open_container(
        self,
        batch_id: int,
        level: str,
        *,
        identifier: str | None = None,
        operator: str | None = None,
        station: str | None = None,
    ) -> ContainerRow:
        """Open an empty container of the batch at level (an SSCC allocated unless identifier is given)."""
        now = self._now()

        def change(conn: sqlite3.Connection) -> ContainerRow:
            container_id = ops.open_container(
                conn, batch_id, level, identifier=identifier, now=now, operator=operator, station=station
            )
            return ops.container(conn, container_id)

        return await self.store.write(change)

    async def open_and_pack(
        self,
        batch_id: int,
        level: str,
        *,
        serial_ids: Sequence[int] = (),
        containers: Sequence[int] = (),
        operator: str | None = None,
        station: str | None = None,
    ) -> ContainerRow:
        """Open a container with a fresh SSCC and pack into it, in one change: a refused pack opens nothing."""
        now = self._now()

        def change(conn: sqlite3.Connection) -> ContainerRow:
            container_id = ops.open_container(conn, batch_id, level, now=now, operator=operator, station=station)
            return ops.pack(conn, container_id, serial_ids=tuple(serial_ids), containers=tuple(containers), now=now,
                            operator=operator, station=station)

        return await self.store.write(change)

    async def pack(
        self,
        parent: int,
        *,
        serial_ids: Sequence[int] = (),
        containers: Sequence[int] = (),
        operator: str | None = None,
        station: str | None = None,
        allow_mixed_batches: bool = False,
    ) -> ContainerRow:
        """Put units and child containers into the open container parent; return it after."""
        return await self.store.write(partial(
            ops.pack, parent=parent, serial_ids=tuple(serial_ids), containers=tuple(containers), now=self._now(),
            operator=operator, station=station, allow_mixed_batches=allow_mixed_batches,
        ))

    async def unpack(
        self,
        parent: int,
        *,
        serial_ids: Sequence[int] | None = None,
        containers: Sequence[int] | None = None,
        operator: str,
        reason: str,
        station: str | None = None,
    ) -> ContainerRow:
        """Take the named children (none named: everything) out of parent, reopening it if closed."""
        return await self.store.write(partial(
            ops.unpack, parent=parent, serial_ids=None if serial_ids is None else tuple(serial_ids),
            containers=None if containers is None else tuple(containers), now=self._now(), operator=operator,
            reason=reason, station=station,
        ))

    async def replace(
        self,
        parent: int,
        old_serial_id: int,
        new_serial_id: int,
        *,
        operator: str,
        reason: str,
        station: str | None = None,
    ) -> ContainerRow:
        """Swap one unit of parent for another commissioned, unpacked unit."""
        return await self.store.write(partial(
            ops.replace, parent=parent, old_serial_id=old_serial_id, new_serial_id=new_serial_id, now=self._now(),
            operator=operator, reason=reason, station=station,
        ))

    async def destroy_unit(
        self, serial_id: int, *, operator: str, reason: str, station: str | None = None
    ) -> Destroyed:
        """Destroy one commissioned unit, taking it out of its container first."""
        return await self.store.write(partial(
            ops.destroy_unit, serial_id=serial_id, now=self._now(), operator=operator, reason=reason, station=station,
        ))

    async def destroy_container(
        self, container_id: int, *, operator: str, reason: str, station: str | None = None
    ) -> Destroyed:
        """Destroy a container and everything in it."""
        return await self.store.write(partial(
            ops.destroy_container, container_id=container_id, now=self._now(), operator=operator, reason=reason,
            station=station,
        ))

    async def close_container(
        self,
        container_id: int,
        *,
        operator: str | None = None,
        partial_reason: str | None = None,
        station: str | None = None,
    ) -> ContainerRow:
        """Close a container: full, or short when an operator gives partial_reason."""
        return await self.store.write(partial(
            ops.close_container, container_id=container_id, now=self._now(), operator=operator,
            partial_reason=partial_reason, station=station,
        ))

    async def void_label(
        self, container_id: int, *, reason: str, operator: str, station: str | None = None
    ) -> Relabelled:
        """Void the container's SSCC for good and give it a new one (for a label that failed verification)."""
        now = self._now()

        def change(conn: sqlite3.Connection) -> Relabelled:
            voided = ops.container(conn, container_id).identifier
            ops.void_label(conn, container_id, now=now, reason=reason, operator=operator, station=station)
            return Relabelled(voided, ops.container(conn, container_id))

        return await self.store.write(change)

    # -- reads ----------------------------------------------------------------------------------

    async def container(self, container_id: int) -> ContainerRow:
        """Return one container; ContainerNotFoundError when there is none."""
        return await self.store.read(partial(ops.container, container_id=container_id))

    async def find(self, identifier: str) -> ContainerRow:
        """Return the container an SSCC or SGTIN identifies now."""
        return await self.store.read(partial(ops.find_container, identifier=identifier))

    async def contents(self, container_id: int) -> Contents:
        """Return what a container holds now."""
        return await self.store.read(partial(ops.contents, container_id=container_id))

    async def containers_of_batch(
        self, batch_id: int, *, level: str | None = None, state: str | None = None
    ) -> list[ContainerRow]:
        """Return the batch's containers, oldest first."""
        return await self.store.read(partial(ops.containers_of_batch, batch_id=batch_id, level=level, state=state))

    async def parent_of_serial(self, serial_id: int) -> ContainerRow | None:
        """Return the container holding a unit now, or None."""
        return await self.store.read(partial(ops.parent_of_serial, serial_id=serial_id))

    async def events(self, batch_id: int, *, after: int = 0) -> list[AggregationEvent]:
        """Return the batch's aggregation events after the id given, in order."""
        return await self.store.read(partial(ops.aggregation_events, batch_id=batch_id, after=after))
