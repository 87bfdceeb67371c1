"""Replay (r %), the paper's vanilla replay baseline (section 5.1, appendix C.3).

Stage i instruction-tunes on Dᵢ ∪ Rᵢ, where Rᵢ ← r % of each of D₁…Dᵢ₋₁, drawn per modality and
task (caption, QA) by `hf_mera.data.replay.replay_for_baseline`:

=========================  =========================================================================
paper                      here
=========================  =========================================================================
r %                        `ratio` (a fraction: 0.1 for 10 %)
Dⱼ                         `stage.train_sets[modality j]`, the instruction-tuning data of stage j
Dᵢ                         the dataset handed to `transform_train_dataset` (the current stage's)
Rᵢ                         `replay_for_baseline(i, order, train_sets, ratio, seed)`: `replay_size(r, n)`
                           rows of every task of every earlier modality, seeded by the run's seed
=========================  =========================================================================

Stage 1 has no earlier modality: it trains on D₁ alone. Unlike MERA's realignment (footnote 2),
Rᵢ never includes the current modality, and the LLM and the new connector both train on it.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from .base import ContinualPlugin, StageContext, register_plugin

if TYPE_CHECKING:
    from datasets import Dataset

    from hf_mera.data.replay import ReplayRecord

logger = logging.getLogger(__name__)


@register_plugin("replay")
class ReplayPlugin(ContinualPlugin):
    """Mixes r % of every earlier modality's training data into the stage's instruction tuning.

    Args:
        ratio: r as a fraction in (0, 1] (the paper: 0.01 or 0.1).

    After `transform_train_dataset`, `record` holds the ids drawn (a `ReplayRecord`; None at stage 1).
    """

    def __init__(self, ratio: float = 0.1):
        if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0.0 < ratio <= 1.0:
            raise ValueError(
                f"Plugin 'replay': ratio must be a fraction in (0, 1] (0.1 for 10 %), got {ratio!r}."
            )
        self.ratio = float(ratio)
        self.record: ReplayRecord | None = None

    def transform_train_dataset(self, dataset: Dataset, stage: StageContext) -> Dataset:
        """Dᵢ ∪ Rᵢ: `dataset` followed by the replay rows (shuffling is the trainer's)."""
        self.record = None
        if not stage.previous:
            return dataset
        if stage.train_sets is None:
            raise ValueError(
                f"Plugin 'replay': stage {stage.index} ({stage.modality}) needs StageContext.train_sets, "
                f"the training data of {list(stage.previous)} to replay."
            )
        from datasets import concatenate_datasets

        from hf_mera.data.replay import replay_for_baseline

        replay, self.record = replay_for_baseline(
            stage.index, stage.order, stage.train_sets, self.ratio, seed=stage.seed
        )
        logger.info(
            "replay: stage %d (%s) trains on %d rows of %s plus %d replayed from %s (r = %g)",
            stage.index,
            stage.modality,
            len(dataset),
            stage.modality,
            len(replay),
            ", ".join(stage.previous),
            self.ratio,
        )
        return concatenate_datasets([dataset, replay])


__all__ = ["ReplayPlugin"]
