"""Line configuration: typed models, and errors at FILE:LINE:COL in words an integrator understands.

Each file in bad_configs/ lists the exact problems it must produce in ``# expect: LINE:COL: message`` lines.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Literal

import jsonschema
import pytest
import yaml
from pydantic import Field

from drivers.base import DeviceInfo, Driver, DriverOptions
from drivers.transport.spec import Parity, SerialSettings, TransportSpec
from edge import registry
from edge.config import DeviceConfig, LineConfig, check_config_main, config_json_schema, load_config, load_config_text
from edge.config.models import shipped_markets_dir
from edge.errors import ConfigError
from tests.conftest import ROOT

BAD_CONFIGS = Path(__file__).parent / "bad_configs"


class ScannerOptions(DriverOptions):
    terminator: str = "\r\n"
    max_length: int = Field(4096, gt=0)
    symbology_prefix: bool = False


class FakeScanner(Driver):
    role = "reader"  # the code reader role, as drivers.scanner.base.CodeReader
    Options = ScannerOptions

    async def connect(self) -> DeviceInfo:
        return DeviceInfo(model="fake")

    async def run(self) -> None:
        return None

    async def close(self) -> None:
        return None


class PrinterOptions(DriverOptions):
    head: int = Field(1, ge=1, le=4)
    feeds: Literal["units", "labels"] = "units"


class FakePrinter(FakeScanner):
    role = "printer"
    Options = PrinterOptions


class _Entry:
    """Stands in for an importlib.metadata.EntryPoint of an installed driver."""

    def __init__(self, cls: type[Driver]) -> None:
        self.cls = cls
        self.value = f"{__name__}:{cls.__name__}"

    def load(self) -> type[Driver]:
        return self.cls


@pytest.fixture(autouse=True)
def fake_drivers(monkeypatch):
    """Install two test drivers through the real registry lookup, so its messages are the real ones."""
    entries = {"scanner.wedge": _Entry(FakeScanner), "printer.tij": _Entry(FakePrinter)}
    registry.driver_class.cache_clear()
    monkeypatch.setattr(registry, "_entry_points", lambda: entries)
    yield
    registry.driver_class.cache_clear()


def problems(text: str, filename: str = "line.yaml") -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config_text(textwrap.dedent(text), filename)
    assert str(caught.value) == "\n".join(str(issue) for issue in caught.value.issues)
    return [str(issue) for issue in caught.value.issues]


def expectations(path: Path) -> list[str]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return [f"{path}:{line.removeprefix('# expect: ')}" for line in lines if line.startswith("# expect: ")]


BAD_FILES = sorted(BAD_CONFIGS.glob("*.yaml"))


def test_there_are_enough_bad_configs():
    assert len(BAD_FILES) >= 20


@pytest.mark.parametrize("path", BAD_FILES, ids=[path.stem for path in BAD_FILES])
def test_bad_config_reports_exactly_what_its_header_expects(path):
    expected = expectations(path)
    assert expected, f"{path} has no '# expect: LINE:COL: message' line"
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert [str(issue) for issue in caught.value.issues] == expected


def test_several_errors_are_all_reported_in_file_order():
    with pytest.raises(ConfigError) as caught:
        load_config(BAD_CONFIGS / "several-errors.yaml")
    positions = [(issue.line, issue.column) for issue in caught.value.issues]
    assert len(positions) == 10
    assert positions == sorted(positions)


MINIMAL = """\
line:
  id: line-3
  name: Blister line 3
"""

FULL = """\
line:
  id: line-3
  name: Blister line 3
  site_gln: "4012345000009"
  location: urn:epc:id:sgln:4012345.00003.0
devices:
  - id: scanner-1
    driver: scanner.wedge
    url: /dev/ttyUSB0
    serial: {baudrate: 115200, bytesize: 7, parity: even, stopbits: 2, flow_control: rtscts}
    timeouts: {connect_s: 2.5, response_s: 1}
    reconnect: {initial_s: 0.5, max_s: 60}
    options: {terminator: "\\r", max_length: 512}
  - id: printer-1
    driver: printer.tij
    url: socket://10.20.0.41:4001
    enabled: false
    options: {head: 2}
