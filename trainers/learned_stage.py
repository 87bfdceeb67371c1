"""Stage 1 when the backbone already knows its modality (`model.backbone.type: llava`, whose source
knows images): nothing is trained, merged or realigned.

- Its scores are the source model's own, measured on the stage's test set; the source is therefore
  also that modality's expert (S_sup for Relative Gain: the Experts method reaches the same
  checkpoint, since its stage for this modality is this one).
- Its LLM is θ₁ = θ₁,start = θ₁,vanilla (τ₁ = 0): MERA's θ₂ = θ₁ + (θ₂,vanilla − θ₁)/2 starts from the
  imported LLM, and the task-vector merges take it as θ₀.
- A method's plugins still end the stage, on the source and D₁ (EWC: the Fisher and anchor at the
  source, as after a trained stage 1), in a phase `learned-<modality>` that carries their state;
  without plugins the stage's checkpoint is the backbone's.
- `realign_first_stage` does not apply: realigning would retrain the source's connector.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .merge import StageUpdate

if TYPE_CHECKING:
    from hf_mera.continual.plugins import StageContext

    from .checkpoints import Checkpoint


def learned_stage_phase(method, stage: StageContext, previous: Checkpoint) -> Checkpoint:
    """The stage's checkpoint (`previous`, or `learned-<modality>` with the plugins' state); records
    θ₁ = `previous` in `method.updates` for the merges of later stages."""
    method.updates = [*method.updates[: stage.index - 1], StageUpdate(stage.modality, previous, previous)]
    if not method.plugins:
        return previous
    ws, modality = method.ws, stage.modality
    description = {
        "phase": "learned",
        "modality": modality,
        "stage": stage.index,
        "plugins": method.method.plugins,
    }

    def build(model, processor, tmp):
        from hf_mera.continual.plugins import save_plugin_states

        ws.features.ensure(model, processor, modality)
        dataset, collator = ws.data.train(modality), ws.features.collator(processor)
        for plugin in method.plugins:
            plugin.on_stage_end(stage, model, dataset, collator)
        if ws.is_main:
            save_plugin_states(method.plugins, tmp)
        return model, processor

    checkpoint = method.phase(f"learned-{modality}", previous, description, build)
    from hf_mera.continual.plugins import load_plugin_states

    load_plugin_states(method.plugins, checkpoint.path)
    return checkpoint


__all__ = ["learned_stage_phase"]
