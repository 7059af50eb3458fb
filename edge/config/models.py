"""The line configuration as typed, immutable models: what an integrator may write, with its limits."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

import edge
from drivers.transport.spec import SerialSettings, TransportSpec
from edge import registry
from edge.errors import UnknownDriverError
from edge.gs1.checks import gs1_check_digit

if TYPE_CHECKING:
    from collections.abc import Sequence

    from drivers.base import DriverOptions

ID_PATTERN = r"^[A-Za-z0-9._-]{1,32}$"
GLN_PATTERN = r"^[0-9]{13}$"
# Company prefix, location reference, then the GS1 extension (AI 254) in EPC URI escaping.
SGLN_PATTERN = r"^urn:epc:id:sgln:([0-9]{6,12})\.([0-9]{0,6})\.((?:[A-Za-z0-9!'()*+,.:;=_-]|%[0-9A-Fa-f]{2}){1,20})$"
DEFAULT_STATE_DIR = Path("/var/lib/lineside")
DEFAULT_REDACT = ("password", "token", "secret", "authorization")

LogLevel = Literal["debug", "info", "warning", "error"]
LogFormat = Literal["auto", "json", "console"]

Identifier = Annotated[str, Field(pattern=ID_PATTERN)]
Port = Annotated[int, Field(strict=True, ge=0, le=65535)]
Host = Annotated[str, Field(min_length=1)]
# Strict: lax floats would take "5" yet refuse "5s", a difference harder to explain than "no text".
Seconds = Annotated[float, Field(strict=True, gt=0, le=300)]
DrainSeconds = Annotated[float, Field(strict=True, gt=0, le=600)]


class RelationError(ValueError):
    """A rule between several keys failed; ``at`` (relative to the failing mapping) is where it is shown."""

    def __init__(self, message: str, at: tuple[str | int, ...], first: tuple[str | int, ...] | None = None) -> None:
        super().__init__(message)
        self.at = at
        self.first = first
        """Where the clashing earlier value sits, relative to the same mapping, for duplicates."""


def default_state_dir() -> Path:
    """Return systemd's StateDirectory= when set (the first of several), else /var/lib/lineside."""
    given = os.environ.get("STATE_DIRECTORY", "").split(":")[0]
    return Path(given) if given else DEFAULT_STATE_DIR


def shipped_markets_dir() -> Path:
    """Return the market rule packs shipped with Lineside: config/markets beside the edge package."""
    return Path(edge.__file__).resolve().parents[1] / "config" / "markets"


def shipped_partners_dir() -> Path:
    """Return the EPCIS partner profiles shipped with Lineside: config/partners beside the edge package."""
    return Path(edge.__file__).resolve().parents[1] / "config" / "partners"


def _anchored(path: Path, info: ValidationInfo) -> Path:
    """Resolve a relative path against the config file's directory, when validation was told it (base_dir)."""
    base = (info.context or {}).get("base_dir")
    return base / path if isinstance(base, Path) and not path.is_absolute() else path


def _number(value: float) -> str:
    return str(int(value)) if value.is_integer() else repr(value)


def _reason(exc: ValidationError) -> str:
    """Return the message of a validator's first failure, without pydantic's "Value error, " prefix."""
    first = exc.errors(include_url=False)[0]
    cause = first.get("ctx", {}).get("error")
    return str(cause) if cause is not None else first["msg"]


class Section(BaseModel):
    """A mapping of the configuration: unknown keys are errors, values immutable, docstrings documented."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


class LineInfo(Section):
    """The line itself: its name and its place in the GS1 world."""

    id: Identifier
    """Short name of the line, used in logs, metrics and upstream messages."""
    name: str = Field(min_length=1)
    """Human name of the line as shown on the HMI."""
    site_gln: str | None = Field(None, json_schema_extra={"pattern": GLN_PATTERN})
    """GLN-13 of the site (13 digits with a valid GS1 check digit); quote it in YAML."""
    location: str | None = Field(None, json_schema_extra={"pattern": SGLN_PATTERN})
    """SGLN EPC URN of the line, its EPCIS readPoint, like urn:epc:id:sgln:4012345.00000.0."""

    @field_validator("site_gln")
    @classmethod
    def _gln(cls, gln: str | None) -> str | None:
        if gln is None:
            return None
        if not re.fullmatch(GLN_PATTERN, gln):
            raise ValueError(f'"{gln}" is not a GLN: expected 13 digits')
        expected = gs1_check_digit(gln[:12])
        if int(gln[12]) != expected:
            raise ValueError(
                f'"{gln}" has a wrong check digit {gln[12]}: the GS1 check digit of {gln[:12]} is {expected}'
            )
        return gln

    @field_validator("location")
    @classmethod
    def _sgln(cls, urn: str | None) -> str | None:
        return None if urn is None else check_sgln(urn)


def check_sgln(urn: str) -> str:
    """Return urn when it is an SGLN EPC URN with 12 digits of company prefix and location; else ValueError."""
    match = re.fullmatch(SGLN_PATTERN, urn)
    if match is None:
        raise ValueError(
            f'"{urn}" is not an SGLN EPC URN: expected urn:epc:id:sgln:<company prefix>.<location reference>'
            ".<extension>, like urn:epc:id:sgln:4012345.00000.0"
        )
    digits = len(match[1]) + len(match[2])
    if digits != 12:
        raise ValueError(f'"{urn}": company prefix and location reference must have 12 digits together, not {digits}')
    return urn


class TimeoutsConfig(Section):
    """How long to wait on the device, in seconds."""

    connect_s: Seconds = 5.0
    """Seconds to open the link and finish the device handshake."""
    response_s: Seconds = 2.0
    """Seconds to wait for the device's answer to one request."""


