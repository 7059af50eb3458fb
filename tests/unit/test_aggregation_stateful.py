"""Random rework sequences on a real SQLite store keep the hierarchy consistent (DESIGN invariant 5).

Every step opens, packs, unpacks, replaces, destroys, closes or relabels something, drawn among both
legal and illegal choices; a refusal must be an AggregationError that wrote nothing, and after every
step the invariants below hold on the database itself.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from edge.aggregation import AggregationError, ops
from edge.gs1.identifiers import has_valid_check_digit
from edge.serials.states import SerialState
from tests.unit.test_aggregation_ops import NOW, PRODUCT, change, open_db, running_batch

LEVELS = ("bundle", "case", "pallet")
COUNT = "(SELECT count(*) FROM aggregation_member AS m WHERE m.parent_id = container.id AND m.unpacked_event IS NULL)"
UNPACKED = "id NOT IN (SELECT child_id FROM aggregation_member WHERE child_id IS NOT NULL AND unpacked_event IS NULL)"
CHILD_LEVEL = {"bundle": "unit", "case": "bundle", "pallet": "case"}
WHO = {"operator": "op", "reason": "rework"}


class AggregationMachine(RuleBasedStateMachine):
    """Drive the ops functions; check the database against the rules after every step."""

    def __init__(self) -> None:
        super().__init__()
        self.directory = Path(tempfile.mkdtemp(prefix="lineside-agg-"))
        self.conn = open_db(self.directory)
        self.refused = 0
        self.done = 0

    @initialize()
    def batches(self) -> None:
        # Bundles of 2, cases of 3 bundles, pallets of 2 cases; a few rejected units and a second batch.
        self.batch, self.units = running_batch(self.conn, units=30, rejected=2, product=PRODUCT)
        self.other, self.other_units = running_batch(self.conn, "WO-2", line="line-2", units=3, product=PRODUCT)
        self.all_units = [*self.units, *self.other_units]

    def teardown(self) -> None:
        self.conn.close()
        shutil.rmtree(self.directory, ignore_errors=True)

    # -- helpers ----------------------------------------------------------------------------------

    def _containers(self) -> list[int]:
        return [row[0] for row in self.conn.execute("SELECT id FROM container ORDER BY id")]

    def _free_units(self) -> list[int]:
        return [
            row[0] for row in self.conn.execute(
                "SELECT id FROM serial WHERE state = 4 AND batch_id = ? AND id NOT IN"
                " (SELECT serial_id FROM aggregation_member WHERE serial_id IS NOT NULL AND unpacked_event IS NULL)"
                " ORDER BY id",
                (self.batch,),
            )
        ]

    def _attempt(self, fn, *args, **kwargs) -> object:
        """Apply one op; a refusal must be an AggregationError and leave the log untouched."""
        before = self.conn.execute("SELECT count(*) FROM aggregation_event").fetchone()[0]
        try:
            result = change(self.conn, fn, *args, now=NOW, **kwargs)
        except AggregationError:
            after = self.conn.execute("SELECT count(*) FROM aggregation_event").fetchone()[0]
            assert after == before, "a refused change wrote events"
            self.refused += 1
            return None
        self.done += 1
        return result

    def _pick(self, data, choices: list[int], *, fallback: int = 99_999) -> int:
        return data.draw(st.sampled_from(choices)) if choices else fallback

    def _box(self, data, where: str = "state <> 'destroyed'", *params: object) -> int:
        """Mostly a container matching where (the interesting choice), sometimes any container at all."""
        sql = f"SELECT id FROM container WHERE {where} ORDER BY id"  # noqa: S608 - where is the test's own text
        fitting = [row[0] for row in self.conn.execute(sql, params)]
        if fitting and data.draw(st.integers(0, 3)) != 3:  # hypothesis favours 0: make it the usual case
            return data.draw(st.sampled_from(fitting))
        return self._pick(data, self._containers())

    def _units(self, data, *, most: int = 3) -> list[int]:
        """Mostly units that may be packed, sometimes any unit at all (rejected, packed, other batch)."""
        free = self._free_units()
        pool = data.draw(st.sampled_from(["free", "any"])) if free else "any"
        source = free if pool == "free" else self.all_units
        return data.draw(st.lists(st.sampled_from(source), min_size=1, max_size=most, unique=True))

    def _has_containers(self) -> bool:
        return bool(self._containers())

    def _open_count(self) -> int:
        return int(self.conn.execute("SELECT count(*) FROM container WHERE state = 'open'").fetchone()[0])

    # -- rules ------------------------------------------------------------------------------------

    @precondition(lambda self: self._open_count() < 4)
    @rule(level=st.sampled_from(LEVELS))
    def open_container(self, level: str) -> None:
        self._attempt(ops.open_container, self.batch, level)

    @precondition(lambda self: self._has_containers())
    @rule(data=st.data())
    def pack_units(self, data) -> None:
        parent = self._box(data, f"state = 'open' AND level = 'bundle' AND {COUNT} < capacity")
        units = self._units(data, most=2)
        mixed = data.draw(st.integers(0, 9)) == 0  # now and then: a unit of the other batch may go in
        after = self._attempt(ops.pack, parent, serial_ids=units, allow_mixed_batches=mixed)
        if after is not None:
            assert set(units) <= set(ops.contents(self.conn, parent).serial_ids)

    @precondition(lambda self: self._has_containers())
    @rule(data=st.data(), level=st.sampled_from(("case", "pallet")))
    def pack_container(self, data, level: str) -> None:
        parent = self._box(data, f"state = 'open' AND level = ? AND {COUNT} < capacity", level)
        child_level = "bundle" if level == "case" else "case"
        child = self._box(data, f"state = 'closed' AND level = ? AND {UNPACKED}", child_level)
        if self._attempt(ops.pack, parent, containers=[child]) is not None:
            assert ops.container(self.conn, child).parent_id == parent

    @precondition(lambda self: self._has_containers())
    @rule(data=st.data())
    def unpack(self, data) -> None:
        parent = self._box(data, "id IN (SELECT parent_id FROM aggregation_member WHERE unpacked_event IS NULL)")
        held = ops.contents(self.conn, parent) if parent != 99_999 else ops.Contents((), ())
        if data.draw(st.booleans()) or not len(held):
            self._attempt(ops.unpack, parent, **WHO)
        else:
            units = data.draw(st.lists(st.sampled_from(held.serial_ids), unique=True)) if held.serial_ids else []
            boxes = data.draw(st.lists(st.sampled_from(held.container_ids), unique=True)) if held.container_ids else []
            self._attempt(ops.unpack, parent, serial_ids=units, containers=boxes, **WHO)

    @precondition(lambda self: self._has_containers())
    @rule(data=st.data())
    def replace(self, data) -> None:
        parent = self._box(data, "level = 'bundle' AND state <> 'destroyed'")
        held = ops.contents(self.conn, parent).serial_ids if parent != 99_999 else ()
        old = self._pick(data, list(held) or self.all_units)
        new = self._pick(data, self._free_units() or self.all_units)
        if self._attempt(ops.replace, parent, old, new, **WHO) is not None:
            assert ops.parent_of_serial(self.conn, new).id == parent
            assert ops.parent_of_serial(self.conn, old) is None

    @rule(data=st.data(), now=st.integers(0, 7))
    def destroy_unit(self, data, now: int) -> None:
        if now != 7:  # rarely, or little would be left to pack
            return
        packed = [row[0] for row in self.conn.execute(
            "SELECT serial_id FROM aggregation_member WHERE serial_id IS NOT NULL AND unpacked_event IS NULL")]
        unit = self._pick(data, packed if packed and not data.draw(st.booleans()) else self.all_units)
        if self._attempt(ops.destroy_unit, unit, **WHO) is not None:
            assert ops.parent_of_serial(self.conn, unit) is None

    @precondition(lambda self: self._has_containers())
    @rule(data=st.data(), now=st.integers(0, 3))
    def destroy_container(self, data, now: int) -> None:
        if now == 3:  # rarely, or little would be left to pack
            self._attempt(ops.destroy_container, self._box(data), **WHO)

    @precondition(lambda self: self._has_containers())
    @rule(data=st.data(), short=st.booleans())
    def close(self, data, short: bool) -> None:
        box = self._box(data, f"state = 'open' AND {COUNT} > 0" + ("" if short else f" AND {COUNT} = capacity"))
        if short:
            self._attempt(ops.close_container, box, operator="op", partial_reason="batch end")
        else:
            self._attempt(ops.close_container, box)

    @precondition(lambda self: self._has_containers())
    @rule(data=st.data())
    def void_label(self, data) -> None:
        box = self._box(data)
        self._attempt(ops.void_label, box, **WHO)

    # -- invariants -------------------------------------------------------------------------------

    def _rows(self, sql: str, *params: object) -> list[tuple]:
        return self.conn.execute(sql, params).fetchall()

    @invariant()
    def a_child_is_in_at_most_one_parent(self) -> None:
        assert self._rows(
            "SELECT serial_id FROM aggregation_member WHERE serial_id IS NOT NULL AND unpacked_event IS NULL"
            " GROUP BY serial_id HAVING count(*) > 1"
        ) == []
        assert self._rows(
            "SELECT child_id FROM aggregation_member WHERE child_id IS NOT NULL AND unpacked_event IS NULL"
            " GROUP BY child_id HAVING count(*) > 1"
        ) == []

    @invariant()
    def packed_units_are_commissioned(self) -> None:
        assert self._rows(
            "SELECT m.serial_id, s.state FROM aggregation_member AS m JOIN serial AS s ON s.id = m.serial_id"
            " WHERE m.unpacked_event IS NULL AND s.state <> ?",
            int(SerialState.COMMISSIONED),
        ) == []

    @invariant()
    def containers_keep_their_rules(self) -> None:
        if not hasattr(self, "batch"):
            return
        for box in ops.containers_of_batch(self.conn, self.batch):
            assert box.count <= box.capacity, box
            if box.state == "closed":
                assert box.count == box.capacity or (box.partial_reason and box.closed_by and box.count > 0), box
            if box.state == "destroyed":
                assert box.count == 0, box
                assert box.parent_id is None, box
            if box.parent_id is not None:
                parent = ops.container(self.conn, box.parent_id)
                assert box.state == "closed", box
                assert CHILD_LEVEL[parent.level] == box.level, (parent, box)
            held = ops.contents(self.conn, box.id)
            if held.serial_ids:
                assert CHILD_LEVEL[box.level] == "unit", box
            destroyed = self._rows(
                "SELECT id FROM serial WHERE state = ? AND id IN (SELECT value FROM json_each(?))",
                int(SerialState.DESTROYED), str(list(held.serial_ids)),
            )
            assert destroyed == [], (box, destroyed)

    @invariant()
    def membership_is_the_replay_of_the_log(self) -> None:
        if not hasattr(self, "batch"):
            return
        events = [e for batch in (self.batch, self.other) for e in ops.aggregation_events(self.conn, batch)]
        events.sort(key=lambda e: e.id)
        units, boxes = ops.replay(events)
        assert units == dict(self._rows(
            "SELECT serial_id, parent_id FROM aggregation_member WHERE serial_id IS NOT NULL AND unpacked_event IS NULL"
        ))
        assert boxes == dict(self._rows(
            "SELECT child_id, parent_id FROM aggregation_member WHERE child_id IS NOT NULL AND unpacked_event IS NULL"
        ))

    @invariant()
    def ssccs_are_valid_and_never_reused(self) -> None:
        used = [row[0] for row in self._rows("SELECT identifier FROM container WHERE kind = 'sscc'")]
        voided = [row[0] for row in self._rows("SELECT sscc FROM sscc_voided")]
        everything = used + voided
        assert len(set(everything)) == len(everything)
        assert all(has_valid_check_digit(sscc) for sscc in everything)
        # One SSCC per container opened and one more per label voided: none was lost or handed out twice.
        allocated = self._rows(
            "SELECT count(*) FROM aggregation_event"
            " WHERE action = 'void_label' OR (action = 'open' AND reason = 'opened')"
        )[0][0]
        assert len(everything) == allocated

    @invariant()
    def destroyed_units_are_recorded_by_the_ledger(self) -> None:
        # Each destroyed unit's last move is a rework destroy, recorded through the serial ledger's path.
        rows = self._rows(
            "SELECT s.id, t.reason FROM serial AS s JOIN serial_history AS h ON h.serial_id = s.id"
            " JOIN transition AS t ON t.id = h.transition_id WHERE s.state = ? AND t.to_state = ?",
            int(SerialState.DESTROYED), int(SerialState.DESTROYED),
        )
        assert all(reason == "destroyed in rework: rework" for _, reason in rows)
        count = self._rows("SELECT count(*) FROM serial WHERE state = ?", int(SerialState.DESTROYED))[0][0]
        assert len(rows) == count


AggregationMachine.TestCase.settings = settings(
    max_examples=150,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestAggregationRules = AggregationMachine.TestCase
