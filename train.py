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
atomically, holding OUT/.lock meanwhile (one run per OUT; a new run there starts by removing the earlier run's
checkpoints). A non-finite loss or validation metric stops the run at once (exit code 1) without writing a checkpoint;
so does Ctrl-C (exit code 130; --resume continues from the last checkpoint).
Every flag comes from TrainConfig below; `python train.py --help` lists them.
"""
import argparse
import contextlib
import io
import json
import math
import os
import signal
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
    epochs: int = flag(10, "passes over the training split", at_least=1)
    batch_size: int = flag(64, "windows per step and process; the negatives are the global batch (x processes)",
                           at_least=2)
    lr: float = flag(2e-4, "peak learning rate; official code", above=0)
    weight_decay: float = flag(0.0, "AdamW's decoupled weight decay of the weight matrices and conv kernels (not of "
                                    "tau, biases, norms); 0 = the official code's plain Adam", at_least=0)
    warmup_steps: int = flag(0, "linear learning-rate warm-up steps", at_least=0)
    cosine: bool = flag(False, "cosine decay of the learning rate to 0 after the warm-up (else constant)")
    grad_clip: float = flag(1.0, "clip the global gradient norm to this (ours, not in the paper); 0 = no clipping",
                            at_least=0)
    window_sec: float = flag(5.0, "IMU window length in seconds; paper: 5 s", above=0, at_most=3600)
    rate_hz: float = flag(200.0, "IMU resampled to this rate; Ego4D's IMU is about 200 Hz", above=0, at_most=1e4)
    windows: str = flag("narration", "narration: one window per narration | sliding: a sliding window (no text)",
                        choices=("narration", "sliding"))
    video_mode: str = flag("clip_1frame", "clip_1frame: middle frame | clip_avg_frames: mean of first/middle/last",
                           choices=("clip_1frame", "clip_avg_frames"))
    clip: str = flag("ViT-B/32", "frozen CLIP model; paper: ViT-B/32 ('tiny' for smoke runs)")
    clip_weights: str = flag("", "CLIP weights file; '' = clip_vendor's default (random-init when offline)")
    require_pretrained: bool = flag(False, "fail when the CLIP weights are missing, instead of random-init towers")
    temperature: float = flag(0.1, "softmax temperature tau (paper and official code: 0.1); the initial value "
                                   "if learned")
    learn_temperature: bool = flag(True, "learn tau, log-parametrised and clamped to [0.01, 1] (official: fixed)")
    same_padding: bool = flag(True, "encoder: pad the convs so short windows survive (ours; official: no padding)")
    relu: bool = flag(False, "encoder: a ReLU after each conv (ours; official: none)")
    conv_bias: bool = flag(False, "encoder: conv biases (ours; official: none)")
    projection: bool = flag(False, "encoder: a Linear after the GRU (ours; official: the hidden state is the output)")
    seed: int = flag(0, "seeds the encoder's initialisation and each epoch's shuffle", at_least=0)
    device: str = flag("auto", "auto (cuda when available) | cpu | cuda | cuda:N")
    resume: bool = flag(False, "continue from OUT/checkpoint.pt (same flags, --epochs may grow)")
    log_every: int = flag(20, "steps between progress lines", at_least=1)


def parse_args(argv=None) -> TrainConfig:
    """TrainConfig from the command line; ValueError (one line) for flags that no run can combine."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    data.add_flags(parser, TrainConfig)
    cfg = data.config_from(TrainConfig, parser.parse_args(argv))  # each number within its flag's bound
    if "text" in parse_modalities(cfg.modalities) and cfg.windows == "sliding":
        raise ValueError("--windows sliding has no narrations; use --modalities imu,video or --windows narration")
    cfg.clip_weights = os.path.realpath(cfg.clip_weights) if cfg.clip_weights else ""  # compared on --resume
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


# ----- The main path: processes -> CLIP -> data -> encoder -> resume -> the loop --------------------------------------

