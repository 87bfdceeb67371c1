"""Quickstart-shaped models and data for the benchmarks, built in memory (no benchmark, no hub).

The quickstart's tiny Llama (hidden 128, 4 layers, word-level vocabulary), modalities whose frozen
encoders give 8 feature tokens of width 256 (the audio / point-cloud encoders' shape), and rows in the
sample format whose features come from a seeded table through `MultimodalCollator(feature_lookup=…)`,
the path the quickstart trains on. Modality names past the four real ones (`synth4`, `synth5`, …) are
plain extra modalities of the same shape, for the scaling benchmark.
"""

from __future__ import annotations

import zlib

import torch

REAL = ("image", "video", "audio", "point_cloud")
TOKENS, FEATURE_DIM = 8, 256
COLOURS = ["red", "blue", "green", "yellow", "purple", "orange"]
SHAPES = ["circle", "square", "triangle", "cone", "cube", "star"]
PROMPTS = {"caption": "describe the input .", "qa": "what colour is the shape ?"}


def modality_names(count: int) -> list[str]:
    return [*REAL, *(f"synth{k}" for k in range(len(REAL), count))][:count]


def build(modalities, hidden_size: int = 128, num_layers: int = 4, seed: int = 0):
    """(model, processor): the quickstart's tiny Llama with `modalities` added (MLP connectors)."""
    from hf_mera import AnyModalityLlava, ModalityConfig
    from hf_mera.models.tiny_lm import build_tiny_llama, build_word_level_tokenizer

    words = [*COLOURS, *SHAPES, *PROMPTS.values(), "a moving shape ."]
    tokenizer = build_word_level_tokenizer(words)
    llm = build_tiny_llama(tokenizer, hidden_size=hidden_size, num_layers=num_layers, num_heads=4, seed=seed)
    model, processor = AnyModalityLlava.from_pretrained_components(llm, [], tokenizer=tokenizer)
    for k, name in enumerate(modalities):
        torch.manual_seed(seed + 1 + k)
        # A registered encoder of the right output shape, so `from_pretrained` rebuilds the model; it
        # never runs here (the features are cached).
        config = ModalityConfig(
            name=name,
            connector_type="mlp2x_gelu",
            encoder_type="spectrogram",
            encoder_config={"num_tokens": TOKENS, "hidden_size": FEATURE_DIM},
        )
        model.add_modality(config, processor=processor)
    return model, processor


def rows(modality: str, count: int, seed: int = 0) -> list[dict]:
    """`count` caption / QA rows of `modality` (alternating), in the sample format."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for k in range(count):
        colour = COLOURS[int(torch.randint(len(COLOURS), (1,), generator=g))]
        shape = SHAPES[int(torch.randint(len(SHAPES), (1,), generator=g))]
        task = "caption" if k % 2 == 0 else "qa"
        answer = f"a {colour} {shape} ." if task == "caption" else colour
        out.append(
            {
                "id": f"{modality}-{seed}-{k}",
                "modality": modality,
                "task": task,
                "media": [{"modality": modality, "path": f"{modality}-{seed}-{k}"}],
                "messages": [
                    {"role": "user", "content": f"<{modality}>\n{PROMPTS[task]}"},
                    {"role": "assistant", "content": answer},
                ],
                "references": [answer],
                "question": PROMPTS[task] if task == "qa" else "",
            }
        )
    return out


def feature_lookup(row: dict) -> dict[str, torch.Tensor]:
    """Seeded features per media path (the feature cache's role): same path, same tensor."""
    out = {}
    for item in row["media"]:
        seed = zlib.crc32(item["path"].encode())
        out[item["modality"]] = torch.randn(
            1, TOKENS, FEATURE_DIM, generator=torch.Generator().manual_seed(seed)
        )
    return out


def dataset(modalities, per_modality: int, seed: int = 0):
    from datasets import Dataset

    return Dataset.from_list([row for m in modalities for row in rows(m, per_modality, seed)])


__all__ = ["build", "dataset", "feature_lookup", "modality_names", "rows"]
