"""The web HMI in a real browser (Debian's chromium driven by Playwright) against the real daemon and simulated line.

An operator logs in, starts the line and sees it execute with live counters, holds and unholds it, and finds the
commands their role may not give disabled; QA decommissions the in-doubt serials and closes the completed batch
with electronic signatures (a wrong password refused in words, the right one giving the signature's manifest).
Elements are found by role and label, as a screen reader would. Skipped, saying why, only when chromium cannot
be started here. Every wait is for something the page shows, bounded against a hang; nothing asserts on timing.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from edge.config import load_config
from edge.control.packml import Command, State
from edge.control.permissions import Actor, Role
from edge.daemon import Daemon
from edge.line.simulated import SimulatedLine
from edge.supervisor import LinkState
from tests.conftest import ROOT
from tests.edge.logins import password, seed_users

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
HANG_GUARD_S = 30.0
# Playwright's own waits, in milliseconds: only bounds a failure.
UI_WAIT_MS = 15_000
ORDER = "work_order: WO-1\nproduct: aspirin-500-eu\nlot: \"L1\"\nexpiry: 2028-10-31\nquantity: 500\nline: demo\n"
SAM = Actor("sam", Role.SUPERVISOR)


@contextlib.asynccontextmanager
async def chromium() -> AsyncIterator[Any]:
    """Yield a headless chromium driven by Playwright; skip the test when it cannot be started here."""
    try:
        from playwright.async_api import Error as PlaywrightError
        from playwright.async_api import async_playwright
    except ImportError:
        pytest.skip("the playwright package is not installed (it is in the test extra: pip install -e '.[test]')")
    if not CHROMIUM.is_file():  # noqa: ASYNC240 - one stat before the browser starts
        pytest.skip(f"{CHROMIUM} is missing (scripts/test installs Debian's chromium)")
    async with async_playwright() as playwright:
        try:
            browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                                       args=CHROMIUM_ARGS)
        except PlaywrightError as err:
            pytest.skip(f"chromium cannot be started here: {str(err).splitlines()[0]}")
        try:
            yield browser
        finally:
            await browser.close()


class Line:
    def __init__(self, sim: SimulatedLine, daemon: Daemon) -> None:
        self.sim = sim
        self.daemon = daemon
        assert daemon.control is not None
        self.control = daemon.control
        self.world = sim.world

    @property
    def hmi(self) -> str:
        return f"http://127.0.0.1:{self.daemon.hmi_port}/hmi/"

    async def packs(self, count: int) -> None:
        """Move count packs past the printer, camera and reject station, each onto a loaded printer."""
        printer = self.sim.printer
        assert printer is not None
        for _ in range(count):
            async with asyncio.timeout(HANG_GUARD_S):
                await printer.engine.wait_loaded()
            for _ in range(4):
                self.world.advance(self.world.geometry.pitch // 4)
                await asyncio.sleep(0.01)


@contextlib.asynccontextmanager
async def running_line(tmp_path: Path) -> AsyncIterator[Line]:
    config = load_config(ROOT / "config" / "demo.yaml")
    config = config.model_copy(update={
        "storage": config.storage.model_copy(update={"state_dir": tmp_path / "state"}),
        "api": config.api.model_copy(update={"host": "127.0.0.1", "port": 0}),
        "hmi": config.hmi.model_copy(update={"host": "127.0.0.1", "port": 0}),
    })
    await seed_users(tmp_path / "state")
    async with SimulatedLine(config) as sim:
        daemon = Daemon(sim.config)
        task = asyncio.create_task(daemon.run(handle_signals=False))
        try:
            async with asyncio.timeout(HANG_GUARD_S):
                await daemon.ready.wait()
                assert sim.plc is not None
                await sim.plc.wait_for_connection()
                while any(s.status.state is not LinkState.ONLINE for s in daemon.supervisors):  # noqa: ASYNC110
                    await asyncio.sleep(0.01)
            batches = daemon.batches
            assert batches is not None
            batch = await batches.import_work_order(ORDER, "test", operator="planner")
            await batches.release(batch.id, operator="planner")
            labelling = asyncio.create_task(sim.run_packaging())
            try:
                yield Line(sim, daemon)
            finally:
                labelling.cancel()
                await asyncio.gather(labelling, return_exceptions=True)
        finally:
            daemon.request_shutdown()
            async with asyncio.timeout(HANG_GUARD_S):
                await task


async def log_in(page: Any, hmi: str, name: str, secret: str) -> None:
    from playwright.async_api import expect

    await page.goto(hmi)
    form = page.get_by_role("form", name="Log in")
    await form.get_by_label("User name").fill(name)
    await form.get_by_label("Password").fill(secret)
    await form.get_by_role("button", name="Log in").click()
    await expect(page.get_by_text(re.compile(rf"^{name} \("))).to_be_visible()


@pytest.mark.timeout(180)  # a browser, a daemon and a simulated line: about 25 s here, more on a busy machine
async def test_operator_runs_holds_and_unholds_and_qa_closes_the_batch_with_signatures(tmp_path: Path) -> None:
    from playwright.async_api import expect

    async with running_line(tmp_path) as line, chromium() as browser:
        expect.set_options(timeout=UI_WAIT_MS)
        page = await browser.new_page()
        problems: list[str] = []
        page.on("pageerror", lambda err: problems.append(f"page error: {err}"))
        # Refused requests (401 at the login page, 401 for a wrong signature) are logged by the browser too.
        page.on("console", lambda msg: problems.append(msg.text)
                if msg.type == "error" and "Failed to load resource" not in msg.text else None)

        # A wrong password is refused in words, and the page stays at the login.
        await page.goto(line.hmi)
        form = page.get_by_role("form", name="Log in")
        await form.get_by_label("User name").fill("olga")
        await form.get_by_label("Password").fill("not-the-password")
        await form.get_by_role("button", name="Log in").click()
        await expect(page.get_by_role("alert").filter(has_text="Login refused")).to_contain_text(
            "unknown user or wrong password")

        assert await line.control.command(Command.RESET, SAM) is State.IDLE
        await log_in(page, line.hmi, "olga", password("olga"))
        state = page.get_by_label("PackML state")
        await expect(state).to_have_text("Idle")
        commands = page.get_by_role("group", name="Line commands")
        # An operator starts, holds and unholds; stopping, resetting and aborting are for supervisors.
        await expect(commands.get_by_role("button", name="Start", exact=True)).to_be_enabled()
        await commands.get_by_role("button", name="Start", exact=True).click()
        await expect(state).to_have_text("Execute")
        await expect(page.get_by_role("status").filter(has_text="Start: the line is Execute")).to_be_visible()
        for refused in ("Stop", "Abort", "Reset"):
            await expect(commands.get_by_role("button", name=refused, exact=True)).to_be_disabled()
        # Not possible in Execute, whatever the role.
        await expect(commands.get_by_role("button", name="Unhold", exact=True)).to_be_disabled()

        await line.packs(6)
        await expect(page.get_by_label("Good")).not_to_have_text("0")  # live counters over server-sent events
        await expect(page.get_by_text("Work order WO-1, lot L1: running")).to_be_visible()

        await commands.get_by_role("button", name="Hold", exact=True).click()
        await expect(state).to_have_text("Held")
        assert line.world.running is False
        await expect(commands.get_by_role("button", name="Hold", exact=True)).to_be_disabled()
        await commands.get_by_role("button", name="Unhold", exact=True).click()
        await expect(state).to_have_text("Execute")
        assert line.world.running is True

        # The supervisor completes the order (from another panel); this one follows, live.
        assert await line.control.command(Command.COMPLETE, SAM, reason="order done") is State.COMPLETE
        await expect(state).to_have_text("Complete")
        await page.get_by_role("button", name="Log out").click()
        await expect(page.get_by_role("button", name="Log in")).to_be_visible()

        # QA: the serials left in flight are decommissioned, then the batch is closed, each signed.
        await log_in(page, line.hmi, "quinn", password("quinn"))
        dialog = page.get_by_role("dialog", name="Electronic signature")
        await page.get_by_role("button", name="Decommission in-doubt serials of batch WO-1").click()
        await expect(dialog).to_be_visible()
        await expect(dialog).to_contain_text("Meaning of this signature: reviewed")
        await dialog.get_by_label("Reason").fill("units in the printer at completion set aside and destroyed")
        await dialog.get_by_label("Password").fill(password("quinn"))
        await dialog.get_by_role("button", name="Sign").click()
        await expect(dialog.get_by_role("status")).to_contain_text("Electronically signed by Quinn Quality")
        await dialog.get_by_role("button", name="Done").click()

        await page.get_by_role("button", name="Close batch WO-1").click()
        await expect(dialog).to_contain_text("Close batch WO-1 (lot L1)")
        await expect(dialog).to_contain_text("Meaning of this signature: approved")
        await expect(dialog).to_contain_text(re.compile(r"allocated \d+ = commissioned \d+"))
        await dialog.get_by_label("Password").fill("wrong-password-1")
        await dialog.get_by_role("button", name="Sign").click()
        await expect(dialog.get_by_role("alert")).to_have_text(
            "Not signed: signature refused: unknown user or wrong password")
        batches = line.daemon.batches
        assert batches is not None
        assert (await batches.ledger.batch("WO-1")).state.value == "completing"

        await dialog.get_by_label("Password").fill(password("quinn"))
        await dialog.get_by_role("button", name="Sign").click()
        manifest = dialog.get_by_role("status")
        await expect(manifest).to_contain_text(re.compile(
            r"Signed\. Electronically signed by Quinn Quality \(quinn, qa\) on \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC; "
            r"meaning: approved"))
        await expect(dialog).to_contain_text("Balanced")
        await dialog.get_by_role("button", name="Done").click()
        await expect(page.get_by_role("row", name=re.compile(r"WO-1 .* closed"))).to_be_visible()
        assert (await batches.ledger.batch("WO-1")).state.value == "closed"
        assert problems == [], problems


async def test_serials_in_doubt_after_a_restart_show_a_banner_and_a_missing_line_control_is_said_in_words(
    tmp_path: Path,
) -> None:
    from playwright.async_api import expect

    from edge.api import ApiServer, make_app
    from edge.config.models import CatalogConfig
    from edge.products.load import load_catalog
    from edge.serials.batches import BatchService
    from edge.serials.ledger import SerialLedger
    from edge.store import Store
    from tests.edge.logins import add_users, make_auth

    store = Store.open(tmp_path / "state", group_window_s=0)
    async with store:
        auth = make_auth(store)
        await add_users(auth.accounts, ("olga",))
        catalog = load_catalog(CatalogConfig(products=ROOT / "config" / "products"))
        batches = BatchService(SerialLedger(store, line_id="line-9"), catalog)
        # As the daemon reports the line after a restart that found 3 serials in flight; no line control yet.
        app = make_app(batches, auth=auth, line_status=lambda: {"in_doubt_at_start": 3, "devices": [],
                                                                 "printers": {}, "aggregation": None})
        server = ApiServer(app, "127.0.0.1", 0)
        serving = asyncio.create_task(server.run())
        try:
            async with asyncio.timeout(HANG_GUARD_S):
                await server.attempted.wait()
            async with chromium() as browser:
                expect.set_options(timeout=UI_WAIT_MS)
                page = await browser.new_page()
                await log_in(page, f"{server.url}/hmi/", "olga", password("olga"))
                banner = page.get_by_role("alert").filter(has_text="in doubt")
                await expect(banner).to_contain_text("3 serial(s) were in flight when the line controller restarted")
                await expect(page.get_by_role("alert").filter(has_text="Live line state unavailable")).to_contain_text(
                    "the line control is not running")
                await expect(page.get_by_text("line-9")).to_be_visible()
                await expect(page.get_by_role("cell", name="No batches yet.")).to_be_visible()
                # Reloading keeps the session (the cookie); logging out ends it.
                await page.reload()
                await expect(page.get_by_text("olga (operator)")).to_be_visible()
                await page.get_by_role("button", name="Log out").click()
                await page.reload()
                await expect(page.get_by_role("form", name="Log in")).to_be_visible()
        finally:
            serving.cancel()
            await asyncio.wait({serving})
