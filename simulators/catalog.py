"""Which simulator stands in for which driver, built from the device's own driver options."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from drivers.framing.line import CR, CRLF, LF
from drivers.scanner.wedge import WedgeScanner
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


SIMULATORS: dict[str, SimFactory] = {
    "scanner.wedge": _wedge,
}


def simulator_for(driver: str, options: DriverOptions, *, port: int = 0, transport: SimTransport = "tcp") -> Simulator:
    """Return a simulator of the device a driver speaks to, configured like that device."""
    factory = SIMULATORS.get(driver)
    if factory is None:
        raise LookupError(f'no simulator for driver "{driver}"; simulated: {", ".join(sorted(SIMULATORS))}')
    return factory(options, port, transport)
