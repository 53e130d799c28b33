"""Hostile input, as a user would type it: every row must end with one `error:` line and its exit code, no
traceback, and no file left behind. Each script's main(argv) runs in-process. Also: a diverged run stops
without touching its checkpoints, and a kill during a checkpoint write leaves nothing that resume trips on."""
import hashlib
import json
import os
import pickle
import resource
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
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
    for name, change in (("huge", dict(imu=np.full((4, 6, 100), 3e38, np.float32))),  # finite, but no IMU's
                         ("slow", dict(rate_hz=np.float64(1e-6))), ("fast", dict(rate_hz=np.float64(1e9))),
                         ("short", dict(rate_hz=np.float64(500.0))),  # 0.2 s: 10 samples at the run's 50 Hz
                         ("complex", dict(imu=np.zeros((4, 6, 100)) + 1j)),
                         ("same_names", dict(class_names=np.array(["a", "a"]))),
                         ("empty_name", dict(class_names=np.array(["a", " "])))):
        arrays = {"imu": np.zeros((4, 6, 100), np.float32), "labels": np.array([0, 1, 0, 1]),
                  "class_names": np.array(["a", "b"]), "rate_hz": np.float64(50.0)}
        np.savez(w / "bad" / f"{name}.npz", **{**arrays, **change})
    huge = w / "bad" / "huge_imu" / rec(w).name  # a dataset whose one recording has an IMU of 3e38 m/s^2
    shutil.copytree(rec(w), huge)
    np.save(huge / "imu.npy", np.full_like(np.load(huge / "imu.npy"), 3e38))
    # Outputs that are neither a regular file nor a directory: a character device (as root: one made by mknod with
    # /dev/null's numbers; else a symlink to /dev/null, which a wrong rename would replace, not /dev/null), a FIFO,
    # a socket, a symlink to the FIFO; and a symlink loop
    try:
        os.mknod(w / "bad" / "chardev", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    except PermissionError:
        os.symlink("/dev/null", w / "bad" / "chardev")
    os.mkfifo(w / "bad" / "fifo")
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(w / "bad" / "socket"))
    os.symlink(w / "bad" / "fifo", w / "bad" / "fifo_link")
    os.symlink("loop", w / "bad" / "loop")
    (w / "bad" / "lock_link").mkdir()  # an --out whose lock file is a symlink to a file of someone else's
    os.symlink(w / "bad" / "a_file", w / "bad" / "lock_link" / ".lock")
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
    ("train", ["--data", D, "--out", B + "/a_file"], 2, "is a regular file, not a directory"),
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
    ("world", ["synth", "--out", B + "/a_file"], 2, "is a regular file, not a directory"),
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
    ("ego4d", ["--root", B + "/ego4d", "--out", "{new}/e", "--size", "0"], 2,
     "argument --size: must be a 64-bit integer >= 1 and <= 4096, got 0"),
    ("ego4d", ["--root", B + "/ego4d", "--out", "{new}/e"], 2, "not a text CSV"),
    ("ego4d", ["--root", B + "/ego4d", "--out", "{new}/e", "--videos", "gone"], 2, "no IMU CSV"),
    ("ego4d", ["--root", B + "/ego4d_narration", "--out", "{new}/e"], 2, "narration"),
    ("ego4d", ["--root", B + "/ego4d", "--out", "{new}/e", "--size=-3"], 2, "argument --size: must be"),
    ("ego4d", ["--root", B + "/ego4d", "--out", "{new}/e", "--size", "100000"], 2, "argument --size: must be"),
    ("ego4d", ["--root", B + "/ego4d", "--out", B + "/a_file"], 2, "is a regular file, not a directory"),
    ("aria", [B + "/not.vrs", "--out", B + "/a_file"], 2, "is a regular file, not a directory"),
    ("aria", [B + "/not.vrs", "--out", "{new}/a", "--size", "0"], 2, "argument --size: must be a 64-bit integer"),
    ("aria", [B + "/not.vrs", "--out", "{new}/a"], 2, "not.vrs"),
    ("aria", [B + "/empty_dir", "--out", "{new}/a"], 2, "empty_dir"),
    ("data", ["bogus"], 2, "invalid choice"),
    ("world", ["bogus"], 2, "invalid choice"),
    # issue 25, 1: an output that is neither a regular file nor a directory is refused, never replaced
    ("world", ["show", "{rec}", "--out", B + "/chardev"], 2, "chardev: is a character device; refusing to write"),
    ("world", ["show", "{rec}", "--out", B + "/fifo"], 2, "fifo: is a FIFO; refusing to write over it"),
    ("world", ["show", "{rec}", "--out", B + "/socket"], 2, "socket: is a socket; refusing to write over it"),
    ("world", ["show", "{rec}", "--out", B + "/fifo_link"], 2, "fifo_link: is a FIFO; refusing to write over it"),
    ("data", ["export-labelled", D, "--out", B + "/chardev"], 2, "chardev: is a character device; refusing"),
    ("data", ["export-labelled", D, "--out", B + "/fifo_link"], 2, "fifo_link: is a FIFO; refusing"),
    ("train", ["--data", D, "--out", B + "/chardev"], 2, "chardev: is a character device, not a directory"),
    ("train", ["--data", D, "--out", B + "/fifo_link"], 2, "fifo_link: is a FIFO, not a directory"),
    ("evaluate", ["--checkpoint", R + "/best.pt", "--out", B + "/fifo"], 2, "fifo: is a FIFO, not a directory"),
    ("world", ["synth", "--out", B + "/socket"], 2, "socket: is a socket, not a directory"),
    ("ego4d", ["--root", B + "/ego4d", "--out", B + "/chardev"], 2, "chardev: is a character device, not a"),
    ("aria", [B + "/not.vrs", "--out", B + "/fifo_link"], 2, "fifo_link: is a FIFO, not a directory"),
    # 2: a file-system error is one line naming the path and the OS's reason: a file used as a directory, a loop
    ("train", ["--data", D, "--out", B + "/a_file/x"], 2, "a_file/x: Not a directory"),
    ("evaluate", ["--checkpoint", R + "/best.pt", "--out", B + "/a_file/x"], 2, "a_file/x: Not a directory"),
    ("world", ["synth", "--out", B + "/a_file/x"], 2, "a_file/x: Not a directory"),
    ("world", ["show", "{rec}", "--out", B + "/a_file/x.png"], 2, "a_file/x.png: Not a directory"),
    ("data", ["export-labelled", D, "--out", B + "/a_file/x.npz"], 2, "a_file/x.npz: Not a directory"),
    ("ego4d", ["--root", B + "/ego4d", "--out", B + "/a_file/x"], 2, "a_file/x: Not a directory"),
    ("aria", [B + "/not.vrs", "--out", B + "/a_file/x"], 2, "a_file/x: Not a directory"),
    ("train", ["--data", D, "--out", B + "/loop"], 2, "loop: Too many levels of symbolic links"),
    ("train", ["--data", B + "/loop"], 2, "loop: Too many levels of symbolic links"),
    ("train", ["--data", D, "--clip-weights", B + "/loop"], 2, "loop: CLIP weights file not found"),
    ("evaluate", ["--checkpoint", R + "/best.pt", "--out", B + "/loop"], 2, "loop: Too many levels of symbolic"),
    ("evaluate", ["--checkpoint", R + "/best.pt", "--data", B + "/loop"], 2, "loop: Too many levels of symbolic"),
    ("world", ["synth", "--out", B + "/loop"], 2, "loop: Too many levels of symbolic links"),
    ("world", ["show", "{rec}", "--out", B + "/loop"], 2, "loop: Too many levels of symbolic links"),
    ("world", ["show", B + "/loop", "--out", "{new}/x.png"], 2, "loop: not a recording directory"),
    ("data", ["export-labelled", D, "--out", B + "/loop"], 2, "loop: Too many levels of symbolic links"),
    ("data", ["export-labelled", B + "/loop", "--out", "{new}/x.npz"], 2, "loop: Too many levels of symbolic"),
    ("ego4d", ["--root", B + "/ego4d", "--out", B + "/loop"], 2, "loop: Too many levels of symbolic links"),
    ("aria", [B + "/not.vrs", "--out", B + "/loop"], 2, "loop: Too many levels of symbolic links"),
    ("world", ["synth", "--out", B + "/lock_link"], 2, "lock_link/.lock: Too many levels of symbolic links"),
    # 5: values no real IMU produces, in a recording and in a labelled file
    ("train", ["--data", B + "/huge_imu"], 2, "imu.npy: |acc| above 10000 m/s^2 or |gyro| above 1000 rad/s"),
    ("evaluate", ["--checkpoint", R + "/best.pt", "--labelled", B + "/huge.npz", "--task", "probe"], 2,
     "huge.npz: imu has |acc| above 10000 m/s^2"),
    # 6: what cannot fit is refused before it is tried; seeds, sizes and counts are bounded when parsed
    ("evaluate", ["--checkpoint", R + "/best.pt", "--labelled", B + "/slow.npz", "--task", "probe"], 2,
     "slow.npz: resampling its 4 windows from rate_hz 1e-06 to 50 Hz"),
    ("world", ["synth", "--out", "{new}/x", "--recordings", str(2**62)], 2, "synth: 4611686018427387904 recordings"),
    ("world", ["synth", "--out", "{new}/x", "--recordings", "100000000000000000000"], 2,
     "argument --recordings: must be a 64-bit integer >= 1"),
    ("world", ["synth", "--out", "{new}/x", "--minutes", "1e300"], 2, "GiB"),
    ("world", ["synth", "--out", "{new}/x", "--seed=-1"], 2, "argument --seed: must be a 64-bit integer >= 0"),
    ("world", ["synth", "--out", "{new}/x", "--workers", "100000"], 2, "argument --workers: must be a 64-bit integer"),
    ("world", ["synth", "--out", "{new}/x", "--width", "5000"], 2, "argument --width: must be a 64-bit integer"),
    ("world", ["synth", "--out", "{new}/x", "--fov-deg", "0"], 2, "argument --fov-deg: must be a finite number"),
    ("world", ["synth", "--out", "{new}/x", "--video-fps", "0"], 2, "argument --video-fps: must be a finite"),
    ("world", ["show", "{rec}", "--out", "{new}/x.png", "--frames", "0"], 2, "argument --frames: must be a"),
    ("train", ["--data", D, "--seed", str(2**70)], 2, "argument --seed: must be a 64-bit integer >= 0"),
    ("evaluate", ["--checkpoint", R + "/best.pt", "--seed=-1"], 2, "argument --seed: must be a 64-bit integer"),
    ("evaluate", ["--checkpoint", R + "/best.pt", "--seeds", str(2**62)], 2, "argument --seeds: must be a 64-bit"),
    ("evaluate", ["--checkpoint", R + "/best.pt", "--pool-size", str(2**63)], 2,
     "argument --pool-size: must be a 64-bit integer >= 0"),
    ("train", ["--data", D, "--window-sec", "1e300"], 2, "argument --window-sec: must be a finite number > 0 and "
     "<= 3600, got 1e300"),
    ("train", ["--data", D, "--rate-hz", "1e300"], 2, "argument --rate-hz: must be a finite number > 0 and <= 10000"),
    ("data", ["export-labelled", D, "--out", "{new}/x.npz", "--window-sec", "1e300"], 2, "argument --window-sec"),
    ("data", ["export-labelled", D, "--out", "{new}/x.npz", "--stride-sec", "0"], 2, "argument --stride-sec: must"),
    # 7: what was silently accepted
    ("evaluate", ["--checkpoint", R + "/best.pt", "--labelled", B + "/complex.npz", "--task", "probe"], 2,
     "complex.npz: imu must be (N, 6, T) real numbers"),
    ("evaluate", ["--checkpoint", R + "/best.pt", "--labelled", B + "/same_names.npz", "--task", "probe"], 2,
     "same_names.npz: class_names must be distinct and not empty"),
    ("evaluate", ["--checkpoint", R + "/best.pt", "--labelled", B + "/empty_name.npz", "--task", "probe"], 2,
     "empty_name.npz: class_names must be distinct and not empty"),
    ("train", ["--data", D, "--modalities", "imu,video,video"], 2, "a modality named twice"),
    # 8: the message names the culprit
    ("evaluate", ["--checkpoint", R + "/best.pt", "--labelled", B + "/fast.npz", "--task", "probe"], 2,
     "fast.npz: rate_hz 1e+09 makes its 100 samples"),
    ("evaluate", ["--checkpoint", R + "/best.pt", "--labelled", B + "/short.npz", "--task", "probe"], 2,
     "short.npz: 10 samples per window at 50 Hz; the IMU encoder needs at least"),
    ("train", ["--data", D, "--clip-weights", B + "/chardev"], 2, "CLIP weights file is not a regular file"),
    ("evaluate", ["--checkpoint", R + "/best.pt", "--labelled", B + "/fifo", "--task", "probe"], 2,
     "fifo: not a regular file"),
]
MAINS = {"train": train.main, "evaluate": evaluate.main, "data": data.main, "world": world_cli.main,
         "ego4d": ego4d.main, "aria": aria.main}


