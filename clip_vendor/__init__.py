"""clip_vendor: a readable, OpenAI-compatible CLIP ViT, used frozen as IMU2CLIP's teacher (Moon et al., 2022,
section 3.1; Radford et al., 2021).

    import clip_vendor
    model, preprocess = clip_vendor.load("ViT-B/32")          # official weights, or a loud random-init fallback
    img = model.encode_image(preprocess(frames_uint8_bhw3))   # (B, 512)
    txt = model.encode_text(clip_vendor.tokenize(["a person walking"]))  # (1, 512)
    clip = clip_vendor.FrozenCLIP("tiny")                     # what data.py / evaluate.py use

Files: model.py (architecture, build_model), tokenizer.py (BPE), loader.py (weights, preprocess,
FrozenCLIP). Tests: `python -m pytest -q tests/test_clip_vendor.py`.
"""
from .loader import MODELS, FrozenCLIP, Preprocess, available_models, load
from .model import CLIP, CONFIGS, CLIPConfig, build_model
from .tokenizer import tokenize

__all__ = ["CLIP", "CLIPConfig", "CONFIGS", "FrozenCLIP", "MODELS", "Preprocess", "available_models",
           "build_model", "load", "tokenize"]
