"""The synthetic egocentric world: the stand-in for Ego4D/Aria (paper section 4.1), which need a licence and terabytes.

One simulated head trajectory of a person wearing camera+IMU glasses produces the IMU, the video and the
narrations, so they agree: gravity in the accelerometer matches the horizon in the frames, the gyroscope's yaw
rate matches the panning, walking speed matches the ground flowing past, and the narrations say what the body
does. It plays the part clip_vendor/ plays for OpenAI's CLIP package: data.py only sees recordings on disk.

  - people.py: persons, activity plans (a Markov chain of activity segments, 4-20 s; "standing up" only
    from a seated posture) and Ego4D-style narrations, one every 2-4 s, each inside the segment it describes.
  - motion.py: the head trajectory on a 1 kHz grid (C2 blends between segments) and the sensor physics:
    acc = R^T (a_world - g_world) + bias + noise, gyro = vee(R^T dR/dt) + bias + noise, sampled at 200 Hz.
  - scenes.py: park, kitchen and street scenes with objects along the path, ray-cast at 10 fps by a
    90-degree pinhole camera in the IMU's frame, and blurred by the head's rotation during the exposure.

The camera sees what the body does, as a head-worn camera would, with no marker in the image: a climb happens
on rendered steps, with the gaze down on them; a sitting down ends on a bench or chair that the person walked
to and turned round to, with the gaze on the lap (the legs are in view); looking around sweeps over things
placed in its view; running keeps to open paths. All of it is built from the same trajectory as the IMU.
  - preview.py: the picture of a recording (any recording, not only synthetic ones).

Public API: SynthConfig, synthesize(out_dir, cfg), synthesize_recording(cfg, index), recording_name(plan), SCENES,
default_dataset() (train.py's dataset when it is given none).
The recordings are written by data.write_recording, which validates them. The same seed gives byte-identical files.
Its two commands (sources/world/__main__.py):

    python -m sources.world synth --out data/synthetic [--recordings 48] [--minutes 2] [--seed 0]
    python -m sources.world show data/synthetic/syn000_park --out preview.png   (any recording)
"""
import contextlib
import math
import multiprocessing
import os
import signal
import sys
import time
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

import data
from data import flag
from .motion import angular_velocity, head_trajectory, imu_from_trajectory
from .people import plan_recording
from .scenes import SCENES, furnish, make_scene, motion_blur, place_objects, render_frames

IMU_FRAME = ("x right, y down, z forward: the camera frame of the head-mounted glasses, shared by camera and IMU; "
             "acc = specific force R^T (a_world - g_world) with world z up and g_world = (0, 0, -9.81), "
             "gyro = angular velocity of the head in this frame")  # meta.json's imu_frame of synthetic recordings


