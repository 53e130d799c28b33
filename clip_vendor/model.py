"""The CLIP ViT family (Radford et al., 2021, "Learning Transferable Visual Models From Natural Language
Supervision", section 2.4): an image tower, a text tower and a learned temperature.

IMU2CLIP (Moon et al., 2022, section 3.1) keeps these towers frozen and trains an IMU encoder into their
joint embedding space. This file owns the architecture only; `loader.py` finds the weights.

Parameter names are OpenAI's own (`visual.conv1.weight`, `transformer.resblocks.0.attn.in_proj_weight`,
`token_embedding.weight`, `ln_final.weight`, `text_projection`, `logit_scale`, ...), so an official
checkpoint loads key for key with `load_state_dict(strict=True)`. `build_model(state_dict)` reads every
size from tensor shapes and key counts, so ViT-B/32, ViT-B/16, ViT-L/14 and ViT-L/14@336px all load
without a separate config file.

Not run directly; see `python -m pytest -q tests/test_clip_vendor.py`.
"""
import math
from collections import OrderedDict
from dataclasses import dataclass

import torch
from torch import nn

# Keys in OpenAI's TorchScript checkpoints that are integers describing the model, not parameters.
CHECKPOINT_INFO_KEYS = ("input_resolution", "context_length", "vocab_size")


