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

A plugin that carries state from one stage to the next (EWC's Fisher and anchor) exposes it as
`state_dict()` / `load_state_dict()`: the orchestrator saves it with the stage's instruction-tuning
checkpoint after `on_stage_end` and loads it back whenever that checkpoint is reused, so a resumed
run continues with the state an uninterrupted run would have.

A stage spans connector pre-training, instruction tuning, merging and realigning, so the stage hooks
belong to whoever runs the stage (`trainers.MergeAndRealignTrainer`); only the loss penalty lives in
a trainer (`trainers.InstructionTuningTrainer.compute_loss`, the one place the loss is changed).

Plugins are registered by name so a curriculum YAML can list them::

    @register_plugin("l2_anchor")
    class L2AnchorPlugin(ContinualPlugin):
        def __init__(self, weight: float = 1.0): ...

    plugin = build_plugin("l2_anchor", weight=0.1)
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
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
        train_sets: the instruction-tuning data D_j of every modality of `order` (captions and QA,
            with a `task` column), for plugins that draw on earlier stages' data (replay's Rᵢ from
            D₁…Dᵢ₋₁); None when the caller has none to give.
    """

    index: int
    modality: str
    order: tuple[str, ...]
    seen: tuple[str, ...] | None = None
    output_dir: str | None = None
    seed: int = 0
    train_sets: Mapping[str, Dataset] | None = field(default=None, compare=False, repr=False)

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

    def on_stage_end(
        self,
        stage: StageContext,
        model: nn.Module,
        train_dataset: Dataset,
        data_collator: Callable[[list[dict]], dict] | None = None,
    ) -> None:
        """After the stage's instruction tuning, with its plain model (e.g. estimate EWC's Fisher).

        Args:
            stage: the stage that just trained.
            model: the plain `AnyModalityLlava` it produced (LoRA merged in).
            train_dataset: the rows it trained on (after `transform_train_dataset`).
            data_collator: the training collator (rows → model inputs; with cached encoder features
                it looks them up), for plugins that run the model on `train_dataset`.
        """

    def state_dict(self) -> dict[str, torch.Tensor]:
        """What the plugin must carry into later stages, as named tensors (empty: stateless).

        Saved as `plugin-<name>.safetensors` beside the instruction-tuning checkpoint of each stage
        (after `on_stage_end`) and given back to `load_state_dict` when that checkpoint is reused.
        """
        return {}

    def load_state_dict(self, state: Mapping[str, torch.Tensor]) -> None:
        """Restore what `state_dict()` returned; the default accepts only an empty state."""
        if state:
            raise ValueError(f"Plugin {self.name!r} keeps no state, got keys {sorted(state)[:5]}.")

    def state_nbytes(self) -> int:
        """Memory the plugin's state holds, in bytes (its cost in the paper's Table 6 sense)."""
        return sum(t.numel() * t.element_size() for t in self.state_dict().values())


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


def plugin_state_file(plugin: ContinualPlugin) -> str:
    """The file a plugin's state is saved in: `plugin-<name>.safetensors`."""
    return f"plugin-{plugin.name}.safetensors"


def save_plugin_states(plugins: Sequence[ContinualPlugin], folder: str | os.PathLike) -> list[str]:
    """Write each stateful plugin's `state_dict()` to `folder/plugin-<name>.safetensors`.

    Returns the file names written (none for stateless plugins).
    """
    from safetensors.torch import save_file

    written = []
    for plugin in plugins:
        state = plugin.state_dict()
        if not state:
            continue
        name = plugin_state_file(plugin)
        if name in written:
            raise ValueError(f"Two plugins named {plugin.name!r} keep state; their files would collide.")
        save_file({k: v.detach().cpu().contiguous() for k, v in state.items()}, str(Path(folder) / name))
        written.append(name)
    return written


def load_plugin_states(plugins: Sequence[ContinualPlugin], folder: str | os.PathLike) -> None:
    """Give each plugin the state `save_plugin_states` wrote to `folder` (on CPU; plugins move it).

    A plugin without a file there was stateless at that point and is left as it is.
    """
    from safetensors.torch import load_file

    for plugin in plugins:
        path = Path(folder) / plugin_state_file(plugin)
        if path.is_file():
            plugin.load_state_dict(load_file(str(path)))


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
    "load_plugin_states",
    "plugin_state_file",
    "register_plugin",
    "save_plugin_states",
    "total_penalty",
]
