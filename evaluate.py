"""Evaluation of a trained IMU2CLIP encoder on the three tasks of the paper (Moon et al., 2022, section 4).

1. Text->IMU and IMU->Text retrieval (paper section 4.2), over the whole test split.
2. IMU->Video and Video->IMU retrieval (section 4.2), plus transitivity: Text->Video through the IMU space
   (score(text, window) = cos(text embedding, IMU embedding of the window), the right windows being those whose
   video is the narrated one) next to CLIP's own Text->Video (cos(text embedding, video embedding)).
3. Activity recognition (section 4.3): zero-shot (nearest CLIP text embedding of the class names), a linear probe
   on the frozen encoder, the fine-tuned encoder, and the same architecture trained from scratch, all on the same
   train split with early stopping on a stratified validation part of it.

Run:
    python evaluate.py --task all --checkpoint runs/imu-video-text/best.pt
    python evaluate.py --task retrieval --checkpoint runs/imu-video-text/best.pt --pool-size 300
    python evaluate.py --task finetune --checkpoint runs/imu-video-text/best.pt --labelled mine.npz --train-fraction 0.1

--task: `retrieval`; `zeroshot`; `probe` (the linear probe only); `finetune` (fine-tune and from scratch, same
budget); `all` (all of them). The dataset, the IMU rate and window length and the CLIP model come from the
checkpoint (--data overrides the dataset; --labelled takes activity labels from a labelled-IMU .npz, resampled to
the model's rate, any window length). Everything is written under --out (default CHECKPOINT_DIR/eval):
metrics.json, summary.md (the same numbers as markdown tables), retrieval_examples.png, text_queries.png and
confusion_<variant>.png. Reports say loudly when the CLIP towers are random-init.

Retrieval conventions (every direction, and the tests):
- Scores are cosine similarities. A query's rank is 1 + the number of *wrong* candidates whose score is >= the
  best score of a right candidate: ties are broken pessimistically, against the query, so a collapsed
  encoder (all embeddings equal) gets the worst rank rather than the best.
- Ground truth is many-to-one: a candidate is right for a query when both windows share a group. Text<->IMU
  groups windows with identical narrations (the text query is then literally the same query), IMU<->Video groups
  windows with identical video embeddings, Text->Video groups by either. Otherwise each window is its own group.
- `--pool-size K` averages over random pools of K windows instead of the whole split: each repeat shuffles the
  windows into pools of K (the leftover windows are queried against themselves plus random fillers, so every
  query is counted once per repeat and always sees K candidates). Chance levels are those of one right answer
  among the pool size.
"""
import argparse
import copy
import json
import sys
import textwrap
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont
from torch import nn

import data
from clip_vendor import FrozenCLIP
from loss import parse_modalities
from model import IMUEncoder, encoder_from_checkpoint, load_checkpoint, resolve_device
from world.preview import draw_signals

RECALL_AT = (1, 10, 50)  # the R@k reported for every retrieval direction (paper Tables 1-2)
METRIC_NAMES = tuple(f"R@{k}" for k in RECALL_AT) + ("MRR", "median_rank")  # retrieval metrics, table columns


# ======================================================================================
# Retrieval metrics: pure functions over two embedding matrices
# ======================================================================================


