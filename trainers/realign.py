"""MERA's realigning: retune every seen modality's connector to the merged LLM on replay data."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from ._common import MultimodalSFTTrainer, check_modalities, train_only
from .configs import RealignConfig

if TYPE_CHECKING:
    from datasets import Dataset
    from torch import nn


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


__all__ = ["RealignTrainer"]
