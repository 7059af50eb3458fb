"""`lineside user ...` and `lineside audit ...`: user accounts and the audit trail from the command line.

User commands change the state directory's database, so they open it with its lock: while the daemon runs
it holds that lock, and they refuse, saying so (stop the daemon first). `audit verify` and `audit export`
only read, without the lock, so they work beside a running daemon. Passwords are never taken as arguments
(they would show in the process list and the shell history): they are asked on the terminal, or read from
standard input, one line each, when it is not a terminal. Only light modules are imported at load time,
so `lineside --help` stays fast.
"""

# ruff: noqa: T201 - a command line prints its results

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO, TypeVar

from edge.control.permissions import Role

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine

    from argon2 import PasswordHasher

    from edge.control.accounts import Accounts, User
    from edge.control.permissions import Actor

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2

ROLES = [role.value for role in Role]

T = TypeVar("T")


def make_hasher() -> PasswordHasher:
    """Return the password hasher the commands use (the stored-password default)."""
    from edge.control.accounts import default_hasher  # noqa: PLC0415 - keeps `lineside --help` fast

    return default_hasher()


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `lineside user` and `lineside audit` and their commands on the top-level subparsers."""
    where = argparse.ArgumentParser(add_help=False)
    where.add_argument("-c", "--config", type=Path, metavar="FILE", help="line configuration (its state directory)")
    where.add_argument("--state-dir", type=Path, metavar="DIR", help="state directory (instead of, or over, -c)")
    acting = argparse.ArgumentParser(add_help=False)
    acting.add_argument("--as", dest="as_user", metavar="NAME",
                        help="the user administrator doing this, who logs in with their password")

    user = sub.add_parser(
        "user", help="user accounts: add, list, disable, enable, passwd, role, unlock (with the daemon stopped)",
        description="Manage user accounts. Changes need the daemon stopped (it holds the state directory) and an "
                    "administrator logged in with --as, except the first user, an administrator added at "
                    "installation. Passwords are asked on the terminal; when standard input is not a terminal "
                    "they are read from it, one line each: the --as user's first, then the new one.")
    commands = user.add_subparsers(title="user commands", dest="user_command", required=True, metavar="COMMAND")
    add = commands.add_parser("add", parents=[where, acting], help="add a user (the first: an administrator, no --as)")
    add.add_argument("name", metavar="NAME", help="1 to 64 letters, digits and . _ @ -")
    add.add_argument("--role", required=True, choices=ROLES)
    add.add_argument("--full-name", metavar="TEXT", help="the printed name shown with the user's signatures")
    add.set_defaults(handler=_cmd_add)
    listing = commands.add_parser("list", parents=[where], help="every user, with role and status (works beside a "
                                  "running daemon)")
    listing.add_argument("--json", action="store_true", help="print JSON")
    listing.set_defaults(handler=_cmd_list)
    for name, text in (("disable", "disable a user (never deleted)"), ("enable", "enable a disabled user")):
        command = commands.add_parser(name, parents=[where, acting], help=text)
        command.add_argument("name", metavar="NAME")
        command.add_argument("--reason", required=True, help="why, recorded in the audit trail")
        command.set_defaults(handler=_cmd_disable if name == "disable" else _cmd_enable)
    passwd = commands.add_parser("passwd", parents=[where, acting],
                                 help="set a password: your own (default --as NAME), or another's as administrator")
    passwd.add_argument("name", metavar="NAME")
    passwd.set_defaults(handler=_cmd_passwd)
    role = commands.add_parser("role", parents=[where, acting], help="give a user another role")
    role.add_argument("name", metavar="NAME")
    role.add_argument("role", choices=ROLES)
    role.set_defaults(handler=_cmd_role)
    unlock = commands.add_parser("unlock", parents=[where, acting], help="end a lockout after failed logins")
    unlock.add_argument("name", metavar="NAME")
    unlock.set_defaults(handler=_cmd_unlock)

    audit = sub.add_parser("audit", help="the audit trail: verify its hash chain, export it")
    audit_commands = audit.add_subparsers(title="audit commands", dest="audit_command", required=True,
                                          metavar="COMMAND")
    check = audit_commands.add_parser("verify", parents=[where],
                                      help="check every entry and the chain (exit 1 naming the first broken entry); "
                                           "works beside a running daemon")
    check.add_argument("--json", action="store_true", help="print JSON")
    check.set_defaults(handler=_cmd_verify)
    export = audit_commands.add_parser("export", parents=[where], help="write every entry as CSV or JSON")
    export.add_argument("--format", required=True, choices=["csv", "json"])
    export.add_argument("-o", "--output", type=Path, metavar="FILE", help="write here, atomically (default: stdout)")
    export.set_defaults(handler=_cmd_export)


class _BadInputError(Exception):
    """The command was given something it cannot use; the message says what."""


class _FailedError(Exception):
    """The command was refused or failed; the message says why."""


# -- user commands --------------------------------------------------------------------------------


def _cmd_add(args: argparse.Namespace) -> int:
    async def run(accounts: Accounts, passwords: _Passwords) -> None:
        by = await _login(accounts, args, passwords)
        password = passwords.new(args.name)
        user = await accounts.add(args.name, Role(args.role), password, by=by, full_name=args.full_name)
        print(f"added {user.name} ({user.role.value})", file=sys.stderr)

    return _change(args, run, creates=True)


def _cmd_list(args: argparse.Namespace) -> int:
    from edge.control.accounts import read_users  # noqa: PLC0415 - keeps `lineside --help` fast

    try:
        users = _read(args, read_users)
    except _BadInputError as err:
        return _fail("user", str(err), EXIT_BAD_INPUT)
    except _FailedError as err:
        return _fail("user", str(err), EXIT_FAILED)
    if args.json:
        print(json.dumps([_user_json(user) for user in users], indent=2))
        return EXIT_OK
    now = datetime.now(UTC)
    print(f"{'NAME':<24} {'ROLE':<14} {'STATUS':<34} FULL NAME")
    for user in users:
        print(f"{user.name:<24} {user.role.value:<14} {_status(user, now):<34} {user.full_name or ''}".rstrip())
    return EXIT_OK


def _cmd_disable(args: argparse.Namespace) -> int:
    async def run(accounts: Accounts, passwords: _Passwords) -> None:
        by = await _login(accounts, args, passwords, required=True)
        await accounts.disable(args.name, by=_acting(by), reason=args.reason)
        print(f"disabled {args.name}", file=sys.stderr)

    return _change(args, run)


def _cmd_enable(args: argparse.Namespace) -> int:
    async def run(accounts: Accounts, passwords: _Passwords) -> None:
        by = await _login(accounts, args, passwords, required=True)
        await accounts.enable(args.name, by=_acting(by), reason=args.reason)
        print(f"enabled {args.name}", file=sys.stderr)

    return _change(args, run)


def _cmd_passwd(args: argparse.Namespace) -> int:
    if args.as_user is None:
        args.as_user = args.name

    async def run(accounts: Accounts, passwords: _Passwords) -> None:
        current = passwords.existing(args.as_user)
        by = await accounts.authenticate(args.as_user, current, via="cli")
        password = passwords.new(args.name)
        own = by.name.casefold() == args.name.casefold()
        await accounts.set_password(args.name, password, by=by, current=current if own else None)
        print(f"password of {args.name} set", file=sys.stderr)

    return _change(args, run)


def _cmd_role(args: argparse.Namespace) -> int:
    async def run(accounts: Accounts, passwords: _Passwords) -> None:
        by = await _login(accounts, args, passwords, required=True)
        await accounts.set_role(args.name, Role(args.role), by=_acting(by))
        print(f"{args.name} is now {args.role}", file=sys.stderr)

    return _change(args, run)


def _cmd_unlock(args: argparse.Namespace) -> int:
    async def run(accounts: Accounts, passwords: _Passwords) -> None:
        by = await _login(accounts, args, passwords, required=True)
        await accounts.unlock(args.name, by=_acting(by))
        print(f"unlocked {args.name}", file=sys.stderr)

    return _change(args, run)


async def _login(accounts: Accounts, args: argparse.Namespace, passwords: _Passwords, *,
                 required: bool = False) -> Actor | None:
    if args.as_user is None:
        if required:
            raise _BadInputError("say who does this: --as NAME (a user administrator, who logs in)")
        return None
    return await accounts.authenticate(args.as_user, passwords.existing(args.as_user), via="cli")


def _acting(by: Actor | None) -> Actor:
    if by is None:  # _login(required=True) never returns None
        raise _BadInputError("--as NAME is required")
    return by


def _change(args: argparse.Namespace, run: Callable[[Accounts, _Passwords], Coroutine[Any, Any, None]], *,
            creates: bool = False) -> int:
    """Open the state directory with its lock, run one user command on its accounts, report errors."""
    from edge.control.accounts import AccountError, Accounts, AuthError  # noqa: PLC0415 - keeps --help fast
    from edge.control.audit import AuditTrail  # noqa: PLC0415
    from edge.control.permissions import NotAllowedError  # noqa: PLC0415
    from edge.errors import EdgeError, StoreLockedError  # noqa: PLC0415
    from edge.store import Store  # noqa: PLC0415

    try:
        state_dir = _state_dir(args, must_exist=not creates)
        try:
            store = Store.open(state_dir)
        except StoreLockedError as err:
            raise _FailedError(f"{err}\nUser accounts are changed with the daemon stopped (it holds the state "
                               "directory while it runs): stop it (systemctl stop lineside) and try again") from err

        async def main() -> None:
            async with store:
                audit = AuditTrail(store)
                await run(Accounts(store, audit=audit, hasher=make_hasher()), _Passwords(sys.stdin))

        try:
            asyncio.run(main())
        finally:
            store.close()
    except (_BadInputError, ValueError) as err:
        return _fail("user", str(err), EXIT_BAD_INPUT)
    except (_FailedError, AuthError, NotAllowedError, AccountError, EdgeError) as err:
        return _fail("user", str(err), EXIT_FAILED)
    return EXIT_OK


class _Passwords:
    """Passwords from the terminal (asked, new ones twice), or from standard input one line each."""

    def __init__(self, stdin: TextIO) -> None:
        self._stdin = stdin
        self._tty = stdin.isatty()

    def existing(self, name: str) -> str:
        """Return name's password, to log in."""
        if self._tty:
            return getpass.getpass(f"Password of {name}: ")
        return self._line(f"the password of {name}")

    def new(self, name: str) -> str:
        """Return a new password for name, typed twice on a terminal."""
        if not self._tty:
            return self._line(f"the new password of {name}")
        first = getpass.getpass(f"New password of {name}: ")
        if getpass.getpass(f"New password of {name}, again: ") != first:
            raise _BadInputError("the two passwords typed differ; nothing was changed")
        return first

    def _line(self, what: str) -> str:
        line = self._stdin.readline()
        if not line:
            raise _BadInputError(f"standard input ended before {what} (one line per password)")
        return line.removesuffix("\n").removesuffix("\r")


