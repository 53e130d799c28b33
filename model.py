"""The IMU encoder of IMU2CLIP (Moon et al., 2022, section 3.2): a CNN-GRU that maps a window of 6-axis IMU
to one vector in the embedding space of a frozen CLIP.

    GroupNorm(acc | gyro) -> N x [dilated Conv1d (no bias) -> MaxPool1d] -> GroupNorm -> GRU over time
    -> final hidden state, sized to the CLIP embedding (512 for ViT-B/32, 768 for ViT-L/14) = the embedding

as in the official code (no activation between the blocks: max-pooling is the only non-linearity before the
GRU). Our three departures from it are options, off by default except `same_padding`: `relu`, `conv_bias` and
`projection` (a Linear after the GRU).

It also owns the checkpoint format that train.py writes and evaluate.py reads (load_checkpoint). To see the
encoder's size and shapes:

    python model.py            # prints the parameter count and output shapes for a few window lengths
    python -m pytest -q tests/test_model.py
"""
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn


@dataclass
class IMUEncoderConfig:
    in_channels: int = 6  # ax, ay, az (m/s^2), gx, gy, gz (rad/s): data.py's channel order
    in_groups: int = 2  # input GroupNorm groups: acc and gyro normalised separately (official code and paper)
    channels: int = 32  # conv width; official code
    kernel_sizes: tuple = (10, 5, 5)  # one conv block per entry; official code's three blocks
    dilation: int = 2  # conv dilation; official code
    pool_kernel: int = 3  # max-pool kernel and stride; official code uses 3, the paper's text says 5
    same_padding: bool = True  # pad convs so the length only shrinks by pooling; ours, so that a 2.5 s
    #                            window at 50 Hz (125 samples) survives three blocks (official: no padding)
    relu: bool = False  # a ReLU after each conv (ours; the official blocks have no activation)
    conv_bias: bool = False  # conv biases (ours; official: bias=False)
    feature_groups: int = 4  # GroupNorm groups on the conv features; official code's GroupNorm(4, 32)
    embed_dim: int = 512  # output size = the CLIP model's embedding size; train.py sets it from the CLIP in use
    gru_hidden: int = 0  # GRU hidden size; 0 = embed_dim (official: the final hidden state is the embedding)
    projection: bool = False  # a Linear(gru_hidden, embed_dim) after the GRU (ours); needed if gru_hidden differs

    def __post_init__(self):
        self.kernel_sizes = tuple(int(k) for k in self.kernel_sizes)  # a list after a JSON round trip
        self.gru_hidden = self.gru_hidden or self.embed_dim
        if self.gru_hidden != self.embed_dim and not self.projection:
            raise ValueError(f"gru_hidden {self.gru_hidden} != embed_dim {self.embed_dim} needs projection=True")


class ConvBlock(nn.Module):
    """Dilated Conv1d [-> ReLU] -> MaxPool1d: (B, C_in, T) -> (B, C_out, T // pool) with same padding."""

    def __init__(self, c_in, c_out, kernel, cfg: IMUEncoderConfig):
        super().__init__()
        self.conv = nn.Conv1d(c_in, c_out, kernel, dilation=cfg.dilation, padding="same" if cfg.same_padding else 0,
                              bias=cfg.conv_bias)
        self.relu = cfg.relu
        self.pool = nn.MaxPool1d(cfg.pool_kernel)

    def forward(self, x):
        x = self.conv(x)  # (B, C_in, T) -> (B, C_out, T) with same padding, else T - dilation*(kernel-1)
        x = torch.relu(x) if self.relu else x
        return self.pool(x)  # -> (B, C_out, T // pool)


