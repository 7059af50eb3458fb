"""`lineside bench line`: the JSON shape of a tiny run (the rate and latency are the benchmark's, not a test's)."""

from __future__ import annotations

import functools
import json

import numpy as np
import pytest

from drivers.camera.simulated import codes_in_view, frame_rng
from edge.cli import main
from edge.line import bench_line
from simulators.camera_render import render, render_sparse
from simulators.defects import Defect, DefectKind

GS = "\x1d"
CODE = "0104012345000016" + "21ABCDEF123456" + GS + "10BENCH1" + GS + "17281031"
EARLIER = "0104012345000016" + "21ABCDEF123455" + GS + "10BENCH1" + GS + "17281031"


def test_bench_line_json_shape(capsys, monkeypatch):
    # Frames rendered in threads (no process pool to start) and a short ramp: a few seconds of belt in all.
    monkeypatch.setattr(bench_line, "LineBenchRun",
                        functools.partial(bench_line.LineBenchRun, render_workers=0, ramp_s=0.5))
    code = main(["bench", "line", "--ppm", "600", "--seconds", "3", "--defect-every", "4", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0  # no pack judged wrong, no bad pack through, whatever the machine's speed
    head, base, details = out["headline"], out["baseline"], out["details"]
    assert head["metric"] == "packs per minute through the whole line (print, inspect, reject, durable state)"
    assert head["unit"] == "ppm"
    assert head["target"] == 3000
    assert head["value"] == (details["rate"]["achieved_ppm"] if details["ok"] else 0)
    assert base == {"name": "rate asked for", "value": 600.0, "unit": "ppm"}
    assert out["judged_right"] is True
    assert details["packs_asked"] == 30
    assert details["setup"]["aggregation"] is True
    assert details["setup"]["defect_mix"]  # rejects are exercised
    verdicts = details["verdicts"]
    assert verdicts["wrong"] == 0
    assert verdicts["missed_rejects"] == 0
    assert verdicts["shipped"] + verdicts["rejected"] == details["rate"]["packs_off_belt"]
    assert details["frames"]["prerendered"] == 30
    assert details["frames"]["rendered_during_run"] == 0
    for figures in (details["latency"], details["trigger_to_decision"]):
        assert set(figures) == {"count", "p50_ms", "p99_ms", "max_ms"}
    assert set(details["latency_by_pack_class"]) == {"clean", "cosmetic", "reject-worthy"}
    assert {"cores_used", "cores", "of_machine_percent", "threads_core_share"} <= set(details["cpu"])
    assert {"commits", "changes", "commits_per_s", "changes_per_commit"} <= set(details["store"])
    assert {"pitch_ms", "camera_to_reject_ms", "plc_poll_ms", "printer_buffer_ms"} <= set(details["limits"])
    assert isinstance(details["failures"], list)
    assert details["ok"] is (not details["failures"])
    assert len(details["machine"]["loadavg_before"]) == 3


@pytest.mark.parametrize("kind", [None, DefectKind.BLUR, DefectKind.ROTATION, DefectKind.TWO_CODES,
                                  DefectKind.MISSING])
def test_a_prerendered_frame_is_the_frame_the_camera_would_render(kind):
    defects = () if kind is None else (Defect(kind),)
    codes = codes_in_view(CODE, EARLIER, {d.kind for d in defects})
    sparse = render_sparse(codes, defects, size=(640, 480), rng=frame_rng(0, 7))
    frame = render(codes, defects, size=(640, 480), rng=frame_rng(0, 7))
    assert np.array_equal(sparse.image(), frame)
    assert sparse.patch.size < frame.size / 2  # what is kept is the code's patch, not the frame


def test_bench_line_text_names_the_figures():
    result = {"headline": {"metric": "m", "value": 0, "unit": "ppm", "target": 3000},
              "baseline": {"name": "rate asked for", "value": 600.0, "unit": "ppm"},
              "details": _details()}
    text = bench_line.format_text(result)
    assert "rate asked for: 600 ppm" in text
    assert "p99 frame to decision" in text


@pytest.mark.parametrize("argv", [["--ppm", "0"], ["--seconds", "-1"]])
def test_bench_line_refuses_a_rate_or_time_that_is_not_positive(argv, capsys):
    assert main(["bench", "line", *argv]) == 2
    assert "lineside bench line:" in capsys.readouterr().err


def _details() -> dict[str, object]:
    percentiles = {"count": 1, "p50_ms": 1.0, "p99_ms": 1.0, "max_ms": 1.0}
    return {
        "rate": {"packs_off_belt": 10, "achieved_ppm": 590, "seconds": 1.0},
        "latency": percentiles,
        "trigger_to_decision": percentiles,
        "latency_by_pack_class": {"clean": percentiles},
        "verdicts": {"shipped": 9, "rejected": 1, "wrong": 0, "missed_rejects": 0, "late": 0},
        "cpu": {"cores_used": 0.5, "cores": 2, "of_machine_percent": 25.0, "threads_core_share": {"MainThread": 0.4}},
        "store": {"commits_per_s": 10.0, "changes_per_commit": 1.2},
        "limits": {"camera_to_reject_ms": 500.0},
        "machine": {"loadavg_before": [1.0, 1.0, 1.0], "loadavg_after": [1.0, 1.0, 1.0]},
        "failures": ["p99 frame to decision 25 ms > 20 ms"],
    }
