"""`lineside batch ...`: work orders, the batch life cycle and the serial pool from the command line.

Offline it opens the state directory itself (taking its lock) and does the one command, recorded under the
operating-system user (or --operator). While the daemon holds that lock it goes through the daemon's HTTP API
instead (found from -c FILE, or given as --api URL), which needs a login: ``--user NAME`` logs in for the command
(password asked on the terminal, or read from standard input, one line), else the session `lineside ctl login`
kept is used. The change is then recorded under that user, and a signed action (release, close, decommission-in-
doubt) is signed with the same password. Only light modules are imported here at load time, so `lineside --help`
stays fast.
"""

# ruff: noqa: T201 - a command line prints its results

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TextIO, TypeVar, cast

if TYPE_CHECKING:
    from collections.abc import Callable

    from edge.api.client import ApiClient
    from edge.config import CatalogConfig, LineConfig
    from edge.products.load import Catalog
    from edge.serials.batches import BatchService
    from edge.store import Store

T = TypeVar("T")

# The exit codes of every `lineside` command (DESIGN, Interfaces): ok, refused by the domain, bad input.
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2

STDIN = "-"
REQUEST_BODY = "<request body>"
"""How the API names what it was sent; the command line puts the file name back in its messages."""
ACTIONS = ("release", "start", "pause", "resume", "complete", "decommission-in-doubt", "close", "cancel")
CREATES_STORE = ("create", "import-serials")
"""Commands that may open a state directory that has no database yet (a new line's first batch)."""
KINDS = ("auto", "yaml", "json", "text")
_KIND_OF_SUFFIX = {".json": "json", ".yaml": "yaml", ".yml": "yaml", ".txt": "text"}
_ANY_ADDRESS = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}  # noqa: S104 - mapped to loopback


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `lineside batch` and its commands on the top-level subparsers."""
    common = argparse.ArgumentParser(add_help=False)
    where = common.add_argument_group("where the batches are (one of -c, --state-dir with --line, --api)")
    where.add_argument("-c", "--config", type=Path, metavar="FILE",
                       help="line configuration: state directory, line id, catalog and the daemon's API address")
    where.add_argument("--state-dir", type=Path, metavar="DIR", help="state directory (instead of, or over, -c)")
    where.add_argument("--line", metavar="ID", help="line id, with --state-dir")
    where.add_argument("--products", type=Path, metavar="DIR", help="directory of products (default: none, or -c's)")
    where.add_argument("--markets", type=Path, metavar="DIR",
                       help="directory of market rule packs (default: the packs shipped with Lineside, or -c's)")
    where.add_argument("--api", metavar="URL", help="talk to a running daemon's API, like http://127.0.0.1:8470")
    common.add_argument("--operator", metavar="NAME",
                        help="offline: who does this, recorded with the change (default: $USER); through the API the "
                             "logged-in user is recorded")
    common.add_argument("--user", metavar="NAME",
                        help="through the daemon's API: log in as NAME for this command (default: the session of "
                             "`lineside ctl login`)")
    common.add_argument("--json", action="store_true", help="print JSON")

    batch = sub.add_parser("batch", help="work orders, batch life cycle and the serial pool")
    commands = batch.add_subparsers(title="batch commands", dest="batch_command", required=True, metavar="COMMAND")
    create = commands.add_parser("create", parents=[common], help="create a batch from a work order (YAML or JSON)")
    create.add_argument("file", metavar="FILE", help="the work order file, or - for standard input")
    for action, text in (
        ("release", "allocate the batch's serials by its market's rules"),
        ("start", "put a released batch on the line (or resume a paused one)"),
        ("pause", "pause the running batch"),
        ("resume", "resume a paused batch"),
        ("complete", "stop drawing serials; serials still in flight become in doubt"),
        ("close", "reconcile and close; refused (exit 1) while it does not balance"),
    ):
        command = commands.add_parser(action, parents=[common], help=text)
        command.add_argument("ref", metavar="REF", help="batch id or work order")
    doubt = commands.add_parser("decommission-in-doubt", parents=[common],
                                help="decommission the batch's in-doubt serials once their units are off the line")
    doubt.add_argument("ref", metavar="REF", help="batch id or work order")
    doubt.add_argument("--reason", required=True, help="what happened to their units, recorded with each serial")
    cancel = commands.add_parser("cancel", parents=[common], help="cancel a batch that never ran")
    cancel.add_argument("ref", metavar="REF", help="batch id or work order")
    cancel.add_argument("--reason", required=True, help="why, recorded with the cancellation")
    status = commands.add_parser("status", parents=[common], help="counts by state and the reconciliation")
    status.add_argument("ref", metavar="REF", help="batch id or work order")
    commands.add_parser("list", parents=[common], help="every batch of the line, newest first")
    report = commands.add_parser("report", parents=[common], help="the reconciliation report")
    report.add_argument("ref", metavar="REF", help="batch id or work order")
    report.add_argument("--html", metavar="FILE", help="write it as an HTML page to FILE (- for standard output)")
    imports = commands.add_parser("import-serials", parents=[common], help="add serials or complete codes to the pool")
    imports.add_argument("file", metavar="FILE", help="SNRequest-shaped YAML or JSON, or text; - for standard input")
    imports.add_argument("--product", required=True, metavar="ID", help="the product the serials are for")
    imports.add_argument("--kind", choices=KINDS, default="auto", help="file format (default: by suffix, else content)")
    batch.set_defaults(handler=main)
    # `lineside ctl` is registered beside `lineside batch`: both talk to the running daemon's API.
    from edge import ctl  # noqa: PLC0415 - only argparse at load time

    ctl.add_parser(sub)


class _FailedError(Exception):
    """A command that cannot be done: its exit code and the {"error", "issues"} body to show."""

    def __init__(self, code: int, error: str, issues: list[str] | None = None) -> None:
        super().__init__(error)
        self.code = code
        self.body: dict[str, Any] = {"error": error, "issues": issues or []}


def _exit_code(status: int) -> int:
    """Map an HTTP status to the exit code: 409 (refused) and 5xx fail the thing asked, other 4xx are bad input."""
    return EXIT_BAD_INPUT if 400 <= status < 500 and status != 409 else EXIT_FAILED


def main(args: argparse.Namespace) -> int:
    """Run one `lineside batch` command; return the exit code."""
    _log_to_stderr()
    try:
        return _main(args)
    except _FailedError as failed:
        _show_failure(args, failed.body)
        return failed.code


def _main(args: argparse.Namespace) -> int:
    if args.api:
        return asyncio.run(_remote(args, args.api))
    config = _load_config(args.config) if args.config else None
    state_dir, line = _state_dir_and_line(args, config)
    from edge.errors import StoreError, StoreLockedError  # noqa: PLC0415 - keeps `lineside --help` fast
    from edge.store import Store  # noqa: PLC0415
    from edge.store.store import DB_NAME  # noqa: PLC0415

    db = state_dir / DB_NAME
    if args.batch_command not in CREATES_STORE and not db.is_file():
        raise _FailedError(EXIT_BAD_INPUT, f"no Lineside database at {db}: check --state-dir or -c FILE")
    try:
        store = Store.open(state_dir)
    except StoreLockedError as err:
        if config is None:
            raise _FailedError(
                EXIT_BAD_INPUT,
                f"the daemon holds the state directory {state_dir} ({err}); "
                "pass --api URL or -c FILE (its line configuration) to go through its API",
            ) from err
        url = _api_of(config, args.config)
        print(f"the daemon holds the state directory {state_dir}; using its API at {url}", file=sys.stderr)
        return asyncio.run(_remote(args, url))
    except StoreError as err:
        raise _FailedError(EXIT_FAILED, str(err)) from err
    try:
        catalog = _load_catalog(args, config)
        return asyncio.run(_local(args, store, line, catalog))
    finally:
        store.close()


# -- where the batches are ----------------------------------------------------------------------


def _load_config(path: Path) -> LineConfig:
    from edge.config import load_config  # noqa: PLC0415 - keeps `lineside --help` fast
    from edge.errors import ConfigError  # noqa: PLC0415

    try:
        return load_config(path)
    except ConfigError as err:
        issues = [str(issue) for issue in err.issues]
        raise _FailedError(EXIT_BAD_INPUT, f"{path}: the line configuration is not valid", issues) from err


def _state_dir_and_line(args: argparse.Namespace, config: LineConfig | None) -> tuple[Path, str]:
    state_dir = args.state_dir or (config.storage.state_dir if config else None)
    line = args.line or (config.line.id if config else None)
    if state_dir is None:
        raise _FailedError(EXIT_BAD_INPUT, "say where the batches are: -c FILE (the line configuration), "
                                           "--state-dir DIR with --line ID, or --api URL (a running daemon)")
    if line is None:
        raise _FailedError(EXIT_BAD_INPUT, "--state-dir needs --line ID (the line the batches are for)")
    return Path(state_dir), str(line)


def _load_catalog(args: argparse.Namespace, config: LineConfig | None) -> Catalog:
    from edge.config.models import shipped_markets_dir  # noqa: PLC0415 - keeps `lineside --help` fast
    from edge.errors import ConfigError  # noqa: PLC0415
    from edge.markets.load import load_markets  # noqa: PLC0415
    from edge.products.load import Catalog, load_catalog, load_products  # noqa: PLC0415

    try:
        if config is not None:
            chosen: CatalogConfig = config.catalog
            overrides = {key: getattr(args, key) for key in ("products", "markets") if getattr(args, key)}
            return load_catalog(chosen.model_copy(update=overrides) if overrides else chosen)
        markets = load_markets(args.markets or shipped_markets_dir())
        return Catalog(markets, load_products(args.products, markets) if args.products else {})
    except ConfigError as err:
        issues = [str(issue) for issue in err.issues]
        raise _FailedError(EXIT_BAD_INPUT, "the catalog (products and market packs) is not valid", issues) from err


def _api_of(config: LineConfig, source: Path) -> str:
    """Return the URL of the daemon's API from its line configuration."""
    if config.api.port == 0:
        raise _FailedError(EXIT_BAD_INPUT, f"{source} sets api.port to 0 (any free port), so the daemon's API "
                                           "cannot be found from it: pass --api URL")
    host = _ANY_ADDRESS.get(config.api.host, config.api.host)
    host = f"[{host}]" if ":" in host else host
    return f"http://{host}:{config.api.port}"


