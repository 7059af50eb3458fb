"""Every line configuration shipped under config/ loads with the installed drivers and fits the JSON Schema.

Line configs are all YAML files under config/ except config/markets/** (market rule packs) and
config/products/** (product master data): those are other kinds of files with their own loaders.
"""

from __future__ import annotations

import jsonschema
import pytest
import yaml

from edge.config import check_config_main, config_json_schema, load_config
from tests.conftest import ROOT

CONFIG = ROOT / "config"
NOT_LINE_CONFIGS = ("markets", "products", "plc", "partners")

LINE_CONFIGS = sorted(
    path
    for path in [*CONFIG.rglob("*.yaml"), *CONFIG.rglob("*.yml")]
    if path.relative_to(CONFIG).parts[0] not in NOT_LINE_CONFIGS
)


def test_the_shipped_line_configs_are_found():
    names = {path.relative_to(CONFIG).as_posix() for path in LINE_CONFIGS}
    assert {"line.example.yaml", "demo.yaml"} <= names


@pytest.mark.parametrize("path", LINE_CONFIGS, ids=[p.relative_to(CONFIG).as_posix() for p in LINE_CONFIGS])
def test_line_config_is_valid(path):
    config = load_config(path)
    assert config.source == path
    for device in config.devices:
        assert device.transport.url == device.url
        assert device.parsed_options is not None


@pytest.mark.parametrize("path", LINE_CONFIGS, ids=[p.relative_to(CONFIG).as_posix() for p in LINE_CONFIGS])
def test_line_config_fits_the_json_schema(path):
    validator = jsonschema.Draft202012Validator(config_json_schema())
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert [error.message for error in validator.iter_errors(data)] == []


@pytest.mark.parametrize("path", LINE_CONFIGS, ids=[p.relative_to(CONFIG).as_posix() for p in LINE_CONFIGS])
def test_line_config_passes_check_config_with_its_catalog(path, capsys):
    assert check_config_main(path, as_json=False) == 0
    assert capsys.readouterr().out == f"{path}: ok\n"


def test_the_shipped_configs_name_the_shipped_products():
    for name in ("demo.yaml", "line.example.yaml"):
        catalog = load_config(CONFIG / name).catalog
        assert catalog.products == CONFIG / "products"
        assert catalog.markets == CONFIG / "markets"


def test_json_schema_is_valid_with_the_installed_drivers():
    jsonschema.Draft202012Validator.check_schema(config_json_schema())


def test_demo_devices_are_on_loopback():
    config = load_config(CONFIG / "demo.yaml")
    assert config.devices
    for device in config.devices:
        assert device.transport.host_port[0] == "127.0.0.1"
    assert config.api.host == config.hmi.host == "127.0.0.1"


def test_example_documents_every_device_setting():
    example = load_config(CONFIG / "line.example.yaml")
    text = (CONFIG / "line.example.yaml").read_text(encoding="utf-8")
    for key in ("serial:", "timeouts:", "reconnect:", "options:", "enabled:", "state_dir:", "redact:", "catalog:"):
        assert key in text
    assert example.line.site_gln is not None
    assert example.line.location is not None
    assert {device.transport.is_tcp for device in example.devices} == {True, False}
