"""Train the IMU2CLIP IMU encoder (Moon et al., 2022, sections 3.1-3.2) against a frozen CLIP's embeddings.

The IMU encoder (model.py) is trained with the symmetric InfoNCE loss (loss.py) to land next to the frozen CLIP
image embedding of the window's video and/or the CLIP text embedding of its narration. CLIP never runs inside a
training step: data.WindowDataset caches its embeddings once per dataset. One command per variant of the paper:

    python train.py --modalities imu,video,text        # IMU <-> video <-> text (the paper's main model)
    python train.py --modalities imu,video             # IMU <-> video
    python train.py --modalities imu,text --epochs 20  # IMU <-> text
    python train.py --resume                           # continue runs/imu-video-text from its checkpoint.pt
    torchrun --nproc_per_node=4 train.py --modalities imu,video,text   # 4 processes, negatives pooled

Writes OUT/checkpoint.pt (latest), OUT/best.pt (best validation MRR), OUT/config.json and OUT/log.jsonl.
Every flag comes from TrainConfig below; `python train.py --help` lists them.
"""
import argparse
import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DistributedSampler

import data
from clip_vendor import FrozenCLIP
from evaluate import chance_metrics, group_ids, rank_metrics, retrieval_ranks
from loss import Temperature, multimodal_loss, parse_modalities
from model import CHECKPOINT_VERSION, IMUEncoder, IMUEncoderConfig, load_checkpoint, num_parameters, resolve_device

TARGETS = {"video": "video_emb", "text": "text_emb"}  # target modality -> WindowDataset batch key
CHOICES = {"windows": ("narration", "sliding"), "video_mode": ("clip_1frame", "clip_avg_frames")}  # flag values
# Flags that must be the same when resuming, for the resumed run to equal an uninterrupted one.
RESUME_MUST_MATCH = ("modalities", "data", "batch_size", "lr", "weight_decay", "warmup_steps", "cosine", "grad_clip",
                     "window_sec", "rate_hz", "windows", "video_mode", "temperature", "learn_temperature", "seed")


@dataclass
class TrainConfig:
    modalities: str = "imu,video,text"  # imu and its targets: imu,video | imu,text | imu,video,text
    data: str = ""  # dataset root (a directory of recordings); "" = the synthetic dataset, made on first use
    out: str = ""  # output directory; "" = runs/<modalities>, e.g. runs/imu-video-text
    epochs: int = 10  # passes over the training split
    batch_size: int = 64  # windows per step and process; the negatives are the global batch (x processes)
    lr: float = 2e-4  # peak learning rate; official code
    weight_decay: float = 0.0  # AdamW's decoupled weight decay; 0 = the official code's plain Adam
    warmup_steps: int = 0  # linear learning-rate warm-up steps
    cosine: bool = False  # cosine decay of the learning rate to 0 after the warm-up (else constant)
    grad_clip: float = 1.0  # clip the global gradient norm to this (ours, not in the paper); 0 = no clipping
    window_sec: float = 5.0  # IMU window length in seconds; paper: 5 s
    rate_hz: float = 200.0  # IMU resampled to this rate; Ego4D's IMU is about 200 Hz
    windows: str = "narration"  # narration: one window per narration | sliding: a sliding window (no text)
    video_mode: str = "clip_1frame"  # clip_1frame: middle frame | clip_avg_frames: mean of first/middle/last
    clip: str = "ViT-B/32"  # frozen CLIP model; paper: ViT-B/32 ("tiny" for smoke runs)
    clip_weights: str = ""  # CLIP weights file; "" = clip_vendor's default (random-init when offline)
    require_pretrained: bool = False  # fail when the CLIP weights are missing, instead of random-init towers
    temperature: float = 0.1  # softmax temperature tau (paper: 0.1); the initial value if learned
    learn_temperature: bool = False  # learn tau, log-parametrised and clamped to [0.01, 1]
    seed: int = 0  # seeds the encoder's initialisation and each epoch's shuffle
    device: str = "auto"  # auto (cuda when available) | cpu | cuda | cuda:N
    resume: bool = False  # continue from OUT/checkpoint.pt (same flags, --epochs may grow)
    log_every: int = 20  # steps between progress lines


