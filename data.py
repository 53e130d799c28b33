"""Data for IMU2CLIP: recordings, windows with cached CLIP embeddings, Ego4D and Aria import.

Every source (the synthetic world in world/, Ego4D, Aria, your own data) is converted into one format, a directory
per recording whose arrays are memory-mapped; read_recording validates one, write_recording writes one atomically:

    DATASET_ROOT/<recording_id>/   names starting with "." or "_" are not recordings
        meta.json        format, version, source, imu_rate_hz, video_fps, duration_sec, imu_units, imu_frame, ...
        imu.npy          (N, 6) float32: ax, ay, az [m/s^2, specific force], gx, gy, gz [rad/s], sensor frame
        imu_t.npy        (N,) float64 seconds since the start, strictly increasing
        frames.npy       (F, H, W, 3) uint8 RGB
        frames_t.npy     (F,) float64 seconds, strictly increasing
        narrations.json  [{"t": 12.3, "text": "#C C walks along the path in the park"}, ...]  (raw Ego4D style)
        segments.json    optional: [{"start": 0.0, "end": 8.2, "label": "walking"}, ...]

A window (paper section 3) is [t - w/2, t + w/2] around a narration, or a sliding window; its IMU is resampled
to a fixed rate, giving (6, rate * w) float32. CLIP is frozen, so the embeddings of each window's frame(s) and
narration are computed once and cached under DATASET_ROOT/.cache; WindowDataset serves them to training.

    python data.py synth --out data/synthetic [--recordings 48] [--minutes 2] [--seed 0]
    python data.py show data/synthetic/syn000_park --out preview.png   (any recording)
    python data.py export-labelled data/synthetic --out labelled.npz
    python data.py ego4d --root EGO4D_DIR --out data/ego4d [--videos UID,...]   (decoded by PyAV)
    python data.py aria recording.vrs --out data/aria [--narrations speech.csv]   (needs projectaria-tools)
"""


import argparse
import collections
import contextlib
import glob
import hashlib
import itertools
import json
import math
import os
import re
import shutil
import sys
import tempfile
import zipfile
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
import numpy as np
import torch
from PIL import Image


class DataError(ValueError):
    """Bad input data: the message names the file and the problem."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        pass
    return True


def _remove(path: Path) -> None:
    shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink(missing_ok=True)


def atomic_write(path, write) -> None:
    """write(tmp), then rename tmp over `path` (a file or a directory): a kill at any moment leaves the previous
    `path` or the new one. tmp is the hidden `.NAME.tmp-PID` beside it, deleted when write raises; a dead process's
    leftovers are deleted when `path` is next written (a directory it set aside, `-old`, goes back in place)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in sorted(path.parent.glob(f".{glob.escape(path.name)}.tmp-*")):
        pid = re.fullmatch(r".*\.tmp-(\d+)(-old)?", stale.name)  # PID, and "-old" for a directory set aside
        if pid and (int(pid[1]) == os.getpid() or not _alive(int(pid[1]))):  # our PID: a dead process had it
            if pid[2] and not path.exists():
                os.replace(stale, path)
            else:
                _remove(stale)
    tmp, old = (path.with_name(f".{path.name}.tmp-{os.getpid()}{end}") for end in ("", "-old"))
    try:
        write(tmp)
        if tmp.is_dir() and path.exists():  # a directory cannot be renamed over another: swap via a 2nd name
            os.replace(path, old)
            os.replace(tmp, path)
            _remove(old)
        else:
            os.replace(tmp, path)
    except BaseException:
        if old.exists() and not path.exists():
            os.replace(old, path)  # the previous version back
        if tmp.exists():
            _remove(tmp)
        raise


def flag(default, help: str, choices=None):
    """A config field with its --help text (and allowed values): `epochs: int = flag(10, "passes over the data")`.
    Every command line of the project is generated from such fields by `add_flags`."""
    return field(default=default, metadata={"help": help, "choices": choices})


# ----- 1. The recording format: write with validation, read -----------------------------------------------------------

ACTIVITIES = ("walking", "running", "standing still", "sitting down", "standing up", "looking around",
              "climbing stairs")
FORMAT_NAME = "imu2clip-recording"
FORMAT_VERSION = 1


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


def _need(ok, message: str) -> None:
    """The one way the file readers refuse their input: DataError(message) unless ok."""
    if not ok:
        raise DataError(message)


def _is_number(x):
    return isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, bool) and math.isfinite(x)


def _check_recording(path, imu, imu_t, frames, frames_t, narrations, segments, suffix=""):
    """The one validation of the format, for the reader and the writer: cheap checks of what would otherwise
    produce garbage (shapes, dtypes, finite values, increasing timestamps, the JSON entries)."""
    def need(ok, name, problem):
        _need(ok, f"{path / name}{suffix}: {problem}")

    need(imu.ndim == 2 and imu.shape[1] == 6 and len(imu) >= 2, "imu.npy",
         f"expected shape (N >= 2, 6), got {imu.shape}")
    need(imu.dtype == np.float32, "imu.npy", f"expected dtype float32, got {imu.dtype}")
    need(np.isfinite(imu).all(), "imu.npy", "NaN or infinite values")
    need(frames.ndim == 4 and frames.shape[3] == 3 and len(frames) >= 1, "frames.npy",
         f"expected shape (F >= 1, H, W, 3), got {frames.shape}")
    need(frames.dtype == np.uint8, "frames.npy", f"expected dtype uint8, got {frames.dtype}")
    for name, t, n in (("imu_t.npy", imu_t, len(imu)), ("frames_t.npy", frames_t, len(frames))):
        need(t.shape == (n,), name, f"{t.shape} timestamps for {n} samples")
        need(t.dtype == np.float64, name, f"expected dtype float64, got {t.dtype}")
        need(np.isfinite(t).all(), name, "NaN or infinite timestamps")
        need((np.diff(t) > 0).all(), name, "timestamps not strictly increasing")
    need(isinstance(narrations, list), "narrations.json", "expected a list of {\"t\", \"text\"} entries")
    for i, n in enumerate(narrations):
        need(isinstance(n, dict) and _is_number(n.get("t")) and isinstance(n.get("text"), str), "narrations.json",
             f"entry {i} is not {{\"t\": seconds, \"text\": str}}: {str(n)[:80]}")
    need(isinstance(segments, list), "segments.json", "expected a list of segments")
    for i, g in enumerate(segments):
        need(isinstance(g, dict) and _is_number(g.get("start")) and _is_number(g.get("end"))
             and isinstance(g.get("label"), str) and g["start"] < g["end"], "segments.json",
             f"segment {i} is not {{\"start\" < \"end\", \"label\": str}}: {str(g)[:80]}")


