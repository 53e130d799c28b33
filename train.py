"""Train the IMU2CLIP IMU encoder (Moon et al., 2022, sections 3.1-3.2) against a frozen CLIP's embeddings.

The IMU encoder (model.py) is trained with the symmetric InfoNCE loss (loss.py) to land next to the frozen CLIP
image embedding of the window's video and/or the CLIP text embedding of its narration. CLIP never runs inside a
training step: data.WindowDataset caches its embeddings once per dataset. One command per variant of the paper:

    python train.py --modalities imu,video,text        # IMU <-> video <-> text (the paper's main model)
    python train.py --modalities imu,video             # IMU <-> video
    python train.py --modalities imu,text --epochs 20  # IMU <-> text
    python train.py --resume                           # continue runs/imu-video-text from its checkpoint.pt
    torchrun --nproc_per_node=4 train.py --modalities imu,video,text   # 4 processes, negatives pooled

Writes OUT/checkpoint.pt (latest), OUT/best.pt (best validation MRR), OUT/config.json and OUT/log.jsonl, each
atomically. A non-finite loss stops the run at once (exit code 1), leaving both checkpoints as they were.
Every flag comes from TrainConfig below; `python train.py --help` lists them.
"""
import argparse
import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DistributedSampler

import data
from clip_vendor import FrozenCLIP
from data import flag
from evaluate import chance_metrics, group_ids, rank_metrics, retrieval_ranks
from loss import Temperature, multimodal_loss, parse_modalities
from model import CHECKPOINT_VERSION, IMUEncoder, IMUEncoderConfig, load_checkpoint, num_parameters, resolve_device

TARGETS = {"video": "video_emb", "text": "text_emb"}  # target modality -> WindowDataset batch key
ENCODER_FLAGS = ("same_padding", "relu", "conv_bias", "projection")  # IMUEncoderConfig fields set by flags
# The flags --resume may change; every other one must match, for the resumed run to equal an uninterrupted one.
RESUME_MAY_CHANGE = ("out", "epochs", "clip_weights", "require_pretrained", "device", "resume", "log_every")


@dataclass
class TrainConfig:
    modalities: str = flag("imu,video,text", "imu and its targets: imu,video | imu,text | imu,video,text")
    data: str = flag("", "dataset root (a directory of recordings); '' = the synthetic dataset, made on first use")
    out: str = flag("", "output directory; '' = runs/<modalities>, e.g. runs/imu-video-text")
    epochs: int = flag(10, "passes over the training split")
    batch_size: int = flag(64, "windows per step and process; the negatives are the global batch (x processes)")
    lr: float = flag(2e-4, "peak learning rate; official code")
    weight_decay: float = flag(0.0, "AdamW's decoupled weight decay; 0 = the official code's plain Adam")
    warmup_steps: int = flag(0, "linear learning-rate warm-up steps")
    cosine: bool = flag(False, "cosine decay of the learning rate to 0 after the warm-up (else constant)")
    grad_clip: float = flag(1.0, "clip the global gradient norm to this (ours, not in the paper); 0 = no clipping")
    window_sec: float = flag(5.0, "IMU window length in seconds; paper: 5 s")
    rate_hz: float = flag(200.0, "IMU resampled to this rate; Ego4D's IMU is about 200 Hz")
    windows: str = flag("narration", "narration: one window per narration | sliding: a sliding window (no text)",
                        choices=("narration", "sliding"))
    video_mode: str = flag("clip_1frame", "clip_1frame: middle frame | clip_avg_frames: mean of first/middle/last",
                           choices=("clip_1frame", "clip_avg_frames"))
    clip: str = flag("ViT-B/32", "frozen CLIP model; paper: ViT-B/32 ('tiny' for smoke runs)")
    clip_weights: str = flag("", "CLIP weights file; '' = clip_vendor's default (random-init when offline)")
    require_pretrained: bool = flag(False, "fail when the CLIP weights are missing, instead of random-init towers")
    temperature: float = flag(0.1, "softmax temperature tau (paper and official code: 0.1); the initial value "
                                   "if learned")
    learn_temperature: bool = flag(True, "learn tau (official code), log-parametrised and clamped to [0.01, 1]")
    same_padding: bool = flag(True, "encoder: pad the convs so short windows survive (ours; official: no padding)")
    relu: bool = flag(False, "encoder: a ReLU after each conv (ours; official: none)")
    conv_bias: bool = flag(False, "encoder: conv biases (ours; official: none)")
    projection: bool = flag(False, "encoder: a Linear after the GRU (ours; official: the hidden state is the output)")
    seed: int = flag(0, "seeds the encoder's initialisation and each epoch's shuffle")
    device: str = flag("auto", "auto (cuda when available) | cpu | cuda | cuda:N")
    resume: bool = flag(False, "continue from OUT/checkpoint.pt (same flags, --epochs may grow)")
    log_every: int = flag(20, "steps between progress lines")