def _status(user: User, now: datetime) -> str:
    if not user.active:
        return "disabled"
    if user.locked_until is not None and user.locked(now):
        return f"locked until {user.locked_until:%Y-%m-%d %H:%M} UTC"
    if user.failed_attempts:
        return f"enabled, {user.failed_attempts} failed attempts"
    return "enabled"


def _user_json(user: User) -> dict[str, Any]:
    return {
        "name": user.name, "role": user.role.value, "active": user.active, "full_name": user.full_name,
        "created_at": user.created_at.isoformat(), "failed_attempts": user.failed_attempts,
        "locked_until": user.locked_until.isoformat() if user.locked_until else None,
    }


# -- audit commands -------------------------------------------------------------------------------


def _cmd_verify(args: argparse.Namespace) -> int:
    from edge.control.audit import verify  # noqa: PLC0415 - keeps `lineside --help` fast

    try:
        verdict = _read(args, verify)
    except _BadInputError as err:
        return _fail("audit", str(err), EXIT_BAD_INPUT)
    except _FailedError as err:
        return _fail("audit", str(err), EXIT_FAILED)
    if args.json:
        print(json.dumps({"ok": verdict.ok, "entries": verdict.entries, "first_broken_id": verdict.first_broken_id,
                          "reason": verdict.reason, "last_id": verdict.last_id, "last_hash": verdict.last_hash},
                         indent=2))
    elif verdict.ok:
        head = f"; last entry #{verdict.last_id}, sha256 {verdict.last_hash}" if verdict.last_id else ""
        print(f"audit trail whole: {verdict.entries} entries{head}")
    else:
        where = f" at entry #{verdict.first_broken_id}" if verdict.first_broken_id is not None else ""
        print(f"audit trail BROKEN{where}: {verdict.reason}")
    return EXIT_OK if verdict.ok else EXIT_FAILED


