"""What the three phase trainers share: argument checks, freezing, mixed precision, and the collator."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, ClassVar

import torch
from torch import nn
from trl import SFTTrainer

from hf_mera.data.collator import MultimodalCollator

if TYPE_CHECKING:
    from datasets import Dataset


def check_modalities(model: nn.Module, modalities: Sequence[str], who: str) -> list[str]:
    """`modalities` as a list, each known to `model` and given once; else a ValueError naming the culprit."""
    if isinstance(modalities, str):
        modalities = [modalities]
    modalities = list(modalities)
    if not modalities:
        raise ValueError(f"{who}: name at least one modality whose connector to train.")
    known = list(getattr(getattr(model, "model", None), "connectors", {}))
    for name in modalities:
        if name not in known:
            raise ValueError(
                f"{who}: unknown modality {name!r}; the model has connectors for {known or 'none'}."
            )
    repeated = sorted({name for name in modalities if modalities.count(name) > 1})
    if repeated:
        raise ValueError(f"{who}: modality {repeated[0]!r} is listed more than once.")
    return modalities


def check_train_dataset(train_dataset: Dataset | None, who: str, modalities: Sequence[str]) -> None:
    # SFTTrainer reads the first row before anything else, so an empty dataset would surface as a
    # bare StopIteration.
    if train_dataset is None:
        raise ValueError(f"{who}: pass the train_dataset for modality {', '.join(modalities)}.")
    if hasattr(train_dataset, "__len__") and len(train_dataset) == 0:
        raise ValueError(f"{who}: the train_dataset for modality {', '.join(modalities)} is empty.")


def resolve_args(args, config_class: type, who: str, modalities: Sequence[str]):
    """`args`, or the paper's defaults when None; a config of another class is a ValueError."""
    if args is None:
        return config_class(output_dir=f"{who}-{'-'.join(modalities)}")
    if not isinstance(args, config_class):
        raise ValueError(
            f"{who}: args must be a {config_class.__name__} (it keeps the sample-format columns and the "
            f"paper's defaults), got {type(args).__name__}."
        )
    return args


def train_only(model: nn.Module, parameters: Iterable[nn.Parameter]) -> None:
    """Freeze every parameter of `model`, then unfreeze `parameters`.

    Frozen parameters get no gradient and no optimizer state, so they stay bitwise unchanged.
    """
    model.requires_grad_(False)
    for parameter in parameters:
        parameter.requires_grad_(True)


HALF_DTYPES = (torch.bfloat16, torch.float16)


def half_dtype(model: nn.Module) -> torch.dtype | None:
    """The half-precision dtype (bf16 or fp16) `model`'s weights are held in, or None if none is.

    ValueError when both occur: one autocast dtype cannot serve both.
    """
    found = {p.dtype for p in model.parameters() if p.dtype in HALF_DTYPES}
    if len(found) > 1:
        raise ValueError(f"The model mixes bfloat16 and float16 weights; load it in one dtype ({found}).")
    return found.pop() if found else None


def match_mixed_precision(args, half: torch.dtype | None) -> None:
    """Turn on the trainer's autocast in `half` when the frozen weights are held in it.

    A bf16/fp16 choice the caller made stays; only the automatic one (`bf16=None` in the phase
    configs, resolved to "a GPU that supports bf16") is replaced by the weights' own dtype.
    """
    if half is None:
        return
    chosen = args.fp16 or (args.bf16 and not getattr(args, "bf16_auto", False))
    if chosen:
        return
    args.bf16, args.fp16 = half == torch.bfloat16, half == torch.float16
    # TrainingArguments derives `mixed_precision` (what the Accelerator reads) in __post_init__.
    args.mixed_precision = "bf16" if args.bf16 else "fp16"


