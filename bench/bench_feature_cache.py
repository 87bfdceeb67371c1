"""Speed-up of a training epoch's encoder-feature access through `FeatureCache` vs re-encoding.

Frozen encoders see the same files every epoch; the cache encodes each file once and reads the
features back afterwards. This measures, in one process on the same real files (easy-VQA PNGs):

- uncached:          load + preprocess + encode every file, every epoch (the baseline);
- cached, cold:      the first epoch through an empty cache (encode + write);
- cached, warm:      later epochs (read safetensors; file hashes remembered by the cache object);
- cached, warm new:  a fresh `FeatureCache` object on the filled cache (hashes every file again,
                     as a new training process would).

Encoder: EfficientNet-Lite0 with its real ImageNet weights through `hf_mera.modalities` when
available, else a small conv net. Usage::

    python bench/bench_feature_cache.py [--num-files 64] [--epochs 3] [--batch-size 16] [--encoder auto]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable

import torch
from torch import nn


def easy_vqa_paths(n: int) -> list[str]:
    import easy_vqa

    paths = easy_vqa.get_train_image_paths()
    return [paths[i] for i in sorted(paths)[:n]]


def convnet_encoder() -> tuple[Callable[[list[str]], torch.Tensor], str]:
    """A small conv net on 64x64 RGB: stands in when no real encoder is installed."""
    import numpy as np
    from PIL import Image

    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 64, 3, stride=2, padding=1),
        nn.GELU(),
        nn.Conv2d(64, 128, 3, stride=2, padding=1),
        nn.GELU(),
        nn.Conv2d(128, 256, 3, stride=2, padding=1),
        nn.Flatten(2),
    ).eval()

    def compute(paths: list[str]) -> torch.Tensor:
        pixels = np.stack(
            [np.asarray(Image.open(p).convert("RGB").resize((64, 64)), dtype=np.float32) for p in paths]
        )
        values = torch.from_numpy(pixels).permute(0, 3, 1, 2) / 255.0
        with torch.inference_mode():
            return net(values).transpose(1, 2)  # [n, 64 tokens, 256]

    return compute, "bench-convnet-64px-v1"


def efficientnet_encoder() -> tuple[Callable[[list[str]], torch.Tensor], str]:
    """EfficientNet-Lite0 (real weights) with its preprocessing, fingerprinted as the library does."""
    from hf_mera.modalities import ImagePreprocessor, encoder_fingerprint, load_pretrained_encoder
    from hf_mera.modalities.encoders import EFFICIENTNET_LITE_PREPROCESS

    preprocessor = ImagePreprocessor(**EFFICIENTNET_LITE_PREPROCESS)
    encoder, config = load_pretrained_encoder("efficientnet_lite0", None)
    encoder.eval()

    def compute(paths: list[str]) -> torch.Tensor:
        with torch.inference_mode():
            return encoder(preprocessor(paths))

    fingerprint = (
        preprocessor.fingerprint() + ":" + encoder_fingerprint("efficientnet_lite0", config, encoder)
    )
    return compute, fingerprint


def pick_encoder(name: str) -> tuple[Callable[[list[str]], torch.Tensor], str, str]:
    if name in ("auto", "efficientnet"):
        try:
            compute, fingerprint = efficientnet_encoder()
            return compute, fingerprint, "EfficientNet-Lite0 (ImageNet weights, 224px, 49x1280 tokens)"
        except Exception as error:  # not installed here: fall back, but say so
            if name == "efficientnet":
                raise
            print(f"EfficientNet-Lite0 unavailable ({type(error).__name__}: {error}); using a conv net.")
    compute, fingerprint = convnet_encoder()
    return compute, fingerprint, "conv net (3 layers, 64px, 64x256 tokens)"


def epoch_uncached(paths: list[str], compute: Callable, batch_size: int) -> float:
    start = time.perf_counter()
    for i in range(0, len(paths), batch_size):
        compute(paths[i : i + batch_size])
    return time.perf_counter() - start


def epoch_cached(cache, paths: list[str], fingerprint: str, compute: Callable, batch_size: int) -> float:
    start = time.perf_counter()
    for i in range(0, len(paths), batch_size):  # the same batches a training loop would request
        cache.get_or_compute(
            paths[i : i + batch_size], fingerprint, compute, batch_size=batch_size, progress=False
        )
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--num-files", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--encoder", choices=("auto", "efficientnet", "convnet"), default="auto")
    args = parser.parse_args()

    from hf_mera.data.feature_cache import FeatureCache

    paths = easy_vqa_paths(args.num_files)
    compute, fingerprint, described = pick_encoder(args.encoder)
    compute(paths[:2])  # warm-up: lazy imports, allocator
    print(
        f"files: {len(paths)} easy-VQA PNGs | encoder: {described} | batch {args.batch_size} | torch threads {torch.get_num_threads()}"
    )

    uncached = [epoch_uncached(paths, compute, args.batch_size) for _ in range(args.epochs)]
    with tempfile.TemporaryDirectory() as root:
        cache = FeatureCache(root)
        cold = epoch_cached(cache, paths, fingerprint, compute, args.batch_size)
        warm = [
            epoch_cached(cache, paths, fingerprint, compute, args.batch_size)
            for _ in range(max(1, args.epochs - 1))
        ]
        fresh = FeatureCache(root)
        warm_new = epoch_cached(fresh, paths, fingerprint, compute, args.batch_size)
        assert fresh.misses == 0 and cache.misses == len(paths)

    base = sum(uncached) / len(uncached)
    rows = [
        ("uncached (re-encode)", base),
        ("cached, cold (epoch 1)", cold),
        ("cached, warm", sum(warm) / len(warm)),
        ("cached, warm, new process", warm_new),
    ]
    print(f"{'mode':<28}{'s/epoch':>10}{'ms/file':>10}{'speed-up':>10}")
    for name, seconds in rows:
        print(f"{name:<28}{seconds:>10.3f}{1000 * seconds / len(paths):>10.2f}{base / seconds:>9.1f}x")
    total_uncached = base * args.epochs
    total_cached = cold + sum(warm[: args.epochs - 1])
    print(
        f"{args.epochs} epochs: uncached {total_uncached:.2f} s, cached {total_cached:.2f} s ({total_uncached / total_cached:.1f}x)"
    )


if __name__ == "__main__":
    main()