def parse_args(argv=None) -> TrainConfig:
    """TrainConfig from the command line: one --flag per field; unknown flags exit with code 2."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    help_text = data.field_help(TrainConfig)
    for f in fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        if f.type is bool:
            parser.add_argument(flag, action="store_true", help=help_text.get(f.name))
        else:
            parser.add_argument(flag, type=f.type, default=f.default, choices=CHOICES.get(f.name),
                                help=help_text.get(f.name))
    return TrainConfig(**vars(parser.parse_args(argv)))


# ----------------------------------------------------------------------------------------------------------------
# Small pieces of the loop
# ----------------------------------------------------------------------------------------------------------------

def get_lr(step: int, cfg: TrainConfig, total_steps: int) -> float:
    """Linear warm-up to cfg.lr, then constant or (--cosine) a cosine decay to 0 at total_steps."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    if not cfg.cosine:
        return cfg.lr
    progress = min(1.0, (step - cfg.warmup_steps) / max(1, total_steps - cfg.warmup_steps))
    return cfg.lr * 0.5 * (1.0 + math.cos(math.pi * progress))


def epoch_batches(n: int, batch_size: int, seed: int, epoch: int, rank: int = 0, world: int = 1) -> list:
    """This process's batches of window indices for one epoch.

    The shuffle depends only on (seed, epoch), so a run resumed at an epoch boundary sees the same batches. Under
    torchrun, DistributedSampler gives each process its own shard. The last incomplete batch is dropped (drop_last):
    every process must take the same number of steps, and a small batch has few negatives; the shuffle changes
    every epoch, so the dropped windows change too. Validation uses every window.
    """
    sampler = DistributedSampler(range(n), num_replicas=world, rank=rank, shuffle=True, seed=seed, drop_last=True)
    sampler.set_epoch(epoch)
    idx = np.fromiter(iter(sampler), dtype=np.int64)  # (n // world,) this process's shard
    return [idx[i:i + batch_size] for i in range(0, len(idx) - batch_size + 1, batch_size)]


class Trainable(nn.Module):
    """What training updates: the IMU encoder and the temperature. One module, so DDP averages both gradients."""

    def __init__(self, encoder: IMUEncoder, temperature: Temperature):
        super().__init__()
        self.encoder = encoder
        self.temperature = temperature

    def forward(self, imu):
        return self.encoder(imu), self.temperature()  # (B, D), () tau


def batch_loss(model, batch: dict, targets: list, device, gather: bool = True):
    """Loss of one WindowDataset.batch: the sum over targets of the symmetric InfoNCE.
    Returns (loss, {target: loss}, IMU embeddings (B, D))."""
    imu_emb, tau = model(torch.as_tensor(batch["imu"]).to(device))  # (B, 6, T) -> (B, D), () tau
    target_emb = {m: torch.as_tensor(batch[TARGETS[m]]).to(device) for m in targets}  # cached CLIP (B, D) each
    loss, parts = multimodal_loss(imu_emb, target_emb, tau, gather=gather)
    return loss, parts, imu_emb


@torch.no_grad()
def evaluate(trainable: Trainable, dataset, targets: list, batch_size: int, device) -> dict:
    """Validation on every window of `dataset`: the loss in batches of `batch_size` (the last one smaller),
    and IMU->target retrieval among all windows (evaluate.py's metrics). `val_mrr`, the mean MRR over targets, picks best.pt."""
    was_training = trainable.training
    trainable.eval()
    n, total, emb = len(dataset), 0.0, []
    for i in range(0, n, batch_size):
        batch = dataset.batch(np.arange(i, min(n, i + batch_size)))
        loss, _, imu_emb = batch_loss(trainable, batch, targets, device, gather=False)  # every process does it all
        total += loss.item() * len(imu_emb)
        emb.append(imu_emb.cpu())  # (b, D)
    imu = torch.cat(emb)  # (N, D)
    metrics = {"val_loss": total / n, "val_windows": n}
    for m in targets:
        target = getattr(dataset, TARGETS[m])  # (N, D) cached CLIP embeddings
        groups = group_ids(target)  # windows with identical targets (e.g. the same narration) are all right
        for name, value in rank_metrics(retrieval_ranks(imu, target, groups, groups)).items():
            metrics[f"imu_to_{m}_{name}"] = value
    metrics["val_mrr"] = sum(metrics[f"imu_to_{m}_MRR"] for m in targets) / len(targets)
    metrics["chance_mrr"] = chance_metrics(n)["MRR"]
    trainable.train(was_training)
    return metrics


