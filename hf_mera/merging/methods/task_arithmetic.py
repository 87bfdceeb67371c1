"""Task arithmetic (Ilharco et al., 2023): θ = θ_base + λ · Σ_k w_k τ_k."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..registry import register_merge_method
from ._common import as_weights, check_others, task_vectors


@register_merge_method("task_arithmetic")
def task_arithmetic(
    base: torch.Tensor,
    others: Sequence[torch.Tensor],
    weights: Sequence[float] | torch.Tensor | None = None,
    scale: float = 1.0,
) -> torch.Tensor:
    """θ = θ_base + λ · Σ_k w_k · τ_k, with task vectors τ_k = θ_k − θ_base.

    Args:
        base: θ_base, the model all θ_k were fine-tuned from.
        others: θ_1 … θ_n.
        weights: w_1 … w_n (default 1 each).
        scale: λ.
    """
    from peft.utils.merge_utils import task_arithmetic as peft_task_arithmetic  # lazy: peft is slow to import

    check_others("task_arithmetic", others)
    # 1. task vectors, 2. their weighted sum (peft), 3. add back to the base.
    tau = task_vectors(base, others)
    mixed = peft_task_arithmetic(
        tau, as_weights("task_arithmetic", weights, len(tau), like=base, default=1.0)
    )
    return base + scale * mixed
