"""Online EWC (Kirkpatrick et al. 2017; Schwarz et al. 2018), the paper's regularisation baseline
(section 5.1, appendix C.3).

After stage i the diagonal Fisher information of the autoregressive loss L is estimated at θᵢ on a
random 1 % of Dᵢ and added to the Fisher of the earlier stages; stage i+1 then trains on

    L*(θ, x) = L(θ, x) + λ/2 · Σⱼ₌₁..ᵢ Fⱼ ⊙ (θ − θᵢ)²

=========================  =========================================================================
paper                      here
=========================  =========================================================================
Fⱼ = E_x[∇L(θⱼ,x)²]        `fisher_diagonal`: squared per-sample gradients (batch size 1) of the
                           model's loss (mean over answer tokens), averaged over the sample
"1 % size subset of Dⱼ"    `fisher_fraction` of the stage's training rows (at least one, at most
                           `max_fisher_samples`), drawn with the run's seed
Σⱼ Fⱼ                      `self.fisher`, float32, summed online at each `on_stage_end`
θᵢ (θ_{i-1} in C.3)        `self.anchor`: the weights at the end of the latest stage
λ                          `lambda_` (1 by default, as in the paper)
=========================  =========================================================================

**Which parameters.** The modality-agnostic LLM's weights that the stage trained, read from the
model the trainer hands to `loss_penalty` (a stage never driven by a trainer falls back to every LLM
parameter). Encoders are always frozen; connectors are modality-specific (an earlier modality's is
frozen in later stages, so its term would be zero, and the new one has no Fisher yet), so neither
is covered. For a Llama:

- with LoRA (the paper's setting): the ``weight`` of every LoRA'd linear of every decoder layer,
  i.e. ``q_proj``, ``k_proj``, ``v_proj``, ``o_proj``, ``gate_proj``, ``up_proj``, ``down_proj``
  (`trainers.instruction_tuning.lora_target_modules`). The Fisher is over the full matrix W, and
  since stage i+1's LoRA sits on θᵢ, θ − θᵢ = B·A·scaling exactly, so the penalty's gradient reaches
  the LoRA factors. ``embed_tokens``, the RMSNorms and ``lm_head`` are frozen under LoRA (θ = θᵢ,
  a zero term), so they get no Fisher and cost no memory.
- full fine-tuning: every LLM parameter, i.e. the linears above, the RMSNorm weights,
  ``embed_tokens`` (with ``lm_head`` when the two are tied) and an untied ``lm_head``. The
  placeholder row the next modality adds to the embeddings has no Fisher, like its connector.

**Sharded training** (`accelerate launch`): the Fisher and anchor are taken after training from the
whole model the trainer gathers (`trainers.distributed`), identically on every process, so they are
whole tensors equal to the unsharded ones under every engine. The penalty reads whole tensors too:

- FSDP2: `whole` all-gathers a `DTensor` (`full_tensor()`, differentiable), the gradient flows back
  to each shard;
- DeepSpeed ZeRO-3: a parameter is partitioned outside its module's forward, and a copy gathered
  with `deepspeed.zero.GatheredParameters` carries no autograd history back to the partition. So each
  term is computed inside that gather together with its exact gradient (`precomputed_grad`: one
  `torch.autograd.grad` on the whole tensors), and the penalty enters the loss as a node whose
  backward returns that saved gradient without reading the weights again. Autograd adds it to the
  model's own gradient in the parameter's one `AccumulateGrad`, so ZeRO-3 reduce-scatters the sum
  once, as for any weight: exact (the same arithmetic as without sharding), and the logged
  `plugin_penalty` is the whole penalty. Cost per step: one more all-gather of the covered weights
  (term by term, so one weight at a time) and their whole gradients kept until backward (LoRA: the
  factors; full fine-tuning: the LLM's size in its dtype, beside the Fisher and anchor every process
  already holds whole).

DDP and ZeRO-2 keep whole weights: the plain path.

Memory: Fisher (float32) plus anchor (the weights' dtype) of the covered weights, e.g. about
12 bytes per parameter for a float32 LLM; `state_nbytes()` reports it and each stage logs it.
The state is `state_dict()`, which the stage loop saves with each stage's checkpoint.
"""

from __future__ import annotations

