r"""`lineside aggregation ...`: containers, their contents, rework and the aggregation log, through the daemon's API.

Aggregation changes while the line runs, so this always goes through the running daemon's HTTP API (given
as --api URL, or found from its line configuration with -c FILE); it never opens the state directory.
Containers are named by SSCC, a scan of the label, or #<id>; units by a scan or HRI like
(01)04012345000016(21)ABC, with GS typed as \x1d or {GS} where a code needs it. Exit codes as for
`lineside batch`: 0 ok, 1 refused by the aggregation rules or the daemon failed, 2 bad input or no daemon.
"""

# ruff: noqa: T201 - a command line prints its results

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edge.batch_cli import (
    EXIT_BAD_INPUT,
    EXIT_OK,
    _api_of,
    _emit,
    _exit_code,
    _FailedError,
    _load_config,
    _show_failure,
)

if TYPE_CHECKING:
    from edge.api.client import ApiClient

LEVELS = ("bundle", "case", "pallet")
STATES = ("open", "closed", "destroyed")
CHANGES = ("unpack", "replace", "destroy", "destroy-unit", "void-label", "close")
"""Commands that change aggregation: each needs --reason; the daemon records the logged-in user with it."""


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `lineside aggregation` and its commands on the top-level subparsers."""
    common = argparse.ArgumentParser(add_help=False)
    where = common.add_argument_group("where the daemon is (one of --api, -c)")
    where.add_argument("--api", metavar="URL", help="the running daemon's API, like http://127.0.0.1:8470")
    where.add_argument("-c", "--config", type=Path, metavar="FILE", help="the line configuration naming its API")
    common.add_argument("--json", action="store_true", help="print JSON")
    common.add_argument("--user", metavar="NAME", help="log in as NAME for this command (default: the session kept "
                        "by `lineside ctl login`)")
    change = argparse.ArgumentParser(add_help=False, parents=[common])
    change.add_argument("--operator", metavar="NAME", help="who does this (default and only allowed value: the "
                        "logged-in user); kept in the audit trail")
    change.add_argument("--reason", required=True, help="why, kept in the audit trail")

    agg = sub.add_parser("aggregation", help="containers, their contents and rework (through the daemon)")
    commands = agg.add_subparsers(title="aggregation commands", dest="aggregation_command", required=True,
                                  metavar="COMMAND")
    listing = commands.add_parser("list", parents=[common], help="a batch's containers (default: the running batch)")
    listing.add_argument("--batch", metavar="REF", help="batch id or work order")
    listing.add_argument("--level", choices=LEVELS, help="only this level")
    listing.add_argument("--state", choices=STATES, help="only containers in this state")
    show = commands.add_parser("show", parents=[common], help="one container: its units, containers and parent")
    show.add_argument("container", metavar="ID", help="SSCC, a scan of the label, or #<id>")
    unpack = commands.add_parser("unpack", parents=[change],
                                 help="take units or containers out (none named: everything)")
    unpack.add_argument("container", metavar="ID", help="SSCC, a scan of the label, or #<id>")
    unpack.add_argument("--unit", action="append", metavar="CODE", help="a unit to take out (repeat for more)")
    unpack.add_argument("--container", dest="children", action="append", metavar="SSCC",
                        help="a container to take out (repeat for more)")
    replace = commands.add_parser("replace", parents=[change], help="swap a packed unit for another")
    replace.add_argument("container", metavar="ID", help="SSCC, a scan of the label, or #<id>")
    replace.add_argument("old", metavar="OLD", help="the unit taken out (scan or HRI)")
    replace.add_argument("new", metavar="NEW", help="the commissioned, unpacked unit put in (scan or HRI)")
    destroy = commands.add_parser("destroy", parents=[change], help="destroy a container and everything in it")
    destroy.add_argument("container", metavar="ID", help="SSCC, a scan of the label, or #<id>")
    destroy_unit = commands.add_parser("destroy-unit", parents=[change],
                                       help="destroy one unit (taken out of its container first)")
    destroy_unit.add_argument("unit", metavar="CODE", help="the unit (scan or HRI)")
    void = commands.add_parser("void-label", parents=[change],
                               help="void a container's SSCC for good and give it a new one")
    void.add_argument("container", metavar="ID", help="SSCC, a scan of the label, or #<id>")
    close = commands.add_parser("close", parents=[change], help="close a container short of its capacity")
    close.add_argument("container", metavar="ID", help="SSCC, a scan of the label, or #<id>")
    events = commands.add_parser("events", parents=[common], help="a batch's aggregation log (the audit trail)")
    events.add_argument("batch", metavar="BATCH", help="batch id or work order")
    events.add_argument("--after", type=int, default=0, metavar="N", help="only events after id N (default 0)")
    events.add_argument("--limit", type=int, metavar="N", help="at most N events (default: the API's page)")
    agg.set_defaults(handler=main)


def main(args: argparse.Namespace) -> int:
    """Run one `lineside aggregation` command against the daemon's API; return the exit code."""
    try:
        return asyncio.run(_remote(args, _api_url(args)))
    except _FailedError as failed:
        _show_failure(args, failed.body)
        return failed.code


