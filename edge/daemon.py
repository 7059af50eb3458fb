"""The line controller process: one root TaskGroup owning the store writer, device supervisors and services."""

from __future__ import annotations

import asyncio
import gc
import signal
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

import structlog

from drivers.base import CodeRead, DeviceEvent, DeviceGarbage, DriverContext, EventSink
from drivers.plc.base import LineIo, LineIoStatus, ProductAt, RejectOutcome
from drivers.printer.base import Printer, PrinterOptions, PrinterStatusChanged, PrintEvidence
from edge import __version__
from edge.aggregation.line import AggregationLine
from edge.api import ApiServer, make_app
from edge.api.auth import Auth
from edge.control.accounts import Accounts, Sessions
from edge.control.audit import AuditTrail
from edge.control.line import Audit, LineControl
from edge.control.signatures import Signatures
from edge.line.events import LineHoldRequest, LineResumable, LineStopRequest
from edge.line.feeder import PrintFeeder
from edge.line.inspection import Attached, InspectionService, RejectImages, describe
from edge.line.reading import Reading
from edge.log import device_logger
from edge.metrics import LineMetrics
from edge.plant.delivery import plant_deliveries
from edge.products.load import Catalog, load_catalog
from edge.registry import driver_class
from edge.serials.batches import BatchService, CommandRequest, LowWaterHook, log_low_water
from edge.serials.ledger import SerialLedger
from edge.store import Store
from edge.supervisor import DeviceSession, DeviceSupervisor, LinkState, Sleep, default_backoff
from edge.systemd import Notifier

if TYPE_CHECKING:
    from aiohttp import web

    from drivers.base import Driver
    from edge.aggregation.ops import ContainerRow
    from edge.config import DeviceConfig, LineConfig
    from edge.config.models import InspectionConfig
    from edge.opcua.server import OpcUaServer
    from edge.openscs.client import Endpoint
    from edge.openscs.service import OpenScsService
    from edge.plant.delivery import PlantDelivery
    from edge.sync.delivery import TargetDelivery

_LOG = structlog.get_logger("lineside.daemon")

# Device events wait here for the line logic. A reader burst larger than this blocks the reader
# (back-pressure reaches the device through TCP or the UART) instead of losing a read.
EVENT_QUEUE_SIZE = 1024
# How often the one-line status for `systemctl status` is refreshed when nothing else changes.
STATUS_INTERVAL_S = 5.0

Service = Callable[[], Coroutine[Any, Any, None]]
"""A coroutine function the daemon runs in its root TaskGroup and cancels at shutdown (e.g. demo simulators)."""
AuditFactory = Callable[[Store], Audit]
"""Return the audit trail's record function over the open store (default: the store's own `AuditTrail`)."""


