"""Tests of the recording format (data.py, section 1) and the synthetic egocentric world (sources/world/).

The physics checks compare the written sensors with the true head trajectory: gravity in the accelerometer,
gyro integration, double integration of the accelerometer, and the horizon in rendered frames.

Run: .venv/bin/python -m pytest -q tests/test_world.py
"""
import json
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import data
from evaluate import draw_signals
from sources import world
from sources.world import __main__ as world_cli, motion, people, scenes

CFG = world.SynthConfig(recordings=3, minutes=0.5, width=24, height=24, workers=1)
TOUR = data.ACTIVITIES  # a posture-consistent sequence: ... sitting down, standing up, ...

# Words that a narration of each activity must contain one of.
VERBS = {"walking": ("walk", "stroll", "moves", "turns"), "running": ("run", "jog"),
         "standing still": ("stand", "pause", "wait"), "sitting down": ("sit", "seat", "rests"),
         "standing up": ("stand", "gets up", "rises"), "looking around": ("look", "glance", "scan"),
         "climbing stairs": ("up", "down", "climb", "descend")}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    return out, world.synthesize(out, CFG)


@pytest.fixture(scope="module")
def tour():
    """One recording that goes through every activity, with its ground truth, sensed at the IMU rate."""
    plan, traj, scene, rec = world.synthesize_recording(CFG, 0, activities=TOUR)
    step = int(round(CFG.sim_rate_hz / CFG.imu_rate_hz))
    k = np.arange(len(rec["imu"])) * step  # IMU samples on the dense grid
    bias = np.array(rec["meta"]["imu_bias"]["acc"] + rec["meta"]["imu_bias"]["gyro"])
    return plan, rec, rec["imu"] - bias, traj.p[k], traj.v[k], traj.R[k]


@pytest.fixture(scope="module")
def tour_world():
    """The same tour with its full trajectory and scene."""
    plan, traj, scene, rec = world.synthesize_recording(CFG, 0, activities=TOUR)
    return plan, traj, scene, rec


def _segment(plan, label):
    return next(s for s in plan.segments if s.label == label)


def _so3_exp(w):
    """Rotation matrix of the rotation vector w (3,)."""
    angle = np.linalg.norm(w)
    if angle < 1e-12:
        return np.eye(3)
    k = w / angle
    K = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + np.sin(angle) * K + (1 - np.cos(angle)) * K @ K


def _angle(Ra, Rb):
    return np.arccos(np.clip((np.trace(Ra.T @ Rb) - 1) / 2, -1, 1))


def test_accelerometer_at_rest_reads_gravity_in_the_sensor_frame(tour):
    plan, rec, imu, p, v, R = tour
    s = _segment(plan, "standing still")
    rest = np.flatnonzero((rec["imu_t"] > s.start + 1.5) & (rec["imu_t"] < s.end - 0.5))
    acc = imu[rest, :3]
    norm = np.linalg.norm(acc, axis=1)
    assert abs(norm.mean() - motion.G) < 0.02
    assert np.all(np.abs(norm - motion.G) < 6 * CFG.acc_noise + 0.1)  # noise + micro-sway
    up_in_sensor = R[rest, 2, :]  # R^T (0, 0, 1): the world z axis in sensor coordinates, (M, 3)
    cos = (acc * up_in_sensor).sum(axis=1) / norm
    assert np.mean(cos) > 0.9999
    assert np.abs(acc - motion.G * up_in_sensor).std() < 2 * CFG.acc_noise  # residual is the sensor noise
    # the camera looks slightly down when standing: gravity shows on -y (down axis) and on z (forward)
    assert np.all(acc[:, 1] < -9.0)


def test_integrating_the_gyroscope_reproduces_the_orientation(tour):
    plan, rec, imu, p, v, R = tour
    dt = 1.0 / CFG.imu_rate_hz
    for s in plan.segments:
        idx = np.flatnonzero((rec["imu_t"] >= s.start) & (rec["imu_t"] <= s.end))
        R_est, worst, turned = R[idx[0]].copy(), 0.0, 0.0
        for a, b in zip(idx[:-1], idx[1:]):
            R_est = R_est @ _so3_exp(0.5 * (imu[a, 3:] + imu[b, 3:]) * dt)  # body rates: right-multiply
            if (b - idx[0]) % 100 == 0:  # every 0.5 s
                worst = max(worst, _angle(R_est, R[b]))
                turned = max(turned, _angle(R[idx[0]], R[b]))
        assert worst < 0.01, (s.label, worst)
        if s.label in ("looking around", "walking", "sitting down"):
            assert turned > 0.1, (s.label, turned)  # the check is not vacuous


