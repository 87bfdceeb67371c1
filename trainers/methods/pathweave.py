"""PathWeave (Yu et al., NeurIPS 2024), as MERA's appendix C.3 runs it: Adapter-in-Adapter modules in
the LLM, rank = the LoRA rank of the other baselines, every module kept at test time.

Stage 1 (modality M₁) is the fine-tuned expert, as every method's stage 1 (MERA's Tables 11–12 give
PathWeave's stage 1 = 100.76 / 99.93 % of the expert, i.e. the expert): PathWeave starts from an
X-InstructBLIP already tuned on images and adds adapters for *new* modalities only. Here the LLM is
instruction-tuned on M₁ as Fine-Tuning's stage 1 (LoRA or full, the run's settings), so the phase
is shared with the other methods' stage 1.

Stage i ≥ 2 (modality Mᵢ): add Mᵢ → pre-train its connector → grow every AnA module of the LLM by
Mᵢ's uni-modal adapter Aᵢ (the former newest adapter Aᵢ₋₁ gets its in-adapter Fᵢ₋₁, a fresh gate
weighs A₂ … Aᵢ) and instruction-tune Aᵢ, F₂ … Fᵢ₋₁, the gate and Mᵢ's connector in place of LoRA;
the LLM (stage 1's expert), A₂ … Aᵢ₋₁, encoders and other connectors stay frozen → no merge, no
realignment (a YAML `realign: true` adds MERA's realignment, paper Table 5).

Routing at evaluation: MERA's C.3 keeps every module for every modality ("PathWeave removes the newly
added modules when testing the former modalities … we do not remove them", so that cross-modal
inputs work); every input takes the newest path. The original code instead routes each modality
through its own Q-Former, configured with `current_modality` = that modality (its own gate and the
experts up to its own), see `hf_mera.models.anymodality_llava.pathweave`.

The modules, their gating and every deviation from PathWeave's code are documented in
`hf_mera.models.anymodality_llava.pathweave`; they live in the model (`config.llm_adapters`), so
each stage's checkpoint loads with `AnyModalityLlava.from_pretrained` and the Auto classes.

Symbols → arguments: r = `training.instruction_tuning.lora_r`; the adapted linears =
`PathWeave.target_modules` (default: the attention projections q/k/v/o); the learning rates of
instruction tuning (LLM side: adapters and gate; connector) are the run's.
"""

from __future__ import annotations

from dataclasses import replace

from hf_mera.continual.plugins import StageContext
from hf_mera.models.anymodality_llava.pathweave import (
    DEFAULT_TARGET_MODULES,
    add_pathweave_modality,
    stage_parameters,
)

from ..merge_and_realign import MergeAndRealignTrainer
from . import register_method


@register_method("pathweave")
class PathWeave(MergeAndRealignTrainer):
    merge_method = "none"
    realign = False
    summary = (
        "Adapter-in-Adapter modules in the LLM's attention projections (rank = `lora_r`): the new "
        "modality's adapter, every in-adapter and a fresh gate; all kept at test time"
    )
    description = (
        "PathWeave: Adapter-in-Adapter modules in the LLM's attention projections. Each stage adds the "
        "new modality's adapter and trains it with the earlier adapters' in-adapters and a fresh gate "
        "(the LLM and the earlier adapters frozen); every module is kept at test time, with no merge "
        "and no realignment."
    )
    paper = {
        "title": "LLMs Can Evolve Continually on Modality for X-Modal Reasoning",
        "id": "2410.20178",
        "citation": """@article{yu2024llms,
  title   = {LLMs Can Evolve Continually on Modality for X-Modal Reasoning},
  author  = {Yu, Jiazuo and Xiong, Haomiao and Zhang, Lu and Diao, Haiwen and Zhuge, Yunzhi and Hong, Lanqing and Wang, Dong and Lu, Huchuan and He, You and Chen, Long},
  journal = {arXiv preprint arXiv:2410.20178},
  year    = {2024}
}""",
    }
    target_modules: tuple[str, ...] = DEFAULT_TARGET_MODULES

    def adapter_spec(self, stage: StageContext) -> dict:
        """The LLM adapters after stage `stage` (≥ 2): one expert per modality after the first (stage 1
        is the expert: trained like every method's, or an imported LLaVA's image path, measured)."""
        return {
            "type": "pathweave",
            "rank": self.run.training.instruction_tuning.lora_r,
            "modalities": list(stage.seen[1:]),
            "target_modules": list(self.target_modules),
        }

    def instruction_settings(self, stage: StageContext):
        if stage.index == 1:  # the expert's stage: the run's LoRA or full tuning
            return self.run.training.instruction_tuning
        # The adapters and gate train in place of LoRA, at the LLM learning rate.
        return replace(self.run.training.instruction_tuning, use_lora=False)

    def instruction_description(self, stage: StageContext) -> dict:
        return {} if stage.index == 1 else {"llm_adapters": self.adapter_spec(stage)}

    def prepare_instruction_model(self, model, stage: StageContext):
        if stage.index == 1:
            return model
        spec = self.adapter_spec(stage)
        grown = add_pathweave_modality(model, stage.modality, spec["rank"], spec["target_modules"])
        if grown != spec:  # the previous stage's model must hold exactly the earlier experts
            raise ValueError(
                f"PathWeave stage {stage.index}: the model's adapters became {grown}, not {spec}."
            )
        return model

    def instruction_train_parameters(self, model, stage: StageContext):
        return None if stage.index == 1 else stage_parameters(model).values()
