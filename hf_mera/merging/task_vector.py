"""The task-vector family of merges as one parameterised class (mergekit's `GeneralizedTaskArithmeticMerge`).

Over the stages 1 … i, with the task vectors τₖ = θₖ,vanilla − θ₀ on θ₀'s block (`base.task_vector`):

    θᵢ = θ₀ + λ · combine_k( wₖ · sparsify(τₖ) )

| `merge:`          | sparsify(τ)                                   | combine                          |
|-------------------|-----------------------------------------------|----------------------------------|
| `task_arithmetic` | τ                                             | Σₖ                               |
| `magnitude_prune` | keep the top-`density` entries by |τ|         | Σₖ                               |
| `ties`            | keep the top-`density` entries by |τ|         | elect a sign, mean of agreeing   |
| `dare_linear`     | keep each entry with p = `density`, / density | Σₖ                               |
| `dare_ties`       | keep each entry with p = `density`, / density | elect a sign, mean of agreeing   |

The protocol, as published (issue #17):

- **Task vectors relative to θ₀.** Ilharco et al. 2023 ("Editing models with task arithmetic") define
  τ = θ_ft − θ_pre, and TIES (Yadav et al. 2023) and DARE (Yu et al. 2024) sparsify and combine those
  same vectors, so θ₀ (the LLM before stage 1's instruction tuning, `history.start(1)`) is the θ_pre
  of every stage. In a curriculum θₖ,vanilla starts from the merged θₖ₋₁, so τₖ carries the earlier
  stages' merged knowledge as well as stage k's own training (it is not stage k's increment
  θₖ,vanilla − θₖ,start). With LoRA, τₖ = (θₖ,start − θ₀) + Bₖ·Aₖ·scaling, exact in float32
  (`base.task_vector`). Consequence: `task_arithmetic` with `weights: mean` and λ = 1 is
  θ₀ + mean_k(θₖ,vanilla − θ₀) = the mean of θ₁ … θᵢ,vanilla, MERA's merge
  (`tests/test_merging_stage_merges.py`).
- **Stage 1 is the expert**, as MERA's and LPM's: `skips(1)`, θ₁ = θ₁,vanilla (merging one model
  would only trim it: TIES at density 0.2 kept 70 % of the expert). So θ₀ + τ₁ = θ₁,vanilla.
- **One DARE mask per stage update**: the drop mask of τₖ[key] is drawn once, from a generator seeded
  by (the run's seed, k, key) (`dare_mask_seed`, as `hf_mera.data.seeding`'s streams), so the entries of
  τₖ that survive are the same at every later stage i ≥ k, in every process and whatever the key order.
  DARE (Yu et al. 2024) drops and rescales a delta once; redrawing at every stage would make the kept
  half of an old update change over time. The arithmetic is peft's `random_pruning` given the same
  Bernoulli draws: mask = bernoulli(full_like(τ, density)), τ · mask / density.
- **Tied weights are merged once** (`base.tied_groups`): every key of a group gets the same tensor.

Options (``merge: {method: ties, density: 0.5, weights: mean}``): `density` (the kept fraction, required
by the sparsifying members, refused by the others), `majority_sign_method` ("total": sign of Σₖ τₖ;
"frequency": sign of Σₖ sign(τₖ); ties go to +; TIES members only), `scale` (λ, default 1) and `weights`:
``ones`` (wₖ = 1, the default, the papers' sum) or ``mean`` (1/i: with `task_arithmetic`, MERA's merge).
(``mera``, 1/k, was MERA's merge when τₖ were increments; it is refused now, pointing to ``mean``.)

The tensor math is peft's (`peft.utils.merge_utils`: `prune`, `calculate_majority_sign_mask`,
`reshape_weight_task_tensors`, `disjoint_merge`), called in the order of peft's own `task_arithmetic`,
`magnitude_prune`, `ties`, `dare_linear` and `dare_ties`, so each member equals peft's function bit for
bit (DARE: given the same draws). peft is imported when a merge runs (it is slow to import).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any, ClassVar, Literal

import torch

from .base import (
    StageHistory,
    StageMerge,
    fold,
    llm_keys,
    once_per_tied_group,
    register_merge,
    task_vector,
    tied_groups,
    writable_keys,
)

WEIGHTINGS: dict[str, Callable[[int], list[float]]] = {
    "ones": lambda i: [1.0] * i,
    "mean": lambda i: [1.0 / i] * i,
}
# What the merge computes (part of its phase's description): task vectors relative to θ₀, stage 1 the
# expert, DARE masks seeded per (run seed, stage, key), tied weights merged once (#17).
PROTOCOL = "theta0-task-vectors"


def dare_mask_seed(seed: int, k: int, key: str) -> int:
    """The seed of the generator that draws τₖ[key]'s DARE mask: stable across processes and stages."""
    from hf_mera.data.seeding import stable_int

    return stable_int(seed, "dare-mask", k, key)