class Daemon:
    """Runs the line until shutdown is requested, then drains within the configured timeout."""

    def __init__(
        self,
        config: LineConfig,
        *,
        config_sha256: str | None = None,
        notifier: Notifier | None = None,
        services: Sequence[Service] = (),
        sleep: Sleep = asyncio.sleep,
        catalog: Catalog | None = None,
        audit: AuditFactory | None = None,
    ) -> None:
        self.config = config
        self._audit = audit
        self._catalog = catalog
        self._config_sha256 = config_sha256
        self._notifier = notifier or Notifier()
        self._services = services
        self._sleep = sleep
        self._shutdown = asyncio.Event()
        self._events: asyncio.Queue[DeviceEvent] = asyncio.Queue(maxsize=EVENT_QUEUE_SIZE)
        self.supervisors: list[DeviceSupervisor] = []
        self.ready = asyncio.Event()
        self.store: Store | None = None
        """The open store while the daemon runs; services use it for durable state."""
        self.batches: BatchService | None = None
        """Work orders, batches and the serial pool while the daemon runs."""
        self.in_doubt_at_start = 0
        """Serials found in flight at start and marked in doubt (DESIGN invariant 4); the HMI shows them."""
        self._api: ApiServer | None = None
        self.feeders: dict[str, PrintFeeder] = {}
        """The print feeder of each printer, by device id."""
        self.aggregation: AggregationLine | None = None
        """The case and pallet stations and their labellers, when the configuration has an aggregation section."""
        self.inspection: InspectionService | None = None
        """Judges the packs at the camera when the configuration has an inspection section."""
        self.deliveries: list[TargetDelivery] = []
        """Upstream delivery, one per configured target, while the daemon runs."""
        self.plant: list[PlantDelivery] = []
        """Batch records and manifests to the MES and ERP, one delivery per plant target, while the daemon runs."""
        self.control: LineControl | None = None
        """The line's PackML unit while the daemon runs: commands, alarms, counters and live status."""
        # Without its certificate the OPC UA server refuses here, before anything starts, saying how to make it.
        self.opcua: OpcUaServer | None = _opcua_server(config, sleep) if config.opcua.enabled else None
        """The OPC UA server (PackML per OPC 30050) when configured."""
        # Likewise the OPEN-SCS credentials and the line's certificate: refused here, before anything starts.
        self._openscs_endpoint: Endpoint | None = _openscs_endpoint(config) if config.openscs is not None else None
        self.openscs: OpenScsService | None = None
        """Serials from the L3 pool server and state reports to it (OPEN-SCS, OPC 30260) when configured."""
        self._attached: dict[str, Attached] = {}
        self._plc_id = config.inspection.plc if config.inspection is not None else _first_plc(config)
        if self._plc_id is not None:
            self._attached[self._plc_id] = Attached()  # the line control drives its run output

    @property
    def api_port(self) -> int | None:
        """The port the HTTP API listens on (config api.port 0 picks a free one); None while it does not listen."""
        return None if self._api is None else self._api.port

    @property
    def hmi_port(self) -> int | None:
        """The port the web HMI (/hmi/) is served on (config hmi.port); None while it is not."""
        return None if self._api is None else self._api.hmi_port

    def request_shutdown(self) -> None:
        """Begin an orderly shutdown (safe to call from a signal handler, repeatedly)."""
        if not self._shutdown.is_set():
            _LOG.info("shutdown requested")
        self._shutdown.set()

    async def run(self, *, handle_signals: bool = True) -> int:
        """Run until shutdown; return 0 after a clean drain, 1 when the drain timed out."""
        loop = asyncio.get_running_loop()
        signals = (signal.SIGTERM, signal.SIGINT) if handle_signals else ()
        for sig in signals:
            loop.add_signal_handler(sig, self.request_shutdown)
        try:
            return await self._run()
        finally:
            for sig in signals:
                loop.remove_signal_handler(sig)
            self._notifier.close()

    def _announce_ready(self) -> None:
        """Tell systemd, the log and waiters that the line controller is ready, its startup objects frozen."""
        cfg = self.config
        # What startup made (configuration, drivers, services, imported modules) lives as long as the process:
        # each full collection of the cyclic collector would walk it all again, a pause of a tenth of a second
        # here (measured by `lineside bench line`), longer than a pack takes from camera to reject station at
        # 3,000 a minute. Frozen, only what the line makes from now on is walked.
        gc.collect()
        gc.freeze()
        self._notifier.ready(self._status_line())
        _LOG.info("line controller ready", line=cfg.line.id, devices=len(self.supervisors),
                  state_dir=str(cfg.storage.state_dir), version=__version__)
        self.ready.set()

    async def _run(self) -> int:
        cfg = self.config
        catalog = self._catalog
        if catalog is None:
            catalog = await asyncio.to_thread(load_catalog, cfg.catalog)
        # Opening runs the integrity check and migrations: seconds on a large database, so not on the loop.
        store = self.store = await asyncio.to_thread(Store.open, cfg.storage.state_dir)
        ledger = SerialLedger(store, line_id=cfg.line.id)
        reading = None
        if cfg.aggregation is not None:
            self.aggregation = AggregationLine(cfg.aggregation, ledger, catalog, notify=self._events.put)
        if cfg.inspection is not None:
            reading = self._start_inspection(cfg.inspection, ledger, catalog)
        self.supervisors = [self._supervisor(dev, ledger) for dev in cfg.devices if dev.enabled]
        clean = True
        try:
            async with asyncio.TaskGroup() as root:
                root.create_task(store.run(), name="store-writer")
                run_id, previous = await store.begin_run(__version__, self._config_sha256)
                if previous is not None:
                    _LOG.warning(
                        "previous run ended without a clean shutdown",
                        run=previous.id,
                        started_at=previous.started_at,
                    )
                serials = root.create_task(ledger.run(), name="serial-ledger")
                batches = self.batches = self._batch_service(ledger, catalog, store)
                self.deliveries = await self._deliveries(store, catalog, batches)
                await self._recover(ledger, batches, unclean=previous is not None)
                if self.aggregation is not None:
                    await self.aggregation.recover()
                control = self.control = self._line_control(batches, store)
                work = [*(root.create_task(s.run(), name=f"device:{s.status.device_id}") for s in self.supervisors),
                        root.create_task(control.run(), name="line-control"),
                        root.create_task(self._consume_events(control), name="device-events")]
                if self.inspection is not None:
                    work.append(root.create_task(self.inspection.run(), name="inspection"))
                work.extend([*(root.create_task(service(), name="service") for service in self._services),
                             *(root.create_task(d.run(), name=f"upstream:{d.target.id}") for d in self.deliveries),
                             *(root.create_task(d.run(), name=f"plant:{d.target.id}") for d in self.plant)])
                work.extend([*self._opcua_task(root, control, store), *self._openscs_task(root, store, batches)])
                api = self._api = ApiServer(self._app(batches, store), cfg.api.host, cfg.api.port,
                                            hmi=(cfg.hmi.host, cfg.hmi.port), sleep=self._sleep)
                work.append(root.create_task(api.run(), name="http-api"))
                await api.attempted.wait()  # listening (or retrying, logged) before the line reports ready
                heartbeat = root.create_task(self._heartbeat(store), name="sd-heartbeat")
                self._announce_ready()
                await self._shutdown.wait()
                self._notifier.stopping("draining")
                clean = await self._drain(work, ledger, serials, store, run_id)
                heartbeat.cancel()
        finally:
            store.close()
            if reading is not None:
                reading.close()
            if self.aggregation is not None:
                self.aggregation.close()
            # What was frozen when ready may be collected again: a process that runs another line controller
            # after this one (the tests, the demo's resume) must not keep this one's objects for good.
            gc.unfreeze()
        _LOG.info("line controller stopped", clean=clean)
        return 0 if clean else 1

    def _line_control(self, batches: BatchService, store: Store) -> LineControl:
        """Return the line's PackML unit over the batches, the printers' feeders, the camera and the PLC."""
        cfg = self.config
        needed = [*self.feeders]
        if cfg.inspection is not None:
            needed.append(cfg.inspection.camera)
        if self._plc_id is not None:
            needed.append(self._plc_id)
        return LineControl(
            cfg.control,
            batches,
            line_id=cfg.line.id,
            supervisors=self.supervisors,
            needed=list(dict.fromkeys(needed)),
            feeders=self.feeders,
            plc_id=self._plc_id,
            plc=self._plc_driver,
            inspection=self.inspection,
            audit=(self._audit or _audit_trail)(store),
            sleep=self._sleep,
        )

    def _opcua_task(self, root: asyncio.TaskGroup, control: LineControl, store: Store) -> list[asyncio.Task[None]]:
        """Start the OPC UA server in root when configured, its users logging in through the accounts; its task."""
        if self.opcua is None:
            return []
        return [root.create_task(self.opcua.run(control, Accounts(store, audit=AuditTrail(store))), name="opcua")]

    def _openscs_task(self, root: asyncio.TaskGroup, store: Store, batches: BatchService) -> list[asyncio.Task[None]]:
        """Start the OPEN-SCS service in root when configured: releases request through it, closes wake it."""
        cfg, endpoint = self.config.openscs, self._openscs_endpoint
        if cfg is None or endpoint is None:
            return []
        from edge.openscs.client import OpenScsClient  # noqa: PLC0415 - asyncua loads only when OPEN-SCS is used
        from edge.openscs.service import OpenScsService  # noqa: PLC0415

        client = OpenScsClient(endpoint, call_timeout_s=cfg.timeout_s)
        service = self.openscs = OpenScsService(cfg, store=store, batches=batches, client=client,
                                                line_id=self.config.line.id, sleep=self._sleep)
        batches.serial_requests = service
        batches.closed_listeners.append(lambda _batch_id: service.wake())
        return [root.create_task(service.run(), name="openscs")]

    def _plc_driver(self) -> LineIo | None:
        """Return the line PLC's driver while its link is up."""
        attached = self._attached.get(self._plc_id) if self._plc_id is not None else None
        driver = None if attached is None else attached.driver
        return driver if isinstance(driver, LineIo) else None

    def _batch_service(self, ledger: SerialLedger, catalog: Catalog, store: Store) -> BatchService:
        """Return the batch service, its low-water hook and its audit trail set."""
        batches = BatchService(ledger, catalog, low_water=self._low_water())
        batches.audit = (self._audit or _audit_trail)(store)
        return batches

    def _low_water(self) -> LowWaterHook:
        """Return what runs when a serial pool runs low: the site's request command, or a log line."""
        pool = self.config.serial_pool
        if pool.request_command:
            return CommandRequest(pool.request_command, pool.request_timeout_s)
        return log_low_water

    def _wake_deliveries(self, batch_id: int) -> None:
        """Wake every upstream target: a batch closed, so look for it now rather than at the next poll."""
        del batch_id
        for delivery in self.deliveries:
            delivery.wake()

    async def _wake_plant(self, _closed: ContainerRow) -> None:
        """Wake every plant target: a pallet closed and its shipping manifest is queued."""
        for delivery in self.plant:
            delivery.wake()

    async def _deliveries(self, store: Store, catalog: Catalog, batches: BatchService) -> list[TargetDelivery]:
        """Build the upstream deliveries (profiles, secrets and schemas are read off the loop), and the plant ones."""
        cfg = self.config
        self.plant = await plant_deliveries(cfg, store, batches.closed_listeners, sleep=self._sleep)
        agg = self.aggregation
        if self.plant and agg is not None and agg.pallet_labels is not None:
            agg.pallet_labels.on_closed.append(self._wake_plant)
        if not cfg.upstream.targets:
            return []
        batches.closed_listeners.append(self._wake_deliveries)
        from edge.epcis.validate import EpcisSchemas  # noqa: PLC0415 - lxml and jsonschema only when delivering
        from edge.sync.upstream import build_deliveries  # noqa: PLC0415

        def build() -> list[TargetDelivery]:
            schemas = EpcisSchemas.locate(cfg.epcis.schemas)
            if schemas is None:
                _LOG.warning("official EPCIS schemas not found: documents get the line's own checks only",
                             hint="set epcis.schemas or LINESIDE_EPCIS_SCHEMAS")
            return build_deliveries(cfg, store, catalog.markets, schemas=schemas, sleep=self._sleep)

        return await asyncio.to_thread(build)

    def _app(self, batches: BatchService, store: Store) -> web.Application:
        """Return the HTTP API and web HMI over the batches, the line control, its status and its stations."""
        agg = self.aggregation
        audit = AuditTrail(store)
        sessions = Sessions()  # in memory: a restart logs everybody out
        accounts = Accounts(store, audit=audit, sessions=sessions)
        auth = Auth(accounts=accounts, sessions=sessions, signatures=Signatures(store, accounts, audit), audit=audit)
        rejects = self.config.storage.state_dir / "rejects" if self.inspection is not None else None
        common: dict[str, Any] = {"line_status": self.line_status, "store": lambda: self.store,
                                  "wake_delivery": self._wake_target, "auth": auth, "control": lambda: self.control,
                                  "rejects": rejects, "metrics": LineMetrics(self)}
        if agg is None:
            return make_app(batches, **common)
        return make_app(batches, aggregation=agg.aggregation, close_short=agg.close_short,
                        scan_case=agg.scan_case if agg.case_scan is not None else None, **common)

    def _wake_target(self, target: str) -> bool:
        """Wake one upstream target (an operator re-sent); False when no such target runs."""
        for delivery in self.deliveries:
            if delivery.target.id == target:
                delivery.wake()
                return True
        return False

    async def _recover(self, ledger: SerialLedger, batches: BatchService, *, unclean: bool) -> None:
        audit = batches.audit
        if audit is not None:
            # The configuration this run works with, by its hash: a reviewer sees every change between runs.
            await audit(None, "daemon.start", self.config.line.id, {
                "version": __version__, "config_sha256": self._config_sha256, "after_crash": unclean})
        # Units between printer and camera when the daemon last stopped have no verdict and never will:
        # they are in doubt until re-inspected or decommissioned, after a crash or a clean stop alike.
        why = "daemon restarted after a crash" if unclean else "daemon restarted"
        self.in_doubt_at_start = await ledger.recover_in_flight(f"in flight when the line stopped; {why}")
        if self.in_doubt_at_start:
            _LOG.warning("serials in doubt after restart: re-inspect or decommission them",
                         in_doubt=self.in_doubt_at_start)
            if audit is not None:
                await audit(None, "serial.in-doubt", self.config.line.id,
                            {"count": self.in_doubt_at_start, "why": why})

    async def _drain(
        self,
        work: list[asyncio.Task[None]],
        ledger: SerialLedger,
        serials: asyncio.Task[None],
        store: Store,
        run_id: int,
    ) -> bool:
        timeout_s = self.config.daemon.drain_timeout_s
        try:
            async with asyncio.timeout(timeout_s):
                for task in work:
                    task.cancel()
                await asyncio.wait(work)
                await ledger.aclose()
                await serials
                await store.end_run(run_id)
                await store.aclose()
        except TimeoutError:
            _LOG.error("shutdown drain timed out; stopping anyway", timeout_s=timeout_s)
            return False
        return True

    def _start_inspection(self, cfg: InspectionConfig, ledger: SerialLedger, catalog: Catalog) -> Reading:
        """Build the inspection service and the decoder it uses; the caller closes the decoder."""
        reading = Reading(cfg.decoder)
        camera = self._attached[cfg.camera] = Attached()
        plc = self._attached.setdefault(cfg.plc, Attached())
        self.inspection = InspectionService(
            ledger,
            dict(catalog.markets),
            camera_id=cfg.camera,
            inspect=reading.inspect,
            camera=camera,
            plc=plc,
            notify=self._events.put,
            consecutive_reject_limit=cfg.consecutive_reject_limit,
            reject_images=RejectImages(self.config.storage.state_dir / "rejects", int(cfg.reject_images.max_mb * 1e6)),
            passed=None if self.aggregation is None else self.aggregation.on_passed,
        )
        return reading

    def _supervisor(self, dev: DeviceConfig, ledger: SerialLedger) -> DeviceSupervisor:
        cls = driver_class(dev.driver)
        log = device_logger(dev.id)
        session: DeviceSession | None = self._attached.get(dev.id)
        events: EventSink = self._events.put
        if self.aggregation is not None:
            session = session or self.aggregation.session_for(dev.id)
            station_sink = self.aggregation.sink_for(dev.id)
            if station_sink is not None:
                events = _fan_out(station_sink, self._events.put)
        options = dev.parsed_options
        if issubclass(cls, Printer) and isinstance(options, PrinterOptions) and options.feeds == "units":
            feeder = self.feeders[dev.id] = PrintFeeder(
                dev.id, ledger, fields=options.fields, job=options.job, notify=self._events.put, depth=options.depth
            )
            session = feeder
            events = _fan_out(feeder.on_event, self._events.put)
        elif self.inspection is not None and dev.id == self._plc_id:
            events = _fan_out(self.inspection.on_event, self._events.put)
        context = DriverContext(
            device_id=dev.id,
            transport=dev.transport,
            events=events,
            log=log,
            connect_timeout_s=dev.timeouts.connect_s,
            response_timeout_s=dev.timeouts.response_s,
        )

        last: list[Driver] = []

        def factory() -> Driver:
            driver = cls(context, dev.parsed_options)
            if last and isinstance(driver, LineIo) and isinstance(last[0], LineIo):
                driver.resume_after(last[0])
            last[:] = [driver]
            return driver

        return DeviceSupervisor(
            dev.id,
            factory,
            backoff=default_backoff(dev.reconnect.initial_s, dev.reconnect.max_s),
            connect_timeout_s=dev.timeouts.connect_s,
            log=log,
            sleep=self._sleep,
            session=session,
        )

    async def _consume_events(self, control: LineControl) -> None:
        while True:
            event = await self._events.get()
            if isinstance(event, (LineHoldRequest, LineStopRequest, LineResumable, LineIoStatus, ProductAt)):
                await control.on_event(event)  # never waits: the control's own task acts on it
            log = device_logger(event.device_id)
            if isinstance(event, CodeRead):
                log.info("code read", data=printable(event.data))
            elif isinstance(event, LineStopRequest):
                log.error("line stop requested", alarm=event.alarm, reason=event.reason)
            elif isinstance(event, (ProductAt, RejectOutcome, LineIoStatus)):
                log.debug("line i/o", detail=repr(event))
            elif isinstance(event, LineHoldRequest):
                log.warning("line hold requested", reason=event.reason)
            elif isinstance(event, LineResumable):
                log.info("line may resume", reason=event.reason)
            elif isinstance(event, PrinterStatusChanged):
                status = event.status
                log.info("printer status", state=status.state.value, faults=sorted(status.faults),
                         detail=status.detail)
            elif isinstance(event, PrintEvidence):
                log.debug("print evidence", record=event.record_id, outcome=event.outcome.value)
            elif isinstance(event, DeviceGarbage):
                log.warning("device sent unparseable bytes", reason=event.reason, data=event.data[:64].hex())
            else:
                log.debug("device event", detail=repr(event))

    async def _heartbeat(self, store: Store) -> None:
        # systemd restarts us when pings stop for WatchdogSec; pinging at half of it leaves one
        # missed tick of slack for a busy loop without masking a hung one.
        watchdog_s = self._notifier.watchdog_interval_s
        period = min(STATUS_INTERVAL_S, watchdog_s / 2) if watchdog_s else STATUS_INTERVAL_S
        last_status = ""
        while True:
            # A commit that has taken a whole period is stuck (a hung disk, a wedged thread): withholding
            # the ping lets systemd restart us into a clean state instead of running on without durability.
            stuck_s = store.batch_age_s()
            if stuck_s > period:
                _LOG.error("store writer is stuck; withholding the watchdog ping", stuck_s=round(stuck_s, 3))
            elif watchdog_s:
                self._notifier.watchdog()
            line = self._status_line()
            if line != last_status:
                self._notifier.status(line)
                last_status = line
            await asyncio.sleep(period)

    def line_status(self) -> dict[str, Any]:
        """Return the line as it runs: device links, printer feeding, inspection (the API's /line)."""
        devices = [
            {"id": s.status.device_id, "state": s.status.state.value, "last_error": s.status.last_error,
             "connects": s.status.connects, "failures": s.status.failures,
             "model": None if s.status.info is None else s.status.info.model}
            for s in self.supervisors
        ]
        printers = {
            device_id: {**asdict(feeder.counts), "holding": feeder.holding, "outstanding": len(feeder.outstanding)}
            for device_id, feeder in self.feeders.items()
        }
        inspection = None if self.inspection is None else describe(self.inspection.counts)
        aggregation = None if self.aggregation is None else self.aggregation.describe()
        control = None if self.control is None else self.control.status()
        return {"devices": devices, "printers": printers, "inspection": inspection, "aggregation": aggregation,
                "in_doubt_at_start": self.in_doubt_at_start, "control": control}

    def _status_line(self) -> str:
        online = sum(1 for s in self.supervisors if s.status.state is LinkState.ONLINE)
        line = f"line {self.config.line.id}: {online}/{len(self.supervisors)} devices online"
        return line if self.control is None else f"{line}; {self.control.state.title}"


