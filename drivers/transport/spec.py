"""Where a device is reached: ``socket://host:port`` for TCP or a serial device path, plus serial settings."""

from __future__ import annotations

from enum import StrEnum
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class Parity(StrEnum):
    NONE = "none"
    EVEN = "even"
    ODD = "odd"
    MARK = "mark"
    SPACE = "space"


class FlowControl(StrEnum):
    NONE = "none"
    RTSCTS = "rtscts"
    XONXOFF = "xonxoff"
    DSRDTR = "dsrdtr"


class SerialSettings(BaseModel):
    """Line settings of an RS-232/RS-485 port, as printed on the device's configuration page."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    baudrate: int = Field(9600, gt=0, le=4_000_000)
    bytesize: Literal[5, 6, 7, 8] = 8
    parity: Parity = Parity.NONE
    stopbits: float = 1
    flow_control: FlowControl = FlowControl.NONE

    @field_validator("stopbits")
    @classmethod
    def _check_stopbits(cls, stopbits: float) -> float:
        if stopbits not in (1, 1.5, 2):
            raise ValueError(f"stopbits must be 1, 1.5 or 2, not {stopbits:g}")
        return stopbits


class TransportSpec(BaseModel):
    """A device link: ``socket://host:port`` for TCP, or a serial device path with its settings."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str
    serial: SerialSettings | None = None

    @field_validator("url")
    @classmethod
    def _check_url(cls, url: str) -> str:
        if url.startswith("/"):
            return url
        parts = urlsplit(url)
        if parts.scheme == "rfc2217":
            # pyserial's RFC 2217 client has no file descriptor, so the asyncio serial transport cannot poll it.
            raise ValueError(f'"{url}": RFC 2217 is not supported; set the device server to raw TCP and use socket://')
        if parts.scheme != "socket":
            raise ValueError(f'"{url}" is neither socket://host:port nor a serial device path like /dev/ttyUSB0')
        try:
            port = parts.port
        except ValueError:
            port = None
        if not parts.hostname or port is None or not 0 < port < 65536:
            raise ValueError(f'"{url}" needs a host and a port from 1 to 65535, like {parts.scheme}://10.0.0.5:9100')
        return url

    @model_validator(mode="after")
    def _serial_only_for_serial(self) -> TransportSpec:
        if self.serial is not None and self.is_tcp:
            raise ValueError(f'serial settings apply to a serial device, not to "{self.url}"')
        return self

    @property
    def is_tcp(self) -> bool:
        """True when the link is a plain TCP socket."""
        return self.url.startswith("socket://")

    @property
    def host_port(self) -> tuple[str, int]:
        """The (host, port) of a socket:// URL."""
        parts = urlsplit(self.url)
        if parts.hostname is None or parts.port is None:
            raise ValueError(f'"{self.url}" has no host and port')
        return parts.hostname, parts.port

    @property
    def serial_settings(self) -> SerialSettings:
        """The serial settings, defaults when none were configured."""
        return self.serial or SerialSettings()
