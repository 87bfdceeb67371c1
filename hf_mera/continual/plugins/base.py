"""Continual-learning methods as plugins with narrow hooks (avalanche's `training/plugins/` idea).

A method such as EWC, replay or PathWeave changes a modality-incremental run in at most four places,
each a no-op by default:

===========================  ==========================================  ====================
hook                         what a method does there                    called by
===========================  ==========================================  ====================
`on_stage_start`             snapshot weights, add modules               the orchestrator
`transform_train_dataset`    mix replay samples into the stage's data    the orchestrator
`loss_penalty`               a regulariser added to the training loss    the trainer, per step
`on_stage_end`               estimate importances (EWC's Fisher)         the orchestrator
===========================  ==========================================  ====================

A stage spans connector pre-training, instruction tuning, merging and realigning, so the stage hooks
belong to whoever runs the stage (`trainers.MergeAndRealignTrainer`); only the loss penalty lives in
a trainer (`trainers.InstructionTuningTrainer.compute_loss`, the one place the loss is changed).

Plugins are registered by name so a curriculum YAML can list them::

    @register_plugin("l2_anchor")
    class L2Anchor(ContinualPlugin):
        def __init__(self, weight: float = 1.0): ...

    plugin = build_plugin("l2_anchor", weight=0.1)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from hf_mera.registry import Registry

if TYPE_CHECKING:
    import torch
    from datasets import Dataset
    from torch import nn


@dataclass(frozen=True)
class StageContext:
    """Where a modality-incremental run stands: stage `index` (1-based) learns `modality`.

    Args:
        index: i, 1-based position of the stage in `order`.
        modality: the modality learned in this stage, `order[index - 1]`.
        order: every modality of the run, in curriculum order.
        seen: the modalities learned so far, the current one included (`order[:index]`, what MERA
            realigns); derived when not given.
        output_dir: the stage's output folder, for plugins that keep files (e.g. Fisher matrices).
        seed: the run's seed, for plugins that sample (e.g. replay).
    """

    index: int
    modality: str
    order: tuple[str, ...]
    seen: tuple[str, ...] | None = None
    output_dir: str | None = None
    seed: int = 0

    def __post_init__(self):
        # frozen: plugins share one context, so none may change what another sees.
        object.__setattr__(self, "order", tuple(self.order))
        if not 1 <= self.index <= len(self.order):
            raise ValueError(
                f"StageContext.index must lie in 1..{len(self.order)} (the order {list(self.order)}), "
                f"got {self.index}."
            )
        if self.order[self.index - 1] != self.modality:
            raise ValueError(
                f"StageContext: stage {self.index} of order {list(self.order)} learns "
                f"{self.order[self.index - 1]!r}, not modality {self.modality!r}."
            )
        seen = self.order[: self.index]
        if self.seen is not None and tuple(self.seen) != seen:
            raise ValueError(
                f"StageContext.seen must be order[:index] = {list(seen)}, got {list(self.seen)}."
            )
        object.__setattr__(self, "seen", seen)

    @property
    def previous(self) -> tuple[str, ...]:
        """Modalities of the earlier stages (what replay samples from)."""
        return self.order[: self.index - 1]


class ContinualPlugin:
    """Base class of continual-learning methods; override only the hooks a method needs.

    The stage hooks get the plain `AnyModalityLlava`. `loss_penalty` gets the model being trained,
    never a DDP wrapper: with LoRA that is the `PeftModel`, whose parameter names differ from the
    plain model's ("base_model.model." prefix, ".base_layer", "lora_A.default" ...;
    `hf_mera.merging.lora.peft_key_to_model_key` maps them back), and whose base weights stay frozen.
    """

    name: str = "plugin"

    def on_stage_start(self, stage: StageContext, model: nn.Module) -> None:
        """Before the stage trains anything (e.g. snapshot θᵢ₋₁)."""

    def transform_train_dataset(self, dataset: Dataset, stage: StageContext) -> Dataset:
        """The instruction-tuning data of the stage (e.g. with replay samples mixed in)."""
        return dataset

    def loss_penalty(self, model: nn.Module, stage: StageContext) -> torch.Tensor | None:
        """A scalar added to every training step's loss, differentiable w.r.t. `model`; None for none.

        Return the penalty of one optimizer step: the trainer accounts for gradient accumulation.
        """
        return None

    def on_stage_end(self, stage: StageContext, model: nn.Module, train_dataset: Dataset) -> None:
        """After the stage's final model exists (e.g. estimate EWC's Fisher on `train_dataset`)."""


def _set_name(name: str, cls: type[ContinualPlugin]) -> None:
    cls.name = name


PLUGIN_REGISTRY: Registry[type[ContinualPlugin]] = Registry(
    "plugin", base=ContinualPlugin, on_register=_set_name
)
_P = TypeVar("_P", bound=type[ContinualPlugin])


def register_plugin(name: str) -> Callable[[_P], _P]:
    """Class decorator: make a `ContinualPlugin` subclass buildable as `build_plugin(name, ...)`."""
    return PLUGIN_REGISTRY.register(name)


def build_plugin(name: str, **kwargs: Any) -> ContinualPlugin:
    """Instantiate the plugin registered as `name` with `kwargs` (a YAML entry minus its `name`)."""
    return PLUGIN_REGISTRY.get(name, where="methods[].plugins[].name")(**kwargs)


def total_penalty(
    plugins: Sequence[ContinualPlugin], model: nn.Module, stage: StageContext
) -> torch.Tensor | None:
    """Sum of the plugins' `loss_penalty`, None when no plugin penalises."""
    penalties = [p for p in (plugin.loss_penalty(model, stage) for plugin in plugins) if p is not None]
    return sum(penalties[1:], penalties[0]) if penalties else None


__all__ = [
    "ContinualPlugin",
    "PLUGIN_REGISTRY",
    "StageContext",
    "build_plugin",
    "register_plugin",
    "total_penalty",
]