def parse_args(argv=None) -> TrainConfig:
    """TrainConfig from the command line; ValueError (one line) for values no run can use."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    data.add_flags(parser, TrainConfig)
    cfg = data.config_from(TrainConfig, parser.parse_args(argv))
    finite = all(math.isfinite(x) for x in (cfg.lr, cfg.weight_decay, cfg.grad_clip))
    if not (finite and cfg.lr > 0 and cfg.weight_decay >= 0 and cfg.grad_clip >= 0 and cfg.warmup_steps >= 0):
        raise ValueError("--lr must be finite and > 0; --weight-decay, --grad-clip and --warmup-steps finite and >= 0")
    positive = all(math.isfinite(x) and x > 0 for x in (cfg.window_sec, cfg.rate_hz))
    if not (positive and cfg.epochs >= 1 and cfg.batch_size >= 2 and cfg.log_every >= 1):
        raise ValueError("--window-sec and --rate-hz must be finite and > 0, --epochs >= 1, --batch-size >= 2 (a "
                         "contrastive batch) and --log-every >= 1")
    if "text" in parse_modalities(cfg.modalities) and cfg.windows == "sliding":
        raise ValueError("--windows sliding has no narrations; use --modalities imu,video or --windows narration")
    return cfg


def get_lr(step: int, cfg: TrainConfig, total_steps: int) -> float:
    """Linear warm-up to cfg.lr, then constant or (--cosine) a cosine decay to 0 at total_steps."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    if not cfg.cosine:
        return cfg.lr
    progress = min(1.0, (step - cfg.warmup_steps) / max(1, total_steps - cfg.warmup_steps))
    return cfg.lr * 0.5 * (1.0 + math.cos(math.pi * progress))


def epoch_batches(n: int, batch_size: int, seed: int, epoch: int, rank: int = 0, world: int = 1) -> list:
    """This process's batches of window indices for one epoch: a shuffle that depends only on (seed, epoch), so a
    resumed run sees the same batches, sharded by DistributedSampler under torchrun. The last incomplete batch is
    dropped: every process must take the same number of steps (the dropped windows change every epoch)."""
    sampler = DistributedSampler(range(n), num_replicas=world, rank=rank, shuffle=True, seed=seed, drop_last=True)
    sampler.set_epoch(epoch)
    idx = np.fromiter(iter(sampler), dtype=np.int64)  # (n // world,) this process's shard
    return [idx[i:i + batch_size] for i in range(0, len(idx) - batch_size + 1, batch_size)]


class Trainable(nn.Module):
    """What training updates: the IMU encoder and the temperature. One module, so DDP averages both gradients."""

    def __init__(self, encoder: IMUEncoder, temperature: Temperature):
        super().__init__()
        self.encoder, self.temperature = encoder, temperature

    def forward(self, imu):
        return self.encoder(imu), self.temperature()  # (B, D), () tau


def batch_loss(model, batch: dict, targets: list, device, gather: bool = True):
    """The symmetric InfoNCE of a WindowDataset.batch summed over targets: (loss, {target: loss}, IMU emb (B, D))."""
    imu_emb, tau = model(torch.as_tensor(batch["imu"]).to(device))  # (B, 6, T) -> (B, D), () tau
    target_emb = {m: torch.as_tensor(batch[TARGETS[m]]).to(device) for m in targets}  # cached CLIP (B, D) each
    loss, parts = multimodal_loss(imu_emb, target_emb, tau, gather=gather)
    return loss, parts, imu_emb


