"""AnyModalityProcessor: one tokenizer plus a preprocessor per modality.

Like transformers' `LlavaProcessor`, it expands each placeholder (`<image>`, `<audio>` ...) into the
number of tokens the modality's connector produces, so the model can splice features in place.
Media loading and preprocessing live in `hf_mera.modalities`, one module per modality.

It takes what transformers' `image-text-to-text` and `any-to-any` pipelines pass: chats whose content
parts name a modality (`{"type": "image", "path": ...}`, `"url"`, `"image"`: a PIL image or an array;
the same for `video`, `audio` and `point_cloud`), one chat or a batch of them, and plain prompts with
`images=` / `videos=` / `audio=` beside them.
"""

from __future__ import annotations

import copy
import re
from typing import Any

import numpy as np
import torch
from transformers import BatchFeature, ProcessorMixin

# Used when the tokenizer ships no chat template (e.g. a small word-level tokenizer).
# Each turn ends with the EOS token so that a model trained on it learns where an answer stops.
DEFAULT_CHAT_TEMPLATE = (
    "{% for message in messages %}{{ message['role'] }} : {{ message['content'] }}{{ eos_token }}\n{% endfor %}"
    "{% if add_generation_prompt %}assistant : {% endif %}"
)


def _is_waveform_pair(value) -> bool:
    """`(waveform, sampling_rate)`: one audio item, not a list of two."""
    return isinstance(value, tuple) and len(value) == 2 and isinstance(value[1], int)


def _entry_items(kind: str, entry) -> list:
    """One prompt's items of `kind` from an `images=` / `videos=` / `audio=` entry: an item or a list.
    A video may itself be a list of frames, so only a list of videos (paths or arrays) is unpacked."""
    if not isinstance(entry, (list, tuple)) or (kind == "audio" and _is_waveform_pair(entry)):
        return [entry]
    if kind == "video" and any(
        not isinstance(e, (str, np.ndarray)) or getattr(e, "ndim", 4) == 3 for e in entry
    ):
        return [entry]  # a list of frames (PIL images or [H, W, 3] arrays): one video
    return list(entry)


