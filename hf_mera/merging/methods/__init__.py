"""Built-in merge methods, one module each (mergekit's `merge_methods/`).

Importing this package registers them. Import the functions from `hf_mera.merging`; the modules are
imported here by name only, so `methods.ties` stays the module, not the function.
"""

from . import dare, magnitude_prune, running_average, task_arithmetic, ties, weight_average

__all__ = ["dare", "magnitude_prune", "running_average", "task_arithmetic", "ties", "weight_average"]
