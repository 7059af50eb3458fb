"""The line's aggregation stations, built from the configuration: who packs cases, who labels, who palletises.

`AggregationLine` owns the case packing station (sequential, case scan or manual), the case label station,
and, when configured, the pallet station and the pallet label station. The daemon asks it which device
session (`session_for`) and which event sink (`sink_for`) each of their devices gets, starts it with
`recover` (containers left open by the previous run go back to their stations), and routes operators'
requests to it (`close_short`, `scan_case`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import structlog

from edge.aggregation import AggregationError
from edge.aggregation.labelling import LabelStation, Level
from edge.aggregation.pallets import PalletStation
from edge.aggregation.service import Aggregation
from edge.line.inspection import Attached

if TYPE_CHECKING:
    from drivers.base import EventSink
    from edge.aggregation.case_station import CaseScanOutcome, CaseScanStation
    from edge.aggregation.manual import ManualStation
    from edge.aggregation.ops import ContainerRow
    from edge.aggregation.packer import SequentialPacker
    from edge.aggregation.stations import PackingStation
    from edge.config.models import AggregationConfig, LabelStationConfig
    from edge.line.verdict import Verdict
    from edge.products.load import Catalog
    from edge.serials.ledger import SerialLedger
    from edge.supervisor import DeviceSession

__all__ = ["AggregationLine"]

_LOG = structlog.get_logger("lineside.packing")


class AggregationLine:
    """The configured packing, palletising and labelling stations, and the routing of their devices."""

    def __init__(
        self,
        config: AggregationConfig,
        ledger: SerialLedger,
        catalog: Catalog,
        *,
        notify: EventSink,
        case_decoder: dict[str, Any] | None = None,
    ) -> None:
        self.config = config
        self.aggregation = Aggregation(ledger.store)
        self._ledger = ledger
        self._sessions: dict[str, DeviceSession] = {}
        self._sinks: dict[str, EventSink] = {}
        self.case_labels = self._label_station(config.cases.label, "case", catalog, notify)
        cases = config.cases
        self.packer: SequentialPacker | None = None
        self.manual: ManualStation | None = None
        self.case_scan: CaseScanStation | None = None
        self._case_scanner = None
        if cases.mode == "sequential":
            from edge.aggregation.packer import SequentialPacker  # noqa: PLC0415 - one mode per line

            self.packer = SequentialPacker(self.aggregation, ledger, completed=self.case_labels.submit)
        elif cases.mode == "manual" and cases.scanner is not None:
            from edge.aggregation.manual import ManualStation  # noqa: PLC0415 - one mode per line

            self.manual = ManualStation(self.aggregation, ledger, station=cases.scanner,
                                        completed=self.case_labels.submit)
            self._sinks[cases.scanner] = self.manual.on_event
        elif cases.mode == "case-scan" and cases.camera is not None:
            # zxing-cpp loads only for lines that scan cases.
            from edge.aggregation.case_scan import CaseScanner, case_decoder_options  # noqa: PLC0415
            from edge.aggregation.case_station import CaseScanStation  # noqa: PLC0415

            camera = Attached()
            self._sessions[cases.camera] = camera
            scanner = self._case_scanner = CaseScanner(case_decoder_options(**(case_decoder or {})))
            self.case_scan = CaseScanStation(self.aggregation, ledger, scanner, camera=camera,
                                             station=cases.camera, completed=self.case_labels.submit)
        self.pallet_labels: LabelStation | None = None
        self.pallets: PalletStation | None = None
        if config.pallets is not None:
            self.pallet_labels = self._label_station(config.pallets.label, "pallet", catalog, notify)
            self.pallets = PalletStation(self.aggregation, completed=self.pallet_labels.submit)
            self._sinks[config.pallets.scanner] = self.pallets.on_event

    def _label_station(
        self, config: LabelStationConfig, level: Level, catalog: Catalog, notify: EventSink
    ) -> LabelStation:
        station = LabelStation(
            self.aggregation, self._ledger, catalog, device_id=config.printer, level=level, notify=notify,
            print_timeout_s=config.print_timeout_s, verify_timeout_s=config.verify_timeout_s,
            max_attempts=config.max_attempts,
        )
        self._sessions[config.printer] = station
        self._sinks[config.printer] = station.on_printer_event
        self._sinks[config.verifier] = station.on_read
        return station

    def session_for(self, device_id: str) -> DeviceSession | None:
        """Return the device session an aggregation device runs under (label printers, the case camera)."""
        return self._sessions.get(device_id)

    def sink_for(self, device_id: str) -> EventSink | None:
        """Return where an aggregation device's events go (scanners, label printers), or None."""
        return self._sinks.get(device_id)

    @property
    def stations(self) -> list[tuple[str, PackingStation]]:
        """Return every packing station as (level, station), cases first."""
        found: list[tuple[str, PackingStation]] = []
        candidates: tuple[tuple[str, PackingStation | None], ...] = (
            ("case", self.packer), ("case", self.manual), ("case", self.case_scan), ("pallet", self.pallets))
        for level, station in candidates:
            if station is not None:
                found.append((level, station))
        return found

    async def on_passed(self, product: int, verdict: Verdict) -> None:
        """Take a good pack that passed the reject station (sequential packing only)."""
        if self.packer is not None:
            await self.packer.on_passed(product, verdict)

    async def recover(self) -> None:
        """Give containers left open by the previous run back to their stations: full ones to the labeller.

        A container closed short whose label was sent but not verified looks like one still being filled (nothing
        durable says its label was asked for): it is resumed, and whoever closes it short again should void its
        SSCC first when that label may exist.
        """
        batch = await self._ledger.active_batch()
        if batch is None:
            return
        for level, labels in (("case", self.case_labels), ("pallet", self.pallet_labels)):
            if labels is None:
                continue
            resumed = False
            boxes = await self.aggregation.containers_of_batch(batch.id, level=level, state="open")
            # One that holds something before an empty one: that one was being filled.
            for box in sorted(boxes, key=lambda b: b.count == 0):
                if box.count >= box.capacity:
                    _LOG.warning("full container was waiting for its label at shutdown; relabelling it",
                                 container=box.name)
                    await labels.submit(box, in_doubt=True)
                elif not resumed and box.parent_id is None:
                    # Empty too: opened, and the process died before the first pack went in (two changes).
                    station = self._station(level)
                    resume = getattr(station, "resume", None)
                    if resume is not None:
                        resume(box)
                        resumed = True
                        _LOG.info("resuming open container", container=box.name, count=box.count)

    def _station(self, level: str) -> PackingStation | None:
        for station_level, station in self.stations:
            if station_level == level:
                return station
        return None

    async def close_short(self, container: ContainerRow, operator: str, reason: str) -> ContainerRow:
        """Close a container short of capacity through the station building it, so its label is printed first."""
        for _, station in self.stations:
            current = station.current
            if current is not None and current.id == container.id:
                return await station.close_short(operator=operator, reason=reason)
        labels = self.case_labels if container.level == "case" else self.pallet_labels
        if labels is None:
            raise AggregationError(f"no label station labels {container.level}s on this line")
        if container.state != "open":
            raise AggregationError(f"cannot close {container.name}: it is {container.state}")
        await labels.submit(container, operator, reason)
        return container

    async def scan_case(
        self, *, expected: int | None = None, operator: str | None = None, reason: str | None = None
    ) -> CaseScanOutcome:
        """Scan the case at the case-scan station now (the operator's or the PLC's trigger); short: expected units."""
        if self.case_scan is None:
            raise AggregationError("this line does not pack cases by case scan")
        return await self.case_scan.scan_case(expected=expected, operator=operator, reason=reason)

    async def wait_labelled(self) -> None:
        """Return once both label stations have nothing left to label."""
        await self.case_labels.wait_idle()
        if self.pallet_labels is not None:
            await self.pallet_labels.wait_idle()

    def describe(self) -> dict[str, Any]:
        """Return the stations' state for the line status."""
        return {
            "cases": {"mode": self.config.cases.mode,
                      "station": None if (s := self._station("case")) is None else s.describe(),
                      "labels": self.case_labels.describe()},
            "pallets": None if self.pallets is None or self.pallet_labels is None else {
                "station": self.pallets.describe(), "labels": self.pallet_labels.describe()},
        }

    def close(self) -> None:
        """Release the case scanner's decoder thread, if any."""
        if self._case_scanner is not None:
            self._case_scanner.close()
