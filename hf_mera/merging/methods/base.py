"""The registry of merge methods and the argument checks they share.

A merge method is a pure function of tensors, registered by name (mergekit style: a decorator, no
if/elif chains; unlike mergekit's, a second registration of a name raises)::

    fn(base: Tensor, others: Sequence[Tensor], **kwargs) -> Tensor

`base` is θ_base (θᵢ₋₁ for MERA), `others` the fine-tuned θ_1 … θ_n, all of one shape; the result has
that shape too. `merge_state_dicts` calls it once per selected key.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from ...registry import Registry

MergeMethod = Callable[..., torch.Tensor]

MERGE_METHODS: Registry[MergeMethod] = Registry("merge method")
register_merge_method = MERGE_METHODS.register
get_merge_method = MERGE_METHODS.get


def merge(name: str, base: torch.Tensor, others: Sequence[torch.Tensor], **kwargs: Any) -> torch.Tensor:
    """Shorthand for `get_merge_method(name)(base, others, **kwargs)`."""
    return get_merge_method(name)(base, others, **kwargs)


def check_others(method: str, others: Sequence[torch.Tensor], n: int | None = None) -> None:
    """Raise unless `others` holds at least one tensor (exactly `n` if given)."""
    if len(others) == 0 or (n is not None and len(others) != n):
        expected = f"exactly {n}" if n is not None else "at least one"
        raise ValueError(f"merge method {method!r} needs {expected} fine-tuned tensor(s), got {len(others)}")


def task_vectors(base: torch.Tensor, others: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """τ_k = θ_k − θ_base for each fine-tuned tensor θ_k."""
    return [other - base for other in others]


def as_weights(
    method: str, weights: Sequence[float] | torch.Tensor | None, n: int, like: torch.Tensor, default: float
) -> torch.Tensor:
    """A 1-D tensor of `n` weights (all `default` when None), on `like`'s device and dtype."""
    if weights is None:
        return torch.full((n,), default, dtype=like.dtype, device=like.device)
    w = torch.as_tensor(weights, dtype=like.dtype, device=like.device)
    if w.shape != (n,):
        raise ValueError(
            f"merge method {method!r} expects {n} weights, one per model, got shape {tuple(w.shape)}"
        )
    return w


def check_density(method: str, density: float) -> None:
    """Density is the kept fraction of each task vector: (0, 1]. 0 would zero (DARE: divide by 0)."""
    if not 0 < density <= 1:
        raise ValueError(f"merge method {method!r}: density must be in (0, 1], got {density}")
