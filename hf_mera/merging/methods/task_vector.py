"""The task-vector family of merges as one parameterised class (mergekit's `GeneralizedTaskArithmeticMerge`).

    θ = θ_base + λ · combine_k( w_k · sparsify(τ_k) ),   τ_k = θ_k − θ_base

| configuration     | sparsify(τ)                                  | combine                           |
|-------------------|----------------------------------------------|-----------------------------------|
| `task_arithmetic` | τ                                            | Σ_k                               |
| `magnitude_prune` | keep the top-`density` entries by |τ|        | Σ_k                               |
| `ties`            | keep the top-`density` entries by |τ|        | elect a sign, mean of agreeing    |
| `dare_linear`     | keep each entry with p = `density`, / density | Σ_k                               |
| `dare_ties`       | keep each entry with p = `density`, / density | elect a sign, mean of agreeing    |

Symbols → arguments: θ_base `base`, θ_1 … θ_n `others`, w_k `weights` (default 1 each), λ `scale`,
the kept fraction `density`, the sign election rule `majority_sign_method` ("total": sign of Σ_k τ_k;
"frequency": sign of Σ_k sign(τ_k); ties go to +).

The tensor math is peft's (`peft.utils.merge_utils`: `prune`, `calculate_majority_sign_mask`,
`reshape_weight_task_tensors`, `disjoint_merge`), called in the order of peft's own `task_arithmetic`,
`magnitude_prune`, `ties`, `dare_linear` and `dare_ties`, so each configuration equals peft's function bit
for bit. peft is imported when a merge runs (it is slow to import). DARE draws its masks from torch's
global generator, as peft does: seed it with `torch.manual_seed` for a reproducible merge.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch

from .base import as_weights, check_density, check_others, task_vectors

Weights = Sequence[float] | torch.Tensor | None


@dataclass(frozen=True)
class TaskVectorMerge:
    """One member of the task-vector family; call it as a merge method `(base, others, **kwargs)`.

    Args:
        name: the registered name, for error messages.
        sparsify: None (keep every entry), "magnitude" (TIES' trim) or "random" (DARE's drop and
            rescale by 1 / density). With either, `density` is required.
        elect_sign: TIES' sign election and disjoint mean instead of a plain sum; takes
            `majority_sign_method`.
    """

    name: str
    sparsify: Literal["magnitude", "random"] | None = None
    elect_sign: bool = False

    def combine(
        self,
        task_tensors: Sequence[torch.Tensor],
        weights: Weights = None,
        *,
        density: float | None = None,
        majority_sign_method: Literal["total", "frequency"] | None = None,
    ) -> torch.Tensor:
        """combine_k(w_k · sparsify(τ_k)) for task vectors τ_1 … τ_n given directly (e.g. LoRA's ΔW)."""
        from peft.utils import merge_utils  # lazy: peft is slow to import

        check_others(self.name, task_tensors)
        self._check(density, majority_sign_method)
        # 1. sparsify each τ_k (peft warns and keeps everything at density 1)
        if self.sparsify is not None:
            rescale = self.sparsify == "random"
            task_tensors = [
                merge_utils.prune(t, density, method=self.sparsify, rescale=rescale) for t in task_tensors
            ]
        stacked = torch.stack(list(task_tensors), dim=0)
        # 2. TIES: per entry, the sign the models agree on, before weighting (as peft does)
        if self.elect_sign:
            mask = merge_utils.calculate_majority_sign_mask(stacked, method=majority_sign_method or "total")
        # 3. weight each task vector
        w = as_weights(self.name, weights, len(stacked), like=stacked, default=1.0)
        weighted = stacked * merge_utils.reshape_weight_task_tensors(stacked, w)
        # 4. sum, or (TIES) the mean over the models whose sign agrees, 0 where none does
        return merge_utils.disjoint_merge(weighted, mask) if self.elect_sign else weighted.sum(dim=0)

    def __call__(
        self,
        base: torch.Tensor,
        others: Sequence[torch.Tensor],
        *,
        weights: Weights = None,
        density: float | None = None,
        majority_sign_method: Literal["total", "frequency"] | None = None,
        scale: float = 1.0,
    ) -> torch.Tensor:
        """θ = θ_base + λ · combine_k(w_k · sparsify(θ_k − θ_base))."""
        check_others(self.name, others)
        mixed = self.combine(
            task_vectors(base, others), weights, density=density, majority_sign_method=majority_sign_method
        )
        return base + scale * mixed

    def _check(self, density: float | None, majority_sign_method: str | None) -> None:
        if self.sparsify is None and density is not None:
            raise ValueError(f"merge method {self.name!r} keeps every entry; it takes no density")
        if self.sparsify is not None:
            if density is None:
                raise ValueError(f"merge method {self.name!r} needs a density in (0, 1]")
            check_density(self.name, density)
        if not self.elect_sign and majority_sign_method is not None:
            raise ValueError(f"merge method {self.name!r} elects no sign; it takes no majority_sign_method")
