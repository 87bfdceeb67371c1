"""Magnitude pruning + task arithmetic: θ = θ_base + λ · Σ_k w_k · topk_density(τ_k).

A configuration of `TaskVectorMerge` (keep the largest |τ|, plain sum); arguments: density, weights,
scale.
"""

from .base import register_merge_method
from .task_vector import TaskVectorMerge

magnitude_prune = register_merge_method(
    "magnitude_prune", TaskVectorMerge("magnitude_prune", sparsify="magnitude")
)
