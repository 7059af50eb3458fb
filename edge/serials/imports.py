r"""Serials and complete codes supplied from outside (L3/L4), parsed and checked before anything is stored.

What arrives is shaped like the answer to an OPEN-SCS ``SNRequest``, as a YAML or JSON document (a file or an
HTTP body)::

    gtin: "04012345000016"          # required; GTIN-8/12/13/14, kept as 14 digits
    request_token: "REQ-2026-42"    # optional: the request or order it answers, kept for the audit trail
    serials: ["K7QX2M9P4TZA", ...]  # serials, and/or
    ranges: [{first: "000000100000", last: "000000199999"}]  # numeric ranges, inclusive, zero-padded
    codes: ["0104650000000013215Mq7Ycv1Xn9Ls\u001d91ABCD\u001d92..."]  # or complete codes, byte exact

or as plain text, one serial or one complete code per line. Pure: no store, no I/O. Every problem is a
``SerialImportError`` line ``FILE:LINE:COL: message`` (``FILE:LINE`` for text); up to 20 are listed, then
how many more there are. Duplicates within the import are found here; clashes with serials already known are
the store's business.
"""

from __future__ import annotations

import contextlib
import json
import re
from bisect import bisect_right
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import PurePath
from typing import TYPE_CHECKING, Literal, Protocol, TypeAlias, overload

from edge.errors import ConfigError, SerialImportError
from edge.gs1.element import GS, parse_and_validate
from edge.gs1.errors import Gs1SyntaxError
from edge.gs1.identifiers import IdentifierError, normalise_gtin
from edge.markets.models import DIGITS, SERIAL_CHARSETS
from edge.yamlpos import load_positioned

if TYPE_CHECKING:
    from edge.markets.models import MarketPack
    from edge.yamlpos import Document

__all__ = [
    "MAX_SERIALS",
    "REQUEST_BODY",
    "CompleteCode",
    "SerialBatchImport",
    "SerialFormat",
    "SerialRange",
    "Serials",
    "parse_serial_import",
]

MAX_SERIALS = 5_000_000
"""Most serials (or codes) one import may hold: larger deliveries are split, so one mistake costs less."""
MAX_SHOWN = 20
"""Problems listed in one error; the rest are counted."""
REQUEST_BODY = "<request body>"
"""The source name to give for data that came in an HTTP request rather than a file."""
TOP_KEYS = ("gtin", "request_token", "serials", "ranges", "codes")
RANGE_KEYS = ("first", "last")
DATAMATRIX_ID = "]d2"

Kind = Literal["auto", "yaml", "json", "text"]
_Line: TypeAlias = tuple[int, str]
Path: TypeAlias = tuple[object, ...]
"""Keys and list indices from the document root, like ("ranges", 0, "first"); (LINE,) for text files."""


class _KeyMarker:
    """Appended to a path to mean the position of the key itself rather than of its value."""


KEY = _KeyMarker()


class SerialFormat(Protocol):
    """What a serial may look like: a SerialSpec, or a product's narrower format."""

    @property
    def characters(self) -> str: ...

    @property
    def shortest(self) -> int: ...

    @property
    def longest(self) -> int: ...


# --- results ------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SerialRange:
    """The numeric serials first to last inclusive, each written with width digits (zero-padded)."""

    first: int
    last: int
    width: int

    @property
    def size(self) -> int:
        """How many serials the range holds (len() of a range beyond sys.maxsize would overflow)."""
        return self.last - self.first + 1

    def __len__(self) -> int:
        return self.size

    def __iter__(self) -> Iterator[str]:
        return map(f"{{:0{self.width}d}}".format, range(self.first, self.last + 1))

    def __contains__(self, serial: object) -> bool:
        return (
            isinstance(serial, str) and len(serial) == self.width and serial.isascii() and serial.isdigit()
            and self.first <= int(serial) <= self.last
        )

    def serial(self, number: int) -> str:
        """Return the serial for number, written with this range's width."""
        return f"{number:0{self.width}d}"