def test_double_integrating_the_accelerometer_reproduces_the_displacement(tour):
    plan, rec, imu, p, v, R = tour
    dt = 1.0 / CFG.imu_rate_hz
    n = int(CFG.imu_rate_hz)  # 1 s
    for label in ("walking", "running", "sitting down", "climbing stairs", "looking around"):
        s = _segment(plan, label)
        for start in np.linspace(s.start + 0.2, s.end - 1.2, 3):
            i = int(np.searchsorted(rec["imu_t"], start))
            a = np.einsum("nij,nj->ni", R[i:i + n + 1], imu[i:i + n + 1, :3]) + motion.GRAVITY_WORLD  # (n+1, 3) world
            vel = v[i] + np.concatenate([[np.zeros(3)], np.cumsum(0.5 * (a[1:] + a[:-1]), axis=0) * dt])
            pos = p[i] + np.sum(0.5 * (vel[1:] + vel[:-1]), axis=0) * dt
            assert np.linalg.norm(pos - p[i + n]) < 0.02, (label, start, pos - p[i + n])
    run = _segment(plan, "running")
    assert np.linalg.norm(p[int((run.end - 1) * CFG.imu_rate_hz)] - p[int(run.start * CFG.imu_rate_hz)]) > 5.0


def _render_one(scene, pitch, roll=0.0, yaw=0.0, size=64, pos=(0.0, 0.0, 1.6)):
    R = motion.rotation(np.array([yaw]), np.array([pitch]), np.array([roll]))
    return scenes.render_frames(scene, np.array([pos]), R, size, size, fov_deg=90.0)[0]


def test_horizon_row_follows_pitch_and_roll():
    scene = replace(scenes.make_scene("park"), fog_max=0.0)
    size = 64
    f = size / 2  # focal length of a 90 degree horizontal field of view
    for pitch in (-0.35, -0.1, 0.0, 0.2, 0.45):
        frame = _render_one(scene, pitch, size=size).astype(int)
        sky_rows = (frame[..., 2] > frame[..., 1]).sum(axis=0)  # per column: sky is blue, grass is green
        expected = size / 2 + f * np.tan(pitch)  # looking up moves the horizon down the image
        assert np.all(np.abs(sky_rows - expected) <= 1.0), (pitch, sky_rows, expected)
    pitch, roll = 0.1, 0.3
    R = motion.rotation(np.array(0.0), np.array(pitch), np.array(roll))
    frame = _render_one(scene, pitch, roll, size=size).astype(int)
    u = (np.arange(size) + 0.5 - size / 2) / f
    boundary = size / 2 - f * (R[2, 0] * u + R[2, 2]) / R[2, 1]  # where world z of the ray is 0
    sky_rows = (frame[..., 2] > frame[..., 1]).sum(axis=0)
    assert np.all(np.abs(sky_rows - np.clip(boundary, 0, size)) <= 1.0)
    assert sky_rows[0] - sky_rows[-1] > 10  # a right-ear-down roll raises the horizon on the right


def test_yaw_pans_and_walking_forward_enlarges_an_object():
    pillar = scenes.add_primitives(replace(scenes.make_scene("street"), fog_max=0.0),
                                   [(1, (10.0, 0.0, 1.0, 0.0, 3.0, 0.0), (1.0, 0.0, 0.0), 2)])  # a lit cylinder
    size, f = 96, 48

    def columns(frame):
        red = (frame[..., 0] > 200) & (frame[..., 1] < 60)
        return np.flatnonzero(red.any(axis=0))

    centre = columns(_render_one(pillar, 0.0, size=size)).mean() + 0.5
    assert abs(centre - size / 2) < 1.0
    turned = columns(_render_one(pillar, 0.0, yaw=0.3, size=size)).mean() + 0.5
    assert abs(turned - (size / 2 + f * np.tan(0.3))) < 1.5  # turning left moves the scene right
    for x in (0.0, 5.0):  # walking towards the pillar: its silhouette widens as 2 f tan(asin(r / distance))
        width = len(columns(_render_one(pillar, 0.0, size=size, pos=(x, 0.0, 1.6))))
        assert abs(width - 2 * f * np.tan(np.arcsin(1.0 / (10.0 - x)))) <= 1.5, (x, width)


