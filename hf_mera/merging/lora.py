"""Exact LoRA folding for MERA: θᵢ = θᵢ₋₁ + c · ΔWᵢ with ΔW = B·A·scaling per LoRA layer.

With a shared base (stage i's LoRA trained on top of θᵢ₋₁), θᵢ,vanilla = θᵢ₋₁ + ΔWᵢ, so MERA's
(i−1)/i · θᵢ₋₁ + 1/i · θᵢ,vanilla is θᵢ₋₁ + ΔWᵢ / i. This folds the product B·A, not peft's
`add_weighted_adapter(combination_type="linear")`, which averages A and B separately (the product of
averages is not the average of products). peft is imported inside the functions (it is slow).
"""

from __future__ import annotations

from collections.abc import Container, Iterator, Mapping
from typing import TYPE_CHECKING

import torch

from .schedule import MergeSchedule

if TYPE_CHECKING:
    from torch import nn

StateDict = Mapping[str, torch.Tensor]

# PeftModel → LoraModel (`base_model`) → the wrapped model (`.model`).
PEFT_MODEL_PREFIX = "base_model.model."
# LoRA's own sub-modules / parameters: not weights of the plain model.
_LORA_PARAMETER_NAMES = frozenset(
    {"lora_A", "lora_B", "lora_embedding_A", "lora_embedding_B", "lora_magnitude_vector"}
)


def peft_key_to_model_key(key: str, adapter_name: str = "default") -> str | None:
    """The un-wrapped model's name for a PeftModel state-dict key or module name.

    Stripped: the leading "base_model.model." (PeftModel and LoraModel wrappers), every
    ".base_layer" (LoRA keeps the original layer there), and ".modules_to_save.<adapter_name>"
    (that trained copy is the model's weight). E.g.
    "base_model.model.model.layers.0.self_attn.q_proj.base_layer.weight" →
    "model.layers.0.self_attn.q_proj.weight".

    Returns None for keys that are no weight of the plain model: LoRA factors (lora_A, lora_B,
    lora_embedding_A/B, lora_magnitude_vector), "original_module" copies and other adapters'
    modules_to_save copies.
    """
    key = key.removeprefix(PEFT_MODEL_PREFIX)
    parts = key.split(".")
    kept: list[str] = []
    index = 0
    while index < len(parts):
        part = parts[index]
        if part in _LORA_PARAMETER_NAMES or part == "original_module":
            return None
        if part == "modules_to_save":
            if index + 1 >= len(parts) or parts[index + 1] != adapter_name:
                return None
            index += 2  # drop "modules_to_save.<adapter_name>"
            continue
        if part != "base_layer":
            kept.append(part)
        index += 1
    return ".".join(kept)


def peft_state_dict_to_model_state_dict(
    state_dict: StateDict, adapter_name: str = "default"
) -> dict[str, torch.Tensor]:
    """A PeftModel's `state_dict()` keyed as the plain model's (see `peft_key_to_model_key`).

    Base-layer weights are the frozen ones (LoRA not folded in); modules_to_save give their trained
    copy. Tensors are shared, not copied.
    """
    plain: dict[str, torch.Tensor] = {}
    for key, tensor in state_dict.items():
        model_key = peft_key_to_model_key(key, adapter_name)
        if model_key is None:
            continue
        if model_key in plain:
            raise ValueError(f"peft keys map twice onto {model_key!r} (last: {key!r})")
        plain[model_key] = tensor
    return plain


