"""EPCIS documents: JSON-LD 2.0, XML 2.0 and XML 1.2 as partner profiles want them, written as a stream."""

from __future__ import annotations

import io
import json
import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st
from lxml import etree

from edge.epcis.documents import DocumentError, Rendering, split_events, write_document
from edge.epcis.jsonld import CONTEXT_URL
from edge.epcis.model import LINESIDE_NS, DocumentHeader, EpcisEvent, Ilmd
from edge.epcis.profiles import PartnerProfile
from edge.epcis.vocab import BIZ_STEP, BIZ_TRANSACTION_TYPE, DISPOSITION, VocabularyError
from edge.gs1.digital_link import epc_to_digital_link
from edge.gs1.epc import sgtin_uri
from edge.markets.models import CSET82
from tests import epcis_fixtures
from tests.epcis_fixtures import (
    CASES,
    EXPIRY,
    GTIN,
    LOT,
    PALLET,
    PARTNER_GLN,
    PREFIX_LENGTH,
    READ_POINT,
    REJECTED,
    SAMPLED,
    SITE_GLN,
    UNITS,
    WORK_ORDER,
    tiny_batch_events,
    tiny_batch_header,
)

epcis_batch = epcis_fixtures.epcis_batch
epcis_header = epcis_fixtures.epcis_header

EPCIS2 = "urn:epcglobal:epcis:xsd:2"
EPCIS12 = "urn:epcglobal:epcis:xsd:1"
SBDH = "{http://www.unece.org/cefact/namespaces/StandardBusinessDocumentHeader}"
CBVMDA = "{urn:epcglobal:cbv:mda}"


def profile(**fields) -> PartnerProfile:
    base = {"id": "p", "name": "P", "version": "2.0", "syntax": "json-ld", "identifiers": "urn"}
    return PartnerProfile.model_validate(base | fields)


JSONLD = profile()
XML2 = profile(syntax="xml")
XML12 = profile(version="1.2", syntax="xml")
PLUS_2 = timezone(timedelta(hours=2))
EVERYTHING = {"extensions": True, "master_data": True, "sbdh": True, "work_order_transaction": True}


def write(events, prof: PartnerProfile = JSONLD, header: DocumentHeader | None = None) -> bytes:
    out = io.BytesIO()
    write_document(out, header or tiny_batch_header(), events, prof)
    return out.getvalue()


def json_events(events, prof: PartnerProfile = JSONLD, header: DocumentHeader | None = None) -> list[dict]:
    return json.loads(write(events, prof, header))["epcisBody"]["eventList"]


def xml_events(events, prof: PartnerProfile, header: DocumentHeader | None = None) -> list[etree._Element]:
    root = etree.fromstring(write(events, prof, header))
    return list(root.find("EPCISBody/EventList"))


def by_step(events: list[dict], step: str) -> list[dict]:
    return [event for event in events if event.get("bizStep") == step]


# The JSON-LD document


def test_json_ld_document_head(epcis_batch):
    document = json.loads(write(epcis_batch, profile(**EVERYTHING)))
    assert document["@context"] == [
        CONTEXT_URL,
        {"cbvmda": "urn:epcglobal:cbv:mda:", "lineside": LINESIDE_NS},
    ]
    assert document["type"] == "EPCISDocument"
    assert document["schemaVersion"] == "2.0"
    assert document["creationDate"] == "2026-12-04T18:12:15.070Z"
    assert (document["sender"], document["receiver"]) == (SITE_GLN, PARTNER_GLN)
    assert document["instanceIdentifier"] == "lineside-L1-WO-2026-0042-0001"
    [vocabulary] = document["epcisHeader"]["epcisMasterData"]["vocabularyList"]
    assert vocabulary["type"] == "urn:epcglobal:epcis:vtype:EPCClass"
    [element] = vocabulary["vocabularyElementList"]
    assert element["id"] == "urn:epc:idpat:sgtin:4012345.000001.*"
    assert element["attributes"][0] == {
        "id": "urn:epcglobal:cbv:mda#regulatedProductName",
        "attribute": "Aspirin 500 mg & <more>",
    }
    assert len(document["epcisBody"]["eventList"]) == len(epcis_batch)


def test_json_ld_minimal_document_has_no_optional_parts(epcis_batch):
    document = json.loads(write(epcis_batch))
    assert document["@context"] == [CONTEXT_URL, {"cbvmda": "urn:epcglobal:cbv:mda:"}]
    assert not {"sender", "receiver", "instanceIdentifier", "epcisHeader"} & set(document)
    for event in document["epcisBody"]["eventList"]:
        assert not [key for key in event if key.startswith("lineside:")]
        assert all(t["type"] != "prodorder" for t in event.get("bizTransactionList", []))
        assert event["eventID"].startswith("ni:///sha-256;")