def test_plans_follow_posture_and_cover_all_activities():
    seen = set()
    for index in range(60):
        plan = people.plan_recording(replace(CFG, minutes=2.0), index)
        seated = plan.start_seated
        assert plan.segments[0].start == 0.0 and plan.segments[-1].end == pytest.approx(plan.duration)
        for a, b in zip(plan.segments[:-1], plan.segments[1:]):
            assert a.end == b.start
        for s in plan.segments:
            assert s.end - s.start >= 4.0 - 1e-6
            assert s.label in data.ACTIVITIES
            if s.label == "standing up":
                assert seated
            if seated:
                assert s.label in ("standing up", "looking around")
            seated = {"sitting down": True, "standing up": False}.get(s.label, seated)
            assert s.seated == seated
            seen.add(s.label)
    assert seen == set(data.ACTIVITIES)


def test_sitting_down_lowers_the_head_and_standing_up_raises_it(tour):
    plan, rec, imu, p, v, R = tour
    rate = CFG.imu_rate_hz
    sit, stand = _segment(plan, "sitting down"), _segment(plan, "standing up")
    drop = p[int(sit.start * rate) + 10, 2] - p[int(sit.end * rate) - 10, 2]
    rise = p[int(stand.end * rate) - 10, 2] - p[int(stand.start * rate) + 10, 2]
    assert 0.35 < drop < 0.65 and 0.35 < rise < 0.65


def test_narrations_fall_inside_the_segments_they_describe(dataset):
    out, paths = dataset
    for path in paths:
        rec = data.read_recording(path)
        times = [n["t"] for n in rec.narrations]
        assert times == sorted(times)
        assert rec.meta["duration_sec"] / 4.5 < len(times) < rec.meta["duration_sec"] / 1.5
        for n in rec.narrations:
            s = next(s for s in rec.segments if s["start"] <= n["t"] < s["end"])
            assert n["t"] - s["start"] > 0.3 and s["end"] - n["t"] > 0.3
            assert n["text"].startswith("#C C ")
            assert any(w in n["text"] for w in VERBS[s["label"]]), (s["label"], n["text"])


def test_recordings_have_the_documented_layout(dataset):
    out, paths = dataset
    assert [p.name for p in data.list_recordings(out)] == sorted(p.name for p in paths)
    rec = data.read_recording(paths[0])
    duration = CFG.minutes * 60
    assert rec.imu.shape == (int(duration * CFG.imu_rate_hz), 6) and isinstance(rec.imu, np.memmap)
    assert rec.frames.shape == (int(duration * CFG.video_fps), CFG.height, CFG.width, 3)
    assert np.allclose(np.diff(rec.imu_t), 1 / CFG.imu_rate_hz) and np.allclose(np.diff(rec.frames_t), 0.1)
    assert rec.meta["source"] == "synthetic" and rec.meta["scene"] in world.SCENES
    assert rec.segments[0]["start"] == 0 and rec.segments[-1]["end"] == pytest.approx(duration)


def test_same_seed_gives_identical_bytes_and_another_seed_does_not(dataset, tmp_path):
    out, paths = dataset
    again = world.synthesize(tmp_path / "again", replace(CFG, workers=2))
    assert [p.name for p in again] == [p.name for p in paths]
    for a, b in zip(paths, again):
        names = sorted(f.name for f in a.iterdir())
        assert names == sorted(f.name for f in b.iterdir())
        for name in names:
            assert (a / name).read_bytes() == (b / name).read_bytes(), (a.name, name)
    other = world.synthesize(tmp_path / "other", replace(CFG, recordings=1, seed=1))
    assert (other[0] / "imu.npy").read_bytes() != (paths[0] / "imu.npy").read_bytes()


def _break(rec, name, value):
    if name.endswith(".json"):
        (rec / name).write_text(value)
    elif value is None:
        (rec / name).unlink()
    else:
        np.save(rec / name, value)


