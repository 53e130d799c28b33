"""Tests of the Aria import (`python -m sources.aria`) on a real Project Aria Gen1 recording: the 0.4 s AEA clip shipped
in tests/data/aria (see its README.md). Expected values come from reading the same VRS file here with
projectaria-tools directly, or from physics (gravity), never from the importer's own output."""
import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import data
from sources import aria
from model import IMUEncoder, IMUEncoderConfig

# projectaria-tools is optional (the Aria import alone needs it): without it every test here is skipped, by name
pytestmark = pytest.mark.skipif(importlib.util.find_spec("projectaria_tools") is None,
                                reason="needs projectaria-tools: pip install --no-deps projectaria-tools")

REPO = Path(__file__).resolve().parents[1]
VRS = REPO / "tests" / "data" / "aria" / "recording.vrs"
REC_ID = "aria"  # AEA's recording.vrs is named after its folder


def read_vrs(label):
    """Straight from projectaria-tools: (capture times ns (N,), recording start ns, provider)."""
    from projectaria_tools.core import data_provider
    from projectaria_tools.core.sensor_data import TimeDomain
    provider = data_provider.create_vrs_data_provider(str(VRS))
    sid = provider.get_stream_id_from_label(label)
    t_ns = np.array([provider.get_sensor_data_by_index(sid, i).get_time_ns(TimeDomain.DEVICE_TIME)
                     for i in range(provider.get_num_data(sid))])
    return t_ns, provider.get_first_time_ns_all_streams(TimeDomain.DEVICE_TIME), provider


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    """The clip imported twice, from imu-right and from imu-left: -> {"right": Recording, "left": Recording}."""
    out = tmp_path_factory.mktemp("aria")
    recs = {}
    for side in ("right", "left"):
        aria.import_aria([VRS], out / side, imu=side, size=64)
        recs[side] = data.read_recording(out / side / REC_ID)
    return recs


def test_import_is_a_valid_recording(imported):
    for side, rec in imported.items():
        assert rec.meta["source"] == "aria" and rec.meta["aria"]["imu_stream"] == f"imu-{side}"
        assert rec.meta["aria"]["device_version"] == "Gen1"
        assert "upright" in rec.meta["imu_frame"] and rec.meta["imu_units"] == {"acc": "m/s^2", "gyro": "rad/s"}
        assert rec.frames.shape[1:] == (64, 64, 3) and rec.narrations == []


@pytest.mark.parametrize("side", ["right", "left"])
def test_imu_spans_the_vrs_imu_at_its_native_rate(imported, side):
    rec = imported[side]
    t_ns, t0, _ = read_vrs(f"imu-{side}")
    rate = 1e9 / np.median(np.diff(t_ns))  # the VRS's own rate: 1 kHz right, 800 Hz left
    assert rec.meta["imu_rate_hz"] == pytest.approx(rate, rel=0.01) and not rec.meta["aria"]["imu_resampled"]
    assert len(rec.imu) == len(t_ns)
    assert abs(rec.imu_t[0] - (t_ns[0] - t0) / 1e9) < 1 / rate
    assert abs(rec.imu_t[-1] - (t_ns[-1] - t0) / 1e9) < 1 / rate


def test_every_frame_at_its_own_time_inside_the_imu_span(imported):
    t_ns, t0, _ = read_vrs("camera-rgb")
    for rec in imported.values():
        assert len(rec.frames) == len(t_ns) == 8
        np.testing.assert_allclose(rec.frames_t, (t_ns - t0) / 1e9, atol=1e-9)
        assert rec.imu_t[0] <= rec.frames_t[0] and rec.frames_t[-1] <= rec.imu_t[-1]


def test_both_imus_agree_and_gravity_points_up_the_upright_image(imported):
    acc = {side: rec.imu[:, :3].mean(axis=0) for side, rec in imported.items()}  # mean specific force
    assert np.linalg.norm(acc["right"] - acc["left"]) < 0.5  # two sensors, two calibrations, one head
    gyro = {side: rec.imu[:, 3:].mean(axis=0) for side, rec in imported.items()}
    assert np.linalg.norm(gyro["right"] - gyro["left"]) < 0.05  # one rigid body turns at one rate
    for a in acc.values():
        assert np.argmax(np.abs(a)) == 1 and -10.5 < a[1] < -8.0  # 'up' is -y: the top of the upright image


