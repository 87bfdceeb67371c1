"""MERA's running average (paper eq. in §4.1) and the interpolation it is a case of."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..registry import register_merge_method
from ._common import check_others, check_stage_index


@register_merge_method("interpolate")
def interpolate(base: torch.Tensor, others: Sequence[torch.Tensor], coefficient: float) -> torch.Tensor:
    """θ = θ_prev + c · (θ_new − θ_prev)  =  (1 − c) · θ_prev + c · θ_new.

    Args:
        base: θ_prev, the merged model of the previous stage (θᵢ₋₁).
        others: [θ_new], the single vanilla model of this stage (θᵢ,vanilla).
        coefficient: c ∈ [0, 1], the weight of the new model (`MergeSchedule` gives it per stage).
    """
    check_others("interpolate", others, n=1)
    if not 0 <= coefficient <= 1:
        raise ValueError(f"merge method 'interpolate': coefficient must be in [0, 1], got {coefficient}")
    if coefficient == 1:
        # θ_prev + (θ_new − θ_prev) can be off by an ulp; "keep the new model" should be exact.
        return others[0].clone()
    # Delta form: where θ_new == θ_prev (frozen weights) the result is θ_prev bit for bit.
    return base + coefficient * (others[0] - base)


@register_merge_method("mera")
def mera_running_average(
    base: torch.Tensor, others: Sequence[torch.Tensor], stage_index: int
) -> torch.Tensor:
    """θᵢ = (i−1)/i · θᵢ₋₁ + 1/i · θᵢ,vanilla  =  θᵢ₋₁ + (θᵢ,vanilla − θᵢ₋₁) / i.

    Args:
        base: θᵢ₋₁, the merged model after stage i − 1.
        others: [θᵢ,vanilla], the model after the standard training of stage i.
        stage_index: i, 1-based. i = 1 returns θ₁,vanilla.

    Unrolled, θᵢ is the plain mean of the i vanilla models; with a shared base θ₀ it is
    θ₀ + mean(Δ₁ … Δᵢ).
    """
    return interpolate(base, others, coefficient=1.0 / check_stage_index(stage_index))
