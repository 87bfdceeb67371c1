"""A registry of merge methods, keyed by name (mergekit style: a decorator, no if/elif chains).

A merge method is a pure function of tensors::

    fn(base: Tensor, others: Sequence[Tensor], **kwargs) -> Tensor

`base` is θ_base (or θᵢ₋₁ for MERA), `others` the fine-tuned θ_k, all of one shape; the result has
that shape too. `merge_state_dicts` calls it once per selected key.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from types import MappingProxyType
from typing import Any, TypeVar

import torch

MergeMethod = Callable[..., torch.Tensor]
F = TypeVar("F", bound=MergeMethod)

_MERGE_METHODS: dict[str, MergeMethod] = {}
# Read-only view for listing; register through the decorator.
MERGE_METHODS: MappingProxyType[str, MergeMethod] = MappingProxyType(_MERGE_METHODS)


def register_merge_method(name: str) -> Callable[[F], F]:
    """Register `fn(base, others, **kwargs) -> Tensor` under `name`; a second use of a name raises."""

    def decorator(fn: F) -> F:
        if name in _MERGE_METHODS:
            known = _MERGE_METHODS[name]
            raise ValueError(
                f"merge method {name!r} is already registered (by {known.__module__}.{known.__qualname__})"
            )
        _MERGE_METHODS[name] = fn
        return fn

    return decorator


def get_merge_method(name: str) -> MergeMethod:
    """The merge function registered as `name`; an unknown name raises listing the known ones."""
    if name not in _MERGE_METHODS:
        raise ValueError(f"unknown merge method {name!r}; known: {sorted(_MERGE_METHODS)}")
    return _MERGE_METHODS[name]


def merge(name: str, base: torch.Tensor, others: Sequence[torch.Tensor], **kwargs: Any) -> torch.Tensor:
    """Shorthand for `get_merge_method(name)(base, others, **kwargs)`."""
    return get_merge_method(name)(base, others, **kwargs)
