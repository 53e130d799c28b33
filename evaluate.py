"""Evaluation of a trained IMU2CLIP encoder on the tasks of the paper (Moon et al., 2022, section 4).

1. Retrieval (4.2) over the whole test split, or over --seeds draws of a pool (--protocol official: the official
   code's, 25% of the test recordings, <= 2 windows each; --pool-size K): Text<->IMU, IMU<->Video, and transitivity:
   "text->video via imu" ranks the windows by cos(CLIP text, IMU embedding), right when their video is the narrated
   one; "text->video (clip)" is CLIP's own Text->Video, its bound (at chance for a random-init CLIP).
2. Activity recognition (4.3): zero-shot (nearest CLIP text embedding of the class names), a linear probe on the
   frozen encoder, the fine-tuned encoder and the same architecture from scratch: at most --steps steps on the train
   split (or --train-fraction of it), early-stopped on the validation recordings (for a labelled .npz, 20% of the
   groups of its train split, or without groups a stratified 20% of its windows), over --seeds seeds (mean ± std).

Run:
    python evaluate.py --task all --checkpoint runs/imu-video-text/best.pt
    python evaluate.py --task retrieval --checkpoint runs/imu-video/best.pt --protocol official --seeds 10
    python evaluate.py --task all --checkpoint runs/imu-video-text/best.pt --seeds 3 --train-fraction 0.01 0.05 0.2 1

Data, window and CLIP come from the checkpoint (--data, --labelled override the data); recordings it was trained or
validated on are refused as test data. --out (default CHECKPOINT_DIR/eval) gets metrics.json, summary.md (the same
numbers as tables) and the pictures. A retrieval candidate is right when it shares the query's group: identical
narrations for Text<->IMU (negatives in a training batch, but the same query text here), identical video embeddings
otherwise; ranks are pessimistic about ties (retrieval_ranks), chance is exact for that ground truth (chance_metrics).
"""
import argparse
import copy
import functools
import json
import sys
import textwrap
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont, ImageOps
from torch import nn

import data
from clip_vendor import FrozenCLIP
from loss import parse_modalities
from model import IMUEncoder, encoder_from_checkpoint, load_checkpoint, resolve_device

RECALL_AT = (1, 10, 50)  # the R@k reported for every retrieval direction (paper Tables 1-2)
METRIC_NAMES = tuple(f"R@{k}" for k in RECALL_AT) + ("MRR", "median_rank")  # retrieval metrics, table columns


# ----- Retrieval metrics: pure functions over two embedding matrices --------------------------------------------------

