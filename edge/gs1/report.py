"""One GS1 report for the command line: read data in any form, check it, and show every form of it."""

from __future__ import annotations

from typing import Any

from edge.gs1.digital_link import DigitalLinkError, build_digital_link, parse_digital_link
from edge.gs1.element import build, build_hri, parse, validate, validate_pairs
from edge.gs1.errors import Gs1Issue, Gs1SyntaxError

GS = "\x1d"
# How a GS can be typed on a command line or in a text file, besides the byte itself.
_GS_ESCAPES = ("\\x1d", "\\x1D", "{GS}", "<GS>", "\\u001d", "\\u001D")


def unescape(data: str) -> str:
    r"""Turn the typed spellings of GS (\\x1d, {GS}, <GS>, \\u001d) into the GS character."""
    for spelling in _GS_ESCAPES:
        data = data.replace(spelling, GS)
    return data


class UnusableInputError(ValueError):
    """The input cannot be read as GS1 data at all (not merely invalid)."""

    def __init__(self, issue: Gs1Issue) -> None:
        self.issue = issue
        super().__init__(str(issue))


def parse_report(data: str) -> dict[str, Any]:
    """Read element strings, HRI text or a Digital Link URI; raise UnusableInputError when unreadable."""
    text = unescape(data)
    if text.startswith(("http://", "https://")):
        try:
            link = parse_digital_link(text)
        except DigitalLinkError as err:
            raise UnusableInputError(Gs1Issue(None, 0, str(err), "DIGITAL_LINK")) from err
        pairs = [*link.path, *link.attributes]
        issues = validate_pairs(pairs)
    else:
        try:
            parsed = parse(text)
        except Gs1SyntaxError as err:
            raise UnusableInputError(err.issue) from err
        pairs = list(parsed.pairs)
        issues = validate(parsed)
    return _report(pairs, issues)


def build_report(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """Check pairs and give the FNC1 element string, HRI and Digital Link, each when buildable."""
    report = _report(pairs, validate_pairs(pairs))
    report["element_string"] = build(pairs, check=False) if not report["errors"] else None
    return report


def _report(pairs: list[tuple[str, str]], issues: list[Gs1Issue]) -> dict[str, Any]:
    hri = build_hri(pairs, check=False)
    try:
        link: str | None = build_digital_link(pairs)
    except DigitalLinkError:
        link = None  # no primary key (or an unusable one): there is no Digital Link for this data
    return {
        "ok": not issues,
        "elements": [{"ai": ai, "value": value} for ai, value in pairs],
        "hri": hri,
        "digital_link": link,
        "errors": [{"ai": i.ai, "position": i.position, "message": i.message, "rule": i.rule} for i in issues],
    }