def _operator(args: argparse.Namespace) -> str | None:
    return str(args.operator or os.environ.get("USER") or "") or None


# -- backends: this process, or the daemon's API ------------------------------------------------


class _Backend(Protocol):
    async def create(self, text: str, source: str, operator: str | None) -> dict[str, Any]: ...
    async def action(self, ref: str, action: str, operator: str | None, reason: str | None) -> dict[str, Any]: ...
    async def status(self, ref: str) -> dict[str, Any]: ...
    async def summaries(self) -> list[dict[str, Any]]: ...
    async def report_html(self, ref: str) -> str: ...
    async def import_serials(
        self, data: bytes, source: str, product: str, kind: str, operator: str | None
    ) -> dict[str, Any]: ...


class _Local:
    """The state directory opened here, through the batch service."""

    def __init__(self, batches: BatchService) -> None:
        self.batches = batches

    async def create(self, text: str, source: str, operator: str | None) -> dict[str, Any]:
        from edge.plant.acks import create_acknowledged  # noqa: PLC0415 - keeps `lineside --help` fast

        batch = await create_acknowledged(self.batches, text, source, operator)  # the MES hears either way
        return await self.batches.status(batch.id)

    async def action(self, ref: str, action: str, operator: str | None, reason: str | None) -> dict[str, Any]:
        from edge.api.actions import perform  # noqa: PLC0415 - keeps `lineside --help` fast

        return await perform(self.batches, ref, action, operator=operator, reason=reason)

    async def status(self, ref: str) -> dict[str, Any]:
        return await self.batches.status(ref)

    async def summaries(self) -> list[dict[str, Any]]:
        return await self.batches.summaries()

    async def report_html(self, ref: str) -> str:
        from edge.serials.report import render_html  # noqa: PLC0415 - keeps `lineside --help` fast

        return render_html(await self.batches.status(ref))

    async def import_serials(
        self, data: bytes, source: str, product: str, kind: str, operator: str | None
    ) -> dict[str, Any]:
        from edge.serials.imports import Kind  # noqa: PLC0415 - keeps `lineside --help` fast

        return await self.batches.import_serials(data, source, product=product, kind=cast(Kind, kind),
                                                 operator=operator)


