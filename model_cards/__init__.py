"""Model cards and hub publishing for hf_mera checkpoints.

    from model_cards import write_stage_card, push_stage
    write_stage_card(stage_dir, info, run)   # README.md from templates/stage_card.md, parsed back
    push_stage(stage_dir, info, run)         # if the run's push_to_hub section names this method

`trainers.MergeAndRealignTrainer` calls both for every published stage.
"""

from .hub import check_push_ready, hub_target, push_stage, pushed_method, stage_revisions
from .writer import CARD_FILE, MERA_CITATION, build_stage_card, curriculum_yaml, write_stage_card

__all__ = [
    "CARD_FILE",
    "MERA_CITATION",
    "build_stage_card",
    "check_push_ready",
    "curriculum_yaml",
    "hub_target",
    "push_stage",
    "pushed_method",
    "stage_revisions",
    "write_stage_card",
]
