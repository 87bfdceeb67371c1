"""Sharded training (FSDP2, DeepSpeed ZeRO) as the phases need it: whole models in, whole models out.

A phase trainer shards the model while it trains (`accelerate launch --config_file fsdp.yaml` or
`deepspeed-zero*.yaml`); everything around training works on whole tensors: the phase checkpoint
that the merge reads, LoRA's ΔW = B·A·scaling, EWC's Fisher, LPM's Grams, the evaluation. So after
`train()` the phase trainers call `gather_trained_model`, which gathers the full state dict (a
collective: every rank takes part) into an unsharded copy of the model on every rank. The next
phase loads its parent from disk and is sharded again by its own trainer.

On a machine without GPUs accelerate 1.15 runs neither engine by itself, so this module does:
- `enable_fsdp_on_cpu`: `AcceleratorState` turns FSDP on only for GPU-like distributed types, and a
  CPU launch stays `MULTI_CPU` (plain DDP, silently) even when the config says FSDP. Marking the
  shared state FSDP after it was built makes `Accelerator.prepare` run the same `fsdp2_prepare_model`
  (torch's `fully_shard`) on CPU as on GPUs;
- `deepspeed_on_cpu_state`: a DeepSpeed launch finds no process-group backend without a GPU-like
  device; naming gloo lets DeepSpeed's CPU accelerator run.
`without_zero3` keeps ZeRO-3's process-wide settings away from work one process does alone, and
`run_absent_modalities` keeps ZeRO-3's per-module all-gathers in step on batches of mixed modalities.
`tests/test_sharded.py` compares both engines with a one-process run.
"""

from __future__ import annotations

import contextlib
import logging
import os

import torch
from torch import nn

logger = logging.getLogger(__name__)


def _flag(name: str) -> bool:
    return os.environ.get(name, "false").lower() in ("1", "true", "yes")


def deepspeed_launch() -> bool:
    """Whether `accelerate launch` was asked for DeepSpeed (`distributed_type: DEEPSPEED`)."""
    return _flag("ACCELERATE_USE_DEEPSPEED")


def deepspeed_on_cpu_state():
    """A DeepSpeed launch on a machine without GPUs: the shared `PartialState` over gloo, else None.

    accelerate 1.15 finds no process-group backend for a non-CPU launch without a GPU-like device
    (so it runs one process per launch), and never turns DeepSpeed on with `cpu=True`; naming gloo
    lets DeepSpeed's CPU accelerator start its process group as it does on GPUs."""
    if torch.cuda.is_available() or not deepspeed_launch():
        return None
    from accelerate import PartialState

    return PartialState(cpu=False, backend="gloo")


def enable_fsdp_on_cpu(state) -> bool:
    """On CPU, honour an FSDP launch (`ACCELERATE_USE_FSDP`, set by `accelerate launch` from the
    config's `distributed_type: FSDP`): build accelerate's shared state with the launch's FSDP plugin
    and mark it FSDP. Returns whether it did. `state` is the run's `PartialState`."""
    if torch.cuda.is_available() or not _flag("ACCELERATE_USE_FSDP") or state.num_processes < 2:
        return False
    from accelerate import Accelerator
    from accelerate.state import PartialState
    from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin

    plugin = FullyShardedDataParallelPlugin()  # read from the launch's FSDP_* environment
    if plugin.fsdp_version != 2:
        raise ValueError(
            "FSDP on CPU needs fsdp_version: 2 in the accelerate config (torch's fully_shard); "
            f"got fsdp_version {plugin.fsdp_version}."
        )
    # Builds the shared AcceleratorState that every trainer's Accelerator then reuses.
    accelerator_state = Accelerator(cpu=True, fsdp_plugin=plugin).state
    # AcceleratorState copies PartialState's attributes each time it is built: mark both.
    PartialState._shared_state["distributed_type"] = DistributedType.FSDP
    accelerator_state.distributed_type = DistributedType.FSDP
    accelerator_state.fsdp_plugin = plugin
    logger.info("FSDP (version 2) on %d CPU processes (gloo)", state.num_processes)
    return True