def _files(*roots):
    """Every path under roots with its type, and a regular file's size: a FIFO replaced by a regular file, or a
    file written through a symlink, is a change."""
    found = set()
    for p in (p for r in roots if r.exists() for p in r.rglob("*")):
        st = p.lstat()
        found.add((p, stat.S_IFMT(st.st_mode), st.st_size if stat.S_ISREG(st.st_mode) else None))
    return found


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
    loss, names the epoch and step, exits 1, and writes no checkpoint (no best.pt 'MRR 1.000'). A resumed run that
    goes non-finite leaves the checkpoints it resumed from as they were."""
    monkeypatch.setenv("IMU2CLIP_OFFLINE", "1")
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as e:
        train.main(TRAIN + ["--data", str(world / "data"), "--out", str(out), "--lr", "1e30", "--grad-clip", "0",
                            "--no-learn-temperature"])
    err = capsys.readouterr().err
    assert e.value.code == 1 and [ln for ln in err.splitlines() if ln.startswith("error:")] == \
        [ln for ln in err.splitlines() if "non-finite loss at epoch 1 step 2" in ln]
    assert "*best*" not in err and not (out / "best.pt").exists() and not (out / "checkpoint.pt").exists()
    train.main(TRAIN + ["--data", str(world / "data"), "--out", str(out)])
    before = {n: _digest(out / n) for n in ("checkpoint.pt", "best.pt")}
    loss = train.batch_loss
    monkeypatch.setattr(train, "batch_loss", lambda *a, **k: (loss(*a, **k)[0] * float("nan"), {}, None))
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        train.main(TRAIN + ["--data", str(world / "data"), "--out", str(out), "--resume", "--epochs", "2"])
    assert e.value.code == 1 and "non-finite loss at epoch 2" in capsys.readouterr().err
    assert {n: _digest(out / n) for n in before} == before


KILLER = """
import os, pathlib, signal, sys
import train
write_bytes, checkpoints = pathlib.Path.write_bytes, []
def write_then_die(path, data):
    if path.name.startswith(".checkpoint.pt.tmp-"):
        checkpoints.append(path)
        if len(checkpoints) == 2:  # killed in the middle of writing the epoch-2 checkpoint
            write_bytes(path, bytes(data)[: len(data) // 2])
            os.kill(os.getpid(), signal.SIGKILL)
    return write_bytes(path, data)
pathlib.Path.write_bytes = write_then_die
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


# ----- Issue 25: the file system fights back ----------------------------------------------------------------------

def _one_error_line(capsys, code, run):
    """run() ends with SystemExit(code) and exactly one `error:` line on stderr, no traceback: -> that line."""
    with pytest.raises(SystemExit) as e:
        run()
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert e.value.code == code and len(errors) == 1 and "Traceback" not in err, err
    return errors[0]


@pytest.mark.parametrize("error, code, line", [
    (data.DataError("x.npy: bad"), 2, "error: x.npy: bad"),
    (OSError(30, "Read-only file system", "/ro/x"), 2, "error: /ro/x: Read-only file system"),
    (OSError(28, "No space left on device"), 2, "error: [Errno 28] No space left on device"),
    (FloatingPointError("non-finite loss"), 1, "error: non-finite loss"),
    (MemoryError(), 1, "error: out of memory"),
    (KeyboardInterrupt(), 130, "interrupted"),
    (KeyboardInterrupt("in epoch 2 at step 7"), 130, "interrupted: in epoch 2 at step 7")])
def test_command_makes_each_error_one_line_and_its_exit_code(tmp_path, capsys, error, code, line):
    """data.command, the edge of every main: the line and exit code of each kind of error, and --out locks that
    main took are released (the lock file goes, and so does the directory made for it)."""
    def main(argv):
        data.lock_out(tmp_path / "out")
        raise error
    with pytest.raises(SystemExit) as e:
        data.command(main)([])
    assert (e.value.code, capsys.readouterr().err) == (code, line + "\n") and not list(tmp_path.iterdir())


@pytest.fixture(scope="module")
def read_only(tmp_path_factory):
    """(a directory no command can write into, the OS's reason): a read-only tmpfs as root, else a directory without
    write permission (root ignores that)."""
    d = tmp_path_factory.mktemp("read_only")
    if os.geteuid() == 0:
        subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(d)], check=True)
        yield d, "Read-only file system"
        subprocess.run(["umount", "-l", str(d)], check=True)
    else:
        d.chmod(0o555)
        yield d, "Permission denied"
        d.chmod(0o755)