import logging
import math
import weakref
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

import torch

from .base import ContinualPlugin, StageContext, register_plugin

if TYPE_CHECKING:
    from datasets import Dataset
    from torch import nn

logger = logging.getLogger(__name__)

# Plain-model parameter names of the modality-agnostic LLM (`AnyModalityLlava`).
LLM_PREFIXES = ("model.language_model.", "lm_head.")


def _to_device(value: Any, device: torch.device) -> Any:
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, Mapping):
        return {k: _to_device(v, device) for k, v in value.items()}
    return value


def fisher_diagonal(
    model: nn.Module,
    rows: Iterable[dict],
    collate: Callable[[list[dict]], dict],
    names: Iterable[str],
) -> dict[str, torch.Tensor]:
    """Fᵢ = mean over `rows` of ∇L(θ, x)² for the parameters `names` of `model` (float32).

    One row per forward and backward (per-sample gradients, not the squared batch gradient), the
    model in eval mode (no dropout); `requires_grad` and the train/eval mode are restored after.
    """
    names = list(names)
    params = dict(model.named_parameters())
    missing = [n for n in names if n not in params]
    if missing:
        raise ValueError(f"Plugin 'ewc': the model has no parameters {missing[:5]}.")
    chosen = [params[n] for n in names]
    flags = [(p, p.requires_grad) for p in model.parameters()]
    was_training = model.training
    device = chosen[0].device
    fisher = [torch.zeros(p.shape, dtype=torch.float32, device=device) for p in chosen]
    count = 0
    model.eval()
    try:
        for p, _ in flags:
            p.requires_grad_(False)
        for p in chosen:
            p.requires_grad_(True)
        for row in rows:
            loss = model(**_to_device(collate([row]), device)).loss
            for f, grad in zip(fisher, torch.autograd.grad(loss, chosen)):
                f.add_(grad.float().square())
            count += 1
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
        model.train(was_training)
    if count == 0:
        raise ValueError("Plugin 'ewc': no sample to estimate the Fisher information on.")
    return {n: f / count for n, f in zip(names, fisher)}


def whole(tensor: torch.Tensor) -> torch.Tensor:
    """The whole tensor behind a parameter sharded by FSDP2 (a `DTensor`: all-gathered, differentiable,
    a collective every process runs in the same order), a plain tensor as it is.

    Under FSDP the penalty is computed on whole tensors, identically on every process, as without
    sharding; its gradient reaches each process's shard (DDP-like: every process adds the same term).
    """
    full_tensor = getattr(tensor, "full_tensor", None)
    if callable(full_tensor):
        return full_tensor()
    if _partitioned(tensor) and tensor.numel() == 0:  # a ZeRO-3 partition: read it inside `_gathered`
        raise ValueError(
            f"Plugin 'ewc': a DeepSpeed ZeRO-3 parameter (ds_id {tensor.ds_id}, shape {tuple(tensor.ds_shape)}) "
            "was read outside deepspeed.zero.GatheredParameters, where it holds no data."
        )
    return tensor


def _partitioned(tensor: torch.Tensor) -> bool:
    """Whether `tensor` is a parameter DeepSpeed ZeRO-3 partitions (it carries a `ds_id`)."""
    return hasattr(tensor, "ds_id")


def _gathered(params: list[torch.Tensor]):
    """Whole ZeRO-3 parameters for the block (`deepspeed.zero.GatheredParameters`: an all-gather every
    process runs in the same order, the partitions restored on exit); nothing to do for others."""
    import contextlib

    if not any(_partitioned(p) for p in params):
        return contextlib.nullcontext()
    import deepspeed

    return deepspeed.zero.GatheredParameters(params, modifier_rank=None)


class _PrecomputedGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, fn, *params):
        with torch.enable_grad():
            value = fn()
            grads = torch.autograd.grad(value, params)
        ctx.save_for_backward(*grads)
        return value.detach()

    @staticmethod
    def backward(ctx, grad_output):
        return (None, *(grad_output * g for g in ctx.saved_tensors))


