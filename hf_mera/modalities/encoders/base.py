"""Encoder base class, the encoder registry and the functions the model builds encoders with."""

from __future__ import annotations

import copy
import hashlib
import json
from abc import ABCMeta, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, ClassVar, TypeVar

import torch
from torch import nn

from hf_mera.registry import Registry

__all__ = [
    "ENCODER_REGISTRY",
    "ModalityEncoder",
    "build_encoder",
    "encoder_fingerprint",
    "load_pretrained_encoder",
    "register_encoder",
]


class ModalityEncoder(nn.Module, metaclass=ABCMeta):
    """A modality encoder: preprocessed values → `[n_items, num_tokens, hidden_size]` features.

    Subclasses are registered with `@register_encoder(name)`, declare `default_config` (every key they
    accept) and set, in `__init__`:

    - `hidden_size`, `num_tokens`: the output feature shape per item;
    - `input_shape`: the per-item input shape they expect, or None when any length works;
    - `grid_size`: `(rows, cols)` when the last `rows * cols` tokens form a 2-D grid (images), else None;
    - `num_prefix_tokens`: tokens before that grid (a CLS token that was kept), default 0.

    `self.config` is the resolved, JSON-safe config: `build_encoder(type, encoder.config)` rebuilds the
    architecture. A frozen encoder (no parameter requires grad) stays in eval mode under `.train()`, so
    BatchNorm statistics and dropout never move and its features match the encoder-feature cache.
    """

    encoder_type: ClassVar[str] = ""
    default_config: ClassVar[dict[str, Any]] = {}

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__()
        self.config = config
        self.hidden_size: int = 0
        self.num_tokens: int = 0
        self.input_shape: tuple[int, ...] | None = None
        self.grid_size: tuple[int, int] | None = None
        self.num_prefix_tokens: int = 0

    @classmethod
    def resolve_config(cls, config: dict[str, Any] | None) -> dict[str, Any]:
        """`default_config` updated with `config`; an unknown key is a `ValueError` naming it."""
        config = dict(config or {})
        unknown = sorted(set(config) - set(cls.default_config))
        if unknown:
            raise ValueError(
                f"Encoder {cls.encoder_type!r} got unknown config key(s) {unknown}; known: {sorted(cls.default_config)}."
            )
        return json.loads(json.dumps({**copy.deepcopy(cls.default_config), **config}))

    @classmethod
    def from_config(cls, config: dict[str, Any] | None) -> ModalityEncoder:
        """The architecture described by `config`, with initial weights."""
        return cls(cls.resolve_config(config))

    @classmethod
    def from_pretrained(cls, name_or_path: str | None, **kwargs: Any) -> ModalityEncoder:
        """Pretrained weights. Built-ins without published weights accept only `name_or_path=None` and
        return their deterministic initialisation (the same weights on every machine)."""
        if name_or_path is not None:
            raise ValueError(
                f"Encoder {cls.encoder_type!r} has no pretrained weights to load from {name_or_path!r}; "
                "pass None for its deterministic initial weights."
            )
        return cls.from_config(kwargs)

    @classmethod
    def check_options(cls, options: dict[str, Any]) -> None:
        """A `ValueError` naming an option `from_pretrained(name_or_path, **options)` would refuse, without
        building anything (checked when a YAML is read). Default: the options are the config, so an
        unknown key is refused as `resolve_config` refuses it; an encoder that passes options on to
        another loader (transformers) checks what it can."""
        cls.resolve_config(options)

    def check_input(self, values: torch.Tensor) -> None:
        """A `ValueError` naming the encoder when `values` is not `[n, *input_shape]`."""
        if self.input_shape is not None and tuple(values.shape[1:]) != tuple(self.input_shape):
            raise ValueError(
                f"Encoder {self.encoder_type!r} expects inputs of shape [n, {', '.join(map(str, self.input_shape))}], "
                f"got {list(values.shape)}; check the modality's preprocess settings."
            )

    def train(self, mode: bool = True) -> ModalityEncoder:
        frozen = not any(param.requires_grad for param in self.parameters())
        return super().train(mode and not frozen)

    @abstractmethod
    def forward(self, values: torch.Tensor) -> torch.Tensor:
        """`[n_items, *input_shape]` → `[n_items, num_tokens, hidden_size]`."""


EncoderT = TypeVar("EncoderT", bound=type[ModalityEncoder])
ENCODER_REGISTRY: Registry[type[ModalityEncoder]] = Registry(
    "encoder type", base=ModalityEncoder, on_register=lambda name, cls: setattr(cls, "encoder_type", name)
)


def register_encoder(name: str) -> Callable[[EncoderT], EncoderT]:
    """Class decorator adding an encoder under `name` (its `encoder_type`); a repeated name is a `ValueError`."""
    return ENCODER_REGISTRY.register(name)


def get_encoder_class(encoder_type: str, where: str | None = None) -> type[ModalityEncoder]:
    """The registered class, or a `ValueError` listing the known encoder types (prefixed by `where`, the
    config field that held `encoder_type`, when given)."""
    return ENCODER_REGISTRY.get(encoder_type, where=where)


def build_encoder(encoder_type: str, encoder_config: dict[str, Any] | None = None) -> ModalityEncoder:
    """Builds the architecture from config only (initial weights, no download)."""
    return get_encoder_class(encoder_type).from_config(encoder_config)


def load_pretrained_encoder(
    encoder_type: str, name_or_path: str | None, **kwargs: Any
) -> tuple[ModalityEncoder, dict[str, Any]]:
    """Loads real weights; returns the encoder and the `encoder_config` that rebuilds its architecture."""
    encoder = get_encoder_class(encoder_type).from_pretrained(name_or_path, **kwargs)
    return encoder, copy.deepcopy(encoder.config)


def encoder_fingerprint(
    encoder_type: str, encoder_config: dict[str, Any], encoder_module: nn.Module | None = None
) -> str:
    """sha256 hex of the type and config, plus every state-dict tensor and non-persistent buffer when
    `encoder_module` is given (two encoders with the same architecture but different weights, or
    different computed buffers such as a mel filterbank, must not share cached features)."""
    digest = hashlib.sha256()
    digest.update(
        json.dumps({"type": encoder_type, "config": encoder_config}, sort_keys=True, default=str).encode()
    )
    if encoder_module is not None:
        tensors = dict(encoder_module.state_dict())
        # Buffers registered with persistent=False are rebuilt by code, not loaded: hash them too.
        tensors.update({f"buffer:{n}": b for n, b in encoder_module.named_buffers() if n not in tensors})
        for name, tensor in sorted(tensors.items()):
            flat = tensor.detach().cpu().contiguous().reshape(-1)
            digest.update(f"{name}:{flat.dtype}:{tuple(tensor.shape)}".encode())
            digest.update(flat.view(torch.uint8).numpy())
    return digest.hexdigest()


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Seeds torch's CPU generator inside the block only, so built-ins get the same initial weights in
    every process without disturbing the caller's random stream."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield
