"""DARE (Yu et al., 2024): drop task-vector entries at random and rescale, then sum or TIES-merge.

Randomness comes from torch's global generator (as in peft): seed it with `torch.manual_seed`
for a reproducible merge.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch

from ..registry import register_merge_method
from ._common import as_weights, check_density, check_others, task_vectors


@register_merge_method("dare_linear")
def dare_linear(
    base: torch.Tensor,
    others: Sequence[torch.Tensor],
    density: float,
    weights: Sequence[float] | torch.Tensor | None = None,
    scale: float = 1.0,
) -> torch.Tensor:
    """θ = θ_base + λ · Σ_k w_k · (m_k ⊙ τ_k) / density, m_k ~ Bernoulli(density), τ_k = θ_k − θ_base.

    Args:
        base: θ_base. others: θ_1 … θ_n.
        density: keep probability of each entry, in (0, 1]; kept entries are divided by it.
        weights: w_1 … w_n (default 1 each). scale: λ.
    """
    from peft.utils.merge_utils import dare_linear as peft_dare_linear  # lazy: peft is slow to import

    check_others("dare_linear", others)
    check_density("dare_linear", density)
    tau = task_vectors(base, others)
    w = as_weights("dare_linear", weights, len(tau), like=base, default=1.0)
    return base + scale * peft_dare_linear(tau, w, density)


@register_merge_method("dare_ties")
def dare_ties(
    base: torch.Tensor,
    others: Sequence[torch.Tensor],
    density: float,
    weights: Sequence[float] | torch.Tensor | None = None,
    majority_sign_method: Literal["total", "frequency"] = "total",
    scale: float = 1.0,
) -> torch.Tensor:
    """θ = θ_base + λ · TIES-merge of the DARE-pruned task vectors (m_k ⊙ τ_k) / density.

    Args:
        base: θ_base. others: θ_1 … θ_n.
        density: keep probability of each entry, in (0, 1].
        weights: w_1 … w_n (default 1 each), applied after the sign election.
        majority_sign_method: "total" or "frequency". scale: λ.
    """
    from peft.utils.merge_utils import dare_ties as peft_dare_ties  # lazy: peft is slow to import

    check_others("dare_ties", others)
    check_density("dare_ties", density)
    tau = task_vectors(base, others)
    w = as_weights("dare_ties", weights, len(tau), like=base, default=1.0)
    return base + scale * peft_dare_ties(tau, w, density, majority_sign_method=majority_sign_method)