@pytest.mark.parametrize("script, argv", [
    ("train", ["--data", D, "--out", "{ro}/run"]),
    ("evaluate", ["--checkpoint", R + "/best.pt", "--task", "zeroshot", "--out", "{ro}/eval"]),
    ("world", ["synth", "--out", "{ro}/x", "--recordings", "1", "--minutes", "0.2"]),
    ("world", ["show", "{rec}", "--out", "{ro}/x.png"]),
    ("data", ["export-labelled", D, "--out", "{ro}/x.npz"]),
    ("ego4d", ["--root", B + "/ego4d_narration", "--out", "{ro}/e"]),
    ("aria", [B + "/not.vrs", "--out", "{ro}/a"]),
])
def test_a_read_only_out_is_one_line_naming_it(world, read_only, tmp_path, monkeypatch, capsys, script, argv):
    ro, reason = read_only
    monkeypatch.setenv("IMU2CLIP_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)
    argv = [a.format(data=world / "data", run=world / "run", bad=world / "bad", rec=rec(world), ro=ro) for a in argv]
    line = _one_error_line(capsys, 2, lambda: MAINS[script]((TRAIN if script == "train" else []) + argv))
    assert line == f"error: {argv[argv.index('--out') + 1]}: {reason}"
    assert not list(ro.iterdir()) and not list(tmp_path.iterdir())


@pytest.fixture
def full_disk(tmp_path):
    """(a directory, fill: a call that makes its disk full, the OS's reason then): as root, a 3 MB tmpfs that fill()
    fills up to its last 64 KiB; without root, a folder where fill() limits the size of any file this process writes
    to 64 KiB (RLIMIT_FSIZE), past which a write fails as on a full disk. Either way there is room left for
    log.jsonl and config.json, not for a checkpoint."""
    disk, limit, xfsz = tmp_path / "disk", resource.getrlimit(resource.RLIMIT_FSIZE), signal.getsignal(signal.SIGXFSZ)
    disk.mkdir()
    root = os.geteuid() == 0

    def fill():
        if root:
            with open(disk / "filler", "wb") as f, pytest.raises(OSError):  # ENOSPC: the disk is full
                while True:
                    f.write(bytes(65536))
                    f.flush()
            os.truncate(disk / "filler", (disk / "filler").stat().st_size - 65536)
        else:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails instead of killing us
            resource.setrlimit(resource.RLIMIT_FSIZE, (65536, limit[1]))

    if root:
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(disk)], check=True)
    try:
        yield disk, fill, "No space left on device" if root else "File too large"
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, limit)
        signal.signal(signal.SIGXFSZ, xfsz)
        if root:
            subprocess.run(["umount", "-l", str(disk)], check=True)


