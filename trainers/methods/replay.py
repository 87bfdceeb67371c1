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
    summary = "Fine-Tuning on Dᵢ ∪ Rᵢ, Rᵢ = r % of each task of D₁…Dᵢ₋₁"
    description = (
        "Replay (r %), the vanilla replay baseline: each stage fine-tunes the LLM and the new connector "
        "on Dᵢ together with Rᵢ, r % of each task of the earlier modalities' training data, with no "
        "merge and no realignment."
    )
    paper = {
        "title": "Experience Replay for Continual Learning",
        "id": "NeurIPS 2019",
        "citation": """@inproceedings{rolnick2019experience,
  title     = {Experience Replay for Continual Learning},
  author    = {Rolnick, David and Ahuja, Arun and Schwarz, Jonathan and Lillicrap, Timothy and Wayne, Gregory},
  booktitle = {Advances in Neural Information Processing Systems},
  year      = {2019}
}""",
    }

    def __init__(self, workspace, method: MethodConfig):
        # The plugin joins the entry's own list, so it is built like any plugin and named in the
        # instruction-tuning phase's description (its checkpoints are not Fine-Tuning's).
        if not any(spec.get("name") == "replay" for spec in method.plugins):
            method = replace(
                method, plugins=[{"name": "replay", "ratio": method.replay_ratio}, *method.plugins]
            )
        super().__init__(workspace, method)