@dataclass(frozen=True, slots=True)
class Serials(Sequence[str]):
    """The serials of an import, in order: those listed, then each range, expanded only when read."""

    listed: tuple[str, ...] = ()
    ranges: tuple[SerialRange, ...] = ()

    def __len__(self) -> int:
        return len(self.listed) + sum(len(r) for r in self.ranges)

    def __iter__(self) -> Iterator[str]:
        yield from self.listed
        for serials in self.ranges:
            yield from serials

    def __contains__(self, serial: object) -> bool:
        return serial in self.listed or any(serial in r for r in self.ranges)

    @overload
    def __getitem__(self, index: int) -> str: ...

    @overload
    def __getitem__(self, index: slice) -> list[str]: ...

    def __getitem__(self, index: int | slice) -> str | list[str]:
        size = len(self)
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(size))]
        position = index + size if index < 0 else index
        if not 0 <= position < size:
            raise IndexError(f"serial index {index} out of range for {size:,} serials")
        if position < len(self.listed):
            return self.listed[position]
        position -= len(self.listed)
        for serials in self.ranges:
            if position < len(serials):
                return serials.serial(serials.first + position)
            position -= len(serials)
        raise AssertionError("unreachable: the index was checked against the length")


@dataclass(frozen=True, slots=True)
class CompleteCode:
    """A whole code issued from outside (serial plus crypto tail), to be printed exactly as received.

    ``code`` is the element string as bytes, GS (0x1D) separators included, without the symbology identifier:
    a leading ``]d2`` (GS1 DataMatrix) and a leading GS (FNC1 in first position, which the symbol carries
    anyway) are stripped on import. ``elements`` are its (AI, value) pairs in order; ``serial`` is AI 21.
    """

    serial: str
    code: bytes
    elements: tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class SerialBatchImport:
    """One checked delivery of serials or complete codes for one GTIN."""

    gtin: str
    """The GTIN as 14 digits."""
    request_token: str | None
    """The request (SNRequest token, order id) this answers, for the audit trail; None when not given."""
    serials: Serials
    """Serials from ``serials:`` and ``ranges:`` (or the lines of a text file), ranges expanded lazily."""
    codes: tuple[CompleteCode, ...]
    """Complete codes, for markets whose serials come with a crypto tail."""
    source: str
    """The file name, or REQUEST_BODY."""
    sequential: bool = False
    """True when a range was given: a market requiring random serials must refuse the import."""

    @property
    def count(self) -> int:
        """How many serials the import brings, as bare serials or inside codes."""
        return len(self.serials) + len(self.codes)


# --- problem collection -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _At:
    """A position already known as line and column (0 column: the line only)."""

    line: int
    column: int


Where: TypeAlias = Path | _At
Locator: TypeAlias = Callable[[Collection[Path]], dict[Path, _At]]


@dataclass
class _Problems:
    """Problems found so far: the first MAX_SHOWN kept with where they are, the rest only counted."""

    source: str
    shown: list[tuple[Where, str, Where | None, str]] = field(default_factory=list)
    count: int = 0

    def add(self, at: Where, message: str, other: Where | None = None, label: str = "first at") -> None:
        """Record a problem at ``at``; ``other`` is where the other half of a clash (duplicate, overlap) is."""
        self.count += 1
        if len(self.shown) < MAX_SHOWN:
            self.shown.append((at, message, other, label))

    def error(self, locate: Locator) -> SerialImportError:
        """Build the error, every problem prefixed with FILE:LINE:COL (or FILE:LINE, or FILE)."""
        paths = {w for at, _, other, _ in self.shown for w in (at, other) if w is not None and not isinstance(w, _At)}
        found = locate(paths)

        def resolve(where: Where) -> _At | None:
            return where if isinstance(where, _At) else found.get(where)

        def name(at: _At | None) -> str:
            if at is None or at.line == 0:
                return self.source
            return f"{self.source}:{at.line}" + (f":{at.column}" if at.column else "")

        rows = []
        for at, message, other, label in self.shown:
            here = resolve(at)
            text = message if other is None else f"{message} ({label} {name(resolve(other))})"
            rows.append(((here.line, here.column) if here else (0, 0), f"{name(here)}: {text}"))
        lines = [line for _, line in sorted(rows, key=lambda row: row[0])]
        if self.count > len(self.shown):
            lines.append(f"... and {self.count - len(self.shown):,} more problems ({self.count:,} in all)")
        return SerialImportError("\n".join(lines))

    def __bool__(self) -> bool:
        return self.count > 0


def _show(value: str) -> str:
    """Quote a value the way JSON does, so that GS, CR and spaces are visible."""
    return json.dumps(value, ensure_ascii=False)


def _lengths(shortest: int, longest: int) -> str:
    return str(shortest) if shortest == longest else f"{shortest} to {longest}"


_CHARSET_NAMES = {characters: name for name, characters in SERIAL_CHARSETS.items()}


# --- serial checks ------------------------------------------------------------------------------------------