@data.command
def main(argv=None):
    cfg = parse_args(argv)
    targets = parse_modalities(cfg.modalities)
    out = Path(cfg.out or "runs/" + "-".join(["imu"] + targets))
    with processes(cfg.device) as (rank, world, device):  # under torchrun: one process group
        shared(world, lambda: data.lock_out(out) if rank == 0 else None)  # rank 0 writes OUT; refused: all stop
        ckpt = load_checkpoint(out / "checkpoint.pt") if cfg.resume else None  # a bad one fails before any work
        clip = rank0_first(rank, world, lambda: FrozenCLIP(cfg.clip, weights=cfg.clip_weights or None, device=device,
                                                           require_pretrained=cfg.require_pretrained))
        torch.manual_seed(cfg.seed)
        encoder = IMUEncoder(IMUEncoderConfig(embed_dim=clip.embed_dim, **{k: getattr(cfg, k) for k in ENCODER_FLAGS}))
        window = data.WindowConfig(window_sec=cfg.window_sec, rate_hz=cfg.rate_hz, mode=cfg.windows,
                                   video_mode=cfg.video_mode)
        check_window(encoder, window)
        train_set, val_set = load_splits(cfg, window, clip, rank, world)
        cfg.data = str(train_set.root)  # recorded resolved, compared on --resume
        trainable = Trainable(encoder, Temperature(cfg.temperature, learn=cfg.learn_temperature)).to(device)
        optimizer = make_optimizer(trainable, cfg)
        run = {"config": asdict(cfg), "window": asdict(window), "encoder_config": asdict(encoder.cfg),  # in config.json
               "clip": clip.info(), "data": cfg.data, "processes": world, "recordings": {  # and every checkpoint
                   "train": sorted(set(train_set.recording_ids)), "val": sorted(set(val_set.recording_ids))}}
        start_epoch, step, best = resume(ckpt, cfg, run, clip, trainable, optimizer, out) if ckpt else (0, 0, -1.0)
        model = trainable  # under torchrun, wrapped so that backward averages the gradients over processes:
        if world > 1:
            model = DistributedDataParallel(trainable, device_ids=[device.index] if device.type == "cuda" else None)
        log = Log(out, rank, cfg, step, header={  # log.jsonl started (or trimmed), config.json, the first line
            "event": "start", **run, "encoder_parameters": num_parameters(encoder),
            "device": str(device), "train_windows": len(train_set), "val_windows": len(val_set),
            "resumed_at_epoch": start_epoch or None})
        B, steps_per_epoch = cfg.batch_size, len(train_set) // world // cfg.batch_size  # (epoch_batches: drop_last)
        progress = Progress(log, out, cfg, world, start_epoch, step, steps_per_epoch)
        signal.signal(signal.SIGINT, progress.interrupted)  # Ctrl-C: one line saying where the run stopped
        for epoch in range(start_epoch, cfg.epochs):
            for idx in epoch_batches(len(train_set), B, cfg.seed, epoch, rank, world):
                lr = set_lr(optimizer, get_lr(step, cfg, progress.total_steps))
                loss, _, _ = batch_loss(model, train_set.batch(idx), targets, device)
                if not torch.isfinite(loss):  # data.command: one error line, exit code 1
                    raise FloatingPointError(f"non-finite loss at epoch {epoch + 1} step {step + 1} (is --lr too "
                                             f"high?); stopped with {out}/checkpoint.pt and best.pt as they were")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()  # under torchrun, DDP averages the gradients over processes here
                if cfg.grad_clip > 0:
                    nn.utils.clip_grad_norm_(trainable.parameters(), cfg.grad_clip)
                optimizer.step()
                trainable.temperature.clamp_()  # keep a learned tau in [0.01, 1]
                step += 1
                progress.update(loss, epoch, step, lr)  # a line every --log-every steps and at the epoch's end
            metrics = validate(trainable, val_set, targets, B * world, device)
            if bad := [k for k, v in metrics.items() if not math.isfinite(v)]:  # as a non-finite loss
                raise FloatingPointError(f"non-finite {', '.join(bad)} in the validation of epoch {epoch + 1}; "
                                         f"stopped with {out}/checkpoint.pt and best.pt as they were")
            is_best, best = metrics["val_mrr"] > best, max(best, metrics["val_mrr"])
            ckpt = {"version": CHECKPOINT_VERSION, **run, "imu_encoder": encoder.state_dict(),
                    "temperature": trainable.temperature.state_dict(), "optimizer": optimizer.state_dict(),
                    "step": step, "epoch": epoch + 1, "best_val_mrr": best, "metrics": metrics}
            progress.end_epoch(ckpt, is_best, targets, clip)  # the validation line, best.pt, checkpoint.pt
        if start_epoch >= cfg.epochs:
            log({"event": "done", "epoch": start_epoch}, f"already trained for {start_epoch} epochs; pass a larger "
                "--epochs to continue")


