"""Tests of clip_vendor: architecture parity with a functional re-derivation of OpenAI's ViT CLIP from its
state-dict key names, strict loading, TorchScript archives, verified downloads, the offline fallback,
preprocessing parity with the PIL pipeline, and tokenizer ids checked against the vocabulary file.

Run: `python -m pytest -q tests/test_clip_vendor.py` (CPU, no network).
"""
import gzip
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import clip_vendor
from clip_vendor import loader
from clip_vendor.model import CLIP, CLIPConfig, config_from_state_dict
from clip_vendor.tokenizer import VOCAB_FILE

SOT, EOT = 49406, 49407


# ----------------------------------------------------------------------------------------------------------
# OpenAI's ViT CLIP, written from its checkpoint's key names and shapes, independently of clip_vendor.model.

def official_state_dict(vision_width, vision_layers, patch, grid, embed_dim, text_width, text_layers,
                        context=77, vocab=49408, seed=0):
    """A state dict with OpenAI's key names and shapes (as in the released ViT .pt files)."""
    g = torch.Generator().manual_seed(seed)

    def normal(*shape, std=0.02):
        return torch.empty(*shape).normal_(0, std, generator=g)

    def blocks(prefix, width, layers):
        out = {}
        for i in range(layers):
            p = f"{prefix}resblocks.{i}."
            out |= {
                p + "attn.in_proj_weight": normal(3 * width, width), p + "attn.in_proj_bias": normal(3 * width),
                p + "attn.out_proj.weight": normal(width, width), p + "attn.out_proj.bias": normal(width),
                p + "ln_1.weight": 1 + normal(width, std=0.1), p + "ln_1.bias": normal(width, std=0.1),
                p + "mlp.c_fc.weight": normal(4 * width, width), p + "mlp.c_fc.bias": normal(4 * width),
                p + "mlp.c_proj.weight": normal(width, 4 * width), p + "mlp.c_proj.bias": normal(width),
                p + "ln_2.weight": 1 + normal(width, std=0.1), p + "ln_2.bias": normal(width, std=0.1),
            }
        return out

    sd = {
        "positional_embedding": normal(context, text_width, std=0.01),
        "text_projection": normal(text_width, embed_dim, std=text_width ** -0.5),
        "logit_scale": torch.tensor(math.log(100.0)),
        "visual.class_embedding": normal(vision_width, std=vision_width ** -0.5),
        "visual.positional_embedding": normal(grid * grid + 1, vision_width, std=vision_width ** -0.5),
        "visual.proj": normal(vision_width, embed_dim, std=vision_width ** -0.5),
        "visual.conv1.weight": normal(vision_width, 3, patch, patch),
        "visual.ln_pre.weight": 1 + normal(vision_width, std=0.1), "visual.ln_pre.bias": normal(vision_width),
        "visual.ln_post.weight": 1 + normal(vision_width, std=0.1), "visual.ln_post.bias": normal(vision_width),
        "token_embedding.weight": normal(vocab, text_width),
        "ln_final.weight": 1 + normal(text_width, std=0.1), "ln_final.bias": normal(text_width),
        # Integers that OpenAI's TorchScript checkpoints carry besides the parameters.
        "input_resolution": torch.tensor(patch * grid), "context_length": torch.tensor(context),
        "vocab_size": torch.tensor(vocab),
    }
    return sd | blocks("visual.transformer.", vision_width, vision_layers) | blocks("transformer.", text_width,
                                                                                   text_layers)