def fsdp_on_cpu() -> bool:
    """Whether `enable_fsdp_on_cpu` configured this process. Phase configs then ask transformers to
    keep that state (`accelerator_config.use_configured_state`): `TrainingArguments` otherwise
    resets accelerate's state and rebuilds it from the environment, which on CPU means DDP."""
    from accelerate.state import PartialState
    from accelerate.utils import DistributedType

    return not torch.cuda.is_available() and (
        PartialState._shared_state.get("distributed_type") == DistributedType.FSDP
    )


def is_sharded(trainer) -> bool:
    """Whether `trainer`'s model is sharded over its processes (FSDP, or DeepSpeed ZeRO-3)."""
    accelerator = getattr(trainer, "accelerator", None)
    if accelerator is None:  # (one FSDP / ZeRO-3 process also holds DTensors / partitions)
        return False
    if getattr(accelerator.state, "fsdp_plugin", None) is not None:
        return True
    plugin = getattr(accelerator.state, "deepspeed_plugin", None)
    return plugin is not None and plugin.zero_stage == 3


def is_zero3(trainer) -> bool:
    """Whether `trainer` runs DeepSpeed ZeRO-3 (weights partitioned and all-gathered module by module)."""
    accelerator = getattr(trainer, "accelerator", None)
    plugin = getattr(getattr(accelerator, "state", None), "deepspeed_plugin", None)
    return plugin is not None and plugin.zero_stage == 3


def run_absent_modalities(trainer):
    """Under ZeRO-3, make `trainer`'s model run every modality's modules on every step; returns the
    backbone it set (to reset after training), else None.

    ZeRO-3 all-gathers a module's weights as it runs: when one process's batch of mixed modalities
    (Replay, realignment) lacks a modality, that process would skip its connector and the processes'
    collectives stop matching (gloo: "Received data size doesn't match expected size"). The backbone
    then runs an absent modality on one zero item whose output changes nothing
    (`AnyModalityLlavaModel.run_absent_modalities`): the same route as the batch's media (cached
    features → the connector; raw media → encoder and connector). Other engines are left as they are:
    FSDP2 gathers the connectors once per forward in its root unit, DDP and ZeRO-2 keep whole weights."""
    if not is_zero3(trainer):
        return None
    from hf_mera.models.anymodality_llava.modeling_anymodality_llava import AnyModalityLlavaModel

    backbone = next((m for m in trainer.model.modules() if isinstance(m, AnyModalityLlavaModel)), None)
    if backbone is None:
        return None
    on_features = getattr(trainer.data_collator, "feature_lookup", None) is not None
    backbone.run_absent_modalities("features" if on_features else "values")
    logger.info(
        "%s: ZeRO-3: every step runs the modules of %s (a zero item on the %s route where a batch lacks one)",
        type(trainer).__name__,
        ", ".join(backbone.modality_names),
        backbone.absent_modality_route,
    )
    return backbone


def full_state_dict(trainer) -> dict[str, torch.Tensor]:
    """The whole state dict of `trainer.model` on every rank, on the device it trained on (so the
    work after training runs where it would without sharding), under any engine.

    Collective under sharding: every rank must call it."""
    model = trainer.model_wrapped if trainer.model_wrapped is not None else trainer.model
    accelerator = trainer.accelerator
    if getattr(accelerator.state, "fsdp_plugin", None) is not None:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        # Every rank keeps the whole tensors: the phase's post-training work (LoRA's ΔW, EWC's
        # Fisher) runs on each of them, as it does without sharding.
        options = StateDictOptions(full_state_dict=True, cpu_offload=False)
        return {k: v.detach() for k, v in get_model_state_dict(trainer.model, options=options).items()}
    plugin = getattr(accelerator.state, "deepspeed_plugin", None)
    if plugin is not None and plugin.zero_stage == 3:
        import deepspeed

        unwrapped = accelerator.unwrap_model(model)
        params = list(unwrapped.parameters())
        with deepspeed.zero.GatheredParameters(params, modifier_rank=None):
            return {k: v.detach().clone() for k, v in unwrapped.state_dict().items()}
    return {k: v.detach() for k, v in accelerator.unwrap_model(model).state_dict().items()}


