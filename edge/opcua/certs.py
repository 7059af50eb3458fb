"""The OPC UA server's certificate: made once at installation (`lineside opcua cert`), checked at every start.

The certificate is self-signed (RSA 2048, SHA-256, as Basic256Sha256 asks) with the application URI
``urn:lineside:<line id>`` in its subjectAltName, beside the DNS names and addresses clients reach the line PC
by. SCADA clients pin it (they show its SHA-256 fingerprint when they first connect, and the command prints it
to compare). The server refuses to start without it, or with one made for another line, or with a key that is
not its own: a server without its certificate would have no encrypted endpoint at all.

Client certificates are trusted by directory: a certificate (DER or PEM) placed in the trusted directory, or
signed by a CA certificate placed there, may open a session. A refused client's certificate is written to the
rejected directory beside the state, so the integrator trusts a SCADA by moving its file across (or with
`lineside opcua trust FILE`); nothing needs a restart.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import os
import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from edge.errors import EdgeError

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

    from edge.config import LineConfig

APP_URI_PREFIX: Final = "urn:lineside:"
OPCUA_DIR: Final = "opcua"
CERT_NAME: Final = "server-cert.der"
KEY_NAME: Final = "server-key.pem"
TRUSTED_DIR: Final = "trusted"
REJECTED_DIR: Final = "rejected"
DEFAULT_DAYS: Final = 5 * 365
"""Five years: a certificate change means every SCADA trusts the new one again, so not often; not for ever either,
so a key that leaked with an old disk image stops being accepted some day."""
RENEW_WARNING_DAYS: Final = 30
CERT_COMMAND: Final = "lineside opcua cert -c FILE"


class CertificateError(EdgeError):
    """The server's certificate is missing, unreadable, expired, or not this line's; the message says what to do."""


def application_uri(line_id: str) -> str:
    """Return the OPC UA application URI of a line's server, as in its certificate."""
    return f"{APP_URI_PREFIX}{line_id}"


@dataclass(frozen=True, slots=True)
class OpcUaPaths:
    """Where the server's certificate, its key and the client trust lists are."""

    certificate: Path
    private_key: Path
    trusted: Path
    rejected: Path

    @classmethod
    def in_state_dir(cls, state_dir: Path) -> OpcUaPaths:
        """Return the default paths under state_dir/opcua."""
        base = state_dir / OPCUA_DIR
        return cls(base / CERT_NAME, base / KEY_NAME, base / TRUSTED_DIR, base / REJECTED_DIR)

    @classmethod
    def of(cls, config: LineConfig, state_dir: Path | None = None) -> OpcUaPaths:
        """Return the paths config names, the defaults under the state directory (state_dir overrides it) else."""
        defaults = cls.in_state_dir(state_dir or config.storage.state_dir)
        opcua = config.opcua
        return cls(opcua.certificate or defaults.certificate, opcua.private_key or defaults.private_key,
                   opcua.trusted_clients or defaults.trusted, defaults.rejected)


@dataclass(frozen=True, slots=True)
class ServerCertificate:
    """The server's certificate and key as the OPC UA stack loads them, with what the HMI and the log show."""

    der: bytes
    key_pem: bytes
    uri: str
    not_after: dt.datetime
    sha256: str
    """The certificate's SHA-256 fingerprint, as clients show it (hex pairs separated by colons)."""


def fingerprint(der: bytes) -> str:
    """Return a certificate's SHA-256 fingerprint as AB:CD:... (how OPC UA clients show it)."""
    return ":".join(f"{b:02X}" for b in hashlib.sha256(der).digest())


def default_hosts() -> list[str]:
    """Return the names a client on this machine or the cell network may use: the host name, localhost, loopback."""
    names = [socket.gethostname(), socket.getfqdn(), "localhost", "127.0.0.1"]
    return list(dict.fromkeys(n for n in names if n))