class _SerialChecker:
    """Checks serials against one format: one compiled regular expression for the common case of no problem."""

    def __init__(self, fmt: SerialFormat) -> None:
        self.fmt = fmt
        self.allowed = frozenset(fmt.characters)
        self.pattern = re.compile(f"[{re.escape(fmt.characters)}]{{{fmt.shortest},{fmt.longest}}}")
        name = _CHARSET_NAMES.get(fmt.characters)
        self.format_name = name or f"alphabet {_show(fmt.characters)}"

    def problem(self, serial: str, what: str = "serial") -> str | None:
        """Say what is wrong with serial, or None when it fits the format."""
        if self.pattern.fullmatch(serial):
            return None
        bad = sorted(set(serial) - self.allowed)
        if bad:
            listed = ", ".join(_show(ch) for ch in bad)
            return f"{what} {_show(serial)} has {listed}, outside the serial format ({self.format_name})"
        expected = _lengths(self.fmt.shortest, self.fmt.longest)
        return f"{what} {_show(serial)} has {len(serial)} characters; the serial format takes {expected}"

    def check_all(self, serials: Sequence[str], path: Callable[[int], Path], problems: _Problems) -> None:
        """Add a problem for every serial that does not fit the format, and for every repeat."""
        fullmatch = self.pattern.fullmatch
        for index, serial in enumerate(serials):
            if not fullmatch(serial):
                problems.add(path(index), self.problem(serial) or "")
        _check_unique(serials, path, problems, "serial")


def _check_unique(values: Sequence[str], path: Callable[[int], Path], problems: _Problems, what: str) -> None:
    if len(set(values)) == len(values):  # the common case, in C
        return
    first: dict[str, int] = {}
    for index, value in enumerate(values):
        earlier = first.setdefault(value, index)
        if earlier != index:
            problems.add(path(index), f"{what} {_show(value)} appears twice", path(earlier))


# --- complete codes -----------------------------------------------------------------------------------------

_LITERAL_GS = re.compile(r"<GS>|\\x1d|\\u001d|\{GS\}|\^029|~1", re.IGNORECASE)


def _needs_gs_hint(text: str) -> str:
    if _LITERAL_GS.search(text):
        return "; GS must be the single byte 0x1D, not written out as text"
    return ""


@dataclass
class _CodeChecker:
    """Checks complete codes against the market: GS1 rules, the AIs it requires, its fixed lengths, the serial."""

    market: MarketPack
    serials: _SerialChecker
    gtin: str | None

    def check(self, text: str) -> tuple[CompleteCode | None, list[str]]:
        """Return the code and no problems, or None and what is wrong with it."""
        shown = f"code {_show(text)}"
        if "\r" in text or "\n" in text:
            return None, [f"{shown} has a line break inside: a code is one line, printed byte exact"]
        if text.startswith("]") and not text.startswith(DATAMATRIX_ID):
            return None, [f"{shown} starts with the symbology identifier {_show(text[:3])}, not ]d2 (GS1 DataMatrix)"]
        try:
            parsed, issues = parse_and_validate(text)
        except Gs1SyntaxError as exc:
            issue = exc.issue
            hint = _needs_gs_hint(text)
            where = f"at character {issue.position + 1}"
            return None, [f"{shown} is not a GS1 element string: {issue.message} {where}{hint}"]
        if parsed.hri:
            return None, [f"{shown} is human-readable text: give the element string with GS (0x1D), as encoded"]
        # GS1 problems first: until they are fixed, the market's checks would only repeat them.
        problems = [f"{issue.message} at character {issue.position + 1}" for issue in issues]
        problems = problems or self._market_problems(parsed.pairs)
        if problems:
            return None, [f"{shown}: {'; '.join(problems)}{_needs_gs_hint(text)}"]
        body = text.removeprefix(DATAMATRIX_ID).removeprefix(GS)
        serial = parsed.get("21") or ""
        return CompleteCode(serial, body.encode("ascii"), tuple(parsed.pairs)), []

    def _market_problems(self, pairs: list[tuple[str, str]]) -> list[str]:
        market = self.market
        values = dict(pairs[::-1])  # the first of a repeated AI wins, as ElementStrings.get does
        problems = [f"lacks AI ({ai}), which {market.id} requires" for ai in market.code.required if ai not in values]
        problems += [
            f"lacks AI ({ai}) of the crypto tail" for ai in market.code.crypto_tail
            if ai not in values and ai not in market.code.required
        ]
        allowed = set(market.code_ais) | set(market.code.crypto_tail)
        problems += [f"carries AI ({ai}), which {market.id} codes do not" for ai in values if ai not in allowed]
        for rule in market.code.lengths:
            value = values.get(rule.ai)
            if value is not None and not rule.shortest <= len(value) <= rule.longest:
                expected = _lengths(rule.shortest, rule.longest)
                problems.append(f"AI ({rule.ai}) has {len(value)} characters; {market.id} takes {expected}")
        serial = values.get("21")
        if serial is not None:
            problem = self.serials.problem(serial, "AI (21)")
            if problem is not None:
                problems.append(problem)
        gtin = values.get("01")
        if gtin is not None and self.gtin is not None and gtin != self.gtin:
            problems.append(f"AI (01) is {gtin}, but this import is for GTIN {self.gtin}")
        return problems


