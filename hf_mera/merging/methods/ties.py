"""TIES-merging (Yadav et al., 2023): trim, elect sign, disjoint mean of the task vectors."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch

from ..registry import register_merge_method
from ._common import as_weights, check_density, check_others, task_vectors


@register_merge_method("ties")
def ties(
    base: torch.Tensor,
    others: Sequence[torch.Tensor],
    density: float,
    weights: Sequence[float] | torch.Tensor | None = None,
    majority_sign_method: Literal["total", "frequency"] = "total",
    scale: float = 1.0,
) -> torch.Tensor:
    """θ = θ_base + λ · TIES(τ_1 … τ_n), τ_k = θ_k − θ_base.

    TIES (peft's `ties`): keep the top-`density` fraction of each τ_k by magnitude; elect per entry
    the sign of Σ_k τ_k ("total") or of Σ_k sign(τ_k) ("frequency"), ties going to +; average
    w_k · τ_k over the models whose sign agrees (0 where none does).

    Args:
        base: θ_base. others: θ_1 … θ_n.
        density: fraction of each task vector kept, in (0, 1].
        weights: w_1 … w_n (default 1 each), applied after the sign election.
        majority_sign_method: "total" or "frequency".
        scale: λ.
    """
    from peft.utils.merge_utils import ties as peft_ties  # lazy: peft is slow to import

    check_others("ties", others)
    check_density("ties", density)
    tau = task_vectors(base, others)
    w = as_weights("ties", weights, len(tau), like=base, default=1.0)
    return base + scale * peft_ties(tau, w, density, majority_sign_method=majority_sign_method)
