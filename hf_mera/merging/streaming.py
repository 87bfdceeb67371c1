"""Merging from and to safetensors files, tensor by tensor: peak memory is a few tensors, not models.

A stage merge reads its inputs through `StageHistory` mappings and yields θᵢ one key at a time
(`base.StageMerge.tensors`). With `SafetensorsStateDict` as those mappings (lazy, as mergekit's loader:
the header is parsed once and each tensor is read from its offset when asked for; we read with a plain
`readinto` instead of `safe_open`'s memory map, whose touched pages count in the RSS until the file is
closed) and `write_merged` as the consumer, a merge holds
only the tensors of the key it is on: θᵢ₋₁'s and θᵢ,vanilla's (plus ΔWᵢ's, or every stage's for the
task-vector merges; LPM also holds its in × in Grams). The output is written into a copy of θᵢ,vanilla's
safetensors layout (same header, same offsets: every merged tensor has its vanilla tensor's dtype and
shape), so it is byte for byte the file `save_pretrained` would write for the same values, one shard
per input shard.

Tied weights (`lm_head.weight` = the embedding) are one tensor in the file but two keys of the model:
`aliases` maps the second key to the stored one, so a merge sees the model's keys in the model's order
(`order`) and its result for the second key lands on the stored tensor last, as `load_state_dict` of
the in-memory merge does. The merge is then bitwise the in-memory one (`tests/test_merging_streaming.py`).
The merges that read a tied group (`base.tied_groups`: here the keys of one stored tensor) merge it
once and yield that tensor for each of its keys (holding it until its last key, e.g. the embedding
until `lm_head`), so both writes carry the same bytes.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path

import torch

WEIGHTS_NAME = "model.safetensors"
WEIGHTS_INDEX_NAME = "model.safetensors.index.json"

_DTYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}


def weight_files(folder: str | Path) -> dict[str, Path]:
    """Stored key → the safetensors file holding it, for a `save_pretrained` folder (one file or an
    index of shards), or a single .safetensors file."""
    folder = Path(folder)
    if folder.is_file():
        return {key: folder for key in _header(folder)[0] if key != "__metadata__"}
    index = folder / WEIGHTS_INDEX_NAME
    if index.is_file():
        mapping = json.loads(index.read_text())["weight_map"]
        return {key: folder / name for key, name in mapping.items()}
    single = folder / WEIGHTS_NAME
    if not single.is_file():
        raise ValueError(f"{folder}: no {WEIGHTS_NAME} or {WEIGHTS_INDEX_NAME} to merge from")
    return {key: single for key in _header(single)[0] if key != "__metadata__"}


def _header(path: Path) -> tuple[dict, int]:
    """The parsed JSON header of a safetensors file and the byte offset where its data begin."""
    with open(path, "rb") as f:
        (length,) = struct.unpack("<Q", f.read(8))
        return json.loads(f.read(length)), 8 + length


class SafetensorsStateDict(Mapping):
    """A read-only state dict over safetensors files: `state[key]` reads that tensor (a new tensor,
    the caller's to overwrite); nothing else is loaded.

    Args:
        source: a `save_pretrained` folder, or one .safetensors file (e.g. `lora_deltas.safetensors`).
        order: the keys in the order to iterate them (the model's `state_dict()` order); keys not stored
            and not in `aliases` are skipped. None: the files' key order.
        aliases: model key → stored key, for tied weights.
    """

    fresh_tensors = True  # every read is a new tensor: a merge may write its result into it

    def __init__(
        self,
        source: str | Path,
        order: Sequence[str] | None = None,
        aliases: Mapping[str, str] | None = None,
    ):
        self.files = weight_files(source)
        self.aliases = {k: v for k, v in (aliases or {}).items() if v in self.files and k not in self.files}
        known = set(self.files) | set(self.aliases)
        self._keys = [k for k in order if k in known] if order is not None else list(self.files)
        missing = sorted(set(self.files) - set(self._keys))
        if missing:
            raise ValueError(f"{source}: stored keys missing from the model's key order: {missing[:5]}")
        self._meta: dict[str, tuple[torch.dtype, tuple[int, ...], Path, int, int]] = {}
        for path in set(self.files.values()):
            header, data_start = _header(path)
            for key, info in header.items():
                if key != "__metadata__":
                    begin, end = info["data_offsets"]
                    dtype = _DTYPES[info["dtype"]]
                    self._meta[key] = (dtype, tuple(info["shape"]), path, data_start + begin, end - begin)

    def stored_key(self, key: str) -> str:
        return self.aliases.get(key, key)

    def __getitem__(self, key: str) -> torch.Tensor:
        if key not in self:
            raise KeyError(key)
        dtype, shape, path, offset, nbytes = self._meta[self.stored_key(key)]
        # A plain read into a new tensor, not `safe_open(...).get_tensor`: that returns a view of a
        # private memory map, whose touched pages count in the process's RSS until the file is closed
        # and whose written pages later reads of the same key would see.
        tensor = torch.empty(shape, dtype=dtype)
        buffer = tensor.view(-1).view(torch.uint8).numpy() if tensor.numel() else None
        if buffer is not None:
            with open(path, "rb") as f:
                f.seek(offset)
                if f.readinto(memoryview(buffer)) != nbytes:
                    raise ValueError(f"{path}: tensor {key!r} is truncated")
        return tensor

    def __contains__(self, key: object) -> bool:
        return key in self.files or key in self.aliases

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def dtype_of(self, key: str) -> torch.dtype:
        return self._meta[self.stored_key(key)][0]

    def shape_of(self, key: str) -> tuple[int, ...]:
        return self._meta[self.stored_key(key)][1]


def write_merged(
    tensors: Iterable[tuple[str, torch.Tensor]], layout: SafetensorsStateDict, out_dir: str | Path
) -> list[Path]:
    """Write a merge's (key, tensor) pairs as safetensors files with `layout`'s (θᵢ,vanilla's) header.

    Each tensor is written at its key's offset as it comes and then dropped; a later pair for a key
    aliased to the same stored tensor overwrites it (last wins, as `load_state_dict`). Every stored
    key must be written once at least, with its stored dtype and shape. Returns the files written
    (and the shard index, copied, when there is one).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    outputs: dict[Path, tuple[object, int, dict]] = {}
    written: set[str] = set()
    try:
        for path in sorted(set(layout.files.values())):
            header, data_start = _header(path)
            target = out_dir / path.name
            with open(path, "rb") as src, open(target, "wb") as dst:
                dst.write(src.read(data_start))  # the same header, so the same offsets
            handle = open(target, "r+b")
            handle.truncate(
                data_start
                + max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
            )
            outputs[path] = (handle, data_start, header)
        for key, tensor in tensors:
            stored = layout.stored_key(key)
            if stored not in layout.files:
                raise ValueError(f"merged key {key!r} is not stored in the layout's files")
            handle, data_start, header = outputs[layout.files[stored]]
            info = header[stored]
            dtype, shape = _DTYPES[info["dtype"]], tuple(info["shape"])
            if tensor.dtype != dtype or tuple(tensor.shape) != shape:
                raise ValueError(
                    f"merged key {key!r}: {tensor.dtype} {tuple(tensor.shape)}, the layout stores {dtype} {shape}"
                )
            begin, end = info["data_offsets"]
            data = tensor.detach().contiguous().view(-1).view(torch.uint8).numpy()
            if data.nbytes != end - begin:
                raise ValueError(f"merged key {key!r}: {data.nbytes} bytes, the layout has {end - begin}")
            handle.seek(data_start + begin)
            handle.write(memoryview(data))
            written.add(stored)
    finally:
        for handle, _, _ in outputs.values():
            handle.close()
    missing = sorted(set(layout.files) - written)
    if missing:
        raise ValueError(f"the merge wrote no tensor for stored keys {missing[:5]}")
    files = [out_dir / p.name for p in outputs]
    source_folder = next(iter(outputs)).parent if outputs else None
    if source_folder is not None and (source_folder / WEIGHTS_INDEX_NAME).is_file():
        shutil.copyfile(source_folder / WEIGHTS_INDEX_NAME, out_dir / WEIGHTS_INDEX_NAME)
        files.append(out_dir / WEIGHTS_INDEX_NAME)
    return files


def peak_rss_bytes() -> int:
    """This process's peak resident memory so far (Linux reports KiB)."""
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak * 1024 if os.uname().sysname == "Linux" else peak


__all__ = ["SafetensorsStateDict", "peak_rss_bytes", "weight_files", "write_merged"]
