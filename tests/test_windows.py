"""Tests of data.py section 2: resampling, the window index, the split, the embedding cache, labelled IMU.

The recordings here are built so that their signals encode their own time: IMU channel 0 is the
timestamp, every pixel of frame k has the value k, and a fake CLIP embeds a frame as its pixel value, so
a window's IMU span, its frame and its narration can be checked against each other exactly.
"""
import json
import resource
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import clip_vendor
import data
from data import WindowConfig, WindowDataset

ROOT = Path(__file__).resolve().parents[1]


class FakeCLIP:
    """The FrozenCLIP interface, counting its calls: an image embeds to (mean pixel, 1, 0, 0) and a text
    to (len, first char code, 0, 1)."""

    embed_dim = 4

    def __init__(self, fingerprint="fake-v1"):
        self.fingerprint = fingerprint
        self.image_calls = self.text_calls = self.images = 0

    def embed_images(self, frames):
        self.image_calls += 1
        self.images += len(frames)
        out = np.zeros((len(frames), 4), np.float32)
        out[:, 0] = frames.reshape(len(frames), -1).mean(axis=1)
        out[:, 1] = 1
        return out

    def embed_texts(self, texts):
        self.text_calls += 1
        return np.array([[len(t), ord(t[0]) if t else 0, 0, 1] for t in texts], np.float32).reshape(-1, 4)

    def info(self):
        return {"name": "fake", "weights_source": "random-init", "sha256": None, "fingerprint": self.fingerprint}


def make_recording(path, duration=20.0, imu_hz=200.0, fps=10.0, narrations=(), segments=(), gap=None, seed=0):
    """A recording whose IMU channel 0 is its timestamp (channel 3 is minus it) and whose frame k is all k."""
    rng = np.random.default_rng(seed)
    imu_t = np.arange(0, duration, 1 / imu_hz) + rng.uniform(-0.2, 0.2, int(round(duration * imu_hz))) / imu_hz
    imu_t[0] = 0.0
    if gap is not None:
        imu_t = imu_t[(imu_t < gap[0]) | (imu_t > gap[1])]
    imu = np.stack([imu_t, 2 * imu_t, np.sin(imu_t), -imu_t, np.cos(imu_t), np.ones_like(imu_t)], axis=1)
    frames_t = np.arange(int(round(duration * fps))) / fps
    frames = np.broadcast_to((np.arange(len(frames_t)) % 256).astype(np.uint8)[:, None, None, None],
                             (len(frames_t), 8, 8, 3)).copy()
    meta = {"format": "imu2clip-recording", "version": 1, "source": "synthetic", "imu_rate_hz": imu_hz,
            "video_fps": fps, "duration_sec": duration, "imu_units": {"acc": "m/s^2", "gyro": "rad/s"},
            "imu_frame": "test", "scene": "test", "seed": seed, "person": None}
    data.write_recording(path, imu=imu.astype(np.float32), imu_t=imu_t, frames=frames, frames_t=frames_t,
                         narrations=[{"t": t, "text": s} for t, s in narrations],
                         segments=[{"start": a, "end": b, "label": c} for a, b, c in segments], meta=meta)
    return path


NARRATIONS = [(3.0, "#C C opens the door"), (7.35, "#C C picks #unsure up"), (11.0, "#C C walks"),
              (15.0, "#C C runs"), (1.0, "#C C too early"), (18.9, "#C C too late")]
SEGMENTS = [(0.0, 10.0, "walking"), (10.0, 20.0, "running")]


@pytest.fixture
def one(tmp_path):
    root = tmp_path / "one"
    make_recording(root / "rec0", narrations=NARRATIONS, segments=SEGMENTS, gap=(14.2, 14.7))
    return root


def test_resample_exact_on_linear_signal():
    rng = np.random.default_rng(1)
    t = np.cumsum(rng.uniform(0.003, 0.007, 500))  # jittered ~200 Hz clock
    imu = np.stack([3 * t + c for c in range(6)], axis=1)
    t_out = np.sort(rng.uniform(t[0], t[-1], 300))
    out = data.resample(imu, t, t_out)
    assert out.shape == (300, 6)
    np.testing.assert_allclose(out, np.stack([3 * t_out + c for c in range(6)], axis=1), atol=1e-4)