@dataclass
class SynthConfig:
    """The synthetic egocentric world: how many recordings, how long, and how they are sensed."""
    recordings: int = flag(48, "number of recordings; scenes are assigned in turn", at_least=1)
    minutes: float = flag(2.0, "length of each recording", above=0)
    seed: int = flag(0, "recording i is generated from the seed sequence (seed, i) alone", at_least=0)
    width: int = flag(48, "stored frame width [px] (CLIP preprocessing upscales)", at_least=8, at_most=1024)
    height: int = flag(48, "stored frame height [px]", at_least=8, at_most=1024)
    fov_deg: float = flag(90.0, "horizontal field of view of the pinhole camera", at_least=10, at_most=170)
    exposure_sec: float = flag(0.05, "shutter time: the head's rotation during it blurs the frame (0 = sharp)",
                               at_least=0)
    video_fps: float = flag(10.0, "video frame rate", above=0)
    imu_rate_hz: float = flag(200.0, "IMU sample rate", above=0)
    sim_rate_hz: float = flag(1000.0, "rate of the simulated head trajectory; a multiple of the IMU and video rates",
                              above=0)
    acc_noise: float = flag(0.02, "accelerometer white-noise std [m/s^2]", at_least=0)
    gyro_noise: float = flag(0.003, "gyroscope white-noise std [rad/s]", at_least=0)
    acc_bias: float = flag(0.05, "std of the constant per-recording accelerometer bias [m/s^2]", at_least=0)
    gyro_bias: float = flag(0.005, "std of the constant per-recording gyroscope bias [rad/s]", at_least=0)
    scenes: tuple = flag(SCENES, "scene types, assigned to recordings in turn", choices=SCENES)
    workers: int = flag(2, "processes generating recordings in parallel (the output does not depend on it)",
                       at_least=1, at_most=64)

    def validate(self):
        """Raise DataError listing every bad field."""
        floats = {f.name: getattr(self, f.name) for f in fields(self) if f.type is float}
        bad = [f"{name} must be finite (got {v})" for name, v in floats.items() if not math.isfinite(v)]
        if bad:  # the checks below assume finite numbers (an infinite --minutes would never end)
            raise data.DataError("SynthConfig: " + "; ".join(bad))
        if self.recordings < 1:
            bad.append(f"recordings must be >= 1 (got {self.recordings})")
        if not self.minutes * 60 >= 10:
            bad.append(f"minutes must give at least 10 s per recording (got {self.minutes})")
        if not (8 <= self.width <= 1024 and 8 <= self.height <= 1024):
            bad.append(f"width and height must be in [8, 1024] (got {self.width}x{self.height})")
        if not 10 <= self.fov_deg <= 170:
            bad.append(f"fov_deg must be in [10, 170] (got {self.fov_deg})")
        for rate in (self.imu_rate_hz, self.video_fps):
            ratio = self.sim_rate_hz / rate if rate > 0 else 0.5
            if abs(ratio - round(ratio)) > 1e-9 or round(ratio) < 1:
                bad.append(f"sim_rate_hz ({self.sim_rate_hz}) must be a positive multiple of {rate}")
        if not 0 <= self.exposure_sec * self.video_fps <= 1:
            bad.append(f"exposure_sec must be in [0, 1 / video_fps] (got {self.exposure_sec})")
        if min(self.acc_noise, self.gyro_noise, self.acc_bias, self.gyro_bias) < 0:
            bad.append("noise and bias std must be >= 0")
        unknown = [s for s in self.scenes if s not in SCENES]
        if not self.scenes or unknown:
            bad.append(f"scenes must be a non-empty subset of {SCENES} (got {tuple(self.scenes)})")
        if not 1 <= self.workers <= 64:
            bad.append(f"workers must be in [1, 64] (got {self.workers})")
        if bad:
            raise data.DataError("SynthConfig: " + "; ".join(bad))


def synthesize_recording(cfg, index, activities=None):
    """Recording `index` of the synthetic world, in memory: (plan, trajectory, scene, write_recording keyword args).

    Three random streams, all from (seed, index): the plan, the objects and palette, the IMU noise. The frames
    see the places of the activities (scenes.py furnish) and are blurred by the same head rotation that
    the gyroscope measures.
    `activities` forces the segment sequence (see plan_recording)."""
    plan = plan_recording(cfg, index, activities)
    traj = head_trajectory(plan, cfg.sim_rate_hz)
    imu_t, acc, gyro = imu_from_trajectory(traj, cfg.imu_rate_hz)
    noise = np.random.default_rng([cfg.seed, index, 1])
    imu = np.concatenate([acc, gyro], axis=1) + plan.imu_bias  # (N, 6)
    imu += noise.normal(size=imu.shape) * np.repeat([cfg.acc_noise, cfg.gyro_noise], 3)
    scene_rng = np.random.default_rng([cfg.seed, index, 2])
    scene = furnish(place_objects(make_scene(plan.scene, scene_rng), plan, traj, scene_rng), plan, traj, scene_rng)
    frames_t = np.arange(int(round(plan.duration * cfg.video_fps))) / cfg.video_fps  # (F,)
    k = np.round(frames_t * cfg.sim_rate_hz).astype(int)  # frame times on the dense grid
    cam_pos = traj.p[k] - np.stack([np.zeros_like(k), np.zeros_like(k), traj.floor[k]], axis=1)  # z above the floor
    frames = render_frames(scene, cam_pos, traj.R[k], cfg.width, cfg.height, cfg.fov_deg, frames_t, traj.floor[k])
    frames = motion_blur(frames, angular_velocity(traj, k), cfg.exposure_sec, cfg.fov_deg)  # (F, H, W, 3)
    meta = {
        "source": "synthetic", "imu_rate_hz": float(cfg.imu_rate_hz), "video_fps": float(cfg.video_fps),
        "duration_sec": plan.duration, "imu_frame": IMU_FRAME, "scene": plan.scene, "seed": cfg.seed,
        "index": index, "person": plan.person,
        "camera": {"model": "pinhole, principal point at the image centre, same frame as the IMU",
                   "fov_deg": float(cfg.fov_deg), "width": cfg.width, "height": cfg.height},
        "imu_bias": {"acc": [round(float(b), 6) for b in plan.imu_bias[:3]],
                     "gyro": [round(float(b), 6) for b in plan.imu_bias[3:]]},
        "imu_noise_std": {"acc": cfg.acc_noise, "gyro": cfg.gyro_noise},
        "sim_rate_hz": float(cfg.sim_rate_hz), "objects": int(len(scene.kinds)),
    }
    segments = [{"start": s.start, "end": s.end, "label": s.label} for s in plan.segments]
    record = dict(imu=imu, imu_t=imu_t, frames=frames, frames_t=frames_t, narrations=plan.narrations,
                  segments=segments, meta=meta)
    return plan, traj, scene, record


