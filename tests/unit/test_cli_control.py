"""`lineside user ...` and `lineside audit verify|export` on a real state directory."""

from __future__ import annotations

import csv
import io
import json
import sqlite3

import pytest

from edge.cli import main
from edge.control import cli as control_cli
from edge.store import DB_NAME, Store
from tests.unit.test_control_accounts import ADMIN_PW, fast_hasher

OP_PW = "operator-password-1"
CONFIG = """line:
  id: line-1
  name: Line 1
  site_gln: "4012345000009"
  location: "urn:epc:id:sgln:4012345.00003.0"
storage:
  state_dir: {state}
"""


@pytest.fixture(autouse=True)
def _fast_hashing(monkeypatch):
    monkeypatch.setattr(control_cli, "make_hasher", fast_hasher)


@pytest.fixture
def stdin(monkeypatch):
    """Feed the command's standard input (not a terminal), one password a line."""
    def feed(*lines):
        monkeypatch.setattr("sys.stdin", io.StringIO("".join(f"{line}\n" for line in lines)))
    return feed


@pytest.fixture
def state(tmp_path, stdin):
    """A state directory with its first administrator."""
    directory = tmp_path / "state"
    stdin(ADMIN_PW)
    assert main(["user", "add", "admin", "--role", "administrator", "--full-name", "Ada Admin",
                 "--state-dir", str(directory)]) == 0
    return directory


def run(*argv, state):
    return main([*argv, "--state-dir", str(state)])


def users(state, capsys):
    capsys.readouterr()
    assert run("user", "list", "--json", state=state) == 0
    return {user["name"]: user for user in json.loads(capsys.readouterr().out)}


def test_the_first_user_is_added_without_anyone_logged_in(state, capsys):
    listed = users(state, capsys)
    assert list(listed) == ["admin"]
    assert listed["admin"] | {"created_at": None} == {
        "name": "admin", "role": "administrator", "active": True, "full_name": "Ada Admin", "created_at": None,
        "failed_attempts": 0, "locked_until": None}


def test_the_first_user_must_be_an_administrator(tmp_path, stdin, capsys):
    stdin(OP_PW)
    assert main(["user", "add", "op", "--role", "operator", "--state-dir", str(tmp_path)]) == 1
    assert "first user must be an administrator" in capsys.readouterr().err


def test_later_users_need_an_administrator_logged_in(state, stdin, capsys):
    stdin(OP_PW)
    assert run("user", "add", "op", "--role", "operator", state=state) == 1
    assert "users exist already" in capsys.readouterr().err
    stdin("not the password", OP_PW)
    assert run("user", "add", "op", "--role", "operator", "--as", "admin", state=state) == 1
    assert "unknown user or wrong password" in capsys.readouterr().err
    stdin(ADMIN_PW, OP_PW)
    assert run("user", "add", "op", "--role", "operator", "--as", "admin", state=state) == 0
    assert "added op (operator)" in capsys.readouterr().err
    stdin(ADMIN_PW)
    assert run("user", "add", "op2", "--role", "operator", "--as", "admin", state=state) == 2
    assert "standard input ended before the new password of op2" in capsys.readouterr().err
    stdin(ADMIN_PW, "short")
    assert run("user", "add", "op2", "--role", "operator", "--as", "admin", state=state) == 2
    assert "at least 10 characters" in capsys.readouterr().err
    assert list(users(state, capsys)) == ["admin", "op"]


def test_disable_role_unlock_and_passwd(state, stdin, capsys):
    stdin(ADMIN_PW, OP_PW)
    assert run("user", "add", "op", "--role", "operator", "--as", "admin", state=state) == 0
    assert run("user", "disable", "op", "--reason", "left", state=state) == 2
    assert "--as NAME" in capsys.readouterr().err
    stdin(ADMIN_PW)
    assert run("user", "role", "op", "supervisor", "--as", "admin", state=state) == 0
    stdin(ADMIN_PW)
    assert run("user", "disable", "op", "--reason", "left", "--as", "admin", state=state) == 0
    assert users(state, capsys)["op"] | {"created_at": None} == {
        "name": "op", "role": "supervisor", "active": False, "full_name": None, "created_at": None,
        "failed_attempts": 0, "locked_until": None}
    stdin(ADMIN_PW)
    assert run("user", "enable", "op", "--reason", "back", "--as", "admin", state=state) == 0
    for _ in range(5):
        stdin("wrong password")
        assert run("user", "passwd", "op", state=state) == 1
    capsys.readouterr()
    assert run("user", "list", state=state) == 0
    assert "locked until" in capsys.readouterr().out
    stdin(ADMIN_PW)
    assert run("user", "unlock", "op", "--as", "admin", state=state) == 0
    stdin(OP_PW, "op-new-password-2")
    assert run("user", "passwd", "op", state=state) == 0
    stdin(ADMIN_PW, "reset-by-admin-3")
    assert run("user", "passwd", "op", "--as", "admin", state=state) == 0
    stdin("reset-by-admin-3", "op-own-again-4")
    assert run("user", "passwd", "op", state=state) == 0


