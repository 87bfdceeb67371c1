"""Merge methods other than MERA's own (which is `hf_mera/merging/mera.py`), one module each.

`base.py` holds the registry; `task_vector.py` the task-vector family as one parameterised class, of
which `task_arithmetic`, `magnitude_prune`, `ties` and `dare` register configurations;
`weight_average.py` a plain weighted mean. Importing this package registers them. Import the methods
from `hf_mera.merging`; the modules are imported here by name only, so `methods.ties` stays the
module, not the merge.
"""

from . import dare, magnitude_prune, task_arithmetic, ties, weight_average

__all__ = ["dare", "magnitude_prune", "task_arithmetic", "ties", "weight_average"]