def retrieval_ranks(queries, candidates, query_groups=None, cand_groups=None, max_chunk_bytes=512 * 2**20):
    """Rank of the best right candidate of every query, 1-based, under cosine similarity.

    queries (Q, D) and candidates (C, D): float tensors or arrays. Candidate j is right for query i when
    cand_groups[j] == query_groups[i]; by default (Q == C) query i's only right candidate is candidate i.
    rank_i = 1 + #{wrong j : s_ij >= max over right j' of s_ij'}: ties count against the query.
    The score matrix is built max_chunk_bytes at a time (5 bytes per score), never whole.
    Returns an int64 tensor (Q,).
    """
    q = torch.as_tensor(queries, dtype=torch.float32).cpu()  # (Q, D), normalised chunk by chunk below
    cT = torch.as_tensor(candidates, dtype=torch.float32).cpu().T.clone(memory_format=torch.contiguous_format)
    cT /= cT.norm(dim=0).clamp(min=1e-12)  # (C, D) -> (D, C) unit columns: our own copy, in the fast layout
    Q, C = q.shape[0], cT.shape[1]
    if query_groups is None and cand_groups is None:
        if Q != C:
            raise ValueError(f"retrieval: {Q} queries but {C} candidates and no ground truth groups")
        query_groups = cand_groups = torch.arange(Q)
    qg = torch.as_tensor(query_groups, dtype=torch.int64).cpu()  # (Q,)
    cg = torch.as_tensor(cand_groups, dtype=torch.int64).cpu()  # (C,)
    # Members of every group, as a CSR over the candidates sorted by group.
    order = torch.argsort(cg, stable=True)  # (C,) candidate indices grouped
    uniq, counts = torch.unique_consecutive(cg[order], return_counts=True)
    starts = torch.cumsum(counts, 0) - counts  # (G,) first position of each group in `order`
    slot = torch.searchsorted(uniq, qg).clamp(max=len(uniq) - 1)  # (Q,) group slot of each query
    if not bool((uniq[slot] == qg).all()):
        raise ValueError("retrieval: some queries have no right candidate")
    n_right = counts[slot]  # (Q,) right candidates per query

    chunk = max(1, min(Q, max_chunk_bytes // (5 * C)))
    scores = torch.empty(chunk, C)  # (B, C) reused for every chunk
    at_or_above = np.empty((chunk, C), dtype=bool)
    ranks = torch.empty(Q, dtype=torch.int64)
    for a in range(0, Q, chunk):
        b = min(Q, a + chunk)
        s = torch.mm(F.normalize(q[a:b], dim=1), cT, out=scores[: b - a])  # (B, D) x (D, C) -> (B, C)
        rows, cols = _right_pairs(order, starts[slot[a:b]], n_right[a:b])  # (P,), (P,) right pairs
        right = s[rows, cols]  # (P,) scores of the right pairs
        best = torch.full((b - a,), -torch.inf).scatter_reduce(0, rows, right, "amax")  # (B,)
        # numpy counts booleans ~8x faster than torch's reductions on CPU.
        np.greater_equal(s.numpy(), best[:, None].numpy(), out=at_or_above[: b - a])
        n_at_or_above = torch.from_numpy(np.count_nonzero(at_or_above[: b - a], axis=1))  # (B,)
        n_right_tied = torch.bincount(rows, weights=(right >= best[rows]).double(), minlength=b - a)  # (B,)
        ranks[a:b] = 1 + n_at_or_above - n_right_tied.long()
    return ranks


def _right_pairs(order, first, n):
    """(row, column) of every right pair: row i owns the n[i] candidates order[first[i] : first[i] + n[i]]."""
    rows = torch.repeat_interleave(torch.arange(len(n)), n)  # (P,)
    offset = torch.arange(len(rows)) - torch.repeat_interleave(torch.cumsum(n, 0) - n, n)  # (P,) 0..n[i]-1
    return rows, order[torch.repeat_interleave(first, n) + offset]


def pooled_ranks(queries, candidates, groups, pool_size, repeats, seed):
    """Ranks within random pools of `pool_size` windows, to compare with numbers reported over fixed-size pools.

    queries (N, D) and candidates (N, D) are two views of the same N windows; groups (N,) as in
    retrieval_ranks. Every repeat shuffles the windows into pools of pool_size; the leftover windows are
    queried against themselves plus random other windows, so each pool has exactly pool_size candidates.
    Returns int64 (repeats, N): rank of window i's query in its pool, per repeat.
    """
    q = torch.as_tensor(queries, dtype=torch.float32)
    c = torch.as_tensor(candidates, dtype=torch.float32)
    g = torch.as_tensor(groups, dtype=torch.int64)
    N = q.shape[0]
    K = min(pool_size, N)
    gen = torch.Generator().manual_seed(seed)
    ranks = torch.empty(repeats, N, dtype=torch.int64)
    for r in range(repeats):
        perm = torch.randperm(N, generator=gen)  # (N,)
        for a in range(0, N, K):
            pool = perm[a : a + K]  # queried windows
            if len(pool) < K:  # leftovers: fill the candidate pool with other random windows
                rest = perm[:a][torch.randperm(a, generator=gen)[: K - len(pool)]]
                cands = torch.cat([pool, rest])
            else:
                cands = pool
            ranks[r, pool] = retrieval_ranks(q[pool], c[cands], g[pool], g[cands])
    return ranks


def rank_metrics(ranks):
    """R@k, MRR and median rank of a tensor of 1-based ranks (any shape; every entry is one query)."""
    r = torch.as_tensor(ranks).reshape(-1).double()  # (M,)
    out = {f"R@{k}": float((r <= k).double().mean()) for k in RECALL_AT}
    out["MRR"] = float((1.0 / r).mean())
    out["median_rank"] = float(np.median(r.numpy()))
    return out


def chance_metrics(pool_size):
    """The same metrics for a random ranking of pool_size candidates with one right answer."""
    K = pool_size
    out = {f"R@{k}": min(k, K) / K for k in RECALL_AT}
    out["MRR"] = float(sum(1.0 / r for r in range(1, K + 1)) / K)
    out["median_rank"] = (K + 1) / 2
    return out


# ======================================================================================
# Activity recognition: metrics, zero-shot, supervised variants
# ======================================================================================


def classification_metrics(labels, predictions, n_classes):
    """Accuracy, macro-F1 and the confusion matrix (rows: true class, columns: predicted class).

    Macro-F1 averages the per-class F1 over the classes present in `labels` (a class absent from the test set has
    no recall to speak of); predicting an absent class still lowers the recall, hence F1, of the true class.
    """
    y = torch.as_tensor(labels, dtype=torch.int64)  # (N,)
    p = torch.as_tensor(predictions, dtype=torch.int64)  # (N,)
    confusion = torch.bincount(y * n_classes + p, minlength=n_classes * n_classes).reshape(n_classes, n_classes)
    tp = confusion.diag().double()  # (K,)
    precision = tp / confusion.sum(0).clamp(min=1)  # (K,) over predicted columns
    recall = tp / confusion.sum(1).clamp(min=1)  # (K,) over true rows
    f1 = torch.where(tp > 0, 2 * precision * recall / (precision + recall).clamp(min=1e-12), torch.zeros_like(tp))
    present = confusion.sum(1) > 0  # (K,) classes in the test labels
    return {"accuracy": float((y == p).double().mean()), "macro_f1": float(f1[present].mean()),
            "confusion": confusion.tolist()}


def zero_shot_predict(imu_emb, class_emb):
    """Nearest class text embedding by cosine: imu_emb (N, D), class_emb (K, D) -> class index (N,)."""
    a = F.normalize(torch.as_tensor(imu_emb).float(), dim=1)  # (N, D)
    b = F.normalize(torch.as_tensor(class_emb).float(), dim=1)  # (K, D)
    return (a @ b.T).argmax(1)  # (N, K) -> (N,)


@dataclass
class FitConfig:
    """How the probe, fine-tune and from-scratch classifiers are trained (one config, three variants)."""

    epochs: int = 10  # most passes over the training part (early stopping may end sooner)
    patience: int = 3  # stop after this many epochs without a lower validation loss; the best epoch is kept
    batch_size: int = 32  # windows per step
    probe_lr: float = 1e-2  # AdamW learning rate of the probe's linear layer (frozen features converge slowly)
    lr: float = 1e-3  # AdamW learning rate of the fine-tune head and of the whole from-scratch model
    encoder_lr: float = 1e-4  # AdamW learning rate of the pretrained encoder when fine-tuning
    weight_decay: float = 1e-4  # AdamW weight decay
    val_fraction: float = 0.2  # part of the training split held out for early stopping, stratified by class
    train_fraction: float = 1.0  # part of the rest actually trained on (few-shot curves); >= 1 window per class


def split_train_val(labels, val_fraction, train_fraction, seed):
    """Stratified (fit, val) indices of a labelled training split; fit is then subsampled to train_fraction.

    Every class with >= 2 windows gives at least one to each part; a class with one window goes to fit.
    """
    y = np.asarray(labels)
    rng = np.random.default_rng(seed)
    fit, val = [], []
    for k in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == k))
        n_val = min(len(idx) - 1, max(1, round(val_fraction * len(idx)))) if val_fraction > 0 else 0
        n_fit = max(1, round(train_fraction * (len(idx) - n_val)))
        val.extend(idx[:n_val])
        fit.extend(idx[n_val : n_val + n_fit])
    return np.sort(np.array(fit, dtype=np.int64)), np.sort(np.array(val, dtype=np.int64))


