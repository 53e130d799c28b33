"""The project's one benchmark: every speed and memory figure the README quotes, measured in one run.

Not collected by pytest (its name does not start with test_). Run from the repository root:

    python tests/benchmark.py                    # everything, about 15 minutes on a 2-core CPU
    python tests/benchmark.py --skip-quickstart  # without the two end-to-end quickstart runs
    python tests/benchmark.py --skip-quickstart --skip-cache --clip tiny   # a smoke run of the rest
    python tests/benchmark.py --workdir bench    # keep the quickstart's data, runs and reports in ./bench
    python tests/benchmark.py --results          # only the README's results tables (about 30 minutes, 2 cores)
    python tests/benchmark.py --world            # only the world's IMU<->video figures (below), ~1 h on 2 cores

It prints one JSON object (and writes it to --out). Figures:
- clip: ViT-B/32 images/s and texts/s through FrozenCLIP at batch 32. Speed does not depend on the
  weights' values, so the offline random-init towers measure the same thing as the real ones.
- synth: time and disk size of the default synthetic dataset.
- data_path: windows/s of WindowDataset.batch over a warm cache, shuffled batches of 256; with
  --skip-quickstart the cache is built first (ViT-B/32 on every window: minutes).
- train_step: one training step of ours (IMU encoder on cached embeddings) against the official design's
  step (CLIP ViT-B/32 image + text towers run inside the step), same batch, and their ratio.
- retrieval_100k: exact metrics over 100,000 x 100,000 512-d embeddings: time and peak memory,
  measured in a child process so that its peak RSS is its own.
- quickstart: the README's main command end to end, cold (fresh dataset and cache) and warm.
- decode: the Ego4D importer's in-process decoder (PyAV) on a 1080p 30 fps video, kept at 10 fps and 224 px.
- ego4d_projection: Ego4D's IMU subset (836 hours, 13.2 narrations a minute: the Ego4D paper) projected with the
  rates above: windows, frames and disk at 10 and 2 fps, the cache's disk and build time, the decode time.
- cache (--skip-cache leaves it out): the per-recording embedding cache on --cache-recordings synthetic recordings
  of --cache-minutes (32x32 frames): the cold build (seconds, frames embedded), the warm open, the build after one
  recording is added, the memory that opening the training split adds to a process (RssAnon; and with the split's
  arrays read into memory, as the previous whole-dataset cache did), and a cold build shared by 2 gloo processes:
  the recordings and frames each embedded.

--results instead regenerates the README's results: train.py trains the three variants (imu,video / imu,text /
imu,video,text) over --results-seeds seeds on the default dataset (or --results-data), evaluate.py evaluates each
checkpoint with the same seed, and the script prints markdown tables of mean +- std over the seeds next to the
exact chance of every row (retrieval, transitivity, activity recognition, label efficiency). The raw numbers and
the time of every run go to --out. A smoke run on a small dataset:
`--results --results-data DIR --results-epochs 1 --results-steps 20 --clip tiny`.
- world (--world, alone): can the default dataset's video be told from the body's activity? On the test split,
  with the offline ViT-B/32: the IMU->video MRR of oracles that predict a window's frame embedding as the mean
  training embedding of its activity, its scene, both, or its recording, next to the exact chance of the protocol;
  the activity oracle per activity; the share of the (unit) frame embeddings' variance that each key explains on
  the training split; the recordings per scene of both splits; then train.py --modalities imu,video over
  --world-seeds, each scored by evaluate.py --task retrieval and --task probe (mean and spread of IMU->video MRR,
  text->IMU MRR, probe accuracy).
"""
import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
import clip_vendor  # noqa: E402  (after the path fix, so the script runs from anywhere)
import data  # noqa: E402
from sources import world  # noqa: E402
from loss import multimodal_loss  # noqa: E402
from model import IMUEncoder, IMUEncoderConfig  # noqa: E402