def _check_codes(
    items: Sequence[str], path: Callable[[int], Path], checker: _CodeChecker, problems: _Problems,
) -> list[CompleteCode]:
    codes: list[CompleteCode] = []
    indices: list[int] = []
    for index, text in enumerate(items):
        code, found = checker.check(text)
        for problem in found:
            problems.add(path(index), problem)
        if code is not None:
            codes.append(code)
            indices.append(index)
    _check_unique([code.serial for code in codes], lambda n: path(indices[n]), problems, "the code with serial")
    return codes


# --- reading the input --------------------------------------------------------------------------------------


def _decode(data: bytes | str, source: str) -> str:
    if isinstance(data, bytes):
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = data.count(b"\n", 0, exc.start) + 1
            message = f"{source}:{line}: byte 0x{data[exc.start]:02X} is not UTF-8 text"
            raise SerialImportError(message) from exc
    else:
        text = data
    return text.removeprefix("\ufeff")


_YAML_KEY_LINE = re.compile(r"^(?:---|(?:gtin|request_token|serials|ranges|codes)\s*:)", re.MULTILINE)


def _kind(kind: Kind, source: str, text: str) -> Kind:
    """Decide the format: by the file's suffix, else by the content (``{`` JSON, a known key YAML, else text)."""
    if kind != "auto":
        return kind
    suffix = "" if source == REQUEST_BODY else PurePath(source).suffix.lower()
    by_suffix: dict[str, Kind] = {".json": "json", ".yaml": "yaml", ".yml": "yaml", ".txt": "text"}
    if suffix in by_suffix:
        return by_suffix[suffix]
    if text.lstrip().startswith("{"):
        return "json"
    return "yaml" if _YAML_KEY_LINE.search(text) else "text"


def _line_columns(text: str, offsets: dict[Path, int]) -> dict[Path, _At]:
    """Turn character offsets into 1-based lines and columns in one pass over the text."""
    found: dict[Path, _At] = {}
    line, line_start, done = 1, 0, 0
    for path, offset in sorted(offsets.items(), key=lambda item: item[1]):
        newlines = text.count("\n", done, offset)
        if newlines:
            line += newlines
            line_start = text.rfind("\n", done, offset) + 1
        done = offset
        found[path] = _At(line, offset - line_start + 1)
    return found


_SPACE = re.compile(r"[ \t\n\r]*")
_JSON_DEPTH = 3  # the deepest path a problem names: ranges, index, first


class _Found(Exception):  # noqa: N818 - a control-flow signal, not an error
    """Every wanted offset is known: stop walking."""


def _json_offsets(
    text: str, wanted: Collection[Path], duplicates: list[tuple[str, int, int]] | None = None,
) -> dict[Path, int]:
    """Return the offset of every wanted path in a valid JSON text; list repeated keys in ``duplicates``.

    Walks the top three levels by hand; deeper values and every scalar are skipped with the C decoder. A
    repeated key is noted as (key, its offset, the first one's offset), and its value is not located: the
    data keeps the first.
    """
    decoder = json.JSONDecoder(strict=False)
    found: dict[Path, int] = {}

    def skip(i: int) -> int:
        match = _SPACE.match(text, i)
        return match.end() if match else i

    def note(path: Path, offset: int) -> None:
        if path in wanted:
            found[path] = offset
            if duplicates is None and len(found) == len(wanted):
                raise _Found

    def value(i: int, path: Path) -> int:
        i = skip(i)
        note(path, i)
        opening = text[i]
        if len(path) >= _JSON_DEPTH or opening not in "[{":
            return decoder.raw_decode(text, i)[1]
        i = skip(i + 1)
        if text[i] in "]}":
            return i + 1
        seen: dict[str, int] = {}
        index = 0
        while True:
            if opening == "{":
                key_at = i
                key, i = decoder.raw_decode(text, i)  # a JSON key is a string
                first_at = seen.setdefault(key, key_at)
                child: Path = (*path, key)
                if first_at != key_at:
                    if duplicates is not None:
                        duplicates.append((key, key_at, first_at))
                    child = (*path, key, "(repeated)")  # never wanted
                note((*child, KEY), key_at)
                i = skip(skip(i) + 1)  # past the colon
                i = value(i, child)
            else:
                i = value(i, (*path, index))
                index += 1
            i = skip(i)
            if text[i] == ",":
                i = skip(i + 1)
                continue
            return i + 1

    if wanted or duplicates is not None:
        with contextlib.suppress(_Found):
            value(0, ())
    return found