def retrieval_ranks(queries, candidates, query_groups=None, cand_groups=None, chunk=None):
    """Ranks (Q,) int64 of queries (Q, D) among candidates (C, D) (module docstring): j is right for i when
    cand_groups[j] == query_groups[i] (default, Q == C: j == i), scored `chunk` queries at a time (2^25 scores)."""
    q = F.normalize(torch.as_tensor(queries, dtype=torch.float32).cpu(), dim=1)  # (Q, D) unit rows
    cT = F.normalize(torch.as_tensor(candidates, dtype=torch.float32).cpu(), dim=1).T.contiguous()  # (D, C)
    (Q, C), chunk = (len(q), cT.shape[1]), chunk or max(1, 2**25 // max(1, cT.shape[1]))
    if query_groups is None and cand_groups is None:
        if Q != C:
            raise ValueError(f"retrieval: {Q} queries but {C} candidates and no ground truth groups")
        query_groups = cand_groups = torch.arange(Q)
    qg = torch.as_tensor(query_groups, dtype=torch.int64).cpu()  # (Q,)
    cg, order = torch.as_tensor(cand_groups, dtype=torch.int64).cpu().sort()  # (C,) sorted, and where each was
    first = torch.searchsorted(cg, qg)  # (Q,) query i's right candidates are order[first[i] : first[i] + n_right[i]]
    n_right = torch.searchsorted(cg, qg, right=True) - first  # (Q,)
    if (n_right == 0).any():
        raise ValueError("retrieval: some queries have no right candidate")
    ranks, scores, ahead = torch.empty(Q, dtype=torch.int64), torch.empty(min(chunk, Q), C), np.empty(0, bool)
    for a in range(0, Q, chunk):
        s = torch.mm(q[a : a + chunk], cT, out=scores[: min(chunk, Q - a)])  # (B, C) cosines, NaN if not finite
        n, slot = n_right[a : a + chunk, None], torch.arange(int(n_right[a : a + chunk].max()))  # (B, 1), (M,)
        right = order[first[a : a + chunk, None] + torch.minimum(slot, n - 1)]  # (B, M), padded with the last one
        right_s = s.gather(1, right).nan_to_num_(nan=-torch.inf)  # (B, M) their scores (the padding: slot >= n)
        best = right_s.amax(1, keepdim=True)  # (B, 1) the best right score
        # The plain form masks a (B, C) copy of s to find `best`, counts with torch's int64 sum of booleans and
        # allocates every chunk: 1.7x slower (100k x 100k past 2 min). NaN >= best is False: NaN counts as -inf.
        ahead = np.greater_equal(s.numpy(), best.numpy(), out=ahead if ahead.shape == s.shape else None)  # (B, C)
        wrong = torch.from_numpy(np.count_nonzero(ahead, axis=1)) - ((right_s >= best) & (slot < n)).sum(1)  # (B,)
        ranks[a : a + chunk] = 1 + torch.where(best[:, 0] > -torch.inf, wrong, C - n[:, 0])  # -inf: every one ties
    return ranks


def rank_metrics(ranks):
    """R@k, MRR and median rank of 1-based ranks (any shape; every entry is one query)."""
    r = torch.as_tensor(ranks).reshape(-1).double()  # (M,)
    recall = {f"R@{k}": float((r <= k).double().mean()) for k in RECALL_AT}
    return {**recall, "MRR": float((1.0 / r).mean()), "median_rank": float(np.median(r.numpy()))}


def chance_metrics(n_right, n_candidates):
    """The exact expected rank_metrics of a uniformly random ranking of n_candidates; n_right: int or ints (Q,).

    With N candidates and m right ones the first right one is at rank > k with probability S(k) = C(N-k, m) / C(N, m),
    i.e. at rank r with P(r) = S(r-1) - S(r). R@K = mean over queries of 1 - S(K), MRR = mean of sum_r P(r) / r.
    median_rank is the median of the mixture of the queries' rank distributions, F(r) = mean of 1 - S(r) (what
    rank_metrics' median tends to): the midpoint of the first r with F(r) >= 1/2 and the first with F(r) > 1/2."""
    N = int(n_candidates)
    m, queries = np.unique(np.atleast_1d(n_right), return_counts=True)  # queries grouped by their right count
    if m[0] < 1 or m[-1] > N:
        raise ValueError(f"chance: every query needs between 1 and {N} right candidates, got {m[0]}..{m[-1]}")
    w = torch.as_tensor(queries / queries.sum())  # (G,) share of the queries with each right count
    Nt, k = torch.tensor(N, dtype=torch.float64), torch.arange(N + 1, dtype=torch.float64)[None, :]  # k: (1, N + 1)
    mm = torch.as_tensor(m, dtype=torch.float64)[:, None]  # (G, 1)
    log_c = lambda n, r: torch.lgamma(n + 1) - torch.lgamma(r + 1) - torch.lgamma((n - r).clamp(min=0) + 1)  # noqa
    S = torch.where(k <= N - mm, (log_c(Nt - k, mm) - log_c(Nt, mm)).exp(), 0.0)  # (G, N + 1) S(k), k = 0..N
    r = torch.arange(1, N + 1, dtype=torch.float64)  # (N,)
    out = {f"R@{K}": float(w @ (1 - S[:, min(K, N)])) for K in RECALL_AT}
    out["MRR"] = float(w @ ((S[:, :-1] - S[:, 1:]) / r).sum(1))
    F_r = 1 - w @ S[:, 1:]  # (N,) mixture CDF at ranks 1..N
    lo, hi = torch.searchsorted(F_r, 0.5 - 1e-12), torch.searchsorted(F_r, 0.5 + 1e-12, right=True)
    out["median_rank"] = float((min(int(lo), N - 1) + min(int(hi), N - 1)) / 2 + 1)
    return out


def group_ids(key):
    """Windows with an identical key are one group: key (N,) strings, or (N, D) floats compared row-exactly (one
    frame's embedding). Returns int64 (N,): the index of each window's key among the sorted distinct keys."""
    return torch.as_tensor(np.unique(np.asarray(key), axis=0, return_inverse=True)[1].reshape(-1))


# ----- Activity recognition: metrics, zero-shot, supervised variants --------------------------------------------------

def classification_metrics(labels, predictions, n_classes):
    """Accuracy, macro-F1 as torchmetrics (the official code) computes it: over the classes that are true or
    predicted at least once (a predicted class absent from `labels` scores 0), and the confusion matrix (rows: true
    class, columns: predicted class)."""
    y, p = (torch.as_tensor(v, dtype=torch.int64) for v in (labels, predictions))  # (N,) each
    confusion = torch.bincount(y * n_classes + p, minlength=n_classes * n_classes).reshape(n_classes, n_classes)
    tp = confusion.diag().double()  # (K,)
    precision = tp / confusion.sum(0).clamp(min=1)  # (K,) over predicted columns
    recall = tp / confusion.sum(1).clamp(min=1)  # (K,) over true rows
    f1 = torch.where(tp > 0, 2 * precision * recall / (precision + recall).clamp(min=1e-12), torch.zeros_like(tp))
    scored = confusion.sum(0) + confusion.sum(1) > 0  # (K,) tp + fp + fn > 0: true or predicted at least once
    return {"accuracy": float((y == p).double().mean()), "macro_f1": float(f1[scored].mean()),
            "confusion": confusion.tolist()}


def zero_shot_predict(imu_emb, class_emb):
    """Nearest class text embedding by cosine: imu_emb (N, D), class_emb (K, D) -> class index (N,)."""
    a, b = (F.normalize(torch.as_tensor(e).float(), dim=1) for e in (imu_emb, class_emb))  # (N, D), (K, D)
    return (a @ b.T).argmax(1)  # (N, K) -> (N,)


@torch.no_grad()
def predict(model, x, batch_size, device):
    """model(x) in eval mode, batch by batch (every row, no drop_last), on the CPU: (N, ...) -> (N, K)."""
    model.eval()
    out = [model(x[a : a + batch_size].to(device)).cpu() for a in range(0, len(x), batch_size)]
    return torch.cat(out) if out else torch.empty(0)


def fit_classifier(model, param_groups, x_fit, y_fit, x_val, y_val, cfg, seed, device, name=""):
    """Cross-entropy on CPU tensors x_* (windows (N, 6, T) or features (N, D)) for cfg.steps (EvalConfig) steps, early-
    stopped on the val loss (no val: the whole budget) -> (the best-validation model in eval mode, steps run)."""
    gen, opt = torch.Generator().manual_seed(seed), torch.optim.AdamW(param_groups, weight_decay=cfg.weight_decay)
    best, best_state, since_best, batches = float("inf"), None, 0, []
    model.to(device)
    for step in range(1, cfg.steps + 1):
        if not batches:  # a new shuffled pass of near-equal batches (never a batch of 1 when n >= 2)
            batches = list(torch.randperm(len(x_fit), generator=gen).tensor_split(-(-len(x_fit) // cfg.fit_batch_size)))
        idx = batches.pop()
        model.train()
        loss = F.cross_entropy(model(x_fit[idx].to(device)), y_fit[idx].to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if len(x_val) == 0 or (step % cfg.val_every and step < cfg.steps):
            continue
        val_loss = F.cross_entropy(predict(model, x_val, 256, device), y_val).item()
        print(f"[evaluate] {name} step {step}/{cfg.steps} loss {loss.item():.4f} val {val_loss:.4f}", file=sys.stderr)
        if val_loss < best:
            best, best_state, since_best = val_loss, copy.deepcopy(model.state_dict()), 0
        elif (since_best := since_best + 1) >= cfg.patience:
            break
    if best_state is not None:
        model.load_state_dict(best_state)
    return model.eval(), step


def train_variant(variant, encoder, x_fit, y_fit, x_val, y_val, n_classes, cfg, seed, device):
    """One supervised variant, a linear head on an encoder: returns (windows (N, 6, T) -> logits (N, K), steps)."""
    torch.manual_seed(seed)  # the head's (and the from-scratch encoder's) initialisation
    head = nn.Linear(encoder.cfg.embed_dim, n_classes)
    if variant == "probe":  # the head alone, on the frozen encoder's features computed once
        frozen = encoder.to(device).eval()
        x_fit, x_val = (predict(frozen, x, 256, device) for x in (x_fit, x_val))  # (N, 6, T) -> (N, D)
        model, groups = head, [{"params": head.parameters(), "lr": cfg.probe_lr}]
    elif variant == "finetune":  # a copy of the encoder, trained at its own (lower) learning rate
        model = nn.Sequential(copy.deepcopy(encoder), head)  # (B, 6, T) -> (B, D) -> (B, K)
        groups = [{"params": model[0].parameters(), "lr": cfg.encoder_lr}, {"params": head.parameters(), "lr": cfg.lr}]
    else:  # scratch: the same architecture, randomly initialised
        model = nn.Sequential(IMUEncoder(encoder.cfg), head)
        groups = [{"params": model.parameters(), "lr": cfg.lr}]
    model, steps = fit_classifier(model, groups, x_fit, y_fit, x_val, y_val, cfg, seed, device, variant)
    return (nn.Sequential(frozen, model).eval() if variant == "probe" else model), steps


# ----- The tasks on a checkpoint --------------------------------------------------------------------------------------

VARIANTS = ("zeroshot", "probe", "finetune", "scratch")  # activity recognition variants, in report order
TASKS = {"retrieval": ("retrieval",), "zeroshot": ("zeroshot",), "probe": ("probe",),
         "finetune": ("finetune", "scratch"), "all": ("retrieval",) + VARIANTS,
         "pretrained": ("retrieval",) + VARIANTS[:3]}  # --task -> what runs; pretrained: all but scratch
flag = data.flag


@dataclass
class EvalConfig:
    task: str = flag("all", "finetune includes from scratch; pretrained = all but from scratch", choices=list(TASKS))
    checkpoint: str = flag("", "the trained model, e.g. runs/imu-video-text/best.pt (required)")
    data: str = flag("", "dataset root; '' = the dataset the checkpoint was trained on")
    labelled: str = flag("", "labelled-IMU .npz for activity recognition instead of the dataset's labelled windows")
    out: str = flag("", "report directory; '' = <checkpoint dir>/eval")
    protocol: str = flag("full", "retrieval candidates; full: the whole test split | official: the official code's "
                                 "pool (25%% of the test recordings, <= 2 windows each), over --seeds draws",
                         choices=("full", "official"))
    pool_size: int = flag(0, "K > 0: the split cut into random pools of K candidates, over --seeds draws",
                          at_least=0)
    prompt: str = flag("{}", "zero-shot class text template, e.g. 'a person {}'; {} is the class name")
    steps: int = flag(300, "most optimizer steps per classifier (not epochs: a 40-window set gets the full budget)",
                      at_least=1)
    val_every: int = flag(20, "steps between two validation losses; the weights of the lowest one are kept", at_least=1)
    patience: int = flag(5, "early stopping: validations without a lower validation loss", at_least=1)
    fit_batch_size: int = flag(32, "windows per step of the probe / fine-tune / from-scratch training", at_least=1)
    probe_lr: float = flag(1e-2, "AdamW learning rate of the probe's linear layer (frozen features converge slowly)",
                           above=0)
    lr: float = flag(1e-3, "AdamW learning rate of the fine-tune head and of the whole from-scratch model", above=0)
    encoder_lr: float = flag(1e-4, "AdamW learning rate of the pretrained encoder when fine-tuning", above=0)
    weight_decay: float = flag(1e-4, "AdamW weight decay of the three classifiers", at_least=0)
    seeds: int = flag(1, "seeds of every supervised variant and draws of retrieval pools (mean +- std when > 1); 1 "
                         "keeps --task all about a minute", at_least=1, at_most=100)
    train_fraction: tuple = flag((1.0,), "fractions of the training labels used (several: label_efficiency.png)")
    seed: int = flag(0, "first seed (then seed+1, ...): pools, label subsets, heads, from-scratch encoders", at_least=0)
    device: str = flag("auto", "auto (cuda when available) | cpu | cuda | cuda:N")
    batch_size: int = flag(256, "windows per encoder forward pass when embedding", at_least=1)
    examples: int = flag(4, "queries drawn in retrieval_examples.png and text_queries.png", at_least=0)


def draw_pools(cfg: EvalConfig, recording_ids, gen):
    """The pools (P,) of one draw, each window of a pool queried among that pool: the whole test split (the default,
    the strictest), --pool-size K: a shuffle of the split cut into pools of K (the last N mod K windows sit this draw
    out), or --protocol official: the official code's test pool, 25% of the test recordings (rounded down, at least
    one) and at most 2 random windows of each."""
    N = len(recording_ids)
    if cfg.protocol == "official":
        rec = group_ids(recording_ids)  # (N,) the recording of each window, 0..R-1
        chosen = torch.randperm(int(rec.max()) + 1, generator=gen)[: max(1, int(0.25 * (int(rec.max()) + 1)))]
        windows = [torch.nonzero(rec == r)[:, 0] for r in chosen]  # R' x (that recording's windows,)
        return [torch.cat([w[torch.randperm(len(w), generator=gen)[:2]] for w in windows])]  # (P,), P <= 2R'
    if cfg.pool_size:
        perm, K = torch.randperm(N, generator=gen), min(cfg.pool_size, N)
        return [perm[a : a + K] for a in range(0, N - K + 1, K)]  # N // K pools of K
    return [torch.arange(N)]


def mean_std(runs):
    """{key: mean over runs, key_std: sample std (None for one run)} of runs, dicts of numbers with the same keys."""
    out = {}
    for key in runs[0]:
        values = [run[key] for run in runs]
        out[key], out[key + "_std"] = float(np.mean(values)), float(np.std(values, ddof=1)) if len(runs) > 1 else None
    return out


def task_retrieval(cfg: EvalConfig, test, imu_emb):
    """Retrieval (paper 4.2) in every direction the test windows support, in the pools of each draw (draw_pools)."""
    video, by_video = torch.as_tensor(test.video_emb), group_ids(test.video_emb)  # (N, D), (N,)
    directions = {"imu->video": (imu_emb, video, by_video), "video->imu": (video, imu_emb, by_video)}
    if test.text_emb is not None:  # text first; then transitivity: the same queries and right windows in both spaces
        text, by_text = torch.as_tensor(test.text_emb), group_ids(test.texts)
        directions = {"text->imu": (text, imu_emb, by_text), "imu->text": (imu_emb, text, by_text), **directions,
                      "text->video via imu": (text, imu_emb, by_video), "text->video (clip)": (text, video, by_video)}
    mode = "official" if cfg.protocol == "official" else "pooled" if cfg.pool_size else "full"
    seeds = range(cfg.seed, cfg.seed + (1 if mode == "full" else cfg.seeds))  # a draw per seed; the full split once
    draws = [draw_pools(cfg, test.recording_ids, torch.Generator().manual_seed(s)) for s in seeds]  # pools (P,)
    metrics = {}
    for name, (q, c, g) in directions.items():  # a draw's ranks and right counts over its pools (all of size P)
        ranks = [torch.cat([retrieval_ranks(q[p], c[p], g[p], g[p]) for p in pools]) for pools in draws]
        n_right = [torch.cat([torch.bincount(g[p])[g[p]] for p in pools]) for pools in draws]
        m = metrics[name] = mean_std([rank_metrics(r) for r in ranks])
        m["chance"] = mean_std([chance_metrics(n, len(pools[0])) for n, pools in zip(n_right, draws)])  # exact
        print(f"[evaluate] retrieval {name}: R@1 {m['R@1']:.4f} (chance {m['chance']['R@1']:.4f})", file=sys.stderr)
    return {"split": "test", "windows": len(test), "recordings": len(set(test.recording_ids)), "mode": mode,
            "pool_size": float(np.mean([len(pools[0]) for pools in draws])), "draws": len(draws), "directions": metrics}


@dataclass
class LabelledSplits:
    """Activity recognition windows: fitted on train, early-stopped on val, tested on test."""
    source: str  # where the windows come from (dataset root or .npz path)
    val_source: str  # where the validation windows come from
    class_names: tuple  # class index -> name, also the zero-shot class texts
    parts: dict  # "train" | "val" | "test" -> (windows (N, 6, T) float32, labels (N,) int64)


def activity_report(cfg, steps, encoder, clip, lab: LabelledSplits, device):
    """Activity recognition (module docstring) as metrics.json's activity section, every train fraction in it."""
    K, variants, curves = len(lab.class_names), {}, {}
    (x_train, y_train), (x_val, y_val), (x_test, y_test) = (lab.parts[p] for p in ("train", "val", "test"))
    if "zeroshot" in steps:  # each test window's nearest class-name text embedding
        class_emb = clip.embed_texts([cfg.prompt.replace("{}", name) for name in lab.class_names])  # (K, D)
        pred = zero_shot_predict(predict(encoder, x_test, cfg.batch_size, device), class_emb)  # (N_test,)
        variants["zeroshot"] = classification_metrics(y_test, pred, K)
    for variant in (v for v in VARIANTS[1:] if v in steps):  # the supervised ones
        for fraction in sorted(set(cfg.train_fraction)):
            runs = []
            for seed in range(cfg.seed, cfg.seed + cfg.seeds):
                fit, _ = data.stratified_split(y_train, 0.0, seed, fraction)  # >= 1 window per class
                model, n_steps = train_variant(variant, encoder, x_train[fit], y_train[fit], x_val, y_val, K, cfg,
                                               seed, device)
                pred = predict(model, x_test, cfg.batch_size, device).argmax(1)  # (N_test,)
                runs.append({**classification_metrics(y_test, pred, K), "steps": n_steps})
            m = curves.setdefault(variant, {})[fraction] = {
                **mean_std([{k: r[k] for k in ("accuracy", "macro_f1")} for r in runs]), "seeds": len(runs),
                "steps": float(np.mean([r["steps"] for r in runs])), "fit_windows": len(fit),
                "confusion": np.sum([r["confusion"] for r in runs], 0).tolist()}  # counts summed over the seeds
            print(f"[evaluate] {variant} on {fraction:g} of the labels: accuracy {_num(m, 'accuracy')}",
                  file=sys.stderr)
        variants[variant] = curves[variant][max(curves[variant])]
    counts = torch.bincount(y_test, minlength=K)
    return {"source": lab.source, "class_names": list(lab.class_names), "window_samples": int(x_test.shape[-1]),
            "train_windows": len(y_train), "val_windows": len(y_val), "val_source": lab.val_source,
            "test_windows": len(y_test), "train_fractions": sorted(set(cfg.train_fraction)), "seeds": cfg.seeds,
            "prompt": cfg.prompt, "variants": variants,
            "label_efficiency": {v: {str(f): {k: m[k] for k in ("accuracy", "accuracy_std", "fit_windows")}
                                     for f, m in c.items()} for v, c in curves.items()},
            "chance": {"uniform_accuracy": 1.0 / len(counts), "majority_accuracy": float(counts.max() / counts.sum())}}


# ----- Reports: pictures (PIL only), metrics.json, summary.md ---------------------------------------------------------

RIGHT, OTHER, INK = (30, 160, 60), (200, 200, 200), (20, 20, 20)  # outline of a right answer, of others; text
CURVE_COLORS = {"probe": (31, 119, 180), "finetune": (214, 39, 40), "scratch": (120, 120, 120)}
AXIS_COLORS = ((214, 39, 40), (44, 160, 44), (31, 119, 180))  # x, y, z of the IMU plots
PLOT_MARGINS = (64, 10)  # left and right margins of draw_signals' panels [px]; the recording preview aligns to them
font = ImageFont.load_default  # font(size): PIL's scalable built-in font (Pillow >= 10.1)


def _canvas(size, title):
    """A white canvas of `size` pixels with `title` at its top: (canvas, draw)."""
    canvas = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(canvas)
    draw.text((10, 8), title, fill=INK, font=font(14))
    return canvas, draw


def draw_signals(imu, width, height, title=None):
    """Plot IMU channels (6, T) as two labelled panels, acc [m/s^2] and gyro [rad/s], x/y/z in red/green/blue."""
    imu = np.asarray(imu, np.float64)
    if imu.ndim != 2 or imu.shape[0] != 6 or imu.shape[1] < 2:
        raise ValueError(f"draw_signals: expected imu of shape (6, T) with T >= 2, got {imu.shape}")
    img = Image.new("RGB", (width, height), "white")
    draw, small = ImageDraw.Draw(img), font(11)
    top = 18 if title else 4
    if title:
        draw.text((PLOT_MARGINS[0], 2), title, fill="black", font=small)
    gap = 6
    panel = (height - top - gap - 4) // 2
    x0, x1 = PLOT_MARGINS[0], width - PLOT_MARGINS[1]
    for g, (name, unit) in enumerate((("acc", "m/s^2"), ("gyro", "rad/s"))):
        y0 = top + g * (panel + gap)
        y1 = y0 + panel
        sig = imu[3 * g:3 * g + 3]
        lo, hi = float(sig.min()), float(sig.max())
        pad = max(0.05 * (hi - lo), 1e-3)
        lo, hi = lo - pad, hi + pad
        y_of = lambda v, lo=lo, hi=hi, y0=y0, y1=y1: y1 - (v - lo) / (hi - lo) * (y1 - y0)  # noqa: E731
        draw.rectangle([x0, y0, x1, y1], outline=(170, 170, 170))
        if lo < 0 < hi:
            draw.line([(x0, y_of(0.0)), (x1, y_of(0.0))], fill=(215, 215, 215))
        xs = np.linspace(x0 + 1, x1 - 1, sig.shape[1])  # (T,) one point per sample, however many per pixel column
        for c in range(3):
            draw.line(list(zip(xs.tolist(), y_of(sig[c]).tolist())), fill=AXIS_COLORS[c], width=1)
        draw.text((4, y0), f"{hi:.1f}", fill=(90, 90, 90), font=small)
        draw.text((4, y1 - 12), f"{lo:.1f}", fill=(90, 90, 90), font=small)
        draw.text((4, (y0 + y1) // 2 - 12), name, fill="black", font=small)
        draw.text((4, (y0 + y1) // 2), unit, fill=(90, 90, 90), font=small)
        for c, axis in enumerate("xyz"):
            draw.text((x1 - 50 + 16 * c, y0 + 2), axis, fill=AXIS_COLORS[c], font=small)
    return img


def _top_k(query_emb, cand_emb, groups, queries, k):
    """What a retrieval picture shows: [(query i, its rank over all candidates, [(top-k candidate c, right)])]."""
    q, c = (F.normalize(torch.as_tensor(e).float(), dim=1) for e in (query_emb[queries], cand_emb))  # (Q, D), (N, D)
    top = (q @ c.T).topk(min(k, len(c)), dim=1).indices  # (Q, N) -> (Q, k)
    ranks = retrieval_ranks(query_emb[queries], cand_emb, groups[queries], groups)  # (Q,)
    return [(i, int(ranks[r]), [(c, bool(groups[c] == groups[i])) for c in top[r].tolist()])
            for r, i in enumerate(queries)]


def draw_retrieval_examples(root, test, imu_emb, queries, k=5, tile=128):
    """IMU->Video rows: the query's IMU plot, its top-k frames, and after a gap the right one if not among them."""
    small, pad, left, cell, row_h = font(12), 10, 2 * tile + 20, tile + 18, tile + 54
    read = functools.lru_cache(None)(lambda rec_id: data.read_recording(Path(root) / rec_id))
    canvas, draw = _canvas((left + (k + 1) * cell + pad, 30 + len(queries) * row_h),
                           f"IMU -> Video: top-{k} frames per IMU query (true frame in green)")
    for n, (i, rank, shown) in enumerate(_top_k(imu_emb, test.video_emb, group_ids(test.video_emb), queries, k)):
        y = 30 + n * row_h
        canvas.paste(draw_signals(test.imu[i], 2 * tile, tile, title=test.window_ids[i]), (pad, y))
        draw.text((pad, y + tile + 4), textwrap.shorten(test.texts[i] or "(no narration)", 40), fill=INK, font=small)
        if not any(right for _, right in shown):
            shown.append((i, True))  # the right frame, after a gap
        for j, (c, right) in enumerate(shown):
            x, (rec_id, frame) = left + j * cell + (pad if j == k else 0), test.frame_index[c]
            img = Image.fromarray(np.asarray(read(rec_id).frames[frame]))  # (H, W, 3) uint8, letterboxed in the tile
            sharp = Image.NEAREST if tile > max(img.size) else Image.BILINEAR  # pixels kept sharp when enlarged
            img = ImageOps.pad(img, (tile, tile), sharp, color="black")
            canvas.paste(ImageOps.expand(img, border=4, fill=RIGHT if right else OTHER), (x, y))
            label = f"true, rank {rank}" if j == k else f"#{j + 1}" + (" (true)" if right else "")
            draw.text((x, y + tile + 10), label, fill=RIGHT if right else INK, font=small)
            draw.text((x, y + tile + 24), test.window_ids[c], fill=(120, 120, 120), font=small)
    return canvas


def draw_text_queries(test, imu_emb, queries, k=3, plot=(300, 120)):
    """Text->IMU rows: a narration query, then its top-k IMU windows as signal plots over their own narrations."""
    (w, h), big, small = plot, font(14), font(12)
    canvas, draw = _canvas((20 + k * (w + 18), 30 + len(queries) * (h + 78)),
                           f"Text -> IMU: top-{k} windows per narration query (same narration in green)")
    for n, (i, rank, shown) in enumerate(_top_k(test.text_emb, imu_emb, group_ids(test.texts), queries, k)):
        y = 30 + n * (h + 78)
        draw.text((10, y), f"query: \"{textwrap.shorten(test.texts[i], 80)}\"  (first window with this narration: "
                           f"rank {rank} of {len(test)})", fill=INK, font=big)
        for j, (c, right) in enumerate(shown):
            x, plot_img = 10 + j * (w + 18), draw_signals(test.imu[c], w, h, title=f"#{j + 1} {test.window_ids[c]}")
            canvas.paste(ImageOps.expand(plot_img, border=4, fill=RIGHT if right else OTHER), (x, y + 22))
            for m, line in enumerate(textwrap.wrap(test.texts[c], 40)[:2]):
                draw.text((x, y + 22 + h + 10 + 16 * m), line, fill=RIGHT if right else INK, font=small)
    return canvas


def draw_confusion(confusion, class_names, title, cell=44):
    """A confusion matrix (rows: true class, columns: predicted class, both numbered), shaded by share of the row."""
    m, K, big, small = np.asarray(confusion), len(class_names), font(14), font(12)
    names = [f"{c} {name}" for c, name in enumerate(class_names)]
    left, top = 30 + max(int(small.getlength(name)) for name in names), 62
    canvas, draw = _canvas((max(left + K * cell + 20, 20 + int(big.getlength(title))), top + K * cell + 20), title)
    draw.text((left + K * cell // 2, 32), "predicted class", fill=INK, font=small, anchor="mt")
    draw.text((left - 6, top - 14), "true class", fill=INK, font=small, anchor="rm")
    share = m / np.maximum(m.sum(1, keepdims=True), 1)  # (K, K) row-normalised
    for r in range(K):
        draw.text((left - 6, top + r * cell + cell // 2), names[r], fill=INK, font=small, anchor="rm")
        draw.text((left + r * cell + cell // 2, top - 4), str(r), fill=INK, font=small, anchor="mb")
        for c in range(K):
            shade = tuple(int(255 - share[r, c] * (255 - v)) for v in (31, 90, 170))  # white -> blue
            box = (left + c * cell, top + r * cell, left + (c + 1) * cell - 1, top + (r + 1) * cell - 1)
            draw.rectangle(box, fill=shade, outline=(230, 230, 230))
            draw.text((box[0] + cell // 2, box[1] + cell // 2), str(m[r, c]), anchor="mm", font=small,
                      fill="white" if share[r, c] > 0.5 else INK)
    return canvas


def draw_label_efficiency(curves, chance, title, size=(640, 400), margin=(60, 40, 150, 50)):
    """Test accuracy against the fraction of training labels (log axis), a curve per variant with error bars of
    +- std over seeds; curves: {variant: {fraction: {"accuracy", "accuracy_std"}}}; chance: a dashed line."""
    (W, H), (ml, mt, mr, mb), small = size, margin, font(12)
    fracs = sorted({f for c in curves.values() for f in c})
    lo, hi = np.log10(fracs[0]) - 0.1, np.log10(fracs[-1]) + 0.1
    x_of = lambda f: ml + (np.log10(f) - lo) / (hi - lo) * (W - ml - mr)  # noqa: E731
    y_of = lambda a: H - mb - a * (H - mt - mb)  # noqa: E731  accuracy in [0, 1]
    canvas, draw = _canvas(size, title)
    for a in (0, 0.25, 0.5, 0.75, 1):
        draw.line([(ml, y_of(a)), (W - mr, y_of(a))], fill=(225, 225, 225))
        draw.text((ml - 6, y_of(a)), f"{a:.2f}", fill=INK, font=small, anchor="rm")
    for f in fracs:
        draw.text((x_of(f), H - mb + 6), f"{f:g}", fill=INK, font=small, anchor="mt")
    draw.text(((ml + W - mr) / 2, H - 18), "fraction of training labels (log scale)", fill=INK, font=small, anchor="mm")
    for x in np.arange(ml, W - mr, 8):
        draw.line([(x, y_of(chance)), (x + 4, y_of(chance))], fill=(150, 150, 150))  # dashed
    for n, (variant, curve) in enumerate(curves.items()):
        color, pts = CURVE_COLORS.get(variant, INK), [(x_of(f), curve[f]) for f in sorted(curve)]
        draw.line([(x, y_of(m["accuracy"])) for x, m in pts], fill=color, width=2)
        for x, m in pts:
            y, y0, y1 = (y_of(m["accuracy"] + d * (m["accuracy_std"] or 0.0)) for d in (0, -1, 1))
            draw.line([(x, y0), (x, y1)], fill=color)
            draw.ellipse([x - 3, y - 3, x + 3, y + 3], fill=color)
        draw.line([(W - mr + 16, mt + 20 * n + 7), (W - mr + 36, mt + 20 * n + 7)], fill=color, width=2)
        draw.text((W - mr + 42, mt + 20 * n), variant, fill=INK, font=small)
    draw.text((W - mr + 16, mt + 20 * len(curves)), "- - chance (uniform)", fill=(150, 150, 150), font=small)
    return canvas


def activity_pictures(a, random_init):
    """confusion_<variant>.png (counts summed over seeds) and, for several fractions, label_efficiency.png."""
    pictures = {}
    for name, m in a["variants"].items():
        tag = " [CLIP RANDOM-INIT]" if random_init and name == "zeroshot" else ""
        seeds = f" ({m['seeds']} seeds, counts summed)" if m.get("seeds", 1) > 1 else ""
        pictures[f"confusion_{name}.png"] = draw_confusion(
            m["confusion"], a["class_names"], f"{name}{tag}: accuracy {_num(m, 'accuracy')}{seeds}")
    if len(a["train_fractions"]) > 1 and a["label_efficiency"]:
        curves = {v: {float(f): m for f, m in c.items()} for v, c in a["label_efficiency"].items()}
        pictures["label_efficiency.png"] = draw_label_efficiency(
            curves, a["chance"]["uniform_accuracy"], f"Activity recognition vs labels ({a['seeds']} seeds, ± std)")
    return pictures


def _num(m, key):
    """A metric as written in summary.md (4 decimals, as stored in metrics.json), with its ± std if any."""
    text = f"{m[key]:.4f}" if isinstance(m[key], float) else str(m[key])
    return f"{text} ± {m[key + '_std']:.4f}" if m.get(key + "_std") is not None else text


def _table(header, rows):
    """A markdown table (header cells, then rows of cells) and the blank line after it."""
    row = lambda cells: "| " + " | ".join(cells) + " |"  # noqa: E731
    return [row(header), "|---" * len(header) + "|", *map(row, rows), ""]


def summary_markdown(report):
    """summary.md: the metrics.json numbers as markdown tables."""
    banner, ck, clip = report["clip"]["random_init_warning"], report["checkpoint"], report["clip"]
    tag = " [CLIP RANDOM-INIT]" if banner else ""
    lines = [f"# {report['title']}", "", f"Checkpoint `{ck['path']}` (epoch {ck['epoch']}, step {ck['step']}, "
             f"trained on {ck['config'].get('modalities')}); CLIP {clip['name']} ({clip['weights_source']}).", ""]
    lines += [f"> **!!! WARNING: {banner} !!!**", ""] if banner else []
    lines += [f"> warning: {w}" for w in report["warnings"]] + ([""] if report["warnings"] else [])
    if "retrieval" in report:
        r = report["retrieval"]
        how = {"full": f"all {r['windows']} test windows as candidates",
               "pooled": f"pools of {r['pool_size']:g} random windows, mean ± std over {r['draws']} draw(s)",
               "official": f"the official pool, {r['pool_size']:g} windows on average, mean ± std over {r['draws']} "
                           f"draw(s)"}[r["mode"]]
        rows = [[row, *(_num(v, k) for k in METRIC_NAMES)]
                for name, m in r["directions"].items() for row, v in ((name, m), (f"{name} chance", m["chance"]))]
        lines += [f"## Retrieval ({r['split']} split, {r['windows']} windows of {r['recordings']} recordings, "
                  f"{report['test_recordings']['new']} new to the checkpoint; {how}; exact chance per direction)", "",
                  *_table([f"direction{tag}", *METRIC_NAMES], rows)]
        if "text->video via imu" in r["directions"]:
            lines += ["Transitivity: `text->video via imu` ranks the windows by cos(CLIP text, IMU embedding), right "
                      "= the narrated video; CLIP's own `text->video (clip)` bounds it." + (" Random-init CLIP has no "
                      "image-text alignment to transfer: `text->video (clip)` sits at chance, and so does `text->video "
                      "via imu` unless the IMU was trained on the narrations themselves." if banner else ""), ""]
    if "activity" in report:
        a = report["activity"]
        rows = [[name, _num(m, "accuracy"), _num(m, "macro_f1"), str(m.get("steps", "-"))]
                for name, m in a["variants"].items()]
        rows += [["chance (uniform)", _num(a["chance"], "uniform_accuracy"), "-", "-"],
                 ["chance (majority class)", _num(a["chance"], "majority_accuracy"), "-", "-"]]
        lines += [f"## Activity recognition ({len(a['class_names'])} classes; {a['train_windows']} train / "
                  f"{a['val_windows']} val ({a['val_source']}) / {a['test_windows']} test windows from "
                  f"`{a['source']}`; train fraction {max(a['train_fractions'])}; " +
                  (f"mean ± std over {a['seeds']} seeds)" if a["seeds"] > 1 else "1 seed: --seeds 3 for the spread)"),
                  "", *_table([f"variant{tag}", "accuracy", "macro-F1", "steps"], rows)]
        if len(a["train_fractions"]) > 1:
            curves = a["label_efficiency"]
            rows = [[str(f), *(_num(c[str(f)], "accuracy") for c in curves.values())] for f in a["train_fractions"]]
            lines += ["### Label efficiency (test accuracy)", "", *_table(["fraction of labels", *curves], rows)]
    return "\n".join(lines)


def write_reports(out, report, pictures):
    """metrics.json, summary.md and the pictures, each written atomically, then summary.md on stdout; returns the
    report as written. The metrics (not the flags) are rounded to 4 decimals first, so that both files agree."""
    report = json.loads(json.dumps({**report, "files": sorted(["metrics.json", "summary.md", *pictures])}))  # as JSON
    for part in {"retrieval", "activity"} & report.keys():  # the metrics, not the flags, to 4 decimals
        report[part] = json.loads(json.dumps(report[part]), parse_float=lambda v: round(float(v), 4))
    summary = summary_markdown(report)
    for name, image in pictures.items():
        data.atomic_write(out / name, lambda tmp, image=image: image.save(tmp, format="PNG"))
    data.atomic_write(out / "metrics.json", lambda tmp: tmp.write_text(json.dumps(report, indent=2) + "\n"))
    data.atomic_write(out / "summary.md", lambda tmp: tmp.write_text(summary + "\n"))
    print(summary)
    print(f"[evaluate] wrote {', '.join(report['files'])} to {out}", file=sys.stderr)
    return report


# ----- Command line: every check at this edge, then the tasks, then the reports ---------------------------------------

def parse_args(argv=None) -> EvalConfig:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    data.add_flags(parser, EvalConfig)
    return data.config_from(EvalConfig, parser.parse_args(argv))


def warn(report, message):
    """A warning: one line on stderr, and kept in metrics.json and summary.md."""
    print(f"warning: {message}", file=sys.stderr)
    report["warnings"].append(message)


def check_flags(cfg: EvalConfig):
    """ValueError for the first bad flag that data.add_flags' bounds do not catch (main: one `error:` line, exit 2)."""
    for bad, message in [
        (not cfg.checkpoint, "--checkpoint is required, e.g. --checkpoint runs/imu-video-text/best.pt"),
        ("{}" not in cfg.prompt, f"--prompt {cfg.prompt!r}: must contain {{}} where the class name goes"),
        (not all(0 < f <= 1 and round(f, 4) == f for f in cfg.train_fraction),
         "--train-fraction: every fraction must be in (0, 1], with at most 4 decimals (as the reports give it)"),
        (cfg.protocol == "official" and cfg.pool_size,
         "--protocol official draws its own pool: leave out --pool-size")]:
        if bad:
            raise ValueError(message)


def load_model(path, device):
    """(checkpoint, WindowConfig, frozen CLIP, IMU encoder, trained modalities); ValueError naming the file."""
    ckpt = load_checkpoint(path)
    try:
        window = data.WindowConfig(**ckpt["window"])
        encoder = encoder_from_checkpoint(ckpt).to(device)
        trained_on = parse_modalities(ckpt["config"].get("modalities", ""))
    except (KeyError, TypeError, RuntimeError, ValueError) as e:  # a config or weights model.py no longer fits
        raise ValueError(f"{path}: not usable by this evaluate.py ({str(e).splitlines()[0]})") from None
    info = ckpt["clip"]
    clip = FrozenCLIP(info["name"], weights=ckpt["config"].get("clip_weights") or None, device=str(device),
                      require_pretrained=info.get("weights_source") == "pretrained")
    if clip.fingerprint != info.get("fingerprint"):
        raise ValueError(f"{path}: trained with CLIP {info.get('fingerprint')}, but this machine gives "
                         f"{clip.fingerprint}; evaluate where the same CLIP weights are available")
    return ckpt, window, clip, encoder, trained_on


def labelled_splits(cfg, root, window, clip):
    """LabelledSplits of --labelled or of the dataset's labelled windows (module docstring); DataError when there is
    nothing to fit or test, None when the dataset has no activity labels and the task also retrieves."""
    if cfg.labelled:
        lab = data.load_labelled(cfg.labelled, rate_hz=window.rate_hz)  # DataError on a bad file
        x, y, part = lab.imu, lab.labels, lab.split.astype("<U5")  # part: "train" | "test"
        train = np.flatnonzero(part == "train")
        groups = None if lab.groups is None else lab.groups[train]  # (N_train,) recordings, or None
        part[train[data.split_off(y[train], groups, 0.2, seed=0)[1]]] = "val"  # early stopping on 20% of train
        source, names = str(cfg.labelled), lab.class_names
        val_source = "20% of train " + ("windows" if groups is None else "groups")
    else:  # the dataset's labelled windows, each in the split of its recording
        ds = data.WindowDataset(root, "all", window, clip)
        keep = np.flatnonzero(ds.labels >= 0)  # (N,) the windows inside an activity segment
        if not len(keep) and "retrieval" in TASKS[cfg.task]:
            return None  # no activity labels at all (Ego4D, Aria): load_data warns, and retrieval goes on
        x, y = ds.rows("imu", keep), ds.labels[keep]  # (N, 6, T) float32, (N,) int64
        part = np.array([data.split_of(ds.recording_ids[i], window) for i in keep])  # (N,)
        source, val_source, names = str(root), "val recordings", ds.class_names
    parts = {p: (torch.as_tensor(x[part == p]), torch.as_tensor(y[part == p])) for p in ("train", "val", "test")}
    n_fit, n_val, n_test = (len(parts[p][1]) for p in ("train", "val", "test"))
    if n_test == 0 or n_fit < 2:
        raise data.DataError(f"{source}: {n_fit} labelled windows to fit (besides {n_val} for early stopping) and "
                             f"{n_test} to test; activity recognition needs >= 2 and >= 1")
    return LabelledSplits(source, val_source, tuple(names), parts)


def load_data(cfg, report, root, path, ckpt, window, clip, trained_on):
    """The test windows and LabelledSplits TASKS[cfg.task] needs (else None); refuses seen recordings, warns."""
    steps = TASKS[cfg.task]
    if cfg.labelled and cfg.task == "retrieval":
        warn(report, "--labelled is only used by activity recognition; --task retrieval ignores it")
    test = data.WindowDataset(root, "test", window, clip) if "retrieval" in steps or not cfg.labelled else None
    if test is not None:
        ids = set(test.recording_ids)
        seen = ids & {r for part in ("train", "val") for r in ckpt["recordings"][part]}
        report["test_recordings"] = {"count": len(ids), "new": len(ids - seen)}
        if seen:
            raise ValueError(f"{path} was trained or validated on {len(seen)} of the {len(ids)} test recordings "
                             f"({', '.join(sorted(seen)[:3])}{', ...' if len(seen) > 3 else ''}): refusing to report "
                             f"numbers on seen data (another --data, or other split fractions than in training?)")
    has_text = test is not None and test.text_emb is not None
    if "text" not in trained_on and (has_text and "retrieval" in steps or "zeroshot" in steps):
        warn(report, f"{path} was trained without text ({ckpt['config']['modalities']}): its IMU space meets text "
                     f"only through CLIP's image-text alignment (transitivity)")
    if "retrieval" in steps and not has_text:
        warn(report, f"{root}: the windows have no narrations ({window.mode} windows); text directions skipped")
    lab = labelled_splits(cfg, root, window, clip) if set(steps) & set(VARIANTS) else None
    if lab is None and set(steps) & set(VARIANTS):
        warn(report, f"{root}: no window has an activity label (segments.json): activity recognition skipped")
    if lab is not None and lab.val_source.endswith("windows"):  # a labelled file without groups
        warn(report, f"{lab.source}: no groups array (the recording of each window), so its validation windows (and "
                     f"test windows, without a split array) are drawn one by one and may overlap fitted ones in time")
    if lab is not None and len(lab.parts["val"][1]) == 0:
        warn(report, f"{lab.source}: no labelled validation windows: every variant trains its full --steps")
    return test, lab


def run(cfg: EvalConfig) -> dict:
    """Run cfg.task on cfg.checkpoint and write the reports. Bad input raises ValueError (incl. DataError)."""
    check_flags(cfg)
    path, device = Path(cfg.checkpoint), resolve_device(cfg.device)  # resolve_device: model.py
    out = Path(cfg.out) if cfg.out else path.parent / "eval"
    data.lock_out(out)  # one run per --out (data.command releases it)
    ckpt, window, clip, encoder, trained_on = load_model(path, device)
    root, steps, info = Path(cfg.data or ckpt.get("data", "")), TASKS[cfg.task], clip.info()
    banner = "" if info["weights_source"] != "random-init" else (  # the loud line every report then carries
        f"CLIP {info['name']} IS RANDOM-INIT (no pretrained weights were available): text and zero-shot "
        f"results are NOT grounded in CLIP, and video results only measure agreement with a random network")
    official = cfg.protocol == "official" and "retrieval" in steps  # the report's title names the protocol
    report = {"title": "IMU2CLIP evaluation" + (": retrieval under the official protocol (25% of the test recordings, "
                                                "at most 2 windows each)" if official else ""),
              "task": cfg.task, "split": "test", "config": asdict(cfg), "device": str(device), "warnings": [],
              "checkpoint": {"path": str(path), **{k: ckpt.get(k) for k in ("step", "epoch", "data", "config",
                                                                                "window", "encoder_config")}},
              "clip": {**info, "random_init": bool(banner), "random_init_warning": banner}}
    if banner:
        print(f"warning: {banner}", file=sys.stderr)
    test, lab = load_data(cfg, report, root, path, ckpt, window, clip, trained_on)
    if lab is not None and lab.parts["test"][0].shape[-1] < encoder.min_samples():  # a --labelled file's windows
        raise data.DataError(f"{lab.source}: {lab.parts['test'][0].shape[-1]} samples per window at {window.rate_hz:g} "
                             f"Hz; the IMU encoder needs at least {encoder.min_samples()}")
    pictures = {}
    if "retrieval" in steps:
        imu_emb = predict(encoder, torch.as_tensor(test.imu), cfg.batch_size, device)  # (N, 6, T) -> (N, D)
        report["retrieval"] = task_retrieval(cfg, test, imu_emb)
        queries = np.sort(np.random.default_rng(cfg.seed).choice(len(test), min(cfg.examples, len(test)), False))
        pictures["retrieval_examples.png"] = draw_retrieval_examples(root, test, imu_emb, queries)  # --examples queries
        if test.text_emb is not None:  # the windows have narrations: the same queries as text
            pictures["text_queries.png"] = draw_text_queries(test, imu_emb, queries)
    if lab is not None:
        report["activity"] = activity_report(cfg, steps, encoder, clip, lab, device)
        pictures.update(activity_pictures(report["activity"], bool(banner)))
    return write_reports(out, report, pictures)


@data.command  # bad flags, checkpoint or data (a ValueError, data.DataError among them): one error line, exit 2
def main(argv=None):
    run(parse_args(argv))


if __name__ == "__main__":
    main()
