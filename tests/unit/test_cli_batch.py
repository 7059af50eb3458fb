"""`lineside batch`: the life cycle offline, exit codes, and the daemon's API (logged in) when it holds the lock."""

import asyncio
import io
import json
import logging
import sys

import pytest
import structlog

from edge.cli import main
from edge.config import load_config
from edge.daemon import Daemon
from edge.gs1.element import build
from edge.serials.ledger import SerialLedger
from edge.store import Store
from edge.systemd import Notifier
from tests.conftest import ROOT
from tests.edge.logins import password, seed_users

PRODUCTS = ROOT / "config" / "products"
RU_GTIN = "04601234567893"
# Only bounds a failure; nothing here measures time.
HANG_GUARD_S = 10.0

WORK_ORDER = """\
work_order: {work_order}
product: aspirin-500-eu
lot: "{lot}"
expiry: 2035-12-31
quantity: 50
line: line-3
"""


@pytest.fixture(autouse=True)
def _logging_restored():
    """The command routes logging to stderr, process-wide: put it back for the tests after."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    structlog.reset_defaults()
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture
def state(tmp_path):
    return tmp_path / "state"


@pytest.fixture
def offline(state):
    return ["--state-dir", str(state), "--line", "line-3", "--products", str(PRODUCTS)]


def work_order(tmp_path, work_order="WO-1", lot="L1", name=None):
    path = tmp_path / (name or f"{work_order}.yaml")
    path.write_text(WORK_ORDER.format(work_order=work_order, lot=lot))
    return path


def run(capsys, *argv):
    code = main(["batch", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


def test_the_life_cycle_offline(tmp_path, capsys, offline):
    code, out, err = run(capsys, "create", work_order(tmp_path), *offline, "--json", "--operator", "jdoe")
    assert (code, err) == (0, "")
    created = json.loads(out)
    assert created["batch"]["work_order"] == "WO-1"
    assert created["batch"]["state"] == "created"

    code, out, _ = run(capsys, "release", "WO-1", *offline)
    assert code == 0
    assert "state released" in out
    assert "allocated 51" in out  # 50 and 2 % overage, rounded up
    for action, state in (("start", "running"), ("pause", "paused"), ("resume", "running"), ("complete", "completing")):
        code, out, _ = run(capsys, action, "WO-1", *offline)
        assert (code, f"state {state}" in out) == (0, True), out
    assert "ready to close: 51 never-printed serials will be returned" in out

    code, out, _ = run(capsys, "close", "1", *offline, "--json", "--operator", "qa-anna")
    assert code == 0
    closed = json.loads(out)
    assert closed["balanced"] is True
    assert closed["batch"]["state"] == "closed"
    assert closed["equation"] == "allocated 51 = commissioned 0 + decommissioned 0 + returned 51"

    code, out, _ = run(capsys, "list", *offline, "--json")
    assert code == 0
    (batch,) = json.loads(out)
    assert {"id", "product", "lot", "state", "counts"} <= batch.keys()
    assert (batch["id"], batch["product"], batch["lot"], batch["state"]) == (1, "aspirin-500-eu", "L1", "closed")
    assert batch["counts"]["returned"] == 51

    code, out, _ = run(capsys, "list", *offline)
    assert code == 0
    head, row = out.splitlines()
    assert head.split()[:4] == ["ID", "WORK", "ORDER", "PRODUCT"]
    assert row.split()[:5] == ["1", "WO-1", "aspirin-500-eu", "L1", "closed"]

    code, out, _ = run(capsys, "status", "WO-1", *offline)
    assert code == 0
    assert "allocated 51 = commissioned 0 + decommissioned 0 + returned 51" in out
    assert "by qa-anna: balanced" in out

    # Every change is in the audit trail, by whom, and the trail's hash chain is whole.
    assert main(["audit", "verify", "--state-dir", str(offline[1])]) == 0
    capsys.readouterr()
    assert main(["audit", "export", "--format", "json", "--state-dir", str(offline[1])]) == 0
    entries = json.loads(capsys.readouterr().out)
    entries = entries["entries"] if isinstance(entries, dict) else entries
    actions = [(e["actor"], e["action"]) for e in entries if e["action"].startswith("batch.")]
    assert actions[:2] == [("jdoe", "batch.create"), (actions[1][0], "batch.release")]
    assert [a for _, a in actions] == ["batch.create", "batch.release", "batch.start", "batch.pause", "batch.resume",
                                       "batch.complete", "batch.close"]
    assert actions[-1][0] == "qa-anna"

    page = tmp_path / "report.html"
    code, _, err = run(capsys, "report", "WO-1", "--html", page, *offline)
    assert code == 0
    assert page.read_text().startswith("<!DOCTYPE html>")
    assert "Balanced" in page.read_text()


def test_a_bad_work_order_exits_2_with_file_line_column(tmp_path, capsys, offline):
    bad = tmp_path / "bad.yaml"
    bad.write_text(WORK_ORDER.format(work_order="WO-1", lot="L1").replace("quantity: 50", "quantity: -5"))
    code, out, err = run(capsys, "create", bad, *offline)
    assert (code, out) == (2, "")
    assert err == f"{bad}:5:11: quantity: -5 must be at least 1\n"

    code, out, err = run(capsys, "create", bad, *offline, "--json")
    assert code == 2
    assert json.loads(out)["issues"] == [f"{bad}:5:11: quantity: -5 must be at least 1"]

    code, _, err = run(capsys, "create", tmp_path / "missing.yaml", *offline)
    assert code == 2
    assert "missing.yaml:1:1: cannot read" in err


def test_unknown_batches_and_missing_options_exit_2(tmp_path, capsys, state, offline):
    code, _, err = run(capsys, "list", *offline)
    assert code == 2
    assert "no Lineside database at" in err
    assert not state.exists(), "a read command must not create a state directory"

    assert run(capsys, "create", work_order(tmp_path), *offline)[0] == 0
    code, _, err = run(capsys, "status", "WO-404", *offline)
    assert code == 2
    assert 'no batch has the id or work order "WO-404"' in err
    code, _, err = run(capsys, "release", "7", *offline)
    assert code == 2

    code, _, err = run(capsys, "list", "--state-dir", state)
    assert code == 2
    assert "--line" in err
    code, _, err = run(capsys, "list")
    assert code == 2
    assert "-c FILE" in err


def test_refusals_exit_1(tmp_path, capsys, state, offline):
    for name in ("WO-1", "WO-2"):
        assert run(capsys, "create", work_order(tmp_path, name, lot=name), *offline)[0] == 0
        assert run(capsys, "release", name, *offline)[0] == 0
    assert run(capsys, "start", "WO-1", *offline)[0] == 0

    code, _, err = run(capsys, "start", "WO-2", *offline)
    assert code == 1
    assert "a line makes one batch at a time" in err
    code, _, err = run(capsys, "close", "WO-1", *offline)
    assert code == 1
    assert "cannot go from running to closed" in err
    code, _, err = run(capsys, "cancel", "WO-1", "--reason", "wrong lot", *offline)
    assert code == 1

    async def put_three_in_flight():
        store = Store.open(state)
        try:
            async with store:
                await SerialLedger(store, line_id="line-3").next_to_print(1, 3, device="printer-1")
        finally:
            store.close()

    asyncio.run(put_three_in_flight())
    code, out, _ = run(capsys, "complete", "WO-1", *offline)
    assert code == 0
    assert "in_doubt 3" in out
    code, out, err = run(capsys, "close", "WO-1", *offline)
    assert (code, out) == (1, "")
    assert "3 serials are in doubt: re-inspect them" in err

    code, out, _ = run(capsys, "cancel", "WO-2", "--reason", "lot withdrawn", *offline)
    assert code == 0
    assert "state cancelled" in out


def test_serials_imported_offline_then_drawn_at_release(tmp_path, capsys, offline):
    codes = tmp_path / "order-17.txt"
    codes.write_text("".join(
        build([("01", RU_GTIN), ("21", f"S{i:012d}"), ("91", f"K{i:03d}"), ("92", f"{i:04d}" + "Qx/+" * 10)]) + "\n"
        for i in range(12)
    ))
    code, out, err = run(capsys, "import-serials", codes, "--product", "amoxicillin-250-ru", *offline, "--json")
    assert code == 0, err
    assert json.loads(out) == {
        "gtin": RU_GTIN, "product": "amoxicillin-250-ru", "imported": 12, "available": {"serials": 0, "codes": 12},
    }
    code, _, err = run(capsys, "import-serials", codes, "--product", "amoxicillin-250-ru", *offline)
    assert code == 2
    assert f"{codes}: 12 of 12 serials are already known" in err

    order = tmp_path / "ru.json"
    order.write_text(json.dumps({
        "work_order": "WO-RU-1", "product": "amoxicillin-250-ru", "lot": "A1", "expiry": "2035-06-30",
        "quantity": 10, "line": "line-3",
    }))
    assert run(capsys, "create", order, *offline)[0] == 0
    code, out, err = run(capsys, "release", "WO-RU-1", *offline)
    assert code == 0
    assert "allocated 11" in out
    assert "serial pool low" in err  # the low-water warning goes to stderr, never into the answer

    sample = ROOT / "tests" / "unit" / "serial_imports" / "ru-codes.txt"
    code, _, err = run(capsys, "import-serials", sample, "--product", "amoxicillin-250-ru", *offline)
    assert code == 2  # codes for another GTIN than the product's
    assert str(sample) in err


def test_a_held_lock_without_a_config_exits_2(tmp_path, capsys, state, offline):
    store = Store.open(state)
    try:
        code, out, err = run(capsys, "list", *offline)
    finally:
        store.close()
    assert (code, out) == (2, "")
    assert f"the daemon holds the state directory {state}" in err
    assert "pass --api URL or -c FILE" in err


def test_an_unreachable_api_exits_2(capsys):
    code, _, err = run(capsys, "list", "--api", "http://127.0.0.1:1")
    assert code == 2
    assert "cannot reach the Lineside API at http://127.0.0.1:1" in err


def _line_config(tmp_path, name, port):
    path = tmp_path / name
    path.write_text(
        "line: {id: line-3, name: Test line}\n"
        f"storage: {{state_dir: {tmp_path / 'state'}}}\n"
        f"api: {{host: 127.0.0.1, port: {port}}}\n"
        f"catalog: {{products: {PRODUCTS}}}\n"
    )
    return path


async def test_with_a_config_it_goes_through_the_daemons_api_logged_in(tmp_path, capsys, monkeypatch):
    await seed_users(tmp_path / "state")
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))  # no session kept from elsewhere
    daemon = Daemon(load_config(_line_config(tmp_path, "daemon.yaml", 0)), notifier=Notifier(environ={}))
    task = asyncio.create_task(daemon.run(handle_signals=False))

    async def cli(*argv, stdin=""):
        # Not a terminal: the password is read from standard input, one line.
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
        code = await asyncio.to_thread(main, ["batch", *map(str, argv)])
        out, err = capsys.readouterr()
        return code, out, err

    def as_user(name):
        return ("--user", name)

    try:
        async with asyncio.timeout(HANG_GUARD_S):
            await daemon.ready.wait()
        capsys.readouterr()  # the daemon's own start-up log lines
        # The daemon picked a free port; the operator's copy of the configuration names it.
        config = _line_config(tmp_path, "line.yaml", daemon.api_port)
        url = f"http://127.0.0.1:{daemon.api_port}"

        code, out, err = await cli("list", "-c", config)
        assert code == 2
        assert "log in first" in err
        assert "lineside ctl login --user NAME (or --user NAME on the command)" in err
        code, out, err = await cli("list", "-c", config, *as_user("sam"), stdin="wrong-password\n")
        assert code == 2
        assert "login as sam refused: unknown user or wrong password" in err

        code, out, err = await cli("create", work_order(tmp_path), "-c", config, "--json", *as_user("sam"),
                                   stdin=password("sam") + "\n")
        assert code == 0, err
        assert f"using its API at {url}" in err
        assert json.loads(out)["batch"]["state"] == "created"
        # A release is signed: QA's password, typed once for the login, signs it too.
        code, out, err = await cli("release", "WO-1", "-c", config, "--json", *as_user("quinn"),
                                   stdin=password("quinn") + "\n")
        assert code == 0, err
        released = json.loads(out)
        assert released["batch"]["state"] == "released"
        assert released["signature"]["manifest"].startswith("Electronically signed by Quinn Quality (quinn, qa)")
        code, out, err = await cli("release", "WO-1", "-c", config, *as_user("sam"), stdin=password("sam") + "\n")
        assert code == 2  # a supervisor may not release
        assert "sam (supervisor) may not batch.release" in err
        code, out, _ = await cli("list", "-c", config, "--json", *as_user("olga"), stdin=password("olga") + "\n")
        assert code == 0
        (batch,) = json.loads(out)
        assert (batch["work_order"], batch["state"], batch["counts"]["allocated"]) == ("WO-1", "released", 51)

        bad = tmp_path / "bad.yaml"
        bad.write_text(WORK_ORDER.format(work_order="WO-2", lot="L2").replace("quantity: 50", "quantity: -5"))
        code, out, err = await cli("create", bad, "-c", config, *as_user("sam"), stdin=password("sam") + "\n")
        assert code == 2
        assert f"{bad}:5:11: quantity: -5 must be at least 1" in err
        assert "<request body>" not in err
        code, _, err = await cli("status", "WO-404", "-c", config, *as_user("sam"), stdin=password("sam") + "\n")
        assert code == 2
        assert "WO-404" in err
        code, _, err = await cli("close", "WO-1", "--api", url, *as_user("quinn"), stdin=password("quinn") + "\n")
        assert code == 1
        assert "cannot go from released to closed" in err
        code, _, err = await cli("cancel", "WO-1", "--reason", "test over", "--api", url, "--operator", "olga",
                                 *as_user("sam"), stdin=password("sam") + "\n")
        assert code == 2  # recorded under the logged-in user, not another name
        assert "you are logged in as sam" in err
        code, _, _ = await cli("cancel", "WO-1", "--reason", "test over", "--api", url, *as_user("sam"),
                               stdin=password("sam") + "\n")
        assert code == 0
        batches = daemon.batches
        assert batches is not None
        history = await batches.ledger.store.read(
            lambda conn: conn.execute("SELECT to_state, operator FROM batch_event ORDER BY id").fetchall())
        assert history == [("created", "sam"), ("released", "quinn"), ("cancelled", "sam")]
    finally:
        daemon.request_shutdown()
        assert await asyncio.wait_for(task, HANG_GUARD_S) == 0


def test_the_command_line_names_what_the_api_names():
    # Kept apart so that `lineside --help` does not load the web stack; they must not drift.
    from edge import batch_cli
    from edge.api import actions
    from edge.serials import workorder

    assert batch_cli.ACTIONS == actions.ACTIONS
    assert batch_cli.REQUEST_BODY == workorder.REQUEST_BODY
