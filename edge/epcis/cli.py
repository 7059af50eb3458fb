"""`lineside epcis ...`: export a batch as EPCIS, validate and hash documents, see and re-send upstream delivery.

export, status and the document commands read the state directory without its lock, so they work beside a
running daemon; resend changes the queue, so it goes through the daemon's API while the daemon runs.
"""

# ruff: noqa: T201 - a command line prints its results

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

if TYPE_CHECKING:
    import sqlite3

    from edge.config import LineConfig
    from edge.epcis.profiles import PartnerProfile

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2

EXPORT_EVENTS_LIMIT = 10_000_000
"""An export is one document of the whole batch, however long (a profile's cut applies to deliveries only)."""


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `lineside epcis` and its commands on the top-level subparsers."""
    epcis = sub.add_parser("epcis", help="EPCIS documents: export, validate, hash; upstream delivery status")
    commands = epcis.add_subparsers(title="epcis commands", dest="epcis_command", required=True, metavar="COMMAND")

    where = argparse.ArgumentParser(add_help=False)
    where.add_argument("-c", "--config", type=Path, metavar="FILE", help="line configuration (state dir, catalog, "
                       "read point, bizLocation, time zone)")
    where.add_argument("--state-dir", type=Path, metavar="DIR", help="state directory (instead of, or over, -c)")

    export = commands.add_parser("export", parents=[where], help="write one batch's events as an EPCIS document")
    export.add_argument("--batch", required=True, metavar="ID", help="batch id or work order")
    export.add_argument("--format", choices=["json", "xml"], help="json: EPCIS 2.0 JSON-LD; xml: EPCIS XML in the "
                        "profile's version (default: the profile's syntax)")
    export.add_argument("--profile", metavar="NAME", help="partner profile (default: the batch market's)")
    export.add_argument("-o", "--output", type=Path, metavar="FILE", help="write here, atomically (default: stdout)")
    export.set_defaults(handler=_cmd_export)

    validate = commands.add_parser("validate", help="check a document against the official schemas (exit 1: invalid)")
    validate.add_argument("file", type=Path)
    validate.add_argument("--schemas", type=Path, metavar="DIR", help="official EPCIS schemas (default: "
                          "$LINESIDE_EPCIS_SCHEMAS, then /usr/share/lineside/epcis-schemas)")
    validate.add_argument("--checks", action="store_true",
                          help="also the line's checks before upload (commissioning, aggregation, times, bizLocation)")
    validate.add_argument("--json", action="store_true", help="print JSON")
    validate.set_defaults(handler=_cmd_validate)

    hashing = commands.add_parser("hash", help="print the GS1 event hash of each event, in document order")
    hashing.add_argument("file", type=Path)
    hashing.add_argument("--json", action="store_true", help="print JSON")
    hashing.set_defaults(handler=_cmd_hash)

    status = commands.add_parser("status", parents=[where], help="delivery status per target and batch")
    status.add_argument("--target", metavar="ID")
    status.add_argument("--batch", metavar="ID", help="batch id or work order")
    status.add_argument("--json", action="store_true", help="print JSON")
    status.set_defaults(handler=_cmd_status)

    resend = commands.add_parser("resend", parents=[where], help="queue a batch's messages for a target again")
    resend.add_argument("--target", required=True, metavar="ID")
    resend.add_argument("--batch", required=True, metavar="ID", help="batch id or work order")
    resend.add_argument("--operator", default=os.environ.get("USER"), metavar="NAME",
                        help="who asks, recorded with the re-send (default: $USER)")
    resend.add_argument("--reason", required=True, help="why, recorded with the re-send")
    resend.add_argument("--api", metavar="URL", help="the running daemon's API, like http://127.0.0.1:8470 (with the "
                        "session kept by `lineside ctl login`, or --user)")
    resend.add_argument("--user", metavar="NAME", help="log in as NAME for this command (with --api)")
    resend.set_defaults(handler=_cmd_resend)


class _BadInputError(Exception):
    """A command given something it cannot use; the message says what and where."""


def _fail(message: str, code: int = EXIT_BAD_INPUT) -> int:
    print(f"lineside epcis: {message}", file=sys.stderr)
    return code


def _config(args: argparse.Namespace) -> LineConfig | None:
    if args.config is None:
        return None
    from edge.config.load import load_config  # noqa: PLC0415 - configuration loads only when asked for

    return load_config(args.config)


def _state_dir(args: argparse.Namespace, config: LineConfig | None) -> Path:
    if args.state_dir is not None:
        return Path(args.state_dir)
    if config is not None:
        return config.storage.state_dir
    raise _BadInputError("give the state directory: -c FILE or --state-dir DIR")


def _batch_id(conn: sqlite3.Connection, ref: str) -> int:
    if ref.isdigit():
        row = conn.execute("SELECT id FROM batch WHERE id = ?", (int(ref),)).fetchone()
    else:
        row = conn.execute("SELECT id FROM batch WHERE work_order = ?", (ref,)).fetchone()
    if row is None:
        raise _BadInputError(f"no batch {ref!r} (give its id or its work order)")
    return int(row[0])


# -- export ---------------------------------------------------------------------------------------


def _cmd_export(args: argparse.Namespace) -> int:
    from edge.errors import EdgeError  # noqa: PLC0415 - light imports at load time keep --help fast

    try:
        return _export(args)
    except _BadInputError as exc:
        return _fail(str(exc))
    except EdgeError as exc:
        return _fail(str(exc), EXIT_FAILED)


def _export(args: argparse.Namespace) -> int:
    from edge.epcis.documents import export_collector  # noqa: PLC0415
    from edge.store import Store  # noqa: PLC0415

    config = _config(args)
    state_dir = _state_dir(args, config)
    store = Store.open_readonly(state_dir)

    async def run() -> int:
        return await store.read(lambda conn: _export_in(conn, args, config))

    try:
        with export_collector():  # this process does nothing but the export
            count = asyncio.run(run())
    finally:
        store.close()
    print(f"lineside epcis: {count:,} events written", file=sys.stderr)
    return EXIT_OK


def _export_in(conn: sqlite3.Connection, args: argparse.Namespace, config: LineConfig | None) -> int:
    """Write the document from the reader's connection; return the number of events."""
    from edge.epcis.documents import write_document  # noqa: PLC0415
    from edge.epcis.model import DocumentHeader  # noqa: PLC0415
    from edge.sync import delivery, outbox  # noqa: PLC0415

    batch_id = _batch_id(conn, args.batch)
    profile = _export_profile(conn, batch_id, args, config)
    context = outbox.stored_context(conn, batch_id)
    if context is None:
        if config is None:
            raise _BadInputError(f"batch {batch_id} was never reported, so its read point, bizLocation and time "
                                 "zone are not fixed yet: give the line configuration with -c FILE")
        facts = delivery.LineFacts(config.line.id, config.line.location, config.epcis.biz_location,
                                   config.epcis.timezone, config.line.site_gln)
        work_order = conn.execute("SELECT work_order FROM batch WHERE id = ?", (batch_id,)).fetchone()[0]
        context = facts.proposal(str(work_order))
    from edge.epcis.events import batch_events  # noqa: PLC0415
    from edge.store.runs import iso_utc  # noqa: PLC0415
    from edge.store.store import utc_now  # noqa: PLC0415

    header = DocumentHeader(
        creation_date=utc_now(),
        sender_gln=context.get("site_gln"),
        receiver_gln=profile.receiver_gln,
        instance_id=f"{context.get('line', 'line')}.export.{batch_id}.{iso_utc(utc_now())}",
        master_data=delivery.master_data(conn, batch_id) if profile.master_data else (),
    )
    events = batch_events(conn, batch_id, delivery.event_context(context, profile))
    if args.output is None:
        return write_document(sys.stdout.buffer, header, events, profile)
    return _atomic_write(Path(args.output), lambda out: write_document(out, header, events, profile))


