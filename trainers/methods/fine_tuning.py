"""Fine-Tuning (the paper's lower bound): instruction-tune each stage from the previous stage's
model, with neither merging nor realignment."""

from __future__ import annotations

from ..merge_and_realign import MergeAndRealignTrainer
from . import register_method


@register_method("fine_tuning")
class FineTuning(MergeAndRealignTrainer):
    merge_method = "none"
    realign = False