BROKEN = {
    "missing file": ("imu.npy", lambda r: None, "missing"),
    "wrong shape": ("imu.npy", lambda r: np.zeros((len(r.imu), 5), np.float32), "shape"),
    "wrong dtype": ("imu.npy", lambda r: np.asarray(r.imu, np.float64), "dtype"),
    "NaN in imu": ("imu.npy", lambda r: np.where(np.arange(len(r.imu))[:, None] == 7, np.nan, r.imu).astype(
        np.float32), "NaN"),
    "non-monotonic": ("imu_t.npy", lambda r: np.asarray(r.imu_t)[::-1].copy(), "increasing"),
    "length mismatch": ("imu_t.npy", lambda r: np.asarray(r.imu_t)[:-3].copy(), "timestamps"),
    "NaN timestamp": ("frames_t.npy", lambda r: np.where(np.arange(len(r.frames_t)) == 2, np.nan, r.frames_t),
                      "NaN"),
    "frames dtype": ("frames.npy", lambda r: np.asarray(r.frames, np.float32), "dtype"),
    "frames shape": ("frames.npy", lambda r: np.asarray(r.frames)[..., 0].copy(), "shape"),
    "bad json": ("narrations.json", lambda r: "[{\"t\": 1.0, ", "JSON"),
    "bad narration": ("narrations.json", lambda r: json.dumps([{"time": 1.0, "text": "x"}]), "entry 0"),
    "bad segment": ("segments.json", lambda r: json.dumps([{"start": 5, "end": 2, "label": "walking"}]),
                    "segment 0"),
    "not a recording": ("meta.json", lambda r: json.dumps({"format": "other"}), "format"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_reader_rejects_broken_recordings_naming_the_file(dataset, tmp_path, case):
    out, paths = dataset
    name, make, words = BROKEN[case]
    rec_dir = tmp_path / "rec"
    shutil.copytree(paths[0], rec_dir)
    value = make(data.read_recording(rec_dir))
    _break(rec_dir, name, value)
    with pytest.raises(data.DataError) as err:
        data.read_recording(rec_dir)
    assert str(rec_dir / name) in str(err.value) and words in str(err.value), str(err.value)


def test_write_recording_round_trips_and_replaces_atomically(tmp_path):
    rng = np.random.default_rng(0)
    imu, imu_t = rng.normal(size=(50, 6)).astype(np.float32), np.arange(50) / 50.0
    frames, frames_t = rng.integers(0, 255, (4, 8, 8, 3), dtype=np.uint8), np.arange(4) / 4.0
    path = tmp_path / "ds" / "rec"
    data.write_recording(path, imu, imu_t, frames, frames_t, [{"t": 0.5, "text": "#C C waves"}],
                         [{"start": 0.0, "end": 1.0, "label": "walking"}], {"source": "test"})
    data.write_recording(path, imu * 2, imu_t, frames, frames_t, [], [], {"source": "test"})
    rec = data.read_recording(path)
    assert np.array_equal(rec.imu, imu * 2) and np.array_equal(rec.frames, frames)
    assert rec.meta["imu_rate_hz"] == pytest.approx(50.0) and rec.meta["video_fps"] == pytest.approx(4.0)
    assert rec.narrations == [] and rec.segments == []
    assert [p.name for p in (tmp_path / "ds").iterdir()] == ["rec"]  # no temporary directories left behind
    (tmp_path / "ds" / ".cache").mkdir()
    (tmp_path / "ds" / "_scratch").mkdir()
    assert data.list_recordings(tmp_path / "ds") == [path]
    with pytest.raises(data.DataError, match="NaN"):
        data.write_recording(tmp_path / "ds" / "bad", imu * np.nan, imu_t, frames, frames_t, [], [], {})
    with pytest.raises(data.DataError, match="no recordings"):
        data.list_recordings(tmp_path / "ds" / "_scratch")


def test_clean_narration():
    assert data.clean_narration("#C C picks up  #unsure from the Table ") == "picks up something from the table"
    assert data.clean_narration("#O Man X opens the door") == "o man x opens the door"


def test_draw_signals_plots_each_channel_where_its_values_are():
    imu = np.zeros((6, 400))
    imu[0, 200:] = 1.0  # acc x steps up half-way
    imu[1], imu[2] = -1.0, -0.5  # y and z elsewhere, so they do not hide x
    img = np.asarray(draw_signals(imu, 300, 200, title="step")).astype(int)
    assert img.shape == (200, 300, 3)
    red = (img[..., 0] > 180) & (img[..., 1] < 100) & (img[..., 2] < 100)
    rows_left = np.flatnonzero(red[:100, 70:150].any(axis=1))
    rows_right = np.flatnonzero(red[:100, 200:280].any(axis=1))
    assert rows_left.size and rows_right.size and rows_left.mean() > rows_right.mean() + 10  # higher value, higher up
    with pytest.raises(ValueError):
        draw_signals(np.zeros((3, 10)), 100, 100)


def test_show_cli_writes_a_png_of_the_requested_size(dataset, tmp_path, capsys):
    out, paths = dataset
    png = tmp_path / "preview.png"
    world_cli.main(["show", str(paths[1]), "--out", str(png), "--width", "640", "--height", "420", "--frames", "6"])
    with Image.open(png) as img:
        assert img.size == (640, 420)
        pixels = np.asarray(img.convert("RGB"))
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 50  # plots, frames and text, not a blank page
    with pytest.raises(SystemExit) as exit_:
        world_cli.main(["show", str(tmp_path / "nope"), "--out", str(png)])
    assert exit_.value.code == 2 and "nope" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["--recordings", "0"], ["--minutes", "0.05"], ["--scenes", "moon"],
                                  ["--width", "abc"], ["--sim-rate-hz", "333"]])
