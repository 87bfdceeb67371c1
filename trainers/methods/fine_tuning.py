"""Fine-Tuning (the paper's lower bound): instruction-tune each stage from the previous stage's
model, with neither merging nor realignment."""

from __future__ import annotations

from ..merge_and_realign import MergeAndRealignTrainer
from . import register_method


@register_method("fine_tuning")
class FineTuning(MergeAndRealignTrainer):
    merge_method = "none"
    realign = False
    summary = "LLM (LoRA or full) + new connector on Dᵢ; no merge, no realignment"
    description = (
        "Sequential fine-tuning: each stage continues from the previous one with no merge "
        "and no realignment (the paper's lower baseline)."
    )
