from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.epcis._canon import canonical_time, canonical_value, normalise_id
from edge.epcis.hashing import (
    EpcisHashError,
    document_event_hashes,
    document_events_with_ids,
    document_prehashes,
    event_hash,
    prehash,
)
from edge.epcis.model import LINESIDE_NS, EpcisEvent, Ilmd
from edge.errors import EdgeError

CONTEXT = "https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld"
CET = timezone(timedelta(hours=1))
BERLIN = ZoneInfo("Europe/Berlin")
GTIN_PREFIX = "urn:epc:id:sgtin:4012345.011111."
SSCC = "urn:epc:id:sscc:4012345.0000000011"
SGLN = "urn:epc:id:sgln:4012345.00005.0"


def _offset(when: datetime) -> str:
    offset = when.utcoffset()
    assert offset is not None
    minutes = int(offset.total_seconds()) // 60
    sign = "-" if minutes < 0 else "+"
    return f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def _event(**fields) -> EpcisEvent:
    when = fields.pop("event_time", datetime(2024, 3, 1, 10, 15, 42, 123000, tzinfo=CET))
    defaults = {
        "type": "ObjectEvent",
        "action": "ADD",
        "event_time": when,
        "event_time_zone_offset": fields.pop("event_time_zone_offset", None) or _offset(when),
        "biz_step": "commissioning",
        "disposition": "active",
        "read_point": SGLN,
        "biz_location": SGLN,
    }
    return EpcisEvent(**{**defaults, **fields})


def _json_event(event: EpcisEvent) -> dict[str, object]:
    """The event as an EPCIS 2.0 JSON-LD event, written the way the GS1 examples write theirs."""
    out: dict[str, object] = {
        "type": event.type,
        "eventTime": event.event_time.isoformat(),
        "eventTimeZoneOffset": event.event_time_zone_offset,
    }
    if event.type == "ObjectEvent" or event.epc_list:
        out["epcList"] = list(event.epc_list)
    if event.parent_id is not None:
        out["parentID"] = event.parent_id
    if event.child_epcs:
        out["childEPCs"] = list(event.child_epcs)
    out["action"] = event.action
    if event.biz_step is not None:
        out["bizStep"] = event.biz_step
    if event.disposition is not None:
        out["disposition"] = event.disposition
    if event.read_point is not None:
        out["readPoint"] = {"id": event.read_point}
    if event.biz_location is not None:
        out["bizLocation"] = {"id": event.biz_location}
    if event.biz_transactions:
        out["bizTransactionList"] = [{"type": kind, "bizTransaction": uri} for kind, uri in event.biz_transactions]
    if event.ilmd is not None:
        ilmd = {"cbvmda:lotNumber": event.ilmd.lot_number, "cbvmda:itemExpirationDate": event.ilmd.item_expiration_date}
        if any(value is not None for value in ilmd.values()):
            out["ilmd"] = {name: value for name, value in ilmd.items() if value is not None}
    for name, text in event.extensions:
        out[f"lineside:{name}"] = text
    return out


def _jsonld(*events: EpcisEvent) -> bytes:
    document = {
        "@context": [CONTEXT, {"cbvmda": "urn:epcglobal:cbv:mda:", "lineside": LINESIDE_NS}],
        "type": "EPCISDocument",
        "schemaVersion": "2.0",
        "creationDate": "2024-03-01T12:00:00.000+01:00",
        "epcisBody": {"eventList": [_json_event(event) for event in events]},
    }
    return json.dumps(document, indent=2).encode()