def test_a_full_disk_keeps_the_previous_checkpoints(world, full_disk, tmp_path, monkeypatch, capsys):
    """--resume onto a full disk: the checkpoint write fails as one line naming the file (not torch's RuntimeError),
    the previous checkpoints stay byte-identical, nothing half-written is left; export-labelled likewise; synth
    refuses before trying (on the tmpfs, whose free space it can see)."""
    monkeypatch.setenv("IMU2CLIP_OFFLINE", "1")
    (disk, fill, reason), out = full_disk, full_disk[0] / "run"
    shutil.copytree(world / "run", out)
    before = {n: _digest(out / n) for n in ("checkpoint.pt", "best.pt")}
    fill()
    line = _one_error_line(capsys, 2, lambda: train.main(TRAIN + ["--data", str(world / "data"), "--out", str(out),
                                                                   "--resume", "--epochs", "2"]))
    assert line in (f"error: {out / name}: {reason}" for name in ("best.pt", "checkpoint.pt"))
    assert {n: _digest(out / n) for n in before} == before
    assert sorted(p.name for p in out.iterdir()) == ["best.pt", "checkpoint.pt", "config.json", "log.jsonl"]
    line = _one_error_line(capsys, 2, lambda: data.main(["export-labelled", str(world / "data"), "--out",
                                                         str(disk / "x.npz")]))
    assert line == f"error: {disk / 'x.npz'}: {reason}" and not (disk / "x.npz").exists()
    if reason == "No space left on device":  # (a file-size limit is invisible to the free space synth checks)
        line = _one_error_line(capsys, 2, lambda: world_cli.main(["synth", "--out", str(disk / "x"), "--minutes", "1"]))
        assert f"GiB free on {disk / 'x'}" in line and not (disk / "x").exists()


