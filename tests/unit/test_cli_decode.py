"""`lineside decode` on image files and `lineside bench decode --json` with a few frames."""

from __future__ import annotations

import json
import random

import cv2

from edge.cli import main
from edge.vision.bench import bench_decode
from simulators.camera_render import render
from simulators.defects import Defect, DefectKind

GS = "\x1d"
CODE = "0109506000134352" + "17281231" + "10LOT42" + GS + "21ABC123XYZ0001"


def write(path, codes, defects=()):
    assert cv2.imwrite(str(path), render(codes, list(defects), rng=random.Random(1)))
    return str(path)


def test_json_output_per_image(tmp_path, capsys):
    good = write(tmp_path / "good.png", [CODE])
    assert main(["decode", good, "--json"]) == 0
    (result,) = json.loads(capsys.readouterr().out)
    assert result["image"] == good
    assert result["ms"] > 0
    assert result["found_by"] == "frame"
    (symbol,) = result["symbols"]
    assert symbol["text"] == CODE  # GS kept, as U+001D in the JSON text
    assert symbol["symbology_identifier"] == "]d2"
    assert symbol["format"] == "DataMatrix"
    assert symbol["gs1"]["ok"] is True
    assert [e["ai"] for e in symbol["gs1"]["elements"]] == ["01", "17", "10", "21"]
    assert symbol["grade"]["overall"] in {"A", "B"}
    assert symbol["grade"]["parameters"]["symbol_contrast"]["letter"] in {"A", "B"}
    assert len(symbol["position"]) == 4
    assert all(len(p) == 2 for p in symbol["position"])


def test_gs1_errors_are_reported(tmp_path, capsys):
    bad_check_digit = CODE.replace("09506000134352", "09506000134353")
    path = write(tmp_path / "bad.png", [bad_check_digit])
    assert main(["decode", path, "--json"]) == 0  # a symbol was read; the data's faults are in the report
    (symbol,) = json.loads(capsys.readouterr().out)[0]["symbols"]
    assert symbol["gs1"]["ok"] is False
    assert symbol["gs1"]["errors"]


def test_exit_codes_and_human_output(tmp_path, capsys):
    good = write(tmp_path / "good.png", [CODE])
    empty = write(tmp_path / "empty.png", [], [Defect(DefectKind.MISSING)])
    assert main(["decode", good, empty]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"{good}: ]d2 ")
    assert "<GS>" in out[0]
    assert "grade " in out[0]
    assert out[1].startswith(f"{empty}: no symbol")

    junk = tmp_path / "junk.png"
    junk.write_text("not an image")
    assert main(["decode", good, str(junk), str(tmp_path / "absent.png")]) == 2
    err = capsys.readouterr().err
    assert str(junk) in err
    assert "absent.png" in err


def test_roi_and_flags(tmp_path, capsys):
    good = write(tmp_path / "good.png", [CODE])
    assert main(["decode", good, "--json", "--roi", "0,0,100,100", "--try-rotate", "--try-invert"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["found_by"] == "frame"  # nothing in the ROI: whole frame


def test_bench_json_shape():
    result = bench_decode(frames=3)
    head, base = result["headline"], result["baseline"]
    assert head["unit"] == "ms"
    assert head["target"] == 2.0
    assert head["value"] > 0
    assert base["unit"] == "ms"
    assert base["name"]
    assert base["value"] > 0
    for name in ("clean", "degraded"):
        row = result["details"]["sets"][name]
        for decoder in ("ours", "ours_track_last_hit", "zxing_cpp_default", "pylibdmtx"):
            assert set(row[decoder]) == {"frames", "median_ms", "p99_ms", "max_ms", "read_rate"}
            assert row[decoder]["frames"] == 3
    json.dumps(result)


def test_bench_through_the_command_line(capsys):
    assert main(["bench", "decode", "--frames", "2", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["headline"]["unit"] == "ms"
