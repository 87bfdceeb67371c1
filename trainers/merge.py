"""The merge step of a stage (paper section 4.1, and the merges a method may name instead): θᵢ from
the stages so far, on the LLM only (`hf_mera.merging`).

- `StageUpdate` pairs a stage's instruction-tuning start and result checkpoints;
- `CheckpointHistory` is what a stage merge reads, loaded lazily from those checkpoints (and, for
  LPM, each stage's input Grams, computed on its own model and data);
- `merge_phase` runs the method's merge as a stored phase (skipped where it would return θᵢ,vanilla).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hf_mera.continual.plugins import StageContext

    from .checkpoints import Checkpoint

LORA_DELTAS_FILE = "lora_deltas.safetensors"


@dataclass(frozen=True)
class StageUpdate:
    """Stage k's instruction tuning: the checkpoint it started from and the one it produced."""

    modality: str
    start: Checkpoint
    vanilla: Checkpoint


class CheckpointHistory:
    """`hf_mera.merging.StageHistory` over a method's checkpoints (stages 1 … `index`)."""

    def __init__(self, method, updates: list[StageUpdate], loaded: dict | None = None):
        """`loaded`: (model, processor) already in memory by checkpoint key (the merge phase's own
        θᵢ,vanilla), so no checkpoint is read twice."""
        self.method, self.updates, self.index = method, updates, len(updates)
        self._loaded = dict(loaded or {})
        self.start = cache(lambda k: self._load(self.updates[k - 1].start)[0].state_dict())
        self.vanilla = cache(lambda k: self._load(self.updates[k - 1].vanilla)[0].state_dict())

    def _load(self, checkpoint: Checkpoint):
        if checkpoint.key not in self._loaded:
            self._loaded[checkpoint.key] = self.method.ws.load(checkpoint)
        return self._loaded[checkpoint.key]

    def lora_deltas(self, k: int):
        path = self.updates[k - 1].vanilla.path / LORA_DELTAS_FILE
        if not path.is_file():
            return None
        from safetensors.torch import load_file

        return load_file(str(path))

    def grams(self, k: int, weight_names, samples: int, normalize: bool):
        """Gₖ on `samples` rows of Dₖ (seeded by the run and stage), one row per forward so that
        padding never enters XᵀX, through θₖ,vanilla."""
        from hf_mera.data.seeding import seeded_subset
        from hf_mera.merging.lpm import input_grams

        ws, update = self.method.ws, self.updates[k - 1]
        model, processor = self._load(update.vanilla)
        ws.features.ensure(model, processor, update.modality)
        rows = ws.data.train(update.modality)
        count = min(samples, len(rows))
        picked = seeded_subset(len(rows), count, self.method.run.seed, "lpm-grams", k, update.modality)
        collate = ws.features.collator(processor)
        batches = (collate([rows[i]]) for i in picked)
        return input_grams(model, batches, weight_names, normalize=normalize, progress=ws.progress)


def merge_phase(method, stage: StageContext, updates: list[StageUpdate]) -> Checkpoint:
    """θᵢ by the method's stage merge, as phase `merge-<modality>` on θᵢ,vanilla (returned as is when
    the merge skips this stage)."""
    merge, vanilla = method.stage_merge, updates[-1].vanilla
    if merge.skips(stage.index):
        return vanilla
    if merge.reads_history:
        description = {
            "phase": "merge",
            "merge": {"method": merge.name, **merge.options()},
            "stage": stage.index,
            "stages": [[u.start.key, u.vanilla.key] for u in updates],
        }
    else:  # MERA reads θᵢ₋₁ only (the description its checkpoints always had: "schedule" is its name)
        description = {
            "phase": "merge",
            "schedule": merge.name,
            "stage": stage.index,
            "previous": updates[-1].start.key,
        }

    def build(model, processor, tmp):
        history = CheckpointHistory(method, updates, loaded={vanilla.key: (model, processor)})
        model.load_state_dict(merge(history))
        return model, processor

    return method.phase(f"merge-{stage.modality}", vanilla, description, build)


__all__ = ["CheckpointHistory", "LORA_DELTAS_FILE", "StageUpdate", "merge_phase"]
