"""The Online EWC plugin against hand computations on test_trainers' tiny model: the Fisher as mean
squared per-sample gradients, its online sum, the penalty and its gradient, the LoRA path, the state."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from helpers import (
    MODALITIES,
    build_model,
    dataset,
    feature_lookup,
    linear_weight_names,
    rows,
    test_args,
)

from hf_mera.continual.curriculum import MethodConfig
from hf_mera.continual.plugins import (
    StageContext,
    build_plugin,
    load_plugin_states,
    save_plugin_states,
)
from hf_mera.continual.plugins.ewc import LLM_PREFIXES, EWCPlugin, fisher_diagonal, precomputed_grad
from hf_mera.data.collator import MultimodalCollator
from trainers import InstructionTuningConfig, InstructionTuningTrainer

STAGES = [StageContext(index=i, modality=m, order=MODALITIES) for i, m in enumerate(MODALITIES, start=1)]


def collator(processor):
    return MultimodalCollator(processor, feature_lookup=feature_lookup)


def llm_names(model) -> list[str]:
    return [n for n, _ in model.named_parameters() if n.startswith(LLM_PREFIXES)]


def hand_fisher(model, processor, samples, names) -> dict[str, torch.Tensor]:
    """Mean over samples of the squared gradient of each sample's own loss."""
    params = dict(model.named_parameters())
    model.eval()
    total = {n: torch.zeros_like(params[n]) for n in names}
    for row in samples:
        grads = torch.autograd.grad(
            model(**collator(processor)([row])).loss, [params[n].requires_grad_(True) for n in names]
        )
        for n, g in zip(names, grads):
            total[n] += g**2
    return {n: t / len(samples) for n, t in total.items()}


def perturb(model, names, scale=1e-2, seed=0) -> None:
    """Move the named weights as a stage of training would."""
    generator = torch.Generator().manual_seed(seed)
    params = dict(model.named_parameters())
    with torch.no_grad():
        for n in names:
            params[n].add_(scale * torch.randn(params[n].shape, generator=generator))


def test_fisher_is_the_mean_of_squared_per_sample_gradients():
    model, processor = build_model()
    samples = rows("image")
    names = [
        "model.language_model.layers.0.self_attn.q_proj.weight",
        "model.language_model.embed_tokens.weight",
    ]
    flags = {n: p.requires_grad for n, p in model.named_parameters()}
    model.train()
    fisher = fisher_diagonal(model, samples, collator(processor), names)
    assert model.training and flags == {n: p.requires_grad for n, p in model.named_parameters()}  # restored
    assert all(f.dtype == torch.float32 for f in fisher.values())

    expected = hand_fisher(model, processor, samples, names)
    for n in names:
        assert fisher[n].shape == dict(model.named_parameters())[n].shape and fisher[n].sum() > 0
        torch.testing.assert_close(fisher[n], expected[n], rtol=1e-5, atol=1e-12)
    # Per-sample: not the square of the batch's mean gradient.
    params = dict(model.named_parameters())
    (batch_grad,) = torch.autograd.grad(model(**collator(processor)(samples)).loss, [params[names[0]]])
    assert not torch.allclose(batch_grad**2, fisher[names[0]])


def test_fisher_accumulates_online_over_stages_and_anchors_the_latest_weights():
    model, processor = build_model()
    plugin = build_plugin("ewc", fisher_fraction=1.0)
    assert isinstance(plugin, EWCPlugin) and plugin.lambda_ == 1.0
    names = llm_names(model)  # no trainer ran: every LLM weight is covered
    first = hand_fisher(model, processor, rows("image"), names)
    plugin.on_stage_end(STAGES[0], model, dataset("image"), collator(processor))
    assert set(plugin.fisher) == set(names) and plugin.num_stages == 1
    assert not any(n.startswith(("model.connectors.", "model.encoders.")) for n in plugin.fisher)
    for n in names:
        torch.testing.assert_close(plugin.fisher[n], first[n], rtol=1e-5, atol=1e-12)

    # Stage 2 trains the LLM and adds a placeholder row to the (tied) embeddings.
    perturb(model, names)
    vocab = model.get_input_embeddings().weight.shape[0]
    model.resize_token_embeddings(vocab + 1, mean_resizing=False)
    embed = "model.language_model.embed_tokens.weight"
    second = hand_fisher(model, processor, rows("audio"), names)
    plugin.on_stage_end(STAGES[1], model, dataset("audio"), collator(processor))
    assert plugin.num_stages == 2
    params = dict(model.named_parameters())
    for n in names:
        expected = second[n].clone()
        expected[tuple(slice(0, s) for s in first[n].shape)] += first[n]  # F₁ has no row for the new token
        torch.testing.assert_close(plugin.fisher[n], expected, rtol=1e-5, atol=1e-12)
        assert torch.equal(plugin.anchor[n], params[n].detach())  # θ₂, not θ₁
    assert plugin.fisher[embed].shape[0] == vocab + 1


