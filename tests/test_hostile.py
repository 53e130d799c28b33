"""Hostile input, as a user would type it: every row must end with one `error:` line and its exit code, no
traceback, and no file left behind. Each script's main(argv) runs in-process. Also: a diverged run stops
without touching its checkpoints, and a kill during a checkpoint write leaves nothing that resume trips on."""
import hashlib
import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import data
import evaluate
import model
import train
from sources import aria, ego4d, world as synthetic_world
from sources.world import __main__ as world_cli
from test_ego4d import write_mp4

ROOT = Path(__file__).resolve().parents[1]
TRAIN = ["--clip", "tiny", "--window-sec", "2", "--rate-hz", "50", "--epochs", "1", "--batch-size", "16",
         "--log-every", "50"]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A tiny dataset with its cache built, a checkpoint trained on it, and bad files made from them."""
    w = tmp_path_factory.mktemp("hostile")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("IMU2CLIP_OFFLINE", "1")
        synthetic_world.synthesize(w / "data", synthetic_world.SynthConfig(recordings=8, minutes=1.0, width=16,
                                                                            height=16, workers=1))
        train.main(TRAIN + ["--data", str(w / "data"), "--out", str(w / "run")])
    ckpt = torch.load(w / "run" / "checkpoint.pt", weights_only=True)
    (w / "bad").mkdir()
    (w / "bad" / "empty.pt").write_bytes(b"")
    (w / "bad" / "random.pt").write_bytes(np.random.default_rng(0).bytes(4096))
    (w / "bad" / "pickle.pt").write_bytes(pickle.dumps({"not": "a checkpoint"}))
    for name, change in (("shapes", lambda c: c["imu_encoder"].update(
            {k: torch.zeros(3) for k in list(c["imu_encoder"])[:1]})),
                         ("types", lambda c: c.update(encoder_config="channels=32")),
                         ("nan", lambda c: [t.fill_(float("nan")) for t in c["imu_encoder"].values()])):
        bad = {**ckpt, "imu_encoder": {k: v.clone() for k, v in ckpt["imu_encoder"].items()}}
        change(bad)
        (w / "bad" / name).mkdir()
        torch.save(bad, w / "bad" / name / "checkpoint.pt")
    (w / "bad" / "a_file").write_text("I am a file")
    (w / "bad" / "empty_dir").mkdir()
    zero = w / "bad" / "zero_npy"  # a dataset whose one recording has a 0-byte imu.npy
    (zero / "rec").mkdir(parents=True)
    for f in (w / "data").iterdir():
        if f.is_dir() and not f.name.startswith("."):
            for part in f.iterdir():
                (zero / "rec" / part.name).write_bytes(b"" if part.name == "imu.npy" else part.read_bytes())
            break
    cache_file = w / "bad" / "cache_is_file"  # a dataset whose .cache directory is a file
    cache_file.mkdir()
    for f in list((w / "data").iterdir())[:4]:
        if f.is_dir() and not f.name.startswith("."):
            os.symlink(f, cache_file / f.name)
    (cache_file / ".cache").write_text("not a directory")
    lab = w / "bad" / "labelled.npz"
    np.savez(lab, imu=np.zeros((4, 6, 100)), labels=np.array([0, 1, 0, 1]), class_names=np.array(["a", "b"]),
             rate_hz=np.float64(50.0))
    (w / "bad" / "truncated.npz").write_bytes(lab.read_bytes()[: lab.stat().st_size // 2])
    np.savez(w / "bad" / "overflow.npz", imu=np.full((4, 6, 100), 1e39), labels=np.array([0, 1, 0, 1]),
             class_names=np.array(["a", "b"]), rate_hz=np.float64(50.0))
    (w / "bad" / "latin1.csv").write_bytes("canonical_timestamp_ms,accl_x\n1,\xe9\n".encode("latin-1"))
    ego = w / "bad" / "ego4d"  # an Ego4D tree whose IMU CSV is not UTF-8 and whose video is not a video
    (ego / "v1" / "imu").mkdir(parents=True)
    (ego / "v1" / "full_scale").mkdir(parents=True)
    (ego / "v1" / "annotations").mkdir(parents=True)
    (ego / "v1" / "imu" / "vid.csv").write_bytes((w / "bad" / "latin1.csv").read_bytes())
    (ego / "v1" / "full_scale" / "vid.mp4").write_bytes(b"not a video")
    (ego / "v1" / "annotations" / "narration.json").write_text(json.dumps({}))
    ego2 = w / "bad" / "ego4d_narration"  # a readable IMU CSV and video, but a narration entry that is a list
    for part in ("imu", "full_scale", "annotations"):
        (ego2 / "v1" / part).mkdir(parents=True)
    (ego2 / "v1" / "imu" / "vid.csv").write_text("canonical_timestamp_ms,accl_x,accl_y,accl_z,gyro_x,gyro_y,gyro_z\n"
                                                 + "".join(f"{5 * k},0,0,9.8,0,0,0\n" for k in range(600)))
    blue = np.zeros((30, 32, 32, 3), np.uint8)
    blue[..., 2] = 255
    write_mp4(ego2 / "v1" / "full_scale" / "vid.mp4", blue, fps=10)
    (ego2 / "v1" / "annotations" / "narration.json").write_text(json.dumps({"vid": ["not", "an", "object"]}))
    (w / "bad" / "not.vrs").write_bytes(b"VRS? no, just bytes" * 100)
    return w


def rec(w):
    return sorted(p for p in (w / "data").iterdir() if p.is_dir() and not p.name.startswith("."))[0]


D, R, B = "{data}", "{run}", "{bad}"
# (script, argv with {data} {run} {bad} {new} placeholders, exit code, a fragment of the message)
ROWS = [
    ("train", ["--data", D, "--lr", "inf"], 2, "argument --lr: must be a finite number > 0, got inf"),
    ("train", ["--data", D, "--lr", "0"], 2, "argument --lr: must be a finite number > 0"),
    ("train", ["--data", D, "--lr=-1e-3"], 2, "argument --lr: must be a finite number > 0"),
    ("train", ["--data", D, "--grad-clip=-1"], 2, "argument --grad-clip: must be a finite number >= 0"),
    ("train", ["--data", D, "--grad-clip", "nan"], 2, "argument --grad-clip: must be a finite number"),
    ("train", ["--data", D, "--warmup-steps=-5"], 2, "argument --warmup-steps: must be a 64-bit integer >= 0"),
    ("train", ["--data", D, "--weight-decay", "nan"], 2, "argument --weight-decay: must be a finite"),
    ("train", ["--data", D, "--batch-size", "1"], 2, "argument --batch-size: must be a 64-bit integer >= 2, got 1"),
    ("train", ["--data", D, "--epochs", "0"], 2, "argument --epochs: must be a 64-bit integer >= 1, got 0"),
    ("train", ["--data", D, "--window-sec", "0"], 2, "argument --window-sec: must be a finite number > 0"),
    ("train", ["--data", D, "--rate-hz=-50"], 2, "argument --rate-hz: must be a finite number > 0"),
    ("train", ["--data", D, "--window-sec", "inf"], 2, "argument --window-sec: must be a finite number"),
    ("train", ["--data", D, "--window-sec", "0.3"], 2, "encoder needs at least"),
    ("train", ["--data", D, "--modalities", "imu,audio"], 2, "unknown modality 'audio'"),
    ("train", ["--data", D, "--modalities", "video,text"], 2, "imu is required"),
    ("train", ["--data", D, "--windows", "sliding", "--modalities", "imu,text"], 2, "no narrations"),
    ("train", ["--data", D, "--batch-size", "many"], 2, "invalid int value"),
    ("train", ["--data", D, "--bogus", "1"], 2, "unrecognized arguments"),
    ("train", ["--data", D, "--temperature", "5"], 2, "temperature must be in"),
    ("train", ["--data", D, "--device", "toaster"], 2, "--device toaster"),
    ("train", ["--data", D, "--out", B + "/a_file"], 2, "exists and is not a directory"),
    ("train", ["--data", D, "--out", B + "/empty_dir", "--resume"], 2, "no such checkpoint"),
    ("train", ["--data", D, "--out", B + "/shapes", "--resume"], 2, "does not match its encoder_config"),
    ("train", ["--data", D, "--out", B + "/types", "--resume"], 2, "does not match its encoder_config"),
    ("train", ["--data", D, "--out", B + "/nan", "--resume"], 2, "non-finite encoder weights"),
    ("train", ["--data", D, "--out", R, "--resume", "--lr", "1e-2"], 2, "trained with --lr"),
    ("train", ["--data", B + "/nowhere"], 2, "no such dataset directory"),
    ("train", ["--data", B + "/empty_dir"], 2, "no recordings"),
    ("train", ["--data", B + "/zero_npy"], 2, "not a readable .npy"),
    ("train", ["--data", B + "/cache_is_file"], 2, "cache directory is a file"),
    ("train", ["--data", D, "--clip-weights", B + "/random.pt"], 2, "random.pt"),
    ("train", ["--data", D, "--clip-weights", B + "/pickle.pt"], 2, "pickle.pt"),
    ("train", ["--data", D, "--clip-weights", B + "/nowhere.pt"], 2, "nowhere.pt"),
    ("evaluate", ["--checkpoint", B + "/empty.pt"], 2, "not a readable checkpoint"),
    ("evaluate", ["--checkpoint", B + "/random.pt"], 2, "not a readable checkpoint"),
    ("evaluate", ["--checkpoint", B + "/pickle.pt"], 2, "pickle.pt"),
    ("evaluate", ["--checkpoint", B + "/shapes/checkpoint.pt"], 2, "does not match its encoder_config"),
    ("evaluate", ["--checkpoint", B + "/nan/checkpoint.pt"], 2, "non-finite encoder weights"),
    ("evaluate", ["--checkpoint", R + "/best.pt", "--labelled", B + "/truncated.npz", "--task", "probe"], 2,
     "not a readable .npz"),
    ("evaluate", ["--checkpoint", R + "/best.pt", "--labelled", B + "/overflow.npz", "--task", "probe"], 2,
     "beyond float32"),
    ("evaluate", ["--checkpoint", R + "/best.pt", "--out", B + "/a_file"], 2, "not a directory"),
    ("evaluate", ["--checkpoint", R + "/best.pt", "--task", "everything"], 2, "invalid choice"),
    ("evaluate", ["--checkpoint", R + "/best.pt", "--fit-batch-size", "0"], 2, "argument --fit-batch-size: must be a 64-bit integer >= 1"),
    ("evaluate", ["--checkpoint", R + "/best.pt", "--probe-lr", "inf"], 2, "argument --probe-lr: must be a finite"),
    ("evaluate", ["--checkpoint", R + "/best.pt", "--weight-decay=-1"], 2, "argument --weight-decay: must be a"),
    ("world", ["synth", "--out", B + "/a_file"], 2, "exists and is not a directory"),
    ("world", ["synth", "--out", "{new}/x", "--recordings", "0"], 2, "argument --recordings: must be a 64-bit integer >= 1"),
    ("world", ["synth", "--out", "{new}/x", "--minutes", "inf"], 2, "argument --minutes: must be a finite number"),
    ("world", ["synth", "--out", "{new}/x", "--acc-noise", "nan"], 2, "argument --acc-noise: must be a finite"),
    ("world", ["synth", "--out", "{new}/x", "--sim-rate-hz", "nan"], 2, "argument --sim-rate-hz: must be a"),
    ("world", ["synth", "--out", "{new}/x", "--minutes", "0.01"], 2, "minutes must give at least 10 s"),
    ("world", ["synth", "--out", D, "--recordings", "2", "--seed", "5"], 2, "already holds 8 recordings"),
    ("world", ["show", B + "/nowhere", "--out", "{new}/x.png"], 2, "not a recording directory"),
    ("world", ["show", "{rec}", "--out", B + "/empty_dir"], 2, "is a directory"),
    ("world", ["show", "{rec}", "--out", "{new}/x.png", "--width", "100000", "--height", "100000"], 2, "width"),
    ("data", ["export-labelled", D, "--out", "{new}/x.npz", "--stride-sec", "0.0001"], 2, "larger --stride-sec"),
    ("data", ["export-labelled", D, "--out", "{new}/x.npz", "--window-sec", "0.05"], 2, "encoder needs at least"),
    ("data", ["export-labelled", D, "--out", B + "/empty_dir"], 2, "is a directory"),
    ("data", ["export-labelled", B + "/nowhere", "--out", "{new}/x.npz"], 2, "no such dataset"),
    ("ego4d", ["--root", B + "/nowhere", "--out", "{new}/e"], 2, "no v1/imu or v2/imu"),
    ("ego4d", ["--root", B + "/ego4d", "--out", "{new}/e", "--size", "0"], 2, "--size 0"),
    ("ego4d", ["--root", B + "/ego4d", "--out", "{new}/e"], 2, "not a text CSV"),
    ("ego4d", ["--root", B + "/ego4d", "--out", "{new}/e", "--videos", "gone"], 2, "no IMU CSV"),
    ("ego4d", ["--root", B + "/ego4d_narration", "--out", "{new}/e"], 2, "narration"),
    ("ego4d", ["--root", B + "/ego4d", "--out", "{new}/e", "--size=-3"], 2, "--size -3"),
    ("ego4d", ["--root", B + "/ego4d", "--out", B + "/a_file"], 2, "exists and is not a directory"),
    ("aria", [B + "/not.vrs", "--out", B + "/a_file"], 2, "exists and is not a directory"),
    ("aria", [B + "/not.vrs", "--out", "{new}/a", "--size", "0"], 2, "--size 0"),
    ("aria", [B + "/not.vrs", "--out", "{new}/a"], 2, "not.vrs"),
    ("aria", [B + "/empty_dir", "--out", "{new}/a"], 2, "empty_dir"),
    ("data", ["bogus"], 2, "invalid choice"),
    ("world", ["bogus"], 2, "invalid choice"),
]
MAINS = {"train": train.main, "evaluate": evaluate.main, "data": data.main, "world": world_cli.main,
         "ego4d": ego4d.main, "aria": aria.main}


def _files(*roots):
    return {p for r in roots if r.exists() for p in r.rglob("*")}


@pytest.mark.parametrize("script, argv, code, fragment", ROWS, ids=[f"{r[0]}:{' '.join(r[1])[:60]}" for r in ROWS])
def test_hostile_input_is_one_error_line(world, tmp_path, monkeypatch, capsys, script, argv, code, fragment):
    monkeypatch.setenv("IMU2CLIP_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)
    fill = {"data": str(world / "data"), "run": str(world / "run"), "bad": str(world / "bad"),
            "new": str(tmp_path / "new"), "rec": str(rec(world))}
    argv = [a.format(**fill) for a in argv]
    if script == "train":
        argv = TRAIN + argv
    before = _files(world, tmp_path)
    with pytest.raises(SystemExit) as e:
        MAINS[script](argv)
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith(("error:", f"{Path(sys.argv[0]).name}: error:"))
              or ": error: " in line]
    assert e.value.code == code, err
    assert len(errors) == 1 and fragment in errors[0], err
    assert "Traceback" not in err
    assert _files(world, tmp_path) == before  # nothing left behind


@pytest.mark.parametrize("argv, fragment", [
    (["synth", "--out", "{new}", "--minutes", "0.1"], "minutes must give at least 10 s"),  # raised by SynthConfig
    (["show", "{rec}", "--out", "{new}/x.png", "--width", "200"], "width in [400, 8000]"),  # by world.preview
])
def test_the_world_run_as_a_module_catches_its_own_errors(world, tmp_path, argv, fragment):
    """`python -m sources.world` runs as __main__ while data.py defines DataError: its errors are still one line."""
    argv = [a.format(new=tmp_path / "new", rec=rec(world)) for a in argv]
    out = subprocess.run([sys.executable, "-m", "sources.world", *argv], capture_output=True, text=True, cwd=ROOT,
                         env={**os.environ, "IMU2CLIP_OFFLINE": "1"}, timeout=120)
    assert out.returncode == 2 and out.stderr.strip().splitlines()[-1].startswith("error: "), out.stderr
    assert fragment in out.stderr and "Traceback" not in out.stderr and not (tmp_path / "new").exists()


def _digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_diverged_run_stops_with_one_line_and_leaves_the_checkpoints(world, tmp_path, monkeypatch, capsys):
    """A learning rate this large turns the weights non-finite after the first step: the run stops at the next
    loss, names the epoch and step, exits 1, and neither checkpoint is touched (no best.pt 'MRR 1.000')."""
    monkeypatch.setenv("IMU2CLIP_OFFLINE", "1")
    out = tmp_path / "run"
    train.main(TRAIN + ["--data", str(world / "data"), "--out", str(out)])
    before = {n: _digest(out / n) for n in ("checkpoint.pt", "best.pt")}
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        train.main(TRAIN + ["--data", str(world / "data"), "--out", str(out), "--lr", "1e30", "--grad-clip", "0",
                            "--no-learn-temperature"])
    err = capsys.readouterr().err
    assert e.value.code == 1 and [ln for ln in err.splitlines() if ln.startswith("error:")] == \
        [ln for ln in err.splitlines() if "non-finite loss at epoch 1 step 2" in ln]
    assert {n: _digest(out / n) for n in before} == before
    assert "*best*" not in err


KILLER = """
import os, signal, sys, torch
import train
save = torch.save
def save_then_die(obj, f, *a, **k):
    if ".checkpoint.pt.tmp-" in str(f) and obj["epoch"] == 2:
        with open(f, "wb") as fh:
            fh.write(b"half a checkpoint")
        os.kill(os.getpid(), signal.SIGKILL)  # killed in the middle of writing the epoch-2 checkpoint
    save(obj, f, *a, **k)