def _cmd_export(args: argparse.Namespace) -> int:
    from edge.control.audit import export_csv, export_json  # noqa: PLC0415 - keeps `lineside --help` fast

    export = export_csv if args.format == "csv" else export_json
    output: Path | None = args.output
    try:
        if output is None:
            count = _read(args, lambda conn: export(conn, sys.stdout))
        else:
            partial = output.with_name(f".{output.name}.partial")
            try:
                # newline="": the csv module writes its own CRLF row ends (RFC 4180).
                with partial.open("w", encoding="utf-8", newline="") as out:
                    count = _read(args, lambda conn: export(conn, out))
                    out.flush()
                    os.fsync(out.fileno())
                partial.replace(output)
            finally:
                partial.unlink(missing_ok=True)
    except OSError as err:
        return _fail("audit", f"cannot write {output}: {err.strerror}", EXIT_FAILED)
    except _BadInputError as err:
        return _fail("audit", str(err), EXIT_BAD_INPUT)
    except _FailedError as err:
        return _fail("audit", str(err), EXIT_FAILED)
    print(f"{count} audit entries written{f' to {output}' if output else ''}", file=sys.stderr)
    return EXIT_OK


def _read(args: argparse.Namespace, fn: Callable[[Any], T]) -> T:
    """Open the state directory read-only (no lock: the daemon may be running) and run fn on one snapshot."""
    from edge.errors import EdgeError  # noqa: PLC0415 - keeps `lineside --help` fast
    from edge.store import Store  # noqa: PLC0415

    state_dir = _state_dir(args, must_exist=True)
    try:
        store = Store.open_readonly(state_dir)
    except EdgeError as err:
        raise _FailedError(str(err)) from err

    async def main() -> T:
        async with store:
            return await store.read(fn)

    try:
        return asyncio.run(main())
    except EdgeError as err:
        raise _FailedError(str(err)) from err
    finally:
        store.close()


# -- common ---------------------------------------------------------------------------------------


def _state_dir(args: argparse.Namespace, *, must_exist: bool) -> Path:
    from edge.store import DB_NAME  # noqa: PLC0415 - keeps `lineside --help` fast

    if args.state_dir is not None:
        state_dir = Path(args.state_dir)
    elif args.config is not None:
        from edge.config.load import load_config  # noqa: PLC0415 - configuration loads only when asked for
        from edge.errors import ConfigError  # noqa: PLC0415

        try:
            state_dir = load_config(args.config).storage.state_dir
        except ConfigError as err:
            issues = "\n".join(str(issue) for issue in err.issues)
            raise _BadInputError(f"{args.config}: the line configuration is not valid\n{issues}") from err
    else:
        raise _BadInputError("give the state directory: -c FILE (the line configuration) or --state-dir DIR")
    if must_exist and not (state_dir / DB_NAME).is_file():
        raise _BadInputError(f"no Lineside database at {state_dir / DB_NAME}: check --state-dir or -c FILE")
    return state_dir


def _fail(command: str, message: str, code: int) -> int:
    print(f"lineside {command}: {message}", file=sys.stderr)
    return code
