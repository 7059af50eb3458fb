"""OPEN-SCS (OPC 30260) data types as the line's client and the simulated L3 pool server put them on the wire.

No OPEN-SCS NodeSet is at hand offline (the npm package node-opcua-nodesets 2.x ships many companion NodeSets,
not this one), so the types are defined here rather than imported: the structures, their field names and order,
the enumerations and their values, and the numeric node ids of each data type and of its "Default Binary"
encoding, all as OPC 30260 v1.00 publishes them for its namespace. A server that imported the Foundation's
NodeSet has the same ids in that namespace, so the client encodes and decodes its structures without reading
them from the server; the simulator writes these definitions into its address space, so generic clients
(UaExpert, asyncua's ``load_data_type_definitions``) decode them too.

OPENSCSSNCollectionDataType adds no field to OPENSCSCollectionDataType; it is encoded here with the fields it
inherits (ID, Description, State, AssociatedPoolID, SerialNumbers), as OPC UA encodes a subtype.

asyncua keeps one registry of structure classes per process, keyed by the encoding's node id:
`register_types` is idempotent and must be called with the namespace index the server gives the OPEN-SCS URI.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from typing import TYPE_CHECKING, Final

from asyncua import ua

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

NAMESPACE: Final = "http://opcfoundation.org/UA/OPENSCS-SER/"
"""The namespace OPC 30260 gives its types and methods (the Foundation's reference site names it so)."""
NAMESPACES: Final = (NAMESPACE, "http://opcfoundation.org/OPENSCS-SER/")
"""Namespaces a server may use for OPEN-SCS: the NodeSet file of v1.00 itself declares the second."""

OBJECTS_FOLDER: Final = "OPENSCSObjects"
"""The folder under Objects holding a server's pool managers and event managers."""

_EMPTY: Final = ua.String("")


class ReturnStatus(IntEnum):
    """OPENSCSReturnEnum: how an OPEN-SCS method went."""

    UNDEFINED = 0
    NO_ERROR = 1
    INVALID_SERIAL_NUMBER_COLLECTION = 2
    INSUFFICIENT_SERIAL_NUMBERS = 3
    INVALID_SERIAL_NUMBERS_FORMAT = 4
    INVALID_REQUEST_TOKEN = 5
    INVALID_SELECTION_CRITERIA = 6
    UNABLE_TO_ACCEPT_SERIAL_NUMBER_EVENTS = 7
    UNABLE_TO_ACCEPT_LABEL_EVENTS = 8
    UNABLE_TO_ACCEPT_SID_EVENTS = 9
    UNKNOWN_AGGREGATION_SID = 10
    INSUFFICIENT_PRIVILEGE_TO_EXECUTE = 11

    @property
    def title(self) -> str:
        """The name OPC 30260 gives the value, like InsufficientSerialNumbers."""
        return "".join(part.capitalize() for part in self.name.split("_")).replace("Sid", "SID")


class SerialNumberState(IntEnum):
    """OPENSCSSerialNumberStateEnum: where a serial is in its life, as an OPEN-SCS server keeps it."""

    UNASSIGNED = 0
    UNALLOCATED = 1
    ALLOCATED = 2
    SN_INVALID = 3
    ENCODED = 4
    LABEL_SAMPLED = 5
    LABEL_SCRAPPED = 6
    COMMISSIONED = 7
    SAMPLED = 8
    INACTIVE = 9
    DESTROYED = 10
    RELEASED = 11

    @property
    def title(self) -> str:
        """The name OPC 30260 gives the state, like LabelScrapped (the names edge.serials.states uses)."""
        return _STATE_TITLES[self]


_STATE_TITLES: Final = {
    SerialNumberState.UNASSIGNED: "Unassigned",
    SerialNumberState.UNALLOCATED: "Unallocated",
    SerialNumberState.ALLOCATED: "Allocated",
    SerialNumberState.SN_INVALID: "SNInvalid",
    SerialNumberState.ENCODED: "Encoded",
    SerialNumberState.LABEL_SAMPLED: "LabelSampled",
    SerialNumberState.LABEL_SCRAPPED: "LabelScrapped",
    SerialNumberState.COMMISSIONED: "Commissioned",
    SerialNumberState.SAMPLED: "Sampled",
    SerialNumberState.INACTIVE: "Inactive",
    SerialNumberState.DESTROYED: "Destroyed",
    SerialNumberState.RELEASED: "Released",
}


def state_named(title: str) -> SerialNumberState:
    """Return the state OPC 30260 calls title (like "LabelScrapped"); ValueError otherwise."""
    for state, name in _STATE_TITLES.items():
        if name == title:
            return state
    raise ValueError(f'"{title}" is not an OPEN-SCS serial number state')


@dataclass
class KeyValue:
    """OPENSCSKeyValueDataType: one key and its value, as pool selection criteria and event context carry them."""

    Key: ua.String = _EMPTY
    Value: ua.String = _EMPTY


@dataclass
class SNCollection:
    """OPENSCSSNCollectionDataType: serial numbers of one collection, all in one state."""

    ID: ua.String = _EMPTY
    Description: ua.String = _EMPTY
    State: SerialNumberState = SerialNumberState.UNASSIGNED
    AssociatedPoolID: ua.String = _EMPTY
    SerialNumbers: list[ua.String] = field(default_factory=list)


@dataclass
class LabelData:
    """OPENSCSLabelDataType: one label (its serial, in the event's SNFormat) and its properties."""

    ID: ua.String = _EMPTY
    LabelProperties: list[KeyValue] = field(default_factory=list)


@dataclass
class LabelCollection:
    """OPENSCSLabelCollectionDataType: the labels an event names (a structure with one optional field)."""

    Encoding: ua.UInt32 = field(default=ua.UInt32(0), repr=False, compare=False)
    """Which optional fields are present; asyncua computes it when encoding."""
    LabelCollection: list[LabelData] = field(default_factory=list)
    LabelCollectionProperties: list[KeyValue] | None = None


@dataclass(frozen=True, slots=True)
class TypeIds:
    """Where a structure lives in the OPEN-SCS namespace: its data type node and its Default Binary encoding."""

    data_type: int
    encoding: int


RETURN_ENUM: Final = 15001
SERIAL_NUMBER_STATE_ENUM: Final = 15143
POOL_MANAGER_TYPE: Final = 15032
EVENT_MANAGER_TYPE: Final = 15062

STRUCTURES: Final[dict[type, TypeIds]] = {
    KeyValue: TypeIds(15010, 15193),
    SNCollection: TypeIds(15008, 15191),
    LabelData: TypeIds(3003, 5005),
    LabelCollection: TypeIds(15006, 15189),
}
"""Every structure the line exchanges, dependencies first (the simulator defines them in this order)."""
COLLECTION_BASE: Final = 15005
"""OPENSCSCollectionDataType, the supertype of SNCollection."""

STRUCTURE_NAMES: Final = {
    KeyValue: "OPENSCSKeyValueDataType",
    SNCollection: "OPENSCSSNCollectionDataType",
    LabelData: "OPENSCSLabelDataType",
    LabelCollection: "OPENSCSLabelCollectionDataType",
}


def register_types(ns: int) -> None:
    """Make asyncua encode and decode the OPEN-SCS structures and enumerations in namespace index ns."""
    for cls, ids in STRUCTURES.items():
        name = STRUCTURE_NAMES[cls]
        ua.register_extension_object(name, node_id(ids.encoding, ns), cls, node_id(ids.data_type, ns))
    ua.register_enum("OPENSCSReturnEnum", node_id(RETURN_ENUM, ns), ReturnStatus)
    ua.register_enum("OPENSCSSerialNumberStateEnum", node_id(SERIAL_NUMBER_STATE_ENUM, ns), SerialNumberState)


def node_id(identifier: int, ns: int) -> ua.NodeId:
    """Return the numeric node id identifier in namespace index ns."""
    return ua.NodeId(ua.Int32(identifier), ua.Int16(ns))


def key_values(pairs: Mapping[str, str]) -> list[KeyValue]:
    """Return pairs as OPENSCSKeyValueDataType values, in their order."""
    return [KeyValue(ua.String(key), ua.String(value)) for key, value in pairs.items()]


def as_mapping(values: Iterable[object]) -> dict[str, str]:
    """Return key-value structures (as decoded) as a dict; other values are ignored."""
    return {str(kv.Key): str(kv.Value) for kv in values if isinstance(kv, KeyValue)}


def sn_collection(collection_id: str, state: SerialNumberState, serials: Iterable[str],
                  description: str = "") -> SNCollection:
    """Return an SNCollection of serials in state."""
    return SNCollection(ua.String(collection_id), ua.String(description), state, ua.String(""),
                        [ua.String(serial) for serial in serials])


def label_collection(serials: Iterable[str]) -> LabelCollection:
    """Return a LabelCollection naming one label per serial, without properties."""
    return LabelCollection(LabelCollection=[LabelData(ua.String(serial)) for serial in serials])
