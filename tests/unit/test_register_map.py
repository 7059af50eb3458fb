"""The PLC register map: the shipped default, its layout rules, and YAML errors that name file, line and problem."""

from __future__ import annotations

from pathlib import Path

import pydantic
import pytest

from drivers.plc.base import Station
from drivers.plc.modbus import ModbusLineIo
from drivers.plc.register_map import (
    DEFAULT_MAP_PATH,
    MAX_READ_REGISTERS,
    RegisterMap,
    WordOrder,
    load_register_map,
    load_register_map_text,
    plan_reads,
)
from edge.errors import ConfigError

DEFAULT_TEXT = DEFAULT_MAP_PATH.read_text(encoding="utf-8")


def errors_of(text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_register_map_text(text, "map.yaml")
    return [str(issue) for issue in caught.value.issues]


def test_the_default_map_follows_the_proposal_where_it_can():
    m = load_register_map()
    assert m.word_order is WordOrder.HIGH_FIRST
    di = m.discrete_inputs
    assert (di.pd_printer, di.pd_camera, di.pd_reject, di.reject_confirm, di.line_running) == (0, 1, 2, 3, 4)
    assert (m.coils.heartbeat, m.coils.ready) == (17, 18)
    assert m.holding_registers.encoder == 0


def test_the_default_map_is_polled_in_one_request():
    m = load_register_map()
    assert plan_reads(m.poll_units()) == [(0, 114)]
    assert m.station_span(Station.REJECT) == (72, 2 + 8 * 5)
    assert m.register_count() == 248


def test_every_entry_of_the_default_file_is_documented():
    # Each value has a comment on its line or just above it (entries: is explained once, above the stations).
    lines = DEFAULT_TEXT.splitlines()
    for index, line in enumerate(lines):
        stripped = line.strip()
        if stripped.startswith(("#", "entries:")) or not stripped or stripped.endswith(":"):
            continue
        assert "#" in line or lines[index - 1].lstrip().startswith("#"), f"undocumented map entry: {line!r}"
    assert "PROPOSAL, NOT A STANDARD" in DEFAULT_TEXT


@pytest.mark.parametrize("order", list(WordOrder))
def test_uint32_words_round_trip_in_either_order(order):
    m = load_register_map().model_copy(update={"word_order": order})
    for value in (0, 1, 0xFFFF, 0x10000, 0x12345678, 0xFFFFFFFF):
        assert m.from_words(m.to_words(value)) == value
    assert m.to_words(0x12345678) == ([0x1234, 0x5678] if order is WordOrder.HIGH_FIRST else [0x5678, 0x1234])


def test_verdict_slots_wrap_at_the_ring_size():
    m = load_register_map()
    assert m.verdict_address(1) == 203
    assert m.verdict_address(17) == m.verdict_address(1)
    assert m.verdict_address(16) == 200


def test_plan_reads_merges_close_spans_never_splits_one_and_respects_the_limit():
    assert plan_reads([(0, 2), (2, 1), (10, 5)]) == [(0, 15)]
    assert plan_reads([(0, 2), (100, 5)]) == [(0, 2), (100, 5)]  # too far apart: the gap may be unmapped
    assert plan_reads([(0, 100), (100, 30)]) == [(0, 100), (100, 30)]  # together over 125 registers
    assert plan_reads([(5, 1), (0, 2)]) == [(0, 6)]
    assert all(count <= MAX_READ_REGISTERS for _, count in plan_reads([(i * 40, 40) for i in range(10)]))


def test_an_unknown_key_is_named_at_its_line_with_a_suggestion():
    text = DEFAULT_TEXT.replace("  heartbeat: 17", "  heartbeet: 17")
    line = text.splitlines().index("  heartbeet: 17          # toggled by the driver every heartbeat_interval_s; "
                                   "watched by the PLC's watchdog") + 1
    problems = errors_of(text)
    assert f"map.yaml:{line}:3: unknown key \"heartbeet\" in coils (did you mean \"heartbeat\"?)" in problems
    assert any("missing required key \"heartbeat\"" in p for p in problems)


def test_overlapping_registers_name_both_entries():
    text = DEFAULT_TEXT.replace("    address: 38          # registers 38-71", "    address: 30")
    (problem,) = errors_of(text)
    line = text.splitlines().index("    address: 30") + 1
    assert problem.startswith(f"map.yaml:{line}:5: stations.camera: registers 30-63")
    assert "overlap stations.printer (4-37)" in problem
    assert "first at line" in problem


def test_two_coils_on_one_address_are_refused():
    (problem,) = errors_of(DEFAULT_TEXT.replace("  light_red: 22", "  light_red: 21"))
    assert "coils 21-21 overlap coils.light_amber" in problem


def test_a_station_block_larger_than_one_read_is_refused():
    text = DEFAULT_TEXT.replace("    address: 72          # registers 72-113\n    entries: 8",
                                "    address: 72\n    entries: 30")
    (problem,) = errors_of(text)
    assert "one read returns at most 125" in problem
    assert "stations.reject.entries" in problem


def test_bad_values_are_explained():
    problems = errors_of(DEFAULT_TEXT.replace("word_order: high_first", "word_order: big")
                         .replace("  encoder: 0 ", "  encoder: \"0\" ")
                         .replace("  pd_camera: 1 ", "  pd_camera: 70000 "))
    assert len(problems) == 3
    assert any("word_order" in p and "high_first" in p for p in problems)
    assert any("holding_registers.encoder" in p for p in problems)
    assert any("discrete_inputs.pd_camera" in p for p in problems)


def test_a_map_past_the_address_space_is_refused():
    (problem,) = errors_of(DEFAULT_TEXT.replace("  address: 200           # registers 200-247",
                                                "  address: 65500"))
    assert "past 65535" in problem


def test_empty_and_non_mapping_files_are_refused():
    assert errors_of("")[0].startswith("map.yaml:1:1: the file is empty")
    assert "the top level must be a mapping" in errors_of("- 1\n")[0]


def test_an_unreadable_file_is_a_config_error(tmp_path: Path):
    with pytest.raises(ConfigError, match="cannot read the register map"):
        load_register_map(tmp_path / "missing.yaml")


def test_a_bad_map_file_in_the_driver_options_names_its_position(tmp_path: Path):
    bad = tmp_path / "plc-map.yaml"
    bad.write_text(DEFAULT_TEXT.replace("  run: 19", "  run: -1"), encoding="utf-8")
    with pytest.raises(pydantic.ValidationError, match=rf"{bad}:\d+:\d+: coils.run"):
        ModbusLineIo.Options.model_validate({"map": str(bad)})


def test_a_relative_map_path_is_resolved_against_the_configuration_directory(tmp_path: Path):
    (tmp_path / "plc-map.yaml").write_text(DEFAULT_TEXT.replace("  light_red: 22", "  light_red: 23"))
    options = ModbusLineIo.Options.model_validate({"map": "plc-map.yaml"}, context={"base_dir": tmp_path})
    assert options.resolved_map().coils.light_red == 23


def test_an_inline_map_is_checked_like_a_file():
    data = load_register_map().model_dump(mode="json")
    data["coils"]["run"] = 17
    with pytest.raises(pydantic.ValidationError, match="overlap"):
        RegisterMap.model_validate(data)
    data["coils"]["run"] = 19
    data["extra"] = 1
    with pytest.raises(pydantic.ValidationError, match="extra"):
        ModbusLineIo.Options.model_validate({"map": data})