def recording_name(plan):
    """Directory name of a synthetic recording, e.g. "syn007_street"."""
    return f"syn{plan.index:03d}_{plan.scene}"


def default_dataset():
    """The dataset train.py uses when --data is not given: $IMU2CLIP_DATA, else ./data/synthetic; generated here
    with the default SynthConfig when it holds no recordings yet, or is half-written (data.INCOMPLETE)."""
    root = Path(os.environ.get("IMU2CLIP_DATA") or Path("data") / "synthetic")
    if not (root.is_dir() and any(p.is_dir() and not p.name.startswith((".", "_")) for p in root.iterdir())) or \
            (root / data.INCOMPLETE).exists():
        print(f"default_dataset: no recordings in {root}, or some missing; generating the default synthetic dataset",
              file=sys.stderr)
        synthesize(root, SynthConfig())
    return root


def _synthesize_one(job):
    cfg, index, out_dir = job
    plan, _, _, record = synthesize_recording(cfg, index)
    return data.write_recording(Path(out_dir) / recording_name(plan), **record)


def synthesize(out_dir, cfg=None):
    """Write cfg.recordings synthetic recordings into out_dir (same seed -> byte-identical files). Refused before
    anything is written when they cannot fit on the disk, or their frames in memory; data.INCOMPLETE marks out_dir
    until the last one is written."""
    cfg = cfg or SynthConfig()
    cfg.validate()
    out_dir, workers = Path(out_dir), min(cfg.workers, cfg.recordings)
    frames = cfg.minutes * 60 * cfg.video_fps * cfg.width * cfg.height * 3  # bytes of one recording's video
    imu = cfg.minutes * 60 * cfg.imu_rate_hz * (6 * 4 + 8)  # and of its IMU, with timestamps
    data.need_room(cfg.recordings * (frames + imu), f"synth: {cfg.recordings} recordings of {cfg.minutes:g} min",
                   disk=out_dir)
    data.need_room(workers * frames * 4, f"synth: {workers} worker(s), each with a recording's frames as float32")
    out_dir.mkdir(parents=True, exist_ok=True)
    data.atomic_write(out_dir / data.INCOMPLETE, lambda tmp: tmp.write_text(f"synth at work, PID {os.getpid()}\n"))
    jobs = [(cfg, i, str(out_dir)) for i in range(cfg.recordings)]
    start, paths = time.perf_counter(), []
    print(f"synth: {cfg.recordings} recordings x {cfg.minutes:g} min, {cfg.width}x{cfg.height} px, "
          f"{workers} worker(s) -> {out_dir}", file=sys.stderr)
    # Ctrl-C reaches every process of the terminal: the workers ignore it, the pool is ended by this one
    with (multiprocessing.Pool(workers, signal.signal, (signal.SIGINT, signal.SIG_IGN)) if workers > 1
          else contextlib.nullcontext()) as pool:
        for path in pool.imap_unordered(_synthesize_one, jobs) if pool else map(_synthesize_one, jobs):
            paths.append(path)
            if len(paths) % max(1, cfg.recordings // 10) == 0 or len(paths) == cfg.recordings:
                print(f"synth: {len(paths)}/{cfg.recordings} recordings, {time.perf_counter() - start:.1f} s",
                      file=sys.stderr)
    (out_dir / data.INCOMPLETE).unlink(missing_ok=True)
    return sorted(paths)