class _Remote:
    """A running daemon, through its HTTP API."""

    def __init__(self, client: ApiClient) -> None:
        self.client = client

    async def _call(
        self,
        method: str,
        where: str,
        *,
        source: str | None = None,
        expect: int = 200,
        params: dict[str, str] | None = None,
        json_body: object = None,
        data: bytes | None = None,
    ) -> Any:  # noqa: ANN401 - the decoded JSON answer
        status, body = await self.client.request(method, where, params=params, json_body=json_body, data=data)
        if status != expect:
            if not isinstance(body, dict) or "error" not in body:
                body = {"error": f"the API answered {status}: {str(body)[:500]}", "issues": []}
            error, issues = str(body["error"]), [str(issue) for issue in body.get("issues", [])]
            if source is not None:
                error = error.replace(REQUEST_BODY, source)
                issues = [issue.replace(REQUEST_BODY, source) for issue in issues]
            raise _FailedError(_exit_code(status), error, issues)
        return body

    async def create(self, text: str, source: str, operator: str | None) -> dict[str, Any]:
        from edge.api.client import path  # noqa: PLC0415 - keeps `lineside --help` fast

        params = {"operator": operator} if operator else None
        result: dict[str, Any] = await self._call(
            "POST", path("work-orders"), source=source, expect=201, data=text.encode(), params=params
        )
        return result

    async def action(self, ref: str, action: str, operator: str | None, reason: str | None) -> dict[str, Any]:
        from edge.api.client import path  # noqa: PLC0415

        body = {key: value for key, value in (("operator", operator), ("reason", reason)) if value}
        result: dict[str, Any] = await self._call("POST", path("batches", ref, action), json_body=body)
        return result

    async def status(self, ref: str) -> dict[str, Any]:
        from edge.api.client import path  # noqa: PLC0415

        result: dict[str, Any] = await self._call("GET", path("batches", ref))
        return result

    async def summaries(self) -> list[dict[str, Any]]:
        from edge.api.client import path  # noqa: PLC0415

        result: list[dict[str, Any]] = (await self._call("GET", path("batches")))["batches"]
        return result

    async def report_html(self, ref: str) -> str:
        from edge.api.client import path  # noqa: PLC0415

        return str(await self._call("GET", path("batches", ref, "report.html")))

    async def import_serials(
        self, data: bytes, source: str, product: str, kind: str, operator: str | None
    ) -> dict[str, Any]:
        from edge.api.client import path  # noqa: PLC0415

        if kind == "auto":  # the API sees no file name: tell it what the suffix says
            kind = _KIND_OF_SUFFIX.get(Path(source).suffix.lower(), "auto")
        params = {"product": product, "kind": kind, **({"operator": operator} if operator else {})}
        result: dict[str, Any] = await self._call(
            "POST", path("serials"), source=source, expect=201, data=data, params=params
        )
        return result


