"""Symmetric cross-modal InfoNCE of IMU2CLIP (Moon et al., 2022, section 3.1), on one process or many.

    L(i<->v)    = 1/2 [ CE(softmax over videos for each IMU) + CE(softmax over IMUs for each video) ]
                  with logits cos(i, v) / tau on L2-normalised embeddings
    L(i<->v<->t) = L(i<->v) + L(i<->t)

Under torch.distributed (torchrun), each process gathers the other processes' embeddings, with gradient, so
its negatives are the global batch. train.py uses it; there is no command line:

    from loss import contrastive_loss, multimodal_loss, Temperature

Tests (including the 2-process gloo check): `python -m pytest -q tests/test_loss.py`.
"""
import math

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn


TARGET_MODALITIES = ("video", "text")  # what the IMU can be aligned with


def parse_modalities(text: str) -> list:
    """'imu,video,text' -> ['video', 'text']: the target modalities the IMU is aligned with."""
    names = [m.strip() for m in text.split(",") if m.strip()]
    unknown = [m for m in names if m not in ("imu", *TARGET_MODALITIES)]
    if unknown:
        raise ValueError(f"--modalities: unknown modality {unknown[0]!r} (choose from imu, video, text)")
    if len(set(names)) < len(names):
        raise ValueError(f"--modalities {text}: a modality named twice")
    if "imu" not in names:
        raise ValueError(f"--modalities {text}: IMU2CLIP aligns the IMU with video and/or text, so imu is required")
    targets = [m for m in TARGET_MODALITIES if m in names]
    if not targets:
        raise ValueError(f"--modalities {text}: give at least one target besides imu (video, text)")
    return targets


class Temperature(nn.Module):
    """The softmax temperature tau, fixed (paper default 0.1) or learned.

    Learned, it is parametrised as log(1 / tau) (CLIP's "logit scale"), so it stays positive, and kept in
    1 <= 1 / tau <= max_scale (CLIP clamps its scale at 100) so the logits cannot blow up. The clamp is applied
    to the parameter after each optimizer step (`clamp_`), as CLIP's training does: clamping inside forward
    would zero its gradient at a bound and leave it stuck there.
    """

    def __init__(self, tau: float = 0.1, learn: bool = False, max_scale: float = 100.0):
        super().__init__()
        if not 1.0 / max_scale <= tau <= 1.0:
            raise ValueError(f"temperature must be in [{1.0 / max_scale:g}, 1], got {tau}")
        log_scale = torch.tensor(math.log(1.0 / tau))
        if learn:
            self.log_scale = nn.Parameter(log_scale)
        else:
            self.register_buffer("log_scale", log_scale)
        self.max_log_scale = math.log(max_scale)

    @torch.no_grad()
    def clamp_(self) -> None:
        self.log_scale.clamp_(0.0, self.max_log_scale)

    def forward(self) -> torch.Tensor:
        return torch.exp(-self.log_scale)  # () tau = 1 / scale


class _GatherWithGrad(torch.autograd.Function):
    """all_gather whose backward sends every process's gradient for a slice back to the process that owns it."""

    @staticmethod
    def forward(ctx, x):
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, x.contiguous())  # W x (B, D)
        return torch.cat(parts)  # (W*B, D), rank r's rows at r*B : (r+1)*B

    @staticmethod
    def backward(ctx, grad):
        grad = grad.contiguous()  # (W*B, D): this process's loss w.r.t. every process's rows
        dist.all_reduce(grad)  # summed over processes: d(sum of all losses) / d(rows)
        B = grad.shape[0] // dist.get_world_size()
        return grad[dist.get_rank() * B:(dist.get_rank() + 1) * B]  # (B, D): this process's own rows


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def contrastive_loss(a: torch.Tensor, b: torch.Tensor, temperature, gather: bool = True) -> torch.Tensor:
    """Symmetric InfoNCE between paired embeddings a[i] <-> b[i]: a (B, D), b (B, D) -> scalar.

    temperature: a positive float or 0-d tensor (e.g. `Temperature()()`).
    gather: under torch.distributed, use every process's rows as negatives (the global batch). Each process then
    scores its own B rows against all W*B; the mean of the W processes' losses equals the single-process loss on
    the concatenated batch, and with DistributedDataParallel's gradient averaging so does the gradient.
    """
    if a.dim() != 2 or b.dim() != 2:
        raise ValueError(f"contrastive_loss expects 2-D (B, D) embeddings, got {tuple(a.shape)} and {tuple(b.shape)}")
    if a.shape != b.shape:
        raise ValueError(f"contrastive_loss expects paired embeddings of the same shape, got {tuple(a.shape)} "
                         f"and {tuple(b.shape)}")
    tau = torch.as_tensor(temperature).detach()
    if tau.numel() != 1 or tau.item() <= 0:
        raise ValueError(f"temperature must be > 0, got {tau.tolist()}")
    a = F.normalize(a, dim=-1)  # (B, D), unit length: a @ b.T is the cosine similarity
    b = F.normalize(b, dim=-1)  # (B, D)
    B, offset = a.shape[0], 0
    a_all, b_all = a, b
    if gather and _distributed():
        a_all, b_all = _GatherWithGrad.apply(a), _GatherWithGrad.apply(b)  # (W*B, D) each
        offset = dist.get_rank() * B  # this process's rows start here in the global batch
    labels = torch.arange(B, device=a.device) + offset  # (B,) a[i]'s partner is b_all[offset + i]
    logits_ab = a @ b_all.T / temperature  # (B, W*B): for each a, softmax over all b
    logits_ba = b @ a_all.T / temperature  # (B, W*B): for each b, softmax over all a
    # Averaged, not summed as in the official code: the sum doubles the loss and its gradient (2x the effective
    # learning rate under SGD; under Adam it mostly changes the logged loss and where gradient clipping bites).
    return (F.cross_entropy(logits_ab, labels) + F.cross_entropy(logits_ba, labels)) / 2


def multimodal_loss(imu: torch.Tensor, targets: dict, temperature, gather: bool = True):
    """L(i<->v<->t) = L(i<->v) + L(i<->t): the IMU embedding against each target modality (paper section 3.1).

    targets: {"video": (B, D), "text": (B, D)} or a subset. Returns (total, {modality: float}).
    """
    if not targets:
        raise ValueError("multimodal_loss needs at least one target modality")
    parts = {name: contrastive_loss(imu, emb, temperature, gather) for name, emb in targets.items()}
    total = sum(parts.values())  # summed over target modalities, as in the paper
    return total, {name: part.item() for name, part in parts.items()}