def _start(tmp_path, argv):
    """A command in a process of its own session (SIGINT to its group is Ctrl-C), its stderr in tmp_path/err."""
    env = dict(os.environ, IMU2CLIP_OFFLINE="1", OMP_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, *argv], cwd=ROOT, env=env, stderr=(tmp_path / "err").open("w"),
                            start_new_session=True)


def _wait_for(path, process, timeout=120):
    for _ in range(int(timeout / 0.05)):
        if path.exists() or process.poll() is not None:
            break
        time.sleep(0.05)
    assert path.exists() and process.poll() is None


def _long_run(world, tmp_path, out):
    """train.py for ever in the background, returned once its first checkpoint is written."""
    run = _start(tmp_path, ["train.py", *TRAIN, "--epochs", "1000000", "--data", str(world / "data"), "--out", str(out)])
    _wait_for(out / "checkpoint.pt", run)
    return run


def test_one_run_per_out_and_no_stale_lock(world, tmp_path, monkeypatch, capsys):
    """While a run holds --out, another train, evaluate or synth on it stops at once naming the run's PID; a run
    on the same --data and another --out goes on beside it; after a kill -9 the next run is not refused."""
    monkeypatch.setenv("IMU2CLIP_OFFLINE", "1")
    out, other = tmp_path / "run", tmp_path / "other"
    first = _long_run(world, tmp_path, out)
    try:
        for script, argv in (("train", TRAIN + ["--data", str(world / "data"), "--out", str(out)]),
                             ("evaluate", ["--checkpoint", str(world / "run" / "best.pt"), "--out", str(out)]),
                             ("world", ["synth", "--out", str(out)])):
            line = _one_error_line(capsys, 2, lambda: MAINS[script](argv))
            assert line == f"error: --out {out}: in use by another run (PID {first.pid}); wait for it to end, or " \
                           f"choose another --out"
        train.main(TRAIN + ["--data", str(world / "data"), "--out", str(other)])
        assert model.load_checkpoint(other / "checkpoint.pt")["epoch"] == 1
    finally:
        first.kill()
        first.wait()
    assert (out / ".lock").exists()  # the file a killed run leaves, without its lock
    epochs = model.load_checkpoint(out / "checkpoint.pt")["epoch"] + 1
    train.main(TRAIN + ["--data", str(world / "data"), "--out", str(out), "--resume", "--epochs", str(epochs)])
    assert model.load_checkpoint(out / "checkpoint.pt")["epoch"] == epochs and not (out / ".lock").exists()