def _xml(event: EpcisEvent, cbvmda: str = "urn:epcglobal:cbv:mda") -> bytes:
    """The event as an EPCIS 2.0 XML document (CBV values as URNs), for events with one SGTIN."""
    ilmd = ""
    if event.ilmd is not None:
        ilmd = f"<ilmd><cbvmda:lotNumber>{event.ilmd.lot_number}</cbvmda:lotNumber></ilmd>"
    transactions = "".join(
        f'<bizTransaction type="urn:epcglobal:cbv:btt:{kind}">{uri}</bizTransaction>'
        for kind, uri in event.biz_transactions
    )
    extensions = "".join(f"<lineside:{name}>{text}</lineside:{name}>" for name, text in event.extensions)
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<epcis:EPCISDocument xmlns:epcis="urn:epcglobal:epcis:xsd:2" xmlns:cbvmda="{cbvmda}"
    xmlns:lineside="{LINESIDE_NS}" schemaVersion="2.0" creationDate="2024-03-01T12:00:00.000+01:00">
  <EPCISBody>
    <EventList>
      <ObjectEvent>
        <eventTime>{event.event_time.isoformat()}</eventTime>
        <eventTimeZoneOffset>{event.event_time_zone_offset}</eventTimeZoneOffset>
        <epcList><epc>{event.epc_list[0]}</epc></epcList>
        <action>{event.action}</action>
        <bizStep>urn:epcglobal:cbv:bizstep:{event.biz_step}</bizStep>
        <disposition>urn:epcglobal:cbv:disp:{event.disposition}</disposition>
        <readPoint><id>{event.read_point}</id></readPoint>
        <bizLocation><id>{event.biz_location}</id></bizLocation>
        <bizTransactionList>{transactions}</bizTransactionList>
        {ilmd}
        {extensions}
      </ObjectEvent>
    </EventList>
  </EPCISBody>