def ref_block(x, sd, p, mask=None):
    """One pre-LN block: x + attn(ln_1 x), x + mlp(ln_2 x), attention written out by hand (64-dim heads)."""
    B, L, W = x.shape
    h = max(1, W // 64)
    y = F.layer_norm(x, (W,), sd[p + "ln_1.weight"], sd[p + "ln_1.bias"])
    q, k, v = (y @ sd[p + "attn.in_proj_weight"].T + sd[p + "attn.in_proj_bias"]).split(W, dim=-1)
    q, k, v = (t.reshape(B, L, h, W // h).transpose(1, 2) for t in (q, k, v))  # (B, h, L, d)
    att = q @ k.transpose(-1, -2) / math.sqrt(W // h)
    if mask is not None:
        att = att + mask
    o = (att.softmax(-1) @ v).transpose(1, 2).reshape(B, L, W)
    x = x + o @ sd[p + "attn.out_proj.weight"].T + sd[p + "attn.out_proj.bias"]
    y = F.layer_norm(x, (W,), sd[p + "ln_2.weight"], sd[p + "ln_2.bias"])
    y = y @ sd[p + "mlp.c_fc.weight"].T + sd[p + "mlp.c_fc.bias"]
    y = y * torch.sigmoid(1.702 * y)
    return x + y @ sd[p + "mlp.c_proj.weight"].T + sd[p + "mlp.c_proj.bias"]


def n_blocks(sd, prefix):
    return len({k[len(prefix):].split(".")[0] for k in sd if k.startswith(prefix)})


def ref_encode_image(sd, images):
    w = sd["visual.conv1.weight"]
    x = F.conv2d(images, w, stride=w.shape[-1]).flatten(2).transpose(1, 2)
    x = torch.cat([sd["visual.class_embedding"].expand(len(x), 1, -1), x], 1) + sd["visual.positional_embedding"]
    x = F.layer_norm(x, x.shape[-1:], sd["visual.ln_pre.weight"], sd["visual.ln_pre.bias"])
    for i in range(n_blocks(sd, "visual.transformer.resblocks.")):
        x = ref_block(x, sd, f"visual.transformer.resblocks.{i}.")
    x = F.layer_norm(x[:, 0], x.shape[-1:], sd["visual.ln_post.weight"], sd["visual.ln_post.bias"])
    return x @ sd["visual.proj"]


def ref_encode_text(sd, tokens):
    L = tokens.shape[1]
    x = sd["token_embedding.weight"][tokens] + sd["positional_embedding"]
    mask = torch.zeros(L, L).masked_fill(torch.ones(L, L, dtype=torch.bool).triu(1), float("-inf"))
    for i in range(n_blocks(sd, "transformer.resblocks.")):
        x = ref_block(x, sd, f"transformer.resblocks.{i}.", mask)
    x = F.layer_norm(x, x.shape[-1:], sd["ln_final.weight"], sd["ln_final.bias"])
    eot = torch.tensor([row.tolist().index(EOT) for row in tokens])
    return x[torch.arange(len(x)), eot] @ sd["text_projection"]


def tiny_state_dict(seed=0):
    return official_state_dict(64, 2, 8, 4, 32, 32, 2, seed=seed)


def random_images(n, size, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, size, size, generator=g)


TEXTS = ["a person walks along the path in the park", "someone sits down on a bench", ""]


# ----------------------------------------------------------------------------------------------------------
# Architecture

def test_configs_have_the_official_parameter_counts():
    # Published totals of OpenAI's models (e.g. the CLIP notebook prints 151,277,313 for ViT-B/32).
    expected = {"ViT-B/32": 151_277_313, "ViT-B/16": 149_620_737, "ViT-L/14": 427_616_513,
                "ViT-L/14@336px": 427_944_193}
    assert clip_vendor.available_models() == list(expected)
    for name, count in expected.items():
        with torch.device("meta"):  # shapes only: no memory, no time
            model = CLIP(clip_vendor.CONFIGS[name])
        assert sum(p.numel() for p in model.parameters()) == count, name


@pytest.mark.parametrize("name", ["ViT-B/32", "ViT-B/16", "ViT-L/14", "ViT-L/14@336px"])
def test_build_model_infers_each_official_geometry_and_matches_reference(name):
    official = clip_vendor.CONFIGS[name]
    grid = official.image_resolution // official.vision_patch_size
    sd = official_state_dict(128, 1, official.vision_patch_size, grid, 48, 64, 2, seed=1)
    model = clip_vendor.build_model(sd)
    assert model.config == CLIPConfig(embed_dim=48, image_resolution=official.image_resolution,
                                      vision_layers=1, vision_width=128,
                                      vision_patch_size=official.vision_patch_size, transformer_layers=2,
                                      transformer_width=64, context_length=77, vocab_size=49408)
    assert model.weights_source == "pretrained" and not model.training
    images = random_images(2, official.image_resolution)
    tokens = clip_vendor.tokenize(TEXTS[:2])
    with torch.inference_mode():
        img, txt = model.encode_image(images), model.encode_text(tokens)
    assert img.shape == (2, 48) and txt.shape == (2, 48)
    torch.testing.assert_close(img, ref_encode_image(sd, images), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(txt, ref_encode_text(sd, tokens), atol=1e-4, rtol=1e-4)


def test_vit_b32_with_official_keys_loads_strict_and_encodes():
    sd = official_state_dict(768, 12, 32, 7, 512, 512, 12)
    model = clip_vendor.build_model(sd)
    assert model.config == clip_vendor.CONFIGS["ViT-B/32"]
    images, tokens = random_images(2, 224), clip_vendor.tokenize(TEXTS[:2])
    with torch.inference_mode():
        img, txt = model.encode_image(images), model.encode_text(tokens)
        torch.testing.assert_close(img, ref_encode_image(sd, images), atol=1e-3, rtol=1e-3)
        torch.testing.assert_close(txt, ref_encode_text(sd, tokens), atol=1e-3, rtol=1e-3)
    assert img.shape == (2, 512) and txt.shape == (2, 512)


def test_strict_loading_names_missing_unexpected_and_misshaped_keys():
    sd = tiny_state_dict()
    missing = {k: v for k, v in sd.items() if k != "visual.ln_post.bias"}
    with pytest.raises(ValueError, match=r"1 missing keys \['visual.ln_post.bias'\]"):
        clip_vendor.build_model(missing)
    with pytest.raises(ValueError, match=r"1 unexpected keys \['visual.extra'\]"):
        clip_vendor.build_model(sd | {"visual.extra": torch.zeros(1)})
    with pytest.raises(ValueError, match="transformer.resblocks.0.ln_1.weight"):
        clip_vendor.build_model(sd | {"transformer.resblocks.0.ln_1.weight": torch.ones(33)})
    with pytest.raises(ValueError, match="ResNet"):
        clip_vendor.build_model(sd | {"visual.layer1.0.conv1.weight": torch.zeros(1)})
    with pytest.raises(ValueError, match="missing visual.conv1.weight"):
        config_from_state_dict({k: v for k, v in sd.items() if k != "visual.conv1.weight"})


def test_text_tower_runs_only_up_to_the_longest_caption_and_matches_the_full_pass():
    """The speed-up: the transformer sees the first n = (longest caption + 1) positions, not all 77, and the
    features equal the reference's full 77-position pass."""
    sd = tiny_state_dict(seed=3)
    model = clip_vendor.build_model(sd)
    tokens = clip_vendor.tokenize(["a person walks", "c picks up the cup from the kitchen table and looks at it", ""])
    longest = int(tokens.argmax(dim=-1).max()) + 1
    seen = []
    model.transformer.register_forward_hook(lambda module, args, out: seen.append(out.shape[1]))
    with torch.inference_mode():
        txt = model.encode_text(tokens)
    assert seen == [longest] and longest < 20
    torch.testing.assert_close(txt, ref_encode_text(sd, tokens), atol=1e-5, rtol=1e-5)


def test_text_features_pool_at_end_of_text_under_a_causal_mask():
    model, _ = clip_vendor.load("tiny")
    tokens = clip_vendor.tokenize(["a cat on a mat", "a dog"])
    after_eot = tokens.clone()
    after_eot[:, 10:] = 1234  # tokens after <|endoftext|> are never seen by it
    before_eot = tokens.clone()
    before_eot[0, 2] = 1234
    with torch.inference_mode():
        base = model.encode_text(tokens)
        torch.testing.assert_close(model.encode_text(after_eot), base)
        assert not torch.allclose(model.encode_text(before_eot)[0], base[0])
        logits_per_image, logits_per_text = model(random_images(3, 32), tokens)
        img = F.normalize(model.encode_image(random_images(3, 32)), dim=-1)
        torch.testing.assert_close(logits_per_image, (1 / 0.07) * img @ F.normalize(base, dim=-1).T)
        torch.testing.assert_close(logits_per_text, logits_per_image.T)
    with pytest.raises(ValueError, match=r"\(B, 3, 32, 32\)"):
        model.encode_image(random_images(1, 64))


# ----------------------------------------------------------------------------------------------------------
# Files: plain state dicts, TorchScript archives, downloads, the offline fallback

@pytest.mark.filterwarnings("ignore")  # torch.jit deprecation and tracer warnings
def test_torchscript_archive_loads_to_the_same_outputs(tmp_path):
    sd = tiny_state_dict(seed=2)
    plain, scripted = tmp_path / "plain.pt", tmp_path / "scripted.pt"
    torch.save(sd, plain)
    module = clip_vendor.build_model(sd)
    module.register_buffer("input_resolution", torch.tensor(32))  # as OpenAI's archives carry it
    images, tokens = random_images(2, 32), clip_vendor.tokenize(TEXTS)
    torch.jit.save(torch.jit.trace(module, (images, tokens[:2])), scripted)
    assert loader.is_torchscript(scripted) and not loader.is_torchscript(plain)

    a, pre = clip_vendor.load(plain)
    b, _ = clip_vendor.load(scripted)
    assert a.weights_source == b.weights_source == "pretrained"
    assert a.sha256 == loader.sha256_file(plain) and b.sha256 == loader.sha256_file(scripted)
    assert pre.resolution == 32 and a.config == b.config == clip_vendor.CONFIGS["tiny"]
    with torch.inference_mode():
        torch.testing.assert_close(b.encode_image(images), a.encode_image(images))
        torch.testing.assert_close(b.encode_text(tokens), a.encode_text(tokens))
        torch.testing.assert_close(a.encode_image(images), ref_encode_image(sd, images), atol=1e-5, rtol=1e-5)


class NotATensor:
    pass


def test_plain_files_are_never_unpickled_as_objects(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"visual.conv1.weight": NotATensor()}, path)
    with pytest.raises(ValueError, match="evil.pt"):
        clip_vendor.load(path)
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="junk.pt"):
        clip_vendor.load(tmp_path / "junk.pt")
    with pytest.raises(ValueError, match="neither a CLIP model name"):
        clip_vendor.load(tmp_path / "missing.pt")


def published(tmp_path, sd, sha=None):
    """A state dict served from a file:// URL whose folder is named by a SHA256, like OpenAI's URLs."""
    torch.save(sd, tmp_path / "src.pt")
    folder = tmp_path / "server" / (sha or loader.sha256_file(tmp_path / "src.pt"))
    folder.mkdir(parents=True)
    (tmp_path / "src.pt").rename(folder / "weights.pt")
    return (folder / "weights.pt").as_uri()


@pytest.fixture
def online(monkeypatch, tmp_path):
    """No IMU2CLIP_OFFLINE, and an empty cache folder named by IMU2CLIP_CLIP_CACHE."""
    monkeypatch.delenv("IMU2CLIP_OFFLINE", raising=False)
    monkeypatch.setenv("IMU2CLIP_CLIP_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_sha256_mismatch_is_an_error_and_leaves_no_file(online, tmp_path, monkeypatch):
    monkeypatch.setitem(loader.MODELS, "ViT-B/32", published(tmp_path, tiny_state_dict(), sha="0" * 64))
    with pytest.raises(ValueError, match="SHA256 mismatch"):
        clip_vendor.FrozenCLIP("ViT-B/32")
    assert list(online.iterdir()) == []


def test_verified_download_is_cached_and_embeds_its_weights(online, tmp_path, monkeypatch):
    sd = tiny_state_dict(seed=3)
    random_init_fingerprint = clip_vendor.FrozenCLIP("tiny").fingerprint
    monkeypatch.setitem(loader.MODELS, "tiny", published(tmp_path, sd))
    clip = clip_vendor.FrozenCLIP("tiny")
    assert clip.weights_source == "pretrained" and clip._model is None
    assert [p.name for p in online.iterdir()] == ["weights.pt"]
    assert clip.sha256 == loader.sha256_file(online / "weights.pt") and clip.sha256 in clip.fingerprint
    assert clip.fingerprint != random_init_fingerprint
    frames = np.random.default_rng(0).integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)
    expected = ref_encode_image(sd, clip.preprocess(frames))
    np.testing.assert_allclose(clip.embed_images(frames), expected.numpy(), atol=1e-5, rtol=1e-5)
    # The cached copy is used from now on: the source may disappear.
    for p in (tmp_path / "server").rglob("*.pt"):
        p.unlink()
    assert clip_vendor.FrozenCLIP("tiny").sha256 == clip.sha256


def test_offline_fallback_is_loud_seeded_and_marked_random_init(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("IMU2CLIP_OFFLINE", "1")
    monkeypatch.setenv("IMU2CLIP_CLIP_CACHE", str(tmp_path))
    clip = clip_vendor.FrozenCLIP("ViT-B/32")
    warning = capsys.readouterr().err
    assert "RANDOMLY INITIALISED" in warning and "IMU2CLIP_OFFLINE" in warning and str(tmp_path) in warning
    assert warning.count("\n") > 5
    assert clip.info() == {"name": "ViT-B/32", "weights_source": "random-init", "sha256": None,
                           "fingerprint": clip.fingerprint}
    assert "random-init:seed=0" in clip.fingerprint and "res=224" in clip.fingerprint
    assert clip._model is None and clip.embed_dim == 512  # nothing built yet
    with pytest.raises(ValueError, match="pretrained weights required"):
        clip_vendor.FrozenCLIP("ViT-B/32", require_pretrained=True)

    torch.manual_seed(1)
    expected_draw = torch.rand(3)
    torch.manual_seed(1)
    model, preprocess = clip_vendor.load("ViT-B/32")
    assert torch.equal(torch.rand(3), expected_draw)  # the caller's RNG is untouched
    assert model.weights_source == "random-init" and model.sha256 is None and model.name == "ViT-B/32"
    assert model.config == clip_vendor.CONFIGS["ViT-B/32"] and preprocess.resolution == 224
    assert not any(p.requires_grad for p in model.parameters()) and not model.training
    # CLIP's initialisation (std of each group) and temperature.
    width, layers = 512, 12
    block = model.transformer.resblocks[0]
    for tensor, std in [(model.token_embedding.weight, 0.02), (model.positional_embedding, 0.01),
                        (block.attn.in_proj_weight, width ** -0.5), (block.mlp.c_fc.weight, (2 * width) ** -0.5),
                        (block.mlp.c_proj.weight, width ** -0.5 * (2 * layers) ** -0.5),
                        (model.text_projection, width ** -0.5), (model.visual.proj, 768 ** -0.5)]:
        assert tensor.std().item() == pytest.approx(std, rel=0.05)
    assert model.logit_scale.exp().item() == pytest.approx(1 / 0.07)
    a, _ = clip_vendor.load("tiny")
    b, _ = clip_vendor.load("tiny")
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))  # fixed seed


def test_corrupt_cached_file_is_not_used(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("IMU2CLIP_OFFLINE", "1")
    (tmp_path / "ViT-B-32.pt").write_bytes(b"truncated")
    clip = clip_vendor.FrozenCLIP("ViT-B/32", download_root=tmp_path)
    assert clip.weights_source == "random-init" and "has SHA256" in capsys.readouterr().err


def test_explicit_weights_file_for_a_name(tmp_path):
    torch.save(tiny_state_dict(seed=4), tmp_path / "tiny.pt")
    clip = clip_vendor.FrozenCLIP("tiny", weights=tmp_path / "tiny.pt")
    assert clip.weights_source == "pretrained" and clip.sha256 == loader.sha256_file(tmp_path / "tiny.pt")
    assert clip.embed_texts(["walking"]).shape == (1, 32)
    wrong = clip_vendor.FrozenCLIP("ViT-B/32", weights=tmp_path / "tiny.pt")
    with pytest.raises(ValueError, match="not ViT-B/32"):
        wrong.embed_texts(["walking"])
    with pytest.raises(ValueError, match="weights file not found"):
        clip_vendor.FrozenCLIP("tiny", weights=tmp_path / "missing.pt")


def test_failed_download_falls_back_and_leaves_no_file(online, monkeypatch, capsys):
    monkeypatch.setitem(loader.MODELS, "ViT-B/16", (online.parent / "nowhere" / ("1" * 64) / "w.pt").as_uri())
    clip = clip_vendor.FrozenCLIP("ViT-B/16")
    assert clip.weights_source == "random-init"
    assert "download failed" in capsys.readouterr().err
    assert list(online.iterdir()) == []
    with pytest.raises(ValueError, match="download failed"):
        clip_vendor.FrozenCLIP("ViT-B/16", require_pretrained=True)


# ----------------------------------------------------------------------------------------------------------
# Preprocessing and FrozenCLIP

def test_preprocess_matches_the_pil_pipeline():
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:48, 0:80]
    smooth = np.stack([xx * 3, yy * 5, (xx + yy) * 2], -1) % 256
    frame = np.clip(smooth + rng.normal(0, 10, smooth.shape), 0, 255).astype(np.uint8)  # (48, 80, 3)
    R = 32
    # OpenAI's transform: PIL bicubic resize of the shortest side, centre crop, /255, normalise.
    pil = np.asarray(Image.fromarray(frame).resize((int(R * 80 / 48), R), Image.BICUBIC), dtype=np.float32)
    left = int(round((pil.shape[1] - R) / 2))
    expected = (pil[:, left:left + R] / 255 - np.array(loader.MEAN)) / np.array(loader.STD)
    expected = torch.from_numpy(expected.transpose(2, 0, 1)).float()

    pre = clip_vendor.Preprocess(R)
    out = pre(frame[None])
    assert out.shape == (1, 3, R, R) and out.dtype == torch.float32
    diff = (out[0] - expected).abs()
    assert diff.mean() < 0.01 and diff.max() < 0.1  # antialiased bicubic vs PIL: within ~2 grey levels
    torch.testing.assert_close(pre(torch.from_numpy(frame).permute(2, 0, 1)[None]), out)
    with pytest.raises(ValueError, match="uint8"):
        pre(frame[None].astype(np.float32))
    with pytest.raises(ValueError, match=r"\(B, H, W, 3\)"):
        pre(frame)


def test_frozen_clip_embeds_in_batches_like_the_model(capsys):
    clip = clip_vendor.FrozenCLIP("tiny", batch_size=4)
    assert clip._model is None and clip.embed_dim == 32 and clip.weights_source == "random-init"
    frames = np.random.default_rng(1).integers(0, 256, (22, 40, 36, 3), dtype=np.uint8)
    emb = clip.embed_images(frames)
    assert emb.shape == (22, 32) and emb.dtype == np.float32
    model, preprocess = clip_vendor.load("tiny")
    with torch.inference_mode():
        direct = model.encode_image(preprocess(frames)).numpy()
    np.testing.assert_allclose(emb, direct, atol=1e-5, rtol=1e-5)
    assert "embedded 22/22 frames" in capsys.readouterr().err  # 6 batches: progress is reported

    texts = TEXTS * 3
    emb = clip.embed_texts(texts)
    with torch.inference_mode():
        direct = model.encode_text(clip_vendor.tokenize(texts)).numpy()
    np.testing.assert_allclose(emb, direct, atol=1e-5, rtol=1e-5)
    assert clip.embed_texts([]).shape == (0, 32)
    with pytest.raises(ValueError, match="list of strings"):
        clip.embed_texts("walking")
    with pytest.raises(ValueError, match="numpy array"):
        clip.embed_images(torch.zeros(1, 3, 32, 32, dtype=torch.uint8))


# ----------------------------------------------------------------------------------------------------------
# Tokenizer

@pytest.fixture(scope="module")
def merges():
    """Merged token -> id, read straight from the vocabulary file: 512 byte tokens come first."""
    with gzip.open(VOCAB_FILE, "rt", encoding="utf-8") as f:
        lines = f.read().split("\n")[1:49152 - 256 - 2 + 1]
    return {line.replace(" ", ""): 512 + i for i, line in enumerate(lines)}


def ids(text, **kw):
    row = clip_vendor.tokenize(text, **kw)[0]
    return row[:int((row != 0).sum())].tolist()


def ascii_id(char, end_of_word=True):
    """Printable ASCII bytes are the first vocabulary entries, from "!" (0); end-of-word forms follow at 256."""
    return ord(char) - ord("!") + (256 if end_of_word else 0)


def test_known_ids_from_reference_tokenizers():
    # Widely published outputs of OpenAI's / Hugging Face's CLIP tokenizers.
    assert ids("a photo of a cat") == [SOT, 320, 1125, 539, 320, 2368, EOT]
    assert ids("Hello, world!") == [SOT, 3306, 267, 1002, 256, EOT]
    assert ids("don't stop 42 times") == [SOT, 847, 713, 1691, 275, 273, 1661, EOT]
    assert ids("café über naïve") == [SOT, 15304, 6522, 1516, 1097, 35689, 563, EOT]


def test_ids_agree_with_the_vocabulary_file(merges):
    for word in ["hello", "world", "photo", "walking", "park", "person"]:
        assert ids(word) == [SOT, merges[word + "</w>"], EOT], word
    assert ids("a cat!") == [SOT, ascii_id("a"), merges["cat</w>"], ascii_id("!"), EOT]
    assert ids("Hello, World") == [SOT, merges["hello</w>"], ascii_id(","), merges["world</w>"], EOT]
    # Digits are split one by one; each is its own end-of-word token.
    assert ids("2024") == [SOT] + [ascii_id(d) for d in "2024"] + [EOT]


def test_cleaning_html_whitespace_case_and_unicode(merges):
    assert ids("fish &amp;amp; chips") == ids("fish & chips") == [SOT, merges["fish</w>"], ascii_id("&"),
                                                                 merges["chips</w>"], EOT]
    # With markup present ftfy leaves entities alone; CLIP's own double unescape still resolves them.
    assert ids("<b> fish &amp;amp; chips") == ids("<b> fish & chips")
    assert ids("  A   PHOTO\n of\ta CAT ") == ids("a photo of a cat")
    assert ids("cafÃ©") == ids("café")  # ftfy repairs the mojibake
    emoji = ids("😀")[1:-1]
    assert emoji and all(i < SOT for i in emoji) and ids("🙂") != ids("😀")
    assert ids("") == [SOT, EOT]
    assert ids("<|endoftext|>") == [SOT, EOT, EOT]  # special tokens typed in text stay whole


def test_padding_batching_and_truncation():
    tokens = clip_vendor.tokenize(["a cat", "a photo of a cat"])
    assert tokens.shape == (2, 77) and tokens.dtype == torch.long
    assert tokens[0, 4:].eq(0).all() and tokens[1, 7:].eq(0).all()
    assert clip_vendor.tokenize("a cat").shape == (1, 77)

    fits = clip_vendor.tokenize(" ".join(["cat"] * 75), truncate=False)[0]  # 75 + start + end = 77
    assert fits[-1] == EOT
    long = clip_vendor.tokenize(" ".join(["cat"] * 100))[0]
    assert long[0] == SOT and long[76] == EOT and long[1:76].eq(2368).all()
    with pytest.raises(ValueError, match="78 tokens long"):
        clip_vendor.tokenize(" ".join(["cat"] * 76), truncate=False)
    short = clip_vendor.tokenize("a photo of a cat", context_length=5)[0].tolist()
    assert short == [SOT, 320, 1125, 539, EOT]
