"""Content-addressed phase checkpoints: what makes runs resumable and lets methods share work.

Every phase (backbone, add a modality, pre-train its connector, instruction-tune, merge, realign)
maps a parent checkpoint to a child checkpoint. The child's key hashes the parent's key and the
phase's full description (its settings, the data it sees, the seed), so:

- a run killed at any point and started again skips every phase whose checkpoint is complete and
  recomputes the rest from the same inputs and seeds: it ends with the same weights and metrics;
- identical phases of different methods (stage 1 of Fine-Tuning and MERA, the first modality's
  expert) are trained once.

A checkpoint is written into a temporary folder and renamed when complete, so a partial one is
never loaded; only the main process writes.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

COMPLETE_MARKER = "phase.json"


def phase_key(parent_key: str, description: dict[str, Any]) -> str:
    """Hash of the parent's key and this phase's description (stable JSON)."""
    payload = json.dumps({"parent": parent_key, "phase": description}, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:20]


def derive_seed(seed: int, *parts: Any) -> int:
    digest = hashlib.sha256(json.dumps([seed, *parts], default=str).encode()).digest()
    return int.from_bytes(digest[:4], "little")


@dataclass(frozen=True)
class Checkpoint:
    key: str
    path: Path
    description: dict[str, Any]
    cost: dict[str, Any] | None = None  # wall seconds and peak memory of the phase that made it


class CheckpointStore:
    """Folder of phase checkpoints `<root>/<name>-<key>/`, each complete once `phase.json` exists."""

    def __init__(self, root: str | Path, is_main_process: bool = True):
        self.root = Path(root)
        self.is_main_process = is_main_process
        if is_main_process:
            self.root.mkdir(parents=True, exist_ok=True)

    def path_for(self, name: str, key: str) -> Path:
        return self.root / f"{name}-{key}"

    def by_key(self, key: str) -> Checkpoint | None:
        """The complete checkpoint with this key, whatever its phase name."""
        for path in self.root.glob(f"*-{key}"):
            if (path / COMPLETE_MARKER).is_file():
                return self.find(path.name[: -len(key) - 1], key)
        return None

    def find(self, name: str, key: str) -> Checkpoint | None:
        path = self.path_for(name, key)
        marker = path / COMPLETE_MARKER
        if not marker.is_file():
            return None
        record = json.loads(marker.read_text())
        return Checkpoint(key=key, path=path, description=record["description"], cost=record.get("cost"))

    def begin(self, name: str, key: str) -> Path:
        """A fresh temporary folder to write the checkpoint into (left-overs of a crash are removed)."""
        tmp = self.root / f".tmp-{name}-{key}"
        if self.is_main_process:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        return tmp

    def commit(
        self,
        name: str,
        key: str,
        tmp: Path,
        description: dict[str, Any],
        parent: Checkpoint | None = None,
        cost: dict[str, Any] | None = None,
    ) -> Checkpoint:
        """Mark `tmp` complete and move it into place atomically (rename on the same file system)."""
        final = self.path_for(name, key)
        if self.is_main_process:
            record = {
                "name": name,
                "key": key,
                "parent": None if parent is None else parent.path.name,
                "description": description,
                "cost": cost,
            }
            (tmp / COMPLETE_MARKER).write_text(json.dumps(record, indent=2, default=str))
            if final.exists():  # an incomplete folder from an older layout: never trust it
                shutil.rmtree(final)
            os.replace(tmp, final)
        return Checkpoint(key=key, path=final, description=description, cost=cost)


__all__ = ["CheckpointStore", "Checkpoint", "phase_key", "derive_seed", "COMPLETE_MARKER"]
