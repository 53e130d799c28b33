"""Tests of the Ego4D import (sources/ego4d.py) on a tiny Ego4D-shaped download built here: an IMU CSV
with missing timestamps, NaN accelerations, shuffled and duplicated rows, a narration.json with both
passes, and a 3-second mp4 written here with PyAV (the decoder the importer uses; no ffmpeg command needed)."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import data
from sources import ego4d

REPO = Path(__file__).resolve().parents[1]
UID = "0a1b2c3d-test"
HEADER = "component_idx,component_timestamp_ms,canonical_timestamp_ms,gyro_x,gyro_y,gyro_z,accl_x,accl_y,accl_z"


def write_mp4(path, frames, fps):
    """frames (F, H, W, 3) uint8 RGB -> an H.264 mp4 at fps, as Ego4D's videos are encoded (yuv420p)."""
    import av
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        for image in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode())  # flush the encoder


def write_csv(path, rows, header=HEADER):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join([header] + [",".join(str(v) for v in r) for r in rows]) + "\n")


def imu_rows():
    """200 Hz for 3 s; accl_x = t, accl_y = 2t, gyro_x = -t (t in seconds), shuffled and damaged."""
    rows = []
    for k in range(600):
        t = k * 5.0  # ms
        s = t / 1000
        acc = ("NaN", "", "NaN") if 1000 < t < 1300 else (s, 2 * s, 1.0)  # missing accel: a 0.3 s hole
        rows.append([0, t, t, -s, 0.5, 0.25, *acc])
    rows += [rows[k] for k in (10, 11, 12, 400)]  # 4 exact duplicates
    rows += [[0, 9.0, "", 1, 1, 1, 1, 1, 1], [0, 9.0, "NULL", 1, 1, 1, 1, 1, 1]]  # no canonical timestamp
    rows.append([0, 60000.0, 60000.0, 1, 1, 1, 1, 1, 1])  # far after the 3 s video: an extreme timestamp
    rng = np.random.default_rng(0)
    return [rows[i] for i in rng.permutation(len(rows))]


@pytest.fixture(scope="module")
def ego4d_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("ego4d")
    write_csv(root / "v1" / "imu" / f"{UID}.csv", imu_rows())
    # 3 s at 30 fps of a 160x120 blue video with a red 120x120 square in its centre: a centre square crop sees red
    frames = np.zeros((90, 120, 160, 3), np.uint8)
    frames[..., 2] = 255
    frames[:, :, 20:140] = (255, 0, 0)
    write_mp4(root / "v1" / "full_scale" / f"{UID}.mp4", frames, fps=30)
    narrations = {UID: {
        "narration_pass_1": {"narrations": [
            {"timestamp_sec": 2.2, "timestamp_frame": 66, "narration_text": "#C C picks a cup"},
            {"timestamp_sec": 0.5, "timestamp_frame": 15, "narration_text": "#C C opens #unsure"},
            {"timestamp_sec": 1.2, "timestamp_frame": 36, "narration_text": "#O man talks"}],
            "summaries": []},
        "narration_pass_2": {"narrations": [
            {"timestamp_sec": 1.5, "timestamp_frame": 45, "narration_text": "#C  C looks around"}],
            "summaries": []},
    }, "other-video": {"narration_pass_1": {"narrations": [], "summaries": []}}}
    (root / "v1" / "annotations").mkdir(parents=True)
    (root / "v1" / "annotations" / "narration.json").write_text(json.dumps(narrations))
    return root


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "sources.ego4d", *map(str, args)], capture_output=True,
                          text=True, cwd=REPO, timeout=120)