def test_resample_sine_within_linear_interpolation_bound():
    # 3 Hz sine sampled at 400 Hz, read at 200 Hz off the source grid: the error of linear interpolation
    # is at most dt^2 / 8 * max|x''| = dt^2 / 8 * (2 pi f)^2; nearest-neighbour would be ~80x worse
    f, src = 3.0, 400.0
    t = np.arange(0, 2, 1 / src)
    imu = np.repeat(np.sin(2 * np.pi * f * t)[:, None], 6, axis=1)
    t_out = 0.0013 + np.arange(380) / 200.0
    out = data.resample(imu, t, t_out, rate_hz=200.0)
    bound = (1 / src) ** 2 / 8 * (2 * np.pi * f) ** 2
    err = np.abs(out[:, 0] - np.sin(2 * np.pi * f * t_out)).max()
    assert err <= bound + 1e-6


def test_resample_band_limits_a_fast_source():
    # 1 kHz (Aria-like) source: a 400 Hz component is above the 100 Hz Nyquist rate of a 200 Hz output and
    # must not alias into it, while the 1 Hz motion passes
    t = np.arange(0, 2, 1e-3)
    slow = np.sin(2 * np.pi * t)
    imu = np.repeat((slow + np.sin(2 * np.pi * 400 * t))[:, None], 6, axis=1)
    t_out = 0.0513 + np.arange(360) / 200.0
    out = data.resample(imu, t, t_out, rate_hz=200.0)
    np.testing.assert_allclose(out[:, 2], np.sin(2 * np.pi * t_out), atol=0.01)
    naive = data.resample(imu, t, t_out)  # without the rate there is no band-limiting: it aliases
    assert np.abs(naive[:, 2] - np.sin(2 * np.pi * t_out)).max() > 0.05


@pytest.mark.parametrize("video_mode", ["clip_1frame", "clip_avg_frames"])
def test_window_imu_frames_and_narration_agree(one, tmp_path, video_mode):
    cfg = WindowConfig(window_sec=5.0, rate_hz=50.0, video_mode=video_mode)
    ds = WindowDataset(one, "all", cfg, FakeCLIP(), cache_dir=tmp_path / "cache")
    rec = data.read_recording(one / "rec0")
    T = cfg.num_samples
    assert ds.imu.shape == (3, 6, T) and ds.imu.dtype == np.float32
    assert ds.report["dropped"]["out_of_range"] == 2  # narrations at 1.0 s and 18.9 s
    assert ds.report["dropped"]["imu_gap"] == 1  # the window around 15.0 s holds the 14.2-14.7 s hole
    kept = [(t, s) for t, s in NARRATIONS if t in (3.0, 7.35, 11.0)]
    for i, (t, raw) in enumerate(kept):
        start = t - 2.5
        # the IMU encodes its own time: the window covers [t - w/2, t + w/2) on the 50 Hz grid
        np.testing.assert_allclose(ds.imu[i, 0], start + np.arange(T) / 50.0, atol=1e-4)
        np.testing.assert_allclose(ds.imu[i, 3], -(start + np.arange(T) / 50.0), atol=1e-4)
        assert ds.window_ids[i] == f"rec0@{start:.3f}"
        assert ds.texts[i] == data.clean_narration(raw)
        np.testing.assert_array_equal(ds.text_emb[i], FakeCLIP().embed_texts([ds.texts[i]])[0])
        # frames: pixel value = frame index; frame k is at k / 10 s
        middle = int(np.argmin(np.abs(rec.frames_t - t)))
        assert ds.frame_index[i] == ("rec0", middle)
        if video_mode == "clip_1frame":
            assert ds.video_emb[i, 0] == pytest.approx(middle)
        else:
            inside = np.flatnonzero((rec.frames_t >= start - 1e-9) & (rec.frames_t < start + 5.0 - 1e-9))
            assert ds.video_emb[i, 0] == pytest.approx((inside[0] + middle + inside[-1]) / 3)
    walking, running = data.ACTIVITIES.index("walking"), data.ACTIVITIES.index("running")
    assert ds.labels.tolist() == [walking, walking, running]  # 11.0 s: 3.5 s of its 5 s are running
    assert ds.class_names == tuple(data.ACTIVITIES)


