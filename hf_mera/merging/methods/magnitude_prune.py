"""Magnitude pruning + task arithmetic: keep the largest entries of each task vector, then sum."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..registry import register_merge_method
from ._common import as_weights, check_density, check_others, task_vectors


@register_merge_method("magnitude_prune")
def magnitude_prune(
    base: torch.Tensor,
    others: Sequence[torch.Tensor],
    density: float,
    weights: Sequence[float] | torch.Tensor | None = None,
    scale: float = 1.0,
) -> torch.Tensor:
    """θ = θ_base + λ · Σ_k w_k · topk_density(τ_k), τ_k = θ_k − θ_base.

    Args:
        base: θ_base. others: θ_1 … θ_n.
        density: fraction of each task vector kept (largest |τ|), in (0, 1].
        weights: w_1 … w_n (default 1 each). scale: λ.
    """
    from peft.utils.merge_utils import magnitude_prune as peft_magnitude_prune  # lazy: slow import

    check_others("magnitude_prune", others)
    check_density("magnitude_prune", density)
    tau = task_vectors(base, others)
    w = as_weights("magnitude_prune", weights, len(tau), like=base, default=1.0)
    return base + scale * peft_magnitude_prune(tau, w, density)