def write_recording(path, imu, imu_t, frames, frames_t, narrations, segments=(), meta=None):
    """Validate and write one recording atomically (a temporary directory renamed into place). `meta` fills or
    overrides the defaults (source, rates estimated from the timestamps, units, ...)."""
    path = Path(path)
    imu, imu_t = np.ascontiguousarray(imu, np.float32), np.ascontiguousarray(imu_t, np.float64)
    frames, frames_t = np.ascontiguousarray(frames), np.ascontiguousarray(frames_t, np.float64)
    narrations, segments = list(narrations), [dict(g) for g in segments]
    _check_recording(path, imu, imu_t, frames, frames_t, narrations, segments, suffix=" (to write)")
    narrations = [{"t": float(n["t"]), "text": n["text"]} for n in narrations]
    full_meta = {"format": FORMAT_NAME, "version": FORMAT_VERSION, "source": "unknown",
                 "imu_rate_hz": float((len(imu_t) - 1) / (imu_t[-1] - imu_t[0])),
                 "video_fps": float((len(frames_t) - 1) / (frames_t[-1] - frames_t[0])) if len(frames_t) > 1 else 0.0,
                 "duration_sec": float(max(imu_t[-1], frames_t[-1])),
                 "imu_units": {"acc": "m/s^2", "gyro": "rad/s"}, "imu_frame": "unspecified",
                 "scene": None, "seed": None, "person": None, **(meta or {})}

    jsons = {"meta.json": full_meta, "narrations.json": narrations, **({"segments.json": segments} if segments else {})}

    def write(tmp):
        tmp.mkdir()
        for name, a in zip(("imu.npy", "imu_t.npy", "frames.npy", "frames_t.npy"), (imu, imu_t, frames, frames_t)):
            np.save(tmp / name, a)
        for name, obj in jsons.items():
            (tmp / name).write_text(json.dumps(obj, indent=1) + "\n")
    atomic_write(path, write)
    return path


def _load(path):
    """One file of a recording: a .json parsed, a .npy memory-mapped; DataError when missing or unreadable."""
    _need(path.is_file(), f"{path}: missing file")
    try:
        if path.suffix == ".json":
            return json.loads(path.read_text())
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, UnicodeDecodeError, ValueError, EOFError) as e:
        what = "readable JSON" if path.suffix == ".json" else "a readable .npy array"
        raise DataError(f"{path}: not {what} ({e})") from None


def read_recording(path):
    """Open and validate one recording directory; DataError names the bad file and the problem."""
    path = Path(path)
    _need(path.is_dir(), f"{path}: not a recording directory")
    meta = _load(path / "meta.json")
    found = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
    _need(found == FORMAT_NAME, f"{path / 'meta.json'}: not a {FORMAT_NAME} meta file (format: {found!r})")
    _need(meta.get("version") == FORMAT_VERSION, f"{path / 'meta.json'}: unsupported version "
          f"{meta.get('version')!r} (this reader knows {FORMAT_VERSION})")
    arrays = [_load(path / n) for n in ("imu.npy", "imu_t.npy", "frames.npy", "frames_t.npy")]
    narrations = _load(path / "narrations.json")
    segments = _load(path / "segments.json") if (path / "segments.json").exists() else []
    _check_recording(path, *arrays, narrations, segments)
    return Recording(path, path.name, meta, *arrays, narrations, segments)


def list_recordings(root):
    """The recording directories of a dataset, sorted; names starting with "." or "_" are not recordings."""
    root = Path(root)
    _need(root.is_dir(), f"{root}: no such dataset directory")
    found = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith((".", "_")))
    _need(found, f"{root}: no recordings in this dataset directory")
    return found


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


# ----- 2. Windows: a time span of one recording, its IMU resampled onto the model's grid; the split -------------------

SPLITS = ("train", "val", "test", "all")


@dataclass
class WindowConfig:
    """How recordings are cut into windows; everything but the split fractions is part of the cache key."""
    window_sec: float = flag(5.0, "window length in seconds (the official code's effective window)")
    rate_hz: float = flag(200.0, "IMU rate the model sees; every source is resampled to it")
    mode: str = flag("narration", "narration: centred on each narration | sliding: every stride_sec, no text",
                     choices=("narration", "sliding"))
    stride_sec: float = flag(2.5, "step between sliding windows (sliding mode and export-labelled only)")
    video_mode: str = flag("clip_1frame", "clip_1frame: middle frame | clip_avg_frames: mean of first/mid/last",
                           choices=("clip_1frame", "clip_avg_frames"))
    max_gap_sec: float = flag(0.1, "a window whose IMU has a larger hole between two samples is dropped")
    val_frac: float = flag(0.15, "fraction of recordings (not windows) held out for validation")
    test_frac: float = flag(0.15, "fraction of recordings held out for testing")

    def __post_init__(self):
        _need(self.mode in ("narration", "sliding") and self.video_mode in ("clip_1frame", "clip_avg_frames"),
              f"WindowConfig: unknown mode {self.mode!r} or video_mode {self.video_mode!r}")
        positive = (self.window_sec, self.rate_hz, self.stride_sec, self.max_gap_sec)
        _need(all(math.isfinite(x) and x > 0 for x in positive),
              "window_sec, rate_hz, stride_sec and max_gap_sec must be finite and positive")
        _need(0 <= self.val_frac < 1 and 0 <= self.test_frac < 1 and self.val_frac + self.test_frac < 1,
              "val_frac and test_frac must be in [0, 1) with a sum below 1")

    @property
    def num_samples(self) -> int:
        """Samples per window on the model grid, T = round(rate_hz * window_sec)."""
        return int(round(self.rate_hz * self.window_sec))


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


def resample(x, t, t_out, rate_hz=None):
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
    x, t, t_out = (np.asarray(a, dtype=np.float64) for a in (x, t, t_out))
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


def _window_labels(rec, starts, window_sec, class_names):
    """Label of each window (Nw,) int64: the activity covering the largest part of it, -1 when none."""
    labels = np.full(len(starts), -1, dtype=np.int64)
    if not rec.segments or not len(starts):
        return labels
    unknown = sorted({s["label"] for s in rec.segments} - set(class_names))  # (the rest _check_recording checked)
    _need(not unknown, f"{rec.path / 'segments.json'}: bad segment label(s) {unknown}; labels must be one of "
          f"{list(class_names)}")
    seg = np.array([[s["start"], s["end"]] for s in rec.segments], dtype=np.float64)  # (S, 2)
    cls = np.array([class_names.index(s["label"]) for s in rec.segments])  # (S,)
    overlap = np.minimum(starts[:, None] + window_sec, seg[None, :, 1]) - np.maximum(starts[:, None], seg[None, :, 0])
    overlap = np.clip(overlap, 0.0, None)  # (Nw, S) seconds of each segment inside each window
    cover = overlap @ np.eye(len(class_names))[cls]  # (Nw, C) seconds of each class
    return np.where(cover.max(axis=1) > 0, cover.argmax(axis=1), labels)


def _class_names(recs):
    """Class names of a dataset: meta["class_names"] when the recordings give them, else ACTIVITIES."""
    names = {tuple(r.meta.get("class_names", ACTIVITIES)) for r in recs}
    if len(names) > 1:
        raise DataError(f"{recs[0].path.parent}: recordings disagree on meta.json class_names: {sorted(names)}")
    return names.pop() if names else ACTIVITIES


