"""Line configuration: YAML files turned into typed, validated models, with errors at FILE:LINE:COL."""

from __future__ import annotations

from edge.config.load import check_config_main, load_config, load_config_text
from edge.config.models import (
    ApiConfig,
    CatalogConfig,
    DaemonConfig,
    DeviceConfig,
    HmiConfig,
    LineConfig,
    LineInfo,
    LogFormat,
    LoggingConfig,
    LogLevel,
    ReconnectConfig,
    StorageConfig,
    TimeoutsConfig,
)
from edge.config.schema import config_json_schema

__all__ = [
    "ApiConfig",
    "CatalogConfig",
    "DaemonConfig",
    "DeviceConfig",
    "HmiConfig",
    "LineConfig",
    "LineInfo",
    "LogFormat",
    "LogLevel",
    "LoggingConfig",
    "ReconnectConfig",
    "StorageConfig",
    "TimeoutsConfig",
    "check_config_main",
    "config_json_schema",
    "load_config",
    "load_config_text",
]
