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
    summary = (
        "Fine-Tuning + λ/2 Σ F (θ − θᵢ₋₁)², Fisher from 1 % of each stage summed online (λ = 1; options "
        "as `plugins: [{name: ewc, lambda_: 1.0, fisher_fraction: 0.01}]`)"
    )
    description = (
        "Online EWC, the regularisation baseline: each stage fine-tunes with the penalty "
        "λ/2 · Σⱼ Fⱼ (θⱼ − θᵢ₋₁,ⱼ)², where F is the diagonal Fisher information of the LLM's weights, "
        "estimated on a sample of each stage's data and summed online over the stages."
    )
    paper = {
        "title": "Overcoming catastrophic forgetting in neural networks (online: Progress & Compress)",
        "id": "PNAS 2017; ICML 2018",
        "citation": r"""@article{kirkpatrick2017overcoming,
  title   = {Overcoming catastrophic forgetting in neural networks},
  author  = {Kirkpatrick, James and Pascanu, Razvan and Rabinowitz, Neil and Veness, Joel and Desjardins, Guillaume and Rusu, Andrei A and Milan, Kieran and Quan, John and Ramalho, Tiago and Grabska-Barwinska, Agnieszka and others},
  journal = {Proceedings of the National Academy of Sciences},
  year    = {2017}
}

@inproceedings{schwarz2018progress,
  title     = {Progress \& Compress: A scalable framework for continual learning},
  author    = {Schwarz, Jonathan and Czarnecki, Wojciech and Luketina, Jelena and Grabska-Barwinska, Agnieszka and Teh, Yee Whye and Pascanu, Razvan and Hadsell, Raia},
  booktitle = {International Conference on Machine Learning},
  year      = {2018}
}""",
    }

    def __init__(self, workspace, method: MethodConfig):
        # The plugin joins the entry's own list, so it is built like any plugin and named in the
        # instruction-tuning phase's description (its checkpoints are not Fine-Tuning's).
        if not any(spec.get("name") == "ewc" for spec in method.plugins):
            method = replace(method, plugins=[{"name": "ewc"}, *method.plugins])
        super().__init__(workspace, method)
