"""A tiny batch as the line reports it in EPCIS: 8 serials drawn, 6 units shipped in 2 cases on 1 pallet.

Plain module: call the builders (``tiny_batch_events``, ``tiny_batch_header``), or bind the fixtures in a test
module with ``epcis_batch = epcis_fixtures.epcis_batch`` (an assignment, so that the test parameter of the same name
is no redefinition of an import). Events come in the order the line emits them:

- 8 units commissioned, one event each (ADD, ILMD lot and expiry, the work order as prodorder);
- unit 7 rejected at the reject station: decommissioned (DELETE, inactive);
- units 1-3 packed into case 1, units 4-6 into case 2 (AggregationEvent ADD, in_progress);
- unit 6 taken out of case 2 for QC (unpacking), sampled (OBSERVE, non_sellable_other), then destroyed;
- unit 8 packed into case 2 in its place; both cases packed onto the pallet.

Event IDs are fixed placeholders in the event hash's format, not real hashes.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from edge.epcis.model import DocumentHeader, EpcisEvent, Ilmd, MasterData
from edge.gs1.epc import sgln_uri, sgtin_uri, sscc_uri
from edge.gs1.identifiers import gs1_check_digit

COMPANY_PREFIX = "4012345"
PREFIX_LENGTH = len(COMPANY_PREFIX)
GTIN = "0" + COMPANY_PREFIX + "00001"
GTIN += str(gs1_check_digit(GTIN))
SERIALS = ("100000000001", "100000000002", "100000000003", "100000000004", "100000000005", "100000000006",
           "100000000007", "100000000008")  # fmt: skip
UNITS = tuple(sgtin_uri(GTIN, serial, PREFIX_LENGTH) for serial in SERIALS)


def _sscc(serial_reference: str) -> str:
    body = "3" + COMPANY_PREFIX + serial_reference
    return sscc_uri(body + str(gs1_check_digit(body)), PREFIX_LENGTH)


CASES = (_sscc("000000001"), _sscc("000000002"))
PALLET = _sscc("000000003")
SITE_GLN = COMPANY_PREFIX + "00001"
SITE_GLN += str(gs1_check_digit(SITE_GLN))
PARTNER_GLN = "0614141000005"
READ_POINT = sgln_uri(SITE_GLN, "L1", PREFIX_LENGTH)
BIZ_LOCATION = sgln_uri(SITE_GLN, None, PREFIX_LENGTH)
LOT = "LOT-2026/12"
EXPIRY = "2028-11-30"
WORK_ORDER = f"urn:epcglobal:cbv:bt:{SITE_GLN}:WO-2026-0042"
OFFSET = "+01:00"
START = datetime(2026, 12, 4, 17, 12, 15, 70_000, tzinfo=UTC)
"""The first event: 2026-12-04T18:12:15.070+01:00 in the line's local time."""
REJECTED = UNITS[6]
SAMPLED = UNITS[5]


def event_id(n: int) -> str:
    """A placeholder eventID in the format of the GS1 event hash."""
    return f"ni:///sha-256;{hashlib.sha256(f'tiny-batch-{n}'.encode()).hexdigest()}?ver=CBV2.0"


def tiny_batch_events() -> list[EpcisEvent]:
    """Every event of the tiny batch, in order; one of each kind the line emits."""
    common = {"read_point": READ_POINT, "biz_location": BIZ_LOCATION, "event_time_zone_offset": OFFSET}
    work_order = (("prodorder", WORK_ORDER),)
    events: list[EpcisEvent] = [
        EpcisEvent(
            "ObjectEvent", "ADD", START, epc_list=(unit,), biz_step="commissioning", disposition="active",
            ilmd=Ilmd(LOT, EXPIRY), biz_transactions=work_order, extensions=(("line", "L1"),),
            source=f"transition {i}", **common,
        )
        for i, unit in enumerate(UNITS, start=1)
    ]  # fmt: skip

    def later(**fields: object) -> EpcisEvent:
        return EpcisEvent(event_time=START, biz_transactions=work_order, **common, **fields)

    events += [
        later(type="ObjectEvent", action="DELETE", epc_list=(REJECTED,), biz_step="decommissioning",
              disposition="inactive", extensions=(("rejectReason", "grade D < C"),)),
        later(type="AggregationEvent", action="ADD", parent_id=CASES[0], child_epcs=UNITS[0:3], biz_step="packing",
              disposition="in_progress"),
        later(type="AggregationEvent", action="ADD", parent_id=CASES[1], child_epcs=UNITS[3:6], biz_step="packing",
              disposition="in_progress"),
        later(type="AggregationEvent", action="DELETE", parent_id=CASES[1], child_epcs=(SAMPLED,),
              biz_step="unpacking"),
        later(type="ObjectEvent", action="OBSERVE", epc_list=(SAMPLED,), biz_step="sampling",
              disposition="non_sellable_other"),
        later(type="ObjectEvent", action="DELETE", epc_list=(SAMPLED,), biz_step="destroying", disposition="destroyed"),
        later(type="AggregationEvent", action="ADD", parent_id=CASES[1], child_epcs=(UNITS[7],), biz_step="packing",
              disposition="in_progress"),
        later(type="AggregationEvent", action="ADD", parent_id=PALLET, child_epcs=CASES, biz_step="packing",
              disposition="in_progress"),
    ]  # fmt: skip
    return [
        replace(event, event_time=START + timedelta(seconds=index, milliseconds=index), event_id=event_id(index))
        for index, event in enumerate(events)
    ]


def tiny_batch_header() -> DocumentHeader:
    """A header with everything a profile may ask for: SBDH parties, an instance id, the product's master data."""
    product = MasterData(
        epc_class=f"urn:epc:idpat:sgtin:{COMPANY_PREFIX}.{GTIN[0]}{GTIN[8:13]}.*",
        attributes=(
            ("urn:epcglobal:cbv:mda#regulatedProductName", "Aspirin 500 mg & <more>"),
            ("urn:epcglobal:cbv:mda#dosageFormType", "TABLET"),
            ("urn:epcglobal:cbv:mda#strengthDescription", "500 mg"),
            ("urn:epcglobal:cbv:mda#netContentDescription", "20 tablets"),
        ),
    )
    return DocumentHeader(
        creation_date=START + timedelta(hours=1),
        sender_gln=SITE_GLN,
        receiver_gln=PARTNER_GLN,
        instance_id="lineside-L1-WO-2026-0042-0001",
        master_data=(product,),
    )


@pytest.fixture
def epcis_batch() -> list[EpcisEvent]:
    """The tiny batch's events (see the module docstring)."""
    return tiny_batch_events()


@pytest.fixture
def epcis_header() -> DocumentHeader:
    """The tiny batch's document header."""
    return tiny_batch_header()