@dataclass
class _Doc:
    """A parsed YAML or JSON document: the data, problems found while reading it, and how to locate a path."""

    data: object
    issues: list[tuple[_At, str, _At | None]]
    locate: Locator
    plain: Callable[[Path], str | None]


def _load_yaml(text: str, source: str) -> _Doc:
    try:
        doc = load_positioned(text, source)
    except ConfigError as exc:
        lines = []
        for issue in exc.issues:
            message = issue.message
            if "'\\x1d'" in message:
                message += ': write GS as "\\x1d" inside a double-quoted string'
            elif "document too large" in message:
                message += "; deliver large imports as JSON or as a text file, one serial or code per line"
            lines.append(f"{issue.file}:{issue.line}:{issue.column}: {message}")
        raise SerialImportError("\n".join(lines)) from exc
    if doc is None:
        return _Doc(None, [], lambda _: {}, lambda _: None)
    issues: list[tuple[_At, str, _At | None]] = [(_At(i.line, i.column), i.message, None) for i in doc.issues]
    positioned: Document = doc

    def locate(paths: Collection[Path]) -> dict[Path, _At]:
        found: dict[Path, _At] = {}
        for path in paths:
            key = bool(path) and path[-1] is KEY
            node, _ = positioned.locate(path[:-1] if key else path)
            at = (node.key or node.value) if key else node.value
            found[path] = _At(at.line, at.column)
        return found

    def plain(path: Path) -> str | None:
        node, whole = positioned.locate(path)
        return node.plain if whole else None

    return _Doc(doc.data, issues, locate, plain)


def _load_json(text: str, source: str) -> _Doc:
    repeated = False

    def pairs(items: list[tuple[str, object]]) -> dict[str, object]:
        nonlocal repeated
        result: dict[str, object] = {}
        for key, item in items:
            if key in result:
                repeated = True  # the first wins, as in YAML; where it is, the walk below finds out
            else:
                result[key] = item
        return result

    try:
        # strict=False lets a raw GS byte stand inside a string, as some exporters write it.
        data = json.loads(text, object_pairs_hook=pairs, strict=False)
    except json.JSONDecodeError as exc:
        raise SerialImportError(f"{source}:{exc.lineno}:{exc.colno}: JSON syntax: {exc.msg}") from exc
    except RecursionError as exc:
        raise SerialImportError(f"{source}: JSON nested too deeply") from exc

    def locate(paths: Collection[Path]) -> dict[Path, _At]:
        return _line_columns(text, _json_offsets(text, set(paths), []))

    issues: list[tuple[_At, str, _At | None]] = []
    if repeated:
        duplicates: list[tuple[str, int, int]] = []
        _json_offsets(text, (), duplicates)
        offsets: dict[Path, int] = {}
        for n, (_, later, first) in enumerate(duplicates):
            offsets[(n, "later")], offsets[(n, "first")] = later, first
        places = _line_columns(text, offsets)
        for n, (key, _, _) in enumerate(duplicates):
            issues.append((places[(n, "later")], f"duplicate key {_show(key)}", places[(n, "first")]))
    return _Doc(data, issues, locate, lambda _: None)


# --- the document form --------------------------------------------------------------------------------------


def _not_text(what: str, value: object, plain: str | None) -> str:
    """Explain why a value is not the string wanted, with the fix."""
    if isinstance(value, list):
        return f"{what} must be a single string, not a list"
    if isinstance(value, dict):
        return f"{what} must be a single string, not a mapping"
    if plain is not None:
        if value is None:
            return f"{what} is empty"
        if isinstance(value, bool):
            typed = f"the boolean {str(value).lower()}"
        elif isinstance(value, date):
            typed = f"the date {value.isoformat()}"
        else:
            typed = f"the number {value}" if isinstance(value, int | float) else f"{type(value).__name__} {value}"
        # YAML 1.1 reads 0123 as an octal number and drops leading zeros from others: quoting keeps the text.
        return f"{what} {plain} is read by YAML as {typed}: quote it, {_show(plain)}"
    return f"{what} must be a string in quotes, got {json.dumps(value, default=str)}"