def make_certificate(paths: OpcUaPaths, line_id: str, hosts: Sequence[str], *, days: int = DEFAULT_DAYS,
                     force: bool = False) -> ServerCertificate:
    """Write a new self-signed certificate and key for line_id, valid for hosts (DNS names or addresses).

    CertificateError when one exists already and force is false: every client trusting the old one would have to
    trust the new one. The key is written readable by its owner only, before the certificate.
    """
    if days < 1:
        raise ValueError(f"a certificate is valid for at least a day, not {days}")
    if not force and (paths.certificate.exists() or paths.private_key.exists()):
        raise CertificateError(f"{paths.certificate} exists already: every SCADA client trusting it would have to "
                               "trust a new one; use --force to replace it anyway")
    from asyncua.crypto.cert_gen import generate_self_signed_app_certificate  # noqa: PLC0415 - loads asyncua

    uri = application_uri(line_id)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    names: list[x509.GeneralName] = [x509.UniformResourceIdentifier(uri)]
    for host in dict.fromkeys(hosts):
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    cert = generate_self_signed_app_certificate(
        key, f"Lineside {line_id}", {"organizationName": "Lineside"}, names,
        extended=[ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH], days=days)
    der = cert.public_bytes(serialization.Encoding.DER)
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    for directory in (paths.private_key.parent, paths.certificate.parent, paths.trusted, paths.rejected):
        directory.mkdir(parents=True, exist_ok=True)
    _write_atomically(paths.private_key, key_pem, mode=0o600)
    _write_atomically(paths.certificate, der, mode=0o644)
    return ServerCertificate(der, key_pem, uri, cert.not_valid_after_utc, fingerprint(der))


def load_certificate(paths: OpcUaPaths, line_id: str, *, now: dt.datetime | None = None) -> ServerCertificate:
    """Read and check the server's certificate and key; CertificateError naming the command that makes them."""
    uri = application_uri(line_id)
    remake = f"make one with `{CERT_COMMAND}` (once, at installation), or set opcua.enabled: false"
    try:
        der = paths.certificate.read_bytes()
        key_pem = paths.private_key.read_bytes()
    except FileNotFoundError as err:
        raise CertificateError(f"the OPC UA server has no certificate: {err.filename} does not exist; {remake}"
                               ) from None
    except OSError as err:
        raise CertificateError(f"cannot read the OPC UA server certificate or key: {err}") from None
    try:
        cert = x509.load_der_x509_certificate(der)
    except ValueError:
        try:
            cert = x509.load_pem_x509_certificate(der)
            der = cert.public_bytes(serialization.Encoding.DER)
        except ValueError:
            raise CertificateError(f"{paths.certificate} is not a certificate (DER or PEM); {remake}") from None
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError):
        raise CertificateError(f"{paths.private_key} is not an unencrypted PEM private key; {remake}") from None
    public = cert.public_key()
    if (not isinstance(key, rsa.RSAPrivateKey) or not isinstance(public, rsa.RSAPublicKey)
            or key.public_key().public_numbers() != public.public_numbers()):
        raise CertificateError(f"{paths.private_key} is not the key of {paths.certificate}; {remake} (--force)")
    try:
        uris = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
            x509.UniformResourceIdentifier)
    except x509.ExtensionNotFound:
        uris = []
    if uri not in uris:
        found = ", ".join(uris) or "none"
        raise CertificateError(f"{paths.certificate} is not this line's: its application URI is {found}, the line's "
                               f"is {uri} (the line id changed?); {remake} (--force)")
    now = now or dt.datetime.now(dt.UTC)
    if now >= cert.not_valid_after_utc or now < cert.not_valid_before_utc:
        raise CertificateError(f"{paths.certificate} is valid from {cert.not_valid_before_utc:%Y-%m-%d} to "
                               f"{cert.not_valid_after_utc:%Y-%m-%d} only; {remake} (--force), then trust the new "
                               "one on every client")
    return ServerCertificate(der, key_pem, uri, cert.not_valid_after_utc, fingerprint(der))


def trust_client(paths: OpcUaPaths, certificate: Path) -> tuple[Path, str]:
    """Copy a client's certificate (DER or PEM) into the trusted directory as DER; return where and its fingerprint."""
    data = certificate.read_bytes()
    try:
        cert = x509.load_der_x509_certificate(data)
    except ValueError:
        try:
            cert = x509.load_pem_x509_certificate(data)
        except ValueError:
            raise CertificateError(f"{certificate} is not a certificate (DER or PEM)") from None
    der = cert.public_bytes(serialization.Encoding.DER)
    paths.trusted.mkdir(parents=True, exist_ok=True)
    target = paths.trusted / f"{safe_name(cert)}-{hashlib.sha256(der).hexdigest()[:16]}.der"
    _write_atomically(target, der, mode=0o644)
    return target, fingerprint(der)


def safe_name(cert: x509.Certificate) -> str:
    """Return the certificate's common name as a file name part (letters, digits, . _ - only)."""
    names = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    text = str(names[0].value) if names else "client"
    return "".join(c if c.isascii() and (c.isalnum() or c in "._-") else "_" for c in text)[:64] or "client"


def _write_atomically(path: Path, data: bytes, *, mode: int) -> None:
    """Write data to path through a temporary file created with mode, so no reader sees half a key."""
    temporary = path.with_name(f".{path.name}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        temporary.chmod(mode)  # the umask may have narrowed it, and an old file kept its mode
        temporary.replace(path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
