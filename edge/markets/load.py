"""Reading market rule packs (config/markets/*.yaml), reporting every problem of every file at once."""

from __future__ import annotations

from pathlib import Path

from edge.config.document import in_file_order, mapping_document, validate_document
from edge.config.explain import relation_issue
from edge.config.load import read_config_text
from edge.errors import ConfigError, ConfigIssue
from edge.gs1.ai import ai_spec
from edge.markets.checks import AiLookup, pack_problems
from edge.markets.models import MarketPack

PACK_SUFFIX = ".yaml"


def load_market_text(text: str, filename: str, *, ai_lookup: AiLookup = ai_spec) -> MarketPack:
    """Parse and check one market pack; its id must be the stem of filename; ConfigError lists every problem."""
    doc = mapping_document(
        text,
        filename,
        empty="the file is empty: a market pack needs id:, name:, code:, serial: and the other sections",
        top_level="the top level must be a mapping of keys (id:, name:, code:, ...)",
    )
    issues = list(doc.issues)
    pack = validate_document(MarketPack, doc, filename, issues)
    expected_id = Path(filename).name.removesuffix(PACK_SUFFIX)
    problems = pack_problems(pack, ai_lookup, expected_id=expected_id)
    issues += [relation_issue(problem, (), doc, filename) for problem in problems]
    if issues:
        raise in_file_order(issues)
    return pack


def load_market(path: Path, *, ai_lookup: AiLookup = ai_spec) -> MarketPack:
    """Read and check one market pack file; ConfigError lists every problem as FILE:LINE:COL: message."""
    return load_market_text(read_config_text(path), str(path), ai_lookup=ai_lookup)


def market_ids(directory: Path) -> list[str]:
    """Return the ids of the market packs in directory (file names without .yaml), sorted; nothing is checked."""
    return sorted(path.name.removesuffix(PACK_SUFFIX) for path in directory.glob(f"*{PACK_SUFFIX}") if path.is_file())


def load_markets(directory: Path, *, ai_lookup: AiLookup = ai_spec) -> dict[str, MarketPack]:
    """Load every pack in directory, by id; ConfigError lists the problems of all files together."""
    if not directory.is_dir():
        raise ConfigError([ConfigIssue(str(directory), 1, 1, "cannot read: not a directory of market packs")])
    packs: dict[str, MarketPack] = {}
    issues: list[ConfigIssue] = []
    for path in sorted(directory.iterdir()):
        if path.suffix == ".yml":
            # Silently skipping it would leave an integrator wondering why the market is unknown.
            message = f"market packs are read from {PACK_SUFFIX} files only: rename it to {path.stem}{PACK_SUFFIX}"
            issues.append(ConfigIssue(str(path), 1, 1, message))
        if path.suffix != PACK_SUFFIX or not path.is_file():
            continue
        try:
            pack = load_market(path, ai_lookup=ai_lookup)
        except ConfigError as exc:
            issues += exc.issues
        else:
            packs[pack.id] = pack
    if issues:
        raise ConfigError(issues)
    return packs
