"""Reading a line configuration file into a LineConfig, reporting every problem at once."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

from edge.config.document import in_file_order, mapping_document, validate_document
from edge.config.explain import relation_issue
from edge.config.models import LineConfig, RelationError
from edge.errors import ConfigError, ConfigIssue

if TYPE_CHECKING:
    from edge.yamlpos import Document



def _duplicate_device_ids(doc: Document, filename: str) -> list[ConfigIssue]:
    """Find repeated device ids in the raw data, so they are reported even when other keys are invalid."""
    devices = doc.data.get("devices") if isinstance(doc.data, dict) else None
    if not isinstance(devices, list):
        return []
    issues: list[ConfigIssue] = []
    first: dict[str, int] = {}
    for index, device in enumerate(devices):
        device_id = device.get("id") if isinstance(device, dict) else None
        if not isinstance(device_id, str):
            continue
        if device_id in first:
            clash = RelationError(
                f'duplicate device id "{device_id}"',
                at=("devices", index, "id"),
                first=("devices", first[device_id], "id"),
            )
            issues.append(relation_issue(clash, (), doc, filename))
        else:
            first[device_id] = index
    return issues



def load_config_text(text: str, filename: str, *, base_dir: Path | None = None) -> LineConfig:
    """Parse and validate configuration text; ConfigError lists every problem as FILE:LINE:COL: message.

    Relative paths in it are resolved against base_dir, by default the directory of filename.
    """
    doc = mapping_document(
        text,
        filename,
        empty="the file is empty: a line configuration needs at least a line: section",
        top_level="the top level must be a mapping of sections (line:, devices:, ...)",
    )
    issues = [*doc.issues, *_duplicate_device_ids(doc, filename)]
    source = Path(filename)
    context = {"base_dir": base_dir or source.absolute().parent, "source": source}
    config = validate_document(LineConfig, doc, filename, issues, context=context)
    if issues:
        raise in_file_order(issues)
    return config


def read_config_text(path: Path) -> str:
    """Read a configuration file as UTF-8 text; ConfigError at the offending byte when it cannot be read."""
    filename = str(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError([ConfigIssue(filename, 1, 1, f"cannot read: {exc.strerror or exc}")]) from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        before = raw[: exc.start]
        line = before.count(b"\n") + 1
        column = exc.start - (before.rfind(b"\n") + 1) + 1
        message = f"cannot read: not UTF-8 text (byte 0x{raw[exc.start]:02x})"
        raise ConfigError([ConfigIssue(filename, line, column, message)]) from exc
    return text


def load_config(path: Path) -> LineConfig:
    """Read and validate a configuration file; ConfigError lists every problem as FILE:LINE:COL: message."""
    return load_config_text(read_config_text(path), str(path), base_dir=path.absolute().parent)


def check_config_main(path: Path, *, as_json: bool) -> int:
    """Check a configuration file and its catalog (markets, then products); print every problem; 0 if valid, else 2."""
    # Imported here: products, markets and partner profiles read their files with this module's helpers.
    from edge.epcis.profiles import load_profiles  # noqa: PLC0415
    from edge.products.load import load_catalog  # noqa: PLC0415
    from edge.sync.upstream import check_profiles  # noqa: PLC0415

    try:
        config = load_config(path)
        load_catalog(config.catalog)
        partners = config.catalog.partners
        profiles = load_profiles(partners) if partners.is_dir() or config.upstream.targets else {}
        issues = check_profiles(config, profiles)
    except ConfigError as exc:
        issues = exc.issues
    if as_json:
        sys.stdout.write(json.dumps([asdict(issue) for issue in issues], indent=2) + "\n")
    elif issues:
        sys.stdout.writelines(f"{issue}\n" for issue in issues)
    else:
        sys.stdout.write(f"{path}: ok\n")
    return 2 if issues else 0
