"""Instruction tuning: the LLM (LoRA or full) and the new modality's connector, on captions and QA."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import TYPE_CHECKING

import torch
from torch import nn

from ._common import MultimodalSFTTrainer, check_modalities, resolve_args, train_only
from .configs import InstructionTuningConfig

if TYPE_CHECKING:
    from datasets import Dataset

    from hf_mera.continual.plugins import ContinualPlugin, StageContext


def _linear_types() -> tuple[type[nn.Module], ...]:
    from transformers.pytorch_utils import Conv1D  # GPT-2-style LLMs store their linears as Conv1D

    return (nn.Linear, Conv1D)


def lora_target_modules(model: nn.Module) -> str:
    """A regex (peft full-matches it against module names) selecting every linear module of the LLM.

    E.g. `model\\.language_model\\.(?:.*\\.)?(?:down_proj|gate_proj|...)` for a Llama: the LLM's own
    linears only, never `lm_head` (trl refuses LoRA there), connectors or encoders. Falls back to the
    list of exact names if some non-linear module of the LLM shares a linear's name.
    """
    language_model = model.model.language_model
    prefix = next(name for name, module in model.named_modules() if module is language_model)
    names = [f"{prefix}.{n}" for n, m in language_model.named_modules() if isinstance(m, _linear_types())]
    if not names:
        raise ValueError(f"The LLM ({type(language_model).__name__}) has no linear module to put LoRA on.")
    leaves = sorted({n.rsplit(".", 1)[-1] for n in names})
    pattern = rf"{re.escape(prefix)}\.(?:.*\.)?(?:{'|'.join(map(re.escape, leaves))})"
    matched = {n for n, _ in model.named_modules() if re.fullmatch(pattern, n)}
    if matched != set(names):
        pattern = "|".join(map(re.escape, names))
    return pattern


class InstructionTuningTrainer(MultimodalSFTTrainer):
    """Trains the LLM and `model.model.connectors[modality]`; encoders and other connectors stay frozen.

    The second phase of a stage (paper Table 9 "Fine-tuning", appendix C.1). With `args.use_lora`
    (default), LoRA of rank `lora_r` goes on every linear module of `model.model.language_model`
    (`lora_target_modules`) and the base weights stay frozen; otherwise every weight of the LLM learns
    (`lm_head` too when it is not tied to the input embeddings). The LLM learns at
    `args.learning_rate`, the connector at `args.connector_learning_rate`, in separate optimizer groups.

    The connector under LoRA is unfrozen in place after peft wraps the model, not listed in peft's
    `modules_to_save`: its parameters keep their paths (`...model.connectors.<modality>.*`, and
    `model.connectors.<modality>.*` once unwrapped), no frozen copy of it is kept, and the trained
    weights are in the module itself after `unload()`. (A peft adapter saved with `save_pretrained`
    therefore holds the LoRA factors only; stages are saved as whole models.)

    A method with its own modules in the LLM (PathWeave's adapters) passes them as `train_parameters`
    with `args.use_lora=False`: they train instead of LoRA or the whole LLM, at `args.learning_rate`.

    Continual-learning methods plug in through `plugins`: the sum of their `loss_penalty(model, stage)`
    is added to every training step's loss (`compute_loss`). Their stage hooks are the caller's.

    After `train()`, the LoRA deltas and the plain model come from `unwrap_lora()`; equivalently
    `hf_mera.merging.lora_delta_weights(trainer.model)` then `trainer.model.unload()` (or
    `merge_and_unload()` for θᵢ,vanilla).

    Args:
        model: an `AnyModalityLlava` that already has `modality` (not a `PeftModel`).
        modality: the modality being learned.
        args: an `InstructionTuningConfig` (default: the paper's settings).
        train_dataset: rows of the sample format (`docs/CONTRACTS.md`).
        processing_class: the model's `AnyModalityProcessor`.
        data_collator: default `MultimodalCollator(processing_class, max_length=args.max_length)`.
        plugins: continual-learning plugins whose loss penalties are added.
        stage: where the run stands; required with `plugins`.
        train_parameters: LLM-side parameters to train in place of LoRA or the whole LLM (needs
            `args.use_lora=False`); the connector trains as always, everything else is frozen.
        **kwargs: passed to `SFTTrainer` (not `peft_config`: it follows from `args`).
    """

    config_class = InstructionTuningConfig
    _tag_names = ["trl", "sft", "hf_mera", "instruction-tuning"]

    def __init__(
        self,
        model: nn.Module,
        modality: str,
        args: InstructionTuningConfig | None = None,
        train_dataset: Dataset | None = None,
        processing_class=None,
        data_collator=None,
        plugins: list[ContinualPlugin] | None = None,
        stage: StageContext | None = None,
        train_parameters: Iterable[nn.Parameter] | None = None,
        **kwargs,
    ):
        who = type(self).__name__
        (self.modality,) = check_modalities(model, [modality], who)
        if "peft_config" in kwargs:
            raise ValueError(
                f"{who}: set use_lora / lora_r / lora_alpha / lora_dropout in args, not peft_config."
            )
        self.plugins = list(plugins or [])
        if self.plugins and stage is None:
            raise ValueError(
                f"{who}: plugins {[p.name for p in self.plugins]} need `stage` (a StageContext)."
            )
        self.stage = stage
        args = resolve_args(args, InstructionTuningConfig, who, [modality])
        if train_parameters is not None:
            train_parameters = list(train_parameters)
            if args.use_lora:
                raise ValueError(f"{who}: train_parameters replace LoRA; set use_lora=False in args.")
        peft_config = None
        if args.use_lora:
            from peft import LoraConfig

            peft_config = LoraConfig(
                r=args.lora_r,
                lora_alpha=args.lora_alpha,
                lora_dropout=args.lora_dropout,
                target_modules=lora_target_modules(model),
                bias="none",
            )
        connector = model.model.connectors[modality]
        super().__init__(
            model,
            [modality],
            args,
            train_dataset,
            processing_class,
            data_collator,
            peft_config=peft_config,
            **kwargs,
        )
        # Freezing comes after the argument checks, so a refused call leaves the model as it was;
        # the optimizer only collects trainable parameters when training starts.
        if args.use_lora:
            # peft left only the LoRA factors trainable; the connector learns in place (class docstring).
            connector.requires_grad_(True)
        elif train_parameters is not None:
            train_only(model, [*train_parameters, *connector.parameters()])
        else:
            # `parameters()` yields a tied lm_head once, through the input embeddings.
            llm = [*model.model.language_model.parameters(), *model.lm_head.parameters()]
            train_only(model, [*llm, *connector.parameters()])
        self._connector_parameters = list(connector.parameters())

    def create_optimizer(self, model=None) -> torch.optim.Optimizer:
        """Trainer's optimizer, with the connector's parameters moved into groups of their own that
        learn at `args.connector_learning_rate` (weight decay as Trainer decided)."""
        if self.optimizer is not None:  # given by the caller: keep it as it is
            return self.optimizer
        optimizer = super().create_optimizer(model)
        connector = {id(p) for p in self._connector_parameters}
        connector_groups = []
        for group in optimizer.param_groups:
            moved = [p for p in group["params"] if id(p) in connector]
            if moved:
                group["params"] = [p for p in group["params"] if id(p) not in connector]
                options = {k: v for k, v in group.items() if k != "params"}
                connector_groups.append({**options, "params": moved, "lr": self.args.connector_learning_rate})
        optimizer.param_groups[:] = [g for g in optimizer.param_groups if g["params"]]
        for group in connector_groups:
            optimizer.add_param_group(group)
        return optimizer

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """SFTTrainer's loss plus the plugins' penalties, in training only."""
        result = super().compute_loss(
            model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch
        )
        if not (self.plugins and self.model.training):
            return result
        from hf_mera.continual.plugins import total_penalty

        penalty = total_penalty(self.plugins, self.accelerator.unwrap_model(model), self.stage)
        if penalty is None:
            return result
        loss = result[0] if return_outputs else result
        # The penalty belongs once to each optimizer step. With `num_items_in_batch`, Trainer leaves
        # gradient accumulation to the loss (it does not divide by the accumulation steps), so divide
        # here, as SFTTrainer does for the MoE aux loss. It is not multiplied by the number of
        # processes like the token-averaged loss: each rank adds the same penalty and DDP averages.
        steps = self.current_gradient_accumulation_steps if num_items_in_batch is not None else 1
        loss = loss + penalty / steps
        if self.step_metrics_due():  # a host sync: only on the steps that log it
            self._metrics["train"]["plugin_penalty"].append(penalty.detach().item())
        return (loss, result[1]) if return_outputs else loss

    def unwrap_lora(self, merge: bool = False) -> tuple[dict[str, torch.Tensor], nn.Module]:
        """After `train()`: (ΔW per LLM weight, the plain `AnyModalityLlava`) with LoRA removed.

        ΔW = B·A·scaling in float32, keyed like the plain model's state dict
        ("model.language_model.layers.0.self_attn.q_proj.weight"), as `hf_mera.merging` folds it.
        `merge=False` leaves the base weights as they were before this phase (θᵢ₋₁, ready for
        `θᵢ₋₁ + ΔW / i`); `merge=True` adds ΔW to them (θᵢ,vanilla). The trained connector is kept.
        The trainer's model becomes the plain model.
        """
        from peft import PeftModel

        if not isinstance(self.model, PeftModel):
            raise ValueError(
                f"{type(self).__name__}: use_lora=False, there is no LoRA to unwrap; "
                "the trained model is trainer.model."
            )
        from hf_mera.merging.lora import lora_delta_weights

        deltas = lora_delta_weights(self.model)
        plain = self.model.merge_and_unload() if merge else self.model.unload()
        self.model = self.model_wrapped = plain
        return deltas, plain


__all__ = ["InstructionTuningTrainer", "lora_target_modules"]
