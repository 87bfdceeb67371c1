"""A benchmark folder's layout, its `manifest.json`, and the content hash that names the benchmark.

Layout of a benchmark folder::

    manifest.json                       generator version, seed, sizes, counts, question types, content hash
    annotations/<modality>-<task>-<split>.jsonl   one {"sample", "meta"} per line, relative paths
    <modality>/<split>/...              media files (png, mp4, wav, npy/ply)
    cross/test/...                      media of the cross-modal questions
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

MANIFEST = "manifest.json"


def annotation_name(modality: str, task: str, split: str) -> str:
    """The annotation file of one set, relative to the benchmark folder."""
    return f"annotations/{modality}-{task}-{split}.jsonl"


def read_manifest(folder: Path) -> dict[str, Any] | None:
    """`folder`'s manifest, or None when it has no readable one (not a finished benchmark)."""
    try:
        return json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def content_hash(folder: str | Path) -> str:
    """SHA-256 (first 12 hex digits) over the relative path and bytes of every file in `folder`
    but the manifest: equal hashes mean byte-identical benchmarks."""
    folder = Path(folder)
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST):
        digest.update(path.relative_to(folder).as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()[:12]


__all__ = ["MANIFEST", "annotation_name", "content_hash", "read_manifest"]
