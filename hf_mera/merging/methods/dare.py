"""DARE (Yu et al., 2024): drop task-vector entries at random (keep each with p = density), rescale the
kept ones by 1 / density, then sum ("dare_linear") or TIES-merge ("dare_ties").

Configurations of `TaskVectorMerge`; arguments: density, weights, scale (and majority_sign_method for
dare_ties). Masks come from torch's global generator: `torch.manual_seed` for a reproducible merge.
"""

from .base import register_merge_method
from .task_vector import TaskVectorMerge

dare_linear = register_merge_method("dare_linear", TaskVectorMerge("dare_linear", sparsify="random"))
dare_ties = register_merge_method(
    "dare_ties", TaskVectorMerge("dare_ties", sparsify="random", elect_sign=True)
)