def test_json_ld_commissioning(epcis_batch):
    events = json_events(epcis_batch, profile(**EVERYTHING))
    commissioning = by_step(events, "commissioning")
    assert [event["epcList"] for event in commissioning] == [[unit] for unit in UNITS]
    first = commissioning[0]
    assert first == {
        "type": "ObjectEvent",
        "eventTime": "2026-12-04T18:12:15.070+01:00",
        "eventTimeZoneOffset": "+01:00",
        "eventID": epcis_batch[0].event_id,
        "epcList": [UNITS[0]],
        "action": "ADD",
        "bizStep": "commissioning",
        "disposition": "active",
        "readPoint": {"id": READ_POINT},
        "bizLocation": {"id": "urn:epc:id:sgln:4012345.00001.0"},
        "bizTransactionList": [{"type": "prodorder", "bizTransaction": WORK_ORDER}],
        "ilmd": {"cbvmda:lotNumber": LOT, "cbvmda:itemExpirationDate": EXPIRY},
        "lineside:line": "L1",
    }


def test_json_ld_every_event_kind(epcis_batch):
    events = json_events(epcis_batch)
    [decommissioning] = by_step(events, "decommissioning")
    assert (decommissioning["type"], decommissioning["action"]) == ("ObjectEvent", "DELETE")
    assert (decommissioning["disposition"], decommissioning["epcList"]) == ("inactive", [REJECTED])
    packing = by_step(events, "packing")
    assert [(e["type"], e["action"], e["disposition"]) for e in packing] == [
        ("AggregationEvent", "ADD", "in_progress")
    ] * 4
    assert [(e["parentID"], e["childEPCs"]) for e in packing] == [
        (CASES[0], list(UNITS[0:3])),
        (CASES[1], list(UNITS[3:6])),
        (CASES[1], [UNITS[7]]),
        (PALLET, list(CASES)),
    ]
    [unpacking] = by_step(events, "unpacking")
    assert (unpacking["type"], unpacking["action"], unpacking["childEPCs"]) == ("AggregationEvent", "DELETE", [SAMPLED])
    assert "disposition" not in unpacking
    [sampling] = by_step(events, "sampling")
    assert (sampling["action"], sampling["disposition"], sampling["epcList"]) == (
        "OBSERVE",
        "non_sellable_other",
        [SAMPLED],
    )
    [destroying] = by_step(events, "destroying")
    assert (destroying["action"], destroying["disposition"]) == ("DELETE", "destroyed")
    assert all("ilmd" not in event for event in events if event["bizStep"] != "commissioning")


def test_json_ld_is_one_event_per_line(epcis_batch):
    lines = write(epcis_batch).decode().splitlines()
    event_lines = [line for line in lines if line.startswith('{"type":')]
    assert len(event_lines) == len(epcis_batch)


def test_profile_switches(epcis_batch):
    events = json_events(epcis_batch, profile(event_ids=False, work_order_transaction=True))
    assert all("eventID" not in event for event in events)
    assert all(event["bizTransactionList"] == [{"type": "prodorder", "bizTransaction": WORK_ORDER}] for event in events)
    order = "urn:epcglobal:cbv:bt:0614141000005:PO-1"
    other = replace(epcis_batch[0], biz_transactions=(("po", order), *epcis_batch[0].biz_transactions))
    [kept] = json_events([other])
    assert kept["bizTransactionList"] == [{"type": "po", "bizTransaction": order}]


# Event times


@pytest.mark.parametrize(
    ("when", "offset", "written"),
    [
        (datetime(2026, 12, 4, 17, 12, 15, 70_000, tzinfo=UTC), "+01:00", "2026-12-04T18:12:15.070+01:00"),
        (datetime(2026, 12, 4, 17, 12, 15, tzinfo=UTC), "+00:00", "2026-12-04T17:12:15.000+00:00"),
        (datetime(2026, 1, 1, 2, 30, 0, 999_000, tzinfo=UTC), "-05:30", "2025-12-31T21:00:00.999-05:30"),
        (datetime(2026, 6, 1, 12, 0, 0, 5_000, tzinfo=PLUS_2), "+14:00", "2026-06-02T00:00:00.005+14:00"),
        (datetime(2026, 6, 1, 23, 59, 59, 999_999, tzinfo=UTC), "-12:00", "2026-06-01T11:59:59.999-12:00"),
    ],
)
def test_event_time_in_its_own_offset_with_milliseconds(epcis_batch, when, offset, written):
    event = replace(epcis_batch[0], event_time=when, event_time_zone_offset=offset)
    [jsonld] = json_events([event])
    assert (jsonld["eventTime"], jsonld["eventTimeZoneOffset"]) == (written, offset)
    [xml] = xml_events([event], XML12)
    assert (xml.findtext("eventTime"), xml.findtext("eventTimeZoneOffset")) == (written, offset)