# ----- Helpers of the main path: set-up, resume, progress and the end of an epoch -------------------------------------

def make_optimizer(trainable: Trainable, cfg: TrainConfig):
    """AdamW that decays only the weight matrices and conv kernels (parameters of 2 or more dimensions, nanoGPT's
    rule): pulling log(1/tau) towards 0 would push tau towards 1, and biases and norms have no reason to shrink.
    With --weight-decay 0 (the default) both groups take plain Adam's steps, the official optimizer's."""
    params = list(trainable.parameters())
    return torch.optim.AdamW([{"params": [p for p in params if p.dim() >= 2], "weight_decay": cfg.weight_decay},
                              {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}], lr=cfg.lr)


def set_lr(optimizer, lr: float) -> float:
    for group in optimizer.param_groups:
        group["lr"] = lr
    return lr


def check_window(encoder: IMUEncoder, window) -> None:
    if encoder.output_length(window.num_samples) < 1:
        raise ValueError(f"--window-sec {window.window_sec:g} at --rate-hz {window.rate_hz:g} gives "
                         f"{window.num_samples} samples; the encoder needs at least {encoder.min_samples()}")


def load_splits(cfg: TrainConfig, window, clip, rank: int, world: int):
    """The train and val WindowDatasets. Rank 0 makes the default dataset if needed; then every process embeds its
    share of the missing cache entries, and all wait for all before reading them (alone: the same, in one go)."""
    if not cfg.data:  # the default: the synthetic world, made on first use (train.py's one import of sources/)
        from sources.world import default_dataset
        cfg.data = str(rank0_first(rank, world, default_dataset))
    root = Path(os.path.realpath(cfg.data))  # (not Path.resolve: a symlink loop makes it raise RuntimeError)
    shared(world, lambda: data.build_cache(root, window, clip, rank=rank, world=world))  # also the barrier
    train_set, val_set = (data.WindowDataset(root, split, window, clip) for split in ("train", "val"))
    if len(train_set) < cfg.batch_size * world:
        raise data.DataError(f"{root}: {len(train_set)} training windows of {cfg.window_sec:g} s, fewer than one "
                             f"batch of {cfg.batch_size * world}; use a smaller --batch-size")
    return train_set, val_set