def test_synth_cli_rejects_bad_arguments_with_exit_2(tmp_path, capsys, argv):
    with pytest.raises(SystemExit) as exit_:
        world_cli.main(["synth", "--out", str(tmp_path / "x")] + argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "error" in err and "Traceback" not in err
    assert not (tmp_path / "x").exists()


def test_synth_cli_writes_a_readable_dataset(tmp_path):
    world_cli.main(["synth", "--out", str(tmp_path / "d"), "--recordings", "2", "--minutes", "0.2", "--width", "16",
               "--height", "16", "--workers", "1", "--seed", "3"])
    recs = data.list_recordings(tmp_path / "d")
    assert len(recs) == 2 and all(data.read_recording(r).meta["seed"] == 3 for r in recs)


def test_no_module_imports_one_that_imports_it_back():
    """The layout has no import circle, lazy imports inside functions included, and the method files reach the
    sources folder only through train.py's lazy call that makes the default dataset."""
    import ast
    root = Path(__file__).resolve().parent.parent
    files = [p for p in root.rglob("*.py") if not p.relative_to(root).parts[0].startswith((".", "tests"))]
    name = {p: ".".join(p.relative_to(root).with_suffix("").parts).removesuffix(".__init__") for p in files}
    modules, edges = set(name.values()), {}
    for p in files:
        found = set()
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: from .motion import ... inside sources/world
                    package = name[p].split(".")[: len(name[p].split(".")) - node.level + (p.name == "__init__.py")]
                    base = ".".join(package + ([base] if base else []))
                found |= {m for m in (base, *(f"{base}.{a.name}" for a in node.names)) if m in modules}
            elif isinstance(node, ast.Import):
                found |= {a.name for a in node.names if a.name in modules}
        edges[name[p]] = found - {name[p]}

    def reach(start):
        seen, todo = set(), [start]
        while todo:
            for m in edges.get(todo.pop(), ()):
                if m not in seen:
                    seen.add(m)
                    todo.append(m)
        return seen
    assert {"data", "train", "evaluate", "sources.world", "sources.world.preview"} <= modules
    assert [m for m in modules if m in reach(m)] == []  # no circle
    method = ("data", "model", "loss", "train", "evaluate")
    into_sources = {(m, s) for m in method for s in edges[m] if s.startswith("sources")}
    assert into_sources == {("train", "sources.world")}


def test_the_method_reads_recordings_without_importing_a_source():
    code = ("import sys, data, model, loss, train, evaluate; "
            "assert not [m for m in sys.modules if m.split('.')[0] == 'sources'], sorted(sys.modules)")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parent.parent)



# --------------------------------------------------------------------------------------
# The view follows the activity: places, gaze and blur come from the same trajectory as the IMU
# --------------------------------------------------------------------------------------


def _hold(plan, traj, s, margin=1.2):
    """Grid indices of segment s without its blends at either end."""
    return np.flatnonzero((traj.t > s.start + margin) & (traj.t < s.end - margin))


