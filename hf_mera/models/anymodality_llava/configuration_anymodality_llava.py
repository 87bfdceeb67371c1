"""Configuration of AnyModalityLlava: one causal LM plus any number of modalities.

Shaped like transformers' `LlavaConfig`: the language model is a composed sub-config
(`text_config`, any causal-LM config transformers knows), and each modality is a plain dict in
`modalities` (a `ModalityConfig` serialised), so a checkpoint's `config.json` is self-describing
and rebuilds the whole architecture offline.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any

from transformers import AutoConfig, PreTrainedConfig
from transformers.configuration_utils import SubConfigSpec

_MODALITY_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


@dataclass
class ModalityConfig:
    """Everything the model and the processor need to know about one modality."""

    name: str = field(metadata={"help": "Modality name, e.g. 'image', 'video', 'audio', 'point_cloud'."})
    encoder_type: str = field(
        default="",
        metadata={"help": "Key of `hf_mera.modalities.ENCODER_REGISTRY`; empty = the modality's default."},
    )
    encoder_config: dict[str, Any] = field(
        default_factory=dict,
        metadata={
            "help": "Keyword arguments of the encoder builder (a transformers config dict for 'transformers')."
        },
    )
    encoder_name_or_path: str | None = field(
        default=None, metadata={"help": "Hub id or local folder holding the encoder's pretrained weights."}
    )
    placeholder_token: str = field(
        default="", metadata={"help": "Text placeholder for one item; empty = '<name>'."}
    )
    token_id: int | None = field(
        default=None, metadata={"help": "Token id of the placeholder (set by add_modality)."}
    )
    token_pool: int | None = field(
        default=None,
        metadata={
            "help": "Average-pool the encoder's token sequence down to this many tokens (None = keep all)."
        },
    )
    connector_type: str = field(
        default="mlp2x_gelu",
        metadata={
            "help": "Key of `CONNECTOR_REGISTRY` ('mlp2x_gelu', 'linear', 'qformer' or a registered one)."
        },
    )
    connector_config: dict[str, Any] = field(
        default_factory=dict,
        metadata={
            "help": "Connector options, e.g. {'num_query_tokens': 32, 'num_hidden_layers': 2} for qformer."
        },
    )
    preprocess: dict[str, Any] = field(
        default_factory=dict, metadata={"help": "Keyword arguments of the modality's preprocessor."}
    )
    freeze_encoder: bool = field(default=True, metadata={"help": "Keep the encoder frozen (the paper does)."})

    def __post_init__(self):
        if not isinstance(self.name, str) or not _MODALITY_NAME.match(self.name):
            raise ValueError(
                f"Invalid modality name {self.name!r}: use lower-case letters, digits and '_' (e.g. 'point_cloud')."
            )
        if not self.placeholder_token:
            self.placeholder_token = f"<{self.name}>"
        from .connectors import CONNECTOR_REGISTRY  # lazily: the connectors need torch, a config does not

        CONNECTOR_REGISTRY.get(self.connector_type, where=f"model.modalities.{self.name}.connector_type")
        if self.token_pool is not None and self.token_pool < 1:
            raise ValueError(f"Modality {self.name!r}: token_pool must be >= 1, got {self.token_pool}.")

    @classmethod
    def from_dict(cls, data: dict[str, Any] | ModalityConfig) -> ModalityConfig:
        if isinstance(data, ModalityConfig):
            return data
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(
                f"Modality {data.get('name', '?')!r}: unknown field(s) {unknown}; known fields: {sorted(known)}."
            )
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class AnyModalityLlavaConfig(PreTrainedConfig):
    r"""
    Configuration of [`AnyModalityLlavaForConditionalGeneration`].

    Args:
        text_config (`dict` or `PreTrainedConfig`):
            Config of the language model (any causal LM transformers knows: Llama, Qwen2, SmolLM2 ...).
        modalities (`dict[str, dict]`):
            One `ModalityConfig` (as a dict) per modality, keyed by name, in the order they were added.
        projector_hidden_act (`str`):
            Activation of the `mlp2x_gelu` connector (LLaVA's projector).
        llm_adapters (`dict`, *optional*):
            Adapters a continual-learning method grows inside the language model, rebuilt on load:
            `{"type": <registered name>, ...its options}`, e.g. PathWeave's `{"type": "pathweave",
            "rank": 128, "modalities": ["image", "video"]}` (see `llm_adapters.py`).

    Example:
    ```python
    >>> from transformers import LlamaConfig
    >>> from hf_mera import AnyModalityLlavaConfig, AnyModalityLlava
    >>> config = AnyModalityLlavaConfig(text_config=LlamaConfig(hidden_size=64, num_hidden_layers=2))
    >>> model = AnyModalityLlava(config)  # a text-only model; add modalities with model.add_modality(...)
    ```
    """

    model_type = "anymodality_llava"
    sub_configs_defaults = {"text_config": SubConfigSpec(config_class=AutoConfig, model_type="llama")}

    text_config: dict | PreTrainedConfig | None = None
    modalities: dict[str, Any] = field(default_factory=dict)
    projector_hidden_act: str = "gelu"
    llm_adapters: dict[str, Any] | None = None
    tie_word_embeddings: bool = False

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        # Validate every modality now, so a typo in a YAML fails at load time, naming the field.
        self.modalities = {
            name: ModalityConfig.from_dict({**cfg, "name": cfg.get("name", name)}).to_dict()
            for name, cfg in (self.modalities or {}).items()
        }
        for name, cfg in self.modalities.items():
            if cfg["name"] != name:
                raise ValueError(f"Modality key {name!r} does not match its config name {cfg['name']!r}.")
        from .llm_adapters import normalize_llm_adapters  # lazily, as the connectors: adapters need torch

        self.llm_adapters = normalize_llm_adapters(self.llm_adapters, list(self.modalities))
        # Models whose text config ties embeddings (SmolLM2, Qwen2 small) keep tying them here.
        if not self.tie_word_embeddings and getattr(self.text_config, "tie_word_embeddings", False):
            self.tie_word_embeddings = True

    def modality(self, name: str) -> ModalityConfig:
        if name not in self.modalities:
            raise ValueError(
                f"Unknown modality {name!r}; this model knows {sorted(self.modalities) or 'none'}."
            )
        return ModalityConfig.from_dict(self.modalities[name])


__all__ = ["AnyModalityLlavaConfig", "ModalityConfig"]
