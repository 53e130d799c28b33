"""Data for IMU2CLIP: recordings, windows with cached CLIP embeddings, Ego4D import.

Recordings (section 1). Every source (synthetic, Ego4D, your own data) is converted into one on-disk format,
a directory per recording whose arrays are memory-mapped (np.load(mmap_mode="r")):

    DATASET_ROOT/<recording_id>/   names starting with "." or "_" are not recordings
        meta.json        format, version, source, imu_rate_hz, video_fps, duration_sec, imu_units, imu_frame,
                         scene, seed, person (the synthetic world adds its camera, IMU bias and noise)
        imu.npy          (N, 6) float32: ax, ay, az [m/s^2, specific force], gx, gy, gz [rad/s], sensor frame
        imu_t.npy        (N,) float64 seconds since the start, strictly increasing
        frames.npy       (F, H, W, 3) uint8 RGB
        frames_t.npy     (F,) float64 seconds, strictly increasing
        narrations.json  [{"t": 12.3, "text": "#C C walks along the path in the park"}, ...]  (raw Ego4D style)
        segments.json    optional: [{"start": 0.0, "end": 8.2, "label": "walking"}, ...]

read_recording validates one (missing file, shape, dtype, NaN, non-monotonic timestamps) and raises DataError
naming the file; write_recording writes one atomically (a temporary directory renamed into place).

The synthetic egocentric world, the stand-in for Ego4D/Aria (paper section 4.1), lives in world/ (see its
docstring) and writes its recordings through write_recording; data.py imports it only to run these commands:

    python data.py synth --out data/synthetic [--recordings 48] [--minutes 2] [--seed 0]
    python data.py show data/synthetic/syn000_park --out preview.png   (any recording)

default_dataset() (what train.py uses without --data) generates world's default dataset when it is missing:
48 recordings x 2 min at 48x48 px, about 440 MB, in about 25 s on 2 idle cores.

Windows and the embedding cache (section 2; paper section 3 and its note on pre-processing every medium into
equal-length parallel windows). A window is [t - w/2, t + w/2] around a narration (default w = 5 s), or a
sliding window for IMU<->video only. Its IMU is resampled by linear interpolation to a fixed rate (200 Hz),
giving (6, rate * w) float32; windows past the ends or with IMU gaps are dropped and counted, never zero-filled.
The split is by recording. CLIP is frozen, so the CLIP embedding of each window's frame(s) and of each distinct
narration is computed once and cached as .npy under DATASET_ROOT/.cache, keyed by a fingerprint of the
recordings, the window parameters and the CLIP weights; training then never runs CLIP. WindowDataset serves the
cached arrays (its .batch is the training fast path); load_labelled reads the labelled-IMU .npz format.

    python data.py export-labelled data/synthetic --out labelled.npz
    python data.py ego4d --root EGO4D_DIR --out data/ego4d [--videos UID,...]   (needs the ffmpeg command)
"""
import argparse
import glob
import hashlib
import inspect
import itertools
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

import numpy as np
import torch


class DataError(ValueError):
    """Bad input data: the message names the file and the problem."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def _remove(path: Path) -> None:
    shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink(missing_ok=True)


def atomic_write(path, write) -> None:
    """write(tmp), then rename tmp over `path` (a file or a directory): a kill at any moment leaves the previous
    `path` intact. tmp is the hidden `.NAME.tmp-PID` beside it; it is deleted when write raises, and the leftovers
    of killed processes (whose PID is no longer alive) are deleted the next time the same `path` is written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(f".{glob.escape(path.name)}.tmp-*"):
        pid = stale.name.rsplit("-", 1)[-1]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            _remove(stale)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        write(tmp)
        if tmp.is_dir() and path.exists():  # a directory cannot be renamed over another: swap via a 2nd name
            old = path.with_name(f".{path.name}.tmp-{os.getpid()}-old")
            os.replace(path, old)
            os.replace(tmp, path)
            _remove(old)
        else:
            os.replace(tmp, path)
    except BaseException:
        if tmp.exists():
            _remove(tmp)
        raise


def flag(default, help: str, choices=None):
    """A config field with its --help text (and allowed values): `epochs: int = flag(10, "passes over the data")`.
    Every command line of the project is generated from such fields by `add_flags`."""
    return field(default=default, metadata={"help": help, "choices": choices})


def add_flags(parser: argparse.ArgumentParser, cls) -> None:
    """One --flag per field of the dataclass `cls`; booleans get --x / --no-x, tuples take several values."""
    for f in fields(cls):
        name, meta = "--" + f.name.replace("_", "-"), f.metadata
        help_text = f"{meta.get('help', '')} (default: %(default)s)"
        if isinstance(f.default, bool):
            parser.add_argument(name, action=argparse.BooleanOptionalAction, default=f.default, help=help_text)
        elif isinstance(f.default, tuple):
            parser.add_argument(name, nargs="+", type=type(f.default[0]), default=list(f.default),
                                choices=meta.get("choices"), help=help_text)
        else:
            parser.add_argument(name, type=type(f.default), default=f.default, choices=meta.get("choices"),
                                help=help_text)


def config_from(cls, args: argparse.Namespace):
    """The dataclass `cls` filled from parsed flags (see add_flags)."""
    return cls(**{f.name: tuple(getattr(args, f.name)) if isinstance(f.default, tuple) else getattr(args, f.name)
                  for f in fields(cls)})


def field_help(cls) -> dict:
    """The comment after each dataclass field, reused as its --help text by every command line."""
    lines = inspect.getsource(cls).splitlines()
    return {m[1]: m[2] for m in (re.match(r"\s+(\w+): .*?  # (.*)", line) for line in lines) if m}


# ======================================================================================
# Section 1: recordings
# ======================================================================================


ACTIVITIES = ("walking", "running", "standing still", "sitting down", "standing up", "looking around",
              "climbing stairs")
FORMAT_NAME = "imu2clip-recording"
FORMAT_VERSION = 1
IMU_FRAME = ("x right, y down, z forward: the camera frame of the head-mounted glasses, shared by camera and IMU; "
             "acc = specific force R^T (a_world - g_world) with world z up and g_world = (0, 0, -9.81), "
             "gyro = angular velocity of the head in this frame")


# --------------------------------------------------------------------------------------
# The recording format: reader, writer, listing
# --------------------------------------------------------------------------------------


@dataclass
class Recording:
    """One recording directory, arrays memory-mapped (layout in the module docstring)."""
    path: Path  # the recording directory
    id: str  # the directory name
    meta: dict  # meta.json
    imu: np.ndarray  # (N, 6) float32: ax, ay, az [m/s^2], gx, gy, gz [rad/s] in the sensor frame
    imu_t: np.ndarray  # (N,) float64 seconds since the start, strictly increasing
    frames: np.ndarray  # (F, H, W, 3) uint8 RGB
    frames_t: np.ndarray  # (F,) float64 seconds, strictly increasing
    narrations: list  # [{"t": seconds, "text": raw Ego4D-style text}]
    segments: list  # [{"start": s, "end": s, "label": activity}], [] when the source has none


def _is_number(x):
    return isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, bool) and math.isfinite(x)


