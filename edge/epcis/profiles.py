"""Partner profiles: what one receiver of our EPCIS documents wants (config/partners/<id>.yaml), checked at load.

A profile picks the EPCIS version and syntax, how identifiers are written, which optional parts a document
carries (extensions, master data, a Standard Business Document Header, event IDs, the work order) and how
documents are cut and named when they are dropped as files.
"""

from __future__ import annotations

import re
import string
from pathlib import Path
from typing import Literal, Self

from pydantic import Field, field_validator, model_validator

import edge
from edge.config.document import in_file_order, mapping_document, validate_document
from edge.config.explain import relation_issue
from edge.config.load import read_config_text
from edge.config.models import RelationError
from edge.errors import ConfigError, ConfigIssue
from edge.gs1.checks import gs1_check_digit
from edge.markets.models import ID_PATTERN, EpcisSpec

__all__ = [
    "FILE_NAME_FIELDS",
    "PROFILE_SUFFIX",
    "PartnerProfile",
    "load_profile",
    "load_profile_text",
    "load_profiles",
    "profile_from_market",
    "profile_ids",
    "profile_problems",
    "shipped_profiles_dir",
]

PROFILE_SUFFIX = ".yaml"
MAX_EVENTS_LIMIT = 10_000_000
"""The most events a profile may put in one document (a 1,000,000-unit batch fits ten times over)."""

FILE_NAME_FIELDS: dict[str, type] = {
    "line": str,
    "work_order": str,
    "batch": str,
    "lot": str,
    "gtin": str,
    "partner": str,
    "seq": int,
    "ext": str,
}
"""Placeholders a file_name template may use, with the type of value each one is formatted from."""
_SAMPLE: dict[type, object] = {str: "x", int: 1}
# What a value may keep in a file name: anything else (a lot with "/" in it) becomes "_".
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def _file_name_template(template: str) -> str:
    """Accept a file name template with known placeholders, valid format specs and {seq}; else ValueError."""
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ValueError(f'"{template}": {exc}; write {{{{ and }}}} for literal braces') from exc
    known = ", ".join(f"{{{name}}}" for name in FILE_NAME_FIELDS)
    used: set[str] = set()
    for literal, name, spec, conversion in parts:
        if "/" in literal or "\\" in literal:
            raise ValueError(f'"{template}" is a file name: it must not contain / or \\')
        if name is None:
            continue
        shown = "{" + name + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "") + "}"
        kind = FILE_NAME_FIELDS.get(name)
        if kind is None:
            raise ValueError(f"unknown placeholder {shown}: use {known}")
        if conversion is not None or "{" in (spec or ""):
            raise ValueError(f"placeholder {shown}: write {{{name}}} or {{{name}:<format>}}, like {{seq:04d}}")
        try:
            format(_SAMPLE[kind], spec or "")
        except ValueError as exc:
            raise ValueError(f"placeholder {shown}: {exc}") from exc
        used.add(name)
    if "seq" not in used:
        # A batch longer than max_events_per_document is cut into several documents that need distinct names.
        raise ValueError(f'"{template}" needs {{seq}} (like {{seq:04d}}): the documents of one batch must differ')
    if template.startswith("."):
        raise ValueError(f'"{template}" would make hidden files: start it with text or a placeholder')
    return template


class PartnerProfile(EpcisSpec):
    """What one partner wants in the EPCIS documents it receives from the line."""

    id: str = Field(pattern=ID_PATTERN)
    """Short name, the same as the file name without .yaml, like dscsa-epcis12-xml."""
    name: str = Field(min_length=1)
    """Human name of the partner or of the exchange."""
    extensions: bool = False
    """Write the line's own fields (namespace urn:lineside:epcis:1:) in events; a strict partner refuses unknown
    fields, so they are off unless the partner is known to accept them."""
    master_data: bool = False
    """Put EPCISMasterData (vocabulary EPCClass) for the product in the document header."""
    sbdh: bool = False
    """Write a Standard Business Document Header with sender and receiver GLNs (XML); in JSON-LD the
    header's fields sender, receiver and instanceIdentifier on the document instead."""
    event_ids: bool = True
    """Write each event's eventID (the GS1 event hash), so that a re-sent event is recognised as the same."""
    work_order_transaction: bool = False
    """Write the work order as a bizTransaction of type prodorder; off, prodorder transactions are left out."""
    max_events_per_document: int = Field(10_000, strict=True, ge=1, le=MAX_EVENTS_LIMIT)
    """Most events in one document; a longer batch is cut into several documents."""
    file_name: str = "{line}-{batch}-{seq:04d}.{ext}"
    """File name of a document dropped as a file, with placeholders {line} {work_order} {batch} {lot} {gtin}
    {partner} {seq} (the document's number in the batch, from 1; like {seq:04d}) and {ext} (jsonld or xml)."""
    rejects: Literal["decommission", "omit"] = "decommission"
    """decommission: rejected units are reported (commissioned, then decommissioned); omit: left out."""
    receiver_gln: str | None = Field(None, pattern=r"^[0-9]{13}$")
    """GLN of the partner receiving the documents, named in the SBDH (required with sbdh: true); quote it."""

    @field_validator("file_name")
    @classmethod
    def _file_name(cls, template: str) -> str:
        return _file_name_template(template)

    @field_validator("receiver_gln")
    @classmethod
    def _gln(cls, gln: str | None) -> str | None:
        if gln is not None and gs1_check_digit(gln[:12]) != int(gln[12]):
            raise ValueError(f'"{gln}" has a wrong check digit {gln[12]}: the GS1 check digit of {gln[:12]} is '
                             f"{gs1_check_digit(gln[:12])}")
        return gln

    @model_validator(mode="after")
    def _header_needs(self) -> Self:
        if self.version == "1.2" and self.master_data and not self.sbdh:
            # The 1.2 XSD makes the SBDH the first, required element of EPCISHeader.
            message = "EPCIS 1.2 carries master data in a header that must start with an SBDH: set sbdh: true"
            raise RelationError(message, at=("master_data",))
        return self

    @property
    def extension(self) -> str:
        """File name extension of this profile's documents, without the dot: jsonld or xml."""
        return "jsonld" if self.syntax == "json-ld" else "xml"

    def document_file_name(
        self,
        *,
        seq: int,
        line: str = "",
        work_order: str = "",
        batch: str = "",
        lot: str = "",
        gtin: str = "",
    ) -> str:
        """Render file_name; characters other than letters, digits, '.', '_' and '-' in the values become '_'."""
        values = {"line": line, "work_order": work_order, "batch": batch, "lot": lot, "gtin": gtin, "partner": self.id}
        safe: dict[str, object] = {key: _UNSAFE.sub("_", value) for key, value in values.items()}
        return self.file_name.format(**safe, seq=seq, ext=self.extension)