def _index_windows(rec, cfg, class_names):
    """The windows of one recording: starts (Nw,), IMU (Nw, 6, T), labels (Nw,), frame rows (Nw, 1|3), texts
    (Nw,) cleaned ("" in sliding mode), and how many candidates dropped for each reason: past the ends of the IMU
    or the video, an IMU gap, no frame inside, a narration that cleans to ""."""
    w, eps, t, ft = cfg.window_sec, 1e-6, rec.imu_t, rec.frames_t
    lo, hi = max(t[0], ft[0]), min(t[-1], ft[-1])  # the span covered by both the IMU and the video
    if cfg.mode == "narration":
        starts = np.array([float(n["t"]) for n in rec.narrations], dtype=np.float64) - w / 2  # (Nw,)
        texts = np.array([clean_narration(n["text"]) for n in rec.narrations], dtype=object)
    else:
        count = int(np.floor((hi - lo - w) / cfg.stride_sec + 1e-9)) + 1
        starts = lo + cfg.stride_sec * np.arange(max(count, 0))  # (Nw,)
        texts = np.full(len(starts), "", dtype=object)
    inside = (starts >= lo - eps) & (starts + w <= hi + eps)
    # gap g spans t[g] .. t[g + 1]; a window has one when a gap lies between the last sample at or before its
    # start and the first sample at or after its end
    gaps = np.flatnonzero(np.diff(t) > cfg.max_gap_sec)
    i0 = np.searchsorted(t, starts, side="right") - 1
    i1 = np.searchsorted(t, starts + w, side="left")
    no_gap = np.searchsorted(gaps, i1) == np.searchsorted(gaps, i0)
    first = np.searchsorted(ft, starts - eps)  # (Nw,) first frame at or after the start
    last = np.searchsorted(ft, starts + w - eps) - 1  # last frame before the end
    centre = starts + w / 2
    right = np.clip(np.searchsorted(ft, centre), 0, len(ft) - 1)  # the two frames around the centre
    left = np.maximum(right - 1, 0)
    middle = np.where(np.abs(ft[left] - centre) <= np.abs(ft[right] - centre), left, right)
    keep = inside & no_gap & (first <= last)
    drops = {"out_of_range": int((~inside).sum()), "imu_gap": int((inside & ~no_gap).sum()),
             "no_frame": int((inside & no_gap & (first > last)).sum())}
    if cfg.mode == "narration":
        drops["empty_text"] = int((keep & (texts == "")).sum())
        keep &= texts != ""
    frames = np.stack([middle] if cfg.video_mode == "clip_1frame" else [first, middle, last], axis=1)[keep]  # (Nw, 1|3)
    starts = starts[keep]
    t_out = starts[:, None] + np.arange(cfg.num_samples) / cfg.rate_hz  # (Nw, T) sample times
    imu = resample(rec.imu, t, t_out.ravel(), cfg.rate_hz).reshape(len(starts), cfg.num_samples, 6)  # (Nw, T, 6)
    imu = imu.transpose(0, 2, 1).astype(np.float32)  # (Nw, 6, T)
    return starts, imu, _window_labels(rec, starts, w, class_names), frames, texts[keep], drops


def split_of(recording_id: str, cfg: WindowConfig) -> str:
    """"train" | "val" | "test" for one recording: a pure function of its ID (a hash mapped to [0, 1) and compared
    with the fractions), so adding or removing recordings never moves another one between splits. The split is by
    recording: no window of a test recording is ever trained on. A small dataset may leave a split empty."""
    u = int(hashlib.sha256(recording_id.encode()).hexdigest()[:12], 16) / 16 ** 12  # uniform in [0, 1)
    return "test" if u < cfg.test_frac else "val" if u < cfg.test_frac + cfg.val_frac else "train"


# ----- 3. The embedding cache: CLIP is frozen, so each needed frame and narration is embedded once per dataset --------

CACHE_VERSION = 2  # bump when the cache layout or the window maths change: old caches are then ignored


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
    window = {k: getattr(cfg, k) for k in ("window_sec", "rate_hz", "mode", "stride_sec", "video_mode", "max_gap_sec")}
    if cfg.mode == "narration":
        window.pop("stride_sec")
    key = {"version": CACHE_VERSION, "window": window, "clip": clip.fingerprint,
           "recordings": [_recording_fingerprint(Path(p)) for p in paths]}
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()