def _pitch(traj):
    return np.arcsin(np.clip(traj.R[:, 2, 2], -1, 1))  # elevation of the camera's forward axis


def _without(scene, part):
    keep = scene.parts != part
    return replace(scene, **{k: getattr(scene, k)[keep] for k in ("kinds", "geom", "colors", "patterns", "yaw",
                                                                    "parts", "active")})


def _frames_at(scene, traj, idx, size=32):
    pos = traj.p[idx] - np.stack([0 * idx, 0 * idx, traj.floor[idx]], axis=1)
    return scenes.render_frames(scene, pos, traj.R[idx], size, size, 90.0, traj.t[idx], traj.floor[idx]).astype(int)


def test_gaze_pitch_of_each_activity_follows_the_plan(tour_world):
    plan, traj, scene, rec = tour_world
    pitch = _pitch(traj)
    for s in plan.segments:
        if s.label in ("walking", "running", "standing still", "climbing stairs"):
            assert abs(pitch[_hold(plan, traj, s)].mean() - s.p["pitch"]) < 0.03, s.label
    seated = np.flatnonzero(traj.seated > 0.999)
    gaze = plan.person["seated_gaze_rad"]
    assert abs(pitch[seated].mean() - (_segment(plan, "sitting down").p["pitch"] + gaze)) < 0.06  # at the lap
    climb, walk = _segment(plan, "climbing stairs"), _segment(plan, "walking")
    assert pitch[_hold(plan, traj, climb)].mean() < pitch[_hold(plan, traj, walk)].mean() - 0.1  # at the steps


def test_climbers_stand_on_rendered_steps_that_fill_the_lower_view(tour_world):
    plan, traj, scene, rec = tour_world
    s = _segment(plan, "climbing stairs")
    steps = np.flatnonzero(scene.parts == 1)
    assert len(steps) >= 5
    idx = _hold(plan, traj, s)[::50]  # at the full climb rate
    for i in idx:  # one tread under the person, its top within a riser of the floor the IMU's trajectory is on
        g, c, sn = scene.geom[steps], np.cos(scene.yaw[steps]), np.sin(scene.yaw[steps])
        u, v = c * traj.p[i, 0] + sn * traj.p[i, 1], c * traj.p[i, 1] - sn * traj.p[i, 0]
        under = (u >= g[:, 0]) & (u <= g[:, 3]) & (v >= g[:, 1]) & (v <= g[:, 4])
        assert np.any(under & (np.abs(g[:, 5] - traj.floor[i]) < 0.2)), traj.t[i]
    with_steps, without = _frames_at(scene, traj, idx), _frames_at(_without(scene, 1), traj, idx)
    changed = (with_steps != without).any(axis=-1)[:, 16:]  # (frames, lower half rows, columns)
    assert changed.mean() > 0.25 and changed[:, :, 12:20].mean() > 0.6  # looking down: the flight, in the middle


def test_seated_segments_happen_at_a_seat_walked_to_with_the_legs_in_view(tour_world):
    plan, traj, scene, rec = tour_world
    s = _segment(plan, "sitting down")
    seats = np.flatnonzero(scene.parts == 2)
    k = np.flatnonzero(traj.seated > 0.999)[0]
    c, sn = np.cos(scene.yaw[seats]), np.sin(scene.yaw[seats])
    g = scene.geom[seats]
    centres = np.stack([c * (g[:, 0] + g[:, 3]) / 2 - sn * (g[:, 1] + g[:, 4]) / 2,
                        sn * (g[:, 0] + g[:, 3]) / 2 + c * (g[:, 1] + g[:, 4]) / 2], axis=1)
    reach = np.linalg.norm(centres - traj.p[k, :2], axis=1)
    assert reach.min() < 0.5 and traj.p[k, 2] - g[reach.argmin(), 5] > 0.4  # sitting on it, head above it
    start = int(s.start * CFG.sim_rate_hz)
    ahead = centres[reach.argmin()] - traj.p[start, :2]  # the approach walked towards it ...
    assert np.cos(np.arctan2(ahead[1], ahead[0]) - traj.heading[start]) > 0.9
    turned = traj.heading[k] - traj.heading[start]  # ... and turned round to sit on it
    assert abs(np.cos(turned) + 1) < 0.05
    idx = np.flatnonzero(traj.seated > 0.999)[::200]
    legs, no_legs = _frames_at(scene, traj, idx), _frames_at(_without(scene, 3), traj, idx)
    assert (legs != no_legs).any(axis=-1)[:, 16:].mean() > 0.05  # the lap, in the lower half


