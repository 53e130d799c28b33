"""Data for IMU2CLIP (Moon et al., 2022, sections 3 and 4.1): the recording format, windows and the split, the
embedding cache, WindowDataset, and the labelled-IMU format. It reads recordings; it knows no source of them.

Every source (sources/: the synthetic world, Ego4D, Aria; or your own code) writes one format, a directory per
recording whose arrays are memory-mapped; write_recording writes one atomically, read_recording validates one:

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
Its one command writes a dataset's labelled windows as a labelled-IMU file (section 5):

    python data.py export-labelled data/synthetic --out labelled.npz
"""
import argparse
import collections
import contextlib
import errno
import fcntl
import functools
import glob
import hashlib
import json
import math
import os
import re
import resource
import shutil
import stat
import string
import sys
import zipfile
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

import numpy as np
import torch


# ----- 1. The recording format: write with validation, read -----------------------------------------------------------

ACTIVITIES = ("walking", "running", "standing still", "sitting down", "standing up", "looking around",
              "climbing stairs")
FORMAT_NAME = "imu2clip-recording"
FORMAT_VERSION = 1
MAX_ACC, MAX_GYRO = 1e4, 1e3  # m/s^2 (about 1000 g) and rad/s: beyond what any real IMU measures
INCOMPLETE = ".incomplete"  # a source writing a dataset keeps this file in it until it has finished


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


