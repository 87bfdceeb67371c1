"""Replay (r %), the paper's vanilla replay baseline (section 5.1, appendix C.3): Fine-Tuning whose
stage i instruction-tunes on Dᵢ ∪ Rᵢ, Rᵢ = r % of D₁…Dᵢ₋₁ (`hf_mera.continual.plugins.replay`;
r = the method entry's `replay_ratio`)."""

from __future__ import annotations

from dataclasses import replace

from hf_mera.continual.curriculum import MethodConfig

from . import register_method
from .fine_tuning import FineTuning


@register_method("replay")
class Replay(FineTuning):
    def __init__(self, workspace, method: MethodConfig):
        # The plugin joins the entry's own list, so it is built like any plugin and named in the
        # instruction-tuning phase's description (its checkpoints are not Fine-Tuning's).
        if not any(spec.get("name") == "replay" for spec in method.plugins):
            method = replace(
                method, plugins=[{"name": "replay", "ratio": method.replay_ratio}, *method.plugins]
            )
        super().__init__(workspace, method)
