"""The three phase trainers: what trains, what stays bitwise frozen, learning rates, plugin penalties.

Tiny random models (a 2-layer Llama of width 32, two modalities with 4-token encoders), a handful
of samples, 2-3 optimizer steps. Most tests train on cached encoder features
(`MultimodalCollator(feature_lookup=...)`, the quickstart's path); one reads `.npy` media through
the encoder.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from datasets import Dataset
from helpers import (
    CAPTIONS,
    MODALITIES,
    RAW_DIM,
    TOKENS,
    assert_changed_exactly,
    build_model,
    dataset,
    feature_lookup,
    linear_weight_names,
    rows,
    snapshot,
    test_args,
)

from hf_mera.continual.plugins import (
    PLUGIN_REGISTRY,
    ContinualPlugin,
    StageContext,
    build_plugin,
    register_plugin,
)
from hf_mera.data.collator import MultimodalCollator
from trainers import (
    ConnectorPretrainConfig,
    ConnectorPretrainTrainer,
    InstructionTuningConfig,
    InstructionTuningTrainer,
    RealignConfig,
    RealignTrainer,
)


# ---- configs ---------------------------------------------------------------------------------------
def test_configs_carry_paper_defaults_and_cpu_safe_settings(tmp_path):
    pretrain = ConnectorPretrainConfig(output_dir=str(tmp_path))
    tune = InstructionTuningConfig(output_dir=str(tmp_path))
    realign = RealignConfig(output_dir=str(tmp_path))
    assert (pretrain.learning_rate, pretrain.per_device_train_batch_size) == (1e-3, 128)
    assert (tune.learning_rate, tune.connector_learning_rate, tune.per_device_train_batch_size) == (
        2e-4,
        2e-5,
        16,
    )
    assert (tune.use_lora, tune.lora_r, tune.lora_alpha, tune.lora_dropout) == (True, 128, 128, 0.05)
    assert (realign.learning_rate, realign.per_device_train_batch_size) == (2e-5, 16)
    for config in (pretrain, tune, realign):
        assert (
            config.lr_scheduler_type == "cosine"
            and config.warmup_steps == 0.03
            and config.num_train_epochs == 1
        )
        assert config.remove_unused_columns is False
        assert config.dataset_kwargs == {"skip_prepare_dataset": True}
        assert config.activation_checkpointing is False and config.gradient_checkpointing is False
        assert config.save_strategy == "no" and config.report_to in ("none", [])
        if not torch.cuda.is_available():
            assert config.bf16 is False
        own = [f for f in dataclasses.fields(config) if f.name in type(config).__dataclass_fields__]
        assert all(f.metadata.get("help") for f in own if f.init)
    assert RealignConfig(output_dir=str(tmp_path), warmup_ratio=0.1).warmup_steps == 0.1
    assert ConnectorPretrainConfig(
        output_dir=str(tmp_path), gradient_checkpointing=True
    ).activation_checkpointing
    with pytest.raises(ValueError, match="remove_unused_columns"):
        RealignConfig(output_dir=str(tmp_path), remove_unused_columns=True)
    with pytest.raises(ValueError, match="skip_prepare_dataset"):
        RealignConfig(output_dir=str(tmp_path), dataset_kwargs={})


# ---- connector pre-training -----------------------------------------------------------------------
def test_connector_pretrain_trains_only_its_connector_on_cached_features(tmp_path):
    model, processor = build_model()
    before = snapshot(model)
    trainer = ConnectorPretrainTrainer(
        model=model,
        modality="image",
        args=test_args(ConnectorPretrainConfig, tmp_path),
        train_dataset=dataset("image"),
        processing_class=processor,
        data_collator=MultimodalCollator(processor, feature_lookup=feature_lookup),
    )
    trainer.train()
    assert_changed_exactly(model, before, ("model.connectors.image.",))


def test_connector_pretrain_reads_media_and_keeps_the_encoder_frozen(tmp_path, monkeypatch):
    model, processor = build_model(freeze_encoder=False)  # trainable encoder: the trainer must freeze it
    for k in range(len(CAPTIONS)):
        np.save(
            tmp_path / f"image-{k}.npy", np.random.default_rng(k).standard_normal(TOKENS * RAW_DIM, "float32")
        )
    monkeypatch.setattr(
        processor,
        "preprocess",
        lambda name, items: torch.stack([torch.from_numpy(np.load(p)) for p in items]),
    )
    before = snapshot(model)
    trainer = ConnectorPretrainTrainer(
        model=model,
        modality="image",
        args=test_args(ConnectorPretrainConfig, tmp_path, max_steps=2),
        train_dataset=Dataset.from_list(rows("image", root=tmp_path)),
        processing_class=processor,  # default collator: media through processor + encoder
    )
    batch = trainer.data_collator(rows("image", root=tmp_path)[:2])
    assert set(batch["modality_values"]) == {"image"} and "modality_features" not in batch
    assert trainer.data_collator.max_length == trainer.args.max_length
    trainer.train()
    assert_changed_exactly(model, before, ("model.connectors.image.",))


# ---- instruction tuning ---------------------------------------------------------------------------
def test_instruction_tuning_lora_trains_lora_and_the_connector_only(tmp_path):
    model, processor = build_model()
    before = snapshot(model)
    args = test_args(InstructionTuningConfig, tmp_path, lora_r=4, lora_alpha=8, learning_rate=1e-2)
    trainer = InstructionTuningTrainer(
        model=model,
        modality="image",
        args=args,
        train_dataset=dataset("image"),
        processing_class=processor,
        data_collator=MultimodalCollator(processor, feature_lookup=feature_lookup),
    )
    trainable = {n for n, p in trainer.model.named_parameters() if p.requires_grad}
    connector = {n for n in trainable if ".connectors.image." in n}
    lora = trainable - connector
    assert connector and lora and all(".lora_A." in n or ".lora_B." in n for n in lora)
    assert all(".language_model." in n for n in lora)  # never lm_head, connectors or encoders
    lora_before = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if n in lora}
    trainer.train()

    # Two learning rates, two sets of groups; the connector keeps its parameter paths.
    by_lr = {}
    for group in trainer.optimizer.param_groups:
        by_lr.setdefault(group["initial_lr"], set()).update(id(p) for p in group["params"])
    params = dict(trainer.model.named_parameters())
    assert by_lr == {
        args.learning_rate: {id(params[n]) for n in lora},
        args.connector_learning_rate: {id(params[n]) for n in connector},
    }
    assert all(not torch.equal(params[n].detach(), lora_before[n]) for n in lora)

    deltas, plain = trainer.unwrap_lora()
    assert plain is model and trainer.model is model
    assert set(deltas) == linear_weight_names(model)  # LoRA on every linear module of the LLM
    assert all(delta.abs().sum() > 0 for delta in deltas.values())
    # Unwrapped without merging: the base LLM is θᵢ₋₁ bit for bit; only the connector moved.
    assert_changed_exactly(model, before, ("model.connectors.image.",))


def test_instruction_tuning_unwrap_lora_merge_gives_the_vanilla_model(tmp_path):
    model, processor = build_model()
    before = snapshot(model)
    trainer = InstructionTuningTrainer(
        model=model,
        modality="audio",
        args=test_args(InstructionTuningConfig, tmp_path, lora_r=4, lora_alpha=8, max_steps=2),
        train_dataset=dataset("audio"),
        processing_class=processor,
        data_collator=MultimodalCollator(processor, feature_lookup=feature_lookup),
    )
    trainer.train()
    deltas, plain = trainer.unwrap_lora(merge=True)
    after = dict(plain.named_parameters())
    for key, delta in deltas.items():
        torch.testing.assert_close(after[key].detach(), before[key] + delta)
    untouched = [n for n in after if n not in deltas and not n.startswith("model.connectors.audio.")]
    assert untouched and all(torch.equal(after[n].detach(), before[n]) for n in untouched)


def test_instruction_tuning_full_fine_tuning(tmp_path):
    model, processor = build_model()
    assert model.lm_head.weight is model.get_input_embeddings().weight  # tied: trained once, as embeddings
    before = snapshot(model)
    args = test_args(InstructionTuningConfig, tmp_path, use_lora=False, learning_rate=1e-3)
    trainer = InstructionTuningTrainer(
        model=model,
        modality="image",
        args=args,
        train_dataset=dataset("image"),
        processing_class=processor,
        data_collator=MultimodalCollator(processor, feature_lookup=feature_lookup),
    )
    trainer.train()
    assert trainer.model is model
    assert_changed_exactly(model, before, ("model.language_model.", "lm_head.", "model.connectors.image."))
    connector = {id(p) for p in model.model.connectors["image"].parameters()}
    for group in trainer.optimizer.param_groups:
        ids = {id(p) for p in group["params"]}
        assert ids <= connector or not ids & connector  # never mixed
        assert group["initial_lr"] == (
            args.connector_learning_rate if ids <= connector else args.learning_rate
        )
    with pytest.raises(ValueError, match="use_lora=False"):
        trainer.unwrap_lora()


# ---- realigning -----------------------------------------------------------------------------------
def test_realign_trains_every_given_connector_and_nothing_else(tmp_path):
    model, processor = build_model()
    before = snapshot(model)
    trainer = RealignTrainer(
        model=model,
        modalities=["image", "audio"],
        args=test_args(RealignConfig, tmp_path, per_device_train_batch_size=8, max_steps=2),
        train_dataset=dataset("image", "audio"),
        processing_class=processor,
        data_collator=MultimodalCollator(processor, feature_lookup=feature_lookup),
    )
    trainer.train()
    assert_changed_exactly(model, before, ("model.connectors.image.", "model.connectors.audio."))


# ---- continual-learning plugins -------------------------------------------------------------------
class L2ToPreviousPlugin(ContinualPlugin):
    """λ · Σ‖θ − θ_start‖² over the trainable parameters (a one-line EWC with F = 1)."""

    def __init__(self, weight: float = 1.0):
        self.weight = weight
        self.anchor: dict[str, torch.Tensor] = {}

    def on_stage_start(self, stage, model):
        self.anchor = {n: p.detach().clone() for n, p in model.named_parameters()}

    def loss_penalty(self, model, stage):
        terms = [((p - self.anchor[n]) ** 2).sum() for n, p in model.named_parameters() if p.requires_grad]
        return self.weight * torch.stack(terms).sum()


def test_plugin_penalty_is_added_to_the_loss_and_its_gradients(tmp_path):
    model, processor = build_model()
    plugin = L2ToPreviousPlugin(weight=3.0)
    stage = StageContext(index=2, modality="audio", order=MODALITIES, output_dir=str(tmp_path))
    collator = MultimodalCollator(processor, feature_lookup=feature_lookup)
    trainer = InstructionTuningTrainer(
        model=model,
        modality="audio",
        args=test_args(InstructionTuningConfig, tmp_path, use_lora=False, max_steps=2, learning_rate=1e-2),
        train_dataset=dataset("audio"),
        processing_class=processor,
        data_collator=collator,
        plugins=[plugin],
        stage=stage,
    )
    plugin.on_stage_start(stage, trainer.model)
    trainer.train()  # the parameters leave the anchor, so the penalty is non-zero
    assert trainer.state.log_history[-1]["plugin_penalty"] >= 0  # logged beside the loss

    batch = collator(rows("audio"))
    trained = [(n, p) for n, p in trainer.model.named_parameters() if p.requires_grad]

    def loss_and_grads(plugins, num_items_in_batch=None):
        trainer.plugins = plugins
        trainer.model.zero_grad()
        loss = trainer.compute_loss(trainer.model, dict(batch), num_items_in_batch=num_items_in_batch)
        loss.backward()
        return loss.detach(), [p.grad.clone() for _, p in trained]

    trainer.model.train()
    torch.manual_seed(0)
    plain_loss, plain_grads = loss_and_grads([])
    torch.manual_seed(0)
    loss, grads = loss_and_grads([plugin])
    penalty = plugin.loss_penalty(trainer.model, stage).detach()
    assert penalty > 0
    torch.testing.assert_close(loss - plain_loss, penalty)
    for (name, p), grad, plain_grad in zip(trained, grads, plain_grads):
        expected = 2 * plugin.weight * (p.detach() - plugin.anchor[name])
        torch.testing.assert_close(grad - plain_grad, expected, rtol=1e-4, atol=1e-6)

    # Token-count normalised loss: Trainer leaves gradient accumulation to the loss, so the penalty
    # is shared out over the accumulated micro-batches.
    trainer.current_gradient_accumulation_steps = 4
    n_items = int((batch["labels"][:, 1:] != -100).sum())
    plain_loss, _ = loss_and_grads([], num_items_in_batch=n_items)
    loss, _ = loss_and_grads([plugin], num_items_in_batch=n_items)
    torch.testing.assert_close(loss - plain_loss, penalty / 4)


def test_plugin_registry_and_stage_context():
    name = "test-l2-to-previous"
    try:
        register_plugin(name)(L2ToPreviousPlugin)
        plugin = build_plugin(name, weight=0.5)
        assert isinstance(plugin, L2ToPreviousPlugin) and plugin.weight == 0.5 and plugin.name == name
        with pytest.raises(ValueError, match=name):
            register_plugin(name)(L2ToPreviousPlugin)
    finally:
        PLUGIN_REGISTRY._entries.pop(name, None)  # a test-only name must not leak into other tests
    with pytest.raises(ValueError, match=r"^methods\[\]\.plugins\[\]\.name: unknown plugin 'no-such-plugin'"):
        build_plugin("no-such-plugin")

    base = ContinualPlugin()
    stage = StageContext(index=2, modality="video", order=["image", "video", "audio"], seed=3)
    assert stage.seen == ("image", "video") and stage.previous == ("image",)
    data = Dataset.from_list([{"x": 1}])
    assert base.transform_train_dataset(data, stage) is data and base.loss_penalty(None, stage) is None
    with pytest.raises(ValueError, match="'audio'"):
        StageContext(index=2, modality="audio", order=["image", "video", "audio"])
    with pytest.raises(ValueError, match="index"):
        StageContext(index=0, modality="image", order=["image"])
    with pytest.raises(ValueError, match="seen"):
        StageContext(index=1, modality="image", order=["image", "video"], seen=["image", "video"])


# ---- argument errors ------------------------------------------------------------------------------
def test_trainers_name_the_modality_or_field_at_fault(tmp_path):
    model, processor = build_model()
    requires_grad = {n: p.requires_grad for n, p in model.named_parameters()}
    kwargs = dict(processing_class=processor, train_dataset=dataset("image"))
    with pytest.raises(ValueError, match="'video'"):
        ConnectorPretrainTrainer(model, "video", args=test_args(ConnectorPretrainConfig, tmp_path), **kwargs)
    with pytest.raises(ValueError, match="'point_cloud'"):
        RealignTrainer(model, ["image", "point_cloud"], args=test_args(RealignConfig, tmp_path), **kwargs)
    with pytest.raises(ValueError, match="more than once"):
        RealignTrainer(model, ["image", "image"], args=test_args(RealignConfig, tmp_path), **kwargs)
    with pytest.raises(ValueError, match="image.*empty"):
        ConnectorPretrainTrainer(
            model,
            "image",
            args=test_args(ConnectorPretrainConfig, tmp_path),
            processing_class=processor,
            train_dataset=dataset("image").select([]),
        )
    with pytest.raises(ValueError, match="InstructionTuningConfig"):
        InstructionTuningTrainer(model, "image", args=test_args(RealignConfig, tmp_path), **kwargs)
    with pytest.raises(ValueError, match="stage"):
        InstructionTuningTrainer(
            model,
            "image",
            args=test_args(InstructionTuningConfig, tmp_path),
            plugins=[L2ToPreviousPlugin()],
            **kwargs,
        )
    with pytest.raises(ValueError, match="processing_class"):
        RealignTrainer(
            model, ["image"], args=test_args(RealignConfig, tmp_path), train_dataset=dataset("image")
        )
    # A refused call leaves the model as it was.
    assert {n: p.requires_grad for n, p in model.named_parameters()} == requires_grad