@pytest.mark.parametrize("offset", ["+1:00", "01:00", "+15:00", "+14:30", "Z", "+01:00 "])
def test_a_bad_offset_is_refused(epcis_batch, offset):
    with pytest.raises(DocumentError, match=re.escape(f'event 0 (transition 1): eventTimeZoneOffset "{offset}"')):
        write([replace(epcis_batch[0], event_time_zone_offset=offset)])


def test_a_naive_event_time_is_refused(epcis_batch):
    naive = replace(epcis_batch[0], event_time=datetime(2026, 1, 1, 12, 0))  # noqa: DTZ001 - the point of the test
    with pytest.raises(DocumentError, match=r"event 0 .*has no time zone"):
        write([naive], XML2)


# XML 2.0 and 1.2


def test_xml_2_document(epcis_batch):
    root = etree.fromstring(write(epcis_batch, profile(syntax="xml", **EVERYTHING)))
    assert root.tag == f"{{{EPCIS2}}}EPCISDocument"
    assert (root.get("schemaVersion"), root.get("creationDate")) == ("2.0", "2026-12-04T18:12:15.070Z")
    header = root.find(f"EPCISHeader/{SBDH}StandardBusinessDocumentHeader")
    assert header.findtext(f"{SBDH}Sender/{SBDH}Identifier") == SITE_GLN
    assert header.findtext(f"{SBDH}Receiver/{SBDH}Identifier") == PARTNER_GLN
    assert header.findtext(f"{SBDH}DocumentIdentification/{SBDH}InstanceIdentifier") == "lineside-L1-WO-2026-0042-0001"
    element = root.find("EPCISHeader/extension/EPCISMasterData/VocabularyList/Vocabulary/VocabularyElementList/*")
    assert element.get("id") == "urn:epc:idpat:sgtin:4012345.000001.*"
    assert element.find("attribute").text == "Aspirin 500 mg & <more>"
    events = list(root.find("EPCISBody/EventList"))
    first = events[0]
    assert [child.tag for child in first] == [
        "eventTime", "eventTimeZoneOffset", "eventID", "epcList", "action", "bizStep", "disposition", "readPoint",
        "bizLocation", "bizTransactionList", "ilmd", f"{{{LINESIDE_NS}}}line",
    ]  # fmt: skip
    assert first.findtext("bizStep") == "urn:epcglobal:cbv:bizstep:commissioning"
    assert first.findtext("disposition") == "urn:epcglobal:cbv:disp:active"
    assert first.find("bizTransactionList/bizTransaction").get("type") == "urn:epcglobal:cbv:btt:prodorder"
    assert first.findtext(f"ilmd/{CBVMDA}lotNumber") == LOT
    assert first.findtext(f"ilmd/{CBVMDA}itemExpirationDate") == EXPIRY
    packing = events[9]
    assert [child.tag for child in packing][:6] == ["eventTime", "eventTimeZoneOffset", "eventID", "parentID",
                                                    "childEPCs", "action"]  # fmt: skip
    assert [epc.text for epc in packing.find("childEPCs")] == list(UNITS[0:3])


def test_xml_1_2_document(epcis_batch):
    root = etree.fromstring(write(epcis_batch, profile(version="1.2", syntax="xml", **EVERYTHING)))
    assert root.tag == f"{{{EPCIS12}}}EPCISDocument"
    assert root.get("schemaVersion") == "1.2"
    assert root.findtext(f"EPCISHeader/{SBDH}StandardBusinessDocumentHeader/{SBDH}HeaderVersion") == "1.0"
    first = root.find("EPCISBody/EventList/ObjectEvent")
    assert [child.tag for child in first] == [
        "eventTime", "eventTimeZoneOffset", "baseExtension", "epcList", "action", "bizStep", "disposition",
        "readPoint", "bizLocation", "bizTransactionList", "extension", f"{{{LINESIDE_NS}}}line",
    ]  # fmt: skip
    assert first.findtext("baseExtension/eventID") == epcis_batch[0].event_id
    assert first.findtext(f"extension/ilmd/{CBVMDA}lotNumber") == LOT