QUICKSTART = [  # the README's main command, as separate steps
    [sys.executable, str(ROOT / "train.py"), "--modalities", "imu,video,text"],
    [sys.executable, str(ROOT / "evaluate.py"), "--task", "all", "--checkpoint", "runs/imu-video-text/best.pt"],
]


@dataclass
class BenchConfig:
    clip: str = data.flag("ViT-B/32", "CLIP model for the CLIP and training-step figures, and of --results")
    batch: int = data.flag(32, "frames or texts per CLIP forward pass")
    train_batch: int = data.flag(64, "windows per training step, for both steps compared (train.py's default)")
    steps: int = data.flag(5, "timed repetitions of each measured operation (after one warm-up)")
    pool: int = data.flag(100_000, "candidates (and queries) of the big retrieval figure")
    skip_quickstart: bool = data.flag(False, "skip the two end-to-end quickstart runs (the slowest part)")
    workdir: str = data.flag("", "keep the datasets, runs and reports here ('' = a temporary directory)")
    out: str = data.flag("benchmark.json", "where the JSON is written as well as printed")
    results: bool = data.flag(False, "only regenerate the README's results tables (see above)")
    results_seeds: int = data.flag(3, "--results: seeds of every trained variant")
    results_data: str = data.flag("", "--results: dataset root; '' = train.py's default synthetic dataset")
    results_epochs: int = data.flag(0, "--results: training epochs; 0 = train.py's default")
    results_steps: int = data.flag(0, "--results: classifier steps of evaluate.py; 0 = its default")
    results_fractions: tuple = data.flag((0.05, 0.2, 1.0), "--results: label fractions of the main model's curve")
    world: bool = data.flag(False, "only the world figures: oracles and trained IMU->video over seeds")
    world_data: str = data.flag("", "dataset for --world ('' = generate the default one in the work dir)")
    world_seeds: int = data.flag(3, "training seeds for --world")
    world_epochs: int = data.flag(10, "train.py --epochs for --world")
    cache_recordings: int = data.flag(200, "recordings of the cache figures' dataset (at least 200: issue of scale)")
    cache_minutes: float = data.flag(1.0, "minutes per recording of the cache figures' dataset")
    skip_cache: bool = data.flag(False, "skip the cache figures (a cold build of the cache twice: minutes)")


def parse_args(argv=None) -> BenchConfig:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    data.add_flags(parser, BenchConfig)
    return data.config_from(BenchConfig, parser.parse_args(argv))


def seconds_per_call(fn, repeats: int) -> float:
    fn()  # warm-up: lazy builds, allocator, caches
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats


def du_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e6


def bench_clip(cfg: BenchConfig) -> dict:
    clip = clip_vendor.FrozenCLIP(cfg.clip, batch_size=cfg.batch)
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (cfg.batch, 48, 48, 3), dtype=np.uint8)  # the synthetic world's frame size
    texts = [f"c walks along the path in the park past tree number {i}" for i in range(cfg.batch)]
    return {"model": cfg.clip, "weights_source": clip.weights_source, "batch": cfg.batch,
            "images_per_s": round(cfg.batch / seconds_per_call(lambda: clip.embed_images(frames), cfg.steps), 2),
            "texts_per_s": round(cfg.batch / seconds_per_call(lambda: clip.embed_texts(texts), cfg.steps), 2)}


def bench_synth(work: Path) -> dict:
    start = time.perf_counter()
    paths = world.synthesize(work / "synthetic", world.SynthConfig())
    seconds = time.perf_counter() - start
    return {"recordings": len(paths), "seconds": round(seconds, 1), "disk_mb": round(du_mb(work / "synthetic"), 1)}


