"""Our EPCIS documents against GS1's official schemas, and our validator against GS1's official examples.

The EPCIS 2.0 JSON Schema, XSDs and examples come from the corpora (gs1/EPCIS); the EPCIS 1.2 XSDs are not
in the corpora and are fetched by scripts/test (ensure_epcis12_xsd) into .venv/share/epcis-1.2-xsd.
"""

from __future__ import annotations

import io
import json
from dataclasses import replace
from pathlib import Path

import pytest

from edge.epcis import validate
from edge.epcis.documents import write_document
from edge.epcis.profiles import PartnerProfile, load_profiles, profile_from_market, shipped_profiles_dir
from edge.epcis.validate import EpcisSchemas, SchemaUnavailableError, validate_document
from edge.markets import EpcisSpec
from tests import epcis_fixtures
from tests.epcis_fixtures import tiny_batch_events, tiny_batch_header

pytestmark = pytest.mark.corpora

PROFILES = load_profiles(shipped_profiles_dir())
MARKET_DEFAULTS = [
    profile_from_market(EpcisSpec(version=v, syntax=s, identifiers=i))
    for v, s, i in [("2.0", "json-ld", "urn"), ("2.0", "json-ld", "digital_link"), ("2.0", "xml", "urn"),
                    ("2.0", "xml", "digital_link"), ("1.2", "xml", "urn")]
]  # fmt: skip
EVERYTHING = {"extensions": True, "master_data": True, "sbdh": True, "work_order_transaction": True}
NOTHING = dict.fromkeys(("extensions", "master_data", "sbdh", "work_order_transaction", "event_ids"), False)
# GS1's examples: every one in JSON/ and XML/ is valid, except this JSON file kept among the XML examples, which
# writes CBV values as URNs where the JSON Schema wants short names.
NOT_VALID = {"XML/WithEventHashID/event_with_identical_hash_id_7.json"}

epcis_batch = epcis_fixtures.epcis_batch


@pytest.fixture(scope="module")
def gs1_epcis() -> Path:
    from tests.conftest import CORPORA

    folder = CORPORA / "gs1-EPCIS"
    if not (folder / "EPCIS-JSON-Schema.json").is_file():
        pytest.skip(f"the gs1/EPCIS corpus (EPCIS 2.0 JSON Schema and XSDs) was not found at {folder}")
    return folder


@pytest.fixture(scope="module")
def schemas(gs1_epcis) -> EpcisSchemas:
    found = EpcisSchemas.locate(gs1_epcis)
    if found is None or found.xsd12 is None:
        pytest.skip(
            "the official EPCIS 1.2 XSDs were not found: scripts/test fetches them into .venv/share/epcis-1.2-xsd "
            "(ensure_epcis12_xsd), or set LINESIDE_EPCIS12_XSD"
        )
    assert found.json_schema == gs1_epcis / "EPCIS-JSON-Schema.json"
    assert found.xsd2 == gs1_epcis / "XSD"
    return found


def document(prof: PartnerProfile, events=None) -> bytes:
    out = io.BytesIO()
    write_document(out, tiny_batch_header(), tiny_batch_events() if events is None else events, prof)
    return out.getvalue()


# Our documents validate


@pytest.mark.parametrize("variant", ["as shipped", "everything", "nothing"])
@pytest.mark.parametrize("name", sorted(PROFILES))
def test_every_shipped_profile_writes_valid_documents(schemas, name, variant):
    prof = PROFILES[name]
    if variant != "as shipped":
        changes = EVERYTHING if variant == "everything" else NOTHING
        # EPCIS 1.2 can carry master data only after an SBDH.
        prof = prof.model_validate(prof.model_dump() | changes | ({"sbdh": True} if prof.master_data else {}))
    assert validate_document(document(prof), schemas) == []


@pytest.mark.parametrize("prof", MARKET_DEFAULTS, ids=[p.id for p in MARKET_DEFAULTS])
def test_market_default_profiles_write_valid_documents(schemas, prof):
    assert validate_document(document(prof), schemas) == []


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_each_event_kind_alone_and_no_event_at_all(schemas, name, epcis_batch):
    prof = PROFILES[name]
    for event in epcis_batch[7:]:
        assert validate_document(document(prof, [event]), schemas) == [], event.biz_step
    assert validate_document(document(prof, []), schemas) == []


