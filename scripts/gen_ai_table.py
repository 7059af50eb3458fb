#!/usr/bin/env python3
"""Generate edge/gs1/ai_table.py from the GS1 Barcode Syntax Dictionary.

Source: gs1-syntax-dictionary.txt, release 2026-01-27, from gs1/gs1-syntax-engine at commit
50657dbd04ce78d8734e8793e054bf70dcba294b (Apache-2.0). Usage:

    .venv/bin/python scripts/gen_ai_table.py ../shared/corpora/gs1-syntax-engine/gs1-syntax-dictionary.txt

The output is plain data (tuples of literals) so the package never reads the dictionary at run time.
"""

from __future__ import annotations

import pprint
import re
import sys
from dataclasses import dataclass
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "edge" / "gs1" / "ai_table.py"
_COMPONENT = re.compile(r"^(\[)?([NXYZ])(\d+)?(?:\.\.(\d+))?(\])?((?:,\w+)*)$")
_FLAG_CHARS = set("*!?\"$%&'()+,-./:;<=>@[\\]^_`{|}~")


@dataclass(frozen=True)
class Entry:
    """One AI as written in the dictionary, after range expansion."""

    ai: str
    flags: str
    components: tuple[tuple[str, int, int, bool, tuple[str, ...]], ...]
    requires: tuple[tuple[tuple[str, ...], ...], ...]
    excludes: tuple[str, ...]
    dlpkey: tuple[tuple[str, ...], ...] | None
    title: str


def parse_component(text: str) -> tuple[str, int, int, bool, tuple[str, ...]]:
    """Parse one component such as ``N6,yymmd0``, ``X..20`` or ``[N4],hhmi`` into a tuple."""
    match = _COMPONENT.match(text)
    if match is None:
        raise ValueError(f"unparsable component {text!r}")
    opening, charset, fixed, maximum, closing, linters = match.groups()
    if bool(opening) != bool(closing):
        raise ValueError(f"unbalanced optional marker in {text!r}")
    if maximum is not None:
        low, high = (int(fixed), int(maximum)) if fixed else (1, int(maximum))
    else:
        low = high = int(fixed)
    return charset, low, high, bool(opening), tuple(x for x in linters.split(",") if x)


def expand(ai_field: str) -> list[str]:
    """Expand ``3100-3105`` into its AIs; a solitary AI stays as it is."""
    if "-" not in ai_field:
        return [ai_field]
    first, last = ai_field.split("-")
    return [str(n).zfill(len(first)) for n in range(int(first), int(last) + 1)]


def parse_dictionary(text: str) -> list[Entry]:
    """Every AI entry of the dictionary text, ranges expanded, in dictionary order."""
    entries: list[Entry] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        body, _, title = line.partition("#")
        tokens = body.split()
        ai_field, rest = tokens[0], tokens[1:]
        flags = ""
        if rest and set(rest[0]) <= _FLAG_CHARS:
            flags, rest = rest[0], rest[1:]
        components: list[tuple[str, int, int, bool, tuple[str, ...]]] = []
        requires: list[tuple[tuple[str, ...], ...]] = []
        excludes: list[str] = []
        dlpkey: tuple[tuple[str, ...], ...] | None = None
        for token in rest:
            if token.startswith("req="):
                requires.append(tuple(tuple(group.split("+")) for group in token[4:].split(",")))
            elif token.startswith("ex="):
                excludes.extend(token[3:].split(","))
            elif token == "dlpkey":  # noqa: S105 - a dictionary keyword, not a secret
                dlpkey = ((),)
            elif token.startswith("dlpkey="):
                dlpkey = tuple(tuple(seq.split(",")) for seq in token[7:].split("|"))
            else:
                components.append(parse_component(token))
        entries.extend(
            Entry(ai, flags, tuple(components), tuple(requires), tuple(excludes), dlpkey, title.strip())
            for ai in expand(ai_field)
        )
    return entries


def render(entries: list[Entry], release: str) -> str:
    """Render the generated module's source text."""
    lines = [
        '"""GS1 Application Identifier table, generated from the GS1 Barcode Syntax Dictionary.',
        "",
        f"Release {release} (gs1/gs1-syntax-engine, Apache-2.0), by scripts/gen_ai_table.py: regenerate, do not edit.",
        "Each row: (ai, title, fnc1, digital_link_attribute, components, requires, excludes, dl_primary_key), where",
        "a component is (charset, min_length, max_length, optional, linters); requires is a tuple of rules, each a",
        "tuple of alternatives, each a tuple of AIs or patterns that must all be present ('n' matches any digit);",
        "dl_primary_key is None or a tuple of allowed qualifier sequences.",
        '"""',
        "",
        "from __future__ import annotations",
        "",
        f"RELEASE = {release!r}",
        "",
        "AI_ROWS = (",
    ]
    for e in entries:
        row = (e.ai, e.title, "*" not in e.flags, "?" in e.flags, e.components, e.requires, e.excludes, e.dlpkey)
        text = pprint.pformat(row, width=112, compact=True)
        lines.extend("    " + part for part in text.splitlines())
        lines[-1] += ","
    lines.append(")")
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    """Read the dictionary named on the command line and write the table module."""
    if len(argv) != 2:
        sys.stderr.write(__doc__ or "")
        return 2
    text = Path(argv[1]).read_text(encoding="utf-8")
    release_match = re.search(r"^# Release: (\S+)", text, re.MULTILINE)
    release = release_match.group(1) if release_match else "unknown"
    entries = parse_dictionary(text)
    ais = [e.ai for e in entries]
    for ai in ais:
        clash = [other for other in ais if other != ai and other.startswith(ai)]
        if clash:
            raise ValueError(f"AI {ai} is a prefix of {clash}: element strings would be ambiguous")
    OUT.write_text(render(entries, release), encoding="utf-8")
    sys.stdout.write(f"wrote {len(entries)} AIs (release {release}) to {OUT}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