@dataclass(frozen=True)
class CLIPConfig:
    """Architecture of one CLIP ViT model. Heads are not stored: CLIP always uses 64-dim heads."""

    embed_dim: int  # D: size of the joint image-text embedding space
    image_resolution: int  # R: images are (3, R, R)
    vision_layers: int  # residual attention blocks in the image tower
    vision_width: int  # token width of the image tower
    vision_patch_size: int  # P: the image is cut into (R / P) ** 2 patches of P x P pixels
    transformer_layers: int  # residual attention blocks in the text tower
    transformer_width: int  # token width of the text tower
    context_length: int = 77  # text tokens per caption, start and end tokens included
    vocab_size: int = 49408  # byte-level BPE vocabulary: 256 bytes x 2 + 48894 merges + 2 specials

    def __post_init__(self):
        if self.image_resolution % self.vision_patch_size:
            raise ValueError(
                f"image_resolution {self.image_resolution} is not a multiple of the patch size "
                f"{self.vision_patch_size}")

    @property
    def grid(self) -> int:
        """Patches per side of the image."""
        return self.image_resolution // self.vision_patch_size

    @property
    def vision_heads(self) -> int:
        """Attention heads of the image tower (64 channels each; at least one for tiny widths)."""
        return max(1, self.vision_width // 64)

    @property
    def transformer_heads(self) -> int:
        """Attention heads of the text tower (64 channels each; at least one for tiny widths)."""
        return max(1, self.transformer_width // 64)


_VIT_B = dict(embed_dim=512, image_resolution=224, vision_layers=12, vision_width=768,
              transformer_layers=12, transformer_width=512)
_VIT_L = dict(embed_dim=768, vision_layers=24, vision_width=1024, vision_patch_size=14,
              transformer_layers=12, transformer_width=768)
CONFIGS = {
    "ViT-B/32": CLIPConfig(**_VIT_B, vision_patch_size=32),
    "ViT-B/16": CLIPConfig(**_VIT_B, vision_patch_size=16),
    "ViT-L/14": CLIPConfig(**_VIT_L, image_resolution=224),
    "ViT-L/14@336px": CLIPConfig(**_VIT_L, image_resolution=336),
    # For tests and smoke runs only: no weights exist for it, so it is always random-init.
    "tiny": CLIPConfig(embed_dim=32, image_resolution=32, vision_layers=2, vision_width=64,
                       vision_patch_size=8, transformer_layers=2, transformer_width=32),
}


class QuickGELU(nn.Module):
    """x * sigmoid(1.702 x): the GELU approximation the released CLIP weights were trained with."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


class ResidualAttentionBlock(nn.Module):
    """Pre-LayerNorm transformer block: x + attn(ln_1(x)), then x + mlp(ln_2(x))."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        # nn.MultiheadAttention names its weights in_proj_weight / in_proj_bias / out_proj, as OpenAI's do.
        self.attn = nn.MultiheadAttention(width, heads, batch_first=True)
        self.ln_1 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(OrderedDict([
            ("c_fc", nn.Linear(width, 4 * width)),
            ("gelu", QuickGELU()),
            ("c_proj", nn.Linear(4 * width, width)),
        ]))
        self.ln_2 = nn.LayerNorm(width)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        y = self.ln_1(x)  # (B, L, W)
        x = x + self.attn(y, y, y, need_weights=False, attn_mask=attn_mask)[0]  # (B, L, W)
        return x + self.mlp(self.ln_2(x))  # (B, L, W) -> (B, L, 4W) -> (B, L, W)


class Transformer(nn.Module):
    """A stack of residual attention blocks; the same class serves both towers."""

    def __init__(self, width: int, layers: int, heads: int):
        super().__init__()
        self.width, self.layers = width, layers
        self.resblocks = nn.ModuleList([ResidualAttentionBlock(width, heads) for _ in range(layers)])

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        for block in self.resblocks:
            x = block(x, attn_mask)  # (B, L, W)
        return x


class VisionTransformer(nn.Module):
    """Image tower: patches -> tokens, a class token, a transformer, and the class token's projection."""

    def __init__(self, cfg: CLIPConfig):
        super().__init__()
        width = cfg.vision_width
        # A P x P convolution with stride P is a linear map of each non-overlapping patch.
        self.conv1 = nn.Conv2d(3, width, kernel_size=cfg.vision_patch_size,
                               stride=cfg.vision_patch_size, bias=False)
        self.class_embedding = nn.Parameter(torch.empty(width))
        self.positional_embedding = nn.Parameter(torch.empty(cfg.grid ** 2 + 1, width))
        self.ln_pre = nn.LayerNorm(width)
        self.transformer = Transformer(width, cfg.vision_layers, cfg.vision_heads)
        self.ln_post = nn.LayerNorm(width)
        self.proj = nn.Parameter(torch.empty(width, cfg.embed_dim))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.conv1(images)  # (B, 3, R, R) -> (B, W, g, g), g = R / P
        x = x.flatten(2).transpose(1, 2)  # (B, W, g, g) -> (B, g*g, W): one token per patch
        cls = self.class_embedding.expand(x.shape[0], 1, -1)  # (B, 1, W)
        x = torch.cat([cls, x], dim=1)  # (B, 1 + g*g, W)
        x = self.ln_pre(x + self.positional_embedding)  # (B, 1 + g*g, W)
        x = self.transformer(x)  # (B, 1 + g*g, W); no mask: every patch sees every patch
        x = self.ln_post(x[:, 0])  # (B, W): the class token summarises the image
        return x @ self.proj  # (B, W) -> (B, D)


class CLIP(nn.Module):
    """CLIP ViT: `encode_image` (B, 3, R, R) -> (B, D) and `encode_text` (B, 77) -> (B, D).

    Features are raw (not normalised), as in OpenAI's release. `forward` returns the scaled cosine
    similarities used by CLIP's contrastive objective.

    `load()` sets `name`, `weights_source` ("pretrained" | "random-init") and `sha256` on the model.
    """

    def __init__(self, cfg: CLIPConfig):
        super().__init__()
        self.config = cfg
        self.name = "custom"  # set by the loader
        self.weights_source = "random-init"  # "pretrained" once a checkpoint is loaded
        self.sha256: str | None = None  # SHA256 of the checkpoint file, None for random-init
        self.visual = VisionTransformer(cfg)
        width = cfg.transformer_width
        self.transformer = Transformer(width, cfg.transformer_layers, cfg.transformer_heads)
        self.token_embedding = nn.Embedding(cfg.vocab_size, width)
        self.positional_embedding = nn.Parameter(torch.empty(cfg.context_length, width))
        self.ln_final = nn.LayerNorm(width)
        self.text_projection = nn.Parameter(torch.empty(width, cfg.embed_dim))
        self.logit_scale = nn.Parameter(torch.empty([]))
        self.initialize_parameters()

    @property
    def embed_dim(self) -> int:
        return self.config.embed_dim

    @property
    def image_resolution(self) -> int:
        return self.config.image_resolution

    def initialize_parameters(self):
        """CLIP's own initialisation (used for random-init when the weights are unavailable).

        Text tower as in OpenAI's `initialize_parameters`: normal with std 0.02 for token embeddings,
        0.01 for positions, width^-0.5 for attention inputs and the text projection, (2 width)^-0.5 for
        the MLP input, and width^-0.5 * (2 layers)^-0.5 for the two residual output projections.
        Image tower: its embeddings and projection are normal with std width^-0.5; its blocks keep
        PyTorch's default initialisation, as in OpenAI's code.
        """
        scale = self.visual.transformer.width ** -0.5
        nn.init.normal_(self.visual.class_embedding, std=scale)
        nn.init.normal_(self.visual.positional_embedding, std=scale)
        nn.init.normal_(self.visual.proj, std=scale)

        nn.init.normal_(self.token_embedding.weight, std=0.02)
        nn.init.normal_(self.positional_embedding, std=0.01)
        width, layers = self.transformer.width, self.transformer.layers
        attn_std = width ** -0.5
        fc_std = (2 * width) ** -0.5
        proj_std = width ** -0.5 * (2 * layers) ** -0.5
        for block in self.transformer.resblocks:
            nn.init.normal_(block.attn.in_proj_weight, std=attn_std)
            nn.init.normal_(block.attn.out_proj.weight, std=proj_std)
            nn.init.normal_(block.mlp.c_fc.weight, std=fc_std)
            nn.init.normal_(block.mlp.c_proj.weight, std=proj_std)
        nn.init.normal_(self.text_projection, std=width ** -0.5)
        # Temperature 0.07, stored as log(1 / T) so that exp() keeps the scale positive.
        nn.init.constant_(self.logit_scale, math.log(1 / 0.07))

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, R, R) float, normalised with CLIP's mean and std -> (B, D) raw image features."""
        r = self.image_resolution
        if images.dim() != 4 or tuple(images.shape[1:]) != (3, r, r):
            raise ValueError(f"encode_image expects (B, 3, {r}, {r}) images, got {tuple(images.shape)}")
        return self.visual(images)

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, L) token ids from `tokenize` (L = context_length) -> (B, D) raw text features."""
        L = self.config.context_length
        if tokens.dim() != 2 or tokens.shape[1] != L:
            raise ValueError(f"encode_text expects (B, {L}) token ids, got {tuple(tokens.shape)}")
        # Pool at the end-of-text token: it has the largest id (49407), and under the causal mask it is
        # the first position that has seen the whole caption.
        eot = tokens.argmax(dim=-1)  # (B,)
        # Under the causal mask no position sees a later one, so the padding after the longest caption's
        # end-of-text token cannot change any pooled feature: run only the first n <= L positions.
        n = int(eot.max()) + 1
        x = self.token_embedding(tokens[:, :n])  # (B, n) -> (B, n, W)
        # Causal mask, additive: -inf above the diagonal, so token i attends to tokens 0..i only.
        # Made per call (n x n is tiny) rather than stored, as it is not part of OpenAI's checkpoints.
        causal = torch.full((n, n), float("-inf"), device=x.device).triu_(1)  # (n, n)
        x = self.transformer(x + self.positional_embedding[:n], causal)  # (B, n, W)
        x = self.ln_final(x)  # (B, n, W)
        x = x[torch.arange(x.shape[0], device=x.device), eot]  # (B, n, W) -> (B, W)
        return x @ self.text_projection  # (B, W) -> (B, D)

    def forward(self, images: torch.Tensor, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Scaled cosine similarities: (B_img, B_txt) logits per image and their transpose per text."""
        img = self.encode_image(images)
        img = img / img.norm(dim=-1, keepdim=True)  # (B_img, D), unit length
        txt = self.encode_text(tokens)
        txt = txt / txt.norm(dim=-1, keepdim=True)  # (B_txt, D), unit length
        logits_per_image = self.logit_scale.exp() * img @ txt.t()  # (B_img, B_txt)
        return logits_per_image, logits_per_image.t()


