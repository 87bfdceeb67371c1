"""The training phases of a modality-incremental stage, each an `SFTTrainer` with its config.

- `ConnectorPretrainTrainer` / `ConnectorPretrainConfig`: the new modality's connector on captions;
- `InstructionTuningTrainer` / `InstructionTuningConfig`: LoRA (or full) LLM + that connector, with
  continual-learning plugins' loss penalties;
- `RealignTrainer` / `RealignConfig`: MERA's realigning of every seen modality's connector.

`MergeAndRealignTrainer` (`trainers.merge_and_realign`) runs them stage after stage, one method per
file in `trainers/methods/`; `trainers.runner.run_curriculum` runs every method of a curriculum on
one `Workspace` (data, phase store, features, evaluation). Importing this package imports trl
(slow); the submodules can be imported one by one.
"""

from .configs import ConnectorPretrainConfig, InstructionTuningConfig, RealignConfig
from .connector_pretrain import ConnectorPretrainTrainer
from .instruction_tuning import InstructionTuningTrainer, lora_target_modules
from .realign import RealignTrainer

__all__ = [
    "ConnectorPretrainConfig",
    "ConnectorPretrainTrainer",
    "InstructionTuningConfig",
    "InstructionTuningTrainer",
    "RealignConfig",
    "RealignTrainer",
    "lora_target_modules",
]