storage: {state_dir: /srv/lineside}
api: {host: 0.0.0.0, port: 9000}
hmi: {port: 0}
logging: {level: debug, format: json, redact: [Api_Key, token]}
daemon: {drain_timeout_s: 30}
"""


def test_minimal_config_gets_defaults(monkeypatch):
    monkeypatch.delenv("STATE_DIRECTORY", raising=False)
    config = load_config_text(MINIMAL, "line.yaml")
    assert config.line.id == "line-3"
    assert config.line.site_gln is None
    assert config.devices == ()
    assert config.storage.state_dir == Path("/var/lib/lineside")
    assert (config.api.host, config.api.port) == ("127.0.0.1", 8470)
    assert (config.hmi.host, config.hmi.port) == ("127.0.0.1", 8480)
    assert config.logging.level == "info"
    assert config.logging.format == "auto"
    assert config.logging.redact == ("password", "token", "secret", "authorization")
    assert config.daemon.drain_timeout_s == 10.0
    assert config.catalog.products == Path.cwd() / "products"
    assert config.source == Path("line.yaml")


def test_full_config_is_typed():
    config = load_config_text(FULL, "/etc/lineside/line.yaml")
    scanner, printer = config.devices
    assert scanner.transport == TransportSpec(
        url="/dev/ttyUSB0",
        serial=SerialSettings(baudrate=115200, bytesize=7, parity=Parity.EVEN, stopbits=2, flow_control="rtscts"),
    )
    assert scanner.parsed_options == ScannerOptions(terminator="\r", max_length=512)
    assert scanner.timeouts.connect_s == 2.5
    assert scanner.reconnect.max_s == 60.0
    assert scanner.enabled
    assert printer.transport.host_port == ("10.20.0.41", 4001)
    assert printer.parsed_options == PrinterOptions(head=2)
    assert not printer.enabled
    assert config.device("printer-1") is printer
    assert config.logging.redact == ("password", "token", "secret", "authorization", "api_key")
    assert config.storage.state_dir == Path("/srv/lineside")
    assert config.source == Path("/etc/lineside/line.yaml")


def test_device_lookup_of_unknown_id_raises_key_error():
    with pytest.raises(KeyError):
        load_config_text(MINIMAL, "line.yaml").device("nope")


def test_models_are_frozen():
    config = load_config_text(FULL, "line.yaml")
    with pytest.raises(ValueError, match="frozen"):
        config.devices[0].url = "/dev/ttyUSB1"  # type: ignore[misc]


def test_config_round_trips_through_yaml():
    config = load_config_text(FULL, "line.yaml")
    dumped = yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
    again = load_config_text(dumped, "line.yaml")
    assert again == config
    assert again.devices[0].parsed_options == config.devices[0].parsed_options


def test_config_round_trips_through_model_validate():
    config = load_config_text(FULL, "line.yaml")
    again = LineConfig.model_validate(config.model_dump())
    assert again.model_dump() == config.model_dump()
    assert again.source is None


def test_device_config_can_be_built_in_code():
    device = DeviceConfig(id="s1", driver="scanner.wedge", url="socket://127.0.0.1:47001")
    assert device.transport.is_tcp
    assert device.parsed_options == ScannerOptions()


def test_relative_state_dir_is_resolved_against_the_config_directory(tmp_path):
    path = tmp_path / "etc" / "line.yaml"
    path.parent.mkdir()
    path.write_text(MINIMAL + "storage: {state_dir: ../state}\n", encoding="utf-8")
    assert load_config(path).storage.state_dir == tmp_path / "etc" / ".." / "state"


def test_state_dir_defaults_to_systemd_state_directory(monkeypatch):
    monkeypatch.setenv("STATE_DIRECTORY", "/var/lib/lineside-line3:/var/lib/other")
    assert load_config_text(MINIMAL, "line.yaml").storage.state_dir == Path("/var/lib/lineside-line3")


def test_catalog_defaults_to_products_beside_the_file_and_the_shipped_markets(tmp_path):
    path = tmp_path / "line.yaml"
    path.write_text(MINIMAL, encoding="utf-8")
    catalog = load_config(path).catalog
    assert catalog.products == tmp_path / "products"
    assert catalog.markets == ROOT / "config" / "markets"
    assert catalog.markets == shipped_markets_dir()
    assert catalog.model_fields_set == set()


def test_relative_catalog_paths_start_at_the_config_directory(tmp_path):
    text = MINIMAL + "catalog: {products: ../products, markets: /srv/markets}\n"
    catalog = load_config_text(text, str(tmp_path / "etc" / "line.yaml")).catalog
    assert catalog.products == tmp_path / "etc" / ".." / "products"
    assert catalog.markets == Path("/srv/markets")


def test_catalog_keys_are_checked():
    assert problems(MINIMAL + "catalog: {products: '', market: x}\n") == [
        "line.yaml:4:21: catalog.products: must not be empty",
        'line.yaml:4:25: unknown key "market" in catalog (did you mean "markets"?)',
    ]


def test_check_config_main_checks_the_products_too(tmp_path, capsys):
    products = tmp_path / "products"
    products.mkdir()
    broken = (ROOT / "config" / "products" / "aspirin-500-eu.yaml").read_text(encoding="utf-8")
    (products / "aspirin-500-eu.yaml").write_text(broken.replace("market: eu-fmd", "market: eu-fm"), encoding="utf-8")
    path = tmp_path / "line.yaml"
    path.write_text(MINIMAL, encoding="utf-8")
    assert check_config_main(path, as_json=False) == 2
    (issue,) = capsys.readouterr().out.splitlines()
    assert issue.startswith(f'{products / "aspirin-500-eu.yaml"}:24:9: market: unknown market "eu-fm"')


def test_check_config_main_wants_a_configured_products_directory(tmp_path, capsys):
    path = tmp_path / "line.yaml"
    path.write_text(MINIMAL + "catalog: {products: made-here}\n", encoding="utf-8")
    assert check_config_main(path, as_json=False) == 2
    assert capsys.readouterr().out == (
        f"{tmp_path / 'made-here'}:1:1: cannot read: not a directory of products; create it or set"
        " catalog.products in the line config\n"
    )


def test_check_config_main_checks_the_market_packs(tmp_path, capsys):
    (tmp_path / "markets").mkdir()
    (tmp_path / "markets" / "eu-fmd.yaml").write_text("", encoding="utf-8")
    path = tmp_path / "line.yaml"
    path.write_text(MINIMAL + "catalog: {markets: markets}\n", encoding="utf-8")
    assert check_config_main(path, as_json=True) == 2
    files = [issue["file"] for issue in json.loads(capsys.readouterr().out)]
    assert files == [str(tmp_path / "markets" / "eu-fmd.yaml")]


def test_yaml_anchors_aliases_and_merge_keys_work():
    config = load_config_text(
        """\