def test_running_paths_are_open_and_looking_around_has_things_to_look_at(tour_world):
    plan, traj, scene, rec = tour_world
    objects = np.flatnonzero(scene.parts == 0)
    centres = scenes._bounding_spheres(scene)[0][objects, :2]
    run = traj.p[_hold(plan, traj, _segment(plan, "running"), margin=0.0)[::100], :2]
    assert np.linalg.norm(run[:, None] - centres[None], axis=2).min() > 3.0
    look = _segment(plan, "looking around")
    i = _hold(plan, traj, look)[len(_hold(plan, traj, look)) // 2]
    rel = centres - traj.p[i, :2]
    bearing = np.angle(np.exp(1j * (np.arctan2(rel[:, 1], rel[:, 0]) - traj.heading[i])))
    in_view = np.abs(bearing) < look.p["yaw_amp"] + np.pi / 4  # at some point of the sweep
    assert np.sum((np.linalg.norm(rel, axis=1) < 8) & in_view) >= 2


def test_motion_blur_grows_with_the_gyro_rate_along_the_image_flow():
    H = W = 32
    line = np.zeros((1, H, W, 3), np.uint8)
    line[:, :, 16] = 255  # a vertical line: only a horizontal flow can smear it
    spread = []
    for rate in (0.0, 2.0, 4.0, 8.0):  # yaw about the camera's y (down) axis: the image flows sideways
        out = scenes.motion_blur(line, np.array([[0.0, rate, 0.0]]), 0.05, 90.0)
        profile = out[0, H // 2, :, 0].astype(float)
        assert abs(profile.sum() - 255) <= 3  # the light is spread, not lost
        spread.append(np.sum(profile * (np.arange(W) - 16) ** 2) / profile.sum())  # px^2
        length = 16 * rate * 0.05  # f * |omega| * exposure: how far the image moved while the shutter was open
        assert spread[-1] <= (length / 2 + 0.5) ** 2
        pitched = scenes.motion_blur(line, np.array([[rate, 0.0, 0.0]]), 0.05, 90.0)  # flows up or down
        assert np.array_equal(pitched, line)
    assert spread[0] == 0 and spread[0] < spread[1] < spread[2] < spread[3]


@pytest.mark.parametrize("width, height, fov", [(9, 31, 170.0), (31, 9, 170.0), (16, 48, 160.0), (24, 24, 90.0)])
def test_screen_rectangles_never_cut_an_object_off(width, height, fov, monkeypatch):
    """Ray-casting only inside each object's screen rectangle must give the frames of ray-casting everywhere,
    also where one axis' half field of view is wider than the other's (a tall image at a wide angle)."""
    cfg = world.SynthConfig(minutes=0.25, width=width, height=height, fov_deg=fov, seed=1)
    plan = people.plan_recording(cfg, 0)
    traj = motion.head_trajectory(plan, cfg.sim_rate_hz)
    rng = np.random.default_rng([cfg.seed, 0, 2])
    scene = scenes.furnish(scenes.place_objects(scenes.make_scene(plan.scene, rng), plan, traj, rng), plan, traj, rng)
    k = np.arange(0, len(traj.t), 250)  # every 0.25 s
    pos = traj.p[k] - np.stack([0 * k, 0 * k, traj.floor[k]], axis=1)
    args = (scene, pos, traj.R[k], width, height, fov, traj.t[k], traj.floor[k])
    culled = scenes.render_frames(*args)
    rects = scenes._screen_rects

    def whole_image(*a):  # every existing primitive over the whole image
        u0, u1, v0, v1, seen = rects(*a)
        exists = (a[6][:, None] >= scene.active[:, 0]) & (a[6][:, None] <= scene.active[:, 1])
        return 0 * u0, 0 * u0 + width, 0 * v0, 0 * v0 + height, exists

    monkeypatch.setattr(scenes, "_screen_rects", whole_image)
    assert np.abs(culled.astype(int) - scenes.render_frames(*args)).max() <= 2