def test_sliding_windows_have_no_text(one, tmp_path):
    cfg = WindowConfig(window_sec=4.0, rate_hz=20.0, mode="sliding", stride_sec=2.0)
    ds = WindowDataset(one, "all", cfg, FakeCLIP(), cache_dir=tmp_path / "cache")
    starts = [float(w.split("@")[1]) for w in ds.window_ids]
    # every 2 s from 0 while the window fits in the video (last frame at 19.9 s), minus the gap windows
    expected = [s for s in np.arange(0, 16, 2.0) if s + 4 < 14.2 or s > 14.7]
    assert starts == pytest.approx(expected)
    assert ds.text_emb is None and set(ds.texts) == {""}
    batch = ds.batch([0, 1])
    assert torch.equal(batch["text_emb"], torch.zeros(2, 4)) and batch["text"] == ["", ""]


def test_batch_serves_the_indexed_windows(one, tmp_path):
    ds = WindowDataset(one, "all", WindowConfig(rate_hz=40.0), FakeCLIP(), cache_dir=tmp_path / "cache")
    idx = np.array([2, 0, 2])
    batch = ds.batch(idx)
    assert batch.keys() == {"imu", "video_emb", "text_emb", "text", "label", "window_id"}
    assert batch["imu"].shape == (3, 6, 200) and batch["imu"].dtype == torch.float32
    for key, full in (("imu", ds.imu), ("video_emb", ds.video_emb), ("text_emb", ds.text_emb), ("label", ds.labels)):
        assert torch.equal(batch[key], torch.from_numpy(full[idx]))
    assert batch["text"] == [ds.texts[i] for i in idx] and batch["window_id"] == [ds.window_ids[i] for i in idx]


@pytest.mark.parametrize("raw, caption", [  # Ego4D narrations, cleaned by hand as the official code cleans them
    ("#C C picks a cup.", "picks a cup"),  # the same text group as the next one, punctuation or not
    ("#C C picks a cup", "picks a cup"),
    ("  #C C Picks A Cup!  ", "picks a cup"),
    ("#C C looks at #O man", "looks at #o man"),  # other people's tags stay, as in the official code
    ("#C C picks a cup #C C puts it in the sink.", "picks a cup puts it in the sink"),  # a tag mid-sentence
    ("#c c opens the door", "opens the door"),  # the tag in lower case (official: "c c opens the door")
    ("#C C holds #unsure", "holds something"),
    ("#C C holds #Unsure.", "holds something"),
    ("#O woman Y gives #C C a cup", "o woman y gives a cup"),  # a leading "#" is punctuation, stripped
    ("#C C Cuts the bread", "cuts the bread"),  # "C" starting a word is not the tag
    ("#C C " + "a" * 200, "a" * 128),  # cut to 128 characters
    ("#C C ...", ""),  # nothing left: the window is dropped (counted as empty_text)
])
def test_narrations_are_cleaned_as_the_official_code_does(raw, caption):
    assert data.clean_narration(raw) == caption


@pytest.fixture
def many(tmp_path):
    root = tmp_path / "many"
    for k in range(7):
        make_recording(root / f"r{k}", duration=8.0, imu_hz=100.0,
                       narrations=[(2.5, f"#C C does {k}a"), (4.0, f"#C C does {k}b"), (5.5, "#C C waits")],
                       segments=[(0.0, 8.0, data.ACTIVITIES[k % 3])], seed=k)
    return root


def test_split_is_by_recording_and_a_pure_function_of_its_id(many, tmp_path):
    clip = FakeCLIP()
    cfg = WindowConfig(window_sec=2.0, rate_hz=50.0, val_frac=0.3, test_frac=0.3)
    parts = {s: WindowDataset(many, s, cfg, clip, cache_dir=tmp_path / "c") for s in ("train", "val", "test")}
    recs = {s: set(d.recording_ids) for s, d in parts.items()}
    assert all(recs.values())  # these 7 recordings hash into every split
    assert not (recs["train"] & recs["val"] or recs["train"] & recs["test"] or recs["val"] & recs["test"])
    assert recs["train"] | recs["val"] | recs["test"] == {f"r{k}" for k in range(7)}
    assert sum(len(d) for d in parts.values()) == len(WindowDataset(many, "all", cfg, clip, cache_dir=tmp_path / "c"))
    again = WindowDataset(many, "test", cfg, clip, cache_dir=tmp_path / "c")
    assert again.window_ids == parts["test"].window_ids
    calls = clip.image_calls
    wider = WindowDataset(many, "test", WindowConfig(window_sec=2.0, rate_hz=50.0, val_frac=0.3, test_frac=0.5),
                          clip, cache_dir=tmp_path / "c")
    assert clip.image_calls == calls  # the split is chosen on load: one cache serves every fraction
    assert set(wider.recording_ids) > recs["test"]  # a larger test fraction only adds to the test split
    for k in range(7, 30):  # adding recordings never moves an existing one to another split
        make_recording(many / f"r{k}", duration=8.0, imu_hz=100.0, narrations=[(4.0, "#C C waits")], seed=k)
    grown = {s: set(WindowDataset(many, s, cfg, clip, cache_dir=tmp_path / "c").recording_ids) for s in recs}
    assert all(grown[s] & {f"r{k}" for k in range(7)} == recs[s] for s in recs)
    assert all(grown[s] > recs[s] for s in recs)  # and the new ones land in every split