def upcast_trainable(model: nn.Module) -> list[str]:
    """Keep every trainable half-precision parameter in float32 (in place); returns their names.

    Mixed-precision training as usual: the optimizer updates float32 weights while autocast runs the
    matrix products in half precision. Left in bf16, an Adam step at the paper's connector learning
    rate (2e-5) is below bf16's rounding step (2^-8 relative) for most weights, which would not move.
    Frozen weights stay in half precision: they never take a step.
    """
    names = []
    for name, parameter in model.named_parameters():
        if parameter.requires_grad and parameter.dtype in HALF_DTYPES:
            parameter.data = parameter.data.float()  # same Parameter object: freezing and ties hold
            names.append(name)
    return names


class MultimodalSFTTrainer(SFTTrainer):
    """`SFTTrainer` on rows of the sample format, batched by `hf_mera.data.MultimodalCollator`.

    Subclasses set `config_class` and decide what trains; this class checks the arguments, since the
    model, the processor and the dataset cannot be guessed (no hub download, no text preparation of
    multimodal rows), and sets the precision: when the model is held in bf16 or fp16, the trainer
    autocasts in that dtype (`match_mixed_precision`) and `train()` first moves the trainable
    parameters to float32 (`upcast_trainable`). They stay float32 afterwards, so the trained model
    holds its float32 weights; a checkpoint reloaded in half precision rounds them once.
    """

    config_class: ClassVar[type | None] = None  # the phase's config, set by subclasses

    def __init__(
        self,
        model: nn.Module,
        modalities: Sequence[str],
        args=None,
        train_dataset: Dataset | None = None,
        processing_class=None,
        data_collator=None,
        **kwargs,
    ):
        who = type(self).__name__
        args = resolve_args(args, self.config_class, who, modalities)
        check_train_dataset(train_dataset, who, modalities)
        match_mixed_precision(args, half_dtype(model))
        if processing_class is None:
            raise ValueError(f"{who}: pass processing_class, the model's AnyModalityProcessor.")
        if data_collator is None:
            # SFTConfig's max_length / pad_to_multiple_of apply to the rows this collator builds.
            data_collator = MultimodalCollator(
                processing_class, max_length=args.max_length, pad_to_multiple_of=args.pad_to_multiple_of
            )
        from hf_mera.faults import fault_callback

        if (callback := fault_callback()) is not None:  # HF_MERA_FAULT's per-step kills; None normally
            kwargs["callbacks"] = [*(kwargs.get("callbacks") or []), callback]
        super().__init__(
            model=model,
            args=args,
            data_collator=data_collator,
            train_dataset=train_dataset,
            processing_class=processing_class,
            **kwargs,
        )
        self._install_lean_head()

    def train(self, *args, **kwargs):
        # Here, not in __init__: subclasses (and peft) decide what trains after this class's __init__,
        # and the optimizer collects the parameters only now.
        upcast_trainable(self.model)
        from .distributed import gather_trained_model, is_sharded, run_absent_modalities, skeleton_factory

        skeleton = skeleton_factory(self.model)  # before the model is sharded: its class and config
        backbone = run_absent_modalities(self)
        try:
            result = super().train(*args, **kwargs)
        finally:
            if backbone is not None:
                backbone.run_absent_modalities(None)
        if is_sharded(self):
            # Everything after training (saving, LoRA's ΔW, EWC's Fisher) needs whole tensors.
            self.model = self.model_wrapped = gather_trained_model(self, skeleton)
        return result

    # ---- per-step metrics at logging steps only ---------------------------------------------------
    # trl 1.16's `SFTTrainer.compute_loss` computes the entropy and the token accuracy of every batch
    # (extra passes over the [tokens, vocab] tiles in its fused LM head, three gathers and host syncs
    # per step) and averages them at logging time; nothing reads them in between. With
    # `args.step_metrics == "logging_steps"`, the steps that do not log run trl's loss with a fused head
    # that computes the log-probabilities only. Those are computed exactly as with the metrics (the
    # kernel's extra statistics never feed them), so the loss, the gradients and the weights are bitwise
    # the same (tests/test_trainers_thin.py). The logged entropy and accuracy are then the logging
    # step's batch, not the mean since the last log; the token count stays exact.

    def _install_lean_head(self) -> None:
        from accelerate.utils import is_peft_model
        from trl.trainer.utils import add_fused_lm_head

        # Where SFTTrainer put its fused head: the model, or under peft the wrapped base model. Found
        # once: `is_peft_model` looks the package up (tens of ms), too slow for every step.
        self._fused_module = target = self.model.get_base_model() if is_peft_model(self.model) else self.model
        self._full_forward = target.forward  # trl's fused head, with entropy and is_top1
        add_fused_lm_head(target, outputs=("log_probs",))  # wraps it; only its fused calls are used
        self._lean_forward = target.forward
        target.forward = self._full_forward
        self._pending_tokens = None

    def step_metrics_due(self) -> bool:
        """Whether the training step being computed logs, hence computes trl's per-step metrics."""
        args = self.args
        if getattr(args, "step_metrics", "every_step") == "every_step" or args.logging_strategy == "epoch":
            return True
        if args.logging_strategy == "no":
            return False
        step = self.state.global_step + 1  # `global_step` counts finished optimizer steps
        return (
            step % self.state.logging_steps == 0
            or (args.logging_first_step and step == 1)
            or step >= self.state.max_steps
        )

    def _lean_loss_applies(self, inputs, return_outputs: bool) -> bool:
        """The plain NLL path of trl's compute_loss in training, the one the lean head replaces."""
        parallelism = getattr(self.accelerator, "parallelism_config", None)
        return (
            self.model.training
            and not return_outputs
            and self.args.loss_type == "nll"
            and self.compute_loss_func is None
            and self.label_smoother is None
            and not self.aux_loss_enabled
            and not getattr(parallelism, "sp_enabled", False)
            and "attention_mask" in inputs
            and getattr(self, "_lean_forward", None) is not None
        )

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if not self._lean_loss_applies(inputs, return_outputs):
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        if self.step_metrics_due():
            self._flush_token_count()
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        # trl's NLL branch (sft_trainer.py, SFTTrainer.compute_loss), line for line, with the lean head.
        inputs["use_cache"] = False
        target = self._fused_module
        target.forward = self._lean_forward
        try:
            outputs = model(**inputs, fused_lm_head=True)
        finally:
            target.forward = self._full_forward
        per_token_loss = -outputs.log_probs  # zero on ignored positions
        num_tokens = outputs.label_mask.sum() if num_items_in_batch is None else num_items_in_batch
        loss = per_token_loss.sum() / torch.as_tensor(num_tokens).clamp(min=1)
        if self.args.average_tokens_across_devices and num_items_in_batch is not None:
            loss = loss * (self.accelerator.num_processes // self.get_tp_size())
        # The token count trl logs, summed on the device and gathered at the next logging step.
        tokens = inputs["attention_mask"].sum()
        self._pending_tokens = tokens if self._pending_tokens is None else self._pending_tokens + tokens
        return loss

    def floating_point_ops(self, inputs) -> int:
        """Trainer's estimate (6 · tokens · non-embedding parameters) for its logged `total_flos`, with
        the parameter count taken once: Trainer recounts every parameter of the model on every step
        (tens of ms per step under LoRA here), and what trains never changes its size."""
        count = getattr(self, "_flos_parameters", None)
        if count is None:
            if not hasattr(self.model, "num_parameters"):
                return super().floating_point_ops(inputs)
            count = self._flos_parameters = self.model.num_parameters(exclude_embeddings=True)
        main_input = getattr(self.model, "main_input_name", "input_ids")
        return 6 * inputs[main_input].numel() * count if main_input in inputs else 0

    def _flush_token_count(self) -> None:
        if self._pending_tokens is not None:
            total = self.accelerator.gather_for_metrics(self._pending_tokens).sum().item()
            self._total_train_tokens += total // self._tp_size
            self._pending_tokens = None


__all__ = [
    "HALF_DTYPES",
    "MultimodalSFTTrainer",
    "check_modalities",
    "check_train_dataset",
    "half_dtype",
    "match_mixed_precision",
    "resolve_args",
    "train_only",
    "upcast_trainable",
]