def _export_profile(
    conn: sqlite3.Connection, batch_id: int, args: argparse.Namespace, config: LineConfig | None
) -> PartnerProfile:
    from edge.config.models import shipped_markets_dir, shipped_partners_dir  # noqa: PLC0415
    from edge.epcis.profiles import load_profile, profile_from_market  # noqa: PLC0415
    from edge.markets.load import load_market  # noqa: PLC0415

    partners = config.catalog.partners if config is not None else shipped_partners_dir()
    if args.profile is not None:
        path = partners / f"{args.profile}.yaml"
        if not path.is_file():
            known = ", ".join(sorted(p.stem for p in partners.glob("*.yaml"))) or "none"
            raise _BadInputError(f"no partner profile {args.profile!r} in {partners} (profiles: {known})")
        profile = load_profile(path)
    else:
        markets = config.catalog.markets if config is not None else shipped_markets_dir()
        market = conn.execute("SELECT market FROM batch WHERE id = ?", (batch_id,)).fetchone()[0]
        profile = profile_from_market(load_market(markets / f"{market}.yaml").epcis)
    update: dict[str, Any] = {"max_events_per_document": EXPORT_EVENTS_LIMIT}
    if args.format == "json":
        update |= {"version": "2.0", "syntax": "json-ld"}
    elif args.format == "xml":
        update |= {"syntax": "xml"}
    return profile.model_copy(update=update)


