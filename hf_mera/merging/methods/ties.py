"""TIES-merging (Yadav et al., 2023): trim, elect sign, disjoint mean of the task vectors.

θ = θ_base + λ · TIES(τ_1 … τ_n): keep the top-`density` fraction of each τ_k by magnitude; elect per
entry the sign of Σ_k τ_k ("total") or of Σ_k sign(τ_k) ("frequency"), ties going to +; average
w_k · τ_k over the models whose sign agrees (0 where none does). A configuration of `TaskVectorMerge`;
arguments: density, weights, majority_sign_method, scale.
"""

from .base import register_merge_method
from .task_vector import TaskVectorMerge

ties = register_merge_method("ties", TaskVectorMerge("ties", sparsify="magnitude", elect_sign=True))
