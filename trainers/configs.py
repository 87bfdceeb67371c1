"""Configs of the three training phases of a stage, trl's `SFTConfig` with the paper's defaults.

The defaults (MERA's Table 9 and appendix C.1) are written once, in
`hf_mera.continual.phase_settings`, and taken from there (`paper_default`): the curriculum YAML and
a trainer built by hand start from the same values.

Settings every phase needs, whatever the hardware:
- `remove_unused_columns=False` and `dataset_kwargs={"skip_prepare_dataset": True}`: the rows stay
  in the sample format (`docs/CONTRACTS.md`) until `hf_mera.data.MultimodalCollator` batches them;
- `bf16` defaults to True only where a GPU supports it (`SFTConfig` turns it on everywhere, and
  `TrainingArguments` then refuses to start on a CPU); a model held in bf16 / fp16 gets autocast in
  that dtype instead, on any device, with its trainable parameters in float32 (`trainers._common`);
- `save_strategy="no"`: the orchestrator saves each phase's model itself;
- `step_metrics="logging_steps"`: trl's entropy and token accuracy only on the steps that log them
  (`trainers._common.MultimodalSFTTrainer`), not on every step.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from trl import SFTConfig

from hf_mera.continual.phase_settings import (
    ConnectorPretrainSettings,
    InstructionTuningSettings,
    PhaseSettings,
    RealignSettings,
    paper_default,
)

STEP_METRICS = ("logging_steps", "every_step")


@dataclass
class _PhaseConfig(SFTConfig):
    """Defaults shared by the three phases; see the module docstring."""

    # Table 9: cosine decay, warm-up 0.03, one epoch.
    num_train_epochs: float = paper_default(PhaseSettings, "num_train_epochs")
    lr_scheduler_type: str = paper_default(PhaseSettings, "lr_scheduler_type")
    warmup_steps: float = field(
        default=PhaseSettings.warmup_ratio,
        metadata={
            "help": "Linear warm-up: an int is a number of steps, a float in [0, 1) a fraction of the training steps "
            "(paper: 0.03)."
        },
    )
    warmup_ratio: float | None = field(
        default=None,
        metadata={
            "help": "Warm-up as a fraction of the training steps, in [0, 1). transformers 5 dropped this argument; "
            "when set, it overrides `warmup_steps`."
        },
    )
    # Resolved in __post_init__ to True only on a GPU with bf16 support.
    bf16: bool | None = field(
        default=None,
        metadata={
            "help": "Whether to use bf16 mixed precision. If not set: True on a GPU that supports it (and neither "
            "`fp16` nor `use_cpu` is set), False otherwise."
        },
    )
    # Off by default: the phases that train only connectors backpropagate through a frozen LLM and keep
    # no optimizer state for it, so memory is rarely the limit, and recomputing every layer costs about
    # 20% more time per step. Turn it on for large LLMs; the LLM's layers support it.
    activation_checkpointing: bool | None = field(
        default=None,
        metadata={
            "help": "Recompute the LLM's activations in the backward pass to save memory, at about 20%% more time per "
            "step. If not set: `gradient_checkpointing`, else False (SFTConfig's default is True)."
        },
    )
    gradient_checkpointing: bool | None = field(
        default=None,
        metadata={"help": "Deprecated alias of `activation_checkpointing` (transformers 5)."},
    )
    # The collator needs the raw sample-format columns (messages, media, ...).
    remove_unused_columns: bool = field(
        default=False,
        metadata={"help": "Must stay False: the multimodal collator reads the sample-format columns."},
    )
    dataset_kwargs: dict[str, Any] | str | None = field(
        default_factory=lambda: {"skip_prepare_dataset": True},
        metadata={
            "help": "Must keep `skip_prepare_dataset=True`: rows are tokenized by the multimodal collator, not by "
            "SFTTrainer's text preparation."
        },
    )
    report_to: None | str | list[str] = field(
        default="none",
        metadata={"help": "Integrations to report logs to ('none', 'all', 'tensorboard', ...)."},
    )
    save_strategy: str = field(
        default="no",
        metadata={
            "help": "Checkpoint strategy ('no', 'steps', 'epoch'); the orchestrator saves each phase itself."
        },
    )
    step_metrics: str = field(
        default="logging_steps",
        metadata={
            "help": "When trl's per-token metrics (entropy, mean token accuracy) are computed: 'logging_steps' "
            "(only on the steps that log them; the loss and the weights are bitwise the same) or 'every_step' "
            "(trl's own behaviour, averaged over the steps since the last log)."
        },
    )

    def __post_init__(self):
        if self.warmup_ratio is not None:
            if not 0 <= self.warmup_ratio < 1:
                raise ValueError(f"warmup_ratio must lie in [0, 1), got {self.warmup_ratio}.")
            self.warmup_steps = self.warmup_ratio
        if self.bf16 is None:
            from transformers.utils import is_torch_bf16_gpu_available

            self.bf16 = not self.fp16 and not self.use_cpu and is_torch_bf16_gpu_available()
            # The phase trainers replace an automatic choice by the dtype of half-precision weights.
            self.bf16_auto = True
        if self.activation_checkpointing is None and self.gradient_checkpointing is None:
            self.activation_checkpointing = False
        super().__post_init__()
        if self.remove_unused_columns:
            raise ValueError(
                "remove_unused_columns must be False: MultimodalCollator reads the sample-format columns "
                "(messages, media) that the model's signature does not name."
            )
        if self.step_metrics not in STEP_METRICS:
            raise ValueError(f"step_metrics must be one of {STEP_METRICS}, got {self.step_metrics!r}.")
        if not (self.dataset_kwargs or {}).get("skip_prepare_dataset", False):
            raise ValueError(
                'dataset_kwargs must hold {"skip_prepare_dataset": True}: rows are tokenized by the multimodal '
                "collator; SFTTrainer's text preparation would drop their media."
            )


@dataclass
class ConnectorPretrainConfig(_PhaseConfig):
    """Connector pre-training: only the new modality's connector learns, on caption data.

    Defaults: Table 9 "Pre-training" (lr 1e-3, batch 128, cosine, warm-up 0.03, one epoch).
    """

    learning_rate: float = paper_default(ConnectorPretrainSettings, "learning_rate")
    per_device_train_batch_size: int = paper_default(ConnectorPretrainSettings, "per_device_train_batch_size")


@dataclass
class InstructionTuningConfig(_PhaseConfig):
    """Instruction tuning: the LLM (LoRA or full) and the new modality's connector, on captions and QA.

    Defaults: Table 9 "Fine-tuning" (LLM lr 2e-4, connector lr 2e-5, batch 16) and appendix C.1
    (LoRA on all linear modules of the LLM, rank 128, alpha 128).
    """

    learning_rate: float = paper_default(InstructionTuningSettings, "learning_rate")
    connector_learning_rate: float = paper_default(InstructionTuningSettings, "connector_learning_rate")
    per_device_train_batch_size: int = paper_default(InstructionTuningSettings, "per_device_train_batch_size")
    use_lora: bool = paper_default(InstructionTuningSettings, "use_lora")
    lora_r: int = paper_default(InstructionTuningSettings, "lora_r")
    lora_alpha: int = paper_default(InstructionTuningSettings, "lora_alpha")
    lora_dropout: float = field(default=0.05, metadata={"help": "Dropout on the LoRA branch's input."})

    def __post_init__(self):
        super().__post_init__()
        if self.use_lora and self.lora_r < 1:
            raise ValueError(f"lora_r must be >= 1, got {self.lora_r}.")
        if self.connector_learning_rate < 0:
            raise ValueError(f"connector_learning_rate must be >= 0, got {self.connector_learning_rate}.")


@dataclass
class RealignConfig(_PhaseConfig):
    """MERA's realigning: the connectors of every seen modality learn on replay data; nothing else.

    Defaults: Table 9 "Realigning" (lr 2e-5, batch 16, cosine, warm-up 0.03, one epoch).
    """

    learning_rate: float = paper_default(RealignSettings, "learning_rate")
    per_device_train_batch_size: int = paper_default(RealignSettings, "per_device_train_batch_size")
    ddp_find_unused_parameters: bool | None = field(
        default=True,
        metadata={
            "help": "DDP: a replay batch may hold no item of some modality, leaving its connector unused "
            "in that step; DDP must then look for unused parameters."
        },
    )


def phase_args(
    config_cls: type[_PhaseConfig], settings: PhaseSettings, output_dir, seed: int, progress: bool
):
    """The trainer config of one phase of a run: the curriculum's `settings` (and their `extra`), the
    run's seed, the phase's temporary folder, and what a run needs on every machine (no progress bars
    on non-main processes, a CPU run when there is no GPU)."""
    import torch

    kwargs = settings.trainer_kwargs()
    kwargs.setdefault("disable_tqdm", not progress)
    kwargs.setdefault("logging_steps", 50)
    from .distributed import deepspeed_launch, fsdp_on_cpu

    if not torch.cuda.is_available() and not deepspeed_launch():
        kwargs.setdefault("use_cpu", True)
    if deepspeed_launch() and not torch.cuda.is_available():
        kwargs.setdefault("ddp_backend", "gloo")  # DeepSpeed's CPU accelerator (trainers.distributed)
    if fsdp_on_cpu():  # keep the FSDP state the workspace set up (trainers.distributed)
        kwargs.setdefault("accelerator_config", {"use_configured_state": True})
    return config_cls(output_dir=str(output_dir / "trainer"), seed=seed, **kwargs)


__all__ = ["ConnectorPretrainConfig", "InstructionTuningConfig", "RealignConfig", "phase_args"]
