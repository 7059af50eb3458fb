"""`lineside bench faults`: the JSON object built from the scenarios' results, its text, and its input checks."""

from __future__ import annotations

from edge.cli import main
from edge.line.campaign import BASELINE, SCENARIOS, CampaignRun, Reaction, ScenarioResult, _bench_result, format_text


def result(name: str, seconds: float, *problems: str) -> ScenarioResult:
    title = BASELINE.title if name == BASELINE.name else SCENARIOS[name].title
    return ScenarioResult(name, title, problems=list(problems), seconds=seconds, packs=90, shipped=77, rejected=13,
                          reaction=Reaction("Held", [("hold-request", "printer-1")], 1.5, ["Unhold"]),
                          upstream={"attempts": 1})


def test_the_headline_counts_scenario_runs_with_every_invariant_holding_beside_the_clean_batch():
    runs = {"printer-disconnect": [result("printer-disconnect", 6.0)],
            "disk-full": [result("disk-full", 7.0, "serial X left sent at close")]}
    out = _bench_result(CampaignRun(units=90), [result("baseline", 5.0)], runs)
    assert out["headline"] == {"metric": "fault scenarios run with every invariant holding", "value": 1,
                               "unit": "runs", "target": 2}
    assert out["baseline"]["name"] == BASELINE.title
    assert (out["baseline"]["value"], out["baseline"]["unit"]) == (5.0, "s")
    disconnect = out["details"]["scenarios"]["printer-disconnect"]
    assert (disconnect["passed"], disconnect["time_lost_s"]) == (1, 1.0)
    assert disconnect["state_after_fault"] == ["Held"]
    assert disconnect["alarms"] == ["hold-request@printer-1"]
    assert out["details"]["scenarios"]["disk-full"]["problems"] == ["serial X left sent at close"]
    assert out["details"]["ok"] is False
    text = format_text(out)
    assert "problem: serial X left sent at close" in text
    assert "fault scenarios run with every invariant holding: 1 of 2" in text


def test_an_unknown_scenario_is_bad_input(capsys):
    assert main(["bench", "faults", "--scenario", "meteor-strike"]) == 2
    err = capsys.readouterr().err
    assert "unknown scenario meteor-strike" in err
    assert "printer-out-of-ink" in err
