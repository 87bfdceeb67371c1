"""Batching samples for training: chat template, placeholder expansion, media, and answer-only labels."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

IGNORE_INDEX = -100


def assistant_char_spans(processor, messages: list[dict]) -> tuple[str, list[tuple[int, int]]]:
    """Render `messages` (placeholders expanded) and return the character spans the model must learn:
    each assistant turn's content through its end-of-turn marker.

    Each span is found by rendering the conversation up to the turn with a generation prompt and up
    to the end of the turn; this needs a template whose renders of prefixes are prefixes of the full
    render, which chat templates are designed to be.
    """

    def render(msgs: list[dict], add_generation_prompt: bool) -> str:
        text = processor.tokenizer.apply_chat_template(
            msgs,
            chat_template=processor.chat_template,
            tokenize=False,
            add_generation_prompt=add_generation_prompt,
        )
        return processor.expand_placeholders(text)[0]

    full = render(messages, False)
    spans = []
    for k, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        start = len(render(messages[:k], True))
        end = len(render(messages[: k + 1], False))
        if full[:end] != render(messages[: k + 1], False) or start > end:
            raise ValueError(
                "The chat template does not render conversation prefixes as prefixes of the whole; "
                "answer-only labels cannot be located."
            )
        spans.append((start, end))
    if not spans:
        raise ValueError("A training conversation needs at least one assistant turn.")
    return full, spans


@dataclass
class MultimodalCollator:
    """Collates rows of the sample format (`docs/CONTRACTS.md`) into model inputs.

    Labels are `-100` everywhere but the assistant answers (and their end-of-turn tokens). Media
    come either from files through the processor (`modality_values`) or, when `feature_lookup` is
    given, from precomputed encoder features (`modality_features`): `feature_lookup(row)` returns
    `{modality: tensor [n_items, tokens, dim]}` for that row's media, in order.
    """

    processor: Any
    feature_lookup: Callable[[dict], dict[str, torch.Tensor]] | None = None
    max_length: int | None = None
    pad_to_multiple_of: int | None = None
    _warned: bool = field(default=False, init=False, repr=False)

    def __call__(self, rows: list[dict]) -> dict[str, Any]:
        tokenizer = self.processor.tokenizer
        ids, labels, values, features = [], [], {}, {}
        for row in rows:
            text, spans = assistant_char_spans(self.processor, row["messages"])
            enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
            row_ids = enc["input_ids"]
            row_labels = [
                tok if any(s <= start < e for s, e in spans) else IGNORE_INDEX
                for tok, (start, _end) in zip(row_ids, enc["offset_mapping"])
            ]
            if self.max_length is not None and len(row_ids) > self.max_length:
                kept_placeholders = self._count_placeholders(row_ids[: self.max_length])
                if kept_placeholders != self._count_placeholders(row_ids):
                    raise ValueError(
                        f"Sample {row.get('id', '?')!r} is {len(row_ids)} tokens long; truncating it to "
                        f"max_length={self.max_length} would cut its media placeholders."
                    )
                row_ids, row_labels = row_ids[: self.max_length], row_labels[: self.max_length]
            ids.append(row_ids)
            labels.append(row_labels)
            self._collect_media(row, values, features)
        batch = self._pad(ids, labels, tokenizer.pad_token_id)
        if values:
            batch["modality_values"] = {
                name: self.processor.preprocess(name, paths) for name, paths in values.items()
            }
        if features:
            batch["modality_features"] = {name: torch.cat(parts) for name, parts in features.items()}
        return batch

    def _count_placeholders(self, ids: list[int]) -> int:
        placeholder_ids = {self.processor.token_id(name) for name in self.processor.modalities}
        return sum(1 for i in ids if i in placeholder_ids)

    def _collect_media(self, row: dict, values: dict, features: dict) -> None:
        media = row.get("media") or []
        if not media:
            return
        if self.feature_lookup is not None:
            for name, tensor in self.feature_lookup(row).items():
                features.setdefault(name, []).append(tensor)
            return
        for item in media:
            values.setdefault(item["modality"], []).append(item.get("value", item.get("path")))

    def _pad(self, ids: list[list[int]], labels: list[list[int]], pad_id: int) -> dict[str, torch.Tensor]:
        # Lazy: trl.trainer.utils costs seconds to import, and evaluation alone never pads for training.
        from trl.trainer.utils import pad

        # Right padding: training only; generation pads on the left through the processor.
        multiple = self.pad_to_multiple_of or None  # 0 means no rounding, as None does
        rows = [torch.tensor(x, dtype=torch.long) for x in ids]
        return {
            "input_ids": pad(rows, pad_id, "right", multiple),
            "attention_mask": pad([torch.ones_like(x) for x in rows], 0, "right", multiple),
            "labels": pad(
                [torch.tensor(y, dtype=torch.long) for y in labels], IGNORE_INDEX, "right", multiple
            ),
        }


__all__ = ["MultimodalCollator", "assistant_char_spans", "IGNORE_INDEX"]
