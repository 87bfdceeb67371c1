"""Connector pre-training: align a new modality's connector to the frozen LLM on caption data."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._common import MultimodalSFTTrainer, check_modalities, train_only
from .configs import ConnectorPretrainConfig

if TYPE_CHECKING:
    from datasets import Dataset
    from torch import nn


class ConnectorPretrainTrainer(MultimodalSFTTrainer):
    """Trains only `model.model.connectors[modality]`; encoders, LLM and lm_head stay frozen.

    The first phase of a stage (LLaVA's feature alignment; paper Table 9 "Pre-training"). The data are
    the modality's captions in the sample format; choosing them is the caller's job.

    Args:
        model: an `AnyModalityLlava` that already has `modality` (`model.add_modality`).
        modality: the modality whose connector learns.
        args: a `ConnectorPretrainConfig` (default: the paper's settings).
        train_dataset: rows of the sample format (`docs/CONTRACTS.md`).
        processing_class: the model's `AnyModalityProcessor`.
        data_collator: default `MultimodalCollator(processing_class, max_length=args.max_length)`;
            pass one with a `feature_lookup` to train on cached encoder features.
        **kwargs: passed to `SFTTrainer` (eval_dataset, callbacks, ...).
    """

    config_class = ConnectorPretrainConfig
    _tag_names = ["trl", "sft", "hf_mera", "connector-pretrain"]

    def __init__(
        self,
        model: nn.Module,
        modality: str,
        args: ConnectorPretrainConfig | None = None,
        train_dataset: Dataset | None = None,
        processing_class=None,
        data_collator=None,
        **kwargs,
    ):
        (self.modality,) = check_modalities(model, [modality], type(self).__name__)
        super().__init__(model, [modality], args, train_dataset, processing_class, data_collator, **kwargs)
        # After the argument checks, so a refused call leaves the model as it was; the optimizer
        # only collects trainable parameters when training starts.
        train_only(self.model, self.model.model.connectors[modality].parameters())


__all__ = ["ConnectorPretrainTrainer"]