def test_frames_are_turned_so_that_gravity_points_to_their_top(imported):
    """The measured gravity in the raw camera frame (from projectaria-tools here) says how to turn the raw image;
    the imported frame must be that turn of the raw frame, resized."""
    _, _, provider = read_vrs("imu-right")
    calib = provider.get_device_calibration()
    imu_cal = calib.get_imu_calib("imu-right")
    R = (calib.get_camera_calib("camera-rgb").get_transform_device_camera().rotation().to_matrix().T
         @ imu_cal.get_transform_device_imu().rotation().to_matrix())  # imu -> raw camera frame
    sid = provider.get_stream_id_from_label("imu-right")
    up = np.mean([R @ imu_cal.raw_to_rectified_accel(np.array(provider.get_imu_data_by_index(sid, i).accel_msec2))
                  .ravel() for i in range(provider.get_num_data(sid))], axis=0)  # (3,) 'up' in raw image axes
    axis = int(np.argmax(np.abs(up[:2])))
    # up along raw -x: turn clockwise (k = -1); +x: counter-clockwise; -y: as is; +y: upside down
    k = {(0, -1): -1, (0, 1): 1, (1, -1): 0, (1, 1): 2}[axis, int(np.sign(up[axis]))]
    raw = provider.get_image_data_by_index(provider.get_stream_id_from_label("camera-rgb"), 0)[0].to_numpy_array()
    small = np.asarray(Image.fromarray(raw).resize((64, 64), Image.BICUBIC), np.float32)  # square: no crop
    err = {j: np.abs(np.rot90(small, j) - imported["right"].frames[0]).mean() for j in range(4)}
    assert err[k % 4] < 2.0 and all(err[j] > 10 for j in err if j != k % 4), err


def test_a_window_of_the_clip_goes_through_the_dataset_and_the_encoder(imported, tmp_path, monkeypatch):
    monkeypatch.setenv("IMU2CLIP_OFFLINE", "1")
    from clip_vendor import FrozenCLIP
    clip = FrozenCLIP("tiny")
    cfg = data.WindowConfig(window_sec=0.2, rate_hz=200, mode="sliding", stride_sec=0.1, val_frac=0, test_frac=0)
    rec = imported["right"]
    ds = data.WindowDataset(rec.path.parent, "all", cfg, clip, cache_dir=tmp_path / "cache")
    assert len(ds) >= 2 and ds.imu.shape[1:] == (6, 40) and ds.video_emb.shape[1] == clip.embed_dim
    start = float(ds.window_ids[0].split("@")[1])  # "<recording>@<start_sec>"
    first = rec.imu[(rec.imu_t >= start) & (rec.imu_t < start + 0.2)].mean(axis=0)  # from the 1 kHz recording
    np.testing.assert_allclose(ds.imu[0].mean(axis=1), first, atol=0.05)  # channel order and units survive
    encoder = IMUEncoder(IMUEncoderConfig(kernel_sizes=(3,), pool_kernel=2, channels=8, feature_groups=2,
                                          embed_dim=clip.embed_dim))
    z = encoder(ds.batch(np.arange(len(ds)))["imu"])
    assert z.shape == (len(ds), clip.embed_dim) and torch.isfinite(z).all()


def test_speech_inside_the_clip_becomes_narrations(tmp_path, capfd, monkeypatch):
    """speech.csv is on the VRS's device clock (the shipped one lies outside the cut); words written here at
    device times inside the clip, grouped at pauses, land at their utterance's middle."""
    t_ns, t0, _ = read_vrs("imu-right")
    monkeypatch.setattr(aria, "SPEECH_GAP_SEC", 0.1)
    words = [(80.0, 80.2, "before"), (86.38, 86.42, "pick"), (86.42, 86.45, "up"), (86.65, 86.70, "the"),
             (86.70, 86.72, '"cup,"'), (90.0, 90.4, "after")]  # device seconds; the clip is 86.35-86.75 s
    csv = tmp_path / "speech.csv"
    csv.write_text("startTime_ns,endTime_ns,written,confidence\n"
                   + "".join(f"{round(a * 1e9)},{round(b * 1e9)},{w},0.9\n" for a, b, w in words))
    capfd.readouterr()
    aria.main([str(VRS), "--out", str(tmp_path / "out"), "--size", "32", "--narrations", str(csv)])
    out, err = capfd.readouterr()
    assert err == "" and len(out.strip().splitlines()) == 1, (out, err)  # the reader's log stays out
    assert "2 kept / 2 dropped" in out
    rec = data.read_recording(tmp_path / "out" / REC_ID)
    assert [n["text"] for n in rec.narrations] == ["pick up", 'the cup,']
    # same clock: a narration's time after the first IMU sample equals its device time after that sample's
    expected = np.array([(86.38 + 86.45) / 2, (86.65 + 86.72) / 2]) - t_ns[0] / 1e9
    np.testing.assert_allclose([n["t"] - rec.imu_t[0] for n in rec.narrations], expected, atol=1e-6)