def profile_from_market(spec: EpcisSpec) -> PartnerProfile:
    """Return the default profile of a market's EPCIS section: its version, syntax and identifiers, nothing optional."""
    tag = f"epcis{spec.version.replace('.', '')}-{spec.syntax}-{spec.identifiers.replace('_', '-')}"
    return PartnerProfile(
        id=f"market-{tag}",
        name=f"Market default: EPCIS {spec.version} {spec.syntax}, {spec.identifiers} identifiers",
        version=spec.version,
        syntax=spec.syntax,
        identifiers=spec.identifiers,
    )


def shipped_profiles_dir() -> Path:
    """Return the partner profiles shipped with Lineside: config/partners beside the edge package."""
    return Path(edge.__file__).resolve().parents[1] / "config" / "partners"


def profile_problems(profile: PartnerProfile, *, expected_id: str | None = None) -> list[RelationError]:
    """Return what is wrong with a profile that its model alone cannot see (its id against its file name)."""
    if expected_id is not None and profile.id != expected_id:
        return [RelationError(f'"{profile.id}" does not match the file name: it must be "{expected_id}"', at=("id",))]
    return []


def load_profile_text(text: str, filename: str) -> PartnerProfile:
    """Parse and check one profile; its id must be the stem of filename; ConfigError lists every problem."""
    doc = mapping_document(
        text,
        filename,
        empty="the file is empty: a partner profile needs id:, name:, version:, syntax: and identifiers:",
        top_level="the top level must be a mapping of keys (id:, name:, version:, ...)",
    )
    issues = list(doc.issues)
    profile = validate_document(PartnerProfile, doc, filename, issues)
    expected_id = Path(filename).name.removesuffix(PROFILE_SUFFIX)
    issues += [
        relation_issue(problem, (), doc, filename) for problem in profile_problems(profile, expected_id=expected_id)
    ]
    if issues:
        raise in_file_order(issues)
    return profile


def load_profile(path: Path) -> PartnerProfile:
    """Read and check one profile file; ConfigError lists every problem as FILE:LINE:COL: message."""
    return load_profile_text(read_config_text(path), str(path))


def profile_ids(directory: Path) -> list[str]:
    """Return the ids of the profiles in directory (file names without .yaml), sorted; nothing is checked."""
    return sorted(p.name.removesuffix(PROFILE_SUFFIX) for p in directory.glob(f"*{PROFILE_SUFFIX}") if p.is_file())


def load_profiles(directory: Path) -> dict[str, PartnerProfile]:
    """Load every profile in directory, by id; ConfigError lists the problems of all files together."""
    if not directory.is_dir():
        raise ConfigError([ConfigIssue(str(directory), 1, 1, "cannot read: not a directory of partner profiles")])
    profiles: dict[str, PartnerProfile] = {}
    issues: list[ConfigIssue] = []
    for path in sorted(directory.iterdir()):
        if path.suffix == ".yml":
            # Silently skipping it would leave an integrator wondering why the partner is unknown.
            message = (
                f"partner profiles are read from {PROFILE_SUFFIX} files only: rename it to {path.stem}{PROFILE_SUFFIX}"
            )
            issues.append(ConfigIssue(str(path), 1, 1, message))
        if path.suffix != PROFILE_SUFFIX or not path.is_file():
            continue
        try:
            profile = load_profile(path)
        except ConfigError as exc:
            issues += exc.issues
        else:
            profiles[profile.id] = profile
    if issues:
        raise ConfigError(issues)
    return profiles
