"""The thin trainer step (issue #20): trl's per-step metrics only at logging steps, same arithmetic.

`step_metrics="every_step"` is trl 1.16's own `SFTTrainer.compute_loss` on every step; the default
`"logging_steps"` runs the steps that do not log with a fused LM head that computes log-probabilities
only. Every phase trainer must give bitwise the same losses and weights either way, and log the same
token counts.
"""

from __future__ import annotations

import functools

import pytest
import torch
from test_trainers import build_model, dataset, feature_lookup, snapshot, test_args
from transformers import Trainer

from hf_mera.data.collator import MultimodalCollator
from trainers import (
    ConnectorPretrainConfig,
    ConnectorPretrainTrainer,
    InstructionTuningConfig,
    InstructionTuningTrainer,
    RealignConfig,
    RealignTrainer,
)

STEPS, LOGGING_STEPS = 5, 2


def train(phase: str, step_metrics: str, tmp_path):
    """Trains `phase` for STEPS steps; (losses per step, trained weights, log history, lean calls)."""
    model, processor = build_model()
    collator = MultimodalCollator(processor, feature_lookup=feature_lookup)
    common = dict(
        max_steps=STEPS,
        logging_steps=LOGGING_STEPS,
        step_metrics=step_metrics,
        per_device_train_batch_size=2,
        learning_rate=1e-2,
    )
    if phase == "connector_pretrain":
        args = test_args(ConnectorPretrainConfig, tmp_path / step_metrics, **common)
        trainer = ConnectorPretrainTrainer(model, "image", args, dataset("image"), processor, collator)
    elif phase in ("full", "lora"):
        args = test_args(
            InstructionTuningConfig,
            tmp_path / step_metrics,
            use_lora=phase == "lora",
            lora_r=4,
            lora_alpha=8,
            lora_dropout=0.1,  # random numbers in the forward: the two modes must draw the same ones
            **common,
        )
        trainer = InstructionTuningTrainer(model, "image", args, dataset("image"), processor, collator)
    else:
        args = test_args(RealignConfig, tmp_path / step_metrics, **common)
        trainer = RealignTrainer(
            model, ["image", "audio"], args, dataset("image", "audio"), processor, collator
        )
    losses, lean_calls = [], []
    compute_loss = trainer.compute_loss

    def recording_compute_loss(*args, **kwargs):
        loss = compute_loss(*args, **kwargs)
        losses.append(loss.detach().clone())
        return loss

    trainer.compute_loss = recording_compute_loss
    if step_metrics == "every_step":  # the reference counts flos as Trainer does
        trainer.floating_point_ops = functools.partial(Trainer.floating_point_ops, trainer)
    lean = trainer._lean_forward

    def counting_lean(*args, **kwargs):
        lean_calls.append(1)
        return lean(*args, **kwargs)

    trainer._lean_forward = counting_lean
    trainer.train()
    weights = snapshot(trainer.model)
    return losses, weights, trainer.state.log_history, len(lean_calls), trainer.state.total_flos


@pytest.mark.parametrize("phase", ["connector_pretrain", "full", "lora", "realign"])
def test_thin_step_gives_bitwise_the_losses_and_weights_of_trls_step(phase, tmp_path):
    torch.manual_seed(0)
    every_losses, every_weights, every_logs, every_lean, every_flos = train(phase, "every_step", tmp_path)
    torch.manual_seed(0)
    thin_losses, thin_weights, thin_logs, thin_lean, thin_flos = train(phase, "logging_steps", tmp_path)

    assert every_lean == 0
    assert thin_lean == 2  # steps 1 and 3; steps 2 and 4 log, step 5 is the last
    assert len(thin_losses) == len(every_losses) == STEPS
    for step, (a, b) in enumerate(zip(every_losses, thin_losses), start=1):
        assert torch.equal(a, b), (step, a.item(), b.item())
    assert every_weights.keys() == thin_weights.keys()
    changed = [name for name in every_weights if not torch.equal(every_weights[name], thin_weights[name])]
    assert not changed, changed

    def logged(history):
        return {entry["step"]: entry for entry in history if "loss" in entry}

    every, thin = logged(every_logs), logged(thin_logs)
    assert sorted(thin) == sorted(every) == [2, 4]
    for step in thin:
        assert thin[step]["num_tokens"] == every[step]["num_tokens"]
        assert thin[step]["loss"] == every[step]["loss"]
        assert 0 <= thin[step]["mean_token_accuracy"] <= 1 and thin[step]["entropy"] > 0
    assert thin_logs[-1]["num_tokens"] == every_logs[-1]["num_tokens"]  # the final summary
    assert thin_flos == every_flos > 0  # the parameter count taken once counts the same flos


def test_step_metrics_is_checked(tmp_path):
    with pytest.raises(ValueError, match="step_metrics"):
        RealignConfig(output_dir=str(tmp_path), step_metrics="sometimes")