def _check_recording(path, imu, imu_t, frames, frames_t, narrations, segments, suffix=""):
    """The one validation of the format, for the reader and the writer: cheap checks of what would otherwise
    produce garbage (shapes, dtypes, finite values, increasing timestamps, the JSON entries)."""
    def check(ok, name, problem):
        need(ok, f"{path / name}{suffix}: {problem}")

    check(imu.ndim == 2 and imu.shape[1] == 6 and len(imu) >= 2, "imu.npy",
          f"expected shape (N >= 2, 6), got {imu.shape}")
    check(imu.dtype == np.float32, "imu.npy", f"expected dtype float32, got {imu.dtype}")
    check(np.isfinite(imu).all(), "imu.npy", "NaN or infinite values")
    check(np.abs(imu[:, :3]).max(initial=0) <= MAX_ACC and np.abs(imu[:, 3:]).max(initial=0) <= MAX_GYRO, "imu.npy",
          f"|acc| above {MAX_ACC:g} m/s^2 or |gyro| above {MAX_GYRO:g} rad/s, beyond any real IMU")
    check(frames.ndim == 4 and frames.shape[3] == 3 and len(frames) >= 1, "frames.npy",
          f"expected shape (F >= 1, H, W, 3), got {frames.shape}")
    check(frames.dtype == np.uint8, "frames.npy", f"expected dtype uint8, got {frames.dtype}")
    for name, t, n in (("imu_t.npy", imu_t, len(imu)), ("frames_t.npy", frames_t, len(frames))):
        check(t.shape == (n,), name, f"{t.shape} timestamps for {n} samples")
        check(t.dtype == np.float64, name, f"expected dtype float64, got {t.dtype}")
        check(np.isfinite(t).all(), name, "NaN or infinite timestamps")
        check((np.diff(t) > 0).all(), name, "timestamps not strictly increasing")
    check(isinstance(narrations, list), "narrations.json", "expected a list of {\"t\", \"text\"} entries")
    for i, n in enumerate(narrations):
        check(isinstance(n, dict) and _is_number(n.get("t")) and isinstance(n.get("text"), str), "narrations.json",
              f"entry {i} is not {{\"t\": seconds, \"text\": str}}: {str(n)[:80]}")
    check(isinstance(segments, list), "segments.json", "expected a list of segments")
    for i, g in enumerate(segments):
        check(isinstance(g, dict) and _is_number(g.get("start")) and _is_number(g.get("end"))
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


def read_recording(path):
    """Open and validate one recording directory; DataError names the bad file and the problem."""
    path = Path(path)
    need(path.is_dir(), f"{path}: not a recording directory")
    meta = load_file(path / "meta.json")
    found = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
    need(found == FORMAT_NAME, f"{path / 'meta.json'}: not a {FORMAT_NAME} meta file (format: {found!r})")
    need(meta.get("version") == FORMAT_VERSION, f"{path / 'meta.json'}: unsupported version "
          f"{meta.get('version')!r} (this reader knows {FORMAT_VERSION})")
    names = meta.get("class_names", ACTIVITIES)  # the activities that segments.json's labels name
    need(isinstance(names, (list, tuple)) and names and all(isinstance(n, str) and n for n in names)
         and len(set(names)) == len(names), f"{path / 'meta.json'}: class_names must be a list of distinct, "
         f"non-empty strings, got {str(names)[:80]}")
    arrays = [load_file(path / n) for n in ("imu.npy", "imu_t.npy", "frames.npy", "frames_t.npy")]
    narrations = load_file(path / "narrations.json")
    segments = load_file(path / "segments.json") if (path / "segments.json").exists() else []
    _check_recording(path, *arrays, narrations, segments)
    return Recording(path, path.name, meta, *arrays, narrations, segments)


def list_recordings(root):
    """The recording directories of a dataset, sorted; names starting with "." or "_" are not recordings. Warns of
    a dataset whose source has not finished (INCOMPLETE) and of a symlink that leads nowhere (a loop, a lost target)."""
    root = Path(root)
    need(_kind(root) == "a directory", f"{root}: no such dataset directory")  # (a symlink loop: OSError)
    if (root / INCOMPLETE).exists():
        print(f"warning: {root}: the source writing it was stopped, or is still at work ({INCOMPLETE} is there): "
              f"recordings may be missing", file=sys.stderr)
    names = sorted(p for p in root.iterdir() if not p.name.startswith((".", "_")))
    for p in (p for p in names if p.is_symlink() and not p.exists()):
        print(f"warning: {p}: skipped, a symlink that leads nowhere (a loop or a missing target)", file=sys.stderr)
    found = [p for p in names if p.is_dir()]
    need(found, f"{root}: no recordings in this dataset directory")
    return found


def clean_narration(text):
    """Ego4D narration -> caption, cleaned as the official code cleans it: every camera-wearer tag ("#C C", "#C")
    removed wherever it is, "#unsure" -> "something", surrounding whitespace and punctuation stripped, lower case,
    cut to 128 characters; other tags stay inside ("gives #O man a cup" -> "gives #o man a cup"). Unlike the official
    code, the tags are matched in any case ("#c c" is the same tag) and inner whitespace is collapsed, so that equal
    sentences are equal text."""
    text = re.sub(r"#c\b(\s+c\b)?", "", text, flags=re.IGNORECASE)  # "#C C picks" -> " picks"; "#C Cuts" keeps "Cuts"
    text = re.sub(r"#unsure\b", "something", text, flags=re.IGNORECASE)
    return " ".join(text.split()).strip(string.punctuation + " ").lower()[:128]


# ----- 2. Windows: a time span of one recording, its IMU resampled onto the model's grid; the split -------------------

SPLITS = ("train", "val", "test", "all")


def flag(default, help: str, choices=None, at_least=None, above=None, at_most=None):
    """A config field with its --help text, allowed values and bounds: `epochs: int = flag(10, "passes over the
    data", at_least=1)`. Every command line is generated from such fields by add_flags (section 6), which also
    refuses, naming the flag, a non-finite float and an int beyond 64 bits."""
    return field(default=default, metadata={"help": help, "choices": choices, "at_least": at_least, "above": above,
                                            "at_most": at_most})


@dataclass
class WindowConfig:
    """How recordings are cut into windows; everything but the split fractions is part of the cache key."""
    window_sec: float = flag(5.0, "window length in seconds (the official code's effective window)", above=0,
                             at_most=3600)
    rate_hz: float = flag(200.0, "IMU rate the model sees; every source is resampled to it", above=0, at_most=1e4)
    mode: str = flag("narration", "narration: centred on each narration | sliding: every stride_sec, no text",
                     choices=("narration", "sliding"))
    stride_sec: float = flag(2.5, "step between sliding windows (sliding mode and export-labelled only)", above=0)
    video_mode: str = flag("clip_1frame", "clip_1frame: middle frame | clip_avg_frames: mean of first/mid/last",
                           choices=("clip_1frame", "clip_avg_frames"))
    max_gap_sec: float = flag(0.1, "a window whose IMU has a larger hole between two samples is dropped", above=0)
    val_frac: float = flag(0.15, "fraction of recordings (not windows) held out for validation", at_least=0)
    test_frac: float = flag(0.15, "fraction of recordings held out for testing", at_least=0)

    def __post_init__(self):
        need(self.mode in ("narration", "sliding") and self.video_mode in ("clip_1frame", "clip_avg_frames"),
              f"WindowConfig: unknown mode {self.mode!r} or video_mode {self.video_mode!r}")
        positive = (self.window_sec, self.rate_hz, self.stride_sec, self.max_gap_sec)
        need(all(math.isfinite(x) and x > 0 for x in positive),
              "window_sec, rate_hz, stride_sec and max_gap_sec must be finite and positive")
        need(0 <= self.val_frac < 1 and 0 <= self.test_frac < 1 and self.val_frac + self.test_frac < 1,
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
    need(not unknown, f"{rec.path / 'segments.json'}: bad segment label(s) {unknown}; labels must be one of "
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


Windows = collections.namedtuple("Windows", "starts labels frames texts drops")  # what _index_windows finds


def _index_windows(rec, cfg, class_names):
    """The windows of one recording (Windows): starts (Nw,), labels (Nw,), frame rows (Nw, 1|3), texts (Nw,) cleaned
    ("" in sliding mode), and how many candidates dropped for each reason: past the ends of the IMU or the video, an
    IMU gap, no frame inside, a narration that cleans to "". Their IMU: window_imu."""
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
    return Windows(starts, _window_labels(rec, starts, w, class_names), frames, texts[keep], drops)


def window_imu(rec, starts, cfg):
    """The IMU of the windows starting at `starts` (Nw,), resampled onto the model's grid: (Nw, 6, T) float32."""
    t_out = starts[:, None] + np.arange(cfg.num_samples) / cfg.rate_hz  # (Nw, T) sample times
    imu = resample(rec.imu, rec.imu_t, t_out.ravel(), cfg.rate_hz).reshape(len(starts), cfg.num_samples, 6)
    return imu.transpose(0, 2, 1).astype(np.float32)  # (Nw, T, 6) -> (Nw, 6, T)


def split_of(recording_id: str, cfg: WindowConfig) -> str:
    """"train" | "val" | "test" for one recording: a pure function of its ID (a hash mapped to [0, 1) and compared
    with the fractions), so adding or removing recordings never moves another one between splits. The split is by
    recording: no window of a test recording is ever trained on. A small dataset may leave a split empty."""
    u = int(hashlib.sha256(recording_id.encode()).hexdigest()[:12], 16) / 16 ** 12  # uniform in [0, 1)
    return "test" if u < cfg.test_frac else "val" if u < cfg.test_frac + cfg.val_frac else "train"


# ----- 3. The embedding cache: CLIP is frozen, so each needed frame and narration is embedded once -------------------

CACHE_VERSION = 3  # bump when the entries' layout, the window maths or the text cleaning change: old ones are ignored


def entry_path(path, cfg, clip, cache_dir) -> Path:
    """The cache entry of one recording: <cache_dir>/<recording id>-<key>, where the key is a sha256 over what its
    windows depend on: the recording's files (small ones by their bytes, large arrays by size and mtime), the window
    settings (not the split fractions: the split picks whole entries), the CLIP identity and the cache version."""
    path, files = Path(path), []
    for f in sorted(p for p in Path(path).iterdir() if p.is_file() and not p.name.startswith(".")):
        st = f.stat()
        files.append(f"{f.name}:{hashlib.sha256(f.read_bytes()).hexdigest()}" if st.st_size <= 1 << 20
                     else f"{f.name}:{st.st_size}:{st.st_mtime_ns}")
    window = {k: getattr(cfg, k) for k in ("window_sec", "rate_hz", "mode", "video_mode", "max_gap_sec")}
    if cfg.mode == "sliding":  # (narration windows do not depend on it)
        window["stride_sec"] = cfg.stride_sec
    key = {"version": CACHE_VERSION, "window": window, "clip": clip.fingerprint, "files": files}
    return Path(cache_dir) / f"{path.name}-{hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:24]}"


def build_cache(root, cfg, clip, cache_dir=None, rank=0, world=1) -> int:
    """Index, embed and write the cache entries of the dataset `root` that are missing or damaged, in cache_dir
    (default ROOT/.cache/windows). Process `rank` of `world` takes the rank-th, (rank + world)-th, ... recording
    (under torchrun every process builds its share; alone, all). Each distinct narration is embedded once, in one
    sorted pass before any entry is written; each needed frame once, recording by recording; each entry is written
    atomically, so an interrupted build keeps what it finished. -> the number of entries built."""
    paths, cache_dir = list_recordings(root), Path(cache_dir or Path(root) / ".cache" / "windows")
    existing = next(p for p in (cache_dir, *cache_dir.parents) if p.exists())  # made when the first entry is written
    need(existing.is_dir(), f"{existing}: the cache directory is a file; remove it")
    todo = [p for p in paths[rank::world] if _load_entry(entry_path(p, cfg, clip, cache_dir), cfg, clip.embed_dim)
            is None]
    texts = set()  # a first pass for the narrations; one recording open at a time (its arrays hold files open)
    for p in todo if cfg.mode == "narration" else []:
        rec = read_recording(p)
        texts.update(_index_windows(rec, cfg, rec.meta.get("class_names", ACTIVITIES)).texts)
    texts = sorted(texts)
    text_emb = dict(zip(texts, clip.embed_texts(texts))) if texts else {}  # text -> (D,)
    for k, p in enumerate(todo):
        rec = read_recording(p)
        w = _index_windows(rec, cfg, rec.meta.get("class_names", ACTIVITIES))
        needed, inverse = np.unique(w.frames, return_inverse=True)  # (U,) distinct frames; each frame row's place
        emb = clip.embed_images(np.asarray(rec.frames[needed])) if len(needed) else np.zeros((0, clip.embed_dim))
        video_emb = emb[inverse.reshape(w.frames.shape)].mean(axis=1)  # (U, D) -> (Nw, 1|3, D) -> (Nw, D)
        arrays = {"imu": window_imu(rec, w.starts, cfg), "labels": w.labels,  # (Nw, 6, T) float32, (Nw,) int64
                  "video_emb": video_emb.astype(np.float32)}
        if cfg.mode == "narration":
            arrays["text_emb"] = np.array([text_emb[t] for t in w.texts], np.float32).reshape(-1, clip.embed_dim)
        index = {"texts": w.texts.tolist(), "window_ids": _window_ids(rec.id, w.starts), "drops": w.drops,
                 "middle_frames": w.frames[:, w.frames.shape[1] // 2].tolist(),  # (Nw,) the frame each window shows
                 "class_names": list(rec.meta.get("class_names", ACTIVITIES))}
        _write_entry(entry_path(p, cfg, clip, cache_dir), arrays, index)
        print(f"windows: {k + 1}/{len(todo)} recordings indexed and embedded" + (f" by rank {rank}" if world > 1
              else ""), file=sys.stderr, flush=True)
    return len(todo)


def _window_ids(recording_id, starts):
    """"<recording>@<start>" of each window, "~k" added when k earlier narrations of the recording share a start."""
    seen, ids = collections.Counter(), []
    for wid in (f"{recording_id}@{start:.3f}" for start in starts):
        ids.append(f"{wid}~{seen[wid]}" if seen[wid] else wid)
        seen[wid] += 1
    return ids


def _write_entry(entry, arrays, index):
    def write(tmp):
        tmp.mkdir()
        for name, a in arrays.items():
            np.save(tmp / f"{name}.npy", a)
        (tmp / "index.json").write_text(json.dumps(index))
    try:
        atomic_write(entry, write)
    except OSError as e:  # another run on this --data renamed the same entry (the same key: the same content) first
        if e.errno not in (errno.ENOTEMPTY, errno.EEXIST) or not entry.is_dir():
            raise


def _load_entry(entry, cfg, embed_dim):
    """A cache entry's arrays, memory-mapped, and index; None when absent or damaged (missing, truncated, shapes or
    counts that do not match). atomic_write never leaves one half-written; this guards against later damage,
    cheaply: no checksums."""
    if not entry.exists():
        return None
    try:
        index = json.loads((entry / "index.json").read_text())
        N, D, T = len(index["window_ids"]), embed_dim, cfg.num_samples
        want = {"imu": ((N, 6, T), np.float32), "labels": ((N,), np.int64), "video_emb": ((N, D), np.float32),
                "text_emb": ((N, D), np.float32)}
        names = ["imu", "labels", "video_emb"] + (["text_emb"] if cfg.mode == "narration" else [])
        arrays = {n: np.load(entry / f"{n}.npy", mmap_mode="r", allow_pickle=False) for n in names}
        bad = [n for n, a in arrays.items() if (a.shape, a.dtype) != want[n]]
        if bad or {"class_names", "drops"} - set(index) or not len(index["texts"]) == len(index["middle_frames"]) == N:
            raise ValueError(f"{bad[0] if bad else 'index.json'} does not match the window count {N} and dtypes")
    except (OSError, ValueError, KeyError, TypeError, EOFError) as e:
        need(getattr(e, "errno", None) != errno.EMFILE, f"{entry}: too many open files: an open dataset holds 4 per "
             f"recording (its memory-mapped arrays); raise the limit (ulimit -n)")
        print(f"window cache entry {entry} is damaged ({str(e).splitlines()[0] if str(e) else type(e).__name__}); "
              f"rebuilding it", file=sys.stderr)
        return None
    return arrays, index


# ----- 4. WindowDataset: what train.py and evaluate.py read -----------------------------------------------------------

class WindowDataset:
    """Parallel (IMU, video embedding, text embedding) windows of a dataset's split. Opening it builds the cache
    entries of the whole dataset that are missing (build_cache), then memory-maps those of the split's recordings:
    .batch(idx) reads a batch's rows from them, so an open split costs memory per recording, not per window. The
    whole split's arrays (.imu, .video_emb, .text_emb, .labels) are read into memory on first use (evaluation)."""

    def __init__(self, root, split, cfg, clip, cache_dir=None):
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        self.root, self.split, self.cfg, self.embed_dim = Path(root), split, cfg, clip.embed_dim
        self.cache_dir = Path(cache_dir or self.root / ".cache" / "windows")
        self.built = build_cache(self.root, cfg, clip, self.cache_dir)  # (none when every entry is there)
        _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)  # each memory-mapped array holds a file open:
        with contextlib.suppress(ValueError, OSError):  # let this process open as many as the system allows
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        paths = list_recordings(self.root)
        mine = [p for p in paths if split in ("all", split_of(p.name, cfg))]
        need(mine, f"{self.root}: the {split!r} split is empty: none of its {len(paths)} recordings hashes into it "
             f"(val_frac {cfg.val_frac}, test_frac {cfg.test_frac}); add recordings")
        entries = [_load_entry(entry_path(p, cfg, clip, self.cache_dir), cfg, clip.embed_dim) for p in mine]
        if any(e is None for e in entries):  # damaged since build_cache checked it: once more, then it must load
            build_cache(self.root, cfg, clip, self.cache_dir)
            entries = [_load_entry(entry_path(p, cfg, clip, self.cache_dir), cfg, clip.embed_dim) for p in mine]
        self.arrays = [arrays for arrays, _ in entries]  # per recording, memory-mapped
        self.offsets = np.cumsum([0] + [len(index["window_ids"]) for _, index in entries])  # (R + 1,)
        names = {tuple(index["class_names"]) for _, index in entries}
        need(len(names) == 1, f"{self.root}: recordings disagree on meta.json class_names: {sorted(names)}")
        self.class_names = names.pop()
        self.texts = [t for _, index in entries for t in index["texts"]]
        self.window_ids = [w for _, index in entries for w in index["window_ids"]]
        self.recording_ids = [p.name for p, (_, index) in zip(mine, entries) for _ in index["window_ids"]]
        self.frame_index = [(p.name, f) for p, (_, index) in zip(mine, entries) for f in index["middle_frames"]]
        dropped = collections.Counter()
        for _, index in entries:
            dropped.update(index["drops"])
        self.report = {"split": split, "recordings": len(mine), "candidates": len(self) + sum(dropped.values()),
                       "kept": len(self), "dropped": dict(dropped), "distinct_texts": len(set(self.texts))}
        need(len(self), f"{self.root}: no window of the {split!r} split survived ({self.report})")

    def __len__(self):
        return int(self.offsets[-1])

    def rows(self, name, idx):
        """Rows idx (B,) of the split's array `name`, gathered from the recordings' memory-mapped entries."""
        idx = np.asarray(idx, dtype=np.int64)
        part = np.searchsorted(self.offsets, idx, side="right") - 1  # (B,) the recording of each window
        first = self.arrays[0][name]
        out = np.empty((len(idx), *first.shape[1:]), first.dtype)  # (B, ...)
        for p in np.unique(part):
            out[part == p] = self.arrays[p][name][idx[part == p] - self.offsets[p]]
        return out

    def whole(self, name):
        """The split's array `name` (all its rows), read from the entries into memory."""
        return np.concatenate([arrays[name] for arrays in self.arrays])

    imu = functools.cached_property(lambda self: self.whole("imu"))  # (N, 6, T) float32, read on first use
    video_emb = functools.cached_property(lambda self: self.whole("video_emb"))  # (N, D) float32
    labels = functools.cached_property(lambda self: self.whole("labels"))  # (N,) int64, -1 = no activity
    text_emb = functools.cached_property(  # (N, D) float32, None for sliding windows (no narration)
        lambda self: self.whole("text_emb") if self.cfg.mode == "narration" else None)

    def batch(self, idx):
        """The windows idx (B,) as tensors, read from the memory-mapped entries."""
        idx = np.asarray(idx, dtype=np.int64)
        return {
            "imu": torch.from_numpy(self.rows("imu", idx)),  # (B, 6, T)
            "video_emb": torch.from_numpy(self.rows("video_emb", idx)),  # (B, D)
            "text_emb": (torch.from_numpy(self.rows("text_emb", idx)) if self.cfg.mode == "narration"
                         else torch.zeros(len(idx), self.embed_dim)),  # (B, D), zeros in sliding mode
            "text": [self.texts[i] for i in idx],
            "label": torch.from_numpy(self.rows("labels", idx)),  # (B,)
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
    groups: np.ndarray  # (N,) str: the recording (or subject) of each window, or None when the file has none
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


def split_off(labels, groups, held_out_frac, seed):
    """(kept, held_out) sorted indices, seeded: whole groups when groups (N,) are given (a recording's neighbouring
    windows overlap in time, so they stay on one side; round(held_out_frac * G) of the G groups, at least 1 and at
    most G - 1), else stratified_split of the windows."""
    if groups is None:
        return stratified_split(labels, held_out_frac, seed)
    names = np.random.default_rng(seed).permutation(np.unique(groups))  # (G,) in a seeded order
    held = np.isin(groups, names[: min(len(names) - 1, max(1, round(held_out_frac * len(names))))])  # (N,)
    return np.flatnonzero(~held), np.flatnonzero(held)


def load_labelled(path, rate_hz=200.0, test_frac=0.2, seed=0):
    """Read a labelled-IMU .npz (imu (N, 6, T), labels (N,), class_names (C,), rate_hz, optional split and groups),
    check it, resample it to rate_hz and split it (split_off: by group when it has groups) when it has no split."""
    path = Path(path)
    need(path.is_file(), f"{path}: {'not a regular file' if path.exists() else 'no such file'}")
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise DataError(f"{path}: not a readable .npz file ({e})") from None
    missing = [k for k in ("imu", "labels", "class_names", "rate_hz") if k not in data]
    need(not missing, f"{path}: missing array(s) {missing}; a labelled file has imu, labels, class_names, "
          f"rate_hz and optionally split and groups")
    imu, labels, names, src_rate = data["imu"], data["labels"], data["class_names"], data["rate_hz"]
    N, T = (imu.shape[0], imu.shape[2]) if imu.ndim == 3 else (0, 0)
    need(imu.ndim == 3 and imu.shape[1] == 6 and T >= 2 and imu.dtype.kind in "iuf",
          f"{path}: imu must be (N, 6, T) real numbers (acc xyz, gyro xyz), got {imu.shape} {imu.dtype}")
    need(labels.shape == (N,) and np.issubdtype(labels.dtype, np.integer),
          f"{path}: labels must be ({N},) integers, got {labels.shape} {labels.dtype}")
    need(names.ndim == 1 and len(names) and names.dtype.kind == "U",
          f"{path}: class_names must be a 1-D array of strings, got {names.shape} {names.dtype}")
    need(len(set(names)) == len(names) and all(n.strip() for n in names),
          f"{path}: class_names must be distinct and not empty, got {names.tolist()}")
    need(not N or (labels.min() >= 0 and labels.max() < len(names)),
          f"{path}: labels must lie in [0, {len(names)}) for {len(names)} class_names")
    need(src_rate.shape == () and np.issubdtype(src_rate.dtype, np.number) and np.isfinite(src_rate)
          and float(src_rate) > 0, f"{path}: rate_hz must be one positive number, got {src_rate!r}")
    with np.errstate(over="ignore"):  # what overflows float32 becomes inf there
        need(np.isfinite(imu.astype(np.float32)).all(), f"{path}: imu contains NaN, inf or values beyond float32")
    need(np.abs(imu[:, :3]).max(initial=0) <= MAX_ACC and np.abs(imu[:, 3:]).max(initial=0) <= MAX_GYRO,
          f"{path}: imu has |acc| above {MAX_ACC:g} m/s^2 or |gyro| above {MAX_GYRO:g} rad/s, beyond any real IMU")
    groups = data.get("groups")
    need(groups is None or (groups.shape == (N,) and groups.dtype.kind in "Uiu"), f"{path}: groups must be ({N},) "
         f"strings or integers (the recording or subject of each window), got {getattr(groups, 'shape', '')}")
    groups = None if groups is None else groups.astype(str)
    split = data.get("split")
    if split is None:  # none in the file: seeded, by group when it has groups
        split = np.full(N, "train", dtype="<U5")
        split[split_off(labels, groups, test_frac, seed)[1]] = "test"
    need(split.shape == (N,) and np.isin(split, ["train", "test"]).all(), f"{path}: split must be ({N},) of "
          f"'train'/'test'")
    src_rate = float(src_rate)
    if src_rate != rate_hz:
        samples = T * rate_hz / src_rate  # at rate_hz; a float, as a tiny rate_hz makes it astronomical
        need(samples >= 2, f"{path}: rate_hz {src_rate:g} makes its {T} samples {T / src_rate:.3g} s, "
             f"{samples:.3g} samples at {rate_hz:g} Hz")
        need_room(8 * 6 * N * (T + 3 * samples), f"{path}: resampling its {N} windows from rate_hz {src_rate:g} to "
                  f"{rate_hz:g} Hz ({T} -> {samples:.3g} samples)")  # float64: the source, the result, 2 temporaries
        T_out = int(round(samples))
        x = imu.transpose(2, 0, 1).reshape(T, N * 6)  # (T, N * 6): all windows share the time grid
        x = resample(x, np.arange(T) / src_rate, np.arange(T_out) / rate_hz, rate_hz)  # (T_out, N * 6)
        imu = x.reshape(T_out, N, 6).transpose(1, 2, 0)  # (N, 6, T_out)
    return LabelledSet(imu=np.ascontiguousarray(imu, dtype=np.float32), labels=labels.astype(np.int64),
                       class_names=tuple(str(n) for n in names), split=np.asarray(split, dtype=str),
                       groups=groups, rate_hz=float(rate_hz), path=path)


def export_labelled(root, out, cfg=None):
    """Export the sliding windows of a dataset that have an activity label as a labelled-IMU .npz, each with its
    recording as its group. Windows of the recordings in the test split of cfg are "test", the others "train"."""
    cfg = replace(cfg or WindowConfig(), mode="sliding")
    recs = [read_recording(p) for p in list_recordings(root)]
    class_names = _class_names(recs)
    n = sum(max(0, int((min(r.imu_t[-1], r.frames_t[-1]) - cfg.window_sec) / cfg.stride_sec) + 1) for r in recs)
    size = n * 6 * cfg.num_samples * 4  # bytes of float32 IMU, refused before anything is allocated
    need(size <= MAX_EXPORT_BYTES, f"{root}: --stride-sec {cfg.stride_sec:g} would export about {n:,} windows "
          f"({size / 2**30:.1f} GiB), over {MAX_EXPORT_BYTES / 2**30:.0f} GiB; use a larger --stride-sec")
    imu, labels, split, groups, report = [], [], [], [], {"recordings": len(recs), "unlabelled": 0}
    for rec in recs:
        w = _index_windows(rec, cfg, class_names)
        rec_imu, rec_labels = window_imu(rec, w.starts, cfg), w.labels  # (Nw, 6, T), (Nw,)
        report["unlabelled"] += int((rec_labels < 0).sum())
        imu.append(rec_imu[rec_labels >= 0])
        labels.append(rec_labels[rec_labels >= 0])
        split += ["test" if split_of(rec.id, cfg) == "test" else "train"] * len(labels[-1])
        groups += [rec.id] * len(labels[-1])
    labels = np.concatenate(labels)
    need(len(labels), f"{root}: no labelled window to export ({report})")
    arrays = dict(imu=np.concatenate(imu), labels=labels, class_names=np.array(class_names, dtype=str),
                  rate_hz=np.float64(cfg.rate_hz), split=np.array(split, dtype=str), groups=np.array(groups, dtype=str))

    def write(tmp):
        with open(tmp, "wb") as f:  # a file object, so that np.savez does not append ".npz" to the name
            np.savez(f, **arrays)
    atomic_write(out, write)
    report.update(exported=len(labels), per_class={c: int((labels == i).sum()) for i, c in enumerate(class_names)})
    return report


# ----- 6. Edges: refusing bad input, crash-safe writes, flags from dataclass fields, every command line's errors -----

class DataError(ValueError):
    """Bad input data: the message names the file and the problem."""


def need(ok, message: str) -> None:
    """The one way the file readers refuse their input: DataError(message) unless ok."""
    if not ok:
        raise DataError(message)


def _is_number(x):
    return isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, bool) and math.isfinite(x)


def load_file(path):
    """One file of a recording: a .json parsed, a .npy memory-mapped; DataError when missing or unreadable."""
    need(path.is_file(), f"{path}: {'not a regular file' if path.exists() else 'missing file'}")
    try:
        if path.suffix == ".json":
            return json.loads(path.read_text())
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, UnicodeDecodeError, ValueError, EOFError) as e:
        what = "readable JSON" if path.suffix == ".json" else "a readable .npy array"
        raise DataError(f"{path}: not {what} ({e})") from None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        pass
    return True


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def atomic_write(path, write) -> None:
    """write(tmp), then rename tmp over `path` (a file or a directory): a kill at any moment leaves the previous
    `path` or the new one. tmp is the hidden `.NAME.tmp-PID` beside it, deleted when write raises; a dead process's
    leftovers are deleted when `path` is next written (a directory it set aside, `-old`, goes back in place).
    Nothing but a regular file or a directory is ever replaced (not a device, a FIFO or a socket), and an OSError
    (a full disk, a read-only file system) names `path`, not tmp."""
    path = Path(path)
    kind = _kind(path)
    need(kind in (None, "a regular file", "a directory"), f"{path}: is {kind}; refusing to write over it")
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
    except BaseException as e:
        if old.exists() and not path.exists():
            os.replace(old, path)  # the previous version back
        if tmp.exists():
            _remove(tmp)
        if isinstance(e, OSError) and e.errno:
            raise OSError(e.errno, e.strerror, str(path)) from None
        raise


KINDS = ((stat.S_ISREG, "a regular file"), (stat.S_ISDIR, "a directory"), (stat.S_ISCHR, "a character device"),
         (stat.S_ISBLK, "a block device"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"))


def _kind(path):
    """What is at `path`, symlinks followed: "a regular file", "a directory", "a FIFO", ...; None when nothing is.
    A symlink loop, or a file used as a directory, raises its OSError (command: one error line)."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return None
    return next((name for test, name in KINDS if test(mode)), "an unknown kind of file")


def check_out_dir(out) -> None:
    """--out of a command that writes a directory: DataError when it exists as something else."""
    kind = _kind(out)
    need(kind in (None, "a directory"), f"--out {out}: is {kind}, not a directory")


_locks = []  # the --out locks this process holds until main returns: (lock file, open file, directories made)


def lock_out(out) -> None:
    """One run per --out: OUT/.lock, with this PID in it, is held (fcntl.flock) until main returns (command releases
    it). Another run on the same --out stops at once, naming this PID; the kernel releases the lock of a process that
    dies, so even kill -9 leaves no stale lock. The file goes on release, and so does an --out made for it alone."""
    out = Path(out)
    check_out_dir(out)
    made = [d for d in (out, *out.parents) if not d.exists()]
    out.mkdir(parents=True, exist_ok=True)
    while True:
        f = os.fdopen(os.open(out / ".lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644), "r+")  # not via a link
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            pid = f.read().strip() or "unknown"
            f.close()
            raise DataError(f"--out {out}: in use by another run (PID {pid}); wait for it to end, or choose another "
                            f"--out") from None
        if os.fstat(f.fileno()).st_nlink:  # the file at OUT/.lock, not one that a run ending has just removed
            break
        f.close()
    f.truncate(0)
    f.write(f"{os.getpid()}\n")
    f.flush()
    _locks.append((out / ".lock", f, made))


def _unlock() -> None:
    while _locks:
        path, f, made = _locks.pop()
        path.unlink(missing_ok=True)  # before the lock goes, so that no other run locks a file about to go
        f.close()
        for d in made:  # innermost first, only when empty
            with contextlib.suppress(OSError):
                d.rmdir()


def need_room(nbytes, what: str, disk=None) -> None:
    """Refuse before trying: DataError when `what` needs more bytes than the memory available (/proc/meminfo's
    MemAvailable) or, given `disk` (a path), than the free space of the disk it is on."""
    if disk is not None:
        disk = next(d for d in (Path(disk), *Path(disk).parents) if d.exists())
        free, where = shutil.disk_usage(disk).free, f"free on {disk}"
    elif os.path.exists("/proc/meminfo"):  # Linux: what can be allocated without swapping
        with open("/proc/meminfo") as f:
            free, where = next(int(ln.split()[1]) * 1024 for ln in f if ln.startswith("MemAvailable:")), "available"
    else:  # elsewhere the physical memory, an upper bound
        free, where = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"), "in this machine"
    need(nbytes <= free, f"{what} needs about {nbytes / 2**30:.3g} GiB, and there are {free / 2**30:.3g} GiB {where}")


def number(kind, at_least=None, above=None, at_most=None):
    """argparse type of a numeric flag: a `kind` that is finite (a float) or fits 64 bits (an int), and within its
    bounds; argparse names the flag in its one error line."""
    def parse(text):
        x = kind(text)  # ValueError: argparse says "invalid int value: 'many'"
        if not (math.isfinite(x) and (kind is float or abs(x) < 2**63) and (at_least is None or x >= at_least)
                and (above is None or x > above) and (at_most is None or x <= at_most)):
            bound = f" >= {at_least:g}" if at_least is not None else f" > {above:g}" if above is not None else ""
            bound += f"{' and' if bound else ''} <= {at_most:g}" if at_most is not None else ""
            kind_name = "a finite number" if kind is float else "a 64-bit integer"
            raise argparse.ArgumentTypeError(f"must be {kind_name}{bound}, got {text}")
        return x
    parse.__name__ = kind.__name__
    return parse


def add_flags(parser: argparse.ArgumentParser, cls, only=None) -> None:
    """One --flag per field of the dataclass `cls` (or of those named in `only`); booleans get --x / --no-x,
    tuples take several values, numbers are checked by `number`."""
    for f in (f for f in fields(cls) if only is None or f.name in only):
        name, meta, kind = "--" + f.name.replace("_", "-"), f.metadata, type(f.default)
        kwargs = {"default": f.default, "help": f"{meta.get('help', '')} (default: %(default)s)"}
        if kind is bool:
            parser.add_argument(name, action=argparse.BooleanOptionalAction, **kwargs)
            continue
        if kind is tuple:
            kind, kwargs = type(f.default[0]), {**kwargs, "nargs": "+", "default": list(f.default)}
        if kind in (int, float):
            kind = number(kind, meta.get("at_least"), meta.get("above"), meta.get("at_most"))
        parser.add_argument(name, type=kind, choices=meta.get("choices"), **kwargs)


def config_from(cls, args: argparse.Namespace):
    """The dataclass `cls` filled from parsed flags (see add_flags)."""
    return cls(**{f.name: tuple(getattr(args, f.name)) if isinstance(f.default, tuple) else getattr(args, f.name)
                  for f in fields(cls)})


def command(main):
    """The edge of every command line (train.py's, evaluate.py's, data.py's, each source's): main(argv), its errors
    as one line instead of a traceback. Bad input (ValueError, DataError among them) and a file-system error (an
    OSError: read-only, full, a symlink loop; it names the file) exit with code 2, a run gone non-finite
    (FloatingPointError) or out of memory with 1, Ctrl-C with 130; the --out locks main took are released. Under
    torchrun only rank 0 prints."""
    @functools.wraps(main)
    def run(argv=None):
        try:
            return main(argv)
        except KeyboardInterrupt as e:  # Ctrl-C; main may say where it stopped
            code, line = 130, f"interrupted{f': {e}' if str(e) else ''}"
        except (ValueError, OSError) as e:  # an OSError names its file: "error: /ro/x: Read-only file system"
            code, line = 2, f"error: {e.filename}: {e.strerror}" if getattr(e, "filename", None) else f"error: {e}"
        except (FloatingPointError, MemoryError) as e:
            code, line = 1, f"error: {str(e) or 'out of memory'}"
        finally:
            _unlock()
        if os.environ.get("RANK", "0") == "0":
            print(line, file=sys.stderr)
        sys.exit(code)
    return run


@command
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("export-labelled", help="export the labelled sliding windows as a labelled-IMU .npz")
    p.add_argument("root", help="dataset directory")
    p.add_argument("--out", required=True, help="the .npz file to write")
    add_flags(p, WindowConfig, only=("window_sec", "stride_sec", "rate_hz", "max_gap_sec", "val_frac", "test_frac"))
    args = parser.parse_args(argv)
    need(not Path(args.out).is_dir(), f"--out {args.out}: is a directory, not a file to write")
    cfg = WindowConfig(**{f.name: getattr(args, f.name) for f in fields(WindowConfig) if hasattr(args, f.name)})
    from model import IMUEncoder, IMUEncoderConfig  # the shortest window the encoder accepts
    shortest = IMUEncoder(IMUEncoderConfig()).min_samples()
    need(cfg.num_samples >= shortest, f"--window-sec {cfg.window_sec:g} at --rate-hz {cfg.rate_hz:g} gives "
         f"{cfg.num_samples} samples; the IMU encoder needs at least {shortest}")
    print(json.dumps(export_labelled(args.root, args.out, cfg), indent=1))


if __name__ == "__main__":
    main()