def entries(cache):
    return sorted(p.name for p in cache.iterdir() if not p.name.startswith("."))


def test_cache_reused_and_rebuilt_when_an_input_changes(many, tmp_path):
    cache = tmp_path / "cache"
    cfg = WindowConfig(window_sec=2.0, rate_hz=50.0)
    clip = FakeCLIP()
    first = WindowDataset(many, "all", cfg, clip, cache_dir=cache)
    assert clip.images == len(set(first.frame_index)) and clip.text_calls == 1  # each frame and text embedded once
    assert first.report["distinct_texts"] == 15  # "waits" is shared by the 7 recordings
    assert first.built == 7 and len(entries(cache)) == 7  # one entry per recording

    def calls(cfg, clip, root=many):
        before = clip.image_calls + clip.text_calls
        ds = WindowDataset(root, "all", cfg, clip, cache_dir=cache)
        return clip.image_calls + clip.text_calls - before, ds

    n, same = calls(cfg, clip)
    assert n == 0 and same.built == 0
    np.testing.assert_array_equal(same.imu, first.imu)
    np.testing.assert_array_equal(same.text_emb, first.text_emb)
    assert calls(WindowConfig(window_sec=2.5, rate_hz=50.0), clip)[0] > 0  # window changed
    assert calls(WindowConfig(window_sec=2.0, rate_hz=50.0, video_mode="clip_avg_frames"), clip)[0] > 0
    assert calls(cfg, FakeCLIP("fake-v2"))[0] > 0  # CLIP weights changed
    # data changed: one recording is rewritten with one more narration; only it is embedded again
    shutil.rmtree(many / "r3")
    make_recording(many / "r3", duration=8.0, imu_hz=100.0, seed=3,
                   narrations=[(2.5, "#C C does 3a"), (4.0, "#C C does 3b"), (5.5, "#C C waits"),
                               (6.0, "#C C sits")], segments=[(0.0, 8.0, data.ACTIVITIES[0])])
    images = clip.images
    n, changed = calls(cfg, clip)
    assert n == 2 and changed.built == 1 and len(changed) == len(first) + 1  # one image call, one text call
    assert clip.images - images == len({f for r, f in changed.frame_index if r == "r3"})
    np.testing.assert_array_equal(changed.imu[[i for i, r in enumerate(changed.recording_ids) if r != "r3"]],
                                  first.imu[[i for i, r in enumerate(first.recording_ids) if r != "r3"]])
    assert calls(cfg, clip)[0] == 0  # and that new entry is reused in turn


def test_adding_a_recording_embeds_only_it_and_removing_one_embeds_nothing(many, tmp_path):
    cache, cfg = tmp_path / "cache", WindowConfig(window_sec=2.0, rate_hz=50.0)
    clip = FakeCLIP()
    before = WindowDataset(many, "all", cfg, clip, cache_dir=cache)
    make_recording(many / "r9", duration=8.0, imu_hz=100.0, seed=9, narrations=[(3.0, "#C C is new"),
                                                                                 (5.0, "#C C waits")])
    images, texts = clip.images, clip.text_calls
    grown = WindowDataset(many, "all", cfg, clip, cache_dir=cache)
    new_frames = {f for r, f in grown.frame_index if r == "r9"}
    assert grown.built == 1 and clip.images - images == len(new_frames) == 2  # the new recording's frames only
    assert clip.text_calls - texts == 1 and len(grown) == len(before) + 2
    shutil.rmtree(many / "r9")
    shutil.rmtree(many / "r0")
    images, texts = clip.images, clip.text_calls
    shrunk = WindowDataset(many, "all", cfg, clip, cache_dir=cache)
    assert shrunk.built == 0 and (clip.images, clip.text_calls) == (images, texts)
    assert set(shrunk.recording_ids) == set(before.recording_ids) - {"r0"}


