"""`lineside opcua cert|show|trust`: the OPC UA server's certificate and the client certificates it trusts.

Run them as the service user (``sudo -u lineside lineside opcua cert -c /etc/lineside/line.yaml``), so the
daemon can read the key it writes. Only light modules are imported at load time, so `lineside --help` stays
fast.
"""

# ruff: noqa: T201 - a command line prints its results

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from edge.config import LineConfig
    from edge.opcua.certs import OpcUaPaths, ServerCertificate

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2


class _BadInputError(Exception):
    """The command line or the configuration is wrong (exit 2)."""


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `lineside opcua` and its commands on the top-level subparsers."""
    where = argparse.ArgumentParser(add_help=False)
    where.add_argument("-c", "--config", type=Path, metavar="FILE",
                       help="line configuration (its line id, opcua paths and state directory)")
    where.add_argument("--state-dir", type=Path, metavar="DIR", help="state directory (instead of, or over, -c)")
    where.add_argument("--json", action="store_true", help="print JSON")

    opcua = sub.add_parser("opcua", help="the OPC UA server's certificate and trusted clients",
                           description="The OPC UA server needs its certificate, made once at installation. Run "
                                       "these as the service user, so the daemon can read what they write.")
    commands = opcua.add_subparsers(title="opcua commands", dest="opcua_command", required=True, metavar="COMMAND")
    cert = commands.add_parser(
        "cert", parents=[where], help="make the server's self-signed certificate and key (once, at installation)",
        description="Write a self-signed certificate (RSA 2048, SHA-256) with the application URI "
                    "urn:lineside:<line id> and the host names clients use, and its key (readable by its owner "
                    "only), into the state directory (or where the configuration's opcua section says). Every "
                    "SCADA client trusts it once, comparing the fingerprint printed here.")
    cert.add_argument("--line", metavar="ID", help="the line id (default: the configuration's)")
    cert.add_argument("--host", action="append", default=[], metavar="NAME",
                      help="a DNS name or address clients reach the server by (repeat; default: this machine's "
                           "names and loopback)")
    cert.add_argument("--days", type=int, default=None, metavar="N", help="days valid (default: five years)")
    cert.add_argument("--force", action="store_true",
                      help="replace an existing certificate (every client must trust the new one)")
    cert.set_defaults(handler=_cmd_cert)
    show = commands.add_parser("show", parents=[where], help="show the server certificate and the trusted clients")
    show.add_argument("--line", metavar="ID", help="the line id (default: the configuration's)")
    show.set_defaults(handler=_cmd_show)
    trust = commands.add_parser(
        "trust", parents=[where], help="trust a client's certificate (DER or PEM), e.g. one from opcua/rejected",
        description="Copy a client certificate into the trusted directory. A refused client's certificate is kept "
                    "in opcua/rejected in the state directory: check its fingerprint with the SCADA's, then trust "
                    "it. The running server reads the directory at each connection: no restart.")
    trust.add_argument("certificate", type=Path, metavar="FILE")
    trust.set_defaults(handler=_cmd_trust)


def _cmd_cert(args: argparse.Namespace) -> int:
    from edge.opcua.certs import DEFAULT_DAYS, CertificateError, default_hosts, make_certificate  # noqa: PLC0415

    days = DEFAULT_DAYS if args.days is None else args.days
    if days < 1:
        return _fail(f"--days must be 1 or more, not {days}", EXIT_BAD_INPUT)
    try:
        paths, line_id = _where(args)
        hosts = args.host or default_hosts()
        made = make_certificate(paths, line_id, hosts, days=days, force=args.force)
    except _BadInputError as err:
        return _fail(str(err), EXIT_BAD_INPUT)
    except (CertificateError, OSError) as err:
        return _fail(str(err), EXIT_FAILED)
    _print_certificate(args, paths, made, hosts=hosts, made=True)
    return EXIT_OK


def _cmd_show(args: argparse.Namespace) -> int:
    from edge.opcua.certs import CertificateError, load_certificate  # noqa: PLC0415 - keeps --help fast

    try:
        paths, line_id = _where(args)
        certificate = load_certificate(paths, line_id)
    except _BadInputError as err:
        return _fail(str(err), EXIT_BAD_INPUT)
    except CertificateError as err:
        return _fail(str(err), EXIT_FAILED)
    _print_certificate(args, paths, certificate, hosts=None, made=False)
    return EXIT_OK


def _cmd_trust(args: argparse.Namespace) -> int:
    from edge.opcua.certs import CertificateError, trust_client  # noqa: PLC0415 - keeps --help fast

    try:
        paths = _paths(args)
        target, fingerprint = trust_client(paths, args.certificate)
    except _BadInputError as err:
        return _fail(str(err), EXIT_BAD_INPUT)
    except CertificateError as err:
        return _fail(str(err), EXIT_BAD_INPUT)
    except OSError as err:
        return _fail(str(err), EXIT_FAILED)
    if args.json:
        print(json.dumps({"trusted": str(target), "sha256": fingerprint}))
    else:
        print(f"trusted {target}\n  SHA-256 {fingerprint}\n  (compare it with the fingerprint the client shows)")
    return EXIT_OK


def _print_certificate(args: argparse.Namespace, paths: OpcUaPaths, certificate: ServerCertificate, *,
                       hosts: list[str] | None, made: bool) -> None:
    trusted = sorted(p.name for p in paths.trusted.glob("*") if p.is_file()) if paths.trusted.is_dir() else []
    rejected = sorted(p.name for p in paths.rejected.glob("*") if p.is_file()) if paths.rejected.is_dir() else []
    if args.json:
        print(json.dumps({"certificate": str(paths.certificate), "private_key": str(paths.private_key),
                          "application_uri": certificate.uri, "hosts": hosts, "sha256": certificate.sha256,
                          "not_after": certificate.not_after.isoformat(), "trusted": trusted,
                          "rejected": rejected}))
        return
    print(f"{'wrote' if made else 'certificate'} {paths.certificate}")
    if made:
        print(f"  key {paths.private_key} (readable by its owner only)")
    print(f"  application URI {certificate.uri}")
    if hosts is not None:
        print(f"  hosts {', '.join(hosts)}")
    print(f"  valid until {certificate.not_after:%Y-%m-%d}")
    print(f"  SHA-256 {certificate.sha256}")
    print(f"trusted clients ({paths.trusted}): {', '.join(trusted) or 'none yet'}")
    if rejected:
        print(f"refused clients ({paths.rejected}): {', '.join(rejected)}")
    if made:
        print("next: set opcua.enabled: true in the configuration, restart the daemon, and trust this certificate "
              "on each SCADA client (compare the SHA-256)")


def _where(args: argparse.Namespace) -> tuple[OpcUaPaths, str]:
    """Return the paths and the line id the arguments name; _BadInputError when they do not."""
    paths = _paths(args)
    line_id = args.line or (_config(args).line.id if args.config is not None else None)
    if line_id is None:
        raise _BadInputError("give the line id: -c FILE (the line configuration) or --line ID")
    from edge.config.models import ID_PATTERN  # noqa: PLC0415 - keeps --help fast

    if not re.fullmatch(ID_PATTERN, line_id):
        raise _BadInputError(f"{line_id!r} is not a line id: 1 to 32 letters, digits and . _ -")
    return paths, line_id


def _paths(args: argparse.Namespace) -> OpcUaPaths:
    from edge.opcua.certs import OpcUaPaths  # noqa: PLC0415 - keeps --help fast

    if args.config is not None:
        return OpcUaPaths.of(_config(args), args.state_dir)
    if args.state_dir is not None:
        return OpcUaPaths.in_state_dir(args.state_dir)
    raise _BadInputError("give the state directory: -c FILE (the line configuration) or --state-dir DIR")


def _config(args: argparse.Namespace) -> LineConfig:
    from edge.config.load import load_config  # noqa: PLC0415 - configuration loads only when asked for
    from edge.errors import ConfigError  # noqa: PLC0415

    try:
        return load_config(args.config)
    except ConfigError as err:
        issues = "\n".join(str(issue) for issue in err.issues)
        raise _BadInputError(f"{args.config}: the line configuration is not valid\n{issues}") from err
    except OSError as err:
        raise _BadInputError(f"{args.config}: {err.strerror or err}") from err


def _fail(message: str, code: int) -> int:
    print(f"lineside opcua: {message}", file=sys.stderr)
    return code