@dataclass
class _Reader:
    """Checks one YAML or JSON document against the market and the serial format."""

    doc: _Doc
    source: str
    market: MarketPack
    checker: _SerialChecker
    gtin: str | None
    problems: _Problems

    def string(self, path: Path, value: object, what: str) -> str | None:
        """Return value when it is a string; else report why it is not, at path, and return None."""
        if isinstance(value, str):
            return value
        self.problems.add(path, _not_text(what, value, self.doc.plain(path)))
        return None

    def strings(self, data: dict[object, object], key: str, what: str) -> list[tuple[int, str]]:
        """Return the (index, string) items of the list under key, reporting the ones that are not strings."""
        items = data.get(key)
        if items is None:
            return []
        if not isinstance(items, list):
            example = '["K7QX2M9P4TZA", "2HW8ND5RQ0XV"]' if key == "serials" else '["0104012345000016215Mq7...", ...]'
            self.problems.add((key,), f"{key} must be a list of strings, like {example}")
            return []
        if all(type(item) is str for item in items):  # the common case, without a call per item
            return list(enumerate(items))
        found = []
        for index, item in enumerate(items):
            text = self.string((key, index), item, what)
            if text is not None:
                found.append((index, text))
        return found

    def read_gtin(self, data: dict[object, object]) -> str | None:
        if "gtin" not in data:
            if self.gtin is None:
                self.problems.add((), 'no gtin: say which GTIN the serials are for, like gtin: "04012345000016"')
            return self.gtin
        text = self.string(("gtin",), data["gtin"], "gtin")
        if text is None:
            return self.gtin
        try:
            found = normalise_gtin(text)
        except IdentifierError as exc:
            self.problems.add(("gtin",), str(exc))
            return self.gtin
        if self.gtin is not None and found != self.gtin:
            self.problems.add(("gtin",), f"GTIN {text} is not {self.gtin}, the GTIN this import was asked for")
        return found

    def read_ranges(self, data: dict[object, object]) -> list[tuple[SerialRange, Path]]:
        items = data.get("ranges")
        if items is None:
            return []
        if not isinstance(items, list):
            self.problems.add(("ranges",), 'ranges must be a list like [{first: "000100", last: "000199"}]')
            return []
        ranges = []
        for index, item in enumerate(items):
            path: Path = ("ranges", index)
            if not isinstance(item, dict):
                self.problems.add(path, 'a range is a mapping like {first: "000100", last: "000199"}')
                continue
            for key in item:
                if key not in RANGE_KEYS:
                    message = f"unknown key {_show(str(key))} in a range: it takes first and last"
                    self.problems.add((*path, key, KEY), message)
            missing = [key for key in RANGE_KEYS if key not in item]
            if missing:
                self.problems.add(path, f"the range lacks {' and '.join(missing)}")
                continue
            first = self.string((*path, "first"), item["first"], "first")
            last = self.string((*path, "last"), item["last"], "last")
            if first is not None and last is not None:
                found = self.read_range(path, first, last)
                if found is not None:
                    ranges.append((found, path))
        return ranges

    def read_range(self, path: Path, first: str, last: str) -> SerialRange | None:
        shown = f"range {_show(first)} to {_show(last)}"
        for key, end in (("first", first), ("last", last)):
            if not (end.isascii() and end.isdigit()):
                self.problems.add((*path, key), f"{key} {_show(end)} is not all digits: a range counts in decimal")
                return None
        if len(first) != len(last):
            self.problems.add(
                (*path, "last"),
                f"{shown}: first has {len(first)} digits, last {len(last)}; write both ends zero-padded to one width",
            )
            return None
        problem = self.checker.problem(first, "first")
        if problem is None and not set(DIGITS) <= self.checker.allowed:
            problem = f"{shown}: the serial format ({self.checker.format_name}) does not allow every digit"
        if problem is not None:
            self.problems.add((*path, "first"), problem)
            return None
        if int(first) > int(last):
            self.problems.add(path, f"{shown} runs backwards: first is after last")
            return None
        return SerialRange(int(first), int(last), len(first))

    def check_overlaps(self, ranges: list[tuple[SerialRange, Path]], listed: list[tuple[int, str]]) -> None:
        """Report ranges that overlap and listed serials that a range also holds."""
        by_width: dict[int, list[tuple[SerialRange, Path]]] = {}
        for item in sorted(ranges, key=lambda item: (item[0].width, item[0].first)):
            group = by_width.setdefault(item[0].width, [])
            if group:
                reach, reach_path = max(group, key=lambda earlier: earlier[0].last)
                if item[0].first <= reach.last:
                    serial = item[0].serial(item[0].first)
                    message = f"this range overlaps another: serial {_show(serial)} would come twice"
                    self.problems.add(item[1], message, reach_path, "the other range at")
            group.append(item)
        starts = {width: [r.first for r, _ in group] for width, group in by_width.items()}
        for index, serial in listed:
            same_width = by_width.get(len(serial))
            if same_width is None or not (serial.isascii() and serial.isdigit()):
                continue
            at = bisect_right(starts[len(serial)], int(serial)) - 1
            # Earlier ranges in the sorted group start lower; any of them may reach this far.
            for candidate, candidate_path in same_width[: at + 1]:
                if serial in candidate:
                    message = f"serial {_show(serial)} is also in a range"
                    self.problems.add(("serials", index), message, candidate_path, "the range at")
                    break

    def read_token(self, data: dict[object, object]) -> str | None:
        if "request_token" not in data:
            return None
        token = self.string(("request_token",), data["request_token"], "request_token")
        if token is not None and not token.strip():
            self.problems.add(("request_token",), "request_token is blank: give the token or leave the key out")
        return token

    def read_serials(self, data: dict[object, object]) -> tuple[list[tuple[int, str]], list[tuple[SerialRange, Path]]]:
        """Return the listed serials (with their index) and the ranges, each checked."""
        market = self.market
        if market.serial_source == "external_complete_codes":
            for key in ("serials", "ranges"):
                if key in data:
                    message = f"this market ({market.id}) takes complete codes with their crypto tail, not serials"
                    self.problems.add((key, KEY), message)
            return [], []
        listed = self.strings(data, "serials", "serial")
        indices = [index for index, _ in listed]
        self.checker.check_all([serial for _, serial in listed], lambda n: ("serials", indices[n]), self.problems)
        ranges = self.read_ranges(data)
        self.check_overlaps(ranges, listed)
        return listed, ranges

    def read_codes(self, data: dict[object, object], gtin: str | None) -> list[CompleteCode]:
        if "codes" not in data:
            return []
        if not self.market.code.crypto_tail:
            self.problems.add(("codes", KEY), f"this market ({self.market.id}) takes serials, not complete codes")
            return []
        items = self.strings(data, "codes", "code")
        checker = _CodeChecker(self.market, self.checker, gtin)
        return _check_codes([text for _, text in items], lambda n: ("codes", items[n][0]), checker, self.problems)

    def read(self) -> SerialBatchImport:
        data = self.doc.data
        if data is None:
            self.problems.add(_At(1, 1), "the document is empty: give gtin: and serials:, ranges: or codes:")
            raise self.problems.error(self.doc.locate)
        if not isinstance(data, dict):
            message = "the top level must be a mapping with gtin: and serials:, ranges: or codes:"
            self.problems.add((), message)
            raise self.problems.error(self.doc.locate)
        for at, message, first in self.doc.issues:
            self.problems.add(at, message, first)
        for key in data:
            if key not in TOP_KEYS:
                self.problems.add((key, KEY), f"unknown key {_show(str(key))}: the keys are {', '.join(TOP_KEYS)}")
        gtin = self.read_gtin(data)
        token = self.read_token(data)
        listed, ranges = self.read_serials(data)
        codes = self.read_codes(data, gtin)
        total = len(listed) + sum(r.size for r, _ in ranges) + len(codes)
        _check_total(total, self.problems, "nothing to import: give serials:, ranges: or codes:")
        if self.problems or gtin is None:
            raise self.problems.error(self.doc.locate)
        return SerialBatchImport(
            gtin=gtin,
            request_token=token,
            serials=Serials(tuple(serial for _, serial in listed), tuple(r for r, _ in ranges)),
            codes=tuple(codes),
            source=self.source,
            sequential=bool(ranges),
        )