def _atomic_write(path: Path, write: Any) -> int:  # noqa: ANN401 - a callable taking the open binary file
    """Write through write(out) into a temporary file beside path, fsync, then rename it over path."""
    directory = path.parent if str(path.parent) else Path()
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", dir=directory)
    try:
        with os.fdopen(fd, "wb", buffering=1 << 20) as out:
            out_io: BinaryIO = out
            count = int(write(out_io))
            out.flush()
            os.fsync(out.fileno())
        Path(temp).replace(path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    return count


# -- validate and hash ----------------------------------------------------------------------------


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise _BadInputError(f"{path}: cannot read: {exc.strerror}") from exc


def _cmd_validate(args: argparse.Namespace) -> int:
    from edge.epcis.validate import EpcisSchemas, SchemaUnavailableError, validate_document  # noqa: PLC0415
    from edge.errors import EdgeError  # noqa: PLC0415

    try:
        data = _read(args.file)
    except _BadInputError as exc:
        return _fail(str(exc))
    schemas = EpcisSchemas.locate(args.schemas)
    if schemas is None:
        return _fail("the official EPCIS schemas are not installed: give --schemas DIR (a copy of the gs1/EPCIS "
                     "repository) or set LINESIDE_EPCIS_SCHEMAS")
    try:
        problems = [f"{args.file}: {p}" for p in validate_document(data, schemas)]
        if args.checks and not problems:
            problems += [f"{args.file}: {p}" for p in _checks(data)]
    except SchemaUnavailableError as exc:
        return _fail(f"{args.file}: {exc}")
    except EdgeError as exc:
        return _fail(f"{args.file}: {exc}", EXIT_FAILED)
    if args.json:
        print(json.dumps({"file": str(args.file), "valid": not problems, "problems": problems}, indent=2))
    else:
        for problem in problems:
            print(problem)
        if not problems:
            print(f"{args.file}: valid")
    return EXIT_FAILED if problems else EXIT_OK


def _checks(data: bytes) -> list[str]:
    from edge.epcis.checks import check_events  # noqa: PLC0415
    from edge.epcis.reading import read_events  # noqa: PLC0415
    from edge.store.store import utc_now  # noqa: PLC0415

    return [str(r) for r in check_events(read_events(data), now=utc_now())]


def _cmd_hash(args: argparse.Namespace) -> int:
    from edge.epcis.hashing import document_event_hashes  # noqa: PLC0415
    from edge.errors import EdgeError  # noqa: PLC0415

    try:
        hashes = document_event_hashes(_read(args.file))
    except _BadInputError as exc:
        return _fail(str(exc))
    except EdgeError as exc:
        return _fail(f"{args.file}: {exc}")
    if args.json:
        print(json.dumps(hashes, indent=2))
    else:
        for value in hashes:
            print(value)
    return EXIT_OK


# -- delivery -------------------------------------------------------------------------------------


def _cmd_status(args: argparse.Namespace) -> int:
    from edge.store import Store  # noqa: PLC0415
    from edge.sync import outbox  # noqa: PLC0415

    try:
        config = _config(args)
        store = Store.open_readonly(_state_dir(args, config))
    except _BadInputError as exc:
        return _fail(str(exc))

    def read(conn: sqlite3.Connection) -> list[dict[str, Any]]:
        batch = None if args.batch is None else _batch_id(conn, args.batch)
        return outbox.batch_status(conn, args.target, batch)

    async def run() -> list[dict[str, Any]]:
        return await store.read(read)

    try:
        rows = asyncio.run(run())
    except _BadInputError as exc:
        return _fail(str(exc))
    finally:
        store.close()
    if args.json:
        print(json.dumps(rows, indent=2))
        return EXIT_OK
    if not rows:
        print("no batch is on its way upstream")
    for row in rows:
        reason = f"  ({row['reason']})" if row["reason"] else ""
        print(f"{row['target']}  batch {row['batch']} ({row['work_order']}): {row['state']}, "
              f"{row['delivered_messages']}/{row['messages']} messages, {row['events']:,} events, "
              f"{row['attempts']} attempts{reason}")
    return EXIT_OK


def _cmd_resend(args: argparse.Namespace) -> int:
    from edge.errors import EdgeError, StoreLockedError  # noqa: PLC0415

    if args.api:
        return asyncio.run(_resend_remote(args))
    if not args.operator:
        return _fail("give --operator NAME: a re-send is recorded with who asked for it")
    try:
        config = _config(args)
        state_dir = _state_dir(args, config)
        return asyncio.run(_resend_offline(args, state_dir))
    except _BadInputError as exc:
        return _fail(str(exc))
    except StoreLockedError as exc:
        return _fail(f"{exc}; while the daemon runs, re-send through it: --api URL", EXIT_FAILED)
    except EdgeError as exc:
        return _fail(str(exc), EXIT_FAILED)


async def _resend_offline(args: argparse.Namespace, state_dir: Path) -> int:
    from edge.store import Store  # noqa: PLC0415
    from edge.store.runs import iso_utc  # noqa: PLC0415
    from edge.store.store import utc_now  # noqa: PLC0415
    from edge.sync import outbox  # noqa: PLC0415

    async with Store.open(state_dir) as store:

        def change(conn: sqlite3.Connection) -> int:
            batch = _batch_id(conn, args.batch)
            return outbox.resend(conn, args.target, batch, operator=args.operator, reason=args.reason,
                                 now=iso_utc(utc_now()))

        count = await store.write(change)
    print(f"{count} message(s) of batch {args.batch} queued again for {args.target}")
    return EXIT_OK


async def _resend_remote(args: argparse.Namespace) -> int:
    from edge.api.client import ApiClient, ApiLoginError, ApiUnreachableError, path  # noqa: PLC0415

    try:
        async with ApiClient(args.api, user=args.user) as client:
            status, body = await client.request(
                "POST", path("epcis", "deliveries", args.target, args.batch, "resend"),
                json_body={"reason": args.reason},
            )
    except (ApiLoginError, ApiUnreachableError) as exc:
        return _fail(str(exc), EXIT_FAILED)
    if status >= 400:
        return _fail(str(body.get("error", body)) if isinstance(body, dict) else str(body),
                     EXIT_BAD_INPUT if status in (400, 401, 403, 404) else EXIT_FAILED)
    print(f"{body.get('messages', 0)} message(s) of batch {args.batch} queued again for {args.target}")
    return EXIT_OK