def save_checkpoint(path: Path, run, epoch: int, step: int, metrics: dict, best: float) -> None:
    """The checkpoint dict (format in model.load_checkpoint); only tensors and plain containers, so weights_only loading works."""
    ckpt = {"version": CHECKPOINT_VERSION, "imu_encoder": run.trainable.encoder.state_dict(),
            "encoder_config": asdict(run.trainable.encoder.cfg), "temperature": run.trainable.temperature.state_dict(),
            "optimizer": run.optimizer.state_dict(), "step": step, "epoch": epoch, "best_val_mrr": best,
            "config": asdict(run.cfg), "window": asdict(run.window_cfg), "data": str(run.root),
            "clip": run.clip.info(), "metrics": metrics}
    data.atomic_write(path, lambda tmp: torch.save(ckpt, tmp))


# ----------------------------------------------------------------------------------------------------------------
# Setup: processes, data, model, resume
# ----------------------------------------------------------------------------------------------------------------

@dataclass
class Run:
    """Everything the training loop needs, built by `prepare`."""
    cfg: TrainConfig
    targets: list  # target modalities, e.g. ["video", "text"]
    root: Path  # dataset root
    out: Path  # output directory
    clip: FrozenCLIP  # only its identity (info) is used here; the embeddings are cached
    window_cfg: "data.WindowConfig"
    train_set: "data.WindowDataset"
    val_set: "data.WindowDataset"
    trainable: Trainable  # the encoder and the temperature
    model: nn.Module  # `trainable`, wrapped in DistributedDataParallel under torchrun
    optimizer: torch.optim.Optimizer
    rank: int
    world: int
    device: torch.device
    start_epoch: int = 0
    step: int = 0
    best: float = -1.0  # best validation MRR so far