@torch.no_grad()
def validate(trainable: Trainable, dataset, targets: list, batch_size: int, device) -> dict:
    """The loss on every window of `dataset` (in batches, the last one smaller) and IMU->target retrieval among
    them (evaluate.py's metrics); `val_mrr`, the mean MRR over targets, picks best.pt."""
    trainable.eval()
    n, total, emb = len(dataset), 0.0, []
    for i in range(0, n, batch_size):
        loss, _, imu_emb = batch_loss(trainable, dataset.batch(np.arange(i, min(n, i + batch_size))), targets, device,
                                      gather=False)  # every process validates on all of it
        total += loss.item() * len(imu_emb)
        emb.append(imu_emb.cpu())  # (b, D)
    imu = torch.cat(emb)  # (N, D)
    metrics = {"val_loss": total / n, "val_windows": n}
    for m in targets:
        groups = group_ids(getattr(dataset, TARGETS[m]))  # windows with identical targets are all right
        for name, value in rank_metrics(retrieval_ranks(imu, getattr(dataset, TARGETS[m]), groups, groups)).items():
            metrics[f"imu_to_{m}_{name}"] = value
        metrics[f"chance_imu_to_{m}_MRR"] = chance_metrics(torch.bincount(groups)[groups], n)["MRR"]  # exact
    metrics["val_mrr"] = sum(metrics[f"imu_to_{m}_MRR"] for m in targets) / len(targets)
    metrics["chance_mrr"] = sum(metrics[f"chance_imu_to_{m}_MRR"] for m in targets) / len(targets)
    trainable.train()
    return metrics


def save_checkpoint(path: Path, ckpt: dict) -> None:
    """Atomically; only tensors and plain containers inside, so that weights_only loading works."""
    data.atomic_write(path, lambda tmp: torch.save(ckpt, tmp))


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


def check_resumable(ckpt: dict, cfg: TrainConfig, clip, path: Path) -> None:
    """ValueError unless the checkpoint was trained with this CLIP and the same run-defining flags."""
    if ckpt["clip"].get("fingerprint") != clip.fingerprint:
        raise ValueError(f"{path}: trained with CLIP {ckpt['clip'].get('fingerprint')}, not {clip.fingerprint}; pass "
                         f"the same --clip/--clip-weights or a new --out")
    if cfg.cosine and ckpt["config"].get("epochs") != cfg.epochs:
        raise ValueError(f"{path}: trained with --cosine over {ckpt['config'].get('epochs')} epochs; a different "
                         f"--epochs would change the learning-rate schedule, so resume with the same --epochs")
    for name in (k for k in asdict(cfg) if k not in RESUME_MAY_CHANGE):
        if ckpt["config"].get(name) != getattr(cfg, name):
            raise ValueError(f"{path}: trained with --{name.replace('_', '-')} {ckpt['config'].get(name)}, "
                             f"not {getattr(cfg, name)}; resume with the same flags")


def load_splits(cfg: TrainConfig, window, clip, world: int):
    """The train and val WindowDatasets, with a clear error when there is nothing to train or validate on."""
    root = Path(cfg.data or data.default_dataset()).resolve()
    train_set, val_set = (data.WindowDataset(root, split, window, clip) for split in ("train", "val"))
    if len(train_set) < cfg.batch_size * world:
        raise data.DataError(f"{root}: {len(train_set)} training windows of {cfg.window_sec:g} s, fewer than one "
                             f"batch of {cfg.batch_size * world}; use a smaller --batch-size")
    return train_set, val_set


# ----- The main path: processes -> CLIP -> datasets -> encoder and optimizer -> resume -> loop ------------------------

def logged_step(line: str) -> float:
    """The step of a log.jsonl line (0 for the start record), inf for a line cut short by a kill."""
    try:
        return json.loads(line).get("step", 0)
    except json.JSONDecodeError:
        return math.inf


def fail(rank: int, message: str, code: int):
    """One `error:` line (from rank 0 only) and exit `code`: 2 for bad input, 1 for a run that diverged."""
    if rank == 0:
        print(f"error: {message}", file=sys.stderr)
    sys.exit(code)


