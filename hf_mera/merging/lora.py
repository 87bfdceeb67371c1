"""ΔWᵢ from a trained PeftModel, keyed as the plain model, for MERA's exact LoRA merge (`mera.py`).

With a shared base (stage i's LoRA trained on top of θᵢ₋₁), θᵢ,vanilla − θᵢ₋₁ = ΔWᵢ = B·A·scaling per LoRA
layer, so `mera.mera_merge_state_dict(θᵢ₋₁, θᵢ,vanilla, i, lora_deltas=lora_delta_weights(peft_model))`
is θᵢ₋₁ + ΔWᵢ / i exactly. This module only reads ΔW (and maps peft's key names); the merge itself is
`mera.py`'s. peft is imported inside the functions (it is slow).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING

import torch

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


def _iter_lora_deltas(peft_model: nn.Module, adapter_name: str) -> Iterator[tuple[str, torch.Tensor]]:
    from peft.tuners.lora import Embedding as LoraEmbedding
    from peft.tuners.lora import Linear as LoraLinear
    from peft.tuners.lora import LoraLayer
    from peft.utils import ModulesToSaveWrapper

    found = False
    for name, module in peft_model.named_modules():
        if isinstance(module, ModulesToSaveWrapper) and adapter_name in module.modules_to_save:
            # A fully trained copy: its ΔW is the copy minus the frozen original.
            prefix = peft_key_to_model_key(name, adapter_name)
            original = module.original_module.state_dict()
            for param_name, trained in module.modules_to_save[adapter_name].state_dict().items():
                if trained.is_floating_point():
                    yield f"{prefix}.{param_name}", trained.float() - original[param_name].float()
            continue
        if not isinstance(module, LoraLayer):
            continue
        if adapter_name not in module.lora_A and adapter_name not in module.lora_embedding_A:
            continue
        key = peft_key_to_model_key(name, adapter_name)
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
        raise ValueError(f"no LoRA layer holds adapter {adapter_name!r}")


def lora_delta_weights(peft_model: nn.Module, adapter_name: str = "default") -> dict[str, torch.Tensor]:
    """ΔW = B · A · scaling for each LoRA layer of `adapter_name`, in float32.

    Keys are the un-wrapped model's weight keys ("model.layers.0.self_attn.q_proj.weight"), so
    `base_state_dict[key] + ΔW` is peft's merged weight. `scaling` is read from the layer (it already
    holds rslora's alpha / sqrt(r) and any rank / alpha pattern); Conv1D's fan_in_fan_out is
    transposed back; `lora_bias` gives a ".bias" delta. A `modules_to_save` copy gives its full
    change, trained copy − frozen original, for each floating-point weight.

    Raises:
        ValueError: a DoRA (or other variant) layer, an already merged adapter, an unsupported LoRA
            layer type, or no layer with `adapter_name`.
    """
    return dict(_iter_lora_deltas(peft_model, adapter_name))
