"""Finding, verifying and loading CLIP weights; CLIP's image preprocessing; and `FrozenCLIP`, the frozen
teacher whose image and text embeddings IMU2CLIP aligns IMU windows with (Moon et al., 2022, section 3.1).

    model, preprocess = clip_vendor.load("ViT-B/32")   # (model, preprocess)
    clip = clip_vendor.FrozenCLIP("ViT-B/32")          # numpy in, numpy out, batched, no gradients

Weights for a model name live in a cache folder (`~/.cache/clip`; env IMU2CLIP_CLIP_CACHE or
`download_root` override it). A missing file is downloaded from OpenAI's URL, whose path holds the file's
SHA256; the download is verified before it enters the cache. When the weights cannot be had (no network,
or env IMU2CLIP_OFFLINE=1 to skip the attempt) the same architecture is built with CLIP's initialisation
from a fixed seed, after a loud warning, and marked `weights_source == "random-init"`;
`require_pretrained=True` raises instead.

Not run directly; see `python -m pytest -q tests/test_clip_vendor.py`.
"""
import hashlib
import math
import os
import pickle
import sys
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from .model import CLIP, CONFIGS, CLIPConfig, build_model, config_from_state_dict
from .tokenizer import tokenize

# OpenAI's release. The folder name in each URL is the SHA256 of the file.
MODELS = {
    "ViT-B/32": "https://openaipublic.azureedge.net/clip/models/"
                "40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af/ViT-B-32.pt",
    "ViT-B/16": "https://openaipublic.azureedge.net/clip/models/"
                "5806e77cd80f8b59890b7e101eabd078d9fb84e6937f9e85e4ecb61988df416f/ViT-B-16.pt",
    "ViT-L/14": "https://openaipublic.azureedge.net/clip/models/"
                "b8cca3fd41ae0c99ba7e8951adf17d267cdb84cd88be6f7c2e0eca1737a03836/ViT-L-14.pt",
    "ViT-L/14@336px": "https://openaipublic.azureedge.net/clip/models/"
                      "3035c92b350959924f9f00213499208652fc7ea050643e8b385c2dac08641f02/ViT-L-14-336px.pt",
}
RANDOM_INIT_SEED = 0  # the fixed seed of the offline fallback
# Bump whenever preprocessing or tokenization changes what the embeddings of the same inputs are.
PREPROCESS_VERSION = "clip_vendor-v1"
MEAN = (0.48145466, 0.4578275, 0.40821073)  # CLIP's per-channel image statistics (RGB, in [0, 1])
STD = (0.26862954, 0.26130258, 0.27577711)


def available_models() -> list[str]:
    """Names of the official models that `load` can download."""
    return list(MODELS)


