"""Which simulator stands in for which driver, built from the device's own driver options."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING

from drivers.framing.line import CR, CRLF, LF
from drivers.scanner.wedge import WedgeScanner
from edge.registry import driver_class
from simulators.printer import PrinterEngine
from simulators.scanner_wedge import WedgeScannerSim

if TYPE_CHECKING:
    from drivers.base import DriverOptions
    from simulators.base import SimTransport, Simulator

SimFactory = Callable[["DriverOptions", int, "SimTransport"], "Simulator"]

_TERMINATORS = {"CR": CR, "LF": LF, "CRLF": CRLF, "any": CRLF}


def _wedge(options: DriverOptions, port: int, transport: SimTransport) -> Simulator:
    if not isinstance(options, WedgeScanner.Options):
        raise TypeError(f"expected wedge scanner options, got {type(options).__name__}")
    return WedgeScannerSim(
        terminator=_TERMINATORS[options.terminator],
        prefix=options.prefix,
        suffix=options.suffix,
        max_length=options.max_length,
        port=port,
        transport=transport,
    )


def _printer(driver: str, module: str) -> SimFactory:
    """Return a factory calling ``simulators.<module>.from_options`` (imported on first use).

    Printer simulators come up on their first job, as a printer powers up on the job it was left on.
    """

    def factory(options: DriverOptions, port: int, transport: SimTransport) -> Simulator:
        expected = driver_class(driver).Options
        if not isinstance(options, expected):
            raise TypeError(f"expected {driver} options, got {type(options).__name__}")
        built: Simulator = importlib.import_module(f"simulators.{module}").from_options(
            options, port=port, transport=transport
        )
        engine = getattr(built, "engine", None)
        if isinstance(engine, PrinterEngine) and engine.job is None and engine.jobs:
            # A printer powers up on the job it was left on; a line that names no job prints that one.
            engine.job = next(iter(engine.jobs))
        return built

    return factory


SIMULATORS: dict[str, SimFactory] = {
    "scanner.wedge": _wedge,
    "printer.zipher": _printer("printer.zipher", "zipher"),
    "printer.linx-rci": _printer("printer.linx-rci", "linx_rci"),
    "printer.wsi": _printer("printer.wsi", "wsi"),
    "printer.domino": _printer("printer.domino", "domino"),
    "printer.keyence-md": _printer("printer.keyence-md", "keyence_md"),
    "printer.zpl": _printer("printer.zpl", "zpl"),
    "reader.dmcc": _printer("reader.dmcc", "dmcc"),
    "reader.keyence-sr": _printer("reader.keyence-sr", "keyence_sr"),
    "plc.modbus": _printer("plc.modbus", "plc"),
}


def simulator_for(driver: str, options: DriverOptions, *, port: int = 0, transport: SimTransport = "tcp") -> Simulator:
    """Return a simulator of the device a driver speaks to, configured like that device."""
    factory = SIMULATORS.get(driver)
    if factory is None:
        raise LookupError(f'no simulator for driver "{driver}"; simulated: {", ".join(sorted(SIMULATORS))}')
    return factory(options, port, transport)