def test_the_fisher_sample_is_a_seeded_fraction_of_the_stage():
    plugin = EWCPlugin()
    assert [plugin.fisher_sample_size(n) for n in (1, 49, 50, 400, 10_000)] == [1, 1, 1, 4, 100]
    assert EWCPlugin(max_fisher_samples=30).fisher_sample_size(10_000) == 30
    model, processor = build_model()
    data = dataset("image", "audio")  # 8 rows, half of them drawn
    fishers = []
    for seed in (0, 0, 5):
        ewc = EWCPlugin(fisher_fraction=0.5)
        ewc.on_stage_end(
            StageContext(index=1, modality="image", order=MODALITIES, seed=seed),
            model,
            data,
            collator(processor),
        )
        fishers.append(ewc.fisher["model.language_model.layers.1.mlp.up_proj.weight"])
    assert torch.equal(fishers[0], fishers[1]) and not torch.equal(fishers[0], fishers[2])


def test_penalty_and_its_gradient_against_a_hand_computation():
    model, processor = build_model()
    plugin = EWCPlugin(lambda_=3.0, fisher_fraction=1.0)
    assert plugin.loss_penalty(model, STAGES[0]) is None  # no Fisher before the first stage ends
    plugin.on_stage_end(STAGES[0], model, dataset("image"), collator(processor))
    assert plugin.loss_penalty(model, STAGES[1]) is not None  # the model is still θ₁: zero
    plugin._cache = None

    # Full fine-tuning of stage 2: the LLM and the new connector train, the rest is frozen.
    for n, p in model.named_parameters():
        p.requires_grad_(n.startswith((*LLM_PREFIXES, "model.connectors.audio.")))
    names = llm_names(model)
    perturb(model, [*names, "model.connectors.audio.linear_1.weight"])
    penalty = plugin.loss_penalty(model, STAGES[1])
    params = dict(model.named_parameters())
    expected = sum((plugin.fisher[n] * (params[n].detach() - plugin.anchor[n]) ** 2).sum() for n in names) * (
        3.0 / 2
    )
    assert penalty > 0
    torch.testing.assert_close(penalty.detach(), expected, rtol=1e-5, atol=0)

    model.zero_grad()
    penalty.backward()
    for n, p in model.named_parameters():
        if n in plugin.fisher:
            torch.testing.assert_close(p.grad, 3.0 * plugin.fisher[n] * (p.detach() - plugin.anchor[n]))
            assert p.grad.abs().sum() > 0
        else:  # the connector trains but has no Fisher; frozen encoders and connectors get nothing
            assert p.grad is None, n


def test_precomputed_grad_is_autograd_and_never_reads_the_weights_in_backward():
    """ZeRO-3's path for the penalty: the value and gradient of a LoRA-shaped term F ⊙ (B·A·s − θᵢ)²
    equal plain autograd's, scaled by the incoming gradient, whatever the weights hold by the time
    backward runs."""
    generator = torch.Generator().manual_seed(0)
    fisher, anchor = torch.rand(6, 5, generator=generator), torch.randn(6, 5, generator=generator)

    def make():
        b = torch.nn.Parameter(torch.randn(6, 2, generator=torch.Generator().manual_seed(1)))
        a = torch.nn.Parameter(torch.randn(2, 5, generator=torch.Generator().manual_seed(2)))
        return b, a, lambda: (fisher * (b @ a * 0.5 - anchor).square()).sum()

    b, a, fn = make()
    (2.0 * fn()).backward()  # (a power of two: the scaling is exact, the comparison bitwise)
    b2, a2, fn2 = make()
    value = precomputed_grad(fn2, [b2, a2])
    torch.testing.assert_close(value, fn().detach(), rtol=0, atol=0)
    assert value.grad_fn is not None and a2.grad is None and b2.grad is None  # nothing accumulated yet
    # Backward never reads the weights: between the penalty's gather and the module's backward ZeRO-3
    # releases them (here: NaN, which any read would spread into the gradients).
    b2.data, a2.data = torch.full_like(b2, float("nan")), torch.full_like(a2, float("nan"))
    (2.0 * value).backward()
    torch.testing.assert_close(b2.grad, b.grad, rtol=0, atol=0)
    torch.testing.assert_close(a2.grad, a.grad, rtol=0, atol=0)
    assert b.grad.abs().sum() > 0 and a.grad.abs().sum() > 0


