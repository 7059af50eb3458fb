"""The camera renderer and the simulated camera, held to the severity contract with our decoder and grader."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime

import numpy as np
import pytest
import structlog

from drivers.base import DriverContext
from drivers.camera.simulated import SimulatedCamera, wrong_code
from drivers.transport.spec import TransportSpec
from edge.errors import TransientDeviceError
from edge.gs1.element import parse
from edge.vision.decode import Decoder, DecoderOptions
from edge.vision.grade import grade, meets
from simulators.camera_render import register_world, render, symbol_modules, unregister_world
from simulators.defects import Defect, DefectKind
from simulators.printer import Printed
from simulators.world import LineWorld, SimProduct

GS = "\x1d"
CODE = "0109506000134352" + "17281231" + "10LOT42" + GS + "21ABC123XYZ0001"
EARLIER = "0109506000134352" + "17281231" + "10LOT42" + GS + "21ABC123XYZ0000"
OPTICAL = [DefectKind.BLUR, DefectKind.LOW_CONTRAST, DefectKind.DAMAGE, DefectKind.INK_SPREAD, DefectKind.SMUDGE]
AT = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
HANG_GUARD_S = 10.0


def read(image):
    return Decoder(DecoderOptions(fallback=False)).decode(image).symbols


def test_frame_shape_and_determinism():
    a = render([CODE], [], size=(640, 480), rng=random.Random(3))
    b = render([CODE], [], size=(640, 480), rng=random.Random(3))
    assert a.shape == (480, 640)
    assert a.dtype == np.uint8
    assert np.array_equal(a, b)
    assert not np.array_equal(a, render([CODE], [], size=(640, 480), rng=random.Random(4)))


def test_symbols_are_real_square_gs1_datamatrix():
    modules = symbol_modules(CODE)
    assert modules.shape[0] == modules.shape[1]
    (symbol,) = read(render([CODE], [], rng=random.Random(1)))
    assert symbol.symbology_identifier == "]d2"
    assert symbol.text == CODE.encode()
    short = "010950600013435221A"
    assert symbol_modules(short).shape[0] == symbol_modules(short).shape[1]  # square even when a rectangle fits


@pytest.mark.parametrize("kind", OPTICAL)
def test_mild_defects_still_read_at_c_or_better(kind):
    for seed in range(4):
        image = render([CODE], [Defect(kind, 0.3)], rng=random.Random(seed))
        symbols = read(image)
        assert symbols, (kind, seed)
        assert symbols[0].text == CODE.encode(), (kind, seed)
        assert meets(grade(image, symbols[0]), "C"), (kind, seed, grade(image, symbols[0]))


@pytest.mark.parametrize("kind", OPTICAL)
def test_full_defects_are_unreadable_or_below_c(kind):
    for seed in range(4):
        image = render([CODE], [Defect(kind, 1.0)], rng=random.Random(seed))
        symbols = read(image)
        assert not symbols or not meets(grade(image, symbols[0]), "C"), (kind, seed)


@pytest.mark.parametrize("kind", [DefectKind.ROTATION, DefectKind.PERSPECTIVE])
def test_geometry_defects_read(kind):
    for seed in range(4):
        symbols = read(render([CODE], [Defect(kind, 1.0)], rng=random.Random(seed)))
        assert symbols
        assert symbols[0].text == CODE.encode()


def test_missing_and_two_codes():
    assert read(render([CODE], [Defect(DefectKind.MISSING)], rng=random.Random(0))) == ()
    assert read(render([], [], rng=random.Random(0))) == ()
    for seed in range(4):
        texts = sorted(s.text for s in read(render([CODE, EARLIER], [], rng=random.Random(seed))))
        assert texts == sorted([CODE.encode(), EARLIER.encode()]), seed


def test_wrong_code_changes_the_lot_or_the_gtin():
    assert parse(wrong_code(CODE)).get("10") != "LOT42"
    assert parse(wrong_code(CODE)).get("21") == "ABC123XYZ0001"
    changed = parse(wrong_code("010950600013435221XYZ"))
    assert changed.get("01") != "09506000134352"
    assert changed.get("21") == "XYZ"


# -- the simulated camera --------------------------------------------------------------------------------------


def make_camera(world_name="test-line"):
    context = DriverContext(device_id="camera-1", transport=TransportSpec(url="socket://127.0.0.1:1"),
                            events=_no_events, log=structlog.get_logger(), clock=lambda: AT)
    return SimulatedCamera(context, SimulatedCamera.Options(world=world_name))


async def _no_events(_event):
    return None


def serial(n):
    return "0109506000134352" + "17281231" + "10LOT42" + GS + f"21SN{n:04d}"


def pack(seq, code, *defects):
    printed = None if code is None else Printed(seq=seq, job="SERIAL", fields=(("CODE", code),))
    return SimProduct(seq=seq, entered=0, printed=printed, defects=tuple(defects))


@pytest.fixture
def world():
    line = LineWorld()
    line.products.extend([
        pack(1, serial(1)),
        pack(2, serial(2)),
        pack(3, serial(3), Defect(DefectKind.WRONG_CODE)),
        pack(4, serial(4), Defect(DefectKind.DUPLICATE)),
        pack(5, serial(5), Defect(DefectKind.TWO_CODES)),
        pack(6, serial(6), Defect(DefectKind.MISSING)),
        pack(7, None),
    ])
    register_world("test-line", line)
    yield line
    unregister_world("test-line")


async def test_connect_fails_without_a_world():
    camera = make_camera("nowhere")
    with pytest.raises(TransientDeviceError, match="nowhere"):
        await camera.connect()
    await camera.close()


async def test_capture_renders_each_pack_with_its_data_defects(world):
    camera = make_camera()
    await camera.connect()
    texts = {}
    async with asyncio.timeout(HANG_GUARD_S):
        for seq in range(1, 8):
            frame = await camera.capture(seq)
            assert frame.product == seq
            assert frame.seq == seq
            assert frame.at == AT
            assert frame.image.shape == (1024, 1280)
            texts[seq] = sorted(s.text_str for s in read(frame.image))
        with pytest.raises(TransientDeviceError, match="99"):
            await camera.capture(99)
    assert texts[2] == [serial(2)]
    assert texts[3] == [wrong_code(serial(3))]
    assert texts[4] == [serial(3)]  # what pack 3 really carried: the wrong code was only in the picture
    assert texts[5] == sorted([serial(5), serial(4)])
    assert texts[6] == []
    assert texts[7] == []
    again = await camera.capture(2)
    assert np.array_equal(again.image, (await camera.capture(2)).image)
    await camera.close()


async def test_run_ends_when_the_world_goes(world):
    waits = []

    async def sleep(seconds):
        waits.append(seconds)
        unregister_world("test-line")
        await asyncio.sleep(0)

    context = DriverContext(device_id="camera-1", transport=TransportSpec(url="socket://127.0.0.1:1"),
                            events=_no_events, log=structlog.get_logger(), clock=lambda: AT, sleep=sleep)
    camera = SimulatedCamera(context, SimulatedCamera.Options(world="test-line"))
    await camera.connect()
    async with asyncio.timeout(HANG_GUARD_S):
        with pytest.raises(TransientDeviceError, match="gone"):
            await camera.run()
    assert waits == [1.0]
    await camera.close()


def test_options_refuse_unknown_keys():
    with pytest.raises(ValueError, match="extra"):
        SimulatedCamera.Options.model_validate({"world": "x", "fps": 30})
