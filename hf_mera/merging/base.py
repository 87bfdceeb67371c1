"""The merges a curriculum's YAML can name (`merge:`), in one registry, and what they all read.

A merge is a `StageMerge` subclass in its own file, registered with `@register_merge("<name>")`. The
class owns its options (its `__init__` arguments, checked there), its help text (`help`, the first line
of what `merge_help()` and the config's error messages list) and its arithmetic (`tensors`). Nothing
else names it: the curriculum's help and validation come from this registry::

    @register_merge("mera")
    class MERAMerge(StageMerge):
        help = "θᵢ₋₁ + (θᵢ,vanilla − θᵢ₋₁)/i (the paper)"
        def tensors(self, history): ...

A stage merge reads the stages so far through a `StageHistory` (in memory, or lazily from the
checkpoints' safetensors files: `streaming.py`) and yields θᵢ's tensors one key at a time, in the
order of θᵢ,vanilla's keys: a caller either collects them (`merge(history)`, a state dict) or writes
each as it comes (`streaming.write_merged`), so a merge never needs a whole model beyond its inputs.
Tensors of θᵢ,vanilla are ours to overwrite: the merges write their result into them in place.

Stage k's instruction tuning starts from θₖ,start (the previous stage's final LLM with this modality's
placeholder row) and ends at θₖ,vanilla (its increment θₖ,vanilla − θₖ,start is exactly Bₖ·Aₖ·scaling with
LoRA). θ₀ is the LLM before stage 1's instruction tuning (`history.start(1)`), and stage k's task vector is
τₖ = θₖ,vanilla − θ₀ (`task_vector`), as the published task-vector merges define it. Only the LLM is merged
(`LLM_KEY_PATTERN`); encoders and connectors are always θᵢ,vanilla's. Embedding rows added after stage 1
(each modality's placeholder token) are outside θ₀'s shape: they are taken from θᵢ,vanilla.

Tied weights (the tiny Llama's `lm_head.weight` is its `embed_tokens.weight`) are one tensor under two
keys: `tied_groups` finds them (shared storage in memory, one stored tensor in a file), and a merge that
reads them computes the group once and gives every key of it the same tensor, so the load cannot keep
two different results for one parameter.
"""

from __future__ import annotations

import inspect
import re
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Protocol

import torch

from ..registry import Registry

StateDict = Mapping[str, torch.Tensor]

# Keys of the LLM inside AnyModalityLlava: `model.language_model.*` and `lm_head.*`.
LLM_KEY_PATTERN = r"(?:^|\.)(?:language_model|lm_head)\."
_LLM = re.compile(LLM_KEY_PATTERN)


class StageHistory(Protocol):
    """What a stage merge may read about stages 1 … `index` (the caller loads it lazily)."""

    index: int
    seed: int | None  # the run's seed: random merges (DARE) draw from streams seeded by it

    def start(self, k: int) -> StateDict:
        """θₖ,start, plain model keys."""

    def vanilla(self, k: int) -> StateDict:
        """θₖ,vanilla, plain model keys (stage `index`'s tensors are the merge's to overwrite)."""

    def lora_deltas(self, k: int) -> StateDict | None:
        """Bₖ·Aₖ·scaling per LoRA'd weight when stage k trained LoRA, else None."""

    def grams(self, k: int, weight_names: Sequence[str], samples: int, normalize: bool) -> StateDict:
        """Gₖ = XᵀX of the inputs of each named linear, on `samples` rows of Dₖ through θₖ,vanilla."""


def is_llm_key(key: str) -> bool:
    return _LLM.search(key) is not None


def is_float(state: StateDict, key: str) -> bool:
    """Whether `state[key]` is floating point, without reading it when `state` can say (a lazy file)."""
    dtype = getattr(state, "dtype_of", None)
    return dtype(key).is_floating_point if dtype is not None else state[key].is_floating_point()


def llm_keys(state: StateDict) -> list[str]:
    """The floating-point LLM weights of a plain `AnyModalityLlava` state dict (what is merged)."""
    return [k for k in state.keys() if is_llm_key(k) and is_float(state, k)]


