"""Benchmark of the frozen CLIP towers (issue 2, "Performance"): images/s and texts/s through
`FrozenCLIP`, i.e. batched preprocessing + encoding under torch.inference_mode(), as data.py uses it.

Not collected by pytest (the name does not start with test_). Run:
    python tests/bench_clip_vendor.py                 # ViT-B/32, batch 32, CPU
    python tests/bench_clip_vendor.py --model tiny --batches 2

Throughput does not depend on the weights' values, so the random-init fallback measures the same thing.
"""
import argparse
import dataclasses
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import clip_vendor  # noqa: E402  (after the path fix, so the script runs from anywhere)


@dataclass
class BenchConfig:
    model: str = "ViT-B/32"  # a name from clip_vendor.CONFIGS
    batch: int = 32  # frames or texts per forward pass
    batches: int = 8  # timed batches (after one warm-up batch)
    frame_size: int = 256  # input frames are (frame_size, frame_size, 3) uint8, resized to the model's R
    device: str = "cpu"  # torch device
    seed: int = 0  # seed of the synthetic frames


def parse_args(argv=None) -> BenchConfig:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for f in dataclasses.fields(BenchConfig):
        parser.add_argument(f"--{f.name.replace('_', '-')}", type=type(f.default), default=f.default)
    return BenchConfig(**vars(parser.parse_args(argv)))


def rate(fn, n_items: int, repeats: int) -> float:
    fn()  # warm-up: builds the network, allocator and tokenizer caches
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return n_items * repeats / (time.perf_counter() - start)


def main(argv=None):
    cfg = parse_args(argv)
    clip = clip_vendor.FrozenCLIP(cfg.model, device=cfg.device, batch_size=cfg.batch)
    rng = np.random.default_rng(cfg.seed)
    frames = rng.integers(0, 256, (cfg.batch, cfg.frame_size, cfg.frame_size, 3), dtype=np.uint8)
    texts = [f"c walks along the path in the park and looks at the tree number {i}" for i in range(cfg.batch)]
    images_per_s = rate(lambda: clip.embed_images(frames), cfg.batch, cfg.batches)
    texts_per_s = rate(lambda: clip.embed_texts(texts), cfg.batch, cfg.batches)
    print(f"{cfg.model} ({clip.weights_source}) on {cfg.device}, batch {cfg.batch}, "
          f"{torch.get_num_threads()} threads: {images_per_s:.1f} images/s, {texts_per_s:.1f} texts/s")


if __name__ == "__main__":
    main()