def test_an_interrupted_build_resumes_without_embedding_its_finished_entries(many, tmp_path, monkeypatch):
    cache, cfg = tmp_path / "cache", WindowConfig(window_sec=2.0, rate_hz=50.0)
    clip, write, written = FakeCLIP(), data._write_entry, []

    def write_three_then_die(entry, arrays, index):
        if len(written) == 3:
            raise KeyboardInterrupt  # killed while building the fourth entry
        write(entry, arrays, index)
        written.append(entry.name.split("-")[0])

    monkeypatch.setattr(data, "_write_entry", write_three_then_die)
    with pytest.raises(KeyboardInterrupt):
        WindowDataset(many, "all", cfg, clip, cache_dir=cache)
    monkeypatch.setattr(data, "_write_entry", write)
    assert len(entries(cache)) == 3 and not list(cache.glob(".*tmp-*"))  # the finished ones, nothing half-written
    fresh = FakeCLIP()
    resumed = WindowDataset(many, "all", cfg, fresh, cache_dir=cache)
    assert resumed.built == 4 and len(entries(cache)) == 7
    assert fresh.images == len({(r, f) for r, f in resumed.frame_index if r not in written})  # the other 4 only
    clean = WindowDataset(many, "all", cfg, FakeCLIP(), cache_dir=tmp_path / "clean")
    np.testing.assert_array_equal(resumed.imu, clean.imu)
    np.testing.assert_array_equal(resumed.video_emb, clean.video_emb)
    assert resumed.window_ids == clean.window_ids