@pytest.mark.parametrize("prof", [XML2, XML12], ids=["2.0", "1.2"])
def test_xml_every_event_kind(epcis_batch, prof):
    events = xml_events(epcis_batch, prof)
    shapes = [(e.tag, e.findtext("action"), BIZ_STEP.short(e.findtext("bizStep"))) for e in events]
    assert shapes[8:] == [
        ("ObjectEvent", "DELETE", "decommissioning"),
        ("AggregationEvent", "ADD", "packing"),
        ("AggregationEvent", "ADD", "packing"),
        ("AggregationEvent", "DELETE", "unpacking"),
        ("ObjectEvent", "OBSERVE", "sampling"),
        ("ObjectEvent", "DELETE", "destroying"),
        ("AggregationEvent", "ADD", "packing"),
        ("AggregationEvent", "ADD", "packing"),
    ]
    assert events[12].findtext("disposition") == "urn:epcglobal:cbv:disp:non_sellable_other"
    assert events[11].find("disposition") is None


def test_xml_empty_epc_list(epcis_batch):
    [event] = xml_events([replace(epcis_batch[7], epc_list=())], XML12)
    assert event.find("epcList") is not None
    assert len(event.find("epcList")) == 0


# Escaping


def test_json_escaping(epcis_batch):
    odd = 'quote " backslash \\ tab \t newline \n é 中 \u2028'
    event = replace(epcis_batch[0], ilmd=Ilmd(odd, EXPIRY), extensions=(("note", odd),))
    [written] = json_events([event], profile(extensions=True))
    assert written["ilmd"]["cbvmda:lotNumber"] == odd
    assert written["lineside:note"] == odd


@pytest.mark.parametrize("prof", [XML2, XML12], ids=["2.0", "1.2"])
def test_xml_escaping(epcis_batch, prof):
    odd = 'a & b < c > d " e \' f \r\n g é'
    transaction = ("po", "https://example.com/po?a=1&b=2")
    event = replace(epcis_batch[0], extensions=(("note", odd),), biz_transactions=(transaction,))
    [written] = xml_events([event], prof.model_copy(update={"extensions": True}))
    assert written.findtext(f"{{{LINESIDE_NS}}}note") == odd
    assert written.findtext("bizTransactionList/bizTransaction") == transaction[1]


def test_xml_refuses_characters_it_cannot_carry(epcis_batch):
    event = replace(epcis_batch[0], ilmd=Ilmd("LOT\x01", EXPIRY))
    with pytest.raises(DocumentError, match=r"event 0 .*U\+0001 cannot be written in XML"):
        write([event], XML2)


def test_extension_names_must_be_plain(epcis_batch):
    event = replace(epcis_batch[0], extensions=(("bad name", "x"),))
    for prof in (profile(extensions=True), profile(syntax="xml", extensions=True)):
        with pytest.raises(DocumentError, match='extension field name "bad name"'):
            write([event], prof)
    assert b"bad name" not in write([event])


# Values refused


def test_unknown_cbv_names_are_errors_naming_the_event_and_value(epcis_batch):
    event = replace(epcis_batch[9], biz_step="pakcing", source="aggregation_event 4")
    for prof in (JSONLD, XML2, XML12):
        expected = 'event 2 (aggregation_event 4): unknown CBV business step "pakcing"'
        with pytest.raises(DocumentError, match=re.escape(expected)):
            write([epcis_batch[0], epcis_batch[1], event], prof)
    with pytest.raises(DocumentError, match='unknown CBV disposition "sold"'):
        write([replace(epcis_batch[0], disposition="sold")])
    with pytest.raises(DocumentError, match='unknown CBV business transaction type "order"'):
        write([replace(epcis_batch[0], biz_transactions=(("order", "urn:x:1"),))], XML2)


def test_ilmd_on_an_aggregation_event_is_refused(epcis_batch):
    event = replace(epcis_batch[9], ilmd=Ilmd(LOT, EXPIRY))
    for prof in (JSONLD, XML2):
        with pytest.raises(DocumentError, match="ILMD belongs to ObjectEvents"):
            write([event], prof)


def test_unknown_event_type_and_action(epcis_batch):
    with pytest.raises(DocumentError, match='event type "TransactionEvent"'):
        write([replace(epcis_batch[0], type="TransactionEvent")])
    with pytest.raises(DocumentError, match='action "REMOVE"'):
        write([replace(epcis_batch[0], action="REMOVE")], XML12)


