"""Helpers shared by the merge methods: task vectors, per-model weights, argument checks."""

from __future__ import annotations

import operator
from collections.abc import Sequence

import torch


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


def check_stage_index(stage_index: int) -> int:
    """MCL stages are counted from 1; returns the index as a plain int."""
    if isinstance(stage_index, bool):
        raise ValueError(f"stage_index must be an integer >= 1, got {stage_index!r}")
    try:
        index = operator.index(stage_index)
    except TypeError:
        raise ValueError(f"stage_index must be an integer >= 1, got {stage_index!r}") from None
    if index < 1:
        raise ValueError(f"stage_index must be an integer >= 1 (stages are 1-based), got {index}")
    return index