def _batches(n, batch_size, gen):
    """Shuffled index batches of near-equal size (never a batch of 1 when n >= 2)."""
    perm = torch.randperm(n, generator=gen)
    return torch.tensor_split(perm, max(1, -(-n // batch_size)))


def fit_classifier(model, param_groups, x_fit, y_fit, x_val, y_val, cfg: FitConfig, seed, device, name=""):
    """Train `model` (inputs -> logits) with cross-entropy and early stopping on the validation loss.

    x_* are CPU tensors (windows (N, 6, T) or frozen features (N, D)); param_groups are AdamW groups.
    Returns the model with its best-validation weights, in eval mode, and the number of epochs run.
    A progress line per epoch goes to stderr, prefixed with `name`.
    """
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(param_groups, weight_decay=cfg.weight_decay)
    model.to(device)
    best, best_state, since_best, epoch = float("inf"), None, 0, 0
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        losses = []
        for idx in _batches(len(x_fit), cfg.batch_size, gen):
            loss = F.cross_entropy(model(x_fit[idx].to(device)), y_fit[idx].to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(loss.item())
        line = f"[evaluate] {name} epoch {epoch}/{cfg.epochs} train loss {np.mean(losses):.4f}"
        if len(x_val) == 0:  # nothing held out (tiny classes): train the full budget
            print(line, file=sys.stderr)
            continue
        val_loss = F.cross_entropy(predict(model, x_val, cfg.batch_size, device), y_val).item()
        print(f"{line} val loss {val_loss:.4f}", file=sys.stderr)
        if val_loss < best:
            best, best_state, since_best = val_loss, copy.deepcopy(model.state_dict()), 0
        else:
            since_best += 1
            if since_best >= cfg.patience:
                break
    if best_state is not None:
        model.load_state_dict(best_state)
    return model.eval(), epoch


@torch.no_grad()
def predict(model, x, batch_size, device):
    """model(x) in eval mode, batch by batch (every row, no drop_last), on the CPU: (N, ...) -> (N, K)."""
    model.eval()
    return torch.cat([model(x[a : a + batch_size].to(device)).cpu() for a in range(0, len(x), batch_size)])


VARIANTS = ("zeroshot", "probe", "finetune", "scratch")  # activity recognition variants, in report order


def train_variant(variant, encoder, x_train, y_train, n_classes, cfg: FitConfig, seed, device):
    """Train one supervised variant on the training split; returns (windows (N, 6, T) -> logits (N, K), epochs).

    probe: a linear layer on the frozen encoder's output (features computed once);
    finetune: a copy of the encoder plus a linear layer, all trained (encoder at cfg.encoder_lr);
    scratch: the same architecture randomly initialised (from `seed`) plus a linear layer, all at cfg.lr.
    """
    fit, val = split_train_val(y_train.numpy(), cfg.val_fraction, cfg.train_fraction, seed)
    D = encoder.cfg.embed_dim
    torch.manual_seed(seed)  # the head's (and the from-scratch encoder's) initialisation
    head = nn.Linear(D, n_classes)
    if variant == "probe":
        frozen = encoder.to(device).eval()
        feats = predict(frozen, x_train, cfg.batch_size, device)  # (N, 6, T) -> (N, D), computed once
        groups = [{"params": head.parameters(), "lr": cfg.probe_lr}]
        head, epochs = fit_classifier(head, groups, feats[fit], y_train[fit], feats[val], y_train[val], cfg, seed,
                                      device, variant)
        return nn.Sequential(frozen, head).eval(), epochs
    if variant == "finetune":
        body = copy.deepcopy(encoder)
        groups = [{"params": body.parameters(), "lr": cfg.encoder_lr}, {"params": head.parameters(), "lr": cfg.lr}]
    elif variant == "scratch":
        body = IMUEncoder(encoder.cfg)
        groups = [{"params": list(body.parameters()) + list(head.parameters()), "lr": cfg.lr}]
    else:
        raise ValueError(f"unknown supervised variant {variant!r}")
    model = nn.Sequential(body, head)  # (B, 6, T) -> (B, D) -> (B, K)
    return fit_classifier(model, groups, x_train[fit], y_train[fit], x_train[val], y_train[val], cfg, seed, device,
                          variant)


# ======================================================================================
# The three tasks on a checkpoint
# ======================================================================================


@dataclass
class EvalConfig:
    task: str = "all"  # retrieval | zeroshot | probe (linear probe) | finetune (fine-tune + from scratch) | all
    checkpoint: str = ""  # the trained model, e.g. runs/imu-video-text/best.pt (required)
    data: str = ""  # dataset root; "" = the dataset the checkpoint was trained on
    labelled: str = ""  # labelled-IMU .npz for activity recognition instead of the dataset's labelled windows
    out: str = ""  # report directory; "" = <checkpoint dir>/eval
    pool_size: int = 0  # 0 = rank against the whole test split; K = average over random pools of K candidates
    pool_repeats: int = 10  # random pool draws averaged when --pool-size is set
    prompt: str = "{}"  # zero-shot class text template, e.g. "a person {}"; {} is the class name
    epochs: int = 10  # most epochs of the probe / fine-tune / from-scratch training (early stopping on val)
    patience: int = 3  # early-stopping patience in epochs
    train_fraction: float = 1.0  # part of the training windows used by the supervised variants (few-shot)
    seed: int = 0  # seeds the pools, the train/val split, the heads and the from-scratch encoder
    device: str = "auto"  # auto (cuda when available) | cpu | cuda | cuda:N
    batch_size: int = 256  # windows per encoder forward pass when embedding
    examples: int = 4  # queries drawn in retrieval_examples.png and text_queries.png


TASKS = {"retrieval": ("retrieval",), "zeroshot": ("zeroshot",), "probe": ("probe",),
         "finetune": ("finetune", "scratch"), "all": ("retrieval",) + VARIANTS}  # --task -> what runs


def parse_args(argv=None) -> EvalConfig:
    """EvalConfig from the command line: one --flag per field, help from the field comments."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    help_text = data.field_help(EvalConfig)
    for f in fields(EvalConfig):
        kwargs = {"choices": list(TASKS)} if f.name == "task" else {}
        parser.add_argument("--" + f.name.replace("_", "-"), type=f.type, default=f.default,
                            help=help_text.get(f.name), **kwargs)
    return EvalConfig(**vars(parser.parse_args(argv)))


def load_clip(ckpt, path, device):
    """The checkpoint's frozen CLIP, rebuilt; ValueError if its embeddings would differ from training's."""
    info = ckpt["clip"]
    clip = FrozenCLIP(info["name"], weights=ckpt["config"].get("clip_weights") or None, device=str(device),
                      require_pretrained=info.get("weights_source") == "pretrained")
    if clip.fingerprint != info.get("fingerprint"):
        raise ValueError(f"{path}: trained with CLIP {info.get('fingerprint')}, but this machine gives "
                         f"{clip.fingerprint}; evaluate where the same CLIP weights are available")
    return clip


def embed_imu(encoder, imu, batch_size, device):
    """IMU windows (N, 6, T) -> IMU2CLIP embeddings (N, D), every window, batch by batch."""
    return predict(encoder, torch.as_tensor(imu), batch_size, device)


def group_ids(*keys):
    """Windows that share any key are one group (union over keys): each key is a list (N,) of hashables or a
    float array (N, D) compared row-exactly. Returns int64 (N,)."""
    parent = list(range(len(keys[0])))

    def find(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for key in keys:
        if isinstance(key, np.ndarray):
            key = [row.tobytes() for row in np.ascontiguousarray(key)]
        first = {}
        for i, k in enumerate(key):
            parent[find(i)] = find(first.setdefault(k, i))
    return torch.tensor([find(i) for i in range(len(parent))])


def retrieval_directions(test, imu_emb, use_text):
    """name -> (queries (N, D), candidates (N, D), groups (N,)) for every direction this dataset supports."""
    video = torch.as_tensor(test.video_emb)
    by_video = group_ids(test.video_emb)
    out = {}
    if use_text:
        text = torch.as_tensor(test.text_emb)
        by_text = group_ids(test.texts)
        out.update({"text->imu": (text, imu_emb, by_text), "imu->text": (imu_emb, text, by_text)})
    out.update({"imu->video": (imu_emb, video, by_video), "video->imu": (video, imu_emb, by_video)})
    if use_text:
        by_either = group_ids(test.texts, test.video_emb)
        # transitivity: the text ranks windows by their IMU embedding, right = the narrated window's video (or
        # one of an identical narration's), scored exactly like CLIP's own Text->Video next to it
        out.update({"text->video (imu space)": (text, imu_emb, by_either),
                    "text->video (clip space)": (text, video, by_either)})
    return out


def run_retrieval(cfg: EvalConfig, test, imu_emb, use_text):
    """Every direction's metrics over the test split (or its random pools), with the pool size and chance."""
    N = len(test)
    K = min(cfg.pool_size, N) if cfg.pool_size > 0 else N
    results = {}
    for name, (q, c, g) in retrieval_directions(test, imu_emb, use_text).items():
        if cfg.pool_size > 0:
            ranks = pooled_ranks(q, c, g, K, cfg.pool_repeats, cfg.seed)  # (repeats, N)
        else:
            ranks = retrieval_ranks(q, c, g, g)  # (N,)
        results[name] = rank_metrics(ranks)
        print(f"[evaluate] retrieval {name}: R@1 {results[name]['R@1']:.4f}", file=sys.stderr)
    return {"split": "test", "windows": N, "pool_size": K, "mode": "pooled" if cfg.pool_size > 0 else "full",
            "pool_repeats": cfg.pool_repeats if cfg.pool_size > 0 else 1, "chance": chance_metrics(K),
            "directions": results}


@dataclass
class LabelledSplits:
    """Activity recognition data: windows at the model's rate, split into train and test."""

    source: str  # where the windows come from (dataset root or .npz path)
    class_names: tuple  # class index -> name, also the zero-shot class texts
    x_train: torch.Tensor  # (N_train, 6, T) float32
    y_train: torch.Tensor  # (N_train,) int64
    x_test: torch.Tensor  # (N_test, 6, T) float32
    y_test: torch.Tensor  # (N_test,) int64


def labelled_from_npz(path, rate_hz):
    """A user's labelled-IMU .npz, resampled to the model's rate by data.load_labelled (any length)."""
    lab = data.load_labelled(path, rate_hz=rate_hz)  # DataError on a bad file (e.g. not 6 channels)
    imu, labels = torch.as_tensor(lab.imu), torch.as_tensor(lab.labels, dtype=torch.int64)
    train, test = np.asarray(lab.split) == "train", np.asarray(lab.split) == "test"
    return LabelledSplits(str(path), tuple(lab.class_names), imu[train], labels[train], imu[test], labels[test])


def labelled_from_windows(root, train_set, test_set):
    """The dataset's windows that carry an activity label (the activity covering most of the window)."""
    def part(ds):
        keep = np.flatnonzero(ds.labels >= 0)
        return torch.as_tensor(ds.imu[keep]), torch.as_tensor(ds.labels[keep], dtype=torch.int64)
    return LabelledSplits(str(root), tuple(train_set.class_names), *part(train_set), *part(test_set))


def run_activity(cfg: EvalConfig, variants, encoder, clip, lab: LabelledSplits, device):
    """Zero-shot and supervised activity recognition on lab's test split.
    Returns the report dict; each variant has accuracy, macro_f1, confusion (and epochs for trained ones)."""
    K = len(lab.class_names)
    if len(lab.y_test) == 0:
        raise data.DataError(f"{lab.source}: no labelled test windows for activity recognition")
    if set(variants) - {"zeroshot"} and len(lab.y_train) < 2:
        raise data.DataError(f"{lab.source}: {len(lab.y_train)} labelled training windows, need at least 2")
    if lab.x_test.shape[-1] < encoder.min_samples():
        raise data.DataError(f"{lab.source}: windows of {lab.x_test.shape[-1]} samples are shorter than the "
                             f"encoder's minimum of {encoder.min_samples()}")
    fit_cfg = FitConfig(epochs=cfg.epochs, patience=cfg.patience, train_fraction=cfg.train_fraction)
    counts = torch.bincount(lab.y_test, minlength=K)
    out = {"source": lab.source, "class_names": list(lab.class_names), "window_samples": int(lab.x_test.shape[-1]),
           "train_windows": len(lab.y_train), "test_windows": len(lab.y_test), "train_fraction": cfg.train_fraction,
           "prompt": cfg.prompt,
           "chance": {"uniform_accuracy": 1.0 / K, "majority_accuracy": float(counts.max() / counts.sum())},
           "variants": {}}
    for variant in variants:
        if variant == "zeroshot":
            class_emb = clip.embed_texts([cfg.prompt.replace("{}", name) for name in lab.class_names])  # (K, D)
            imu_emb = embed_imu(encoder, lab.x_test, cfg.batch_size, device)  # (N_test, D)
            pred, extra = zero_shot_predict(imu_emb, class_emb), {}
        else:
            model, epochs = train_variant(variant, encoder, lab.x_train, lab.y_train, K, fit_cfg, cfg.seed, device)
            pred, extra = predict(model, lab.x_test, cfg.batch_size, device).argmax(1), {"epochs": epochs}
        out["variants"][variant] = {**classification_metrics(lab.y_test, pred, K), **extra}
        print(f"[evaluate] activity {variant}: accuracy {out['variants'][variant]['accuracy']:.4f}", file=sys.stderr)
    return out


# ======================================================================================
# Reports: pictures (PIL only), metrics.json, summary.md
# ======================================================================================

RIGHT, OTHER, INK = (30, 160, 60), (200, 200, 200), (20, 20, 20)  # outline of a right answer, of others; text


def _frame_tile(frame, size):
    """An RGB frame (H, W, 3) uint8 scaled to fit a size x size tile (pixels kept sharp), letterboxed."""
    img = Image.fromarray(np.asarray(frame))
    scale = size / max(img.width, img.height)
    img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))),
                     Image.NEAREST if scale > 1 else Image.BILINEAR)
    tile = Image.new("RGB", (size, size), (0, 0, 0))
    tile.paste(img, ((size - img.width) // 2, (size - img.height) // 2))
    return tile


def _framed(img, color, width=4):
    """img with a `width`-pixel border of `color` around it."""
    out = Image.new("RGB", (img.width + 2 * width, img.height + 2 * width), color)
    out.paste(img, (width, width))
    return out


def _top(queries, candidates, k):
    """Indices (Q, k) of the k highest-cosine candidates of each query."""
    a = F.normalize(torch.as_tensor(queries).float(), dim=1)  # (Q, D)
    b = F.normalize(torch.as_tensor(candidates).float(), dim=1)  # (N, D)
    return (a @ b.T).topk(min(k, len(b)), dim=1).indices  # (Q, N) -> (Q, k)


def pick_examples(n, how_many, seed):
    """A fixed, spread-out sample of query indices for the pictures."""
    return np.sort(np.random.default_rng(seed).choice(n, size=min(how_many, n), replace=False))


def draw_retrieval_examples(root, test, imu_emb, queries, title, k=5, tile=128):
    """Rows of: the query window's IMU plot, then its top-k retrieved frames (IMU->Video), the right one outlined
    in green; when the right frame is not among them, it follows after a gap with its rank."""
    font, small = ImageFont.load_default(size=14), ImageFont.load_default(size=12)
    top = _top(imu_emb[queries], test.video_emb, k)  # (Q, k)
    by_video = group_ids(test.video_emb)
    ranks = retrieval_ranks(imu_emb[queries], test.video_emb, by_video[queries], by_video)  # (Q,) over the split
    recordings = {}

    def frame(i):
        rec_id, idx = test.frame_index[i]
        if rec_id not in recordings:
            recordings[rec_id] = data.read_recording(Path(root) / rec_id)
        return recordings[rec_id].frames[idx]

    plot_w, row_h, pad, step = 2 * tile, tile + 44, 10, tile + 8 + 10
    frames_x = pad + plot_w + pad
    canvas = Image.new("RGB", (frames_x + (k + 1) * step + pad, 30 + len(queries) * (row_h + pad)), "white")
    draw = ImageDraw.Draw(canvas)
    draw.text((pad, 6), title, fill=INK, font=font)
    for r, i in enumerate(queries):
        y = 30 + r * (row_h + pad)
        canvas.paste(draw_signals(test.imu[i], plot_w, tile, title=test.window_ids[i]), (pad, y))
        draw.text((pad, y + tile + 4), textwrap.shorten(test.texts[i] or "(no narration)", 40), fill=INK, font=small)
        shown = list(enumerate(top[r].tolist()))  # (position, window) of the top k
        if not any(by_video[c] == by_video[i] for _, c in shown):
            shown.append((k, i))  # the right frame, after a gap
        for j, c in shown:
            right = bool(by_video[c] == by_video[i])
            x = frames_x + j * step + (pad if j == k else 0)
            canvas.paste(_framed(_frame_tile(frame(c), tile), RIGHT if right else OTHER), (x, y))
            label = f"true, rank {int(ranks[r])}" if j == k else f"#{j + 1}" + (" (true)" if right else "")
            draw.text((x, y + tile + 10), label, fill=RIGHT if right else INK, font=small)
            draw.text((x, y + tile + 24), test.window_ids[c], fill=(120, 120, 120), font=small)
    return canvas


def draw_text_queries(test, imu_emb, queries, title, k=3, plot=(300, 120)):
    """Rows of: a narration query, then the top-k IMU windows (Text->IMU) as signal plots with their own
    narrations under them; windows with the queried narration are outlined."""
    font, small = ImageFont.load_default(size=14), ImageFont.load_default(size=12)
    top = _top(test.text_emb[queries], imu_emb, k)  # (Q, k)
    by_text = group_ids(test.texts)
    ranks = retrieval_ranks(test.text_emb[queries], imu_emb, by_text[queries], by_text)  # (Q,) over the split
    w, h = plot
    pad, row_h = 10, 24 + h + 8 + 36
    canvas = Image.new("RGB", (pad + k * (w + 8 + pad), 30 + len(queries) * (row_h + pad)), "white")
    draw = ImageDraw.Draw(canvas)
    draw.text((pad, 6), title, fill=INK, font=font)
    for r, i in enumerate(queries):
        y = 30 + r * (row_h + pad)
        draw.text((pad, y), f"query: \"{textwrap.shorten(test.texts[i], 80)}\"  (its own window: rank "
                            f"{int(ranks[r])} of {len(test)})", fill=INK, font=font)
        for j, c in enumerate(top[r].tolist()):
            right = test.texts[c] == test.texts[i]
            x = pad + j * (w + 8 + pad)
            plot_img = draw_signals(test.imu[c], w, h, title=f"#{j + 1} {test.window_ids[c]}")
            canvas.paste(_framed(plot_img, RIGHT if right else OTHER), (x, y + 22))
            for n, line in enumerate(textwrap.wrap(test.texts[c], 40)[:2]):
                draw.text((x, y + 22 + h + 10 + 16 * n), line, fill=RIGHT if right else INK, font=small)
    return canvas


def _vertical_text(text, font, fill=INK):
    """`text` rendered bottom-to-top on a transparent image, for column labels."""
    w = int(font.getlength(text)) + 4
    img = Image.new("RGBA", (w, 18), (255, 255, 255, 0))
    ImageDraw.Draw(img).text((2, 1), text, fill=fill, font=font)
    return img.rotate(90, expand=True)


def draw_confusion(confusion, class_names, title, cell=44):
    """A confusion matrix (rows: true class, columns: predicted class), cells shaded by their share of the row."""
    m = np.asarray(confusion)
    K = len(class_names)
    font, small = ImageFont.load_default(size=14), ImageFont.load_default(size=12)
    names = [f"{c} {name}" for c, name in enumerate(class_names)]
    labels = [_vertical_text(name, small) for name in names]
    left = 30 + max(int(small.getlength(name)) for name in names)
    top = 62 + max(img.height for img in labels)
    width = max(left + K * cell + 20, 20 + int(font.getlength(title)))
    canvas = Image.new("RGB", (width, top + K * cell + 20), "white")
    draw = ImageDraw.Draw(canvas)
    draw.text((10, 8), title, fill=INK, font=font)
    draw.text((left + K * cell // 2, 36), "predicted class", fill=INK, font=small, anchor="mt")
    axis = _vertical_text("true class", small)
    canvas.paste(axis, (6, top + (K * cell - axis.height) // 2), axis)
    share = m / np.maximum(m.sum(1, keepdims=True), 1)  # (K, K) row-normalised
    for r in range(K):
        draw.text((left - 6, top + r * cell + cell // 2), names[r], fill=INK, font=small, anchor="rm")
        x = left + r * cell + (cell - labels[r].width) // 2
        canvas.paste(labels[r], (x, top - 4 - labels[r].height), labels[r])
        for c in range(K):
            shade = tuple(int(255 - share[r, c] * (255 - v)) for v in (31, 90, 170))  # white -> blue
            box = (left + c * cell, top + r * cell, left + (c + 1) * cell - 1, top + (r + 1) * cell - 1)
            draw.rectangle(box, fill=shade, outline=(230, 230, 230))
            draw.text((box[0] + cell // 2, box[1] + cell // 2), str(m[r, c]), anchor="mm", font=small,
                      fill="white" if share[r, c] > 0.5 else INK)
    return canvas


def _rounded(obj, digits=4):
    """obj with every float rounded to `digits` decimals: metrics.json and summary.md show the same numbers."""
    if isinstance(obj, float):
        return round(obj, digits)
    if isinstance(obj, dict):
        return {k: _rounded(v, digits) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_rounded(v, digits) for v in obj]
    return obj


def _num(v):
    """A metric as written in summary.md: floats with 4 decimals (the value stored in metrics.json)."""
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def random_init_banner(clip_info):
    """The loud line every report carries when the CLIP towers are random-init, else ""."""
    if clip_info["weights_source"] != "random-init":
        return ""
    return (f"CLIP {clip_info['name']} IS RANDOM-INIT (no pretrained weights were available): text and zero-shot "
            f"results are NOT grounded in CLIP, and video results only measure agreement with a random network")


def summary_markdown(report):
    """summary.md: the metrics.json numbers as markdown tables."""
    banner = report["clip"]["random_init_warning"]
    tag = " [CLIP RANDOM-INIT]" if banner else ""
    ck = report["checkpoint"]
    clip = report["clip"]
    lines = ["# IMU2CLIP evaluation", "",
             f"Checkpoint `{ck['path']}` (epoch {ck['epoch']}, step {ck['step']}, trained on "
             f"{ck['config'].get('modalities')}); CLIP {clip['name']} ({clip['weights_source']}).", ""]
    if banner:
        lines += [f"> **!!! WARNING: {banner} !!!**", ""]
    lines += [f"> warning: {w}" for w in report["warnings"]] + ([""] if report["warnings"] else [])
    if "retrieval" in report:
        r = report["retrieval"]
        how = f"random pools of {r['pool_size']} candidates, {r['pool_repeats']} draws" if r["mode"] == "pooled" \
            else f"all {r['pool_size']} test windows as candidates"
        lines += [f"## Retrieval ({r['split']} split, {r['windows']} windows; {how})", "",
                  f"| direction{tag} | " + " | ".join(METRIC_NAMES) + " |", "|---" * (len(METRIC_NAMES) + 1) + "|"]
        rows = list(r["directions"].items()) + [(f"chance (pool {r['pool_size']})", r["chance"])]
        lines += [f"| {name} | " + " | ".join(_num(m[k]) for k in METRIC_NAMES) + " |" for name, m in rows]
        lines.append("")
    if "activity" in report:
        a = report["activity"]
        lines += [f"## Activity recognition ({len(a['class_names'])} classes; {a['train_windows']} train / "
                  f"{a['test_windows']} test windows from `{a['source']}`; train fraction {a['train_fraction']})", "",
                  f"| variant{tag} | accuracy | macro-F1 | epochs |", "|---|---|---|---|"]
        for name, m in a["variants"].items():
            lines.append(f"| {name} | {_num(m['accuracy'])} | {_num(m['macro_f1'])} | {m.get('epochs', '-')} |")
        lines += [f"| chance (uniform) | {_num(a['chance']['uniform_accuracy'])} | - | - |",
                  f"| chance (majority class) | {_num(a['chance']['majority_accuracy'])} | - | - |", ""]
    return "\n".join(lines)


def write_reports(out, report, pictures):
    """metrics.json, summary.md and the pictures, each written atomically; returns the summary text."""
    out.mkdir(parents=True, exist_ok=True)
    for name, image in pictures.items():
        data.atomic_write(out / name, lambda tmp, image=image: image.save(tmp, format="PNG"))
    report["files"] = sorted(["metrics.json", "summary.md", *pictures])
    summary = summary_markdown(report)
    data.atomic_write(out / "metrics.json", lambda tmp: tmp.write_text(json.dumps(report, indent=2) + "\n"))
    data.atomic_write(out / "summary.md", lambda tmp: tmp.write_text(summary + "\n"))
    return summary


# ======================================================================================
# Command line
# ======================================================================================


def warn(report, message):
    """A warning: one line on stderr, and kept in metrics.json and summary.md."""
    print(f"warning: {message}", file=sys.stderr)
    report["warnings"].append(message)


def run(cfg: EvalConfig) -> dict:
    """Run cfg.task on cfg.checkpoint and write the reports. Bad input raises ValueError (incl. DataError)."""
    if not cfg.checkpoint:
        raise ValueError("--checkpoint is required, e.g. --checkpoint runs/imu-video-text/best.pt")
    if "{}" not in cfg.prompt:
        raise ValueError(f"--prompt {cfg.prompt!r}: must contain {{}} where the class name goes")
    if cfg.pool_size < 0 or min(cfg.pool_repeats, cfg.epochs, cfg.batch_size, cfg.patience) < 1 \
            or cfg.examples < 0 or not 0 < cfg.train_fraction <= 1:
        raise ValueError("--pool-size and --examples must be >= 0, --pool-repeats, --epochs, --batch-size and "
                         "--patience >= 1, --train-fraction in (0, 1]")
    path = Path(cfg.checkpoint)
    ckpt = load_checkpoint(path)
    try:
        window = data.WindowConfig(**ckpt["window"])
    except (KeyError, TypeError) as e:
        raise ValueError(f"{path}: no usable window config in this checkpoint ({e})") from None
    device = resolve_device(cfg.device)
    clip = load_clip(ckpt, path, device)
    try:
        encoder = encoder_from_checkpoint(ckpt).to(device)
    except (RuntimeError, TypeError) as e:  # weights or config that model.py no longer matches
        raise ValueError(f"{path}: its IMU encoder does not fit model.py ({str(e).splitlines()[0]})") from None
    root = Path(cfg.data or ckpt.get("data", ""))
    steps = TASKS[cfg.task]
    report = {"task": cfg.task, "split": "test", "config": asdict(cfg),
              "checkpoint": {"path": str(path), "step": ckpt["step"], "epoch": ckpt["epoch"],
                             "data": ckpt.get("data"), "config": ckpt["config"], "window": ckpt["window"],
                             "encoder_config": ckpt["encoder_config"]},
              "clip": {**clip.info(), "random_init": clip.weights_source == "random-init",
                       "random_init_warning": random_init_banner(clip.info())},
              "device": str(device), "warnings": []}
    if report["clip"]["random_init_warning"]:
        print(f"warning: {report['clip']['random_init_warning']}", file=sys.stderr)
    try:
        trained_with_text = "text" in parse_modalities(ckpt["config"].get("modalities", ""))
    except ValueError as e:
        raise ValueError(f"{path}: no usable modalities in its training config ({e})") from None
    pictures = {}
    if cfg.labelled and cfg.task == "retrieval":
        warn(report, "--labelled is only used by activity recognition; --task retrieval ignores it")

    test = None
    if "retrieval" in steps or not cfg.labelled:
        test = data.WindowDataset(root, "test", window, clip)  # DataError when the test split is empty
    has_text = test is not None and test.text_emb is not None
    if not trained_with_text and (has_text and "retrieval" in steps or "zeroshot" in steps):
        warn(report, f"{path} was trained without text ({ckpt['config']['modalities']}): its IMU space was never "
                     f"aligned with text, so text retrieval and zero-shot only show what carries over through CLIP")

    if "retrieval" in steps:
        if not has_text:
            warn(report, f"{root}: the windows have no narrations ({window.mode} windows); text directions skipped")
        imu_emb = embed_imu(encoder, test.imu, cfg.batch_size, device)  # (N, 6, T) -> (N, D)
        report["retrieval"] = run_retrieval(cfg, test, imu_emb, has_text)
        queries = pick_examples(len(test), cfg.examples, cfg.seed)
        pictures["retrieval_examples.png"] = draw_retrieval_examples(
            root, test, imu_emb, queries, "IMU -> Video: top-5 frames per IMU query (true frame in green)")
        if has_text:
            pictures["text_queries.png"] = draw_text_queries(
                test, imu_emb, queries, "Text -> IMU: top-3 windows per narration query (same narration in green)")

    variants = [v for v in VARIANTS if v in steps]
    if variants:
        if cfg.labelled:
            lab = labelled_from_npz(cfg.labelled, window.rate_hz)
        else:
            lab = labelled_from_windows(root, data.WindowDataset(root, "train", window, clip), test)
        if len(lab.y_test) == 0 and cfg.task == "all":
            warn(report, f"{lab.source}: no windows carry an activity label; activity recognition skipped")
        else:
            report["activity"] = run_activity(cfg, variants, encoder, clip, lab, device)
            for name, m in report["activity"]["variants"].items():
                tag = " [CLIP RANDOM-INIT]" if report["clip"]["random_init_warning"] and name == "zeroshot" else ""
                pictures[f"confusion_{name}.png"] = draw_confusion(
                    m["confusion"], lab.class_names,
                    f"{name}{tag}: accuracy {m['accuracy']:.4f}, macro-F1 {m['macro_f1']:.4f}")

    report = _rounded(report)
    out = Path(cfg.out) if cfg.out else path.parent / "eval"
    print(write_reports(out, report, pictures))
    print(f"[evaluate] wrote {', '.join(report['files'])} to {out}", file=sys.stderr)
    return report


def main(argv=None):
    cfg = parse_args(argv)
    try:
        run(cfg)
    except ValueError as e:  # bad flags, checkpoint or data (data.DataError is a ValueError): one line, exit 2
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