def _check_array(name, a, shape, dtype):
    """Raise DataError unless `a` has `dtype` and `shape` (letters in `shape` match any size)."""
    wanted = "(" + ", ".join(str(s) for s in shape) + ")"
    if a.ndim != len(shape) or any(isinstance(s, int) and s != n for s, n in zip(shape, a.shape)):
        raise DataError(f"{name}: expected shape {wanted}, got {tuple(a.shape)}")
    if a.dtype != dtype:
        raise DataError(f"{name}: expected dtype {np.dtype(dtype).name}, got {a.dtype}")


def _check_times(name, t, n, what):
    """Timestamps: (n,) float64, finite, strictly increasing."""
    _check_array(name, t, ("N",), np.float64)
    if len(t) != n:
        raise DataError(f"{name}: {len(t)} timestamps for {n} {what}")
    if not np.isfinite(t).all():
        raise DataError(f"{name}: NaN or infinite timestamp at index {int(np.flatnonzero(~np.isfinite(t))[0])}")
    bad = np.flatnonzero(np.diff(t) <= 0)
    if bad.size:
        i = int(bad[0]) + 1
        raise DataError(f"{name}: timestamps not strictly increasing (t[{i}] = {t[i]:.6f} after {t[i - 1]:.6f})")


def _check_recording_arrays(names, imu, imu_t, frames, frames_t):
    _check_array(names[0], imu, ("N", 6), np.float32)
    if len(imu) < 2:
        raise DataError(f"{names[0]}: needs at least 2 IMU samples, got {len(imu)}")
    finite = np.isfinite(imu).all(axis=1)
    if not finite.all():
        raise DataError(f"{names[0]}: NaN or infinite value at sample {int(np.flatnonzero(~finite)[0])}")
    _check_times(names[1], imu_t, len(imu), "IMU samples")
    _check_array(names[2], frames, ("F", "H", "W", 3), np.uint8)
    if len(frames) < 1:
        raise DataError(f"{names[2]}: no frames")
    _check_times(names[3], frames_t, len(frames), "frames")


def _check_narrations(name, narrations):
    if not isinstance(narrations, list):
        raise DataError(f"{name}: expected a list of {{\"t\", \"text\"}} entries, got {type(narrations).__name__}")
    for i, n in enumerate(narrations):
        if not (isinstance(n, dict) and _is_number(n.get("t")) and isinstance(n.get("text"), str)):
            raise DataError(f"{name}: entry {i} is not {{\"t\": seconds, \"text\": str}}: {str(n)[:80]}")


def _check_segments(name, segments):
    if not isinstance(segments, list):
        raise DataError(f"{name}: expected a list of segments, got {type(segments).__name__}")
    for i, s in enumerate(segments):
        if not (isinstance(s, dict) and _is_number(s.get("start")) and _is_number(s.get("end"))
                and isinstance(s.get("label"), str) and s["start"] < s["end"]):
            raise DataError(f"{name}: segment {i} is not {{\"start\" < \"end\", \"label\": str}}: {str(s)[:80]}")


def _read_json(path):
    if not path.is_file():
        raise DataError(f"{path}: missing file")
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise DataError(f"{path}: not readable JSON ({e})") from None


def _load_npy(path):
    if not path.is_file():
        raise DataError(f"{path}: missing file")
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: not a readable .npy array ({e})") from None


def read_recording(path):
    """Open and validate one recording directory; DataError names the bad file and the problem."""
    path = Path(path)
    if not path.is_dir():
        raise DataError(f"{path}: not a recording directory")
    meta = _read_json(path / "meta.json")
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
        found = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise DataError(f"{path / 'meta.json'}: not a {FORMAT_NAME} meta file (format: {found!r})")
    if meta.get("version") != FORMAT_VERSION:
        raise DataError(f"{path / 'meta.json'}: unsupported version {meta.get('version')!r} "
                        f"(this reader knows {FORMAT_VERSION})")
    names = [path / n for n in ("imu.npy", "imu_t.npy", "frames.npy", "frames_t.npy")]
    arrays = [_load_npy(n) for n in names]
    _check_recording_arrays(names, *arrays)
    narrations = _read_json(path / "narrations.json")
    _check_narrations(path / "narrations.json", narrations)
    segments = _read_json(path / "segments.json") if (path / "segments.json").exists() else []
    _check_segments(path / "segments.json", segments)
    return Recording(path, path.name, meta, *arrays, narrations, segments)


def list_recordings(root):
    """The recording directories of a dataset, sorted; names starting with "." or "_" are not recordings."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: no such dataset directory")
    found = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith((".", "_")))
    if not found:
        raise DataError(f"{root}: no recordings in this dataset directory")
    return found


def write_recording(path, imu, imu_t, frames, frames_t, narrations, segments=(), meta=None):
    """Validate and write one recording atomically (a temporary directory renamed into place).

    `meta` fills or overrides the defaults (source, rates estimated from the timestamps, units, ...).
    """
    path = Path(path)
    imu, imu_t = np.ascontiguousarray(imu, np.float32), np.ascontiguousarray(imu_t, np.float64)
    frames, frames_t = np.ascontiguousarray(frames), np.ascontiguousarray(frames_t, np.float64)
    files = ("imu.npy", "imu_t.npy", "frames.npy", "frames_t.npy")
    _check_recording_arrays([f"{path / n} (to write)" for n in files], imu, imu_t, frames, frames_t)
    narrations = list(narrations)
    _check_narrations(f"{path / 'narrations.json'} (to write)", narrations)
    narrations = [{"t": float(n["t"]), "text": n["text"]} for n in narrations]
    segments = [dict(s) for s in segments]
    _check_segments(f"{path / 'segments.json'} (to write)", segments)
    full_meta = {
        "format": FORMAT_NAME, "version": FORMAT_VERSION, "source": "unknown",
        "imu_rate_hz": float((len(imu_t) - 1) / (imu_t[-1] - imu_t[0])),
        "video_fps": float((len(frames_t) - 1) / (frames_t[-1] - frames_t[0])) if len(frames_t) > 1 else 0.0,
        "duration_sec": float(max(imu_t[-1], frames_t[-1])),
        "imu_units": {"acc": "m/s^2", "gyro": "rad/s"}, "imu_frame": "unspecified",
        "scene": None, "seed": None, "person": None,
    }
    full_meta.update(meta or {})

    def write(tmp):
        tmp.mkdir()
        for name, a in zip(files, (imu, imu_t, frames, frames_t)):
            np.save(tmp / name, a)
        (tmp / "meta.json").write_text(json.dumps(full_meta, indent=1) + "\n")
        (tmp / "narrations.json").write_text(json.dumps(narrations, indent=1) + "\n")
        if segments:
            (tmp / "segments.json").write_text(json.dumps(segments, indent=1) + "\n")
    atomic_write(path, write)
    return path


def clean_narration(text):
    """Ego4D narration -> caption: drop the "#C C " camera-wearer tag, "#unsure" -> "something",
    drop other "#" tags' hash, collapse whitespace, lowercase."""
    text = re.sub(r"#unsure", "something", text, flags=re.IGNORECASE)
    text = re.sub(r"^\s*#c\s+c\s+", "", text, flags=re.IGNORECASE)
    text = re.sub(r"#([a-z])\b", r"\1", text, flags=re.IGNORECASE)
    return " ".join(text.split()).lower()


