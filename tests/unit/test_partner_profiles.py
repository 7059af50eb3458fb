"""Partner profiles: the shipped ones load; broken ones fail at FILE:LINE:COL; a market's default profile.

Each file in bad_profiles/ lists the exact problems it must produce in ``# expect: LINE:COL: message`` lines.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from edge.epcis.documents import content_type, file_extension
from edge.epcis.profiles import (
    PartnerProfile,
    load_profile,
    load_profile_text,
    load_profiles,
    profile_from_market,
    profile_ids,
    shipped_profiles_dir,
)
from edge.errors import ConfigError
from edge.markets import EpcisSpec, load_markets
from tests.conftest import ROOT

PARTNERS = ROOT / "config" / "partners"
BAD_PROFILES = Path(__file__).parent / "bad_profiles"
BAD_FILES = sorted(BAD_PROFILES.glob("*.yaml"))
SHIPPED = ["dscsa-epcis12-xml", "gs1-epcis2-digital-link", "gs1-epcis2-jsonld", "gs1-epcis2-xml"]
MINIMAL = 'id: {id}\nname: A partner\nversion: "2.0"\nsyntax: json-ld\nidentifiers: urn\n'


def expectations(path: Path) -> list[str]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return [f"{path}:{line.removeprefix('# expect: ')}" for line in lines if line.startswith("# expect: ")]


def problems(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_profile(path)
    return [str(issue) for issue in caught.value.issues]


def profile(**fields) -> PartnerProfile:
    base = {"id": "p", "name": "P", "version": "2.0", "syntax": "json-ld", "identifiers": "urn"}
    return PartnerProfile.model_validate(base | fields)


# The shipped profiles


def test_every_shipped_profile_is_found():
    assert shipped_profiles_dir() == PARTNERS
    assert profile_ids(PARTNERS) == SHIPPED


def test_shipped_profiles_load_together():
    profiles = load_profiles(PARTNERS)
    assert sorted(profiles) == SHIPPED
    assert all(profiles[name].id == name for name in SHIPPED)


def test_dscsa_profile_is_what_dscsa_exchanges_use():
    dscsa = load_profile(PARTNERS / "dscsa-epcis12-xml.yaml")
    assert (dscsa.version, dscsa.syntax, dscsa.identifiers) == ("1.2", "xml", "urn")
    assert dscsa.sbdh
    assert dscsa.master_data
    assert dscsa.event_ids


def test_digital_link_profile():
    link = load_profile(PARTNERS / "gs1-epcis2-digital-link.yaml")
    assert (link.version, link.syntax, link.identifiers) == ("2.0", "json-ld", "digital_link")


def test_defaults():
    loaded = load_profile_text(MINIMAL.format(id="minimal"), "minimal.yaml")
    assert not loaded.extensions
    assert not loaded.master_data
    assert not loaded.sbdh
    assert loaded.event_ids
    assert not loaded.work_order_transaction
    assert loaded.max_events_per_document == 10_000
    assert loaded.rejects == "decommission"
    assert loaded.file_name == "{line}-{batch}-{seq:04d}.{ext}"


def test_content_type_and_extension():
    assert (content_type(profile()), file_extension(profile())) == ("application/ld+json", "jsonld")
    xml = profile(syntax="xml", version="1.2")
    assert (content_type(xml), file_extension(xml)) == ("application/xml", "xml")


def test_document_file_name_keeps_values_safe():
    named = profile(file_name="{partner}_{line}_{work_order}_{batch}_{lot}_{gtin}_{seq:03d}.{ext}")
    name = named.document_file_name(seq=7, line="L1", work_order="WO 7", batch="12", lot="A/B..", gtin="04012345000016")
    assert name == "p_L1_WO_7_12_A_B.._04012345000016_007.jsonld"
    assert "/" not in profile().document_file_name(seq=1, line="../etc", batch="x")


def test_json_ld_may_have_the_sbdh_stand_ins():
    assert profile(sbdh=True, master_data=True).sbdh


# Broken profiles


def test_there_are_enough_bad_profiles():
    assert len(BAD_FILES) >= 15


@pytest.mark.parametrize("path", BAD_FILES, ids=[path.stem for path in BAD_FILES])
def test_bad_profile_reports_exactly_what_its_header_expects(path):
    expected = expectations(path)
    assert expected, f"{path} has no '# expect: LINE:COL: message' line"
    assert problems(path) == expected


def test_problems_of_all_files_are_collected(tmp_path):
    for name in ("rejects", "unknown-key"):
        (tmp_path / f"{name}.yaml").write_text((BAD_PROFILES / f"{name}.yaml").read_text(encoding="utf-8"))
    (tmp_path / "good.yaml").write_text(MINIMAL.format(id="good"))
    with pytest.raises(ConfigError) as caught:
        load_profiles(tmp_path)
    assert [Path(issue.file).name for issue in caught.value.issues] == ["rejects.yaml", "unknown-key.yaml"]


def test_a_yml_file_is_not_skipped_silently(tmp_path):
    (tmp_path / "partner.yml").write_text(MINIMAL.format(id="partner"))
    with pytest.raises(ConfigError) as caught:
        load_profiles(tmp_path)
    assert [str(issue) for issue in caught.value.issues] == [
        f"{tmp_path / 'partner.yml'}:1:1: partner profiles are read from .yaml files only: rename it to partner.yaml"
    ]


def test_missing_directory(tmp_path):
    with pytest.raises(ConfigError, match="not a directory of partner profiles"):
        load_profiles(tmp_path / "nowhere")


def test_an_empty_directory_has_no_profiles(tmp_path):
    assert load_profiles(tmp_path) == {}


@pytest.mark.parametrize("template", ["{seq}", "{seq:04d}.{ext}", "{gtin}-{lot}-{seq:>5}.{ext}", "a{{b}}{seq}"])
def test_file_name_templates_accepted(template):
    assert profile(file_name=template).file_name == template


@pytest.mark.parametrize("template", ["{seq!r}", "{seq[0]}", "{seq.real}", ".{seq}", "{seq:{width}}", "a\\{seq}"])
def test_file_name_templates_refused(template):
    with pytest.raises(ValueError, match="file_name"):
        profile(file_name=template)


# A market's default profile


@pytest.mark.parametrize(
    ("version", "syntax", "identifiers"),
    [("2.0", "json-ld", "urn"), ("2.0", "json-ld", "digital_link"), ("2.0", "xml", "urn"), ("1.2", "xml", "urn")],
)
def test_profile_from_market(version, syntax, identifiers):
    spec = EpcisSpec(version=version, syntax=syntax, identifiers=identifiers)
    made = profile_from_market(spec)
    assert (made.version, made.syntax, made.identifiers) == (version, syntax, identifiers)
    assert (made.extensions, made.master_data, made.sbdh, made.work_order_transaction) == (False, False, False, False)
    assert made.event_ids
    assert PartnerProfile.model_validate(made.model_dump()) == made


def test_every_shipped_market_has_a_default_profile():
    for pack in load_markets(ROOT / "config" / "markets").values():
        assert profile_from_market(pack.epcis).version == pack.epcis.version