def init_processes(device: str):
    """(rank, world size, device). Under torchrun (WORLD_SIZE > 1): one process group, gloo on CPU, nccl on GPU."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", local_rank)  # one GPU per process
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if world > 1:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return (dist.get_rank() if world > 1 else 0), world, device


def rank0_first(rank: int, world: int, work):
    """work() on rank 0 first (it fetches the CLIP weights and builds the embedding cache), then on the others
    (they read them). An error on rank 0 is sent to every rank, so they all stop instead of waiting forever."""
    result, error = None, None
    if rank == 0:
        try:
            result = work()
        except Exception as e:  # noqa: BLE001 (re-raised below, after the other ranks are told)
            error = e
    if world > 1:
        message = [str(error) if error else None]
        dist.broadcast_object_list(message, src=0)  # also the barrier
        if message[0] and rank != 0:
            raise ValueError(message[0])
    if error:
        raise error
    return result if rank == 0 else work()


def load_splits(cfg: TrainConfig, root: Path, window_cfg, clip, batch_size: int):
    """The train and val WindowDatasets, with a clear error when there is nothing to train or validate on."""
    data.list_recordings(root)  # DataError when the directory holds no recordings
    train_set = data.WindowDataset(root, "train", window_cfg, clip)
    val_set = data.WindowDataset(root, "val", window_cfg, clip)
    if len(train_set) < batch_size or len(val_set) == 0:
        raise data.DataError(f"{root}: {len(train_set)} training and {len(val_set)} validation windows of "
                             f"{cfg.window_sec:g} s, need at least {batch_size} and 1; is --window-sec longer than "
                             f"the recordings, or --batch-size too big? (window report: {train_set.report})")
    return train_set, val_set


def check_resumable(ckpt: dict, cfg: TrainConfig, clip, path: Path) -> None:
    """ValueError unless the checkpoint was trained with this CLIP and the same run-defining flags."""
    missing = [k for k in ("temperature", "best_val_mrr") if k not in ckpt]
    if missing:
        raise ValueError(f"{path}: cannot be resumed, it has no {', '.join(missing)} (not written by train.py?)")
    if ckpt["clip"].get("fingerprint") != clip.info()["fingerprint"]:
        old = ckpt["clip"]
        raise ValueError(f"{path}: trained with CLIP {old.get('name')} ({old.get('weights_source')}, sha256 "
                         f"{old.get('sha256')}), but this run uses {clip.name} ({clip.weights_source}, sha256 "
                         f"{clip.sha256}); pass the same --clip/--clip-weights or a new --out")
    if cfg.cosine and ckpt["config"].get("epochs") != cfg.epochs:
        raise ValueError(f"{path}: trained with --cosine over {ckpt['config'].get('epochs')} epochs; a different "
                         f"--epochs would change the learning-rate schedule, so resume with the same --epochs")
    for name in RESUME_MUST_MATCH:
        if ckpt["config"].get(name) != getattr(cfg, name):
            raise ValueError(f"{path}: trained with --{name.replace('_', '-')} {ckpt['config'].get(name)}, "
                             f"not {getattr(cfg, name)}; resume with the same flags")


def prepare(cfg: TrainConfig, rank: int, world: int, device: torch.device) -> Run:
    """Check the flags, load the cached windows (rank 0 first), build the encoder and optimizer, and resume.
    Bad input raises ValueError (data.DataError included) with a one-line message."""
    targets = parse_modalities(cfg.modalities)
    if "text" in targets and cfg.windows == "sliding":
        raise ValueError("--windows sliding has no narrations; use --modalities imu,video or --windows narration")
    if cfg.window_sec <= 0 or cfg.epochs < 1 or cfg.batch_size < 2 or cfg.log_every < 1:
        raise ValueError("--window-sec must be > 0, --epochs >= 1, --batch-size >= 2 (a contrastive batch) "
                         "and --log-every >= 1")
    out = Path(cfg.out or "runs/" + "-".join(["imu"] + targets))
    ckpt = None
    if cfg.resume:
        ckpt = load_checkpoint(out / "checkpoint.pt")
    if cfg.clip_weights:  # absolute, so that evaluate.py finds the file from any directory
        cfg.clip_weights = str(Path(cfg.clip_weights).resolve())
    clip = rank0_first(rank, world, lambda: FrozenCLIP(cfg.clip, weights=cfg.clip_weights or None, device=str(device),
                                                       require_pretrained=cfg.require_pretrained))
    if ckpt is not None:
        check_resumable(ckpt, cfg, clip, out / "checkpoint.pt")
    window_cfg = data.WindowConfig(window_sec=cfg.window_sec, rate_hz=cfg.rate_hz, mode=cfg.windows,
                                   video_mode=cfg.video_mode)

    def load():
        root = (Path(cfg.data) if cfg.data else data.default_dataset()).resolve()  # recorded in the checkpoint
        return (root, *load_splits(cfg, root, window_cfg, clip, cfg.batch_size * world))
    root, train_set, val_set = rank0_first(rank, world, load)

    torch.manual_seed(cfg.seed)
    encoder = IMUEncoder(IMUEncoderConfig(embed_dim=clip.embed_dim))
    T = train_set.imu.shape[-1]  # samples per window
    if encoder.output_length(T) < 1:
        raise ValueError(f"--window-sec {cfg.window_sec:g} at --rate-hz {cfg.rate_hz:g} gives {T} samples; "
                         f"the encoder needs at least {encoder.min_samples()}")
    trainable = Trainable(encoder, Temperature(cfg.temperature, learn=cfg.learn_temperature)).to(device)
    optimizer = torch.optim.AdamW(trainable.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    run = Run(cfg, targets, root, out, clip, window_cfg, train_set, val_set, trainable, trainable, optimizer,
              rank, world, device)
    if ckpt is not None:
        trainable.encoder.load_state_dict(ckpt["imu_encoder"])
        trainable.temperature.load_state_dict(ckpt["temperature"])
        optimizer.load_state_dict(ckpt["optimizer"])
        run.start_epoch, run.step, run.best = ckpt["epoch"], ckpt["step"], ckpt["best_val_mrr"]
    if world > 1:
        run.model = DistributedDataParallel(trainable, device_ids=[device.index] if device.type == "cuda" else None)
    return run


# ----------------------------------------------------------------------------------------------------------------
# Logging (rank 0 only)
# ----------------------------------------------------------------------------------------------------------------

def log(run: Run, record: dict, line: str) -> None:
    """A progress line on stderr and a JSON record in OUT/log.jsonl, from rank 0."""
    if run.rank != 0:
        return
    print(line, file=sys.stderr, flush=True)
    with open(run.out / "log.jsonl", "a") as f:
        f.write(json.dumps(record) + "\n")


def start_log(run: Run) -> None:
    """OUT/config.json, the first log record, and a banner naming the CLIP weights (loud when random-init)."""
    if run.rank != 0:
        return
    run.out.mkdir(parents=True, exist_ok=True)
    if not run.cfg.resume:
        if (run.out / "checkpoint.pt").exists():
            print(f"note: starting afresh in {run.out}, replacing its earlier run (--resume continues it)",
                  file=sys.stderr)
        (run.out / "log.jsonl").unlink(missing_ok=True)  # a fresh run starts a fresh log
    clip = run.clip.info()
    header = {"event": "start", "config": asdict(run.cfg), "window": asdict(run.window_cfg),
              "encoder_config": asdict(run.trainable.encoder.cfg),
              "encoder_parameters": num_parameters(run.trainable.encoder), "clip": clip, "data": str(run.root),
              "processes": run.world, "device": str(run.device), "train_windows": len(run.train_set),
              "val_windows": len(run.val_set), "resumed_at_epoch": run.start_epoch if run.cfg.resume else None}
    data.atomic_write(run.out / "config.json", lambda tmp: tmp.write_text(json.dumps(header, indent=2, default=str)))
    if clip["weights_source"] == "random-init":
        bar = "!" * 100
        print(f"{bar}\n!!! CLIP {clip['name']} is RANDOM-INIT (no pretrained weights): the encoder learns to match a "
              f"random network's\n!!! embeddings. Fine for a smoke test; meaningless for the paper's results.\n{bar}",
              file=sys.stderr)
    log(run, header, f"train: {','.join(['imu'] + run.targets)} | CLIP {clip['name']} ({clip['weights_source']}, "
        f"sha256 {clip['sha256']}) | {len(run.train_set)} train / {len(run.val_set)} val windows from {run.root} | "
        f"encoder {num_parameters(run.trainable.encoder):,} parameters | {run.world} process(es) on {run.device}")


def log_progress(run: Run, epoch: int, loss: float, lr: float, total_steps: int, clock: tuple) -> None:
    """epoch, step, loss, windows/s and ETA; `clock` = (time, step) when this process started training."""
    rate = (run.step - clock[1]) * run.cfg.batch_size * run.world / (time.time() - clock[0])  # windows/s
    eta = (total_steps - run.step) * run.cfg.batch_size * run.world / rate  # seconds
    log(run, {"event": "train", "epoch": epoch + 1, "step": run.step, "loss": loss, "lr": lr, "windows_per_s": rate},
        f"epoch {epoch + 1}/{run.cfg.epochs} step {run.step}/{total_steps} loss {loss:.4f} lr {lr:.2e} "
        f"{rate:,.0f} windows/s ETA {int(eta // 3600)}:{int(eta % 3600 // 60):02d}:{int(eta % 60):02d}")


def log_validation(run: Run, epoch: int, metrics: dict, is_best: bool) -> None:
    retrieval = "".join(f" | imu->{m} R@1 {metrics[f'imu_to_{m}_R@1']:.3f}" for m in run.targets)
    log(run, {"event": "val", "epoch": epoch + 1, "step": run.step, "best": is_best,
              "clip_weights": run.clip.weights_source, **metrics},
        f"epoch {epoch + 1}/{run.cfg.epochs} val loss {metrics['val_loss']:.4f} MRR {metrics['val_mrr']:.3f} "
        f"(chance {metrics['chance_mrr']:.3f}){retrieval}" + (" *best*" if is_best else ""))


# ----------------------------------------------------------------------------------------------------------------
# The training loop
# ----------------------------------------------------------------------------------------------------------------

def train(run: Run) -> dict:
    """The loop: Adam steps on cached embeddings, validation + checkpoint each epoch. Returns the last metrics."""
    cfg, B = run.cfg, run.cfg.batch_size
    steps_per_epoch = len(epoch_batches(len(run.train_set), B, cfg.seed, 0, run.rank, run.world))
    total_steps, clock, metrics = steps_per_epoch * cfg.epochs, (time.time(), run.step), {}
    if run.start_epoch >= cfg.epochs:
        log(run, {"event": "done", "epoch": run.start_epoch}, f"already trained for {run.start_epoch} epochs; "
            f"pass a larger --epochs to continue")
    for epoch in range(run.start_epoch, cfg.epochs):
        losses = []
        for i, idx in enumerate(epoch_batches(len(run.train_set), B, cfg.seed, epoch, run.rank, run.world)):
            lr = get_lr(run.step, cfg, total_steps)
            for group in run.optimizer.param_groups:
                group["lr"] = lr
            loss, _, _ = batch_loss(run.model, run.train_set.batch(idx), run.targets, run.device)
            run.optimizer.zero_grad(set_to_none=True)
            loss.backward()  # under torchrun, DDP averages the gradients over processes here
            if cfg.grad_clip > 0:
                nn.utils.clip_grad_norm_(run.trainable.parameters(), cfg.grad_clip)
            run.optimizer.step()
            run.trainable.temperature.clamp_()  # keep a learned tau in [0.01, 1]
            run.step += 1
            losses.append(loss.detach())
            if run.step % cfg.log_every == 0 or i == steps_per_epoch - 1:
                log_progress(run, epoch, mean_over_processes(torch.stack(losses).mean(), run.world), lr,
                             total_steps, clock)
                losses = []
        metrics = evaluate(run.trainable, run.val_set, run.targets, B * run.world, run.device)
        is_best = metrics["val_mrr"] > run.best
        run.best = max(run.best, metrics["val_mrr"])
        if run.rank == 0:  # best.pt first: a kill in between then only repeats this epoch on --resume
            if is_best:
                save_checkpoint(run.out / "best.pt", run, epoch + 1, run.step, metrics, run.best)
            save_checkpoint(run.out / "checkpoint.pt", run, epoch + 1, run.step, metrics, run.best)
        log_validation(run, epoch, metrics, is_best)
    return metrics


def mean_over_processes(value: torch.Tensor, world: int) -> float:
    """The mean of a scalar over all processes: each process's loss covers only its own rows."""
    if world > 1:
        value = value.clone()
        dist.all_reduce(value)
        value /= world
    return value.item()


def main(argv=None):
    cfg = parse_args(argv)
    rank, world = 0, 1
    try:
        try:
            rank, world, device = init_processes(cfg.device)
            run = prepare(cfg, rank, world, device)
        except ValueError as e:  # bad flags or data (data.DataError is a ValueError): one line, exit code 2
            if rank == 0:
                print(f"error: {e}", file=sys.stderr)
            sys.exit(2)
        start_log(run)
        train(run)
    finally:
        if world > 1:
            dist.destroy_process_group()


if __name__ == "__main__":
    main()