@contextlib.contextmanager
def without_zero3():
    """Build, load and run models as plain modules while a DeepSpeed ZeRO-3 run is configured.

    Once a trainer of the process has set ZeRO-3 up, transformers constructs (and loads) every model
    inside `deepspeed.zero.Init` (partitioned at birth, by a collective) and `generate` syncs every
    step across processes. Neither may happen where one process works alone (the main process's
    evaluation: a hang) or on the skeleton that receives the gathered weights. A trainer still
    partitions the plain model it is given when DeepSpeed starts."""
    from transformers.integrations import deepspeed as hf_deepspeed

    reference = hf_deepspeed._hf_deepspeed_config_weak_ref
    hf_deepspeed.unset_hf_deepspeed_config()
    try:
        yield
    finally:
        hf_deepspeed._hf_deepspeed_config_weak_ref = reference


def skeleton_factory(model: nn.Module):
    """A function building an empty (meta-device) model shaped like `model`: same class and config,
    wrapped by peft with the same LoRA config when `model` is a `PeftModel`. Call it before
    training; the weights come later from the gathered state dict."""
    import copy

    peft_config = None
    base = model
    if hasattr(model, "peft_config") and hasattr(model, "get_base_model"):
        peft_config = copy.deepcopy(model.peft_config)
        base = model.get_base_model()
    cls, config = type(base), copy.deepcopy(base.config)

    def build() -> nn.Module:
        with torch.device("meta"), without_zero3():
            skeleton = cls(config)
            if peft_config is not None:
                from peft import get_peft_model

                (name, adapter), *more = peft_config.items()
                if more:
                    raise ValueError(f"gather_trained_model: one adapter expected, got {list(peft_config)}.")
                skeleton = get_peft_model(skeleton, adapter, adapter_name=name)
        return skeleton

    return build


def gather_trained_model(trainer, skeleton_factory) -> nn.Module:
    """A plain, unsharded model with `trainer`'s trained weights (whole tensors, every rank).

    `skeleton_factory()` builds an unsharded model of the same structure (same class, config, peft
    wrapping); the gathered full state dict is loaded into it, keeping each tensor's dtype
    (trainable weights stay float32 under mixed precision) and `requires_grad` flags."""
    trained = trainer.accelerator.unwrap_model(trainer.model)
    from torch.distributed.tensor import DTensor

    sharded = sum(isinstance(p, DTensor) or hasattr(p, "ds_id") for p in trained.parameters())
    state = full_state_dict(trainer)
    logger.info(
        "%s: gathered the whole trained model (%d tensors) from %d sharded parameters",
        type(trainer).__name__,
        len(state),
        sharded,
    )
    flags = {name: p.requires_grad for name, p in trained.named_parameters()}
    model = skeleton_factory()
    missing, unexpected = model.load_state_dict(state, strict=False, assign=True)
    if unexpected or [k for k in missing if k in flags]:
        raise ValueError(
            f"gather_trained_model: the rebuilt model does not match the trained one "
            f"(missing {missing[:5]}, unexpected {unexpected[:5]})."
        )
    # Non-persistent buffers (rotary frequencies) are in no state dict: sharding leaves them whole.
    buffers = dict(trained.named_buffers())
    for name, buffer in list(model.named_buffers()):
        if buffer.is_meta:
            module_name, _, leaf = name.rpartition(".")
            model.get_submodule(module_name).register_buffer(
                leaf, buffers[name].detach().clone(), persistent=False
            )
    if hasattr(model, "tie_weights"):
        model.tie_weights()
    still_meta = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if still_meta:
        raise ValueError(f"gather_trained_model: no trained value for {still_meta[:5]}.")
    for name, parameter in model.named_parameters():
        parameter.requires_grad_(flags.get(name, False))
    model.train(trained.training)
    return model


__all__ = [
    "deepspeed_on_cpu_state",
    "deepspeed_launch",
    "enable_fsdp_on_cpu",
    "fsdp_on_cpu",
    "full_state_dict",
    "gather_trained_model",
    "is_sharded",
    "is_zero3",
    "run_absent_modalities",
    "without_zero3",
    "skeleton_factory",
]
