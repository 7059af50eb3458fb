"""`lineside ctl ...`: the line's PackML state, its commands, unit mode and alarms, through the running daemon's API.

Every command needs a session. `lineside ctl login --user NAME` asks for the password once and keeps the session's
token in a file only you can read ($XDG_RUNTIME_DIR/lineside/sessions.json, else ~/.config/lineside/); later
commands use it until it idles out on the daemon (15 minutes by default) or `lineside ctl logout`. Or give
``--user NAME`` on any command: it logs in for that command alone (password asked on the terminal, or one line of
standard input when that is not a terminal) and logs out after. Only light modules are imported at load time, so
`lineside --help` stays fast.
"""

# ruff: noqa: T201 - a command line prints its results

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from edge.api.client import ApiClient

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2

COMMANDS = ("start", "stop", "hold", "unhold", "suspend", "unsuspend", "reset", "abort", "clear", "complete")
"""The PackML commands, as POST /api/v1/control/commands/{command} names them."""
MODES = ("production", "maintenance", "manual")
DESCRIPTION = (
    "The line's PackML state and commands through the running daemon's API. Log in once with `lineside ctl login "
    "--user NAME`: the session's token is kept in a file only you can read ($XDG_RUNTIME_DIR/lineside/sessions.json, "
    "else ~/.config/lineside/) until it idles out on the daemon or `lineside ctl logout`. Or give --user NAME on "
    "any command to log in for that command only (the password is asked each time)."
)
_ANY_ADDRESS = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}  # noqa: S104 - mapped to loopback


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `lineside ctl` and its commands on the top-level subparsers."""
    common = argparse.ArgumentParser(add_help=False)
    where = common.add_argument_group("where the daemon is (one of -c, --api)")
    where.add_argument("-c", "--config", type=Path, metavar="FILE",
                       help="line configuration (the daemon's API address)")
    where.add_argument("--api", metavar="URL", help="the daemon's API, like http://127.0.0.1:8470")
    common.add_argument("--user", metavar="NAME",
                        help="log in as NAME for this command only (default: the session of `lineside ctl login`)")
    common.add_argument("--json", action="store_true", help="print JSON")

    ctl = sub.add_parser("ctl", help="the line's state and commands through the running daemon (start, hold, ...)",
                         description=DESCRIPTION)
    commands = ctl.add_subparsers(title="ctl commands", dest="ctl_command", required=True, metavar="COMMAND")
    commands.add_parser("login", parents=[common], help="log in and keep the session for later commands")
    commands.add_parser("logout", parents=[common], help="end the kept session")
    commands.add_parser("status", parents=[common], help="state, mode, batch, counters, alarms and devices")
    for name in COMMANDS:
        command = commands.add_parser(name, parents=[common], help=f"PackML {name.capitalize()}")
        command.add_argument("--reason", metavar="TEXT", help="why, recorded in the audit trail")
    mode = commands.add_parser("mode", parents=[common], help="change the unit mode (in Stopped, Idle or Aborted)")
    mode.add_argument("mode", choices=MODES)
    ack = commands.add_parser("ack", parents=[common], help="acknowledge an alarm")
    ack.add_argument("alarm", type=int, metavar="ID", help="the alarm's number (lineside ctl status lists them)")
    ctl.set_defaults(handler=main)


class _FailedError(Exception):
    def __init__(self, code: int, error: str) -> None:
        super().__init__(error)
        self.code = code


def main(args: argparse.Namespace) -> int:
    """Run one `lineside ctl` command; return the exit code."""
    try:
        return asyncio.run(_main(args))
    except _FailedError as failed:
        _fail(args, str(failed))
        return failed.code


async def _main(args: argparse.Namespace) -> int:
    from edge.api.client import ApiClient, ApiLoginError, ApiUnreachableError  # noqa: PLC0415

    base = _base(args)
    command = args.ctl_command
    try:
        if command == "login":
            return await _login(args, base)
        if command == "logout":
            return await _logout(base)
        async with ApiClient(base, user=args.user) as client:
            await _command(args, client)
    except (ApiUnreachableError, ApiLoginError) as err:
        raise _FailedError(EXIT_BAD_INPUT, str(err)) from err
    return EXIT_OK


def _base(args: argparse.Namespace) -> str:
    if args.api:
        return str(args.api)
    if args.config is None:
        raise _FailedError(EXIT_BAD_INPUT, "say where the daemon is: --api URL (like http://127.0.0.1:8470) or -c FILE")
    from edge.api.client import base_url  # noqa: PLC0415 - keeps `lineside --help` fast
    from edge.config import load_config  # noqa: PLC0415
    from edge.errors import ConfigError  # noqa: PLC0415

    try:
        config = load_config(args.config)
    except ConfigError as err:
        issues = "\n".join(str(issue) for issue in err.issues)
        raise _FailedError(EXIT_BAD_INPUT, f"{args.config}: the line configuration is not valid\n{issues}") from err
    if config.api.port == 0:
        raise _FailedError(EXIT_BAD_INPUT, f"{args.config} sets api.port to 0 (any free port): pass --api URL")
    host = _ANY_ADDRESS.get(config.api.host, config.api.host)
    return base_url(f"http://{f'[{host}]' if ':' in host else host}:{config.api.port}")


async def _login(args: argparse.Namespace, base: str) -> int:
    from edge.api.client import ApiClient, SessionStore  # noqa: PLC0415 - keeps `lineside --help` fast

    if args.user is None:
        raise _FailedError(EXIT_BAD_INPUT, "say who logs in: lineside ctl login --user NAME")
    store = SessionStore()
    async with ApiClient(base, token="") as client:
        session = await client.login(args.user)
    store.put(base, session)
    if args.json:
        print(json.dumps({key: session[key] for key in ("name", "role", "expires_at", "permissions")}, indent=2))
    else:
        print(f"logged in as {session['name']} ({session['role']}) at {base}; the session ends after "
              f"{session['idle_minutes']} idle minutes (kept in {store.file})")
    return EXIT_OK


async def _logout(base: str) -> int:
    from edge.api.client import ApiClient, SessionStore, path  # noqa: PLC0415 - keeps `lineside --help` fast

    kept = SessionStore().forget(base)
    if kept is None:
        print(f"no session kept for {base}", file=sys.stderr)
        return EXIT_OK
    async with ApiClient(base, token=str(kept["token"])) as client:
        status, _ = await client.request("DELETE", path("session"))
    who = kept.get("name", "the user")
    print(f"logged out {who}" if status == 200 else f"the session of {who} had ended already; forgotten")
    return EXIT_OK


async def _command(args: argparse.Namespace, client: ApiClient) -> None:
    from edge.api.client import path  # noqa: PLC0415 - keeps `lineside --help` fast

    command = args.ctl_command
    if command == "status":
        _emit(args, await _call(client, "GET", path("control")), _print_status)
    elif command in COMMANDS:
        body = {"reason": args.reason} if args.reason else None
        answer = await _call(client, "POST", path("control", "commands", command), body)
        _emit(args, answer, lambda a: print(f"{a['command']}: the line is {a['state']}"
                                            + (f" ({a['status']['reason']})" if a["status"].get("reason") else "")))
    elif command == "mode":
        answer = await _call(client, "POST", path("control", "mode"), {"mode": args.mode})
        _emit(args, answer, lambda a: print(f"unit mode {a['mode']}"))
    elif command == "ack":
        answer = await _call(client, "POST", path("control", "alarms", str(args.alarm), "acknowledge"))
        _emit(args, answer, lambda a: print(f"alarm {a['alarm']['id']} acknowledged by "
                                            f"{a['alarm']['acknowledged_by']}: {a['alarm']['text']}"))
    else:  # argparse only lets the commands above through
        raise _FailedError(EXIT_BAD_INPUT, f"unknown ctl command {command}")


async def _call(client: ApiClient, method: str, where: str, body: object = None) -> dict[str, Any]:
    """Ask the API; return its JSON answer, or raise _FailedError with its message and the exit code."""
    status, answer = await client.request(method, where, json_body=body)
    if status == 200 and isinstance(answer, dict):
        return answer
    error = answer.get("error") if isinstance(answer, dict) else None
    message = str(error) if error else f"the API answered {status}: {str(answer)[:500]}"
    if isinstance(answer, dict) and answer.get("state"):
        message += f" (the line is {answer['state']})"
    # Refused (not allowed, not possible now, the line control not running): the thing asked failed.
    raise _FailedError(EXIT_FAILED if status in (403, 409) or status >= 500 else EXIT_BAD_INPUT, message)


def _emit(args: argparse.Namespace, answer: dict[str, Any], as_text: Any) -> None:  # noqa: ANN401 - a printer
    if args.json:
        print(json.dumps(answer, indent=2, ensure_ascii=False))
    else:
        as_text(answer)


def _print_status(status: dict[str, Any]) -> None:
    print(f"line {status['line']}: {status['state']} ({status['mode']} mode)"
          + (f" - {status['reason']}" if status.get("reason") else ""))
    print(f"  commands possible: {', '.join(status['commands']) or 'none'}")
    batch = status.get("batch")
    if batch:
        print(f"  batch {batch['id']}  work order {batch['work_order']}  lot {batch['lot']}  {batch['state']}")
    counters = status["counters"]
    rejected = ", ".join(f"{reason} {n}" for reason, n in sorted(counters["rejected"].items())) or "none"
    good = "-" if counters["good"] is None else counters["good"]
    print(f"  produced {counters['produced']}  good {good}  rejected: {rejected}  "
          f"rate {counters['rate_per_minute']:g}/min")
    for alarm in status["alarms"]:
        ack = f"acknowledged by {alarm['acknowledged_by']}" if alarm["acknowledged_by"] else "NOT ACKNOWLEDGED"
        print(f"  alarm {alarm['id']} {alarm['kind']} {alarm['device'] or ''}: {alarm['text']} ({ack})")
    devices = ", ".join(f"{d['id']} {d['state']}" for d in status["devices"]) or "none"
    print(f"  devices: {devices}")


def _fail(args: argparse.Namespace, message: str) -> None:
    if getattr(args, "json", False):
        print(json.dumps({"error": message, "issues": []}, indent=2))
    print(f"lineside ctl: {message}", file=sys.stderr)