async def _local(args: argparse.Namespace, store: Store, line: str, catalog: Catalog) -> int:
    from edge.control.audit import AuditTrail  # noqa: PLC0415
    from edge.serials.batches import BatchService  # noqa: PLC0415 - keeps `lineside --help` fast
    from edge.serials.ledger import SerialLedger  # noqa: PLC0415

    service = BatchService(SerialLedger(store, line_id=line), catalog)
    service.audit = AuditTrail(store).record  # offline changes are in the same audit trail as the daemon's
    backend = _Local(service)
    async with asyncio.TaskGroup() as group:
        group.create_task(store.run(), name="store-writer")
        try:
            return await _dispatch(args, backend)
        finally:
            await store.aclose()


async def _remote(args: argparse.Namespace, url: str) -> int:
    from edge.api.client import (  # noqa: PLC0415 - keeps `lineside --help` fast
        ApiClient,
        ApiLoginError,
        ApiUnreachableError,
    )

    # Through the API the logged-in user is recorded: send an operator only when one was named on purpose.
    args.operator = args.operator or None
    try:
        async with ApiClient(url, user=args.user) as client:
            return await _dispatch(args, _Remote(client))
    except (ApiLoginError, ApiUnreachableError) as err:
        raise _FailedError(EXIT_BAD_INPUT, str(err)) from err