def test_header_parts_the_profile_needs(epcis_batch):
    bare = DocumentHeader(creation_date=datetime(2026, 12, 4, tzinfo=UTC))
    for prof, missing in [
        (profile(sbdh=True), "sender_gln"),
        (profile(syntax="xml", sbdh=True), "sender_gln"),
        (profile(master_data=True), "product master data"),
    ]:
        out = io.BytesIO()
        with pytest.raises(DocumentError, match=missing):
            write_document(out, bare, iter(epcis_batch), prof)
        assert out.getvalue() == b""
    wrong = replace(tiny_batch_header(), receiver_gln="0614141000006")
    with pytest.raises(DocumentError, match='receiver_gln "0614141000006" is not a GLN'):
        write(epcis_batch, profile(sbdh=True), wrong)
    naive = replace(tiny_batch_header(), creation_date=datetime(2026, 12, 4))  # noqa: DTZ001 - the point of the test
    with pytest.raises(DocumentError, match=r"creation date .* has no time zone"):
        write(epcis_batch, JSONLD, naive)


# Streaming


class Recorder(io.BytesIO):
    """An output that remembers how many writes it had."""

    writes = 0

    def write(self, data) -> int:
        self.writes += 1
        return super().write(data)


@pytest.mark.parametrize("prof", [JSONLD, XML2, XML12], ids=["json-ld", "xml-2.0", "xml-1.2"])
def test_the_writer_consumes_events_one_at_a_time(epcis_batch, prof):
    out = Recorder()
    pulled = []

    def lazily():
        for event in epcis_batch:
            if pulled:
                # The previous event is already written before the next one is asked for.
                assert pulled[-1].event_id in out.getvalue().decode()
            pulled.append(event)
            yield event

    assert write_document(out, tiny_batch_header(), lazily(), prof) == len(epcis_batch)
    assert out.writes == len(epcis_batch) + 2


@pytest.mark.parametrize("prof", [JSONLD, XML12], ids=["json-ld", "xml-1.2"])
def test_the_writer_stops_at_the_profile_limit_without_taking_more(epcis_batch, prof):
    source = iter(epcis_batch)
    limited = prof.model_copy(update={"max_events_per_document": 5})
    first = io.BytesIO()
    assert write_document(first, tiny_batch_header(), source, limited) == 5
    assert next(source) is epcis_batch[5]
    assert epcis_batch[4].event_id in first.getvalue().decode()
    assert epcis_batch[5].event_id not in first.getvalue().decode()


def test_an_empty_document_is_valid_shape():
    assert json.loads(write([]))["epcisBody"]["eventList"] == []
    assert xml_events([], XML12) == []


def test_split_events_is_lazy_and_leaves_no_empty_run(epcis_batch):
    runs = [list(run) for run in split_events(iter(epcis_batch), 5)]
    assert [len(run) for run in runs] == [5, 5, 5, 1]
    assert [event for run in runs for event in run] == epcis_batch
    assert [len(list(run)) for run in split_events(epcis_batch[:10], 5)] == [5, 5]
    assert list(split_events([], 5)) == []
    with pytest.raises(ValueError, match="at least one"):
        list(split_events(epcis_batch, 0))


def test_split_events_feeds_one_document_per_run(epcis_batch):
    limited = profile(max_events_per_document=6)
    runs = split_events(epcis_batch, limited.max_events_per_document)
    assert [write_document(io.BytesIO(), tiny_batch_header(), run, limited) for run in runs] == [6, 6, 4]


# GS1 Digital Link


def test_digital_link_profile(epcis_batch):
    link = profile(identifiers="digital_link", master_data=True)
    document = json.loads(write(epcis_batch, link))
    element = document["epcisHeader"]["epcisMasterData"]["vocabularyList"][0]["vocabularyElementList"][0]
    assert element["id"] == f"https://id.gs1.org/01/{GTIN}"
    events = document["epcisBody"]["eventList"]
    assert events[0]["epcList"] == [f"https://id.gs1.org/01/{GTIN}/21/100000000001"]
    assert events[0]["readPoint"] == {"id": f"https://id.gs1.org/414/{SITE_GLN}/254/L1"}
    assert events[0]["bizLocation"] == {"id": f"https://id.gs1.org/414/{SITE_GLN}"}
    pallet = events[-1]
    assert pallet["parentID"] == epc_to_digital_link(PALLET)
    assert pallet["childEPCs"] == [epc_to_digital_link(case) for case in CASES]
    assert pallet["parentID"].startswith("https://id.gs1.org/00/3")
    text = json.dumps(events)
    assert "urn:epc:id:" not in text
    xml = write(epcis_batch, profile(syntax="xml", identifiers="digital_link"))
    assert b"urn:epc:id:" not in xml
    assert f"<epc>https://id.gs1.org/01/{GTIN}/21/100000000001</epc>".encode() in xml