def default_dataset(path=None):
    """The dataset used when none is given: `path`, else $IMU2CLIP_DATA, else ./data/synthetic; generated with
    the default world.SynthConfig when it holds no recordings yet."""
    root = Path(path or os.environ.get("IMU2CLIP_DATA") or Path("data") / "synthetic")
    if root.is_dir() and any(p.is_dir() and not p.name.startswith((".", "_")) for p in root.iterdir()):
        return root
    import world  # only when the world is needed: data.py itself reads any recording
    print(f"default_dataset: no recordings in {root}; generating the default synthetic dataset", file=sys.stderr)
    world.synthesize(root, world.SynthConfig())
    return root


def _run_synth(args):
    import world
    start = time.perf_counter()
    paths = world.synthesize(args.out, config_from(world.SynthConfig, args))
    size = sum(p.stat().st_size for d in paths for p in d.iterdir())
    print(f"wrote {len(paths)} recordings to {args.out} ({size / 1e6:.1f} MB) in {time.perf_counter() - start:.1f} s")


def _run_show(args):
    from world.preview import draw_recording
    img = draw_recording(read_recording(args.recording), args.width, args.height, args.frames)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(args.out, lambda tmp: img.save(tmp, format="PNG"))
    print(f"wrote {args.out} ({img.width}x{img.height})")


def _add_world_commands(sub):
    """Register the `synth` and `show` subcommands (the world is imported when they run)."""
    import world
    p = sub.add_parser("synth", help="write a synthetic dataset",
                       description="Write a dataset of synthetic recordings (same seed -> same bytes).")
    p.add_argument("--out", type=Path, required=True, help="dataset directory to write")
    add_flags(p, world.SynthConfig)
    p.set_defaults(run=_run_synth)
    s = sub.add_parser("show", help="draw one recording to a PNG",
                       description="Draw a recording: IMU channels, activities, a strip of frames, narrations.")
    s.add_argument("recording", type=Path, help="recording directory")
    s.add_argument("--out", type=Path, required=True, help="PNG to write")
    s.add_argument("--width", type=int, default=1200, help="default: %(default)s")
    s.add_argument("--height", type=int, default=800, help="default: %(default)s")
    s.add_argument("--frames", type=int, default=10, help="frames in the strip (default: %(default)s)")
    s.set_defaults(run=_run_show)


# ======================================================================================
# Section 2: windows, resampling, embedding cache, labelled IMU, Ego4D import
# ======================================================================================


# A window is a time span [s, s + window_sec) of one recording. Its IMU is resampled onto the model's
# fixed grid, its frame(s) and its narration are encoded once by the frozen CLIP and the embeddings are
# cached on disk (the paper's implementation note: "pre-process each medium into equal-length parallel
# windows and cache them"), so training runs a small IMU encoder against stored vectors.

CACHE_VERSION = 1  # bump when the cache layout or the window maths change: old caches are then ignored
EGO4D_FPS = 10.0  # the official IMU2CLIP preprocessing samples Ego4D video at 10 fps
SPLITS = ("train", "val", "test", "all")


@dataclass
class WindowConfig:
    """How recordings are cut into windows; everything but the split fields is part of the cache key."""
    window_sec: float = 5.0  # window length in seconds (the official code's effective window)
    rate_hz: float = 200.0  # IMU rate the model sees; every source is resampled to it
    mode: str = "narration"  # "narration": centred on each narration; "sliding": every stride_sec, no text
    stride_sec: float = 2.5  # step between sliding windows (sliding mode and export-labelled only)
    video_mode: str = "clip_1frame"  # "clip_1frame": middle frame; "clip_avg_frames": mean of first/mid/last
    max_gap_sec: float = 0.1  # a window whose IMU has a larger hole between two samples is dropped
    val_frac: float = 0.15  # fraction of recordings (not windows) held out for validation
    test_frac: float = 0.15  # fraction of recordings held out for testing
    split_seed: int = 0  # seed of the permutation of recording ids that assigns the splits

    def __post_init__(self):
        if self.mode not in ("narration", "sliding"):
            raise DataError(f"WindowConfig.mode must be 'narration' or 'sliding', got {self.mode!r}")
        if self.video_mode not in ("clip_1frame", "clip_avg_frames"):
            raise DataError(
                f"WindowConfig.video_mode must be 'clip_1frame' or 'clip_avg_frames', got {self.video_mode!r}")
        if not (self.window_sec > 0 and self.rate_hz > 0 and self.stride_sec > 0 and self.max_gap_sec > 0):
            raise DataError("WindowConfig: window_sec, rate_hz, stride_sec and max_gap_sec must be positive")
        if not (0 <= self.val_frac < 1 and 0 <= self.test_frac < 1 and self.val_frac + self.test_frac < 1):
            raise DataError("WindowConfig: val_frac and test_frac must be in [0, 1) with a sum below 1")

    @property
    def num_samples(self) -> int:
        """Samples per window on the model grid, T = round(rate_hz * window_sec)."""
        return int(round(self.rate_hz * self.window_sec))


# ----- resampling ---------------------------------------------------------------------------------------