def _build_cache(cache, paths, cfg, clip):
    """Index the windows of every recording, embed each needed frame and distinct text once, write the cache (the
    paper's pre-processing of every medium into equal-length parallel windows, done once per dataset)."""
    recs = [read_recording(p) for p in paths]
    class_names = _class_names(recs)
    imu, labels, video_emb, texts, window_ids, recording_ids, middle = [], [], [], [], [], [], []
    dropped = collections.Counter()
    for k, rec in enumerate(recs):
        starts, rec_imu, rec_labels, frames, rec_texts, drops = _index_windows(rec, cfg, class_names)
        needed, inverse = np.unique(frames, return_inverse=True)  # each frame is embedded once
        emb = clip.embed_images(np.asarray(rec.frames[needed])) if len(needed) else np.zeros((0, clip.embed_dim))
        video_emb.append(emb[inverse.reshape(frames.shape)].mean(axis=1))  # (Nw, 1|3, D) -> (Nw, D)
        imu.append(rec_imu)
        labels.append(rec_labels)
        texts += rec_texts.tolist()
        seen = collections.Counter()  # "<recording>@<start>", with "~k" when k earlier narrations coincide
        for wid in (f"{rec.id}@{start:.3f}" for start in starts):
            window_ids.append(f"{wid}~{seen[wid]}" if seen[wid] else wid)
            seen[wid] += 1
        recording_ids += [rec.id] * len(starts)
        middle += frames[:, frames.shape[1] // 2].tolist()
        dropped.update(drops)
        print(f"windows: {k + 1}/{len(recs)} recordings indexed and embedded", file=sys.stderr, flush=True)
    report = {"recordings": len(recs), "candidates": len(window_ids) + sum(dropped.values()),
              "kept": len(window_ids), "dropped": dict(dropped)}
    _need(window_ids, f"{Path(paths[0]).parent}: no window survived ({report})")
    arrays = {"imu": np.concatenate(imu),  # (N, 6, T) float32
              "labels": np.concatenate(labels),  # (N,) int64
              "video_emb": np.concatenate(video_emb).astype(np.float32)}  # (N, D)
    if cfg.mode == "narration":
        distinct, inverse = np.unique(np.array(texts, dtype=str), return_inverse=True)
        report["distinct_texts"] = len(distinct)
        arrays["text_emb"] = clip.embed_texts(distinct.tolist()).astype(np.float32)[inverse]  # (N, D)
    index = {"texts": texts, "window_ids": window_ids, "recording_ids": recording_ids, "middle_frames": middle,
             "class_names": list(class_names), "embed_dim": clip.embed_dim, "report": report}

    def write(tmp):
        tmp.mkdir()
        for name, a in arrays.items():
            np.save(tmp / f"{name}.npy", a)
        (tmp / "index.json").write_text(json.dumps(index))
    atomic_write(cache, write)


def _load_cache(cache, cfg, embed_dim):
    """The cached (arrays, index), or None when absent or damaged (missing, truncated, shapes or counts that do
    not match). atomic_write never leaves it half-written; this guards against later damage, cheaply: no checksums."""
    if not (cache / "index.json").is_file():
        return None
    try:
        index = json.loads((cache / "index.json").read_text())
        names = ["imu", "labels", "video_emb"] + (["text_emb"] if cfg.mode == "narration" else [])
        arrays = {n: np.load(cache / f"{n}.npy", allow_pickle=False) for n in names}
        N, D = len(index["window_ids"]), embed_dim
        want = {"imu": ((N, 6, cfg.num_samples), np.float32), "labels": ((N,), np.int64),
                "video_emb": ((N, D), np.float32), "text_emb": ((N, D), np.float32)}
        bad = [n for n, a in arrays.items() if (a.shape, a.dtype) != want[n]]
        missing = {"class_names", "embed_dim", "report"} - set(index)
        if bad or missing or not len(index["texts"]) == len(index["recording_ids"]) == len(index["middle_frames"]) == N:
            raise ValueError(f"{bad[0] if bad else 'index.json'} does not match the window count {N} and dtypes")
    except (OSError, ValueError, KeyError, TypeError, EOFError) as e:
        print(f"window cache {cache} is damaged ({str(e).splitlines()[0] if str(e) else type(e).__name__}); "
              f"rebuilding it", file=sys.stderr)
        return None
    return arrays, index


# ----- 4. WindowDataset: what train.py and evaluate.py read -----------------------------------------------------------

class WindowDataset:
    """Parallel (IMU, video embedding, text embedding) windows of a dataset's split: builds the embedding cache of
    the whole dataset (or reuses it when its fingerprint matches), keeps the split's windows, served by .batch(idx)."""

    def __init__(self, root, split, cfg, clip, cache_dir=None):
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        self.root, self.split, self.cfg = Path(root), split, cfg
        paths = list_recordings(self.root)
        key = cache_fingerprint(paths, cfg, clip)[:24]
        self.cache_path = Path(cache_dir or self.root / ".cache") / f"windows-{key}"
        _need(self.cache_path.parent.is_dir() or not self.cache_path.parent.exists(),
              f"{self.cache_path.parent}: the cache directory is a file; remove it")
        loaded = _load_cache(self.cache_path, cfg, clip.embed_dim)
        self.cache_reused = loaded is not None
        if loaded is None:
            print(f"windows: building the embedding cache {self.cache_path} for {len(paths)} recordings",
                  file=sys.stderr)
            _build_cache(self.cache_path, paths, cfg, clip)
            loaded = _load_cache(self.cache_path, cfg, clip.embed_dim)
        arrays, index = loaded
        sel = np.flatnonzero([split in ("all", split_of(r, cfg)) for r in index["recording_ids"]])
        _need(len(sel), f"{self.root}: the {split!r} split is empty: none of its {len(paths)} recordings hashes "
              f"into it (val_frac {cfg.val_frac}, test_frac {cfg.test_frac}); add recordings")
        self.imu = arrays["imu"][sel]  # (N, 6, T) float32
        self.video_emb = arrays["video_emb"][sel]  # (N, D) float32
        self.text_emb = arrays["text_emb"][sel] if "text_emb" in arrays else None  # (N, D) float32 or None
        self.labels = arrays["labels"][sel]  # (N,) int64, -1 = no activity
        self.texts = [index["texts"][i] for i in sel]
        self.window_ids = [index["window_ids"][i] for i in sel]
        self.recording_ids = [index["recording_ids"][i] for i in sel]
        self.frame_index = [(index["recording_ids"][i], index["middle_frames"][i]) for i in sel]
        self.class_names = tuple(index["class_names"])
        self.embed_dim = int(index["embed_dim"])
        self.report = dict(index["report"], split=split, windows_in_split=len(sel),
                           recordings_in_split=len(set(self.recording_ids)))

    def __len__(self):
        return len(self.labels)

    def batch(self, idx):
        """The windows idx (B,) as tensors, indexed out of the in-memory arrays."""
        idx = np.asarray(idx, dtype=np.int64)
        return {
            "imu": torch.from_numpy(self.imu[idx]),  # (B, 6, T)
            "video_emb": torch.from_numpy(self.video_emb[idx]),  # (B, D)
            "text_emb": (torch.from_numpy(self.text_emb[idx]) if self.text_emb is not None
                         else torch.zeros(len(idx), self.embed_dim)),  # (B, D), zeros in sliding mode
            "text": [self.texts[i] for i in idx],
            "label": torch.from_numpy(self.labels[idx]),  # (B,)
            "window_id": [self.window_ids[i] for i in idx],
        }


# ----- 5. The labelled-IMU .npz format --------------------------------------------------------------------------------

MAX_EXPORT_BYTES = 4 * 2**30  # export-labelled refuses to write a larger .npz


@dataclass
class LabelledSet:
    """A labelled-IMU file after load_labelled: checked, resampled to rate_hz, split."""
    imu: np.ndarray  # (N, 6, T) float32 at rate_hz, acc xyz then gyro xyz
    labels: np.ndarray  # (N,) int64 in [0, C)
    class_names: tuple  # (C,) class names, also the zero-shot prompts
    split: np.ndarray  # (N,) "train" | "test"
    rate_hz: float  # rate of imu after resampling
    path: Path  # the file it was read from


def stratified_split(labels, held_out_frac, seed, keep_frac=1.0):
    """Deterministic per-class split -> (kept, held_out) sorted indices. Of each class's n windows, round(held_out_frac
    * n) are held out (at least 1 and at most n - 1 when held_out_frac > 0: a lone window is kept), then keep_frac of
    the rest is kept (at least 1; for one seed the kept sets are nested as keep_frac grows)."""
    y, rng, kept, held = np.asarray(labels), np.random.default_rng(seed), [], []
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        n_held = min(len(idx) - 1, max(1, round(held_out_frac * len(idx)))) if held_out_frac > 0 else 0
        held.extend(idx[:n_held])
        kept.extend(idx[n_held : n_held + max(1, round(keep_frac * (len(idx) - n_held)))])
    return np.sort(np.array(kept, dtype=np.int64)), np.sort(np.array(held, dtype=np.int64))


def load_labelled(path, rate_hz=200.0, test_frac=0.2, seed=0):
    """Read a labelled-IMU .npz (imu (N, 6, T), labels (N,), class_names (C,), rate_hz, optional split),
    check it, resample it to rate_hz and split it (stratified, seeded) when it has no split."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise DataError(f"{path}: not a readable .npz file ({e})") from None
    missing = [k for k in ("imu", "labels", "class_names", "rate_hz") if k not in data]
    _need(not missing, f"{path}: missing array(s) {missing}; a labelled file has imu, labels, class_names, "
          f"rate_hz and optionally split")
    imu, labels, names, src_rate = data["imu"], data["labels"], data["class_names"], data["rate_hz"]
    N, T = (imu.shape[0], imu.shape[2]) if imu.ndim == 3 else (0, 0)
    _need(imu.ndim == 3 and imu.shape[1] == 6 and T >= 2 and np.issubdtype(imu.dtype, np.number),
          f"{path}: imu must be (N, 6, T) numbers (acc xyz, gyro xyz), got {imu.shape} {imu.dtype}")
    _need(labels.shape == (N,) and np.issubdtype(labels.dtype, np.integer),
          f"{path}: labels must be ({N},) integers, got {labels.shape} {labels.dtype}")
    _need(names.ndim == 1 and len(names) and names.dtype.kind == "U",
          f"{path}: class_names must be a 1-D array of strings, got {names.shape} {names.dtype}")
    _need(not N or (labels.min() >= 0 and labels.max() < len(names)),
          f"{path}: labels must lie in [0, {len(names)}) for {len(names)} class_names")
    _need(src_rate.shape == () and np.issubdtype(src_rate.dtype, np.number) and np.isfinite(src_rate)
          and float(src_rate) > 0, f"{path}: rate_hz must be one positive number, got {src_rate!r}")
    with np.errstate(over="ignore"):  # what overflows float32 becomes inf there
        _need(np.isfinite(imu.astype(np.float32)).all(), f"{path}: imu contains NaN, inf or values beyond float32")
    split = data.get("split")
    if split is None:  # none in the file: stratified and seeded
        split = np.full(N, "train", dtype="<U5")
        split[stratified_split(labels, test_frac, seed)[1]] = "test"
    _need(split.shape == (N,) and np.isin(split, ["train", "test"]).all(), f"{path}: split must be ({N},) of "
          f"'train'/'test'")
    src_rate = float(src_rate)
    if src_rate != rate_hz:
        T_out = int(round(T * rate_hz / src_rate))
        x = imu.transpose(2, 0, 1).reshape(T, N * 6)  # (T, N * 6): all windows share the time grid
        x = resample(x, np.arange(T) / src_rate, np.arange(T_out) / rate_hz, rate_hz)  # (T_out, N * 6)
        imu = x.reshape(T_out, N, 6).transpose(1, 2, 0)  # (N, 6, T_out)
    return LabelledSet(imu=np.ascontiguousarray(imu, dtype=np.float32), labels=labels.astype(np.int64),
                       class_names=tuple(str(n) for n in names), split=np.asarray(split, dtype=str),
                       rate_hz=float(rate_hz), path=path)


def export_labelled(root, out, cfg=None):
    """Export the sliding windows of a dataset that have an activity label as a labelled-IMU .npz.
    Windows of the recordings in the test split of cfg are "test", the others "train"; no CLIP needed."""
    cfg = replace(cfg or WindowConfig(), mode="sliding")
    recs = [read_recording(p) for p in list_recordings(root)]
    class_names = _class_names(recs)
    n = sum(max(0, int((min(r.imu_t[-1], r.frames_t[-1]) - cfg.window_sec) / cfg.stride_sec) + 1) for r in recs)
    size = n * 6 * cfg.num_samples * 4  # bytes of float32 IMU, refused before anything is allocated
    _need(size <= MAX_EXPORT_BYTES, f"{root}: --stride-sec {cfg.stride_sec:g} would export about {n:,} windows "
          f"({size / 2**30:.1f} GiB), over {MAX_EXPORT_BYTES / 2**30:.0f} GiB; use a larger --stride-sec")
    imu, labels, split, report = [], [], [], {"recordings": len(recs), "unlabelled": 0}
    for rec in recs:
        _, rec_imu, rec_labels, _, _, _ = _index_windows(rec, cfg, class_names)
        report["unlabelled"] += int((rec_labels < 0).sum())
        imu.append(rec_imu[rec_labels >= 0])
        labels.append(rec_labels[rec_labels >= 0])
        split += ["test" if split_of(rec.id, cfg) == "test" else "train"] * len(labels[-1])
    labels = np.concatenate(labels)
    _need(len(labels), f"{root}: no labelled window to export ({report})")
    arrays = dict(imu=np.concatenate(imu), labels=labels, class_names=np.array(class_names, dtype=str),
                  rate_hz=np.float64(cfg.rate_hz), split=np.array(split, dtype=str))

    def write(tmp):
        with open(tmp, "wb") as f:  # a file object, so that np.savez does not append ".npz" to the name
            np.savez(f, **arrays)
    atomic_write(out, write)
    report.update(exported=len(labels), per_class={c: int((labels == i).sum()) for i, c in enumerate(class_names)})
    return report


# ----- 6. Ego4D import ------------------------------------------------------------------------------------------------

EGO4D_FPS = 10.0  # the official IMU2CLIP preprocessing samples Ego4D video at 10 fps
_EGO4D_COLUMNS = ("canonical_timestamp_ms", "accl_x", "accl_y", "accl_z", "gyro_x", "gyro_y", "gyro_z")


def _read_ego4d_csv(path, chunk_rows=200_000):
    """Parse an Ego4D IMU CSV into (t_ms (N,), values (N, 6): accl xyz then gyro xyz), NaN where missing.
    Parsed in chunks of lines, so an hour of 200 Hz IMU never needs the whole file as strings."""
    parts, row = [], 1
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:  # -sig: a byte-order mark is not the header's
            header = f.readline().strip()
            _need(header, f"{path}: empty file, expected a header {','.join(_EGO4D_COLUMNS)}")
            names = [h.strip().strip('"') for h in header.split(",")]
            missing = [c for c in _EGO4D_COLUMNS if c not in names]
            _need(not missing, f"{path}: missing column(s) {', '.join(missing)} (header: {header})")
            cols = [names.index(c) for c in _EGO4D_COLUMNS]
            while chunk := list(itertools.islice(f, chunk_rows)):
                first, row = row + 1, row + len(chunk)  # the file's lines first..row (blank ones too)
                if not (lines := [ln for ln in chunk if ln.strip()]):
                    continue
                try:
                    s = np.char.strip(np.loadtxt(lines, delimiter=",", dtype=str, ndmin=2)[:, cols], ' "')  # (n, 7)
                    s[np.isin(np.char.lower(s), ("", "null", "nan", "none", "na"))] = "nan"  # missing values
                    parts.append(s.astype(np.float64))
                except (ValueError, IndexError) as e:
                    raise DataError(f"{path}: unreadable rows among lines {first}-{row} ({e})") from None
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not a text CSV ({e.reason} at byte {e.start})") from None
    _need(parts, f"{path}: no data rows after the header")
    x = np.concatenate(parts)  # (N, 7)
    return x[:, 0], x[:, 1:]


def _clean_ego4d_imu(path, t_ms, values, duration_sec):
    """Drop rows without a timestamp, sort, drop duplicate timestamps and rows with missing values (they
    become gaps that windowing drops, never zeros), and rows outside the video; report every count."""
    has_t = np.isfinite(t_ms)
    _need(has_t.any(), f"{path}: every canonical_timestamp_ms is missing ({len(t_ms)} rows)")
    t_ms, values = t_ms[has_t], values[has_t]
    out_of_order = int((np.diff(t_ms) < 0).sum())
    bad = ~np.isfinite(values).all(axis=1)  # rows with missing values
    order = np.lexsort((bad, t_ms))  # by time, and at one time the complete rows first (a stable sort)
    t_ms, values, bad = t_ms[order], values[order], bad[order]
    dup = np.concatenate([[False], np.diff(t_ms) == 0])  # keep the first (complete, if any) row of each timestamp
    bad &= ~dup  # each dropped row is counted under its first reason
    t = t_ms / 1000.0
    outside = ((t < 0) | (t > duration_sec + 1.0)) & ~dup & ~bad
    report = {"rows": len(has_t), "dropped_missing_timestamp": int((~has_t).sum()), "out_of_order": out_of_order,
              "dropped_duplicate_timestamp": int(dup.sum()), "dropped_missing_values": int(bad.sum()),
              "dropped_outside_video": int(outside.sum()), "t_min_sec": float(t[0]), "t_max_sec": float(t[-1])}
    keep = ~(dup | bad | outside)
    t, values = t[keep], values[keep]
    _need(len(t) >= 2, f"{path}: fewer than 2 usable IMU rows ({report})")
    report.update(kept=len(t), max_gap_sec=float(np.diff(t).max()), rate_hz=float(1.0 / np.median(np.diff(t))))
    return t, values.astype(np.float32), report


def _decode_video(mp4, size, tmp_dir, fps=EGO4D_FPS):
    """Decode an mp4 in-process with PyAV (FFmpeg's libraries, from pip) through FFmpeg's own filters, as
    `ffmpeg -vf fps=FPS,crop=...,scale=S:S` would: frame k at time k / fps (the frame nearest it), the centre
    square, resized to size x size. -> uint8 (F, size, size, 3) RGB, memory-mapped from a raw file in tmp_dir (the
    caller removes it), so that an hour of video never sits in memory."""
    import av  # (here: only this importer decodes video)
    raw, n = Path(tmp_dir) / f"{mp4.stem}.rgb", 0
    try:
        with av.open(str(mp4)) as container, open(raw, "wb") as out:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"  # decode on several threads
            graph = av.filter.Graph()
            chain = [graph.add_buffer(template=stream), graph.add("fps", f"{fps:g}"),
                     graph.add("crop", "'min(iw,ih)':'min(iw,ih)'"), graph.add("scale", f"{size}:{size}"),
                     graph.add("format", "rgb24"), graph.add("buffersink")]
            for a, b in zip(chain, chain[1:]):
                a.link_to(b)
            graph.configure()
            for frame in itertools.chain(container.decode(stream), [None]):  # None: the end, flush the filters
                graph.push(frame)
                while True:
                    try:
                        out.write(graph.pull().to_ndarray().tobytes())  # (size, size, 3)
                        n += 1
                    except (av.BlockingIOError, av.EOFError):  # the filters want the next frame, or are done
                        break
    except (av.FFmpegError, IndexError) as e:  # not a video, no video stream, a damaged file
        raise DataError(f"{mp4}: could not decode it ({str(e).splitlines()[0] if str(e) else type(e).__name__})") \
            from None
    _need(n, f"{mp4}: could not decode it (no frames decoded)")
    return np.memmap(raw, dtype=np.uint8, mode="r", shape=(n, size, size, 3))


def _ego4d_narrations(path, narr_json, uid):
    """Narrations of one video: (the "#C" entries of both passes as raw {"t", "text"} by time, the entry count)."""
    entry, total, kept = narr_json.get(uid, {}), 0, []
    for pass_name in ("narration_pass_1", "narration_pass_2"):
        try:
            narrations = (entry.get(pass_name) or {}).get("narrations") or []
            _need(isinstance(narrations, list), f"{path}: video {uid}'s {pass_name} narrations is not a list")
        except AttributeError:
            raise DataError(f"{path}: video {uid}'s {pass_name} is not an object with a narrations list") from None
        total += len(narrations)
        for n in narrations:
            try:
                text, t = str(n["narration_text"]), float(n["timestamp_sec"])
            except (KeyError, TypeError, ValueError):
                raise DataError(f"{path}: video {uid} has a narration without narration_text/timestamp_sec: "
                                f"{str(n)[:80]}") from None
            if "#C" in text:
                kept.append({"t": t, "text": text})
    kept.sort(key=lambda n: n["t"])
    return kept, total


def _ego4d_file(root, rel):
    """root/v1/rel, else root/v2/rel, else None."""
    return next((root / v / rel for v in ("v1", "v2") if (root / v / rel).exists()), None)


def import_ego4d(root, out, videos=None, size=224):
    """Convert Ego4D videos (full_scale mp4 + IMU CSV + narration.json) into recordings under out.
    videos: list of video uids (default: every uid that has both an IMU CSV and an mp4). -> report dict."""
    _need(size >= 1, f"--size {size}: must be a positive number of pixels")
    root, out = Path(root), Path(out)
    imu_dir = _ego4d_file(root, "imu")
    _need(imu_dir, f"{root}: no v1/imu or v2/imu directory; is this an Ego4D download?")
    narr_path = _ego4d_file(root, "annotations/narration.json")
    narr_json = _load(narr_path) if narr_path else {}
    _need(isinstance(narr_json, dict), f"{narr_path}: expected an object mapping video_uid to narration passes")
    if videos is None:
        videos = sorted(p.stem for p in imu_dir.glob("*.csv") if _ego4d_file(root, f"full_scale/{p.stem}.mp4"))
        _need(videos, f"{root}: no video has both {imu_dir}/<uid>.csv and full_scale/<uid>.mp4")
    report = {"narration_file": str(narr_path) if narr_path else None, "videos": {}}
    made = [d for d in (out, *out.parents) if not d.exists()]  # the directories this import will create
    try:
        for uid in videos:
            csv_path, mp4 = imu_dir / f"{uid}.csv", _ego4d_file(root, f"full_scale/{uid}.mp4")
            _need(csv_path.exists(), f"{csv_path}: no IMU CSV for video {uid}")
            _need(mp4, f"{root}/v1/full_scale/{uid}.mp4: no video for {uid} (nor under v2/)")
            t_ms, values = _read_ego4d_csv(csv_path)
            out.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(dir=out, prefix=".ego4d-") as tmp:
                frames = _decode_video(mp4, size, tmp)  # (F, S, S, 3)
                frames_t = np.arange(len(frames)) / EGO4D_FPS  # the fps filter emits frames on the k / fps grid
                duration = len(frames) / EGO4D_FPS
                imu_t, imu, rep = _clean_ego4d_imu(csv_path, t_ms, values, duration)
                narrations, n_total = _ego4d_narrations(narr_path, narr_json, uid)
                rep.update(narrations_total=n_total, narrations_kept=len(narrations), frames=len(frames))
                meta = {"source": "ego4d", "imu_rate_hz": round(rep["rate_hz"], 3), "video_fps": EGO4D_FPS,
                        "duration_sec": duration,
                        "imu_units": {"acc": "uncalibrated (Ego4D accl_*)", "gyro": "uncalibrated (Ego4D gyro_*)"},
                        "imu_frame": "Ego4D head-mounted camera IMU, device axes as in the CSV",
                        "ego4d": {"video_uid": uid, "import": rep}}
                write_recording(out / uid, imu, imu_t, frames, frames_t, narrations, meta=meta)
            report["videos"][uid] = rep
            print(f"ego4d {uid}: {rep['kept']}/{rep['rows']} IMU rows kept, {rep['frames']} frames, "
                  f"{rep['narrations_kept']}/{rep['narrations_total']} narrations kept", file=sys.stderr)
    except BaseException:
        for d in made:  # innermost first: a failed import leaves no empty directory behind
            if d.is_dir() and not any(d.iterdir()):
                d.rmdir()
        raise
    return report


# ----- 7. Aria import (projectaria-tools, optional) -------------------------------------------------------------------

ARIA_IMU = {"right": "imu-right", "left": "imu-left"}  # --imu -> stream label (1 kHz and 800 Hz)
ARIA_RGB = "camera-rgb"
ARIA_INSTALL = "pip install --no-deps projectaria-tools"
ARIA_SPEECH_GAP_SEC = 1.0  # speech.csv words separated by a longer pause start a new utterance
ARIA_IMU_FRAME = ("x right, y down, z forward: the frame of the upright camera-rgb image (camera-rgb calibration, "
                  "turned like the frames); acc = rectified specific force [m/s^2] (at rest 9.81 along 'up', -y "
                  "when level), gyro = rectified angular velocity [rad/s]")


@contextlib.contextmanager
def _fds_to(log):
    """Point file descriptors 1 and 2 at the file `log` while inside: the C++ reader logs there, not to us."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    try:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        for fd, s in zip((1, 2), saved):
            os.dup2(s, fd)
            os.close(s)


def _quarter_turns(k):
    """(3, 3): camera coordinates -> those of the image turned by k * 90 degrees counter-clockwise (np.rot90)."""
    return np.linalg.matrix_power(np.array([[0.0, 1, 0], [-1, 0, 0], [0, 0, 1]]), k)  # one turn: x' = y, y' = -x


def _upright_turns(path, calib, R_dev_cam):
    """np.rot90's k that turns the RGB image upright, from the calibration: the central pupil frame's up axis
    (CPF: x left, y up, z forward) must point to the image's top (-y). Gen1's sideways sensor gives k = 3
    (90 degrees clockwise); Gen2's upright frames give k = 0."""
    up = R_dev_cam.T @ calib.get_transform_device_cpf().rotation().to_matrix()[:, 1]  # (3,) in camera coords
    k = [k for k in range(4) if (_quarter_turns(k) @ up)[1] < -0.7]
    _need(k, f"{path}: the calibration's up direction {np.round(up, 2)} is along no image axis")
    return k[0]


def _clip_square(img, size):
    """(H, W, 3) -> (size, size, 3) as CLIP's preprocessing: shorter side resized to size (bicubic), centre crop."""
    h, w = img.shape[:2]
    im = Image.fromarray(np.ascontiguousarray(img)).resize(
        (max(size, round(w * size / min(h, w))), max(size, round(h * size / min(h, w)))), Image.BICUBIC)
    x0, y0 = (im.width - size) // 2, (im.height - size) // 2
    return np.asarray(im.crop((x0, y0, x0 + size, y0 + size)))


def _read_speech(path, t0_ns, duration):
    """AEA speech.csv (startTime_ns,endTime_ns,written[,confidence], on the VRS's device clock) -> narrations
    [{"t": utterance midpoint in seconds since t0, "text"}] inside [0, duration], and the number dropped.
    Words are joined into utterances until a pause longer than ARIA_SPEECH_GAP_SEC."""
    import csv  # (here, so that this section stays self-contained)
    try:
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            rows, header = list(reader), reader.fieldnames or []
        words = sorted((int(r["startTime_ns"]), int(r["endTime_ns"]), r["written"].strip()) for r in rows)
    except (OSError, csv.Error, AttributeError, KeyError, TypeError, ValueError) as e:  # a short row: None
        raise DataError(f"{path}: not an AEA speech.csv with startTime_ns,endTime_ns,written ({e!r})") from None
    _need({"startTime_ns", "endTime_ns", "written"} <= set(header), f"{path}: not an AEA speech.csv, whose header "
          f"has startTime_ns,endTime_ns,written (found {header})")
    utterances = []
    for start, end, text in words:
        if utterances and start - utterances[-1][1] <= ARIA_SPEECH_GAP_SEC * 1e9:
            utterances[-1] = (utterances[-1][0], max(end, utterances[-1][1]), f"{utterances[-1][2]} {text}")
        else:
            utterances.append((start, end, text))
    narrations = [{"t": ((a + b) / 2 - t0_ns) / 1e9, "text": text} for a, b, text in utterances]
    kept = [n for n in narrations if 0 <= n["t"] <= duration]
    return kept, len(narrations) - len(kept)


def _aria_stream(path, provider, label, need):
    """The stream ID of `label` in this file, which must hold at least `need` records."""
    labels = [provider.get_label_from_stream_id(s) for s in provider.get_all_streams()]
    _need(label in labels, f"{path}: no {label} stream (it has {', '.join(map(str, labels))})")
    sid = provider.get_stream_id_from_label(label)
    _need(provider.get_num_data(sid) >= need, f"{path}: the {label} stream holds {provider.get_num_data(sid)} "
          f"record(s), needs at least {need} (a truncated file?)")
    return sid


def _read_vrs(path, imu_label, size):
    """Read one VRS (inside _fds_to): -> imu_ns (N,), imu (N, 6), frames_ns (F,), frames (F, S, S, 3), info."""
    from projectaria_tools.core import data_provider
    from projectaria_tools.core.sensor_data import TimeDomain
    provider = data_provider.create_vrs_data_provider(str(path))
    _need(provider is not None, f"{path}: not a readable VRS file")
    imu_sid, rgb_sid = _aria_stream(path, provider, imu_label, 2), _aria_stream(path, provider, ARIA_RGB, 1)
    calib = provider.get_device_calibration()
    imu_cal = calib and calib.get_imu_calib(imu_label)
    _need(imu_cal is not None and calib.get_camera_calib(ARIA_RGB) is not None,
          f"{path}: no device calibration for {imu_label} and {ARIA_RGB}")
    R_dev_cam = calib.get_camera_calib(ARIA_RGB).get_transform_device_camera().rotation().to_matrix()
    k = _upright_turns(path, calib, R_dev_cam)
    # imu -> device -> camera -> upright image; specific force and angular velocity rotate alike
    R = _quarter_turns(k) @ R_dev_cam.T @ imu_cal.get_transform_device_imu().rotation().to_matrix()
    samples = [provider.get_imu_data_by_index(imu_sid, i) for i in range(provider.get_num_data(imu_sid))]
    valid = [s for s in samples if s.accel_valid and s.gyro_valid]
    _need(len(valid) >= 2, f"{path}: {len(valid)} of the {len(samples)} {imu_label} samples are valid, need >= 2")
    imu = np.array([np.concatenate([imu_cal.raw_to_rectified_accel(np.array(s.accel_msec2)).ravel(),
                                    imu_cal.raw_to_rectified_gyro(np.array(s.gyro_radsec)).ravel()])
                    for s in valid]).reshape(-1, 2, 3)  # (N, 2, 3): acc, gyro in the IMU's frame
    imu = np.einsum("ij,ngj->ngi", R, imu).reshape(-1, 6)  # (N, 6) in the upright image frame
    imu_ns = np.array([s.capture_timestamp_ns for s in valid], dtype=np.int64)
    frames, frames_ns = [], []
    for i in range(provider.get_num_data(rgb_sid)):  # one full-size image in memory at a time
        image, record = provider.get_image_data_by_index(rgb_sid, i)
        frames.append(_clip_square(np.rot90(image.to_numpy_array(), k), size))  # (S, S, 3) upright
        frames_ns.append(record.capture_timestamp_ns)
    info = {"device_version": str(calib.get_device_version()).split(".")[-1], "imu_stream": imu_label,
            "imu_native_rate_hz": float(provider.get_nominal_rate_hz(imu_sid)), "imu_resampled": False,
            "imu_samples_invalid": len(samples) - len(valid), "upright_rot90_k": k,
            "t0_device_ns": int(provider.get_first_time_ns_all_streams(TimeDomain.DEVICE_TIME))}
    del provider  # closes the file while its log still goes to the log file
    return imu_ns, imu, np.array(frames_ns, dtype=np.int64), np.stack(frames), info


def import_aria(vrs_files, out, imu="right", size=224, narrations=None):
    """Convert Project Aria VRS files into recordings under out, named after the file (AEA's recording.vrs:
    after its folder). IMU at its native rate, times in seconds since the recording's first record. -> report."""
    _need(size >= 1, f"--size {size}: must be a positive number of pixels")
    vrs_files, out = [Path(v) for v in vrs_files], Path(out)
    for v in vrs_files + ([Path(narrations)] if narrations else []):
        _need(v.is_file(), f"{v}: {'a directory, not a file' if v.is_dir() else 'missing file'}")
    _need(narrations is None or len(vrs_files) == 1,
          f"{narrations}: --narrations belongs to one recording, got {len(vrs_files)} VRS files")
    ids = [v.parent.name if v.stem == "recording" else v.stem for v in vrs_files]
    _need(len(set(ids)) == len(ids), f"two VRS files would make the same recording id: {ids}")
    report = {}
    for vrs, rec_id in zip(vrs_files, ids):
        with tempfile.TemporaryFile("w+", errors="replace") as log:
            with _fds_to(log):
                try:
                    imu_ns, values, frames_ns, frames, info = _read_vrs(vrs, ARIA_IMU[imu], size)
                except ImportError:
                    raise DataError(f"{vrs}: the Aria import needs projectaria-tools: {ARIA_INSTALL}") from None
                except RuntimeError as e:  # the reader's own failures
                    raise DataError(f"{vrs}: projectaria-tools could not read it ({e})") from None
            log.seek(0)
            lost = re.search(r"(\d+) records are beyond the end of the file", log.read())
        t0 = info["t0_device_ns"]
        imu_t, frames_t = (imu_ns - t0) / 1e9, (frames_ns - t0) / 1e9
        _, first = np.unique(imu_t, return_index=True)  # sorted, without repeated timestamps
        info["imu_samples_repeated"] = len(imu_t) - len(first)
        info["records_lost_to_truncation"] = int(lost[1]) if lost else 0
        duration = float(max(imu_t[-1], frames_t[-1]))
        texts, dropped = _read_speech(narrations, t0, duration) if narrations else ([], 0)
        info.update(file=str(vrs), narrations_file=narrations and str(narrations), narrations_kept=len(texts),
                    narrations_dropped=dropped)
        meta = {"source": "aria", "imu_frame": ARIA_IMU_FRAME, "aria": info}
        write_recording(out / rec_id, values[first], imu_t[first], frames, frames_t, texts, meta=meta)
        rate = (len(first) - 1) / (imu_t[first][-1] - imu_t[first][0])
        print(f"aria {rec_id}: {len(first)} {info['imu_stream']} samples at {rate:.0f} Hz over {duration:.3f} s, "
              f"{len(frames)} frames {size}x{size}, narrations {len(texts)} kept / {dropped} dropped (outside)"
              + (f"; truncated file: {lost[1]} records past its end are lost" if lost else ""))
        report[rec_id] = info
    return report


# ----- 8. The command line: flags from dataclass fields (every script's), and data.py's subcommands -------------------

def add_flags(parser: argparse.ArgumentParser, cls, only=None) -> None:
    """One --flag per field of the dataclass `cls` (or of those named in `only`); booleans get --x / --no-x,
    tuples take several values."""
    for f in (f for f in fields(cls) if only is None or f.name in only):
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


def _run_export_labelled(args):
    cfg = WindowConfig(**{f.name: getattr(args, f.name) for f in fields(WindowConfig) if hasattr(args, f.name)})
    from model import IMUEncoder, IMUEncoderConfig  # the shortest window the encoder accepts
    shortest = IMUEncoder(IMUEncoderConfig()).min_samples()
    _need(cfg.num_samples >= shortest, f"--window-sec {cfg.window_sec:g} at --rate-hz {cfg.rate_hz:g} gives "
          f"{cfg.num_samples} samples; the IMU encoder needs at least {shortest}")
    print(json.dumps(export_labelled(args.root, args.out, cfg), indent=1))


def _run_ego4d(args):
    videos = [v.strip() for v in args.videos.split(",") if v.strip()] if args.videos else None
    print(json.dumps(import_ego4d(args.root, args.out, videos, args.size), indent=1))


def main(argv=None):
    import world  # synth and show are the synthetic world's commands, defined there
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    world.add_commands(sub)
    p = sub.add_parser("export-labelled", help="export the labelled sliding windows as a labelled-IMU .npz")
    p.add_argument("root", help="dataset directory")
    p.add_argument("--out", required=True, help="the .npz file to write")
    add_flags(p, WindowConfig, only=("window_sec", "stride_sec", "rate_hz", "max_gap_sec", "val_frac", "test_frac"))
    p.set_defaults(run=_run_export_labelled)
    p = sub.add_parser("ego4d", help="convert Ego4D videos (mp4 + IMU CSV + narrations) into recordings")
    p.add_argument("--root", required=True, help="Ego4D download directory (holds v1/ or v2/)")
    p.add_argument("--out", required=True, help="dataset directory to write the recordings into")
    p.add_argument("--videos", default=None, help="comma-separated video uids (default: all with IMU)")
    p.add_argument("--size", type=int, default=224, help="side of the square frames [px] (default: %(default)s)")
    p.set_defaults(run=_run_ego4d)
    p = sub.add_parser("aria", help="convert Project Aria VRS files (IMU + RGB, optional speech.csv) into recordings")
    p.add_argument("vrs", nargs="+", help="VRS file(s), one recording each")
    p.add_argument("--out", required=True, help="dataset directory to write the recordings into")
    p.add_argument("--imu", choices=tuple(ARIA_IMU), default="right", help="IMU stream (default: %(default)s)")
    p.add_argument("--size", type=int, default=224, help="side of the square frames [px] (default: %(default)s)")
    p.add_argument("--narrations", default=None, help="AEA speech.csv of the (one) VRS file")
    p.set_defaults(run=lambda a: import_aria(a.vrs, a.out, a.imu, a.size, a.narrations))
    args = parser.parse_args(argv)
    try:
        out = Path(args.out)  # a directory for synth, ego4d and aria; a file for show and export-labelled
        if args.command in ("synth", "ego4d", "aria") and out.exists() and not out.is_dir():
            raise DataError(f"--out {out}: exists and is not a directory")
        if args.command in ("show", "export-labelled") and out.is_dir():
            raise DataError(f"--out {out}: is a directory, not a file to write")
        args.run(args)
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    import data  # run as the module `data` that world/ imports, so that its DataErrors are the ones main catches
    data.main()