line: {id: line-3, name: Blister line 3}
devices:
  - &first
    id: scanner-1
    driver: scanner.wedge
    url: /dev/ttyUSB0
    serial: &slow {baudrate: 1200}
  - <<: *first
    id: scanner-2
    url: /dev/ttyUSB1
    serial: *slow
""",
        "line.yaml",
    )
    first, second = config.devices
    assert second.driver == "scanner.wedge"
    assert second.transport.url == "/dev/ttyUSB1"
    assert first.transport.serial_settings.baudrate == second.transport.serial_settings.baudrate == 1200


def test_error_inside_merged_mapping_points_at_the_anchor():
    assert problems(
        """\
        line: {id: line-3, name: Blister line 3}
        devices:
          - &first
            id: scanner-1
            driver: scanner.wedge
            url: /dev/ttyUSB0
            timeouts: {connect_s: -1}
          - <<: *first
            id: scanner-2
        """
    ) == [
        "line.yaml:7:27: devices[0].timeouts.connect_s: -1 must be greater than 0",
        "line.yaml:7:27: devices[1].timeouts.connect_s: -1 must be greater than 0",
    ]


def test_own_key_beats_merged_key_without_duplicate_error():
    config = load_config_text(
        """\
line: &l {id: line-3, name: Blister line 3}
devices:
  - {id: a, driver: scanner.wedge, url: /dev/ttyS0}
  - {<<: [{id: b, driver: printer.tij}, {id: c, url: /dev/ttyS9}], url: /dev/ttyS1}