def _boxcar(x, k):
    """Centred moving average of odd length k along axis 0: (S, K) -> (S, K). Near the ends the window
    shrinks symmetrically (sample i averages i-j..i+j, j = min(k // 2, i, S - 1 - i)), so the average of
    increasing times stays strictly increasing and the first and last samples stay in place."""
    h = min(k // 2, (len(x) - 1) // 2)
    out = x.copy()
    out[h:len(x) - h] = sum(x[h + o:len(x) - h + o] for o in range(-h, h + 1)) / (2 * h + 1)
    for i in range(1, h):
        out[i], out[-1 - i] = x[:2 * i + 1].mean(axis=0), x[-2 * i - 1:].mean(axis=0)
    return out


def _resample(x, t, t_out, rate_hz=None):
    """Linear interpolation of the columns of x (S, K) from times t (S,) to t_out (M,): -> (M, K) float64.

    Why linear interpolation on timestamps: it handles jittered and irregular clocks (Ego4D is ~200 Hz with
    jitter) without assuming a nominal rate, is exact for piecewise-linear signals, and its error on a
    smooth signal is at most dt^2/8 * max|x''|, negligible for human motion (< 20 Hz) sampled at >= 50 Hz.
    Upsampling (a 50 Hz phone) needs nothing else. Downsampling (Aria at 800-1000 Hz) would alias content
    above the new Nyquist rate, so when the source is more than twice as fast as rate_hz, a centred boxcar
    of about source/target samples is applied first, to the values and to their timestamps alike (so a
    jittered clock is averaged consistently and a linear signal stays exact): a cheap low-pass whose first
    null sits near rate_hz. It is not a sharp filter, but what it lets through is small for motion signals
    and the encoder's first convolution is a learned filter on top of it. Times outside t hold the edge
    value (callers drop windows that run past the ends before resampling).
    """
    x = np.asarray(x, dtype=np.float64)
    t = np.asarray(t, dtype=np.float64)
    t_out = np.asarray(t_out, dtype=np.float64)
    if len(t) < 2:
        raise ValueError("resampling needs at least two source samples")
    if rate_hz is not None:
        ratio = 1.0 / (np.median(np.diff(t)) * rate_hz)  # source rate / target rate
        if ratio > 2.01:  # (a tolerance: a 400 Hz source read at 200 Hz is "exactly 2x", left alone)
            k = int(ratio) | 1  # odd, so the average is centred on a sample
            x, t = _boxcar(x, k), _boxcar(t[:, None], k)[:, 0]
    j = np.clip(np.searchsorted(t, t_out, side="right") - 1, 0, len(t) - 2)  # (M,) left neighbour
    w = np.clip((t_out - t[j]) / (t[j + 1] - t[j]), 0.0, 1.0)[:, None]  # (M, 1) weight of the right one
    return x[j] * (1.0 - w) + x[j + 1] * w  # (M, K)


def resample_imu(imu, t, t_out, rate_hz=None):
    """Resample IMU samples imu (N, 6) taken at times t (N,) onto times t_out (M,): -> (M, 6) float32.

    rate_hz is the rate of t_out; when given and the source is more than 2x faster, the signal is
    band-limited first (see _resample). Times outside [t[0], t[-1]] hold the edge value.
    """
    imu = np.asarray(imu)
    if imu.ndim != 2 or imu.shape[1] != 6 or len(imu) != len(t):
        raise ValueError(f"resample_imu: imu must be (N, 6) with N = len(t) = {len(t)}, got {imu.shape}")
    return _resample(imu, t, t_out, rate_hz).astype(np.float32)


# ----- the window index of one recording -----------------------------------------------------------------


def _candidate_starts(rec, cfg):
    """Window starts (Nw,) and their narration texts (raw; None in sliding mode) for one recording."""
    if cfg.mode == "narration":
        t = np.array([float(n["t"]) for n in rec.narrations], dtype=np.float64)
        return t - cfg.window_sec / 2, [n["text"] for n in rec.narrations]
    lo, hi = _span(rec)
    count = int(np.floor((hi - lo - cfg.window_sec) / cfg.stride_sec + 1e-9)) + 1
    return lo + cfg.stride_sec * np.arange(max(count, 0)), None


def _span(rec):
    """The time span covered by both the IMU and the video of a recording."""
    return max(rec.imu_t[0], rec.frames_t[0]), min(rec.imu_t[-1], rec.frames_t[-1])


def _select_windows(rec, starts, cfg):
    """Keep-mask (Nw,) of windows that lie inside the recording, have no IMU gap and contain a frame,
    plus the frame indices (Nw, 3): first, middle (nearest the centre) and last frame of each window."""
    w, eps = cfg.window_sec, 1e-6
    lo, hi = _span(rec)
    inside = (starts >= lo - eps) & (starts + w <= hi + eps)
    # an IMU gap is a difference between consecutive timestamps above max_gap_sec; a window has one when
    # a gap lies between the last sample at or before its start and the first sample at or after its end
    gaps = np.flatnonzero(np.diff(rec.imu_t) > cfg.max_gap_sec)  # gap g spans imu_t[g] .. imu_t[g + 1]
    i0 = np.searchsorted(rec.imu_t, starts, side="right") - 1
    i1 = np.searchsorted(rec.imu_t, starts + w, side="left")
    no_gap = np.searchsorted(gaps, i1, side="left") == np.searchsorted(gaps, i0, side="left")
    ft = rec.frames_t
    first = np.searchsorted(ft, starts - eps, side="left")  # (Nw,) first frame at or after the start
    last = np.searchsorted(ft, starts + w - eps, side="left") - 1  # last frame before the end
    centre = starts + w / 2
    right = np.clip(np.searchsorted(ft, centre), 0, len(ft) - 1)
    left = np.clip(right - 1, 0, len(ft) - 1)
    middle = np.where(np.abs(ft[left] - centre) <= np.abs(ft[right] - centre), left, right)
    has_frame = first <= last
    frames = np.stack([first, middle, last], axis=1)  # (Nw, 3)
    drops = {
        "out_of_range": int((~inside).sum()),
        "imu_gap": int((inside & ~no_gap).sum()),
        "no_frame": int((inside & no_gap & ~has_frame).sum()),
    }
    return inside & no_gap & has_frame, frames, drops


def _window_imu(rec, starts, cfg):
    """IMU of each window on the model grid: (Nw,) starts -> (Nw, 6, T) float32."""
    T = cfg.num_samples
    t_out = starts[:, None] + np.arange(T)[None, :] / cfg.rate_hz  # (Nw, T) sample times
    x = _resample(rec.imu, rec.imu_t, t_out.ravel(), cfg.rate_hz)  # (Nw * T, 6)
    return x.reshape(len(starts), T, 6).transpose(0, 2, 1).astype(np.float32)  # (Nw, 6, T)


def _window_labels(rec, starts, window_sec, class_names):
    """Label of each window (Nw,) int64: the activity covering the largest part of it, -1 when none."""
    labels = np.full(len(starts), -1, dtype=np.int64)
    if not rec.segments or not len(starts):
        return labels
    try:
        seg = np.array([[float(s["start"]), float(s["end"])] for s in rec.segments])  # (S, 2)
        cls = np.array([class_names.index(s["label"]) for s in rec.segments])  # (S,)
    except (KeyError, TypeError, ValueError) as e:
        raise DataError(f"{rec.path / 'segments.json'}: bad segment ({e}); labels must be one of "
                        f"{list(class_names)}") from None
    overlap = np.minimum(starts[:, None] + window_sec, seg[None, :, 1]) - np.maximum(starts[:, None], seg[None, :, 0])
    overlap = np.clip(overlap, 0.0, None)  # (Nw, S) seconds of each segment inside each window
    cover = overlap @ np.eye(len(class_names))[cls]  # (Nw, C) seconds of each class
    best = cover.argmax(axis=1)
    return np.where(cover.max(axis=1) > 0, best, labels)


def _class_names(recs):
    """Class names of a dataset: meta["class_names"] when the recordings give them, else ACTIVITIES."""
    names = {tuple(r.meta.get("class_names", ACTIVITIES)) for r in recs}
    if len(names) > 1:
        raise DataError(f"{recs[0].path.parent}: recordings disagree on meta.json class_names: {sorted(names)}")
    return names.pop() if names else tuple(ACTIVITIES)


def _split_of(ids, cfg):
    """Assign recording ids to train/val/test: a seeded permutation of the sorted ids, so the split is by
    recording (no window of a test recording is ever trained on) and deterministic. With >= 3 recordings
    val and test each get at least one recording (when their fraction is > 0) and train keeps one."""
    ids = sorted(ids)
    n = len(ids)
    n_val = n_test = 0
    if n >= 3:
        n_test = max(1, int(round(cfg.test_frac * n))) if cfg.test_frac > 0 else 0
        n_val = max(1, int(round(cfg.val_frac * n))) if cfg.val_frac > 0 else 0
        while n_val + n_test > n - 1:  # keep one recording to train on
            n_val, n_test = (n_val - 1, n_test) if n_val >= n_test else (n_val, n_test - 1)
    order = np.random.default_rng(cfg.split_seed).permutation(n)
    split = {}
    for rank, i in enumerate(order):
        split[ids[i]] = "test" if rank < n_test else "val" if rank < n_test + n_val else "train"
    return split


# ----- the embedding cache -------------------------------------------------------------------------------


def _recording_fingerprint(path):
    """What identifies a recording's content: small files by their bytes, large arrays by size + mtime."""
    parts = [path.name]
    for f in sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith(".")):
        st = f.stat()
        if st.st_size <= 1 << 20:
            parts.append(f"{f.name}:{hashlib.sha256(f.read_bytes()).hexdigest()}")
        else:
            parts.append(f"{f.name}:{st.st_size}:{st.st_mtime_ns}")
    return parts


