"""Merges over a curriculum's stages, chosen by name in a method's YAML (`merge:`).

Stage k's instruction tuning starts from θₖ,start (the previous stage's final LLM with this modality's
placeholder row) and ends at θₖ,vanilla; its update is τₖ = θₖ,vanilla − θₖ,start, exactly Bₖ·Aₖ·scaling
with LoRA. θ₀ is the LLM before stage 1's instruction tuning. After stage i, the method's stage merge
gives the LLM θᵢ (encoders and connectors are always θᵢ,vanilla's):

=================  ==============================================================  =================
`merge:`           θᵢ                                                              reads
=================  ==============================================================  =================
`none`             θᵢ,vanilla                                                      —
`mera`             θᵢ₋₁ + (θᵢ,vanilla − θᵢ₋₁)/i  = θ₀ + Σₖ τₖ/k   (`mera.py`, §4.1)  θᵢ,start, τᵢ
`task_arithmetic`  θ₀ + λ Σₖ wₖ τₖ                                                 θ₀, τ₁ … τᵢ
`magnitude_prune`  θ₀ + λ Σₖ wₖ trim(τₖ)                                           θ₀, τ₁ … τᵢ
`ties`             θ₀ + λ · mean over sign-agreeing k of wₖ trim(τₖ) (TIES)        θ₀, τ₁ … τᵢ
`dare_linear`      θ₀ + λ Σₖ wₖ drop(τₖ)/density (DARE)                            θ₀, τ₁ … τᵢ
`dare_ties`        DARE's drop, then TIES' sign election                           θ₀, τ₁ … τᵢ
`lpm`              θ₀ + ΔWᵢ, MAny's recursive least-squares merge (`lpm.py`)       θ₀, τₖ, Gₖ
=================  ==============================================================  =================

A curriculum entry names one, with its options: ``merge: ties`` or
``merge: {method: ties, density: 0.5, weights: mera}``. Options of the task-vector family (peft's
`merge_utils` through `TaskVectorMerge.combine`): `density` (kept fraction), `majority_sign_method`,
`scale` (λ, default 1) and `weights`: ``ones`` (wₖ = 1, the default), ``mean`` (1/i) or ``mera``
(1/k: with `task_arithmetic` this is MERA's merge again). Options of `lpm`: `ridge`, `gram_samples`
(rows of Dₖ its input Grams Gₖ are taken on, with θₖ,vanilla), `normalize` (Gₖ = XᵀX / N, so that
each stage weighs the same). Since every stage of our curriculum trains on top of the previous merge,
LPM runs with `deltas_from="merged"` (its identity-Gram case is MERA).

Embedding rows added after stage 1 (each modality's placeholder token, never read as an input and
suppressed as an output) are outside θ₀'s shape: they are taken from θᵢ,vanilla; every merge combines
the leading block θ₀ covers.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import torch

from ..registry import Registry
from .state_dict import LLM_KEY_PATTERN

StateDict = Mapping[str, torch.Tensor]
_LLM = re.compile(LLM_KEY_PATTERN)


class StageHistory(Protocol):
    """What a stage merge may read about stages 1 … `index` (the caller loads it lazily)."""

    index: int

    def start(self, k: int) -> StateDict:
        """θₖ,start, plain model keys."""

    def vanilla(self, k: int) -> StateDict:
        """θₖ,vanilla, plain model keys."""

    def lora_deltas(self, k: int) -> StateDict | None:
        """Bₖ·Aₖ·scaling per LoRA'd weight when stage k trained LoRA, else None."""

    def grams(self, k: int, weight_names: Sequence[str], samples: int, normalize: bool) -> StateDict:
        """Gₖ = XᵀX of the inputs of each named linear, on `samples` rows of Dₖ through θₖ,vanilla."""


def llm_keys(state: StateDict) -> list[str]:
    """The floating-point LLM weights of a plain `AnyModalityLlava` state dict (what is merged)."""
    return [k for k, v in state.items() if _LLM.search(k) and torch.is_floating_point(v)]


def _block(shape: torch.Size) -> tuple[slice, ...]:
    return tuple(slice(0, s) for s in shape)


