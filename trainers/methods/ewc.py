"""Online EWC, the paper's regularisation baseline (appendix C.3): Fine-Tuning whose instruction
tuning adds λ/2 · Σⱼ Fⱼ ⊙ (θ − θᵢ₋₁)² (`hf_mera.continual.plugins.ewc`). λ and the Fisher sample are
the plugin's arguments: list `{name: ewc, lambda_: ..., fisher_fraction: ...}` under the entry's
`plugins` to change them (default λ = 1 on 1 % of Dᵢ₋₁, as in the paper)."""

from __future__ import annotations

from dataclasses import replace

from hf_mera.continual.curriculum import MethodConfig

from . import register_method
from .fine_tuning import FineTuning


@register_method("ewc")
class EWC(FineTuning):
    def __init__(self, workspace, method: MethodConfig):
        # The plugin joins the entry's own list, so it is built like any plugin and named in the
        # instruction-tuning phase's description (its checkpoints are not Fine-Tuning's).
        if not any(spec.get("name") == "ewc" for spec in method.plugins):
            method = replace(method, plugins=[{"name": "ewc"}, *method.plugins])
        super().__init__(workspace, method)