def _api_url(args: argparse.Namespace) -> str:
    if args.api:
        return str(args.api)
    if args.config:
        return _api_of(_load_config(args.config), args.config)
    raise _FailedError(EXIT_BAD_INPUT, "say where the daemon is: --api URL (like http://127.0.0.1:8470) or -c FILE "
                                       "(its line configuration); aggregation changes only through the daemon")


async def _remote(args: argparse.Namespace, url: str) -> int:
    from edge.api.client import ApiClient, ApiUnreachableError  # noqa: PLC0415 - keeps `lineside --help` fast

    async with ApiClient(url, user=args.user) as client:
        try:
            await _command(args, client)
        except ApiUnreachableError as err:
            raise _FailedError(EXIT_BAD_INPUT, str(err)) from err
    return EXIT_OK


async def _command(args: argparse.Namespace, client: ApiClient) -> None:
    command = args.aggregation_command
    if command == "list":
        params = {key: getattr(args, key) for key in ("batch", "level", "state") if getattr(args, key)}
        _emit(args, await _call(client, "GET", ("containers",), params=params), _print_list)
    elif command == "show":
        _emit(args, await _call(client, "GET", ("containers", args.container)), _print_view)
    elif command == "events":
        params = {"after": str(args.after), **({"limit": str(args.limit)} if args.limit is not None else {})}
        _emit(args, await _call(client, "GET", ("batches", args.batch, "events"), params=params), _print_events)
    elif command == "destroy-unit":
        body = {"unit": _code(args.unit), **_rework(args)}
        _emit(args, await _call(client, "POST", ("units", "destroy"), body=body), _print_destroyed)
    elif command in CHANGES:
        body = _rework(args)
        if command == "unpack":
            body |= {key: [_code(code) for code in codes] for key, codes in (("units", args.unit),
                                                                             ("containers", args.children)) if codes}
        elif command == "replace":
            body |= {"old": _code(args.old), "new": _code(args.new)}
        answer = await _call(client, "POST", ("containers", args.container, command), body=body)
        _emit(args, answer, _print_destroyed if command == "destroy" else _print_view)
    else:  # argparse only lets the commands above through
        raise _FailedError(EXIT_BAD_INPUT, f"unknown aggregation command {command}")


