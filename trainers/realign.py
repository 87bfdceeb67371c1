"""MERA's realignment (paper section 4.2): retune every seen modality's connector to the merged LLM
on replay data Rᵢ drawn from D₁…Dᵢ.

- `RealignTrainer`: the phase trainer (connectors of the seen modalities train; nothing else);
- `realign_phase`: the stage transition, which draws Rᵢ (`hf_mera.data.replay.replay_for_realign`:
  r % of each seen modality's data, per task) and runs the trainer as a stored phase.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._common import MultimodalSFTTrainer, check_modalities, train_only
from .configs import RealignConfig

if TYPE_CHECKING:
    from datasets import Dataset
    from torch import nn

    from hf_mera.continual.plugins import StageContext

    from .checkpoints import Checkpoint


class RealignTrainer(MultimodalSFTTrainer):
    """Trains the connectors of `modalities` and nothing else (paper section 4.2).

    After merging, θᵢ's LLM has moved away from what each connector was trained against; realigning
    fits every connector of the modalities seen so far (the current one included) back to it on a
    small replay set Rᵢ drawn from all of them. The LLM, lm_head and encoders stay bitwise unchanged,
    so the merge's protection of old knowledge is kept.

    Args:
        model: an `AnyModalityLlava` after merging.
        modalities: the seen modalities, each with a connector in `model`.
        args: a `RealignConfig` (default: the paper's settings).
        train_dataset: the replay rows of the sample format.
        processing_class: the model's `AnyModalityProcessor`.
        data_collator: default `MultimodalCollator(processing_class, max_length=args.max_length)`.
        **kwargs: passed to `SFTTrainer`.
    """

    config_class = RealignConfig
    _tag_names = ["trl", "sft", "hf_mera", "mera-realign"]

    def __init__(
        self,
        model: nn.Module,
        modalities: Sequence[str],
        args: RealignConfig | None = None,
        train_dataset: Dataset | None = None,
        processing_class=None,
        data_collator=None,
        **kwargs,
    ):
        self.modalities = check_modalities(model, modalities, type(self).__name__)
        super().__init__(
            model, self.modalities, args, train_dataset, processing_class, data_collator, **kwargs
        )
        # After the argument checks, so a refused call leaves the model as it was.
        connectors = self.model.model.connectors
        train_only(self.model, (p for name in self.modalities for p in connectors[name].parameters()))


def realign_phase(
    stage: StageContext,
    checkpoint: Checkpoint,
    *,
    ratio: float,
    settings,
    seed: int,
    features,
    is_main: bool,
    trainer_args: Callable[[type, Any, Path], RealignConfig],
    phase: Callable[..., Checkpoint],
) -> Checkpoint:
    """Realign the connectors of `stage.seen` on `checkpoint` on r = `ratio` replay of D₁…Dᵢ.

    Args:
        settings: `training.realign` (its fields name the phase and build the `RealignConfig`).
        seed: the run's seed (the replay draw).
        features: the workspace's encoder-feature cache (`ensure`, `collator`).
        is_main: whether this process writes files (`replay_ids.json`, the rows drawn).
        trainer_args: `(config class, settings, folder) -> args` of the run's trainers.
        phase: `(name, parent, description, build) -> Checkpoint`, the method's phase runner.
    """
    from hf_mera.data.replay import replay_for_realign

    seen = list(stage.seen)
    replay, replay_record = replay_for_realign(
        stage.index, list(stage.order), stage.train_sets, ratio=ratio, seed=seed
    )
    description = {"phase": "realign", "modalities": seen, "replay_ratio": ratio, **asdict(settings)}

    def build(model, processor, tmp):
        for modality in seen:
            features.ensure(model, processor, modality)
        trainer = RealignTrainer(
            model=model,
            modalities=seen,
            args=trainer_args(RealignConfig, settings, tmp),
            train_dataset=replay,
            processing_class=processor,
            data_collator=features.collator(processor),
        )
        trainer.train()
        if is_main:
            (tmp / "replay_ids.json").write_text(json.dumps(replay_record.to_dict(), indent=2, default=str))
        return trainer.model, processor

    return phase(f"realign-{stage.modality}", checkpoint, description, build)


__all__ = ["RealignTrainer", "realign_phase"]