def random_prune(
    tensor: torch.Tensor, density: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """peft's `prune(tensor, density, method="random", rescale=True)` drawing from `generator` (None:
    torch's global generator, as peft): keep each entry with probability `density`, divide by it."""
    if density >= 1:  # peft keeps everything (and draws nothing)
        return tensor
    mask = torch.bernoulli(torch.full_like(input=tensor, fill_value=density), generator=generator)
    return tensor * mask / density


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
    protocol = PROTOCOL

    def __init__(
        self,
        density: float | None = None,
        majority_sign_method: Literal["total", "frequency"] | None = None,
        scale: float = 1.0,
        weights: str = "ones",
    ):
        self.check(density, majority_sign_method)  # refuse bad options before any training
        if weights == "mera":
            raise ValueError(
                "weights 'mera' (1/k) was MERA's merge over stage increments; task vectors are now "
                "relative to θ₀ (#17) and MERA's merge is `weights: mean`."
            )
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
        generators: Sequence[torch.Generator | None] | None = None,
    ) -> torch.Tensor:
        """combine_k(w_k · sparsify(τ_k)) for task vectors τ_1 … τ_n (a new tensor).

        `generators`: DARE's, one per task vector (None: torch's global generator, as peft)."""
        from peft.utils import merge_utils  # lazy: peft is slow to import

        if len(task_tensors) == 0:
            raise ValueError(f"merge method {cls.name!r} needs at least one task vector")
        cls.check(density, majority_sign_method)
        # 1. sparsify each τ_k (peft warns and keeps everything at density 1)
        if cls.sparsify == "magnitude":
            task_tensors = [merge_utils.prune(t, density, method="magnitude") for t in task_tensors]
        elif cls.sparsify == "random":
            generators = [None] * len(task_tensors) if generators is None else list(generators)
            if len(generators) != len(task_tensors):
                raise ValueError(f"merge method {cls.name!r}: one generator per task vector")
            task_tensors = [random_prune(t, density, g) for t, g in zip(task_tensors, generators)]
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

    def skips(self, index: int) -> bool:
        return index == 1  # θ₁ = θ₀ + τ₁ = θ₁,vanilla: stage 1 is the expert, as MERA's

    def generators(self, history: StageHistory, key: str) -> list[torch.Generator] | None:
        """DARE's: τₖ[key]'s generator for k = 1 … i, seeded by (run seed, k, key); None otherwise."""
        if self.sparsify != "random":
            return None
        if getattr(history, "seed", None) is None:
            raise ValueError(f"merge method {self.name!r} draws random masks: the stage history needs a seed")
        return [
            torch.Generator().manual_seed(dare_mask_seed(history.seed, k, key))
            for k in range(1, history.index + 1)
        ]

    def tensors(self, history: StageHistory) -> Iterator[tuple[str, torch.Tensor]]:
        i = history.index
        start, vanilla = history.start(1), history.vanilla(i)
        merged_keys = set(llm_keys(start))
        weights = WEIGHTINGS[self.weights](i)
        writable = writable_keys(vanilla)

        def merge(key: str, tensor: torch.Tensor) -> torch.Tensor:
            base = start[key]
            updates = [task_vector(history, k, key, base) for k in range(1, i + 1)]
            mixed = self.combine(
                updates,
                weights,
                density=self.density,
                majority_sign_method=self.majority_sign_method,
                generators=self.generators(history, key),
            )
            return fold(base, mixed, self.scale, tensor, writable(key), key)

        group = tied_groups(vanilla, [k for k in vanilla.keys() if k in merged_keys])
        yield from once_per_tied_group(vanilla, group, merge)


def _member(name: str, help: str, **family: Any) -> type[TaskVectorMerge]:
    cls = type(f"{name.title().replace('_', '')}Merge", (TaskVectorMerge,), {"help": help, **family})
    return register_merge(name, cls)


_member("task_arithmetic", "θ₀ + λ Σₖ wₖ τₖ (Ilharco et al., 2023)")
_member("magnitude_prune", "θ₀ + λ Σₖ wₖ top-density(τₖ)", sparsify="magnitude")
_member("ties", "θ₀ + λ · TIES(τ₁ … τᵢ): trim, elect sign, disjoint mean (Yadav et al., 2023)",
        sparsify="magnitude", elect_sign=True)  # fmt: skip
_member("dare_linear", "θ₀ + λ Σₖ wₖ DARE(τₖ): random drop, rescale (Yu et al., 2024)", sparsify="random")
_member("dare_ties", "DARE's drop, then TIES' sign election", sparsify="random", elect_sign=True)

__all__ = ["PROTOCOL", "WEIGHTINGS", "TaskVectorMerge", "dare_mask_seed", "random_prune"]