def merge_row_media(values: dict | list | tuple | None) -> dict | None:
    """`modality_values` (or `modality_features`) of a batch from one dict per row, as transformers'
    pipelines collate separately preprocessed rows: each modality's items stacked row by row, the
    order the processor stacks a batch in. A dict (or None) is returned as it is."""
    if not isinstance(values, (list, tuple)):
        return values
    merged: dict[str, list] = {}
    for row in values:
        for name, tensor in (row or {}).items():
            merged.setdefault(name, []).append(tensor)
    return {name: torch.cat(tensors) for name, tensors in merged.items()}


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
        # A decoder-only model generates from the right edge: prompts batched by this processor or by a
        # pipeline's collator (which reads the tokenizer's side) pad on the left. Training collators
        # pad on the right explicitly (hf_mera's and trl's).
        self.tokenizer.padding_side = "left"
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
        images=None,
        videos=None,
        audio=None,
        **kwargs,
    ) -> BatchFeature:
        """Tokenize `text` with expanded placeholders and preprocess `media`.

        `media` lists the items of one prompt as `{"modality": name, "path": p}` (or `"value": obj`)
        in placeholder order; for a batch, a list of such lists. Items of each modality are stacked
        in the order their placeholders appear in the batch, row by row. `modality_values` is always
        returned (empty without media), so rows with and without media batch together.

        `images` / `videos` / `audio` (transformers' processor arguments, which its pipelines pass)
        are the other way to give media: one item, a list, or a list per prompt; their items fill the
        placeholders of their modality in order. A prompt without any placeholder gets one per item,
        before its text (the layout the chat template gives).
        """
        if text is None:
            raise ValueError("AnyModalityProcessor needs `text` (with placeholders for the media).")
        texts = [text] if isinstance(text, str) else list(text)
        by_kind = {"image": images, "video": videos, "audio": audio}
        if any(v is not None for v in by_kind.values()):
            if media:
                raise ValueError("Pass media either as `media=` or as images= / videos= / audio=, not both.")
            texts, media = self._media_from_kwargs(texts, by_kind)
            media = media[0] if isinstance(text, str) else media
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
        data["modality_values"] = {
            name: self.preprocess(name, [self._source(item) for item in items])
            for name, items in items_by_modality.items()
        }
        return MultimodalBatchFeature(data=data)

    def _source(self, item: dict):
        """What the modality's loader reads for one media item: a path, or an in-memory object. A bare
        waveform (as transformers' pipelines pass audio) is taken at the preprocessor's sampling rate."""
        source = item.get("value", item.get("path"))
        if isinstance(source, str) and source.startswith("file://"):
            source = source[len("file://") :]
        elif isinstance(source, str) and source.startswith(("http://", "https://")):
            raise ValueError(
                f"{item['modality']} {source}: URLs are not fetched; download the file and pass its path."
            )
        if item["modality"] == "audio" and isinstance(source, (np.ndarray, torch.Tensor)):
            source = (source, self.preprocessor("audio").kwargs["sampling_rate"])
        return source

    def _media_from_kwargs(self, texts: list[str], by_kind: dict) -> tuple[list[str], list[list[dict]]]:
        """Distribute `images=` / `videos=` / `audio=` over the prompts (see `__call__`): with one
        prompt every item is its own; with a list as long as the prompts, entry i (an item or a list)
        belongs to prompt i; otherwise the items fill the placeholders in order over the batch."""
        rows: dict[str, list[list]] = {}  # per kind: items per prompt
        pools: dict[str, list] = {}  # per kind: items for the placeholders of the whole batch
        for kind, given in by_kind.items():
            if given is None:
                continue
            self._modality(kind)
            one = not isinstance(given, (list, tuple)) or (kind == "audio" and _is_waveform_pair(given))
            items = [given] if one else list(given)
            if len(texts) == 1:
                rows[kind] = [[x for entry in items for x in _entry_items(kind, entry)]]
            elif len(items) == len(texts):
                rows[kind] = [_entry_items(kind, entry) for entry in items]
            else:
                pools[kind] = items
        out_texts, out_media = [], []
        for row, prompt in enumerate(texts):
            own = {kind: list(per_row[row]) for kind, per_row in rows.items()}
            _, order = self.expand_placeholders(prompt)
            if not order:
                if any(pools.values()):
                    raise ValueError(
                        f"Prompt {row} has no placeholder: with a batch, give media per prompt or place "
                        f"{', '.join(self.modalities[k]['placeholder_token'] for k in pools)} in the text."
                    )
                # No placeholder: one per item of this prompt, before its text (the chat layout).
                order = [kind for kind, items in own.items() for _ in items]
                tokens = [self.modalities[kind]["placeholder_token"] for kind in order]
                prompt = "\n".join(tokens + [prompt]) if tokens else prompt
            items = []
            for kind in order:
                source = own.get(kind) or pools.get(kind)
                if not source:
                    raise ValueError(
                        f"Prompt {row} has more {kind} placeholders than {kind} inputs were given."
                    )
                items.append({"modality": kind, "value": source.pop(0)})
            left = {kind: len(v) for kind, v in own.items() if v}
            if left:
                raise ValueError(f"Prompt {row}: more media than placeholders ({left} left over).")
            out_texts.append(prompt)
            out_media.append(items)
        left = {kind: len(v) for kind, v in pools.items() if v}
        if left:
            raise ValueError(f"More media than placeholders in the batch ({left} left over).")
        return out_texts, out_media

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
    # Where a content part keeps its media, in the order transformers' chat format allows them.
    _SOURCE_KEYS = ("path", "url", "value")

    def messages_to_text(self, messages: list[dict]) -> tuple[list[dict], list[dict]]:
        """Turn transformers-style content parts into text with placeholders; return the plain
        messages and the media in order.

        A media part is `{"type": <modality>, <source>}` where the source is under `path`, `url` (a
        local path or `file://` URL), the modality's own name (`{"type": "image", "image": pil}`,
        as transformers' chat format allows) or `value`: a path or an in-memory object the modality's
        loader reads (PIL image, array, `(waveform, sampling_rate)`, a bare waveform at the
        processor's sampling rate, points). Parts of one message are joined by newlines, media
        where they stand: media then question is the layout the training data has.
        """
        plain, media = [], []
        for index, message in enumerate(messages):
            if not isinstance(message, dict) or "role" not in message or "content" not in message:
                raise ValueError(
                    f"Message {index} must be a dict with 'role' and 'content', got {message!r}."
                )
            content = message["content"]
            if isinstance(content, str):
                plain.append({"role": message["role"], "content": content})
                continue
            parts = []
            for part in content if isinstance(content, (list, tuple)) else [content]:
                kind = part.get("type") if isinstance(part, dict) else None
                if kind == "text":
                    parts.append(part.get("text", ""))
                    continue
                if kind is None:
                    raise ValueError(f"Message {index}: each content part needs a 'type', got {part!r}.")
                self._modality(kind)
                keys = (kind, *self._SOURCE_KEYS)
                source = next((part[k] for k in keys if part.get(k) is not None), None)
                if source is None:
                    raise ValueError(
                        f"Message {index}: a {kind!r} part needs its media under 'path', 'url' or '{kind}'."
                    )
                parts.append(self.modalities[kind]["placeholder_token"])
                media.append({"modality": kind, "value": source})
            plain.append({"role": message["role"], "content": "\n".join(parts)})
        return plain, media

    def apply_chat_template(
        self,
        conversation: list[dict] | list[list[dict]],
        chat_template: str | None = None,
        tokenize: bool = False,
        return_dict: bool = True,
        return_tensors: str | None = "pt",
        add_generation_prompt: bool = False,
        continue_final_message: bool = False,
        processor_kwargs: dict | None = None,
        **kwargs,
    ):
        """Render one conversation or a batch of them (a list of conversations); with
        `tokenize=True` also load their media and return model inputs.

        The arguments are those of transformers' `ProcessorMixin.apply_chat_template` that its
        pipelines pass. One difference: `return_dict` defaults to True here, since `input_ids`
        without their media cannot be generated from (`return_dict=False` gives the ids alone).
        `processor_kwargs` and other keyword arguments go to `__call__` (padding, truncation, ...).
        """
        batched = bool(conversation) and isinstance(conversation[0], (list, tuple))
        conversations = list(conversation) if batched else [conversation]
        template = chat_template or self.chat_template
        texts, media = [], []
        for chat in conversations:
            messages, items = self.messages_to_text(chat)
            texts.append(
                self.tokenizer.apply_chat_template(
                    messages,
                    chat_template=template,
                    tokenize=False,
                    add_generation_prompt=add_generation_prompt,
                    continue_final_message=continue_final_message,
                )
            )
            media.append(items)
        if not tokenize:
            return texts if batched else texts[0]
        out = self(
            text=texts if batched else texts[0],
            media=media if batched else media[0],
            return_tensors=return_tensors,
            **{**(processor_kwargs or {}), **kwargs},
        )
        return out if return_dict else out["input_ids"]

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


__all__ = ["AnyModalityProcessor", "MultimodalBatchFeature", "DEFAULT_CHAT_TEMPLATE", "merge_row_media"]