def _check_total(total: int, problems: _Problems, empty: str) -> None:
    if total > MAX_SERIALS:
        problems.add((), f"{total:,} serials in one import; at most {MAX_SERIALS:,} are taken at once: split it")
    if not problems and total == 0:
        problems.add((), empty)


# --- the text form ------------------------------------------------------------------------------------------


def _is_code_line(line: str, longest_serial: int) -> bool:
    """Tell a complete code from a serial: a code starts with ]d2, GS, or 01 and has a GS or is too long for a serial.

    A numeric serial of 19 or 20 characters can begin with 01 and even parse as (01)(21); that is why the
    length or a GS decides, never the parse.
    """
    if line.startswith(("]", GS)):
        return True
    return line.startswith("01") and (GS in line or len(line) > longest_serial)


def _text_lines(text: str, longest_serial: int, problems: _Problems) -> tuple[list[_Line], list[_Line]]:
    """Split a text file into (line number, serial) and (line number, code) lines; blank lines are skipped."""
    serials: list[_Line] = []
    codes: list[_Line] = []
    for number, raw in enumerate(text.split("\n"), 1):
        line = raw.removesuffix("\r")  # CRLF files; a CR anywhere else is refused below
        if not line.strip():
            continue
        if "\r" in line:
            problems.add((number,), f"carriage return inside the line {_show(line)}: a serial or code is one line")
            continue
        (codes if _is_code_line(line, longest_serial) else serials).append((number, line))
    if serials and codes:
        s_line, c_line = serials[0][0], codes[0][0]
        kinds = ("a complete code", "serial") if c_line > s_line else ("a serial", "complete code")
        message = f"this line is {kinds[0]}: a file holds serials or complete codes, not both"
        problems.add((max(s_line, c_line),), message, (min(s_line, c_line),), f"the first {kinds[1]} at")
    return serials, codes