def main(argv=None):
    world = int(os.environ.get("WORLD_SIZE", "1"))  # > 1 under torchrun, which also sets RANK and LOCAL_RANK
    rank = int(os.environ.get("RANK", "0")) if world > 1 else 0
    try:
        try:
            cfg = parse_args(argv)
            targets = parse_modalities(cfg.modalities)
            out = Path(cfg.out or "runs/" + "-".join(["imu"] + targets))
            if out.exists() and not out.is_dir():
                raise ValueError(f"--out {out}: exists and is not a directory")
            ckpt = load_checkpoint(out / "checkpoint.pt") if cfg.resume else None
            cfg.clip_weights = str(Path(cfg.clip_weights).resolve()) if cfg.clip_weights else ""
            device = resolve_device(cfg.device)
            if device.type == "cuda":  # one GPU per process
                local_rank = int(os.environ.get("LOCAL_RANK", "0"))
                device = torch.device("cuda", local_rank if device.index is None else device.index)
                torch.cuda.set_device(device)
            if world > 1:  # under torchrun: one process group, gloo on CPU, nccl on GPU
                dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
            clip = rank0_first(rank, world, lambda: FrozenCLIP(
                cfg.clip, weights=cfg.clip_weights or None, device=device, require_pretrained=cfg.require_pretrained))
            torch.manual_seed(cfg.seed)
            encoder = IMUEncoder(IMUEncoderConfig(embed_dim=clip.embed_dim,
                                                  **{k: getattr(cfg, k) for k in ENCODER_FLAGS}))
            window = data.WindowConfig(window_sec=cfg.window_sec, rate_hz=cfg.rate_hz, mode=cfg.windows,
                                       video_mode=cfg.video_mode)
            if encoder.output_length(window.num_samples) < 1:
                raise ValueError(f"--window-sec {cfg.window_sec:g} at --rate-hz {cfg.rate_hz:g} gives "
                                 f"{window.num_samples} samples; the encoder needs at least {encoder.min_samples()}")
            train_set, val_set = rank0_first(rank, world, lambda: load_splits(cfg, window, clip, world))
            cfg.data = str(train_set.root)  # recorded resolved, compared on --resume
            if ckpt is not None:
                check_resumable(ckpt, cfg, clip, out / "checkpoint.pt")
            trainable = Trainable(encoder, Temperature(cfg.temperature, learn=cfg.learn_temperature)).to(device)
            optimizer = torch.optim.AdamW(trainable.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
            start_epoch, step, best = 0, 0, -1.0
            if ckpt is not None:
                try:
                    trainable.encoder.load_state_dict(ckpt["imu_encoder"])
                    trainable.temperature.load_state_dict(ckpt["temperature"])
                    optimizer.load_state_dict(ckpt["optimizer"])
                    start_epoch, step, best = ckpt["epoch"], ckpt["step"], ckpt["best_val_mrr"]
                except (KeyError, RuntimeError, ValueError) as e:  # a checkpoint edited or damaged by hand
                    raise ValueError(f"{out / 'checkpoint.pt'}: cannot resume from it ({e!r})") from None
        except ValueError as e:  # bad flags or data (data.DataError is a ValueError): one line, exit code 2
            fail(rank, str(e), 2)
        model = trainable  # under torchrun, wrapped so that backward averages the gradients over processes
        if world > 1:
            model = DistributedDataParallel(trainable, device_ids=[device.index] if device.type == "cuda" else None)
        run = {"config": asdict(cfg), "window": asdict(window), "encoder_config": asdict(encoder.cfg),
               "clip": clip.info(), "data": cfg.data, "recordings": {  # in config.json and every checkpoint
                   "train": sorted(set(train_set.recording_ids)), "val": sorted(set(val_set.recording_ids))}}
        header = {"event": "start", **run, "encoder_parameters": num_parameters(encoder), "processes": world,
                  "device": str(device), "train_windows": len(train_set), "val_windows": len(val_set),
                  "resumed_at_epoch": start_epoch or None}

        def log(record, line):
            if rank == 0:
                print(line, file=sys.stderr, flush=True)
                with open(out / "log.jsonl", "a") as f:
                    f.write(json.dumps(record) + "\n")

        if rank == 0:  # (atomic_write makes the --out directory)
            if not cfg.resume and (out / "log.jsonl").exists():  # a fresh run starts a fresh log
                print(f"note: replacing the earlier run in {out} (--resume continues it)", file=sys.stderr)
                (out / "log.jsonl").unlink()
            elif cfg.resume and (out / "log.jsonl").exists():  # what a killed run logged after its checkpoint goes
                kept = [line for line in (out / "log.jsonl").read_text().splitlines() if logged_step(line) <= step]
                data.atomic_write(out / "log.jsonl", lambda tmp: tmp.write_text("".join(f"{k}\n" for k in kept)))
            data.atomic_write(out / "config.json", lambda tmp: tmp.write_text(json.dumps(header, indent=2)))
        info = clip.info()  # clip_vendor has already warned loudly if its towers are random-init
        log(header, f"train: {cfg.modalities} | CLIP {info['name']} ({info['weights_source'].upper()}, sha256 "
            f"{info['sha256']}) | {len(train_set)} train / {len(val_set)} val windows from {cfg.data} | encoder "
            f"{num_parameters(encoder):,} parameters | {world} process(es) on {device}")

        # ---- the loop -----------------------------------------------------------------------------------------
        B, steps_per_epoch = cfg.batch_size, len(epoch_batches(len(train_set), cfg.batch_size, cfg.seed, 0, 0, world))
        total_steps, clock, losses = steps_per_epoch * cfg.epochs, (time.time(), step), []
        for epoch in range(start_epoch, cfg.epochs):
            for i, idx in enumerate(epoch_batches(len(train_set), B, cfg.seed, epoch, rank, world)):
                lr = get_lr(step, cfg, total_steps)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                loss, _, _ = batch_loss(model, train_set.batch(idx), targets, device)
                if not torch.isfinite(loss):
                    fail(rank, f"non-finite loss at epoch {epoch + 1} step {step + 1} (is --lr too high?); stopped "
                         f"with {out}/checkpoint.pt and best.pt as they were", 1)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()  # under torchrun, DDP averages the gradients over processes here
                if cfg.grad_clip > 0:
                    nn.utils.clip_grad_norm_(trainable.parameters(), cfg.grad_clip)
                optimizer.step()
                trainable.temperature.clamp_()  # keep a learned tau in [0.01, 1]
                step += 1
                losses.append(loss.detach())
                if step % cfg.log_every == 0 or i == steps_per_epoch - 1:
                    mean = torch.stack(losses).mean()  # this process's rows only
                    if world > 1:
                        dist.all_reduce(mean)  # the sum over processes
                    mean = mean.item() / world
                    rate = (step - clock[1]) * B * world / (time.time() - clock[0])  # windows/s
                    eta, losses = time.gmtime((total_steps - step) * B * world / rate), []
                    log({"event": "train", "epoch": epoch + 1, "step": step, "loss": mean, "lr": lr,
                         "windows_per_s": rate}, f"epoch {epoch + 1}/{cfg.epochs} step {step}/{total_steps} loss "
                        f"{mean:.4f} lr {lr:.2e} {rate:,.0f} windows/s ETA {time.strftime('%H:%M:%S', eta)}")
            metrics = validate(trainable, val_set, targets, B * world, device)
            is_best, best = metrics["val_mrr"] > best, max(best, metrics["val_mrr"])
            ckpt = {"version": CHECKPOINT_VERSION, **run, "imu_encoder": encoder.state_dict(),
                    "temperature": trainable.temperature.state_dict(), "optimizer": optimizer.state_dict(),
                    "step": step, "epoch": epoch + 1, "best_val_mrr": best, "metrics": metrics}
            retrieval = "".join(f" | imu->{m} R@1 {metrics[f'imu_to_{m}_R@1']:.3f}" for m in targets)
            log({"event": "val", "epoch": epoch + 1, "step": step, "best": is_best,
                 "clip_weights": clip.weights_source, **metrics},
                f"epoch {epoch + 1}/{cfg.epochs} val loss {metrics['val_loss']:.4f} MRR {metrics['val_mrr']:.3f} "
                f"(chance {metrics['chance_mrr']:.3f}){retrieval}" + (" *best*" if is_best else ""))
            if rank == 0:  # logged, then best.pt, then checkpoint.pt: a kill in between only repeats this epoch
                if is_best:
                    save_checkpoint(out / "best.pt", ckpt)
                save_checkpoint(out / "checkpoint.pt", ckpt)
        if start_epoch >= cfg.epochs:
            log({"event": "done", "epoch": start_epoch}, f"already trained for {start_epoch} epochs; pass a larger "
                "--epochs to continue")
    finally:
        if world > 1 and dist.is_initialized():  # not if the run failed before init_process_group
            dist.destroy_process_group()


if __name__ == "__main__":
    main()
