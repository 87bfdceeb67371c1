"""EProj (He et al., 2023, as the MERA paper runs it, section 5.1 and Figure 3): tune only the
modality-specific components. Each stage pre-trains the new modality's connector as usual, then
instruction-tunes that connector alone on Dᵢ (captions and QA) while the LLM stays frozen, so no
earlier modality can be forgotten; the price is plasticity (the paper's Forward and stage-1 Relative
Gain of EProj are below 100 %).

Settings: `training.instruction_tuning`'s batch size, steps or epochs, scheduler and warm-up, with
the connector's learning rate (`connector_learning_rate`, paper 2e-5); its LoRA fields do not apply.
Deviation: EProj's original task-specific projection *expansion* and task identification are not
needed here, since every modality already has its own connector and its inputs name their modality.
"""

from __future__ import annotations

from dataclasses import fields

from hf_mera.continual.phase_settings import ConnectorPretrainSettings, PhaseSettings
from hf_mera.continual.plugins import StageContext

from ..checkpoints import Checkpoint
from ..merge_and_realign import MergeAndRealignTrainer
from . import register_method


def connector_settings(settings) -> ConnectorPretrainSettings:
    """Instruction tuning's schedule (batch, steps or epochs, scheduler, warm-up) for a connector-only
    phase, at the connector's learning rate; the LoRA / LLM fields do not apply."""
    common = {f.name: getattr(settings, f.name) for f in fields(PhaseSettings) if f.name != "extra"}
    common["learning_rate"] = settings.connector_learning_rate
    llm_only = set(type(settings).trainer_fields) - set(ConnectorPretrainSettings.trainer_fields)
    extra = {k: v for k, v in settings.extra.items() if k not in llm_only}
    return ConnectorPretrainSettings(**common, extra=extra)


@register_method("eproj")
class EProj(MergeAndRealignTrainer):
    merge_method = "none"
    realign = False
    summary = (
        "the new connector only (pre-training, then instruction tuning on Dᵢ at the connector learning "
        "rate); the LLM never changes"
    )
    description = (
        "EProj: only the modality-specific components are tuned. Each stage pre-trains the new "
        "modality's connector, then instruction-tunes that connector alone on Dᵢ while the LLM stays "
        "frozen, so no earlier modality is forgotten, at the price of plasticity."
    )
    paper = {
        "title": "Continual Instruction Tuning for Large Multimodal Models",
        "id": "2311.16206",
        "citation": """@article{he2023continual,
  title   = {Continual Instruction Tuning for Large Multimodal Models},
  author  = {He, Jinghan and Guo, Haiyun and Tang, Ming and Wang, Jinqiao},
  journal = {arXiv preprint arXiv:2311.16206},
  year    = {2023}
}""",
    }

    def __init__(self, workspace, method):
        super().__init__(workspace, method)
        if self.plugins:  # refused before any training
            raise ValueError(
                f"methods: {method.name!r}: EProj trains no LLM weight, so plugins "
                f"{[p['name'] for p in method.plugins]} have nothing to act on."
            )

    def instruction_tune(self, stage: StageContext, checkpoint: Checkpoint) -> Checkpoint:
        settings = connector_settings(self.run.training.instruction_tuning)
        dataset = self.instruction_train_dataset(stage)
        return self.connector_phase(
            "eproj", "connector_instruction_tuning", stage, checkpoint, settings, dataset
        )
