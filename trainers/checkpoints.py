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

The store also checks itself: `phase.json` records every file of the phase with its size and
xxh3-128 hash (`file_manifest`), and a phase is reused only when its files still match
(`CheckpointStore.verify`). A file damaged after the phase was written (flipped bytes: safetensors
checks no data checksum, so they would load silently), truncated or missing is reported in a
warning naming it, and the phase is recomputed, never loaded. xxh3 hashes at several GB/s, so the
check costs about one more read of the files (1.1–1.2× reading them, a tenth of loading them:
`bench/bench_phase_store.py`). Each folder is checked once per process.

Phase folders written before the hashes existed (no `files` in `phase.json`) are trusted with a
warning rather than recomputed: they were published atomically, so they are whole unless damaged
afterwards, and recomputing would throw away finished training (hours on a paper run) on an
upgrade. Their safetensors files are still checked for truncation (header against file size), the
damage that used to stop a run; delete such a folder to have it recomputed and hashed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import xxhash

logger = logging.getLogger(__name__)

COMPLETE_MARKER = "phase.json"
HASH_NAME = "xxh3_128"  # the key of each file's digest in phase.json


def file_digest(path: str | os.PathLike) -> str:
    """xxh3-128 hex digest of a file's bytes, read in blocks (`hashlib.file_digest`)."""
    with open(path, "rb") as file:
        return hashlib.file_digest(file, xxhash.xxh3_128).hexdigest()


def file_manifest(folder: Path) -> dict[str, dict[str, Any]]:
    """`{relative path: {"bytes": size, "xxh3_128": digest}}` for every file under `folder` except
    `phase.json`."""
    return {
        path.relative_to(folder).as_posix(): {"bytes": path.stat().st_size, HASH_NAME: file_digest(path)}
        for path in sorted(folder.rglob("*"))
        if path.is_file() and path.name != COMPLETE_MARKER
    }


def manifest_problems(folder: Path, files: dict[str, dict[str, Any]]) -> list[str]:
    """What no longer matches `files` (a `file_manifest`) in `folder`: one line per file, naming it.

    Files added after the phase was written (evaluation results beside it) are not checked.
    """
    problems = []
    for name, expected in files.items():
        path = folder / name
        if not path.is_file():
            problems.append(f"{path} is missing")
        elif (size := path.stat().st_size) != expected["bytes"]:
            problems.append(f"{path} is truncated or grown: {size} bytes, {expected['bytes']} when written")
        elif file_digest(path) != expected[HASH_NAME]:
            problems.append(f"{path} is damaged: its {HASH_NAME} hash differs from the one written")
    return problems


def safetensors_problems(folder: Path) -> list[str]:
    """Truncation of the safetensors files in `folder`, from their headers alone (no hash needed):
    the header's last data offset must end exactly at the end of the file."""
    problems = []
    for path in sorted(folder.rglob("*.safetensors")):
        size = path.stat().st_size
        try:
            with open(path, "rb") as file:
                header_size = int.from_bytes(file.read(8), "little")
                header = json.loads(file.read(header_size)) if 8 + header_size <= size else None
        except (OSError, ValueError):
            header = None
        if header is None:
            problems.append(f"{path} has no readable safetensors header")
            continue
        end = max((t["data_offsets"][1] for k, t in header.items() if k != "__metadata__"), default=0)
        if 8 + header_size + end != size:
            problems.append(
                f"{path} is truncated: {size} bytes, its header describes {8 + header_size + end}"
            )
    return problems


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
        self._verified: set[str] = set()  # folders whose files were checked by this process
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
        """The complete checkpoint `<name>-<key>` whose files are intact (`verify`), else None: a
        damaged one is reported and left to be recomputed (`commit` replaces it)."""
        path = self.path_for(name, key)
        marker = path / COMPLETE_MARKER
        if not marker.is_file():
            return None
        try:
            record = json.loads(marker.read_text())
            description = record["description"]
        except (ValueError, KeyError, TypeError) as err:
            logger.warning("phase %s: %s is damaged (%s); recomputing the phase", path.name, marker, err)
            return None
        if not self.verify(path, record):
            return None
        return Checkpoint(key=key, path=path, description=description, cost=record.get("cost"))

    def verify(self, path: Path, record: dict[str, Any]) -> bool:
        """Whether the files of phase folder `path` match the manifest in its `record` (phase.json);
        warns naming every file that does not. Once per folder and process."""
        if path.name in self._verified:
            return True
        files = record.get("files")
        if files is None:  # written before phases were hashed: trusted (module docstring), truncation checked
            problems = safetensors_problems(path)
            if not problems:
                logger.warning(
                    "phase %s has no file hashes (written by an older hf_mera): trusting it unchecked; "
                    "delete %s to recompute it",
                    path.name,
                    path,
                )
        else:
            problems = manifest_problems(path, files)
        for problem in problems:
            logger.warning("phase %s: %s; recomputing the phase, not loading it", path.name, problem)
        if not problems:
            self._verified.add(path.name)
        return not problems

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
                "files": file_manifest(tmp),
            }
            (tmp / COMPLETE_MARKER).write_text(json.dumps(record, indent=2, default=str))
            if final.exists():  # a damaged phase, or an incomplete folder of an older layout
                shutil.rmtree(final)
            os.replace(tmp, final)
            self._verified.add(final.name)
        return Checkpoint(key=key, path=final, description=description, cost=cost)


__all__ = [
    "COMPLETE_MARKER",
    "Checkpoint",
    "CheckpointStore",
    "derive_seed",
    "file_digest",
    "file_manifest",
    "manifest_problems",
    "phase_key",
    "safetensors_problems",
]