def config_from_state_dict(state_dict: dict[str, torch.Tensor]) -> CLIPConfig:
    """Read a CLIP ViT's architecture from the shapes and key counts of its state dict."""
    if "visual.layer1.0.conv1.weight" in state_dict:
        raise ValueError("this is a ResNet CLIP checkpoint; only the ViT models are supported")
    needed = ("visual.conv1.weight", "visual.positional_embedding", "text_projection",
              "positional_embedding", "token_embedding.weight", "ln_final.weight")
    missing = [k for k in needed if k not in state_dict]
    if missing:
        raise ValueError(f"not a CLIP ViT state dict: missing {', '.join(missing)}")
    conv1 = state_dict["visual.conv1.weight"]  # (W_vision, 3, P, P)
    patch = conv1.shape[-1]
    grid = round((state_dict["visual.positional_embedding"].shape[0] - 1) ** 0.5)  # 1 class + g*g patches
    vision_layers = sum(1 for k in state_dict
                        if k.startswith("visual.transformer.resblocks.") and k.endswith(".attn.in_proj_weight"))
    text_blocks = {k.split(".")[2] for k in state_dict if k.startswith("transformer.resblocks.")}
    return CLIPConfig(
        embed_dim=state_dict["text_projection"].shape[1],
        image_resolution=patch * grid,
        vision_layers=vision_layers,
        vision_width=conv1.shape[0],
        vision_patch_size=patch,
        transformer_layers=len(text_blocks),
        transformer_width=state_dict["ln_final.weight"].shape[0],
        context_length=state_dict["positional_embedding"].shape[0],
        vocab_size=state_dict["token_embedding.weight"].shape[0],
    )


def build_model(state_dict: dict[str, torch.Tensor]) -> CLIP:
    """Build the CLIP whose architecture the state dict implies and load it strictly (fp32, eval mode).

    Raises ValueError naming the missing, unexpected or mis-shaped keys.
    """
    state_dict = {k: v for k, v in state_dict.items() if k not in CHECKPOINT_INFO_KEYS}
    model = CLIP(config_from_state_dict(state_dict))
    expected = set(model.state_dict())
    missing, unexpected = sorted(expected - set(state_dict)), sorted(set(state_dict) - expected)
    if missing or unexpected:
        raise ValueError(
            f"state dict does not match the CLIP architecture it implies: "
            f"{len(missing)} missing keys {missing[:5]}, {len(unexpected)} unexpected keys {unexpected[:5]}")
    try:
        model.load_state_dict(state_dict, strict=True)
    except RuntimeError as e:  # shape mismatches
        raise ValueError(f"state dict does not fit the CLIP architecture it implies: {e}") from e
    model.weights_source = "pretrained"
    return model.float().eval()