def cache_fingerprint(paths, cfg, clip):
    """sha256 over everything a cached window depends on: recordings, window parameters, CLIP, format.
    The split fields are left out: the cache holds the whole dataset and the split is chosen on load."""
    window = {k: getattr(cfg, k) for k in ("window_sec", "rate_hz", "mode", "stride_sec", "video_mode",
                                              "max_gap_sec")}
    if cfg.mode == "narration":
        window.pop("stride_sec")
    key = {"version": CACHE_VERSION, "window": window, "clip": clip.fingerprint,
           "recordings": [_recording_fingerprint(Path(p)) for p in paths]}
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()


def _sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def _save_cache(cache, arrays, index):
    """Write the cache directory atomically: build it under a temporary name, then rename it into place.
    manifest.json (size + sha256 of every file) is written last, inside the temporary directory."""
    tmp = cache.with_name(f"{cache.name}.tmp-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    for name, a in arrays.items():
        np.save(tmp / f"{name}.npy", a)
    (tmp / "index.json").write_text(json.dumps(index))
    files = {f.name: {"size": f.stat().st_size, "sha256": _sha256_file(f)} for f in sorted(tmp.iterdir())}
    (tmp / "manifest.json").write_text(json.dumps({"version": CACHE_VERSION, "files": files}, indent=1))
    if cache.exists():  # a damaged cache: move it aside first, so the rename below stays atomic
        old = cache.with_name(f"{cache.name}.old-{os.getpid()}")
        os.replace(cache, old)
        shutil.rmtree(old)
    try:
        os.replace(tmp, cache)
    except OSError:  # another process (e.g. another rank) put a cache in place meanwhile: keep theirs
        shutil.rmtree(tmp)


def _load_cache(cache):
    """Read a cache directory, verifying every file against the manifest; None when absent or damaged."""
    manifest = cache / "manifest.json"
    if not manifest.exists():
        return None
    try:
        files = json.loads(manifest.read_text())["files"]
        for name, want in files.items():
            f = cache / name
            if not f.exists() or f.stat().st_size != want["size"] or _sha256_file(f) != want["sha256"]:
                raise ValueError(f"{name} is missing or does not match its checksum")
        arrays = {f[:-4]: np.load(cache / f) for f in files if f.endswith(".npy")}
        index = json.loads((cache / "index.json").read_text())
    except (ValueError, KeyError, OSError) as e:
        print(f"window cache {cache} is damaged ({e}); rebuilding it", file=sys.stderr)
        return None
    return arrays, index


def _build_cache(paths, cfg, clip):
    """Index, resample and embed every window of every recording: -> (arrays, index)."""
    recs = [read_recording(p) for p in paths]
    class_names = _class_names(recs)
    D = clip.embed_dim
    report = {"recordings": len(recs), "candidates": 0, "kept": 0,
              "dropped": {"out_of_range": 0, "imu_gap": 0, "no_frame": 0, "empty_text": 0}}
    imu, labels, frame_rows, texts, starts_all, rec_ids, middle = [], [], [], [], [], [], []
    pending, frame_embs, n_frames = [], [], 0
    last_print = time.monotonic()
    for k, rec in enumerate(recs):
        starts, raw_texts = _candidate_starts(rec, cfg)
        keep, frames, drops = _select_windows(rec, starts, cfg)
        if raw_texts is not None:  # narration mode: windows whose text cleans to "" are dropped
            cleaned = np.array([clean_narration(s) for s in raw_texts], dtype=object)
            empty = keep & (cleaned == "")
            drops["empty_text"] = int(empty.sum())
            keep &= ~empty
            texts.extend(cleaned[keep])
        report["candidates"] += len(starts)
        for reason, n in drops.items():
            report["dropped"][reason] += n
        starts, frames = starts[keep], frames[keep]
        if cfg.video_mode == "clip_1frame":
            frames = frames[:, 1:2]  # (Nw, 1): only the middle frame
        needed, inverse = np.unique(frames, return_inverse=True)  # each frame is embedded once
        pending.append(rec.frames[needed])  # (U, H, W, 3) uint8, read from the memory map
        frame_rows.append(n_frames + inverse.reshape(frames.shape))  # (Nw, 1 or 3) rows of the embeddings
        n_frames += len(needed)
        if sum(p.nbytes for p in pending) >= 1 << 28:  # embed in chunks of ~256 MB of frames
            frame_embs.append(clip.embed_images(np.concatenate(pending)))
            pending = []
        imu.append(_window_imu(rec, starts, cfg))
        labels.append(_window_labels(rec, starts, cfg.window_sec, class_names))
        starts_all.extend(starts.tolist())
        rec_ids.extend([rec.id] * len(starts))
        middle.extend(frames[:, frames.shape[1] // 2].tolist())
        if time.monotonic() - last_print > 5:
            print(f"windows: {k + 1}/{len(recs)} recordings indexed", file=sys.stderr)
            last_print = time.monotonic()
    report["kept"] = len(starts_all)
    if not starts_all:
        raise DataError(f"{Path(paths[0]).parent}: no window survived ({report})")
    if sum(len(p) for p in pending):
        frame_embs.append(clip.embed_images(np.concatenate(pending)))
    frame_emb = np.concatenate(frame_embs).astype(np.float32)  # (U_total, D)
    if frame_emb.shape != (n_frames, D):
        raise ValueError(f"clip.embed_images returned {frame_emb.shape}, expected ({n_frames}, {D})")
    arrays = {
        "imu": np.concatenate(imu),  # (N, 6, T) float32
        "video_emb": frame_emb[np.concatenate(frame_rows)].mean(axis=1),  # (N, k, D) -> (N, D)
        "labels": np.concatenate(labels),  # (N,) int64
    }
    if cfg.mode == "narration":
        distinct, inverse = np.unique(np.array(texts, dtype=str), return_inverse=True)
        report["distinct_texts"] = len(distinct)
        arrays["text_emb"] = clip.embed_texts(distinct.tolist()).astype(np.float32)[inverse]  # (N, D)
    seen = {}
    window_ids = []
    for r, s in zip(rec_ids, starts_all):  # "<recording>@<start_sec>", made unique when two narrations coincide
        wid = f"{r}@{s:.3f}"
        seen[wid] = seen.get(wid, 0) + 1
        window_ids.append(wid if seen[wid] == 1 else f"{wid}~{seen[wid] - 1}")
    index = {"texts": texts if cfg.mode == "narration" else [""] * len(starts_all), "window_ids": window_ids,
             "recording_ids": rec_ids, "middle_frames": middle, "class_names": list(class_names),
             "embed_dim": D, "report": report}
    return arrays, index


class WindowDataset(torch.utils.data.Dataset):
    """Parallel (IMU, video embedding, text embedding) windows of a dataset, from the embedding cache.

    WindowDataset(root, split, cfg, clip, cache_dir=None) builds the cache of the whole dataset (or
    reuses it when its fingerprint matches), then keeps the windows of the split's recordings.
    """

    def __init__(self, root, split, cfg, clip, cache_dir=None):
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        self.root, self.split, self.cfg = Path(root), split, cfg
        paths = list_recordings(self.root)
        fp = cache_fingerprint(paths, cfg, clip)
        self.cache_path = Path(cache_dir or self.root / ".cache") / f"windows-{fp[:24]}"
        loaded = _load_cache(self.cache_path)
        self.cache_reused = loaded is not None
        if loaded is None:
            print(f"windows: building the embedding cache {self.cache_path} for {len(paths)} recordings",
                  file=sys.stderr)
            self.cache_path.parent.mkdir(parents=True, exist_ok=True)
            _save_cache(self.cache_path, *_build_cache(paths, cfg, clip))
            loaded = _load_cache(self.cache_path)
            if loaded is None:
                raise DataError(f"{self.cache_path}: cache unreadable right after writing it")
        arrays, index = loaded
        rec_ids = np.array(index["recording_ids"], dtype=object)
        assignment = _split_of([p.name for p in paths], cfg)
        if split == "all":
            sel = np.arange(len(rec_ids))
        else:
            sel = np.flatnonzero(np.array([assignment[r] == split for r in rec_ids], dtype=bool))
            if not len(sel):
                raise DataError(f"{self.root}: the {split!r} split is empty ({len(paths)} recordings; "
                                f"val and test need >= 3 recordings and a fraction > 0)")
        self.imu = arrays["imu"][sel]  # (N, 6, T) float32
        self.video_emb = arrays["video_emb"][sel]  # (N, D) float32
        self.text_emb = arrays["text_emb"][sel] if "text_emb" in arrays else None  # (N, D) float32 or None
        self.labels = arrays["labels"][sel]  # (N,) int64, -1 = no activity
        self._texts = np.array(index["texts"], dtype=object)[sel]
        self._window_ids = np.array(index["window_ids"], dtype=object)[sel]
        self.texts, self.window_ids = self._texts.tolist(), self._window_ids.tolist()
        self.recording_ids = rec_ids[sel].tolist()
        self.frame_index = list(zip(self.recording_ids, np.array(index["middle_frames"])[sel].tolist()))
        self.class_names = tuple(index["class_names"])
        self.embed_dim = int(index["embed_dim"])
        self.report = dict(index["report"], split=split, windows_in_split=len(sel),
                           recordings_in_split=len(set(self.recording_ids)))

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return {
            "imu": torch.from_numpy(self.imu[i]),  # (6, T)
            "video_emb": torch.from_numpy(self.video_emb[i]),  # (D,)
            "text_emb": (torch.from_numpy(self.text_emb[i]) if self.text_emb is not None
                         else torch.zeros(self.embed_dim)),  # (D,), zeros in sliding mode
            "text": self.texts[i],
            "label": int(self.labels[i]),
            "window_id": self.window_ids[i],
        }

    def batch(self, idx):
        """The fast path: numpy fancy-indexing into the in-memory arrays, stacked like collate()."""
        idx = np.asarray(idx, dtype=np.int64)
        return {
            "imu": torch.from_numpy(self.imu[idx]),  # (B, 6, T)
            "video_emb": torch.from_numpy(self.video_emb[idx]),  # (B, D)
            "text_emb": (torch.from_numpy(self.text_emb[idx]) if self.text_emb is not None
                         else torch.zeros(len(idx), self.embed_dim)),  # (B, D)
            "text": self._texts[idx].tolist(),
            "label": torch.from_numpy(self.labels[idx]),  # (B,)
            "window_id": self._window_ids[idx].tolist(),
        }


def collate(items):
    """Stack a list of WindowDataset items into a batch with the same keys as WindowDataset.batch."""
    return {
        "imu": torch.stack([it["imu"] for it in items]),  # (B, 6, T)
        "video_emb": torch.stack([it["video_emb"] for it in items]),  # (B, D)
        "text_emb": torch.stack([it["text_emb"] for it in items]),  # (B, D)
        "text": [it["text"] for it in items],
        "label": torch.tensor([it["label"] for it in items], dtype=torch.int64),  # (B,)
        "window_id": [it["window_id"] for it in items],
    }


# ----- labelled IMU (.npz) -------------------------------------------------------------------------------


@dataclass
class LabelledSet:
    """A labelled-IMU file after load_labelled: checked, resampled to rate_hz, split."""
    imu: np.ndarray  # (N, 6, T) float32 at rate_hz, acc xyz then gyro xyz
    labels: np.ndarray  # (N,) int64 in [0, C)
    class_names: tuple  # (C,) class names, also the zero-shot prompts
    split: np.ndarray  # (N,) "train" | "test"
    rate_hz: float  # rate of imu after resampling
    path: Path  # the file it was read from


def _stratified_split(labels, test_frac, seed):
    """Deterministic per-class split: round(test_frac * n_c) windows of each class (>= 1 when n_c >= 2)."""
    split = np.full(len(labels), "train", dtype="<U5")
    rng = np.random.default_rng(seed)
    for c in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == c))
        n_test = max(1, int(round(test_frac * len(members)))) if len(members) >= 2 else 0
        split[members[:n_test]] = "test"
    return split


def load_labelled(path, rate_hz=200.0, test_frac=0.2, seed=0):
    """Read a labelled-IMU .npz (imu (N, 6, T), labels (N,), class_names (C,), rate_hz, optional split),
    check it, resample it to rate_hz and split it (stratified, seeded) when it has no split."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError) as e:
        raise DataError(f"{path}: not a readable .npz file ({e})") from None
    missing = [k for k in ("imu", "labels", "class_names", "rate_hz") if k not in data]
    if missing:
        raise DataError(f"{path}: missing array(s) {missing}; a labelled file has imu, labels, class_names, "
                        f"rate_hz and optionally split")
    imu, labels, names, src_rate = data["imu"], data["labels"], data["class_names"], data["rate_hz"]
    if imu.ndim != 3 or imu.shape[1] != 6 or imu.shape[2] < 2 or not np.issubdtype(imu.dtype, np.number):
        raise DataError(f"{path}: imu must be (N, 6, T) numbers (acc xyz, gyro xyz), got {imu.shape} {imu.dtype}")
    N, _, T = imu.shape
    if labels.shape != (N,) or not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"{path}: labels must be ({N},) integers, got {labels.shape} {labels.dtype}")
    if names.ndim != 1 or not len(names) or names.dtype.kind != "U":
        raise DataError(f"{path}: class_names must be a 1-D array of strings, got {names.shape} {names.dtype}")
    if N and (labels.min() < 0 or labels.max() >= len(names)):
        raise DataError(f"{path}: labels must lie in [0, {len(names)}) for {len(names)} class_names, "
                        f"got [{labels.min()}, {labels.max()}]")
    if src_rate.shape != () or not np.isfinite(src_rate) or float(src_rate) <= 0:
        raise DataError(f"{path}: rate_hz must be one positive number, got {src_rate!r}")
    if not np.isfinite(imu).all():
        raise DataError(f"{path}: imu contains NaN or inf")
    if "split" in data:
        split = data["split"]
        if split.shape != (N,) or not np.isin(split, ["train", "test"]).all():
            raise DataError(f"{path}: split must be ({N},) of 'train'/'test'")
    else:
        split = _stratified_split(labels, test_frac, seed)
    src_rate = float(src_rate)
    if src_rate != rate_hz:
        T_out = int(round(T * rate_hz / src_rate))
        x = imu.transpose(2, 0, 1).reshape(T, N * 6)  # (T, N * 6): all windows share the time grid
        x = _resample(x, np.arange(T) / src_rate, np.arange(T_out) / rate_hz, rate_hz)  # (T_out, N * 6)
        imu = x.reshape(T_out, N, 6).transpose(1, 2, 0)  # (N, 6, T_out)
    return LabelledSet(imu=np.ascontiguousarray(imu, dtype=np.float32), labels=labels.astype(np.int64),
                       class_names=tuple(str(n) for n in names), split=np.asarray(split, dtype=str),
                       rate_hz=float(rate_hz), path=path)


def export_labelled(root, out, cfg=None):
    """Export the sliding windows of a dataset that have an activity label as a labelled-IMU .npz.
    Windows of the recordings in the test split of cfg are "test", the others "train"; no CLIP needed."""
    cfg = replace(cfg or WindowConfig(), mode="sliding")
    paths = list_recordings(root)
    recs = [read_recording(p) for p in paths]
    class_names = _class_names(recs)
    assignment = _split_of([r.id for r in recs], cfg)
    imu, labels, split = [], [], []
    report = {"recordings": len(recs), "candidates": 0, "unlabelled": 0,
              "dropped": {"out_of_range": 0, "imu_gap": 0, "no_frame": 0}}
    for rec in recs:
        starts, _ = _candidate_starts(rec, cfg)
        keep, _, drops = _select_windows(rec, starts, cfg)
        report["candidates"] += len(starts)
        for reason, n in drops.items():
            report["dropped"][reason] += n
        starts = starts[keep]
        lab = _window_labels(rec, starts, cfg.window_sec, class_names)
        report["unlabelled"] += int((lab < 0).sum())
        starts, lab = starts[lab >= 0], lab[lab >= 0]
        imu.append(_window_imu(rec, starts, cfg))
        labels.append(lab)
        split.extend(["test" if assignment[rec.id] == "test" else "train"] * len(lab))
    labels = np.concatenate(labels)
    if not len(labels):
        raise DataError(f"{root}: no labelled window to export ({report})")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    arrays = dict(imu=np.concatenate(imu), labels=labels, class_names=np.array(class_names, dtype=str),
                  rate_hz=np.float64(cfg.rate_hz), split=np.array(split, dtype=str))

    def write(tmp):
        with open(tmp, "wb") as f:  # a file object, so that np.savez does not append ".npz" to the name
            np.savez(f, **arrays)

    atomic_write(out, write)
    report["exported"] = len(labels)
    report["per_class"] = {c: int((labels == i).sum()) for i, c in enumerate(class_names)}
    return report


# ----- Ego4D import -------------------------------------------------------------------------------------

_EGO4D_COLUMNS = ("canonical_timestamp_ms", "accl_x", "accl_y", "accl_z", "gyro_x", "gyro_y", "gyro_z")
_MISSING = ("", "null", "nan", "none", "na")


def _read_ego4d_csv(path, chunk_rows=200_000):
    """Parse an Ego4D IMU CSV into (t_ms (N,), values (N, 6): accl xyz then gyro xyz), NaN where missing.
    Parsed in chunks of text, so an hour of 200 Hz IMU never needs the whole file as strings."""
    with open(path, newline="") as f:
        header = f.readline().strip()
        if not header:
            raise DataError(f"{path}: empty file, expected a header {','.join(_EGO4D_COLUMNS)}")
        names = [h.strip() for h in header.split(",")]
        missing = [c for c in _EGO4D_COLUMNS if c not in names]
        if missing:
            raise DataError(f"{path}: missing column(s) {', '.join(missing)} (header: {header})")
        cols = [names.index(c) for c in _EGO4D_COLUMNS]
        parts, row = [], 1
        while True:
            lines = [ln for ln in itertools.islice(f, chunk_rows) if ln.strip()]
            if not lines:
                break
            try:
                s = np.loadtxt(lines, delimiter=",", dtype=str, ndmin=2)[:, cols]  # (n, 7) strings
                s = np.char.strip(s)
                s[np.isin(np.char.lower(s), _MISSING)] = "nan"
                parts.append(s.astype(np.float64))
            except (ValueError, IndexError) as e:
                raise DataError(f"{path}: unreadable rows after line {row} ({e})") from None
            row += len(lines)
    if not parts:
        raise DataError(f"{path}: no data rows after the header")
    x = np.concatenate(parts)  # (N, 7)
    return x[:, 0], x[:, 1:]


def _clean_ego4d_imu(path, t_ms, values, duration_sec):
    """Drop rows without a timestamp, sort, drop duplicate timestamps and rows with missing values (they
    become gaps that windowing drops, never zeros), and rows outside the video; report every count."""
    report = {"rows": len(t_ms)}
    ok = np.isfinite(t_ms)
    report["dropped_missing_timestamp"] = int((~ok).sum())
    t_ms, values = t_ms[ok], values[ok]
    if not len(t_ms):
        raise DataError(f"{path}: every canonical_timestamp_ms is missing ({report['rows']} rows)")
    report["out_of_order"] = int((np.diff(t_ms) < 0).sum())
    order = np.argsort(t_ms, kind="stable")
    t_ms, values = t_ms[order], values[order]
    dup = np.concatenate([[False], np.diff(t_ms) == 0])  # keep the first row of each timestamp
    report["dropped_duplicate_timestamp"] = int(dup.sum())
    bad = ~np.isfinite(values).all(axis=1)
    report["dropped_missing_values"] = int((bad & ~dup).sum())
    t = t_ms / 1000.0
    outside = (t < 0) | (t > duration_sec + 1.0)
    report["dropped_outside_video"] = int((outside & ~dup & ~bad).sum())
    report["t_min_sec"], report["t_max_sec"] = float(t[0]), float(t[-1])
    keep = ~(dup | bad | outside)
    t, values = t[keep], values[keep]
    if len(t) < 2:
        raise DataError(f"{path}: fewer than 2 usable IMU rows ({report})")
    report["kept"] = len(t)
    report["max_gap_sec"] = float(np.diff(t).max())
    report["rate_hz"] = float(1.0 / np.median(np.diff(t)))
    return t, values.astype(np.float32), report


def _decode_video(mp4, size, tmp_dir):
    """Decode an mp4 with the ffmpeg CLI at EGO4D_FPS, centre square crop, resized to size x size:
    -> uint8 array (F, size, size, 3) memory-mapped from a raw file in tmp_dir (caller removes it)."""
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise DataError(f"{mp4}: the ffmpeg command-line tool is needed to decode Ego4D videos and is not on "
                        f"PATH; install it (Debian/Ubuntu: apt-get install ffmpeg; macOS: brew install ffmpeg)")
    raw = Path(tmp_dir) / f"{mp4.stem}.rgb"
    vf = f"fps={EGO4D_FPS:g},crop='min(iw,ih)':'min(iw,ih)',scale={size}:{size}"
    cmd = [ffmpeg, "-nostdin", "-loglevel", "error", "-y", "-i", str(mp4), "-vf", vf,
           "-f", "rawvideo", "-pix_fmt", "rgb24", str(raw)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    frame_bytes = size * size * 3
    n = raw.stat().st_size // frame_bytes if raw.exists() else 0
    if proc.returncode != 0 or n == 0:
        why = (proc.stderr.strip().splitlines() or ["no frames decoded"])[-1]
        raise DataError(f"{mp4}: ffmpeg could not decode it ({why})")
    return np.memmap(raw, dtype=np.uint8, mode="r", shape=(n, size, size, 3))


def _ego4d_narrations(path, narr_json, uid):
    """Narrations of one video: the "#C" entries of both passes as raw {"t", "text"}, sorted by time."""
    entry = narr_json.get(uid, {})
    total, kept = 0, []
    for pass_name in ("narration_pass_1", "narration_pass_2"):
        for n in (entry.get(pass_name) or {}).get("narrations", []):
            total += 1
            try:
                text, t = n["narration_text"], float(n["timestamp_sec"])
            except (KeyError, TypeError, ValueError):
                raise DataError(f"{path}: video {uid} has a narration without narration_text/timestamp_sec: "
                                f"{str(n)[:80]}") from None
            if "#C" in text:
                kept.append({"t": t, "text": text})
    kept.sort(key=lambda n: n["t"])
    return kept, total


def _ego4d_file(root, *candidates):
    for rel in candidates:
        if (root / rel).exists():
            return root / rel
    return None


def import_ego4d(root, out, videos=None, size=224):
    """Convert Ego4D videos (full_scale mp4 + IMU CSV + narration.json) into recordings under out.
    videos: list of video uids (default: every uid that has both an IMU CSV and an mp4). -> report dict."""
    root, out = Path(root), Path(out)
    imu_dir = _ego4d_file(root, "v1/imu", "v2/imu")
    if imu_dir is None:
        raise DataError(f"{root}: no v1/imu or v2/imu directory; is this an Ego4D download?")
    narr_path = _ego4d_file(root, "v1/annotations/narration.json", "v2/annotations/narration.json")
    narr_json = {}
    if narr_path is not None:
        try:
            narr_json = json.loads(narr_path.read_text())
        except (ValueError, UnicodeDecodeError) as e:
            raise DataError(f"{narr_path}: not valid JSON ({e})") from None
        if not isinstance(narr_json, dict):
            raise DataError(f"{narr_path}: expected an object mapping video_uid to narration passes")
    if videos is None:
        videos = sorted(p.stem for p in imu_dir.glob("*.csv")
                        if _ego4d_file(root, f"v1/full_scale/{p.stem}.mp4", f"v2/full_scale/{p.stem}.mp4"))
        if not videos:
            raise DataError(f"{root}: no video has both {imu_dir}/<uid>.csv and full_scale/<uid>.mp4")
    report = {"narration_file": str(narr_path) if narr_path else None, "videos": {}}
    out.mkdir(parents=True, exist_ok=True)
    for uid in videos:
        csv_path = imu_dir / f"{uid}.csv"
        mp4 = _ego4d_file(root, f"v1/full_scale/{uid}.mp4", f"v2/full_scale/{uid}.mp4")
        if not csv_path.exists():
            raise DataError(f"{csv_path}: no IMU CSV for video {uid}")
        if mp4 is None:
            raise DataError(f"{root}/v1/full_scale/{uid}.mp4: no video for {uid} (nor under v2/)")
        t_ms, values = _read_ego4d_csv(csv_path)
        with tempfile.TemporaryDirectory(dir=out, prefix=".ego4d-") as tmp:
            frames = _decode_video(mp4, size, tmp)  # (F, S, S, 3)
            frames_t = np.arange(len(frames)) / EGO4D_FPS  # the fps filter emits frames on the k / fps grid
            duration = len(frames) / EGO4D_FPS
            imu_t, imu, rep = _clean_ego4d_imu(csv_path, t_ms, values, duration)
            narrations, n_total = _ego4d_narrations(narr_path, narr_json, uid)
            rep.update(narrations_total=n_total, narrations_kept=len(narrations), frames=len(frames))
            meta = {"format": FORMAT_NAME, "version": FORMAT_VERSION, "source": "ego4d",
                    "imu_rate_hz": round(rep["rate_hz"], 3), "video_fps": EGO4D_FPS, "duration_sec": duration,
                    "imu_units": {"acc": "uncalibrated (Ego4D accl_*)", "gyro": "uncalibrated (Ego4D gyro_*)"},
                    "imu_frame": "Ego4D head-mounted camera IMU, device axes as in the CSV",
                    "scene": None, "seed": None, "person": None, "ego4d": {"video_uid": uid, "import": rep}}
            write_recording(out / uid, imu=imu, imu_t=imu_t, frames=frames, frames_t=frames_t,
                            narrations=narrations, segments=[], meta=meta)
        report["videos"][uid] = rep
        print(f"ego4d {uid}: {rep['kept']}/{rep['rows']} IMU rows kept, {rep['frames']} frames, "
              f"{rep['narrations_kept']}/{rep['narrations_total']} narrations kept", file=sys.stderr)
    return report


# ----- command line --------------------------------------------------------------------------------------


def _run_ego4d(args):
    videos = [v.strip() for v in args.videos.split(",") if v.strip()] if args.videos else None
    print(json.dumps(import_ego4d(args.root, args.out, videos, args.size), indent=1))


def _run_export_labelled(args):
    cfg = WindowConfig(**{f.name: getattr(args, f.name) for f in fields(WindowConfig) if hasattr(args, f.name)})
    print(json.dumps(export_labelled(args.root, args.out, cfg), indent=1))


def _add_window_commands(sub):
    """Register the `ego4d` and `export-labelled` subcommands."""
    p = sub.add_parser("ego4d", help="convert Ego4D videos (mp4 + IMU CSV + narrations) into recordings")
    p.add_argument("--root", required=True, help="Ego4D download directory (holds v1/ or v2/)")
    p.add_argument("--out", required=True, help="dataset directory to write the recordings into")
    p.add_argument("--videos", default=None, help="comma-separated video uids (default: all with IMU)")
    p.add_argument("--size", type=int, default=224, help="side of the square frames [px] (default: %(default)s)")
    p.set_defaults(run=_run_ego4d)
    p = sub.add_parser("export-labelled", help="export the labelled sliding windows as a labelled-IMU .npz")
    p.add_argument("root", help="dataset directory")
    p.add_argument("--out", required=True, help="the .npz file to write")
    for f in fields(WindowConfig):
        if f.name in ("window_sec", "stride_sec", "rate_hz", "max_gap_sec", "val_frac", "test_frac", "split_seed"):
            p.add_argument(f"--{f.name.replace('_', '-')}", dest=f.name, type=type(f.default), default=f.default,
                           help="default: %(default)s")
    p.set_defaults(run=_run_export_labelled)


# ======================================================================================
# Command line
# ======================================================================================


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    _add_world_commands(sub)  # synth, show
    _add_window_commands(sub)  # ego4d, export-labelled
    args = parser.parse_args(argv)
    try:
        args.run(args)
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
