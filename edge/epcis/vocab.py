"""CBV 2.0 vocabularies the line writes (business steps, dispositions, business transaction types) and their forms.

Every value has three spellings: the short name (``commissioning``, what JSON-LD 2.0 writes), the URN
(``urn:epcglobal:cbv:bizstep:commissioning``, what XML writes) and the web URI
(``https://ref.gs1.org/cbv/BizStep-commissioning``, what the event hash reads).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from edge.errors import EdgeError
from edge.registry import suggest

__all__ = [
    "BIZ_STEP",
    "BIZ_STEPS",
    "BIZ_TRANSACTION_TYPE",
    "BIZ_TRANSACTION_TYPES",
    "DISPOSITION",
    "DISPOSITIONS",
    "Vocabulary",
    "VocabularyError",
]

# Copied from the enums of the EPCIS 2.0 JSON Schema (gs1/EPCIS, JSON-Schema/schemas/*-JSON-Schema.json), in
# their order: the values CBV 1.2 already had come first, CBV 2.0's additions last.
BIZ_STEPS: tuple[str, ...] = (
    "accepting", "arriving", "assembling", "collecting", "commissioning", "consigning", "creating_class_instance",
    "cycle_counting", "decommissioning", "departing", "destroying", "disassembling", "dispensing", "encoding",
    "entering_exiting", "holding", "inspecting", "installing", "killing", "loading", "other", "packing", "picking",
    "receiving", "removing", "repackaging", "repairing", "replacing", "reserving", "retail_selling", "shipping",
    "staging_outbound", "stock_taking", "stocking", "storing", "transporting", "unloading", "unpacking",
    "void_shipping", "sensor_reporting", "sampling",
)  # fmt: skip
DISPOSITIONS: tuple[str, ...] = (
    "active", "container_closed", "damaged", "destroyed", "dispensed", "disposed", "encoded", "expired",
    "in_progress", "in_transit", "inactive", "no_pedigree_match", "non_sellable_other", "partially_dispensed",
    "recalled", "reserved", "retail_sold", "returned", "sellable_accessible", "sellable_not_accessible", "stolen",
    "unknown", "available", "completeness_verified", "completeness_inferred", "conformant", "container_open",
    "mismatch_instance", "mismatch_class", "mismatch_quantity", "needs_replacement", "non_conformant", "unavailable",
)  # fmt: skip
BIZ_TRANSACTION_TYPES: tuple[str, ...] = (
    "bol", "cert", "desadv", "inv", "pedigree", "po", "poc", "prodorder", "recadv", "rma", "testprd", "testres",
    "upevt",
)  # fmt: skip


class VocabularyError(EdgeError, ValueError):
    """A value is not in the CBV vocabulary it was given for."""


@dataclass(frozen=True, slots=True)
class Vocabulary:
    """One CBV vocabulary: its short names and the prefixes of their URN and web URI forms."""

    what: str
    """How errors name the vocabulary, like "CBV business step"."""
    names: tuple[str, ...]
    urn_prefix: str
    """Like urn:epcglobal:cbv:bizstep: (XML, EPCIS 1.2 and 2.0)."""
    web_prefix: str
    """Like https://ref.gs1.org/cbv/BizStep- (CBV 2.0 web URI, the event hash)."""
    cbv2_only: frozenset[str] = frozenset()
    """Names CBV 2.0 added: a partner still on CBV 1.2 may not know them."""
    _urns: dict[str, str] = field(init=False, repr=False, compare=False)
    _webs: dict[str, str] = field(init=False, repr=False, compare=False)
    _shorts: dict[str, str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Precomputed: the writers look a value up for every event.
        urns = {name: self.urn_prefix + name for name in self.names}
        webs = {name: self.web_prefix + name for name in self.names}
        shorts = {name: name for name in self.names}
        shorts.update({uri: name for name, uri in urns.items()})
        shorts.update({uri: name for name, uri in webs.items()})
        object.__setattr__(self, "_urns", urns)
        object.__setattr__(self, "_webs", webs)
        object.__setattr__(self, "_shorts", shorts)

    def __contains__(self, name: object) -> bool:
        return name in self._urns

    def check(self, name: str) -> str:
        """Return name when it is a short name of this vocabulary; VocabularyError naming it otherwise."""
        if name not in self._urns:
            raise self._unknown(name)
        return name

    def urn(self, name: str) -> str:
        """Return the URN of a short name, like urn:epcglobal:cbv:bizstep:packing; VocabularyError when unknown."""
        try:
            return self._urns[name]
        except KeyError:
            raise self._unknown(name) from None

    def web_uri(self, name: str) -> str:
        """Return the web URI of a short name, like https://ref.gs1.org/cbv/BizStep-packing; VocabularyError else."""
        try:
            return self._webs[name]
        except KeyError:
            raise self._unknown(name) from None

    def short(self, value: str) -> str:
        """Return the short name of any of the three spellings; VocabularyError when none matches."""
        try:
            return self._shorts[value]
        except KeyError:
            raise self._unknown(value) from None

    def _unknown(self, value: str) -> VocabularyError:
        name = value.removeprefix(self.urn_prefix).removeprefix(self.web_prefix)
        return VocabularyError(f'unknown {self.what} "{value}"{suggest(name, list(self.names))}')


BIZ_STEP = Vocabulary(
    "CBV business step",
    BIZ_STEPS,
    "urn:epcglobal:cbv:bizstep:",
    "https://ref.gs1.org/cbv/BizStep-",
    frozenset({"sensor_reporting", "sampling"}),
)
DISPOSITION = Vocabulary(
    "CBV disposition",
    DISPOSITIONS,
    "urn:epcglobal:cbv:disp:",
    "https://ref.gs1.org/cbv/Disp-",
    frozenset(DISPOSITIONS[DISPOSITIONS.index("available") :]),
)
BIZ_TRANSACTION_TYPE = Vocabulary(
    "CBV business transaction type",
    BIZ_TRANSACTION_TYPES,
    "urn:epcglobal:cbv:btt:",
    "https://ref.gs1.org/cbv/BTT-",
    frozenset({"cert", "testprd", "testres", "upevt"}),
)