def test_a_truncated_vrs_imports_what_it_recovers(imported, tmp_path, capfd):
    cut = tmp_path / "cut.vrs"
    cut.write_bytes(VRS.read_bytes()[:int(0.6 * VRS.stat().st_size)])
    aria.main([str(cut), "--out", str(tmp_path / "out"), "--size", "64"])
    out, err = capfd.readouterr()
    assert err == "" and len(out.strip().splitlines()) == 1 and "truncated" in out, (out, err)
    rec, full = data.read_recording(tmp_path / "out" / "cut"), imported["right"]
    assert 0 < len(rec.imu) < len(full.imu) and 0 < len(rec.frames) < len(full.frames)
    assert rec.meta["aria"]["records_lost_to_truncation"] > 0
    np.testing.assert_array_equal(rec.imu, full.imu[:len(rec.imu)])  # the first part, unchanged
    np.testing.assert_array_equal(rec.frames_t, full.frames_t[:len(rec.frames)])


def bad_input(tmp_path, case, monkeypatch):
    """A VRS argument that is wrong in one way: -> (path, text the error line must hold)."""
    if case == "not_vrs":
        (tmp_path / "notes.vrs").write_text("this is not a VRS file\n" * 50)
        return tmp_path / "notes.vrs", "not a readable VRS file"
    if case == "empty":
        (tmp_path / "empty.vrs").write_bytes(b"")
        return tmp_path / "empty.vrs", "not a readable VRS file"
    if case == "directory":
        return tmp_path, "a directory"
    if case == "missing":
        return tmp_path / "nope.vrs", "missing file"
    if case == "no_rgb":  # the first 2% of the file: IMU samples, no RGB frame yet
        (tmp_path / "head.vrs").write_bytes(VRS.read_bytes()[:int(0.02 * VRS.stat().st_size)])
        return tmp_path / "head.vrs", "camera-rgb stream holds 0 record(s)"
    if case == "no_imu_stream":  # a label this file does not have (as if a future device named it otherwise)
        monkeypatch.setitem(aria.IMU_STREAMS, "right", "imu-centre")
        return VRS, "no imu-centre stream"
    for name in [m for m in sys.modules if m.split(".")[0] == "projectaria_tools"] + ["projectaria_tools"]:
        monkeypatch.setitem(sys.modules, name, None)  # case == "no_projectaria_tools": every import of it fails
    return VRS, "pip install --no-deps projectaria-tools"


@pytest.mark.parametrize("case", ["not_vrs", "empty", "directory", "missing", "no_rgb", "no_imu_stream",
                                  "no_projectaria_tools"])
def test_bad_input_is_one_line_and_exit_2(tmp_path, capfd, monkeypatch, case):
    path, expected = bad_input(tmp_path, case, monkeypatch)
    with pytest.raises(SystemExit) as e:
        aria.main([str(path), "--out", str(tmp_path / "out")])
    err = capfd.readouterr().err
    lines = err.strip().splitlines()
    assert e.value.code == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("error:") and expected in lines[0], err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_projectaria_tools_is_imported_only_by_the_aria_command():
    code = "import sys, data, model, train, evaluate; assert 'projectaria_tools' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, timeout=120)


def test_a_speech_file_without_its_header_is_refused(tmp_path):
    for name, text in (("empty.csv", ""), ("other.csv", "foo,bar\n")):
        (tmp_path / name).write_text(text)
        with pytest.raises(data.DataError, match="startTime_ns,endTime_ns,written"):
            aria._read_speech(tmp_path / name, 0, 10.0)