def test_ctrl_c_stops_a_run_with_one_line(world, tmp_path):
    """SIGINT to the process group, as Ctrl-C sends it: exit code 130, one line saying where the run stopped and that
    --resume continues it, no traceback, nothing half-written, the lock released."""
    out = tmp_path / "run"
    run = _long_run(world, tmp_path, out)
    os.killpg(run.pid, signal.SIGINT)
    assert run.wait(timeout=60) == 130
    err = (tmp_path / "err").read_text()
    epoch = model.load_checkpoint(out / "checkpoint.pt")["epoch"]
    assert re.fullmatch(rf"interrupted: in epoch {epoch + 1} at step \d+; {out}/checkpoint.pt holds epoch {epoch}, "
                        rf"and --resume continues from it", err.splitlines()[-1]), err
    assert "Traceback" not in err and not [p for p in out.iterdir() if p.name.startswith(".")]


def test_ctrl_c_stops_synth_and_the_half_written_dataset_warns(tmp_path, capsys):
    """Ctrl-C reaches synth and its workers: exit code 130, "interrupted" and no traceback from any process; the
    dataset keeps data.INCOMPLETE, so that reading it warns."""
    out = tmp_path / "synthetic"
    synth = _start(tmp_path, ["-m", "sources.world", "synth", "--out", str(out), "--recordings", "1000",
                              "--minutes", "0.2", "--width", "8", "--height", "8"])
    _wait_for(out / "syn000_park" / "meta.json", synth)
    os.killpg(synth.pid, signal.SIGINT)
    assert synth.wait(timeout=60) == 130
    err = (tmp_path / "err").read_text()
    assert err.splitlines()[-1] == "interrupted" and "Traceback" not in err, err
    assert (out / data.INCOMPLETE).exists() and not (out / ".lock").exists()
    assert data.list_recordings(out)
    assert f"warning: {out}: the source writing it was stopped" in capsys.readouterr().err