def _iter_lora_deltas(
    peft_model: nn.Module, adapter_name: str, only: Container[str] | None = None
) -> Iterator[tuple[str, torch.Tensor]]:
    # One layer at a time, so `mera_merge_lora` never holds every ΔW at once. `only`: weight keys
    # to fold; other layers (an encoder's LoRA, say) are skipped before they are checked.
    from peft.tuners.lora import Embedding as LoraEmbedding
    from peft.tuners.lora import Linear as LoraLinear
    from peft.tuners.lora import LoraLayer

    found = False
    for name, module in peft_model.named_modules():
        if not isinstance(module, LoraLayer):
            continue
        if adapter_name not in module.lora_A and adapter_name not in module.lora_embedding_A:
            continue
        key = peft_key_to_model_key(name, adapter_name)
        if only is not None and f"{key}.weight" not in only:
            continue
        found = True
        if module.use_dora.get(adapter_name, False):
            raise ValueError(
                f"LoRA layer {name!r} uses DoRA (use_dora=True): it rescales W + B·A by a learned magnitude, "
                "so its update is not B·A and cannot be folded as ΔW / i"
            )
        variant = getattr(module, "lora_variant", {}).get(adapter_name)
        if variant is not None:
            raise ValueError(f"LoRA layer {name!r} uses variant {type(variant).__name__}: ΔW is not B·A")
        if adapter_name in module.merged_adapters:
            raise ValueError(f"adapter {adapter_name!r} is already merged into {name!r}; unmerge it first")
        scaling = module.scaling[adapter_name]  # alpha / r, or alpha / sqrt(r) with rslora
        if isinstance(module, LoraLinear):
            lora_b = module.lora_B[adapter_name]
            delta = lora_b.weight.float() @ module.lora_A[adapter_name].weight.float() * scaling
            # Conv1D (GPT-2) stores W as [in, out]: B·A is [out, in].
            yield f"{key}.weight", delta.T if module.fan_in_fan_out else delta
            if module.lora_bias.get(adapter_name, False):
                yield f"{key}.bias", lora_b.bias.float() * scaling
        elif isinstance(module, LoraEmbedding):
            # A: [r, num_embeddings], B: [dim, r]; the embedding weight is [num_embeddings, dim].
            product = (
                module.lora_embedding_B[adapter_name].float() @ module.lora_embedding_A[adapter_name].float()
            )
            yield f"{key}.weight", product.T * scaling
        else:
            raise ValueError(
                f"LoRA layer {name!r} is a {type(module).__name__}; only Linear, Conv1D and Embedding "
                "LoRA layers can be folded"
            )
    if not found:
        where = "" if only is None else " on the selected weights"
        raise ValueError(f"no LoRA layer holds adapter {adapter_name!r}{where}")


def lora_delta_weights(peft_model: nn.Module, adapter_name: str = "default") -> dict[str, torch.Tensor]:
    """ΔW = B · A · scaling for each LoRA layer of `adapter_name`, in float32.

    Keys are the un-wrapped model's weight keys ("model.layers.0.self_attn.q_proj.weight"), so
    `base_state_dict[key] + ΔW` is peft's merged weight. `scaling` is read from the layer (it already
    holds rslora's alpha / sqrt(r) and any rank / alpha pattern); Conv1D's fan_in_fan_out is
    transposed back; `lora_bias` gives a ".bias" delta.

    Raises:
        ValueError: a DoRA (or other variant) layer, an already merged adapter, an unsupported LoRA
            layer type, or no layer with `adapter_name`.
    """
    return dict(_iter_lora_deltas(peft_model, adapter_name))


def _fold(base: torch.Tensor, delta: torch.Tensor, coefficient: float, key: str) -> torch.Tensor:
    if delta.shape != base.shape:
        raise ValueError(
            f"shape mismatch for key {key!r}: weight {tuple(base.shape)}, ΔW {tuple(delta.shape)}"
        )
    # float32 so a small c · ΔW is not rounded away in bf16 before it is added.
    out = base.float() + coefficient * delta.to(device=base.device, dtype=torch.float32)
    if not torch.isfinite(out).all():
        raise ValueError(f"folding ΔW into key {key!r} produced NaN/inf")
    return out.to(base.dtype)