class ReconnectConfig(Section):
    """Backoff between attempts to bring a lost link back, in seconds."""

    initial_s: Seconds = 1.0
    """Seconds before the first reconnect attempt; the wait doubles after each failure."""
    max_s: Seconds = 30.0
    """Longest wait between reconnect attempts, in seconds."""

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.initial_s > self.max_s:
            message = f"{_number(self.initial_s)} must not exceed max_s ({_number(self.max_s)})"
            raise RelationError(message, at=("initial_s",))
        return self


class DeviceConfig(Section):
    """One device on the line: which driver speaks to it and where it is reached."""

    id: Identifier
    """Short name of the device, unique on the line."""
    driver: str
    """Installed driver that speaks this device's protocol, like scanner.wedge."""
    url: str
    """Where the device is reached: socket://host:port or a serial device path."""
    serial: SerialSettings | None = None
    """Serial line settings; only for serial device paths."""
    enabled: bool = Field(True, strict=True)
    """False keeps the device configured but not connected."""
    timeouts: TimeoutsConfig = Field(default_factory=TimeoutsConfig)
    """How long to wait on the device, in seconds."""
    reconnect: ReconnectConfig = Field(default_factory=ReconnectConfig)
    """Backoff between reconnect attempts, in seconds."""
    options: dict[str, Any] = Field(default_factory=dict)
    """Settings of the driver itself, checked by the driver's own options model."""

    _transport: TransportSpec = PrivateAttr()
    _options: DriverOptions = PrivateAttr()

    @field_validator("driver")
    @classmethod
    def _installed(cls, name: str) -> str:
        try:
            registry.driver_class(name)
        except UnknownDriverError as exc:
            raise ValueError(str(exc)) from exc
        except (ImportError, AttributeError) as exc:
            raise ValueError(f'driver "{name}" is installed but cannot be loaded: {exc}') from exc
        return name

    @field_validator("url")
    @classmethod
    def _transport_url(cls, url: str) -> str:
        try:
            TransportSpec(url=url)
        except ValidationError as exc:
            raise ValueError(_reason(exc)) from exc
        return url

    @field_validator("serial")
    @classmethod
    def _serial_port_only(cls, serial: SerialSettings | None, info: ValidationInfo) -> SerialSettings | None:
        url = info.data.get("url")
        if serial is not None and isinstance(url, str):
            try:
                TransportSpec(url=url, serial=serial)
            except ValidationError as exc:
                raise ValueError(_reason(exc)) from exc
        return serial

    @field_validator("options")
    @classmethod
    def _driver_options(cls, options: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        driver = info.data.get("driver")
        if isinstance(driver, str):
            # Its ValidationError is kept whole by pydantic, so each problem stays at its own key.
            # The context carries base_dir: a driver's relative file options start at the config's directory.
            registry.driver_class(driver).Options.model_validate(options, context=info.context)
        return options

    @model_validator(mode="after")
    def _build(self, info: ValidationInfo) -> Self:
        self._transport = TransportSpec(url=self.url, serial=self.serial)
        self._options = registry.driver_class(self.driver).Options.model_validate(self.options, context=info.context)
        return self

    @property
    def transport(self) -> TransportSpec:
        """The device link: URL plus serial settings."""
        return self._transport

    @property
    def parsed_options(self) -> DriverOptions:
        """The options as validated by the driver's own Options model."""
        return self._options


class StorageConfig(Section):
    """Where the line keeps its durable state."""

    state_dir: Path = Field(default_factory=default_state_dir)
    """Directory of the database and other state; relative paths start at the config file's directory.
    Default: $STATE_DIRECTORY (set by systemd), else /var/lib/lineside."""

    @field_validator("state_dir", mode="before")
    @classmethod
    def _not_empty(cls, value: object) -> object:
        if value == "":
            raise ValueError("must not be empty")
        return value

    @field_validator("state_dir")
    @classmethod
    def _anchor(cls, state_dir: Path, info: ValidationInfo) -> Path:
        return _anchored(state_dir, info)


class CatalogConfig(Section):
    """Where the line finds the products it makes and the market rule packs they are checked against."""

    products: Path = Field(Path("products"), validate_default=True)
    """Directory of products, one YAML file each; relative paths start at the config file's directory.
    Default: products beside the config file, and no products when that directory does not exist."""
    markets: Path = Field(default_factory=shipped_markets_dir)
    """Directory of market rule packs, one YAML file each; relative paths start at the config file's directory.
    Default: the packs shipped with Lineside (its config/markets)."""
    partners: Path = Field(default_factory=shipped_partners_dir)
    """Directory of EPCIS partner profiles, one YAML file each; relative paths start at the config file's
    directory. Default: the profiles shipped with Lineside (its config/partners)."""

    @field_validator("products", "markets", "partners", mode="before")
    @classmethod
    def _not_empty(cls, value: object) -> object:
        if value == "":
            raise ValueError("must not be empty")
        return value

    @field_validator("products", "markets", "partners")
    @classmethod
    def _anchor(cls, directory: Path, info: ValidationInfo) -> Path:
        return _anchored(directory, info)


class ApiConfig(Section):
    """The local HTTP API."""

    host: Host = "127.0.0.1"
    """Address the HTTP API listens on; loopback unless remote clients need it."""
    port: Port = 8470
    """TCP port of the HTTP API; 0 picks a free one."""


class HmiConfig(Section):
    """The local web HMI."""

    host: Host = "127.0.0.1"
    """Address the web HMI listens on."""
    port: Port = 8480
    """TCP port of the web HMI; 0 picks a free one."""


class OpcUaConfig(Section):
    """The OPC UA server: the line as a PackML object (OPC 30050) for SCADA and MES, encrypted, users logged in."""

    enabled: bool = Field(False, strict=True)
    """Serve OPC UA. Needs the server certificate made once at installation: lineside opcua cert -c FILE."""
    host: Host = "127.0.0.1"
    """Address to listen on. Loopback by default, like the API: a SCADA on another machine needs the cell network
    address here (or 0.0.0.0), a step taken on purpose, with the cell firewall in mind."""
    port: Port = 4840
    """TCP port; 4840 is OPC UA's registered port. 0 picks a free one."""
    certificate: Path | None = None
    """The server's certificate (DER); relative paths start at the config file's directory.
    Default: opcua/server-cert.der in the state directory, where lineside opcua cert writes it."""
    private_key: Path | None = None
    """The certificate's private key (PEM, unencrypted, readable by the service user only).
    Default: opcua/server-key.pem in the state directory."""
    trusted_clients: Path | None = None
    """Directory of trusted client certificates (DER or PEM), or of the CAs that sign them; read at each connection.
    Default: opcua/trusted in the state directory. A refused client's certificate is kept in opcua/rejected there:
    move it here (or run lineside opcua trust FILE) to trust that client."""
    trust_any_client: bool = Field(False, strict=True)
    """Accept any client certificate (the channel is still encrypted and users still log in): for commissioning,
    or a cell where the SCADA's certificate changes with every reinstall."""
    max_sessions: int = Field(8, strict=True, ge=1, le=64)
    """Client connections at once; more are refused. A few SCADA and MES clients need a handful; the limit keeps a
    client that leaks connections from taking the line PC's memory."""

    @field_validator("certificate", "private_key", "trusted_clients")
    @classmethod
    def _anchor(cls, path: Path | None, info: ValidationInfo) -> Path | None:
        return None if path is None else _anchored(path, info)


class LoggingConfig(Section):
    """What is logged, in which format, and which values are masked."""

    level: LogLevel = "info"
    """Lowest level written."""
    format: LogFormat = "auto"
    """json, console, or auto: JSON under systemd, console on a terminal."""
    redact: tuple[Annotated[str, Field(min_length=1)], ...] = Field((), validate_default=True)
    """Key names whose values are masked in logs, besides password, token, secret and authorization."""

    @field_validator("redact")
    @classmethod
    def _with_defaults(cls, extra: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(dict.fromkeys([*DEFAULT_REDACT, *(name.lower() for name in extra)]))


class DaemonConfig(Section):
    """How the line controller process behaves as a service."""

    drain_timeout_s: DrainSeconds = 10.0
    """Seconds a graceful shutdown waits for work in flight before stopping anyway."""


class SerialPoolConfig(Section):
    """What the line does when a pool fed from upstream runs low."""

    request_command: tuple[Annotated[str, Field(min_length=1)], ...] = ()
    """Program and arguments run when a product's pool falls below its low_water mark, with LINESIDE_GTIN,
    LINESIDE_PRODUCT, LINESIDE_AVAILABLE and LINESIDE_LOW_WATER set; it should place a request for more serials
    (the answer comes back as an import). Empty: only the alarm is logged."""
    request_timeout_s: Seconds = 30.0
    """Seconds the command may take before it is killed and the failure logged."""


class OpenScsConfig(Section):
    """The Level-3 serial pool server products with serial_source open_scs draw serials from (OPEN-SCS, OPC 30260)."""

    url: str = Field(pattern=r"^opc\.tcp://[^\s/]+(/[^\s]*)?$")
    """Endpoint of the L3 pool server, like opc.tcp://l3.example.com:4840/openscs."""
    security: Literal["Basic256Sha256_SignAndEncrypt"] = "Basic256Sha256_SignAndEncrypt"
    """Security policy and mode of the session: Basic256Sha256 with SignAndEncrypt, as the line's own OPC UA server."""
    credentials_file: Path
    """File holding the user name on its first line and the password on its second, readable by the service user
    only; relative paths start at the config file's directory."""
    certificate: Path | None = None
    """The line's application certificate (DER) the server must trust. Default: the line's OPC UA certificate,
    opcua/server-cert.der in the state directory (lineside opcua cert makes it), with the line's application URI."""
    private_key: Path | None = None
    """The certificate's private key (PEM, unencrypted). Default: opcua/server-key.pem in the state directory."""
    server_certificate: Path | None = None
    """The server's certificate (DER or PEM) to pin. Default: the certificate the server's endpoint offers."""
    collection_id: str = ""
    """SNCollectionID serials are requested from; empty: the server's default collection."""
    request: Literal["allocated", "unallocated", "unassigned"] = "allocated"
    """SNRequestAllocated (serials set aside for this line), SNRequestUnallocated or SNRequestUnassigned; serials of the
    last two are reported allocated (SNtoAllocated) when a batch draws them."""
    sn_format: str = Field("SN", min_length=1)
    """SNFormat of the serials requested and reported: one the server lists in its SNFormat property, giving serials
    as the code carries them in AI (21)."""
    request_size: int = Field(1000, strict=True, ge=1, le=100_000)
    """Most serials asked for in one SNRequest call; a batch lacking more makes several."""
    low_water: int | None = Field(None, strict=True, ge=1)
    """When a product's pool of serials falls below this many, request_size more are requested in the background,
    so the next batch's release needs no request. Unset: a release requests what its batch lacks, no more."""
    pool_object: str | None = Field(None, min_length=1)
    """Browse name of the pool manager under Objects/OPENSCSObjects; default: the object with the SNRequest method."""
    event_manager: str | None = Field(None, min_length=1)
    """Browse name of the event manager there; default: the object with SIDCommissioningEvent."""
    timeout_s: Seconds = 30.0
    """Longest wait for the server's answer to one call; then the call is retried with the same token or report id."""
    retry_initial_s: float = Field(1.0, strict=True, gt=0, le=600)
    """First wait before retrying reports after a failure; doubles per failure in a row up to retry_max_s."""
    retry_max_s: float = Field(60.0, strict=True, gt=0, le=3600)
    """Longest wait between retries while the server stays down or refuses."""

    @field_validator("credentials_file", "certificate", "private_key", "server_certificate")
    @classmethod
    def _anchor(cls, path: Path | None, info: ValidationInfo) -> Path | None:
        return None if path is None else _anchored(path, info)

    @model_validator(mode="after")
    def _pairs(self) -> Self:
        if (self.certificate is None) != (self.private_key is None):
            missing = "private_key" if self.private_key is None else "certificate"
            raise RelationError("certificate and private_key go together", at=(missing,))
        if self.retry_max_s < self.retry_initial_s:
            raise RelationError("retry_max_s must not be below retry_initial_s", at=("retry_max_s",))
        return self


class RejectImagesConfig(Section):
    """Frames of rejected packs kept for the HMI."""

    max_mb: float = Field(200.0, ge=0, le=1_000_000)
    """Disk the kept frames may use, in MB; the oldest go first. 0 keeps none."""


class ControlConfig(Section):
    """How the line's PackML unit answers the stations, and what it needs before it runs."""

    on_hold_request: Literal["hold", "stop"] = "hold"
    """What a station asking to hold (printer fault or link lost, no serials left) does to a producing line: hold
    it (the operator unholds once the cause is gone) or stop it (Reset and Start to go on)."""
    on_stop_request: Literal["stop", "abort"] = "stop"
    """What an alarm (unconfirmed reject, tracking broken, too many rejects in a row, the PLC stopping the belt)
    does: stop the line (batch paused, Reset to go on) or abort it (run output off at once, Clear and Reset)."""
    require_devices: bool = Field(True, strict=True)
    """Start and Unhold only with every device the line needs online: the printers marking units, the inspection
    camera and the PLC. False lets the line run without them (commissioning, dry runs)."""
    start_timeout_s: Seconds = 30.0
    """Seconds Start and Unhold wait for the printers to be loaded and the PLC to report the belt running; then
    the line stops (Start) or goes back to Held (Unhold), naming the device that was not ready."""


class InspectionConfig(Section):
    """Which camera judges the packs and which PLC carries the verdicts to the reject station."""

    camera: Identifier
    """Device id of the camera (an image source) that sees each pack's code."""
    plc: Identifier
    """Device id of the line PLC that tracks packs and fires the reject."""
    consecutive_reject_limit: int = Field(5, strict=True, ge=1, le=10_000)
    """Rejects in a row that stop the line (the printer or the job is wrong, not the packs)."""
    decoder: dict[str, Any] = Field(default_factory=dict)
    """Decoder settings (region of interest, rotation, inversion, fallback), checked by the decoder."""
    reject_images: RejectImagesConfig = Field(default_factory=RejectImagesConfig)
    """Frames of rejected packs kept for the HMI."""

    @field_validator("decoder")
    @classmethod
    def _decoder_options(cls, decoder: dict[str, Any]) -> dict[str, Any]:
        from edge.vision.decode import DecoderOptions  # noqa: PLC0415 - zxing-cpp loads only for lines that inspect

        DecoderOptions.model_validate(decoder)  # its own errors name the key
        return decoder


class LabelStationConfig(Section):
    """The printer that labels finished cases or pallets and the scanner that verifies each label."""

    printer: Identifier
    """Device id of the label printer (a printer.zpl with feeds: labels); the product's template of that id."""
    verifier: Identifier
    """Device id of the scanner reading each label just after it is applied; a label it cannot read right is
    voided and reprinted with a new SSCC."""
    print_timeout_s: float = Field(60.0, gt=0, le=3600)
    """A label not printed this long after it was sent is in doubt (voided, reprinted)."""
    verify_timeout_s: float = Field(15.0, gt=0, le=600)
    """A printed label the verifier has not read this long after is a no-read (voided, reprinted)."""
    max_attempts: int = Field(3, strict=True, ge=1, le=10)
    """Labels tried for one container before an operator is called."""


class CasePackingConfig(Section):
    """How units get into cases, and the case labeller."""

    mode: Literal["sequential", "case-scan", "manual"] = "sequential"
    """sequential: good packs in line order after the reject station; case-scan: a camera over the open case
    must see exactly a full case of codes; manual: a hand scanner adds and removes units one by one."""
    camera: Identifier | None = None
    """case-scan: the camera (an image source) over the open case."""
    scanner: Identifier | None = None
    """manual: the hand scanner of the packing bench."""
    label: LabelStationConfig
    """The case labeller and its verifying scanner."""

    @model_validator(mode="after")
    def _mode_devices(self) -> Self:
        if self.mode == "case-scan" and self.camera is None:
            raise RelationError("case-scan packing needs the camera over the open case", at=("camera",))
        if self.mode == "manual" and self.scanner is None:
            raise RelationError("manual packing needs the hand scanner of the bench", at=("scanner",))
        return self


class PalletConfig(Section):
    """How cases get onto pallets, and the pallet labeller."""

    scanner: Identifier
    """The scanner at the palletiser reading each case label as the case goes onto the pallet."""
    label: LabelStationConfig
    """The pallet labeller and its verifying scanner."""


class AggregationConfig(Section):
    """Which stations build cases and pallets; without it nothing is aggregated on this line."""

    cases: CasePackingConfig
    """Units into cases."""
    pallets: PalletConfig | None = None
    """Cases onto pallets; without it cases are the top level this line builds."""


class EpcisConfig(Section):
    """What the line writes into every EPCIS event, and where the official schemas are."""

    biz_location: str | None = Field(None, json_schema_extra={"pattern": SGLN_PATTERN})
    """SGLN EPC URN where products are after each event (the site, or its finished-goods area), like
    urn:epc:id:sgln:4012345.00000.0. Upstream systems refuse events without one, so does the line."""
    timezone: str = "UTC"
    """IANA time zone of the line, like Europe/Berlin: event times are written with its UTC offset."""
    schemas: Path | None = None
    """Directory of the official GS1 EPCIS schemas (laid out like the gs1/EPCIS repository: EPCIS-JSON-Schema.json,
    XSD/, and XSD-1.2/ for EPCIS 1.2); documents are checked against them before they leave. Default:
    $LINESIDE_EPCIS_SCHEMAS, then /usr/share/lineside/epcis-schemas; without schemas only the line's own checks
    run, and the log says so."""

    @field_validator("biz_location")
    @classmethod
    def _sgln(cls, urn: str | None) -> str | None:
        return None if urn is None else check_sgln(urn)

    @field_validator("timezone")
    @classmethod
    def _zone(cls, name: str) -> str:
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f'"{name}" is not an IANA time zone, like Europe/Berlin or America/New_York') from None
        return name

    @field_validator("schemas")
    @classmethod
    def _anchor(cls, directory: Path | None, info: ValidationInfo) -> Path | None:
        return None if directory is None else _anchored(directory, info)


class TlsConfig(Section):
    """TLS towards an upstream endpoint: the server is always verified; a client certificate when asked."""

    ca_file: Path | None = None
    """PEM bundle of the CAs that sign the server's certificate; default: the system's."""
    client_cert: Path | None = None
    """PEM client certificate, for servers that authenticate the line by certificate."""
    client_key: Path | None = None
    """PEM private key of client_cert (unencrypted; protect it with file permissions)."""

    @field_validator("ca_file", "client_cert", "client_key")
    @classmethod
    def _anchor(cls, path: Path | None, info: ValidationInfo) -> Path | None:
        return None if path is None else _anchored(path, info)

    @model_validator(mode="after")
    def _pair(self) -> Self:
        if (self.client_cert is None) != (self.client_key is None):
            missing = "client_key" if self.client_key is None else "client_cert"
            raise RelationError("client_cert and client_key go together", at=(missing,))
        return self


class AuthConfig(Section):
    """How the line authenticates upstream: a bearer token, or a user and password; secrets live in files."""

    bearer_token_file: Path | None = None
    """File holding the bearer token (one line), readable by the service user only."""
    username: str | None = Field(None, min_length=1)
    """User name for HTTP basic authentication."""
    password_file: Path | None = None
    """File holding the basic-authentication password (one line)."""

    @field_validator("bearer_token_file", "password_file")
    @classmethod
    def _anchor(cls, path: Path | None, info: ValidationInfo) -> Path | None:
        return None if path is None else _anchored(path, info)

    @model_validator(mode="after")
    def _one_kind(self) -> Self:
        basic = self.username is not None or self.password_file is not None
        if basic and self.bearer_token_file is not None:
            raise RelationError("give a bearer_token_file or username and password_file, not both",
                                at=("bearer_token_file",))
        if basic and (self.username is None or self.password_file is None):
            missing = "username" if self.username is None else "password_file"
            raise RelationError("basic authentication needs both username and password_file", at=(missing,))
        if not basic and self.bearer_token_file is None:
            raise RelationError("give a bearer_token_file, or username and password_file", at=())
        return self


def _check_target(target: UpstreamTarget | PlantTarget, *, remote: str, needs_url: str) -> None:
    """Raise RelationError unless a delivery target has what its kind needs: a url (remote) or a directory."""
    if target.kind == remote:
        if target.url is None:
            raise RelationError(needs_url, at=("kind",))
        if target.directory is not None:
            raise RelationError("directory is for file_drop targets", at=("directory",))
        if target.tls is not None and not target.url.startswith("https://"):
            raise RelationError("tls settings need an https:// url", at=("tls",))
    else:
        if target.directory is None:
            raise RelationError("a file_drop target needs directory", at=("kind",))
        for key in ("url", "tls", "auth"):
            if getattr(target, key) is not None:
                raise RelationError(f"{key} is for {remote} targets", at=(key,))
    if target.retry_max_s < target.retry_initial_s:
        raise RelationError("retry_max_s must not be below retry_initial_s", at=("retry_max_s",))


def _unique_target_ids(targets: Sequence[UpstreamTarget | PlantTarget]) -> None:
    """Raise RelationError naming the second of two targets with one id, and the first."""
    first: dict[str, int] = {}
    for index, target in enumerate(targets):
        if target.id in first:
            raise RelationError(f'duplicate target id "{target.id}"', at=("targets", index, "id"),
                                first=("targets", first[target.id], "id"))
        first[target.id] = index


class UpstreamTarget(Section):
    """One place completed batches go as EPCIS: an EPCIS 2.0 capture endpoint or a directory for file drops."""

    id: Identifier
    """Short name of the target, in logs, the API and the delivery status."""
    kind: Literal["capture", "file_drop"]
    """capture: POST {url}/capture (EPCIS 2.0 REST binding); file_drop: documents written into directory."""
    url: str | None = Field(None, pattern=r"^https?://[^\s/]+(/[^\s]*)?$")
    """Base URL of the EPCIS repository (capture), like https://l3.example.com/epcis; /capture is added."""
    directory: Path | None = None
    """Directory documents are written into (file_drop), atomically, named by the profile's file_name."""
    profile: Identifier | None = None
    """Partner profile (catalog.partners/<profile>.yaml); default: the profile of each batch's market pack."""
    mode: Literal["batch", "stream"] = "batch"
    """batch: each batch once closed; stream: events also during production, every stream_every_s."""
    stream_every_s: float = Field(60.0, strict=True, gt=0, le=3600)
    """In stream mode, how often the events of the running batch are cut into a message."""
    tls: TlsConfig | None = None
    """TLS settings for an https:// url."""
    auth: AuthConfig | None = None
    """Authentication towards the capture endpoint."""
    request_timeout_s: float = Field(30.0, strict=True, gt=0, le=600)
    """Longest wait for the endpoint's answer to one request; then the attempt counts as failed and is retried."""
    job_timeout_s: float = Field(300.0, strict=True, gt=0, le=86400)
    """Longest wait for an accepted capture job to finish before the attempt is retried."""
    retry_initial_s: float = Field(1.0, strict=True, gt=0, le=600)
    """First wait before retrying a failed delivery; doubles per failure in a row up to retry_max_s."""
    retry_max_s: float = Field(300.0, strict=True, gt=0, le=86400)
    """Longest wait between retries while upstream stays down."""
    enabled: bool = True
    """A disabled target keeps its queue and sends nothing (maintenance windows upstream)."""

    @field_validator("directory")
    @classmethod
    def _anchor(cls, path: Path | None, info: ValidationInfo) -> Path | None:
        return None if path is None else _anchored(path, info)

    @model_validator(mode="after")
    def _kind_needs(self) -> Self:
        _check_target(self, remote="capture", needs_url="a capture target needs url (the EPCIS repository's base URL)")
        return self


class UpstreamConfig(Section):
    """Where completed batches go upstream as EPCIS; each target keeps its own durable queue."""

    targets: tuple[UpstreamTarget, ...] = ()
    """Delivery targets; ids unique."""

    @model_validator(mode="after")
    def _unique(self) -> Self:
        _unique_target_ids(self.targets)
        return self


class PlantTarget(Section):
    """One plant system (MES or ERP) the line sends batch records and manifests to: an HTTP endpoint or a folder."""

    id: Identifier
    """Short name of the target, in logs and the delivery status."""
    kind: Literal["http", "file_drop"]
    """http: each message POSTed to url with its id as Idempotency-Key; file_drop: files written into directory."""
    url: str | None = Field(None, pattern=r"^https?://[^\s/]+(/[^\s]*)?$")
    """The endpoint messages are POSTed to (http), like https://mes.example.com/lineside/messages."""
    directory: Path | None = None
    """Directory the messages are written into (file_drop), atomically, one file per representation."""
    messages: tuple[Literal["work_order_ack", "batch_record", "batch_manifest", "pallet_manifest"], ...] = (
        "work_order_ack", "batch_record", "batch_manifest", "pallet_manifest")
    """Which messages this target gets (docs/plant-messages.md)."""
    formats: tuple[Literal["json", "csv", "html"], ...] = ("json",)
    """Representations sent besides JSON: csv for manifests, html for batch records."""
    tls: TlsConfig | None = None
    """TLS settings for an https:// url."""
    auth: AuthConfig | None = None
    """Authentication towards the endpoint."""
    request_timeout_s: float = Field(30.0, strict=True, gt=0, le=600)
    """Longest wait for the endpoint's answer to one request; then the attempt counts as failed and is retried."""
    retry_initial_s: float = Field(1.0, strict=True, gt=0, le=600)
    """First wait before retrying a failed delivery; doubles per failure in a row up to retry_max_s."""
    retry_max_s: float = Field(300.0, strict=True, gt=0, le=86400)
    """Longest wait between retries while the endpoint stays down."""
    enabled: bool = True
    """A disabled target keeps its queue and sends nothing."""

    @field_validator("directory")
    @classmethod
    def _anchor(cls, path: Path | None, info: ValidationInfo) -> Path | None:
        return None if path is None else _anchored(path, info)

    @model_validator(mode="after")
    def _kind_needs(self) -> Self:
        _check_target(self, remote="http", needs_url="an http target needs url")
        return self


class PlantConfig(Section):
    """Where batch records (MES) and shipping manifests (ERP) go; each target keeps its own durable queue."""

    targets: tuple[PlantTarget, ...] = ()
    """Delivery targets; ids unique."""

    @model_validator(mode="after")
    def _unique(self) -> Self:
        _unique_target_ids(self.targets)
        return self


class LineConfig(Section):
    """One packaging line: its devices and the services the line controller runs for it."""

    line: LineInfo
    """The line itself; the only required section."""
    devices: tuple[DeviceConfig, ...] = ()
    """Every device the line controller talks to; ids unique."""
    storage: StorageConfig = Field(default_factory=StorageConfig)
    """Where the line keeps its durable state."""
    api: ApiConfig = Field(default_factory=ApiConfig)
    """The local HTTP API."""
    hmi: HmiConfig = Field(default_factory=HmiConfig)
    """The local web HMI."""
    opcua: OpcUaConfig = Field(default_factory=OpcUaConfig)
    """The OPC UA server (PackML per OPC 30050); off unless enabled."""
    logging: LoggingConfig = Field(default_factory=LoggingConfig)
    """What is logged, in which format, and which values are masked."""
    daemon: DaemonConfig = Field(default_factory=DaemonConfig)
    """How the line controller process behaves as a service."""
    catalog: CatalogConfig = Field(default_factory=CatalogConfig)
    """Where the products and market rule packs are."""
    serial_pool: SerialPoolConfig = Field(default_factory=SerialPoolConfig)
    """What to do when a pool of serials from upstream runs low."""
    openscs: OpenScsConfig | None = None
    """The L3 serial pool server (OPEN-SCS, OPC 30260) for products whose serial_source is open_scs."""
    control: ControlConfig = Field(default_factory=ControlConfig)
    """How the line's PackML state machine answers hold and stop requests, and what it needs to start."""
    inspection: InspectionConfig | None = None
    """The camera, the PLC and the rules of inspection and rejection; without it no pack is judged."""
    aggregation: AggregationConfig | None = None
    """Case and pallet stations with their labellers; sequential case packing needs inspection."""
    epcis: EpcisConfig = Field(default_factory=EpcisConfig)
    """What the line writes into its EPCIS events."""
    upstream: UpstreamConfig = Field(default_factory=UpstreamConfig)
    """Where completed batches are delivered as EPCIS."""
    plant: PlantConfig = Field(default_factory=PlantConfig)
    """Where batch records and shipping manifests go (MES, ERP)."""

    _source: Path | None = PrivateAttr(None)

    @model_validator(mode="before")
    @classmethod
    def _catalog_beside_the_file(cls, data: object) -> object:
        # A default built outside validation would not see the config file's directory its paths start at.
        if isinstance(data, dict) and "catalog" not in data:
            return {**data, "catalog": {}}
        return data

    @model_validator(mode="after")
    def _unique_ids(self) -> Self:
        first: dict[str, int] = {}
        for index, device in enumerate(self.devices):
            if device.id in first:
                raise RelationError(
                    f'duplicate device id "{device.id}"',
                    at=("devices", index, "id"),
                    first=("devices", first[device.id], "id"),
                )
            first[device.id] = index
        return self

    @model_validator(mode="after")
    def _inspection_devices(self) -> Self:
        inspection = self.inspection
        if inspection is None:
            return self
        roles = {device.id: registry.driver_class(device.driver).role for device in self.devices}
        for key, role in (("camera", "camera"), ("plc", "plc")):
            device_id = getattr(inspection, key)
            if device_id not in roles:
                known = ", ".join(sorted(roles)) or "none"
                raise RelationError(f'no device "{device_id}" (devices: {known})', at=("inspection", key))
            if roles[device_id] != role:
                raise RelationError(f'device "{device_id}" is a {roles[device_id]}, not a {role}',
                                    at=("inspection", key))
        return self

    @model_validator(mode="after")
    def _aggregation_devices(self) -> Self:
        aggregation = self.aggregation
        if aggregation is None:
            return self
        devices = {device.id: device for device in self.devices}
        cases = aggregation.cases
        wanted: list[tuple[tuple[str | int, ...], str | None, str]] = [
            (("aggregation", "cases", "camera"), cases.camera, "camera"),
            (("aggregation", "cases", "scanner"), cases.scanner, "reader"),
            (("aggregation", "cases", "label", "printer"), cases.label.printer, "printer"),
            (("aggregation", "cases", "label", "verifier"), cases.label.verifier, "reader"),
        ]
        if aggregation.pallets is not None:
            pallets = aggregation.pallets
            wanted += [
                (("aggregation", "pallets", "scanner"), pallets.scanner, "reader"),
                (("aggregation", "pallets", "label", "printer"), pallets.label.printer, "printer"),
                (("aggregation", "pallets", "label", "verifier"), pallets.label.verifier, "reader"),
            ]
            if pallets.label.printer == cases.label.printer:
                raise RelationError("cases and pallets need their own label printers (each has its own template)",
                                    at=("aggregation", "pallets", "label", "printer"))
        used: dict[str, tuple[str | int, ...]] = {}
        for at, device_id, role in wanted:
            if device_id is None:
                continue
            if device_id in used:
                raise RelationError(f'device "{device_id}" already serves {".".join(map(str, used[device_id]))}: '
                                    "each station needs its own device", at=at, first=used[device_id])
            used[device_id] = at
            device = devices.get(device_id)
            if device is None:
                known = ", ".join(sorted(devices)) or "none"
                raise RelationError(f'no device "{device_id}" (devices: {known})', at=at)
            actual = registry.driver_class(device.driver).role
            if actual != role:
                raise RelationError(f'device "{device_id}" is a {actual}, not a {role}', at=at)
            if role == "printer" and (device.options or {}).get("feeds") != "labels":
                raise RelationError(f'label printer "{device_id}" must have options feeds: labels', at=at)
        if cases.mode == "sequential" and self.inspection is None:
            raise RelationError("sequential case packing takes the packs inspection passed: configure inspection",
                                at=("aggregation", "cases", "mode"))
        return self

    @model_validator(mode="after")
    def _remember_source(self, info: ValidationInfo) -> Self:
        source = (info.context or {}).get("source")
        self._source = source if isinstance(source, Path) else None
        return self

    @property
    def source(self) -> Path | None:
        """The file this configuration was loaded from, when it came from one."""
        return self._source

    def device(self, device_id: str) -> DeviceConfig:
        """Return the device with this id; KeyError when there is none."""
        for device in self.devices:
            if device.id == device_id:
                return device
        raise KeyError(device_id)