def test_lora_penalty_is_the_full_weight_penalty_of_the_merged_weights(tmp_path):
    """With LoRA, stage 1's Fisher covers exactly the LoRA'd linears (what the trainer trained), and
    stage 2's penalty from B·A·scaling equals λ/2·Σ F (W_merged − θ₁)² over the full matrices."""
    model, processor = build_model()
    plugin = EWCPlugin(lambda_=50.0, fisher_fraction=1.0)

    def tune(model, stage, steps=2):
        trainer = InstructionTuningTrainer(
            model=model,
            modality=stage.modality,
            args=test_args(
                InstructionTuningConfig, tmp_path / stage.modality, lora_r=4, lora_alpha=8, max_steps=steps
            ),
            train_dataset=dataset(stage.modality),
            processing_class=processor,
            data_collator=collator(processor),
            plugins=[plugin],
            stage=stage,
        )
        trainer.train()
        return trainer

    trainer = tune(model, STAGES[0])
    _, model = trainer.unwrap_lora(merge=True)
    plugin.on_stage_end(STAGES[0], model, dataset("image"), collator(processor))
    assert set(plugin.fisher) == linear_weight_names(model)  # q/k/v/o/gate/up/down; no embeddings, norms
    theta_1 = {n: p.detach().clone() for n, p in model.named_parameters()}
    assert all(torch.equal(plugin.anchor[n], theta_1[n]) for n in plugin.fisher)

    trainer = tune(model, STAGES[1], steps=3)
    assert trainer.state.log_history[-1]["plugin_penalty"] > 0
    peft_model = trainer.accelerator.unwrap_model(trainer.model)
    peft_model.zero_grad()
    penalty = plugin.loss_penalty(peft_model, STAGES[1])
    penalty.backward()
    grads = {n: p.grad for n, p in peft_model.named_parameters() if p.grad is not None}
    assert grads and all(".lora_A." in n or ".lora_B." in n for n in grads)  # never the connector
    assert all(g.abs().sum() > 0 for g in grads.values())

    _, merged = trainer.unwrap_lora(merge=True)
    params = dict(merged.named_parameters())
    by_hand = 25.0 * sum(
        (plugin.fisher[n] * (params[n].detach() - theta_1[n]) ** 2).sum() for n in plugin.fisher
    )
    assert penalty > 0
    torch.testing.assert_close(penalty.detach(), by_hand, rtol=1e-4, atol=0)


def test_state_dict_round_trip_gives_the_identical_penalty(tmp_path):
    model, processor = build_model()
    plugin = EWCPlugin(lambda_=2.0, fisher_fraction=0.5)
    for stage, modality in zip(STAGES, MODALITIES):
        plugin.on_stage_end(stage, model, dataset(modality), collator(processor))
        perturb(model, llm_names(model), seed=stage.index)
    written = save_plugin_states([plugin, build_plugin("replay", ratio=0.1)], tmp_path)
    assert written == ["plugin-ewc.safetensors"]  # the replay plugin keeps no state

    fresh = EWCPlugin(lambda_=2.0, fisher_fraction=0.5)
    load_plugin_states([fresh], tmp_path)
    assert fresh.num_stages == 2 and set(fresh.fisher) == set(plugin.fisher) == set(llm_names(model))
    for p in model.parameters():
        p.requires_grad_(True)
    assert torch.equal(fresh.loss_penalty(model, STAGES[1]), plugin.loss_penalty(model, STAGES[1]))

    # Memory: a float32 Fisher and a float32 anchor per covered weight.
    covered = sum(p.numel() for n, p in model.named_parameters() if n in plugin.fisher)
    assert plugin.state_nbytes() == fresh.state_nbytes() == 8 * covered
    with pytest.raises(ValueError, match="Plugin 'ewc'"):
        EWCPlugin().load_state_dict({"fisher.x": torch.zeros(1)})


def test_bad_arguments_name_the_plugin_and_argument():
    for kwargs, argument in [
        ({"lambda_": -1.0}, "lambda_"),
        ({"lambda_": "1"}, "lambda_"),
        ({"fisher_fraction": 0.0}, "fisher_fraction"),
        ({"fisher_fraction": 1.5}, "fisher_fraction"),
        ({"max_fisher_samples": 0}, "max_fisher_samples"),
    ]:
        with pytest.raises(ValueError, match=f"Plugin 'ewc': {argument}"):
            EWCPlugin(**kwargs)
    model, _ = build_model()
    with pytest.raises(ValueError, match="Plugin 'ewc'.*data_collator"):
        EWCPlugin().on_stage_end(STAGES[0], model, dataset("image"))


@pytest.mark.parametrize(
    ("module", "method_type", "spec"),
    [("ewc", "ewc", {"name": "ewc"}), ("replay", "replay", {"name": "replay", "ratio": 0.01})],
)
def test_methods_add_their_plugin_to_fine_tuning(module, method_type, spec):
    import importlib

    from trainers.methods import METHODS
    from trainers.methods.fine_tuning import FineTuning

    importlib.import_module(f"trainers.methods.{module}")
    workspace = SimpleNamespace(run=SimpleNamespace(push_to_hub=SimpleNamespace(repo_id=None)))
    entry = MethodConfig(name=method_type, type=method_type, replay_ratio=0.01)
    trainer = METHODS.get(method_type)(workspace, entry)
    assert isinstance(trainer, FineTuning) and not trainer.realign and trainer.merge_method == "none"
    # In the method's plugin list, hence in the instruction-tuning phase's description and key.
    assert trainer.method.plugins == [spec] and entry.plugins == []
    assert [p.name for p in trainer.plugins] == [spec["name"]]
    # An entry that lists the plugin itself (e.g. another λ) keeps its own.
    own = {**spec, "name": spec["name"]} | ({"lambda_": 5.0} if module == "ewc" else {"ratio": 0.2})
    trainer = METHODS.get(method_type)(workspace, MethodConfig(name="x", type=method_type, plugins=[own]))
    assert trainer.method.plugins == [own]