class IMUEncoder(nn.Module):
    """CNN-GRU encoder of IMU2CLIP (paper section 3.2): imu (B, 6, T) -> (B, D), D = CLIP embedding size.

    Works for any window length T at least `min_samples()`; its output is not L2-normalised (loss.py does that).
    """

    def __init__(self, cfg: IMUEncoderConfig):
        super().__init__()
        self.cfg = cfg
        self.norm_in = nn.GroupNorm(cfg.in_groups, cfg.in_channels)
        widths = [cfg.in_channels] + [cfg.channels] * len(cfg.kernel_sizes)
        self.convs = nn.Sequential(*[
            ConvBlock(widths[i], widths[i + 1], k, cfg)
            for i, k in enumerate(cfg.kernel_sizes)
        ])
        self.norm_mid = nn.GroupNorm(cfg.feature_groups, cfg.channels)
        self.gru = nn.GRU(input_size=cfg.channels, hidden_size=cfg.gru_hidden, batch_first=True)
        self.proj = nn.Linear(cfg.gru_hidden, cfg.embed_dim) if cfg.projection else nn.Identity()

    def output_length(self, T: int) -> int:
        """Number of GRU steps T' for a window of T samples."""
        for k in self.cfg.kernel_sizes:
            if not self.cfg.same_padding:
                T -= self.cfg.dilation * (k - 1)
            T //= self.cfg.pool_kernel
        return T

    def min_samples(self) -> int:
        """Shortest window (in samples) that leaves at least one GRU step."""
        T = 1
        while self.output_length(T) < 1:
            T += 1
        return T

    def forward(self, imu):
        B, C, T = imu.shape  # C = 6: acc xyz, gyro xyz
        if C != self.cfg.in_channels or self.output_length(T) < 1:
            raise ValueError(f"IMUEncoder expects (B, {self.cfg.in_channels}, T) with T >= {self.min_samples()} "
                             f"samples, got {tuple(imu.shape)}")
        x = self.norm_in(imu)  # (B, 6, T): acc and gyro normalised as two groups
        x = self.convs(x)  # (B, 6, T) -> (B, 32, T')
        x = self.norm_mid(x)  # (B, 32, T')
        x = x.transpose(1, 2)  # (B, 32, T') -> (B, T', 32): the GRU runs over time
        # The official code feeds the GRU (B, channels, time) with batch_first=True, so it steps over the 32
        # channels with T' as the feature size, and only works for 1000-sample windows (where T' happens to be 32).
        assert x.shape[1] == self.output_length(T) and x.shape[2] == self.cfg.channels, "GRU must step over time"
        _, h = self.gru(x)  # h: (num_layers=1, B, hidden), the final hidden state
        return self.proj(h[-1])  # (B, D): hidden = D = CLIP embedding size (or a Linear to it)


def num_parameters(module: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


# Checkpoints: train.py writes them, evaluate.py and train.py --resume read them.
CHECKPOINT_VERSION = 2  # bumped whenever the checkpoint dict changes incompatibly; 2: lists its train/val recordings


def _first_line(error: Exception) -> str:
    """An exception as one line: torch's messages can span many, or be empty."""
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def load_checkpoint(path) -> dict:
    """A checkpoint written by train.py, loaded with weights_only=True; ValueError naming the file otherwise."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such checkpoint")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 (a damaged file raises anything from EOFError to UnpicklingError)
        raise ValueError(f"{path}: not a readable checkpoint ({_first_line(e)})") from None
    if not isinstance(ckpt, dict) or ckpt.get("version") != CHECKPOINT_VERSION:
        found = ckpt.get("version") if isinstance(ckpt, dict) else type(ckpt).__name__
        raise ValueError(f"{path}: not an IMU2CLIP checkpoint of version {CHECKPOINT_VERSION} (found {found}; "
                         f"an older train.py's: retrain)")
    missing = [k for k in ("imu_encoder", "encoder_config", "optimizer", "step", "epoch", "config", "window", "data",
                           "recordings", "clip", "metrics") if k not in ckpt]
    if missing:
        raise ValueError(f"{path}: not a complete IMU2CLIP checkpoint (missing {', '.join(missing)})")
    encoder_from_checkpoint(ckpt, path)  # its encoder must load, or fail here with one line
    return ckpt


def encoder_from_checkpoint(ckpt: dict, path="checkpoint") -> IMUEncoder:
    """The trained IMU encoder of a checkpoint dict, in eval mode, on the CPU; ValueError when it does not load
    or has non-finite weights (a diverged run must not be evaluated as if it were a model)."""
    try:
        encoder = IMUEncoder(IMUEncoderConfig(**ckpt["encoder_config"]))
        encoder.load_state_dict(ckpt["imu_encoder"])
    except (TypeError, ValueError, RuntimeError, AttributeError) as e:
        raise ValueError(f"{path}: its encoder does not match its encoder_config ({_first_line(e)})") from None
    bad = [name for name, p in encoder.state_dict().items() if not torch.isfinite(p).all()]
    if bad:
        raise ValueError(f"{path}: non-finite encoder weights in {bad[0]} (a diverged run?)")
    return encoder.eval()


def resolve_device(name):
    """--device: auto (cuda when available) | cpu | cuda | cuda:N -> torch.device; ValueError if unusable."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"--device {name}: not a device (auto, cpu, cuda, cuda:N)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {name}: CUDA is not available here")
    return device


def main():
    cfg = IMUEncoderConfig()
    encoder = IMUEncoder(cfg)
    print(f"IMUEncoder {asdict(cfg)}")
    print(f"{num_parameters(encoder):,} parameters; shortest window {encoder.min_samples()} samples")
    with torch.no_grad():
        for rate in (50, 200):
            for sec in (2.5, 5.0, 10.0):
                T = int(round(sec * rate))
                out = encoder(torch.randn(2, 6, T))
                print(f"  {sec:4.1f} s at {rate:3d} Hz: (2, 6, {T}) -> GRU steps {encoder.output_length(T)} "
                      f"-> {tuple(out.shape)}")


if __name__ == "__main__":
    main()