def test_odd_but_legal_values_stay_valid(schemas, epcis_batch):
    odd = replace(epcis_batch[0], ilmd=replace(epcis_batch[0].ilmd, lot_number='L&<>"\'/é'),
                  extensions=(("note", "a & b < c"),), event_time_zone_offset="-09:30")  # fmt: skip
    for prof in PROFILES.values():
        changed = prof.model_copy(update={"extensions": True})
        assert validate_document(document(changed, [odd, *epcis_batch[8:]]), schemas) == []


# GS1's examples validate with our validator


def examples(pattern: str) -> list[Path]:
    from tests.conftest import CORPORA

    return sorted((CORPORA / "gs1-EPCIS").glob(pattern))


JSON_EXAMPLES = examples("JSON/**/*.jsonld")
XML_EXAMPLES = examples("XML/**/*.xml")


def test_the_examples_are_all_there(gs1_epcis):
    assert (len(JSON_EXAMPLES), len(XML_EXAMPLES)) == (47, 37)


@pytest.mark.parametrize("path", JSON_EXAMPLES + XML_EXAMPLES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_official_example_validates(schemas, gs1_epcis, path):
    assert validate_document(path.read_bytes(), schemas) == []


def test_the_one_invalid_official_example_is_refused_with_the_fix(schemas, gs1_epcis):
    [name] = NOT_VALID
    problems = validate_document((gs1_epcis / name).read_bytes(), schemas)
    assert problems[0] == (
        'event 0 (epcisBody.eventList[0].bizStep): "urn:epcglobal:cbv:bizstep:receiving" is a CBV URI: '
        'EPCIS 2.0 JSON writes the "receiving" instead'
    )


# Broken documents are refused, saying where and why


def jsonld() -> str:
    return document(PROFILES["gs1-epcis2-jsonld"]).decode()


def xml12() -> str:
    return document(PROFILES["dscsa-epcis12-xml"]).decode()


def test_json_problems_name_the_event_and_path(schemas):
    text = jsonld()
    misspelt = text.replace('"bizStep":"packing"', '"bizStep":"pakcing"', 1)
    expected = 'event 9 (epcisBody.eventList[9].bizStep): "pakcing" is not a CBV name (did you mean "packing"?)'
    assert validate_document(misspelt.encode(), schemas) == [f"{expected}, nor a URI of another vocabulary"]
    no_offset = text.replace(',"eventTimeZoneOffset":"+01:00"', "", 1)
    assert validate_document(no_offset.encode(), schemas) == [
        "event 0 (epcisBody.eventList[0]): 'eventTimeZoneOffset' is a required property"
    ]
    bad_time = text.replace("2026-12-04T18:12:16.071+01:00", "2026-12-04 18:12:16", 1)
    assert validate_document(bad_time.encode(), schemas) == [
        "event 1 (epcisBody.eventList[1].eventTime): '2026-12-04 18:12:16' is not a 'date-time'"
    ]
    not_uri = text.replace('"epcList":["urn:', '"epcList":["a space urn:', 1)
    [problem] = validate_document(not_uri.encode(), schemas)
    assert problem.startswith("event 0 (epcisBody.eventList[0].epcList[0]): 'a space urn:epc:id:sgtin:")
    assert problem.endswith("is not a 'uri'")
    document_level = text.replace('"schemaVersion":"2.0"', '"schemaVersion":"two"', 1)
    assert validate_document(document_level.encode(), schemas) == [
        r"schemaVersion: 'two' does not match '^\\d+(\\.\\d+)*$'"
    ]


def test_broken_json_text(schemas):
    cut = jsonld()[:300].encode()
    assert validate_document(cut, schemas) == ["line 5 column 67: not JSON: Unterminated string starting at"]
    assert validate_document(b"not a document", schemas) == [
        "not an EPCIS document: neither JSON (starting with {) nor XML (starting with <)"
    ]


def test_xml_problems_name_the_line_and_event(schemas):
    text = xml12()
    # EPCIS 2.0's place for the eventID is not valid in 1.2, where it sits under baseExtension.
    moved = text.replace("<baseExtension>\n          <eventID>", "<eventID>", 1)
    moved = moved.replace("</eventID>\n        </baseExtension>", "</eventID>", 1)
    [problem] = validate_document(moved.encode(), schemas)
    line = moved[: moved.index("<eventID>")].count("\n") + 1
    assert problem == (
        f"line {line} (event 0): Element 'eventID': This element is not expected. "
        "Expected is one of ( baseExtension, epcList )."
    )
    no_header_version = text.replace("<sbdh:HeaderVersion>1.0</sbdh:HeaderVersion>", "")
    [problem] = validate_document(no_header_version.encode(), schemas)
    assert problem.startswith("line 7: Element '{http://www.unece.org/cefact/namespaces/StandardBusinessDocumentHeader}")
    actions = document(PROFILES["gs1-epcis2-xml"]).decode().replace("<action>ADD</action>", "<action>ADDED</action>")
    problems = validate_document(actions.encode(), schemas)
    assert len(problems) == 12
    assert problems[0].endswith("(event 0): Element 'action': [facet 'enumeration'] The value 'ADDED' is not an "
                                "element of the set {'ADD', 'OBSERVE', 'DELETE'}.")  # fmt: skip


def test_broken_xml_text(schemas):
    text = xml12().replace("</epc>", "</epcc>", 1)
    [problem] = validate_document(text.encode(), schemas)
    assert problem.startswith("line ")
    assert "not well-formed XML: Opening and ending tag mismatch: epc" in problem
    assert validate_document(b"<other/>", schemas) == ["line 1: not an EPCIS document: root element other"]


def test_many_problems_are_capped(schemas):
    events = [replace(event, biz_step="packing") for event in tiny_batch_events()] * 20
    broken = document(PROFILES["gs1-epcis2-xml"], events).decode().replace("<action>", "<action>X")
    problems = validate_document(broken.encode(), schemas, max_problems=10)
    assert len(problems) == 11
    assert problems[-1] == "... stopped after 10 problems"


def test_xml_never_reaches_the_network(schemas):
    entity = b'<!DOCTYPE d [<!ENTITY x SYSTEM "http://example.invalid/x">]><d>&x;</d>'
    assert validate_document(entity, schemas) == ["line 1: not an EPCIS document: root element d"]


# Finding the schemas


def test_a_missing_schema_is_an_error_not_a_pass(schemas):
    without_12 = replace(schemas, xsd12=None)
    with pytest.raises(SchemaUnavailableError, match="LINESIDE_EPCIS12_XSD"):
        validate_document(xml12().encode(), without_12)
    with pytest.raises(SchemaUnavailableError, match="LINESIDE_EPCIS_SCHEMAS"):
        validate_document(jsonld().encode(), EpcisSchemas())


def test_locate_from_the_environment(schemas, gs1_epcis, monkeypatch, tmp_path):
    monkeypatch.setenv("LINESIDE_EPCIS_SCHEMAS", str(gs1_epcis))
    monkeypatch.setenv("LINESIDE_EPCIS12_XSD", str(schemas.xsd12))
    assert EpcisSchemas.locate() == schemas
    monkeypatch.setenv("LINESIDE_EPCIS_SCHEMAS", str(tmp_path / "nowhere"))
    monkeypatch.setattr(validate, "DEFAULT_SCHEMAS_DIR", tmp_path / "none")
    assert EpcisSchemas.locate() == EpcisSchemas(xsd12=schemas.xsd12)
    monkeypatch.delenv("LINESIDE_EPCIS12_XSD")
    monkeypatch.setattr(validate, "VENV_XSD12", tmp_path / "none")
    assert EpcisSchemas.locate() is None


def test_locate_a_directory_laid_out_like_the_repository(schemas, gs1_epcis, monkeypatch, tmp_path):
    monkeypatch.delenv("LINESIDE_EPCIS12_XSD", raising=False)
    monkeypatch.setattr(validate, "VENV_XSD12", tmp_path / "none")
    (tmp_path / "EPCIS-JSON-Schema.json").symlink_to(gs1_epcis / "EPCIS-JSON-Schema.json")
    (tmp_path / "XSD").symlink_to(gs1_epcis / "XSD")
    (tmp_path / "XSD-1.2").symlink_to(schemas.xsd12)
    found = EpcisSchemas.locate(tmp_path)
    assert found == EpcisSchemas(tmp_path / "EPCIS-JSON-Schema.json", tmp_path / "XSD", tmp_path / "XSD-1.2")
    assert validate_document(xml12().encode(), found) == []
    assert EpcisSchemas.locate(tmp_path / "empty") is None


def test_compiled_schemas_are_cached(schemas):
    validate_document(jsonld().encode(), schemas)
    assert validate._json_validator(schemas.json_schema) is validate._json_validator(schemas.json_schema)
    xsd = schemas.xsd12 / "EPCglobal-epcis-1_2.xsd"
    assert validate._xml_schema(xsd) is validate._xml_schema(xsd)


def test_the_report_is_json_serialisable(schemas):
    assert json.dumps(validate_document(b"<other/>", schemas))