def _audit_trail(store: Store) -> Audit:
    """Return the record function of the store's audit trail."""
    return AuditTrail(store).record


def _opcua_server(config: LineConfig, sleep: Sleep) -> OpcUaServer:
    """Return the configured OPC UA server, its certificate checked (CertificateError names the command making it)."""
    from edge.opcua.certs import OpcUaPaths  # noqa: PLC0415 - asyncua loads only when OPC UA is enabled
    from edge.opcua.server import OpcUaServer  # noqa: PLC0415

    return OpcUaServer(config.opcua, line_id=config.line.id, paths=OpcUaPaths.of(config), sleep=sleep)


def _openscs_endpoint(config: LineConfig) -> Endpoint:
    """Return the L3 pool server and the line's credentials for it (OpenScsSetupError saying what is missing)."""
    from edge.openscs.service import endpoint_of  # noqa: PLC0415 - asyncua loads only when OPEN-SCS is used

    return endpoint_of(config)


def _first_plc(config: LineConfig) -> str | None:
    """Return the id of the first enabled PLC device (the line's, when no inspection section names one)."""
    for dev in config.devices:
        if dev.enabled and driver_class(dev.driver).role == "plc":
            return dev.id
    return None


def _fan_out(*sinks: EventSink) -> EventSink:
    """Return a sink handing each event to every sink in turn (each may push back)."""

    async def deliver(event: DeviceEvent) -> None:
        for sink in sinks:
            await sink(event)

    return deliver


def printable(data: bytes) -> str:
    """Return device bytes as log text: GS shown as <GS>, other control bytes as <0xNN>."""
    out = []
    for byte in data:
        if byte == 0x1D:
            out.append("<GS>")
        elif 0x20 <= byte < 0x7F:
            out.append(chr(byte))
        else:
            out.append(f"<0x{byte:02X}>")
    return "".join(out)
