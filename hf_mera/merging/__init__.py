"""Model merging for modality-incremental continual learning: the merges a curriculum names (`merge:`).

- `base.py`: the registry `MERGES` (`register_merge`, `build_merge`, `merge_help`), the `StageMerge`
  base class, what a merge reads (`StageHistory`) and "none".
- `mera.py`: MERA's merge θᵢ = θᵢ₋₁ + (θᵢ,vanilla − θᵢ₋₁)/i, full and exact LoRA ("mera").
- `task_vector.py`: the task-vector family as one parameterised class ("task_arithmetic",
  "magnitude_prune", "ties", "dare_linear", "dare_ties"), on peft's `merge_utils`.
- `lpm.py`: MAny's LPM as recursive least squares ("lpm"); `cpm.py`: MAny's CPM connector mixing.
- `kernels.py`: the tensor arithmetic every merge ends in.
- `lora.py`: ΔW = B·A·scaling from a PeftModel, peft key names → plain ones.

A new merge is one file here with one `@register_merge("<name>")` class (its options, help text and
validation live on it): importing this package imports every module in it, so nothing else changes.
Importing this package does not import peft; the functions that need it import it when called.
"""

import importlib
import pkgutil

from .base import LLM_KEY_PATTERN, MERGES, StageHistory, StageMerge, build_merge, merge_help, register_merge
from .lora import (
    PEFT_MODEL_PREFIX,
    lora_delta_weights,
    peft_key_to_model_key,
    peft_state_dict_to_model_state_dict,
)
from .mera import mera_coefficient, mera_merge_state_dict, mera_tensors

# Every module registers its merges when imported: a new merge file needs no edit here.
for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

__all__ = [
    "LLM_KEY_PATTERN",
    "MERGES",
    "PEFT_MODEL_PREFIX",
    "StageHistory",
    "StageMerge",
    "build_merge",
    "lora_delta_weights",
    "merge_help",
    "mera_coefficient",
    "mera_merge_state_dict",
    "mera_tensors",
    "peft_key_to_model_key",
    "peft_state_dict_to_model_state_dict",
    "register_merge",
]