def cache_dir(download_root: str | os.PathLike | None = None) -> Path:
    """Where named weights are looked for and downloaded to."""
    root = download_root or os.environ.get("IMU2CLIP_CLIP_CACHE") or Path.home() / ".cache" / "clip"
    return Path(root).expanduser()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def download(url: str, dest: Path, expected_sha256: str) -> Path:
    """Download `url` to `dest` atomically: into `dest.tmp-<pid>`, checked, then renamed.

    Raises OSError when the transfer fails and ValueError on a SHA256 mismatch; neither leaves a file.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f"{dest.name}.tmp-{os.getpid()}")
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(tmp, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0)
            done, reported = 0, 0
            print(f"[clip_vendor] downloading {url} -> {dest}", file=sys.stderr)
            for block in iter(lambda: response.read(1 << 20), b""):
                out.write(block)
                digest.update(block)
                done += len(block)
                if total and done * 10 // total > reported:
                    reported = done * 10 // total
                    print(f"[clip_vendor]   {done >> 20} / {total >> 20} MiB", file=sys.stderr)
        if digest.hexdigest() != expected_sha256:
            raise ValueError(f"{url}: SHA256 mismatch (got {digest.hexdigest()}, expected {expected_sha256}); "
                             f"the download was discarded")
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def is_torchscript(path: Path) -> bool:
    """True for a TorchScript archive (OpenAI's .pt format), False for a torch.save file.

    Both are zip files; only TorchScript archives hold `constants.pkl` (and a `code/` folder). Deciding
    from the archive's listing means neither loader is ever tried on the other's format.
    """
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(name.endswith("/constants.pkl") for name in archive.namelist())


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Tensors of a checkpoint file, without unpickling arbitrary objects."""
    try:
        if is_torchscript(path):
            state_dict = torch.jit.load(path, map_location="cpu").state_dict()
        else:
            state_dict = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:  # weights_only=True refused to rebuild an arbitrary object
        raise ValueError(f"{path}: not a plain state dict (refusing to unpickle objects): {e}") from e
    except (RuntimeError, OSError, EOFError, zipfile.BadZipFile) as e:
        raise ValueError(f"{path}: cannot read CLIP weights: {e}") from e
    if not isinstance(state_dict, dict) or not all(isinstance(v, torch.Tensor) for v in state_dict.values()):
        raise ValueError(f"{path}: expected a state dict of tensors, got {type(state_dict).__name__}")
    return dict(state_dict)


@dataclass(frozen=True)
class Weights:
    """Where a model's weights come from, decided before any network is built."""

    name: str  # model name, or the file path as given
    config: CLIPConfig  # architecture
    path: Path | None  # checkpoint file; None means random-init
    sha256: str | None  # SHA256 of that file; None for random-init

    @property
    def source(self) -> str:
        return "random-init" if self.path is None else "pretrained"


def _warn_random_init(name: str, reason: str, dest: Path, url: str):
    bar = "=" * 78
    print(f"""{bar}
WARNING: the pretrained CLIP {name} weights are not available ({reason}).
Using CLIP {name} RANDOMLY INITIALISED from seed {RANDOM_INIT_SEED} instead. Its embeddings are NOT
CLIP's: every checkpoint and metric made with it is marked weights_source="random-init".
  To use the real weights, put {dest.name} in {dest.parent}
    (from {url}),
    or point env IMU2CLIP_CLIP_CACHE (or download_root) at the folder that holds it.
  To skip the download attempt, set env IMU2CLIP_OFFLINE=1.
  To fail instead of falling back, pass require_pretrained=True (train.py --require-pretrained).
{bar}""", file=sys.stderr)


def resolve(name_or_path: str | os.PathLike = "ViT-B/32", weights: str | os.PathLike | None = None,
            download_root: str | os.PathLike | None = None, require_pretrained: bool = False) -> Weights:
    """Decide where the weights come from: a local file, the cache, a download, or random-init.

    `name_or_path` is a name in CONFIGS or a checkpoint file; `weights` optionally gives the file for a
    name. Nothing is built here; only files are found, downloaded and hashed.
    """
    name = str(name_or_path)
    if name not in CONFIGS:
        path = Path(name_or_path)
        if weights is not None:
            raise ValueError(f"{name}: weights= goes with a model name ({', '.join(CONFIGS)}), not a file")
        if not path.is_file():
            raise ValueError(f"{name}: neither a CLIP model name ({', '.join(CONFIGS)}) nor a checkpoint file")
        state_dict = read_state_dict(path)
        try:
            config = config_from_state_dict(state_dict)
        except ValueError as e:
            raise ValueError(f"{path}: {e}") from e
        return Weights(name, config, path, sha256_file(path))
    config = CONFIGS[name]
    if weights is not None:
        path = Path(weights)
        if not path.is_file():
            problem = "is not a regular file" if path.exists() else "not found"  # (a device, a FIFO, a directory)
            raise ValueError(f"{path}: CLIP weights file {problem}")
        return Weights(name, config, path, sha256_file(path))
    if name not in MODELS:
        if require_pretrained:
            raise ValueError(f"{name}: no pretrained weights exist for this model")
        return Weights(name, config, None, None)

    url = MODELS[name]
    expected = url.split("/")[-2]
    dest = cache_dir(download_root) / url.split("/")[-1]
    problem = "is missing"
    if dest.is_file():
        found = sha256_file(dest)
        if found == expected:
            return Weights(name, config, dest, found)
        problem = f"has SHA256 {found}, not {expected}"
        print(f"[clip_vendor] {dest} {problem}; fetching it again", file=sys.stderr)
    if os.environ.get("IMU2CLIP_OFFLINE") == "1":
        reason = f"{dest} {problem} and IMU2CLIP_OFFLINE=1 is set"
    else:
        try:
            return Weights(name, config, download(url, dest, expected), expected)
        except OSError as e:  # includes urllib's URLError and timeouts
            reason = f"{dest} {problem} and the download failed: {e}"
    if require_pretrained:
        raise ValueError(f"{name}: pretrained weights required, but {reason}. Put {dest.name} "
                         f"(from {url}) in {dest.parent}, or set IMU2CLIP_CLIP_CACHE to its folder.")
    _warn_random_init(name, reason, dest, url)
    return Weights(name, config, None, None)


def build(weights: Weights, device: str | torch.device = "cpu") -> CLIP:
    """The frozen fp32 model for resolved weights: eval mode, no gradients."""
    if weights.path is None:
        # A private RNG stream: the same weights every time, and the caller's RNG state is left untouched.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(RANDOM_INIT_SEED)
            model = CLIP(weights.config)
    else:
        state_dict = read_state_dict(weights.path)
        try:
            model = build_model(state_dict)
        except ValueError as e:
            raise ValueError(f"{weights.path}: {e}") from e
        if model.config != weights.config:
            raise ValueError(f"{weights.path}: holds a CLIP with {model.config}, not {weights.name}")
    model.name, model.weights_source, model.sha256 = weights.name, weights.source, weights.sha256
    return model.float().requires_grad_(False).eval().to(device)


class Preprocess:
    """uint8 frames -> CLIP input: numpy (B, H, W, 3) or tensor (B, 3, H, W) -> float (B, 3, R, R).

    As OpenAI's transform: the shortest side is resized to R (bicubic, antialiased), the centre R x R is
    cropped, pixels are scaled to [0, 1] and normalised with CLIP's mean and std. The whole batch goes
    through torchvision's tensor ops at once.
    """

    def __init__(self, resolution: int):
        self.resolution = resolution

    def __call__(self, frames: np.ndarray | torch.Tensor) -> torch.Tensor:
        if isinstance(frames, np.ndarray):
            if frames.ndim != 4 or frames.shape[-1] != 3:
                raise ValueError(f"preprocess expects numpy frames (B, H, W, 3), got {frames.shape}")
            # np.array copies, so read-only memmaps are fine.
            x = torch.from_numpy(np.array(frames)).permute(0, 3, 1, 2)  # (B, H, W, 3) -> (B, 3, H, W)
        elif isinstance(frames, torch.Tensor):
            if frames.dim() != 4 or frames.shape[1] != 3:
                raise ValueError(f"preprocess expects tensor frames (B, 3, H, W), got {tuple(frames.shape)}")
            x = frames
        else:
            raise ValueError(f"preprocess expects a numpy array or a tensor, got {type(frames).__name__}")
        if x.dtype != torch.uint8:
            raise ValueError(f"preprocess expects uint8 frames, got {x.dtype}")
        R = self.resolution
        x = TF.resize(x, [R], interpolation=InterpolationMode.BICUBIC, antialias=True)  # shortest side -> R
        x = TF.center_crop(x, [R, R])  # (B, 3, R, R)
        x = TF.to_dtype(x, torch.float32, scale=True)  # uint8 [0, 255] -> float [0, 1]
        return TF.normalize(x, MEAN, STD)  # (B, 3, R, R)


def load(name_or_path: str | os.PathLike = "ViT-B/32", device: str | torch.device = "cpu",
         download_root: str | os.PathLike | None = None,
         require_pretrained: bool = False) -> tuple[CLIP, Preprocess]:
    """(model, preprocess) for a model name (see `available_models()`, or "tiny") or a checkpoint file.

    The model is fp32, in eval mode, with gradients off, and carries `name`, `weights_source`
    ("pretrained" | "random-init"), `sha256`, `embed_dim` and `image_resolution`.
    """
    model = build(resolve(name_or_path, None, download_root, require_pretrained), device)
    return model, Preprocess(model.image_resolution)


class FrozenCLIP:
    """The frozen CLIP teacher: numpy uint8 frames or strings in, float32 numpy embeddings out.

    The weights are resolved (found, hashed, or the random-init fallback decided) at construction; the
    network is built on the first embed call, so code that only needs `fingerprint` (e.g. to check an
    embedding cache) never builds it.
    """

    def __init__(self, name: str = "ViT-B/32", weights: str | os.PathLike | None = None,
                 device: str | torch.device = "cpu", download_root: str | os.PathLike | None = None,
                 require_pretrained: bool = False, batch_size: int = 64):
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.weights = resolve(name, weights, download_root, require_pretrained)
        self.device = torch.device(device)
        self.batch_size = batch_size
        self._model: CLIP | None = None
        self.preprocess = Preprocess(self.weights.config.image_resolution)

    @property
    def name(self) -> str:
        return self.weights.name

    @property
    def weights_source(self) -> str:
        return self.weights.source  # "pretrained" | "random-init"

    @property
    def sha256(self) -> str | None:
        return self.weights.sha256

    @property
    def embed_dim(self) -> int:
        return self.weights.config.embed_dim

    @property
    def image_resolution(self) -> int:
        return self.weights.config.image_resolution

    @property
    def fingerprint(self) -> str:
        """Changes whenever the embeddings of the same inputs would change."""
        weights = self.sha256 or f"random-init:seed={RANDOM_INIT_SEED}"
        return f"{self.name}|{weights}|res={self.image_resolution}|{PREPROCESS_VERSION}"

    def info(self) -> dict:
        """What checkpoints and metrics record about the teacher."""
        return {"name": self.name, "weights_source": self.weights_source, "sha256": self.sha256,
                "fingerprint": self.fingerprint}

    @property
    def model(self) -> CLIP:
        if self._model is None:
            self._model = build(self.weights, self.device)
        return self._model

    def _embed(self, items, n: int, what: str, encode) -> np.ndarray:
        out = np.empty((n, self.embed_dim), dtype=np.float32)
        n_batches = math.ceil(n / self.batch_size)
        every = math.ceil(n_batches / 10)  # about ten progress lines for long jobs
        with torch.inference_mode():
            for b, start in enumerate(range(0, n, self.batch_size)):
                stop = min(start + self.batch_size, n)
                out[start:stop] = encode(items[start:stop]).float().cpu().numpy()
                if n_batches > 4 and ((b + 1) % every == 0 or stop == n):
                    print(f"[clip_vendor] {self.name}: embedded {stop}/{n} {what}", file=sys.stderr)
        return out

    def embed_images(self, frames: np.ndarray) -> np.ndarray:
        """uint8 frames (N, H, W, 3) -> float32 (N, D) raw CLIP image features."""
        if not isinstance(frames, np.ndarray) or frames.ndim != 4 or frames.shape[-1] != 3:
            raise ValueError(f"embed_images expects a numpy array (N, H, W, 3), got "
                             f"{getattr(frames, 'shape', type(frames).__name__)}")
        model = self.model
        return self._embed(frames, len(frames), "frames",
                           lambda batch: model.encode_image(self.preprocess(batch).to(self.device)))

    def embed_texts(self, texts: list[str]) -> np.ndarray:
        """Strings (N,) -> float32 (N, D) raw CLIP text features (over-long texts are truncated)."""
        if isinstance(texts, str) or not all(isinstance(t, str) for t in texts):
            raise ValueError("embed_texts expects a list of strings")
        model = self.model
        context = self.weights.config.context_length
        return self._embed(list(texts), len(texts), "texts",
                           lambda batch: model.encode_text(tokenize(batch, context).to(self.device)))
