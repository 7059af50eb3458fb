"""Reading market rule packs (config/markets/*.yaml), reporting every problem of every file at once."""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError

from edge.config.explain import issue_for, relation_issue
from edge.config.load import read_config_text
from edge.errors import ConfigError, ConfigIssue
from edge.gs1.ai import ai_spec
from edge.markets.checks import AiLookup, pack_problems
from edge.markets.models import MarketPack
from edge.yamlpos import load_positioned

PACK_SUFFIX = ".yaml"


def _ordered(issues: list[ConfigIssue]) -> ConfigError:
    # The same problem can be found twice (duplicate key, then by the model): report it once, in file order.
    return ConfigError(sorted(dict.fromkeys(issues), key=lambda issue: (issue.line, issue.column)))


def load_market_text(text: str, filename: str, *, ai_lookup: AiLookup = ai_spec) -> MarketPack:
    """Parse and check one market pack; its id must be the stem of filename; ConfigError lists every problem."""
    doc = load_positioned(text, filename)
    if doc is None or doc.data is None:
        message = "the file is empty: a market pack needs id:, name:, code:, serial: and the other sections"
        raise ConfigError([ConfigIssue(filename, 1, 1, message)])
    if not isinstance(doc.data, dict):
        at = doc.root.value
        message = "the top level must be a mapping of keys (id:, name:, code:, ...), not a list or a single value"
        raise ConfigError([ConfigIssue(filename, at.line, at.column, message)])
    issues = list(doc.issues)
    try:
        pack = MarketPack.model_validate(doc.data)
    except ValidationError as exc:
        issues += [issue_for(error, doc, filename, root=MarketPack) for error in exc.errors(include_url=False)]
        raise _ordered(issues) from exc
    expected_id = Path(filename).name.removesuffix(PACK_SUFFIX)
    problems = pack_problems(pack, ai_lookup, expected_id=expected_id)
    issues += [relation_issue(problem, (), doc, filename) for problem in problems]
    if issues:
        raise _ordered(issues)
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
