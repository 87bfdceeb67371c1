"""Adapters a continual-learning method grows inside the language model, described in the config.

`AnyModalityLlavaConfig.llm_adapters` is `None` or a dict `{"type": <registered name>, ...}` whose
other keys are the type's options, e.g. PathWeave's
`{"type": "pathweave", "rank": 128, "modalities": ["image", "video"], "target_modules": [...]}`.
`AnyModalityLlavaModel.__init__` applies it to the language model, so `from_pretrained` (and the Auto
classes) rebuild the modules before loading their weights; `AnyModalityLlava.set_llm_adapters`
applies a new description to a live model (e.g. one more modality) and records it in the config.

A type is an `LLMAdapterType` subclass registered by name::

    @register_llm_adapter("pathweave")
    class PathWeaveAdapters(LLMAdapterType):
        @classmethod
        def normalize(cls, spec, modalities): ...   # validated, defaults filled in
        @classmethod
        def apply(cls, language_model, spec): ...   # build or grow in place; returns new modules
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import nn

from hf_mera.registry import Registry


class LLMAdapterType:
    """What the model needs from a kind of LLM-side adapter (all class methods)."""

    @classmethod
    def normalize(cls, spec: dict[str, Any], modalities: Sequence[str]) -> dict[str, Any]:
        """`spec` checked (ValueError naming the field) with defaults filled in; `modalities` are the
        model's modalities, in the order they were added."""
        raise NotImplementedError

    @classmethod
    def apply(cls, language_model: nn.Module, spec: dict[str, Any]) -> list[nn.Module]:
        """Build the modules `spec` describes in `language_model`, or grow those already there to it
        (idempotent); return the modules created, so the caller can move and mark them."""
        raise NotImplementedError


LLM_ADAPTER_REGISTRY: Registry[type[LLMAdapterType]] = Registry("LLM adapter type", base=LLMAdapterType)
register_llm_adapter = LLM_ADAPTER_REGISTRY.register


def normalize_llm_adapters(spec: dict[str, Any] | None, modalities: Sequence[str]) -> dict[str, Any] | None:
    """The checked, complete form of a `llm_adapters` description (None stays None)."""
    if spec is None:
        return None
    if not isinstance(spec, dict) or "type" not in spec:
        raise ValueError(f"llm_adapters must be a dict with a 'type' key, got {spec!r}.")
    adapter_type = LLM_ADAPTER_REGISTRY.get(spec["type"], where="llm_adapters.type")
    return {"type": spec["type"], **adapter_type.normalize(dict(spec), list(modalities))}


def apply_llm_adapters(language_model: nn.Module, spec: dict[str, Any]) -> list[nn.Module]:
    """Build or grow the adapters `spec` describes in `language_model`; the modules created.

    They start with their own initialisation, which transformers' `_init_weights` must not replace:
    each is marked `_is_hf_initialized`."""
    created = LLM_ADAPTER_REGISTRY.get(spec["type"], where="llm_adapters.type").apply(language_model, spec)
    for module in created:
        for sub in module.modules():
            sub._is_hf_initialized = True
    return created


__all__ = [
    "LLM_ADAPTER_REGISTRY",
    "LLMAdapterType",
    "apply_llm_adapters",
    "normalize_llm_adapters",
    "register_llm_adapter",
]