async def _call(
    client: ApiClient,
    method: str,
    parts: tuple[str, ...],
    *,
    params: dict[str, str] | None = None,
    body: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Ask the API under /aggregation; return its JSON answer, or raise _FailedError with its problem."""
    from edge.api.client import path  # noqa: PLC0415 - keeps `lineside --help` fast

    status, answer = await client.request(method, path("aggregation", *parts), params=params, json_body=body)
    if status != 200 or not isinstance(answer, dict):
        if not isinstance(answer, dict) or "error" not in answer:
            answer = {"error": f"the API answered {status}: {str(answer)[:500]}", "issues": []}
        raise _FailedError(_exit_code(status), str(answer["error"]), [str(item) for item in answer.get("issues", [])])
    return answer


def _rework(args: argparse.Namespace) -> dict[str, Any]:
    body = {"reason": args.reason}
    if args.operator:
        body["operator"] = args.operator
    return body


def _code(typed: str) -> str:
    r"""Return a code as typed on a command line with GS put back (typed as \x1d, {GS} or <GS>)."""
    from edge.gs1.report import unescape  # noqa: PLC0415 - keeps `lineside --help` fast

    return unescape(typed.strip())


# -- output -------------------------------------------------------------------------------------


def _describe(box: dict[str, Any]) -> str:
    """Return one line about a container, like: case 040123450000000017 (#3) closed, 10 of 10."""
    text = f"{box['level']} {box['identifier']} (#{box['id']}) {box['state']}, {box['count']} of {box['capacity']}"
    if box.get("partial_reason"):
        text += f", closed short by {box.get('closed_by') or 'an operator'}: {box['partial_reason']}"
    return text


def _print_view(view: dict[str, Any]) -> None:
    if view.get("voided"):
        print(f"voided SSCC {view['voided']} (never reused); new SSCC {view['sscc']}")
    box = view["container"]
    print(_describe(box))
    if view.get("note"):
        print(f"  {view['note']}")
    parent = view.get("parent")
    print(f"  in {parent['level']} {parent['identifier']} (#{parent['id']})" if parent else "  in no container")
    for unit in view.get("units", []):
        print(f"  unit #{unit['serial_id']} {unit['hri']} {unit['state']}")
    for child in view.get("containers", []):
        print(f"  {_describe(child)}")


def _print_destroyed(answer: dict[str, Any]) -> None:
    destroyed = answer["destroyed"]
    units, boxes = destroyed["units"], destroyed["containers"]
    if "container" in answer:
        box = answer["container"]
        print(f"destroyed {box['level']} {box['identifier']} (#{box['id']}): {len(boxes)} container(s), "
              f"{len(units)} unit(s)")
    for unit in units:
        print(f"  destroyed unit #{unit['serial_id']} {unit['hri']}")


def _print_list(answer: dict[str, Any]) -> None:
    batch, rows = answer["batch"], answer["containers"]
    print(f"batch {batch['id']}  work order {batch['work_order']}  lot {batch['lot']}  state {batch['state']}")
    if not rows:
        print("no containers")
        return
    head = ("ID", "LEVEL", "IDENTIFIER", "STATE", "COUNT", "IN", "NOTE")
    table = [
        (f"#{row['id']}", row["level"], row["identifier"], row["state"], f"{row['count']}/{row['capacity']}",
         f"#{row['parent']}" if row["parent"] is not None else "-", row["partial_reason"] or "")
        for row in rows
    ]
    widths = [max(len(line[i]) for line in [head, *table]) for i in range(len(head) - 1)]
    for line in [head, *table]:
        print("  ".join([*(cell.ljust(width) for cell, width in zip(line, widths, strict=False)), line[-1]]).rstrip())


def _print_events(answer: dict[str, Any]) -> None:
    batch, events = answer["batch"], answer["events"]
    print(f"batch {batch['id']}  work order {batch['work_order']}: {len(events)} aggregation event(s)")
    for event in events:
        what = event["identifier"] or ""
        if event["new_identifier"]:
            what += f" -> {event['new_identifier']}"
        children = [f"unit #{i}" for i in event["serial_ids"]] + [f"#{i}" for i in event["container_ids"]]
        shown = ", ".join(children[:5]) + (f" and {len(children) - 5} more" if len(children) > 5 else "")
        who = " ".join(filter(None, (event["operator"] and f"by {event['operator']}",
                                     event["station"] and f"at {event['station']}")))
        print("  ".join(filter(None, (f"{event['id']:>6}", event["at"], f"{event['action']:<10}", what, shown, who,
                                      event["reason"] and f"({event['reason']})"))))
    if answer.get("more"):
        print(f"more: lineside aggregation events {batch['id']} --after {answer['next_after']}")
