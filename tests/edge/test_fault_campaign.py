"""The fault campaign: a whole batch per fault, end to end, with every invariant checked after (edge/line/campaign.py).

Each test runs one scenario on a short batch (30 packs, the fault after 10, a reject-worthy defect on every 7th
pack): the real daemon against the simulated line and EPCIS repository, the belt stepped by the campaign, which
waits for the line controller after every step. `ScenarioResult.problems` lists every invariant or expectation
that did not hold; the assertions after it pin down how the line answered the fault.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from edge.line.campaign import (
    BASELINE,
    SCENARIOS,
    UPSTREAM_ATTEMPTS_WHILE_DOWN,
    CampaignRun,
    ScenarioResult,
    run_scenario,
)

if TYPE_CHECKING:
    from pathlib import Path

RUN = CampaignRun()


async def play(name: str, tmp_path: Path, **control: str) -> ScenarioResult:
    scenario = BASELINE if name == BASELINE.name else SCENARIOS[name]
    return await run_scenario(scenario, RUN, tmp_path, control=control or None)


def kinds(result: ScenarioResult) -> list[str]:
    return [kind for kind, _ in result.reaction.alarms]


async def test_the_baseline_batch_runs_clean_end_to_end(tmp_path: Path) -> None:
    result = await play("baseline", tmp_path)
    assert result.problems == []
    assert (result.packs, result.reaction.state, result.reaction.alarms) == (RUN.units, None, [])
    assert result.rejected >= 4  # the defects: the reject path ran
    assert result.commissioned == result.shipped
    assert result.upstream["state"] == "delivered"
    assert result.upstream["stored"] == result.upstream["events"] > result.commissioned


async def test_printer_disconnect_holds_the_line_and_unhold_finishes_the_batch(tmp_path: Path) -> None:
    result = await play("printer-disconnect", tmp_path)
    assert result.problems == []
    assert result.reaction.state == "Held"
    assert ("hold-request", "printer-1") in result.reaction.alarms
    assert result.reaction.operator_commands[2:] == ["Unhold", "Complete"]
    assert result.packs == RUN.units


async def test_printer_out_of_ink_holds_the_line_and_unhold_after_refill_finishes_the_batch(tmp_path: Path) -> None:
    result = await play("printer-out-of-ink", tmp_path)
    assert result.problems == []
    assert result.reaction.state == "Held"
    assert kinds(result) == ["hold-request"]
    assert result.reaction.operator_commands[2:] == ["Unhold", "Complete"]


async def test_printer_out_of_ink_stops_the_line_when_configured_so(tmp_path: Path) -> None:
    result = await play("printer-out-of-ink", tmp_path, on_hold_request="stop")
    assert result.problems == []
    assert result.reaction.state == "Stopped"
    assert result.reaction.operator_commands[2:] == ["Reset", "Start", "Complete"]


async def test_a_stalled_camera_rejects_every_pack_and_the_tracking_alarm_stops_the_line_once(tmp_path: Path) -> None:
    result = await play("camera-stall", tmp_path)
    assert result.problems == []
    assert result.reaction.state == "Stopped"
    # Once: after the operator's reset, the packs judged during the stall are rejected without stopping it again.
    assert result.reaction.alarms == [("consecutive-rejects", "camera-1")]
    assert result.reaction.operator_commands[2:] == ["Reset", "Start", "Complete"]
    assert result.rejected > RUN.units // 4


async def test_plc_connection_loss_holds_the_line_and_it_finishes_after_the_link_is_back(tmp_path: Path) -> None:
    result = await play("plc-connection-loss", tmp_path)
    assert result.reaction.state == "Held"
    assert result.problems == []
    # The link back reports the packs that crossed a station meanwhile: no tracking alarm, each pack accounted for.
    assert kinds(result) == ["device-offline", "run-output-failed"]
    assert result.reaction.operator_commands[2:] == ["Unhold", "Complete"]
    assert any("while the PLC link was down, reported once it was back: [" in note and "[]" not in note
               for note in result.notes)
    assert result.packs == RUN.units


async def test_an_unconfirmed_reject_stops_the_line_and_the_pack_is_never_counted_good(tmp_path: Path) -> None:
    result = await play("reject-not-confirmed", tmp_path)
    assert result.problems == []
    assert result.reaction.state == "Stopped"
    assert kinds(result) == ["reject-not-confirmed"]
    # The pack may have gone on: it had no good verdict, so it is not commissioned and the packer never counts it.
    assert any("never commissioned, not packed" in note for note in result.notes)
    assert result.in_doubt_decommissioned > 0


async def test_upstream_down_for_the_whole_batch_closes_it_anyway_and_delivers_each_event_once(
    tmp_path: Path,
) -> None:
    result = await play("upstream-down", tmp_path)
    assert result.problems == []
    assert result.reaction.state is None  # the line never noticed
    upstream = result.upstream
    # Refused connections, then 503 answers (UPSTREAM_ATTEMPTS_WHILE_DOWN each at least), then stored.
    assert upstream["attempts"] >= 2 * UPSTREAM_ATTEMPTS_WHILE_DOWN + 1
    assert upstream["state"] == "delivered"
    assert upstream["stored"] == upstream["events"]


async def test_a_full_disk_stops_the_line_safely_and_it_goes_on_once_space_is_freed(tmp_path: Path) -> None:
    result = await play("disk-full", tmp_path)
    assert result.problems == []
    # The first write refused stops the line once; the pack whose verdict could not be recorded is rejected.
    assert result.reaction.state == "Stopped"
    assert kinds(result) == ["store-write-failed"]
    assert result.reaction.operator_commands[2:] == ["Reset", "Start", "Complete"]
    assert result.packs == RUN.units


async def test_garbage_on_every_link_is_resynchronised_and_nothing_wrong_is_recorded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As installed without the official EPCIS schemas (only the packaged 1.2 XSDs): the line's own checks stand.
    monkeypatch.delenv("LINESIDE_EPCIS_SCHEMAS", raising=False)
    result = await play("garbage", tmp_path)
    assert result.problems == []
    if result.reaction.state is None:
        assert result.reaction.alarms == []
    else:
        # Noise inside a Modbus answer costs that answer: the PLC link was taken for lost, the line held, and
        # the operator resumed it; every invariant still held (no problems above).
        assert result.reaction.state == "Held"
        assert any("a device link was lost to the noise" in note for note in result.notes)
        assert {device for _, device in result.reaction.alarms} == {"plc-1"}
    assert result.packs == RUN.units