""",
        "line.yaml",
    )
    merged = config.devices[1]
    assert (merged.id, merged.driver, merged.url) == ("b", "printer.tij", "/dev/ttyS1")


def test_recursive_alias_is_an_error():
    assert problems("line: &a {id: line-3, name: x, self: *a}\n") == [
        "line.yaml:1:7: an alias refers to a node that contains it (recursive structure)"
    ]


def test_merge_of_a_scalar_is_an_error():
    assert problems("line: {<<: 5, id: line-3, name: x}\n") == [
        "line.yaml:1:12: a merge key (<<) takes a mapping or a list of mappings"
    ]


def test_non_string_keys_are_reported_at_the_key():
    assert problems(MINIMAL + "api: {1: x, port: 1}\n") == ["line.yaml:4:7: api: key 1 must be text"]


def test_non_string_key_in_driver_options():
    assert problems(
        MINIMAL
        + """\
devices:
  - {id: s, driver: scanner.wedge, url: /dev/ttyS0, options: {7: x}}
"""
    ) == ["line.yaml:5:63: devices[0].options: key 7 must be text"]


def test_collection_as_key_is_an_error():
    assert problems(MINIMAL + "? [a, b]\n: 1\n") == [
        "line.yaml:4:3: a key must be a single value, not a mapping or a list"
    ]


def test_duplicate_keys_in_flow_mapping_and_nested_mappings():
    assert problems(
        """\
        line: {id: line-3, name: a, name: b}
        api: {port: 1}
        api: {port: 2}
        """
    ) == [
        'line.yaml:1:29: duplicate key "name" (first at line 1)',
        'line.yaml:3:1: duplicate key "api" (first at line 2)',
    ]


def test_wrong_section_types_are_explained():
    assert problems(
        """\
        line: Blister line 3
        devices: {scanner-1: {}}
        storage: [a]
        """
    ) == [
        'line.yaml:1:7: line: expected a mapping of keys, got "Blister line 3"',
        "line.yaml:2:10: devices: expected a list, got a mapping",
        "line.yaml:3:10: storage: expected a mapping of keys, got a list",
    ]


def test_empty_values_are_explained():
    assert problems(
        """\
        line:
          id: line-3
          name:
        devices:
        """
    ) == [
        "line.yaml:3:8: line.name: expected text, got an empty value",
        "line.yaml:4:9: devices: expected a list, got an empty value",
    ]


def test_booleans_and_numbers_where_text_or_flags_are_expected():
    assert problems(
        MINIMAL
        + """\
devices:
  - id: 42
    driver: scanner.wedge
    url: /dev/ttyUSB0
    enabled: "yes"
    options: {symbology_prefix: maybe}
"""
    ) == [
        'line.yaml:5:9: devices[0].id: YAML reads 42 as the number 42, not as text; quote it: "42"',
        'line.yaml:8:14: devices[0].enabled: expected true or false, got "yes"',
        'line.yaml:9:33: devices[0].options.symbology_prefix: expected true or false, got "maybe"',
    ]


def test_numbers_given_as_floats_or_text():
    assert problems(
        MINIMAL
        + """\
api: {port: 80.5}
hmi: {port: abc}
devices:
  - {id: s, driver: scanner.wedge, url: /dev/ttyS0, serial: {baudrate: 9600.5}, timeouts: {connect_s: "1.5"}}
