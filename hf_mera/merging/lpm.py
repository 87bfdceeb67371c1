"""LPM, MAny's Low-rank Parameter Merging, as recursive least squares: OUR derivation (see the end).

One linear layer y = W x, W ∈ R^{out×in}, base weight W₀ (θ₀). Stage k's model has W₀ + ΔW_k (for LoRA
exactly B_k·A_k·scaling, `lora.lora_delta_weights`); X_k ∈ R^{N_k×in} stacks the layer's inputs on stage
k's data (one row per token) and G_k = X_kᵀX_k is their Gram matrix. The merged delta after n stages
makes the merged layer reproduce every stage's layer output on that stage's inputs (RegMean's objective,
solved over the stages seen so far):

    ΔW_n = argmin_ΔW  Σ_{k≤n} ||X_k ΔW_kᵀ − X_k ΔWᵀ||²_F + ε_k ||ΔW_k − ΔW||²_F

Zero gradient: Σ_k (ΔW − ΔW_k) G̃_k = 0 with G̃_k = G_k + ε_k I, so

    ΔW_n = (Σ_{k≤n} ΔW_k G̃_k) S_n⁻¹,      S_n = Σ_{k≤n} G̃_k.

Recursion (RLS). ΔW_n S_n = ΔW_{n−1} S_{n−1} + ΔW_n^stage G̃_n and S_{n−1} = S_n − G̃_n give

    S_n  = S_{n−1} + G̃_n
    ΔW_n = ΔW_{n−1} + (ΔW_n^stage − ΔW_{n−1}) G̃_n S_n⁻¹          (gain K_n = G̃_n P_n, P_n = S_n⁻¹)

exactly the batch solution at every n (no approximation; "optimal fusion trajectory"), from the previous
merge, the new stage's delta and its Gram alone: no earlier ΔW_k or X_k is kept. We keep S_n, not P_n,
and Cholesky-solve it in float64 each stage, so no explicit inverse (and its rounding) is carried across
stages; Woodbury's update of P_n only pays when a stage has fewer tokens than `in` and its X_n is kept.
S_n and ΔW_n are stored in float32 (float64 if given float64).

MERA is the special case G_k = I for every k: G̃_k = (1 + ridge) I, S_n = n (1 + ridge) I, K_n = I / n,

    ΔW_n = ΔW_{n−1} + (ΔW_n^stage − ΔW_{n−1}) / n,

MERA's 1/i running average, for any ridge. (G_k = c_k I gives the c_k-weighted
mean: a Gram sums over tokens, so `input_grams(normalize=True)`, XᵀX / N, weighs every stage the same.)

Ridge. ε_k = ridge · mean(diag G_k), added to each stage's own Gram, pulls ΔW toward that stage's ΔW_k (not
toward 0, i.e. back to θ₀): along input directions no stage excited, ΔW_n is the ε_k-weighted mean of the
ΔW_k, MERA's average again. Default 1e-3 (the brief suggested ~1e-4): directions carrying at least the mean
eigenvalue of G_k move by ≤ 0.1 %, while cond(S_n) ≲ in / ridge (4·10⁶ at in = 4096) leaves a margin of a few
times over the rounding of a float32-stored S_n (≈ 6·10⁻⁸ · tr S_n); at 1e-4 that rounding can exceed ε.
ridge = 0 is the plain least-squares merge; from stage 2 on it needs Σ G_k positive definite.

Symbols → arguments (`LPMState.update`, `lpm_merge_state_dict`):

    ΔW_n^stage  delta / deltas[key]  the stage's delta from θ₀ (`deltas_from="base"`), or with "merged"
                                     the LoRA trained on the previous merge (MERA's): ΔW_{n−1} + delta
    G_n         gram / grams[key]    X_nᵀX_n of the layer's inputs (`input_grams`); None: 1/n fallback
    ε_n         ridge                relative to mean(diag G_n)
    S_n         LPMState.gram        Σ_k G̃_k (in × in)
    ΔW_n        LPMState.delta       the merged delta; the merged weight is W₀ + ΔW_n (`lpm_fold`)
    n           LPMState.count       stages merged so far

MAny (Gao et al., "MAny: Merge Anything for Multimodal Continual Instruction Tuning"): LPM and CPM
(`cpm.py`). MAny has no public code and only its abstract was available to us. The abstract says: LPM "recursively
merg[es] low-rank weight matrices", "leveraging recursive least squares" for "a closed-form solution";
CPM "adaptively merg[es] cross-modal visual representations via visual-prototype guidance"; both are
training-free CPU algebra. Everything in `lpm.py` and `cpm.py` is therefore OUR derivation of those
sentences, not the paper's equations; the assumptions are listed at the end.

Assumptions (ours, none confirmed by the paper):
1. LPM's objective is RegMean's layer-output least squares over the stages so far, and "recursive least
   squares" is the exact recursion in `lpm.py`; ΔW is merged as the full product B·A·scaling (as MERA's exact
   LoRA path does), so the merge is in general not of rank r. Whether MAny re-factorises it is unknown.
2. G_k is taken on stage k's own model (θ₀ + ΔW_k) with stage k's data, i.e. the inputs that stage's
   outputs were produced from; `input_grams` computes it for whichever model it is given.
3. The ridge is per stage and toward the stage's own delta (our choice; see `lpm.py`).
4. CPM mixes connector outputs per sample (for a linear connector this equals mixing its parameters with
   the same weights, since Σ_k w_k = 1); pooling is the mean over tokens; prototypes are means of
   L2-normalised pooled features; the similarity is cosine and the weights a softmax with temperature τ.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from .base import (
    StageHistory,
    StageMerge,
    fold,
    llm_keys,
    once_per_tied_group,
    register_merge,
    task_vector,
    tied_groups,
    writable_keys,
)
from .lora import peft_key_to_model_key

StateDict = Mapping[str, torch.Tensor]
DeltasFrom = Literal["base", "merged"]
DEFAULT_RIDGE = 1e-3


def _check_ridge(ridge: float) -> float:
    ridge = float(ridge)
    if not (ridge >= 0 and ridge < float("inf")):  # also rejects NaN
        raise ValueError(f"LPM: ridge must be a finite number >= 0, got {ridge}")
    return ridge


def _storage_dtype(*tensors: torch.Tensor | None) -> torch.dtype:
    # At least float32 (a bf16 Gram summed over many tokens is useless); float64 stays float64.
    dtype = torch.float32
    for t in tensors:
        if t is not None:
            dtype = torch.promote_types(dtype, t.dtype)
    return dtype


@dataclass(frozen=True)
class LPMState:
    """LPM's state for one weight after `count` stages; `LPMState()` is the state before stage 1.

    Attributes:
        delta: ΔW_n, the merged delta from θ₀ (None before stage 1).
        gram: S_n = Σ_k (G_k + ε_k I), in × in; None for a weight merged by the 1/n fallback.
        count: n, the number of stages merged.
    """

    delta: torch.Tensor | None = None
    gram: torch.Tensor | None = None
    count: int = 0

    def update(
        self,
        delta: torch.Tensor,
        gram: torch.Tensor | None,
        *,
        ridge: float = DEFAULT_RIDGE,
        deltas_from: DeltasFrom = "base",
        key: str = "weight",
    ) -> LPMState:
        """The state after one more stage n.

            S_n = S_{n−1} + G̃_n,    ΔW_n = ΔW_{n−1} + (ΔW_n^stage − ΔW_{n−1}) G̃_n S_n⁻¹

        Args:
            delta: stage n's delta, [out, in] when `gram` is given (any shape for the fallback).
            gram: G_n = X_nᵀX_n, [in, in], symmetric positive semi-definite. None: MERA's 1/n average
                for weights without a Gram (biases, layers not hooked); a
                weight must use the same path at every stage.
            ridge: ε_n / mean(diag G_n), >= 0 (see the module docstring).
            deltas_from: "base": `delta` is θ_n,vanilla − θ₀; "merged": `delta` was trained on top of
                the previous merge (θ_n,vanilla − θ_{n−1}, MERA's LoRA pipeline), so
                ΔW_n^stage = ΔW_{n−1} + delta.
            key: the weight's name, for error messages.

        Returns:
            A new `LPMState`; `self` is not modified.

        Raises:
            ValueError: shapes that do not fit (naming `key`), NaN / inf, a zero Gram, a Gram given at one
                stage but not another, S_n not positive definite (ridge 0 with too little data).
        """
        ridge = _check_ridge(ridge)
        if deltas_from not in ("base", "merged"):
            raise ValueError(f"LPM: deltas_from must be 'base' or 'merged', got {deltas_from!r}")
        if not isinstance(delta, torch.Tensor) or not delta.is_floating_point():
            raise ValueError(f"LPM: ΔW for key {key!r} must be a floating-point tensor")
        if not torch.isfinite(delta).all():
            raise ValueError(f"LPM: ΔW for key {key!r} holds NaN/inf")
        previous = self.delta
        if previous is not None:
            if delta.shape != previous.shape:
                raise ValueError(
                    f"LPM: ΔW for key {key!r} has shape {tuple(delta.shape)}, "
                    f"the merged ΔW {tuple(previous.shape)}"
                )
            if (gram is None) != (self.gram is None):
                raise ValueError(
                    f"LPM: key {key!r} was merged {'without' if self.gram is None else 'with'} a Gram "
                    "before; give one at every stage or at none"
                )
        dtype = _storage_dtype(delta, gram, previous, self.gram)
        stage = delta.to(dtype)
        if previous is not None:
            previous = previous.to(device=stage.device, dtype=dtype)
            if deltas_from == "merged":
                stage = previous + stage
        count = self.count + 1
        if gram is None:
            # MERA's 1/n running average, in the storage dtype: ΔW_{n−1} + (ΔW_n^stage − ΔW_{n−1}) / n.
            merged = stage.clone() if previous is None else previous + (1.0 / count) * (stage - previous)
            return LPMState(delta=merged, gram=None, count=count)

        g_tilde = _regularised_gram(gram, stage, ridge, key).to(dtype)
        if previous is None:
            # n = 1: ΔW_1 = ΔW_1^stage G̃_1 G̃_1⁻¹ = ΔW_1^stage, exactly (no solve, no rounding).
            return LPMState(delta=stage.clone(), gram=g_tilde, count=count)
        accumulated = self.gram.to(device=stage.device, dtype=dtype) + g_tilde
        # (ΔW_n^stage − ΔW_{n−1}) G̃_n S_n⁻¹ in float64: S_n's condition number can reach in / ridge.
        residual = (stage.double() - previous.double()) @ g_tilde.double()
        factor, info = torch.linalg.cholesky_ex(accumulated.double())
        if info.item() != 0:
            raise ValueError(
                f"LPM: the accumulated Gram of key {key!r} is not positive definite after {count} stages; "
                f"use ridge > 0 (got {ridge})"
            )
        # S_n is symmetric: X S_n = R  ⇔  S_n Xᵀ = Rᵀ.
        step = torch.cholesky_solve(residual.T, factor).T
        merged = (previous.double() + step).to(dtype)
        if not torch.isfinite(merged).all():
            raise ValueError(f"LPM: merging key {key!r} produced NaN/inf")
        return LPMState(delta=merged, gram=accumulated, count=count)


def _regularised_gram(gram: torch.Tensor, delta: torch.Tensor, ridge: float, key: str) -> torch.Tensor:
    """G̃ = (G + Gᵀ)/2 + ridge · mean(diag G) · I, float64, on delta's device."""
    if not isinstance(gram, torch.Tensor) or not gram.is_floating_point():
        raise ValueError(f"LPM: the Gram for key {key!r} must be a floating-point tensor")
    if delta.dim() != 2:
        raise ValueError(
            f"LPM: ΔW for key {key!r} must be 2-D [out, in] to use a Gram, got shape {tuple(delta.shape)}"
        )
    in_features = delta.shape[1]
    if gram.shape != (in_features, in_features):
        raise ValueError(
            f"LPM: the Gram for key {key!r} has shape {tuple(gram.shape)}, expected "
            f"({in_features}, {in_features}) for ΔW of shape {tuple(delta.shape)}"
        )
    g = gram.to(device=delta.device, dtype=torch.float64)
    if not torch.isfinite(g).all():
        raise ValueError(f"LPM: the Gram for key {key!r} holds NaN/inf")
    # XᵀX from a blocked matmul is symmetric only up to rounding; Cholesky reads one triangle.
    g = (g + g.T) / 2
    scale = g.diagonal().mean()
    if not scale > 0:
        raise ValueError(f"LPM: the Gram for key {key!r} is zero: the layer saw no input tokens")
    return g + (ridge * scale) * torch.eye(in_features, dtype=g.dtype, device=g.device)


def lpm_merge_state_dict(
    previous_state: Mapping[str, LPMState] | None,
    deltas: StateDict,
    grams: StateDict,
    *,
    ridge: float = DEFAULT_RIDGE,
    deltas_from: DeltasFrom = "base",
) -> dict[str, LPMState]:
    """One LPM stage over many weights: `previous_state[key].update(deltas[key], grams.get(key))`.

    Args:
        previous_state: the states after stage n − 1 (None or {} before stage 1).
        deltas: ΔW_n per weight key (e.g. `lora_delta_weights(peft_model)`); the same keys at every stage.
        grams: G_n per weight key (`input_grams`). A key of `deltas` without a Gram is merged by MERA's 1/n
            running average instead (at every stage: the path of a key cannot change).
        ridge, deltas_from: as in `LPMState.update`.

    Returns:
        {key: LPMState} after stage n; `lpm_fold(base, states)` gives the merged weights.

    Raises:
        ValueError: a Gram without a ΔW, keys that differ from the previous stage's, states of unequal
            stage counts, and everything `LPMState.update` raises; each names the key.
    """
    previous_state = dict(previous_state or {})
    for key in grams:
        if key not in deltas:
            raise ValueError(f"LPM: a Gram was given for key {key!r}, which has no ΔW")
    if previous_state:
        missing = sorted(set(previous_state) - set(deltas))
        extra = sorted(set(deltas) - set(previous_state))
        if missing or extra:
            first = (missing or extra)[0]
            raise ValueError(
                f"LPM: stage keys differ from the previous stage's at key {first!r} "
                f"(missing ΔW: {missing[:5]}, new: {extra[:5]})"
            )
        counts = {state.count for state in previous_state.values()}
        if len(counts) != 1:
            key = min(previous_state, key=lambda k: previous_state[k].count)
            raise ValueError(f"LPM: previous states have unequal stage counts {sorted(counts)} (key {key!r})")
    return {
        key: previous_state.get(key, LPMState()).update(
            delta, grams.get(key), ridge=ridge, deltas_from=deltas_from, key=key
        )
        for key, delta in deltas.items()
    }


def lpm_fold(base: StateDict, states: Mapping[str, LPMState]) -> dict[str, torch.Tensor]:
    """W₀ + ΔW_n for each key of `states`, in float32 and cast back to the base's dtype; other keys as is."""
    merged = dict(base)
    for key, state in states.items():
        if key not in base:
            raise ValueError(f"LPM: key {key!r} has no weight in the base state dict")
        if state.delta is None:
            raise ValueError(f"LPM: key {key!r} has an empty state (no stage merged)")
        weight = base[key]
        if weight.shape != state.delta.shape:
            raise ValueError(
                f"LPM: key {key!r}: weight {tuple(weight.shape)}, merged ΔW {tuple(state.delta.shape)}"
            )
        delta = state.delta.to(
            device=weight.device, dtype=torch.promote_types(state.delta.dtype, torch.float32)
        )
        merged[key] = (weight.to(delta.dtype) + delta).to(weight.dtype)
    return merged


def _linear_modules(model: nn.Module, weight_names: Sequence[str]) -> dict[str, nn.Linear]:
    # Module names as the plain model's: a PeftModel's "base_model.model.….q_proj.base_layer" (the
    # nn.Linear that LoRA wraps, which receives the same input) maps to "….q_proj".
    by_name: dict[str, nn.Linear] = {}
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            plain = peft_key_to_model_key(f"{name}.weight")
            if plain is not None:
                by_name.setdefault(plain, module)
    if isinstance(weight_names, str):
        raise ValueError("input_grams: weight_names must be a sequence of names, not one string")
    found: dict[str, nn.Linear] = {}
    for key in weight_names:
        if key in found:
            raise ValueError(f"input_grams: weight name {key!r} is listed twice")
        if key not in by_name:
            raise ValueError(f"input_grams: no nn.Linear owns weight {key!r} in the model")
        found[key] = by_name[key]
    if not found:
        raise ValueError("input_grams: weight_names is empty")
    return found


def _to_device(value: Any, device: torch.device) -> Any:
    return value.to(device) if isinstance(value, torch.Tensor) else value


def input_grams(
    model: nn.Module,
    batches: Iterable[Mapping[str, Any]],
    weight_names: Sequence[str],
    *,
    dtype: torch.dtype = torch.float32,
    normalize: bool = False,
    progress: bool = False,
) -> dict[str, torch.Tensor]:
    """G = XᵀX of the inputs of the nn.Linear layers owning `weight_names`, over every token of `batches`.

    Runs `model(**batch)` under `torch.no_grad()` in eval mode (dropout would change the inputs; the
    previous mode is restored), with a forward pre-hook per layer; the hooks are removed when it returns or
    raises. Tensors in a batch are moved to the device of the model's first parameter.

    Tokens: the layer input [..., in] is flattened over its leading dims. When the batch has an
    `attention_mask` whose shape equals those leading dims (an LLM layer's [B, T]), only the tokens where
    it is nonzero are counted, so padding does not enter G. Where the shapes differ (a vision tower, or an
    LLM whose sequence grew by spliced-in modality tokens) every token is counted, padding included; pass
    batches without padding (or batch size 1) if that matters. A layer called several times in one
    forward counts every call.

    Args:
        model: a torch model (a PeftModel works: names are matched as the plain model's keys).
        batches: an iterable of keyword-argument dicts for `model`.
        weight_names: plain weight keys, e.g. "model.layers.0.self_attn.q_proj.weight".
        dtype: accumulation dtype of G (each batch's XᵀX is computed in it). float32 by default (an
            in × in Gram per layer; float64 doubles the memory), float64 for very many tokens.
        normalize: return XᵀX / N (N the tokens counted), so that each stage weighs the same in LPM
            whatever its data size (the sum weighs a stage by its tokens).
        progress: show a tqdm progress bar.

    Returns:
        {weight_name: G}, [in, in], on the CPU (LPM's algebra runs there).

    Raises:
        ValueError: a name with no nn.Linear, a batch that is not a mapping, no batches, or a layer that
            saw no token (named).
    """
    if dtype not in (torch.float32, torch.float64):
        raise ValueError(f"input_grams: dtype must be torch.float32 or torch.float64, got {dtype}")
    layers = _linear_modules(model, weight_names)
    grams: dict[str, torch.Tensor] = {}
    tokens = dict.fromkeys(layers, 0)
    current: dict[str, torch.Tensor | None] = {"mask": None}

    def make_hook(key: str, in_features: int):
        def hook(module: nn.Module, args: tuple[Any, ...]) -> None:
            if not args or not isinstance(args[0], torch.Tensor):
                raise ValueError(
                    f"input_grams: layer of {key!r} was called without a positional tensor input"
                )
            x = args[0].detach()
            mask = current["mask"]
            if mask is not None and tuple(x.shape[:-1]) == tuple(mask.shape):
                x = x[mask.to(x.device)]
            x = x.reshape(-1, in_features).to(dtype)
            gram = x.T @ x
            grams[key] = gram if key not in grams else grams[key].add_(gram)
            tokens[key] += x.shape[0]

        return hook

    first = next(model.parameters(), None)
    device = first.device if first is not None else torch.device("cpu")
    was_training = model.training
    handles = []
    try:
        for key, layer in layers.items():
            handles.append(layer.register_forward_pre_hook(make_hook(key, layer.in_features)))
        model.eval()
        seen = 0
        from tqdm.auto import tqdm  # lazy, as elsewhere in the package

        with torch.no_grad():
            for batch in tqdm(batches, desc="input Grams", disable=not progress):
                if not isinstance(batch, Mapping):
                    raise ValueError(
                        f"input_grams: each batch must be a dict of model inputs, got {type(batch)}"
                    )
                batch = {name: _to_device(value, device) for name, value in batch.items()}
                mask = batch.get("attention_mask")
                current["mask"] = mask.bool() if isinstance(mask, torch.Tensor) else None
                model(**batch)
                seen += 1
    finally:
        for handle in handles:
            handle.remove()
        current["mask"] = None
        model.train(was_training)
    if seen == 0:
        raise ValueError("input_grams: batches is empty")
    for key, count in tokens.items():
        if count == 0:
            raise ValueError(f"input_grams: the layer of {key!r} saw no token (not reached by the forward?)")
    return {key: (grams[key] / tokens[key] if normalize else grams[key]).cpu() for key in layers}


@register_merge("lpm")
class LPMMerge(StageMerge):
    """MAny's Low-rank Parameter Merging over the stages: per linear, ΔWᵢ minimises
    Σₖ ||Xₖ(ΔWₖ,stage − ΔW)ᵀ||² (+ ridge), recursively; weights without a Gram (embeddings, norms)
    take MERA's 1/i average. ΔWₖ,stage is stage k's task vector θₖ,vanilla − θ₀ (`base.task_vector`,
    `deltas_from="base"`; with LoRA (θₖ,start − θ₀) + Bₖ·Aₖ·scaling): every stage of our curriculum
    trains on top of the previous merge, so this is the delta of the model stage k produced, the same
    as ΔWₖ₋₁ + the stage's increment (`deltas_from="merged"`) without the rounding of the stored θₖ₋₁.
    Its identity-Gram case is MERA. Stage 1 is the expert (`skips(1)`: ΔW₁ = τ₁ whatever G₁).

    Tied weights follow the embedding's rule. A tied group (the tiny Llama's `lm_head.weight` is its
    `embed_tokens.weight`) is one parameter and is merged once, by MERA's 1/i average, not by the
    `lm_head` Gram rule: MAny's LPM merges "low-rank weight matrices", the LoRA modules of the LLM's
    linear layers (its abstract; the paper's code is not public), and neither the embedding nor the
    `lm_head` carries LoRA there; and the Gram of the `lm_head`'s inputs (final hidden states) says how
    the matrix is read as an output layer only, nothing about its rows as input embeddings, whose
    least-squares weighting (token counts) would differ. 1/i, the identity-Gram case, treats both roles
    alike. An untied `lm_head` keeps its Gram rule.

    Options: `ridge` (ε / mean(diag G), default 1e-3), `gram_samples` (rows of Dₖ its input Grams Gₖ are
    taken on, through θₖ,vanilla), `normalize` (Gₖ = XᵀX / N, so that each stage weighs the same).
    """

    help = "θ₀ + ΔWᵢ, MAny's recursive least-squares merge on each layer's input Grams (ours, `lpm.py`)"
    # Task vectors from θ₀ and tied weights merged once by 1/i (#17); part of its phase description.
    protocol = "theta0-task-vectors"

    def __init__(self, ridge: float | None = None, gram_samples: int = 64, normalize: bool = True):
        if isinstance(gram_samples, bool) or not isinstance(gram_samples, int) or gram_samples < 1:
            raise ValueError(f"gram_samples must be a positive int, got {gram_samples!r}.")
        self.ridge = DEFAULT_RIDGE if ridge is None else _check_ridge(ridge)
        self.gram_samples, self.normalize = gram_samples, bool(normalize)

    def options(self) -> dict[str, Any]:
        return {"ridge": self.ridge, "gram_samples": self.gram_samples, "normalize": self.normalize}

    def skips(self, index: int) -> bool:
        return index == 1  # ΔW₁ = τ₁ whatever G₁: θ₁ = θ₁,vanilla

    def tensors(self, history: StageHistory) -> Iterator[tuple[str, torch.Tensor]]:
        i = history.index
        start, vanilla = history.start(1), history.vanilla(i)
        theta0 = set(llm_keys(start))
        group = tied_groups(vanilla, [k for k in vanilla.keys() if k in theta0])
        members = Counter(group.values())
        linear = [
            k
            for k in group
            if members[group[k]] == 1 and k.endswith(".weight") and _dim(start, k) == 2 and "embed" not in k
        ]
        # The Grams are small (in × in per linear); the weights are then read one key at a time.
        grams = [history.grams(k, linear, self.gram_samples, self.normalize) for k in range(1, i + 1)]
        writable = writable_keys(vanilla)

        def merge(key: str, tensor: torch.Tensor) -> torch.Tensor:
            base = start[key]
            state = LPMState()
            for k in range(1, i + 1):
                # Gₖ is over the layer's full input; θ₀'s block of an output-growing weight keeps it.
                state = state.update(
                    task_vector(history, k, key, base),
                    grams[k - 1].get(key),
                    ridge=self.ridge,
                    deltas_from="base",
                    key=key,
                )
            return fold(base, state.delta, 1.0, tensor, writable(key), key)

        yield from once_per_tied_group(vanilla, group, merge)


def _dim(state: StateDict, key: str) -> int:
    shape = getattr(state, "shape_of", None)
    return len(shape(key)) if shape is not None else state[key].dim()


__all__ = ["DEFAULT_RIDGE", "LPMMerge", "LPMState", "input_grams", "lpm_fold", "lpm_merge_state_dict"]
