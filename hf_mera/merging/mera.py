"""MERA's merge (paper §4.1), in one place: θᵢ = θᵢ₋₁ + (θᵢ,vanilla − θᵢ₋₁)/i on the LLM.

The paper writes it θᵢ,merged = (i−1)/i · θᵢ₋₁ + 1/i · θᵢ,vanilla and merges only the modality-agnostic
LLM θ^LLM; the modality-specific encoders θ^Enc and connectors θ^Conn are "ensembled", i.e. taken from
θᵢ,vanilla as trained. Unrolled, θᵢ is the plain mean of the i vanilla models.

Symbols → arguments of `mera_tensors` / `mera_merge_state_dict`:

    θᵢ₋₁        previous       the merged weights after stage i − 1 (θᵢ,start: with this modality's row)
    θᵢ,vanilla  vanilla        the weights after stage i's standard training
    i           stage_index    1-based; c = 1/i (`mera_coefficient`)
    θ^LLM       include        the keys merged (`LLM_KEY_PATTERN`); every other key comes from vanilla
    ΔWᵢ         lora_deltas    B·A·scaling per LoRA weight (`lora.lora_delta_weights`), or None

Two paths, one equation (`kernels.py` holds the arithmetic):
- full fine-tuning: per selected key, θᵢ₋₁ + c · (θᵢ,vanilla − θᵢ₋₁) in float32, cast back;
- LoRA: stage i trained ΔWᵢ on top of θᵢ₋₁, so θᵢ,vanilla − θᵢ₋₁ = ΔWᵢ and θᵢ = θᵢ₋₁ + c · ΔWᵢ, folded in
  float32 from the exact product B·A. (peft's `add_weighted_adapter(combination_type="linear")` averages A
  and B separately; the product of averages is not the average of products.)

Path from the stage loop to the arithmetic: `trainers/merge_and_realign.py` → `trainers/merge.py`
(`merge_phase`) → here (`MERAMerge`, `mera_tensors`) → `kernels.py`.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Iterator, Mapping

import torch

from . import kernels
from .base import LLM_KEY_PATTERN, StageHistory, StageMerge, is_float, register_merge, writable_keys

StateDict = Mapping[str, torch.Tensor]
KeySelector = str | re.Pattern[str] | Callable[[str], bool] | None


def mera_coefficient(stage_index: int) -> float:
    """c(i) = 1/i: θᵢ = (i−1)/i · θᵢ₋₁ + 1/i · θᵢ,vanilla, the mean of all stage models."""
    if isinstance(stage_index, bool):
        raise ValueError(f"stage_index must be an integer >= 1, got {stage_index!r}")
    try:
        index = operator.index(stage_index)
    except TypeError:
        raise ValueError(f"stage_index must be an integer >= 1, got {stage_index!r}") from None
    if index < 1:
        raise ValueError(f"stage_index must be an integer >= 1 (stages are 1-based), got {index}")
    return 1.0 / index


def key_selector(include: KeySelector) -> Callable[[str], bool]:
    """`include` as a predicate: None selects every key, a str / compiled regex is `re.search`ed."""
    if include is None:
        return lambda key: True
    if isinstance(include, (str, re.Pattern)):
        pattern = re.compile(include)
        return lambda key: pattern.search(key) is not None
    if callable(include):
        return include
    raise ValueError(f"include must be a regex or a callable(key) -> bool, got {type(include).__name__}")


def _check_full_keys(previous: StateDict, vanilla: StateDict, selected: Callable[[str], bool]) -> None:
    # Every key of θᵢ₋₁ is in θᵢ,vanilla (which may add this stage's encoder / connector, outside the
    # LLM); a merged key is in both. Shapes are checked key by key as the merge reads them.
    for key in previous.keys():
        if key not in vanilla:
            raise ValueError(f"finetuned[0] is missing key {key!r}")
    for key in vanilla.keys():
        if key not in previous and selected(key):
            raise ValueError(f"finetuned[0] has key {key!r} that the base state dict lacks")


def _check_lora_keys(
    previous: StateDict, vanilla: StateDict, deltas: StateDict, selected: Callable[[str], bool]
) -> None:
    if not deltas:
        raise ValueError("lora_deltas is empty: pass None after full fine-tuning")
    for key in deltas.keys():
        if not selected(key):
            raise ValueError(f"ΔW for key {key!r} lies outside `include`: MERA merges only the LLM")
        if key not in previous:
            raise ValueError(f"ΔW for key {key!r} has no weight in the previous state dict")
        if key not in vanilla:
            raise ValueError(f"ΔW for key {key!r}: the vanilla state dict lacks it or has another shape")


def mera_tensors(
    previous: StateDict,
    vanilla: StateDict,
    stage_index: int,
    *,
    lora_deltas: StateDict | None = None,
    include: KeySelector = LLM_KEY_PATTERN,
    inplace: bool = False,
) -> Iterator[tuple[str, torch.Tensor]]:
    """θᵢ's (key, tensor) pairs in `vanilla`'s key order: MERA's stage-i merge, one key at a time.

    Args:
        previous: θᵢ₋₁, plain model keys (with LoRA, only the keys of `lora_deltas` are read).
        vanilla: θᵢ,vanilla, plain model keys; every key not merged comes from here.
        stage_index: i, 1-based.
        lora_deltas: ΔWᵢ = B·A·scaling per weight key, float32. None: full fine-tuning, merge every
            floating-point key `include` selects. Given: θᵢ₋₁[k] + c · ΔWᵢ[k] for exactly its keys.
        include: the LLM's keys, a regex (`re.search`) or a callable(key) -> bool; None: every key.
        inplace: write each merged tensor into `vanilla`'s own (the stage merge's θᵢ,vanilla is ours to
            overwrite; tied weights never are); False allocates the results.

    Raises (before the first key is yielded, except shapes and NaN / inf, raised at their key):
        ValueError: a merged key missing from / extra in either dict, a shape mismatch, a ΔW outside
            `include`, NaN / inf, a bad stage index. Each names the key.
    """
    coefficient = mera_coefficient(stage_index)
    selected = key_selector(include)
    if lora_deltas is None:
        _check_full_keys(previous, vanilla, selected)
        merged_keys = [k for k in previous.keys() if selected(k) and is_float(previous, k)]
        if not merged_keys:
            raise ValueError(f"include={include!r} selected no floating-point key to merge")
    else:
        _check_lora_keys(previous, vanilla, lora_deltas, selected)
        merged_keys = list(lora_deltas.keys())
    writable = writable_keys(vanilla) if inplace else (lambda key: False)
    return _merged(previous, vanilla, lora_deltas, set(merged_keys), coefficient, writable)


def _merged(previous, vanilla, lora_deltas, merged_keys, coefficient, writable):
    for key, tensor in vanilla.items():
        if key not in merged_keys:
            yield key, tensor
            continue
        prev = previous[key]
        if lora_deltas is None:
            if tensor.shape != prev.shape:
                raise ValueError(
                    f"shape mismatch for key {key!r}: base {tuple(prev.shape)}, "
                    f"finetuned[0] {tuple(tensor.shape)}"
                )
            out = tensor if writable(key) else None
            yield key, kernels.interpolate(prev, tensor, coefficient, key=key, out=out)
        else:
            delta = lora_deltas[key]
            if tensor.shape != prev.shape:
                raise ValueError(f"ΔW for key {key!r}: the vanilla state dict lacks it or has another shape")
            if delta.shape != prev.shape:
                raise ValueError(
                    f"shape mismatch for key {key!r}: weight {tuple(prev.shape)}, ΔW {tuple(delta.shape)}"
                )
            out = tensor if writable(key) else None
            yield key, kernels.add_scaled(prev, delta, coefficient, key=key, out=out)


def mera_merge_state_dict(
    previous: StateDict,
    vanilla: StateDict,
    stage_index: int,
    *,
    lora_deltas: StateDict | None = None,
    include: KeySelector = LLM_KEY_PATTERN,
) -> dict[str, torch.Tensor]:
    """MERA's stage-i merge of whole state dicts (`mera_tensors` collected): the complete merged state
    dict (`model.load_state_dict` takes it as is), dtypes as in `previous` for merged keys and as in
    `vanilla` for the rest."""
    return dict(mera_tensors(previous, vanilla, stage_index, lora_deltas=lora_deltas, include=include))


@register_merge("mera")
class MERAMerge(StageMerge):
    """The paper's merge (stage 1: θ₁ = θ₁,vanilla, no merge phase)."""

    help = "θᵢ₋₁ + (θᵢ,vanilla − θᵢ₋₁)/i, the paper's running mean (exact for LoRA: θᵢ₋₁ + BᵢAᵢ/i)"
    reads_history = False

    def skips(self, index: int) -> bool:
        return index == 1

    def tensors(self, history: StageHistory) -> Iterator[tuple[str, torch.Tensor]]:
        i = history.index
        return mera_tensors(
            history.start(i), history.vanilla(i), i, lora_deltas=history.lora_deltas(i), inplace=True
        )


__all__ = ["MERAMerge", "key_selector", "mera_coefficient", "mera_merge_state_dict", "mera_tensors"]
