"""The three training phases of a stage as a curriculum sets them, with the paper's defaults.

The one place where MERA's Table 9 (appendix C) and appendix C.1 defaults live: cosine decay,
warm-up 0.03 of the steps, one epoch; connector pre-training at lr 1e-3, batch 128; instruction
tuning with LoRA (rank 128, alpha 128, on every linear module of the LLM) at lr 2e-4 for the LLM and
2e-5 for the connector, batch 16; realigning the connectors at lr 2e-5, batch 16. The phase trainers'
configs (`trainers/configs.py`, trl `SFTConfig`s) take their defaults from these classes.

Any other field of the phase's trainer config goes in `extra`; its keys are checked when the YAML is
read, against trl's `SFTConfig` and the fields a phase trainer adds (`trainer_fields`), so a typo fails
before any training.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from functools import cache
from typing import Any, ClassVar


@cache
def _sft_config_fields() -> frozenset[str]:
    from trl import SFTConfig

    return frozenset(f.name for f in dataclasses.fields(SFTConfig))


@dataclass
class PhaseSettings:
    """Settings every phase has; the defaults are the realignment's (Table 9 "Realigning")."""

    # Fields a phase's trainer config adds to SFTConfig, settable through `extra` only.
    trainer_fields: ClassVar[tuple[str, ...]] = ("warmup_ratio",)

    max_steps: int = field(
        default=-1, metadata={"help": "Optimizer steps (-1 or 0: num_train_epochs).", "ge": -1}
    )
    num_train_epochs: float = field(
        default=1.0, metadata={"help": "Epochs when max_steps is -1 (paper: 1).", "ge": 0}
    )
    per_device_train_batch_size: int = field(
        default=16, metadata={"help": "Batch size per process (paper: 16).", "ge": 1}
    )
    gradient_accumulation_steps: int = field(default=1, metadata={"help": "Gradient accumulation.", "ge": 1})
    learning_rate: float = field(
        default=2e-5,
        metadata={"help": "Learning rate (of the LLM for instruction tuning; paper: 2e-5).", "gt": 0},
    )
    lr_scheduler_type: str = field(
        default="cosine", metadata={"help": "Scheduler (paper: cosine decay).", "choices": "lr scheduler"}
    )
    warmup_ratio: float = field(
        default=0.03, metadata={"help": "Warm-up fraction (paper: 0.03).", "ge": 0, "lt": 1}
    )
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay.", "ge": 0})
    extra: dict[str, Any] = field(
        default_factory=dict,
        metadata={"help": "Any other field of the phase's trainer config (trl SFTConfig), passed through."},
    )

    def __post_init__(self):
        if self.max_steps <= 0 and self.num_train_epochs <= 0:
            raise ValueError(
                f"max_steps: no training budget (max_steps {self.max_steps}, num_train_epochs "
                f"{self.num_train_epochs}); allowed: max_steps >= 1, or num_train_epochs > 0 with max_steps -1."
            )
        own = {f.name for f in dataclasses.fields(self)} - {"extra"}
        for key in self.extra:
            if key in own:
                raise ValueError(
                    f"extra.{key}: {key!r} is a field of this phase; set it directly, not in extra."
                )
            if key not in _sft_config_fields() and key not in self.trainer_fields:
                raise ValueError(
                    f"extra.{key}: not a field of the phase's trainer config (trl SFTConfig or "
                    f"{', '.join(self.trainer_fields)})."
                )

    def trainer_kwargs(self) -> dict[str, Any]:
        """Every setting as keyword arguments of the phase's trainer config."""
        kwargs = {k: v for k, v in dataclasses.asdict(self).items() if k != "extra"}
        return {**kwargs, **self.extra}


@dataclass
class ConnectorPretrainSettings(PhaseSettings):
    """Connector pre-training on captions (Table 9 "Pre-training")."""

    per_device_train_batch_size: int = field(
        default=128, metadata={"help": "Batch size (paper: 128).", "ge": 1}
    )
    learning_rate: float = field(
        default=1e-3, metadata={"help": "Connector learning rate (paper: 1e-3).", "gt": 0}
    )


@dataclass
class InstructionTuningSettings(PhaseSettings):
    """Instruction tuning of LLM + connector (Table 9 "Fine-tuning", appendix C.1)."""

    trainer_fields: ClassVar[tuple[str, ...]] = ("warmup_ratio", "lora_dropout")

    learning_rate: float = field(default=2e-4, metadata={"help": "LLM learning rate (paper: 2e-4).", "gt": 0})
    connector_learning_rate: float = field(
        default=2e-5, metadata={"help": "Connector learning rate (paper: 2e-5).", "gt": 0}
    )
    use_lora: bool = field(
        default=True, metadata={"help": "LoRA on every linear module of the LLM; false = full."}
    )
    lora_r: int = field(default=128, metadata={"help": "LoRA rank (paper: 128).", "ge": 1})
    lora_alpha: int = field(
        default=128, metadata={"help": "LoRA alpha; the update is scaled by alpha / r (paper: 128).", "gt": 0}
    )


@dataclass
class RealignSettings(PhaseSettings):
    """MERA's realignment of every seen connector on replay data (Table 9 "Realigning")."""


@dataclass
class TrainingSection:
    connector_pretrain: ConnectorPretrainSettings = field(
        default_factory=ConnectorPretrainSettings,
        metadata={"help": "Connector pre-training on captions (paper: batch 128, lr 1e-3)."},
    )
    instruction_tuning: InstructionTuningSettings = field(
        default_factory=InstructionTuningSettings,
        metadata={"help": "Instruction tuning of LLM + connector on captions and QA."},
    )
    realign: RealignSettings = field(
        default_factory=RealignSettings,
        metadata={"help": "MERA's realignment (paper: batch 16, lr 2e-5) of all connectors on replay data."},
    )


def paper_default(settings_cls: type, name: str, help: str | None = None):
    """A dataclass `field` whose default (and help) is `settings_cls`'s field `name`: lets a trainer
    config declare a setting without writing its paper value a second time."""
    source = next(f for f in dataclasses.fields(settings_cls) if f.name == name)
    return field(default=source.default, metadata={"help": help or source.metadata["help"]})


__all__ = [
    "ConnectorPretrainSettings",
    "InstructionTuningSettings",
    "PhaseSettings",
    "RealignSettings",
    "TrainingSection",
    "paper_default",
]