@given(st.text(alphabet=CSET82, min_size=1, max_size=20))
def test_digital_link_of_any_serial_matches_the_reference_conversion(serial):
    rendering = Rendering(profile(identifiers="digital_link"), tiny_batch_header())
    plain = sgtin_uri(GTIN, "1234", PREFIX_LENGTH)
    assert rendering.identifier(plain) == epc_to_digital_link(plain)  # primes the shared GTIN path
    epc = sgtin_uri(GTIN, serial, PREFIX_LENGTH)
    assert rendering.identifier(epc) == epc_to_digital_link(epc)


def test_an_identifier_without_a_digital_link_is_an_error(epcis_batch):
    event = replace(epcis_batch[0], epc_list=("urn:example:not-an-epc",))
    with pytest.raises(DocumentError, match=r'event 0 .*"urn:example:not-an-epc" cannot be written as a GS1 Digital'):
        write([event], profile(identifiers="digital_link"))


# The vocabularies


def test_vocabulary_forms():
    assert BIZ_STEP.urn("commissioning") == "urn:epcglobal:cbv:bizstep:commissioning"
    assert BIZ_STEP.web_uri("commissioning") == "https://ref.gs1.org/cbv/BizStep-commissioning"
    assert DISPOSITION.urn("in_progress") == "urn:epcglobal:cbv:disp:in_progress"
    assert DISPOSITION.web_uri("in_progress") == "https://ref.gs1.org/cbv/Disp-in_progress"
    assert BIZ_TRANSACTION_TYPE.urn("prodorder") == "urn:epcglobal:cbv:btt:prodorder"
    assert BIZ_TRANSACTION_TYPE.web_uri("prodorder") == "https://ref.gs1.org/cbv/BTT-prodorder"
    for vocabulary in (BIZ_STEP, DISPOSITION, BIZ_TRANSACTION_TYPE):
        for name in vocabulary.names:
            assert vocabulary.short(vocabulary.urn(name)) == name
            assert vocabulary.short(vocabulary.web_uri(name)) == name
            assert vocabulary.short(name) == vocabulary.check(name) == name
    assert (len(BIZ_STEP.names), len(DISPOSITION.names), len(BIZ_TRANSACTION_TYPE.names)) == (41, 33, 13)
    assert "sampling" in BIZ_STEP.cbv2_only
    assert "commissioning" in BIZ_STEP
    assert "commissioning" not in BIZ_STEP.cbv2_only


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: BIZ_STEP.urn("comissioning"), 'business step "comissioning" (did you mean "commissioning"?)'),
        (lambda: DISPOSITION.web_uri("activ"), 'unknown CBV disposition "activ" (did you mean "active"?)'),
        (lambda: BIZ_STEP.short("urn:epcglobal:cbv:bizstep:packin"), '"urn:epcglobal:cbv:bizstep:packin" (did you'),
        (lambda: BIZ_TRANSACTION_TYPE.check("xyz"), 'unknown CBV business transaction type "xyz"'),
    ],
)
def test_unknown_vocabulary_values_name_the_value(call, message):
    with pytest.raises(VocabularyError, match=re.escape(message)):
        call()


def test_the_fixture_is_a_realistic_tiny_batch(epcis_batch, epcis_header):
    shipped = set(UNITS) - {REJECTED, SAMPLED}
    assert len(shipped) == 6
    assert len({event.event_id for event in epcis_batch}) == len(epcis_batch)
    assert epcis_header.master_data
    assert tiny_batch_events() == epcis_batch
    assert sorted(event.event_time for event in epcis_batch) == [event.event_time for event in epcis_batch]
    assert all(isinstance(event, EpcisEvent) for event in epcis_batch)


def test_a_profile_changed_past_its_checks_is_still_refused(epcis_batch):
    unchecked = XML12.model_copy(update={"identifiers": "digital_link"})
    with pytest.raises(DocumentError, match=r"EPCIS 1\.2 is XML with EPC URNs only"):
        write(epcis_batch, unchecked)