def writable_keys(state: StateDict) -> Callable[[str], bool]:
    """Which of `state`'s tensors a merge may overwrite with its result: all of a lazily read file's
    (each read is a new tensor), and in memory every one whose storage no other key shares (tied
    weights: writing the first key's result would change the second key's input)."""
    if getattr(state, "fresh_tensors", False):
        return lambda key: True
    owners: dict[int, int] = {}
    for tensor in state.values():
        ptr = tensor.untyped_storage().data_ptr()
        owners[ptr] = owners.get(ptr, 0) + 1
    alone = {k for k, t in state.items() if owners[t.untyped_storage().data_ptr()] == 1}
    return alone.__contains__


def block(shape: torch.Size) -> tuple[slice, ...]:
    """θ₀'s leading block of a tensor that grew (an embedding with placeholder rows added later)."""
    return tuple(slice(0, s) for s in shape)


def task_vector(history: StageHistory, k: int, key: str, theta0: torch.Tensor) -> torch.Tensor:
    """τₖ[key] = θₖ,vanilla − θ₀ on θ₀'s block (`theta0`, θ₀'s tensor), float32 (a new tensor).

    With LoRA, θₖ,vanilla's checkpoint holds the adapter folded in (`merge_and_unload`, rounded to the
    checkpoint's dtype), while the model that trained computed θₖ,start + Bₖ·Aₖ·scaling: for the keys
    of the stored product ΔWₖ, τₖ = (θₖ,start − θ₀) + ΔWₖ (exact in float32: no bf16 rounding of a small
    ΔWₖ against a large weight). Other keys (full fine-tuning, or frozen under LoRA) read θₖ,vanilla.
    """
    shape = block(theta0.shape)
    lora = history.lora_deltas(k)
    if lora is not None and key in lora:
        return (history.start(k)[key][shape].float() - theta0.float()) + lora[key].float()[shape]
    return history.vanilla(k)[key][shape].float() - theta0.float()


def tied_groups(state: StateDict, keys: Sequence[str]) -> dict[str, str]:
    """Each of `keys` → the first of `keys` (in `state`'s order) holding the same parameter: itself
    when untied. The same parameter: one stored tensor of a lazily read file (`stored_key`), or in
    memory one storage at the same offset with the same shape (what a tied model's `state_dict()` has)."""
    wanted = set(keys)
    stored_key = getattr(state, "stored_key", None)
    first: dict[object, str] = {}
    groups: dict[str, str] = {}
    for key in state.keys():
        if key not in wanted:
            continue
        if stored_key is not None:
            ident: object = stored_key(key)
        else:
            t = state[key]
            ident = (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape), t.dtype)
            ident = ident if t.numel() else key  # empty tensors share no data
        groups[key] = first.setdefault(ident, key)
    return groups


def once_per_tied_group(
    vanilla: StateDict, group: Mapping[str, str], merge: Callable[[str, torch.Tensor], torch.Tensor]
) -> Iterator[tuple[str, torch.Tensor]]:
    """θᵢ's (key, tensor) pairs in θᵢ,vanilla's order: each key of `group` (from `tied_groups`) gets
    `merge(key, tensor)`, computed once per tied group at its first key and handed to every key of it
    (kept only until its last key takes it); the keys outside `group` pass through as θᵢ,vanilla's."""
    members = Counter(group.values())
    done: dict[str, torch.Tensor] = {}
    for key, tensor in vanilla.items():
        if key not in group:
            yield key, tensor
            continue
        first = group[key]
        if first not in done:
            done[first] = merge(key, tensor)
        members[first] -= 1
        yield key, done[first] if members[first] else done.pop(first)


def fold(
    base: torch.Tensor, delta: torch.Tensor, scale: float, vanilla: torch.Tensor, writable: bool, key: str
) -> torch.Tensor:
    """θᵢ,vanilla's tensor with θ₀ + scale · Δ over θ₀'s block (`base`'s shape), in float32, cast back;
    written into `vanilla` itself when `writable`, else into a copy."""
    from . import kernels

    if base.shape == vanilla.shape:
        return kernels.add_scaled(base, delta, scale, key=key, out=vanilla if writable else None).to(
            vanilla.dtype
        )
    out = vanilla if writable else vanilla.clone()
    out[block(base.shape)] = kernels.add_scaled(base, delta, scale, key=key).to(out.dtype)
    return out