def base_llm(history: StageHistory) -> dict[str, torch.Tensor]:
    """θ₀: the LLM weights stage 1's instruction tuning started from."""
    start = history.start(1)
    return {k: start[k] for k in llm_keys(start)}


def stage_update(history: StageHistory, k: int, theta0: StateDict) -> dict[str, torch.Tensor]:
    """τₖ on θ₀'s LLM keys and shapes, float32: exactly the stored LoRA product when stage k had one."""
    start, vanilla, lora = history.start(k), history.vanilla(k), history.lora_deltas(k)
    update = {}
    for key, base in theta0.items():
        block = _block(base.shape)
        if lora is not None:
            delta = lora.get(key)
            update[key] = torch.zeros(base.shape) if delta is None else delta.float()[block]
        else:
            update[key] = vanilla[key][block].float() - start[key][block].float()
    return update


def fold(
    theta0: StateDict, vanilla: StateDict, deltas: Mapping[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """θᵢ,vanilla with θ₀ + Δ written over θ₀'s block of every LLM key (in float32, cast back)."""
    merged = dict(vanilla)
    for key, delta in deltas.items():
        base, out = theta0[key], vanilla[key].clone()
        value = base.float() + delta.to(torch.float32)
        if not torch.isfinite(value).all():
            raise ValueError(f"merge: key {key!r} became NaN/inf")
        out[_block(base.shape)] = value.to(out.dtype)
        merged[key] = out
    return merged


class StageMerge:
    """A registered stage merge. `skips(i)`: θᵢ = θᵢ,vanilla (no merge phase); `reads_history`: the
    merge reads every earlier stage (their checkpoints key the merge phase)."""

    name: str = "stage merge"
    reads_history: bool = True

    def __init__(self, **options: Any):
        if options:
            raise ValueError(f"merge {self.name!r} takes no options, got {sorted(options)}.")

    def options(self) -> dict[str, Any]:
        return {}

    def skips(self, index: int) -> bool:
        return False

    def __call__(self, history: StageHistory) -> dict[str, torch.Tensor]:
        raise NotImplementedError


def _set_name(name: str, cls: type[StageMerge]) -> None:
    cls.name = name


STAGE_MERGES: Registry[type[StageMerge]] = Registry("merge", base=StageMerge, on_register=_set_name)


def build_stage_merge(spec: str | Mapping[str, Any], where: str = "merge") -> StageMerge:
    """`merge: <name>` or `merge: {method: <name>, <options>}` as a `StageMerge` (errors name `where`)."""
    if isinstance(spec, str):
        name, options = spec, {}
    elif isinstance(spec, Mapping) and isinstance(spec.get("method"), str):
        name, options = spec["method"], {k: v for k, v in spec.items() if k != "method"}
    else:
        raise ValueError(f"{where}: a merge name or {{method: <name>, <options>}}, got {spec!r}.")
    cls = STAGE_MERGES.get(name, where=where)
    try:
        return cls(**options)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{where}: {err}") from None


@STAGE_MERGES.register("none")
class NoMerge(StageMerge):
    reads_history = False

    def skips(self, index: int) -> bool:
        return True


@STAGE_MERGES.register("mera")
class MERAMerge(StageMerge):
    """The paper's merge, through `mera.mera_merge_state_dict` (stage 1: θ₁ = θ₁,vanilla)."""

    reads_history = False

    def skips(self, index: int) -> bool:
        return index == 1

    def __call__(self, history: StageHistory) -> dict[str, torch.Tensor]:
        from .mera import mera_merge_state_dict

        i = history.index
        return mera_merge_state_dict(
            history.start(i), history.vanilla(i), i, lora_deltas=history.lora_deltas(i), schedule="mera"
        )


WEIGHTINGS: dict[str, Callable[[int], list[float]]] = {
    "ones": lambda i: [1.0] * i,
    "mean": lambda i: [1.0 / i] * i,
    "mera": lambda i: [1.0 / k for k in range(1, i + 1)],
}


class TaskVectorStageMerge(StageMerge):
    """θ₀ + λ · combine(w₁τ₁ … wᵢτᵢ) with the task-vector merge of the same name (`methods/`)."""

    def __init__(
        self,
        density: float | None = None,
        majority_sign_method: str | None = None,
        scale: float = 1.0,
        weights: str = "ones",
    ):
        from .methods.base import get_merge_method

        self.method = get_merge_method(self.name)
        self.method._check(density, majority_sign_method)  # refuse bad options before any training
        if weights not in WEIGHTINGS:
            raise ValueError(f"weights must be one of {sorted(WEIGHTINGS)}, got {weights!r}.")
        if isinstance(scale, bool) or not isinstance(scale, (int, float)):
            raise ValueError(f"scale must be a number, got {scale!r}.")
        self.density, self.majority_sign_method = density, majority_sign_method
        self.scale, self.weights = float(scale), weights

    def options(self) -> dict[str, Any]:
        return {
            "density": self.density,
            "majority_sign_method": self.majority_sign_method,
            "scale": self.scale,
            "weights": self.weights,
        }

    def __call__(self, history: StageHistory) -> dict[str, torch.Tensor]:
        i = history.index
        theta0 = base_llm(history)
        updates = [stage_update(history, k, theta0) for k in range(1, i + 1)]
        weights = WEIGHTINGS[self.weights](i)
        deltas = {}
        for key in theta0:
            mixed = self.method.combine(
                [u[key] for u in updates],
                weights,
                density=self.density,
                majority_sign_method=self.majority_sign_method,
            )
            deltas[key] = self.scale * mixed
        return fold(theta0, history.vanilla(i), deltas)


for _name in ("task_arithmetic", "magnitude_prune", "ties", "dare_linear", "dare_ties"):
    STAGE_MERGES.register(_name)(
        type(f"{_name.title().replace('_', '')}StageMerge", (TaskVectorStageMerge,), {})
    )


@STAGE_MERGES.register("lpm")
class LPMStageMerge(StageMerge):
    """MAny's Low-rank Parameter Merging over the stages (`lpm.py`): per linear, ΔWᵢ minimises
    Σₖ ||Xₖ(ΔWₖ,stage − ΔW)ᵀ||² (+ ridge), recursively; weights without a Gram (embeddings, norms)
    take MERA's 1/i average."""

    def __init__(self, ridge: float | None = None, gram_samples: int = 64, normalize: bool = True):
        from .lpm import DEFAULT_RIDGE

        if isinstance(gram_samples, bool) or not isinstance(gram_samples, int) or gram_samples < 1:
            raise ValueError(f"gram_samples must be a positive int, got {gram_samples!r}.")
        self.ridge = DEFAULT_RIDGE if ridge is None else float(ridge)
        self.gram_samples, self.normalize = gram_samples, bool(normalize)

    def options(self) -> dict[str, Any]:
        return {"ridge": self.ridge, "gram_samples": self.gram_samples, "normalize": self.normalize}

    def skips(self, index: int) -> bool:
        return index == 1  # ΔW₁ = τ₁ whatever G₁: θ₁ = θ₁,vanilla

    def __call__(self, history: StageHistory) -> dict[str, torch.Tensor]:
        from .lpm import lpm_merge_state_dict

        i = history.index
        theta0 = base_llm(history)
        linear = [k for k, v in theta0.items() if k.endswith(".weight") and v.dim() == 2 and "embed" not in k]
        states = None
        for k in range(1, i + 1):
            grams = history.grams(k, linear, self.gram_samples, self.normalize)
            update = stage_update(history, k, theta0)
            # Gₖ is over the layer's full input; θ₀'s block of an output-growing weight keeps it.
            states = lpm_merge_state_dict(states, update, grams, ridge=self.ridge, deltas_from="merged")
        return fold(theta0, history.vanilla(i), {k: s.delta for k, s in states.items()})


__all__ = [
    "STAGE_MERGES",
    "StageHistory",
    "StageMerge",
    "base_llm",
    "build_stage_merge",
    "fold",
    "llm_keys",
    "stage_update",
]
