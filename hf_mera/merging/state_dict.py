"""Merging whole state dicts, key by key, with one registered merge method.

MERA merges only the modality-agnostic LLM θ^LLM (`include=LLM_KEY_PATTERN`); encoders θ^Enc and
connectors θ^Conn are per-modality and are "ensembled": taken from the newest model as they are.
MERA's own merge is `mera.mera_merge_state_dict`, which calls `merge_state_dicts` for full fine-tuning.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from .methods.base import get_merge_method

StateDict = Mapping[str, torch.Tensor]
KeySelector = str | re.Pattern[str] | Callable[[str], bool] | None

# Keys of the LLM inside AnyModalityLlava: `model.language_model.*` and `lm_head.*`.
LLM_KEY_PATTERN = r"(?:^|\.)(?:language_model|lm_head)\."


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


def _check_keys(base: StateDict, finetuned: Sequence[StateDict], selected: Callable[[str], bool]) -> None:
    # Selected keys: everywhere, same shape. Unselected keys come from finetuned[-1], which may add
    # some (this stage's new encoder / connector) but must not lose any of the base's.
    for index, state in enumerate(finetuned):
        last = index == len(finetuned) - 1
        for key, tensor in base.items():
            if key not in state:
                if last or selected(key):
                    raise ValueError(f"finetuned[{index}] is missing key {key!r}")
                continue
            if selected(key) and state[key].shape != tensor.shape:
                raise ValueError(
                    f"shape mismatch for key {key!r}: base {tuple(tensor.shape)}, "
                    f"finetuned[{index}] {tuple(state[key].shape)}"
                )
        for key in state:
            if key not in base and selected(key):
                raise ValueError(f"finetuned[{index}] has key {key!r} that the base state dict lacks")


def merge_state_dicts(
    base: StateDict,
    finetuned: Sequence[StateDict],
    method: str,
    *,
    include: KeySelector = None,
    **method_kwargs: Any,
) -> dict[str, torch.Tensor]:
    """Merge `finetuned` into `base` with the registered merge `method`, key by key.

    For each selected floating-point key: θ[key] = method(base[key], [ft[key] for ft in finetuned],
    **method_kwargs), computed in float32 and cast back to base[key]'s dtype. Every other key
    (unselected, or integer buffers) is taken unchanged from `finetuned[-1]`.

    Args:
        base: θ_base (θᵢ₋₁ for MERA).
        finetuned: θ_1 … θ_n (for MERA: [θᵢ,vanilla]).
        method: a name from `MERGE_METHODS` ("mera", "weight_average", "ties", …).
        include: which keys to merge: a regex (`re.search`, e.g. `LLM_KEY_PATTERN`) or a
            callable(key) -> bool; None merges every key.
        **method_kwargs: passed to the method (e.g. `stage_index=i`, `density=0.5`).

    Raises:
        ValueError: unknown method; a selected key missing from / extra in some state dict, or a
            base key missing from `finetuned[-1]`; a shape mismatch; `include` selecting nothing;
            a NaN / inf in a merged tensor. Each names the key.
    """
    merge_fn = get_merge_method(method)  # fail on an unknown name before any work
    if len(finetuned) == 0:
        raise ValueError("merge_state_dicts needs at least one fine-tuned state dict")
    selected = key_selector(include)
    _check_keys(base, finetuned, selected)

    newest = finetuned[-1]
    merged = dict(newest)  # unselected keys, including ones only the newest model has
    n_merged = 0
    for key, base_tensor in base.items():
        if not selected(key) or not base_tensor.is_floating_point():
            continue
        # float32 so that bf16 / fp16 weights don't lose the small differences being averaged.
        others = [state[key].to(device=base_tensor.device, dtype=torch.float32) for state in finetuned]
        out = merge_fn(base_tensor.float(), others, **method_kwargs)
        if not torch.isfinite(out).all():
            raise ValueError(f"merge method {method!r} produced NaN/inf for key {key!r}")
        merged[key] = out.to(base_tensor.dtype)
        n_merged += 1
    if n_merged == 0:
        raise ValueError(f"include={include!r} selected no floating-point key to merge")
    return merged
