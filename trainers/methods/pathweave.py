"""PathWeave (Yu et al., NeurIPS 2024), as MERA's appendix C.3 runs it: Adapter-in-Adapter modules in
the LLM, rank = the LoRA rank of the other baselines, every module kept at test time.

Stage i (modality Mᵢ): add Mᵢ → pre-train its connector → grow every AnA module of the LLM by Mᵢ's
uni-modal adapter Aᵢ (the former newest adapter Aᵢ₋₁ gets its in-adapter Fᵢ₋₁, a fresh gate weighs
A₁ … Aᵢ) and instruction-tune Aᵢ, F₁ … Fᵢ₋₁, the gate and Mᵢ's connector in place of LoRA; the LLM,
A₁ … Aᵢ₋₁, encoders and other connectors stay frozen → no merge, no realignment (a YAML
`realign: true` adds MERA's realignment, paper Table 5).

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
    target_modules: tuple[str, ...] = DEFAULT_TARGET_MODULES

    def adapter_spec(self, stage: StageContext) -> dict:
        """The LLM adapters after stage `stage`: one expert per modality seen so far."""
        return {
            "type": "pathweave",
            "rank": self.run.training.instruction_tuning.lora_r,
            "modalities": list(stage.seen),
            "target_modules": list(self.target_modules),
        }

    def instruction_settings(self):
        # The adapters and gate train in place of LoRA, at the LLM learning rate.
        return replace(self.run.training.instruction_tuning, use_lora=False)

    def instruction_description(self, stage: StageContext) -> dict:
        return {"llm_adapters": self.adapter_spec(stage)}

    def prepare_instruction_model(self, model, stage: StageContext):
        from ..checkpoints import derive_seed
        from ..workspace import set_seed

        spec = self.adapter_spec(stage)
        # The new adapters' initial weights depend only on (seed, modality), as a new connector's do
        # (`add_modality`), not on the phase's batch size or process count: runs that differ only in
        # how a batch is split (one process or several, sharded or not) start from the same adapters.
        set_seed(derive_seed(self.run.seed, "pathweave", stage.modality))
        grown = add_pathweave_modality(model, stage.modality, spec["rank"], spec["target_modules"])
        if grown != spec:  # the previous stage's model must hold exactly the earlier experts
            raise ValueError(
                f"PathWeave stage {stage.index}: the model's adapters became {grown}, not {spec}."
            )
        return model

    def instruction_train_parameters(self, model):
        return stage_parameters(model).values()
