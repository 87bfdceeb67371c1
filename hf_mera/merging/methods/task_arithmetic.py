"""Task arithmetic (Ilharco et al., 2023): θ = θ_base + λ · Σ_k w_k · τ_k, τ_k = θ_k − θ_base.

A configuration of `TaskVectorMerge` (no sparsification, plain sum); arguments: weights, scale.
"""

from .base import register_merge_method
from .task_vector import TaskVectorMerge

task_arithmetic = register_merge_method("task_arithmetic", TaskVectorMerge("task_arithmetic"))