def precomputed_grad(fn: Callable[[], torch.Tensor], params: list[torch.Tensor]) -> torch.Tensor:
    """`fn()` (a scalar of `params`, which must require grad) as a differentiable node whose gradient
    is computed now, while `params` hold their data, and only replayed in backward (times the
    incoming gradient): backward never reads `params` again, so they may be released (ZeRO-3) in
    between. Exact: the same `torch.autograd.grad` the loss's backward would run. The gradient goes
    to the parameters themselves (their `AccumulateGrad`, where it adds to the model's own); `fn`'s
    graph is freed at once. Memory: one gradient per parameter, kept until backward."""
    return _PrecomputedGrad.apply(fn, *params)


def _term(fisher: torch.Tensor, diff: Callable[[], torch.Tensor], params: list[torch.nn.Parameter]):
    """Σ F ⊙ (θ − θᵢ)² of one weight. Under ZeRO-3 its parameters are gathered for the term and its
    gradient (`precomputed_grad`); elsewhere (one process, DDP, ZeRO-2, FSDP2) plain autograd."""
    if not any(_partitioned(p) for p in params):
        return (fisher * diff().square()).sum()
    with _gathered(params):
        return precomputed_grad(lambda: (fisher * diff().square()).sum(), params)


def _leading(shape: torch.Size) -> tuple[slice, ...]:
    """The index of a tensor's leading block of `shape` (embeddings grow by rows between stages)."""
    return tuple(slice(0, s) for s in shape)


def _grow(tensor: torch.Tensor, shape: torch.Size, key: str) -> torch.Tensor:
    """`tensor` zero-padded to `shape` (the Fisher of rows added since it was estimated is 0)."""
    if tensor.shape == shape:
        return tensor
    if len(shape) != tensor.dim() or any(a > b for a, b in zip(tensor.shape, shape)):
        raise ValueError(f"Plugin 'ewc': {key} changed shape from {tuple(tensor.shape)} to {tuple(shape)}.")
    grown = tensor.new_zeros(shape)
    grown[_leading(tensor.shape)] = tensor
    return grown