@contextlib.contextmanager
def processes(device_name: str):
    """(rank, world size, device) of this process. Under torchrun (WORLD_SIZE > 1): one process group, gloo on CPU,
    nccl on GPU (one GPU per process, LOCAL_RANK), destroyed on the way out, even after an error."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0")) if world > 1 else 0
    device = resolve_device(device_name)
    if device.type == "cuda":  # one GPU per process
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")) if device.index is None else device.index)
        torch.cuda.set_device(device)
    if world > 1:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    try:
        yield rank, world, device
    finally:
        if world > 1:
            dist.destroy_process_group()


def shared(world: int, work):
    """work() on this process; under torchrun every process then hears whether any failed (an all_gather, which is
    also a barrier), so that all stop with the first error instead of some waiting forever."""
    try:
        result, error = work(), None
    except Exception as e:  # noqa: BLE001 (raised below, once every process has heard of it)
        result, error = None, e
    if world > 1:
        errors = [None] * world
        dist.all_gather_object(errors, None if error is None else str(error))
        if error is None and any(errors):
            raise ValueError(next(e for e in errors if e))
    if error is not None:
        raise error
    return result


def rank0_first(rank: int, world: int, work):
    """work() on rank 0 first (it fetches the CLIP weights, or makes the default dataset), then on the others (they
    read what rank 0 made). An error on rank 0 stops every rank."""
    result = shared(world, work if rank == 0 else lambda: None)
    return result if rank == 0 else work()


def check_resumable(ckpt: dict, cfg: TrainConfig, run: dict, clip, path: Path) -> None:
    """ValueError unless the checkpoint was trained with this CLIP, the same run-defining flags, process count and
    train/val recordings: else the schedule, the shuffle, the global batch or the split would silently change."""
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
    if ckpt.get("processes") != run["processes"]:
        raise ValueError(f"{path}: trained on {ckpt.get('processes', 'an unrecorded number of')} process(es), not "
                         f"{run['processes']}; resume under the same process count, or start a new --out")
    for part in ("train", "val"):
        changed = sorted(set(ckpt["recordings"][part]) ^ set(run["recordings"][part]))  # added or removed since
        if changed:
            raise ValueError(f"{path}: {len(changed)} {part} recording(s) added to or removed from the dataset since "
                             f"({', '.join(changed[:3])}{', ...' if len(changed) > 3 else ''}); resume on the same "
                             f"recordings, or start a new --out")


def resume(ckpt: dict, cfg: TrainConfig, run: dict, clip, trainable: Trainable, optimizer, out: Path):
    """--resume: the checkpoint's weights and optimizer state loaded in place -> (epoch, step, best val MRR)."""
    try:
        check_resumable(ckpt, cfg, run, clip, out / "checkpoint.pt")
    except (AttributeError, KeyError, TypeError) as e:  # a checkpoint edited by hand: its record is not a run's
        raise ValueError(f"{out / 'checkpoint.pt'}: cannot resume from it ({e!r})") from None
    try:
        trainable.encoder.load_state_dict(ckpt["imu_encoder"])
        trainable.temperature.load_state_dict(ckpt["temperature"])
        optimizer.load_state_dict(ckpt["optimizer"])
        return ckpt["epoch"], ckpt["step"], ckpt["best_val_mrr"]
    except (KeyError, RuntimeError, ValueError) as e:  # a checkpoint edited or damaged by hand
        raise ValueError(f"{out / 'checkpoint.pt'}: cannot resume from it ({e!r})") from None


def logged_step(line: str) -> float:
    """The step of a log.jsonl line (0 for the start record), inf for a line cut short by a kill."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError:
        return math.inf
    return record.get("step", 0) if isinstance(record, dict) else math.inf


class Log:
    """Progress lines on stderr and their records in OUT/log.jsonl, from rank 0 only. Opening it starts the run's
    log: a fresh run replaces an earlier one's, --resume drops what a killed run logged after its checkpoint (at
    `step`); then config.json gets the header record, and the header's line is logged."""

    def __init__(self, out: Path, rank: int, cfg: TrainConfig, step: int, header: dict):
        self.path, self.rank = out / "log.jsonl", rank
        if rank == 0:
            checkpoints = [out / "checkpoint.pt", out / "best.pt"]
            if not cfg.resume and any(p.exists() for p in [*checkpoints, self.path]):  # a fresh run starts afresh:
                print(f"note: replacing the earlier run in {out} (--resume continues it)", file=sys.stderr)
                for p in checkpoints:  # no checkpoint of the earlier run stays beside this run's log and config
                    p.unlink(missing_ok=True)

            def kept(tmp):  # (atomic_write refuses a log.jsonl that is not a regular file before it is read)
                lines = self.path.read_text().splitlines() if cfg.resume and self.path.exists() else []
                tmp.write_text("".join(f"{line}\n" for line in lines if logged_step(line) <= step))
            data.atomic_write(self.path, kept)
            data.atomic_write(out / "config.json", lambda tmp: tmp.write_text(json.dumps(header, indent=2)))
        clip = header["clip"]  # clip_vendor has already warned loudly if its towers are random-init
        self(header, f"train: {cfg.modalities} | CLIP {clip['name']} ({clip['weights_source'].upper()}, sha256 "
             f"{clip['sha256']}) | {header['train_windows']} train / {header['val_windows']} val windows from "
             f"{cfg.data} | encoder {header['encoder_parameters']:,} parameters | {header['processes']} "
             f"process(es) on {header['device']}")

    def __call__(self, record: dict, line: str) -> None:
        if self.rank == 0:
            print(line, file=sys.stderr, flush=True)
            with open(self.path, "a") as f:
                f.write(json.dumps(record) + "\n")


