"""AnyModalityProcessor: one tokenizer plus a preprocessor per modality.

Like transformers' `LlavaProcessor`, it expands each placeholder (`<image>`, `<audio>` ...) into the
number of tokens the modality's connector produces, so the model can splice features in place.
Media loading and preprocessing live in `hf_mera.modalities`, one module per modality.
"""

from __future__ import annotations

import copy
import re
from typing import Any

import torch
from transformers import BatchFeature, ProcessorMixin

# Used when the tokenizer ships no chat template (e.g. a small word-level tokenizer).
# Each turn ends with the EOS token so that a model trained on it learns where an answer stops.
DEFAULT_CHAT_TEMPLATE = (
    "{% for message in messages %}{{ message['role'] }} : {{ message['content'] }}{{ eos_token }}\n{% endfor %}"
    "{% if add_generation_prompt %}assistant : {% endif %}"
)


class AnyModalityProcessor(ProcessorMixin):
    r"""
    Args:
        tokenizer: the LLM's tokenizer.
        modalities (`dict[str, dict]`): per modality `{"placeholder_token", "tokens_per_item", "preprocess"}`;
            filled by `AnyModalityLlava.add_modality(..., processor=processor)`.
        chat_template (`str`, *optional*): overrides the tokenizer's template.
    """

    attributes = ["tokenizer"]
    tokenizer_class = "AutoTokenizer"

    def __init__(
        self, tokenizer=None, modalities: dict[str, dict] | None = None, chat_template=None, **kwargs
    ):
        self.modalities = copy.deepcopy(modalities or {})
        self._preprocessors: dict[str, Any] = {}
        if (
            chat_template is None
            and tokenizer is not None
            and getattr(tokenizer, "chat_template", None) is None
        ):
            chat_template = DEFAULT_CHAT_TEMPLATE
        super().__init__(tokenizer, chat_template=chat_template)
        if self.tokenizer.pad_token is None:
            # Batched training and generation need padding; the EOS token is the usual stand-in.
            self.tokenizer.pad_token = self.tokenizer.eos_token
        missing = [
            m["placeholder_token"]
            for m in self.modalities.values()
            if m["placeholder_token"] not in self._vocab
        ]
        if missing:
            self.tokenizer.add_special_tokens({"additional_special_tokens": missing})

    @property
    def _vocab(self) -> dict[str, int]:
        return self.tokenizer.get_vocab()

    # ---- modalities -------------------------------------------------------------------------
    def add_modality(self, modality, tokens_per_item: int) -> int:
        """Register a modality; returns the id of its placeholder token (added to the tokenizer)."""
        name, token = modality.name, modality.placeholder_token
        if name in self.modalities:
            raise ValueError(f"Modality {name!r} is already registered with this processor.")
        if tokens_per_item < 1:
            raise ValueError(f"Modality {name!r}: tokens_per_item must be >= 1, got {tokens_per_item}.")
        if token not in self._vocab:
            existing = list(self.tokenizer.special_tokens_map.get("additional_special_tokens", []))
            self.tokenizer.add_special_tokens({"additional_special_tokens": existing + [token]})
        self.modalities[name] = {
            "placeholder_token": token,
            "tokens_per_item": int(tokens_per_item),
            "preprocess": dict(modality.preprocess),
        }
        self._preprocessors.pop(name, None)
        return self.token_id(name)

    def token_id(self, name: str) -> int:
        return self.tokenizer.convert_tokens_to_ids(self._modality(name)["placeholder_token"])

    def _modality(self, name: str) -> dict:
        if name not in self.modalities:
            raise ValueError(
                f"Unknown modality {name!r}; this processor knows {sorted(self.modalities) or 'none'}."
            )
        return self.modalities[name]

    def preprocessor(self, name: str):
        if name not in self._preprocessors:
            from hf_mera.modalities import get_modality

            spec = get_modality(name)
            self._preprocessors[name] = spec.preprocessor_cls(**self._modality(name)["preprocess"])
        return self._preprocessors[name]

    def preprocess(self, name: str, items: list) -> torch.Tensor:
        """Load and preprocess `items` (paths or in-memory objects) of one modality → `[n, ...]`."""
        return self.preprocessor(name)(list(items))

    # ---- text -------------------------------------------------------------------------------
    def expand_placeholders(self, text: str) -> tuple[str, list[str]]:
        """Repeat each placeholder `tokens_per_item` times; also return the modality of each, in order."""
        if not self.modalities:
            return text, []
        by_token = {m["placeholder_token"]: name for name, m in self.modalities.items()}
        pattern = re.compile("|".join(re.escape(t) for t in sorted(by_token, key=len, reverse=True)))
        order = []

        def expand(match: re.Match) -> str:
            name = by_token[match.group(0)]
            order.append(name)
            return match.group(0) * self.modalities[name]["tokens_per_item"]

        return pattern.sub(expand, text), order

    def __call__(
        self,
        text: str | list[str] | None = None,
        media: list | None = None,
        return_tensors: str | None = "pt",
        padding: bool | str = True,
        **kwargs,
    ) -> BatchFeature:
        """Tokenize `text` with expanded placeholders and preprocess `media`.

        `media` lists the items of one prompt as `{"modality": name, "path": p}` (or `"value": obj`)
        in placeholder order; for a batch, a list of such lists. Items of each modality are stacked
        in the order their placeholders appear in the batch, row by row.
        """
        if text is None:
            raise ValueError("AnyModalityProcessor needs `text` (with placeholders for the media).")
        texts = [text] if isinstance(text, str) else list(text)
        batch_media = self._batch_media(media, len(texts), isinstance(text, str))
        expanded, items_by_modality = [], {}
        for row, (prompt, row_media) in enumerate(zip(texts, batch_media)):
            prompt, order = self.expand_placeholders(prompt)
            got = [item["modality"] for item in row_media]
            if row_media and got != order:
                raise ValueError(
                    f"Prompt {row}: placeholders ask for {order or 'no media'} but media gives {got}; "
                    "give one media item per placeholder, in the same order."
                )
            for item in row_media:
                items_by_modality.setdefault(item["modality"], []).append(item)
            expanded.append(prompt)
        encoding = self.tokenizer(
            expanded, return_tensors=return_tensors, padding=padding, add_special_tokens=False, **kwargs
        )
        data = dict(encoding)
        if items_by_modality:
            data["modality_values"] = {
                name: self.preprocess(name, [item.get("value", item.get("path")) for item in items])
                for name, items in items_by_modality.items()
            }
        return MultimodalBatchFeature(data=data)

    def _batch_media(self, media, n_texts: int, single: bool) -> list[list[dict]]:
        if not media:
            return [[] for _ in range(n_texts)]
        if single or isinstance(media[0], dict):
            media = [media]
        if len(media) != n_texts:
            raise ValueError(f"Got {n_texts} prompts but media for {len(media)}.")
        for row in media:
            for item in row:
                if not isinstance(item, dict) or "modality" not in item:
                    raise ValueError(f"Each media item must be a dict with a 'modality' key, got {item!r}.")
                self._modality(item["modality"])
        return [list(row) for row in media]

    # ---- chat -------------------------------------------------------------------------------
    def messages_to_text(self, messages: list[dict]) -> tuple[list[dict], list[dict]]:
        """Turn transformers-style content parts (`{"type": "image", "path": ...}`) into text with
        placeholders; return the plain messages and the media in order."""
        plain, media = [], []
        for message in messages:
            content = message["content"]
            if isinstance(content, str):
                plain.append({"role": message["role"], "content": content})
                continue
            parts = []
            for part in content:
                kind = part.get("type")
                if kind == "text":
                    parts.append(part["text"])
                    continue
                self._modality(kind)
                source = next((part[k] for k in ("path", "url", kind, "value") if k in part), None)
                if source is None:
                    raise ValueError(f"Content part of type {kind!r} needs a 'path' (or '{kind}') entry.")
                parts.append(self.modalities[kind]["placeholder_token"])
                media.append({"modality": kind, "value": source})
            plain.append({"role": message["role"], "content": "\n".join(parts)})
        return plain, media

    def apply_chat_template(
        self, conversation: list[dict], chat_template: str | None = None, tokenize: bool = False, **kwargs
    ):
        """Render a conversation; with `tokenize=True` also load its media and return model inputs."""
        messages, media = self.messages_to_text(conversation)
        text = self.tokenizer.apply_chat_template(
            messages,
            chat_template=chat_template or self.chat_template,
            tokenize=False,
            add_generation_prompt=kwargs.pop("add_generation_prompt", False),
        )
        if not tokenize:
            return text
        return self(text=text, media=media, **kwargs)

    def batch_decode(self, *args, **kwargs):
        return self.tokenizer.batch_decode(*args, **kwargs)

    def decode(self, *args, **kwargs):
        return self.tokenizer.decode(*args, **kwargs)

    @property
    def model_input_names(self):
        return ["input_ids", "attention_mask", "modality_values"]


class MultimodalBatchFeature(BatchFeature):
    """BatchFeature whose `.to()` also moves the nested `modality_values` / `modality_features`."""

    def to(self, *args, **kwargs):
        nested = {k: self.data.pop(k) for k in ("modality_values", "modality_features") if k in self.data}
        super().to(*args, **kwargs)
        device = kwargs.get("device") or next(
            (a for a in args if isinstance(a, (str, torch.device, int))), None
        )
        dtype = kwargs.get("dtype") or next((a for a in args if isinstance(a, torch.dtype)), None)
        for key, values in nested.items():
            # Like BatchFeature: a dtype only applies to floating tensors.
            self.data[key] = {
                name: t.to(device=device, dtype=dtype if torch.is_floating_point(t) else None)
                for name, t in values.items()
            }
        return self


__all__ = ["AnyModalityProcessor", "MultimodalBatchFeature", "DEFAULT_CHAT_TEMPLATE"]