def fold_lora_into_state_dict(
    base_state_dict: StateDict, deltas: Mapping[str, torch.Tensor], coefficient: float
) -> dict[str, torch.Tensor]:
    """θ[key] = θ_base[key] + c · ΔW[key] for each key of `deltas`; other keys unchanged (shared).

    Args:
        base_state_dict: θ_base (θᵢ₋₁), plain model keys.
        deltas: ΔW per key, e.g. from `lora_delta_weights`.
        coefficient: c (1/i for MERA, 1 for peft's merge_and_unload).

    Raises:
        ValueError: a delta key absent from `base_state_dict`, a shape mismatch, or NaN / inf.
    """
    merged = dict(base_state_dict)
    for key, delta in deltas.items():
        if key not in base_state_dict:
            raise ValueError(f"ΔW for key {key!r} has no weight in the base state dict")
        merged[key] = _fold(base_state_dict[key], delta, coefficient, key)
    return merged


def mera_merge_lora(
    peft_model: nn.Module,
    previous_llm_state: StateDict,
    stage_index: int,
    *,
    adapter_name: str = "default",
    schedule: MergeSchedule | None = None,
) -> dict[str, torch.Tensor]:
    """MERA's merge after a LoRA stage: θᵢ = θᵢ₋₁ + ΔWᵢ / i on exactly the keys of `previous_llm_state`.

    Args:
        peft_model: the PeftModel after stage i's instruction tuning, LoRA trained on top of θᵢ₋₁.
        previous_llm_state: θᵢ₋₁, the merged LLM weights, keyed as the un-wrapped model
            (e.g. "model.language_model.layers.0.mlp.up_proj.weight").
        stage_index: i, 1-based.
        adapter_name: the adapter trained in stage i.
        schedule: c for stage i (default "mera": c = 1/i).

    The merge is the paper's (i−1)/i · θᵢ₋₁ + 1/i · θᵢ,vanilla with θᵢ,vanilla read from the model
    (base weights + ΔW, modules_to_save copies): θᵢ₋₁ + c · (θᵢ,vanilla − θᵢ₋₁). When the model's base
    weights are θᵢ₋₁ this is θᵢ₋₁ + c · ΔWᵢ exactly, and frozen weights come back bit for bit. LoRA
    layers outside `previous_llm_state` (encoders, connectors) are not merged.

    Raises:
        ValueError: a key of `previous_llm_state` that the model lacks or whose shape differs; DoRA;
            NaN / inf.
    """
    coefficient = (schedule or MergeSchedule("mera"))(stage_index)
    vanilla = peft_state_dict_to_model_state_dict(peft_model.state_dict(), adapter_name)
    for key, tensor in previous_llm_state.items():
        if key not in vanilla:
            raise ValueError(
                f"key {key!r} of previous_llm_state is not a weight of the peft model "
                "(name keys as in the un-wrapped model, without 'base_model.model.' or '.base_layer')"
            )
        if vanilla[key].shape != tensor.shape:
            raise ValueError(
                f"shape mismatch for key {key!r}: previous {tuple(tensor.shape)}, "
                f"model {tuple(vanilla[key].shape)}"
            )

    def drift(key: str) -> torch.Tensor:
        # θ_model − θᵢ₋₁: zero for frozen weights when stage i started from θᵢ₋₁; the trained
        # copy's change for modules_to_save.
        return vanilla[key].float() - previous_llm_state[key].to(vanilla[key].device).float()

    merged = dict(previous_llm_state)
    folded: set[str] = set()
    for key, delta in _iter_lora_deltas(peft_model, adapter_name, only=previous_llm_state):
        if key in previous_llm_state:  # a ".bias" delta of a layer whose weight is selected
            merged[key] = _fold(previous_llm_state[key], delta + drift(key), coefficient, key)
            folded.add(key)
    for key, previous in previous_llm_state.items():
        if key in folded or not previous.is_floating_point():
            continue
        current = vanilla[key]
        if current.dtype != previous.dtype or not torch.equal(current.to(previous.device), previous):
            merged[key] = _fold(previous, drift(key), coefficient, key)
    return merged