def bench_data_path(root: Path, clip_name: str) -> dict:
    """Windows/s of the training data path over a warm cache (the cache is built first if needed)."""
    clip = clip_vendor.FrozenCLIP(clip_name)
    start = time.perf_counter()
    ds = data.WindowDataset(root, "train", data.WindowConfig(), clip)
    build_or_load = time.perf_counter() - start
    rng = np.random.default_rng(0)
    batch, n_batches = 256, 0
    start = time.perf_counter()
    for _ in range(max(1, 20_000 // len(ds))):  # about 20k windows
        for idx in np.array_split(rng.permutation(len(ds)), max(1, len(ds) // batch)):
            ds.batch(idx)
            n_batches += len(idx)
    seconds = time.perf_counter() - start
    return {"train_windows": len(ds), "entries_built": ds.built,
            "cache_seconds": round(build_or_load, 1), "windows_per_s": round(n_batches / seconds)}


class CountingCLIP(clip_vendor.FrozenCLIP):
    """FrozenCLIP that counts the frames it embeds."""
    frames = 0

    def embed_images(self, frames):
        self.frames += len(frames)
        return super().embed_images(frames)


def _build_share(rank, root, cache, clip_name, out):
    """One of 2 gloo processes building its share of a cold cache (bench_cache)."""
    import torch.distributed as dist
    torch.set_num_threads(1)  # two processes on the cores
    dist.init_process_group("gloo", init_method=f"file://{out}/init", rank=rank, world_size=2)
    clip, start = CountingCLIP(clip_name), time.perf_counter()
    built = data.build_cache(root, data.WindowConfig(), clip, cache, rank=rank, world=2)
    dist.barrier()
    (Path(out) / f"rank{rank}.json").write_text(json.dumps(
        {"recordings": built, "frames": clip.frames, "seconds": round(time.perf_counter() - start, 1)}))
    dist.destroy_process_group()


def _open_mb(root, cache, clip_name, whole):
    """Memory [MB] that opening the training split of a warm cache (and reading one batch) adds to a child process:
    the growth of its anonymous resident memory (RssAnon: what the process itself allocated, not the page cache of
    the memory-mapped files, which the kernel reclaims). With `whole`, the split's arrays are also read into memory,
    as the previous whole-dataset cache did on every open."""
    code = f"""
import sys
import numpy as np
sys.path.insert(0, {str(ROOT)!r})
import clip_vendor, data
anon = lambda: next(int(ln.split()[1]) for ln in open("/proc/self/status") if ln.startswith("RssAnon:"))  # kB
clip = clip_vendor.FrozenCLIP({clip_name!r})
base = anon()
ds = data.WindowDataset({str(root)!r}, "train", data.WindowConfig(), clip, cache_dir={str(cache)!r})
assert ds.built == 0, "the cache must be warm"
ds.batch(np.arange(min(256, len(ds))))
if {whole}:
    ds.imu, ds.video_emb, ds.text_emb, ds.labels
print(anon() - base, len(ds))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    kb, windows = map(int, out.stdout.split()[-2:])
    return {"mb": round(kb / 1024, 1), "windows": windows}


def bench_cache(cfg: BenchConfig, work: Path) -> dict:
    """The per-recording cache on --cache-recordings recordings of --cache-minutes: cold build, the build after one
    recording is added, the warm open, the peak memory of opening the training split, and a cold build shared by 2
    processes (frames each embedded)."""
    root = work / "cache-data"
    scfg = world.SynthConfig(recordings=cfg.cache_recordings, minutes=cfg.cache_minutes, width=32, height=32)
    world.synthesize(root, scfg)
    clip, window = CountingCLIP(cfg.clip), data.WindowConfig()

    def timed_build(cache):
        frames, start = clip.frames, time.perf_counter()
        built = data.build_cache(root, window, clip, cache)
        return {"recordings": built, "frames": clip.frames - frames, "seconds": round(time.perf_counter() - start, 1)}

    cold = timed_build(work / "cache")
    start = time.perf_counter()
    ds = data.WindowDataset(root, "all", window, clip, cache_dir=work / "cache")
    warm_open = time.perf_counter() - start
    plan, _, _, record = world.synthesize_recording(scfg, cfg.cache_recordings)  # one more recording
    data.write_recording(root / world.recording_name(plan), **record)
    added = timed_build(work / "cache")
    memory = {"open": _open_mb(root, work / "cache", cfg.clip, False),
              "open_and_read_whole_split": _open_mb(root, work / "cache", cfg.clip, True)}
    with tempfile.TemporaryDirectory() as out:
        torch.multiprocessing.spawn(_build_share, args=(root, work / "cache-2", cfg.clip, out), nprocs=2)
        ranks = [json.loads((Path(out) / f"rank{r}.json").read_text()) for r in range(2)]
    return {"recordings": cfg.cache_recordings, "minutes": cfg.cache_minutes, "windows": len(ds),
            "cold_build": cold, "warm_open_seconds": round(warm_open, 2), "after_adding_one": added,
            "cold_per_recording_seconds": round(cold["seconds"] / cfg.cache_recordings, 2),
            "train_split_memory": memory, "two_processes": ranks}


def bench_train_step(cfg: BenchConfig) -> dict:
    """Ours: encoder forward/backward on cached embeddings. Official design: CLIP towers inside the step."""
    torch.manual_seed(0)
    clip = clip_vendor.FrozenCLIP(cfg.clip)
    B, D = cfg.train_batch, clip.embed_dim
    encoder = IMUEncoder(IMUEncoderConfig(embed_dim=D))
    opt = torch.optim.Adam(encoder.parameters(), lr=2e-4)
    imu = torch.randn(B, 6, 1000)  # a 5 s window at 200 Hz
    cached = {"video": torch.randn(B, D), "text": torch.randn(B, D)}
    frames = np.random.default_rng(0).integers(0, 256, (B, 48, 48, 3), dtype=np.uint8)
    tokens = clip_vendor.tokenize([f"c walks along the path number {i}" for i in range(B)])

    def step(targets):
        loss, _ = multimodal_loss(encoder(imu), targets, 0.1, gather=False)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def official_step():
        with torch.no_grad():  # the frozen towers, run on every window of every step
            targets = {"video": clip.model.encode_image(clip.preprocess(frames)),
                       "text": clip.model.encode_text(tokens)}
        step(targets)

    ours = seconds_per_call(lambda: step(cached), cfg.steps)
    official = seconds_per_call(official_step, max(1, cfg.steps // 2))
    return {"batch": B, "ours_ms": round(ours * 1e3, 1), "official_design_ms": round(official * 1e3, 1),
            "speedup": round(official / ours, 1)}


def bench_retrieval(cfg: BenchConfig) -> dict:
    """Run in a child process: its peak RSS (ru_maxrss) is then the retrieval's, inputs included."""
    code = f"""
import json, resource, sys, time, torch
sys.path.insert(0, {str(ROOT)!r})
from evaluate import retrieval_ranks, rank_metrics
torch.manual_seed(0)
n, d = {cfg.pool}, 512
q = torch.randn(n, d)
c = q + 0.5 * torch.randn(n, d)  # a noisy copy: ranks spread over the pool
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.perf_counter()
metrics = rank_metrics(retrieval_ranks(q, c))
seconds = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({{"pool": n, "seconds": round(seconds, 1), "peak_rss_mb": round(peak / 1024),
                  "peak_over_inputs_mb": round((peak - base) / 1024), "MRR": round(metrics["MRR"], 4)}}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def bench_world(cfg: BenchConfig, work: Path) -> dict:
    """Oracle and trained IMU->video MRR on the test split of the default dataset (see the module docstring)."""
    from evaluate import chance_metrics, group_ids, rank_metrics, retrieval_ranks
    root = Path(cfg.world_data) if cfg.world_data else work / "world-data"
    if not cfg.world_data:
        world.synthesize(root, world.SynthConfig())
    clip = clip_vendor.FrozenCLIP(cfg.clip)
    train, test = (data.WindowDataset(root, split, data.WindowConfig(), clip) for split in ("train", "test"))
    groups = group_ids(test.video_emb)  # windows that share their frame are all right (evaluate.py's protocol)
    chance = chance_metrics(torch.bincount(groups)[groups], len(groups))["MRR"]
    report = {"test_windows": len(test), "chance_mrr": round(chance, 4), "oracle_mrr": {}}
    scenes = [np.array([r.split("_", 1)[-1] for r in ds.recording_ids]) for ds in (train, test)]  # syn007_street
    keys = {"activity": (train.labels, test.labels), "scene": scenes,
            "activity_in_scene": [np.char.add(s, ds.labels.astype(str)) for s, ds in zip(scenes, (train, test))]}
    for name, (k_train, k_test) in keys.items():
        k_train, k_test = np.asarray(k_train), np.asarray(k_test)
        means = {k: train.video_emb[k_train == k].mean(axis=0) for k in set(k_train.tolist())}
        queries = np.stack([means[k] for k in k_test.tolist()])  # (N, D) predicted frame embeddings
        ranks = retrieval_ranks(queries, test.video_emb, groups, groups)  # (N,)
        report["oracle_mrr"][name] = round(rank_metrics(ranks)["MRR"], 4)
        if name == "activity":  # which activities the view gives away across scenes
            rr = 1.0 / ranks.numpy()  # (N,) reciprocal ranks
            report["activity_oracle_mrr_by_activity"] = {
                train.class_names[k]: round(float(rr[k_test == k].mean()), 4) for k in np.unique(k_test)}
    unit = train.video_emb / np.linalg.norm(train.video_emb, axis=1, keepdims=True)  # (N, D) as retrieval sees them
    centred = unit - unit.mean(axis=0)
    explained = lambda key: 1 - sum(((centred[key == k] - centred[key == k].mean(0)) ** 2).sum()  # noqa: E731
                                    for k in set(key.tolist())) / (centred ** 2).sum()
    report["train_variance_explained"] = {name: round(float(explained(np.asarray(k))), 3)
                                          for name, (k, _) in keys.items()}
    report["recordings_per_scene"] = {ds.split: {s: sum(r.endswith("_" + s) for r in set(ds.recording_ids))
                                                 for s in world.SCENES} for ds in (train, test)}
    rec = np.asarray(test.recording_ids)  # test recordings are not in train: the mean of its other test windows
    same = (rec[:, None] == rec[None]) & ~np.eye(len(rec), dtype=bool)  # (N, N)
    queries = same @ test.video_emb / np.maximum(same.sum(axis=1, keepdims=True), 1)
    ranks = retrieval_ranks(queries, test.video_emb, groups, groups)
    report["oracle_mrr"]["recording"] = round(rank_metrics(ranks)["MRR"], 4)
    runs = []
    for seed in range(cfg.world_seeds):
        run = work / f"world-run-s{seed}"
        subprocess.run([sys.executable, str(ROOT / "train.py"), "--modalities", "imu,video", "--data", str(root),
                        "--out", str(run), "--seed", str(seed), "--epochs", str(cfg.world_epochs)], check=True,
                       stdout=subprocess.DEVNULL)
        scores = {}
        for task in ("retrieval", "probe"):
            subprocess.run([sys.executable, str(ROOT / "evaluate.py"), "--task", task, "--checkpoint",
                            str(run / "best.pt"), "--out", str(run / f"eval-{task}")], check=True,
                           stdout=subprocess.DEVNULL)
            scores[task] = json.loads((run / f"eval-{task}" / "metrics.json").read_text())
        runs.append(scores)
    report["trained"] = {"seeds": cfg.world_seeds, "epochs": cfg.world_epochs, "runs": runs}
    return report


def bench_decode(work: Path) -> dict:
    """The Ego4D importer's decoder (PyAV, in-process) on a 1920x1080 30 fps H.264 video of 10 s, kept at 10 fps
    and 224 px as the default import does: source frames decoded per second, one process."""
    import av
    from sources import ego4d
    mp4, (h, w), n = work / "decode.mp4", (1080, 1920), 300
    with av.open(str(mp4), "w") as container:
        stream = container.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        y, x = np.mgrid[0:h, 0:w]
        for k in range(n):  # a moving texture: every frame differs
            image = np.stack([(x + 7 * k) % 256, (y + 3 * k) % 256, (x + y + 11 * k) % 256], -1).astype(np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode())
    start = time.perf_counter()
    frames = ego4d._decode_video(mp4, 224, work)
    seconds = time.perf_counter() - start
    return {"source": f"{w}x{h} at 30 fps, {n} frames", "kept_frames": len(frames), "seconds": round(seconds, 2),
            "source_frames_per_s": round(n / seconds, 1)}


# Ego4D's published figures behind the projection (docs/scale.md): hours of video with IMU (Ego4D, CVPR 2022,
# Table 1: "IMU 836" hours) and narration density (section 4: "13.2 sentences per minute of video").
EGO4D_IMU_HOURS, EGO4D_NARRATIONS_PER_MIN = 836, 13.2


def ego4d_projection(report: dict) -> dict:
    """Ego4D's IMU subset, projected from the published hours and narration density and the rates measured above:
    windows (one per narration), frames and disk of the imported recordings at 10 and 2 fps, the cache's disk and
    its build time on this machine (one CLIP image per window, each distinct narration once)."""
    hours, windows = EGO4D_IMU_HOURS, EGO4D_IMU_HOURS * 60 * EGO4D_NARRATIONS_PER_MIN
    frame_bytes, window_bytes = 224 * 224 * 3, 4 * (6 * 1000 + 2 * 512)  # uint8 frame; IMU + 2 embeddings float32
    out = {"hours": hours, "windows": round(windows)}
    for fps in (10, 2):
        out[f"frames_at_{fps}fps"] = round(hours * 3600 * fps)
        out[f"recordings_disk_tb_at_{fps}fps"] = round(hours * 3600 * fps * frame_bytes / 1e12, 2)
    out["cache_disk_gb"] = round(windows * window_bytes / 1e9, 1)
    if "clip" in report:
        out["cache_build_hours_here"] = round((windows / report["clip"]["images_per_s"] + windows /
                                               report["clip"]["texts_per_s"]) / 3600, 1)  # at most: every text new
    if "decode" in report:
        out["decode_hours_one_process"] = round(hours * 3600 * 30 / report["decode"]["source_frames_per_s"] / 3600)
    return out


def bench_quickstart(work: Path) -> dict:
    """The README's main command in a fresh directory: once cold (dataset + cache built), once warm."""
    env = dict(os.environ, IMU2CLIP_DATA=str(work / "quickstart-data"))
    result = {}
    for run in ("cold", "warm"):
        shutil.rmtree(work / "runs", ignore_errors=True)  # train from scratch both times
        start = time.perf_counter()
        for cmd in QUICKSTART:
            subprocess.run(cmd, cwd=work, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        result[f"{run}_seconds"] = round(time.perf_counter() - start, 1)
    metrics = json.loads((work / "runs/imu-video-text/eval/metrics.json").read_text())
    result["evaluate_reported_clip"] = metrics.get("clip", {}).get("weights_source")
    return result


RESULT_MODELS = ("imu,video", "imu,text", "imu,video,text")  # trained by --results; the last is the main model
RESULT_DIRECTIONS = ("text->imu", "imu->video", "text->video via imu")  # retrieval rows per model
METRICS = ("R@1", "R@10", "R@50", "MRR", "median_rank")


def bench_results(cfg: BenchConfig, work: Path):
    """Train and evaluate every model over the seeds (each run's stderr in a .log beside it).
    Returns (the markdown tables, {"runs": every metrics.json, "timings": seconds per run})."""
    runs, timings = {}, []
    for modalities in RESULT_MODELS:
        for seed in range(cfg.results_seeds):
            out = work / "results" / f"{modalities.replace(',', '-')}-seed{seed}"
            train = [sys.executable, str(ROOT / "train.py"), "--modalities", modalities, "--seed", str(seed),
                     "--clip", cfg.clip, "--out", str(out)]
            train += ["--data", cfg.results_data] if cfg.results_data else []
            train += ["--epochs", str(cfg.results_epochs)] if cfg.results_epochs else []
            fractions = cfg.results_fractions if modalities == RESULT_MODELS[-1] else (1.0,)
            task = "all" if modalities == RESULT_MODELS[-1] else "pretrained"  # from scratch once is enough
            evaluate = [sys.executable, str(ROOT / "evaluate.py"), "--task", task, "--checkpoint",
                        str(out / "best.pt"), "--seed", str(seed), "--seeds", "1", "--train-fraction",
                        *map(str, fractions), "--out", str(out / "eval")]
            evaluate += ["--steps", str(cfg.results_steps)] if cfg.results_steps else []
            seconds = {}
            for name, cmd in (("train", train), ("evaluate", evaluate)):
                log = out.with_name(f"{out.name}-{name}.log")
                log.parent.mkdir(parents=True, exist_ok=True)
                start = time.perf_counter()
                with open(log, "w") as f:
                    if subprocess.run(cmd, cwd=work, stdout=subprocess.DEVNULL, stderr=f).returncode:
                        sys.exit(f"benchmark: {name} failed for {modalities} seed {seed}; see {log}")
                seconds[name] = round(time.perf_counter() - start, 1)
            print(f"benchmark: results {modalities} seed {seed}: {seconds} s", file=sys.stderr)
            runs.setdefault(modalities, []).append(json.loads((out / "eval" / "metrics.json").read_text()))
            timings.append({"modalities": modalities, "seed": seed, **seconds})
    return results_markdown(runs), {"runs": runs, "timings": timings}


def _pm(values):
    """mean ± sample std of a list of numbers (the mean alone for one value), 3 decimals."""
    v = np.asarray(values, dtype=np.float64)
    return f"{v.mean():.3f} ± {v.std(ddof=1):.3f}" if len(v) > 1 else f"{v[0]:.3f}"


def results_markdown(runs: dict) -> str:
    """The README's results: {modalities: [evaluate.py's metrics.json, one per seed]} -> markdown tables."""
    main = runs[RESULT_MODELS[-1]]
    first, r0, a0 = main[0], main[0]["retrieval"], main[0]["activity"]
    lines = [f"Measured by `python tests/benchmark.py --results`: mean ± std over {len(main)} seeds (each seed "
             f"trains the model and fits its classifiers); CLIP {first['clip']['name']} "
             f"({first['clip']['weights_source']}); chance is exact for each row's ground truth.", ""]
    if first["clip"]["random_init_warning"]:
        lines += [f"> **{first['clip']['random_init_warning']}.** Transitivity needs CLIP's image-text alignment, "
                  f"which random-init towers do not have: offline, `text->video via imu` of `imu,video` sits at "
                  f"chance.", ""]
    lines += [f"#### Retrieval ({r0['windows']} test windows of {r0['recordings']} recordings, all as candidates)",
              "", "| model | direction | " + " | ".join(METRICS) + " |", "|---" * (len(METRICS) + 2) + "|"]
    for modalities, reports in runs.items():
        for d in RESULT_DIRECTIONS:
            lines.append(f"| {modalities} | {d} | " + " | ".join(
                _pm([r["retrieval"]["directions"][d][k] for r in reports]) for k in METRICS) + " |")
    clip_own = r0["directions"]["text->video (clip)"]
    lines.append("| CLIP itself | text->video (clip) | " + " | ".join(f"{clip_own[k]:.3f}" for k in METRICS) + " |")
    for d in RESULT_DIRECTIONS:
        lines.append(f"| chance | {d} | " + " | ".join(f"{r0['directions'][d]['chance'][k]:.3f}" for k in METRICS)
                     + " |")
    variants = list(a0["variants"])
    lines += ["", f"#### Activity recognition (test accuracy; {len(a0['class_names'])} classes, {a0['test_windows']} "
              f"test windows, all training labels)", "", "| model | " + " | ".join(variants) + " |",
              "|---" * (len(variants) + 1) + "|"]
    for modalities, reports in runs.items():  # from scratch does not depend on the model: run with the main one
        lines.append(f"| {modalities} | " + " | ".join(
            _pm([r["activity"]["variants"][v]["accuracy"] for r in reports])
            if v in reports[0]["activity"]["variants"] else "-" for v in variants) + " |")
    lines.append(f"| chance | uniform {a0['chance']['uniform_accuracy']:.3f}, majority class "
                 f"{a0['chance']['majority_accuracy']:.3f} |" + " |" * (len(variants) - 1))
    curves = a0["label_efficiency"]
    lines += ["", f"#### Label efficiency of `{RESULT_MODELS[-1]}` (test accuracy vs fraction of training labels)", "",
              "| fraction | " + " | ".join(curves) + " |", "|---" * (len(curves) + 1) + "|"]
    for f in a0["train_fractions"]:
        lines.append(f"| {f} | " + " | ".join(
            _pm([r["activity"]["label_efficiency"][v][str(f)]["accuracy"] for r in main]) for v in curves) + " |")
    return "\n".join(lines)


def main(argv=None):
    cfg = parse_args(argv)
    if cfg.results:
        with tempfile.TemporaryDirectory(prefix="imu2clip-results-") as tmp:
            start = time.perf_counter()
            text, raw = bench_results(cfg, Path(cfg.workdir or tmp).resolve())
            raw["total_seconds"] = round(time.perf_counter() - start, 1)
        data.atomic_write(Path(cfg.out), lambda tmp: tmp.write_text(json.dumps(raw, indent=2) + "\n"))
        print(text)
        print(f"benchmark: results in {raw['total_seconds']} s; raw numbers and timings in {cfg.out}", file=sys.stderr)
        return
    report = {"date": time.strftime("%Y-%m-%d"), "cpus": os.cpu_count(), "torch": torch.__version__,
              "threads": torch.get_num_threads()}
    with tempfile.TemporaryDirectory(prefix="imu2clip-bench-") as tmp:
        work = Path(cfg.workdir or tmp)
        work.mkdir(parents=True, exist_ok=True)
        steps = [("clip", lambda: bench_clip(cfg)), ("synth", lambda: bench_synth(work)),
                 ("train_step", lambda: bench_train_step(cfg)), ("retrieval_100k", lambda: bench_retrieval(cfg)),
                 ("decode", lambda: bench_decode(work))]
        if not cfg.skip_cache:
            steps.append(("cache", lambda: bench_cache(cfg, work)))
        if cfg.world:
            steps = [("world", lambda: bench_world(cfg, work))]
        elif not cfg.skip_quickstart:  # the data path then reads the quickstart's warm cache
            steps += [("quickstart", lambda: bench_quickstart(work)),
                      ("data_path", lambda: bench_data_path(work / "quickstart-data", cfg.clip))]
        else:
            steps.append(("data_path", lambda: bench_data_path(work / "synthetic", cfg.clip)))
        for name, fn in steps:
            print(f"benchmark: {name} ...", file=sys.stderr)
            report[name] = fn()
            print(f"benchmark: {name} = {json.dumps(report[name])}", file=sys.stderr)
    if not cfg.world:
        report["ego4d_projection"] = ego4d_projection(report)
    report["max_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    text = json.dumps(report, indent=2)
    data.atomic_write(Path(cfg.out), lambda tmp: tmp.write_text(text + "\n"))
    print(text)


if __name__ == "__main__":
    main()
