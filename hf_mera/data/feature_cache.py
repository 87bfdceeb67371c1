"""A disk cache of frozen-encoder features, keyed by media content and encoder fingerprint.

Encoders are frozen in every training step of MERA, so a media file's features never change
within an experiment: encoding each file once and reading the features back every epoch is what
keeps the pipeline inside a CPU budget. Keys are the sha256 of the file's *content* (a copied or
renamed file hits, an edited one misses) plus a caller-given fingerprint of the encoder and its
preprocessing (e.g. `preprocessor.fingerprint() + encoder_fingerprint(...)`): change either and
the entry misses.

Layout: `<root>/<sha256(fingerprint)[:16]>/<key[:2]>/<key>.safetensors`, one tensor `"features"`
per file with the fingerprint and key in its metadata, written to a temp file and renamed (a
reader never sees half a file). A corrupt file is reported with a warning, deleted, and recomputed.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ..atomic import atomic_file, atomic_write_text

if TYPE_CHECKING:
    import torch

_TENSOR_NAME = "features"
_CHUNK = 1 << 20


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class FeatureCache:
    """Encoder features on disk, one safetensors file per (media content, fingerprint).

    Args:
        root: the cache folder (created on first write).

    Attributes:
        hits: lookups answered from disk (per distinct content in `get_or_compute`).
        misses: lookups that had to be computed (or found nothing, for `get`).
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.hits = 0
        self.misses = 0
        # Hashing a file each epoch costs a full read; remember the hash while the file's
        # identity (inode, size, modification and change times) stays the same.
        self._hash_memo: dict[tuple, str] = {}

    def __repr__(self) -> str:
        return f"FeatureCache(root={str(self.root)!r}, hits={self.hits}, misses={self.misses})"

    # ---- keys ---------------------------------------------------------------------------------
    def content_key(self, path: str | Path) -> str:
        """sha256 of the file's bytes (FileNotFoundError names a missing file)."""
        path = os.fspath(path)
        try:
            stat = os.stat(path)
        except FileNotFoundError:
            raise FileNotFoundError(f"Cannot read media file for the feature cache: {path}") from None
        identity = (os.path.realpath(path), stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)
        key = self._hash_memo.get(identity)
        if key is None:
            digest = hashlib.sha256()
            with open(path, "rb") as handle:
                while chunk := handle.read(_CHUNK):
                    digest.update(chunk)
            key = self._hash_memo[identity] = digest.hexdigest()
        return key

    def folder(self, fingerprint: str) -> Path:
        """The folder holding every entry of `fingerprint`."""
        return self.root / _digest(fingerprint)[:16]

    def entry_path(self, content_key: str, fingerprint: str) -> Path:
        return self.folder(fingerprint) / content_key[:2] / f"{content_key}.safetensors"

    # ---- single entries -----------------------------------------------------------------------
    def get(self, content_key: str, fingerprint: str) -> torch.Tensor | None:
        """The cached features, or None (missing, from another fingerprint, or corrupt: then deleted)."""
        tensor = self._read(content_key, fingerprint)
        if tensor is None:
            self.misses += 1
        else:
            self.hits += 1
        return tensor

    def _read(self, content_key: str, fingerprint: str) -> torch.Tensor | None:
        from safetensors import safe_open

        path = self.entry_path(content_key, fingerprint)
        if not path.is_file():
            return None
        try:
            with safe_open(str(path), framework="pt") as handle:
                metadata = handle.metadata() or {}
                tensor = handle.get_tensor(_TENSOR_NAME)
        except Exception as error:  # any unreadable entry is recomputed, never fatal
            warnings.warn(
                f"Corrupt feature cache entry {path} ({type(error).__name__}: {error}); recomputing.",
                stacklevel=3,
            )
            path.unlink(missing_ok=True)
            return None
        if metadata.get("fingerprint") != fingerprint or metadata.get("content_key") != content_key:
            return None  # a (truncated-hash) folder collision: treat as absent
        return tensor

    def put(self, content_key: str, fingerprint: str, features: torch.Tensor) -> Path:
        """Stores `features` atomically (temp file + rename); returns the entry's path."""
        from safetensors.torch import save_file

        path = self.entry_path(content_key, fingerprint)
        label = self.folder(fingerprint) / "FINGERPRINT.txt"
        if not label.exists():  # for people browsing the cache: which encoder a folder belongs to
            atomic_write_text(label, fingerprint + "\n")
        # clone(): a row of a batch shares the batch's storage, which safetensors refuses to save alone.
        tensor = features.detach().to("cpu").contiguous().clone()
        with atomic_file(path) as tmp:
            save_file(
                {_TENSOR_NAME: tensor}, tmp, metadata={"fingerprint": fingerprint, "content_key": content_key}
            )
        return path

    # ---- batches ------------------------------------------------------------------------------
    def get_or_compute(
        self,
        paths: Sequence[str | Path],
        fingerprint: str,
        compute_fn: Callable[[list[str]], torch.Tensor],
        batch_size: int = 32,
        progress: bool = True,
    ) -> list[torch.Tensor]:
        """Features of each path, computing only the misses, `batch_size` files per `compute_fn` call.

        Args:
            paths: media files (duplicates and same-content copies are computed once).
            fingerprint: encoder + preprocessing fingerprint.
            compute_fn: `compute_fn(list_of_paths) -> Tensor [n, ...]`, one row per path.
            batch_size: files per `compute_fn` call.
            progress: show a progress bar over the computed batches.

        Returns:
            One tensor per path, in order.
        """
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}.")
        keys = [self.content_key(p) for p in paths]
        found: dict[str, torch.Tensor] = {}
        todo: dict[str, str] = {}  # key -> the first path with that content
        for key, path in zip(keys, paths):
            if key in found or key in todo:
                continue
            tensor = self.get(key, fingerprint)
            if tensor is None:
                todo[key] = os.fspath(path)
            else:
                found[key] = tensor
        if todo:
            from tqdm.auto import tqdm

            items = list(todo.items())
            starts = range(0, len(items), batch_size)
            for start in tqdm(
                starts, desc="encoding (feature cache misses)", unit="batch", disable=not progress
            ):
                batch = items[start : start + batch_size]
                features = compute_fn([path for _, path in batch])
                if getattr(features, "shape", (None,))[0] != len(batch):
                    raise ValueError(
                        f"compute_fn returned {getattr(features, 'shape', type(features).__name__)} for "
                        f"{len(batch)} paths; expected a tensor with one row per path (first: {batch[0][1]})."
                    )
                for (key, _), row in zip(batch, features):
                    self.put(key, fingerprint, row)
                    found[key] = row.detach().to("cpu")
        return [found[key] for key in keys]

    # ---- maintenance --------------------------------------------------------------------------
    def invalidate(self, fingerprint: str) -> int:
        """Deletes every entry of `fingerprint`; returns how many were deleted."""
        folder = self.folder(fingerprint)
        if not folder.is_dir():
            return 0
        # Entries only: not the ".tmp-…" file of a write that was killed mid-way.
        count = sum(1 for entry in folder.rglob("*.safetensors") if not entry.name.startswith("."))
        shutil.rmtree(folder)
        return count

    def stats(self) -> dict[str, int]:
        return {"hits": self.hits, "misses": self.misses}

    def reset_stats(self) -> None:
        self.hits = self.misses = 0