class StageMerge:
    """A merge a YAML names. Subclasses set `help`, take their options as keyword arguments (checked in
    `__init__`, so a bad YAML fails when it is read) and implement `tensors`.

    `skips(i)`: θᵢ = θᵢ,vanilla, no merge phase. `reads_history`: the merge reads every earlier stage
    (their checkpoints then key the merge phase); otherwise only θᵢ,start and θᵢ,vanilla.
    `protocol`: when set, part of the merge phase's description (`trainers/merge.py`); a change of
    what the merge computes sets a new one, so no checkpoint of the old semantics is reused.
    """

    name: str = "merge"
    help: str = ""
    reads_history: bool = True
    protocol: str | None = None

    def __init__(self, **options: Any):
        if options:
            raise ValueError(f"merge {self.name!r} takes no options, got {sorted(options)}.")

    def options(self) -> dict[str, Any]:
        """The options as the phase description (and the YAML) holds them."""
        return {}

    @classmethod
    def option_names(cls) -> list[str]:
        """The options it takes: its `__init__`'s keyword arguments, so the help cannot drift from the code."""
        params = inspect.signature(cls.__init__).parameters.values()
        return [p.name for p in params if p.name != "self" and p.kind is p.POSITIONAL_OR_KEYWORD]

    def skips(self, index: int) -> bool:
        return False

    def tensors(self, history: StageHistory) -> Iterator[tuple[str, torch.Tensor]]:
        """θᵢ's (key, tensor) pairs in θᵢ,vanilla's key order; may overwrite θᵢ,vanilla's tensors."""
        raise NotImplementedError

    def __call__(self, history: StageHistory) -> dict[str, torch.Tensor]:
        """θᵢ as a state dict (`model.load_state_dict` takes it as is)."""
        return dict(self.tensors(history))


def _set_name(name: str, cls: type[StageMerge]) -> None:
    cls.name = name


MERGES: Registry[type[StageMerge]] = Registry("merge", base=StageMerge, on_register=_set_name)
register_merge = MERGES.register


def build_merge(spec: str | Mapping[str, Any], where: str = "merge") -> StageMerge:
    """`merge: <name>` or `merge: {method: <name>, <options>}` as a `StageMerge` (errors name `where`)."""
    if isinstance(spec, str):
        name, options = spec, {}
    elif isinstance(spec, Mapping) and isinstance(spec.get("method"), str):
        name, options = spec["method"], {k: v for k, v in spec.items() if k != "method"}
    else:
        raise ValueError(f"{where}: a merge name or {{method: <name>, <options>}}, got {spec!r}.")
    cls = MERGES.get(name, where=where)
    try:
        return cls(**options)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{where}: {err}") from None


def merge_help() -> str:
    """The `merge:` field's help, from the registry: every name with its one-line help."""
    return "Stage merge override, a name or {method: <name>, <options>}: " + "; ".join(
        f"'{name}': {cls.help}{_options_help(cls)}" for name, cls in sorted(MERGES.items())
    )


def _options_help(cls: type[StageMerge]) -> str:
    names = cls.option_names()
    return f" [options: {', '.join(names)}]" if names else ""


@register_merge("none")
class NoMerge(StageMerge):
    help = "θᵢ = θᵢ,vanilla (no merge)"
    reads_history = False

    def skips(self, index: int) -> bool:
        return True

    def tensors(self, history: StageHistory) -> Iterator[tuple[str, torch.Tensor]]:
        yield from history.vanilla(history.index).items()


__all__ = [
    "LLM_KEY_PATTERN",
    "MERGES",
    "StageHistory",
    "StageMerge",
    "block",
    "build_merge",
    "fold",
    "is_llm_key",
    "llm_keys",
    "merge_help",
    "once_per_tied_group",
    "register_merge",
    "task_vector",
    "tied_groups",
    "writable_keys",
]
