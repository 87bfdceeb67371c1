"""Weight averaging: θ = Σ_k w_k θ_k over the base and the fine-tuned tensors."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .base import as_weights, check_others, register_merge_method


@register_merge_method("weight_average")
def weight_average(
    base: torch.Tensor,
    others: Sequence[torch.Tensor],
    weights: Sequence[float] | torch.Tensor | None = None,
) -> torch.Tensor:
    """θ = w_0 · θ_base + Σ_{k≥1} w_k · θ_k.

    Args:
        base: θ_base, the first model of the average (θᵢ₋₁ for MERA).
        others: θ_1 … θ_n, the fine-tuned tensors.
        weights: w_0 … w_n, one per model, base first; used as given (make them sum to 1 for an
            average). None: the plain mean, w_k = 1 / (n + 1).

    MERA's stage-i merge is `weight_average(θᵢ₋₁, [θᵢ,vanilla], [(i−1)/i, 1/i])`
    (or `hf_mera.merging.mera_running_average`, which gives the same, exactly at i = 1).
    """
    check_others("weight_average", others)
    models = torch.stack([base, *others], dim=0)
    w = as_weights("weight_average", weights, len(models), like=base, default=1.0 / len(models))
    # Contract the model axis: Σ_k w_k θ_k.
    return torch.tensordot(w, models, dims=1)