def _text_locate(paths: Collection[Path]) -> dict[Path, _At]:
    return {path: _At(path[0] if path and isinstance(path[0], int) else 0, 0) for path in paths}


def _read_text(
    text: str, source: str, market: MarketPack, checker: _SerialChecker, gtin: str | None,
) -> SerialBatchImport:
    problems = _Problems(source)
    serials, codes = _text_lines(text, checker.fmt.longest, problems)
    if serials and codes:
        raise problems.error(_text_locate)
    if serials and market.serial_source == "external_complete_codes":
        message = f"this market ({market.id}) takes complete codes with their crypto tail, not serials"
        problems.add((serials[0][0],), message)
    elif serials:
        if gtin is None:
            problems.add((), "a list of serials names no GTIN: give the GTIN with the import")
        checker.check_all([s for _, s in serials], lambda n: (serials[n][0],), problems)
    found: list[CompleteCode] = []
    if codes and not market.code.crypto_tail:
        problems.add((codes[0][0],), f"this market ({market.id}) takes serials, not complete codes")
    elif codes:
        # Without a GTIN given, the first code's readable one is the import's; the others must match it.
        gtin = gtin or next(filter(None, (_first_gtin(line) for _, line in codes)), None)
        code_checker = _CodeChecker(market, checker, gtin)
        found = _check_codes([c for _, c in codes], lambda n: (codes[n][0],), code_checker, problems)
    _check_total(len(serials) + len(codes), problems, "nothing to import: the file holds no serials or codes")
    if problems or gtin is None:
        raise problems.error(_text_locate)
    return SerialBatchImport(
        gtin=gtin,
        request_token=None,
        serials=Serials(tuple(s for _, s in serials)),
        codes=tuple(found),
        source=source,
    )


def _first_gtin(line: str) -> str | None:
    try:
        parsed, _ = parse_and_validate(line)
    except Gs1SyntaxError:
        return None
    value = parsed.get("01")
    try:
        return None if value is None else normalise_gtin(value)
    except IdentifierError:
        return None


# --- entry point --------------------------------------------------------------------------------------------


def parse_serial_import(
    data: bytes | str,
    source: str,
    *,
    market: MarketPack,
    serial_format: SerialFormat | None = None,
    kind: Kind = "auto",
    gtin: str | None = None,
) -> SerialBatchImport:
    """Parse and check serials or complete codes from outside; SerialImportError lists what is wrong and where.

    ``source`` names the data in messages (a file name, or REQUEST_BODY). ``serial_format`` narrows the
    market's (``market.serial`` when None). ``kind`` "auto" goes by the suffix of source (.json, .yaml/.yml,
    .txt), else by the content: JSON when it starts with ``{``, YAML when a line starts with one of the keys,
    else text. ``gtin`` is required for a text file of serials; for a text file of codes it defaults to the
    first code's; in a document it must agree with ``gtin:``. Bytes must be UTF-8 (a BOM is ignored).
    """
    text = _decode(data, source)
    checker = _SerialChecker(serial_format or market.serial)
    expected = None
    if gtin is not None:
        try:
            expected = normalise_gtin(gtin)
        except IdentifierError as exc:
            raise SerialImportError(f"{source}: the GTIN given with the import: {exc}") from exc
    chosen = _kind(kind, source, text)
    if chosen == "text":
        return _read_text(text, source, market, checker, expected)
    doc = _load_json(text, source) if chosen == "json" else _load_yaml(text, source)
    return _Reader(doc, source, market, checker, expected, _Problems(source)).read()