async def _dispatch(args: argparse.Namespace, backend: _Backend) -> int:
    """Run the command on backend and print its outcome; return the exit code."""
    from edge.api.client import ApiUnreachableError  # noqa: PLC0415 - keeps `lineside --help` fast
    from edge.api.errors import error_body, http_status  # noqa: PLC0415

    try:
        await _command(args, backend)
    except _FailedError as failed:
        _show_failure(args, failed.body)
        return failed.code
    except ApiUnreachableError as err:
        _show_failure(args, {"error": str(err), "issues": []})
        return EXIT_BAD_INPUT
    except Exception as err:
        status = http_status(err)
        if status is None:
            raise
        _show_failure(args, error_body(err))
        return _exit_code(status)
    return EXIT_OK


async def _command(args: argparse.Namespace, backend: _Backend) -> None:
    command = args.batch_command
    operator = _operator(args) if isinstance(backend, _Local) else args.operator
    if command == "create":
        text, source = _read_work_order(args.file)
        _emit(args, await backend.create(text, source, operator), _print_created)
    elif command in ACTIONS:
        result = await backend.action(args.ref, command, operator, getattr(args, "reason", None))
        _emit(args, result, _print_status)
    elif command == "status":
        _emit(args, await backend.status(args.ref), _print_status)
    elif command == "list":
        _emit(args, await backend.summaries(), _print_list)
    elif command == "report":
        if args.html:
            _write_html(args.html, await backend.report_html(args.ref))
        else:
            _emit(args, await backend.status(args.ref), _print_status)
    elif command == "import-serials":
        data, source = _read_bytes(args.file)
        result = await backend.import_serials(data, source, args.product, args.kind, operator)
        _emit(args, result, _print_imported)
    else:  # argparse only lets the commands above through
        raise _FailedError(EXIT_BAD_INPUT, f"unknown batch command {command}")


# -- input and output ---------------------------------------------------------------------------


def _read_bytes(name: str) -> tuple[bytes, str]:
    if name == STDIN:
        return sys.stdin.buffer.read(), "<stdin>"
    try:
        return Path(name).read_bytes(), name
    except OSError as err:
        raise _FailedError(EXIT_BAD_INPUT, f"{name}: cannot read: {err.strerror or err}") from err


def _read_work_order(name: str) -> tuple[str, str]:
    from edge.config.load import read_config_text  # noqa: PLC0415 - keeps `lineside --help` fast
    from edge.errors import ConfigError  # noqa: PLC0415

    if name == STDIN:
        data, source = _read_bytes(name)
        try:
            return data.decode("utf-8"), source
        except UnicodeDecodeError as err:
            raise _FailedError(EXIT_BAD_INPUT, f"{source}: not UTF-8 text (byte {err.start})") from err
    try:
        return read_config_text(Path(name)), name
    except ConfigError as err:
        issues = [str(issue) for issue in err.issues]
        raise _FailedError(EXIT_BAD_INPUT, issues[0] if issues else f"{name}: cannot read", issues) from err


def _write_html(name: str, html: str) -> None:
    if name == STDIN:
        sys.stdout.write(html)
        return
    try:
        Path(name).write_text(html, encoding="utf-8")
    except OSError as err:
        raise _FailedError(EXIT_BAD_INPUT, f"{name}: cannot write: {err.strerror or err}") from err
    print(f"wrote {name}", file=sys.stderr)


