"""The task-vector family of merges as one parameterised class (mergekit's `GeneralizedTaskArithmeticMerge`).

Over the stages 1 … i, with τₖ = θₖ,vanilla − θₖ,start (exactly Bₖ·Aₖ·scaling with LoRA):

    θᵢ = θ₀ + λ · combine_k( wₖ · sparsify(τₖ) )

| `merge:`          | sparsify(τ)                                   | combine                          |
|-------------------|-----------------------------------------------|----------------------------------|
| `task_arithmetic` | τ                                             | Σₖ                               |
| `magnitude_prune` | keep the top-`density` entries by |τ|         | Σₖ                               |
| `ties`            | keep the top-`density` entries by |τ|         | elect a sign, mean of agreeing   |
| `dare_linear`     | keep each entry with p = `density`, / density | Σₖ                               |
| `dare_ties`       | keep each entry with p = `density`, / density | elect a sign, mean of agreeing   |

Options (``merge: {method: ties, density: 0.5, weights: mera}``): `density` (the kept fraction, required
by the sparsifying members, refused by the others), `majority_sign_method` ("total": sign of Σₖ τₖ;
"frequency": sign of Σₖ sign(τₖ); ties go to +; TIES members only), `scale` (λ, default 1) and `weights`:
``ones`` (wₖ = 1, the default), ``mean`` (1/i) or ``mera`` (1/k: with `task_arithmetic` this is MERA's
merge again).

The tensor math is peft's (`peft.utils.merge_utils`: `prune`, `calculate_majority_sign_mask`,
`reshape_weight_task_tensors`, `disjoint_merge`), called in the order of peft's own `task_arithmetic`,
`magnitude_prune`, `ties`, `dare_linear` and `dare_ties`, so each member equals peft's function bit for
bit. peft is imported when a merge runs (it is slow to import). DARE draws its masks from torch's global
generator, as peft does (the merge phase seeds it), key by key in θ₀'s key order, stage by stage.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any, ClassVar, Literal

import torch

from .base import StageHistory, StageMerge, fold, llm_keys, register_merge, stage_update, writable_keys

WEIGHTINGS: dict[str, Callable[[int], list[float]]] = {
    "ones": lambda i: [1.0] * i,
    "mean": lambda i: [1.0 / i] * i,
    "mera": lambda i: [1.0 / k for k in range(1, i + 1)],
}


class TaskVectorMerge(StageMerge):
    """One member of the family; the members below set `sparsify` and `elect_sign`.

    Class attributes:
        sparsify: None (keep every entry), "magnitude" (TIES' trim) or "random" (DARE's drop and
            rescale by 1 / density). With either, `density` is required.
        elect_sign: TIES' sign election and disjoint mean instead of a plain sum; takes
            `majority_sign_method`.
    """

    sparsify: ClassVar[Literal["magnitude", "random"] | None] = None
    elect_sign: ClassVar[bool] = False

    def __init__(
        self,
        density: float | None = None,
        majority_sign_method: Literal["total", "frequency"] | None = None,
        scale: float = 1.0,
        weights: str = "ones",
    ):
        self.check(density, majority_sign_method)  # refuse bad options before any training
        if weights not in WEIGHTINGS:
            raise ValueError(f"weights must be one of {sorted(WEIGHTINGS)}, got {weights!r}.")
        if isinstance(scale, bool) or not isinstance(scale, (int, float)):
            raise ValueError(f"scale must be a number, got {scale!r}.")
        self.density, self.majority_sign_method = density, majority_sign_method
        self.scale, self.weights = float(scale), weights

    @classmethod
    def check(cls, density: float | None, majority_sign_method: str | None) -> None:
        if cls.sparsify is None and density is not None:
            raise ValueError(f"merge method {cls.name!r} keeps every entry; it takes no density")
        if cls.sparsify is not None:
            if density is None:
                raise ValueError(f"merge method {cls.name!r} needs a density in (0, 1]")
            # 0 would zero every entry (DARE: divide by 0).
            if not 0 < density <= 1:
                raise ValueError(f"merge method {cls.name!r}: density must be in (0, 1], got {density}")
        if not cls.elect_sign and majority_sign_method is not None:
            raise ValueError(f"merge method {cls.name!r} elects no sign; it takes no majority_sign_method")
        if majority_sign_method not in (None, "total", "frequency"):
            raise ValueError(
                f"majority_sign_method must be 'total' or 'frequency', got {majority_sign_method!r}"
            )

    @classmethod
    def option_names(cls) -> list[str]:
        names = ["density"] if cls.sparsify else []
        return names + (["majority_sign_method"] if cls.elect_sign else []) + ["scale", "weights"]

    def options(self) -> dict[str, Any]:
        return {
            "density": self.density,
            "majority_sign_method": self.majority_sign_method,
            "scale": self.scale,
            "weights": self.weights,
        }

    @classmethod
    def combine(
        cls,
        task_tensors: Sequence[torch.Tensor],
        weights: Sequence[float] | torch.Tensor | None = None,
        *,
        density: float | None = None,
        majority_sign_method: Literal["total", "frequency"] | None = None,
    ) -> torch.Tensor:
        """combine_k(w_k · sparsify(τ_k)) for task vectors τ_1 … τ_n (a new tensor)."""
        from peft.utils import merge_utils  # lazy: peft is slow to import

        if len(task_tensors) == 0:
            raise ValueError(f"merge method {cls.name!r} needs at least one task vector")
        cls.check(density, majority_sign_method)
        # 1. sparsify each τ_k (peft warns and keeps everything at density 1)
        if cls.sparsify is not None:
            rescale = cls.sparsify == "random"
            task_tensors = [
                merge_utils.prune(t, density, method=cls.sparsify, rescale=rescale) for t in task_tensors
            ]
        stacked = torch.stack(list(task_tensors), dim=0)
        # 2. TIES: per entry, the sign the models agree on, before weighting (as peft does)
        if cls.elect_sign:
            mask = merge_utils.calculate_majority_sign_mask(stacked, method=majority_sign_method or "total")
        # 3. weight each task vector
        n = len(stacked)
        w = torch.ones(n) if weights is None else torch.as_tensor(weights, dtype=stacked.dtype)
        if w.shape != (n,):
            raise ValueError(
                f"merge method {cls.name!r} expects {n} weights, one per model, got {tuple(w.shape)}"
            )
        weighted = stacked * merge_utils.reshape_weight_task_tensors(stacked, w.to(stacked))
        # 4. sum, or (TIES) the mean over the models whose sign agrees, 0 where none does
        return merge_utils.disjoint_merge(weighted, mask) if cls.elect_sign else weighted.sum(dim=0)

    def tensors(self, history: StageHistory) -> Iterator[tuple[str, torch.Tensor]]:
        i = history.index
        start, vanilla = history.start(1), history.vanilla(i)
        theta0 = set(llm_keys(start))
        weights = WEIGHTINGS[self.weights](i)
        writable = writable_keys(vanilla)
        for key, tensor in vanilla.items():
            if key not in theta0:
                yield key, tensor
                continue
            base = start[key]
            updates = [stage_update(history, k, key, base.shape) for k in range(1, i + 1)]
            mixed = self.combine(
                updates, weights, density=self.density, majority_sign_method=self.majority_sign_method
            )
            yield key, fold(base, mixed, self.scale, tensor, writable(key), key)


def _member(name: str, help: str, **family: Any) -> type[TaskVectorMerge]:
    cls = type(f"{name.title().replace('_', '')}Merge", (TaskVectorMerge,), {"help": help, **family})
    return register_merge(name, cls)


_member("task_arithmetic", "θ₀ + λ Σₖ wₖ τₖ (Ilharco et al., 2023)")
_member("magnitude_prune", "θ₀ + λ Σₖ wₖ top-density(τₖ)", sparsify="magnitude")
_member("ties", "θ₀ + λ · TIES(τ₁ … τᵢ): trim, elect sign, disjoint mean (Yadav et al., 2023)",
        sparsify="magnitude", elect_sign=True)  # fmt: skip
_member("dare_linear", "θ₀ + λ Σₖ wₖ DARE(τₖ): random drop, rescale (Yu et al., 2024)", sparsify="random")
_member("dare_ties", "DARE's drop, then TIES' sign election", sparsify="random", elect_sign=True)

__all__ = ["WEIGHTINGS", "TaskVectorMerge"]