def test_user_changes_are_refused_while_the_daemon_holds_the_state_directory(state, stdin, capsys):
    daemon = Store.open(state)
    try:
        stdin(ADMIN_PW, OP_PW)
        assert run("user", "add", "op", "--role", "operator", "--as", "admin", state=state) == 1
        err = capsys.readouterr().err
        assert "in use by process" in err
        assert "User accounts are changed with the daemon stopped" in err
        assert run("audit", "verify", state=state) == 0  # reading needs no lock
        assert run("user", "list", state=state) == 0
    finally:
        daemon.close()


def test_audit_verify_is_whole_then_names_the_first_broken_entry(state, stdin, capsys):
    stdin(ADMIN_PW, OP_PW)
    assert run("user", "add", "op", "--role", "operator", "--as", "admin", state=state) == 0
    capsys.readouterr()
    assert run("audit", "verify", state=state) == 0
    out = capsys.readouterr().out
    assert out.startswith("audit trail whole: 3 entries; last entry #3, sha256 ")  # add, login, add
    conn = sqlite3.connect(state / DB_NAME, isolation_level=None)
    conn.execute("DROP TRIGGER audit_log_append_only_update")
    conn.execute("UPDATE audit_log SET subject = 'mallory' WHERE id = 3")
    conn.close()
    assert run("audit", "verify", state=state) == 1
    assert capsys.readouterr().out.startswith("audit trail BROKEN at entry #3: entry #3 was changed")
    assert run("audit", "verify", "--json", state=state) == 1
    verdict = json.loads(capsys.readouterr().out)
    assert (verdict["ok"], verdict["first_broken_id"], verdict["entries"]) == (False, 3, 3)


def test_audit_export_as_csv_to_a_file_and_json_to_stdout(state, tmp_path, capsys):
    out = tmp_path / "audit.csv"
    assert run("audit", "export", "--format", "csv", "-o", str(out), state=state) == 0
    assert "1 audit entries written to" in capsys.readouterr().err
    with out.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["id", "at", "actor", "action", "subject", "details_json", "prev_hash", "hash"]
    assert rows[1][2:5] == ["", "user.add", "admin"]
    assert not list(tmp_path.glob(".*partial"))
    assert run("audit", "export", "--format", "json", state=state) == 0
    document = json.loads(capsys.readouterr().out)
    assert [entry["action"] for entry in document["entries"]] == ["user.add"]


def test_the_state_directory_comes_from_the_line_configuration(state, tmp_path, capsys):
    config = tmp_path / "line.yaml"
    config.write_text(CONFIG.format(state=state), encoding="utf-8")
    assert main(["audit", "verify", "-c", str(config)]) == 0
    assert "audit trail whole: 1 entries" in capsys.readouterr().out


def test_where_the_state_is_must_be_said_and_must_hold_a_database(tmp_path, capsys):
    assert main(["audit", "verify"]) == 2
    assert "-c FILE" in capsys.readouterr().err
    assert main(["audit", "verify", "--state-dir", str(tmp_path)]) == 2
    assert "no Lineside database" in capsys.readouterr().err
    assert main(["user", "list", "--state-dir", str(tmp_path)]) == 2
    bad = tmp_path / "bad.yaml"
    bad.write_text("line: {}\nsurprise: 1\n", encoding="utf-8")
    assert main(["audit", "verify", "-c", str(bad)]) == 2
    assert "bad.yaml" in capsys.readouterr().err