"""
    ) == [
        "line.yaml:4:13: api.port: expected a whole number, got 80.5",
        'line.yaml:5:13: hmi.port: expected a whole number, got "abc"',
        "line.yaml:7:72: devices[0].serial.baudrate: expected a whole number, got 9600.5",
        (
            'line.yaml:7:103: devices[0].timeouts.connect_s: "1.5" is text; '
            "give the duration as a plain number of seconds, like 5 or 0.5"
        ),
    ]


def test_redact_entries_must_be_text():
    assert problems(MINIMAL + 'logging: {redact: [api_key, ""]}\n') == [
        "line.yaml:4:29: logging.redact[1]: must not be empty"
    ]


def test_unknown_top_level_key_suggests_a_section():
    assert problems(MINIMAL + "devics: []\n") == ['line.yaml:4:1: unknown key "devics" (did you mean "devices"?)']


def test_missing_file_is_one_error(tmp_path):
    path = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert [str(issue) for issue in caught.value.issues] == [f"{path}:1:1: cannot read: No such file or directory"]


def test_non_utf8_file_names_the_bad_byte(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"line:\n  id: line-3\n  name: Linie f\xfcr Blister\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert [str(issue) for issue in caught.value.issues] == [f"{path}:3:16: cannot read: not UTF-8 text (byte 0xfc)"]


def test_control_character_is_a_positioned_error():
    assert problems("line:\n  id: line-3\n  name: a\x07b\n") == [
        "line.yaml:3:10: character '\\x07' is not allowed in YAML text"
    ]


def test_byte_order_mark_is_accepted():
    assert load_config_text("\ufeff" + MINIMAL, "line.yaml").line.id == "line-3"


def test_null_top_level_is_empty():
    assert problems("---\n...\n") == [
        "line.yaml:1:1: the file is empty: a line configuration needs at least a line: section"
    ]


def test_scalar_top_level():
    assert problems("just text\n") == [
        'line.yaml:1:1: the top level must be a mapping of sections (line:, devices:, ...), not the value "just text"'
    ]


def test_bad_indentation_is_called_so():
    assert problems("line:\n  id: a\n name: b\n") == [
        (
            "line.yaml:3:2: YAML syntax (check the indentation): expected <block end>, "
            "but found '<block mapping start>' (while parsing a block mapping at 1:1)"
        )
    ]


def test_alias_bomb_is_stopped():
    levels = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    levels += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 7)]
    assert problems("\n".join(levels) + "\n") == [
        "line.yaml:1:1: document too large: more than 100000 nodes once aliases are expanded"
    ]


def test_unknown_local_tag_is_refused():
    assert problems("line: !include other.yaml\n") == [
        "line.yaml:1:7: YAML: could not determine a constructor for the tag '!include'"
    ]


def test_check_config_main_prints_issues(tmp_path, capsys):
    path = tmp_path / "line.yaml"
    path.write_text(MINIMAL + "api: {port: -1}\n", encoding="utf-8")
    assert check_config_main(path, as_json=False) == 2
    assert capsys.readouterr().out == f"{path}:4:13: api.port: -1 must be at least 0\n"


def test_check_config_main_json(tmp_path, capsys):
    path = tmp_path / "line.yaml"
    path.write_text(MINIMAL + "api: {port: -1}\n", encoding="utf-8")
    assert check_config_main(path, as_json=True) == 2
    assert json.loads(capsys.readouterr().out) == [
        {"file": str(path), "line": 4, "column": 13, "message": "api.port: -1 must be at least 0"}
    ]


def test_check_config_main_ok(tmp_path, capsys):
    path = tmp_path / "line.yaml"
    path.write_text(MINIMAL, encoding="utf-8")
    assert check_config_main(path, as_json=False) == 0
    assert capsys.readouterr().out == f"{path}: ok\n"
    assert check_config_main(path, as_json=True) == 0
    assert json.loads(capsys.readouterr().out) == []


def test_check_config_main_missing_file(tmp_path, capsys):
    path = tmp_path / "missing.yaml"
    assert check_config_main(path, as_json=False) == 2
    assert capsys.readouterr().out == f"{path}:1:1: cannot read: No such file or directory\n"


def test_json_schema_is_valid_draft_2020_12():
    schema = config_json_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)
    json.dumps(schema)


def test_json_schema_accepts_valid_and_rejects_invalid_configs():
    validator = jsonschema.Draft202012Validator(config_json_schema())
    assert list(validator.iter_errors(yaml.safe_load(FULL))) == []
    bad_option = yaml.safe_load(FULL)
    bad_option["devices"][1]["options"]["head"] = 9
    assert [error.message for error in validator.iter_errors(bad_option)] == ["9 is greater than the maximum of 4"]
    unknown_key = yaml.safe_load(FULL)
    unknown_key["devices"][0]["options"]["head"] = 1
    assert not validator.is_valid(unknown_key)
    unknown_driver = yaml.safe_load(FULL)
    unknown_driver["devices"][0]["driver"] = "scanner.wedg"
    assert not validator.is_valid(unknown_driver)
    assert not validator.is_valid({"devices": []})


def test_json_schema_carries_field_documentation():
    schema = config_json_schema()
    timeouts = schema["$defs"]["TimeoutsConfig"]["properties"]["connect_s"]
    assert timeouts["exclusiveMinimum"] == 0
    assert "handshake" in timeouts["description"]
    assert "source" not in schema["properties"]