torch.save = save_then_die
train.main(sys.argv[1:])
"""


def test_kill_during_a_checkpoint_write_then_resume(world, tmp_path):
    """SIGKILL while checkpoint.pt is being written: the previous checkpoint survives, the next run removes the
    dead process's temporary file, and resume equals an uninterrupted run."""
    env = dict(os.environ, IMU2CLIP_OFFLINE="1", OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    args = [*TRAIN, "--epochs", "3", "--data", str(world / "data")]
    full, cut = tmp_path / "full", tmp_path / "cut"
    killed = subprocess.run([sys.executable, "-c", KILLER, *args, "--out", str(cut)], env=env, capture_output=True)
    assert killed.returncode == -signal.SIGKILL
    assert list(cut.glob(".checkpoint.pt.tmp-*"))  # the debris of the kill
    assert model.load_checkpoint(cut / "checkpoint.pt")["epoch"] == 1  # the previous checkpoint is intact
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in the killed process (OMP_NUM_THREADS=1): the same float sums, bit for bit
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("IMU2CLIP_OFFLINE", "1")
            train.main(args + ["--out", str(cut), "--resume"])
            train.main(args + ["--out", str(full)])
    finally:
        torch.set_num_threads(threads)
    assert not list(cut.glob(".*.tmp-*"))
    a, b = (torch.load(d / "checkpoint.pt", weights_only=True) for d in (full, cut))
    assert (a["epoch"], a["step"]) == (b["epoch"], b["step"]) == (3, a["step"])
    assert all(torch.equal(a["imu_encoder"][k], b["imu_encoder"][k]) for k in a["imu_encoder"])
    # the log holds each step once, as if never killed: what the killed run logged of epoch 2 was dropped
    logged = [[(r["event"], r["epoch"], r["step"], r.get("loss")) for r in map(json.loads, (d / "log.jsonl").open())
               if r["event"] in ("train", "val")] for d in (full, cut)]
    assert logged[0] == logged[1]


def test_synth_never_mixes_two_datasets(tmp_path, capsys):
    """A second synth into the same directory is refused (above); with --overwrite it replaces the first whole."""
    small = ["--minutes", "0.2", "--width", "8", "--height", "8", "--workers", "1"]
    world_cli.main(["synth", "--out", str(tmp_path), "--recordings", "3", "--seed", "5", *small])
    world_cli.main(["synth", "--out", str(tmp_path), "--recordings", "2", "--seed", "11", "--overwrite", *small])
    recs = data.list_recordings(tmp_path)
    assert len(recs) == 2 and {json.loads((r / "meta.json").read_text())["seed"] for r in recs} == {11}


def test_resume_compares_resolved_dataset_paths(world, tmp_path, monkeypatch):
    """--data DIR/ and a relative spelling of DIR name the same dataset, so --resume accepts them."""
    monkeypatch.setenv("IMU2CLIP_OFFLINE", "1")
    out = tmp_path / "run"
    train.main(TRAIN + ["--data", str(world / "data"), "--out", str(out)])
    monkeypatch.chdir(world)
    train.main(TRAIN + ["--data", "data/", "--out", str(out), "--resume", "--epochs", "2"])
    assert model.load_checkpoint(out / "checkpoint.pt")["epoch"] == 2


@pytest.mark.parametrize("damage", [lambda c: c.pop("temperature"), lambda c: c["optimizer"].update(param_groups=[])])
def test_resume_from_a_damaged_checkpoint_is_one_error_line(world, tmp_path, monkeypatch, capsys, damage):
    monkeypatch.setenv("IMU2CLIP_OFFLINE", "1")
    out = tmp_path / "run"
    shutil.copytree(world / "run", out)
    ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
    damage(ckpt)
    torch.save(ckpt, out / "checkpoint.pt")
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        train.main(TRAIN + ["--data", str(world / "data"), "--out", str(out), "--resume", "--epochs", "2"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and [ln for ln in err.splitlines() if "error:" in ln] == [err.strip().splitlines()[-1]]
    assert "checkpoint.pt: cannot resume from it" in err
    assert "Traceback" not in err


def test_atomic_write_leaves_nothing_when_the_write_fails(tmp_path):
    target = tmp_path / "out.json"
    target.write_text("the previous version")

    def half_then_fail(tmp):
        tmp.write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError):
        data.atomic_write(target, half_then_fail)
    assert target.read_text() == "the previous version" and sorted(tmp_path.iterdir()) == [target]
    with pytest.raises(OSError):  # a directory being written, too
        data.atomic_write(tmp_path / "cache", lambda tmp: (tmp.mkdir(), (tmp / "a.npy").write_bytes(b"x"),
                                                           half_then_fail(tmp / "b")))
    assert sorted(tmp_path.iterdir()) == [target]


def test_atomic_write_recovers_what_a_kill_or_a_failed_rename_left(tmp_path, monkeypatch):
    dead = subprocess.Popen(["true"])
    dead.wait()  # a PID no longer alive
    target = tmp_path / "cache"
    for name, text in ((f".cache.tmp-{dead.pid}-old", "previous"), (f".cache.tmp-{dead.pid}", "half"),
                       (f".cache.tmp-{os.getpid()}", "a dead process that had our PID")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "v").write_text(text)
    # killed between its two renames: the previous directory was aside, the new one not yet in place
    data.atomic_write(target, lambda tmp: (tmp.mkdir(), (tmp / "v").write_text("new")))
    assert (target / "v").read_text() == "new" and sorted(tmp_path.iterdir()) == [target]
    rename = os.replace

    def fail_into_place(src, dst):  # the second rename (new directory into place) fails
        if Path(dst) == target and Path(src).name.endswith(f"tmp-{os.getpid()}"):
            raise OSError("device busy")
        rename(src, dst)

    monkeypatch.setattr(data.os, "replace", fail_into_place)
    with pytest.raises(OSError):
        data.atomic_write(target, lambda tmp: (tmp.mkdir(), (tmp / "v").write_text("newer")))
    assert (target / "v").read_text() == "new" and sorted(tmp_path.iterdir()) == [target]
