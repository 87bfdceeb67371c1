"""Half-precision models train with float32 trainable weights under autocast (mixed precision).

The paper's runs hold the LLM in half precision and train connectors at lr 2e-5. A bf16 weight of
magnitude w only moves in steps of about w·2^-8, so an Adam step of 2e-5 left most connector weights
unchanged before the trainable parameters were kept in float32. These tests take one step at that
learning rate on a tiny bf16 model, on CPU (torch's CPU autocast supports bf16).
"""

from __future__ import annotations

import pytest
import torch
from datasets import Dataset
from helpers import MODALITIES, build_model, feature_lookup, rows
from transformers import TrainerCallback

from hf_mera.data.collator import MultimodalCollator
from trainers import (
    ConnectorPretrainConfig,
    ConnectorPretrainTrainer,
    InstructionTuningConfig,
    InstructionTuningTrainer,
    RealignConfig,
    RealignTrainer,
)
from trainers._common import half_dtype, match_mixed_precision


def bf16_model():
    model, processor = build_model()
    return model.to(torch.bfloat16), processor  # as a checkpoint loaded with dtype=bfloat16


def all_rows() -> list[dict]:
    return [row for modality in MODALITIES for row in rows(modality)]


class GradientMasks(TrainerCallback):
    """Which elements of each trainable parameter have a nonzero gradient at the (one) optimizer step."""

    def __init__(self):
        self.masks: dict[str, torch.Tensor] = {}

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        for name, parameter in model.named_parameters():
            if parameter.grad is not None:
                self.masks[name] = parameter.grad.detach() != 0


def one_step_args(config_class, tmp_path, **overrides):
    # warmup 0: with one step, the paper's 3 % warm-up would make that step's learning rate 0.
    options = dict(
        output_dir=str(tmp_path),
        use_cpu=True,
        max_steps=1,
        warmup_steps=0,
        per_device_train_batch_size=8,
        learning_rate=2e-5,
        report_to="none",
        disable_tqdm=True,
        seed=0,
    )
    return config_class(**{**options, **overrides})


def build(phase: str, model, processor, tmp_path):
    common = dict(
        train_dataset=Dataset.from_list(all_rows()),
        processing_class=processor,
        data_collator=MultimodalCollator(processor, feature_lookup=feature_lookup),
    )
    if phase == "realign":
        args = one_step_args(RealignConfig, tmp_path)
        return RealignTrainer(model=model, modalities=list(MODALITIES), args=args, **common)
    if phase == "connector_pretrain":
        args = one_step_args(ConnectorPretrainConfig, tmp_path)
        return ConnectorPretrainTrainer(model=model, modality="image", args=args, **common)
    args = one_step_args(
        InstructionTuningConfig, tmp_path, connector_learning_rate=2e-5, lora_r=4, lora_alpha=8
    )
    return InstructionTuningTrainer(model=model, modality="image", args=args, **common)


@pytest.mark.parametrize("phase", ["realign", "connector_pretrain", "instruction_tuning"])
def test_one_step_at_lr_2e5_moves_every_connector_weight_with_a_gradient(phase, tmp_path):
    model, processor = bf16_model()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    trainer = build(phase, model, processor, tmp_path)
    masks = GradientMasks()
    trainer.add_callback(masks)
    # The trainer autocasts in the weights' dtype, though no GPU is there to pick bf16 for it.
    assert trainer.args.bf16 and trainer.accelerator.mixed_precision == "bf16"
    trainer.train()

    after = dict(trainer.accelerator.unwrap_model(trainer.model).named_parameters())
    trained_connectors = ("model.connectors.", "base_model.model.model.connectors.")
    checked = 0
    for name, parameter in after.items():
        plain = name.replace("base_model.model.", "").replace(".base_layer", "")
        if not parameter.requires_grad:
            # Frozen: still bf16 and bitwise unchanged.
            assert parameter.dtype == torch.bfloat16, name
            assert torch.equal(parameter.detach(), before[plain]), name
            continue
        if name.startswith(trained_connectors):
            mask = masks.masks[name]
            assert mask.any(), name
            moved = parameter.detach() != before[plain].float()
            # Every element that had a gradient took the step; before, most did not.
            assert bool(moved[mask].all()), (
                f"{name}: {int((~moved[mask]).sum())} of {int(mask.sum())} unchanged"
            )
            checked += 1
        assert parameter.dtype == torch.float32, name  # the optimizer's master weights
    assert checked >= 4  # two Linear layers (weight and bias) per trained connector
    if phase == "instruction_tuning":
        assert any("lora_" in n and p.dtype == torch.float32 for n, p in after.items())


def test_precision_follows_the_weights_unless_the_caller_chose(tmp_path):
    model, _ = bf16_model()
    assert half_dtype(model) == torch.bfloat16
    assert half_dtype(model.float()) is None
    fp16 = one_step_args(RealignConfig, tmp_path)
    match_mixed_precision(fp16, torch.float16)
    assert (fp16.fp16, fp16.bf16, fp16.mixed_precision) == (True, False, "fp16")
    chosen = one_step_args(RealignConfig, tmp_path, use_cpu=False, fp16=True, bf16=False)
    match_mixed_precision(chosen, torch.bfloat16)  # the caller's fp16 stays
    assert (chosen.fp16, chosen.bf16) == (True, False)
    full = one_step_args(RealignConfig, tmp_path)
    match_mixed_precision(full, None)  # float32 weights: nothing to autocast
    assert not full.bf16 and full.mixed_precision == "no"
    model = model.bfloat16()
    model.model.connectors["image"].half()
    with pytest.raises(ValueError, match="mixes bfloat16 and float16"):
        half_dtype(model)
