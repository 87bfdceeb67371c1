"""Model merging for modality-incremental continual learning.

- `mera.py`: MERA's merge θᵢ = θᵢ₋₁ + c(i) · (θᵢ,vanilla − θᵢ₋₁), c(i) = 1/i, full and exact-LoRA
  (θᵢ₋₁ + c · B·A·scaling), through one entry point, `mera_merge_state_dict`; also the "mera" schedule
  and the tensor merges "mera" and "interpolate".
- `methods/`: the other merges in a registry (`MERGE_METHODS`, `register_merge_method`,
  `get_merge_method`): "weight_average" and the task-vector family (`TaskVectorMerge`):
  "task_arithmetic", "magnitude_prune", "ties", "dare_linear", "dare_ties".
- `state_dict.py`: `merge_state_dicts`, one registered method over whole state dicts on the keys
  `include` selects (MERA: `LLM_KEY_PATTERN`).
- `lora.py`: ΔW = B·A·scaling from a PeftModel (`lora_delta_weights`), peft key names → plain ones.
- `schedule.py`: `MergeSchedule`, the coefficient c per stage ("mera" 1/i, "constant", "none").

Importing this package does not import peft; the functions that need it import it when called.
"""

from .lora import (
    PEFT_MODEL_PREFIX,
    lora_delta_weights,
    peft_key_to_model_key,
    peft_state_dict_to_model_state_dict,
)
from .mera import interpolate, mera_coefficient, mera_merge_state_dict, mera_running_average
from .methods.base import MERGE_METHODS, get_merge_method, merge, register_merge_method
from .methods.dare import dare_linear, dare_ties
from .methods.magnitude_prune import magnitude_prune
from .methods.task_arithmetic import task_arithmetic
from .methods.task_vector import TaskVectorMerge
from .methods.ties import ties
from .methods.weight_average import weight_average
from .schedule import MERGE_SCHEDULES, MergeSchedule, get_merge_schedule, register_merge_schedule
from .state_dict import LLM_KEY_PATTERN, key_selector, merge_state_dicts

__all__ = [
    "LLM_KEY_PATTERN",
    "MERGE_METHODS",
    "MERGE_SCHEDULES",
    "PEFT_MODEL_PREFIX",
    "MergeSchedule",
    "TaskVectorMerge",
    "dare_linear",
    "dare_ties",
    "get_merge_method",
    "get_merge_schedule",
    "interpolate",
    "key_selector",
    "lora_delta_weights",
    "magnitude_prune",
    "merge",
    "merge_state_dicts",
    "mera_coefficient",
    "mera_merge_state_dict",
    "mera_running_average",
    "peft_key_to_model_key",
    "peft_state_dict_to_model_state_dict",
    "register_merge_method",
    "register_merge_schedule",
    "task_arithmetic",
    "ties",
    "weight_average",
]
