"""MERA's merge (paper §4.1), in one place: θᵢ = θᵢ₋₁ + c(i) · (θᵢ,vanilla − θᵢ₋₁), c(i) = 1/i.

The paper writes it θᵢ,merged = (i−1)/i · θᵢ₋₁ + 1/i · θᵢ,vanilla and merges only the modality-agnostic
LLM θ^LLM; the modality-specific encoders θ^Enc and connectors θ^Conn are "ensembled", i.e. taken from
θᵢ,vanilla as trained. Unrolled, θᵢ is the plain mean of the i vanilla models.

Symbols → arguments of `mera_merge_state_dict` (the trainer's one entry point):

    θᵢ₋₁        previous       the merged weights after stage i − 1
    θᵢ,vanilla  vanilla        the weights after stage i's standard training
    i           stage_index    1-based
    c(i)        schedule       "mera" (1/i, `mera_coefficient`) or any `MergeSchedule`
    θ^LLM       include        the keys merged (`LLM_KEY_PATTERN`); every other key comes from vanilla
    ΔWᵢ         lora_deltas    B·A·scaling per LoRA weight (`lora.lora_delta_weights`), or None

Two paths, one equation:
- full fine-tuning: per selected key, θᵢ₋₁ + c · (θᵢ,vanilla − θᵢ₋₁) in float32, cast back
  (`interpolate` through `merge_state_dicts`);
- LoRA: stage i trained ΔWᵢ on top of θᵢ₋₁, so θᵢ,vanilla − θᵢ₋₁ = ΔWᵢ and θᵢ = θᵢ₋₁ + c · ΔWᵢ, folded in
  float32 from the exact product B·A. (peft's `add_weighted_adapter(combination_type="linear")` averages A
  and B separately; the product of averages is not the average of products.)

Also registered here: the schedule "mera" and the tensor-level merge methods "interpolate" and "mera".
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch

from .methods.base import check_others, register_merge_method
from .schedule import MergeSchedule, check_stage_index, register_merge_schedule
from .state_dict import LLM_KEY_PATTERN, KeySelector, key_selector, merge_state_dicts

StateDict = Mapping[str, torch.Tensor]


@register_merge_schedule("mera")
def mera_coefficient(stage_index: int) -> float:
    """c(i) = 1/i: θᵢ = (i−1)/i · θᵢ₋₁ + 1/i · θᵢ,vanilla, the mean of all stage models."""
    return 1.0 / stage_index


@register_merge_method("interpolate")
def interpolate(base: torch.Tensor, others: Sequence[torch.Tensor], coefficient: float) -> torch.Tensor:
    """θ = θ_prev + c · (θ_new − θ_prev)  =  (1 − c) · θ_prev + c · θ_new.

    Args:
        base: θ_prev, the merged model of the previous stage (θᵢ₋₁).
        others: [θ_new], the single vanilla model of this stage (θᵢ,vanilla).
        coefficient: c ∈ [0, 1], the weight of the new model (`MergeSchedule` gives it per stage).
    """
    check_others("interpolate", others, n=1)
    if not 0 <= coefficient <= 1:
        raise ValueError(f"merge method 'interpolate': coefficient must be in [0, 1], got {coefficient}")
    if coefficient == 1:
        # θ_prev + (θ_new − θ_prev) can be off by an ulp; "keep the new model" should be exact.
        return others[0].clone()
    # Delta form: where θ_new == θ_prev (frozen weights) the result is θ_prev bit for bit.
    return base + coefficient * (others[0] - base)


@register_merge_method("mera")
def mera_running_average(
    base: torch.Tensor, others: Sequence[torch.Tensor], stage_index: int
) -> torch.Tensor:
    """θᵢ = θᵢ₋₁ + (θᵢ,vanilla − θᵢ₋₁) / i for one tensor.

    Args:
        base: θᵢ₋₁. others: [θᵢ,vanilla]. stage_index: i, 1-based (i = 1 returns θ₁,vanilla).
    """
    return interpolate(base, others, coefficient=mera_coefficient(check_stage_index(stage_index)))


def _fold(previous: torch.Tensor, delta: torch.Tensor, coefficient: float, key: str) -> torch.Tensor:
    # θᵢ₋₁ + c · ΔW in float32, so a small c · ΔW is not rounded away in bf16 before it is added.
    if delta.shape != previous.shape:
        raise ValueError(
            f"shape mismatch for key {key!r}: weight {tuple(previous.shape)}, ΔW {tuple(delta.shape)}"
        )
    out = previous.float() + coefficient * delta.to(device=previous.device, dtype=torch.float32)
    if not torch.isfinite(out).all():
        raise ValueError(f"folding ΔW into key {key!r} produced NaN/inf")
    return out.to(previous.dtype)


def _fold_lora_deltas(
    previous: StateDict,
    vanilla: StateDict,
    deltas: StateDict,
    coefficient: float,
    selected: Callable[[str], bool],
) -> dict[str, torch.Tensor]:
    if not deltas:
        raise ValueError("lora_deltas is empty: pass None after full fine-tuning")
    merged = dict(vanilla)  # weights LoRA did not touch are θᵢ₋₁ = θᵢ,vanilla; connectors are vanilla's
    for key, delta in deltas.items():
        if not selected(key):
            raise ValueError(f"ΔW for key {key!r} lies outside `include`: MERA merges only the LLM")
        if key not in previous:
            raise ValueError(f"ΔW for key {key!r} has no weight in the previous state dict")
        if key not in vanilla or vanilla[key].shape != previous[key].shape:
            raise ValueError(f"ΔW for key {key!r}: the vanilla state dict lacks it or has another shape")
        merged[key] = _fold(previous[key], delta, coefficient, key)
    return merged


def mera_merge_state_dict(
    previous: StateDict,
    vanilla: StateDict,
    stage_index: int,
    *,
    lora_deltas: StateDict | None = None,
    include: KeySelector = LLM_KEY_PATTERN,
    schedule: str | MergeSchedule = "mera",
) -> dict[str, torch.Tensor]:
    """MERA's stage-i merge of whole state dicts: θᵢ = θᵢ₋₁ + c(i) · (θᵢ,vanilla − θᵢ₋₁) on the LLM.

    Args:
        previous: θᵢ₋₁, plain model keys (with LoRA, only the keys of `lora_deltas` are read).
        vanilla: θᵢ,vanilla, plain model keys; every key not merged comes from here.
        stage_index: i, 1-based.
        lora_deltas: ΔWᵢ = B·A·scaling per weight key (`lora_delta_weights`), float32. None: full
            fine-tuning, merge every floating-point key `include` selects. Given: θᵢ₋₁[k] + c · ΔWᵢ[k]
            for exactly its keys (all inside `include`).
        include: the LLM's keys, a regex (`re.search`) or a callable(key) -> bool; None: every key.
        schedule: c(i): a registered schedule's name or a `MergeSchedule`; default "mera", 1/i.

    Returns:
        The complete merged state dict (`model.load_state_dict` takes it as is), dtypes as in
        `previous` for merged keys and as in `vanilla` for the rest.

    Raises:
        ValueError: a merged key missing from / extra in either dict, a shape mismatch, a ΔW outside
            `include`, NaN / inf; an unknown schedule; a bad stage index. Each names the key.
    """
    if not isinstance(schedule, MergeSchedule):
        schedule = MergeSchedule(schedule)
    coefficient = schedule(stage_index)
    if lora_deltas is None:
        return merge_state_dicts(previous, [vanilla], "interpolate", include=include, coefficient=coefficient)
    return _fold_lora_deltas(previous, vanilla, lora_deltas, coefficient, key_selector(include))


__all__ = ["interpolate", "mera_coefficient", "mera_merge_state_dict", "mera_running_average"]