@register_plugin("ewc")
class EWCPlugin(ContinualPlugin):
    """Online EWC: λ/2 · Σ F ⊙ (θ − θᵢ)² over the LLM weights trained, F summed over the stages.

    Args:
        lambda_: λ, the penalty's weight (paper: 1).
        fisher_fraction: share of the stage's training rows the Fisher is estimated on (paper: 0.01).
        max_fisher_samples: cap on those rows (None: no cap), to bound the cost of a large Dᵢ.
    """

    def __init__(
        self, lambda_: float = 1.0, fisher_fraction: float = 0.01, max_fisher_samples: int | None = None
    ):
        if isinstance(lambda_, bool) or not isinstance(lambda_, (int, float)) or not lambda_ >= 0:
            raise ValueError(f"Plugin 'ewc': lambda_ must be a number >= 0, got {lambda_!r}.")
        if (
            isinstance(fisher_fraction, bool)
            or not isinstance(fisher_fraction, (int, float))
            or not 0.0 < fisher_fraction <= 1.0
        ):
            raise ValueError(
                f"Plugin 'ewc': fisher_fraction must be a fraction in (0, 1] (0.01 for 1 %), got {fisher_fraction!r}."
            )
        if max_fisher_samples is not None and (
            isinstance(max_fisher_samples, bool)
            or not isinstance(max_fisher_samples, int)
            or max_fisher_samples < 1
        ):
            raise ValueError(
                f"Plugin 'ewc': max_fisher_samples must be a positive integer or None, got {max_fisher_samples!r}."
            )
        self.lambda_ = float(lambda_)
        self.fisher_fraction = float(fisher_fraction)
        self.max_fisher_samples = max_fisher_samples
        self.fisher: dict[str, torch.Tensor] = {}  # Σⱼ Fⱼ, float32, keyed by plain-model names
        self.anchor: dict[str, torch.Tensor] = {}  # θᵢ, the same keys and shapes
        self.num_stages = 0  # how many Fⱼ the sum holds
        self._trained: set[str] | None = None  # LLM weights the current stage trains (loss_penalty)
        self._cache: tuple[weakref.ref, list] | None = None

    # ---- during stage i+1: the penalty ----------------------------------------------------------
    def loss_penalty(self, model: nn.Module, stage: StageContext) -> torch.Tensor | None:
        terms = self._terms(model)
        if not terms:
            return None
        total = sum(_term(fisher, diff, params) for fisher, diff, params in terms)
        return self.lambda_ / 2 * total

    def _terms(
        self, model: nn.Module
    ) -> list[tuple[torch.Tensor, Callable[[], torch.Tensor], list[torch.nn.Parameter]]]:
        """(F, a function giving θ − θᵢ, the trainable parameters it reads) per covered weight that
        trains in `model`, cached per model.

        Scanning the model also records which LLM weights it trains, for this stage's Fisher. Frozen
        weights are left out: their term is a constant with no gradient.
        """
        if self._cache is not None and self._cache[0]() is model:
            return self._cache[1]
        live = dict(self._trainable_llm_weights(model))
        self._trained = set(live)
        terms = []
        for key, fisher in self.fisher.items():
            if key not in live:
                continue
            index = _leading(fisher.shape)
            fisher = self.fisher[key] = fisher.to(_device(live[key]))
            anchor = self.anchor[key] = self.anchor[key].to(fisher.device)
            source = live[key]
            if isinstance(source, torch.Tensor):  # the parameter itself: θ − θᵢ
                diff = lambda p=source, i=index, a=anchor: whole(p)[i].float() - a.float()  # noqa: E731
                terms.append((fisher, diff, [source]))
            else:  # a LoRA'd linear: θ − θᵢ = (W_base − θᵢ) + B·A·scaling, exactly B·A·scaling when W_base = θᵢ
                module, adapter = source
                with _gathered([module.base_layer.weight]):
                    offset = whole(module.base_layer.weight.detach())[index].float() - anchor.float()
                offset = offset if torch.count_nonzero(offset) else None
                diff = lambda m=module, d=adapter, i=index, o=offset: _lora_diff(m, d, i, o)  # noqa: E731
                terms.append((fisher, diff, [module.lora_B[adapter].weight, module.lora_A[adapter].weight]))
        self._cache = (weakref.ref(model), terms)
        return terms

    @staticmethod
    def _trainable_llm_weights(model: nn.Module) -> Iterable[tuple[str, Any]]:
        """(plain-model key, parameter or (LoRA layer, adapter)) for each LLM weight `model` trains."""
        from hf_mera.merging.lora import peft_key_to_model_key

        names = [n for n, _ in model.named_parameters()]
        if any(".lora_A." in n for n in names):
            from peft.tuners.lora import Linear as LoraLinear
            from peft.tuners.lora import LoraLayer

            for name, module in model.named_modules():
                if not isinstance(module, LoraLayer):
                    continue
                key = f"{peft_key_to_model_key(name)}.weight"
                adapters = [a for a in module.active_adapters if a in module.lora_A]
                if not adapters or not key.startswith(LLM_PREFIXES):
                    continue
                if (
                    not isinstance(module, LoraLinear)
                    or len(adapters) > 1
                    or module.use_dora.get(adapters[0])
                ):
                    raise ValueError(
                        f"Plugin 'ewc': {name} is a {type(module).__name__} with adapters {adapters}; "
                        "only single-adapter, non-DoRA LoRA linears have θ − θᵢ = B·A·scaling."
                    )
                yield key, (module, adapters[0])
        for name, param in model.named_parameters():
            key = peft_key_to_model_key(name)
            if param.requires_grad and key is not None and key.startswith(LLM_PREFIXES):
                yield key, param

    # ---- end of stage i: Fᵢ and θᵢ ----------------------------------------------------------------
    def on_stage_end(
        self,
        stage: StageContext,
        model: nn.Module,
        train_dataset: Dataset,
        data_collator: Callable[[list[dict]], dict] | None = None,
    ) -> None:
        """Σ F += Fᵢ on `fisher_fraction` of `train_dataset`, and θᵢ ← the LLM weights of `model`."""
        if data_collator is None:
            raise ValueError(
                "Plugin 'ewc': on_stage_end needs data_collator (the training collator) to run the "
                "model on the stage's rows for the Fisher information."
            )
        params = dict(model.named_parameters())
        llm = [k for k in params if k.startswith(LLM_PREFIXES)]
        # What this stage trained (recorded by loss_penalty); every LLM weight if no trainer ran it.
        keys = llm if self._trained is None else [k for k in llm if k in self._trained]
        count = self.fisher_sample_size(len(train_dataset))
        from hf_mera.data.seeding import seeded_subset

        indices = seeded_subset(
            len(train_dataset), count, stage.seed, "ewc-fisher", stage.index, stage.modality
        )
        rows = (train_dataset[i] for i in indices)
        fisher = fisher_diagonal(model, rows, data_collator, keys) if keys else {}
        for key, f in fisher.items():
            if key in self.fisher:
                f = f + _grow(self.fisher[key].to(f.device), f.shape, key)
            self.fisher[key] = f
        self.anchor = {key: params[key].detach()[_leading(f.shape)].clone() for key, f in self.fisher.items()}
        self.num_stages += 1
        self._trained, self._cache = None, None
        fisher_bytes = sum(f.numel() * f.element_size() for f in self.fisher.values())
        anchor_bytes = sum(a.numel() * a.element_size() for a in self.anchor.values())
        logger.info(
            "ewc: stage %d (%s): Fisher from %d of %d rows over %d tensors (%d parameters), summed over "
            "%d stages; memory %.2f MiB (Fisher %.2f + anchor %.2f)",
            stage.index,
            stage.modality,
            count,
            len(train_dataset),
            len(self.fisher),
            sum(f.numel() for f in self.fisher.values()),
            self.num_stages,
            (fisher_bytes + anchor_bytes) / 2**20,
            fisher_bytes / 2**20,
            anchor_bytes / 2**20,
        )

    def fisher_sample_size(self, n: int) -> int:
        """Rows the Fisher is estimated on for a stage of `n` rows: `fisher_fraction · n` rounded half
        up, at least 1, at most `max_fisher_samples`."""
        if n < 1:
            raise ValueError("Plugin 'ewc': the stage has no training rows to estimate the Fisher on.")
        size = min(n, max(1, math.floor(self.fisher_fraction * n + 0.5)))
        return min(size, self.max_fisher_samples) if self.max_fisher_samples else size

    # ---- state ------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, torch.Tensor]:
        state = {f"fisher.{k}": v for k, v in self.fisher.items()}
        state.update({f"anchor.{k}": v for k, v in self.anchor.items()})
        if self.fisher:
            state["num_stages"] = torch.tensor(self.num_stages)
        return state

    def load_state_dict(self, state: Mapping[str, torch.Tensor]) -> None:
        fisher = {k.removeprefix("fisher."): v for k, v in state.items() if k.startswith("fisher.")}
        anchor = {k.removeprefix("anchor."): v for k, v in state.items() if k.startswith("anchor.")}
        unknown = (
            set(state) - {f"fisher.{k}" for k in fisher} - {f"anchor.{k}" for k in anchor} - {"num_stages"}
        )
        if set(fisher) != set(anchor) or unknown:
            raise ValueError(
                "Plugin 'ewc': a state needs one 'fisher.<key>' and one 'anchor.<key>' per weight and "
                f"'num_stages'; got unmatched or unknown keys {sorted(unknown | (set(fisher) ^ set(anchor)))[:5]}."
            )
        self.fisher, self.anchor = dict(fisher), dict(anchor)
        self.num_stages = int(state["num_stages"]) if "num_stages" in state else 0
        self._trained, self._cache = None, None

    def state_nbytes(self) -> int:
        """Bytes of Σ F and θᵢ (the ``num_stages`` counter aside)."""
        return sum(t.numel() * t.element_size() for t in [*self.fisher.values(), *self.anchor.values()])


def _device(source: Any) -> torch.device:
    return source.device if isinstance(source, torch.Tensor) else source[0].base_layer.weight.device


def _lora_diff(module, adapter: str, index: tuple[slice, ...], offset: torch.Tensor | None) -> torch.Tensor:
    """θ − θᵢ of a LoRA'd linear: B·A·scaling (+ W_base − θᵢ when the base is not θᵢ), float32."""
    delta = whole(module.lora_B[adapter].weight).float() @ whole(module.lora_A[adapter].weight).float()
    delta = delta * module.scaling[adapter]
    delta = (delta.T if module.fan_in_fan_out else delta)[index]
    return delta if offset is None else delta + offset


__all__ = ["EWCPlugin", "fisher_diagonal", "precomputed_grad", "whole"]