class Progress:
    """Where the run is. The training-loss lines (the mean loss over the global batch since the last line, the
    windows/s and the ETA), one every cfg.log_every steps and one at the end of each epoch; every process calls
    update (the mean is reduced). Then each epoch's validation line and checkpoints, and on Ctrl-C one line saying
    where the run stopped and what --resume continues from."""

    def __init__(self, log: Log, out: Path, cfg: TrainConfig, world: int, epoch: int, step: int, steps_per_epoch: int):
        self.log, self.out, self.cfg, self.world, self.steps_per_epoch = log, out, cfg, world, steps_per_epoch
        self.epoch, self.step, self.saved, self.losses = epoch, step, epoch, []  # saved: epochs in checkpoint.pt
        self.total_steps, self.clock = steps_per_epoch * cfg.epochs, (time.time(), step)

    def update(self, loss, epoch: int, step: int, lr: float) -> None:
        self.epoch, self.step = epoch, step
        self.losses.append(loss.detach())
        if step % self.cfg.log_every and step % self.steps_per_epoch:
            return
        mean = torch.stack(self.losses).mean()  # this process's rows only
        if self.world > 1:
            dist.all_reduce(mean)  # the sum over processes
        mean, self.losses = mean.item() / self.world, []
        windows = self.cfg.batch_size * self.world
        rate = (step - self.clock[1]) * windows / (time.time() - self.clock[0])  # windows/s
        minutes, seconds = divmod(round((self.total_steps - step) * windows / rate), 60)
        eta = f"{minutes // 60:02d}:{minutes % 60:02d}:{seconds:02d}"  # hours may pass 24
        self.log({"event": "train", "epoch": epoch + 1, "step": step, "loss": mean, "lr": lr, "windows_per_s": rate},
                 f"epoch {epoch + 1}/{self.cfg.epochs} step {step}/{self.total_steps} loss {mean:.4f} lr {lr:.2e} "
                 f"{rate:,.0f} windows/s ETA {eta}")

    def end_epoch(self, ckpt: dict, is_best: bool, targets: list, clip) -> None:
        """The validation line, then best.pt (when best) and checkpoint.pt: a kill in between repeats this epoch."""
        m, epoch = ckpt["metrics"], ckpt["epoch"]
        retrieval = "".join(f" | imu->{t} R@1 {m[f'imu_to_{t}_R@1']:.3f}" for t in targets)
        self.log({"event": "val", "epoch": epoch, "step": ckpt["step"], "best": is_best, "clip_weights":
                  clip.weights_source, **m}, f"epoch {epoch}/{self.cfg.epochs} val loss {m['val_loss']:.4f} MRR "
                 f"{m['val_mrr']:.3f} (chance {m['chance_mrr']:.3f}){retrieval}" + (" *best*" if is_best else ""))
        if self.log.rank == 0:
            if is_best:
                save_checkpoint(self.out / "best.pt", ckpt)
            save_checkpoint(self.out / "checkpoint.pt", ckpt)
        self.epoch = self.saved = epoch  # (the next epoch's index)

    def interrupted(self, signum, frame):
        """The SIGINT handler while training: a KeyboardInterrupt that data.command prints as one line, exit 130."""
        raise KeyboardInterrupt(f"in epoch {self.epoch + 1} at step {self.step}; " + (
            f"{self.out}/checkpoint.pt holds epoch {self.saved}, and --resume continues from it" if self.saved
            else "no epoch had finished"))


def save_checkpoint(path: Path, ckpt: dict) -> None:
    """Atomically; only tensors and plain containers inside, so that weights_only loading works. Serialised in memory
    first, then written as bytes: a full disk is an OSError naming the file (torch.save to a file: a RuntimeError)."""
    buffer = io.BytesIO()
    torch.save(ckpt, buffer)
    data.atomic_write(path, lambda tmp: tmp.write_bytes(buffer.getbuffer()))


if __name__ == "__main__":
    main()