</epcis:EPCISDocument>""".encode()


COMMISSIONING = _event(
    epc_list=(GTIN_PREFIX + "ABC123",),
    ilmd=Ilmd("LOT1", "2026-12-31"),
    biz_transactions=(("prodorder", "urn:epcglobal:cbv:bt:4012345000009:WO-7"),),
    extensions=(("workOrder", "WO-7"),),
)
PACKING = _event(
    type="AggregationEvent",
    event_time=datetime(2024, 3, 1, 10, 20, tzinfo=CET),
    parent_id=SSCC,
    child_epcs=(GTIN_PREFIX + "ABC123", GTIN_PREFIX + "A%2FB!"),
    biz_step="packing",
    disposition="in_progress",
    biz_location=None,
)

EVENTS = {
    "commissioning with ILMD": COMMISSIONING,
    "commissioning, lot only, no disposition": _event(
        epc_list=(GTIN_PREFIX + "100000001",), disposition=None, ilmd=Ilmd(lot_number="L-7")
    ),
    "commissioning, empty ILMD": _event(epc_list=(GTIN_PREFIX + "9",), ilmd=Ilmd()),
    "aggregation ADD of SGTINs": PACKING,
    "aggregation ADD of SSCCs": _event(
        type="AggregationEvent",
        parent_id="urn:epc:id:sscc:4012345.1000000018",
        child_epcs=(SSCC, "urn:epc:id:sscc:4012345.0000000028"),
        biz_step="packing",
        disposition="container_closed",
    ),
    "aggregation DELETE": _event(
        type="AggregationEvent", action="DELETE", parent_id=SSCC, child_epcs=(GTIN_PREFIX + "7",),
        biz_step="unpacking", disposition=None,
    ),
    "aggregation DELETE of everything": _event(
        type="AggregationEvent", action="DELETE", parent_id=SSCC, biz_step="unpacking", disposition=None
    ),
    "decommissioning": _event(
        epc_list=(GTIN_PREFIX + "X1", GTIN_PREFIX + "X2"), action="DELETE", biz_step="decommissioning",
        disposition="inactive", read_point=None,
    ),
    "destroyed reject": _event(epc_list=(GTIN_PREFIX + "R1",), action="OBSERVE", biz_step="destroying",
                               disposition="destroyed"),
    "several transactions and extensions": _event(
        epc_list=(GTIN_PREFIX + "5",),
        biz_transactions=(("po", "http://transaction.acme.com/po/12345678"), ("prodorder", "urn:x:WO-1")),
        extensions=(("workOrder", "WO-1"), ("line", "3"), ("batchSize", "1000.0"), ("note", " spaced ")),
    ),
    "serials needing escapes": _event(
        epc_list=tuple(GTIN_PREFIX + s for s in ("A!B", "x(1)*", "a+b,c:d", "q%22%25%26", "it's;=_-.", "%2f")),
    ),
    "serials a Digital Link cannot take": _event(epc_list=(GTIN_PREFIX + "123456789012345678901", GTIN_PREFIX + "a b")),
    "SGLN with extension, GTIN-8 company prefix": _event(
        epc_list=("urn:epc:id:sgtin:401234567890.1.77",), read_point="urn:epc:id:sgln:4012345.00005.122"
    ),
    "Berlin summer time, microseconds": _event(
        epc_list=(GTIN_PREFIX + "1",), event_time=datetime(2024, 7, 1, 23, 59, 59, 999_499, tzinfo=BERLIN)
    ),
    "half a millisecond, rounded to even": _event(
        epc_list=(GTIN_PREFIX + "2",), event_time=datetime(2024, 1, 1, 0, 0, 0, 2500, tzinfo=UTC)
    ),
    "carry into the next day": _event(
        epc_list=(GTIN_PREFIX + "3",), event_time=datetime(2023, 12, 31, 23, 59, 59, 999_700, tzinfo=UTC)
    ),
    "negative offset": _event(
        epc_list=(GTIN_PREFIX + "4",),
        event_time=datetime(2005, 4, 3, 20, 33, 31, 116000, tzinfo=timezone(-timedelta(hours=6))),
    ),
    "a free text equal to the business step's word": _event(
        epc_list=(GTIN_PREFIX + "6",), extensions=(("note", "commissioning"),)
    ),
    "values in the line's own prefixes": _event(
        epc_list=(GTIN_PREFIX + "8",), extensions=(("ref", "lineside:other"), ("mda", "cbvmda:x"))
    ),
    "an identifier that is a vocabulary URI": _event(epc_list=("https://gs1.org/voc/Thing", GTIN_PREFIX + "9")),
    "CBV URNs instead of short names": _event(
        epc_list=(GTIN_PREFIX + "10",), biz_step="urn:epcglobal:cbv:bizstep:receiving",
        disposition="urn:epcglobal:cbv:disp:in_progress",
    ),
}  # fmt: skip


@pytest.mark.parametrize("event", EVENTS.values(), ids=EVENTS.keys())
def test_fast_path_agrees_with_the_document_path(event):
    document = _jsonld(event)
    assert prehash(event) == document_prehashes(document)[0]
    assert event_hash(event) == document_event_hashes(document)[0]


def test_a_document_of_many_events_hashes_each_as_alone():
    events = list(EVENTS.values())
    assert document_event_hashes(_jsonld(*events)) == [event_hash(event) for event in events]


def test_hashes_as_the_reference_generator_computes_them():
    assert event_hash(COMMISSIONING) == (
        "ni:///sha-256;f70f17a83ecac3cb87f532648de2c9b3db77c5eae59e9c9298c3f62e09c45b1b?ver=CBV2.0"
    )
    assert event_hash(PACKING) == (
        "ni:///sha-256;2f25bd23c75f1447714a21f1179c71137e47689cdd6aea34dda052d605e6fdf1?ver=CBV2.0"
    )
    assert prehash(PACKING) == (
        "eventType=AggregationEventeventTime=2024-03-01T09:20:00.000ZeventTimeZoneOffset=+01:00"
        "parentID=https://id.gs1.org/00/040123450000000115"
        "childEPCsepc=https://id.gs1.org/01/04012345111118/21/A%2FB%21epc=https://id.gs1.org/01/04012345111118/21/ABC123"
        "action=ADDbizStep=https://ref.gs1.org/cbv/BizStep-packingdisposition=https://ref.gs1.org/cbv/Disp-in_progress"
        "readPointid=https://id.gs1.org/414/4012345000054"
    )


def test_ilmd_and_extensions_hash_with_their_namespaces():
    text = prehash(COMMISSIONING)
    assert text.endswith(
        "bizTransactionListtype=https://ref.gs1.org/cbv/BTT-prodorderbizTransaction=urn:epcglobal:cbv:bt:4012345000009:WO-7"
        "ilmd{urn:epcglobal:cbv:mda:}itemExpirationDate=2026-12-31{urn:epcglobal:cbv:mda:}lotNumber=LOT1"
        "{urn:lineside:epcis:1:}workOrder=WO-7"
    )


def test_xml_rendering_hashes_alike():
    event = _event(
        epc_list=(GTIN_PREFIX + "ABC123",),
        biz_transactions=(("prodorder", "urn:epcglobal:cbv:bt:4012345000009:WO-7"),),
        extensions=(("workOrder", "WO-7"),),
    )
    assert document_event_hashes(_xml(event)) == [event_hash(event)]


def test_xml_ilmd_hashes_alike_only_with_the_json_ld_namespace():
    # The XML binding's cbvmda namespace has no trailing colon, JSON-LD's has: the reference hashes them apart.
    event = _event(epc_list=(GTIN_PREFIX + "ABC123",), ilmd=Ilmd("LOT1"))
    assert document_event_hashes(_xml(event, cbvmda="urn:epcglobal:cbv:mda:")) == [event_hash(event)]
    assert document_event_hashes(_xml(event)) != [event_hash(event)]


def test_free_text_equal_to_a_vocabulary_word_is_replaced_as_the_reference_does():
    text = prehash(EVENTS["a free text equal to the business step's word"])
    assert text.endswith("{urn:lineside:epcis:1:}note=https://ref.gs1.org/cbv/BizStep-commissioning")


def test_repeated_hashing_is_stable():
    first = [event_hash(event) for event in EVENTS.values()]
    assert [event_hash(event) for event in reversed(EVENTS.values())] == first[::-1]


# --- property: the fast path and the document path agree -------------------------------------------------

_SERIAL_UNITS = [*"0123456789AZaz!'()*+,.:;=_-", "%2F", "%2f", "%22", "%25", "%26", "%3F", "%40", " ", "é", "/", "%"]
_serials = st.lists(st.sampled_from(_SERIAL_UNITS), min_size=1, max_size=22).map("".join)
_texts = st.one_of(
    st.sampled_from(["", " ", "007", "1.50", "1e3", "-0", "nan", "active", "packing", "po", "urn:epcglobal:cbv:disp:x",
                     "lineside:x", "https://id.example.com/01/09780345418913/21/x?q=1"]),
    st.text(st.characters(exclude_categories=("Cs",)), max_size=12),
)  # fmt: skip
_zones = st.sampled_from([UTC, CET, BERLIN, ZoneInfo("America/New_York"), timezone(timedelta(hours=5, minutes=30))])
# hypothesis takes naive bounds and attaches the zones itself
_times = st.datetimes(datetime(1990, 1, 1), datetime(2090, 1, 1), timezones=_zones)  # noqa: DTZ001
_sgtins = _serials.map(lambda serial: GTIN_PREFIX + serial)
_ssccs = st.integers(0, 10**10 - 1).map(lambda n: f"urn:epc:id:sscc:4012345.{n:010d}")
_epcs = st.one_of(_sgtins, _ssccs)


@st.composite
def _events(draw) -> EpcisEvent:
    when = draw(_times)
    kind = draw(st.sampled_from(["ObjectEvent", "AggregationEvent"]))
    fields: dict[str, object] = {}
    if kind == "ObjectEvent":
        fields["epc_list"] = tuple(draw(st.lists(_epcs, max_size=3)))
        fields["ilmd"] = draw(st.none() | st.builds(Ilmd, st.none() | _texts, st.none() | _texts))
    else:
        fields["parent_id"] = draw(st.none() | _epcs)
        fields["child_epcs"] = tuple(draw(st.lists(_epcs, max_size=4)))
    return EpcisEvent(
        type=kind,
        action=draw(st.sampled_from(["ADD", "OBSERVE", "DELETE"])),
        event_time=when,
        event_time_zone_offset=_offset(when),
        biz_step=draw(st.sampled_from([None, "commissioning", "packing", "unpacking", "decommissioning", "shipping"])),
        disposition=draw(st.sampled_from([None, "active", "in_progress", "inactive", "destroyed"])),
        read_point=draw(st.sampled_from([None, SGLN, "urn:epc:id:sgln:4012345.00005.122"])),
        biz_location=draw(st.sampled_from([None, SGLN])),
        biz_transactions=tuple(draw(st.lists(st.tuples(st.sampled_from(["po", "prodorder", "desadv"]), _texts),
                                             max_size=2))),
        extensions=tuple(draw(st.lists(st.tuples(st.sampled_from(["workOrder", "line", "note"]), _texts), max_size=3))),
        **fields,
    )  # fmt: skip


@settings(max_examples=150, deadline=None)
@given(_events())
def test_property_fast_path_agrees_with_the_document_path(event):
    assert prehash(event) == document_prehashes(_jsonld(event))[0]


@settings(max_examples=200, deadline=None)
@given(_serials)
def test_property_sgtin_fast_conversion_is_the_normaliser(serial):
    value = (GTIN_PREFIX + serial).strip()
    expected = normalise_id(value) or value
    assert f"epcListepc={expected}action=" in prehash(_event(epc_list=(GTIN_PREFIX + serial,)))


# --- documents: ids, errors ---------------------------------------------------------------------------------


def test_document_events_with_ids():
    document = json.loads(_jsonld(COMMISSIONING, PACKING))
    document["epcisBody"]["eventList"][0]["eventID"] = "ni:///sha-256;abc?ver=CBV2.0"
    pairs = document_events_with_ids(json.dumps(document).encode())
    assert pairs == [("ni:///sha-256;abc?ver=CBV2.0", event_hash(COMMISSIONING)), (None, event_hash(PACKING))]


def test_event_id_and_record_time_do_not_count():
    document = json.loads(_jsonld(COMMISSIONING))
    event = document["epcisBody"]["eventList"][0]
    event["eventID"] = "urn:uuid:1"
    event["recordTime"] = "2030-01-01T00:00:00Z"
    assert document_event_hashes(json.dumps(document).encode()) == [event_hash(COMMISSIONING)]


def test_document_without_events_has_no_hashes():
    document = json.loads(_jsonld())
    assert document_event_hashes(json.dumps(document).encode()) == []
    assert document_event_hashes(b"<EPCISDocument><EPCISBody><EventList/></EPCISBody></EPCISDocument>") == []


def _with_event(**changes: object) -> bytes:
    document = json.loads(_jsonld(COMMISSIONING, PACKING))
    document["epcisBody"]["eventList"][1].update(changes)
    return json.dumps(document).encode()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "not an EPCIS document"),
        (b"hello", "not an EPCIS document"),
        (b"{", "JSON document is malformed"),
        (b"[1]", "not an EPCIS document"),
        (b'"x"', "not an EPCIS document"),
        (b"{}", "no epcisBody"),
        (b'{"epcisBody": {}}', "epcisBody has no eventList"),
        (b'{"epcisBody": {"eventList": 3}}', "eventList is not a list"),
        (b'{"epcisBody": {"eventList": [3]}}', "event 0: is not a JSON object"),
        (b'{"epcisBody": {"eventList": [{"eventTime": "2024-01-01T00:00:00Z"}]}}', "event 0: has no event type"),
        (_with_event(eventTime="yesterday"), "event 1 (AggregationEvent): eventTime: 'yesterday' is not an ISO 8601"),
        (_with_event(eventTime="2024-02-30T10:00:00Z"), "eventTime: '2024-02-30T10:00:00Z' is not a valid date-time"),
        (b"<EPCISDocument><EventList>", "XML document is not well-formed"),
        (b"<EPCISDocument><EPCISBody/></EPCISDocument>", "XML document has no EventList"),
        (
            b"<a><EventList><ObjectEvent><eventTime>soon</eventTime></ObjectEvent></EventList></a>",
            "event 0 (ObjectEvent): eventTime: 'soon' is not an ISO 8601 date-time",
        ),
        (
            (
                b"<a><EventList><ObjectEvent/><ObjectEvent><sensorElementList><sensorElement><sensorMetadata time='x'/>"
                b"</sensorElement></sensorElementList></ObjectEvent></EventList></a>"
            ),
            "event 1 (ObjectEvent): sensorElementList/sensorElement/sensorMetadata/time: 'x'",
        ),
    ],
)
def test_malformed_documents_are_refused_with_the_place(data, message):
    with pytest.raises(EpcisHashError) as caught:
        document_event_hashes(data)
    assert message in str(caught.value)
    assert isinstance(caught.value, EdgeError)


def test_events_the_fast_path_refuses():
    naive = _event(epc_list=(), event_time=datetime(2024, 1, 1), event_time_zone_offset="+00:00")  # noqa: DTZ001
    with pytest.raises(EpcisHashError, match="has no time zone"):
        event_hash(naive)
    with pytest.raises(EpcisHashError, match="is not ObjectEvent or AggregationEvent"):
        event_hash(_event(type="TransformationEvent"))


# --- values ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2023-01-18T11:04:03.1415Z", "2023-01-18T11:04:03.142Z"),
        ("2023-01-18T11:04:03.1414Z", "2023-01-18T11:04:03.141Z"),
        ("2023-01-18T11:04:03.0015Z", "2023-01-18T11:04:03.002Z"),
        ("2023-01-18T11:04:03.0025Z", "2023-01-18T11:04:03.002Z"),  # half to even, as the reference rounds
        ("2023-01-18T11:04:03.00251Z", "2023-01-18T11:04:03.003Z"),
        ("2023-01-18T11:04:03.0024999999Z", "2023-01-18T11:04:03.002Z"),  # past microseconds: cut, then rounded
        ("2023-01-18T11:04:03.12Z", "2023-01-18T11:04:03.120Z"),
        ("2023-01-18T11:04:03Z", "2023-01-18T11:04:03.000Z"),
        ("2023-12-31T23:59:59.9996Z", "2024-01-01T00:00:00.000Z"),
        ("2005-04-03T20:33:31.116000-06:00", "2005-04-04T02:33:31.116Z"),
        ("2019-10-21T14:58:56+0200", "2019-10-21T12:58:56.000Z"),
        ("2019-10-21T14:58:56.5+05:30", "2019-10-21T09:28:56.500Z"),
        ("2019-10-21T14:58:56", "2019-10-21T14:58:56.000Z"),  # no offset: taken as UTC
    ],
)
def test_timestamps_in_utc_at_milliseconds(text, expected):
    assert canonical_time(text) == expected


def test_fast_path_rounds_microseconds_like_the_document_path():
    for micro in (0, 499, 500, 1500, 2500, 2501, 999_499, 999_500, 999_999):
        event = _event(epc_list=(), event_time=datetime(2024, 12, 31, 23, 59, 59, micro, tzinfo=CET))
        assert prehash(event) == document_prehashes(_jsonld(event))[0], micro


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1", "1"), ("1.0", "1"), ("1.50", "1.5"), ("0.3434000", "0.3434"), ("+5", "5"), ("007", "7"), ("-0", "0"),
        ("1e3", "1000"), ("1.5E-7", "1.5e-07"), ("1_000", "1000"), (".5", "0.5"),
        ("12345678901234567890", "12345678901234567168"),  # through a float, as the reference does
        ("nan", "nan"), ("inf", "inf"), ("0x10", "0x10"), ("12 kg", "12 kg"),
    ],
)  # fmt: skip
def test_numbers_without_trailing_zeros(text, expected):
    assert canonical_value(text) == expected


def test_json_numbers_are_normalised():
    document = {
        "@context": [CONTEXT],
        "epcisBody": {"eventList": [{
            "type": "ObjectEvent", "eventTime": "2024-01-01T00:00:00Z", "eventTimeZoneOffset": "+00:00",
            "action": "OBSERVE", "quantityList": [{"epcClass": "urn:epc:class:lgtin:4012345.012345.998877",
                                                   "quantity": 150.0, "uom": "KGM"}],
        }]},
    }  # fmt: skip
    [text] = document_prehashes(json.dumps(document).encode())
    expected = "quantityElementepcClass=https://id.gs1.org/01/04012345123456/10/998877quantity=150uom=KGM"
    assert "quantityList" + expected in text


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("urn:epc:id:sgtin:4012345.011111.A!B", "https://id.gs1.org/01/04012345111118/21/A%21B"),
        ("urn:epc:id:sgtin:4012345.011111.it's", "https://id.gs1.org/01/04012345111118/21/it's"),
        ("urn:epc:id:sgtin:4012345.011111.%2f", "https://id.gs1.org/01/04012345111118/21/%2f"),
        ("urn:epc:id:sgtin:4012345.011111.a/b", None),
        ("urn:epc:id:sgln:4012345.00005.0", "https://id.gs1.org/414/4012345000054"),
        ("https://example.com/01/09780345418913/21/x?q=1", "https://id.gs1.org/01/09780345418913/21/x"),
        ("https://id.gs1.org/01/09780345418913/21/A%2FB", None),  # escapes fail the reference's syntax check
        ("https://example.com/a/b", None),
        ("no dot", None),
    ],
)
def test_identifiers_as_constrained_digital_links(uri, expected):
    assert normalise_id(uri) == expected