def _emit(args: argparse.Namespace, data: T, as_text: Callable[[T], None]) -> None:
    if args.json:
        print(json.dumps(data, indent=2, ensure_ascii=False))
    else:
        as_text(data)


def _show_failure(args: argparse.Namespace, body: dict[str, Any]) -> None:
    if args.json:
        print(json.dumps(body, indent=2, ensure_ascii=False))
    for line in body.get("issues") or [body["error"]]:
        print(line, file=sys.stderr)


def _print_created(status: dict[str, Any]) -> None:
    batch = status["batch"]
    print(f"created batch {batch['id']}: work order {batch['work_order']}, product {batch['product']}, "
          f"lot {batch['lot']}, quantity {batch['quantity']:,} (market {batch['market']}, "
          f"serials: {batch['serial_source']})")
    print(f"next: lineside batch release {batch['work_order']}")


def _nonzero(counts: dict[str, int]) -> str:
    return ", ".join(f"{state} {count:,}" for state, count in counts.items() if count) or "none"


def _print_status(report: dict[str, Any]) -> None:
    batch, state = report["batch"], report["batch"]["state"]
    print(f"batch {batch['id']}  work order {batch['work_order']}  lot {batch['lot']}  state {state}")
    print(f"  product {batch['product']} (GTIN {batch['gtin']}), market {batch['market']}, "
          f"expiry {batch['expiry']}, quantity {batch['quantity']:,}")
    print(f"  serials by state: {_nonzero(report['counts'])}")
    print(f"  {report['equation']}")
    if state == "closed":
        who = f"by {report['closed_by']}" if report.get("closed_by") else "(operator not recorded)"
        print(f"  closed {report.get('closed_at', '')} {who}: balanced")
        if report.get("returned_to_pool"):
            print(f"  {report['returned_to_pool']:,} returned serials went back to the pool")
    elif state == "cancelled":
        print("  cancelled: its serials were returned")
    elif report["blocking"]:
        print("  cannot close yet:")
        for item in report["blocking"]:
            print(f"    - {item}")
    elif state == "completing":
        left = report["counts"].get("allocated", 0)
        print("  ready to close" + (f": {left:,} never-printed serials will be returned" if left else ""))
    else:
        print(f"  next: {_NEXT_STEP.get(state, 'complete it, then close it to reconcile')}")


_NEXT_STEP = {"created": "release it (allocates its serials)", "released": "start it (puts it on the line)"}


def _print_list(summaries: list[dict[str, Any]]) -> None:
    if not summaries:
        print("no batches")
        return
    head = ("ID", "WORK ORDER", "PRODUCT", "LOT", "STATE", "QUANTITY", "SERIALS")
    rows = [
        (str(s["id"]), s["work_order"], s["product"], s["lot"], s["state"], f"{s['quantity']:,}", _nonzero(s["counts"]))
        for s in summaries
    ]
    widths = [max(len(row[i]) for row in [head, *rows]) for i in range(len(head) - 1)]
    for row in [head, *rows]:
        print("  ".join([*(cell.ljust(width) for cell, width in zip(row, widths, strict=False)), row[-1]]))


def _print_imported(result: dict[str, Any]) -> None:
    available = result["available"]
    print(f"imported {result['imported']:,} for GTIN {result['gtin']} (product {result['product']}); the pool now "
          f"holds {available['serials']:,} serials and {available['codes']:,} complete codes")


@dataclass(frozen=True, slots=True)
class _Stderr:
    """Standard error as it is when written to, so a replaced sys.stderr (a test's capture) is honoured."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()

    def isatty(self) -> bool:
        return sys.stderr.isatty()


def _log_to_stderr() -> None:
    """Send warnings (pool low, serials in doubt) to standard error; standard output is the command's answer."""
    from edge.log import configure  # noqa: PLC0415 - keeps `lineside --help` fast

    configure(level="warning", fmt="console", stream=cast(TextIO, _Stderr()))
