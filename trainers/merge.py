"""The merge step of a stage (paper section 4.1, and the merges a method may name instead): θᵢ from
the stages so far, on the LLM only (`hf_mera.merging`), streamed from and to the checkpoints' files.

- `StageUpdate` pairs a stage's instruction-tuning start and result checkpoints;
- `CheckpointHistory` is what a stage merge reads: the checkpoints' safetensors files, memory-mapped and
  read one tensor at a time (`hf_mera.merging.streaming`), and for LPM each stage's input Grams,
  computed on its own model and data;
- `merge_phase` runs the method's merge as a stored phase (skipped where it would return θᵢ,vanilla),
  writing θᵢ's tensors into the phase's folder as the merge yields them: peak memory is a few tensors,
  not two models (bench/bench_merge_memory.py).
"""

from __future__ import annotations

import shutil
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
    """`hf_mera.merging.StageHistory` over a method's checkpoints (stages 1 … `index`), lazily: each
    state dict is a `SafetensorsStateDict` over the checkpoint's files, in the model's key order (so a
    merge reads the keys in the order the in-memory model's state dict has). `seed` (DARE's masks):
    the run's, `method.run.seed`, unless given."""

    def __init__(self, method, updates: list[StageUpdate], seed: int | None = None):
        self.method, self.updates, self.index = method, updates, len(updates)
        self.seed = seed if seed is not None or method is None else method.run.seed
        order, aliases = model_keys(updates[-1].vanilla.path)
        self.start = cache(lambda k: self._lazy(self.updates[k - 1].start, order, aliases))
        self.vanilla = cache(lambda k: self._lazy(self.updates[k - 1].vanilla, order, aliases))

    @staticmethod
    def _lazy(checkpoint: Checkpoint, order, aliases):
        from hf_mera.merging.streaming import SafetensorsStateDict

        return SafetensorsStateDict(checkpoint.path, order=order, aliases=aliases)

    def lora_deltas(self, k: int):
        path = self.updates[k - 1].vanilla.path / LORA_DELTAS_FILE
        if not path.is_file():
            return None
        from hf_mera.merging.streaming import SafetensorsStateDict

        return SafetensorsStateDict(path)

    def grams(self, k: int, weight_names, samples: int, normalize: bool):
        """Gₖ on `samples` rows of Dₖ (seeded by the run and stage), one row per forward so that
        padding never enters XᵀX, through θₖ,vanilla."""
        from hf_mera.data.seeding import seeded_subset
        from hf_mera.merging.lpm import input_grams

        ws, update = self.method.ws, self.updates[k - 1]
        model, processor = ws.load(update.vanilla)  # dropped once its Grams are taken
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
        if merge.protocol is not None:  # new semantics, new checkpoints (none of MERA's: it has none)
            description["protocol"] = merge.protocol
    else:  # MERA reads θᵢ₋₁ only (the description its checkpoints always had: "schedule" is its name)
        description = {
            "phase": "merge",
            "schedule": merge.name,
            "stage": stage.index,
            "previous": updates[-1].start.key,
        }

    def write(tmp):
        from hf_mera.merging.streaming import write_merged

        history = CheckpointHistory(method, updates)
        write_merged(merge.tensors(history), history.vanilla(stage.index), tmp)
        # Everything else of the checkpoint (config, processor) is θᵢ,vanilla's.
        for path in vanilla.path.iterdir():
            if path.is_file() and not (tmp / path.name).exists() and path.name not in _NOT_COPIED:
                shutil.copyfile(path, tmp / path.name)

    return method.track(method.ws.run_file_phase(f"merge-{stage.modality}", vanilla, description, write))


# Not part of a merged checkpoint: the phase marker (the store writes its own) and stage i's ΔW.
_NOT_COPIED = {"phase.json", LORA_DELTAS_FILE}


def model_keys(checkpoint_path) -> tuple[list[str], dict[str, str]]:
    """The model's state-dict keys in order, and its tied keys → the key stored in the files, from a
    model built on the meta device from the checkpoint's config (no weight is read)."""
    import torch

    from hf_mera import AnyModalityLlava, AnyModalityLlavaConfig

    config = AnyModalityLlavaConfig.from_pretrained(checkpoint_path)
    # fork_rng: building the model must not move the global generator (the phase seeded it).
    with torch.random.fork_rng(devices=[]), torch.device("meta"):
        model = AnyModalityLlava(config)
    first: dict[int, str] = {}
    aliases: dict[str, str] = {}
    for name, tensor in model.named_parameters(remove_duplicate=False):
        aliases.update({name: first[id(tensor)]} if id(tensor) in first else {})
        first.setdefault(id(tensor), name)
    return list(model.state_dict().keys()), aliases


__all__ = ["CheckpointHistory", "LORA_DELTAS_FILE", "StageUpdate", "merge_phase", "model_keys"]
