"""Individually trained experts: each modality alone, from the backbone. Their scores are S_sup,
the denominator of every Relative Gain (paper section 5.1)."""

from __future__ import annotations

from collections.abc import Iterator

from hf_mera.continual.plugins import StageContext

from ..merge_and_realign import MergeAndRealignTrainer
from . import register_method


@register_method("experts")
class Experts(MergeAndRealignTrainer):
    merge_method = "none"
    realign = False
    reference = True
    summary = "each modality alone from the backbone: S_sup, the Relative Gains' reference"
    description = (
        "An individually trained expert: this modality alone, from the backbone (the Relative "
        "Gain's upper bound S^sup)."
    )

    def stages(self) -> Iterator[StageContext]:
        # An expert's curriculum is its one modality: stage 1 of the order [modality], so each
        # starts from the backbone and is evaluated on its own modality only.
        for modality in self.run.order:
            yield self.stage_context(1, modality, [modality])