def test_a_damaged_entry_rebuilds_only_itself(many, tmp_path, capsys):
    cache, cfg = tmp_path / "cache", WindowConfig(window_sec=2.0, rate_hz=50.0)
    clip = FakeCLIP()
    first = WindowDataset(many, "all", cfg, clip, cache_dir=cache)
    first.imu, first.video_emb  # read into memory now: the entries it maps are damaged in place below
    r2 = cache / next(e for e in entries(cache) if e.startswith("r2-"))
    frames_r2 = len({f for r, f in first.frame_index if r == "r2"})

    def reopen():
        images = clip.images
        ds = WindowDataset(many, "all", cfg, clip, cache_dir=cache)
        assert ds.built == 1 and clip.images - images == frames_r2, "only the damaged entry is embedded again"
        assert "rebuilding" in capsys.readouterr().err and not list(cache.glob(".*tmp-*"))
        np.testing.assert_array_equal(ds.imu, first.imu)
        np.testing.assert_array_equal(ds.video_emb, first.video_emb)
        return ds

    with open(r2 / "imu.npy", "r+b") as f:
        f.truncate((r2 / "imu.npy").stat().st_size // 2)
    reopen()
    np.save(r2 / "video_emb.npy", np.load(r2 / "video_emb.npy")[:-1])  # a readable array with one row missing
    reopen()
    np.save(r2 / "labels.npy", np.load(r2 / "labels.npy").astype(np.float64))  # right shape, wrong dtype
    assert reopen().labels.dtype == np.int64
    index = json.loads((r2 / "index.json").read_text())
    (r2 / "index.json").write_text(json.dumps({k: v for k, v in index.items() if k != "class_names"}))
    reopen()
    shutil.rmtree(r2)
    r2.write_text("not a directory")  # the entry replaced by a file
    reopen()


def build_on_two_ranks(rank, root, cache, init_file, out):
    """One of 2 gloo processes: build this rank's share of the cache, wait for the other, open the whole dataset."""
    import torch.distributed as dist
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    cfg, clip = WindowConfig(window_sec=2.0, rate_hz=50.0), FakeCLIP()
    built = data.build_cache(root, cfg, clip, cache, rank=rank, world=2)
    dist.barrier()
    ds = WindowDataset(root, "all", cfg, clip, cache_dir=cache)
    np.savez(out / f"rank{rank}.npz", built=built, images=clip.images, opened=ds.built, imu=ds.imu,
             ids=np.array(ds.window_ids))
    dist.destroy_process_group()


def test_every_rank_embeds_only_its_share_then_reads_them_all(many, tmp_path):
    torch.multiprocessing.spawn(build_on_two_ranks, args=(many, tmp_path / "cache", tmp_path / "init", tmp_path),
                                nprocs=2)
    ranks = [np.load(tmp_path / f"rank{r}.npz") for r in range(2)]
    alone = WindowDataset(many, "all", WindowConfig(window_sec=2.0, rate_hz=50.0), FakeCLIP(),
                          cache_dir=tmp_path / "alone")
    shares = [set(alone.recording_ids[i] for i in range(len(alone))
                  if sorted(set(alone.recording_ids)).index(alone.recording_ids[i]) % 2 == r) for r in range(2)]
    for r, got in enumerate(ranks):
        assert got["built"] == len(shares[r]) == (4, 3)[r] and got["opened"] == 0  # its share; then nothing left
        assert got["images"] == len({f for f in alone.frame_index if f[0] in shares[r]})
        np.testing.assert_array_equal(got["imu"], alone.imu)  # both read the same, whole dataset
        assert got["ids"].tolist() == alone.window_ids


def test_export_and_load_labelled(many, tmp_path):
    out = tmp_path / "lab" / "set.npz"
    cfg = WindowConfig(window_sec=2.0, stride_sec=1.0, rate_hz=50.0)
    report = data.export_labelled(many, out, cfg)
    lab = data.load_labelled(out, rate_hz=50.0)
    assert lab.imu.shape == (report["exported"], 6, 100) and lab.imu.dtype == np.float32
    assert lab.class_names == tuple(data.ACTIVITIES)
    # each recording is one activity; windows of the test-split recordings are "test"
    test_recs = set(WindowDataset(many, "test", cfg, FakeCLIP(), cache_dir=tmp_path / "c").recording_ids)
    per_rec = report["exported"] // 7
    for k in range(7):
        rows = slice(k * per_rec, (k + 1) * per_rec)
        assert (lab.labels[rows] == k % 3).all()
        assert set(lab.split[rows]) == {"test" if f"r{k}" in test_recs else "train"}
        assert set(lab.groups[rows]) == {f"r{k}"}  # the recording: what evaluation splits validation by
    half = data.load_labelled(out, rate_hz=25.0)  # resampled on load; 25 Hz samples fall on 50 Hz ones
    assert half.imu.shape == (len(lab.labels), 6, 50)
    np.testing.assert_allclose(half.imu, lab.imu[:, :, ::2], atol=1e-5)
    double = data.load_labelled(out, rate_hz=100.0)  # channel 0 is time: linear, so exact between samples
    assert double.imu.shape == (len(lab.labels), 6, 200)
    start = lab.imu[:, 0, :1]
    np.testing.assert_allclose(double.imu[:, 0, :-2], start + np.arange(198) / 100.0, atol=1e-4)


def test_labelled_without_split_gets_a_stratified_deterministic_split(tmp_path):
    path = tmp_path / "mine.npz"
    labels = np.repeat(np.arange(3), [10, 20, 5])
    np.savez(path, imu=np.random.default_rng(0).normal(size=(35, 6, 40)), labels=labels,
             class_names=np.array(["a", "b", "c"]), rate_hz=np.float64(20.0))
    one, two = data.load_labelled(path, rate_hz=20.0), data.load_labelled(path, rate_hz=20.0)
    np.testing.assert_array_equal(one.split, two.split)
    for c, n in enumerate([10, 20, 5]):
        assert (one.split[labels == c] == "test").sum() == round(0.2 * n)


@pytest.mark.parametrize("change, message", [
    (dict(imu=np.zeros((4, 3, 40))), "imu must be"),
    (dict(labels=np.zeros(5, dtype=np.int64)), "labels must be"),
    (dict(labels=np.array([0, 1, 2, 3])), "labels must lie in"),
    (dict(labels=np.array([0, 1, -1, 1])), "labels must lie in"),
    (dict(split=np.array(["train", "test", "val", "test"])), "split must be"),
    (dict(rate_hz=np.array([20.0, 30.0])), "rate_hz"),
])
def test_bad_labelled_file_is_one_clear_line(tmp_path, change, message):
    path = tmp_path / "bad.npz"
    arrays = dict(imu=np.zeros((4, 6, 40)), labels=np.array([0, 1, 2, 1]), class_names=np.array(["a", "b", "c"]),
                  rate_hz=np.float64(20.0))
    arrays.update(change)
    np.savez(path, **arrays)
    with pytest.raises(data.DataError, match=message) as e:
        data.load_labelled(path)
    assert str(path) in str(e.value) and "\n" not in str(e.value)


def test_cache_holds_the_frozen_clip_embeddings_of_the_right_frames(one, tmp_path):
    clip = clip_vendor.FrozenCLIP("tiny")
    ds = WindowDataset(one, "all", WindowConfig(rate_hz=20.0), clip, cache_dir=tmp_path / "cache")
    rec = data.read_recording(one / "rec0")
    frames = np.stack([rec.frames[i] for _, i in ds.frame_index])
    assert ds.embed_dim == clip.embed_dim and ds.video_emb.shape == (len(ds), clip.embed_dim)
    np.testing.assert_allclose(ds.video_emb, clip.embed_images(frames), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(ds.text_emb, clip.embed_texts(ds.texts), rtol=1e-4, atol=1e-5)


def test_labelled_rate_must_be_a_number(tmp_path):
    for rate in (np.array("50"), np.array(True)):
        np.savez(tmp_path / "lab.npz", imu=np.zeros((4, 6, 100), np.float32), labels=np.array([0, 0, 1, 1]),
                 class_names=np.array(["a", "b"]), rate_hz=rate)
        with pytest.raises(data.DataError, match="rate_hz must be one positive number"):
            data.load_labelled(tmp_path / "lab.npz")


def test_each_rank_builds_its_own_share_whatever_the_others_have_built(many, tmp_path):
    """Rank r's share is the r-th, (r + 2)-th, ... recording of the dataset, not of what is still missing when it
    looks: rank 0 done before rank 1 starts leaves rank 1 exactly its own share, and every entry built once."""
    cache, cfg = tmp_path / "cache", WindowConfig(window_sec=2.0, rate_hz=50.0)
    built = [data.build_cache(many, cfg, FakeCLIP(), cache, rank=r, world=2) for r in (0, 1)]
    assert built == [4, 3] and len(entries(cache)) == 7
    assert WindowDataset(many, "all", cfg, FakeCLIP(), cache_dir=cache).built == 0


def test_class_names_of_a_recording_must_be_distinct_strings(many, tmp_path):
    for bad in (5, "walking", [["a"]], ["a", "a"], ["a", ""]):
        meta = json.loads((many / "r0" / "meta.json").read_text())
        (many / "r0" / "meta.json").write_text(json.dumps({**meta, "class_names": bad}))
        with pytest.raises(data.DataError, match="class_names must be a list of distinct, non-empty strings"):
            data.read_recording(many / "r0")


def test_too_few_open_files_is_one_clear_error_not_a_rebuild(many, tmp_path):
    """An open split holds 4 memory-mapped files per recording (7 here): opening it raises the soft limit to the
    hard one, and where even the hard limit is too low it says so (ulimit -n) instead of taking the entries for
    damaged and rebuilding them."""
    cfg = WindowConfig(window_sec=2.0, rate_hz=50.0)
    WindowDataset(many, "all", cfg, FakeCLIP(), cache_dir=tmp_path / "cache")  # built here, with the usual limit
    code = f"""
import resource, sys
sys.path[:0] = [{str(ROOT)!r}, {str(ROOT / "tests")!r}]
import data
from test_windows import FakeCLIP
resource.setrlimit(resource.RLIMIT_NOFILE, (24, {{hard}}))  # too few for 7 x 4 memory-mapped files
data.WindowDataset({str(many)!r}, "all", data.WindowConfig(window_sec=2.0, rate_hz=50.0), FakeCLIP(),
                   cache_dir={str(tmp_path / "cache")!r})
"""
    hard = min(4096, resource.getrlimit(resource.RLIMIT_NOFILE)[1])  # (a user cannot raise its hard limit)
    raised = subprocess.run([sys.executable, "-c", code.format(hard=hard)], capture_output=True, text=True)
    assert raised.returncode == 0 and "rebuilding" not in raised.stderr, raised.stderr
    low = subprocess.run([sys.executable, "-c", code.format(hard=24)], capture_output=True, text=True)
    assert "too many open files" in low.stderr and "ulimit -n" in low.stderr and "rebuilding" not in low.stderr
