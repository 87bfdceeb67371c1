"""Batched greedy generation of answers for evaluation.

Works with any model / processor pair that follows docs/CONTRACTS.md (`AnyModalityLlava` and its
processor): the processor renders chat prompts and expands media placeholders, the model's
`generate` accepts `modality_values` (raw media, encoded by the model) or `modality_features`
(pre-computed encoder outputs from the feature cache). torch is imported only inside the function.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

Sample = Mapping[str, Any]


def prompt_messages(sample: Sample) -> list[dict]:
    """The sample's conversation without its final assistant turn (the answer to be generated)."""
    messages = sample.get("messages")
    if not messages:
        raise ValueError(f"Sample {sample.get('id', '?')!r} has no messages.")
    messages = list(messages)
    if messages[-1]["role"] == "assistant":
        messages = messages[:-1]
    if not messages:
        raise ValueError(
            f"Sample {sample.get('id', '?')!r} has only an assistant turn; nothing to prompt with."
        )
    return messages


def _rows(samples) -> list[Sample]:
    # A datasets.Dataset sliced with [i:j] gives columns, not rows; index rows one by one instead.
    return [samples[i] for i in range(len(samples))]


def _batched_features(
    batch: Sequence[Sample], feature_lookup: Callable[[Sample], Mapping[str, Any]], device, dtype
):
    import torch

    per_modality: dict[str, list] = {}
    for sample in batch:
        for name, features in feature_lookup(sample).items():
            per_modality.setdefault(name, []).append(features)
    # Items of each modality stacked row by row, as the processor stacks `modality_values`.
    stacked = {}
    for name, tensors in per_modality.items():
        features = torch.cat(list(tensors), dim=0)
        if device is not None:
            features = features.to(device)
        if dtype is not None and torch.is_floating_point(features):
            features = features.to(dtype)
        stacked[name] = features
    return stacked


def generate_predictions(
    model,
    processor,
    samples,
    batch_size: int = 8,
    max_new_tokens: int = 32,
    progress: bool = True,
    feature_lookup: Callable[[Sample], Mapping[str, Any]] | None = None,
    **generate_kwargs,
) -> list[str]:
    """Greedy answers for `samples`, decoded without the prompt and stripped.

    For each batch: each sample's messages (minus the final assistant turn) are rendered with
    `processor.apply_chat_template(..., add_generation_prompt=True, tokenize=False)`, tokenised with
    `processor(text=prompts, media=[sample["media"], ...], return_tensors="pt", padding=True)` under left
    padding (so every row's new tokens start at the same column), and continued with
    `model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)`. Only the new tokens are
    decoded, with `skip_special_tokens=True`.

    Args:
        model: an `AnyModalityLlavaForConditionalGeneration` or anything with the same `generate`.
        processor: the matching processor (`apply_chat_template`, `__call__`, `batch_decode`, `.tokenizer`).
        samples (`datasets.Dataset` or `list[dict]`): rows with `messages` and `media` (docs/CONTRACTS.md).
        batch_size (`int`, defaults to 8): prompts per `generate` call.
        max_new_tokens (`int`, defaults to 32): generation budget per answer.
        progress (`bool`, defaults to `True`): show a tqdm progress bar.
        feature_lookup (`Callable[[dict], dict[str, torch.Tensor]]`, *optional*): returns a sample's
            encoder features per modality, shaped `[n_items, tokens, hidden]` in placeholder order. When
            given, features go to `generate(modality_features=...)` and media files are not read.
        **generate_kwargs: passed on to `model.generate` (they may not override greedy decoding).

    Returns:
        `list[str]`: one prediction per sample, in order.
    """
    import torch
    from tqdm.auto import tqdm

    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}.")
    for key in ("do_sample", "max_new_tokens"):
        if key in generate_kwargs:
            raise ValueError(f"generate_kwargs may not set {key!r}; evaluation decodes greedily.")
    rows = _rows(samples)
    tokenizer = processor.tokenizer
    pad_token_id = getattr(tokenizer, "pad_token_id", None)
    if pad_token_id is not None:
        generate_kwargs.setdefault("pad_token_id", pad_token_id)
    device = getattr(model, "device", None)
    dtype = getattr(model, "dtype", None)

    predictions: list[str] = []
    previous_side, was_training = tokenizer.padding_side, getattr(model, "training", False)
    tokenizer.padding_side = "left"  # decoder-only generation continues from the right edge
    model.eval()
    try:
        with torch.inference_mode(), tqdm(total=len(rows), desc="generating", disable=not progress) as bar:
            for start in range(0, len(rows), batch_size):
                batch = rows[start : start + batch_size]
                prompts = [
                    processor.apply_chat_template(
                        prompt_messages(s), add_generation_prompt=True, tokenize=False
                    )
                    for s in batch
                ]
                media = None if feature_lookup is not None else [list(s.get("media") or []) for s in batch]
                inputs = processor(text=prompts, media=media, return_tensors="pt", padding=True)
                if device is not None:
                    inputs = inputs.to(device)
                if feature_lookup is not None:
                    inputs["modality_features"] = _batched_features(batch, feature_lookup, device, dtype)
                output = model.generate(
                    **inputs, max_new_tokens=max_new_tokens, do_sample=False, **generate_kwargs
                )
                new_tokens = output[:, inputs["input_ids"].shape[1] :]
                predictions += [
                    text.strip() for text in processor.batch_decode(new_tokens, skip_special_tokens=True)
                ]
                bar.update(len(batch))
    finally:
        tokenizer.padding_side = previous_side
        model.train(was_training)
    return predictions


__all__ = ["generate_predictions", "prompt_messages"]
