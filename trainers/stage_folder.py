"""Publishing a stage: its own hub-format folder `<output_dir>/<method>/stage-<i>-<modality>`."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from hf_mera.atomic import atomic_directory
from hf_mera.faults import fault_point

from .checkpoints import COMPLETE_MARKER, Checkpoint

if TYPE_CHECKING:
    from hf_mera.continual.plugins import StageContext


def slug(name: str) -> str:
    """A method's display name as a folder name: 'MERA (10%)' → 'mera-10'."""
    return "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-").replace("--", "-")


def link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:  # another file system, or links not allowed
        shutil.copy2(source, target)


# Files of a phase checkpoint that are the run's bookkeeping, not the model: evaluation caches, the
# inference cost and continual-learning plugins' state (EWC's Fisher), which a stage folder on the
# hub must not carry. (A resumed run republishes stages from folders that already hold them: left
# public, the stage a resumed run pushed would differ from an uninterrupted run's.)
PRIVATE_PREFIXES = ("eval-", "inference-", "plugin-")


def publish_stage(
    stage_dir: Path,
    checkpoint: Checkpoint,
    info: dict,
    on_saved: Callable[[Path, dict], None],
    on_published: Callable[[Path, dict], None],
) -> Path:
    """Publish `checkpoint` as `stage_dir` with `stage.json` = `info` (main process only).

    The files are hard links to the (possibly shared) phase checkpoint, so a stage costs no disk
    and files written beside them (`stage.json`, a model card) belong to this method's stage only.
    `on_saved(folder, info)` runs before the folder is renamed into place (a failure there publishes
    nothing), `on_published(stage_dir, info)` after (a failed upload never costs the local stage).
    """
    with atomic_directory(stage_dir) as tmp:
        for source in checkpoint.path.iterdir():
            if (
                source.is_file()
                and source.name != COMPLETE_MARKER
                and not source.name.startswith(PRIVATE_PREFIXES)
            ):
                link_or_copy(source, tmp / source.name)
        (tmp / "stage.json").write_text(json.dumps(info, indent=2))
        fault_point("publish", "linked")
        on_saved(tmp, info)
    on_published(stage_dir, info)
    return stage_dir


class StagePublisher:
    """The publishing half of a method's trainer (`MergeAndRealignTrainer` inherits it): each stage's
    folder, its card and its push. Needs `self.ws`, `self.run` and `self.method`."""

    def save_stage(self, stage: StageContext, checkpoint: Checkpoint, scores: dict | None = None) -> Path:
        """Publish the stage as its own hub-format folder `<output_dir>/<method>/stage-<i>-<modality>`
        (`trainers.stage_folder.publish_stage`), with `stage.json` and a model card."""
        stage_dir = self.ws.output_dir / slug(self.method.name) / f"stage-{stage.index}-{stage.modality}"
        if self.ws.is_main:
            info = {
                "method": self.method.name,
                "method_type": self.method.type,
                # What the method is, for readers of the folder (the card): no test of its type name.
                "reference": self.reference,
                "realign": self.realign,
                "stage": stage.index,
                "modality": stage.modality,
                "order": list(self.run.order),
                "seen": list(stage.seen),
                "checkpoint": checkpoint.path.name,
                "scores": scores,
                "benchmark_hash": self.ws.data.benchmark_hash,
            }
            with self.ws.clock.phase("publishing"):
                publish_stage(stage_dir, checkpoint, info, self.on_stage_saved, self.on_stage_published)
        self.ws.barrier()
        return stage_dir

    def on_stage_saved(self, stage_dir: Path, info: dict) -> None:
        """Hook called on the main process with each published stage folder (before it is renamed
        into place) and its `stage.json` content: writes the model card (`README.md`)."""
        from model_cards import hub_target, write_stage_card

        repo_id, revision = hub_target(self.run, info)
        write_stage_card(stage_dir, info, self.run, repo_id=repo_id, revision=revision)
        fault_point("card", "written")

    def on_stage_published(self, stage_dir: Path, info: dict) -> None:
        """Hook called on the main process once the stage folder is in place: pushes it to the hub
        when the run's `push_to_hub` section names this method (after the rename, so that a failed
        upload never costs the local stage)."""
        from model_cards import push_stage

        push_stage(stage_dir, info, self.run)


__all__ = ["StagePublisher", "link_or_copy", "publish_stage", "slug"]