@pytest.fixture(scope="module")
def imported(ego4d_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("imported")
    proc = run_cli("--root", ego4d_root, "--out", out, "--size", 32)
    assert proc.returncode == 0, proc.stderr
    return out, json.loads(proc.stdout)


def test_import_counts(imported):
    _, report = imported
    rep = report["videos"][UID]
    assert rep["rows"] == 607
    assert rep["dropped_missing_timestamp"] == 2
    assert rep["dropped_duplicate_timestamp"] == 4
    assert rep["dropped_missing_values"] == 59  # samples strictly between 1000 and 1300 ms
    assert rep["dropped_outside_video"] == 1 and rep["t_max_sec"] == 60.0
    assert rep["out_of_order"] > 0
    assert rep["kept"] == 600 - 59
    assert (rep["narrations_total"], rep["narrations_kept"], rep["frames"]) == (4, 3, 30)


def test_imported_recording(imported):
    out, _ = imported
    rec = data.read_recording(out / UID)
    t = rec.imu_t
    assert np.all(np.diff(t) > 0) and len(t) == 541
    # acc then gyro, values on their own timestamps, the NaN rows removed (a gap, never zeros)
    np.testing.assert_allclose(rec.imu[:, 0], t, atol=1e-6)
    np.testing.assert_allclose(rec.imu[:, 1], 2 * t, atol=1e-6)
    np.testing.assert_allclose(rec.imu[:, 3], -t, atol=1e-6)
    assert not ((t > 1.0) & (t < 1.3)).any() and np.diff(t).max() == pytest.approx(0.3)
    assert rec.frames.shape == (30, 32, 32, 3)
    np.testing.assert_allclose(rec.frames_t, np.arange(30) / 10)
    red = rec.frames.reshape(-1, 3).mean(axis=0)
    assert red[0] > 200 and red[2] < 40  # the centre square crop removed the blue side bands
    assert rec.narrations == [{"t": 0.5, "text": "#C C opens #unsure"}, {"t": 1.5, "text": "#C  C looks around"},
                              {"t": 2.2, "text": "#C C picks a cup"}]
    assert rec.meta["source"] == "ego4d" and "uncalibrated" in rec.meta["imu_units"]["acc"]


class ConstantCLIP:
    """The FrozenCLIP interface with constant embeddings: enough to index windows."""

    embed_dim, fingerprint = 2, "constant"

    def embed_images(self, frames):
        return np.ones((len(frames), 2), np.float32)

    def embed_texts(self, texts):
        return np.ones((len(texts), 2), np.float32)


def test_imported_recording_makes_windows(imported, tmp_path):
    out, _ = imported
    cfg = data.WindowConfig(window_sec=1.0, rate_hz=100.0, max_gap_sec=0.1)
    ds = data.WindowDataset(out, "all", cfg, ConstantCLIP(), cache_dir=tmp_path / "cache")
    assert ds.report["dropped"]["imu_gap"] == 1  # the 1.5 s window [1.0, 2.0) spans the NaN hole
    assert ds.texts == [data.clean_narration("#C C opens #unsure"), data.clean_narration("#C C picks a cup")]
    np.testing.assert_allclose(ds.imu[1, 0], 1.7 + np.arange(100) / 100, atol=1e-4)


def bad_download(ego4d_root, root, case):
    """A copy of the fixture's video with an IMU CSV (or mp4) broken in one way: -> the broken file."""
    (root / "v1" / "full_scale").mkdir(parents=True)
    mp4 = root / "v1" / "full_scale" / f"{UID}.mp4"
    csv = root / "v1" / "imu" / f"{UID}.csv"
    shutil.copy(ego4d_root / "v1" / "full_scale" / f"{UID}.mp4", mp4)
    rows = [[0, t, t, 0, 0, 0, 1, 2, 3] for t in range(0, 3000, 5)]
    if case == "missing_column":
        write_csv(csv, [r[:-1] for r in rows], header=HEADER.rsplit(",", 1)[0])
    elif case == "empty_csv":
        write_csv(csv, [])
        csv.write_text("")
    elif case == "all_nan_timestamps":
        write_csv(csv, [[0, r[1], "NaN", *r[3:]] for r in rows])
    else:
        write_csv(csv, rows)
        mp4.write_bytes(b"this is not an mp4" * 100)
    return mp4 if case == "unreadable_mp4" else csv


def one_line(stderr, name):
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in stderr and name in lines[0], stderr
    return lines[0]


@pytest.mark.parametrize("case, expected", [("missing_column", "missing column(s) accl_z"),
                                            ("empty_csv", "empty file"),
                                            ("all_nan_timestamps", "every canonical_timestamp_ms is missing"),
                                            ("unreadable_mp4", "could not decode it")])
def test_bad_input_is_one_line(ego4d_root, tmp_path, capsys, case, expected):
    # the CLI's own code path, in process (a subprocess per case would mostly time the torch import)
    bad = bad_download(ego4d_root, tmp_path / "bad", case)
    with pytest.raises(SystemExit) as e:
        ego4d.main(["--root", str(tmp_path / "bad"), "--out", str(tmp_path / "out"), "--videos", UID])
    assert e.value.code == 2
    assert expected in one_line(capsys.readouterr().err, str(bad))


def test_bad_input_through_a_real_process(ego4d_root, tmp_path):
    bad = bad_download(ego4d_root, tmp_path / "bad", "unreadable_mp4")
    proc = run_cli("--root", tmp_path / "bad", "--out", tmp_path / "out")
    assert proc.returncode == 2
    assert "could not decode it" in one_line(proc.stderr, str(bad))


def test_import_needs_no_ffmpeg_command(ego4d_root, tmp_path):
    """Decoding is in-process (PyAV): the import works with a PATH that holds no ffmpeg, or anything else."""
    (tmp_path / "empty").mkdir()
    proc = subprocess.run([sys.executable, "-m", "sources.ego4d", "--root", str(ego4d_root), "--out",
                           str(tmp_path / "out"), "--size", "32"], capture_output=True, text=True, cwd=REPO,
                          timeout=120, env={**os.environ, "PATH": str(tmp_path / "empty")})
    assert proc.returncode == 0, proc.stderr
    assert data.read_recording(tmp_path / "out" / UID).frames.shape == (30, 32, 32, 3)


def test_csv_variants_and_narration_shapes_that_real_files_have(tmp_path):
    rows = ["0,1,2,3,4,5,6", "", "5,1,2,3,4,5,6", "", "", "10,1,2,3,4,5,6"]
    header = ",".join(ego4d.COLUMNS)
    variants = {"bom": ("\ufeff" + header, rows), "quoted": (",".join(f'"{c}"' for c in ego4d.COLUMNS),
                                                               [",".join(f'"{v}"' for v in r.split(",")) if r else ""
                                                                for r in rows])}
    for name, (head, body) in variants.items():
        (tmp_path / f"{name}.csv").write_text("\r\n".join([head, *body]) + "\r\n", encoding="utf-8")
        t, v = ego4d._read_csv(tmp_path / f"{name}.csv", chunk_rows=2)  # a chunk of blank lines: not the end
        assert t.tolist() == [0, 5, 10] and v.tolist() == [[1, 2, 3, 4, 5, 6]] * 3, name
    # a bad row is reported among the file's own line numbers, blank lines and skipped chunks counted
    (tmp_path / "bad.csv").write_text("\n".join([header, "0,1,2,3,4,5,6", "", "", "", "5,1,2,x", "7,1,2,3,4,5,6"]))
    with pytest.raises(data.DataError, match="among lines 6-7"):
        ego4d._read_csv(tmp_path / "bad.csv", chunk_rows=2)
    # two rows at one time: the complete one is kept, whichever comes first
    t, v, report = ego4d._clean_imu("x.csv", np.array([0.0, 5.0, 5.0, 10.0]),
                                         np.array([[1.0] * 6, [np.nan] * 6, [2.0] * 6, [3.0] * 6]), 60.0)
    assert t.tolist() == [0, 0.005, 0.01] and v[1].tolist() == [2.0] * 6 and report["dropped_missing_values"] == 0
    entry = {"narration_pass_1": {"narrations": None}, "narration_pass_2": {"narrations": [
        {"narration_text": "#C C walks", "timestamp_sec": 1.0}]}}
    assert ego4d._narrations("n.json", {"u": entry}, "u") == ([{"t": 1.0, "text": "#C C walks"}], 1)


def test_a_size_below_one_pixel_is_refused_from_python_too(ego4d_root, tmp_path):
    with pytest.raises(data.DataError, match="--size 0: must be a positive number"):
        ego4d.import_ego4d(ego4d_root, tmp_path / "out", size=0)
    assert not (tmp_path / "out").exists()


@pytest.fixture(scope="module")
def three_videos(ego4d_root, tmp_path_factory):
    """The fixture's video and IMU under three uids."""
    root = tmp_path_factory.mktemp("three")
    shutil.copytree(ego4d_root, root, dirs_exist_ok=True)
    for uid in ("b-second", "c-third"):
        shutil.copy(root / "v1" / "imu" / f"{UID}.csv", root / "v1" / "imu" / f"{uid}.csv")
        shutil.copy(root / "v1" / "full_scale" / f"{UID}.mp4", root / "v1" / "full_scale" / f"{uid}.mp4")
    return root


def files(out):
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def test_workers_write_the_same_recordings(three_videos, tmp_path):
    one = ego4d.import_ego4d(three_videos, tmp_path / "one", size=32)
    two = ego4d.import_ego4d(three_videos, tmp_path / "two", size=32, workers=2)
    assert one == two and len(one["videos"]) == 3
    assert files(tmp_path / "one") == files(tmp_path / "two")


def test_an_interrupted_import_resumes_and_skips_what_it_wrote(three_videos, tmp_path, monkeypatch):
    decode, decoded = ego4d._decode_video, []

    def decode_two_then_die(mp4, *args):
        if len(decoded) == 2:
            raise KeyboardInterrupt
        decoded.append(mp4.stem)
        return decode(mp4, *args)

    monkeypatch.setattr(ego4d, "_decode_video", decode_two_then_die)
    with pytest.raises(KeyboardInterrupt):
        ego4d.import_ego4d(three_videos, tmp_path / "out", size=32)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(decoded)  # nothing half-written
    monkeypatch.setattr(ego4d, "_decode_video", decode)
    report = ego4d.import_ego4d(three_videos, tmp_path / "out", size=32)
    assert sorted(report["skipped"]) == sorted(decoded) and len(report["videos"]) == 1
    ego4d.import_ego4d(three_videos, tmp_path / "clean", size=32)  # the same import, never interrupted
    assert files(tmp_path / "out") == files(tmp_path / "clean")
    with pytest.raises(data.DataError, match="already imported with --size 32"):
        ego4d.import_ego4d(three_videos, tmp_path / "out", size=16)


def test_a_lower_fps_keeps_fewer_frames_and_windows_use_the_nearest(ego4d_root, tmp_path):
    ego4d.import_ego4d(ego4d_root, tmp_path / "out", size=32, fps=2)
    rec = data.read_recording(tmp_path / "out" / UID)
    assert rec.frames.shape == (6, 32, 32, 3) and rec.meta["video_fps"] == 2
    np.testing.assert_allclose(rec.frames_t, np.arange(6) / 2)  # frame k at k / fps
    cfg = data.WindowConfig(window_sec=0.5, rate_hz=100.0, max_gap_sec=0.1)
    ds = data.WindowDataset(tmp_path / "out", "all", cfg, ConstantCLIP(), cache_dir=tmp_path / "cache")
    centres = [float(w.split("@")[1]) + 0.25 for w in ds.window_ids]  # windows centred on 0.5 s and 2.2 s
    assert [f for _, f in ds.frame_index] == [int(np.argmin(np.abs(rec.frames_t - c))) for c in centres] == [1, 4]


def test_narrations_of_the_camera_wearer_are_kept_in_any_case():
    # the official filter keeps a narration when "#c" is in it, in any case; "#O" narrations about others are not kept
    entry = {"narration_pass_1": {"narrations": [
        {"narration_text": text, "timestamp_sec": float(t)} for t, text in enumerate(
            ["#C C picks a cup.", "#c c opens the door", "#O man X talks", "#O woman Y gives #C C a cup", "#Unsure"])]}}
    kept, total = ego4d._narrations("n.json", {"u": entry}, "u")
    assert total == 5 and [n["text"] for n in kept] == ["#C C picks a cup.", "#c c opens the door",
                                                         "#O woman Y gives #C C a cup"]