def test_the_default_dataset_is_made_again_when_half_written(tmp_path, monkeypatch):
    root, made = tmp_path / "synthetic", []
    (root / "syn000_park").mkdir(parents=True)
    monkeypatch.setenv("IMU2CLIP_DATA", str(root))
    monkeypatch.setattr(synthetic_world, "synthesize", lambda out, cfg: made.append(out))
    assert synthetic_world.default_dataset() == root and made == []  # a finished one is used as it is
    (root / data.INCOMPLETE).write_text("")
    assert synthetic_world.default_dataset() == root and made == [root]


def test_a_non_finite_validation_stops_the_run(world, tmp_path, monkeypatch, capsys):
    """A NaN validation loss (the training loss finite) stops the run as a NaN training loss does: exit code 1, one
    line, both checkpoints untouched, no *best*, and log.jsonl stays valid JSON (no bare NaN)."""
    monkeypatch.setenv("IMU2CLIP_OFFLINE", "1")
    out = tmp_path / "run"
    shutil.copytree(world / "run", out)
    before = {n: _digest(out / n) for n in ("checkpoint.pt", "best.pt")}
    validate = train.validate
    monkeypatch.setattr(train, "validate", lambda *args: {**validate(*args), "val_loss": float("nan")})
    line = _one_error_line(capsys, 1, lambda: train.main(TRAIN + ["--data", str(world / "data"), "--out", str(out),
                                                                   "--resume", "--epochs", "2"]))
    assert line.startswith("error: non-finite val_loss in the validation of epoch 2")
    assert {n: _digest(out / n) for n in before} == before
    for record in (out / "log.jsonl").read_text().splitlines():
        json.loads(record, parse_constant=lambda bare: pytest.fail(f"log.jsonl holds a bare {bare}"))


def test_a_recording_that_is_a_symlink_loop_is_skipped_with_a_warning(world, tmp_path, capsys):
    (tmp_path / "ds").mkdir()
    os.symlink(rec(world), tmp_path / "ds" / "real")
    os.symlink("self", tmp_path / "ds" / "self")
    assert data.list_recordings(tmp_path / "ds") == [tmp_path / "ds" / "real"]
    assert capsys.readouterr().err == f"warning: {tmp_path / 'ds' / 'self'}: skipped, a symlink that leads nowhere " \
                                      f"(a loop or a missing target)\n"
