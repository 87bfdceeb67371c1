"""Model merging for modality-incremental continual learning.

- Pure tensor merges, one module each under `methods/`, in a registry (`register_merge_method`,
  `get_merge_method`): "weight_average", "interpolate", "mera" (θᵢ = (i−1)/i · θᵢ₋₁ + 1/i · θᵢ,vanilla),
  "task_arithmetic", "ties", "dare_linear", "dare_ties", "magnitude_prune".
- `merge_state_dicts`: one method over whole state dicts, on the keys `include` selects
  (MERA: `LLM_KEY_PATTERN`); `mera_merge_full` for full fine-tuning.
- Exact LoRA folding (`lora_delta_weights`, `fold_lora_into_state_dict`, `mera_merge_lora`):
  θᵢ = θᵢ₋₁ + B·A·scaling / i.
- `MergeSchedule`: the coefficient per stage ("mera" 1/i, "constant", "none").

Importing this package does not import peft; the functions that need it import it when called.
"""

from .lora import (
    PEFT_MODEL_PREFIX,
    fold_lora_into_state_dict,
    lora_delta_weights,
    mera_merge_lora,
    peft_key_to_model_key,
    peft_state_dict_to_model_state_dict,
)
from .methods.dare import dare_linear, dare_ties
from .methods.magnitude_prune import magnitude_prune
from .methods.running_average import interpolate, mera_running_average
from .methods.task_arithmetic import task_arithmetic
from .methods.ties import ties
from .methods.weight_average import weight_average
from .registry import MERGE_METHODS, get_merge_method, merge, register_merge_method
from .schedule import MergeSchedule, get_merge_schedule, register_merge_schedule
from .state_dict import LLM_KEY_PATTERN, key_selector, mera_merge_full, merge_state_dicts

__all__ = [
    "LLM_KEY_PATTERN",
    "MERGE_METHODS",
    "PEFT_MODEL_PREFIX",
    "MergeSchedule",
    "dare_linear",
    "dare_ties",
    "fold_lora_into_state_dict",
    "get_merge_method",
    "get_merge_schedule",
    "interpolate",
    "key_selector",
    "lora_delta_weights",
    "magnitude_prune",
    "merge",
    "merge_state_dicts",
    "mera_merge_full",
    "mera_merge_lora",
    "mera_running_average",
    "peft_key_to_model_key",
    "peft_state_dict_to_model_state_dict",
    "register_merge_method",
    "register_merge_schedule",
    "task_arithmetic",
    "ties",
    "weight_average",
]
